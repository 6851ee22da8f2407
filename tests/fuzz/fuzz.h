/* fuzz: what the fuzz targets share.  Each tests/fuzz/fuzz_NAME.c defines
 * LLVMFuzzerTestOneInput (and LLVMFuzzerInitialize if it needs a fixture);
 * it is linked with libFuzzer by `make fuzz` and with replay.c by `make test`. */
#ifndef TESTS_FUZZ_H
#define TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A property every input must keep (beyond the sanitizers' checks): a
 * violation aborts, which both libFuzzer and the replay report as a failure. */
#define FUZZ_CHECK(cond)                                                           \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s:%d: fuzz property failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                        \
            abort();                                                               \
        }                                                                          \
    } while (0)

/* The input as a NUL-terminated string (malloc'd; NULL when out of memory). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s) {
        memcpy(s, data, size);
        s[size] = '\0';
    }
    return s;
}

/* Reads the first min(n, *size) bytes as a little-endian number and advances. */
static inline uint64_t fuzz_take(const uint8_t **data, size_t *size, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n && i < *size; i++)
        v |= (uint64_t)(*data)[i] << (8 * i);
    n = n < *size ? n : *size;
    *data += n;
    *size -= n;
    return v;
}

#endif
