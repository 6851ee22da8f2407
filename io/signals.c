#include "io/signals.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>

static sigset_t taken;
static signal_action action;

/* Ends the process by sig's default action: pending on this thread (which
 * blocks it) until it is unblocked here. */
static void die_by(int sig)
{
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    signal(sig, SIG_DFL);
    raise(sig);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
}

static void *wait_for_signals(void *arg)
{
    (void)arg;
    for (;;) {
        int sig;
        if (sigwait(&taken, &sig) == 0 && !action(sig))
            die_by(sig);
    }
    return NULL;
}

int signals_start(const int *sigs, int n, signal_action act)
{
    sigemptyset(&taken);
    for (int i = 0; i < n; i++)
        sigaddset(&taken, sigs[i]);
    action = act;
    pthread_sigmask(SIG_BLOCK, &taken, NULL);
    pthread_t thread;
    int rc = pthread_create(&thread, NULL, wait_for_signals, NULL);
    if (rc != 0) {
        pthread_sigmask(SIG_UNBLOCK, &taken, NULL);
        errno = rc;
        return -1;
    }
    pthread_detach(thread);
    return 0;
}

void signals_block_all(void)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
}
