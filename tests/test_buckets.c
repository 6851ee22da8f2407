/* buckets: the bucketed allreduce and reduce-scatters against a scalar sum
 * (with the progress thread: MPI is initialised SERIALIZED as the trainer
 * does), and sparse_rows' sum of row-sparse gradients.
 *
 * Run alone it is a world of one rank; tests/e2e_mpi.sh also runs it under
 * `mpirun -np 3`, where shards and buckets are uneven (sizes that divide by
 * neither 3 nor the bucket) and more buckets are in flight than there are
 * receive slots.  Every rank's gradients are a known function of (rank,
 * index) with small integer values, so the sums are exact and each rank can
 * compute the expected result alone (and the progress thread's CPU time is
 * held within the wall time).  Failures are agreed over ranks before
 * asserting, so a failing rank never leaves another waiting in MPI.  ZeRO's
 * parameter allgather is checked range by range as forward waits for them;
 * the bf16 wire is checked against the same sums with each value that crosses
 * it rounded to bf16 (kernels/convert's scalar rounding).  sparse_rows also
 * fetches a sharded table's rows from their owners, and the shard layout
 * (comm/zero.h) is checked alone and by moving ranges to and from rank 0.
 * The exchange through shared memory (comm/local_exchange.h) is checked
 * against the same sums under mpirun (alone there is no window to share).
 *
 * With --slow-peer (under mpirun) the last rank's backward reports its
 * buckets one at a time, a pause shorter than the watchdog's timeout between
 * them and all of them longer: the others' exchange moves all the while, so
 * it must end with the right sums, not at their watchdog.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <limits.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/buckets.h"
#include "comm/comm.h"
#include "comm/local_exchange.h"
#include "comm/node_share.h"
#include "comm/sparse.h"
#include "comm/watchdog.h"
#include "comm/zero.h"
#include "kernels/convert.h"

/* MPI's one-time allocations are not ours: leak checks would report them. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "detect_leaks=0";
}

static int rank, size;

static float grad_value(int r, size_t i)
{
    return (float)((i * 7 + (size_t)r * 13) % 97) - 48.0f;
}

static float summed(size_t i)
{
    float s = 0;
    for (int r = 0; r < size; r++)
        s += grad_value(r, i);
    return s;
}

/* Backward as the model reports it: readiness from the end in uneven steps. */
static double reduce(grad_buckets *b, size_t n, size_t step)
{
    buckets_begin(b);
    for (size_t from = n; from > step; from -= step)
        buckets_ready(b, from - step);
    return buckets_finish(b);
}

/* z over the buckets buckets_shard cuts for an arena of n values. */
static void make_shard(zero_shard *z, size_t n, size_t bucket, const size_t *cuts, int ncuts)
{
    assert_int_equal(buckets_shard(z, n, bucket, cuts, ncuts, rank, size), 0);
}

static bool mine(const zero_shard *z, size_t i)
{
    return zero_owner(z, i) == rank;
}

/* 1 on any rank if ok is false on any rank. */
static int failed_anywhere(int ok)
{
    int bad = !ok, any;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return any;
}

static void check_allreduce(size_t n, size_t bucket, const size_t *cuts, int ncuts)
{
    zero_shard z;
    make_shard(&z, n, bucket, cuts, ncuts);
    float *g = malloc(n * sizeof *g);
    grad_buckets *b = buckets_create(g, &z, BUCKETS_ALLREDUCE, BUCKETS_WIRE_FP32);
    assert_non_null(b);
    int ok = 1;
    const double t0 = MPI_Wtime();
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < n; i++)
            g[i] = grad_value(rank, i);
        reduce(b, n, n / 5 + 1);
        for (size_t i = 0; i < n; i++)
            ok &= g[i] == summed(i);
    }
    /* the progress thread's CPU time: one thread's, so within the wall time
     * the exchanges took; counted once, and nothing more once all is done */
    const double cpu = buckets_progress_cpu_seconds(b), wall = MPI_Wtime() - t0;
    ok &= cpu >= 0 && cpu <= wall;
    ok &= buckets_progress_cpu_seconds(b) == 0;
    assert_int_equal(failed_anywhere(ok), 0);
    buckets_destroy(b);
    free(g);
    zero_free(&z);
}

