/* resident: planning, writing and checking the resident layouts (RAW, R12;
 * R11 in r11.c) of one tensor; docs/FORMAT.md ("Resident formats"). */
#include "kernels/resident.h"

#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/le.h"
#include "common/parallel.h"
#include "format/bf16.h"
#include "format/dtype.h"
#include "format/restcodec.h"
#include "kernels/r11.h"

#define R12_MAX_COLS (1ull << 20)       /* a patch holds col in 20 bits */

/* rows = shape[0], cols = the product of the rest (a scalar is 1 x 1). */
static int view_2d(int dtype, int ndim, const uint64_t *shape, size_t raw_bytes,
		   uint64_t *rows, uint64_t *cols, struct uwerr *e)
{
	size_t size = dtype_size(dtype), total;
	if (!size)
		return uwerr_set(e, EINVAL, "resident: unknown dtype %d", dtype);
	if (ndim < 0 || ndim > UW_MAX_DIMS)
		return uwerr_set(e, EINVAL, "resident: %d dimensions (max %d)", ndim, UW_MAX_DIMS);
	uint64_t c = 1;
	for (int i = 1; i < ndim; i++)
		if (__builtin_mul_overflow(c, shape[i], &c))
			return uwerr_set(e, EOVERFLOW, "resident: shape overflows 64 bits");
	*rows = ndim ? shape[0] : 1;
	*cols = c;
	if (*rows > SIZE_MAX || c > SIZE_MAX || uw_mul_size(*rows, c, &total) < 0 ||
	    uw_mul_size(total, size, &total) < 0)
		return uwerr_set(e, EOVERFLOW, "resident: shape overflows size_t");
	if (total != raw_bytes)
		return uwerr_set(e, EINVAL, "resident: shape and dtype give %zu bytes, data has %zu",
				 total, raw_bytes);
	return 0;
}

static inline uint64_t r12_groups(uint64_t rows)
{
	return rows / RES_PATCH_GROUP + (rows % RES_PATCH_GROUP != 0);
}

/* Offsets of an R12 layout from rows, cols and npatch; -EOVERFLOW if the
 * sizes do not fit in 64 bits. Rows of RES_PAD_COLS columns or more are
 * padded to 16 bytes (at most 0.06 bits a weight) so that every row starts
 * on a 16-byte load; narrower rows are packed, since the padding of a
 * 172-column row alone would cost 0.65 bits a weight. */
uint64_t res_mant_stride(uint64_t cols)
{
	return cols >= RES_PAD_COLS ? res_round_up(cols, RES_ROW_ALIGN) : cols;
}

static int r12_offsets(struct uw_layout *l)
{
	uint64_t a, b;
	l->mant_stride = res_mant_stride(l->cols);
	l->nib_stride = l->cols >= RES_PAD_COLS ? res_round_up((l->cols + 1) / 2, RES_ROW_ALIGN)
						 : (l->cols + 1) / 2;
	l->mant_off = 0;
	if (__builtin_mul_overflow(l->rows, l->mant_stride, &a) ||
	    __builtin_mul_overflow(l->rows, l->nib_stride, &b))
		return -EOVERFLOW;
	l->nib_off = res_round_up(a, RES_PLANE_ALIGN);
	if (l->nib_off < a || __builtin_add_overflow(l->nib_off, b, &a))
		return -EOVERFLOW;
	l->patch_grp_off = res_round_up(a, RES_PLANE_ALIGN);
	if (l->patch_grp_off < a || r12_groups(l->rows) >= (UINT64_MAX - l->patch_grp_off) / 4)
		return -EOVERFLOW;
	l->patch_off = l->patch_grp_off + 4 * (r12_groups(l->rows) + 1);
	if (l->npatch > (UINT64_MAX - l->patch_off) / 4)
		return -EOVERFLOW;
	l->nbytes = l->patch_off + 4 * l->npatch;
	return 0;
}

int res_plan_shape(int dtype, int ndim, const uint64_t *shape, size_t raw_bytes,
		   struct uw_layout *l, struct uwerr *e)
{
	uint64_t rows = 0, cols = 0;
	int rc = view_2d(dtype, ndim, shape, raw_bytes, &rows, &cols, e);
	if (rc < 0)
		return rc;
	memset(l, 0, sizeof(*l));
	l->format = UW_FORMAT_RAW;
	l->dtype = (uint32_t)dtype;
	l->rows = rows;
	l->cols = cols;
	l->nbytes = raw_bytes;
	return dtype == UW_DTYPE_BF16 && ndim >= 2 && rows * cols != 0 && cols < R12_MAX_COLS;
}

