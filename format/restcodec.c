/* restcodec: the REST_RAW, REST_EXPHUF and REST_ZSTD payloads of one tensor
 * (byte-level spec: docs/FORMAT.md, "Tensor payloads"). */
#include "format/restcodec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "common/le.h"
#include "common/parallel.h"
#include "format/bf16.h"
#include "format/dtype.h"
#include "format/huffman.h"

#define EXPHUF_VERSION 1
#define EXPHUF_HDR 12                   /* version, flags, nsym, n */
#define EXPHUF_CHUNK EXPHUF_CHUNK_ELEMS /* elements per independently coded chunk */
#define REST_ZSTD_LEVEL 3
#define REST_ZSTD_MT_MIN (4u << 20)     /* zstd workers only pay above this */

static inline uint64_t get_be64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(p, &v, 8);
}

static void *alloc_bytes(size_t n)
{
	return malloc(n ? n : 1);
}

/* ---- REST_EXPHUF ---- */

struct exphuf_job {
	const uint8_t *raw;             /* elements, 2 bytes each */
	uint8_t *out;                   /* raw to decode into */
	size_t n, nchunks;
	uint32_t (*hist)[HUF_SYMS];     /* per chunk (encode) */
	const uint8_t *sm;              /* sign|mantissa plane (decode) */
	uint8_t *sm_out;                /* (encode) */
	const uint8_t *bits;            /* start of the bitstreams */
	uint8_t *bits_out;
	const uint64_t *start;          /* byte offset of each chunk's bitstream, nchunks + 1 */
	const struct huf_enc *enc;
	const struct huf_dec *dec;
	const uint32_t *pair;           /* decode_pairs() of dec */
	struct par_err err;
};

static size_t chunk_count(const struct exphuf_job *j, size_t c)
{
	size_t first = c * EXPHUF_CHUNK;
	return j->n - first < EXPHUF_CHUNK ? j->n - first : EXPHUF_CHUNK;
}

static void exphuf_hist(void *ctx, size_t c0, size_t c1)
{
	struct exphuf_job *j = ctx;
	for (size_t c = c0; c < c1; c++) {
		const uint8_t *p = j->raw + 2 * c * EXPHUF_CHUNK;
		uint32_t *h = j->hist[c];
		memset(h, 0, sizeof(j->hist[c]));
		for (size_t i = 0, cnt = chunk_count(j, c); i < cnt; i++)
			h[bf16_exp(p + 2 * i)]++;
	}
}

/* Append element p's exponent code to the left-aligned bit container
 * (acc, nacc bits), and its sign|mantissa byte to *sm. */
static inline void put_one(const uint16_t *tab, const uint8_t *p, uint8_t *sm,
			   uint64_t *acc, unsigned *nacc)
{
	uint16_t t = tab[bf16_exp(p)];
	*sm = bf16_sm(p);
	*nacc += t & 15;
	*acc |= (uint64_t)(t >> 4) << (64 - *nacc);  /* lengths are >= 1 here */
}

/* Codes go MSB-first: the first code's first bit is bit 7 of byte 0. The
 * bit container is left-aligned, so its low bits are always zero padding. */
