/* bench/matmul: the fused R12 uwk_matmul beside cuBLAS BF16 on the same
 * weights in raw form, and beside decode-to-scratch + cuBLAS, on the MLP
 * shapes of Llama-3.1-8B and -70B (issues 4 and 5).
 *
 * Run it on the GPU host through bench/gpu-run.sh, or directly:
 *   uw-bench-matmul [-q] [-n] [-T] [-b BATCH]... [-w DIR]
 *     -q: 14336x4096 at batch 1 and 64 only
 *     -b BATCH: this batch of 1, 4, 16, 64, 256 and 1024 (repeatable;
 *        default all)
 *     -n: no sweep over the fused kernel's shapes
 *     -T: no tuning (the tuned columns stay empty)
 *     -w DIR: merge the tuner's choices into DIR/matmul.tune
 * The tuned columns: uwk_tune_shape (the daemon's tuner) picks a pipeline
 * for each shape at each batch up to TUNE_MAX_BUCKET (1024: every batch
 * here), and uwk_matmul AUTO runs it from a context given those choices
 * (the lookup a worker does), timed as the others in the same run.
 * Weights are synthetic N(0, 0.02) BF16, encoded to R12 on the CPU (res_plan,
 * res_encode). Each time is the median of REPS calls timed with CUDA events,
 * each call after a 128 MiB memset that flushes the 50 MB L2. The byte floor
 * is resident bytes / the bandwidth of a device-to-device copy measured in
 * the same run (bytes read + bytes written). cuBLAS is cublasGemmEx on the
 * raw BF16 weights (BF16 in and out, float compute), same card, same run.
 * The last column compares the fused result with cuBLAS's (relative L2).
 * A second table does the same for the size preference: the weights as R11
 * (res_plan with RES_PREFER_SIZE) through uwk_matmul, with its own byte
 * floor, against the same cuBLAS run as the first table's row, and a third
 * the same through the fused pipeline (UWK_PIPE_FUSED) where it takes the
 * shape (up to batch UWK_FUSED_MAX_BATCH). On the
 * first shape, the host's time to queue one call (AUTO and cuBLAS, a mean
 * of HOST_CALLS back to back) shows what a call costs a worker's CPU. */
#include <algorithm>
#include <chrono>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <thread>
#include <vector>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "bench/benchutil.h"
#include "kernels/cuda/uwk.h"

extern "C" {
#include "kernels/resident.h"
#include "kernels/tunecache.h"
}

#define REPS 25
#define FLUSH_BYTES (128u << 20)

static void *flush_buf;

/* Median microseconds of f() over REPS calls, each after an L2 flush. */
template <class F>
static double time_us(F f)
{
	for (int i = 0; i < 3; i++)
		f();
	std::vector<cudaEvent_t> ev(2 * REPS);
	for (auto &e : ev)
		CK(cudaEventCreate(&e));
	for (int i = 0; i < REPS; i++) {
		CK(cudaMemsetAsync(flush_buf, i, FLUSH_BYTES, 0));
		CK(cudaEventRecord(ev[2 * i], 0));
		f();
		CK(cudaEventRecord(ev[2 * i + 1], 0));
	}
	CK(cudaEventSynchronize(ev[2 * REPS - 1]));
	CK(cudaGetLastError());
	std::vector<double> t(REPS);
	for (int i = 0; i < REPS; i++) {
		float ms;
		CK(cudaEventElapsedTime(&ms, ev[2 * i], ev[2 * i + 1]));
		t[i] = ms * 1e3;
	}
	for (auto &e : ev)
		cudaEventDestroy(e);
	std::sort(t.begin(), t.end());
	return t[REPS / 2];
}

/* The host's mean time to queue f (HOST_CALLS calls back to back, after a
 * warm-up; the GPU is not waited for until the end). */
#define HOST_CALLS 100
template <class F>
static double host_us(F f)
{
	for (int i = 0; i < 3; i++)
		f();
	CK(cudaDeviceSynchronize());
	const auto t0 = std::chrono::steady_clock::now();
	for (int i = 0; i < HOST_CALLS; i++)
		f();
	const auto t1 = std::chrono::steady_clock::now();
	CK(cudaDeviceSynchronize());
	return std::chrono::duration<double, std::micro>(t1 - t0).count() / HOST_CALLS;
}

