#include "io/weights.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fsutil.h"
#include "io/torchzip.h"

#define INDEX_NAME "model.safetensors.index.json"
#define BIN_INDEX_NAME "pytorch_model.bin.index.json"

/* One tensor of the source, the file holding it and its index there. */
typedef struct {
    const st_tensor *t;
    int file, index;
} ws_item;

/* The files are safetensors files (files) or torch.save archives (torch). */
struct wsrc {
    const char *label;
    st_file *files;
    tz_file **torch;
    char **names;   /* file k's name, for messages */
    int nfiles;
    ws_item *items;   /* sorted by name */
    int n;
};

static int entry_by_name(const void *a, const void *b)
{
    return strcmp(((const ws_entry *)a)->tensor, ((const ws_entry *)b)->tensor);
}

static int item_by_name(const void *a, const void *b)
{
    return strcmp(((const ws_item *)a)->t->name, ((const ws_item *)b)->t->name);
}

void ws_index_free(ws_index *ix)
{
    for (int i = 0; i < ix->nfiles; i++)
        free(ix->files[i]);
    for (int i = 0; i < ix->n; i++)
        free(ix->map[i].tensor);
    free(ix->files);
    free(ix->map);
    memset(ix, 0, sizeof *ix);
}

/* A shard must be a file of the folder itself: a path could read any file. */
static int plain_file_name(const char *s)
{
    return s[0] && !strchr(s, '/') && !strstr(s, "..");
}

/* files[] index of shard name s, added when new. */
static int shard_of(ws_index *ix, const char *s, char *err, size_t errlen)
{
    for (int k = 0; k < ix->nfiles; k++)
        if (strcmp(ix->files[k], s) == 0)
            return k;
    if (ix->nfiles == WS_MAX_SHARDS)
        return fs_fail(err, errlen, "weight_map names more than %d shard files", WS_MAX_SHARDS);
    if (!(ix->files[ix->nfiles] = strdup(s)))
        return fs_fail(err, errlen, "out of memory");
    return ix->nfiles++;
}

static int parse_map(const cJSON *wm, ws_index *ix, char *err, size_t errlen)
{
    int n = cJSON_GetArraySize(wm);
    ix->map = calloc((size_t)(n ? n : 1), sizeof *ix->map);
    ix->files = calloc(WS_MAX_SHARDS, sizeof *ix->files);
    if (!ix->map || !ix->files)
        return fs_fail(err, errlen, "out of memory");
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e))
            return fs_fail(err, errlen, "weight_map: %s is not mapped to a file name", e->string);
        if (!plain_file_name(e->valuestring))
            return fs_fail(err, errlen, "weight_map: %s is in \"%s\", not a file of the folder",
                           e->string, e->valuestring);
        int k = shard_of(ix, e->valuestring, err, errlen);
        if (k < 0)
            return -1;
        if (!(ix->map[ix->n].tensor = strdup(e->string)))
            return fs_fail(err, errlen, "out of memory");
        ix->map[ix->n++].file = k;
    }
    if (ix->n == 0)
        return fs_fail(err, errlen, "weight_map names no tensor");
    qsort(ix->map, (size_t)ix->n, sizeof *ix->map, entry_by_name);
    for (int i = 1; i < ix->n; i++)
        if (strcmp(ix->map[i].tensor, ix->map[i - 1].tensor) == 0)
            return fs_fail(err, errlen, "weight_map names %s twice", ix->map[i].tensor);
    return 0;
}

int ws_index_parse(const char *json, size_t len, ws_index *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(json, len);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    int rc;
    if (!cJSON_IsObject(root))
        rc = fs_fail(err, errlen, "not a JSON object");
    else if (!cJSON_IsObject(wm))
        rc = fs_fail(err, errlen, "weight_map is missing or not an object");
    else if (meta && !cJSON_IsObject(meta))
        rc = fs_fail(err, errlen, "metadata is not an object");
    else
        rc = parse_map(wm, out, err, errlen);
    cJSON_Delete(root);
    if (rc != 0) {
        ws_index_free(out);
        fs_printable(err);   /* it may quote a tensor or file name */
    }
    return rc;
}

