/* bench_bf16mm: the bf16-weight products of decode (one row) at the seed384
 * and GPT-2 124M shapes, on every bf16mm path this CPU runs, against fp32's
 * gemv (gemv_n; gemv_t for the tied LM head, as infer decodes fp32), and a
 * 16-row prefill product.  One thread; weights on 2 MB pages as infer holds
 * them; calls rotate through copies of the weights totalling >= 256 MB (past
 * most last-level caches), so each streams its weights from memory as the
 * decode of a large model does.  Prints the median of REPS calls in ms and
 * GB/s of weights read, then the products' time per token of each model.
 * With BENCH_JSONL=path every figure is appended there too. */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kernels/bf16mm.h"
#include "kernels/gemv.h"
#include "tests/bench_util.h"
#include "tests/test_util.h"

enum { REPS = 15, NPATHS = BF16MM_PATH_COUNT + 1 /* + fp32 gemv */ };
#define STREAM_BYTES ((size_t)256 << 20)
#define FP32 BF16MM_PATH_COUNT

typedef struct {
    const char *model;
    int M, IN, OUT;
    int per_token;   /* uses per generated token (0: prefill, not part of decode) */
    int head;        /* the tied LM head: fp32 decodes it with gemv_t */
} shape;

static const shape shapes[] = {
    {"seed384", 1, 384, 1152, 4, 0},    {"seed384", 1, 384, 384, 4, 0},
    {"seed384", 1, 384, 1536, 4, 0},    {"seed384", 1, 1536, 384, 4, 0},
    {"seed384", 1, 384, 16000, 1, 1},    {"gpt2-124M", 1, 768, 2304, 12, 0},
    {"gpt2-124M", 1, 768, 768, 12, 0},  {"gpt2-124M", 1, 768, 3072, 12, 0},
    {"gpt2-124M", 1, 3072, 768, 12, 0}, {"gpt2-124M", 1, 768, 50257, 1, 1},
    {"gpt2-124M", 16, 768, 3072, 0, 0},
};
enum { NSHAPES = sizeof shapes / sizeof shapes[0] };

/* 2 MB pages where the kernel gives them, as infer's weights ask for */
static void *alloc_or_die(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 2 << 20, bytes) != 0) {
        fprintf(stderr, "bench_bf16mm: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    madvise(p, bytes, MADV_HUGEPAGE);
    return p;
}

/* ms per call of path on shape s, median of REPS, rotating over copies */
static double time_path(int path, const shape *s, const float *x, float *y, const float *w,
                        size_t wn, const uint16_t *p, size_t pn, int copies)
{
    double t[REPS];
    for (int r = -2; r < REPS; r++) {
        const int c = (r + 2) % copies;
        const double t0 = bench_now_s();
        if (path == FP32 && s->head)
            gemv_t_range(y, x, w + c * wn, s->IN, NULL, s->IN, 0, s->OUT);
        else if (path == FP32)
            for (int m = 0; m < s->M; m++)
                gemv_n_range(y + (size_t)m * s->OUT, x + (size_t)m * s->IN, w + c * wn, NULL,
                             s->IN, s->OUT, 0, s->OUT);
        else
            bf16mm_matmul_path((bf16mm_path)path, y, x, p + c * pn, NULL, s->M, s->IN, s->OUT);
        if (r >= 0)
            t[r] = 1e3 * (bench_now_s() - t0);
    }
    return bench_median(t, REPS);
}

int main(void)
{
    bench_check_isa("bench_bf16mm");
    omp_set_num_threads(1);
    FILE *jl = bench_jsonl_open();
    double per_token[2][NPATHS] = {{0}};
    printf("== bf16mm: bf16-weight products vs fp32 gemv, 1 thread, weights streamed from DRAM "
           "(median of %d)\n", REPS);
    for (int si = 0; si < NSHAPES; si++) {
        const shape *s = &shapes[si];
        const size_t wn = (size_t)s->IN * s->OUT, pn = bf16mm_packed_len(s->IN, s->OUT);
        const int copies = (int)((STREAM_BYTES + wn * 4 - 1) / (wn * 4));
        float *w = alloc_or_die(wn * 4 * copies), *x = alloc_or_die((size_t)s->M * s->IN * 4);
        float *y = alloc_or_die((size_t)s->M * s->OUT * 4);
        uint16_t *p = alloc_or_die(pn * 2 * copies);
        test_fill(x, (size_t)s->M * s->IN, 1, 1.0f);
        test_fill(w, wn, 2, 0.1f);
        for (int c = 0; c < copies; c++) {
            if (c)
                memcpy(w + c * wn, w, wn * 4);
            bf16mm_pack(p + c * pn, w, s->head, s->IN, s->OUT);
        }
        for (int path = 0; path < NPATHS; path++) {
            if (path < FP32 && (path == BF16MM_SCALAR || !bf16mm_supported((bf16mm_path)path)))
                continue;   /* scalar: a reference, not a contender */
            const double ms = time_path(path, s, x, y, w, wn, p, pn, copies);
            const double gb = (path == FP32 ? wn * 4.0 : pn * 2.0) / (ms * 1e6);
            const char *name = path == FP32 ? (s->head ? "fp32 gemv_t" : "fp32 gemv_n")
                                            : bf16mm_path_name((bf16mm_path)path);
            printf("%-10s M %2d %5d x %5d  %-12s %8.3f ms  %6.1f GB/s\n", s->model, s->M, s->IN,
                   s->OUT, name, ms, gb);
            if (jl)
                fprintf(jl, "{\"bench\":\"bf16mm\",\"model\":\"%s\",\"M\":%d,\"in\":%d,\"out\":%d,"
                        "\"path\":\"%s\",\"ms\":%.4f,\"gb_per_s\":%.2f}\n", s->model, s->M,
                        s->IN, s->OUT, name, ms, gb);
            per_token[s->model[0] == 'g'][path] += s->per_token * ms;
        }
        free(w), free(x), free(y), free(p);
    }
    for (int mi = 0; mi < 2; mi++)
        for (int path = 0; path < NPATHS; path++)
            if (per_token[mi][path] > 0)
                printf("%-10s decode products per token: %-12s %8.2f ms (%.2fx fp32)\n",
                       mi ? "gpt2-124M" : "seed384",
                       path == FP32 ? "fp32" : bf16mm_path_name((bf16mm_path)path),
                       per_token[mi][path], per_token[mi][FP32] / per_token[mi][path]);
    if (jl)
        fclose(jl);
    return 0;
}
