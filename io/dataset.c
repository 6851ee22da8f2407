#include "io/dataset.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/fsutil.h"
#include "io/sampler.h"
#include "io/tokenizer.h"

const char *const dataset_files[3] = {"train.tok", "val.tok", "tokenizer.json"};

int dataset_owns_name(const char *name)
{
    size_t n = strlen(name);
    if (strcmp(name, DATASET_MANIFEST) == 0 || (n > 4 && strcmp(name + n - 4, ".tmp") == 0))
        return 1;
    for (int i = 0; i < 3; i++)
        if (strcmp(name, dataset_files[i]) == 0)
            return 1;
    return 0;
}

int dataset_write_manifest(const char *dir, char *err, size_t errlen)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "format", 1);
    cJSON *files = cJSON_AddObjectToObject(root, "files");
    char path[4200], hex[20];
    int rc = files ? 0 : -1;
    for (int i = 0; i < 3 && rc == 0; i++) {
        uint64_t bytes, sum;
        snprintf(path, sizeof path, "%s/%s", dir, dataset_files[i]);
        rc = fs_checksum_file(path, &bytes, &sum, err, errlen);
        cJSON *f = rc == 0 ? cJSON_AddObjectToObject(files, dataset_files[i]) : NULL;
        snprintf(hex, sizeof hex, "%016" PRIx64, sum);
        if (rc == 0 && (!f || !cJSON_AddNumberToObject(f, "bytes", (double)bytes) ||
                        !cJSON_AddStringToObject(f, "checksum", hex)))
            rc = -1;
    }
    char *text = rc == 0 ? cJSON_PrintUnformatted(root) : NULL;
    if (rc == 0 && !text)
        snprintf(err, errlen, "out of memory writing the manifest");
    snprintf(path, sizeof path, "%s/%s", dir, DATASET_MANIFEST);
    if (text)
        rc = fs_write_file_atomic(path, text, strlen(text), err, errlen);
    else
        rc = -1;
    free(text);
    cJSON_Delete(root);
    return rc;
}

/* dir's manifest, parsed (the caller deletes it); NULL with err set. */
static cJSON *read_manifest(const char *dir, char *err, size_t errlen)
{
    char path[4200], why[600];
    uint8_t *text;
    size_t len;
    snprintf(path, sizeof path, "%s/%s", dir, DATASET_MANIFEST);
    if (fs_read_file(path, &text, &len, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s (not a complete dataset: run build/prep again)", why);
        return NULL;
    }
    cJSON *root = cJSON_ParseWithLength((const char *)text, len);
    free(text);
    if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "files"))) {
        snprintf(err, errlen, "%s: not a dataset manifest (run build/prep again)", path);
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* The size and checksum the manifest records for one file; -1 if its entry
 * is missing or malformed. */
static int manifest_entry(const cJSON *root, const char *name, uint64_t *bytes, uint64_t *sum)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "files"),
                                                      name);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(f, "bytes");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(f, "checksum");
    char *end = NULL;
    *sum = cJSON_IsString(c) ? strtoull(c->valuestring, &end, 16) : 0;
    if (!cJSON_IsNumber(b) || !end || *end || end == c->valuestring)
        return -1;
    *bytes = (uint64_t)b->valuedouble;
    return 0;
}

/* dir's files against its manifest: each one present, of the recorded size
 * and checksum. */
