/* Causal attention, FlashAttention-2 style: the tiled driver, the scalar
 * primitives and the run-time dispatch.
 *
 * Forward, per (b,h) and query tile: Q^T of the tile is packed once, then for
 * each key tile up to the diagonal the scores are computed transposed
 * (S^T = K Q^T, so that the packed operand is the one reused across the inner
 * loop), pushed through the online softmax, and P V is accumulated in a
 * tile-sized buffer that is normalised and written out at the end.
 * Backward, per (b,h): D_i = dO_i . O_i for every query first; then per key
 * tile (outer) K^T and V^T are packed once, and every query tile at or
 * below the diagonal recomputes P from lse, adds its share to dQ (in dqkv)
 * and to dK, dV (tile buffers, written out after the last query tile).
 * Causal trimming works on groups of ATTN_MR rows, so diagonal tiles cost
 * little more than the triangle they cover.  Each (b,h) is computed by one
 * thread in a fixed order: results do not depend on the thread count.
 */
#include "kernels/attention.h"

#include <assert.h>
#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention_impl.h"
#include "kernels/convert.h"
#include "kernels/pages.h"

/* A tile of K, V, Q, dO, their transposes or gradients holds bt x hs floats.
 * 16 KiB keeps the full tile edge up to hs = 64 (bt = 32 at hs = 128) and the
 * backward's stack near 200 KiB (with its bf16 tiles). */
enum { TILE_CAP = ATTN_BT * 64 };

/* ---- scalar primitives (the reference path: plain loops and expf) ---- */

static void mm_scalar(float *C, int ldc, const float *A, int sam, int sak, const float *B,
                      int ldb, int mr, int ncols, int k0, int k1, bool acc)
{
    for (int r = 0; r < mr; r++) {
        float *c = C + (size_t)r * ldc;
        if (!acc)
            for (int n = 0; n < ncols; n++)
                c[n] = 0.0f;
        for (int k = k0; k < k1; k++) {
            const float a = A[(size_t)r * sam + (size_t)k * sak];
            const float *b = B + (size_t)k * ldb;
            for (int n = 0; n < ncols; n++)
                c[n] += a * b[n];
        }
    }
}

/* bf16 attention in plain C (attn_bf16_ops), vdpbf16ps's order of the sums
 * (the odd product first): the scalar path's, the fast one's reference. */
static void mm_bf16_scalar(float *C, int ldc, const uint16_t *A, int sam, int sak,
                           const uint16_t *B, int ldb, int mr, int ncols, int kk0, int kk1,
                           bool acc)
{
    for (int r = 0; r < mr; r++)
        for (int n = 0; n < ncols; n++) {
            float c = acc ? C[(size_t)r * ldc + n] : 0.0f;
            for (int kk = kk0; kk < kk1; kk++) {
                const uint16_t *a = A + 2 * ((size_t)r * sam + (size_t)kk * sak);
                const uint16_t *b = B + 2 * ((size_t)kk * ldb + n);
                c += bf16_to_f32_one(a[1]) * bf16_to_f32_one(b[1]);
                c += bf16_to_f32_one(a[0]) * bf16_to_f32_one(b[0]);
            }
            C[(size_t)r * ldc + n] = c;
        }
}

static void pair_rows_scalar(uint16_t *dst, int ldd, const float *src, int lds, int rows,
                             int cols)
{
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            uint16_t *d = dst + 2 * ((size_t)(r / 2) * ldd + c);
            d[r % 2] = f32_to_bf16_one(src[(size_t)r * lds + c]);
            if (r % 2 == 0 && r + 1 == rows)
                d[1] = 0;
        }
}

static void pair_cols_scalar(uint16_t *dst, int ldd, const float *src, int lds, int rows,
                             int cols)
{
    for (int r = 0; r < rows; r++) {
        uint16_t *d = dst + 2 * (size_t)r * ldd;
        for (int c = 0; c < cols; c++)
            d[c] = f32_to_bf16_one(src[(size_t)r * lds + c]);
        if (cols % 2)
            d[cols] = 0;
    }
}

