/* infer: the run state, the forward with its KV cache (a batched pass for a
 * prompt, one parallel region for a decoded token), sampling and generation;
 * see infer.h for the contract.  load.c fills the model this runs. */
#include "infer/infer.h"

#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/hash.h"
#include "kernels/attention.h"
#include "kernels/bf16mm.h"
#include "kernels/clock.h"
#include "kernels/convert.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/gemv.h"
#include "kernels/layernorm.h"
#include "kernels/q8.h"
#include "kernels/softmax_xent.h"

/* ---- run state ------------------------------------------------------------- */

static float *alloc_f(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes ? bytes : 64);
}

const char *infer_kv_name(infer_kv kv)
{
    return kv == INFER_KV_BF16 ? "bf16" : "fp32";
}

int infer_kv_parse(const char *str, infer_kv *kv)
{
    if (strcmp(str, "fp32") == 0 || strcmp(str, "bf16") == 0) {
        *kv = str[0] == 'b' ? INFER_KV_BF16 : INFER_KV_FP32;
        return 0;
    }
    return -1;
}

size_t infer_kv_offset(const infer_model *m, int l, int h, int t)
{
    const size_t H = m->d.n_head, T = m->d.n_positions, hs = m->d.n_embd / H;
    return (((size_t)l * H + h) * T + t) * hs;
}

int infer_state_create(infer_state *s, const infer_model *m, int max_chunk, infer_kv kv,
                       char *err, size_t errlen)
{
    const gpt2_dims *d = &m->d;
    size_t C = d->n_embd, T = d->n_positions, L = d->n_layer;
    memset(s, 0, sizeof *s);
    s->kv = kv;
    s->max_chunk = max_chunk <= 0 || (size_t)max_chunk > T ? (int)T : max_chunk;
    s->nthreads = omp_get_max_threads();
    size_t N = s->max_chunk;
    /* Pages of rows a run never reaches are never touched, so they cost no memory. */
    s->x = alloc_f(N * C);
    s->xb = alloc_f(N * C);
    s->xb2 = alloc_f(N * C);
    s->qkv = alloc_f(N * 3 * C);
    s->atty = alloc_f(N * C);
    s->fch = alloc_f(N * 4 * C);
    s->xq = aligned_alloc(64, (N * 4 * C + 63) & ~(size_t)63);
    s->xs = alloc_f(N * 4 * C / Q8_GS + 1);
    s->aux = aligned_alloc(64, (N * 4 * C + 63) & ~(size_t)63);
    s->xh = m->quant == INFER_BF16 ? aligned_alloc(64, (N * 4 * C * 2 + 63) & ~(size_t)63) : NULL;
    s->ln_mean = alloc_f(N);
    s->ln_rstd = alloc_f(N);
    const size_t kv_bytes = (L * T * C * (kv == INFER_KV_BF16 ? 2 : 4) + 63) & ~(size_t)63;
    s->key_cache = aligned_alloc(64, kv_bytes);
    s->value_cache = aligned_alloc(64, kv_bytes);
    s->att_stride = ATTN_CACHED_ROWS_SCRATCH * (T + 1);
    s->att = alloc_f((size_t)s->nthreads * s->att_stride);
    s->logits = alloc_f(d->vocab_size);
    /* per-thread decode vectors, each thread's in its own cache lines */
    s->lane_stride = (C + 31) / 32 * 32;
    size_t lanes = (size_t)s->nthreads * s->lane_stride;
    s->lane_x = alloc_f(lanes);
    s->lane_xb = alloc_f(lanes);
    s->lane_stat = alloc_f((size_t)s->nthreads * 16);
    s->lane_xq = aligned_alloc(64, 4 * lanes);
    s->lane_xs = alloc_f(lanes / 8);
    s->lane_aux = aligned_alloc(64, 4 * lanes);
    if (!s->lane_aux || !s->aux || !s->lane_x || !s->lane_xb || !s->lane_stat || !s->lane_xq ||
        !s->lane_xs || !s->x || !s->xb || !s->xb2 || !s->qkv || !s->atty || !s->fch || !s->xq ||
        !s->xs || !s->ln_mean || !s->ln_rstd || !s->key_cache || !s->value_cache || !s->att ||
        !s->logits || (m->quant == INFER_BF16 && !s->xh)) {
        snprintf(err, errlen, "out of memory for the run state (KV cache %.1f MB)",
                 2.0 * kv_bytes / 1e6);
        infer_state_free(s);
        return -1;
    }
    return 0;
}