/* Two steps in a row (as training does), with or without release. */
static void check_reduce_scatter(size_t n, size_t bucket, bool release)
{
    zero_shard z;
    make_shard(&z, n, bucket, NULL, 0);
    float *g = malloc((n ? n : 1) * sizeof *g);
    grad_buckets *b = buckets_create(g, &z, release ? BUCKETS_RELEASE : BUCKETS_REDUCE_SCATTER,
                                     BUCKETS_WIRE_FP32);
    assert_non_null(b);
    int ok = 1;
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < n; i++)   /* stage 2 zeroes only the shard */
            if (!release || round == 0 || mine(&z, i))
                g[i] = 0;
        for (size_t i = 0; i < n; i++)   /* backward accumulates */
            g[i] += grad_value(rank, i);
        reduce(b, n, n / 7 + 1);
        for (size_t i = 0; i < n; i++) {
            ok &= g[i] == (mine(&z, i) ? summed(i) : release ? 0.0f : grad_value(rank, i));
        }
    }
    assert_int_equal(failed_anywhere(ok), 0);
    buckets_destroy(b);
    free(g);
    zero_free(&z);
}

/* Stage 2 accumulating over micro-batches: the shard adds each reduction. */
static void check_accumulate(size_t n, size_t bucket)
{
    zero_shard z;
    make_shard(&z, n, bucket, NULL, 0);
    float *g = calloc(n, sizeof *g);
    grad_buckets *b = buckets_create(g, &z, BUCKETS_RELEASE, BUCKETS_WIRE_FP32);
    assert_non_null(b);
    for (int micro = 0; micro < 3; micro++) {
        for (size_t i = 0; i < n; i++)
            g[i] += grad_value(rank, i);
        reduce(b, n, n / 3 + 1);
    }
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        ok &= !mine(&z, i) || g[i] == 3 * summed(i);
    assert_int_equal(failed_anywhere(ok), 0);
    buckets_destroy(b);
    free(g);
    zero_free(&z);
}

/* bf16 wire: values no bf16 holds exactly, so the sums differ from a fp32
 * wire's.  The owner r of index i adds the others' values, each rounded to
 * bf16 on the wire, to its own fp32 value, in rank order as finish_scatter
 * does. */
static float wire_value(int r, size_t i)
{
    return grad_value(r, i) + 0.001f * (float)(r + 1);
}

static float bf16_round(float x)
{
    round_to_bf16(&x, 1);
    return x;
}

static float wire_sum(const zero_shard *z, size_t i)
{
    int owner = zero_owner(z, i);
    float s = wire_value(owner, i);
    for (int r = 0; r < size; r++)
        if (r != owner)
            s += bf16_round(wire_value(r, i));
    return s;
}

/* mode ALLREDUCE: every rank ends with the owner's sum rounded to bf16 (one
 * rank alone sends nothing and keeps its fp32 values);
 * otherwise the shard holds the fp32 sum and the rest as the mode leaves it. */
static void check_bf16_wire(size_t n, size_t bucket, const size_t *cuts, int ncuts,
                            buckets_mode mode)
{
    zero_shard z;
    make_shard(&z, n, bucket, cuts, ncuts);
    float *g = calloc(n, sizeof *g);
    grad_buckets *b = buckets_create(g, &z, mode, BUCKETS_WIRE_BF16);
    assert_non_null(b);
    int ok = 1, differs = 0;
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < n; i++)   /* backward writes every gradient */
            g[i] = wire_value(rank, i);
        reduce(b, n, n / 5 + 1);
        for (size_t i = 0; i < n; i++) {
            float want = mode == BUCKETS_ALLREDUCE && size > 1 ? bf16_round(wire_sum(&z, i))
                         : mode == BUCKETS_ALLREDUCE ? wire_sum(&z, i)   /* no wire crossed */
                         : mine(&z, i)             ? wire_sum(&z, i)
                         : mode == BUCKETS_RELEASE ? 0.0f
                                                   : wire_value(rank, i);
            ok &= g[i] == want;
            float exact = 0;   /* what a fp32 wire gives */
            for (int r = 0; r < size; r++)
                exact += wire_value(r, i);
            differs |= wire_sum(&z, i) != exact;
        }
    }
    /* with others to hear from, the test values tell the wires apart */
    ok &= size == 1 || n < 1000 || differs;
    assert_int_equal(failed_anywhere(ok), 0);
    buckets_destroy(b);
    free(g);
    zero_free(&z);
}

