#include "trainer/checkpointing.h"

#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
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

/* Global samples per optimizer step (train.c: B per rank per micro-batch). */
static uint64_t samples_per_step(const run_config *c, const comm_world *w)
{
    return (uint64_t)c->grad_accum * (uint64_t)c->batch_size * (uint64_t)w->size;
}

static ckpt_train_info train_info(const run_config *c, const comm_world *w, int done,
                                  double loss_scale)
{
    uint64_t samples = (uint64_t)done * samples_per_step(c, w);
    return (ckpt_train_info){.step = done, .tokens_seen = samples * (uint64_t)c->seq_len,
                             .data_cursor = samples, .seed = c->seed, .loss_scale = loss_scale};
}

/* Moments sharded over ranks (ZeRO) move one tensor at a time.  Rank 0 drives:
 * it broadcasts each request (a tensor, all shards into its snapshot, or done)
 * and the others serve requests until done.  Rank 0 sends done however its
 * read or write ended, so a file that fails halfway (a full disk, a damaged
 * file that --resume auto skips) leaves no rank waiting; a resume that goes on
 * to another file simply hands out every tensor again. */
enum { REQ_DONE = -1, REQ_SHARDS = -2 };   /* >= 0: tensor k of m, or k - num_tensors of v */

typedef struct {
    const zero_shard *z;
    const gpt2 *m;
    adamw_state *opt;   /* this rank's shard */
} shard_io;

static float *shard_of(const shard_io *io, int moment)
{
    return moment ? io->opt->v : io->opt->m;
}

/* ckpt_moments.get on rank 0: the tensor from every rank's shard. */
static int gather_tensor(void *ctx, int moment, const param_tensor *t, float *buf)
{
    const shard_io *io = ctx;
    zero_broadcast_int(moment * io->m->num_tensors + (int)(t - io->m->tensors));
    zero_gather_range(io->z, shard_of(io, moment), t->offset, t->numel, buf);
    return 0;
}

/* ckpt_moments.put on rank 0: each rank's slice of the tensor to it. */
static int scatter_tensor(void *ctx, int moment, const param_tensor *t, const float *buf)
{
    const shard_io *io = ctx;
    zero_broadcast_int(moment * io->m->num_tensors + (int)(t - io->m->tensors));
    zero_scatter_range(io->z, buf, t->offset, t->numel, shard_of(io, moment));
    return 0;
}

/* The other ranks' side until rank 0 is done: save sends, resume receives. */
static void serve(const shard_io *io, bool save)
{
    int nt = io->m->num_tensors;
    for (int req; (req = zero_broadcast_int(REQ_DONE)) != REQ_DONE;) {
        if (req == REQ_SHARDS) {
            zero_gather_to_root(io->z, io->opt->m, NULL);
            zero_gather_to_root(io->z, io->opt->v, NULL);
            continue;
        }
        const param_tensor *t = &io->m->tensors[req % nt];
        if (save)
            zero_gather_range(io->z, shard_of(io, req / nt), t->offset, t->numel, NULL);
        else
            zero_scatter_range(io->z, NULL, t->offset, t->numel, shard_of(io, req / nt));
    }
}

/* Rank 0 writes s (model, opt, train set) with its tokenizer (stored so infer
 * needs no data dir); the path written goes to path, its size to *mb. */
static int write_file(const run_config *c, ckpt_state *s, char *path, size_t pathlen, double *mb,
                      char *err, size_t errlen)
{
    char tpath[1100];
    snprintf(tpath, sizeof tpath, "%s/tokenizer.json", c->data_dir);
    tokenizer *tok = tokenizer_load(tpath, err, errlen);
    if (!tok)
        return -1;
    s->tok = tok;
    int rc = ckpt_save(c->out_dir, s, c->keep_checkpoints, path, pathlen, err, errlen);
    s->tok = NULL;
    tokenizer_free(tok);
    if (rc != 0)
        return -1;
    struct stat sb;
    *mb = stat(path, &sb) == 0 ? (double)sb.st_size / 1e6 : 0;
    return 0;
}

