#include "io/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fsutil.h"
#include "io/le.h"

const char *ggml_type_name(ggml_type t)
{
    switch (t) {
    case GGML_F32: return "F32";
    case GGML_F16: return "F16";
    case GGML_BF16: return "BF16";
    case GGML_Q8_0: return "Q8_0";
    }
    return "?";
}

static int known_type(uint32_t t)
{
    return t == GGML_F32 || t == GGML_F16 || t == GGML_BF16 || t == GGML_Q8_0;
}

/* Bytes of a row of ne0 values of type t (ne0 a multiple of the block size). */
static uint64_t ggml_row_bytes(ggml_type t, uint64_t ne0)
{
    if (t == GGML_Q8_0)
        return ne0 / GGUF_Q8_0_BLOCK * GGUF_Q8_0_BYTES;
    return ne0 * (t == GGML_F32 ? 4 : 2);
}

/* Fixed sizes of the scalar value types (0: string, array). */
static const uint8_t SCALAR_BYTES[GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

/* ---- writing ---------------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
} bytes;

static void put(bytes *b, const void *x, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, x, n);
    b->n += n;
}

static void put_u32(bytes *b, uint32_t v) { uint8_t p[4]; le_put_u32(p, v); put(b, p, 4); }
static void put_u64(bytes *b, uint64_t v) { uint8_t p[8]; le_put_u64(p, v); put(b, p, 8); }
static void put_str(bytes *b, const char *s, size_t n)
{
    put_u64(b, n);
    put(b, s, n);
}

struct gguf_writer {
    bytes kv, info;
    uint64_t nkv, ntensors;
    uint64_t *sizes;    /* each tensor's bytes, in order */
    uint64_t data_at;   /* bytes of the data section laid out so far */
    uint64_t written, current;   /* tensors done; bytes of the current one */
    fs_atomic out;
    int open;
};

gguf_writer *gguf_writer_new(void)
{
    return calloc(1, sizeof(gguf_writer));
}

void gguf_writer_free(gguf_writer *w)
{
    if (!w)
        return;
    if (w->open)
        fs_atomic_abort(&w->out);
    free(w->kv.p);
    free(w->info.p);
    free(w->sizes);
    free(w);
}

static void put_key(gguf_writer *w, const char *key, uint32_t type)
{
    put_str(&w->kv, key, strlen(key));
    put_u32(&w->kv, type);
    w->nkv++;
}

int gguf_put_u32(gguf_writer *w, const char *key, uint32_t v)
{
    put_key(w, key, GGUF_U32);
    put_u32(&w->kv, v);
    return w->kv.oom ? -1 : 0;
}

int gguf_put_f32(gguf_writer *w, const char *key, float v)
{
    put_key(w, key, GGUF_F32);
    put(&w->kv, &v, 4);
    return w->kv.oom ? -1 : 0;
}

int gguf_put_str(gguf_writer *w, const char *key, const char *s)
{
    put_key(w, key, GGUF_STRING);
    put_str(&w->kv, s, strlen(s));
    return w->kv.oom ? -1 : 0;
}

int gguf_put_str_array(gguf_writer *w, const char *key, const char *const *s, const size_t *len,
                       size_t n)
{
    put_key(w, key, GGUF_ARRAY);
    put_u32(&w->kv, GGUF_STRING);
    put_u64(&w->kv, n);
    for (size_t i = 0; i < n; i++)
        put_str(&w->kv, s[i], len[i]);
    return w->kv.oom ? -1 : 0;
}

