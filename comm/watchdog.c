#include "comm/watchdog.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "kernels/clock.h"

/* Peers named in the message; any more are counted ("and 12 more"). */
enum { NAMED = 4 };

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
    const char *const *hosts;   /* [world size] or NULL */
    int waiting_for[NAMED];     /* the first peers the wait still waits for */
    int waiting_n;              /* how many it waits for (0: not known) */
} wd = {.lock = PTHREAD_MUTEX_INITIALIZER};   /* wake: made by watchdog_start */

/* Appends to out[0..cap) at *len, as far as it fits. */
static void append(char *out, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

/* ", still waiting for ranks 1 (host a), 5 (host b) and 3 more" into out, or
 * nothing when the wait's peers are not known. */
static void describe_peers(char *out, size_t cap)
{
    size_t len = 0;
    int n = wd.waiting_n, shown = n < NAMED ? n : NAMED;
    out[0] = '\0';
    if (n == 0)
        return;
    append(out, cap, &len, ", still waiting for rank%s", n > 1 ? "s" : "");
    for (int k = 0; k < shown; k++) {
        int r = wd.waiting_for[k];
        append(out, cap, &len, "%s%d", k == 0 ? " " : k == n - 1 ? " and " : ", ", r);
        if (wd.hosts && wd.hosts[r])
            append(out, cap, &len, " (host %s)", wd.hosts[r]);
    }
    if (n > shown)
        append(out, cap, &len, " and %d more", n - shown);
}

/* Wakes every second (cheap) and checks the armed wait's age. */
static void *watch(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&wd.lock);
    while (!wd.stopping) {
        struct timespec until = clock_deadline(1);
        pthread_cond_timedwait(&wd.wake, &wd.lock, &until);
        if (wd.what && clock_mono_s() - wd.armed_at > wd.timeout_s + wd.work_s) {
            char peers[1024];
            describe_peers(peers, sizeof peers);
            fprintf(stderr, "trainer: rank %d: waited %.0f s for the other ranks in %s%s; a peer "
                    "rank is stuck or unreachable, aborting the job\n", wd.rank,
                    wd.timeout_s + wd.work_s, wd.what, peers);
            fflush(stderr);
            _exit(3);
        }
    }
    pthread_mutex_unlock(&wd.lock);
    return NULL;
}

int watchdog_start(int rank, double timeout_s, const char *const *hosts)
{
    if (timeout_s <= 0 || wd.running)
        return 0;
    wd.rank = rank;
    wd.timeout_s = timeout_s;
    wd.hosts = hosts;
    wd.stopping = false;
    if (clock_cond_init(&wd.wake) != 0)
        return -1;
    if (pthread_create(&wd.thread, NULL, watch, NULL) != 0) {
        pthread_cond_destroy(&wd.wake);
        return -1;
    }
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
    pthread_cond_destroy(&wd.wake);
    wd.running = false;
}

void watchdog_arm_for(const char *what, double work_s)
{
    pthread_mutex_lock(&wd.lock);
    wd.what = what;
    wd.armed_at = clock_mono_s();
    wd.work_s = work_s > 0 ? work_s : 0;
    wd.waiting_n = 0;
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
    wd.waiting_n = 0;
    pthread_mutex_unlock(&wd.lock);
}

void watchdog_waiting_for(const int *ranks, int n)
{
    pthread_mutex_lock(&wd.lock);
    for (int k = 0; k < n && k < NAMED; k++)
        wd.waiting_for[k] = ranks[k];
    wd.waiting_n = n > 0 ? n : 0;
    pthread_mutex_unlock(&wd.lock);
}
