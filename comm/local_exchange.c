#include "comm/local_exchange.h"

#include "kernels/clock.h"
#include "kernels/cpu.h"
#include "kernels/elementwise.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The marks: per rank, the running count of buckets its backward finished,
 * of buckets whose slice it summed (the two equal between exchanges), and
 * of its parameter updates. */
enum { MARK_READY, MARK_SUMMED, MARK_PARAMS, MARK_KINDS };

enum { ALIGN = 4096 };

struct local_exchange {
    node_share *s;
    const zero_shard *z;
    buckets_mode mode;
    bool one_params;          /* one copy of the parameters: nothing to copy */
    int count;                /* buckets; bucket i is the shard's piece count - 1 - i */
    int rank, size;
    float **params, **grads;  /* [size]: every rank's arenas */
    /* this step's prefixes of the buckets: finished here (marked ready), our
     * slice summed, and (allreduce) the others' summed slices copied in */
    int started, reduced, finished;
    unsigned base, next_base; /* the marks' counts before this step's buckets */
    size_t ready_from;        /* gradients from this arena offset on are final */
    double busy_s, flight_s, flight_since;
    unsigned pgen;            /* parameter updates so far */
    unsigned char *pcopied;   /* [count]: this update's bucket copied in */
    int pleft;                /* buckets of this update not copied yet */
    double pstart, pflight_s;
};

static size_t arena_stride(size_t n)
{
    size_t bytes = (n ? n : 1) * sizeof(float);
    return (bytes + ALIGN - 1) / ALIGN * ALIGN;
}

/* The window: the parameters (one copy, or one per rank), then every
 * rank's gradients. */
size_t local_arena_bytes(size_t n, int size, buckets_mode mode)
{
    return ((local_one_params(mode) ? 1 : (size_t)size) + (size_t)size) * arena_stride(n);
}

int local_marks(int size)
{
    return MARK_KINDS * size;
}

bool local_one_params(buckets_mode mode)
{
    return mode == BUCKETS_REDUCE_SCATTER;
}

float *local_params(const node_share *s, size_t n, int r, buckets_mode mode)
{
    const size_t copy = local_one_params(mode) ? 0 : (size_t)r;
    return (float *)(void *)((char *)node_share_memory(s) + copy * arena_stride(n));
}

float *local_grads(const node_share *s, size_t n, int r, buckets_mode mode)
{
    const size_t copies = local_one_params(mode) ? 1 : (size_t)node_share_size(s);
    return (float *)(void *)((char *)node_share_memory(s) + (copies + (size_t)r) * arena_stride(n));
}

static int mark(const local_exchange *x, int kind, int r)
{
    return kind * x->size + r;
}

local_exchange *local_create(node_share *s, const zero_shard *shard, buckets_mode mode)
{
    if (mode == BUCKETS_RELEASE || node_share_size(s) != shard->size ||
        node_share_rank(s) != shard->rank)
        return NULL;
    local_exchange *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->s = s;
    x->z = shard;
    x->mode = mode;
    x->one_params = local_one_params(mode);
    x->count = shard->npieces;
    x->rank = shard->rank;
    x->size = shard->size;
    x->flight_since = -1;
    x->ready_from = SIZE_MAX;
    x->params = malloc((size_t)x->size * sizeof *x->params);
    x->grads = malloc((size_t)x->size * sizeof *x->grads);
    x->pcopied = calloc((size_t)x->count + 1, 1);
    if (!x->params || !x->grads || !x->pcopied) {
        local_destroy(x);
        return NULL;
    }
    for (int r = 0; r < x->size; r++) {
        x->params[r] = local_params(s, shard->n, r, mode);
        x->grads[r] = local_grads(s, shard->n, r, mode);
    }
    /* the counts go on from an exchange made on this window before (every
     * rank ended it at the same counts) */
    x->next_base = node_share_generation(s, mark(x, MARK_READY, x->rank));
    x->pgen = node_share_generation(s, mark(x, MARK_PARAMS, x->rank));
    return x;
}

void local_destroy(local_exchange *x)
{
    if (!x)
        return;
    free(x->params);
    free(x->grads);
    free(x->pcopied);
    free(x);
}

/* Whether every other rank's mark of this kind has reached gen. */
static bool all_reached(const local_exchange *x, int kind, unsigned gen)
{
    for (int r = 0; r < x->size; r++)
        if (r != x->rank && !node_share_reached(x->s, mark(x, kind, r), gen))
            return false;
    return true;
}

/* Returns once every other rank's mark of this kind has reached gen; under
 * the watchdog, which names the rank that never gets there. */
static void await_all(local_exchange *x, int kind, unsigned gen, const char *what)
{
    for (int r = 0; r < x->size; r++)
        if (r != x->rank)
            node_share_await(x->s, mark(x, kind, r), gen, r, what, NULL, NULL);
}

/* Our slice of bucket i += every other rank's values of it, read where their
 * backward wrote them (in rank order, so the sum does not depend on which
 * rank finished first). */
