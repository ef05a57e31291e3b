/* matmul: uwk_matmul, y = x . W^T for a resident BF16 tensor W.
 *
 * Fused pipeline (R12, and R11 whose tiles are all full width; batch <= 64;
 * r12_fused says how R11 differs). Each warp owns 16 rows of W and walks
 * their columns in chunks of 128: a lane loads 32 columns of two rows (g and
 * g + 8) with 16-byte loads straight from the planes (read once, L1 skipped)
 * PD chunks ahead of the one it decodes, rebuilds the BF16 pairs in
 * registers (one shared-memory lookup gives the exponent bits of a column
 * pair, from the lane's own copy of the table so that a warp's lookups never
 * share a bank; prmt + lop3 the rest), writes the patched exponents of its
 * columns over them, and feeds them to mma.sync m16n8k16
 * as the A operand. The K order inside a chunk is permuted so that a lane's
 * 32 contiguous columns are its A fragments: lane (g, t) gives logical
 * k = 2t, 2t+1, 2t+8, 2t+9 of k-step s from columns 32t + 4s .. 32t + 4s + 3,
 * and reads x at the same columns (B operand, batch row n = g of an n-tile).
 * x is staged per step in shared memory by cp.async, two buffers deep, in
 * rows padded so the B loads are free of bank conflicts. The block's warps
 * that split K add their sums in a fixed order through shared memory;
 * blocks that split K (ks > 1) write float partial sums that a second
 * kernel adds in order. Decoded weights never reach global memory.
 *
 * Decode + GEMM pipeline (large batch): uwk_decode into the context's
 * scratch, then cublasGemmEx (BF16 in and out, float compute). RAW BF16
 * tensors go to cublasGemmEx directly. uwk_matmul_f32 (float32 out) takes
 * this pipeline at every batch. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <mutex>

#include "kernels/cuda/fused.h"

extern "C" {
#include "format/dtype.h"
#include "kernels/resident.h"
#include "kernels/tunecache.h"
}

/* Shared-memory row of staged x for one batch row: WK chunks of 4 lane
 * segments of 64 bytes, each padded to 80; the row stride is 4 mod 8 in
 * 16-byte units, so the 8 lanes of a quarter warp hit 8 distinct bank
 * groups with their 16-byte loads. */
template <int WK>
struct xrow {
	static constexpr int seg = 80;
	static constexpr int bytes = WK * 4 * seg + (WK % 2 == 0 ? 64 : 0);
};

__device__ __forceinline__ void mma_bf16(float d[4], uint32_t a0, uint32_t a1, uint32_t a2,
					 uint32_t a3, uint32_t b0, uint32_t b1)
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
		     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
		     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
		     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* x into shared memory: 16-byte cp.async copies, in groups. */
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, uint32_t bytes)
{
	uint32_t s = (uint32_t)__cvta_generic_to_shared(smem);
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;"
		     :: "r"(s), "l"(gmem), "r"(bytes) : "memory");
}

__device__ __forceinline__ void cp_commit(void)
{
	asm volatile("cp.async.commit_group;" ::: "memory");
}

__device__ __forceinline__ void cp_wait_all(void)
{
	asm volatile("cp.async.wait_all;" ::: "memory");
}

/* Wait until at most N of this thread's cp.async groups are in flight. */
template <int N>
__device__ __forceinline__ void cp_wait_group(void)
{
	asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory");
}

/* One block of the fused kernel (the body of r12_fused_kernel and
 * r12_fused2_kernel). NT n-tiles of 8 batch rows; WM warps side by side
 * over rows, WK over columns; XVEC: x rows are 16-byte aligned (cp.async)
 * and W's rows too (16-byte loads), else element copies and byte loads; PD:
 * chunks of W in flight ahead of the one decoded (registers: 24 a chunk);
 * XALL: the block's whole slice of x is staged once before the K loop,
 * which then has no barrier: each warp streams W on its own (else x is
 * staged a step ahead, two buffers, two barriers a step). part: split-K
 * partial sums, or NULL to write y.
 * R11: W is R11 with cols a multiple of 128 (every tile full width; XVEC).
 * The warp's 16 rows are one tile row; lane l's 32 columns of its two rows
 * are code units l and 32 + l of the chunk's tile, read as three words and
 * turned into R12 nibbles and decoded, a patched element with palette[7]'s
 * exponent. Each chunk's tile index entries come with its codes; the
 * tile's patches (about 1 element in 80), loaded a step ahead, a patch a
 * lane, then write their elements into the decoded words through shared
 * memory (r11_patch_regs), so the mma takes W exact: warp-parallel work of
 * a few instructions a patch, whatever the batch (bench/NOTES.md, R11 v4).
 * LEAN (R12, NT = 1, XVEC, XALL, PD = 1, cols a multiple of 128): a K loop
 * of its own, each warp on its own chunks: no check per load but the chunk
 * range (rows past the end read row 0, their sums are not kept), x read
 * once a chunk, each k-step's four pairs decoded just before its mma; a
 * chunk in which some lane has a patch (rare) decodes whole rows and
 * patches them as the other loop does (bench/NOTES.md, v16). */
template <int NT, int WM, int WK, bool XVEC, int PD, bool XALL, bool R11 = false,
	  bool LEAN = false>
