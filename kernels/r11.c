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

/* Where the code bits of element e (0..31) of a unit lie (docs/FORMAT.md,
 * "R11", Tiles): the two low bits at bit lo_shift of word lo_word (A for
 * q = e / 8 even, B odd), the high bit at bit hi_shift of C. */
static inline unsigned lo_word(unsigned e) { return e / 8 % 2; }
static inline unsigned lo_shift(unsigned e) { return 4 * (e % 8) + 2 * (e / 16); }
static inline unsigned hi_shift(unsigned e) { return 4 * (e % 8) + e / 8; }

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

/* Code of element p of a tile whose code words start at w. */
static unsigned code_at(const uint8_t *w, uint32_t units, uint32_t p)
{
	const unsigned u = p / UNIT, e = p % UNIT;
	return (le32_get(w + 4 * ((uint64_t)lo_word(e) * units + u)) >> lo_shift(e) & 3) |
	       (le32_get(w + 4 * (2 * (uint64_t)units + u)) >> hi_shift(e) & 1) << 2;
}

/* The sign|mantissa plane is R12's; the group stride is that of a full
 * group of 16 rows. */
int r11_offsets(struct uw_layout *l)
{
	uint64_t a, code, tiles;
	if (l->rows > UINT32_MAX * (uint64_t)R11_TILE_ROWS || l->cols > UINT32_MAX ||
	    l->npatch > UINT32_MAX)
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
	/* pe, psm and xtab */
	if (__builtin_add_overflow(l->patch_off, 3 * l->npatch + R11_XTAB, &l->nbytes))
		return -EOVERFLOW;
	return 0;
}

int r11_plan(struct uw_layout *l, const uint64_t hist[256])
{
	struct uw_layout r = *l;
	uint64_t covered = 0;
	uint8_t in[256] = {0};
	int outside = 0;
	const int k = exp_palette(hist, R11_CODES, r.palette);  /* palette[8..15] = 0 */
	for (int i = 0; i < k; i++) {
		covered += hist[r.palette[i]];
		in[r.palette[i]] = 1;
	}
	for (int x = 0; x < 256; x++)
		outside += hist[x] && !in[x];
	r.format = UW_FORMAT_R11;
	r.npatch = l->rows * l->cols - covered;
	/* no patches beside palette[7] 255 (Inf, NaN): the format's rule,
	 * from its first fused kernel, which multiplied a patched element at
	 * palette[7]'s value (docs/FORMAT.md, "R11", Exponent table) */
	if (outside > R11_XTAB || (r.npatch && r.palette[R11_PATCHED] == 0xff) ||
	    r11_offsets(&r) < 0)
		return -EOVERFLOW;
	*l = r;
	return 0;
}

int r11_validate(const struct uw_layout *l, struct uwerr *e)
{
	uint64_t n = l->rows * l->cols, code, tiles = r11_tiles(l);  /* res_validate: no overflow */
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
	/* tiles < 2^60 (rows . cols < 2^64, tiles of 2048): 4 (tiles + 1) fits */
	if (l->patch_grp_off > UINT64_MAX - 4 * (tiles + 1) ||
	    l->patch_off != l->patch_grp_off + 4 * (tiles + 1))
		return uwerr_set(e, EBADMSG, "layout: R11 patch_off %llu (want patch_grp_off + 4 * %llu tiles + 4)",
				 (unsigned long long)l->patch_off, (unsigned long long)tiles);
	if (l->npatch > n || l->npatch > UINT32_MAX)
		return uwerr_set(e, EBADMSG, "layout: %llu patches for %llu elements",
				 (unsigned long long)l->npatch, (unsigned long long)n);
	/* r11_plan's rule (the format's: docs/FORMAT.md, "R11", Exponent
	 * table), so that every layout that passes is one r11_plan could make */
	if (l->npatch && l->palette[R11_PATCHED] == 0xff)
		return uwerr_set(e, EBADMSG, "layout: R11 with %llu patches and palette[7] 255 (Inf, NaN)",
				 (unsigned long long)l->npatch);
	/* pe, psm, then xtab: nbytes >= patch_off + 3 npatch + 32 */
	const int ok = code_plane_bytes(l, &code) == 0 &&
		       res_region_ok(l->mant_off, l->rows, l->mant_stride, l->nbytes) &&
		       res_region_ok(l->nib_off, code, 1, l->nbytes) &&
		       res_region_ok(l->patch_grp_off, tiles + 1, 4, l->nbytes) &&
		       l->nbytes >= R11_XTAB &&
		       res_region_ok(l->patch_off, l->npatch, 3, l->nbytes - R11_XTAB);
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
	uint8_t code[256];      /* exponent -> code */
	uint8_t xidx[256];      /* exponent -> its xtab index (0 while counting); 0xff: in the palette */
	uint8_t seen[256];      /* exponents of patched elements (atomic stores) */
	uint32_t *first;        /* per tile: its patches, then the first one's index */
};

