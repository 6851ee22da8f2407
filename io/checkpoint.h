/* checkpoint: the HDF5 checkpoint file of docs/design.md ("Checkpoint file").
 *
 *   /model/<HF name>            float32 parameters, Hugging Face GPT-2 names and shapes
 *                               (the LM head is tied to wte and not stored)
 *   /optimizer                  attributes step, lr, beta1, beta2, eps, weight_decay, grad_clip
 *   /optimizer/m/<name>, /v/    AdamW moments, same shapes
 *   /config                     one attribute per config key, and "json": the whole config
 *   /train                      attributes step, tokens_seen, data_cursor (next global sample
 *                               index), seed, loss_scale, loss_scale_steps (fp16)
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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/hf_names.h"   /* gpt2_dims: the dimensions /config holds, each 1..2^30 */
#include "io/tokenizer.h"

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
    long long loss_scale_steps;   /* fp16: finite steps in a row towards the scale's next
                                   * doubling (0 in files written before it was kept) */
} ckpt_train_info;

/* /optimizer's attributes: AdamW's step count and hyper-parameters. */
typedef struct {
    int step;
    double lr, beta1, beta2, eps, weight_decay, grad_clip;
} ckpt_optimizer_info;

/* One tensor of /model, stored again under /optimizer/m and /optimizer/v. */
typedef struct {
    const char *name;   /* Hugging Face name */
    int rows, cols;     /* shape [rows] (cols 0) or [rows, cols] */
    size_t offset;      /* where its values start in a group's arena */
} ckpt_tensor;

/* The three groups of tensors, each holding every tensor of the list. */
enum { CKPT_MODEL, CKPT_M, CKPT_V, CKPT_GROUPS };

/* Values that are not whole in this process (ZeRO shards the moments over
 * ranks; an import converts one tensor at a time) pass through one buffer the
 * size of the largest tensor: writing calls get to fill it before it writes
 * tensor i of group g, reading calls put with it once tensor i is read and
 * its checksum verified.  Tensors come in list order, group after group.  A
 * non-zero return fails the write or read (err: a reason, or left empty). */
typedef struct {
    int (*get)(void *ctx, int g, int i, float *buf, char *err, size_t errlen);
    int (*put)(void *ctx, int g, int i, const float *buf, char *err, size_t errlen);
    void *ctx;
} ckpt_stream;

/* What a checkpoint holds, as data (nothing owned).  Writing stores
 * config_json (a JSON object: one /config attribute per key, and "json", the
 * whole text), tok (NULL: stored as "byte"), the tensors of the list from
 * each group's arena (arena[g] NULL: through stream) and, unless
 * weights_only, opt and train.  Reading fills the arenas (or stream.put),
 * opt.step and train; check, when set, sees /config's dimensions before any
 * tensor is read and refuses the file by returning non-zero (why: the
 * reason). */
typedef struct {
    const char *config_json;
    const tokenizer *tok;
    const ckpt_tensor *tensors;
    int num_tensors;
    float *arena[CKPT_GROUPS];
    ckpt_stream stream;
    bool weights_only;   /* /meta, /config, /tokenizer, /model alone: an imported model
                          * starts a run with --init-from but cannot resume one */
    ckpt_optimizer_info opt;
    ckpt_train_info train;
    int (*check)(void *ctx, const gpt2_dims *file, char *why, size_t whylen);
    void *check_ctx;
} ckpt_state;

/* Writes path atomically (path.tmp, fsync, rename, fsync of the directory). */
int ckpt_write(const char *path, const ckpt_state *s, char *err, size_t errlen);

/* Opens and validates path (format version, s->check, every dataset and its
 * shape), then loads it into s.  On failure the arenas may be partly
 * overwritten. */
int ckpt_read(const char *path, ckpt_state *s, char *err, size_t errlen);

/* DIR/ckpt_%06d.h5 for train.step: writes it, points DIR/latest at it, then
 * deletes all but the newest keep checkpoints (and stale *.tmp files).
 * The path written goes to path (pathlen bytes). */
int ckpt_save(const char *dir, const ckpt_state *s, int keep, char *path, size_t pathlen,
              char *err, size_t errlen);

/* Deletes the DIR/ckpt_*.h5.tmp files that saves interrupted by a crash left
 * (a checkpoint's size each), naming them in note ("" when none; notelen 0:
 * not named, note may be NULL).  Only for the process that writes DIR (it
 * holds DIR/lock): no save is under way. */
void ckpt_remove_stale(const char *dir, char *note, size_t notelen);

/* The step of the newest DIR/ckpt_*.h5, or -1 when there is none (or DIR
 * cannot be read). */
long ckpt_newest_step(const char *dir);

/* The model dimensions of the first DIR/ckpt_*.h5 whose model opens, in the
 * order ckpt_load_auto tries them (the model --resume auto will load), its
 * path in path: 1, or 0 when DIR holds none that opens.  Reads no tensor. */
int ckpt_auto_dims(const char *dir, gpt2_dims *d, char *path, size_t pathlen);

/* --resume auto: loads the checkpoint DIR/latest names, or else the newest
 * DIR/ckpt_*.h5 that loads.  Returns 1 when one was loaded (its path in path;
 * warn non-empty when it had to skip damaged or unusable files), 0 when DIR
 * holds no checkpoint, -1 when there are checkpoints but none loads (err says
 * why the newest failed). */
int ckpt_load_auto(const char *dir, ckpt_state *s, char *path, size_t pathlen, char *warn,
                   size_t warnlen, char *err, size_t errlen);

/* Reading the model alone (build/infer, --init-from, build/export): a
 * checkpoint opened read-only of which only /meta, /config, /tokenizer and
 * /model are read.  Tensors are checked and read as ckpt_read does. */
typedef struct ckpt_model_file ckpt_model_file;

/* Opens path, checks /meta format_version and puts the /config dimensions in
 * dims.  Close *out with ckpt_model_close. */
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

/* Step of a file name "ckpt_<digits>.h5" (no directory, a step up to INT_MAX), or -1 for
 * any other name. */
long ckpt_name_step(const char *name);

#endif