void res_plan_hist(struct uw_layout *l, const uint64_t hist[256], int prefer)
{
	uint64_t covered = 0;
	struct uw_layout r = *l, s = *l;
	int k = exp_palette(hist, UW_PALETTE_SIZE, r.palette);
	for (int i = 0; i < k; i++)
		covered += hist[r.palette[i]];
	r.format = UW_FORMAT_R12;
	r.npatch = l->rows * l->cols - covered;
	/* the group index holds uint32 prefix counts */
	if (r.npatch <= UINT32_MAX && r12_offsets(&r) == 0 && r.nbytes < l->nbytes)
		*l = r;
	if (prefer == RES_PREFER_SIZE && r11_plan(&s, hist) == 0 && s.nbytes < l->nbytes)
		*l = s;
}

int res_plan(int dtype, int ndim, const uint64_t *shape, const void *raw,
	     size_t raw_bytes, int prefer, struct uw_layout *l, struct uwerr *e)
{
	int rc = res_plan_shape(dtype, ndim, shape, raw_bytes, l, e);
	if (rc <= 0)
		return rc;
	uint64_t hist[256] = {0};
	const uint8_t *p = raw;
	for (size_t i = 0; i < raw_bytes; i += 2)
		hist[bf16_exp(p + i)]++;
	res_plan_hist(l, hist, prefer);
	return 0;
}

int res_count_index(uint32_t *cnt, uint64_t n, uint64_t want, const char *what,
		    struct uwerr *e)
{
	uint64_t total = 0;
	cnt[0] = 0;
	for (uint64_t k = 0; k < n; k++) {
		total += cnt[k + 1];
		cnt[k + 1] = (uint32_t)(total <= UINT32_MAX ? total : 0);
	}
	if (total != want)
		return uwerr_set(e, EINVAL, "res_encode: data has %llu exponents outside the %s, the layout %llu",
				 (unsigned long long)total, what, (unsigned long long)want);
	return 0;
}

void res_put_index(const struct uw_layout *l, uint8_t *dst, uint64_t plane_end,
		   const uint32_t *idx, uint64_t n)
{
	const uint64_t mant_end = l->mant_off + l->rows * l->mant_stride;
	memset(dst + mant_end, 0, l->nib_off - mant_end);
	memset(dst + plane_end, 0, l->patch_grp_off - plane_end);
	for (uint64_t k = 0; k <= n; k++)
		le32_put(dst + l->patch_grp_off + 4 * k, idx[k]);
}

void res_palette_index(const uint8_t palette[UW_PALETTE_SIZE], uint8_t idx[256])
{
	memset(idx, 0xff, 256);
	for (int i = UW_PALETTE_SIZE - 1; i >= 0; i--)
		idx[palette[i]] = (uint8_t)i;   /* the first of repeated entries wins */
}

int res_layout_check(const struct uw_layout *l, size_t raw_bytes, struct uwerr *e)
{
	const int r11 = l->format == UW_FORMAT_R11;
	if (raw_bytes / 2 != l->rows * l->cols || raw_bytes % 2)
		return uwerr_set(e, EINVAL, "%s layout of %llux%llu for %zu bytes of data",
				 r11 ? "R11" : "R12", (unsigned long long)l->rows,
				 (unsigned long long)l->cols, raw_bytes);
	/* Only the planned geometry: then every gap is known. */
	struct uw_layout want = *l;
	const int rc = r11 ? r11_offsets(&want) : r12_offsets(&want);
	if (rc < 0 || want.nbytes != l->nbytes || want.mant_off != l->mant_off ||
	    want.mant_stride != l->mant_stride || want.nib_off != l->nib_off ||
	    want.nib_stride != l->nib_stride || want.patch_grp_off != l->patch_grp_off ||
	    want.patch_off != l->patch_off)
		return uwerr_set(e, EINVAL, "%s layout of %llux%llu is not the one res_plan makes",
				 r11 ? "R11" : "R12", (unsigned long long)l->rows,
				 (unsigned long long)l->cols);
	return 0;
}

