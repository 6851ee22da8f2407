/* fuzz_weightmap: model.safetensors.index.json as build/import reads a
 * sharded Hugging Face model (io/weights.c ws_index_parse).  Input: the whole
 * file.  An accepted index names each tensor once, sorted, in a shard that is
 * a plain file name of the folder. */
#include <string.h>

#include "io/weights.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *json = malloc(size ? size : 1);   /* exact size: not NUL-terminated */
    if (!json)
        return 0;
    memcpy(json, data, size);
    ws_index ix;
    char err[256] = "";
    if (ws_index_parse(json, size, &ix, err, sizeof err) != 0) {
        FUZZ_CHECK(err[0] != '\0' && !strchr(err, '\n'));
        free(json);
        return 0;
    }
    FUZZ_CHECK(ix.n > 0 && ix.nfiles > 0 && ix.nfiles <= WS_MAX_SHARDS);
    for (int i = 0; i < ix.n; i++) {
        FUZZ_CHECK(ix.map[i].file >= 0 && ix.map[i].file < ix.nfiles);
        FUZZ_CHECK(i == 0 || strcmp(ix.map[i - 1].tensor, ix.map[i].tensor) < 0);
    }
    for (int k = 0; k < ix.nfiles; k++)
        FUZZ_CHECK(ix.files[k][0] && !strchr(ix.files[k], '/') && !strstr(ix.files[k], ".."));
    ws_index_free(&ix);
    free(json);
    return 0;
}
