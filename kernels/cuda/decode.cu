/* decode: uwk_decode, resident tensor -> BF16 in the caller's device buffer.
 * R11: r11.cu. R12: one kernel rebuilds every element with its palette exponent (a warp
 * 512 columns of a row at a time, whole-sector loads and stores), then a
 * second, stream-ordered kernel writes the patched exponents over them.
 * RAW: a device copy. */
#include <errno.h>
#include <stdint.h>

#include "kernels/cuda/uwk_int.h"

extern "C" {
#include "kernels/resident.h"
}

#define DECODE_THREADS 256

#define DECODE_UNITS 4     /* units a warp has in flight */

/* A warp decodes units of 512 columns of one row: lane l takes columns
 * 8l..8l+7 and 256+8l..256+8l+7, so that every load and store instruction
 * of the warp covers one contiguous span (256 bytes of the sign|mantissa
 * plane, 128 of the index plane, 512 of output) in whole sectors. Each warp
 * takes a contiguous range of units and keeps DECODE_UNITS of them in flight.
 * LD8: cols % 8 == 0 and strides that keep 8-byte (4-byte) loads aligned,
 * else byte loads. ST16: cols % 8 == 0 and out 16-byte aligned, so 8
 * columns are one 16-byte store, else 2-byte stores. */
template <bool LD8, bool ST16>
__global__ void __launch_bounds__(DECODE_THREADS)
r12_decode_kernel(const r12_args a, uint16_t *__restrict__ out)
{
	__shared__ __align__(16) uint8_t rtab[R12_LANE_TAB];
	r12_table(rtab, a.pal);
	__syncthreads();
	const uint32_t lane = threadIdx.x & 31, upr = (a.cols + 511) / 512;
	const uint8_t *const lt = r12_lane_tab(rtab, lane);
	const uint64_t warp = ((uint64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
	const uint64_t nwarps = (uint64_t)gridDim.x * blockDim.x / 32;
	const uint64_t total = (uint64_t)a.rows * upr, per = (total + nwarps - 1) / nwarps;
	uint64_t u = warp * per;
	const uint64_t end = min(total, u + per);
	if (u >= end)
		return;
	uint32_t r = (uint32_t)(u / upr), cu = (uint32_t)(u % upr);
	for (; u < end; u += DECODE_UNITS) {
		uint32_t sm[DECODE_UNITS][2][2], ix[DECODE_UNITS][2], row[DECODE_UNITS];
		uint32_t col[DECODE_UNITS][2];
#pragma unroll
		for (int i = 0; i < DECODE_UNITS; i++) {
			const bool ok = u + i < end;
			row[i] = r;
#pragma unroll
			for (int h = 0; h < 2; h++) {
				const uint32_t c = cu * 512 + 256 * h + 8 * lane;
				col[i][h] = ok ? c : UINT32_MAX;
				const uint8_t *m = a.mant + (uint64_t)r * a.mstride + c;
				const uint8_t *n = a.nib + (uint64_t)r * a.nstride + c / 2;
				if (LD8) {
					uint2 v = make_uint2(0, 0);
					uint32_t q = 0;
					if (ok && c < a.cols) {
						v = __ldg((const uint2 *)m);
						q = __ldg((const uint32_t *)n);
					}
					sm[i][h][0] = v.x;
					sm[i][h][1] = v.y;
					ix[i][h] = q;
				} else {
					const uint32_t nb = ok && c < a.cols ? min(8u, a.cols - c) : 0;
					ld_bytes<2>(sm[i][h], m, nb);
					ld_bytes<1>(&ix[i][h], n, (nb + 1) / 2);
				}
			}
			if (++cu == upr) {
				cu = 0;
				r++;
			}
		}
#pragma unroll
		for (int i = 0; i < DECODE_UNITS; i++)
#pragma unroll
			for (int h = 0; h < 2; h++) {
				const uint32_t c = col[i][h];
				if (c >= a.cols)
					continue;
				const uint32_t q = ix[i][h];
				const uint32_t w0 = r12_pair<0>(sm[i][h][0], r12_entry_of(lt, q, 0));
				const uint32_t w1 = r12_pair<1>(sm[i][h][0], r12_entry_of(lt, q, 1));
				const uint32_t w2 = r12_pair<0>(sm[i][h][1], r12_entry_of(lt, q, 2));
				const uint32_t w3 = r12_pair<1>(sm[i][h][1], r12_entry_of(lt, q, 3));
				uint16_t *o = out + (uint64_t)row[i] * a.cols + c;
				if (ST16) {
					*(uint4 *)o = make_uint4(w0, w1, w2, w3);
				} else {
					const uint32_t w[4] = {w0, w1, w2, w3};
					const uint32_t nn = min(8u, a.cols - c);
#pragma unroll
					for (int k = 0; k < 8; k++)
						if ((uint32_t)k < nn)
							o[k] = (uint16_t)(w[k / 2] >> (16 * (k & 1)));
				}
			}
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
	const bool ld8 = a->cols % 8 == 0 && a->mstride % 8 == 0 && a->nstride % 4 == 0;
	const bool st16 = a->cols % 8 == 0 && (uintptr_t)out % 16 == 0;
	auto fn = ld8 ? (st16 ? r12_decode_kernel<true, true> : r12_decode_kernel<true, false>)
		      : (st16 ? r12_decode_kernel<false, true> : r12_decode_kernel<false, false>);
	/* one wave of resident blocks, each warp a contiguous range of units */
	int per_sm = 0;
	UWK_CK(e, cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, DECODE_THREADS, 0));
	const uint64_t warps = (uint64_t)a->rows * ((a->cols + 511) / 512);
	uint64_t blocks = (warps * 32 + DECODE_THREADS - 1) / DECODE_THREADS;
	if (blocks > (uint64_t)sms * (per_sm > 0 ? per_sm : 1))
		blocks = (uint64_t)sms * (per_sm > 0 ? per_sm : 1);
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
	if (uwk_args_make(l, dev_base, &a, e) < 0)
		return uwerr_prefix(e, "uwk_decode");
	const uint64_t raw = 2 * l->rows * l->cols;   /* validated: no overflow */
	if (out_bytes < raw)
		return uwerr_set(e, EINVAL, "uwk_decode: %zu-byte buffer for %llu bytes of %llux%llu BF16",
				 out_bytes, (unsigned long long)raw, (unsigned long long)l->rows,
				 (unsigned long long)l->cols);
	if (uwk_check_ptr(dev_out, 2, "output", e) < 0 ||
	    (l->format == UW_FORMAT_R11 ? uwk_decode_r11(&a, (uint16_t *)dev_out, s, e)
					: uwk_decode_r12(&a, (uint16_t *)dev_out, s, e)) < 0)
		return uwerr_prefix(e, "uwk_decode");
	return 0;
}