void infer_state_free(infer_state *s)
{
    void *all[] = {s->x, s->xb, s->xb2, s->qkv, s->atty, s->fch, s->xq, s->xh, s->xs,
                   s->ln_mean, s->ln_rstd, s->key_cache, s->value_cache, s->att, s->logits,
                   s->lane_x, s->lane_xb, s->lane_stat, s->lane_xq, s->lane_xs, s->lane_aux,
                   s->aux};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    memset(s, 0, sizeof *s);
}

/* ---- forward --------------------------------------------------------------- */

/* bf16 through oneDNN, which makes (and caches) a primitive per row count:
 * the rows go in pieces of powers of two up to PIECE_ROWS_MAX, so that a
 * server's prompts of every length share a few; a last piece too small for
 * oneDNN (below bf16_gemm_rows) goes through bf16mm. */
static void bf16_gemm_pieces(const infer_model *m, infer_state *s, float *y, const float *x,
                             const infer_linear *l, int n)
{
    enum { PIECE_ROWS_MAX = 256 };
    f32_to_bf16(s->xh, x, (size_t)n * l->in);
    int r0 = 0;
    while (n - r0 >= m->bf16_gemm_rows) {
        int piece = PIECE_ROWS_MAX;
        while (piece > n - r0)
            piece /= 2;
        gemm_packed(l->wg, piece, 1.0f, s->xh + (size_t)r0 * l->in, l->in, l->b, false,
                    y + (size_t)r0 * l->out, l->out);
        r0 += piece;
    }
    if (r0 < n)
        bf16mm_matmul(y + (size_t)r0 * l->out, x + (size_t)r0 * l->in, l->wh, l->b, n - r0,
                      l->in, l->out);
}

/* y[n,out] = x[n,in] W + b, in fp32, in bf16 or through per-token int8
 * activations.  bf16 runs bf16mm, and from bf16_gemm_rows rows oneDNN on the
 * same bytes.  fp32 decode (n = 1) streams W through gemv, and a prompt of up to
 * FP32_ROWS_MAX tokens through gemv_n_rows: a GEMM library's blocking is for
 * many rows, and with few it runs several times slower (docs/benchmarks.md:
 * "fp32 prefill"). */
enum { FP32_ROWS_MAX = 64 };

static void linear(const infer_model *m, infer_state *s, float *y, const float *x,
                   const infer_linear *l, int n)
{
    if (l->wv || l->wq) {   /* int8 */
        q8_quantize(s->xq, s->xs, x, (size_t)n * l->in);   /* groups never straddle rows */
        if (l->wv) {
            q8_decode_prep(m->decode_path, s->aux, s->xq, n, l->in);
            q8_decode_matmul(m->decode_path, y, s->xq, s->xs, s->aux, l->wv, l->b, n, l->in,
                             l->out);
        } else {
            q8_matmul(y, s->xq, s->xs, l->wq, l->ws, l->b, n, l->in, l->out);
        }
    } else if (l->wg && n >= m->bf16_gemm_rows) {
        bf16_gemm_pieces(m, s, y, x, l, n);
    } else if (l->wh) {
        bf16mm_matmul(y, x, l->wh, l->b, n, l->in, l->out);
    } else if (n == 1) {
        gemv_n(y, x, l->w, l->b, l->in, l->out);
    } else if (n <= FP32_ROWS_MAX) {
        gemv_n_rows(y, x, l->w, l->b, n, l->in, l->out);
    } else {
        gemm_f32(false, false, n, l->out, l->in, x, l->in, l->w, l->out, l->b, false, y, l->out);
    }
}

