/* ref_decode: the CPU reference decoder of the resident formats, row by row
 * (ref_matmul shares it) and whole tensors. */
#include "kernels/resident.h"

#include <string.h>

#include "common/le.h"
#include "common/parallel.h"
#include "format/bf16.h"
#include "kernels/r11.h"

/* Write the patches of group g that fall in rows [r0, r1) over the
 * palette guesses in o (row r0 first). The whole list of the group is
 * checked, whichever rows are asked for. */
static int apply_group(const struct uw_layout *l, const uint8_t *b, uint64_t g, uint64_t r0,
		       uint64_t r1, uint8_t *o, struct uwerr *e)
{
	const uint8_t *pg = b + l->patch_grp_off + 4 * g;
	const uint32_t p0 = le32_get(pg), p1 = le32_get(pg + 4);
	const uint64_t gr = g * RES_PATCH_GROUP;
	if (p0 > p1 || p1 > l->npatch)
		return uwerr_set(e, EBADMSG, "R12 rows %llu..: patches [%u, %u) of %llu",
				 (unsigned long long)gr, p0, p1, (unsigned long long)l->npatch);
	uint32_t prev = 0;
	for (uint32_t i = p0; i < p1; i++) {
		const uint32_t v = le32_get(b + l->patch_off + 4 * (uint64_t)i);
		const uint64_t r = gr + (v >> 28), c = (v >> 8) & 0xfffff;
		if (r >= l->rows || c >= l->cols || (i > p0 && v >> 8 <= prev))
			return uwerr_set(e, EBADMSG, "R12 patch %u at row %llu, column %llu (of %llux%llu, ascending)",
					 i, (unsigned long long)r, (unsigned long long)c,
					 (unsigned long long)l->rows, (unsigned long long)l->cols);
		prev = v >> 8;
		if (r >= r0 && r < r1) {
			uint8_t *at = o + 2 * ((r - r0) * l->cols + c);
			bf16_put(at, (uint8_t)v, bf16_sm(at));
		}
	}
	return 0;
}

int res_decode_rows(const struct uw_layout *l, const void *base, uint64_t r0,
		    uint64_t r1, void *dst, struct uwerr *e)
{
	const uint8_t *b = base;
	uint8_t *o = dst;
	if (l->format == UW_FORMAT_RAW) {
		size_t row = 2 * l->cols;  /* BF16 only: callers check */
		memcpy(o, b + r0 * row, (r1 - r0) * row);
		return 0;
	}
	if (l->format == UW_FORMAT_R11)
		return r11_decode_rows(l, base, r0, r1, dst, e);
	for (uint64_t r = r0; r < r1; r++, o += 2 * l->cols) {
		const uint8_t *mant = b + l->mant_off + r * l->mant_stride;
		const uint8_t *nib = b + l->nib_off + r * l->nib_stride;
		for (uint64_t c = 0; c < l->cols; c++)
			bf16_put(o + 2 * c, l->palette[(nib[c / 2] >> (4 * (c & 1))) & 15], mant[c]);
	}
	/* Exponents outside the palette overwrite the palette[0] guess. */
	for (uint64_t g = r0 / RES_PATCH_GROUP; g * RES_PATCH_GROUP < r1; g++) {
		int rc = apply_group(l, b, g, r0, r1, dst, e);
		if (rc < 0)
			return rc;
	}
	return 0;
}

struct decode_job {
	const struct uw_layout *l;
	const void *base;
	uint8_t *out;
	struct par_err err;
};

static void decode_part(void *ctx, size_t r0, size_t r1)
{
	struct decode_job *j = ctx;
	struct uwerr e = {0};
	if (res_decode_rows(j->l, j->base, r0, r1, j->out + 2 * r0 * j->l->cols, &e) < 0)
		par_fail(&j->err, &e);
}

int ref_decode(const struct uw_layout *l, const void *base, void *out,
	       size_t out_bytes, struct uwerr *e)
{
	return ref_decode_mt(l, base, out, out_bytes, 0, e);
}

int ref_decode_mt(const struct uw_layout *l, const void *base, void *out,
		  size_t out_bytes, int nthreads, struct uwerr *e)
{
	int rc = res_validate(l, l->nbytes, e);
	if (rc < 0)
		return uwerr_prefix(e, "ref_decode");
	if (l->format == UW_FORMAT_RAW) {
		if (out_bytes < l->nbytes)
			return uwerr_set(e, EINVAL, "ref_decode: %zu-byte buffer for %llu bytes",
					 out_bytes, (unsigned long long)l->nbytes);
		if (l->nbytes)
			memcpy(out, base, l->nbytes);
		return 0;
	}
	uint64_t raw = 2 * l->rows * l->cols;  /* validated: no overflow */
	if (out_bytes < raw)
		return uwerr_set(e, EINVAL, "ref_decode: %zu-byte buffer for %llu bytes",
				 out_bytes, (unsigned long long)raw);
	struct decode_job j = {.l = l, .base = base, .out = out};
	par_for(l->rows, nthreads > 0 || raw / 2 >= RES_PAR_MIN ? nthreads : 1, decode_part, &j);
	return par_err_take(&j.err, e);
}
