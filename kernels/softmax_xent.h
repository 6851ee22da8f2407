/* softmax_xent: fused softmax + cross-entropy over the vocabulary.
 * Shapes: logits [N,V] (row n scores the token after position n), targets [N]
 * with values in [0,V), losses [N].
 */
#ifndef KERNELS_SOFTMAX_XENT_H
#define KERNELS_SOFTMAX_XENT_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/cpu.h"

/* losses[n] = -log softmax(logits[n])[targets[n]].  When backward is true the
 * logits are overwritten in place with the gradient of (dloss * sum of losses):
 *   logits[n][v] = dloss * (softmax(logits[n])[v] - (v == targets[n]))
 * so the [N,V] buffer is reused and never held twice. */
void softmax_xent(float *losses, float *logits, const int *targets, int N, int V,
                  float dloss, bool backward);

/* The same with backward, the gradient also written as 16-bit values (bf16, or
 * IEEE fp16 when fp16) into dlogits16 [N,V] while each row is still in cache
 * (bit-identical to softmax_xent then f32_to_bf16 / f32_to_f16). */
void softmax_xent_backward16(float *losses, float *logits, uint16_t *dlogits16, bool fp16,
                             const int *targets, int N, int V, float dloss);

void softmax_xent_isa(isa_t isa, float *losses, float *logits, const int *targets, int N,
                      int V, float dloss, bool backward);

#endif
