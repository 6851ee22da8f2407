/* tokenizer_internal: what the tokenizer's files share (private to them:
 * io/tokenizer.h is the interface).
 *
 *   tokenizer.c        the struct, the byte and BPE tokenizers, the bytes split,
 *                      rank-ordered merging, encode and decode
 *   tokenizer_gpt2.c   GPT-2's tokenizer: its vocabulary, merges, spelling, its
 *                      split (bpe's too) and encoding with it
 *   tokenizer_added.c  gpt2's added tokens: checked, appended, found in a text
 *   tokenizer_train.c  learning BPE merges from a corpus
 *   tokenizer_files.c  tokenizer.json, and GPT-2's vocabulary and merges files
 *   tokenizer_hf_added.c  Hugging Face's added tokens as its files list them
 *   tokenizer_chat.c   the chat template: checked, and read from a Hugging Face folder
 *
 * Every function declared here starts with tok_, so none of these names collides
 * with another module's in libgpt.a.
 */
#ifndef IO_TOKENIZER_INTERNAL_H
#define IO_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <limits.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/tokenizer.h"

enum { BYTE_VOCAB = 256, MAX_VOCAB = 1 << 20, MAX_CHUNK = 256 };

/* Open-addressing map from a token pair to a 32-bit value. */
typedef struct {
    uint64_t *keys;
    uint32_t *vals;
    size_t cap, len;   /* cap is a power of two, kept at least twice len */
} pair_map;

static inline uint64_t pair_key(uint32_t a, uint32_t b)
{
    return (uint64_t)a << 32 | b;
}

/* The pair maps' and caches' slot hash: the first half of MurmurHash3's
 * finaliser.  One multiply spreads a pair key's high word (the left id) into
 * the low bits that pick the slot; io/hash.h's splitmix64_mix takes two, and
 * this lookup is the BPE merge loop's inner step. */
static inline size_t mix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k;
}

/* Sized for expected keys; 0, or -1 when out of memory (tok_map_free it either way). */
int tok_map_init(pair_map *m, size_t expected);
void tok_map_free(pair_map *m);
/* The value of key, or NULL when absent. */
const uint32_t *tok_map_get(const pair_map *m, uint64_t key);
/* Inserts key (which must be absent). */
int tok_map_put(pair_map *m, uint64_t key, uint32_t val);

/* Grows *p (of *cap elements of size elem) to hold at least need elements. */
int tok_grow(void *p, size_t *cap, size_t need, size_t elem);

/* End of the chunk of the bytes split starting at s[i]; never more than MAX_CHUNK
 * bytes. */
size_t tok_chunk_end(const uint8_t *s, size_t n, size_t i);

/* Takes the chunks of a split one by one: 0, or -1 to stop (out of memory). */
typedef int (*tok_chunk_fn)(void *ctx, const uint8_t *s, size_t n);
/* Cuts text with GPT-2's pattern re (tok_gpt2_pattern) as the gpt2 kind does, and
 * hands fn each chunk's bytes in order.  Text that is not valid UTF-8 is cut as
 * its decoding with each maximal ill-formed sequence read as U+FFFD.  0, or -1
 * when out of memory, PCRE2 fails or fn does. */
int tok_split_gpt2(const pcre2_code *re, const uint8_t *text, size_t n, tok_chunk_fn fn,
                   void *ctx);

enum { KIND_BYTE, KIND_BPE, KIND_GPT2 };

struct tokenizer {
    int kind;
    tokenizer_split_kind split;   /* GPT2 for gpt2; BYTES (unused) for byte */
    int eos;              /* -1: none */
    uint32_t vocab;       /* ids 0..vocab-1 */
    uint32_t nmerges;
    uint32_t *merges;     /* merges[2i], merges[2i+1] make token merge_out[i] */
    uint32_t *merge_out;  /* 256+i for bpe */
    uint32_t byte_id[BYTE_VOCAB];   /* the token of each single byte */
    pair_map ranks;       /* (a, b) -> i */
    uint32_t *tok_off;    /* bytes of token id: pool[tok_off[id] .. + tok_len[id]] */
    uint32_t *tok_len;
    uint8_t *pool;
    uint32_t *by_bytes;   /* gpt2: open-addressing table of ids keyed by their bytes */
    size_t by_bytes_cap;
    pcre2_code *re;       /* split GPT2: the pre-tokenization pattern */
    tokenizer_added *added;   /* gpt2: by id, content in pool */
    uint32_t nadded;
    /* added[order[first[b]] .. order[first[b + 1] - 1]] begin with byte b, longest first */
    uint32_t *added_order;
    uint32_t added_first[BYTE_VOCAB + 1];
    uint32_t added_longest;   /* bytes of the longest added token's text */
    char *chat_template;  /* NULL: none */
};

/* Puts "tokenizer: out of memory" in err; returns -1. */
int tok_fail_oom(char *err, size_t errlen);
/* A byte (no merges) or bpe tokenizer: merges checked, token bytes laid out for
 * decoding.  NULL with a reason in err. */
tokenizer *tok_create(int kind, const uint32_t *merges, size_t nmerges, char *err,
                      size_t errlen);

/* Work space for a chunk of n bytes: symbols, their links, and a heap of 3n
 * (n-1 initial pairs + 2 per merge). */
typedef struct {
    uint32_t *sym, *next, *prev;
    uint64_t *heap;
} chunk_scratch;

