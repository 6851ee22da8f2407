#include "trainer/autotune.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/fsutil.h"
#include "io/hash.h"
#include "kernels/attention.h"
#include "kernels/cpu.h"
#include "kernels/env.h"
#include "kernels/gemm.h"

/* The timed products have at most this many token rows and LM-head columns:
 * enough for oneDNN to pick the kernels and blocking the full products get,
 * small enough that a pass over all of them takes milliseconds. */
enum { TUNE_TOKENS = 256, TUNE_VOCAB = 2048 };
/* Timed passes (after one that creates the primitives) run at least this
 * often and this long, in seconds.  Each product keeps its fastest pass: on
 * a host with more runnable threads than cores most passes wait for a
 * descheduled OpenMP thread, so a few samples are not enough. */
enum { TUNE_MIN_PASSES = 4 };
#define TUNE_BUDGET_S 0.05
/* A 16-bit precision also converts activations and gradients outside the
 * products, so it is taken only when its products are this much faster. */
#define TUNE_MARGIN 1.05
/* The weight gradients leave oneDNN's first choice only for a clear gain. */
#define TUNE_KERNEL_MARGIN 1.03

/* The precision each gemm_dtype's products run: its name is the dtype's in
 * the cache files and the training event. */
static const run_precision dtype_precisions[3] = {
    [GEMM_F32] = PRECISION_FP32, [GEMM_BF16] = PRECISION_BF16, [GEMM_F16] = PRECISION_FP16,
};

static int timed_tokens(const run_config *c)
{
    const int BT = c->batch_size * c->seq_len;
    return BT < TUNE_TOKENS ? BT : TUNE_TOKENS;
}

int precision_step_products(const run_config *c, gemm_dtype dtype, int N, int V, gemm_shape *s)
{
    const int C = c->n_embd;
    const bool half = dtype != GEMM_F32;
    const int io[5][2] = {{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}, {C, V}};
    int n = 0;
    for (int l = 0; l < 5; l++) {
        const int IC = io[l][0], OC = io[l][1];
        const bool head = l == 4;
        /* the LM head runs once a step on V columns, each block linear n_layer times */
        const double count = head ? (double)c->vocab_size / V : c->n_layer;
        /* forward: [N,IC] @ w; the head's weight is wte [V,C], read transposed */
        s[n++] = (gemm_shape){N, OC, IC, false, head, half, count};
        /* input gradient: dout [N,OC] @ w^T */
        s[n++] = (gemm_shape){N, IC, OC, false, !head, half, count};
        /* weight gradient: inp^T @ dout, or for the head dlogits^T @ lnf */
        s[n++] = head ? (gemm_shape){OC, IC, N, true, false, false, count}
                      : (gemm_shape){IC, OC, N, true, false, false, count};
    }
    return n;
}

/* This program file's size and time stamp: a rebuild is a new build. */
static void build_id(char *buf, size_t n)
{
    struct stat st;
    if (stat("/proc/self/exe", &st) == 0)
        snprintf(buf, n, "%lld:%lld", (long long)st.st_size, (long long)st.st_mtime);
    else
        snprintf(buf, n, "unknown");
}

/* What the measurement depends on: the machine, the build and the shapes it
 * times (so runs that differ only in batch_size or rank count, once both
 * have more than TUNE_TOKENS tokens a micro-batch, share a choice). */
static void cache_key(const run_config *c, char *buf, size_t n)
{
    char build[64];
    build_id(build, sizeof build);
    snprintf(buf, n, "cpu=%s;isa=%s;bf16=%d;amx=%d;%s;build=%s;threads=%d;C=%d;L=%d;V=%d;tokens=%d",
             cpu_model_name(), cpu_isa_name(cpu_isa()), cpu_has_bf16(), cpu_has_amx_bf16(),
             gemm_library(), build, omp_get_max_threads(), c->n_embd, c->n_layer, c->vocab_size,
             timed_tokens(c));
}

