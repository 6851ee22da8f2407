#include "kernels/gemm.h"

#include "kernels/convert.h"
#include "kernels/env.h"

#include <assert.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A cached matmul: the primitive plus memory objects whose data handles are
 * pointed at the caller's buffers on each call. */
typedef struct {
    gemm_dtype dtype;
    bool trans_a, trans_b, has_bias, accumulate;
    bool packed;              /* B is a gemm_weights' blocked copy (ldb unused) */
    bool view;                /* packed, in VIEW_TAG (gemm_weights_view_bf16) */
    bool gemm_kernel;         /* oneDNN's gemm kernel, not its first choice */
    float alpha;              /* the product is scaled by it (no bias then) */
    int M, N, K, lda, ldb, ldc;
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, bias, c;
} gemm_entry;

enum { GEMM_CACHE_SIZE = 128 };

static struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    gemm_entry entries[GEMM_CACHE_SIZE];
    int count, next_evict;
    int bf16_native;          /* -1 unknown, 0 no, 1 yes */
    float *widened;           /* bf16 operands widened to fp32 when not native */
    size_t widened_cap;
    float *rounded;           /* gemm_weights_pack without a native product: B rounded */
    size_t rounded_cap;
    bool trans_a_gemm;        /* gemm_set_trans_a_kernel */
} cache = {.bf16_native = -1};

/* The layout of gemm_weights_view_bf16: blocks of 64 columns, in each the
 * rows in blocks of 32 as 16 pairs, a pair's two values side by side. */
#define VIEW_TAG dnnl_BA16a64b2a
enum { VIEW_K_MULTIPLE = 32 };

static void check(dnnl_status_t st, const char *what)
{
    if (st != dnnl_success) {
        fprintf(stderr, "fatal: oneDNN %s failed (status %d)\n", what, (int)st);
        abort();
    }
}

static void init_engine(void)
{
    if (cache.engine)
        return;
    check(dnnl_engine_create(&cache.engine, dnnl_cpu, 0), "engine_create");
    check(dnnl_stream_create(&cache.stream, cache.engine, dnnl_stream_default_flags),
          "stream_create");
}

/* Memory descriptor of a rows x cols matrix stored row-major with row stride ld,
 * seen transposed when trans is set. */
static dnnl_memory_desc_t matrix_md(int rows, int cols, int ld, bool trans, dnnl_data_type_t dt)
{
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {rows, cols};
    dnnl_dims_t strides = {ld, 1};
    if (trans) {
        strides[0] = 1;
        strides[1] = ld;
    }
    check(dnnl_memory_desc_init_by_strides(&md, 2, dims, dt, strides), "memory_desc");
    return md;
}

static dnnl_memory_t memory_for(const dnnl_memory_desc_t *md)
{
    dnnl_memory_t mem;
    check(dnnl_memory_create(&mem, md, cache.engine, DNNL_MEMORY_NONE), "memory_create");
    return mem;
}

static void entry_destroy(gemm_entry *e)
{
    dnnl_primitive_destroy(e->prim);
    dnnl_memory_destroy(e->a);
    dnnl_memory_destroy(e->b);
    dnnl_memory_destroy(e->c);
    if (e->bias)
        dnnl_memory_destroy(e->bias);
    memset(e, 0, sizeof *e);
}

static dnnl_data_type_t operand_type(gemm_dtype dtype)
{
    return dtype == GEMM_BF16 ? dnnl_bf16 : dnnl_f32;
}

/* The layout matmul prefers for a K x N weight operand of dtype (it does not
 * depend on M: checked for M from 1 to 2048 with oneDNN 2.6).  False when
 * oneDNN has no product for dtype here. */
static bool blocked_md(gemm_dtype dtype, int K, int N, dnnl_memory_desc_t *out)
{
    enum { PROBE_M = 64 };
    dnnl_memory_desc_t a_md = matrix_md(PROBE_M, K, K, false, operand_type(dtype));
    dnnl_memory_desc_t c_md = matrix_md(PROBE_M, N, N, false, dnnl_f32);
    dnnl_memory_desc_t b_md;
    dnnl_dims_t dims = {K, N};
    check(dnnl_memory_desc_init_by_tag(&b_md, 2, dims, operand_type(dtype), dnnl_format_tag_any),
          "memory_desc any");
    dnnl_matmul_desc_t desc;
    check(dnnl_matmul_desc_init(&desc, &a_md, &b_md, NULL, &c_md), "matmul_desc_init");
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, &desc, NULL, cache.engine, NULL);
    if (st == dnnl_unimplemented)
        return false;
    check(st, "matmul pd_create (blocked weights)");
    *out = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    return true;
}

