/* load: an inference model's weights into memory, in the layout --quant
 * chooses; see infer.h for the contract.  Everything arrives as a walk over
 * the model's tensors (infer_model_walk): fp32 tensors from a checkpoint or a
 * training model, quantized to int8 or rounded to bf16 here; a
 * --save-quantized file's int8 matrices as stored; a GGUF file through
 * gguf_load.c.  infer.c runs the model this fills. */
#include "infer/infer.h"

#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "kernels/bf16mm.h"
#include "kernels/clock.h"
#include "kernels/convert.h"
#include "kernels/pages.h"
#include "kernels/q8.h"
#include "infer/gguf_load.h"
#include "infer/q8file.h"

const char *infer_quant_name(infer_quant q)
{
    return q == INFER_INT8 ? "int8" : q == INFER_BF16 ? "bf16" : "fp32";
}

int infer_quant_parse(const char *s, infer_quant *q)
{
    static const infer_quant all[] = {INFER_FP32, INFER_BF16, INFER_INT8};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, infer_quant_name(all[i])) == 0) {
            *q = all[i];
            return 0;
        }
    return -1;
}

int infer_check_dims(const gpt2_dims *d, infer_quant q, char *err, size_t errlen)
{
    if (hf_gpt2_dims_check(d, err, errlen) != 0)
        return -1;
    if (q == INFER_INT8 && d->n_embd % Q8_GS) {
        snprintf(err, errlen, "n_embd %d is not a multiple of %d, which int8 needs "
                 "(use --quant fp32)", d->n_embd, Q8_GS);
        return -1;
    }
    return 0;
}

/* ---- weights ------------------------------------------------------------- */

/* Carves 64-byte aligned pieces out of an arena; with base NULL it only
 * measures, so one layout function both sizes and binds the arenas. */
typedef struct {
    char *base;
    size_t used;
} bump;

static void *take(bump *b, size_t bytes)
{
    void *p = b->base ? b->base + b->used : NULL;
    b->used += (bytes + 63) & ~(size_t)63;
    return p;
}

static float *take_f(bump *b, size_t n)
{
    return take(b, n * sizeof(float));
}

/* The arenas: f fp32, i8 and sc int8 values and scales, h bf16 matrices. */
typedef struct {
    bump *f, *i8, *sc, *h;
} arenas;

/* a->i8, a->sc NULL for an int8 model held in a decode layout (packed one
 * matrix at a time as it loads: see packing_mat). */
static void layout_linear(infer_linear *l, int in, int out, infer_quant q, const arenas *a)
{
    *l = (infer_linear){.in = in, .out = out, .b = take_f(a->f, (size_t)out)};
    if (q == INFER_INT8 && a->i8) {
        l->wq = take(a->i8, (size_t)in * out);
        l->ws = take_f(a->sc, (size_t)in * out / Q8_GS);
    } else if (q == INFER_BF16) {
        l->wh = take(a->h, bf16mm_packed_len(in, out) * sizeof *l->wh);
    } else if (q == INFER_FP32) {
        l->w = take_f(a->f, (size_t)in * out);
    }
}

/* An int8 or bf16 model holds wte only as its LM head (int8 rows, or
 * bf16mm's layout), which the embedding is read from too; m->wte is the
 * loader's temporary then. */
static void layout(infer_model *m, arenas a)
{
    const gpt2_dims *d = &m->d;
    size_t C = d->n_embd;
    const infer_quant q = m->quant;
    if (m->decode_path != Q8_SCALAR)
        a.i8 = a.sc = NULL;
    if (q == INFER_FP32)
        m->wte = take_f(a.f, d->vocab_size * C);
    m->wpe = take_f(a.f, d->n_positions * C);
    for (int l = 0; l < d->n_layer; l++) {
        infer_block *b = &m->h[l];
        b->ln1w = take_f(a.f, C);
        b->ln1b = take_f(a.f, C);
        b->ln2w = take_f(a.f, C);
        b->ln2b = take_f(a.f, C);
        layout_linear(&b->qkv, C, 3 * C, q, &a);
        layout_linear(&b->attproj, C, C, q, &a);
        layout_linear(&b->fc, C, 4 * C, q, &a);
        layout_linear(&b->fcproj, 4 * C, C, q, &a);
    }
    m->lnfw = take_f(a.f, C);
    m->lnfb = take_f(a.f, C);
    m->lm_head = (infer_linear){.in = C, .out = d->vocab_size};
    /* the tied head: logits = x wte^T, so wte's rows are already [out, in] */
    if (q == INFER_INT8 && a.i8) {
        m->lm_head.wq = take(a.i8, d->vocab_size * C);
        m->lm_head.ws = take_f(a.sc, d->vocab_size * C / Q8_GS);
    } else if (q == INFER_BF16) {
        m->lm_head.wh = take(a.h, bf16mm_packed_len(C, d->vocab_size) * sizeof *m->lm_head.wh);
    }
}

