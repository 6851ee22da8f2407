#include "trainer/checkpointing.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "io/checkpoint.h"
#include "io/tokenizer.h"

/* The handler bumps requests; the loop compares it with what it has handled,
 * so a signal arriving while the loop looks is never lost. */
static volatile sig_atomic_t requests;
static sig_atomic_t handled;
static const char *resume_spec;

void checkpoint_set_resume(const char *spec)
{
    resume_spec = spec;
}

void checkpoint_request(void)
{
    requests++;
}

bool checkpoint_due(const run_config *c, const comm_world *w, int done, bool final)
{
    sig_atomic_t seen = requests;
    bool asked = seen != handled;
    handled = seen;
    asked = comm_max_int(asked) != 0;
    return asked || final || (c->checkpoint_every > 0 && done % c->checkpoint_every == 0);
}

/* Global samples per optimizer step (train.c: B per rank per micro-batch). */
static uint64_t samples_per_step(const run_config *c, const comm_world *w)
{
    return (uint64_t)c->grad_accum * (uint64_t)c->batch_size * (uint64_t)w->size;
}

/* Rank 0's part of checkpoint_save. */
static int save_rank0(const run_config *c, const comm_world *w, gpt2 *m, adamw_state *opt,
                      int done, double loss_scale, status_log *st, char *err, size_t errlen)
{
    double t0 = mono_time();
    char path[1100];
    snprintf(path, sizeof path, "%s/tokenizer.json", c->data_dir);
    tokenizer *tok = tokenizer_load(path, err, errlen);   /* stored so infer needs no data dir */
    if (!tok)
        return -1;
    uint64_t samples = (uint64_t)done * samples_per_step(c, w);
    ckpt_state s = {.cfg = c, .model = m, .opt = opt, .tok = tok,
                    .train = {.step = done, .tokens_seen = samples * (uint64_t)c->seq_len,
                              .data_cursor = samples, .seed = c->seed, .loss_scale = loss_scale}};
    int rc = ckpt_save(c->out_dir, &s, c->keep_checkpoints, path, sizeof path, err, errlen);
    tokenizer_free(tok);
    if (rc != 0)
        return -1;
    double dt = mono_time() - t0;
    struct stat sb;
    double mb = stat(path, &sb) == 0 ? (double)sb.st_size / 1e6 : 0;
    status_checkpoint(st, done, c->max_steps, path, mb, dt, dt);
    return 0;
}

/* ZeRO: each rank holds a shard of the moments.  Gathering the shards into the
 * file (bounded by one tensor per rank) is not written yet. */
static bool sharded(const gpt2 *m, const adamw_state *opt)
{
    return opt->n != m->num_params;
}

int checkpoint_save(const run_config *c, const comm_world *w, gpt2 *m, adamw_state *opt,
                    int done, double loss_scale, status_log *st, char *err, size_t errlen)
{
    static bool warned;
    if (sharded(m, opt)) {
        if (!warned)
            status_event(st, "event", done, "warning: no checkpoint written: checkpoints of "
                         "sharded optimizer state (zero_stage > 0) are not available yet");
        warned = true;
        return 0;
    }
    int rc = w->rank == 0 ? save_rank0(c, w, m, opt, done, loss_scale, st, err, errlen) : 0;
    if (comm_max_int(rc != 0)) {
        if (rc == 0)
            snprintf(err, errlen, "rank 0 failed to write the checkpoint");
        return -1;
    }
    return 0;
}

/* Warnings when the run's data order differs from the checkpointed run's. */
static void check_data_order(const run_config *c, const comm_world *w, const ckpt_train_info *t,
                             status_log *st)
{
    char msg[300];
    if (t->seed != c->seed) {
        snprintf(msg, sizeof msg, "warning: the checkpoint was trained with seed %lld, the config "
                 "has %lld: the sample order changes", t->seed, c->seed);
        status_event(st, "event", t->step, msg);
    }
    uint64_t cursor = (uint64_t)t->step * samples_per_step(c, w);
    if (cursor != t->data_cursor) {
        snprintf(msg, sizeof msg, "warning: batch_size x grad_accum x ranks changed since the checkpoint: "
                 "data resumes at sample %llu, not at the saved cursor %llu",
                 (unsigned long long)cursor, (unsigned long long)t->data_cursor);
        status_event(st, "event", t->step, msg);
    }
}

/* Rank 0's part of checkpoint_resume: finds and loads the checkpoint. */
static int resume_rank0(const run_config *c, const comm_world *w, gpt2 *m, adamw_state *opt,
                        status_log *st, int *start_step, double *loss_scale, char *err,
                        size_t errlen)
{
    ckpt_state s = {.cfg = c, .model = m, .opt = opt};
    char path[1100], warn[1024], msg[1400];
    if (strcmp(resume_spec, "auto") != 0) {
        if (ckpt_read(resume_spec, &s, err, errlen) != 0)
            return -1;
        snprintf(path, sizeof path, "%s", resume_spec);
    } else {
        int found = ckpt_load_auto(c->out_dir, &s, path, sizeof path, warn, sizeof warn, err, errlen);
        if (found < 0)
            return -1;
        if (found == 0) {
            snprintf(msg, sizeof msg, "resume auto: no checkpoint in %s, starting fresh", c->out_dir);
            status_event(st, "event", 0, msg);
            return 0;
        }
        if (warn[0]) {
            snprintf(msg, sizeof msg, "warning: resume auto skipped: %s", warn);
            status_event(st, "event", s.train.step, msg);
        }
    }
    *start_step = s.train.step;
    if (s.train.loss_scale > 0)
        *loss_scale = s.train.loss_scale;
    snprintf(msg, sizeof msg, "resumed from %s at step %d", path, s.train.step);
    status_event(st, "event", s.train.step, msg);
    check_data_order(c, w, &s.train, st);
    if (s.train.step >= c->max_steps) {
        snprintf(msg, sizeof msg, "the checkpoint is at step %d, max_steps is %d: nothing to train",
                 s.train.step, c->max_steps);
        status_event(st, "event", s.train.step, msg);
    }
    return 0;
}

int checkpoint_resume(const run_config *c, const comm_world *w, gpt2 *m, adamw_state *opt,
                      status_log *st, int *start_step, double *loss_scale, char *err,
                      size_t errlen)
{
    *start_step = 0;
    if (!resume_spec)
        return 0;
    if (sharded(m, opt)) {
        snprintf(err, errlen, "--resume: resuming sharded optimizer state (zero_stage > 0) is "
                 "not available yet");
        return -1;
    }
    int rc = w->rank == 0 ? resume_rank0(c, w, m, opt, st, start_step, loss_scale, err, errlen) : 0;
    if (comm_max_int(rc != 0)) {
        if (rc == 0)
            snprintf(err, errlen, "rank 0 failed to load the checkpoint");
        return -1;
    }
    if (w->size > 1) {   /* the other ranks take rank 0's state (values >= 0: max = rank 0's) */
        *start_step = comm_max_int(w->rank == 0 ? *start_step : 0);
        *loss_scale = comm_sum_double(w->rank == 0 ? *loss_scale : 0);
        opt->step = comm_max_int(w->rank == 0 ? opt->step : 0);
        comm_broadcast_floats(m->params, m->num_params, 0);
        comm_broadcast_floats(opt->m, opt->n, 0);
        comm_broadcast_floats(opt->v, opt->n, 0);
        gpt2_params_changed(m);
    }
    return 0;
}
