/* convert: fp32 <-> bf16.
 *
 * - every bf16 pattern widens to its bits << 16 and narrows back to itself
 *   (NaNs come back quiet), on every path;
 * - the scalar path against an independent reference that rounds in double
 *   by comparing distances to the two neighbouring bf16 values, on hand-picked
 *   patterns (ties, overflow, NaN payloads, denormals, signed zeros) and a few
 *   million random ones biased towards those classes;
 * - every SIMD path bit-identical to the scalar one on the same patterns;
 * - awkward lengths (tails, a partial last chunk) leave the bytes past n
 *   untouched; round_to_bf16 in place equals narrow-then-widen;
 * - the public entry points equal the active path;
 * - f32_to_bf16_pairs on every path equal to the bf16 pair layout's
 *   definition, computed value by value with the reference rounding, and
 *   f32_to_bf16_pairs_both equal to it for both copies;
 * - f32_all_finite finds one NaN or infinity at any position, not a large
 *   finite value, a denormal or a negative zero.
 * All comparisons are on bit patterns: NaN != NaN would hide errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/hash.h"
#include "kernels/convert.h"
#include "tests/test_util.h"

enum { NRANDOM = (1 << 22) + 13 };   /* odd, so every path ends on a partial vector */
#define GUARD16 0xA5A5u
#define GUARD32 0xA5A5A5A5u
enum { NGUARD = 40 };   /* guard values past n: more than one vector of any width */

static const size_t lengths[] = {0, 1, 7, 8, 9, 15, 16, 17, 33, 65537};
enum { NLENGTHS = sizeof lengths / sizeof lengths[0] };

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    assert_non_null(p);
    return p;
}

/* ---- independent reference ---- */

/* Nearest bf16 (8 significant bits, exponent range of fp32) to x, ties to the
 * even significand, found in double: the two neighbours on the bf16 grid
 * around |x| and the distance to each are exact in double.  |x| >= 2^128 (only
 * reachable by rounding up the max finite) is infinity, as in IEEE.  A NaN
 * keeps its sign and top payload bits and is made quiet, as convert.h says. */
static uint16_t ref_bf16(uint32_t bits)
{
    const float x = bits_f32(bits);
    if (isnan(x))
        return (uint16_t)((bits >> 16) | 0x40);
    if (isinf(x))
        return (uint16_t)(bits >> 16);
    const double a = fabs((double)x);
    int e;
    frexp(a, &e);   /* a in [2^(e-1), 2^e) */
    const double ulp = ldexp(1.0, (a < 0x1p-126 ? -126 : e - 1) - 7);
    const double lo = floor(a / ulp) * ulp, hi = lo + ulp;
    const double dlo = a - lo, dhi = hi - a;
    double r = dlo < dhi ? lo : dhi < dlo ? hi : fmod(lo / ulp, 2.0) == 0 ? lo : hi;
    if (r >= 0x1p128)
        r = INFINITY;
    const uint32_t rb = f32_bits((float)copysign(r, x));
    assert_int_equal(rb & 0xFFFF, 0);   /* the reference itself landed on the bf16 grid */
    return (uint16_t)(rb >> 16);
}

/* ---- test patterns ---- */

/* Hand-picked: signed zeros, ties both ways, just off ties, the overflow
 * edge, infinities, quiet and signalling NaNs, denormals. */
static const uint32_t special[] = {
    0x00000000, 0x80000000, 0x3F800000, 0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001,
    0x3F80FFFF, 0xBF808000, 0xBF818000, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F8000, 0x7F7F7FFF,
    0x7F7E8000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001,
    0x7F810000, 0x7FFFFFFF, 0xFFFFFFFF, 0x00000001, 0x80000001, 0x00008000, 0x00018000,
    0x80008000, 0x007FFFFF, 0x807FFFFF, 0x007F8000, 0x00800000, 0x0080FFFF,
};
enum { NSPECIAL = sizeof special / sizeof special[0] };

/* Random 32-bit patterns, most of them pushed into an awkward class: low
 * half at or next to a tie, denormal, inf/NaN exponent, near overflow. */
