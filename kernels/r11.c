/* r11: geometry, reference encoder and decoder of the R11 resident format
 * (docs/FORMAT.md, "R11"). */
#include "kernels/r11.h"

#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "common/le.h"
#include "common/parallel.h"
#include "format/bf16.h"
#include "format/dtype.h"
#include "format/restcodec.h"

#define UNIT 32                 /* elements of one code word */
#define TILE_BYTES(h) (48u * (h))  /* code words of a full-width tile of h rows */

static inline uint64_t div_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

static uint64_t groups(const struct uw_layout *l)
{
	return div_up(l->rows, R11_TILE_ROWS);
}

static uint64_t tiles_across(const struct uw_layout *l)
{
	return div_up(l->cols, R11_TILE_COLS);
}

/* Tiles of a 2-D layout: ceil(rows / 16) groups x ceil(cols / 128). */
static uint64_t r11_tiles(const struct uw_layout *l)
{
	return groups(l) * tiles_across(l);
}

/* Bytes of the code words of a group of h rows (every tile full width but
 * the last). */
static uint64_t group_code_bytes(const struct uw_layout *l, uint64_t h)
{
	const uint64_t nk = tiles_across(l), wl = l->cols - (nk - 1) * R11_TILE_COLS;
	return (nk - 1) * TILE_BYTES(h) + 12 * div_up(h * wl, UNIT);
}

/* Bytes of the whole code plane (the last group may be short); -EOVERFLOW
 * if they do not fit. */
static int code_plane_bytes(const struct uw_layout *l, uint64_t *n)
{
	const uint64_t hl = l->rows - (groups(l) - 1) * R11_TILE_ROWS;
	return __builtin_mul_overflow(groups(l) - 1, l->nib_stride, n) ||
	       __builtin_add_overflow(*n, group_code_bytes(l, hl), n) ? -EOVERFLOW : 0;
}

/* One tile: its first row and column, its height and width, its 32-element
 * code units and where its code words start (from the base). */
struct r11_tile {
	uint64_t r0, c0;
	uint32_t h, w, units;
	uint64_t code_off;
};

static void r11_tile(const struct uw_layout *l, uint64_t t, struct r11_tile *x)
{
	const uint64_t nk = tiles_across(l), g = t / nk, k = t % nk;
	x->r0 = g * R11_TILE_ROWS;
	x->c0 = k * R11_TILE_COLS;
	x->h = (uint32_t)(l->rows - x->r0 < R11_TILE_ROWS ? l->rows - x->r0 : R11_TILE_ROWS);
	x->w = (uint32_t)(l->cols - x->c0 < R11_TILE_COLS ? l->cols - x->c0 : R11_TILE_COLS);
	x->units = (uint32_t)div_up((uint64_t)x->h * x->w, UNIT);
	x->code_off = l->nib_off + g * l->nib_stride + k * TILE_BYTES(x->h);
}

/* The sign|mantissa plane is R12's; the group stride is that of a full
 * group of 16 rows. */
int r11_offsets(struct uw_layout *l)
{
	uint64_t a, code, tiles;
	if (l->rows > UINT32_MAX * (uint64_t)R11_TILE_ROWS || l->cols > UINT32_MAX)
		return -EOVERFLOW;
	l->mant_off = 0;
	l->mant_stride = res_mant_stride(l->cols);
	l->nib_stride = group_code_bytes(l, R11_TILE_ROWS);
	if (__builtin_mul_overflow(l->rows, l->mant_stride, &a))
		return -EOVERFLOW;
	l->nib_off = res_round_up(a, RES_PLANE_ALIGN);
	if (l->nib_off < a || code_plane_bytes(l, &code) < 0 ||
	    __builtin_add_overflow(code, l->nib_off, &a))
		return -EOVERFLOW;
	l->patch_grp_off = res_round_up(a, RES_PLANE_ALIGN);
	tiles = r11_tiles(l);
	if (l->patch_grp_off < a || tiles >= (UINT64_MAX - l->patch_grp_off) / 4)
		return -EOVERFLOW;
	l->patch_off = l->patch_grp_off + 4 * (tiles + 1);
	if (__builtin_add_overflow(l->patch_off, l->npatch, &l->nbytes))
		return -EOVERFLOW;
	return 0;
}

int r11_plan(struct uw_layout *l, const uint64_t hist[256])
{
	struct uw_layout r = *l;
	uint64_t covered = 0, rest[256];
	uint8_t hint[UW_PALETTE_SIZE];
	const int k = exp_palette(hist, R11_CODES, r.palette);
	memcpy(rest, hist, sizeof(rest));
	for (int i = 0; i < k; i++) {
		covered += hist[r.palette[i]];
		rest[r.palette[i]] = 0;
	}
	/* the escapes' most frequent exponents, for the fused kernel */
	exp_palette(rest, R11_HINTS, hint);
	memcpy(r.palette + R11_ESC + 1, hint, R11_HINTS);
	r.format = UW_FORMAT_R11;
	r.npatch = l->rows * l->cols - covered;
	if (r.npatch > UINT32_MAX || r11_offsets(&r) < 0)
		return -EOVERFLOW;
	*l = r;
	return 0;
}

