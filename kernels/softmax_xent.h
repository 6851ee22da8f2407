/* softmax_xent: fused softmax + cross-entropy over the vocabulary.
 * Shapes: logits [N,V] (row n scores the token after position n), targets [N]
 * with values in [0,V), losses [N].
 */
#ifndef KERNELS_SOFTMAX_XENT_H
#define KERNELS_SOFTMAX_XENT_H

#include <stdbool.h>

#include "kernels/cpu.h"

/* losses[n] = -log softmax(logits[n])[targets[n]].  When backward is true the
 * logits are overwritten in place with the gradient of (dloss * sum of losses):
 *   logits[n][v] = dloss * (softmax(logits[n])[v] - (v == targets[n]))
 * so the [N,V] buffer is reused and never held twice. */
void softmax_xent(float *losses, float *logits, const int *targets, int N, int V,
                  float dloss, bool backward);

void softmax_xent_isa(isa_t isa, float *losses, float *logits, const int *targets, int N,
                      int V, float dloss, bool backward);

#endif