/* Tensor j of block b (io/hf_names.h's block order): a matrix, or else the
 * vector it returns. */
static const infer_linear *block_matrix(const infer_block *b, int j)
{
    switch (j) {
    case HF_QKV_W: return &b->qkv;
    case HF_ATTPROJ_W: return &b->attproj;
    case HF_FC_W: return &b->fc;
    case HF_FCPROJ_W: return &b->fcproj;
    default: return NULL;
    }
}

static float *block_vector(const infer_block *b, int j)
{
    float *const vec[HF_BLOCK_TENSORS] = {
        [HF_LN1_W] = b->ln1w,      [HF_LN1_B] = b->ln1b,          [HF_QKV_B] = b->qkv.b,
        [HF_ATTPROJ_B] = b->attproj.b, [HF_LN2_W] = b->ln2w,      [HF_LN2_B] = b->ln2b,
        [HF_FC_B] = b->fc.b,       [HF_FCPROJ_B] = b->fcproj.b,
    };
    return vec[j];
}

/* Visits tensor i of io/hf_names.h's list (t) in m. */
static int walk_tensor(const infer_model *m, int i, const hf_tensor *t, const infer_visitor *v,
                       void *ctx, char *err, size_t errlen)
{
    int n = hf_gpt2_count(m->d.n_layer);
    if (i == 0)
        return m->wte ? v->vec(ctx, t->name, t->rows, t->cols, m->wte, err, errlen) : 0;
    if (i == 1)
        return v->vec(ctx, t->name, t->rows, t->cols, m->wpe, err, errlen);
    if (i >= n - 2)
        return v->vec(ctx, t->name, t->rows, 0, i == n - 2 ? m->lnfw : m->lnfb, err, errlen);
    const infer_block *b = &m->h[(i - 2) / HF_BLOCK_TENSORS];
    int j = (i - 2) % HF_BLOCK_TENSORS;
    const infer_linear *lin = block_matrix(b, j);
    return lin ? v->mat(ctx, t->name, lin, err, errlen)
               : v->vec(ctx, t->name, t->rows, 0, block_vector(b, j), err, errlen);
}

int infer_model_walk(const infer_model *m, const infer_visitor *v, void *ctx, char *err,
                     size_t errlen)
{
    int n, rc = 0;
    hf_tensor *t = hf_gpt2_tensor_list(&m->d, &n);
    if (!t) {
        snprintf(err, errlen, "out of memory for the tensor list");
        return -1;
    }
    for (int i = 0; i < n && rc == 0; i++)
        rc = walk_tensor(m, i, &t[i], v, ctx, err, errlen);
    free(t);
    if (rc == 0 && m->quant != INFER_FP32)
        rc = v->mat(ctx, "lm_head.weight", &m->lm_head, err, errlen);
    return rc;
}

/* Loading from fp32 tensors (a checkpoint, a training model): an int8 or bf16
 * matrix passes through tmp and q8_pack_weights or bf16mm_pack, the LM head
 * is quantized or packed from wte, which was read before it. */
typedef struct {
    infer_tensor_fn fn;
    void *ctx;
    const infer_model *m;
    float *tmp;              /* [4C x C], the largest matrix of a block; int8 and bf16 */
} fp32_source;

static int read_f32(void *ctx, const char *name, int rows, int cols, float *dst, char *err,
                    size_t errlen)
{
    const fp32_source *src = ctx;
    if (src->fn(src->ctx, name, rows, cols, dst, err, errlen) != 0)
        return -1;
    if (!f32_all_finite(dst, (size_t)rows * (cols ? cols : 1))) {
        snprintf(err, errlen, "%s has non-finite values", name);
        return -1;
    }
    return 0;
}