int gguf_put_i32_array(gguf_writer *w, const char *key, const int32_t *v, size_t n)
{
    put_key(w, key, GGUF_ARRAY);
    put_u32(&w->kv, GGUF_I32);
    put_u64(&w->kv, n);
    put(&w->kv, v, n * 4);
    return w->kv.oom ? -1 : 0;
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

int gguf_add_tensor(gguf_writer *w, const char *name, int ndim, const uint64_t *ne, ggml_type type)
{
    if (ndim < 1 || ndim > GGUF_MAX_DIMS || (type == GGML_Q8_0 && ne[0] % GGUF_Q8_0_BLOCK))
        return -1;
    uint64_t rows = 1;
    for (int d = 1; d < ndim; d++)
        rows *= ne[d];
    uint64_t *sizes = realloc(w->sizes, (w->ntensors + 1) * sizeof *sizes);
    if (!sizes)
        return -1;
    w->sizes = sizes;
    sizes[w->ntensors++] = rows * ggml_row_bytes(type, ne[0]);
    put_str(&w->info, name, strlen(name));
    put_u32(&w->info, (uint32_t)ndim);
    for (int d = 0; d < ndim; d++)
        put_u64(&w->info, ne[d]);
    put_u32(&w->info, type);
    put_u64(&w->info, w->data_at);
    w->data_at = align_up(w->data_at + sizes[w->ntensors - 1], GGUF_DEFAULT_ALIGNMENT);
    return w->info.oom ? -1 : 0;
}

static int write_zeros(gguf_writer *w, size_t n, char *err, size_t errlen)
{
    static const uint8_t zeros[GGUF_DEFAULT_ALIGNMENT];
    return n ? fs_atomic_write(&w->out, zeros, n, err, errlen) : 0;
}

int gguf_write_begin(gguf_writer *w, const char *path, char *err, size_t errlen)
{
    if (w->kv.oom || w->info.oom)
        return fs_fail(err, errlen, "%s: out of memory", path);
    bytes head = {0};
    put(&head, "GGUF", 4);
    put_u32(&head, 3);
    put_u64(&head, w->ntensors);
    put_u64(&head, w->nkv);
    if (head.oom)
        return fs_fail(err, errlen, "%s: out of memory", path);
    uint64_t end = head.n + w->kv.n + w->info.n;
    int rc = fs_atomic_begin(&w->out, path, err, errlen);
    w->open = rc == 0;
    if (rc == 0)
        rc = fs_atomic_write(&w->out, head.p, head.n, err, errlen);
    if (rc == 0)
        rc = fs_atomic_write(&w->out, w->kv.p, w->kv.n, err, errlen);
    if (rc == 0)
        rc = fs_atomic_write(&w->out, w->info.p, w->info.n, err, errlen);
    if (rc == 0)
        rc = write_zeros(w, align_up(end, GGUF_DEFAULT_ALIGNMENT) - end, err, errlen);
    free(head.p);
    return rc;
}

int gguf_write_data(gguf_writer *w, const void *data, size_t n, char *err, size_t errlen)
{
    if (!w->open || w->written >= w->ntensors || w->current + n > w->sizes[w->written])
        return fs_fail(err, errlen, "gguf: more tensor data than the tensor infos declare");
    if (fs_atomic_write(&w->out, data, n, err, errlen) != 0)
        return -1;
    w->current += n;
    if (w->current < w->sizes[w->written])
        return 0;
    uint64_t size = w->sizes[w->written++];
    w->current = 0;
    return write_zeros(w, align_up(size, GGUF_DEFAULT_ALIGNMENT) - size, err, errlen);
}

int gguf_write_commit(gguf_writer *w, char *err, size_t errlen)
{
    if (!w->open || w->written != w->ntensors || w->current)
        return fs_fail(err, errlen, "gguf: %llu of %llu tensors written",
                    (unsigned long long)w->written, (unsigned long long)w->ntensors);
    w->open = 0;
    return fs_atomic_commit(&w->out, err, errlen);
}

/* ---- reading ---------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    uint64_t left;
} cursor;

static int take(cursor *c, void *dst, uint64_t n)
{
    if (c->left < n)
        return -1;
    if (dst)
        memcpy(dst, c->p, n);
    c->p += n;
    c->left -= n;
    return 0;
}

static int take_u32(cursor *c, uint32_t *v) { return take(c, v, 4); }
static int take_u64(cursor *c, uint64_t *v) { return take(c, v, 8); }

static int take_str(cursor *c, const uint8_t **s, uint64_t *len)
{
    if (take_u64(c, len) != 0 || *len > c->left)
        return -1;
    *s = c->p;
    return take(c, NULL, *len);
}

/* Steps over one value of type t; arrays may nest once. */
static int skip_value(cursor *c, uint32_t t, int depth)
{
    if (t >= GGUF_NTYPES)
        return -1;
    if (SCALAR_BYTES[t])
        return take(c, NULL, SCALAR_BYTES[t]);
    if (t == GGUF_STRING) {
        const uint8_t *s;
        uint64_t len;
        return take_str(c, &s, &len);
    }
    uint32_t elem;
    uint64_t n;
    if (depth > 1 || take_u32(c, &elem) != 0 || take_u64(c, &n) != 0 || elem >= GGUF_NTYPES)
        return -1;
    if (SCALAR_BYTES[elem])
        return n > c->left / SCALAR_BYTES[elem] ? -1 : take(c, NULL, n * SCALAR_BYTES[elem]);
    for (uint64_t i = 0; i < n; i++)
        if (skip_value(c, elem, depth + 1) != 0)
            return -1;
    return 0;
}


static int parse_kvs(cursor *c, gguf_file *f, char *err, size_t errlen)
{
    for (uint64_t i = 0; i < f->nkv; i++) {
        gguf_kv *kv = &f->kv[i];
        const uint8_t *key;
        uint64_t klen;
        if (take_str(c, &key, &klen) != 0 || klen == 0 || klen > 65535 || take_u32(c, &kv->type) != 0)
            return fs_fail(err, errlen, "metadata entry %llu is truncated", (unsigned long long)i);
        if (!(kv->key = strndup((const char *)key, klen)))
            return fs_fail(err, errlen, "out of memory");
        kv->count = 1;
        cursor at = *c;
        if (kv->type == GGUF_ARRAY && (take_u32(&at, &kv->elem) != 0 || take_u64(&at, &kv->count) != 0))
            return fs_fail(err, errlen, "%s: truncated array", kv->key);
        kv->val = kv->type == GGUF_ARRAY ? at.p : c->p;
        if (skip_value(c, kv->type, 0) != 0)
            return fs_fail(err, errlen, "%s: bad or truncated value", kv->key);
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(f->kv[j].key, kv->key) == 0)
                return fs_fail(err, errlen, "%s: appears twice", kv->key);
    }
    return 0;
}

