/* llama: implementation of llama.h, following llama2.c's run.c step by step. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "examples/llama.h"
#include "kernels/resident.h"

struct layer {
	float *rms_att, *rms_ffn;                   /* [dim] */
	struct wmat wq, wk, wv, wo, w1, w2, w3;     /* w1 gate, w2 down, w3 up */
};

struct llama {
	struct llama_config c;
	int head_size, kv_dim;
	struct weights *w;
	unsigned flags;
	float *embed;                /* [vocab][dim] */
	float *rms_final;            /* [dim] */
	struct wmat cls;             /* the embedding again, as the classifier */
	struct layer *layers;
	/* activations */
	float *x, *xb, *xb2, *hb, *hb2, *q, *att, *logits;
	float *key_cache, *value_cache;             /* [layer][seq_len][kv_dim] */
	uint16_t *in, *out;          /* BF16 matmul operands, the widest vector */
};

/* Read a BF16 tensor of n elements into a new float array. */
static int read_floats(struct llama *m, const char *name, size_t n, float **out,
		       struct uwerr *e)
{
	uint16_t *h = malloc(n * sizeof(*h));
	float *f = malloc(n * sizeof(*f));
	int rc = 0;
	if (!h || !f) {
		rc = uwerr_set(e, ENOMEM, "%s: out of memory", name);
		goto done;
	}
	rc = m->w->ops->read(m->w, name, h, n, e);
	if (rc < 0)
		goto done;
	for (size_t i = 0; i < n; i++)
		f[i] = bf16_to_f32(h[i]);
	*out = f;
	f = NULL;
done:
	free(h);
	free(f);
	return rc;
}

static int layer_open(struct llama *m, int i, struct layer *l, struct uwerr *e)
{
	const struct llama_config *c = &m->c;
	const struct {
		const char *name;
		struct wmat *mat;
		int rows, cols;
	} mats[] = {
		{ "self_attn.q_proj", &l->wq, c->dim, c->dim },
		{ "self_attn.k_proj", &l->wk, m->kv_dim, c->dim },
		{ "self_attn.v_proj", &l->wv, m->kv_dim, c->dim },
		{ "self_attn.o_proj", &l->wo, c->dim, c->dim },
		{ "mlp.gate_proj", &l->w1, c->hidden, c->dim },
		{ "mlp.down_proj", &l->w2, c->dim, c->hidden },
		{ "mlp.up_proj", &l->w3, c->hidden, c->dim },
	};
	char name[128];
	int rc;

	for (size_t k = 0; k < sizeof(mats) / sizeof(mats[0]); k++) {
		snprintf(name, sizeof(name), "model.layers.%d.%s.weight", i, mats[k].name);
		rc = m->w->ops->matrix(m->w, name, mats[k].rows, mats[k].cols,
				       mats[k].mat, e);
		if (rc < 0)
			return rc;
	}
	snprintf(name, sizeof(name), "model.layers.%d.input_layernorm.weight", i);
	rc = read_floats(m, name, c->dim, &l->rms_att, e);
	if (rc < 0)
		return rc;
	snprintf(name, sizeof(name), "model.layers.%d.post_attention_layernorm.weight", i);
	return read_floats(m, name, c->dim, &l->rms_ffn, e);
}

static int check_config(const struct llama_config *c, struct uwerr *e)
{
	if (c->dim <= 0 || c->hidden <= 0 || c->n_layers <= 0 || c->n_heads <= 0 ||
	    c->n_kv_heads <= 0 || c->vocab <= 0 || c->seq_len <= 0 ||
	    c->dim > 65536 || c->hidden > 262144 || c->n_layers > 1024 ||
	    c->vocab > 1 << 20 || c->seq_len > 1 << 16)
		return uwerr_set(e, EINVAL, "model config out of range");
	if (c->dim % c->n_heads || c->n_heads % c->n_kv_heads || (c->dim / c->n_heads) % 2)
		return uwerr_set(e, EINVAL, "model config: dim %d, %d heads, %d kv heads: "
				 "heads must divide dim into even sizes and kv heads the heads",
				 c->dim, c->n_heads, c->n_kv_heads);
	return 0;
}