static void exphuf_put_chunks(void *ctx, size_t c0, size_t c1)
{
	struct exphuf_job *j = ctx;
	uint16_t tab[HUF_SYMS];         /* code << 4 | length */
	for (int s = 0; s < HUF_SYMS; s++)
		tab[s] = (uint16_t)(j->enc->code[s] << 4 | j->enc->len[s]);
	for (size_t c = c0; c < c1; c++) {
		const uint8_t *p = j->raw + 2 * c * EXPHUF_CHUNK;
		uint8_t *sm = j->sm_out + c * EXPHUF_CHUNK;
		uint8_t *o = j->bits_out + j->start[c], *end = j->bits_out + j->start[c + 1];
		size_t i = 0, cnt = chunk_count(j, c);
		uint64_t acc = 0;
		unsigned nacc = 0;
		if (end == o) {         /* a lone symbol: no bits */
			for (; i < cnt; i++, p += 2)
				sm[i] = bf16_sm(p);
			continue;
		}
		/* Four codes (<= 48 bits) on top of < 8 pending, then one
		 * 8-byte store; the bytes past the pending ones are rewritten
		 * by the next store, so stay 8 bytes inside this chunk. */
		while (i + 4 <= cnt && end - o >= 8) {
			for (int k = 0; k < 4; k++, i++, p += 2)
				put_one(tab, p, sm + i, &acc, &nacc);
			put_be64(o, acc);
			o += nacc >> 3;
			acc <<= nacc & ~7u;
			nacc &= 7;
		}
		for (; i < cnt; i++, p += 2) {
			put_one(tab, p, sm + i, &acc, &nacc);
			for (; nacc >= 8; nacc -= 8, acc <<= 8)
				*o++ = (uint8_t)(acc >> 56);
		}
		if (nacc)
			*o++ = (uint8_t)(acc >> 56);
	}
}

static int exphuf_encode(const void *raw, size_t nbytes, int nthreads,
			 struct rest_blob *out, struct uwerr *e)
{
	struct exphuf_job j = {.raw = raw, .n = nbytes / 2};
	struct huf_code code;
	struct huf_enc enc;
	uint64_t hist[HUF_SYMS] = {0};
	uint64_t *start = NULL;
	uint8_t *buf = NULL;
	int rc;

	j.nchunks = j.n / EXPHUF_CHUNK + (j.n % EXPHUF_CHUNK != 0);
	j.hist = malloc((j.nchunks ? j.nchunks : 1) * sizeof(*j.hist));
	start = malloc((j.nchunks + 1) * sizeof(*start));
	if (!j.hist || !start) {
		rc = uwerr_set(e, ENOMEM, "exphuf: %zu chunk histograms", j.nchunks);
		goto fail;
	}
	par_for(j.nchunks, nthreads, exphuf_hist, &j);
	for (size_t c = 0; c < j.nchunks; c++)
		for (int s = 0; s < HUF_SYMS; s++)
			hist[s] += j.hist[c][s];
	huf_lengths(hist, &code);
	if (code.nsym > 0 && (rc = huf_build_enc(&code, &enc, e)) < 0)
		goto fail;

	/* Exact sizes first, so every chunk is written in place, in parallel. */
	start[0] = 0;
	for (size_t c = 0; c < j.nchunks; c++) {
		uint64_t bits = 0;
		for (int s = 0; s < HUF_SYMS; s++)
			bits += (uint64_t)j.hist[c][s] * enc.len[s];
		start[c + 1] = start[c] + (bits + 7) / 8;
	}
	size_t table = EXPHUF_HDR + 2 * (size_t)code.nsym;
	size_t sm_off = table + 8 * j.nchunks;
	size_t bits_off = sm_off + j.n;
	size_t total = bits_off + start[j.nchunks];
	buf = alloc_bytes(total);
	if (!buf) {
		rc = uwerr_set(e, ENOMEM, "exphuf: %zu-byte payload", total);
		goto fail;
	}
	buf[0] = EXPHUF_VERSION;
	buf[1] = 0;
	le16_put(buf + 2, (uint16_t)code.nsym);
	le64_put(buf + 4, j.n);
	for (int i = 0; i < code.nsym; i++) {
		buf[EXPHUF_HDR + 2 * i] = code.sym[i];
		buf[EXPHUF_HDR + 2 * i + 1] = code.len[i];
	}
	for (size_t c = 0; c < j.nchunks; c++)
		le64_put(buf + table + 8 * c, start[c + 1]);
	j.sm_out = buf + sm_off;
	j.bits_out = buf + bits_off;
	j.start = start;
	j.enc = &enc;
	par_for(j.nchunks, nthreads, exphuf_put_chunks, &j);
	*out = (struct rest_blob){REST_EXPHUF, buf, total};
	buf = NULL;
	rc = 0;
fail:
	free(buf);
	free(start);
	free(j.hist);
	return rc;
}

