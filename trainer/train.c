#include "trainer/trainer_state.h"

#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/adamw.h"
#include "kernels/clock.h"
#include "kernels/convert.h"
#include "kernels/cpu.h"
#include "kernels/elementwise.h"
#include "kernels/env.h"
#include "kernels/peak.h"

/* Stop with an error after this many consecutive non-finite steps (fp16:
 * the scale halves from 2^16 to its floor of 1 in 16 of them, and the
 * gradients still overflow at 1 in the rest). */
enum { MAX_CONSECUTIVE_SKIPS = 10, MAX_CONSECUTIVE_OVERFLOWS = 40 };

/* Mean loss over the val split (eval_batches = 0: all of it); the batches of
 * windows are dealt out to the ranks in turn and the sums combined. */
static int evaluate(trainer *tr, float *val_loss, char *err, size_t errlen)
{
    const run_config *c = tr->cfg;
    const comm_world *world = tr->world;
    uint64_t windows = dataset_val_windows(&tr->data);
    /* eval_batches counts global batches, so any rank count sees the same windows */
    uint64_t limit = (uint64_t)c->eval_batches * c->batch_size * world->size;
    if (limit && limit < windows)
        windows = limit;
    double sum = 0;
    int rc = 0;
    uint64_t stride = (uint64_t)c->batch_size * world->size;
    for (uint64_t w = (uint64_t)c->batch_size * world->rank; w < windows && rc == 0; w += stride) {
        int B = (int)(windows - w < (uint64_t)c->batch_size ? windows - w : (uint64_t)c->batch_size);
        rc = dataset_val_batch(&tr->data, w, B, tr->inputs, tr->targets, err, errlen);
        if (rc == 0)
            sum += (double)gpt2_forward(&tr->model, tr->inputs, tr->targets, B, c->seq_len) * B;
    }
    gpt2_pack_share_now(&tr->model);   /* a rank with no windows (or a failed one) */
    if (all_ranks_ok(rc, "the evaluation", "another rank failed during eval", err, errlen) != 0)
        return -1;
    *val_loss = (float)(comm_sum_double(sum) / (double)windows);
    return 0;
}

/* What this rank updates: under ZeRO its shard (the moments are the
 * shard's, and checkpointing.c moves them to and from the file without a
 * whole copy on any rank); otherwise everything (NULL). */
static const zero_shard *held(const trainer *tr)
{
    return tr->zero ? &tr->shard : NULL;
}

static buckets_wire params_wire(const trainer *tr)
{
    return tr->bf16_params ? BUCKETS_WIRE_BF16 : BUCKETS_WIRE_FP32;
}

static void on_grads_ready(void *ctx, size_t from)
{
    buckets_ready(ctx, from);
}

/* The input side of wte's gradient (the model left it by token: model.h),
 * summed over ranks and added into g.wte: all of it under stage 0, this
 * rank's shard under ZeRO.  have: this rank ran backward.  Returns the
 * seconds it took (exposed: it follows the whole backward). */
static double add_embed_grad(trainer *tr, bool have)
{
    gpt2 *m = &tr->model;
    const double t0 = clock_mono_s();
    const int u = sparse_rows_sum(&tr->embed_sum, m->embed_tokens, m->embed_rows,
                                  have ? m->n_embed_tokens : 0);
    const size_t C = (size_t)m->dims.n_embd, wte = m->tensors[0].offset;
    const zero_shard *z = held(tr);
    for (int i = 0; i < u; i++) {
        const size_t row = wte + (size_t)tr->embed_sum.ids[i] * C;
        const float *add = tr->embed_sum.sum + (size_t)i * C;
        for (size_t b = row, len; (len = zero_next_held(z, tr->world->rank, &b, row + C)) > 0;
             b += len)
            for (size_t k = b; k < b + len; k++)
                m->grads[k] += add[k - row];
    }
    return clock_mono_s() - t0;
}

/* Zero the gradients for the next step.  Stage 2's reduction already zeroed
 * (released) everything outside the shard: touching it again would only
 * bring the pages back. */
static void zero_grads(trainer *tr)
{
    if (tr->cfg->zero_stage >= 2 && tr->buckets) {
        for (int k = 0; k < tr->shard.npieces; k++) {
            size_t lo, hi;
            zero_slice(&tr->shard, k, tr->shard.rank, &lo, &hi);
            fill_zeros(tr->model.grads + lo, hi - lo);
        }
    } else
        gpt2_zero_grad(&tr->model);
}

