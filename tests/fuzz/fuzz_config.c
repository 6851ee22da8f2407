/* fuzz_config: the run configuration, from a config file and --set options.
 * Input: the JSON text of a config file, then (after a NUL byte) --set
 * assignments one per line.  A config that finalizes must survive its own
 * JSON dump (what checkpoints and logs store): reading it back gives the same. */
#include "tests/fuzz/fuzz.h"
#include "trainer/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    if (!text)
        return 0;
    run_config c;
    char err[512];
    config_defaults(&c);
    int rc = config_apply_json(&c, text, "fuzz.json", err, sizeof err);
    size_t json_len = strlen(text);
    char *line = json_len < size ? text + json_len + 1 : NULL;
    while (rc == 0 && line && *line) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        rc = config_set(&c, line, err, sizeof err);
        line = nl ? nl + 1 : NULL;
    }
    if (rc == 0 && config_finalize(&c, err, sizeof err) == 0) {
        char *dump = config_to_json(&c);
        FUZZ_CHECK(dump);
        run_config back;
        config_defaults(&back);
        FUZZ_CHECK(config_apply_json(&back, dump, "dump", err, sizeof err) == 0);
        FUZZ_CHECK(config_finalize(&back, err, sizeof err) == 0 || strstr(err, "token"));
        char *again = config_to_json(&back);
        FUZZ_CHECK(again && strcmp(dump, again) == 0);
        free(again);
        free(dump);
    }
    free(text);
    return 0;
}