static dnnl_memory_desc_t view_md(int K, int N)
{
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {K, N};
    check(dnnl_memory_desc_init_by_tag(&md, 2, dims, dnnl_bf16, VIEW_TAG), "memory_desc view");
    return md;
}

/* oneDNN's first implementation for desc, or with gemm_kernel its first
 * "gemm:" one where it offers one. */
static dnnl_status_t primitive_desc_create(dnnl_primitive_desc_t *pd,
                                           const dnnl_matmul_desc_t *desc,
                                           const_dnnl_primitive_attr_t attr, bool gemm_kernel)
{
    dnnl_primitive_desc_iterator_t it;
    dnnl_status_t st = dnnl_primitive_desc_iterator_create(&it, desc, attr, cache.engine, NULL);
    if (st != dnnl_success)
        return st;
    *pd = dnnl_primitive_desc_iterator_fetch(it);
    while (gemm_kernel) {
        const char *impl = NULL;
        dnnl_primitive_desc_t next;
        if (dnnl_primitive_desc_query(*pd, dnnl_query_impl_info_str, 0, &impl) ==
                dnnl_success &&
            impl && strncmp(impl, "gemm:", 5) == 0)
            break;
        if (dnnl_primitive_desc_iterator_next(it) != dnnl_success)
            break;   /* none: keep the first, which *pd still is */
        next = dnnl_primitive_desc_iterator_fetch(it);
        dnnl_primitive_desc_destroy(*pd);
        *pd = next;
    }
    dnnl_primitive_desc_iterator_destroy(it);
    return *pd ? dnnl_success : dnnl_runtime_error;
}

/* Creates the primitive; returns false (and creates nothing) when oneDNN has
 * no implementation for this data type on this CPU. */
static bool entry_create(gemm_entry *e)
{
    dnnl_data_type_t in = operand_type(e->dtype);
    dnnl_memory_desc_t a_md = matrix_md(e->M, e->K, e->lda, e->trans_a, in);
    dnnl_memory_desc_t b_md;
    if (!e->packed)
        b_md = matrix_md(e->K, e->N, e->ldb, e->trans_b, in);
    else if (e->view)
        b_md = view_md(e->K, e->N);
    else if (!blocked_md(e->dtype, e->K, e->N, &b_md))
        return false;
    dnnl_memory_desc_t c_md = matrix_md(e->M, e->N, e->ldc, false, dnnl_f32);
    dnnl_memory_desc_t bias_md = matrix_md(1, e->N, e->N, false, dnnl_f32);

    dnnl_matmul_desc_t desc;
    check(dnnl_matmul_desc_init(&desc, &a_md, &b_md, e->has_bias ? &bias_md : NULL, &c_md),
          "matmul_desc_init");

    dnnl_primitive_attr_t attr;
    check(dnnl_primitive_attr_create(&attr), "attr_create");
    if (e->alpha != 1.0f)
        check(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &e->alpha), "output_scales");
    if (e->accumulate) {
        dnnl_post_ops_t ops;
        check(dnnl_post_ops_create(&ops), "post_ops_create");
        check(dnnl_post_ops_append_sum(ops, 1.0f), "append_sum");
        check(dnnl_primitive_attr_set_post_ops(attr, ops), "set_post_ops");
        dnnl_post_ops_destroy(ops);
    }
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = primitive_desc_create(&pd, &desc, attr, e->gemm_kernel);
    dnnl_primitive_attr_destroy(attr);
    if (st == dnnl_unimplemented && e->dtype == GEMM_BF16)
        return false;
    check(st, "matmul pd_create");
    check(dnnl_primitive_create(&e->prim, pd), "matmul create");
    dnnl_primitive_desc_destroy(pd);

    e->a = memory_for(&a_md);
    e->b = memory_for(&b_md);
    e->c = memory_for(&c_md);
    e->bias = e->has_bias ? memory_for(&bias_md) : NULL;
    return true;
}

