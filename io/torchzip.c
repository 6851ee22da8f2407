#include "io/torchzip.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "io/fsutil.h"
#include "io/le.h"
#include "kernels/convert.h"

/* ---- the restricted unpickler ------------------------------------------ */

/* The only callables a state_dict's pickle names; storages carry their dtype. */
enum { G_ODICT, G_REBUILD, G_PARAM, G_STORAGE };

static const struct {
    const char *module, *name;
    int id;
    st_dtype dtype;
} GLOBALS[] = {
    {"collections", "OrderedDict", G_ODICT, 0},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD, 0},
    {"torch._utils", "_rebuild_parameter", G_PARAM, 0},
    {"torch", "FloatStorage", G_STORAGE, ST_F32},
    {"torch", "HalfStorage", G_STORAGE, ST_F16},
    {"torch", "BFloat16Storage", G_STORAGE, ST_BF16},
    {"torch", "DoubleStorage", G_STORAGE, ST_F64},
    {"torch", "LongStorage", G_STORAGE, ST_I64},
    {"torch", "IntStorage", G_STORAGE, ST_I32},
    {"torch", "ShortStorage", G_STORAGE, ST_I16},
    {"torch", "CharStorage", G_STORAGE, ST_I8},
    {"torch", "ByteStorage", G_STORAGE, ST_U8},
    {"torch", "BoolStorage", G_STORAGE, ST_BOOL},
};

typedef enum { O_NONE, O_BOOL, O_INT, O_STR, O_TUPLE, O_DICT, O_GLOBAL, O_STORAGE, O_TENSOR } okind;

/* A value of the pickle.  Every object is kept on one list and freed with
 * the parse: the memo and containers share them freely, with no counts. */
typedef struct obj obj;
struct obj {
    okind k;
    int64_t i;       /* O_INT, O_BOOL; O_GLOBAL: index into GLOBALS */
    char *s;         /* O_STR; O_STORAGE: its key */
    obj **items;     /* O_TUPLE: n items; O_DICT: n (key, value) pairs flat */
    int n, cap;
    st_dtype dtype;  /* O_STORAGE, O_TENSOR */
    uint64_t numel;  /* O_STORAGE */
    obj *storage;    /* O_TENSOR, with: */
    int64_t offset;
    int ndim;
    int64_t size[ST_MAX_DIMS], stride[ST_MAX_DIMS];
    obj *all;        /* the next object made */
};

typedef struct {
    const uint8_t *p;
    size_t len, at;
    obj *all;
    int nobj;
    obj **stack;
    int sp, stack_cap;
    int pushes;   /* all made: bounds every container's items, which only come off the stack */
    int *marks;
    int nmarks, marks_cap;
    obj **memo;
    int64_t memo_cap;
    int64_t memo_n;   /* entries set: where MEMOIZE puts */
    char *err;
    size_t errlen;
} unpickler;

static int fail(unpickler *u, const char *fmt, const char *arg)
{
    char what[300];
    snprintf(what, sizeof what, fmt, arg);
    return fs_fail(u->err, u->errlen, "data.pkl: %s (byte %zu)", what, u->at);
}

static obj *make(unpickler *u, okind k)
{
    if (u->nobj >= TZ_MAX_OBJECTS) {
        fail(u, "more than %s objects", "2^20");
        return NULL;
    }
    obj *o = calloc(1, sizeof *o);
    if (!o) {
        fail(u, "%s", "out of memory");
        return NULL;
    }
    o->k = k;
    o->all = u->all;
    u->all = o;
    u->nobj++;
    return o;
}

/* Grows *arr (of elem-size entries, *cap of them) to hold need. */
static int grow(unpickler *u, void **arr, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    int64_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *a = realloc(*arr, (size_t)c * elem);
    if (!a)
        return fail(u, "%s", "out of memory");
    memset((char *)a + (size_t)*cap * elem, 0, (size_t)(c - *cap) * elem);
    *arr = a;
    *cap = c;
    return 0;
}

static int push(unpickler *u, obj *o)
{
    if (!o)
        return -1;
    if (u->pushes++ >= TZ_MAX_OBJECTS)
        return fail(u, "%s", "more than 2^20 values pushed");
    int64_t cap = u->stack_cap;
    if (grow(u, (void **)&u->stack, &cap, u->sp + 1, sizeof *u->stack) != 0)
        return -1;
    u->stack_cap = (int)cap;
    u->stack[u->sp++] = o;
    return 0;
}

