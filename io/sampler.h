/* sampler: which training sample comes next, as a pure function.
 *
 * A sample is a window of T+1 tokens starting at any offset of the train split,
 * so a split of n tokens holds n - T samples.  Epoch e visits all of them once
 * in an order fixed by (seed, e): a keyed Feistel permutation with cycle
 * walking, so no table is stored and any position can be computed directly
 * (any number of ranks, any resume point, the same sequence).
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
