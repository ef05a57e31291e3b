/* exphuf: uwk_exphuf_decode, a bundle's REST_EXPHUF payload -> BF16 on the
 * GPU, so a .uwb bundle crosses PCIe at its stored size (2/3 of the raw
 * bytes) and the CPU only checks its tables (rest_exphuf_parse).
 * Each 65536-element chunk's bitstream starts on a byte boundary of its
 * own, so a thread decodes one chunk: a 64-bit bit buffer refilled four
 * bytes at a time, one lookup in the code's 4096-entry table (shared memory) per
 * element, four elements stored at once. A chunk's latency (about a
 * millisecond) bounds a small tensor; a large one has chunks enough to keep
 * the decode well ahead of the PCIe copy that feeds it. */
#include <errno.h>
#include <stdint.h>

#include "kernels/cuda/uwk_int.h"

extern "C" {
#include "format/restcodec.h"
}

#define EXPHUF_THREADS 32      /* one warp a block: chunks spread over the SMs */

struct bitreader {
	const uint8_t *b;
	uint64_t len, pos;         /* bytes of the stream; the next to take in */
	uint64_t acc;              /* bits left-aligned */
	int have;                  /* valid bits in acc */
};

/* At least 33 bits in acc (a code is at most 12): below that, the next
 * four bytes at once, loads independent of each other, so a refill costs
 * one load's latency every ten or so elements. Zeros past the stream's end
 * (the count check after the chunk catches a stream that ran out). */
static __device__ __forceinline__ void br_fill(struct bitreader *r)
{
	if (r->have > 32)
		return;
	uint32_t w = 0;
#pragma unroll
	for (int k = 0; k < 4; k++) {
		const uint64_t p = r->pos + (uint64_t)k;
		w |= (uint32_t)(p < r->len ? r->b[p] : 0) << (24 - 8 * k);
	}
	r->acc |= (uint64_t)w << (32 - r->have);
	r->pos += 4;
	r->have += 32;
}

/* Element i of the chunk: exponent from the code, sign|mantissa byte sm. */
static __device__ __forceinline__ uint64_t one(struct bitreader *r, const uint16_t *dec,
					       uint8_t sm, uint64_t *bits)
{
	br_fill(r);
	unsigned ent = dec[r->acc >> (64 - HUF_MAX_LEN)];
	unsigned len = ent >> 8;
	r->acc <<= len;
	r->have -= (int)len;
	*bits += len;
	return (uint64_t)((sm & 0x80u) << 8 | (ent & 0xffu) << 7 | (sm & 0x7fu));
}

__global__ void __launch_bounds__(EXPHUF_THREADS)
exphuf_kernel(const uint8_t *__restrict__ sm, const uint8_t *__restrict__ bits,
	      const uint64_t *__restrict__ start, const uint16_t *__restrict__ gdec, uint64_t n,
	      uint64_t nchunks, uint16_t *__restrict__ out, unsigned long long *bad)
{
	__shared__ uint16_t dec[HUF_TABLE_SIZE];
	for (int i = threadIdx.x; i < HUF_TABLE_SIZE; i += blockDim.x)
		dec[i] = gdec[i];
	__syncthreads();
	const uint64_t c = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (c >= nchunks)
		return;
	const uint64_t first = c * EXPHUF_CHUNK_ELEMS;
	const uint64_t cnt = n - first < EXPHUF_CHUNK_ELEMS ? n - first : EXPHUF_CHUNK_ELEMS;
	struct bitreader r = {bits + start[c], start[c + 1] - start[c], 0, 0, 0};
	const uint8_t *s = sm + first;
	uint16_t *o = out + first;
	uint64_t used = 0, i = 0;
	/* out is 8-byte aligned and chunks start at multiples of 4 elements */
	for (; i + 4 <= cnt; i += 4) {
		uint64_t v = one(&r, dec, s[i], &used);
		v |= one(&r, dec, s[i + 1], &used) << 16;
		v |= one(&r, dec, s[i + 2], &used) << 32;
		v |= one(&r, dec, s[i + 3], &used) << 48;
		*(uint64_t *)(o + i) = v;
	}
	for (; i < cnt; i++)
		o[i] = (uint16_t)one(&r, dec, s[i], &used);
	/* exactly its bytes, and zero padding: what the CPU decoder demands */
	const unsigned tail = (unsigned)(used & 7);
	if ((used + 7) / 8 != r.len ||
	    (tail && (r.b[r.len - 1] & (0xffu >> tail))))
		atomicMin(bad, (unsigned long long)c);
}

extern "C" int uwk_exphuf_decode(const uint8_t *dev_sm, const uint8_t *dev_bits,
				 const uint64_t *dev_start, const uint16_t *dev_dec, uint64_t n,
				 void *dev_out, cudaStream_t s, struct uwerr *e)
{
	if (!n)
		return 0;
	if (uwk_check_ptr(dev_out, 8, "output", e) < 0 || uwk_check_ptr(dev_start, 8, "chunk starts", e) < 0 ||
	    uwk_check_ptr(dev_dec, 2, "code table", e) < 0)
		return uwerr_prefix(e, "uwk_exphuf_decode");
	const uint64_t nchunks = (n + EXPHUF_CHUNK_ELEMS - 1) / EXPHUF_CHUNK_ELEMS;
	unsigned long long *bad = NULL, found = ~0ull;
	UWK_CK(e, cudaMallocAsync((void **)&bad, sizeof(*bad), s));
	cudaError_t err = cudaMemcpyAsync(bad, &found, sizeof(found), cudaMemcpyHostToDevice, s);
	if (err == cudaSuccess) {
		const uint64_t blocks = (nchunks + EXPHUF_THREADS - 1) / EXPHUF_THREADS;
		exphuf_kernel<<<(unsigned)blocks, EXPHUF_THREADS, 0, s>>>(
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
