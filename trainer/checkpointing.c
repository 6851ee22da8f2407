#include "trainer/checkpointing.h"

#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "comm/watchdog.h"
#include "io/checkpoint.h"
#include "io/dataset.h"
#include "io/tokenizer.h"
#include "kernels/clock.h"
#include "trainer/ckpt_view.h"

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
typedef struct {
    bool running;
    pthread_t thread;
    atomic_int finished;
    /* snapshot */
    float *buf;              /* params, m, v: 3 x cap floats, allocated once */
    size_t cap;
    run_config cfg;
    const char *tmpl;        /* checkpointer.start_template */
    ckpt_view view;          /* the live model's tensor table with the arenas in buf */
    int done, max_steps;
    double blocked_s;
    /* result */
    int rc;
    char err[768], path[1100];
    double write_s, size_mb;
} saver_state;

struct checkpointer {
    const char *resume;   /* --resume: "auto", a path, or NULL */
    int handled;          /* checkpoint requests acted on (checkpoint_due) */
    double write_s;       /* what the other ranks allow rank 0 for writing a file */
    bool warned;          /* the no-snapshot warning was given */
    bool resumed;         /* checkpoint_resume loaded a checkpoint (every rank) */
    char *start_template; /* rank 0: the chat template of the model the run starts
                           * from, for data whose tokenizer has none; NULL: none */
    saver_state saver;
};

checkpointer *checkpointer_new(const char *resume)
{
    checkpointer *ck = calloc(1, sizeof *ck);
    if (ck)
        ck->resume = resume;
    return ck;
}

/* Global samples per optimizer step (train.c: B per rank per micro-batch). */
static uint64_t samples_per_step(const run_config *c, const comm_world *w)
{
    return (uint64_t)c->grad_accum * (uint64_t)c->batch_size * (uint64_t)w->size;
}

/* scaler: the fp16 loss scaler, NULL for other precisions (scale 0 in the file) */
static ckpt_train_info train_info(const run_config *c, const comm_world *w, int done,
                                  const loss_scaler *scaler)
{
    uint64_t samples = (uint64_t)done * samples_per_step(c, w);
    return (ckpt_train_info){.step = done, .tokens_seen = samples * (uint64_t)c->seq_len,
                             .data_cursor = samples, .seed = c->seed,
                             .loss_scale = scaler ? scaler->scale : 0,
                             .loss_scale_steps = scaler ? scaler->good_steps : 0};
}

/* Moments sharded over ranks (ZeRO) move one tensor at a time.  Rank 0 drives:
 * it broadcasts each request (a tensor, all shards into its snapshot, or done)
 * and the others serve requests until done.  Rank 0 sends done however its
 * read or write ended, so a file that fails halfway (a full disk, a damaged
 * file that --resume auto skips) leaves no rank waiting; a resume that goes on
 * to another file simply hands out every tensor again. */
enum { REQ_DONE = -1, REQ_SHARDS = -2 };   /* >= 0: tensor k of m, or k - num_tensors of v */

/* Rank 0's req on every rank: what rank 0 asks of the shards next while it
 * reads or writes a checkpoint.  The others wait here meanwhile, through
 * whatever rank 0 reads or writes before its next request (all of /model
 * before the first, the previous file's write before an async save's):
 * work_s allows for that, as the save's and the load's agreements do. */
static int broadcast_request(int req, double work_s)
{
    comm_broadcast_int_after(&req, 0, "rank 0 reading or writing a checkpoint", work_s);
    return req;
}

typedef struct {
    const zero_shard *z;
    const gpt2 *m;
    adamw_state *opt;   /* this rank's shard */
    double work_s;      /* rank 0's time for a file (checkpointer.write_s) */
} shard_io;

static float *shard_of(const shard_io *io, int moment)
{
    return moment ? io->opt->v : io->opt->m;
}

/* ckpt_stream.get on rank 0 (groups CKPT_M, CKPT_V): tensor i from every
 * rank's shard. */
