#include "comm/node_share.h"

#include "comm/comm.h"
#include "comm/watchdog.h"

#include <mpi.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/statvfs.h>
#include <time.h>

/* Where Open MPI puts a shared window's backing file: its MCA parameter
 * osc_sm_backing_directory, as the environment sets it, or its default. */
static const char *backing_dir(void)
{
    const char *dir = getenv("OMPI_MCA_osc_sm_backing_directory");
    return dir && dir[0] ? dir : "/dev/shm";
}

enum { ALIGN = 4096 };

struct node_share {
    MPI_Comm node;
    MPI_Win win;
    _Atomic unsigned *flags;   /* [items] */
    _Atomic unsigned *left;    /* [size]: 1 once that node rank has come to the close */
    char *memory;
    int rank, size;
    int *world_ranks;          /* [size]: each node rank's rank in the world */
    int *missing;              /* [size]: the world ranks the close still waits for */
};

static size_t round_up(size_t n)
{
    return (n + ALIGN - 1) / ALIGN * ALIGN;
}

/* Whether the backing directory has room: a tmpfs file grows page by page,
 * and a page it cannot get is a SIGBUS later, not an error now. */
static int backing_has_room(size_t bytes)
{
    struct statvfs fs;
    return statvfs(backing_dir(), &fs) != 0 ||
           (double)fs.f_bavail * fs.f_frsize >= 1.1 * (double)bytes;
}

/* The window: node rank 0 allocates it all; every rank maps it at its own
 * address, the same offset from a page boundary everywhere, so aligning
 * from the start lands on the same byte in every process. */
static int map_window(node_share *s, size_t bytes, int items)
{
    size_t flag_bytes = round_up((size_t)(items + s->size) * sizeof *s->flags);
    MPI_Aint want = s->rank == 0 ? (MPI_Aint)(flag_bytes + bytes + ALIGN) : 0, got;
    int unit;
    char *base;
    if (MPI_Win_allocate_shared(want, 1, MPI_INFO_NULL, s->node, &base, &s->win) != MPI_SUCCESS)
        return -1;
    if (MPI_Win_shared_query(s->win, 0, &got, &unit, &base) != MPI_SUCCESS) {
        MPI_Win_free(&s->win);
        return -1;
    }
    char *start = (char *)(((uintptr_t)base + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
    s->flags = (_Atomic unsigned *)start;
    s->left = s->flags + items;
    s->memory = start + flag_bytes;
    return 0;
}

/* The world's rank of each of the node's ranks, for the watchdog's message. */
static int world_ranks_of(node_share *s)
{
    int *node_ranks = malloc((size_t)s->size * sizeof *node_ranks);
    s->world_ranks = malloc((size_t)s->size * sizeof *s->world_ranks);
    s->missing = malloc((size_t)s->size * sizeof *s->missing);
    if (!node_ranks || !s->world_ranks || !s->missing) {
        free(node_ranks);
        return -1;
    }
    MPI_Group node, world;
    MPI_Comm_group(s->node, &node);
    MPI_Comm_group(MPI_COMM_WORLD, &world);
    for (int r = 0; r < s->size; r++)
        node_ranks[r] = r;
    MPI_Group_translate_ranks(node, s->size, node_ranks, world, s->world_ranks);
    MPI_Group_free(&node);
    MPI_Group_free(&world);
    free(node_ranks);
    return 0;
}

static node_share *open_shared(size_t bytes, int items, char *err, size_t errlen)
{
    int world_rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    node_share *s = calloc(1, sizeof *s);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &node);
    int size, ok = s != NULL;
    MPI_Comm_size(node, &size);
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, node);
    if (size == 1 || !ok) {
        if (!ok)
            snprintf(err, errlen, "out of memory");
        MPI_Comm_free(&node);
        free(s);
        return NULL;
    }
    s->node = node;
    MPI_Comm_rank(node, &s->rank);
    s->size = size;
    ok = world_ranks_of(s) == 0;
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, node);
    if (!ok) {
        snprintf(err, errlen, "out of memory");
        MPI_Comm_free(&s->node);
        free(s->world_ranks);
        free(s->missing);
        free(s);
        return NULL;
    }
    MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN);
    ok = backing_has_room(bytes);
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, node);
    if (!ok) {
        snprintf(err, errlen, "%s has less than %.0f MB free", backing_dir(), bytes / 1e6);
    } else {
        ok = map_window(s, bytes, items) == 0;
        MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, node);
        if (!ok)
            snprintf(err, errlen, "no shared window of %.0f MB", bytes / 1e6);
        else if (s->rank == 0)
            for (int i = 0; i < items + s->size; i++)
                atomic_init(&s->flags[i], 0);
    }
    if (!ok) {   /* a window mapped on some ranks only is left mapped: freeing
                  * it is collective, and its pages were never touched */
        MPI_Comm_free(&s->node);
        free(s->world_ranks);
        free(s->missing);
        free(s);
        return NULL;
    }
    MPI_Barrier(node);   /* the flags are zero before anyone reads them */
    return s;
}

