/* local_exchange: the gradient exchange and ZeRO's parameter allgather
 * (comm/buckets.h) for ranks that all run on one machine, through memory
 * they map together instead of messages.
 *
 * Every rank's gradient arena lives in one node_share window, and so do the
 * parameters (local_arena_bytes, local_params, local_grads say where): under
 * ZeRO 1 (REDUCE_SCATTER) one copy that all ranks compute with, each rank
 * writing only its shard; under stage 0 (ALLREDUCE), where every rank
 * updates all of them, one copy per rank.  Over messages a rank's slice of a
 * bucket costs a copy of each peer's part into a receive buffer and a second
 * pass adding it; here the rank adds its peers' parts straight from their
 * arenas, one pass; stage 0 then copies the others' summed slices, and ZeRO
 * 1's allgather is only waiting for every rank's update.  On a rank of one
 * core that work is compute time lost.
 *
 * Marks in the window order it, one running count per rank and kind: the
 * buckets its backward has finished, the buckets whose slice it has summed,
 * the parameter updates it has made.  The work runs on the calling thread
 * (the training thread, between backward's operations, with its OpenMP
 * team), on whatever buckets every rank has finished by then; what is left
 * when backward ends, in local_finish, is the exposed part.
 *
 * A rank reads its peers' arenas while they go on computing, so the caller
 * guarantees that no rank writes again what another still reads: each
 * reduction and allgather ends before the step's collectives (the gradient
 * norm's sum) on every rank, and no rank writes its gradients or its shard of
 * the parameters before those, as the trainer's step does.
 */
#ifndef COMM_LOCAL_EXCHANGE_H
#define COMM_LOCAL_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>

#include "comm/buckets.h"
#include "comm/node_share.h"
#include "comm/zero.h"

typedef struct local_exchange local_exchange;

/* The window for arenas of n floats on size ranks in mode, and the marks it
 * needs. */
size_t local_arena_bytes(size_t n, int size, buckets_mode mode);
int local_marks(int size);
/* Whether the ranks compute with one copy of the parameters in mode. */
bool local_one_params(buckets_mode mode);
/* Rank r's arenas of n floats in the window (zeros until written). */
float *local_params(const node_share *s, size_t n, int r, buckets_mode mode);
float *local_grads(const node_share *s, size_t n, int r, buckets_mode mode);

/* The exchange of the shard's pieces (the buckets, bucket 0 the last piece
 * of the arena) over the window s (opened on every rank of the world with
 * local_arena_bytes and local_marks for the same mode).  mode ALLREDUCE or
 * REDUCE_SCATTER.  NULL when memory runs out. */
local_exchange *local_create(node_share *s, const zero_shard *shard, buckets_mode mode);
void local_destroy(local_exchange *x);

void local_begin(local_exchange *x);
void local_ready(local_exchange *x, size_t from);
double local_finish(local_exchange *x);
double local_flight_seconds(const local_exchange *x);

void local_params_start(local_exchange *x);
double local_params_wait(local_exchange *x, size_t lo, size_t hi);
double local_params_flight_seconds(const local_exchange *x);

#endif
