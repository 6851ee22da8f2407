/* buckets: gradient reduction overlapped with backward.
 *
 * The gradient arena is cut into buckets of at most bucket_floats from its
 * end (backward finishes the last layers first), each ending at a tensor
 * boundary where one is in reach, so a bucket is final with its last tensor;
 * toward the arena's start they shrink (at most half of what is left), so
 * little is left to exchange when backward ends.
 * As backward reports that every gradient from some offset on is final, the
 * buckets wholly past it start a non-blocking reduction.  Open MPI only moves
 * data inside MPI calls, so a progress thread advances the reductions in
 * flight while backward computes (where MPI was initialised SERIALIZED or
 * better; otherwise each report does it).  buckets_finish starts what is
 * left and waits for everything, arming the watchdog anew for each bucket's
 * phase (a slow link that keeps moving is no hang); a wait that does not
 * complete at once tells the watchdog which peers it still waits for
 * (comm/watchdog.h).
 *
 * The buckets are the pieces of a zero_shard (buckets_shard cuts them), and
 * each is reduce-scattered by pairwise exchange over its slices: this rank
 * sends every other rank that rank's slice of the bucket (MPI_Isend straight
 * from the arena) and receives their values of its own slice, which it adds
 * into the arena.  Every rank sends and receives on every bucket, so all
 * links carry data both ways throughout.  Then, by mode:
 *  - ALLREDUCE (ZeRO stage 0): the summed slices are exchanged the same way,
 *    straight into the arena, so every rank ends with the whole sum.  (Faster
 *    than Open MPI's MPI_Iallreduce: tests/bench_comm compares them.)
 *  - REDUCE_SCATTER (stage 1): the shard's slices hold the sum over ranks,
 *    the rest of the arena this rank's own gradients.
 *  - RELEASE (stage 2): as REDUCE_SCATTER, and each bucket's pages outside the
 *    shard are given back to the kernel (MADV_DONTNEED) as soon as its sends
 *    are done, so after backward the gradients take the shard's memory, and
 *    the next backward finds them zeroed.  buckets_create releases them a
 *    first time (the arena must hold zeros, as it does after gpt2_create).
 * Received parts wait in a few slots of bucket size; a bucket that finds none
 * free first completes the reduce-scatter of the oldest in flight.  ZeRO's
 * parameter allgather runs on the same buckets and progress thread
 * (buckets_params_start).
 */
#ifndef COMM_BUCKETS_H
#define COMM_BUCKETS_H

#include <stddef.h>

#include "comm/node_share.h"
#include "comm/zero.h"

typedef struct grad_buckets grad_buckets;

/* The schedule by rank count.  docs/scaling.md models the pairwise exchange
 * against a ring and recursive halving: they move the same bytes, and each of
 * their dependent steps waits for a progress poll, so per bucket and phase
 * pairwise costs p + L + (N-1) o, halving log2 N (p + o + L) and a ring
 * (N-1) (p + o + L).  With the model's costs halving is cheaper only from 97
 * ranks on and a ring never (docs/scaling_model.py prints the crossover), so
 * up to BUCKETS_PAIRWISE_MAX_RANKS the exchange is pairwise, the schedule
 * the model picks; past it no cheaper schedule is built and pairwise still
 * runs (correct at any count), which the trainer reports at its start. */
enum { BUCKETS_PAIRWISE_MAX_RANKS = 96 };

typedef enum { BUCKETS_ALLREDUCE, BUCKETS_REDUCE_SCATTER, BUCKETS_RELEASE } buckets_mode;

/* What the exchange sends: fp32 values, or bf16 (half the bytes; rounded to
 * nearest even, added in fp32 on arrival).  Under ALLREDUCE each summed part
 * is rounded to bf16 once by its owner, so all ranks end with the same sum. */
typedef enum { BUCKETS_WIRE_FP32, BUCKETS_WIRE_BF16 } buckets_wire;

/* z: an arena of n values sharded over size ranks (zero_init), its pieces the
 * buckets of at most bucket_floats values.  cuts[0..ncuts): the tensors'
 * offsets, ascending (NULL, 0: buckets of exactly bucket_floats).  0, or -1
 * when memory runs out or zero_init refuses. */
int buckets_shard(zero_shard *z, size_t n, size_t bucket_floats, const size_t *cuts, int ncuts,
                  int rank, int size);

