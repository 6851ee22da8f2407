/* replay: runs a fuzz target on saved inputs without libFuzzer, so `make test`
 * checks every seed and every regression input with the ordinary compiler
 * (and under ASan+UBSan with SAN=1).
 *   build/tests/fuzz_NAME [FILE|DIR ...]
 * With no argument: tests/fuzz/corpus/NAME and tests/fuzz/regress/NAME (NAME
 * from the program's own name), of which the seed corpus must exist. */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>

#include "io/fsutil.h"
#include "tests/fuzz/fuzz.h"

__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Runs the target on one file; -1 if it cannot be read. */
static int replay_file(const char *path)
{
    uint8_t *data;
    size_t len;
    char err[512];
    if (fs_read_file(path, &data, &len, err, sizeof err) != 0) {
        fprintf(stderr, "replay: %s\n", err);
        return -1;
    }
    /* an exact-size copy, so that ASan sees a read past the input's end */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(data);
        return -1;
    }
    memcpy(exact, data, len);
    free(data);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

/* Runs every regular file of a directory, or the file itself; the count in *n. */
static int replay_path(const char *path, int *n)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        ++*n;
        return replay_file(path);
    }
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        char file[4096];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        if (e->d_name[0] != '.' && stat(file, &st) == 0 && S_ISREG(st.st_mode)) {
            ++*n;
            rc = replay_file(file);
        }
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    char self[1024], corpus[1100], regress[1100];
    snprintf(self, sizeof self, "%s", argv[0]);
    const char *name = basename(self);
    if (strncmp(name, "fuzz_", 5) == 0)
        name += 5;
    int n = 0, rc = 0;
    if (argc > 1) {
        for (int i = 1; i < argc && rc == 0; i++)
            rc = replay_path(argv[i], &n);
    } else {
        snprintf(corpus, sizeof corpus, "tests/fuzz/corpus/%s", name);
        snprintf(regress, sizeof regress, "tests/fuzz/regress/%s", name);
        struct stat st;
        rc = replay_path(corpus, &n);
        if (rc == 0 && stat(regress, &st) == 0)
            rc = replay_path(regress, &n);
    }
    if (rc == 0 && n == 0) {
        fprintf(stderr, "replay: fuzz_%s: no inputs\n", name);
        rc = -1;
    }
    if (rc == 0)
        fprintf(stderr, "fuzz_%s: %d inputs replayed\n", name, n);   /* stdout may be the target's */
    return rc == 0 ? 0 : 1;
}