/* The cached primitive for key, created on first use; NULL when oneDNN cannot
 * do bf16 here. */
static gemm_entry *lookup(const gemm_entry *key)
{
    for (int i = 0; i < cache.count; i++) {
        gemm_entry *e = &cache.entries[i];
        if (e->dtype == key->dtype && e->trans_a == key->trans_a && e->trans_b == key->trans_b &&
            e->packed == key->packed && e->view == key->view &&
            e->gemm_kernel == key->gemm_kernel &&
            e->alpha == key->alpha && e->has_bias == key->has_bias &&
            e->accumulate == key->accumulate && e->M == key->M &&
            e->N == key->N && e->K == key->K && e->lda == key->lda && e->ldb == key->ldb &&
            e->ldc == key->ldc)
            return e;
    }
    gemm_entry *e;
    bool fresh = cache.count < GEMM_CACHE_SIZE;
    if (fresh) {
        e = &cache.entries[cache.count++];
    } else {   /* more shapes than any model uses: recycle slots in turn */
        e = &cache.entries[cache.next_evict];
        cache.next_evict = (cache.next_evict + 1) % GEMM_CACHE_SIZE;
        entry_destroy(e);
    }
    *e = *key;
    if (!entry_create(e)) {
        memset(e, 0, sizeof *e);   /* M = 0 matches no real key */
        if (fresh)
            cache.count--;
        return NULL;
    }
    return e;
}

static void execute(gemm_entry *e, const void *A, const void *B, const float *bias, float *C)
{
    dnnl_memory_set_data_handle(e->a, (void *)A);
    dnnl_memory_set_data_handle(e->b, (void *)B);
    dnnl_memory_set_data_handle(e->c, C);
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}};
    int nargs = 3;
    if (bias) {
        dnnl_memory_set_data_handle(e->bias, (void *)bias);
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, e->bias};
    }
    check(dnnl_primitive_execute(e->prim, cache.stream, nargs, args), "matmul execute");
    check(dnnl_stream_wait(cache.stream), "stream_wait");
}

static void product(const gemm_entry *key, const void *A, const void *B, const float *bias,
                    float *C);

/* One of the cache's fp32 work buffers with room for n values (grown when a
 * bigger product first needs it, then reused). */
static float *work_buffer(float **buf, size_t *cap, size_t n)
{
    if (n > *cap) {
        free(*buf);
        *cap = n;
        *buf = malloc(n * sizeof **buf);
        if (!*buf) {
            fprintf(stderr, "fatal: out of memory for a %zu-value work buffer of gemm\n", n);
            abort();
        }
    }
    return *buf;
}

static void (*widener(gemm_dtype dtype))(float *, const uint16_t *, size_t)
{
    return dtype == GEMM_F16 ? f16_to_f32 : bf16_to_f32;
}

/* Values a rows x cols matrix with row stride ld spans: the last row ends at
 * its last column (a view into a wider matrix may end there). */
static size_t span(int rows, int cols, int ld)
{
    return rows ? (size_t)(rows - 1) * ld + cols : 0;
}

/* 16-bit operands without a native product: widen both (as stored, with
 * their strides) to fp32 and multiply those; the products are the same. */
static void product_widened(const gemm_entry *key, const void *A, const void *B,
                            const float *bias, float *C)
{
    size_t na = key->trans_a ? span(key->K, key->M, key->lda) : span(key->M, key->K, key->lda);
    size_t nb = key->trans_b ? span(key->N, key->K, key->ldb) : span(key->K, key->N, key->ldb);
    float *a = work_buffer(&cache.widened, &cache.widened_cap, na + nb), *b = a + na;
    void (*widen)(float *, const uint16_t *, size_t) = widener(key->dtype);
    widen(a, A, na);
    widen(b, B, nb);
    gemm_entry wide = *key;
    wide.dtype = GEMM_F32;
    product(&wide, a, b, bias, C);
}

/* The product key describes: the cached primitive, or the widening path
 * when the dtype has no native product here. */