/* The KV cache holds each layer's heads apart, [L, H, n_positions, hs], so a
 * head's rows are contiguous and attention_cached reads them in place. */
static void kv_put(const infer_state *s, void *cache, size_t at, const float *x, int n)
{
    if (s->kv == INFER_KV_BF16)
        f32_to_bf16((uint16_t *)cache + at, x, (size_t)n);
    else
        memcpy((float *)cache + at, x, (size_t)n * sizeof *x);
}

/* Head h of layer l: where its cache rows of keys (*k) and values (*v) start. */
static void head_kv(const infer_model *m, const infer_state *s, int l, int h, const void **k,
                    const void **v)
{
    const size_t at = infer_kv_offset(m, l, h, 0), bytes = s->kv == INFER_KV_BF16 ? 2 : 4;
    *k = (const char *)s->key_cache + at * bytes;
    *v = (const char *)s->value_cache + at * bytes;
}

/* Decode: head h of the one new query (position pos) over cache rows 0..pos. */
static void attend_head(const infer_model *m, infer_state *s, int l, int h, int pos, float *att)
{
    const int C = m->d.n_embd, hs = C / m->d.n_head;
    const void *k, *v;
    head_kv(m, s, l, h, &k, &v);
    attention_cached(s->atty + h * hs, s->qkv + h * hs, k, v, s->kv == INFER_KV_BF16, pos + 1, hs,
                     att);
}

/* Causal attention of the n new queries (positions pos..pos+n-1) over the
 * cache rows 0..their own position, a head per task. */
static void attend(const infer_model *m, infer_state *s, int l, int n, int pos)
{
    const int C = m->d.n_embd, H = m->d.n_head, hs = C / H, rows = pos + n;
    bool par = (double)n * rows * C >= 32768;   /* a parallel region costs a few us */
#pragma omp parallel for schedule(static) if (par)
    for (int h = 0; h < H; h++) {
        const void *k, *v;
        head_kv(m, s, l, h, &k, &v);
        attention_cached_rows(s->atty + h * hs, C, s->qkv + h * hs, 3 * (size_t)C, k, v,
                              s->kv == INFER_KV_BF16, pos + 1, n, hs,
                              s->att + (size_t)omp_get_thread_num() * s->att_stride);
    }
}

/* Token i's keys and values (in qkv) of head h go to cache row pos. */
static void store_kv_head(const infer_model *m, infer_state *s, int l, int h, int i, int pos)
{
    const int C = m->d.n_embd, hs = C / m->d.n_head;
    const float *qkv = s->qkv + (size_t)i * 3 * C;
    kv_put(s, s->key_cache, infer_kv_offset(m, l, h, pos), qkv + C + h * hs, hs);
    kv_put(s, s->value_cache, infer_kv_offset(m, l, h, pos), qkv + 2 * C + h * hs, hs);
}

/* The new tokens' keys and values go to cache rows pos..pos+n-1. */
static void store_kv(const infer_model *m, infer_state *s, int l, int n, int pos)
{
    for (int i = 0; i < n; i++)
        for (int h = 0; h < m->d.n_head; h++)
            store_kv_head(m, s, l, h, i, pos + i);
}

static void block(const infer_model *m, infer_state *s, int l, int n, int pos)
{
    const infer_block *b = &m->h[l];
    int C = m->d.n_embd;
    size_t nc = (size_t)n * C;
    layernorm_forward(s->xb, s->ln_mean, s->ln_rstd, s->x, b->ln1w, b->ln1b, n, C);
    linear(m, s, s->qkv, s->xb, &b->qkv, n);
    store_kv(m, s, l, n, pos);
    attend(m, s, l, n, pos);
    linear(m, s, s->xb2, s->atty, &b->attproj, n);
    residual_forward(s->x, s->x, s->xb2, nc);
    layernorm_forward(s->xb, s->ln_mean, s->ln_rstd, s->x, b->ln2w, b->ln2b, n, C);
    linear(m, s, s->fch, s->xb, &b->fc, n);
    gelu_forward(s->fch, s->fch, nc * 4);
    linear(m, s, s->xb2, s->fch, &b->fcproj, n);
    residual_forward(s->x, s->x, s->xb2, nc);
}

