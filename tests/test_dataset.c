/* A data directory before training: the manifest ties its files together
 * (a file from another preparation is refused, naming it), the tokenizer must
 * load and fit the model, and directories are replaced whole.  fs_checksum
 * equals the checkpoint format's ckpt_checksum on whole words; fs_map_file
 * maps a file whole, an empty one as nothing, and says why it cannot.  A
 * killed writer's temporary directory is removed by the next writer beside
 * it, a live writer's is not; a file has one atomic writer at a time, and
 * its PATH.tmp goes with a writer that SIGINT or SIGTERM ends. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/dataset.h"
#include "io/fsutil.h"
#include "io/tokenizer.h"
#include "tests/test_util.h"
#include "tests/test_writer.h"

static char root[64];

static int make_root(void **state)
{
    (void)state;
    strcpy(root, "/tmp/test_dataset.XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int remove_root(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    return system(cmd);
}

/* A complete dataset in root/name: n train tokens (offset by shift), 40 val
 * tokens, tokenizer t, and its manifest. */
static void make_dataset(const char *name, int n, int shift, const tokenizer *t)
{
    char dir[128], path[192], err[256];
    uint32_t toks[200];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    assert_int_equal(fs_mkdir_p(dir, err, sizeof err), 0);
    for (int i = 0; i < 200; i++)
        toks[i] = (uint32_t)((i * 7 + shift) % 256);
    snprintf(path, sizeof path, "%s/train.tok", dir);
    assert_int_equal(shard_write(path, toks, (uint64_t)n, 256, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/val.tok", dir);
    assert_int_equal(shard_write(path, toks + 100, 40, 256, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    assert_int_equal(tokenizer_save(t, path, err, sizeof err), 0);
    assert_int_equal(dataset_write_manifest(dir, err, sizeof err), 0);
}

static void copy_file(const char *from, const char *to)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "cp %s/%s %s/%s", root, from, root, to);
    assert_int_equal(system(cmd), 0);
}

static void expect_refused(const char *name, int vocab, const char *what)
{
    char dir[128], err[512] = "";
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    assert_int_equal(dataset_check(dir, vocab, err, sizeof err), -1);
    if (!strstr(err, what))
        fail_msg("expected \"%s\" in: %s", what, err);
    assert_null(strchr(err, '\n'));
}

static void test_manifest_finds_mixed_files(void **state)
{
    (void)state;
    tokenizer *byte = tokenizer_new_byte();
    char dir[128], err[512];
    make_dataset("a", 100, 0, byte);
    make_dataset("b", 100, 1, byte);   /* same sizes, other tokens */
    make_dataset("c", 120, 0, byte);   /* another size */
    snprintf(dir, sizeof dir, "%s/a", root);
    assert_int_equal(dataset_check(dir, 256, err, sizeof err), 0);
    assert_int_equal(dataset_check(dir, 300, err, sizeof err), 0);   /* padded vocab_size */

    copy_file("b/train.tok", "a/train.tok");
    expect_refused("a", 256, "train.tok: its checksum differs");
    copy_file("c/train.tok", "a/train.tok");
    expect_refused("a", 256, "train.tok: its size differs");
    copy_file("b/val.tok", "c/val.tok");
    expect_refused("c", 256, "val.tok: its checksum differs");

    snprintf(dir, sizeof dir, "%s/b/manifest.json", root);
    unlink(dir);
    expect_refused("b", 256, "manifest.json: cannot open");
    fs_write_file_atomic(dir, "{\"files\": 3}", 12, err, sizeof err);
    expect_refused("b", 256, "not a dataset manifest");
    fs_write_file_atomic(dir, "[", 1, err, sizeof err);
    expect_refused("b", 256, "not a dataset manifest");
    tokenizer_free(byte);
}

static void test_tokenizer_checked_before_training(void **state)
{
    (void)state;
    char dir[128], path[192], err[512];
    tokenizer *byte = tokenizer_new_byte();
    make_dataset("t", 100, 0, byte);
    snprintf(dir, sizeof dir, "%s/t", root);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);

    /* corrupt, yet consistent with the manifest (written after it) */
    fs_write_file_atomic(path, "{\"type\": \"byte\"", 15, err, sizeof err);
    assert_int_equal(dataset_write_manifest(dir, err, sizeof err), 0);
    expect_refused("t", 256, "tokenizer.json");

    /* a BPE vocabulary larger than the model's */
    const uint32_t merges[] = {97, 98, 256, 99};
    tokenizer *bpe = tokenizer_new_bpe(merges, 2, TOKENIZER_SPLIT_GPT2, err, sizeof err);
    assert_non_null(bpe);
    assert_int_equal(tokenizer_save(bpe, path, err, sizeof err), 0);
    assert_int_equal(dataset_write_manifest(dir, err, sizeof err), 0);
    expect_refused("t", 257, "a vocabulary of 258 tokens does not fit the model's vocab_size 257");
    assert_int_equal(dataset_check(dir, 258, err, sizeof err), 0);

    /* shards whose tokens go beyond the tokenizer's vocabulary */
    uint32_t toks[50];
    for (int i = 0; i < 50; i++)
        toks[i] = (uint32_t)i;
    snprintf(path, sizeof path, "%s/val.tok", dir);
    assert_int_equal(shard_write(path, toks, 50, 300, err, sizeof err), 0);
    assert_int_equal(dataset_write_manifest(dir, err, sizeof err), 0);
    expect_refused("t", 400, "val.tok: tokens go up to 300 but tokenizer.json has 258");

    /* missing: the manifest names it */
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    unlink(path);
    expect_refused("t", 400, "tokenizer.json: cannot open");
    tokenizer_free(byte);
    tokenizer_free(bpe);
}

static bool is_empty_dir(const char *dir)
{
    char cmd[320];
    snprintf(cmd, sizeof cmd, "test -d %s && test -z \"$(ls -A %s)\"", dir, dir);
    return system(cmd) == 0;
}

static void test_directories_replaced_whole(void **state)
{
    (void)state;
    char dir[128], tmp[192], path[256], err[512], note[512];
    int lock;
    tokenizer *byte = tokenizer_new_byte();
    make_dataset("old", 100, 0, byte);
    snprintf(dir, sizeof dir, "%s/old", root);
    assert_int_equal(fs_temp_dir_beside(dir, tmp, sizeof tmp, &lock, note, sizeof note, err,
                                        sizeof err), 0);
    assert_string_equal(note, "");
    assert_non_null(strstr(tmp, "/old.tmp-"));
    snprintf(path, sizeof path, "%s/only-new", tmp);
    assert_int_equal(fs_write_file_atomic(path, "x", 1, err, sizeof err), 0);
    assert_int_equal(fs_replace_dir(tmp, dir, err, sizeof err), 0);
    fs_unlock_dir(lock);
    struct stat st;
    snprintf(path, sizeof path, "%s/only-new", dir);
    assert_int_equal(stat(path, &st), 0);
    snprintf(path, sizeof path, "%s/train.tok", dir);
    assert_int_not_equal(stat(path, &st), 0);   /* nothing of the old one is left */
    assert_int_not_equal(stat(tmp, &st), 0);

    snprintf(dir, sizeof dir, "%s/fresh/", root);   /* a new name, with a trailing slash */
    assert_int_equal(fs_temp_dir_beside(dir, tmp, sizeof tmp, &lock, note, sizeof note, err,
                                        sizeof err), 0);
    assert_int_equal(fs_replace_dir(tmp, dir, err, sizeof err), 0);
    fs_unlock_dir(lock);
    assert_true(is_empty_dir(dir));

    assert_true(dataset_owns_name("train.tok") && dataset_owns_name("manifest.json") &&
                dataset_owns_name("val.tok.tmp"));
    assert_false(dataset_owns_name("input.txt"));
    tokenizer_free(byte);
}

/* A temporary directory beside root/data with a file being written in it. */
static int begin_dir(void *arg, int ready)
{
    char dir[128], tmp[192], path[256], err[512], note[512];
    int lock;
    snprintf(dir, sizeof dir, "%s/data", root);
    if (fs_temp_dir_beside(dir, tmp, sizeof tmp, &lock, note, sizeof note, err, sizeof err) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/train.tok.tmp", tmp);
    if (fs_write_file_atomic(path, "x", 1, err, sizeof err) != 0)
        return -1;
    return test_writer_ready(ready, tmp);
}

/* A writer killed mid-way leaves its DIR.tmp-XXXXXX (and fs_replace_dir's
 * DIR.tmp-XXXXXX.old): the next writer beside DIR removes those and names
 * them, and leaves a live writer's folder, and other names, alone. */
static void test_killed_writers_folders_removed(void **state)
{
    (void)state;
    char dir[128], live[192], dead[192], old[256], tmp[192], note[1024], err[512];
    const char *keep[] = {"data.tmp-abc12", "data.tmp-abc1234", "data.tmp-ab.c12", "data2.tmp-abc123",
                          "other.tmp-abc123", "data.tmp"};
    snprintf(dir, sizeof dir, "%s/data", root);
    pid_t live_pid = test_writer_start(begin_dir, NULL, live, sizeof live);
    test_writer_kill(test_writer_start(begin_dir, NULL, dead, sizeof dead));
    snprintf(old, sizeof old, "%s/data.tmp-Zz09aB.old", root);
    assert_int_equal(fs_mkdir_p(old, err, sizeof err), 0);
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        snprintf(tmp, sizeof tmp, "%s/%s", root, keep[i]);
        assert_int_equal(fs_mkdir_p(tmp, err, sizeof err), 0);
    }

    int lock;
    assert_int_equal(fs_temp_dir_beside(dir, tmp, sizeof tmp, &lock, note, sizeof note, err,
                                        sizeof err), 0);
    struct stat st;
    assert_int_not_equal(lstat(dead, &st), 0);
    assert_int_not_equal(lstat(old, &st), 0);
    assert_non_null(strstr(note, dead));
    assert_non_null(strstr(note, old));
    assert_null(strstr(note, live));
    assert_non_null(strstr(note, ": left by an interrupted write of "));
    assert_non_null(strstr(note, dir));
    assert_null(strchr(note, '\n'));
    char path[256];
    snprintf(path, sizeof path, "%s/train.tok.tmp", live);
    assert_int_equal(stat(path, &st), 0);   /* the live writer's file is untouched */
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", root, keep[i]);
        assert_int_equal(stat(path, &st), 0);
    }

    /* this writer's own folder is live to another one; once it is gone, the
     * live writer's is a dead one's */
    char again[192];
    int lock2;
    assert_int_equal(fs_temp_dir_beside(dir, again, sizeof again, &lock2, note, sizeof note, err,
                                        sizeof err), 0);
    assert_string_equal(note, "");
    assert_int_equal(stat(tmp, &st), 0);
    fs_remove_dir(again);
    fs_unlock_dir(lock2);
    test_writer_kill(live_pid);
    assert_int_equal(fs_replace_dir(tmp, dir, err, sizeof err), 0);
    fs_unlock_dir(lock);
    assert_int_equal(fs_temp_dir_beside(dir, again, sizeof again, &lock2, note, sizeof note, err,
                                        sizeof err), 0);
    assert_int_not_equal(lstat(live, &st), 0);
    assert_non_null(strstr(note, live));
    fs_remove_dir(again);
    fs_unlock_dir(lock2);
}

