/* fp32 <-> bf16 conversion: the scalar reference, the threaded driver and the
 * run-time dispatch.  See convert_impl.h for the rounding rule. */
#include "kernels/convert.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/convert_impl.h"

/* These run in the training hot loop on 1K..30M values: below PAR_MIN a
 * parallel region costs more than it saves; CHUNK values (128 KB of fp32) is
 * a work item big enough to amortise the scheduling. */
enum { CHUNK = 1 << 15, PAR_MIN = 1 << 16 };

/* ---- scalar reference ---- */

static void to_bf16_scalar(uint16_t *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = cvt_bf16_bits(f32_bits(in[i]));
}

static void from_bf16_scalar(float *out, const uint16_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = bits_f32((uint32_t)in[i] << 16);
}

static void round_bf16_scalar(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = bits_f32((uint32_t)cvt_bf16_bits(f32_bits(x[i])) << 16);
}

static void to_f16_scalar(uint16_t *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = cvt_f16_bits(f32_bits(in[i]));
}

static void from_f16_scalar(float *out, const uint16_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = bits_f32(cvt_f16_to_f32_bits(in[i]));
}

/* Value (k, n) of a block's source as bf16, 0 past its kvals x ncols;
 * stride_k / stride_n: elements between rows / columns of the source. */
static uint32_t block_value(const float *src, size_t stride_k, size_t stride_n, int k, int n,
                            int kvals, int ncols)
{
    if (k >= kvals || n >= ncols)
        return 0;
    return cvt_bf16_bits(f32_bits(src[(size_t)k * stride_k + (size_t)n * stride_n]));
}

static void pairs_block(uint32_t *out, int a_blk, int n_blk, const float *src, size_t stride_k,
                        size_t stride_n, int kvals, int ncols)
{
    for (int p = 0; p < a_blk; p++)
        for (int j = 0; j < n_blk; j++)
            out[(size_t)p * n_blk + j] =
                block_value(src, stride_k, stride_n, 2 * p, j, kvals, ncols) |
                block_value(src, stride_k, stride_n, 2 * p + 1, j, kvals, ncols) << 16;
}

static void pairs_rows_scalar(uint32_t *out, int a_blk, int n_blk, const float *src, size_t ldb,
                              int kvals, int ncols)
{
    pairs_block(out, a_blk, n_blk, src, ldb, 1, kvals, ncols);
}

static void pairs_cols_scalar(uint32_t *out, int a_blk, int n_blk, const float *src, size_t ldb,
                              int kvals, int ncols)
{
    pairs_block(out, a_blk, n_blk, src, 1, ldb, kvals, ncols);
}

static const convert_ops convert_ops_scalar = {to_bf16_scalar,    from_bf16_scalar,
                                               round_bf16_scalar, to_f16_scalar,
                                               from_f16_scalar,   pairs_rows_scalar,
                                               pairs_cols_scalar};

/* ---- driver ---- */

static const convert_ops *ops_for(isa_t isa)
{
    return cpu_pick(isa, &convert_ops_scalar, &convert_ops_avx2, &convert_ops_avx512);
}

void f32_to_bf16_isa(isa_t isa, uint16_t *out, const float *in, size_t n)
{
    const convert_ops *ops = ops_for(isa);
    CPU_FOR_CHUNKS(n, CHUNK, PAR_MIN, i, len, ops->to_bf16(out + i, in + i, len));
}

void bf16_to_f32_isa(isa_t isa, float *out, const uint16_t *in, size_t n)
{
    const convert_ops *ops = ops_for(isa);
    CPU_FOR_CHUNKS(n, CHUNK, PAR_MIN, i, len, ops->from_bf16(out + i, in + i, len));
}

void round_to_bf16_isa(isa_t isa, float *x, size_t n)
{
    const convert_ops *ops = ops_for(isa);
    CPU_FOR_CHUNKS(n, CHUNK, PAR_MIN, i, len, ops->round_bf16(x + i, len));
}

/* Block (kb, nb) of layout l from B (trans: stored transposed). */
static void pack_block(const convert_ops *ops, const bf16_pair_layout *l, uint16_t *dst,
                       const float *B, size_t ldb, bool trans, int kb, int nb)
{
    const int k0 = kb * 2 * l->a_blk, n0 = nb * l->n_blk;
    const int kvals = l->K - k0 < 2 * l->a_blk ? l->K - k0 : 2 * l->a_blk;
    const int ncols = l->N - n0 < l->n_blk ? l->N - n0 : l->n_blk;
    uint32_t *out = (uint32_t *)(void *)(dst + kb * l->kb_stride + nb * l->nb_stride);
    if (kvals <= 0 || ncols <= 0)   /* a block of padding only */
        memset(out, 0, (size_t)l->a_blk * l->n_blk * sizeof *out);
    else if (trans)
        ops->pairs_cols(out, l->a_blk, l->n_blk, B + (size_t)n0 * ldb + k0, ldb, kvals, ncols);
    else
        ops->pairs_rows(out, l->a_blk, l->n_blk, B + (size_t)k0 * ldb + n0, ldb, kvals, ncols);
}

