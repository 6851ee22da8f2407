/* prep: text files -> DIR/tokenizer.json, DIR/train.tok, DIR/val.tok (see docs/design.md)
 * and DIR/manifest.json, all built in a directory beside DIR and renamed into
 * place together.  The text streams through in chunks (io/corpus.h) encoded on
 * OpenMP threads and appended in order to train.tok, whose last tokens then move
 * to val.tok: memory does not grow with the corpus, the disk holds one copy. */
#include "io/corpus.h"
#include "io/dataset.h"
#include "io/fsutil.h"
#include "io/hash.h"
#include "io/shard.h"
#include "io/tokenizer.h"
#include "kernels/clock.h"
#define CLI_NAME "prep"
#include "launch/cli.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { EXIT_IO = 1, EXIT_USAGE = 2, DEFAULT_BPE_VOCAB = 4096, PATH_BYTES = 4096 };
/* Text is read and encoded in chunks of about DEFAULT_CHUNK bytes; one with no
 * place to cut may grow to CHUNK_GROWTH times that, then it is refused. */
enum { DEFAULT_CHUNK = 1 << 20, CHUNK_GROWTH = 256 };

typedef struct {
    size_t bytes, max;
} chunking;

typedef struct {
    const char **inputs;
    int ninputs;
    const char *out, *tokenizer_arg;
    int bpe, gpt2;
    const char *vocab_arg, *fraction_arg, *split_arg;   /* NULL = not given */
    const char *vocab_file, *merges_file;   /* --tokenizer gpt2 */
    const char *hf_dir;                     /* or this, instead of them */
    long vocab;
    tokenizer_split_kind split;
    double val_fraction;
} prep_args;

/* The files to read, in order, with their identities so a link is not read twice
 * (found through seen: a directory may hold millions of files). */
typedef struct {
    char **paths;
    struct stat *ids;
    size_t n, cap;
    size_t *seen;   /* open addressing, 2 * cap slots: index in ids + 1, 0 = empty */
} file_list;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: prep --input PATH... --out DIR [--tokenizer byte|bpe|gpt2] [--vocab N]\n"
            "            [--split gpt2|bytes] [--vocab-file FILE --merges FILE | --hf DIR]\n"
            "            [--val-fraction F]\n"
            "Concatenates the input files (a directory means its regular files, sorted by name,\n"
            "without *.dat and *.u8), tokenizes them and writes DIR/tokenizer.json,\n"
            "DIR/train.tok (the first 1-F of the tokens), DIR/val.tok (the last F) and\n"
            "DIR/manifest.json (their sizes and checksums).\n"
            "  --tokenizer   byte (default; token = byte value), bpe (trained on the input) or\n"
            "                gpt2 (GPT-2's, from --vocab-file and --merges or --hf; the token\n"
            "                <|endoftext|> between input files and for that text in them)\n"
            "  --vocab       BPE vocabulary size, 257..%d (default %d)\n"
            "  --split       how bpe cuts text into the words merges stay within: gpt2\n"
            "                (default; GPT-2's pattern, so llama.cpp and Hugging Face's GPT-2\n"
            "                tokenizers give our ids) or bytes (the byte classes of bpe\n"
            "                datasets made before gpt2 was the default: remakes one of them)\n"
            "  --vocab-file  GPT-2's encoder.json (OpenAI) or vocab.json (Hugging Face)\n"
            "  --merges      GPT-2's vocab.bpe (OpenAI) or merges.txt (Hugging Face)\n"
            "  --hf DIR      the tokenizer of a Hugging Face GPT-2 folder as build/import reads\n"
            "                it, added tokens (pad, chat markers) included: the dataset then\n"
            "                has the tokenizer of the checkpoint imported from DIR\n"
            "  --val-fraction  in (0, 1), default 0.1\n"
            "The text is read and encoded in chunks of about 1 MiB on OMP_NUM_THREADS\n"
            "threads (default: every CPU).  A chunk ends after a character that is not\n"
            "blank and before an ASCII blank (byte: anywhere), so the ids are the whole\n"
            "text's; a text with no such place in 256 MiB is refused.  bpe reads the input\n"
            "twice (counting, then encoding; so its inputs must be regular files, not\n"
            "pipes), keeping the counts of its distinct words in memory.  A file that\n"
            "changes while prep reads it is refused.\n"
            "An existing DIR is replaced only if it holds nothing but dataset files, and no\n"
            "input may be DIR or inside it.  DIR is built in DIR.tmp-XXXXXX beside it and\n"
            "renamed into place; such folders a killed prep left are removed, and named on\n"
            "stderr (those of a prep still running stay).\n",
            1 << 20, DEFAULT_BPE_VOCAB);
}

