#include "comm/buckets.h"

#include "comm/watchdog.h"

#include <mpi.h>
#include <stdlib.h>

struct grad_buckets {
    float *grads;
    size_t n, bucket_floats;
    int count, started;       /* buckets, and how many (from the end) are in flight or done */
    MPI_Request *requests;    /* [count], bucket 0 is the last one of the arena */
};

grad_buckets *buckets_create(float *grads, size_t n, size_t bucket_floats)
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
    b->requests = malloc((size_t)(b->count ? b->count : 1) * sizeof *b->requests);
    if (!b->requests) {
        free(b);
        return NULL;
    }
    return b;
}

void buckets_destroy(grad_buckets *b)
{
    if (b)
        free(b->requests);
    free(b);
}

/* Bucket i covers [start, start+len) counted from the end of the arena. */
static size_t bucket_start(const grad_buckets *b, int i)
{
    size_t end_offset = (size_t)(i + 1) * b->bucket_floats;
    return end_offset >= b->n ? 0 : b->n - end_offset;
}

static void start_bucket(grad_buckets *b, int i)
{
    size_t start = bucket_start(b, i);
    size_t end = b->n - (size_t)i * b->bucket_floats;
    MPI_Iallreduce(MPI_IN_PLACE, b->grads + start, (int)(end - start), MPI_FLOAT, MPI_SUM,
                   MPI_COMM_WORLD, &b->requests[i]);
}

void buckets_begin(grad_buckets *b)
{
    b->started = 0;
}

void buckets_ready(grad_buckets *b, size_t from)
{
    while (b->started < b->count && bucket_start(b, b->started) >= from)
        start_bucket(b, b->started++);
    if (b->started > 0) {   /* drive the transfers along */
        int flag;
        MPI_Testall(b->started, b->requests, &flag, MPI_STATUSES_IGNORE);
    }
}

double buckets_finish(grad_buckets *b)
{
    double t0 = MPI_Wtime();
    buckets_ready(b, 0);
    watchdog_arm("the gradient allreduce");
    MPI_Waitall(b->count, b->requests, MPI_STATUSES_IGNORE);
    watchdog_disarm();
    return MPI_Wtime() - t0;
}