/* ZeRO: the last update's allgather runs behind the first forward, which
 * waits for each block's parameters as it reaches them and for wte at the
 * LM head.  The rows of wte its embedding reads come first, from their
 * owners (every rank takes part; one without a batch asks for none).
 * Returns whether one was started. */
static bool start_param_gather(trainer *tr, bool have_batch)
{
    bool gathering = tr->params_stale;
    if (gathering) {
        const run_config *c = tr->cfg;
        double t0 = clock_mono_s();
        if (!tr->model.opt.params_shared)   /* (one copy: current once its owners are done) */
            sparse_rows_fetch(&tr->embed_sum, &tr->shard, tr->model.params,
                              tr->model.tensors[0].offset, tr->inputs,
                              have_batch ? c->batch_size * c->seq_len : 0);
        const double fetch_s = clock_mono_s() - t0;   /* in flight, and all of it exposed */
        tr->comm_exposed_s += fetch_s;
        tr->comm_total_s += fetch_s;
        buckets_params_start(tr->buckets, tr->model.params, tr->fwd_offsets, tr->fwd_sizes,
                             tr->model.num_tensors, params_wire(tr));
    }
    tr->params_stale = false;
    return gathering;
}

/* After the first forward: all of the allgather arrived (forward read them
 * all; or this rank has no batch). */
static void finish_param_gather(trainer *tr)
{
    tr->comm_exposed_s += buckets_params_wait(tr->buckets, 0, tr->model.num_params);
    tr->comm_total_s += buckets_params_flight_seconds(tr->buckets);
}

/* Backward, handing each finished tensor's gradients to the buckets when
 * this micro-batch reduces. */
static void backward(trainer *tr, float dloss, bool reduce)
{
    if (reduce) {
        tr->model.grads_ready = on_grads_ready;
        tr->model.grads_ready_ctx = tr->buckets;
    }
    gpt2_backward(&tr->model, dloss);
    tr->model.grads_ready = NULL;
}

/* The end of a reduction: the last buckets, then the embedding rows.  Time
 * inside these calls is the exposed comm.  have: this rank ran backward. */
static void finish_reduction(trainer *tr, bool have)
{
    double embed_s, grads_s = buckets_finish(tr->buckets);
    embed_s = add_embed_grad(tr, have);
    tr->comm_s += grads_s + embed_s;
    tr->comm_exposed_s += grads_s + embed_s;
    tr->comm_total_s += buckets_flight_seconds(tr->buckets) + embed_s;
}

/* One optimizer step over grad_accum micro-batches on every rank; returns the
 * mean loss over the global batch, with the gradients summed over ranks (all
 * of them, or under ZeRO this rank's shard).  The loader delivers this rank's
 * slice of each micro-batch (dataset_first_sample).  Stages 0 and 1 reduce
 * during the last backward only; stage 2 during every backward, each adding
 * into the shard, so that the whole arena is never held between micro-batches
 * (the price: grad_accum reductions per step instead of one). */
static int train_step(trainer *tr, int step, float *loss, char *err, size_t errlen)
{
    const run_config *c = tr->cfg;
    const comm_world *world = tr->world;
    int B = c->batch_size, T = c->seq_len, rc = 0;
    float dloss = tr->scaler.scale / ((float)B * T * c->grad_accum * world->size);
    double sum = 0;
    zero_grads(tr);
    tr->loader_wait_s = 0;
    tr->comm_s = 0;
    tr->comm_exposed_s = tr->comm_total_s = 0;
    bool gathering = false;
    for (int j = 0; j < c->grad_accum; j++) {
        bool reduce = tr->buckets && (j == c->grad_accum - 1 || c->zero_stage >= 2);
        double wait_ms = 0;
        if (rc == 0)
            rc = loader_next(tr->batches, (uint64_t)step, j, tr->inputs, tr->targets, &wait_ms,
                             err, errlen);
        tr->loader_wait_s += wait_ms / 1e3;
        if (j == 0)
            gathering = start_param_gather(tr, rc == 0);
        if (reduce)
            buckets_begin(tr->buckets);
        if (rc == 0)
            sum += gpt2_forward(&tr->model, tr->inputs, tr->targets, B, T);
        else   /* the other ranks' forward waits for this one's share of the weights */
            gpt2_pack_share_now(&tr->model);
        if (gathering)
            finish_param_gather(tr);
        gathering = false;
        if (rc == 0)
            backward(tr, dloss, reduce);
        /* A rank that failed to read its batch still takes part in every
         * reduction (with whatever gradients it has), so no rank hangs; then
         * all agree. */
        if (reduce)
            finish_reduction(tr, rc == 0);
    }
    /* this step's reduction and (ZeRO) the allgather its forward overlapped */
    tr->comm_cpu_s = tr->buckets ? buckets_progress_cpu_seconds(tr->buckets) : 0;
    if (all_ranks_ok(rc, "the end-of-step agreement", "another rank failed reading its batch",
                     err, errlen) != 0)
        return -1;
    *loss = (float)(comm_sum_double(sum) / ((double)c->grad_accum * world->size));
    return 0;
}

