/* build/infer: text generation from a checkpoint (docs/design.md).
 *
 * Reads only /config, /model and /tokenizer of the file; the trainer renames
 * each checkpoint into place when complete, so a file under a final name is
 * never one being written.  Exit 0 on success, 1 when the checkpoint cannot
 * be used, 2 on bad command-line input. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <omp.h>

#include "io/fsutil.h"
#include "io/procmem.h"
#include "io/shard.h"
#include "io/signals.h"
#include "io/tokenizer.h"
#include "kernels/cpu.h"
#include "kernels/gemm.h"
#include "infer/infer.h"
#include "infer/q8file.h"
#include "infer/serve.h"

#define BENCH_PROMPT_TOKENS 16
#define BENCH_NEW_TOKENS 240
/* The default --bench prompt: its first 16 tokens (any tokenizer). */
static const char BENCH_TEXT[] =
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n";

typedef struct {
    const char *ckpt, *prompt;
    const char *eval;             /* --eval FILE.tok */
    const char *serve;            /* --serve ENDPOINT */
    const char *save_quantized;   /* --save-quantized FILE.h5 */
    infer_quant quant;
    infer_kv kv;
    bool kv_given;                /* --kv; else bf16 for int8 and bf16 weights, fp32 for fp32 */
    int n, top_k;                 /* n < 0: the default for the mode */
    int seq_len;                  /* --eval windows; 0: n_positions */
    long long eval_windows;       /* --eval-windows: the first N only; 0: all */
    float temperature, top_p;     /* temperature < 0: the default for the mode */
    uint64_t seed;
    bool bench;
    bool ignore_eos;              /* --ignore-eos: the end-of-text token does not stop */
} options;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: build/infer --ckpt FILE.h5|FILE.gguf [--quant int8|bf16|fp32] [--kv fp32|bf16]\n"
        "                   [--prompt TEXT] [-n N] [--temperature T] [--top-k K] [--top-p P]\n"
        "                   [--seed S] [--ignore-eos]\n"
        "                   [--bench | --eval FILE.tok [--seq-len T] [--eval-windows N]\n"
        "                    | --serve ENDPOINT | --save-quantized FILE.h5]\n"
        "Generates text from a gpt-cpu checkpoint (reads /config, /model, /tokenizer) or a GGUF\n"
        "file of build/export.\n"
        "  --quant Q        int8 (default): weights and LM head int8, one scale per 32 values;\n"
        "                   bf16: weights held as bf16 (2 bytes), bf16 products; fp32\n"
        "  --kv K           the KV cache: bf16 (default for int8 and bf16: half the memory\n"
        "                   and the bytes attention reads) or fp32 (default for fp32)\n"
        "  --prompt TEXT    the prompt (default: a newline)\n"
        "  -n N             tokens to generate (default 256; --bench 240)\n"
        "  --temperature T  0 = greedy (default 0.8; --bench 0)\n"
        "  --top-k K        sample among the K most likely tokens (default 40, 0 = all)\n"
        "  --top-p P        then among the smallest set with probability >= P (0..1,\n"
        "                   default 0.95; 0 = the most likely token, 1 = off)\n"
        "  --seed S         sampling seed (default: from the clock); same seed, same text\n"
        "  --ignore-eos     go on past the tokenizer's end-of-text token (gpt2's <|endoftext|>)\n"
        "  --bench          batch 1, a 16-token prompt (or --prompt), 240 tokens; prints one\n"
        "                   JSON object: prefill/decode tokens/s, quant, rss_mb, ...\n"
        "  --eval FILE.tok  the trainer's eval on a token file (prep's val.tok): windows of\n"
        "                   --seq-len + 1 tokens at multiples of --seq-len; prints one JSON\n"
        "                   object: mean loss, greedy accuracy and, unless --quant fp32, the\n"
        "                   fp32 model's loss and how often its greedy token agrees\n"
        "  --serve ENDPOINT answer JSON requests on a ZeroMQ REP endpoint (tcp://127.0.0.1:PORT):\n"
        "                   {prompt, max_tokens, temperature, top_k, top_p, seed} ->\n"
        "                   {ok, text, tokens, tokens_per_s, ...} (see docs/inference.md);\n"
        "                   until SIGINT/SIGTERM.  A non-loopback endpoint needs a token:\n"
        "                   $" INFER_SERVE_TOKEN_ENV ", which every request then carries as\n"
        "                   \"token\" (requests without it get an error reply)\n"
        "  --save-quantized FILE.h5  quantize once and save the int8 model (with the tokenizer)\n"
        "                   to FILE.h5, which --ckpt then loads without quantizing again;\n"
        "                   FILE.h5 must be new (an existing file is refused)\n"
        "  --seq-len T      --eval window (default n_positions; the trainer's seq_len)\n"
        "  --eval-windows N only the first N windows (the trainer's eval_batches x batch_size)\n"
        "Generation stops after N tokens, at the end-of-text token (printed as nothing) or\n"
        "when the context (n_positions) is full.\n"
        "Exit status: 0 ok, 1 an unusable checkpoint or --eval file, a failed write or an\n"
        "endpoint in use, 2 bad arguments or GPT_ISA (a kernel path: scalar, avx2 or avx512,\n"
        "one this CPU runs).\n");
}

