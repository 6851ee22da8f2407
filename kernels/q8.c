/* int8 quantization and products: the scalar reference, the threaded driver
 * and the run-time dispatch.  The arithmetic contract is in q8.h. */
#include "kernels/q8.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/convert.h"
#include "kernels/q8_impl.h"

/* Work tiles of y: OT outputs (a multiple of Q8_TILE_ALIGN) by MT rows.  For
 * decode (M = 1) OT sets the grain of the split over OUT: 64 outputs of a
 * 768-wide layer are 48 KB of weights, enough to amortise the scheduling,
 * and a 384-wide layer still gives every thread several tiles.  Below PAR_MIN
 * multiply-adds a parallel region costs more than it saves. */
enum { OT = 64, MT = 16, PAR_MIN = 1 << 15, QCHUNK = 1 << 14, PACK_COLS = 16 };

/* ---- quantization (weights: scalar, once at load; activations: per path,
 * before every product) ---- */

/* Bit arithmetic, not frexpf and ceilf: it runs once per group of every
 * weight matrix at load (2.7M times for GPT-2 124M). */
size_t q8_weight_out_of_range(const float *x, size_t n)
{
    size_t i = 0;
    while (i < n && fabsf(x[i]) <= Q8_WEIGHT_MAX)
        i++;
    return i;
}

float q8_half_ceil(float s)
{
    if (!(s > 0.0f))
        return s;
    if (s >= Q8_SCALE_MAX)
        return Q8_SCALE_MAX;
    if (s < 0x1p-14f)   /* fp16's subnormals: steps of 2^-24, both products exact */
        return ceilf(s * 0x1p24f) * 0x1p-24f;
    uint32_t u;
    memcpy(&u, &s, sizeof u);
    const uint32_t low = (1u << 13) - 1;   /* the 13 mantissa bits fp16 lacks */
    if (u & low)
        u = (u | low) + 1;   /* up to the next fp16 value; a carry moves the exponent */
    memcpy(&s, &u, sizeof s);
    return s;
}

/* One group of Q8_GS values.  Division, not a multiply by 127/amax: it is
 * what q8.h promises, and the round trip then errs by at most scale/2. */
static float quantize_group(int8_t *q, const float *x, bool half)
{
    float amax = 0.0f;
    for (int k = 0; k < Q8_GS; k++)
        amax = fmaxf(amax, fabsf(x[k]));
    const float scale = q8_group_scale(amax, half);
    for (int k = 0; k < Q8_GS; k++) {
        /* clamped before rounding: a subnormal scale loses precision, and past
         * Q8_WEIGHT_MAX x / scale can pass what lrintf's long holds */
        const float v = scale == 0.0f ? 0.0f : fminf(fmaxf(x[k] / scale, -127.0f), 127.0f);
        q[k] = (int8_t)lrintf(v);
    }
    return scale;
}

static void quantize_scalar(int8_t *q, float *scales, const float *x, size_t groups, bool half)
{
    for (size_t g = 0; g < groups; g++)
        scales[g] = quantize_group(q + g * Q8_GS, x + g * Q8_GS, half);
}

void q8_dequantize(float *x, const int8_t *q, const float *scales, size_t n)
{
#pragma omp parallel for schedule(static, QCHUNK) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++)
        x[i] = (float)q[i] * scales[i / Q8_GS];
}

/* ---- scalar reference ---- */

/* One output: exact int32 group sums, combined in group order (q8.h). */
static float dot_groups(const int8_t *x, const float *xs, const int8_t *w, const float *ws, int G)
{
    float acc = 0.0f;
    for (int g = 0; g < G; g++) {
        int32_t s = 0;
        for (int k = g * Q8_GS; k < (g + 1) * Q8_GS; k++)
            s += (int32_t)x[k] * w[k];
        acc = acc + (xs[g] * ws[g]) * (float)s;
    }
    return acc;
}

