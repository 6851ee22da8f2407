/* gemv, one source for AVX2 and AVX-512 (kernels/simd.h); contract in
 * gemv_impl.h, arithmetic in gemv.h.
 * gemv_n: each lane is one output; the share of y accumulates in place while
 * W streams past row by row.  gemv_t: gemv.h's 16 lanes as NS vectors (two
 * on AVX2, one on AVX-512), V rows at a time for independent dependency
 * chains; the tail of a row loads zeros. */
#include <stddef.h>

#include "kernels/gemv_impl.h"
#include "kernels/simd.h"

enum {
    V = 6,          /* rows per pass in gemv_t */
    NS = 16 / VW,   /* vectors per gemv.h lane group */
    R = 4,          /* rows per pass in gemv_n */
};

/* rows (<= R) rows of W from row i into y[o0..o1); inlined with rows == R for
 * the full passes, as t_block below.  Each accumulator is loaded and stored
 * once per pass, its FMAs in row order (gemv.h's), and the rows are
 * sequential streams in flight together.  Each load asks for the same column
 * of the next pass's rows into L2: the hardware prefetchers alone left one
 * thread well short of the memory's rate on Zen 4 (docs/benchmarks.md); a
 * prefetch past the matrix's end is dropped, never a fault. */
SIMD_INLINE void n_block(float *y, const float *x, const float *w, int out, int i, int rows,
                         int o0, int o1)
{
    vfloat xv[R];
    const float *wi[R];
    for (int r = 0; r < rows; r++) {
        xv[r] = vset1(x[i + r]);
        wi[r] = w + (size_t)(i + r) * out;
    }
    int o = o0;
    for (; o + VW <= o1; o += VW) {
        vfloat acc = vloadu(y + o);
        for (int r = 0; r < rows; r++) {
            _mm_prefetch((const char *)(wi[r] + (size_t)R * out + o), _MM_HINT_T1);
            acc = vfmadd(xv[r], vloadu(wi[r] + o), acc);
        }
        vstoreu(y + o, acc);
    }
    if (o < o1) {
        vfloat acc = vload(y + o, o1 - o);
        for (int r = 0; r < rows; r++)
            acc = vfmadd(xv[r], vload(wi[r] + o, o1 - o), acc);
        vstore(y + o, o1 - o, acc);
    }
}

/* y[o0..o1) serves as the accumulators (in L1), so W is read row by row in
 * its layout, whatever the width of the share, R rows a pass. */
static void n_rows(float *y, const float *x, const float *w, const float *b, int in, int out,
                   int o0, int o1)
{
    for (int o = o0; o < o1; o += VW)
        vstore(y + o, o1 - o, vzero());
    int i = 0;
    for (; i + R <= in; i += R)
        n_block(y, x, w, out, i, R, o0, o1);
    if (i < in)
        n_block(y, x, w, out, i, in - i, o0, o1);
    if (b)
        for (int o = o0; o < o1; o += VW)
            vstore(y + o, o1 - o, vadd(vload(y + o, o1 - o), vload(b + o, o1 - o)));
}

/* gemv.h's reduction of the 16 lanes: the halves first on AVX2, then vhsum's
 * halving steps */
static float reduce16(const vfloat a[NS])
{
    vfloat s = a[0];
    for (int k = 1; k < NS; k++)
        s = vadd(s, a[k]);
    return vhsum(s);
}

/* rows (<= V) outputs from row o; inlined with rows == V for the full passes,
 * so the accumulators stay in registers (a run-time count spills them to the
 * stack, and every FMA then waits on a store).  The next block's rows are
 * prefetched into L2 as n_block does. */
