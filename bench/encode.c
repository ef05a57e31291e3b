/* uw-bench-encode: encoding BF16 into the resident format on the CPU
 * (res_plan + res_encode_mt, one thread and all) and on the GPU
 * (uwk_encode_plan + uwk_encode, raw already in device memory, and with the
 * H2D copy of the raw from pinned host memory first), in GB/s of raw BF16.
 * Tensors: N(0, 0.02) 14336x4096 and 8192x8192, and the stories260K MLP
 * weights (all 15 as one set). Then a bundle's exphuf payload of each
 * N(0, 0.02) tensor decoded: rest_decode on the CPU (one thread and all)
 * against uwk_exphuf_decode (payload in device memory). Every GPU result
 * is compared with the CPU's. Best of REPS runs. Usage: uw-bench-encode
 * (GPU host: bench/gpu-run.sh). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "format/restcodec.h"
#include "kernels/cuda/uwk.h"
#include "kernels/resident.h"
#include "tests/bf16cases.h"
#include "tests/testutil.h"

#define REPS 3

struct set {
	const char *name;
	int n;
	uint64_t rows[16], cols[16];
	uint16_t *w[16];          /* pinned host */
	size_t bytes;             /* raw bytes of all */
};

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "uw-bench-encode: %s: %s\n", what, msg);
	exit(1);
}

#define CU(call) do { \
	cudaError_t r_ = (call); \
	if (r_ != cudaSuccess) \
		die(#call, cudaGetErrorString(r_)); \
} while (0)

static uint16_t *pinned(size_t bytes)
{
	void *p;
	CU(cudaMallocHost(&p, bytes));
	return p;
}

/* CPU: plan and encode every tensor of the set; seconds. */
static double cpu_run(const struct set *s, int threads, struct uw_layout *l, uint8_t **dst)
{
	struct uwerr e = {0};
	double t0 = now();
	for (int i = 0; i < s->n; i++) {
		uint64_t shape[2] = {s->rows[i], s->cols[i]};
		size_t rb = 2 * s->rows[i] * s->cols[i];
		if (res_plan(UW_DTYPE_BF16, 2, shape, s->w[i], rb, RES_PREFER_SPEED, &l[i], &e) < 0 ||
		    res_encode_mt(&l[i], s->w[i], rb, dst[i], threads, &e) < 0)
			die("cpu", e.msg);
	}
	return now() - t0;
}

/* GPU: (copy,) plan and encode every tensor; seconds. */
static double gpu_run(const struct set *s, int copy, void **draw, void **ddst,
		      struct uw_layout *l, cudaStream_t st)
{
	struct uwerr e = {0};
	CU(cudaStreamSynchronize(st));
	double t0 = now();
	for (int i = 0; i < s->n; i++) {
		uint64_t shape[2] = {s->rows[i], s->cols[i]};
		size_t rb = 2 * s->rows[i] * s->cols[i];
		if (copy)
			CU(cudaMemcpyAsync(draw[i], s->w[i], rb, cudaMemcpyHostToDevice, st));
		if (uwk_encode_plan(UW_DTYPE_BF16, 2, shape, draw[i], rb, &l[i], st, &e) < 0 ||
		    uwk_encode(&l[i], draw[i], rb, ddst[i], st, &e) < 0)
			die("gpu", e.msg);
	}
	return now() - t0;
}

