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

const gemv_ops SIMD_NAME(gemv_ops) = {n_rows, t_rows};