/* checkpoint_async = 0: rank 0 writes the file in the loop (under ZeRO
 * gathering the moments one tensor at a time). */
static int save_sync(const run_config *c, const comm_world *w, gpt2 *m, adamw_state *opt,
                     const zero_shard *z, int done, double loss_scale, status_log *st, char *err,
                     size_t errlen)
{
    double t0 = mono_time(), mb;
    char path[1100];
    shard_io io = {z, m, opt};
    ckpt_moments gather = {.get = gather_tensor, .ctx = &io};
    ckpt_state s = {.cfg = c, .model = m, .opt = opt, .moments = z ? &gather : NULL,
                    .train = train_info(c, w, done, loss_scale)};
    if (write_file(c, &s, path, sizeof path, &mb, err, errlen) != 0)
        return -1;
    double dt = mono_time() - t0;
    status_checkpoint(st, done, c->max_steps, path, mb, dt, dt);
    return 0;
}

/* Rank 0's background writer (checkpoint_async = 1).  Who touches what:
 *  - the snapshot (buf and everything down to blocked_s) is written by the
 *    training thread only while running is false, and read by the writer
 *    thread only between pthread_create and pthread_join;
 *  - the result (rc, err, path, write_s, size_mb) is written by the writer
 *    only, and read by the training thread only after pthread_join;
 *  - finished (release/acquire) only tells the training thread that a join
 *    will not block; running and thread belong to the training thread.
 * pthread_create and pthread_join order the two sides, so no lock is needed.
 * The status log and the publisher are used by the training thread alone. */
static struct {
    bool running;
    pthread_t thread;
    atomic_int finished;
    /* snapshot */
    float *buf;              /* params, m, v: 3 x cap floats, allocated once */
    size_t cap;
    run_config cfg;
    gpt2 model;              /* the live model's struct with params -> buf: the writer reads
                              * only its tensor table (fixed after gpt2_create) and params */
    adamw_state opt;         /* m, v -> buf; step */
    ckpt_train_info train;
    int done, max_steps;
    double blocked_s;
    /* result */
    int rc;
    char err[768], path[1100];
    double write_s, size_mb;
} saver;

static void *writer_main(void *arg)
{
    (void)arg;
    double t0 = mono_time();
    ckpt_state s = {.cfg = &saver.cfg, .model = &saver.model, .opt = &saver.opt,
                    .train = saver.train};
    saver.rc = write_file(&saver.cfg, &s, saver.path, sizeof saver.path, &saver.size_mb,
                          saver.err, sizeof saver.err);
    saver.write_s = mono_time() - t0;
    atomic_store_explicit(&saver.finished, 1, memory_order_release);
    return NULL;
}

/* The result of the last write: its record, or -1 with the reason in err. */
static int report(status_log *st, char *err, size_t errlen)
{
    if (saver.rc != 0) {
        snprintf(err, errlen, "checkpoint of step %d failed: %s", saver.done, saver.err);
        return -1;
    }
    status_checkpoint(st, saver.done, saver.max_steps, saver.path, saver.size_mb, saver.write_s,
                      saver.blocked_s);
    return 0;
}

/* Rank 0: joins the writer when it has finished (or, with wait, waits for it)
 * and reports it.  0 also when there is nothing to collect yet. */
static int collect(status_log *st, bool wait, char *err, size_t errlen)
{
    if (!saver.running ||
        (!wait && !atomic_load_explicit(&saver.finished, memory_order_acquire)))
        return 0;
    pthread_join(saver.thread, NULL);
    saver.running = false;
    return report(st, err, errlen);
}

/* dst = src (src NULL: zeros) with the process's OpenMP threads (memory
 * bandwidth, not one core), one contiguous piece per thread: pieces this
 * large make glibc's memcpy use non-temporal stores, 1.6x faster here than
 * 1 MB pieces copied through the cache. */
