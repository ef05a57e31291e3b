/* check_gpu_kernels: the CUDA kernels against their CPU twins: uwk_encode
 * byte for byte against res_encode (every tensor below is encoded on both),
 * uwk_decode bit-exact against ref_decode, uwk_matmul (every pipeline and fused shape)
 * against a float64 reference, on fresh random tensors, the adversarial set
 * and the stories260K weights; bad arguments are refused without a fault.
 * Exits 77 (skipped) where there is no GPU. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "common/crc32c.h"
#include "format/restcodec.h"
#include "format/safetensors.h"
#include "kernels/cuda/uwk.h"
#include "kernels/resident.h"
#include "kernels/tunecache.h"
#include "tests/bf16cases.h"
#include "tests/testutil.h"

static uint64_t seed, rng;
static struct uwk_ctx *ctx;

#define CK(call) do { \
	cudaError_t r_ = (call); \
	ck_assert_msg(r_ == cudaSuccess, "%s: %s", #call, cudaGetErrorString(r_)); \
} while (0)

/* One tensor on both sides: its resident bytes here and on the device, and
 * its BF16 values as the CPU twin decodes them. */
struct tensor {
	struct uw_layout l;
	uint8_t *host;
	void *dev;
	uint16_t *w;
	size_t n;
};

static void layout_eq(const struct uw_layout *a, const struct uw_layout *b, const char *what)
{
	ck_assert_msg(a->format == b->format && a->dtype == b->dtype && a->rows == b->rows &&
		      a->cols == b->cols && a->nbytes == b->nbytes && a->crc32c == b->crc32c &&
		      !memcmp(a->palette, b->palette, UW_PALETTE_SIZE) &&
		      a->mant_off == b->mant_off && a->mant_stride == b->mant_stride &&
		      a->nib_off == b->nib_off && a->nib_stride == b->nib_stride &&
		      a->patch_grp_off == b->patch_grp_off && a->patch_off == b->patch_off &&
		      a->npatch == b->npatch,
		      "%s: GPU layout (format %u, %llu bytes, %llu patches, crc %08x) is not the CPU's "
		      "(format %u, %llu bytes, %llu patches, crc %08x)", what, a->format,
		      (unsigned long long)a->nbytes, (unsigned long long)a->npatch, a->crc32c,
		      b->format, (unsigned long long)b->nbytes, (unsigned long long)b->npatch,
		      b->crc32c);
}

/* uwk_encode_plan + uwk_encode of raw give res_encode's layout and bytes,
 * touch nothing past them, and uwk_decode brings raw back. */
static void check_encode(const struct tensor *t, int ndim, const uint64_t *shape,
			 const uint16_t *raw, const char *what)
{
	struct uwerr e = {0};
	struct uw_layout l;
	const size_t rb = 2 * t->n, cap = (t->l.nbytes + RES_ALIGN) / RES_ALIGN * RES_ALIGN;
	void *draw, *ddst, *dout;
	CK(cudaMalloc(&draw, rb + 2));
	CK(cudaMalloc(&ddst, cap + RES_ALIGN));
	CK(cudaMalloc(&dout, rb + 2));
	CK(cudaMemcpy(draw, raw, rb, cudaMemcpyHostToDevice));
	CK(cudaMemset(ddst, 0xa5, cap + RES_ALIGN));   /* stale bytes where padding goes */
	ck_assert_msg(uwk_encode_plan(UW_DTYPE_BF16, ndim, shape, draw, rb, &l, 0, &e) == 0,
		      "%s: uwk_encode_plan: %s", what, e.msg);
	ck_assert_msg(uwk_encode(&l, draw, rb, ddst, 0, &e) == 0, "%s: uwk_encode: %s", what, e.msg);
	layout_eq(&l, &t->l, what);
	/* read back twice: the encoded bytes with what follows them, then the
	 * decoded tensor, which is the larger where R12 pays */
	uint8_t *got = malloc(cap + RES_ALIGN > rb ? cap + RES_ALIGN : rb);
	CK(cudaMemcpy(got, ddst, cap + RES_ALIGN, cudaMemcpyDeviceToHost));
	size_t i = 0;   /* the first difference, if any (one assertion, not one a byte) */
	while (i < l.nbytes && got[i] == t->host[i])
		i++;
	ck_assert_msg(i == l.nbytes, "%s: byte %zu of %llu: GPU %02x, CPU %02x", what, i,
		      (unsigned long long)l.nbytes, got[i], t->host[i]);
	while (i < cap + RES_ALIGN && got[i] == 0xa5)
		i++;
	ck_assert_msg(i == cap + RES_ALIGN, "%s: byte %zu past the %llu written", what, i,
		      (unsigned long long)l.nbytes);
	if (t->n) {
		ck_assert_msg(uwk_decode(&l, ddst, dout, rb, 0, &e) == 0, "%s: uwk_decode: %s",
			      what, e.msg);
		CK(cudaMemcpy(got, dout, rb, cudaMemcpyDeviceToHost));
		ck_assert_msg(memcmp(got, raw, rb) == 0, "%s: GPU encode + decode differs", what);
	}
	free(got);
	cudaFree(draw);
	cudaFree(ddst);
	cudaFree(dout);
}

/* The tensor as res_plan makes it for prefer; the GPU encoder (R12 and
 * RAW only) is checked against it for speed. */
static void tensor_make_as(struct tensor *t, int prefer, int ndim, const uint64_t *shape,
			   const uint16_t *raw, size_t n, const char *what)
{
	struct uwerr e = {0};
	memset(t, 0, sizeof(*t));
	t->n = n;
	ck_assert_msg(res_plan(UW_DTYPE_BF16, ndim, shape, raw, 2 * n, prefer, &t->l, &e) == 0,
		      "%s: res_plan: %s", what, e.msg);
	size_t cap = (t->l.nbytes + RES_ALIGN) / RES_ALIGN * RES_ALIGN;
	t->host = aligned_alloc(RES_ALIGN, cap);
	ck_assert_msg(res_encode(&t->l, raw, 2 * n, t->host, &e) == 0, "%s: res_encode: %s", what, e.msg);
	CK(cudaMalloc(&t->dev, cap));
	CK(cudaMemcpy(t->dev, t->host, t->l.nbytes, cudaMemcpyHostToDevice));
	t->w = malloc(2 * n + 2);
	ck_assert_msg(ref_decode(&t->l, t->host, t->w, 2 * n, &e) == 0, "%s: ref_decode: %s", what, e.msg);
	ck_assert_msg(n == 0 || memcmp(t->w, raw, 2 * n) == 0, "%s: the CPU round trip differs", what);
	if (prefer == RES_PREFER_SPEED)
		check_encode(t, ndim, shape, raw, what);
}

static void tensor_make(struct tensor *t, int ndim, const uint64_t *shape, const uint16_t *raw,
			size_t n, const char *what)
{
	tensor_make_as(t, RES_PREFER_SPEED, ndim, shape, raw, n, what);
}

static void tensor_free(struct tensor *t)
{
	cudaFree(t->dev);
	free(t->host);
	free(t->w);
}

static void tensor_2d(struct tensor *t, uint64_t rows, uint64_t cols, const uint16_t *raw,
		      const char *what)
{
	uint64_t shape[2] = {rows, cols};
	tensor_make(t, 2, shape, raw, rows * cols, what);
}

/* N(0, 0.02) weights, with every k-th element (k > 0) given an exponent
 * drawn from [elo, ehi] so that it is (almost always) a patch. */
static uint16_t *weights(size_t n, unsigned k, int elo, int ehi)
{
	uint16_t *w = malloc(2 * n + 2);
	bf16_gauss(&rng, 0.02, w, n);
	for (size_t i = 0; k && i < n; i += 1 + tu_rand(&rng) % (2 * k - 1)) {
		unsigned ex = (unsigned)(elo + (int)(tu_rand(&rng) % (unsigned)(ehi - elo + 1)));
		w[i] = (uint16_t)((w[i] & 0x807f) | ex << 7);
	}
	return w;
}

/* uwk_decode into a poisoned buffer at byte offset skew: exactly the bytes
 * of ref_decode, and nothing written around them. */
static void check_decode(const struct tensor *t, size_t skew, const char *what)
{
	const size_t raw = t->l.format == UW_FORMAT_RAW ? t->l.nbytes : 2 * t->n, cap = raw + skew + 64;
	uint8_t *d, *got = malloc(cap);
	struct uwerr e = {0};
	CK(cudaMalloc((void **)&d, cap));
	CK(cudaMemset(d, 0xa5, cap));
	int rc = uwk_decode(&t->l, t->dev, d + skew, raw, 0, &e);
	ck_assert_msg(rc == 0, "%s: uwk_decode: %s", what, e.msg);
	CK(cudaDeviceSynchronize());
	CK(cudaMemcpy(got, d, cap, cudaMemcpyDeviceToHost));
	for (size_t i = 0; i < cap; i++)
		if (i < skew || i >= skew + raw)
			ck_assert_msg(got[i] == 0xa5, "%s: byte %zd outside the output written",
				      what, (ssize_t)i - (ssize_t)skew);
	const uint8_t *want = (const uint8_t *)t->w;
	for (size_t i = 0; i < raw; i++)
		ck_assert_msg(got[skew + i] == want[i],
			      "%s (%s, %llux%llu, skew %zu): byte %zu is %02x, want %02x", what,
			      t->l.format == UW_FORMAT_R12 ? "R12" : t->l.format == UW_FORMAT_R11 ? "R11" : "RAW",
			      (unsigned long long)t->l.rows, (unsigned long long)t->l.cols, skew, i,
			      got[skew + i], want[i]);
	cudaFree(d);
	free(got);
}

