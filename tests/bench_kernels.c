/* bench_kernels: times the layernorm, elementwise, softmax_xent, adamw and
 * fp32 <-> bf16 conversion kernels on every path this CPU supports, at the seed384 sizes (N = 8*256
 * rows, C = 384, V = 16000, 13.3M parameters), with the default OpenMP
 * threads.  Prints kernel, isa, the median of REPS timed calls in ms, and
 * GB/s counting each array the kernel must read or write once, and a note
 * where the path the dispatch picks is not the fastest.  Then gpt2-124M's
 * LM head weights packed for its two bf16 products by gemm_weights_pack
 * against oneDNN's reorder into the same layout.  With BENCH_JSONL=path each line
 * is also appended there as a JSON object. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "kernels/adamw.h"
#include "kernels/convert.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/layernorm.h"
#include "kernels/softmax_xent.h"
#include "tests/bench_util.h"
#include "tests/test_util.h"

enum { N = 8 * 256, C = 384, OC = 4 * C, V = 16000, WARMUP = 2, REPS = 20 };
#define NPARAMS ((size_t)13300000)
#define F sizeof(float)

/* Inputs and outputs of every kernel, allocated once. */
static struct {
    /* layernorm and residual: [N,C] activations, [C] parameters, [N] statistics */
    float *inp, *out, *weight, *bias, *mean, *rstd, *dout, *dinp, *dw, *db;
    float *h, *hout, *dh, *dbias_oc;   /* GELU and bias gradient: [N,OC], and [OC] */
    float *logits, *logits0, *losses;  /* [N,V] (logits0 stays pristine), [N] */
    int *targets;
    float *param, *grad, *m, *v;       /* [NPARAMS] */
    float *wide;                       /* [NPARAMS]: bf16_to_f32 output, round_to_bf16 in place */
    uint16_t *half;                    /* [NPARAMS]: f32_to_bf16 output, bf16_to_f32 input */
} buf;

static void *alloc_or_die(size_t bytes)
{
    void *p = malloc(bytes);
    if (!p) {
        fprintf(stderr, "bench_kernels: out of memory\n");
        exit(1);
    }
    return p;
}

static float *alloc_filled(size_t n, uint64_t seed, float scale)
{
    float *p = alloc_or_die(n * sizeof *p);
    test_fill(p, n, seed, scale);
    return p;
}

static void alloc_all(void)
{
    const size_t NC = (size_t)N * C, NO = (size_t)N * OC, NV = (size_t)N * V;
    buf.inp = alloc_filled(NC, 1, 1), buf.out = alloc_filled(NC, 2, 1);
    buf.weight = alloc_filled(C, 3, 1), buf.bias = alloc_filled(C, 4, 1);
    buf.mean = alloc_filled(N, 5, 1), buf.rstd = alloc_filled(N, 6, 1);
    buf.dout = alloc_filled(NC, 7, 1), buf.dinp = alloc_filled(NC, 8, 1);
    buf.dw = alloc_filled(C, 9, 1), buf.db = alloc_filled(C, 10, 1);
    buf.h = alloc_filled(NO, 11, 3), buf.hout = alloc_filled(NO, 12, 1);
    buf.dh = alloc_filled(NO, 13, 1), buf.dbias_oc = alloc_filled(OC, 14, 1);
    buf.logits0 = alloc_filled(NV, 15, 5), buf.logits = alloc_filled(NV, 16, 1);
    buf.losses = alloc_filled(N, 17, 1);
    buf.targets = alloc_or_die(N * sizeof *buf.targets);
    for (int n = 0; n < N; n++)
        buf.targets[n] = (int)((n * 7919u) % V);
    buf.param = alloc_filled(NPARAMS, 18, 1), buf.grad = alloc_filled(NPARAMS, 19, 1);
    buf.m = alloc_filled(NPARAMS, 20, 0.01f), buf.v = alloc_filled(NPARAMS, 21, 0.01f);
    for (size_t i = 0; i < NPARAMS; i++)
        buf.v[i] *= buf.v[i];   /* second moments are >= 0 */
    buf.wide = alloc_filled(NPARAMS, 22, 1);
    buf.half = alloc_or_die(NPARAMS * sizeof *buf.half);
    f32_to_bf16(buf.half, buf.param, NPARAMS);
    /* valid mean and rstd for the backward */
    layernorm_forward(buf.out, buf.mean, buf.rstd, buf.inp, buf.weight, buf.bias, N, C);
}

/* ---- one call of each kernel ---- */

static void run_ln_fwd(isa_t isa)
{
    layernorm_forward_isa(isa, buf.out, buf.mean, buf.rstd, buf.inp, buf.weight, buf.bias, N, C);
}

static void run_ln_bwd(isa_t isa)
{
    layernorm_backward_isa(isa, buf.dinp, buf.dw, buf.db, buf.dout, buf.inp, buf.weight, buf.mean,
                           buf.rstd, N, C);
}

