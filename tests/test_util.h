/* Helpers shared by the cmocka tests: deterministic random data and
 * tolerance checks that print the worst element when they fail. */
#ifndef TESTS_TEST_UTIL_H
#define TESTS_TEST_UTIL_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"

/* A part of a test this machine cannot run: one "SKIP <what>: <reason>" line
 * on stdout, which tests/run_tests.sh counts and lists as skipped. */
static inline void test_skip(const char *what, const char *reason)
{
    printf("SKIP %s: %s\n", what, reason);
    fflush(stdout);
}

/* Whether this CPU runs kernel's isa path; a SKIP line when it does not. */
static inline bool test_isa_runs(isa_t isa, const char *kernel)
{
    if (cpu_isa_supported(isa))
        return true;
    printf("SKIP %s %s path: this CPU cannot run %s code\n", kernel, cpu_isa_name(isa),
           cpu_isa_name(isa));
    fflush(stdout);
    return false;
}

static inline float test_randf(uint64_t *state)   /* uniform in [-1, 1) */
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((*state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static inline void test_fill(float *x, size_t n, uint64_t seed, float scale)
{
    uint64_t s = seed * 2654435761ULL + 1;
    for (size_t i = 0; i < n; i++)
        x[i] = test_randf(&s) * scale;
}

/* max over i of |a-b| / (atol + rtol*|b|); <= 1 means every element is within tolerance */
static inline int test_close(const char *what, const float *a, const float *b, size_t n,
                             float atol, float rtol)
{
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)a[i] - (double)b[i]) / (atol + rtol * fabs((double)b[i]));
        if (!(err <= worst)) {   /* also catches NaN */
            worst = err;
            wi = i;
            if (isnan(err))
                break;
        }
    }
    if (!(worst <= 1.0)) {
        fprintf(stderr, "%s: element %zu: got %.8g want %.8g (err %.3g x tolerance)\n", what,
                wi, a[wi], b[wi], worst);
        return 0;
    }
    return 1;
}

#endif