static void bf16_wire_allreduce(void **state)
{
    (void)state;
    check_bf16_wire(10007, 1000, NULL, 0, BUCKETS_ALLREDUCE);   /* > the slots */
    check_bf16_wire(5, 1 << 20, NULL, 0, BUCKETS_ALLREDUCE);
    check_bf16_wire(2, 1, NULL, 0, BUCKETS_ALLREDUCE);          /* np 3: an empty shard */
    static const size_t cuts[] = {0, 300, 600, 900, 3400, 3700, 4000, 4300, 4600};
    check_bf16_wire(10007, 1000, cuts, (int)(sizeof cuts / sizeof cuts[0]), BUCKETS_ALLREDUCE);
}

static void bf16_wire_reduce_scatter(void **state)
{
    (void)state;
    check_bf16_wire(10007, 1000, NULL, 0, BUCKETS_REDUCE_SCATTER);
    check_bf16_wire(300001, 9973, NULL, 0, BUCKETS_RELEASE);
}

/* ZeRO's parameter allgather on the buckets: each rank holds only its shard
 * (the rest -1), ranges are waited for in a given order, and each is whole
 * when its wait returns; then everything is, and a range read early is
 * never disturbed before.  On a bf16 wire the values (which no bf16 holds)
 * arrive rounded to bf16 and widened; the owner's stay as they were. */
static float param_value(int round, size_t i, buckets_wire wire)
{
    return wire == BUCKETS_WIRE_BF16 ? grad_value(round, i) + 0.001f * (float)(i % 5 + 1)
                                     : grad_value(round, i);
}

static float want_param(const zero_shard *z, int round, size_t i, buckets_wire wire)
{
    float v = param_value(round, i, wire);
    return wire == BUCKETS_WIRE_BF16 && !mine(z, i) ? bf16_round(v) : v;
}

static void check_params_gather(size_t n, size_t bucket, const size_t *cuts, int ncuts,
                                buckets_wire wire)
{
    zero_shard z;
    make_shard(&z, n, bucket, cuts, ncuts);
    float *g = calloc(n, sizeof *g), *p = malloc(n * sizeof *p);
    grad_buckets *b = buckets_create(g, &z, BUCKETS_REDUCE_SCATTER, wire);
    assert_non_null(b);
    /* forward's order: the last range first (as wte), then from the start;
     * the end of the last range is read before its wait (as the embedding's
     * rows of wte, which every rank holds already) */
    size_t offsets[3] = {n - n / 4, 0, n / 3}, sizes[3] = {n / 4, n / 3, n - n / 4 - n / 3};
    const size_t early = n - n / 8;
    assert_int_equal(buckets_params_read_early(b, early, n), 0);
    int ok = 1;
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < n; i++)
            p[i] = mine(&z, i) || i >= early ? want_param(&z, round, i, wire) : -1.0f;
        buckets_params_start(b, p, offsets, sizes, 3, wire);
        buckets_params_wait(b, offsets[1], offsets[1] + sizes[1]);
        for (size_t i = early; i < n; i++)   /* not waited for: never disturbed */
            ok &= p[i] == want_param(&z, round, i, wire);
        for (int k = 0; k < 3; k++) {
            buckets_params_wait(b, offsets[k], offsets[k] + sizes[k]);
            for (size_t i = offsets[k]; i < offsets[k] + sizes[k]; i++)
                ok &= p[i] == want_param(&z, round, i, wire);
        }
        buckets_params_wait(b, 0, n);
        for (size_t i = 0; i < n; i++)
            ok &= p[i] == want_param(&z, round, i, wire);
        ok &= buckets_params_flight_seconds(b) >= 0;
    }
    assert_int_equal(failed_anywhere(ok), 0);
    buckets_destroy(b);
    free(g);
    free(p);
    zero_free(&z);
}

static void params_gather_in_forward_order(void **state)
{
    (void)state;
    static const size_t cuts[] = {0, 300, 600, 900, 3400, 3700, 4000, 4300, 4600};
    for (buckets_wire w = BUCKETS_WIRE_FP32; w <= BUCKETS_WIRE_BF16; w++) {
        check_params_gather(10007, 1000, NULL, 0, w);
        check_params_gather(10007, 1000, cuts, (int)(sizeof cuts / sizeof cuts[0]), w);
        check_params_gather(300001, 9973, NULL, 0, w);   /* the shrinking tail buckets */
        check_params_gather(4, 1, NULL, 0, w);           /* np 3: uneven tiny shards */
    }
}

