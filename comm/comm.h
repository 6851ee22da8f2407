/* comm: the MPI side of training.  Every rank runs the same loop; these are the
 * collectives it needs beside the gradient buckets (comm/buckets.h) and ZeRO's
 * shards (comm/zero.h): agreeing on losses, norms, flags and choices,
 * broadcasting the initial parameters, summing the embedding's rows for
 * comm/sparse.h.  A run started without mpirun is a world of one rank.
 *
 * Every wait here is under the watchdog (comm/watchdog.h).  The agreements
 * (sums and maxima of a few values, flags, a broadcast int, gathered ints)
 * also tell it which ranks have not reached them when one stalls, so the
 * message names the hung peer.  The bulk transfers (comm_sum_floats,
 * comm_broadcast_floats) stay blocking, as Open MPI's nonblocking sum of
 * megabytes is twice as slow; each starts with a barrier that names a peer
 * that never reaches it, so only a peer that hangs inside one goes unnamed.
 */
#ifndef COMM_COMM_H
#define COMM_COMM_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    int rank, size;               /* in MPI_COMM_WORLD */
    int local_rank, local_size;   /* among the ranks on this node */
    const char *const *hosts;     /* [size]: each rank's host (MPI_Get_processor_name,
                                   * at most COMM_HOST_CHARS - 1 characters), for the
                                   * watchdog's message; valid until comm_finalize */
} comm_world;

enum { COMM_HOST_CHARS = 64 };

/* MPI_Init_thread; fills w.  Returns 0, or -1 with a reason in err. */
int comm_init(int *argc, char ***argv, comm_world *w, char *err, size_t errlen);
void comm_finalize(void);

/* x[i] summed over all ranks, in place (the buffer may exceed INT_MAX values);
 * what names the sum in the watchdog's message, as for comm_max_int. */
void comm_sum_floats(float *x, size_t n, const char *what);
double comm_sum_double(double x);
/* Largest value over ranks: used to agree on flags (stop, error).  what names
 * the agreement in the watchdog's message if a rank never joins it. */
int comm_max_int(int x, const char *what);
/* The same where the ranks wait for work_s of known work on one of them
 * (watchdog_arm_for). */
int comm_max_int_after(int x, const char *what, double work_s);
/* x[i] = its largest value over ranks (per-rank figures for the status). */
void comm_max_doubles(double *x, int n);
/* Every rank gets x[0..n) of the rank whose x[key] is the least (ties: the
 * lowest rank): figures that belong together, from one rank. */
void comm_pick_least(double *x, int n, int key);
/* Bitwise OR over ranks: several flags agreed in one reduction (what as above). */
int comm_or_int(int x, const char *what);
/* Rank root's x[0..n) copied to every rank (what as above). */
void comm_broadcast_floats(float *x, size_t n, int root, const char *what);
/* Rank root's *x copied to every rank; what names the wait for the watchdog. */
void comm_broadcast_int(int *x, int root, const char *what);
/* The same where root may first do work_s of known work (watchdog_arm_for):
 * rank 0 reading or writing a checkpoint between the requests it hands out. */
void comm_broadcast_int_after(int *x, int root, const char *what, double work_s);

/* all[r] = rank r's x, for every rank (all holds the world's size). */
void comm_gather_ints(int x, int *all, const char *what);
/* Every rank's x[0..n) into all, rank r's counts[r] values at displs[r]. */
void comm_gather_int_lists(const int *x, int n, int *all, const int *counts, const int *displs,
                           const char *what);

/* Waits until every rank has called it (what as above): before a blocking
 * collective of another kind, so that a peer that never reaches it is named. */
void comm_arrive(const char *what);

/* CPUs this process may run on (its affinity mask): mpirun binds ranks. */
int comm_cpus_available(void);

#endif