__device__ __forceinline__ void
r12_fused(const r12_args &a, const uint16_t *__restrict__ x, uint32_t batch,
	  uint16_t *__restrict__ y, float *__restrict__ part, uint32_t cps)
{
	constexpr int XS = xrow<WK>::bytes, SEG = xrow<WK>::seg;
	static_assert(!LEAN || (NT == 1 && XVEC && XALL && !R11 && PD == 1),
		      "the lean loop: R12, batch <= 8, pf 1");
	/* smem: the lanes' tables (R12_LANE_TAB; R11: its entries only), then x */
	extern __shared__ __align__(16) uint8_t smem[];
	uint8_t *const xsm = smem + (R11 ? R11_LANE_TAB : R12_LANE_TAB);
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int wm = warp % WM, wk = warp / WM, g = lane >> 2, t = lane & 3;
	const uint32_t nx = min(batch, (uint32_t)(8 * NT));   /* x rows staged */
	const uint32_t xbuf = nx * XS;
	const uint32_t nch = (a.cols + KC - 1) / KC;
	const uint32_t cb = blockIdx.y * cps, ce = min(nch, cb + cps);
	const uint32_t nsteps = (ce - cb + WK - 1) / WK;
	const uint32_t row0 = (blockIdx.x * WM + wm) * 16 + g;
	const uint8_t *const lt = r12_lane_tab(smem, lane);
	r12_table(smem, a.pal, R11 ? R11_TAB_N : 256);
	/* R11: the warp's tile row, its height (units of a tile: 4 gh), the
	 * exponent table, the warps' staging areas (r11_patch_regs) */
	const uint32_t grp = blockIdx.x * WM + wm;
	const uint32_t gh = R11 && 16 * grp < a.rows ? min(16u, a.rows - 16 * grp) : 0;
	const uint8_t *gcode = R11 ? a.nib + (uint64_t)grp * a.nstride : NULL;
	__shared__ uint8_t xt[R11 ? 32 : 1];
	__shared__ __align__(16) uint32_t wst[R11 ? WM * WK : 1][R11 ? 32 * R11_WST : 1];
	r11_praw pn[2] = {};            /* R11: the next chunk's patches lane, lane + 32, in flight */
	if (R11)
		r11_xtab(xt, a);

	const uint8_t *mrow[2], *nrow[2];
	bool rok[2];
	uint32_t pnext[2], pend[2], pcol[2];
	r12_rows(a, row0, mrow, nrow, rok, pnext, pend, pcol);

	/* the planes of chunk c for row half h; R11: the sign|mantissa bytes,
	 * the unit's three code words, and (all lanes) tile index entry c + h */
	auto load = [&](r12_raw32 &r, int h, uint32_t c, bool ok) {
		if (!R11) {
			r12_load32<XVEC>(r, mrow[h], nrow[h], c * KC + 32 * t, a.cols, ok);
			return;
		}
		uint4 s0 = make_uint4(0, 0, 0, 0), s1 = s0;
		r.ix[0] = r.ix[1] = r.ix[2] = 0;
		if (ok) {
			s0 = ld_stream(mrow[h] + c * KC + 32 * t);
			s1 = ld_stream(mrow[h] + c * KC + 32 * t + 16);
			const uint32_t *cw = (const uint32_t *)(gcode + (uint64_t)c * 48 * gh) + lane + 32 * h;
			r.ix[0] = __ldg(cw);
			r.ix[1] = __ldg(cw + 4 * gh);
			r.ix[2] = __ldg(cw + 8 * gh);
		}
		r.sm[0] = s0.x, r.sm[1] = s0.y, r.sm[2] = s0.z, r.sm[3] = s0.w;
		r.sm[4] = s1.x, r.sm[5] = s1.y, r.sm[6] = s1.z, r.sm[7] = s1.w;
		r.ix[3] = gh && c < ce ? __ldg(a.pgrp + (uint64_t)grp * a.nk + c + h) : 0;
	};
	/* R11: this lane's patches (pe | psm << 16) of a chunk whose patches
	 * are [first, end) */
	auto patches = [&](uint32_t first, uint32_t end) {
#pragma unroll
		for (int k = 0; k < 2; k++) {
			const uint32_t i = first + lane + 32 * k;
			pn[k] = r11_patch_ld(a, i, min(end, a.npatch));
		}
	};

	/* x columns of step st (WK chunks) into buffer buf */
	auto stage = [&](uint32_t st, uint32_t buf) {
		constexpr uint32_t SEGS = WK * KC / 8;          /* 8-column units a row */
		uint8_t *xs = xsm + buf * xbuf;
		const uint32_t k0 = (cb + st * WK) * KC;
		for (uint32_t u = threadIdx.x; u < nx * SEGS; u += blockDim.x) {
			const uint32_t n = u / SEGS, cc = (u % SEGS) * 8, col = k0 + cc;
			uint8_t *d = xs + n * XS + (cc / 32) * SEG + (cc % 32) * 2;
			const uint16_t *src = x + (uint64_t)n * a.cols + col;
			if (XVEC) {
				cp_async16(d, col < a.cols ? src : x, col < a.cols ? 16 : 0);
			} else {
				uint32_t v[4];
#pragma unroll
				for (int e = 0; e < 4; e++) {
					uint32_t lo = col + 2 * e < a.cols ? src[2 * e] : 0;
					uint32_t hi = col + 2 * e + 1 < a.cols ? src[2 * e + 1] : 0;
					v[e] = lo | hi << 16;
				}
				*(uint4 *)d = make_uint4(v[0], v[1], v[2], v[3]);
			}
		}
	};

	float acc[NT][4];
#pragma unroll
	for (int j = 0; j < NT; j++)
		acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;

	/* q[0]: the planes of this step's chunk; q[1..PD]: the next PD steps',
	 * already in flight (a chunk at or past ce loads nothing) */
	uint32_t ch = cb + wk;
	r12_raw32 q[PD + 1][2];
#pragma unroll
	for (int i = 0; i < PD; i++)
#pragma unroll
		for (int h = 0; h < 2; h++) {
			const uint32_t c = ch + i * WK;
			load(q[i][h], h, c, rok[h] && c < ce);
		}
	if (XALL)
		for (uint32_t st = 0; st < nsteps; st++)
			stage(st, st);
	else
		stage(0, 0);
	cp_commit();
	/* with the first loads in flight: this warp's patches */
	if (!R11 && a.npatch && row0 - g < a.rows)
		r12_patch_walk(a, row0 / 16, g, rok, pnext, pend, pcol);
	if (R11)
		patches(q[0][0].ix[3], q[0][1].ix[3]);
	if (XALL) {
		cp_wait_all();
		__syncthreads();
	}
	if constexpr (LEAN) {
		const uint32_t n = ch < ce ? (ce - ch + WK - 1) / WK : 0;   /* this warp's chunks */
		const uint8_t *lm[2], *ln[2];                 /* chunk cf's planes */
		uint32_t c = ch * KC + 32 * t, cf = ch + PD * WK;
#pragma unroll
		for (int h = 0; h < 2; h++) {
			lm[h] = mrow[h] + (uint64_t)cf * KC + 32 * t;
			ln[h] = nrow[h] + (uint64_t)cf * (KC / 2) + 16 * t;
		}
		/* lanes past the batch read the last row: their sums are not kept */
		const uint8_t *xb = xsm + (wk * 4 + t) * SEG + min((uint32_t)g, nx - 1) * XS;
		for (uint32_t i = 0; i < n; i++) {
			if (cf < ce)
#pragma unroll
				for (int h = 0; h < 2; h++) {
					const uint4 s0 = ld_stream(lm[h]), s1 = ld_stream(lm[h] + 16);
					const uint4 n0 = ld_stream(ln[h]);
					q[PD][h] = { { s0.x, s0.y, s0.z, s0.w, s1.x, s1.y, s1.z, s1.w },
						     { n0.x, n0.y, n0.z, n0.w } };
				}
			const r12_raw32 (&cu)[2] = q[0];
			uint32_t xv[16];
#pragma unroll
			for (int k = 0; k < 4; k++) {
				const uint4 v = *(const uint4 *)(xb + 16 * k);
				xv[4 * k] = v.x, xv[4 * k + 1] = v.y, xv[4 * k + 2] = v.z, xv[4 * k + 3] = v.w;
			}
			/* pair p of row half h: index byte p, sign|mantissa bytes 2p, 2p + 1 */
			auto pr = [&](int h, int p) -> uint32_t {
				const uint32_t e = r12_entry_of(lt, cu[h].ix[p >> 2], p & 3);
				return p & 1 ? r12_pair<1>(cu[h].sm[p >> 1], e) : r12_pair<0>(cu[h].sm[p >> 1], e);
			};
			if (!__any_sync(0xffffffffu, pcol[0] < c + 32 || pcol[1] < c + 32)) {
#pragma unroll
				for (int k = 0; k < 8; k++)
					mma_bf16(acc[0], pr(0, 2 * k), pr(1, 2 * k), pr(0, 2 * k + 1),
						 pr(1, 2 * k + 1), xv[2 * k], xv[2 * k + 1]);
			} else {
				/* a patch in this chunk (rare): whole rows, as the other loop */
				uint32_t w[2][16];
#pragma unroll
				for (int h = 0; h < 2; h++) {
					r12_decode32(lt, cu[h].sm, cu[h].ix, w[h]);
					if (pcol[h] < c + 32)
						r12_patch32(w[h], pnext[h], pend[h], pcol[h], a.patch, c);
				}
#pragma unroll
				for (int k = 0; k < 8; k++)
					mma_bf16(acc[0], w[0][2 * k], w[1][2 * k], w[0][2 * k + 1],
						 w[1][2 * k + 1], xv[2 * k], xv[2 * k + 1]);
			}
#pragma unroll
			for (int k = 0; k < PD; k++)
#pragma unroll
				for (int h = 0; h < 2; h++)
					q[k][h] = q[k + 1][h];
#pragma unroll
			for (int h = 0; h < 2; h++) {
				lm[h] += WK * KC;
				ln[h] += WK * KC / 2;
			}
			xb += xbuf;
			c += WK * KC;
			cf += WK;
		}
	}
	for (uint32_t st = 0; st < nsteps && !LEAN; st++) {
		const bool more = st + 1 < nsteps;
		const uint32_t chn = ch + WK, chf = ch + PD * WK;
		if (!XALL && more)
			stage(st + 1, (st + 1) & 1);
#pragma unroll
		for (int h = 0; h < 2; h++)
			load(q[PD][h], h, chf, rok[h] && chf < ce);
		r12_raw32 (&cur)[2] = q[0];
		if (!XALL) {
			cp_commit();
			cp_wait_group<1>();
			__syncthreads();
		}
		if (ch < ce) {
			const uint32_t c = ch * KC + 32 * t;
			uint32_t w[2][16];
			/* R11: this chunk's patches [first, end), the first 64 in p[],
			 * their loads issued a step ago; the next chunk's now */
			const uint32_t first = R11 ? cur[0].ix[3] : 0;
			const uint32_t end = R11 ? min(cur[1].ix[3], a.npatch) : 0;
			const uint32_t p[2] = {r11_patch_join(pn[0]), r11_patch_join(pn[1])};
			if (R11) {
				if (more)
					patches(q[1][0].ix[3], q[1][1].ix[3]);
#pragma unroll
				for (int h = 0; h < 2; h++) {
					uint32_t ix[4];
					r11_nibbles(cur[h].ix, ix);
					r12_decode32(lt, cur[h].sm, ix, w[h]);
				}
				r11_patch_regs(w, wst[warp], xt, p, first, end, a);
			}
#pragma unroll
			for (int h = 0; h < 2 && !R11; h++) {
				r12_decode32(lt, cur[h].sm, cur[h].ix, w[h]);
				if (pcol[h] < c + 32)
					r12_patch32(w[h], pnext[h], pend[h], pcol[h], a.patch, c);
				r12_tail32(w[h], c, a.cols);
			}
			const uint8_t *xb = xsm + (XALL ? st : st & 1) * xbuf + (wk * 4 + t) * SEG;
#pragma unroll
			for (int j = 0; j < NT; j++) {
				const uint32_t n = 8 * j + g;
				uint32_t xv[16];
				if (n < nx) {
#pragma unroll
					for (int q = 0; q < 4; q++) {
						uint4 v = *(const uint4 *)(xb + n * XS + 16 * q);
						xv[4 * q] = v.x;
						xv[4 * q + 1] = v.y;
						xv[4 * q + 2] = v.z;
						xv[4 * q + 3] = v.w;
					}
				} else {
#pragma unroll
					for (int q = 0; q < 16; q++)
						xv[q] = 0;
				}
#pragma unroll
				for (int s = 0; s < 8; s++)
					mma_bf16(acc[j], w[0][2 * s], w[1][2 * s], w[0][2 * s + 1],
						 w[1][2 * s + 1], xv[2 * s], xv[2 * s + 1]);
			}
		}
		if (!XALL)
			__syncthreads();
#pragma unroll
		for (int i = 0; i < PD; i++)
#pragma unroll
			for (int h = 0; h < 2; h++)
				q[i][h] = q[i + 1][h];
		ch = chn;
	}

	if (WK > 1) {
		/* [wk][wm][j][e][lane]: the warps of one row tile add in wk order */
		float *red = (float *)xsm;
		if (XALL)
			__syncthreads();       /* the others may still read x */
#pragma unroll
		for (int j = 0; j < NT; j++)
#pragma unroll
			for (int e = 0; e < 4; e++)
				red[(((wk * WM + wm) * NT + j) * 4 + e) * 32 + lane] = acc[j][e];
		__syncthreads();
		if (wk != 0)
			return;
#pragma unroll
		for (int j = 0; j < NT; j++)
#pragma unroll
			for (int e = 0; e < 4; e++) {
				float sum = red[((wm * NT + j) * 4 + e) * 32 + lane];
				for (int k = 1; k < WK; k++)
					sum += red[(((k * WM + wm) * NT + j) * 4 + e) * 32 + lane];
				acc[j][e] = sum;
			}
	}
	/* accumulator e: row g (e < 2) or g + 8, batch row 8j + 2t + (e & 1) */
#pragma unroll
	for (int j = 0; j < NT; j++)
#pragma unroll
		for (int e = 0; e < 4; e++) {
			const uint32_t n = 8 * j + 2 * t + (e & 1), r = row0 + 8 * (e >> 1);
			if (n < batch && r < a.rows) {
				if (part)
					part[((uint64_t)blockIdx.y * batch + n) * a.rows + r] = acc[j][e];
				else
					y[(uint64_t)n * a.rows + r] = bf16_bits(acc[j][e]);
			}
		}
}