/* logits[n,V] of the final-LayerNorm rows x[n,C] (the tied head: x wte^T). */
static void lm_head(const infer_model *m, infer_state *s, float *logits, const float *x, int n)
{
    int C = m->d.n_embd, V = m->d.vocab_size;
    if (m->quant != INFER_FP32)
        linear(m, s, logits, x, &m->lm_head, n);
    else if (n == 1)
        gemv_t(logits, x, m->wte, NULL, C, V);
    else
        gemm_f32(false, true, n, V, C, x, C, m->wte, C, NULL, false, logits, V);
}

/* x [C] = the token's embedding + the position's.  int8 and bf16 read the
 * token's row of wte back from the LM head: int8 its Q8_0 row dequantized, as
 * llama.cpp looks up a Q8_0 token_embd, so a checkpoint and its q8_0 GGUF run
 * alike; bf16 the very bf16 values. */
static void embed(const infer_model *m, float *x, int token, int pos)
{
    const int C = m->d.n_embd;
    const float *pe = m->wpe + (size_t)pos * C;
    const infer_linear *h = &m->lm_head;
    if (h->wh)
        bf16mm_column(x, h->wh, C, token);
    else if (h->wv)
        q8_decode_row(m->decode_path, x, h->wv, C, token);
    else if (h->wq)   /* inline: q8_dequantize is an OpenMP construct; decode embeds per thread */
        for (int c = 0; c < C; c++)
            x[c] = (float)h->wq[(size_t)token * C + c] * h->ws[((size_t)token * C + c) / Q8_GS];
    const float *te = m->wte ? m->wte + (size_t)token * C : x;
    for (int c = 0; c < C; c++)
        x[c] = te[c] + pe[c];
}

/* ---- decode: one token, one parallel region ------------------------------- */

/* This thread's share [*o0, *o1) of n outputs: contiguous whole blocks of 64
 * (cache lines of y and of W's rows are not shared; q8 wants multiples of 8,
 * bf16mm of BF16MM_NB). */
_Static_assert(64 % BF16MM_NB == 0, "a decode share is whole bf16mm blocks");
static void share(int n, int *o0, int *o1)
{
    const int nt = omp_get_num_threads(), t = omp_get_thread_num(), blocks = (n + 63) / 64;
    const int b0 = blocks * t / nt * 64, b1 = blocks * (t + 1) / nt * 64;
    *o0 = b0 < n ? b0 : n;
    *o1 = b1 < n ? b1 : n;
}

/* What each thread of a decode step keeps to itself: vectors that every
 * thread needs whole are recomputed by each (a few hundred values) instead of
 * computed once and waited for at a barrier. */
typedef struct {
    float *x;        /* [C] the residual stream */
    float *xb;       /* [C] LayerNorm output */
    float *stat;     /* [2] LayerNorm mean, rstd */
    int8_t *xq;      /* [4C] the quantized input of a product */
    float *xs;       /* [4C/32] */
    void *aux;       /* [4C bytes] q8_decode_prep's for xq */
} lane;

/* This thread's share of y = x W + b (x whole: every thread quantizes it). */
static void decode_linear(const infer_model *m, const lane *p, float *y, const float *x,
                          const infer_linear *l)
{
    int o0, o1;
    share(l->out, &o0, &o1);
    if (l->wv || l->wq)   /* int8; below q8's threshold, so on this thread */
        q8_quantize(p->xq, p->xs, x, (size_t)l->in);
    if (l->wv) {
        q8_decode_prep(m->decode_path, p->aux, p->xq, 1, l->in);
        if (o0 < o1)
            q8_decode_matvec(m->decode_path, y, p->xq, p->xs, p->aux, l->wv, l->b, l->in, o0, o1);
    } else if (l->wq) {
        if (o0 < o1)
            q8_matvec_range(y, p->xq, p->xs, l->wq, l->ws, l->b, l->in, l->out, o0, o1);
    } else if (l->wh) {
        if (o0 < o1)
            bf16mm_matvec_range(y, x, l->wh, l->b, l->in, l->out, o0, o1);
    } else if (o0 < o1) {
        gemv_n_range(y, x, l->w, l->b, l->in, l->out, o0, o1);
    }
}

