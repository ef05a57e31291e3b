/* decode: uwk_decode, resident tensor -> BF16 in the caller's device buffer.
 * R12: one kernel rebuilds every element with its palette exponent (32
 * columns a thread, 16-byte loads and stores), then a second, stream-ordered
 * kernel writes the patched exponents over them. RAW: a device copy. */
#include <errno.h>
#include <stdint.h>

#include "kernels/cuda/uwk_int.h"

extern "C" {
#include "kernels/resident.h"
}

#define DECODE_THREADS 256

/* 32 columns of row r from column c, decoded into out. VEC: cols % 8 == 0
 * and out 16-byte aligned, so every 8 columns are one aligned 16-byte store. */
template <bool VEC>
__device__ __forceinline__ void store32(const uint32_t *tab, const r12_raw32 &raw,
					uint16_t *__restrict__ out, uint32_t r, uint32_t c,
					uint32_t cols)
{
	uint32_t w[16];
	r12_decode32(tab, raw.sm, raw.ix, w);
	uint16_t *o = out + (uint64_t)r * cols + c;
	const uint32_t n = min(32u, cols - c);
	if (VEC) {
#pragma unroll
		for (int k = 0; k < 4; k++)
			if (8 * k < n)
				*(uint4 *)(o + 8 * k) = make_uint4(w[4 * k], w[4 * k + 1], w[4 * k + 2],
								   w[4 * k + 3]);
	} else {
#pragma unroll
		for (int p = 0; p < 16; p++) {
			if (2 * p < n)
				o[2 * p] = (uint16_t)w[p];
			if (2 * p + 1 < n)
				o[2 * p + 1] = (uint16_t)(w[p] >> 16);
		}
	}
}

/* Grid-stride over 32-column units, two at a time so that each thread has
 * both units' loads in flight before it decodes. ALN: r12_load32. */
template <bool VEC, bool ALN>
__global__ void __launch_bounds__(DECODE_THREADS)
r12_decode_kernel(const r12_args a, uint16_t *__restrict__ out)
{
	__shared__ uint32_t tab[256];
	r12_table(tab, a);
	__syncthreads();
	const uint32_t upr = (a.cols + 31) / 32;           /* units per row */
	const uint64_t total = (uint64_t)a.rows * upr;
	const uint64_t step = (uint64_t)gridDim.x * blockDim.x;
	uint64_t u = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
	uint32_t r = (uint32_t)(u / upr), cu = (uint32_t)(u % upr);
	const uint32_t sr = (uint32_t)(step / upr), sc = (uint32_t)(step % upr);
	auto advance = [&](uint32_t &rr, uint32_t &cc) {
		rr += sr;
		cc += sc;
		if (cc >= upr) {
			cc -= upr;
			rr++;
		}
	};
	for (; u < total; u += 2 * step) {
		uint32_t r2 = r, cu2 = cu;
		advance(r2, cu2);
		const bool two = u + step < total;
		r12_raw32 ra, rb;
		r12_load32<ALN>(ra, a.mant + r * a.mstride, a.nib + r * a.nstride, cu * 32, a.cols, true);
		r12_load32<ALN>(rb, a.mant + (two ? r2 : r) * a.mstride, a.nib + (two ? r2 : r) * a.nstride,
			   cu2 * 32, a.cols, two);
		store32<VEC>(tab, ra, out, r, cu * 32, a.cols);
		if (two)
			store32<VEC>(tab, rb, out, r2, cu2 * 32, a.cols);
		r = r2;
		cu = cu2;
		advance(r, cu);
	}
}

/* One warp a group of 16 rows: the group's patches set the exponent bits of
 * their element. Out-of-range entries (a corrupt buffer) are skipped, never
 * written. */