static uint32_t random_pattern(uint64_t *s)
{
    static const uint32_t lows[] = {0x8000, 0x7FFF, 0x8001, 0x0000, 0xFFFF};
    const uint64_t r = splitmix64(s);
    uint32_t b = (uint32_t)r;
    const uint32_t low = lows[(r >> 32) % 5];
    switch ((r >> 40) % 8) {
    case 1: return (b & 0xFFFF0000u) | low;
    case 2: return b & 0x807FFFFFu;                        /* denormal or zero */
    case 3: return b | 0x7F800000u;                        /* NaN (or inf) */
    case 4: return (b & 0x80000000u) | 0x7F800000u | ((r >> 48) & 1);   /* inf or NaN 1 */
    case 5: return (b & 0x807F0000u) | 0x7F000000u | low;  /* exponent 254, ties */
    case 6: return (b & 0x807F0000u) | low;                /* denormal ties */
    default: return b;
    }
}

static float *pattern_floats(size_t n, uint64_t seed)
{
    float *x = xmalloc(n * sizeof *x);
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        const uint32_t b = i < NSPECIAL ? special[i] : random_pattern(&s);
        memcpy(x + i, &b, sizeof b);
    }
    return x;
}

/* ---- comparison helpers: report the first differing element ---- */

static int same_u16(const char *what, const uint16_t *got, const uint16_t *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i]) {
            fprintf(stderr, "%s: element %zu: got 0x%04x want 0x%04x\n", what, i, got[i],
                    want[i]);
            return 0;
        }
    return 1;
}

static int same_f32_bits(const char *what, const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (f32_bits(got[i]) != f32_bits(want[i])) {
            fprintf(stderr, "%s: element %zu: got 0x%08x want 0x%08x\n", what, i,
                    f32_bits(got[i]), f32_bits(want[i]));
            return 0;
        }
    return 1;
}

static int supported_or_skip(isa_t isa)
{
    return test_isa_runs(isa, "convert");
}

/* ---- tests ---- */

/* The reference against values worked out by hand, so that a wrong reference
 * cannot silently agree with a wrong kernel. */
static void test_reference_known_values(void **state)
{
    static const uint32_t in[][2] = {
        {0x3F808000, 0x3F80}, {0x3F818000, 0x3F82}, {0x3F808001, 0x3F81}, {0x3F807FFF, 0x3F80},
        {0xBF818000, 0xBF82}, {0x7F7FFFFF, 0x7F80}, {0x7F7F7FFF, 0x7F7F}, {0x7F7E8000, 0x7F7E},
        {0x7F800000, 0x7F80}, {0xFF800000, 0xFF80}, {0x7F800001, 0x7FC0}, {0xFF810000, 0xFFC1},
        {0x80000000, 0x8000}, {0x00008000, 0x0000}, {0x00018000, 0x0002}, {0x80018001, 0x8002},
        {0x007FFFFF, 0x0080}, {0x7FFFFFFF, 0x7FFF},
    };
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        uint16_t got;
        const float x = bits_f32(in[i][0]);
        f32_to_bf16_isa(ISA_SCALAR, &got, &x, 1);
        print_message("0x%08x -> 0x%04x\n", in[i][0], got);
        assert_int_equal(ref_bf16(in[i][0]), in[i][1]);
        assert_int_equal(got, in[i][1]);
    }
}

/* All 65536 bf16 patterns: widen to bits << 16, narrow back to themselves
 * (a signalling NaN comes back quiet), on every path. */
static void test_all_bf16_round_trip(void **state)
{
    enum { NB = 1 << 16 };
    uint16_t *h = xmalloc(NB * sizeof *h), *back = xmalloc(NB * sizeof *back),
             *want = xmalloc(NB * sizeof *want);
    float *f = xmalloc(NB * sizeof *f), *fwant = xmalloc(NB * sizeof *fwant);
    for (uint32_t i = 0; i < NB; i++) {
        h[i] = (uint16_t)i;
        fwant[i] = bits_f32(i << 16);
        want[i] = isnan(fwant[i]) ? (uint16_t)(i | 0x40) : (uint16_t)i;
    }
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa++) {
        if (!supported_or_skip(isa))
            continue;
        memset(f, 0, NB * sizeof *f);
        memset(back, 0, NB * sizeof *back);
        bf16_to_f32_isa(isa, f, h, NB);
        f32_to_bf16_isa(isa, back, f, NB);
        print_message("%s\n", cpu_isa_name(isa));
        assert_true(same_f32_bits("widen", f, fwant, NB));
        assert_true(same_u16("round trip", back, want, NB));
    }
    for (uint32_t i = 0; i < NB; i++)   /* the one-value form */
        f[i] = bf16_to_f32_one((uint16_t)i);
    assert_true(same_f32_bits("widen one", f, fwant, NB));
    free(h), free(back), free(want), free(f), free(fwant);
}

