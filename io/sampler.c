#include "io/sampler.h"

#include "io/hash.h"

/* One pass of a 4-round balanced Feistel network on 2*half bits: a bijection
 * of [0, 4^half) keyed by key. */
static uint64_t feistel(uint64_t x, int half, uint64_t key)
{
    uint64_t mask = (1ULL << half) - 1;
    uint64_t left = x >> half, right = x & mask;
    for (uint64_t round = 0; round < 4; round++) {
        uint64_t f = splitmix64_mix(right ^ splitmix64_mix(key + round)) & mask;
        uint64_t next = left ^ f;
        left = right;
        right = next;
    }
    return (left << half) | right;
}

uint64_t sampler_permute(uint64_t i, uint64_t n, uint64_t seed, uint64_t epoch)
{
    if (n <= 1)
        return 0;
    int half = 1;
    while ((1ULL << (2 * half)) < n)
        half++;
    uint64_t key = splitmix64_mix(seed * 0x9E3779B97F4A7C15ULL + epoch + 1);
    /* cycle walking: the domain is < 4n, so a handful of passes on average */
    uint64_t x = i;
    do
        x = feistel(x, half, key);
    while (x >= n);
    return x;
}