/* NaN unless s is exactly a number, so range checks written as !(lo <= x) reject it. */
static double parse_number(const char *s)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    return errno || end == s || *end ? NAN : x;
}

/* One option at argv[*i]; advances *i past its values.  0 or an exit code. */
static int parse_option(int argc, char **argv, int *i, prep_args *a)
{
    const char *flag = argv[(*i)++];
    if (strcmp(flag, "--input") == 0) {
        int first = *i;
        while (*i < argc && strncmp(argv[*i], "--", 2) != 0)
            a->inputs[a->ninputs++] = argv[(*i)++];
        return *i > first ? 0 : die(EXIT_USAGE, "--input needs at least one path");
    }
    /* each takes one value, once: a second is a mistake, not a choice */
    const struct { const char *flag, **value; } options[] = {
        {"--out", &a->out},           {"--tokenizer", &a->tokenizer_arg},
        {"--vocab", &a->vocab_arg},   {"--val-fraction", &a->fraction_arg},
        {"--vocab-file", &a->vocab_file}, {"--merges", &a->merges_file},
        {"--split", &a->split_arg},   {"--hf", &a->hf_dir},
    };
    size_t k = 0, n = sizeof options / sizeof options[0];
    while (k < n && strcmp(flag, options[k].flag) != 0)
        k++;
    if (k == n)
        return die(EXIT_USAGE, "unknown option '%s' (see --help)", flag);
    if (*i >= argc)
        return die(EXIT_USAGE, "%s needs a value", flag);
    if (*options[k].value)
        return die(EXIT_USAGE, "%s given twice", flag);
    const char *v = *options[k].value = argv[(*i)++];
    if (options[k].value == &a->tokenizer_arg) {
        if (strcmp(v, "byte") && strcmp(v, "bpe") && strcmp(v, "gpt2"))
            return die(EXIT_USAGE, "--tokenizer must be byte, bpe or gpt2, not '%s'", v);
        a->bpe = !strcmp(v, "bpe");
        a->gpt2 = !strcmp(v, "gpt2");
    }
    return 0;
}

static int check_numbers(prep_args *a)
{
    double f = a->fraction_arg ? parse_number(a->fraction_arg) : 0.1;
    if (!(f > 0 && f < 1))
        return die(EXIT_USAGE, "--val-fraction must be in (0, 1), not '%s'", a->fraction_arg);
    a->val_fraction = f;
    bool files = a->vocab_file || a->merges_file;
    if (a->gpt2 != (files || a->hf_dir) || (files && a->hf_dir) ||
        (files && !(a->vocab_file && a->merges_file)))
        return die(EXIT_USAGE, "--tokenizer gpt2 goes with both --vocab-file and --merges, or "
                   "with --hf");
    if (a->gpt2 && a->vocab_arg)
        return die(EXIT_USAGE, "--vocab is for bpe: gpt2's vocabulary is --vocab-file");
    a->split = TOKENIZER_SPLIT_GPT2;
    if (a->split_arg && (!a->bpe || tokenizer_split_parse(a->split_arg, strlen(a->split_arg),
                                                          &a->split) != 0))
        return die(EXIT_USAGE, a->bpe ? "--split must be gpt2 or bytes, not '%s'"
                                      : "--split %s needs --tokenizer bpe", a->split_arg);
    if (!a->bpe) {
        if (a->vocab_arg && parse_number(a->vocab_arg) != 256)
            return die(EXIT_USAGE, "--vocab %s needs --tokenizer bpe (the byte vocabulary is 256)",
                       a->vocab_arg);
        return 0;
    }
    double v = a->vocab_arg ? parse_number(a->vocab_arg) : DEFAULT_BPE_VOCAB;
    if (!(v >= 257 && v <= 1 << 20) || v != (double)(long)v)
        return die(EXIT_USAGE, "--vocab must be a whole number in 257..%d for bpe, not '%s'",
                   1 << 20, a->vocab_arg);
    a->vocab = (long)v;
    return 0;
}

