/* weights_daemon: the daemon provider, a model attached from unweightd
 * through libunweight-client; matmuls are uw_matmul on the shared tensors
 * (uw_matmul_f32 for the logits).
 *
 * On the host backend uw_decode and uw_matmul read and write host memory,
 * so the caller's buffers go straight through. On the CUDA backend they take
 * device pointers: x goes up into a device buffer, y (or a decoded tensor)
 * comes back, so the rest of the worker sees host BF16 vectors either way. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "examples/weights.h"
#include "unweight.h"

#ifdef HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

struct uwd_weights {
	struct weights base;
	uw_client *c;
	uw_model *m;
	int on_gpu;             /* the model is on the CUDA backend */
	void *dev_in, *dev_out; /* its staging buffers, grown on demand */
	size_t in_cap, out_cap;
};


/* The library's own message, with "what name: " in front unless it already
 * starts so (attach and connect messages do). */
static int uw_fail(struct uwerr *e, int rc, const char *what, const char *name)
{
	const char *msg = uw_errmsg();
	char ctx[256];
	if (!msg || !*msg)
		msg = uw_strerror(rc);
	snprintf(ctx, sizeof(ctx), "%s %s", what, name);
	if (!strncmp(msg, ctx, strlen(ctx)))
		return uwerr_set(e, -rc, "%s", msg);
	return uwerr_set(e, -rc, "%s: %s", ctx, msg);
}

#ifdef HAVE_CUDA
static int dev_grow(void **p, size_t *cap, size_t n, struct uwerr *e)
{
	if (n <= *cap)
		return 0;
	cudaFree(*p);
	*p = NULL;
	*cap = 0;
	if (cudaMalloc(p, n) != cudaSuccess)
		return uwerr_set(e, ENOMEM, "cudaMalloc of %zu bytes failed", n);
	*cap = n;
	return 0;
}

static int dev_copy(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind,
		    struct uwerr *e)
{
	cudaError_t rc = cudaMemcpy(dst, src, n, kind);
	return rc == cudaSuccess ? 0 : uwerr_set(e, EIO, "cudaMemcpy of %zu bytes: %s", n,
						 cudaGetErrorString(rc));
}

/* Decode (x NULL) or multiply on the GPU through the staging buffers; y_f32:
 * uw_matmul_f32. */
static int gpu_call(struct uwd_weights *d, const uw_tensor *t, const void *x, size_t xb,
		    void *y, size_t yb, int y_f32, const char *name, struct uwerr *e)
{
	int rc = dev_grow(&d->dev_out, &d->out_cap, yb, e);
	if (!rc && x)
		rc = dev_grow(&d->dev_in, &d->in_cap, xb, e);
	if (!rc && x)
		rc = dev_copy(d->dev_in, x, xb, cudaMemcpyHostToDevice, e);
	if (rc)
		return rc;
	rc = !x ? uw_decode(t, d->dev_out, yb, NULL) :
	     y_f32 ? uw_matmul_f32(t, d->dev_in, 1, d->dev_out, NULL) :
	     uw_matmul(t, d->dev_in, 1, d->dev_out, NULL);
	if (rc < 0)
		return uw_fail(e, rc, x ? "matmul" : "decode", name);
	return dev_copy(y, d->dev_out, yb, cudaMemcpyDeviceToHost, e);
}
#else
static int gpu_call(struct uwd_weights *d, const uw_tensor *t, const void *x, size_t xb,
		    void *y, size_t yb, int y_f32, const char *name, struct uwerr *e)
{
	return uwerr_set(e, ENOTSUP, "%s: the model is on the CUDA backend, and this "
			 "example was built without CUDA", name);
}
#endif

/* Find a BF16 tensor and its info. */
static const uw_tensor *find(struct uwd_weights *d, const char *name,
			     struct uw_tensor_info *info, struct uwerr *e)
{
	const uw_tensor *t = uw_model_find(d->m, name);
	int rc;
	if (!t) {
		uwerr_set(e, ENOENT, "attached model has no tensor %s", name);
		return NULL;
	}
	rc = uw_tensor_info(t, info);
	if (rc < 0) {
		uw_fail(e, rc, "tensor info", name);
		return NULL;
	}
	if (info->dtype != UW_DTYPE_BF16) {
		uwerr_set(e, EINVAL, "tensor %s: dtype %u, not BF16", name, info->dtype);
		return NULL;
	}
	return t;
}

