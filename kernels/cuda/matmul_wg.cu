/* matmul_wg: the fused pipeline on Hopper's warpgroup tensor cores
 * (wgmma, sm_90a), for R12 at batches where mma.sync's loop spends its
 * time reading x from shared memory into registers (bench/NOTES.md, v17,
 * v20).
 *
 * A warp rebuilds the BF16 of its 16 rows a chunk of 128 columns at a
 * time exactly as matmul.cu's loop does (r12_decode32, patches, tail), and
 * the four warps of a warpgroup hand their fragments to wgmma as the A
 * operand in registers (64 rows; the fragment layout is mma.sync's). x is
 * the B operand, read by the tensor cores from shared memory: a first
 * kernel writes x in the order the A fragments take K (matmul.cu's
 * permutation inside a chunk) as wgmma's no-swizzle K-major core
 * matrices, one contiguous image of N batch rows x 128 columns per chunk,
 * which the block stages ST chunks deep, one bulk copy a chunk on an
 * mbarrier, so that its warpgroups wait for x and for each other's use of
 * a stage only, not in step at a block barrier (bench/NOTES.md, session
 * 22: 7-11 % at batch 256, 1-3 % at 16 and 64). N (16 to 256)
 * is the batch tile: one wgmma of m64nNk16 a k-step, N / 2 float
 * accumulators a thread; batches past 256 take several tiles. The matmul
 * kernel is launched as the x kernel's programmatic dependent, so that its
 * prologue overlaps it. Split-K adds its sums in the last block of each
 * tile to finish (splitk_last), in split order: no second kernel. */
#include <errno.h>
#include <stdio.h>

#include "kernels/cuda/fused.h"

/* x[batch][cols] -> xp[tile][chunk][step s][n / 8][kg][n % 8][8]: batch
 * row n of a tile of nt, logical k = 8 kg + 2 t + e of k-step s is column
 * 32 t + 4 s + 2 kg + e of the chunk (the A fragments' K order), zeros
 * past the batch and the columns. A block takes 16 batch rows of a chunk:
 * it reads them whole into shared memory (16 bytes a thread where x
 * allows: vec), then each thread gathers one core-matrix row, a warp 512
 * contiguous bytes of xp (one thread a row from x took 4-11 us: v21). */
#define XP_ROWS 16
/* a staged row's stride in halves, 272 bytes: rows start on 16 bytes and 4
 * banks apart, so that a warp's gather meets each bank at most twice */
#define XP_STRIDE 136
__global__ void __launch_bounds__(256)
wg_xperm_kernel(const uint16_t *__restrict__ x, uint32_t batch, uint32_t cols, uint32_t nch,
		uint32_t nt, uint32_t nrows, bool vec, uint16_t *__restrict__ xp)
{
	/* the matmul kernel may start its prologue now (it waits for xp) */
	asm volatile("griddepcontrol.launch_dependents;");
	__shared__ __align__(16) uint16_t tile[XP_ROWS * XP_STRIDE];
	const uint32_t i = threadIdx.x;
	for (uint32_t blk = blockIdx.x; blk < nch * (nrows / XP_ROWS); blk += gridDim.x) {
		const uint32_t ch = blk % nch, n0 = blk / nch * XP_ROWS;
		{
			/* row i / 16, columns 8 (i % 16) on */
			const uint32_t r = i >> 4, c = ch * KC + 8 * (i & 15), n = n0 + r;
			const uint16_t *src = x + (uint64_t)n * cols + c;
			uint32_t v[4] = {0, 0, 0, 0};
			if (n < batch && vec && c + 8 <= cols) {
				const uint4 q = *(const uint4 *)src;
				v[0] = q.x;
				v[1] = q.y;
				v[2] = q.z;
				v[3] = q.w;
			} else if (n < batch) {
#pragma unroll
				for (uint32_t j = 0; j < 8; j++)
					if (c + j < cols)
						v[j / 2] |= (uint32_t)src[j] << 16 * (j & 1);
			}
			*(uint4 *)(tile + r * XP_STRIDE + 8 * (i & 15)) = make_uint4(v[0], v[1], v[2], v[3]);
		}
		__syncthreads();
		{
			/* warp s: for each of the 16 rows and kg, words 16 t + 2 s + kg */
			const uint32_t m = i & 7, kg = (i >> 3) & 1, grp = (i >> 4) & 1, s = i >> 5;
			const uint32_t *row = (const uint32_t *)(tile + (8 * grp + m) * XP_STRIDE);
			const uint32_t nn = n0 % nt + 8 * grp + m, bt = n0 / nt;
			uint16_t *d = xp + ((uint64_t)bt * nch + ch) * nt * KC + s * nt * 16 +
				      ((nn >> 3) * 2 + kg) * 64 + (nn & 7) * 8;
			*(uint4 *)d = make_uint4(row[2 * s + kg], row[16 + 2 * s + kg],
						 row[32 + 2 * s + kg], row[48 + 2 * s + kg]);
		}
		__syncthreads();
	}
}