/* Options may come in any order; cross-checks follow once all are known. */
static int parse_args(int argc, char **argv, prep_args *a)
{
    *a = (prep_args){.inputs = calloc((size_t)argc, sizeof(char *))};
    if (!a->inputs)
        return die(EXIT_IO, "out of memory");
    for (int i = 1; i < argc;) {
        int rc = parse_option(argc, argv, &i, a);
        if (rc)
            return rc;
    }
    if (a->ninputs == 0)
        return die(EXIT_USAGE, "missing --input (see --help)");
    if (!a->out)
        return die(EXIT_USAGE, "missing --out DIR (see --help)");
    if (strlen(a->out) + sizeof "/tokenizer.json" > PATH_BYTES)
        return die(EXIT_USAGE, "--out: directory name too long");
    return check_numbers(a);
}

/* The slot of st's file in l->seen: the one holding it, or the empty one it would take. */
static size_t seen_slot(const file_list *l, const struct stat *st)
{
    size_t mask = 2 * l->cap - 1;
    size_t i = splitmix64_mix((uint64_t)st->st_ino ^ splitmix64_mix((uint64_t)st->st_dev)) & mask;
    for (; l->seen[i]; i = (i + 1) & mask) {
        const struct stat *x = &l->ids[l->seen[i] - 1];
        if (x->st_dev == st->st_dev && x->st_ino == st->st_ino)
            break;
    }
    return i;
}

static int already_listed(const file_list *l, const struct stat *st)
{
    return l->cap && l->seen[seen_slot(l, st)];
}

static int list_add(file_list *l, char *path, const struct stat *st)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **p = realloc(l->paths, cap * sizeof *p);
        if (p)
            l->paths = p;
        struct stat *s = realloc(l->ids, cap * sizeof *s);
        if (s)
            l->ids = s;
        size_t *seen = calloc(2 * cap, sizeof *seen);
        if (!p || !s || !seen) {
            free(seen);
            free(path);
            return die(EXIT_IO, "out of memory");
        }
        free(l->seen);
        l->seen = seen;
        l->cap = cap;
        for (size_t i = 0; i < l->n; i++)
            l->seen[seen_slot(l, &l->ids[i])] = i + 1;
    }
    l->paths[l->n] = path;
    l->ids[l->n] = *st;
    l->seen[seen_slot(l, st)] = ++l->n;
    return 0;
}

static int has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    return n > k && strcmp(name + n - k, suffix) == 0;
}

/* fortune(6) keeps index (.dat) and UTF-8 link (.u8) files beside the text. */
static int wanted_entry(const struct dirent *e)
{
    return strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && !has_suffix(e->d_name, ".dat") &&
           !has_suffix(e->d_name, ".u8");
}

static int by_name(const struct dirent **x, const struct dirent **y)
{
    return strcmp((*x)->d_name, (*y)->d_name);   /* bytewise: independent of the locale */
}

