/* config: JSON keys and --set overrides, type and consistency errors, the
 * JSON dump reading back to the same config, and the model options the
 * trainer makes of a config. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trainer/config.h"
#include "trainer/train.h"

static void test_json_and_set_override_defaults(void **state)
{
    (void)state;
    run_config c;
    char err[256];
    config_defaults(&c);
    assert_int_equal(config_apply_json(&c, "{\"n_layer\": 6, \"lr\": 0.001, \"out_dir\": \"x\"}",
                                       "t", err, sizeof err), 0);
    assert_int_equal(config_set(&c, "n_layer=8", err, sizeof err), 0);
    assert_int_equal(config_set(&c, "seed=12345678901", err, sizeof err), 0);
    assert_int_equal(config_set(&c, "zero_stage=2", err, sizeof err), 0);
    assert_int_equal(config_set(&c, "beta2=0.9999999", err, sizeof err), 0);   /* below 1 as a float */
    assert_int_equal(config_finalize(&c, err, sizeof err), 0);
    assert_int_equal(c.n_layer, 8);
    assert_true(c.lr == 0.001f);
    assert_string_equal(c.out_dir, "x");
    assert_true(c.seed == 12345678901LL);
    assert_int_equal(c.zero_stage, 2);
    assert_int_equal(c.seq_len, c.n_positions);
    assert_int_equal(c.lr_decay_steps, c.max_steps);
    assert_int_equal(c.precision, PRECISION_AUTO);   /* measured at start by the trainer */
    assert_true(c.precision_auto);
}

static void expect_error(const char *json, const char *set, const char *fragment)
{
    run_config c;
    char err[256] = "";
    config_defaults(&c);
    int rc = json ? config_apply_json(&c, json, "t", err, sizeof err) : 0;
    if (rc == 0 && set)
        rc = config_set(&c, set, err, sizeof err);
    if (rc == 0)
        rc = config_finalize(&c, err, sizeof err);
    assert_int_equal(rc, -1);
    if (!strstr(err, fragment))
        fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, fragment);
    assert_non_null(strstr(err, fragment));
    assert_null(strchr(err, '\n'));
}

static void test_bad_configs_are_refused(void **state)
{
    (void)state;
    expect_error("{\"n_layers\": 2}", NULL, "unknown config key \"n_layers\"");
    expect_error("{\"n_layer\": \"2\"}", NULL, "must be a number");
    expect_error("{\"n_layer\": 2.5}", NULL, "must be an integer");
    expect_error("{\"data_dir\": 3}", NULL, "must be a string");
    expect_error("[1, 2]", NULL, "not a JSON object");
    expect_error("{\"n_layer\": 2,\n \"lr\": 1e-3,,\n}", NULL,
                 "not valid JSON (line 2: \"lr\": 1e-3,,)");
    expect_error("{\"n_layer\": 2, \"n_layer\": 3}", NULL, "\"n_layer\" is given twice");
    /* an object closed too early: the keys after it are not silently dropped */
    expect_error("{\"n_layer\": 2},\n \"max_steps\": 3}", NULL,
                 "text after the JSON object (line 1: {\"n_layer\": 2},)");
    expect_error("{\"n_layer\": 2}\n{\"max_steps\": 3}\n", NULL,
                 "text after the JSON object (line 2: {\"max_steps\": 3})");
    expect_error(NULL, "out_dir=", "out_dir must not be empty");
    expect_error(NULL, "data_dir=", "data_dir must not be empty");
    expect_error("{\"n_embd\": 100, \"n_head\": 3}", NULL, "not divisible");
    expect_error(NULL, "lr", "expected key=value");
    expect_error(NULL, "lr=abc", "not a number");
    expect_error(NULL, "nope=1", "unknown config key");
    expect_error(NULL, "seq_len=100000", "seq_len");
    expect_error(NULL, "precision=fp8",
                 "config: precision must be auto, fp32, bf16 or fp16, not \"fp8\"");
    expect_error("{\"recompute\": \"blocks\"}", NULL,
                 "config: recompute must be none or block, not \"blocks\"");
    expect_error(NULL, "grad_wire=fp16", "config: grad_wire must be fp32 or bf16, not \"fp16\"");
    expect_error(NULL, "optimizer_offload=file:",
                 "config: optimizer_offload must be none, host or file:DIR, not \"file:\"");
    expect_error(NULL, "optimizer_offload=disk",
                 "config: optimizer_offload must be none, host or file:DIR, not \"disk\"");
    expect_error(NULL, "min_lr=1", "min_lr");
    expect_error(NULL, "lr=1e39", "out of range");
    /* a value single precision rounds onto a bound is quoted as written, not as its float */
    expect_error(NULL, "beta2=0.99999999",
                 "--set: beta2 = 0.99999999 rounds to 1 in single precision (the nearest float "
                 "below 1 is 0.99999994)");
    expect_error("{\"eps\": 1e-50}", NULL,
                 "t: eps = 1e-50 rounds to 0 in single precision (the nearest float above 0 is "
                 "1e-45)");
    expect_error(NULL, "checkpoint_every=-1", "checkpoint_every must be >= 0");
    expect_error(NULL, "zero_stage=3", "zero_stage must be 0, 1 or 2");
    expect_error(NULL, "zero_stage=-1", "zero_stage must be 0, 1 or 2");
    expect_error(NULL, "seed=-1", "seed must be >= 0");
    /* a loader endpoint that cannot be connected to, before anything is written */
    expect_error(NULL, "loader_endpoint=tcp://127.0.0.1:notaport",
                 "config: loader_endpoint \"tcp://127.0.0.1:notaport\": expected");
    expect_error(NULL, "loader_endpoint=tcp://", "config: loader_endpoint");
    /* integers too large for their key are out of range, not "not an integer" */
    expect_error(NULL, "n_layer=3000000000", "n_layer = 3000000000 is out of range");
    expect_error(NULL, "seed=1152921504606846976", "seed = 1152921504606846976 is out of range");
    expect_error("{\"seed\": 1e300}", NULL, "is out of range");
    expect_error("{\"batch_size\": 100000, \"seq_len\": 256}", NULL, "2^24");
    expect_error(NULL, "grad_accum=2000000000", "config: grad_accum 2000000000 is larger than 65536");
}