static void product(const gemm_entry *key, const void *A, const void *B, const float *bias,
                    float *C)
{
    init_engine();
    bool widen = key->dtype == GEMM_F16 || (key->dtype == GEMM_BF16 && !gemm_bf16_native());
    gemm_entry *e = widen ? NULL : lookup(key);
    if (e) {
        execute(e, A, B, bias, C);
    } else if (key->packed) {   /* gemm_weights made a blocked copy, so this cannot happen */
        fprintf(stderr, "fatal: oneDNN refused a product with packed weights\n");
        abort();
    } else {
        product_widened(key, A, B, bias, C);
    }
}

/* gemm and gemm_scaled: a product of operands as stored (not packed), the
 * transposed-A ones on the kernel gemm_set_trans_a_kernel names. */
static void plain_product(gemm_dtype dtype, bool trans_a, bool trans_b, int M, int N, int K,
                          float alpha, const void *A, int lda, const void *B, int ldb,
                          const float *bias, bool accumulate, float *C, int ldc)
{
    gemm_entry key = {.dtype = dtype, .trans_a = trans_a, .trans_b = trans_b,
                      .gemm_kernel = trans_a && cache.trans_a_gemm, .alpha = alpha,
                      .has_bias = bias != NULL, .accumulate = accumulate, .M = M, .N = N, .K = K,
                      .lda = lda, .ldb = ldb, .ldc = ldc};
    product(&key, A, B, bias, C);
}

void gemm(gemm_dtype dtype, bool trans_a, bool trans_b, int M, int N, int K, const void *A,
          int lda, const void *B, int ldb, const float *bias, bool accumulate, float *C, int ldc)
{
    plain_product(dtype, trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, bias, accumulate, C,
                  ldc);
}

void gemm_scaled(gemm_dtype dtype, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                 const void *A, int lda, const void *B, int ldb, bool accumulate, float *C,
                 int ldc)
{
    plain_product(dtype, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, NULL, accumulate, C,
                  ldc);
}

/* ---- packed weights ---------------------------------------------------- */

struct gemm_weights {
    gemm_dtype dtype;
    bool trans_b, native;
    bool view;                 /* gemm_weights_view_bf16: packed reads the caller's memory */
    int K, N, ldb;
    dnnl_memory_t master;      /* native: the fp32 master as stored (handle set per pack) */
    dnnl_memory_t packed;      /* native: the blocked copy, allocated by oneDNN */
    dnnl_primitive_t reorder;  /* native: master -> packed (converts and re-lays out) */
    bool pairs;                /* native bf16 in a layout f32_to_bf16_pairs writes: */
    bf16_pair_layout layout;   /* packed by it rather than by the reorder */
    gemm_weights *wide;        /* no native product: fp32 weights packed from the master
                                * rounded to dtype, so products widen only A */
    uint16_t *row;             /* no native product: one row of B in dtype */
};

/* The rows and columns of B as stored. */
static void stored_shape(const gemm_weights *w, int *rows, int *cols)
{
    *rows = w->trans_b ? w->N : w->K;
    *cols = w->trans_b ? w->K : w->N;
}

static bool weights_native(gemm_dtype dtype)
{
    return dtype == GEMM_F32 || (dtype == GEMM_BF16 && gemm_bf16_native());
}

/* A reorder from src_md into dst_md and a memory object for its source (whose
 * handle is set per pack). */
static void reorder_create(const dnnl_memory_desc_t *src_md, const dnnl_memory_desc_t *dst_md,
                           dnnl_primitive_t *reorder, dnnl_memory_t *src)
{
    dnnl_primitive_desc_t rpd;
    check(dnnl_reorder_primitive_desc_create(&rpd, src_md, cache.engine, dst_md, cache.engine,
                                             NULL),
          "reorder pd_create");
    check(dnnl_primitive_create(reorder, rpd), "reorder create");
    dnnl_primitive_desc_destroy(rpd);
    *src = memory_for(src_md);
}

/* Whether md is a bf16_pair_layout (blocks of 2 a_blk x n_blk, pairs of
 * rows innermost, no offset or extra data) whose blocks tile its memory
 * exactly, so that packing them writes every byte oneDNN's reorder would;
 * and which. */
