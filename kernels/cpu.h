/* cpu: which SIMD instruction set the kernels run on.
 *
 * Every kernel has a scalar reference and, where it pays, AVX2 and AVX-512
 * paths compiled into separate objects: one source X_simd.c compiled once per
 * ISA (kernels/simd.h), or *_avx2.c / *_avx512.c where the code differs.  The
 * active path is the best one this CPU supports, or the one named by the
 * environment variable GPT_ISA (scalar|avx2|avx512) for tests and benchmarks.
 * The paths are nested: a CPU that runs one runs every path below it.
 */
#ifndef KERNELS_CPU_H
#define KERNELS_CPU_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVX512 = 2, ISA_COUNT } isa_t;

bool cpu_isa_supported(isa_t isa);   /* can this CPU run that path? */
/* The active path: cpu_isa_from_env's, on the first call if no one called
 * it (a bad GPT_ISA then runs the best path), until cpu_set_isa. */
isa_t cpu_isa(void);
void cpu_set_isa(isa_t isa);         /* force a path (must be supported) */
const char *cpu_isa_name(isa_t isa);

/* The path a GPT_ISA value names on a CPU whose best path is best: 0 and
 * *isa (best for NULL or empty), or -1 with a one-line reason naming the
 * accepted values (*isa = best), for a name of no path or of a path above
 * best. */
int cpu_isa_parse(const char *value, isa_t best, isa_t *isa, char *err, size_t errlen);
/* Makes the path $GPT_ISA names on this CPU the active one: what a program
 * calls at start, to refuse a value that cannot be honoured (cpu_isa_parse's
 * -1 and reason; the best path is then active). */
int cpu_isa_from_env(char *err, size_t errlen);

bool cpu_has_bf16(void);             /* AVX512-BF16 or AMX-BF16 */
/* AVX512-VNNI on top of the ISA_AVX512 set: the int8 kernels' vpdpbusd path.  Not
 * an isa_t of its own, since only kernels/q8 has such a path. */
bool cpu_has_avx512_vnni(void);
/* AVX512-BF16 (vdpbf16ps) on top of the ISA_AVX512 set: the bf16-weight
 * products' dot path (kernels/bf16mm.h). */
bool cpu_has_avx512_bf16(void);

/* AMX-BF16 tiles (oneDNN's avx512_core_amx products), AVX512-FP16 arithmetic. */
bool cpu_has_amx_bf16(void);
bool cpu_has_avx512_fp16(void);
/* The CPU's model name as /proc/cpuinfo gives it ("unknown" without one). */
const char *cpu_model_name(void);

/* The table of the requested path, or the scalar one when this CPU cannot run
 * it: a kernel never executes instructions the CPU lacks. */
const void *cpu_pick(isa_t isa, const void *scalar, const void *avx2, const void *avx512);

/* Inside an OpenMP parallel region: this thread's share [*c0, *c1) of C
 * columns, in whole 16-float cache lines so no two threads write one line.
 * The split does not change the arithmetic, so results do not depend on the
 * number of threads. */
void cpu_thread_columns(int C, int *c0, int *c1);

/* The smaller of two ints: the width of a last, partial chunk or tile. */
static inline int imin(int a, int b)
{
    return a < b ? a : b;
}

/* The driver of the flat kernels: runs `body` once per chunk of [0, n), with
 * size_t `off` and `len` naming the chunk's start and length, spread over the
 * OpenMP threads when n >= par_min (below that a parallel region costs more
 * than it saves).  Each chunk's values are handled by one call, so results do
 * not depend on the number of threads.  Below par_min no parallel construct
 * is entered at all: one with a false `if` still builds (mallocs) a team of
 * one, a microsecond that inference's decode threads would pay dozens of
 * times per token. */
#define CPU_FOR_CHUNKS(n, chunk, par_min, off, len, body)                        \
    do {                                                                        \
        const size_t n_ = (n), chunk_ = (chunk), par_min_ = (par_min);         \
        const size_t nchunks_ = (n_ + chunk_ - 1) / chunk_;                     \
        if (n_ < par_min_) {                                                    \
            for (size_t c_ = 0; c_ < nchunks_; c_++) {                          \
                const size_t off = c_ * chunk_;                                 \
                const size_t len = n_ - off < chunk_ ? n_ - off : chunk_;       \
                body;                                                           \
            }                                                                   \
            break;                                                              \
        }                                                                       \
        _Pragma("omp parallel for schedule(static)")                            \
        for (size_t c_ = 0; c_ < nchunks_; c_++) {                              \
            const size_t off = c_ * chunk_;                                     \
            const size_t len = n_ - off < chunk_ ? n_ - off : chunk_;           \
            body;                                                               \
        }                                                                       \
    } while (0)

#endif
