/* exphuf: uwk_exphuf_decode, a bundle's REST_EXPHUF payload -> BF16 on the
 * GPU, so a .uwb bundle crosses PCIe at its stored size (2/3 of the raw
 * bytes) and the CPU only checks its tables (rest_exphuf_parse).
 *
 * A warp decodes one 65536-element chunk, whose bitstream starts on a byte
 * boundary of its own. The format marks no finer points, but Huffman codes
 * resynchronise within a few symbols: lanes 0..30 each take an equal span
 * of the chunk's bits (all but its last byte, so padding is never taken for
 * a symbol) and decode from its first bit, a guess; then each lane decodes
 * again from where the lane before it ended, until no lane's end moves.
 * That fixed point is the sequential decode's: lane 0 starts at bit 0, and
 * each lane then starts on a true code boundary. Usually one round after
 * the guess suffices; at most 31 can be needed. Counts summed give each
 * lane's place, lane 31 decodes what is left after lane 30, and a last pass
 * writes. One thread per chunk, as before, took one chunk's whole serial
 * decode, 18-23 ms a tensor (bench/NOTES.md, 2026-11-29). */
#include <errno.h>
#include <stdint.h>

#include "kernels/cuda/uwk_int.h"

extern "C" {
#include "format/restcodec.h"
}

#define EXPHUF_WARPS 4         /* chunks a block: they share the code table */
#define FULL 0xffffffffu

/* MSB-first bits of one chunk's bitstream, read 16 aligned bytes at a time,
 * the next 16 in flight while the current ones are used. Bytes outside the
 * stream inside its first and last 16-byte words are read (the caller's
 * buffer is padded to 16 bytes); past the last word, zeros. */
struct bitreader {
	const uint4 *w;            /* the aligned word holding the stream's first byte */
	uint32_t nw, j;            /* words holding stream bytes; the next to load */
	uint4 cur, nxt;
	int taken;                 /* 32-bit parts of cur already taken */
	uint64_t acc;              /* bits left-aligned */
	int have;                  /* valid bits in acc */
};

static __device__ __forceinline__ uint4 br_load(const struct bitreader *r, uint32_t j)
{
	return j < r->nw ? __ldg(r->w + j) : make_uint4(0, 0, 0, 0);
}

/* The next 32 bits of the stream, the first in the high bit. */
static __device__ __forceinline__ uint32_t br_take(struct bitreader *r)
{
	uint32_t v = __byte_perm(r->cur.x, 0, 0x0123);
	r->cur.x = r->cur.y;
	r->cur.y = r->cur.z;
	r->cur.z = r->cur.w;
	if (++r->taken == 4) {
		r->cur = r->nxt;
		r->nxt = br_load(r, r->j++);
		r->taken = 0;
	}
	return v;
}

/* Ready to decode from bit pos of the stream at b (len bytes): at least
 * 33 bits in acc. */
static __device__ __forceinline__ void br_init(struct bitreader *r, const uint8_t *b,
					       uint32_t len, uint32_t pos)
{
	const uint8_t *w0 = (const uint8_t *)((uintptr_t)b & ~(uintptr_t)15);
	r->w = (const uint4 *)w0;
	r->nw = len ? (uint32_t)((b + len - 1 - w0) / 16 + 1) : 0;
	const uint32_t bit = (uint32_t)(b - w0) * 8 + pos;   /* from w0 */
	r->cur = br_load(r, bit / 128);
	r->nxt = br_load(r, bit / 128 + 1);
	r->j = bit / 128 + 2;
	r->taken = 0;
	for (uint32_t k = 0; k < bit % 128 / 32; k++)
		br_take(r);
	const int skip = (int)(bit % 32);
	r->acc = (uint64_t)br_take(r) << (32 + skip);
	r->have = 32 - skip;
	r->acc |= (uint64_t)br_take(r) << (32 - r->have);
	r->have += 32;
}

/* One symbol's table entry, its bits consumed; then at least 33 bits again
 * (a code is at most 12). */
static __device__ __forceinline__ unsigned br_sym(struct bitreader *r, const uint16_t *dec)
{
	const unsigned ent = dec[r->acc >> (64 - HUF_MAX_LEN)];
	const unsigned len = ent >> 8;
	r->acc <<= len;
	r->have -= (int)len;
	if (r->have <= 32) {
		r->acc |= (uint64_t)br_take(r) << (32 - r->have);
		r->have += 32;
	}
	return ent;
}