static int check_manifest(const char *dir, char *err, size_t errlen)
{
    cJSON *root = read_manifest(dir, err, errlen);
    int rc = root ? 0 : -1;
    for (int i = 0; i < 3 && rc == 0; i++) {
        char path[4200];
        uint64_t want_bytes, want_sum, bytes, sum;
        if (manifest_entry(root, dataset_files[i], &want_bytes, &want_sum) != 0) {
            snprintf(err, errlen, "%s/%s: no valid entry for %s (run build/prep again)", dir,
                     DATASET_MANIFEST, dataset_files[i]);
            rc = -1;
            break;
        }
        snprintf(path, sizeof path, "%s/%s", dir, dataset_files[i]);
        if (fs_checksum_file(path, &bytes, &sum, err, errlen) != 0) {
            rc = -1;
        } else if (bytes != want_bytes || sum != want_sum) {
            snprintf(err, errlen, "%s: its %s differs from %s's: the dataset's files come from "
                     "different preparations (run build/prep again)", path,
                     bytes != want_bytes ? "size" : "checksum", DATASET_MANIFEST);
            rc = -1;
        }
    }
    cJSON_Delete(root);
    return rc;
}

/* The kind of t for messages: its type, and for bpe its split ("bpe (split gpt2)"). */
static const char *describe(const tokenizer *t, char *buf, size_t len)
{
    if (strcmp(tokenizer_type(t), "bpe") != 0)
        return tokenizer_type(t);
    snprintf(buf, len, "bpe (split %s)", tokenizer_split_name(tokenizer_split(t)));
    return buf;
}

int dataset_check_tokenizer(const char *dir, const char *ckpt, char *err, size_t errlen)
{
    char path[1100], why[512];
    ckpt_model_file *f;
    gpt2_dims dims;
    if (ckpt_model_open(ckpt, &f, &dims, why, sizeof why) != 0)
        return 0;
    tokenizer *t = ckpt_model_tokenizer(f, why, sizeof why);
    ckpt_model_close(f);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    tokenizer *data = t ? tokenizer_load(path, why, sizeof why) : NULL;
    const bool same = !data || tokenizer_same(data, t);
    if (!same) {
        char kt[32], kd[32];
        const char *ours = describe(t, kt, sizeof kt), *theirs = describe(data, kd, sizeof kd);
        snprintf(err, errlen, "%s holds a %s tokenizer of %d tokens and %s a %s%s one of %d: the "
                 "token ids would mean other text (prepare the data with the model's tokenizer)",
                 ckpt, ours, tokenizer_vocab_size(t), path,
                 strcmp(ours, theirs) == 0 ? "different " : "", theirs,
                 tokenizer_vocab_size(data));
    }
    tokenizer_free(data);
    tokenizer_free(t);
    return same ? 0 : -1;
}

int dataset_check(const char *dir, int model_vocab, char *err, size_t errlen)
{
    if (check_manifest(dir, err, errlen) != 0)
        return -1;
    char path[4200], why[600];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    tokenizer *t = tokenizer_load(path, why, sizeof why);
    if (!t) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    int vocab = tokenizer_vocab_size(t);
    tokenizer_free(t);
    if (vocab > model_vocab) {
        snprintf(err, errlen, "%s: a vocabulary of %d tokens does not fit the model's vocab_size %d",
                 path, vocab, model_vocab);
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        token_shard sh;
        snprintf(path, sizeof path, "%s/%s", dir, dataset_files[i]);
        if (shard_open(&sh, path, err, errlen) != 0)
            return -1;
        uint32_t v = sh.vocab_size;
        shard_close(&sh);
        if (v > (uint32_t)vocab) {
            snprintf(err, errlen, "%s: tokens go up to %" PRIu32 " but tokenizer.json has %d: the "
                     "files come from different preparations", path, v, vocab);
            return -1;
        }
    }
    return 0;
}

/* min_count: the tokens the split must hold at least (else DATASET_TOO_SHORT). */
static int open_split(token_shard *s, const char *dir, const char *name, uint64_t min_count,
                      int T, int model_vocab, char *err, size_t errlen)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (shard_open(s, path, err, errlen) != 0)
        return -1;
    if (s->vocab_size > (uint32_t)model_vocab) {
        snprintf(err, errlen, "%s: tokens go up to %" PRIu32 " but the model's vocab_size is %d",
                 path, s->vocab_size, model_vocab);
        shard_close(s);
        return -1;
    }
    if (s->count < min_count) {
        snprintf(err, errlen, "%s: %" PRIu64 " tokens is too few for windows of %d+1 tokens", path,
                 s->count, T);
        shard_close(s);
        return DATASET_TOO_SHORT;
    }
    return 0;
}

