/* bench_comm: the gradient reductions alone, under mpirun, on an arena of n
 * floats (default: seed384's 13,340,928 parameters): Open MPI's reduce-scatter and
 * allreduce against comm/buckets' pairwise-exchange reduce-scatter and
 * allreduce (everything ready at once: nothing to overlap with), and
 * the parameter allgather (Open MPI's, and by pairwise exchange, whole and in
 * buckets).  The whole-arena rows shard the arena in N contiguous pieces, the
 * bucketed ones each bucket in N slices (comm/zero.h), as the trainer does.  Each figure
 * is the median over REPS of the slowest rank.  These are the times the
 * trainer's exposed comm (comm_tail_ms) is compared with to find the fraction hidden.
 *
 *   mpirun -np 2 build/tests/bench_comm [n [bucket_mb [label]]]
 * With BENCH_JSONL=path each row is also appended there as a JSON object.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/buckets.h"
#include "comm/zero.h"
#include "tests/bench_util.h"

enum { REPS = 9 };

typedef struct {
    float *grads, *shard_out;
    size_t n, bucket;
    zero_shard one, z;        /* the arena as one piece; in buckets */
    int *counts, *displs;     /* every rank's slice of the one piece, for MPI */
    grad_buckets *rs, *rs_one, *ar;
} bench;

static void fill(bench *b)
{
    for (size_t i = 0; i < b->n; i++)
        b->grads[i] = (float)(i % 7);
}

