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

static const convert_ops convert_ops_scalar = {to_bf16_scalar, from_bf16_scalar,
                                               round_bf16_scalar, to_f16_scalar, from_f16_scalar};

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