/* Two writers of one file: the second is refused while the first lives (its
 * PATH.tmp untouched), and takes the PATH.tmp over once the first is killed. */
static void test_atomic_write_one_writer_at_a_time(void **state)
{
    (void)state;
    char path[128], tmp[160], err[512], begun[8];
    snprintf(path, sizeof path, "%s/f.json", root);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    pid_t pid = test_writer_start(test_writer_begin_file, path, begun, sizeof begun);
    fs_atomic a;
    assert_int_equal(fs_atomic_begin(&a, path, err, sizeof err), -1);
    assert_non_null(strstr(err, "another process is writing it"));
    uint8_t *text;
    size_t len;
    assert_int_equal(fs_read_file(tmp, &text, &len, err, sizeof err), 0);
    assert_string_equal((char *)text, "first");
    free(text);
    assert_int_not_equal(access(path, F_OK), 0);

    test_writer_kill(pid);   /* killed mid-write: its PATH.tmp stays, unlocked */
    assert_int_equal(fs_write_file_atomic(path, "second", 6, err, sizeof err), 0);
    assert_int_equal(fs_read_file(path, &text, &len, err, sizeof err), 0);
    assert_string_equal((char *)text, "second");
    free(text);
    assert_int_not_equal(access(tmp, F_OK), 0);
}

