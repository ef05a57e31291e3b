/* weights_daemon: the daemon provider, a model attached from unweightd
 * through libunweight-client; matmuls are uw_matmul on the shared tensors.
 *
 * On the host backend uw_decode and uw_matmul read and write host memory,
 * so the caller's buffers go straight through. On the CUDA backend they take
 * device pointers instead: a CUDA variant adds two device buffers to struct
 * uwd_weights (cudaMalloc'd in weights_open_daemon, sized for the largest
 * vector, freed in uwd_close), and in uwd_read and uwd_matmul copies x in
 * before the call and y (or out) back after it (cudaMemcpy on the stream
 * given to uw_*). That is the only change: the rest of the worker sees host
 * BF16 vectors either way. Until then, weights_open_daemon refuses a model
 * on the CUDA backend. */
#include <stdlib.h>
#include <string.h>

#include "examples/weights.h"
#include "unweight.h"

struct uwd_weights {
	struct weights base;
	uw_client *c;
	uw_model *m;
};

static int uw_fail(struct uwerr *e, int rc, const char *what, const char *name)
{
	const char *msg = uw_errmsg();
	return uwerr_set(e, -rc, "%s %s: %s", what, name,
			 msg && *msg ? msg : uw_strerror(rc));
}

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
	rc = uw_decode(t, out, n * 2, NULL);
	return rc < 0 ? uw_fail(e, rc, "decode", name) : 0;
}

static int uwd_matmul(struct weights *w, const struct wmat *m,
		      const uint16_t *x, uint16_t *y, struct uwerr *e)
{
	int rc = uw_matmul(m->impl, x, 1, y, NULL);
	return rc < 0 ? uw_fail(e, rc, "matmul", m->name) : 0;
}

static void uwd_close(struct weights *w)
{
	struct uwd_weights *d = (struct uwd_weights *)w;
	uw_detach(d->m);
	uw_disconnect(d->c);
	free(d);
}

static const struct weights_ops uwd_ops = {
	.matrix = uwd_matrix, .read = uwd_read, .matmul = uwd_matmul,
	.close = uwd_close,
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
		uw_fail(e, rc, "connect", socket ? socket : "(default socket)");
		goto fail;
	}
	rc = uw_attach(d->c, model, &d->m);
	if (rc < 0) {
		uw_fail(e, rc, "attach", model);
		goto fail;
	}
	if (uw_model_backend(d->m) != UW_BACKEND_HOST) {
		rc = uwerr_set(e, ENOTSUP, "attach %s: the model is on the CUDA backend, "
			       "and this example stages host buffers only", model);
		goto fail;
	}
	*out = &d->base;
	return 0;
fail:
	uwd_close(&d->base);
	return rc;
}
