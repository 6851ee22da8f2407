/* hash: the integer mixers shared by io/, trainer/ and infer/.
 *
 * SplitMix64 draws the initial parameters and inference's samples and keys
 * the data sampler's permutation; FNV-1a hashes byte strings (the
 * tokenizer's tables, autotune's cache names).  Training results, bit-identical
 * resumes and seeded samples depend on their exact outputs, so there is one
 * definition of each.
 */
#ifndef IO_HASH_H
#define IO_HASH_H

#include <stddef.h>
#include <stdint.h>

/* SplitMix64's output function: a bijection of 64-bit values in which every
 * input bit changes about half the output bits. */
static inline uint64_t splitmix64_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* The next value of the SplitMix64 sequence whose state is *s (any seed). */
static inline uint64_t splitmix64(uint64_t *s)
{
    return splitmix64_mix(*s += 0x9E3779B97F4A7C15ULL);
}

/* 64-bit FNV-1a of the n bytes at p. */
static inline uint64_t fnv1a64(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

#endif