static int run_matmul(const struct tensor *t, const void *x, size_t batch, void *y,
		      enum uwk_pipe pipe, const struct uwk_cfg *cfg, struct uwerr *e)
{
	return cfg ? uwk_matmul_fused_cfg(&t->l, t->dev, x, batch, y, cfg, 0, ctx, e)
		   : uwk_matmul_pipe(&t->l, t->dev, x, batch, y, pipe, 0, ctx, e);
}

/* Whether a fused shape can run this batch (its staged x fits in shared
 * memory); a shape that cannot must say so, not fail otherwise. */
static int cfg_runs(const struct tensor *t, size_t batch, const struct uwk_cfg *cfg)
{
	void *x, *y;
	struct uwerr e = {0};
	CK(cudaMalloc(&x, 2 * batch * t->l.cols));
	CK(cudaMalloc(&y, 2 * batch * t->l.rows));
	int rc = uwk_matmul_fused_cfg(&t->l, t->dev, x, batch, y, cfg, 0, ctx, &e);
	ck_assert_msg(rc == 0 || rc == -ENOTSUP, "fused %dx%d batch %zu: %s", cfg->wm, cfg->wk,
		      batch, e.msg);
	CK(cudaDeviceSynchronize());
	cudaFree(x);
	cudaFree(y);
	return rc == 0;
}

/* y = x . W^T on the GPU against float64: each output within 1e-2 of
 * sum |x||w| of its dot product, the whole within 1e-2 in L2 norm, every
 * output written (y is poisoned with NaN), the same bits on a second run.
 * xskew: x starts that many elements into its buffer (unaligned staging). */
static void check_matmul(const struct tensor *t, size_t batch, enum uwk_pipe pipe,
			 const struct uwk_cfg *cfg, size_t xskew, const char *what)
{
	const size_t rows = t->l.rows, cols = t->l.cols;
	uint16_t *x = malloc(2 * (batch * cols + xskew)), *y1 = malloc(2 * batch * rows),
		 *y2 = malloc(2 * batch * rows);
	double *ref = malloc(sizeof(double) * batch * rows), *mag = malloc(sizeof(double) * batch * rows);
	bf16_gauss(&rng, 1.0, x, batch * cols + xskew);
	const uint16_t *xs = x + xskew;
	for (size_t n = 0; n < batch; n++)
		for (size_t r = 0; r < rows; r++) {
			double s = 0, m = 0;
			for (size_t c = 0; c < cols; c++) {
				double p = (double)bf16_to_f32(xs[n * cols + c]) *
					   (double)bf16_to_f32(t->w[r * cols + c]);
				s += p;
				m += fabs(p);
			}
			ref[n * rows + r] = s;
			mag[n * rows + r] = m;
		}
	void *dx, *dy;
	CK(cudaMalloc(&dx, 2 * (batch * cols + xskew)));
	CK(cudaMalloc(&dy, 2 * batch * rows));
	CK(cudaMemcpy(dx, x, 2 * (batch * cols + xskew), cudaMemcpyHostToDevice));
	struct uwerr e = {0};
	uint16_t *ys[2] = {y1, y2};
	for (int i = 0; i < 2; i++) {
		CK(cudaMemset(dy, 0xff, 2 * batch * rows));
		int rc = run_matmul(t, (uint16_t *)dx + xskew, batch, dy, pipe, cfg, &e);
		ck_assert_msg(rc == 0, "%s: uwk_matmul: %s", what, e.msg);
		CK(cudaDeviceSynchronize());
		CK(cudaMemcpy(ys[i], dy, 2 * batch * rows, cudaMemcpyDeviceToHost));
	}
	ck_assert_msg(memcmp(y1, y2, 2 * batch * rows) == 0, "%s: two runs differ", what);
	double d2 = 0, r2 = 0;
	for (size_t i = 0; i < batch * rows; i++) {
		double v = bf16_to_f32(y1[i]), err = fabs(v - ref[i]);
		ck_assert_msg(isfinite(v), "%s: y[%zu][%zu] = %g (not written?)", what, i / rows,
			      i % rows, v);
		ck_assert_msg(err <= 1e-2 * mag[i] + 1e-30,
			      "%s (%llux%llu batch %zu): y[%zu][%zu] = %.8g, float64 %.8g, |x||w| %.4g",
			      what, (unsigned long long)rows, (unsigned long long)cols, batch, i / rows,
			      i % rows, v, ref[i], mag[i]);
		d2 += err * err;
		r2 += ref[i] * ref[i];
	}
	ck_assert_msg(d2 <= 1e-4 * r2, "%s: ||y - ref|| / ||ref|| = %g", what, sqrt(d2 / r2));
	cudaFree(dx);
	cudaFree(dy);
	free(x);
	free(y1);
	free(y2);
	free(ref);
	free(mag);
}

static const uint64_t gauss_shapes[][2] = {
	{1, 1}, {3, 5}, {17, 33}, {64, 4096}, {129, 1000}, {1000, 77}, {333, 8192}, {2, 65537},
	{40, 31}, {7, 4100},
};

START_TEST(test_decode_gauss)
{
	for (size_t i = 0; i < sizeof(gauss_shapes) / sizeof(gauss_shapes[0]); i++) {
		const uint64_t rows = gauss_shapes[i][0], cols = gauss_shapes[i][1];
		char what[64];
		snprintf(what, sizeof(what), "N(0, 0.02) %llux%llu", (unsigned long long)rows,
			 (unsigned long long)cols);
		uint16_t *w = weights(rows * cols, 0, 0, 0);
		struct tensor t;
		tensor_2d(&t, rows, cols, w, what);
		if (rows * cols >= 4096)
			ck_assert_msg(t.l.format == UW_FORMAT_R12, "%s: not R12", what);
		check_decode(&t, 0, what);
		check_decode(&t, 2, what);    /* 2-byte stores */
		tensor_free(&t);
		free(w);
	}
}
END_TEST

START_TEST(test_decode_adversarial)
{
	struct bf16_case *c;
	size_t n = bf16_cases(&rng, &c);
	for (size_t i = 0; i < n; i++) {
		struct tensor t;
		tensor_make(&t, c[i].ndim, c[i].shape, c[i].w, c[i].n, c[i].name);
		if (!strcmp(c[i].name, "every bit pattern"))
			ck_assert_msg(t.l.format == UW_FORMAT_RAW, "every bit pattern: R12?");
		check_decode(&t, 0, c[i].name);
		check_decode(&t, 2, c[i].name);
		tensor_free(&t);
	}
	bf16_cases_free(c, n);

	/* many patches of any exponent (Inf, NaN, subnormals too), odd shapes */
	static const uint64_t shapes[][2] = {{300, 1001}, {64, 4096}, {999, 333}, {5, 30000}};
	for (size_t i = 0; i < 4; i++) {
		uint16_t *w = weights(shapes[i][0] * shapes[i][1], 12, 0, 255);
		struct tensor t;
		tensor_2d(&t, shapes[i][0], shapes[i][1], w, "many patches");
		ck_assert_msg(t.l.format == UW_FORMAT_R12 && t.l.npatch * 20 > t.n,
			      "many patches: %s with %llu patches of %zu",
			      t.l.format == UW_FORMAT_R12 ? "R12" : "RAW",
			      (unsigned long long)t.l.npatch, t.n);
		check_decode(&t, 0, "many patches");
		check_decode(&t, 2, "many patches");
		tensor_free(&t);
		free(w);
	}
	/* a palette of 3 exponents */
	uint16_t *w = malloc(2 * 200 * 300);
	for (size_t i = 0; i < 200 * 300; i++)
		w[i] = (uint16_t)((tu_rand(&rng) & 0x807f) | (118 + tu_rand(&rng) % 3) << 7);
	struct tensor t;
	tensor_2d(&t, 200, 300, w, "3 exponents");
	ck_assert(t.l.format == UW_FORMAT_R12 && t.l.npatch == 0);
	check_decode(&t, 0, "3 exponents");
	check_matmul(&t, 3, UWK_PIPE_FUSED, NULL, 0, "3 exponents");
	tensor_free(&t);
	free(w);
}
END_TEST

/* Every BF16 tensor of stories260K as the preference _i keeps it (R12,
 * R11): decode, and matmul for the 2-D ones. */