/* Figures only each rank knows (its loader wait, communication time, memory)
 * are reported as the worst over ranks: one tiny reduction per step. */
static void gather_rank_figures(const trainer *tr, step_stats *st)
{
    if (tr->world->size == 1)
        return;
    double x[7] = {st->loader_wait_ms, st->comm_ms, st->rss_mb, st->optimizer_ms, st->peak_rss_mb,
                   -st->comm_ms, st->comm_cpu_ms};   /* max of -x: the least */
    comm_max_doubles(x, 7);
    st->loader_wait_ms = x[0];
    st->comm_ms = x[1];
    st->rss_mb = x[2];
    st->optimizer_ms = x[3];
    st->peak_rss_mb = x[4];
    st->comm_tail_ms = -x[5];
    st->comm_cpu_ms = x[6];
    /* the communication figures of the rank that waited least: the last to
     * finish backward, whose waits are what the overlap did not hide (the
     * others' also count the time they waited for it) */
    double c[3] = {st->comm_exposed_ms, st->comm_total_ms, st->comm_hidden};
    comm_pick_least(c, 3, 0);
    st->comm_exposed_ms = c[0];
    st->comm_total_ms = c[1];
    st->comm_hidden = c[2];
}

/* The part of the step's communication that overlapped compute (1: all of
 * it; 0 with none, as on one rank). */
static double hidden_fraction(double exposed_s, double total_s)
{
    return total_s > exposed_s && total_s > 0 ? 1.0 - exposed_s / total_s : 0.0;
}

/* The sum of squares of this rank's shard of the gradients. */
static double shard_sumsq(const trainer *tr)
{
    double sum = 0;
    for (int k = 0; k < tr->shard.npieces; k++) {
        size_t lo, hi;
        zero_slice(&tr->shard, k, tr->shard.rank, &lo, &hi);
        sum += sumsq(tr->model.grads + lo, hi - lo);
    }
    return sum;
}

/* Clip and apply AdamW: to the whole model, or (ZeRO) to this rank's shard,
 * whose updated values are then gathered by every rank.  *norm is the global
 * gradient norm; false when it is not finite and the step was skipped. */
static bool update_params(trainer *tr, float lr, float *norm)
{
    gpt2 *m = &tr->model;
    float scale = tr->scaler.scale;
    tr->optimizer_s = 0;
    /* the gradients carry the loss scale: their norm too.  With several
     * ranks it is the root of the sum of each rank's sum over its slices
     * (under ZeRO the slices are all a rank holds; under stage 0 every rank
     * holds the same sums, and each squaring only its slices halves the
     * pass at np 2) */
    *norm = tr->zero || tr->buckets ? (float)(sqrt(comm_sum_double(shard_sumsq(tr))) / scale)
                                    : grad_global_norm(m) / scale;
    /* every rank sees the same norm, so all skip (and rescale) together */
    if (!scaler_update(&tr->scaler, isfinite(*norm)))
        return false;
    double t0 = clock_mono_s();
    bool stepped = optimizer_step(&tr->opt, m, held(tr), tr->cfg, lr, *norm, scale);
    tr->params_stale = stepped && tr->zero;
    tr->optimizer_s = clock_mono_s() - t0;
    return stepped;
}

/* ZeRO: the whole of the updated parameters on every rank now (evaluation
 * and checkpoints read them between steps); every rank calls it at the same
 * point.  Otherwise the next step gathers them behind its forward. */
static void gather_params(trainer *tr)
{
    if (!tr->params_stale)
        return;
    buckets_params_start(tr->buckets, tr->model.params, tr->fwd_offsets, tr->fwd_sizes,
                         tr->model.num_tensors, params_wire(tr));
    buckets_params_wait(tr->buckets, 0, tr->model.num_params);
    tr->params_stale = false;
}

/* bf16 parameters: every rank's weights rounded to bf16, as all compute
 * with them (the same values everywhere: each rounds the same fp32). */
static void round_params(trainer *tr)
{
    round_to_bf16(tr->model.params, tr->model.num_params);
    gpt2_params_changed(&tr->model);
}

/* bf16 parameters: the model's exact fp32 values on every rank, gathered
 * from the shards' masters (checkpoints store those). */