/* int8 holds |w| <= Q8_WEIGHT_MAX (q8.h); 0, or -1 with a reason. */
static int int8_range(const char *name, const float *w, size_t n, char *err, size_t errlen)
{
    size_t i = q8_weight_out_of_range(w, n);
    if (i == n)
        return 0;
    snprintf(err, errlen, "%s has a weight of %g, beyond int8's range (|w| <= %g): use "
             "--quant fp32", name, w[i], Q8_WEIGHT_MAX);
    return -1;
}

static int read_matrix(void *ctx, const char *name, const infer_linear *l, char *err,
                       size_t errlen)
{
    const fp32_source *src = ctx;
    const size_t n = (size_t)l->out * l->in;
    if (l == &src->m->lm_head && l->wh) {   /* the tied head: wte is W^T */
        bf16mm_pack(l->wh, src->m->wte, true, l->in, l->out);
        return 0;
    }
    if (l == &src->m->lm_head) {   /* the tied head: wte's rows are already [out, in] */
        if (int8_range("transformer.wte.weight", src->m->wte, n, err, errlen) != 0)
            return -1;
        q8_quantize_weights(l->wq, l->ws, src->m->wte, n);
        return 0;
    }
    if (read_f32(ctx, name, l->in, l->out, l->w ? l->w : src->tmp, err, errlen) != 0)
        return -1;
    if (l->wq && int8_range(name, src->tmp, n, err, errlen) != 0)
        return -1;
    if (l->wq)
        q8_pack_weights(l->wq, l->ws, src->tmp, l->in, l->out);
    if (l->wh)
        bf16mm_pack(l->wh, src->tmp, false, l->in, l->out);
    return 0;
}

/* Every matrix: the blocks' four, then the LM head. */
static int matrices(infer_model *m, infer_linear **all)
{
    int n = 0;
    for (int l = 0; m->h && l < m->d.n_layer; l++) {
        infer_block *b = &m->h[l];
        all[n++] = &b->qkv;
        all[n++] = &b->attproj;
        all[n++] = &b->fc;
        all[n++] = &b->fcproj;
    }
    all[n++] = &m->lm_head;
    return n;
}

/* bf16: a oneDNN view of every packed matrix, where oneDNN has a native bf16
 * product reading bf16mm's layout (n_embd a multiple of 32); a matrix
 * without one (or without memory for it) runs through bf16mm only. */
static void view_bf16_matrices(infer_model *m)
{
    infer_linear **all = malloc((4 * (size_t)m->d.n_layer + 1) * sizeof *all);
    for (int i = 0, n = all ? matrices(m, all) : 0; i < n; i++)
        all[i]->wg = gemm_weights_view_bf16(all[i]->wh, all[i]->in, all[i]->out);
    free(all);
}

/* bf16: from how many rows oneDNN's product beats bf16mm's, timed on block
 * 0's fc at doubling row counts (the best of a few runs after one that
 * creates oneDNN's primitive); INT_MAX where there are no views or bf16mm is
 * faster up to TRY_ROWS_MAX rows.  Tens of milliseconds at load. */
static void choose_bf16_products(infer_model *m)
{
    enum { TRY_ROWS_MAX = 256, RUNS = 3 };
    m->bf16_gemm_rows = INT_MAX;
    const infer_linear *l = &m->h[0].fc;
    const int rows_max = m->d.n_positions < TRY_ROWS_MAX ? m->d.n_positions : TRY_ROWS_MAX;
    if (!l->wg || rows_max < 2)
        return;
    float *x = calloc((size_t)rows_max * l->in, sizeof *x);
    float *y = malloc((size_t)rows_max * l->out * sizeof *y);
    uint16_t *xh = malloc((size_t)rows_max * l->in * sizeof *xh);
    for (int n = 2; x && y && xh && n <= rows_max; n *= 2) {
        double own = INFINITY, lib = INFINITY;
        for (int r = 0; r <= RUNS; r++) {
            const double t0 = clock_mono_s();
            bf16mm_matmul(y, x, l->wh, l->b, n, l->in, l->out);
            const double t1 = clock_mono_s();
            f32_to_bf16(xh, x, (size_t)n * l->in);
            gemm_packed(l->wg, n, 1.0f, xh, l->in, l->b, false, y, l->out);
            const double t2 = clock_mono_s();
            if (r > 0) {
                own = fmin(own, t1 - t0);
                lib = fmin(lib, t2 - t1);
            }
        }
        if (lib < own) {
            m->bf16_gemm_rows = n;
            break;
        }
    }
    free(x);
    free(y);
    free(xh);
}