static int gather_tensor(void *ctx, int g, int i, float *buf, char *err, size_t errlen)
{
    const shard_io *io = ctx;
    const param_tensor *t = &io->m->tensors[i];
    int moment = g - CKPT_M;
    broadcast_request(moment * io->m->num_tensors + i, io->work_s);
    zero_gather_range(io->z, shard_of(io, moment), t->offset, t->numel, buf);
    return 0;
}

/* ckpt_stream.put on rank 0: each rank's slice of tensor i to it. */
static int scatter_tensor(void *ctx, int g, int i, const float *buf, char *err, size_t errlen)
{
    const shard_io *io = ctx;
    const param_tensor *t = &io->m->tensors[i];
    int moment = g - CKPT_M;
    broadcast_request(moment * io->m->num_tensors + i, io->work_s);
    zero_scatter_range(io->z, buf, t->offset, t->numel, shard_of(io, moment));
    return 0;
}

/* v viewing the state, with the moments under ZeRO (z) moved by io through
 * get or put. */
static int shard_view(ckpt_view *v, const run_config *c, shard_io *io, bool save, char *err,
                      size_t errlen)
{
    if (ckpt_view_init(v, c, io->m, io->opt, err, errlen) != 0)
        return -1;
    if (io->z) {
        v->s.arena[CKPT_M] = v->s.arena[CKPT_V] = NULL;
        v->s.stream = (ckpt_stream){.get = save ? gather_tensor : NULL,
                                    .put = save ? NULL : scatter_tensor, .ctx = io};
    }
    return 0;
}

/* The other ranks' side until rank 0 is done: save sends, resume receives. */
static void serve(const shard_io *io, bool save)
{
    int nt = io->m->num_tensors;
    for (int req; (req = broadcast_request(REQ_DONE, io->work_s)) != REQ_DONE;) {
        if (req == REQ_SHARDS) {
            zero_gather_range(io->z, io->opt->m, 0, io->z->n, NULL);
            zero_gather_range(io->z, io->opt->v, 0, io->z->n, NULL);
            continue;
        }
        const param_tensor *t = &io->m->tensors[req % nt];
        if (save)
            zero_gather_range(io->z, shard_of(io, req / nt), t->offset, t->numel, NULL);
        else
            zero_scatter_range(io->z, NULL, t->offset, t->numel, shard_of(io, req / nt));
    }
}

/* A fine-tune whose data has no chat template (made from a folder without
 * one, or before tokenizer files carried one) keeps the template of the model
 * it starts from: a template changes no ids, so the data's tokenizer is
 * otherwise the model's (dataset_check_tokenizer).  Read once, at the start:
 * a template is not worth failing a run for, so an unreadable file gives
 * none (NULL, as a model without one). */
static char *model_template(const char *path)
{
    ckpt_model_file *f;
    gpt2_dims d;
    char why[512];
    if (ckpt_model_open(path, &f, &d, why, sizeof why) != 0)
        return NULL;
    tokenizer *tok = ckpt_model_tokenizer(f, why, sizeof why);
    ckpt_model_close(f);
    const char *tmpl = tok ? tokenizer_chat_template(tok) : NULL;
    char *copy = tmpl ? strdup(tmpl) : NULL;
    tokenizer_free(tok);
    return copy;
}

/* Rank 0 writes s (tensors, opt, train set) with its tokenizer (stored so
 * infer needs no data dir), given tmpl (NULL: none) when the data's has no
 * chat template; the path written goes to path, its size to *mb. */
