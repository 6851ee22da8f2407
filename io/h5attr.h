/* h5attr: scalar attributes of HDF5 objects, and datasets with their
 * checksum attribute, as the checkpoint layout uses them.  Each returns 0,
 * or -1 when the attribute cannot be written or is missing or unreadable
 * (HDF5's own error printing is the caller's to turn off);
 * h5_read_checked also says why.  New files are created and put in place
 * as fsutil's atomic writes are (h5_create_atomic, h5_commit_atomic). */
#ifndef IO_H5ATTR_H
#define IO_H5ATTR_H

#include <hdf5.h>
#include <stddef.h>

#include "io/fsutil.h"

/* Before a process's first HDF5 call: no error stack printed (callers report
 * one line) and no exit handler.  HDF5 1.10's handler crashes on a file whose
 * close failed (a full disk); every file is closed explicitly, so it has
 * nothing else to do. */
void h5_quiet(void);

/* What the system said about a failed HDF5 call (its file driver leaves errno
 * set: ENOSPC, EROFS, EACCES), or guess when it said nothing; errno must be
 * cleared before the call. */
const char *h5_os_reason(const char *guess);

/* A new HDF5 file for path, written as fs_atomic writes one: HDF5 creates
 * PATH.tmp (the 1.10 format, readable by HDF5 >= 1.10 and h5py: every piece
 * of metadata checksummed) under the lock a holds, so a second writer of path
 * is refused with fs_atomic_begin's line and a killed one's PATH.tmp is taken
 * over.  The file, or -1 with a one-line reason in err (a released). */
hid_t h5_create_atomic(fs_atomic *a, const char *path, char *err, size_t errlen);
/* Closes f and, when rc is 0 (everything written), fs_atomic_commit's it into
 * place; otherwise, or when closing fails, deletes PATH.tmp.  Releases a;
 * returns rc, or -1 with the reason in err when a step here fails. */
int h5_commit_atomic(hid_t f, fs_atomic *a, int rc, char *err, size_t errlen);

int h5_attr_write(hid_t obj, const char *name, hid_t type, const void *val);
int h5_attr_i64(hid_t obj, const char *name, long long v);
int h5_attr_f64(hid_t obj, const char *name, double v);
/* A fixed-length, NUL-terminated string (h5py reads it as bytes). */
int h5_attr_str(hid_t obj, const char *name, const char *s);
/* A scalar attribute converted to memtype. */
int h5_attr_read(hid_t obj, const char *name, hid_t memtype, void *val);
int h5_attr_read_i64(hid_t obj, const char *name, long long *v);
/* A string attribute into buf (cap bytes, NUL-terminated): fixed-length
 * (NUL-terminated, NUL- or space-padded) or variable-length, ASCII or UTF-8,
 * as h5py and the C API write them; -1 also when it does not fit in cap or
 * holds more than one string. */
int h5_attr_read_str(hid_t obj, const char *name, char *buf, size_t cap);

/* A contiguous dataset name in g of rows x cols (cols 0: a vector), stored as
 * ftype from x in mtype, with a "checksum" attribute (ckpt_checksum) over its
 * bytes, a multiple of 4.  Clears errno first, for h5_os_reason. */
int h5_write_checked(hid_t g, const char *name, hid_t ftype, hid_t mtype, const void *x,
                     int rows, int cols, size_t bytes);
/* The reader of such a dataset: name in g must be of mtype's class (an
 * integer type also of its size and sign) and of shape rows x cols (cols 0: a
 * vector); it is read into x as mtype and must match its "checksum"
 * attribute.  x NULL: only the shape is checked.  -1 with a one-line reason
 * in err naming where/name (where: g's path, for the message). */
int h5_read_checked(hid_t g, const char *where, const char *name, hid_t mtype, void *x, int rows,
                    int cols, char *err, size_t errlen);

#endif
