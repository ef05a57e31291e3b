/* bf16: a stored (little-endian) BF16 element split into its exponent byte
 * and its sign|mantissa byte (s << 7) | m, and put back together; the
 * split that both the at-rest and the resident formats are built on. */
#ifndef UW_FORMAT_BF16_H
#define UW_FORMAT_BF16_H

#include <stdint.h>

static inline uint8_t bf16_exp(const uint8_t *p)
{
	return (uint8_t)((p[1] & 0x7f) << 1 | p[0] >> 7);
}

static inline uint8_t bf16_sm(const uint8_t *p)
{
	return (uint8_t)((p[1] & 0x80) | (p[0] & 0x7f));
}

static inline void bf16_put(uint8_t *p, uint8_t ex, uint8_t sm)
{
	unsigned v = (sm & 0x80u) << 8 | (unsigned)ex << 7 | (sm & 0x7fu);
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

#endif
