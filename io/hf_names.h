/* hf_names: GPT-2's parameter tensors under their Hugging Face names
 * (GPT2LMHeadModel's state dict without the tied lm_head), in Hugging Face
 * order, with their shapes in the Conv1D convention (weights [in, out]), and
 * llama.cpp's names for the same tensors, whose weights are [out, in].  The
 * one place these names are spelled: the model's table, checkpoints, import,
 * export and GGUF loading all walk this list. */
#ifndef IO_HF_NAMES_H
#define IO_HF_NAMES_H

#include <stdbool.h>
#include <stddef.h>

#define HF_NAME_MAX 64

/* A GPT-2 model's dimensions, under the config keys of the same names. */
typedef struct {
    int vocab_size, n_positions, n_embd, n_layer, n_head;
} gpt2_dims;

/* The tensors of one block, in the order hf_gpt2_tensors lists them. */
enum {
    HF_LN1_W, HF_LN1_B, HF_QKV_W, HF_QKV_B, HF_ATTPROJ_W, HF_ATTPROJ_B,
    HF_LN2_W, HF_LN2_B, HF_FC_W, HF_FC_B, HF_FCPROJ_W, HF_FCPROJ_B,
    HF_BLOCK_TENSORS
};

typedef struct {
    char name[HF_NAME_MAX];   /* e.g. transformer.h.0.attn.c_attn.weight */
    int rows, cols;           /* cols 0: a vector of rows */
    bool matrix_weight;       /* a 2-D weight (embeddings and products): weight decay applies */
} hf_tensor;

/* Whether d fits the tensor list and the programs that walk it: every
 * dimension positive, n_head dividing n_embd, and each within the trainer's
 * limits (vocab_size <= 2^24, n_positions <= 2^20, n_embd <= 2^16, n_layer
 * <= 4096), so the tensor count and every shape fit an int and every size a
 * size_t.  0, or -1 with a one-line reason naming the dimension in err. */
int hf_gpt2_dims_check(const gpt2_dims *d, char *err, size_t errlen);
/* Number of tensors of a model with n_layer blocks. */
int hf_gpt2_count(int n_layer);
/* Fills out[0 .. hf_gpt2_count(n_layer)) for the dimensions V, T (positions), C, L. */
void hf_gpt2_tensors(int vocab_size, int n_positions, int n_embd, int n_layer, hf_tensor *out);
/* The same list for d in a new array (free it) of *n entries; NULL when out
 * of memory. */
hf_tensor *hf_gpt2_tensor_list(const gpt2_dims *d, int *n);

/* llama.cpp's name (its gpt2 architecture in GGUF files) for tensor i of
 * hf_gpt2_tensors' list: token_embd, position_embd, blk.N.attn_norm ...,
 * output_norm. */
void hf_gpt2_llama_name(int i, int n_layer, char *out, size_t cap);
/* A weight matrix from one layout to the other: src [rows, cols] into dst
 * [cols, rows] (Conv1D's [in, out] into llama.cpp's [out, in] and back). */
void hf_transpose(float *dst, const float *src, int rows, int cols);

#endif
