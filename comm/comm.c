#include "comm/comm.h"

#include "comm/watchdog.h"

#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/clock.h"

/* Collectives take an int count: send large buffers in pieces. */
enum { MAX_CHUNK = 1 << 30 };

/* The roll call: which ranks a stalled collective still lacks.
 *
 * MPI cannot say which ranks a collective waits for, so the watchdog could
 * not name a hung peer when the others waited in one.  The agreements below
 * are therefore nonblocking collectives that this file waits for itself; a
 * wait that lasts longer than ROLL_CALL_S tells every peer, on a duplicate
 * of the world, the number of the collective it has reached (every rank
 * counts these collectives in the same order, so the numbers agree), and the
 * ranks it has not heard that number from are the ones the watchdog names.
 * A collective that ends sooner, as every one does in a healthy run, sends
 * nothing.  A peer's note is taken at the start of every wait, so none piles
 * up. */
#define ROLL_CALL_S 0.5
/* Spin this long on a collective (the blocking calls would spin forever),
 * then nap between tests so a long wait (a checkpoint written by rank 0)
 * leaves the core to the work it waits for. */
#define SPIN_S 0.01
enum { ROLL_TAG = 0x7c11 };

static struct {
    MPI_Comm comm;         /* a duplicate of the world, for the notes alone */
    int rank, size;
    long count;            /* collectives waited for so far */
    long *reached;         /* [size]: the newest collective each rank said it reached */
    long *note;            /* [size]: what was sent to each peer (the send's buffer) */
    MPI_Request *sends;    /* [size] */
    int *missing;          /* [size]: the ranks not heard from, for the watchdog */
} roll;

static int roll_open(int rank, int size)
{
    roll.rank = rank;
    roll.size = size;
    roll.count = 0;
    roll.reached = calloc((size_t)size, sizeof *roll.reached);
    roll.note = calloc((size_t)size, sizeof *roll.note);
    roll.sends = malloc((size_t)size * sizeof *roll.sends);
    roll.missing = malloc((size_t)size * sizeof *roll.missing);
    if (!roll.reached || !roll.note || !roll.sends || !roll.missing)
        return -1;
    for (int r = 0; r < size; r++)
        roll.sends[r] = MPI_REQUEST_NULL;
    MPI_Comm_dup(MPI_COMM_WORLD, &roll.comm);
    return 0;
}

/* Takes the peers' notes that have arrived; true if there were any. */
static bool roll_listen(void)
{
    bool heard = false;
    for (;;) {
        int pending;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, ROLL_TAG, roll.comm, &pending, &st);
        if (!pending)
            return heard;
        long n;
        MPI_Recv(&n, 1, MPI_LONG, st.MPI_SOURCE, ROLL_TAG, roll.comm, MPI_STATUS_IGNORE);
        if (n > roll.reached[st.MPI_SOURCE])
            roll.reached[st.MPI_SOURCE] = n;
        heard = true;
    }
}

/* Tells every peer that this rank reached collective roll.count.  A peer
 * that has not taken the last note yet is not listening: it gets none. */
static void roll_announce(void)
{
    for (int r = 0; r < roll.size; r++) {
        int done = 1;
        if (r == roll.rank)
            continue;
        if (roll.sends[r] != MPI_REQUEST_NULL)
            MPI_Test(&roll.sends[r], &done, MPI_STATUS_IGNORE);
        if (!done)
            continue;
        roll.note[r] = roll.count;
        MPI_Isend(&roll.note[r], 1, MPI_LONG, r, ROLL_TAG, roll.comm, &roll.sends[r]);
    }
}

/* The watchdog names the ranks not heard from at this collective. */
static void roll_tell_watchdog(void)
{
    int n = 0;
    for (int r = 0; r < roll.size; r++)
        if (r != roll.rank && roll.reached[r] < roll.count)
            roll.missing[n++] = r;
    watchdog_waiting_for(roll.missing, n);
}

