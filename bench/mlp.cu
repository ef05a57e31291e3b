/* bench/mlp: a Llama-3.1-8B-shaped MLP stack end to end (issue 5): 32
 * layers of x += down(SiLU(gate(h)) * up(h)), h = RMSNorm(x), gate and up
 * 14336x4096, down 4096x14336, synthetic N(0, 0.02) BF16 weights made and
 * encoded to R12 on the GPU (uwk_encode), timed as tokens/s at batch 1, 8
 * and 64 for:
 *   cuBLAS        cublasGemmEx on the raw BF16 weights (BF16 in and out)
 *   uw default    uwk_matmul, AUTO's built-in choices, gate and up apart
 *   uw tuned      uwk_matmul with the tuner's choices (uwk_tune_shape on
 *                 layer 0's tensors, this run)
 *   uw tuned+pair the same with gate and up in one launch (uwk_matmul2)
 * The norm, SiLU*up and the residual add are the same small kernels in
 * every pipeline. Each figure is the median of 5 passes over the 32 layers
 * (CUDA events; the 32 layers' 11 GB of weights do not fit any cache). The
 * last column: the final x against the cuBLAS pipeline's, relative L2.
 *   uw-bench-mlp [-l LAYERS]     (default 32) */
#include <algorithm>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "bench/benchutil.h"
#include "kernels/cuda/uwk.h"

extern "C" {
#include "kernels/resident.h"
#include "kernels/tunecache.h"
}

#define HIDDEN 4096
#define INTER 14336
#define PASSES 5

__device__ __forceinline__ uint64_t splitmix(uint64_t z)
{
	z = (z ^ z >> 30) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ z >> 27) * 0x94d049bb133111ebull;
	return z ^ z >> 31;
}

/* N(0, sigma) BF16 from a counter hash (Box-Muller), per element. */
__global__ void gauss_kernel(uint16_t *w, size_t n, double sigma, uint64_t seed)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		const uint64_t h1 = splitmix((i + 1) * 0x9e3779b97f4a7c15ull ^ seed);
		const uint64_t h2 = splitmix(h1 + 0x9e3779b97f4a7c15ull);
		const double u1 = ((h1 >> 11) + 0.5) * 0x1p-53, u2 = (h2 >> 11) * 0x1p-53;
		const double r = sigma * sqrt(-2.0 * log(u1)) * cospi(2.0 * u2);
		w[i] = __bfloat16_as_ushort(__double2bfloat16(r));
	}
}

/* out = x / rms(x) per row of HIDDEN (no learned scale: it is 1 in a fresh
 * model, and the cost is the same). One block a row. */
__global__ void rmsnorm_kernel(const uint16_t *x, uint16_t *out)
{
	__shared__ float part[32];
	const uint16_t *row = x + (size_t)blockIdx.x * HIDDEN;
	float s = 0.f;
	for (int i = threadIdx.x; i < HIDDEN; i += blockDim.x) {
		float v = __bfloat162float(__ushort_as_bfloat16(row[i]));
		s += v * v;
	}
	for (int o = 16; o > 0; o >>= 1)
		s += __shfl_xor_sync(0xffffffffu, s, o);
	if ((threadIdx.x & 31) == 0)
		part[threadIdx.x >> 5] = s;
	__syncthreads();
	s = 0.f;
	for (int w = 0; w < (int)(blockDim.x >> 5); w++)
		s += part[w];
	const float inv = rsqrtf(s / HIDDEN + 1e-5f);
	for (int i = threadIdx.x; i < HIDDEN; i += blockDim.x) {
		float v = __bfloat162float(__ushort_as_bfloat16(row[i]));
		out[(size_t)blockIdx.x * HIDDEN + i] = __bfloat16_as_ushort(__float2bfloat16(v * inv));
	}
}

/* h = SiLU(g) * u, elementwise. */
__global__ void silu_mul_kernel(const uint16_t *g, const uint16_t *u, uint16_t *h, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		const float a = __bfloat162float(__ushort_as_bfloat16(g[i]));
		const float b = __bfloat162float(__ushort_as_bfloat16(u[i]));
		h[i] = __bfloat16_as_ushort(__float2bfloat16(a / (1.f + __expf(-a)) * b));
	}
}

/* x += d, elementwise. */
__global__ void add_kernel(uint16_t *x, const uint16_t *d, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		const float a = __bfloat162float(__ushort_as_bfloat16(x[i]));
		const float b = __bfloat162float(__ushort_as_bfloat16(d[i]));
		x[i] = __bfloat16_as_ushort(__float2bfloat16(a + b));
	}
}

/* One weight: raw BF16 for cuBLAS, R12 for unweight. */
struct weight {
	void *raw, *res;
	struct uw_layout l;
};

