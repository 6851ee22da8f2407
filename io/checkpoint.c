#include "io/checkpoint.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/fsutil.h"
#include "io/h5attr.h"
#include "io/tokenizer_h5.h"


/* File locking: HDF5 1.10 flock()s files it opens and refuses a second open of a
 * locked file (the reason in-place rewrites break).  We never reopen a file that
 * is being written, since each checkpoint is a new file renamed into place, so
 * locking stays on for reading (HDF5_USE_FILE_LOCKING is left to the user, e.g.
 * for NFS); a file being written is locked by h5_create_atomic instead. */

static const char *const DIM_KEYS[] = {"vocab_size", "n_positions", "n_embd", "n_layer", "n_head"};
enum { NDIMS = sizeof DIM_KEYS / sizeof DIM_KEYS[0] };

typedef struct {
    const char *path;
    char *err;
    size_t errlen;
} ectx;

/* Sets "PATH: message" in err and returns -1. */
static int fail(const ectx *e, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(e->err, e->errlen, "%s: %s", e->path, msg);
    return -1;
}

/* ---- tensors -------------------------------------------------------------- */

uint64_t ckpt_checksum(const float *x, size_t n)
{
    return fs_checksum(x, n * sizeof(float));
}

static const char *const GROUPS[CKPT_GROUPS] = {"/model", "/optimizer/m", "/optimizer/v"};

static size_t numel(const ckpt_tensor *t)
{
    return (size_t)t->rows * (size_t)(t->cols ? t->cols : 1);
}

/* The buffer s->stream needs (one tensor, the largest) when one of the first
 * ngroups groups has no arena, else NULL; *oom tells a failed allocation from
 * that. */
static float *stream_buffer(const ckpt_state *s, int ngroups, bool *oom)
{
    size_t most = 1;
    bool streamed = false;
    *oom = false;
    for (int g = 0; g < ngroups; g++)
        streamed |= !s->arena[g];
    if (!streamed)
        return NULL;
    for (int i = 0; i < s->num_tensors; i++)
        if (numel(&s->tensors[i]) > most)
            most = numel(&s->tensors[i]);
    float *buf = malloc(most * sizeof(float));
    *oom = !buf;
    return buf;
}

/* Every tensor of the list into group gi (GROUPS), from its arena or filled
 * one at a time into buf by s->stream. */
