/* build/infer: text generation from a checkpoint (DESIGN.md, issue 8).
 *
 * Reads only /config, /model and /tokenizer of the file; the trainer renames
 * each checkpoint into place when complete, so a file under a final name is
 * never one being written.  Exit 0 on success, 1 when the checkpoint cannot
 * be used, 2 on bad command-line input. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <omp.h>

#include "io/tokenizer.h"
#include "kernels/gemm.h"
#include "launch/infer.h"

#define BENCH_PROMPT_TOKENS 16
#define BENCH_NEW_TOKENS 240
/* The default --bench prompt: its first 16 tokens (any tokenizer). */
static const char BENCH_TEXT[] =
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n";

typedef struct {
    const char *ckpt, *prompt;
    infer_quant quant;
    int n, top_k;                 /* n < 0: the default for the mode */
    float temperature, top_p;     /* temperature < 0: the default for the mode */
    uint64_t seed;
    bool bench;
} options;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: build/infer --ckpt FILE.h5 [--quant int8|bf16|fp32] [--prompt TEXT] [-n N]\n"
        "                   [--temperature T] [--top-k K] [--top-p P] [--seed S] [--bench]\n"
        "Generates text from a gpt-cpu checkpoint (reads /config, /model, /tokenizer).\n"
        "  --quant Q        int8 (default): weights and LM head int8, one scale per 32 values;\n"
        "                   bf16: weights rounded to bf16, computed in fp32; fp32\n"
        "  --prompt TEXT    the prompt (default: a newline)\n"
        "  -n N             tokens to generate (default 256; --bench 240)\n"
        "  --temperature T  0 = greedy (default 0.8; --bench 0)\n"
        "  --top-k K        sample among the K most likely tokens (default 40, 0 = all)\n"
        "  --top-p P        then among the smallest set with probability >= P (default 0.95)\n"
        "  --seed S         sampling seed (default: from the clock); same seed, same text\n"
        "  --bench          batch 1, a 16-token prompt (or --prompt), 240 tokens; prints one\n"
        "                   JSON object: prefill/decode tokens/s, quant, rss_mb, ...\n"
        "Generation stops after N tokens or when the context (n_positions) is full.\n"
        "Exit status: 0 ok, 1 unusable checkpoint, 2 bad arguments.\n");
}

/* ---- arguments --------------------------------------------------------------- */

static int parse_long(const char *s, long long lo, long long hi, long long *v)
{
    char *end;
    long long x = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || x < lo || x > hi)
        return -1;
    *v = x;
    return 0;
}

static int parse_float(const char *s, double lo, double hi, float *v)
{
    char *end;
    double x = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || !(x >= lo && x <= hi))
        return -1;
    *v = (float)x;
    return 0;
}

/* One option and its value; returns -1 with a reason for a bad one. */
static int parse_value(options *o, const char *flag, const char *val, char *err, size_t errlen)
{
    long long v = 0;
    int rc = 0;
    if (strcmp(flag, "--ckpt") == 0)
        o->ckpt = val;
    else if (strcmp(flag, "--prompt") == 0)
        o->prompt = val;
    else if (strcmp(flag, "--quant") == 0)
        rc = infer_quant_parse(val, &o->quant);
    else if (strcmp(flag, "-n") == 0)
        rc = parse_long(val, 0, 1 << 30, &v) ? -1 : (o->n = (int)v, 0);
    else if (strcmp(flag, "--top-k") == 0)
        rc = parse_long(val, 0, 1 << 30, &v) ? -1 : (o->top_k = (int)v, 0);
    else if (strcmp(flag, "--seed") == 0)
        rc = parse_long(val, 0, INT64_MAX, &v) ? -1 : (o->seed = (uint64_t)v, 0);
    else if (strcmp(flag, "--temperature") == 0)
        rc = parse_float(val, 0, 100, &o->temperature);
    else if (strcmp(flag, "--top-p") == 0)
        rc = parse_float(val, 1e-6, 1, &o->top_p);
    else {
        snprintf(err, errlen, "unknown option '%s' (see --help)", flag);
        return -1;
    }
    if (rc != 0)
        snprintf(err, errlen, "invalid value '%s' for %s (see --help)", val, flag);
    return rc;
}

