#include "trainer/model.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/attention.h"
#include "kernels/clock.h"
#include "kernels/convert.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/layernorm.h"
#include "kernels/pages.h"
#include "kernels/softmax_xent.h"
#include "io/hash.h"
#include "io/hf_names.h"

enum { BLOCK_TENSORS = HF_BLOCK_TENSORS };

/* ---- profile ----------------------------------------------------------- */

/* Runs the statement and adds its wall time to op in the current pass
 * (variadic: a braced statement may hold commas). */
#define TIMED(m, op, ...)                                          \
    do {                                                           \
        double t0_ = clock_mono_s();                               \
        __VA_ARGS__;                                               \
        (m)->op_seconds[(m)->pass][op] += clock_mono_s() - t0_;    \
    } while (0)

const char *gpt2_op_name(gpt2_op op)
{
    static const char *names[OP_COUNT] = {"embed", "layernorm", "matmul", "attention", "gelu",
                                          "residual", "bias", "lm_head", "xent", "convert"};
    return op < OP_COUNT ? names[op] : "?";
}

void gpt2_profile_reset(gpt2 *m)
{
    memset(m->op_seconds, 0, sizeof m->op_seconds);
}

/* ---- layout ------------------------------------------------------------ */

/* The parameter table in Hugging Face order (io/hf_names.h; the seed's
 * stream per tensor follows it), then the arena offsets in backward's order
 * (model.h): wpe first, wte last. */
static int build_tensor_table(gpt2 *m)
{
    const gpt2_dims *d = &m->dims;
    int n;
    hf_tensor *hf = hf_gpt2_tensor_list(d, &n);
    if (!hf)
        return -1;
    m->num_tensors = n;
    m->num_params = 0;
    for (int i = 0; i < n; i++) {
        param_tensor *t = &m->tensors[i];
        snprintf(t->name, sizeof t->name, "%s", hf[i].name);
        t->ndim = hf[i].cols ? 2 : 1;
        t->shape[0] = hf[i].rows;
        t->shape[1] = hf[i].cols;
        t->numel = (size_t)hf[i].rows * (hf[i].cols ? hf[i].cols : 1);
        t->offset = m->num_params;
        t->decay = hf[i].matrix_weight;
        m->num_params += t->numel;
    }
    free(hf);
    param_tensor *wte = &m->tensors[0];
    for (int i = 1; i < m->num_tensors; i++)
        m->tensors[i].offset -= wte->numel;
    wte->offset = m->num_params - wte->numel;
    return 0;
}

/* Point a gpt2_params at an arena laid out as the tensor table says. */
static void bind_params(const gpt2 *m, float *arena, gpt2_params *p)
{
    const param_tensor *t = m->tensors;
    p->wte = arena + t[0].offset;
    p->wpe = arena + t[1].offset;
    for (int l = 0; l < m->dims.n_layer; l++) {
        const param_tensor *b = &t[2 + l * BLOCK_TENSORS];   /* table order of build_tensor_table */
        p->h[l] = (block_params){
            arena + b[0].offset, arena + b[1].offset, arena + b[2].offset,  arena + b[3].offset,
            arena + b[4].offset, arena + b[5].offset, arena + b[6].offset,  arena + b[7].offset,
            arena + b[8].offset, arena + b[9].offset, arena + b[10].offset, arena + b[11].offset,
        };
    }
    p->lnfw = arena + t[m->num_tensors - 2].offset;
    p->lnfb = arena + t[m->num_tensors - 1].offset;
}

/* Layers whose internals are stored: all of them, or one shared set when
 * blocks are recomputed in backward. */
static size_t stored_layers(const gpt2_dims *d, const gpt2_options *o)
{
    return o->recompute ? 1 : (size_t)d->n_layer;
}

/* Rows of logits held at once.  16-bit mode makes them a chunk at a time and
 * keeps only their 16-bit gradient, so the fp32 [B*T,V] logits (823 MB for
 * gpt2-124M at B 4, T 1024) are never whole; fp32 mode holds them all.
 * Chunks of about 16 MB keep that buffer small (and in cache for the
 * softmax); at least 256 rows, so the LM head's weights are read once per 256
 * rows or more. */
static int logit_rows(const gpt2_dims *d, int B, int T, const gpt2_options *o)
{
    enum { LOGIT_CHUNK_FLOATS = 1 << 22, MIN_ROWS = 256, ROW_MULTIPLE = 64 };
    int rows = B * T, chunk = o->logit_rows;
    if (!chunk) {
        chunk = LOGIT_CHUNK_FLOATS / d->vocab_size / ROW_MULTIPLE * ROW_MULTIPLE;
        chunk = chunk > MIN_ROWS ? chunk : MIN_ROWS;
    }
    if (o->precision == PREC_FP32 || chunk >= rows)
        return rows;
    return chunk > 1 ? chunk : 1;
}

/* Number of floats of activations for B x T tokens: the embedding output, per
 * layer its internals (15 [B,T,C] tensors, 4 [B,T], lse [B,H,T]) and output,
 * then ln_f, the logits (logit_rows of them) and the losses.  In 16-bit mode the fp32 inputs of
 * the matrix products that backward never reads (ln1, ln2, fch_gelu, ln_f:
 * backward uses their 16-bit copies) share one [B,T,4C] buffer instead. */
