/* loader: training batches prepared ahead of time by a thread and delivered
 * over ZeroMQ (inproc PUSH/PULL), so the trainer does not wait for its data.
 *
 * The loader produces, in order, micro-batch j of step s for one rank: the
 * samples dataset_first_sample(...) names, so the sequence is the same as
 * reading the dataset directly, for any number of ranks and any start step.
 * The socket's high-water mark bounds how far ahead it runs (backpressure: a
 * slow trainer never loses or repeats a batch).
 *
 * Wire format of one message (little-endian), then B*T inputs and B*T targets
 * of `width` bytes each:
 *   u32 magic "GPTB", u16 version (1), u16 width (2 or 4), u64 step, u32 micro,
 *   u32 rank, u32 B, u32 T
 * A message whose size, magic, version, step or shape is not the expected one
 * is refused with a clear error, never used.  A loader that cannot build a
 * batch (a damaged shard) sends a message with width 0 followed by the reason.
 */
#ifndef IO_LOADER_H
#define IO_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "io/dataset.h"

enum { LOADER_MAGIC = 0x42545047, LOADER_VERSION = 1, LOADER_HEADER_BYTES = 32 };

typedef struct {
    int B, T, grad_accum, rank, ranks;
    uint64_t first_step;   /* the run starts (or resumes) here */
    int depth;             /* batches prepared ahead */
    int timeout_ms;        /* longest wait for one batch */
} loader_options;

typedef struct loader loader;

/* Starts the loader thread over d (which must outlive it).  NULL with err set. */
loader *loader_start(const dataset *d, const loader_options *o, char *err, size_t errlen);
/* Stops the thread and frees everything. */
void loader_stop(loader *l);

/* The next micro-batch, which must be (step, micro): inputs/targets [B,T].
 * *wait_ms: how long it waited.  0, or -1 with a one-line reason in err. */
int loader_next(loader *l, uint64_t step, int micro, int *inputs, int *targets, double *wait_ms,
                char *err, size_t errlen);

/* Encode / check one message (shared with tests and a future loader process).
 * loader_encode returns the message size; buf must hold loader_message_bytes. */
size_t loader_message_bytes(int B, int T, int width);
size_t loader_encode(uint8_t *buf, uint64_t step, int micro, int rank, int B, int T, int width,
                     const int *inputs, const int *targets);
int loader_decode(const uint8_t *buf, size_t len, uint64_t step, int micro, int rank, int B, int T,
                  int *inputs, int *targets, char *err, size_t errlen);

#endif
