#include "trainer/config.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/fsutil.h"
#include "io/hf_names.h"
#include "io/zsock.h"
#include "trainer/control.h"
#include "trainer/metrics.h"

/* KEY_ENUM: one of a few names, stored as their index (an enum of config.h);
 * KEY_OFFLOAD: optimizer_offload, the same plus file:DIR. */
typedef enum { KEY_INT, KEY_I64, KEY_FLOAT, KEY_STR, KEY_ENUM, KEY_OFFLOAD } key_type;

typedef struct {
    const char *name;
    key_type type;
    size_t offset, size;        /* size: capacity of a string field */
    const char *const *names;   /* KEY_ENUM, KEY_OFFLOAD: the values' names, by value */
    int count;
} config_key;

/* The names of the enum keys' values, indexed by value: the config file's,
 * the dumps' (checkpoints, log) and the error messages' list. */
static const char *const precision_names[] = {
    [PRECISION_AUTO] = "auto", [PRECISION_FP32] = "fp32", [PRECISION_BF16] = "bf16",
    [PRECISION_FP16] = "fp16",
};
static const char *const recompute_names[] = {
    [RECOMPUTE_NONE] = "none", [RECOMPUTE_BLOCK] = "block",
};
static const char *const grad_wire_names[] = {[GRAD_WIRE_FP32] = "fp32", [GRAD_WIRE_BF16] = "bf16"};
/* file: is followed by the directory (optimizer_offload_dir) */
static const char *const offload_names[] = {
    [OFFLOAD_NONE] = "none", [OFFLOAD_HOST] = "host", [OFFLOAD_FILE] = "file:",
};
/* enum fields are written and read through an int */
_Static_assert(sizeof(run_precision) == sizeof(int) && sizeof(run_recompute) == sizeof(int) &&
                   sizeof(run_grad_wire) == sizeof(int) && sizeof(run_offload) == sizeof(int),
               "enum keys are ints");

#define KEY(field, key_type)                                                     \
    {.name = #field, .type = key_type, .offset = offsetof(run_config, field), \
     .size = sizeof(((run_config *)0)->field)}
#define ENUM_KEY(field, key_type, value_names)                                   \
    {.name = #field, .type = key_type, .offset = offsetof(run_config, field), \
     .names = value_names, .count = sizeof value_names / sizeof value_names[0]}

static const config_key keys[] = {
    KEY(vocab_size, KEY_INT),       KEY(n_positions, KEY_INT),     KEY(n_embd, KEY_INT),
    KEY(n_layer, KEY_INT),          KEY(n_head, KEY_INT),          KEY(batch_size, KEY_INT),
    KEY(seq_len, KEY_INT),          KEY(grad_accum, KEY_INT),      KEY(lr, KEY_FLOAT),
    KEY(min_lr, KEY_FLOAT),         KEY(weight_decay, KEY_FLOAT),  KEY(beta1, KEY_FLOAT),
    KEY(beta2, KEY_FLOAT),          KEY(eps, KEY_FLOAT),           KEY(grad_clip, KEY_FLOAT),
    KEY(warmup_steps, KEY_INT),     KEY(max_steps, KEY_INT),       KEY(lr_decay_steps, KEY_INT),
    ENUM_KEY(precision, KEY_ENUM, precision_names),
    ENUM_KEY(recompute, KEY_ENUM, recompute_names),                KEY(zero_stage, KEY_INT),
    KEY(bucket_mb, KEY_INT),        KEY(comm_timeout_s, KEY_FLOAT),
    KEY(loader_depth, KEY_INT),     KEY(loader_timeout_s, KEY_FLOAT), KEY(loader_endpoint, KEY_STR),
    ENUM_KEY(optimizer_offload, KEY_OFFLOAD, offload_names),       KEY(eval_every, KEY_INT),
    KEY(eval_batches, KEY_INT),     KEY(log_every, KEY_INT),       KEY(checkpoint_every, KEY_INT),
    KEY(keep_checkpoints, KEY_INT), KEY(seed, KEY_I64),            KEY(data_dir, KEY_STR),
    KEY(out_dir, KEY_STR),          KEY(status_endpoint, KEY_STR), KEY(control_endpoint, KEY_STR),
    KEY(control_token, KEY_STR),    KEY(status_public, KEY_INT),
    KEY(checkpoint_async, KEY_INT),
    KEY(init_from, KEY_STR),
    ENUM_KEY(grad_wire, KEY_ENUM, grad_wire_names),                KEY(share_packed, KEY_INT),
    KEY(shm_exchange, KEY_INT),
    KEY(metrics_endpoint, KEY_STR),
};
enum { NKEYS = sizeof keys / sizeof keys[0] };
_Static_assert(NKEYS <= 64, "run_config.keys_set has a bit per key");