static int write_tensors(hid_t file, int gi, const ckpt_state *s, float *buf, int fd,
                         const ectx *e)
{
    const char *group = GROUPS[gi];
    const float *arena = s->arena[gi];
    hid_t g = H5Gcreate2(file, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return fail(e, "cannot create %s", group);
    int rc = 0;
    for (int k = 0; k < s->num_tensors && rc == 0; k++) {
        const ckpt_tensor *t = &s->tensors[k];
        char why[400] = "";
        if (!arena && s->stream.get(s->stream.ctx, gi, k, buf, why, sizeof why) != 0)
            rc = fail(e, "cannot collect %s/%s%s%s", group, t->name, why[0] ? ": " : "", why);
        else if (h5_write_checked(g, t->name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                                  arena ? arena + t->offset : buf, t->rows, t->cols,
                                  numel(t) * sizeof(float)) != 0)
            rc = fail(e, "cannot write %s/%s: %s", group, t->name, h5_os_reason("disk full?"));
        else if (fd >= 0)   /* start the writeback now: the disk works while the next tensor
                             * is checksummed and copied, and the final fsync has less left */
            sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    }
    H5Gclose(g);
    return rc;
}

/* What a file lacking a training checkpoint's part is instead, for the
 * message: infer's int8 file, a model's weights alone (build/import), or
 * `otherwise`. */
static const char *missing_hint(hid_t any, const char *otherwise)
{
    hid_t f = H5Iget_file_id(any);
    const char *hint = H5Lexists(f, "/q8", H5P_DEFAULT) > 0
        ? ": an int8 file (infer --save-quantized), which only infer --quant int8 reads"
        : H5Lexists(f, "/model", H5P_DEFAULT) > 0 && H5Lexists(f, "/optimizer", H5P_DEFAULT) <= 0
        ? ": the model's weights alone (no optimizer state): start a run from it with --init-from"
        : otherwise;
    H5Fclose(f);
    return hint;
}

/* A stored tensor group/name of shape [rows] (cols 0) or [rows, cols], read
 * into dst (NULL: only its shape is checked) by h5_read_checked; a missing
 * one says what the file is instead, when it is not a training checkpoint. */
static int tensor_io(hid_t g, const char *group, const char *name, int rows, int cols,
                     float *dst, const ectx *e)
{
    if (H5Lexists(g, name, H5P_DEFAULT) <= 0)
        return fail(e, "%s/%s is missing%s", group, name, missing_hint(g, ""));
    char why[300];
    if (h5_read_checked(g, group, name, H5T_NATIVE_FLOAT, dst, rows, cols, why, sizeof why) != 0)
        return fail(e, "%s", why);
    return 0;
}

/* Opens a group of the file, or -1 with the reason set. */
static hid_t open_group(hid_t file, const char *group, const ectx *e)
{
    if (H5Lexists(file, group, H5P_DEFAULT) <= 0)
        return fail(e, "%s is missing%s", group, missing_hint(file, " (not a gpt-cpu checkpoint?)"));
    hid_t g = H5Gopen2(file, group, H5P_DEFAULT);
    return g < 0 ? fail(e, "cannot open %s", group) : g;
}

/* Checks (load false) or loads every tensor of the list from group gi
 * (GROUPS): into its arena, or one at a time into buf, handed to s->stream. */
static int read_tensors(hid_t file, int gi, const ckpt_state *s, bool load, float *buf,
                        const ectx *e)
{
    const char *group = GROUPS[gi];
    float *arena = s->arena[gi];
    hid_t g = open_group(file, group, e);
    if (g < 0)
        return -1;
    int rc = 0;
    for (int k = 0; k < s->num_tensors && rc == 0; k++) {
        const ckpt_tensor *t = &s->tensors[k];
        float *dst = !load ? NULL : arena ? arena + t->offset : buf;
        char why[400] = "";
        rc = tensor_io(g, group, t->name, t->rows, t->cols, dst, e);
        if (rc == 0 && load && !arena &&
            s->stream.put(s->stream.ctx, gi, k, buf, why, sizeof why) != 0)
            rc = fail(e, "cannot hand out %s/%s%s%s", group, t->name, why[0] ? ": " : "", why);
    }
    H5Gclose(g);
    return rc;
}

/* ---- groups of attributes --------------------------------------------------- */

/* Creates group name, runs fill on it, closes it. */
static int with_group(hid_t file, const char *name, int (*fill)(hid_t, const ckpt_state *),
                      const ckpt_state *s, const ectx *e)
{
    hid_t g = H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = g < 0 ? -1 : fill(g, s);
    if (g >= 0)
        H5Gclose(g);
    return rc ? fail(e, "cannot write %s", name) : 0;
}

static int fill_meta(hid_t g, const ckpt_state *s)
{
    (void)s;
    return h5_attr_i64(g, "format_version", CKPT_FORMAT_VERSION) | h5_attr_str(g, "program", "gpt-cpu") |
           h5_attr_str(g, "version", GPT_CPU_VERSION) | h5_attr_f64(g, "time", (double)time(NULL));
}

/* One attribute per config key (a whole value as int64, whatever the key's
 * type: JSON keeps no type, and 1.0 prints as 1; other numbers as float64,
 * strings as strings), plus "json", the whole config. */
static int fill_config(hid_t g, const ckpt_state *s)
{
    const char *json = s->config_json;
    cJSON *root = json ? cJSON_Parse(json) : NULL;
    int rc = root ? 0 : -1;
    for (cJSON *it = root ? root->child : NULL; it && rc == 0; it = it->next) {
        double v = it->valuedouble;
        if (cJSON_IsString(it))
            rc = h5_attr_str(g, it->string, it->valuestring);
        else if (fabs(v) <= 0x1p53 && v == floor(v))   /* the config's integer keys */
            rc = h5_attr_i64(g, it->string, (long long)v);
        else
            rc = h5_attr_f64(g, it->string, v);
    }
    if (rc == 0)
        rc = h5_attr_str(g, "json", json);
    cJSON_Delete(root);
    return rc;
}

static int fill_train(hid_t g, const ckpt_state *s)
{
    const ckpt_train_info *t = &s->train;
    return h5_attr_i64(g, "step", t->step) | h5_attr_i64(g, "tokens_seen", (long long)t->tokens_seen) |
           h5_attr_i64(g, "data_cursor", (long long)t->data_cursor) | h5_attr_i64(g, "seed", t->seed) |
           h5_attr_f64(g, "loss_scale", t->loss_scale) |
           h5_attr_i64(g, "loss_scale_steps", t->loss_scale_steps);
}

static int fill_optimizer(hid_t g, const ckpt_state *s)
{
    const ckpt_optimizer_info *c = &s->opt;
    return h5_attr_i64(g, "step", c->step) | h5_attr_f64(g, "lr", c->lr) |
           h5_attr_f64(g, "beta1", c->beta1) | h5_attr_f64(g, "beta2", c->beta2) |
           h5_attr_f64(g, "eps", c->eps) | h5_attr_f64(g, "weight_decay", c->weight_decay) |
           h5_attr_f64(g, "grad_clip", c->grad_clip);
}

/* The byte tokenizer when the state has none. */
static int fill_tokenizer(hid_t g, const ckpt_state *s)
{
    if (s->tok)
        return tokenizer_h5_write(g, s->tok);
    tokenizer *byte = tokenizer_new_byte();
    int rc = byte ? tokenizer_h5_write(g, byte) : -1;
    tokenizer_free(byte);
    return rc;
}

/* /meta, /config, /train, /tokenizer, /model, /optimizer (weights_only:
 * neither /train nor /optimizer). */
static int write_all(hid_t f, const ckpt_state *s, const ectx *e)
{
    bool oom, all = !s->weights_only;
    float *buf = stream_buffer(s, all ? CKPT_GROUPS : 1, &oom);
    if (oom)
        return fail(e, "out of memory for a tensor buffer");
    int *fdp = NULL, fd = -1;   /* the default (sec2) driver's handle is an int * to its fd */
    if (H5Fget_vfd_handle(f, H5P_DEFAULT, (void **)&fdp) >= 0 && fdp)
        fd = *fdp;
    int rc = with_group(f, "/meta", fill_meta, s, e) || with_group(f, "/config", fill_config, s, e) ||
             (all && with_group(f, "/train", fill_train, s, e)) ||
             with_group(f, "/tokenizer", fill_tokenizer, s, e) ||
             write_tensors(f, CKPT_MODEL, s, buf, fd, e) ||
             (all && (with_group(f, "/optimizer", fill_optimizer, s, e) ||
                      write_tensors(f, CKPT_M, s, buf, fd, e) ||
                      write_tensors(f, CKPT_V, s, buf, fd, e))) ? -1 : 0;
    free(buf);
    if (rc == 0 && H5Fflush(f, H5F_SCOPE_GLOBAL) < 0)
        rc = fail(e, "flushing the file failed: %s", h5_os_reason("disk full?"));
    return rc;
}

int ckpt_write(const char *path, const ckpt_state *s, char *err, size_t errlen)
{
    ectx e = {path, err, errlen};
    fs_atomic a;
    hid_t f = h5_create_atomic(&a, path, err, errlen);
    return f < 0 ? -1 : h5_commit_atomic(f, &a, write_all(f, s, &e), err, errlen);
}

/* ---- reading ---------------------------------------------------------------- */

/* /meta format_version, then the dimensions /config holds (each 1..2^30). */
static int read_header(hid_t f, gpt2_dims *d, const ectx *e)
{
    long long version, v[NDIMS];
    hid_t g = H5Lexists(f, "/meta", H5P_DEFAULT) > 0 ? H5Gopen2(f, "/meta", H5P_DEFAULT) : -1;
    int rc = g < 0 ? -1 : h5_attr_read_i64(g, "format_version", &version);
    if (g >= 0)
        H5Gclose(g);
    if (rc != 0)
        return fail(e, "no /meta format_version: not a gpt-cpu checkpoint");
    if (version != CKPT_FORMAT_VERSION)
        return fail(e, "checkpoint format_version %lld is not supported (this program reads %d)",
                    version, CKPT_FORMAT_VERSION);
    g = H5Lexists(f, "/config", H5P_DEFAULT) > 0 ? H5Gopen2(f, "/config", H5P_DEFAULT) : -1;
    if (g < 0)
        return fail(e, "no /config group: not a gpt-cpu checkpoint");
    for (int i = 0; i < NDIMS && rc == 0; i++)
        if (h5_attr_read_i64(g, DIM_KEYS[i], &v[i]) != 0 || v[i] < 1 || v[i] > (1 << 30))
            rc = fail(e, "/config %s is missing or invalid", DIM_KEYS[i]);
    H5Gclose(g);
    if (rc == 0)
        *d = (gpt2_dims){(int)v[0], (int)v[1], (int)v[2], (int)v[3], (int)v[4]};
    return rc;
}

/* The header, then s->check on its dimensions. */
static int check_header(hid_t f, const ckpt_state *s, const ectx *e)
{
    gpt2_dims d;
    char why[400] = "";
    if (read_header(f, &d, e) != 0)
        return -1;
    if (s->check && s->check(s->check_ctx, &d, why, sizeof why) != 0)
        return fail(e, "%s", why[0] ? why : "refused");
    return 0;
}

static int read_train(hid_t f, ckpt_state *s, const ectx *e)
{
    long long step, tokens, cursor, seed, opt_step, scale_steps = 0;
    double scale;
    hid_t g = H5Gopen2(f, "/train", H5P_DEFAULT);
    int rc = g < 0 || h5_attr_read_i64(g, "step", &step) || h5_attr_read_i64(g, "tokens_seen", &tokens) ||
             h5_attr_read_i64(g, "data_cursor", &cursor) || h5_attr_read_i64(g, "seed", &seed) ||
             h5_attr_read(g, "loss_scale", H5T_NATIVE_DOUBLE, &scale);
    /* absent from files written before the count was kept: 0, as a fresh scaler */
    if (rc == 0 && H5Aexists(g, "loss_scale_steps") > 0)
        rc = h5_attr_read_i64(g, "loss_scale_steps", &scale_steps);
    if (g >= 0)
        H5Gclose(g);
    g = rc ? -1 : H5Gopen2(f, "/optimizer", H5P_DEFAULT);
    rc = rc || g < 0 || h5_attr_read_i64(g, "step", &opt_step);
    if (g >= 0)
        H5Gclose(g);
    if (rc || step < 0 || step > INT32_MAX || opt_step < 0 || opt_step > step || tokens < 0 ||
        cursor < 0 || scale_steps < 0 || scale_steps > INT32_MAX ||
        !(scale == 0 || (scale >= FLT_MIN && scale <= FLT_MAX)))   /* 0: no loss scaler */
        return fail(e, "/train or /optimizer attributes are missing or invalid");
    s->train = (ckpt_train_info){.step = (int)step, .tokens_seen = (uint64_t)tokens,
                                 .data_cursor = (uint64_t)cursor, .seed = seed,
                                 .loss_scale = scale, .loss_scale_steps = scale_steps};
    s->opt.step = (int)opt_step;
    return 0;
}

int ckpt_read(const char *path, ckpt_state *s, char *err, size_t errlen)
{
    ectx e = {path, err, errlen};
    struct stat st;
    if (stat(path, &st) != 0)
        return fail(&e, "cannot open: %s", strerror(errno));
    h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return fail(&e, "not a readable HDF5 file (truncated or damaged)");
    bool oom;
    float *buf = stream_buffer(s, CKPT_GROUPS, &oom);
    int rc = oom ? fail(&e, "out of memory for a tensor buffer") : check_header(f, s, &e);
    for (int g = 0; g < CKPT_GROUPS && rc == 0; g++)   /* every shape first, then the data */
        rc = read_tensors(f, g, s, false, buf, &e);
    for (int g = 0; g < CKPT_GROUPS && rc == 0; g++)
        rc = read_tensors(f, g, s, true, buf, &e);
    if (rc == 0)
        rc = read_train(f, s, &e);
    free(buf);
    H5Fclose(f);
    return rc;
}

/* ---- reading the model alone (inference) ---------------------------------------- */

struct ckpt_model_file {
    hid_t file, model;   /* model: the /model group, opened at the first tensor (-1 before) */
    char path[];
};

int ckpt_model_open(const char *path, ckpt_model_file **out, gpt2_dims *dims, char *err,
                    size_t errlen)
{
    ectx e = {path, err, errlen};
    *out = NULL;
    FILE *probe = fopen(path, "rb");   /* the OS's reason, which HDF5 would not give */
    if (!probe)
        return fail(&e, "cannot open: %s", strerror(errno));
    fclose(probe);
    h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return fail(&e, "not a readable HDF5 file (truncated or damaged)");
    ckpt_model_file *m = malloc(sizeof *m + strlen(path) + 1);
    if (!m) {
        H5Fclose(f);
        return fail(&e, "out of memory");
    }
    *m = (ckpt_model_file){.file = f, .model = -1};
    strcpy(m->path, path);
    if (read_header(f, dims, &e) != 0) {
        ckpt_model_close(m);
        return -1;
    }
    *out = m;
    return 0;
}

tokenizer *ckpt_model_tokenizer(ckpt_model_file *m, char *err, size_t errlen)
{
    ectx e = {m->path, err, errlen};
    char why[300];
    hid_t g = H5Lexists(m->file, "/tokenizer", H5P_DEFAULT) > 0
                  ? H5Gopen2(m->file, "/tokenizer", H5P_DEFAULT)
                  : -1;
    tokenizer *t = g < 0 ? NULL : tokenizer_h5_read(g, why, sizeof why);
    if (g < 0)
        fail(&e, "/tokenizer is missing");
    else if (!t)
        fail(&e, "%s", why);
    if (g >= 0)
        H5Gclose(g);
    return t;
}

int ckpt_model_tensor(ckpt_model_file *m, const char *name, int rows, int cols, float *dst,
                      char *err, size_t errlen)
{
    ectx e = {m->path, err, errlen};
    if (m->model < 0 && (m->model = open_group(m->file, "/model", &e)) < 0)
        return -1;
    return tensor_io(m->model, "/model", name, rows, cols, dst, &e);
}

void ckpt_model_close(ckpt_model_file *m)
{
    if (!m)
        return;
    if (m->model >= 0)
        H5Gclose(m->model);
    H5Fclose(m->file);
    free(m);
}

/* ---- the checkpoint directory ------------------------------------------------ */

long ckpt_name_step(const char *name)
{
    if (strncmp(name, "ckpt_", 5) != 0)
        return -1;
    const char *p = name + 5, *q = p;
    while (*q >= '0' && *q <= '9')
        q++;
    /* steps are ints: up to INT_MAX, 10 digits (ckpt_%06d writes as many as it needs) */
    if (q == p || q - p > 10 || strcmp(q, ".h5") != 0)
        return -1;
    long step = strtol(p, NULL, 10);
    return step <= INT_MAX ? step : -1;
}

typedef struct {
    long step;
    char name[32];
} ckpt_entry;

static int newest_first(const void *a, const void *b)
{
    long x = ((const ckpt_entry *)a)->step, y = ((const ckpt_entry *)b)->step;
    return (x < y) - (x > y);
}

/* The checkpoints in dir, newest first (*n = 0 if dir does not exist). */
static int list_ckpts(const char *dir, ckpt_entry **out, int *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    int cap = 0;
    for (struct dirent *de; (de = readdir(d));) {
        long step = ckpt_name_step(de->d_name);
        if (step < 0)
            continue;
        if (*n == cap) {
            ckpt_entry *bigger = realloc(*out, (size_t)(cap = cap * 2 + 8) * sizeof **out);
            if (!bigger) {
                closedir(d);
                return -1;
            }
            *out = bigger;
        }
        (*out)[*n].step = step;
        snprintf((*out)[(*n)++].name, sizeof(*out)->name, "%.31s", de->d_name);   /* <= 17 chars */
    }
    closedir(d);
    if (*n > 1)   /* qsort wants a non-NULL base even for 0 elements */
        qsort(*out, (size_t)*n, sizeof **out, newest_first);
    return 0;
}

long ckpt_newest_step(const char *dir)
{
    ckpt_entry *list;
    int n;
    long step = list_ckpts(dir, &list, &n) == 0 && n > 0 ? list[0].step : -1;
    free(list);
    return step;
}

void ckpt_remove_stale(const char *dir, char *note, size_t notelen)
{
    char path[1100];
    size_t used = 0;
    if (notelen > 0)
        note[0] = '\0';
    DIR *d = opendir(dir);
    for (struct dirent *de; d && (de = readdir(d));) {
        size_t len = strlen(de->d_name);
        if (strncmp(de->d_name, "ckpt_", 5) == 0 && len > 4 &&
            strcmp(de->d_name + len - 4, ".tmp") == 0 &&
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name) < (int)sizeof path &&
            unlink(path) == 0 && used + 1 < notelen)
            used += (size_t)snprintf(note + used, notelen - used, "%s%s", used ? ", " : "", path);
    }
    if (d)
        closedir(d);
}

