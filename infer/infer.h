/* infer: the inference engine of build/infer (llama2.c run.c style).
 *
 * Three structs hold everything: the model (config + weights), the run state
 * (activations for a chunk of tokens and the KV cache) and the sampler.
 *
 *   infer_load          /config, /model and /tokenizer of a checkpoint (nothing
 *                       else is read) -> weights in the chosen precision
 *   infer_forward       n tokens at positions pos..pos+n-1: one batched pass
 *                       (matrix products over all n rows, causal attention over
 *                       the cache), their K/V appended to the cache
 *   infer_sample        greedy, or temperature + top-k + top-p with a seeded RNG
 *   infer_generate      prompt pass, then sample / forward one token at a time
 *   infer_eval_window   the trainer's loss on one window (build/infer --eval)
 * serve.h and q8file.h build the service and the saved int8 file
 * on these.  load.c fills the model (infer_load .. infer_model_free); infer.c
 * holds the run state, the forward, sampling and generation.
 *
 * Precisions (--quant):
 *   fp32  the checkpoint's weights, products through oneDNN (gemm_f32) for
 *         several rows, through gemv (kernels/gemv.h) when decoding one.
 *   bf16  every weight rounded to bf16 (nearest even) at load.  The matrices
 *         and the tied LM head are held in 2 bytes a weight in bf16mm's
 *         layout and multiplied by kernels/bf16mm.h for decode: with
 *         AVX512-BF16 by vdpbf16ps, which rounds the product inputs to bf16
 *         too; elsewhere widened to fp32 in registers, which gives fp32's
 *         decode arithmetic on the rounded weights.  Products of several rows
 *         (prefill, eval) go through oneDNN's bf16 matmul (AMX where the CPU
 *         has it) reading the same bytes in place, on inputs rounded to bf16,
 *         from the row count at which load timed it faster than bf16mm
 *         (bf16_gemm_rows; never where oneDNN has no native bf16 product or
 *         n_embd is not a multiple of 32): its sums run in another order, so
 *         such a prefill is not bit-identical to token-by-token decode.  The token
 *         embedding is read back from the LM head (wte is held once); wpe,
 *         the biases and LayerNorm stay fp32 arrays holding bf16 values.
 *   int8  every matrix of the blocks and the (tied) LM head quantized at load
 *         with q8_pack_weights (one scale per 32 values along the reduction
 *         axis, an fp16 value); activations quantized per token and group before each
 *         product (exact int32 group sums).  wte is held once, as the LM
 *         head's Q8_0 rows, and the token embedding is read back from them
 *         (q8_decode_row), as llama.cpp does with a q8_0 GGUF file, so the
 *         two give the same tokens; wpe, the biases, LayerNorm, softmax and
 *         GELU stay fp32.
 *         Needs n_embd to be a multiple of 32.  Where the active ISA has a
 *         decode layout (AVX2, AVX512-VNNI: q8_decode_path) the matrices are
 *         held only in it (1.0625 bytes per weight) and prefill and decode
 *         both run on it (q8_decode_matmul / q8_decode_matvec); elsewhere
 *         they stay [out, in] for q8_matmul.  Both give the same bits.
 * The KV cache, for keys and for values, is [n_layer, n_head, n_positions,
 * head size] (a head's rows contiguous), fp32 or bf16 (--kv: half the memory
 * and the bytes attention reads, at bf16's rounding of K and V; infer_main's
 * default for int8 and bf16 weights), read in place by attention_cached,
 * allocated once; nothing is allocated after infer_state_create.
 * Decoding one token (n = 1) runs in one OpenMP parallel region: the threads
 * split each product's outputs and the attention's heads, and each recomputes
 * the small vectors all of them need (LayerNorm, residual, quantized inputs),
 * so a layer costs five barriers; fp32 products go through gemv there, bf16 ones through bf16mm.
 * Functions that can fail return 0 or -1 with a one-line reason in err.
 */
#ifndef INFER_INFER_H
#define INFER_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "io/tokenizer.h"
#include "kernels/gemm.h"
#include "kernels/q8.h"
#include "io/hf_names.h"

typedef enum { INFER_FP32 = 0, INFER_BF16, INFER_INT8 } infer_quant;

const char *infer_quant_name(infer_quant q);
int infer_quant_parse(const char *s, infer_quant *q);   /* 0, or -1 if unknown */

/* y[n,out] = x[n,in] W + b: fp32 W [in,out] (Conv1D layout, as stored) or
 * int8 wq [out,in] with scales ws [out,in/32]. */