static size_t activation_floats(const gpt2_dims *d, int B, int T, const gpt2_options *o)
{
    size_t BT = (size_t)B * T, C = d->n_embd;
    bool half = o->precision != PREC_FP32;
    size_t internals = BT * C * (half ? 9 : 15) + BT * 4 + (size_t)B * d->n_head * T;
    return BT * C + internals * stored_layers(d, o) + BT * C * d->n_layer +
           (half ? 4 * BT * C : BT * C) + BT * 2 + (size_t)logit_rows(d, B, T, o) * d->vocab_size +
           BT;
}

static size_t scratch_floats(const gpt2_dims *d, int B, int T)
{
    return (size_t)B * T * d->n_embd * 7;   /* dres, dln, datt [BT,C] + dbig [BT,4C] */
}

size_t gpt2_count_params(const gpt2_dims *d)
{
    size_t C = d->n_embd, L = d->n_layer;
    return (size_t)d->vocab_size * C + (size_t)d->n_positions * C + 2 * C +
           L * (12 * C * C + 13 * C);
}

/* 16-bit mode: the matmul-input activations and one converted gradient. */
static size_t half_values(const gpt2_dims *d, int B, int T, const gpt2_options *o)
{
    size_t BT = (size_t)B * T, C = d->n_embd;
    size_t wide = 4 * C > (size_t)d->vocab_size ? 4 * C : (size_t)d->vocab_size;
    return BT * C * (7 * stored_layers(d, o) + 1) + BT * wide;
}

/* 16-bit mode: two packed copies of every weight matrix, 2 bytes a value where
 * the bf16 product is native, else 4 (fp32 holding rounded values). */
static size_t packed_bytes(const gpt2_dims *d, const gpt2_options *o)
{
    size_t C = d->n_embd, value = o->precision == PREC_BF16 && gemm_bf16_native() ? 2 : 4;
    return 2 * value * ((size_t)d->vocab_size * C + (size_t)d->n_layer * 12 * C * C);
}

size_t gpt2_memory_bytes(const gpt2_dims *d, int B, int T, const gpt2_options *o)
{
    return sizeof(float) * (2 * gpt2_count_params(d) + activation_floats(d, B, T, o) +
                            scratch_floats(d, B, T) +
                            (o->split_embed_grad ? (size_t)B * T * (d->n_embd + 1) + d->vocab_size : 0)) +
           attention_work_bytes(T, d->n_embd / d->n_head, omp_get_max_threads()) +
           (o->precision != PREC_FP32
                ? sizeof(uint16_t) * half_values(d, B, T, o) + packed_bytes(d, o)
                : 0);
}

/* ---- allocation -------------------------------------------------------- */

/* Rounded up to whole 64-byte lines, which vector tails may read. */
static void *alloc_zeroed(size_t bytes)
{
    return pages_alloc_zeroed((bytes + 63) & ~(size_t)63);
}

static float *alloc_floats(size_t n)
{
    return alloc_zeroed(n * sizeof(float));
}

static uint16_t *alloc_half(size_t n)
{
    return alloc_zeroed(n * sizeof(uint16_t));
}

static void bind_half_activations(gpt2 *m)
{
    size_t BTC = (size_t)m->max_B * m->max_T * m->dims.n_embd;
    uint16_t *p = m->act_half_arena;
    for (int l = 0; l < m->dims.n_layer; l++) {
        block_acts_half *a = &m->acts_half[l];
        if (l > 0 && m->opt.recompute) {   /* every layer shares layer 0's buffers */
            *a = m->acts_half[0];
            continue;
        }
        a->ln1 = p, p += BTC;
        a->atty = p, p += BTC;
        a->ln2 = p, p += BTC;
        a->fch_gelu = p, p += 4 * BTC;
    }
    m->lnf_half = p;
}

/* The shape of the matrix behind packed[i]: W [IC,OC] of block i/4, or the
 * LM head's wte [V,C] last (logits = x @ wte^T, dx = dlogits @ wte). */
static void matrix_dims(const gpt2_dims *d, int i, int *ic, int *oc)
{
    static const int in_mult[4] = {1, 1, 1, 4}, out_mult[4] = {3, 1, 4, 1};
    bool head = i == 4 * d->n_layer;
    *ic = head ? d->n_embd : in_mult[i % 4] * d->n_embd;
    *oc = head ? d->vocab_size : out_mult[i % 4] * d->n_embd;
}

static void packed_shape(const gpt2 *m, int i, const float **w, int *ic, int *oc)
{
    matrix_dims(&m->dims, i, ic, oc);
    if (i == 4 * m->dims.n_layer) {
        *w = m->p.wte;
        return;
    }
    const block_params *b = &m->p.h[i / 4];
    const float *ws[4] = {b->qkvw, b->attprojw, b->fcw, b->fcprojw};
    *w = ws[i % 4];
}

static gemm_dtype half_dtype(gpt2_precision p)
{
    return p == PREC_BF16 ? GEMM_BF16 : p == PREC_FP16 ? GEMM_F16 : GEMM_F32;
}

int gpt2_pack_share_copies(const gpt2_dims *d)
{
    return 2 * (4 * d->n_layer + 1);
}

/* Bytes of copy k in a pack_share, from its start to the next copy's (whole
 * pages, so sharers packing neighbours never write one line); 0: no native
 * packed layout. */
static size_t share_copy_bytes(const gpt2_dims *d, gemm_dtype dtype, int k)
{
    int ic, oc;
    matrix_dims(d, k / 2, &ic, &oc);
    size_t n = k % 2 ? gemm_weights_size(dtype, oc, ic) : gemm_weights_size(dtype, ic, oc);
    return (n + 4095) / 4096 * 4096;
}