/* The exchange through shared memory (buckets_create_shared) on the arenas
 * of a window, in each mode: the same sums as over messages, and ZeRO's
 * parameters from their owners, range by range (stage 0's layout: a copy per
 * rank, each writing -1 outside its shard; ZeRO 1's: one copy, each rank
 * writing only its shard).  Between rounds every rank agrees (as the
 * trainer's step ends in collectives) before it writes its arenas again,
 * which the others may still be reading.  Alone, a rank has no one to share
 * a window with: its open says so without a reason. */
static void check_shared(size_t n, size_t bucket)
{
    char why[160];
    node_share *s = node_share_open(local_arena_bytes(n, size, BUCKETS_ALLREDUCE),
                                    local_marks(size), why, sizeof why);
    if (size == 1) {
        assert_null(s);
        assert_string_equal(why, "");
        return;
    }
    assert_int_equal(failed_anywhere(s != NULL), 0);
    /* the larger layout's window holds the smaller one too */
    assert_true(local_arena_bytes(n, size, BUCKETS_REDUCE_SCATTER) <=
                local_arena_bytes(n, size, BUCKETS_ALLREDUCE));
    zero_shard z;
    make_shard(&z, n, bucket, NULL, 0);
    int ok = 1;
    for (buckets_mode mode = BUCKETS_ALLREDUCE; mode <= BUCKETS_REDUCE_SCATTER; mode++) {
        float *g = local_grads(s, n, rank, mode), *p = local_params(s, n, rank, mode);
        const bool one = local_one_params(mode);
        grad_buckets *b = buckets_create_shared(s, &z, mode);
        assert_non_null(b);
        for (int round = 0; round < 2; round++) {
            for (size_t i = 0; i < n; i++)
                g[i] = grad_value(rank, i) + (float)round;
            reduce(b, n, n / 5 + 1);
            for (size_t i = 0; i < n; i++)
                ok &= g[i] == (mode == BUCKETS_ALLREDUCE || mine(&z, i)
                                   ? summed(i) + (float)(round * size)
                                   : grad_value(rank, i) + (float)round);
            ok &= buckets_progress_cpu_seconds(b) == 0 && buckets_flight_seconds(b) >= 0;
            failed_anywhere(ok);   /* everyone is done reading this round's */
        }
        size_t offsets[2] = {n - n / 4, 0}, sizes[2] = {n / 4, n - n / 4};
        for (int round = 0; round < 2; round++) {
            for (size_t i = 0; i < n; i++)
                if (mine(&z, i))
                    p[i] = param_value(round, i, BUCKETS_WIRE_FP32);
                else if (!one)
                    p[i] = -1.0f;
            buckets_params_start(b, p, offsets, sizes, 2, BUCKETS_WIRE_FP32);
            ok &= buckets_params_flight_seconds(b) == 0;
            for (int k = 0; k < 2; k++) {
                buckets_params_wait(b, offsets[k], offsets[k] + sizes[k]);
                for (size_t i = offsets[k]; i < offsets[k] + sizes[k]; i++)
                    ok &= p[i] == param_value(round, i, BUCKETS_WIRE_FP32);
            }
            buckets_params_wait(b, 0, n);
            ok &= buckets_params_flight_seconds(b) >= 0;
            failed_anywhere(ok);
        }
        buckets_destroy(b);
    }
    assert_int_equal(failed_anywhere(ok), 0);
    node_share_close(s);
    zero_free(&z);
}

static void shared_memory_exchange(void **state)
{
    (void)state;
    check_shared(100003, 9973);   /* 11 buckets, shrinking toward the start */
    check_shared(2, 1);           /* under np 3 one shard is empty */
}

static void allreduce_uneven_buckets(void **state)
{
    (void)state;
    check_allreduce(10007, 1000, NULL, 0);   /* 11 buckets, > the receive slots */
    check_allreduce(5, 1 << 20, NULL, 0);    /* one bucket larger than the arena */
    check_allreduce(2, 1, NULL, 0);          /* under np 3 one shard is empty */
    /* buckets ending at tensor boundaries: tensors of 300 and one of 2500,
     * larger than a bucket (cut at the bucket size) */
    static const size_t cuts[] = {0, 300, 600, 900, 3400, 3700, 4000, 4300, 4600};
    check_allreduce(10007, 1000, cuts, (int)(sizeof cuts / sizeof cuts[0]));
}

