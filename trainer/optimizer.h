/* optimizer: AdamW over the model's parameter arena with global-norm gradient
 * clipping and the learning-rate schedule (linear warmup, cosine decay to
 * min_lr, as nanoGPT).  Weight decay applies to 2-D weights only. */
#ifndef TRAINER_OPTIMIZER_H
#define TRAINER_OPTIMIZER_H

#include <stdbool.h>

#include "comm/zero.h"
#include "trainer/config.h"
#include "trainer/model.h"

/* The moments of all parameters, or of this rank's shard under ZeRO
 * (comm/zero.h: indexed as the shard). */
typedef struct {
    float *m, *v;   /* first and second moments, [n] each */
    float *master;  /* bf16 parameters (optimizer_master_init): the shard's fp32
                     * values [n], which the update applies to; else NULL */
    size_t n;
    int step;       /* optimizer steps taken */
    void *map;      /* file-backed moments: the mapping, else NULL */
    size_t map_len;
} adamw_state;

/* Moments in memory, zeroed. */
int optimizer_create(adamw_state *s, size_t n, char *err, size_t errlen);
/* Moments in a file in dir, memory-mapped (optimizer_offload: file:DIR), so
 * the kernel can page them out: for state larger than the RAM a rank may use.
 * The space is reserved up front (a full disk is an error now, not a crash
 * later) and the file is unlinked at once: the checkpoint is the durable copy. */
int optimizer_create_in_file(adamw_state *s, size_t n, const char *dir, int rank, char *err,
                             size_t errlen);
void optimizer_destroy(adamw_state *s);

/* bf16 parameters (ZeRO with bf16 on the wire): every rank computes with
 * the same bf16-rounded weights, so the allgather can send bf16, and the
 * shard's fp32 values live on in s->master (as mixed-precision training
 * keeps fp32 master weights).  Init takes them from m->params (whole and
 * exact on every rank; the caller then rounds the arena); from then on each
 * update rounds its result into the arena.  0, or -1 when memory runs out. */
int optimizer_master_init(adamw_state *s, gpt2 *m, const zero_shard *z);
/* The shard's fp32 values back into m->params (for an exact allgather). */
void optimizer_master_restore(const adamw_state *s, gpt2 *m, const zero_shard *z);

/* Learning rate for step (0-based). */
float lr_schedule(const run_config *c, int step);

/* Global L2 norm of the gradients. */
float grad_global_norm(const gpt2 *m);

/* Clip to grad_clip (0: no clipping) and apply one AdamW update with lr to
 * the parameters this rank holds in z (NULL: all of them); their gradients in
 * m->grads are multiplied by loss_scale (1 unless fp16 loss scaling), and
 * grad_norm is the norm of the whole model's unscaled gradients.  A
 * non-finite grad_norm skips the update and returns false. */
bool optimizer_step(adamw_state *s, gpt2 *m, const zero_shard *z, const run_config *c, float lr,
                    float grad_norm, float loss_scale);

#endif
