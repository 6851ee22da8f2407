/* infer: on small random models, KV-cache decoding gives the logits
 * of a full recomputation (gpt2_forward) at every position; a batched prefill
 * equals token-by-token decoding; int8 agrees with fp32 on the greedy next
 * token, and so does bf16, which holds 2-byte weights (and where it widens
 * them, is fp32 on the rounded weights); seeded sampling is reproducible and
 * honours top-k / top-p; a checkpoint written by ckpt_write loads to the same
 * model, and damaged or unrunnable ones, or ones whose /config disagrees with
 * /model, are refused with one line, as are GGUF files whose metadata does
 * not fit their model; --save-quantized has one writer of a file at a time.
 * Users' configs (head sizes 8 to 40, vocabularies of 257, 2 and 1) decode
 * as the trainer's forward computes, in fp32, bf16 and int8, on every path;
 * int8 refuses an n_embd it cannot group. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/fsutil.h"
#include "io/gguf.h"
#include "io/procmem.h"
#include "kernels/bf16mm.h"
#include "kernels/convert.h"
#include "kernels/gemm.h"
#include "infer/infer.h"
#include "infer/q8file.h"
#include "trainer/ckpt_view.h"
#include "tests/infer_from_gpt2.h"
#include "tests/test_util.h"
#include "tests/test_writer.h"

enum { SEQ = 40 };
static const gpt2_dims DIMS = {.vocab_size = 256, .n_positions = 48, .n_embd = 64, .n_layer = 2,
                               .n_head = 4};

static void random_tokens(int *x, int n, int V, uint64_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (int)((seed >> 33) % (uint64_t)V);
    }
}

/* A GPT-2 initialised as the trainer does, with the embeddings scaled up so
 * the logits spread like a trained model's rather than all sitting near 0,
 * and random biases. */
static void make_gpt2_dims(gpt2 *g, const gpt2_dims *d, int T, uint64_t seed)
{
    char err[256];
    gpt2_options o = {0};
    assert_int_equal(gpt2_create(g, d, 1, T, &o, err, sizeof err), 0);
    gpt2_init_params(g, seed);
    for (size_t i = 0; i < (size_t)d->vocab_size * d->n_embd; i++)
        g->p.wte[i] *= 25.0f;
    const size_t C = d->n_embd;
    for (int l = 0; l < d->n_layer; l++) {   /* biases that count (GPT-2 starts them at 0) */
        const block_params *b = &g->p.h[l];
        test_fill(b->qkvb, 3 * C, seed + 4 * l, 0.1f);
        test_fill(b->attprojb, C, seed + 4 * l + 1, 0.1f);
        test_fill(b->fcb, 4 * C, seed + 4 * l + 2, 0.1f);
        test_fill(b->fcprojb, C, seed + 4 * l + 3, 0.1f);
    }
}

static void make_gpt2(gpt2 *g, uint64_t seed)
{
    make_gpt2_dims(g, &DIMS, SEQ, seed);
}

static void make_infer_kv(infer_model *m, infer_state *s, const gpt2 *g, infer_quant q,
                          infer_kv kv)
{
    char err[256];
    assert_int_equal(infer_model_from_gpt2(m, g, q, err, sizeof err), 0);
    /* load picks the row count from which bf16 products go through oneDNN by
     * timing, which a test cannot fix: bf16mm for all unless a test says */
    m->bf16_gemm_rows = INT_MAX;
    assert_int_equal(infer_state_create(s, m, 0, kv, err, sizeof err), 0);
}

static void make_infer(infer_model *m, infer_state *s, const gpt2 *g, infer_quant q)
{
    make_infer_kv(m, s, g, q, INFER_KV_FP32);
}

static void free_infer(infer_model *m, infer_state *s)
{
    infer_state_free(s);
    infer_model_free(m);
}

/* Logits at every position, one token per call. */
static void decode_each(const infer_model *m, infer_state *s, const int *toks, int n, float *out)
{
    int V = m->d.vocab_size;
    for (int t = 0; t < n; t++) {
        infer_forward(m, s, &toks[t], 1, t, NULL);
        memcpy(out + (size_t)t * V, s->logits, V * sizeof(float));
    }
}

/* How far logits got[n x V] are from ref[n x V], accumulated over calls: the
 * squares of the errors and of ref (for a relative L2 error), and how many
 * positions have the same greedy token. */
typedef struct {
    double err2, ref2;
    int agree, total;
} logit_diff;

static void logit_diff_add(logit_diff *d, const float *ref, const float *got, int n, int V)
{
    for (int t = 0; t < n; t++, d->total++)
        d->agree += infer_argmax(ref + (size_t)t * V, V) == infer_argmax(got + (size_t)t * V, V);
    for (size_t i = 0; i < (size_t)n * V; i++) {
        d->err2 += (double)(got[i] - ref[i]) * (got[i] - ref[i]);
        d->ref2 += (double)ref[i] * ref[i];
    }
}

static double logit_diff_rel(const logit_diff *d)
{
    return sqrt(d->err2 / d->ref2);
}

/* Mode q against fp32 on the same model (from model_seed): the full-sequence
 * logits of five random sequences (token_seed, token_seed + 1, ...). */
static logit_diff against_fp32(infer_quant q, uint64_t model_seed, uint64_t token_seed)
{
    enum { RUNS = 5 };
    gpt2 g;
    infer_model mf, mq;
    infer_state sf, sq;
    make_gpt2(&g, model_seed);
    make_infer(&mf, &sf, &g, INFER_FP32);
    make_infer(&mq, &sq, &g, q);
    int toks[SEQ], V = DIMS.vocab_size;
    float *lf = malloc(sizeof(float) * SEQ * V), *lq = malloc(sizeof(float) * SEQ * V);
    logit_diff d = {0};
    for (int r = 0; r < RUNS; r++) {
        random_tokens(toks, SEQ, V, token_seed + r);
        infer_forward(&mf, &sf, toks, SEQ, 0, lf);
        infer_forward(&mq, &sq, toks, SEQ, 0, lq);
        logit_diff_add(&d, lf, lq, SEQ, V);
    }
    free(lf), free(lq);
    free_infer(&mf, &sf), free_infer(&mq, &sq);
    gpt2_destroy(&g);
    return d;
}

static void test_kv_cache_matches_full_recompute(void **state)
{
    (void)state;
    gpt2 g;
    infer_model m;
    infer_state s;
    make_gpt2(&g, 11);
    make_infer(&m, &s, &g, INFER_FP32);
    int toks[SEQ], V = DIMS.vocab_size;
    random_tokens(toks, SEQ, V, 3);
    gpt2_forward(&g, toks, NULL, 1, SEQ);
    float *got = malloc(sizeof(float) * SEQ * V);
    decode_each(&m, &s, toks, SEQ, got);
    for (int t = 0; t < SEQ; t++) {
        char what[64];
        snprintf(what, sizeof what, "logits at position %d", t);
        assert_true(test_close(what, got + t * V, g.logits + t * V, V, 1e-5f, 1e-4f));
    }
    free(got);
    free_infer(&m, &s);
    gpt2_destroy(&g);
}

/* One pass over all tokens, and two chunks, give the token-by-token logits
 * and the same KV cache (int8 exactly: its products do not depend on M). */