static void mark_set(run_config *c, const config_key *k)
{
    c->keys_set |= 1ull << (k - keys);
}

bool config_key_set(const run_config *c, const char *name)
{
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, name) == 0)
            return c->keys_set >> i & 1;
    return false;
}

void config_defaults(run_config *c)
{
    *c = (run_config){
        .vocab_size = 256, .n_positions = 256, .n_embd = 384, .n_layer = 4, .n_head = 6,
        .batch_size = 8, .seq_len = 0, .grad_accum = 1,
        .lr = 3e-4f, .min_lr = 3e-5f, .weight_decay = 0.1f, .beta1 = 0.9f, .beta2 = 0.95f,
        .eps = 1e-8f, .grad_clip = 1.0f, .warmup_steps = 100, .max_steps = 1000,
        .lr_decay_steps = 0, .zero_stage = 1, .bucket_mb = 4, .comm_timeout_s = 60,
        .loader_depth = 8, .loader_timeout_s = 30,
        .eval_every = 100, .eval_batches = 20, .log_every = 1, .checkpoint_every = 0,
        .keep_checkpoints = 3, .checkpoint_async = 1, .seed = 1337,
        .share_packed = 1, .shm_exchange = 1, .precision = PRECISION_AUTO, .recompute = RECOMPUTE_NONE,
        .optimizer_offload = OFFLOAD_NONE, .grad_wire = GRAD_WIRE_FP32,
    };
    strcpy(c->data_dir, "data");
    strcpy(c->out_dir, "runs/default");
    strcpy(c->status_endpoint, "tcp://127.0.0.1:5555");
    strcpy(c->control_endpoint, "tcp://127.0.0.1:5556");
    strcpy(c->metrics_endpoint, "tcp://127.0.0.1:5557");
}

