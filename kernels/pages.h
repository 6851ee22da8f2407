/* pages: large buffers on 2 MB pages.
 *
 * Training streams through its arenas (parameters, gradients, activations,
 * optimizer moments) and decode through all of its weights every step; with
 * 4 KB pages the page walks of those streams cost them time (measured in
 * bench_bf16mm and bench_model: docs/benchmarks.md, "Measurements behind code
 * choices").  Where the kernel's transparent huge
 * pages are set to "madvise" (Debian's default) a buffer must ask for them.
 */
#ifndef KERNELS_PAGES_H
#define KERNELS_PAGES_H

#include <stddef.h>

/* bytes of memory, uninitialised, freed with free(): from 2 MB on aligned to
 * and advised onto 2 MB pages (advice only: a kernel without them keeps
 * 4 KB), below that 64-byte aligned.  NULL when out of memory. */
void *pages_alloc(size_t bytes);
/* The same, zeroed now (so the first touch happens here, not later in a
 * hot loop). */
void *pages_alloc_zeroed(size_t bytes);

#endif
