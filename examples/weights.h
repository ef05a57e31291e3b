/* weights: where the example worker gets its BF16 weights and its matmuls,
 * behind one small interface with two providers:
 *   daemon    - the tensors of a model attached from unweightd; every matmul
 *               is uw_matmul, every other tensor comes from uw_decode;
 *   reference - the same safetensors file read directly, with a plain BF16
 *               matmul loop of its own (independent of kernels/ and client/).
 * Both take and give BF16 (round to nearest even; the logits in float32),
 * so a forward pass over either must produce the same bits. */
#ifndef UW_EXAMPLES_WEIGHTS_H
#define UW_EXAMPLES_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* One BF16 weight matrix [rows][cols], as its provider holds it. */
struct wmat {
	const char *name;       /* owned by the provider */
	uint64_t rows, cols;
	const void *impl;       /* the provider's handle (a uw_tensor, the bytes) */
};

struct weights;

struct weights_ops {
	/* Look up a BF16 matrix and check it is exactly [rows][cols]. */
	int (*matrix)(struct weights *w, const char *name, uint64_t rows,
		      uint64_t cols, struct wmat *m, struct uwerr *e);
	/* Copy the n BF16 elements of a tensor (of any shape) into out. */
	int (*read)(struct weights *w, const char *name, uint16_t *out, size_t n,
		    struct uwerr *e);
	/* y[rows] = W . x[cols], BF16 in and out, float32 accumulation. x and y
	 * are host memory: a provider whose tensors live elsewhere stages them. */
	int (*matmul)(struct weights *w, const struct wmat *m, const uint16_t *x,
		      uint16_t *y, struct uwerr *e);
	/* The same sums with y left in float32 (uw_matmul_f32): the logits,
	 * where a BF16 rounding could tie two tokens. */
	int (*matmul_logits)(struct weights *w, const struct wmat *m, const uint16_t *x,
			     float *y, struct uwerr *e);
	/* The same in float32 throughout, x and y unrounded: the arithmetic of
	 * the story in data/README.md. Only the reference provider has it
	 * (NULL elsewhere); it checks the forward pass against that story. */
	int (*matmul_f32)(struct weights *w, const struct wmat *m, const float *x,
			  float *y, struct uwerr *e);
	void (*close)(struct weights *w);
};

struct weights {
	const struct weights_ops *ops;
	const char *kind;       /* "daemon" or "reference", for messages */
};

/* socket NULL: $UNWEIGHT_SOCKET, else the default. */
int weights_open_daemon(const char *socket, const char *model,
			struct weights **out, struct uwerr *e);
int weights_open_reference(const char *path, struct weights **out,
			   struct uwerr *e);

static inline void weights_close(struct weights *w)
{
	if (w)
		w->ops->close(w);
}

#endif
