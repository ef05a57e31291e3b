/* resident: the resident formats (client/unweight.h; docs/FORMAT.md,
 * "Resident formats") and their CPU reference twins. The CUDA kernels are
 * checked against these. */
#ifndef UW_KERNELS_RESIDENT_H
#define UW_KERNELS_RESIDENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "unweight.h"

#define RES_ALIGN 256          /* tensor base alignment, bytes */
#define RES_PLANE_ALIGN 16     /* R12 and R11 plane offsets: 16-byte loads */
#define RES_ROW_ALIGN 16       /* R12 row strides of padded (wide) rows */
#define RES_PAD_COLS 4096      /* R12 rows this wide or wider are padded to RES_ROW_ALIGN */
#define RES_PATCH_GROUP 16     /* R12 rows sharing one patch index entry */
#define RES_PAR_MIN (1u << 20) /* elements below which threads cost more than they save */

/* What a BF16 matrix is kept as: RES_PREFER_SPEED, R12 (the fastest fused
 * kernels read it); RES_PREFER_SIZE, the smaller of R12 and R11 (about
 * 0.6-0.7 bits a weight less on trained weights; R11 applies to at most 40
 * distinct exponents). */
enum res_prefer { RES_PREFER_SPEED = 0, RES_PREFER_SIZE = 1 };

/* Plan the resident layout of one tensor: for BF16 with ndim >= 2, the
 * format prefer names (above) when it is smaller than raw, else RAW. Fills
 * every field of *l except crc32c; l->nbytes is what res_encode will
 * write. */
int res_plan(int dtype, int ndim, const uint64_t *shape, const void *raw,
	     size_t raw_bytes, int prefer, struct uw_layout *l, struct uwerr *e);

/* res_plan in two steps, for a histogram counted elsewhere (the GPU):
 * res_plan_shape fills *l as RAW and returns 1 when R12 or R11 may pay
 * (then the exponent histogram is wanted), 0 when RAW is final, or a
 * negative errno; res_plan_hist turns *l into what res_plan would. */
int res_plan_shape(int dtype, int ndim, const uint64_t *shape, size_t raw_bytes,
		   struct uw_layout *l, struct uwerr *e);
void res_plan_hist(struct uw_layout *l, const uint64_t hist[256], int prefer);

/* The encoders' counts of exponents outside the palette: cnt[1..n] (one
 * per group of R12 rows or R11 tile) become the index, cnt[k] = the sum of
 * those before k (cnt[0] = 0), which must total want (else -EINVAL, what
 * names the palette). */
int res_count_index(uint32_t *cnt, uint64_t n, uint64_t want, const char *what,
		    struct uwerr *e);

/* The rest of an R12 or R11 encoding but its planes: zeros in the gaps
 * after the sign|mantissa plane and after the index (code) plane, which
 * ends at plane_end, and the index idx[0..n] at patch_grp_off. */
void res_put_index(const struct uw_layout *l, uint8_t *dst, uint64_t plane_end,
		   const uint32_t *idx, uint64_t n);

/* The exponent -> palette index map of R12 and R11 encoding (0xff: in no
 * entry); the first of repeated palette entries wins. */
void res_palette_index(const uint8_t palette[UW_PALETTE_SIZE], uint8_t idx[256]);
/* An R12 or R11 layout is the one res_plan makes for raw_bytes of data
 * (-EINVAL): then every gap is known. */
int res_layout_check(const struct uw_layout *l, size_t raw_bytes, struct uwerr *e);

/* What the R12 and R11 geometries share (resident.c, r11.c): rounding up
 * (wraps on overflow: the callers compare the result), the sign|mantissa
 * plane's row stride for cols, and [off, off + count * size) inside
 * [0, avail), overflow-checked. */
static inline uint64_t res_round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}
uint64_t res_mant_stride(uint64_t cols);
int res_region_ok(uint64_t off, uint64_t count, uint64_t size, uint64_t avail);

/* Write the resident bytes of raw into dst (l->nbytes, from res_plan), and
 * set l->crc32c. Padding bytes are zero. */
int res_encode(struct uw_layout *l, const void *raw, size_t raw_bytes,
	       void *dst, struct uwerr *e);

/* res_encode on nthreads threads (<= 0: one per CPU for large tensors, one
 * for small ones, which is what res_encode does). A caller that already
 * runs tensors in parallel passes 1. */
int res_encode_mt(struct uw_layout *l, const void *raw, size_t raw_bytes,
		  void *dst, int nthreads, struct uwerr *e);

/* Check a layout received from elsewhere (the wire) against the bytes it
 * claims: every offset and count inside nbytes, strides large enough. */
int res_validate(const struct uw_layout *l, size_t avail, struct uwerr *e);

/* Reference decode: the exact original bytes (raw_bytes of them). */
int ref_decode(const struct uw_layout *l, const void *base, void *out,
	       size_t out_bytes, struct uwerr *e);

/* ref_decode on nthreads threads, as res_encode_mt. */
int ref_decode_mt(const struct uw_layout *l, const void *base, void *out,
		  size_t out_bytes, int nthreads, struct uwerr *e);

/* Decode rows [r0, r1) of a validated BF16 layout (RAW, R12 or R11) into
 * dst: (r1 - r0) * cols little-endian BF16 values. R12 and R11 patch lists
 * are checked as read: a bad one is -EBADMSG. */
int res_decode_rows(const struct uw_layout *l, const void *base, uint64_t r0,
		    uint64_t r1, void *dst, struct uwerr *e);

/* Reference y = x . W^T: x [batch][cols] BF16, y [batch][rows] BF16
 * (round to nearest even), float32 accumulation in column order.
 * nthreads <= 0: one per CPU. */
int ref_matmul(const struct uw_layout *l, const void *base, const uint16_t *x,
	       size_t batch, uint16_t *y, int nthreads, struct uwerr *e);
/* The same sums, y float32 [batch][rows] as accumulated (not rounded). */
int ref_matmul_f32(const struct uw_layout *l, const void *base, const uint16_t *x,
		   size_t batch, float *y, int nthreads, struct uwerr *e);

/* BF16 <-> float helpers shared by the twins, tests and examples. */
static inline float bf16_to_f32(uint16_t h)
{
	union { uint32_t u; float f; } v = { .u = (uint32_t)h << 16 };
	return v.f;
}
static inline uint16_t f32_to_bf16(float f)
{
	union { uint32_t u; float f; } v = { .f = f };
	if ((v.u & 0x7fffffffu) > 0x7f800000u)    /* NaN: keep it quiet */
		return (uint16_t)((v.u >> 16) | 0x40);
	v.u += 0x7fffu + ((v.u >> 16) & 1);
	return (uint16_t)(v.u >> 16);
}

#endif
