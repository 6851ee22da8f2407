/* bench_ckpt: checkpoint save and load speed against the disk's own.  For
 * seed384 and gpt2-124M (float32 parameters and Adam m and v, 12 bytes per
 * parameter) it times ckpt_write (HDF5, a checksum per tensor, fsync, rename,
 * fsync of the directory) against write() + fsync() of a file of the same size
 * in the same directory, and ckpt_read (shapes, then every tensor with its
 * checksum) against read() of that file, each file first dropped from the page
 * cache (posix_fadvise DONTNEED, so the reads come from the disk, or the host's
 * cache under a VM).  The two alternate, RUNS times each, and the medians are
 * printed in GB/s; with BENCH_JSONL=path each row is also appended there as a
 * JSON object.  Files go to BENCH_CKPT_DIR (default $BUILD/bench-ckpt, on
 * the disk checkpoints go to) and are deleted.  BENCH_CKPT_WORK=seed384 runs one. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/fsutil.h"
#include "tests/bench_util.h"
#include "tests/test_util.h"
#include "trainer/ckpt_view.h"

enum { RUNS = 3 };
static const size_t CHUNK = 64u << 20;   /* plain I/O in 64 MB calls */

typedef struct {
    const char *name;
    gpt2_dims dims;
} workload;

static const workload works[] = {{"seed384", {16000, 256, 384, 4, 6}},
                                 {"gpt2-124M", {50257, 1024, 768, 12, 12}}};

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_ckpt: %s: %s\n", what, why);
    exit(1);
}

/* Drops path's pages from the page cache (they are clean: it was fsynced). */
static void drop_cache(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0 || fdatasync(fd) != 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0)
        die(path, strerror(errno));
    close(fd);
}

/* The checkpoint's own memory, params, m and v ([seg] bytes each), as the
 * plain I/O's source and destination: byte o of the file is byte o % seg of
 * buffer (o / seg) % 3 (the few hundred KB of HDF5 metadata wrap around). */
typedef struct {
    char *buf[3];
    size_t seg;
} arenas;

/* The piece of at most CHUNK bytes at file offset o (n bytes in all). */
static char *piece(const arenas *a, size_t o, size_t n, size_t *len)
{
    size_t in = o % a->seg, left = a->seg - in;
    *len = n - o < left ? n - o : left;
    if (*len > CHUNK)
        *len = CHUNK;
    return a->buf[(o / a->seg) % 3] + in;
}

/* write() + fsync() of n bytes to path; seconds. */
static double plain_write(const char *path, const arenas *a, size_t n)
{
    double t0 = bench_now_s();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die(path, strerror(errno));
    for (size_t o = 0; o < n;) {
        size_t len;
        const char *p = piece(a, o, n, &len);
        ssize_t w = write(fd, p, len);
        if (w <= 0)
            die(path, w < 0 ? strerror(errno) : "short write");
        o += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0)
        die(path, strerror(errno));
    return bench_now_s() - t0;
}

/* read() of the n bytes of path; seconds. */
static double plain_read(const char *path, const arenas *a, size_t n)
{
    double t0 = bench_now_s();
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        die(path, strerror(errno));
    for (size_t o = 0; o < n;) {
        size_t len;
        char *p = piece(a, o, n, &len);
        ssize_t r = read(fd, p, len);
        if (r <= 0)
            die(path, r < 0 ? strerror(errno) : "short read");
        o += (size_t)r;
    }
    close(fd);
    return bench_now_s() - t0;
}