static int cache_dir(char *buf, size_t n)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg)
        return snprintf(buf, n, "%s/gpt-cpu", xdg) < (int)n ? 0 : -1;
    if (home && *home)
        return snprintf(buf, n, "%s/.cache/gpt-cpu", home) < (int)n ? 0 : -1;
    return -1;
}

/* The cache file of a measurement kind ("precision", "weight-grad") for key.
 * It is named by the key without its build, so that a rebuild's measurement
 * replaces the last build's (the key inside tells them apart) rather than
 * adding a file per build for good. */
static int cache_file(const char *kind, const char *key, char *buf, size_t n)
{
    char dir[768], slot[1200];
    if (cache_dir(dir, sizeof dir) != 0)
        return -1;
    const char *build = strstr(key, ";build="), *rest = build ? strchr(build + 1, ';') : NULL;
    snprintf(slot, sizeof slot, "%.*s%s", build ? (int)(build - key) : (int)strlen(key), key,
             rest ? rest : "");
    const unsigned long long h = fnv1a64(slot, strlen(slot));
    return snprintf(buf, n, "%s/%s-%016llx.json", dir, kind, h) < (int)n ? 0 : -1;
}

int precision_cache_path(const run_config *c, char *buf, size_t n)
{
    char key[1024];
    cache_key(c, key, sizeof key);
    return cache_file("precision", key, buf, n);
}

/* GPT_PRECISION_CACHE=0 in the environment bypasses every cache here; a bad
 * value keeps them (the trainer refuses it at start). */
static bool cache_wanted(void)
{
    bool wanted;
    env_flag(PRECISION_CACHE_ENV, true, &wanted, NULL, 0);
    return wanted;
}

const char *precision_name(gemm_dtype dtype)
{
    return config_precision_name(dtype_precisions[dtype]);
}

run_precision precision_of_dtype(gemm_dtype dtype)
{
    return dtype_precisions[dtype];
}

/* The gemm_dtype named name, -1 for none. */
static int precision_index(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, precision_name((gemm_dtype)i)) == 0)
            return i;
    return -1;
}

/* The cached object at path, NULL when absent, damaged or another key's. */
static cJSON *cache_load(const char *path, const char *key)
{
    uint8_t *text;
    size_t len;
    char err[256];
    if (fs_read_file_max(path, 1 << 20, &text, &len, err, sizeof err) != 0)
        return NULL;
    cJSON *o = cJSON_Parse((const char *)text);
    free(text);
    const char *k = cJSON_GetStringValue(cJSON_GetObjectItem(o, "key"));
    if (k && strcmp(k, key) == 0)
        return o;
    cJSON_Delete(o);
    return NULL;
}

/* A cached figure beyond these is damage, not a measurement (the training
 * event prints them with %.0f and %.2f into a line that has room for these). */
#define CACHE_MAX_GFLOPS 1e7
#define CACHE_MAX_SECONDS 1e6

/* o's number name into *out: true when it is one in [0, max], or (optional)
 * absent, which reads as 0. */
static bool cached_figure(const cJSON *o, const char *name, double max, bool optional,
                          double *out)
{
    const cJSON *v = cJSON_GetObjectItem(o, name);
    *out = 0;
    if (!v)
        return optional;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= max))
        return false;
    *out = v->valuedouble;
    return true;
}

/* The cached precision for key at path; false when absent, damaged or another key's. */
static bool cache_read(const char *path, const char *key, precision_choice *out)
{
    cJSON *o = cache_load(path, key);
    const char *chosen = cJSON_GetStringValue(cJSON_GetObjectItem(o, "precision"));
    cJSON *g = cJSON_GetObjectItem(o, "measured_gflops");
    precision_choice p = {.from_cache = true};
    bool ok = chosen && precision_index(chosen) >= 0 && cJSON_IsObject(g) &&
              cached_figure(o, "measure_s", CACHE_MAX_SECONDS, false, &p.measure_s);
    for (int i = 0; ok && i < 3; i++)
        ok = cached_figure(g, precision_name((gemm_dtype)i), CACHE_MAX_GFLOPS, true,
                           &p.gflops[i]);
    if (ok) {
        p.dtype = (gemm_dtype)precision_index(chosen);
        snprintf(p.chosen, sizeof p.chosen, "%s", chosen);
        *out = p;
    }
    cJSON_Delete(o);
    return ok;
}

