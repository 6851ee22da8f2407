/* corpus: the text files build/prep reads, handed out in chunks of about a given
 * size, each cut where a tokenizer may cut the text (tokenizer_cut), so that they
 * encode one by one (and on several threads) to the ids of the whole text while
 * memory stays bounded whatever the corpus's size.
 *
 * The files are read in order.  per_file (a tokenizer with an end-of-text token,
 * which prep puts between files): each file is a text of its own and gives at least
 * one chunk (an empty one for an empty file); otherwise the text is the files'
 * concatenation.  A file whose size or time of last change moves while it is read,
 * or since it was listed (prep reads the text twice for bpe: the text counted must
 * be the one encoded), is refused, and so is a text with no place to cut within
 * max bytes.
 */
#ifndef IO_CORPUS_H
#define IO_CORPUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "io/tokenizer.h"

/* A chunk's buffer is reused by the next corpus_next given the same chunk (start
 * with a zeroed one; free text once done). */
typedef struct {
    uint8_t *text;      /* malloc'd, cap bytes */
    size_t n, cap;
    bool starts_file;   /* per_file: the first chunk of file */
    size_t file;        /* the file it starts in */
} corpus_chunk;

typedef struct {
    char *const *paths;
    const struct stat *listed;   /* each file's when it was listed, or NULL */
    size_t nfiles;
    const tokenizer *cut;
    bool per_file;
    size_t chunk, max;
    size_t next;          /* the file to open next */
    size_t file;          /* the one open, or read last */
    int fd;               /* -1: none open */
    struct stat opened;   /* the open file's, when it was opened */
    uint64_t done;        /* bytes read from it */
    bool fresh;           /* per_file: the open file has given no chunk yet */
    bool at_end;          /* the text (the file, or all of them) ends at len */
    uint8_t *buf;         /* read, not handed out yet */
    size_t len, cap;
} corpus_reader;

/* Reads nothing yet; paths and listed (NULL: none) must outlive r.  chunk >= 1,
 * max >= chunk. */
void corpus_open(corpus_reader *r, char *const *paths, const struct stat *listed, size_t nfiles,
                 const tokenizer *cut, bool per_file, size_t chunk, size_t max);
/* The next chunk in *c: 1, 0 once every file has been handed out, or -1 with a
 * one-line reason naming the file in err. */
int corpus_next(corpus_reader *r, corpus_chunk *c, char *err, size_t errlen);
void corpus_close(corpus_reader *r);

#endif