/* 0 to run, 1 for --help, -1 with a reason in err. */
static int parse_args(int argc, char **argv, options *o, char *err, size_t errlen)
{
    *o = (options){.quant = INFER_INT8, .n = -1, .top_k = 40, .temperature = -1, .top_p = 0.95f,
                   .seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32)};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (strcmp(a, "--bench") == 0) {
            o->bench = true;
            continue;
        }
        if (i + 1 >= argc && a[0] == '-') {
            snprintf(err, errlen, "%s needs a value (see --help)", a);
            return -1;
        }
        if (parse_value(o, a, i + 1 < argc ? argv[i + 1] : "", err, errlen) != 0)
            return -1;
        i++;
    }
    if (!o->ckpt) {
        snprintf(err, errlen, "--ckpt FILE.h5 is required (see --help)");
        return -1;
    }
    if (o->n < 0)
        o->n = o->bench ? BENCH_NEW_TOKENS : 256;
    if (o->temperature < 0)
        o->temperature = o->bench ? 0.0f : 0.8f;
    return 0;
}

/* ---- generation -------------------------------------------------------------- */

typedef struct {
    double prefill_s, decode_s;
    int n_generated;
    bool context_full;
} gen_stats;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Writes token id's text to stdout at once (decode buffer allocated by the caller). */
static void emit(const tokenizer *tok, uint32_t id, uint8_t *buf, size_t cap)
{
    size_t n = tokenizer_decode(tok, &id, 1, buf, cap);
    fwrite(buf, 1, n < cap ? n : cap, stdout);
    fflush(stdout);
}

/* Prefill of toks[0..n_prompt) as one pass, then up to n_new tokens, one
 * forward each; stops early when the context is full.  tok NULL: no output. */
static gen_stats generate(const infer_model *m, infer_state *s, infer_sampler *sp,
                          const tokenizer *tok, int *toks, int n_prompt, int n_new, uint8_t *buf,
                          size_t cap)
{
    gen_stats st = {0};
    double t0 = now_s();
    infer_forward(m, s, toks, n_prompt, 0, NULL);
    double t1 = now_s();
    int pos = n_prompt;
    while (st.n_generated < n_new) {
        int next = infer_sample(sp, s->logits);
        st.n_generated++;
        if (tok)
            emit(tok, (uint32_t)next, buf, cap);
        if (st.n_generated == n_new)
            break;
        if (pos == m->d.n_positions) {   /* no cache row left for this token */
            st.context_full = true;
            break;
        }
        toks[pos] = next;
        infer_forward(m, s, &toks[pos], 1, pos, NULL);
        pos++;
    }
    st.prefill_s = t1 - t0;
    st.decode_s = now_s() - t1;
    return st;
}

/* VmRSS or VmHWM from /proc/self/status, in MB (0 if unavailable). */
static double proc_mb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    size_t klen = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':')
            kb = atof(line + klen + 1);
    if (f)
        fclose(f);
    return kb / 1024.0;
}

static void print_bench(const infer_model *m, const options *o, int n_prompt, gen_stats st)
{
    /* decode tokens/s counts every generated token over the time from the end
     * of prefill to the last one (sampling and one forward per token) */
    printf("{\"quant\":\"%s\",\"n_prompt\":%d,\"n_generated\":%d,"
           "\"prefill_tokens_per_s\":%.1f,\"decode_tokens_per_s\":%.1f,"
           "\"prefill_s\":%.6f,\"decode_s\":%.6f,\"rss_mb\":%.1f,\"peak_rss_mb\":%.1f,"
           "\"weights_mb\":%.1f,\"threads\":%d,\"context_full\":%s,\"temperature\":%g,"
           "\"vocab_size\":%d,\"n_positions\":%d,\"n_embd\":%d,\"n_layer\":%d,\"n_head\":%d}\n",
           infer_quant_name(m->quant), n_prompt, st.n_generated,
           st.prefill_s > 0 ? n_prompt / st.prefill_s : 0.0,
           st.decode_s > 0 ? st.n_generated / st.decode_s : 0.0, st.prefill_s, st.decode_s,
           proc_mb("VmRSS"), proc_mb("VmHWM"), m->weight_bytes / 1e6, omp_get_max_threads(),
           st.context_full ? "true" : "false", o->temperature, m->d.vocab_size,
           m->d.n_positions, m->d.n_embd, m->d.n_layer, m->d.n_head);
}