SIMD_INLINE void t_block(float *y, const float *x, const float *w, int ldw, const float *b,
                         int in, int o, int rows)
{
    vfloat acc[V][NS];
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < NS; k++)
            acc[r][k] = vzero();
    for (int i = 0; i < in; i += 16) {
        vfloat xv[NS];
        for (int k = 0; k < NS; k++)
            xv[k] = vload(x + i + k * VW, in - i - k * VW);
        for (int r = 0; r < rows; r++) {
            const float *wr = w + (size_t)(o + r) * ldw + i;
            _mm_prefetch((const char *)(wr + (size_t)V * ldw), _MM_HINT_T1);
            for (int k = 0; k < NS; k++)
                acc[r][k] = vfmadd(xv[k], vload(wr + k * VW, in - i - k * VW), acc[r][k]);
        }
    }
    for (int r = 0; r < rows; r++) {
        const float s = reduce16(acc[r]);
        y[o + r] = b ? s + b[o + r] : s;
    }
}

static void t_rows(float *y, const float *x, const float *w, int ldw, const float *b, int in,
                   int o0, int o1)
{
    int o = o0;
    for (; o + V <= o1; o += V)
        t_block(y, x, w, ldw, b, in, o, V);
    if (o < o1)
        t_block(y, x, w, ldw, b, in, o, o1 - o);
}

/* gemv_n of several rows: W streams past once per MT rows of X, R rows of W
 * at a time as in n_block, and a tile of the outputs, up to MT rows by TW
 * columns, accumulates in a contiguous 16 KB buffer (in L1: rows of y a
 * power-of-two multiple of 4 KB apart would share a few cache sets) before it
 * is copied out with the bias.  Each output takes gemv_n's FMAs in row
 * order, then the bias, so it has gemv_n's bits.  The R vectors of W stay
 * in registers while they meet every row of X. */
enum {
    MT = 16,  /* rows of X per pass over W */
    TW = 256, /* columns per tile */
};

SIMD_INLINE void nm_block(float acc[MT][TW], const float *x, const float *w, int m, int in,
                          int out, int i, int rows, int t0, int width)
{
    const float *wi[R];
    for (int r = 0; r < rows; r++)
        wi[r] = w + (size_t)(i + r) * out + t0;
    for (int c = 0; c < width; c += VW) {
        vfloat wv[R];
        for (int r = 0; r < rows; r++) {
            _mm_prefetch((const char *)(wi[r] + (size_t)R * out + c), _MM_HINT_T1);
            wv[r] = vload(wi[r] + c, width - c);
        }
        for (int j = 0; j < m; j++) {
            const float *xj = x + (size_t)j * in + i;
            vfloat a = vloadu(&acc[j][c]);
            for (int r = 0; r < rows; r++)
                a = vfmadd(vset1(xj[r]), wv[r], a);
            vstoreu(&acc[j][c], a);
        }
    }
}

static void nm_rows(float *y, const float *x, const float *w, const float *b, int m, int in,
                    int out, int o0, int o1)
{
    float acc[MT][TW] __attribute__((aligned(64)));
    for (int j0 = 0; j0 < m; j0 += MT) {
        const int mj = m - j0 < MT ? m - j0 : MT;
        const float *xt = x + (size_t)j0 * in;
        for (int t0 = o0; t0 < o1; t0 += TW) {
            const int width = o1 - t0 < TW ? o1 - t0 : TW;
            for (int j = 0; j < mj; j++)
                for (int c = 0; c < width; c += VW)
                    vstoreu(&acc[j][c], vzero());
            int i = 0;
            for (; i + R <= in; i += R)
                nm_block(acc, xt, w, mj, in, out, i, R, t0, width);
            if (i < in)
                nm_block(acc, xt, w, mj, in, out, i, in - i, t0, width);
            for (int j = 0; j < mj; j++)
                for (int c = 0; c < width; c += VW) {
                    vfloat v = vloadu(&acc[j][c]);
                    if (b)
                        v = vadd(v, vload(b + t0 + c, width - c));
                    vstore(y + (size_t)(j0 + j) * out + t0 + c, width - c, v);
                }
        }
    }
}

const gemv_ops SIMD_NAME(gemv_ops) = {n_rows, t_rows, nm_rows};