/* ---- arguments --------------------------------------------------------------- */

static int parse_long(const char *s, long long lo, long long hi, long long *v)
{
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno == ERANGE || x < lo || x > hi)
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
    else if (strcmp(flag, "--eval") == 0)
        o->eval = val;
    else if (strcmp(flag, "--serve") == 0)
        o->serve = val;
    else if (strcmp(flag, "--save-quantized") == 0)
        o->save_quantized = val;
    else if (strcmp(flag, "--seq-len") == 0)
        rc = parse_long(val, 1, 1 << 30, &v) ? -1 : (o->seq_len = (int)v, 0);
    else if (strcmp(flag, "--eval-windows") == 0)
        rc = parse_long(val, 1, INT64_MAX, &v) ? -1 : (o->eval_windows = v, 0);
    else if (strcmp(flag, "--quant") == 0)
        rc = infer_quant_parse(val, &o->quant);
    else if (strcmp(flag, "--kv") == 0) {
        rc = infer_kv_parse(val, &o->kv);
        o->kv_given = true;
    }
    else if (strcmp(flag, "-n") == 0)
        rc = parse_long(val, 0, 1 << 30, &v) ? -1 : (o->n = (int)v, 0);
    else if (strcmp(flag, "--top-k") == 0)
        rc = parse_long(val, 0, 1 << 30, &v) ? -1 : (o->top_k = (int)v, 0);
    else if (strcmp(flag, "--seed") == 0)
        rc = parse_long(val, 0, INT64_MAX, &v) ? -1 : (o->seed = (uint64_t)v, 0);
    else if (strcmp(flag, "--temperature") == 0)
        rc = parse_float(val, 0, 100, &o->temperature);
    else if (strcmp(flag, "--top-p") == 0)
        rc = parse_float(val, 0, 1, &o->top_p);
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
        if (strcmp(a, "--ignore-eos") == 0) {
            o->ignore_eos = true;
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
    if ((o->bench != 0) + (o->eval != NULL) + (o->serve != NULL) + (o->save_quantized != NULL) > 1) {
        snprintf(err, errlen, "--bench, --eval, --serve and --save-quantized are separate modes: "
                 "give one");
        return -1;
    }
    if (!o->eval && (o->seq_len || o->eval_windows)) {   /* else silently ignored */
        snprintf(err, errlen, "%s applies to --eval only", o->seq_len ? "--seq-len" : "--eval-windows");
        return -1;
    }
    if (cpu_isa_from_env(err, errlen) != 0 ||
        (o->serve && infer_serve_check(o->serve, err, errlen) != 0))   /* before loading */
        return -1;
    if (o->save_quantized && o->quant != INFER_INT8) {
        snprintf(err, errlen, "--save-quantized writes int8 weights: it needs --quant int8");
        return -1;
    }
    /* before loading: an existing file, perhaps --ckpt itself, is never replaced */
    if (o->save_quantized && fs_require_new(o->save_quantized, "file name", err, errlen) != 0)
        return -1;
    if (!o->kv_given)
        o->kv = o->quant == INFER_FP32 ? INFER_KV_FP32 : INFER_KV_BF16;
    if (o->n < 0)
        o->n = o->bench ? BENCH_NEW_TOKENS : 256;
    if (o->temperature < 0)
        o->temperature = o->bench ? 0.0f : 0.8f;
    return 0;
}

/* ---- generation -------------------------------------------------------------- */

/* Streams each token's text to stdout as it comes. */
typedef struct {
    const tokenizer *tok;
    uint8_t *buf;
    size_t cap;
    int eos;   /* stops generation; -1: none */
} stream_out;

static int emit(void *ctx, int token)
{
    stream_out *o = ctx;
    uint32_t id = (uint32_t)token;
    if (token == o->eos)
        return 1;
    size_t n = tokenizer_decode(o->tok, &id, 1, o->buf, o->cap);
    fwrite(o->buf, 1, n < o->cap ? n : o->cap, stdout);
    fflush(stdout);
    return 0;
}