/* Bucket i of such a shard, counted from the arena's end (bucket 0 is its
 * last piece, the first backward finishes): [*start, *end) of the arena, and
 * rank r's slice of it [*lo, *hi) (the rest of the bucket, [start, lo) and
 * [hi, end), is the other ranks'). */
void buckets_range(const zero_shard *z, int i, size_t *start, size_t *end);
void buckets_slice(const zero_shard *z, int i, int r, size_t *lo, size_t *hi);

/* grads[0..shard->n) reduced over MPI_COMM_WORLD in the shard's pieces (the
 * shard is kept by the caller, alive as long as b). */
grad_buckets *buckets_create(float *grads, const zero_shard *shard, buckets_mode mode,
                             buckets_wire wire);
/* The same exchange between ranks that all run on one machine, through
 * memory they map together (comm/local_exchange.h): every rank's gradients
 * and the parameters are arenas in `arenas`, a window opened on every rank
 * of the world with local_arena_bytes(shard->n, ranks, mode) and
 * local_marks(ranks) (the params given to buckets_params_start must be this
 * rank's local_params; under REDUCE_SCATTER one copy for all ranks, each
 * writing only its shard).  Modes ALLREDUCE and REDUCE_SCATTER; values are
 * summed and copied as fp32 (there is no wire).  The work runs on the
 * calling thread, so buckets_progress_cpu_seconds stays 0 and the exposed
 * time counts it all.
 * NULL when memory runs out or the window's ranks are not the shard's. */
grad_buckets *buckets_create_shared(node_share *arenas, const zero_shard *shard,
                                    buckets_mode mode);
void buckets_destroy(grad_buckets *b);

/* Start of a backward whose gradients are to be reduced. */
void buckets_begin(grad_buckets *b);
/* grads[from..n) are final: start their buckets (those that find no free
 * receive slot start as slots free up), progress the others. */
void buckets_ready(grad_buckets *b, size_t from);
/* Lets MPI move what this rank still owes the others while the calling
 * thread waits on something else: a transfer whose requests are all done
 * here may still have its acknowledgement queued, and the peer's send
 * completes only when it goes out (Open MPI moves it only inside MPI calls,
 * and the progress thread sleeps once nothing is pending here).  Never
 * blocks; does nothing if the lock is busy (then MPI is being called). */
void buckets_poke(grad_buckets *b);
/* Start the rest, wait for all; returns the seconds this thread spent in
 * these calls since buckets_begin (the exposed communication). */
double buckets_finish(grad_buckets *b);
/* Seconds since buckets_begin with some exchange in flight, hidden behind
 * backward or not (after buckets_finish: the whole communication time). */
double buckets_flight_seconds(grad_buckets *b);

/* ZeRO's parameter allgather on the same buckets, overlapped with the next
 * forward: every rank's shard of params (fresh from its optimizer step) is
 * sent to all ranks, bucket by bucket, the buckets holding the ranges
 * [offsets[k], offsets[k] + sizes[k]) posted first, in k order (the order
 * forward reads them), the rest after.  Returns at once; the progress thread
 * moves them along.  The training thread makes no other MPI call until all
 * have arrived (it waits for [0, n) at the latest).  wire BF16 (with buckets
 * made for a bf16 wire under ZeRO; otherwise fp32 is sent) sends the
 * values as bf16, exact only where params already hold bf16-representable
 * values, as the trainer's bf16 parameters do. */
void buckets_params_start(grad_buckets *b, float *params, const size_t *offsets,
                          const size_t *sizes, int n, buckets_wire wire);
/* params[lo, hi) are read before they are waited for (the embedding's rows
 * of wte, which come first by other means: comm/sparse.h): their bf16
 * allgather arrives in a staging buffer instead of in place, where it would
 * overwrite them with packed bf16 until widened.  Call before the first
 * buckets_params_start; 0, or -1 when memory runs out. */
int buckets_params_read_early(grad_buckets *b, size_t lo, size_t hi);
/* Wait until params[lo, hi) have arrived; returns the seconds waited. */
double buckets_params_wait(grad_buckets *b, size_t lo, size_t hi);
/* Seconds from buckets_params_start until the last bucket arrived (0 while
 * any is still in flight). */
double buckets_params_flight_seconds(grad_buckets *b);

/* CPU time the progress thread spent since the last call (its copies, adds
 * and MPI's own work, kernel time included): what an exchange hidden in wall
 * time still takes from the cores, which on a rank of one core is compute
 * time lost.  0 without the progress thread. */
double buckets_progress_cpu_seconds(grad_buckets *b);

#endif