static cJSON *choice_object(const precision_choice *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "precision", p->chosen);
    cJSON *g = cJSON_AddObjectToObject(o, "measured_gflops");
    for (int i = 0; i < 3; i++)
        if (p->gflops[i] > 0)
            cJSON_AddNumberToObject(g, precision_name((gemm_dtype)i), p->gflops[i]);
    cJSON_AddNumberToObject(o, "measure_s", p->measure_s);
    return o;
}

/* Best effort: a run whose cache cannot be written measures again next time.
 * Adds key to o, writes it and deletes o. */
static void cache_store(const char *path, const char *key, cJSON *o)
{
    char dir[1024], err[256];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    cJSON_AddStringToObject(o, "key", key);
    char *text = cJSON_PrintUnformatted(o);
    if (text && fs_mkdir_p(dir, err, sizeof err) == 0)
        fs_write_file_atomic(path, text, strlen(text), err, sizeof err);
    free(text);
    cJSON_Delete(o);
}

/* Whether pass number pass of a budget begun at t0 is due: at least
 * TUNE_MIN_PASSES of them, and more until TUNE_BUDGET_S has passed. */
static bool pass_due(int pass, double t0)
{
    return pass < TUNE_MIN_PASSES || omp_get_wtime() - t0 < TUNE_BUDGET_S;
}

/* Timing passes over the sets in turn (NULL ones skipped) for a budget: a
 * busy moment of the host slows one pass of each rather than all of one.
 * Each product keeps its fastest pass, so a second call refines the first's
 * figures. */
static void alternate_passes(gemm_timing *const *sets, int n)
{
    const double t0 = omp_get_wtime();
    for (int pass = 0; pass_due(pass, t0); pass++)
        for (int i = 0; i < n; i++)
            if (sets[i])
                gemm_timing_pass(sets[i]);
}

static void measure(const run_config *c, precision_choice *out)
{
    memset(out, 0, sizeof *out);
    double t0 = omp_get_wtime();
    gemm_timing *sets[3] = {NULL};
    gemm_shape shapes[PRECISION_STEP_PRODUCTS];
    const int N = timed_tokens(c), V = c->vocab_size < TUNE_VOCAB ? c->vocab_size : TUNE_VOCAB;
    for (int d = GEMM_F32; d <= GEMM_F16; d++)
        sets[d] = gemm_timing_create((gemm_dtype)d, shapes,
                                     precision_step_products(c, (gemm_dtype)d, N, V, shapes));
    int best = GEMM_F32;
    /* a choice other than fp32 must hold over a second budget: one busy
     * moment of the host should not change what a run computes in */
    for (int round = 0; round < 2 && (round == 0 || best != GEMM_F32); round++) {
        alternate_passes(sets, 3);
        best = GEMM_F32;
        for (int d = GEMM_F32; d <= GEMM_F16; d++) {
            out->gflops[d] = sets[d] ? gemm_timing_gflops(sets[d]) : 0;
            if (d != GEMM_F32 && out->gflops[d] > TUNE_MARGIN * out->gflops[best])
                best = d;
        }
    }
    for (int d = GEMM_F32; d <= GEMM_F16; d++)
        gemm_timing_destroy(sets[d]);
    out->dtype = (gemm_dtype)best;
    snprintf(out->chosen, sizeof out->chosen, "%s", precision_name((gemm_dtype)best));
    out->measure_s = omp_get_wtime() - t0;
}

