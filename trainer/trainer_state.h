/* trainer_state: one rank's run, as trainer/setup.c opens it and
 * trainer/train.c steps it (private to those two: trainer/train.h is the
 * interface).  setup.c holds what happens once (memory check, measured
 * choices, model, data, the gradient exchange, services); train.c the step,
 * its communication and the loop. */
#ifndef TRAINER_TRAINER_STATE_H
#define TRAINER_TRAINER_STATE_H

#include <stdbool.h>
#include <stddef.h>

#include "comm/buckets.h"
#include "comm/comm.h"
#include "comm/node_share.h"
#include "comm/sparse.h"
#include "comm/zero.h"
#include "io/dataset.h"
#include "io/loader.h"
#include "trainer/autotune.h"
#include "trainer/checkpointing.h"
#include "trainer/control.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"
#include "trainer/publisher.h"
#include "trainer/scaler.h"
#include "trainer/status.h"
#include "trainer/train.h"

typedef struct {
    const run_config *cfg;
    const comm_world *world;
    train_requests *req;     /* stop and checkpoint requests (signals, control socket) */
    checkpointer *ckpt;      /* when to save, the background writer, --resume */
    bool config_refused;     /* the start was refused for the config's mismatch with the
                              * data (train_result.bad_config) */
    int out_lock;            /* rank 0: out_dir's lock (fs_lock_dir), else -1 */
    grad_buckets *buckets;   /* with several ranks; else NULL */
    sparse_rows embed_sum;   /* with several ranks: wte's input-side gradient rows */
    bool zero;               /* zero_stage >= 1 on several ranks: optimizer state sharded */
    zero_shard shard;        /* this rank's part of the parameters (for buckets, or
                              * zero: the summed gradients are model.grads[shard]) */
    double optimizer_s;      /* the last optimizer step */
    bool params_stale;       /* ZeRO: only this rank's shard of the parameters is
                              * current until the allgather (gather_params) */
    bool bf16_params;        /* ZeRO, bf16 precision and wire: the allgather sends bf16,
                              * every rank computes with the bf16-rounded weights and the
                              * shard's fp32 values are opt.master */
    size_t *fwd_offsets, *fwd_sizes;   /* the tensors in the order forward reads them */
    loader *batches;         /* training batches, prepared ahead by a thread */
    loss_scaler scaler;      /* fp16: dynamic loss scale; else fixed at 1 */
    bool fp16;
    double loader_wait_s;    /* time the last step waited for them */
    double comm_s;           /* time waiting for gradient reduction in the last step */
    double comm_exposed_s;   /* the last step's waits for any communication (gradients,
                              * embedding rows, ZeRO's parameter allgather) */
    double comm_total_s;     /* the last step's communication in flight, hidden or not */
    double comm_cpu_s;       /* the progress thread's CPU time in the last step */
    dataset data;
    node_share *node;        /* the packed weights shared on this node; else NULL */
    char pack_unshared[160]; /* why the ranks could not share them, for the training event */
    node_share *arenas;      /* every rank's parameters and gradients, where all ranks run
                              * on this node (comm/local_exchange.h); else NULL */
    char arenas_unshared[160];   /* why they could not be, for the training event */
    gpt2_pack_share pack_share;
    gpt2 model;
    weight_grad_choice weight_grad;   /* the weight gradients' kernel, measured */
    attention_choice attention;       /* bf16 runs: attention's products, measured */
    adamw_state opt;
    status_log status;
    publisher *pub;          /* status socket (rank 0) */
    control_server *ctl;     /* control requests (rank 0) */
    int *inputs, *targets;   /* [B,T] */
    int start_step;          /* 0, or the step a resumed run starts at */
    bool init_from_deferred; /* init_from's weights wait for --resume to find no checkpoint */
} trainer;

/* Opens a rank's run: checks the memory the run needs, then measures
 * (precision auto: c's precision becomes the one chosen, pc says what was
 * measured) the precision and the weight gradients' kernel, so a model too
 * large for memory is refused before any product of its size is timed; then
 * model, data, exchange and reporting.  Every rank stops together when one
 * cannot start.  0, or -1 with err set; trainer_close either way. */
int trainer_open(trainer *tr, run_config *c, const char *resume, const comm_world *w,
                 train_requests *req, precision_choice *pc, char *err, size_t errlen);
void trainer_close(trainer *tr);

/* Loads init_from's weights into the model on every rank (rank 0 reads the
 * file).  0, or -1 with err set on every rank.  Collective. */
int trainer_init_from(trainer *tr, char *err, size_t errlen);

/* Whether rc == 0 on every rank (a collective, what names it for the
 * watchdog): -1 on all of them otherwise, and a rank that did not fail itself
 * puts why_other in err.  _after: some rank may first work for up to work_s
 * more (watchdog_arm_for), such as rank 0 reading a large file. */
int all_ranks_ok(int rc, const char *what, const char *why_other, char *err, size_t errlen);
int all_ranks_ok_after(int rc, const char *what, double work_s, const char *why_other, char *err,
                       size_t errlen);

/* How many times a supervisor started this job again: launch/run.sh
 * --max-restarts sets GPT_RESTARTS, Slurm sets SLURM_RESTART_COUNT on a
 * requeued job (read when GPT_RESTARTS is unset or empty).  0 and *count,
 * or -1 with the reason (kernels/env.h) and *count = 0. */
int restart_count(int *count, char *err, size_t errlen);

#endif