/* The top of the stack above the last mark, or NULL (a reason in err). */
static obj *pop(unpickler *u)
{
    int floor = u->nmarks ? u->marks[u->nmarks - 1] : 0;
    if (u->sp <= floor) {
        fail(u, "%s", "stack underflow");
        return NULL;
    }
    return u->stack[--u->sp];
}

static int take(unpickler *u, size_t n, const uint8_t **out)
{
    *out = u->p + u->at;
    if (u->len - u->at < n)
        return fail(u, "%s", "truncated");
    u->at += n;
    return 0;
}

/* The stack items above the last mark become a tuple (or, for a dict,
 * key-value pairs); the mark is dropped. */
static int pop_mark(unpickler *u, obj ***items, int *n)
{
    if (!u->nmarks)
        return fail(u, "%s", "no MARK to pop to");
    int m = u->marks[--u->nmarks];
    *n = u->sp - m;
    *items = malloc((size_t)(*n ? *n : 1) * sizeof **items);
    if (!*items)
        return fail(u, "%s", "out of memory");
    if (*n)   /* the stack may not exist yet */
        memcpy(*items, u->stack + m, (size_t)*n * sizeof **items);
    u->sp = m;
    return 0;
}

static int tuple_of(unpickler *u, int n)
{
    obj *t = make(u, O_TUPLE);
    if (!t)
        return -1;
    if (!(t->items = malloc((size_t)(n ? n : 1) * sizeof *t->items)))
        return fail(u, "%s", "out of memory");
    for (int i = n - 1; i >= 0; i--)
        if (!(t->items[i] = pop(u)))
            return -1;
    t->n = n;
    return push(u, t);
}

static int dict_add(unpickler *u, obj *d, obj **kv, int n)
{
    if (d->k != O_DICT)
        return fail(u, "%s", "SETITEM on something not a dict");
    if (n % 2)
        return fail(u, "%s", "SETITEMS with an odd number of items");
    if (n == 0)   /* an empty SETITEMS: d->items may be NULL still */
        return 0;
    int64_t cap = d->cap;
    if (grow(u, (void **)&d->items, &cap, (int64_t)d->n + n, sizeof *d->items) != 0)
        return -1;
    d->cap = (int)cap;
    memcpy(d->items + d->n, kv, (size_t)n * sizeof *kv);
    d->n += n;
    return 0;
}

/* Pushes the global module.name, if one of GLOBALS. */
static int push_global(unpickler *u, const char *module, size_t mlen, const char *name,
                       size_t nlen)
{
    for (size_t g = 0; g < sizeof GLOBALS / sizeof GLOBALS[0]; g++)
        if (strlen(GLOBALS[g].module) == mlen && memcmp(GLOBALS[g].module, module, mlen) == 0 &&
            strlen(GLOBALS[g].name) == nlen && memcmp(GLOBALS[g].name, name, nlen) == 0) {
            obj *o = make(u, O_GLOBAL);
            if (o)
                o->i = (int64_t)g;
            return push(u, o);
        }
    char what[160];
    snprintf(what, sizeof what, "%.*s.%.*s", (int)(mlen < 70 ? mlen : 70), module,
             (int)(nlen < 70 ? nlen : 70), name);
    return fail(u, "global %s is not one a state_dict needs", what);
}

static int op_global(unpickler *u)
{
    const char *line[2];
    size_t linelen[2];
    for (int k = 0; k < 2; k++) {
        const uint8_t *s = u->p + u->at, *nl = memchr(s, '\n', u->len - u->at);
        if (!nl)
            return fail(u, "%s", "GLOBAL without a newline");
        line[k] = (const char *)s;
        linelen[k] = (size_t)(nl - s);
        u->at += linelen[k] + 1;
    }
    return push_global(u, line[0], linelen[0], line[1], linelen[1]);
}

/* Protocol 4's GLOBAL: module and name are the two strings on the stack. */
static int op_stack_global(unpickler *u)
{
    obj *name = pop(u), *module = name ? pop(u) : NULL;
    if (!module)
        return -1;
    if (module->k != O_STR || name->k != O_STR)
        return fail(u, "%s", "STACK_GLOBAL of something other than two strings");
    return push_global(u, module->s, strlen(module->s), name->s, strlen(name->s));
}

static int op_int(unpickler *u, size_t n, int is_signed)
{
    const uint8_t *b;
    if (take(u, n, &b) != 0)
        return -1;
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++)
        v |= (uint64_t)b[k] << (8 * k);
    if (is_signed && n < 8 && n > 0 && (b[n - 1] & 0x80))
        v |= ~0ull << (8 * n);   /* sign-extend */
    obj *o = make(u, O_INT);
    if (o)
        o->i = (int64_t)v;
    return push(u, o);
}

