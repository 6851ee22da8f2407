/* corpus: text files in chunks cut where a tokenizer may cut (io/corpus.h). */
#include "io/corpus.h"

#include "io/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { READ_MAX = 1 << 20 };   /* bytes per read */

void corpus_open(corpus_reader *r, char *const *paths, const struct stat *listed, size_t nfiles,
                 const tokenizer *cut, bool per_file, size_t chunk, size_t max)
{
    *r = (corpus_reader){.paths = paths, .listed = listed, .nfiles = nfiles, .cut = cut,
                         .per_file = per_file, .chunk = chunk, .max = max, .fd = -1};
}

void corpus_close(corpus_reader *r)
{
    if (r->fd >= 0)
        close(r->fd);
    free(r->buf);
    r->fd = -1;
    r->buf = NULL;
}

static bool same_time(const struct stat *a, const struct stat *b)
{
    return a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Whether the open file's size, as opened, is the length of its text: a
 * regular file's is, but for those of /proc and /sys, which say 0 and hold text. */
static bool sized(const corpus_reader *r)
{
    return S_ISREG(r->opened.st_mode) && r->opened.st_size > 0;
}

static int open_next(corpus_reader *r, char *err, size_t errlen)
{
    const char *path = r->paths[r->next];
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0 || fstat(r->fd, &r->opened) != 0)
        return fs_fail(err, errlen, "%s: cannot read: %s", path, strerror(errno));
    const struct stat *was = r->listed ? &r->listed[r->next] : NULL;
    if (was && S_ISREG(was->st_mode) &&
        (r->opened.st_ino != was->st_ino || r->opened.st_dev != was->st_dev ||
         r->opened.st_size != was->st_size || !same_time(&r->opened, was)))
        return fs_fail(err, errlen, "%s: changed while being read (not the file, or not the "
                       "size or time of last change, prep listed): nothing was written", path);
    r->file = r->next++;
    r->done = 0;
    r->fresh = r->per_file;
    return 0;
}

/* The open file has ended: it must be as it was when opened (a regular file's
 * size and time of last change), or the text read is not the file's. */
static int close_ended(corpus_reader *r, char *err, size_t errlen)
{
    struct stat now;
    int ok = fstat(r->fd, &now) == 0;
    close(r->fd);
    r->fd = -1;
    if (!S_ISREG(r->opened.st_mode))
        return 0;
    if (!ok || (sized(r) && (uint64_t)r->opened.st_size != r->done) ||
        now.st_size != r->opened.st_size || !same_time(&now, &r->opened))
        return fs_fail(err, errlen, "%s: changed while being read (%lld bytes when opened, "
                       "%llu read, %lld now): nothing was written", r->paths[r->file],
                       (long long)r->opened.st_size, (unsigned long long)r->done,
                       ok ? (long long)now.st_size : -1LL);
    return 0;
}

/* One read into the buffer (at most want - len bytes), opening and closing files
 * as the text needs. */
static int read_some(corpus_reader *r, size_t want, char *err, size_t errlen)
{
    if (r->fd < 0) {
        if (r->next == r->nfiles) {
            r->at_end = true;
            return 0;
        }
        return open_next(r, err, errlen);
    }
    /* the buffer grows with what is read, not to want at once: a huge chunk
     * size (the tests' one chunk per file) costs only the text there is */
    size_t room = want - r->len < READ_MAX ? want - r->len : READ_MAX;
    if (r->len + room > r->cap) {
        size_t cap = 2 * r->cap > r->len + room ? 2 * r->cap : r->len + room;
        uint8_t *b = realloc(r->buf, cap);
        if (!b)
            return fs_fail(err, errlen, "%s: out of memory for a chunk of %zu bytes",
                           r->paths[r->file], cap);
        r->buf = b;
        r->cap = cap;
    }
    ssize_t got;
    do
        got = read(r->fd, r->buf + r->len, room);
    while (got < 0 && errno == EINTR);
    if (got < 0)
        return fs_fail(err, errlen, "%s: cannot read: %s", r->paths[r->file], strerror(errno));
    if (got == 0) {
        r->at_end = r->per_file;
        return close_ended(r, err, errlen);
    }
    r->len += (size_t)got;
    r->done += (uint64_t)got;
    if (sized(r) && r->done > (uint64_t)r->opened.st_size)
        return fs_fail(err, errlen, "%s: changed while being read (grew past its %lld bytes): "
                       "nothing was written", r->paths[r->file], (long long)r->opened.st_size);
    return 0;
}

/* Hands out the first n bytes of the buffer, in c's buffer (grown as needed: kept
 * from chunk to chunk, so that pages are not mapped and faulted in again for each). */
static int take(corpus_reader *r, size_t n, corpus_chunk *c, char *err, size_t errlen)
{
    if (n + 1 > c->cap) {
        uint8_t *text = realloc(c->text, n + 1);
        if (!text)
            return fs_fail(err, errlen, "%s: out of memory", r->paths[r->file]);
        c->text = text;
        c->cap = n + 1;
    }
    memcpy(c->text, r->buf, n);
    memmove(r->buf, r->buf + n, r->len - n);
    r->len -= n;
    /* a buffer an outsize chunk grew (a long text with no place to cut) is
     * given back, not kept for the rest of the run */
    uint8_t *smaller;
    if (r->cap > 4 * r->chunk && r->len <= r->chunk && (smaller = realloc(r->buf, 2 * r->chunk))) {
        r->buf = smaller;
        r->cap = 2 * r->chunk;
    }
    c->n = n;
    c->starts_file = r->fresh;
    c->file = r->file;
    r->fresh = false;
    if (r->per_file && r->at_end && r->len == 0)
        r->at_end = false;   /* the next chunk is the next file's */
    return 1;
}

int corpus_next(corpus_reader *r, corpus_chunk *c, char *err, size_t errlen)
{
    for (size_t want = r->chunk;;) {
        while (r->len < want && !r->at_end)
            if (read_some(r, want, err, errlen) != 0)
                return -1;
        if (r->at_end && r->len == 0 && !r->fresh) {
            if (!r->per_file || r->next == r->nfiles)
                return 0;
            r->at_end = false;
            continue;
        }
        size_t cut = r->at_end ? r->len : tokenizer_cut(r->cut, r->buf, r->len);
        if (cut > 0 || r->at_end)
            return take(r, cut, c, err, errlen);
        if (r->len >= r->max)
            return fs_fail(err, errlen, "%s: no place to cut the text within %zu bytes (a "
                           "run without an ASCII blank after a character that is not blank): "
                           "nothing was written", r->paths[r->file], r->max);
        want = r->len * 2 < r->max ? r->len * 2 : r->max;
    }
}