/* A file or folder to write in a directory that does not exist: the reason
 * names the path the user gave and the missing directory, not the temporary
 * name (PATH.tmp, PATH.tmp-XXXXXX) the write goes through. */
static void test_missing_directory_named(void **state)
{
    (void)state;
    char path[128], want[256], err[512], tmp[256], note[64];
    snprintf(path, sizeof path, "%s/missing/f.h5", root);
    snprintf(want, sizeof want, "%s: cannot create: the directory %s/missing does not exist", path,
             root);
    fs_atomic a;
    assert_int_equal(fs_atomic_begin(&a, path, err, sizeof err), -1);
    assert_string_equal(err, want);
    snprintf(path, sizeof path, "%s/missing/folder/", root);
    snprintf(want, sizeof want,
             "%s/missing/folder: cannot create directory: the directory %s/missing does not exist",
             root, root);
    int lock;
    assert_int_equal(fs_temp_dir_beside(path, tmp, sizeof tmp, &lock, note, sizeof note, err,
                                        sizeof err), -1);
    assert_string_equal(err, want);
}

/* root/f.json being written (test_writer_begin_file) by a program that asked
 * for fs_atomic_remove_on_signals, started with the default actions, or
 * ignoring SIGHUP (nohup) when arg is set. */
static int begin_file_removed_on_signals(void *arg, int ready)
{
    char path[128];
    snprintf(path, sizeof path, "%s/f.json", root);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, arg ? SIG_IGN : SIG_DFL);
    fs_atomic_remove_on_signals();
    return test_writer_begin_file(path, ready);
}

