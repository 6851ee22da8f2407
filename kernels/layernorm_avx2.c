/* LayerNorm inner loops for AVX2 + FMA (8 floats a vector); contracts in
 * layernorm_impl.h.  The last partial vector of a row goes through vmaskmov
 * (simd_load8/simd_store8), reading zeros in the lanes past the end. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "kernels/layernorm_impl.h"
#include "kernels/simd_math.h"

static void forward_row(float *out, float *mean, float *rstd, const float *inp,
                        const float *weight, const float *bias, int C)
{
    __m256 sum = _mm256_setzero_ps();
    for (int i = 0; i < C; i += 8)
        sum = _mm256_add_ps(sum, simd_load8(inp + i, C - i));
    const float m = simd_hsum8(sum) / C;
    const __m256 vm = _mm256_set1_ps(m);
    __m256 var = _mm256_setzero_ps();
    for (int i = 0; i < C; i += 8) {
        /* lanes past the end must not add (0 - m)^2: mask the difference */
        const __m256 d = _mm256_and_ps(_mm256_sub_ps(simd_load8(inp + i, C - i), vm),
                                       _mm256_castsi256_ps(simd_mask8(C - i)));
        var = _mm256_fmadd_ps(d, d, var);
    }
    const float s = 1.0f / sqrtf(simd_hsum8(var) / C + LN_EPS);
    const __m256 vs = _mm256_set1_ps(s);
    for (int i = 0; i < C; i += 8) {
        const __m256 norm = _mm256_mul_ps(_mm256_sub_ps(simd_load8(inp + i, C - i), vm), vs);
        simd_store8(out + i, C - i,
                    _mm256_fmadd_ps(norm, simd_load8(weight + i, C - i),
                                    simd_load8(bias + i, C - i)));
    }
    *mean = m;
    *rstd = s;
}

static void backward_row(float *dinp, const float *dout, const float *inp, const float *weight,
                         float mean, float rstd, int C)
{
    const __m256 vm = _mm256_set1_ps(mean), vs = _mm256_set1_ps(rstd);
    __m256 g_sum = _mm256_setzero_ps(), gn_sum = _mm256_setzero_ps();
    for (int i = 0; i < C; i += 8) {   /* lanes past the end have g = 0 and add nothing */
        const __m256 g = _mm256_mul_ps(simd_load8(weight + i, C - i), simd_load8(dout + i, C - i));
        const __m256 norm = _mm256_mul_ps(_mm256_sub_ps(simd_load8(inp + i, C - i), vm), vs);
        g_sum = _mm256_add_ps(g_sum, g);
        gn_sum = _mm256_fmadd_ps(g, norm, gn_sum);
    }
    const __m256 g_mean = _mm256_set1_ps(simd_hsum8(g_sum) / C);
    const __m256 gn_mean = _mm256_set1_ps(simd_hsum8(gn_sum) / C);
    for (int i = 0; i < C; i += 8) {
        const __m256 g = _mm256_mul_ps(simd_load8(weight + i, C - i), simd_load8(dout + i, C - i));
        const __m256 norm = _mm256_mul_ps(_mm256_sub_ps(simd_load8(inp + i, C - i), vm), vs);
        const __m256 t = _mm256_fnmadd_ps(norm, gn_mean, _mm256_sub_ps(g, g_mean));
        simd_store8(dinp + i, C - i, _mm256_fmadd_ps(t, vs, simd_load8(dinp + i, C - i)));
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
            const __m256 vm = _mm256_set1_ps(mean[n]), vs = _mm256_set1_ps(rstd[n]);
            for (int j = 0; j < cw; j += 8) {
                const __m256 gv = simd_load8(g + j, cw - j);
                const __m256 norm = _mm256_mul_ps(_mm256_sub_ps(simd_load8(x + j, cw - j), vm), vs);
                _mm256_storeu_ps(dw + j, _mm256_fmadd_ps(norm, gv, _mm256_loadu_ps(dw + j)));
                _mm256_storeu_ps(db + j, _mm256_add_ps(_mm256_loadu_ps(db + j), gv));
            }
        }
        for (int j = 0; j < cw; j += 8) {
            float *pw = dweight + c0 + j, *pb = dbias + c0 + j;
            simd_store8(pw, cw - j, _mm256_add_ps(simd_load8(pw, cw - j), _mm256_loadu_ps(dw + j)));
            simd_store8(pb, cw - j, _mm256_add_ps(simd_load8(pb, cw - j), _mm256_loadu_ps(db + j)));
        }
    }
}

const layernorm_ops layernorm_ops_avx2 = {forward_row, backward_row, backward_params};
