/* uwk_int: what the CUDA kernel files share (CUDA C++ only): kernel
 * arguments, the R12 pair decoder, 16-byte loads, the context and the
 * checking macro for CUDA calls. */
#ifndef UW_KERNELS_CUDA_UWK_INT_H
#define UW_KERNELS_CUDA_UWK_INT_H

#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/cuda/uwk.h"

extern "C" {
#include "kernels/tunecache.h"
}

#define UWK_NPF 2           /* prefetch depths built: pf = PD = 1, 2 (3 never won, v6) */

/* One R12 or R11 tensor as the kernels see it (validated by uwk_args_make). */
struct r12_args {
	const uint8_t *mant;      /* sign|mantissa plane, row stride mstride */
	const uint8_t *nib;       /* R12: index plane, row stride nstride;
				   * R11: code plane, 16-row group stride nstride */
	const uint32_t *pgrp;     /* R12: [groups + 1] first patch of each 16-row group;
				   * R11: [tiles + 1] first patch of each tile */
	const uint32_t *patch;    /* R12: [npatch] (row % 16) << 28 | col << 8 | exponent, ascending */
	const uint16_t *pe;       /* R11: [npatch] exponent table index << 11 | row << 7 | col in the tile */
	const uint8_t *psm;       /* R11: [npatch] the patched elements' sign|mantissa bytes */
	const uint8_t *xtab;      /* R11: [32] the patched elements' exponents */
	uint64_t mstride, nstride;
	uint32_t rows, cols, npatch;
	uint32_t nk;              /* R11: tiles across, ceil(cols / 128) */
	uint32_t aligned;         /* R12: both planes' rows start on 16 bytes: vector loads;
				   * R11: the sign|mantissa plane's do */
	uint32_t pal[4];          /* the 16 palette bytes, little-endian */
};

struct uwk_ctx {
	int device, sms;
	cublasHandle_t blas;      /* NULL until the first cuBLAS call (blas.cu) */
	void *scratch;            /* decoded BF16 W for the cuBLAS pipeline */
	size_t scratch_bytes;
	float *part;              /* split-K partial sums: [ks][batch][rows] (mma.sync),
				   * per tile (matmul_wg.cu) */
	size_t part_bytes;
	void *xperm;              /* x in the warpgroup kernel's order (matmul_wg.cu) */
	size_t xperm_bytes;
	uint32_t *done;           /* split-K counters, one a tile, zero between launches */
	size_t done_bytes;
	struct tune_table *tune;  /* AUTO's tuned choices for this device, or NULL */
	struct tune_key key;      /* the device's tune cache key (uwk_tune_key); key.cc, the
				   * compute capability, says whether wgmma (sm_90a) runs */
};

/* y[batch][rows] = x . W^T by cublasGemmEx (blas.cu: cuBLAS loaded, and
 * c's handle created, at the first call), W BF16 [rows][cols] row-major,
 * y of type yt; and the handle's end, at uwk_ctx_free. */
int uwk_blas_gemm(struct uwk_ctx *c, const void *w, uint64_t rows, uint64_t cols,
		  const void *x, size_t batch, void *y, cudaDataType_t yt, cudaStream_t s,
		  struct uwerr *e);
void uwk_blas_free(struct uwk_ctx *c);

/* Fill c->key (tune.cu), once, at uwk_ctx_new. */
int uwk_tune_key_make(struct uwk_ctx *c, struct uwerr *e);

/* Record a failed CUDA call: "call: reason (file:line)"; returns -errno. */
int uwk_cuda_fail(struct uwerr *e, cudaError_t err, const char *call,
		  const char *file, int line);
#define UWK_CK(e, call) do { \
	cudaError_t ck_ = (call); \
	if (ck_ != cudaSuccess) \
		return uwk_cuda_fail((e), ck_, #call, __FILE__, __LINE__); \
} while (0)

/* Check an R12 or R11 layout and its base for the kernels and fill *a. */
int uwk_args_make(const struct uw_layout *l, const void *dev_base,
		  struct r12_args *a, struct uwerr *e);
/* Check that p is a device pointer aligned to align bytes; what names it. */
int uwk_check_ptr(const void *p, size_t align, const char *what, struct uwerr *e);
/* Grow a context buffer to at least bytes (contents lost). */
int uwk_ctx_reserve(void **buf, size_t *have, size_t bytes, const char *what,
		    struct uwerr *e);