/* R11 at one n-tile (batch <= 8) holds 128 registers, two blocks an SM,
 * as the lean loop does and for the same reason. */
template <int NT, int WM, int WK, bool XVEC, int PD, bool XALL, bool R11 = false>
__global__ void __launch_bounds__(32 * WM * WK, R11 && NT == 1 && WM * WK == 8 ? 2 : 1)
r12_fused_kernel(const r12_args a, const uint16_t *__restrict__ x, uint32_t batch,
		 uint16_t *__restrict__ y, float *__restrict__ part, uint32_t cps)
{
	r12_fused<NT, WM, WK, XVEC, PD, XALL, R11>(a, x, batch, y, part, cps);
}

/* The lean loop's kernels hold at most 128 registers for 16 warps an SM:
 * that occupancy is what keeps enough of W in flight (v16). An explicit
 * minimum on the others changes their registers, so they have none. */
#define LEAN_BOUNDS(WM, WK) __launch_bounds__(32 * (WM) * (WK), 16 / ((WM) * (WK)))

template <int WM, int WK>
__global__ void LEAN_BOUNDS(WM, WK)
r12_lean_kernel(const r12_args a, const uint16_t *__restrict__ x, uint32_t batch,
		uint16_t *__restrict__ y, float *__restrict__ part, uint32_t cps)
{
	r12_fused<1, WM, WK, true, 1, true, false, true>(a, x, batch, y, part, cps);
}

/* Two tensors that share x (uwk_matmul2), one per blockIdx.z, their grids
 * side by side; part[z]: split-K partial sums or NULL. */
struct r12_two {
	r12_args a[2];
	uint16_t *y[2];
	float *part[2];
};

template <int NT, int WM, int WK, bool XALL, bool LEAN>
__device__ __forceinline__ void r12_fused2(const r12_two &m, const uint16_t *__restrict__ x,
					   uint32_t batch, uint32_t cps)
{
	const unsigned z = blockIdx.z;
	if (blockIdx.x * WM * 16 >= m.a[z].rows)
		return;                 /* the other tensor has more row tiles */
	r12_fused<NT, WM, WK, true, LEAN ? 1 : 2, XALL, false, LEAN>(m.a[z], x, batch, m.y[z],
								      m.part[z], cps);
}

template <int NT, int WM, int WK, bool XALL>
__global__ void __launch_bounds__(32 * WM * WK)
r12_fused2_kernel(const __grid_constant__ r12_two m, const uint16_t *__restrict__ x,
		  uint32_t batch, uint32_t cps)
{
	r12_fused2<NT, WM, WK, XALL, false>(m, x, batch, cps);
}

template <int WM, int WK>
__global__ void LEAN_BOUNDS(WM, WK)
r12_lean2_kernel(const __grid_constant__ r12_two m, const uint16_t *__restrict__ x,
		 uint32_t batch, uint32_t cps)
{
	r12_fused2<1, WM, WK, true, true>(m, x, batch, cps);
}

/* y = the ks partial sums, added in split order. */
__global__ void __launch_bounds__(256)
splitk_sum_kernel(const float *__restrict__ part, uint32_t ks, uint64_t n,
		  uint16_t *__restrict__ y)
{
	for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (uint64_t)gridDim.x * blockDim.x) {
		float sum = __ldcg(part + i);        /* part[0][i] + part[1][i] + ..., from L2 */
		for (uint32_t k = 1; k < ks; k++)
			sum += __ldcg(part + k * n + i);
		y[i] = bf16_bits(sum);
	}
}