static void test_json_dump_round_trips(void **state)
{
    (void)state;
    run_config a, b;
    char err[256];
    config_defaults(&a);
    assert_int_equal(config_set(&a, "data_dir=some/where", err, sizeof err), 0);
    assert_int_equal(config_set(&a, "beta2=0.99", err, sizeof err), 0);
    assert_int_equal(config_set(&a, "precision=fp32", err, sizeof err), 0);
    assert_int_equal(config_set(&a, "recompute=block", err, sizeof err), 0);
    assert_int_equal(config_set(&a, "grad_wire=bf16", err, sizeof err), 0);
    assert_int_equal(config_set(&a, "optimizer_offload=file:/tmp/moments", err, sizeof err), 0);
    assert_int_equal(config_finalize(&a, err, sizeof err), 0);
    assert_false(a.precision_auto);   /* an explicit precision is honoured */
    assert_true(a.precision == PRECISION_FP32 && a.recompute == RECOMPUTE_BLOCK &&
                a.grad_wire == GRAD_WIRE_BF16 && a.optimizer_offload == OFFLOAD_FILE);
    assert_string_equal(a.optimizer_offload_dir, "/tmp/moments");
    char *json = config_to_json(&a);
    /* the dump names them as the config did */
    assert_non_null(strstr(json, "\"precision\":\"fp32\",\"recompute\":\"block\""));
    assert_non_null(strstr(json, "\"optimizer_offload\":\"file:/tmp/moments\""));
    assert_non_null(strstr(json, "\"grad_wire\":\"bf16\""));
    config_defaults(&b);
    assert_int_equal(config_apply_json(&b, json, "dump", err, sizeof err), 0);
    free(json);
    assert_true(config_key_set(&b, "seed") && !config_key_set(&a, "seed"));
    b.keys_set = a.keys_set;   /* which keys were given is where values came from, not a value */
    assert_memory_equal(&a, &b, sizeof a);
}

