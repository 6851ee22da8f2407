/* autotune: precision "auto" and the weight gradients' kernel, decided by
 * timing the run's own matrix products.
 *
 * Whether bf16 beats fp32 depends on more than the CPU's flags: AMX tiles make
 * oneDNN's bf16 products several times faster than fp32, AVX512-BF16 alone
 * (vdpbf16ps) is often slower.  So the products one training step runs (the
 * four block linears and the LM head, forward, input and weight gradients, at
 * the run's C and V, with fewer token rows so it takes a fraction of a second)
 * are timed in each precision with a native product here, and the fastest is
 * taken.  The result is cached per CPU model, build, threads and shapes in
 * $XDG_CACHE_HOME/gpt-cpu/ (else ~/.cache/gpt-cpu/), so a restart does not
 * pay again; a cache file that does not parse, names another key or holds
 * figures no measurement gives is ignored and rewritten.
 * GPT_PRECISION_CACHE=0 in the environment (0 or 1, kernels/env.h) bypasses
 * it.
 */
#ifndef TRAINER_AUTOTUNE_H
#define TRAINER_AUTOTUNE_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels/gemm.h"
#include "trainer/config.h"

#define PRECISION_CACHE_ENV "GPT_PRECISION_CACHE"

typedef struct {
    gemm_dtype dtype;     /* the choice */
    char chosen[8];       /* its name: "fp32", "bf16" or "fp16" */
    double gflops[3];     /* fp32, bf16, fp16 products (gemm_dtype order); 0: not native */
    double measure_s;     /* the time the measurement took (when it ran) */
    bool from_cache;
} precision_choice;

/* The products of one training step, as trainer/model.c runs them in dtype
 * (fp32 reads the weights as stored, 16-bit modes a packed copy), with N
 * token rows and the LM head on V of the vocabulary's columns (counted
 * vocab_size / V times): PRECISION_STEP_PRODUCTS shapes into s. */
enum { PRECISION_STEP_PRODUCTS = 15 };
int precision_step_products(const run_config *c, gemm_dtype dtype, int N, int V, gemm_shape *s);

/* The config name of a precision: "fp32", "bf16", "fp16". */
const char *precision_name(gemm_dtype dtype);
/* The config precision whose products run in dtype. */
run_precision precision_of_dtype(gemm_dtype dtype);

/* Measures (or reads the cache for) the products of the model c describes
 * with the current OpenMP threads.  Never fails: without a working
 * measurement the choice is fp32. */
void precision_choose(const run_config *c, precision_choice *out);

/* The cache file for c on this machine and build (tests). */
int precision_cache_path(const run_config *c, char *buf, size_t n);

/* The weight gradients' kernel (gemm_set_trans_a_kernel): oneDNN's first
 * choice or its gemm kernel, whichever runs the step's weight-gradient
 * products faster here (the LM head's at the whole vocabulary, the others
 * as the precision's measurement has them), the gemm kernel only when 3%
 * faster.  Timed alternating and cached as the precision is (the key adds
 * the products' dtype): a restart runs the same kernel, so a resumed run
 * stays bit-identical to an uninterrupted one. */
typedef struct {
    bool gemm_kernel;     /* the choice */
    double gflops[2];     /* first choice, gemm kernel; 0: not measured */
    double measure_s;
    bool from_cache;
} weight_grad_choice;

/* Measures (or reads the cache for) the kernel for c's precision (fp32, bf16
 * or fp16, not auto).  Never fails: without a working measurement the choice
 * is oneDNN's first. */
void weight_grad_choose(const run_config *c, weight_grad_choice *out);

/* bf16 training's attention products: bf16 (vdpbf16ps) or fp32.  A CPU with
 * AVX512-BF16 need not run them faster in bf16 (on AMX machines vdpbf16ps has
 * no more throughput than fp32 FMAs and the conversions cost extra), so one
 * forward and backward of the run's attention (its sequence length and head
 * size, one sequence of a few heads) is timed both ways, alternating, and
 * bf16 taken only when 5% faster: fp32 is the more accurate.  Cached as the
 * others are (the key adds seq_len and n_head).  Measured only for a bf16
 * run where bf16 attention is native (attention_bf16_native); elsewhere
 * nothing is timed and the choice is fp32, which such a run computes in. */
typedef struct {
    bool bf16;            /* the choice */
    double ms[2];         /* fp32, bf16: one forward + backward; 0: not measured */
    double measure_s;
    bool from_cache;
} attention_choice;

void attention_choose(const run_config *c, attention_choice *out);

/* The cache file of the choice for c (tests). */
int attention_cache_path(const run_config *c, char *buf, size_t n);

/* The training event's fields as a JSON object: precision (c's, or for auto
 * pc's choice with measured_gflops {fp32, bf16[, fp16]}, measure_s, cached),
 * weight_grad (kernel "first" | "gemm", measured_gflops {first, gemm},
 * measure_s, cached) and, where a was measured, attention (products "fp32" |
 * "bf16", measured_ms {fp32, bf16}, measure_s, cached). */
void autotune_event_json(const run_config *c, const precision_choice *pc,
                         const weight_grad_choice *w, const attention_choice *a, char *buf,
                         size_t n);

/* The cache file of the choice for c (tests). */
int weight_grad_cache_path(const run_config *c, char *buf, size_t n);

#endif