static const attn_bf16_ops attn_bf16_scalar = {
    .mm = mm_bf16_scalar, .pair_rows = pair_rows_scalar, .pair_cols = pair_cols_scalar,
};

static void softmax_cols_scalar(float *st, int bk, int bq, bool diag, float scale, float *m,
                                float *l, float *alpha)
{
    for (int i = 0; i < bq; i++) {
        const int nvis = diag ? i + 1 : bk;
        float mx = m[i];
        for (int j = 0; j < nvis; j++)
            mx = fmaxf(mx, scale * st[j * ATTN_BT + i]);
        float sum = 0.0f;
        for (int j = 0; j < bk; j++) {
            float *s = &st[j * ATTN_BT + i];
            *s = j < nvis ? expf(scale * *s - mx) : 0.0f;
            sum += *s;
        }
        alpha[i] = expf(m[i] - mx);
        l[i] = l[i] * alpha[i] + sum;
        m[i] = mx;
    }
}

static void exp_row_scalar(float *p, const float *s, int valid, int n, float scale, float lse)
{
    for (int j = 0; j < n; j++)
        p[j] = j < valid ? expf(scale * s[j] - lse) : 0.0f;
}

static void ds_row_scalar(float *ds, const float *p, const float *dp, int n, float d, float scale)
{
    for (int j = 0; j < n; j++)
        ds[j] = scale * p[j] * (dp[j] - d);
}

static void pack_t_scalar(float *dst, int ldd, const float *src, int lds, int rows, int cols)
{
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            dst[(size_t)c * ldd + r] = src[(size_t)r * lds + c];
}

