/* check_bundle: the .uwb container: pack -> unpack round trips (the real
 * fixture byte for byte, random checkpoints, a sharded index), the source
 * view, and every kind of malformed bundle (truncation, huge counts,
 * overlaps, each checksum, random flips). */
#include "config.h"  /* first: _GNU_SOURCE */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/strbuf.h"
#include "format/bundle.h"
#include "format/dtype.h"
#include "format/pack.h"
#include "format/restcodec.h"
#include "format/source.h"
#include "tests/testutil.h"

static uint64_t seed;

static char *fixture(void)
{
	char *p;
	ck_assert(asprintf(&p, "%s/data/stories260K.safetensors", tu_srcdir()) > 0);
	return p;
}

static char *join(const char *dir, const char *name)
{
	char *p;
	ck_assert(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static void assert_same_file(const char *a, const char *b)
{
	size_t la, lb;
	void *da = tu_read_file(a, &la), *db = tu_read_file(b, &lb);
	ck_assert_msg(da && db, "read %s or %s", a, b);
	ck_assert_msg(la == lb, "%s has %zu bytes, %s has %zu", a, la, b, lb);
	ck_assert_msg(memcmp(da, db, la) == 0, "%s and %s differ", a, b);
	free(da);
	free(db);
}

static void pack_ok(const char *const *paths, size_t n, const char *out, struct pack_stats *st)
{
	struct uwerr e = {0};
	struct pack_stats local;
	int rc = bundle_pack(paths, n, out, 4, 0, st ? st : &local, &e);
	ck_assert_msg(rc == 0, "pack %s: %s", out, e.msg);
}

static struct bundle *open_ok(const char *path)
{
	struct uwerr e = {0};
	struct bundle *b;
	ck_assert_msg(bundle_open(path, &b, &e) == 0, "open %s: %s", path, e.msg);
	return b;
}

static void unpack_ok(const char *bundle, const char *out, unsigned flags)
{
	struct uwerr e = {0};
	struct bundle *b = open_ok(bundle);
	ck_assert_msg(bundle_unpack(b, out, flags, 2, 0, &e) == 0, "unpack %s: %s", bundle, e.msg);
	bundle_close(b);
}

/* Every tensor of two sources: same names, dtypes, shapes and bytes. */
static void assert_same_tensors(const char *const *pa, size_t na, const char *const *pb, size_t nb)
{
	struct uwerr e = {0};
	struct source *a, *b;
	ck_assert_msg(source_open(pa, na, &a, &e) == 0, "%s", e.msg);
	ck_assert_msg(source_open(pb, nb, &b, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(source_count(a), source_count(b));
	ck_assert_uint_eq(source_raw_total(a), source_raw_total(b));
	for (size_t i = 0; i < source_count(a); i++) {
		const struct src_tensor *ta = source_tensor(a, i), *tb = NULL;
		for (size_t k = 0; k < source_count(b) && !tb; k++)
			if (strcmp(source_tensor(b, k)->name, ta->name) == 0)
				tb = source_tensor(b, k);
		ck_assert_msg(tb, "tensor '%s' missing", ta->name);
		ck_assert_int_eq(ta->dtype, tb->dtype);
		ck_assert_int_eq(ta->ndim, tb->ndim);
		ck_assert(memcmp(ta->shape, tb->shape, sizeof(ta->shape[0]) * (size_t)ta->ndim) == 0);
		ck_assert_uint_eq(ta->raw_bytes, tb->raw_bytes);
		void *ra = malloc(ta->raw_bytes + 1), *rb = malloc(tb->raw_bytes + 1);
		ck_assert_msg(source_read(a, i, ra, &e) == 0, "%s", e.msg);
		ck_assert_msg(source_read(b, (size_t)(tb - source_tensor(b, 0)), rb, &e) == 0, "%s", e.msg);
		ck_assert_msg(memcmp(ra, rb, ta->raw_bytes) == 0, "tensor '%s' differs", ta->name);
		free(ra);
		free(rb);
	}
	source_close(a);
	source_close(b);
}

/* ---- random checkpoints ---- */

static uint16_t rand_bf16(uint64_t *s)
{
	uint64_t r = tu_rand(s);
	int exp = 127 - 4;
	while ((r >> 8) & 1 && exp > 100) {   /* geometric: mostly a few exponents */
		exp--;
		r >>= 1;
	}
	if ((tu_rand(s) & 255) == 0)
		return (uint16_t)tu_rand(s);       /* now and then any bit pattern */
	return (uint16_t)((tu_rand(s) & 1) << 15 | (unsigned)exp << 7 | (tu_rand(s) & 127));
}

static void fill(int dtype, unsigned char *p, size_t bytes, int kind, uint64_t *s)
{
	if (kind == 0) {                      /* zeros */
		memset(p, 0, bytes);
	} else if (dtype == UW_DTYPE_BF16 && kind == 1) {
		for (size_t i = 0; i + 1 < bytes; i += 2) {
			uint16_t v = rand_bf16(s);
			memcpy(p + i, &v, 2);
		}
	} else if (dtype == UW_DTYPE_BOOL) {
		for (size_t i = 0; i < bytes; i++)
			p[i] = tu_rand(s) & 1;
	} else {
		for (size_t i = 0; i < bytes; i++)
			p[i] = (unsigned char)tu_rand(s);
	}
}

/* A safetensors file of n random tensors named prefix.K, random dtypes
 * and shapes (zero-sized ones included); meta given. */
static void write_random(const char *path, const char *prefix, size_t n,
			 const struct st_meta *meta, size_t nmeta, uint64_t *s)
{
	struct st_out_tensor *t = calloc(n ? n : 1, sizeof(*t));
	char **names = calloc(n ? n : 1, sizeof(*names));
	struct uwerr e = {0};
	for (size_t i = 0; i < n; i++) {
		ck_assert(asprintf(&names[i], "%s.%zu.weight", prefix, i) > 0);
		t[i].name = names[i];
		t[i].dtype = i % 3 == 0 ? UW_DTYPE_BF16 : 1 + (int)(tu_rand(s) % UW_DTYPE_U64);
		t[i].ndim = (int)(tu_rand(s) % 4);
		for (int d = 0; d < t[i].ndim; d++)
			t[i].shape[d] = tu_rand(s) % 11 == 0 ? 0 : 1 + tu_rand(s) % 97;
	}
	struct st_writer *w;
	ck_assert_msg(st_writer_open(path, t, n, meta, nmeta, NULL, 0, &w, &e) == 0, "%s", e.msg);
	for (size_t i = 0; i < n; i++) {
		size_t bytes = dtype_size(t[i].dtype);
		for (int d = 0; d < t[i].ndim; d++)
			bytes *= t[i].shape[d];
		unsigned char *p = malloc(bytes + 1);
		fill(t[i].dtype, p, bytes, (int)(tu_rand(s) % 3), s);
		ck_assert_msg(st_writer_put(w, i, p, &e) == 0, "%s", e.msg);
		free(p);
	}
	ck_assert_msg(st_writer_close(w, 1, &e) == 0, "%s", e.msg);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(t);
}

/* ---- the fixture ---- */

START_TEST(test_fixture_roundtrip)
{
	int fds = tu_count_fds();
	char *dir = tu_tmpdir(), *in = fixture();
	char *uwb = join(dir, "s.uwb"), *out = join(dir, "s.safetensors");
	struct pack_stats st;
	const char *paths[] = { in };
	pack_ok(paths, 1, uwb, &st);
	char *tmp = join(dir, "s.uwb.tmp");
	ck_assert(!exists(tmp));
	free(tmp);

	struct st_file *f;
	struct uwerr e = {0};
	ck_assert_msg(st_open(in, &f, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(st.ntensors, f->ntensors);
	struct bundle *b = open_ok(uwb);
	ck_assert_uint_eq(b->ntensors, f->ntensors);
	ck_assert_uint_eq(b->nshards, 1);
	ck_assert_ptr_null(b->index_name);
	ck_assert_str_eq(b->shards[0].name, "stories260K.safetensors");
	ck_assert_uint_eq(b->file_size, st.file_bytes);
	uint64_t raw = 0, stored = 0;
	for (size_t i = 0; i < b->ntensors; i++) {
		const struct bundle_tensor *t = &b->tensors[i];
		raw += t->raw_bytes;
		stored += t->length;
		ck_assert_uint_eq(t->offset % BUNDLE_ALIGN, 0);
		/* The rule: BF16 2-D weights use the exponent code. */
		if (t->dtype == UW_DTYPE_BF16 && t->ndim == 2)
			ck_assert_msg(t->enc == REST_EXPHUF, "'%s' stored as %d", t->name, t->enc);
	}
	ck_assert_uint_eq(raw, st.raw_bytes);
	ck_assert_uint_eq(stored, st.stored_bytes);
	ck_assert_msg(st.file_bytes < f->file_size, "bundle %llu bytes, input %llu",
		      (unsigned long long)st.file_bytes, (unsigned long long)f->file_size);
	st_close(f);
	bundle_close(b);

	unpack_ok(uwb, out, 0);
	assert_same_file(in, out);
	/* Payloads go out in checkpoint order: the thread count changes nothing. */
	char *one = join(dir, "one.uwb");
	struct uwerr pe = {0};
	ck_assert_msg(bundle_pack(paths, 1, one, 1, 0, &st, &pe) == 0, "%s", pe.msg);
	assert_same_file(uwb, one);
	free(one);
	const char *pb[] = { uwb };
	assert_same_tensors(paths, 1, pb, 1);

	/* The bundle is known by its magic, not its name. */
	char *disguised = join(dir, "really-a-bundle.safetensors");
	ck_assert_int_eq(rename(uwb, disguised), 0);
	const char *pd[] = { disguised };
	assert_same_tensors(paths, 1, pd, 1);
	tu_rmtree(dir);
	ck_assert_int_eq(tu_count_fds(), fds);
	free(disguised);
	free(in);
	free(uwb);
	free(out);
	free(dir);
}
END_TEST

START_TEST(test_random_roundtrip)
{
	uint64_t s = seed ^ 0x5151;
	for (int round = 0; round < 8; round++) {
		char *dir = tu_tmpdir(), *in = join(dir, "r.safetensors");
		char *uwb = join(dir, "r.uwb"), *out = join(dir, "out.safetensors");
		struct st_meta meta[] = { { "format", "pt" }, { "note", "round \"trip\"\n" } };
		size_t n = tu_rand(&s) % 24;
		write_random(in, "layer", n, meta, round % 2 ? 2 : 0, &s);
		const char *paths[] = { in };
		pack_ok(paths, 1, uwb, NULL);
		unpack_ok(uwb, out, 0);
		assert_same_file(in, out);
		const char *pb[] = { uwb };
		assert_same_tensors(paths, 1, pb, 1);
		tu_rmtree(dir);
		free(in);
		free(uwb);
		free(out);
		free(dir);
	}
}
END_TEST

/* Two shards and their index, as Hugging Face writes them. */
static void write_sharded(const char *dir, uint64_t *s)
{
	struct st_meta meta[] = { { "format", "pt" } };
	char *a = join(dir, "model-00001-of-00002.safetensors");
	char *b = join(dir, "model-00002-of-00002.safetensors");
	write_random(a, "model.layers.0", 7, meta, 1, s);
	write_random(b, "model.layers.1", 5, meta, 1, s);
	struct strbuf idx = {0};
	sb_printf(&idx, "{\n  \"metadata\": {\"total_size\": 1234},\n  \"weight_map\": {");
	for (int i = 0; i < 12; i++)
		sb_printf(&idx, "%s\n    \"model.layers.%d.%d.weight\": \"model-0000%d-of-00002.safetensors\"",
			  i ? "," : "", i < 7 ? 0 : 1, i < 7 ? i : i - 7, i < 7 ? 1 : 2);
	sb_printf(&idx, "\n  }\n}\n");
	char *ip = join(dir, "model.safetensors.index.json");
	ck_assert_int_eq(tu_write_file(ip, idx.s, idx.len), 0);
	sb_free(&idx);
	free(a);
	free(b);
	free(ip);
}

START_TEST(test_index_roundtrip)
{
	int fds = tu_count_fds();
	uint64_t s = seed ^ 0x1d;
	char *dir = tu_tmpdir(), *in = join(dir, "in"), *uwb = join(dir, "m.uwb");
	ck_assert_int_eq(mkdir(in, 0755), 0);
	write_sharded(in, &s);
	char *index = join(in, "model.safetensors.index.json");
	const char *paths[] = { index };
	pack_ok(paths, 1, uwb, NULL);
	struct bundle *b = open_ok(uwb);
	ck_assert_uint_eq(b->nshards, 2);
	ck_assert_uint_eq(b->ntensors, 12);
	ck_assert_str_eq(b->index_name, "model.safetensors.index.json");
	ck_assert(bundle_unpacks_to_dir(b, 0));
	bundle_close(b);

	/* Without --merge: the directory as it was, byte for byte. */
	char *out = join(dir, "out");
	unpack_ok(uwb, out, 0);
	const char *names[] = { "model-00001-of-00002.safetensors",
				"model-00002-of-00002.safetensors",
				"model.safetensors.index.json" };
	for (int i = 0; i < 3; i++) {
		char *x = join(in, names[i]), *y = join(out, names[i]);
		assert_same_file(x, y);
		free(x);
		free(y);
	}
	/* With --merge: one file holding the same tensors and the metadata. */
	char *merged = join(dir, "merged.safetensors");
	unpack_ok(uwb, merged, UNPACK_MERGE);
	const char *pm[] = { merged };
	assert_same_tensors(paths, 1, pm, 1);
	struct st_file *f;
	struct uwerr e = {0};
	ck_assert_msg(st_open(merged, &f, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(f->nmeta, 1);
	ck_assert_str_eq(f->meta[0].key, "format");
	ck_assert_str_eq(f->meta[0].value, "pt");
	st_close(f);

	/* The shards given one by one: no index, still a directory. */
	char *a = join(in, names[0]), *c = join(in, names[1]), *uwb2 = join(dir, "m2.uwb");
	const char *pp[] = { a, c };
	pack_ok(pp, 2, uwb2, NULL);
	b = open_ok(uwb2);
	ck_assert_ptr_null(b->index_name);
	ck_assert(bundle_unpacks_to_dir(b, 0));
	bundle_close(b);
	char *out2 = join(dir, "out2");
	unpack_ok(uwb2, out2, 0);
	for (int i = 0; i < 2; i++) {
		char *x = join(in, names[i]), *y = join(out2, names[i]);
		assert_same_file(x, y);
		free(x);
		free(y);
	}
	char *noindex = join(out2, names[2]);
	ck_assert(!exists(noindex));
	tu_rmtree(dir);
	ck_assert_int_eq(tu_count_fds(), fds);
	free(noindex);
	free(out2);
	free(uwb2);
	free(a);
	free(c);
	free(merged);
	free(out);
	free(index);
	free(in);
	free(uwb);
	free(dir);
}
END_TEST

/* ---- malformed bundles ---- */

/* A bundle in memory and where its parts are, found by following
 * docs/FORMAT.md rather than the reader. */
struct image {
	unsigned char *p;
	size_t len;
	uint64_t dir_off, dir_len;
	uint32_t ntensors, nshards;
	size_t trec[64];             /* file offset of each tensor record */
	size_t srec[4];              /* file offset of each shard record */
};

static uint32_t rd32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const unsigned char *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static void wr32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void wr64(unsigned char *p, uint64_t v)
{
	wr32(p, (uint32_t)v);
	wr32(p + 4, (uint32_t)(v >> 32));
}

static void image_load(struct image *im, const char *path)
{
	memset(im, 0, sizeof(*im));
	im->p = tu_read_file(path, &im->len);
	ck_assert(im->p && im->len > 64);
	ck_assert(memcmp(im->p, "\x89UWB\r\n\x1a\n", 8) == 0);
	im->dir_off = rd64(im->p + 24);
	im->dir_len = rd64(im->p + 32);
	im->ntensors = rd32(im->p + 44);
	im->nshards = rd32(im->p + 48);
	ck_assert(im->ntensors <= 64 && im->nshards <= 4);
	size_t at = im->dir_off;
	at += 8 + rd32(im->p + at) + rd32(im->p + at + 4);      /* index record */
	for (uint32_t s = 0; s < im->nshards; s++) {
		im->srec[s] = at;
		at += 8 + rd32(im->p + at) + rd32(im->p + at + 4);
	}
	for (uint32_t i = 0; i < im->ntensors; i++) {
		im->trec[i] = at;
		at += 44 + 8 * (size_t)im->p[at + 9] + rd32(im->p + at);
	}
	ck_assert_uint_eq(at, im->len);
}

/* Recompute the directory and header checksums after an edit. */
static void image_reseal(struct image *im)
{
	wr32(im->p + 40, crc32c(0, im->p + im->dir_off, im->dir_len));
	wr32(im->p + 60, crc32c(0, im->p, 60));
}

/* Parse im; expect failure with a message containing want. */
static void expect_parse_error(const struct image *im, const char *want)
{
	struct uwerr e = {0};
	struct bundle *b = NULL;
	int rc = bundle_parse(im->p, im->len, &b, &e);
	ck_assert_msg(rc < 0, "parsed a bundle that should fail with '%s'", want);
	ck_assert_ptr_null(b);
	ck_assert_msg(strstr(e.msg, want), "error '%s' does not say '%s'", e.msg, want);
}

/* Pack the fixture into dir/f.uwb and load it. */
static char *packed_fixture(const char *dir, struct image *im)
{
	char *in = fixture(), *uwb = join(dir, "f.uwb");
	const char *paths[] = { in };
	pack_ok(paths, 1, uwb, NULL);
	image_load(im, uwb);
	free(in);
	return uwb;
}

START_TEST(test_truncated)
{
	char *dir = tu_tmpdir();
	struct image im;
	char *uwb = packed_fixture(dir, &im);
	char *cut = join(dir, "cut.uwb");
	uint64_t s = seed ^ 0x7c;
	int fds = tu_count_fds();
	for (size_t k = 0; k < 400; k++) {
		/* Every cut near the header and the directory, random ones elsewhere. */
		size_t len = k < 100 ? k : k < 200 ? im.dir_off + (k - 100) * im.dir_len / 100
						   : tu_rand(&s) % im.len;
		struct uwerr e = {0};
		struct bundle *b = NULL;
		ck_assert_int_lt(bundle_parse(im.p, len, &b, &e), 0);
		ck_assert_msg(e.msg[0], "no message for a cut at %zu", len);
		ck_assert_int_eq(tu_write_file(cut, im.p, len), 0);
		ck_assert_int_lt(bundle_open(cut, &b, &e), 0);
		ck_assert_ptr_null(b);
		if (len >= 64)
			ck_assert_msg(strstr(e.msg, "truncated"), "cut at %zu: %s", len, e.msg);
	}
	ck_assert_int_eq(tu_count_fds(), fds);
	tu_rmtree(dir);
	free(im.p);
	free(cut);
	free(uwb);
	free(dir);
}
END_TEST

START_TEST(test_checksums)
{
	char *dir = tu_tmpdir();
	struct image im;
	char *uwb = packed_fixture(dir, &im);
	struct uwerr e = {0};
	struct bundle *b;

	im.p[20] ^= 1;                               /* inside file_size */
	expect_parse_error(&im, "header CRC-32C mismatch");
	im.p[20] ^= 1;
	im.p[im.dir_off + im.dir_len / 2] ^= 0x10;
	expect_parse_error(&im, "directory CRC-32C mismatch");
	im.p[im.dir_off + im.dir_len / 2] ^= 0x10;

	/* A flipped payload byte: the bundle opens, that tensor does not read. */
	size_t t = 7, at = im.trec[t];
	uint64_t off = rd64(im.p + at + 20), len = rd64(im.p + at + 28);
	im.p[off + len / 2] ^= 0x40;
	ck_assert_int_eq(bundle_parse(im.p, im.len, &b, &e), 0);
	void *raw = malloc(b->tensors[t].raw_bytes);
	ck_assert_int_lt(bundle_read_tensor(b, t, raw, 1, &e), 0);
	ck_assert_msg(strstr(e.msg, "payload CRC-32C mismatch") && strstr(e.msg, b->tensors[t].name),
		      "%s", e.msg);
	void *other = malloc(b->tensors[t + 1].raw_bytes);
	ck_assert_int_eq(bundle_read_tensor(b, t + 1, other, 1, &e), 0);
	free(other);
	bundle_close(b);

	/* The same flip with the payload CRC made to match: the decoded
	 * bytes' CRC catches it, or the decoder refuses the payload. */
	int caught_by_raw = 0;
	for (uint64_t k = 0; k < len && !caught_by_raw; k++) {
		struct image m = im;
		m.p = malloc(im.len);
		memcpy(m.p, im.p, im.len);
		m.p[off + len / 2] ^= 0x40;              /* undo the flip above */
		m.p[off + len - 1 - k] ^= 0x01;
		wr32(m.p + at + 12, crc32c(0, m.p + off, len));
		image_reseal(&m);
		ck_assert_int_eq(bundle_parse(m.p, m.len, &b, &e), 0);
		ck_assert_int_lt(bundle_read_tensor(b, t, raw, 1, &e), 0);
		caught_by_raw = strstr(e.msg, "decoded bytes CRC-32C mismatch") != NULL;
		bundle_close(b);
		free(m.p);
	}
	ck_assert_msg(caught_by_raw, "no flip reached the decoded bytes' CRC");
	free(raw);
	tu_rmtree(dir);
	free(im.p);
	free(uwb);
	free(dir);
}
END_TEST

/* Apply edit to a copy of im's directory, reseal, expect want. */
static void expect_dir_edit(const struct image *im, size_t at, int width, uint64_t v,
			    const char *want)
{
	struct image m = *im;
	m.p = malloc(im->len);
	memcpy(m.p, im->p, im->len);
	if (width == 4)
		wr32(m.p + at, (uint32_t)v);
	else if (width == 8)
		wr64(m.p + at, v);
	else
		m.p[at] = (unsigned char)v;
	image_reseal(&m);
	expect_parse_error(&m, want);
	free(m.p);
}

START_TEST(test_huge_and_overlapping)
{
	char *dir = tu_tmpdir();
	struct image im;
	char *uwb = packed_fixture(dir, &im);
	size_t t0 = im.trec[0], t1 = im.trec[1], s0 = im.srec[0];

	/* Counts in the header. */
	expect_dir_edit(&im, 44, 4, 0xffffffffu, "more than the limit");
	expect_dir_edit(&im, 44, 4, BUNDLE_MAX_TENSORS, "cannot hold");
	expect_dir_edit(&im, 48, 4, 0, "shards");
	expect_dir_edit(&im, 48, 4, 4000, "cannot hold");
	expect_dir_edit(&im, 32, 8, UINT64_MAX - 8, "does not end the file");
	expect_dir_edit(&im, 24, 8, UINT64_MAX - 8, "does not end the file");
	/* Lengths in the directory. */
	expect_dir_edit(&im, s0, 4, 0xfffffff0u, "shard 0");
	expect_dir_edit(&im, s0 + 4, 4, 0xfffffff0u, "shard 0");
	expect_dir_edit(&im, t0, 4, 0xfffffff0u, "name of");
	expect_dir_edit(&im, t0 + 28, 8, UINT64_MAX - 63, "payload");      /* length */
	expect_dir_edit(&im, t0 + 20, 8, UINT64_MAX - 63, "payload");      /* offset */
	expect_dir_edit(&im, t0 + 20, 8, 65, "aligned");
	expect_dir_edit(&im, t0 + 36, 8, UINT64_MAX, "raw bytes");         /* raw_bytes */
	expect_dir_edit(&im, t0 + 44, 8, UINT64_MAX / 2, "shape");         /* shape[0] */
	expect_dir_edit(&im, t0 + 9, 1, 200, "dimensions");
	expect_dir_edit(&im, t0 + 8, 1, 99, "dtype");
	expect_dir_edit(&im, t0 + 10, 1, 77, "encoding");
	expect_dir_edit(&im, t0 + 4, 4, 5, "shard");
	/* Two payloads at one offset. */
	expect_dir_edit(&im, t1 + 20, 8, rd64(im.p + t0 + 20), "overlap");
	/* The same name twice: a tensor renamed to an earlier one's name of
	 * the same length. */
	struct image m = im;
	m.p = malloc(im.len);
	memcpy(m.p, im.p, im.len);
	size_t i = 0, k = 0;
	for (k = 1; k < im.ntensors; k++) {
		for (i = 0; i < k && rd32(im.p + im.trec[i]) != rd32(im.p + im.trec[k]); i++)
			;
		if (i < k)
			break;
	}
	ck_assert(k < im.ntensors);
	size_t ri = im.trec[i], rk = im.trec[k];
	memcpy(m.p + rk + 44 + 8 * m.p[rk + 9], im.p + ri + 44 + 8 * im.p[ri + 9], rd32(im.p + ri));
	image_reseal(&m);
	expect_parse_error(&m, "appears twice");
	free(m.p);
	tu_rmtree(dir);
	free(im.p);
	free(uwb);
	free(dir);
}
END_TEST

/* Whether file offset x lies in padding: in no header, payload or directory. */
static int in_padding(const struct bundle *b, const struct image *im, size_t x)
{
	if (x < BUNDLE_HEADER_SIZE || x >= im->dir_off)
		return 0;
	for (size_t i = 0; i < b->ntensors; i++)
		if (x >= b->tensors[i].offset && x < b->tensors[i].offset + b->tensors[i].length)
			return 0;
	return 1;
}

START_TEST(test_random_flips)
{
	char *dir = tu_tmpdir();
	struct image im;
	char *uwb = packed_fixture(dir, &im);
	struct uwerr e = {0};
	struct bundle *good;
	ck_assert_int_eq(bundle_parse(im.p, im.len, &good, &e), 0);
	void **want = calloc(good->ntensors, sizeof(*want));
	uint64_t most = 0;
	for (size_t i = 0; i < good->ntensors; i++) {
		want[i] = malloc(good->tensors[i].raw_bytes);
		ck_assert_int_eq(bundle_read_tensor(good, i, want[i], 1, &e), 0);
		if (good->tensors[i].raw_bytes > most)
			most = good->tensors[i].raw_bytes;
	}
	void *raw = malloc(most);
	uint64_t s = seed ^ 0xf1;
	unsigned char *m = malloc(im.len);
	int padding_hits = 0;
	for (int round = 0; round < 1500; round++) {
		memcpy(m, im.p, im.len);
		size_t x = tu_rand(&s) % im.len;
		m[x] ^= (unsigned char)(1u << (tu_rand(&s) % 8));
		struct bundle *b;
		int pad = in_padding(good, &im, x), failed = 0;
		if (bundle_parse(m, im.len, &b, &e) < 0) {
			failed = 1;
		} else {
			for (size_t i = 0; i < b->ntensors; i++) {
				if (bundle_read_tensor(b, i, raw, 1, &e) < 0) {
					failed = 1;
					continue;
				}
				ck_assert_msg(memcmp(raw, want[i], b->tensors[i].raw_bytes) == 0,
					      "flip at %zu: tensor '%s' read back wrong", x,
					      b->tensors[i].name);
			}
			bundle_close(b);
		}
		ck_assert_msg(failed == !pad, "flip at %zu (%s): %s", x,
			      pad ? "padding" : "checked bytes", failed ? e.msg : "not detected");
		padding_hits += pad;
	}
	/* Flips in padding happen too (one payload in a few ends unaligned). */
	fprintf(stderr, "random flips: %d of 1500 in padding\n", padding_hits);
	for (size_t i = 0; i < good->ntensors; i++)
		free(want[i]);
	free(want);
	free(raw);
	free(m);
	bundle_close(good);
	tu_rmtree(dir);
	free(im.p);
	free(uwb);
	free(dir);
}
END_TEST

/* Directory bytes changed under resealed checksums, as a crafted file would
 * be: the parser must refuse or give a bundle whose every tensor reads
 * back or fails cleanly. */
START_TEST(test_resealed_flips)
{
	char *dir = tu_tmpdir();
	struct image im;
	char *uwb = packed_fixture(dir, &im);
	uint64_t s = seed ^ 0x5ea1;
	struct image m = im;
	m.p = malloc(im.len);
	int parsed = 0;
	for (int round = 0; round < 1500; round++) {
		memcpy(m.p, im.p, im.len);
		for (int k = 1 + (int)(tu_rand(&s) % 3); k > 0; k--)
			m.p[im.dir_off + tu_rand(&s) % im.dir_len] ^= (unsigned char)(1u << (tu_rand(&s) % 8));
		image_reseal(&m);
		struct uwerr e = {0};
		struct bundle *b;
		if (bundle_parse(m.p, m.len, &b, &e) < 0) {
			ck_assert_msg(e.msg[0], "refused without a message");
			continue;
		}
		parsed++;
		for (size_t i = 0; i < b->ntensors; i++) {
			void *raw = malloc(b->tensors[i].raw_bytes + 1);
			if (bundle_read_tensor(b, i, raw, 1, &e) < 0)
				ck_assert_msg(e.msg[0], "tensor %zu failed without a message", i);
			free(raw);
		}
		bundle_close(b);
	}
	fprintf(stderr, "resealed flips: %d of 1500 still parsed\n", parsed);
	free(m.p);
	tu_rmtree(dir);
	free(im.p);
	free(uwb);
	free(dir);
}
END_TEST

/* ---- the writer ---- */

static struct bundle_tensor raw_tensor(const char *name, uint32_t shard, const void *data,
				       size_t n)
{
	struct bundle_tensor t = { .name = (char *)name, .dtype = UW_DTYPE_U8, .ndim = 1,
				   .shard = shard, .raw_bytes = n, .raw_crc = crc32c(0, data, n) };
	t.shape[0] = n;
	return t;
}

START_TEST(test_writer)
{
	int fds = tu_count_fds();
	char *dir = tu_tmpdir(), *path = join(dir, "w.uwb"), *tmp = join(dir, "w.uwb.tmp");
	struct uwerr e = {0};
	struct bundle_writer *w;
	const char *hdr = "{\"x\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}";
	unsigned char data[3] = { 1, 2, 3 };
	struct bundle_tensor t = raw_tensor("x", 0, data, 3);

	/* Abandoned: nothing left behind. */
	ck_assert_int_eq(bundle_writer_open(path, &w, &e), 0);
	ck_assert(exists(tmp));
	ck_assert_int_eq(bundle_writer_shard(w, "x.safetensors", hdr, strlen(hdr), &e), 0);
	ck_assert_int_eq(bundle_writer_put(w, &t, REST_RAW, data, 3, &e), 0);
	ck_assert_int_eq(bundle_writer_close(w, 0, &e), 0);
	ck_assert(!exists(tmp) && !exists(path));

	/* A directory the reader would refuse is never written. */
	ck_assert_int_eq(bundle_writer_open(path, &w, &e), 0);
	ck_assert_int_eq(bundle_writer_shard(w, "x.safetensors", hdr, strlen(hdr), &e), 0);
	ck_assert_int_eq(bundle_writer_put(w, &t, REST_RAW, data, 3, &e), 0);
	ck_assert_int_eq(bundle_writer_put(w, &t, REST_RAW, data, 3, &e), 0);
	ck_assert_int_lt(bundle_writer_close(w, 1, &e), 0);
	ck_assert_msg(strstr(e.msg, "appears twice"), "%s", e.msg);
	ck_assert(!exists(tmp) && !exists(path));
	ck_assert_int_eq(bundle_writer_open(path, &w, &e), 0);
	ck_assert_int_lt(bundle_writer_shard(w, "../x.safetensors", hdr, strlen(hdr), &e), 0);
	ck_assert_int_lt(bundle_writer_close(w, 1, &e), 0);
	ck_assert(!exists(tmp) && !exists(path));

	/* A raw payload whose bytes changed under an updated payload CRC:
	 * the raw CRC still holds the truth. */
	ck_assert_int_eq(bundle_writer_open(path, &w, &e), 0);
	ck_assert_int_eq(bundle_writer_shard(w, "x.safetensors", hdr, strlen(hdr), &e), 0);
	unsigned char bad[3] = { 1, 2, 4 };
	ck_assert_int_eq(bundle_writer_put(w, &t, REST_RAW, bad, 3, &e), 0);
	ck_assert_int_eq(bundle_writer_close(w, 1, &e), 0);
	ck_assert(!exists(tmp) && exists(path));
	struct bundle *b = open_ok(path);
	unsigned char got[3];
	ck_assert_int_lt(bundle_read_tensor(b, 0, got, 1, &e), 0);
	ck_assert_msg(strstr(e.msg, "tensor 'x': decoded bytes CRC-32C mismatch"), "%s", e.msg);
	bundle_close(b);

	/* unpack checks the stored header against the tensors. */
	const char *other = "{\"y\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}";
	ck_assert_int_eq(bundle_writer_open(path, &w, &e), 0);
	ck_assert_int_eq(bundle_writer_shard(w, "x.safetensors", other, strlen(other), &e), 0);
	ck_assert_int_eq(bundle_writer_put(w, &t, REST_RAW, data, 3, &e), 0);
	ck_assert_int_eq(bundle_writer_close(w, 1, &e), 0);
	b = open_ok(path);
	char *out = join(dir, "x.safetensors"), *outtmp = join(dir, "x.safetensors.tmp");
	ck_assert_int_lt(bundle_unpack(b, out, 0, 1, 0, &e), 0);
	ck_assert_msg(strstr(e.msg, "'x'"), "%s", e.msg);
	ck_assert(!exists(out) && !exists(outtmp));
	/* An output the writer cannot create. */
	ck_assert_int_lt(bundle_unpack(b, "/nonexistent/dir/x.safetensors", 0, 1, 0, &e), 0);
	bundle_close(b);

	/* Pack errors leave no output either. */
	const char *missing[] = { "/nonexistent/model.safetensors" };
	struct pack_stats st;
	ck_assert_int_lt(bundle_pack(missing, 1, path, 1, 0, &st, &e), 0);
	ck_assert_msg(strstr(e.msg, "/nonexistent/model.safetensors"), "%s", e.msg);

	/* source_open: a bundle must come alone. */
	struct source *src;
	char *fx = fixture();
	const char *two[] = { fx, path };
	ck_assert_int_lt(source_open(two, 2, &src, &e), 0);
	ck_assert_msg(strstr(e.msg, "only path"), "%s", e.msg);
	tu_rmtree(dir);
	ck_assert_int_eq(tu_count_fds(), fds);
	free(fx);
	free(out);
	free(outtmp);
	free(path);
	free(tmp);
	free(dir);
}
END_TEST

int main(void)
{
	seed = tu_seed();
	Suite *s = suite_create("bundle");
	TCase *tc = tu_tcase(s, "bundle", 300);
	tcase_add_test(tc, test_fixture_roundtrip);
	tcase_add_test(tc, test_random_roundtrip);
	tcase_add_test(tc, test_index_roundtrip);
	tcase_add_test(tc, test_truncated);
	tcase_add_test(tc, test_checksums);
	tcase_add_test(tc, test_huge_and_overlapping);
	tcase_add_test(tc, test_random_flips);
	tcase_add_test(tc, test_resealed_flips);
	tcase_add_test(tc, test_writer);
	return tu_run(s);
}