/* Waits for the nonblocking collective req, holding the roll call if it
 * lasts (the caller has armed the watchdog). */
static void wait_collective(MPI_Request *req)
{
    const struct timespec nap = {0, 200000};
    roll.count++;
    roll_listen();
    double start = clock_mono_s();
    bool called = false;
    for (;;) {
        int done;
        MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (done)
            return;
        double waited = clock_mono_s() - start;
        if (waited < SPIN_S)
            continue;
        if (!called && waited > ROLL_CALL_S) {
            roll_announce();
            called = true;
            roll_tell_watchdog();
        }
        if (called && roll_listen())
            roll_tell_watchdog();
        nanosleep(&nap, NULL);
    }
}

/* Notes still on their way are let go: MPI completes them in the background. */
static void roll_close(void)
{
    if (roll.sends) {
        roll_listen();
        for (int r = 0; r < roll.size; r++)
            if (roll.sends[r] != MPI_REQUEST_NULL)
                MPI_Request_free(&roll.sends[r]);
        MPI_Comm_free(&roll.comm);
    }
    free(roll.reached);
    free(roll.note);
    free(roll.sends);
    free(roll.missing);
    roll.reached = roll.note = NULL;
    roll.sends = NULL;
    roll.missing = NULL;
}

/* Every rank's host name, COMM_HOST_CHARS each, and pointers to them: one
 * world per process, kept until comm_finalize. */
static char *host_names;
static const char **hosts;

/* Fills hosts from an allgather of every rank's processor name (a host name
 * is at most 64 characters on Linux; a longer one is cut). */
static int gather_hosts(int size)
{
    char mine[MPI_MAX_PROCESSOR_NAME + 1] = "";
    int len;
    MPI_Get_processor_name(mine, &len);
    mine[COMM_HOST_CHARS - 1] = '\0';
    host_names = malloc((size_t)size * COMM_HOST_CHARS);
    hosts = malloc((size_t)size * sizeof *hosts);
    if (!host_names || !hosts)
        return -1;
    MPI_Allgather(mine, COMM_HOST_CHARS, MPI_CHAR, host_names, COMM_HOST_CHARS, MPI_CHAR,
                  MPI_COMM_WORLD);
    for (int r = 0; r < size; r++)
        hosts[r] = host_names + (size_t)r * COMM_HOST_CHARS;
    return 0;
}

int comm_init(int *argc, char ***argv, comm_world *w, char *err, size_t errlen)
{
    int provided;
    /* SERIALIZED: the training thread calls MPI, and the gradient buckets'
     * progress thread under their lock (comm/buckets.c); the status, control
     * and checkpoint threads never do.  With less, buckets run without it. */
    if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
        snprintf(err, errlen, "MPI_Init_thread failed");
        return -1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &w->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &w->size);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &w->local_rank);
    MPI_Comm_size(local, &w->local_size);
    MPI_Comm_free(&local);
    if (gather_hosts(w->size) != 0 || roll_open(w->rank, w->size) != 0) {
        snprintf(err, errlen, "out of memory for %d ranks' host names and roll call", w->size);
        return -1;
    }
    w->hosts = hosts;
    return 0;
}

void comm_finalize(void)
{
    /* MPI_Finalize waits for the other ranks too: one that hangs before its
     * own must not hold the rest of the job forever */
    watchdog_arm("the end of the job");
    roll_close();
    MPI_Finalize();
    watchdog_disarm();
    free(hosts);
    free(host_names);
    hosts = NULL;
    host_names = NULL;
}

/* Waits for the nonblocking collective req (just posted) under the watchdog
 * (what, work_s: watchdog_arm_for) and the roll call. */
static void finish(MPI_Request *req, const char *what, double work_s)
{
    watchdog_arm_for(what, work_s);
    wait_collective(req);
    watchdog_disarm();
}

