#include "kernels/gemm.h"

#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A cached matmul: the primitive plus memory objects whose data handles are
 * pointed at the caller's buffers on each call. */
typedef struct {
    bool trans_a, trans_b, has_bias, accumulate;
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
} cache;

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
static dnnl_memory_desc_t matrix_md(int rows, int cols, int ld, bool trans)
{
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {rows, cols};
    dnnl_dims_t strides = {ld, 1};
    if (trans) {
        strides[0] = 1;
        strides[1] = ld;
    }
    check(dnnl_memory_desc_init_by_strides(&md, 2, dims, dnnl_f32, strides), "memory_desc");
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

static void entry_create(gemm_entry *e)
{
    dnnl_memory_desc_t a_md = matrix_md(e->M, e->K, e->lda, e->trans_a);
    dnnl_memory_desc_t b_md = matrix_md(e->K, e->N, e->ldb, e->trans_b);
    dnnl_memory_desc_t c_md = matrix_md(e->M, e->N, e->ldc, false);
    dnnl_memory_desc_t bias_md = matrix_md(1, e->N, e->N, false);

    dnnl_matmul_desc_t desc;
    check(dnnl_matmul_desc_init(&desc, &a_md, &b_md, e->has_bias ? &bias_md : NULL, &c_md),
          "matmul_desc_init");

    dnnl_primitive_attr_t attr;
    check(dnnl_primitive_attr_create(&attr), "attr_create");
    if (e->accumulate) {
        dnnl_post_ops_t ops;
        check(dnnl_post_ops_create(&ops), "post_ops_create");
        check(dnnl_post_ops_append_sum(ops, 1.0f), "append_sum");
        check(dnnl_primitive_attr_set_post_ops(attr, ops), "set_post_ops");
        dnnl_post_ops_destroy(ops);
    }
    dnnl_primitive_desc_t pd;
    check(dnnl_primitive_desc_create(&pd, &desc, attr, cache.engine, NULL), "matmul pd_create");
    check(dnnl_primitive_create(&e->prim, pd), "matmul create");
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);

    e->a = memory_for(&a_md);
    e->b = memory_for(&b_md);
    e->c = memory_for(&c_md);
    e->bias = e->has_bias ? memory_for(&bias_md) : NULL;
}

static gemm_entry *lookup(const gemm_entry *key)
{
    for (int i = 0; i < cache.count; i++) {
        gemm_entry *e = &cache.entries[i];
        if (e->trans_a == key->trans_a && e->trans_b == key->trans_b &&
            e->has_bias == key->has_bias && e->accumulate == key->accumulate && e->M == key->M &&
            e->N == key->N && e->K == key->K && e->lda == key->lda && e->ldb == key->ldb &&
            e->ldc == key->ldc)
            return e;
    }
    gemm_entry *e;
    if (cache.count < GEMM_CACHE_SIZE) {
        e = &cache.entries[cache.count++];
    } else {   /* more shapes than any model uses: recycle slots in turn */
        e = &cache.entries[cache.next_evict];
        cache.next_evict = (cache.next_evict + 1) % GEMM_CACHE_SIZE;
        entry_destroy(e);
    }
    *e = *key;
    entry_create(e);
    return e;
}

void gemm_f32(bool trans_a, bool trans_b, int M, int N, int K, const float *A, int lda,
              const float *B, int ldb, const float *bias, bool accumulate, float *C, int ldc)
{
    init_engine();
    gemm_entry key = {.trans_a = trans_a, .trans_b = trans_b, .has_bias = bias != NULL,
                      .accumulate = accumulate, .M = M, .N = N, .K = K,
                      .lda = lda, .ldb = ldb, .ldc = ldc};
    gemm_entry *e = lookup(&key);

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
    for (int i = 0; i < cache.count; i++)
        entry_destroy(&cache.entries[i]);
    cache.count = cache.next_evict = 0;
    if (cache.engine) {
        dnnl_stream_destroy(cache.stream);
        dnnl_engine_destroy(cache.engine);
        cache.engine = NULL;
    }
}
