/* tokenizer: byte-level (vocab 256, token = byte value) and byte-level BPE.
 *
 * BPE token ids: 0..255 are the bytes; id 256+i is merge i, the concatenation of
 * the two earlier tokens merges[i].  Encoding applies merges in rank order, so
 * decode(encode(x)) == x for every byte string x.  Saved as JSON:
 *   {"type": "byte"|"bpe", "vocab_size": N, "merges": [[a, b], ...]}
 */
#ifndef IO_TOKENIZER_H
#define IO_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;

tokenizer *tokenizer_new_byte(void);
/* Learns vocab_size - 256 merges from text; NULL with a reason in err on failure. */
tokenizer *tokenizer_train_bpe(const uint8_t *text, size_t n, int vocab_size, char *err,
                               size_t errlen);
void tokenizer_free(tokenizer *t);
/* Rebuilds a BPE tokenizer from its merges (e.g. stored in a checkpoint): merges[2i],
 * merges[2i+1] make token 256+i.  NULL with a reason in err if they are inconsistent. */
tokenizer *tokenizer_new_bpe(const uint32_t *merges, size_t nmerges, char *err, size_t errlen);
/* The merges in that layout, *n of them (NULL and 0 for the byte tokenizer). */
const uint32_t *tokenizer_merges(const tokenizer *t, size_t *n);

int tokenizer_vocab_size(const tokenizer *t);
const char *tokenizer_type(const tokenizer *t);   /* "byte" or "bpe" */

/* Writes at most n ids (n always suffices); returns the count. */
size_t tokenizer_encode(const tokenizer *t, const uint8_t *text, size_t n, uint32_t *ids);
/* Returns the number of bytes the ids decode to; writes at most cap of them. */
size_t tokenizer_decode(const tokenizer *t, const uint32_t *ids, size_t n, uint8_t *out,
                        size_t cap);

/* 0 on success, -1 with a reason in err.  Save is atomic (temp + rename). */
int tokenizer_save(const tokenizer *t, const char *path, char *err, size_t errlen);
tokenizer *tokenizer_load(const char *path, char *err, size_t errlen);

#endif