/* A writer ended by SIGINT, SIGTERM or SIGHUP (Ctrl-C, a timeout, a closed
 * terminal) takes its PATH.tmp along and still dies of the signal; one it
 * ignores stays ignored. */
static void test_atomic_write_removed_on_signals(void **state)
{
    (void)state;
    char path[128], tmp[160], begun[8];
    snprintf(path, sizeof path, "%s/f.json", root);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 4; i++) {
        const bool nohup = i == 3;
        pid_t pid = test_writer_start(begin_file_removed_on_signals, nohup ? "nohup" : NULL, begun,
                                      sizeof begun);
        assert_int_equal(access(tmp, F_OK), 0);
        int status, sig = nohup ? SIGTERM : sigs[i];
        if (nohup)
            kill(pid, SIGHUP);   /* taken before SIGTERM (the lower number) were it not ignored */
        kill(pid, sig);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), sig);
        assert_int_not_equal(access(tmp, F_OK), 0);
        assert_int_not_equal(access(path, F_OK), 0);
    }
}

static void test_checksum_matches_the_checkpoint_format(void **state)
{
    (void)state;
    float x[37];
    test_fill(x, 37, 3, 1.0f);
    for (size_t n = 0; n <= 37; n++)
        assert_true(fs_checksum(x, n * 4) == ckpt_checksum(x, n));
    /* the values checkpoints have always carried (computed before fs_checksum existed) */
    assert_true(ckpt_checksum(x, 37) == 0x1928a06523ea84c5ull);
    assert_true(ckpt_checksum(x, 36) == 0x3d3f86c769418cfeull);
    uint8_t b[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    for (size_t n = 1; n < 16; n++) {   /* a tail byte changes it, and so does the length */
        assert_true(fs_checksum(b, n) != fs_checksum(b, n - 1));
        uint8_t c[16];
        memcpy(c, b, 16);
        c[n - 1] ^= 1;
        assert_true(fs_checksum(c, n) != fs_checksum(b, n));
    }
}

/* fs_checksum_file reads in blocks of 1 MiB: the sum of the bytes in memory, for
 * sizes around the block and the words' edges. */
static void test_checksum_file_in_blocks(void **state)
{
    (void)state;
    const size_t sizes[] = {1, 3, 4, 7, 8, 33, 1 << 20, (1 << 20) + 5, (3 << 20) + 12, (3 << 20) + 13};
    size_t most = (3 << 20) + 13;
    uint8_t *b = malloc(most);
    for (size_t i = 0; i < most; i++)
        b[i] = (uint8_t)(i * 2654435761u >> 13);
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/sum", root);
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        assert_int_equal(fs_write_file_atomic(path, b, sizes[i], err, sizeof err), 0);
        uint64_t bytes, sum;
        assert_int_equal(fs_checksum_file(path, &bytes, &sum, err, sizeof err), 0);
        assert_int_equal(bytes, sizes[i]);
        assert_true(sum == fs_checksum(b, sizes[i]));
    }
    unlink(path);
    free(b);
}