void wsrc_close(wsrc *w)
{
    if (!w)
        return;
    for (int k = 0; k < w->nfiles; k++) {
        if (w->torch)
            tz_close(w->torch[k]);
        else
            st_close(&w->files[k]);
        free(w->names[k]);
    }
    free(w->torch);
    free(w->files);
    free(w->names);
    free(w->items);
    free(w);
}

/* How many tensors file k holds, and its tensor i. */
static int file_tensors(const wsrc *w, int k)
{
    return w->torch ? tz_tensors(w->torch[k])->n : w->files[k].h.n;
}

static const st_tensor *file_tensor(const wsrc *w, int k, int i)
{
    return w->torch ? &tz_tensors(w->torch[k])->tensors[i].t : &w->files[k].h.tensors[i];
}

/* Opens each file of names[0..n) in dir (taking over the names), torch.save
 * archives if torch, else safetensors files, then lists their tensors sorted
 * by name; a tensor in two files is refused. */
static int open_files(wsrc *w, const char *dir, char **names, int n, int torch, char *err,
                      size_t errlen)
{
    if (torch)
        w->torch = calloc((size_t)n, sizeof *w->torch);
    else
        w->files = calloc((size_t)n, sizeof *w->files);
    w->names = calloc((size_t)n, sizeof *w->names);
    if ((!w->torch && !w->files) || !w->names)
        return fs_fail(err, errlen, "out of memory");
    size_t total = 0;
    for (int k = 0; k < n; k++) {
        char path[1100];
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        w->names[k] = names[k];
        names[k] = NULL;
        w->nfiles++;
        if ((torch ? tz_open(&w->torch[k], path, err, errlen)
                   : st_open(&w->files[k], path, err, errlen)) != 0)
            return -1;
        total += (size_t)file_tensors(w, k);
    }
    w->items = malloc((total ? total : 1) * sizeof *w->items);
    if (!w->items)
        return fs_fail(err, errlen, "out of memory");
    for (int k = 0; k < n; k++)
        for (int i = 0; i < file_tensors(w, k); i++)
            w->items[w->n++] = (ws_item){file_tensor(w, k, i), k, i};
    qsort(w->items, (size_t)w->n, sizeof *w->items, item_by_name);
    for (int i = 1; i < w->n; i++)
        if (strcmp(w->items[i].t->name, w->items[i - 1].t->name) == 0)
            return fs_fail(err, errlen, "%s is in both %s and %s", w->items[i].t->name,
                           w->names[w->items[i - 1].file], w->names[w->items[i].file]);
    return 0;
}

/* The shards' tensors and the weight_map, both sorted by name, are the same
 * list, each tensor in the shard the map names. */
static int check_against_index(const wsrc *w, const ws_index *ix, char *err, size_t errlen)
{
    int i = 0, j = 0;
    while (i < ix->n || j < w->n) {
        const ws_entry *e = i < ix->n ? &ix->map[i] : NULL;
        const ws_item *t = j < w->n ? &w->items[j] : NULL;
        int c = !e ? 1 : !t ? -1 : strcmp(e->tensor, t->t->name);
        if (c < 0)
            return fs_fail(err, errlen, "weight_map puts %s in %s, which does not hold it",
                           e->tensor, w->names[e->file]);
        if (c > 0)
            return fs_fail(err, errlen, "%s holds %s, which weight_map does not list",
                           w->names[t->file], t->t->name);
        if (e->file != t->file)
            return fs_fail(err, errlen, "weight_map puts %s in %s, but %s holds it", e->tensor,
                           w->names[e->file], w->names[t->file]);
        i++;
        j++;
    }
    return 0;
}

