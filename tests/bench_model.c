/* bench_model: where one forward + backward of the model spends its time.
 *
 *   bench_model [CONFIG.json] [--set key=value ...] [--steps N]
 *
 * Builds the model of a trainer config (default launch/configs/seed384.json)
 * with its precision (auto: the trainer's measured choice) and recompute
 * setting, runs one warm-up micro-batch of
 * random tokens and then N timed ones (default 5), and prints the wall time
 * per micro-batch of each kind of op, forward and backward, with the share of
 * the total and the fwd+bwd tokens/s (no optimizer, no communication: the
 * trainer's own figures are the `make bench` training rows).  Then the same
 * matrix products timed alone, each on its own hot operands (the fastest of
 * a few passes, as the precision choice times them), against the products'
 * rate inside the step: the gap is what the step's memory traffic costs
 * them (their operands and outputs are activations, cold in cache).  With
 * BENCH_JSONL=path the table is also appended there as one JSON object.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/autotune.h"
#include "trainer/config.h"
#include "trainer/model.h"
#include "trainer/train.h"
#include "tests/bench_util.h"

static int parse_args(int argc, char **argv, run_config *c, int *steps)
{
    char err[256];
    const char *config = "launch/configs/seed384.json";
    if (argc > 1 && argv[1][0] != '-')
        config = argv[1];
    config_defaults(c);
    if (config_load_file(c, config, err, sizeof err) != 0)
        goto bad;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            if (config_set(c, argv[++i], err, sizeof err) != 0)
                goto bad;
        } else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
            *steps = atoi(argv[++i]);
        } else if (i > 1 || argv[i][0] == '-') {
            snprintf(err, sizeof err, "unknown argument %s", argv[i]);
            goto bad;
        }
    }
    if (config_finalize(c, err, sizeof err) != 0)
        goto bad;
    if (*steps < 1) {
        snprintf(err, sizeof err, "--steps must be at least 1");
        goto bad;
    }
    return 0;
bad:
    fprintf(stderr, "bench_model: %s\n", err);
    return -1;
}

/* FLOPs per micro-batch of the matrix-product ops, to show their rates: the
 * block linears (forward, twice in backward, plus a recomputed forward) and
 * the LM head (forward and twice in backward). */
static double op_flops(gpt2_op op, const run_config *c)
{
    double N = (double)c->batch_size * c->seq_len, C = c->n_embd;
    if (op == OP_MATMUL)
        return (c->recompute == RECOMPUTE_BLOCK ? 4 : 3) * 2 * N * 12 * C * C * c->n_layer;
    if (op == OP_LM_HEAD)
        return 3 * 2 * N * C * c->vocab_size;
    return 0;
}

/* The step's products timed alone: GFLOP/s over all of them, or 0 when the
 * precision has no native product here. */
static double products_alone_gflops(const run_config *c, gemm_dtype dtype)
{
    enum { PASSES = 5 };
    gemm_shape shapes[PRECISION_STEP_PRODUCTS];
    int n = precision_step_products(c, dtype, c->batch_size * c->seq_len, c->vocab_size, shapes);
    gemm_timing *t = gemm_timing_create(dtype, shapes, n);
    if (!t)
        return 0;
    for (int pass = 0; pass < PASSES; pass++)
        gemm_timing_pass(t);
    double gflops = gemm_timing_gflops(t);
    gemm_timing_destroy(t);
    return gflops;
}

