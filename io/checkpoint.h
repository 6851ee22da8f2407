/* checkpoint: the HDF5 checkpoint file of docs/design.md ("Checkpoint file").
 *
 *   /model/<HF name>            float32 parameters, Hugging Face GPT-2 names and shapes
 *                               (the LM head is tied to wte and not stored)
 *   /optimizer                  attributes step, lr, beta1, beta2, eps, weight_decay, grad_clip
 *   /optimizer/m/<name>, /v/    AdamW moments, same shapes
 *   /config                     one attribute per config key, and "json": the whole config
 *   /train                      attributes step, tokens_seen, data_cursor (next global sample
 *                               index), seed, loss_scale
 *   /tokenizer                  attributes type ("byte"|"bpe"|"gpt2"), vocab_size; merges
 *                               and gpt2's vocabulary as io/tokenizer_h5.h lays them out
 *   /meta                       attributes format_version, program, version, time (unix s)
 *
 * Every tensor dataset has a uint64 attribute "checksum" (ckpt_checksum of its
 * float32 values) and the file uses the HDF5 1.10 format (all metadata
 * checksummed), so a bit flip that matters is refused on reading; h5py and
 * h5dump read the file as usual (HDF5 >= 1.10).  A file is written to NAME.tmp, fsynced and renamed,
 * so a final name never holds a partial file.
 * Every function returns 0 on success, -1 with a one-line reason in err.
 */
#ifndef IO_CHECKPOINT_H
#define IO_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "io/tokenizer.h"
#include "trainer/config.h"
#include "trainer/model.h"
#include "trainer/optimizer.h"

#define CKPT_FORMAT_VERSION 1
#ifndef GPT_CPU_VERSION
#define GPT_CPU_VERSION "0.1.0"
#endif

typedef struct {
    int step;               /* optimizer steps done: a resumed run starts at this step */
    uint64_t tokens_seen;
    uint64_t data_cursor;   /* next global training sample index */
    long long seed;
    double loss_scale;      /* fp16 loss scale; 0 when the run was not fp16 */
} ckpt_train_info;

/* Adam moments that are not whole in this process (ZeRO shards them over
 * ranks) pass through one buffer the size of the largest tensor: ckpt_write
 * calls get to fill it before it writes each tensor, ckpt_read calls put with
 * each tensor once it is read and its checksum verified.  Tensors come in the
 * model's table order, m (moment 0) before v (moment 1); t is an entry of the
 * model's table.  A non-zero return fails the write or read. */
typedef struct {
    int (*get)(void *ctx, int moment, const param_tensor *t, float *buf);
    int (*put)(void *ctx, int moment, const param_tensor *t, const float *buf);
    void *ctx;
} ckpt_moments;

/* What a checkpoint holds, as views into the trainer's state (nothing owned).
 * Writing reads cfg, model->params, opt->m/v/step, tok (NULL: stored as "byte")
 * and train; reading checks the file against cfg and model's tensor table and
 * fills model->params, opt->m, opt->v, opt->step and train.  With moments set,
 * opt->m and opt->v are not used: the moments go through it. */
typedef struct {
    const run_config *cfg;
    gpt2 *model;
    adamw_state *opt;
    const ckpt_moments *moments;   /* NULL: opt->m and opt->v hold all of them */
    const tokenizer *tok;
    ckpt_train_info train;
} ckpt_state;

/* Writes path atomically (path.tmp, fsync, rename, fsync of the directory). */
int ckpt_write(const char *path, const ckpt_state *s, char *err, size_t errlen);

/* A checkpoint of weights alone (an imported model: no /optimizer, no
 * /train, so it can start a run with --init-from but not resume one):
 * /meta, /config (attributes from config_json, an object that must hold the
 * dimension keys), /tokenizer (tok NULL: "byte") and /model with n tensors,
 * each [rows] (cols 0) or [rows, cols], filled one at a time into a buffer of
 * the largest by fill (0, or -1 with a reason).  Atomic as ckpt_write. */
typedef struct {
    const char *name;
    int rows, cols;
} ckpt_tensor_desc;
typedef int (*ckpt_fill_fn)(void *ctx, int i, float *buf, char *err, size_t errlen);
int ckpt_write_model(const char *path, const char *config_json, const tokenizer *tok,
                     const ckpt_tensor_desc *t, int n, ckpt_fill_fn fill, void *ctx, char *err,
                     size_t errlen);

/* Opens and validates path (format version, model dimensions against s->cfg,
 * every dataset and its shape), then loads it into s.  On failure s->model and
 * s->opt may be partly overwritten. */
int ckpt_read(const char *path, ckpt_state *s, char *err, size_t errlen);

/* DIR/ckpt_%06d.h5 for train.step: writes it, points DIR/latest at it, then
 * deletes all but the newest keep checkpoints (and stale *.tmp files).
 * The path written goes to path (pathlen bytes). */
int ckpt_save(const char *dir, const ckpt_state *s, int keep, char *path, size_t pathlen,
              char *err, size_t errlen);

/* The step of the newest DIR/ckpt_*.h5, or -1 when there is none (or DIR
 * cannot be read). */
long ckpt_newest_step(const char *dir);

/* --resume auto: loads the checkpoint DIR/latest names, or else the newest
 * DIR/ckpt_*.h5 that loads.  Returns 1 when one was loaded (its path in path;
 * warn non-empty when it had to skip damaged or unusable files), 0 when DIR
 * holds no checkpoint, -1 when there are checkpoints but none loads (err says
 * why the newest failed). */
int ckpt_load_auto(const char *dir, ckpt_state *s, char *path, size_t pathlen, char *warn,
                   size_t warnlen, char *err, size_t errlen);

/* Reading the model alone (build/infer): a checkpoint opened read-only of which
 * only /meta, /config, /tokenizer and /model are read, nothing compared with a
 * run config.  Tensors are checked and read as ckpt_read does. */
typedef struct ckpt_model_file ckpt_model_file;

/* Opens path, checks /meta format_version and puts the /config dimensions (each
 * 1..2^30) in dims.  Close *out with ckpt_model_close. */
int ckpt_model_open(const char *path, ckpt_model_file **out, gpt2_dims *dims, char *err,
                    size_t errlen);
/* A new tokenizer as /tokenizer describes it (free with tokenizer_free), or NULL
 * with the reason in err. */
tokenizer *ckpt_model_tokenizer(ckpt_model_file *f, char *err, size_t errlen);
/* Fills dst with /model/<name> (Hugging Face name), a float tensor of shape
 * [rows] (cols 0) or [rows, cols] whose checksum attribute must match. */
int ckpt_model_tensor(ckpt_model_file *f, const char *name, int rows, int cols, float *dst,
                      char *err, size_t errlen);
void ckpt_model_close(ckpt_model_file *f);   /* NULL: nothing */

/* The checksum stored with each tensor: four lanes h[l] = 1..4; for the i-th
 * 8 bytes w (little-endian) of the data, l = i % 4, h[l] = rotl64(h[l] ^ w, 31) * K
 * with K = 0x9E3779B97F4A7C15; an odd last float goes into r = n ^ (bits << 32)
 * (r = n otherwise); then for l = 0..3, r = rotl64(r ^ h[l], 27) * K. */
uint64_t ckpt_checksum(const float *x, size_t n);

/* Step of a file name "ckpt_<digits>.h5" (no directory), or -1 for any other name. */
long ckpt_name_step(const char *name);

#endif