void precision_choose(const run_config *c, precision_choice *out)
{
    char key[1024], path[1024];
    bool cached = cache_wanted() && precision_cache_path(c, path, sizeof path) == 0;
    cache_key(c, key, sizeof key);
    if (cached && cache_read(path, key, out))
        return;
    measure(c, out);
    if (cached)
        cache_store(path, key, choice_object(out));
}

/* ---- choices between two options ---------------------------------------- */

/* How a choice between two options is cached and reported: the option name
 * ("kernel": "first" | "gemm"), the figures measured for each under
 * figures (left out where nothing was measured; past max they are damage),
 * and measure_s. */
typedef struct {
    const char *name, *options[2], *figures;
    double max;
} two_way;

static const two_way weight_grad_format = {"kernel", {"first", "gemm"}, "measured_gflops",
                                           CACHE_MAX_GFLOPS};
static const two_way attention_format = {"products", {"fp32", "bf16"}, "measured_ms",
                                         CACHE_MAX_SECONDS};

static cJSON *two_way_object(const two_way *f, bool second, const double figure[2],
                             double measure_s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, f->name, f->options[second]);
    cJSON *g = cJSON_AddObjectToObject(o, f->figures);
    for (int i = 0; i < 2 && figure[0] > 0; i++)
        cJSON_AddNumberToObject(g, f->options[i], figure[i]);
    cJSON_AddNumberToObject(o, "measure_s", measure_s);
    return o;
}

/* The choice cached at path for key; false when absent, damaged or another
 * key's (the outputs are then left as they were). */
static bool two_way_read(const two_way *f, const char *path, const char *key, bool *second,
                         double figure[2], double *measure_s)
{
    cJSON *o = cache_load(path, key);
    const char *option = cJSON_GetStringValue(cJSON_GetObjectItem(o, f->name));
    cJSON *g = cJSON_GetObjectItem(o, f->figures);
    double v[2], s;
    bool ok = option &&
              (strcmp(option, f->options[0]) == 0 || strcmp(option, f->options[1]) == 0) &&
              cJSON_IsObject(g) && cached_figure(g, f->options[0], f->max, true, &v[0]) &&
              cached_figure(g, f->options[1], f->max, true, &v[1]) &&
              cached_figure(o, "measure_s", CACHE_MAX_SECONDS, false, &s);
    if (ok) {
        *second = strcmp(option, f->options[1]) == 0;
        figure[0] = v[0], figure[1] = v[1], *measure_s = s;
    }
    cJSON_Delete(o);
    return ok;
}

/* ---- the weight gradients' kernel ---------------------------------------- */

/* The dtype whose products the weight gradients of c's precision run: a
 * 16-bit one without a native product here is widened to fp32. */
static gemm_dtype weight_grad_dtype(const run_config *c)
{
    gemm_dtype d = GEMM_F32;
    for (int i = GEMM_F32; i <= GEMM_F16; i++)
        if (dtype_precisions[i] == c->precision)
            d = (gemm_dtype)i;
    return gemm_native(d) ? d : GEMM_F32;
}

static void weight_grad_key(const run_config *c, char *buf, size_t n)
{
    char key[1024];
    cache_key(c, key, sizeof key);
    snprintf(buf, n, "%s;weight_grad;dtype=%s", key, precision_name(weight_grad_dtype(c)));
}

int weight_grad_cache_path(const run_config *c, char *buf, size_t n)
{
    char key[1100];
    weight_grad_key(c, key, sizeof key);
    return cache_file("weight-grad", key, buf, n);
}

/* The weight-gradient products of one step, the LM head's at the whole
 * vocabulary (its V decides the kernel's fate more than any other shape):
 * the count into s. */
static int weight_grad_products(const run_config *c, gemm_dtype dtype, gemm_shape *s)
{
    gemm_shape all[PRECISION_STEP_PRODUCTS];
    int n = 0, total = precision_step_products(c, dtype, timed_tokens(c), c->vocab_size, all);
    for (int i = 0; i < total; i++)
        if (all[i].trans_a)
            s[n++] = all[i];
    return n;
}