static void exact_params(trainer *tr)
{
    gpt2 *m = &tr->model;
    optimizer_master_restore(&tr->opt, m, &tr->shard);
    buckets_params_start(tr->buckets, m->params, NULL, NULL, 0, BUCKETS_WIRE_FP32);
    buckets_params_wait(tr->buckets, 0, m->num_params);
    gpt2_params_changed(m);
}

static int save_checkpoint(trainer *tr, int done, char *err, size_t errlen)
{
    if (tr->bf16_params)
        exact_params(tr);
    int rc = checkpoint_save(tr->ckpt, tr->cfg, tr->world, &tr->model, &tr->opt, held(tr),
                             done, tr->fp16 ? &tr->scaler : NULL, &tr->status, err, errlen);
    if (tr->bf16_params)
        round_params(tr);
    return rc;
}

/* A step that failed (a loader error: every rank has it, train_step agrees)
 * ends the run; the steps done since the last save are saved first. */
static void save_before_error(trainer *tr, int done, int saved)
{
    char serr[1024];
    if (done > saved && save_checkpoint(tr, done, serr, sizeof serr) != 0)
        status_event(&tr->status, "error", done, serr);
}

/* The run's starting state: the checkpoint --resume names, or else (resume
 * auto in an out_dir without one) the init_from weights that waited for it. */
static int resume_checkpoint(trainer *tr, char *err, size_t errlen)
{
    checkpoint_prepare(tr->ckpt, tr->cfg, tr->world, &tr->model);   /* the async snapshot */
    if (checkpoint_resume(tr->ckpt, tr->cfg, tr->world, &tr->model, &tr->opt, held(tr),
                          &tr->status, &tr->start_step, tr->fp16 ? &tr->scaler : NULL, err,
                          errlen) != 0)
        return -1;
    if (tr->init_from_deferred && !checkpoint_resumed(tr->ckpt))
        return trainer_init_from(tr, err, errlen);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The per-rank FLOP/s MFU is measured against: the fp32 FMA peak, or in bf16
 * mode the bf16 matmul ceiling (kernels/peak.h).  fp16 products run in fp32. */
static double run_peak_gflops(const trainer *tr)
{
    return tr->model.half == GEMM_BF16 ? peak_bf16_gflops() : peak_fp32_gflops();
}

/* What the run loop carries from step to step, for the status records, the
 * final median and the error paths. */
typedef struct {
    int first;                 /* the first step: 0, or where a resumed run starts */
    int saved;                 /* the last step on disk */
    int skipped, consecutive;  /* non-finite steps: all, and in a row */
    bool save_owed;            /* a periodic save waiting for a step that updates */
    double tokens_per_step, flops_per_step;
    double peak_flops;         /* every rank's threads */
    double t_start, t_train;   /* the loop's start; time in steps (eval excluded) */
    double *step_s;            /* step times for the median: the first ntimed_cap steps */
    int ntimed_cap;
} run_state;

/* The loop's figures, res before any step, and the loader, which starts
 * preparing batches at once. */
static int loop_open(trainer *tr, run_state *rs, train_result *res, char *err, size_t errlen)
{
    const run_config *c = tr->cfg;
    enum { MAX_TIMED = 100000 };   /* enough steps for the median */
    *rs = (run_state){.first = tr->start_step, .saved = tr->start_step,
                      .ntimed_cap = c->max_steps < MAX_TIMED ? c->max_steps : MAX_TIMED};
    rs->tokens_per_step = (double)c->batch_size * c->seq_len * c->grad_accum * tr->world->size;
    rs->flops_per_step = gpt2_flops_per_token(&tr->model, c->seq_len) * rs->tokens_per_step;
    rs->peak_flops = run_peak_gflops(tr) * 1e9 * tr->world->size;
    rs->step_s = calloc((size_t)rs->ntimed_cap, sizeof *rs->step_s);
    rs->t_start = clock_mono_s();
    res->steps_done = rs->first;
    loader_options lo = {.B = c->batch_size, .T = c->seq_len, .grad_accum = c->grad_accum,
                         .rank = tr->world->rank, .ranks = tr->world->size,
                         .first_step = (uint64_t)rs->first, .depth = c->loader_depth,
                         .timeout_ms = (int)ceil(c->loader_timeout_s * 1e3),   /* > 0 s: >= 1 ms */
                         .endpoint = c->loader_endpoint};
    int rc = 0;
    if (!rs->step_s) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    } else if (!(tr->batches = loader_start(&tr->data, &lo, err, errlen))) {
        rc = -1;
    }
    /* every rank enters the loop, or none: the others would wait in its first collective */
    if (all_ranks_ok(rc, "the start of the training loop",
                     "another rank could not start (its message says why)", err, errlen) != 0) {
        loader_stop(tr->batches);
        tr->batches = NULL;
        free(rs->step_s);
        return -1;
    }
    return 0;
}

