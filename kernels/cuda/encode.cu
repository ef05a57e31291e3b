/* encode: uwk_encode_plan and uwk_encode, BF16 in device memory -> the
 * resident bytes res_encode writes, bit for bit, on the GPU.
 * Plan: an exponent histogram (shared-memory counts per block, added into
 * 64-bit global counts), copied back; the host plans with res_plan's own
 * code (res_plan_shape, res_plan_hist), so palette and sizes cannot differ.
 * Encode (R12): the buffer is zeroed (every padding byte and gap), a block
 * per 16-row group counts its patches, a scan gives the group index, the
 * total is checked against the layout, then a block per group writes its
 * planes and its patches in row-major order (a block scan orders them).
 * RAW: a device copy. The CRC-32C of the result is computed on the GPU in
 * 4 KiB chunks and joined on the host (crc32c_shift): copying the tensor
 * back to checksum it would cost more than the encoding. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include <cub/cub.cuh>

#include "kernels/cuda/uwk_int.h"

extern "C" {
#include "common/crc32c.h"
#include "kernels/resident.h"
}

#define ENC_THREADS 256
#define CRC_CHUNK 4096

/* ---- histogram ---- */

__global__ void __launch_bounds__(ENC_THREADS)
enc_hist_kernel(const uint16_t *__restrict__ raw, uint64_t n, unsigned long long *hist)
{
	__shared__ unsigned int h[256];
	for (int i = threadIdx.x; i < 256; i += blockDim.x)
		h[i] = 0;
	__syncthreads();
	const uint64_t step = (uint64_t)gridDim.x * blockDim.x;
	for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
		atomicAdd(&h[(raw[i] >> 7) & 0xff], 1u);
	__syncthreads();
	for (int i = threadIdx.x; i < 256; i += blockDim.x)
		if (h[i])
			atomicAdd(&hist[i], (unsigned long long)h[i]);
}

/* ---- R12 ---- */

struct enc_args {
	const uint16_t *raw;      /* BF16 [rows][cols] */
	uint8_t *dst;             /* the resident bytes, zeroed */
	uint64_t rows, mstride, nstride, mant_off, nib_off, grp_off, patch_off;
	uint32_t cols;
	uint8_t idx[256];         /* res_palette_index: exponent -> index, 0xff patched */
};

/* A group's work is its column pairs in row-major order: slot p is row
 * r0 + p / pairs, columns 2 (p % pairs) and the one after it (if any). One
 * thread a slot; each element is (exponent, sign|mantissa, index). */
struct enc_pair {
	uint64_t r;
	uint32_t c;
	uint8_t ex[2], sm[2], ix[2];
	int n;                    /* columns in the pair (0: past the group) */
};

__device__ __forceinline__ void enc_load(const enc_args &a, const uint8_t *sidx,
					 uint64_t r0, uint64_t slots, uint64_t p, enc_pair &q)
{
	const uint32_t pairs = (a.cols + 1) / 2;
	q.n = 0;
	if (p >= slots)
		return;
	q.r = r0 + p / pairs;
	q.c = 2 * (uint32_t)(p % pairs);
	q.n = q.c + 1 < a.cols ? 2 : 1;
	for (int k = 0; k < 2; k++) {
		const uint16_t v = k < q.n ? a.raw[q.r * a.cols + q.c + k] : 0;
		q.ex[k] = (uint8_t)((v >> 7) & 0xff);
		q.sm[k] = (uint8_t)(((v >> 8) & 0x80) | (v & 0x7f));
		q.ix[k] = k < q.n ? sidx[q.ex[k]] : 0;
	}
}

__device__ __forceinline__ int enc_npatched(const enc_pair &q)
{
	return (q.n > 0 && q.ix[0] == 0xff) + (q.n > 1 && q.ix[1] == 0xff);
}

__device__ __forceinline__ void enc_group(const enc_args &a, uint64_t g, uint64_t *r0,
					  uint64_t *slots)
{
	*r0 = g * RES_PATCH_GROUP;
	const uint64_t r1 = *r0 + RES_PATCH_GROUP < a.rows ? *r0 + RES_PATCH_GROUP : a.rows;
	*slots = (r1 - *r0) * ((a.cols + 1) / 2);
}