static void reduce_scatter_keeps_own_gradients(void **state)
{
    (void)state;
    check_reduce_scatter(10007, 1000, false);   /* 11 buckets, > the receive slots */
    check_reduce_scatter(10007, 1 << 20, false);
}

static void reduce_scatter_releases_the_rest(void **state)
{
    (void)state;
    /* pages of 1024 floats: several released whole, edges zeroed by hand */
    check_reduce_scatter(300001, 9973, true);
    check_reduce_scatter(1001, 100, true);
}

static void reduce_scatter_fewer_values_than_ranks(void **state)
{
    (void)state;
    check_reduce_scatter(2, 1, true);   /* under np 3 one shard is empty */
}

static void reduce_scatter_accumulates(void **state)
{
    (void)state;
    check_accumulate(50021, 4099);
}

/* Rank r holds rows for ids {r, r+2, ...} below 40 that are not multiples of
 * 5 (rank 1 of 3 holds none at all), row id = (id, r) filled with id*10 + r:
 * the union and the sums are known. */
static void sparse_rows_sum_union(void **state)
{
    (void)state;
    enum { C = 3, MAXID = 40 };
    int ids[MAXID], n = 0;
    float rows[MAXID * C];
    for (int id = rank; id < MAXID && !(size == 3 && rank == 1); id += 2)
        if (id % 5 != 0) {
            for (int c = 0; c < C; c++)
                rows[n * C + c] = (float)(id * 10 + rank);
            ids[n++] = id;
        }
    sparse_rows s;
    assert_int_equal(sparse_rows_init(&s, MAXID, C, MAXID), 0);
    int u = sparse_rows_sum(&s, ids, rows, n);
    bool ok = true;
    int want_u = 0;
    for (int id = 0; id < MAXID; id++) {
        float want = 0;
        bool any = false;
        for (int r = 0; r < size; r++)
            if (!(size == 3 && r == 1) && id >= r && (id - r) % 2 == 0 && id % 5 != 0) {
                want += (float)(id * 10 + r);
                any = true;
            }
        if (!any)
            continue;
        ok = ok && want_u < u && s.ids[want_u] == id;
        for (int c = 0; ok && c < C; c++)
            ok = s.sum[(size_t)want_u * C + c] == want;
        want_u++;
    }
    ok = ok && u == want_u;
    sparse_rows_free(&s);
    assert_false(failed_anywhere(ok));
}

/* A table of MAXID rows x C (rows straddle pieces and slices: C divides
 * neither) at an offset inside an arena sharded over the ranks in pieces of
 * 40 and 60 values and the rest; each rank's shard holds the values
 * (index * 3 + 1), the rest stale (-1).  Each rank asks for its own ids
 * (repeats, any order; rank 1 of 3 for none): afterwards the rows of the
 * union hold the true values everywhere, every other value is as it was. */
static void sparse_rows_fetch_from_owners(void **state)
{
    (void)state;
    enum { C = 7, MAXID = 23, OFF = 5, N = OFF + MAXID * C + 3 };
    const size_t bounds[] = {0, 40, 100, N};
    zero_shard z;
    assert_int_equal(zero_init(&z, bounds, 3, rank, size), 0);
    float arena[N];
    for (int i = 0; i < N; i++)
        arena[i] = mine(&z, (size_t)i) ? (float)(i * 3 + 1) : -1.0f;
    int ids[8], n = 0;
    for (int k = 0; k < 4 && !(size == 3 && rank == 1); k++)
        ids[n++] = (rank * 5 + 17 * k) % MAXID, ids[n++] = (rank * 5 + 17 * k) % MAXID;
    sparse_rows s;
    assert_int_equal(sparse_rows_init(&s, 8, C, MAXID), 0);
    int u = sparse_rows_fetch(&s, &z, arena, OFF, ids, n);
    bool ok = true, asked[MAXID] = {false};
    int want_u = 0;
    for (int r = 0; r < size; r++)
        for (int k = 0; k < 4 && !(size == 3 && r == 1); k++)
            asked[(r * 5 + 17 * k) % MAXID] = true;
    for (int id = 0; id < MAXID; id++)
        want_u += asked[id];
    for (int i = 0; i < N; i++) {
        const bool fetched = i >= OFF && i < OFF + MAXID * C && asked[(i - OFF) / C];
        ok = ok && arena[i] == (mine(&z, (size_t)i) || fetched ? (float)(i * 3 + 1) : -1.0f);
    }
    ok = ok && u == want_u;
    sparse_rows_free(&s);
    zero_free(&z);
    assert_false(failed_anywhere(ok));
}

