/* bf16cases: implementation of bf16cases.h. */
#include "tests/bf16cases.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/safetensors.h"
#include "kernels/resident.h"
#include "tests/testutil.h"

static double unit(uint64_t *rng)
{
	return ((double)(tu_rand(rng) >> 11) + 0.5) / 9007199254740992.0;  /* (0, 1) */
}

void bf16_gauss(uint64_t *rng, double sigma, uint16_t *w, size_t n)
{
	for (size_t i = 0; i < n; i += 2) {
		double r = sigma * sqrt(-2.0 * log(unit(rng))), t = 2.0 * M_PI * unit(rng);
		w[i] = f32_to_bf16((float)(r * cos(t)));
		if (i + 1 < n)
			w[i + 1] = f32_to_bf16((float)(r * sin(t)));
	}
}

static uint16_t bits(int s, int ex, int m)
{
	return (uint16_t)(s << 15 | ex << 7 | m);
}

static void shuffle(uint64_t *rng, uint16_t *w, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = tu_rand(rng) % i;
		uint16_t t = w[i - 1];
		w[i - 1] = w[j];
		w[j] = t;
	}
}

static struct bf16_case *add(struct bf16_case **v, size_t *n, const char *name,
			     int ndim, uint64_t a, uint64_t b, uint64_t c)
{
	*v = realloc(*v, (*n + 1) * sizeof(**v));
	struct bf16_case *k = &(*v)[(*n)++];
	memset(k, 0, sizeof(*k));
	snprintf(k->name, sizeof(k->name), "%s", name);
	k->ndim = ndim;
	k->shape[0] = a;
	k->shape[1] = b;
	k->shape[2] = c;
	k->n = 1;
	for (int i = 0; i < ndim; i++)
		k->n *= k->shape[i];
	k->w = calloc(k->n ? k->n : 1, sizeof(uint16_t));
	return k;
}