/* N(0, sigma) BF16, in parallel: each 1 Mi-element chunk has its own stream. */
struct gauss_job {
	uint16_t *w;
	size_t n;
	double sigma;
	uint64_t seed;
};

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void gauss_part(void *ctx, size_t c0, size_t c1)
{
	gauss_job *j = (gauss_job *)ctx;
	for (size_t c = c0; c < c1; c++) {
		uint64_t s = j->seed ^ (c * 0x632be59bd9b4e019ull);
		size_t end = std::min(j->n, (c + 1) << 20);
		for (size_t i = c << 20; i < end; i += 2) {
			double u1 = ((splitmix(&s) >> 11) + 0.5) / 9007199254740992.0;
			double u2 = ((splitmix(&s) >> 11) + 0.5) / 9007199254740992.0;
			double r = j->sigma * sqrt(-2.0 * log(u1)), t = 2.0 * M_PI * u2;
			j->w[i] = f32_to_bf16((float)(r * cos(t)));
			if (i + 1 < end)
				j->w[i + 1] = f32_to_bf16((float)(r * sin(t)));
		}
	}
}

static uint16_t *gauss(size_t n, double sigma, uint64_t seed)
{
	uint16_t *w = (uint16_t *)malloc(2 * n);
	gauss_job j = {w, n, sigma, seed};
	const size_t chunks = (n + (1 << 20) - 1) >> 20;
	const size_t nt = std::max(1u, std::thread::hardware_concurrency());
	std::vector<std::thread> th;
	for (size_t i = 0; i < nt; i++)
		th.emplace_back(gauss_part, &j, chunks * i / nt, chunks * (i + 1) / nt);
	for (auto &t : th)
		t.join();
	return w;
}

