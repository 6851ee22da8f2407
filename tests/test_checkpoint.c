/* checkpoint: a tiny model, its optimizer state and an fp16 run's loss scale
 * round-trip bit-exactly; files with other model dimensions, truncated,
 * bit-flipped or foreign files are refused with a one-line reason;
 * keep_checkpoints, the latest pointer, no *.tmp left behind; --resume auto
 * falls back past a damaged newest file; moments handed out and taken in one
 * tensor at a time (ZeRO's path) give the same file and values; a
 * weights-only file reads as a model and is refused for resuming; a tokenizer
 * without merges (bpe or gpt2) reads back; SIGKILL
 * during saves never costs the newest; a file has one writer at a time, and
 * a killed one's PATH.tmp is taken over. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/fsutil.h"
#include "tests/test_util.h"
#include "tests/test_writer.h"
#include "trainer/ckpt_view.h"

typedef struct {
    run_config cfg;
    gpt2 model;
    adamw_state opt;
    ckpt_view v;   /* the state above as io/checkpoint.h's data */
    char dir[64];
} fixture;

/* A model of n_embd C with random parameters and moments. */
static void make_state(fixture *f, int C, uint64_t seed)
{
    char err[256];
    config_defaults(&f->cfg);
    f->cfg.vocab_size = 64;
    f->cfg.n_positions = 16;
    f->cfg.n_embd = C;
    f->cfg.n_layer = 2;
    f->cfg.n_head = 2;
    assert_int_equal(config_finalize(&f->cfg, err, sizeof err), 0);
    gpt2_dims d = {64, 16, C, 2, 2};
    gpt2_options o = {0};
    assert_int_equal(gpt2_create(&f->model, &d, 1, 16, &o, err, sizeof err), 0);
    assert_int_equal(optimizer_create(&f->opt, f->model.num_params, err, sizeof err), 0);
    test_fill(f->model.params, f->model.num_params, seed, 1.0f);
    test_fill(f->opt.m, f->opt.n, seed + 1, 0.1f);
    test_fill(f->opt.v, f->opt.n, seed + 2, 0.01f);
    f->opt.step = 2;   /* <= every train step saved below */
    assert_int_equal(ckpt_view_init(&f->v, &f->cfg, &f->model, &f->opt, err, sizeof err), 0);
}

