/* resident: a resident layout as an ATTACH reply carries it (the wire
 * order of proto/PROTOCOL.md: format, dtype, rows, cols, nbytes, crc32c,
 * palette, then the seven R12 fields, 108 bytes), followed by the bytes it
 * claims to describe. The client's path: res_validate against the bytes
 * there, then every reference reader (ref_decode, res_decode_rows,
 * ref_matmul), which must stay inside those bytes. What decodes must plan,
 * encode and decode back to the same tensor, for speed (R12) and size
 * (R11). */
#include "config.h"

#include <string.h>

#include "common/le.h"
#include "kernels/resident.h"
#include "tests/fuzz/fuzz.h"

#define LAYOUT_WIRE (4 + 4 + 8 * 3 + 4 + UW_PALETTE_SIZE + 8 * 7)

static void get_layout(const uint8_t *p, struct uw_layout *l)
{
	memset(l, 0, sizeof(*l));
	l->format = le32_get(p);
	l->dtype = le32_get(p + 4);
	l->rows = le64_get(p + 8);
	l->cols = le64_get(p + 16);
	l->nbytes = le64_get(p + 24);
	l->crc32c = le32_get(p + 32);
	memcpy(l->palette, p + 36, UW_PALETTE_SIZE);
	uint64_t *r12[] = { &l->mant_off, &l->mant_stride, &l->nib_off, &l->nib_stride,
			    &l->patch_grp_off, &l->patch_off, &l->npatch };
	for (int i = 0; i < 7; i++)
		*r12[i] = le64_get(p + 36 + UW_PALETTE_SIZE + 8 * i);
}

/* Plan, encode and decode again the tensor just decoded: the same bytes. */
static void round_trip(const struct uw_layout *l, const uint8_t *raw, size_t raw_bytes,
		       int prefer)
{
	uint64_t shape[2] = { l->rows, l->cols };
	struct uw_layout p;
	struct uwerr e = {0};
	FUZZ_CHECK(res_plan((int)l->dtype, 2, shape, raw, raw_bytes, prefer, &p, &e) == 0);
	if (p.nbytes > FUZZ_MAX_ALLOC)
		return;
	uint8_t *res = malloc(p.nbytes ? p.nbytes : 1), *back = malloc(raw_bytes ? raw_bytes : 1);
	FUZZ_CHECK(res && back);
	FUZZ_CHECK(res_encode_mt(&p, raw, raw_bytes, res, 1, &e) == 0);
	FUZZ_CHECK(ref_decode_mt(&p, res, back, raw_bytes, 1, &e) == 0);
	FUZZ_CHECK(memcmp(raw, back, raw_bytes) == 0);
	free(back);
	free(res);
}

int fuzz_resident(const uint8_t *data, size_t size)
{
	struct uw_layout l;
	struct uwerr e = {0};
	if (size < LAYOUT_WIRE)
		return 0;
	get_layout(data, &l);
	const uint8_t *base = data + LAYOUT_WIRE;
	size_t avail = size - LAYOUT_WIRE;
	if (res_validate(&l, avail, &e) < 0) {
		FUZZ_CHECK(e.code == EBADMSG && e.msg[0]);
		return 0;
	}
	/* Validated: rows x cols x dtype size does not overflow. */
	uint64_t raw_bytes = l.format == UW_FORMAT_RAW ? l.nbytes : 2 * l.rows * l.cols;
	if (raw_bytes > FUZZ_MAX_ALLOC || l.cols > FUZZ_MAX_ALLOC)
		return 0;
	uint8_t *raw = malloc(raw_bytes ? raw_bytes : 1);
	FUZZ_CHECK(raw);
	int rd = ref_decode_mt(&l, base, raw, raw_bytes, 1, &e);
	FUZZ_CHECK(rd == 0 || (e.code == EBADMSG && l.format != UW_FORMAT_RAW));

	/* rows is bounded by the bytes unless cols is 0; then the readers
	 * loop over rows of nothing, which only costs time. */
	if (l.dtype == UW_DTYPE_BF16 && l.rows && (l.cols || l.rows <= 4096)) {
		/* The last rows alone, as a matmul worker decodes them. */
		uint64_t r0 = l.rows > 3 ? l.rows - 3 : 0;
		uint8_t *part = malloc(2 * (l.rows - r0) * l.cols + 1);
		FUZZ_CHECK(part);
		int rp = res_decode_rows(&l, base, r0, l.rows, part, &e);
		if (rd == 0)
			FUZZ_CHECK(rp == 0 && memcmp(part, raw + 2 * r0 * l.cols,
						     2 * (l.rows - r0) * l.cols) == 0);
		free(part);

		uint16_t *x = malloc(2 * l.cols + 2);
		float *y = malloc(sizeof(float) * l.rows);
		FUZZ_CHECK(x && y);
		for (uint64_t c = 0; c < l.cols; c++)
			x[c] = 0x3f80;          /* 1.0 */
		FUZZ_CHECK((ref_matmul_f32(&l, base, x, 1, y, 1, &e) == 0) == (rd == 0));
		free(y);
		free(x);
	}
	if (rd == 0) {
		round_trip(&l, raw, raw_bytes, RES_PREFER_SPEED);
		round_trip(&l, raw, raw_bytes, RES_PREFER_SIZE);
	}
	free(raw);
	return 0;
}

FUZZ_ENTRY(resident)
