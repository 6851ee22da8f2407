/* gemm: every transpose combination, bias and accumulate, against the
 * double-precision reference; strided (ld > cols) operands; cache reuse;
 * packed weights and views of bf16mm's layout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <omp.h>

#include "kernels/bf16mm.h"
#include "kernels/convert.h"
#include "kernels/cpu.h"
#include "kernels/gemm.h"
#include "tests/test_util.h"

static void check_case(bool ta, bool tb, int M, int N, int K, bool bias, bool acc, int pad)
{
    int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb,
           nc = (size_t)M * ldc;
    float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *b = malloc(N * sizeof *b);
    float *C = malloc(nc * sizeof *C), *R = malloc(nc * sizeof *R);
    test_fill(A, na, 1, 1.0f);
    test_fill(B, nb, 2, 1.0f);
    test_fill(b, N, 3, 1.0f);
    test_fill(C, nc, 4, 1.0f);
    memcpy(R, C, nc * sizeof *C);
    gemm_f32(ta, tb, M, N, K, A, lda, B, ldb, bias ? b : NULL, acc, C, ldc);
    gemm_f32_ref(ta, tb, M, N, K, A, lda, B, ldb, bias ? b : NULL, acc, R, ldc);
    char what[96];
    snprintf(what, sizeof what, "gemm ta=%d tb=%d %dx%dx%d bias=%d acc=%d pad=%d", ta, tb, M, N,
             K, bias, acc, pad);
    /* fp32 accumulation over K terms of size ~1: error grows like sqrt(K) eps */
    assert_true(test_close(what, C, R, nc, 1e-4f * K / 64 + 1e-5f, 1e-5f));
    free(A), free(B), free(b), free(C), free(R);
}

static void test_all_variants(void **state)
{
    (void)state;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int bias = 0; bias < 2; bias++)
                for (int acc = 0; acc < 2; acc++) {
                    check_case(ta, tb, 37, 53, 29, bias, acc, 0);
                    check_case(ta, tb, 64, 96, 128, bias, acc, 3);
                }
}

static void test_model_shapes(void **state)
{
    (void)state;
    check_case(false, false, 256, 3 * 96, 96, true, false, 0);   /* qkv projection */
    check_case(false, true, 256, 96, 3 * 96, false, true, 0);    /* dinp = dout W^T */
    check_case(true, false, 96, 3 * 96, 256, false, true, 0);    /* dW += inp^T dout */
    check_case(false, true, 128, 1000, 96, false, false, 0);     /* logits = x wte^T */
}

static void test_cache_reuse_gives_same_result(void **state)
{
    (void)state;
    for (int rep = 0; rep < 3; rep++)
        check_case(false, false, 31, 17, 45, true, true, 1);
    gemm_release();
    check_case(false, false, 31, 17, 45, true, true, 1);   /* works again after release */
}

/* bf16 operands: compare with the double reference on the same bf16-rounded
 * values, so the only difference left is fp32 accumulation order. */
static void check_bf16_case(bool ta, bool tb, int M, int N, int K, bool bias, bool acc)
{
    int lda = ta ? M : K, ldb = tb ? K : N, ldc = N;
    size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
    float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *b = malloc(N * sizeof *b);
    float *C = malloc(nc * sizeof *C), *R = malloc(nc * sizeof *R);
    uint16_t *Ah = malloc(na * sizeof *Ah), *Bh = malloc(nb * sizeof *Bh);
    test_fill(A, na, 11, 1.0f);
    test_fill(B, nb, 12, 1.0f);
    test_fill(b, N, 13, 1.0f);
    test_fill(C, nc, 14, 1.0f);
    memcpy(R, C, nc * sizeof *C);
    f32_to_bf16(Ah, A, na);
    f32_to_bf16(Bh, B, nb);
    round_to_bf16(A, na);
    round_to_bf16(B, nb);
    gemm(GEMM_BF16, ta, tb, M, N, K, Ah, lda, Bh, ldb, bias ? b : NULL, acc, C, ldc);
    gemm_f32_ref(ta, tb, M, N, K, A, lda, B, ldb, bias ? b : NULL, acc, R, ldc);
    assert_true(test_close("gemm bf16", C, R, nc, 1e-4f * K / 64 + 1e-5f, 1e-5f));
    free(A), free(B), free(b), free(C), free(R), free(Ah), free(Bh);
}