size_t gpt2_pack_share_bytes(const gpt2_dims *d, const gpt2_options *o)
{
    gemm_dtype dtype = half_dtype(o->precision);
    if (dtype == GEMM_F32)
        return 0;
    size_t total = 0;
    for (int k = 0; k < gpt2_pack_share_copies(d); k++) {
        size_t n = share_copy_bytes(d, dtype, k);
        if (n == 0)
            return 0;
        total += n;
    }
    return total;
}

/* Who packs each copy under pack_share: a block's four matrices (both
 * copies, rounded once) go largest first to the least loaded sharer, ties to
 * the first counting from a sharer that turns with the block, so each block's
 * packing is split about evenly and no sharer is always the heavier; the LM
 * head, the largest, gives its two copies to two sharers. */
static int assign_pack_owners(gpt2 *m)
{
    const gpt2_pack_share *s = m->opt.pack_share;
    int L = m->dims.n_layer, n = s->size;
    m->pack_owner = malloc((size_t)gpt2_pack_share_copies(&m->dims) * sizeof *m->pack_owner);
    size_t *load = calloc((size_t)n, sizeof *load);
    if (!m->pack_owner || !load) {
        free(load);
        return -1;
    }
    static const int largest_first[4] = {2, 3, 0, 1};   /* fc, fcproj, qkv, attproj */
    for (int l = 0; l < L; l++) {
        for (int r = 0; r < n; r++)
            load[r] = 0;
        for (int j = 0; j < 4; j++) {
            int i = 4 * l + largest_first[j], ic, oc, best = l % n;
            matrix_dims(&m->dims, i, &ic, &oc);
            for (int t = 0; t < n; t++)
                if (load[(l + t) % n] < load[best])
                    best = (l + t) % n;
            load[best] += (size_t)ic * oc;
            m->pack_owner[2 * i] = m->pack_owner[2 * i + 1] = best;
        }
    }
    m->pack_owner[2 * 4 * L] = L % n;
    m->pack_owner[2 * 4 * L + 1] = (L + 1) % n;
    free(load);
    return 0;
}

/* The packed weights of 16-bit mode (made from params before the first
 * forward), in pack_share's memory when there is one; 0 on success.  Needs
 * the parameter pointers bound. */
static int create_packed(gpt2 *m)
{
    const gpt2_pack_share *share = m->opt.pack_share;
    int count = 4 * m->dims.n_layer + 1;
    m->packed = calloc(count, sizeof *m->packed);
    if (!m->packed || (share && assign_pack_owners(m) != 0))
        return -1;
    char *at = share ? share->memory : NULL;
    for (int i = 0; i < count; i++) {
        const float *w;
        int ic, oc;
        packed_shape(m, i, &w, &ic, &oc);
        /* block weights are stored [IC,OC]; wte is stored [V,C] = [OC,IC] */
        bool head = i == count - 1;
        int ld = head ? ic : oc;
        m->packed[i].fwd = gemm_weights_create_in(m->half, head, ic, oc, ld, at);
        at = at ? at + share_copy_bytes(&m->dims, m->half, 2 * i) : NULL;
        m->packed[i].bwd = gemm_weights_create_in(m->half, !head, oc, ic, ld, at);
        at = at ? at + share_copy_bytes(&m->dims, m->half, 2 * i + 1) : NULL;
        if (!m->packed[i].fwd || !m->packed[i].bwd)
            return -1;
    }
    m->half_stale = true;
    return 0;
}

static void destroy_packed(gpt2 *m)
{
    for (int i = 0; m->packed && i < 4 * m->dims.n_layer + 1; i++) {
        gemm_weights_destroy(m->packed[i].fwd);
        gemm_weights_destroy(m->packed[i].bwd);
    }
    free(m->packed);
    free(m->pack_owner);
}

/* The 16-bit arenas of bf16/fp16 mode; 0 on success. */
static int create_half(gpt2 *m)
{
    const gpt2_dims *d = &m->dims;
    size_t BT = (size_t)m->max_B * m->max_T, C = d->n_embd;
    size_t wide = 4 * C > (size_t)d->vocab_size ? 4 * C : (size_t)d->vocab_size;
    m->act_half_arena = alloc_half(BT * C * (7 * stored_layers(d, &m->opt) + 1));
    m->acts_half = calloc(d->n_layer, sizeof *m->acts_half);
    m->dout_half = alloc_half(BT * wide);
    if (!m->act_half_arena || !m->acts_half || !m->dout_half || create_packed(m) != 0)
        return -1;
    bind_half_activations(m);
    return 0;
}