/* The next HUF_MAX_LEN bits at bitpos, reading zeros past the end. */
static inline unsigned peek_tail(const uint8_t *b, size_t blen, uint64_t bitpos)
{
	size_t i = bitpos >> 3;
	uint32_t v = 0;
	for (size_t k = 0; k < 3; k++)
		v = v << 8 | (i + k < blen ? b[i + k] : 0);
	return (v >> (12 - (bitpos & 7))) & (HUF_TABLE_SIZE - 1);
}

static int exphuf_chunk(struct exphuf_job *j, size_t c, struct uwerr *e)
{
	const uint16_t *dec = j->dec->entry;
	const uint32_t *pair = j->pair;
	const uint8_t *b = j->bits + j->start[c];
	size_t blen = j->start[c + 1] - j->start[c];
	size_t cnt = chunk_count(j, c), i = 0;
	const uint8_t *sm = j->sm + c * EXPHUF_CHUNK;
	uint8_t *o = j->out + 2 * c * EXPHUF_CHUNK;
	uint64_t bitpos = 0;

	/* Four lookups (at most 48 bits, 8 codes) from one 64-bit load
	 * shifted by < 8. The second element is written whether or not the
	 * lookup held it: if not, the next lookup overwrites it. */
	while (i + 8 <= cnt && (bitpos >> 3) + 8 <= blen) {
		uint64_t v = get_be64(b + (bitpos >> 3)) << (bitpos & 7);
		for (int k = 0; k < 4; k++) {
			uint32_t p = pair[v >> (64 - HUF_MAX_LEN)];
			unsigned bits = p >> 16 & 0xff;
			v <<= bits;
			bitpos += bits;
			bf16_put(o + 2 * i, (uint8_t)p, sm[i]);
			bf16_put(o + 2 * i + 2, (uint8_t)(p >> 8), sm[i + 1]);
			i += p >> 24;
		}
	}
	for (; i < cnt; i++) {
		uint16_t ent = dec[peek_tail(b, blen, bitpos)];
		bitpos += ent >> 8;
		bf16_put(o + 2 * i, (uint8_t)ent, sm[i]);
	}
	if (bitpos > 8 * (uint64_t)blen)
		return uwerr_set(e, EBADMSG, "exphuf chunk %zu: bitstream runs out (%llu bits needed, %zu bytes stored)",
				 c, (unsigned long long)bitpos, blen);
	if ((bitpos + 7) / 8 != blen)
		return uwerr_set(e, EBADMSG, "exphuf chunk %zu: %llu bytes of bitstream unused",
				 c, (unsigned long long)(blen - (bitpos + 7) / 8));
	if ((bitpos & 7) && (b[blen - 1] & (0xffu >> (bitpos & 7))))
		return uwerr_set(e, EBADMSG, "exphuf chunk %zu: nonzero padding bits", c);
	return 0;
}

/* The lookup chain is the decoder's critical path, so each entry holds two
 * codes where both fit in the HUF_MAX_LEN bits of its index:
 * sym0 | sym1 << 8 | bits << 16 | count << 24. */
static void decode_pairs(const struct huf_dec *d, uint32_t *pair)
{
	for (unsigned w = 0; w < HUF_TABLE_SIZE; w++) {
		unsigned e0 = d->entry[w], l0 = e0 >> 8;
		unsigned e1 = d->entry[(w << l0) & (HUF_TABLE_SIZE - 1)], l1 = e1 >> 8;
		if (l1 <= HUF_MAX_LEN - l0)
			pair[w] = (e0 & 0xff) | (e1 & 0xff) << 8 | (l0 + l1) << 16 | 2u << 24;
		else
			pair[w] = (e0 & 0xff) | l0 << 16 | 1u << 24;
	}
}