/* atol 0 means bit-identical */
static int same(const char *what, const float *a, const float *b, size_t n, float atol, float rtol)
{
    if (atol == 0) {
        if (memcmp(a, b, n * sizeof *a) == 0)
            return 1;
        fprintf(stderr, "%s: not bit-identical\n", what);
        return 0;
    }
    return test_close(what, a, b, n, atol, rtol);
}

/* Rows 0..SEQ-1 of every layer and head of both caches: a's against b's. */
static int same_cache(const infer_model *m, const infer_state *a, const infer_state *b,
                      float atol, float rtol)
{
    const int hs = DIMS.n_embd / DIMS.n_head;
    for (int l = 0; l < DIMS.n_layer; l++)
        for (int h = 0; h < DIMS.n_head; h++) {
            const size_t at = infer_kv_offset(m, l, h, 0), n = (size_t)SEQ * hs;
            if (a->kv == INFER_KV_BF16) {   /* the same bf16 bits */
                if (memcmp((const uint16_t *)a->key_cache + at, (const uint16_t *)b->key_cache + at, n * 2) ||
                    memcmp((const uint16_t *)a->value_cache + at, (const uint16_t *)b->value_cache + at, n * 2))
                    return 0;
            } else if (!same("key cache", (const float *)a->key_cache + at,
                             (const float *)b->key_cache + at, n, atol, rtol) ||
                       !same("value cache", (const float *)a->value_cache + at,
                             (const float *)b->value_cache + at, n, atol, rtol)) {
                return 0;
            }
        }
    return 1;
}

static void check_prefill_rows(infer_quant q, infer_kv kv, float atol, float rtol, int bf16_rows)
{
    gpt2 g;
    infer_model m;
    infer_state s1, s2;
    char err[256];
    make_gpt2(&g, 12);
    make_infer_kv(&m, &s1, &g, q, kv);
    m.bf16_gemm_rows = bf16_rows;
    assert_int_equal(infer_state_create(&s2, &m, 0, kv, err, sizeof err), 0);
    int toks[SEQ], V = DIMS.vocab_size;
    random_tokens(toks, SEQ, V, 4);
    float *each = malloc(sizeof(float) * SEQ * V), *all = malloc(sizeof(float) * SEQ * V);
    decode_each(&m, &s1, toks, SEQ, each);
    infer_forward(&m, &s2, toks, SEQ, 0, all);
    assert_true(same("prefill logits", all, each, (size_t)SEQ * V, atol, rtol));
    assert_true(same("prefill last logits", s2.logits, each + (SEQ - 1) * V, V, atol, rtol));
    assert_true(same_cache(&m, &s2, &s1, atol, rtol));
    infer_forward(&m, &s2, toks, 17, 0, NULL);   /* two chunks: 17 then 23 */
    infer_forward(&m, &s2, toks + 17, SEQ - 17, 17, all);
    assert_true(same("chunked prefill", all, each + 17 * V, (size_t)(SEQ - 17) * V, atol,
                           rtol));
    free(each);
    free(all);
    infer_state_free(&s1);
    infer_state_free(&s2);
    infer_model_free(&m);
    gpt2_destroy(&g);
}

static void check_prefill(infer_quant q, infer_kv kv, float atol, float rtol)
{
    check_prefill_rows(q, kv, atol, rtol, INT_MAX);
}

static void test_prefill_matches_token_by_token_fp32(void **state)
{
    (void)state;
    check_prefill(INFER_FP32, INFER_KV_FP32, 1e-5f, 1e-4f);
}

static void test_prefill_matches_token_by_token_int8(void **state)
{
    (void)state;
    check_prefill(INFER_INT8, INFER_KV_FP32, 0.0f, 0.0f);   /* bit-identical */
}

/* A bf16 cache: prefill and token by token still agree bit for bit (int8),
 * and against the fp32 cache the logits move by bf16's rounding of K and V
 * only, leaving the greedy token where it was. */
static void test_bf16_kv_cache(void **state)
{
    (void)state;
    check_prefill(INFER_INT8, INFER_KV_BF16, 0.0f, 0.0f);
    gpt2 g;
    infer_model m32, m16;
    infer_state s32, s16;
    make_gpt2(&g, 13);
    make_infer_kv(&m32, &s32, &g, INFER_FP32, INFER_KV_FP32);
    make_infer_kv(&m16, &s16, &g, INFER_FP32, INFER_KV_BF16);
    int toks[SEQ], V = DIMS.vocab_size;
    random_tokens(toks, SEQ, V, 5);
    float *a = malloc(sizeof(float) * SEQ * V), *b = malloc(sizeof(float) * SEQ * V);
    decode_each(&m32, &s32, toks, SEQ, a);
    decode_each(&m16, &s16, toks, SEQ, b);
    logit_diff d = {0};
    logit_diff_add(&d, a, b, SEQ, V);
    print_message("bf16 KV cache vs fp32: logits rel. error %.2e, greedy %d/%d\n",
                  logit_diff_rel(&d), d.agree, SEQ);
    assert_true(logit_diff_rel(&d) < 1e-2);
    assert_true(logit_diff_rel(&d) > 0);   /* the cache really is bf16 */
    assert_true(d.agree >= SEQ - 1);
    free(a), free(b);
    free_infer(&m32, &s32), free_infer(&m16, &s16);
    gpt2_destroy(&g);
}

/* Greedy next token of int8 and fp32 at every position of several sequences. */
static void test_int8_agrees_with_fp32(void **state)
{
    (void)state;
    logit_diff d = against_fp32(INFER_INT8, 13, 100);
    fprintf(stderr, "int8 vs fp32: greedy token agrees on %d/%d positions, logits rel. error %.4f\n",
            d.agree, d.total, logit_diff_rel(&d));
    assert_true(d.agree >= 0.95 * d.total);
    assert_true(logit_diff_rel(&d) < 0.02);
}

/* --eval's window: the trainer's loss (gpt2_forward with targets) on the same
 * tokens, per position, and the argmax of its logits as the greedy tokens. */
static void test_eval_window_matches_trainer_loss(void **state)
{
    (void)state;
    gpt2 g;
    infer_model m;
    infer_state s;
    make_gpt2(&g, 16);
    make_infer(&m, &s, &g, INFER_FP32);
    int toks[SEQ + 1], greedy[SEQ], V = DIMS.vocab_size;
    random_tokens(toks, SEQ + 1, V, 8);
    float *logits = malloc(sizeof(float) * SEQ * V), losses[SEQ];
    double sum = infer_eval_window(&m, &s, toks, SEQ, V, logits, losses, greedy);
    float mean = gpt2_forward(&g, toks, toks + 1, 1, SEQ);
    assert_true(test_close("eval losses", losses, g.losses, SEQ, 1e-5f, 1e-4f));
    assert_true(fabs(sum / SEQ - mean) <= 1e-4 * mean);
    for (int t = 0; t < SEQ; t++)
        assert_int_equal(greedy[t], infer_argmax(g.logits + (size_t)t * V, V));
    free(logits);
    free_infer(&m, &s);
    gpt2_destroy(&g);
}

/* A vocabulary padded past the tokenizer's R tokens (as llm.c pads 50257 to
 * 50304): the trainer masks the padding rows' logits to -inf (vocab_real),
 * and so does --eval's window, so its losses are the trainer's and its greedy
 * tokens real ones, though the padding rows are made to dominate the logits. */