static void sum_slice(local_exchange *x, int i)
{
    size_t lo, hi;
    buckets_slice(x->z, i, x->rank, &lo, &hi);
    float *own = x->grads[x->rank];
    for (int r = 0; r < x->size; r++)
        if (r != x->rank)
            residual_forward(own + lo, own + lo, x->grads[r] + lo, hi - lo);
    node_share_publish(x->s, mark(x, MARK_SUMMED, x->rank), x->base + (unsigned)i + 1);
}

/* Copies in pieces the calling thread's OpenMP team shares (as the adds'). */
enum { COPY_CHUNK = 1 << 16, COPY_PAR_MIN = 1 << 18 };

/* Each other rank's slice of bucket i from its arena `from` into ours. */
static void copy_peer_slices(local_exchange *x, float *const *from, int i)
{
    for (int r = 0; r < x->size; r++) {
        size_t lo, hi;
        buckets_slice(x->z, i, r, &lo, &hi);
        if (r == x->rank)
            continue;
        float *dst = from[x->rank] + lo;
        const float *src = from[r] + lo;
        CPU_FOR_CHUNKS(hi - lo, COPY_CHUNK, COPY_PAR_MIN, off, len,
                       memcpy(dst + off, src + off, len * sizeof(float)));
    }
}

/* Sums and copies what every rank has made available, in bucket order,
 * without waiting. */
static void advance(local_exchange *x)
{
    while (x->reduced < x->started && all_reached(x, MARK_READY, x->base + x->reduced + 1))
        sum_slice(x, x->reduced++);
    if (x->mode != BUCKETS_ALLREDUCE) {
        x->finished = x->reduced;
        return;
    }
    while (x->finished < x->reduced && all_reached(x, MARK_SUMMED, x->base + x->finished + 1))
        copy_peer_slices(x, x->grads, x->finished++);
}

void local_begin(local_exchange *x)
{
    x->base = x->next_base;
    x->next_base += (unsigned)x->count;
    x->started = x->reduced = x->finished = 0;
    x->ready_from = SIZE_MAX;
    x->busy_s = x->flight_s = 0;
    x->flight_since = -1;
}

void local_ready(local_exchange *x, size_t from)
{
    const double t0 = clock_mono_s();
    if (from < x->ready_from)
        x->ready_from = from;
    const int before = x->started;
    for (size_t start, end; x->started < x->count; x->started++) {
        buckets_range(x->z, x->started, &start, &end);
        if (start < x->ready_from)
            break;
    }
    if (x->started > before) {
        if (x->flight_since < 0)
            x->flight_since = t0;
        node_share_publish(x->s, mark(x, MARK_READY, x->rank), x->base + (unsigned)x->started);
    }
    advance(x);
    x->busy_s += clock_mono_s() - t0;
}

double local_finish(local_exchange *x)
{
    local_ready(x, 0);
    const double t0 = clock_mono_s();
    const char *what = x->mode == BUCKETS_ALLREDUCE ? "the gradient allreduce"
                                                    : "the gradient reduce-scatter";
    while (x->reduced < x->count) {
        await_all(x, MARK_READY, x->base + x->reduced + 1, what);
        sum_slice(x, x->reduced++);
        advance(x);   /* copies what the others summed meanwhile */
    }
    while (x->finished < x->count) {
        await_all(x, MARK_SUMMED, x->base + x->finished + 1, what);
        copy_peer_slices(x, x->grads, x->finished++);
    }
    const double t1 = clock_mono_s();
    if (x->flight_since >= 0)
        x->flight_s += t1 - x->flight_since;
    x->flight_since = -1;
    x->busy_s += t1 - t0;
    return x->busy_s;
}

double local_flight_seconds(const local_exchange *x)
{
    return x->flight_s;
}

void local_params_start(local_exchange *x)
{
    x->pgen++;
    node_share_publish(x->s, mark(x, MARK_PARAMS, x->rank), x->pgen);
    memset(x->pcopied, 0, (size_t)x->count);
    x->pleft = x->count;
    x->pstart = clock_mono_s();
    x->pflight_s = 0;
}

double local_params_wait(local_exchange *x, size_t lo, size_t hi)
{
    if (x->pleft == 0)
        return 0;
    const double t0 = clock_mono_s();
    if (x->pleft == x->count) {   /* this update's first wait: for every rank's */
        await_all(x, MARK_PARAMS, x->pgen, "the parameter allgather");
        if (x->one_params)   /* read in place: nothing to copy */
            x->pleft = 0;
    }
    for (int i = x->count - 1; i >= 0 && x->pleft > 0; i--) {
        size_t start, end;
        buckets_range(x->z, i, &start, &end);
        if (x->pcopied[i] || start >= hi || end <= lo)
            continue;
        copy_peer_slices(x, x->params, i);
        x->pcopied[i] = 1;
        x->pleft--;
    }
    const double t1 = clock_mono_s();
    if (x->pleft == 0)
        x->pflight_s = t1 - x->pstart;
    return t1 - t0;
}

double local_params_flight_seconds(const local_exchange *x)
{
    return x->pleft > 0 ? 0 : x->pflight_s;
}