/* An int8 model with a decode layout loads one matrix at a time: the visitor
 * fills [out, in] values and scales into one reused buffer, which is packed
 * into the matrix's layout at once, so the load never holds two copies. */
typedef struct {
    const infer_visitor *inner;
    void *ctx;
    infer_model *m;
    int8_t *wq;   /* the largest matrix's room */
    float *ws;
} packing;

static int packing_vec(void *ctx, const char *name, int rows, int cols, float *x, char *err,
                       size_t errlen)
{
    const packing *p = ctx;
    return p->inner->vec(p->ctx, name, rows, cols, x, err, errlen);
}

static int packing_mat(void *ctx, const char *name, const infer_linear *l, char *err,
                       size_t errlen)
{
    const packing *p = ctx;
    infer_linear *w = (infer_linear *)l;   /* the model's own matrix, being loaded */
    w->wq = p->wq;
    w->ws = p->ws;
    int rc = p->inner->mat(p->ctx, name, w, err, errlen);
    size_t bytes = (q8_decode_pack_bytes(p->m->decode_path, l->in, l->out) + 63) & ~(size_t)63;
    if (rc == 0 && !(w->wv = pages_alloc(bytes))) {
        snprintf(err, errlen, "out of memory for %s (%.1f MB)", name, bytes / 1e6);
        rc = -1;
    }
    if (rc == 0 && q8_decode_pack(p->m->decode_path, w->wv, w->wq, w->ws, l->in, l->out) != 0) {
        snprintf(err, errlen, "%s: int8 scales that are not fp16 values", name);
        rc = -1;
    }
    if (rc == 0)
        p->m->weight_bytes += bytes;
    w->wq = NULL;
    w->ws = NULL;
    return rc;
}

/* Walks v into a model with decode layouts (see packing); 0 or -1. */
static int load_packed(infer_model *m, const infer_visitor *v, void *ctx, char *err,
                       size_t errlen)
{
    const size_t C = m->d.n_embd, V = m->d.vocab_size, most = (V > 4 * C ? V : 4 * C) * C;
    packing p = {v, ctx, m, malloc(most), malloc(most / Q8_GS * sizeof(float))};
    static const infer_visitor wrap = {packing_vec, packing_mat};
    int rc = p.wq && p.ws ? infer_model_walk(m, &wrap, &p, err, errlen) : -1;
    if (!p.wq || !p.ws)
        snprintf(err, errlen, "out of memory loading the int8 matrices");
    free(p.wq);
    free(p.ws);
    return rc;
}

/* read_wte: v gives fp32 tensors (infer_model_build), so an int8 or bf16
 * model's LM head is made from wte, read into a temporary first; other
 * visitors fill the head as it is stored and never see wte. */