static void weight_grad_measure(const run_config *c, weight_grad_choice *out)
{
    const gemm_dtype dtype = weight_grad_dtype(c);
    const bool setting = gemm_trans_a_kernel();
    gemm_shape shapes[PRECISION_STEP_PRODUCTS];
    const int n = weight_grad_products(c, dtype, shapes);
    gemm_timing *sets[2];
    memset(out, 0, sizeof *out);
    double t0 = omp_get_wtime();
    for (int k = 0; k < 2; k++) {   /* [0] oneDNN's first choice, [1] its gemm kernel */
        gemm_set_trans_a_kernel(k);
        sets[k] = gemm_timing_create(dtype, shapes, n);
    }
    gemm_set_trans_a_kernel(setting);
    /* leaving oneDNN's first choice must hold over a second budget */
    for (int round = 0; round < 2 && sets[0] && sets[1] && (round == 0 || out->gemm_kernel);
         round++) {
        alternate_passes(sets, 2);
        for (int k = 0; k < 2; k++)
            out->gflops[k] = gemm_timing_gflops(sets[k]);
        out->gemm_kernel = out->gflops[1] > TUNE_KERNEL_MARGIN * out->gflops[0];
    }
    for (int k = 0; k < 2; k++)
        gemm_timing_destroy(sets[k]);
    out->measure_s = omp_get_wtime() - t0;
}

static cJSON *weight_grad_object(const weight_grad_choice *w)
{
    return two_way_object(&weight_grad_format, w->gemm_kernel, w->gflops, w->measure_s);
}

static bool weight_grad_read(const char *path, const char *key, weight_grad_choice *out)
{
    weight_grad_choice w = {.from_cache = true};
    if (!two_way_read(&weight_grad_format, path, key, &w.gemm_kernel, w.gflops, &w.measure_s))
        return false;
    *out = w;
    return true;
}

void weight_grad_choose(const run_config *c, weight_grad_choice *out)
{
    char key[1100], path[1024];
    bool cached = cache_wanted() && weight_grad_cache_path(c, path, sizeof path) == 0;
    weight_grad_key(c, key, sizeof key);
    if (cached && weight_grad_read(path, key, out))
        return;
    weight_grad_measure(c, out);
    if (cached)
        cache_store(path, key, weight_grad_object(out));
}

/* ---- bf16 training's attention products --------------------------------- */

static void attention_key(const run_config *c, char *buf, size_t n)
{
    char key[1024];
    cache_key(c, key, sizeof key);
    snprintf(buf, n, "%s;attention;T=%d;H=%d", key, c->seq_len, c->n_head);
}

int attention_cache_path(const run_config *c, char *buf, size_t n)
{
    char key[1100];
    attention_key(c, key, sizeof key);
    return cache_file("attention", key, buf, n);
}

/* One sequence of the run's length and head size with two heads a thread
 * (at most the model's): each thread runs what it runs in a step, on far
 * fewer heads. */
typedef struct {
    float *mem, *qkv, *out, *lse, *dout, *dqkv;
    attention_work work;
    int T, C, H;
} attention_bench;

static int attention_bench_open(attention_bench *b, const run_config *c)
{
    const int hs = c->n_embd / c->n_head, threads = omp_get_max_threads();
    b->T = c->seq_len;
    b->H = c->n_head < 2 * threads ? c->n_head : 2 * threads;
    b->C = b->H * hs;
    const size_t TC = (size_t)b->T * b->C;
    b->mem = malloc((8 * TC + (size_t)b->H * b->T) * sizeof(float));
    if (!b->mem || attention_work_init(&b->work, b->T, hs, threads) != 0) {
        free(b->mem);
        return -1;
    }
    b->qkv = b->mem, b->dqkv = b->qkv + 3 * TC, b->out = b->dqkv + 3 * TC;
    b->dout = b->out + TC, b->lse = b->dout + TC;
    uint32_t x = 12345;   /* values in [-1, 1): the time does not depend on them */
    for (size_t i = 0; i < 3 * TC; i++)
        b->qkv[i] = (float)((x = x * 1664525u + 1013904223u) >> 8) / (1 << 23) - 1.0f;
    for (size_t i = 0; i < TC; i++)
        b->dout[i] = b->qkv[i];
    return 0;
}