static void free_state(fixture *f)
{
    ckpt_view_free(&f->v);
    optimizer_destroy(&f->opt);
    gpt2_destroy(&f->model);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/test_checkpoint_XXXXXX");
    if (!f || !mkdtemp(f->dir))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static ckpt_state view(fixture *f, int step)
{
    ckpt_state s = f->v.s;
    s.train = (ckpt_train_info){.step = step, .tokens_seen = 1000u * step,
                                .data_cursor = 10u * step, .seed = 42, .loss_scale = 1};
    return s;
}

static void save(fixture *f, int step, char *path, size_t pathlen)
{
    char err[512];
    ckpt_state s = view(f, step);
    if (ckpt_save(f->dir, &s, 2, path, pathlen, err, sizeof err) != 0)
        fail_msg("%s", err);
}

/* ckpt_read must fail with a one-line message containing want. */
static void expect_refused(fixture *f, const char *path, const char *want)
{
    char err[512] = "";
    ckpt_state s = view(f, 0);
    assert_int_equal(ckpt_read(path, &s, err, sizeof err), -1);
    if (!strstr(err, want))
        fail_msg("error \"%s\" lacks \"%s\"", err, want);
    assert_null(strchr(err, '\n'));
}

static void copy_prefix(const char *from, const char *to, double fraction)
{
    uint8_t *data;
    size_t len;
    char err[256];
    assert_int_equal(fs_read_file(from, &data, &len, err, sizeof err), 0);
    assert_int_equal(fs_write_file_atomic(to, data, (size_t)(len * fraction), err, sizeof err), 0);
    free(data);
}

static void test_round_trip_is_bit_exact(void **state)
{
    fixture *f = *state, g;
    char path[256], err[512];
    make_state(f, 16, 1);
    uint32_t merges[4] = {'a', 'b', 256, 'c'};   /* "ab", "abc" */
    tokenizer *tok = tokenizer_new_bpe(merges, 2, TOKENIZER_SPLIT_GPT2, err, sizeof err);
    assert_non_null(tok);
    ckpt_state s = view(f, 5);
    s.tok = tok;
    s.train.loss_scale = 8192;   /* an fp16 run's: not the 1 or 0 a lost value reads as */
    snprintf(path, sizeof path, "%s/one.h5", f->dir);
    assert_int_equal(ckpt_write(path, &s, err, sizeof err), 0);
    tokenizer_free(tok);

    make_state(&g, 16, 99);   /* different contents, same shapes */
    ckpt_state r = view(&g, 0);
    r.opt.step = 0;   /* the file's must come back */
    r.train.loss_scale = 0;
    if (ckpt_read(path, &r, err, sizeof err) != 0)
        fail_msg("%s", err);
    size_t bytes = f->model.num_params * sizeof(float);
    assert_memory_equal(g.model.params, f->model.params, bytes);
    assert_memory_equal(g.opt.m, f->opt.m, bytes);
    assert_memory_equal(g.opt.v, f->opt.v, bytes);
    assert_int_equal(r.opt.step, 2);
    assert_int_equal(r.train.step, 5);
    assert_int_equal(r.train.tokens_seen, 5000);
    assert_int_equal(r.train.data_cursor, 50);
    assert_int_equal(r.train.seed, 42);
    assert_true(r.train.loss_scale == 8192.0);

    /* the BPE merges are stored as int32 [n,2] */
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(file, "/tokenizer/merges", H5P_DEFAULT);
    assert_true(d >= 0);
    int32_t back[4];
    assert_true(H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, back) >= 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(back[i], merges[i]);
    H5Dclose(d);
    H5Fclose(file);
    free_state(&g);
    free_state(f);
}

static void test_other_dimensions_are_refused(void **state)
{
    fixture *f = *state, g;
    char path[256];
    make_state(f, 16, 1);
    save(f, 3, path, sizeof path);
    make_state(&g, 32, 1);
    expect_refused(&g, path, "n_embd is 16 in the checkpoint but 32 in the config");
    free_state(&g);
    free_state(f);
}

static void test_damaged_files_are_refused(void **state)
{
    fixture *f = *state;
    char path[256], bad[256], err[256];
    make_state(f, 16, 1);
    save(f, 3, path, sizeof path);
    snprintf(bad, sizeof bad, "%s/half.h5", f->dir);
    copy_prefix(path, bad, 0.5);
    expect_refused(f, bad, "truncated or damaged");

    /* a flipped bit is refused (checksums), or it was in unused space and the
     * same state loads: never different numbers */
    fixture g;
    make_state(&g, 16, 5);
    uint8_t *data;
    size_t len, bytes = f->model.num_params * sizeof(float);
    int refused = 0;
    assert_int_equal(fs_read_file(path, &data, &len, err, sizeof err), 0);
    for (size_t at = 0; at < len; at += 331) {
        data[at] ^= 0x10;
        assert_int_equal(fs_write_file_atomic(bad, data, len, err, sizeof err), 0);
        data[at] ^= 0x10;
        ckpt_state r = view(&g, 0);
        if (ckpt_read(bad, &r, err, sizeof err) != 0) {
            assert_null(strchr(err, '\n'));
            refused++;
            continue;
        }
        assert_memory_equal(g.model.params, f->model.params, bytes);
        assert_memory_equal(g.opt.m, f->opt.m, bytes);
        assert_memory_equal(g.opt.v, f->opt.v, bytes);
        assert_int_equal(r.train.step, 3);
    }
    assert_true(refused > (int)(len / 331) * 9 / 10);
    free(data);
    free_state(&g);

    /* a loss scale a float cannot hold (inf, 0 after the cast) or a NaN: an
     * fp16 resume would skip every step and blame the lr */
    const double scales[] = {1e300, 1e-300, -8, NAN};
    for (int i = 0; i < 4; i++) {
        ckpt_state s = view(f, 3);
        s.train.loss_scale = scales[i];
        assert_int_equal(ckpt_write(bad, &s, err, sizeof err), 0);
        expect_refused(f, bad, "/train or /optimizer attributes are missing or invalid");
    }

    assert_int_equal(fs_write_file_atomic(bad, "not hdf5\n", 9, err, sizeof err), 0);
    expect_refused(f, bad, "not a readable HDF5 file");
    snprintf(bad, sizeof bad, "%s/missing.h5", f->dir);
    expect_refused(f, bad, "No such file");
    free_state(f);
}

static int count_suffix(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d));) {
        size_t a = strlen(de->d_name), b = strlen(suffix);
        n += a >= b && strcmp(de->d_name + a - b, suffix) == 0;
    }
    if (d)
        closedir(d);
    return n;
}

