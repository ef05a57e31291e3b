/* r11: the R11 resident format (docs/FORMAT.md, "R11", format 3): its
 * geometry and its CPU reference encoder and decoder, which resident.c and
 * ref_decode.c dispatch to. 3-bit exponent codes in tiles of 16 rows x 128
 * columns into palette[0..7]; an element whose exponent is in none of them
 * has code 7 and a 3-byte patch (position, sign|mantissa byte, index into
 * a 32-entry exponent table). */
#ifndef UW_KERNELS_R11_H
#define UW_KERNELS_R11_H

#include "kernels/resident.h"

#define R11_TILE_ROWS 16
#define R11_TILE_COLS 128
#define R11_CODES 8           /* palette[0..7], one a code */
#define R11_PATCHED 7         /* the code of a patched element */
#define R11_XTAB 32           /* entries of the patches' exponent table */
#define R11_PE_POS 0x7ffu     /* a patch's i << 7 | j in its tile */
#define R11_PE_X 11           /* pe >> R11_PE_X: the patch's xtab index */

/* The offsets, strides and nbytes of an R11 layout from its rows, cols
 * and npatch; -EOVERFLOW if they do not fit. */
int r11_offsets(struct uw_layout *l);

/* Turn *l (RAW, from res_plan_shape) into R11 for the exponent histogram
 * hist; 0, or -EOVERFLOW (then *l is unchanged) when it does not fit or
 * more than R11_XTAB exponents lie outside the palette. */
int r11_plan(struct uw_layout *l, const uint64_t hist[256]);

/* res_encode_mt's R11 part: *l as r11_plan made it (res_layout_check). */
int r11_encode(struct uw_layout *l, const void *raw, void *dst, int nthreads, struct uwerr *e);

/* res_validate's R11 part: geometry and regions against l->nbytes. */
int r11_validate(const struct uw_layout *l, struct uwerr *e);

/* res_decode_rows' R11 part. Each tile touched is checked: its patch
 * range inside [0, npatch], its patches ascending, inside the tile, on
 * elements of code 7 and with the plane's sign|mantissa bytes. */
int r11_decode_rows(const struct uw_layout *l, const void *base, uint64_t r0, uint64_t r1,
		    void *dst, struct uwerr *e);

#endif