static int load_model(infer_model *m, const gpt2_dims *d, infer_quant q, const infer_visitor *v,
                      void *ctx, bool read_wte, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (infer_check_dims(d, q, err, errlen) != 0)
        return -1;
    m->d = *d;
    m->quant = q;
    m->decode_path = q == INFER_INT8 ? q8_decode_path() : Q8_SCALAR;
    m->h = calloc(d->n_layer, sizeof *m->h);
    bump f = {0}, i8 = {0}, sc = {0}, h = {0};
    if (m->h)
        layout(m, (arenas){&f, &i8, &sc, &h});
    m->f32 = m->h ? pages_alloc(f.used) : NULL;
    m->i8 = m->h && i8.used ? pages_alloc(i8.used) : NULL;
    m->scales = m->h && sc.used ? pages_alloc(sc.used) : NULL;
    m->bf16 = m->h && h.used ? pages_alloc(h.used) : NULL;
    float *wte = read_wte && q != INFER_FP32
                     ? malloc((size_t)d->vocab_size * d->n_embd * sizeof *wte) : NULL;
    if (!m->h || !m->f32 || (i8.used && (!m->i8 || !m->scales)) || (h.used && !m->bf16) ||
        (read_wte && q != INFER_FP32 && !wte)) {
        snprintf(err, errlen, "out of memory for the weights (%.1f MB)",
                 (f.used + i8.used + sc.used + h.used) / 1e6);
        free(wte);
        infer_model_free(m);
        return -1;
    }
    f = (bump){(char *)m->f32, 0};
    i8 = (bump){(char *)m->i8, 0};
    sc = (bump){(char *)m->scales, 0};
    h = (bump){(char *)m->bf16, 0};
    layout(m, (arenas){&f, &i8, &sc, &h});
    if (wte)
        m->wte = wte;   /* read, then quantized or packed into the LM head */
    memset(m->f32, 0, f.used);   /* the alignment gaps too, so round_to_bf16 sees only numbers */
    m->weight_bytes = f.used + i8.used + sc.used + h.used;
    int rc = m->decode_path != Q8_SCALAR ? load_packed(m, v, ctx, err, errlen)
                                         : infer_model_walk(m, v, ctx, err, errlen);
    free(wte);
    if (wte)
        m->wte = NULL;
    if (rc != 0) {
        infer_model_free(m);
        return -1;
    }
    if (q == INFER_BF16) {
        /* the fp32 ones (embeddings, biases, LayerNorm) at bf16 precision too */
        round_to_bf16(m->f32, f.used / sizeof(float));
        view_bf16_matrices(m);
        choose_bf16_products(m);
    }
    return 0;
}

int infer_model_load(infer_model *m, const gpt2_dims *d, infer_quant q, const infer_visitor *v,
                     void *ctx, char *err, size_t errlen)
{
    return load_model(m, d, q, v, ctx, false, err, errlen);
}

int infer_model_build(infer_model *m, const gpt2_dims *d, infer_quant q, infer_tensor_fn fn,
                      void *ctx, char *err, size_t errlen)
{
    static const infer_visitor v = {read_f32, read_matrix};
    fp32_source src = {fn, ctx, m, NULL};
    if (q != INFER_FP32 &&
        !(src.tmp = malloc((size_t)4 * d->n_embd * d->n_embd * sizeof *src.tmp))) {
        snprintf(err, errlen, "out of memory for the weights");
        return -1;
    }
    int rc = load_model(m, d, q, &v, &src, true, err, errlen);
    free(src.tmp);
    return rc;
}

void infer_model_free(infer_model *m)
{
    infer_linear **all = m->h ? malloc((4 * (size_t)m->d.n_layer + 1) * sizeof *all) : NULL;
    for (int i = 0, n = all ? matrices(m, all) : 0; i < n; i++) {
        free(all[i]->wv);
        gemm_weights_destroy(all[i]->wg);
    }
    free(all);
    free(m->h);
    free(m->f32);
    free(m->i8);
    free(m->scales);
    free(m->bf16);
    memset(m, 0, sizeof *m);
}

/* ---- the checkpoint -------------------------------------------------------- */

static int ckpt_source(void *ctx, const char *name, int rows, int cols, float *dst, char *err,
                       size_t errlen)
{
    return ckpt_model_tensor(ctx, name, rows, cols, dst, err, errlen);
}

/* A --save-quantized file: the fp32 tensors from /model as in a checkpoint,
 * the int8 matrices from /q8 as they are. */
typedef struct {
    fp32_source f32;
    const infer_q8file *q;
} q8_source;

static int q8_vec(void *ctx, const char *name, int rows, int cols, float *x, char *err,
                  size_t errlen)
{
    return read_f32(&((q8_source *)ctx)->f32, name, rows, cols, x, err, errlen);
}

static int q8_mat(void *ctx, const char *name, const infer_linear *l, char *err, size_t errlen)
{
    return infer_q8file_matrix(((q8_source *)ctx)->q, name, l, err, errlen);
}

static int load_q8file(infer_model *m, const gpt2_dims *d, ckpt_model_file *f,
                       const infer_q8file *q, char *err, size_t errlen)
{
    static const infer_visitor v = {q8_vec, q8_mat};
    q8_source src = {{ckpt_source, f, m, NULL}, q};
    return infer_model_load(m, d, INFER_INT8, &v, &src, err, errlen);
}