static void exphuf_get_chunks(void *ctx, size_t c0, size_t c1)
{
	struct exphuf_job *j = ctx;
	struct uwerr e = {0};
	for (size_t c = c0; c < c1 && !par_failed(&j->err); c++)
		if (exphuf_chunk(j, c, &e) < 0)
			par_fail(&j->err, &e);
}

void rest_exphuf_free(struct rest_exphuf *x)
{
	free(x->start);
	free(x->dec);
	x->start = NULL;
	x->dec = NULL;
}

size_t rest_exphuf_head_len(size_t len, size_t nbytes)
{
	/* the largest code table, and a chunk end for every chunk */
	size_t n = nbytes / 2, head = EXPHUF_HDR + 2 * HUF_SYMS + 8 * (n / EXPHUF_CHUNK + 1);
	return head < len ? head : len;
}

int rest_exphuf_parse(const void *data, size_t len, size_t nbytes, struct rest_exphuf *x,
		      struct uwerr *e)
{
	const uint8_t *p = data;
	struct huf_code code;
	*x = (struct rest_exphuf){0};
	if (len < EXPHUF_HDR)
		return uwerr_set(e, EBADMSG, "exphuf: %zu-byte payload is shorter than its %d-byte header",
				 len, EXPHUF_HDR);
	if (p[0] != EXPHUF_VERSION || p[1] != 0)
		return uwerr_set(e, EBADMSG, "exphuf: version %u flags %u (want %d and 0)",
				 p[0], p[1], EXPHUF_VERSION);
	code.nsym = le16_get(p + 2);
	x->n = le64_get(p + 4);
	if (nbytes % 2 || x->n != nbytes / 2)
		return uwerr_set(e, EBADMSG, "exphuf: %llu elements stored, but the tensor has %zu bytes",
				 (unsigned long long)le64_get(p + 4), nbytes);
	if (code.nsym > HUF_SYMS || (code.nsym == 0) != (x->n == 0))
		return uwerr_set(e, EBADMSG, "exphuf: %d code symbols for %zu elements",
				 code.nsym, x->n);
	x->nchunks = x->n / EXPHUF_CHUNK + (x->n % EXPHUF_CHUNK != 0);
	/* x->n <= nbytes / 2, so none of these sums can overflow size_t */
	size_t table = EXPHUF_HDR + 2 * (size_t)code.nsym;
	x->sm_off = table + 8 * x->nchunks;
	x->bits_off = x->sm_off + x->n;
	if (x->bits_off > len)
		return uwerr_set(e, EBADMSG, "exphuf: payload of %zu bytes ends inside its tables and sign|mantissa bytes (%zu)",
				 len, x->bits_off);
	for (int i = 0; i < code.nsym; i++) {
		code.sym[i] = p[EXPHUF_HDR + 2 * i];
		code.len[i] = p[EXPHUF_HDR + 2 * i + 1];
	}
	if (x->n == 0) {
		if (len != EXPHUF_HDR)
			return uwerr_set(e, EBADMSG, "exphuf: %zu bytes after an empty tensor's header",
					 len - EXPHUF_HDR);
		return 0;
	}
	int rc;
	x->dec = malloc(sizeof(*x->dec));
	x->start = malloc((x->nchunks + 1) * sizeof(*x->start));
	if (!x->dec || !x->start) {
		rc = uwerr_set(e, ENOMEM, "exphuf: decode tables for %zu chunks", x->nchunks);
		goto fail;
	}
	if ((rc = huf_build_dec(&code, x->dec, e)) < 0) {
		uwerr_prefix(e, "exphuf");
		goto fail;
	}
	x->start[0] = 0;
	for (size_t c = 0; c < x->nchunks; c++) {
		uint64_t end = le64_get(p + table + 8 * c);
		size_t cnt = x->n - c * EXPHUF_CHUNK < EXPHUF_CHUNK ? x->n - c * EXPHUF_CHUNK
								   : EXPHUF_CHUNK;
		/* a code is at most HUF_MAX_LEN bits */
		uint64_t most = ((uint64_t)cnt * HUF_MAX_LEN + 7) / 8;
		if (end < x->start[c] || end - x->start[c] > most) {
			rc = uwerr_set(e, EBADMSG, "exphuf chunk %zu: ends at %llu after starting at %llu (at most %llu bytes)",
				       c, (unsigned long long)end, (unsigned long long)x->start[c],
				       (unsigned long long)most);
			goto fail;
		}
		x->start[c + 1] = end;
	}
	if (x->start[x->nchunks] != len - x->bits_off) {
		rc = uwerr_set(e, EBADMSG, "exphuf: bitstreams take %llu bytes, but %zu follow the tables",
			       (unsigned long long)x->start[x->nchunks], len - x->bits_off);
		goto fail;
	}
	return 0;
fail:
	rest_exphuf_free(x);
	return rc;
}