static int op_long1(unpickler *u)
{
    const uint8_t *b;
    if (take(u, 1, &b) != 0)
        return -1;
    if (*b > 8)
        return fail(u, "%s", "LONG1 of more than 8 bytes");
    return op_int(u, *b, 1);
}

/* BINUNICODE (a 4-byte length) or SHORT_BINUNICODE (1 byte). */
static int op_unicode(unpickler *u, size_t lenbytes)
{
    const uint8_t *b, *s;
    if (take(u, lenbytes, &b) != 0)
        return -1;
    uint32_t n = lenbytes == 1 ? b[0] : le_get_u32(b);
    if (take(u, n, &s) != 0)
        return -1;
    if (memchr(s, 0, n))
        return fail(u, "%s", "a string holds a NUL byte");
    obj *o = make(u, O_STR);
    if (!o)
        return -1;
    if (!(o->s = malloc((size_t)n + 1)))
        return fail(u, "%s", "out of memory");
    memcpy(o->s, s, n);
    o->s[n] = 0;
    return push(u, o);
}

/* The memo index of an n-byte operand, or for MEMOIZE (n == 0) the next one. */
static int memo_index(unpickler *u, size_t n, int64_t *idx)
{
    const uint8_t *b;
    if (n == 0)
        *idx = u->memo_n;
    else if (take(u, n, &b) != 0)
        return -1;
    else
        *idx = n == 1 ? b[0] : (int64_t)le_get_u32(b);
    if (*idx >= TZ_MAX_OBJECTS)
        return fail(u, "%s", "memo index past the object limit");
    return 0;
}

static int op_put(unpickler *u, size_t n)
{
    int64_t idx;
    if (memo_index(u, n, &idx) != 0)
        return -1;
    if (u->sp == 0 || (u->nmarks && u->marks[u->nmarks - 1] == u->sp))
        return fail(u, "%s", "PUT of nothing");
    if (grow(u, (void **)&u->memo, &u->memo_cap, idx + 1, sizeof *u->memo) != 0)
        return -1;
    u->memo_n += !u->memo[idx];
    u->memo[idx] = u->stack[u->sp - 1];
    return 0;
}

static int op_get(unpickler *u, size_t n)
{
    int64_t idx;
    if (memo_index(u, n, &idx) != 0)
        return -1;
    if (idx >= u->memo_cap || !u->memo[idx])
        return fail(u, "%s", "GET of a memo entry never PUT");
    return push(u, u->memo[idx]);
}

static int is_global(const obj *o, int id)
{
    return o && o->k == O_GLOBAL && GLOBALS[o->i].id == id;
}

/* persistent_load(("storage", torch.XStorage, key, location, numel)) */
static int op_persid(unpickler *u)
{
    obj *pid = pop(u);
    if (!pid)
        return -1;
    obj **a = pid->items;
    if (pid->k != O_TUPLE || pid->n != 5 || a[0]->k != O_STR || strcmp(a[0]->s, "storage") != 0 ||
        !is_global(a[1], G_STORAGE) || a[2]->k != O_STR || a[3]->k != O_STR || a[4]->k != O_INT)
        return fail(u, "%s", "a persistent id other than (\"storage\", type, key, location, numel)");
    if (a[4]->i < 0 || a[4]->i > (1ll << 48))
        return fail(u, "storage %s: numel out of range", a[2]->s);
    obj *s = make(u, O_STORAGE);
    if (!s)
        return -1;
    s->s = strdup(a[2]->s);
    if (!s->s)
        return fail(u, "%s", "out of memory");
    s->dtype = GLOBALS[a[1]->i].dtype;
    s->numel = (uint64_t)a[4]->i;
    return push(u, s);
}

static int ints_of(const obj *t, int64_t *out, int *n)
{
    if (t->k != O_TUPLE || t->n > ST_MAX_DIMS)
        return -1;
    for (int i = 0; i < t->n; i++) {
        if (t->items[i]->k != O_INT)
            return -1;
        out[i] = t->items[i]->i;
    }
    *n = t->n;
    return 0;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) */