static int parse_infos(cursor *c, gguf_file *f, char *err, size_t errlen)
{
    for (uint64_t i = 0; i < f->ntensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        const uint8_t *name;
        uint64_t nlen;
        uint32_t ndim, type;
        if (take_str(c, &name, &nlen) != 0 || nlen == 0 || nlen > 64 || take_u32(c, &ndim) != 0)
            return fs_fail(err, errlen, "tensor info %llu is truncated", (unsigned long long)i);
        if (!(t->name = strndup((const char *)name, nlen)))
            return fs_fail(err, errlen, "out of memory");
        if (ndim < 1 || ndim > GGUF_MAX_DIMS)
            return fs_fail(err, errlen, "tensor %s: %u dimensions", t->name, ndim);
        t->ndim = (int)ndim;
        uint64_t n = 1;
        for (uint32_t d = 0; d < ndim; d++) {
            if (take_u64(c, &t->ne[d]) != 0)
                return fs_fail(err, errlen, "tensor %s: truncated", t->name);
            if (t->ne[d] == 0 || t->ne[d] > (1ull << 40) / n)   /* the product, unwrapped */
                return fs_fail(err, errlen, "tensor %s: bad shape", t->name);
            n *= t->ne[d];
        }
        if (take_u32(c, &type) != 0 || take_u64(c, &t->offset) != 0)
            return fs_fail(err, errlen, "tensor %s: truncated", t->name);
        if (!known_type(type))
            return fs_fail(err, errlen, "tensor %s: ggml type %u is not supported (F32, F16, BF16, "
                        "Q8_0)", t->name, type);
        t->type = (ggml_type)type;
        if (t->type == GGML_Q8_0 && t->ne[0] % GGUF_Q8_0_BLOCK)
            return fs_fail(err, errlen, "tensor %s: Q8_0 rows of %llu values", t->name,
                        (unsigned long long)t->ne[0]);
        t->bytes = n / t->ne[0] * ggml_row_bytes(t->type, t->ne[0]);
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(f->tensors[j].name, t->name) == 0)
                return fs_fail(err, errlen, "tensor %s: appears twice", t->name);
    }
    return 0;
}