static void bench(const struct set *s, int ncpu)
{
	struct uw_layout lc[16], lg[16];
	uint8_t *hdst[16];
	void *draw[16], *ddst[16];
	cudaStream_t st;
	CU(cudaStreamCreate(&st));
	for (int i = 0; i < s->n; i++) {
		size_t rb = 2 * s->rows[i] * s->cols[i];
		hdst[i] = aligned_alloc(RES_ALIGN, (rb + RES_ALIGN) / RES_ALIGN * RES_ALIGN);
		CU(cudaMalloc(&draw[i], rb));
		CU(cudaMalloc(&ddst[i], rb + RES_ALIGN));
		CU(cudaMemcpy(draw[i], s->w[i], rb, cudaMemcpyHostToDevice));
	}
	const int threads[2] = {1, ncpu};
	double best[4] = {1e30, 1e30, 1e30, 1e30};
	for (int r = 0; r < REPS; r++) {
		for (int k = 0; k < 2; k++) {
			double t = cpu_run(s, threads[k], lc, hdst);
			best[k] = t < best[k] ? t : best[k];
		}
		for (int k = 0; k < 2; k++) {
			double t = gpu_run(s, k, draw, ddst, lg, st);
			best[2 + k] = t < best[2 + k] ? t : best[2 + k];
		}
	}
	/* the GPU's bytes are the CPU's */
	int same = 1;
	size_t enc = 0;
	for (int i = 0; i < s->n; i++) {
		uint8_t *got = malloc(lg[i].nbytes + 1);
		CU(cudaMemcpy(got, ddst[i], lg[i].nbytes, cudaMemcpyDeviceToHost));
		same &= lg[i].nbytes == lc[i].nbytes && lg[i].crc32c == lc[i].crc32c &&
			lg[i].format == lc[i].format && !memcmp(got, hdst[i], lc[i].nbytes);
		enc += lc[i].nbytes;
		free(got);
	}
	printf("%-24s %8.1f %6.3f %9.2f %9.2f %9.2f %9.2f  %s\n", s->name, s->bytes / 1e6,
	       (double)enc / (double)s->bytes, s->bytes / best[0] / 1e9, s->bytes / best[1] / 1e9,
	       s->bytes / best[2] / 1e9, s->bytes / best[3] / 1e9, same ? "yes" : "NO");
	fflush(stdout);
	for (int i = 0; i < s->n; i++) {
		free(hdst[i]);
		cudaFree(draw[i]);
		cudaFree(ddst[i]);
	}
	cudaStreamDestroy(st);
	if (!same)
		exit(1);
}

/* One tensor's exphuf payload decoded on the CPU and the GPU: GB/s of raw
 * BF16, and whether the GPU's bytes are the source's. */
static void exphuf_bench(const char *name, const uint16_t *w, size_t bytes, int ncpu)
{
	struct uwerr e = {0};
	struct rest_blob b;
	struct rest_exphuf x;
	if (rest_encode_with(REST_EXPHUF, UW_DTYPE_BF16, w, bytes, 0, &b, &e) < 0 ||
	    rest_exphuf_parse(b.data, b.len, bytes, &x, &e) < 0)
		die("exphuf", e.msg);
	uint16_t *host = malloc(bytes);
	void *dbuf, *dstart, *ddec, *dout;
	const size_t starts = (x.nchunks + 1) * sizeof(uint64_t);
	/* placed as the daemon places it */
	CU(cudaMalloc(&dbuf, 16 + b.len + UWK_EXPHUF_PAD));
	char *dpay = (char *)dbuf + uwk_exphuf_lead(x.sm_off);
	CU(cudaMalloc(&dstart, starts));
	CU(cudaMalloc(&ddec, sizeof(x.dec->entry)));
	CU(cudaMalloc(&dout, bytes));
	CU(cudaMemcpy(dpay, b.data, b.len, cudaMemcpyHostToDevice));
	CU(cudaMemcpy(dstart, x.start, starts, cudaMemcpyHostToDevice));
	CU(cudaMemcpy(ddec, x.dec->entry, sizeof(x.dec->entry), cudaMemcpyHostToDevice));
	const int threads[2] = {1, ncpu};
	double best[3] = {1e30, 1e30, 1e30};
	for (int r = 0; r < REPS; r++) {
		for (int k = 0; k < 2; k++) {
			double t = now();
			if (rest_decode(REST_EXPHUF, UW_DTYPE_BF16, b.data, b.len, host, bytes,
					threads[k], &e) < 0)
				die("rest_decode", e.msg);
			t = now() - t;
			best[k] = t < best[k] ? t : best[k];
		}
		double t = now();
		if (uwk_exphuf_decode((const uint8_t *)dpay + x.sm_off, (const uint8_t *)dpay + x.bits_off,
				      dstart, ddec, x.n, dout, 0, &e) < 0)
			die("uwk_exphuf_decode", e.msg);
		t = now() - t;
		best[2] = t < best[2] ? t : best[2];
	}
	CU(cudaMemcpy(host, dout, bytes, cudaMemcpyDeviceToHost));
	const int same = !memcmp(host, w, bytes);
	printf("%-24s %8.1f %6.3f %9.2f %9.2f %9.2f  %s\n", name, bytes / 1e6,
	       (double)b.len / (double)bytes, bytes / best[0] / 1e9, bytes / best[1] / 1e9,
	       bytes / best[2] / 1e9, same ? "yes" : "NO");
	fflush(stdout);
	rest_exphuf_free(&x);
	free(b.data);
	free(host);
	cudaFree(dbuf);
	cudaFree(dstart);
	cudaFree(ddec);
	cudaFree(dout);
	if (!same)
		exit(1);
}

