#include "comm/buckets.h"

#include "comm/watchdog.h"

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Buckets whose reduce-scatter is in flight at once: backward completes
 * about one bucket per layer, so two keep the exchange going while costing
 * two buckets of memory. */
enum { SLOTS = 2 };

/* Pairs exchange at most one message each way per bucket and phase, posted
 * in bucket order on both sides, so one tag per phase matches them all. */
enum { TAG_SCATTER = 0, TAG_GATHER = 1 };

struct grad_buckets {
    float *grads;
    size_t n, bucket_floats;
    int count;                /* buckets; bucket 0 is the last one of the arena */
    /* prefixes of the buckets, in order: reduce-scatter posted, then
     * reduce-scatter done (summed; allgather posted), then all done */
    int started, reduced, finished;
    int per;                  /* requests per bucket and phase: 2 per other rank */
    MPI_Request *scatter, *gather;   /* [count][per] each */
    double busy_s;            /* seconds inside these calls since buckets_begin */
    const zero_shard *shard;
    buckets_mode mode;
    float *recv;              /* [SLOTS][size-1][piece]: the other ranks' parts */
    size_t piece;             /* the largest part of one bucket inside one shard */
};

/* grads[lo, hi) = 0, the whole pages inside it returned to the kernel (a
 * private anonymous page reads back as zeros); any allocation's interior
 * pages are ours alone, so neither alignment nor mmap is needed. */
static void release_range(float *grads, size_t lo, size_t hi)
{
    if (hi <= lo)
        return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)(grads + lo), z = (uintptr_t)(grads + hi);
    uintptr_t pa = (a + page - 1) & ~(page - 1), pz = z & ~(page - 1);
    if (pz <= pa || madvise((void *)pa, pz - pa, MADV_DONTNEED) != 0) {
        memset((void *)a, 0, z - a);
        return;
    }
    memset((void *)a, 0, pa - a);
    memset((void *)pz, 0, z - pz);
}

grad_buckets *buckets_create(float *grads, size_t n, size_t bucket_floats,
                             const zero_shard *shard, buckets_mode mode)
{
    grad_buckets *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    /* MPI counts are ints: cap a bucket at 2^30 values */
    if (bucket_floats == 0 || bucket_floats > ((size_t)1 << 30))
        bucket_floats = (size_t)1 << 30;
    b->grads = grads;
    b->n = n;
    b->bucket_floats = bucket_floats;
    b->count = (int)((n + bucket_floats - 1) / bucket_floats);
    b->shard = shard;
    b->mode = mode;
    b->per = 2 * (shard->size - 1);
    size_t nreq = (size_t)b->count * (size_t)b->per + 1;
    size_t largest = (size_t)shard->counts[0];   /* zero_init gives rank 0 the most */
    b->piece = largest < bucket_floats ? largest : bucket_floats;
    b->scatter = malloc(nreq * sizeof *b->scatter);
    b->gather = malloc(nreq * sizeof *b->gather);
    b->recv = malloc((SLOTS * (size_t)(shard->size - 1) * b->piece + 1) * sizeof(float));
    if (!b->scatter || !b->gather || !b->recv) {
        buckets_destroy(b);
        return NULL;
    }
    for (size_t i = 0; i < nreq; i++)
        b->scatter[i] = b->gather[i] = MPI_REQUEST_NULL;
    if (mode == BUCKETS_RELEASE) {   /* from the start: the model touched the whole arena */
        release_range(grads, 0, shard->begin);
        release_range(grads, shard->begin + shard->len, n);
    }
    return b;
}

void buckets_destroy(grad_buckets *b)
{
    if (b) {
        free(b->scatter);
        free(b->gather);
        free(b->recv);
    }
    free(b);
}

/* Bucket i covers [*start, *end) of the arena, counted from its end. */
static void bucket_range(const grad_buckets *b, int i, size_t *start, size_t *end)
{
    size_t end_offset = (size_t)(i + 1) * b->bucket_floats;
    *start = end_offset >= b->n ? 0 : b->n - end_offset;
    *end = b->n - (size_t)i * b->bucket_floats;
}

/* [*lo, *hi) = [start, end) within rank r's shard; start, start when they
 * do not meet, so [start, lo) and [hi, end) are always the parts outside. */
static void clip_to_shard(const zero_shard *z, int r, size_t start, size_t end, size_t *lo,
                          size_t *hi)
{
    size_t b = (size_t)z->displs[r], e = b + (size_t)z->counts[r];
    *lo = start > b ? start : b;
    *hi = end < e ? end : e;
    if (*hi <= *lo)
        *lo = *hi = start;
}

/* Slot of the other rank q (skipping our own) for bucket i. */
static float *recv_buffer(const grad_buckets *b, int i, int q)
{
    int peer = q < b->shard->rank ? q : q - 1;
    size_t slot = (size_t)(i % SLOTS) * (size_t)(b->shard->size - 1) + (size_t)peer;
    return b->recv + slot * b->piece;
}