/* /config's dimensions against the shapes in the file, before anything is
 * allocated for them: a config claiming more positions, layers, width or
 * vocabulary than the tensors have got the weights allocated (and zeroed) at
 * its size first (gigabytes for a small file), and one claiming fewer layers
 * ran part of the model.  Only shapes are read.  A --save-quantized file (q8
 * not NULL) holds the matrices in /q8 as [out, in] (HF's [in, out]), wte as
 * the tied head, lm_head.weight. */
static int check_shapes(ckpt_model_file *f, const char *path, const gpt2_dims *d,
                        const infer_q8file *q8, char *err, size_t errlen)
{
    int n, rc = 0;
    hf_tensor *t = hf_gpt2_tensor_list(d, &n);
    if (!t) {
        snprintf(err, errlen, "out of memory for the tensor list");
        return -1;
    }
    for (int i = 0; i < n && rc == 0; i++)
        if (q8 && i == 0)
            rc = infer_q8file_check(q8, "lm_head.weight", t[i].rows, t[i].cols, err, errlen);
        else if (q8 && i != 1 && t[i].cols)
            rc = infer_q8file_check(q8, t[i].name, t[i].cols, t[i].rows, err, errlen);
        else
            rc = ckpt_model_tensor(f, t[i].name, t[i].rows, t[i].cols, NULL, err, errlen);
    free(t);
    char next[HF_NAME_MAX], why[300];
    snprintf(next, sizeof next, "transformer.h.%d.ln_1.weight", d->n_layer);
    if (rc == 0 && ckpt_model_tensor(f, next, d->n_embd, 0, NULL, why, sizeof why) == 0) {
        snprintf(err, errlen, "%s: /config n_layer is %d but /model holds more blocks", path,
                 d->n_layer);
        rc = -1;
    }
    return rc;
}

static int load_open(ckpt_model_file *f, const char *path, const gpt2_dims *d, infer_quant q,
                     infer_model *m, tokenizer **tok, char *err, size_t errlen)
{
    char why[300];
    if (infer_check_dims(d, q, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        return -1;
    }
    if (!(*tok = ckpt_model_tokenizer(f, err, errlen)))
        return -1;
    if (tokenizer_vocab_size(*tok) > d->vocab_size) {
        snprintf(err, errlen, "%s: the tokenizer has %d tokens but the model only %d", path,
                 tokenizer_vocab_size(*tok), d->vocab_size);
        return -1;
    }
    infer_q8file *q8 = NULL;
    int has_q8 = infer_q8file_open(path, &q8, err, errlen);
    if (has_q8 < 0)
        return -1;
    if (has_q8 && q != INFER_INT8) {
        snprintf(err, errlen, "%s holds int8 weights (written by --save-quantized): it runs "
                 "only with --quant int8", path);
        infer_q8file_close(q8);
        return -1;
    }
    if (check_shapes(f, path, d, q8, err, errlen) != 0) {
        infer_q8file_close(q8);
        return -1;
    }
    int rc = has_q8 ? load_q8file(m, d, f, q8, err, errlen)
                    : infer_model_build(m, d, q, ckpt_source, f, err, errlen);
    infer_q8file_close(q8);
    return rc;
}

/* A file that starts with GGUF's magic (build/export --format gguf). */
static int is_gguf(const char *path)
{
    char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(magic, 1, sizeof magic, f) : 0;
    if (f)
        fclose(f);
    return n == sizeof magic && memcmp(magic, "GGUF", 4) == 0;
}

int infer_load(const char *path, infer_quant q, infer_model *m, tokenizer **tok, char *err,
               size_t errlen)
{
    if (is_gguf(path))
        return infer_gguf_load(path, q, m, tok, err, errlen);
    ckpt_model_file *f;
    gpt2_dims d;
    if (ckpt_model_open(path, &f, &d, err, errlen) != 0)
        return -1;
    *tok = NULL;
    int rc = load_open(f, path, &d, q, m, tok, err, errlen);
    ckpt_model_close(f);
    if (rc != 0) {
        tokenizer_free(*tok);
        *tok = NULL;
    }
    return rc;
}