static void bf16_all_variants(void)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int acc = 0; acc < 2; acc++)
                check_bf16_case(ta, tb, 33, 47, 64, acc, acc);
    check_bf16_case(false, true, 128, 1000, 96, false, false);
}

/* Packed weights: C = A @ W with W packed from an fp32 master stored as
 * W[K,N] or W^T[N,K] (with padding), against the reference on the values the
 * dtype keeps.  A is given in the dtype. */
static void check_packed_case(gemm_dtype dt, bool tb, int M, int N, int K, bool bias, bool acc)
{
    int ldb = (tb ? K : N) + 5;
    size_t na = (size_t)M * K, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * N;
    float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B), *b = malloc(N * sizeof *b);
    float *C = malloc(nc * sizeof *C), *R = malloc(nc * sizeof *R);
    uint16_t *Ah = malloc(na * sizeof *Ah);
    test_fill(A, na, 21, 1.0f);
    test_fill(B, nb, 22, 1.0f);
    test_fill(b, N, 23, 1.0f);
    test_fill(C, nc, 24, 1.0f);
    memcpy(R, C, nc * sizeof *C);
    gemm_weights *w = gemm_weights_create(dt, tb, K, N, ldb);
    assert_non_null(w);
    gemm_weights_pack(w, B);
    const void *a = A;
    if (dt != GEMM_F32) {   /* the reference sees the values the products see */
        (dt == GEMM_F16 ? f32_to_f16 : f32_to_bf16)(Ah, A, na);
        (dt == GEMM_F16 ? f16_to_f32 : bf16_to_f32)(A, Ah, na);
        for (size_t i = 0; i < nb; i++) {
            uint16_t h;
            (dt == GEMM_F16 ? f32_to_f16 : f32_to_bf16)(&h, &B[i], 1);
            (dt == GEMM_F16 ? f16_to_f32 : bf16_to_f32)(&B[i], &h, 1);
        }
        a = Ah;
    }
    assert_true(gemm_weights_bytes(w) >= (size_t)K * N * (dt == GEMM_F32 ? 4 : 2));
    gemm_packed(w, M, 1.0f, a, K, bias ? b : NULL, acc, C, N);
    gemm_f32_ref(false, tb, M, N, K, A, K, B, ldb, bias ? b : NULL, acc, R, N);
    char what[96];
    snprintf(what, sizeof what, "packed dt=%d tb=%d %dx%dx%d bias=%d acc=%d", dt, tb, M, N, K,
             bias, acc);
    assert_true(test_close(what, C, R, nc, 1e-4f * K / 64 + 1e-5f, 1e-5f));
    gemm_weights_destroy(w);
    free(A), free(B), free(b), free(C), free(R), free(Ah);
}

static void packed_all_variants(void)
{
    static const gemm_dtype dts[] = {GEMM_F32, GEMM_BF16, GEMM_F16};
    for (int d = 0; d < 3; d++)
        for (int tb = 0; tb < 2; tb++)
            for (int acc = 0; acc < 2; acc++) {
                check_packed_case(dts[d], tb, 33, 47, 64, acc, acc);
                check_packed_case(dts[d], tb, 1, 96, 80, !acc, acc);   /* decode-sized M */
            }
}

/* The weight-gradient form on oneDNN's gemm kernel (gemm_set_trans_a_kernel)
 * against the reference, fp32 and bf16 (native or widened). */
static void test_trans_a_gemm_kernel(void **state)
{
    (void)state;
    gemm_set_trans_a_kernel(true);
    for (int acc = 0; acc < 2; acc++) {
        check_case(true, false, 37, 53, 29, false, acc, 0);
        check_case(true, false, 67, 96, 128, false, acc, 3);   /* odd M, as an LM head's V */
        check_case(true, true, 64, 40, 33, true, acc, 1);
        check_bf16_case(true, false, 67, 96, 128, false, acc);
    }
    gemm_set_trans_a_kernel(false);
}

/* Weight gradients with a long K (the tokens) on more threads than the
 * product has column blocks: oneDNN then splits K among the threads and
 * sums their parts in a last step (its brgemm kernels' parallel reduction,
 * its gemm kernel's K partition), and the accumulation into C must
 * survive that.  A CPU with a few cores runs the 16 threads in turn. */
