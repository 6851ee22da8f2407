/* infer_from_gpt2: an inference model built from a training model in memory,
 * for the tests that compare the two (infer/ itself knows no trainer/). */
#ifndef TESTS_INFER_FROM_GPT2_H
#define TESTS_INFER_FROM_GPT2_H

#include <stdio.h>
#include <string.h>

#include "infer/infer.h"
#include "trainer/model.h"

/* infer_tensor_fn over a training model's tensor table, found by name. */
static inline int gpt2_tensor_source(void *ctx, const char *name, int rows, int cols, float *dst,
                                     char *err, size_t errlen)
{
    const gpt2 *g = ctx;
    for (int i = 0; i < g->num_tensors; i++) {
        const param_tensor *t = &g->tensors[i];
        if (strcmp(t->name, name) == 0 && t->shape[0] == rows && t->shape[1] == cols) {
            memcpy(dst, g->params + t->offset, t->numel * sizeof *dst);
            return 0;
        }
    }
    snprintf(err, errlen, "model has no tensor %s of that shape", name);
    return -1;
}

static inline int infer_model_from_gpt2(infer_model *m, const gpt2 *g, infer_quant q, char *err,
                                        size_t errlen)
{
    return infer_model_build(m, &g->dims, q, gpt2_tensor_source, (void *)g, err, errlen);
}

#endif