static obj *rebuild_tensor(unpickler *u, const obj *args)
{
    obj **a = args->items;
    if (args->n < 6 || args->n > 7 || a[0]->k != O_STORAGE || a[1]->k != O_INT ||
        a[4]->k != O_BOOL || a[5]->k != O_DICT) {
        fail(u, "%s", "_rebuild_tensor_v2 with arguments other than a tensor's");
        return NULL;
    }
    obj *t = make(u, O_TENSOR);
    int nstride;
    if (t && (ints_of(a[2], t->size, &t->ndim) != 0 || ints_of(a[3], t->stride, &nstride) != 0 ||
              t->ndim != nstride)) {
        fail(u, "%s", "a tensor's size and stride are not tuples of as many ints (at most 4)");
        return NULL;
    }
    if (t) {
        t->storage = a[0];
        t->dtype = a[0]->dtype;
        t->offset = a[1]->i;
    }
    return t;
}

static int op_reduce(unpickler *u)
{
    obj *args = pop(u), *f = args ? pop(u) : NULL;
    if (!f)
        return -1;
    if (args->k != O_TUPLE)
        return fail(u, "%s", "REDUCE with arguments that are not a tuple");
    if (is_global(f, G_ODICT) && args->n == 0)
        return push(u, make(u, O_DICT));
    if (is_global(f, G_REBUILD))
        return push(u, rebuild_tensor(u, args));
    if (is_global(f, G_PARAM) && args->n == 3 && args->items[0]->k == O_TENSOR)
        return push(u, args->items[0]);   /* a Parameter is its tensor */
    return fail(u, "%s", "REDUCE of something other than OrderedDict(), _rebuild_tensor_v2 "
                "or _rebuild_parameter");
}

/* One opcode; 1 at STOP. */
static int step(unpickler *u)
{
    const uint8_t *b;
    obj **items, *o, *d;
    int n;
    if (take(u, 1, &b) != 0)
        return -1;
    switch (*b) {
    case 0x80:   /* PROTO */
        if (take(u, 1, &b) != 0)
            return -1;
        return *b >= 2 && *b <= 5 ? 0 : fs_fail(u->err, u->errlen, "data.pkl: pickle protocol "
                                                "%d (only 2 to 5, what torch.save writes)", *b);
    case 0x95:   /* FRAME: its length is only a hint for buffering */
        return take(u, 8, &b);
    case 'c': return op_global(u);
    case 0x93: return op_stack_global(u);
    case 0x94: return op_put(u, 0);
    case 'q': return op_put(u, 1);
    case 'r': return op_put(u, 4);
    case 'h': return op_get(u, 1);
    case 'j': return op_get(u, 4);
    case '(': {
        if (u->nmarks >= TZ_MAX_OBJECTS)
            return fail(u, "%s", "more than 2^20 MARKs open");
        int64_t cap = u->marks_cap;
        if (grow(u, (void **)&u->marks, &cap, u->nmarks + 1, sizeof *u->marks) != 0)
            return -1;
        u->marks_cap = (int)cap;
        u->marks[u->nmarks++] = u->sp;
        return 0;
    }
    case ')': return tuple_of(u, 0);
    case 0x85: return tuple_of(u, 1);
    case 0x86: return tuple_of(u, 2);
    case 0x87: return tuple_of(u, 3);
    case 't':
        if (pop_mark(u, &items, &n) != 0)
            return -1;
        if (!(o = make(u, O_TUPLE))) {
            free(items);
            return -1;
        }
        o->items = items;
        o->n = n;
        return push(u, o);
    case '}': return push(u, make(u, O_DICT));
    case 's': {
        obj *kv[2];
        if (!(kv[1] = pop(u)) || !(kv[0] = pop(u)) || !(d = pop(u)))
            return -1;
        return dict_add(u, d, kv, 2) == 0 ? push(u, d) : -1;
    }
    case 'u': {
        if (pop_mark(u, &items, &n) != 0)
            return -1;
        d = pop(u);
        int rc = d ? dict_add(u, d, items, n) : -1;
        free(items);
        return rc == 0 ? push(u, d) : -1;
    }
    case 'X': return op_unicode(u, 4);
    case 0x8c: return op_unicode(u, 1);
    case 'K': return op_int(u, 1, 0);
    case 'M': return op_int(u, 2, 0);
    case 'J': return op_int(u, 4, 1);
    case 0x8a: return op_long1(u);
    case 'N': return push(u, make(u, O_NONE));
    case 0x88:
    case 0x89:
        if (!(o = make(u, O_BOOL)))
            return -1;
        o->i = *b == 0x88;
        return push(u, o);
    case 'Q': return op_persid(u);
    case 'R': return op_reduce(u);
    case 'b':   /* BUILD: state_dict's _metadata on its OrderedDict, not needed */
        if (!(o = pop(u)))
            return -1;
        if (u->sp == 0 || u->stack[u->sp - 1]->k != O_DICT)
            return fail(u, "%s", "BUILD of something other than a dict");
        return 0;
    case '.': return 1;
    default: {
        char op[40];
        if (*b >= 0x20 && *b < 0x7f)
            snprintf(op, sizeof op, "'%c' (0x%02x)", *b, *b);
        else
            snprintf(op, sizeof op, "0x%02x", *b);
        return fail(u, "opcode %s is not one a state_dict needs", op);
    }
    }
}