static const config_key *find_key(const char *name)
{
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

/* The fewest significant digits that read back as v (as a float when
 * single): 0.99999999 prints so, not as 0.99999998999999995. */
static const char *shortest(char *buf, size_t len, double v, bool single)
{
    for (int digits = 1; digits < 17; digits++) {
        snprintf(buf, len, "%.*g", digits, v);
        double back = strtod(buf, NULL);
        if (single ? (float)back == (float)v : back == v)
            return buf;
    }
    snprintf(buf, len, "%.17g", v);
    return buf;
}

/* A float key's value that single precision rounds onto 0 or 1, the bounds
 * of the float keys' ranges (beta2 < 1, eps > 0), would be refused or taken
 * as a number the user never wrote: refuse it quoting what was written. */
static int refuse_rounded_onto_bound(const config_key *k, double v, float f, const char *origin,
                                     char *err, size_t errlen)
{
    if ((f != 0 && f != 1) || f == v)
        return 0;
    char typed[32], nearest[32];
    const float next = nextafterf(f, (float)(v < f ? -INFINITY : INFINITY));
    snprintf(err, errlen,
             "%s: %s = %s rounds to %g in single precision (the nearest float %s %g is %s)",
             origin, k->name, shortest(typed, sizeof typed, v, false), f,
             v < f ? "below" : "above", f, shortest(nearest, sizeof nearest, next, true));
    return -1;
}

/* Store a number into an int/i64/float field; refuses fractions for integers. */
static int set_number(run_config *c, const config_key *k, double v, const char *origin, char *err,
                      size_t errlen)
{
    void *field = (char *)c + k->offset;
    if (!isfinite(v)) {
        snprintf(err, errlen, "%s: %s must be a finite number", origin, k->name);
        return -1;
    }
    if (k->type == KEY_FLOAT) {
        float f = (float)v;
        if (!isfinite(f)) {
            snprintf(err, errlen, "%s: %s = %g is out of range for a float", origin, k->name, v);
            return -1;
        }
        if (refuse_rounded_onto_bound(k, v, f, origin, err, errlen) != 0)
            return -1;
        *(float *)field = f;
        mark_set(c, k);
        return 0;
    }
    if (v != floor(v)) {
        snprintf(err, errlen, "%s: %s must be an integer, got %g", origin, k->name, v);
        return -1;
    }
    /* 64-bit keys: the integers a double, and so the JSON dumps, hold exactly */
    const double lo = k->type == KEY_INT ? INT_MIN : -0x1p53;
    const double hi = k->type == KEY_INT ? INT_MAX : 0x1p53;
    if (v < lo || v > hi) {
        snprintf(err, errlen, "%s: %s = %.20g is out of range (%.0f..%.0f)", origin, k->name, v,
                 lo, hi);
        return -1;
    }
    if (k->type == KEY_INT)
        *(int *)field = (int)v;
    else
        *(long long *)field = (long long)v;
    mark_set(c, k);
    return 0;
}

static int set_string(run_config *c, const config_key *k, const char *v, const char *origin,
                      char *err, size_t errlen)
{
    if (strlen(v) >= k->size) {
        snprintf(err, errlen, "%s: %s is too long (max %zu bytes)", origin, k->name, k->size - 1);
        return -1;
    }
    strcpy((char *)c + k->offset, v);
    mark_set(c, k);
    return 0;
}

/* "config: KEY must be A, B or C, not "V"": the names of k's values in order. */
static int refuse_name(const config_key *k, const char *v, char *err, size_t errlen)
{
    char allowed[128];
    size_t len = 0;
    for (int i = 0; i < k->count && len < sizeof allowed; i++) {
        const char *sep = i == 0 ? "" : i == k->count - 1 ? " or " : ", ";
        const char *arg = k->type == KEY_OFFLOAD && i == OFFLOAD_FILE ? "DIR" : "";
        len += (size_t)snprintf(allowed + len, sizeof allowed - len, "%s%s%s", sep, k->names[i],
                                arg);
    }
    snprintf(err, errlen, "config: %s must be %s, not \"%s\"", k->name, allowed, v);
    return -1;
}

/* Sets an enum key from the name of one of its values. */
static int set_enum(run_config *c, const config_key *k, const char *v, char *err, size_t errlen)
{
    /* an empty precision means auto (the default was empty before auto had a name) */
    if (!*v && k->names == precision_names)
        v = precision_names[PRECISION_AUTO];
    for (int i = 0; i < k->count; i++)
        if (strcmp(v, k->names[i]) == 0) {
            *(int *)((char *)c + k->offset) = i;
            mark_set(c, k);
            return 0;
        }
    return refuse_name(k, v, err, errlen);
}

/* optimizer_offload: none or host, or file: followed by a directory. */
static int set_offload(run_config *c, const config_key *k, const char *v, const char *origin,
                       char *err, size_t errlen)
{
    const char *file = offload_names[OFFLOAD_FILE];
    const size_t prefix = strlen(file);
    if (strncmp(v, file, prefix) != 0)
        return set_enum(c, k, v, err, errlen);
    if (!v[prefix])
        return refuse_name(k, v, err, errlen);
    if (strlen(v + prefix) >= sizeof c->optimizer_offload_dir) {
        snprintf(err, errlen, "%s: %s is too long (max %zu bytes)", origin, k->name,
                 prefix + sizeof c->optimizer_offload_dir - 1);
        return -1;
    }
    strcpy(c->optimizer_offload_dir, v + prefix);
    c->optimizer_offload = OFFLOAD_FILE;
    mark_set(c, k);
    return 0;
}

static bool is_text_key(const config_key *k)
{
    return k->type == KEY_STR || k->type == KEY_ENUM || k->type == KEY_OFFLOAD;
}

/* Sets a key whose value is text: a string or a name. */
static int set_text(run_config *c, const config_key *k, const char *v, const char *origin,
                    char *err, size_t errlen)
{
    if (k->type == KEY_ENUM)
        return set_enum(c, k, v, err, errlen);
    if (k->type == KEY_OFFLOAD)
        return set_offload(c, k, v, origin, err, errlen);
    return set_string(c, k, v, origin, err, errlen);
}

/* "ORIGIN: WHAT (line L: TEXT)" for a parse that failed at `at`: the line it
 * failed on (cJSON points past the last good token, which can be the line's
 * end). */
static void json_error(const char *json, const char *at, const char *what, const char *origin,
                       char *err, size_t errlen)
{
    if (!at || at < json) {
        snprintf(err, errlen, "%s: %s", origin, what);
        return;
    }
    int line = 1;
    const char *start = json;
    for (const char *p = json; p < at; p++)
        if (*p == '\n' && p + 1 < at) {
            line++;
            start = p + 1;
        }
    while (*start == ' ' || *start == '\t')
        start++;
    int n = 0;
    while (n < 60 && start[n] && start[n] != '\n')
        n++;
    snprintf(err, errlen, "%s: %s (line %d: %.*s)", origin, what, line, n, start);
}

/* Sets key k (NULL: unknown) from one JSON value. */
static int apply_item(run_config *c, const config_key *k, const cJSON *item, const char *origin,
                      char *err, size_t errlen)
{
    if (!k) {
        snprintf(err, errlen, "%s: unknown config key \"%s\"", origin, item->string);
        return -1;
    }
    if (is_text_key(k)) {
        if (!cJSON_IsString(item)) {
            snprintf(err, errlen, "%s: %s must be a string", origin, k->name);
            return -1;
        }
        return set_text(c, k, item->valuestring, origin, err, errlen);
    }
    if (!cJSON_IsNumber(item)) {
        snprintf(err, errlen, "%s: %s must be a number", origin, k->name);
        return -1;
    }
    return set_number(c, k, item->valuedouble, origin, err, errlen);
}

int config_apply_json(run_config *c, const char *json, const char *origin, char *err,
                      size_t errlen)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(json, &end, false);
    if (!root || !cJSON_IsObject(root)) {
        if (root)
            snprintf(err, errlen, "%s: not a JSON object", origin);
        else
            json_error(json, cJSON_GetErrorPtr(), "not valid JSON", origin, err, errlen);
        cJSON_Delete(root);
        return -1;
    }
    /* nothing but spaces may follow the object: an object closed too early
     * would otherwise drop the keys after it without a word */
    while (end && isspace((unsigned char)*end))
        end++;
    if (end && *end) {   /* +1: the line of the text itself, not of the object's end */
        json_error(json, end + 1, "text after the JSON object", origin, err, errlen);
        cJSON_Delete(root);
        return -1;
    }
    int rc = 0;
    bool seen[NKEYS] = {false};
    for (cJSON *item = root->child; item && rc == 0; item = item->next) {
        const config_key *k = find_key(item->string);
        if (k && seen[k - keys]) {   /* which one wins would be cJSON's accident */
            snprintf(err, errlen, "%s: config key \"%s\" is given twice", origin, k->name);
            rc = -1;
        } else {
            if (k)
                seen[k - keys] = true;
            rc = apply_item(c, k, item, origin, err, errlen);
        }
    }
    cJSON_Delete(root);
    return rc;
}