static void make_weight(struct weight *w, uint64_t rows, uint64_t cols, uint64_t seed)
{
	struct uwerr e = {0};
	const size_t n = rows * cols;
	uint64_t shape[2] = {rows, cols};
	CK(cudaMalloc(&w->raw, 2 * n));
	gauss_kernel<<<1024, 256>>>((uint16_t *)w->raw, n, 0.02, seed);
	CK(cudaGetLastError());
	if (uwk_encode_plan(UW_DTYPE_BF16, 2, shape, w->raw, 2 * n, &w->l, 0, &e) < 0)
		die_uw("uwk_encode_plan", &e);
	if (w->l.format != UW_FORMAT_R12) {
		fprintf(stderr, "%llux%llu: not R12\n", (unsigned long long)rows,
			(unsigned long long)cols);
		exit(1);
	}
	CK(cudaMalloc(&w->res, w->l.nbytes));
	if (uwk_encode(&w->l, w->raw, 2 * n, w->res, 0, &e) < 0)
		die_uw("uwk_encode", &e);
}

enum pipe { P_CUBLAS, P_DEFAULT, P_TUNED, P_PAIR, NPIPES };
static const char *const pipe_name[NPIPES] = {"cuBLAS", "uw default", "uw tuned",
					      "uw tuned+pair"};

struct bufs {
	uint16_t *x, *h, *g, *u, *d;
};

static cublasHandle_t blas;
static struct uwk_ctx *dctx, *tctx;

static void gemm(const struct weight *w, uint64_t rows, uint64_t cols, const uint16_t *x,
		 size_t batch, uint16_t *y)
{
	const float one = 1.f, zero = 0.f;
	cublasStatus_t st = cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)batch,
					 (int)cols, &one, w->raw, CUDA_R_16BF, (int)cols, x,
					 CUDA_R_16BF, (int)cols, &zero, y, CUDA_R_16BF, (int)rows,
					 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
	if (st != CUBLAS_STATUS_SUCCESS) {
		fprintf(stderr, "cublasGemmEx: %s\n", cublasGetStatusString(st));
		exit(1);
	}
}

static void uw(const struct weight *w, const uint16_t *x, size_t batch, uint16_t *y,
	       struct uwk_ctx *c)
{
	struct uwerr e = {0};
	if (uwk_matmul(&w->l, w->res, x, batch, y, 0, c, &e) < 0)
		die_uw("uwk_matmul", &e);
}

/* One pass of the stack over b.x (batch rows), by pipeline p. */
static void pass(enum pipe p, const std::vector<weight> &ws, int layers, size_t batch,
		 const struct bufs &b)
{
	struct uwerr e = {0};
	const unsigned eb = (unsigned)std::min<size_t>((batch * INTER + 255) / 256, 4096);
	for (int l = 0; l < layers; l++) {
		const struct weight *gw = &ws[3 * l], *uw_ = &ws[3 * l + 1], *dw = &ws[3 * l + 2];
		rmsnorm_kernel<<<(unsigned)batch, 256>>>(b.x, b.h);
		switch (p) {
		case P_CUBLAS:
			gemm(gw, INTER, HIDDEN, b.h, batch, b.g);
			gemm(uw_, INTER, HIDDEN, b.h, batch, b.u);
			break;
		case P_DEFAULT:
		case P_TUNED:
			uw(gw, b.h, batch, b.g, p == P_TUNED ? tctx : dctx);
			uw(uw_, b.h, batch, b.u, p == P_TUNED ? tctx : dctx);
			break;
		case P_PAIR:
			if (uwk_matmul2(&gw->l, gw->res, &uw_->l, uw_->res, b.h, batch, b.g, b.u, NULL,
					NULL, 0, tctx, &e) < 0)
				die_uw("uwk_matmul2", &e);
			break;
		case NPIPES:
			break;
		}
		silu_mul_kernel<<<eb, 256>>>(b.g, b.u, b.g, batch * INTER);
		if (p == P_CUBLAS)
			gemm(dw, HIDDEN, INTER, b.g, batch, b.d);
		else
			uw(dw, b.g, batch, b.d, p == P_DEFAULT ? dctx : tctx);
		add_kernel<<<(unsigned)std::min<size_t>((batch * HIDDEN + 255) / 256, 1024), 256>>>(
			b.x, b.d, batch * HIDDEN);
	}
	CK(cudaGetLastError());
}

