/* init_from: start a run from the weights of a checkpoint (an imported GPT-2,
 * or another run's checkpoint), with a fresh optimizer at step 0.
 *
 * The model's dimensions come from the file: a dimension the config leaves at
 * its default is taken from it, one the config gives must agree, except
 * vocab_size, which may be larger (padding rows, as llm.c pads 50257 to
 * 50304): those rows start at zero.  The data's tokenizer must be the file's.
 *
 * A run resumed from one of its checkpoints starts from that instead: it
 * takes the checkpoint's dimensions, and init_from's weights are not read
 * (a restart must not fail because the file moved since the run started);
 * where the file is still there, a model of other dimensions is refused, as
 * the run would otherwise go on training the checkpoint's model unasked.
 */
#ifndef TRAINER_INIT_FROM_H
#define TRAINER_INIT_FROM_H

#include <stddef.h>

#include "trainer/config.h"
#include "trainer/model.h"

/* Reads c->init_from's dimensions into c (before config_finalize), or when
 * --resume (NULL: none) will load a checkpoint (a PATH, or auto and out_dir
 * holds one) that checkpoint's.  0, or -1 with a one-line reason naming the
 * key that disagrees, or both models where a resume and init_from differ. */
int init_from_dims(run_config *c, const char *resume, char *err, size_t errlen);

/* Fills m->params with the file's weights (m made with the dimensions
 * init_from_dims settled; padded vocabulary rows zeroed). */
int init_from_load(const char *path, gpt2 *m, char *err, size_t errlen);

#endif