/* A config is a few hundred bytes; a file far larger was given by mistake. */
enum { CONFIG_MAX_BYTES = 16 << 20 };

int config_load_file(run_config *c, const char *path, char *err, size_t errlen)
{
    size_t len;
    uint8_t *text;
    if (fs_read_file_max(path, CONFIG_MAX_BYTES, &text, &len, err, errlen) != 0)
        return -1;
    if (strlen((const char *)text) != len) {   /* the parser would stop at it, unheard */
        snprintf(err, errlen, "%s: holds a NUL byte, not JSON text", path);
        free(text);
        return -1;
    }
    int rc = config_apply_json(c, (const char *)text, path, err, errlen);
    free(text);
    return rc;
}

int config_set(run_config *c, const char *assignment, char *err, size_t errlen)
{
    const char *eq = strchr(assignment, '=');
    char name[64];
    if (!eq || eq == assignment || (size_t)(eq - assignment) >= sizeof name) {
        snprintf(err, errlen, "--set %s: expected key=value", assignment);
        return -1;
    }
    memcpy(name, assignment, (size_t)(eq - assignment));
    name[eq - assignment] = '\0';
    const char *value = eq + 1;
    const config_key *k = find_key(name);
    if (!k) {
        snprintf(err, errlen, "--set: unknown config key \"%s\"", name);
        return -1;
    }
    if (is_text_key(k))
        return set_text(c, k, value, "--set", err, errlen);
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || *end) {
        snprintf(err, errlen, "--set %s: \"%s\" is not a number", name, value);
        return -1;
    }
    return set_number(c, k, v, "--set", err, errlen);
}

