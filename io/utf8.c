#include "io/utf8.h"

#include <stdlib.h>
#include <string.h>

long utf8_step(const uint8_t *s, size_t n)
{
    uint8_t c = s[0], lo = 0x80, hi = 0xbf;   /* the second byte's range */
    size_t need;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        need = 1;
    else if (c >= 0xe0 && c <= 0xef)   /* no overlong forms, no surrogates */
        need = 2, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    else if (c >= 0xf0 && c <= 0xf4)   /* nothing above U+10FFFF */
        need = 3, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    else
        return -1;
    for (size_t i = 1; i <= need; i++) {
        if (i >= n || s[i] < lo || s[i] > hi)
            return -(long)i;
        lo = 0x80, hi = 0xbf;
    }
    return (long)need + 1;
}

bool utf8_is_c1(const uint8_t *s)
{
    return s[0] == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f;
}

char *utf8_valid_copy(const void *s, size_t n)
{
    const uint8_t *u = s;
    char *out = malloc(3 * n + 1), *p = out;   /* U+FFFD is 3 bytes, for >= 1 byte */
    if (!out)
        return NULL;
    for (size_t i = 0; i < n;) {
        long len = utf8_step(u + i, n - i);
        if (len > 0) {
            memcpy(p, u + i, (size_t)len);
            p += len;
            i += (size_t)len;
        } else {
            memcpy(p, "\xEF\xBF\xBD", 3);
            p += 3;
            i += (size_t)-len;
        }
    }
    *p = '\0';
    return out;
}
