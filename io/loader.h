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
 * A message whose size, magic, version, step or shape is not the expected one,
 * or that holds a token at or above the model's vocab_size, is refused with a
 * clear error, never used.  A loader that cannot build a
 * batch (a damaged shard) sends a message with width 0 followed by the reason.
 *
 * Remote mode (loader_options.endpoint non-empty): the batches come from a
 * separate `build/loader` process (a ROUTER socket; the rank is a DEALER).  The
 * rank asks for each micro-batch by its full address, so neither side keeps
 * state a restart could lose, and keeps `depth` requests in flight.  When the
 * connection comes back (the server was restarted), every request still
 * unanswered is sent again; a reply that answers nothing outstanding (a second
 * answer, or one to an earlier connection) is discarded, and one that comes
 * before the batch expected is discarded and asked for again, as is the batch
 * expected (its reply may have been lost), so the batches stay those of an
 * uninterrupted run, in order.  A request (little-endian,
 * LOADER_REQUEST_BYTES, then the token):
 *   u32 magic "GPTR", u16 version (2), u16 token length (0..ZSOCK_TOKEN_MAX),
 *   u64 step, u32 micro, u32 rank, u32 ranks, u32 B, u32 T, u32 grad_accum,
 *   u64 seed, u32 vocab, u32 reserved (0), u64 train tokens,
 *   u64 train checksum (the manifest's for train.tok; 0: unknown), token bytes
 * seed, T, vocab and the train split (its size, and its checksum where both
 * sides know it) must be the server's own: they decide which tokens a sample
 * holds, so a mismatch is refused, not served.
 * The reply is one message in the format above (a batch or width 0 + reason).
 * A server with a token ($GPT_LOADER_TOKEN; required off loopback) answers
 * only requests that carry it, and others not at all.
 */
#ifndef IO_LOADER_H
#define IO_LOADER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "io/dataset.h"

enum { LOADER_MAGIC = 0x42545047, LOADER_VERSION = 1, LOADER_HEADER_BYTES = 32 };

typedef struct {
    int B, T, grad_accum, rank, ranks;
    uint64_t first_step;   /* the run starts (or resumes) here */
    int depth;             /* batches prepared ahead */
    int timeout_ms;        /* longest wait for one batch */
    const char *endpoint;  /* NULL or "": in-process thread; else a build/loader to ask */
    const char *token;     /* remote: the server's token; NULL: $GPT_LOADER_TOKEN if set */
} loader_options;

#define LOADER_TOKEN_ENV "GPT_LOADER_TOKEN"

typedef struct loader loader;

/* Starts the loader thread over d (which must outlive it).  NULL with err set. */
loader *loader_start(const dataset *d, const loader_options *o, char *err, size_t errlen);
/* Stops the thread and frees everything. */
void loader_stop(loader *l);

/* The next micro-batch, which must be (step, micro): inputs/targets [B,T].
 * *wait_ms: how long it waited.  0, or -1 with a one-line reason in err. */
int loader_next(loader *l, uint64_t step, int micro, int *inputs, int *targets, double *wait_ms,
                char *err, size_t errlen);

/* Batches prepared and waiting for the trainer (thread mode), or -1 when the
 * loader is a separate process (its replies in the socket cannot be counted). */
int loader_queue_depth(const loader *l);

/* Encode / check one message (shared by both modes, build/loader and tests).
 * loader_encode returns the message size; buf must hold loader_message_bytes.
 * loader_decode refuses a token at or above vocab (the model's vocab_size). */
size_t loader_message_bytes(int B, int T, int width);
size_t loader_encode(uint8_t *buf, uint64_t step, int micro, int rank, int B, int T, int width,
                     const int *inputs, const int *targets);
int loader_decode(const uint8_t *buf, size_t len, uint64_t step, int micro, int rank, int B, int T,
                  int vocab, int *inputs, int *targets, char *err, size_t errlen);

/* ---- remote mode: requests and the server side (build/loader) ---------- */

enum { LOADER_REQUEST_MAGIC = 0x52545047, LOADER_REQUEST_VERSION = 2, LOADER_REQUEST_BYTES = 72 };
/* Largest batch a server builds (tokens per micro-batch): bounds what a request can allocate. */
enum { LOADER_MAX_BATCH_TOKENS = 1 << 24 };

typedef struct {
    uint64_t step, seed, train_tokens, train_checksum;
    int micro, rank, ranks, B, T, grad_accum, vocab;
    const char *token;   /* token_len bytes (not NUL-terminated); decode: inside buf */
    size_t token_len;
} loader_request;

/* Writes the request into buf (LOADER_REQUEST_BYTES + token_len); returns its size. */
size_t loader_request_encode(uint8_t *buf, const loader_request *r);
/* Parses and checks a request on its own (size, magic, version, ranges).  0, or -1 with err. */
int loader_request_decode(const uint8_t *buf, size_t len, loader_request *r, char *err,
                          size_t errlen);
/* Checks that a well-formed request matches the data d serves (seed, T, vocab,
 * the train split's size and checksum). */
int loader_request_check(const loader_request *r, const dataset *d, char *err, size_t errlen);

typedef struct loader_server loader_server;

/* A server of batches cut from d (which must outlive it).  NULL with err set. */
loader_server *loader_server_new(const dataset *d, char *err, size_t errlen);
void loader_server_free(loader_server *s);
/* Requests must carry token from now on (NULL or "": none).  0, or -1 out of memory. */
int loader_server_set_token(loader_server *s, const char *token);
/* The reply to one request: a batch, or an error message; valid until the
 * next call.  0 (no reply at all) for a request without the server's token. */
size_t loader_server_answer(loader_server *s, const uint8_t *req, size_t len,
                            const uint8_t **reply);
/* Binds a ROUTER socket on endpoint and answers requests until *stop becomes
 * non-zero (checked every ~100 ms).  0 after a stop, -1 with err set. */
int loader_server_run(loader_server *s, const char *endpoint, const atomic_int *stop,
                      char *err, size_t errlen);
/* Requests answered so far, and how many of them were refused. */
uint64_t loader_server_served(const loader_server *s, uint64_t *refused);

#endif