/* Applies merges in rank order to one chunk, kept as a linked list of symbols.  With
 * merges that only use tokens made by earlier ones (checked when the tokenizer is
 * built), this gives what GPT-2's "merge every occurrence of the best pair, repeat"
 * gives. */
size_t tok_encode_chunk(const tokenizer *t, const uint8_t *s, uint32_t n, uint32_t *ids,
                        chunk_scratch w);
/* A chunk of at most MAX_CHUNK bytes, with work space on the stack. */
size_t tok_encode_short(const tokenizer *t, const uint8_t *s, uint32_t n, uint32_t *ids);

/* -------------------------------------------------------------------- gpt2 */

static const char GPT2_EOS[] = "<|endoftext|>";
enum { NO_ID = -1 };

/* tokenizer_encode for GPT-2's split (gpt2, and bpe with that split). */
size_t tok_encode_gpt2(const tokenizer *t, const uint8_t *text, size_t n, uint32_t *ids);
/* The id of the token with these bytes, or NO_ID. */
long tok_gpt2_token_id(const tokenizer *t, const uint8_t *s, size_t n);
/* The vocabulary part of a gpt2 tokenizer: token bytes, the bytes -> id table, each
 * byte's token, the eos and it as the one added token, special. */
tokenizer *tok_gpt2_alloc(const uint8_t *bytes, const uint32_t *lens, size_t vocab,
                          char *err, size_t errlen);
/* Merges as id pairs: each must join two tokens made before it (bytes, or earlier
 * merges) into a token of the vocabulary, and be new.  0, or -1 with a reason in err. */
int tok_gpt2_set_merges(tokenizer *t, const uint32_t *merges, size_t nmerges, char *err,
                        size_t errlen);
/* Appends m tokens (their bytes concatenated, lens[i] each) as ids vocab.. on; each
 * must be non-empty and new.  0, or -1 with a reason (t is then only fit to free). */
int tok_gpt2_append(tokenizer *t, const uint8_t *bytes, const uint32_t *lens, size_t m,
                    char *err, size_t errlen);
/* Where the first added token in s[from..n) starts (n if none); its index in t->added
 * in *k: the longest of those starting there. */
size_t tok_added_next(const tokenizer *t, const uint8_t *s, size_t n, size_t from, uint32_t *k);
/* Whether an added token's text could cover both s[p-1] and s[p] (0 < p < n): one
 * does, or one that starts before p matches up to n and needs bytes past it to tell. */
bool tok_added_spans(const tokenizer *t, const uint8_t *s, size_t n, size_t p);
/* Whether s[0..p) ends with one of the blanks of GPT-2's pattern beyond ASCII
 * (Unicode's White_Space: U+0085, U+00A0, U+3000...), whole and well-formed. */
bool tok_gpt2_ends_wide_blank(const uint8_t *s, size_t p);
/* GPT-2's pre-tokenization pattern, compiled; NULL with PCRE2's reason in err. */
pcre2_code *tok_gpt2_pattern(char *err, size_t errlen);

/* ------------------------------------------------ Hugging Face's added tokens */

struct cJSON;

/* Added tokens as a file lists them; their texts point into the JSON they came from. */
typedef struct {
    tokenizer_added *a;
    size_t n, cap;
} tok_added_list;

void tok_added_list_free(tok_added_list *l);
/* The JSON file at path (a Hugging Face folder's), or NULL with a reason naming it. */
struct cJSON *tok_read_json(const char *path, char *err, size_t errlen);
/* A Hugging Face folder's tokenizer_config.json, which two readers need (the
 * slow tokenizer's added tokens, the chat template): read and parsed once, by
 * tok_hf_config_root at the first call, and freed by the folder's reader. */
typedef struct {
    const char *dir;
    char path[PATH_MAX + 32];   /* DIR/tokenizer_config.json */
    struct cJSON *root;         /* NULL: not read yet, or the folder has none */
    bool read;
} tok_hf_config;
/* The parsed file in *root (NULL: the folder has none).  0, or -1 with a
 * reason naming the file in err (the folder's reading then stops). */
int tok_hf_config_root(tok_hf_config *c, const struct cJSON **root, char *err, size_t errlen);
/* Appends the tokens of tokenizer.json's "added_tokens" array, of tokenizer_config.json's
 * "added_tokens_decoder" object (id -> fields), or of added_tokens.json (text -> id; the
 * ones the decoder, read first, did not give, not special).  A token with lstrip, rstrip
 * or single_word true is refused.  0, or -1 with a reason naming the token in err. */
int tok_hf_added_tokens(const struct cJSON *arr, tok_added_list *l, char *err, size_t errlen);
int tok_hf_added_decoder(const struct cJSON *obj, tok_added_list *l, char *err, size_t errlen);
int tok_hf_added_json(const struct cJSON *obj, tok_added_list *l, char *err, size_t errlen);
/* Sorts by id, for tok_added_list_find: the entry with id, or NULL. */
void tok_added_list_sort(tok_added_list *l);
const tokenizer_added *tok_added_list_find(const tok_added_list *l, uint32_t id);

/* ------------------------------------------------------------ chat template */

/* A Hugging Face folder's chat template made t's: DIR/chat_template.jinja, else
 * tokenizer_config.json's "chat_template" (read through config) as a string or
 * as a list of {"name", "template"} holding "default" and no other; a folder
 * additional_chat_templates is refused.  None found leaves t without one.  0,
 * or -1 with a reason naming the file in err. */
int tok_hf_chat_template(tokenizer *t, tok_hf_config *config, char *err, size_t errlen);

#endif