static int exphuf_decode(const uint8_t *p, size_t len, void *raw, size_t nbytes,
			 int nthreads, struct uwerr *e)
{
	struct rest_exphuf x;
	int rc = rest_exphuf_parse(p, len, nbytes, &x, e);
	if (rc || x.n == 0)
		return rc;
	uint32_t *pair = malloc(HUF_TABLE_SIZE * sizeof(*pair));
	if (!pair) {
		rest_exphuf_free(&x);
		return uwerr_set(e, ENOMEM, "exphuf: decode tables for %zu chunks", x.nchunks);
	}
	decode_pairs(x.dec, pair);
	struct exphuf_job j = {.out = raw, .n = x.n, .nchunks = x.nchunks, .sm = p + x.sm_off,
			       .bits = p + x.bits_off, .start = x.start, .dec = x.dec, .pair = pair};
	par_for(j.nchunks, nthreads, exphuf_get_chunks, &j);
	rc = par_err_take(&j.err, e);
	free(pair);
	rest_exphuf_free(&x);
	return rc;
}

/* ---- REST_ZSTD ---- */

/* Byte-grouping: byte k of every element, for k = 0..size-1, so the
 * high-order bytes (exponents, sign) sit together where zstd sees them. */
static void group_bytes(const uint8_t *src, uint8_t *dst, size_t n, size_t size)
{
	for (size_t k = 0; k < size; k++)
		for (size_t i = 0; i < n; i++)
			dst[k * n + i] = src[i * size + k];
}

static void ungroup_bytes(const uint8_t *src, uint8_t *dst, size_t n, size_t size)
{
	for (size_t k = 0; k < size; k++)
		for (size_t i = 0; i < n; i++)
			dst[i * size + k] = src[k * n + i];
}

static int zstd_encode(size_t size, const void *raw, size_t nbytes, int nthreads,
		       struct rest_blob *out, struct uwerr *e)
{
	uint8_t *grouped = NULL, *buf = NULL;
	ZSTD_CCtx *cc = NULL;
	const void *src = raw;
	size_t bound = ZSTD_compressBound(nbytes), got;
	int rc;

	if (size > 1) {
		grouped = alloc_bytes(nbytes);
		if (!grouped) {
			rc = uwerr_set(e, ENOMEM, "zstd: %zu-byte grouping buffer", nbytes);
			goto fail;
		}
		group_bytes(raw, grouped, nbytes / size, size);
		src = grouped;
	}
	if (ZSTD_isError(bound)) {
		rc = uwerr_set(e, EFBIG, "zstd: %zu bytes is too large to compress", nbytes);
		goto fail;
	}
	buf = alloc_bytes(bound);
	cc = ZSTD_createCCtx();
	if (!buf || !cc) {
		rc = uwerr_set(e, ENOMEM, "zstd: compressor for %zu bytes", nbytes);
		goto fail;
	}
	ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, REST_ZSTD_LEVEL);
	if (nbytes >= REST_ZSTD_MT_MIN && par_threads(nthreads) > 1)
		ZSTD_CCtx_setParameter(cc, ZSTD_c_nbWorkers, par_threads(nthreads));  /* ignored without MT support */
	got = ZSTD_compress2(cc, buf, bound, src, nbytes);
	if (ZSTD_isError(got)) {
		rc = uwerr_set(e, EIO, "zstd: compressing %zu bytes: %s", nbytes, ZSTD_getErrorName(got));
		goto fail;
	}
	*out = (struct rest_blob){REST_ZSTD, buf, got};
	buf = NULL;
	rc = 0;
