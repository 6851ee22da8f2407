/* h5attr: scalar HDF5 attributes and checksummed datasets (checkpoints and
 * --save-quantized files). */
#include "io/h5attr.h"

#include "io/checkpoint.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

void h5_quiet(void)
{
    H5dont_atexit();   /* only effective before the library initialises: first */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

const char *h5_os_reason(const char *guess)
{
    return errno ? strerror(errno) : guess;
}

hid_t h5_create_atomic(fs_atomic *a, const char *path, char *err, size_t errlen)
{
    h5_quiet();
    if (fs_atomic_begin(a, path, err, errlen) != 0)
        return -1;
    /* HDF5's own flock, on a descriptor of its own, would refuse the file
     * ours holds; ours covers it until the rename */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0) {
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
        H5Pset_file_locking(fapl, false, true);
    }
    errno = 0;
    hid_t f = fapl < 0 ? -1 : H5Fcreate(a->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (f < 0) {   /* a full disk can fail it after the file was made */
        snprintf(err, errlen, "%s: cannot create: %s", a->tmp,
                 h5_os_reason("directory missing or not writable?"));
        fs_atomic_abort(a);
    }
    return f;
}

int h5_commit_atomic(hid_t f, fs_atomic *a, int rc, char *err, size_t errlen)
{
    errno = 0;
    if (H5Fclose(f) < 0 && rc == 0)
        rc = fs_fail(err, errlen, "%s: closing failed: %s", a->tmp, h5_os_reason("disk full?"));
    if (rc != 0) {
        fs_atomic_abort(a);
        return rc;
    }
    return fs_atomic_commit(a, err, errlen);   /* HDF5 does not fsync: this does, by a's descriptor */
}

int h5_attr_write(hid_t obj, const char *name, hid_t type, const void *val)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = sp < 0 ? -1 : H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, type, val);
    if (a >= 0)
        H5Aclose(a);
    if (sp >= 0)
        H5Sclose(sp);
    return rc < 0 ? -1 : 0;
}

int h5_attr_i64(hid_t obj, const char *name, long long v)
{
    int64_t x = v;
    return h5_attr_write(obj, name, H5T_NATIVE_INT64, &x);
}

int h5_attr_f64(hid_t obj, const char *name, double v)
{
    return h5_attr_write(obj, name, H5T_NATIVE_DOUBLE, &v);
}

/* A fixed-length, NUL-terminated string (h5py reads it as bytes). */
int h5_attr_str(hid_t obj, const char *name, const char *s)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    int rc = t < 0 || H5Tset_size(t, strlen(s) + 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0
                 ? -1
                 : h5_attr_write(obj, name, t, s);
    if (t >= 0)
        H5Tclose(t);
    return rc;
}

/* True if attribute a holds exactly one value: H5Aread writes every value it
 * holds, and a file may hold an array where a scalar belongs. */
static bool one_value(hid_t a)
{
    hid_t sp = a < 0 ? -1 : H5Aget_space(a);
    bool one = sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1;
    if (sp >= 0)
        H5Sclose(sp);
    return one;
}

/* Reads a scalar attribute converted to memtype; -1 if missing or unreadable. */
int h5_attr_read(hid_t obj, const char *name, hid_t memtype, void *val)
{
    if (H5Aexists(obj, name) <= 0)
        return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    herr_t rc = !one_value(a) ? -1 : H5Aread(a, memtype, val);
    if (a >= 0)
        H5Aclose(a);
    return rc < 0 ? -1 : 0;
}

int h5_attr_read_i64(hid_t obj, const char *name, long long *v)
{
    int64_t x;
    if (h5_attr_read(obj, name, H5T_NATIVE_INT64, &x) != 0)
        return -1;
    *v = x;
    return 0;
}


/* A variable-length string (h5py's default for str) read as memtype mt. */
static int read_vlen_str(hid_t a, hid_t mt, char *buf, size_t cap)
{
    char *s = NULL;
    int rc = H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Aread(a, mt, &s) < 0 || !s ||
                     strlen(s) >= cap ? -1 : 0;
    if (rc == 0)
        strcpy(buf, s);
    if (s)
        H5free_memory(s);
    return rc;
}

/* A fixed-length string of size bytes, padded with NULs (ours: NULLTERM;
 * numpy bytes via h5py: NULLPAD, not terminated when full) or spaces: read
 * into size + 1 bytes, so a full string keeps its last character. */
static int read_fixed_str(hid_t a, hid_t mt, size_t size, char *buf, size_t cap)
{
    if (size >= cap || H5Tset_size(mt, size + 1) < 0 || H5Tset_strpad(mt, H5T_STR_NULLTERM) < 0)
        return -1;
    memset(buf, 0, cap);
    return H5Aread(a, mt, buf) < 0 ? -1 : 0;
}

/* One string (a scalar, or a single element), fixed-length or variable, in
 * its own character set, into buf. */
