#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/fsutil.h"
#include "io/le.h"
#include "kernels/convert.h"

static const struct {
    const char *name;
    size_t size;
} DTYPES[] = {
    [ST_F32] = {"F32", 4},   [ST_F16] = {"F16", 2},   [ST_BF16] = {"BF16", 2},
    [ST_F64] = {"F64", 8},   [ST_I64] = {"I64", 8},   [ST_U64] = {"U64", 8},
    [ST_I32] = {"I32", 4},   [ST_U32] = {"U32", 4},   [ST_I16] = {"I16", 2},
    [ST_U16] = {"U16", 2},   [ST_I8] = {"I8", 1},     [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(st_dtype d)
{
    return DTYPES[d].name;
}

size_t st_dtype_size(st_dtype d)
{
    return DTYPES[d].size;
}

int st_dtype_readable(st_dtype d)
{
    return d == ST_F32 || d == ST_F16 || d == ST_BF16;
}

uint64_t st_numel(const st_tensor *t)
{
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (uint64_t)t->shape[i];
    return n;
}

static int parse_dtype(const char *s, st_dtype *d)
{
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (strcmp(s, DTYPES[i].name) == 0) {
            *d = (st_dtype)i;
            return 0;
        }
    return -1;
}

/* A JSON number that is a whole number in [0, 2^53] (exact in a double). */
static int json_u64(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j))
        return -1;
    double v = j->valuedouble;
    if (!(v >= 0 && v <= 9007199254740992.0) || v != (double)(uint64_t)v)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static int parse_tensor(const cJSON *e, st_tensor *t, char *err, size_t errlen)
{
    const char *name = e->string;
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsObject(e) || !cJSON_IsString(dtype) || !cJSON_IsArray(shape) ||
        !cJSON_IsArray(offs))
        return fs_fail(err, errlen, "tensor %s: needs dtype, shape and data_offsets", name);
    if (parse_dtype(dtype->valuestring, &t->dtype) != 0)
        return fs_fail(err, errlen, "tensor %s: dtype %s is not supported (F32, F16, BF16)", name,
                    dtype->valuestring);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > ST_MAX_DIMS)
        return fs_fail(err, errlen, "tensor %s: %d dimensions (at most %d)", name, ndim, ST_MAX_DIMS);
    t->ndim = ndim;
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        uint64_t d;
        if (json_u64(cJSON_GetArrayItem(shape, i), &d) != 0 || d > (1ull << 40))
            return fs_fail(err, errlen, "tensor %s: bad shape", name);
        t->shape[i] = (int64_t)d;
        if (d && numel > (1ull << 48) / d)   /* checked before it can wrap */
            return fs_fail(err, errlen, "tensor %s: shape too large", name);
        numel *= d;
    }
    if (cJSON_GetArraySize(offs) != 2 || json_u64(cJSON_GetArrayItem(offs, 0), &t->begin) != 0 ||
        json_u64(cJSON_GetArrayItem(offs, 1), &t->end) != 0 || t->begin > t->end)
        return fs_fail(err, errlen, "tensor %s: bad data_offsets", name);
    if (t->end - t->begin != numel * st_dtype_size(t->dtype))
        return fs_fail(err, errlen, "tensor %s: %llu bytes of data for %llu %s values", name,
                    (unsigned long long)(t->end - t->begin), (unsigned long long)numel,
                    st_dtype_name(t->dtype));
    return 0;
}

static int by_begin(const void *a, const void *b)
{
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

/* Each name once (found sorted: a scan of all pairs would take hours on the
 * millions of entries a 100 MB header holds), and the spans tile
 * [0, data_len): no overlap, no hole, nothing after. */
static int check_tiling(const st_header *h, uint64_t data_len, char *err, size_t errlen)
{
    const st_tensor **order = malloc((size_t)(h->n ? h->n : 1) * sizeof *order);
    if (!order)
        return fs_fail(err, errlen, "out of memory");
    for (int i = 0; i < h->n; i++)
        order[i] = &h->tensors[i];
    int rc = 0;
    qsort(order, (size_t)h->n, sizeof *order, by_name);
    for (int i = 1; i < h->n && rc == 0; i++)
        if (strcmp(order[i]->name, order[i - 1]->name) == 0)
            rc = fs_fail(err, errlen, "tensor %s appears twice", order[i]->name);
    qsort(order, (size_t)h->n, sizeof *order, by_begin);
    uint64_t at = 0;
    for (int i = 0; i < h->n && rc == 0; i++) {
        if (order[i]->begin < at)
            rc = fs_fail(err, errlen, "tensor %s: data overlaps %s", order[i]->name,
                      order[i - 1]->name);
        else if (order[i]->begin > at)
            rc = fs_fail(err, errlen, "tensor %s: a gap of %llu bytes before its data",
                      order[i]->name, (unsigned long long)(order[i]->begin - at));
        at = order[i]->end;
    }
    if (rc == 0 && at != data_len)
        rc = at > data_len
                 ? fs_fail(err, errlen, "data offsets end at %llu, past the file's %llu data bytes",
                        (unsigned long long)at, (unsigned long long)data_len)
                 : fs_fail(err, errlen, "%llu bytes after the last tensor's data",
                        (unsigned long long)(data_len - at));
    free(order);
    return rc;
}

void st_header_free(st_header *h)
{
    for (int i = 0; i < h->n; i++)
        free(h->tensors[i].name);
    free(h->tensors);
    h->tensors = NULL;
    h->n = 0;
}

static int parse_entries(const cJSON *root, st_header *h, char *err, size_t errlen)
{
    int n = cJSON_GetArraySize(root);
    h->tensors = calloc((size_t)(n ? n : 1), sizeof *h->tensors);
    if (!h->tensors)
        return fs_fail(err, errlen, "out of memory");
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e))   /* first: an array's items have no names */
                return fs_fail(err, errlen, "__metadata__ is not an object");
            for (const cJSON *m = e->child; m; m = m->next)
                if (!cJSON_IsString(m))
                    return fs_fail(err, errlen, "__metadata__ value %s is not a string", m->string);
            continue;
        }
        st_tensor *t = &h->tensors[h->n];
        if (parse_tensor(e, t, err, errlen) != 0)
            return -1;
        if (!(t->name = strdup(e->string)))
            return fs_fail(err, errlen, "out of memory");
        h->n++;
    }
    return 0;
}