static void attention_bench_close(attention_bench *b)
{
    attention_work_free(&b->work);
    free(b->mem);
}

/* One forward and backward, in ms. */
static double attention_pass_ms(const attention_bench *b, bool bf16)
{
    const double t0 = omp_get_wtime();
    attention_forward(b->out, b->lse, b->qkv, 1, b->T, b->C, b->H, bf16, &b->work);
    attention_backward(b->dqkv, b->dout, b->qkv, b->out, b->lse, 1, b->T, b->C, b->H, bf16,
                       &b->work);
    return (omp_get_wtime() - t0) * 1e3;
}

static void attention_measure(const run_config *c, attention_choice *out)
{
    attention_bench b;
    memset(out, 0, sizeof *out);
    if (attention_bench_open(&b, c) != 0)
        return;   /* no memory to measure in: fp32 */
    const double t0 = omp_get_wtime();
    double best[2] = {INFINITY, INFINITY};
    /* leaving fp32 must hold over a second budget */
    for (int round = 0; round < 2 && (round == 0 || out->bf16); round++) {
        const double r0 = omp_get_wtime();
        for (int pass = 0; pass_due(pass, r0); pass++)   /* alternating, as alternate_passes */
            for (int k = 0; k < 2; k++)
                best[k] = fmin(best[k], attention_pass_ms(&b, k));
        out->bf16 = best[0] > TUNE_MARGIN * best[1];
    }
    out->ms[0] = best[0], out->ms[1] = best[1];
    out->measure_s = omp_get_wtime() - t0;
    attention_bench_close(&b);
}

static cJSON *attention_object(const attention_choice *a)
{
    return two_way_object(&attention_format, a->bf16, a->ms, a->measure_s);
}

/* A cached choice holds both times: a run without them measured nothing. */
static bool attention_read(const char *path, const char *key, attention_choice *out)
{
    attention_choice a = {.from_cache = true};
    if (!two_way_read(&attention_format, path, key, &a.bf16, a.ms, &a.measure_s) ||
        !(a.ms[0] > 0 && a.ms[1] > 0))
        return false;
    *out = a;
    return true;
}

void attention_choose(const run_config *c, attention_choice *out)
{
    char key[1100], path[1024];
    memset(out, 0, sizeof *out);
    if (c->precision != PRECISION_BF16 || !attention_bf16_native())
        return;
    bool cached = cache_wanted() && attention_cache_path(c, path, sizeof path) == 0;
    attention_key(c, key, sizeof key);
    if (cached && attention_read(path, key, out))
        return;
    attention_measure(c, out);
    if (cached && out->ms[0] > 0)
        cache_store(path, key, attention_object(out));
}

void autotune_event_json(const run_config *c, const precision_choice *pc,
                         const weight_grad_choice *w, const attention_choice *a, char *buf,
                         size_t n)
{
    cJSON *o;
    if (c->precision_auto) {
        o = choice_object(pc);
        cJSON_AddBoolToObject(o, "cached", pc->from_cache);
    } else {
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "precision", config_precision_name(c->precision));
    }
    cJSON *kernel = weight_grad_object(w);
    cJSON_AddBoolToObject(kernel, "cached", w->from_cache);
    cJSON_AddItemToObject(o, "weight_grad", kernel);
    if (a && a->ms[0] > 0) {
        cJSON *att = attention_object(a);
        cJSON_AddBoolToObject(att, "cached", a->from_cache);
        cJSON_AddItemToObject(o, "attention", att);
    }
    char *text = cJSON_PrintUnformatted(o);
    snprintf(buf, n, "%s", text ? text : "{}");
    free(text);
    cJSON_Delete(o);
}
