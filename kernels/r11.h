/* r11: the R11 resident format (docs/FORMAT.md, "R11"): its geometry and
 * its CPU reference encoder and decoder, which resident.c and ref_decode.c
 * dispatch to. 3-bit exponent codes in tiles of 16 rows x 128 columns,
 * code 7 an escape to an exponent byte kept beside them. */
#ifndef UW_KERNELS_R11_H
#define UW_KERNELS_R11_H

#include "kernels/resident.h"

#define R11_TILE_ROWS 16
#define R11_TILE_COLS 128
#define R11_CODES 7           /* palette entries; code R11_ESC escapes */
#define R11_ESC 7
#define R11_HINTS 8           /* palette[8..15]: the escapes' most frequent exponents */

/* The offsets, strides and nbytes of an R11 layout from its rows, cols
 * and npatch; -EOVERFLOW if they do not fit. */
int r11_offsets(struct uw_layout *l);

/* Turn *l (RAW, from res_plan_shape) into R11 for the exponent histogram
 * hist; 0, or -EOVERFLOW (then *l is unchanged) when it does not fit. */
int r11_plan(struct uw_layout *l, const uint64_t hist[256]);

/* res_encode_mt's R11 part: *l as r11_plan made it (res_layout_check). */
int r11_encode(struct uw_layout *l, const void *raw, void *dst, int nthreads, struct uwerr *e);

/* res_validate's R11 part: geometry and regions against l->nbytes. */
int r11_validate(const struct uw_layout *l, struct uwerr *e);

/* res_decode_rows' R11 part. Each tile touched is checked: its escape
 * range inside [0, npatch) and exactly as long as its escape codes. */
int r11_decode_rows(const struct uw_layout *l, const void *base, uint64_t r0, uint64_t r1,
		    void *dst, struct uwerr *e);

#endif