static void test_trans_a_long_k_many_threads(void **state)
{
    (void)state;
    const int threads = omp_get_max_threads();
    omp_set_num_threads(16);
    gemm_release();   /* oneDNN plans each product for the threads at its creation */
    for (int kernel = 0; kernel < 2; kernel++) {
        gemm_set_trans_a_kernel(kernel);
        for (int acc = 0; acc < 2; acc++) {
            check_case(true, false, 96, 288, 2048, false, acc, 0);
            check_bf16_case(true, false, 96, 288, 2048, false, acc);
        }
    }
    gemm_set_trans_a_kernel(false);
    gemm_release();
    omp_set_num_threads(threads);
}

static void test_packed_weights(void **state)
{
    (void)state;
    packed_all_variants();
}

static void test_packed_weights_widened(void **state)
{
    (void)state;
    setenv("GPT_BF16_EMULATE", "1", 1);
    gemm_release();
    packed_all_variants();
    unsetenv("GPT_BF16_EMULATE");
    gemm_release();
}

/* gemm_weights_pack writes the bf16 pair layouts itself: the same bytes as
 * oneDNN's reorder into the layout oneDNN chose (padding included), for
 * both storage orders and shapes with partial blocks, and so does
 * gemm_weights_pack_pair for a copy and its transpose's; other dtypes take
 * the reorder either way. */
static void check_pack_case(gemm_dtype dt, bool tb, int K, int N)
{
    const size_t bytes = gemm_weights_size(dt, K, N);
    if (bytes == 0)
        return;   /* no native product: nothing packed in oneDNN's layout */
    const int ld = (tb ? K : N) + 5;
    float *B = malloc((size_t)ld * (tb ? N : K) * sizeof *B);
    void *ours = aligned_alloc(64, (bytes + 63) / 64 * 64), *theirs = aligned_alloc(64, (bytes + 63) / 64 * 64);
    assert_true(B && ours && theirs);
    test_fill(B, (size_t)ld * (tb ? N : K), 33, 3.0f);
    memset(ours, 0x5A, bytes);
    memset(theirs, 0xA5, bytes);
    gemm_weights *w = gemm_weights_create_in(dt, tb, K, N, ld, ours);
    gemm_weights *w1 = gemm_weights_create_in(dt, tb, K, N, ld, theirs);
    assert_true(w && w1);
    gemm_weights_pack(w, B);
    gemm_weights_pack_onednn(w1, B);
    print_message("%s %dx%d%s: %zu bytes, %s\n", dt == GEMM_BF16 ? "bf16" : dt == GEMM_F16 ? "fp16" : "fp32", K, N,
                  tb ? " trans" : "", bytes, gemm_weights_packed_here(w) ? "packed here" : "oneDNN's reorder");
    /* oneDNN's avx512_core_bf16 products take BA16a64b2a, a pair layout:
     * were it no longer recognised, packing would silently fall back to
     * the slow reorder (AMX's blockings are reported above, not asserted) */
    if (dt == GEMM_BF16 && K % 64 == 0 && N % 64 == 0 && cpu_has_avx512_bf16() && !cpu_has_amx_bf16())
        assert_true(gemm_weights_packed_here(w));
    assert_memory_equal(ours, theirs, bytes);
    /* with the transpose's copy, from one read of B */
    const size_t bytes_t = gemm_weights_size(dt, N, K);
    void *ours_t = aligned_alloc(64, (bytes_t + 63) / 64 * 64), *theirs_t = aligned_alloc(64, (bytes_t + 63) / 64 * 64);
    assert_true(ours_t && theirs_t);
    memset(ours, 0x5A, bytes);
    memset(ours_t, 0x5A, bytes_t);
    gemm_weights *wt = gemm_weights_create_in(dt, !tb, N, K, ld, ours_t);
    gemm_weights *wt1 = gemm_weights_create_in(dt, !tb, N, K, ld, theirs_t);
    assert_true(wt && wt1);
    gemm_weights_pack_pair(w, wt, B);
    gemm_weights_pack_onednn(wt1, B);
    assert_memory_equal(ours, theirs, bytes);
    assert_memory_equal(ours_t, theirs_t, bytes_t);
    gemm_weights_destroy(w), gemm_weights_destroy(w1), gemm_weights_destroy(wt), gemm_weights_destroy(wt1);
    free(B), free(ours), free(theirs), free(ours_t), free(theirs_t);
}

