/* zero: ZeRO stages 1 and 2 — each rank owns a contiguous 1/N of the
 * flattened parameters, with their fp32 Adam moments; the others' moments are
 * never held (stage 2: nor, after backward, the others' gradients).
 *
 * Per step: gradients are reduce-scattered (comm/buckets.h: each rank ends
 * with the sum over ranks of its own shard), each rank updates its shard, and
 * the updated parameters are all-gathered.  A parameter count that does not
 * divide by N gives the last ranks fewer values (ceil(n/N) each until n runs
 * out); nothing is padded in memory.
 */
#ifndef COMM_ZERO_H
#define COMM_ZERO_H

#include <stddef.h>

typedef struct {
    size_t begin, len;      /* this rank's shard of the n values */
    int *counts, *displs;   /* every rank's shard, for the MPI calls */
    int rank, size;
} zero_shard;

/* 0, or -1 if n / size does not fit an MPI count or memory runs out. */
int zero_init(zero_shard *z, size_t n, int rank, int size);
void zero_free(zero_shard *z);

/* Every rank's params[its shard] copied to all ranks (in place). */
void zero_allgather(const zero_shard *z, float *params);
/* Rank 0 receives every shard of x (len values each) into full[0..n); others pass NULL. */
void zero_gather_to_root(const zero_shard *z, const float *x, float *full);
/* Rank 0's full[0..n) scattered: every rank receives its shard into x. */
void zero_scatter_from_root(const zero_shard *z, const float *full, float *x);

#endif