static int splitk_sum(const float *part, int ks, uint64_t n, uint16_t *y, cudaStream_t s,
		      struct uwk_ctx *ctx, struct uwerr *e)
{
	uint64_t blocks = (n + 255) / 256;
	if (blocks > (uint64_t)ctx->sms * 8)
		blocks = (uint64_t)ctx->sms * 8;
	splitk_sum_kernel<<<(unsigned)blocks, 256, 0, s>>>(part, (uint32_t)ks, n, y);
	UWK_CK(e, cudaGetLastError());
	return 0;
}

/* ---- host side ---- */

typedef void (*fused_fn)(const r12_args, const uint16_t *, uint32_t, uint16_t *, float *,
			 uint32_t);

struct fused_kind {
	int wm, wk;
	fused_fn fn[4][2][UWK_NPF];     /* [log2 NT][XVEC][pf - 1] */
	fused_fn xall[2][UWK_NPF];      /* NT = 1 with x staged once: [XVEC][pf - 1] */
	fused_fn lean;                  /* the same at pf 1, LEAN (16-byte x, full chunks) */
};

#define FUSED_PF(WM, WK, NT, XV, XA) \
	{ r12_fused_kernel<NT, WM, WK, XV, 1, XA>, r12_fused_kernel<NT, WM, WK, XV, 2, XA> }
#define FUSED_NT(WM, WK, NT, XA) \
	{ FUSED_PF(WM, WK, NT, false, XA), FUSED_PF(WM, WK, NT, true, XA) }
#define FUSED_KIND(WM, WK) \
	{ WM, WK, { FUSED_NT(WM, WK, 1, false), FUSED_NT(WM, WK, 2, false), \
		    FUSED_NT(WM, WK, 4, false), FUSED_NT(WM, WK, 8, false) }, \
	  FUSED_NT(WM, WK, 1, true), \
	  r12_lean_kernel<WM, WK> }

/* The shapes built; default_kind picks AUTO's among them. */
static const struct fused_kind kinds[] = {
	FUSED_KIND(1, 8), FUSED_KIND(1, 4), FUSED_KIND(2, 4), FUSED_KIND(4, 2),
	FUSED_KIND(8, 1), FUSED_KIND(2, 2), FUSED_KIND(2, 1), FUSED_KIND(4, 1),
};
#define NKINDS ((int)(sizeof(kinds) / sizeof(kinds[0])))

static int nt_log2(size_t batch)
{
	return batch <= 8 ? 0 : batch <= 16 ? 1 : batch <= 32 ? 2 : 3;
}

static const struct fused_kind *find_kind(int wm, int wk)
{
	for (int i = 0; i < NKINDS; i++)
		if (kinds[i].wm == wm && kinds[i].wk == wk)
			return &kinds[i];
	return NULL;
}

/* AUTO's (wm, wk) (bench/NOTES.md, v5 and v8 sweeps on an H200): up to
 * batch 8, 4x2 (8 warps, 64 rows, x staged once for all of them); up to 16,
 * 4x1 (four row tiles share each staged slice of x); above, 8x1 (x then
 * costs as many bytes as W: the more row tiles share it the better). ks
 * then fills one wave of the device. */
static const struct fused_kind *default_kind(size_t batch)
{
	return batch <= 8 ? find_kind(4, 2) : batch <= 16 ? find_kind(4, 1) : find_kind(8, 1);
}

/* AUTO's prefetch depth: two chunks ahead (bench/NOTES.md, v5), but one
 * at batch <= 8, where the lean loop (pf 1 only) takes full chunks (v16). */
static int default_pf(size_t batch)
{
	return batch <= 8 ? 1 : 2;
}

/* The two-tensor kernels (uwk_matmul2): AUTO's shape at each n-tile count
 * (default_kind), pf 2, 16-byte rows and x only; XALL at NT = 1, as AUTO,
 * and its lean loop (pf 1) for AUTO where the chunks are full. */
static const struct pair_kind {
	int wm, wk, ntl;
	const void *fn, *xall, *lean;
} pair_kinds[] = {
	{ 4, 2, 0, (const void *)r12_fused2_kernel<1, 4, 2, false>,
	  (const void *)r12_fused2_kernel<1, 4, 2, true>,
	  (const void *)r12_lean2_kernel<4, 2> },
	{ 4, 1, 1, (const void *)r12_fused2_kernel<2, 4, 1, false>, NULL },
	{ 8, 1, 2, (const void *)r12_fused2_kernel<4, 8, 1, false>, NULL },
	{ 8, 1, 3, (const void *)r12_fused2_kernel<8, 8, 1, false>, NULL },
};

/* The R11 kernels: AUTO's shape at each n-tile count (default_kind), pf 2,
 * 16-byte rows and x only. */
static const struct r11_kind {
	int wm, wk;
	const void *fn, *xall;
} r11_kinds[4] = {
	{ 4, 2, (const void *)r12_fused_kernel<1, 4, 2, true, 2, false, true>,
	  (const void *)r12_fused_kernel<1, 4, 2, true, 2, true, true> },
	{ 4, 1, (const void *)r12_fused_kernel<2, 4, 1, true, 2, false, true>, NULL },
	{ 8, 1, (const void *)r12_fused_kernel<4, 8, 1, true, 2, false, true>, NULL },
	{ 8, 1, (const void *)r12_fused_kernel<8, 8, 1, true, 2, false, true>, NULL },
};

/* The kernels one launch may take: fn, and xall (NULL: not built) for the
 * barrier-free loop where the block's x fits, lean (NULL: not built) for
 * it when every chunk is full; a kernel of fused_fn's arguments, or (pair)
 * r12_fused2_kernel's. */
struct fused_variant {
	int wm, wk, pair;
	const void *fn, *xall, *lean;
	size_t stat;              /* the kernels' static shared memory past 2 KB (R11's), or 0 */
	size_t tab;               /* bytes of the lanes' table: R12_LANE_TAB, or R11_LANE_TAB */
};

static struct fused_variant kind_variant(const struct fused_kind *k, size_t batch, bool xvec,
					 int pf)
{
	const int ntl = nt_log2(batch), d = (pf < 1 ? default_pf(batch) : pf) - 1;
	return { k->wm, k->wk, 0, (const void *)k->fn[ntl][xvec][d],
		 (const void *)k->xall[xvec][d], xvec && d == 0 ? (const void *)k->lean : NULL, 0,
		 R12_LANE_TAB };
}

/* The two-tensor kernel of (wm, wk) at this batch and pf, if built. */
static bool pair_variant(int wm, int wk, size_t batch, bool xvec, int pf,
			 struct fused_variant *v)
{
	const int ntl = nt_log2(batch);
	if ((pf != 0 && pf != 2) || !xvec)
		return false;
	for (const struct pair_kind &k : pair_kinds)
		if (k.wm == wm && k.wk == wk && k.ntl == ntl) {
			*v = { wm, wk, 1, k.fn, k.xall, pf == 0 ? k.lean : NULL, 0, R12_LANE_TAB };
			return true;
		}
	return false;
}

/* x staged once for the whole K loop (XALL) up to this many bytes a block:
 * batch 1 of every MLP shape here, and two blocks of 8 warps (the
 * registers' limit) with their tables still fit an SM. */
#define XALL_MAX (46u << 10)

/* Bytes of one step of staged x (xrow<WK> a batch row). */
static size_t x_step_bytes(int nt, int wk, size_t batch)
{
	size_t nx = batch < (size_t)(8 * nt) ? batch : (size_t)(8 * nt);
	return nx * (size_t)(wk * 4 * 80 + (wk % 2 == 0 ? 64 : 0));
}

/* Dynamic shared memory of a block that stages nbuf steps of x: the
 * lanes' exponent tables, then x (or the split-K sums, after the loop). */