static void mpi_reduce_scatter(bench *b)
{
    MPI_Reduce_scatter(b->grads, b->shard_out, b->counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

static void mpi_allreduce(bench *b)
{
    MPI_Allreduce(MPI_IN_PLACE, b->grads, (int)b->n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

static void run_buckets(grad_buckets *g)
{
    buckets_begin(g);
    buckets_finish(g);
}

static void pairwise_rs_one(bench *b)
{
    run_buckets(b->rs_one);
}

static void pairwise_rs_buckets(bench *b)
{
    run_buckets(b->rs);
}

static void pairwise_allreduce_buckets(bench *b)
{
    run_buckets(b->ar);
}

/* What comm/buckets did before: an in-place MPI_Iallreduce per bucket. */
static void iallreduce_buckets(bench *b)
{
    size_t count = (b->n + b->bucket - 1) / b->bucket;
    MPI_Request *req = malloc(count * sizeof *req);
    for (size_t i = 0; i < count; i++) {
        size_t start = i * b->bucket, len = b->n - start < b->bucket ? b->n - start : b->bucket;
        MPI_Iallreduce(MPI_IN_PLACE, b->grads + start, (int)len, MPI_FLOAT, MPI_SUM,
                       MPI_COMM_WORLD, &req[i]);
    }
    MPI_Waitall((int)count, req, MPI_STATUSES_IGNORE);
    free(req);
}

static void mpi_allgather(bench *b)
{
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, b->grads, b->counts, b->displs, MPI_FLOAT,
                   MPI_COMM_WORLD);
}

/* Every rank sends its shard to every other and receives theirs. */
static void pairwise_allgather(bench *b)
{
    const zero_shard *z = &b->one;
    MPI_Request *req = malloc(2 * (size_t)z->size * sizeof *req);
    int k = 0;
    for (int q = 0; q < z->size; q++) {
        if (q == z->rank)
            continue;
        MPI_Irecv(b->grads + b->displs[q], b->counts[q], MPI_FLOAT, q, 1, MPI_COMM_WORLD, &req[k++]);
        MPI_Isend(b->grads + b->displs[z->rank], b->counts[z->rank], MPI_FLOAT, q, 1,
                  MPI_COMM_WORLD, &req[k++]);
    }
    MPI_Waitall(k, req, MPI_STATUSES_IGNORE);
    free(req);
}

/* The trainer's ZeRO allgather: every bucket's slices, all posted at once. */
static void pairwise_allgather_buckets(bench *b)
{
    buckets_params_start(b->rs, b->grads, NULL, NULL, 0, BUCKETS_WIRE_FP32);
    buckets_params_wait(b->rs, 0, b->n);
}

static void row(bench *b, const char *name, void (*op)(bench *), const char *label, FILE *jsonl)
{
    double t[REPS];
    for (int r = 0; r < REPS; r++) {
        fill(b);
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        op(b);
        double dt = MPI_Wtime() - t0;
        MPI_Allreduce(&dt, &t[r], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    }
    double median = bench_median(t, REPS);
    if (b->one.rank != 0)
        return;
    printf("comm %-4s np %d  %-34s %6.1f MB  %7.2f ms (median of %d, min %.2f)\n", label,
           b->one.size, name, b->n * 4 / 1e6, median * 1e3, REPS, t[0] * 1e3);
    if (jsonl)
        fprintf(jsonl, "{\"bench\": \"comm\", \"transport\": \"%s\", \"ranks\": %d, \"work\": \"%s\", "
                "\"mb\": %.1f, \"bucket_mb\": %.1f, \"ms\": %.3f}\n", label, b->one.size, name,
                b->n * 4 / 1e6, b->bucket * 4 / 1e6, median * 1e3);
}

int main(int argc, char **argv)
{
    bench_check_isa("bench_comm");
    MPI_Init(&argc, &argv);
    bench b = {.n = argc > 1 ? strtoull(argv[1], NULL, 10) : 13340928,
               .bucket = (size_t)(argc > 2 ? atof(argv[2]) : 25) * (1 << 20) / sizeof(float)};
    const char *label = argc > 3 ? argv[3] : "";
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size < 2) {
        printf("bench_comm: run it under mpirun -np N (N >= 2)\n");
        MPI_Finalize();
        return 0;
    }
    b.grads = malloc(b.n * sizeof(float));
    b.counts = malloc((size_t)size * sizeof *b.counts);
    b.displs = malloc((size_t)size * sizeof *b.displs);
    if (!b.grads || !b.counts || !b.displs || zero_init(&b.one, (size_t[]){0, b.n}, 1, rank, size) != 0 || buckets_shard(&b.z, b.n, b.bucket, NULL, 0, rank, size) != 0 ||
        !(b.shard_out = malloc((b.one.len + 1) * sizeof(float))) ||
        !(b.rs = buckets_create(b.grads, &b.z, BUCKETS_REDUCE_SCATTER, BUCKETS_WIRE_FP32)) ||
        !(b.rs_one = buckets_create(b.grads, &b.one, BUCKETS_REDUCE_SCATTER, BUCKETS_WIRE_FP32)) ||
        !(b.ar = buckets_create(b.grads, &b.z, BUCKETS_ALLREDUCE, BUCKETS_WIRE_FP32))) {
        fprintf(stderr, "bench_comm: out of memory\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (int r = 0; r < size; r++) {
        size_t lo, hi;
        zero_slice(&b.one, 0, r, &lo, &hi);
        b.counts[r] = (int)(hi - lo);
        b.displs[r] = (int)lo;
    }
    FILE *jsonl = rank == 0 ? bench_jsonl_open() : NULL;
    row(&b, "MPI_Reduce_scatter", mpi_reduce_scatter, label, jsonl);
    row(&b, "pairwise reduce-scatter", pairwise_rs_one, label, jsonl);
    row(&b, "pairwise reduce-scatter, buckets", pairwise_rs_buckets, label, jsonl);
    row(&b, "MPI_Allreduce in place", mpi_allreduce, label, jsonl);
    row(&b, "MPI_Iallreduce buckets", iallreduce_buckets, label, jsonl);
    row(&b, "pairwise allreduce, buckets", pairwise_allreduce_buckets, label, jsonl);
    row(&b, "MPI_Allgatherv in place", mpi_allgather, label, jsonl);
    row(&b, "pairwise allgather", pairwise_allgather, label, jsonl);
    row(&b, "pairwise allgather, buckets", pairwise_allgather_buckets, label, jsonl);
    if (jsonl)
        fclose(jsonl);
    buckets_destroy(b.rs);
    buckets_destroy(b.rs_one);
    buckets_destroy(b.ar);
    zero_free(&b.z);
    zero_free(&b.one);
    free(b.counts);
    free(b.displs);
    free(b.shard_out);
    free(b.grads);
    MPI_Finalize();
    return 0;
}