/* The index w->label of safetensors shards, or of torch.save shards if torch. */
static int open_sharded(wsrc *w, const char *dir, int torch, char *err, size_t errlen)
{
    char path[1100], why[400];
    uint8_t *text;
    size_t len;
    snprintf(path, sizeof path, "%s/%s", dir, w->label);
    if (fs_read_file_max(path, ST_MAX_HEADER, &text, &len, err, errlen) != 0)
        return -1;
    ws_index ix;
    int rc = ws_index_parse((const char *)text, len, &ix, why, sizeof why);
    free(text);
    if (rc != 0)
        return fs_fail(err, errlen, "%.900s: %s", path, why);
    rc = open_files(w, dir, ix.files, ix.nfiles, torch, err, errlen);
    if (rc == 0)
        rc = check_against_index(w, &ix, why, sizeof why) == 0
                 ? 0 : fs_fail(err, errlen, "%s: %s", w->label, why);
    ws_index_free(&ix);
    return rc;
}

/* The one file w->label: a torch.save archive if torch, else safetensors. */
static int open_single(wsrc *w, const char *dir, int torch, char *err, size_t errlen)
{
    char **names = malloc(sizeof *names);
    if (!names || !(names[0] = strdup(w->label))) {
        free(names);
        return fs_fail(err, errlen, "out of memory");
    }
    int rc = open_files(w, dir, names, 1, torch, err, errlen);
    free(names[0]);   /* NULL once open_files took it */
    free(names);
    return rc;
}

int wsrc_open(wsrc **out, const char *dir, char *err, size_t errlen)
{
    wsrc *w = calloc(1, sizeof *w);
    if (!w)
        return fs_fail(err, errlen, "out of memory");
    int rc;
    if (fs_dir_has(dir, "model.safetensors", NULL, 0)) {
        w->label = "model.safetensors";
        rc = open_single(w, dir, 0, err, errlen);
    } else if (fs_dir_has(dir, INDEX_NAME, NULL, 0)) {
        w->label = INDEX_NAME;
        rc = open_sharded(w, dir, 0, err, errlen);
    } else if (fs_dir_has(dir, "pytorch_model.bin", NULL, 0)) {
        w->label = "pytorch_model.bin";
        rc = open_single(w, dir, 1, err, errlen);
    } else if (fs_dir_has(dir, BIN_INDEX_NAME, NULL, 0)) {
        w->label = BIN_INDEX_NAME;
        rc = open_sharded(w, dir, 1, err, errlen);
    } else {
        rc = fs_fail(err, errlen, "%.900s holds no model.safetensors, %s, pytorch_model.bin or "
                     "%s", dir, INDEX_NAME, BIN_INDEX_NAME);
    }
    if (rc != 0) {
        wsrc_close(w);
        return -1;
    }
    *out = w;
    return 0;
}

const char *wsrc_label(const wsrc *w)
{
    return w->label;
}

int wsrc_count(const wsrc *w)
{
    return w->n;
}

const st_tensor *wsrc_tensor(const wsrc *w, int i)
{
    return w->items[i].t;
}

static const ws_item *item(const wsrc *w, const char *name)
{
    st_tensor key = {.name = (char *)name};
    ws_item k = {&key, 0, 0};
    return bsearch(&k, w->items, (size_t)w->n, sizeof *w->items, item_by_name);
}

const st_tensor *wsrc_find(const wsrc *w, const char *name)
{
    const ws_item *it = item(w, name);
    return it ? it->t : NULL;
}

int wsrc_read_f32(const wsrc *w, const st_tensor *t, float *dst, char *err, size_t errlen)
{
    const ws_item *it = item(w, t->name);
    if (!it || it->t != t)
        return fs_fail(err, errlen, "tensor %s is not one of %s's", t->name, w->label);
    if (w->torch)
        return tz_read_f32(w->torch[it->file], it->index, dst, err, errlen);
    return st_read_f32(&w->files[it->file], t, dst, err, errlen);
}