/* At least n split-K counters in c->done, zeroed on s when they grow (the
 * kernels leave them zero). */
int uwk_ctx_counters(struct uwk_ctx *c, uint64_t n, cudaStream_t s, struct uwerr *e);
/* Whether the warpgroup kernel (matmul_wg.cu) takes l on c's device: R12,
 * rows on 16 bytes, compute capability 9.0 (matmul.cu). And whether AUTO,
 * untuned, takes it at this batch: 9 to UWK_AUTO_WG_MAX_BATCH, where it
 * beats the mma.sync loop and decode + cuBLAS (bench/NOTES.md, v17, v20;
 * the lean loop stays faster at batch <= 8). */
bool uwk_wg_fits(const struct uw_layout *l, const struct uwk_ctx *c);
bool uwk_wg_default(const struct uw_layout *l, size_t batch, const struct uwk_ctx *c);
/* Queue the R12 decode of a (checked) into out, BF16 [rows][cols]. */
int uwk_decode_r12(const struct r12_args *a, uint16_t *out, cudaStream_t s,
		   struct uwerr *e);
/* Queue the R11 decode of a (checked) into out, BF16 [rows][cols] (r11.cu). */
int uwk_decode_r11(const struct r12_args *a, uint16_t *out, cudaStream_t s, struct uwerr *e);

/* ---- device helpers ---- */

/* The exponent bits of a column pair from its index byte i: palette[i & 15]
 * for the even column at bit 7, palette[i >> 4] for the odd one at bit 23,
 * so one lookup and one OR give two BF16 values. p0, p1: the 16 palette
 * bytes (R12's, or R11's with 0 for its escape code) as two little-endian
 * 64-bit words: no run-time index into the parameters, which would copy
 * them to local memory. */
__device__ __forceinline__ uint32_t r12_pal_pair(uint64_t p0, uint64_t p1, int i)
{
	const int l = i & 15, h = i >> 4;
	const uint32_t lo = (uint32_t)((l < 8 ? p0 : p1) >> (8 * (l & 7))) & 0xff;
	const uint32_t hi = (uint32_t)((h < 8 ? p0 : p1) >> (8 * (h & 7))) & 0xff;
	return lo << 7 | hi << 23;
}

/* The table once per lane (R12_LANE_TAB bytes, 16-byte aligned): entry i of
 * lane l at word 32 i + l, so a warp's 32 lookups fall in 32 distinct banks
 * whatever the indices (with one table, about 3 wavefronts a lookup:
 * bench/NOTES.md, v12). pal: the palette as little-endian words. n: the
 * entries built, 256, or R11_TAB_N for R11's codes (both nibbles below 8).
 * Block-cooperative. */
#define R12_LANE_TAB (256 * 32 * 4)
#define R11_TAB_N 0x78
#define R11_LANE_TAB (R11_TAB_N * 32 * 4)   /* the lanes' table of R11's entries */
__device__ __forceinline__ void r12_table(uint8_t *rtab, const uint32_t pal[4], int n = 256)
{
	const uint64_t p0 = pal[0] | (uint64_t)pal[1] << 32;
	const uint64_t p1 = pal[2] | (uint64_t)pal[3] << 32;
	for (int i = threadIdx.x; i < n * 8; i += blockDim.x) {
		const uint32_t v = r12_pal_pair(p0, p1, i >> 3);
		*(uint4 *)(rtab + 16 * i) = make_uint4(v, v, v, v);
	}
}

__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel)
{
	uint32_t d;
	asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(sel));
	return d;
}

/* The lane's copy of the table (r12_table): its entry i at lt + 128 i. */
__device__ __forceinline__ const uint8_t *r12_lane_tab(const uint8_t *rtab, uint32_t lane)
{
	return rtab + 4 * lane;
}

/* The entry of index i (0..255) in the lane's copy of the table. */
__device__ __forceinline__ uint32_t r12_entry(const uint8_t *lt, uint32_t i)
{
	return *(const uint32_t *)(lt + (i << 7));
}

/* The entry of index byte k of w, the byte taken out by one prmt (R11's
 * fused loop, whose index words are built in registers, runs 4-7 % faster
 * than with a shift and a mask; bench/NOTES.md, v25). */
__device__ __forceinline__ uint32_t r12_entry_of(const uint8_t *lt, uint32_t w, int k)
{
	return r12_entry(lt, prmt(w, 0, 0x4440 + k));
}