int st_parse_header(const char *json, size_t len, uint64_t data_len, st_header *out, char *err,
                    size_t errlen)
{
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fs_fail(err, errlen, "the header is not a JSON object");
    }
    int rc = parse_entries(root, out, err, errlen);
    cJSON_Delete(root);
    if (rc == 0)
        rc = check_tiling(out, data_len, err, errlen);
    if (rc != 0) {
        st_header_free(out);
        fs_printable(err);   /* it may quote a tensor name */
    }
    return rc;
}

static int read_at(int fd, void *buf, size_t n, uint64_t off)
{
    for (size_t done = 0; done < n;) {
        ssize_t r = pread(fd, (char *)buf + done, n - done, (off_t)(off + done));
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            if (r == 0)
                errno = EIO;
            return -1;
        }
        done += (size_t)r;
    }
    return 0;
}

int st_open(st_file *f, const char *path, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0)
        return fs_fail(err, errlen, "%s: %s", path, strerror(errno));
    struct stat st;
    uint8_t len8[8];
    if (fstat(f->fd, &st) != 0 || st.st_size < 8 || read_at(f->fd, len8, 8, 0) != 0) {
        st_close(f);
        return fs_fail(err, errlen, "%s: too short for a safetensors file", path);
    }
    uint64_t hlen = le_get_u64(len8);
    uint64_t size = (uint64_t)st.st_size;
    if (hlen > size - 8) {
        st_close(f);
        return fs_fail(err, errlen, "%s: header length %llu is past the end of the file (%llu bytes)",
                    path, (unsigned long long)hlen, (unsigned long long)size);
    }
    if (hlen > ST_MAX_HEADER) {
        st_close(f);
        return fs_fail(err, errlen, "%s: header length %llu is over the format's limit of %u bytes",
                    path, (unsigned long long)hlen, ST_MAX_HEADER);
    }
    char *json = malloc(hlen ? hlen : 1);
    int rc = json ? read_at(f->fd, json, hlen, 8) : -1;
    char why[400] = "";
    if (rc == 0)
        rc = st_parse_header(json, hlen, size - 8 - hlen, &f->h, why, sizeof why);
    else
        snprintf(why, sizeof why, "%s", json ? strerror(errno) : "out of memory");
    free(json);
    if (rc != 0) {
        st_close(f);
        return fs_fail(err, errlen, "%s: %s", path, why);
    }
    f->data_start = 8 + hlen;
    return 0;
}

void st_close(st_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    st_header_free(&f->h);
    f->fd = -1;
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    for (int i = 0; i < f->h.n; i++)
        if (strcmp(f->h.tensors[i].name, name) == 0)
            return &f->h.tensors[i];
    return NULL;
}

enum { ST_CHUNK = 1 << 20 };   /* 16-bit values widened per read */

int st_read_f32(const st_file *f, const st_tensor *t, float *dst, char *err, size_t errlen)
{
    uint64_t n = st_numel(t), off = f->data_start + t->begin;
    if (!st_dtype_readable(t->dtype))
        return fs_fail(err, errlen, "tensor %s: dtype %s is not supported (F32, F16, BF16)",
                       t->name, st_dtype_name(t->dtype));
    if (t->dtype == ST_F32) {
        if (read_at(f->fd, dst, n * 4, off) != 0)
            return fs_fail(err, errlen, "tensor %s: %s", t->name, strerror(errno));
        return 0;
    }
    uint16_t *half = malloc((size_t)(n < ST_CHUNK ? n : ST_CHUNK) * 2 + 2);
    if (!half)
        return fs_fail(err, errlen, "out of memory");
    int rc = 0;
    for (uint64_t i = 0; i < n && rc == 0; i += ST_CHUNK) {
        size_t k = (size_t)(n - i < ST_CHUNK ? n - i : ST_CHUNK);
        if (read_at(f->fd, half, k * 2, off + i * 2) != 0)
            rc = fs_fail(err, errlen, "tensor %s: %s", t->name, strerror(errno));
        else if (t->dtype == ST_F16)
            f16_to_f32(dst + i, half, k);
        else
            bf16_to_f32(dst + i, half, k);
    }
    free(half);
    return rc;
}

