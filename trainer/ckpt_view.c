#include "trainer/ckpt_view.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ckpt_state.check: the file's dimensions must be the run config's. */
static int check_dims(void *ctx, const gpt2_dims *file, char *why, size_t whylen)
{
    const run_config *c = ctx;
    const struct { const char *key; int have, want; } dims[] = {
        {"vocab_size", file->vocab_size, c->vocab_size}, {"n_positions", file->n_positions, c->n_positions},
        {"n_embd", file->n_embd, c->n_embd},             {"n_layer", file->n_layer, c->n_layer},
        {"n_head", file->n_head, c->n_head},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i].have != dims[i].want) {
            snprintf(why, whylen, "model mismatch: %s is %d in the checkpoint but %d in the config",
                     dims[i].key, dims[i].have, dims[i].want);
            return -1;
        }
    return 0;
}

int ckpt_view_init(ckpt_view *v, const run_config *c, const gpt2 *m, const adamw_state *opt,
                   char *err, size_t errlen)
{
    memset(v, 0, sizeof *v);
    v->tensors = malloc((size_t)m->num_tensors * sizeof *v->tensors);
    v->config_json = config_to_json(c);
    if (!v->tensors || !v->config_json) {
        ckpt_view_free(v);
        snprintf(err, errlen, "out of memory for the checkpoint's tensor list");
        return -1;
    }
    for (int i = 0; i < m->num_tensors; i++) {
        const param_tensor *t = &m->tensors[i];
        v->tensors[i] = (ckpt_tensor){t->name, t->shape[0], t->ndim == 2 ? t->shape[1] : 0,
                                      t->offset};
    }
    v->s = (ckpt_state){
        .config_json = v->config_json,
        .tensors = v->tensors,
        .num_tensors = m->num_tensors,
        .arena = {m->params, opt->m, opt->v},
        .opt = {.step = opt->step, .lr = c->lr, .beta1 = c->beta1, .beta2 = c->beta2,
                .eps = c->eps, .weight_decay = c->weight_decay, .grad_clip = c->grad_clip},
        .check = check_dims,
        .check_ctx = (void *)c,
    };
    return 0;
}

void ckpt_view_free(ckpt_view *v)
{
    free(v->tensors);
    free(v->config_json);
    v->tensors = NULL;
    v->config_json = NULL;
}

void ckpt_view_loaded(const ckpt_view *v, gpt2 *m, adamw_state *opt)
{
    opt->step = v->s.opt.step;
    gpt2_params_changed(m);
}