static void test_scalar_vs_reference(void **state)
{
    float *x = pattern_floats(NRANDOM, 1);
    uint16_t *got = xmalloc(NRANDOM * sizeof *got), *want = xmalloc(NRANDOM * sizeof *want);
    f32_to_bf16_isa(ISA_SCALAR, got, x, NRANDOM);
    for (size_t i = 0; i < NRANDOM; i++)
        want[i] = ref_bf16(f32_bits(x[i]));
    assert_true(same_u16("scalar vs reference", got, want, NRANDOM));
    free(x), free(got), free(want);
}

/* Each SIMD path bit-identical to the scalar one: narrow and in-place round
 * on the biased patterns, widen on random bf16 patterns. */
static void test_simd_vs_scalar(void **state)
{
    float *x = pattern_floats(NRANDOM, 2), *r = xmalloc(NRANDOM * sizeof *r),
          *rwant = xmalloc(NRANDOM * sizeof *rwant), *w = xmalloc(NRANDOM * sizeof *w),
          *wwant = xmalloc(NRANDOM * sizeof *wwant);
    uint16_t *h = xmalloc(NRANDOM * sizeof *h), *hwant = xmalloc(NRANDOM * sizeof *hwant),
             *hin = xmalloc(NRANDOM * sizeof *hin);
    uint64_t s = 3;
    for (size_t i = 0; i < NRANDOM; i++)
        hin[i] = (uint16_t)splitmix64(&s);
    f32_to_bf16_isa(ISA_SCALAR, hwant, x, NRANDOM);
    bf16_to_f32_isa(ISA_SCALAR, wwant, hin, NRANDOM);
    memcpy(rwant, x, NRANDOM * sizeof *x);
    round_to_bf16_isa(ISA_SCALAR, rwant, NRANDOM);
    for (isa_t isa = ISA_AVX2; isa < ISA_COUNT; isa++) {
        if (!supported_or_skip(isa))
            continue;
        print_message("%s\n", cpu_isa_name(isa));
        f32_to_bf16_isa(isa, h, x, NRANDOM);
        assert_true(same_u16("f32_to_bf16", h, hwant, NRANDOM));
        bf16_to_f32_isa(isa, w, hin, NRANDOM);
        assert_true(same_f32_bits("bf16_to_f32", w, wwant, NRANDOM));
        memcpy(r, x, NRANDOM * sizeof *x);
        round_to_bf16_isa(isa, r, NRANDOM);
        assert_true(same_f32_bits("round_to_bf16", r, rwant, NRANDOM));
    }
    free(x), free(r), free(rwant), free(w), free(wwant), free(h), free(hwant), free(hin);
}

/* One length on one path: results equal the reference, nothing past n is
 * written.  Inputs are exactly n long, so ASan catches reads past the end
 * (except through masked vector loads, which cannot fault anyway). */
