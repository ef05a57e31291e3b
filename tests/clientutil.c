/* clientutil: implementation of clientutil.h. */
#include "config.h"

#include "tests/clientutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "kernels/resident.h"
#include "tests/testutil.h"

#ifdef HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

/* On the CUDA backend uw_decode and uw_matmul take device memory: stage the
 * host buffers through it, so that the checks below read the same either
 * way. x NULL: decode into y. y's bytes go up first, so guard bytes in it
 * come back as they were unless the call wrote them. */
static int call(const uw_tensor *t, const void *x, size_t xb, size_t batch, void *y,
		size_t yb, int y_f32)
{
	if (!uw_tensor_device_ptr(t))
		return !x ? uw_decode(t, y, yb, NULL) :
		       y_f32 ? uw_matmul_f32(t, x, batch, y, NULL) : uw_matmul(t, x, batch, y, NULL);
#ifdef HAVE_CUDA
	void *dx = NULL, *dy = NULL;
	int rc = -EIO;
	if (cudaMalloc(&dy, yb) != cudaSuccess || (x && cudaMalloc(&dx, xb) != cudaSuccess) ||
	    cudaMemcpy(dy, y, yb, cudaMemcpyHostToDevice) != cudaSuccess ||
	    (x && cudaMemcpy(dx, x, xb, cudaMemcpyHostToDevice) != cudaSuccess))
		goto out;
	rc = !x ? uw_decode(t, dy, yb, NULL) :
	     y_f32 ? uw_matmul_f32(t, dx, batch, dy, NULL) : uw_matmul(t, dx, batch, dy, NULL);
	if (rc == 0 && cudaMemcpy(y, dy, yb, cudaMemcpyDeviceToHost) != cudaSuccess)
		rc = -EIO;
out:
	cudaFree(dx);
	cudaFree(dy);
	return rc;
#else
	return -EOPNOTSUPP;
#endif
}

int cu_check_decode(const uw_tensor *t, const void *raw, size_t raw_bytes)
{
	struct uw_tensor_info info;
	int rc = uw_tensor_info(t, &info);
	if (rc < 0 || info.raw_bytes != raw_bytes) {
		fprintf(stderr, "decode: info: %d (%s), raw_bytes %llu, expected %zu\n", rc,
			uw_errmsg(), (unsigned long long)info.raw_bytes, raw_bytes);
		return -1;
	}
	/* One guard byte past the end: decode must write raw_bytes, no more. */
	uint8_t *out = malloc(raw_bytes + 1);
	if (!out)
		return -1;
	memset(out, 0xa5, raw_bytes + 1);
	rc = call(t, NULL, 0, 0, out, raw_bytes + 1, 0);
	int ok = rc == 0 && !memcmp(out, raw, raw_bytes) && out[raw_bytes] == 0xa5;
	if (!ok) {
		size_t i = 0;
		while (rc == 0 && i < raw_bytes && out[i] == ((const uint8_t *)raw)[i])
			i++;
		fprintf(stderr, "decode %s: rc %d (%s), first difference at byte %zu of %zu\n",
			info.name, rc, rc ? uw_errmsg() : "", i, raw_bytes);
	}
	free(out);
	return ok ? 0 : -1;
}

/* y against the float64 sums of x . w^T, each within tol of sum |x||w|;
 * the failures, with the worst on stderr. */
static size_t outside(const char *what, const struct uw_tensor_info *info, const uint16_t *x,
		      const uint16_t *w, size_t batch, const void *y, int y_f32, double tol)
{
	size_t rows = info->shape[0], cols = info->shape[1];
	/* Report the worst element only: one line per failing tensor. */
	size_t nbad = 0, wb = 0, wr = 0;
	double worst = 0, wgot = 0, wref = 0, wmag = 0;
	for (size_t b = 0; b < batch; b++)
		for (size_t r = 0; r < rows; r++) {
			double ref = 0, mag = 0;
			for (size_t c = 0; c < cols; c++) {
				double xv = bf16_to_f32(x[b * cols + c]);
				double wv = bf16_to_f32(w[r * cols + c]);
				ref += xv * wv;
				mag += fabs(xv * wv);
			}
			double got = y_f32 ? ((const float *)y)[b * rows + r] :
				     bf16_to_f32(((const uint16_t *)y)[b * rows + r]);
			double err = fabs(got - ref);
			if (!(err <= tol * mag)) {
				double rel = mag > 0 ? err / mag : INFINITY;
				if (nbad++ == 0 || !(rel <= worst)) {
					worst = rel;
					wb = b, wr = r, wgot = got, wref = ref, wmag = mag;
				}
			}
		}
	if (nbad)
		fprintf(stderr, "%s %s batch %zu: %zu of %zu outside %g of sum|x||w|; "
			"worst y[%zu][%zu] = %.9g, reference %.9g, sum|x||w| %g\n",
			what, info->name, batch, nbad, batch * rows, tol, wb, wr, wgot, wref, wmag);
	return nbad;
}

