/* q8file: --save-quantized files; the layout is in q8file.h. */
#include "infer/q8file.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/checkpoint.h"
#include "io/fsutil.h"
#include "io/h5attr.h"
#include "io/tokenizer_h5.h"
#include "kernels/q8.h"

struct infer_q8file {
    hid_t file, q8;
    char path[];
};

/* ---- writing ------------------------------------------------------------------ */

typedef struct {
    hid_t model, q8;
    q8_path decode_path;   /* the model's (for matrices held as wv) */
} writer;

static int write_vec(void *ctx, const char *name, int rows, int cols, float *x, char *err,
                     size_t errlen)
{
    const writer *w = ctx;
    if (h5_write_checked(w->model, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, x, rows, cols,
                      (size_t)rows * (cols ? cols : 1) * sizeof(float)) == 0)
        return 0;
    snprintf(err, errlen, "cannot write /model/%s: %s", name, h5_os_reason("disk full?"));
    return -1;
}

/* The file holds q8_pack_weights' [out, in] form: a matrix the model holds
 * in a decode layout is unpacked for writing. */
static int write_mat(void *ctx, const char *name, const infer_linear *l, char *err,
                     size_t errlen)
{
    const writer *w = ctx;
    char sname[128];
    snprintf(sname, sizeof sname, "%s_scale", name);
    size_t n = (size_t)l->out * l->in;
    int8_t *wq = l->wq;
    float *ws = l->ws;
    if (l->wv) {
        wq = malloc(n);
        ws = malloc(n / Q8_GS * sizeof *ws);
        if (!wq || !ws) {
            free(wq), free(ws);
            snprintf(err, errlen, "out of memory writing /q8/%s", name);
            return -1;
        }
        q8_decode_unpack(w->decode_path, wq, ws, l->wv, l->in, l->out);
    }
    int rc = h5_write_checked(w->q8, name, H5T_STD_I8LE, H5T_NATIVE_INT8, wq, l->out, l->in, n) == 0 &&
                     h5_write_checked(w->q8, sname, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ws, l->out,
                                      l->in / Q8_GS, n / Q8_GS * sizeof(float)) == 0
                 ? 0 : -1;
    if (l->wv)
        free(wq), free(ws);
    if (rc != 0)
        snprintf(err, errlen, "cannot write /q8/%s: %s", name, h5_os_reason("disk full?"));
    return rc;
}

static hid_t new_group(hid_t f, const char *name)
{
    return H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
}

static int write_header(hid_t f, const infer_model *m, const tokenizer *tok)
{
    const gpt2_dims *d = &m->d;
    hid_t meta = new_group(f, "/meta"), cfg = new_group(f, "/config"), tg = new_group(f, "/tokenizer");
    int rc = meta < 0 || cfg < 0 || tg < 0 ? -1 : 0;
    if (rc == 0)
        rc = h5_attr_i64(meta, "format_version", CKPT_FORMAT_VERSION) |
             h5_attr_str(meta, "program", "gpt-cpu infer --save-quantized") |
             h5_attr_str(meta, "version", GPT_CPU_VERSION) |
             h5_attr_i64(meta, "time", (long long)time(NULL)) |
             h5_attr_i64(cfg, "vocab_size", d->vocab_size) |
             h5_attr_i64(cfg, "n_positions", d->n_positions) | h5_attr_i64(cfg, "n_embd", d->n_embd) |
             h5_attr_i64(cfg, "n_layer", d->n_layer) | h5_attr_i64(cfg, "n_head", d->n_head) |
             h5_attr_str(cfg, "quant", "int8") | h5_attr_i64(cfg, "q8_group_size", Q8_GS) |
             tokenizer_h5_write(tg, tok);
    hid_t groups[3] = {meta, cfg, tg};
    for (int i = 0; i < 3; i++)
        if (groups[i] >= 0)
            H5Gclose(groups[i]);
    return rc;
}

static int write_file(hid_t f, const infer_model *m, const tokenizer *tok, char *err,
                      size_t errlen)
{
    errno = 0;
    if (write_header(f, m, tok) != 0) {
        snprintf(err, errlen, "cannot write the header groups: %s", h5_os_reason("disk full?"));
        return -1;
    }
    writer w = {new_group(f, "/model"), new_group(f, "/q8"), m->decode_path};
    static const infer_visitor v = {write_vec, write_mat};
    int rc = w.model < 0 || w.q8 < 0 ? -1 : infer_model_walk(m, &v, &w, err, errlen);
    if (w.model < 0 || w.q8 < 0)
        snprintf(err, errlen, "cannot create the groups");
    if (w.model >= 0)
        H5Gclose(w.model);
    if (w.q8 >= 0)
        H5Gclose(w.q8);
    return rc;
}

int infer_q8file_save(const char *path, const infer_model *m, const tokenizer *tok, char *err,
                      size_t errlen)
{
    char why[400];
    if (m->quant != INFER_INT8) {
        snprintf(err, errlen, "--save-quantized needs --quant int8");
        return -1;
    }
    fs_atomic a;
    hid_t f = h5_create_atomic(&a, path, err, errlen);
    if (f < 0)
        return -1;
    int rc = write_file(f, m, tok, why, sizeof why);
    if (rc != 0)
        snprintf(err, errlen, "%s: %s", path, why);
    return h5_commit_atomic(f, &a, rc, err, errlen);
}

