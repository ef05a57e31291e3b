/* crc32c: slice-by-8 tables, and the SSE4.2 instruction where the CPU has it
 * (checksums run over every byte at load, so they must keep up with disk). */
#include "common/crc32c.h"

#include <pthread.h>
#include <string.h>

static uint32_t table[8][256];
static uint32_t gf2_times(const uint32_t m[32], uint32_t v);
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
		table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}

static uint32_t crc_sw(uint32_t c, const unsigned char *p, size_t n)
{
	pthread_once(&table_once, table_init);
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		w ^= c;
		c = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^
		    table[5][(w >> 16) & 0xff] ^ table[4][(w >> 24) & 0xff] ^
		    table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
		    table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
		p += 8;
		n -= 8;
	}
	while (n--)
		c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
	return c;
}

#if defined(__x86_64__)
/* Three streams of STREAM bytes at once: the instruction's latency is three
 * cycles and its throughput one, so one chain runs at a third of what the
 * core can do. The streams' registers are joined by the zero-shift
 * operator of STREAM bytes (linear: see crc32c_zeros_op). */
#define STREAM 8192
static uint32_t stream_op[32];
static pthread_once_t stream_once = PTHREAD_ONCE_INIT;
static void stream_init(void)
{
	crc32c_zeros_op(STREAM, stream_op);
}

__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t c, const unsigned char *p, size_t n)
{
	uint64_t c64 = c;
	if (n >= 3 * STREAM) {
		pthread_once(&stream_once, stream_init);
		do {
			uint64_t a = c64, b = 0, d = 0;
			for (size_t i = 0; i < STREAM; i += 8) {
				uint64_t w0, w1, w2;
				memcpy(&w0, p + i, 8);
				memcpy(&w1, p + STREAM + i, 8);
				memcpy(&w2, p + 2 * STREAM + i, 8);
				a = __builtin_ia32_crc32di(a, w0);
				b = __builtin_ia32_crc32di(b, w1);
				d = __builtin_ia32_crc32di(d, w2);
			}
			uint32_t ab = gf2_times(stream_op, (uint32_t)a) ^ (uint32_t)b;
			c64 = gf2_times(stream_op, ab) ^ (uint32_t)d;
			p += 3 * STREAM;
			n -= 3 * STREAM;
		} while (n >= 3 * STREAM);
	}
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c64 = __builtin_ia32_crc32di(c64, w);
		p += 8;
		n -= 8;
	}
	c = (uint32_t)c64;
	while (n--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}
#endif

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	uint32_t c = ~crc;
#if defined(__x86_64__)
	if (__builtin_cpu_supports("sse4.2"))
		return ~crc_hw(c, buf, len);
#endif
	return ~crc_sw(c, buf, len);
}

/* The shift by zero bytes is linear over GF(2): a 32x32 matrix, column i
 * the image of bit i. */
static uint32_t gf2_times(const uint32_t m[32], uint32_t v)
{
	uint32_t r = 0;
	for (int i = 0; v; i++, v >>= 1)
		if (v & 1)
			r ^= m[i];
	return r;
}

void crc32c_zeros_op(size_t len, uint32_t op[32])
{
	uint32_t base[32], t[32];
	for (int i = 0; i < 32; i++) {
		uint32_t c = 1u << i;    /* one zero byte: eight register steps */
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
		base[i] = c;
		op[i] = 1u << i;
	}
	for (; len; len >>= 1) {   /* op = base^len, base squared each bit */
		if (len & 1) {
			for (int i = 0; i < 32; i++)
				t[i] = gf2_times(base, op[i]);
			memcpy(op, t, sizeof(t));
		}
		for (int i = 0; i < 32; i++)
			t[i] = gf2_times(base, base[i]);
		memcpy(base, t, sizeof(t));
	}
}

uint32_t crc32c_shift(const uint32_t op[32], uint32_t crc)
{
	return gf2_times(op, crc);
}