static void run_gelu_fwd(isa_t isa)
{
    gelu_forward_isa(isa, buf.hout, buf.h, (size_t)N * OC);
}

static void run_gelu_bwd(isa_t isa)
{
    gelu_backward_isa(isa, buf.hout, buf.h, buf.dh, (size_t)N * OC);
}

static void run_residual(isa_t isa)
{
    residual_forward_isa(isa, buf.out, buf.inp, buf.dout, (size_t)N * C);
}

static void run_bias_bwd(isa_t isa)
{
    bias_backward_isa(isa, buf.dbias_oc, buf.dh, N, OC);
}

static void reset_logits(void)
{
    memcpy(buf.logits, buf.logits0, (size_t)N * V * F);
}

static void run_xent_fwd(isa_t isa)
{
    softmax_xent_isa(isa, buf.losses, buf.logits0, buf.targets, N, V, 1.0f / N, false);
}

static void run_xent_bwd(isa_t isa)
{
    softmax_xent_isa(isa, buf.losses, buf.logits, buf.targets, N, V, 1.0f / N, true);
}

static void run_adamw(isa_t isa)
{
    const adamw_params p = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                            .weight_decay = 0.1f, .grad_scale = 1.0f, .step = 10};
    adamw_update_isa(isa, buf.param, buf.grad, buf.m, buf.v, NPARAMS, &p);
}

static volatile double sink;   /* keeps sumsq from being optimised away */
static void run_sumsq(isa_t isa)
{
    sink = sumsq_isa(isa, buf.grad, NPARAMS);
}

static void run_to_bf16(isa_t isa)
{
    f32_to_bf16_isa(isa, buf.half, buf.param, NPARAMS);
}

static void run_from_bf16(isa_t isa)
{
    bf16_to_f32_isa(isa, buf.wide, buf.half, NPARAMS);
}

/* In place and idempotent: after the first call the values are already bf16,
 * but every call still reads and writes all of them. */
static void run_round_bf16(isa_t isa)
{
    round_to_bf16_isa(isa, buf.wide, NPARAMS);
}

/* The LM head's weights wte[V,C] into the pair layout oneDNN's bf16
 * products use (blocks of 32 x 64), for the backward product (B = wte,
 * K = V) and, transposed, for the forward one (B = wte^T, K = C). */
static void run_pack(isa_t isa, bool trans)
{
    const int K = trans ? C : V, cols = trans ? V : C;
    const bf16_pair_layout l = {.K = K, .N = cols, .a_blk = 16, .n_blk = 64,
                                .k_blocks = (K + 31) / 32, .n_blocks = (cols + 63) / 64,
                                .kb_stride = 32 * 64, .nb_stride = (size_t)32 * 64 * ((K + 31) / 32)};
    f32_to_bf16_pairs_isa(isa, &l, buf.half, buf.param, C, trans);
}

static void run_pack_rows(isa_t isa)
{
    run_pack(isa, false);
}

static void run_pack_cols(isa_t isa)
{
    run_pack(isa, true);
}

typedef struct {
    const char *name;
    double bytes;              /* compulsory traffic of one call */
    void (*run)(isa_t isa);
    void (*reset)(void);       /* untimed, before every call (NULL: none) */
} bench;

static const bench benches[] = {
    {"layernorm_fwd", (2.0 * N * C + 2 * C + 2 * N) * F, run_ln_fwd, NULL},
    {"layernorm_bwd", (4.0 * N * C + 5 * C + 2 * N) * F, run_ln_bwd, NULL},
    {"gelu_fwd", 2.0 * N * OC * F, run_gelu_fwd, NULL},
    {"gelu_bwd", 3.0 * N * OC * F, run_gelu_bwd, NULL},
    {"residual_fwd", 3.0 * N * C * F, run_residual, NULL},
    {"bias_bwd", (1.0 * N * OC + 2 * OC) * F, run_bias_bwd, NULL},
    {"softmax_xent_fwd", 1.0 * N * V * F, run_xent_fwd, NULL},
    {"softmax_xent_bwd", 2.0 * N * V * F, run_xent_bwd, reset_logits},
    {"adamw", 7.0 * NPARAMS * F, run_adamw, NULL},
    {"sumsq", 1.0 * NPARAMS * F, run_sumsq, NULL},
    {"f32_to_bf16", NPARAMS * (F + 2.0), run_to_bf16, NULL},
    {"bf16_to_f32", NPARAMS * (F + 2.0), run_from_bf16, NULL},
    {"round_to_bf16", 2.0 * NPARAMS * F, run_round_bf16, NULL},
    {"pack_bf16_pairs", (double)V * C * (F + 2.0), run_pack_rows, NULL},
    {"pack_bf16_pairs_t", (double)V * C * (F + 2.0), run_pack_cols, NULL},
};