fail:
	ZSTD_freeCCtx(cc);
	free(buf);
	free(grouped);
	return rc;
}

static int zstd_decode(size_t size, const void *data, size_t len, void *raw,
		       size_t nbytes, struct uwerr *e)
{
	unsigned long long content = ZSTD_getFrameContentSize(data, len);
	if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN)
		return uwerr_set(e, EBADMSG, "zstd: payload of %zu bytes is not a frame with a content size", len);
	if (content != nbytes)
		return uwerr_set(e, EBADMSG, "zstd: frame holds %llu bytes, the tensor has %zu", content, nbytes);
	size_t framed = ZSTD_findFrameCompressedSize(data, len);
	if (ZSTD_isError(framed) || framed != len)
		return uwerr_set(e, EBADMSG, "zstd: payload of %zu bytes is not exactly one frame (%s)",
				 len, ZSTD_isError(framed) ? ZSTD_getErrorName(framed) : "trailing bytes");
	uint8_t *grouped = size > 1 ? alloc_bytes(nbytes) : raw;
	if (!grouped)
		return uwerr_set(e, ENOMEM, "zstd: %zu-byte grouping buffer", nbytes);
	size_t got = ZSTD_decompress(grouped, nbytes, data, len);
	int rc = 0;
	if (ZSTD_isError(got))
		rc = uwerr_set(e, EBADMSG, "zstd: %s", ZSTD_getErrorName(got));
	else if (got != nbytes)
		rc = uwerr_set(e, EBADMSG, "zstd: frame decoded to %zu bytes, the tensor has %zu", got, nbytes);
	else if (size > 1)
		ungroup_bytes(grouped, raw, nbytes / size, size);
	if (size > 1)
		free(grouped);
	return rc;
}

/* ---- choosing and dispatching ---- */

int rest_encode_with(int enc, int dtype, const void *raw, size_t nbytes,
		     int nthreads, struct rest_blob *out, struct uwerr *e)
{
	size_t size = dtype_size(dtype);
	if (!size || nbytes % size)
		return uwerr_set(e, EINVAL, "encode: %zu bytes of dtype %d (%s) are not whole elements",
				 nbytes, dtype, dtype_name(dtype) ? dtype_name(dtype) : "unknown");
	switch (enc) {
	case REST_RAW: {
		void *buf = alloc_bytes(nbytes);
		if (!buf)
			return uwerr_set(e, ENOMEM, "encode: %zu bytes", nbytes);
		if (nbytes)
			memcpy(buf, raw, nbytes);
		*out = (struct rest_blob){REST_RAW, buf, nbytes};
		return 0;
	}
	case REST_EXPHUF:
		if (dtype != UW_DTYPE_BF16)
			return uwerr_set(e, EINVAL, "encode: exphuf needs BF16, not %s", dtype_name(dtype));
		return exphuf_encode(raw, nbytes, nthreads, out, e);
	case REST_ZSTD:
		return zstd_encode(size, raw, nbytes, nthreads, out, e);
	}
	return uwerr_set(e, EINVAL, "encode: unknown encoding %d", enc);
}