static void bind_activations(gpt2 *m)
{
    const gpt2_dims *d = &m->dims;
    size_t BT = (size_t)m->max_B * m->max_T, C = d->n_embd;
    bool half = m->half != GEMM_F32;
    float *p = m->act_arena;
#define TAKE(n) (p += (n), p - (n))
    /* 16-bit mode: converted as soon as written, so one buffer serves them all */
    float *matmul_in = half ? TAKE(BT * 4 * C) : NULL;
    m->encoded = TAKE(BT * C);
    for (int l = 0; l < d->n_layer; l++) {
        block_acts *a = &m->acts[l];
        a->res3 = TAKE(BT * C);   /* block outputs are always kept: the next block's input */
        if (l > 0 && m->opt.recompute) {   /* internals: layer 0's buffers, recomputed */
            float *res3 = a->res3;
            *a = m->acts[0];
            a->res3 = res3;
            continue;
        }
        a->ln1 = half ? matmul_in : TAKE(BT * C);
        a->ln1_mean = TAKE(BT);
        a->ln1_rstd = TAKE(BT);
        a->qkv = TAKE(BT * 3 * C);
        a->atty = TAKE(BT * C);
        a->att_lse = TAKE((size_t)m->max_B * d->n_head * m->max_T);
        a->res2 = TAKE(BT * C);
        a->ln2 = half ? matmul_in : TAKE(BT * C);
        a->ln2_mean = TAKE(BT);
        a->ln2_rstd = TAKE(BT);
        a->fch = TAKE(BT * 4 * C);
        a->fch_gelu = half ? matmul_in : TAKE(BT * 4 * C);
    }
    m->lnf = half ? matmul_in : TAKE(BT * C);
    m->lnf_mean = TAKE(BT);
    m->lnf_rstd = TAKE(BT);
    m->logit_rows = logit_rows(d, m->max_B, m->max_T, &m->opt);
    m->logits = TAKE((size_t)m->logit_rows * d->vocab_size);
    m->losses = TAKE(BT);
#undef TAKE
}

int gpt2_create(gpt2 *m, const gpt2_dims *d, int B, int T, const gpt2_options *opt, char *err,
                size_t errlen)
{
    memset(m, 0, sizeof *m);
    m->dims = *d;
    m->opt = *opt;
    m->B = m->max_B = B;
    m->T = m->max_T = T;
    m->half = half_dtype(opt->precision);
    m->tensors = calloc((size_t)hf_gpt2_count(d->n_layer), sizeof *m->tensors);
    m->p.h = calloc(d->n_layer, sizeof *m->p.h);
    m->g.h = calloc(d->n_layer, sizeof *m->g.h);
    m->acts = calloc(d->n_layer, sizeof *m->acts);
    bool table = m->tensors && build_tensor_table(m) == 0;
    m->params = opt->params_memory ? opt->params_memory : alloc_floats(m->num_params);
    m->grads = opt->grads_memory ? opt->grads_memory : alloc_floats(m->num_params);
    m->act_arena = alloc_floats(activation_floats(d, B, T, opt));
    m->scratch = alloc_floats(scratch_floats(d, B, T));
    bool ok = table && m->p.h && m->g.h && m->acts && m->params && m->grads &&
              m->act_arena && m->scratch &&
              attention_work_init(&m->att_work, T, d->n_embd / d->n_head, omp_get_max_threads()) == 0;
    if (opt->split_embed_grad) {
        m->embed_tokens = malloc((size_t)B * T * sizeof *m->embed_tokens);
        m->embed_rows = alloc_floats((size_t)B * T * d->n_embd);
        m->embed_row_of = malloc((size_t)d->vocab_size * sizeof *m->embed_row_of);
        ok = ok && m->embed_tokens && m->embed_rows && m->embed_row_of;
        for (int v = 0; ok && v < d->vocab_size; v++)
            m->embed_row_of[v] = -1;
    }
    if (ok) {
        bind_params(m, m->params, &m->p);
        bind_params(m, m->grads, &m->g);
        bind_activations(m);
    }
    if (!ok || (m->half != GEMM_F32 && create_half(m) != 0)) {
        snprintf(err, errlen, "out of memory allocating the model (%.1f MB)",
                 gpt2_memory_bytes(d, B, T, opt) / 1e6);
        gpt2_destroy(m);
        return -1;
    }
    return 0;
}

void gpt2_destroy(gpt2 *m)
{
    destroy_packed(m);
    free(m->tensors);
    free(m->p.h);
    free(m->g.h);
    free(m->acts);
    if (!m->opt.params_memory)
        free(m->params);
    if (!m->opt.grads_memory)
        free(m->grads);
    free(m->act_arena);
    free(m->scratch);
    attention_work_free(&m->att_work);
    free(m->act_half_arena);
    free(m->acts_half);
    free(m->dout_half);
    free(m->embed_tokens);
    free(m->embed_rows);
    free(m->embed_row_of);
    memset(m, 0, sizeof *m);
}

/* ---- initialisation ---------------------------------------------------- */

/* Box-Muller on two 53-bit uniforms in (0,1]. */
static void fill_normal(float *x, size_t n, float std, uint64_t *s)
{
    for (size_t i = 0; i < n; i += 2) {
        double u1 = ((splitmix64(s) >> 11) + 1) * 0x1.0p-53;
        double u2 = ((splitmix64(s) >> 11) + 1) * 0x1.0p-53;
        double r = sqrt(-2.0 * log(u1)) * std;
        x[i] = (float)(r * cos(2 * M_PI * u2));
        if (i + 1 < n)
            x[i + 1] = (float)(r * sin(2 * M_PI * u2));
    }
}

void gpt2_params_changed(gpt2 *m)
{
    m->half_stale = true;
}

void gpt2_init_params(gpt2 *m, uint64_t seed)
{
    m->half_stale = true;
    float proj_std = 0.02f / sqrtf(2.0f * m->dims.n_layer);
    for (int i = 0; i < m->num_tensors; i++) {
        const param_tensor *t = &m->tensors[i];
        float *x = m->params + t->offset;
        /* one stream per tensor: adding a layer does not change the others */
        uint64_t s = seed ^ (0xA24BAED4963EE407ULL * (uint64_t)(i + 1));
        if (t->ndim == 2) {
            bool residual_proj = strstr(t->name, "c_proj.weight") != NULL;
            fill_normal(x, t->numel, residual_proj ? proj_std : 0.02f, &s);
        } else {
            float v = strstr(t->name, "ln_") && strstr(t->name, ".weight") ? 1.0f : 0.0f;
            for (size_t j = 0; j < t->numel; j++)
                x[j] = v;
        }
    }
}