static void test_precision_names_reach_the_model(void **state)
{
    (void)state;
    const struct {
        const char *set;
        gpt2_precision model;
    } cases[] = {{"precision=fp32", PREC_FP32}, {"precision=bf16", PREC_BF16},
                 {"precision=fp16", PREC_FP16}, {"precision=auto", PREC_FP32}};
    char err[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_config c;
        config_defaults(&c);
        assert_int_equal(config_set(&c, cases[i].set, err, sizeof err), 0);
        assert_int_equal(config_set(&c, "recompute=block", err, sizeof err), 0);
        assert_int_equal(config_finalize(&c, err, sizeof err), 0);
        gpt2_options one = train_model_options(&c, 1), two = train_model_options(&c, 2);
        assert_int_equal(one.precision, cases[i].model);
        assert_true(one.recompute && !one.split_embed_grad && two.split_embed_grad);
    }
}

/* A file that is no config by its size (/dev/zero given by mistake never
 * ends) is refused without reading it all; a small one from a pipe loads;
 * one holding a NUL byte is refused. */
static void test_config_file_size_is_bounded(void **state)
{
    (void)state;
    run_config c;
    char err[256];
    config_defaults(&c);
    assert_int_equal(config_load_file(&c, "/dev/zero", err, sizeof err), -1);
    assert_non_null(strstr(err, "/dev/zero: longer than 16777216 bytes"));
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    const char json[] = "{\"n_layer\": 3}";
    assert_int_equal(write(fds[1], json, sizeof json - 1), (int)(sizeof json - 1));
    close(fds[1]);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fds[0]);
    assert_int_equal(config_load_file(&c, path, err, sizeof err), 0);
    close(fds[0]);
    assert_int_equal(c.n_layer, 3);
    /* keys behind a NUL byte are not dropped unheard */
    assert_int_equal(pipe(fds), 0);
    const char nul[] = "{\"n_layer\": 2}\0{\"max_steps\": 3}";
    assert_int_equal(write(fds[1], nul, sizeof nul - 1), (int)(sizeof nul - 1));
    close(fds[1]);
    snprintf(path, sizeof path, "/proc/self/fd/%d", fds[0]);
    assert_int_equal(config_load_file(&c, path, err, sizeof err), -1);
    close(fds[0]);
    assert_non_null(strstr(err, "holds a NUL byte"));
}

/* Whether text names key as a word of its own (lr is not named by "min_lr"). */
static bool names_key(const char *text, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = strstr(text, key); p; p = strstr(p + 1, key)) {
        bool start = p == text || !(isalnum((unsigned char)p[-1]) || p[-1] == '_');
        bool end = !(isalnum((unsigned char)p[n]) || p[n] == '_');
        if (start && end)
            return true;
    }
    return false;
}

/* docs/config.md: a bad value stops the trainer with one line naming the key.
 * Every numeric key of the table (read from the config dump, so a new key is
 * covered) is set alone to values at and past the usual bounds; whatever is
 * refused, by --set or by the checks of the whole config, names that key. */
static void test_each_refusal_names_its_key(void **state)
{
    (void)state;
    static const char *const values[] = {"-1", "0", "0.5", "2", "1000000000", "1e30"};
    run_config def;
    config_defaults(&def);
    char *json = config_to_json(&def);
    cJSON *o = cJSON_Parse(json);
    free(json);
    assert_non_null(o);
    int refused = 0;
    for (const cJSON *it = o->child; it; it = it->next) {
        if (!cJSON_IsNumber(it))
            continue;
        for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
            run_config c;
            char assignment[128], err[256] = "";
            config_defaults(&c);
            snprintf(assignment, sizeof assignment, "%s=%s", it->string, values[i]);
            if (config_set(&c, assignment, err, sizeof err) == 0 &&
                config_finalize(&c, err, sizeof err) == 0)
                continue;
            refused++;
            if (!names_key(err, it->string) || strchr(err, '\n'))
                fprintf(stderr, "--set %s is refused without naming %s: \"%s\"\n", assignment,
                        it->string, err);
            assert_true(names_key(err, it->string));
            assert_null(strchr(err, '\n'));
        }
    }
    cJSON_Delete(o);
    assert_true(refused > 20);   /* the loop reached the checks */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_and_set_override_defaults),
        cmocka_unit_test(test_bad_configs_are_refused),
        cmocka_unit_test(test_json_dump_round_trips),
        cmocka_unit_test(test_precision_names_reach_the_model),
        cmocka_unit_test(test_config_file_size_is_bounded),
        cmocka_unit_test(test_each_refusal_names_its_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