int llama_open(struct weights *w, const struct llama_config *c,
	       unsigned flags, struct llama **out, struct uwerr *e)
{
	struct llama *m;
	size_t cache, widest;
	int rc = check_config(c, e);
	if (rc < 0)
		return rc;
	if ((flags & LLAMA_F32) && !w->ops->matmul_f32)
		return uwerr_set(e, ENOTSUP, "the %s weights have no float32 matmul", w->kind);
	m = calloc(1, sizeof(*m));
	if (!m)
		return uwerr_set(e, ENOMEM, "model: out of memory");
	m->c = *c;
	m->w = w;
	m->flags = flags;
	m->head_size = c->dim / c->n_heads;
	m->kv_dim = m->head_size * c->n_kv_heads;
	cache = (size_t)c->n_layers * c->seq_len * m->kv_dim;
	widest = c->vocab > c->hidden ? c->vocab : c->hidden;
	if (widest < (size_t)c->dim)
		widest = c->dim;
	m->layers = calloc(c->n_layers, sizeof(*m->layers));
	m->x = calloc(c->dim, sizeof(float));
	m->xb = calloc(c->dim, sizeof(float));
	m->xb2 = calloc(c->dim, sizeof(float));
	m->hb = calloc(c->hidden, sizeof(float));
	m->hb2 = calloc(c->hidden, sizeof(float));
	m->q = calloc(c->dim, sizeof(float));
	m->att = calloc((size_t)c->n_heads * c->seq_len, sizeof(float));
	m->logits = calloc(c->vocab, sizeof(float));
	m->key_cache = calloc(cache, sizeof(float));
	m->value_cache = calloc(cache, sizeof(float));
	m->in = calloc(widest, sizeof(uint16_t));
	m->out = calloc(widest, sizeof(uint16_t));
	if (!m->layers || !m->x || !m->xb || !m->xb2 || !m->hb || !m->hb2 || !m->q ||
	    !m->att || !m->logits || !m->key_cache || !m->value_cache || !m->in ||
	    !m->out) {
		rc = uwerr_set(e, ENOMEM, "model: out of memory for activations");
		goto fail;
	}
	rc = read_floats(m, "model.embed_tokens.weight", (size_t)c->vocab * c->dim,
			 &m->embed, e);
	if (rc < 0)
		goto fail;
	rc = w->ops->matrix(w, "model.embed_tokens.weight", c->vocab, c->dim, &m->cls, e);
	if (rc < 0)
		goto fail;
	rc = read_floats(m, "model.norm.weight", c->dim, &m->rms_final, e);
	if (rc < 0)
		goto fail;
	for (int i = 0; i < c->n_layers; i++) {
		rc = layer_open(m, i, &m->layers[i], e);
		if (rc < 0)
			goto fail;
	}
	*out = m;
	return 0;
fail:
	llama_close(m);
	return rc;
}

void llama_close(struct llama *m)
{
	if (!m)
		return;
	for (int i = 0; m->layers && i < m->c.n_layers; i++) {
		free(m->layers[i].rms_att);
		free(m->layers[i].rms_ffn);
	}
	free(m->layers);
	free(m->embed);
	free(m->rms_final);
	free(m->x);
	free(m->xb);
	free(m->xb2);
	free(m->hb);
	free(m->hb2);
	free(m->q);
	free(m->att);
	free(m->logits);
	free(m->key_cache);
	free(m->value_cache);
	free(m->in);
	free(m->out);
	free(m);
}

/* y = W . x: x goes in as BF16 (round to nearest even), y comes back as BF16;
 * with LLAMA_F32 both stay float32. */
static int matmul(struct llama *m, const struct wmat *w, const float *x, float *y,
		  struct uwerr *e)
{
	int rc;
	if (m->flags & LLAMA_F32)
		return m->w->ops->matmul_f32(m->w, w, x, y, e);
	for (uint64_t i = 0; i < w->cols; i++)
		m->in[i] = f32_to_bf16(x[i]);
	rc = m->w->ops->matmul(m->w, w, m->in, m->out, e);
	if (rc < 0)
		return rc;
	for (uint64_t i = 0; i < w->rows; i++)
		y[i] = bf16_to_f32(m->out[i]);
	return 0;
}

/* The classifier: BF16 x as matmul's, the logits left in float32, so that
 * no BF16 rounding ties two tokens and the greedy choice does not depend on
 * the order a backend adds in. */
static int matmul_logits(struct llama *m, const float *x, struct uwerr *e)
{
	if (m->flags & LLAMA_F32)
		return m->w->ops->matmul_f32(m->w, &m->cls, x, m->logits, e);
	for (uint64_t i = 0; i < m->cls.cols; i++)
		m->in[i] = f32_to_bf16(x[i]);
	return m->w->ops->matmul_logits(m->w, &m->cls, m->in, m->logits, e);
}

static void rmsnorm(float *o, const float *x, const float *weight, int n, float eps)
{
	float ss = 0.0f;
	for (int i = 0; i < n; i++)
		ss += x[i] * x[i];
	ss = 1.0f / sqrtf(ss / n + eps);
	for (int i = 0; i < n; i++)
		o[i] = weight[i] * (ss * x[i]);
}