/* Two BF16 (a column pair, even column in the low half) from four
 * sign|mantissa bytes sm (which = 0: bytes 0,1; which = 1: bytes 2,3) and
 * the pair's exponent bits. prmt's sign mode (selector bit 3) copies each
 * byte's top bit across the byte above it, so the mask leaves s<<15 | m. */
template <int which>
__device__ __forceinline__ uint32_t r12_pair(uint32_t sm, uint32_t ebits)
{
	uint32_t v = prmt(sm, 0, which ? 0xB3A2 : 0x9180);
	return (v & 0x807f807fu) | ebits;
}

/* 32 columns of one row: sm[8] words (32 sign|mantissa bytes) and ix[4]
 * words (16 index bytes) -> w[16] BF16 pairs (pair p = columns 2p, 2p+1),
 * with the lane's table lt (r12_lane_tab). */
__device__ __forceinline__ void r12_decode32(const uint8_t *lt, const uint32_t sm[8],
					     const uint32_t ix[4], uint32_t w[16])
{
#pragma unroll
	for (int q = 0; q < 8; q++) {
		const int k = 2 * (q & 1);
		w[2 * q] = r12_pair<0>(sm[q], r12_entry_of(lt, ix[q >> 1], k));
		w[2 * q + 1] = r12_pair<1>(sm[q], r12_entry_of(lt, ix[q >> 1], k + 1));
	}
}

/* The R11 codes of a unit's 32 elements from its words b = {A, B, C}, as
 * R12 index nibbles: ix[q] holds elements 8q .. 8q + 7, 4 bits each (A and
 * B hold the low two bits of q even and odd, C the high bits at 4r + q:
 * docs/FORMAT.md, "R11"). */
__device__ __forceinline__ void r11_nibbles(const uint32_t b[3], uint32_t ix[4])
{
	const uint32_t lo = 0x33333333u, hi = 0x44444444u;
	ix[0] = (b[0] & lo) | (b[2] << 2 & hi);
	ix[1] = (b[1] & lo) | (b[2] << 1 & hi);
	ix[2] = (b[0] >> 2 & lo) | (b[2] & hi);
	ix[3] = (b[1] >> 2 & lo) | (b[2] >> 1 & hi);
}

/* The BF16 of exponent ex and sign|mantissa byte sm. */
__device__ __forceinline__ uint16_t bf16_of(uint32_t ex, uint32_t sm)
{
	return (uint16_t)((sm & 0x80u) << 8 | ex << 7 | (sm & 0x7fu));
}

/* R11: patch i's two loads, as loaded (0 at or past end): a loop may
 * carry them in flight and join them where it uses them. */
struct r11_praw {
	uint32_t pe, sm;
};

__device__ __forceinline__ r11_praw r11_patch_ld(const struct r12_args &a, uint32_t i, uint32_t end)
{
	r11_praw p = {0, 0};
	if (i < end)
		p = {__ldg(a.pe + i), __ldg(a.psm + i)};
	return p;
}

/* R11: a patch's position and exponent table index (pe) with its
 * sign|mantissa byte above bit 16. */
__device__ __forceinline__ uint32_t r11_patch_join(r11_praw p)
{
	return p.pe | p.sm << 16;
}

/* R11: patch i, joined; 0 at or past end. */
__device__ __forceinline__ uint32_t r11_patch(const struct r12_args &a, uint32_t i, uint32_t end)
{
	return r11_patch_join(r11_patch_ld(a, i, end));
}

/* R11, the fused kernel: a lane's decoded words (w[h][p]: row g + 8h,
 * columns 2p and 2p + 1 of its 32; a patched element with palette[7]'s
 * exponent) through the warp's staging area ws (R11_WST words a lane, its
 * 16-byte slot q at q ^ (lane & 7): the 16-byte accesses of 8 lanes fall in
 * distinct banks), where each patch of the chunk, [first, end) (the first
 * 64 in p[], a lane each), writes its element's BF16 into the word of the
 * lane that holds it; then read back. So the mma takes W exact, at a cost
 * that does not grow with the batch (adding each patch's x . (W - dense W)
 * per batch row did: R11 v4). */
#define R11_WST 32

