/* model: GPT-2 (pre-LayerNorm blocks, causal multi-head attention with biases,
 * 4x tanh-GELU MLP, final LayerNorm, LM head tied to the token embedding).
 *
 * Parameters live in one arena, their gradients in a second of the same layout,
 * activations in a third sized for one micro-batch of B x T tokens; nothing is
 * allocated after gpt2_create.  Weights use the Hugging Face Conv1D convention
 * (y = x W + b, W stored [in, out]) so the checkpoint is a plain copy.
 * The tensor table is in Hugging Face order (wte, wpe, h.0 ... h.L-1, ln_f);
 * the arena holds them by when backward finishes their gradients, last first:
 * wpe, h.0 ... h.L-1, ln_f, wte.  The tied wte's gradient is complete right
 * after the LM head when the input side goes elsewhere (split_embed_grad), so
 * with several ranks its reduction overlaps all of the blocks' backward.
 */
#ifndef TRAINER_MODEL_H
#define TRAINER_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/hf_names.h"
#include "kernels/attention.h"
#include "kernels/gemm.h"

/* fp32 everywhere, or 16-bit (bf16 or IEEE fp16) operands for the matrix
 * products with fp32 accumulation; everything else stays fp32 either way. */
typedef enum { PREC_FP32 = 0, PREC_BF16, PREC_FP16 } gpt2_precision;

/* 16-bit mode, processes on one node: one packed copy of the weights that
 * all of them map (gpt2_pack_share_bytes at `memory`, the same layout in
 * each).  Copy k (2i: matrix i's forward copy, 2i+1: its backward copy) is
 * packed by one sharer when forward first reaches it after a parameter
 * change, which then publishes it; the others await it before reading it.
 * Every sharer must take part in every repack: one that runs no forward
 * after a change calls gpt2_pack_share_now.  A sharer repacks only after the
 * others are done reading the last copy, which the caller guarantees. */
typedef struct {
    void *memory;
    int rank, size;
    void (*publish)(void *ctx, int copy, unsigned generation);
    void (*await)(void *ctx, int copy, int sharer, unsigned generation);   /* sharer packs it */
    void *ctx;
} gpt2_pack_share;

typedef struct {
    gpt2_precision precision;   /* operands of the matrix products */
    bool recompute;   /* keep only block inputs; recompute each block in backward */
    int logit_rows;   /* 16-bit mode: rows of logits made at a time (0: chunks of about 16 MB, at least 256 rows) */
    /* bf16 mode: attention's products in fp32 even where bf16 ones are
     * native (trainer/autotune.h measures which runs faster). */
    bool attention_fp32;
    /* Backward with grads_ready set leaves the token embedding's input-side
     * gradient in embed_rows (by token) instead of adding it to g.wte. */
    bool split_embed_grad;
    /* Tokens the data can hold (0: vocab_size).  Below vocab_size, the rest are
     * padding rows (llm.c pads 50257 to 50304): their logits are -inf, so the
     * loss and its gradient are those of the real vocabulary alone. */
    int vocab_real;
    const gpt2_pack_share *pack_share;   /* NULL: this process packs its own */
    /* The parameter and gradient arenas (num_params floats each, zeroed,
     * 64-byte aligned, and the caller's past gpt2_destroy), or NULL: made
     * here.  The trainer places them where its ranks on one machine read
     * each other's (comm/local_exchange.h). */
    float *params_memory, *grads_memory;
    /* params_memory is the same memory in every rank's model (ZeRO 1 on one
     * machine): only rank 0 writes all of it (at the start: its seed's or
     * file's values, which the others then read instead of receiving). */
    bool params_shared;
} gpt2_options;

/* One named parameter tensor: a slice [offset, offset+numel) of the arena. */
typedef struct {
    char name[64];        /* Hugging Face name, e.g. transformer.h.0.attn.c_attn.weight */
    int ndim, shape[2];
    size_t offset, numel;
    bool decay;           /* weight decay applies (2-D weights only) */
} param_tensor;

/* Pointers into a parameter (or gradient) arena. */
typedef struct {
    float *ln1w, *ln1b;         /* [C] */
    float *qkvw, *qkvb;         /* [C,3C], [3C] */
    float *attprojw, *attprojb; /* [C,C], [C] */
    float *ln2w, *ln2b;         /* [C] */
    float *fcw, *fcb;           /* [C,4C], [4C] */
    float *fcprojw, *fcprojb;   /* [4C,C], [C] */
} block_params;