static void test_map_file(void **state)
{
    (void)state;
    char path[128], err[256];
    const void *data;
    size_t len;
    snprintf(path, sizeof path, "%s/five", root);
    assert_int_equal(fs_write_file_atomic(path, "abcde", 5, err, sizeof err), 0);
    assert_int_equal(fs_map_file(path, &data, &len, err, sizeof err), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(data, "abcde", 5);
    fs_unmap_file(data, len);

    snprintf(path, sizeof path, "%s/empty", root);
    assert_int_equal(fs_write_file_atomic(path, "", 0, err, sizeof err), 0);
    assert_int_equal(fs_map_file(path, &data, &len, err, sizeof err), 0);
    assert_null(data);
    assert_int_equal(len, 0);
    fs_unmap_file(data, len);   /* nothing to do */
    uint64_t bytes = 1, sum;
    assert_int_equal(fs_checksum_file(path, &bytes, &sum, err, sizeof err), 0);
    assert_true(bytes == 0 && sum == fs_checksum(NULL, 0));

    snprintf(path, sizeof path, "%s/missing", root);
    assert_int_equal(fs_map_file(path, &data, &len, err, sizeof err), -1);
    assert_null(data);
    assert_non_null(strstr(err, "/missing: cannot open: No such file or directory"));
    assert_int_equal(fs_map_file(root, &data, &len, err, sizeof err), -1);
    assert_non_null(strstr(err, ": not a regular file"));
}

/* Writes root/d/NAME: n tokens 0, 1, ... (mod 256). */
static void write_split(const char *name, uint32_t n)
{
    char path[192], err[256];
    uint32_t *toks = malloc(n * sizeof *toks);
    for (uint32_t i = 0; i < n; i++)
        toks[i] = i % 256;
    snprintf(path, sizeof path, "%s/d/%s", root, name);
    assert_int_equal(shard_write(path, toks, n, 256, err, sizeof err), 0);
    free(toks);
}

/* Sets the time of last change of root/d/train.tok t seconds from what it
 * is: a rewrite within the file system's clock tick keeps the old time. */
static void shift_mtime(int t)
{
    char path[192];
    struct stat st;
    snprintf(path, sizeof path, "%s/d/train.tok", root);
    assert_int_equal(stat(path, &st), 0);
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    times[1].tv_sec += t;
    assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
}

/* A split rewritten in place under a running reader (cp over it, a
 * truncation) is refused, naming it, where the reader used to die of SIGBUS
 * on a page the file no longer had, or train on whatever the file now held;
 * a new file renamed over it (build/prep's way) leaves the reader on the old. */
static void test_split_changed_under_the_run(void **state)
{
    (void)state;
    char dir[128], path[192], err[512];
    snprintf(dir, sizeof dir, "%s/d", root);
    assert_int_equal(fs_mkdir_p(dir, err, sizeof err), 0);
    write_split("train.tok", 50000);   /* many pages: a truncation takes them away */
    write_split("val.tok", 100);
    dataset d;
    assert_int_equal(dataset_open(&d, dir, 8, 256, 1, err, sizeof err), 0);
    int in[4 * 8], tg[4 * 8];
    assert_int_equal(dataset_train_batch(&d, 0, 4, in, tg, err, sizeof err), 0);
    /* prep's replacement: another file under the name, the mapped one intact */
    write_split("train.tok", 60000);
    assert_int_equal(dataset_train_batch(&d, 0, 4, in, tg, err, sizeof err), 0);
    dataset_close(&d);

    assert_int_equal(dataset_open(&d, dir, 8, 256, 1, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/train.tok", dir);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "\7\0\7\0", 4, 4000), 4);   /* same size, other tokens */
    close(fd);
    shift_mtime(1);
    assert_int_equal(dataset_train_batch(&d, 0, 4, in, tg, err, sizeof err), -1);
    assert_non_null(strstr(err, "train.tok was rewritten in place while the run read it"));
    assert_int_equal(truncate(path, 0), 0);
    assert_int_equal(dataset_train_batch(&d, 0, 4, in, tg, err, sizeof err), -1);
    assert_non_null(strstr(err, "train.tok was resized while the run read it"));
    assert_int_equal(dataset_val_batch(&d, 0, 4, in, tg, err, sizeof err), 0);   /* untouched */
    dataset_close(&d);
}

/* A split of T+1 tokens holds one window of T+1: training has one sample
 * (every batch repeats it) and the val split one window.  T train tokens are
 * too few; T val tokens are no window, for the trainer to refuse if it
 * evaluates. */
static void test_split_of_one_window(void **state)
{
    (void)state;
    char dir[128], err[512];
    snprintf(dir, sizeof dir, "%s/d", root);
    assert_int_equal(fs_mkdir_p(dir, err, sizeof err), 0);
    write_split("train.tok", 9);
    write_split("val.tok", 9);
    dataset d;
    if (dataset_open(&d, dir, 8, 256, 1, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(dataset_train_samples(&d), 1);
    assert_int_equal(dataset_val_windows(&d), 1);
    int in[2 * 8], tg[2 * 8];
    assert_int_equal(dataset_train_batch(&d, 0, 2, in, tg, err, sizeof err), 0);
    for (int t = 0; t < 16; t++) {
        assert_int_equal(in[t], t % 8);
        assert_int_equal(tg[t], t % 8 + 1);
    }
    assert_int_equal(dataset_val_batch(&d, 0, 1, in, tg, err, sizeof err), 0);
    assert_int_equal(tg[7], 8);
    dataset_close(&d);
    write_split("val.tok", 8);
    if (dataset_open(&d, dir, 8, 256, 1, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(dataset_val_windows(&d), 0);
    dataset_close(&d);
    write_split("train.tok", 8);
    assert_int_equal(dataset_open(&d, dir, 8, 256, 1, err, sizeof err), DATASET_TOO_SHORT);
    assert_non_null(strstr(err, "train.tok: 8 tokens is too few for windows of 8+1 tokens"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_manifest_finds_mixed_files, make_root, remove_root),
        cmocka_unit_test_setup_teardown(test_tokenizer_checked_before_training, make_root, remove_root),
        cmocka_unit_test_setup_teardown(test_directories_replaced_whole, make_root, remove_root),
        cmocka_unit_test_setup_teardown(test_killed_writers_folders_removed, make_root, remove_root),
        cmocka_unit_test_setup_teardown(test_atomic_write_one_writer_at_a_time, make_root, remove_root),
        cmocka_unit_test_setup_teardown(test_atomic_write_removed_on_signals, make_root, remove_root),
        cmocka_unit_test_setup_teardown(test_missing_directory_named, make_root, remove_root),
        cmocka_unit_test(test_checksum_matches_the_checkpoint_format),
        cmocka_unit_test_setup_teardown(test_checksum_file_in_blocks, make_root, remove_root),
        cmocka_unit_test_setup_teardown(test_map_file, make_root, remove_root),
        cmocka_unit_test_setup_teardown(test_split_changed_under_the_run, make_root, remove_root),
        cmocka_unit_test_setup_teardown(test_split_of_one_window, make_root, remove_root),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