static void test_eval_window_masks_padding(void **state)
{
    (void)state;
    const int R = 200, V = DIMS.vocab_size, C = DIMS.n_embd;
    char err[256];
    gpt2 g;
    gpt2_options o = {.vocab_real = R};
    assert_int_equal(gpt2_create(&g, &DIMS, 1, SEQ, &o, err, sizeof err), 0);
    gpt2_init_params(&g, 17);
    for (size_t i = 0; i < (size_t)V * C; i++)
        g.p.wte[i] *= i < (size_t)R * C ? 25.0f : 400.0f;
    infer_model m;
    infer_state s;
    make_infer(&m, &s, &g, INFER_FP32);
    int toks[SEQ + 1], greedy[SEQ];
    random_tokens(toks, SEQ + 1, R, 9);
    float *logits = malloc(sizeof(float) * SEQ * V), losses[SEQ];
    double sum = infer_eval_window(&m, &s, toks, SEQ, R, logits, losses, greedy);
    float mean = gpt2_forward(&g, toks, toks + 1, 1, SEQ);
    assert_true(test_close("padded eval losses", losses, g.losses, SEQ, 1e-5f, 1e-4f));
    assert_true(fabs(sum / SEQ - mean) <= 1e-4 * mean);
    for (int t = 0; t < SEQ; t++) {
        assert_true(greedy[t] < R);
        assert_int_equal(greedy[t], infer_argmax(g.logits + (size_t)t * V, V));
    }
    free(logits);
    free_infer(&m, &s);
    gpt2_destroy(&g);
}

/* int8 mode holds wte only as the LM head's int8 rows, which the embedding
 * is read from: no fp32 copy of V x C floats. */
static void test_int8_holds_wte_once(void **state)
{
    (void)state;
    gpt2 g;
    infer_model mf, mi;
    char err[256];
    make_gpt2(&g, 15);
    assert_int_equal(infer_model_from_gpt2(&mf, &g, INFER_FP32, err, sizeof err), 0);
    assert_int_equal(infer_model_from_gpt2(&mi, &g, INFER_INT8, err, sizeof err), 0);
    assert_null(mi.wte);
    const size_t V = DIMS.vocab_size, C = DIMS.n_embd, L = DIMS.n_layer;
    /* fp32's floats less wte and the matrices, then ~1 byte a weight for those */
    const size_t floats = mf.weight_bytes / 4 - V * C - L * 12 * C * C;
    print_message("weights: fp32 %zu bytes, int8 %zu\n", mf.weight_bytes, mi.weight_bytes);
    assert_true(mi.weight_bytes < 4 * floats + 1.2 * (V * C + L * 12 * C * C));
    infer_model_free(&mf);
    infer_model_free(&mi);
    gpt2_destroy(&g);
}

/* bf16 mode holds the matrices and the tied LM head in 2 bytes a weight
 * (bf16mm), each the nearest bf16, and wte only there. */
static void test_bf16_holds_2_bytes(void **state)
{
    (void)state;
    gpt2 g;
    infer_model mf, mb;
    char err[256];
    make_gpt2(&g, 14);
    assert_int_equal(infer_model_from_gpt2(&mf, &g, INFER_FP32, err, sizeof err), 0);
    assert_int_equal(infer_model_from_gpt2(&mb, &g, INFER_BF16, err, sizeof err), 0);
    assert_null(mb.wte);
    assert_null(mb.h[0].qkv.w);
    assert_non_null(mb.h[0].qkv.wh);
    print_message("weights: fp32 %zu bytes, bf16 %zu\n", mf.weight_bytes, mb.weight_bytes);
    assert_true(mb.weight_bytes < 0.6 * mf.weight_bytes);
    const int C = DIMS.n_embd;
    float row[64], want[64];
    for (int token = 0; token < DIMS.vocab_size; token += 37) {
        bf16mm_column(row, mb.lm_head.wh, C, token);
        memcpy(want, g.p.wte + (size_t)token * C, sizeof want);
        round_to_bf16(want, C);
        assert_memory_equal(row, want, sizeof row);
    }
    infer_model_free(&mf);
    infer_model_free(&mb);
    gpt2_destroy(&g);
}

/* Prefill and token by token: the same bits (bf16mm's rows do not depend on
 * how many there are), with either cache. */
static void test_prefill_matches_token_by_token_bf16(void **state)
{
    (void)state;
    check_prefill(INFER_BF16, INFER_KV_FP32, 0.0f, 0.0f);
    check_prefill(INFER_BF16, INFER_KV_BF16, 0.0f, 0.0f);
}

/* Through oneDNN's bf16 matmul on a view of bf16mm's bytes (every product
 * of 2 rows or more), a prefill sums in another order than decode: logits
 * and cache agree to rounding, not to the bit.  Load gives every matrix a
 * view where oneDNN has native bf16 products and n_embd is a multiple of 32,
 * and none elsewhere. */
static void test_prefill_bf16_through_onednn(void **state)
{
    (void)state;
    gpt2 g;
    infer_model m;
    char err[256];
    make_gpt2(&g, 12);
    assert_int_equal(infer_model_from_gpt2(&m, &g, INFER_BF16, err, sizeof err), 0);
    const bool views = m.h[0].fc.wg != NULL;
    print_message("bf16 products through oneDNN from %d rows (timed at load)\n",
                  m.bf16_gemm_rows);
    for (int l = 0; l < DIMS.n_layer; l++) {
        const infer_block *b = &m.h[l];
        assert_true(!b->qkv.wg == !views && !b->attproj.wg == !views && !b->fcproj.wg == !views);
    }
    assert_true(!m.lm_head.wg == !views);
    assert_true(views || m.bf16_gemm_rows == INT_MAX);
    assert_true(m.bf16_gemm_rows >= 2);
    infer_model_free(&m);
    gpt2_destroy(&g);
    if (!views) {
        test_skip("infer bf16 prefill through oneDNN", "oneDNN has no native bf16 product here");
        return;
    }
    /* vdpbf16ps rounds the activations to bf16 as oneDNN does, so only the
     * order of the sums differs; widening bf16mm keeps them fp32 */
    const bool dot = bf16mm_path_active() == BF16MM_DOT;
    check_prefill_rows(INFER_BF16, INFER_KV_FP32, dot ? 1e-5f : 1e-2f, dot ? 1e-4f : 1e-2f, 2);
}

/* Where bf16 widens (no AVX512-BF16, or GPT_ISA below avx512) it is fp32's
 * decode on the rounded weights: the blocks give gemv_n's bits, only the LM
 * head sums in another order, so the logits agree to rounding and every
 * greedy token is the same.  Forced here on each widening ISA this CPU has
 * (the AVX-512 widening kernel is checked against gemv_n in test_bf16mm). */