/* The update with the step's learning rate, or a skipped step (non-finite
 * gradients) reported; too many skips in a row end the run. */
static int update_or_skip(trainer *tr, run_state *rs, int step, float loss, float *lr,
                          float *norm, char *err, size_t errlen)
{
    *lr = lr_schedule(tr->cfg, step);
    if (update_params(tr, *lr, norm)) {
        rs->consecutive = 0;
        return 0;
    }
    rs->skipped++;
    char msg[200];
    snprintf(msg, sizeof msg, "step %d skipped: loss %g, gradient norm %g is not finite%s",
             step + 1, loss, *norm, tr->fp16 ? " (fp16: loss scale halved)" : "");
    status_event(&tr->status, "event", step + 1, msg);
    if (++rs->consecutive < (tr->fp16 ? MAX_CONSECUTIVE_OVERFLOWS : MAX_CONSECUTIVE_SKIPS))
        return 0;
    snprintf(err, errlen, "%d consecutive steps with non-finite loss or gradients; "
             "stopping (lower lr or check the data)", rs->consecutive);
    return -1;
}

/* Times the step (for the median and the ETA) and writes its status record. */
static void log_step(trainer *tr, run_state *rs, int done, float loss, float lr, float norm,
                     double dt)
{
    const run_config *c = tr->cfg;
    int timed = done - 1 - rs->first;
    if (timed < rs->ntimed_cap)
        rs->step_s[timed] = dt;
    rs->t_train += dt;
    /* the peak is measured in a few milliseconds at start; on a busy host it
     * can come out below what the steps then reach, and MFU is not > 100% */
    if (rs->flops_per_step / dt > rs->peak_flops)
        rs->peak_flops = rs->flops_per_step / dt;
    step_stats st = {.step = done, .max_steps = c->max_steps, .ranks = tr->world->size,
                     .loss = loss, .comm_ms = tr->comm_s * 1e3, .comm_tail_ms = tr->comm_s * 1e3,
                     .comm_exposed_ms = tr->comm_exposed_s * 1e3,
                     .comm_total_ms = tr->comm_total_s * 1e3,
                     .comm_hidden = hidden_fraction(tr->comm_exposed_s, tr->comm_total_s),
                     .comm_cpu_ms = tr->comm_cpu_s * 1e3,
                     .optimizer_ms = tr->optimizer_s * 1e3,
                     .optimizer_mb = 2.0 * sizeof(float) * (double)tr->opt.n / 1e6,
                     .loader_wait_ms = tr->loader_wait_s * 1e3,
                     .loader_queue = loader_queue_depth(tr->batches),
                     .lr = lr, .grad_norm = norm, .step_ms = dt * 1e3,
                     .tokens_per_s = rs->tokens_per_step / dt,
                     .mfu = rs->flops_per_step / dt / rs->peak_flops,
                     .elapsed_s = clock_mono_s() - rs->t_start,
                     .eta_s = rs->t_train / (done - rs->first) * (c->max_steps - done),
                     .rss_mb = process_rss_mb(), .peak_rss_mb = process_peak_rss_mb(),
                     .skipped_steps = rs->skipped,
                     .loss_scale = tr->fp16 ? tr->scaler.scale : 0,
                     .overflows = tr->scaler.overflows};
    gather_rank_figures(tr, &st);
    status_step(&tr->status, &st);
}

/* The val loss every eval_every steps and at the last one, on the whole
 * parameters. */
static int eval_step(trainer *tr, int done, train_result *res, char *err, size_t errlen)
{
    double te = clock_mono_s();
    float val;
    gather_params(tr);
    if (evaluate(tr, &val, err, errlen) != 0)
        return -1;
    status_eval(&tr->status, done, tr->cfg->max_steps, val, clock_mono_s() - te);
    res->final_val_loss = val;
    res->evaluated = true;
    return 0;
}

/* Periodic, final, SIGUSR1 and stop-time checkpoints; also collects a
 * finished background write (-1: it failed).  The loop saves of its own
 * accord at the end of the run and every checkpoint_every steps; a periodic
 * save that falls on a skipped step (non-finite gradients) is owed until the
 * next step that updates: the state it would save is the one that produced
 * them, and with keep_checkpoints it would push out the checkpoints from
 * before, leaving a run that diverges none to go on from.  Every rank
 * decides alike (the skips follow the global norm). */
