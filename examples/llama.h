/* llama: the llama2.c forward pass (RMSNorm, RoPE on interleaved pairs,
 * grouped-query attention, SwiGLU) over weights from any provider, with
 * float32 activations that enter and leave every matmul as BF16, as
 * uw_matmul takes and gives them. */
#ifndef UW_EXAMPLES_LLAMA_H
#define UW_EXAMPLES_LLAMA_H

#include "common/err.h"
#include "examples/weights.h"

struct llama_config {
	int dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len;
	float norm_eps, rope_theta;
};

struct llama;

/* Keep activations float32 through the matmuls too (w->ops->matmul_f32):
 * the arithmetic of the story in data/README.md. */
#define LLAMA_F32 1u

/* Look up every tensor (Hugging Face Llama names) and check its shape
 * against c. w must outlive the model. */
int llama_open(struct weights *w, const struct llama_config *c,
	       unsigned flags, struct llama **out, struct uwerr *e);
void llama_close(struct llama *m);

/* Run token at position pos (0 <= pos < seq_len; positions in order) and
 * point *logits at the vocab scores, valid until the next call. */
int llama_forward(struct llama *m, int token, int pos, const float **logits,
		  struct uwerr *e);

#endif