typedef struct {
    float *wte;   /* [V,C] */
    float *wpe;   /* [maxT,C] */
    block_params *h;
    float *lnfw, *lnfb;
} gpt2_params;

/* Activations of one layer for a B x T micro-batch.  In 16-bit mode ln1, ln2
 * and fch_gelu (and the model's lnf) all point at one shared buffer: they are
 * matrix-product inputs, read only to make their 16-bit copies. */
typedef struct {
    float *ln1, *ln1_mean, *ln1_rstd;   /* [B,T,C], [B,T], [B,T] */
    float *qkv;                         /* [B,T,3C] */
    float *atty, *att_lse;              /* [B,T,C], [B,H,T] */
    float *res2;                        /* [B,T,C] residual after attention */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fch, *fch_gelu;              /* [B,T,4C] */
    float *res3;                        /* [B,T,C] block output */
} block_acts;

/* 16-bit mode: a weight matrix packed (kernels/gemm.h) for the two products
 * that read it: x @ W in forward and dout @ W^T in backward. */
typedef struct {
    gemm_weights *fwd, *bwd;
} packed_matrix;

/* 16-bit copies of the activations that feed matrix products (bf16/fp16 mode). */
typedef struct {
    uint16_t *ln1, *atty, *ln2, *fch_gelu;
} block_acts_half;

/* Where forward and backward spend their time: wall seconds per kind of op,
 * summed since creation (gpt2_profile_reset clears them).  Each op is one call
 * from this thread that runs on all OpenMP threads, so wall time is its cost. */
typedef enum {
    OP_EMBED, OP_LAYERNORM, OP_MATMUL, OP_ATTENTION, OP_GELU, OP_RESIDUAL, OP_BIAS,
    OP_LM_HEAD, OP_XENT, OP_CONVERT, OP_COUNT
} gpt2_op;

typedef struct {
    gpt2_dims dims;
    gpt2_options opt;
    double op_seconds[2][OP_COUNT];   /* [0] forward, [1] backward (incl. recompute) */
    int pass;                         /* 0 in gpt2_forward, 1 in gpt2_backward */
    int max_B, max_T;           /* micro-batch the activations are sized for */
    int B, T;                   /* shape of the last forward */
    /* bf16/fp16 mode: matrix products take 16-bit operands (fp32 accumulation and
     * outputs); master weights, gradients and every other op stay fp32. */
    gemm_dtype half;            /* GEMM_BF16 or GEMM_F16; GEMM_F32 in fp32 mode */
    bool half_stale;            /* params changed since the packed weights were made */
    packed_matrix *packed;      /* [4L+1]: per block qkv, attproj, fc, fcproj; then wte */
    int *pack_owner;            /* pack_share: [2(4L+1)] the sharer that packs each copy */
    unsigned pack_gen;          /* pack_share: repacks so far */
    uint16_t *act_half_arena;
    block_acts_half *acts_half; /* [L] */
    uint16_t *lnf_half;         /* [B,T,C] */
    uint16_t *dout_half;        /* a gradient converted for its products, [B,T,max(4C,V)]:
                                 * from forward to backward the unscaled dlogits */

    float *params, *grads;      /* arenas of num_params floats */
    bool grads_fresh;           /* gpt2_zero_grad left the weight matrices' gradients
                                 * as they were: backward's products write them */
    size_t num_params;
    gpt2_params p, g;
    param_tensor *tensors;
    int num_tensors;

    float *act_arena;           /* forward activations */
    float *encoded;             /* [B,T,C] */
    block_acts *acts;           /* [L] */
    float *lnf, *lnf_mean, *lnf_rstd;
    int logit_rows;             /* rows of logits held at once (B*T in fp32 mode) */
    float *logits;              /* [logit_rows,V]; fp32 mode: dlogits after backward */
    float *losses;              /* [B,T] */
    float *scratch;             /* backward: dres, dln [B,T,C]; datt [B,T,C]; dbig [B,T,4C] */
    attention_work att_work;    /* attention's per-thread work, up to max_T */
    const int *inputs, *targets;  /* of the last forward */
    /* If set, backward calls it each time the gradients from arena offset
     * `from` to the end are final (after the LM head, and within each block
     * after each product's weight gradient, last layer first), so their
     * reduction can start during the rest of backward. */
    void (*grads_ready)(void *ctx, size_t from);
    void *grads_ready_ctx;
    /* If set, forward calls it before it first reads the parameters [lo, hi)
     * of the arena, once per tensor in the order forward reads them (wpe,
     * each block's, the final LayerNorm's, wte): they may still be arriving
     * when forward starts (ZeRO's allgather).  The embedding before them reads
     * only the rows of wte of its input tokens: the caller makes those
     * current before forward (ZeRO: sparse_rows_fetch). */
    void (*params_needed)(void *ctx, size_t lo, size_t hi);
    void *params_needed_ctx;
    /* split_embed_grad and grads_ready set: the input side of wte's gradient
     * for the distinct tokens of the micro-batch, in increasing order:
     * g.wte[embed_tokens[i]] is to get embed_rows[i] (the caller adds it, after
     * reducing it over ranks). */
    int *embed_tokens;          /* [B*T] */
    int n_embed_tokens;
    float *embed_rows;          /* [B*T,C] */
    int *embed_row_of;          /* [V] scratch: token -> row, -1 if none */
} gpt2;