static size_t fused_smem(const struct fused_variant *v, int nt, size_t batch, size_t nbuf)
{
	const int wm = v->wm, wk = v->wk;
	size_t stage = nbuf * x_step_bytes(nt, wk, batch);
	size_t red = wk > 1 ? (size_t)wk * wm * nt * 4 * 32 * sizeof(float) : 0;
	return v->tab + (stage > red ? stage : red);
}

/* The dynamic shared memory granted so far to a kernel on a device: the
 * attribute belongs to the process, so the grants only grow, and a launch
 * within one makes no call (a batch-1 launch of 8192 columns would
 * otherwise pay one each time). A cudaDeviceReset would drop the device's
 * grants, as it already drops every context's buffers: not supported. */
static struct optin_grant {
	const void *fn;
	int device;
	size_t smem;
} optin_grants[64];
static int optin_ngrants;
static std::mutex launch_facts_lock;     /* this table and occupancies' below */

/* Let fn take smem bytes of dynamic shared memory (past the 48 KB default,
 * an opt-in the device must allow). */
int uwk_smem_optin(const void *fn, size_t smem, size_t stat_big, const char *what,
		   struct uwk_ctx *ctx, struct uwerr *e)
{
	const size_t stat = stat_big > 2048 ? stat_big : 2048;
	if (smem + stat <= 48 * 1024)
		return 0;
	std::lock_guard<std::mutex> hold(launch_facts_lock);
	struct optin_grant *g = NULL;
	for (int i = 0; i < optin_ngrants && !g; i++)
		if (optin_grants[i].fn == fn && optin_grants[i].device == ctx->device)
			g = &optin_grants[i];
	if (g && g->smem >= smem)
		return 0;
	int optin = 0;
	UWK_CK(e, cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin,
					 ctx->device));
	if (smem + stat > (size_t)optin)
		return uwerr_set(e, ENOTSUP, "%s: %zu bytes of shared memory (device: %d)", what,
				 smem + stat, optin);
	UWK_CK(e, cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
	if (!g && optin_ngrants < (int)(sizeof(optin_grants) / sizeof(optin_grants[0])))
		g = &optin_grants[optin_ngrants++];
	if (g)                                   /* else (table full): a call each time */
		*g = { fn, ctx->device, smem };
	return 0;
}

/* The blocks of a kernel an SM holds, per device, threads and dynamic
 * shared memory, asked of CUDA once: the default splits need it on every
 * call, and the query is host work a call would otherwise pay. */
static struct occupancy {
	const void *fn;
	int device, threads, per_sm;
	size_t smem;
} occupancies[128];
static int noccupancies;

int uwk_blocks_per_sm(const void *fn, int threads, size_t smem, struct uwk_ctx *ctx, int *out,
		      struct uwerr *e)
{
	std::lock_guard<std::mutex> hold(launch_facts_lock);
	for (int i = 0; i < noccupancies; i++) {
		const struct occupancy &o = occupancies[i];
		if (o.fn == fn && o.device == ctx->device && o.threads == threads && o.smem == smem) {
			*out = o.per_sm;
			return 0;
		}
	}
	int per_sm = 0;
	UWK_CK(e, cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, threads, smem));
	*out = per_sm > 0 ? per_sm : 1;
	if (noccupancies < (int)(sizeof(occupancies) / sizeof(occupancies[0])))
		occupancies[noccupancies++] = { fn, ctx->device, threads, *out, smem };
	return 0;
}

/* One launch of the fused kernel, resolved. */
struct fused_plan {
	const void *fn;
	size_t smem;
	int threads, ks;
	uint32_t cps;             /* chunks of 128 columns a split */
};

/* Resolve shared memory and split-K for a launch of v over tiles row tiles
 * (ks <= 0: the default). The default ks fills one wave: the blocks the
 * device holds at once (registers and shared memory of this very kernel)
 * over the row tiles, rounded, at most a split per two steps of each warp;
 * at batch <= 8, at least the splits that make the block's x fit XALL_MAX
 * (v8: the barrier-free loop is worth more than the wave). Batch <= 8 takes
 * the XALL variant wherever the block's x fits. */
static int fused_plan_make(const struct fused_variant *v, uint64_t tiles, uint32_t cols,
			   size_t batch, int ks, struct uwk_ctx *ctx, struct fused_plan *p,
			   struct uwerr *e)
{
	const int ntl = nt_log2(batch), nt = 1 << ntl;
	const uint32_t nch = (cols + KC - 1) / KC;
	p->threads = 32 * v->wm * v->wk;
	p->fn = v->fn;
	p->smem = fused_smem(v, nt, batch, 2);
	char what[64];
	snprintf(what, sizeof(what), "fused shape %dx%d at batch %zu", v->wm, v->wk, batch);
	int rc = uwk_smem_optin(p->fn, p->smem, v->stat, what, ctx, e);
	if (rc < 0)
		return rc;
	if (ks < 1) {
		int per_sm;
		if ((rc = uwk_blocks_per_sm(p->fn, p->threads, p->smem, ctx, &per_sm, e)) < 0)
			return rc;
		const uint64_t wave = (uint64_t)per_sm * ctx->sms;
		const uint64_t most = nch / (2 * v->wk);
		uint64_t want = (wave + tiles / 2) / tiles;
		if (nt == 1) {
			/* at least the splits that let XALL hold the block's x */
			const uint64_t cps_max = (XALL_MAX / x_step_bytes(nt, v->wk, batch)) * v->wk;
			const uint64_t need = cps_max ? (nch + cps_max - 1) / cps_max : most;
			if (want < need)
				want = need;
		}
		if (want > most)
			want = most;
		ks = want < 1 ? 1 : (int)want;
	}
	if ((uint32_t)ks > nch)
		ks = (int)nch;
	if (ks > 65535)                                /* grid.y */
		ks = 65535;
	p->cps = (nch + ks - 1) / ks;
	p->ks = (int)((nch + p->cps - 1) / p->cps);   /* no empty split */
	const size_t all = fused_smem(v, nt, batch, (p->cps + v->wk - 1) / v->wk);
	if (nt == 1 && all - v->tab <= XALL_MAX && v->xall) {
		const bool lean = v->lean && cols % KC == 0;
		p->fn = lean ? v->lean : v->xall;
		p->smem = all;
		return uwk_smem_optin(p->fn, p->smem, v->stat, what, ctx, e);
	}
	return 0;
}

static uint64_t row_tiles(uint32_t rows, int wm)
{
	return (rows + 16 * (uint64_t)wm - 1) / (16 * (uint64_t)wm);
}

/* Launch m's tensors (ntens of them, the same cols) with plan p (of a
 * two-tensor kernel when ntens is 2), then add the split-K partial sums,
 * tensor by tensor. */