static void tile_scalar(const q8_args *a, int m0, int m1, int o0, int o1)
{
    const int G = a->IN / Q8_GS;
    for (int o = o0; o < o1; o++)   /* outer: one weight row serves every m */
        for (int m = m0; m < m1; m++) {
            const float acc = dot_groups(a->xq + (size_t)m * a->IN, a->xs + (size_t)m * G,
                                         a->wq + (size_t)o * a->IN, a->ws + (size_t)o * G, G);
            a->y[(size_t)m * a->OUT + o] = a->bias ? acc + a->bias[o] : acc;
        }
}

static const q8_ops q8_ops_scalar = {tile_scalar, quantize_scalar};

/* ---- dispatch ---- */

static const char *const path_names[Q8_PATH_COUNT] = {"scalar", "avx2", "avx512", "vnni"};

bool q8_path_supported(q8_path path)
{
    switch (path) {
    case Q8_SCALAR: return true;
    case Q8_AVX2: return cpu_isa_supported(ISA_AVX2);
    case Q8_AVX512: return cpu_isa_supported(ISA_AVX512);
    case Q8_VNNI: return cpu_has_avx512_vnni();
    default: return false;
    }
}

const char *q8_path_name(q8_path path)
{
    return (path >= 0 && path < Q8_PATH_COUNT) ? path_names[path] : "unknown";
}

q8_path q8_path_for_isa(isa_t isa)
{
    if (!cpu_isa_supported(isa))   /* as cpu_pick: never run what the CPU lacks */
        return Q8_SCALAR;
    if (isa == ISA_AVX512)
        return cpu_has_avx512_vnni() ? Q8_VNNI : Q8_AVX512;
    return isa == ISA_AVX2 ? Q8_AVX2 : Q8_SCALAR;
}

static const q8_ops *ops_for(q8_path path)
{
    static const q8_ops *const table[Q8_PATH_COUNT] = {&q8_ops_scalar, &q8_ops_avx2,
                                                       &q8_ops_avx512, &q8_ops_vnni};
    return q8_path_supported(path) ? table[path] : &q8_ops_scalar;
}

/* ---- driver ---- */

void q8_quantize_path(q8_path path, int8_t *q, float *scales, const float *x, size_t n,
                      bool half_scales)
{
    const q8_ops *ops = ops_for(path);
    const size_t groups = n / Q8_GS, per = QCHUNK / Q8_GS, chunks = (groups + per - 1) / per;
    if (n < PAR_MIN) {   /* no parallel construct at all (cpu.h, CPU_FOR_CHUNKS) */
        ops->quantize(q, scales, x, groups, half_scales);
        return;
    }
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < chunks; c++)
        ops->quantize(q + c * QCHUNK, scales + c * per, x + c * QCHUNK,
                      groups - c * per < per ? groups - c * per : per, half_scales);
}

void q8_quantize(int8_t *q, float *scales, const float *x, size_t n)
{
    q8_quantize_path(q8_path_for_isa(cpu_isa()), q, scales, x, n, false);
}

void q8_quantize_weights(int8_t *q, float *scales, const float *x, size_t n)
{
    q8_quantize_path(q8_path_for_isa(cpu_isa()), q, scales, x, n, true);
}

/* Threads over blocks of PACK_COLS neighbouring columns: a block's slice of a
 * row of w is 64 bytes, so the strided column reads within a block share the
 * cache lines they pull in instead of fetching a line per value.  Each
 * group's 32 x PACK_COLS values are transposed on the stack and quantized by
 * the active path's quantize with fp16 scales (the scalar one's bits,
 * q8_impl.h). */
void q8_pack_weights(int8_t *wq, float *ws, const float *w, int in, int out)
{
    const int G = in / Q8_GS, nblocks = (out + PACK_COLS - 1) / PACK_COLS;
    const q8_ops *ops = ops_for(q8_path_for_isa(cpu_isa()));
#pragma omp parallel for schedule(static) if ((size_t)in * out >= PAR_MIN)
    for (int b = 0; b < nblocks; b++) {
        const int o0 = b * PACK_COLS, n = out - o0 < PACK_COLS ? out - o0 : PACK_COLS;
        float col[PACK_COLS][Q8_GS];
        for (int g = 0; g < G; g++) {
            for (int k = 0; k < Q8_GS; k++) {
                const float *row = w + (size_t)(g * Q8_GS + k) * out + o0;
                for (int c = 0; c < n; c++)
                    col[c][k] = row[c];
            }
            for (int c = 0; c < n; c++)
                ops->quantize(wq + (size_t)(o0 + c) * in + g * Q8_GS, ws + (size_t)(o0 + c) * G + g,
                              col[c], 1, true);
        }
    }
}

