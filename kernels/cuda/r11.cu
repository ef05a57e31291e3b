/* r11: uwk_decode for the R11 format (docs/FORMAT.md, "R11"). A warp
 * decodes one tile of 16 rows x 128 columns into its copy of the tile in
 * shared memory: each lane turns the code words of its 16-column pieces
 * into R12's index nibbles and R12's pair decoder rebuilds the elements (a
 * patched one with palette[7]). The warp then writes the tile's patches
 * over it, a patch a lane, and the tile out, two whole rows a store
 * instruction (the patches' scattered 2-byte stores straight to the output
 * made the decode half as fast: bench/NOTES.md, R11 v2). The tile's first
 * 64 patches are loaded with its planes, the next tile's index entries a
 * tile ahead. Tiles narrower than 128 columns take an element-by-element
 * path, patched in place. */
#include <errno.h>
#include <stdint.h>

#include "kernels/cuda/uwk_int.h"

extern "C" {
#include "kernels/resident.h"
}

#define R11_THREADS 256
#define TILE_ROW 272          /* bytes a row of a warp's tile: 256, padded for the banks */
#define TILE_BYTES (16 * TILE_ROW)

/* A full-width tile (16 x 128, h rows) into the warp's shared copy. Lane l
 * takes 16 columns, 16 (l % 8).., of rows l / 8, 4 + l / 8, 8 + l / 8 and
 * 12 + l / 8: each 16-byte sign|mantissa load of the warp covers four whole
 * rows (128 contiguous bytes each; a lane reading its unit's 32 bytes
 * asked L2 for every sector twice: bench/NOTES.md, R11 v3). Those 16
 * columns are half a code unit: the low bits of q = 2 (l & 1) in A, of
 * q + 1 in B, the high bits at 4r + q of C (docs/FORMAT.md, "R11"). */
__device__ __forceinline__ void r11_tile_full(const r12_args &a, const uint8_t *lt,
					      const uint32_t *code, uint32_t units, uint32_t r0,
					      uint32_t c0, uint32_t h, uint8_t *tile)
{
	const uint32_t lane = threadIdx.x & 31, m = lane & 7, q = 2 * (m & 1);
	const uint32_t lo = 0x33333333u, hi = 0x44444444u;
#pragma unroll
	for (int j = 0; j < 2; j++) {
		uint32_t sm[8], ix[4], v[16];
#pragma unroll
		for (int k = 0; k < 2; k++) {
			const uint32_t row = 8 * j + 4 * k + lane / 8, u = 4 * row + m / 2;
			uint32_t A = 0, B = 0, C = 0, *smk = sm + 4 * k;
			smk[0] = smk[1] = smk[2] = smk[3] = 0;
			if (row < h) {
				A = __ldg(code + u), B = __ldg(code + units + u), C = __ldg(code + 2 * units + u);
				const uint8_t *mrow = a.mant + (uint64_t)(r0 + row) * a.mstride + c0 + 16 * m;
				if (a.aligned) {
					const uint4 s = ld_stream(mrow);
					smk[0] = s.x, smk[1] = s.y, smk[2] = s.z, smk[3] = s.w;
				} else {
					ld_bytes<4>(smk, mrow, 16);
				}
			}
			ix[2 * k] = (A >> q & lo) | (C >> q << 2 & hi);
			ix[2 * k + 1] = (B >> q & lo) | (C >> (q + 1) << 2 & hi);
		}
		r12_decode32(lt, sm, ix, v);
		/* lanes m and m + 4 of a row would share banks: they store
		 * their two halves in opposite order */
		const uint32_t sw = m >> 2 & 1;
#pragma unroll
		for (int k = 0; k < 2; k++) {
			const uint32_t row = 8 * j + 4 * k + lane / 8;
			if (row >= h)
				continue;
			const uint32_t *p = v + 8 * k;
			const uint4 l4 = make_uint4(p[0], p[1], p[2], p[3]);
			const uint4 h4 = make_uint4(p[4], p[5], p[6], p[7]);
			uint4 *ts = (uint4 *)(tile + row * TILE_ROW + 32 * m);
			ts[sw] = sw ? h4 : l4;
			ts[sw ^ 1] = sw ? l4 : h4;
		}
	}
}

/* A tile narrower than 128 columns, element by element, straight to out:
 * lane l takes code units l and 32 + l. */
__device__ __forceinline__ void r11_tile_narrow(const r12_args &a, const uint8_t *lt,
						const uint32_t *code, uint32_t units, uint32_t r0,
						uint32_t c0, uint32_t h, uint32_t w, uint16_t *out)
{
	const uint32_t lane = threadIdx.x & 31;
#pragma unroll
	for (int hh = 0; hh < 2; hh++) {
		const uint32_t u = lane + 32 * hh;
		if (u >= units)
			continue;
		uint32_t b[3], ix[4];
#pragma unroll
		for (int j = 0; j < 3; j++)
			b[j] = __ldg(code + j * units + u);
		r11_nibbles(b, ix);
		for (uint32_t e = 0; e < 32 && 32 * u + e < h * w; e++) {
			const uint32_t p = 32 * u + e, row = r0 + p / w, col = c0 + p % w;
			/* ix[e / 8] by selects: an index would put ix on the stack */
			const uint32_t ixq = e < 8 ? ix[0] : e < 16 ? ix[1] : e < 24 ? ix[2] : ix[3];
			const uint32_t c = ixq >> 4 * (e % 8) & 7;
			out[(uint64_t)row * a.cols + col] =
				bf16_of((r12_entry(lt, c) >> 7) & 0xff,
					__ldg(a.mant + (uint64_t)row * a.mstride + col));
		}
	}
}