static void test_bf16_widen_is_fp32_on_rounded_weights(void **state)
{
    (void)state;
    gpt2 g;
    infer_model mf, mb;
    infer_state sf, sb;
    make_gpt2(&g, 15);
    make_infer(&mb, &sb, &g, INFER_BF16);
    round_to_bf16(g.params, g.num_params);
    make_infer(&mf, &sf, &g, INFER_FP32);
    int toks[SEQ], V = DIMS.vocab_size;
    random_tokens(toks, SEQ, V, 6);
    float *a = malloc(sizeof(float) * SEQ * V), *b = malloc(sizeof(float) * SEQ * V);
    const isa_t saved = cpu_isa();
    for (int isa = ISA_SCALAR; isa <= ISA_AVX2; isa++) {
        if (!cpu_isa_supported((isa_t)isa)) {
            print_message("SKIP bf16 widening on %s: this CPU cannot run it\n",
                          cpu_isa_name((isa_t)isa));
            continue;
        }
        cpu_set_isa((isa_t)isa);
        decode_each(&mf, &sf, toks, SEQ, a);
        decode_each(&mb, &sb, toks, SEQ, b);
        assert_true(test_close("bf16 widened vs fp32 on rounded weights", b, a, (size_t)SEQ * V,
                               1e-4f, 1e-5f));
        logit_diff d = {0};
        logit_diff_add(&d, a, b, SEQ, V);
        assert_int_equal(d.agree, SEQ);   /* every greedy token */
    }
    cpu_set_isa(saved);
    free(a), free(b);
    free_infer(&mf, &sf), free_infer(&mb, &sb);
    gpt2_destroy(&g);
}

/* On the active path (vdpbf16ps where the CPU has it: the activations are
 * rounded too), bf16 stays close to fp32 and picks the same greedy tokens. */
static void test_bf16_agrees_with_fp32(void **state)
{
    (void)state;
    logit_diff d = against_fp32(INFER_BF16, 17, 200);
    print_message("bf16 (%s) vs fp32: greedy token agrees on %d/%d positions, logits rel. "
                  "error %.4f\n", bf16mm_path_name(bf16mm_path_active()), d.agree, d.total,
                  logit_diff_rel(&d));
    assert_true(d.agree >= 0.95 * d.total);
    assert_true(logit_diff_rel(&d) < 0.02);
    assert_true(logit_diff_rel(&d) > 0);   /* the weights really are bf16 */
}

/* Users' configs, on every path: decoding token by token with the KV cache
 * gives, at each position, the logits of the trainer's forward over that
 * prefix (fp32: as test_kv_cache_matches_full_recompute; bf16 and int8: as
 * test_bf16_agrees_with_fp32 and test_int8_agrees_with_fp32 against fp32),
 * and a prefill of the whole prompt the same bits as the tokens one by one
 * (bf16 and int8; fp32 to its tolerance).  Head sizes 8, 12, 20, 24, 40;
 * vocabularies 257, 2 and 1; one layer; int8 needs n_embd a multiple of 32.
 * The bf16 and int8 runs keep a bf16 cache, infer's default for them. */
typedef struct {
    gpt2_dims d;
    int T;
    bool int8;   /* n_embd a multiple of Q8_GS */
} infer_config;

static const infer_config infer_configs[] = {
    {{.vocab_size = 257, .n_positions = 17, .n_embd = 40, .n_layer = 1, .n_head = 5}, 17, false},
    {{.vocab_size = 257, .n_positions = 20, .n_embd = 72, .n_layer = 2, .n_head = 3}, 17, false},
    {{.vocab_size = 2, .n_positions = 3, .n_embd = 100, .n_layer = 1, .n_head = 5}, 3, false},
    {{.vocab_size = 257, .n_positions = 17, .n_embd = 96, .n_layer = 2, .n_head = 8}, 17, true},
    {{.vocab_size = 257, .n_positions = 9, .n_embd = 160, .n_layer = 1, .n_head = 4}, 9, true},
    {{.vocab_size = 1, .n_positions = 2, .n_embd = 32, .n_layer = 1, .n_head = 4}, 2, true},
    {{.vocab_size = 257, .n_positions = 9, .n_embd = 75, .n_layer = 1, .n_head = 3}, 9, false},
    {{.vocab_size = 33, .n_positions = 5, .n_embd = 25, .n_layer = 2, .n_head = 5}, 5, false},
};

static void check_odd_decode(const infer_config *c, const gpt2 *g, const float *full,
                             const int *toks, infer_quant q)
{
    const int T = c->T, V = c->d.vocab_size;
    const infer_kv kv = q == INFER_FP32 ? INFER_KV_FP32 : INFER_KV_BF16;
    infer_model m;
    infer_state s1, s2;
    char err[256], what[128];
    make_infer_kv(&m, &s1, g, q, kv);
    assert_int_equal(infer_state_create(&s2, &m, 0, kv, err, sizeof err), 0);
    float *each = malloc(sizeof(float) * T * V), *all = malloc(sizeof(float) * T * V);
    assert_true(each && all);
    decode_each(&m, &s1, toks, T, each);
    infer_forward(&m, &s2, toks, T, 0, all);
    snprintf(what, sizeof what, "%s decode [%s C=%d H=%d V=%d T=%d]", infer_quant_name(q),
             cpu_isa_name(cpu_isa()), c->d.n_embd, c->d.n_head, V, T);
    if (q == INFER_FP32) {
        assert_true(test_close(what, each, full, (size_t)T * V, 1e-5f, 1e-4f));
        assert_true(test_close(what, all, each, (size_t)T * V, 1e-5f, 1e-4f));
    } else {
        logit_diff d = {0};
        logit_diff_add(&d, full, each, T, V);
        if (!(d.agree >= 0.95 * d.total) || !(logit_diff_rel(&d) < 0.02))
            fail_msg("%s: greedy agrees on %d/%d, logits rel. error %.4f", what, d.agree,
                     d.total, logit_diff_rel(&d));
        assert_true(same(what, all, each, (size_t)T * V, 0.0f, 0.0f));
    }
    if (q == INFER_BF16 && m.h[0].fc.wg) {
        /* through oneDNN on the same bytes, activations rounded to bf16:
         * against vdpbf16ps, which rounds them too, the sums' order and the
         * bf16 cache's roundings that it moves; where bf16mm widens, bf16's
         * rounding of the activations */
        m.bf16_gemm_rows = 2;
        infer_forward(&m, &s2, toks, T, 0, all);
        snprintf(what, sizeof what, "bf16 prefill through oneDNN [%s C=%d H=%d V=%d T=%d]",
                 cpu_isa_name(cpu_isa()), c->d.n_embd, c->d.n_head, V, T);
        logit_diff d = {0};
        logit_diff_add(&d, each, all, T, V);
        print_message("%s: logits rel. error %.2e\n", what, logit_diff_rel(&d));
        const bool dot = bf16mm_path_active() == BF16MM_DOT;
        if (!(d.agree >= (dot ? 1.0 : 0.95) * d.total) ||
            !(logit_diff_rel(&d) < (dot ? 1e-4 : 1e-2)))
            fail_msg("%s: greedy agrees on %d/%d, logits rel. error %.2e", what, d.agree,
                     d.total, logit_diff_rel(&d));
    }
    free(each), free(all);
    infer_state_free(&s1), infer_state_free(&s2);
    infer_model_free(&m);
}