static void count_groups(void *ctx, size_t g0, size_t g1)
{
	struct r11_job *j = ctx;
	const uint64_t nk = tiles_across(j->l);
	uint8_t seen[256] = {0};
	for (uint64_t t = g0 * nk; t < g1 * nk; t++) {
		struct r11_tile x;
		uint32_t n = 0;
		r11_tile(j->l, t, &x);
		for (uint32_t i = 0; i < x.h; i++) {
			const uint8_t *p = j->raw + 2 * ((x.r0 + i) * j->l->cols + x.c0);
			for (uint32_t c = 0; c < x.w; c++, p += 2) {
				const uint8_t ex = bf16_exp(p);
				if (j->xidx[ex] != 0xff) {
					n++;
					seen[ex] = 1;
				}
			}
		}
		j->first[t + 1] = n;
	}
	for (int x = 0; x < 256; x++)
		if (seen[x])
			__atomic_store_n(&j->seen[x], 1, __ATOMIC_RELAXED);
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
		uint8_t *pe = j->dst + l->patch_off + 2 * (uint64_t)j->first[t];
		uint8_t *psm = j->dst + l->patch_off + 2 * l->npatch + j->first[t];
		uint32_t pos = 0;
		memset(words, 0, 12 * x.units);
		for (uint32_t i = 0; i < x.h; i++) {
			const uint8_t *p = j->raw + 2 * ((x.r0 + i) * l->cols + x.c0);
			for (uint32_t c = 0; c < x.w; c++, p += 2, pos++) {
				const uint8_t ex = bf16_exp(p), k = j->code[ex];
				const unsigned u = pos / UNIT, el = pos % UNIT;
				words[lo_word(el) * x.units + u] |= (uint32_t)(k & 3) << lo_shift(el);
				words[2 * x.units + u] |= (uint32_t)(k >> 2) << hi_shift(el);
				if (j->xidx[ex] != 0xff) {     /* i, c < 128: ascending in pe & 0x7ff */
					le16_put(pe, (uint16_t)(j->xidx[ex] << R11_PE_X | i << 7 | c));
					pe += 2;
					*psm++ = bf16_sm(p);
				}
			}
		}
		for (uint32_t w = 0; w < 3 * x.units; w++)
			le32_put(j->dst + x.code_off + 4 * w, words[w]);
	}
}

int r11_encode(struct uw_layout *l, const void *raw, void *dst, int nthreads, struct uwerr *e)
{
	struct r11_job j = {.l = l, .raw = raw, .dst = dst};
	uint8_t idx[256], xtab[R11_XTAB] = {0};
	res_palette_index(l->palette, idx);
	for (int x = 0; x < 256; x++) {
		/* palette[8..15] are 0: an exponent found only there is patched */
		j.code[x] = idx[x] < R11_CODES ? idx[x] : R11_PATCHED;
		j.xidx[x] = idx[x] < R11_CODES ? 0xff : 0;
	}
	const uint64_t tiles = r11_tiles(l), ngrp = groups(l);
	if (!(j.first = malloc((tiles + 1) * sizeof(uint32_t))))
		return uwerr_set(e, ENOMEM, "res_encode: patch index of %llu tiles",
				 (unsigned long long)tiles);
	const int threads = nthreads > 0 || l->rows * l->cols >= RES_PAR_MIN ? nthreads : 1;
	par_for(ngrp, threads, count_groups, &j);
	int nx = 0;
	for (int x = 0; x < 256; x++)
		if (j.seen[x]) {
			if (nx < R11_XTAB)
				xtab[nx] = (uint8_t)x;
			j.xidx[x] = (uint8_t)nx++;
		}
	if (nx > R11_XTAB) {
		free(j.first);
		return uwerr_set(e, EINVAL, "res_encode: data has %d exponents outside the R11 palette (at most %d)",
				 nx, R11_XTAB);
	}
	if (res_count_index(j.first, tiles, l->npatch, "R11 palette", e) < 0) {
		free(j.first);
		return -EINVAL;
	}
	uint64_t code;
	code_plane_bytes(l, &code);     /* res_layout_check: it fits */
	res_put_index(l, dst, l->nib_off + code, j.first, tiles);
	par_for(ngrp, threads, write_groups, &j);
	memcpy((uint8_t *)dst + l->patch_off + 3 * l->npatch, xtab, R11_XTAB);
	free(j.first);
	l->crc32c = crc32c(0, dst, l->nbytes);
	return 0;
}