size_t bf16_cases(uint64_t *rng, struct bf16_case **out)
{
	struct bf16_case *v = NULL, *k;
	size_t n = 0;

	static const uint64_t gshape[][2] = {{64, 1024}, {3, 5}, {1, 65537}, {65537, 3}, {172, 64}};
	for (size_t i = 0; i < sizeof(gshape) / sizeof(gshape[0]); i++) {
		char name[48];
		snprintf(name, sizeof(name), "gauss %llux%llu", (unsigned long long)gshape[i][0],
			 (unsigned long long)gshape[i][1]);
		k = add(&v, &n, name, 2, gshape[i][0], gshape[i][1], 0);
		bf16_gauss(rng, 0.02, k->w, k->n);
	}
	k = add(&v, &n, "gauss 3-D 4x5x6", 3, 4, 5, 6);
	bf16_gauss(rng, 1.0, k->w, k->n);
	k = add(&v, &n, "gauss 1-D 1000", 1, 1000, 0, 0);
	bf16_gauss(rng, 0.5, k->w, k->n);

	k = add(&v, &n, "every bit pattern", 2, 256, 256, 0);
	for (size_t i = 0; i < k->n; i++)
		k->w[i] = (uint16_t)i;
	k = add(&v, &n, "every bit pattern, shuffled", 2, 512, 128, 0);
	for (size_t i = 0; i < k->n; i++)
		k->w[i] = (uint16_t)i;
	shuffle(rng, k->w, k->n);
	k = add(&v, &n, "uniform random bits", 2, 129, 257, 0);
	for (size_t i = 0; i < k->n; i++)
		k->w[i] = (uint16_t)tu_rand(rng);

	k = add(&v, &n, "one exponent", 2, 100, 100, 0);
	for (size_t i = 0; i < k->n; i++)
		k->w[i] = bits((int)(tu_rand(rng) & 1), 120, (int)(tu_rand(rng) & 127));
	k = add(&v, &n, "+-0", 2, 17, 33, 0);
	for (size_t i = 0; i < k->n; i++)
		k->w[i] = bits((int)(tu_rand(rng) & 1), 0, 0);
	k = add(&v, &n, "Inf and NaN payloads", 2, 50, 70, 0);
	for (size_t i = 0; i < k->n; i++) {
		uint64_t r = tu_rand(rng);
		/* every NaN payload (m != 0) of both signs, ±Inf, and normals */
		k->w[i] = r % 4 == 0 ? bits((int)(r >> 8 & 1), 200 + (int)(r >> 16 & 3), (int)(r >> 24 & 127))
				     : bits((int)(r >> 8 & 1), 255, (int)(i % 128));
	}
	k = add(&v, &n, "subnormals", 2, 31, 9, 0);
	for (size_t i = 0; i < k->n; i++)
		k->w[i] = bits((int)(tu_rand(rng) & 1), 0, (int)(tu_rand(rng) & 127));
	k = add(&v, &n, "outliers over a wide range", 2, 64, 300, 0);
	bf16_gauss(rng, 0.02, k->w, k->n);
	for (size_t i = 0; i < k->n; i += 1 + tu_rand(rng) % 50)
		k->w[i] = bits((int)(tu_rand(rng) & 1), (int)(tu_rand(rng) % 256), (int)(tu_rand(rng) & 127));

	/* Fibonacci counts: an unlimited Huffman code would need 21-bit codes. */
	uint64_t fib[22] = {1, 1}, nfib = 2;
	for (int i = 2; i < 22; i++)
		nfib += fib[i] = fib[i - 1] + fib[i - 2];
	k = add(&v, &n, "fibonacci exponent counts", 2, 1, nfib, 0);
	for (size_t i = 0, at = 0; i < 22; i++)
		for (uint64_t j = 0; j < fib[i]; j++)
			k->w[at++] = bits((int)(tu_rand(rng) & 1), 100 + (int)i, (int)(tu_rand(rng) & 127));
	shuffle(rng, k->w, k->n);

	add(&v, &n, "size 0 (0x7)", 2, 0, 7, 0);
	add(&v, &n, "size 0 (5x0)", 2, 5, 0, 0);
	k = add(&v, &n, "size 1 (1x1)", 2, 1, 1, 0);
	k->w[0] = 0x3f80;
	k = add(&v, &n, "size 1 (1-D)", 1, 1, 0, 0);
	k->w[0] = 0xbf80;
	*out = v;
	return n;
}

void bf16_cases_free(struct bf16_case *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(c[i].w);
	free(c);
}

int bf16_real_mlp(struct bf16_real **out)
{
	char path[4096];
	struct st_file *f;
	struct uwerr e = {0};
	snprintf(path, sizeof(path), "%s/data/stories260K.safetensors", tu_srcdir());
	if (st_open(path, &f, &e) < 0) {
		fprintf(stderr, "%s\n", e.msg);
		return -1;
	}
	struct bf16_real *r = calloc(f->ntensors, sizeof(*r));
	int n = 0;
	for (size_t i = 0; i < f->ntensors; i++) {
		const struct st_tensor *t = &f->tensors[i];
		if (!strstr(t->name, ".mlp.") || t->dtype != UW_DTYPE_BF16 || t->ndim != 2)
			continue;
		struct bf16_real *k = &r[n++];
		snprintf(k->name, sizeof(k->name), "%s", t->name);
		k->rows = t->shape[0];
		k->cols = t->shape[1];
		k->w = malloc(st_tensor_bytes(t));
		if (st_read_tensor(f, t, k->w, &e) < 0) {
			fprintf(stderr, "%s\n", e.msg);
			st_close(f);
			bf16_real_free(r, n);
			return -1;
		}
	}
	st_close(f);
	*out = r;
	return n;
}

void bf16_real_free(struct bf16_real *r, int n)
{
	for (int i = 0; i < n; i++)
		free(r[i].w);
	free(r);
}
