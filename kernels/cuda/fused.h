/* fused: what the two fused kernels share (matmul.cu's mma.sync loops and
 * matmul_wg.cu's warpgroup kernel): the chunk width, a warp's rows and
 * the walk of their patches, the tail of the last chunk, shared memory
 * grants and occupancy. CUDA C++ only. */
#ifndef UW_KERNELS_CUDA_FUSED_H
#define UW_KERNELS_CUDA_FUSED_H

#include <cuda_bf16.h>

#include "kernels/cuda/uwk_int.h"

#define KC 128                 /* columns of one warp chunk: 4 lanes x 32 */

/* y = x . W^T through the warpgroup kernel (matmul_wg.cu): R12 a, rows on
 * 16 bytes, a device of compute capability 9.0, any batch, its own split.
 * x_same: the previous call on ctx and s had this x, batch and number of
 * columns, so its permutation of x (in ctx) is used again. */
int uwk_matmul_wg(const struct r12_args *a, const void *x, size_t batch, void *y, bool x_same,
		  cudaStream_t s, struct uwk_ctx *ctx, struct uwerr *e);
/* Let kernel fn take smem bytes of dynamic shared memory on ctx's device
 * (past the 48 KB default less its static shared memory, stat_big where
 * more than 2 KB, else 0: an opt-in the device must allow; what names the
 * launch in the error). Grants are remembered per kernel and device. */
int uwk_smem_optin(const void *fn, size_t smem, size_t stat_big, const char *what,
		   struct uwk_ctx *ctx, struct uwerr *e);
/* The blocks of fn an SM holds at threads and smem bytes of dynamic shared
 * memory on ctx's device (at least 1), remembered after the first call. */
int uwk_blocks_per_sm(const void *fn, int threads, size_t smem, struct uwk_ctx *ctx, int *out,
		      struct uwerr *e);

__device__ __forceinline__ uint16_t bf16_bits(float f)
{
	return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}

/* Write the patched exponents of columns [c, c + 32) of one row over w.
 * The lane walks its row's ascending patch list once over the whole K loop
 * (patches of other lanes' columns are passed over); the caller enters only
 * when the next patch is before c + 32, so rows without patches cost one
 * compare per chunk. */
__device__ __forceinline__ void r12_patch32(uint32_t w[16], uint32_t &pnext, uint32_t pend,
					 uint32_t &pcol, const uint32_t *__restrict__ patch,
					 uint32_t c)
{
	for (; pnext < pend; pnext++) {
		const uint32_t v = patch[pnext], col = (v >> 8) & 0xfffff;
		if (col >= c + 32) {
			pcol = col;
			return;
		}
		if (col >= c) {
			const uint32_t off = col - c, sh = (off & 1) * 16 + 7;
			const uint32_t keep = ~(0xffu << sh), bits = (v & 0xff) << sh;
			/* one bit a word, hidden from the optimizer: folded back into
			 * w[off / 2], a run-time index would put w in local memory */
			uint32_t sel = 1u << (off >> 1);
			asm("" : "+r"(sel));
#pragma unroll
			for (int q = 0; q < 16; q++)
				if (sel & (1u << q))
					w[q] = (w[q] & keep) | bits;
		}
	}
	pcol = UINT32_MAX;
}

/* The patch ranges [p0, p1) of rows g and g + 8 of group grp (the warp's
 * 16-row tile), found by the whole warp at once without a chain of
 * dependent loads: lane i reads entries g0 + i, g0 + 32 + i, ... and one
 * ballot per row k counts the entries of the rows before k. Warp-uniform;
 * every lane calls it. A corrupt list gives ranges inside [g0, g1), which
 * the walk then only reads. */
__device__ __forceinline__ void patch_rows(const r12_args &a, uint32_t grp, uint32_t g,
					   uint32_t p0[2], uint32_t p1[2])
{
	const uint32_t g0 = a.pgrp[grp], g1 = min(a.pgrp[grp + 1], a.npatch);
	uint32_t lo0 = 0, hi0 = 0, lo1 = 0, hi1 = 0;
	for (uint32_t base = g0; base < g1; base += 32) {
		const uint32_t i = base + (threadIdx.x & 31);
		const uint32_t rk = i < g1 ? a.patch[i] >> 28 : 16;
#pragma unroll
		for (uint32_t k = 1; k <= 16; k++) {
			const uint32_t n = __popc(__ballot_sync(0xffffffffu, rk < k));
			lo0 += k == g ? n : 0;
			hi0 += k == g + 1 ? n : 0;
			lo1 += k == g + 8 ? n : 0;
			hi1 += k == g + 9 ? n : 0;
		}
	}
	p0[0] = g0 + lo0;
	p1[0] = g0 + hi0;
	p0[1] = g0 + lo1;
	p1[1] = g0 + hi1;
}

/* Rows g and g + 8 of a warp's 16 (row0 = the first): their rows of the
 * planes (row 0 for a row past the end: its sums are not kept), whether
 * each exists, and an empty patch walk (r12_patch_walk starts it). */
__device__ __forceinline__ void r12_rows(const r12_args &a, uint32_t row0, const uint8_t *mrow[2],
					 const uint8_t *nrow[2], bool rok[2], uint32_t pnext[2],
					 uint32_t pend[2], uint32_t pcol[2])
{
#pragma unroll
	for (int h = 0; h < 2; h++) {
		const uint32_t r = row0 + 8 * h;
		rok[h] = r < a.rows;
		mrow[h] = a.mant + (uint64_t)(rok[h] ? r : 0) * a.mstride;
		nrow[h] = a.nib + (uint64_t)(rok[h] ? r : 0) * a.nstride;
		pnext[h] = pend[h] = 0;
		pcol[h] = UINT32_MAX;
	}
}

/* The start of r12_patch32's walk for those rows of 16-row group grp: the
 * next patch, the end of each row's list and the next patch's column.
 * Warp-collective; for a tensor with patches and a group inside it. */
__device__ __forceinline__ void r12_patch_walk(const r12_args &a, uint32_t grp, uint32_t g,
					       const bool rok[2], uint32_t pnext[2], uint32_t pend[2],
					       uint32_t pcol[2])
{
	uint32_t p0[2], p1[2];
	patch_rows(a, grp, g, p0, p1);
#pragma unroll
	for (int h = 0; h < 2; h++)
		if (rok[h] && p0[h] < p1[h]) {
			pnext[h] = p0[h];
			pend[h] = p1[h];
			pcol[h] = (a.patch[p0[h]] >> 8) & 0xfffff;
		}
}

/* Zero the pairs of w (columns [c, c + 32) of a row) at or past cols,
 * whatever palette[0] is: x is zero there, but an infinite weight is not. */
__device__ __forceinline__ void r12_tail32(uint32_t w[16], uint32_t c, uint32_t cols)
{
	if (c + 32 <= cols)
		return;
#pragma unroll
	for (uint32_t p = 0; p < 16; p++) {
		if (c + 2 * p >= cols)
			w[p] = 0;
		else if (c + 2 * p + 1 >= cols)
			w[p] &= 0xffff;
	}
}

#endif