static void softmax(float *x, int n)
{
	float max = x[0], sum = 0.0f;
	for (int i = 1; i < n; i++)
		if (x[i] > max)
			max = x[i];
	for (int i = 0; i < n; i++) {
		x[i] = expf(x[i] - max);
		sum += x[i];
	}
	for (int i = 0; i < n; i++)
		x[i] /= sum;
}

/* Rotate each pair (2i, 2i+1) of every head of q, and of k (kv_dim wide). */
static void rope(const struct llama *m, float *q, float *k, int pos)
{
	for (int i = 0; i < m->c.dim; i += 2) {
		float freq = 1.0f / powf(m->c.rope_theta,
					 (i % m->head_size) / (float)m->head_size);
		float fcr = cosf(pos * freq), fci = sinf(pos * freq);
		for (int v = 0; v < (i < m->kv_dim ? 2 : 1); v++) {
			float *vec = v ? k : q;
			float v0 = vec[i], v1 = vec[i + 1];
			vec[i] = v0 * fcr - v1 * fci;
			vec[i + 1] = v0 * fci + v1 * fcr;
		}
	}
}

static void attention(struct llama *m, int layer, int pos)
{
	const struct llama_config *c = &m->c;
	int hs = m->head_size, kv_mul = c->n_heads / c->n_kv_heads;
	size_t loff = (size_t)layer * c->seq_len * m->kv_dim;

	for (int h = 0; h < c->n_heads; h++) {
		const float *q = m->q + h * hs;
		float *att = m->att + (size_t)h * c->seq_len;
		float *xb = m->xb + h * hs;
		size_t hoff = loff + (size_t)(h / kv_mul) * hs;

		for (int t = 0; t <= pos; t++) {
			const float *k = m->key_cache + hoff + (size_t)t * m->kv_dim;
			float score = 0.0f;
			for (int i = 0; i < hs; i++)
				score += q[i] * k[i];
			att[t] = score / sqrtf(hs);
		}
		softmax(att, pos + 1);
		memset(xb, 0, hs * sizeof(*xb));
		for (int t = 0; t <= pos; t++) {
			const float *v = m->value_cache + hoff + (size_t)t * m->kv_dim;
			for (int i = 0; i < hs; i++)
				xb[i] += att[t] * v[i];
		}
	}
}

int llama_forward(struct llama *m, int token, int pos, const float **logits,
		  struct uwerr *e)
{
	const struct llama_config *c = &m->c;
	int rc;

	if (token < 0 || token >= c->vocab || pos < 0 || pos >= c->seq_len)
		return uwerr_set(e, EINVAL, "forward: token %d at position %d: out of "
				 "[0,%d) x [0,%d)", token, pos, c->vocab, c->seq_len);
	memcpy(m->x, m->embed + (size_t)token * c->dim, c->dim * sizeof(*m->x));

	for (int l = 0; l < c->n_layers; l++) {
		const struct layer *L = &m->layers[l];
		size_t loff = (size_t)l * c->seq_len * m->kv_dim + (size_t)pos * m->kv_dim;
		float *k = m->key_cache + loff, *v = m->value_cache + loff;

		rmsnorm(m->xb, m->x, L->rms_att, c->dim, c->norm_eps);
		if ((rc = matmul(m, &L->wq, m->xb, m->q, e)) < 0 ||
		    (rc = matmul(m, &L->wk, m->xb, k, e)) < 0 ||
		    (rc = matmul(m, &L->wv, m->xb, v, e)) < 0)
			return rc;
		rope(m, m->q, k, pos);
		attention(m, l, pos);
		if ((rc = matmul(m, &L->wo, m->xb, m->xb2, e)) < 0)
			return rc;
		for (int i = 0; i < c->dim; i++)
			m->x[i] += m->xb2[i];

		rmsnorm(m->xb, m->x, L->rms_ffn, c->dim, c->norm_eps);
		if ((rc = matmul(m, &L->w1, m->xb, m->hb, e)) < 0 ||
		    (rc = matmul(m, &L->w3, m->xb, m->hb2, e)) < 0)
			return rc;
		for (int i = 0; i < c->hidden; i++) {
			float g = m->hb[i];
			m->hb[i] = g * (1.0f / (1.0f + expf(-g))) * m->hb2[i];
		}
		if ((rc = matmul(m, &L->w2, m->hb, m->xb, e)) < 0)
			return rc;
		for (int i = 0; i < c->dim; i++)
			m->x[i] += m->xb[i];
	}
	rmsnorm(m->x, m->x, m->rms_final, c->dim, c->norm_eps);
	if ((rc = matmul_logits(m, m->x, e)) < 0)
		return rc;
	*logits = m->logits;
	return 0;
}