static void check_length(isa_t isa, size_t n, uint64_t seed)
{
    float *x = pattern_floats(n, seed), *w = xmalloc((n + NGUARD) * sizeof *w),
          *r = xmalloc((n + NGUARD) * sizeof *r);
    uint16_t *h = xmalloc((n + NGUARD) * sizeof *h), *want = xmalloc(n * sizeof *want);
    for (size_t i = 0; i < n + NGUARD; i++) {
        h[i] = GUARD16;
        memcpy(w + i, &(uint32_t){GUARD32}, sizeof(uint32_t));
        memcpy(r + i, i < n ? (const void *)(x + i) : (const void *)&(uint32_t){GUARD32},
               sizeof(uint32_t));
    }
    for (size_t i = 0; i < n; i++)
        want[i] = ref_bf16(f32_bits(x[i]));
    f32_to_bf16_isa(isa, h, x, n);
    bf16_to_f32_isa(isa, w, h, n);
    round_to_bf16_isa(isa, r, n);
    assert_true(same_u16("f32_to_bf16", h, want, n));
    for (size_t i = 0; i < n; i++)   /* widening is exact: the top half is the bf16 */
        assert_int_equal(f32_bits(w[i]), (uint32_t)want[i] << 16);
    assert_true(same_f32_bits("round_to_bf16 in place", r, w, n));
    for (size_t i = n; i < n + NGUARD; i++) {
        assert_int_equal(h[i], GUARD16);
        assert_int_equal(f32_bits(w[i]), GUARD32);
        assert_int_equal(f32_bits(r[i]), GUARD32);
    }
    free(x), free(w), free(r), free(h), free(want);
}

static void test_awkward_lengths(void **state)
{
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa++) {
        if (!supported_or_skip(isa))
            continue;
        for (int k = 0; k < NLENGTHS; k++) {
            print_message("%s n=%zu\n", cpu_isa_name(isa), lengths[k]);
            check_length(isa, lengths[k], 100 + k);
        }
    }
}

/* An unaligned start (one value in) on top of an awkward length. */
static void test_unaligned(void **state)
{
    enum { NU = 1000 };
    float *x = pattern_floats(NU + 1, 7), *r = xmalloc((NU + 1) * sizeof *r);
    uint16_t *h = xmalloc((NU + 1) * sizeof *h), *hwant = xmalloc(NU * sizeof *hwant);
    float *rwant = xmalloc(NU * sizeof *rwant);
    f32_to_bf16_isa(ISA_SCALAR, hwant, x + 1, NU);
    bf16_to_f32_isa(ISA_SCALAR, rwant, hwant, NU);
    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa++) {
        if (!supported_or_skip(isa))
            continue;
        print_message("%s\n", cpu_isa_name(isa));
        f32_to_bf16_isa(isa, h + 1, x + 1, NU);
        assert_true(same_u16("f32_to_bf16", h + 1, hwant, NU));
        memcpy(r, x, (NU + 1) * sizeof *r);
        round_to_bf16_isa(isa, r + 1, NU);
        assert_true(same_f32_bits("round_to_bf16", r + 1, rwant, NU));
        assert_int_equal(f32_bits(r[0]), f32_bits(x[0]));   /* the value before is untouched */
    }
    free(x), free(r), free(h), free(hwant), free(rwant);
}

static void test_public_dispatch(void **state)
{
    enum { NP = 100003 };   /* big enough to go parallel */
    const isa_t isa = cpu_isa();
    print_message("active path: %s\n", cpu_isa_name(isa));
    float *x = pattern_floats(NP, 9), *w = xmalloc(NP * sizeof *w),
          *wwant = xmalloc(NP * sizeof *wwant), *r = xmalloc(NP * sizeof *r);
    uint16_t *h = xmalloc(NP * sizeof *h), *hwant = xmalloc(NP * sizeof *hwant);
    f32_to_bf16(h, x, NP);
    f32_to_bf16_isa(isa, hwant, x, NP);
    assert_true(same_u16("f32_to_bf16", h, hwant, NP));
    bf16_to_f32(w, h, NP);
    bf16_to_f32_isa(isa, wwant, h, NP);
    assert_true(same_f32_bits("bf16_to_f32", w, wwant, NP));
    memcpy(r, x, NP * sizeof *r);
    round_to_bf16(r, NP);
    assert_true(same_f32_bits("round_to_bf16", r, wwant, NP));
    free(x), free(w), free(wwant), free(r), free(h), free(hwant);
}

/* ---- fp16 ---- */

static float f16_value_reference(uint16_t h)   /* by its definition, in double */
{
    int e = (h >> 10) & 0x1F, m = h & 0x3FF;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return (float)((h & 0x8000) ? -v : v);
}