/* BF16 x of batch rows of cols, uniform in [-2, 2); NULL when out of memory. */
static uint16_t *random_x(size_t batch, size_t cols, uint64_t *rng)
{
	uint16_t *x = malloc(batch * cols * sizeof(*x));
	for (size_t i = 0; x && i < batch * cols; i++)
		x[i] = f32_to_bf16((float)((double)(tu_rand(rng) >> 11) * 0x1p-51 - 2.0));
	return x;
}

int cu_check_matmul(const uw_tensor *t, const uint16_t *w, size_t batch, int y_f32,
		    uint64_t *rng, uint32_t *crc)
{
	struct uw_tensor_info info;
	if (uw_tensor_info(t, &info) < 0 || info.ndim != 2)
		return -1;
	size_t rows = info.shape[0], cols = info.shape[1];
	size_t ysz = y_f32 ? sizeof(float) : sizeof(uint16_t);
	/* BF16 output: half an ulp (2^-9) plus the sums; float32 output: the
	 * float32 sums alone, at most cols roundings of 2^-24 each. */
	double tol = y_f32 ? (double)cols * 0x1p-24 + 0x1p-24 : 1e-2;
	uint16_t *x = random_x(batch, cols, rng);
	void *y = malloc(batch * rows * ysz);
	int rc = -1;
	if (!x || !y)
		goto out;
	if (call(t, x, batch * cols * sizeof(*x), batch, y, batch * rows * ysz, y_f32) < 0) {
		fprintf(stderr, "matmul %s: %s\n", info.name, uw_errmsg());
		goto out;
	}
	if (crc)
		*crc = crc32c(*crc, y, batch * rows * ysz);
	rc = outside(y_f32 ? "matmul_f32" : "matmul", &info, x, w, batch, y, y_f32, tol) ? -1 : 0;
out:
	free(x);
	free(y);
	return rc;
}

/* uw_matmul2, staged through device memory on the CUDA backend as call()
 * does. */
static int call2(const uw_tensor *t0, const uw_tensor *t1, const uint16_t *x, size_t xb,
		 size_t batch, uint16_t *y0, size_t yb0, uint16_t *y1, size_t yb1)
{
	if (!uw_tensor_device_ptr(t0))
		return uw_matmul2(t0, t1, x, batch, y0, y1, NULL);
#ifdef HAVE_CUDA
	void *dx = NULL, *d0 = NULL, *d1 = NULL;
	int rc = -EIO;
	if (cudaMalloc(&dx, xb) != cudaSuccess || cudaMalloc(&d0, yb0) != cudaSuccess ||
	    cudaMalloc(&d1, yb1) != cudaSuccess ||
	    cudaMemcpy(dx, x, xb, cudaMemcpyHostToDevice) != cudaSuccess)
		goto out;
	rc = uw_matmul2(t0, t1, dx, batch, d0, d1, NULL);
	if (rc == 0 && (cudaMemcpy(y0, d0, yb0, cudaMemcpyDeviceToHost) != cudaSuccess ||
			cudaMemcpy(y1, d1, yb1, cudaMemcpyDeviceToHost) != cudaSuccess))
		rc = -EIO;
out:
	cudaFree(dx);
	cudaFree(d0);
	cudaFree(d1);
	return rc;
#else
	return -EOPNOTSUPP;
#endif
}

int cu_check_matmul2(const uw_tensor *t0, const uint16_t *w0, const uw_tensor *t1,
		     const uint16_t *w1, size_t batch, uint64_t *rng)
{
	struct uw_tensor_info i0, i1;
	if (uw_tensor_info(t0, &i0) < 0 || uw_tensor_info(t1, &i1) < 0 || i0.ndim != 2 ||
	    i1.ndim != 2 || i0.shape[1] != i1.shape[1])
		return -1;
	const size_t cols = i0.shape[1], n0 = batch * i0.shape[0], n1 = batch * i1.shape[0];
	uint16_t *x = random_x(batch, cols, rng), *y0 = malloc(2 * n0), *y1 = malloc(2 * n1);
	int rc = -1;
	if (!x || !y0 || !y1)
		goto out;
	if (call2(t0, t1, x, 2 * batch * cols, batch, y0, 2 * n0, y1, 2 * n1) < 0) {
		fprintf(stderr, "matmul2 %s, %s: %s\n", i0.name, i1.name, uw_errmsg());
		goto out;
	}
	rc = outside("matmul2", &i0, x, w0, batch, y0, 0, 1e-2) +
	     outside("matmul2", &i1, x, w1, batch, y1, 0, 1e-2) ? -1 : 0;
out:
	free(x);
	free(y0);
	free(y1);
	return rc;
}