/* After saving step `step`: deletes all but the newest keep checkpoints up to
 * that step, and stale ckpt_*.h5.tmp files.  Checkpoints past `step` belong
 * to a run that went further before this one resumed from an earlier point:
 * they are not this run's to delete, and counting them would delete the file
 * just saved.  Best effort: a file that cannot be deleted now is retried at
 * the next save. */
static void prune(const char *dir, int keep, long step)
{
    ckpt_entry *list;
    int n;
    char path[1100];
    if (list_ckpts(dir, &list, &n) == 0)
        for (int i = 0, kept = 0; i < n; i++) {
            if (list[i].step > step || kept++ < keep)
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, list[i].name);
            unlink(path);
        }
    free(list);
    ckpt_remove_stale(dir, NULL, 0);
}

/* The pointer is written after the checkpoint is complete and before older
 * ones are pruned, so it always names a file that was complete. */
int ckpt_save(const char *dir, const ckpt_state *s, int keep, char *path, size_t pathlen,
              char *err, size_t errlen)
{
    char name[32], latest[1100];
    snprintf(name, sizeof name, "ckpt_%06d.h5", s->train.step);
    if (snprintf(path, pathlen, "%s/%s", dir, name) >= (int)pathlen ||
        snprintf(latest, sizeof latest, "%s/latest", dir) >= (int)sizeof latest) {
        snprintf(err, errlen, "%s: checkpoint path too long", dir);
        return -1;
    }
    if (fs_mkdir_p(dir, err, errlen) != 0 || ckpt_write(path, s, err, errlen) != 0)
        return -1;
    strcat(name, "\n");
    if (fs_write_file_atomic(latest, name, strlen(name), err, errlen) != 0)
        return -1;
    prune(dir, keep > 0 ? keep : 1, s->train.step);
    return 0;
}