START_TEST(test_real_weights)
{
	char path[4096];
	struct st_file *f;
	struct uwerr e = {0};
	snprintf(path, sizeof(path), "%s/data/stories260K.safetensors", tu_srcdir());
	ck_assert_msg(st_open(path, &f, &e) == 0, "%s", e.msg);
	const unsigned format = _i == RES_PREFER_SIZE ? UW_FORMAT_R11 : UW_FORMAT_R12;
	int kept = 0;
	for (size_t i = 0; i < f->ntensors; i++) {
		const struct st_tensor *s = &f->tensors[i];
		if (s->dtype != UW_DTYPE_BF16)
			continue;
		uint16_t *w = malloc(st_tensor_bytes(s) + 2);
		ck_assert_msg(st_read_tensor(f, s, w, &e) == 0, "%s", e.msg);
		struct tensor t;
		tensor_make_as(&t, _i, s->ndim, s->shape, w, st_tensor_bytes(s) / 2, s->name);
		kept += t.l.format == format;
		check_decode(&t, 0, s->name);
		if (s->ndim == 2) {
			check_matmul(&t, 1, UWK_PIPE_AUTO, NULL, 0, s->name);
			check_matmul(&t, 7, UWK_PIPE_AUTO, NULL, 0, s->name);
			check_matmul(&t, 64, UWK_PIPE_AUTO, NULL, 0, s->name);
		}
		tensor_free(&t);
		/* its values as rows of 256 columns: full chunks, which no matrix
		 * of stories260K has (the lean loop at batch <= 8) */
		const size_t n = st_tensor_bytes(s) / 2;
		if (s->ndim == 2 && n % 256 == 0) {
			const uint64_t shape[2] = {n / 256, 256};
			tensor_make_as(&t, _i, 2, shape, w, n, s->name);
			check_matmul(&t, 1, UWK_PIPE_AUTO, NULL, 0, s->name);
			check_matmul(&t, 5, UWK_PIPE_AUTO, NULL, 0, s->name);
			tensor_free(&t);
		}
		free(w);
	}
	ck_assert_msg(kept >= 15, "only %d tensors of stories260K are format %u", kept, format);
	st_close(f);
}
END_TEST

static const uint64_t mm_shapes[][2] = {
	{100, 1000}, {77, 1001}, {300, 172}, {1000, 77}, {33, 4100}, {64, 4096}, {1, 1024},
	{40, 2048},
};

START_TEST(test_matmul_fused)
{
	static const size_t batches[] = {1, 2, 7, 8, 9, 16, 24, 33, 64};
	for (size_t i = 0; i < sizeof(mm_shapes) / sizeof(mm_shapes[0]); i++) {
		const uint64_t rows = mm_shapes[i][0], cols = mm_shapes[i][1];
		uint16_t *w = weights(rows * cols, 500, 90, 135);    /* some patches */
		struct tensor t;
		tensor_2d(&t, rows, cols, w, "fused");
		ck_assert_msg(t.l.format == UW_FORMAT_R12, "%llux%llu: not R12",
			      (unsigned long long)rows, (unsigned long long)cols);
		for (size_t b = 0; b < sizeof(batches) / sizeof(batches[0]); b++) {
			char what[64];
			snprintf(what, sizeof(what), "fused %llux%llu", (unsigned long long)rows,
				 (unsigned long long)cols);
			check_matmul(&t, batches[b], UWK_PIPE_FUSED, NULL, 0, what);
		}
		check_matmul(&t, 5, UWK_PIPE_FUSED, NULL, 1, "fused, x unaligned");
		tensor_free(&t);
		free(w);
	}
}
END_TEST

/* The warpgroup pipeline (wgmma) on a device of compute capability 9.0:
 * every batch tile (16 to 256) full and partial, several tiles, rows and
 * columns past the tiles, patches, x unaligned; elsewhere, and on rows
 * not on 16 bytes, ENOTSUP. */
START_TEST(test_matmul_wg)
{
	static const size_t batches[] = {1, 9, 16, 17, 32, 33, 64, 65, 128, 130, 256, 520};
	int major = 0, minor = 0;
	CK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
	CK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0));
	for (size_t i = 0; i < sizeof(mm_shapes) / sizeof(mm_shapes[0]); i++) {
		const uint64_t rows = mm_shapes[i][0], cols = mm_shapes[i][1];
		uint16_t *w = weights(rows * cols, 500, 90, 135);
		struct tensor t;
		tensor_2d(&t, rows, cols, w, "wg");
		const int aligned = t.l.mant_stride % 16 == 0 && t.l.nib_stride % 16 == 0;
		char what[64];
		snprintf(what, sizeof(what), "wg %llux%llu", (unsigned long long)rows,
			 (unsigned long long)cols);
		if (major == 9 && minor == 0 && aligned) {
			for (size_t b = 0; b < sizeof(batches) / sizeof(batches[0]); b++)
				check_matmul(&t, batches[b], UWK_PIPE_FUSED_WG, NULL, 0, what);
			check_matmul(&t, 5, UWK_PIPE_FUSED_WG, NULL, 1, "wg, x unaligned");
		} else {
			struct uwerr e = {0};
			ck_assert_int_eq(uwk_matmul_pipe(&t.l, t.dev, t.dev, 1, t.dev, UWK_PIPE_FUSED_WG,
							 0, ctx, &e), -ENOTSUP);
		}
		tensor_free(&t);
		free(w);
	}
}
END_TEST

/* Every fused shape and prefetch depth built, with and without split-K,
 * on patch-heavy tensors (packed and 16-byte rows). */
START_TEST(test_matmul_cfgs)
{
	struct uwk_cfg cfgs[32];
	int ncfg = uwk_cfg_list(cfgs, 32);
	ck_assert(ncfg > 0 && ncfg <= 32);
	/* 72x2048: full chunks, the lean loop at pf 1 and batch <= 8 */
	static const uint64_t shapes[][2] = {{77, 1001}, {256, 3000}, {40, 520}, {50, 4104},
					     {72, 2048}};
	static const size_t batches[] = {1, 9, 40, 64};
	static const int ks[] = {1, 2, 5};
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		uint16_t *w = weights(shapes[s][0] * shapes[s][1], 15, 20, 200);
		struct tensor t;
		tensor_2d(&t, shapes[s][0], shapes[s][1], w, "cfgs");
		ck_assert(t.l.format == UW_FORMAT_R12 && t.l.npatch > 0);
		for (int c = 0; c < ncfg; c++)
			for (size_t k = 0; k < 3; k++)
				for (int pf = 1; pf <= 2; pf++)
					for (size_t b = 0; b < 4; b++) {
						struct uwk_cfg cfg = cfgs[c];
						char what[96];
						cfg.ks = ks[k];
						cfg.pf = pf;
						if ((k == 2 && pf > 1) || !cfg_runs(&t, batches[b], &cfg))
							continue;
						snprintf(what, sizeof(what), "fused %dx%d ks %d pf %d, %llux%llu, %llu patches",
							 cfg.wm, cfg.wk, cfg.ks, cfg.pf, (unsigned long long)t.l.rows,
							 (unsigned long long)t.l.cols, (unsigned long long)t.l.npatch);
						check_matmul(&t, batches[b], UWK_PIPE_FUSED, &cfg, b == 1, what);
					}
		tensor_free(&t);
		free(w);
	}
}
END_TEST

START_TEST(test_matmul_pipes)
{
	uint16_t *w = weights(300 * 1024, 200, 100, 130);
	struct tensor t;
	tensor_2d(&t, 300, 1024, w, "pipes");
	static const size_t batches[] = {1, 64, 65, 200};
	for (size_t b = 0; b < 4; b++) {
		check_matmul(&t, batches[b], UWK_PIPE_DECODE_GEMM, NULL, 0, "decode + cuBLAS");
		check_matmul(&t, batches[b], UWK_PIPE_AUTO, NULL, 0, "auto");
	}
	tensor_free(&t);
	free(w);

	/* exponents spread over 41 values: RAW, so cuBLAS on the tensor itself */
	w = malloc(2 * 200 * 520);
	for (size_t i = 0; i < 200 * 520; i++)
		w[i] = (uint16_t)((tu_rand(&rng) & 0x807f) | (100 + tu_rand(&rng) % 41) << 7);
	tensor_2d(&t, 200, 520, w, "RAW");
	ck_assert(t.l.format == UW_FORMAT_RAW);
	check_matmul(&t, 1, UWK_PIPE_AUTO, NULL, 0, "RAW auto");
	check_matmul(&t, 100, UWK_PIPE_DECODE_GEMM, NULL, 0, "RAW decode + cuBLAS");
	check_decode(&t, 1, "RAW");
	struct uwerr e = {0};
	ck_assert_int_eq(uwk_matmul_pipe(&t.l, t.dev, t.dev, 1, t.dev, UWK_PIPE_FUSED, 0, ctx, &e),
			 -EINVAL);
	tensor_free(&t);
	free(w);
}
END_TEST

/* R11 (the size preference): uwk_decode bit-exact against the CPU twin on
 * random and adversarial weights (real ones: test_real_weights), full and partial tiles, aligned
 * and 2-byte output; matmul fused (columns a multiple of 128, 16-byte x;
 * tiles of more than the 64 patches loaded a step ahead too) and through
 * decode + cuBLAS. */