static void test_pack_matches_onednn(void **state)
{
    (void)state;
    static const gemm_dtype dts[] = {GEMM_BF16, GEMM_F32, GEMM_F16};
    static const int shapes[][2] = {{96, 160}, {37, 50}, {200, 17}, {1, 64}, {768, 2304}};
    if (gemm_weights_size(GEMM_BF16, 64, 64) == 0)
        test_skip("gemm bf16 pair packing against oneDNN", "no native bf16 product on this CPU");
    for (int d = 0; d < 3; d++)
        for (int tb = 0; tb < 2; tb++)
            for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
                check_pack_case(dts[d], tb, shapes[i][0], shapes[i][1]);
}

/* alpha scales the product only: C = C0 + alpha * A @ B (fp32 and bf16). */
static void test_scaled_product(void **state)
{
    (void)state;
    enum { M = 19, N = 23, K = 40 };
    float A[M * K], B[K * N], C[M * N], P[M * N], R[M * N];
    uint16_t Ah[M * K], Bh[K * N];
    test_fill(A, M * K, 31, 1.0f);
    test_fill(B, K * N, 32, 1.0f);
    f32_to_bf16(Ah, A, M * K);   /* bf16 values, so both dtypes multiply the same numbers */
    f32_to_bf16(Bh, B, K * N);
    bf16_to_f32(A, Ah, M * K);
    bf16_to_f32(B, Bh, K * N);
    gemm_f32_ref(false, false, M, N, K, A, K, B, N, NULL, false, P, N);
    for (int dt = 0; dt < 2; dt++) {
        test_fill(C, M * N, 33, 1.0f);
        for (int i = 0; i < M * N; i++)
            R[i] = C[i] - 0.375f * P[i];
        if (dt)
            gemm_scaled(GEMM_BF16, false, false, M, N, K, -0.375f, Ah, K, Bh, N, true, C, N);
        else
            gemm_scaled(GEMM_F32, false, false, M, N, K, -0.375f, A, K, B, N, true, C, N);
        assert_true(test_close(dt ? "scaled bf16" : "scaled fp32", C, R, M * N, 1e-4f, 1e-5f));
    }
}

static void test_bf16_native_path(void **state)
{
    (void)state;
    gemm_release();
    if (!gemm_bf16_native())
        test_skip("gemm bf16 native path", "oneDNN has no bf16 matmul on this CPU (the widened path runs twice)");
    bf16_all_variants();
}

static void test_bf16_widened_path(void **state)
{
    (void)state;
    setenv("GPT_BF16_EMULATE", "1", 1);
    gemm_release();
    assert_false(gemm_bf16_native());
    bf16_all_variants();
    unsetenv("GPT_BF16_EMULATE");
    gemm_release();
}

/* gemm_weights_view_bf16 reads bf16mm's packed bytes in place: its products
 * are the reference's on the bf16-rounded operands (partial column blocks,
 * bias or not, 1 to 64 rows); K not a multiple of 32 has no view. */
static void check_view_case(int M, int K, int N, bool bias)
{
    float *W = malloc((size_t)K * N * sizeof *W), *A = malloc((size_t)M * K * sizeof *A);
    float *b = malloc(N * sizeof *b), *C = malloc((size_t)M * N * sizeof *C);
    float *R = malloc((size_t)M * N * sizeof *R);
    uint16_t *Ah = malloc((size_t)M * K * sizeof *Ah);
    const size_t len = bf16mm_packed_len(K, N);
    uint16_t *p = aligned_alloc(64, (len * sizeof *p + 63) / 64 * 64);
    assert_true(W && A && b && C && R && Ah && p);
    test_fill(W, (size_t)K * N, 51, 1.0f);
    test_fill(A, (size_t)M * K, 52, 1.0f);
    test_fill(b, N, 53, 1.0f);
    bf16mm_pack(p, W, false, K, N);
    gemm_weights *w = gemm_weights_view_bf16(p, K, N);
    assert_non_null(w);
    f32_to_bf16(Ah, A, (size_t)M * K);
    gemm_packed(w, M, 1.0f, Ah, K, bias ? b : NULL, false, C, N);
    bf16_to_f32(A, Ah, (size_t)M * K);   /* the reference on the rounded operands */
    uint16_t *Wh = malloc((size_t)K * N * sizeof *Wh);
    assert_non_null(Wh);
    f32_to_bf16(Wh, W, (size_t)K * N);
    bf16_to_f32(W, Wh, (size_t)K * N);
    gemm_f32_ref(false, false, M, N, K, A, K, W, N, bias ? b : NULL, false, R, N);
    char what[96];
    snprintf(what, sizeof what, "bf16 view %dx%dx%d bias=%d", M, N, K, bias);
    assert_true(test_close(what, C, R, (size_t)M * N, 1e-4f * K / 64 + 1e-5f, 1e-5f));
    gemm_weights_destroy(w);
    free(W), free(A), free(b), free(C), free(R), free(Ah), free(Wh), free(p);
}

