#include "io/tokenizer_h5.h"

#include "io/h5attr.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_ELEMS = 1 << 26 };   /* far above GPT-2's 50k merges and ~300 kB of vocab */

static int write_dataset(hid_t g, const char *name, hid_t ftype, hid_t mtype, int rank,
                         hsize_t rows, const void *data)
{
    hsize_t dims[2] = {rows, 2};
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = sp < 0 ? -1 : H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = d < 0 || H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0 ? -1 : 0;
    if (d >= 0)
        H5Dclose(d);
    if (sp >= 0)
        H5Sclose(sp);
    return rc;
}

/* gpt2's added tokens as (id, special) pairs. */
static int write_added(hid_t g, const tokenizer *t)
{
    size_t n;
    const tokenizer_added *a = tokenizer_added_tokens(t, &n);
    uint32_t *pairs = malloc((2 * n + 1) * sizeof *pairs);
    if (!pairs)
        return -1;
    for (size_t i = 0; i < n; i++) {
        pairs[2 * i] = a[i].id;
        pairs[2 * i + 1] = a[i].special;
    }
    int rc = write_dataset(g, "added", H5T_STD_I32LE, H5T_NATIVE_UINT32, 2, n, pairs);
    free(pairs);
    return rc;
}

int tokenizer_h5_write(hid_t g, const tokenizer *t)
{
    int rc = h5_attr_str(g, "type", tokenizer_type(t)) |
             h5_attr_i64(g, "vocab_size", tokenizer_vocab_size(t));
    if (strcmp(tokenizer_type(t), "bpe") == 0)
        rc |= h5_attr_str(g, "split", tokenizer_split_name(tokenizer_split(t)));
    size_t n = 0;
    const uint32_t *merges = tokenizer_merges(t, &n);
    /* an empty list too: a reader cannot tell a missing one from a lost one */
    if (rc == 0 && merges)
        rc = write_dataset(g, "merges", H5T_STD_I32LE, H5T_NATIVE_UINT32, 2, n, merges);
    if (rc == 0 && tokenizer_eos(t) >= 0) {
        const uint32_t *lens;
        const uint8_t *bytes = tokenizer_vocab(t, &lens);
        size_t vocab = (size_t)tokenizer_vocab_size(t), total = 0;
        for (size_t id = 0; id < vocab; id++)
            total += lens[id];
        rc = h5_attr_i64(g, "eos_id", tokenizer_eos(t)) |
             write_dataset(g, "vocab", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, total, bytes) |
             write_dataset(g, "vocab_lengths", H5T_STD_I32LE, H5T_NATIVE_UINT32, 1, vocab, lens) |
             write_added(g, t);
    }
    const char *chat = tokenizer_chat_template(t);
    if (rc == 0 && chat)
        rc = write_dataset(g, "chat_template", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, strlen(chat),
                           chat);
    return rc;
}

/* Dataset name of rank 1 (n elements) or 2 (n pairs) into a new buffer of memory type
 * mtype, elem bytes each; NULL if it is missing, misshapen, over max rows or unreadable. */
static void *read_dataset(hid_t g, const char *name, int rank, hid_t mtype, size_t elem,
                          size_t max, size_t *n)
{
    hid_t d = H5Lexists(g, name, H5P_DEFAULT) > 0 ? H5Dopen2(g, name, H5P_DEFAULT) : -1;
    hid_t sp = d < 0 ? -1 : H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    int ok = sp >= 0 && H5Sget_simple_extent_ndims(sp) == rank &&
             H5Sget_simple_extent_dims(sp, dims, NULL) == rank && (rank == 1 || dims[1] == 2) &&
             dims[0] <= max;
    void *buf = ok ? malloc((size_t)dims[0] * (size_t)rank * elem + 1) : NULL;
    if (buf && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        free(buf);
        buf = NULL;
    }
    if (sp >= 0)
        H5Sclose(sp);
    if (d >= 0)
        H5Dclose(d);
    *n = (size_t)dims[0];
    return buf;
}

/* The merges as pairs, *n of them.  Files written before empty lists were
 * stored have no dataset for a bpe tokenizer without merges: for bpe
 * (missing_ok), none is no merges, as its vocab_size (256 + merges) tells a
 * lost list apart.  A gpt2 tokenizer's vocabulary says nothing of its
 * merges, so a missing list stays an error there. */
static uint32_t *read_merges(hid_t g, bool missing_ok, size_t *n)
{
    if (missing_ok && H5Lexists(g, "merges", H5P_DEFAULT) == 0) {
        *n = 0;
        return calloc(2, sizeof(uint32_t));
    }
    return read_dataset(g, "merges", 2, H5T_NATIVE_UINT32, 4, MAX_ELEMS, n);
}

/* gpt2's added tokens, when the group has them: without, files written before
 * them, the eos alone is added, special.  0, or -1 with a reason in err. */
static int read_added(hid_t g, tokenizer *t, char *err, size_t errlen)
{
    if (H5Lexists(g, "added", H5P_DEFAULT) == 0)
        return 0;
    size_t n;
    char why[200];
    uint32_t *pairs = read_dataset(g, "added", 2, H5T_NATIVE_UINT32, 4, MAX_ELEMS, &n);
    tokenizer_added *a = pairs ? calloc(n + 1, sizeof *a) : NULL;
    int rc = a ? 0 : -1;
    for (size_t i = 0; a && i < n; i++) {
        a[i] = (tokenizer_added){.id = pairs[2 * i], .special = pairs[2 * i + 1] != 0};
        if (a[i].id >= (uint32_t)tokenizer_vocab_size(t) || pairs[2 * i + 1] > 1)
            rc = -1;
    }
    if (rc != 0)
        snprintf(err, errlen, "/tokenizer/added is unreadable or not (token id, 0 or 1) pairs");
    else if ((rc = tokenizer_set_added(t, a, n, why, sizeof why)) != 0)
        snprintf(err, errlen, "/tokenizer/added: %s", why);
    free(pairs);
    free(a);
    return rc;
}