/* Split-K in one launch: after a block has written its partial sums, it
 * counts itself done on its tile's counter; the last of the tile's splits
 * (whichever it is) adds them in split order, so the bits do not depend on
 * which finished last, and sets the counter back to 0. Block-uniform;
 * every thread calls it. */
__device__ __forceinline__ bool splitk_last(uint32_t *done)
{
	__shared__ uint32_t last;
	__threadfence();                 /* this block's partial sums, then the count */
	__syncthreads();
	if (threadIdx.x == 0) {
		last = atomicAdd(done, 1) == gridDim.y - 1;
		if (last)
			*done = 0;
	}
	__syncthreads();
	if (last)
		__threadfence();
	return last;
}

/* The shared-memory descriptor of one k-step of staged x: start >> 4,
 * the next core matrix along K 128 bytes on, along N 256, no swizzle. */
__device__ __forceinline__ uint64_t wg_desc(const void *p)
{
	const uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
	return (uint64_t)((a & 0x3ffff) >> 4) | (uint64_t)(128 >> 4) << 16 |
	       (uint64_t)(256 >> 4) << 32;
}

#define WG_F4(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3])
#define WG_F8(i) WG_F4(i), WG_F4(i + 4)
#define WG_A "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b)

/* d += A (registers a, mma.sync's A layout per warp) . B (descriptor b) */
__device__ __forceinline__ void wgmma(float (&d)[8], const uint32_t a[4], uint64_t b)
{
	asm volatile("wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 "
		     "{%0,%1,%2,%3,%4,%5,%6,%7}, {%8,%9,%10,%11}, %12, 1, 1, 1, 0;"
		     : WG_F8(0) : WG_A);
}

__device__ __forceinline__ void wgmma(float (&d)[16], const uint32_t a[4], uint64_t b)
{
	asm volatile("wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
		     "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}, "
		     "{%16,%17,%18,%19}, %20, 1, 1, 1, 0;"
		     : WG_F8(0), WG_F8(8) : WG_A);
}

__device__ __forceinline__ void wgmma(float (&d)[32], const uint32_t a[4], uint64_t b)
{
	asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
		     "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
		     "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, "
		     "{%32,%33,%34,%35}, %36, 1, 1, 1, 0;"
		     : WG_F8(0), WG_F8(8), WG_F8(16), WG_F8(24) : WG_A);
}

__device__ __forceinline__ void wgmma(float (&d)[64], const uint32_t a[4], uint64_t b)
{
	asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
		     "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
		     "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
		     "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
		     "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, "
		     "{%64,%65,%66,%67}, %68, 1, 1, 1, 0;"
		     : WG_F8(0), WG_F8(8), WG_F8(16), WG_F8(24), WG_F8(32), WG_F8(40), WG_F8(48),
		       WG_F8(56) : WG_A);
}

__device__ __forceinline__ void wgmma(float (&d)[128], const uint32_t a[4], uint64_t b)
{
	asm volatile("wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
		     "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,"
		     "%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,"
		     "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,"
		     "%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,"
		     "%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,"
		     "%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,"
		     "%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,"
		     "%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,"
		     "%120,%121,%122,%123,%124,%125,%126,%127}, "
		     "{%128,%129,%130,%131}, %132, 1, 1, 1, 0;"
		     : WG_F8(0), WG_F8(8), WG_F8(16), WG_F8(24), WG_F8(32), WG_F8(40), WG_F8(48),
		       WG_F8(56), WG_F8(64), WG_F8(72), WG_F8(80), WG_F8(88), WG_F8(96), WG_F8(104),
		       WG_F8(112), WG_F8(120) : WG_A);
}

