/* tokenizer: byte-level (vocab 256, token = byte value), byte-level BPE, and GPT-2's.
 *
 * BPE token ids: 0..255 are the bytes; id 256+i is merge i, the concatenation of
 * the two earlier tokens merges[i].  Encoding applies merges in rank order, so
 * decode(encode(x)) == x for every byte string x.  Merges never cross the chunks
 * a pre-split cuts the text into; bpe has two (tokenizer_split_kind): GPT-2's,
 * the one prep trains by default, and the byte classes of files made before it.
 * A token is at most 256 bytes long.
 *
 * gpt2: OpenAI's byte-level BPE with its own vocabulary (id -> bytes), merges (id pairs
 * in rank order) and pre-tokenization pattern, giving the ids OpenAI's and Hugging
 * Face's encoders give.  Input that is not valid UTF-8 is split as those encoders split
 * its decoding (each maximal invalid sequence read as U+FFFD), but the raw bytes are
 * encoded, so decoding stays exact.  <|endoftext|> is its eos.
 *
 * A gpt2 tokenizer also has added tokens (Hugging Face's added_tokens): texts found
 * in the input before the pre-split, each leftmost match and the longest at its
 * position becoming that token, special or not; the text between matches is split
 * and merged as usual.  By default (GPT-2's own files) <|endoftext|> is the one
 * added token, special; added tokens beyond the BPE vocabulary take the ids after it.
 *
 * Saved as JSON:
 *   {"type": "byte", "vocab_size": 256, "merges": []}
 *   {"type": "bpe", "split": "gpt2"|"bytes", "vocab_size": N, "merges": [[a, b], ...]}
 *                                (no "split": "bytes", as files made before it)
 *   {"type": "gpt2", "vocab_size": N, "eos_id": E, "vocab": [token, ...],
 *    "merges": [[a, b], ...], "added": [{"id": I, "special": true|false}, ...]}
 *                                (tokens in GPT-2's byte-to-unicode spelling, by id; an
 *                                 added token's text is its vocab entry; no "added",
 *                                 as files made before it: <|endoftext|> special)
 * Any of them may also hold "chat_template": a string (absent: none).
 *
 * A tokenizer may carry a chat template (Hugging Face's Jinja chat_template) from a
 * Hugging Face folder through tokenizer.json and a checkpoint's /tokenizer to the
 * exports.  It changes no ids: tokenizer_same ignores it.
 */
#ifndef IO_TOKENIZER_H
#define IO_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;

/* bpe's pre-split.  GPT2: GPT-2's pattern exactly as the gpt2 kind applies it
 * (Unicode classes, ill-formed UTF-8 read as U+FFFD, chunks of any length), so
 * llama.cpp and Hugging Face's GPT-2 tokenizers give bpe's ids.  BYTES:
 * tokenizer.c's byte classes (every byte >= 0x80 a letter, chunks cut at 256
 * bytes; TOKENIZER_BPE_SPLIT_REGEX), what every bpe file without a split means. */
typedef enum { TOKENIZER_SPLIT_BYTES, TOKENIZER_SPLIT_GPT2 } tokenizer_split_kind;

/* "bytes" or "gpt2", as files name the split. */
const char *tokenizer_split_name(tokenizer_split_kind split);
/* The split a file names; -1 for a name that is none. */
int tokenizer_split_parse(const char *name, size_t len, tokenizer_split_kind *split);
/* A bpe tokenizer's split (gpt2 for the gpt2 kind, bytes for the byte kind). */
tokenizer_split_kind tokenizer_split(const tokenizer *t);

tokenizer *tokenizer_new_byte(void);
/* Learns vocab_size - 256 merges from the chunks split cuts text into (never a
 * token over 256 bytes); NULL with a reason in err on failure. */
tokenizer *tokenizer_train_bpe(const uint8_t *text, size_t n, int vocab_size,
                               tokenizer_split_kind split, char *err, size_t errlen);
void tokenizer_free(tokenizer *t);
/* tokenizer_train_bpe on a text given in pieces, each cut where tokenizer_cut of a
 * bpe tokenizer of that split cuts (so that the chunks counted are the whole
 * text's): new, add each piece in order, train (once), free.  Only the counts of
 * distinct chunks are kept, not the text.  NULL or -1 with a reason in err. */
