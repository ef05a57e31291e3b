/* weights_reference: the reference provider, a safetensors file read
 * directly and a plain BF16 matmul loop that shares nothing with the
 * daemon's kernels, so the two can check each other. */
#include <stdlib.h>
#include <string.h>

#include "examples/weights.h"
#include "format/safetensors.h"
#include "kernels/resident.h"
#include "unweight.h"

struct refw_weights {
	struct weights base;
	struct st_file *f;
	uint16_t **data;        /* [f->ntensors]: the BF16 elements, or NULL */
	float *xf, *yf;         /* refw_matmul's float32 x and y, widest dim long */
};

static const struct st_tensor *find(struct refw_weights *r, const char *name,
				    size_t *idx, struct uwerr *e)
{
	for (size_t i = 0; i < r->f->ntensors; i++) {
		const struct st_tensor *t = &r->f->tensors[i];
		if (strcmp(t->name, name))
			continue;
		if (!r->data[i]) {
			uwerr_set(e, EINVAL, "%s: %s: not BF16", r->f->path, name);
			return NULL;
		}
		*idx = i;
		return t;
	}
	uwerr_set(e, ENOENT, "%s: no tensor %s", r->f->path, name);
	return NULL;
}

static int refw_matrix(struct weights *w, const char *name, uint64_t rows,
		      uint64_t cols, struct wmat *m, struct uwerr *e)
{
	struct refw_weights *r = (struct refw_weights *)w;
	size_t i;
	const struct st_tensor *t = find(r, name, &i, e);
	if (!t)
		return -e->code;
	if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
		return uwerr_set(e, EINVAL, "%s: %s: shape is not [%llu,%llu]",
				 r->f->path, name, (unsigned long long)rows,
				 (unsigned long long)cols);
	*m = (struct wmat){ .name = t->name, .rows = rows, .cols = cols,
			    .impl = r->data[i] };
	return 0;
}

static int refw_read(struct weights *w, const char *name, uint16_t *out,
		    size_t n, struct uwerr *e)
{
	struct refw_weights *r = (struct refw_weights *)w;
	size_t i;
	const struct st_tensor *t = find(r, name, &i, e);
	if (!t)
		return -e->code;
	if (st_tensor_bytes(t) != (uint64_t)n * 2)
		return uwerr_set(e, EINVAL, "%s: %s: %llu bytes, expected %zu elements",
				 r->f->path, name,
				 (unsigned long long)st_tensor_bytes(t), n);
	memcpy(out, r->data[i], n * 2);
	return 0;
}

/* Each output: products summed in float32 from column 0 up. The build turns
 * off FMA contraction for this file, so every product is rounded to float32
 * before it is added, as the uw_matmul contract says. */
static int refw_matmul_f32(struct weights *w, const struct wmat *m,
			   const float *x, float *y, struct uwerr *e)
{
	const uint16_t *wt = m->impl;
	for (uint64_t r = 0; r < m->rows; r++) {
		const uint16_t *row = wt + r * m->cols;
		float acc = 0.0f;
		for (uint64_t c = 0; c < m->cols; c++)
			acc += bf16_to_f32(row[c]) * x[c];
		y[r] = acc;
	}
	return 0;
}

/* BF16 x widens to float32 exactly; y is left in float32 (uw_matmul_f32). */
static int refw_matmul_logits(struct weights *w, const struct wmat *m,
			      const uint16_t *x, float *y, struct uwerr *e)
{
	struct refw_weights *r = (struct refw_weights *)w;
	for (uint64_t c = 0; c < m->cols; c++)
		r->xf[c] = bf16_to_f32(x[c]);
	return refw_matmul_f32(w, m, r->xf, y, e);
}

/* As refw_matmul_logits, each output then rounded once to BF16. */
static int refw_matmul(struct weights *w, const struct wmat *m,
		       const uint16_t *x, uint16_t *y, struct uwerr *e)
{
	struct refw_weights *r = (struct refw_weights *)w;
	refw_matmul_logits(w, m, x, r->yf, e);
	for (uint64_t i = 0; i < m->rows; i++)
		y[i] = f32_to_bf16(r->yf[i]);
	return 0;
}

static void refw_close(struct weights *w)
{
	struct refw_weights *r = (struct refw_weights *)w;
	if (r->data)
		for (size_t i = 0; i < r->f->ntensors; i++)
			free(r->data[i]);
	free(r->data);
	free(r->xf);
	free(r->yf);
	st_close(r->f);
	free(r);
}

static const struct weights_ops refw_ops = {
	.matrix = refw_matrix, .read = refw_read, .matmul = refw_matmul,
	.matmul_logits = refw_matmul_logits, .matmul_f32 = refw_matmul_f32,
	.close = refw_close,
};

int weights_open_reference(const char *path, struct weights **out,
			   struct uwerr *e)
{
	struct refw_weights *r = calloc(1, sizeof(*r));
	uint64_t widest = 1;
	int rc;
	if (!r)
		return uwerr_set(e, ENOMEM, "reference %s: out of memory", path);
	r->base = (struct weights){ .ops = &refw_ops, .kind = "reference" };
	rc = st_open(path, &r->f, e);
	if (rc < 0) {
		free(r);
		return uwerr_prefix(e, "reference weights");
	}
	r->data = calloc(r->f->ntensors ? r->f->ntensors : 1, sizeof(*r->data));
	if (!r->data) {
		rc = uwerr_set(e, ENOMEM, "reference %s: out of memory", path);
		goto fail;
	}
	/* Only BF16 tensors are weights here; others stay unread (find says so). */
	for (size_t i = 0; i < r->f->ntensors; i++) {
		const struct st_tensor *t = &r->f->tensors[i];
		if (t->dtype != UW_DTYPE_BF16)
			continue;
		r->data[i] = malloc(st_tensor_bytes(t) ? st_tensor_bytes(t) : 1);
		if (!r->data[i]) {
			rc = uwerr_set(e, ENOMEM, "reference %s: %s: out of memory",
				       path, t->name);
			goto fail;
		}
		rc = st_read_tensor(r->f, t, r->data[i], e);
		if (rc < 0)
			goto fail;
		for (int d = 0; d < t->ndim && st_tensor_bytes(t); d++)
			if (t->shape[d] > widest)
				widest = t->shape[d];
	}
	/* A dim of a non-empty BF16 tensor is at most its bytes / 2, so this
	 * cannot overflow; an empty tensor is no matrix (shape checks say so). */
	r->xf = malloc(widest * sizeof(float));
	r->yf = malloc(widest * sizeof(float));
	if (!r->xf || !r->yf) {
		rc = uwerr_set(e, ENOMEM, "reference %s: out of memory", path);
		goto fail;
	}
	*out = &r->base;
	return 0;
fail:
	refw_close(&r->base);
	return rc;
}