int main(int argc, char **argv)
{
	static const size_t batches[] = {1, 4, 16, 64, 256, 1024};
	bool quick = false, sweep = true, tune = true, only[6] = {false}, some = false;
	const char *tune_out = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-q"))
			quick = true;
		else if (!strcmp(argv[i], "-n"))
			sweep = false;
		else if (!strcmp(argv[i], "-T"))
			tune = false;
		else if (!strcmp(argv[i], "-w") && i + 1 < argc)
			tune_out = argv[++i];
		else if (!strcmp(argv[i], "-b") && i + 1 < argc) {
			const size_t b = strtoull(argv[++i], NULL, 10);
			size_t bi = 0;
			while (bi < 6 && batches[bi] != b)
				bi++;
			if (bi == 6) {
				fprintf(stderr, "%s: batch %s: not one of 1, 4, 16, 64, 256, 1024\n",
					argv[0], argv[i]);
				return 2;
			}
			only[bi] = some = true;
		} else {
			fprintf(stderr, "usage: %s [-q] [-n] [-T] [-b BATCH]... [-w DIR]\n", argv[0]);
			return 2;
		}
	}
	static const uint64_t shapes[][2] = {{14336, 4096}, {4096, 14336}, {28672, 8192}, {8192, 28672}};
	const int nshapes = quick ? 1 : 4;
	const size_t maxw = quick ? 14336 * 4096 : 28672ull * 8192, maxb = quick ? 64 : 1024;

	cudaDeviceProp prop;
	CK(cudaGetDeviceProperties(&prop, 0));
	int clk = 0, memclk = 0;
	cudaDeviceGetAttribute(&clk, cudaDevAttrClockRate, 0);
	cudaDeviceGetAttribute(&memclk, cudaDevAttrMemoryClockRate, 0);
	printf("device: %s, %d SMs, L2 %d MB, SM clock %d MHz, memory clock %d MHz\n", prop.name,
	       prop.multiProcessorCount, prop.l2CacheSize >> 20, clk / 1000, memclk / 1000);
	CK(cudaMalloc(&flush_buf, FLUSH_BYTES));

	/* the bandwidth ceiling: a 1 GiB device-to-device copy, read + write */
	void *ca, *cb;
	const size_t cbytes = 1ull << 30;
	CK(cudaMalloc(&ca, cbytes));
	CK(cudaMalloc(&cb, cbytes));
	CK(cudaMemset(ca, 1, cbytes));
	double copy_us = time_us([&] { CK(cudaMemcpyAsync(cb, ca, cbytes, cudaMemcpyDeviceToDevice, 0)); });
	const double peak = 2.0 * cbytes / (copy_us * 1e-6);
	printf("device-to-device copy of 1 GiB: %.1f us, %.0f GB/s (read + write): the byte floor uses this\n",
	       copy_us, peak / 1e9);
	CK(cudaFree(ca));
	CK(cudaFree(cb));

	uint16_t *w = gauss(maxw, 0.02, 0x5eed), *x = gauss(maxb * 28672, 1.0, 0xbeef);
	void *dx, *dy, *dy2, *draw, *dres, *dres11, *dout;
	CK(cudaMalloc(&dx, 2 * maxb * 28672));
	CK(cudaMemcpy(dx, x, 2 * maxb * 28672, cudaMemcpyHostToDevice));
	CK(cudaMalloc(&dy, 2 * maxb * 28672));
	CK(cudaMalloc(&dy2, 2 * maxb * 28672));
	CK(cudaMalloc(&draw, 2 * maxw));
	CK(cudaMalloc(&dout, 2 * maxw));
	CK(cudaMalloc(&dres, 2 * maxw));
	CK(cudaMalloc(&dres11, 2 * maxw));
	uint16_t *hy = (uint16_t *)malloc(2 * maxb * 28672), *hy2 = (uint16_t *)malloc(2 * maxb * 28672);

	cublasHandle_t blas;
	if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) {
		fprintf(stderr, "cublasCreate failed\n");
		return 1;
	}
	struct uwk_ctx *ctx, *tctx;
	struct uwerr e = {0};
	struct tune_set tuned = {0};
	if (uwk_ctx_new(&ctx, &e) < 0 || uwk_ctx_new(&tctx, &e) < 0)
		die_uw("uwk_ctx_new", &e);
	struct uwk_cfg cfgs[32];
	const int ncfg = uwk_cfg_list(cfgs, 32);
	static const int kss[] = {1, 2, 3, 4, 6, 8};

	std::vector<double> logsp[6], logsp_fused[6], logsp_tuned[6], logsp_r11[6], logsp_r11f[6],
		logsp_wg[6];
	char r11_rows[4 * 6][160];      /* the size preference's table, printed at the end */
	char r11f_rows[4 * 6][160];     /* R11 through the fused pipeline, likewise */
	char wg_rows[4 * 6][160];       /* the warpgroup pipeline's, likewise */
	char host_rows[3][160];         /* the host's time a call */
	int host_n = 0;
	int wg_n = 0;
	int r11_n = 0, r11f_n = 0;
	double pf_best[6][4][2];        /* [batch][shape][pf - 1]: best over wm x wk and ks */
	for (auto &a : pf_best)
		for (auto &b : a)
			for (double &v : b)
				v = INFINITY;
	printf("\n%-11s %5s | %8s %6s %6s | %8s %6s %7s | %9s %8s | %8s %7s | %-9s %6s | %8s %6s %7s %-12s | %8s\n",
	       "shape", "batch", "auto", "GB/s", "%floor", "cuBLAS", "%floor", "speedup",
	       "dec+cuBL", "fused", "best", "speedup", "best cfg", "dflt", "tuned", "%floor",
	       "speedup", "tuned cfg", "rel L2");
	for (int s = 0; s < nshapes; s++) {
		const uint64_t rows = shapes[s][0], cols = shapes[s][1], n = rows * cols;
		struct uw_layout l;
		uint64_t shape[2] = {rows, cols};
		if (res_plan(UW_DTYPE_BF16, 2, shape, w, 2 * n, RES_PREFER_SPEED, &l, &e) < 0)
			die_uw("res_plan", &e);
		uint8_t *res = (uint8_t *)aligned_alloc(256, (l.nbytes + 255) / 256 * 256);
		if (res_encode(&l, w, 2 * n, res, &e) < 0)
			die_uw("res_encode", &e);
		if (l.format != UW_FORMAT_R12) {
			fprintf(stderr, "%llux%llu: not R12\n", (unsigned long long)rows, (unsigned long long)cols);
			return 1;
		}
		CK(cudaMemcpy(dres, res, l.nbytes, cudaMemcpyHostToDevice));
		CK(cudaMemcpy(draw, w, 2 * n, cudaMemcpyHostToDevice));
		const double floor_us = l.nbytes / peak * 1e6, raw_floor_us = 2.0 * n / peak * 1e6;
		double dec_us = time_us([&] {
			if (uwk_decode(&l, dres, dout, 2 * n, 0, &e) < 0)
				die_uw("uwk_decode", &e);
		});
		printf("%llux%llu: R12 %.3f bits/weight, %llu patches; floor %.1f us (raw BF16 %.1f us); "
		       "uwk_decode %.1f us = %.0f GB/s (read + write)\n",
		       (unsigned long long)rows, (unsigned long long)cols, 8.0 * l.nbytes / n,
		       (unsigned long long)l.npatch, floor_us, raw_floor_us, dec_us,
		       (l.nbytes + 2.0 * n) / (dec_us * 1e-6) / 1e9);

		/* the size preference: the same weights as R11, beside R12 at each
		 * batch against the same cuBLAS run */
		struct uw_layout l11;
		if (res_plan(UW_DTYPE_BF16, 2, shape, w, 2 * n, RES_PREFER_SIZE, &l11, &e) < 0)
			die_uw("res_plan (size)", &e);
		uint8_t *res11 = (uint8_t *)aligned_alloc(256, (l11.nbytes + 255) / 256 * 256);
		if (l11.format != UW_FORMAT_R11 || res_encode(&l11, w, 2 * n, res11, &e) < 0)
			die_uw("res_encode (R11)", &e);
		CK(cudaMemcpy(dres11, res11, l11.nbytes, cudaMemcpyHostToDevice));
		free(res11);
		const double r11_floor = l11.nbytes / peak * 1e6;
		const double r11_dec = time_us([&] {
			if (uwk_decode(&l11, dres11, dout, 2 * n, 0, &e) < 0)
				die_uw("uwk_decode (R11)", &e);
		});
		printf("%llux%llu: R11 %.3f bits/weight, %llu patches; floor %.1f us; uwk_decode %.1f us "
		       "= %.0f GB/s (read + write)\n", (unsigned long long)rows, (unsigned long long)cols,
		       8.0 * l11.nbytes / n, (unsigned long long)l11.npatch, r11_floor, r11_dec,
		       (l11.nbytes + 2.0 * n) / (r11_dec * 1e-6) / 1e9);
		for (size_t bi = 0; bi < 6; bi++) {
			const size_t b = batches[bi];
			if (b > maxb || (some && !only[bi]))
				continue;
			const float one = 1.f, zero = 0.f;
			auto cublas = [&] {
				cublasStatus_t st = cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)b,
								 (int)cols, &one, draw, CUDA_R_16BF, (int)cols, dx,
								 CUDA_R_16BF, (int)cols, &zero, dy2, CUDA_R_16BF,
								 (int)rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
				if (st != CUBLAS_STATUS_SUCCESS) {
					fprintf(stderr, "cublasGemmEx: %s\n", cublasGetStatusString(st));
					exit(1);
				}
			};
			auto pipe = [&](enum uwk_pipe p) {
				return [&, p] {
					if (uwk_matmul_pipe(&l, dres, dx, b, dy, p, 0, ctx, &e) < 0)
						die_uw("uwk_matmul", &e);
				};
			};
			const double t_cub = time_us(cublas);
			CK(cudaMemcpy(hy2, dy2, 2 * b * rows, cudaMemcpyDeviceToHost));
			const double t_dec = time_us(pipe(UWK_PIPE_DECODE_GEMM));
			const double t_auto = time_us(pipe(UWK_PIPE_AUTO));
			double t_fused = NAN, err = NAN, best = NAN;
			struct uwk_cfg dflt = {0, 0, 0, 0}, bestc = {0, 0, 0, 0};
			if (b <= UWK_FUSED_MAX_BATCH) {
				t_fused = time_us(pipe(UWK_PIPE_FUSED));
				CK(cudaMemcpy(hy, dy, 2 * b * rows, cudaMemcpyDeviceToHost));
				err = rel_l2(hy, hy2, b * rows);
				uwk_cfg_default(&l, b, ctx, &dflt, &e);
				best = t_fused;
				bestc = dflt;
				for (int c = 0; sweep && c < ncfg; c++)
					for (int k : kss)
						for (int pf = 1; pf <= 2; pf++) {
							struct uwk_cfg cfg = cfgs[c];
							cfg.ks = k;
							cfg.pf = pf;
							int rc = uwk_matmul_fused_cfg(&l, dres, dx, b, dy, &cfg, 0, ctx, &e);
							if (rc == -ENOTSUP)
								continue;           /* x does not fit this shape */
							if (rc < 0)
								die_uw("uwk_matmul_fused_cfg", &e);
							double t = time_us([&] {
								if (uwk_matmul_fused_cfg(&l, dres, dx, b, dy, &cfg, 0, ctx, &e) < 0)
									die_uw("uwk_matmul_fused_cfg", &e);
							});
							pf_best[bi][s][pf - 1] = std::min(pf_best[bi][s][pf - 1], t);
							if (t < best) {
								best = t;
								bestc = cfg;
							}
						}
				logsp_fused[bi].push_back(log(t_cub / best));
			}
			/* the tuner's choice, run by AUTO from a context that has it */
			double t_tuned = NAN;
			char tc[24] = "-";
			if (tune && tune_bucket(b)) {
				struct tune_entry en;
				struct uwk_tune_info info;
				if (uwk_tune_shape(&l, dres, b, 11, NULL, 0, ctx, &en, &info, &e) < 0)
					die_uw("uwk_tune_shape", &e);
				if (info.rejected)
					fprintf(stderr, "tune %llux%llu batch %zu: %d rejected: %s\n",
						(unsigned long long)rows, (unsigned long long)cols, b,
						info.rejected, info.why);
				if (tune_set_put(&tuned, &en, &e) < 0 || uwk_ctx_use_tune(tctx, &tuned, &e) < 0)
					die_uw("tune set", &e);
				t_tuned = time_us([&] {
					if (uwk_matmul_pipe(&l, dres, dx, b, dy, UWK_PIPE_AUTO, 0, tctx, &e) < 0)
						die_uw("uwk_matmul (tuned)", &e);
				});
				logsp_tuned[bi].push_back(log(t_cub / t_tuned));
				tune_choice_name(&en.c, tc, sizeof(tc));
			}
			logsp[bi].push_back(log(t_cub / t_auto));
			char shp[16], bc[24], dc[24];
			snprintf(shp, sizeof(shp), "%llux%llu", (unsigned long long)rows, (unsigned long long)cols);
			snprintf(bc, sizeof(bc), "%dx%d/%d/%d", bestc.wm, bestc.wk, bestc.ks, bestc.pf);
			snprintf(dc, sizeof(dc), "%dx%d/%d/%d", dflt.wm, dflt.wk, dflt.ks, dflt.pf);
			const double t_ours = t_auto;
			printf("%-11s %5zu | %8.1f %6.0f %6.1f | %8.1f %6.1f %7.2f | %9.1f %8.1f | %8.1f %7.2f | %-9s %6s | %8.1f %6.1f %7.2f %-12s | %8.1e\n",
			       shp, b, t_ours, l.nbytes / (t_ours * 1e-6) / 1e9, 100 * floor_us / t_ours, t_cub,
			       100 * raw_floor_us / t_cub, t_cub / t_ours, t_dec, t_fused, best, t_cub / best,
			       b <= UWK_FUSED_MAX_BATCH ? bc : "-", b <= UWK_FUSED_MAX_BATCH ? dc : "-",
			       t_tuned, 100 * floor_us / t_tuned, t_cub / t_tuned, tc, err);
			fflush(stdout);

			/* a side table's row: layout ll (at dev) through pipeline p, timed
			 * and compared with cuBLAS's result, over floor fl */
			auto side_row = [&](const struct uw_layout *ll, const void *dev, enum uwk_pipe p,
					    double fl, char (*rows_)[160], int &n, std::vector<double> *logs) {
				auto run = [&] {
					if (uwk_matmul_pipe(ll, dev, dx, b, dy, p, 0, ctx, &e) < 0)
						die_uw("uwk_matmul (side table)", &e);
				};
				const double t = time_us(run);
				CK(cudaMemcpy(hy, dy, 2 * b * rows, cudaMemcpyDeviceToHost));
				logs[bi].push_back(log(t_cub / t));
				snprintf(rows_[n++], sizeof(rows_[0]), "%-11s %5zu | %8.1f %6.1f | %8.1f %7.2f | %8.1e",
					 shp, b, t, 100 * fl / t, t_cub, t_cub / t, rel_l2(hy, hy2, b * rows));
			};
			/* the warpgroup pipeline (wgmma), where the device has it */
			if (uwk_matmul_pipe(&l, dres, dx, b, dy, UWK_PIPE_FUSED_WG, 0, ctx, &e) == 0)
				side_row(&l, dres, UWK_PIPE_FUSED_WG, floor_us, wg_rows, wg_n, logsp_wg);

			/* the host's time to queue a call, on the first shape: what a
			 * worker pays a call beside the GPU's time */
			if (s == 0 && (b == 1 || b == 16 || b == 256)) {
				const double h_auto = host_us(pipe(UWK_PIPE_AUTO)), h_cub = host_us(cublas);
				snprintf(host_rows[host_n++], sizeof(host_rows[0]),
					 "%-11s %5zu | %8.2f | %8.2f", shp, b, h_auto, h_cub);
			}

			side_row(&l11, dres11, UWK_PIPE_AUTO, r11_floor, r11_rows, r11_n, logsp_r11);
			/* R11 through the fused pipeline, where it takes the shape */
			if (uwk_matmul_pipe(&l11, dres11, dx, b, dy, UWK_PIPE_FUSED, 0, ctx, &e) == 0)
				side_row(&l11, dres11, UWK_PIPE_FUSED, r11_floor, r11f_rows, r11f_n, logsp_r11f);
		}
		free(res);
	}
	printf("\ngeomean speedup over cuBLAS BF16 (auto pipeline; best fused shape; tuned):\n");
	for (size_t bi = 0; bi < 6; bi++) {
		if (logsp[bi].empty())
			continue;
		double a = 0, f = 0;
		for (double v : logsp[bi])
			a += v;
		for (double v : logsp_fused[bi])
			f += v;
		printf("  batch %4zu: %.2fx", batches[bi], exp(a / logsp[bi].size()));
		if (!logsp_fused[bi].empty())
			printf("  (best fused %.2fx)", exp(f / logsp_fused[bi].size()));
		double g = 0;
		for (double v : logsp_tuned[bi])
			g += v;
		if (!logsp_tuned[bi].empty())
			printf("  (tuned %.2fx)", exp(g / logsp_tuned[bi].size()));
		printf("\n");
	}
	/* a side table: its rows, then its geomean over cuBLAS per batch */
	auto side = [&](const char *title, const char *col, const char *tag, char (*rows_)[160],
			int nrows, const std::vector<double> *logs) {
		printf("\n%s:\n%-11s %5s | %8s %6s | %8s %7s | %8s\n", title, "shape", "batch", col,
		       "%floor", "cuBLAS", "speedup", "rel L2");
		for (int i = 0; i < nrows; i++)
			printf("%s\n", rows_[i]);
		for (size_t bi = 0; bi < 6; bi++) {
			double a = 0;
			for (double v : logs[bi])
				a += v;
			if (!logs[bi].empty())
				printf("  batch %4zu: %s %.2fx cuBLAS\n", batches[bi], tag,
				       exp(a / logs[bi].size()));
		}
	};
	printf("\nthe host's time to queue one call (mean of %d back to back, the GPU not waited "
	       "for):\n%-11s %5s | %8s | %8s\n", HOST_CALLS, "shape", "batch", "auto us", "cuBLAS");
	for (int i = 0; i < host_n; i++)
		printf("%s\n", host_rows[i]);
	side("the size preference (R11; uwk_matmul decodes it into scratch, then cuBLAS)", "R11 us",
	     "R11", r11_rows, r11_n, logsp_r11);
	side("the size preference through the fused pipeline (R11, UWK_PIPE_FUSED)", "fused us",
	     "R11 fused", r11f_rows, r11f_n, logsp_r11f);
	side("the warpgroup pipeline (R12, wgmma; UWK_PIPE_FUSED_WG)", "wg us", "wg", wg_rows, wg_n,
	     logsp_wg);
	printf("columns: auto = uwk_matmul (AUTO, no tuned choices: what uw_matmul runs), its %%floor"
	       " and speedup; fused = the mma.sync fused pipeline with its default shape (up to batch"
	       " %d); best = fastest mma.sync shape wm x wk / ks / pf of the sweep; dflt = the"
	       " default's; tuned = AUTO with the tuner's choice (uwk_tune_shape, 11 reps; up to"
	       " batch %d), %%floor and speedup as for auto\n", UWK_FUSED_MAX_BATCH, TUNE_MAX_BUCKET);
	if (tune_out && tuned.n) {
		struct uwerr note = {0};
		if (tune_merge_write(tune_out, &tuned, &note, &e) < 0)
			die_uw("tune_merge_write", &e);
		printf("tuned choices: %zu entries merged into %s/%s\n", tuned.n, tune_out,
		       TUNE_FILE_NAME);
	}
	if (sweep) {
		printf("\nbest us per prefetch depth pf (chunks of W in flight ahead; best over wm x wk and ks)\n");
		for (int s = 0; s < nshapes; s++)
			for (size_t bi = 0; bi < 4; bi++)
				if (batches[bi] <= maxb)
					printf("  %llux%llu batch %4zu: pf 1 %8.1f  pf 2 %8.1f\n",
					       (unsigned long long)shapes[s][0], (unsigned long long)shapes[s][1],
					       batches[bi], pf_best[bi][s][0], pf_best[bi][s][1]);
	}
	uwk_ctx_free(ctx);
	uwk_ctx_free(tctx);
	tune_set_free(&tuned);
	cublasDestroy(blas);
	return 0;
}
