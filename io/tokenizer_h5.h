/* tokenizer_h5: a tokenizer as the /tokenizer group of a checkpoint (docs/design.md), so a
 * checkpoint or int8 model file encodes and decodes without the data directory.
 *
 *   attributes  type ("byte"|"bpe"|"gpt2"), vocab_size; eos_id for gpt2; split for bpe
 *               ("gpt2"|"bytes"; absent in files made before it: "bytes")
 *   merges         int32 [n,2]        bpe, gpt2: merge i joins tokens merges[i][0], [i][1]
 *                                     (bpe: into token 256+i)
 *   vocab          uint8 [total]      gpt2: every token's bytes, concatenated in id order
 *   vocab_lengths  int32 [vocab_size] gpt2: their lengths
 *   chat_template  uint8 [n]          any type, optional: the chat template's UTF-8 bytes
 */
#ifndef IO_TOKENIZER_H5_H
#define IO_TOKENIZER_H5_H

#include <hdf5.h>
#include <stddef.h>

#include "io/tokenizer.h"

/* Fills the open group g; 0, or -1 when HDF5 fails to write. */
int tokenizer_h5_write(hid_t g, const tokenizer *t);
/* A new tokenizer from the open group g, or NULL with a reason in err. */
tokenizer *tokenizer_h5_read(hid_t g, char *err, size_t errlen);

#endif
