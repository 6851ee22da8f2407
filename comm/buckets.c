#include "comm/buckets.h"

#include "comm/watchdog.h"

#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { SLOTS = 3 };   /* reduce-scatter buckets in flight at once */

struct grad_buckets {
    float *grads;
    size_t n, bucket_floats;
    int count;                /* buckets; bucket 0 is the last one of the arena */
    int started, finished;    /* [finished, started) are in flight */
    int per;                  /* requests per bucket: 1, or 2 per other rank */
    MPI_Request *requests;    /* [count][per] */
    double busy_s;            /* seconds inside these calls since buckets_begin */
    /* reduce-scatter only */
    const zero_shard *shard;
    bool release;
    float *recv;              /* [SLOTS][size-1][piece]: the other ranks' parts */
    size_t piece;             /* the largest part of one bucket inside one shard */
};

static double now(void)
{
    return MPI_Wtime();
}

grad_buckets *buckets_create(float *grads, size_t n, size_t bucket_floats,
                             const zero_shard *shard, bool release)
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
    b->release = release && shard;
    b->per = shard ? 2 * (shard->size - 1) : 1;
    size_t nreq = (size_t)(b->count ? b->count : 1) * (size_t)(b->per ? b->per : 1);
    b->requests = malloc(nreq * sizeof *b->requests);
    if (shard && shard->size > 1) {
        size_t largest = (size_t)shard->counts[0];   /* zero_init gives rank 0 the most */
        b->piece = largest < bucket_floats ? largest : bucket_floats;
        b->recv = malloc(SLOTS * (size_t)(shard->size - 1) * (b->piece ? b->piece : 1) *
                         sizeof(float));
    }
    if (!b->requests || (shard && shard->size > 1 && !b->recv)) {
        buckets_destroy(b);
        return NULL;
    }
    for (size_t i = 0; i < nreq; i++)
        b->requests[i] = MPI_REQUEST_NULL;
    return b;
}

void buckets_destroy(grad_buckets *b)
{
    if (b) {
        free(b->requests);
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

static void start_reduce_scatter(grad_buckets *b, int i, size_t start, size_t end)
{
    const zero_shard *z = b->shard;
    MPI_Request *req = b->requests + (size_t)i * (size_t)b->per;
    size_t lo, hi;
    clip_to_shard(z, z->rank, start, end, &lo, &hi);
    for (int q = 0; q < z->size; q++) {
        if (q == z->rank)
            continue;
        size_t qlo, qhi;
        clip_to_shard(z, q, start, end, &qlo, &qhi);
        /* pairs exchange at most one message each way per bucket, in bucket
         * order on both sides, so one tag matches them all */
        if (qhi > qlo)
            MPI_Isend(b->grads + qlo, (int)(qhi - qlo), MPI_FLOAT, q, 0, MPI_COMM_WORLD, req++);
        if (hi > lo)
            MPI_Irecv(recv_buffer(b, i, q), (int)(hi - lo), MPI_FLOAT, q, 0, MPI_COMM_WORLD, req++);
    }
}

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

/* Bucket i's messages are complete: add the parts received into our shard,
 * release the rest of the bucket (stage 2). */
static void finish_reduce_scatter(grad_buckets *b, int i)
{
    const zero_shard *z = b->shard;
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
    if (b->release) {
        release_range(b->grads, start, lo);
        release_range(b->grads, hi, end);
    }
}

/* Wait for the oldest bucket in flight and complete it. */
static void finish_oldest(grad_buckets *b)
{
    int i = b->finished++;
    MPI_Waitall(b->per, b->requests + (size_t)i * (size_t)b->per, MPI_STATUSES_IGNORE);
    if (b->shard)
        finish_reduce_scatter(b, i);
}

static void start_bucket(grad_buckets *b, int i)
{
    size_t start, end;
    bucket_range(b, i, &start, &end);
    if (!b->shard) {
        MPI_Iallreduce(MPI_IN_PLACE, b->grads + start, (int)(end - start), MPI_FLOAT, MPI_SUM,
                       MPI_COMM_WORLD, &b->requests[i]);
        return;
    }
    while (i - b->finished >= SLOTS)   /* its receive slot is still in use */
        finish_oldest(b);
    start_reduce_scatter(b, i, start, end);
}

void buckets_begin(grad_buckets *b)
{
    b->started = b->finished = 0;
    b->busy_s = 0;
}

void buckets_ready(grad_buckets *b, size_t from)
{
    double t0 = now();
    while (b->started < b->count) {
        size_t start, end;
        bucket_range(b, b->started, &start, &end);
        if (start < from)
            break;
        start_bucket(b, b->started++);
    }
    /* drive the transfers along; complete the oldest buckets that are done */
    while (b->finished < b->started) {
        int flag;
        MPI_Testall(b->per, b->requests + (size_t)b->finished * (size_t)b->per, &flag,
                    MPI_STATUSES_IGNORE);
        if (!flag)
            break;
        finish_oldest(b);
    }
    b->busy_s += now() - t0;
}

double buckets_finish(grad_buckets *b)
{
    buckets_ready(b, 0);
    double t0 = now();
    watchdog_arm(b->shard ? "the gradient reduce-scatter" : "the gradient allreduce");
    while (b->finished < b->started)
        finish_oldest(b);
    watchdog_disarm();
    b->busy_s += now() - t0;
    return b->busy_s;
}