int h5_attr_read_str(hid_t obj, const char *name, char *buf, size_t cap)
{
    if (H5Aexists(obj, name) <= 0)
        return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t ft = a < 0 ? -1 : H5Aget_type(a);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a);
    int rc = -1;
    if (ft >= 0 && sp >= 0 && H5Tget_class(ft) == H5T_STRING &&
        H5Sget_simple_extent_npoints(sp) == 1) {   /* more would overrun buf */
        hid_t mt = H5Tcopy(H5T_C_S1);
        if (mt >= 0 && H5Tset_cset(mt, H5Tget_cset(ft)) >= 0)   /* no conversion between sets */
            rc = H5Tis_variable_str(ft) > 0 ? read_vlen_str(a, mt, buf, cap)
                                            : read_fixed_str(a, mt, H5Tget_size(ft), buf, cap);
        if (mt >= 0)
            H5Tclose(mt);
    }
    if (sp >= 0)
        H5Sclose(sp);
    if (ft >= 0)
        H5Tclose(ft);
    if (a >= 0)
        H5Aclose(a);
    return rc;
}

/* A contiguous dataset of rows x cols (cols 0: a vector) with a checksum
 * attribute over its bytes (a multiple of 4). */
int h5_write_checked(hid_t g, const char *name, hid_t ftype, hid_t mtype, const void *x,
                     int rows, int cols, size_t bytes)
{
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    errno = 0;
    hid_t sp = H5Screate_simple(cols ? 2 : 1, dims, NULL);
    hid_t d = sp < 0 ? -1 : H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    uint64_t sum = ckpt_checksum(x, bytes / sizeof(float));
    int rc = d < 0 || H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0 ||
                     h5_attr_write(d, "checksum", H5T_NATIVE_UINT64, &sum) != 0 ? -1 : 0;
    if (d >= 0)
        H5Dclose(d);
    if (sp >= 0)
        H5Sclose(sp);
    return rc;
}

/* Whether dataset d is of mtype's class (an integer: also of its size and
 * sign) and of shape rows x cols (cols 0: a vector of rows). */
static bool shaped_as(hid_t d, hid_t mtype, int rows, int cols)
{
    hid_t sp = H5Dget_space(d), ty = H5Dget_type(d);
    hsize_t dims[H5S_MAX_RANK] = {0};
    int nd = cols ? 2 : 1;
    H5T_class_t cls = H5Tget_class(mtype);
    bool ok = sp >= 0 && ty >= 0 && H5Sget_simple_extent_ndims(sp) == nd &&
              H5Sget_simple_extent_dims(sp, dims, NULL) == nd && dims[0] == (hsize_t)rows &&
              (nd == 1 || dims[1] == (hsize_t)cols) && H5Tget_class(ty) == cls &&
              (cls != H5T_INTEGER ||
               (H5Tget_size(ty) == H5Tget_size(mtype) && H5Tget_sign(ty) == H5Tget_sign(mtype)));
    if (ty >= 0)
        H5Tclose(ty);
    if (sp >= 0)
        H5Sclose(sp);
    return ok;
}

int h5_read_checked(hid_t g, const char *where, const char *name, hid_t mtype, void *x, int rows,
                    int cols, char *err, size_t errlen)
{
    if (H5Lexists(g, name, H5P_DEFAULT) <= 0) {
        snprintf(err, errlen, "%s/%s is missing", where, name);
        return -1;
    }
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    bool ok = d >= 0 && shaped_as(d, mtype, rows, cols);
    size_t bytes = (size_t)rows * (size_t)(cols ? cols : 1) * H5Tget_size(mtype);
    uint64_t sum = 0;
    bool read_ok = ok && x && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0;
    bool have_sum = read_ok && h5_attr_read(d, "checksum", H5T_NATIVE_UINT64, &sum) == 0;
    if (d >= 0)
        H5Dclose(d);
    if (!ok) {
        char type[16] = "float";
        if (H5Tget_class(mtype) == H5T_INTEGER)
            snprintf(type, sizeof type, "%sint%zu", H5Tget_sign(mtype) == H5T_SGN_NONE ? "u" : "",
                     8 * H5Tget_size(mtype));
        snprintf(err, errlen, "%s/%s is not a%s %s tensor of shape [%d%s%.0d]", where, name,
                 type[0] == 'i' ? "n" : "", type, rows, cols ? "," : "", cols);
    } else if (x && !read_ok) {
        snprintf(err, errlen, "%s/%s cannot be read (truncated or damaged)", where, name);
    } else if (x && (!have_sum || sum != ckpt_checksum(x, bytes / sizeof(float)))) {
        snprintf(err, errlen, "%s/%s is damaged (%s)", where, name,
                 have_sum ? "checksum mismatch" : "no checksum attribute");
    } else {
        return 0;
    }
    return -1;
}
