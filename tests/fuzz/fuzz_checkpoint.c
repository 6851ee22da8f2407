/* fuzz_checkpoint: the attribute and tokenizer readers of HDF5 checkpoints
 * (io/h5attr.c, io/checkpoint.c), as `--resume` and build/infer use them.
 *
 * The bytes are not an HDF5 file: fuzzing HDF5's own file parser is not this
 * project's to fix.  They are edits to a valid checkpoint that ckpt_write made
 * of a tiny model: each edit rewrites one attribute of one object with a type,
 * dataspace and value of the input's choice (integers of every width, floats,
 * strings fixed, NUL- or space-padded or variable-length, arrays, empty
 * dataspaces), deletes it, or replaces /tokenizer/merges.  The edited file
 * (a file on /dev/shm, HDF5 opens by path) is then opened both ways: every
 * reader must load it or refuse it with a reason. */
#include <hdf5.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/fsutil.h"
#include "tests/fuzz/fuzz.h"
#include "trainer/ckpt_view.h"

static run_config cfg;
static gpt2 model;
static adamw_state opt;
static ckpt_view view;   /* model and opt as io/checkpoint.h's data */
static uint8_t *image;   /* the valid checkpoint */
static size_t image_len;
static char ckpt_path[64];   /* the edited file */

static const char *const objects[] = {"/meta", "/config", "/train", "/optimizer", "/tokenizer",
                                      "/model/transformer.wte.weight"};
static const char *const names[] = {"format_version", "vocab_size", "n_positions", "n_embd",
                                    "n_layer", "n_head", "step", "tokens_seen", "data_cursor",
                                    "seed", "loss_scale", "type", "checksum", "json"};
enum { NOBJ = sizeof objects / sizeof *objects, NNAME = sizeof names / sizeof *names };

static void remove_file(void)
{
    unlink(ckpt_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[512];
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    config_defaults(&cfg);
    cfg.vocab_size = 260, cfg.n_positions = 8, cfg.n_embd = 8, cfg.n_layer = 1, cfg.n_head = 2;
    FUZZ_CHECK(config_finalize(&cfg, err, sizeof err) == 0);
    gpt2_dims d = {260, 8, 8, 1, 2};
    gpt2_options o = {0};
    FUZZ_CHECK(gpt2_create(&model, &d, 1, 8, &o, err, sizeof err) == 0);
    gpt2_init_params(&model, 1);
    FUZZ_CHECK(optimizer_create(&opt, model.num_params, err, sizeof err) == 0);
    const uint32_t merges[8] = {'a', 'b', 'c', 'd', 256, 257, 258, 'e'};
    tokenizer *tok = tokenizer_new_bpe(merges, 4, TOKENIZER_SPLIT_GPT2, err, sizeof err);
    FUZZ_CHECK(tok);
    FUZZ_CHECK(ckpt_view_init(&view, &cfg, &model, &opt, err, sizeof err) == 0);
    ckpt_state s = view.s;
    s.tok = tok;
    s.train = (ckpt_train_info){.step = 3, .tokens_seen = 96, .data_cursor = 12, .seed = 1,
                                .loss_scale = 1};
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(ckpt_path, sizeof ckpt_path, "%s/fuzz_checkpoint.%d.h5", dir, (int)getpid());
    FUZZ_CHECK(ckpt_write(ckpt_path, &s, err, sizeof err) == 0);
    FUZZ_CHECK(fs_read_file(ckpt_path, &image, &image_len, err, sizeof err) == 0);
    atexit(remove_file);
    tokenizer_free(tok);
    return 0;
}

/* Writes attribute name on obj as kind (see below) from the payload p[0..n). */
static void edit_attr(hid_t obj, const char *name, int kind, const uint8_t *p, size_t n)
{
    const hid_t scalar_types[] = {H5T_STD_I8LE, H5T_STD_I32LE, H5T_STD_I64LE,
                                  H5T_STD_U64LE, H5T_IEEE_F32LE, H5T_IEEE_F64LE};
    if (H5Aexists(obj, name) > 0)
        H5Adelete(obj, name);
    if (kind == 0)
        return;   /* deleted */
    uint8_t value[64] = {0};
    memcpy(value, p, n < sizeof value ? n : sizeof value);
    char text[64];
    memcpy(text, value, sizeof text);
    text[n < sizeof text - 1 ? n : sizeof text - 1] = '\0';
    hsize_t count = n / 8 + 2;
    hid_t type, space = kind == 11 ? H5Screate_simple(1, &count, NULL)
                        : kind == 12 ? H5Screate(H5S_NULL)
                                     : H5Screate(H5S_SCALAR);
    const void *src = value;
    const char *vlen = text;
    if (kind <= 6) {
        type = H5Tcopy(scalar_types[kind - 1]);
    } else if (kind <= 10) {
        type = H5Tcopy(H5T_C_S1);
        H5Tset_size(type, kind == 10 ? H5T_VARIABLE : n ? n : 1);
        H5Tset_strpad(type, kind == 8 ? H5T_STR_NULLPAD : kind == 9 ? H5T_STR_SPACEPAD
                                                                     : H5T_STR_NULLTERM);
        if (kind == 10)
            src = &vlen;
    } else {
        type = H5Tcopy(H5T_STD_I64LE);
    }
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        if (kind != 12)
            H5Awrite(a, type, src);
        H5Aclose(a);
    }
    H5Tclose(type);
    H5Sclose(space);
}