static int checkpoint_step(trainer *tr, run_state *rs, int done, bool final, char *err,
                           size_t errlen)
{
    const int every = tr->cfg->checkpoint_every;
    if (every > 0 && done % every == 0)
        rs->save_owed = true;
    bool wanted = final || (rs->save_owed && rs->consecutive == 0);
    int due = checkpoint_due(tr->ckpt, tr->world, wanted, tr->req->checkpoints, &tr->status,
                             err, errlen);
    if (due > 0 && rs->saved == done)   /* saved during a pause: the same state again */
        due = 0;
    if (due > 0)
        gather_params(tr);
    if (due < 0 || (due > 0 && save_checkpoint(tr, done, err, errlen) != 0))
        return -1;
    if (due > 0)
        rs->saved = done;
    if (rs->saved == done)
        rs->save_owed = false;
    return 0;
}

/* The median step time over the steps after the first, which pays for
 * primitive creation and page faults. */
static double median_tokens_per_s(run_state *rs, int steps_done)
{
    int n = steps_done - rs->first < rs->ntimed_cap ? steps_done - rs->first : rs->ntimed_cap;
    if (n > 1) {
        qsort(rs->step_s + 1, (size_t)n - 1, sizeof *rs->step_s, cmp_double);
        return rs->tokens_per_step / rs->step_s[1 + (n - 1) / 2];
    }
    return n == 1 ? rs->tokens_per_step / rs->step_s[0] : 0;
}

/* The model whole again, the loader stopped, and the last save (end of run,
 * stop request) on disk before the run ends; rc is the loop's. */
static int loop_close(trainer *tr, run_state *rs, train_result *res, int rc, char *err,
                      size_t errlen)
{
    gather_params(tr);
    res->train_seconds = rs->t_train;
    res->tokens_per_s = median_tokens_per_s(rs, res->steps_done);
    free(rs->step_s);
    loader_stop(tr->batches);
    tr->batches = NULL;
    char ferr[1024];
    if (checkpoint_finish(tr->ckpt, tr->world, &tr->status, ferr, sizeof ferr) != 0) {
        if (rc == 0) {
            snprintf(err, errlen, "%s", ferr);
            rc = -1;
        } else {
            status_event(&tr->status, "error", res->steps_done, ferr);
        }
    }
    return rc;
}

/* Control requests reach rank 0, but every rank must act on them at the same
 * step boundary: rank 0 polls, then all ranks agree on its pause state (and on
 * any rank's stop signal) in one small reduction.  A pause keeps every rank
 * here, agreeing again each time rank 0 has waited 0.2 s for a request, so no
 * wait is long enough for the watchdog to take a pause for a lost peer; a
 * checkpoint asked for meanwhile (socket or SIGUSR1, on any rank) is saved
 * then, not when the pause ends.  Outside a pause checkpoint requests need no
 * broadcast: checkpoint_due agrees on them after the step.  Sets *stopping
 * (the same on every rank); 0, or -1 when a save during a pause failed. */
enum { CTL_PAUSED = 1, CTL_STOP = 2, CTL_MORE = 4, CTL_SAVE = 8 };

static int apply_control(trainer *tr, run_state *rs, int done, bool *stopping, char *err,
                         size_t errlen)
{
    bool paused = false;
    double paused_since = 0;
    for (;;) {
        control_cmd cmd = CONTROL_NONE;
        if (tr->ctl)   /* rank 0 only */
            cmd = paused ? control_wait(tr->ctl, 0.2) : control_poll(tr->ctl);
        if (cmd == CONTROL_STOP) {
            tr->req->stop = 1;
        } else if (cmd == CONTROL_CHECKPOINT) {
            tr->req->checkpoints++;   /* saved after this step, as for SIGUSR1 */
        } else if (cmd == CONTROL_PAUSE || cmd == CONTROL_RESUME) {
            paused = cmd == CONTROL_PAUSE;
            paused_since = clock_mono_s();
            status_event(&tr->status, "event", done, paused ? "paused" : "resumed");
        } else if (paused && clock_mono_s() - paused_since > 5) {   /* for monitors joining now */
            paused_since = clock_mono_s();
            status_event(&tr->status, "event", done, "paused");
        }
        /* the pause state is rank 0's alone: the others only echo the agreement */
        int state = (paused && tr->world->rank == 0 ? CTL_PAUSED : 0) | (tr->req->stop ? CTL_STOP : 0) |
                    (cmd != CONTROL_NONE ? CTL_MORE : 0) |
                    (checkpoint_requested(tr->ckpt, tr->req->checkpoints) ? CTL_SAVE : 0);
        state = comm_or_int(state, "the end-of-step agreement");
        paused = state & CTL_PAUSED;
        *stopping = state & CTL_STOP;
        if (*stopping)
            tr->req->stop = 1;
        if (*stopping || !(state & (CTL_PAUSED | CTL_MORE)))
            return 0;
        /* written whole before waiting on: its record, and a failure, are seen now */
        if ((state & CTL_PAUSED) && (state & CTL_SAVE) &&
            (checkpoint_step(tr, rs, done, false, err, errlen) != 0 ||
             checkpoint_finish(tr->ckpt, tr->world, &tr->status, err, errlen) != 0))
            return -1;
    }
}