static void copy_floats(float *dst, const float *src, size_t n)
{
#pragma omp parallel
    {
        size_t k = (size_t)omp_get_thread_num(), threads = (size_t)omp_get_num_threads();
        size_t b = n / threads * k, e = k + 1 == threads ? n : n / threads * (k + 1);
        if (src)
            memcpy(dst + b, src + b, (e - b) * sizeof(float));
        else
            memset(dst + b, 0, (e - b) * sizeof(float));
    }
}

/* The snapshot for n parameters (params, m, v), allocated once and touched
 * here: first touch of fresh pages runs at 0.6-1.5 GB/s in a VM, which a
 * save would otherwise pay in blocked time.  False when there is no memory. */
static bool reserve_snapshot(size_t n)
{
    if (saver.cap == n && saver.buf)
        return true;
    free(saver.buf);
    saver.buf = n <= SIZE_MAX / (3 * sizeof(float)) ? malloc(3 * n * sizeof(float)) : NULL;
    saver.cap = saver.buf ? n : 0;
    if (saver.buf)
        copy_floats(saver.buf, NULL, 3 * n);
    return saver.buf != NULL;
}

void checkpoint_prepare(const run_config *c, const comm_world *w, const gpt2 *m)
{
    if (c->checkpoint_async && w->rank == 0)
        reserve_snapshot(m->num_params);   /* no memory: the first save says so */
}

