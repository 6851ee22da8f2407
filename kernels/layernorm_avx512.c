/* LayerNorm inner loops for AVX-512 (16 floats a vector); contracts in
 * layernorm_impl.h.  Every loop runs on lane masks, so the last partial vector
 * of a row needs no separate code. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kernels/layernorm_impl.h"
#include "kernels/simd_math.h"

static void forward_row(float *out, float *mean, float *rstd, const float *inp,
                        const float *weight, const float *bias, int C)
{
    __m512 sum = _mm512_setzero_ps();
    for (int i = 0; i < C; i += 16)
        sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(simd_mask16(C - i), inp + i));
    const float m = _mm512_reduce_add_ps(sum) / C;
    const __m512 vm = _mm512_set1_ps(m);
    __m512 var = _mm512_setzero_ps();
    for (int i = 0; i < C; i += 16) {
        const __mmask16 k = simd_mask16(C - i);
        const __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, inp + i), vm);
        var = _mm512_fmadd_ps(d, d, var);
    }
    const float s = 1.0f / sqrtf(_mm512_reduce_add_ps(var) / C + LN_EPS);
    const __m512 vs = _mm512_set1_ps(s);
    for (int i = 0; i < C; i += 16) {
        const __mmask16 k = simd_mask16(C - i);
        const __m512 norm = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, inp + i), vm), vs);
        _mm512_mask_storeu_ps(out + i, k,
                              _mm512_fmadd_ps(norm, _mm512_maskz_loadu_ps(k, weight + i),
                                              _mm512_maskz_loadu_ps(k, bias + i)));
    }
    *mean = m;
    *rstd = s;
}

static void backward_row(float *dinp, const float *dout, const float *inp, const float *weight,
                         float mean, float rstd, int C)
{
    const __m512 vm = _mm512_set1_ps(mean), vs = _mm512_set1_ps(rstd);
    __m512 g_sum = _mm512_setzero_ps(), gn_sum = _mm512_setzero_ps();
    for (int i = 0; i < C; i += 16) {   /* masked-off lanes have g = 0 and add nothing */
        const __mmask16 k = simd_mask16(C - i);
        const __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, weight + i),
                                       _mm512_maskz_loadu_ps(k, dout + i));
        const __m512 norm = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, inp + i), vm), vs);
        g_sum = _mm512_add_ps(g_sum, g);
        gn_sum = _mm512_fmadd_ps(g, norm, gn_sum);
    }
    const __m512 g_mean = _mm512_set1_ps(_mm512_reduce_add_ps(g_sum) / C);
    const __m512 gn_mean = _mm512_set1_ps(_mm512_reduce_add_ps(gn_sum) / C);
    for (int i = 0; i < C; i += 16) {
        const __mmask16 k = simd_mask16(C - i);
        const __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, weight + i),
                                       _mm512_maskz_loadu_ps(k, dout + i));
        const __m512 norm = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, inp + i), vm), vs);
        const __m512 t = _mm512_fnmadd_ps(norm, gn_mean, _mm512_sub_ps(g, g_mean));
        _mm512_mask_storeu_ps(dinp + i, k,
                              _mm512_fmadd_ps(t, vs, _mm512_maskz_loadu_ps(k, dinp + i)));
    }
}

/* The sums live in L1-resident stack arrays; lanes past w load zeros from
 * dout, so they add nothing and full vectors of the arrays can be used. */
static void backward_params(float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *mean, const float *rstd, int N, int stride, int w)
{
    float dw[LN_COL_CHUNK], db[LN_COL_CHUNK];
    for (int c0 = 0; c0 < w; c0 += LN_COL_CHUNK) {
        const int cw = w - c0 < LN_COL_CHUNK ? w - c0 : LN_COL_CHUNK;
        memset(dw, 0, sizeof dw);
        memset(db, 0, sizeof db);
        for (int n = 0; n < N; n++) {
            const float *g = dout + (size_t)n * stride + c0, *x = inp + (size_t)n * stride + c0;
            const __m512 vm = _mm512_set1_ps(mean[n]), vs = _mm512_set1_ps(rstd[n]);
            for (int j = 0; j < cw; j += 16) {
                const __mmask16 k = simd_mask16(cw - j);
                const __m512 gv = _mm512_maskz_loadu_ps(k, g + j);
                const __m512 norm =
                    _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), vm), vs);
                _mm512_storeu_ps(dw + j, _mm512_fmadd_ps(norm, gv, _mm512_loadu_ps(dw + j)));
                _mm512_storeu_ps(db + j, _mm512_add_ps(_mm512_loadu_ps(db + j), gv));
            }
        }
        for (int j = 0; j < cw; j += 16) {
            const __mmask16 k = simd_mask16(cw - j);
            float *pw = dweight + c0 + j, *pb = dbias + c0 + j;
            _mm512_mask_storeu_ps(
                pw, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, pw), _mm512_loadu_ps(dw + j)));
            _mm512_mask_storeu_ps(
                pb, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, pb), _mm512_loadu_ps(db + j)));
        }
    }
}

const layernorm_ops layernorm_ops_avx512 = {forward_row, backward_row, backward_params};