/* Each check: condition that must hold, and the message when it does not. */
#define REQUIRE(cond, ...)                          \
    do {                                            \
        if (!(cond)) {                              \
            snprintf(err, errlen, __VA_ARGS__);     \
            return -1;                              \
        }                                           \
    } while (0)

/* The model's and the batch's dimensions. */
static int check_dims(const run_config *c, char *err, size_t errlen)
{
    /* bounds that keep every size product far from overflow; memory is checked later */
    const gpt2_dims d = {.vocab_size = c->vocab_size, .n_positions = c->n_positions,
                         .n_embd = c->n_embd, .n_layer = c->n_layer, .n_head = c->n_head};
    char why[160];
    REQUIRE(hf_gpt2_dims_check(&d, why, sizeof why) == 0, "config: %s", why);
    REQUIRE(c->n_embd / c->n_head <= 4096, "config: head size n_embd / n_head = %d is larger than 4096",
            c->n_embd / c->n_head);
    REQUIRE(c->seq_len > 0 && c->seq_len <= c->n_positions,
            "config: seq_len (%d) must be in 1..n_positions (%d)", c->seq_len, c->n_positions);
    REQUIRE(c->batch_size > 0, "config: batch_size must be positive, not %d", c->batch_size);
    REQUIRE(c->grad_accum > 0, "config: grad_accum must be in 1..65536, not %d", c->grad_accum);
    REQUIRE(c->grad_accum <= 1 << 16, "config: grad_accum %d is larger than 65536", c->grad_accum);
    REQUIRE((long long)c->batch_size * c->seq_len <= 1 << 24,
            "config: batch_size x seq_len (%lld) exceeds 2^24 tokens per micro-batch",
            (long long)c->batch_size * c->seq_len);
    return 0;
}

/* The length of the run, the schedule, AdamW and the periodic work. */
static int check_schedule(const run_config *c, char *err, size_t errlen)
{
    /* one key per refusal: the line names the key at fault and its value */
    REQUIRE(c->max_steps > 0, "config: max_steps must be positive, not %d", c->max_steps);
    REQUIRE(c->seed >= 0, "config: seed must be >= 0 (build/loader's --seed is too), not %lld",
            c->seed);
    REQUIRE(c->warmup_steps >= 0, "config: warmup_steps must be >= 0, not %d", c->warmup_steps);
    REQUIRE(c->lr_decay_steps > 0, "config: lr_decay_steps must be >= 0 (0: max_steps), not %d",
            c->lr_decay_steps);
    REQUIRE(c->lr > 0, "config: lr must be > 0, not %g", c->lr);
    REQUIRE(c->min_lr >= 0, "config: min_lr must be >= 0, not %g", c->min_lr);
    REQUIRE(c->min_lr <= c->lr, "config: min_lr (%g) must not exceed lr (%g)", c->min_lr, c->lr);
    REQUIRE(c->beta1 >= 0 && c->beta1 < 1, "config: beta1 must be in [0,1), not %g", c->beta1);
    REQUIRE(c->beta2 >= 0 && c->beta2 < 1, "config: beta2 must be in [0,1), not %g", c->beta2);
    REQUIRE(c->eps > 0, "config: eps must be > 0, not %g", c->eps);
    REQUIRE(c->weight_decay >= 0, "config: weight_decay must be >= 0, not %g", c->weight_decay);
    REQUIRE(c->grad_clip >= 0, "config: grad_clip must be >= 0 (0: no clipping), not %g",
            c->grad_clip);
    REQUIRE(c->eval_every >= 0, "config: eval_every must be >= 0 (0: never), not %d", c->eval_every);
    REQUIRE(c->eval_batches >= 0, "config: eval_batches must be >= 0 (0: the whole val split), not %d",
            c->eval_batches);
    REQUIRE(c->log_every > 0, "config: log_every must be positive, not %d", c->log_every);
    REQUIRE(c->checkpoint_every >= 0, "config: checkpoint_every must be >= 0 (0: only at the end), not %d",
            c->checkpoint_every);
    REQUIRE(c->keep_checkpoints > 0, "config: keep_checkpoints must be positive, not %d",
            c->keep_checkpoints);
    REQUIRE(c->checkpoint_async == 0 || c->checkpoint_async == 1,
            "config: checkpoint_async must be 0 or 1");
    REQUIRE(c->share_packed == 0 || c->share_packed == 1, "config: share_packed must be 0 or 1");
    REQUIRE(c->shm_exchange == 0 || c->shm_exchange == 1, "config: shm_exchange must be 0 or 1");
    return 0;
}