/* Block b of the walk described below. */
static void pack_nth(const convert_ops *ops, const bf16_pair_layout *l, uint16_t *dst,
                     const float *B, size_t ldb, bool trans, long b)
{
    const int kb = (int)(trans ? b % l->k_blocks : b / l->n_blocks);
    const int nb = (int)(trans ? b / l->k_blocks : b % l->n_blocks);
    pack_block(ops, l, dst, B, ldb, trans, kb, nb);
}

/* Blocks in the order that reads B once, in storage order: with B row-major
 * a band of 2 a_blk rows at a time (every block along N), transposed a band
 * of n_blk columns (stored as rows).  Threads take whole blocks, so the
 * result does not depend on their number. */
void f32_to_bf16_pairs_isa(isa_t isa, const bf16_pair_layout *l, uint16_t *dst, const float *B,
                           size_t ldb, bool trans)
{
    const convert_ops *ops = ops_for(isa);
    const long nblocks = (long)l->k_blocks * l->n_blocks;
    if (nblocks > 1 && (size_t)l->K * l->N >= PAR_MIN) {
#pragma omp parallel for schedule(static)
        for (long b = 0; b < nblocks; b++)
            pack_nth(ops, l, dst, B, ldb, trans, b);
        return;
    }
    /* small ones (attention's tiles, inside its threads) enter no parallel
     * construct at all: even a false `if` builds a team of one */
    for (long b = 0; b < nblocks; b++)
        pack_nth(ops, l, dst, B, ldb, trans, b);
}

static int gcd(int a, int b)
{
    return b ? gcd(b, a % b) : a;
}

/* Bands of `band` rows of B, whole blocks of both layouts: l's row blocks
 * of the band, then lt's column blocks, which read the same rows again
 * while they are in cache. */
void f32_to_bf16_pairs_both_isa(isa_t isa, const bf16_pair_layout *l, uint16_t *dst,
                                const bf16_pair_layout *lt, uint16_t *dst_t, const float *B,
                                size_t ldb)
{
    const convert_ops *ops = ops_for(isa);
    const int rows = 2 * l->a_blk, band = rows / gcd(rows, lt->n_blk) * lt->n_blk;
    const int l_per = band / rows, lt_per = band / lt->n_blk;
    const int by_l = (l->k_blocks + l_per - 1) / l_per, by_lt = (lt->n_blocks + lt_per - 1) / lt_per;
    const int bands = by_l > by_lt ? by_l : by_lt;
#pragma omp parallel for schedule(static) if (bands > 1 && (size_t)l->K * l->N >= PAR_MIN)
    for (int r = 0; r < bands; r++) {
        for (int kb = r * l_per; kb < (r + 1) * l_per && kb < l->k_blocks; kb++)
            for (int nb = 0; nb < l->n_blocks; nb++)
                pack_block(ops, l, dst, B, ldb, false, kb, nb);
        for (int nb = r * lt_per; nb < (r + 1) * lt_per && nb < lt->n_blocks; nb++)
            for (int kb = 0; kb < lt->k_blocks; kb++)
                pack_block(ops, lt, dst_t, B, ldb, true, kb, nb);
    }
}

void f32_to_bf16_pairs_both(const bf16_pair_layout *l, uint16_t *dst, const bf16_pair_layout *lt,
                            uint16_t *dst_t, const float *B, size_t ldb)
{
    f32_to_bf16_pairs_both_isa(cpu_isa(), l, dst, lt, dst_t, B, ldb);
}

void f32_to_bf16_pairs(const bf16_pair_layout *l, uint16_t *dst, const float *B, size_t ldb,
                       bool trans)
{
    f32_to_bf16_pairs_isa(cpu_isa(), l, dst, B, ldb, trans);
}

void f32_to_f16_isa(isa_t isa, uint16_t *out, const float *in, size_t n)
{
    const convert_ops *ops = ops_for(isa);
    CPU_FOR_CHUNKS(n, CHUNK, PAR_MIN, i, len, ops->to_f16(out + i, in + i, len));
}

void f16_to_f32_isa(isa_t isa, float *out, const uint16_t *in, size_t n)
{
    const convert_ops *ops = ops_for(isa);
    CPU_FOR_CHUNKS(n, CHUNK, PAR_MIN, i, len, ops->from_f16(out + i, in + i, len));
}

void f32_to_f16(uint16_t *out, const float *in, size_t n)
{
    f32_to_f16_isa(cpu_isa(), out, in, n);
}

void f16_to_f32(float *out, const uint16_t *in, size_t n)
{
    f16_to_f32_isa(cpu_isa(), out, in, n);
}

uint16_t f32_to_f16_one(float x)
{
    return cvt_f16_bits(f32_bits(x));
}

float f16_to_f32_one(uint16_t h)
{
    return bits_f32(cvt_f16_to_f32_bits(h));
}

float bf16_to_f32_one(uint16_t b)
{
    return bits_f32((uint32_t)b << 16);
}

uint16_t f32_to_bf16_one(float x)
{
    return cvt_bf16_bits(f32_bits(x));
}

int f32_all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

void f32_to_bf16(uint16_t *out, const float *in, size_t n)
{
    f32_to_bf16_isa(cpu_isa(), out, in, n);
}

void bf16_to_f32(float *out, const uint16_t *in, size_t n)
{
    bf16_to_f32_isa(cpu_isa(), out, in, n);
}

void round_to_bf16(float *x, size_t n)
{
    round_to_bf16_isa(cpu_isa(), x, n);
}
