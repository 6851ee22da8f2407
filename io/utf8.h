/* utf8: well-formed UTF-8 as decoders read it (WHATWG, Python, Node).
 *
 * Text that leaves a process as JSON (a service's reply, a status record)
 * must be valid UTF-8, or strict readers refuse the whole line; bytes from a
 * model or a file name need not be.
 */
#ifndef IO_UTF8_H
#define IO_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The length of the well-formed sequence at s[0..n) (> 0, n >= 1), or minus
 * the length of the maximal ill-formed subpart there, which a decoder
 * replaces by one U+FFFD. */
long utf8_step(const uint8_t *s, size_t n);

/* Whether the NUL-terminated s starts with a C1 control, U+0080..U+009F in
 * UTF-8 (0xc2, then 0x80..0x9f): terminals act on them (U+009B is CSI). */
bool utf8_is_c1(const uint8_t *s);

/* s[0..n) as a NUL-terminated string (malloc'd) in which each ill-formed
 * subpart is U+FFFD; NULL when out of memory. */
char *utf8_valid_copy(const void *s, size_t n);

#endif