/* How the steps compute and communicate (the names were checked when read). */
static int check_compute(run_config *c, char *err, size_t errlen)
{
    /* auto: the trainer times this CPU's products at start (trainer/autotune.h) */
    c->precision_auto = c->precision == PRECISION_AUTO;
    REQUIRE(c->zero_stage >= 0 && c->zero_stage <= 2, "config: zero_stage must be 0, 1 or 2, not %d",
            c->zero_stage);
    REQUIRE(c->bucket_mb > 0, "config: bucket_mb must be positive");
    return 0;
}

/* Timeouts and the loader. */
static int check_runtime(const run_config *c, char *err, size_t errlen)
{
    REQUIRE(c->data_dir[0], "config: data_dir must not be empty");
    REQUIRE(c->out_dir[0], "config: out_dir must not be empty");
    REQUIRE(c->comm_timeout_s >= 0, "config: comm_timeout_s must be >= 0 (0 waits forever)");
    REQUIRE(c->loader_depth >= 1 && c->loader_depth <= 1024,
            "config: loader_depth must be in 1..1024");
    REQUIRE(c->loader_timeout_s > 0 && c->loader_timeout_s <= 86400,
            "config: loader_timeout_s must be in (0, 86400]");
    REQUIRE(!c->loader_endpoint[0] || strncmp(c->loader_endpoint, "tcp://", 6) == 0 ||
                strncmp(c->loader_endpoint, "ipc://", 6) == 0,
            "config: loader_endpoint must be empty (a loader thread) or tcp://HOST:PORT or "
            "ipc://PATH, not \"%s\"", c->loader_endpoint);
    /* the rest of its form too: the loader would refuse it only after the
     * out_dir, its log and the precision measurement */
    if (c->loader_endpoint[0] &&
        zsock_endpoint_check("config: loader_endpoint", c->loader_endpoint, err, errlen) != 0)
        return -1;
    return 0;
}

int config_finalize(run_config *c, char *err, size_t errlen)
{
    if (c->seq_len == 0)
        c->seq_len = c->n_positions;
    if (c->lr_decay_steps == 0)
        c->lr_decay_steps = c->max_steps;
    if (check_dims(c, err, errlen) != 0 || check_schedule(c, err, errlen) != 0 ||
        check_compute(c, err, errlen) != 0 || check_runtime(c, err, errlen) != 0)
        return -1;
    /* status/control endpoints (loopback unless the config says otherwise) */
    if (control_check_config(c, err, errlen) != 0 || metrics_check_config(c, err, errlen) != 0)
        return -1;
    return 0;
}

char *config_to_json(const run_config *c)
{
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < NKEYS; i++) {
        const config_key *k = &keys[i];
        const void *field = (const char *)c + k->offset;
        if (strcmp(k->name, "control_token") == 0)
            continue;   /* a secret stays out of dumps (checkpoints, logs) */
        switch (k->type) {
        case KEY_INT: cJSON_AddNumberToObject(o, k->name, *(const int *)field); break;
        case KEY_I64: cJSON_AddNumberToObject(o, k->name, (double)*(const long long *)field); break;
        case KEY_FLOAT: cJSON_AddNumberToObject(o, k->name, *(const float *)field); break;
        case KEY_STR: cJSON_AddStringToObject(o, k->name, (const char *)field); break;
        case KEY_ENUM: cJSON_AddStringToObject(o, k->name, k->names[*(const int *)field]); break;
        case KEY_OFFLOAD: {
            char text[256];
            snprintf(text, sizeof text, "%s%s", k->names[c->optimizer_offload],
                     c->optimizer_offload == OFFLOAD_FILE ? c->optimizer_offload_dir : "");
            cJSON_AddStringToObject(o, k->name, text);
            break;
        }
        }
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

const char *config_precision_name(run_precision p)
{
    return precision_names[p];
}

const char *config_recompute_name(run_recompute r)
{
    return recompute_names[r];
}