static void test_bf16_view(void **state)
{
    (void)state;
    static const int shapes[][2] = {{32, 64}, {64, 100}, {96, 256}, {768, 200}};
    static const int rows[] = {1, 5, 64};
    uint16_t *probe = aligned_alloc(64, bf16mm_packed_len(64, 64) * sizeof *probe);
    assert_non_null(probe);
    assert_null(gemm_weights_view_bf16(probe, 48, 64));
    gemm_weights *w = gemm_weights_view_bf16(probe, 64, 64);
    free(probe);
    if (!w) {
        test_skip("gemm bf16 view of bf16mm's layout", "oneDNN has no native bf16 product here");
        return;
    }
    gemm_weights_destroy(w);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
            for (int bias = 0; bias < 2; bias++)
                check_view_case(rows[r], shapes[i][0], shapes[i][1], bias);
}

/* Where the CPU has AMX, oneDNN runs bf16 products on the tiles (its
 * implementation name says so) and they match fp32 within bf16 rounding. */
static void test_bf16_uses_amx(void **state)
{
    (void)state;
    gemm_release();
    if (!cpu_has_amx_bf16()) {
        test_skip("gemm bf16 on AMX", "this CPU has no AMX-BF16");
        return;
    }
    enum { S = 256 };
    char bf16[128], fp32[128];   /* gemm_impl_name's buffer is reused */
    snprintf(bf16, sizeof bf16, "%s", gemm_impl_name(GEMM_BF16, S, S, S));
    snprintf(fp32, sizeof fp32, "%s", gemm_impl_name(GEMM_F32, S, S, S));
    print_message("%dx%dx%d products: bf16 %s, fp32 %s\n", S, S, S, bf16, fp32);
    assert_non_null(strstr(bf16, "amx"));
    assert_null(strstr(fp32, "amx"));
    float *A = malloc(S * S * sizeof *A), *B = malloc(S * S * sizeof *B);
    float *C = malloc(S * S * sizeof *C), *R = malloc(S * S * sizeof *R);
    uint16_t *Ah = malloc(S * S * sizeof *Ah), *Bh = malloc(S * S * sizeof *Bh);
    test_fill(A, S * S, 41, 1.0f);
    test_fill(B, S * S, 42, 1.0f);
    f32_to_bf16(Ah, A, S * S);
    f32_to_bf16(Bh, B, S * S);
    gemm(GEMM_BF16, false, false, S, S, S, Ah, S, Bh, S, NULL, false, C, S);
    gemm_f32(false, false, S, S, S, A, S, B, S, NULL, false, R, S);
    /* each operand is off by up to 2^-9 relative, so each term a*b (|a*b| ~
     * 1/4) by ~2^-10 and a sum of S terms by ~sqrt(S) 2^-10 = 0.016: 0.1 is
     * six of those, far below what a wrong product gives (values ~5) */
    assert_true(test_close("bf16 (AMX) vs fp32", C, R, S * S, 0.1f, 0.01f));
    free(A), free(B), free(C), free(R), free(Ah), free(Bh);
    check_bf16_case(true, false, S, S, S, true, true);   /* exact values, weight-gradient form */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_variants),
        cmocka_unit_test(test_model_shapes),
        cmocka_unit_test(test_trans_a_gemm_kernel),
        cmocka_unit_test(test_trans_a_long_k_many_threads),
        cmocka_unit_test(test_cache_reuse_gives_same_result),
        cmocka_unit_test(test_bf16_native_path),
        cmocka_unit_test(test_bf16_widened_path),
        cmocka_unit_test(test_packed_weights),
        cmocka_unit_test(test_scaled_product),
        cmocka_unit_test(test_packed_weights_widened),
        cmocka_unit_test(test_pack_matches_onednn),
        cmocka_unit_test(test_bf16_uses_amx),
        cmocka_unit_test(test_bf16_view),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gemm_release();
    return rc;
}