__device__ __forceinline__ void enc_index(const enc_args &a, uint8_t *sidx)
{
	for (int i = threadIdx.x; i < 256; i += blockDim.x)
		sidx[i] = a.idx[i];
	__syncthreads();
}

/* cnt[g] = patches of group g; *total += all of them. */
__global__ void __launch_bounds__(ENC_THREADS)
enc_count_kernel(const enc_args a, uint32_t *cnt, unsigned long long *total)
{
	typedef cub::BlockReduce<uint32_t, ENC_THREADS> Reduce;
	__shared__ typename Reduce::TempStorage tmp;
	__shared__ uint8_t sidx[256];
	enc_index(a, sidx);
	uint64_t r0, slots;
	enc_group(a, blockIdx.x, &r0, &slots);
	uint32_t n = 0;
	for (uint64_t p = threadIdx.x; p < slots; p += ENC_THREADS) {
		enc_pair q;
		enc_load(a, sidx, r0, slots, p, q);
		n += enc_npatched(q);
	}
	const uint32_t sum = Reduce(tmp).Sum(n);
	if (threadIdx.x == 0) {
		cnt[blockIdx.x] = sum;
		atomicAdd(total, (unsigned long long)sum);
	}
}

/* The planes and the patches of group blockIdx.x; the group index (the
 * scan's output) says where its patches start. */
__global__ void __launch_bounds__(ENC_THREADS)
enc_write_kernel(const enc_args a)
{
	typedef cub::BlockScan<int, ENC_THREADS> Scan;
	__shared__ typename Scan::TempStorage tmp;
	__shared__ uint8_t sidx[256];
	enc_index(a, sidx);
	uint64_t r0, slots;
	enc_group(a, blockIdx.x, &r0, &slots);
	const uint32_t *pgrp = (const uint32_t *)(a.dst + a.grp_off);
	uint32_t *patch = (uint32_t *)(a.dst + a.patch_off) + pgrp[blockIdx.x];
	for (uint64_t t0 = 0; t0 < slots; t0 += ENC_THREADS) {
		enc_pair q;
		enc_load(a, sidx, r0, slots, t0 + threadIdx.x, q);
		int off, tile;
		Scan(tmp).ExclusiveSum(enc_npatched(q), off, tile);
		if (q.n) {
			uint8_t *m = a.dst + a.mant_off + q.r * a.mstride + q.c;
			uint8_t ix[2] = {0, 0};
			for (int k = 0; k < q.n; k++) {
				m[k] = q.sm[k];
				if (q.ix[k] == 0xff)
					patch[off++] = (uint32_t)(q.r - r0) << 28 |
						       (q.c + k) << 8 | q.ex[k];
				else
					ix[k] = q.ix[k];
			}
			a.dst[a.nib_off + q.r * a.nstride + q.c / 2] = (uint8_t)(ix[0] | ix[1] << 4);
		}
		patch += tile;
		__syncthreads();   /* tmp is reused by the next tile */
	}
}

/* ---- CRC-32C ---- */

/* Chunk 0 is the first n - (chunks - 1) * CRC_CHUNK bytes, every later chunk
 * CRC_CHUNK bytes, so the host joins them all with one shift operator. A
 * thread a chunk, 16 bytes a step by slicing (tab[k]: a byte followed by k
 * zero bytes), bytes one at a time only up to 16-byte alignment and after
 * the last whole word: a byte a step made the CRCs of a bundle's load
 * about as long as its decoding (bench/NOTES.md, 2026-11-29). */
__global__ void __launch_bounds__(ENC_THREADS)
enc_crc_kernel(const uint8_t *__restrict__ p, uint64_t n, uint64_t chunks, uint32_t *out)
{
	__shared__ uint32_t tab[16][256];
	for (int i = threadIdx.x; i < 256; i += blockDim.x) {
		uint32_t c = (uint32_t)i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
		tab[0][i] = c;
	}
	__syncthreads();
	for (int i = threadIdx.x; i < 256; i += blockDim.x) {
		uint32_t c = tab[0][i];
		for (int k = 1; k < 16; k++) {
			c = (c >> 8) ^ tab[0][c & 0xff];
			tab[k][i] = c;
		}
	}
	__syncthreads();
	const uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= chunks)
		return;
	const uint64_t head = n - (chunks - 1) * CRC_CHUNK;
	uint64_t b = i ? head + (i - 1) * CRC_CHUNK : 0;
	const uint64_t end = i ? b + CRC_CHUNK : head;
	uint32_t c = 0xffffffffu;
	for (; b < end && ((uintptr_t)(p + b) & 15); b++)
		c = tab[0][(c ^ p[b]) & 0xff] ^ (c >> 8);