/* ---- reading ------------------------------------------------------------------ */

int infer_q8file_open(const char *path, infer_q8file **out, char *err, size_t errlen)
{
    *out = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        snprintf(err, errlen, "%s: not a readable HDF5 file (truncated or damaged)", path);
        return -1;
    }
    if (H5Lexists(f, "/q8", H5P_DEFAULT) <= 0) {
        H5Fclose(f);
        return 0;
    }
    /* h5_attr_read_i64 refuses an array where the scalar belongs: H5Aread
     * would write all of its values */
    long long group = 0;
    hid_t cfg = H5Gopen2(f, "/config", H5P_DEFAULT);   /* exists: the checkpoint reader saw it */
    const bool have = cfg >= 0 && h5_attr_read_i64(cfg, "q8_group_size", &group) == 0;
    if (cfg >= 0)
        H5Gclose(cfg);
    infer_q8file *q = group == Q8_GS ? malloc(sizeof *q + strlen(path) + 1) : NULL;
    hid_t g = q ? H5Gopen2(f, "/q8", H5P_DEFAULT) : -1;
    if (g < 0) {
        if (!have)
            snprintf(err, errlen, "%s: /config q8_group_size is missing or not one integer", path);
        else if (group != Q8_GS)
            snprintf(err, errlen, "%s: /config q8_group_size is %lld, not %d", path, group, Q8_GS);
        else
            snprintf(err, errlen, "%s: cannot open /q8", path);
        free(q);
        H5Fclose(f);
        return -1;
    }
    q->file = f;
    q->q8 = g;
    strcpy(q->path, path);
    *out = q;
    return 1;
}

void infer_q8file_close(infer_q8file *f)
{
    if (!f)
        return;
    H5Gclose(f->q8);
    H5Fclose(f->file);
    free(f);
}

/* Reads /q8/name, rows x cols of mtype, into dst (NULL: only its shape is
 * checked; h5_read_checked). */
static int read_dataset(const infer_q8file *q, const char *name, hid_t mtype, void *dst, int rows,
                        int cols, char *err, size_t errlen)
{
    char why[300];
    if (h5_read_checked(q->q8, "/q8", name, mtype, dst, rows, cols, why, sizeof why) == 0)
        return 0;
    snprintf(err, errlen, "%s: %s", q->path, why);
    return -1;
}

/* Reads (or with wq, ws NULL checks the shapes of) matrix name [out, in]. */
static int read_matrix(const infer_q8file *q, const char *name, int8_t *wq, float *ws, int out,
                       int in, char *err, size_t errlen)
{
    char sname[128];
    snprintf(sname, sizeof sname, "%s_scale", name);
    return read_dataset(q, name, H5T_NATIVE_INT8, wq, out, in, err, errlen) != 0 ||
                   read_dataset(q, sname, H5T_NATIVE_FLOAT, ws, out, in / Q8_GS, err, errlen) != 0
               ? -1 : 0;
}

int infer_q8file_check(const infer_q8file *q, const char *name, int out, int in, char *err,
                       size_t errlen)
{
    return read_matrix(q, name, NULL, NULL, out, in, err, errlen);
}

int infer_q8file_matrix(const infer_q8file *q, const char *name, const infer_linear *l,
                        char *err, size_t errlen)
{
    char sname[128];
    snprintf(sname, sizeof sname, "%s_scale", name);
    size_t n = (size_t)l->out * l->in, ng = n / Q8_GS;
    if (read_matrix(q, name, l->wq, l->ws, l->out, l->in, err, errlen) != 0)
        return -1;
    /* what q8_quantize can produce: the kernels rely on it (q8.h) */
    for (size_t i = 0; i < n; i++)
        if (l->wq[i] == -128) {
            snprintf(err, errlen, "%s: /q8/%s holds -128, which int8 quantization never writes",
                     q->path, name);
            return -1;
        }
    for (size_t i = 0; i < ng; i++)
        if (!(l->ws[i] >= 0 && l->ws[i] <= Q8_SCALE_MAX)) {
            snprintf(err, errlen, "%s: /q8/%s has a negative, non-finite or too large scale "
                     "(int8 scales are fp16 values)", q->path, sname);
            return -1;
        }
    /* A file written before weight scales were fp16 values (q8.h): such a
     * group moves to the fp16 scale just above its own and its values are
     * rounded again, |q s / h| <= |q| <= 127 as s <= h (one more rounding,
     * half a step at most), so the decode layouts take it. */
    for (size_t g = 0; g < ng; g++) {
        const float s = l->ws[g], h = q8_half_ceil(s);
        if (h == s)
            continue;
        for (size_t i = g * Q8_GS; i < (g + 1) * Q8_GS; i++)
            l->wq[i] = (int8_t)lrintf((float)l->wq[i] * s / h);
        l->ws[g] = h;
    }
    return 0;
}
