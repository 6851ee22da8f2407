/* checkpoint: a tiny model and optimizer state round-trip bit-exactly; files
 * with other model dimensions, truncated, bit-flipped or foreign files are
 * refused with a one-line reason; keep_checkpoints, the latest pointer, no
 * *.tmp left behind; --resume auto falls back past a damaged newest file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/fsutil.h"
#include "tests/test_util.h"

typedef struct {
    run_config cfg;
    gpt2 model;
    adamw_state opt;
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
}

static void free_state(fixture *f)
{
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
    return (ckpt_state){.cfg = &f->cfg, .model = &f->model, .opt = &f->opt,
                        .train = {.step = step, .tokens_seen = 1000u * step,
                                  .data_cursor = 10u * step, .seed = 42, .loss_scale = 1}};
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
    tokenizer *tok = tokenizer_new_bpe(merges, 2, err, sizeof err);
    assert_non_null(tok);
    ckpt_state s = view(f, 5);
    s.tok = tok;
    snprintf(path, sizeof path, "%s/one.h5", f->dir);
    assert_int_equal(ckpt_write(path, &s, err, sizeof err), 0);
    tokenizer_free(tok);

    make_state(&g, 16, 99);   /* different contents, same shapes */
    ckpt_state r = view(&g, 0);
    if (ckpt_read(path, &r, err, sizeof err) != 0)
        fail_msg("%s", err);
    size_t bytes = f->model.num_params * sizeof(float);
    assert_memory_equal(g.model.params, f->model.params, bytes);
    assert_memory_equal(g.opt.m, f->opt.m, bytes);
    assert_memory_equal(g.opt.v, f->opt.v, bytes);
    assert_int_equal(g.opt.step, 2);
    assert_int_equal(r.train.step, 5);
    assert_int_equal(r.train.tokens_seen, 5000);
    assert_int_equal(r.train.data_cursor, 50);
    assert_int_equal(r.train.seed, 42);
    assert_true(r.train.loss_scale == 1.0);

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

static void test_keeps_the_last_two_and_points_latest(void **state)
{
    fixture *f = *state;
    char path[256], err[256], stale[256];
    make_state(f, 16, 1);
    snprintf(stale, sizeof stale, "%s/ckpt_000001.h5.tmp", f->dir);   /* a crashed save */
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

static void test_name_steps(void **state)
{
    (void)state;
    assert_int_equal(ckpt_name_step("ckpt_000012.h5"), 12);
    assert_int_equal(ckpt_name_step("ckpt_1234567.h5"), 1234567);
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
        cmocka_unit_test_setup_teardown(test_keeps_the_last_two_and_points_latest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auto_falls_back_past_a_damaged_newest, setup, teardown),
        cmocka_unit_test(test_name_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