static void test_all_finite(void **state)
{
    (void)state;
    enum { N = 37 };
    float x[N];
    for (int i = 0; i < N; i++)
        x[i] = (float)(i - 18) * 1e3f;
    x[3] = FLT_MAX;
    x[4] = -FLT_MAX;
    x[5] = 1e-45f;   /* the smallest denormal */
    x[6] = -0.0f;
    assert_true(f32_all_finite(x, N));
    assert_true(f32_all_finite(x, 0));
    const float bad[] = {NAN, -NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 4; k++) {
        for (int at = 0; at < N; at++) {
            float keep = x[at];
            x[at] = bad[k];
            assert_false(f32_all_finite(x, N));
            assert_int_equal(f32_all_finite(x, (size_t)at), 1);   /* before it: all finite */
            x[at] = keep;
        }
    }
}

static void test_f16_known_values(void **state)
{
    (void)state;
    const struct { float x; uint16_t h; } cases[] = {
        {1.0f, 0x3C00},           {-2.0f, 0xC000},          {65504.0f, 0x7BFF},
        {65519.99f, 0x7BFF},      {65520.0f, 0x7C00},       {1e9f, 0x7C00},
        {0x1p-14f, 0x0400},       {0x1p-24f, 0x0001},       {0x1p-25f, 0x0000},
        {0x1.8p-25f, 0x0001},     {0x1.8p-24f, 0x0002},     {0x1.002p0f, 0x3C00},
        {0x1.006p0f, 0x3C02},     {-0.0f, 0x8000},          {0x1p-30f, 0x0000},
    };
    for (isa_t isa = 0; isa < ISA_COUNT; isa++) {
        if (!test_isa_runs(isa, "convert"))
            continue;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            uint16_t h;
            f32_to_f16_isa(isa, &h, &cases[i].x, 1);
            if (h != cases[i].h)
                fprintf(stderr, "%s: %a -> %04x, want %04x\n", cpu_isa_name(isa), cases[i].x, h,
                        cases[i].h);
            assert_int_equal(h, cases[i].h);
        }
    }
}

/* Every fp16 value widens exactly (and identically on every path); every
 * finite one narrows back to itself. */
static void test_f16_all_values(void **state)
{
    (void)state;
    enum { N = 65536 };
    uint16_t *h = malloc(N * sizeof *h), *back = malloc(N * sizeof *back);
    float *f = malloc(N * sizeof *f), *ref = malloc(N * sizeof *ref);
    for (int i = 0; i < N; i++)
        h[i] = (uint16_t)i;
    f16_to_f32_isa(ISA_SCALAR, ref, h, N);
    for (int i = 0; i < N; i++)
        if (((i >> 10) & 0x1F) != 0x1F)
            assert_true(ref[i] == f16_value_reference((uint16_t)i) &&
                        !!signbit(ref[i]) == !!(i & 0x8000));
    for (isa_t isa = 0; isa < ISA_COUNT; isa++) {
        if (!test_isa_runs(isa, "convert"))
            continue;
        f16_to_f32_isa(isa, f, h, N);
        assert_memory_equal(f, ref, N * sizeof *f);
        f32_to_f16_isa(isa, back, f, N);
        for (int i = 0; i < N; i++) {
            bool nan = ((i >> 10) & 0x1F) == 0x1F && (i & 0x3FF);
            assert_int_equal(back[i], nan ? (i | 0x200) : i);
        }
    }
    for (int i = 0; i < N; i++) {   /* the one-value forms give the scalar path's bits */
        const float one = f16_to_f32_one((uint16_t)i);
        assert_memory_equal(&one, &ref[i], sizeof one);
        bool nan = ((i >> 10) & 0x1F) == 0x1F && (i & 0x3FF);
        assert_int_equal(f32_to_f16_one(ref[i]), nan ? (i | 0x200) : i);
    }
    free(h), free(back), free(f), free(ref);
}

/* Random fp32 patterns (all classes): every path narrows to the scalar bits,
 * and the scalar result is the nearest fp16 (ties to even) by distance. */