/* The file name DIR/latest holds, or "" if it is missing or not a checkpoint name. */
static void read_latest(const char *dir, char *name, size_t cap)
{
    char path[1100], err[256];
    uint8_t *data;
    size_t len;
    name[0] = '\0';
    snprintf(path, sizeof path, "%s/latest", dir);
    if (fs_read_file_max(path, 4096, &data, &len, err, sizeof err) != 0)
        return;
    data[strcspn((char *)data, "\r\n")] = '\0';
    if (ckpt_name_step((char *)data) >= 0 && strlen((char *)data) < cap)
        strcpy(name, (char *)data);
    free(data);
}

static void append(char *buf, size_t cap, const char *text)
{
    size_t n = strlen(buf);
    if (n + 1 < cap)
        snprintf(buf + n, cap - n, "%s%s", n ? "; " : "", text);
}

/* The order --resume auto tries DIR's checkpoints in: the one latest names,
 * then the others up to its step, newest first; last the ones past it, which a
 * run that went further left before this one resumed from an earlier point
 * (prune keeps them): the run the user went back from is the last resort, not
 * the first.  *n = 0 when DIR holds no checkpoint, whatever latest says. */
static int resume_order(const char *dir, ckpt_entry **out, int *n, bool *has_latest)
{
    ckpt_entry *list, *order = NULL;
    int k, m = 0;
    char latest[32];
    if (list_ckpts(dir, &list, &k) != 0)
        return -1;
    read_latest(dir, latest, sizeof latest);
    *has_latest = latest[0] != '\0';
    if (k > 0 && !(order = malloc((size_t)(k + 1) * sizeof *order))) {
        free(list);
        return -1;
    }
    long last = *has_latest ? ckpt_name_step(latest) : LONG_MAX;
    if (k > 0 && *has_latest) {
        order[m].step = last;
        snprintf(order[m++].name, sizeof order->name, "%s", latest);
    }
    for (int past = 0; past < 2; past++)
        for (int i = 0; i < k; i++)
            if (strcmp(list[i].name, latest) != 0 && (list[i].step > last) == past)
                order[m++] = list[i];
    free(list);
    *out = order;
    *n = m;
    return 0;
}