static void print_bench(const infer_model *m, const options *o, int n_prompt,
                        infer_gen_stats st)
{
    /* decode tokens/s counts every generated token over the time from the end
     * of prefill to the last one (sampling and one forward per token) */
    char onednn_rows[16] = "null";   /* bf16 products through oneDNN from this many rows */
    if (m->quant == INFER_BF16 && m->bf16_gemm_rows != INT_MAX)
        snprintf(onednn_rows, sizeof onednn_rows, "%d", m->bf16_gemm_rows);
    printf("{\"quant\":\"%s\",\"kv\":\"%s\",\"bf16_onednn_rows\":%s,"
           "\"n_prompt\":%d,\"n_generated\":%d,"
           "\"prefill_tokens_per_s\":%.1f,\"decode_tokens_per_s\":%.1f,"
           "\"prefill_s\":%.6f,\"decode_s\":%.6f,\"decode_cpu_s\":%.6f,"
           "\"rss_mb\":%.1f,\"peak_rss_mb\":%.1f,"
           "\"weights_mb\":%.1f,\"threads\":%d,\"context_full\":%s,\"temperature\":%g,"
           "\"vocab_size\":%d,\"n_positions\":%d,\"n_embd\":%d,\"n_layer\":%d,\"n_head\":%d}\n",
           infer_quant_name(m->quant), infer_kv_name(o->kv), onednn_rows, n_prompt,
           st.n_generated,
           st.prefill_s > 0 ? n_prompt / st.prefill_s : 0.0,
           st.decode_s > 0 ? st.n_generated / st.decode_s : 0.0, st.prefill_s, st.decode_s,
           st.decode_cpu_s, process_rss_mb(), process_peak_rss_mb(), m->weight_bytes / 1e6,
           omp_get_max_threads(),
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
    if (n == SIZE_MAX) {
        snprintf(err, errlen, "out of memory encoding the prompt");
        free(ids);
        return -1;
    }
    if (o->bench && !(o->prompt && *o->prompt)) {
        /* the default prompt leaves half of a short context to generate in */
        size_t most = T >= 2 * BENCH_PROMPT_TOKENS ? BENCH_PROMPT_TOKENS : (size_t)(T + 1) / 2;
        if (n > most)
            n = most;
    }
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

/* ---- --eval ----------------------------------------------------------------- */

typedef struct {
    double loss;            /* summed over predicted tokens */
    long long correct;      /* greedy token == the next token */
    long long agree;        /* greedy token == the reference model's */
} eval_sums;

/* One model's run state and scratch for windows of T tokens. */
typedef struct {
    const infer_model *m;
    infer_state s;
    float *logits, *losses;
    int *greedy;
} evaluator;

static int evaluator_init(evaluator *e, const infer_model *m, int T, infer_kv kv, char *err,
                          size_t errlen)
{
    *e = (evaluator){.m = m};
    if (infer_state_create(&e->s, m, T, kv, err, errlen) != 0)
        return -1;
    e->logits = malloc((size_t)T * m->d.vocab_size * sizeof(float));
    e->losses = malloc((size_t)T * sizeof(float));
    e->greedy = malloc((size_t)T * sizeof(int));
    if (!e->logits || !e->losses || !e->greedy) {
        snprintf(err, errlen, "out of memory for --eval");
        return -1;
    }
    return 0;
}

static void evaluator_free(evaluator *e)
{
    if (e->m)
        infer_state_free(&e->s);
    free(e->logits);
    free(e->losses);
    free(e->greedy);
}

/* The windows the trainer's eval cuts from its val split (io/dataset.h): window
 * w is tokens w*T .. w*T+T, for w < (count-1)/T.  ref (NULL: none) runs the
 * same windows for the agreement and its own loss.  V: the tokenizer's
 * vocabulary (the model's rows past it are padding).  Returns 0 or -1. */
static int eval_windows(const token_shard *sh, int T, int V, long long limit, evaluator *e,
                        evaluator *ref, eval_sums *sum, eval_sums *ref_sum, long long *windows,
                        char *err, size_t errlen)
{
    int *toks = malloc((size_t)(T + 1) * sizeof *toks);
    if (!toks) {
        snprintf(err, errlen, "out of memory for --eval");
        return -1;
    }
    *windows = sh->count > 0 ? (long long)((sh->count - 1) / (uint64_t)T) : 0;
    if (limit && limit < *windows)
        *windows = limit;
    for (long long w = 0; w < *windows; w++) {
        for (int t = 0; t <= T; t++) {
            uint32_t id = shard_token(sh, (uint64_t)w * T + t);
            if (id >= (uint32_t)V) {
                snprintf(err, errlen, "token %u at position %llu is out of range for "
                         "the tokenizer's %d tokens", id, (unsigned long long)w * T + t, V);
                free(toks);
                return -1;
            }
            toks[t] = (int)id;
        }
        sum->loss += infer_eval_window(e->m, &e->s, toks, T, V, e->logits, e->losses, e->greedy);
        if (ref)
            ref_sum->loss += infer_eval_window(ref->m, &ref->s, toks, T, V, ref->logits,
                                               ref->losses, ref->greedy);
        for (int t = 0; t < T; t++) {
            sum->correct += e->greedy[t] == toks[t + 1];
            if (ref) {
                ref_sum->correct += ref->greedy[t] == toks[t + 1];
                sum->agree += e->greedy[t] == ref->greedy[t];
            }
        }
    }
    free(toks);
    if (*windows == 0) {
        snprintf(err, errlen, "the token file holds %llu tokens, too few for one window of %d",
                 (unsigned long long)sh->count, T + 1);
        return -1;
    }
    return 0;
}

/* --eval: one JSON object on stdout; ref is the fp32 model or NULL.  Returns
 * the exit status. */
static int run_eval(const options *o, const infer_model *m, const tokenizer *tok,
                    const infer_model *ref)
{
    char err[512];
    int T = o->seq_len ? o->seq_len : m->d.n_positions;
    if (T > m->d.n_positions) {
        fprintf(stderr, "infer: --seq-len %d exceeds n_positions %d\n", T, m->d.n_positions);
        return 2;
    }
    token_shard sh;
    if (shard_open(&sh, o->eval, err, sizeof err) != 0) {
        fprintf(stderr, "infer: %s\n", err);
        return 1;
    }
    evaluator e, r = {0};
    eval_sums sum = {0}, ref_sum = {0};
    long long windows = 0;
    int rc = evaluator_init(&e, m, T, o->kv, err, sizeof err);
    if (rc == 0 && ref)   /* the reference: fp32 weights and cache */
        rc = evaluator_init(&r, ref, T, INFER_KV_FP32, err, sizeof err);
    if (rc == 0)
        rc = eval_windows(&sh, T, tokenizer_vocab_size(tok), o->eval_windows, &e,
                          ref ? &r : NULL, &sum, &ref_sum, &windows, err, sizeof err);
    if (rc == 0) {
        double n = (double)windows * T;
        printf("{\"quant\":\"%s\",\"windows\":%lld,\"seq_len\":%d,\"tokens\":%.0f,"
               "\"loss\":%.6f,\"accuracy\":%.6f", infer_quant_name(m->quant), windows, T, n,
               sum.loss / n, sum.correct / n);
        if (ref)
            printf(",\"ref_quant\":\"%s\",\"ref_loss\":%.6f,\"ref_accuracy\":%.6f,"
                   "\"greedy_agreement\":%.6f,\"loss_increase\":%.6f",
                   infer_quant_name(ref->quant), ref_sum.loss / n, ref_sum.correct / n,
                   sum.agree / n, sum.loss / ref_sum.loss - 1.0);
        printf("}\n");
    } else {
        fprintf(stderr, "infer: %s: %s\n", o->eval, err);
    }
    evaluator_free(&e);
    evaluator_free(&r);
    shard_close(&sh);
    return rc == 0 ? 0 : 1;
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
    if (!toks || !buf || infer_state_create(&s, m, 0, o->kv, err, sizeof err) != 0) {
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
            infer_generate(m, &s, &sp, toks, n_prompt, 3, NULL, NULL);
            infer_sampler_free(&sp);
            infer_sampler_init(&sp, tokenizer_vocab_size(tok), o->temperature, o->top_k,
                               o->top_p, o->seed, err, sizeof err);
            print_bench(m, o, n_prompt,
                        infer_generate(m, &s, &sp, toks, n_prompt, o->n, NULL, NULL));
        } else {
            stream_out out = {tok, buf, cap, o->ignore_eos ? -1 : tokenizer_eos(tok)};
            fwrite(o->prompt ? o->prompt : "", 1, o->prompt ? strlen(o->prompt) : 0, stdout);
            infer_gen_stats st = infer_generate(m, &s, &sp, toks, n_prompt, o->n, emit, &out);
            printf("\n");
            fflush(stdout);   /* the text ends before the summary on a terminal */
            fprintf(stderr, "infer: %d tokens, %.1f tokens/s%s\n", st.n_generated,
                    st.decode_s > 0 ? st.n_generated / st.decode_s : 0.0,
                    st.context_full ? " (stopped: the context is full)"
                    : st.stopped    ? " (stopped: end of text)" : "");
        }
        infer_sampler_free(&sp);
        rc = 0;
    }
    infer_state_free(&s);
    free(toks);
    free(buf);
    return rc;
}

/* --eval: the perplexity, and for a quantized model the fp32 one it is
 * compared with (loaded again from the checkpoint; a --save-quantized file
 * holds no fp32 weights, so it has none).  The exit code. */
static int eval_mode(const options *o, const infer_model *m, const tokenizer *tok)
{
    char err[512];
    infer_model ref = {0};
    infer_q8file *q8 = NULL;   /* opened (1) only for a --save-quantized file */
    bool has_ref = o->quant != INFER_FP32 && infer_q8file_open(o->ckpt, &q8, err, sizeof err) != 1;
    infer_q8file_close(q8);
    tokenizer *tok2 = NULL;
    int rc;
    if (has_ref && infer_load(o->ckpt, INFER_FP32, &ref, &tok2, err, sizeof err) != 0) {
        fprintf(stderr, "infer: %s\n", err);
        rc = 1;
    } else {
        rc = run_eval(o, m, tok, has_ref ? &ref : NULL);
    }
    tokenizer_free(tok2);
    if (has_ref)
        infer_model_free(&ref);
    return rc;
}

/* --save-quantized: the int8 file.  The exit code. */
static int save_mode(const options *o, const infer_model *m, const tokenizer *tok)
{
    char err[512];
    /* no signal thread in this mode, and no product computed while it writes
     * (io/signals.h): a handler may run on any thread */
    fs_atomic_remove_on_signals();   /* Ctrl-C leaves no model-sized OUT.tmp behind */
    int rc = infer_q8file_save(o->save_quantized, m, tok, err, sizeof err) != 0;
    if (rc)
        fprintf(stderr, "infer: %s\n", err);
    else
        fprintf(stderr, "infer: wrote %s (%.1f MB of weights)\n", o->save_quantized,
                m->weight_bytes / 1e6);
    return rc;
}

/* SIGINT and SIGTERM end a service cleanly once it serves; before that (a
 * model still loading) they end the process as usual. */
static atomic_int serving, stop_serving;

static bool on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop_serving, 1);
    return atomic_load(&serving);
}

