#include "trainer/optimizer.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels/adamw.h"
#include "kernels/convert.h"
#include "kernels/pages.h"

int optimizer_create(adamw_state *s, size_t n, char *err, size_t errlen)
{
    *s = (adamw_state){.n = n};
    s->m = pages_alloc_zeroed((n ? n : 1) * sizeof(float));
    s->v = pages_alloc_zeroed((n ? n : 1) * sizeof(float));
    if (!s->m || !s->v) {
        snprintf(err, errlen, "out of memory allocating optimizer state (%.1f MB)", 8.0 * n / 1e6);
        optimizer_destroy(s);
        return -1;
    }
    return 0;
}

int optimizer_create_in_file(adamw_state *s, size_t n, const char *dir, int rank, char *err,
                             size_t errlen)
{
    *s = (adamw_state){.n = n};
    char path[1024];
    snprintf(path, sizeof path, "%s/optimizer-rank%d.XXXXXX", dir, rank);
    int fd = mkstemp(path);
    if (fd < 0) {
        snprintf(err, errlen, "optimizer_offload: cannot create a file in %s: %s", dir,
                 strerror(errno));
        return -1;
    }
    unlink(path);
    size_t len = 2 * (n ? n : 1) * sizeof(float);
    int rc = posix_fallocate(fd, 0, (off_t)len);
    if (rc != 0) {
        snprintf(err, errlen, "optimizer_offload: cannot reserve %.1f MB in %s: %s", len / 1e6, dir,
                 strerror(rc));
        close(fd);
        return -1;
    }
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);   /* the mapping keeps the file */
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "optimizer_offload: cannot map %.1f MB: %s", len / 1e6, strerror(errno));
        return -1;
    }
    s->map = map;
    s->map_len = len;
    s->m = map;
    s->v = s->m + (n ? n : 1);
    return 0;
}

int optimizer_master_init(adamw_state *s, gpt2 *m, const zero_shard *z)
{
    if (!s->master)
        s->master = malloc((z->len ? z->len : 1) * sizeof *s->master);
    if (!s->master)
        return -1;
    for (int k = 0; k < z->npieces; k++) {
        size_t lo, hi;
        zero_slice(z, k, z->rank, &lo, &hi);
        memcpy(s->master + z->at[k], m->params + lo, (hi - lo) * sizeof *s->master);
    }
    return 0;
}

void optimizer_master_restore(const adamw_state *s, gpt2 *m, const zero_shard *z)
{
    for (int k = 0; k < z->npieces; k++) {
        size_t lo, hi;
        zero_slice(z, k, z->rank, &lo, &hi);
        memcpy(m->params + lo, s->master + z->at[k], (hi - lo) * sizeof *s->master);
    }
}

void optimizer_destroy(adamw_state *s)
{
    free(s->master);
    if (s->map) {
        munmap(s->map, s->map_len);
    } else {
        free(s->m);
        free(s->v);
    }
    memset(s, 0, sizeof *s);
}

float lr_schedule(const run_config *c, int step)
{
    if (step < c->warmup_steps)   /* + 1 in float: warmup_steps may be INT_MAX */
        return c->lr * (float)(step + 1) / ((float)c->warmup_steps + 1.0f);
    if (step >= c->lr_decay_steps)
        return c->min_lr;
    double ratio = (double)(step - c->warmup_steps) / (double)(c->lr_decay_steps - c->warmup_steps);
    double coeff = 0.5 * (1.0 + cos(M_PI * ratio));
    return (float)(c->min_lr + coeff * (c->lr - c->min_lr));
}

float grad_global_norm(const gpt2 *m)
{
    return (float)sqrt(sumsq(m->grads, m->num_params));
}

bool optimizer_step(adamw_state *s, gpt2 *m, const zero_shard *z, const run_config *c, float lr,
                    float grad_norm, float loss_scale)
{
    if (!isfinite(grad_norm))
        return false;
    float scale = 1.0f / loss_scale;   /* unscale first, then clip */
    if (c->grad_clip > 0 && grad_norm > c->grad_clip)
        scale *= c->grad_clip / (grad_norm + 1e-6f);
    s->step++;
    for (int i = 0; i < m->num_tensors; i++) {   /* each tensor's parts this rank holds */
        const param_tensor *t = &m->tensors[i];
        adamw_params p = {.lr = lr, .beta1 = c->beta1, .beta2 = c->beta2, .eps = c->eps,
                          .weight_decay = t->decay ? c->weight_decay : 0.0f,
                          .grad_scale = scale, .step = s->step};
        const size_t hi = t->offset + t->numel;
        for (size_t b = t->offset, len; (len = zero_next_held(z, z ? z->rank : 0, &b, hi)) > 0;
             b += len) {
            size_t k = zero_index(z, b);
            if (!s->master) {
                adamw_update(m->params + b, m->grads + b, s->m + k, s->v + k, len, &p);
                continue;
            }
            adamw_update(s->master + k, m->grads + b, s->m + k, s->v + k, len, &p);
            memcpy(m->params + b, s->master + k, len * sizeof *m->params);
            round_to_bf16(m->params + b, len);
        }
    }
    gpt2_params_changed(m);
    return true;
}