typedef struct tokenizer_bpe_counts tokenizer_bpe_counts;
tokenizer_bpe_counts *tokenizer_bpe_counts_new(tokenizer_split_kind split, char *err,
                                               size_t errlen);
int tokenizer_bpe_counts_add(tokenizer_bpe_counts *c, const uint8_t *text, size_t n, char *err,
                             size_t errlen);
tokenizer *tokenizer_bpe_counts_train(tokenizer_bpe_counts *c, int vocab_size, char *err,
                                      size_t errlen);
void tokenizer_bpe_counts_free(tokenizer_bpe_counts *c);
/* Rebuilds a BPE tokenizer from its merges (e.g. stored in a checkpoint): merges[2i],
 * merges[2i+1] make token 256+i.  NULL with a reason in err if they are inconsistent. */
tokenizer *tokenizer_new_bpe(const uint32_t *merges, size_t nmerges, tokenizer_split_kind split,
                             char *err, size_t errlen);
/* The merges in that layout, *n of them (NULL and 0 for the byte tokenizer). */
const uint32_t *tokenizer_merges(const tokenizer *t, size_t *n);

/* GPT-2's tokenizer from its vocabulary (token id's bytes: lens[id] of them, all tokens
 * concatenated in id order in bytes) and merges (merges[2i], merges[2i+1] are the ids of
 * merge i's parts).  It must hold every single byte and <|endoftext|>.  NULL with a
 * reason in err when they do not belong together. */
tokenizer *tokenizer_new_gpt2(const uint8_t *bytes, const uint32_t *lens, size_t vocab,
                              const uint32_t *merges, size_t nmerges, char *err, size_t errlen);
/* One added token of a gpt2 tokenizer. */
typedef struct {
    uint32_t id;
    bool special;
    const uint8_t *content;   /* its text, len bytes; NULL: token id's bytes */
    uint32_t len;
} tokenizer_added;

/* Makes list (n tokens, any order) t's added tokens, in place of the ones it had.
 * An id below the vocabulary size names a token of it (content, when given, must be
 * its bytes); the others are new tokens, the next ids in turn, with non-empty
 * contents no other token has.  -1 with a reason naming the token in err when an id
 * repeats, leaves a gap, or a content repeats (t is then only fit to free). */
int tokenizer_set_added(tokenizer *t, const tokenizer_added *list, size_t n, char *err,
                        size_t errlen);
/* t's added tokens in id order, *n of them (none but for gpt2); content points into t. */
const tokenizer_added *tokenizer_added_tokens(const tokenizer *t, size_t *n);
/* From OpenAI's encoder.json + vocab.bpe or Hugging Face's vocab.json + merges.txt. */
tokenizer *tokenizer_load_gpt2(const char *vocab_path, const char *merges_path, char *err,
                               size_t errlen);
/* From a Hugging Face tokenizer.json (what a fast tokenizer saves) that is GPT-2's
 * byte-level BPE: model.vocab, model.merges as "a b" strings or [a, b] pairs, and
 * added_tokens (tokens with lstrip, rstrip or single_word true are refused).
 * Another model type, pre-tokenizer or a normalizer is refused, with its name. */
tokenizer *tokenizer_load_hf_gpt2(const char *path, char *err, size_t errlen);
/* A Hugging Face folder's: vocab.json and merges.txt with the added tokens of
 * tokenizer_config.json's added_tokens_decoder and added_tokens.json, or without either
 * file tokenizer.json (with its added_tokens).  An added token's text in vocab.json or
 * model.vocab may be itself rather than its spelling, as exports write it.  A folder
 * that lists no added tokens gets GPT-2's (<|endoftext|>, special). */
tokenizer *tokenizer_load_hf_dir(const char *dir, char *err, size_t errlen);
/* Every token's bytes concatenated in id order, their lengths in *lens. */
const uint8_t *tokenizer_vocab(const tokenizer *t, const uint32_t **lens);
/* The end-of-text id, or -1 if the tokenizer has none (byte, bpe). */
int tokenizer_eos(const tokenizer *t);