static void bench(const workload *w, const char *dir, FILE *jsonl)
{
    char err[1024], ck[1100], plain[1100];
    run_config cfg;
    config_defaults(&cfg);
    cfg.vocab_size = w->dims.vocab_size;
    cfg.n_positions = w->dims.n_positions;
    cfg.n_embd = w->dims.n_embd;
    cfg.n_layer = w->dims.n_layer;
    cfg.n_head = w->dims.n_head;
    if (config_finalize(&cfg, err, sizeof err) != 0)
        die(w->name, err);
    gpt2 model;
    adamw_state opt;
    gpt2_options o = {0};
    if (gpt2_create(&model, &w->dims, 1, 64, &o, err, sizeof err) != 0 ||
        optimizer_create(&opt, model.num_params, err, sizeof err) != 0)
        die(w->name, err);
    size_t n = model.num_params;
    test_fill(model.params, n, 1, 1.0f);   /* touched once here, not in the timing */
    test_fill(opt.m, n, 2, 0.1f);
    test_fill(opt.v, n, 3, 0.01f);
    snprintf(ck, sizeof ck, "%s/ckpt_%s.h5", dir, w->name);
    snprintf(plain, sizeof plain, "%s/plain_%s.bin", dir, w->name);
    arenas mem = {{(char *)model.params, (char *)opt.m, (char *)opt.v}, n * sizeof(float)};
    ckpt_view v;
    if (ckpt_view_init(&v, &cfg, &model, &opt, err, sizeof err) != 0)
        die(w->name, err);
    ckpt_state s = v.s;
    s.train = (ckpt_train_info){.step = 1, .seed = cfg.seed};
    double ws[RUNS], pw[RUNS], rs[RUNS], pr[RUNS];
    size_t bytes = 0;
    for (int r = 0; r < RUNS; r++) {
        /* a new file each time, as the trainer writes (a rename over an old
         * file would also time freeing its blocks) */
        unlink(ck);
        unlink(plain);
        double t0 = bench_now_s();
        if (ckpt_write(ck, &s, err, sizeof err) != 0)
            die(w->name, err);
        ws[r] = bench_now_s() - t0;
        struct stat st;
        if (stat(ck, &st) != 0)
            die(ck, strerror(errno));
        bytes = (size_t)st.st_size;
        pw[r] = plain_write(plain, &mem, bytes);
        drop_cache(ck);
        t0 = bench_now_s();
        if (ckpt_read(ck, &s, err, sizeof err) != 0)
            die(w->name, err);
        rs[r] = bench_now_s() - t0;
        drop_cache(plain);
        pr[r] = plain_read(plain, &mem, bytes);
    }
    unlink(ck);
    unlink(plain);
    double mw = bench_median(ws, RUNS), mp = bench_median(pw, RUNS),
           mr = bench_median(rs, RUNS), mq = bench_median(pr, RUNS), gb = (double)bytes / 1e9;
    printf("%-10s %7.0f MB  save %5.2f s %5.2f GB/s  plain write+fsync %5.2f GB/s (%3.0f%%)  "
           "load %5.2f s %5.2f GB/s  plain read %5.2f GB/s (%3.0f%%)\n",
           w->name, bytes / 1e6, mw, gb / mw, gb / mp, 100 * mp / mw, mr, gb / mr, gb / mq,
           100 * mq / mr);
    if (jsonl)
        fprintf(jsonl, "{\"bench\":\"checkpoint\",\"work\":\"%s\",\"bytes\":%zu,\"save_s\":%.3f,"
                "\"save_gb_s\":%.3f,\"plain_write_gb_s\":%.3f,\"load_s\":%.3f,\"load_gb_s\":%.3f,"
                "\"plain_read_gb_s\":%.3f,\"runs\":%d}\n",
                w->name, bytes, mw, gb / mw, gb / mp, mr, gb / mr, gb / mq, RUNS);
    ckpt_view_free(&v);
    optimizer_destroy(&opt);
    gpt2_destroy(&model);
}

int main(void)
{
    bench_check_isa("bench_ckpt");
    const char *only = getenv("BENCH_CKPT_WORK");
    const char *jsonl_path = getenv("BENCH_JSONL");
    char err[512], dir[512];
    if (getenv("BENCH_CKPT_DIR"))
        snprintf(dir, sizeof dir, "%s", getenv("BENCH_CKPT_DIR"));
    else
        snprintf(dir, sizeof dir, "%s/bench-ckpt", getenv("BUILD") ? getenv("BUILD") : "build");
    if (fs_mkdir_p(dir, err, sizeof err) != 0)
        die(dir, err);
    FILE *jsonl = jsonl_path ? fopen(jsonl_path, "a") : NULL;
    printf("checkpoint save/load (median of %d, page cache dropped before each load) vs plain "
           "I/O of the same bytes in %s:\n", RUNS, dir);
    for (size_t i = 0; i < sizeof works / sizeof works[0]; i++)
        if (!only || strcmp(only, works[i].name) == 0)
            bench(&works[i], dir, jsonl);
    if (jsonl)
        fclose(jsonl);
    rmdir(dir);
    return 0;
}
