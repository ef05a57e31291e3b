/* bf16cases: the BF16 tensors the codec suites round-trip: Gaussian weights
 * and the adversarial set (every bit pattern, one exponent, zeros, Inf, NaN
 * payloads, subnormals, shapes off every block size, sizes 0 and 1). */
#ifndef UW_TESTS_BF16CASES_H
#define UW_TESTS_BF16CASES_H

#include <stddef.h>
#include <stdint.h>

struct bf16_case {
	char name[48];
	int ndim;
	uint64_t shape[3];
	size_t n;               /* elements */
	uint16_t *w;            /* malloc'd, n (at least 1) */
};

/* N(0, sigma) rounded to BF16 (round to nearest even), from tu_rand. */
void bf16_gauss(uint64_t *rng, double sigma, uint16_t *w, size_t n);

/* The whole set, drawn from rng; free with bf16_cases_free. */
size_t bf16_cases(uint64_t *rng, struct bf16_case **out);
void bf16_cases_free(struct bf16_case *c, size_t n);

/* The MLP weights of data/stories260K.safetensors, read with st_open. */
struct bf16_real {
	char name[64];
	uint64_t rows, cols;
	uint16_t *w;
};
/* Returns how many were read (15), or -1 with a message on stderr. */
int bf16_real_mlp(struct bf16_real **out);
void bf16_real_free(struct bf16_real *r, int n);

#endif
