/* ref_matmul: the CPU reference of the fused decode + matmul, y = x . W^T,
 * that the CUDA kernels are checked against. */
#include "kernels/resident.h"

#include <stdlib.h>
#include <string.h>

#include "common/parallel.h"
#include "format/dtype.h"

#define MM_ROWS 16      /* rows of W a thread decodes at a time */

struct mm_job {
	const struct uw_layout *l;
	const void *base;
	const float *x;         /* [batch][cols], converted once */
	size_t batch;
	uint16_t *y;            /* BF16 out, or */
	float *yf;              /* float32 out (the accumulator as it is) */
	struct par_err err;
};

static void mm_part(void *ctx, size_t r0, size_t r1)
{
	struct mm_job *j = ctx;
	const size_t cols = j->l->cols, rows = j->l->rows;
	uint8_t *wb = malloc(MM_ROWS * 2 * cols);
	float *wf = malloc(cols * sizeof(float));
	struct uwerr e = {0};

	if (!wb || !wf) {
		uwerr_set(&e, ENOMEM, "ref_matmul: row buffers of %zu columns", cols);
		par_fail(&j->err, &e);
		goto out;
	}
	for (size_t r = r0; r < r1 && !par_failed(&j->err); r += MM_ROWS) {
		size_t n = r1 - r < MM_ROWS ? r1 - r : MM_ROWS;
		if (res_decode_rows(j->l, j->base, r, r + n, wb, &e) < 0) {
			par_fail(&j->err, &e);
			break;
		}
		for (size_t k = 0; k < n; k++) {
			const uint8_t *w = wb + 2 * k * cols;
			for (size_t c = 0; c < cols; c++)
				wf[c] = bf16_to_f32((uint16_t)(w[2 * c] | w[2 * c + 1] << 8));
			for (size_t b = 0; b < j->batch; b++) {
				/* In column order: a BF16 x BF16 product is exact in
				 * float32, so only the additions round. */
				const float *xb = j->x + b * cols;
				float acc = 0.0f;
				for (size_t c = 0; c < cols; c++)
					acc += xb[c] * wf[c];
				if (j->yf)
					j->yf[b * rows + r + k] = acc;
				else
					j->y[b * rows + r + k] = f32_to_bf16(acc);
			}
		}
	}
out:
	free(wf);
	free(wb);
}

static int matmul_run(const struct uw_layout *l, const void *base, const uint16_t *x,
		      size_t batch, uint16_t *y, float *yf, int nthreads, struct uwerr *e)
{
	int rc = res_validate(l, l->nbytes, e);
	if (rc < 0)
		return uwerr_prefix(e, "ref_matmul");
	if (l->dtype != UW_DTYPE_BF16)
		return uwerr_set(e, EINVAL, "ref_matmul: a %s tensor (BF16 only)", dtype_name((int)l->dtype));
	size_t nx, bytes;
	if (uw_mul_size(batch, l->cols, &nx) < 0 || uw_mul_size(nx, sizeof(float), &bytes) < 0)
		return uwerr_set(e, EOVERFLOW, "ref_matmul: batch %zu x %llu columns overflows",
				 batch, (unsigned long long)l->cols);
	if (batch == 0 || l->rows == 0)
		return 0;
	float *xf = malloc(bytes ? bytes : 1);
	if (!xf)
		return uwerr_set(e, ENOMEM, "ref_matmul: %zu bytes for x", bytes);
	for (size_t i = 0; i < nx; i++)
		xf[i] = bf16_to_f32(x[i]);
	struct mm_job j = {.l = l, .base = base, .x = xf, .batch = batch, .y = y, .yf = yf};
	if (nthreads <= 0 && (double)nx * (double)l->rows < RES_PAR_MIN)
		nthreads = 1;   /* the results do not depend on it, only the time */
	par_for(l->rows, nthreads, mm_part, &j);
	free(xf);
	return par_err_take(&j.err, e);
}

int ref_matmul(const struct uw_layout *l, const void *base, const uint16_t *x,
	       size_t batch, uint16_t *y, int nthreads, struct uwerr *e)
{
	return matmul_run(l, base, x, batch, y, NULL, nthreads, e);
}

int ref_matmul_f32(const struct uw_layout *l, const void *base, const uint16_t *x,
		   size_t batch, float *y, int nthreads, struct uwerr *e)
{
	return matmul_run(l, base, x, batch, NULL, y, nthreads, e);
}
