/* tune_cuda: the tuner's GPU side: time each weight shape of a model on its
 * own resident buffers with uwk_tune_shape, and merge the choices into the
 * tune cache shape by shape, so that a worker finds the first ones before
 * the last are done (see tune.h). */
#include "config.h"

#include "daemon/tune.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/backend.h"
#include "daemon/log.h"
#include "daemon/registry.h"
#include "daemon/uwd.h"
#include "kernels/tunecache.h"

#ifdef HAVE_CUDA
#include <cuda_runtime_api.h>

#include "kernels/cuda/uwk.h"

#define TUNE_REPS 11          /* timed launches a candidate; the median counts */

/* A context and a stream on the model's device for one model's tuning:
 * its own stream keeps the timings off the loads' streams, and freeing the
 * context after each model gives back its scratch (up to a decoded copy
 * of the largest matrix), which no budget counts. */
struct tune_dev {
	struct uwk_ctx *ctx;
	cudaStream_t s;
};

static int tune_dev_open(struct tune_dev *t, int dev, struct uwerr *e)
{
	cudaError_t ce = cudaSetDevice(dev);
	if (ce != cudaSuccess)
		return uwerr_set(e, EIO, "device %d: %s", dev, cudaGetErrorString(ce));
	int rc = uwk_ctx_new(&t->ctx, e);
	if (rc < 0)
		return rc;
	if ((ce = cudaStreamCreateWithFlags(&t->s, cudaStreamNonBlocking)) != cudaSuccess)
		return uwerr_set(e, EIO, "device %d: stream: %s", dev, cudaGetErrorString(ce));
	return 0;
}

static void tune_dev_close(struct tune_dev *t)
{
	if (t->s) {
		cudaStreamSynchronize(t->s);
		cudaStreamDestroy(t->s);
	}
	uwk_ctx_free(t->ctx);
}

/* The first tensor of each R12 BF16 matrix shape of m, as indexes. */
static size_t shapes_of(const struct model *m, size_t *idx)
{
	size_t n = 0;
	for (size_t i = 0; i < m->ntensors; i++) {
		const struct uw_layout *l = &m->t[i].layout;
		if (m->t[i].ndim != 2 || l->format != UW_FORMAT_R12 || l->dtype != UW_DTYPE_BF16)
			continue;
		size_t k = 0;
		while (k < n && !(m->t[idx[k]].layout.rows == l->rows &&
				  m->t[idx[k]].layout.cols == l->cols))
			k++;
		if (k == n)
			idx[n++] = i;
	}
	return n;
}

/* Merge add into the cache and into cur (what the next shapes skip). */
static int write_shape(const char *dir, struct tune_set *add, struct tune_set *cur,
		       struct tune_progress *p, struct uwerr *e)
{
	struct uwerr note = {0};
	int rc = tune_merge_write(dir, add, &note, e);
	if (note.code)
		log_warning("tune cache: %s", note.msg);
	for (size_t i = 0; rc == 0 && i < add->n; i++)
		rc = tune_set_put(cur, &add->e[i], e);
	if (rc == 0)
		atomic_fetch_add(&p->entries, (unsigned)add->n);
	tune_set_free(add);
	return rc;
}

int tune_gpu_model(struct uwd *d, struct model *m, const char *dir, int force, const int *stop,
		   struct tune_progress *p, struct uwerr *e)
{
	struct tune_set cur = {0}, add = {0};
	struct tune_key key;
	struct tune_dev g = {0};
	struct uwerr first = {0}, rd = {0};
	size_t *idx = calloc(m->ntensors ? m->ntensors : 1, sizeof(*idx));
	int rc = idx ? tune_dev_open(&g, m->dev, e) : uwerr_set(e, ENOMEM, "out of memory");
	if (rc == 0)
		rc = uwk_tune_key(g.ctx, &key, e);
	if (rc < 0)
		goto out;
	/* What the cache holds already is skipped; one that does not parse
	 * holds nothing (and is replaced at the first write). */
	if (tune_read(dir, &cur, NULL, &rd) < 0)
		tune_set_free(&cur);
	const size_t n = shapes_of(m, idx);
	atomic_store(&p->shapes_total, (unsigned)n);
	for (size_t k = 0; k < n && rc == 0; k++) {
		const struct proto_tensor *t = &m->t[idx[k]];
		const struct uw_layout *l = &t->layout;
		const void *base = (const void *)(uintptr_t)(d->be->ops->buf_dev_addr(m->bufs[t->buf]) +
							     t->offset);
		for (unsigned b = 1; b <= TUNE_MAX_BUCKET && rc == 0; b *= 2) {
			struct tune_entry en;
			struct uwk_tune_info info;
			struct uwerr te = {0};
			if (__atomic_load_n(stop, __ATOMIC_RELAXED) || atomic_load(&m->cancel)) {
				rc = uwerr_set(e, ECANCELED, "canceled (%s)", atomic_load(&m->cancel) ?
					       "the model was evicted" : "unweightd stops");
				break;
			}
			if (!force && tune_set_find(&cur, &key, (uint32_t)l->rows, (uint32_t)l->cols, b))
				continue;
			int trc = uwk_tune_shape(l, base, b, TUNE_REPS, stop, g.s, g.ctx, &en, &info,
						 &te);
			atomic_fetch_add(&p->rejected, (unsigned)info.rejected);
			if (info.rejected)
				log_warning("tune %s %llux%llu batch %u: %d candidate%s rejected: %s", m->name,
					    (unsigned long long)l->rows, (unsigned long long)l->cols, b,
					    info.rejected, info.rejected == 1 ? "" : "s", info.why);
			if (trc == -ECANCELED) {
				rc = uwerr_set(e, ECANCELED, "canceled (unweightd stops)");
			} else if (trc < 0) {
				log_warning("tune %s: %s", m->name, te.msg);
				if (!first.code)
					first = te;
			} else {
				char c[48];
				tune_choice_name(&en.c, c, sizeof(c));
				log_debug("tune %s %ux%u b%u: %s, %.1f us (default %.1f us)", m->name,
					  en.rows, en.cols, en.bucket, c, en.us, en.default_us);
				rc = tune_set_put(&add, &en, e);
			}
		}
		if (add.n && (rc == 0 || rc == -ECANCELED)) {
			int wrc = write_shape(dir, &add, &cur, p, e);
			rc = wrc < 0 ? wrc : rc;
		}
		atomic_fetch_add(&p->shapes_done, 1);
	}
	if (rc == 0 && first.code)
		rc = uwerr_set(e, first.code, "%s", first.msg);
out:
	tune_dev_close(&g);
	tune_set_free(&add);
	tune_set_free(&cur);
	free(idx);
	return rc;
}

#else  /* !HAVE_CUDA: every backend is the host's, whose buffers no kernel reads */

int tune_gpu_model(struct uwd *d, struct model *m, const char *dir, int force, const int *stop,
		   struct tune_progress *p, struct uwerr *e)
{
	return uwerr_set(e, ENOTSUP, "tuner: unweightd was built without CUDA");
}

#endif