/* The prompt's tokens into toks (room for n_positions); -1 if it is too long. */
static int encode_prompt(const options *o, const tokenizer *tok, int T, int *toks, char *err,
                         size_t errlen)
{
    const char *text = o->prompt && *o->prompt ? o->prompt : o->bench ? BENCH_TEXT : "\n";
    size_t len = strlen(text);
    uint32_t *ids = malloc((len + 1) * sizeof *ids);
    if (!ids) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t n = tokenizer_encode(tok, (const uint8_t *)text, len, ids);
    if (o->bench && !(o->prompt && *o->prompt) && n > BENCH_PROMPT_TOKENS)
        n = BENCH_PROMPT_TOKENS;
    if (n > (size_t)T) {
        snprintf(err, errlen, "the prompt is %zu tokens but the context holds %d", n, T);
        free(ids);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        toks[i] = (int)ids[i];
    free(ids);
    return (int)n;
}

/* Everything after loading; returns the exit status. */
static int run(const options *o, const infer_model *m, const tokenizer *tok)
{
    char err[512];
    infer_state s;
    infer_sampler sp;
    int T = m->d.n_positions, rc = 1;
    int *toks = malloc((size_t)T * sizeof *toks);
    size_t cap = 4096;
    uint8_t *buf = malloc(cap);
    if (!toks || !buf || infer_state_create(&s, m, 0, err, sizeof err) != 0) {
        fprintf(stderr, "infer: %s\n", toks && buf ? err : "out of memory");
        free(toks);
        free(buf);
        return 1;
    }
    int n_prompt = encode_prompt(o, tok, T, toks, err, sizeof err);
    if (n_prompt < 0) {
        fprintf(stderr, "infer: %s\n", err);
        rc = 2;
    } else if (infer_sampler_init(&sp, tokenizer_vocab_size(tok), o->temperature, o->top_k,
                                  o->top_p, o->seed, err, sizeof err) != 0) {
        fprintf(stderr, "infer: %s\n", err);
    } else {
        if (o->bench) {   /* warm-up: oneDNN builds its primitives on first use of a shape */
            generate(m, &s, &sp, NULL, toks, n_prompt, 3, buf, cap);
            infer_sampler_free(&sp);
            infer_sampler_init(&sp, tokenizer_vocab_size(tok), o->temperature, o->top_k,
                               o->top_p, o->seed, err, sizeof err);
            print_bench(m, o, n_prompt, generate(m, &s, &sp, NULL, toks, n_prompt, o->n, buf, cap));
        } else {
            fwrite(o->prompt ? o->prompt : "", 1, o->prompt ? strlen(o->prompt) : 0, stdout);
            gen_stats st = generate(m, &s, &sp, tok, toks, n_prompt, o->n, buf, cap);
            printf("\n");
            fprintf(stderr, "infer: %d tokens, %.1f tokens/s%s\n", st.n_generated,
                    st.decode_s > 0 ? st.n_generated / st.decode_s : 0.0,
                    st.context_full ? " (stopped: the context is full)" : "");
        }
        infer_sampler_free(&sp);
        rc = 0;
    }
    infer_state_free(&s);
    free(toks);
    free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    options o;
    char err[512];
    int rc = parse_args(argc, argv, &o, err, sizeof err);
    if (rc == 1) {
        usage(stdout);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "infer: %s\n", err);
        return 2;
    }
    infer_model m;
    tokenizer *tok;
    if (infer_load(o.ckpt, o.quant, &m, &tok, err, sizeof err) != 0) {
        fprintf(stderr, "infer: %s\n", err);
        return 1;
    }
    rc = run(&o, &m, tok);
    infer_model_free(&m);
    tokenizer_free(tok);
    gemm_release();
    return rc;
}