/* ---- the state_dict's tensors ------------------------------------------ */

void tz_dict_free(tz_dict *d)
{
    for (int i = 0; i < d->n; i++) {
        free(d->tensors[i].t.name);
        free(d->tensors[i].storage);
    }
    free(d->tensors);
    memset(d, 0, sizeof *d);
}

/* A contiguous view within its storage: what the importer can read in one span. */
static int check_view(const obj *t, const char *name, uint64_t *numel, char *err, size_t errlen)
{
    uint64_t n = 1;
    int strided = 0;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->size[i] < 0 || t->size[i] > (1ll << 40))
            return fs_fail(err, errlen, "data.pkl: %s has a bad size", name);
        strided |= t->size[i] != 1 && t->stride[i] != (int64_t)n;
        if (t->size[i] && n > (1ull << 48) / (uint64_t)t->size[i])
            return fs_fail(err, errlen, "data.pkl: %s: shape too large", name);
        n *= (uint64_t)t->size[i];
    }
    if (strided && n)   /* torch deems a tensor of no elements contiguous, whatever its strides */
        return fs_fail(err, errlen, "data.pkl: %s is not contiguous (only a contiguous tensor "
                       "is read)", name);
    if (t->offset < 0 || (uint64_t)t->offset > t->storage->numel ||
        n > t->storage->numel - (uint64_t)t->offset)
        return fs_fail(err, errlen, "data.pkl: %s lies past the end of its storage %s", name,
                       t->storage->s);
    *numel = n;
    return 0;
}

static int add_tensor(tz_dict *d, const obj *key, const obj *t, char *err, size_t errlen)
{
    if (key->k != O_STR)
        return fs_fail(err, errlen, "data.pkl: a key of the dict is not a string");
    if (t->k != O_TENSOR)
        return fs_fail(err, errlen, "data.pkl: %s is not a tensor", key->s);
    uint64_t numel = 0;
    if (check_view(t, key->s, &numel, err, errlen) != 0)
        return -1;
    tz_tensor *z = &d->tensors[d->n];
    size_t es = st_dtype_size(t->dtype);
    z->t = (st_tensor){.dtype = t->dtype, .ndim = t->ndim,
                       .begin = (uint64_t)t->offset * es, .end = ((uint64_t)t->offset + numel) * es};
    memcpy(z->t.shape, t->size, sizeof t->size);
    z->storage_numel = t->storage->numel;
    z->entry = -1;
    z->t.name = strdup(key->s);
    z->storage = strdup(t->storage->s);
    d->n++;
    if (!z->t.name || !z->storage)
        return fs_fail(err, errlen, "out of memory");
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const tz_tensor *)a)->t.name, ((const tz_tensor *)b)->t.name);
}

static int by_storage(const void *a, const void *b)
{
    return strcmp(((const tz_tensor *)a)->storage, ((const tz_tensor *)b)->storage);
}

