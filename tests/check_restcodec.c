/* check_restcodec: the at-rest codec round-trips every bit pattern, stays
 * near the entropy bound, and refuses corrupt payloads without faulting. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/dtype.h"
#include "format/huffman.h"
#include "format/restcodec.h"
#include "tests/bf16cases.h"
#include "tests/testutil.h"

static uint64_t seed;

/* encode with enc (or the chosen one when enc < 0), decode, compare. */
static struct rest_blob roundtrip(int enc, int dtype, int ndim, const uint64_t *shape,
				  const void *raw, size_t nbytes, int nthreads, const char *what)
{
	struct rest_blob b = {0};
	struct uwerr e = {0};
	int rc = enc < 0 ? rest_encode(dtype, ndim, shape, raw, nbytes, nthreads, &b, &e)
			 : rest_encode_with(enc, dtype, raw, nbytes, nthreads, &b, &e);
	ck_assert_msg(rc == 0, "%s: encode: %s", what, e.msg);
	void *back = malloc(nbytes + 1);
	memset(back, 0xa5, nbytes + 1);
	rc = rest_decode(b.enc, dtype, b.data, b.len, back, nbytes, nthreads, &e);
	ck_assert_msg(rc == 0, "%s: decode (enc %d, %zu bytes): %s", what, b.enc, b.len, e.msg);
	ck_assert_msg(nbytes == 0 || memcmp(back, raw, nbytes) == 0, "%s: enc %d not bit-exact", what, b.enc);
	ck_assert_msg(((uint8_t *)back)[nbytes] == 0xa5, "%s: decode wrote past the tensor", what);
	free(back);
	return b;
}

START_TEST(test_bf16_cases)
{
	uint64_t rng = seed;
	struct bf16_case *c;
	size_t n = bf16_cases(&rng, &c);
	for (size_t i = 0; i < n; i++) {
		size_t nbytes = 2 * c[i].n;
		struct rest_blob chosen = roundtrip(-1, UW_DTYPE_BF16, c[i].ndim, c[i].shape,
						    c[i].w, nbytes, 0, c[i].name);
		ck_assert_msg(chosen.len <= nbytes, "%s: chose %d at %zu bytes for %zu raw",
			      c[i].name, chosen.enc, chosen.len, nbytes);
		if (c[i].ndim >= 2)
			ck_assert_msg(chosen.enc != REST_ZSTD, "%s: 2-D BF16 went to zstd", c[i].name);
		else
			ck_assert_msg(chosen.enc != REST_EXPHUF, "%s: 1-D BF16 went to exphuf", c[i].name);
		free(chosen.data);

		/* Every case through each codec, whether or not it wins; the
		 * exphuf payload must not depend on the thread count. */
		struct rest_blob one = roundtrip(REST_EXPHUF, UW_DTYPE_BF16, 0, NULL, c[i].w, nbytes, 1, c[i].name);
		struct rest_blob many = roundtrip(REST_EXPHUF, UW_DTYPE_BF16, 0, NULL, c[i].w, nbytes, 3, c[i].name);
		ck_assert_msg(one.len == many.len && memcmp(one.data, many.data, one.len) == 0,
			      "%s: exphuf payload depends on the thread count", c[i].name);
		free(one.data);
		free(many.data);
		struct rest_blob z = roundtrip(REST_ZSTD, UW_DTYPE_BF16, 0, NULL, c[i].w, nbytes, 1, c[i].name);
		free(z.data);
	}
	bf16_cases_free(c, n);
}
END_TEST

START_TEST(test_choice)
{
	uint64_t rng = seed;
	struct bf16_case *c;
	size_t n = bf16_cases(&rng, &c);
	for (size_t i = 0; i < n; i++) {
		struct rest_blob b;
		struct uwerr e = {0};
		ck_assert_int_eq(rest_encode(UW_DTYPE_BF16, c[i].ndim, c[i].shape, c[i].w,
					     2 * c[i].n, 0, &b, &e), 0);
		if (strncmp(c[i].name, "gauss", 5) == 0 && c[i].ndim >= 2 && c[i].n >= 1000)
			ck_assert_msg(b.enc == REST_EXPHUF, "%s: chose %d", c[i].name, b.enc);
		if (strncmp(c[i].name, "every bit pattern", 17) == 0 || c[i].n == 0)
			ck_assert_msg(b.enc == REST_RAW, "%s: chose %d", c[i].name, b.enc);
		free(b.data);
	}
	bf16_cases_free(c, n);
}
END_TEST