/* Keep the compiler from moving accesses to d across the asynchronous
 * wgmma that own it until wg_wait. */
template <int M>
__device__ __forceinline__ void wg_hold(float (&d)[M])
{
#pragma unroll
	for (int i = 0; i < M; i++)
		asm volatile("" : "+f"(d[i]) :: "memory");
}

__device__ __forceinline__ void wg_wait(void)
{
	asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
}

/* mbarriers in shared memory: init with an expected count, an arrival,
 * and a wait for the phase of parity p to complete. */
__device__ __forceinline__ void mbar_init(uint64_t *b, uint32_t n)
{
	asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;"
		     :: "r"((uint32_t)__cvta_generic_to_shared(b)), "r"(n) : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint64_t *b)
{
	asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];"
		     :: "r"((uint32_t)__cvta_generic_to_shared(b)) : "memory");
}

/* bytes from global src to shared dst by the bulk copy engine, counted
 * on barrier b (which this thread arrives on, expecting them) */
__device__ __forceinline__ void bulk_copy(void *dst, const void *src, uint32_t bytes, uint64_t *b)
{
	const uint32_t bb = (uint32_t)__cvta_generic_to_shared(b);
	asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;"
		     :: "r"(bb), "r"(bytes) : "memory");
	asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes "
		     "[%0], [%1], %2, [%3];"
		     :: "r"((uint32_t)__cvta_generic_to_shared(dst)), "l"(src), "r"(bytes), "r"(bb)
		     : "memory");
}

__device__ __forceinline__ void mbar_wait(uint64_t *b, uint32_t p)
{
	asm volatile("{\n\t.reg .pred done;\n"
		     "wait_%=:\n\t"
		     "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n\t"
		     "@!done bra wait_%=;\n}"
		     :: "r"((uint32_t)__cvta_generic_to_shared(b)), "r"(p) : "memory");
}

/* One block: WG warpgroups (64 rows each) over a split's chunks for one
 * batch tile of N rows (blockIdx.x = row tile * nbt + batch tile, so the
 * tiles of one row tile run together and share W in L2), MB blocks an SM.
 * A chunk: load the next chunk's planes (registers, one ahead), wait for
 * this warpgroup's previous wgmma (its A registers and x stage are then
 * free: each warp says so on the stage's empty barrier), decode, (thread
 * 0) stage x ST - 1 chunks on into the previous chunk's buffer once every
 * warp is done with it, wait for the chunk's x, issue 8 wgmma. From N = 64
 * the next chunk's planes are loaded after the wgmma are issued instead
 * (their N / 2 accumulators leave no registers for two chunks' planes: at
 * N = 64 they spilled in the loop, 12 % slower at batch 64, session 21).
 * PF > 0: while chunk c is decoded, chunk c + PF is prefetched into L2 as
 * chunk c + 1's planes load. */
template <int N, int WG, int ST, int MB, int PF>
__global__ void __launch_bounds__(128 * WG, MB)
r12_wg_kernel(const r12_args a, const uint16_t *__restrict__ xp, uint32_t batch, uint32_t nbt,
	      uint16_t *__restrict__ y, float *__restrict__ part, uint32_t *__restrict__ done,
	      uint32_t cps)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
	constexpr uint32_t XB = N * KC * 2;         /* bytes of a chunk of staged x */
	extern __shared__ __align__(128) uint8_t smem[];   /* lanes' tables, then x */
	uint8_t *const xs = smem + R12_LANE_TAB;
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
	const uint8_t *const lt = r12_lane_tab(smem, lane);
	const uint32_t bt = blockIdx.x % nbt, grp = blockIdx.x / nbt * 4 * WG + warp;
	const uint32_t row0 = 16 * grp + g;
	const uint32_t nch = (a.cols + KC - 1) / KC;
	const uint32_t cb = blockIdx.y * cps, ce = min(nch, cb + cps);
	const uint8_t *xsrc = (const uint8_t *)xp + (uint64_t)bt * nch * XB;
	static_assert(XB % 16 == 0, "a chunk of x: a bulk copy's size");
	/* x's stages: full[b] completes when b's bytes have landed (one bulk
	 * copy), empty[b] when every warp is done with b's chunk */
	__shared__ __align__(8) uint64_t full[ST], empty[ST];
	if (threadIdx.x == 0)
		for (int i = 0; i < ST; i++) {
			mbar_init(&full[i], 1);
			mbar_init(&empty[i], 4 * WG);
		}
	/* thread 0 only */
	auto stage = [&](uint32_t c, uint32_t buf) {
		if (c < ce)
			bulk_copy(xs + buf * XB, xsrc + (uint64_t)c * XB, XB, &full[buf]);
	};
	r12_table(smem, a.pal);

	const uint8_t *mrow[2], *nrow[2];
	bool rok[2];
	uint32_t pnext[2], pend[2], pcol[2];
	r12_rows(a, row0, mrow, nrow, rok, pnext, pend, pcol);
	r12_raw32 q[2][2];
