/* comm: the agreements against a scalar reference, and the roll call that
 * lets the watchdog name the ranks a stalled agreement still lacks.
 *
 * Run alone it is a world of one rank; tests/e2e_mpi.sh also runs it under
 * `mpirun -np 3`.  Every rank's contribution is a known function of its rank,
 * so each rank computes the expected result alone.  A rank that arrives late
 * (longer than the roll call's delay, shorter than the watchdog's timeout)
 * makes the others call the roll; the agreements after it must still agree,
 * whatever notes are left over.  With --stall WHAT the last rank never joins
 * WHAT: an agreement (sum), a bulk sum or broadcast (floats, broadcast) or a
 * gather of shards into rank 0 (gather); the others' watchdog must stop the
 * job naming it (e2e_mpi checks their message).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm.h"
#include "comm/watchdog.h"
#include "comm/zero.h"

/* MPI's one-time allocations are not ours: leak checks would report them. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "detect_leaks=0";
}

static comm_world world;

/* Every agreement once, each checked against what this rank computes alone. */
static void agree_once(int round)
{
    const int n = world.size, r = world.rank;
    assert_true(comm_sum_double(r + 0.5 * round) == n * (n - 1) / 2.0 + n * 0.5 * round);
    assert_int_equal(comm_max_int(r * 3 + round, "a test maximum"), (n - 1) * 3 + round);
    assert_int_equal(comm_or_int(1 << r, "a test or"), (1 << n) - 1);
    double x[3] = {r, -r, round};
    comm_max_doubles(x, 3);
    assert_true(x[0] == n - 1 && x[1] == 0 && x[2] == round);
    /* the least key is on the last rank; its other figures come with it */
    double y[2] = {r * 10.0 + 1, n - r};
    comm_pick_least(y, 2, 1);
    assert_true(y[0] == (n - 1) * 10.0 + 1 && y[1] == 1);
    int v = r == round % n ? 100 + round : -1;
    comm_broadcast_int(&v, round % n, "a test broadcast");
    assert_int_equal(v, 100 + round);
    int all[64];
    assert_true(n <= 64);
    comm_gather_ints(r * r, all, "a test gather");
    for (int k = 0; k < n; k++)
        assert_int_equal(all[k], k * k);
}

static void agreements_match_the_reference(void **state)
{
    (void)state;
    for (int round = 0; round < 5; round++)
        agree_once(round);
}

/* Each rank in turn arrives late at one agreement: the others call the roll
 * and their notes stay behind; every later agreement still agrees. */
static void late_ranks_are_waited_for(void **state)
{
    (void)state;
    for (int late = 0; late < world.size; late++) {
        if (world.rank == late)
            usleep(1200 * 1000);
        agree_once(late);
        for (int round = 0; round < 3; round++)
            agree_once(round);
    }
}

/* The last rank stays away from what far beyond the timeout. */
static int stall(const char *what)
{
    enum { N = 3000 };
    static float x[N], out[N];
    if (world.rank == world.size - 1)
        sleep(60);
    if (strcmp(what, "sum") == 0) {
        comm_sum_double(1.0);
    } else if (strcmp(what, "floats") == 0) {
        comm_sum_floats(x, N, "a test sum of floats");
    } else if (strcmp(what, "broadcast") == 0) {
        comm_broadcast_floats(x, N, 0, "the parameter broadcast");
    } else {
        /* rank 0 waits for the last rank's slice, the others for the agreement after */
        const size_t bounds[] = {0, N};
        zero_shard z;
        if (zero_init(&z, bounds, 1, world.rank, world.size) != 0)
            return 1;
        zero_gather_range(&z, x, 0, N, world.rank == 0 ? out : NULL);
        comm_max_int(0, "the end of a test gather");
        zero_free(&z);
    }
    fprintf(stderr, "test_comm: rank %d: the stalled %s ended\n", world.rank, what);
    return 1;
}

int main(int argc, char **argv)
{
    char err[256];
    if (comm_init(&argc, &argv, &world, err, sizeof err) != 0) {
        fprintf(stderr, "test_comm: %s\n", err);
        return 1;
    }
    bool stalled = argc > 2 && strcmp(argv[1], "--stall") == 0;
    if (watchdog_start(world.rank, stalled ? 2.0 : 30.0, world.hosts) != 0) {
        fprintf(stderr, "test_comm: cannot start the watchdog\n");
        return 1;
    }
    int rc;
    if (stalled) {
        rc = stall(argv[2]);
    } else {
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(agreements_match_the_reference),
            cmocka_unit_test(late_ranks_are_waited_for),
        };
        rc = cmocka_run_group_tests(tests, NULL, NULL);
    }
    watchdog_stop();
    comm_finalize();
    return rc;
}