void q8_matmul_path(q8_path path, float *y, const int8_t *xq, const float *xs, const int8_t *wq,
                    const float *ws, const float *bias, int M, int IN, int OUT)
{
    const q8_ops *ops = ops_for(path);
    const q8_args a = {y, xq, wq, xs, ws, bias, M, IN, OUT};
    const int mtiles = (M + MT - 1) / MT, otiles = (OUT + OT - 1) / OT;
    /* Outputs vary fastest: with M = 1 every thread gets a contiguous share of OUT. */
#pragma omp parallel for schedule(static) if ((double)M * IN * OUT >= PAR_MIN)
    for (int t = 0; t < mtiles * otiles; t++) {
        const int m0 = t / otiles * MT, o0 = t % otiles * OT;
        ops->tile(&a, m0, m0 + MT < M ? m0 + MT : M, o0, o0 + OT < OUT ? o0 + OT : OUT);
    }
}

void q8_matvec_range(float *y, const int8_t *xq, const float *xs, const int8_t *wq,
                     const float *ws, const float *bias, int IN, int OUT, int o0, int o1)
{
    const q8_args a = {y, xq, wq, xs, ws, bias, 1, IN, OUT};
    ops_for(q8_path_for_isa(cpu_isa()))->tile(&a, 0, 1, o0, o1);
}

/* ---- decode layouts ---- */

q8_path q8_decode_path(void)
{
    const q8_path p = q8_path_for_isa(cpu_isa());
    return p == Q8_AVX512 ? Q8_AVX2 : p;   /* VNNI, AVX2 or none (scalar) */
}

/* outputs per block of path's layout */
static int decode_block(q8_path path)
{
    return path == Q8_VNNI ? 16 : 8;
}

size_t q8_decode_pack_bytes(q8_path path, int IN, int OUT)
{
    const int B = decode_block(path);
    return (size_t)(OUT + B - 1) / B * (IN / Q8_GS) * Q8_DECODE_GROUP(B);
}

/* Byte i of output r's group g in a block's group (chunk i/4, lane r, byte i%4). */
static size_t decode_at(int B, int r, int i)
{
    return (size_t)(i / 4) * 4 * B + (size_t)r * 4 + i % 4;
}

/* Block b's group g in a layout of G groups per block. */
static size_t decode_group(int B, int G, int b, int g)
{
    return ((size_t)b * G + g) * Q8_DECODE_GROUP(B);
}

/* What the layout adds to each weight byte (VNNI's unsigned operand). */
static int decode_offset(q8_path path)
{
    return path == Q8_VNNI ? 128 : 0;
}

int q8_decode_pack(q8_path path, void *dst, const int8_t *wq, const float *ws, int IN, int OUT)
{
    const int B = decode_block(path), G = IN / Q8_GS, blocks = (OUT + B - 1) / B;
    const int offset = decode_offset(path);
    int inexact = 0;
#pragma omp parallel for schedule(static) reduction(| : inexact) if ((size_t)IN * OUT >= PAR_MIN)
    for (int b = 0; b < blocks; b++)
        for (int g = 0; g < G; g++) {
            uint8_t *w = (uint8_t *)dst + decode_group(B, G, b, g), *sc = w + Q8_DECODE_WEIGHTS(B);
            for (int r = 0; r < B; r++) {
                const int o = b * B + r;
                const int8_t *row = o < OUT ? wq + (size_t)o * IN + g * Q8_GS : NULL;
                for (int i = 0; i < Q8_GS; i++)
                    w[decode_at(B, r, i)] = (uint8_t)((row ? row[i] : 0) + offset);
                const float s = row ? ws[(size_t)o * G + g] : 0.0f;
                const uint16_t h = f32_to_f16_one(s);
                inexact |= f16_to_f32_one(h) != s;
                memcpy(sc + 2 * r, &h, sizeof h);
            }
        }
    return inexact ? -1 : 0;
}