int main(void)
{
	int ndev = 0;
	if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0)
		die("cudaGetDeviceCount", "no GPU");
	struct cudaDeviceProp p;
	CU(cudaGetDeviceProperties(&p, 0));
	const int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	printf("uw-bench-encode: %s, %d CPUs, best of %d, GB/s of raw BF16 (plan + encode + CRC)\n",
	       p.name, ncpu, REPS);
	printf("%-24s %8s %6s %9s %9s %9s %9s  %s\n", "tensor", "raw MB", "ratio", "cpu 1t",
	       "cpu all", "gpu", "gpu+h2d", "same");
	uint64_t rng = tu_seed();
	static const uint64_t shapes[][2] = {{14336, 4096}, {8192, 8192}};
	uint16_t *gauss[2];
	char names[2][48];
	for (int k = 0; k < 2; k++) {
		snprintf(names[k], sizeof(names[k]), "N(0,0.02) %llux%llu",
			 (unsigned long long)shapes[k][0], (unsigned long long)shapes[k][1]);
		struct set s = {.name = names[k], .n = 1, .rows = {shapes[k][0]}, .cols = {shapes[k][1]}};
		s.bytes = 2 * shapes[k][0] * shapes[k][1];
		s.w[0] = gauss[k] = pinned(s.bytes);
		bf16_gauss(&rng, 0.02, s.w[0], s.bytes / 2);
		bench(&s, ncpu);
	}
	struct bf16_real *real;
	int n = bf16_real_mlp(&real);
	if (n < 1 || n > 16)
		die("stories260K", "MLP weights not read");
	struct set s = {.name = "stories260K MLP (15)", .n = n};
	for (int i = 0; i < n; i++) {
		s.rows[i] = real[i].rows;
		s.cols[i] = real[i].cols;
		size_t rb = 2 * real[i].rows * real[i].cols;
		s.w[i] = pinned(rb);
		memcpy(s.w[i], real[i].w, rb);
		s.bytes += rb;
	}
	bench(&s, ncpu);
	for (int i = 0; i < n; i++)
		cudaFreeHost(s.w[i]);
	bf16_real_free(real, n);
	printf("\nexphuf payload decode, GB/s of raw BF16 (payload already in memory)\n");
	printf("%-24s %8s %6s %9s %9s %9s  %s\n", "tensor", "raw MB", "ratio", "cpu 1t", "cpu all",
	       "gpu", "same");
	for (int k = 0; k < 2; k++) {
		exphuf_bench(names[k], gauss[k], 2 * shapes[k][0] * shapes[k][1], ncpu);
		cudaFreeHost(gauss[k]);
	}
	return 0;
}