int ckpt_auto_dims(const char *dir, gpt2_dims *d, char *path, size_t pathlen)
{
    ckpt_entry *order;
    int n, found = 0;
    bool has_latest;
    char why[512];
    if (resume_order(dir, &order, &n, &has_latest) != 0)
        return 0;
    for (int i = 0; i < n && !found; i++) {
        ckpt_model_file *f;
        snprintf(path, pathlen, "%s/%s", dir, order[i].name);
        if (ckpt_model_open(path, &f, d, why, sizeof why) == 0) {
            ckpt_model_close(f);
            found = 1;
        }
    }
    free(order);
    return found;
}

int ckpt_load_auto(const char *dir, ckpt_state *s, char *path, size_t pathlen, char *warn,
                   size_t warnlen, char *err, size_t errlen)
{
    ckpt_entry *order;
    int n;
    bool has_latest;
    char why[512];
    warn[0] = '\0';
    if (resume_order(dir, &order, &n, &has_latest) != 0) {
        snprintf(err, errlen, "%s: cannot list: %s", dir, strerror(errno));
        return -1;
    }
    if (n == 0)
        return 0;
    if (!has_latest)
        append(warn, warnlen, "no valid latest pointer, using the newest checkpoint that loads");
    int rc = -1;
    err[0] = '\0';
    for (int i = 0; i < n && rc != 1; i++) {
        snprintf(path, pathlen, "%s/%s", dir, order[i].name);
        if (ckpt_read(path, s, why, sizeof why) == 0) {
            rc = 1;
        } else {
            append(warn, warnlen, why);
            if (!err[0])
                snprintf(err, errlen, "no checkpoint in %s loads; %s", dir, why);
        }
    }
    free(order);
    return rc;
}
