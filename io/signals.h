/* signals: asynchronous signals taken on a thread of their own, never on a
 * thread that computes.
 *
 * oneDNN 2.6's JIT sgemm (its "gemm:jit" matmul, which the trainer picks for
 * weight gradients where it is faster and which is oneDNN's f32 product on
 * AVX2-only CPUs) points the stack pointer at a heap workspace while it runs
 * with K past a few dozen.  A handler run on a thread inside that kernel
 * pushes its frame below the workspace, into the malloc heap, which fails
 * later as "corrupted size vs. prev_size" (fixed upstream in oneDNN 3.11.2).
 * So a program that computes products takes its signals here: signals_start,
 * called before any other thread exists, blocks them in the calling thread,
 * so that every thread created afterwards (OpenMP's, MPI's, the services')
 * inherits the block, and one thread waits for them with sigwait and calls
 * the program's action in its own context. */
#ifndef IO_SIGNALS_H
#define IO_SIGNALS_H

#include <stdbool.h>

/* What a signal asks for: true if taken, false to end the process by the
 * signal's default action (a repeated stop request, say). */
typedef bool (*signal_action)(int sig);

/* Blocks sigs[0..n) in the calling thread and starts the thread that takes
 * them with act.  0, or -1 (errno set) when the thread cannot start, the
 * signals then unblocked again. */
int signals_start(const int *sigs, int n, signal_action act);

/* Blocks every signal in the calling thread: a service thread whose system
 * calls must not end early (EINTR) and that must not take a signal meant for
 * the program. */
void signals_block_all(void);

#endif
