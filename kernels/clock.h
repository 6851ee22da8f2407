/* clock: the time in seconds, as a double.
 *
 * The monotonic clock never jumps, so intervals and deadlines use it; the
 * wall clock is for time stamps that other processes read.  A header of
 * kernels/ although nothing here computes: it is the one folder every other
 * may include (comm/'s watchdog times its waits with it).
 */
#ifndef KERNELS_CLOCK_H
#define KERNELS_CLOCK_H

#include <time.h>

static inline double clock_read_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline double clock_mono_s(void)
{
    return clock_read_s(CLOCK_MONOTONIC);
}

/* Seconds since the epoch. */
static inline double clock_wall_s(void)
{
    return clock_read_s(CLOCK_REALTIME);
}

/* CPU time of the process, all its threads together. */
static inline double clock_cpu_s(void)
{
    return clock_read_s(CLOCK_PROCESS_CPUTIME_ID);
}

#endif
