/* clientutil: what the client suites share: checking uw_decode and
 * uw_matmul of an attached tensor against the tensor's original bytes. */
#ifndef UW_TESTS_CLIENTUTIL_H
#define UW_TESTS_CLIENTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "unweight.h"

/* uw_decode of t must give exactly raw (raw_bytes of them). 0 or -1, with
 * what differed on stderr. Usable in forked children (no Check calls). */
int cu_check_decode(const uw_tensor *t, const void *raw, size_t raw_bytes);

/* uw_matmul (y_f32: uw_matmul_f32) of t (2-D BF16, original bytes w) on
 * random BF16 x of batch rows, against a float64 reference: every
 * |y - ref| must be within 1e-2 (y_f32: cols * 2^-24) of sum |x||w| over
 * the row. 0 or -1, with the worst element on stderr. crc (may be NULL)
 * accumulates a CRC-32C of y: processes given the same rng state must get
 * the same bits. */
int cu_check_matmul(const uw_tensor *t, const uint16_t *w, size_t batch, int y_f32,
		    uint64_t *rng, uint32_t *crc);

/* uw_matmul2 of t0 and t1 (2-D BF16 of the same cols, original bytes w0
 * and w1) on random BF16 x of batch rows: both outputs against the float64
 * reference as cu_check_matmul does. 0 or -1, with the worst on stderr. */
int cu_check_matmul2(const uw_tensor *t0, const uint16_t *w0, const uw_tensor *t1,
		     const uint16_t *w1, size_t batch, uint64_t *rng);

#endif