#pragma unroll
	for (int h = 0; h < 2; h++)
		r12_load32<true>(q[0][h], mrow[h], nrow[h], cb * KC + 32 * t, a.cols, rok[h]);
	if (a.npatch && row0 - g < a.rows)
		r12_patch_walk(a, grp, g, rok, pnext, pend, pcol);
	float acc[N / 2];
#pragma unroll
	for (int i = 0; i < N / 2; i++)
		acc[i] = 0.f;
	/* launched as xp's dependent: xp is complete past this point */
	asm volatile("griddepcontrol.wait;" ::: "memory");
	__syncthreads();                 /* the tables and the barriers */
	for (uint32_t i = 0; i + 1 < ST && threadIdx.x == 0; i++)
		stage(cb + i, i);

	constexpr bool late = N >= 64;
	auto load_next = [&](uint32_t c) {
#pragma unroll
		for (int h = 0; h < 2; h++)
			r12_load32<true>(q[1][h], mrow[h], nrow[h], (c + 1) * KC + 32 * t, a.cols,
					 rok[h] && c + 1 < ce);
		if (PF) {
			/* and chunk c + PF into L2, a lane a row's plane: the
			 * registers hold only one chunk of W in flight a warp */
			const uint32_t pc = (c + PF) * KC;
			const bool h = t & 1;    /* no run-time index: the arrays stay in registers */
			if ((h ? rok[1] : rok[0]) && c + PF < ce) {
				const uint8_t *p = t >> 1 ? (h ? nrow[1] : nrow[0]) + pc / 2
							  : (h ? mrow[1] : mrow[0]) + pc;
				asm volatile("prefetch.global.L2 [%0];" :: "l"(p));
			}
		}
	};

	for (uint32_t c = cb; c < ce; c++) {
		const uint32_t i = c - cb, buf = i % ST;
		if (!late)
			load_next(c);
		wg_wait();
		wg_hold(acc);
		if (i > 0 && lane == 0)
			mbar_arrive(&empty[(i - 1) % ST]);   /* this warp is done with chunk c - 1 */
		const uint32_t col = c * KC + 32 * t;
		uint32_t w[2][16];
#pragma unroll
		for (int h = 0; h < 2; h++) {
			r12_decode32(lt, q[0][h].sm, q[0][h].ix, w[h]);
			if (pcol[h] < col + 32)
				r12_patch32(w[h], pnext[h], pend[h], pcol[h], a.patch, col);
			r12_tail32(w[h], col, a.cols);
		}
		/* chunk j's x into the buffer of chunk j - ST (the previous
		 * one), once every warp is done with that */
		const uint32_t j = i + ST - 1;
		if (threadIdx.x == 0) {
			if (j >= ST)
				mbar_wait(&empty[j % ST], (j / ST - 1) & 1);
			stage(cb + j, j % ST);
		}
		mbar_wait(&full[buf], (i / ST) & 1);
		const uint8_t *xc = xs + buf * XB;
		asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#pragma unroll
		for (int s = 0; s < 8; s++) {
			const uint32_t af[4] = { w[0][2 * s], w[1][2 * s], w[0][2 * s + 1],
						 w[1][2 * s + 1] };
			wgmma(acc, af, wg_desc(xc + s * N * 32));
		}
		asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
		wg_hold(acc);
		if (late)
			load_next(c);
#pragma unroll
		for (int h = 0; h < 2; h++)
			q[0][h] = q[1][h];
	}
	wg_wait();
	wg_hold(acc);
	/* acc[4 j + e]: row g (e < 2) or g + 8, batch row 8 j + 2 t + (e & 1) of the tile */
	auto each = [&](auto f) {
#pragma unroll
		for (int j = 0; j < N / 8; j++)
#pragma unroll
			for (int e = 0; e < 4; e++) {
				const uint32_t n = bt * N + 8 * j + 2 * t + (e & 1);
				const uint32_t r = row0 + 8 * (e >> 1);
				if (n < batch && r < a.rows)
					f((uint64_t)n * a.rows + r, acc[4 * j + e]);
			}
	};
	if (!part) {
		each([&](uint64_t i, float v) { y[i] = bf16_bits(v); });
		return;
	}
	/* split-K: the block's sums as float4 in thread order, a tile's splits
	 * side by side, so that the last block reads them whole and coalesced
	 * (read as y's elements, scattered, they cost up to 100 us: v20) */
	constexpr int V = N / 8;                     /* float4 a thread */
	float4 *const pt = (float4 *)part + (uint64_t)blockIdx.x * gridDim.y * V * blockDim.x +
			   threadIdx.x;
