/* bench_q8: the int8 matrix-vector product of decode (M = 1) at the seed384
 * and GPT-2 124M layer shapes, on every q8 path this CPU runs, against the
 * fp32 product through oneDNN (kernels/gemm.h, the trainer's path) and
 * through a plain AVX-512 matrix-vector loop; for M = 1 also the decode
 * layout build/infer decodes on (q8_decode_path, row "<path>-decode"), its
 * outputs split over the threads in blocks of 64 as infer does.
 *
 * Two cache states:
 *   hot    - the same weights every call (they sit in L2 or L3 if they fit);
 *   stream - calls rotate through copies of the weights totalling >= 256 MB,
 *            well past the last-level cache, so every call streams its
 *            weights from DRAM, as decode of a model larger than the cache does.
 * Prints shape, path, the median and the fastest of REPS calls in ms (on a
 * shared machine the fastest shows what the kernel can do), GB/s of weights
 * streamed (int8 values plus their scales: fp32 in the [out, in] copy, fp16 in
 * the decode layout; fp32 weights for oneDNN),
 * then the matmul time per token of each model (its layer products plus the
 * LM head; attention and the rest not included), and a few prefill (M = 16)
 * shapes.  With BENCH_JSONL=path every figure is also appended there as a
 * JSON line. */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "kernels/gemm.h"
#include "kernels/q8.h"
#include "tests/bench_util.h"
#include "tests/test_util.h"

enum { WARMUP = 2, REPS = 20, NPATHS = Q8_PATH_COUNT + 3 /* + fp32 baselines, decode layout */ };
#define STREAM_BYTES ((size_t)256 << 20)
#define FP32 Q8_PATH_COUNT            /* fp32 through oneDNN, as a path index */
#define FP32_LOOP (Q8_PATH_COUNT + 1) /* fp32 through sgemv_avx512 below */
#define DECODE (Q8_PATH_COUNT + 2)    /* q8_decode_matvec on q8_decode_path()'s layout */

typedef struct {
    const char *model;
    int M, IN, OUT;
    int per_token;   /* uses per generated token (0: not part of decode) */
} shape;

static const shape shapes[] = {
    {"seed384", 1, 384, 1152, 4},     {"seed384", 1, 384, 384, 4},
    {"seed384", 1, 384, 1536, 4},     {"seed384", 1, 1536, 384, 4},
    {"seed384", 1, 384, 16000, 1},    {"gpt2-124M", 1, 768, 2304, 12},
    {"gpt2-124M", 1, 768, 768, 12},   {"gpt2-124M", 1, 768, 3072, 12},
    {"gpt2-124M", 1, 3072, 768, 12},  {"gpt2-124M", 1, 768, 50257, 1},
    {"seed384", 16, 384, 1152, 0},    {"gpt2-124M", 16, 768, 2304, 0},
    {"gpt2-124M", 16, 768, 3072, 0},
};
enum { NSHAPES = sizeof shapes / sizeof shapes[0] };
static const char *const caches[2] = {"hot", "stream"};

/* Everything one shape needs; weights as ncopies back-to-back copies. */
static struct {
    const shape *s;
    size_t ncopies, wq_bytes, ws_count, w_count, wv_bytes;
    int8_t *xq, *wq, *aux;
    void *wv;   /* decode layout copies, NULL if this CPU has none */
    float *x, *xs, *ws, *w, *bias, *y;
} cur;

static void *alloc_or_die(size_t bytes)
{
    void *p = malloc(bytes);
    if (!p) {
        fprintf(stderr, "bench_q8: out of memory\n");
        exit(1);
    }
    return p;
}

static void replicate(void *base, size_t bytes, size_t copies)
{
    for (size_t c = 1; c < copies; c++)
        memcpy((char *)base + c * bytes, base, bytes);
}

static void setup(const shape *s)
{
    const size_t M = s->M, IN = s->IN, OUT = s->OUT, G = IN / Q8_GS;
    cur.s = s;
    cur.wq_bytes = OUT * IN, cur.ws_count = OUT * G, cur.w_count = IN * OUT;
    /* enough copies of the larger (fp32) weights to pass STREAM_BYTES */
    cur.ncopies = STREAM_BYTES / (cur.w_count * sizeof(float)) + 2;
    cur.x = alloc_or_die(M * IN * sizeof(float)), cur.xs = alloc_or_die(M * G * sizeof(float));
    cur.xq = alloc_or_die(M * IN), cur.bias = alloc_or_die(OUT * sizeof(float));
    cur.y = alloc_or_die(M * OUT * sizeof(float));
    cur.w = alloc_or_die(cur.ncopies * cur.w_count * sizeof(float));
    cur.wq = alloc_or_die(cur.ncopies * cur.wq_bytes);
    cur.ws = alloc_or_die(cur.ncopies * cur.ws_count * sizeof(float));
    test_fill(cur.x, M * IN, 1, 1.0f);
    test_fill(cur.w, cur.w_count, 2, 0.05f);
    test_fill(cur.bias, OUT, 3, 0.1f);
    q8_quantize(cur.xq, cur.xs, cur.x, M * IN);
    q8_pack_weights(cur.wq, cur.ws, cur.w, (int)IN, (int)OUT);
    replicate(cur.w, cur.w_count * sizeof(float), cur.ncopies);
    replicate(cur.wq, cur.wq_bytes, cur.ncopies);
    replicate(cur.ws, cur.ws_count * sizeof(float), cur.ncopies);
    const q8_path dp = q8_decode_path();
    cur.wv = NULL;
    if (dp != Q8_SCALAR && M == 1) {
        cur.wv_bytes = q8_decode_pack_bytes(dp, (int)IN, (int)OUT);
        cur.wv = alloc_or_die(cur.ncopies * cur.wv_bytes);
        cur.aux = alloc_or_die(IN);
        if (q8_decode_pack(dp, cur.wv, cur.wq, cur.ws, (int)IN, (int)OUT) != 0) {
            fprintf(stderr, "bench_q8: weight scales that are not fp16 values\n");
            exit(1);
        }
        q8_decode_prep(dp, cur.aux, cur.xq, 1, IN);
        replicate(cur.wv, cur.wv_bytes, cur.ncopies);
    }
}