START_TEST(test_other_dtypes)
{
	uint64_t rng = seed;
	static const int types[] = {UW_DTYPE_BOOL, UW_DTYPE_U8, UW_DTYPE_I8, UW_DTYPE_F8_E4M3,
				    UW_DTYPE_I16, UW_DTYPE_F16, UW_DTYPE_I32, UW_DTYPE_F32,
				    UW_DTYPE_F64, UW_DTYPE_I64, UW_DTYPE_U64};
	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
		size_t size = dtype_size(types[t]);
		uint64_t shapes[][2] = {{0, 3}, {1, 1}, {37, 129}, {3, 5}};
		for (size_t s = 0; s < 4; s++) {
			size_t n = shapes[s][0] * shapes[s][1], nbytes = n * size;
			uint8_t *raw = malloc(nbytes + 1);
			/* small integers / floats near 1: compressible high bytes */
			for (size_t i = 0; i < nbytes; i++)
				raw[i] = (i % size) == 0 || size == 1 ? (uint8_t)tu_rand(&rng) : (uint8_t)((i % size) == size - 1 ? 0x3f : 0);
			char what[64];
			snprintf(what, sizeof(what), "%s %llux%llu", dtype_name(types[t]),
				 (unsigned long long)shapes[s][0], (unsigned long long)shapes[s][1]);
			struct rest_blob b = roundtrip(-1, types[t], 2, shapes[s], raw, nbytes, 0, what);
			ck_assert_msg(b.enc != REST_EXPHUF, "%s: exphuf for a non-BF16 tensor", what);
			if (size > 1 && n > 1000)
				ck_assert_msg(b.enc == REST_ZSTD, "%s: grouped constant bytes not compressed (%d)", what, b.enc);
			free(b.data);
			b = roundtrip(REST_ZSTD, types[t], 0, NULL, raw, nbytes, 2, what);
			free(b.data);
			b = roundtrip(REST_RAW, types[t], 0, NULL, raw, nbytes, 1, what);
			ck_assert_uint_eq(b.len, nbytes);
			free(b.data);
			struct uwerr e = {0};
			ck_assert_int_eq(rest_encode_with(REST_EXPHUF, types[t], raw, nbytes, 1, &b, &e), -EINVAL);
			free(raw);
		}
	}
	/* random bytes do not compress: raw wins */
	uint8_t raw[4096];
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (uint8_t)tu_rand(&rng);
	uint64_t shape[1] = {sizeof(raw)};
	struct rest_blob b = roundtrip(-1, UW_DTYPE_U8, 1, shape, raw, sizeof(raw), 0, "random U8");
	ck_assert_int_eq(b.enc, REST_RAW);
	free(b.data);
	/* shape and byte count must agree */
	struct uwerr e = {0};
	uint64_t bad[2] = {3, 5};
	ck_assert_int_eq(rest_encode(UW_DTYPE_F32, 2, bad, raw, 61, 0, &b, &e), -EINVAL);
	ck_assert(e.msg[0]);
	uint64_t huge[2] = {1ull << 40, 1ull << 40};
	ck_assert_int_lt(rest_encode(UW_DTYPE_F32, 2, huge, raw, 64, 0, &b, &e), 0);
}
END_TEST

/* The cost of a code, sum count * length. */
static uint64_t cost(const uint64_t *count, const struct huf_code *c)
{
	uint64_t t = 0;
	for (int i = 0; i < c->nsym; i++)
		t += count[c->sym[i]] * c->len[i];
	return t;
}

/* Optimal (unlimited) Huffman: repeatedly merge the two lightest nodes.
 * Returns the cost; *maxlen gets the longest code. */