/* --serve: the ZeroMQ service, until SIGINT or SIGTERM.  The exit code. */
static int serve_mode(const options *o, const infer_model *m, const tokenizer *tok)
{
    char err[512];
    infer_server sv;
    int rc = infer_server_init(&sv, m, tok, o->kv, err, sizeof err) != 0 ||
             infer_serve_bind(&sv, o->serve, err, sizeof err) != 0;
    if (rc == 0) {
        atomic_store(&serving, 1);
        char bound[256];   /* with tcp://HOST:*, the port ZeroMQ picked */
        size_t n = sizeof bound;
        if (zmq_getsockopt(sv.sock, ZMQ_LAST_ENDPOINT, bound, &n) != 0)
            snprintf(bound, sizeof bound, "%s", o->serve);
        fprintf(stderr, "infer: serving on %s\n", bound);   /* bound: a refusal is one line */
        rc = infer_serve(&sv, &stop_serving, err, sizeof err) != 0;
    }
    if (rc)
        fprintf(stderr, "infer: %s\n", err);
    if (sv.m)
        infer_server_free(&sv);
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
    /* before the first thread starts (io/signals.h says why) */
    static const int stops[] = {SIGINT, SIGTERM};
    if (o.serve && signals_start(stops, 2, on_signal) != 0) {
        fprintf(stderr, "infer: cannot start the signal thread: %s\n", strerror(errno));
        return 1;
    }
    infer_model m;
    tokenizer *tok;
    if (infer_load(o.ckpt, o.quant, &m, &tok, err, sizeof err) != 0) {
        fprintf(stderr, "infer: %s\n", err);
        return 1;
    }
    if (o.eval)
        rc = eval_mode(&o, &m, tok);
    else if (o.save_quantized)
        rc = save_mode(&o, &m, tok);
    else if (o.serve)
        rc = serve_mode(&o, &m, tok);
    else
        rc = run(&o, &m, tok);
    infer_model_free(&m);
    tokenizer_free(tok);
    gemm_release();
    errno = 0;   /* the text or JSON is the result: a full disk is no success */
    if (rc == 0 && (fflush(stdout) != 0 || ferror(stdout))) {
        fprintf(stderr, "infer: cannot write the output: %s\n",
                errno ? strerror(errno) : "disk full?");
        rc = 1;
    }
    return rc;
}