typedef struct {
    int in, out;
    float *w;
    int8_t *wq;
    float *ws;
    void *wv;   /* int8 with a decode layout: wq/ws repacked (q8_decode_pack), wq/ws NULL */
    uint16_t *wh;   /* bf16: W in bf16mm_pack's layout (kernels/bf16mm.h), w NULL */
    gemm_weights *wg;   /* bf16: oneDNN's view of wh (gemm_weights_view_bf16), NULL if none */
    float *b;   /* NULL: no bias */
} infer_linear;

typedef struct {
    float *ln1w, *ln1b, *ln2w, *ln2b;
    infer_linear qkv, attproj, fc, fcproj;
} infer_block;

typedef struct {
    gpt2_dims d;
    infer_quant quant;
    float *wte, *wpe, *lnfw, *lnfb;   /* wte NULL for bf16: it is the LM head's */
    infer_block *h;               /* [n_layer] */
    infer_linear lm_head;         /* int8: wte quantized; bf16: wte^T packed; fp32: unused (wte^T via gemm) */
    float *f32;                   /* arenas the pointers above point into */
    int8_t *i8;
    float *scales;
    uint16_t *bf16;
    size_t weight_bytes;          /* bytes of all weights as held */
    q8_path decode_path;          /* int8: the layout of every wv, Q8_SCALAR if none */
    int bf16_gemm_rows;           /* bf16: products of this many rows or more run through
                                   * oneDNN on wg, fewer through bf16mm; INT_MAX: never
                                   * (timed at load) */
} infer_model;

/* Fills dst (rows x cols floats; cols 0 for a vector) with the named tensor
 * (Hugging Face name); 0, or -1 with a reason in err. */
typedef int (*infer_tensor_fn)(void *ctx, const char *name, int rows, int cols, float *dst,
                               char *err, size_t errlen);

/* The model's tensors by Hugging Face name, in io/hf_names.h's order: each
 * fp32 tensor (wpe, LayerNorm, biases, and wte in fp32 mode only; rows x cols
 * floats, cols 0 for a vector) to vec, each matrix to mat; an int8 or bf16
 * model's LM head last, to mat as "lm_head.weight" (from wte, [vocab_size,
 * n_embd]), which holds the token embedding for those modes.  A visitor reads or writes the arrays the pointers point to; it returns
 * 0, or -1 with a reason in err, which ends the walk. */
typedef struct {
    int (*vec)(void *ctx, const char *name, int rows, int cols, float *x, char *err,
               size_t errlen);
    int (*mat)(void *ctx, const char *name, const infer_linear *l, char *err, size_t errlen);
} infer_visitor;

int infer_model_walk(const infer_model *m, const infer_visitor *v, void *ctx, char *err,
                     size_t errlen);
/* Allocates the model for dims and quant q and fills it by walking it with v. */
int infer_model_load(infer_model *m, const gpt2_dims *d, infer_quant q, const infer_visitor *v,
                     void *ctx, char *err, size_t errlen);

/* Checks that dims can run in quant q (positive, n_head divides n_embd, int8:
 * n_embd a multiple of 32). */
int infer_check_dims(const gpt2_dims *d, infer_quant q, char *err, size_t errlen);
/* Builds the model tensor by tensor from fn (which fills fp32 values), then
 * quantizes or rounds them as q says.  Refuses non-finite weights. */
int infer_model_build(infer_model *m, const gpt2_dims *d, infer_quant q, infer_tensor_fn fn,
                      void *ctx, char *err, size_t errlen);
/* Reads /meta format_version, /config dims, /model and /tokenizer of path.
 * *tok gets a new tokenizer (free with tokenizer_free). */
int infer_load(const char *path, infer_quant q, infer_model *m, tokenizer **tok, char *err,
               size_t errlen);
void infer_model_free(infer_model *m);

typedef enum { INFER_KV_FP32 = 0, INFER_KV_BF16 } infer_kv;

const char *infer_kv_name(infer_kv kv);
int infer_kv_parse(const char *s, infer_kv *kv);   /* 0, or -1 if unknown */
/* Element offset of (layer l, head h, position t) in either cache. */
size_t infer_kv_offset(const infer_model *m, int l, int h, int t);