static int write_file(const run_config *c, const char *tmpl, ckpt_state *s, char *path,
                      size_t pathlen, double *mb, char *err, size_t errlen)
{
    char tpath[1100], why[256];
    snprintf(tpath, sizeof tpath, "%s/tokenizer.json", c->data_dir);
    tokenizer *tok = tokenizer_load(tpath, err, errlen);
    if (!tok)
        return -1;
    if (tmpl && !tokenizer_chat_template(tok))
        tokenizer_set_chat_template(tok, tmpl, strlen(tmpl), why, sizeof why);
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
static int save_sync(const run_config *c, const char *tmpl, const comm_world *w, gpt2 *m,
                     adamw_state *opt, const zero_shard *z, int done, const loss_scaler *scaler,
                     status_log *st, char *err, size_t errlen)
{
    double t0 = clock_mono_s(), mb;
    char path[1100];
    shard_io io = {z, m, opt, 0};   /* rank 0 hands out the requests: no wait on them */
    ckpt_view v;
    if (shard_view(&v, c, &io, true, err, errlen) != 0)
        return -1;
    v.s.train = train_info(c, w, done, scaler);
    int rc = write_file(c, tmpl, &v.s, path, sizeof path, &mb, err, errlen);
    ckpt_view_free(&v);
    if (rc != 0)
        return -1;
    double dt = clock_mono_s() - t0;
    status_checkpoint(st, done, c->max_steps, path, mb, dt, dt);
    return 0;
}

static void *writer_main(void *arg)
{
    saver_state *sv = arg;
    double t0 = clock_mono_s();
    sv->rc = write_file(&sv->cfg, sv->tmpl, &sv->view.s, sv->path, sizeof sv->path, &sv->size_mb,
                        sv->err, sizeof sv->err);
    sv->write_s = clock_mono_s() - t0;
    atomic_store_explicit(&sv->finished, 1, memory_order_release);
    return NULL;
}

/* The result of the last write: its record, or -1 with the reason in err. */
static int report(const saver_state *sv, status_log *st, char *err, size_t errlen)
{
    if (sv->rc != 0) {
        snprintf(err, errlen, "checkpoint of step %d failed: %s", sv->done, sv->err);
        return -1;
    }
    status_checkpoint(st, sv->done, sv->max_steps, sv->path, sv->size_mb, sv->write_s,
                      sv->blocked_s);
    return 0;
}

/* Rank 0: joins the writer when it has finished (or, with wait, waits for it)
 * and reports it.  0 also when there is nothing to collect yet. */
static int collect(saver_state *sv, status_log *st, bool wait, char *err, size_t errlen)
{
    if (!sv->running || (!wait && !atomic_load_explicit(&sv->finished, memory_order_acquire)))
        return 0;
    pthread_join(sv->thread, NULL);
    sv->running = false;
    return report(sv, st, err, errlen);
}

/* dst = src (src NULL: zeros) with the process's OpenMP threads (memory
 * bandwidth, not one core), one contiguous piece per thread: pieces this
 * large make glibc's memcpy use non-temporal stores, faster than 1 MB pieces
 * copied through the cache (bench_ckpt). */
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
 * here: the first touch of fresh pages is slow (page faults, zeroing; worst in
 * a VM), and a save would otherwise pay it in blocked time.  False when there is no memory. */
static bool reserve_snapshot(saver_state *sv, size_t n)
{
    if (sv->cap == n && sv->buf)
        return true;
    free(sv->buf);
    sv->buf = n <= SIZE_MAX / (3 * sizeof(float)) ? malloc(3 * n * sizeof(float)) : NULL;
    sv->cap = sv->buf ? n : 0;
    if (sv->buf)
        copy_floats(sv->buf, NULL, 3 * n);
    return sv->buf != NULL;
}

void checkpoint_prepare(checkpointer *ck, const run_config *c, const comm_world *w, const gpt2 *m)
{
    ck->write_s = watchdog_io_seconds(3.0 * sizeof(float) * (double)m->num_params);   /* params, m, v */
    if (c->checkpoint_async && w->rank == 0)
        reserve_snapshot(&ck->saver, m->num_params);   /* no memory: the first save says so */
}

/* The snapshot's view: m's tensor table with its arenas in the snapshot. */
static int snapshot_view(saver_state *sv, const run_config *c, const gpt2 *m, int step,
                         char *err, size_t errlen)
{
    size_t n = m->num_params;
    adamw_state moments = {.m = sv->buf + n, .v = sv->buf + 2 * n, .n = n, .step = step};
    ckpt_view_free(&sv->view);
    if (ckpt_view_init(&sv->view, c, m, &moments, err, errlen) != 0)
        return -1;
    sv->view.s.arena[CKPT_MODEL] = sv->buf;
    return 0;
}

/* Copies (under ZeRO: gathers) the state into the snapshot. */
static void copy_state(saver_state *sv, const gpt2 *m, const adamw_state *opt,
                       const zero_shard *z, double work_s)
{
    size_t n = m->num_params;
    float *buf = sv->buf;
    copy_floats(buf, m->params, n);
    if (z) {   /* the shards straight into the snapshot: no other full copy anywhere */
        broadcast_request(REQ_SHARDS, work_s);
        zero_gather_range(z, opt->m, 0, n, buf + n);
        zero_gather_range(z, opt->v, 0, n, buf + 2 * n);
    } else {
        copy_floats(buf + n, opt->m, n);
        copy_floats(buf + 2 * n, opt->v, n);
    }
}

/* Starts the writer thread on the snapshot; without a thread it writes here. */
static int start_writer(saver_state *sv, double t0, status_log *st, char *err, size_t errlen)
{
    int prc = pthread_create(&sv->thread, NULL, writer_main, sv);
    if (prc != 0) {   /* no thread: write it here */
        writer_main(sv);
        sv->blocked_s = clock_mono_s() - t0;
        return report(sv, st, err, errlen);
    }
    sv->running = true;
    return 0;
}

static int save_async(checkpointer *ck, const run_config *c, const comm_world *w, gpt2 *m,
                      adamw_state *opt, const zero_shard *z, int done,
                      const loss_scaler *scaler, status_log *st, char *err, size_t errlen)
{
    saver_state *sv = &ck->saver;
    double t0 = clock_mono_s();
    if (collect(sv, st, true, err, errlen) != 0)   /* at most one write in flight */
        return -1;
    if (!reserve_snapshot(sv, m->num_params)) {
        if (!ck->warned)
            status_event(st, "event", done, "warning: no memory for the checkpoint snapshot: "
                         "checkpoints are written synchronously");
        ck->warned = true;
        return save_sync(c, ck->start_template, w, m, opt, z, done, scaler, st, err, errlen);
    }
    if (snapshot_view(sv, c, m, opt->step, err, errlen) != 0)
        return -1;
    copy_state(sv, m, opt, z, ck->write_s);
    sv->cfg = *c;
    sv->tmpl = ck->start_template;
    sv->view.s.train = train_info(c, w, done, scaler);
    sv->done = done;
    sv->max_steps = c->max_steps;
    sv->rc = 0;
    sv->err[0] = sv->path[0] = '\0';
    sv->write_s = sv->size_mb = 0;
    atomic_store_explicit(&sv->finished, 0, memory_order_relaxed);
    sv->blocked_s = clock_mono_s() - t0;   /* the wait for the previous write and the copy (gather) */
    return start_writer(sv, t0, st, err, errlen);
}

bool checkpoint_requested(const checkpointer *ck, int requests)
{
    return requests != ck->handled;
}

int checkpoint_due(checkpointer *ck, const comm_world *w, bool wanted, int requests,
                   status_log *st, char *err, size_t errlen)
{
    bool asked = requests != ck->handled;
    ck->handled = requests;
    bool failed = w->rank == 0 && collect(&ck->saver, st, false, err, errlen) != 0;
    int flags = comm_or_int((asked ? 1 : 0) | (failed ? 2 : 0), "the checkpoint agreement");
    if (flags & 2) {
        if (!failed)
            snprintf(err, errlen, "rank 0 failed to write a checkpoint");
        return -1;
    }
    return (flags & 1) || wanted;
}

int checkpoint_save(checkpointer *ck, const run_config *c, const comm_world *w, gpt2 *m,
                    adamw_state *opt, const zero_shard *z, int done,
                    const loss_scaler *scaler, status_log *st, char *err, size_t errlen)
{
    int rc = 0;
    shard_io io = {z, m, opt, ck->write_s};
    if (w->rank == 0)
        rc = c->checkpoint_async
                 ? save_async(ck, c, w, m, opt, z, done, scaler, st, err, errlen)
                 : save_sync(c, ck->start_template, w, m, opt, z, done, scaler, st, err,
                             errlen);
    if (z && w->rank == 0)
        broadcast_request(REQ_DONE, ck->write_s);
    else if (z)
        serve(&io, true);
    if (comm_max_int_after(rc != 0, "the end of a checkpoint save", ck->write_s)) {
        if (rc == 0)
            snprintf(err, errlen, "rank 0 failed to write the checkpoint");
        return -1;
    }
    return 0;
}

int checkpoint_finish(checkpointer *ck, const comm_world *w, status_log *st, char *err,
                      size_t errlen)
{
    int rc = w->rank == 0 ? collect(&ck->saver, st, true, err, errlen) : 0;
    if (comm_max_int_after(rc != 0, "the end of a checkpoint write", ck->write_s)) {
        if (rc == 0)
            snprintf(err, errlen, "rank 0 failed to write the checkpoint");
        return -1;
    }
    return 0;
}

void checkpoint_close(checkpointer *ck, status_log *st)
{
    char err[1024];
    if (!ck)
        return;
    if (collect(&ck->saver, st, true, err, sizeof err) != 0)
        status_event(st, "error", ck->saver.done, err);
    ckpt_view_free(&ck->saver.view);
    free(ck->saver.buf);
    free(ck->start_template);
    free(ck);
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
    /* the samples are windows of seq_len + 1 tokens: another length makes
     * other samples, in another order (train_info: tokens = samples x seq_len) */
    if (t->data_cursor > 0 && t->tokens_seen != t->data_cursor * (uint64_t)c->seq_len) {
        snprintf(msg, sizeof msg, "warning: the checkpoint was trained with seq_len %llu, the "
                 "config has %d: the samples and their order change",
                 (unsigned long long)(t->tokens_seen / t->data_cursor), c->seq_len);
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

/* Loads the checkpoint resume names into v (rank 0): 1 loaded (its path in
 * path), 0 none to load (auto, an empty out_dir), -1 failed. */
static int load_resume(const char *resume, const run_config *c, ckpt_view *v, status_log *st,
                       char *path, size_t pathlen, char *err, size_t errlen)
{
    char warn[1024], msg[1400];
    if (strcmp(resume, "auto") != 0) {
        snprintf(path, pathlen, "%s", resume);
        return ckpt_read(resume, &v->s, err, errlen) == 0 ? 1 : -1;
    }
    int found = ckpt_load_auto(c->out_dir, &v->s, path, pathlen, warn, sizeof warn, err, errlen);
    if (found == 0) {
        snprintf(msg, sizeof msg, "resume auto: no checkpoint in %s, starting fresh", c->out_dir);
        status_event(st, "event", 0, msg);
    } else if (found > 0 && warn[0]) {
        snprintf(msg, sizeof msg, "warning: resume auto skipped: %s", warn);
        status_event(st, "event", v->s.train.step, msg);
    }
    return found;
}

/* Rank 0's part of checkpoint_resume: finds and loads the checkpoint (its
 * path into path).  1 loaded, 0 none to load (auto), -1 failed. */
static int resume_rank0(const char *resume, const run_config *c, const comm_world *w, gpt2 *m,
                        adamw_state *opt, const zero_shard *z, status_log *st, int *start_step,
                        loss_scaler *scaler, char *path, size_t pathlen, char *err, size_t errlen)
{
    shard_io io = {z, m, opt, 0};   /* rank 0 hands out the requests: no wait on them */
    ckpt_view v;
    char msg[1400];
    if (shard_view(&v, c, &io, false, err, errlen) != 0)
        return -1;
    int found = load_resume(resume, c, &v, st, path, pathlen, err, errlen);
    const ckpt_train_info t = v.s.train;
    ckpt_view_loaded(&v, m, opt);
    ckpt_view_free(&v);
    if (found <= 0)
        return found;
    if (dataset_check_tokenizer(c->data_dir, path, err, errlen) != 0)
        return -1;
    *start_step = t.step;
    if (scaler && t.loss_scale > 0)   /* a checkpoint of another precision has none */
        scaler_restore(scaler, t.loss_scale, (int)t.loss_scale_steps);
    snprintf(msg, sizeof msg, "resumed from %s at step %d", path, t.step);
    status_event(st, "event", t.step, msg);
    check_data_order(c, w, &t, st);
    if (t.step >= c->max_steps) {
        snprintf(msg, sizeof msg, "the checkpoint is at step %d, max_steps is %d: nothing to train",
                 t.step, c->max_steps);
        status_event(st, "event", t.step, msg);
    }
    return 1;
}

int checkpoint_check_fresh(const checkpointer *ck, const run_config *c, const comm_world *w,
                           char *err, size_t errlen)
{
    if (ck->resume)
        return 0;
    int newest = comm_max_int(w->rank == 0 ? (int)ckpt_newest_step(c->out_dir) : -1,
                              "the check of out_dir for earlier checkpoints");
    if (newest < 0)
        return 0;
    snprintf(err, errlen, "out_dir %s already holds checkpoints of a run (newest: step %d): "
             "continue it with --resume auto, or choose another out_dir", c->out_dir, newest);
    return -1;
}

/* Loads the checkpoint --resume names on every rank; ck->resumed says
 * whether there was one.  Rank 0 puts its path in path. */
static int resume_all(checkpointer *ck, const run_config *c, const comm_world *w, gpt2 *m,
                      adamw_state *opt, const zero_shard *z, status_log *st, int *start_step,
                      loss_scaler *scaler, char *path, size_t pathlen, char *err, size_t errlen)
{
    int rc = 0;
    shard_io io = {z, m, opt, ck->write_s};
    if (w->rank == 0)
        rc = resume_rank0(ck->resume, c, w, m, opt, z, st, start_step, scaler, path, pathlen,
                          err, errlen);
    if (z && w->rank == 0)
        broadcast_request(REQ_DONE, ck->write_s);
    else if (z)
        serve(&io, false);
    /* the others wait here while rank 0 reads the whole file (without ZeRO) */
    if (comm_max_int_after(rc < 0, "the checkpoint load", ck->write_s)) {
        if (rc >= 0)
            snprintf(err, errlen, "rank 0 failed to load the checkpoint");
        return -1;
    }
    ck->resumed = comm_max_int(rc, "the checkpoint load") == 1;
    if (w->size > 1) {   /* the other ranks take rank 0's state (values >= 0: max = rank 0's) */
        *start_step = comm_max_int(w->rank == 0 ? *start_step : 0, "the checkpoint load");
        if (scaler) {
            scaler->scale = (float)comm_sum_double(w->rank == 0 ? scaler->scale : 0);
            scaler->good_steps = comm_max_int(w->rank == 0 ? scaler->good_steps : 0,
                                              "the checkpoint load");
        }
        opt->step = comm_max_int(w->rank == 0 ? opt->step : 0, "the checkpoint load");
        if (!m->opt.params_shared)   /* else rank 0 loaded them for all */
            comm_broadcast_floats(m->params, m->num_params, 0, "the parameter broadcast");
        if (!z) {   /* under ZeRO the shards came with the tensors */
            comm_broadcast_floats(opt->m, opt->n, 0, "the optimizer moments' broadcast");
            comm_broadcast_floats(opt->v, opt->n, 0, "the optimizer moments' broadcast");
        }
        gpt2_params_changed(m);
    }
    return 0;
}

int checkpoint_resume(checkpointer *ck, const run_config *c, const comm_world *w, gpt2 *m,
                      adamw_state *opt, const zero_shard *z, status_log *st, int *start_step,
                      loss_scaler *scaler, char *err, size_t errlen)
{
    char path[1100] = "";
    *start_step = 0;
    if (ck->resume && resume_all(ck, c, w, m, opt, z, st, start_step, scaler, path, sizeof path,
                                 err, errlen) != 0)
        return -1;
    /* the model the run starts from: the checkpoint resumed, which has the
     * template its first saves took, else init_from (whose file a resumed run
     * need not find) */
    const char *start = ck->resumed ? path : c->init_from;
    if (w->rank == 0 && start[0])
        ck->start_template = model_template(start);
    return 0;
}

bool checkpoint_resumed(const checkpointer *ck)
{
    return ck->resumed;
}
