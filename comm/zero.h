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

/* One tensor at a time (checkpoints: memory bounded by the tensor, not the
 * state).  The vector is sharded as z; x is this rank's shard [len] of it.
 * Rank 0 receives the values [off, off + n) into out[0..n) (others pass NULL),
 * every rank sending the part its shard holds. */
void zero_gather_range(const zero_shard *z, const float *x, size_t off, size_t n, float *out);
/* Rank 0's in[0..n), the values [off, off + n) of the vector (others pass
 * NULL): every rank receives the part its shard holds into x. */
void zero_scatter_range(const zero_shard *z, const float *in, size_t off, size_t n, float *x);
/* Rank 0's x on every rank: what rank 0 asks of the shards next while it
 * reads or writes a checkpoint (the others wait here meanwhile). */
int zero_broadcast_int(int x);

#endif