/* A model past 2^31 values on few ranks (no messages: only the layout):
 * it shards, every rank's values add up to it, and each run zero_next_held
 * gives (one message in zero_gather_range) is an int count for MPI; a piece
 * longer than ZERO_MAX_PIECE is refused. */
static void shard_beyond_int_counts(void **state)
{
    (void)state;
    const size_t n = 5 * (size_t)ZERO_MAX_PIECE + 123;
    for (int ranks = 1; ranks <= 3; ranks++) {
        size_t total = 0;
        for (int r = 0; r < ranks; r++) {
            zero_shard z;
            assert_int_equal(buckets_shard(&z, n, SIZE_MAX, NULL, 0, r, ranks), 0);
            assert_true(z.n == n);
            for (int k = 0; k < z.npieces; k++)
                assert_true(z.bounds[k + 1] - z.bounds[k] <= ZERO_MAX_PIECE);
            size_t held = 0;
            for (size_t b = 0, len; (len = zero_next_held(&z, r, &b, n)) > 0; b += len) {
                assert_true(len <= INT_MAX);
                assert_int_equal(zero_owner(&z, b + len - 1), r);
                assert_true(zero_index(&z, b + len - 1) == zero_index(&z, b) + len - 1);
                held += len;
            }
            assert_true(held == z.len);
            total += z.len;
            zero_free(&z);
        }
        assert_true(total == n);
    }
    zero_shard z;
    assert_int_equal(zero_init(&z, (size_t[]){0, (size_t)ZERO_MAX_PIECE + 1}, 1, 0, 1), -1);
}

/* The layout alone, for rank counts 1 to 5 (no messages: zero_init only
 * computes): every value has exactly one owner, whose shard indices run
 * 0..len-1 in arena order; zero_next_held walks exactly the owned parts of a
 * range; and every piece with ZERO_ALIGN values per rank gives each rank a
 * slice, so each bucket's exchange runs on every link both ways. */
static void shard_slices_every_piece(void **state)
{
    (void)state;
    enum { N = 3000 };
    const size_t cuts[] = {0, 7, 100, 1000, 1001, 2100};
    for (int ranks = 1; ranks <= 5; ranks++) {
        int *owner = malloc(N * sizeof *owner);
        for (size_t i = 0; i < N; i++)
            owner[i] = -1;
        for (int r = 0; r < ranks; r++) {
            zero_shard z;
            assert_int_equal(buckets_shard(&z, N, 600, cuts, 6, r, ranks), 0);
            size_t next = 0;   /* the shard index the next owned value must have */
            for (size_t i = 0; i < N; i++) {
                if (zero_owner(&z, i) != r)
                    continue;
                assert_int_equal(owner[i], -1);
                owner[i] = r;
                assert_int_equal(zero_index(&z, i), next++);
            }
            assert_int_equal(next, z.len);
            for (int k = 0; k < z.npieces; k++) {
                size_t lo, hi;
                zero_slice(&z, k, r, &lo, &hi);
                if (z.bounds[k + 1] - z.bounds[k] >= (size_t)ranks * ZERO_ALIGN)
                    assert_true(hi > lo);
            }
            /* a walk over [95, 2500) visits the owned values there, in order */
            size_t seen = 95;
            for (size_t b = 95, len; (len = zero_next_held(&z, r, &b, 2500)) > 0; b += len) {
                for (size_t i = seen; i < b; i++)
                    assert_int_not_equal(zero_owner(&z, i), r);
                for (size_t i = b; i < b + len; i++) {
                    assert_int_equal(zero_owner(&z, i), r);
                    assert_int_equal(zero_index(&z, i), zero_index(&z, b) + (i - b));
                }
                seen = b + len;
            }
            for (size_t i = seen; i < 2500; i++)
                assert_int_not_equal(zero_owner(&z, i), r);
            zero_free(&z);
        }
        for (size_t i = 0; i < N; i++)
            assert_int_not_equal(owner[i], -1);
        free(owner);
    }
}