static int add_entry(file_list *l, const char *dir, const char *name)
{
    char *path;
    struct stat st;
    if (asprintf(&path, "%s/%s", dir, name) < 0)
        return die(EXIT_IO, "out of memory");
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && !already_listed(l, &st))
        return list_add(l, path, &st);
    free(path);
    return 0;
}

/* Adds the regular files of dir, skipping ones (e.g. symlinks) already in the list. */
static int add_dir(file_list *l, const char *dir)
{
    struct dirent **names;
    int n = scandir(dir, &names, wanted_entry, by_name);
    if (n < 0)
        return die(EXIT_IO, "%s: cannot list directory: %s", dir, strerror(errno));
    size_t before = l->n;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (!rc)
            rc = add_entry(l, dir, names[i]->d_name);
        free(names[i]);
    }
    free(names);
    if (!rc && l->n == before)
        rc = die(EXIT_IO, "%s: no input files in directory", dir);
    return rc;
}

static int collect_inputs(const prep_args *a, file_list *l)
{
    for (int i = 0; i < a->ninputs; i++) {
        struct stat st;
        if (stat(a->inputs[i], &st) != 0)
            return die(EXIT_IO, "%s: %s", a->inputs[i], strerror(errno));
        int rc;
        if (S_ISDIR(st.st_mode))
            rc = add_dir(l, a->inputs[i]);
        else {
            char *path = strdup(a->inputs[i]);
            rc = path ? list_add(l, path, &st) : die(EXIT_IO, "out of memory");
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* bpe reads its input twice (counting, then encoding): a pipe or a device would
 * give its text to the first pass only, and nothing (or another text) to the next. */
static int check_rereadable(const file_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (!S_ISREG(l->ids[i].st_mode))
            return die(EXIT_USAGE, "--input %s is not a regular file, and --tokenizer bpe reads "
                       "its input twice (save it to a file first)", l->paths[i]);
    return 0;
}

/* Counts the chunks of the whole text for bpe, a piece at a time. */
static tokenizer *train_bpe(const prep_args *a, const file_list *l, const chunking *ch,
                            char *err, size_t errlen)
{
    tokenizer *cutter = tokenizer_new_bpe(NULL, 0, a->split, err, errlen);
    tokenizer_bpe_counts *counts = cutter ? tokenizer_bpe_counts_new(a->split, err, errlen) : NULL;
    corpus_reader r;
    corpus_open(&r, l->paths, l->ids, l->n, cutter, false, ch->bytes, ch->max);
    corpus_chunk c = {0};
    int rc = counts ? 1 : -1;
    while (rc == 1 && (rc = corpus_next(&r, &c, err, errlen)) == 1)
        if (tokenizer_bpe_counts_add(counts, c.text, c.n, err, errlen) != 0)
            rc = -1;
    free(c.text);
    corpus_close(&r);
    tokenizer *t = rc == 0 ? tokenizer_bpe_counts_train(counts, (int)a->vocab, err, errlen) : NULL;
    tokenizer_bpe_counts_free(counts);
    tokenizer_free(cutter);
    return t;
}

static tokenizer *make_tokenizer(const prep_args *a, const file_list *l, const chunking *ch)
{
    char err[PATH_BYTES + 600];
    if (!a->gpt2 && !a->bpe)
        return tokenizer_new_byte();
    tokenizer *t = a->bpe ? train_bpe(a, l, ch, err, sizeof err)
                 : a->hf_dir ? tokenizer_load_hf_dir(a->hf_dir, err, sizeof err)
                             : tokenizer_load_gpt2(a->vocab_file, a->merges_file, err, sizeof err);
    if (!t)
        die(EXIT_IO, "%s", err);
    else if (a->bpe && tokenizer_vocab_size(t) < a->vocab)
        fprintf(stderr, "prep: warning: the input only supports %d merges; vocab is %d, not %ld\n",
                tokenizer_vocab_size(t) - 256, tokenizer_vocab_size(t), a->vocab);
    return t;
}

/* An --input that is DIR or lies inside it would be read, then replaced by
 * the dataset made of it.  Real paths are compared, so links and ".." count;
 * a DIR not there yet holds nothing, and a missing input is collect_inputs'
 * to report. */
static int check_inputs_outside_out(const prep_args *a)
{
    char *out = realpath(a->out, NULL);
    if (!out)
        return 0;
    size_t n = strlen(out);
    int rc = 0;
    for (int i = 0; i < a->ninputs && !rc; i++) {
        char *in = realpath(a->inputs[i], NULL);
        if (in && strncmp(in, out, n) == 0 && (in[n] == '\0' || in[n] == '/' || n == 1))
            rc = die(EXIT_USAGE, "--input %s is the --out directory or inside it, which prep "
                     "replaces (choose another --out)", a->inputs[i]);
        free(in);
    }
    free(out);
    return rc;
}

/* DIR may be replaced whole only if it is a data directory: a file of anything
 * else there (the corpus itself, say) would go with it.  Creates DIR's parent. */
static int check_out_dir(const char *dir)
{
    char err[600], parent[PATH_BYTES];
    struct stat st;
    if (stat(dir, &st) != 0) {
        snprintf(parent, sizeof parent, "%s", dir);   /* fits: parse_args bounds dir */
        char *slash = strrchr(parent, '/');
        while (slash && slash > parent && slash[1] == '\0') {   /* "a/b/" */
            *slash = '\0';
            slash = strrchr(parent, '/');
        }
        if (!slash)
            return 0;
        slash[slash == parent] = '\0';
        return fs_mkdir_p(parent, err, sizeof err) ? die(EXIT_IO, "%s", err) : 0;
    }
    if (!S_ISDIR(st.st_mode))
        return die(EXIT_IO, "%s: exists and is not a directory", dir);
    DIR *d = opendir(dir);
    if (!d)
        return die(EXIT_IO, "%s: cannot list directory: %s", dir, strerror(errno));
    int rc = 0;
    for (struct dirent *e; !rc && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && !dataset_owns_name(e->d_name))
            rc = die(EXIT_IO, "%s holds %s, which is not a dataset file: --out must be a new "
                     "directory or a dataset to replace", dir, e->d_name);
    closedir(d);
    return rc;
}

/* One chunk of a batch encoded side by side, then written in order.  Its buffers
 * serve batch after batch: allocated per chunk, each would be a fresh mapping of
 * about 5 MiB (text and ids) faulted in page by page, and unmapped after. */
typedef struct {
    corpus_chunk c;
    uint32_t *ids;
    size_t ids_cap;
    size_t k;   /* SIZE_MAX: out of memory */
} piece;

/* enc: one encoder per thread, whose word cache goes on from chunk to chunk. */
static void encode_batch(tokenizer_encoder **enc, piece *p, int n)
{
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < n; i++) {
        p[i].k = SIZE_MAX;
        if (p[i].c.n + 1 > p[i].ids_cap) {
            uint32_t *ids = realloc(p[i].ids, (p[i].c.n + 1) * sizeof *ids);
            if (!ids)
                continue;
            p[i].ids = ids;
            p[i].ids_cap = p[i].c.n + 1;
        }
        p[i].k = tokenizer_encode_with(enc[omp_get_thread_num()], p[i].c.text, p[i].c.n,
                                       p[i].ids);
    }
}

/* Appends the batch's ids to out in order, <|endoftext|> before each file but the
 * first (an empty one too) when the tokenizer has it. */
static int write_batch(const tokenizer *t, const piece *p, int n, shard_stream *out,
                       uint64_t *bytes, char *err, size_t errlen)
{
    const uint32_t eos = (uint32_t)tokenizer_eos(t);
    for (int i = 0; i < n; i++) {
        if (p[i].k == SIZE_MAX)
            return fs_fail(err, errlen, "out of memory");
        if ((p[i].c.starts_file && p[i].c.file > 0 &&
             shard_stream_append(out, &eos, 1, err, errlen) != 0) ||
            shard_stream_append(out, p[i].ids, p[i].k, err, errlen) != 0)
            return -1;
        *bytes += p[i].c.n;
    }
    return 0;
}

/* A slot that held an outsize chunk (a long text with no place to cut) gives
 * its buffers back rather than keep them for the rest of the run. */
static void trim_piece(piece *p, size_t chunk)
{
    if (p->c.cap <= 4 * (chunk + 1))
        return;
    free(p->c.text);
    free(p->ids);
    p->c = (corpus_chunk){0};
    p->ids = NULL;
    p->ids_cap = 0;
}

/* Reads, encodes (2 chunks per thread at a time) and appends to out every chunk. */
static int encode_corpus(const tokenizer *t, const file_list *l, const chunking *ch,
                         shard_stream *out, uint64_t *bytes, char *err, size_t errlen)
{
    int threads = omp_get_max_threads(), batch = 2 * threads, more = 1;
    piece *p = calloc((size_t)batch, sizeof *p);
    tokenizer_encoder **enc = calloc((size_t)threads, sizeof *enc);
    for (int i = 0; enc && i < threads && more == 1; i++)
        more = (enc[i] = tokenizer_encoder_new(t)) ? 1 : -1;
    if (!p || !enc || more != 1) {
        more = fs_fail(err, errlen, "out of memory");
        goto done;
    }
    corpus_reader r;
    corpus_open(&r, l->paths, l->ids, l->n, t, tokenizer_eos(t) >= 0, ch->bytes, ch->max);
    while (more == 1) {
        int n = 0;
        while (n < batch && (more = corpus_next(&r, &p[n].c, err, errlen)) == 1)
            n++;
        if (more >= 0) {
            encode_batch(enc, p, n);
            if (write_batch(t, p, n, out, bytes, err, errlen) != 0)
                more = -1;
            for (int i = 0; i < n; i++)
                trim_piece(&p[i], ch->bytes);
        }
    }
    corpus_close(&r);
done:
    for (int i = 0; p && i < batch; i++) {
        free(p[i].c.text);
        free(p[i].ids);
    }
    for (int i = 0; enc && i < threads; i++)
        tokenizer_encoder_free(enc[i]);
    free(enc);
    free(p);
    return more;
}

/* Fills the empty directory dir: train.tok as the tokens come, split like nanoGPT
 * (train = floor(n * (1 - F)), the rest moved to val.tok), tokenizer.json, manifest. */
static int write_dataset(const char *dir, const prep_args *a, const tokenizer *t,
                         const file_list *l, const chunking *ch, uint64_t *bytes,
                         uint64_t *ntrain, uint64_t *nval, char *err, size_t errlen)
{
    char path[PATH_BYTES + 128], tail[PATH_BYTES + 128];
    shard_stream out;
    snprintf(path, sizeof path, "%s/train.tok", dir);
    if (shard_stream_begin(&out, path, (uint32_t)tokenizer_vocab_size(t), err, errlen) != 0)
        return -1;
    if (encode_corpus(t, l, ch, &out, bytes, err, errlen) != 0) {
        shard_stream_abort(&out);
        return -1;
    }
    uint64_t count = out.count;
    *ntrain = (uint64_t)((double)count * (1.0 - a->val_fraction));
    *nval = count - *ntrain;
    if (*ntrain < 2 || *nval < 2) {
        shard_stream_abort(&out);
        return fs_fail(err, errlen, "%llu tokens split into %llu train and %llu val; each needs "
                       "at least 2 (more input or another --val-fraction)",
                       (unsigned long long)count, (unsigned long long)*ntrain,
                       (unsigned long long)*nval);
    }
    snprintf(tail, sizeof tail, "%s/val.tok", dir);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (shard_stream_split(&out, *ntrain, tail, err, errlen) != 0 ||
        tokenizer_save(t, path, err, errlen) != 0)
        return -1;
    return dataset_write_manifest(dir, err, errlen);
}

/* The dataset goes to a directory beside DIR, which then replaces DIR in one
 * rename: a reader sees the old dataset or the new one, never a mix.  A DIR
 * that is a link to a dataset has the dataset it names replaced (a rename
 * over the link itself fails), and stays a link.  Anything that fails removes
 * the new directory whole. */
static int prepare(const prep_args *a, const file_list *l, const chunking *ch, double start)
{
    tokenizer *t = make_tokenizer(a, l, ch);
    if (!t)
        return EXIT_IO;
    char err[PATH_BYTES + 600], tmp[PATH_BYTES + 64], note[1024];
    char *real = realpath(a->out, NULL);   /* NULL: no dataset there yet */
    const char *target = real ? real : a->out;
    uint64_t bytes = 0, ntrain = 0, nval = 0;
    int lock, rc = fs_temp_dir_beside(target, tmp, sizeof tmp, &lock, note, sizeof note, err,
                                      sizeof err);
    if (note[0])
        fprintf(stderr, "prep: removed %s\n", note);
    if (rc != 0)
        rc = die(EXIT_IO, "%s", err);
    else if (write_dataset(tmp, a, t, l, ch, &bytes, &ntrain, &nval, err, sizeof err) != 0 ||
             fs_replace_dir(tmp, target, err, sizeof err) != 0) {
        fs_remove_dir(tmp);
        rc = die(EXIT_IO, "%s", err);
    }
    fs_unlock_dir(lock);
    bool bpe = strcmp(tokenizer_type(t), "bpe") == 0;
    if (rc == 0)
        fprintf(stderr, "prep: %llu bytes from %zu file%s -> %llu tokens (%s%s%s, vocab %d): "
                "train %llu, val %llu -> %s (%.2f s, %d thread%s)\n", (unsigned long long)bytes,
                l->n, l->n == 1 ? "" : "s", (unsigned long long)(ntrain + nval),
                tokenizer_type(t), bpe ? ", split " : "",
                bpe ? tokenizer_split_name(tokenizer_split(t)) : "", tokenizer_vocab_size(t),
                (unsigned long long)ntrain, (unsigned long long)nval, a->out,
                clock_mono_s() - start, omp_get_max_threads(),
                omp_get_max_threads() == 1 ? "" : "s");
    free(real);
    tokenizer_free(t);
    return rc;
}

/* GPT_PREP_CHUNK (bytes) sets the chunk size: tests make it tiny, so that chunk
 * edges fall everywhere. */
static int choose_chunking(chunking *ch)
{
    const char *env = getenv("GPT_PREP_CHUNK");
    double v = env ? parse_number(env) : DEFAULT_CHUNK;
    if (!(v >= 1 && v <= (double)(SIZE_MAX / CHUNK_GROWTH)) || v != (double)(size_t)v)
        return die(EXIT_USAGE, "GPT_PREP_CHUNK must be a whole number of bytes, not '%s'", env);
    ch->bytes = (size_t)v;
    ch->max = CHUNK_GROWTH * ch->bytes;
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
    double start = clock_mono_s();
    prep_args a;
    file_list files = {0};
    chunking ch;
    int rc = parse_args(argc, argv, &a);
    if (!rc)
        rc = choose_chunking(&ch);
    if (!rc)
        rc = check_inputs_outside_out(&a);
    if (!rc)
        rc = collect_inputs(&a, &files);
    if (!rc && a.bpe)
        rc = check_rereadable(&files);
    if (!rc)
        rc = check_out_dir(a.out);
    if (!rc)
        rc = prepare(&a, &files, &ch, start);
    for (size_t i = 0; i < files.n; i++)
        free(files.paths[i]);
    free(files.paths);
    free(files.ids);
    free(files.seen);
    free(a.inputs);
    return rc;
}