static void test_odd_configs_decode_matches_forward(void **state)
{
    (void)state;
    const isa_t saved = cpu_isa();
    for (int isa = ISA_SCALAR; isa < ISA_COUNT; isa++) {
        if (!test_isa_runs((isa_t)isa, "infer"))
            continue;
        cpu_set_isa((isa_t)isa);   /* before the models: int8 picks its layout at load */
        for (size_t k = 0; k < sizeof infer_configs / sizeof infer_configs[0]; k++) {
            const infer_config *c = &infer_configs[k];
            const int T = c->T, V = c->d.vocab_size;
            gpt2 g;
            make_gpt2_dims(&g, &c->d, T, 60 + k);
            int *toks = malloc(sizeof(int) * T);
            float *full = malloc(sizeof(float) * T * V);
            assert_true(toks && full);
            random_tokens(toks, T, V, 70 + k);
            gpt2_forward(&g, toks, NULL, 1, T);
            memcpy(full, g.logits, sizeof(float) * T * V);
            check_odd_decode(c, &g, full, toks, INFER_FP32);
            check_odd_decode(c, &g, full, toks, INFER_BF16);
            if (c->int8)
                check_odd_decode(c, &g, full, toks, INFER_INT8);
            free(toks), free(full);
            gpt2_destroy(&g);
        }
    }
    cpu_set_isa(saved);
}

/* int8 with n_embd not a multiple of 32: refused with one line, not run. */
static void test_int8_refuses_odd_width(void **state)
{
    (void)state;
    const gpt2_dims d = {.vocab_size = 257, .n_positions = 8, .n_embd = 40, .n_layer = 1,
                         .n_head = 5};
    gpt2 g;
    infer_model m;
    char err[256] = "";
    make_gpt2_dims(&g, &d, 8, 80);
    assert_int_equal(infer_model_from_gpt2(&m, &g, INFER_INT8, err, sizeof err), -1);
    print_message("refused: %s\n", err);
    assert_non_null(strstr(err, "n_embd 40 is not a multiple of 32"));
    assert_null(strchr(err, '\n'));
    assert_int_equal(infer_check_dims(&d, INFER_FP32, err, sizeof err), 0);
    assert_int_equal(infer_check_dims(&d, INFER_BF16, err, sizeof err), 0);
    gpt2_destroy(&g);
}

static void sample_run(int *out, int n, const float *logits, int V, float temp, int k, float p,
                       uint64_t seed)
{
    infer_sampler s;
    char err[128];
    assert_int_equal(infer_sampler_init(&s, V, temp, k, p, seed, err, sizeof err), 0);
    for (int i = 0; i < n; i++)
        out[i] = infer_sample(&s, logits);
    infer_sampler_free(&s);
}

/* on_token for generate: ends generation at its stop-th call. */
typedef struct {
    int calls, stop;
} stop_after;

static int stop_at_call(void *ctx, int token)
{
    stop_after *a = ctx;
    (void)token;
    return ++a->calls == a->stop;
}

/* n_generated counts the tokens kept: not the one on_token ended generation
 * on (the end-of-text token, no part of the text a caller prints). */
static void test_generate_counts_the_tokens_kept(void **state)
{
    (void)state;
    gpt2 g;
    infer_model m;
    infer_state s;
    infer_sampler sp;
    char err[128];
    int toks[48] = {1, 2, 3};
    make_gpt2(&g, 5);
    make_infer(&m, &s, &g, INFER_FP32);
    assert_int_equal(infer_sampler_init(&sp, DIMS.vocab_size, 0, 0, 1, 1, err, sizeof err), 0);
    stop_after a = {.stop = 3};
    infer_gen_stats st = infer_generate(&m, &s, &sp, toks, 3, 10, stop_at_call, &a);
    assert_int_equal(a.calls, 3);
    assert_true(st.stopped && !st.context_full);
    assert_int_equal(st.n_generated, 2);
    a = (stop_after){.stop = 0};   /* never stops: all n_new are kept */
    st = infer_generate(&m, &s, &sp, toks, 3, 10, stop_at_call, &a);
    assert_true(a.calls == 10 && st.n_generated == 10 && !st.stopped);
    infer_sampler_free(&sp);
    free_infer(&m, &s);
    gpt2_destroy(&g);
}

static void test_sampling(void **state)
{
    (void)state;
    enum { V = 200, N = 400 };
    float logits[V];
    int a[N], b[N];
    test_fill(logits, V, 9, 3.0f);
    int best = infer_argmax(logits, V);
    sample_run(a, N, logits, V, 1.0f, 0, 1.0f, 42);   /* same seed, same tokens */
    sample_run(b, N, logits, V, 1.0f, 0, 1.0f, 42);
    assert_memory_equal(a, b, sizeof a);
    sample_run(b, N, logits, V, 1.0f, 0, 1.0f, 43);
    assert_true(memcmp(a, b, sizeof a) != 0);
    sample_run(a, N, logits, V, 0.8f, 40, 0.9f, 7);
    sample_run(b, N, logits, V, 0.8f, 40, 0.9f, 7);
    assert_memory_equal(a, b, sizeof a);
    sample_run(a, 20, logits, V, 0.0f, 0, 1.0f, 1);   /* greedy, and its equivalents */
    sample_run(a + 20, 20, logits, V, 1.0f, 1, 1.0f, 1);
    sample_run(a + 40, 20, logits, V, 1.0f, 0, 1e-6f, 1);
    for (int i = 0; i < 60; i++)
        assert_int_equal(a[i], best);
    /* top-k 3: only the three largest logits ever come out, and all of them do */
    float sorted[V];
    memcpy(sorted, logits, sizeof sorted);
    for (int i = 0; i < 3; i++) {   /* partial selection sort: sorted[0..2] the largest */
        int j = i + infer_argmax(sorted + i, V - i);
        float t = sorted[i];
        sorted[i] = sorted[j];
        sorted[j] = t;
    }
    int seen[3] = {0};
    sample_run(a, N, logits, V, 10.0f, 3, 1.0f, 5);
    for (int i = 0; i < N; i++) {
        int hit = -1;
        for (int j = 0; j < 3; j++)
            if (logits[a[i]] == sorted[j])
                hit = j;
        assert_true(hit >= 0);
        seen[hit] = 1;
    }
    assert_true(seen[0] && seen[1] && seen[2]);
}

/* ---- checkpoints ---- */

static void write_ckpt(const char *path, gpt2 *g, int n_embd_attr)
{
    run_config cfg;
    adamw_state opt;
    char err[256];
    config_defaults(&cfg);
    cfg.vocab_size = DIMS.vocab_size;
    cfg.n_positions = DIMS.n_positions;
    cfg.n_embd = n_embd_attr;
    cfg.n_layer = DIMS.n_layer;
    cfg.n_head = DIMS.n_head;
    assert_int_equal(config_finalize(&cfg, err, sizeof err), 0);
    assert_int_equal(optimizer_create(&opt, g->num_params, err, sizeof err), 0);
    ckpt_view v;
    assert_int_equal(ckpt_view_init(&v, &cfg, g, &opt, err, sizeof err), 0);
    v.s.train = (ckpt_train_info){.step = 1, .loss_scale = 1};
    assert_int_equal(ckpt_write(path, &v.s, err, sizeof err), 0);
    ckpt_view_free(&v);
    optimizer_destroy(&opt);
}

static void expect_refused(const char *path, infer_quant q, const char *want)
{
    infer_model m;
    tokenizer *tok = (tokenizer *)1;
    char err[512] = "";
    assert_int_equal(infer_load(path, q, &m, &tok, err, sizeof err), -1);
    assert_null(strchr(err, '\n'));
    if (!strstr(err, want))
        fprintf(stderr, "error '%s' does not mention '%s'\n", err, want);
    assert_non_null(strstr(err, want));
}