/* comm/zero.h's rule for a piece of len values over ranks: slices of base
 * values, base = ceil(len / ranks) rounded up to a multiple of ZERO_ALIGN
 * (computed here apart from zero.c). */
static size_t rule_base(size_t len, int ranks)
{
    size_t per = len / (size_t)ranks;
    if (per * (size_t)ranks < len)
        per++;
    while (per % ZERO_ALIGN != 0)
        per++;
    return per;
}

/* The layout exhaustively, without messages: pieces of every length 1..MAXLEN
 * (back to back in one arena, so each starts at an odd offset) over 1..8
 * ranks.  Each rank's slice is [r * base, min((r + 1) * base, len)) of the
 * piece by the rule above, each value is covered by exactly one rank's slice
 * and zero_owner names it, and each rank's shard holds its slices in arena
 * order from index 0 to len - 1. */
static void shard_layout_every_piece_length(void **state)
{
    (void)state;
    enum { MAXLEN = 2048, MAXRANKS = 8 };
    size_t *bounds = malloc((MAXLEN + 1) * sizeof *bounds);
    bounds[0] = 0;
    for (size_t k = 0; k < MAXLEN; k++)
        bounds[k + 1] = bounds[k] + (k + 1);   /* piece k: k + 1 values */
    const size_t n = bounds[MAXLEN];
    unsigned char *cover = malloc(n);
    zero_shard z[MAXRANKS];
    for (int ranks = 1; ranks <= MAXRANKS; ranks++) {
        memset(cover, 0, n);
        for (int r = 0; r < ranks; r++) {
            assert_int_equal(zero_init(&z[r], bounds, MAXLEN, r, ranks), 0);
            assert_int_equal(z[r].n, n);
        }
        size_t held[MAXRANKS] = {0};   /* each rank's shard so far */
        for (int k = 0; k < MAXLEN; k++) {
            const size_t b = bounds[k], len = bounds[k + 1] - b, base = rule_base(len, ranks);
            for (int r = 0; r < ranks; r++) {
                size_t lo, hi;
                zero_slice(&z[r], k, r, &lo, &hi);
                const size_t wlo = b + (r * base < len ? r * base : len);
                const size_t whi = b + ((r + 1) * base < len ? (r + 1) * base : len);
                if (lo != wlo || hi != whi)
                    fail_msg("piece of %zu over %d ranks: rank %d's slice [%zu, %zu), want [%zu, %zu)",
                             len, ranks, r, lo - b, hi - b, wlo - b, whi - b);
                /* any rank's view of the layout is the same */
                size_t lo0, hi0;
                zero_slice(&z[0], k, r, &lo0, &hi0);
                assert_true(lo0 == lo && hi0 == hi);
                for (size_t i = lo; i < hi; i++) {
                    cover[i]++;
                    if (zero_owner(&z[0], i) != r || zero_owner(&z[r], i) != r)
                        fail_msg("piece of %zu over %d ranks: value %zu of it owned by %d, "
                                 "in rank %d's slice", len, ranks, i - b, zero_owner(&z[0], i), r);
                    assert_int_equal(zero_index(&z[r], i), held[r] + (i - lo));
                }
                held[r] += hi - lo;
            }
        }
        for (size_t i = 0; i < n; i++)
            if (cover[i] != 1)
                fail_msg("%d ranks: value %zu is in %d slices", ranks, i, cover[i]);
        for (int r = 0; r < ranks; r++) {
            assert_int_equal(z[r].len, held[r]);
            zero_free(&z[r]);
        }
    }
    free(cover);
    free(bounds);
}

/* A vector sharded over the ranks (x[k] on its owner = 5 * index + 2): rank
 * 0 gathers a range that spans pieces, and the whole vector; then scatters a
 * new range back, which lands in each owner's shard. */