static bool pair_layout_of(const dnnl_memory_desc_t *md, bf16_pair_layout *l)
{
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    if (md->ndims != 2 || md->data_type != dnnl_bf16 || md->format_kind != dnnl_blocked ||
        md->offset0 != 0 || md->padded_offsets[0] || md->padded_offsets[1] || md->extra.flags ||
        b->inner_nblks != 3 || b->inner_idxs[0] != 0 || b->inner_idxs[1] != 1 ||
        b->inner_idxs[2] != 0 || b->inner_blks[2] != 2)
        return false;
    const dnnl_dim_t k_rows = 2 * b->inner_blks[0], n_cols = b->inner_blks[1];
    if (md->padded_dims[0] % k_rows || md->padded_dims[1] % n_cols)
        return false;
    *l = (bf16_pair_layout){.K = (int)md->dims[0], .N = (int)md->dims[1],
                            .a_blk = (int)b->inner_blks[0], .n_blk = (int)n_cols,
                            .k_blocks = (int)(md->padded_dims[0] / k_rows),
                            .n_blocks = (int)(md->padded_dims[1] / n_cols),
                            .kb_stride = (size_t)b->strides[0], .nb_stride = (size_t)b->strides[1]};
    const size_t block = (size_t)k_rows * n_cols;
    const bool k_inner = l->kb_stride == block && l->nb_stride == block * l->k_blocks;
    const bool n_inner = l->nb_stride == block && l->kb_stride == block * l->n_blocks;
    return (k_inner || n_inner) &&
           dnnl_memory_desc_get_size(md) == block * l->k_blocks * l->n_blocks * sizeof(uint16_t);
}

static bool weights_create_native(gemm_weights *w, void *memory)
{
    dnnl_memory_desc_t src_md = matrix_md(w->K, w->N, w->ldb, w->trans_b, dnnl_f32), dst_md;
    if (!blocked_md(w->dtype, w->K, w->N, &dst_md))
        return false;
    reorder_create(&src_md, &dst_md, &w->reorder, &w->master);
    w->pairs = pair_layout_of(&dst_md, &w->layout);
    return dnnl_memory_create(&w->packed, &dst_md, cache.engine,
                              memory ? memory : DNNL_MEMORY_ALLOCATE) == dnnl_success;
}

size_t gemm_weights_size(gemm_dtype dtype, int K, int N)
{
    init_engine();
    dnnl_memory_desc_t md;
    if (!weights_native(dtype) || !blocked_md(dtype, K, N, &md))
        return 0;
    return dnnl_memory_desc_get_size(&md);
}

gemm_weights *gemm_weights_create(gemm_dtype dtype, bool trans_b, int K, int N, int ldb)
{
    return gemm_weights_create_in(dtype, trans_b, K, N, ldb, NULL);
}

gemm_weights *gemm_weights_create_in(gemm_dtype dtype, bool trans_b, int K, int N, int ldb,
                                     void *memory)
{
    init_engine();
    gemm_weights *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    *w = (gemm_weights){.dtype = dtype, .trans_b = trans_b, .native = weights_native(dtype),
                        .K = K, .N = N, .ldb = ldb};
    bool ok;
    if (w->native) {
        ok = weights_create_native(w, memory);
    } else if (memory) {   /* gemm_weights_size said 0: nothing to place */
        ok = false;
    } else {   /* the rounded copy is dense: row stride = its columns */
        int rows, cols;
        stored_shape(w, &rows, &cols);
        w->wide = gemm_weights_create(GEMM_F32, trans_b, K, N, cols);
        w->row = malloc((size_t)cols * sizeof *w->row);
        ok = w->wide && w->row;
    }
    if (!ok) {
        gemm_weights_destroy(w);
        return NULL;
    }
    return w;
}

