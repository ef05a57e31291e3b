/* bench/readpat: the fused kernel's stream of W alone, with no decode and no
 * mma, to tell whether its loads or its work bound it (bench/NOTES.md,
 * session 18). Each warp reads the two R12 planes of its 16-row tile chunk
 * by chunk (128 columns: 2 KB of sign|mantissa, 1 KB of index), PD chunks
 * ahead in registers, as r12_fused does, and XORs them; blocks of 4 x WK
 * warps over 64-row tiles, ks splits of the columns as the fused kernel's
 * default. Three layouts of the same bytes:
 *   today:   r12_fused's loads (lane t: bytes 32t and 32t + 16 of a row's
 *            128 sign|mantissa bytes, 16t of its 64 index bytes);
 *   sector1: each load instruction of a row's 4 lanes whole 32-byte sectors
 *            (16t and 64 + 16t; index 8t and 32 + 8t);
 *   tiled:   a warp chunk's 3 KB contiguous (a tiled format's).
 * Usage: uw-bench-readpat (no arguments). The floor is the planes' bytes
 * over a device-to-device copy's rate (read + write) in the same run; each
 * time is the mean of 20 back-to-back launches after 3 warm-up ones, no L2
 * flush (the planes are 88-352 MB, the L2 60 MB). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime.h>

#include "kernels/cuda/uwk_int.h"     /* ld_stream: the fused kernel's 16-byte load */

#define CK(x)                                                                        \
	do {                                                                         \
		cudaError_t e_ = (x);                                                \
		if (e_ != cudaSuccess) {                                             \
			fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e_));     \
			exit(1);                                                     \
		}                                                                    \
	} while (0)

enum { TODAY, SECTOR1, TILED };

/* ld_stream's 8-byte form (sector1's index loads) */
__device__ __forceinline__ uint2 ld8(const void *p)
{
	uint2 v;
	asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0,%1}, [%2];"
		     : "=r"(v.x), "=r"(v.y) : "l"(p));
	return v;
}

/* One row half's 48 bytes of a chunk. */
struct rowhalf {
	uint4 a, b, n;
};

template <int MAP, int PD, int WK>
__global__ void __launch_bounds__(128 * WK)
readpat(const uint8_t *__restrict__ sm, const uint8_t *__restrict__ nib, uint32_t rows,
	uint32_t cols, uint32_t cps, uint32_t *sink)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, wm = warp % 4, wk = warp / 4;
	const int g = lane >> 2, t = lane & 3;
	const uint32_t nch = cols / 128, tiles = rows / 64;
	const uint32_t tile = blockIdx.x % tiles, split = blockIdx.x / tiles;
	const uint32_t cb = split * cps, ce = min(nch, cb + cps);
	const uint32_t r0 = tile * 64 + wm * 16;
	const uint8_t *tb = sm + (uint64_t)(r0 / 16) * nch * 3072;   /* TILED: the warp's chunks */
	auto load = [&](rowhalf &q, int h, uint32_t c) {
		const uint64_t r = r0 + g + 8 * h;
		if (c >= ce) {
			q.a = q.b = q.n = make_uint4(0, 0, 0, 0);
		} else if (MAP == TODAY) {
			q.a = ld_stream(sm + r * cols + c * 128 + 32 * t);
			q.b = ld_stream(sm + r * cols + c * 128 + 32 * t + 16);
			q.n = ld_stream(nib + r * cols / 2 + c * 64 + 16 * t);
		} else if (MAP == SECTOR1) {
			q.a = ld_stream(sm + r * cols + c * 128 + 16 * t);
			q.b = ld_stream(sm + r * cols + c * 128 + 16 * t + 64);
			const uint2 x = ld8(nib + r * cols / 2 + c * 64 + 8 * t);
			const uint2 y = ld8(nib + r * cols / 2 + c * 64 + 8 * t + 32);
			q.n = make_uint4(x.x, x.y, y.x, y.y);
		} else {
			const uint8_t *p = tb + (uint64_t)c * 3072 + 1536 * h + 16 * lane;
			q.a = ld_stream(p);
			q.b = ld_stream(p + 512);
			q.n = ld_stream(p + 1024);
		}
	};
	rowhalf q[PD + 1][2];
	uint32_t ch = cb + wk, acc = 0;
#pragma unroll
	for (int i = 0; i < PD; i++)
#pragma unroll
		for (int h = 0; h < 2; h++)
			load(q[i][h], h, ch + i * WK);
	for (; ch < ce; ch += WK) {
#pragma unroll
		for (int h = 0; h < 2; h++) {
			load(q[PD][h], h, ch + PD * WK);
			const rowhalf &u = q[0][h];
			acc += u.a.x ^ u.a.y ^ u.a.z ^ u.a.w ^ u.b.x ^ u.b.y ^ u.b.z ^ u.b.w ^ u.n.x ^
			       u.n.y ^ u.n.z ^ u.n.w;
		}
#pragma unroll
		for (int i = 0; i < PD; i++)
#pragma unroll
			for (int h = 0; h < 2; h++)
				q[i][h] = q[i + 1][h];
	}
	if (acc == 0x9e3779b9u)          /* never in practice: keeps the loads */
		sink[blockIdx.x] = acc;
}