int rest_encode(int dtype, int ndim, const uint64_t *shape,
		const void *raw, size_t nbytes, int nthreads,
		struct rest_blob *out, struct uwerr *e)
{
	size_t count = dtype_size(dtype);
	if (!count)
		return uwerr_set(e, EINVAL, "encode: unknown dtype %d", dtype);
	if (ndim < 0 || ndim > UW_MAX_DIMS)
		return uwerr_set(e, EINVAL, "encode: %d dimensions (max %d)", ndim, UW_MAX_DIMS);
	for (int i = 0; i < ndim; i++)
		if (shape[i] > SIZE_MAX || uw_mul_size(count, (size_t)shape[i], &count) < 0)
			return uwerr_set(e, EOVERFLOW, "encode: shape overflows size_t");
	if (count != nbytes)
		return uwerr_set(e, EINVAL, "encode: shape and dtype give %zu bytes, data has %zu",
				 count, nbytes);

	int enc = dtype == UW_DTYPE_BF16 && ndim >= 2 ? REST_EXPHUF : REST_ZSTD;
	struct rest_blob b;
	int rc = rest_encode_with(enc, dtype, raw, nbytes, nthreads, &b, e);
	if (rc < 0)
		return rc;
	if (b.len < nbytes) {
		*out = b;
		return 0;
	}
	free(b.data);
	return rest_encode_with(REST_RAW, dtype, raw, nbytes, nthreads, out, e);
}

int rest_decode(int enc, int dtype, const void *data, size_t len,
		void *raw, size_t nbytes, int nthreads, struct uwerr *e)
{
	size_t size = dtype_size(dtype);
	if (!size || nbytes % size)
		return uwerr_set(e, EBADMSG, "decode: %zu bytes of dtype %d are not whole elements",
				 nbytes, dtype);
	switch (enc) {
	case REST_RAW:
		if (len != nbytes)
			return uwerr_set(e, EBADMSG, "decode: raw payload of %zu bytes for a %zu-byte tensor",
					 len, nbytes);
		if (nbytes)
			memcpy(raw, data, nbytes);
		return 0;
	case REST_EXPHUF:
		if (dtype != UW_DTYPE_BF16)
			return uwerr_set(e, EBADMSG, "decode: exphuf payload for a %s tensor (BF16 only)",
					 dtype_name(dtype));
		return exphuf_decode(data, len, raw, nbytes, nthreads, e);
	case REST_ZSTD:
		return zstd_decode(size, data, len, raw, nbytes, e);
	}
	return uwerr_set(e, EBADMSG, "decode: unknown encoding %d", enc);
}

/* ---- statistics ---- */

int exp_palette(const uint64_t hist[256], int size, uint8_t pal[16])
{
	uint8_t order[256];
	int n = 0;
	for (int s = 0; s < 256; s++)
		if (hist[s])
			order[n++] = (uint8_t)s;
	/* by count descending, lower exponent first on ties (stable) */
	for (int i = 1; i < n; i++) {
		uint8_t s = order[i];
		int j = i;
		for (; j > 0 && hist[order[j - 1]] < hist[s]; j--)
			order[j] = order[j - 1];
		order[j] = s;
	}
	int k = n < size ? n : size;
	uint8_t used[256] = {0};
	for (int i = 0; i < k; i++)
		used[order[i]] = 1;
	memset(pal, 0, UW_PALETTE_SIZE);
	for (int s = 0, i = 0; s < 256; s++)
		if (used[s])
			pal[i++] = (uint8_t)s;
	return k;
}

void exp_stats_bf16(const uint16_t *w, size_t n, struct exp_stats *s)
{
	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < n; i++)
		s->hist[(w[i] >> 7) & 0xff]++;
	s->n = n;
	if (!n)
		return;
	uint8_t pal[UW_PALETTE_SIZE];
	uint64_t covered = 0;
	for (int i = 0, k = exp_palette(s->hist, UW_PALETTE_SIZE, pal); i < k; i++)
		covered += s->hist[pal[i]];
	for (int x = 0; x < 256; x++)
		if (s->hist[x]) {
			double p = (double)s->hist[x] / (double)n;
			s->entropy_bits -= p * log2(p);
		}
	s->palette16_coverage = (double)covered / (double)n;
}
