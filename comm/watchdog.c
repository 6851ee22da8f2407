#include "comm/watchdog.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "kernels/clock.h"

/* One per process, as the process is what it guards: comm's waits arm it
 * from wherever they are, without a pointer passed down to them. */
static struct {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool running, stopping;
    int rank;
    double timeout_s;
    const char *what;     /* NULL when disarmed */
    double armed_at;      /* CLOCK_MONOTONIC seconds */
    double work_s;        /* allowed beyond timeout_s for this wait */
} wd = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/* Wakes every second (cheap) and checks the armed wait's age. */
static void *watch(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&wd.lock);
    while (!wd.stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&wd.wake, &wd.lock, &until);
        if (wd.what && clock_mono_s() - wd.armed_at > wd.timeout_s + wd.work_s) {
            fprintf(stderr, "trainer: rank %d: waited %.0f s for the other ranks in %s; a peer rank "
                    "is stuck or unreachable, aborting the job\n", wd.rank,
                    wd.timeout_s + wd.work_s, wd.what);
            fflush(stderr);
            _exit(3);
        }
    }
    pthread_mutex_unlock(&wd.lock);
    return NULL;
}

int watchdog_start(int rank, double timeout_s)
{
    if (timeout_s <= 0 || wd.running)
        return 0;
    wd.rank = rank;
    wd.timeout_s = timeout_s;
    wd.stopping = false;
    if (pthread_create(&wd.thread, NULL, watch, NULL) != 0)
        return -1;
    wd.running = true;
    return 0;
}

void watchdog_stop(void)
{
    if (!wd.running)
        return;
    pthread_mutex_lock(&wd.lock);
    wd.stopping = true;
    pthread_cond_signal(&wd.wake);
    pthread_mutex_unlock(&wd.lock);
    pthread_join(wd.thread, NULL);
    wd.running = false;
}

void watchdog_arm_for(const char *what, double work_s)
{
    pthread_mutex_lock(&wd.lock);
    wd.what = what;
    wd.armed_at = clock_mono_s();
    wd.work_s = work_s > 0 ? work_s : 0;
    pthread_mutex_unlock(&wd.lock);
}

void watchdog_arm(const char *what)
{
    watchdog_arm_for(what, 0);
}

double watchdog_io_seconds(double bytes)
{
    return bytes / 25e6;
}

void watchdog_disarm(void)
{
    pthread_mutex_lock(&wd.lock);
    wd.what = NULL;
    pthread_mutex_unlock(&wd.lock);
}