static void teardown(void)
{
    free(cur.x), free(cur.xs), free(cur.xq), free(cur.bias), free(cur.y);
    free(cur.w), free(cur.wq), free(cur.ws);
    if (cur.wv)
        free(cur.wv), free(cur.aux);
}

/* y = x W + bias for W [IN, OUT] row-major (decode only: one row x), the plain
 * AVX-512 way: each thread owns strips of SW columns and walks down the rows,
 * SW/16 accumulators per strip, each row read as SW*4 contiguous bytes.
 * oneDNN's matmul is not tuned for M = 1; this is the fp32 decode speed a
 * simple kernel reaches. */
enum { SW = 128 };
__attribute__((target("avx512f"))) static void sgemv_avx512(float *y, const float *x,
                                                            const float *w, const float *bias,
                                                            int IN, int OUT)
{
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < OUT; c0 += SW) {
        __m512 acc[SW / 16];
        __mmask16 k[SW / 16];
        for (int j = 0; j < SW / 16; j++) {
            const int left = OUT - c0 - 16 * j;
            k[j] = left >= 16 ? 0xFFFF : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
            acc[j] = _mm512_maskz_loadu_ps(k[j], bias + c0 + 16 * j);
        }
        for (int i = 0; i < IN; i++) {
            const __m512 xi = _mm512_set1_ps(x[i]);
            const float *row = w + (size_t)i * OUT + c0;
            for (int j = 0; j < SW / 16; j++)
                acc[j] = _mm512_fmadd_ps(xi, _mm512_maskz_loadu_ps(k[j], row + 16 * j), acc[j]);
        }
        for (int j = 0; j < SW / 16; j++)
            _mm512_mask_storeu_ps(y + c0 + 16 * j, k[j], acc[j]);
    }
}

/* infer's decode split: each thread a contiguous share of whole 64-output blocks */
static void run_decode(size_t copy)
{
    const shape *s = cur.s;
    const q8_path dp = q8_decode_path();
    const void *wv = (const char *)cur.wv + copy * cur.wv_bytes;
#pragma omp parallel
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num(), blocks = (s->OUT + 63) / 64;
        const int o0 = blocks * t / nt * 64, o1 = blocks * (t + 1) / nt * 64;
        if (o0 < s->OUT)
            q8_decode_matvec(dp, cur.y, cur.xq, cur.xs, cur.aux, wv, cur.bias, s->IN, o0,
                             o1 < s->OUT ? o1 : s->OUT);
    }
}

static void run(int path, size_t copy)
{
    const shape *s = cur.s;
    if (path == DECODE)
        run_decode(copy);
    else if (path == FP32_LOOP)
        for (int m = 0; m < s->M; m++)
            sgemv_avx512(cur.y + (size_t)m * s->OUT, cur.x + (size_t)m * s->IN,
                         cur.w + copy * cur.w_count, cur.bias, s->IN, s->OUT);
    else if (path == FP32)
        gemm_f32(false, false, s->M, s->OUT, s->IN, cur.x, s->IN, cur.w + copy * cur.w_count,
                 s->OUT, cur.bias, false, cur.y, s->OUT);
    else
        q8_matmul_path((q8_path)path, cur.y, cur.xq, cur.xs, cur.wq + copy * cur.wq_bytes,
                       cur.ws + copy * cur.ws_count, cur.bias, s->M, s->IN, s->OUT);
}

/* The median (and in *best the fastest) of REPS calls.  stream: copy r of the
 * rotation, so each copy is touched once per ncopies calls. */
static double median_ms(int path, int stream, double *best)
{
    double t[REPS];
    for (int r = -WARMUP; r < REPS; r++) {
        const size_t copy = stream ? (size_t)(r + WARMUP) % cur.ncopies : 0;
        const double t0 = bench_now_s();
        run(path, copy);
        if (r >= 0)
            t[r] = 1e3 * (bench_now_s() - t0);
    }
    const double median = bench_median(t, REPS);   /* sorts t */
    *best = t[0];
    return median;
}

