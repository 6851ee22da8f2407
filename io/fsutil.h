/* fsutil: whole-file reads and maps, and crash-safe writes, shared by the io/ modules.
 *
 * Atomic writes go to PATH.tmp, are fsynced, renamed over PATH and the directory
 * is fsynced, so PATH holds either the old or the complete new contents.
 * PATH.tmp is locked (flock) while it is written: fs_atomic_begin refuses a
 * PATH that another live process is writing, and takes over the PATH.tmp a
 * killed writer left.
 * Every function returns 0 on success, -1 with a one-line reason in err.
 */
#ifndef IO_FSUTIL_H
#define IO_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Formats a one-line reason into err (printf-style) and returns -1, so that
 * an error path reads `return fs_fail(err, errlen, "...", ...);`. */
int fs_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Replaces each control character of s (below 0x20, 0x7f, and the C1
 * controls U+0080..U+009F in UTF-8, which terminals take as commands: U+009B
 * is CSI) with '?' (one per byte), so that a reason quoting a file's text (a
 * tensor name, a token) stays one printable line. */
void fs_printable(char *s);

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

/* For a program that writes one large file at a time (export, import): from
 * now on SIGINT, SIGTERM and SIGHUP delete the PATH.tmp being written (it is
 * this process's: locked) before they end the process as they would have.  A
 * signal the process ignores (nohup, a background job) stays ignored. */
void fs_atomic_remove_on_signals(void);

/* fsync of a file by name (data written by another library, e.g. HDF5), and
 * of the directory holding path (a rename is durable only once it is on disk). */
int fs_fsync_file(const char *path, char *err, size_t errlen);
int fs_fsync_parent(const char *path, char *err, size_t errlen);

/* Reads the whole file into a malloc'd buffer (NUL-terminated, not counted in *len). */
int fs_read_file(const char *path, uint8_t **data, size_t *len, char *err, size_t errlen);
/* The same for a file that is small by nature (a config, a pointer file):
 * more than max bytes is an error, so /dev/zero or a FIFO that never ends
 * given by mistake is refused instead of filling the memory. */
int fs_read_file_max(const char *path, size_t max, uint8_t **data, size_t *len, char *err,
                     size_t errlen);
/* Maps a whole regular file read-only: *data, *len bytes, until
 * fs_unmap_file.  An empty file is not mapped: *data NULL, *len 0. */
int fs_map_file(const char *path, const void **data, size_t *len, char *err, size_t errlen);
/* fs_map_file that also leaves the file open in *fd (the caller closes it),
 * so that the mapped file itself can be watched (fstat) after its name has
 * moved on. */
int fs_map_file_fd(const char *path, const void **data, size_t *len, int *fd, char *err,
                   size_t errlen);
void fs_unmap_file(const void *data, size_t len);

/* Whether DIR/NAME exists (a folder's optional files: which of them a reader
 * takes), with DIR/NAME in path (cap bytes; NULL: not wanted).  A DIR/NAME
 * longer than path holds does not exist: cut short, it could name another. */
bool fs_dir_has(const char *dir, const char *name, char *path, size_t cap);

/* -1 with "PATH already exists (choose a new WHAT)" when anything (even a
 * dangling symlink) has that name: the tools that write a new file or folder
 * never replace one, which may be the very file they read. */
int fs_require_new(const char *path, const char *what, char *err, size_t errlen);

/* Holds DIR/lock (an exclusive flock, released when the process ends or
 * fs_unlock_dir closes the returned descriptor): one writer per directory.
 * The descriptor, or -1 with "DIR is in use by process PID" when another
 * process holds it, or the OS reason. */
int fs_lock_dir(const char *dir, char *err, size_t errlen);
void fs_unlock_dir(int fd);

/* mkdir -p with mode 0755. */
int fs_mkdir_p(const char *dir, char *err, size_t errlen);

/* A fast 64-bit checksum of bytes (not cryptographic: it finds damaged or
 * mismatched files).  For a multiple of 4 bytes it equals ckpt_checksum of
 * them as floats, the checkpoint format's. */
uint64_t fs_checksum(const void *data, size_t bytes);
/* The size and fs_checksum of a file, read once in blocks of 1 MiB (not mapped:
 * a file of tens of GB costs no more memory than a block). */
int fs_checksum_file(const char *path, uint64_t *bytes, uint64_t *sum, char *err, size_t errlen);

/* Directories that appear whole: a new one is built in a temporary directory
 * beside its final name (fs_temp_dir_beside, same file system), then
 * fs_replace_dir swaps it in with one rename (an existing one is exchanged
 * atomically, or where the file system cannot, moved aside first: then the
 * name is briefly absent, never half-replaced) and deletes the old one.  The
 * new directory has mode 0755, as fs_mkdir_p makes them.
 *
 * fs_temp_dir_beside makes DIR.tmp-XXXXXX and holds an flock on it (the
 * descriptor in *lock) for as long as the writer lives: the caller releases it
 * with fs_unlock_dir once the directory is in place or removed.  First it
 * removes the DIR.tmp-XXXXXX folders beside DIR whose lock is free, which a
 * killed writer left, and names them in note as one line ("" when none); a
 * live writer's folder stays, and so does any folder on a file system without
 * flock. */
int fs_temp_dir_beside(const char *dir, char *tmp, size_t cap, int *lock, char *note,
                       size_t notelen, char *err, size_t errlen);
int fs_replace_dir(const char *tmp, const char *dir, char *err, size_t errlen);
/* Deletes dir and the files in it (no subdirectories); best effort: 0 when
 * dir is gone. */
int fs_remove_dir(const char *dir);

#endif