static void print_profile(const gpt2 *m, const run_config *c, int steps, double seconds)
{
    const char *kernel = gemm_trans_a_kernel() ? "gemm" : "first";
    double total = 0;
    for (int p = 0; p < 2; p++)
        for (int op = 0; op < OP_COUNT; op++)
            total += m->op_seconds[p][op];
    double tokens = (double)c->batch_size * c->seq_len;
    char work[160];
    snprintf(work, sizeof work, "%s V%d C%d L%d B%d T%d recompute=%s weight_grad=%s attention=%s",
             config_precision_name(c->precision), c->vocab_size, c->n_embd, c->n_layer,
             c->batch_size, c->seq_len, config_recompute_name(c->recompute), kernel,
             gpt2_attention_bf16(m) ? "bf16" : "fp32");
    printf("== profile %s: %.1f ms per fwd+bwd, %.0f tok/s (ops account for %.1f ms)\n", work,
           1e3 * seconds / steps, tokens * steps / seconds, 1e3 * total / steps);
    printf("   %-10s %9s %9s %6s\n", "op", "fwd ms", "bwd ms", "share");
    FILE *jsonl = bench_jsonl_open();
    if (jsonl)
        fprintf(jsonl, "{\"bench\": \"profile\", \"work\": \"%s\", \"ms_per_step\": %.2f", work,
                1e3 * seconds / steps);
    double flops = 0, product_ms = 0;
    for (int op = 0; op < OP_COUNT; op++) {
        double f = 1e3 * m->op_seconds[0][op] / steps, b = 1e3 * m->op_seconds[1][op] / steps;
        if (op_flops(op, c) > 0)
            flops += op_flops(op, c), product_ms += f + b;
        printf("   %-10s %9.2f %9.2f %5.1f%%", gpt2_op_name(op), f, b,
               100 * (f + b) / (1e3 * total / steps));
        if (op_flops(op, c) > 0)
            printf("  %6.0f GFLOP/s", op_flops(op, c) / ((f + b) * 1e-3) / 1e9);
        printf("\n");
        if (jsonl)
            fprintf(jsonl, ", \"%s_ms\": [%.2f, %.2f]", gpt2_op_name(op), f, b);
    }
    double in_step = flops / (product_ms * 1e-3) / 1e9;
    double alone = products_alone_gflops(c, m->half);
    if (alone > 0)
        printf("   products: %.0f GFLOP/s in the step, %.0f alone on hot operands (in the step at "
               "%.0f%% of alone)\n", in_step, alone, 100 * in_step / alone);
    if (jsonl) {
        fprintf(jsonl, ", \"products_gflops\": %.1f, \"products_alone_gflops\": %.1f}\n", in_step,
                alone);
        fclose(jsonl);
    }
}

int main(int argc, char **argv)
{
    run_config c;
    int steps = 5;
    char err[256];
    if (parse_args(argc, argv, &c, &steps) != 0)
        return 2;
    if (train_check_env(err, sizeof err) != 0) {   /* as the trainer: a bad value stops it */
        fprintf(stderr, "bench_model: %s\n", err);
        return 2;
    }
    if (c.precision_auto) {   /* what the trainer would run: the same measured choice */
        precision_choice pc;
        precision_choose(&c, &pc);
        c.precision = precision_of_dtype(pc.dtype);
    }
    gpt2_dims d = {c.vocab_size, c.n_positions, c.n_embd, c.n_layer, c.n_head};
    gpt2_options o = train_model_options(&c, 1);
    weight_grad_choice wg;   /* as the trainer: the measured (or cached) kernel */
    weight_grad_choose(&c, &wg);
    gemm_set_trans_a_kernel(wg.gemm_kernel);
    attention_choice att;   /* and its measured (or cached) attention products */
    attention_choose(&c, &att);
    o.attention_fp32 = !att.bf16;
    gpt2 m;
    if (gpt2_create(&m, &d, c.batch_size, c.seq_len, &o, err, sizeof err) != 0) {
        fprintf(stderr, "bench_model: %s\n", err);
        return 1;
    }
    gpt2_init_params(&m, 1);
    size_t n = (size_t)c.batch_size * c.seq_len;
    int *tokens = malloc((n + 1) * sizeof *tokens);
    if (!tokens) {
        fprintf(stderr, "bench_model: out of memory\n");
        return 1;
    }
    uint64_t s = 7;
    for (size_t i = 0; i <= n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        tokens[i] = (int)((s >> 33) % (uint64_t)c.vocab_size);
    }
    double t0 = 0;
    for (int i = 0; i <= steps; i++) {   /* step 0 warms up: primitives, first touch */
        if (i == 1) {
            gpt2_profile_reset(&m);
            t0 = bench_now_s();
        }
        gpt2_zero_grad(&m);
        gpt2_forward(&m, tokens, tokens + 1, c.batch_size, c.seq_len);
        gpt2_backward(&m, 1.0f / (float)n);
    }
    print_profile(&m, &c, steps, bench_now_s() - t0);
    free(tokens);
    gpt2_destroy(&m);
    gemm_release();
    return 0;
}
