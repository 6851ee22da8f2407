/* clock: the time in seconds, as a double.
 *
 * The monotonic clock never jumps, so intervals and deadlines use it; the
 * wall clock is for time stamps that other processes read.  A header of
 * kernels/ although nothing here computes: it is the one folder every other
 * may include (comm/'s watchdog times its waits with it).
 */
#ifndef KERNELS_CLOCK_H
#define KERNELS_CLOCK_H

#include <pthread.h>
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

/* A condition variable whose timed waits run on the monotonic clock: on the
 * default wall clock, a clock set back (an NTP step) stretches a wait by as
 * much, and a watchdog or a control wait would sleep through it.  0 on success. */
static inline int clock_cond_init(pthread_cond_t *c)
{
    pthread_condattr_t a;
    if (pthread_condattr_init(&a) != 0)
        return -1;
    int rc = pthread_condattr_setclock(&a, CLOCK_MONOTONIC) || pthread_cond_init(c, &a) ? -1 : 0;
    pthread_condattr_destroy(&a);
    return rc;
}

/* timeout_s from now, as pthread_cond_timedwait takes it for a condition
 * variable made by clock_cond_init. */
static inline struct timespec clock_deadline(double timeout_s)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    long long ns = t.tv_nsec + (long long)(timeout_s * 1e9);
    t.tv_sec += (time_t)(ns / 1000000000LL);
    t.tv_nsec = (long)(ns % 1000000000LL);
    return t;
}

/* CPU time of the process, all its threads together. */
static inline double clock_cpu_s(void)
{
    return clock_read_s(CLOCK_PROCESS_CPUTIME_ID);
}

#endif