typedef struct {
    int max_chunk;                /* most tokens one infer_forward takes */
    infer_kv kv;
    int nthreads;
    float *x, *xb, *xb2, *qkv, *atty, *fch;   /* [max_chunk, C | 3C | 4C] */
    int8_t *xq;                   /* [max_chunk, 4C] quantized activations (int8) */
    uint16_t *xh;                 /* [max_chunk, 4C] bf16 activations (bf16 through oneDNN) */
    void *aux;                    /* [max_chunk, 4C] bytes: q8_decode_prep's of xq */
    float *xs;                    /* [max_chunk, 4C/32] their scales */
    float *ln_mean, *ln_rstd;     /* [max_chunk] (LayerNorm writes them) */
    void *key_cache, *value_cache;  /* [L, H, n_positions, hs]: float, or bf16 bits (uint16_t) */
    float *att;                   /* [nthreads, att_stride] attention scores */
    size_t att_stride;
    float *logits;                /* [vocab_size]: the last token's */
    /* decode (n = 1): each thread's copy of the residual stream and of the
     * product inputs, lane_stride floats apart (lane_xq 4x that many bytes) */
    size_t lane_stride;
    float *lane_x, *lane_xb, *lane_stat, *lane_xs;
    int8_t *lane_xq;
    void *lane_aux;               /* 4x lane_stride bytes per thread (q8_decode_prep) */
} infer_state;

/* max_chunk <= 0 means n_positions (a prompt of any length is one pass). */
int infer_state_create(infer_state *s, const infer_model *m, int max_chunk, infer_kv kv,
                       char *err, size_t errlen);
void infer_state_free(infer_state *s);

/* Runs tokens[0..n) at positions pos..pos+n-1 (1 <= n <= max_chunk,
 * pos + n <= n_positions, cache rows < pos already filled by earlier calls).
 * The last token's logits go to s->logits; all_logits (NULL or [n, vocab_size])
 * gets every row's.  Token ids must be < vocab_size. */
void infer_forward(const infer_model *m, infer_state *s, const int *tokens, int n, int pos,
                   float *all_logits);

/* The trainer's eval on one window of n+1 tokens (1 <= n <= max_chunk): one
 * pass over tokens[0..n) from position 0, losses[i] = cross-entropy of
 * tokens[i+1] given tokens[0..i] (the trainer's softmax_xent), greedy[i] =
 * the argmax of row i (greedy NULL: not wanted).  n_vocab: the tokenizer's
 * vocabulary (tokens < it); the logits of ids n_vocab..vocab_size-1, padding
 * rows, are -inf, as the trainer masks them.  logits: [n, vocab_size]
 * scratch.  Returns the sum of the losses. */
double infer_eval_window(const infer_model *m, infer_state *s, const int *tokens, int n,
                         int n_vocab, float *logits, float *losses, int *greedy);

typedef struct {
    float prob;
    int index;
} infer_cand;

typedef struct {
    int n_vocab;                  /* sample among ids 0..n_vocab-1 (the tokenizer's) */
    float temperature;            /* 0: greedy */
    int top_k;                    /* 0: off */
    float top_p;                  /* 1: off; <= 0: greedy */
    uint64_t rng;
    infer_cand *cand;             /* [n_vocab] */
} infer_sampler;

int infer_sampler_init(infer_sampler *s, int n_vocab, float temperature, int top_k,
                       float top_p, uint64_t seed, char *err, size_t errlen);
void infer_sampler_free(infer_sampler *s);
/* The next token from logits (at least n_vocab values; left unchanged), in
 * 0..n_vocab-1 for any parameters and any logits (inf, NaN included): the
 * argmax where the distribution degenerates (infer.c).  Needs no model: it
 * runs on any buffer. */
int infer_sample(infer_sampler *s, const float *logits);
/* The first index of the largest value; NaN is never the largest (all NaN: 0). */
int infer_argmax(const float *x, int n);

/* Generation: the prompt toks[0..n_prompt) (1 <= n_prompt <= n_positions) as
 * one pass from position 0, then up to n_new sampled tokens, one forward
 * each, every one passed to on_token (NULL: none) as it comes, which may end
 * generation there.  Stops early
 * when the context is full: a token sampled at position n_positions has no
 * cache row to run in.  toks needs room for n_positions ids (it gets the new
 * ones). */
typedef struct {
    double prefill_s, decode_s;
    double decode_cpu_s;          /* CPU time of all threads while decoding (spinning too) */
    int n_generated;              /* the tokens kept: not the one on_token ended generation
                                   * on (the end-of-text token, no part of the text) */
    int context_full;
    int stopped;                  /* on_token asked to stop (e.g. at the end-of-text token) */
} infer_gen_stats;

/* Returns nonzero to end generation after this token. */
typedef int (*infer_token_fn)(void *ctx, int token);

infer_gen_stats infer_generate(const infer_model *m, infer_state *s, infer_sampler *sp, int *toks,
                               int n_prompt, int n_new, infer_token_fn on_token, void *ctx);

#endif