int dataset_open(dataset *d, const char *dir, int T, int model_vocab, uint64_t seed, char *err,
                 size_t errlen)
{
    *d = (dataset){.T = T, .model_vocab = model_vocab, .seed = seed};
    char why[600];
    cJSON *manifest = read_manifest(dir, why, sizeof why);
    uint64_t bytes;
    if (!manifest || manifest_entry(manifest, "train.tok", &bytes, &d->train_checksum) != 0)
        d->train_checksum = 0;
    cJSON_Delete(manifest);
    /* every run trains; only one that evaluates needs a val window */
    int rc = open_split(&d->train, dir, "train.tok", (uint64_t)T + 1, T, model_vocab, err, errlen);
    if (rc != 0)
        return rc;
    if (open_split(&d->val, dir, "val.tok", 0, T, model_vocab, err, errlen) != 0) {
        shard_close(&d->train);
        return -1;
    }
    return 0;
}

void dataset_close(dataset *d)
{
    shard_close(&d->train);
    shard_close(&d->val);
}

uint64_t dataset_train_samples(const dataset *d)
{
    return d->train.count - (uint64_t)d->T;
}

uint64_t dataset_val_windows(const dataset *d)
{
    return d->val.count > 0 ? (d->val.count - 1) / (uint64_t)d->T : 0;
}

/* Copy the window at offset into one row; a token beyond the model's vocabulary
 * (a damaged file whose header lies) is an error, never an out-of-bounds read. */
static int fill_row(const token_shard *s, uint64_t offset, int T, int vocab, int *inputs,
                    int *targets, char *err, size_t errlen)
{
    for (int t = 0; t <= T; t++) {
        uint32_t tok = shard_token(s, offset + (uint64_t)t);
        if (tok >= (uint32_t)vocab) {
            snprintf(err, errlen, "token %" PRIu32 " at position %" PRIu64
                     " is out of range for vocab_size %d", tok, offset + (uint64_t)t, vocab);
            return -1;
        }
        if (t < T)
            inputs[t] = (int)tok;
        if (t > 0)
            targets[t - 1] = (int)tok;
    }
    return 0;
}

/* The split's file is looked at before and after a batch is read from it:
 * one rewritten in place under the run is refused before a page it lost is
 * touched (SIGBUS), and a batch read while it changed is not used. */
int dataset_train_batch(const dataset *d, uint64_t first, int B, int *inputs, int *targets,
                        char *err, size_t errlen)
{
    uint64_t n = dataset_train_samples(d);
    if (shard_check_unchanged(&d->train, err, errlen) != 0)
        return -1;
    for (int b = 0; b < B; b++) {
        uint64_t off = sampler_offset(first + (uint64_t)b, n, d->seed);
        if (fill_row(&d->train, off, d->T, d->model_vocab, inputs + (size_t)b * d->T,
                     targets + (size_t)b * d->T, err, errlen) != 0)
            return -1;
    }
    return shard_check_unchanged(&d->train, err, errlen);
}

int dataset_val_batch(const dataset *d, uint64_t first, int B, int *inputs, int *targets,
                      char *err, size_t errlen)
{
    if (shard_check_unchanged(&d->val, err, errlen) != 0)
        return -1;
    for (int b = 0; b < B; b++) {
        uint64_t off = (first + (uint64_t)b) * (uint64_t)d->T;
        if (fill_row(&d->val, off, d->T, d->model_vocab, inputs + (size_t)b * d->T,
                     targets + (size_t)b * d->T, err, errlen) != 0)
            return -1;
    }
    return shard_check_unchanged(&d->val, err, errlen);
}
