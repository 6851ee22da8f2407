/* config: the run configuration, read from a JSON file with --set overrides.
 *
 * Keys follow GPT-2/Hugging Face names for the model and docs/design.md for the run.
 * Every key has a default (config_defaults); an unknown key, a value of the
 * wrong type or an impossible combination is refused with a one-line reason.
 */
#ifndef TRAINER_CONFIG_H
#define TRAINER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* The keys that take one of a few names are these enums (the names in
 * config.c's tables, the only place that parses or prints them). */
typedef enum { PRECISION_AUTO, PRECISION_FP32, PRECISION_BF16, PRECISION_FP16 } run_precision;
typedef enum { RECOMPUTE_NONE, RECOMPUTE_BLOCK } run_recompute;
/* none and host both keep the moments in memory; file: in optimizer_offload_dir */
typedef enum { OFFLOAD_NONE, OFFLOAD_HOST, OFFLOAD_FILE } run_offload;
/* gradient buckets on the wire (comm/buckets.h) */
typedef enum { GRAD_WIRE_FP32, GRAD_WIRE_BF16 } run_grad_wire;

typedef struct {
    /* model */
    int vocab_size, n_positions, n_embd, n_layer, n_head;
    /* batch */
    int batch_size, seq_len, grad_accum;
    /* optimisation */
    float lr, min_lr, weight_decay, beta1, beta2, eps, grad_clip;
    int warmup_steps, max_steps, lr_decay_steps;
    run_precision precision;   /* auto until the trainer measures (precision_auto stays) */
    run_recompute recompute;
    /* distribution (comm/) */
    int zero_stage, bucket_mb;
    run_grad_wire grad_wire;
    float comm_timeout_s;   /* longest wait on other ranks before aborting (0: forever) */
    int loader_depth;       /* training batches prepared ahead */
    float loader_timeout_s; /* longest wait for one batch before giving up */
    char loader_endpoint[256]; /* "": a loader thread per rank; else build/loader's endpoint */
    run_offload optimizer_offload;
    char optimizer_offload_dir[251];   /* file:DIR's DIR (the key's value at most 255 bytes) */
    int share_packed;       /* 1: the ranks on a node share one packed 16-bit copy of the weights */
    int shm_exchange;       /* 1: ranks all on one machine exchange through shared memory */
    /* evaluation, logging, checkpoints */
    int eval_every, eval_batches, log_every, checkpoint_every, keep_checkpoints;
    int checkpoint_async;   /* 1 writes checkpoints on a thread from a snapshot; 0 in the loop */
    long long seed;
    char data_dir[512], out_dir[512];
    char status_endpoint[128], control_endpoint[128];
    char control_token[128];   /* required off loopback ($GPT_CONTROL_TOKEN too) */
    int status_public;         /* 1 allows a non-loopback status_endpoint */
    char init_from[512];       /* "": random init; else a checkpoint whose weights start the run */
    unsigned long long keys_set;   /* bit i: key i was given (file or --set), not defaulted */
    char metrics_endpoint[128];   /* Prometheus' HTTP endpoint (trainer/metrics.h) */
    /* derived by config_finalize, not a key */
    bool precision_auto;   /* precision auto: train_run picks by measurement */
} run_config;

void config_defaults(run_config *c);
/* Apply the keys of a JSON object (text) on top of c. 0 ok, -1 with err set. */
int config_apply_json(run_config *c, const char *json, const char *origin, char *err,
                      size_t errlen);
int config_load_file(run_config *c, const char *path, char *err, size_t errlen);
/* Apply one "key=value" override. */
int config_set(run_config *c, const char *assignment, char *err, size_t errlen);
/* Whether key was given by the config file or --set (not left at its default). */
bool config_key_set(const run_config *c, const char *key);
/* Fill derived defaults (seq_len, lr_decay_steps) and check consistency. */
int config_finalize(run_config *c, char *err, size_t errlen);
/* The whole config as a JSON object (malloc'd string, caller frees). */
char *config_to_json(const run_config *c);
/* The names the config gives these values ("bf16", "block"). */
const char *config_precision_name(run_precision p);
const char *config_recompute_name(run_recompute r);

#endif