__global__ void __launch_bounds__(DECODE_THREADS)
r12_patch_kernel(const r12_args a, uint16_t *__restrict__ out)
{
	const uint32_t g = (blockIdx.x * blockDim.x + threadIdx.x) / 32, lane = threadIdx.x & 31;
	if (g >= (a.rows + 15) / 16)
		return;
	const uint32_t p1 = min(a.pgrp[g + 1], a.npatch);
	for (uint32_t p = a.pgrp[g] + lane; p < p1; p += 32) {
		const uint32_t v = a.patch[p], r = 16 * g + (v >> 28), c = (v >> 8) & 0xfffff;
		if (r < a.rows && c < a.cols) {
			uint16_t *o = out + (uint64_t)r * a.cols + c;
			*o = (uint16_t)((*o & 0x807f) | (v & 0xff) << 7);
		}
	}
}

int uwk_decode_r12(const struct r12_args *a, uint16_t *out, cudaStream_t s,
		   struct uwerr *e)
{
	int dev, sms;
	UWK_CK(e, cudaGetDevice(&dev));
	UWK_CK(e, cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
	const uint64_t units = (uint64_t)a->rows * ((a->cols + 31) / 32);
	uint64_t blocks = (units + DECODE_THREADS - 1) / DECODE_THREADS;
	if (blocks > (uint64_t)sms * 16)
		blocks = (uint64_t)sms * 16;
	const bool vec = a->cols % 8 == 0 && (uintptr_t)out % 16 == 0;
	auto fn = vec ? (a->aligned ? r12_decode_kernel<true, true> : r12_decode_kernel<true, false>)
		      : (a->aligned ? r12_decode_kernel<false, true> : r12_decode_kernel<false, false>);
	fn<<<(unsigned)blocks, DECODE_THREADS, 0, s>>>(*a, out);
	UWK_CK(e, cudaGetLastError());
	if (a->npatch) {
		const uint64_t groups = ((uint64_t)a->rows + 15) / 16;
		const uint64_t pblocks = (groups * 32 + DECODE_THREADS - 1) / DECODE_THREADS;
		r12_patch_kernel<<<(unsigned)pblocks, DECODE_THREADS, 0, s>>>(*a, out);
		UWK_CK(e, cudaGetLastError());
	}
	return 0;
}

extern "C" int uwk_decode(const struct uw_layout *l, const void *dev_base, void *dev_out,
			  size_t out_bytes, cudaStream_t s, struct uwerr *e)
{
	if (!l)
		return uwerr_set(e, EINVAL, "uwk_decode: layout NULL");
	if (l->format == UW_FORMAT_RAW) {
		if (res_validate(l, l->nbytes, e) < 0)
			return uwerr_prefix(e, "uwk_decode");
		if (out_bytes < l->nbytes)
			return uwerr_set(e, EINVAL, "uwk_decode: %zu-byte buffer for %llu bytes",
					 out_bytes, (unsigned long long)l->nbytes);
		if (!l->nbytes)
			return 0;
		if (uwk_check_ptr(dev_base, RES_ALIGN, "tensor base", e) < 0 ||
		    uwk_check_ptr(dev_out, 1, "output", e) < 0)
			return uwerr_prefix(e, "uwk_decode");
		UWK_CK(e, cudaMemcpyAsync(dev_out, dev_base, l->nbytes, cudaMemcpyDeviceToDevice, s));
		return 0;
	}
	struct r12_args a;
	if (uwk_args_make(l, dev_base, &a, e) < 0 || uwk_check_ptr(dev_out, 2, "output", e) < 0)
		return uwerr_prefix(e, "uwk_decode");
	const uint64_t raw = 2 * l->rows * l->cols;   /* validated: no overflow */
	if (out_bytes < raw)
		return uwerr_set(e, EINVAL, "uwk_decode: %zu-byte buffer for %llu bytes of %llux%llu BF16",
				 out_bytes, (unsigned long long)raw, (unsigned long long)l->rows,
				 (unsigned long long)l->cols);
	if (uwk_decode_r12(&a, (uint16_t *)dev_out, s, e) < 0)
		return uwerr_prefix(e, "uwk_decode");
	return 0;
}
