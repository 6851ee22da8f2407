/* ckpt_view: the trainer's state as the data io/checkpoint.h takes: the
 * model's tensor table as its tensor list, the run config as JSON, AdamW's
 * step and hyper-parameters, and (reading) the check that a file's model
 * dimensions are the config's.  Parameters and moments are not copied: the
 * arenas point at the model's and optimizer's own arrays. */
#ifndef TRAINER_CKPT_VIEW_H
#define TRAINER_CKPT_VIEW_H

#include <stddef.h>

#include "io/checkpoint.h"
#include "trainer/config.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"

typedef struct {
    ckpt_state s;          /* what ckpt_write, ckpt_save, ckpt_read, ckpt_load_auto take */
    ckpt_tensor *tensors;  /* owned: s.tensors */
    char *config_json;     /* owned: s.config_json */
} ckpt_view;

/* s viewing c (kept by pointer for the check), m's parameters and opt's step
 * and moments (opt->m, opt->v NULL: a caller sets s.stream for them).
 * 0, or -1 with a reason (out of memory). */
int ckpt_view_init(ckpt_view *v, const run_config *c, const gpt2 *m, const adamw_state *opt,
                   char *err, size_t errlen);
void ckpt_view_free(ckpt_view *v);

/* After a read into v->s, loaded or not (the arenas may have changed): opt
 * takes the step read and m refreshes what it derives from its parameters. */
void ckpt_view_loaded(const ckpt_view *v, gpt2 *m, adamw_state *opt);

#endif