START_TEST(test_r11)
{
	for (size_t i = 0; i < sizeof(gauss_shapes) / sizeof(gauss_shapes[0]); i++) {
		const uint64_t rows = gauss_shapes[i][0], cols = gauss_shapes[i][1];
		uint64_t shape[2] = {rows, cols};
		char what[64];
		snprintf(what, sizeof(what), "R11 N(0, 0.02) %llux%llu", (unsigned long long)rows,
			 (unsigned long long)cols);
		uint16_t *w = weights(rows * cols, 0, 0, 0);
		struct tensor t;
		tensor_make_as(&t, RES_PREFER_SIZE, 2, shape, w, rows * cols, what);
		if (rows * cols >= 4096)
			ck_assert_msg(t.l.format == UW_FORMAT_R11, "%s: not R11", what);
		check_decode(&t, 0, what);
		check_decode(&t, 2, what);
		tensor_free(&t);
		free(w);
	}
	struct bf16_case *c;
	size_t n = bf16_cases(&rng, &c);
	for (size_t i = 0; i < n; i++) {
		struct tensor t;
		tensor_make_as(&t, RES_PREFER_SIZE, c[i].ndim, c[i].shape, c[i].w, c[i].n, c[i].name);
		check_decode(&t, 0, c[i].name);
		check_decode(&t, 2, c[i].name);
		tensor_free(&t);
	}
	bf16_cases_free(c, n);
	/* patches of subnormals and tiny exponents (0..10), of the largest
	 * (245..255: Inf, NaN), and of any exponent (then more than 40
	 * exponents: not R11), 1 in 40 and 1 in 3 (4096x4096: the first only) */
	static const uint64_t shapes[][2] = {{300, 1001}, {64, 4096}, {999, 333}, {5, 30000},
					     {4096, 4096}};
	static const int ranges[][2] = {{0, 10}, {245, 255}, {0, 255}};
	for (size_t i = 0; i < 5; i++)
		for (size_t r = 0; r < 3; r++) {
			static const unsigned every[] = {40, 3};
			for (size_t j = 0; j < 2 && (i < 4 || r + j == 0); j++) {
				const unsigned k = every[j];
				uint64_t shape[2] = {shapes[i][0], shapes[i][1]};
				uint16_t *w = weights(shape[0] * shape[1], k, ranges[r][0], ranges[r][1]);
				struct tensor t;
				char what[64];
				snprintf(what, sizeof(what), "R11 patches of %d..%d, 1 in %u, %llux%llu",
					 ranges[r][0], ranges[r][1], k, (unsigned long long)shape[0],
					 (unsigned long long)shape[1]);
				tensor_make_as(&t, RES_PREFER_SIZE, 2, shape, w, shape[0] * shape[1], what);
				if (r == 0 && k == 40)
					ck_assert_msg(t.l.format == UW_FORMAT_R11 && t.l.npatch * 80 > t.n,
						      "%s: format %u with %llu patches of %zu", what,
						      t.l.format, (unsigned long long)t.l.npatch, t.n);
				if (r == 2)
					ck_assert_msg(t.l.format != UW_FORMAT_R11, "%s: R11", what);
				check_decode(&t, 0, what);
				check_decode(&t, 2, what);
				if (r == 0 && t.l.format == UW_FORMAT_R11 && shape[1] % 128 == 0) {
					check_matmul(&t, 1, UWK_PIPE_FUSED, NULL, 0, what);
					check_matmul(&t, 9, UWK_PIPE_FUSED, NULL, 0, what);
				}
				tensor_free(&t);
				free(w);
			}
		}
	/* fused, tiles with more patches than the 64 loaded a step ahead:
	 * 1 in 5 of 40 finite exponents */
	for (size_t i = 0; i < 2; i++) {
		uint64_t shape[2] = {i ? 640 : 64, i ? 1024 : 4096};
		uint16_t *w = weights(shape[0] * shape[1], 5, 95, 134);
		struct tensor t;
		tensor_make_as(&t, RES_PREFER_SIZE, 2, shape, w, shape[0] * shape[1], "R11 many patches");
		ck_assert_msg(t.l.format == UW_FORMAT_R11 && t.l.npatch * 12 > t.n,
			      "R11 many patches: format %u with %llu patches of %zu", t.l.format,
			      (unsigned long long)t.l.npatch, t.n);
		check_decode(&t, 0, "R11 many patches");
		check_matmul(&t, 1, UWK_PIPE_FUSED, NULL, 0, "R11 many patches, fused");
		check_matmul(&t, 40, UWK_PIPE_FUSED, NULL, 0, "R11 many patches, fused");
		tensor_free(&t);
		free(w);
	}
	/* a row of zeros, zero not among the 8 exponents (so each of its
	 * elements is patched): the fused kernel gives 0 there, as the
	 * reference does (check_matmul's bound is 1e-2 of sum |x w| = 0);
	 * multiplying a patched element at palette[7]'s value and adding the
	 * difference apart gave about 1e-7 sum |x| (bench/NOTES.md, R11 v4) */
	{
		uint64_t shape[2] = {640, 4096};
		uint16_t *w = weights(shape[0] * shape[1], 0, 0, 0);
		memset(w + 37 * shape[1], 0, 2 * shape[1]);
		struct tensor t;
		tensor_make_as(&t, RES_PREFER_SIZE, 2, shape, w, shape[0] * shape[1], "R11 zero row");
		ck_assert_msg(t.l.format == UW_FORMAT_R11 && t.l.palette[0] != 0,
			      "R11 zero row: format %u, palette[0] %u", t.l.format, t.l.palette[0]);
		for (size_t b = 1; b <= 64; b *= 4)
			check_matmul(&t, b, UWK_PIPE_FUSED, NULL, 0, "R11 zero row, fused");
		tensor_free(&t);
		free(w);
	}
	/* matmul: fused where every tile is full width, else decode + cuBLAS */
	static const uint64_t mshapes[][2] = {{300, 1024}, {33, 4100}, {64, 4096}, {77, 1001},
					      {1000, 256}, {16, 128}};
	for (size_t i = 0; i < 6; i++) {
		uint64_t shape[2] = {mshapes[i][0], mshapes[i][1]};
		uint16_t *w = weights(shape[0] * shape[1], 200, 100, 130);
		struct tensor t;
		char what[64];
		snprintf(what, sizeof(what), "R11 %llux%llu", (unsigned long long)shape[0],
			 (unsigned long long)shape[1]);
		tensor_make_as(&t, RES_PREFER_SIZE, 2, shape, w, shape[0] * shape[1], what);
		ck_assert_msg(t.l.format == UW_FORMAT_R11, "%s: not R11", what);
		static const size_t batches[] = {1, 2, 7, 8, 9, 16, 24, 33, 64, 65};
		const int fusable = shape[1] % 128 == 0;
		for (size_t b = 0; b < 10; b++) {
			check_matmul(&t, batches[b], UWK_PIPE_AUTO, NULL, 0, what);
			if (fusable && batches[b] <= UWK_FUSED_MAX_BATCH)
				check_matmul(&t, batches[b], UWK_PIPE_FUSED, NULL, 0, what);
			if (b % 3 == 0)
				check_matmul(&t, batches[b], UWK_PIPE_DECODE_GEMM, NULL, b == 3, what);
		}
		check_matmul(&t, 5, UWK_PIPE_AUTO, NULL, 1, "R11, x unaligned");
		struct uwerr e = {0};
		const int rc = uwk_matmul_pipe(&t.l, t.dev, (char *)t.dev + (fusable ? 2 : 0), 1,
					       t.dev, UWK_PIPE_FUSED, 0, ctx, &e);
		ck_assert_msg(rc == -EINVAL, "%s: fused with %s: %d", what,
			      fusable ? "x unaligned" : "partial tiles", rc);
		ck_assert_ptr_nonnull(strstr(e.msg, "R11"));
		tensor_free(&t);
		free(w);
	}
}
END_TEST

START_TEST(test_bad_args)
{
	uint16_t *w = weights(64 * 512, 0, 0, 0);
	struct tensor t;
	tensor_2d(&t, 64, 512, w, "bad args");
	void *x, *y, *out;
	CK(cudaMalloc(&x, 2 * 65 * 512));
	CK(cudaMalloc(&y, 2 * 65 * 64));
	CK(cudaMalloc(&out, 2 * 64 * 512 + 16));
	uint8_t *base = t.dev;
	struct uwerr e;
	struct uw_layout bad = t.l;
	uint16_t host[16];
#define REFUSED(call) do { \
	uwerr_clear(&e); \
	int rc_ = (call); \
	ck_assert_msg(rc_ < 0 && e.msg[0], "%s: %d, \"%s\"", #call, rc_, e.msg); \
} while (0)
	REFUSED(uwk_decode(&t.l, base + 16, out, 2 * 64 * 512, 0, &e));   /* misaligned base */
	REFUSED(uwk_decode(&t.l, base, out, 2 * 64 * 512 - 2, 0, &e));    /* too small */
	REFUSED(uwk_decode(&t.l, base, (uint8_t *)out + 1, 2 * 64 * 512, 0, &e));
	REFUSED(uwk_decode(NULL, base, out, 2 * 64 * 512, 0, &e));
	REFUSED(uwk_decode(&t.l, base, NULL, 2 * 64 * 512, 0, &e));
	REFUSED(uwk_decode(&t.l, base, host, 2 * 64 * 512, 0, &e));   /* host output */
	REFUSED(uwk_decode(&t.l, t.host, out, 2 * 64 * 512, 0, &e));      /* host base */
	bad.dtype = UW_DTYPE_F16;
	REFUSED(uwk_decode(&bad, base, out, 2 * 64 * 512, 0, &e));
	REFUSED(uwk_matmul(&bad, base, x, 1, y, 0, ctx, &e));
	bad = t.l;
	bad.nib_stride = 8;
	REFUSED(uwk_matmul(&bad, base, x, 1, y, 0, ctx, &e));
	REFUSED(uwk_matmul(&t.l, base, x, 0, y, 0, ctx, &e));             /* batch 0 */
	REFUSED(uwk_matmul(&t.l, base, NULL, 1, y, 0, ctx, &e));
	REFUSED(uwk_matmul(&t.l, base, x, 1, (uint8_t *)y + 1, 0, ctx, &e));
	REFUSED(uwk_matmul(&t.l, base, host, 1, y, 0, ctx, &e));
	REFUSED(uwk_matmul(&t.l, base + 256, x, 1, y, 0, NULL, &e));
	REFUSED(uwk_matmul(&t.l, base + 16, x, 1, y, 0, ctx, &e));
	REFUSED(uwk_matmul_pipe(&t.l, base, x, 65, y, UWK_PIPE_FUSED, 0, ctx, &e));
	struct uwk_cfg cfg = {3, 3, 0, 0};
	uwerr_clear(&e);
	ck_assert_int_eq(uwk_matmul_fused_cfg(&t.l, base, x, 1, y, &cfg, 0, ctx, &e), -ENOTSUP);
	cfg = (struct uwk_cfg){2, 2, 1, 3};
	ck_assert_int_eq(uwk_matmul_fused_cfg(&t.l, base, x, 1, y, &cfg, 0, ctx, &e), -ENOTSUP);
	/* nothing was queued, nothing faulted, and it still works */
	ck_assert_int_eq(cudaGetLastError(), cudaSuccess);
	CK(cudaDeviceSynchronize());
	check_matmul(&t, 4, UWK_PIPE_AUTO, NULL, 0, "after bad arguments");
	cudaFree(x);
	cudaFree(y);
	cudaFree(out);
	tensor_free(&t);
	free(w);
}
END_TEST

