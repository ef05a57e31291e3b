/* r11: uwk_decode for the R11 format (docs/FORMAT.md, "R11"). A warp
 * decodes one tile of 16 rows x 128 columns: lane l takes code units l and
 * 32 + l (rows l/4 and 8 + l/4 of a full-width tile, columns 32 (l % 4)..),
 * turns each unit's three words into R12's index nibbles and R12's pair
 * decoder rebuilds its 32 elements (a patched one with palette[7]) into the
 * warp's copy of the tile in shared memory; the warp writes the tile's
 * patches over it, a patch a lane, and then the tile out, each lane its
 * units (the patches' scattered 2-byte stores straight to the output made
 * the decode half as fast: bench/NOTES.md, R11 v2). The tile's first 64
 * patches are loaded with its planes, the next tile's index entries a tile
 * ahead. Tiles narrower than 128 columns take an element-by-element path,
 * patched in place. */
#include <errno.h>
#include <stdint.h>

#include "kernels/cuda/uwk_int.h"

extern "C" {
#include "kernels/resident.h"
}

#define R11_THREADS 256
#define TILE_ROW 272          /* bytes a row of a warp's tile: 256, padded for the banks */
#define TILE_BYTES (16 * TILE_ROW)
#define R11_DEC_TAB (R11_TAB_N * 32 * 4)

/* ST16: cols % 8 == 0 and out 16-byte aligned: 8 elements a store.
 * Dynamic shared memory: the lanes' table (its R11_TAB_N entries), then
 * each warp's tile. */
template <bool ST16>
__global__ void __launch_bounds__(R11_THREADS)
r11_decode_kernel(const r12_args a, uint16_t *__restrict__ out)
{
	extern __shared__ __align__(16) uint8_t dsm[];
	__shared__ uint8_t xt[32];
	uint8_t *const tile = dsm + R11_DEC_TAB + (threadIdx.x / 32) * TILE_BYTES;
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
#pragma unroll
		for (int hh = 0; hh < 2; hh++) {
			const uint32_t u = lane + 32 * hh;
			if (u >= units)
				continue;
			uint32_t b[3];
#pragma unroll
			for (int j = 0; j < 3; j++)
				b[j] = __ldg(code + j * units + u);
			if (w == 128) {
				const uint32_t row = r0 + u / 4, col = c0 + 32 * (u % 4);
				const uint8_t *mrow = a.mant + (uint64_t)row * a.mstride + col;
				uint32_t sm[8], ix[4], v[16];
				if (a.aligned) {
					const uint4 s0 = ld_stream(mrow), s1 = ld_stream(mrow + 16);
					sm[0] = s0.x, sm[1] = s0.y, sm[2] = s0.z, sm[3] = s0.w;
					sm[4] = s1.x, sm[5] = s1.y, sm[6] = s1.z, sm[7] = s1.w;
				} else {
					ld_bytes<8>(sm, mrow, 32);
				}
				r11_nibbles(b, ix);
				r12_decode32(lt, sm, ix, v);
				uint4 *ts = (uint4 *)(tile + (u / 4) * TILE_ROW + 64 * (u % 4));
#pragma unroll
				for (int q = 0; q < 4; q++)
					ts[q] = make_uint4(v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
			} else {
				uint32_t ix[4];
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
		for (uint32_t hh = 0; hh < 2 && w == 128; hh++) {
			const uint32_t u = lane + 32 * hh;
			if (u >= units)
				continue;
			const uint32_t *ts = (const uint32_t *)(tile + (u / 4) * TILE_ROW + 64 * (u % 4));
			uint16_t *o = out + (uint64_t)(r0 + u / 4) * a.cols + c0 + 32 * (u % 4);
			if (ST16) {
#pragma unroll
				for (int q = 0; q < 4; q++)
					((uint4 *)o)[q] = ((const uint4 *)ts)[q];
			} else {
#pragma unroll
				for (int q = 0; q < 16; q++) {
					o[2 * q] = (uint16_t)ts[q];
					o[2 * q + 1] = (uint16_t)(ts[q] >> 16);
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
	const size_t smem = R11_DEC_TAB + R11_THREADS / 32 * TILE_BYTES;
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
