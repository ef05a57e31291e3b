/* tune: the matmul autotuner and the tuned choices a context uses.
 *
 * uwk_tune_shape times AUTO's candidates for one weight at one batch
 * bucket with CUDA events (each launch after an L2 flush, median of reps)
 * after checking each one's output against decode + cuBLAS in float32, and
 * returns the fastest as a tune cache entry; unweightd's tuner and
 * bench/uw-bench-matmul call it. uwk_ctx_load_tune / uwk_ctx_use_tune give
 * a context the entries of its device, which uwk_matmul's AUTO looks up per
 * call in a hash table (kernels/tunecache.h), with no I/O. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda/uwk_int.h"

/* ---- the context's choices ---- */

int uwk_tune_key_make(struct uwk_ctx *c, struct uwerr *e)
{
	cudaDeviceProp prop;
	struct tune_key *k = &c->key;
	UWK_CK(e, cudaGetDeviceProperties(&prop, c->device));
	memset(k, 0, sizeof(*k));
	tune_device_token(prop.name, k->device);
	k->cc = (unsigned)(prop.major * 10 + prop.minor);
	k->sms = (unsigned)prop.multiProcessorCount;
	snprintf(k->lib, sizeof(k->lib), "%s+%s", PACKAGE_VERSION, UWK_KERNELS);
	return 0;
}

extern "C" int uwk_tune_key(const struct uwk_ctx *c, struct tune_key *k, struct uwerr *e)
{
	if (!c || !k)
		return uwerr_set(e, EINVAL, "uwk_tune_key: NULL argument");
	*k = c->key;
	return 0;
}

/* The choices this library can run at the entry's batches: fused shapes
 * it built, pf in range, batch <= UWK_FUSED_MAX_BATCH (gemm and wg:
 * always; wg falls back where the device lacks it). */
static int choice_runs(const struct tune_entry *en)
{
	const struct tune_choice *c = &en->c;
	struct uwk_cfg kinds[32];
	if (c->pipe == TUNE_PIPE_GEMM || c->pipe == TUNE_PIPE_WG)
		return 1;
	if (c->pf < 1 || c->pf > UWK_NPF || en->bucket > UWK_FUSED_MAX_BATCH)
		return 0;
	int n = uwk_cfg_list(kinds, 32);
	for (int i = 0; i < n && i < 32; i++)
		if (kinds[i].wm == c->wm && kinds[i].wk == c->wk)
			return 1;
	return 0;
}

extern "C" int uwk_ctx_use_tune(struct uwk_ctx *c, const struct tune_set *s, struct uwerr *e)
{
	struct tune_table *t = NULL;
	if (!c)
		return uwerr_set(e, EINVAL, "uwk_ctx_use_tune: NULL context");
	int rc = s ? tune_table_build(s, &c->key, choice_runs, &t, e) : 0;
	if (rc < 0)
		return rc;
	tune_table_free(c->tune);
	c->tune = t;
	return 0;
}

extern "C" int uwk_ctx_load_tune(struct uwk_ctx *c, const char *dir, size_t *n, struct uwerr *e)
{
	struct tune_set s = {0};
	const char *d = tune_dir(dir);
	int rc = d ? tune_read(d, &s, NULL, e) : 0;
	if (rc == 0)
		rc = uwk_ctx_use_tune(c, &s, e);
	tune_set_free(&s);
	if (n)
		*n = c ? tune_table_size(c->tune) : 0;
	return rc;
}

/* ---- the tuner ---- */

/* x: a fixed pseudo-random N(0, 1)-like BF16 input (the sum of four
 * uniforms, centred and scaled), the same in every run. */
__global__ void tune_fill_x(uint16_t *x, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		uint64_t h = (i + 1) * 0x9e3779b97f4a7c15ull;
		float s = 0.f;
		for (int k = 0; k < 4; k++) {
			h ^= h >> 31;
			h *= 0xbf58476d1ce4e5b9ull;
			s += (float)(h >> 40) * (1.f / 16777216.f);
		}
		x[i] = __bfloat16_as_ushort(__float2bfloat16_rn((s - 2.f) * 1.7320508f));
	}
}

/* What a candidate's y is compared on: sum (y - ref)^2, sum ref^2, outputs
 * not finite, outputs that differ in bits from a second run. */
