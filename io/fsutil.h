/* fsutil: whole-file reads and crash-safe writes shared by the io/ modules.
 *
 * Atomic writes go to PATH.tmp, are fsynced, renamed over PATH and the directory
 * is fsynced, so PATH holds either the old or the complete new contents.
 * Every function returns 0 on success, -1 with a one-line reason in err.
 */
#ifndef IO_FSUTIL_H
#define IO_FSUTIL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int fd;
    char *path;   /* final name */
    char *tmp;    /* PATH.tmp */
} fs_atomic;

int fs_atomic_begin(fs_atomic *a, const char *path, char *err, size_t errlen);
int fs_atomic_write(fs_atomic *a, const void *buf, size_t n, char *err, size_t errlen);
/* fsync + rename + fsync of the directory; releases a either way. */
int fs_atomic_commit(fs_atomic *a, char *err, size_t errlen);
/* Drops the temporary file; safe after a failed write. */
void fs_atomic_abort(fs_atomic *a);

int fs_write_file_atomic(const char *path, const void *buf, size_t n, char *err, size_t errlen);

/* fsync of a file by name (data written by another library, e.g. HDF5), and
 * of the directory holding path (a rename is durable only once it is on disk). */
int fs_fsync_file(const char *path, char *err, size_t errlen);
int fs_fsync_parent(const char *path, char *err, size_t errlen);

/* Reads the whole file into a malloc'd buffer (NUL-terminated, not counted in *len). */
int fs_read_file(const char *path, uint8_t **data, size_t *len, char *err, size_t errlen);

/* mkdir -p with mode 0755. */
int fs_mkdir_p(const char *dir, char *err, size_t errlen);

#endif