/* ST16: cols % 8 == 0 and out 16-byte aligned: 8 elements a store.
 * Dynamic shared memory: the lanes' table (its R11_TAB_N entries), then
 * each warp's tile. */
template <bool ST16>
__global__ void __launch_bounds__(R11_THREADS)
r11_decode_kernel(const r12_args a, uint16_t *__restrict__ out)
{
	extern __shared__ __align__(16) uint8_t dsm[];
	__shared__ uint8_t xt[32];
	uint8_t *const tile = dsm + R11_LANE_TAB + (threadIdx.x / 32) * TILE_BYTES;
	r12_table(dsm, a.pal, R11_TAB_N);
	r11_xtab(xt, a);
	__syncthreads();
	const uint32_t lane = threadIdx.x & 31;
	const uint8_t *const lt = r12_lane_tab(dsm, lane);
	const uint64_t nwarps = (uint64_t)gridDim.x * blockDim.x / 32;
	const uint64_t tiles = (uint64_t)((a.rows + 15) / 16) * a.nk;
	uint64_t t = ((uint64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
	uint32_t first = t < tiles ? a.pgrp[t] : 0, last = t < tiles ? a.pgrp[t + 1] : 0;
	for (; t < tiles; t += nwarps) {
		const uint32_t g = (uint32_t)(t / a.nk), k = (uint32_t)(t % a.nk);
		const uint32_t r0 = 16 * g, c0 = 128 * k;
		const uint32_t h = min(16u, a.rows - r0), w = min(128u, a.cols - c0);
		const uint32_t units = (h * w + 31) / 32;
		const uint32_t *code = (const uint32_t *)(a.nib + g * a.nstride + (uint64_t)k * 48 * h);
		const uint32_t end = min(last, a.npatch), f = first;
		const uint32_t p0 = r11_patch(a, f + lane, end), p1 = r11_patch(a, f + lane + 32, end);
		if (t + nwarps < tiles) {
			first = a.pgrp[t + nwarps];
			last = a.pgrp[t + nwarps + 1];
		}
		if (w == 128)
			r11_tile_full(a, lt, code, units, r0, c0, h, tile);
		else
			r11_tile_narrow(a, lt, code, units, r0, c0, h, w, out);
		/* the patches over the elements written above (the shared tile,
		 * or the output for a narrow tile); a patch outside its tile (a
		 * corrupt layout) writes nothing */
		__syncwarp();
		for (uint32_t i = lane; f + i < end; i += 32) {
			const uint32_t v = i < 32 ? p0 : i < 64 ? p1 : r11_patch(a, f + i, end);
			const uint32_t r = v >> 7 & 15, c = v & 127;
			const uint16_t x = bf16_of(xt[v >> 11 & 31], v >> 16);
			if (r < h && c < w && w == 128)
				*(uint16_t *)(tile + r * TILE_ROW + 2 * c) = x;
			else if (r < h && c < w)
				out[(uint64_t)(r0 + r) * a.cols + c0 + c] = x;
		}
		__syncwarp();
		/* the tile out: each store instruction of the warp two whole
		 * rows (256 contiguous bytes each), lane l 16 bytes of row
		 * 2i + l / 16 */
		for (uint32_t i = 0; i < 8 && w == 128; i++) {
			const uint32_t row = 2 * i + lane / 16, c = 8 * (lane % 16);
			if (row >= h)
				break;
			const uint4 v = *(const uint4 *)(tile + row * TILE_ROW + 2 * c);
			uint16_t *o = out + (uint64_t)(r0 + row) * a.cols + c0 + c;
			if (ST16) {
				st_global16(o, v);
			} else {
				const uint32_t vv[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
				for (int q = 0; q < 4; q++) {
					o[2 * q] = (uint16_t)vv[q];
					o[2 * q + 1] = (uint16_t)(vv[q] >> 16);
				}
			}
		}
		__syncwarp();      /* the next tile's stores after these reads */
	}
}

int uwk_decode_r11(const struct r12_args *a, uint16_t *out, cudaStream_t s, struct uwerr *e)
{
	int dev, sms;
	const bool st16 = a->cols % 8 == 0 && (uintptr_t)out % 16 == 0;
	auto fn = st16 ? r11_decode_kernel<true> : r11_decode_kernel<false>;
	int per_sm = 0;
	const size_t smem = R11_LANE_TAB + R11_THREADS / 32 * TILE_BYTES;
	UWK_CK(e, cudaGetDevice(&dev));
	UWK_CK(e, cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
	UWK_CK(e, cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
	UWK_CK(e, cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, R11_THREADS, smem));
	const uint64_t tiles = (uint64_t)((a->rows + 15) / 16) * a->nk;
	uint64_t blocks = (tiles * 32 + R11_THREADS - 1) / R11_THREADS;
	const uint64_t wave = (uint64_t)sms * (per_sm > 0 ? per_sm : 1);
	if (blocks > wave)
		blocks = wave;
	fn<<<(unsigned)blocks, R11_THREADS, smem, s>>>(*a, out);
	UWK_CK(e, cudaGetLastError());
	return 0;
}