/* Decode from bit pos while symbols start before end: where the last one
 * ended, and how many. */
static __device__ uint32_t span(const uint8_t *b, uint32_t len, const uint16_t *dec,
				uint32_t pos, uint32_t end, uint32_t *count)
{
	uint32_t k = 0;
	if (pos < end) {
		struct bitreader r;
		br_init(&r, b, len, pos);
		do {
			pos += br_sym(&r, dec) >> 8;
			k++;
		} while (pos < end);
	}
	*count = k;
	return pos;
}

static __device__ __forceinline__ uint16_t bf16(unsigned ent, unsigned sm)
{
	return (uint16_t)((sm & 0x80u) << 8 | (ent & 0xffu) << 7 | (sm & 0x7fu));
}

/* Decode count symbols from bit pos into out[i..], joined with sm[i..]:
 * four at a time once i is a multiple of 4 (out 8-, sm 4-byte aligned
 * there). Returns where the last symbol ended. */
static __device__ uint32_t emit(const uint8_t *b, uint32_t len, const uint16_t *dec,
				uint32_t pos, uint32_t i, uint32_t count, const uint8_t *sm,
				uint16_t *out)
{
	if (!count)
		return pos;
	struct bitreader r;
	br_init(&r, b, len, pos);
	const uint32_t end = i + count;
	for (; i < end && (i & 3); i++) {
		const unsigned ent = br_sym(&r, dec);
		pos += ent >> 8;
		out[i] = bf16(ent, sm[i]);
	}
	for (; i + 4 <= end; i += 4) {
		const uint32_t s4 = *(const uint32_t *)(sm + i);
		uint32_t lo = 0, hi = 0;
#pragma unroll
		for (int q = 0; q < 4; q++) {
			const unsigned ent = br_sym(&r, dec);
			pos += ent >> 8;
			const uint32_t v = bf16(ent, s4 >> (8 * q) & 0xffu);
			if (q < 2)
				lo |= v << (16 * q);
			else
				hi |= v << (16 * (q - 2));
		}
		*(uint2 *)(out + i) = make_uint2(lo, hi);
	}
	for (; i < end; i++) {
		const unsigned ent = br_sym(&r, dec);
		pos += ent >> 8;
		out[i] = bf16(ent, sm[i]);
	}
	return pos;
}