static void test_checkpoint_load(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_infer_XXXXXX", path[128], cmd[160], err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/ckpt.h5", dir);
    gpt2 g;
    make_gpt2(&g, 15);
    write_ckpt(path, &g, DIMS.n_embd);

    infer_model a, b;
    infer_state sa, sb;
    tokenizer *tok = NULL;
    if (infer_load(path, INFER_FP32, &a, &tok, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_string_equal(tokenizer_type(tok), "byte");
    make_infer(&b, &sb, &g, INFER_FP32);
    assert_int_equal(infer_state_create(&sa, &a, 0, INFER_KV_FP32, err, sizeof err), 0);
    int toks[SEQ];
    random_tokens(toks, SEQ, DIMS.vocab_size, 6);
    infer_forward(&a, &sa, toks, SEQ, 0, NULL);
    infer_forward(&b, &sb, toks, SEQ, 0, NULL);
    assert_memory_equal(sa.logits, sb.logits, DIMS.vocab_size * sizeof(float));
    free_infer(&a, &sa), free_infer(&b, &sb);
    tokenizer_free(tok);

    expect_refused("/tmp/no/such/ckpt.h5", INFER_FP32, "No such file");
    snprintf(cmd, sizeof cmd, "head -c 20000 %s > %s/half.h5", path, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/half.h5", dir);
    expect_refused(path, INFER_FP32, "damaged");
    /* n_embd 48 is not a multiple of 32: int8 cannot run it, fp32 can */
    gpt2 g48;
    gpt2_dims d48 = DIMS;
    d48.n_embd = 48;
    gpt2_options o = {0};
    assert_int_equal(gpt2_create(&g48, &d48, 1, 8, &o, err, sizeof err), 0);
    gpt2_init_params(&g48, 1);
    snprintf(path, sizeof path, "%s/c48.h5", dir);
    write_ckpt(path, &g48, 48);
    expect_refused(path, INFER_INT8, "not a multiple of 32");
    assert_int_equal(infer_load(path, INFER_FP32, &a, &tok, err, sizeof err), 0);
    infer_model_free(&a);
    tokenizer_free(tok);
    gpt2_destroy(&g48);
    /* a weight int8 cannot hold (its group's scale would pass fp16's largest) */
    g.p.h[1].fcw[7] = 1e7f;
    snprintf(path, sizeof path, "%s/big.h5", dir);
    write_ckpt(path, &g, DIMS.n_embd);
    expect_refused(path, INFER_INT8, "transformer.h.1.mlp.c_fc.weight has a weight of 1e+07");
    assert_int_equal(infer_load(path, INFER_FP32, &a, &tok, err, sizeof err), 0);
    infer_model_free(&a);
    tokenizer_free(tok);

    gpt2_destroy(&g);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* /config's attribute key := value (the dimensions the loader is told). */
static void set_config(const char *path, const char *key, long long value)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "/config", H5P_DEFAULT);
    hid_t a = H5Aopen(g, key, H5P_DEFAULT);
    assert_true(H5Awrite(a, H5T_NATIVE_LLONG, &value) >= 0);
    H5Aclose(a);
    H5Gclose(g);
    H5Fclose(f);
}

/* A /config that disagrees with /model is refused before the weights are
 * allocated at its size: 1M positions (the most the dimensions allow) had
 * 256 MB of wpe zeroed before its shape was seen, and one layer fewer than /model holds ran part of it. */
static void test_config_disagrees_with_model(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_infer_XXXXXX", path[128], cmd[160];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/ckpt.h5", dir);
    gpt2 g;
    make_gpt2(&g, 21);
    write_ckpt(path, &g, DIMS.n_embd);
    set_config(path, "n_positions", 1 << 20);
    const double peak = process_peak_rss_mb();
    expect_refused(path, INFER_FP32, "wpe.weight is not a float tensor of shape [1048576,64]");
    expect_refused(path, INFER_INT8, "wpe.weight is not a float tensor of shape [1048576,64]");
    assert_true(process_peak_rss_mb() - peak < 100);
    write_ckpt(path, &g, DIMS.n_embd);
    set_config(path, "n_layer", DIMS.n_layer - 1);
    expect_refused(path, INFER_INT8, "/config n_layer is 1 but /model holds more blocks");
    gpt2_destroy(&g);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Overwrites element 0 of an int8 dataset in place (its checksum then lies). */
static void poke_int8(const char *path, const char *dataset, int8_t value)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, dataset, H5P_DEFAULT);
    hid_t fs = H5Dget_space(d);
    hsize_t start[2] = {0, 0}, one[2] = {1, 1};
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, one, NULL);
    hid_t ms = H5Screate_simple(2, one, NULL);
    assert_true(H5Dwrite(d, H5T_NATIVE_INT8, ms, fs, H5P_DEFAULT, &value) >= 0);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
    H5Fclose(f);
}

/* Element 0 of a float dataset := value, with its checksum attribute made
 * to match (a file as an older build would have written it). */
static void set_first_float(const char *path, const char *dataset, float value)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, dataset, H5P_DEFAULT);
    hid_t fs = H5Dget_space(d);
    const size_t n = (size_t)H5Sget_simple_extent_npoints(fs);
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    assert_true(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    x[0] = value;
    assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    const uint64_t sum = ckpt_checksum(x, n);
    hid_t a = H5Aopen(d, "checksum", H5P_DEFAULT);
    assert_true(H5Awrite(a, H5T_NATIVE_UINT64, &sum) >= 0);
    H5Aclose(a);
    free(x);
    H5Sclose(fs);
    H5Dclose(d);
    H5Fclose(f);
}

/* /config q8_group_size := an array of n int64 values where one belongs. */
static void make_group_size_array(const char *path, int n)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "/config", H5P_DEFAULT);
    assert_true(H5Adelete(g, "q8_group_size") >= 0);
    hsize_t dims[1] = {(hsize_t)n};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t a = H5Acreate2(g, "q8_group_size", H5T_NATIVE_INT64, sp, H5P_DEFAULT, H5P_DEFAULT);
    int64_t *v = calloc((size_t)n, sizeof *v);
    assert_non_null(v);
    for (int i = 0; i < n; i++)
        v[i] = Q8_GS;
    assert_true(H5Awrite(a, H5T_NATIVE_INT64, v) >= 0);
    free(v);
    H5Aclose(a);
    H5Sclose(sp);
    H5Gclose(g);
    H5Fclose(f);
}

/* The address space this process maps now, in bytes (VmSize). */
static rlim_t mapped_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f) && sscanf(line, "VmSize: %llu kB", &kb) != 1)
        ;
    if (f)
        fclose(f);
    assert_true(kb > 0);
    return (rlim_t)kb * 1024;
}

/* expect_refused (int8) with 512 MB of address space to spare: a load that
 * allocated at /config's size before reading the shapes it disagrees with
 * ran out of memory instead, and said so. */
static void expect_refused_unallocated(const char *path, const char *want)
{
    struct rlimit was, lim;
    assert_int_equal(getrlimit(RLIMIT_AS, &was), 0);
    lim = was;
    lim.rlim_cur = mapped_bytes() + ((rlim_t)512 << 20);
    if (was.rlim_max != RLIM_INFINITY && lim.rlim_cur > was.rlim_max)
        lim.rlim_cur = was.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_AS, &lim), 0);
    infer_model m;
    tokenizer *tok = NULL;
    char err[512] = "";
    const int rc = infer_load(path, INFER_INT8, &m, &tok, err, sizeof err);
    assert_int_equal(setrlimit(RLIMIT_AS, &was), 0);   /* before any assertion can leave */
    assert_int_equal(rc, -1);
    assert_null(strchr(err, '\n'));
    if (!strstr(err, want))
        fail_msg("error '%s' does not mention '%s'", err, want);
}

