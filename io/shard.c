#include "io/shard.h"

#include "io/fsutil.h"
#include "io/le.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tokens are stored and read (shard_token) in host order, which the format fixes as little-endian. */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the token file format assumes a little-endian host"
#endif

enum { HEADER_BYTES = 32, SHARD_VERSION = 1 };
static const char MAGIC[8] = "GPTTOKS";   /* 7 letters + the terminating NUL */

/* Checks a header against the file size; fills s on success. */
static int parse_header(token_shard *s, const uint8_t *h, uint64_t size, const char *path,
                        char *err, size_t errlen)
{
    if (memcmp(h, MAGIC, sizeof MAGIC) != 0) {
        snprintf(err, errlen, "%s: not a token file (bad magic)", path);
        return -1;
    }
    uint32_t version = le_get_u32(h + 8), width = le_get_u32(h + 12);
    uint64_t count = le_get_u64(h + 16);
    uint32_t vocab = le_get_u32(h + 24);
    if (version != SHARD_VERSION) {
        snprintf(err, errlen, "%s: unsupported token file version %" PRIu32 " (expected %d)",
                 path, version, SHARD_VERSION);
        return -1;
    }
    if (width != 2 && width != 4) {
        snprintf(err, errlen, "%s: corrupt token file (token width %" PRIu32 ", expected 2 or 4)",
                 path, width);
        return -1;
    }
    if (vocab == 0 || (width == 2 && vocab > 65536)) {
        snprintf(err, errlen, "%s: corrupt token file (vocabulary size %" PRIu32
                 " with %" PRIu32 "-byte tokens)", path, vocab, width);
        return -1;
    }
    if (count > (UINT64_MAX - HEADER_BYTES) / width) {
        snprintf(err, errlen, "%s: corrupt token file (token count %" PRIu64 ")", path, count);
        return -1;
    }
    uint64_t expected = HEADER_BYTES + count * width;
    if (expected != size) {
        snprintf(err, errlen, "%s: %s token file (expected %" PRIu64 " bytes, found %" PRIu64 ")",
                 path, expected < size ? "trailing data in" : "truncated", expected, size);
        return -1;
    }
    s->count = count;
    s->width = width;
    s->vocab_size = vocab;
    return 0;
}

int shard_parse(token_shard *s, const void *buf, size_t len, const char *name, char *err,
                size_t errlen)
{
    memset(s, 0, sizeof *s);
    if (len < HEADER_BYTES) {
        snprintf(err, errlen, "%s: truncated token file (expected at least %d bytes, found %zu)",
                 name, HEADER_BYTES, len);
        return -1;
    }
    if (parse_header(s, buf, len, name, err, errlen) != 0)
        return -1;
    s->data = (const uint8_t *)buf + HEADER_BYTES;
    return 0;
}

static int64_t mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

int shard_open(token_shard *s, const char *path, char *err, size_t errlen)
{
    const void *map;
    size_t len;
    int fd;
    struct stat st;
    /* an empty file is not mapped: shard_parse refuses it unread */
    if (fs_map_file_fd(path, &map, &len, &fd, err, errlen) != 0) {
        memset(s, 0, sizeof *s);
        return -1;
    }
    int rc = shard_parse(s, map, len, path, err, errlen);
    char *name = rc == 0 ? strdup(path) : NULL;
    if (rc == 0 && (!name || fstat(fd, &st) != 0)) {
        snprintf(err, errlen, "%s: %s", path, name ? strerror(errno) : "out of memory");
        rc = -1;
    }
    if (rc != 0) {
        fs_unmap_file(map, len);
        close(fd);
        free(name);
        memset(s, 0, sizeof *s);
        return -1;
    }
    s->map = map;
    s->map_len = len;
    s->fd = fd;
    s->mtime_ns = mtime_ns(&st);
    s->path = name;
    return 0;
}

void shard_close(token_shard *s)
{
    if (s->map) {
        close(s->fd);
        free(s->path);
    }
    fs_unmap_file(s->map, s->map_len);
    memset(s, 0, sizeof *s);
}

int shard_check_unchanged(const token_shard *s, char *err, size_t errlen)
{
    struct stat st;
    if (!s->map)
        return 0;
    if (fstat(s->fd, &st) != 0) {
        snprintf(err, errlen, "%s: cannot stat: %s", s->path, strerror(errno));
        return -1;
    }
    if ((uint64_t)st.st_size == s->map_len && mtime_ns(&st) == s->mtime_ns)
        return 0;
    snprintf(err, errlen, "%s was %s while the run read it: its tokens are no longer those "
             "checked (replace a dataset with build/prep, which swaps the directory whole)",
             s->path, (uint64_t)st.st_size != s->map_len ? "resized" : "rewritten in place");
    return -1;
}

