/* bf16mm: packing, the scalar (widening) reference, the threaded driver and
 * the run-time dispatch; the arithmetic is in bf16mm.h. */
#include "kernels/bf16mm.h"

#include <math.h>
#include <omp.h>

#include "kernels/bf16mm_impl.h"
#include "kernels/convert.h"
#include "kernels/cpu.h"

/* Below this many multiply-adds a parallel region costs more than it saves. */
enum { PAR_MIN = 1 << 16 };

static const char *const path_names[BF16MM_PATH_COUNT] = {"scalar", "avx2", "avx512",
                                                          "avx512_bf16"};

bool bf16mm_supported(bf16mm_path p)
{
    switch (p) {
    case BF16MM_SCALAR: return true;
    case BF16MM_AVX2: return cpu_isa_supported(ISA_AVX2);
    case BF16MM_AVX512: return cpu_isa_supported(ISA_AVX512);
    case BF16MM_DOT: return cpu_has_avx512_bf16();
    default: return false;
    }
}

bf16mm_path bf16mm_path_active(void)
{
    const isa_t isa = cpu_isa();
    if (isa == ISA_AVX512)
        return cpu_has_avx512_bf16() ? BF16MM_DOT : BF16MM_AVX512;
    return isa == ISA_AVX2 ? BF16MM_AVX2 : BF16MM_SCALAR;
}

const char *bf16mm_path_name(bf16mm_path p)
{
    return p >= 0 && p < BF16MM_PATH_COUNT ? path_names[p] : "unknown";
}

static int blocks_of(int out)
{
    return (out + BF16MM_NB - 1) / BF16MM_NB;
}

size_t bf16mm_packed_len(int in, int out)
{
    return (size_t)blocks_of(out) * bf16mm_block_len(in);
}

/* W[i][o] of the packed block of o, o % NB = j */
static size_t at(int in, int i, int o)
{
    return (size_t)(o / BF16MM_NB) * bf16mm_block_len(in) +
           (size_t)(i / 2) * BF16MM_NB * 2 + (size_t)(o % BF16MM_NB) * 2 + (i & 1);
}

void bf16mm_pack(uint16_t *p, const float *w, bool trans, int in, int out)
{
    const int blocks = blocks_of(out);
#pragma omp parallel for schedule(static) if ((long)in * out >= PAR_MIN)
    for (int k = 0; k < blocks; k++) {
        uint16_t *pb = p + (size_t)k * bf16mm_block_len(in);
        for (size_t e = 0; e < bf16mm_block_len(in); e++)
            pb[e] = 0;   /* padding: outputs past out, the input past an odd in */
        const int o0 = k * BF16MM_NB, outs = bf16mm_block_outs(out, k);
        for (int i = 0; i < in; i++) {   /* W[i][o0 + j] -> pair i / 2, slot j, half i & 1 */
            uint16_t *dst = pb + (size_t)(i / 2) * BF16MM_NB * 2 + (i & 1);
            for (int j = 0; j < outs; j++)
                dst[2 * j] = f32_to_bf16_one(trans ? w[(size_t)(o0 + j) * in + i]
                                                   : w[(size_t)i * out + o0 + j]);
        }
    }
}

void bf16mm_column(float *dst, const uint16_t *p, int in, int o)
{
    for (int i = 0; i < in; i++)
        dst[i] = bf16_to_f32_one(p[at(in, i, o)]);
}

/* The widening arithmetic, one output at a time. */
static void widen_scalar(const bf16mm_args *a, int k0, int k1)
{
    for (int m = 0; m < a->n; m++) {
        const float *x = a->x + (size_t)m * a->in;
        for (int o = k0 * BF16MM_NB; o < k1 * BF16MM_NB && o < a->out; o++) {
            float acc = 0.0f;
            for (int i = 0; i < a->in; i++)
                acc = fmaf(x[i], bf16_to_f32_one(a->p[at(a->in, i, o)]), acc);
            a->y[(size_t)m * a->out + o] = a->b ? acc + a->b[o] : acc;
        }
    }
}

static bf16mm_fn fn_for(bf16mm_path path)
{
    if (!bf16mm_supported(path))
        return widen_scalar;
    return path == BF16MM_DOT ? bf16mm_dot : path == BF16MM_AVX512 ? bf16mm_avx512
         : path == BF16MM_AVX2 ? bf16mm_avx2 : widen_scalar;
}

void bf16mm_matmul_path(bf16mm_path path, float *y, const float *x, const uint16_t *p,
                        const float *b, int n, int in, int out)
{
    const bf16mm_args a = {y, x, p, b, n, in, out};
    const bf16mm_fn fn = fn_for(path);
    const int blocks = blocks_of(out);
    if ((double)n * in * out < PAR_MIN) {   /* not even a team of one (cpu.h) */
        fn(&a, 0, blocks);
        return;
    }
#pragma omp parallel
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        const int k0 = blocks * t / nt, k1 = blocks * (t + 1) / nt;
        if (k0 < k1)
            fn(&a, k0, k1);
    }
}

void bf16mm_matmul(float *y, const float *x, const uint16_t *p, const float *b, int n, int in,
                   int out)
{
    bf16mm_matmul_path(bf16mm_path_active(), y, x, p, b, n, in, out);
}

void bf16mm_matvec_range(float *y, const float *x, const uint16_t *p, const float *b, int in,
                         int out, int o0, int o1)
{
    const bf16mm_args a = {y, x, p, b, 1, in, out};
    fn_for(bf16mm_path_active())(&a, o0 / BF16MM_NB, blocks_of(o1));
}