/* y of one launch, copied to the host (malloc'd); ctx c, the pipeline or
 * the fused cfg as run_matmul takes them. */
static uint16_t *matmul_bits(const struct tensor *t, const void *dx, size_t batch,
			     struct uwk_ctx *c, enum uwk_pipe pipe, const struct uwk_cfg *cfg)
{
	const size_t ny = batch * t->l.rows;
	struct uwerr e = {0};
	void *dy;
	uint16_t *y = malloc(2 * ny);
	CK(cudaMalloc(&dy, 2 * ny));
	CK(cudaMemset(dy, 0xff, 2 * ny));
	int rc = cfg ? uwk_matmul_fused_cfg(&t->l, t->dev, dx, batch, dy, cfg, 0, c, &e)
		     : uwk_matmul_pipe(&t->l, t->dev, dx, batch, dy, pipe, 0, c, &e);
	ck_assert_msg(rc == 0, "matmul: %s", e.msg);
	CK(cudaDeviceSynchronize());
	CK(cudaMemcpy(y, dy, 2 * ny, cudaMemcpyDeviceToHost));
	cudaFree(dy);
	return y;
}

static void *random_x(size_t batch, size_t cols)
{
	uint16_t *x = malloc(2 * batch * cols);
	void *dx;
	bf16_gauss(&rng, 1.0, x, batch * cols);
	CK(cudaMalloc(&dx, 2 * batch * cols));
	CK(cudaMemcpy(dx, x, 2 * batch * cols, cudaMemcpyHostToDevice));
	free(x);
	return dx;
}

/* The tuner: each shape and bucket gets an entry of this device's key
 * whose choice runs, with no candidate rejected (above batch 64 only AUTO's
 * default, decode + cuBLAS and the warpgroup kernel where it runs are
 * candidates, and the entry is one of the last two); a context given the
 * entries runs exactly that choice in AUTO (the same bits as the choice
 * named explicitly) within the float64 bound, for every batch of the
 * bucket. */
START_TEST(test_tune_shape)
{
	static const uint64_t shapes[][2] = {{256, 4096}, {300, 1001}};
	static const size_t batches[] = {1, 8, 16, 64, 200};
	const size_t nb = sizeof(batches) / sizeof(batches[0]);
	struct tune_set set = {0};
	struct tune_key key;
	struct uwerr e = {0};
	ck_assert(uwk_tune_key(ctx, &key, &e) == 0);
	ck_assert_msg(key.cc >= 10 && key.sms > 0 && strstr(key.lib, "+" UWK_KERNELS), "key %s sm_%u %u %s",
		      key.device, key.cc, key.sms, key.lib);
	struct tensor ts[2];
	for (size_t s = 0; s < 2; s++) {
		uint16_t *w = weights(shapes[s][0] * shapes[s][1], 300, 90, 135);
		tensor_2d(&ts[s], shapes[s][0], shapes[s][1], w, "tune");
		free(w);
		ck_assert(ts[s].l.format == UW_FORMAT_R12);
		const int wg = key.cc == 90 && ts[s].l.mant_stride % 16 == 0 &&
			       ts[s].l.nib_stride % 16 == 0;
		for (size_t b = 0; b < nb; b++) {
			struct tune_entry en;
			struct uwk_tune_info info;
			int rc = uwk_tune_shape(&ts[s].l, ts[s].dev, batches[b], 3, NULL, 0, ctx, &en,
						&info, &e);
			ck_assert_msg(rc == 0, "uwk_tune_shape: %s", e.msg);
			ck_assert_msg(info.rejected == 0, "%d rejected: %s", info.rejected, info.why);
			if (batches[b] <= UWK_FUSED_MAX_BATCH) {
				ck_assert_msg(info.tried >= 3, "only %d candidates", info.tried);
			} else {
				ck_assert_msg(info.tried == 1 + wg, "batch %zu: %d candidates, want %d",
					      batches[b], info.tried, 1 + wg);
				ck_assert_msg(en.c.pipe == TUNE_PIPE_GEMM ||
					      (wg && en.c.pipe == TUNE_PIPE_WG),
					      "batch %zu: choice %d", batches[b], en.c.pipe);
			}
			ck_assert(tune_key_eq(&en.key, &key));
			ck_assert(en.rows == shapes[s][0] && en.cols == shapes[s][1]);
			ck_assert_uint_eq(en.bucket, tune_bucket(batches[b]));
			ck_assert(en.us > 0 && en.default_us > 0 && en.us <= en.default_us);
			ck_assert(tune_set_put(&set, &en, &e) == 0);
		}
	}
	struct uwk_ctx *tuned;
	ck_assert(uwk_ctx_new(&tuned, &e) == 0);
	ck_assert_msg(uwk_ctx_use_tune(tuned, &set, &e) == 0, "%s", e.msg);
	for (size_t s = 0; s < 2; s++)
		for (size_t b = 0; b < nb; b++) {
			const struct tune_entry *en = tune_set_find(&set, &key, (uint32_t)shapes[s][0],
								    (uint32_t)shapes[s][1],
								    tune_bucket(batches[b]));
			ck_assert_ptr_nonnull(en);
			/* the bucket's largest batch and one below it */
			for (size_t n = batches[b]; n >= 1 && n + 2 > batches[b]; n--) {
				void *dx = random_x(n, shapes[s][1]);
				struct uwk_cfg cfg = {en->c.wm, en->c.wk, en->c.ks, en->c.pf};
				uint16_t *got = matmul_bits(&ts[s], dx, n, tuned, UWK_PIPE_AUTO, NULL);
				uint16_t *want = en->c.pipe == TUNE_PIPE_GEMM ?
						 matmul_bits(&ts[s], dx, n, ctx, UWK_PIPE_DECODE_GEMM, NULL) :
						 en->c.pipe == TUNE_PIPE_WG ?
						 matmul_bits(&ts[s], dx, n, ctx, UWK_PIPE_FUSED_WG, NULL) :
						 matmul_bits(&ts[s], dx, n, ctx, UWK_PIPE_AUTO, &cfg);
				char cn[48];
				tune_choice_name(&en->c, cn, sizeof(cn));
				ck_assert_msg(!memcmp(got, want, 2 * n * shapes[s][0]),
					      "%llux%llu batch %zu: AUTO did not run the tuned %s",
					      (unsigned long long)shapes[s][0],
					      (unsigned long long)shapes[s][1], n, cn);
				free(got);
				free(want);
				cudaFree(dx);
				struct uwk_ctx *saved = ctx;
				ctx = tuned;
				check_matmul(&ts[s], n, UWK_PIPE_AUTO, NULL, 0, "tuned AUTO");
				ctx = saved;
			}
		}
	uwk_ctx_free(tuned);
	for (size_t s = 0; s < 2; s++)
		tensor_free(&ts[s]);
	tune_set_free(&set);
}
END_TEST

/* AUTO follows a table it is given, whatever the tuner would pick: a gemm
 * entry runs decode + cuBLAS, a fused one its shape, a wg one the
 * warpgroup kernel where it runs (else decode + cuBLAS), up to batch 1024;
 * entries of another device key, another shape or another bucket, and a
 * fused one above batch 64, leave the defaults; the file path
 * (uwk_ctx_load_tune) reads the same entries, keeps them when a later file
 * does not parse, and drops them for no cache at all. */
