/* le: little-endian loads and stores, whatever the host's byte order. */
#ifndef UW_COMMON_LE_H
#define UW_COMMON_LE_H

#include <stdint.h>

static inline void le16_put(uint8_t *b, uint16_t v)
{
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
}
static inline void le32_put(uint8_t *b, uint32_t v)
{
	le16_put(b, (uint16_t)v);
	le16_put(b + 2, (uint16_t)(v >> 16));
}
static inline void le64_put(uint8_t *b, uint64_t v)
{
	le32_put(b, (uint32_t)v);
	le32_put(b + 4, (uint32_t)(v >> 32));
}
static inline uint16_t le16_get(const uint8_t *b)
{
	return (uint16_t)(b[0] | b[1] << 8);
}
static inline uint32_t le32_get(const uint8_t *b)
{
	return le16_get(b) | (uint32_t)le16_get(b + 2) << 16;
}
static inline uint64_t le64_get(const uint8_t *b)
{
	return le32_get(b) | (uint64_t)le32_get(b + 4) << 32;
}

#endif
