/* Benchmark of attention forward and backward on every supported ISA at the
 * seed384 and GPT-2 small sizes: median of REPS runs after one warm-up.
 * GFLOP/s counts the causal half of the matrix products: 2 of them forward
 * (S = QK^T, PV), 5 backward (S again, dP, dQ, dK, dV), each
 * 2 * B*H * T*T/2 * hs flops.  Appends JSON lines to $BENCH_JSONL if set. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/attention.h"
#include "tests/bench_util.h"
#include "tests/test_util.h"

enum { REPS = 10 };

typedef struct {
    const char *name;
    int B, T, C, H;
} bench_size;

static const bench_size sizes[] = {
    {"seed384", 8, 256, 384, 6},
    {"gpt2", 4, 1024, 768, 12},
};

typedef struct {
    bench_size s;
    float *qkv, *out, *lse, *dout, *dqkv;
    attention_work work;
} buffers;

static void run(const buffers *bf, isa_t isa, bool backward, bool bf16)
{
    const bench_size *s = &bf->s;
    if (backward)
        attention_backward_isa(isa, bf->dqkv, bf->dout, bf->qkv, bf->out, bf->lse, s->B, s->T,
                               s->C, s->H, bf16, &bf->work);
    else
        attention_forward_isa(isa, bf->out, bf->lse, bf->qkv, s->B, s->T, s->C, s->H, bf16,
                              &bf->work);
}

static double median_ms(const buffers *bf, isa_t isa, bool backward, bool bf16)
{
    double t[REPS];
    run(bf, isa, backward, bf16);   /* warm-up: page faults, caches */
    for (int r = 0; r < REPS; r++) {
        const double t0 = bench_now_s();
        run(bf, isa, backward, bf16);
        t[r] = 1e3 * (bench_now_s() - t0);
    }
    return bench_median(t, REPS);
}

static float *alloc_filled(size_t n, uint64_t seed)
{
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "bench_attention: out of memory\n");
        exit(1);
    }
    test_fill(p, n, seed, 1.0f);
    return p;
}

static void report(FILE *jsonl, const bench_size *s, isa_t isa, const char *kernel, double ms,
                   double flops)
{
    const double gflops = flops / (ms * 1e6);
    printf("%-8s %-7s %-14s %9.2f ms %8.1f GFLOP/s\n", s->name, cpu_isa_name(isa), kernel, ms,
           gflops);
    if (jsonl)
        fprintf(jsonl,
                "{\"bench\":\"kernel\",\"kernel\":\"%s\",\"isa\":\"%s\",\"size\":\"%s\","
                "\"B\":%d,\"T\":%d,\"C\":%d,\"H\":%d,\"threads\":%d,\"ms\":%.4f,\"gflops\":%.2f}\n",
                kernel, cpu_isa_name(isa), s->name, s->B, s->T, s->C, s->H, omp_get_max_threads(),
                ms, gflops);
}

static void bench_size_all_isas(FILE *jsonl, const bench_size *s)
{
    const size_t n3 = (size_t)s->B * s->T * 3 * s->C, n1 = (size_t)s->B * s->T * s->C;
    buffers bf = {*s, alloc_filled(n3, 1), alloc_filled(n1, 2),
                  alloc_filled((size_t)s->B * s->H * s->T, 3), alloc_filled(n1, 4),
                  alloc_filled(n3, 5), {0}};
    if (attention_work_init(&bf.work, s->T, s->C / s->H, omp_get_max_threads()) != 0) {
        fprintf(stderr, "bench_attention: out of memory\n");
        exit(1);
    }
    /* one causal T x T/2 x hs matrix product per (b,h) */
    const double mm_flops = 2.0 * s->B * s->H * ((double)s->T * s->T / 2) * (s->C / s->H);
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa++) {
        if (!cpu_isa_supported(isa))
            continue;
        report(jsonl, s, isa, "attention_fwd", median_ms(&bf, isa, false, false), 2 * mm_flops);
        report(jsonl, s, isa, "attention_bwd", median_ms(&bf, isa, true, false), 5 * mm_flops);
        if (isa == ISA_AVX512 && cpu_has_avx512_bf16()) {   /* vdpbf16ps products */
            report(jsonl, s, isa, "attention_fwd_bf16", median_ms(&bf, isa, false, true),
                   2 * mm_flops);
            report(jsonl, s, isa, "attention_bwd_bf16", median_ms(&bf, isa, true, true),
                   5 * mm_flops);
        }
    }
    free(bf.qkv), free(bf.out), free(bf.lse), free(bf.dout), free(bf.dqkv);
    attention_work_free(&bf.work);
}

int main(void)
{
    bench_check_isa("bench_attention");
    FILE *jsonl = bench_jsonl_open();
    printf("attention, %d threads, median of %d\n", omp_get_max_threads(), REPS);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        bench_size_all_isas(jsonl, &sizes[i]);
    if (jsonl)
        fclose(jsonl);
    return 0;
}