#pragma unroll
	for (int v = 0; v < V; v++)
		__stcg(pt + ((uint64_t)blockIdx.y * V + v) * blockDim.x,
		       make_float4(acc[4 * v], acc[4 * v + 1], acc[4 * v + 2], acc[4 * v + 3]));
	if (!splitk_last(done + blockIdx.x))
		return;
	/* eight float4 of every split at a time (more would spill at N = 256) */
	constexpr int VG = V < 8 ? V : 8;
#pragma unroll
	for (int v0 = 0; v0 < V; v0 += VG)
		for (uint32_t k = 0; k < gridDim.y; k++)     /* in split order */
#pragma unroll
			for (int v = v0; v < v0 + VG; v++) {
				const float4 p = __ldcg(pt + ((uint64_t)k * V + v) * blockDim.x);
				acc[4 * v] = k ? acc[4 * v] + p.x : p.x;
				acc[4 * v + 1] = k ? acc[4 * v + 1] + p.y : p.y;
				acc[4 * v + 2] = k ? acc[4 * v + 2] + p.z : p.z;
				acc[4 * v + 3] = k ? acc[4 * v + 3] + p.w : p.w;
			}
	each([&](uint64_t i, float v) { y[i] = bf16_bits(v); });
#else
	__trap();                        /* built for sm_90a only; the host checks */
#endif
}

typedef void (*wg_fn)(const r12_args, const uint16_t *, uint32_t, uint32_t, uint16_t *,
		      float *, uint32_t *, uint32_t);

/* The batch tiles built, smallest first: N, its kernel, warpgroups a
 * block, x stages. From N = 128 one block an SM: the accumulators take
 * the registers of two, and ST chunks of x (32 or 64 KB each) the shared
 * memory. Stages and prefetch distance as measured (bench/NOTES.md,
 * session 23): two stages at N = 64 and 256 (three or four were 1-7 %
 * slower), W two chunks ahead into L2 at N = 16, 64 and 256 (three, four
 * or more were slower; at N = 32 it spills). */
static const struct wg_kind {
	int n;
	wg_fn fn;
	int wg, st;
} wg_kinds[] = {
	{ 16, r12_wg_kernel<16, 2, 4, 2, 2>, 2, 4 },
	{ 32, r12_wg_kernel<32, 2, 4, 2, 0>, 2, 4 },
	{ 64, r12_wg_kernel<64, 2, 2, 2, 2>, 2, 2 },
	{ 128, r12_wg_kernel<128, 2, 4, 1, 3>, 2, 4 },
	{ 256, r12_wg_kernel<256, 2, 2, 1, 2>, 2, 2 },
};
#define WG_NKINDS ((int)(sizeof(wg_kinds) / sizeof(wg_kinds[0])))