/* --save-quantized: the file loads to the very int8 weights of quantizing the
 * checkpoint at load, so the logits are bit-identical; it is refused when
 * damaged, and in any precision but int8. */
static void *alloc_checked(size_t bytes)
{
    void *p = malloc(bytes);
    assert_non_null(p);
    return p;
}

/* l's int8 values and scales as q8_pack_weights made them, whichever form m holds them in. */
static void int8_values(const infer_model *m, const infer_linear *l, int8_t *wq, float *ws)
{
    if (l->wv) {
        q8_decode_unpack(m->decode_path, wq, ws, l->wv, l->in, l->out);
    } else {
        memcpy(wq, l->wq, (size_t)l->in * l->out);
        memcpy(ws, l->ws, (size_t)l->in * l->out / Q8_GS * sizeof *ws);
    }
}

static bool same_int8(const infer_model *ma, const infer_linear *a, const infer_model *mb,
                      const infer_linear *b)
{
    const size_t n = (size_t)a->in * a->out;
    int8_t *qa = alloc_checked(n), *qb = alloc_checked(n);
    float *sa = alloc_checked(n / Q8_GS * sizeof *sa), *sb = alloc_checked(n / Q8_GS * sizeof *sb);
    int8_values(ma, a, qa, sa);
    int8_values(mb, b, qb, sb);
    bool same = b->in == a->in && b->out == a->out && memcmp(qa, qb, n) == 0 &&
                memcmp(sa, sb, n / Q8_GS * sizeof *sa) == 0;
    free(qa), free(qb), free(sa), free(sb);
    return same;
}

/* In a new directory dir ("/tmp/test_infer_XXXXXX"): a seed-17 model's
 * checkpoint ck, loaded as the int8 model *m, *tok, and the name qf of a
 * --save-quantized file beside it (ck and qf: 128 bytes). */
static void int8_model_in_new_dir(char *dir, char *ck, char *qf, infer_model *m, tokenizer **tok)
{
    char err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(ck, 128, "%s/ckpt.h5", dir);
    snprintf(qf, 128, "%s/q8.h5", dir);
    gpt2 g;
    make_gpt2(&g, 17);
    write_ckpt(ck, &g, DIMS.n_embd);
    gpt2_destroy(&g);
    *tok = NULL;
    assert_int_equal(infer_load(ck, INFER_INT8, m, tok, err, sizeof err), 0);
}

