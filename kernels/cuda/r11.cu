/* r11: uwk_decode for the R11 format (docs/FORMAT.md, "R11"). A warp
 * decodes one tile of 16 rows x 128 columns: lane l takes code units l and
 * 32 + l (rows l/4 and 8 + l/4 of a full-width tile, columns 32 (l % 4)..)
 * and turns each unit's three bit words into R12's index nibbles. A warp
 * prefix sum of the units' escape counts places each lane's escapes, read
 * from the tile's first 128 escape bytes, loaded by the warp into shared
 * memory at once; an escape whose exponent is one of the layout's hints
 * gets that table index, so R12's pair decoder rebuilds all 32 elements,
 * and the rare others are written again after it. Tiles narrower than 128
 * columns take an element-by-element path. */
#include <errno.h>
#include <stdint.h>

#include "kernels/cuda/uwk_int.h"

extern "C" {
#include "kernels/resident.h"
}

#define R11_THREADS 256

__device__ __forceinline__ uint16_t bf16_of(uint32_t ex, uint32_t sm)
{
	return (uint16_t)((sm & 0x80u) << 8 | ex << 7 | (sm & 0x7fu));
}

/* ST16: cols % 8 == 0 and out 16-byte aligned: 8 elements a store. */
template <bool ST16>
__global__ void __launch_bounds__(R11_THREADS)
r11_decode_kernel(const r12_args a, uint16_t *__restrict__ out)
{
	__shared__ __align__(16) uint8_t rtab[R12_LANE_TAB];
	__shared__ uint32_t win[R11_THREADS / 32][32];
	__shared__ uint8_t emap[256];
	r12_table(rtab, a.pal);
	r11_emap(emap, a.pal);
	__syncthreads();
	const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x / 32;
	const uint8_t *const lt = r12_lane_tab(rtab, lane);
	const uint64_t nwarps = (uint64_t)gridDim.x * blockDim.x / 32;
	const uint64_t tiles = (uint64_t)((a.rows + 15) / 16) * a.nk;
	for (uint64_t t = ((uint64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; t < tiles;
	     t += nwarps) {
		const uint32_t g = (uint32_t)(t / a.nk), k = (uint32_t)(t % a.nk);
		const uint32_t r0 = 16 * g, c0 = 128 * k;
		const uint32_t h = min(16u, a.rows - r0), w = min(128u, a.cols - c0);
		const uint32_t units = (h * w + 31) / 32;
		const uint32_t *code = (const uint32_t *)(a.nib + g * a.nstride + (uint64_t)k * 48 * h);
		const uint32_t first = a.pgrp[t], lim = min(a.pgrp[t + 1], a.npatch);
		const uint32_t wv = r11_window(a, first, lane), wbase = first & ~3u;
		uint32_t b[2][3], m[2], pre[2];
#pragma unroll
		for (int hh = 0; hh < 2; hh++) {
			const uint32_t u = lane + 32 * hh;
#pragma unroll
			for (int j = 0; j < 3; j++)
				b[hh][j] = u < units ? __ldg(code + j * units + u) : 0;
			m[hh] = b[hh][0] & b[hh][1] & b[hh][2];
		}
		r11_prefix(m, lane, pre);
		/* the tile's first 128 escape bytes in shared memory, the rest
		 * read where they are; a corrupt index or code plane reads
		 * nothing outside the escapes (exponent 0; the CRC tells) */
		__syncwarp();
		win[warp][lane] = wv;
		__syncwarp();
		auto escaped = [&](uint32_t i) -> uint32_t {
			const uint32_t off = i - wbase;
			return off < 128 ? ((const uint8_t *)win[warp])[off] : i < lim ? __ldg(a.esc + i) : 0;
		};
#pragma unroll
		for (int hh = 0; hh < 2; hh++) {
			const uint32_t u = lane + 32 * hh, i0 = first + pre[hh];
			if (u >= units)
				continue;
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
				r11_nibbles(b[hh], ix);
				uint32_t slow = r11_hints(ix, m[hh], i0, emap, escaped);
				r12_decode32(lt, sm, ix, v);
				uint16_t *o = out + (uint64_t)row * a.cols + col;
				if (ST16) {
#pragma unroll
					for (int q = 0; q < 4; q++)
						((uint4 *)o)[q] = make_uint4(v[4 * q], v[4 * q + 1],
									     v[4 * q + 2], v[4 * q + 3]);
				} else {
#pragma unroll
					for (int q = 0; q < 16; q++) {
						o[2 * q] = (uint16_t)v[q];
						o[2 * q + 1] = (uint16_t)(v[q] >> 16);
					}
				}
				/* escapes outside the hints again, after the stores above */
				for (; slow; slow &= slow - 1) {
					const uint32_t j = __ffs(slow) - 1;
					o[j] = bf16_of(escaped(i0 + __popc(m[hh] & ((1u << j) - 1))),
						       __ldg(mrow + j));
				}
			} else {
				uint32_t i = i0;
				for (uint32_t j = 0; j < 32 && 32 * u + j < h * w; j++) {
					const uint32_t p = 32 * u + j, row = r0 + p / w, col = c0 + p % w;
					const uint32_t c = (b[hh][0] >> j & 1) | (b[hh][1] >> j & 1) << 1 |
							   (b[hh][2] >> j & 1) << 2;
					const uint32_t ex = c == 7 ? escaped(i++) : (r12_entry(lt, c) >> 7) & 0xff;
					out[(uint64_t)row * a.cols + col] =
						bf16_of(ex, __ldg(a.mant + (uint64_t)row * a.mstride + col));
				}
			}
		}
	}
}

int uwk_decode_r11(const struct r12_args *a, uint16_t *out, cudaStream_t s, struct uwerr *e)
{
	int dev, sms;
	const bool st16 = a->cols % 8 == 0 && (uintptr_t)out % 16 == 0;
	auto fn = st16 ? r11_decode_kernel<true> : r11_decode_kernel<false>;
	int per_sm = 0;
	UWK_CK(e, cudaGetDevice(&dev));
	UWK_CK(e, cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
	UWK_CK(e, cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fn, R11_THREADS, 0));
	const uint64_t tiles = (uint64_t)((a->rows + 15) / 16) * a->nk;
	uint64_t blocks = (tiles * 32 + R11_THREADS - 1) / R11_THREADS;
	const uint64_t wave = (uint64_t)sms * (per_sm > 0 ? per_sm : 1);
	if (blocks > wave)
		blocks = wave;
	fn<<<(unsigned)blocks, R11_THREADS, 0, s>>>(*a, out);
	UWK_CK(e, cudaGetLastError());
	return 0;
}
