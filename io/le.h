/* le: little-endian integers in byte buffers, the byte order of every file
 * and wire format the project reads and writes (token files, the loader's
 * messages, GGUF, safetensors).  memcpy, so any alignment will do, and a
 * byte swap on a big-endian host. */
#ifndef IO_LE_H
#define IO_LE_H

#include <stdint.h>
#include <string.h>

#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define LE_SWAP16(v) __builtin_bswap16(v)
#define LE_SWAP32(v) __builtin_bswap32(v)
#define LE_SWAP64(v) __builtin_bswap64(v)
#else
#define LE_SWAP16(v) (v)
#define LE_SWAP32(v) (v)
#define LE_SWAP64(v) (v)
#endif

static inline uint16_t le_get_u16(const void *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return LE_SWAP16(v);
}

static inline uint32_t le_get_u32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return LE_SWAP32(v);
}

static inline uint64_t le_get_u64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return LE_SWAP64(v);
}

static inline void le_put_u16(void *p, uint16_t v)
{
    v = LE_SWAP16(v);
    memcpy(p, &v, sizeof v);
}

static inline void le_put_u32(void *p, uint32_t v)
{
    v = LE_SWAP32(v);
    memcpy(p, &v, sizeof v);
}

static inline void le_put_u64(void *p, uint64_t v)
{
    v = LE_SWAP64(v);
    memcpy(p, &v, sizeof v);
}

#endif