#pragma unroll 4
	for (; b + 16 <= end; b += 16) {
		const uint4 v = *(const uint4 *)(p + b);
		const uint32_t x = v.x ^ c;
		c = tab[15][x & 0xff] ^ tab[14][(x >> 8) & 0xff] ^ tab[13][(x >> 16) & 0xff] ^
		    tab[12][x >> 24] ^ tab[11][v.y & 0xff] ^ tab[10][(v.y >> 8) & 0xff] ^
		    tab[9][(v.y >> 16) & 0xff] ^ tab[8][v.y >> 24] ^ tab[7][v.z & 0xff] ^
		    tab[6][(v.z >> 8) & 0xff] ^ tab[5][(v.z >> 16) & 0xff] ^ tab[4][v.z >> 24] ^
		    tab[3][v.w & 0xff] ^ tab[2][(v.w >> 8) & 0xff] ^ tab[1][(v.w >> 16) & 0xff] ^
		    tab[0][v.w >> 24];
	}
	for (; b < end; b++)
		c = tab[0][(c ^ p[b]) & 0xff] ^ (c >> 8);
	out[i] = ~c;
}

/* ---- host ---- */

static int enc_sms(int *sms, struct uwerr *e)
{
	int dev;
	UWK_CK(e, cudaGetDevice(&dev));
	UWK_CK(e, cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, dev));
	return 0;
}

/* Scratch of one call, stream-ordered; freed on every path. */
struct enc_scratch {
	void *p;
	cudaStream_t s;
};

static int scratch_get(struct enc_scratch *sc, size_t bytes, struct uwerr *e)
{
	UWK_CK(e, cudaMallocAsync(&sc->p, bytes, sc->s));
	return 0;
}

/* Free the scratch and wait for the stream: rc, or the first CUDA error. */
static int scratch_done(struct enc_scratch *sc, int rc, struct uwerr *e)
{
	cudaError_t err = cudaSuccess;
	if (sc->p)
		err = cudaFreeAsync(sc->p, sc->s);
	cudaError_t err2 = cudaStreamSynchronize(sc->s);
	if (rc < 0)
		return rc;
	if (err != cudaSuccess)
		return uwk_cuda_fail(e, err, "cudaFreeAsync", __FILE__, __LINE__);
	if (err2 != cudaSuccess)
		return uwk_cuda_fail(e, err2, "cudaStreamSynchronize", __FILE__, __LINE__);
	return 0;
}

static int hist_run(const uint16_t *raw, uint64_t n, uint64_t hist[256],
		    struct enc_scratch *sc, struct uwerr *e)
{
	int sms, rc;
	if ((rc = enc_sms(&sms, e)) < 0 || (rc = scratch_get(sc, 256 * 8, e)) < 0)
		return rc;
	unsigned long long *dh = (unsigned long long *)sc->p;
	UWK_CK(e, cudaMemsetAsync(dh, 0, 256 * 8, sc->s));
	uint64_t blocks = (n + ENC_THREADS - 1) / ENC_THREADS;
	if (blocks > (uint64_t)sms * 8)
		blocks = (uint64_t)sms * 8;
	enc_hist_kernel<<<(unsigned)blocks, ENC_THREADS, 0, sc->s>>>(raw, n, dh);
	UWK_CK(e, cudaGetLastError());
	UWK_CK(e, cudaMemcpyAsync(hist, dh, 256 * 8, cudaMemcpyDeviceToHost, sc->s));
	UWK_CK(e, cudaStreamSynchronize(sc->s));
	return 0;
}

