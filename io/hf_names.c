#include "io/hf_names.h"

#include <stdio.h>
#include <stdlib.h>

int hf_gpt2_dims_check(const gpt2_dims *d, char *err, size_t errlen)
{
    /* max_key: the key the upper bound comes from, named with it */
    const struct { const char *key; int v, max; const char *max_key; } dims[] = {
        {"vocab_size", d->vocab_size, 1 << 24, ""}, {"n_positions", d->n_positions, 1 << 20, ""},
        {"n_embd", d->n_embd, 1 << 16, ""},         {"n_layer", d->n_layer, 1 << 12, ""},
        {"n_head", d->n_head, d->n_embd, "n_embd "},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i].v < 1 || dims[i].v > dims[i].max) {
            snprintf(err, errlen, "%s %d is outside 1..%s%d", dims[i].key, dims[i].v,
                     dims[i].max_key, dims[i].max);
            return -1;
        }
    if (d->n_embd % d->n_head != 0) {
        snprintf(err, errlen, "n_embd %d is not divisible by n_head %d", d->n_embd, d->n_head);
        return -1;
    }
    return 0;
}

int hf_gpt2_count(int n_layer)
{
    return 2 + HF_BLOCK_TENSORS * n_layer + 2;
}

static hf_tensor *put(hf_tensor *t, const char *name, int rows, int cols, bool matrix)
{
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rows = rows;
    t->cols = cols;
    t->matrix_weight = matrix;
    return t + 1;
}

void hf_gpt2_tensors(int vocab_size, int n_positions, int n_embd, int n_layer, hf_tensor *out)
{
    static const struct { const char *suffix; int rows, cols; } blk[HF_BLOCK_TENSORS] = {
        [HF_LN1_W] = {"ln_1.weight", 1, 0},           [HF_LN1_B] = {"ln_1.bias", 1, 0},
        [HF_QKV_W] = {"attn.c_attn.weight", 1, 3},    [HF_QKV_B] = {"attn.c_attn.bias", 3, 0},
        [HF_ATTPROJ_W] = {"attn.c_proj.weight", 1, 1}, [HF_ATTPROJ_B] = {"attn.c_proj.bias", 1, 0},
        [HF_LN2_W] = {"ln_2.weight", 1, 0},           [HF_LN2_B] = {"ln_2.bias", 1, 0},
        [HF_FC_W] = {"mlp.c_fc.weight", 1, 4},        [HF_FC_B] = {"mlp.c_fc.bias", 4, 0},
        [HF_FCPROJ_W] = {"mlp.c_proj.weight", 4, 1},  [HF_FCPROJ_B] = {"mlp.c_proj.bias", 1, 0},
    };
    int C = n_embd;
    char name[HF_NAME_MAX];
    hf_tensor *t = put(out, "transformer.wte.weight", vocab_size, C, true);
    t = put(t, "transformer.wpe.weight", n_positions, C, true);
    for (int l = 0; l < n_layer; l++)
        for (int i = 0; i < HF_BLOCK_TENSORS; i++) {
            snprintf(name, sizeof name, "transformer.h.%d.%s", l, blk[i].suffix);
            t = put(t, name, blk[i].rows * C, blk[i].cols * C, blk[i].cols != 0);
        }
    t = put(t, "transformer.ln_f.weight", C, 0, false);
    put(t, "transformer.ln_f.bias", C, 0, false);
}

hf_tensor *hf_gpt2_tensor_list(const gpt2_dims *d, int *n)
{
    *n = hf_gpt2_count(d->n_layer);
    hf_tensor *t = malloc((size_t)*n * sizeof *t);
    if (t)
        hf_gpt2_tensors(d->vocab_size, d->n_positions, d->n_embd, d->n_layer, t);
    return t;
}

void hf_gpt2_llama_name(int i, int n_layer, char *out, size_t cap)
{
    static const char *const block[HF_BLOCK_TENSORS] = {
        [HF_LN1_W] = "attn_norm.weight",      [HF_LN1_B] = "attn_norm.bias",
        [HF_QKV_W] = "attn_qkv.weight",       [HF_QKV_B] = "attn_qkv.bias",
        [HF_ATTPROJ_W] = "attn_output.weight", [HF_ATTPROJ_B] = "attn_output.bias",
        [HF_LN2_W] = "ffn_norm.weight",       [HF_LN2_B] = "ffn_norm.bias",
        [HF_FC_W] = "ffn_up.weight",          [HF_FC_B] = "ffn_up.bias",
        [HF_FCPROJ_W] = "ffn_down.weight",    [HF_FCPROJ_B] = "ffn_down.bias",
    };
    int n = hf_gpt2_count(n_layer);
    if (i == 0)
        snprintf(out, cap, "token_embd.weight");
    else if (i == 1)
        snprintf(out, cap, "position_embd.weight");
    else if (i >= n - 2)
        snprintf(out, cap, "output_norm.%s", i == n - 2 ? "weight" : "bias");
    else
        snprintf(out, cap, "blk.%d.%s", (i - 2) / HF_BLOCK_TENSORS, block[(i - 2) % HF_BLOCK_TENSORS]);
}

void hf_transpose(float *dst, const float *src, int rows, int cols)
{
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
}