/* GPT-2's byte-to-unicode spelling of n bytes (vocab.json, merges.txt and GGUF
 * write tokens so): out needs 2n + 1 bytes, gets a NUL; returns its length.
 * tokenizer_unspell_gpt2 is its inverse: the bytes (at most n) in out, or -1
 * when s is not such a spelling. */
size_t tokenizer_spell_gpt2(const uint8_t *bytes, size_t n, char *out);
long tokenizer_unspell_gpt2(const char *s, size_t n, uint8_t *out);

/* The bytes split of bpe as a regular expression in the syntax Oniguruma
 * (Hugging Face's tokenizers), JavaScript and PCRE2 share: on valid UTF-8 its
 * successive matches are the chunks bpe encodes one by one, except where a chunk
 * would reach 256 bytes (a run of one kind of byte, such as CJK text without
 * spaces or a long line of '='), which bpe cuts there and no regex can. */
extern const char TOKENIZER_BPE_SPLIT_REGEX[];

int tokenizer_vocab_size(const tokenizer *t);

/* The longest chat template a tokenizer takes: templates of real models are a few kB. */
enum { TOKENIZER_CHAT_TEMPLATE_MAX = 1 << 20 };
/* Makes s (n bytes; n == 0: none) t's chat template, in place of the one it had: at
 * most TOKENIZER_CHAT_TEMPLATE_MAX bytes of valid UTF-8 without NUL.  0, or -1 with a
 * reason in err (t unchanged). */
int tokenizer_set_chat_template(tokenizer *t, const char *s, size_t n, char *err,
                                size_t errlen);
/* t's chat template (NUL-terminated), or NULL when it has none. */
const char *tokenizer_chat_template(const tokenizer *t);
/* Whether a and b turn every text into the same ids and back: the same kind,
 * split, end-of-text id, merges, bytes of every token and added tokens. */
bool tokenizer_same(const tokenizer *a, const tokenizer *b);
const char *tokenizer_type(const tokenizer *t);   /* "byte", "bpe" or "gpt2" */

/* Writes at most n ids (n always suffices); returns the count, or SIZE_MAX when
 * out of memory (GPT-2's split only: its matcher and word cache are allocated per
 * call). */
size_t tokenizer_encode(const tokenizer *t, const uint8_t *text, size_t n, uint32_t *ids);
/* tokenizer_encode for many texts in turn on one thread: what encoding learns from
 * one (GPT-2's split: its word cache) speeds up the next.  An encoder serves one
 * thread at a time; t must outlive it.  NULL when out of memory. */
typedef struct tokenizer_encoder tokenizer_encoder;
tokenizer_encoder *tokenizer_encoder_new(const tokenizer *t);
size_t tokenizer_encode_with(tokenizer_encoder *e, const uint8_t *text, size_t n, uint32_t *ids);
void tokenizer_encoder_free(tokenizer_encoder *e);
/* Where text[0..n) may be cut without changing its ids, whatever text follows it:
 * encoding text[0..p) and then the rest gives the ids of encoding the whole.  The
 * last such p, or 0 when there is none.  The byte tokenizer cuts anywhere (p = n);
 * the others between a character that is not blank (to the split: GPT-2's
 * counts Unicode's White_Space) and an ASCII blank (tab to carriage return,
 * space), where both splits end a chunk whatever comes next, and never inside
 * the text of an added token (gpt2). */
size_t tokenizer_cut(const tokenizer *t, const uint8_t *text, size_t n);
/* Returns the number of bytes the ids decode to; writes at most cap of them. */
size_t tokenizer_decode(const tokenizer *t, const uint32_t *ids, size_t n, uint8_t *out,
                        size_t cap);

/* 0 on success, -1 with a reason in err.  Save is atomic (temp + rename). */
int tokenizer_save(const tokenizer *t, const char *path, char *err, size_t errlen);
tokenizer *tokenizer_load(const char *path, char *err, size_t errlen);
/* The same from a tokenizer.json already in memory (len bytes, no NUL needed). */
tokenizer *tokenizer_parse(const char *json, size_t len, char *err, size_t errlen);

#endif
