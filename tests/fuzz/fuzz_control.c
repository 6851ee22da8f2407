/* fuzz_control: requests to the trainer's control socket.  Input: one request
 * as a client sends it (any bytes); its first byte picks whether the server
 * has a token.  A request is either one of the commands or refused with a
 * non-empty one-line reason (the reply goes back to the client as is). */
#include <ctype.h>

#include "tests/fuzz/fuzz.h"
#include "trainer/control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *token = size > 0 && (data[0] & 1) ? "s3cret" : NULL;
    /* an exact-size copy: the parser must not read past len (no NUL after it) */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    char msg[256] = "";
    control_cmd cmd = control_parse_request(buf, size, token, msg, sizeof msg);
    FUZZ_CHECK(cmd >= CONTROL_NONE && cmd <= CONTROL_RESUME);
    if (cmd == CONTROL_NONE) {
        FUZZ_CHECK(msg[0] != '\0');
        for (const char *s = msg; *s; s++)
            FUZZ_CHECK(isprint((unsigned char)*s));
    }
    free(buf);
    return 0;
}