struct tune_cmp {
	double d2, r2;
	unsigned nonfinite, differ;
};

__global__ void tune_compare(const uint16_t *y, const uint16_t *y2, const float *ref, size_t n,
			     tune_cmp *out)
{
	double d2 = 0, r2 = 0;
	unsigned bad = 0, diff = 0;
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * blockDim.x) {
		const float v = __bfloat162float(__ushort_as_bfloat16(y[i]));
		const double d = (double)v - (double)ref[i];
		bad += !isfinite(v);
		diff += y[i] != y2[i];
		d2 += isfinite(v) ? d * d : 0.0;
		r2 += (double)ref[i] * ref[i];
	}
	for (int o = 16; o > 0; o >>= 1) {
		d2 += __shfl_xor_sync(0xffffffffu, d2, o);
		r2 += __shfl_xor_sync(0xffffffffu, r2, o);
		bad += __shfl_xor_sync(0xffffffffu, bad, o);
		diff += __shfl_xor_sync(0xffffffffu, diff, o);
	}
	if ((threadIdx.x & 31) == 0) {
		atomicAdd(&out->d2, d2);
		atomicAdd(&out->r2, r2);
		atomicAdd(&out->nonfinite, bad);
		atomicAdd(&out->differ, diff);
	}
}

/* One candidate: a pipeline (enum tune_pipe) and, for the fused one, its
 * resolved shape. */
struct cand {
	int pipe;
	struct uwk_cfg cfg;
};

static tune_choice cand_choice(const cand &c)
{
	return c.pipe == TUNE_PIPE_FUSED ? tune_choice{c.pipe, c.cfg.wm, c.cfg.wk, c.cfg.ks, c.cfg.pf}
					 : tune_choice{c.pipe, 0, 0, 0, 0};
}

/* The buffers and state of one uwk_tune_shape call. */
struct tuner {
	const struct uw_layout *l;
	const void *base;
	size_t batch;
	int reps;
	cudaStream_t s;
	struct uwk_ctx *ctx;
	uint16_t *x, *y, *y2;
	float *ref;
	void *flush;
	size_t flush_bytes;
	tune_cmp *cmp;
	cudaEvent_t ev[2];
};

static int cand_run(tuner &t, const cand &c, uint16_t *y, struct uwerr *e)
{
	if (c.pipe == TUNE_PIPE_FUSED)
		return uwk_matmul_fused_cfg(t.l, t.base, t.x, t.batch, y, &c.cfg, t.s, t.ctx, e);
	return uwk_matmul_pipe(t.l, t.base, t.x, t.batch, y, c.pipe == TUNE_PIPE_WG ?
			       UWK_PIPE_FUSED_WG : UWK_PIPE_DECODE_GEMM, t.s, t.ctx, e);
}

/* Run c twice into poisoned outputs and compare with the reference. */
static int cand_check(tuner &t, const cand &c, struct uwerr *e)
{
	const size_t n = t.batch * t.l->rows;
	tune_cmp h;
	int rc;
	UWK_CK(e, cudaMemsetAsync(t.y, 0xff, 2 * n, t.s));     /* BF16 NaN */
	UWK_CK(e, cudaMemsetAsync(t.y2, 0xff, 2 * n, t.s));
	if ((rc = cand_run(t, c, t.y, e)) < 0 || (rc = cand_run(t, c, t.y2, e)) < 0)
		return rc;
	UWK_CK(e, cudaMemsetAsync(t.cmp, 0, sizeof(*t.cmp), t.s));
	unsigned blocks = (unsigned)std::min<size_t>((n + 255) / 256, (size_t)t.ctx->sms * 4);
	tune_compare<<<blocks, 256, 0, t.s>>>(t.y, t.y2, t.ref, n, t.cmp);
	UWK_CK(e, cudaGetLastError());
	UWK_CK(e, cudaMemcpyAsync(&h, t.cmp, sizeof(h), cudaMemcpyDeviceToHost, t.s));
	UWK_CK(e, cudaStreamSynchronize(t.s));
	if (h.nonfinite)
		return uwerr_set(e, EIO, "%u of %zu outputs not finite (not written?)", h.nonfinite, n);
	if (h.differ)
		return uwerr_set(e, EIO, "a second run differs in %u of %zu outputs", h.differ, n);
	if (!(h.d2 <= 1e-4 * h.r2))
		return uwerr_set(e, EIO, "relative L2 error %.3g against decode + cuBLAS in float32 "
				 "(at most 1e-2)", sqrt(h.d2 / h.r2));
	return 0;
}