/* One layer of the token at pos; five barriers, one after each step whose
 * output every thread reads whole. */
static void decode_block(const infer_model *m, infer_state *s, const lane *p, int l, int pos)
{
    const infer_block *b = &m->h[l];
    const int C = m->d.n_embd, H = m->d.n_head;
    layernorm_forward(p->xb, p->stat, p->stat + 1, p->x, b->ln1w, b->ln1b, 1, C);
    decode_linear(m, p, s->qkv, p->xb, &b->qkv);
#pragma omp barrier
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    for (int h = H * t / nt; h < H * (t + 1) / nt; h++) {   /* this thread's heads */
        store_kv_head(m, s, l, h, 0, pos);
        attend_head(m, s, l, h, pos, s->att + (size_t)t * s->att_stride);
    }
#pragma omp barrier
    decode_linear(m, p, s->xb2, s->atty, &b->attproj);
#pragma omp barrier
    residual_forward(p->x, p->x, s->xb2, C);
    layernorm_forward(p->xb, p->stat, p->stat + 1, p->x, b->ln2w, b->ln2b, 1, C);
    decode_linear(m, p, s->fch, p->xb, &b->fc);
    int o0, o1;
    share(4 * C, &o0, &o1);
    if (o0 < o1)
        gelu_forward(s->fch + o0, s->fch + o0, o1 - o0);
#pragma omp barrier
    decode_linear(m, p, s->xb2, s->fch, &b->fcproj);
#pragma omp barrier
    residual_forward(p->x, p->x, s->xb2, C);
}

/* The token at pos -> s->logits, as infer_forward with n = 1 computes them
 * (the same operations on each value, split over threads differently). */
static void decode(const infer_model *m, infer_state *s, int token, int pos)
{
    const int C = m->d.n_embd, V = m->d.vocab_size;
#pragma omp parallel num_threads(s->nthreads)
    {
        const int t = omp_get_thread_num();
        const lane p = {s->lane_x + (size_t)t * s->lane_stride,
                        s->lane_xb + (size_t)t * s->lane_stride,
                        s->lane_stat + (size_t)t * 16, s->lane_xq + (size_t)t * 4 * s->lane_stride,
                        s->lane_xs + (size_t)t * s->lane_stride / 8,
                        (int8_t *)s->lane_aux + (size_t)t * 4 * s->lane_stride};
        embed(m, p.x, token, pos);
        for (int l = 0; l < m->d.n_layer; l++)
            decode_block(m, s, &p, l, pos);
        layernorm_forward(p.xb, p.stat, p.stat + 1, p.x, m->lnfw, m->lnfb, 1, C);
        if (m->quant != INFER_FP32) {
            decode_linear(m, &p, s->logits, p.xb, &m->lm_head);
        } else {
            int o0, o1;
            share(V, &o0, &o1);
            if (o0 < o1)
                gemv_t_range(s->logits, p.xb, m->wte, C, NULL, C, o0, o1);
        }
    }
}