/* Replaces /tokenizer/merges with rows x cols int32 values from the payload. */
static void edit_merges(hid_t f, const uint8_t *p, size_t n)
{
    hid_t g = H5Gopen2(f, "/tokenizer", H5P_DEFAULT);
    if (g < 0)
        return;
    if (H5Lexists(g, "merges", H5P_DEFAULT) > 0)
        H5Ldelete(g, "merges", H5P_DEFAULT);
    hsize_t dims[2] = {n / 8, n > 0 && (p[0] & 1) ? 3 : 2};
    uint32_t v[96] = {0};
    memcpy(v, p, n < sizeof v ? n : sizeof v);
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(g, "merges", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (d >= 0) {
        H5Dwrite(d, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
        H5Dclose(d);
    }
    H5Sclose(sp);
    H5Gclose(g);
}

/* Applies the edits of the input to a copy of the valid checkpoint at ckpt_path. */
static void edit(const uint8_t *data, size_t size)
{
    char err[512];
    FUZZ_CHECK(fs_write_file_atomic(ckpt_path, image, image_len, err, sizeof err) == 0);
    hid_t f = H5Fopen(ckpt_path, H5F_ACC_RDWR, H5P_DEFAULT);
    FUZZ_CHECK(f >= 0);
    /* an edit: object, attribute name, kind, payload length, payload */
    for (int edits = 0; size >= 4 && edits < 16; edits++) {
        int obj = data[0] % NOBJ, name = data[1] % NNAME, kind = data[2] % 14;
        size_t n = data[3] % 97;
        data += 4, size -= 4;
        n = n < size ? n : size;
        if (kind == 13) {
            edit_merges(f, data, n);
        } else {
            hid_t o = H5Oopen(f, objects[obj], H5P_DEFAULT);
            if (o >= 0) {
                edit_attr(o, names[name], kind, data, n);
                H5Oclose(o);
            }
        }
        data += n, size -= n;
    }
    FUZZ_CHECK(H5Fclose(f) >= 0);
}

/* build/infer's reading: dimensions, tokenizer, a tensor. */
static void read_model(const char *path)
{
    char err[512] = "";
    ckpt_model_file *m;
    gpt2_dims d;
    if (ckpt_model_open(path, &m, &d, err, sizeof err) != 0) {
        FUZZ_CHECK(err[0]);
        return;
    }
    FUZZ_CHECK(d.vocab_size >= 1 && d.n_positions >= 1 && d.n_embd >= 1 && d.n_layer >= 1 &&
               d.n_head >= 1);
    tokenizer *t = ckpt_model_tokenizer(m, err, sizeof err);
    FUZZ_CHECK(t || err[0]);
    tokenizer_free(t);
    if (d.vocab_size == 260 && d.n_embd == 8) {
        float *wte = malloc(260 * 8 * sizeof *wte);
        FUZZ_CHECK(wte);
        ckpt_model_tensor(m, "transformer.wte.weight", 260, 8, wte, err, sizeof err);
        free(wte);
    }
    ckpt_model_close(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512] = "";
    edit(data, size);
    read_model(ckpt_path);
    ckpt_state s = view.s;   /* --resume */
    if (ckpt_read(ckpt_path, &s, err, sizeof err) != 0)
        FUZZ_CHECK(err[0]);
    else
        FUZZ_CHECK(s.train.step >= 0 && s.opt.step <= s.train.step);
    return 0;
}