static int to_dict(const obj *root, tz_dict *d, char *err, size_t errlen)
{
    if (root->k != O_DICT)
        return fs_fail(err, errlen, "data.pkl: not a dict of tensors (a state_dict)");
    d->tensors = calloc((size_t)(root->n / 2 + 1), sizeof *d->tensors);
    if (!d->tensors)
        return fs_fail(err, errlen, "out of memory");
    for (int i = 0; i < root->n; i += 2)
        if (add_tensor(d, root->items[i], root->items[i + 1], err, errlen) != 0)
            return -1;
    tz_tensor *sorted = malloc((size_t)(d->n + 1) * sizeof *sorted);
    if (!sorted)
        return fs_fail(err, errlen, "out of memory");
    memcpy(sorted, d->tensors, (size_t)d->n * sizeof *sorted);
    qsort(sorted, (size_t)d->n, sizeof *sorted, by_name);
    int rc = 0;
    for (int i = 1; i < d->n && rc == 0; i++)
        if (strcmp(sorted[i].t.name, sorted[i - 1].t.name) == 0)
            rc = fs_fail(err, errlen, "data.pkl: %s appears twice", sorted[i].t.name);
    /* Tensors may share a storage (tied weights), but as one type and size:
     * torch would read the second as the first's type. */
    qsort(sorted, (size_t)d->n, sizeof *sorted, by_storage);
    for (int i = 1; i < d->n && rc == 0; i++)
        if (strcmp(sorted[i].storage, sorted[i - 1].storage) == 0 &&
            (sorted[i].t.dtype != sorted[i - 1].t.dtype ||
             sorted[i].storage_numel != sorted[i - 1].storage_numel))
            rc = fs_fail(err, errlen, "data.pkl: storage %s is named as %llu %s values for %s "
                         "but %llu %s values for %s", sorted[i].storage,
                         (unsigned long long)sorted[i - 1].storage_numel,
                         st_dtype_name(sorted[i - 1].t.dtype), sorted[i - 1].t.name,
                         (unsigned long long)sorted[i].storage_numel,
                         st_dtype_name(sorted[i].t.dtype), sorted[i].t.name);
    free(sorted);
    return rc;
}

int tz_parse_pickle(const uint8_t *p, size_t len, tz_dict *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    unpickler u = {.p = p, .len = len, .err = err, .errlen = errlen};
    int rc = 0;
    while (rc == 0)
        rc = step(&u);
    if (rc == 1) {   /* STOP: the dict alone on the stack */
        rc = u.sp == 1 && u.nmarks == 0
                 ? to_dict(u.stack[0], out, err, errlen)
                 : fs_fail(err, errlen, "data.pkl: %d values left at STOP, not one", u.sp);
    }
    while (u.all) {
        obj *o = u.all;
        u.all = o->all;
        free(o->s);
        free(o->items);
        free(o);
    }
    free(u.stack);
    free(u.marks);
    free(u.memo);
    if (rc != 0) {
        tz_dict_free(out);
        fs_printable(err);   /* it may quote a key or a global */
    }
    return rc;
}

/* ---- the archive --------------------------------------------------------- */

struct tz_file {
    zip_t *zip;
    tz_dict d;
};

static int zip_reason(int code, char *err, size_t errlen)
{
    if (code == ZIP_ER_EXISTS)   /* libzip's "File already exists" would mislead */
        return fs_fail(err, errlen, "two entries of the same name (not what torch.save writes)");
    zip_error_t ze;
    zip_error_init_with_code(&ze, code);
    fs_fail(err, errlen, "%s", zip_error_strerror(&ze));
    zip_error_fini(&ze);
    return -1;
}

/* Before 1.6, torch.save wrote a bare pickle stream, which would need the
 * whole unpickler of Python; a ZIP archive starts with a local file header. */
static int check_magic(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return fs_fail(err, errlen, "%s", strerror(errno));
    uint8_t magic[4] = {0};
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    if (n == 4 && memcmp(magic, "PK\3\4", 4) == 0)
        return 0;
    if (n >= 2 && magic[0] == 0x80)
        return fs_fail(err, errlen, "PyTorch's legacy format (before torch 1.6) is not read; "
                       "save it again with a newer torch, or as model.safetensors");
    return fs_fail(err, errlen, "not a ZIP archive (torch.save's format)");
}

