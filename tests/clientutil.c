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
	uint16_t *x = malloc(batch * cols * sizeof(*x));
	void *y = malloc(batch * rows * ysz);
	int rc = -1;
	if (!x || !y)
		goto out;
	for (size_t i = 0; i < batch * cols; i++)   /* uniform in [-2, 2) */
		x[i] = f32_to_bf16((float)((double)(tu_rand(rng) >> 11) * 0x1p-51 - 2.0));
	if (call(t, x, batch * cols * sizeof(*x), batch, y, batch * rows * ysz, y_f32) < 0) {
		fprintf(stderr, "matmul %s: %s\n", info.name, uw_errmsg());
		goto out;
	}
	if (crc)
		*crc = crc32c(*crc, y, batch * rows * ysz);
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
		fprintf(stderr, "matmul%s %s batch %zu: %zu of %zu outside %g of sum|x||w|; "
			"worst y[%zu][%zu] = %.9g, reference %.9g, sum|x||w| %g\n",
			y_f32 ? "_f32" : "", info.name, batch, nbad, batch * rows, tol, wb, wr,
			wgot, wref, wmag);
	rc = nbad ? -1 : 0;
out:
	free(x);
	free(y);
	return rc;
}