static int fused_launch(struct r12_two *m, int ntens, const struct fused_plan *p, int wm,
			const void *x, size_t batch, cudaStream_t s, struct uwk_ctx *ctx,
			struct uwerr *e)
{
	uint64_t tiles = 0, rows = 0;
	for (int i = 0; i < ntens; i++) {
		tiles = std::max(tiles, row_tiles(m->a[i].rows, wm));
		rows += m->a[i].rows;
		m->part[i] = NULL;
	}
	if (p->ks > 1) {
		size_t bytes = (size_t)p->ks * batch * rows * sizeof(float);
		int rc = uwk_ctx_reserve((void **)&ctx->part, &ctx->part_bytes, bytes,
					 "split-K partial sums", e);
		if (rc < 0)
			return rc;
		m->part[0] = ctx->part;
		if (ntens > 1)
			m->part[1] = ctx->part + (size_t)p->ks * batch * m->a[0].rows;
	}
	const uint16_t *xp = (const uint16_t *)x;
	uint32_t nb = (uint32_t)batch, cps = p->cps;
	void *one[] = { &m->a[0], &xp, &nb, &m->y[0], &m->part[0], &cps };
	void *two[] = { m, &xp, &nb, &cps };
	dim3 grid((unsigned)tiles, (unsigned)p->ks, (unsigned)ntens);
	UWK_CK(e, cudaLaunchKernel(p->fn, grid, dim3(p->threads), ntens == 1 ? one : two, p->smem, s));
	for (int i = 0; i < ntens && p->ks > 1; i++) {
		int rc = splitk_sum(m->part[i], p->ks, (uint64_t)batch * m->a[i].rows, m->y[i], s, ctx,
				    e);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Plan v over a's row tiles (ks <= 0: the default split) and launch it. */
static int variant_run(const struct r12_args *a, const struct fused_variant *v, int ks,
		       const void *x, size_t batch, void *y, cudaStream_t s,
		       struct uwk_ctx *ctx, struct uwerr *e)
{
	struct fused_plan p;
	int rc = fused_plan_make(v, row_tiles(a->rows, v->wm), a->cols, batch, ks, ctx, &p, e);
	if (rc < 0)
		return rc;
	struct r12_two m = {};
	m.a[0] = *a;
	m.y[0] = (uint16_t *)y;
	return fused_launch(&m, 1, &p, v->wm, x, batch, s, ctx, e);
}

static int fused_run(const struct r12_args *a, const struct fused_kind *k, int ks, int pf,
		     const void *x, size_t batch, void *y, cudaStream_t s,
		     struct uwk_ctx *ctx, struct uwerr *e)
{
	const bool xvec = a->cols % 8 == 0 && (uintptr_t)x % 16 == 0 && a->aligned;
	const struct fused_variant v = kind_variant(k, batch, xvec, pf);
	return variant_run(a, &v, ks, x, batch, y, s, ctx, e);
}

/* Whether the fused kernel reads this R11 tensor with this x: every tile
 * full width, rows and x on 16 bytes. */
static bool r11_fusable(const struct r12_args *a, const void *x)
{
	return a->cols % KC == 0 && a->aligned && (uintptr_t)x % 16 == 0;
}

static int r11_fused_run(const struct r12_args *a, const void *x, size_t batch, void *y,
			 cudaStream_t s, struct uwk_ctx *ctx, struct uwerr *e)
{
	const struct r11_kind &k = r11_kinds[nt_log2(batch)];
	const size_t stat = (size_t)k.wm * k.wk * 32 * R11_WST * sizeof(uint32_t) + 32;   /* wst, xt */
	const struct fused_variant v = { k.wm, k.wk, 0, k.fn, k.xall, NULL, stat, R11_LANE_TAB };
	return variant_run(a, &v, 0, x, batch, y, s, ctx, e);
}

bool uwk_wg_fits(const struct uw_layout *l, const struct uwk_ctx *ctx)
{
	return l->format == UW_FORMAT_R12 && ctx->key.cc == 90 &&
	       l->mant_stride % 16 == 0 && l->nib_stride % 16 == 0;
}

bool uwk_wg_default(const struct uw_layout *l, size_t batch, const struct uwk_ctx *ctx)
{
	return batch > 8 && batch <= UWK_AUTO_WG_MAX_BATCH && uwk_wg_fits(l, ctx);
}

/* The checks every matmul entry shares. */
static int matmul_args(const struct uw_layout *l, const void *base, const void *x,
		       size_t batch, void *y, struct uwk_ctx *ctx, struct uwerr *e)
{
	int rc, dev;
	if (!l)
		return uwerr_set(e, EINVAL, "layout NULL");
	if (!ctx)
		return uwerr_set(e, EINVAL, "context NULL (uwk_ctx_new)");
	if (l->dtype != UW_DTYPE_BF16)
		return uwerr_set(e, EINVAL, "W is %s, want BF16", dtype_name((int)l->dtype) ?
				 dtype_name((int)l->dtype) : "an unknown dtype");
	if (l->format != UW_FORMAT_RAW && l->format != UW_FORMAT_R12 && l->format != UW_FORMAT_R11)
		return uwerr_set(e, EINVAL, "unknown resident format %u", l->format);
	if ((rc = res_validate(l, l->nbytes, e)) < 0)
		return rc;
	if (batch == 0)
		return uwerr_set(e, EINVAL, "batch 0");
	if (l->rows == 0 || l->cols == 0 || l->rows > INT_MAX || l->cols > INT_MAX ||
	    batch > INT_MAX || batch * l->rows > ((uint64_t)1 << 48) ||
	    batch * l->cols > ((uint64_t)1 << 48))
		return uwerr_set(e, EINVAL, "shape %llux%llu at batch %zu out of range",
				 (unsigned long long)l->rows, (unsigned long long)l->cols, batch);
	if ((rc = uwk_check_ptr(base, RES_ALIGN, "tensor base", e)) < 0 ||
	    (rc = uwk_check_ptr(x, 2, "x", e)) < 0 || (rc = uwk_check_ptr(y, 2, "y", e)) < 0)
		return rc;
	UWK_CK(e, cudaGetDevice(&dev));
	if (dev != ctx->device)
		return uwerr_set(e, EINVAL, "context of device %d used on device %d", ctx->device, dev);
	return 0;
}

/* W (a, R11 or R12) decoded into the context's scratch, on s. */
static int decode_scratch(const struct r12_args *a, bool r11, cudaStream_t s,
			  struct uwk_ctx *ctx, struct uwerr *e)
{
	int rc = uwk_ctx_reserve(&ctx->scratch, &ctx->scratch_bytes, 2 * (uint64_t)a->rows * a->cols,
				 "decode scratch", e);
	if (rc < 0)
		return rc;
	return r11 ? uwk_decode_r11(a, (uint16_t *)ctx->scratch, s, e)
		   : uwk_decode_r12(a, (uint16_t *)ctx->scratch, s, e);
}

static int matmul_fail(struct uwerr *e, int rc, const struct uw_layout *l, size_t batch)
{
	return uwerr_prefix(e, "uwk_matmul %llux%llu batch %zu", (unsigned long long)l->rows,
			    (unsigned long long)l->cols, batch);
}

/* AUTO's pipeline for l at batch: the tuned choice for this shape and
 * batch bucket, up to TUNE_MAX_BUCKET (*tuned; its table keeps only kinds
 * built here, and no fused one above UWK_FUSED_MAX_BATCH), else the rule
 * of thumb (*tuned NULL), where fusable says the fused kernel takes l and
 * x. */
static enum uwk_pipe auto_pipe(const struct uw_layout *l, size_t batch, bool fusable,
			       struct uwk_ctx *ctx, const struct tune_choice **tuned)
{
	const struct tune_choice *t = l->format == UW_FORMAT_R12 ?
				      tune_table_find(ctx->tune, l->rows, l->cols, batch) : NULL;
	*tuned = t;
	if (t)
		return t->pipe == TUNE_PIPE_GEMM ? UWK_PIPE_DECODE_GEMM :
		       t->pipe == TUNE_PIPE_WG ? UWK_PIPE_FUSED_WG : UWK_PIPE_FUSED;
	return uwk_wg_default(l, batch, ctx) ? UWK_PIPE_FUSED_WG :
	       fusable && batch <= UWK_AUTO_FUSED_MAX_BATCH ? UWK_PIPE_FUSED : UWK_PIPE_DECODE_GEMM;
}

extern "C" int uwk_matmul_pipe(const struct uw_layout *l, const void *dev_base,
			       const void *x, size_t batch, void *y, enum uwk_pipe pipe,
			       cudaStream_t s, struct uwk_ctx *ctx, struct uwerr *e)
{
	int rc = matmul_args(l, dev_base, x, batch, y, ctx, e);
	if (rc < 0)
		return l ? matmul_fail(e, rc, l, batch) : rc;
	const struct tune_choice *tuned = NULL;
	const bool from_auto = pipe == UWK_PIPE_AUTO;
	struct r12_args a;
	const bool r11 = l->format == UW_FORMAT_R11;
	if (l->format != UW_FORMAT_RAW && (rc = uwk_args_make(l, dev_base, &a, e)) < 0)
		return matmul_fail(e, rc, l, batch);
	if (pipe == UWK_PIPE_AUTO)
		pipe = auto_pipe(l, batch, l->format == UW_FORMAT_R12 ||
					 (r11 && r11_fusable(&a, x) && batch <= UWK_AUTO_R11_FUSED_MAX_BATCH),
				 ctx, &tuned);
	if (pipe != UWK_PIPE_FUSED)
		tuned = NULL;
	if (l->format == UW_FORMAT_RAW && pipe == UWK_PIPE_FUSED)
		return uwerr_set(e, EINVAL, "uwk_matmul: fused pipeline of a RAW tensor (R12, R11 only)");
	if (r11 && pipe == UWK_PIPE_FUSED && !r11_fusable(&a, x))
		return uwerr_set(e, EINVAL, "uwk_matmul: fused pipeline of an R11 tensor of %llu columns "
				 "with x at %p (it takes multiples of 128 and 16-byte aligned x)",
				 (unsigned long long)l->cols, x);
	if (l->format == UW_FORMAT_RAW) {
		rc = uwk_blas_gemm(ctx, dev_base, l->rows, l->cols, x, batch, y, CUDA_R_16BF, s, e);
		return rc < 0 ? matmul_fail(e, rc, l, batch) : 0;
	}
	switch (pipe) {
	case UWK_PIPE_FUSED: {
		if (batch > UWK_FUSED_MAX_BATCH)
			return uwerr_set(e, EINVAL, "uwk_matmul: fused pipeline at batch %zu (max %d)",
					 batch, UWK_FUSED_MAX_BATCH);
		if (r11) {
			rc = r11_fused_run(&a, x, batch, y, s, ctx, e);
			break;
		}
		const struct fused_kind *k = tuned && tuned->pf >= 1 && tuned->pf <= UWK_NPF ?
					     find_kind(tuned->wm, tuned->wk) : NULL;
		rc = k ? fused_run(&a, k, tuned->ks, tuned->pf, x, batch, y, s, ctx, e) : -ENOTSUP;
		/* a tuned choice this launch cannot take (not built here, x too
		 * large for its shape): the defaults */
		if (rc == -ENOTSUP)
			rc = fused_run(&a, default_kind(batch), 0, 0, x, batch, y, s, ctx, e);
		break;
	}
	case UWK_PIPE_FUSED_WG:
		rc = r11 ? uwerr_set(e, EINVAL, "uwk_matmul: warpgroup pipeline of an R11 tensor (R12 only)")
			 : uwk_matmul_wg(&a, x, batch, y, false, s, ctx, e);
		/* AUTO's choice (tuned or its own) that this launch cannot take:
		 * the mma.sync kernel, or past its batches decode + cuBLAS */
		if (rc != -ENOTSUP || !from_auto)
			break;
		if (batch <= UWK_FUSED_MAX_BATCH) {
			rc = fused_run(&a, default_kind(batch), 0, 0, x, batch, y, s, ctx, e);
			break;
		}
		/* fall through */
	case UWK_PIPE_DECODE_GEMM:
		rc = decode_scratch(&a, r11, s, ctx, e);
		if (rc == 0)
			rc = uwk_blas_gemm(ctx, ctx->scratch, l->rows, l->cols, x, batch, y,
				       CUDA_R_16BF, s, e);
		break;
	default:
		return uwerr_set(e, EINVAL, "uwk_matmul: unknown pipeline %d", (int)pipe);
	}
	return rc < 0 ? matmul_fail(e, rc, l, batch) : 0;
}

extern "C" int uwk_matmul(const struct uw_layout *l, const void *dev_base, const void *x,
			  size_t batch, void *y, cudaStream_t s, struct uwk_ctx *ctx,
			  struct uwerr *e)
{
	return uwk_matmul_pipe(l, dev_base, x, batch, y, UWK_PIPE_AUTO, s, ctx, e);
}

extern "C" int uwk_matmul_f32(const struct uw_layout *l, const void *dev_base,
			      const void *x, size_t batch, float *y, cudaStream_t s,
			      struct uwk_ctx *ctx, struct uwerr *e)
{
	int rc = matmul_args(l, dev_base, x, batch, y, ctx, e);
	if (rc == 0)
		rc = uwk_check_ptr(y, 4, "y", e);
	if (rc < 0)
		return l ? matmul_fail(e, rc, l, batch) : rc;
	const void *w = dev_base;
	struct r12_args a;
	if (l->format != UW_FORMAT_RAW) {
		rc = uwk_args_make(l, dev_base, &a, e);
		if (rc == 0)
			rc = decode_scratch(&a, l->format == UW_FORMAT_R11, s, ctx, e);
		w = ctx->scratch;
	}
	if (rc == 0)
		rc = uwk_blas_gemm(ctx, w, l->rows, l->cols, x, batch, y, CUDA_R_32F, s, e);
	return rc < 0 ? matmul_fail(e, rc, l, batch) : 0;
}

extern "C" int uwk_matmul_fused_cfg(const struct uw_layout *l, const void *dev_base,
				    const void *x, size_t batch, void *y,
				    const struct uwk_cfg *cfg, cudaStream_t s,
				    struct uwk_ctx *ctx, struct uwerr *e)
{
	int rc = matmul_args(l, dev_base, x, batch, y, ctx, e);
	if (rc < 0)
		return l ? matmul_fail(e, rc, l, batch) : rc;
	struct r12_args a;
	if (l->format != UW_FORMAT_R12)
		rc = uwerr_set(e, EINVAL, "layout: format %u, want R12", l->format);
	else
		rc = uwk_args_make(l, dev_base, &a, e);
	if (rc < 0)
		return matmul_fail(e, rc, l, batch);
	if (batch > UWK_FUSED_MAX_BATCH)
		return uwerr_set(e, EINVAL, "uwk_matmul: fused pipeline at batch %zu (max %d)",
				 batch, UWK_FUSED_MAX_BATCH);
	const struct fused_kind *k = cfg && cfg->wm ? find_kind(cfg->wm, cfg->wk) :
				     default_kind(batch);
	if (!k)
		return uwerr_set(e, ENOTSUP, "uwk_matmul: fused shape %dx%d not built", cfg->wm, cfg->wk);
	if (cfg && (cfg->pf < 0 || cfg->pf > UWK_NPF))
		return uwerr_set(e, ENOTSUP, "uwk_matmul: prefetch variant %d not built (1..%d)",
				 cfg->pf, UWK_NPF);
	rc = fused_run(&a, k, cfg ? cfg->ks : 0, cfg ? cfg->pf : 0, x, batch, y, s, ctx, e);
	return rc < 0 ? matmul_fail(e, rc, l, batch) : 0;
}

/* Whether uwk_matmul's AUTO takes the warpgroup kernel for l and it can. */
static bool auto_wg(const struct uw_layout *l, size_t batch, struct uwk_ctx *ctx)
{
	const struct tune_choice *t;
	return auto_pipe(l, batch, true, ctx, &t) == UWK_PIPE_FUSED_WG && uwk_wg_fits(l, ctx);
}

/* Whether AUTO takes the warpgroup kernel for both W0 and W1 and no shape
 * or split is asked for (which name the mma.sync pair): then uwk_matmul2
 * makes two wg launches on one permutation of x, which beat the pair
 * (bench/NOTES.md, v20). */
static bool wg_pair(const struct uw_layout *l0, const struct uw_layout *l1, size_t batch,
		    const struct uwk_cfg *cfg, struct uwk_ctx *ctx)
{
	return !(cfg && (cfg->wm || cfg->ks)) && auto_wg(l0, batch, ctx) && auto_wg(l1, batch, ctx);
}

/* Whether uwk_matmul2 runs W0 and W1 as one launch, and with what: cfg,
 * else the context's tuned choice for the shape when it is a pair shape
 * (its split recomputed for both grids), else AUTO's defaults. Anything
 * else, and a tuned choice that is not a pair shape: two uwk_matmul. The
 * caller has ruled out wg_pair. */
static bool pair_choice(const struct uw_layout *l0, const struct uw_layout *l1, const void *x,
			size_t batch, const struct uwk_cfg *cfg, struct uwk_ctx *ctx,
			struct fused_variant *v)
{
	if (l0->format != UW_FORMAT_R12 || l1->format != UW_FORMAT_R12 ||
	    batch > UWK_FUSED_MAX_BATCH)
		return false;
	/* as uwk_args_make's aligned and fused_run's x test, for both */
	const bool xvec = l0->cols % 8 == 0 && (uintptr_t)x % 16 == 0 &&
			  l0->mant_stride % 16 == 0 && l0->nib_stride % 16 == 0 &&
			  l1->mant_stride % 16 == 0 && l1->nib_stride % 16 == 0;
	if (cfg && cfg->wm)
		return pair_variant(cfg->wm, cfg->wk, batch, xvec, cfg->pf, v);
	const struct tune_choice *t0 = tune_table_find(ctx->tune, l0->rows, l0->cols, batch),
				 *t1 = tune_table_find(ctx->tune, l1->rows, l1->cols, batch);
	const struct tune_choice *t = t0 ? t0 : t1;
	if (t && (t->pipe != TUNE_PIPE_FUSED || (t0 && t1 && memcmp(t0, t1, sizeof(*t0)))))
		return false;
	const struct fused_kind *k = t ? find_kind(t->wm, t->wk) : default_kind(batch);
	return k && pair_variant(k->wm, k->wk, batch, xvec, t ? t->pf : 0, v);
}

extern "C" int uwk_matmul2(const struct uw_layout *l0, const void *base0,
			   const struct uw_layout *l1, const void *base1, const void *x,
			   size_t batch, void *y0, void *y1, const struct uwk_cfg *cfg,
			   struct uwk_cfg *used, cudaStream_t s, struct uwk_ctx *ctx,
			   struct uwerr *e)
{
	struct fused_variant v;
	if (used)
		*used = (struct uwk_cfg){ 0, 0, 0, 0 };
	int rc = matmul_args(l0, base0, x, batch, y0, ctx, e);
	if (rc < 0)
		return l0 ? matmul_fail(e, rc, l0, batch) : rc;
	if ((rc = matmul_args(l1, base1, x, batch, y1, ctx, e)) < 0)
		return l1 ? matmul_fail(e, rc, l1, batch) : rc;
	if (l0->cols != l1->cols)
		return uwerr_set(e, EINVAL, "uwk_matmul2: W0 has %llu columns and W1 %llu: one x "
				 "cannot feed both", (unsigned long long)l0->cols,
				 (unsigned long long)l1->cols);
	struct r12_two m = {};
	auto args_both = [&]() {
		int r = uwk_args_make(l0, base0, &m.a[0], e);
		return r < 0 ? r : uwk_args_make(l1, base1, &m.a[1], e);
	};
	const bool wg = wg_pair(l0, l1, batch, cfg, ctx);
	if (wg) {
		if ((rc = args_both()) < 0)
			return matmul_fail(e, rc, l0, batch);
		rc = uwk_matmul_wg(&m.a[0], x, batch, y0, false, s, ctx, e);
		if (rc == 0) {
			rc = uwk_matmul_wg(&m.a[1], x, batch, y1, true, s, ctx, e);
			return rc < 0 ? matmul_fail(e, rc, l1, batch) : 0;
		}
		if (rc != -ENOTSUP)
			return matmul_fail(e, rc, l0, batch);
		/* refused here (its shared memory): AUTO's fallbacks, tensor by tensor */
	}
	if (wg || !pair_choice(l0, l1, x, batch, cfg, ctx, &v)) {
		if (cfg && cfg->wm)
			return uwerr_set(e, ENOTSUP, "uwk_matmul2: no two-tensor kernel of shape "
					 "%dx%d pf %d at batch %zu", cfg->wm, cfg->wk, cfg->pf, batch);
		if ((rc = uwk_matmul(l0, base0, x, batch, y0, s, ctx, e)) < 0)
			return rc;
		return uwk_matmul(l1, base1, x, batch, y1, s, ctx, e);
	}
	if ((rc = args_both()) < 0)
		return matmul_fail(e, rc, l0, batch);
	m.y[0] = (uint16_t *)y0;
	m.y[1] = (uint16_t *)y1;
	struct fused_plan p;
	rc = fused_plan_make(&v, row_tiles(m.a[0].rows, v.wm) + row_tiles(m.a[1].rows, v.wm),
			     m.a[0].cols, batch, cfg ? cfg->ks : 0, ctx, &p, e);
	if (rc == 0)
		rc = fused_launch(&m, 2, &p, v.wm, x, batch, s, ctx, e);
	if (rc < 0)
		return uwerr_prefix(e, "uwk_matmul2 %llux%llu and %llux%llu batch %zu",
				    (unsigned long long)l0->rows, (unsigned long long)l0->cols,
				    (unsigned long long)l1->rows, (unsigned long long)l1->cols, batch);
	if (used)
		*used = (struct uwk_cfg){ v.wm, v.wk, p.ks, p.fn == v.lean ? 1 : 2 };
	return 0;
}

extern "C" int uwk_cfg_list(struct uwk_cfg *out, int max)
{
	for (int i = 0; i < NKINDS && i < max; i++)
		out[i] = (struct uwk_cfg){ kinds[i].wm, kinds[i].wk, 0, 0 };
	return NKINDS;
}

extern "C" int uwk_cfg_resolve(const struct uw_layout *l, size_t batch, struct uwk_ctx *ctx,
			       struct uwk_cfg *cfg, struct uwerr *e)
{
	if (!l || !ctx || !cfg || batch == 0 || batch > UWK_FUSED_MAX_BATCH || !l->cols ||
	    l->rows > INT32_MAX / 16 || l->cols > UINT32_MAX)
		return uwerr_set(e, EINVAL, "uwk_cfg_resolve: bad arguments");
	const struct fused_kind *k = cfg->wm ? find_kind(cfg->wm, cfg->wk) : default_kind(batch);
	if (!k)
		return uwerr_set(e, ENOTSUP, "uwk_matmul: fused shape %dx%d not built", cfg->wm, cfg->wk);
	if (cfg->pf < 0 || cfg->pf > UWK_NPF || cfg->ks < 0)
		return uwerr_set(e, ENOTSUP, "uwk_matmul: prefetch variant %d or split %d not built",
				 cfg->pf, cfg->ks);
	const struct fused_variant v = kind_variant(k, batch, true, cfg->pf);
	struct fused_plan p;
	int rc = fused_plan_make(&v, row_tiles((uint32_t)l->rows, k->wm), (uint32_t)l->cols, batch,
				 cfg->ks, ctx, &p, e);
	if (rc < 0)
		return rc;
	*cfg = (struct uwk_cfg){ k->wm, k->wk, p.ks, cfg->pf ? cfg->pf : default_pf(batch) };
	return 0;
}

extern "C" int uwk_cfg_default(const struct uw_layout *l, size_t batch, struct uwk_ctx *ctx,
			       struct uwk_cfg *out, struct uwerr *e)
{
	if (!out)
		return uwerr_set(e, EINVAL, "uwk_cfg_default: bad arguments");
	*out = (struct uwk_cfg){ 0, 0, 0, 0 };
	return uwk_cfg_resolve(l, batch, ctx, out, e);
}