/* ---- forward ----------------------------------------------------------- */

/* x rounded to the 16-bit operand type of this model. */
static void to_half(gpt2 *m, uint16_t *out, const float *x, size_t n)
{
    TIMED(m, OP_CONVERT, (m->half == GEMM_F16 ? f32_to_f16 : f32_to_bf16)(out, x, n));
}

/* The packed weights from the fp32 masters (after every parameter change):
 * matrices [first, first + count) (packed_shape's numbering).  Forward packs
 * each block's just before the block, whose parameters may have only just
 * arrived (params_needed). */
static void pack_weights(gpt2 *m, int first, int count)
{
    const gpt2_pack_share *s = m->opt.pack_share;
    TIMED(m, OP_CONVERT, {
        for (int i = first; i < first + count; i++) {
            const float *w;
            int ic, oc;
            packed_shape(m, i, &w, &ic, &oc);
            bool fwd = !s || m->pack_owner[2 * i] == s->rank;
            bool bwd = !s || m->pack_owner[2 * i + 1] == s->rank;
            if (fwd && bwd)
                gemm_weights_pack_pair(m->packed[i].fwd, m->packed[i].bwd, w);
            else if (fwd || bwd)
                gemm_weights_pack(fwd ? m->packed[i].fwd : m->packed[i].bwd, w);
            if (s && fwd)
                s->publish(s->ctx, 2 * i, m->pack_gen);
            if (s && bwd)
                s->publish(s->ctx, 2 * i + 1, m->pack_gen);
        }
    });
}

/* pack_share: copy k of the current generation, once its sharer has
 * published it (at once for this sharer's own copies). */
static void await_copy(gpt2 *m, int k)
{
    const gpt2_pack_share *s = m->opt.pack_share;
    if (s && m->pack_owner[k] != s->rank)
        TIMED(m, OP_CONVERT, s->await(s->ctx, k, m->pack_owner[k], m->pack_gen));
}


/* Forward is about to read tensors [first, first + count) of the table: ask
 * for each one's range (not their union: wte ends the arena and wpe starts
 * it, so theirs would be everything). */
static void need_params(gpt2 *m, int first, int count)
{
    if (!m->params_needed)
        return;
    for (const param_tensor *t = m->tensors + first; t < m->tensors + first + count; t++)
        m->params_needed(m->params_needed_ctx, t->offset, t->offset + t->numel);
}

/* What block l's forward reads (l = n_layer: the LM head's wte): its
 * parameters, and in 16-bit mode its packed weights, repacked first when
 * pack (the parameters changed) and, shared, once the other sharers'
 * copies are in. */
static void ready_block(gpt2 *m, int l, bool pack)
{
    const bool head = l == m->dims.n_layer;
    if (head)
        need_params(m, 0, 1);
    else
        need_params(m, 2 + l * BLOCK_TENSORS, BLOCK_TENSORS);
    if (m->half == GEMM_F32)
        return;
    int n = head ? 1 : 4;
    if (pack)
        pack_weights(m, 4 * l, n);
    for (int i = 4 * l; i < 4 * l + n; i++)
        await_copy(m, 2 * i);
}

/* out[N,OC] = inp[N,IC] @ w[IC,OC] + b[OC].  In 16-bit mode inp is first
 * converted into inp_half, which backward reuses, and w is pk->fwd. */
static void linear_forward(gpt2 *m, float *out, const float *inp, uint16_t *inp_half,
                           const float *w, const packed_matrix *pk, const float *b, int N, int IC,
                           int OC)
{
    if (m->half == GEMM_F32) {
        TIMED(m, OP_MATMUL, gemm_f32(false, false, N, OC, IC, inp, IC, w, OC, b, false, out, OC));
        return;
    }
    to_half(m, inp_half, inp, (size_t)N * IC);
    TIMED(m, OP_MATMUL, gemm_packed(pk->fwd, N, 1.0f, inp_half, IC, b, false, out, OC));
}

/* dinp[N,IC] = dout @ w^T (overwrites); dw[IC,OC] += inp^T @ dout; db[OC] += colsum(dout) */
static void linear_backward(gpt2 *m, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const uint16_t *inp_half, const float *w,
                            const packed_matrix *pk, int N, int IC, int OC)
{
    if (m->half == GEMM_F32) {
        TIMED(m, OP_MATMUL, {
            gemm_f32(false, true, N, IC, OC, dout, OC, w, OC, NULL, false, dinp, IC);
            gemm_f32(true, false, IC, OC, N, inp, IC, dout, OC, NULL, !m->grads_fresh, dw, OC);
        });
    } else {
        to_half(m, m->dout_half, dout, (size_t)N * OC);
        await_copy(m, 2 * (int)(pk - m->packed) + 1);
        TIMED(m, OP_MATMUL, {
            gemm_packed(pk->bwd, N, 1.0f, m->dout_half, OC, NULL, false, dinp, IC);
            gemm(m->half, true, false, IC, OC, N, inp_half, IC, m->dout_half, OC, NULL,
                 !m->grads_fresh, dw, OC);
        });
    }
    TIMED(m, OP_BIAS, bias_backward(db, dout, N, OC));
}