gemm_weights *gemm_weights_view_bf16(const uint16_t *data, int K, int N)
{
    init_engine();
    if (K % VIEW_K_MULTIPLE || !weights_native(GEMM_BF16))
        return NULL;
    gemm_entry probe = {.dtype = GEMM_BF16, .packed = true, .view = true, .alpha = 1.0f,
                        .M = 1, .N = N, .K = K, .lda = K, .ldc = N};
    if (!lookup(&probe))   /* no bf16 matmul reads this layout here */
        return NULL;
    gemm_weights *w = calloc(1, sizeof *w);
    dnnl_memory_desc_t md = view_md(K, N);
    if (!w || dnnl_memory_create(&w->packed, &md, cache.engine, (void *)data) != dnnl_success) {
        free(w);
        return NULL;
    }
    w->dtype = GEMM_BF16;
    w->native = w->view = true;
    w->K = K;
    w->N = N;
    return w;
}

void gemm_weights_destroy(gemm_weights *w)
{
    if (!w)
        return;
    if (w->reorder)
        dnnl_primitive_destroy(w->reorder);
    if (w->master)
        dnnl_memory_destroy(w->master);
    if (w->packed)
        dnnl_memory_destroy(w->packed);
    gemm_weights_destroy(w->wide);
    free(w->row);
    free(w);
}

size_t gemm_weights_bytes(const gemm_weights *w)
{
    if (!w->native)
        return gemm_weights_bytes(w->wide);
    const dnnl_memory_desc_t *md;
    check(dnnl_memory_get_memory_desc(w->packed, &md), "memory_get_desc");
    return dnnl_memory_desc_get_size(md);
}

static void reorder_run(dnnl_primitive_t reorder, dnnl_memory_t src, const void *data,
                        dnnl_memory_t dst)
{
    dnnl_memory_set_data_handle(src, (void *)data);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
    check(dnnl_primitive_execute(reorder, cache.stream, 2, args), "reorder execute");
    check(dnnl_stream_wait(cache.stream), "stream_wait");
}

static uint16_t *packed_data(const gemm_weights *w)
{
    void *packed;
    check(dnnl_memory_get_data_handle(w->packed, &packed), "get_data_handle");
    return packed;
}

void gemm_weights_pack(gemm_weights *w, const float *B)
{
    assert(!w->view);
    if (w->pairs)
        f32_to_bf16_pairs(&w->layout, packed_data(w), B, (size_t)w->ldb, w->trans_b);
    else
        gemm_weights_pack_onednn(w, B);
}

void gemm_weights_pack_pair(gemm_weights *w, gemm_weights *wt, const float *B)
{
    assert(wt->K == w->N && wt->N == w->K && wt->trans_b != w->trans_b && wt->ldb == w->ldb);
    if (!w->pairs || !wt->pairs) {
        gemm_weights_pack(w, B);
        gemm_weights_pack(wt, B);
        return;
    }
    const gemm_weights *stored = w->trans_b ? wt : w, *transposed = w->trans_b ? w : wt;
    f32_to_bf16_pairs_both(&stored->layout, packed_data(stored), &transposed->layout,
                           packed_data(transposed), B, (size_t)w->ldb);
}

bool gemm_weights_packed_here(const gemm_weights *w)
{
    return w->pairs;
}

/* oneDNN's reorder; without a native product, into the fp32 copy of the
 * master rounded to the dtype. */
void gemm_weights_pack_onednn(gemm_weights *w, const float *B)
{
    assert(!w->view);
    if (w->native) {
        reorder_run(w->reorder, w->master, B, w->packed);
        return;
    }
    void (*narrow)(uint16_t *, const float *, size_t) =
        w->dtype == GEMM_F16 ? f32_to_f16 : f32_to_bf16;
    int rows, cols;
    stored_shape(w, &rows, &cols);
    float *rounded = work_buffer(&cache.rounded, &cache.rounded_cap, (size_t)rows * cols);
    for (int r = 0; r < rows; r++) {
        narrow(w->row, B + (size_t)r * w->ldb, (size_t)cols);
        widener(w->dtype)(rounded + (size_t)r * cols, w->row, (size_t)cols);
    }
    gemm_weights_pack_onednn(w->wide, rounded);
}

