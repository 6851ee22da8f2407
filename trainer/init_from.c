#include "trainer/init_from.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/dataset.h"

/* A run resumed while init_from names a model of other dimensions (a new
 * fine-tune pointed at an out_dir that holds another run) would go on
 * training the old model unasked.  A file that is gone or unreadable is not
 * an error: a restart does not need it. */
static int check_same_model(const char *init_from, const char *ckpt, const gpt2_dims *d,
                            char *err, size_t errlen)
{
    ckpt_model_file *f;
    gpt2_dims i;
    char why[1024];
    if (ckpt_model_open(init_from, &f, &i, why, sizeof why) != 0)
        return 0;
    ckpt_model_close(f);
    /* vocab_size: the run may pad the file's vocabulary, never shrink it */
    if (i.n_layer == d->n_layer && i.n_embd == d->n_embd && i.n_head == d->n_head &&
        i.n_positions == d->n_positions && i.vocab_size <= d->vocab_size)
        return 0;
    snprintf(err, errlen,
             "--resume would continue %s (n_layer %d, n_embd %d, n_head %d, vocab_size %d), "
             "not init_from %s (n_layer %d, n_embd %d, n_head %d, vocab_size %d): use another "
             "out_dir for a new run",
             ckpt, d->n_layer, d->n_embd, d->n_head, d->vocab_size, init_from, i.n_layer,
             i.n_embd, i.n_head, i.vocab_size);
    return -1;
}

int init_from_dims(run_config *c, const char *resume, char *err, size_t errlen)
{
    ckpt_model_file *f;
    gpt2_dims d;
    char why[1024], newest[1100];
    const char *from = c->init_from, *what = "init_from";
    bool known = false;   /* ckpt_auto_dims read them from the file it chose */
    if (resume && strcmp(resume, "auto") != 0) {
        from = resume;
        what = "--resume";
    } else if (resume && ckpt_auto_dims(c->out_dir, &d, newest, sizeof newest)) {
        from = newest;
        known = true;
    }
    if (!known) {
        if (ckpt_model_open(from, &f, &d, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s: %s", what, why);
            return -1;
        }
        ckpt_model_close(f);
    }
    if (from != c->init_from && check_same_model(c->init_from, from, &d, err, errlen) != 0)
        return -1;
    /* (a resume checks the data's tokenizer against its checkpoint itself) */
    if (from == c->init_from && dataset_check_tokenizer(c->data_dir, from, err, errlen) != 0)
        return -1;
    struct { const char *key; int *field, file; } dims[] = {
        {"vocab_size", &c->vocab_size, d.vocab_size}, {"n_positions", &c->n_positions, d.n_positions},
        {"n_embd", &c->n_embd, d.n_embd},             {"n_layer", &c->n_layer, d.n_layer},
        {"n_head", &c->n_head, d.n_head},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        int given = *dims[i].field, file = dims[i].file;
        int padded = i == 0 && given > file;   /* extra vocabulary rows are allowed */
        if (config_key_set(c, dims[i].key) && given != file && !padded) {
            snprintf(err, errlen, "config: %s is %d but %s has %d (leave it out to take the "
                     "file's)%s", dims[i].key, given, from, file,
                     i == 0 ? "; a larger vocab_size pads the vocabulary" : "");
            return -1;
        }
        if (!config_key_set(c, dims[i].key))
            *dims[i].field = file;
    }
    return 0;
}

int init_from_load(const char *path, gpt2 *m, char *err, size_t errlen)
{
    ckpt_model_file *f;
    gpt2_dims d;
    if (ckpt_model_open(path, &f, &d, err, errlen) != 0)
        return -1;
    int rc = 0;
    for (int i = 0; i < m->num_tensors && rc == 0; i++) {
        const param_tensor *t = &m->tensors[i];
        int rows = t->shape[0];
        float *dst = m->params + t->offset;
        if (strcmp(t->name, "transformer.wte.weight") == 0 && d.vocab_size < rows) {
            memset(dst + (size_t)d.vocab_size * t->shape[1], 0,
                   (size_t)(rows - d.vocab_size) * t->shape[1] * sizeof *dst);
            rows = d.vocab_size;
        }
        rc = ckpt_model_tensor(f, t->name, rows, t->ndim == 2 ? t->shape[1] : 0, dst, err, errlen);
    }
    ckpt_model_close(f);
    gpt2_params_changed(m);
    return rc;
}