static void shard_ranges_gather_and_scatter(void **state)
{
    (void)state;
    zero_shard z;
    make_shard(&z, 10007, 1000, NULL, 0);
    float *x = malloc((z.len + 1) * sizeof *x), *out = malloc(z.n * sizeof *out);
    for (size_t i = 0; i < z.n; i++)
        if (mine(&z, i))
            x[zero_index(&z, i)] = (float)(5 * i + 2);
    int ok = 1;
    zero_gather_range(&z, x, 1234, 5000, rank == 0 ? out : NULL);
    for (size_t i = 0; rank == 0 && i < 5000; i++)
        ok &= out[i] == (float)(5 * (i + 1234) + 2);
    zero_gather_range(&z, x, 0, z.n, rank == 0 ? out : NULL);
    for (size_t i = 0; rank == 0 && i < z.n; i++)
        ok &= out[i] == (float)(5 * i + 2);
    for (size_t i = 0; i < 3000; i++)
        out[i] = -(float)i;
    zero_scatter_range(&z, rank == 0 ? out : NULL, 4000, 3000, x);
    for (size_t i = 0; i < z.n; i++)
        if (mine(&z, i))
            ok &= x[zero_index(&z, i)] ==
                  (i >= 4000 && i < 7000 ? -(float)(i - 4000) : (float)(5 * i + 2));
    assert_int_equal(failed_anywhere(ok), 0);
    free(x);
    free(out);
    zero_free(&z);
}

/* The watchdog's timeout in --slow-peer; the slow rank's pause between its
 * buckets, and their count. */
#define SLOW_TIMEOUT_S 2.0
enum { SLOW_PAUSE_US = 700 * 1000, SLOW_BUCKETS = 8 };

/* An allreduce the last rank feeds a bucket at a time (--slow-peer): 0 if
 * every rank ends with the sums. */
static int slow_peer(const comm_world *world)
{
    if (watchdog_start(rank, SLOW_TIMEOUT_S, world->hosts) != 0) {
        fprintf(stderr, "test_buckets: cannot start the watchdog\n");
        return 1;
    }
    const size_t bucket = 50000, n = SLOW_BUCKETS * bucket;
    zero_shard z;
    float *g = malloc(n * sizeof *g);
    if (!g || buckets_shard(&z, n, bucket, NULL, 0, rank, size) != 0)
        return 1;
    grad_buckets *b = buckets_create(g, &z, BUCKETS_ALLREDUCE, BUCKETS_WIRE_FP32);
    if (!b)
        return 1;
    for (size_t i = 0; i < n; i++)
        g[i] = grad_value(rank, i);
    buckets_begin(b);
    for (size_t from = n; rank == size - 1 && from > 0; from -= bucket) {
        usleep(SLOW_PAUSE_US);
        buckets_ready(b, from - bucket);
    }
    buckets_finish(b);
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        ok &= g[i] == summed(i);
    buckets_destroy(b);
    zero_free(&z);
    free(g);
    watchdog_stop();
    fprintf(stderr, "test_buckets: rank %d: the slow peer's exchange ended, %s\n", rank,
            ok ? "summed" : "WRONG SUMS");
    return !ok;
}

int main(int argc, char **argv)
{
    comm_world world;
    char err[256];
    if (comm_init(&argc, &argv, &world, err, sizeof err) != 0) {
        fprintf(stderr, "test_buckets: %s\n", err);
        return 1;
    }
    rank = world.rank;
    size = world.size;
    if (argc > 1 && strcmp(argv[1], "--slow-peer") == 0) {
        int rc = slow_peer(&world);
        comm_finalize();
        return rc;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(allreduce_uneven_buckets),
        cmocka_unit_test(reduce_scatter_keeps_own_gradients),
        cmocka_unit_test(reduce_scatter_releases_the_rest),
        cmocka_unit_test(reduce_scatter_fewer_values_than_ranks),
        cmocka_unit_test(reduce_scatter_accumulates),
        cmocka_unit_test(params_gather_in_forward_order),
        cmocka_unit_test(shared_memory_exchange),
        cmocka_unit_test(bf16_wire_allreduce),
        cmocka_unit_test(bf16_wire_reduce_scatter),
        cmocka_unit_test(sparse_rows_sum_union),
        cmocka_unit_test(sparse_rows_fetch_from_owners),
        cmocka_unit_test(shard_slices_every_piece),
        cmocka_unit_test(shard_beyond_int_counts),
        cmocka_unit_test(shard_layout_every_piece_length),
        cmocka_unit_test(shard_ranges_gather_and_scatter),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    comm_finalize();
    return rc;
}