void gemm_packed(const gemm_weights *w, int M, float alpha, const void *A, int lda,
                 const float *bias, bool accumulate, float *C, int ldc)
{
    assert(alpha == 1.0f || !bias);
    if (!w->native) {
        const size_t n = span(M, w->K, lda);
        float *a = work_buffer(&cache.widened, &cache.widened_cap, n);
        widener(w->dtype)(a, A, n);
        gemm_packed(w->wide, M, alpha, a, lda, bias, accumulate, C, ldc);
        return;
    }
    gemm_entry key = {.dtype = w->dtype, .packed = true, .view = w->view, .alpha = alpha,
                      .has_bias = bias != NULL, .accumulate = accumulate, .M = M, .N = w->N,
                      .K = w->K, .lda = lda, .ldc = ldc};
    void *B;
    check(dnnl_memory_get_data_handle(w->packed, &B), "get_data_handle");
    product(&key, A, B, bias, C);
}

void gemm_set_trans_a_kernel(bool gemm_kernel)
{
    cache.trans_a_gemm = gemm_kernel;
}

bool gemm_trans_a_kernel(void)
{
    return cache.trans_a_gemm;
}

void gemm_f32(bool trans_a, bool trans_b, int M, int N, int K, const float *A, int lda,
              const float *B, int ldb, const float *bias, bool accumulate, float *C, int ldc)
{
    gemm(GEMM_F32, trans_a, trans_b, M, N, K, A, lda, B, ldb, bias, accumulate, C, ldc);
}

bool gemm_bf16_native(void)
{
    if (cache.bf16_native < 0) {
        bool emulate;   /* a bad value: native (the trainer refuses it at start) */
        env_flag(GEMM_BF16_EMULATE_ENV, false, &emulate, NULL, 0);
        if (emulate) {
            cache.bf16_native = 0;   /* tests and comparisons of the widening path */
        } else {
            init_engine();
            gemm_entry probe = {.dtype = GEMM_BF16, .alpha = 1.0f, .M = 16, .N = 16, .K = 16,
                                .lda = 16, .ldb = 16, .ldc = 16};
            cache.bf16_native = lookup(&probe) != NULL;
        }
    }
    return cache.bf16_native == 1;
}

bool gemm_native(gemm_dtype dtype)
{
    return weights_native(dtype);
}

const char *gemm_library(void)
{
    static char name[64];
    const dnnl_version_t *v = dnnl_version();
    /* the ISA it runs (ONEDNN_MAX_CPU_ISA can lower it): dnnl_cpu_isa_t bits */
    snprintf(name, sizeof name, "oneDNN %d.%d.%d isa 0x%x", v->major, v->minor, v->patch,
             (unsigned)dnnl_get_effective_cpu_isa());
    return name;
}

const char *gemm_impl_name(gemm_dtype dtype, int M, int N, int K)
{
    static char name[128];
    init_engine();
    dnnl_memory_desc_t a_md = matrix_md(M, K, K, false, operand_type(dtype));
    dnnl_memory_desc_t b_md = matrix_md(K, N, N, false, operand_type(dtype));
    dnnl_memory_desc_t c_md = matrix_md(M, N, N, false, dnnl_f32);
    dnnl_matmul_desc_t desc;
    check(dnnl_matmul_desc_init(&desc, &a_md, &b_md, NULL, &c_md), "matmul_desc_init");
    dnnl_primitive_desc_t pd;
    name[0] = '\0';
    if (dnnl_primitive_desc_create(&pd, &desc, NULL, cache.engine, NULL) != dnnl_success)
        return name;
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
        snprintf(name, sizeof name, "%s", impl);
    dnnl_primitive_desc_destroy(pd);
    return name;
}

/* The operands of one timed product. */
typedef struct {
    void *a, *b;
    float *c;
    gemm_weights *w;
} timed_product;

struct gemm_timing {
    gemm_dtype dtype;
    bool trans_a_gemm;   /* gemm_set_trans_a_kernel's setting at creation */
    int n;
    gemm_shape *shapes;
    timed_product *ops;
    double *best;   /* each product's fastest run so far (seconds) */
};

static bool timed_alloc(timed_product *t, gemm_dtype dtype, const gemm_shape *s)
{
    size_t value = dtype == GEMM_F32 ? sizeof(float) : sizeof(uint16_t);
    t->a = calloc((size_t)s->M * s->K, value);
    t->c = calloc((size_t)s->M * s->N, sizeof(float));
    if (s->packed) {
        float *master = calloc((size_t)s->K * s->N, sizeof(float));
        t->w = master ? gemm_weights_create(dtype, false, s->K, s->N, s->N) : NULL;
        if (t->w)
            gemm_weights_pack(t->w, master);
        free(master);
        return t->a && t->c && t->w;
    }
    t->b = calloc((size_t)s->K * s->N, value);
    return t->a && t->b && t->c;
}