/* Output o's group g from the layout: Q8_GS int8 values, and the scale. */
static float unpack_group(q8_path path, int8_t *q, const void *packed, int IN, int o, int g)
{
    const int B = decode_block(path), G = IN / Q8_GS, offset = decode_offset(path);
    const uint8_t *w = (const uint8_t *)packed + decode_group(B, G, o / B, g);
    for (int i = 0; i < Q8_GS; i++)
        q[i] = (int8_t)(w[decode_at(B, o % B, i)] - offset);
    uint16_t h;
    memcpy(&h, w + Q8_DECODE_WEIGHTS(B) + 2 * (o % B), sizeof h);
    return f16_to_f32_one(h);
}

void q8_decode_unpack(q8_path path, int8_t *wq, float *ws, const void *packed, int IN, int OUT)
{
    const int G = IN / Q8_GS;
    for (int o = 0; o < OUT; o++)
        for (int g = 0; g < G; g++)
            ws[(size_t)o * G + g] = unpack_group(path, wq + (size_t)o * IN + g * Q8_GS, packed, IN, o, g);
}

void q8_decode_row(q8_path path, float *x, const void *packed, int IN, int o)
{
    int8_t q[Q8_GS];
    for (int g = 0; g < IN / Q8_GS; g++) {
        const float s = unpack_group(path, q, packed, IN, o, g);
        for (int i = 0; i < Q8_GS; i++)   /* no OpenMP construct: callers run it per thread */
            x[g * Q8_GS + i] = (float)q[i] * s;
    }
}

void q8_decode_prep(q8_path path, void *aux, const int8_t *xq, int rows, int IN)
{
    for (int m = 0; m < rows; m++) {
        const int8_t *x = xq + (size_t)m * IN;
        if (path == Q8_VNNI) {
            int32_t *xsum = (int32_t *)(void *)((char *)aux + (size_t)m * IN);
            for (int g = 0; g < IN / Q8_GS; g++) {
                int32_t s = 0;
                for (int i = 0; i < Q8_GS; i++)
                    s += x[g * Q8_GS + i];
                xsum[g] = 128 * s;
            }
        } else {
            int8_t *xabs = (int8_t *)aux + (size_t)m * IN;
            for (int i = 0; i < IN; i++)   /* |-127| fits: q8 never makes -128 */
                xabs[i] = (int8_t)(x[i] < 0 ? -x[i] : x[i]);
        }
    }
}

void q8_decode_matvec(q8_path path, float *y, const int8_t *xq, const float *xs, const void *aux,
                      const void *packed, const float *bias, int IN, int o0, int o1)
{
    if (path == Q8_VNNI)
        q8_vnni_matvec_impl(y, xq, xs, aux, packed, bias, IN, o0, o1);
    else
        q8_avx2_matvec_impl(y, xq, xs, aux, packed, bias, IN, o0, o1);
}

void q8_decode_matmul(q8_path path, float *y, const int8_t *xq, const float *xs, const void *aux,
                      const void *packed, const float *bias, int M, int IN, int OUT)
{
    const int tiles = (OUT + OT - 1) / OT, G = IN / Q8_GS;
#pragma omp parallel for schedule(static) if ((double)M * IN * OUT >= PAR_MIN)
    for (int t = 0; t < tiles; t++) {
        const int o0 = t * OT, o1 = o0 + OT < OUT ? o0 + OT : OUT;
        for (int m = 0; m < M; m++)
            q8_decode_matvec(path, y + (size_t)m * OUT, xq + (size_t)m * IN, xs + (size_t)m * G,
                             (const char *)aux + (size_t)m * IN, packed, bias, IN, o0, o1);
    }
}

void q8_matmul(float *y, const int8_t *xq, const float *xs, const int8_t *wq, const float *ws,
               const float *bias, int M, int IN, int OUT)
{
    q8_matmul_path(q8_path_for_isa(cpu_isa()), y, xq, xs, wq, ws, bias, M, IN, OUT);
}