static const char *path_name(int path)
{
    static char decode[32];
    snprintf(decode, sizeof decode, "%s-decode", q8_path_name(q8_decode_path()));
    return path == FP32 ? "fp32-dnnl" : path == FP32_LOOP ? "fp32-loop" : path == DECODE ? decode
                                                                  : q8_path_name((q8_path)path);
}

static double weight_bytes(int path)
{
    return path == DECODE ? (double)cur.wv_bytes
           : path >= FP32 ? (double)cur.w_count * sizeof(float)
                          : (double)cur.wq_bytes + (double)cur.ws_count * sizeof(float);
}

/* ms[shape][path][cache], < 0 where not measured */
static double ms[NSHAPES][NPATHS][2];

/* The two fp32 baselines must compute the same product (else a fast wrong
 * baseline would flatter or shame the int8 paths). */
static void check_fp32_loop(void)
{
    const size_t n = (size_t)cur.s->M * cur.s->OUT;
    float *ref = alloc_or_die(n * sizeof *ref);
    run(FP32, 0);
    memcpy(ref, cur.y, n * sizeof *ref);
    run(FP32_LOOP, 0);
    if (!test_close("fp32-loop vs fp32-dnnl", cur.y, ref, n, 1e-4f, 1e-4f))
        exit(1);
    free(ref);
}

static void bench_shape(int i, FILE *jsonl)
{
    const shape *s = &shapes[i];
    setup(s);
    if (cpu_isa_supported(ISA_AVX512))
        check_fp32_loop();
    for (int path = 0; path < NPATHS; path++) {
        ms[i][path][0] = ms[i][path][1] = -1;
        if (path < FP32 ? !q8_path_supported((q8_path)path)
            : path == FP32_LOOP ? !cpu_isa_supported(ISA_AVX512) || s->M > 1
            : path == DECODE    ? !cur.wv
                                : false)
            continue;
        for (int c = 0; c < (s->M == 1 ? 2 : 1); c++) {   /* prefill: hot only */
            double best;
            const double t = median_ms(path, c, &best), gbps = weight_bytes(path) / (t * 1e6);
            ms[i][path][c] = t;
            printf("%-10s %3d %5d %6d  %-10s %-6s %9.4f %9.4f %8.1f\n", s->model, s->M, s->IN,
                   s->OUT, path_name(path), caches[c], t, best, gbps);
            if (jsonl)
                fprintf(jsonl,
                        "{\"bench\":\"q8\",\"model\":\"%s\",\"M\":%d,\"in\":%d,\"out\":%d,"
                        "\"path\":\"%s\",\"cache\":\"%s\",\"ms\":%.4f,\"min_ms\":%.4f,\"gbps\":%.2f}\n",
                        s->model, s->M, s->IN, s->OUT, path_name(path), caches[c], t, best, gbps);
        }
    }
    teardown();
}

/* Sum over a model's decode shapes of uses x time: the matmul share of one token. */
static void per_token(const char *model, FILE *jsonl)
{
    for (int path = 0; path < NPATHS; path++)
        for (int c = 0; c < 2; c++) {
            double total = 0;
            int ok = 1;
            for (int i = 0; i < NSHAPES; i++)
                if (shapes[i].per_token && strcmp(shapes[i].model, model) == 0) {
                    ok &= ms[i][path][c] >= 0;
                    total += shapes[i].per_token * ms[i][path][c];
                }
            if (!ok)
                continue;
            printf("%-10s %-10s %-6s %8.3f ms/token  (%6.0f tokens/s matmul bound)\n", model,
                   path_name(path), caches[c], total, 1e3 / total);
            if (jsonl)
                fprintf(jsonl,
                        "{\"bench\":\"q8_token\",\"model\":\"%s\",\"path\":\"%s\",\"cache\":\"%s\","
                        "\"ms\":%.4f}\n",
                        model, path_name(path), caches[c], total);
        }
}

int main(void)
{
    bench_check_isa("bench_q8");
    const char *jsonl_path = getenv("BENCH_JSONL");
    FILE *jsonl = jsonl_path && *jsonl_path ? fopen(jsonl_path, "a") : NULL;
    if (jsonl_path && *jsonl_path && !jsonl) {
        perror(jsonl_path);
        return 1;
    }
    printf("q8 matmul benchmarks: %d threads, median of %d, stream = weights rotated over >= %zu MB\n",
           omp_get_max_threads(), REPS, STREAM_BYTES >> 20);
    printf("%-10s %3s %5s %6s  %-10s %-6s %9s %9s %8s\n", "model", "M", "IN", "OUT", "path",
           "cache", "ms", "min ms", "GB/s");
    for (int i = 0; i < NSHAPES; i++)
        bench_shape(i, jsonl);
    printf("decode matmuls per token (layers + LM head):\n");
    per_token("seed384", jsonl);
    per_token("gpt2-124M", jsonl);
    gemm_release();
    if (jsonl)
        fclose(jsonl);
    return 0;
}