static MPI_Request *requests(MPI_Request *all, const grad_buckets *b, int i)
{
    return all + (size_t)i * (size_t)b->per;
}

/* One phase of bucket i's exchange with every other rank q, sends posted
 * before receives:
 *  - scatter: our part of q's shard goes to q, q's part of ours comes into a
 *    receive slot;
 *  - gather (allreduce): our summed part goes to q, q's summed part comes
 *    straight into the arena (our scatter sends from there are done). */
static void start_exchange(grad_buckets *b, int i, bool gather)
{
    const zero_shard *z = b->shard;
    MPI_Request *req = requests(gather ? b->gather : b->scatter, b, i);
    const int tag = gather ? TAG_GATHER : TAG_SCATTER;
    size_t start, end, lo, hi;
    bucket_range(b, i, &start, &end);
    clip_to_shard(z, z->rank, start, end, &lo, &hi);
    for (int q = 0; q < z->size; q++) {
        if (q == z->rank)
            continue;
        size_t qlo, qhi;
        clip_to_shard(z, q, start, end, &qlo, &qhi);
        const float *send = b->grads + (gather ? lo : qlo);
        size_t nsend = gather ? hi - lo : qhi - qlo, nrecv = gather ? qhi - qlo : hi - lo;
        float *recv = gather ? b->grads + qlo : recv_buffer(b, i, q);
        if (nsend > 0)
            MPI_Isend(send, (int)nsend, MPI_FLOAT, q, tag, MPI_COMM_WORLD, req++);
        if (nrecv > 0)
            MPI_Irecv(recv, (int)nrecv, MPI_FLOAT, q, tag, MPI_COMM_WORLD, req++);
    }
}

/* The oldest reduce-scatter's messages are complete: add the parts received
 * into our shard, then start the allgather or release the rest. */
static void finish_scatter(grad_buckets *b)
{
    const zero_shard *z = b->shard;
    int i = b->reduced++;
    size_t start, end, lo, hi;
    bucket_range(b, i, &start, &end);
    clip_to_shard(z, z->rank, start, end, &lo, &hi);
    for (int q = 0; q < z->size; q++) {
        if (q == z->rank || hi == lo)
            continue;
        const float *in = recv_buffer(b, i, q);
        float *out = b->grads + lo;
        size_t len = hi - lo;
#pragma omp parallel for simd if (len > (1 << 16)) schedule(static)
        for (size_t k = 0; k < len; k++)
            out[k] += in[k];
    }
    if (b->mode == BUCKETS_ALLREDUCE) {
        start_exchange(b, i, true);
        return;
    }
    if (b->mode == BUCKETS_RELEASE) {
        release_range(b->grads, start, lo);
        release_range(b->grads, hi, end);
    }
    b->finished = b->reduced;
}

static void wait_scatter(grad_buckets *b)
{
    MPI_Waitall(b->per, requests(b->scatter, b, b->reduced), MPI_STATUSES_IGNORE);
    finish_scatter(b);
}

static bool test(grad_buckets *b, MPI_Request *all, int i)
{
    int flag;
    MPI_Testall(b->per, requests(all, b, i), &flag, MPI_STATUSES_IGNORE);
    return flag;
}

void buckets_begin(grad_buckets *b)
{
    b->started = b->reduced = b->finished = 0;
    b->busy_s = 0;
}

void buckets_ready(grad_buckets *b, size_t from)
{
    double t0 = MPI_Wtime();
    while (b->started < b->count) {
        size_t start, end;
        bucket_range(b, b->started, &start, &end);
        if (start < from)
            break;
        while (b->started - b->reduced >= SLOTS)   /* its receive slot is still in use */
            wait_scatter(b);
        start_exchange(b, b->started++, false);
    }
    /* drive the transfers along; complete, in order, the phases that are done */
    while (b->reduced < b->started && test(b, b->scatter, b->reduced))
        finish_scatter(b);
    while (b->finished < b->reduced && test(b, b->gather, b->finished))
        b->finished++;
    b->busy_s += MPI_Wtime() - t0;
}

double buckets_finish(grad_buckets *b)
{
    buckets_ready(b, 0);
    double t0 = MPI_Wtime();
    watchdog_arm(b->mode == BUCKETS_ALLREDUCE ? "the gradient allreduce"
                                              : "the gradient reduce-scatter");
    while (b->reduced < b->started)
        wait_scatter(b);
    MPI_Waitall((b->reduced - b->finished) * b->per, requests(b->gather, b, b->finished),
                MPI_STATUSES_IGNORE);
    b->finished = b->reduced;
    watchdog_disarm();
    b->busy_s += MPI_Wtime() - t0;
    return b->busy_s;
}