int uwk_matmul_wg(const struct r12_args *a, const void *x, size_t batch, void *y, bool x_same,
		  cudaStream_t s, struct uwk_ctx *ctx, struct uwerr *e)
{
	if (ctx->key.cc != 90)
		return uwerr_set(e, ENOTSUP, "warpgroup pipeline: built for compute capability 9.0 "
				 "(sm_90a), the device is %u.%u", ctx->key.cc / 10, ctx->key.cc % 10);
	if (!a->aligned)
		return uwerr_set(e, ENOTSUP, "warpgroup pipeline: the planes' rows are not on 16 bytes");
	const struct wg_kind *k = &wg_kinds[WG_NKINDS - 1];
	for (int i = WG_NKINDS - 1; i >= 0; i--)
		if ((size_t)wg_kinds[i].n >= batch)
			k = &wg_kinds[i];
	const uint32_t nch = (a->cols + KC - 1) / KC;
	const uint64_t nbt = (batch + k->n - 1) / k->n;
	const uint64_t tiles = (a->rows + 64 * (uint64_t)k->wg - 1) / (64 * (uint64_t)k->wg) * nbt;
	if (tiles > INT32_MAX)
		return uwerr_set(e, EINVAL, "warpgroup pipeline: %llu blocks", (unsigned long long)tiles);

	const uint64_t nrows = nbt * k->n;                 /* batch rows, tiles full */
	if (nrows * nch > UINT32_MAX)
		return uwerr_set(e, EINVAL, "warpgroup pipeline: batch %zu over %u chunks of columns: "
				 "past its x kernel's 2^32 rows x chunks", batch, nch);
	int rc;
	if (!x_same) {
		if ((rc = uwk_ctx_reserve(&ctx->xperm, &ctx->xperm_bytes, nrows * nch * KC * 2,
					  "permuted x", e)) < 0)
			return rc;
		uint64_t xblocks = nrows / XP_ROWS * nch;
		if (xblocks > (uint64_t)ctx->sms * 8)
			xblocks = (uint64_t)ctx->sms * 8;
		const bool vec = a->cols % 8 == 0 && (uintptr_t)x % 16 == 0;
		wg_xperm_kernel<<<(unsigned)xblocks, 256, 0, s>>>((const uint16_t *)x,
								  (uint32_t)batch, a->cols, nch,
								  (uint32_t)k->n, (uint32_t)nrows,
								  vec, (uint16_t *)ctx->xperm);
		UWK_CK(e, cudaGetLastError());
	}

	const int threads = 128 * k->wg;
	const size_t smem = R12_LANE_TAB + (size_t)k->st * k->n * KC * 2;
	char what[64];
	snprintf(what, sizeof(what), "warpgroup pipeline at batch %zu", batch);
	if ((rc = uwk_smem_optin((const void *)k->fn, smem, 0, what, ctx, e)) < 0)
		return rc;
	/* one wave of blocks, at most a split per four chunks */
	int per_sm;
	if ((rc = uwk_blocks_per_sm((const void *)k->fn, threads, smem, ctx, &per_sm, e)) < 0)
		return rc;
	const uint64_t wave = (uint64_t)per_sm * ctx->sms;
	uint64_t want = (wave + tiles / 2) / tiles;
	if (want > nch / 4)
		want = nch / 4;
	if (want > 65535)                              /* the grid's y */
		want = 65535;
	int ks = want < 1 ? 1 : (int)want;
	uint32_t cps = (nch + ks - 1) / ks;
	ks = (int)((nch + cps - 1) / cps);             /* no empty split */
	float *part = NULL;
	uint32_t *done = NULL;
	if (ks > 1) {
		rc = uwk_ctx_reserve((void **)&ctx->part, &ctx->part_bytes,
				     (size_t)ks * tiles * k->n * 64 * k->wg * sizeof(float),
				     "split-K partial sums", e);
		if (rc == 0)
			rc = uwk_ctx_counters(ctx, tiles, s, e);
		if (rc < 0)
			return rc;
		part = ctx->part;
		done = ctx->done;
	}
	const uint16_t *xpp = (const uint16_t *)ctx->xperm;
	uint32_t nb = (uint32_t)batch, nbt32 = (uint32_t)nbt;
	uint16_t *yp = (uint16_t *)y;
	void *args[] = { (void *)a, &xpp, &nb, &nbt32, &yp, &part, &done, &cps };
	/* programmatic dependent launch: the prologue overlaps wg_xperm_kernel
	 * (or, with x_same, the tail of the previous call) */
	cudaLaunchAttribute at[1];
	at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
	at[0].val.programmaticStreamSerializationAllowed = 1;
	cudaLaunchConfig_t lc = {};
	lc.gridDim = dim3((unsigned)tiles, (unsigned)ks);
	lc.blockDim = dim3(threads);
	lc.dynamicSmemBytes = smem;
	lc.stream = s;
	lc.attrs = at;
	lc.numAttrs = 1;
	UWK_CK(e, cudaLaunchKernelExC(&lc, (const void *)k->fn, args));
	return 0;
}
