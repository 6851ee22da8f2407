/* gguf_load: loading a GGUF file (build/export's, llama.cpp's gpt2 layout)
 * into the inference engine, as infer_load does a checkpoint. */
#ifndef INFER_GGUF_LOAD_H
#define INFER_GGUF_LOAD_H

#include <stddef.h>

#include "io/tokenizer.h"
#include "infer/infer.h"

/* 0, or -1 with a one-line reason in err; *tok gets a new tokenizer. */
int infer_gguf_load(const char *path, infer_quant q, infer_model *m, tokenizer **tok, char *err,
                    size_t errlen);

#endif