struct st_writer {
    st_header h;
    int cap, next;   /* tensors declared; the next one st_writer_put writes */
    fs_atomic out;
    int open;
};

st_writer *st_writer_new(void)
{
    return calloc(1, sizeof(st_writer));
}

int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                  char *err, size_t errlen)
{
    if (ndim < 0 || ndim > ST_MAX_DIMS || w->open || !st_dtype_readable(dtype))
        return fs_fail(err, errlen, "tensor %s: cannot be added", name);
    if (w->h.n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        st_tensor *t = realloc(w->h.tensors, (size_t)cap * sizeof *t);
        if (!t)
            return fs_fail(err, errlen, "out of memory");
        w->h.tensors = t;
        w->cap = cap;
    }
    st_tensor *t = &w->h.tensors[w->h.n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name)))
        return fs_fail(err, errlen, "out of memory");
    t->dtype = dtype;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->begin = w->h.n ? w->h.tensors[w->h.n - 1].end : 0;
    t->end = t->begin + st_numel(t) * st_dtype_size(dtype);
    w->h.n++;
    return 0;
}

/* The header JSON, padded with spaces to a multiple of 8 bytes so the data
 * region starts aligned (as the reference writer does). */
static char *header_json(const st_writer *w, const char *const *keys, const char *const *values,
                         int nmeta, size_t *len)
{
    cJSON *root = cJSON_CreateObject();
    if (nmeta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < nmeta; i++)
            cJSON_AddStringToObject(meta, keys[i], values[i]);
    }
    for (int i = 0; i < w->h.n; i++) {
        const st_tensor *t = &w->h.tensors[i];
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON_AddStringToObject(e, "dtype", st_dtype_name(t->dtype));
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)t->begin));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)t->end));
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!s)
        return NULL;
    size_t n = strlen(s), padded = (n + 7) & ~(size_t)7;
    char *out = realloc(s, padded + 1);
    if (!out) {
        free(s);
        return NULL;
    }
    memset(out + n, ' ', padded - n);
    out[padded] = 0;
    *len = padded;
    return out;
}

int st_writer_begin(st_writer *w, const char *path, const char *const *meta_keys,
                    const char *const *meta_values, int nmeta, char *err, size_t errlen)
{
    size_t len;
    char *json = header_json(w, meta_keys, meta_values, nmeta, &len);
    if (!json)
        return fs_fail(err, errlen, "out of memory");
    uint8_t len8[8];
    le_put_u64(len8, len);
    int rc = fs_atomic_begin(&w->out, path, err, errlen);
    if (rc == 0) {
        w->open = 1;
        rc = fs_atomic_write(&w->out, len8, 8, err, errlen);
    }
    if (rc == 0)
        rc = fs_atomic_write(&w->out, json, len, err, errlen);
    free(json);
    return rc;
}

int st_writer_put(st_writer *w, const float *values, char *err, size_t errlen)
{
    if (!w->open || w->next >= w->h.n)
        return fs_fail(err, errlen, "safetensors: more tensors written than declared");
    const st_tensor *t = &w->h.tensors[w->next++];
    uint64_t n = st_numel(t);
    if (t->dtype == ST_F32)
        return fs_atomic_write(&w->out, values, n * 4, err, errlen);
    uint16_t *half = malloc((size_t)(n < ST_CHUNK ? n : ST_CHUNK) * 2 + 2);
    if (!half)
        return fs_fail(err, errlen, "out of memory");
    int rc = 0;
    for (uint64_t i = 0; i < n && rc == 0; i += ST_CHUNK) {
        size_t k = (size_t)(n - i < ST_CHUNK ? n - i : ST_CHUNK);
        if (t->dtype == ST_F16)
            f32_to_f16(half, values + i, k);
        else
            f32_to_bf16(half, values + i, k);
        rc = fs_atomic_write(&w->out, half, k * 2, err, errlen);
    }
    free(half);
    return rc;
}

int st_writer_commit(st_writer *w, char *err, size_t errlen)
{
    if (!w->open || w->next != w->h.n)
        return fs_fail(err, errlen, "safetensors: %d of %d tensors written", w->next, w->h.n);
    w->open = 0;
    return fs_atomic_commit(&w->out, err, errlen);
}

void st_writer_free(st_writer *w)
{
    if (!w)
        return;
    if (w->open)
        fs_atomic_abort(&w->out);
    st_header_free(&w->h);
    free(w);
}