/* Median microseconds of reps launches of c, each after an L2 flush. */
static int cand_time(tuner &t, const cand &c, double *us, struct uwerr *e)
{
	std::vector<float> ms;
	int rc;
	for (int i = 0; i < 2; i++)             /* warm: first-use set-up stays out */
		if ((rc = cand_run(t, c, t.y, e)) < 0)
			return rc;
	for (int i = 0; i < t.reps; i++) {
		float m;
		UWK_CK(e, cudaMemsetAsync(t.flush, i, t.flush_bytes, t.s));
		UWK_CK(e, cudaEventRecord(t.ev[0], t.s));
		if ((rc = cand_run(t, c, t.y, e)) < 0)
			return rc;
		UWK_CK(e, cudaEventRecord(t.ev[1], t.s));
		UWK_CK(e, cudaEventSynchronize(t.ev[1]));
		UWK_CK(e, cudaEventElapsedTime(&m, t.ev[0], t.ev[1]));
		ms.push_back(m);
	}
	std::sort(ms.begin(), ms.end());
	*us = 1e3 * ms[ms.size() / 2];
	return 0;
}

/* AUTO's default first, then decode + cuBLAS and the warpgroup kernel
 * (where it runs), then, up to the fused kernel's batches, every fused
 * shape at a few splits around its own default, pf 1 and 2; as launched
 * (resolved), each once. */
static int candidates(tuner &t, std::vector<cand> &out, struct uwerr *e)
{
	const bool fused = t.batch <= UWK_FUSED_MAX_BATCH;
	struct uwk_cfg kinds[32], c = {0, 0, 0, 0};
	int rc = fused ? uwk_cfg_default(t.l, t.batch, t.ctx, &c, e) : 0;
	if (rc < 0)
		return rc;
	auto add = [&](const cand &n) {
		for (const cand &o : out)
			if (o.pipe == n.pipe && !memcmp(&o.cfg, &n.cfg, sizeof(n.cfg)))
				return;
		out.push_back(n);
	};
	const cand wg = {TUNE_PIPE_WG, {0, 0, 0, 0}}, gemm = {TUNE_PIPE_GEMM, {0, 0, 0, 0}};
	add(uwk_wg_default(t.l, t.batch, t.ctx) ? wg : fused ? cand{TUNE_PIPE_FUSED, c} : gemm);
	add(gemm);
	if (uwk_wg_fits(t.l, t.ctx))
		add(wg);
	const int nk = fused ? std::min(uwk_cfg_list(kinds, 32), 32) : 0;
	for (int i = 0; i < nk; i++)
		for (int pf = 1; pf <= UWK_NPF; pf++) {
			struct uwk_cfg d = {kinds[i].wm, kinds[i].wk, 0, pf};
			struct uwerr ign = {0};
			if (uwk_cfg_resolve(t.l, t.batch, t.ctx, &d, &ign) < 0)
				continue;           /* x does not fit this shape */
			const int ks0 = d.ks, ks[] = {1, std::max(1, ks0 / 2), ks0, 2 * ks0};
			for (int k : ks) {
				struct uwk_cfg v = {d.wm, d.wk, k, pf};
				if (uwk_cfg_resolve(t.l, t.batch, t.ctx, &v, &ign) == 0)
					add(cand{TUNE_PIPE_FUSED, v});
			}
		}
	return 0;
}

static void tuner_free(tuner &t)
{
	cudaFree(t.x);
	cudaFree(t.y);
	cudaFree(t.y2);
	cudaFree(t.ref);
	cudaFree(t.flush);
	cudaFree(t.cmp);
	for (cudaEvent_t &v : t.ev)
		if (v)
			cudaEventDestroy(v);
}