/* ---- decoder ---- */

/* Tile x (index t) into o, the rows of [r0, r1) only (o is row r0); its
 * patches are checked whichever rows are asked for. */
static int decode_tile(const struct uw_layout *l, const uint8_t *b, uint64_t t,
		       const struct r11_tile *x, uint64_t r0, uint64_t r1, uint8_t *o,
		       struct uwerr *e)
{
	const uint32_t f0 = le32_get(b + l->patch_grp_off + 4 * t);
	const uint32_t f1 = le32_get(b + l->patch_grp_off + 4 * t + 4);
	const uint8_t *code = b + x->code_off, *pe = b + l->patch_off;
	const uint8_t *psm = pe + 2 * l->npatch, *xtab = psm + l->npatch;
	const unsigned long long tl = t;
	if (f0 > f1 || f1 > l->npatch)
		return uwerr_set(e, EBADMSG, "R11 tile %llu: patches [%u, %u) of %llu",
				 tl, f0, f1, (unsigned long long)l->npatch);
	for (uint32_t i = 0, pos = 0; i < x->h; i++) {
		const uint64_t r = x->r0 + i;
		if (r < r0 || r >= r1) {
			pos += x->w;
			continue;
		}
		const uint8_t *mant = b + l->mant_off + r * l->mant_stride + x->c0;
		uint8_t *row = o + 2 * ((r - r0) * l->cols + x->c0);
		for (uint32_t c = 0; c < x->w; c++, pos++)
			bf16_put(row + 2 * c, l->palette[code_at(code, x->units, pos)], mant[c]);
	}
	/* each patch over its element's palette[7] */
	for (uint32_t k = f0, prev = 0; k < f1; k++) {
		const uint16_t v = le16_get(pe + 2 * (uint64_t)k);
		const uint32_t i = (v & R11_PE_POS) >> 7, c = v & 127;
		if (k > f0 && (v & R11_PE_POS) <= prev)
			return uwerr_set(e, EBADMSG, "R11 tile %llu: patch %u at (%u, %u) not after the one before it",
					 tl, k, i, c);
		prev = v & R11_PE_POS;
		if (i >= x->h || c >= x->w)
			return uwerr_set(e, EBADMSG, "R11 tile %llu: patch %u at (%u, %u), outside the tile's %ux%u",
					 tl, k, i, c, x->h, x->w);
		const unsigned cd = code_at(code, x->units, i * x->w + c);
		const uint8_t sm = b[l->mant_off + (x->r0 + i) * l->mant_stride + x->c0 + c];
		if (cd != R11_PATCHED)
			return uwerr_set(e, EBADMSG, "R11 tile %llu: patch %u at (%u, %u) on an element of code %u (want %u)",
					 tl, k, i, c, cd, R11_PATCHED);
		if (psm[k] != sm)
			return uwerr_set(e, EBADMSG, "R11 tile %llu: patch %u at (%u, %u) has byte %02x, the plane %02x",
					 tl, k, i, c, psm[k], sm);
		if (x->r0 + i >= r0 && x->r0 + i < r1)
			bf16_put(o + 2 * ((x->r0 + i - r0) * l->cols + x->c0 + c), xtab[v >> R11_PE_X], sm);
	}
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