/* encoded[b,t,:] = wte[inputs[b,t],:] + wpe[t,:] */
static void embed_forward(float *encoded, const int *inputs, const float *wte, const float *wpe,
                          int B, int T, int C)
{
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        const float *te = wte + (size_t)inputs[bt] * C, *pe = wpe + (size_t)(bt % T) * C;
        float *out = encoded + (size_t)bt * C;
        for (int c = 0; c < C; c++)
            out[c] = te[c] + pe[c];
    }
}

/* dwte[row(inputs[b,t])] += dout[b,t]; dwpe[t] += dout[b,t], where row(v) is
 * v, or row_of[v] if given.  Serial over tokens (a token can repeat) but
 * vectorised along C; parallel over column blocks. */
static void embed_backward(float *dwte, const int *row_of, float *dwpe, const float *dout,
                           const int *inputs, int B, int T, int C)
{
    enum { CB = 64 };
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += CB) {
        int c1 = c0 + CB < C ? c0 + CB : C;
        for (int bt = 0; bt < B * T; bt++) {
            const float *d = dout + (size_t)bt * C;
            const int row = row_of ? row_of[inputs[bt]] : inputs[bt];
            float *te = dwte + (size_t)row * C, *pe = dwpe + (size_t)(bt % T) * C;
            for (int c = c0; c < c1; c++) {
                te[c] += d[c];
                pe[c] += d[c];
            }
        }
    }
}

/* bf16 mode's attention products are bf16 too where the CPU has them natively
 * (as PyTorch's attention on bf16 tensors), unless the options keep them fp32. */
bool gpt2_attention_bf16(const gpt2 *m)
{
    return m->half == GEMM_BF16 && !m->opt.attention_fp32 && attention_bf16_native();
}

static void block_forward(gpt2 *m, int l, const float *res_in, int B, int T)
{
    int C = m->dims.n_embd, NH = m->dims.n_head, N = B * T;
    const block_params *w = &m->p.h[l];
    block_acts *a = &m->acts[l];
    block_acts_half h = m->half != GEMM_F32 ? m->acts_half[l] : (block_acts_half){0};
    const packed_matrix *pk = m->packed ? &m->packed[4 * l] : NULL;
    TIMED(m, OP_LAYERNORM,
          layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, res_in, w->ln1w, w->ln1b, N, C));
    linear_forward(m, a->qkv, a->ln1, h.ln1, w->qkvw, &pk[0], w->qkvb, N, C, 3 * C);
    TIMED(m, OP_ATTENTION,
          attention_forward(a->atty, a->att_lse, a->qkv, B, T, C, NH, gpt2_attention_bf16(m),
                            &m->att_work));
    linear_forward(m, a->res2, a->atty, h.atty, w->attprojw, &pk[1], w->attprojb, N, C, C);
    TIMED(m, OP_RESIDUAL, residual_forward(a->res2, a->res2, res_in, (size_t)N * C));
    TIMED(m, OP_LAYERNORM,
          layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, w->ln2w, w->ln2b, N, C));
    linear_forward(m, a->fch, a->ln2, h.ln2, w->fcw, &pk[2], w->fcb, N, C, 4 * C);
    TIMED(m, OP_GELU, gelu_forward(a->fch_gelu, a->fch, (size_t)N * 4 * C));
    linear_forward(m, a->res3, a->fch_gelu, h.fch_gelu, w->fcprojw, &pk[3], w->fcprojb, N,
                   4 * C, C);
    TIMED(m, OP_RESIDUAL, residual_forward(a->res3, a->res3, a->res2, (size_t)N * C));
}

/* The padding rows' logits (gpt2_options.vocab_real) of rows x V logits. */
static void mask_padding(const gpt2 *m, float *logits, int rows)
{
    int V = m->dims.vocab_size, R = m->opt.vocab_real;
    if (R <= 0 || R >= V)
        return;
#pragma omp parallel for if (rows >= 64)
    for (int r = 0; r < rows; r++)
        for (int v = R; v < V; v++)
            logits[(size_t)r * V + v] = -INFINITY;
}

/* 16-bit mode's LM head: logits a chunk of logit_rows at a time; with
 * targets each chunk becomes the losses and the unscaled gradient
 * softmax - onehot in dout_half [N,V] (backward applies dloss), otherwise the
 * logits stay in m->logits, which holds them all only when N <= logit_rows.
 * Returns whether there were targets. */
static bool lm_head_forward_half(gpt2 *m, const int *targets, int N)
{
    int C = m->dims.n_embd, V = m->dims.vocab_size;
    const gemm_weights *head = m->packed[4 * m->dims.n_layer].fwd;
    if (!targets && N > m->logit_rows) {
        fprintf(stderr, "fatal: logits of %d positions asked for; 16-bit mode holds %d\n", N,
                m->logit_rows);
        abort();
    }
    for (int r0 = 0; r0 < N; r0 += m->logit_rows) {
        int rows = N - r0 < m->logit_rows ? N - r0 : m->logit_rows;
        TIMED(m, OP_LM_HEAD, gemm_packed(head, rows, 1.0f, m->lnf_half + (size_t)r0 * C, C, NULL,
                                         false, m->logits, V));
        mask_padding(m, m->logits, rows);
        if (!targets)
            return false;
        TIMED(m, OP_XENT, softmax_xent_backward16(m->losses + r0, m->logits,
                                                  m->dout_half + (size_t)r0 * V,
                                                  m->half == GEMM_F16, targets + r0, rows, V, 1.0f));
    }
    return true;
}

