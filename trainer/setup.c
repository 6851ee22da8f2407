/* setup: opening and closing one rank's run (trainer/trainer_state.h). */
#include "trainer/trainer_state.h"

#include <inttypes.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "comm/local_exchange.h"
#include "comm/watchdog.h"
#include "io/checkpoint.h"
#include "io/fsutil.h"
#include "kernels/env.h"
#include "trainer/init_from.h"
#include "trainer/metrics.h"

/* A number from a one-line file (cgroup limits), or -1 ("max", missing). */
static long long read_limit(const char *path)
{
    FILE *f = fopen(path, "r");
    long long v = -1;
    if (f) {
        if (fscanf(f, "%lld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

/* A /proc/meminfo field ("MemTotal", "MemAvailable") in bytes, or -1. */
static long long meminfo_bytes(const char *field)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    size_t n = strlen(field);
    long long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':' &&
            sscanf(line + n + 1, "%lld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* Memory this process may still use: MemAvailable, capped by the cgroup's
 * limit (containers, systemd units) minus what the cgroup already uses. */
static long long available_memory_bytes(void)
{
    long long avail = meminfo_bytes("MemAvailable");
    long long limit = read_limit("/sys/fs/cgroup/memory.max");
    long long used = read_limit("/sys/fs/cgroup/memory.current");
    if (limit > 0 && used >= 0 && (avail < 0 || limit - used < avail))
        avail = limit - used;
    return avail;
}

/* Memory this process could ever have: MemTotal, or the cgroup's limit
 * where that is lower. */
static long long total_memory_bytes(void)
{
    long long total = meminfo_bytes("MemTotal");
    long long limit = read_limit("/sys/fs/cgroup/memory.max");
    if (limit > 0 && (total < 0 || limit < total))
        total = limit;
    return total;
}

int restart_count(int *count, char *err, size_t errlen)
{
    const char *v = getenv("GPT_RESTARTS");
    return env_count(v && *v ? "GPT_RESTARTS" : "SLURM_RESTART_COUNT", 0, count, err, errlen);
}

/* the status socket and the control server (rank 0).  An endpoint
 * that cannot be bound (port in use) is reported and the run goes on without
 * it: training matters more than watching it. */
static void services_open(trainer *tr, const run_config *c)
{
    char why[256], msg[384];
    tr->pub = publisher_open(c->status_endpoint, why, sizeof why);
    if (!tr->pub) {
        snprintf(msg, sizeof msg, "%s; running without the status socket", why);
        status_event(&tr->status, "event", 0, msg);
        tr->pub = publisher_open("none", why, sizeof why);   /* the latest step, for "status" */
    }
    tr->status.pub = tr->pub;
    control_options co = {.endpoint = c->control_endpoint, .token = control_token(c),
                          .checkpoint_available = true,   /* via req->checkpoints */
                          .latest_step = publisher_latest_step_cb, .ctx = tr->pub};
    tr->ctl = control_open(&co, why, sizeof why);
    if (!tr->ctl) {
        snprintf(msg, sizeof msg, "%s; running without the control server", why);
        status_event(&tr->status, "event", 0, msg);
    }
    char where[300];
    int restarts;
    restart_count(&restarts, NULL, 0);   /* checked at start: train_check_env */
    if (metrics_open(&tr->status.metrics, c->metrics_endpoint, restarts, where,
                     sizeof where, why, sizeof why) != 0) {
        snprintf(msg, sizeof msg, "%s; running without the metrics endpoint", why);
        status_event(&tr->status, "event", 0, msg);
    } else if (tr->status.metrics && strcmp(strrchr(c->metrics_endpoint, ':'), ":0") == 0) {
        snprintf(msg, sizeof msg, "metrics on %s", where);   /* port 0: the one it got */
        status_event(&tr->status, "event", 0, msg);
    }
}

/* Forward reached parameters that ZeRO's allgather may still be bringing. */
static void on_params_needed(void *ctx, size_t lo, size_t hi)
{
    trainer *tr = ctx;
    tr->comm_exposed_s += buckets_params_wait(tr->buckets, lo, hi);
}

static int cmp_size(const void *a, const void *b)
{
    const size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

/* The shard over the gradient buckets, which end at tensor boundaries: each
 * is final with its last tensor.  -1 when out of memory. */
static int shard_arena(trainer *tr)
{
    const gpt2 *m = &tr->model;
    const size_t bucket_floats = (size_t)tr->cfg->bucket_mb * (1 << 20) / sizeof(float);
    size_t *cuts = malloc((size_t)m->num_tensors * sizeof *cuts);
    if (!cuts)
        return -1;
    for (int i = 0; i < m->num_tensors; i++)
        cuts[i] = m->tensors[i].offset;
    qsort(cuts, (size_t)m->num_tensors, sizeof *cuts, cmp_size);
    int rc = buckets_shard(&tr->shard, m->num_params, bucket_floats, cuts, m->num_tensors,
                           tr->world->rank, tr->world->size);
    free(cuts);
    return rc;
}

static buckets_mode exchange_mode(const run_config *c)
{
    return c->zero_stage >= 2   ? BUCKETS_RELEASE
           : c->zero_stage == 1 ? BUCKETS_REDUCE_SCATTER
                                : BUCKETS_ALLREDUCE;
}

static grad_buckets *make_buckets(const trainer *tr)
{
    const run_config *c = tr->cfg;
    const buckets_mode mode = exchange_mode(c);
    if (tr->arenas)
        return buckets_create_shared(tr->arenas, &tr->shard, mode);
    return buckets_create(tr->model.grads, &tr->shard, mode,
                          c->grad_wire == GRAD_WIRE_BF16 ? BUCKETS_WIRE_BF16 : BUCKETS_WIRE_FP32);
}

/* With several ranks: the buckets, the tensors in forward order (for ZeRO's
 * allgather, which forward waits on) and the summed embedding rows. */
static int open_rank_exchange(trainer *tr, char *err, size_t errlen)
{
    const run_config *c = tr->cfg;
    gpt2 *m = &tr->model;
    tr->buckets = make_buckets(tr);
    tr->fwd_offsets = malloc((size_t)m->num_tensors * sizeof *tr->fwd_offsets);
    tr->fwd_sizes = malloc((size_t)m->num_tensors * sizeof *tr->fwd_sizes);
    /* the order forward asks for them (gpt2.params_needed): the table's, but
     * wte (its first) last, for the LM head */
    for (int i = 0; tr->fwd_offsets && tr->fwd_sizes && i < m->num_tensors; i++) {
        const param_tensor *t = &m->tensors[(i + 1) % m->num_tensors];
        tr->fwd_offsets[i] = t->offset;
        tr->fwd_sizes[i] = t->numel;
    }
    if (tr->zero) {
        m->params_needed = on_params_needed;
        m->params_needed_ctx = tr;
    }
    /* the embedding reads its rows of wte (fetched first) before wte's bucket
     * of a bf16 allgather is waited for */
    const param_tensor *wte = &m->tensors[0];
    if (!tr->buckets || !tr->fwd_offsets || !tr->fwd_sizes ||
        (tr->bf16_params &&
         buckets_params_read_early(tr->buckets, wte->offset, wte->offset + wte->numel) != 0)) {
        snprintf(err, errlen, "out of memory allocating gradient buckets");
        return -1;
    }
    if (sparse_rows_init(&tr->embed_sum, c->batch_size * c->seq_len, c->n_embd,
                         c->vocab_size) != 0) {
        snprintf(err, errlen, "out of memory allocating the embedding gradient rows");
        return -1;
    }
    return 0;
}

/* Whether the ranks exchange through memory they share (comm/local_exchange.h):
 * several, all on this machine, at stage 0 or 1 (stage 2 gives back the
 * memory of the gradients the others would read), unless shm_exchange is 0. */
static bool local_exchange_wanted(const run_config *c, const comm_world *w)
{
    return c->shm_exchange && w->size > 1 && w->local_size == w->size && c->zero_stage <= 1;
}

/* Whether the run has bf16 parameters (trainer.bf16_params), given whether
 * its precision is (or may become) bf16: only over messages, which then
 * carry bf16; through shared memory nothing crosses a wire. */
static bool bf16_params_wanted(const run_config *c, const comm_world *w, bool bf16_precision)
{
    return c->zero_stage >= 1 && w->size > 1 && c->grad_wire == GRAD_WIRE_BF16 &&
           bf16_precision && !local_exchange_wanted(c, w);
}

/* How gradients are combined, in buckets during backward: stage 0
 * allreduces them and keeps the whole optimizer state; stage 1
 * reduce-scatters them and keeps only this rank's shard of the state; stage 2
 * also gives back the memory of the gradients outside the shard. */
static int open_reduction(trainer *tr, char *err, size_t errlen)
{
    const run_config *c = tr->cfg;
    const comm_world *w = tr->world;
    size_t n = tr->model.num_params;
    /* one rank holds everything: stage 0, without the shard's bookkeeping */
    tr->zero = c->zero_stage >= 1 && w->size > 1;
    /* one rank has no exchange to shard for */
    if (w->size > 1 && shard_arena(tr) != 0) {
        snprintf(err, errlen, "cannot shard %zu parameters over %d ranks: out of memory", n,
                 w->size);
        return -1;
    }
    if (tr->zero)
        n = tr->shard.len;
    tr->bf16_params = bf16_params_wanted(c, w, c->precision == PRECISION_BF16);
    if (w->size > 1 && open_rank_exchange(tr, err, errlen) != 0)
        return -1;
    int rc = c->optimizer_offload == OFFLOAD_FILE
                 ? optimizer_create_in_file(&tr->opt, n, c->optimizer_offload_dir, w->rank, err,
                                            errlen)
                 : optimizer_create(&tr->opt, n, err, errlen);
    return rc;
}

gpt2_options train_model_options(const run_config *c, int ranks)
{
    static const gpt2_precision model_precisions[] = {
        [PRECISION_AUTO] = PREC_FP32,   /* not measured yet: the memory check's first guess */
        [PRECISION_FP32] = PREC_FP32, [PRECISION_BF16] = PREC_BF16, [PRECISION_FP16] = PREC_FP16,
    };
    return (gpt2_options){.precision = model_precisions[c->precision],
                          .recompute = c->recompute == RECOMPUTE_BLOCK,
                          .split_embed_grad = ranks > 1};
}

/* Ranks all on this machine: every rank's gradient arena and the parameters
 * (under ZeRO 1 one copy for all) in one window, the model's there
 * (comm/local_exchange.h).  Collective; without the memory (no room in
 * /dev/shm) the exchange goes by messages, and the training event says why. */
static void open_local_arenas(trainer *tr, const gpt2_dims *dims, gpt2_options *opt)
{
    const comm_world *w = tr->world;
    if (!local_exchange_wanted(tr->cfg, w))
        return;
    const size_t n = gpt2_count_params(dims);
    const buckets_mode mode = exchange_mode(tr->cfg);
    tr->arenas = node_share_open(local_arena_bytes(n, w->size, mode), local_marks(w->size),
                                 tr->arenas_unshared, sizeof tr->arenas_unshared);
    if (!tr->arenas)
        return;
    opt->params_memory = local_params(tr->arenas, n, w->rank, mode);
    opt->grads_memory = local_grads(tr->arenas, n, w->rank, mode);
    opt->params_shared = local_one_params(mode);
}

static void publish_copy(void *ctx, int copy, unsigned gen)
{
    node_share_publish(((const trainer *)ctx)->node, copy, gen);
}

static void poke_exchange(void *buckets)
{
    buckets_poke(buckets);
}

static void await_copy(void *ctx, int copy, int sharer, unsigned gen)
{
    const trainer *tr = ctx;
    node_share_await(tr->node, copy, gen, sharer,
                     "a packed weight matrix from another rank on this node",
                     tr->buckets ? poke_exchange : NULL, tr->buckets);
}

/* Several ranks on this node in 16-bit precision: one packed copy of the
 * weights for all of them (model.h, gpt2_pack_share).  Every rank calls it
 * with the same settings (it is collective); without the memory each rank
 * packs its own, and the training event says why. */
static void open_pack_share(trainer *tr, const gpt2_dims *dims, gpt2_options *opt)
{
    if (tr->world->size == 1 || !tr->cfg->share_packed)
        return;
    size_t bytes = gpt2_pack_share_bytes(dims, opt);
    if (bytes == 0)
        return;
    tr->node = node_share_open(bytes, gpt2_pack_share_copies(dims), tr->pack_unshared,
                               sizeof tr->pack_unshared);
    if (!tr->node)
        return;
    tr->pack_share = (gpt2_pack_share){.memory = node_share_memory(tr->node),
                                       .rank = node_share_rank(tr->node),
                                       .size = node_share_size(tr->node),
                                       .publish = publish_copy, .await = await_copy,
                                       .ctx = tr};
    opt->pack_share = &tr->pack_share;
}

/* precision auto: rank 0 times the products (or reads its cache) and every
 * rank takes its choice, so all ranks run the same precision. */
static void resolve_precision(run_config *c, const comm_world *w, precision_choice *pc)
{
    int chosen = 0;
    if (w->rank == 0) {
        precision_choose(c, pc);
        chosen = (int)pc->dtype;
    }
    if (w->size > 1)
        comm_broadcast_int(&chosen, 0, "the precision choice");
    c->precision = precision_of_dtype((gemm_dtype)chosen);
}

/* Rank 0 times the weight gradients' kernels (or reads its cache) and every
 * rank takes its choice, so all ranks run the same products. */
static void resolve_weight_grad(trainer *tr)
{
    int gemm_kernel = 0;
    if (tr->world->rank == 0) {
        weight_grad_choose(tr->cfg, &tr->weight_grad);
        gemm_kernel = tr->weight_grad.gemm_kernel;
    }
    if (tr->world->size > 1)
        comm_broadcast_int(&gemm_kernel, 0, "the weight-gradient kernel choice");
    gemm_set_trans_a_kernel(gemm_kernel != 0);
}

/* bf16 runs: rank 0 times attention's products in fp32 and bf16 (or reads
 * its cache) and every rank takes its choice. */
static void resolve_attention(trainer *tr, gpt2_options *opt)
{
    int bf16 = 0;
    if (tr->world->rank == 0) {
        attention_choose(tr->cfg, &tr->attention);
        bf16 = tr->attention.bf16;
    }
    if (tr->world->size > 1)
        comm_broadcast_int(&bf16, 0, "the attention choice");
    opt->attention_fp32 = !bf16;
}

int all_ranks_ok_after(int rc, const char *what, double work_s, const char *why_other, char *err,
                       size_t errlen)
{
    if (!comm_max_int_after(rc != 0, what, work_s))
        return 0;
    if (rc == 0)
        snprintf(err, errlen, "%s", why_other);
    return -1;
}

int all_ranks_ok(int rc, const char *what, const char *why_other, char *err, size_t errlen)
{
    return all_ranks_ok_after(rc, what, 0, why_other, err, errlen);
}

/* The bytes the run will hold on this rank: the model and its activations,
 * the optimizer's moments and the buffers the options add. */
static double memory_needed(const run_config *c, const comm_world *w, const gpt2_dims *dims,
                            const gpt2_options *opt)
{
    /* Adam's m and v, unless they live in a memory-mapped file (optimizer_offload
     * file:DIR), whose pages the kernel writes back and drops as memory runs short */
    bool moments_in_file = c->optimizer_offload == OFFLOAD_FILE;
    double need = (double)gpt2_memory_bytes(dims, c->batch_size, c->seq_len, opt) +
                  (moments_in_file ? 0.0 : 2.0 * sizeof(float) * (double)gpt2_count_params(dims) /
                                               (c->zero_stage >= 1 ? w->size : 1));
    /* bf16 parameters (auto may choose bf16): the masters, the bf16 sent, and
     * wte's buckets staged (one may reach past it, by at most a bucket, and a
     * bucket never holds more than the whole model: a bucket_mb past the
     * model's size means one bucket, not that much memory) */
    if (bf16_params_wanted(c, w, c->precision_auto || opt->precision == PREC_BF16)) {
        double params = (double)gpt2_count_params(dims), bucket = c->bucket_mb * 1048576.0 / 4.0;
        need += 6.0 * params / w->size +
                2.0 * ((double)c->vocab_size * c->n_embd + (bucket < params ? bucket : params));
    }
    if (c->share_packed && w->local_size > 1)   /* the node's ranks share one packed copy */
        need -= (double)gpt2_pack_share_bytes(dims, opt) * (w->local_size - 1) / w->local_size;
    if (local_exchange_wanted(c, w) && local_one_params(exchange_mode(c)))   /* one parameter copy */
        need -= sizeof(float) * (double)gpt2_count_params(dims) * (w->size - 1) / w->size;
    if (w->size > 1)   /* the summed embedding rows (comm/sparse.h) */
        need += sparse_rows_bytes(w->size, c->batch_size * c->seq_len, c->n_embd, c->vocab_size);
    if (c->checkpoint_async && w->rank == 0)   /* the snapshot async saves write from */
        need += 3.0 * sizeof(float) * (double)gpt2_count_params(dims);
    /* (auto picks only precisions with a native product: no widening buffer) */
    if (!c->precision_auto &&
        (opt->precision == PREC_FP16 || (opt->precision == PREC_BF16 && !gemm_bf16_native()))) {
        /* the fp32 widening buffer of 16-bit operands without a native product */
        double wide = c->vocab_size > 4 * c->n_embd ? c->vocab_size : 4.0 * c->n_embd;
        need += 4.0 * ((double)c->batch_size * c->seq_len * wide + (double)c->vocab_size * c->n_embd);
    }
    return need;
}

/* Refuses a run too large for the machine (as a config's mistake: exit 2,
 * which launch/run.sh does not restart) or for the memory left now (exit 1: a
 * restart may find more), or a checkpointer that could not be made, on every
 * rank together before the model is made. */
static int check_memory(trainer *tr, const gpt2_dims *dims, const gpt2_options *opt, char *err,
                        size_t errlen)
{
    double need = memory_needed(tr->cfg, tr->world, dims, opt);
    long long avail = available_memory_bytes(), total = total_memory_bytes();
    int rc = 0;
    if (!tr->ckpt) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    } else if (total > 0 && need > (double)total) {
        /* more than the machine has: the config's to change, not a restart's
         * to wait out, so the exit status is a config's */
        snprintf(err, errlen, "config needs about %.1f GB but this machine has %.1f GB in all "
                 "(reduce batch_size, seq_len or the model size)", need / 1e9, total / 1e9);
        tr->config_refused = true;
        rc = -1;
    } else if (avail > 0 && need > (double)avail) {
        snprintf(err, errlen, "config needs about %.1f GB but only %.1f GB of memory is available "
                 "(reduce batch_size, seq_len or the model size)", need / 1e9, avail / 1e9);
        rc = -1;
    }
    return all_ranks_ok(rc, "the memory check",
                        "another rank could not start (its message says why)", err, errlen);
}

/* The keys that set the length of a window, as a refusal names them. */
#define WINDOW_KEYS "seq_len (n_positions when not given)"

/* The data and its tokenizer (which the first checkpoint stores), then the
 * model.  Each rank checks its own view (hosts may hold their own copies):
 * all stop together, before the first collective, or the others would wait. */
static int open_data_and_model(trainer *tr, const gpt2_dims *dims, gpt2_options opt, char *err,
                               size_t errlen)
{
    const run_config *c = tr->cfg;
    int rc = dataset_check(c->data_dir, c->vocab_size, err, errlen);
    if (rc == 0)
        rc = dataset_open(&tr->data, c->data_dir, c->seq_len, c->vocab_size, (uint64_t)c->seed,
                          err, errlen);
    /* a window longer than the data is the config's to change, as its other
     * refusals: the line names the keys and the exit status is a config's */
    if (rc == DATASET_TOO_SHORT) {
        size_t len = strlen(err);
        snprintf(err + len, errlen - len, " (lower %s, or give more data)", WINDOW_KEYS);
        tr->config_refused = true;
        rc = -1;
    }
    if (rc == 0 && c->eval_every > 0 && dataset_val_windows(&tr->data) == 0) {
        snprintf(err, errlen, "%s/val.tok: %" PRIu64 " tokens is too few for windows of %d+1 "
                 "tokens (eval_every 0 trains without evaluating, or lower %s)", c->data_dir,
                 tr->data.val.count, c->seq_len, WINDOW_KEYS);
        tr->config_refused = true;
        rc = -1;
    }
    if (rc == 0) {   /* padding rows past the data's vocabulary are masked (model.h) */
        opt.vocab_real = (int)(tr->data.train.vocab_size > tr->data.val.vocab_size
                                   ? tr->data.train.vocab_size : tr->data.val.vocab_size);
        rc = gpt2_create(&tr->model, dims, c->batch_size, c->seq_len, &opt, err, errlen);
    }
    return all_ranks_ok(rc, "the check of the data",
                        "another rank could not start (its message says why)", err, errlen);
}

/* Every rank starts from rank 0's parameters, whatever its seed or file
 * (one copy shared by all: once rank 0 has written them). */
static void broadcast_params(trainer *tr)
{
    if (tr->model.opt.params_shared) {
        comm_max_int(0, "the parameter broadcast");
        gpt2_params_changed(&tr->model);
    } else if (tr->world->size > 1) {
        comm_broadcast_floats(tr->model.params, tr->model.num_params, 0,
                              "the parameter broadcast");
    }
}

int trainer_init_from(trainer *tr, char *err, size_t errlen)
{
    const run_config *c = tr->cfg;
    int rc = tr->world->rank == 0 ? init_from_load(c->init_from, &tr->model, err, errlen) : 0;
    char why[sizeof c->init_from + 32];
    snprintf(why, sizeof why, "rank 0 could not load %s", c->init_from);
    /* the others wait while rank 0 reads the weights (gigabytes for a large model) */
    double read_s = watchdog_io_seconds(sizeof(float) * (double)tr->model.num_params);
    if (all_ranks_ok_after(rc, "loading init_from", read_s, why, err, errlen) != 0)
        return -1;
    broadcast_params(tr);
    return 0;
}

/* The first parameters: the seed's, or init_from's weights; a run given
 * --resume reads those only if it finds no checkpoint (train.c), since the
 * checkpoint would replace them. */
static int init_params(trainer *tr, const char *resume, char *err, size_t errlen)
{
    if (!tr->model.opt.params_shared || tr->world->rank == 0)
        gpt2_init_params(&tr->model, (uint64_t)tr->cfg->seed);
    tr->init_from_deferred = tr->cfg->init_from[0] && resume;
    if (tr->cfg->init_from[0] && !resume)
        return trainer_init_from(tr, err, errlen);
    broadcast_params(tr);
    return 0;
}

static int alloc_batch(trainer *tr, char *err, size_t errlen)
{
    size_t bt = (size_t)tr->cfg->batch_size * tr->cfg->seq_len;
    tr->inputs = malloc(bt * sizeof(int));
    tr->targets = malloc(bt * sizeof(int));
    if (!tr->inputs || !tr->targets) {
        snprintf(err, errlen, "out of memory allocating batch buffers");
        return -1;
    }
    return 0;
}

/* The log and the sockets: rank 0 alone reports. */
static int open_reporting(trainer *tr, char *err, size_t errlen)
{
    if (tr->world->rank != 0) {
        tr->status.muted = true;
        return 0;
    }
    /* one run writes an out_dir: a second one (a requeued job beside a
     * lingering one) would interleave its log and checkpoints with it */
    if (fs_mkdir_p(tr->cfg->out_dir, err, errlen) != 0 ||
        (tr->out_lock = fs_lock_dir(tr->cfg->out_dir, err, errlen)) < 0 ||
        status_open(&tr->status, tr->cfg->out_dir, tr->cfg->log_every, err, errlen) != 0)
        return -1;
    /* a killed run's unfinished checkpoint would hold its disk space until
     * this run's first save */
    char stale[1024], msg[1100];
    ckpt_remove_stale(tr->cfg->out_dir, stale, sizeof stale);
    if (stale[0]) {
        snprintf(msg, sizeof msg, "removed %s: left by an interrupted save", stale);
        status_event(&tr->status, "event", 0, msg);
    }
    services_open(tr, tr->cfg);
    return 0;
}

int trainer_open(trainer *tr, run_config *c, const char *resume, const comm_world *w,
                 train_requests *req, precision_choice *pc, char *err, size_t errlen)
{
    memset(tr, 0, sizeof *tr);
    tr->out_lock = -1;
    tr->cfg = c;
    tr->world = w;
    tr->req = req;
    tr->ckpt = checkpointer_new(resume);
    gpt2_dims dims = {c->vocab_size, c->n_positions, c->n_embd, c->n_layer, c->n_head};
    gpt2_options opt = train_model_options(c, w->size);
    if (check_memory(tr, &dims, &opt, err, errlen) != 0)
        return -1;
    if (c->precision_auto) {
        resolve_precision(c, w, pc);
        opt = train_model_options(c, w->size);
    }
    resolve_weight_grad(tr);
    resolve_attention(tr, &opt);
    open_pack_share(tr, &dims, &opt);
    open_local_arenas(tr, &dims, &opt);
    if (open_data_and_model(tr, &dims, opt, err, errlen) != 0 ||
        init_params(tr, resume, err, errlen) != 0)
        return -1;
    tr->fp16 = opt.precision == PREC_FP16;   /* PyTorch GradScaler's defaults */
    scaler_init(&tr->scaler, tr->fp16 ? 65536.0f : 1.0f, tr->fp16 ? 2000 : 0);
    int rc = open_reduction(tr, err, errlen);
    if (rc == 0)
        rc = alloc_batch(tr, err, errlen);
    if (all_ranks_ok(rc, "the start of the gradient exchange",
                     "another rank could not start (its message says why)", err, errlen) != 0)
        return -1;
    if (checkpoint_check_fresh(tr->ckpt, c, w, err, errlen) != 0)   /* before out_dir is written */
        return -1;
    return all_ranks_ok(open_reporting(tr, err, errlen), "opening the log",
                        "rank 0 could not open its log or sockets (its message says why)", err,
                        errlen);
}

void trainer_close(trainer *tr)
{
    checkpoint_close(tr->ckpt, &tr->status);   /* joins a write in flight, before the model goes */
    buckets_destroy(tr->buckets);
    free(tr->fwd_offsets);
    free(tr->fwd_sizes);
    sparse_rows_free(&tr->embed_sum);
    zero_free(&tr->shard);
    control_close(tr->ctl);
    metrics_close(tr->status.metrics);
    tr->status.metrics = NULL;
    tr->status.pub = NULL;
    publisher_close(tr->pub);
    status_close(&tr->status);
    free(tr->inputs);
    free(tr->targets);
    optimizer_destroy(&tr->opt);
    gpt2_destroy(&tr->model);
    node_share_close(tr->node);   /* collective: every rank closes its trainer */
    node_share_close(tr->arenas);
    fs_unlock_dir(tr->out_lock);
    dataset_close(&tr->data);
    gemm_release();
}
