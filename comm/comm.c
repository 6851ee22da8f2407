#include "comm/comm.h"

#include "comm/watchdog.h"

#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

/* Collectives take an int count: send large buffers in pieces. */
enum { MAX_CHUNK = 1 << 30 };

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
    if (gather_hosts(w->size) != 0) {
        snprintf(err, errlen, "out of memory for %d host names", w->size);
        return -1;
    }
    w->hosts = hosts;
    return 0;
}

void comm_finalize(void)
{
    MPI_Finalize();
    free(hosts);
    free(host_names);
    hosts = NULL;
    host_names = NULL;
}

void comm_sum_floats(float *x, size_t n, const char *what)
{
    for (size_t off = 0; off < n; off += MAX_CHUNK) {
        int count = (int)(n - off < MAX_CHUNK ? n - off : MAX_CHUNK);
        watchdog_arm(what);
        MPI_Allreduce(MPI_IN_PLACE, x + off, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        watchdog_disarm();
    }
}

double comm_sum_double(double x)
{
    watchdog_arm("a sum over ranks");
    MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    watchdog_disarm();
    return x;
}

int comm_max_int_after(int x, const char *what, double work_s)
{
    watchdog_arm_for(what, work_s);
    MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    watchdog_disarm();
    return x;
}

int comm_max_int(int x, const char *what)
{
    return comm_max_int_after(x, what, 0);
}

void comm_max_doubles(double *x, int n)
{
    watchdog_arm("the status reduction");
    MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    watchdog_disarm();
}

void comm_pick_least(double *x, int n, int key)
{
    struct {
        double value;
        int rank;
    } least = {x[key], 0};
    MPI_Comm_rank(MPI_COMM_WORLD, &least.rank);
    watchdog_arm("the status reduction");
    MPI_Allreduce(MPI_IN_PLACE, &least, 1, MPI_DOUBLE_INT, MPI_MINLOC, MPI_COMM_WORLD);
    MPI_Bcast(x, n, MPI_DOUBLE, least.rank, MPI_COMM_WORLD);
    watchdog_disarm();
}

int comm_or_int(int x, const char *what)
{
    watchdog_arm(what);
    MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_INT, MPI_BOR, MPI_COMM_WORLD);
    watchdog_disarm();
    return x;
}

void comm_broadcast_floats(float *x, size_t n, int root)
{
    for (size_t off = 0; off < n; off += MAX_CHUNK) {
        int count = (int)(n - off < MAX_CHUNK ? n - off : MAX_CHUNK);
        watchdog_arm("the parameter broadcast");
        MPI_Bcast(x + off, count, MPI_FLOAT, root, MPI_COMM_WORLD);
        watchdog_disarm();
    }
}

void comm_broadcast_int(int *x, int root, const char *what)
{
    watchdog_arm(what);
    MPI_Bcast(x, 1, MPI_INT, root, MPI_COMM_WORLD);
    watchdog_disarm();
}

int comm_cpus_available(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 1;
    return CPU_COUNT(&set);
}