void infer_forward(const infer_model *m, infer_state *s, const int *tokens, int n, int pos,
                   float *all_logits)
{
    if (n == 1) {
        decode(m, s, tokens[0], pos);
        if (all_logits)
            memcpy(all_logits, s->logits, (size_t)m->d.vocab_size * sizeof(float));
        return;
    }
    int C = m->d.n_embd, V = m->d.vocab_size;
    for (int i = 0; i < n; i++)
        embed(m, s->x + (size_t)i * C, tokens[i], pos + i);
    for (int l = 0; l < m->d.n_layer; l++)
        block(m, s, l, n, pos);
    if (all_logits) {
        layernorm_forward(s->xb, s->ln_mean, s->ln_rstd, s->x, m->lnfw, m->lnfb, n, C);
        lm_head(m, s, all_logits, s->xb, n);
        memcpy(s->logits, all_logits + (size_t)(n - 1) * V, (size_t)V * sizeof(float));
    } else {   /* generation needs only the last row's logits */
        const float *last = s->x + (size_t)(n - 1) * C;
        layernorm_forward(s->xb, s->ln_mean, s->ln_rstd, last, m->lnfw, m->lnfb, 1, C);
        lm_head(m, s, s->logits, s->xb, 1);
    }
}

double infer_eval_window(const infer_model *m, infer_state *s, const int *tokens, int n,
                         int n_vocab, float *logits, float *losses, int *greedy)
{
    int V = m->d.vocab_size;
    infer_forward(m, s, tokens, n, 0, logits);
    for (int i = 0; i < n; i++)   /* the padding rows, as the trainer masks them */
        for (int v = n_vocab; v < V; v++)
            logits[(size_t)i * V + v] = -INFINITY;
    if (greedy)
        for (int i = 0; i < n; i++)
            greedy[i] = infer_argmax(logits + (size_t)i * V, V);
    softmax_xent(losses, logits, tokens + 1, n, V, 0.0f, false);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += losses[i];
    return sum;
}

/* ---- sampling -------------------------------------------------------------- */

int infer_argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best] || (isnan(x[best]) && !isnan(x[i])))
            best = i;
    return best;
}

int infer_sampler_init(infer_sampler *s, int n_vocab, float temperature, int top_k,
                       float top_p, uint64_t seed, char *err, size_t errlen)
{
    *s = (infer_sampler){.n_vocab = n_vocab, .temperature = temperature, .top_k = top_k,
                         .top_p = top_p, .rng = seed};
    if (n_vocab < 1) {
        snprintf(err, errlen, "the sampler needs a vocabulary of at least one token");
        return -1;
    }
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    if (!s->cand) {
        snprintf(err, errlen, "out of memory for the sampler");
        return -1;
    }
    return 0;
}

void infer_sampler_free(infer_sampler *s)
{
    free(s->cand);
    s->cand = NULL;
}

/* splitmix64: a fixed sequence per seed, on every machine. */
static float rng_uniform(uint64_t *state)
{
    return (float)((splitmix64(state) >> 40) * (1.0 / 16777216.0));   /* [0, 1) */
}

/* Higher probability first; equal ones by index, so the order is total and
 * qsort's result does not depend on its algorithm. */
static int cand_desc(const void *a, const void *b)
{
    const infer_cand *x = a, *y = b;
    if (x->prob != y->prob)
        return x->prob < y->prob ? 1 : -1;
    return x->index - y->index;
}

static void swap_cand(infer_cand *a, infer_cand *b)
{
    infer_cand t = *a;
    *a = *b;
    *b = t;
}

/* Moves the k best of c[0..n) (by cand_desc) to the front, in O(n) on average. */
static void select_top(infer_cand *c, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        swap_cand(&c[(lo + hi) / 2], &c[hi]);   /* middle pivot: no RNG needed */
        int store = lo;
        for (int i = lo; i < hi; i++)
            if (cand_desc(&c[i], &c[hi]) < 0)
                swap_cand(&c[i], &c[store++]);
        swap_cand(&c[store], &c[hi]);
        if (store == k - 1 || store == k)
            return;
        if (store < k)
            lo = store + 1;
        else
            hi = store - 1;
    }
}

/* Keeps the smallest prefix of the candidates (sorted here) whose probability
 * reaches top_p (<= 0: the most likely alone); returns its length, at least 1,
 * and its total in *mass.  pmax: the largest probability. */