/* x[0..n) reduced with op over all ranks, in place. */
static void agree(void *x, int n, MPI_Datatype type, MPI_Op op, const char *what, double work_s)
{
    MPI_Request req;
    MPI_Iallreduce(MPI_IN_PLACE, x, n, type, op, MPI_COMM_WORLD, &req);
    finish(&req, what, work_s);
}

/* A nonblocking barrier under the roll call: before a blocking bulk transfer,
 * a peer that hangs before it is named, as in an agreement; one that hangs
 * inside the transfer cannot be. */
void comm_arrive(const char *what)
{
    MPI_Request req;
    MPI_Ibarrier(MPI_COMM_WORLD, &req);
    finish(&req, what, 0);
}

void comm_sum_floats(float *x, size_t n, const char *what)
{
    comm_arrive(what);
    for (size_t off = 0; off < n; off += MAX_CHUNK) {
        int count = (int)(n - off < MAX_CHUNK ? n - off : MAX_CHUNK);
        watchdog_arm_for(what, watchdog_io_seconds((double)count * sizeof(float)));
        MPI_Allreduce(MPI_IN_PLACE, x + off, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        watchdog_disarm();
    }
}

double comm_sum_double(double x)
{
    agree(&x, 1, MPI_DOUBLE, MPI_SUM, "a sum over ranks", 0);
    return x;
}

int comm_max_int_after(int x, const char *what, double work_s)
{
    agree(&x, 1, MPI_INT, MPI_MAX, what, work_s);
    return x;
}

int comm_max_int(int x, const char *what)
{
    return comm_max_int_after(x, what, 0);
}

void comm_max_doubles(double *x, int n)
{
    agree(x, n, MPI_DOUBLE, MPI_MAX, "the status reduction", 0);
}

void comm_pick_least(double *x, int n, int key)
{
    struct {
        double value;
        int rank;
    } least = {x[key], 0};
    MPI_Comm_rank(MPI_COMM_WORLD, &least.rank);
    agree(&least, 1, MPI_DOUBLE_INT, MPI_MINLOC, "the status reduction", 0);
    MPI_Request req;
    MPI_Ibcast(x, n, MPI_DOUBLE, least.rank, MPI_COMM_WORLD, &req);
    finish(&req, "the status reduction", 0);
}

int comm_or_int(int x, const char *what)
{
    agree(&x, 1, MPI_INT, MPI_BOR, what, 0);
    return x;
}

void comm_broadcast_floats(float *x, size_t n, int root, const char *what)
{
    comm_arrive(what);
    for (size_t off = 0; off < n; off += MAX_CHUNK) {
        int count = (int)(n - off < MAX_CHUNK ? n - off : MAX_CHUNK);
        /* up to gigabytes at a resume: the link's time for them is no hang */
        watchdog_arm_for(what, watchdog_io_seconds((double)count * sizeof(float)));
        MPI_Bcast(x + off, count, MPI_FLOAT, root, MPI_COMM_WORLD);
        watchdog_disarm();
    }
}

void comm_broadcast_int_after(int *x, int root, const char *what, double work_s)
{
    MPI_Request req;
    MPI_Ibcast(x, 1, MPI_INT, root, MPI_COMM_WORLD, &req);
    finish(&req, what, work_s);
}

void comm_broadcast_int(int *x, int root, const char *what)
{
    comm_broadcast_int_after(x, root, what, 0);
}

void comm_gather_ints(int x, int *all, const char *what)
{
    MPI_Request req;
    MPI_Iallgather(&x, 1, MPI_INT, all, 1, MPI_INT, MPI_COMM_WORLD, &req);
    finish(&req, what, 0);
}

void comm_gather_int_lists(const int *x, int n, int *all, const int *counts, const int *displs,
                           const char *what)
{
    MPI_Request req;
    MPI_Iallgatherv(x, n, MPI_INT, all, counts, displs, MPI_INT, MPI_COMM_WORLD, &req);
    finish(&req, what, 0);
}

int comm_cpus_available(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 1;
    return CPU_COUNT(&set);
}