static void test_save_quantized(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_infer_XXXXXX", ck[128], qf[128], cmd[300], err[512];
    infer_model a, b;
    infer_state sa, sb;
    tokenizer *ta, *tb = NULL;
    int8_model_in_new_dir(dir, ck, qf, &a, &ta);
    if (infer_q8file_save(qf, &a, ta, err, sizeof err) != 0)
        fail_msg("%s", err);
    if (infer_load(qf, INFER_INT8, &b, &tb, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_string_equal(tokenizer_type(tb), tokenizer_type(ta));
    assert_int_equal(b.weight_bytes, a.weight_bytes);
    for (int l = 0; l < DIMS.n_layer; l++) {
        assert_true(same_int8(&a, &a.h[l].qkv, &b, &b.h[l].qkv));
        assert_true(same_int8(&a, &a.h[l].attproj, &b, &b.h[l].attproj));
        assert_true(same_int8(&a, &a.h[l].fc, &b, &b.h[l].fc));
        assert_true(same_int8(&a, &a.h[l].fcproj, &b, &b.h[l].fcproj));
    }
    assert_true(same_int8(&a, &a.lm_head, &b, &b.lm_head));
    assert_int_equal(infer_state_create(&sa, &a, 0, INFER_KV_FP32, err, sizeof err), 0);
    assert_int_equal(infer_state_create(&sb, &b, 0, INFER_KV_FP32, err, sizeof err), 0);
    int toks[SEQ];
    random_tokens(toks, SEQ, DIMS.vocab_size, 9);
    infer_forward(&a, &sa, toks, SEQ, 0, NULL);
    infer_forward(&b, &sb, toks, SEQ, 0, NULL);
    assert_memory_equal(sa.logits, sb.logits, DIMS.vocab_size * sizeof(float));
    infer_state_free(&sa);
    infer_state_free(&sb);
    infer_model_free(&b);
    tokenizer_free(tb);

    /* A scale that is not an fp16 value, as files from before fp16 scales
     * hold: its group loads with the fp16 scale above it, values rounded again. */
    const infer_linear *fc = &a.h[1].fc;
    const size_t nfc = (size_t)fc->in * fc->out;
    int8_t *q0 = alloc_checked(nfc), *q1 = alloc_checked(nfc);
    float *s0 = alloc_checked(nfc / Q8_GS * sizeof *s0);
    float *s1 = alloc_checked(nfc / Q8_GS * sizeof *s1);
    int8_values(&a, fc, q0, s0);
    const float old = nextafterf(0.75f * s0[0], 1.0f), h = q8_half_ceil(old);
    assert_true(h != old);
    set_first_float(qf, "/q8/transformer.h.1.mlp.c_fc.weight_scale", old);
    if (infer_load(qf, INFER_INT8, &b, &tb, err, sizeof err) != 0)
        fail_msg("%s", err);
    int8_values(&b, &b.h[1].fc, q1, s1);
    assert_true(s1[0] == h);
    for (int i = 0; i < Q8_GS; i++)   /* the saved value, to half a new step */
        assert_true(q1[i] != -128 && fabs((double)q1[i] * h - (double)q0[i] * old) <= 0.5 * h);
    assert_memory_equal(q1 + Q8_GS, q0 + Q8_GS, nfc - Q8_GS);   /* the other groups as saved */
    assert_memory_equal(s1 + 1, s0 + 1, (nfc / Q8_GS - 1) * sizeof *s0);
    free(q0), free(q1), free(s0), free(s1);
    infer_model_free(&b);
    tokenizer_free(tb);
    set_first_float(qf, "/q8/transformer.h.1.mlp.c_fc.weight_scale", 1e5f);   /* past fp16 */
    expect_refused(qf, INFER_INT8, "too large scale");
    set_first_float(qf, "/q8/transformer.h.1.mlp.c_fc.weight_scale", old);

    expect_refused(qf, INFER_FP32, "runs only with --quant int8");
    expect_refused(qf, INFER_BF16, "runs only with --quant int8");
    snprintf(cmd, sizeof cmd, "head -c 30000 %s > %s/half.h5", qf, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/half.h5", dir);
    expect_refused(cmd, INFER_INT8, "damaged");
    /* an array where q8_group_size's one value belongs (H5Aread would write it all) */
    snprintf(cmd, sizeof cmd, "cp %s %s/array.h5", qf, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/array.h5", dir);
    make_group_size_array(cmd, 4096);
    expect_refused(cmd, INFER_INT8, "q8_group_size is missing or not one integer");
    /* a vocabulary /q8 does not hold: 1 GB of int8 head at /config's size */
    snprintf(cmd, sizeof cmd, "cp %s %s/vocab.h5", qf, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/vocab.h5", dir);
    set_config(cmd, "vocab_size", 1 << 24);
    expect_refused_unallocated(cmd, "/q8/lm_head.weight is not an int8 tensor of shape "
                                    "[16777216,64]");
    /* a changed weight no longer matches its checksum */
    int8_t *wq = alloc_checked((size_t)a.h[1].fc.in * a.h[1].fc.out);
    float *ws = alloc_checked((size_t)a.h[1].fc.in * a.h[1].fc.out / Q8_GS * sizeof *ws);
    int8_values(&a, &a.h[1].fc, wq, ws);
    poke_int8(qf, "/q8/transformer.h.1.mlp.c_fc.weight", (int8_t)(wq[0] ^ 1));
    free(wq), free(ws);
    expect_refused(qf, INFER_INT8, "/q8/transformer.h.1.mlp.c_fc.weight is damaged (checksum");
    infer_model_free(&a);
    tokenizer_free(ta);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* --save-quantized to a name another process is writing is refused with one
 * line and leaves that one's PATH.tmp alone; a killed writer's is taken over. */
static void test_save_quantized_one_writer_at_a_time(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_infer_XXXXXX", ck[128], qf[128], tmp[140], want[400], cmd[160],
         err[512], begun[8];
    infer_model a, b;
    tokenizer *ta, *tb = NULL;
    int8_model_in_new_dir(dir, ck, qf, &a, &ta);
    snprintf(tmp, sizeof tmp, "%s.tmp", qf);

    pid_t pid = test_writer_start(test_writer_begin_file, qf, begun, sizeof begun);
    assert_int_equal(infer_q8file_save(qf, &a, ta, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: another process is writing it (%s is locked)", qf, tmp);
    assert_string_equal(err, want);
    uint8_t *text;
    size_t len;
    assert_int_equal(fs_read_file(tmp, &text, &len, err, sizeof err), 0);
    assert_string_equal((char *)text, "first");
    free(text);
    assert_int_equal(access(qf, F_OK), -1);

    test_writer_kill(pid);   /* its PATH.tmp stays, unlocked */
    if (infer_q8file_save(qf, &a, ta, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(access(tmp, F_OK), -1);
    if (infer_load(qf, INFER_INT8, &b, &tb, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_true(same_int8(&a, &a.lm_head, &b, &b.lm_head));
    infer_model_free(&b);
    tokenizer_free(tb);
    infer_model_free(&a);
    tokenizer_free(ta);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* The head of a GGUF file in build/export's gpt2 layout: its metadata, a
 * tokenizer of type tok_type listing ntok tokens (byte i spelled GPT-2's way)
 * with the given merges, and only a token embedding of 256 rows: enough for
 * what infer checks before it reads the weights. */
static void write_gguf_head(const char *path, uint32_t blocks, const char *tok_type, int ntok,
                            const char *const *merges, size_t nm)
{
    char err[256], spelled[256][3];
    const char *tok[256];
    size_t len[256], mlen[8];
    gguf_writer *w = gguf_writer_new();
    assert_true(w && ntok <= 256 && nm <= 8);
    for (int i = 0; i < ntok; i++) {
        uint8_t b = (uint8_t)i;
        len[i] = tokenizer_spell_gpt2(&b, 1, spelled[i]);
        tok[i] = spelled[i];
    }
    for (size_t i = 0; i < nm; i++)
        mlen[i] = strlen(merges[i]);
    int rc = gguf_put_str(w, "general.architecture", "gpt2") |
             gguf_put_u32(w, "gpt2.context_length", 16) | gguf_put_u32(w, "gpt2.embedding_length", 64) |
             gguf_put_u32(w, "gpt2.feed_forward_length", 256) | gguf_put_u32(w, "gpt2.block_count", blocks) |
             gguf_put_u32(w, "gpt2.attention.head_count", 4) |
             gguf_put_f32(w, "gpt2.attention.layer_norm_epsilon", 1e-5f) |
             gguf_put_str(w, "gpt_cpu.tokenizer.type", tok_type) |
             gguf_put_str_array(w, "tokenizer.ggml.tokens", tok, len, (size_t)ntok) |
             gguf_put_str_array(w, "tokenizer.ggml.merges", merges, mlen, nm) |
             gguf_add_tensor(w, "token_embd.weight", 2, (const uint64_t[]){64, 256}, GGML_F32);
    assert_int_equal(rc, 0);
    float *x = calloc(256 * 64, sizeof *x);
    assert_non_null(x);
    if (gguf_write_begin(w, path, err, sizeof err) != 0 ||
        gguf_write_data(w, x, 256 * 64 * sizeof *x, err, sizeof err) != 0 ||
        gguf_write_commit(w, err, sizeof err) != 0)
        fail_msg("%s", err);
    free(x);
    gguf_writer_free(w);
}

/* GGUF files whose metadata would make infer overrun its own buffers are
 * refused before the weights: a block_count that overflows the tensor list,
 * and a tokenizer rebuilt with more tokens than the model has rows (the
 * prompt's ids and the sampler would read past the embedding and logits). */
static void test_gguf_metadata_refused(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_infer_XXXXXX", path[128], cmd[160];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    write_gguf_head(path, 1u << 30, "byte", 256, NULL, 0);
    expect_refused(path, INFER_FP32, "n_layer 1073741824");
    const char *merges[] = {"a b", "a c"};   /* 258 tokens for 256 rows */
    write_gguf_head(path, 1, "bpe", 256, merges, 2);
    expect_refused(path, INFER_FP32, "tokenizer.ggml.tokens has 256 tokens but its bpe tokenizer has 258");
    write_gguf_head(path, 1, "byte", 200, NULL, 0);   /* bytes 200..255 have no row */
    expect_refused(path, INFER_FP32, "tokenizer.ggml.tokens has 200 tokens but its byte tokenizer has 256");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kv_cache_matches_full_recompute),
        cmocka_unit_test(test_prefill_matches_token_by_token_fp32),
        cmocka_unit_test(test_prefill_matches_token_by_token_int8),
        cmocka_unit_test(test_bf16_kv_cache),
        cmocka_unit_test(test_int8_agrees_with_fp32),
        cmocka_unit_test(test_eval_window_matches_trainer_loss),
        cmocka_unit_test(test_eval_window_masks_padding),
        cmocka_unit_test(test_int8_holds_wte_once),
        cmocka_unit_test(test_bf16_holds_2_bytes),
        cmocka_unit_test(test_prefill_matches_token_by_token_bf16),
        cmocka_unit_test(test_prefill_bf16_through_onednn),
        cmocka_unit_test(test_bf16_widen_is_fp32_on_rounded_weights),
        cmocka_unit_test(test_bf16_agrees_with_fp32),
        cmocka_unit_test(test_odd_configs_decode_matches_forward),
        cmocka_unit_test(test_int8_refuses_odd_width),
        cmocka_unit_test(test_sampling),
        cmocka_unit_test(test_generate_counts_the_tokens_kept),
        cmocka_unit_test(test_checkpoint_load),
        cmocka_unit_test(test_config_disagrees_with_model),
        cmocka_unit_test(test_save_quantized),
        cmocka_unit_test(test_save_quantized_one_writer_at_a_time),
        cmocka_unit_test(test_gguf_metadata_refused),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gemm_release();
    return rc;
}