static tokenizer *read_gpt2(hid_t g, const uint32_t *merges, size_t nmerges, char *err,
                            size_t errlen)
{
    size_t total, vocab;
    long long eos, size;
    char why[200];
    uint8_t *bytes = read_dataset(g, "vocab", 1, H5T_NATIVE_UINT8, 1, MAX_ELEMS, &total);
    uint32_t *lens = read_dataset(g, "vocab_lengths", 1, H5T_NATIVE_UINT32, 4, MAX_ELEMS, &vocab);
    size_t sum = 0;
    for (size_t id = 0; lens && id < vocab; id++)
        sum += lens[id];
    tokenizer *t = NULL;
    if (!bytes || !lens || sum != total)
        snprintf(err, errlen, "/tokenizer/vocab and vocab_lengths are missing or disagree");
    else if (h5_attr_read_i64(g, "eos_id", &eos) != 0 ||
             h5_attr_read_i64(g, "vocab_size", &size) != 0 || size != (long long)vocab)
        snprintf(err, errlen, "/tokenizer eos_id or vocab_size is missing or wrong");
    else if (!(t = tokenizer_new_gpt2(bytes, lens, vocab, merges, nmerges, why, sizeof why)))
        snprintf(err, errlen, "/tokenizer: %s", why);
    else if (tokenizer_eos(t) != eos)
        snprintf(err, errlen, "/tokenizer eos_id %lld is not <|endoftext|>", eos);
    if (t && (tokenizer_eos(t) != eos || read_added(g, t, err, errlen) != 0)) {
        tokenizer_free(t);
        t = NULL;
    }
    free(bytes);
    free(lens);
    return t;
}

/* bpe's split: no attribute in files written before GPT-2's split, which mean
 * the bytes one.  0, or -1 with a reason in err. */
static int read_split(hid_t g, tokenizer_split_kind *split, char *err, size_t errlen)
{
    char name[32];
    *split = TOKENIZER_SPLIT_BYTES;
    if (H5Aexists(g, "split") == 0)
        return 0;
    if (h5_attr_read_str(g, "split", name, sizeof name) != 0)
        snprintf(err, errlen, "/tokenizer split is not a readable string");
    else if (tokenizer_split_parse(name, strlen(name), split) != 0)
        snprintf(err, errlen, "/tokenizer split \"%s\" is unknown (gpt2 or bytes)", name);
    else
        return 0;
    return -1;
}

/* The chat template, when the group has one (files written before it have none).
 * 0, or -1 with a reason in err. */
static int read_chat_template(hid_t g, tokenizer *t, char *err, size_t errlen)
{
    if (H5Lexists(g, "chat_template", H5P_DEFAULT) == 0)
        return 0;
    size_t n;
    char why[200];
    char *s = read_dataset(g, "chat_template", 1, H5T_NATIVE_UINT8, 1,
                           TOKENIZER_CHAT_TEMPLATE_MAX, &n);
    int rc = -1;
    if (!s)
        snprintf(err, errlen, "/tokenizer/chat_template is unreadable, not bytes or over %d "
                 "bytes", TOKENIZER_CHAT_TEMPLATE_MAX);
    else if ((rc = tokenizer_set_chat_template(t, s, n, why, sizeof why)) != 0)
        snprintf(err, errlen, "/tokenizer/chat_template: %s", why);
    free(s);
    return rc;
}

static tokenizer *read_tokens(hid_t g, char *err, size_t errlen)
{
    char type[32], why[200];
    if (h5_attr_read_str(g, "type", type, sizeof type) != 0) {
        snprintf(err, errlen, "/tokenizer type is missing");
        return NULL;
    }
    if (strcmp(type, "byte") == 0) {
        tokenizer *t = tokenizer_new_byte();
        if (!t)
            snprintf(err, errlen, "out of memory");
        return t;
    }
    if (strcmp(type, "bpe") != 0 && strcmp(type, "gpt2") != 0) {
        snprintf(err, errlen, "unknown tokenizer type '%s'", type);
        return NULL;
    }
    size_t n = 0;
    long long size;
    tokenizer_split_kind split = TOKENIZER_SPLIT_BYTES;
    if (strcmp(type, "bpe") == 0 && read_split(g, &split, err, errlen) != 0)
        return NULL;
    uint32_t *merges = read_merges(g, strcmp(type, "bpe") == 0, &n);
    tokenizer *t = NULL;
    if (!merges)
        snprintf(err, errlen, "/tokenizer/merges is missing or unreadable");
    else if (strcmp(type, "gpt2") == 0)
        t = read_gpt2(g, merges, n, err, errlen);
    else if (h5_attr_read_i64(g, "vocab_size", &size) != 0 || size != 256 + (long long)n)
        snprintf(err, errlen, "/tokenizer vocab_size is missing or not 256 + %zu merges", n);
    else if (!(t = tokenizer_new_bpe(merges, n, split, why, sizeof why)))
        snprintf(err, errlen, "/tokenizer: %s", why);
    free(merges);
    return t;
}

tokenizer *tokenizer_h5_read(hid_t g, char *err, size_t errlen)
{
    tokenizer *t = read_tokens(g, err, errlen);
    if (t && read_chat_template(g, t, err, errlen) != 0) {
        tokenizer_free(t);
        return NULL;
    }
    return t;
}
