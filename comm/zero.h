/* zero: ZeRO stages 1 and 2 — each rank owns 1/N of the flattened
 * parameters, with their fp32 Adam moments; the others' moments are never
 * held (stage 2: nor, after backward, the others' gradients).
 *
 * The arena is cut into pieces (the gradient buckets: comm/buckets.h) and
 * rank r owns slice r of every piece, as FSDP shards each flat parameter.
 * So each bucket's reduce-scatter and allgather send and receive on every
 * link at once; with one contiguous 1/N per rank, a bucket lay in a single
 * shard and its reduce-scatter ran one way (its owner receiving from N-1
 * senders while the other direction idled).  A rank's shard is its slices in
 * arena order, back to back: moments and offload files are indexed by it.
 *
 * Per step: gradients are reduce-scattered (each rank ends with the sum over
 * ranks of its own slices), each rank updates its shard, and the updated
 * parameters are all-gathered.  A piece that does not divide by N gives the
 * last ranks less (slices are whole multiples of ZERO_ALIGN values until the
 * piece runs out); nothing is padded in memory.  Exactly: rank r's slice of
 * a piece of len values is [r * base, min((r + 1) * base, len)) of it (empty
 * past len), base = ceil(len / N) rounded up to a multiple of ZERO_ALIGN.
 *
 * Functions taking a shard accept NULL for "not sharded": one rank holds
 * everything and shard indices are arena indices.
 */
#ifndef COMM_ZERO_H
#define COMM_ZERO_H

#include <stddef.h>

/* Slices are multiples of this many values (a 64-byte line of floats), so
 * two ranks never write one cache line and slices start aligned alike. */
enum { ZERO_ALIGN = 16 };
/* The longest piece.  MPI counts are ints, and a rank's part of a piece goes
 * as one message (zero_gather_range, the buckets' chunks): the pieces, not
 * the vector, are what must fit, so a vector past 2^31 values shards. */
enum { ZERO_MAX_PIECE = 1 << 30 };

typedef struct {
    size_t n;        /* values in the sharded vector */
    size_t len;      /* this rank's values: its slices of every piece */
    int rank, size;
    int npieces;
    size_t *bounds;  /* [npieces + 1], ascending from 0 to n: piece k is
                      * [bounds[k], bounds[k + 1]) */
    size_t *at;      /* [npieces]: where this rank's slice of piece k starts
                      * in its shard */
} zero_shard;

/* The vector [0, bounds[npieces]) in npieces pieces.  0, or -1 if memory
 * runs out or a piece is empty or longer than ZERO_MAX_PIECE. */
int zero_init(zero_shard *z, const size_t *bounds, int npieces, int rank, int size);
void zero_free(zero_shard *z);

/* Rank r's slice of piece k: [*lo, *hi) (empty: *lo == *hi, inside the piece). */
void zero_slice(const zero_shard *z, int k, int r, size_t *lo, size_t *hi);
/* The first part of [*lo, hi) that rank r holds: moves *lo to where it
 * begins and returns its length, contiguous in r's shard (0: none is left).
 *   for (size_t b = lo, len; (len = zero_next_held(z, r, &b, hi)) > 0; b += len) */
size_t zero_next_held(const zero_shard *z, int r, size_t *lo, size_t hi);
/* Where value i, which this rank holds, sits in its shard. */
size_t zero_index(const zero_shard *z, size_t i);
/* The rank that holds value i. */
int zero_owner(const zero_shard *z, size_t i);

/* One tensor at a time (checkpoints: memory bounded by the tensor, not the
 * state), or the whole vector (off 0, n: z->n).  x is this rank's shard of the vector.  Rank 0 receives the values
 * [off, off + n) into out[0..n) (others pass NULL), every rank sending the
 * parts its shard holds. */
void zero_gather_range(const zero_shard *z, const float *x, size_t off, size_t n, float *out);
/* Rank 0's in[0..n), the values [off, off + n) of the vector (others pass
 * NULL): every rank receives the parts its shard holds into x. */
void zero_scatter_range(const zero_shard *z, const float *in, size_t off, size_t n, float *x);

#endif