static float dot_scalar(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void scale_scalar(float *x, int n, float a)
{
    for (int i = 0; i < n; i++)
        x[i] *= a;
}

/* Value i of a KV cache row block, fp32 or bf16. */
static float kv_value(const void *p, bool bf16, size_t i)
{
    return bf16 ? bf16_to_f32_one(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

static void cached_scalar(float *out, const float *q, const void *k, const void *v, bool bf16,
                          int n, int hs, float *att)
{
    const float scale = 1.0f / sqrtf((float)hs);
    float mx = -INFINITY, sum = 0.0f;
    for (int t = 0; t < n; t++) {
        float s = 0.0f;
        for (int c = 0; c < hs; c++)
            s += q[c] * kv_value(k, bf16, (size_t)t * hs + c);
        att[t] = s * scale;
        mx = att[t] > mx ? att[t] : mx;
    }
    for (int t = 0; t < n; t++) {
        att[t] = expf(att[t] - mx);
        sum += att[t];
    }
    for (int c = 0; c < hs; c++)
        out[c] = 0.0f;
    for (int t = 0; t < n; t++)
        for (int c = 0; c < hs; c++)
            out[c] += att[t] * kv_value(v, bf16, (size_t)t * hs + c);
    for (int c = 0; c < hs; c++)
        out[c] /= sum;
}

static void cached_rows_scalar(float *out, size_t ldo, const float *q, size_t ldq, const void *k,
                               const void *v, bool bf16, int n, int rows, int hs, float *att)
{
    for (int i = 0; i < rows; i++)
        cached_scalar(out + i * ldo, q + i * ldq, k, v, bf16, n + i, hs, att);
}

static const attn_ops attn_ops_scalar = {
    .mm = mm_scalar, .softmax_cols = softmax_cols_scalar, .exp_row = exp_row_scalar,
    .ds_row = ds_row_scalar, .pack_t = pack_t_scalar, .dot = dot_scalar, .scale = scale_scalar,
    .cached = cached_scalar, .cached_rows = cached_rows_scalar,
};

static const attn_ops *ops_for(isa_t isa)
{
    return cpu_pick(isa, &attn_ops_scalar, &attn_ops_avx2, &attn_ops_avx512);
}

/* Tile edge for head size hs: the full ATTN_BT unless hs x ATTN_BT would not
 * fit a packed tile; kept a multiple of ATTN_MR where possible. */
static int tile_edge(int hs)
{
    int bt = imin(ATTN_BT, TILE_CAP / hs);
    return bt > ATTN_MR ? bt - bt % ATTN_MR : bt;
}

/* The bf16 primitives of a path for heads of size hs, or NULL (fp32
 * products): AVX512-BF16 on the AVX-512 path of a CPU that has it, their
 * emulation on the scalar path (what the tests hold the fast one to), none on
 * AVX2.  Pairs need an even head size and tile edge. */
static const attn_bf16_ops *bf16_ops_for(isa_t isa, bool bf16, int hs)
{
    if (!bf16 || hs % 2 || tile_edge(hs) % 2)
        return NULL;
    if (isa == ISA_SCALAR)
        return &attn_bf16_scalar;
    return isa == ISA_AVX512 && cpu_has_avx512_bf16() ? &attn_bf16_avx512bf16 : NULL;
}

bool attention_bf16_native(void)
{
    return cpu_isa() == ISA_AVX512 && cpu_has_avx512_bf16();
}

/* ---- the tiled driver ---- */

/* One (b,h) slice: rows of q/k/v/dq/dk/dv have stride ld (3C), rows of
 * out/dout have stride ldo (C); lse has T entries. */
typedef struct {
    isa_t isa;
    const attn_ops *ops;
    const attn_bf16_ops *b16;   /* bf16 products, or NULL: fp32 */
    /* bf16: the head's operands converted once (every tile reads them many
     * times), T rounded up to even rows: forward K (pairs of d) and V (pairs
     * of keys); backward Q and dO, each both ways */
    uint16_t *k16, *v16, *q16, *q16t, *dout16, *dout16t;
    const float *q, *k, *v, *out, *dout, *lse;
    float *dq, *dk, *dv, *out_w, *lse_w;
    float *d;   /* backward: D_i = dO_i . O_i for the T queries */
    size_t o3, o1, ol;
    int ld, ldo, T, hs, bt;
    float scale;
} head;

/* Geometry of (b,h) = (bh / H, bh % H) and its q, k, v rows; the caller binds
 * the other arrays through the offsets o3 (in [B,T,3C]), o1 ([B,T,C]), ol ([B,H,T]). */
static head head_at(isa_t isa, bool bf16, const float *qkv, int bh, int T, int C, int H)
{
    const int b = bh / H, h = bh % H, hs = C / H;
    head hd = {
        .isa = isa, .ops = ops_for(isa), .b16 = bf16_ops_for(isa, bf16, hs),
        .ld = 3 * C, .ldo = C, .T = T, .hs = hs, .bt = tile_edge(hs),
        .scale = 1.0f / sqrtf((float)hs),
        .o3 = (size_t)b * T * 3 * C + (size_t)h * hs,
        .o1 = (size_t)b * T * C + (size_t)h * hs,
        .ol = (size_t)bh * T,
    };
    hd.q = qkv + hd.o3;
    hd.k = hd.q + C;
    hd.v = hd.q + 2 * C;
    return hd;
}

/* bf16 heads: rows x hs values of Q, K or V (row stride ld) transposed into
 * pairs of d, [dd][r] with bt words a row, in one pass (one block of
 * convert.h's pair layout). */
static void pair_transposed(const head *hd, uint16_t *dst, const float *src, int rows)
{
    const bf16_pair_layout l = {.K = hd->hs, .N = rows, .a_blk = hd->hs / 2, .n_blk = hd->bt,
                                .k_blocks = 1, .n_blocks = 1};
    f32_to_bf16_pairs_isa(hd->isa, &l, dst, src, (size_t)hd->ld, true);
}

/* dst rows (stride dld) = src rows (stride sld), rows x cols. */
static void copy_rows(float *dst, int dld, const float *src, int sld, int rows, int cols)
{
    for (int r = 0; r < rows; r++)
        memcpy(dst + (size_t)r * dld, src + (size_t)r * sld, (size_t)cols * sizeof *dst);
}

/* Working set of the forward pass over one query tile.  Operands that the
 * inner loops stream repeatedly are copied into contiguous tiles: rows of
 * qkv lie 12*C bytes apart, so a tile's rows alias a few L1 sets and evict
 * each other. */
typedef struct {
    float qt[TILE_CAP];             /* fp32 products: Q^T of the query tile: [d*bt + i] */
    float v[TILE_CAP];              /* V of the key tile: [j*hs + d] */
    float o[TILE_CAP];              /* unnormalised output of the query tile: [i*hs + d] */
    float st[ATTN_BT * ATTN_BT];    /* scores, then probabilities: [key*BT + query] */
    float m[ATTN_BT], l[ATTN_BT];   /* running max and sum per query */
    float alpha[ATTN_BT];           /* rescaling of o by this key tile */
    /* bf16 products (head.b16): their operands in pairs (attn_bf16_ops) */
    uint16_t qt16[TILE_CAP];        /* Q^T, pairs of d: [dd][i], bt words a row */
    uint16_t p16[ATTN_BT * ATTN_BT];   /* P^T, pairs of keys: [jj][i], ATTN_BT words a row */
} fwd_bufs;

/* Forward for query tile q0 (bq rows) against key tile k0. */
static void fwd_tile(const head *hd, fwd_bufs *w, int q0, int k0, int bq)
{
    const attn_ops *ops = hd->ops;
    const bool diag = k0 == q0;
    const int bk = diag ? bq : hd->bt, hs = hd->hs;

    /* S^T = K Q^T; on the diagonal, key group j0 only sees queries >= j0 */
    for (int j0 = 0; j0 < bk; j0 += ATTN_MR) {
        const int i0 = diag ? j0 : 0, mr = imin(ATTN_MR, bk - j0);
        float *st = w->st + j0 * ATTN_BT + i0;
        if (hd->b16)
            hd->b16->mm(st, ATTN_BT, hd->k16 + (size_t)(k0 + j0) * hs, hs / 2, 1,
                        w->qt16 + 2 * i0, hd->bt, mr, bq - i0, 0, hs / 2, false);
        else
            ops->mm(st, ATTN_BT, hd->k + (size_t)(k0 + j0) * hd->ld, hd->ld, 1, w->qt + i0,
                    hd->bt, mr, bq - i0, 0, hs, false);
    }
    ops->softmax_cols(w->st, bk, bq, diag, hd->scale, w->m, w->l, w->alpha);

    /* o = alpha * o + P V; the first key tile writes */
    if (hd->b16)
        hd->b16->pair_rows(w->p16, ATTN_BT, w->st, ATTN_BT, bk, bq);
    else
        copy_rows(w->v, hs, hd->v + (size_t)k0 * hd->ld, hd->ld, bk, hs);
    for (int r0 = 0; r0 < bq; r0 += ATTN_MR) {
        const int mr = imin(ATTN_MR, bq - r0), ncols = diag ? imin(bk, r0 + mr) : bk;
        float *o = w->o + r0 * hs;
        if (k0 > 0)
            for (int r = 0; r < mr; r++)
                ops->scale(o + r * hs, hs, w->alpha[r0 + r]);
        if (hd->b16)
            hd->b16->mm(o, hs, w->p16 + 2 * r0, 1, ATTN_BT, hd->v16 + (size_t)k0 * hs, hs, mr,
                        hs, 0, (ncols + 1) / 2, k0 > 0);
        else
            ops->mm(o, hs, w->st + r0, 1, ATTN_BT, w->v, hs, mr, hs, 0, ncols, k0 > 0);
    }
}

static void fwd_head(const head *hd)
{
    fwd_bufs w;
    const int hs = hd->hs;
    if (hd->b16) {
        hd->b16->pair_cols(hd->k16, hs / 2, hd->k, hd->ld, hd->T, hs);
        hd->b16->pair_rows(hd->v16, hs, hd->v, hd->ld, hd->T, hs);
    }
    for (int q0 = 0; q0 < hd->T; q0 += hd->bt) {
        const int bq = imin(hd->bt, hd->T - q0);
        if (hd->b16)
            pair_transposed(hd, w.qt16, hd->q + (size_t)q0 * hd->ld, bq);
        else
            hd->ops->pack_t(w.qt, hd->bt, hd->q + (size_t)q0 * hd->ld, hd->ld, bq, hs);
        for (int i = 0; i < bq; i++) {
            w.m[i] = -INFINITY;
            w.l[i] = 0.0f;
        }
        for (int k0 = 0; k0 <= q0; k0 += hd->bt)
            fwd_tile(hd, &w, q0, k0, bq);
        for (int i = 0; i < bq; i++) {
            hd->ops->scale(w.o + i * hs, hs, 1.0f / w.l[i]);
            hd->lse_w[q0 + i] = w.m[i] + logf(w.l[i]);
        }
        copy_rows(hd->out_w + (size_t)q0 * hd->ldo, hd->ldo, w.o, hs, bq, hs);
    }
}

/* Working set of the backward pass over one key tile (contiguous copies for
 * the reason given at fwd_bufs). */
typedef struct {
    float kt[TILE_CAP], vt[TILE_CAP];     /* fp32 products: K^T, V^T of the key tile: [d*bt + j] */
    float k[TILE_CAP];                    /* K of the key tile: [j*hs + d] */
    float dk[TILE_CAP], dv[TILE_CAP];     /* their gradients, accumulated over query tiles */
    float q[TILE_CAP], dout[TILE_CAP];    /* Q, dO of the query tile: [i*hs + d] */
    float p[ATTN_BT * ATTN_BT], ds[ATTN_BT * ATTN_BT];   /* [query*BT + key] */
    float sg[ATTN_MR * ATTN_BT];          /* S, then dP, of one query row group */
    /* bf16 products (head.b16): their operands in pairs (attn_bf16_ops) */
    uint16_t kt16[TILE_CAP], vt16[TILE_CAP];   /* K^T, V^T, pairs of d: [dd][j] */
    uint16_t k16[TILE_CAP];                    /* K, pairs of keys: [jj][d] */
    uint16_t ds16[ATTN_BT * ATTN_BT];          /* dS, pairs of keys: [i][jj] */
    uint16_t p16t[ATTN_BT * ATTN_BT], ds16t[ATTN_BT * ATTN_BT];   /* pairs of queries: [ii][j] */
} bwd_bufs;

/* Query rows r0.. of the tile pair: P, dS, and dQ += dS K. */
static void bwd_query_group(const head *hd, bwd_bufs *w, int q0, int k0, int bk, int r0, int mr)
{
    const attn_ops *ops = hd->ops;
    const bool diag = q0 == k0;
    const int ncols = diag ? imin(bk, r0 + mr) : bk, hs = hd->hs;
    const size_t qrow = (size_t)(q0 + r0);

    if (hd->b16)
        hd->b16->mm(w->sg, ATTN_BT, hd->q16 + qrow * hs, hs / 2, 1, w->kt16, hd->bt, mr, ncols,
                    0, hs / 2, false);
    else
        ops->mm(w->sg, ATTN_BT, w->q + r0 * hs, hs, 1, w->kt, hd->bt, mr, ncols, 0, hs, false);
    for (int r = 0; r < mr; r++)
        ops->exp_row(w->p + (r0 + r) * ATTN_BT, w->sg + r * ATTN_BT, diag ? r0 + r + 1 : bk,
                     ncols, hd->scale, hd->lse[qrow + r]);
    if (hd->b16)
        hd->b16->mm(w->sg, ATTN_BT, hd->dout16 + qrow * hs, hs / 2, 1, w->vt16, hd->bt, mr,
                    ncols, 0, hs / 2, false);
    else
        ops->mm(w->sg, ATTN_BT, w->dout + r0 * hs, hs, 1, w->vt, hd->bt, mr, ncols, 0, hs,
                false);
    for (int r = 0; r < mr; r++)
        ops->ds_row(w->ds + (r0 + r) * ATTN_BT, w->p + (r0 + r) * ATTN_BT, w->sg + r * ATTN_BT,
                    ncols, hd->d[qrow + r], hd->scale);
    /* the first key tile writes dQ, later ones accumulate */
    float *dq = hd->dq + qrow * hd->ld;
    if (hd->b16) {
        uint16_t *ds16 = w->ds16 + r0 * ATTN_BT;
        hd->b16->pair_cols(ds16, ATTN_BT / 2, w->ds + r0 * ATTN_BT, ATTN_BT, mr, ncols);
        hd->b16->mm(dq, hd->ld, ds16, ATTN_BT / 2, 1, w->k16, hs, mr, hs, 0, (ncols + 1) / 2,
                    k0 > 0);
    } else {
        ops->mm(dq, hd->ld, w->ds + r0 * ATTN_BT, ATTN_BT, 1, w->k, hs, mr, hs, 0, ncols,
                k0 > 0);
    }
}

/* Key rows j0.. of the tile pair: dV += P^T dO, dK += dS^T Q.  On the diagonal
 * only queries >= j0 see these keys, and the diagonal tile is the first to
 * touch them, so it writes. */
static void bwd_key_group(const head *hd, bwd_bufs *w, int q0, int k0, int bq, int j0, int mr)
{
    const bool diag = q0 == k0;
    const int lo = diag ? j0 : 0, hs = hd->hs;
    float *dv = w->dv + j0 * hs, *dk = w->dk + j0 * hs;

    if (hd->b16) {   /* lo is even: a multiple of ATTN_MR */
        const int kk1 = (bq + 1) / 2;
        const size_t at = (size_t)q0 * hs;   /* q0 is even: a multiple of the tile edge */
        hd->b16->mm(dv, hs, w->p16t + 2 * j0, 1, ATTN_BT, hd->dout16t + at, hs, mr, hs, lo / 2,
                    kk1, !diag);
        hd->b16->mm(dk, hs, w->ds16t + 2 * j0, 1, ATTN_BT, hd->q16t + at, hs, mr, hs, lo / 2, kk1,
                    !diag);
        return;
    }
    hd->ops->mm(dv, hs, w->p + j0, 1, ATTN_BT, w->dout, hs, mr, hs, lo, bq, !diag);
    hd->ops->mm(dk, hs, w->ds + j0, 1, ATTN_BT, w->q, hs, mr, hs, lo, bq, !diag);
}

static void bwd_tile(const head *hd, bwd_bufs *w, int q0, int k0, int bk)
{
    const int bq = imin(hd->bt, hd->T - q0), hs = hd->hs;
    if (!hd->b16) {   /* the fp32 products read contiguous copies (bf16: the planes) */
        copy_rows(w->q, hs, hd->q + (size_t)q0 * hd->ld, hd->ld, bq, hs);
        copy_rows(w->dout, hs, hd->dout + (size_t)q0 * hd->ldo, hd->ldo, bq, hs);
    }
    for (int r0 = 0; r0 < bq; r0 += ATTN_MR)
        bwd_query_group(hd, w, q0, k0, bk, r0, imin(ATTN_MR, bq - r0));
    if (hd->b16) {
        hd->b16->pair_rows(w->p16t, ATTN_BT, w->p, ATTN_BT, bq, bk);
        hd->b16->pair_rows(w->ds16t, ATTN_BT, w->ds, ATTN_BT, bq, bk);
    }
    for (int j0 = 0; j0 < bk; j0 += ATTN_MR)
        bwd_key_group(hd, w, q0, k0, bq, j0, imin(ATTN_MR, bk - j0));
}

static void bwd_head(const head *hd)
{
    bwd_bufs w;
    const int hs = hd->hs;
    if (hd->b16) {
        hd->b16->pair_cols(hd->q16, hs / 2, hd->q, hd->ld, hd->T, hs);
        hd->b16->pair_cols(hd->dout16, hs / 2, hd->dout, hd->ldo, hd->T, hs);
        hd->b16->pair_rows(hd->q16t, hs, hd->q, hd->ld, hd->T, hs);
        hd->b16->pair_rows(hd->dout16t, hs, hd->dout, hd->ldo, hd->T, hs);
    }
    for (int i = 0; i < hd->T; i++)
        hd->d[i] = hd->ops->dot(hd->dout + (size_t)i * hd->ldo, hd->out + (size_t)i * hd->ldo, hs);
    for (int k0 = 0; k0 < hd->T; k0 += hd->bt) {
        const int bk = imin(hd->bt, hd->T - k0);
        const float *k = hd->k + (size_t)k0 * hd->ld, *v = hd->v + (size_t)k0 * hd->ld;
        if (hd->b16) {
            pair_transposed(hd, w.kt16, k, bk);
            pair_transposed(hd, w.vt16, v, bk);
            hd->b16->pair_rows(w.k16, hs, k, hd->ld, bk, hs);
        } else {
            hd->ops->pack_t(w.kt, hd->bt, k, hd->ld, bk, hs);
            hd->ops->pack_t(w.vt, hd->bt, v, hd->ld, bk, hs);
            copy_rows(w.k, hs, k, hd->ld, bk, hs);
        }
        for (int q0 = k0; q0 < hd->T; q0 += hd->bt)
            bwd_tile(hd, &w, q0, k0, bk);
        copy_rows(hd->dk + (size_t)k0 * hd->ld, hd->ld, w.dk, hs, bk, hs);
        copy_rows(hd->dv + (size_t)k0 * hd->ld, hd->ld, w.dv, hs, bk, hs);
    }
}

static void check_shape(int B, int T, int C, int H)
{
    assert(B >= 0 && T >= 0 && H > 0 && C > 0 && C % H == 0);
    assert(C / H <= TILE_CAP);   /* at least one key per packed tile */
    (void)B, (void)T, (void)C, (void)H;
}

/* A thread's work: backward's row sums D [T] first, then the four planes of
 * bf16 heads (forward uses two), each of T rows (rounded up to even) x hs. */
static size_t work_plane(int T, int hs)
{
    return (size_t)(T + 1) * hs;
}

static size_t work_per_thread(int T, int hs)
{
    const size_t bytes = (size_t)T * sizeof(float) + 4 * work_plane(T, hs) * sizeof(uint16_t);
    return (bytes + 63) / 64 * 64;
}

size_t attention_work_bytes(int T, int hs, int threads)
{
    return work_per_thread(T, hs) * (size_t)threads;
}

int attention_work_init(attention_work *w, int T, int hs, int threads)
{
    assert(T >= 0 && hs > 0 && threads > 0);
    *w = (attention_work){.per_thread = work_per_thread(T, hs), .T = T, .hs = hs,
                          .threads = threads};
    w->mem = pages_alloc_zeroed(w->per_thread * w->threads);
    return w->mem ? 0 : -1;
}

void attention_work_free(attention_work *w)
{
    free(w->mem);
    *w = (attention_work){0};
}

static float *work_d(const attention_work *w, int thread)
{
    return (float *)((char *)w->mem + w->per_thread * thread);
}

/* Plane i of a thread's bf16 heads. */
static uint16_t *work_plane_at(const attention_work *w, int thread, int i)
{
    return (uint16_t *)(work_d(w, thread) + w->T) + work_plane(w->T, w->hs) * i;
}

/* The threads a call runs on: as many as OpenMP would use, at most the work's. */
static int work_threads(const attention_work *w, int T, int hs)
{
    assert(w->mem && T <= w->T && hs == w->hs);
    (void)T, (void)hs;
    return imin(omp_get_max_threads(), w->threads);
}

void attention_forward_isa(isa_t isa, float *out, float *lse, const float *qkv, int B, int T,
                           int C, int H, bool bf16, const attention_work *w)
{
    check_shape(B, T, C, H);
    const int threads = work_threads(w, T, C / H);
#pragma omp parallel for schedule(dynamic) num_threads(threads)
    for (int bh = 0; bh < B * H; bh++) {
        head hd = head_at(isa, bf16, qkv, bh, T, C, H);
        hd.k16 = work_plane_at(w, omp_get_thread_num(), 0);
        hd.v16 = work_plane_at(w, omp_get_thread_num(), 1);
        hd.out_w = out + hd.o1;
        hd.lse_w = lse + hd.ol;
        fwd_head(&hd);
    }
}

void attention_backward_isa(isa_t isa, float *dqkv, const float *dout, const float *qkv,
                            const float *out, const float *lse, int B, int T, int C, int H,
                            bool bf16, const attention_work *w)
{
    check_shape(B, T, C, H);
    const int threads = work_threads(w, T, C / H);
#pragma omp parallel for schedule(dynamic) num_threads(threads)
    for (int bh = 0; bh < B * H; bh++) {
        head hd = head_at(isa, bf16, qkv, bh, T, C, H);
        const int t = omp_get_thread_num();
        hd.d = work_d(w, t);
        hd.q16 = work_plane_at(w, t, 0);
        hd.q16t = work_plane_at(w, t, 1);
        hd.dout16 = work_plane_at(w, t, 2);
        hd.dout16t = work_plane_at(w, t, 3);
        hd.out = out + hd.o1;
        hd.dout = dout + hd.o1;
        hd.lse = lse + hd.ol;
        hd.dq = dqkv + hd.o3;
        hd.dk = hd.dq + C;
        hd.dv = hd.dq + 2 * C;
        bwd_head(&hd);
    }
}

void attention_cached_isa(isa_t isa, float *out, const float *q, const void *k, const void *v,
                          bool bf16, int n, int hs, float *att)
{
    assert(n >= 1 && hs >= 1);
    ops_for(isa)->cached(out, q, k, v, bf16, n, hs, att);
}

void attention_cached(float *out, const float *q, const void *k, const void *v, bool bf16, int n,
                      int hs, float *att)
{
    attention_cached_isa(cpu_isa(), out, q, k, v, bf16, n, hs, att);
}

void attention_cached_rows_isa(isa_t isa, float *out, size_t ldo, const float *q, size_t ldq,
                               const void *k, const void *v, bool bf16, int n, int rows, int hs,
                               float *att)
{
    assert(n >= 1 && rows >= 1 && hs >= 1);
    ops_for(isa)->cached_rows(out, ldo, q, ldq, k, v, bf16, n, rows, hs, att);
}

void attention_cached_rows(float *out, size_t ldo, const float *q, size_t ldq, const void *k,
                           const void *v, bool bf16, int n, int rows, int hs, float *att)
{
    attention_cached_rows_isa(cpu_isa(), out, ldo, q, ldq, k, v, bf16, n, rows, hs, att);
}

void attention_forward(float *out, float *lse, const float *qkv, int B, int T, int C, int H,
                       bool bf16, const attention_work *w)
{
    attention_forward_isa(cpu_isa(), out, lse, qkv, B, T, C, H, bf16, w);
}

void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                        const float *lse, int B, int T, int C, int H, bool bf16,
                        const attention_work *w)
{
    attention_backward_isa(cpu_isa(), dqkv, dout, qkv, out, lse, B, T, C, H, bf16, w);
}