int r11_validate(const struct uw_layout *l, struct uwerr *e)
{
	uint64_t n = l->rows * l->cols, code;  /* res_validate: no overflow */
	if (l->dtype != UW_DTYPE_BF16)
		return uwerr_set(e, EBADMSG, "layout: R11 of %s (BF16 only)", dtype_name((int)l->dtype));
	if (n == 0 || l->rows > UINT32_MAX * (uint64_t)R11_TILE_ROWS || l->cols > UINT32_MAX)
		return uwerr_set(e, EBADMSG, "layout: R11 of %llux%llu (want rows, cols >= 1, cols < 2^32)",
				 (unsigned long long)l->rows, (unsigned long long)l->cols);
	if (l->mant_stride < l->cols || l->nib_stride != group_code_bytes(l, R11_TILE_ROWS))
		return uwerr_set(e, EBADMSG, "layout: R11 strides %llu, %llu for %llu columns (want >= cols, %llu)",
				 (unsigned long long)l->mant_stride, (unsigned long long)l->nib_stride,
				 (unsigned long long)l->cols,
				 (unsigned long long)group_code_bytes(l, R11_TILE_ROWS));
	if (l->mant_off % RES_PLANE_ALIGN || l->nib_off % RES_PLANE_ALIGN ||
	    l->patch_grp_off % RES_PLANE_ALIGN)
		return uwerr_set(e, EBADMSG, "layout: misaligned R11 offsets %llu, %llu, %llu",
				 (unsigned long long)l->mant_off, (unsigned long long)l->nib_off,
				 (unsigned long long)l->patch_grp_off);
	if (l->npatch > n || l->npatch > UINT32_MAX)
		return uwerr_set(e, EBADMSG, "layout: %llu escapes for %llu elements",
				 (unsigned long long)l->npatch, (unsigned long long)n);
	const int ok = code_plane_bytes(l, &code) == 0 && r11_tiles(l) < UINT64_MAX &&
		       res_region_ok(l->mant_off, l->rows, l->mant_stride, l->nbytes) &&
		       res_region_ok(l->nib_off, code, 1, l->nbytes) &&
		       res_region_ok(l->patch_grp_off, r11_tiles(l) + 1, 4, l->nbytes) &&
		       res_region_ok(l->patch_off, l->npatch, 1, l->nbytes);
	if (!ok)
		return uwerr_set(e, EBADMSG, "layout: a plane of R11 %llux%llu lies past its %llu bytes",
				 (unsigned long long)l->rows, (unsigned long long)l->cols,
				 (unsigned long long)l->nbytes);
	return 0;
}

/* ---- encoder ---- */

struct r11_job {
	const struct uw_layout *l;
	const uint8_t *raw;
	uint8_t *dst;
	uint8_t code[256];      /* exponent -> code, R11_ESC for escapes */
	uint32_t *first;        /* per tile: its escapes, then the first one's index */
};

static void count_groups(void *ctx, size_t g0, size_t g1)
{
	struct r11_job *j = ctx;
	const uint64_t nk = tiles_across(j->l);
	for (uint64_t t = g0 * nk; t < g1 * nk; t++) {
		struct r11_tile x;
		uint32_t n = 0;
		r11_tile(j->l, t, &x);
		for (uint32_t i = 0; i < x.h; i++) {
			const uint8_t *p = j->raw + 2 * ((x.r0 + i) * j->l->cols + x.c0);
			for (uint32_t c = 0; c < x.w; c++, p += 2)
				n += j->code[bf16_exp(p)] == R11_ESC;
		}
		j->first[t + 1] = n;
	}
}

static void write_groups(void *ctx, size_t g0, size_t g1)
{
	struct r11_job *j = ctx;
	const struct uw_layout *l = j->l;
	const uint64_t nk = tiles_across(l);
	uint32_t words[3 * R11_TILE_ROWS * R11_TILE_COLS / UNIT];
	for (uint64_t r = g0 * R11_TILE_ROWS; r < l->rows && r < g1 * R11_TILE_ROWS; r++) {
		uint8_t *mant = j->dst + l->mant_off + r * l->mant_stride;
		const uint8_t *p = j->raw + 2 * r * l->cols;
		for (uint64_t c = 0; c < l->cols; c++, p += 2)
			mant[c] = bf16_sm(p);
		memset(mant + l->cols, 0, l->mant_stride - l->cols);
	}
	for (uint64_t t = g0 * nk; t < g1 * nk; t++) {
		struct r11_tile x;
		r11_tile(l, t, &x);
		uint8_t *esc = j->dst + l->patch_off + j->first[t];
		uint32_t pos = 0;
		memset(words, 0, 12 * x.units);
		for (uint32_t i = 0; i < x.h; i++) {
			const uint8_t *p = j->raw + 2 * ((x.r0 + i) * l->cols + x.c0);
			for (uint32_t c = 0; c < x.w; c++, p += 2, pos++) {
				const uint8_t ex = bf16_exp(p), k = j->code[ex];
				for (int b = 0; b < 3; b++)
					words[b * x.units + pos / UNIT] |= (uint32_t)(k >> b & 1) << pos % UNIT;
				if (k == R11_ESC)
					*esc++ = ex;
			}
		}
		for (uint32_t w = 0; w < 3 * x.units; w++)
			le32_put(j->dst + x.code_off + 4 * w, words[w]);
	}
}