static int by_offset(const void *a, const void *b)
{
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* Every tensor aligned, inside the data section, none overlapping another. */
static int place_tensors(gguf_file *f, uint64_t data_start, char *err, size_t errlen)
{
    uint64_t room = f->size - data_start;
    const gguf_tensor **order = malloc((f->ntensors ? f->ntensors : 1) * sizeof *order);
    if (!order)
        return fs_fail(err, errlen, "out of memory");
    for (uint64_t i = 0; i < f->ntensors; i++)
        order[i] = &f->tensors[i];
    qsort(order, f->ntensors, sizeof *order, by_offset);
    int rc = 0;
    for (uint64_t i = 0; i < f->ntensors && rc == 0; i++) {
        const gguf_tensor *t = order[i];
        if (t->offset % f->alignment)
            rc = fs_fail(err, errlen, "tensor %s: offset %llu is not aligned to %u", t->name,
                      (unsigned long long)t->offset, f->alignment);
        else if (t->offset > room || t->bytes > room - t->offset)
            rc = fs_fail(err, errlen, "tensor %s: its %llu bytes at %llu are past the end of the "
                      "file", t->name, (unsigned long long)t->bytes, (unsigned long long)t->offset);
        else if (i > 0 && order[i - 1]->offset + order[i - 1]->bytes > t->offset)
            rc = fs_fail(err, errlen, "tensor %s overlaps %s", t->name, order[i - 1]->name);
    }
    free(order);
    for (uint64_t i = 0; i < f->ntensors && rc == 0; i++)
        f->tensors[i].data = f->base + data_start + f->tensors[i].offset;
    return rc;
}

static int read_alignment(gguf_file *f, char *err, size_t errlen)
{
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_find(f, "general.alignment");
    if (!kv)
        return 0;
    uint32_t a = 0;
    if (kv->type == GGUF_U32)
        memcpy(&a, kv->val, 4);
    if (a == 0 || a > (1u << 16) || (a & (a - 1)))
        return fs_fail(err, errlen, "general.alignment must be a u32 power of two up to 65536");
    f->alignment = a;
    return 0;
}

static int parse(cursor *c, gguf_file *f, char *err, size_t errlen)
{
    char magic[4];
    if (take(c, magic, 4) != 0 || memcmp(magic, "GGUF", 4) != 0)
        return fs_fail(err, errlen, "not a GGUF file (no GGUF magic)");
    if (take_u32(c, &f->version) != 0 || take_u64(c, &f->ntensors) != 0 || take_u64(c, &f->nkv) != 0)
        return fs_fail(err, errlen, "truncated GGUF header");
    if (f->version != 2 && f->version != 3)
        return fs_fail(err, errlen, "GGUF version %u is not supported (2 and 3 are)", f->version);
    /* each entry takes at least 12 (key-value) or 24 (tensor info) bytes */
    if (f->nkv > c->left / 12 || f->ntensors > c->left / 24)
        return fs_fail(err, errlen, "%llu metadata entries and %llu tensors cannot fit in the file",
                    (unsigned long long)f->nkv, (unsigned long long)f->ntensors);
    f->kv = calloc(f->nkv ? f->nkv : 1, sizeof *f->kv);
    f->tensors = calloc(f->ntensors ? f->ntensors : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors)
        return fs_fail(err, errlen, "out of memory");
    if (parse_kvs(c, f, err, errlen) != 0 || read_alignment(f, err, errlen) != 0 ||
        parse_infos(c, f, err, errlen) != 0)
        return -1;
    uint64_t at = (uint64_t)(c->p - f->base);
    uint64_t data_start = (at + f->alignment - 1) / f->alignment * f->alignment;
    if (data_start > f->size)
        return fs_fail(err, errlen, "the data section starts past the end of the file");
    return place_tensors(f, data_start, err, errlen);
}

int gguf_parse(const uint8_t *buf, size_t len, gguf_file *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    f->base = buf;
    f->size = len;
    cursor c = {buf, len};
    if (parse(&c, f, err, errlen) == 0)
        return 0;
    gguf_close(f);
    fs_printable(err);   /* it may quote a key or tensor name */
    return -1;
}

int gguf_open(const char *path, gguf_file *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    const void *map;
    size_t len;
    if (fs_map_file(path, &map, &len, err, errlen) != 0)
        return -1;
    char why[400];
    int rc = len < 24 ? fs_fail(why, sizeof why, "too short for a GGUF file")
                      : gguf_parse(map, len, f, why, sizeof why);
    if (rc != 0) {
        fs_unmap_file(map, len);
        return fs_fail(err, errlen, "%s: %s", path, why);
    }
    f->mapped = 1;
    return 0;
}

void gguf_close(gguf_file *f)
{
    if (f->mapped)
        fs_unmap_file(f->base, f->size);
    for (uint64_t i = 0; f->kv && i < f->nkv; i++)
        free((char *)f->kv[i].key);
    for (uint64_t i = 0; f->tensors && i < f->ntensors; i++)
        free((char *)f->tensors[i].name);
    free(f->kv);
    free(f->tensors);
    memset(f, 0, sizeof *f);
}

const gguf_kv *gguf_find(const gguf_file *f, const char *key)
{
    for (uint64_t i = 0; i < f->nkv; i++)
        if (strcmp(f->kv[i].key, key) == 0)
            return &f->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    for (uint64_t i = 0; i < f->ntensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

static const gguf_kv *need(const gguf_file *f, const char *key, char *err, size_t errlen)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv)
        fs_fail(err, errlen, "metadata %s is missing", key);
    return kv;
}

int gguf_get_uint(const gguf_file *f, const char *key, uint64_t *v, char *err, size_t errlen)
{
    const gguf_kv *kv = need(f, key, err, errlen);
    if (!kv)
        return -1;
    static const int8_t sign[GGUF_NTYPES] = {0, 1, 0, 1, 0, 1, -1, -1, -1, -1, 0, 1, -1};
    if (kv->type >= GGUF_NTYPES || sign[kv->type] < 0)
        return fs_fail(err, errlen, "metadata %s is not an integer", key);
    size_t n = SCALAR_BYTES[kv->type];
    uint64_t u = 0;
    memcpy(&u, kv->val, n);
    if (sign[kv->type] && n < 8 && (u >> (8 * n - 1) & 1))
        return fs_fail(err, errlen, "metadata %s is negative", key);
    if (sign[kv->type] && n == 8 && (int64_t)u < 0)
        return fs_fail(err, errlen, "metadata %s is negative", key);
    *v = u;
    return 0;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *v, char *err, size_t errlen)
{
    const gguf_kv *kv = need(f, key, err, errlen);
    if (!kv)
        return -1;
    if (kv->type != GGUF_F32)
        return fs_fail(err, errlen, "metadata %s is not a float32", key);
    memcpy(v, kv->val, 4);
    return 0;
}

int gguf_get_str(const gguf_file *f, const char *key, const char **s, uint64_t *len, char *err,
                 size_t errlen)
{
    const gguf_kv *kv = need(f, key, err, errlen);
    if (!kv)
        return -1;
    if (kv->type != GGUF_STRING)
        return fs_fail(err, errlen, "metadata %s is not a string", key);
    memcpy(len, kv->val, 8);
    *s = (const char *)kv->val + 8;
    return 0;
}

int gguf_str_array(const gguf_file *f, const char *key, gguf_str_iter *it, uint64_t *n,
                   char *err, size_t errlen)
{
    const gguf_kv *kv = need(f, key, err, errlen);
    if (!kv)
        return -1;
    if (kv->type != GGUF_ARRAY || kv->elem != GGUF_STRING)
        return fs_fail(err, errlen, "metadata %s is not an array of strings", key);
    *n = kv->count;
    it->at = kv->val;
    it->left = kv->count;
    return 0;
}

/* The parse checked every length, so the walk stays inside the mapping. */
void gguf_str_next(gguf_str_iter *it, const char **s, uint64_t *len)
{
    memcpy(len, it->at, 8);
    *s = (const char *)it->at + 8;
    it->at += 8 + *len;
    it->left--;
}