static void test_f16_paths_match_scalar(void **state)
{
    (void)state;
    enum { N = 1 << 20 };
    float *x = malloc(N * sizeof *x);
    uint16_t *want = malloc(N * sizeof *want), *got = malloc(N * sizeof *got);
    uint64_t r = 12345;
    for (int i = 0; i < N; i++) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        uint32_t b = (uint32_t)(r >> 32);
        if (i & 1)   /* half of them in or near fp16's range, where rounding matters */
            b = (b & 0x80FFFFFFu) | ((uint32_t)(100 + (b >> 24) % 45) << 23);
        memcpy(&x[i], &b, sizeof b);
    }
    f32_to_f16_isa(ISA_SCALAR, want, x, N);
    for (int i = 0; i < N; i += 7) {   /* nearest representable, by distance */
        if (isnan(x[i]) || fabsf(x[i]) >= 65520.0f)
            continue;
        double v = f16_value_reference(want[i]), d = fabs(v - x[i]);
        uint16_t up = (uint16_t)(want[i] + 1), down = (uint16_t)(want[i] - 1);
        if ((want[i] & 0x7FFF) != 0x7BFF)
            assert_true(d <= fabs(f16_value_reference(up) - x[i]));
        if ((want[i] & 0x7FFF) != 0)
            assert_true(d <= fabs(f16_value_reference(down) - x[i]));
    }
    for (isa_t isa = 1; isa < ISA_COUNT; isa++) {
        if (!test_isa_runs(isa, "convert"))
            continue;
        f32_to_f16_isa(isa, got, x, N);
        assert_memory_equal(got, want, N * sizeof *got);
    }
    free(x), free(want), free(got);
}

/* ---- the bf16 pair layout ---- */

/* The layout's definition, value by value: element (k, n) of B at block
 * (k / 2a, n / n_blk), pair (k % 2a) / 2, word n % n_blk, half k % 2;
 * every other value zero.  Rounded by the independent reference. */
static void pairs_reference(const bf16_pair_layout *l, uint16_t *dst, size_t len, const float *B,
                            size_t ldb, bool trans)
{
    memset(dst, 0, len * sizeof *dst);
    const int rows = 2 * l->a_blk;
    for (int k = 0; k < l->K; k++)
        for (int n = 0; n < l->N; n++) {
            const size_t at = (size_t)(k / rows) * l->kb_stride + (size_t)(n / l->n_blk) * l->nb_stride +
                              (size_t)(k % rows / 2) * l->n_blk * 2 + (size_t)(n % l->n_blk) * 2 + k % 2;
            assert_true(at < len);
            dst[at] = ref_bf16(f32_bits(trans ? B[(size_t)n * ldb + k] : B[(size_t)k * ldb + n]));
        }
}

/* K x N in blocks of 2 a_blk x n_blk; k_major: blocks along K adjacent (as
 * oneDNN lays them out), else blocks along N. */
static bf16_pair_layout pair_layout(int K, int N, int a_blk, int n_blk, bool k_major)
{
    bf16_pair_layout l = {.K = K, .N = N, .a_blk = a_blk, .n_blk = n_blk,
                          .k_blocks = (K + 2 * a_blk - 1) / (2 * a_blk),
                          .n_blocks = (N + n_blk - 1) / n_blk};
    const size_t block = (size_t)2 * a_blk * n_blk;
    l.kb_stride = k_major ? block : block * l.n_blocks;
    l.nb_stride = k_major ? block * l.k_blocks : block;
    return l;
}

/* Every path against the definition: oneDNN's block shapes and others
 * (narrower than a vector, or not a multiple of one), sizes with partial blocks
 * in K, N or both, a row stride wider than the row, both storage orders,
 * both block orders, awkward patterns (ties, NaNs, denormals); the bytes
 * past the layout untouched. */