int r11_encode(struct uw_layout *l, const void *raw, void *dst, int nthreads, struct uwerr *e)
{
	struct r11_job j = {.l = l, .raw = raw, .dst = dst};
	uint8_t idx[256];
	res_palette_index(l->palette, idx);
	for (int x = 0; x < 256; x++)
		j.code[x] = idx[x] < R11_CODES ? idx[x] : R11_ESC;
	const uint64_t tiles = r11_tiles(l), ngrp = groups(l);
	if (!(j.first = malloc((tiles + 1) * sizeof(uint32_t))))
		return uwerr_set(e, ENOMEM, "res_encode: escape index of %llu tiles",
				 (unsigned long long)tiles);
	const int threads = nthreads > 0 || l->rows * l->cols >= RES_PAR_MIN ? nthreads : 1;
	par_for(ngrp, threads, count_groups, &j);
	if (res_count_index(j.first, tiles, l->npatch, "R11 palette", e) < 0) {
		free(j.first);
		return -EINVAL;
	}
	uint64_t code;
	code_plane_bytes(l, &code);     /* res_layout_check: it fits */
	res_put_index(l, dst, l->nib_off + code, j.first, tiles);
	par_for(ngrp, threads, write_groups, &j);
	free(j.first);
	l->crc32c = crc32c(0, dst, l->nbytes);
	return 0;
}

/* ---- decoder ---- */

/* Tile x (index t) into o, the rows of [r0, r1) only (o is row r0). */
static int decode_tile(const struct uw_layout *l, const uint8_t *b, uint64_t t,
		       const struct r11_tile *x, uint64_t r0, uint64_t r1, uint8_t *o,
		       struct uwerr *e)
{
	const uint32_t f0 = le32_get(b + l->patch_grp_off + 4 * t);
	const uint32_t f1 = le32_get(b + l->patch_grp_off + 4 * t + 4);
	const uint8_t *code = b + x->code_off, *esc = b + l->patch_off;
	uint32_t at = f0, pos = 0;
	if (f0 > f1 || f1 > l->npatch)
		return uwerr_set(e, EBADMSG, "R11 tile %llu: escapes [%u, %u) of %llu",
				 (unsigned long long)t, f0, f1, (unsigned long long)l->npatch);
	for (uint32_t i = 0; i < x->h; i++) {
		const uint64_t r = x->r0 + i;
		const uint8_t *mant = b + l->mant_off + r * l->mant_stride + x->c0;
		uint8_t *row = r >= r0 && r < r1 ? o + 2 * ((r - r0) * l->cols + x->c0) : NULL;
		for (uint32_t c = 0; c < x->w; c++, pos++) {
			const uint64_t w = 4 * (uint64_t)(pos / UNIT), s = pos % UNIT;
			const unsigned k = (le32_get(code + w) >> s & 1) |
					   (le32_get(code + 4 * x->units + w) >> s & 1) << 1 |
					   (le32_get(code + 8 * x->units + w) >> s & 1) << 2;
			uint8_t ex = l->palette[k];
			if (k == R11_ESC) {
				if (at == f1)
					return uwerr_set(e, EBADMSG, "R11 tile %llu: more escape codes than its %u escapes",
							 (unsigned long long)t, f1 - f0);
				ex = esc[at++];
			}
			if (row)
				bf16_put(row + 2 * c, ex, mant[c]);
		}
	}
	if (at != f1)
		return uwerr_set(e, EBADMSG, "R11 tile %llu: %u escape codes for %u escapes",
				 (unsigned long long)t, at - f0, f1 - f0);
	return 0;
}

int r11_decode_rows(const struct uw_layout *l, const void *base, uint64_t r0, uint64_t r1,
		    void *dst, struct uwerr *e)
{
	const uint64_t nk = tiles_across(l);
	for (uint64_t g = r0 / R11_TILE_ROWS; g * R11_TILE_ROWS < r1; g++)
		for (uint64_t t = g * nk; t < (g + 1) * nk; t++) {
			struct r11_tile x;
			r11_tile(l, t, &x);
			int rc = decode_tile(l, base, t, &x, r0, r1, dst, e);
			if (rc < 0)
				return rc;
		}
	return 0;
}