static double median_ms(const bench *bn, isa_t isa)
{
    double t[REPS];
    for (int r = -WARMUP; r < REPS; r++) {
        if (bn->reset)
            bn->reset();
        const double t0 = bench_now_s();
        bn->run(isa);
        if (r >= 0)
            t[r] = 1e3 * (bench_now_s() - t0);
    }
    return bench_median(t, REPS);
}

/* A higher ISA tier is not always the faster one (masked 512-bit loads can
 * make AVX-512 slower than AVX2: docs/benchmarks.md), and the
 * dispatch picks by the CPU's features: say so when the active path of a
 * kernel is over SLOWER times another path's, in a second measurement of both
 * as well as the first (the host's speed moves between minutes). */
#define SLOWER 1.2

static void check_active_path(const bench *bn, const double ms[ISA_COUNT])
{
    const isa_t active = cpu_isa();
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa++) {
        if (isa == active || !cpu_isa_supported(isa) || ms[active] <= SLOWER * ms[isa])
            continue;
        const double again_active = median_ms(bn, active), again = median_ms(bn, isa);
        if (again_active > SLOWER * again)
            printf("note: %s: the active %s path took %.3f and %.3f ms, %s %.3f and %.3f ms\n",
                   bn->name, cpu_isa_name(active), ms[active], again_active, cpu_isa_name(isa),
                   ms[isa], again);
    }
}

/* gemm_weights_pack (the active path, or oneDNN's reorder where the layout
 * is not a pair layout) against oneDNN's reorder, on gpt2-124M's LM head
 * (50257 x 768: 154 MB of fp32, past every cache) for both products;
 * skipped without a native bf16 product. */
static void pack_against_onednn(FILE *jsonl)
{
    enum { HV = 50257, HC = 768 };
    if (gemm_weights_size(GEMM_BF16, HC, HV) == 0) {
        printf("SKIP weights pack against oneDNN: no native bf16 product on this CPU\n");
        return;
    }
    float *wte = alloc_filled((size_t)HV * HC, 9, 0.1f);
    for (int trans = 0; trans < 2; trans++) {
        gemm_weights *w = trans ? gemm_weights_create(GEMM_BF16, true, HC, HV, HC)
                                : gemm_weights_create(GEMM_BF16, false, HV, HC, HC);
        double t[2][REPS];
        for (int r = -WARMUP; r < REPS; r++)
            for (int v = 0; v < 2; v++) {   /* alternating, so drift hits both */
                const double t0 = bench_now_s();
                (v ? gemm_weights_pack_onednn : gemm_weights_pack)(w, wte);
                if (r >= 0)
                    t[v][r] = 1e3 * (bench_now_s() - t0);
            }
        const double ours = bench_median(t[0], REPS), theirs = bench_median(t[1], REPS);
        printf("weights pack gpt2-124M LM head, %s: gemm_weights_pack %.2f ms, oneDNN's reorder "
               "%.2f ms (%.1fx)\n",
               trans ? "forward copy (wte^T)" : "backward copy (wte)", ours, theirs, theirs / ours);
        if (jsonl)
            fprintf(jsonl,
                    "{\"bench\":\"weights_pack\",\"copy\":\"%s\",\"ms\":%.4f,"
                    "\"onednn_ms\":%.4f}\n",
                    trans ? "forward" : "backward", ours, theirs);
        gemm_weights_destroy(w);
    }
    free(wte);
}

int main(void)
{
    bench_check_isa("bench_kernels");
    FILE *jsonl = bench_jsonl_open();
    alloc_all();
    printf("kernel benchmarks: N=%d C=%d V=%d params=%zu, %d threads, median of %d\n", N, C, V,
           NPARAMS, omp_get_max_threads(), REPS);
    printf("%-18s %-7s %10s %8s\n", "kernel", "isa", "ms", "GB/s");
    for (size_t k = 0; k < sizeof benches / sizeof benches[0]; k++) {
        double ms[ISA_COUNT] = {0};
        for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa++) {
            if (!cpu_isa_supported(isa))
                continue;
            ms[isa] = median_ms(&benches[k], isa);
            const double gbps = benches[k].bytes / (ms[isa] * 1e6);
            printf("%-18s %-7s %10.3f %8.1f\n", benches[k].name, cpu_isa_name(isa), ms[isa], gbps);
            if (jsonl)
                fprintf(jsonl,
                        "{\"bench\":\"kernel\",\"kernel\":\"%s\",\"isa\":\"%s\",\"ms\":%.4f,"
                        "\"gbps\":%.2f}\n",
                        benches[k].name, cpu_isa_name(isa), ms[isa], gbps);
        }
        check_active_path(&benches[k], ms);
    }
    pack_against_onednn(jsonl);
    if (jsonl)
        fclose(jsonl);
    return 0;
}