START_TEST(test_tune_table)
{
	uint16_t *w = weights(256 * 4096, 200, 100, 130);
	struct tensor t;
	tensor_2d(&t, 256, 4096, w, "table");
	free(w);
	struct tune_key key, other;
	struct uwerr e = {0};
	ck_assert(uwk_tune_key(ctx, &key, &e) == 0);
	const int wg = key.cc == 90;       /* 256x4096's rows are on 16 bytes */
	ck_assert(t.l.mant_stride % 16 == 0 && t.l.nib_stride % 16 == 0);
	other = key;
	snprintf(other.lib, sizeof(other.lib), "0.0.0+uwk0");
	struct tune_set set = {0};
	const struct tune_entry en[] = {
		{key, 256, 4096, 4, {TUNE_PIPE_GEMM, 0, 0, 0, 0}, 1, 1},
		{key, 256, 4096, 16, {TUNE_PIPE_FUSED, 1, 8, 3, 1}, 1, 1},
		{other, 256, 4096, 2, {TUNE_PIPE_GEMM, 0, 0, 0, 0}, 1, 1},
		{key, 4096, 256, 2, {TUNE_PIPE_GEMM, 0, 0, 0, 0}, 1, 1},
		{key, 256, 4096, 32, {TUNE_PIPE_FUSED, 3, 3, 1, 1}, 1, 1},   /* not built: dropped */
		/* past the fused kernel: on cc 9.0 AUTO's defaults are wg to
		 * batch 256, decode + cuBLAS above, so these ask for the other */
		{key, 256, 4096, 256, {TUNE_PIPE_GEMM, 0, 0, 0, 0}, 1, 1},
		{key, 256, 4096, 512, {TUNE_PIPE_WG, 0, 0, 0, 0}, 1, 1},
		{key, 256, 4096, 128, {TUNE_PIPE_FUSED, 1, 8, 3, 1}, 1, 1},  /* above 64: dropped */
	};
	for (size_t i = 0; i < sizeof(en) / sizeof(en[0]); i++)
		ck_assert(tune_set_put(&set, &en[i], &e) == 0);
	struct uwk_ctx *tuned;
	ck_assert(uwk_ctx_new(&tuned, &e) == 0);
	ck_assert(uwk_ctx_use_tune(tuned, &set, &e) == 0);
	static const struct {
		size_t batch;
		int pipe;                /* what AUTO must run on tuned: TUNE_PIPE_*, */
		struct uwk_cfg cfg;      /* else cfg (wm 0: AUTO's defaults) */
	} cases[] = {
		{4, TUNE_PIPE_GEMM, {0, 0, 0, 0}}, {3, TUNE_PIPE_GEMM, {0, 0, 0, 0}},
		{16, 0, {1, 8, 3, 1}}, {9, 0, {1, 8, 3, 1}}, {2, 0, {0, 0, 0, 0}},
		{32, 0, {0, 0, 0, 0}}, {1, 0, {0, 0, 0, 0}},
		{200, TUNE_PIPE_GEMM, {0, 0, 0, 0}}, {129, TUNE_PIPE_GEMM, {0, 0, 0, 0}},
		{300, TUNE_PIPE_WG, {0, 0, 0, 0}}, {100, 0, {0, 0, 0, 0}},
		{1000, 0, {0, 0, 0, 0}},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const size_t n = cases[i].batch;
		void *dx = random_x(n, 4096);
		uint16_t *got = matmul_bits(&t, dx, n, tuned, UWK_PIPE_AUTO, NULL);
		const int pipe = cases[i].pipe == TUNE_PIPE_WG && !wg ? TUNE_PIPE_GEMM : cases[i].pipe;
		uint16_t *want = pipe == TUNE_PIPE_GEMM ? matmul_bits(&t, dx, n, ctx, UWK_PIPE_DECODE_GEMM, NULL)
			       : pipe == TUNE_PIPE_WG ? matmul_bits(&t, dx, n, ctx, UWK_PIPE_FUSED_WG, NULL)
			       : cases[i].cfg.wm ? matmul_bits(&t, dx, n, ctx, UWK_PIPE_AUTO, &cases[i].cfg)
			       : matmul_bits(&t, dx, n, ctx, UWK_PIPE_AUTO, NULL);
		ck_assert_msg(!memcmp(got, want, 2 * n * 256), "case %zu (batch %zu)", i, n);
		if (n <= UWK_FUSED_MAX_BATCH && (cases[i].pipe || cases[i].cfg.wm)) {
			/* and the table asks for something else than the defaults
			 * (AUTO's fused shape): comparing bits with the defaults'
			 * would not do, BF16 outputs of two summation orders are
			 * all equal a third of the time */
			struct uwk_cfg d, c = cases[i].cfg;
			ck_assert_msg(uwk_cfg_default(&t.l, n, ctx, &d, &e) == 0, "%s", e.msg);
			if (c.wm) {
				ck_assert_msg(uwk_cfg_resolve(&t.l, n, ctx, &c, &e) == 0, "%s", e.msg);
				ck_assert_msg(memcmp(&c, &d, sizeof(c)),
					      "case %zu: the tuned shape is the default", i);
			}
		}
		free(got);
		free(want);
		cudaFree(dx);
	}

	/* through a file */
	char *dir = tu_tmpdir(), file[600];
	struct uwerr note;
	size_t n = 0;
	ck_assert(tune_merge_write(dir, &set, &note, &e) == 0);
	struct uwk_ctx *loaded;
	ck_assert(uwk_ctx_new(&loaded, &e) == 0);
	ck_assert_msg(uwk_ctx_load_tune(loaded, dir, &n, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(n, 5);    /* key's entries, less the two AUTO cannot run */
	void *dx = random_x(4, 4096);
	uint16_t *a = matmul_bits(&t, dx, 4, loaded, UWK_PIPE_AUTO, NULL);
	uint16_t *b = matmul_bits(&t, dx, 4, ctx, UWK_PIPE_DECODE_GEMM, NULL);
	ck_assert(!memcmp(a, b, 2 * 4 * 256));
	free(a);
	snprintf(file, sizeof(file), "%s/%s", dir, TUNE_FILE_NAME);
	ck_assert(tu_write_file(file, "unweight-tune 1\nbroken\n", 23) == 0);
	ck_assert_int_eq(uwk_ctx_load_tune(loaded, dir, &n, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, file), "%s", e.msg);
	ck_assert_uint_eq(n, 5);    /* the entries it had */
	a = matmul_bits(&t, dx, 4, loaded, UWK_PIPE_AUTO, NULL);
	ck_assert(!memcmp(a, b, 2 * 4 * 256));
	free(a);
	setenv("UW_TUNE_DIR", "", 1);
	ck_assert(uwk_ctx_load_tune(loaded, NULL, &n, &e) == 0 && n == 0);
	unsetenv("UW_TUNE_DIR");
	a = matmul_bits(&t, dx, 4, loaded, UWK_PIPE_AUTO, NULL);
	uint16_t *d = matmul_bits(&t, dx, 4, ctx, UWK_PIPE_AUTO, NULL);
	ck_assert(!memcmp(a, d, 2 * 4 * 256));
	free(a);
	free(b);
	free(d);
	cudaFree(dx);
	uwk_ctx_free(loaded);
	uwk_ctx_free(tuned);
	tu_rmtree(dir);
	free(dir);
	tune_set_free(&set);
	tensor_free(&t);
}
END_TEST

/* uwk_matmul2: two tensors of the same cols in one launch give, each, the
 * very bits of the fused kernel run alone with the cfg the pair used, for
 * equal and unequal row counts, with and without split-K, and are right
 * against float64; where no two-tensor kernel applies (x unaligned, a RAW
 * tensor, batch over 64) it is two uwk_matmul calls, and where AUTO takes
 * the warpgroup kernel (from batch 9 on compute capability 9.0) two of its
 * launches, each tensor's bits AUTO's alone; W0 and W1 of other cols are
 * refused, and a cfg with no two-tensor kernel is -ENOTSUP. */
START_TEST(test_matmul2)
{
	static const uint64_t shapes[][3] = {{256, 256, 4096}, {300, 200, 4096}, {64, 130, 1024}};
	static const size_t batches[] = {1, 7, 16, 40, 64};
	struct uwerr e = {0};
	int major = 0, minor = 0;
	CK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
	CK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0));
	for (size_t s = 0; s < 3; s++) {
		struct tensor t0, t1;
		uint16_t *w0 = weights(shapes[s][0] * shapes[s][2], 300, 90, 135);
		uint16_t *w1 = weights(shapes[s][1] * shapes[s][2], 300, 90, 135);
		tensor_2d(&t0, shapes[s][0], shapes[s][2], w0, "pair W0");
		tensor_2d(&t1, shapes[s][1], shapes[s][2], w1, "pair W1");
		free(w0);
		free(w1);
		for (size_t b = 0; b < 5; b++)
			for (int ks = 0; ks <= 3; ks += 3) {
				const size_t n = batches[b], r0 = shapes[s][0], r1 = shapes[s][1];
				void *dx = random_x(n, shapes[s][2]), *d0, *d1;
				CK(cudaMalloc(&d0, 2 * n * r0));
				CK(cudaMalloc(&d1, 2 * n * r1));
				CK(cudaMemset(d0, 0xff, 2 * n * r0));
				CK(cudaMemset(d1, 0xff, 2 * n * r1));
				struct uwk_cfg want = {0, 0, ks, 0}, used;
				int rc = uwk_matmul2(&t0.l, t0.dev, &t1.l, t1.dev, dx, n, d0, d1,
						     ks ? &want : NULL, &used, 0, ctx, &e);
				/* ks without a shape names no two-tensor kernel: AUTO's is taken,
				 * the lean loop (pf 1) only at batch <= 8 on full chunks */
				ck_assert_msg(rc == 0, "uwk_matmul2: %s", e.msg);
				const struct tensor *ts[2] = {&t0, &t1};
				void *ds[2] = {d0, d1};
				/* the warpgroup kernel: a launch a tensor on one permutation
				 * of x, each tensor's bits AUTO's alone */
				const int wg = !ks && n > 8 && major == 9 && minor == 0;
				ck_assert_msg(!wg || used.wm == 0, "batch %zu: a two-tensor launch", n);
				for (int i = 0; wg && i < 2; i++) {
					CK(cudaDeviceSynchronize());
					const size_t ny = n * ts[i]->l.rows;
					uint16_t *g = malloc(2 * ny), *a = matmul_bits(ts[i], dx, n, ctx,
										   UWK_PIPE_AUTO, NULL);
					CK(cudaMemcpy(g, ds[i], 2 * ny, cudaMemcpyDeviceToHost));
					ck_assert_msg(!memcmp(g, a, 2 * ny), "batch %zu: W%d is not AUTO's", n,
						      i);
					free(g);
					free(a);
				}
				if (!wg) {
					const int lean_ok = n <= 8 && shapes[s][2] % 128 == 0;
					ck_assert_msg(used.wm != 0 &&
						      (used.pf == 2 || (used.pf == 1 && lean_ok)) &&
						      (!ks || used.ks == ks),
						      "%llu+%llux%llu batch %zu: no two-tensor launch "
						      "(%dx%d/%d/%d)", (unsigned long long)r0,
						      (unsigned long long)r1, (unsigned long long)shapes[s][2],
						      n, used.wm, used.wk, used.ks, used.pf);
					CK(cudaDeviceSynchronize());
					uint16_t *g0 = malloc(2 * n * r0), *g1 = malloc(2 * n * r1);
					CK(cudaMemcpy(g0, d0, 2 * n * r0, cudaMemcpyDeviceToHost));
					CK(cudaMemcpy(g1, d1, 2 * n * r1, cudaMemcpyDeviceToHost));
					uint16_t *a0 = matmul_bits(&t0, dx, n, ctx, UWK_PIPE_AUTO, &used);
					uint16_t *a1 = matmul_bits(&t1, dx, n, ctx, UWK_PIPE_AUTO, &used);
					ck_assert_msg(!memcmp(g0, a0, 2 * n * r0) &&
						      !memcmp(g1, a1, 2 * n * r1),
						      "%llu+%llux%llu batch %zu %dx%d/%d/%d: the pair's bits "
						      "are not those of each tensor alone",
						      (unsigned long long)r0, (unsigned long long)r1,
						      (unsigned long long)shapes[s][2], n, used.wm, used.wk,
						      used.ks, used.pf);
					free(g0);
					free(g1);
					free(a0);
					free(a1);
				}
				cudaFree(dx);
				cudaFree(d0);
				cudaFree(d1);
				/* and what each equals is right, against float64 */
				if (!wg && b == 1) {
					check_matmul(&t0, n, UWK_PIPE_FUSED, &used, 0, "the pair's cfg, W0");
					check_matmul(&t1, n, UWK_PIPE_FUSED, &used, 0, "the pair's cfg, W1");
				}
			}
		void *d0, *d1;
		CK(cudaMalloc(&d0, 2 * 65 * shapes[s][0]));
		CK(cudaMalloc(&d1, 2 * 65 * shapes[s][1]));
		void *dx = random_x(65, shapes[s][2]);
		struct uwk_cfg used;
		/* x unaligned: no two-tensor kernel, two calls */
		ck_assert(uwk_matmul2(&t0.l, t0.dev, &t1.l, t1.dev, (uint16_t *)dx + 1, 3, d0, d1, NULL,
				      &used, 0, ctx, &e) == 0 && used.wm == 0);
		/* batch 65: past the two-tensor kernel, two launches (the wg kernel on
		 * compute capability 9.0, else decode + cuBLAS) */
		ck_assert_msg(uwk_matmul2(&t0.l, t0.dev, &t1.l, t1.dev, dx, 65, d0, d1, NULL, &used, 0,
					  ctx, &e) == 0 && used.wm == 0, "%s", e.msg);
		struct uwk_cfg bad = {2, 2, 1, 1};
		ck_assert_int_eq(uwk_matmul2(&t0.l, t0.dev, &t1.l, t1.dev, dx, 4, d0, d1, &bad, &used, 0,
					     ctx, &e), -ENOTSUP);
		ck_assert_msg(strstr(e.msg, "no two-tensor kernel"), "%s", e.msg);
		CK(cudaDeviceSynchronize());
		cudaFree(d0);
		cudaFree(d1);
		cudaFree(dx);
		tensor_free(&t0);
		tensor_free(&t1);
	}
	/* other cols: refused; a RAW W1: two calls */
	uint16_t *w = weights(64 * 1024, 0, 0, 0);
	struct tensor a, b, raw;
	tensor_2d(&a, 64, 1024, w, "cols a");
	tensor_2d(&b, 32, 2048, w, "cols b");
	uint16_t *r = malloc(2 * 64 * 1024);
	for (size_t i = 0; i < 64 * 1024; i++)
		r[i] = (uint16_t)((tu_rand(&rng) & 0x807f) | (100 + tu_rand(&rng) % 41) << 7);
	tensor_2d(&raw, 64, 1024, r, "RAW");
	ck_assert(raw.l.format == UW_FORMAT_RAW);
	void *dx = random_x(4, 2048), *d0, *d1;
	struct uwk_cfg used;
	CK(cudaMalloc(&d0, 2 * 4 * 64));
	CK(cudaMalloc(&d1, 2 * 4 * 64));
	ck_assert_int_eq(uwk_matmul2(&a.l, a.dev, &b.l, b.dev, dx, 4, d0, d1, NULL, &used, 0, ctx, &e),
			 -EINVAL);
	ck_assert_msg(strstr(e.msg, "columns"), "%s", e.msg);
	ck_assert(uwk_matmul2(&a.l, a.dev, &raw.l, raw.dev, dx, 4, d0, d1, NULL, &used, 0, ctx, &e) == 0);
	ck_assert_int_eq(used.wm, 0);
	CK(cudaMemset(d1, 0, 2 * 4 * 64));
	CK(cudaDeviceSynchronize());
	uint16_t *g = malloc(2 * 4 * 64), *want = matmul_bits(&raw, dx, 4, ctx, UWK_PIPE_AUTO, NULL);
	ck_assert(uwk_matmul2(&a.l, a.dev, &raw.l, raw.dev, dx, 4, d0, d1, NULL, &used, 0, ctx, &e) == 0);
	CK(cudaDeviceSynchronize());
	CK(cudaMemcpy(g, d1, 2 * 4 * 64, cudaMemcpyDeviceToHost));
	ck_assert(!memcmp(g, want, 2 * 4 * 64));
	free(g);
	free(want);
	free(w);
	free(r);
	cudaFree(dx);
	cudaFree(d0);
	cudaFree(d1);
	tensor_free(&a);
	tensor_free(&b);
	tensor_free(&raw);
}
END_TEST