static uint64_t huffman_ref(const uint64_t *count, int *maxlen)
{
	uint64_t w[511];
	int parent[511], live[256], nlive = 0, nodes = 0;
	for (int s = 0; s < 256; s++)
		if (count[s]) {
			w[nodes] = count[s];
			live[nlive++] = nodes++;
		}
	int leaves = nodes;
	uint64_t total = 0;
	while (nlive > 1) {
		int a = 0, b = 1;
		if (w[live[b]] < w[live[a]])
			a = 1, b = 0;
		for (int i = 2; i < nlive; i++) {
			if (w[live[i]] < w[live[a]])
				b = a, a = i;
			else if (w[live[i]] < w[live[b]])
				b = i;
		}
		w[nodes] = w[live[a]] + w[live[b]];
		total += w[nodes];
		parent[live[a]] = parent[live[b]] = nodes;
		live[a < b ? a : b] = nodes++;
		live[a < b ? b : a] = live[--nlive];
	}
	*maxlen = 0;
	for (int i = 0; i < leaves && nodes > 1; i++) {
		int d = 0;
		for (int k = i; k != nodes - 1; k = parent[k])
			d++;
		*maxlen = d > *maxlen ? d : *maxlen;
	}
	return total;
}

START_TEST(test_huffman_lengths)
{
	uint64_t rng = seed;
	struct uwerr e = {0};
	struct huf_code c;
	struct huf_dec dec;
	/* dyadic: the optimal lengths are exactly -log2 p */
	uint64_t dy[256] = {0};
	dy[7] = 8, dy[3] = 4, dy[200] = 2, dy[9] = 1, dy[10] = 1;
	huf_lengths(dy, &c);
	ck_assert_int_eq(c.nsym, 5);
	ck_assert(c.sym[0] == 3 && c.len[0] == 2);
	ck_assert(c.sym[1] == 7 && c.len[1] == 1);
	ck_assert(c.sym[2] == 9 && c.len[2] == 4);
	ck_assert(c.sym[3] == 10 && c.len[3] == 4);
	ck_assert(c.sym[4] == 200 && c.len[4] == 3);

	int limited = 0;
	for (int trial = 0; trial < 300; trial++) {
		uint64_t cnt[256] = {0};
		int nsym = 1 + (int)(tu_rand(&rng) % 256);
		int deep = trial % 3 == 0;      /* skewed: the 12-bit limit often binds */
		for (int i = 0; i < nsym; i++) {
			uint64_t r = tu_rand(&rng);
			cnt[r % 256] += deep ? 1 + (r >> 8) % (1ull << (r >> 40) % 40) : 1 + (r >> 8) % 1000;
		}
		huf_lengths(cnt, &c);
		ck_assert_msg(huf_build_dec(&c, &dec, &e) == 0, "trial %d: %s", trial, e.msg);
		int reflen, maxlen = 0;
		uint64_t opt = huffman_ref(cnt, &reflen), got = cost(cnt, &c);
		for (int i = 0; i < c.nsym; i++)
			maxlen = c.len[i] > maxlen ? c.len[i] : maxlen;
		ck_assert_int_le(maxlen, HUF_MAX_LEN);
		ck_assert_msg(got >= opt, "trial %d: cost %llu below Huffman %llu", trial,
			      (unsigned long long)got, (unsigned long long)opt);
		limited += reflen > HUF_MAX_LEN;
		if (reflen <= HUF_MAX_LEN)
			ck_assert_msg(got == opt, "trial %d: cost %llu, Huffman %llu", trial,
				      (unsigned long long)got, (unsigned long long)opt);
	}
	/* both sides of the limit were exercised */
	ck_assert_int_gt(limited, 10);
	ck_assert_int_lt(limited, 290);
}
END_TEST

START_TEST(test_near_entropy_bound)
{
	uint64_t rng = seed;
	size_t n = 4096 * 1024;
	uint16_t *w = malloc(2 * n);
	bf16_gauss(&rng, 0.02, w, n);
	uint64_t shape[2] = {4096, 1024};
	struct rest_blob b = roundtrip(-1, UW_DTYPE_BF16, 2, shape, w, 2 * n, 0, "N(0,0.02) 4096x1024");
	struct exp_stats s;
	exp_stats_bf16(w, n, &s);
	double bpw = 8.0 * (double)b.len / (double)n, bound = 8.0 + s.entropy_bits;
	fprintf(stderr, "N(0,0.02) 4096x1024: %.4f bits/weight, bound %.4f, gap %.4f\n",
		bpw, bound, bpw - bound);
	ck_assert_int_eq(b.enc, REST_EXPHUF);
	ck_assert_msg(bpw >= bound, "%.4f bits/weight beats the entropy bound %.4f", bpw, bound);
	ck_assert_msg(bpw - bound <= 0.15, "%.4f bits/weight, bound %.4f", bpw, bound);
	free(b.data);
	free(w);
}
END_TEST