__global__ void __launch_bounds__(EXPHUF_WARPS * 32)
exphuf_kernel(const uint8_t *__restrict__ sm, const uint8_t *__restrict__ bits,
	      const uint64_t *__restrict__ start, const uint16_t *__restrict__ gdec, uint64_t n,
	      uint64_t nchunks, uint16_t *__restrict__ out, unsigned long long *bad)
{
	__shared__ uint16_t dec[HUF_TABLE_SIZE];
	for (int i = threadIdx.x; i < HUF_TABLE_SIZE; i += blockDim.x)
		dec[i] = gdec[i];
	__syncthreads();
	const uint64_t c = (uint64_t)blockIdx.x * EXPHUF_WARPS + threadIdx.x / 32;
	if (c >= nchunks)
		return;   /* the whole warp */
	const uint32_t k = threadIdx.x % 32;
	const uint64_t first = c * EXPHUF_CHUNK_ELEMS;
	const uint32_t cnt = (uint32_t)(n - first < EXPHUF_CHUNK_ELEMS ? n - first : EXPHUF_CHUNK_ELEMS);
	const uint64_t blen = start[c + 1] - start[c];
	/* more than 12 bits an element cannot decode exactly (and keeps bit
	 * positions in 32 bits) */
	if (start[c + 1] < start[c] || blen > (12ull * cnt + 7) / 8) {
		if (k == 0)
			atomicMin(bad, (unsigned long long)c);
		return;
	}
	const uint8_t *b = bits + start[c];
	const uint32_t len = (uint32_t)blen;
	uint32_t pos, count, place;
	if (!(dec[0] >> 8)) {
		/* one symbol, of no bits: nothing to synchronise */
		pos = 0;
		place = (uint32_t)((uint64_t)cnt * k / 32);
		count = (uint32_t)((uint64_t)cnt * (k + 1) / 32) - place;
	} else {
		/* spans of whole bytes: a code of fixed length starts on them */
		const uint32_t bp = len > 1 ? 8 * (len - 1) : 0, per = ((bp + 30) / 31 + 7) & ~7u;
		const uint32_t end = k < 31 ? min((k + 1) * per, bp) : 0;
		pos = k < 31 ? min(k * per, bp) : bp;
		uint32_t last = span(b, len, dec, pos, end, &count);
		for (;;) {
			uint32_t from = __shfl_up_sync(FULL, last, 1);
			if (k == 0)
				from = 0;
			uint32_t c2;
			const uint32_t e2 = span(b, len, dec, from, end, &c2);
			const int same = e2 == last;
			pos = from;
			last = e2;
			count = c2;
			if (__all_sync(FULL, same))
				break;
		}
		/* lane 31: whatever lanes 0..30 left */
		place = count;
		for (int d = 1; d < 32; d *= 2) {
			const uint32_t v = __shfl_up_sync(FULL, place, d);
			if ((int)k >= d)
				place += v;
		}
		const uint32_t before31 = __shfl_sync(FULL, place, 30);
		if (before31 > cnt) {
			if (k == 0)
				atomicMin(bad, (unsigned long long)c);
			return;   /* the whole warp: nothing written past the chunk */
		}
		place -= count;
		if (k == 31)
			count = cnt - before31;
	}
	const uint32_t stop = emit(b, len, dec, pos, place, count, sm + first, out + first);
	/* lane 31 decoded the last symbol: exactly the stream's bytes, and
	 * zero padding, as the CPU decoder demands */
	if (k == 31) {
		const unsigned tail = stop & 7;
		if ((stop + 7) / 8 != len || (tail && (b[len - 1] & (0xffu >> tail))))
			atomicMin(bad, (unsigned long long)c);
	}
}

extern "C" int uwk_exphuf_decode(const uint8_t *dev_sm, const uint8_t *dev_bits,
				 const uint64_t *dev_start, const uint16_t *dev_dec, uint64_t n,
				 void *dev_out, cudaStream_t s, struct uwerr *e)
{
	if (!n)
		return 0;
	if (uwk_check_ptr(dev_out, 8, "output", e) < 0 || uwk_check_ptr(dev_sm, 4, "sign|mantissa bytes", e) < 0 ||
	    uwk_check_ptr(dev_start, 8, "chunk starts", e) < 0 ||
	    uwk_check_ptr(dev_dec, 2, "code table", e) < 0)
		return uwerr_prefix(e, "uwk_exphuf_decode");
	const uint64_t nchunks = (n + EXPHUF_CHUNK_ELEMS - 1) / EXPHUF_CHUNK_ELEMS;
	unsigned long long *bad = NULL, found = ~0ull;
	UWK_CK(e, cudaMallocAsync((void **)&bad, sizeof(*bad), s));
	cudaError_t err = cudaMemcpyAsync(bad, &found, sizeof(found), cudaMemcpyHostToDevice, s);
	if (err == cudaSuccess) {
		const uint64_t blocks = (nchunks + EXPHUF_WARPS - 1) / EXPHUF_WARPS;
		exphuf_kernel<<<(unsigned)blocks, EXPHUF_WARPS * 32, 0, s>>>(
			dev_sm, dev_bits, dev_start, dev_dec, n, nchunks, (uint16_t *)dev_out, bad);
		err = cudaGetLastError();
	}
	if (err == cudaSuccess)
		err = cudaMemcpyAsync(&found, bad, sizeof(found), cudaMemcpyDeviceToHost, s);
	cudaError_t err2 = cudaFreeAsync(bad, s);
	if (err == cudaSuccess)
		err = err2;
	if (err == cudaSuccess)
		err = cudaStreamSynchronize(s);
	if (err != cudaSuccess)
		return uwk_cuda_fail(e, err, "exphuf kernel", __FILE__, __LINE__);
	if (found != ~0ull)
		return uwerr_set(e, EBADMSG, "exphuf chunk %llu: its bitstream does not decode to "
				 "exactly its bytes with zero padding", found);
	return 0;
}