/* Data with more exponents outside the palette than its layout planned is
 * refused, and nothing is written past the layout's bytes. */
START_TEST(test_encode_mismatch)
{
	struct uwerr e = {0};
	const uint64_t shape[2] = {64, 1000};
	const size_t n = 64 * 1000;
	uint16_t *a = weights(n, 0, 0, 0), *b = weights(n, 8, 0, 255);
	struct uw_layout l;
	void *draw, *ddst;
	CK(cudaMalloc(&draw, 2 * n));
	CK(cudaMalloc(&ddst, 4 * n));
	CK(cudaMemcpy(draw, a, 2 * n, cudaMemcpyHostToDevice));
	ck_assert_msg(uwk_encode_plan(UW_DTYPE_BF16, 2, shape, draw, 2 * n, &l, 0, &e) == 0, "%s", e.msg);
	ck_assert(l.format == UW_FORMAT_R12 && l.nbytes < 2 * n);
	CK(cudaMemcpy(draw, b, 2 * n, cudaMemcpyHostToDevice));
	CK(cudaMemset(ddst, 0xa5, 4 * n));
	ck_assert_int_eq(uwk_encode(&l, draw, 2 * n, ddst, 0, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "outside the palette"), "%s", e.msg);
	uint8_t *got = malloc(4 * n);
	CK(cudaMemcpy(got, ddst, 4 * n, cudaMemcpyDeviceToHost));
	size_t i = l.nbytes;
	while (i < 4 * n && got[i] == 0xa5)
		i++;
	ck_assert_msg(i == 4 * n, "byte %zu past the %llu of the layout", i,
		      (unsigned long long)l.nbytes);
	/* and a host pointer is refused */
	ck_assert_int_eq(uwk_encode(&l, a, 2 * n, ddst, 0, &e), -EINVAL);
	/* and an R11 layout (the CPU encodes R11), nothing written */
	struct uw_layout l11;
	ck_assert_int_eq(res_plan(UW_DTYPE_BF16, 2, shape, a, 2 * n, RES_PREFER_SIZE, &l11, &e), 0);
	ck_assert_uint_eq(l11.format, UW_FORMAT_R11);
	CK(cudaMemcpy(draw, a, 2 * n, cudaMemcpyHostToDevice));
	CK(cudaMemset(ddst, 0xa5, 4 * n));
	ck_assert_int_eq(uwk_encode(&l11, draw, 2 * n, ddst, 0, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "R11"), "%s", e.msg);
	CK(cudaMemcpy(got, ddst, 4 * n, cudaMemcpyDeviceToHost));
	for (i = 0; i < 4 * n && got[i] == 0xa5; i++)
		;
	ck_assert_msg(i == 4 * n, "R11: byte %zu written", i);
	free(got);
	free(a);
	free(b);
	cudaFree(draw);
	cudaFree(ddst);
}
END_TEST

/* One tensor through the bundle's exphuf payload: encoded on the CPU
 * (rest_encode_with), parsed there, decoded on the GPU, bit-exact against
 * the source; its raw CRC-32C on the GPU equals the CPU's. */