static int tuner_init(tuner &t, struct uwerr *e)
{
	const size_t nx = t.batch * t.l->cols, ny = t.batch * t.l->rows;
	int l2 = 0;
	UWK_CK(e, cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, t.ctx->device));
	t.flush_bytes = std::max<size_t>(2 * (size_t)l2, 32u << 20);
	UWK_CK(e, cudaMalloc((void **)&t.x, 2 * nx));
	UWK_CK(e, cudaMalloc((void **)&t.y, 2 * ny));
	UWK_CK(e, cudaMalloc((void **)&t.y2, 2 * ny));
	UWK_CK(e, cudaMalloc((void **)&t.ref, 4 * ny));
	UWK_CK(e, cudaMalloc(&t.flush, t.flush_bytes));
	UWK_CK(e, cudaMalloc((void **)&t.cmp, sizeof(*t.cmp)));
	UWK_CK(e, cudaEventCreate(&t.ev[0]));
	UWK_CK(e, cudaEventCreate(&t.ev[1]));
	tune_fill_x<<<(unsigned)std::min<size_t>((nx + 255) / 256, 1024), 256, 0, t.s>>>(t.x, nx);
	UWK_CK(e, cudaGetLastError());
	return uwk_matmul_f32(t.l, t.base, t.x, t.batch, t.ref, t.s, t.ctx, e);
}

/* Check and time every candidate; out gets the fastest that passed. */
static int pick(tuner &t, const std::vector<cand> &cs, const int *stop,
		struct tune_entry *out, struct uwk_tune_info *inf, struct uwerr *e)
{
	size_t best = 0;
	double best_us = 0, dflt_us = 0;
	for (size_t i = 0; i < cs.size(); i++) {
		struct uwerr ce = {0};
		char name[64];
		double us = 0;
		if (stop && __atomic_load_n(stop, __ATOMIC_RELAXED))
			return uwerr_set(e, ECANCELED, "canceled");
		int rc = cand_check(t, cs[i], &ce);
		if (rc == 0)
			rc = cand_time(t, cs[i], &us, &ce);
		if (rc < 0) {
			const tune_choice ch = cand_choice(cs[i]);
			tune_choice_name(&ch, name, sizeof(name));
			if (!inf->rejected++)
				snprintf(inf->why, sizeof(inf->why), "%.60s: %.440s", name, ce.msg);
			/* the default failing leaves nothing to compare with */
			if (i == 0)
				return uwerr_set(e, ce.code ? ce.code : EIO, "AUTO's default, %s",
						 inf->why);
			continue;
		}
		inf->tried++;
		if (i == 0)
			dflt_us = best_us = us;
		else if (us < best_us) {
			best = i;
			best_us = us;
		}
	}
	/* noise is not a reason to leave the default */
	if (best_us > 0.99 * dflt_us) {
		best = 0;
		best_us = dflt_us;
	}
	out->c = cand_choice(cs[best]);
	out->us = best_us;
	out->default_us = dflt_us;
	return 0;
}

extern "C" int uwk_tune_shape(const struct uw_layout *l, const void *dev_base, size_t batch,
			      int reps, const int *stop, cudaStream_t s, struct uwk_ctx *ctx,
			      struct tune_entry *out, struct uwk_tune_info *info, struct uwerr *e)
{
	struct uwk_tune_info inf = {};
	if (info)
		*info = inf;
	if (!l || !ctx || !out || batch == 0 || batch > TUNE_MAX_BUCKET || reps < 3)
		return uwerr_set(e, EINVAL, "uwk_tune_shape: bad arguments (batch %zu, reps %d)",
				 batch, reps);
	if (l->format != UW_FORMAT_R12 || l->dtype != UW_DTYPE_BF16)
		return uwerr_set(e, EINVAL, "uwk_tune_shape: %llux%llu is not R12 BF16: nothing to tune",
				 (unsigned long long)l->rows, (unsigned long long)l->cols);
	tuner t = {l, dev_base, batch, reps, s, ctx};
	std::vector<cand> cs;
	memset(out, 0, sizeof(*out));
	out->rows = (uint32_t)l->rows;
	out->cols = (uint32_t)l->cols;
	out->bucket = tune_bucket(batch);
	int rc = uwk_tune_key(ctx, &out->key, e);
	if (rc == 0)
		rc = tuner_init(t, e);
	if (rc == 0)
		rc = candidates(t, cs, e);
	if (rc == 0)
		rc = pick(t, cs, stop, out, &inf, e);
	tuner_free(t);
	if (info)
		*info = inf;
	return rc < 0 ? uwerr_prefix(e, "tune %llux%llu batch %zu", (unsigned long long)l->rows,
				     (unsigned long long)l->cols, batch) : 0;
}