/* Seconds one run of product i takes (with the set's kernel setting). */
static double timed_run(const gemm_timing *t, int i)
{
    const gemm_shape *s = &t->shapes[i];
    const timed_product *p = &t->ops[i];
    const bool setting = cache.trans_a_gemm;
    cache.trans_a_gemm = t->trans_a_gemm;
    double t0 = omp_get_wtime();
    if (s->packed)
        gemm_packed(p->w, s->M, 1.0f, p->a, s->K, NULL, false, p->c, s->N);
    else
        gemm(t->dtype, s->trans_a, s->trans_b, s->M, s->N, s->K, p->a, s->trans_a ? s->M : s->K,
             p->b, s->trans_b ? s->K : s->N, NULL, s->trans_a, p->c, s->N);
    double seconds = omp_get_wtime() - t0;
    cache.trans_a_gemm = setting;
    return seconds;
}

gemm_timing *gemm_timing_create(gemm_dtype dtype, const gemm_shape *shapes, int n)
{
    if (!gemm_native(dtype))
        return NULL;
    gemm_timing *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    *t = (gemm_timing){.dtype = dtype, .trans_a_gemm = cache.trans_a_gemm, .n = n,
                       .shapes = malloc((size_t)n * sizeof *shapes),
                       .ops = calloc((size_t)n, sizeof *t->ops),
                       .best = malloc((size_t)n * sizeof *t->best)};
    bool ok = t->shapes && t->ops && t->best;
    if (ok)
        memcpy(t->shapes, shapes, (size_t)n * sizeof *shapes);
    for (int i = 0; ok && i < n; i++)
        ok = timed_alloc(&t->ops[i], dtype, &shapes[i]);
    if (!ok) {
        gemm_timing_destroy(t);
        return NULL;
    }
    for (int i = 0; i < n; i++)   /* the first run pays for creation: not a sample */
        timed_run(t, i);
    for (int i = 0; i < n; i++)
        t->best[i] = 1e30;
    return t;
}

void gemm_timing_pass(gemm_timing *t)
{
    for (int i = 0; i < t->n; i++) {
        double dt = timed_run(t, i);
        t->best[i] = dt < t->best[i] ? dt : t->best[i];
    }
}

double gemm_timing_gflops(const gemm_timing *t)
{
    double flops = 0, seconds = 0;
    for (int i = 0; i < t->n; i++) {
        const gemm_shape *s = &t->shapes[i];
        flops += s->count * 2.0 * s->M * s->N * s->K;
        seconds += s->count * t->best[i];
    }
    return flops / seconds / 1e9;
}

void gemm_timing_destroy(gemm_timing *t)
{
    if (!t)
        return;
    for (int i = 0; t->ops && i < t->n; i++) {
        free(t->ops[i].a);
        free(t->ops[i].b);
        free(t->ops[i].c);
        gemm_weights_destroy(t->ops[i].w);
    }
    free(t->ops);
    free(t->shapes);
    free(t->best);
    free(t);
}

void gemm_f32_ref(bool trans_a, bool trans_b, int M, int N, int K, const float *A, int lda,
                  const float *B, int ldb, const float *bias, bool accumulate, float *C, int ldc)
{
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double acc = bias ? bias[j] : 0.0;
            for (int k = 0; k < K; k++) {
                double a = trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += a * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = (float)(accumulate ? *c + acc : acc);
        }
    }
}

void gemm_release(void)
{
    free(cache.widened);
    free(cache.rounded);
    cache.widened = cache.rounded = NULL;
    cache.widened_cap = cache.rounded_cap = 0;
    cache.bf16_native = -1;
    for (int i = 0; i < cache.count; i++)
        entry_destroy(&cache.entries[i]);
    cache.count = cache.next_evict = 0;
    if (cache.engine) {
        dnnl_stream_destroy(cache.stream);
        dnnl_engine_destroy(cache.engine);
        cache.engine = NULL;
    }
}