__device__ __forceinline__ void r11_patch_regs(uint32_t w[2][16], uint32_t *ws, const uint8_t *xt,
					       const uint32_t p[2], uint32_t first, uint32_t end,
					       const struct r12_args &a)
{
	const uint32_t lane = threadIdx.x & 31, sw = lane & 7;
	uint4 *const mine = (uint4 *)(ws + lane * R11_WST);
#pragma unroll
	for (int q = 0; q < 8; q++) {
		const uint32_t *v = w[q >> 2] + 4 * (q & 3);
		mine[q ^ sw] = make_uint4(v[0], v[1], v[2], v[3]);
	}
	__syncwarp();
	for (uint32_t k = lane; first + k < end; k += 32) {
		const uint32_t v = k < 32 ? p[0] : k < 64 ? p[1] : r11_patch(a, first + k, end);
		const uint32_t r = v >> 7 & 15, col = v & 127;
		const uint32_t o = (r & 7) * 4 + col / 32, wi = (r >> 3) * 16 + col % 32 / 2;
		const uint32_t at = o * R11_WST + ((wi / 4) ^ (o & 7)) * 4 + wi % 4;
		((uint16_t *)(ws + at))[col & 1] = bf16_of(xt[v >> 11 & 31], v >> 16);
	}
	__syncwarp();
#pragma unroll
	for (int q = 0; q < 8; q++) {
		const uint4 v = mine[q ^ sw];
		uint32_t *d = w[q >> 2] + 4 * (q & 3);
		d[0] = v.x, d[1] = v.y, d[2] = v.z, d[3] = v.w;
	}
}

/* R11: the layout's exponent table (32 bytes, any alignment) into xt.
 * Block-cooperative. */
__device__ __forceinline__ void r11_xtab(uint8_t *xt, const struct r12_args &a)
{
	if (threadIdx.x < 32)
		xt[threadIdx.x] = __ldg(a.xtab + threadIdx.x);
}

/* A 16-byte store to 16-byte aligned global memory, as one instruction
 * (nvcc split a plain uint4 store into four 4-byte ones: R11 v3). */
__device__ __forceinline__ void st_global16(void *p, uint4 v)
{
	asm volatile("st.global.v4.u32 [%0], {%1,%2,%3,%4};"
		     :: "l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
}

/* Read-once 16-byte load that skips L1: the planes are streamed. */
__device__ __forceinline__ uint4 ld_stream(const void *p)
{
	uint4 v;
	asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
		     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
	return v;
}

/* Raw planes of 32 columns of one row, zero past the row's end. */
struct r12_raw32 {
	uint32_t sm[8], ix[4];
};

/* Byte loads for rows that vector loads cannot read (packed, unaligned):
 * n bytes of p (n <= 4 * W), zero past, as W little-endian words. */
template <int W>
__device__ __forceinline__ void ld_bytes(uint32_t w[W], const uint8_t *p, uint32_t n)
{
#pragma unroll
	for (int k = 0; k < W; k++) {
		uint32_t v = 0;
#pragma unroll
		for (int i = 0; i < 4; i++)
			if (4 * k + i < (int)n)
				v |= (uint32_t)__ldg(p + 4 * k + i) << (8 * i);
		w[k] = v;
	}
}

/* ALN: the layout's rows start on 16 bytes (uwk_args_make says), so the
 * planes are read with 16-byte loads (which may run into the row's
 * padding, never past the plane); else byte by byte, bounded by the row. */
template <bool ALN>
__device__ __forceinline__ void r12_load32(r12_raw32 &r, const uint8_t *mrow,
					   const uint8_t *nrow, uint32_t c, uint32_t cols,
					   bool row_ok)
{
	if (!ALN) {
		const uint32_t n = row_ok && c < cols ? min(32u, cols - c) : 0;
		ld_bytes<4>(r.sm, mrow + c, min(n, 16u));
		ld_bytes<4>(r.sm + 4, mrow + c + 16, n > 16 ? n - 16 : 0);
		ld_bytes<4>(r.ix, nrow + c / 2, (n + 1) / 2);
		return;
	}
	uint4 a = make_uint4(0, 0, 0, 0), b = a, n = a;
	if (row_ok && c < cols) {
		a = ld_stream(mrow + c);
		n = ld_stream(nrow + c / 2);
		if (c + 16 < cols)
			b = ld_stream(mrow + c + 16);
	}
	r.sm[0] = a.x; r.sm[1] = a.y; r.sm[2] = a.z; r.sm[3] = a.w;
	r.sm[4] = b.x; r.sm[5] = b.y; r.sm[6] = b.z; r.sm[7] = b.w;
	r.ix[0] = n.x; r.ix[1] = n.y; r.ix[2] = n.z; r.ix[3] = n.w;
}

#endif