static void check_exphuf(const uint16_t *raw, size_t n, const char *what)
{
	struct uwerr e = {0};
	struct rest_blob b;
	struct rest_exphuf x;
	ck_assert_msg(rest_encode_with(REST_EXPHUF, UW_DTYPE_BF16, raw, 2 * n, 0, &b, &e) == 0,
		      "%s: rest_encode_with: %s", what, e.msg);
	ck_assert_msg(rest_exphuf_parse(b.data, b.len, 2 * n, &x, &e) == 0, "%s: parse: %s", what,
		      e.msg);
	void *dbuf, *dstart, *ddec, *dout;
	const size_t starts = (x.nchunks + 1) * sizeof(uint64_t);
	/* placed as the daemon places it */
	CK(cudaMalloc(&dbuf, 16 + b.len + UWK_EXPHUF_PAD));
	char *dpay = (char *)dbuf + uwk_exphuf_lead(x.sm_off);
	CK(cudaMalloc(&dstart, starts + 8));
	CK(cudaMalloc(&ddec, sizeof(struct huf_dec)));
	CK(cudaMalloc(&dout, 2 * n + 8));
	CK(cudaMemcpy(dpay, b.data, b.len, cudaMemcpyHostToDevice));
	if (n) {
		CK(cudaMemcpy(dstart, x.start, starts, cudaMemcpyHostToDevice));
		CK(cudaMemcpy(ddec, x.dec->entry, sizeof(x.dec->entry), cudaMemcpyHostToDevice));
	}
	CK(cudaMemset(dout, 0xa5, 2 * n + 8));
	ck_assert_msg(uwk_exphuf_decode((const uint8_t *)dpay + x.sm_off,
					(const uint8_t *)dpay + x.bits_off, dstart, ddec, x.n, dout,
					0, &e) == 0, "%s: uwk_exphuf_decode: %s", what, e.msg);
	if (n)
		ck_assert_int_eq(uwk_exphuf_decode((const uint8_t *)dpay + x.sm_off + 1,
						   (const uint8_t *)dpay + x.bits_off, dstart, ddec,
						   x.n, dout, 0, &e), -EINVAL);
	uint8_t *got = malloc(2 * n + 8);
	CK(cudaMemcpy(got, dout, 2 * n + 8, cudaMemcpyDeviceToHost));
	size_t i = 0;
	while (i < 2 * n && got[i] == ((const uint8_t *)raw)[i])
		i++;
	ck_assert_msg(i == 2 * n, "%s: byte %zu of %zu differs", what, i, 2 * n);
	for (; i < 2 * n + 8; i++)
		ck_assert_msg(got[i] == 0xa5, "%s: byte %zu past the end written", what, i);
	uint32_t crc = 1;
	ck_assert_msg(uwk_crc32c(dout, 2 * n, &crc, 0, &e) == 0, "%s: uwk_crc32c: %s", what, e.msg);
	ck_assert_msg(crc == crc32c(0, raw, 2 * n), "%s: GPU CRC-32C %08x, CPU %08x", what, crc,
		      crc32c(0, raw, 2 * n));
	if (x.nchunks >= 2 && x.start[2] > x.start[1]) {
		/* chunk 0 claims the first byte of chunk 1 (the starts still
		 * ascend inside the bitstreams, as the parser checks): neither
		 * decodes to exactly its bytes now; the first is named */
		uint64_t moved = x.start[1] + 1;
		CK(cudaMemcpy((uint64_t *)dstart + 1, &moved, 8, cudaMemcpyHostToDevice));
		ck_assert_int_eq(uwk_exphuf_decode((const uint8_t *)dpay + x.sm_off,
						   (const uint8_t *)dpay + x.bits_off, dstart, ddec,
						   x.n, dout, 0, &e), -EBADMSG);
		ck_assert_msg(strstr(e.msg, "exphuf chunk 0:"), "%s: %s", what, e.msg);
	}
	free(got);
	rest_exphuf_free(&x);
	free(b.data);
	cudaFree(dbuf);
	cudaFree(dstart);
	cudaFree(ddec);
	cudaFree(dout);
}

/* The device's CRC-32C against common/crc32c.c on random bytes: lengths
 * around its 16-byte steps and 4096-byte chunks, at every start alignment
 * in a 16-byte word. */
START_TEST(test_crc32c)
{
	static const size_t lens[] = {0, 1, 15, 16, 17, 31, 4095, 4096, 4097, 3 * 4096 + 5,
				      (1u << 20) + 3};
	const size_t max = (1u << 20) + 3 + 16;
	uint8_t *h = malloc(max);
	for (size_t i = 0; i < max; i++)
		h[i] = (uint8_t)tu_rand(&rng);
	void *d;
	CK(cudaMalloc(&d, max));
	CK(cudaMemcpy(d, h, max, cudaMemcpyHostToDevice));
	struct uwerr e = {0};
	for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++)
		for (size_t off = 0; off < 16; off++) {
			uint32_t got = 0;
			ck_assert_msg(uwk_crc32c((char *)d + off, lens[k], &got, 0, &e) == 0,
				      "%zu bytes at +%zu: %s", lens[k], off, e.msg);
			ck_assert_msg(got == crc32c(0, h + off, lens[k]),
				      "%zu bytes at +%zu: GPU %08x, CPU %08x", lens[k], off, got,
				      crc32c(0, h + off, lens[k]));
		}
	cudaFree(d);
	free(h);
}
END_TEST

START_TEST(test_exphuf)
{
	/* sizes around the chunk (65536 elements) and the 4-element stores */
	static const size_t sizes[] = {1, 3, 4, 5, 65535, 65536, 65537, 3 * 65536 + 7, 4194304};
	char what[96];
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n = sizes[k];
		uint16_t *w = weights(n, 64, 0, 255);   /* N(0, 0.02) and rare exponents */
		snprintf(what, sizeof(what), "N(0, 0.02) + rare exponents, %zu elements", n);
		check_exphuf(w, n, what);
		for (size_t i = 0; i < n; i++)   /* every exponent, long codes */
			w[i] = (uint16_t)tu_rand(&rng);
		snprintf(what, sizeof(what), "uniform bits, %zu elements", n);
		check_exphuf(w, n, what);
		for (size_t i = 0; i < n; i++)   /* one exponent: a code of no bits */
			w[i] = (uint16_t)((tu_rand(&rng) & 0x807f) | 120u << 7);
		snprintf(what, sizeof(what), "one exponent, %zu elements", n);
		check_exphuf(w, n, what);
		free(w);
	}
	/* and stories260K's matrices, the real thing */
	char path[4096];
	struct st_file *f;
	struct uwerr e = {0};
	snprintf(path, sizeof(path), "%s/data/stories260K.safetensors", tu_srcdir());
	ck_assert_msg(st_open(path, &f, &e) == 0, "%s", e.msg);
	for (size_t i = 0; i < f->ntensors; i++) {
		const struct st_tensor *t = &f->tensors[i];
		if (t->dtype != UW_DTYPE_BF16 || t->ndim != 2)
			continue;
		uint16_t *w = malloc(st_tensor_bytes(t) + 2);
		ck_assert_msg(st_read_tensor(f, t, w, &e) == 0, "%s", e.msg);
		check_exphuf(w, st_tensor_bytes(t) / 2, t->name);
		free(w);
	}
	st_close(f);
}
END_TEST

int main(void)
{
	int ndev = 0;
	cudaError_t err = cudaGetDeviceCount(&ndev);
	if (err != cudaSuccess || ndev == 0) {
		printf("check_gpu_kernels: no GPU (%s), skipped\n",
		       err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
		return 77;
	}
	struct uwerr e = {0};
	if (uwk_ctx_new(&ctx, &e) < 0) {
		fprintf(stderr, "check_gpu_kernels: %s\n", e.msg);
		return 1;
	}
	seed = tu_seed();
	rng = seed;
	Suite *s = suite_create("gpu_kernels");
	TCase *tc = tcase_create("kernels");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_decode_gauss);
	tcase_add_test(tc, test_decode_adversarial);
	tcase_add_loop_test(tc, test_real_weights, RES_PREFER_SPEED, RES_PREFER_SIZE + 1);
	tcase_add_test(tc, test_matmul_cfgs);
	tcase_add_test(tc, test_matmul_pipes);
	tcase_add_test(tc, test_bad_args);
	tcase_add_test(tc, test_encode_mismatch);
	tcase_add_test(tc, test_tune_shape);
	tcase_add_test(tc, test_tune_table);
	tcase_add_test(tc, test_matmul2);
	suite_add_tcase(s, tc);
	/* cases of their own: CK_RUN_CASE=fused, r11 or exphuf runs one alone
	 * (compute-sanitizer); fused: AUTO's fused kernels, the lean loop among
	 * them; exphuf with the CRC-32C that checks a bundle's payloads */
	TCase *tf = tcase_create("fused");
	tcase_set_timeout(tf, 600);
	tcase_add_test(tf, test_matmul_fused);
	tcase_add_test(tf, test_matmul_wg);
	suite_add_tcase(s, tf);
	TCase *tr = tcase_create("r11");
	tcase_set_timeout(tr, 600);
	tcase_add_test(tr, test_r11);
	suite_add_tcase(s, tr);
	TCase *tx = tcase_create("exphuf");
	tcase_set_timeout(tx, 600);
	tcase_add_test(tx, test_exphuf);
	tcase_add_test(tx, test_crc32c);
	suite_add_tcase(s, tx);
	SRunner *sr = srunner_create(s);
	/* one process: a CUDA context does not survive fork */
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	uwk_ctx_free(ctx);
	return failed ? 1 : 0;
}