extern "C" int uwk_encode_plan(int dtype, int ndim, const uint64_t *shape,
			       const void *dev_raw, size_t raw_bytes, struct uw_layout *l,
			       cudaStream_t s, struct uwerr *e)
{
	int rc = res_plan_shape(dtype, ndim, shape, raw_bytes, l, e);
	if (rc <= 0)
		return rc < 0 ? uwerr_prefix(e, "uwk_encode_plan") : 0;
	if (uwk_check_ptr(dev_raw, 2, "raw", e) < 0)
		return uwerr_prefix(e, "uwk_encode_plan");
	uint64_t hist[256];
	struct enc_scratch sc = {NULL, s};
	rc = scratch_done(&sc, hist_run((const uint16_t *)dev_raw, raw_bytes / 2, hist, &sc, e), e);
	if (rc < 0)
		return uwerr_prefix(e, "uwk_encode_plan");
	res_plan_hist(l, hist, RES_PREFER_SPEED);
	return 0;
}

/* Counts, scan, check, write. Scratch: cnt[groups], the total, cub's. */
static int r12_run(const struct uw_layout *l, const void *raw, void *dst,
		   struct enc_scratch *sc, struct uwerr *e)
{
	const uint64_t groups = (l->rows + RES_PATCH_GROUP - 1) / RES_PATCH_GROUP;
	if (groups > INT32_MAX)
		return uwerr_set(e, EOVERFLOW, "%llu rows", (unsigned long long)l->rows);
	struct enc_args a;
	a.raw = (const uint16_t *)raw;
	a.dst = (uint8_t *)dst;
	a.rows = l->rows;
	a.cols = (uint32_t)l->cols;   /* res_validate: < 2^20 */
	a.mstride = l->mant_stride;
	a.nstride = l->nib_stride;
	a.mant_off = l->mant_off;
	a.nib_off = l->nib_off;
	a.grp_off = l->patch_grp_off;
	a.patch_off = l->patch_off;
	res_palette_index(l->palette, a.idx);

	uint32_t *pgrp = (uint32_t *)(a.dst + a.grp_off);
	size_t cub_bytes = 0;
	UWK_CK(e, cub::DeviceScan::InclusiveSum(NULL, cub_bytes, (uint32_t *)NULL, pgrp + 1,
						(int)groups, sc->s));
	const size_t cnt_bytes = (groups * 4 + 15) / 16 * 16;
	int rc = scratch_get(sc, 16 + cnt_bytes + cub_bytes, e);
	if (rc < 0)
		return rc;
	unsigned long long *dtotal = (unsigned long long *)sc->p;
	uint32_t *cnt = (uint32_t *)((char *)sc->p + 16);
	void *cub_tmp = (char *)sc->p + 16 + cnt_bytes;

	UWK_CK(e, cudaMemsetAsync(dst, 0, l->nbytes, sc->s));
	UWK_CK(e, cudaMemsetAsync(dtotal, 0, 8, sc->s));
	enc_count_kernel<<<(unsigned)groups, ENC_THREADS, 0, sc->s>>>(a, cnt, dtotal);
	UWK_CK(e, cudaGetLastError());
	UWK_CK(e, cub::DeviceScan::InclusiveSum(cub_tmp, cub_bytes, cnt, pgrp + 1,
						(int)groups, sc->s));
	unsigned long long total = 0;
	UWK_CK(e, cudaMemcpyAsync(&total, dtotal, 8, cudaMemcpyDeviceToHost, sc->s));
	UWK_CK(e, cudaStreamSynchronize(sc->s));
	/* the write kernel trusts the index: never past npatch */
	if (total != l->npatch)
		return uwerr_set(e, EINVAL, "data has %llu exponents outside the palette, the layout %llu",
				 total, (unsigned long long)l->npatch);
	enc_write_kernel<<<(unsigned)groups, ENC_THREADS, 0, sc->s>>>(a);
	UWK_CK(e, cudaGetLastError());
	return 0;
}