/* Cut anywhere, the file is refused (HDF5 compares the end of file it recorded). */
static void test_truncated_anywhere_is_refused(void **state)
{
    fixture *f = *state;
    char path[256], bad[256];
    make_state(f, 16, 1);
    save(f, 3, path, sizeof path);
    snprintf(bad, sizeof bad, "%s/cut.h5", f->dir);
    const double at[] = {0, 0.001, 0.1, 0.5, 0.9, 0.999};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        copy_prefix(path, bad, at[i]);
        expect_refused(f, bad, "cut.h5: ");
    }
    free_state(f);
}

/* Sets /meta format_version in an existing file (recreated: HDF5 1.10.8's
 * H5Awrite fails on it, "can't locate open attribute"). */
static void set_format_version(const char *path, long long v)
{
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(file, "/meta", H5P_DEFAULT);
    assert_true(g >= 0 && H5Adelete(g, "format_version") >= 0);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(g, "format_version", H5T_NATIVE_INT64, sp, H5P_DEFAULT, H5P_DEFAULT);
    int64_t x = v;
    assert_true(a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &x) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Gclose(g);
    H5Fclose(file);
}

/* Valid HDF5 that is not one of our checkpoints, another format version, a
 * group missing: each refused naming what is wrong. */
static void test_foreign_files_are_refused(void **state)
{
    fixture *f = *state;
    char path[256], bad[256];
    make_state(f, 16, 1);
    snprintf(bad, sizeof bad, "%s/foreign.h5", f->dir);
    hid_t file = H5Fcreate(bad, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[1] = {4};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t d = H5Dcreate2(file, "weights", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    float x[4] = {1, 2, 3, 4};
    assert_true(d >= 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
    H5Fclose(file);
    expect_refused(f, bad, "not a gpt-cpu checkpoint");

    save(f, 3, path, sizeof path);
    copy_prefix(path, bad, 1.0);
    set_format_version(bad, CKPT_FORMAT_VERSION + 1);
    expect_refused(f, bad, "format_version 2 is not supported");

    copy_prefix(path, bad, 1.0);
    file = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(H5Ldelete(file, "/optimizer/v", H5P_DEFAULT) >= 0);
    H5Fclose(file);
    expect_refused(f, bad, "/optimizer/v is missing");
    free_state(f);
}

/* ckpt_stream standing in for ZeRO shards: the whole moments of a fixture,
 * handed out and taken in one tensor at a time, counting the calls. */
typedef struct {
    adamw_state *opt;
    const gpt2 *model;
    int calls, fail_at;   /* fail_at: the call that fails (-1: none) */
} moments_src;

static int get_moment(void *ctx, int g, int i, float *buf, char *err, size_t errlen)
{
    moments_src *m = ctx;
    const param_tensor *t = &m->model->tensors[i];
    /* in table order, m's tensors before v's */
    assert_int_equal((g - CKPT_M) * m->model->num_tensors + i, m->calls);
    if (m->calls++ == m->fail_at)
        return -1;
    memcpy(buf, (g == CKPT_V ? m->opt->v : m->opt->m) + t->offset, t->numel * sizeof(float));
    return 0;
}

static int put_moment(void *ctx, int g, int i, const float *buf, char *err, size_t errlen)
{
    moments_src *m = ctx;
    const param_tensor *t = &m->model->tensors[i];
    assert_int_equal((g - CKPT_M) * m->model->num_tensors + i, m->calls);
    m->calls++;
    memcpy((g == CKPT_V ? m->opt->v : m->opt->m) + t->offset, buf, t->numel * sizeof(float));
    return 0;
}

static void test_moments_one_tensor_at_a_time(void **state)
{
    fixture *f = *state, g;
    char path[256], ref[256], err[512];
    make_state(f, 16, 1);
    snprintf(ref, sizeof ref, "%s/whole.h5", f->dir);
    snprintf(path, sizeof path, "%s/streamed.h5", f->dir);
    ckpt_state s = view(f, 5);
    assert_int_equal(ckpt_write(ref, &s, err, sizeof err), 0);
    moments_src src = {.opt = &f->opt, .model = &f->model, .fail_at = -1};
    s.arena[CKPT_M] = s.arena[CKPT_V] = NULL;   /* the moments through the stream alone */
    s.stream = (ckpt_stream){.get = get_moment, .put = put_moment, .ctx = &src};
    if (ckpt_write(path, &s, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(src.calls, 2 * f->model.num_tensors);

    /* read back into whole arrays, and through put: the same values both ways */
    make_state(&g, 16, 99);
    ckpt_state r = view(&g, 0);
    if (ckpt_read(path, &r, err, sizeof err) != 0)
        fail_msg("%s", err);
    size_t bytes = f->model.num_params * sizeof(float);
    assert_memory_equal(g.opt.m, f->opt.m, bytes);
    assert_memory_equal(g.opt.v, f->opt.v, bytes);
    test_fill(g.opt.m, g.opt.n, 7, 1.0f);
    test_fill(g.opt.v, g.opt.n, 8, 1.0f);
    moments_src dst = {.opt = &g.opt, .model = &g.model, .fail_at = -1};
    r.arena[CKPT_M] = r.arena[CKPT_V] = NULL;
    r.stream = (ckpt_stream){.put = put_moment, .ctx = &dst};
    r.opt.step = 0;
    if (ckpt_read(ref, &r, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(dst.calls, 2 * g.model.num_tensors);
    assert_int_equal(r.opt.step, 2);
    assert_memory_equal(g.opt.m, f->opt.m, bytes);
    assert_memory_equal(g.opt.v, f->opt.v, bytes);
    assert_memory_equal(g.model.params, f->model.params, bytes);

    /* a source that fails: no file under the final name, one line naming the tensor */
    snprintf(path, sizeof path, "%s/failed.h5", f->dir);
    src.calls = 0;
    src.fail_at = f->model.num_tensors + 1;   /* the second tensor of v */
    assert_int_equal(ckpt_write(path, &s, err, sizeof err), -1);
    char want[128];
    snprintf(want, sizeof want, "cannot collect /optimizer/v/%s", f->model.tensors[1].name);
    if (!strstr(err, want))
        fail_msg("error \"%s\" lacks \"%s\"", err, want);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(count_suffix(f->dir, ".tmp"), 0);
    free_state(&g);
    free_state(f);
}

/* A save stopped half-way (in the moments' stream), its PATH.tmp partly
 * written: get_moment that at call pause_at tells the test so and waits
 * there to be killed. */
typedef struct {
    moments_src src;
    int pause_at, ready;
    fixture *f;
    const char *path;
} paused_save;

static int get_paused(void *ctx, int g, int i, float *buf, char *err, size_t errlen)
{
    paused_save *p = ctx;
    if (p->src.calls == p->pause_at && test_writer_ready(p->ready, "paused") == 0)
        pause();
    return get_moment(&p->src, g, i, buf, err, errlen);
}

static int begin_save(void *arg, int ready)
{
    paused_save *p = arg;
    char err[512];
    ckpt_state s = view(p->f, 5);
    s.arena[CKPT_M] = s.arena[CKPT_V] = NULL;
    s.stream = (ckpt_stream){.get = get_paused, .ctx = p};
    p->ready = ready;
    return ckpt_write(p->path, &s, err, sizeof err);
}

/* Two writers of one checkpoint (two imports to one --out): the second is
 * refused with one line while the first lives, and leaves the first one's
 * PATH.tmp as it was; once the first is killed, its PATH.tmp is taken over. */
static void test_one_writer_at_a_time(void **state)
{
    fixture *f = *state, g;
    char path[256], tmp[300], err[512], want[700], paused[8];
    make_state(f, 16, 1);
    snprintf(path, sizeof path, "%s/one.h5", f->dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    paused_save p = {.src = {.opt = &f->opt, .model = &f->model, .fail_at = -1},
                     .pause_at = f->model.num_tensors, .f = f, .path = path};   /* m done */
    pid_t pid = test_writer_start(begin_save, &p, paused, sizeof paused);
    uint8_t *before, *after;
    size_t nbefore, nafter;
    struct stat held, now;
    assert_int_equal(fs_read_file(tmp, &before, &nbefore, err, sizeof err), 0);
    assert_int_equal(stat(tmp, &held), 0);
    assert_true(nbefore > f->model.num_params * sizeof(float));   /* /model is in it */

    ckpt_state s = view(f, 6);
    assert_int_equal(ckpt_write(path, &s, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: another process is writing it (%s is locked)", path, tmp);
    assert_string_equal(err, want);
    assert_int_equal(stat(tmp, &now), 0);
    assert_true(now.st_ino == held.st_ino);
    assert_int_equal(fs_read_file(tmp, &after, &nafter, err, sizeof err), 0);
    assert_int_equal(nafter, nbefore);
    assert_memory_equal(after, before, nbefore);
    assert_int_equal(access(path, F_OK), -1);
    free(before);
    free(after);

    test_writer_kill(pid);   /* its PATH.tmp stays, unlocked */
    assert_int_equal(access(tmp, F_OK), 0);
    if (ckpt_write(path, &s, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(access(tmp, F_OK), -1);
    make_state(&g, 16, 99);
    ckpt_state r = view(&g, 0);
    if (ckpt_read(path, &r, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(r.train.step, 6);
    assert_memory_equal(g.opt.v, f->opt.v, f->model.num_params * sizeof(float));
    free_state(&g);
    free_state(f);
}

/* A weights-only file (build/import's): /model alone, no /optimizer or
 * /train.  build/infer's reader finds its dimensions and tensors; --resume
 * refuses it. */
static void test_weights_only_file(void **state)
{
    fixture *f = *state;
    char path[256], err[512];
    make_state(f, 16, 1);
    snprintf(path, sizeof path, "%s/weights.h5", f->dir);
    ckpt_state s = view(f, 0);
    s.weights_only = true;
    s.arena[CKPT_M] = s.arena[CKPT_V] = NULL;   /* not written, so never read */
    if (ckpt_write(path, &s, err, sizeof err) != 0)
        fail_msg("%s", err);
    ckpt_model_file *m;
    gpt2_dims d;
    if (ckpt_model_open(path, &m, &d, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_true(d.vocab_size == 64 && d.n_positions == 16 && d.n_embd == 16 && d.n_layer == 2 &&
                d.n_head == 2);
    const param_tensor *t = &f->model.tensors[f->model.num_tensors - 1];
    float *x = malloc(t->numel * sizeof *x);
    assert_non_null(x);
    if (ckpt_model_tensor(m, t->name, t->shape[0], t->ndim == 2 ? t->shape[1] : 0, x, err,
                          sizeof err) != 0)
        fail_msg("%s", err);
    assert_memory_equal(x, f->model.params + t->offset, t->numel * sizeof *x);
    tokenizer *tok = ckpt_model_tokenizer(m, err, sizeof err);   /* none given: "byte" */
    assert_non_null(tok);
    tokenizer_free(tok);
    ckpt_model_close(m);
    free(x);
    expect_refused(f, path, "/optimizer/m is missing: the model's weights alone (no optimizer state)");
    free_state(f);
}

/* The tokenizer path's file holds, read back as a model file reads it; NULL
 * with the reason in err. */
static tokenizer *stored_tokenizer(const char *path, char *err, size_t errlen)
{
    ckpt_model_file *m;
    gpt2_dims d;
    if (ckpt_model_open(path, &m, &d, err, errlen) != 0)
        return NULL;
    tokenizer *t = ckpt_model_tokenizer(m, err, errlen);
    ckpt_model_close(m);
    return t;
}

/* Writes tok into path (a weights-only file) and reads it back: the same tokenizer. */
static void tokenizer_round_trip(fixture *f, const char *path, const tokenizer *tok)
{
    char err[512];
    ckpt_state s = view(f, 0);
    s.weights_only = true;
    s.tok = tok;
    if (ckpt_write(path, &s, err, sizeof err) != 0)
        fail_msg("%s", err);
    tokenizer *back = stored_tokenizer(path, err, sizeof err);
    if (!back)
        fail_msg("%s", err);
    assert_true(tokenizer_same(back, tok));
    tokenizer_free(back);
}

/* A BPE training that finds nothing to merge (a corpus of one-byte chunks)
 * and a GPT-2 vocabulary without merges make tokenizers with no merges: the
 * file must still load.  Files written before empty lists were stored lack
 * the dataset; they load when vocab_size agrees, and are refused otherwise. */
static void test_tokenizer_without_merges(void **state)
{
    fixture *f = *state;
    char path[256], err[512];
    make_state(f, 16, 1);
    snprintf(path, sizeof path, "%s/tok.h5", f->dir);
    tokenizer *bpe = tokenizer_new_bpe(NULL, 0, TOKENIZER_SPLIT_GPT2, err, sizeof err);
    assert_non_null(bpe);
    tokenizer_round_trip(f, path, bpe);
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(file >= 0 && H5Ldelete(file, "/tokenizer/merges", H5P_DEFAULT) >= 0);
    H5Fclose(file);
    tokenizer *back = stored_tokenizer(path, err, sizeof err);
    if (!back)
        fail_msg("%s", err);
    assert_true(tokenizer_same(back, bpe));
    tokenizer_free(back);
    tokenizer_free(bpe);

    uint32_t one[2] = {'a', 'b'};   /* vocab_size 257: a lost list is not "no merges" */
    bpe = tokenizer_new_bpe(one, 1, TOKENIZER_SPLIT_GPT2, err, sizeof err);
    assert_non_null(bpe);
    tokenizer_round_trip(f, path, bpe);
    tokenizer_free(bpe);
    file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(file >= 0 && H5Ldelete(file, "/tokenizer/merges", H5P_DEFAULT) >= 0);
    H5Fclose(file);
    assert_null(stored_tokenizer(path, err, sizeof err));
    assert_non_null(strstr(err, "vocab_size"));

    uint8_t bytes[256 + sizeof "<|endoftext|>"];
    uint32_t lens[257];
    for (int b = 0; b < 256; b++)
        bytes[b] = (uint8_t)b, lens[b] = 1;
    memcpy(bytes + 256, "<|endoftext|>", 13);
    lens[256] = 13;
    tokenizer *g2 = tokenizer_new_gpt2(bytes, lens, 257, NULL, 0, err, sizeof err);
    if (!g2)
        fail_msg("%s", err);
    tokenizer_round_trip(f, path, g2);
    tokenizer_free(g2);
    /* a gpt2 vocabulary says nothing of its merges: a lost list is refused */
    file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(file >= 0 && H5Ldelete(file, "/tokenizer/merges", H5P_DEFAULT) >= 0);
    H5Fclose(file);
    assert_null(stored_tokenizer(path, err, sizeof err));
    assert_non_null(strstr(err, "/tokenizer/merges is missing"));
    free_state(f);
}

/* A child process doing nothing but saves (a new step each time, state filled
 * from the step number) is SIGKILLed at random moments, 40 times: each time
 * --resume auto's loader must load a checkpoint with nothing skipped, no older
 * than the one before, holding exactly the state of its step. */
static void test_sigkill_during_saves_keeps_the_newest(void **state)
{
    fixture *f = *state, g;
    char path[256], warn[1024], err[512];
    make_state(f, 32, 1);
    make_state(&g, 32, 2);
    size_t n = f->model.num_params;
    float *want = malloc(n * sizeof(float));
    assert_non_null(want);
    unsigned rng = 12345;
    int newest = 0;
    for (int trial = 0; trial < 40; trial++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            for (int step = 1000 * trial + 10;; step++) {   /* >= opt.step */
                test_fill(f->model.params, n, (uint64_t)step, 1.0f);
                ckpt_state s = view(f, step);
                if (ckpt_save(f->dir, &s, 2, path, sizeof path, err, sizeof err) != 0)
                    _exit(1);
            }
        }
        snprintf(path, sizeof path, "%s/latest", f->dir);
        for (int i = 0; trial == 0 && access(path, F_OK) != 0 && i < 10000; i++)
            usleep(1000);   /* the first kill comes after a save */
        usleep(1000 + rand_r(&rng) % 20000);
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        ckpt_state r = view(&g, 0);
        if (ckpt_load_auto(f->dir, &r, path, sizeof path, warn, sizeof warn, err, sizeof err) != 1)
            fail_msg("trial %d: %s", trial, err);
        if (warn[0])
            fail_msg("trial %d: skipped: %s", trial, warn);
        test_fill(want, n, (uint64_t)r.train.step, 1.0f);
        assert_memory_equal(g.model.params, want, n * sizeof(float));
        assert_true(r.train.step >= newest);   /* never an older one than before */
        newest = r.train.step;
    }
    free(want);
    free_state(&g);
    free_state(f);
}

static void test_keeps_the_last_two_and_points_latest(void **state)
{
    fixture *f = *state;
    char path[256], err[256], stale[256];
    make_state(f, 16, 1);
    char note[512];
    snprintf(stale, sizeof stale, "%s/ckpt_000001.h5.tmp", f->dir);   /* a crashed save */
    assert_int_equal(fs_write_file_atomic(stale, "x", 1, err, sizeof err), 0);
    ckpt_remove_stale(f->dir, note, sizeof note);   /* a run starting in the directory */
    assert_string_equal(note, stale);
    assert_int_not_equal(access(stale, F_OK), 0);
    ckpt_remove_stale(f->dir, note, sizeof note);
    assert_string_equal(note, "");
    assert_int_equal(fs_write_file_atomic(stale, "x", 1, err, sizeof err), 0);
    for (int step = 2; step <= 5; step++)
        save(f, step, path, sizeof path);
    assert_int_equal(count_suffix(f->dir, ".h5"), 2);
    assert_int_equal(count_suffix(f->dir, ".tmp"), 0);
    snprintf(path, sizeof path, "%s/ckpt_000004.h5", f->dir);
    assert_int_equal(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/ckpt_000005.h5", f->dir);
    assert_int_equal(access(path, F_OK), 0);
    uint8_t *latest;
    size_t len;
    snprintf(path, sizeof path, "%s/latest", f->dir);
    assert_int_equal(fs_read_file(path, &latest, &len, err, sizeof err), 0);
    assert_string_equal((char *)latest, "ckpt_000005.h5\n");
    free(latest);
    /* a run resumed from an earlier step saves below the newest: its file is
     * kept and named by latest; the later ones are not its to delete */
    save(f, 3, path, sizeof path);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(count_suffix(f->dir, ".h5"), 3);
    snprintf(path, sizeof path, "%s/latest", f->dir);
    assert_int_equal(fs_read_file(path, &latest, &len, err, sizeof err), 0);
    assert_string_equal((char *)latest, "ckpt_000003.h5\n");
    free(latest);
    free_state(f);
}

static void test_auto_falls_back_past_a_damaged_newest(void **state)
{
    fixture *f = *state;
    char path[256], warn[1024], err[512];
    make_state(f, 16, 1);
    ckpt_state s = view(f, 0);
    assert_int_equal(ckpt_load_auto(f->dir, &s, path, sizeof path, warn, sizeof warn, err,
                                    sizeof err), 0);   /* empty: start fresh */
    save(f, 4, path, sizeof path);
    save(f, 8, path, sizeof path);
    copy_prefix(path, path, 0.6);   /* the newest, which latest names, is damaged */
    assert_int_equal(ckpt_load_auto(f->dir, &s, path, sizeof path, warn, sizeof warn, err,
                                    sizeof err), 1);
    assert_int_equal(s.train.step, 4);
    assert_non_null(strstr(path, "ckpt_000004.h5"));
    assert_non_null(strstr(warn, "ckpt_000008.h5"));
    snprintf(path, sizeof path, "%s/ckpt_000004.h5", f->dir);
    copy_prefix(path, path, 0.6);   /* none loads: an error, not a fresh start */
    assert_int_equal(ckpt_load_auto(f->dir, &s, path, sizeof path, warn, sizeof warn, err,
                                    sizeof err), -1);
    assert_non_null(strstr(err, "no checkpoint"));
    free_state(f);
}

/* The checkpoint whose dimensions ckpt_auto_dims gives is the one
 * ckpt_load_auto loads: a run sizes its model from the file it resumes. */
static void assert_auto_dims_name(const char *dir, const char *loaded)
{
    char path[256];
    gpt2_dims d;
    assert_int_equal(ckpt_auto_dims(dir, &d, path, sizeof path), 1);
    assert_string_equal(path, loaded);
}

/* A run that went back to step 4 saved 6: latest names 6, and 8 is the
 * abandoned run's.  With 6 damaged, 4 comes before 8; with 4 damaged too, 8. */
static void test_auto_prefers_steps_up_to_latest(void **state)
{
    fixture *f = *state;
    char path[256], warn[1024], err[512];
    make_state(f, 16, 1);
    ckpt_state s = view(f, 0);
    save(f, 4, path, sizeof path);
    save(f, 8, path, sizeof path);
    save(f, 6, path, sizeof path);
    assert_auto_dims_name(f->dir, path);
    copy_prefix(path, path, 0.6);
    assert_int_equal(ckpt_load_auto(f->dir, &s, path, sizeof path, warn, sizeof warn, err,
                                    sizeof err), 1);
    assert_int_equal(s.train.step, 4);
    assert_auto_dims_name(f->dir, path);
    snprintf(path, sizeof path, "%s/ckpt_000004.h5", f->dir);
    copy_prefix(path, path, 0.6);
    assert_int_equal(ckpt_load_auto(f->dir, &s, path, sizeof path, warn, sizeof warn, err,
                                    sizeof err), 1);
    assert_int_equal(s.train.step, 8);
    assert_auto_dims_name(f->dir, path);
    free_state(f);
}

static void test_name_steps(void **state)
{
    (void)state;
    assert_int_equal(ckpt_name_step("ckpt_000012.h5"), 12);
    assert_int_equal(ckpt_name_step("ckpt_1234567.h5"), 1234567);
    /* max_steps goes up to INT_MAX: its checkpoints' names have 10 digits */
    assert_int_equal(ckpt_name_step("ckpt_1000000000.h5"), 1000000000);
    assert_int_equal(ckpt_name_step("ckpt_2147483647.h5"), 2147483647);
    assert_int_equal(ckpt_name_step("ckpt_2147483648.h5"), -1);
    assert_int_equal(ckpt_name_step("ckpt_00000000001.h5"), -1);
    assert_int_equal(ckpt_name_step("ckpt_000012.h5.tmp"), -1);
    assert_int_equal(ckpt_name_step("ckpt_.h5"), -1);
    assert_int_equal(ckpt_name_step("latest"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_is_bit_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_dimensions_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_files_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_anywhere_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_files_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_moments_one_tensor_at_a_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_writer_at_a_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_weights_only_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokenizer_without_merges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_during_saves_keeps_the_newest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keeps_the_last_two_and_points_latest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auto_prefers_steps_up_to_latest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auto_falls_back_past_a_damaged_newest, setup, teardown),
        cmocka_unit_test(test_name_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
