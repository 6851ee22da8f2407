/* node_share: memory the ranks of a node map together, and its ready flags.
 *
 * Run alone it is a world of one rank, which has nothing to share (NULL, no
 * error).  tests/e2e_mpi.sh also runs it under `mpirun -np 3`: every rank
 * writes the items dealt to it, a known function of (generation, item),
 * publishes them, and reads every other rank's once their flags say so, over
 * several generations (a barrier between them, as the trainer's end-of-step
 * collectives); a rank that publishes late makes the others call their idle
 * function while they wait.  Failures are agreed over ranks before
 * asserting, so a failing rank never leaves another waiting.  With --stall
 * open (or close) the last rank never joins the open (the close): the
 * others' watchdog must stop the job and name that rank (e2e_mpi checks their
 * message).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm/comm.h"
#include "comm/node_share.h"
#include "comm/watchdog.h"

/* MPI's one-time allocations are not ours: leak checks would report them. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "detect_leaks=0";
}

enum { ITEMS = 7, ITEM_VALUES = 5000, GENERATIONS = 4 };

static comm_world world;

static bool all_ranks(bool ok)
{
    int x = ok;
    MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return x;
}

static uint32_t value(unsigned gen, int item, int k)
{
    return gen * 1000003u + (uint32_t)item * 7919u + (uint32_t)k;
}

static void count_idle(void *arg)
{
    ++*(int *)arg;
}

static void alone_there_is_nothing_to_share(void **state)
{
    (void)state;
    char err[128] = "x";
    node_share *s = node_share_open(4096, 2, err, sizeof err);
    assert_null(s);
    assert_string_equal(err, "");
    node_share_close(NULL);
}

/* Each rank fills its items of each generation; the others await and read
 * them.  Rank 0 publishes its items late in the second generation, so every
 * other rank waits long enough to go idle. */
static void published_items_are_read_whole(void **state)
{
    (void)state;
    char err[128];
    node_share *s = node_share_open(ITEMS * ITEM_VALUES * sizeof(uint32_t), ITEMS, err,
                                    sizeof err);
    assert_true(all_ranks(s != NULL));
    int me = node_share_rank(s), n = node_share_size(s), idle = 0;
    assert_int_equal(n, world.size);   /* mpirun puts them all on this machine */
    uint32_t *mem = node_share_memory(s);
    assert_int_equal((uintptr_t)mem % 4096, 0);
    bool ok = true;
    for (unsigned gen = 1; gen <= GENERATIONS; gen++) {
        if (gen == 2 && me == 0) {
            const struct timespec late = {0, 50 * 1000 * 1000};
            nanosleep(&late, NULL);
        }
        for (int i = me; i < ITEMS; i += n) {
            for (int k = 0; k < ITEM_VALUES; k++)
                mem[i * ITEM_VALUES + k] = value(gen, i, k);
            node_share_publish(s, i, gen);
        }
        for (int i = 0; i < ITEMS; i++) {
            node_share_await(s, i, gen, i % n, "a test item", count_idle, &idle);
            for (int k = 0; k < ITEM_VALUES; k++)
                ok = ok && mem[i * ITEM_VALUES + k] == value(gen, i, k);
        }
        MPI_Barrier(MPI_COMM_WORLD);   /* nobody reads this generation any more */
    }
    assert_true(all_ranks(ok));
    assert_true(all_ranks(me == 0 || idle > 0));
    node_share_close(s);
}

/* The last rank stays away from the open (at_open) or the close far beyond
 * the watchdog's timeout. */
static int stall(bool at_open)
{
    const int rank = world.rank;
    if (watchdog_start(rank, 2.0, world.hosts) != 0)
        return 1;
    const bool late = rank == world.size - 1;
    char err[128];
    if (late && at_open)
        sleep(60);
    node_share *s = node_share_open(4096, 2, err, sizeof err);
    if (late && !at_open)
        sleep(60);
    node_share_close(s);
    fprintf(stderr, "test_node_share: rank %d: the stalled %s ended\n", rank,
            at_open ? "open" : "close");
    return 1;
}

int main(int argc, char **argv)
{
    char err[128];
    if (comm_init(&argc, &argv, &world, err, sizeof err) != 0) {
        fprintf(stderr, "test_node_share: %s\n", err);
        return 1;
    }
    if (argc > 2 && strcmp(argv[1], "--stall") == 0)
        return stall(strcmp(argv[2], "open") == 0);
    /* one rank has nothing to share; several share (e2e_mpi runs this under mpirun) */
    const struct CMUnitTest alone[] = {cmocka_unit_test(alone_there_is_nothing_to_share)};
    const struct CMUnitTest shared[] = {cmocka_unit_test(published_items_are_read_whole)};
    int rc = world.size == 1 ? cmocka_run_group_tests(alone, NULL, NULL)
                             : cmocka_run_group_tests(shared, NULL, NULL);
    comm_finalize();
    return rc;
}