struct r12_job {
	const struct uw_layout *l;
	const uint8_t *raw;
	uint8_t *dst;
	uint8_t idx[256];       /* exponent -> palette index; 0xff: patched */
	uint32_t *grp_patches;  /* per group of RES_PATCH_GROUP rows, then the prefix */
};

static void group_rows(const struct uw_layout *l, size_t g, uint64_t *r0, uint64_t *r1)
{
	*r0 = (uint64_t)g * RES_PATCH_GROUP;
	*r1 = *r0 + RES_PATCH_GROUP < l->rows ? *r0 + RES_PATCH_GROUP : l->rows;
}

static void r12_count(void *ctx, size_t g0, size_t g1)
{
	struct r12_job *j = ctx;
	for (size_t g = g0; g < g1; g++) {
		uint64_t r0, r1;
		group_rows(j->l, g, &r0, &r1);
		const uint8_t *p = j->raw + 2 * r0 * j->l->cols;
		uint32_t n = 0;
		for (uint64_t i = 0; i < (r1 - r0) * j->l->cols; i++, p += 2)
			n += j->idx[bf16_exp(p)] == 0xff;
		j->grp_patches[g + 1] = n;
	}
}

static void r12_rows(void *ctx, size_t g0, size_t g1)
{
	struct r12_job *j = ctx;
	const struct uw_layout *l = j->l;
	for (size_t g = g0; g < g1; g++) {
		uint64_t r0, r1;
		group_rows(l, g, &r0, &r1);
		uint8_t *patch = j->dst + l->patch_off + 4 * (uint64_t)j->grp_patches[g];
		for (uint64_t r = r0; r < r1; r++) {
			const uint8_t *p = j->raw + 2 * r * l->cols;
			uint8_t *mant = j->dst + l->mant_off + r * l->mant_stride;
			uint8_t *nib = j->dst + l->nib_off + r * l->nib_stride;
			const uint32_t rg = (uint32_t)(r - r0) << 28;
			memset(nib, 0, l->nib_stride);
			for (uint64_t c = 0; c < l->cols; c++, p += 2) {
				uint8_t ex = bf16_exp(p), i = j->idx[ex];
				mant[c] = bf16_sm(p);
				if (i == 0xff) {
					le32_put(patch, rg | (uint32_t)(c << 8) | ex);
					patch += 4;
					i = 0;
				}
				nib[c / 2] |= (uint8_t)(i << (4 * (c & 1)));
			}
			memset(mant + l->cols, 0, l->mant_stride - l->cols);
		}
	}
}

int res_encode(struct uw_layout *l, const void *raw, size_t raw_bytes,
	       void *dst, struct uwerr *e)
{
	return res_encode_mt(l, raw, raw_bytes, dst, 0, e);
}

int res_encode_mt(struct uw_layout *l, const void *raw, size_t raw_bytes,
		  void *dst, int nthreads, struct uwerr *e)
{
	int rc = res_validate(l, l->nbytes, e);
	if (rc < 0)
		return uwerr_prefix(e, "res_encode");
	if (l->format == UW_FORMAT_RAW) {
		if (raw_bytes != l->nbytes)
			return uwerr_set(e, EINVAL, "res_encode: raw layout of %llu bytes for %zu bytes of data",
					 (unsigned long long)l->nbytes, raw_bytes);
		if (raw_bytes)
			memcpy(dst, raw, raw_bytes);
		l->crc32c = crc32c(0, dst, raw_bytes);
		return 0;
	}
	if (res_layout_check(l, raw_bytes, e) < 0)
		return uwerr_prefix(e, "res_encode");
	if (l->format == UW_FORMAT_R11)
		return r11_encode(l, raw, dst, nthreads, e);

	struct r12_job j = {.l = l, .raw = raw, .dst = dst};
	res_palette_index(l->palette, j.idx);
	const uint64_t ngrp = r12_groups(l->rows);
	j.grp_patches = malloc((ngrp + 1) * sizeof(uint32_t));
	if (!j.grp_patches)
		return uwerr_set(e, ENOMEM, "res_encode: patch index of %llu groups",
				 (unsigned long long)ngrp);
	int threads = nthreads > 0 || l->rows * l->cols >= RES_PAR_MIN ? nthreads : 1;
	par_for(ngrp, threads, r12_count, &j);
	if (res_count_index(j.grp_patches, ngrp, l->npatch, "palette", e) < 0) {
		free(j.grp_patches);
		return -EINVAL;
	}
	res_put_index(l, dst, l->nib_off + l->rows * l->nib_stride, j.grp_patches, ngrp);
	par_for(ngrp, threads, r12_rows, &j);
	free(j.grp_patches);
	l->crc32c = crc32c(0, dst, l->nbytes);
	return 0;
}