float gpt2_forward(gpt2 *m, const int *inputs, const int *targets, int B, int T)
{
    int C = m->dims.n_embd, V = m->dims.vocab_size, L = m->dims.n_layer, N = B * T;
    if (B > m->max_B || T > m->max_T) {
        fprintf(stderr, "fatal: forward of %d x %d tokens on a model sized for %d x %d\n", B, T,
                m->max_B, m->max_T);
        abort();
    }
    m->inputs = inputs;
    m->targets = targets;
    m->B = B;   /* backward uses the shape of the last forward */
    m->T = T;
    m->pass = 0;
    const bool pack = m->half != GEMM_F32 && m->half_stale;
    if (pack)
        m->pack_gen++;
    /* the embedding reads only its tokens' rows of wte, which the caller
     * makes current (params_needed); the whole of wte is asked for before the
     * LM head */
    need_params(m, 1, 1);   /* wpe */
    TIMED(m, OP_EMBED, embed_forward(m->encoded, inputs, m->p.wte, m->p.wpe, B, T, C));
    const float *res = m->encoded;
    for (int l = 0; l < L; l++) {
        ready_block(m, l, pack);
        block_forward(m, l, res, B, T);
        res = m->acts[l].res3;
    }
    need_params(m, m->num_tensors - 2, 2);   /* ln_f */
    ready_block(m, L, pack);                 /* wte, for the LM head */
    m->half_stale = false;
    TIMED(m, OP_LAYERNORM, layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, res, m->p.lnfw,
                                             m->p.lnfb, N, C));
    if (m->half != GEMM_F32) {
        to_half(m, m->lnf_half, m->lnf, (size_t)N * C);
        if (!lm_head_forward_half(m, targets, N))
            return 0.0f;
    } else {
        TIMED(m, OP_LM_HEAD,
              gemm_f32(false, true, N, V, C, m->lnf, C, m->p.wte, C, NULL, false, m->logits, V));
        mask_padding(m, m->logits, N);
        if (!targets)
            return 0.0f;
        TIMED(m, OP_XENT, softmax_xent(m->losses, m->logits, targets, N, V, 0.0f, false));
    }
    double sum = 0;
    for (int i = 0; i < N; i++)
        sum += m->losses[i];
    return (float)(sum / N);
}

/* ---- backward ---------------------------------------------------------- */

static void notify_grads_ready(gpt2 *m, size_t from)
{
    if (m->grads_ready)
        m->grads_ready(m->grads_ready_ctx, from);
}

/* Block l's gradients from its tensor i on (and all after the block) are
 * final: within a block, backward finishes its tensors last to first. */
static void block_ready(gpt2 *m, int l, int i)
{
    notify_grads_ready(m, m->tensors[2 + l * BLOCK_TENSORS + i].offset);
}

/* The input side of wte's gradient into embed_rows, by distinct token in
 * increasing order (embed_tokens), and dwpe as usual. */
static void embed_backward_split(gpt2 *m, const float *dout, int B, int T, int C)
{
    int n = 0, V = m->dims.vocab_size, *row_of = m->embed_row_of;
    for (int bt = 0; bt < B * T; bt++)
        row_of[m->inputs[bt]] = 0;   /* seen */
    for (int v = 0; v < V; v++)
        if (row_of[v] >= 0) {
            row_of[v] = n;
            m->embed_tokens[n++] = v;
        }
    m->n_embed_tokens = n;
    memset(m->embed_rows, 0, (size_t)n * C * sizeof *m->embed_rows);
    embed_backward(m->embed_rows, row_of, m->g.wpe, dout, m->inputs, B, T, C);
    for (int i = 0; i < n; i++)
        row_of[m->embed_tokens[i]] = -1;
}

/* dres holds d(block output) on entry and d(block input) on return. */
static void block_backward(gpt2 *m, int l, const float *res_in, float *dres, int B, int T)
{
    int C = m->dims.n_embd, NH = m->dims.n_head, N = B * T;
    size_t BTC = (size_t)N * C;
    const block_params *w = &m->p.h[l];
    block_params *g = &m->g.h[l];
    block_acts *a = &m->acts[l];
    float *dln = m->scratch + BTC, *datt = m->scratch + 2 * BTC, *dbig = m->scratch + 3 * BTC;
    block_acts_half h = m->half != GEMM_F32 ? m->acts_half[l] : (block_acts_half){0};
    const packed_matrix *pk = m->packed ? &m->packed[4 * l] : NULL;

    linear_backward(m, dbig, g->fcprojw, g->fcprojb, dres, a->fch_gelu, h.fch_gelu, w->fcprojw,
                    &pk[3], N, 4 * C, C);
    block_ready(m, l, HF_FCPROJ_W);
    TIMED(m, OP_GELU, gelu_backward(dbig, a->fch, dbig, (size_t)N * 4 * C));
    linear_backward(m, dln, g->fcw, g->fcb, dbig, a->ln2, h.ln2, w->fcw, &pk[2], N, C, 4 * C);
    block_ready(m, l, HF_FC_W);
    TIMED(m, OP_LAYERNORM, layernorm_backward(dres, g->ln2w, g->ln2b, dln, a->res2, w->ln2w,
                                              a->ln2_mean, a->ln2_rstd, N, C));
    block_ready(m, l, HF_LN2_W);
    linear_backward(m, datt, g->attprojw, g->attprojb, dres, a->atty, h.atty, w->attprojw,
                    &pk[1], N, C, C);
    block_ready(m, l, HF_ATTPROJ_W);
    TIMED(m, OP_ATTENTION, attention_backward(dbig, datt, a->qkv, a->atty, a->att_lse, B, T, C, NH,
                                              gpt2_attention_bf16(m), &m->att_work));
    linear_backward(m, dln, g->qkvw, g->qkvb, dbig, a->ln1, h.ln1, w->qkvw, &pk[0], N, C, 3 * C);
    block_ready(m, l, HF_QKV_W);
    TIMED(m, OP_LAYERNORM, layernorm_backward(dres, g->ln1w, g->ln1b, dln, res_in, w->ln1w,
                                              a->ln1_mean, a->ln1_rstd, N, C));
    block_ready(m, l, HF_LN1_W);   /* the whole block */
}