static int nucleus(infer_cand *c, int n, float top_p, float pmax, float *mass)
{
    /* llama2.c's shortcut: a candidate below (1 - p) / (n - 1) can never be in
     * the nucleus, so most of the vocabulary is dropped before sorting.  That
     * holds for all but the first: with p small and a flat distribution the
     * most likely is below it too, and nothing would be left. */
    float cutoff = n > 1 ? (1.0f - top_p) / (n - 1) : 0.0f;
    if (cutoff > pmax)
        cutoff = pmax;
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (c[i].prob >= cutoff)
            c[kept++] = c[i];
    qsort(c, kept, sizeof *c, cand_desc);
    float cum = 0;
    for (int i = 0; i < kept; i++) {
        cum += c[i].prob;
        if (cum >= top_p) {
            *mass = cum;
            return i + 1;
        }
    }
    *mass = cum;
    return kept;
}

/* Every value the sampler can be given draws a token in 0..n_vocab-1; where
 * there is no distribution to draw from, the argmax, which is the limit:
 *  - temperature <= 0 or NaN (greedy);
 *  - a best logit of +inf (that token is certain), or none finite or above
 *    -inf (NaN logits are never drawn; all NaN: token 0);
 *  - a temperature so small that the best scaled logit overflows (1e-39
 *    turned every probability into NaN).
 * Otherwise the best logit is among the candidates with exp(0) = 1, so the
 * sum is in [1, n] and no probability is NaN. */
int infer_sample(infer_sampler *s, const float *logits)
{
    int n = s->n_vocab;
    const int best = infer_argmax(logits, n);
    const float t = s->temperature, mx = logits[best] / t;
    if (!(t > 0) || !isfinite(mx))
        return best;
    infer_cand *c = s->cand;   /* top-k on the logits: a huge t would round them to ties */
    for (int i = 0; i < n; i++)
        c[i] = (infer_cand){isnan(logits[i]) ? -INFINITY : logits[i], i};
    if (s->top_k > 0 && s->top_k < n) {
        select_top(c, n, s->top_k);
        n = s->top_k;
    }
    float sum = 0;
    for (int i = 0; i < n; i++) {
        float x = c[i].prob / t - mx;   /* NaN: -inf / inf */
        c[i].prob = isnan(x) ? 0.0f : expf(x);
        sum += c[i].prob;
    }
    for (int i = 0; i < n; i++)
        c[i].prob /= sum;
    float mass = 1.0f;
    if (s->top_p < 1)   /* NaN: off, as 1 */
        n = nucleus(c, n, s->top_p, 1.0f / sum, &mass);
    float r = rng_uniform(&s->rng) * mass, cum = 0;
    int last = 0;   /* the last candidate that can be drawn (probability > 0) */
    for (int i = 0; i < n; i++) {
        cum += c[i].prob;
        if (r < cum)
            return c[i].index;
        if (c[i].prob > 0)
            last = i;
    }
    return c[last].index;   /* rounding left r at or above the total */
}

/* ---- generation ------------------------------------------------------------ */

infer_gen_stats infer_generate(const infer_model *m, infer_state *s, infer_sampler *sp, int *toks,
                               int n_prompt, int n_new, infer_token_fn on_token, void *ctx)
{
    infer_gen_stats st = {0};
    double t0 = clock_mono_s();
    infer_forward(m, s, toks, n_prompt, 0, NULL);
    double t1 = clock_mono_s(), c1 = clock_cpu_s();
    int pos = n_prompt;
    while (st.n_generated < n_new) {
        int next = infer_sample(sp, s->logits);
        if (on_token && on_token(ctx, next)) {   /* that token is not kept */
            st.stopped = 1;
            break;
        }
        st.n_generated++;
        if (st.n_generated == n_new)
            break;
        if (pos == m->d.n_positions) {   /* no cache row left for this token */
            st.context_full = 1;
            break;
        }
        toks[pos] = next;
        infer_forward(m, s, &toks[pos], 1, pos, NULL);
        pos++;
    }
    st.prefill_s = t1 - t0;
    st.decode_s = clock_mono_s() - t1;
    st.decode_cpu_s = clock_cpu_s() - c1;
    return st;
}
