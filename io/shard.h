/* shard: token files written by `prep` and memory-mapped by the trainer.
 *
 * Layout (little-endian): a 32-byte header
 *   magic "GPTTOKS\0" (8 bytes), u32 version (1), u32 token width in bytes (2 or 4),
 *   u64 token count, u32 vocabulary size (every token is < it), u32 reserved (0)
 * followed by count tokens of that width.  A file whose size does not match its
 * header, or whose magic/version is foreign, is refused.
 */
#ifndef IO_SHARD_H
#define IO_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "io/fsutil.h"

typedef struct {
    const void *map;      /* whole file, read-only */
    size_t map_len;
    const uint8_t *data;  /* first token */
    uint64_t count;
    uint32_t width;       /* 2 or 4 */
    uint32_t vocab_size;
    /* shard_open: the mapped file, still open, its time of last change then,
     * and its path (for messages); unused while map is NULL */
    int fd;
    int64_t mtime_ns;
    char *path;
} token_shard;

/* All return 0 on success, -1 with a one-line reason in err. */
int shard_open(token_shard *s, const char *path, char *err, size_t errlen);
/* The same checks on a whole file already in memory (len bytes at buf, which
 * must outlive s; name is for messages).  s->map stays NULL: nothing to unmap. */
int shard_parse(token_shard *s, const void *buf, size_t len, const char *name, char *err,
                size_t errlen);
void shard_close(token_shard *s);
/* Whether the file shard_open mapped is still as it was: a file rewritten in
 * place (cp over it, a truncation) under a running reader changes the tokens
 * it maps, or takes pages away (SIGBUS on the next read of them).  0, or -1
 * with a reason naming the file; 0 also for a shard that maps no file.  A new
 * file renamed over the path (what build/prep does) leaves the mapped one be. */
int shard_check_unchanged(const token_shard *s, char *err, size_t errlen);
/* Writes to PATH.tmp, fsyncs, renames: a reader never sees a partial file. */
int shard_write(const char *path, const uint32_t *tokens, uint64_t count, uint32_t vocab_size,
                char *err, size_t errlen);

/* A token file written as its tokens come (build/prep: more of them than memory
 * holds).  begin writes PATH.tmp with a header whose count is not known yet; append
 * adds tokens (each must be below vocab_size); split ends the file with its first
 * keep tokens and moves the others, in order, to a new token file tail_path (each
 * through its .tmp: fsynced and renamed); abort drops PATH.tmp.  After split or
 * abort the stream is closed, whatever they return. */
typedef struct {
    fs_atomic file;
    uint32_t width, vocab_size;
    uint64_t count;
} shard_stream;

int shard_stream_begin(shard_stream *s, const char *path, uint32_t vocab_size, char *err,
                       size_t errlen);
int shard_stream_append(shard_stream *s, const uint32_t *tokens, size_t n, char *err,
                        size_t errlen);
int shard_stream_split(shard_stream *s, uint64_t keep, const char *tail_path, char *err,
                       size_t errlen);
void shard_stream_abort(shard_stream *s);

static inline uint32_t shard_token(const token_shard *s, uint64_t i)
{
    if (s->width == 2)
        return ((const uint16_t *)(const void *)s->data)[i];
    return ((const uint32_t *)(const void *)s->data)[i];
}

#endif
