/* Fused softmax + cross-entropy: the scalar reference (exp and sums in
 * double), the threaded driver and the run-time dispatch. */
#include "kernels/softmax_xent.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>

#include "kernels/convert.h"
#include "kernels/softmax_xent_impl.h"

/* Below this many logits a parallel region costs more than it saves. */
enum { PAR_MIN = 1 << 15 };

/* Stable: every exponent is x - max <= 0. */
static float row_scalar(float *x, const float *next, int target, int V, float dloss,
                        bool backward)
{
    float mx = -INFINITY;
    for (int v = 0; v < V; v++)
        mx = fmaxf(mx, x[v]);
    double sum = 0;
    for (int v = 0; v < V; v++)
        sum += exp((double)x[v] - mx);
    const float loss = (float)(log(sum) - ((double)x[target] - mx));
    if (backward)
        for (int v = 0; v < V; v++)
            x[v] = (float)(dloss * (exp((double)x[v] - mx) / sum - (v == target)));
    return loss;
}

static const softmax_xent_ops softmax_xent_ops_scalar = {row_scalar};

static const softmax_xent_ops *ops_for(isa_t isa)
{
    return cpu_pick(isa, &softmax_xent_ops_scalar, &softmax_xent_ops_avx2, &softmax_xent_ops_avx512);
}

/* The threaded driver: rows are independent.  narrow, when given (backward
 * only), also writes each row's gradient as 16-bit values into dlogits16
 * while the row is in cache; one row is below convert's parallel threshold,
 * so it runs on this thread. */
static void run_rows(const softmax_xent_ops *ops, float *losses, float *logits,
                     const int *targets, int N, int V, float dloss, bool backward,
                     void (*narrow)(uint16_t *, const float *, size_t), uint16_t *dlogits16)
{
#pragma omp parallel for schedule(static) if ((size_t)N * V >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        assert(targets[n] >= 0 && targets[n] < V);
        float *x = logits + (size_t)n * V;
        losses[n] = ops->row(x, n + 1 < N ? x + V : NULL, targets[n], V, dloss, backward);
        if (narrow)
            narrow(dlogits16 + (size_t)n * V, x, (size_t)V);
    }
}

void softmax_xent_isa(isa_t isa, float *losses, float *logits, const int *targets, int N, int V,
                      float dloss, bool backward)
{
    run_rows(ops_for(isa), losses, logits, targets, N, V, dloss, backward, NULL, NULL);
}

void softmax_xent_backward16(float *losses, float *logits, uint16_t *dlogits16, bool fp16,
                             const int *targets, int N, int V, float dloss)
{
    run_rows(ops_for(cpu_isa()), losses, logits, targets, N, V, dloss, true,
             fp16 ? f32_to_f16 : f32_to_bf16, dlogits16);
}

void softmax_xent(float *losses, float *logits, const int *targets, int N, int V, float dloss,
                  bool backward)
{
    softmax_xent_isa(cpu_isa(), losses, logits, targets, N, V, dloss, backward);
}