int res_region_ok(uint64_t off, uint64_t count, uint64_t size, uint64_t avail)
{
	uint64_t len, end;
	return !__builtin_mul_overflow(count, size, &len) &&
	       !__builtin_add_overflow(off, len, &end) && end <= avail;
}

int res_validate(const struct uw_layout *l, size_t avail, struct uwerr *e)
{
	size_t size = dtype_size((int)l->dtype);
	uint64_t n;
	if (!size)
		return uwerr_set(e, EBADMSG, "layout: unknown dtype %u", l->dtype);
	if (l->nbytes > avail)
		return uwerr_set(e, EBADMSG, "layout: %llu bytes, but only %zu are there",
				 (unsigned long long)l->nbytes, avail);
	if (__builtin_mul_overflow(l->rows, l->cols, &n))
		return uwerr_set(e, EBADMSG, "layout: %llux%llu overflows",
				 (unsigned long long)l->rows, (unsigned long long)l->cols);
	switch (l->format) {
	case UW_FORMAT_RAW: {
		uint64_t bytes;
		if (__builtin_mul_overflow(n, size, &bytes) || bytes != l->nbytes)
			return uwerr_set(e, EBADMSG, "layout: raw %llux%llu %s is not %llu bytes",
					 (unsigned long long)l->rows, (unsigned long long)l->cols,
					 dtype_name((int)l->dtype), (unsigned long long)l->nbytes);
		return 0;
	}
	case UW_FORMAT_R12:
		break;
	case UW_FORMAT_R11:
		return r11_validate(l, e);
	default:        /* 2, R11's first layout (escape bytes), is retired: unknown too */
		return uwerr_set(e, EBADMSG, "layout: unknown format %u", l->format);
	}
	if (l->dtype != UW_DTYPE_BF16)
		return uwerr_set(e, EBADMSG, "layout: R12 of %s (BF16 only)", dtype_name((int)l->dtype));
	if (n == 0 || l->cols >= R12_MAX_COLS)
		return uwerr_set(e, EBADMSG, "layout: R12 of %llux%llu (want rows, cols >= 1, cols < 2^20)",
				 (unsigned long long)l->rows, (unsigned long long)l->cols);
	if (l->mant_stride < l->cols || l->nib_stride < (l->cols + 1) / 2)
		return uwerr_set(e, EBADMSG, "layout: strides %llu, %llu for %llu columns (want >= cols, >= cols/2)",
				 (unsigned long long)l->mant_stride, (unsigned long long)l->nib_stride,
				 (unsigned long long)l->cols);
	if (l->mant_off % RES_PLANE_ALIGN || l->nib_off % RES_PLANE_ALIGN ||
	    l->patch_grp_off % RES_PLANE_ALIGN || l->patch_off % 4)
		return uwerr_set(e, EBADMSG, "layout: misaligned offsets %llu, %llu, %llu, %llu",
				 (unsigned long long)l->mant_off, (unsigned long long)l->nib_off,
				 (unsigned long long)l->patch_grp_off, (unsigned long long)l->patch_off);
	if (l->npatch > n || l->npatch > UINT32_MAX)
		return uwerr_set(e, EBADMSG, "layout: %llu patches for %llu elements",
				 (unsigned long long)l->npatch, (unsigned long long)n);
	if (!res_region_ok(l->mant_off, l->rows, l->mant_stride, l->nbytes) ||
	    !res_region_ok(l->nib_off, l->rows, l->nib_stride, l->nbytes) ||
	    !res_region_ok(l->patch_grp_off, r12_groups(l->rows) + 1, 4, l->nbytes) ||
	    !res_region_ok(l->patch_off, l->npatch, 4, l->nbytes))
		return uwerr_set(e, EBADMSG, "layout: a plane of %llux%llu lies past its %llu bytes",
				 (unsigned long long)l->rows, (unsigned long long)l->cols,
				 (unsigned long long)l->nbytes);
	return 0;
}