/* The run: step, update, log, control, eval, checkpoint, until max_steps, a
 * stop request or an error. */
static int run_loop(trainer *tr, train_result *res, char *err, size_t errlen)
{
    const run_config *c = tr->cfg;
    run_state rs;
    if (loop_open(tr, &rs, res, err, errlen) != 0)
        return -1;
    int rc = 0;
    for (int step = rs.first; step < c->max_steps && rc == 0; step++) {
        double t0 = clock_mono_s();
        float loss, lr, norm;
        if (train_step(tr, step, &loss, err, errlen) != 0) {
            save_before_error(tr, step, rs.saved);
            rc = -1;
            break;
        }
        rc = update_or_skip(tr, &rs, step, loss, &lr, &norm, err, errlen);
        res->diverged = rc != 0;
        int done = step + 1;
        log_step(tr, &rs, done, loss, lr, norm, clock_mono_s() - t0);
        /* all ranks stop together, even if the signal reached only one */
        bool stopping;
        char cerr[1024];
        if (apply_control(tr, &rs, done, &stopping, cerr, sizeof cerr) != 0 && rc == 0) {
            snprintf(err, errlen, "%s", cerr);
            rc = -1;
        }
        res->final_loss = loss;
        res->steps_done = done;
        res->steps_run = done - rs.first;
        bool last = done == c->max_steps;
        /* a stop request skips the eval: a scheduler's grace period is short */
        if (rc == 0 && !stopping && c->eval_every > 0 && (done % c->eval_every == 0 || last))
            rc = eval_step(tr, done, res, err, errlen);
        if (rc == 0)
            rc = checkpoint_step(tr, &rs, done, last || stopping, err, errlen);
        if (stopping) {
            status_event(&tr->status, "event", done, "stop requested: stopped after this step");
            break;
        }
    }
    return loop_close(tr, &rs, res, rc, err, errlen);
}

/* The "training ..." event: the model, its precision (for auto, the rates
 * measured and whether they came from the cache), the weight gradients'
 * kernel, bf16 attention's products where they were measured and the batch. */
static void report_start(trainer *tr, const precision_choice *pc)
{
    const run_config *c = tr->cfg;
    const weight_grad_choice *wg = &tr->weight_grad;
    const attention_choice *att = &tr->attention;
    char msg[1024], fields[1024];
    autotune_event_json(c, pc, wg, att, fields, sizeof fields);
    int len = snprintf(msg, sizeof msg, "training %zu parameters, %s", tr->model.num_params,
                       config_precision_name(c->precision));
    if (c->precision_auto) {
        len += snprintf(msg + len, sizeof msg - len, " (auto:");
        for (int d = GEMM_F32; d <= GEMM_F16; d++)
            if (pc->gflops[d] > 0)
                len += snprintf(msg + len, sizeof msg - len, " %s %.0f",
                                precision_name((gemm_dtype)d), pc->gflops[d]);
        len += snprintf(msg + len, sizeof msg - len, " GFLOP/s, %s %.2f s)",
                        pc->from_cache ? "cached, measured in" : "measured in", pc->measure_s);
    }
    len += snprintf(msg + len, sizeof msg - len,
                    ", weight gradients on oneDNN's %s (first choice %.0f, gemm %.0f GFLOP/s%s)",
                    wg->gemm_kernel ? "gemm kernel" : "first choice", wg->gflops[0],
                    wg->gflops[1], wg->from_cache ? ", cached" : "");
    if (att->ms[0] > 0)
        len += snprintf(msg + len, sizeof msg - len,
                        ", attention in %s (fp32 %.1f, bf16 %.1f ms%s)",
                        att->bf16 ? "bf16" : "fp32", att->ms[0], att->ms[1],
                        att->from_cache ? ", cached" : "");
    len += snprintf(msg + len, sizeof msg - len,
                    ", recompute %s, %d thread%s, %d x %d tokens per micro-batch",
                    config_recompute_name(c->recompute), omp_get_max_threads(),
                    omp_get_max_threads() == 1 ? "" : "s", c->batch_size, c->seq_len);
    if (tr->arenas && tr->model.opt.params_shared)
        len += snprintf(msg + len, sizeof msg - len, ", gradients exchanged in shared memory, "
                        "one parameter copy for %d ranks", tr->world->size);
    else if (tr->arenas)
        len += snprintf(msg + len, sizeof msg - len, ", gradients and parameters exchanged in "
                        "shared memory");
    else if (tr->arenas_unshared[0])
        len += snprintf(msg + len, sizeof msg - len, ", gradients and parameters exchanged by "
                        "messages (%s)", tr->arenas_unshared);
    if (tr->node)
        snprintf(msg + len, sizeof msg - len, ", packed weights shared by %d ranks",
                 node_share_size(tr->node));
    else if (tr->pack_unshared[0])
        snprintf(msg + len, sizeof msg - len, ", every rank packs its own weights (%s)",
                 tr->pack_unshared);
    status_event_fields(&tr->status, tr->start_step, msg, fields);
}