START_TEST(test_real_weights)
{
	struct bf16_real *r;
	int n = bf16_real_mlp(&r);
	ck_assert_int_eq(n, 15);
	for (int i = 0; i < n; i++) {
		size_t cnt = r[i].rows * r[i].cols;
		uint64_t shape[2] = {r[i].rows, r[i].cols};
		struct rest_blob b = roundtrip(-1, UW_DTYPE_BF16, 2, shape, r[i].w, 2 * cnt, 0, r[i].name);
		struct exp_stats s;
		exp_stats_bf16(r[i].w, cnt, &s);
		double bpw = 8.0 * (double)b.len / (double)cnt, bound = 8.0 + s.entropy_bits;
		ck_assert_int_eq(b.enc, REST_EXPHUF);
		ck_assert_msg(bpw >= bound && bpw - bound <= 0.15, "%s: %.4f bits/weight, bound %.4f",
			      r[i].name, bpw, bound);
		free(b.data);
	}
	bf16_real_free(r, n);
}
END_TEST

START_TEST(test_exp_stats)
{
	/* 20 exponents, exponent 100 + k appearing k + 1 times */
	uint16_t w[210];
	size_t at = 0;
	for (int k = 0; k < 20; k++)
		for (int j = 0; j <= k; j++)
			w[at++] = (uint16_t)((j & 1) << 15 | (100 + k) << 7 | j);
	struct exp_stats s;
	exp_stats_bf16(w, at, &s);
	ck_assert_uint_eq(s.n, 210);
	ck_assert_uint_eq(s.hist[119], 20);
	double h = 0;
	for (int k = 0; k < 20; k++)
		h -= (k + 1) / 210.0 * log2((k + 1) / 210.0);
	ck_assert_double_eq_tol(s.entropy_bits, h, 1e-12);
	/* the top 16 are exponents 104..119: 5 + ... + 20 = 200 */
	ck_assert_double_eq_tol(s.palette16_coverage, 200.0 / 210.0, 1e-12);
	uint8_t pal[16];
	ck_assert_int_eq(exp_palette(s.hist, UW_PALETTE_SIZE, pal), 16);
	for (int i = 0; i < 16; i++)
		ck_assert_uint_eq(pal[i], 104 + i);
	/* ties go to the lower exponent; fewer than 16 leave zeros */
	uint64_t hist[256] = {0};
	for (int x = 0; x < 18; x++)
		hist[200 - x] = 5;
	hist[3] = 9;
	ck_assert_int_eq(exp_palette(hist, UW_PALETTE_SIZE, pal), 16);
	ck_assert_uint_eq(pal[0], 3);
	ck_assert_uint_eq(pal[1], 183);     /* 198..200 lose the tie */
	ck_assert_uint_eq(pal[15], 197);
	memset(hist, 0, sizeof(hist));
	hist[7] = 1, hist[250] = 2;
	ck_assert_int_eq(exp_palette(hist, UW_PALETTE_SIZE, pal), 2);
	ck_assert(pal[0] == 7 && pal[1] == 250 && pal[2] == 0 && pal[15] == 0);
	exp_stats_bf16(w, 0, &s);
	ck_assert_uint_eq(s.n, 0);
}
END_TEST

/* ---- corrupt payloads ---- */

static int decode_bf16(const void *p, size_t len, size_t n, uint16_t *out, struct uwerr *e)
{
	uwerr_clear(e);
	return rest_decode(REST_EXPHUF, UW_DTYPE_BF16, p, len, out, 2 * n, 1, e);
}

/* A payload written by hand from the spec: 4 elements, code 120:"0"
 * 121:"10" 122:"11", exponents 120 121 122 120 -> 0 10 11 0 (pad 00). */
static size_t hand_payload(uint8_t *p)
{
	static const uint8_t v[] = {
		1, 0, 3, 0,  4, 0, 0, 0, 0, 0, 0, 0,    /* version, flags, nsym, n */
		120, 1, 121, 2, 122, 2,                 /* table */
		1, 0, 0, 0, 0, 0, 0, 0,                 /* chunk 0 ends at byte 1 */
		0x00, 0x85, 0x7f, 0x80,                 /* sign|mantissa */
		0x58,                                   /* 0101 1000 */
	};
	memcpy(p, v, sizeof(v));
	return sizeof(v);
}