static int uwd_matrix(struct weights *w, const char *name, uint64_t rows,
		      uint64_t cols, struct wmat *m, struct uwerr *e)
{
	struct uwd_weights *d = (struct uwd_weights *)w;
	struct uw_tensor_info info;
	const uw_tensor *t = find(d, name, &info, e);
	if (!t)
		return -e->code;
	if (info.ndim != 2 || info.shape[0] != rows || info.shape[1] != cols)
		return uwerr_set(e, EINVAL, "tensor %s: shape is not [%llu,%llu]",
				 name, (unsigned long long)rows,
				 (unsigned long long)cols);
	*m = (struct wmat){ .name = info.name, .rows = rows, .cols = cols,
			    .impl = t };
	return 0;
}

static int uwd_read(struct weights *w, const char *name, uint16_t *out,
		    size_t n, struct uwerr *e)
{
	struct uwd_weights *d = (struct uwd_weights *)w;
	struct uw_tensor_info info;
	const uw_tensor *t = find(d, name, &info, e);
	int rc;
	if (!t)
		return -e->code;
	if (info.raw_bytes != (uint64_t)n * 2)
		return uwerr_set(e, EINVAL, "tensor %s: %llu bytes, expected %zu elements",
				 name, (unsigned long long)info.raw_bytes, n);
	if (d->on_gpu)
		return gpu_call(d, t, NULL, 0, out, n * 2, 0, name, e);
	rc = uw_decode(t, out, n * 2, NULL);
	return rc < 0 ? uw_fail(e, rc, "decode", name) : 0;
}

static int uwd_matmul(struct weights *w, const struct wmat *m,
		      const uint16_t *x, uint16_t *y, struct uwerr *e)
{
	struct uwd_weights *d = (struct uwd_weights *)w;
	if (d->on_gpu)
		return gpu_call(d, m->impl, x, m->cols * 2, y, m->rows * 2, 0, m->name, e);
	int rc = uw_matmul(m->impl, x, 1, y, NULL);
	return rc < 0 ? uw_fail(e, rc, "matmul", m->name) : 0;
}

static int uwd_matmul_logits(struct weights *w, const struct wmat *m,
			     const uint16_t *x, float *y, struct uwerr *e)
{
	struct uwd_weights *d = (struct uwd_weights *)w;
	if (d->on_gpu)
		return gpu_call(d, m->impl, x, m->cols * 2, y, m->rows * 4, 1, m->name, e);
	int rc = uw_matmul_f32(m->impl, x, 1, y, NULL);
	return rc < 0 ? uw_fail(e, rc, "matmul", m->name) : 0;
}

static void uwd_close(struct weights *w)
{
	struct uwd_weights *d = (struct uwd_weights *)w;
#ifdef HAVE_CUDA
	cudaFree(d->dev_in);
	cudaFree(d->dev_out);
#endif
	uw_detach(d->m);
	uw_disconnect(d->c);
	free(d);
}

static const struct weights_ops uwd_ops = {
	.matrix = uwd_matrix, .read = uwd_read, .matmul = uwd_matmul,
	.matmul_logits = uwd_matmul_logits, .close = uwd_close,
};

int weights_open_daemon(const char *socket, const char *model,
			struct weights **out, struct uwerr *e)
{
	struct uwd_weights *d = calloc(1, sizeof(*d));
	int rc;
	if (!d)
		return uwerr_set(e, ENOMEM, "attach %s: out of memory", model);
	d->base = (struct weights){ .ops = &uwd_ops, .kind = "daemon" };
	rc = uw_connect(socket, &d->c);
	if (rc < 0) {
		if (!socket)
			socket = getenv("UNWEIGHT_SOCKET") ? getenv("UNWEIGHT_SOCKET")
							    : UW_DEFAULT_SOCKET;
		uw_fail(e, rc, "connect to", socket);
		goto fail;
	}
	rc = uw_attach(d->c, model, &d->m);
	if (rc < 0) {
		uw_fail(e, rc, "attach", model);
		goto fail;
	}
	d->on_gpu = uw_model_backend(d->m) == UW_BACKEND_CUDA;
	*out = &d->base;
	return 0;
fail:
	uwd_close(&d->base);
	return rc;
}