/* The open's and the close's collectives wait for the node's other ranks:
 * under the watchdog, as every wait on peers is, so a rank that never joins
 * them (stuck, or Open MPI's window failing on one rank) stops the job
 * instead of holding the others forever.  MPI cannot say whom a collective
 * waits for, so both first wait for the ranks in a way that can: the open
 * in comm's roll call (it is collective over the world), the close on marks
 * in the shared memory. */
node_share *node_share_open(size_t bytes, int items, char *err, size_t errlen)
{
    err[0] = '\0';
    comm_arrive("the setup of memory shared by this node's ranks");
    watchdog_arm("the setup of memory shared by this node's ranks");
    node_share *s = open_shared(bytes, items, err, errlen);
    watchdog_disarm();
    return s;
}

/* Marks this rank's arrival at the close and waits for every node rank's,
 * telling the watchdog (armed) which world ranks it still lacks. */
static void await_all_left(node_share *s)
{
    const struct timespec nap = {0, 1000000};
    atomic_store_explicit(&s->left[s->rank], 1, memory_order_release);
    int told = -1;
    for (;;) {
        int n = 0;
        for (int r = 0; r < s->size; r++)
            if (!atomic_load_explicit(&s->left[r], memory_order_acquire))
                s->missing[n++] = s->world_ranks[r];
        if (n == 0)
            return;
        if (n != told)
            watchdog_waiting_for(s->missing, n);
        told = n;
        nanosleep(&nap, NULL);
    }
}

void node_share_close(node_share *s)
{
    if (!s)
        return;
    watchdog_arm("the release of memory shared by this node's ranks");
    await_all_left(s);
    MPI_Barrier(s->node);   /* nobody reads it any more */
    MPI_Win_free(&s->win);
    watchdog_disarm();
    MPI_Comm_free(&s->node);
    free(s->world_ranks);
    free(s->missing);
    free(s);
}

void *node_share_memory(const node_share *s)
{
    return s->memory;
}

int node_share_rank(const node_share *s)
{
    return s->rank;
}

int node_share_size(const node_share *s)
{
    return s->size;
}

void node_share_publish(node_share *s, int item, unsigned gen)
{
    atomic_store_explicit(&s->flags[item], gen, memory_order_release);
}

unsigned node_share_generation(const node_share *s, int item)
{
    return atomic_load_explicit(&s->flags[item], memory_order_acquire);
}

bool node_share_reached(const node_share *s, int item, unsigned gen)
{
    return (int)(node_share_generation(s, item) - gen) >= 0;
}

/* The other rank is usually well under a millisecond behind: spin a little,
 * then sleep in short naps so a core shared with another thread of this rank
 * (or another rank) is given up. */
void node_share_await(node_share *s, int item, unsigned gen, int publisher, const char *what,
                      void (*idle)(void *), void *arg)
{
    for (int spin = 0; spin < 2000; spin++)
        if (node_share_reached(s, item, gen))
            return;
    const struct timespec nap = {0, 20000};
    watchdog_arm(what);
    watchdog_waiting_for(&s->world_ranks[publisher], 1);
    while (!node_share_reached(s, item, gen)) {
        if (idle)
            idle(arg);
        nanosleep(&nap, NULL);
    }
    watchdog_disarm();
}
