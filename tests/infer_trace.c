/* infer_trace: what build/infer computes, as token ids and logits, for
 * tests/e2e_llamacpp.sh to hold against llama.cpp's on the same file.
 *   infer_trace MODEL QUANT KV gen PROMPT N
 *       greedy generation as build/infer --temperature 0 --ignore-eos runs it
 *       (infer_generate): {"prompt": [ids], "generated": [ids]} on stdout
 *   infer_trace MODEL QUANT KV logits IDS OUT
 *       the ids (a file of whitespace-separated numbers) run as one pass from
 *       position 0: every position's logits, float32 [n, vocab_size], to OUT
 * MODEL is a checkpoint, a saved int8 file or a GGUF file (infer_load).
 * Exit 1 with one line on stderr when something fails, 2 on bad arguments. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer.h"
#include "io/tokenizer.h"

typedef struct {
    int *ids;
    int n;
} collected;

static int collect(void *ctx, int token)
{
    collected *c = ctx;
    c->ids[c->n++] = token;
    return 0;
}

static void print_ids(const char *key, const int *ids, int n, const char *end)
{
    printf("\"%s\": [", key);
    for (int i = 0; i < n; i++)
        printf("%s%d", i ? ", " : "", ids[i]);
    printf("]%s", end);
}

static int generate(const infer_model *m, infer_state *s, const tokenizer *tok,
                    const char *prompt, int n_new)
{
    const int T = m->d.n_positions;
    size_t len = strlen(prompt);
    uint32_t *ids = malloc((len + 1) * sizeof *ids);
    int *toks = malloc((size_t)T * sizeof *toks);
    collected got = {malloc(((size_t)n_new + 1) * sizeof(int)), 0};
    infer_sampler sp = {0};
    char err[256];
    size_t n = ids ? tokenizer_encode(tok, (const uint8_t *)prompt, len, ids) : SIZE_MAX;
    int rc = toks && got.ids && n != SIZE_MAX && n >= 1 && n <= (size_t)T ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "infer_trace: out of memory, or the prompt is empty or too long\n");
    if (rc == 0 && infer_sampler_init(&sp, tokenizer_vocab_size(tok), 0, 0, 1, 1, err, sizeof err)) {
        fprintf(stderr, "infer_trace: %s\n", err);
        rc = -1;
    }
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            toks[i] = (int)ids[i];
        infer_generate(m, s, &sp, toks, (int)n, n_new, collect, &got);
        printf("{");
        print_ids("prompt", toks, (int)n, ", ");
        print_ids("generated", got.ids, got.n, "}\n");
    }
    infer_sampler_free(&sp);
    free(ids);
    free(toks);
    free(got.ids);
    return rc;
}

static int logits(const infer_model *m, infer_state *s, const char *ids_path, const char *out)
{
    const int T = m->d.n_positions, V = m->d.vocab_size;
    int *toks = malloc((size_t)T * sizeof *toks), n = 0;
    float *all = malloc((size_t)T * V * sizeof *all);
    FILE *f = fopen(ids_path, "r");
    while (f && toks && n < T && fscanf(f, "%d", &toks[n]) == 1)
        n += toks[n] >= 0 && toks[n] < V ? 1 : T + 1;   /* an id out of range ends the list, refused */
    int rc = f && toks && all && n >= 1 && n <= T ? 0 : -1;
    if (f)
        fclose(f);
    if (rc != 0) {
        fprintf(stderr, "infer_trace: %s: not 1..%d token ids below %d\n", ids_path, T, V);
    } else {
        infer_forward(m, s, toks, n, 0, all);
        FILE *o = fopen(out, "wb");
        if (!o || fwrite(all, sizeof *all, (size_t)n * V, o) != (size_t)n * V) {
            fprintf(stderr, "infer_trace: cannot write %s\n", out);
            rc = -1;
        }
        if (o && fclose(o) != 0)
            rc = -1;
    }
    free(toks);
    free(all);
    return rc;
}

int main(int argc, char **argv)
{
    infer_quant q;
    infer_kv kv;
    if (argc != 7 || infer_quant_parse(argv[2], &q) || infer_kv_parse(argv[3], &kv) ||
        (strcmp(argv[4], "gen") != 0 && strcmp(argv[4], "logits") != 0)) {
        fprintf(stderr, "usage: infer_trace MODEL int8|bf16|fp32 fp32|bf16 gen PROMPT N\n"
                        "       infer_trace MODEL int8|bf16|fp32 fp32|bf16 logits IDS OUT\n");
        return 2;
    }
    infer_model m;
    infer_state s;
    tokenizer *tok;
    char err[600];
    if (infer_load(argv[1], q, &m, &tok, err, sizeof err) != 0) {
        fprintf(stderr, "infer_trace: %s\n", err);
        return 1;
    }
    const int created = infer_state_create(&s, &m, 0, kv, err, sizeof err) == 0;
    int rc = -1;
    if (!created)
        fprintf(stderr, "infer_trace: %s\n", err);
    else if (strcmp(argv[4], "gen") == 0)
        rc = generate(&m, &s, tok, argv[5], atoi(argv[6]));
    else
        rc = logits(&m, &s, argv[5], argv[6]);
    if (created)
        infer_state_free(&s);
    infer_model_free(&m);
    tokenizer_free(tok);
    return rc == 0 ? 0 : 1;
}