START_TEST(test_hand_payload)
{
	uint8_t p[64];
	uint16_t out[4];
	struct uwerr e = {0};
	size_t len = hand_payload(p);
	ck_assert_msg(decode_bf16(p, len, 4, out, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(out[0], 120 << 7);
	ck_assert_uint_eq(out[1], 0x8000 | 121 << 7 | 0x05);
	ck_assert_uint_eq(out[2], 122 << 7 | 0x7f);
	ck_assert_uint_eq(out[3], 0x8000 | 120 << 7);
	/* and the encoder writes exactly these bytes */
	struct rest_blob b;
	ck_assert_int_eq(rest_encode_with(REST_EXPHUF, UW_DTYPE_BF16, out, 8, 1, &b, &e), 0);
	ck_assert_uint_eq(b.len, len);
	ck_assert(memcmp(b.data, p, len) == 0);
	free(b.data);

	/* one symbol: length 0, no bitstream; n = 0: the header alone */
	static const uint8_t lone[] = {1, 0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 127, 0,
				       0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x82, 0x7f};
	ck_assert_msg(decode_bf16(lone, sizeof(lone), 3, out, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(out[0], 127 << 7 | 1);
	ck_assert_uint_eq(out[1], 0x8000 | 127 << 7 | 2);
	ck_assert_uint_eq(out[2], 127 << 7 | 0x7f);
	static const uint8_t empty[] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
	ck_assert_int_eq(decode_bf16(empty, sizeof(empty), 0, out, &e), 0);
}
END_TEST

/* Each edit of the hand payload must be refused with -EBADMSG. */
START_TEST(test_bad_tables)
{
	struct { const char *what; int at; uint8_t val; int cut; } edits[] = {
		{"version 2", 0, 2, 0},
		{"flags set", 1, 1, 0},
		{"nsym 0 for 4 elements", 2, 0, 0},
		{"nsym 259", 3, 1, 0},
		{"n = 5", 4, 5, 0},
		{"Kraft > 1 (lengths 1 1 2)", 15, 1, 0},
		{"Kraft < 1 (lengths 1 2 3)", 17, 3, 0},
		{"length 13", 17, 13, 0},
		{"symbols out of order", 14, 119, 0},
		{"duplicate symbol", 14, 120, 0},
		{"chunk past the payload", 18, 2, 0},
		{"chunk end huge", 25, 0x80, 0},
		{"bitstream runs out", 18, 0, 1},
		{"nonzero padding", 30, 0x59, 0},
		{"truncated sign|mantissa", 18, 1, 2},
	};
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		uint8_t p[64];
		uint16_t out[4];
		struct uwerr e = {0};
		size_t len = hand_payload(p);
		p[edits[i].at] = edits[i].val;
		len -= (size_t)edits[i].cut;
		int rc = decode_bf16(p, len, 4, out, &e);
		ck_assert_msg(rc == -EBADMSG, "%s: rc %d", edits[i].what, rc);
		ck_assert_msg(e.msg[0] != '\0', "%s: no message", edits[i].what);
	}
	/* trailing byte after the bitstream, whose chunk says so or not */
	uint8_t p[64];
	uint16_t out[4];
	struct uwerr e = {0};
	size_t len = hand_payload(p);
	p[len] = 0;
	ck_assert_int_eq(decode_bf16(p, len + 1, 4, out, &e), -EBADMSG);
	p[18] = 2;
	ck_assert_int_eq(decode_bf16(p, len + 1, 4, out, &e), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(e.msg, "unused"));
	/* a BF16 payload offered as another dtype */
	len = hand_payload(p);
	ck_assert_int_eq(rest_decode(REST_EXPHUF, UW_DTYPE_I16, p, len, out, 8, 1, &e), -EBADMSG);
	ck_assert_int_eq(rest_decode(7, UW_DTYPE_BF16, p, len, out, 8, 1, &e), -EBADMSG);
	ck_assert_int_eq(rest_decode(REST_RAW, UW_DTYPE_BF16, p, 7, out, 8, 1, &e), -EBADMSG);
	/* the lone symbol needs length 0 and an empty bitstream */
	static const uint8_t lone1[] = {1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 127, 1,
					1, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00};
	ck_assert_int_eq(decode_bf16(lone1, sizeof(lone1), 1, out, &e), -EBADMSG);
	static const uint8_t lone0[] = {1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 127, 0,
					1, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00};
	ck_assert_int_eq(decode_bf16(lone0, sizeof(lone0), 1, out, &e), -EBADMSG);
	static const uint8_t empty1[] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
	ck_assert_int_eq(decode_bf16(empty1, sizeof(empty1), 0, out, &e), -EBADMSG);
}
END_TEST

/* Truncation at every length and random byte flips: an error or a
 * decoded tensor, never a fault (ASan/UBSan builds check the "never"). */
static void mangle(int enc, int dtype, const void *raw, size_t nbytes, uint64_t *rng)
{
	struct rest_blob b;
	struct uwerr e = {0};
	ck_assert_int_eq(rest_encode_with(enc, dtype, raw, nbytes, 1, &b, &e), 0);
	uint8_t *out = malloc(nbytes), *p = malloc(b.len);
	for (size_t cut = 0; cut < b.len; cut++) {
		memcpy(p, b.data, cut);
		int rc = rest_decode(enc, dtype, p, cut, out, nbytes, 2, &e);
		ck_assert_msg(rc == -EBADMSG, "enc %d cut to %zu of %zu: rc %d", enc, cut, b.len, rc);
	}
	int refused = 0;
	for (int t = 0; t < 3000; t++) {
		memcpy(p, b.data, b.len);
		for (int k = 1 + (int)(tu_rand(rng) % 3); k > 0; k--)
			p[tu_rand(rng) % b.len] ^= (uint8_t)(1 + tu_rand(rng) % 255);
		int rc = rest_decode(enc, dtype, p, b.len, out, nbytes, 2, &e);
		ck_assert_msg(rc == 0 || rc == -EBADMSG, "enc %d flip: rc %d", enc, rc);
		refused += rc != 0;
	}
	ck_assert_int_gt(refused, 0);
	free(p);
	free(out);
	free(b.data);
}

START_TEST(test_mangled)
{
	uint64_t rng = seed;
	uint16_t w[600];
	bf16_gauss(&rng, 0.02, w, 600);
	for (int i = 0; i < 600; i += 37)
		w[i] = (uint16_t)tu_rand(&rng);     /* rare exponents: long codes */
	mangle(REST_EXPHUF, UW_DTYPE_BF16, w, sizeof(w), &rng);
	mangle(REST_ZSTD, UW_DTYPE_BF16, w, sizeof(w), &rng);
	mangle(REST_ZSTD, UW_DTYPE_F32, w, sizeof(w), &rng);

	/* zstd: a frame of another size, and two frames */
	struct rest_blob b;
	struct uwerr e = {0};
	ck_assert_int_eq(rest_encode_with(REST_ZSTD, UW_DTYPE_F32, w, sizeof(w), 1, &b, &e), 0);
	uint8_t *two = malloc(2 * b.len), out[sizeof(w) * 2];
	memcpy(two, b.data, b.len);
	memcpy(two + b.len, b.data, b.len);
	ck_assert_int_eq(rest_decode(REST_ZSTD, UW_DTYPE_F32, b.data, b.len, out, sizeof(w) - 4, 1, &e), -EBADMSG);
	ck_assert_int_eq(rest_decode(REST_ZSTD, UW_DTYPE_F32, two, 2 * b.len, out, sizeof(w), 1, &e), -EBADMSG);
	ck_assert_int_eq(rest_decode(REST_ZSTD, UW_DTYPE_F32, two, 2 * b.len, out, 2 * sizeof(w), 1, &e), -EBADMSG);
	ck_assert_int_eq(rest_decode(REST_ZSTD, UW_DTYPE_F32, b.data, b.len, out, sizeof(w) - 2, 1, &e), -EBADMSG);
	free(two);
	free(b.data);
}
END_TEST

/* A big multi-chunk tensor: a corrupt later chunk is found whatever thread
 * decodes it. */
START_TEST(test_multichunk_corrupt)
{
	uint64_t rng = seed;
	size_t n = 5 * 65536 + 123;
	uint16_t *w = malloc(2 * n), *out = malloc(2 * n);
	bf16_gauss(&rng, 0.02, w, n);
	struct rest_blob b;
	struct uwerr e = {0};
	ck_assert_int_eq(rest_encode_with(REST_EXPHUF, UW_DTYPE_BF16, w, 2 * n, 4, &b, &e), 0);
	for (int threads = 1; threads <= 4; threads++) {
		ck_assert_int_eq(rest_decode(REST_EXPHUF, UW_DTYPE_BF16, b.data, b.len, out, 2 * n, threads, &e), 0);
		ck_assert(memcmp(out, w, 2 * n) == 0);
	}
	/* move the boundary between chunks 3 and 4 by one byte */
	uint8_t *p = b.data;
	int nsym = p[2] | p[3] << 8;
	uint8_t *ends = p + 12 + 2 * nsym;
	uint64_t e3;
	memcpy(&e3, ends + 24, 8);
	e3 -= 1;
	memcpy(ends + 24, &e3, 8);
	ck_assert_int_eq(rest_decode(REST_EXPHUF, UW_DTYPE_BF16, b.data, b.len, out, 2 * n, 3, &e), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(e.msg, "chunk"));
	free(b.data);
	free(out);
	free(w);
}
END_TEST

/* The GPU's decoder is handed what rest_exphuf_parse made of a payload's
 * head alone (the loader preads just rest_exphuf_head_len bytes of a
 * mapped bundle): a copy of exactly those bytes, in a buffer of its own
 * (ASan catches a read past it), parses to the same tables as the whole
 * payload, for payloads of one chunk and of many. */
START_TEST(test_head_only)
{
	uint64_t rng = seed;
	const size_t sizes[] = {1000, 7 * 65536 + 5};
	for (size_t k = 0; k < 2; k++) {
		size_t n = sizes[k];
		uint16_t *w = malloc(2 * n);
		bf16_gauss(&rng, 0.02, w, n);
		struct rest_blob b;
		struct rest_exphuf whole, head;
		struct uwerr e = {0};
		ck_assert_int_eq(rest_encode_with(REST_EXPHUF, UW_DTYPE_BF16, w, 2 * n, 2, &b, &e), 0);
		size_t hl = rest_exphuf_head_len(b.len, 2 * n);
		ck_assert_uint_lt(hl, b.len);
		uint8_t *h = malloc(hl);
		memcpy(h, b.data, hl);
		ck_assert_msg(rest_exphuf_parse(b.data, b.len, 2 * n, &whole, &e) == 0, "%s", e.msg);
		ck_assert_msg(rest_exphuf_parse(h, b.len, 2 * n, &head, &e) == 0, "%s", e.msg);
		ck_assert_uint_eq(head.nchunks, whole.nchunks);
		ck_assert_uint_eq(head.sm_off, whole.sm_off);
		ck_assert_uint_eq(head.bits_off, whole.bits_off);
		ck_assert(memcmp(head.start, whole.start, (whole.nchunks + 1) * sizeof(*whole.start)) == 0);
		ck_assert(memcmp(head.dec, whole.dec, sizeof(*whole.dec)) == 0);
		ck_assert_uint_le(hl, whole.sm_off + 2 * 256 + 8);
		ck_assert_uint_ge(hl, whole.sm_off);
		/* a payload shorter than a head: the head is all of it */
		ck_assert_uint_eq(rest_exphuf_head_len(20, 2 * n), 20);
		rest_exphuf_free(&whole);
		rest_exphuf_free(&head);
		free(h);
		free(b.data);
		free(w);
	}
}
END_TEST

int main(void)
{
	seed = tu_seed();
	Suite *s = suite_create("restcodec");
	TCase *tc = tu_tcase(s, "core", 300);
	tcase_add_test(tc, test_bf16_cases);
	tcase_add_test(tc, test_choice);
	tcase_add_test(tc, test_other_dtypes);
	tcase_add_test(tc, test_huffman_lengths);
	tcase_add_test(tc, test_near_entropy_bound);
	tcase_add_test(tc, test_real_weights);
	tcase_add_test(tc, test_exp_stats);
	tcase_add_test(tc, test_hand_payload);
	tcase_add_test(tc, test_bad_tables);
	tcase_add_test(tc, test_mangled);
	tcase_add_test(tc, test_multichunk_corrupt);
	tcase_add_test(tc, test_head_only);
	return tu_run(s);
}