/* Narrows to the file's width in blocks so a 2-byte shard never needs a full copy. */
static int write_tokens(fs_atomic *a, const uint32_t *tokens, uint64_t count, uint32_t width,
                        char *err, size_t errlen)
{
    if (width == 4)
        return fs_atomic_write(a, tokens, count * sizeof *tokens, err, errlen);
    uint16_t buf[8192];
    for (uint64_t i = 0; i < count; i += 8192) {
        size_t n = count - i < 8192 ? (size_t)(count - i) : 8192;
        for (size_t j = 0; j < n; j++)
            buf[j] = (uint16_t)tokens[i + j];
        if (fs_atomic_write(a, buf, n * sizeof *buf, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* Checks tokens[0..count) against vocab_size; path names the file in err. */
static int check_tokens(const char *path, const uint32_t *tokens, uint64_t count,
                        uint32_t vocab_size, uint64_t first, char *err, size_t errlen)
{
    for (uint64_t i = 0; i < count; i++)
        if (tokens[i] >= vocab_size) {
            snprintf(err, errlen, "%s: token %" PRIu32 " at index %" PRIu64
                     " is outside the vocabulary (%" PRIu32 ")", path, tokens[i], first + i,
                     vocab_size);
            return -1;
        }
    return 0;
}

static uint32_t width_for(uint32_t vocab_size)
{
    return vocab_size <= 65536 ? 2 : 4;
}

static void fill_header(uint8_t h[HEADER_BYTES], uint64_t count, uint32_t vocab_size)
{
    memset(h, 0, HEADER_BYTES);
    memcpy(h, MAGIC, sizeof MAGIC);
    le_put_u32(h + 8, SHARD_VERSION);
    le_put_u32(h + 12, width_for(vocab_size));
    le_put_u64(h + 16, count);
    le_put_u32(h + 24, vocab_size);
}

int shard_write(const char *path, const uint32_t *tokens, uint64_t count, uint32_t vocab_size,
                char *err, size_t errlen)
{
    if (vocab_size == 0) {
        snprintf(err, errlen, "%s: vocabulary size must be positive", path);
        return -1;
    }
    if (check_tokens(path, tokens, count, vocab_size, 0, err, errlen) != 0)
        return -1;
    uint8_t h[HEADER_BYTES];
    fill_header(h, count, vocab_size);
    fs_atomic a;
    if (fs_atomic_begin(&a, path, err, errlen) != 0)
        return -1;
    if (fs_atomic_write(&a, h, sizeof h, err, errlen) != 0 ||
        write_tokens(&a, tokens, count, width_for(vocab_size), err, errlen) != 0) {
        fs_atomic_abort(&a);
        return -1;
    }
    return fs_atomic_commit(&a, err, errlen);
}

int shard_stream_begin(shard_stream *s, const char *path, uint32_t vocab_size, char *err,
                       size_t errlen)
{
    if (vocab_size == 0) {
        snprintf(err, errlen, "%s: vocabulary size must be positive", path);
        return -1;
    }
    *s = (shard_stream){.width = width_for(vocab_size), .vocab_size = vocab_size};
    uint8_t h[HEADER_BYTES];
    fill_header(h, 0, vocab_size);
    if (fs_atomic_begin(&s->file, path, err, errlen) != 0)
        return -1;
    if (fs_atomic_write(&s->file, h, sizeof h, err, errlen) != 0) {
        fs_atomic_abort(&s->file);
        return -1;
    }
    return 0;
}

int shard_stream_append(shard_stream *s, const uint32_t *tokens, size_t n, char *err,
                        size_t errlen)
{
    if (check_tokens(s->file.path, tokens, n, s->vocab_size, s->count, err, errlen) != 0 ||
        write_tokens(&s->file, tokens, n, s->width, err, errlen) != 0)
        return -1;
    s->count += n;
    return 0;
}

void shard_stream_abort(shard_stream *s)
{
    fs_atomic_abort(&s->file);
}

/* Copies bytes [from, from + n) of the file fd reads to out. */
static int copy_range(int fd, uint64_t from, uint64_t n, fs_atomic *out, const char *name,
                      char *err, size_t errlen)
{
    enum { BLOCK = 1 << 20 };
    uint8_t *buf = malloc(BLOCK);
    if (!buf)
        return fs_fail(err, errlen, "%s: out of memory", name);
    int rc = 0;
    while (rc == 0 && n > 0) {
        ssize_t got = pread(fd, buf, n < BLOCK ? (size_t)n : BLOCK, (off_t)from);
        if (got <= 0 && !(got < 0 && errno == EINTR))
            rc = fs_fail(err, errlen, "%s: cannot read back: %s", name,
                         got < 0 ? strerror(errno) : "file ends early");
        else if (got > 0) {
            rc = fs_atomic_write(out, buf, (size_t)got, err, errlen);
            from += (uint64_t)got;
            n -= (uint64_t)got;
        }
    }
    free(buf);
    return rc;
}

/* The last count - keep tokens to tail_path; then the head ends at keep tokens. */
int shard_stream_split(shard_stream *s, uint64_t keep, const char *tail_path, char *err,
                       size_t errlen)
{
    uint64_t tail = s->count - keep;
    off_t keep_bytes = (off_t)(HEADER_BYTES + keep * s->width);
    uint8_t h[HEADER_BYTES];
    fill_header(h, tail, s->vocab_size);
    fs_atomic t;
    int fd = open(s->file.tmp, O_RDONLY | O_CLOEXEC);   /* the stream's own is write-only */
    int rc = fd < 0 ? fs_fail(err, errlen, "%s: cannot reopen: %s", s->file.tmp, strerror(errno))
                    : fs_atomic_begin(&t, tail_path, err, errlen);
    if (rc == 0) {
        if (fs_atomic_write(&t, h, sizeof h, err, errlen) != 0 ||
            copy_range(fd, (uint64_t)keep_bytes, tail * s->width, &t, s->file.tmp, err,
                       errlen) != 0) {
            fs_atomic_abort(&t);
            rc = -1;
        } else {
            rc = fs_atomic_commit(&t, err, errlen);
        }
    }
    if (fd >= 0)
        close(fd);
    fill_header(h, keep, s->vocab_size);
    if (rc == 0 && (ftruncate(s->file.fd, keep_bytes) != 0 ||
                    pwrite(s->file.fd, h, sizeof h, 0) != (ssize_t)sizeof h))
        rc = fs_fail(err, errlen, "%s: cannot end it: %s", s->file.tmp, strerror(errno));
    if (rc != 0) {
        fs_atomic_abort(&s->file);
        return -1;
    }
    return fs_atomic_commit(&s->file, err, errlen);
}
