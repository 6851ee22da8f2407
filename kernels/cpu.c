#include "kernels/cpu.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const isa_names[ISA_COUNT] = {"scalar", "avx2", "avx512"};
static int active_isa = -1;

bool cpu_isa_supported(isa_t isa)
{
    __builtin_cpu_init();
    switch (isa) {
    case ISA_SCALAR:
        return true;
    case ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c");
    case ISA_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
               cpu_isa_supported(ISA_AVX2);
    default:
        return false;
    }
}

bool cpu_has_bf16(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16");
}

bool cpu_has_avx512_vnni(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") && cpu_isa_supported(ISA_AVX512);
}

bool cpu_has_amx_bf16(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("amx-bf16");
}

bool cpu_has_avx512_fp16(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512fp16");
}

const char *cpu_model_name(void)
{
    static char name[128];
    if (name[0])
        return name;
    snprintf(name, sizeof name, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        const char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            snprintf(name, sizeof name, "%s", colon + 1 + (colon[1] == ' '));
            name[strcspn(name, "\n")] = '\0';
            break;
        }
    }
    if (f)
        fclose(f);
    return name;
}

bool cpu_has_avx512_bf16(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && cpu_isa_supported(ISA_AVX512);
}

static isa_t best_isa(void)
{
    for (int i = ISA_COUNT - 1; i > 0; i--)
        if (cpu_isa_supported((isa_t)i))
            return (isa_t)i;
    return ISA_SCALAR;
}

/* "scalar, avx2 or avx512": the names of the paths up to last. */
static void names_upto(isa_t last, char *buf, size_t n)
{
    size_t len = 0;
    for (int i = 0; i <= (int)last && len < n; i++) {
        const char *sep = i == 0 ? "" : i == (int)last ? " or " : ", ";
        len += (size_t)snprintf(buf + len, n - len, "%s%s", sep, isa_names[i]);
    }
}

int cpu_isa_parse(const char *value, isa_t best, isa_t *isa, char *err, size_t errlen)
{
    *isa = best;
    if (!value || !*value)
        return 0;
    char names[64];
    for (int i = 0; i < ISA_COUNT; i++) {
        if (strcmp(value, isa_names[i]) != 0)
            continue;
        if (i > (int)best) {
            names_upto(best, names, sizeof names);
            snprintf(err, errlen, "GPT_ISA=%s: this CPU cannot run that path (it runs %s)", value,
                     names);
            return -1;
        }
        *isa = (isa_t)i;
        return 0;
    }
    names_upto(ISA_COUNT - 1, names, sizeof names);
    snprintf(err, errlen, "GPT_ISA=%s is not a kernel path (%s)", value, names);
    return -1;
}

int cpu_isa_from_env(char *err, size_t errlen)
{
    isa_t isa;
    const int rc = cpu_isa_parse(getenv("GPT_ISA"), best_isa(), &isa, err, errlen);
    active_isa = (int)isa;
    return rc;
}

isa_t cpu_isa(void)
{
    if (active_isa < 0)
        cpu_isa_from_env(NULL, 0);
    return (isa_t)active_isa;
}

void cpu_set_isa(isa_t isa)
{
    active_isa = cpu_isa_supported(isa) ? (int)isa : (int)best_isa();
}

const char *cpu_isa_name(isa_t isa)
{
    return (isa >= 0 && isa < ISA_COUNT) ? isa_names[isa] : "unknown";
}

const void *cpu_pick(isa_t isa, const void *scalar, const void *avx2, const void *avx512)
{
    if (!cpu_isa_supported(isa))
        return scalar;
    return isa == ISA_AVX512 ? avx512 : isa == ISA_AVX2 ? avx2 : scalar;
}

void cpu_thread_columns(int C, int *c0, int *c1)
{
    const int lines = (C + 15) / 16, t = omp_get_thread_num(), nt = omp_get_num_threads();
    int a = lines * t / nt * 16, b = lines * (t + 1) / nt * 16;
    *c0 = a < C ? a : C;
    *c1 = b < C ? b : C;
}