void gpt2_pack_share_now(gpt2 *m)
{
    if (!m->opt.pack_share || m->half == GEMM_F32 || !m->half_stale)
        return;
    m->pack_gen++;
    for (int l = 0; l <= m->dims.n_layer; l++)
        ready_block(m, l, true);
    m->half_stale = false;
}

void gpt2_backward(gpt2 *m, float dloss_scale)
{
    int C = m->dims.n_embd, V = m->dims.vocab_size, L = m->dims.n_layer;
    int B = m->B, T = m->T, N = B * T;
    float *dres = m->scratch, *dln = m->scratch + (size_t)N * C;
    m->pass = 1;
    if (m->grads_ready && !m->embed_rows) {   /* wte's gradient would not be final early */
        fprintf(stderr, "fatal: grads_ready needs a model made with split_embed_grad\n");
        abort();
    }

    /* through the tied LM head: 16-bit mode has the unscaled dlogits from
     * forward; fp32 mode turns its logits into dlogits in place now */
    if (m->half != GEMM_F32) {
        await_copy(m, 2 * 4 * L + 1);
        TIMED(m, OP_LM_HEAD, {
            gemm_scaled(m->half, true, false, V, C, N, dloss_scale, m->dout_half, V, m->lnf_half,
                        C, !m->grads_fresh, m->g.wte, C);
            notify_grads_ready(m, m->tensors[0].offset);   /* wte (input side: embed_rows) */
            gemm_packed(m->packed[4 * L].bwd, N, dloss_scale, m->dout_half, V, NULL, false, dln,
                        C);
        });
    } else {
        TIMED(m, OP_XENT, softmax_xent(m->losses, m->logits, m->targets, N, V, dloss_scale, true));
        TIMED(m, OP_LM_HEAD, {
            gemm_f32(true, false, V, C, N, m->logits, V, m->lnf, C, NULL, !m->grads_fresh,
                     m->g.wte, C);
            notify_grads_ready(m, m->tensors[0].offset);   /* wte (input side: embed_rows) */
            gemm_f32(false, false, N, C, V, m->logits, V, m->p.wte, C, NULL, false, dln, C);
        });
    }
    memset(dres, 0, (size_t)N * C * sizeof *dres);
    const float *res_last = L ? m->acts[L - 1].res3 : m->encoded;
    TIMED(m, OP_LAYERNORM, layernorm_backward(dres, m->g.lnfw, m->g.lnfb, dln, res_last,
                                              m->p.lnfw, m->lnf_mean, m->lnf_rstd, N, C));
    notify_grads_ready(m, m->tensors[m->num_tensors - 2].offset);
    for (int l = L - 1; l >= 0; l--) {
        const float *res_in = l ? m->acts[l - 1].res3 : m->encoded;
        /* recompute: rerun the block on its kept input with the same kernels in
         * the same order, so the gradients are bit-identical to storing them
         * (the last block's internals are still in place from forward) */
        if (m->opt.recompute && l < L - 1)
            block_forward(m, l, res_in, B, T);
        block_backward(m, l, res_in, dres, B, T);
    }
    if (m->grads_ready)
        TIMED(m, OP_EMBED, embed_backward_split(m, dres, B, T, C));
    else
        TIMED(m, OP_EMBED, embed_backward(m->g.wte, NULL, m->g.wpe, dres, m->inputs, B, T, C));
    m->grads_fresh = false;
    notify_grads_ready(m, 0);
}

/* Whether backward's weight-gradient product is the first to write tensor t
 * (the table's order: wte, wpe, the blocks', ln_f's): wte (the LM head's)
 * and each block's four matrices. */
static bool written_by_product(const gpt2 *m, int t)
{
    if (t == 0)
        return true;
    if (t < 2 || t >= 2 + m->dims.n_layer * BLOCK_TENSORS)
        return false;
    int k = (t - 2) % BLOCK_TENSORS;
    return k == HF_QKV_W || k == HF_ATTPROJ_W || k == HF_FC_W || k == HF_FCPROJ_W;
}

void gpt2_zero_grad(gpt2 *m)
{
    for (int t = 0; t < m->num_tensors; t++)
        if (!written_by_product(m, t))
            fill_zeros(m->grads + m->tensors[t].offset, m->tensors[t].numel);
    m->grads_fresh = true;
}

double gpt2_flops_per_token(const gpt2 *m, int T)
{
    const gpt2_dims *d = &m->dims;
    return 6.0 * (double)m->num_params + 6.0 * d->n_layer * d->n_embd * (double)T;
}