int train_check_env(char *err, size_t errlen)
{
    double gflops;
    bool flag;
    int restarts;
    if (cpu_isa_from_env(err, errlen) != 0 ||
        env_positive(PEAK_FP32_ENV, &gflops, err, errlen) != 0 ||
        env_positive(PEAK_BF16_ENV, &gflops, err, errlen) != 0 ||
        env_flag(GEMM_BF16_EMULATE_ENV, false, &flag, err, errlen) != 0 ||
        env_flag(PRECISION_CACHE_ENV, true, &flag, err, errlen) != 0 ||
        restart_count(&restarts, err, errlen) != 0)
        return -1;
    return 0;
}

int train_run(const run_config *config, const char *resume, const comm_world *world,
              train_requests *req, train_result *res, char *err, size_t errlen)
{
    trainer tr;
    memset(res, 0, sizeof *res);
    run_config resolved = *config;   /* precision auto becomes the measured one */
    precision_choice pc = {.chosen = ""};
    int rc = trainer_open(&tr, &resolved, resume, world, req, &pc, err, errlen);
    res->bad_config = tr.config_refused;
    if (rc == 0) {   /* resume before any output: a refused checkpoint is one line */
        rc = resume_checkpoint(&tr, err, errlen);
        if (rc == 0 && tr.bf16_params) {   /* the exact values loaded become the masters */
            rc = optimizer_master_init(&tr.opt, &tr.model, &tr.shard);
            if (rc != 0)
                snprintf(err, errlen, "out of memory allocating the fp32 master weights");
            rc = all_ranks_ok(rc, "the fp32 master weights",
                              "another rank could not start (its message says why)", err, errlen);
            if (rc == 0)
                round_params(&tr);
        }
        if (rc != 0)
            status_event(&tr.status, "error", 0, err);
    }
    if (rc == 0) {
        report_start(&tr, &pc);
        int restarts;
        restart_count(&restarts, NULL, 0);   /* checked at start: train_check_env */
        if (restarts > 0) {
            char msg[128];
            snprintf(msg, sizeof msg, "restart %d: started again at step %d", restarts,
                     tr.start_step);
            status_event(&tr.status, "event", tr.start_step, msg);
        }
        if (world->size > BUCKETS_PAIRWISE_MAX_RANKS) {
            char msg[160];
            snprintf(msg, sizeof msg, "%d ranks: past %d the scaling model puts recursive halving "
                     "ahead of the pairwise gradient exchange, which runs (docs/scaling.md)",
                     world->size, BUCKETS_PAIRWISE_MAX_RANKS);
            status_event(&tr.status, "event", tr.start_step, msg);
        }
        if (tr.model.half == GEMM_BF16 && !gemm_bf16_native())
            status_event(&tr.status, "event", tr.start_step,
                         "bf16 matrix products are emulated in fp32: this CPU has no native bf16 path");
        rc = run_loop(&tr, res, err, errlen);
        if (rc != 0)
            status_event(&tr.status, "error", res->steps_done, err);
        else
            status_done(&tr.status, res->steps_done, res->tokens_per_s, res->train_seconds,
                        run_peak_gflops(&tr), res->steps_run > 0 ? &res->final_loss : NULL,
                        res->evaluated ? &res->final_val_loss : NULL);
    }
    trainer_close(&tr);
    return rc;
}