int main(int argc, char **argv)
{
	int layers = 32;
	if (argc == 3 && !strcmp(argv[1], "-l") && atoi(argv[2]) > 0)
		layers = atoi(argv[2]);
	else if (argc != 1) {
		fprintf(stderr, "usage: %s [-l LAYERS]\n", argv[0]);
		return 2;
	}
	static const size_t batches[] = {1, 8, 64};
	struct uwerr e = {0};
	cudaDeviceProp prop;
	CK(cudaGetDeviceProperties(&prop, 0));
	printf("device: %s, %d SMs; Llama-3.1-8B MLP: %d layers of gate and up %dx%d, down %dx%d\n",
	       prop.name, prop.multiProcessorCount, layers, INTER, HIDDEN, HIDDEN, INTER);
	if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS || uwk_ctx_new(&dctx, &e) < 0 ||
	    uwk_ctx_new(&tctx, &e) < 0) {
		fprintf(stderr, "set-up: %s\n", e.msg[0] ? e.msg : "cublasCreate failed");
		return 1;
	}
	std::vector<weight> ws(3 * layers);
	uint64_t raw = 0, res = 0;
	for (int l = 0; l < layers; l++)
		for (int k = 0; k < 3; k++) {
			make_weight(&ws[3 * l + k], k < 2 ? INTER : HIDDEN, k < 2 ? HIDDEN : INTER,
				    0x5eed + 3 * l + k);
			raw += 2ull * INTER * HIDDEN;
			res += ws[3 * l + k].l.nbytes;
		}
	CK(cudaDeviceSynchronize());
	printf("weights: %.2f GB BF16, %.2f GB R12 (%.3f bits/weight)\n", raw / 1e9, res / 1e9,
	       16.0 * res / raw);

	/* the tuner on layer 0's shapes at the batches measured */
	struct tune_set set = {0};
	for (size_t bi = 0; bi < 3; bi++)
		for (int k = 1; k < 3; k++) {     /* up (the gate's shape) and down */
			struct tune_entry en;
			struct uwk_tune_info info;
			if (uwk_tune_shape(&ws[k].l, ws[k].res, batches[bi], 11, NULL, 0, tctx, &en,
					   &info, &e) < 0)
				die_uw("uwk_tune_shape", &e);
			if (tune_set_put(&set, &en, &e) < 0)
				die_uw("tune_set_put", &e);
			char c[48];
			tune_choice_name(&en.c, c, sizeof(c));
			printf("tuned %ux%u batch %zu: %s, %.1f us (default %.1f us)%s\n", en.rows,
			       en.cols, batches[bi], c, en.us, en.default_us,
			       info.rejected ? " (candidates rejected)" : "");
		}
	if (uwk_ctx_use_tune(tctx, &set, &e) < 0)
		die_uw("uwk_ctx_use_tune", &e);

	struct bufs b;
	const size_t mb = 64;
	CK(cudaMalloc((void **)&b.x, 2 * mb * HIDDEN));
	CK(cudaMalloc((void **)&b.h, 2 * mb * HIDDEN));
	CK(cudaMalloc((void **)&b.d, 2 * mb * HIDDEN));
	CK(cudaMalloc((void **)&b.g, 2 * mb * INTER));
	CK(cudaMalloc((void **)&b.u, 2 * mb * INTER));
	uint16_t *x0;
	CK(cudaMalloc((void **)&x0, 2 * mb * HIDDEN));
	gauss_kernel<<<256, 256>>>(x0, mb * HIDDEN, 1.0, 0xbeef);
	std::vector<uint16_t> out(mb * HIDDEN), ref(mb * HIDDEN);
	cudaEvent_t ev[2];
	CK(cudaEventCreate(&ev[0]));
	CK(cudaEventCreate(&ev[1]));

	printf("\n%5s | %-14s | %10s %10s %8s | %9s\n", "batch", "pipeline", "ms/pass", "tokens/s",
	       "speedup", "rel L2");
	for (size_t bi = 0; bi < 3; bi++) {
		const size_t batch = batches[bi];
		double cub_ms = 0;
		for (int p = 0; p < NPIPES; p++) {
			std::vector<float> ms;
			for (int r = 0; r < PASSES + 1; r++) {
				CK(cudaMemcpy(b.x, x0, 2 * batch * HIDDEN, cudaMemcpyDeviceToDevice));
				CK(cudaEventRecord(ev[0], 0));
				pass((enum pipe)p, ws, layers, batch, b);
				CK(cudaEventRecord(ev[1], 0));
				CK(cudaEventSynchronize(ev[1]));
				float t;
				CK(cudaEventElapsedTime(&t, ev[0], ev[1]));
				if (r)                  /* the first pass warms up */
					ms.push_back(t);
			}
			std::sort(ms.begin(), ms.end());
			const double med = ms[ms.size() / 2];
			CK(cudaMemcpy(p == P_CUBLAS ? ref.data() : out.data(), b.x, 2 * batch * HIDDEN,
				      cudaMemcpyDeviceToHost));
			if (p == P_CUBLAS)
				cub_ms = med;
			printf("%5zu | %-14s | %10.3f %10.1f %8.2f | %9.2e\n", batch, pipe_name[p], med,
			       batch * 1e3 / med, cub_ms / med,
			       p == P_CUBLAS ? 0.0 : rel_l2(out.data(), ref.data(), batch * HIDDEN));
			fflush(stdout);
		}
	}
	printf("speedup: cuBLAS's ms/pass over the pipeline's; tokens/s: batch / pass time\n");
	for (auto &w : ws) {
		cudaFree(w.raw);
		cudaFree(w.res);
	}
	tune_set_free(&set);
	uwk_ctx_free(dctx);
	uwk_ctx_free(tctx);
	cublasDestroy(blas);
	return 0;
}