static const char *const map_name[] = { "today", "sector1", "tiled" };

template <int MAP, int PD, int WK>
static void run(const uint8_t *sm, const uint8_t *nib, uint32_t rows, uint32_t cols, int ks,
		uint32_t *sink, double rate)
{
	const auto fn = readpat<MAP, PD, WK>;
	const uint32_t nch = cols / 128, cps = (nch + ks - 1) / ks, blocks = rows / 64 * ks;
	int occ = 0;
	CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, fn, 128 * WK, 0));
	cudaEvent_t e0, e1;
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	for (int i = 0; i < 3; i++)
		fn<<<blocks, 128 * WK>>>(sm, nib, rows, cols, cps, sink);
	const int reps = 20;
	CK(cudaEventRecord(e0));
	for (int i = 0; i < reps; i++)
		fn<<<blocks, 128 * WK>>>(sm, nib, rows, cols, cps, sink);
	CK(cudaEventRecord(e1));
	CK(cudaEventSynchronize(e1));
	CK(cudaGetLastError());
	float ms;
	CK(cudaEventElapsedTime(&ms, e0, e1));
	const double us = ms * 1e3 / reps, floor_us = rows * (double)cols * 1.5 / rate * 1e6;
	printf("%-8s %5ux%-5u pd %d wk %d ks %d: %4u blocks, %d an SM: %7.1f us %5.1f %% floor\n",
	       map_name[MAP], rows, cols, PD, WK, ks, blocks, occ, us, 100 * floor_us / us);
	CK(cudaEventDestroy(e0));
	CK(cudaEventDestroy(e1));
}

/* Bytes a second of a device-to-device copy of 1 GiB, read + write. */
static double copy_rate(void)
{
	const size_t n = (size_t)1 << 30;
	void *a, *b;
	CK(cudaMalloc(&a, n));
	CK(cudaMalloc(&b, n));
	cudaEvent_t e0, e1;
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
	CK(cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice));
	CK(cudaEventRecord(e0));
	for (int i = 0; i < 5; i++)
		CK(cudaMemcpy(b, a, n, cudaMemcpyDeviceToDevice));
	CK(cudaEventRecord(e1));
	CK(cudaEventSynchronize(e1));
	float ms;
	CK(cudaEventElapsedTime(&ms, e0, e1));
	CK(cudaFree(a));
	CK(cudaFree(b));
	return 2.0 * n * 5 / (ms * 1e-3);
}

int main(void)
{
	const double rate = copy_rate();
	printf("copy %.0f GB/s (read + write)\n", rate / 1e9);
	const size_t most = 28672ull * 8192 * 3 / 2;
	uint8_t *buf;
	uint32_t *sink;
	CK(cudaMalloc(&buf, most));
	CK(cudaMalloc(&sink, 1 << 20));
	CK(cudaMemset(buf, 0x5a, most));
	static const uint32_t shapes[][2] = { { 14336, 4096 }, { 4096, 14336 }, { 28672, 8192 },
					      { 8192, 28672 } };
	int sms = 0;
	CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
	for (const auto &s : shapes) {
		const uint32_t rows = s[0], cols = s[1], tiles = rows / 64;
		const uint8_t *sm = buf, *nib = buf + (size_t)rows * cols;
		/* the fused kernel's default split: two blocks an SM over the tiles */
		int ks = (int)((2 * sms + tiles / 2) / tiles);
		if (ks < 1)
			ks = 1;
		run<TODAY, 2, 2>(sm, nib, rows, cols, ks, sink, rate);
		run<SECTOR1, 2, 2>(sm, nib, rows, cols, ks, sink, rate);
		run<TILED, 2, 2>(sm, nib, rows, cols, ks, sink, rate);
		run<TODAY, 1, 2>(sm, nib, rows, cols, ks, sink, rate);
		run<SECTOR1, 1, 2>(sm, nib, rows, cols, ks, sink, rate);
		run<TILED, 1, 2>(sm, nib, rows, cols, ks, sink, rate);
		run<TODAY, 4, 2>(sm, nib, rows, cols, ks, sink, rate);
		run<TILED, 4, 2>(sm, nib, rows, cols, ks, sink, rate);
		run<TODAY, 2, 2>(sm, nib, rows, cols, 2 * ks, sink, rate);
		run<TODAY, 2, 1>(sm, nib, rows, cols, 2 * ks, sink, rate);
		run<TODAY, 1, 1>(sm, nib, rows, cols, 2 * ks, sink, rate);
		run<SECTOR1, 1, 1>(sm, nib, rows, cols, 2 * ks, sink, rate);
		run<TODAY, 4, 1>(sm, nib, rows, cols, 2 * ks, sink, rate);
	}
	CK(cudaFree(buf));
	CK(cudaFree(sink));
	return 0;
}
