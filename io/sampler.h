/* sampler: which training sample comes next, as a pure function.
 *
 * A sample is a window of T+1 tokens starting at any offset of the train split,
 * so a split of n tokens holds n - T samples.  Epoch e visits all of them once
 * in an order fixed by (seed, e): a keyed Feistel permutation with cycle
 * walking, so no table is stored and any position can be computed directly
 * (any number of ranks, any resume point, the same sequence).
 *
 * The order is part of the checkpoint format: a resumed run must train on
 * the samples the interrupted one would have, whatever build resumes it.
 * Exactly (all arithmetic on uint64_t, modulo 2^64):
 *   mix(z)     splitmix64's finalizer: z ^= z >> 30, z *= 0xBF58476D1CE4E5B9,
 *              z ^= z >> 27, z *= 0x94D049BB133111EB, z ^= z >> 31
 *   n <= 1     the sample is 0
 *   h          the smallest h >= 1 with 4^h >= n; the domain is [0, 4^h)
 *   key        mix(seed * 0x9E3779B97F4A7C15 + epoch + 1)
 *   F(x)       L = x >> h, R = x mod 2^h; for round = 0, 1, 2, 3:
 *              (L, R) = (R, L ^ (mix(R ^ mix(key + round)) mod 2^h));
 *              then L * 2^h + R
 *   position i the first of F(i), F(F(i)), ... below n (cycle walking)
 */
#ifndef IO_SAMPLER_H
#define IO_SAMPLER_H

#include <stdint.h>

/* The sample index at position i (0 <= i < n) of epoch `epoch`'s order. */
uint64_t sampler_permute(uint64_t i, uint64_t n, uint64_t seed, uint64_t epoch);

/* Start offset of global sample number g (counting across epochs). */
static inline uint64_t sampler_offset(uint64_t g, uint64_t nsamples, uint64_t seed)
{
    return sampler_permute(g % nsamples, nsamples, seed, g / nsamples);
}

#endif
