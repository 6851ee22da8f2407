/* signals: a program's signals are taken on a thread of their own
 * (io/signals.h).  Products on oneDNN's gemm kernel (which runs on a heap
 * workspace as its stack) go on while signals arrive, and come out equal to
 * the scalar reference, the heap intact (a handler on the computing thread
 * wrote its frame into the heap: glibc aborted at the kernel's free); the
 * action runs on the signal thread, never the computing one; an action that
 * declines ends the process by the signal's default action. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/signals.h"
#include "kernels/gemm.h"

static atomic_int taken;
static atomic_int on_main_thread;
static pthread_t main_thread;

static bool count(int sig)
{
    (void)sig;
    if (pthread_equal(pthread_self(), main_thread))
        atomic_store(&on_main_thread, 1);
    atomic_fetch_add(&taken, 1);
    return true;
}

static atomic_int computing;

/* Sends SIGUSR1 to the process every 200 us while the products run. */
static void *send_signals(void *arg)
{
    int *sent = arg;
    const struct timespec pause = {0, 200 * 1000L};
    while (atomic_load(&computing)) {
        kill(getpid(), SIGUSR1);
        (*sent)++;
        nanosleep(&pause, NULL);
    }
    return NULL;
}

/* A weight gradient's shape: dw[IC,OC] = inp^T @ dout with K = 512 tokens,
 * past the kernel's stack capacity (84 on AVX-512, fewer on AVX2). */
enum { IC = 128, OC = 256, TOKENS = 512, PRODUCTS = 400 };

static void test_products_under_signals(void **state)
{
    (void)state;
    main_thread = pthread_self();
    static const int sigs[] = {SIGUSR1};
    assert_int_equal(signals_start(sigs, 1, count), 0);
    gemm_set_trans_a_kernel(true);
    float *inp = malloc(sizeof(float) * TOKENS * IC), *dout = malloc(sizeof(float) * TOKENS * OC);
    float *dw = malloc(sizeof(float) * IC * OC), *ref = malloc(sizeof(float) * IC * OC);
    assert_non_null(inp && dout && dw && ref);
    for (int i = 0; i < TOKENS * IC; i++)
        inp[i] = (float)((i * 7) % 13) * 0.1f - 0.6f;
    for (int i = 0; i < TOKENS * OC; i++)
        dout[i] = (float)((i * 5) % 11) * 0.1f - 0.5f;
    gemm_f32_ref(true, false, IC, OC, TOKENS, inp, IC, dout, OC, NULL, false, ref, OC);

    int sent = 0;
    pthread_t sender;
    atomic_store(&computing, 1);
    assert_int_equal(pthread_create(&sender, NULL, send_signals, &sent), 0);
    double worst = 0;
    for (int p = 0; p < PRODUCTS; p++) {
        gemm_f32(true, false, IC, OC, TOKENS, inp, IC, dout, OC, NULL, false, dw, OC);
        for (int i = 0; i < IC * OC; i++)
            worst = fmax(worst, fabs(dw[i] - ref[i]) / (1 + fabs(ref[i])));
    }
    atomic_store(&computing, 0);
    pthread_join(sender, NULL);
    print_message("%d products on the gemm kernel while %d signals were sent (%d taken): "
                  "worst %.2g relative\n", PRODUCTS, sent, atomic_load(&taken), worst);
    assert_true(worst < 1e-5);
    assert_true(sent > 0);
    /* taken: signals pending together count once, and the last may still be on its way */
    for (int wait = 0; wait < 1000 && atomic_load(&taken) == 0; wait++)
        usleep(1000);
    assert_true(atomic_load(&taken) > 0);
    assert_int_equal(atomic_load(&on_main_thread), 0);
    free(inp);
    free(dout);
    free(dw);
    free(ref);
}

static bool decline(int sig)
{
    (void)sig;
    return false;
}

static void test_declined_signal_ends_the_process(void **state)
{
    (void)state;
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        static const int sigs[] = {SIGTERM};
        if (signals_start(sigs, 1, decline) != 0)
            _exit(1);
        kill(getpid(), SIGTERM);
        for (int i = 0; i < 100; i++)
            usleep(10000);
        _exit(0);   /* not ended by the signal */
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGTERM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_declined_signal_ends_the_process),
        cmocka_unit_test(test_products_under_signals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
