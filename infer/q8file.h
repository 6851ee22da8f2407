/* q8file: an int8 model saved once (build/infer --save-quantized) and
 * loaded without quantizing again.
 *
 * An HDF5 file laid out as a checkpoint (io/checkpoint.h), so the same reader
 * opens and validates it: /meta (format_version), /config (the model
 * dimensions, and quant "int8", q8_group_size 32), /tokenizer, and /model with
 * the tensors that stay fp32 (wpe, LayerNorm, biases), each with its
 * checksum.  The matrices and the tied LM head are in /q8, as q8_pack_weights
 * left them:
 *   /q8/<name>        int8 [out, in] (transposed: the Conv1D weight's columns
 *                     are its rows; the LM head "lm_head.weight" is wte's
 *                     layout), "checksum" attribute = ckpt_checksum of its
 *                     bytes read as in*out/4 floats
 *   /q8/<name>_scale  float [out, in/32], with its checksum
 * The token embedding is the LM head's rows (a file from before that also has
 * /model/transformer.wte.weight, which is not read).
 * Loading it gives the very weights quantizing the checkpoint at load gives,
 * so the output is bit-identical.  Written to PATH.tmp, fsynced and renamed.
 */
#ifndef INFER_Q8FILE_H
#define INFER_Q8FILE_H

#include <stddef.h>

#include "io/tokenizer.h"
#include "infer/infer.h"

/* m must be int8.  0, or -1 with a one-line reason in err. */
int infer_q8file_save(const char *path, const infer_model *m, const tokenizer *tok, char *err,
                      size_t errlen);

typedef struct infer_q8file infer_q8file;

/* Opens path's /q8 group: 1 with *out set when there is one (close it with
 * infer_q8file_close), 0 when the file has none (a checkpoint), -1 with a
 * reason (path was already opened as a checkpoint, so that is rare). */
int infer_q8file_open(const char *path, infer_q8file **out, char *err, size_t errlen);
/* Checks that matrix name's int8 rows and scales are stored [out, in] and
 * [out, in / Q8_GS], reading only their shapes: before anything is
 * allocated at the size /config gives.  0, or -1 with err naming the tensor. */
int infer_q8file_check(const infer_q8file *q, const char *name, int out, int in, char *err,
                       size_t errlen);
/* Reads matrix name's int8 rows and scales into l->wq, l->ws and checks them
 * (a file from before fp16 weight scales has its groups moved to them). */
int infer_q8file_matrix(const infer_q8file *q, const char *name, const infer_linear *l,
                        char *err, size_t errlen);
void infer_q8file_close(infer_q8file *f);

#endif