/* Number of parameters of a model of these dimensions. */
size_t gpt2_count_params(const gpt2_dims *d);
/* Bytes the model needs for a B x T micro-batch (all arenas, and attention's
 * work for the current OpenMP thread count); for memory checks. */
size_t gpt2_memory_bytes(const gpt2_dims *d, int B, int T, const gpt2_options *opt);
/* 0 on success, -1 with a reason in err (allocation failure). */
int gpt2_create(gpt2 *m, const gpt2_dims *d, int B, int T, const gpt2_options *opt, char *err,
                size_t errlen);
void gpt2_destroy(gpt2 *m);
/* GPT-2 initialisation from a seed (same seed -> bit-identical parameters). */
void gpt2_init_params(gpt2 *m, uint64_t seed);
/* Call after changing m->params (optimizer step, loading): the 16-bit copy is
 * remade before the next forward. */
void gpt2_params_changed(gpt2 *m);
/* Bytes of memory a pack_share needs for this model; 0 where 16-bit weights
 * are not packed natively (fp32 mode, no native bf16 product). */
size_t gpt2_pack_share_bytes(const gpt2_dims *d, const gpt2_options *o);
/* Copies (flags) a pack_share has: two per weight matrix. */
int gpt2_pack_share_copies(const gpt2_dims *d);
/* pack_share: this sharer's part of a repack that is due, for a sharer that
 * runs no forward now (nothing to do otherwise). */
void gpt2_pack_share_now(gpt2 *m);

/* Forward pass on inputs [B,T]; with targets [B,T] returns the mean loss and
 * fills m->losses, otherwise returns 0 and leaves the logits in m->logits
 * (16-bit mode: only when B*T <= logit_rows).  B <= max_B and T <= max_T, the
 * sizes given at creation (checked: a larger call aborts). */
float gpt2_forward(gpt2 *m, const int *inputs, const int *targets, int B, int T);
/* Backward of (dloss_scale * sum of losses) of the last forward; accumulates
 * into m->grads.  For a mean over N tokens pass 1/N. */
void gpt2_backward(gpt2 *m, float dloss_scale);
/* The next backward's gradients replace the current ones.  The weight
 * matrices' are not cleared (their products write them, rather than add,
 * saving a pass over most of the arena), so m->grads reads as zero only
 * outside them until that backward. */
void gpt2_zero_grad(gpt2 *m);

/* Name of an op kind for profile tables ("matmul", "attention", ...). */
const char *gpt2_op_name(gpt2_op op);
void gpt2_profile_reset(gpt2 *m);
/* Whether attention's products run in bf16: bf16 mode where the CPU has them
 * natively and the options do not keep them fp32. */
bool gpt2_attention_bf16(const gpt2 *m);

/* Training FLOPs per token (6N + 6 L T C, as llm.c counts). */
double gpt2_flops_per_token(const gpt2 *m, int T);

#endif
