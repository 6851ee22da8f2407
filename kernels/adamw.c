/* AdamW and the squared norm: the scalar reference (the header's formula
 * literally), the threaded driver and the run-time dispatch. */
#include "kernels/adamw.h"

#include <assert.h>
#include <math.h>

#include "kernels/adamw_impl.h"

enum {
    PAR_MIN = 1 << 15,   /* fewer values: a parallel region costs more than it saves */
    CHUNK = 1 << 14,     /* values per work item of the update */
    SUMSQ_PARTS = 64,    /* sumsq's partial sums, added in order whatever the thread count */
};

static void update_scalar(float *param, const float *grad, float *m, float *v, size_t n,
                          const adamw_params *p, float bc1, float bc2)
{
    for (size_t i = 0; i < n; i++) {
        const float g = grad[i] * p->grad_scale;
        param[i] -= p->lr * p->weight_decay * param[i];
        m[i] = p->beta1 * m[i] + (1.0f - p->beta1) * g;
        v[i] = p->beta2 * v[i] + (1.0f - p->beta2) * g * g;
        const float m_hat = m[i] / bc1, v_hat = v[i] / bc2;
        param[i] -= p->lr * m_hat / (sqrtf(v_hat) + p->eps);
    }
}

static double sumsq_scalar(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return s;
}

static const adamw_ops adamw_ops_scalar = {update_scalar, sumsq_scalar};

static const adamw_ops *ops_for(isa_t isa)
{
    return cpu_pick(isa, &adamw_ops_scalar, &adamw_ops_avx2, &adamw_ops_avx512);
}

void adamw_update_isa(isa_t isa, float *param, const float *grad, float *m, float *v, size_t n,
                      const adamw_params *p)
{
    assert(p->step >= 1);
    const adamw_ops *ops = ops_for(isa);
    const float bc1 = (float)(1.0 - pow(p->beta1, p->step));
    const float bc2 = (float)(1.0 - pow(p->beta2, p->step));
    CPU_FOR_CHUNKS(n, CHUNK, PAR_MIN, i, len,
                   ops->update(param + i, grad + i, m + i, v + i, len, p, bc1, bc2));
}

double sumsq_isa(isa_t isa, const float *x, size_t n)
{
    const adamw_ops *ops = ops_for(isa);
    const size_t part = (n + SUMSQ_PARTS - 1) / SUMSQ_PARTS;
    double sums[SUMSQ_PARTS];
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int c = 0; c < SUMSQ_PARTS; c++) {
        const size_t lo = n < c * part ? n : c * part, hi = n - lo < part ? n : lo + part;
        sums[c] = ops->sumsq(x + lo, hi - lo);
    }
    double s = 0;
    for (int c = 0; c < SUMSQ_PARTS; c++)
        s += sums[c];
    return s;
}

void adamw_update(float *param, const float *grad, float *m, float *v, size_t n,
                  const adamw_params *p)
{
    adamw_update_isa(cpu_isa(), param, grad, m, v, n, p);
}

double sumsq(const float *x, size_t n)
{
    return sumsq_isa(cpu_isa(), x, n);
}