static int save_async(const run_config *c, const comm_world *w, gpt2 *m, adamw_state *opt,
                      const zero_shard *z, int done, double loss_scale, status_log *st,
                      char *err, size_t errlen)
{
    static bool warned;
    double t0 = mono_time();
    if (collect(st, true, err, errlen) != 0)   /* at most one write in flight */
        return -1;
    size_t n = m->num_params;
    if (!reserve_snapshot(n)) {
        if (!warned)
            status_event(st, "event", done, "warning: no memory for the checkpoint snapshot: "
                         "checkpoints are written synchronously");
        warned = true;
        return save_sync(c, w, m, opt, z, done, loss_scale, st, err, errlen);
    }
    float *buf = saver.buf;
    copy_floats(buf, m->params, n);
    if (z) {   /* the shards straight into the snapshot: no other full copy anywhere */
        zero_broadcast_int(REQ_SHARDS);
        zero_gather_to_root(z, opt->m, buf + n);
        zero_gather_to_root(z, opt->v, buf + 2 * n);
    } else {
        copy_floats(buf + n, opt->m, n);
        copy_floats(buf + 2 * n, opt->v, n);
    }
    saver.cfg = *c;
    saver.model = *m;
    saver.model.params = buf;
    saver.opt = (adamw_state){.m = buf + n, .v = buf + 2 * n, .n = n, .step = opt->step};
    saver.train = train_info(c, w, done, loss_scale);
    saver.done = done;
    saver.max_steps = c->max_steps;
    saver.rc = 0;
    saver.err[0] = saver.path[0] = '\0';
    saver.write_s = saver.size_mb = 0;
    atomic_store_explicit(&saver.finished, 0, memory_order_relaxed);
    saver.blocked_s = mono_time() - t0;   /* the wait for the previous write and the copy (gather) */
    /* the writer takes none of the signals the trainer handles (a stop or
     * checkpoint request must reach the training thread's flags, and the
     * writer's system calls stay uninterrupted) */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int prc = pthread_create(&saver.thread, NULL, writer_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (prc != 0) {   /* no thread: write it here */
        writer_main(NULL);
        saver.blocked_s = mono_time() - t0;
        return report(st, err, errlen);
    }
    saver.running = true;
    return 0;
}

int checkpoint_due(const run_config *c, const comm_world *w, int done, bool final,
                   status_log *st, char *err, size_t errlen)
{
    sig_atomic_t seen = requests;
    bool asked = seen != handled;
    handled = seen;
    bool failed = w->rank == 0 && collect(st, false, err, errlen) != 0;
    int flags = comm_or_int((asked ? 1 : 0) | (failed ? 2 : 0), "the checkpoint agreement");
    if (flags & 2) {
        if (!failed)
            snprintf(err, errlen, "rank 0 failed to write a checkpoint");
        return -1;
    }
    return (flags & 1) || final || (c->checkpoint_every > 0 && done % c->checkpoint_every == 0);
}

int checkpoint_save(const run_config *c, const comm_world *w, gpt2 *m, adamw_state *opt,
                    const zero_shard *z, int done, double loss_scale, status_log *st, char *err,
                    size_t errlen)
{
    int rc = 0;
    shard_io io = {z, m, opt};
    if (w->rank == 0)
        rc = c->checkpoint_async
                 ? save_async(c, w, m, opt, z, done, loss_scale, st, err, errlen)
                 : save_sync(c, w, m, opt, z, done, loss_scale, st, err, errlen);
    if (z && w->rank == 0)
        zero_broadcast_int(REQ_DONE);
    else if (z)
        serve(&io, true);
    if (comm_max_int(rc != 0, "the end of a checkpoint save")) {
        if (rc == 0)
            snprintf(err, errlen, "rank 0 failed to write the checkpoint");
        return -1;
    }
    return 0;
}

int checkpoint_finish(const comm_world *w, status_log *st, char *err, size_t errlen)
{
    int rc = w->rank == 0 ? collect(st, true, err, errlen) : 0;
    if (comm_max_int(rc != 0, "the end of a checkpoint write")) {
        if (rc == 0)
            snprintf(err, errlen, "rank 0 failed to write the checkpoint");
        return -1;
    }
    return 0;
}

void checkpoint_close(status_log *st)
{
    char err[1024];
    if (collect(st, true, err, sizeof err) != 0)
        status_event(st, "error", saver.done, err);
    free(saver.buf);
    saver.buf = NULL;
    saver.cap = 0;
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
                        const zero_shard *z, status_log *st, int *start_step, double *loss_scale,
                        char *err, size_t errlen)
{
    shard_io io = {z, m, opt};
    ckpt_moments scatter = {.put = scatter_tensor, .ctx = &io};
    ckpt_state s = {.cfg = c, .model = m, .opt = opt, .moments = z ? &scatter : NULL};
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

int checkpoint_check_fresh(const run_config *c, const comm_world *w, char *err, size_t errlen)
{
    if (resume_spec)
        return 0;
    int newest = comm_max_int(w->rank == 0 ? (int)ckpt_newest_step(c->out_dir) : -1,
                              "the check of out_dir for earlier checkpoints");
    if (newest < 0)
        return 0;
    snprintf(err, errlen, "out_dir %s already holds checkpoints of a run (newest: step %d): "
             "continue it with --resume auto, or choose another out_dir", c->out_dir, newest);
    return -1;
}

int checkpoint_resume(const run_config *c, const comm_world *w, gpt2 *m, adamw_state *opt,
                      const zero_shard *z, status_log *st, int *start_step, double *loss_scale,
                      char *err, size_t errlen)
{
    *start_step = 0;
    if (!resume_spec)
        return 0;
    int rc = 0;
    shard_io io = {z, m, opt};
    if (w->rank == 0)
        rc = resume_rank0(c, w, m, opt, z, st, start_step, loss_scale, err, errlen);
    if (z && w->rank == 0)
        zero_broadcast_int(REQ_DONE);
    else if (z)
        serve(&io, false);
    if (comm_max_int(rc != 0, "the checkpoint load")) {
        if (rc == 0)
            snprintf(err, errlen, "rank 0 failed to load the checkpoint");
        return -1;
    }
    if (w->size > 1) {   /* the other ranks take rank 0's state (values >= 0: max = rank 0's) */
        *start_step = comm_max_int(w->rank == 0 ? *start_step : 0, "the checkpoint load");
        *loss_scale = comm_sum_double(w->rank == 0 ? *loss_scale : 0);
        opt->step = comm_max_int(w->rank == 0 ? opt->step : 0, "the checkpoint load");
        comm_broadcast_floats(m->params, m->num_params, 0);
        if (!z) {   /* under ZeRO the shards came with the tensors */
            comm_broadcast_floats(opt->m, opt->n, 0);
            comm_broadcast_floats(opt->v, opt->n, 0);
        }
        gpt2_params_changed(m);
    }
    return 0;
}
