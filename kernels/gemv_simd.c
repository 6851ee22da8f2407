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
    V = 4,          /* rows per pass in gemv_t */
    NS = 16 / VW,   /* vectors per gemv.h lane group */
    PREFETCH_ROWS = 4,   /* rows ahead that n_rows prefetches */
};

/* y[o0..o1) serves as the accumulators (in L1), so W is read row by row in
 * its layout, one sequential stream, whatever the width of the share. */
static void n_rows(float *y, const float *x, const float *w, const float *b, int in, int out,
                   int o0, int o1)
{
    for (int o = o0; o < o1; o += VW)
        vstore(y + o, o1 - o, vzero());
    for (int i = 0; i < in; i++) {
        const vfloat xv = vset1(x[i]);
        const float *wi = w + (size_t)i * out;
        int o = o0;
        /* NULL near the end: a pointer past W is not formed, let alone read */
        const float *ahead = i + PREFETCH_ROWS < in ? wi + (size_t)PREFETCH_ROWS * out : NULL;
        for (; o + VW <= o1; o += VW) {
            if (ahead)
                _mm_prefetch((const char *)(ahead + o), _MM_HINT_T0);
            vstoreu(y + o, vfmadd(xv, vloadu(wi + o), vloadu(y + o)));
        }
        if (o < o1)
            vstore(y + o, o1 - o, vfmadd(xv, vload(wi + o, o1 - o), vload(y + o, o1 - o)));
    }
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
 * stack, and every FMA then waits on a store). */
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
