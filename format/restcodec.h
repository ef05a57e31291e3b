/* restcodec: the at-rest encodings of one tensor's bytes, as stored in a
 * .uwb bundle. Specified in docs/FORMAT.md ("Tensor payloads"). */
#ifndef UW_FORMAT_RESTCODEC_H
#define UW_FORMAT_RESTCODEC_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "format/huffman.h"

/* Stored in bundles: never renumber. */
enum rest_enc {
	REST_RAW = 0,       /* the bytes as they are */
	REST_EXPHUF = 1,    /* BF16: canonical Huffman exponent stream + raw sign|mantissa bytes */
	REST_ZSTD = 2,      /* any dtype: bytes grouped by significance, then zstd */
};

struct rest_blob {
	int enc;            /* enum rest_enc */
	void *data;         /* malloc'd; free() it */
	size_t len;
};

/* Encode nbytes of tensor data, choosing the smallest applicable encoding:
 * REST_EXPHUF for BF16 tensors of 2 or more dimensions, REST_ZSTD for the
 * rest, REST_RAW where neither is smaller. nthreads <= 0: one per CPU. */
int rest_encode(int dtype, int ndim, const uint64_t *shape,
		const void *raw, size_t nbytes, int nthreads,
		struct rest_blob *out, struct uwerr *e);

/* Encode with the given encoding, whether or not it is the smallest (the
 * bench, the tests). REST_EXPHUF needs BF16: -EINVAL otherwise. */
int rest_encode_with(int enc, int dtype, const void *raw, size_t nbytes,
		     int nthreads, struct rest_blob *out, struct uwerr *e);

/* Decode into raw (exactly nbytes). Every length and table in the payload is
 * checked before use: corrupt input gives -EBADMSG, never a fault. */
int rest_decode(int enc, int dtype, const void *data, size_t len,
		void *raw, size_t nbytes, int nthreads, struct uwerr *e);

/* A REST_EXPHUF payload checked (header, code table, every chunk end, the
 * lengths) and ready to decode, here (rest_decode) or on a GPU, which needs
 * only the chunks' bitstreams to decode exactly as their ends say. */
struct rest_exphuf {
	size_t n, nchunks;          /* elements; chunks of EXPHUF_CHUNK_ELEMS */
	size_t sm_off, bits_off;    /* where the sign|mantissa bytes and the bitstreams begin */
	uint64_t *start;            /* [nchunks + 1]: each chunk's bitstream, from bits_off */
	struct huf_dec *dec;        /* the code's lookup table */
};
#define EXPHUF_CHUNK_ELEMS 65536

/* Parse a payload of len bytes for a tensor of nbytes; *x is the caller's
 * to free (rest_exphuf_free) on success, left empty on failure (-EBADMSG
 * naming the field, -ENOMEM). It reads only the payload's head, its first
 * rest_exphuf_head_len(len, nbytes) bytes: data may hold just those (a
 * caller that never reads the rest, the GPU's decoder, checks it there). */
int rest_exphuf_parse(const void *data, size_t len, size_t nbytes, struct rest_exphuf *x,
		      struct uwerr *e);
size_t rest_exphuf_head_len(size_t len, size_t nbytes);
void rest_exphuf_free(struct rest_exphuf *x);

/* Exponent statistics of BF16 data, for inspect and the bench. */
struct exp_stats {
	uint64_t hist[256];
	uint64_t n;
	double entropy_bits;        /* Shannon entropy of the exponent byte */
	double palette16_coverage;  /* share of weights whose exponent is in the top 16 */
};
void exp_stats_bf16(const uint16_t *w, size_t n, struct exp_stats *s);

/* The size (at most 16, UW_PALETTE_SIZE) most frequent exponents of hist, ties
 * to the lower exponent, sorted ascending into pal; the other entries 0.
 * Returns how many are used (the distinct exponents, at most size). */
int exp_palette(const uint64_t hist[256], int size, uint8_t pal[16]);

#endif
