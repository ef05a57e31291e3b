/* benchutil: what the CUDA benchmarks of bench/ share: a checking macro
 * for CUDA calls, exiting on an error record, and the relative L2
 * difference of two BF16 vectors. Dev tools: they exit on failure. */
#ifndef UW_BENCH_BENCHUTIL_H
#define UW_BENCH_BENCHUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime.h>

#include "common/err.h"

extern "C" {
#include "kernels/resident.h"
}

#define CK(call) do { \
	cudaError_t r_ = (call); \
	if (r_ != cudaSuccess) { \
		fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(r_)); \
		exit(1); \
	} \
} while (0)

static inline void die_uw(const char *what, const struct uwerr *e)
{
	fprintf(stderr, "%s: %s\n", what, e->msg);
	exit(1);
}

/* ||a - b|| / ||b|| of two BF16 vectors. */
static inline double rel_l2(const uint16_t *a, const uint16_t *b, size_t n)
{
	double d = 0, r = 0;
	for (size_t i = 0; i < n; i++) {
		double x = bf16_to_f32(a[i]), y = bf16_to_f32(b[i]);
		d += (x - y) * (x - y);
		r += y * y;
	}
	return sqrt(d / r);
}

#endif
