/* weights: the weight tensors of a Hugging Face model folder, whichever files
 * hold them, behind one interface (build/import reads every form through it):
 *
 *   model.safetensors              one safetensors file (io/safetensors.h)
 *   model.safetensors.index.json   a model sharded over several safetensors
 *                                  files: {"metadata": {...}, "weight_map":
 *                                  {tensor name: shard file name}}
 *   pytorch_model.bin              a state_dict torch.save wrote (io/torchzip.h)
 *   pytorch_model.bin.index.json   the same index, of shards torch.save wrote
 *                                  (save_pretrained(safe_serialization=False)
 *                                  past max_shard_size)
 *
 * The first of these the folder holds is read.  An index is read strictly:
 * each shard it names is a file of the folder itself (no '/', no ".."), a
 * valid file of its kind, and the weight_map and the shards' tensors are the
 * same set, each tensor in the shard the map names and in no other.
 *
 * A tensor is described by an st_tensor (name, dtype, shape) and read alone,
 * widened to fp32 (the dtypes st_read_f32 reads), so a model larger than
 * memory streams.  Every function that can fail returns 0, or -1 with a
 * one-line reason in err.
 */
#ifndef IO_WEIGHTS_H
#define IO_WEIGHTS_H

#include <stddef.h>

#include "io/safetensors.h"

#define WS_MAX_SHARDS 512   /* each stays open while the model is read */

/* A parsed index (either kind): its weight_map sorted by tensor
 * name, each entry naming its shard by index into files (first-seen order). */
typedef struct {
    char *tensor;
    int file;
} ws_entry;

typedef struct {
    char **files;
    int nfiles;
    ws_entry *map;
    int n;
} ws_index;

/* Parses an index (json[0..len), not NUL-terminated): a JSON object whose
 * weight_map names at least one tensor, each once, in a shard named by a
 * plain file name.  Free with ws_index_free. */
int ws_index_parse(const char *json, size_t len, ws_index *out, char *err, size_t errlen);
void ws_index_free(ws_index *ix);

typedef struct wsrc wsrc;

/* Opens the weights of folder dir; fails naming what the folder lacks. */
int wsrc_open(wsrc **out, const char *dir, char *err, size_t errlen);
void wsrc_close(wsrc *w);
/* The file name messages about the tensors start with ("model.safetensors"). */
const char *wsrc_label(const wsrc *w);
/* The tensors, sorted by name: i in [0, wsrc_count). */
int wsrc_count(const wsrc *w);
const st_tensor *wsrc_tensor(const wsrc *w, int i);
/* The tensor of that name, or NULL. */
const st_tensor *wsrc_find(const wsrc *w, const char *name);
/* Reads t (one of w's) into dst (st_numel(t) floats). */
int wsrc_read_f32(const wsrc *w, const st_tensor *t, float *dst, char *err, size_t errlen);

#endif