/* CRC-32C of n device bytes. Scratch: the chunks' CRCs. */
static int crc_run(const void *p, uint64_t n, uint32_t *crc, struct enc_scratch *sc,
		   struct uwerr *e)
{
	*crc = 0;
	if (!n)
		return 0;
	const uint64_t chunks = (n + CRC_CHUNK - 1) / CRC_CHUNK;
	uint32_t *h = (uint32_t *)malloc(chunks * 4);
	if (!h)
		return uwerr_set(e, ENOMEM, "%llu chunk checksums", (unsigned long long)chunks);
	int rc = scratch_get(sc, chunks * 4, e);
	if (rc == 0) {
		const uint64_t blocks = (chunks + ENC_THREADS - 1) / ENC_THREADS;
		enc_crc_kernel<<<(unsigned)blocks, ENC_THREADS, 0, sc->s>>>(
			(const uint8_t *)p, n, chunks, (uint32_t *)sc->p);
		cudaError_t err = cudaGetLastError();
		if (err == cudaSuccess)
			err = cudaMemcpyAsync(h, sc->p, chunks * 4, cudaMemcpyDeviceToHost, sc->s);
		if (err == cudaSuccess)
			err = cudaStreamSynchronize(sc->s);
		if (err != cudaSuccess)
			rc = uwk_cuda_fail(e, err, "crc32c kernel", __FILE__, __LINE__);
	}
	if (rc == 0) {
		/* the shift is linear: one table per byte of the CRC */
		uint32_t op[32], t[4][256], c = h[0];
		crc32c_zeros_op(CRC_CHUNK, op);
		for (int k = 0; k < 4; k++)
			for (uint32_t b = 0; b < 256; b++)
				t[k][b] = crc32c_shift(op, b << (8 * k));
		for (uint64_t i = 1; i < chunks; i++)
			c = t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^
			    t[3][c >> 24] ^ h[i];
		*crc = c;
	}
	free(h);
	return rc;
}

extern "C" int uwk_encode(struct uw_layout *l, const void *dev_raw, size_t raw_bytes,
			  void *dev_dst, cudaStream_t s, struct uwerr *e)
{
	if (!l)
		return uwerr_set(e, EINVAL, "uwk_encode: layout NULL");
	if (res_validate(l, l->nbytes, e) < 0)
		return uwerr_prefix(e, "uwk_encode");
	if (l->format == UW_FORMAT_R11)     /* r12_run would write R12's planes at R11's offsets */
		return uwerr_set(e, EINVAL, "uwk_encode: an R11 layout (R11 is encoded on the CPU: res_encode)");
	if (l->format == UW_FORMAT_RAW) {
		if (raw_bytes != l->nbytes)
			return uwerr_set(e, EINVAL, "uwk_encode: raw layout of %llu bytes for %zu bytes of data",
					 (unsigned long long)l->nbytes, raw_bytes);
	} else if (res_layout_check(l, raw_bytes, e) < 0) {
		return uwerr_prefix(e, "uwk_encode");
	}
	if (l->nbytes && (uwk_check_ptr(dev_raw, l->format == UW_FORMAT_RAW ? 1 : 2, "raw", e) < 0 ||
			  uwk_check_ptr(dev_dst, l->format == UW_FORMAT_RAW ? 1 : RES_ALIGN,
					"destination", e) < 0))
		return uwerr_prefix(e, "uwk_encode");

	struct enc_scratch sc = {NULL, s};
	int rc = 0;
	if (l->format == UW_FORMAT_RAW) {
		cudaError_t err = l->nbytes ? cudaMemcpyAsync(dev_dst, dev_raw, l->nbytes,
							      cudaMemcpyDeviceToDevice, s)
					    : cudaSuccess;
		if (err != cudaSuccess)
			rc = uwk_cuda_fail(e, err, "cudaMemcpyAsync", __FILE__, __LINE__);
	} else {
		rc = r12_run(l, dev_raw, dev_dst, &sc, e);
	}
	rc = scratch_done(&sc, rc, e);
	uint32_t crc = 0;
	if (rc == 0) {
		sc.p = NULL;
		rc = scratch_done(&sc, crc_run(dev_dst, l->nbytes, &crc, &sc, e), e);
	}
	if (rc < 0)
		return uwerr_prefix(e, "uwk_encode");
	l->crc32c = crc;
	return 0;
}

extern "C" int uwk_crc32c(const void *dev, uint64_t n, uint32_t *crc, cudaStream_t s,
			  struct uwerr *e)
{
	struct enc_scratch sc = {NULL, s};
	return scratch_done(&sc, crc_run(dev, n, crc, &sc, e), e);
}