static void test_pair_layout(void **state)
{
    static const int blocks[][2] = {{16, 64}, {16, 32}, {16, 16}, {32, 16}, {8, 24}, {32, 4}, {3, 5}};
    static const int sizes[][2] = {{1, 1}, {32, 64}, {37, 70}, {64, 130}, {100, 17}, {33, 1}};
    enum { GUARD = 64 };
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++)
        for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++)
            for (int trans = 0; trans < 2; trans++)
                for (int k_major = 0; k_major < 2; k_major++) {
                    const int K = sizes[z][0], N = sizes[z][1];
                    const bf16_pair_layout l = pair_layout(K, N, blocks[b][0], blocks[b][1], k_major);
                    const size_t ldb = (size_t)(trans ? K : N) + 3;
                    const size_t len = (size_t)l.k_blocks * l.n_blocks * 2 * l.a_blk * l.n_blk;
                    float *B = pattern_floats(ldb * (trans ? N : K), 7 + z);
                    uint16_t *want = xmalloc(len * sizeof *want);
                    uint16_t *got = xmalloc((len + GUARD) * sizeof *got);
                    pairs_reference(&l, want, len, B, ldb, trans);
                    for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa++) {
                        if (!cpu_isa_supported(isa))
                            continue;   /* said once, by the other tests */
                        for (size_t i = 0; i < len + GUARD; i++)
                            got[i] = GUARD16;
                        f32_to_bf16_pairs_isa(isa, &l, got, B, ldb, trans);
                        char what[96];
                        snprintf(what, sizeof what, "%s %dx%d blocks %dx%d%s%s", cpu_isa_name(isa),
                                 K, N, l.a_blk, l.n_blk, trans ? " trans" : "",
                                 k_major ? " k-major" : "");
                        assert_true(same_u16(what, got, want, len));
                        for (size_t i = len; i < len + GUARD; i++)
                            assert_int_equal(got[i], GUARD16);
                    }
                    free(B), free(want), free(got);
                }
}

/* Both copies from one read equal each packed on its own by the reference:
 * block shapes whose bands span several blocks of one layout, partial
 * blocks, a row stride wider than the row. */
static void test_pair_layout_both(void **state)
{
    static const int blocks[][4] = {{16, 64, 16, 64}, {16, 32, 16, 64}, {16, 16, 32, 16},
                                    {8, 24, 16, 64}};
    static const int sizes[][2] = {{1, 1}, {64, 64}, {37, 70}, {130, 100}, {200, 17}};
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++)
        for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
            const int K = sizes[z][0], N = sizes[z][1];
            const bf16_pair_layout l = pair_layout(K, N, blocks[b][0], blocks[b][1], true);
            const bf16_pair_layout lt = pair_layout(N, K, blocks[b][2], blocks[b][3], true);
            const size_t ldb = (size_t)N + 5;
            const size_t len = (size_t)l.k_blocks * l.n_blocks * 2 * l.a_blk * l.n_blk;
            const size_t len_t = (size_t)lt.k_blocks * lt.n_blocks * 2 * lt.a_blk * lt.n_blk;
            float *B = pattern_floats(ldb * K, 11 + z);
            uint16_t *want = xmalloc(len * sizeof *want), *want_t = xmalloc(len_t * sizeof *want_t);
            uint16_t *got = xmalloc(len * sizeof *got), *got_t = xmalloc(len_t * sizeof *got_t);
            pairs_reference(&l, want, len, B, ldb, false);
            pairs_reference(&lt, want_t, len_t, B, ldb, true);
            for (isa_t isa = ISA_SCALAR; isa < ISA_COUNT; isa++) {
                if (!cpu_isa_supported(isa))
                    continue;
                memset(got, 0xA5, len * sizeof *got);
                memset(got_t, 0xA5, len_t * sizeof *got_t);
                f32_to_bf16_pairs_both_isa(isa, &l, got, &lt, got_t, B, ldb);
                char what[96];
                snprintf(what, sizeof what, "%s both %dx%d blocks %dx%d / %dx%d", cpu_isa_name(isa),
                         K, N, l.a_blk, l.n_blk, lt.a_blk, lt.n_blk);
                assert_true(same_u16(what, got, want, len));
                assert_true(same_u16(what, got_t, want_t, len_t));
            }
            free(B), free(want), free(want_t), free(got), free(got_t);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_known_values),
        cmocka_unit_test(test_all_bf16_round_trip),
        cmocka_unit_test(test_scalar_vs_reference),
        cmocka_unit_test(test_simd_vs_scalar),
        cmocka_unit_test(test_awkward_lengths),
        cmocka_unit_test(test_unaligned),
        cmocka_unit_test(test_public_dispatch),
        cmocka_unit_test(test_all_finite),
        cmocka_unit_test(test_f16_known_values),
        cmocka_unit_test(test_f16_all_values),
        cmocka_unit_test(test_f16_paths_match_scalar),
        cmocka_unit_test(test_pair_layout),
        cmocka_unit_test(test_pair_layout_both),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