/* The one PREFIX/data.pkl entry (PREFIX without '/'); its prefix length. */
static int64_t find_pickle(zip_t *z, size_t *prefix, char *err, size_t errlen)
{
    int64_t found = -1, n = zip_get_num_entries(z, 0);
    for (int64_t i = 0; i < n; i++) {
        const char *name = zip_get_name(z, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
        const char *slash = name ? strchr(name, '/') : NULL;
        if (!slash || strcmp(slash, "/data.pkl") != 0)
            continue;
        if (found >= 0)
            return fs_fail(err, errlen, "more than one data.pkl");
        found = i;
        *prefix = (size_t)(slash - name);
    }
    if (found < 0)
        return fs_fail(err, errlen, "no PREFIX/data.pkl entry (not a torch.save archive)");
    return found;
}

/* A stored entry whose compressed size is not its size: libzip 1.7 reads
 * such an entry past its window, or crashes seeking within it. */
static int check_stored_size(const zip_stat_t *st, const char *name, char *err, size_t errlen)
{
    if (st->comp_method != ZIP_CM_STORE || st->comp_size == st->size)
        return 0;
    return fs_fail(err, errlen, "%s: stored, but %llu bytes in the archive for %llu", name,
                   (unsigned long long)st->comp_size, (unsigned long long)st->size);
}

/* Reads entry i whole (at most max bytes) into a new buffer. */
static int read_entry(zip_t *z, int64_t i, size_t max, uint8_t **out, size_t *len, char *err,
                      size_t errlen)
{
    zip_stat_t st;
    const char *name = zip_get_name(z, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
    if (zip_stat_index(z, (zip_uint64_t)i, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE))
        return fs_fail(err, errlen, "%s: %s", name, zip_strerror(z));
    if (check_stored_size(&st, name, err, errlen) != 0)
        return -1;
    if (st.size > max)
        return fs_fail(err, errlen, "%s: %llu bytes, more than the %zu read", name,
                       (unsigned long long)st.size, max);
    zip_file_t *f = zip_fopen_index(z, (zip_uint64_t)i, 0);
    uint8_t *buf = malloc(st.size ? st.size : 1);
    int64_t got = f && buf ? zip_fread(f, buf, st.size) : -1;
    int rc = got == (int64_t)st.size ? 0 : fs_fail(err, errlen, "%s: %s", name,
                                                   f ? zip_file_strerror(f) : zip_strerror(z));
    if (f)
        zip_fclose(f);
    if (rc != 0)
        free(buf);
    *out = rc == 0 ? buf : NULL;
    *len = (size_t)st.size;
    return rc;
}

/* PREFIX/byteorder, when present, says "little". */
static int check_byteorder(zip_t *z, const char *prefix, char *err, size_t errlen)
{
    char name[300];
    snprintf(name, sizeof name, "%s/byteorder", prefix);
    int64_t i = zip_name_locate(z, name, ZIP_FL_ENC_RAW);
    if (i < 0)
        return 0;
    uint8_t *text;
    size_t len;
    if (read_entry(z, i, 16, &text, &len, err, errlen) != 0)
        return -1;
    int little = len == 6 && memcmp(text, "little", 6) == 0;
    free(text);
    return little ? 0 : fs_fail(err, errlen, "%s: not \"little\" (big-endian data is not read)", name);
}

/* Each tensor's storage: PREFIX/data/KEY, stored, of numel x element size bytes. */
static int find_storages(zip_t *z, const char *prefix, tz_dict *d, char *err, size_t errlen)
{
    for (int i = 0; i < d->n; i++) {
        tz_tensor *t = &d->tensors[i];
        char name[700];
        zip_stat_t st;
        if (strlen(t->storage) > 400)   /* cut short, it could name another storage */
            return fs_fail(err, errlen, "tensor %s: a storage key of %zu bytes (torch.save's are "
                           "numbers)", t->t.name, strlen(t->storage));
        snprintf(name, sizeof name, "%s/data/%s", prefix, t->storage);
        t->entry = zip_name_locate(z, name, ZIP_FL_ENC_RAW);
        if (t->entry < 0 || zip_stat_index(z, (zip_uint64_t)t->entry, 0, &st) != 0)
            return fs_fail(err, errlen, "%s: storage %s is missing (tensor %s)", name, t->storage,
                           t->t.name);
        uint64_t want = t->storage_numel * st_dtype_size(t->t.dtype);
        if (st.comp_method != ZIP_CM_STORE || st.encryption_method != ZIP_EM_NONE)
            return fs_fail(err, errlen, "%s: compressed or encrypted (torch.save stores "
                           "storages as they are)", name);
        if (check_stored_size(&st, name, err, errlen) != 0)
            return -1;
        if (st.size != want)
            return fs_fail(err, errlen, "%s: %llu bytes for %llu %s values", name,
                           (unsigned long long)st.size, (unsigned long long)t->storage_numel,
                           st_dtype_name(t->t.dtype));
    }
    return 0;
}

static int open_archive(tz_file *f, const char *path, char *err, size_t errlen)
{
    int code = 0;
    if (check_magic(path, err, errlen) != 0)
        return -1;
    if (!(f->zip = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &code)))
        return zip_reason(code, err, errlen);
    size_t plen = 0;
    int64_t pkl = find_pickle(f->zip, &plen, err, errlen);
    if (pkl < 0)
        return -1;
    char prefix[256];
    const char *name = zip_get_name(f->zip, (zip_uint64_t)pkl, ZIP_FL_ENC_RAW);
    if (plen >= sizeof prefix)
        return fs_fail(err, errlen, "a folder name of %zu bytes", plen);
    memcpy(prefix, name, plen);
    prefix[plen] = 0;
    uint8_t *pickle;
    size_t len;
    if (check_byteorder(f->zip, prefix, err, errlen) != 0 ||
        read_entry(f->zip, pkl, TZ_MAX_PICKLE, &pickle, &len, err, errlen) != 0)
        return -1;
    int rc = tz_parse_pickle(pickle, len, &f->d, err, errlen);
    free(pickle);
    return rc != 0 ? -1 : find_storages(f->zip, prefix, &f->d, err, errlen);
}

int tz_open(tz_file **out, const char *path, char *err, size_t errlen)
{
    tz_file *f = calloc(1, sizeof *f);
    if (!f)
        return fs_fail(err, errlen, "out of memory");
    char why[400];
    if (open_archive(f, path, why, sizeof why) != 0) {
        fs_fail(err, errlen, "%s: %s", path, why);
        fs_printable(err);   /* it may quote an entry's name */
        tz_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

void tz_close(tz_file *f)
{
    if (!f)
        return;
    if (f->zip)
        zip_discard(f->zip);   /* opened read-only: nothing to write back */
    tz_dict_free(&f->d);
    free(f);
}

const tz_dict *tz_tensors(const tz_file *f)
{
    return &f->d;
}

enum { TZ_CHUNK = 1 << 20 };   /* 16-bit values widened per read */

static int read_span(zip_file_t *zf, void *dst, size_t n)
{
    return zip_fread(zf, dst, n) == (int64_t)n ? 0 : -1;
}

/* Whether reading tensor t checks its storage's CRC: libzip checks the CRC
 * of an entry read from its start when a read reaches its end, and torch
 * 2.5 can write every CRC as 0 (compute_crc32 = False): nothing to check. */
static bool checks_crc(const tz_file *f, const tz_tensor *t)
{
    zip_stat_t st;
    return t->t.begin == 0 && t->t.end == t->storage_numel * st_dtype_size(t->t.dtype) &&
           zip_stat_index(f->zip, (zip_uint64_t)t->entry, 0, &st) == 0 &&
           (st.valid & ZIP_STAT_CRC) && st.crc != 0;
}

int tz_read_f32(const tz_file *f, int i, float *dst, char *err, size_t errlen)
{
    const tz_tensor *t = &f->d.tensors[i];
    if (!st_dtype_readable(t->t.dtype))
        return fs_fail(err, errlen, "tensor %s: dtype %s is not supported (F32, F16, BF16)",
                       t->t.name, st_dtype_name(t->t.dtype));
    uint64_t n = st_numel(&t->t);
    if (n == 0)   /* libzip 1.7 crashes seeking within an empty entry */
        return 0;
    bool crc = checks_crc(f, t);
    zip_file_t *zf = zip_fopen_index(f->zip, (zip_uint64_t)t->entry, 0);
    if (!zf || (!crc && zip_fseek(zf, (zip_int64_t)t->t.begin, SEEK_SET) != 0)) {
        int rc = fs_fail(err, errlen, "tensor %s: %s", t->t.name,
                         zf ? zip_file_strerror(zf) : zip_strerror(f->zip));
        if (zf)
            zip_fclose(zf);
        return rc;
    }
    int rc = 0;
    if (t->t.dtype == ST_F32) {
        rc = read_span(zf, dst, n * 4);
    } else {
        uint16_t *half = malloc((size_t)(n < TZ_CHUNK ? n : TZ_CHUNK) * 2 + 2);
        rc = half ? 0 : -1;
        for (uint64_t k = 0; k < n && rc == 0; k += TZ_CHUNK) {
            size_t m = (size_t)(n - k < TZ_CHUNK ? n - k : TZ_CHUNK);
            rc = read_span(zf, half, m * 2);
            if (rc == 0 && t->t.dtype == ST_F16)
                f16_to_f32(dst + k, half, m);
            else if (rc == 0)
                bf16_to_f32(dst + k, half, m);
        }
        free(half);
    }
    char end;   /* the read past the end that has libzip check the CRC */
    if (rc == 0 && crc && zip_fread(zf, &end, 1) != 0)
        rc = fs_fail(err, errlen, "tensor %s: %s: the bytes of its storage are not the ones "
                     "the archive's CRC was made of (a damaged file)", t->t.name,
                     zip_file_strerror(zf));
    else if (rc != 0)
        fs_fail(err, errlen, "tensor %s: %s", t->t.name, zip_file_strerror(zf));
    zip_fclose(zf);
    return rc;
}
