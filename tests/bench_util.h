/* Helpers shared by the tests/bench_*.c programs: a monotonic clock, the
 * median of a set of timings, the JSON-lines file make bench collects, and
 * the check of GPT_ISA. */
#ifndef TESTS_BENCH_UTIL_H
#define TESTS_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/cpu.h"

static inline double bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts t[0..n) and returns its median. */
static inline double bench_median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof t[0], bench_cmp_double);
    return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

/* $BENCH_JSONL opened for appending; NULL when it is unset.  Exits with a
 * message when it is set but cannot be opened. */
static inline FILE *bench_jsonl_open(void)
{
    const char *path = getenv("BENCH_JSONL");
    if (!path || !*path)
        return NULL;
    FILE *f = fopen(path, "a");
    if (!f) {
        perror(path);
        exit(1);
    }
    return f;
}

/* The path GPT_ISA names made active, as the programs do at start; a value
 * they would refuse stops the benchmark too (exit 2), since figures of
 * another path than the one asked for are worse than none. */
static inline void bench_check_isa(const char *prog)
{
    char err[256];
    if (cpu_isa_from_env(err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        exit(2);
    }
}

#endif
