/* check_safetensors: the reader on the real fixture and on every malformed
 * header, the writer's round trips (generated and verbatim headers), and
 * sharded checkpoints through an index. */
#include "config.h"  /* first: _GNU_SOURCE, for asprintf */

#include <check.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/dtype.h"
#include "format/safetensors.h"
#include "tests/testutil.h"

/* What data/README.md and the fixture's own listing say about it. */
#define FIX_SIZE 524920u
#define FIX_HEADER 4848u
#define FIX_LAYERS 5
#define FIX_TENSORS (2 + 9 * FIX_LAYERS)

static char *fixture_path(void)
{
	char *p;
	ck_assert_int_ge(asprintf(&p, "%s/data/stories260K.safetensors", tu_srcdir()), 0);
	return p;
}

static char *path_in(const char *dir, const char *name)
{
	char *p;
	ck_assert_int_ge(asprintf(&p, "%s/%s", dir, name), 0);
	return p;
}

static int exists(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0;
}

static const struct st_tensor *find(const struct st_file *f, const char *name)
{
	for (size_t i = 0; i < f->ntensors; i++)
		if (strcmp(f->tensors[i].name, name) == 0)
			return &f->tensors[i];
	return NULL;
}

/* The tensors, sorted by begin, tile [0, file_size - data_start) exactly. */
static void check_tiling(const struct st_file *f)
{
	uint64_t at = 0;
	for (size_t i = 0; i < f->ntensors; i++) {
		ck_assert_uint_eq(f->tensors[i].begin, at);
		ck_assert_uint_ge(f->tensors[i].end, f->tensors[i].begin);
		at = f->tensors[i].end;
	}
	ck_assert_uint_eq(at, f->file_size - f->data_start);
}

/* A file image: the 8-byte length, the header, then data_len bytes of data. */
static unsigned char *image(const char *header, size_t data_len, size_t *len)
{
	size_t h = strlen(header);
	*len = 8 + h + data_len;
	unsigned char *b = malloc(*len);
	ck_assert_ptr_nonnull(b);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)h >> (8 * i));
	memcpy(b + 8, header, h);
	for (size_t i = 0; i < data_len; i++)
		b[8 + h + i] = (unsigned char)(i * 7 + 1);
	return b;
}

static struct st_file *parse_ok(const char *header, size_t data_len)
{
	size_t len;
	unsigned char *b = image(header, data_len, &len);
	struct st_file *f = NULL;
	struct uwerr e = {0};
	int r = st_parse(b, len, len, &f, &e);
	ck_assert_msg(r == 0, "%s: %s", header, e.msg);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(f->fd, -1);
	ck_assert_uint_eq(f->header_len, strlen(header));
	ck_assert_mem_eq(f->header, header, f->header_len);
	free(b);
	return f;
}

static void parse_bad(const char *header, size_t data_len, const char *why)
{
	size_t len;
	unsigned char *b = image(header, data_len, &len);
	struct st_file *f = (struct st_file *)1;
	struct uwerr e = {0};
	int r = st_parse(b, len, len, &f, &e);
	ck_assert_msg(r < 0, "accepted: %s", header);
	ck_assert_ptr_null(f);
	ck_assert_int_eq(-r, e.code);
	ck_assert_msg(strstr(e.msg, why), "%s: message '%s' lacks '%s'", header, e.msg, why);
	free(b);
}

START_TEST(fixture)
{
	int fds = tu_count_fds();
	char *path = fixture_path(), name[128];
	struct st_file *f;
	struct uwerr e = {0};
	ck_assert_msg(st_open(path, &f, &e) == 0, "%s", e.msg);
	ck_assert_str_eq(f->path, path);
	ck_assert_int_ge(f->fd, 0);
	ck_assert_uint_eq(f->file_size, FIX_SIZE);
	ck_assert_uint_eq(f->header_len, FIX_HEADER);
	ck_assert_uint_eq(f->data_start, 8 + FIX_HEADER);
	ck_assert_uint_eq(f->ntensors, FIX_TENSORS);
	ck_assert_uint_eq(f->nmeta, 0);
	ck_assert_int_eq(f->header[0], '{');
	check_tiling(f);

	/* Every tensor of the Llama layout (data/README.md: dim 64, hidden 172,
	 * 5 layers, 4 KV heads of 8, vocab 512), all BF16. */
	static const struct {
		const char *fmt;
		int ndim;
		uint64_t shape[2];
	} per_layer[] = {
		{"model.layers.%d.input_layernorm.weight", 1, {64}},
		{"model.layers.%d.self_attn.q_proj.weight", 2, {64, 64}},
		{"model.layers.%d.self_attn.k_proj.weight", 2, {32, 64}},
		{"model.layers.%d.self_attn.v_proj.weight", 2, {32, 64}},
		{"model.layers.%d.self_attn.o_proj.weight", 2, {64, 64}},
		{"model.layers.%d.post_attention_layernorm.weight", 1, {64}},
		{"model.layers.%d.mlp.gate_proj.weight", 2, {172, 64}},
		{"model.layers.%d.mlp.down_proj.weight", 2, {64, 172}},
		{"model.layers.%d.mlp.up_proj.weight", 2, {172, 64}},
	};
	for (int l = 0; l < FIX_LAYERS; l++)
		for (size_t k = 0; k < sizeof(per_layer) / sizeof(per_layer[0]); k++) {
			snprintf(name, sizeof(name), per_layer[k].fmt, l);
			const struct st_tensor *t = find(f, name);
			ck_assert_msg(t != NULL, "%s missing", name);
			ck_assert_int_eq(t->dtype, UW_DTYPE_BF16);
			ck_assert_int_eq(t->ndim, per_layer[k].ndim);
			for (int d = 0; d < t->ndim; d++)
				ck_assert_uint_eq(t->shape[d], per_layer[k].shape[d]);
		}
	const struct st_tensor *emb = find(f, "model.embed_tokens.weight"), *norm = find(f, "model.norm.weight");
	ck_assert_ptr_nonnull(emb);
	ck_assert_ptr_nonnull(norm);
	ck_assert_int_eq(emb->ndim, 2);
	ck_assert_uint_eq(emb->shape[0], 512);
	ck_assert_uint_eq(emb->shape[1], 64);
	ck_assert_uint_eq(emb->begin, 0);
	ck_assert_ptr_eq(emb, &f->tensors[0]);
	ck_assert_ptr_eq(norm, &f->tensors[FIX_TENSORS - 1]);
	const struct st_tensor *gate = find(f, "model.layers.0.mlp.gate_proj.weight");
	ck_assert_uint_eq(st_tensor_bytes(gate), 172 * 64 * 2);

	/* st_read_tensor gives the bytes at data_start + begin of the file... */
	size_t flen;
	unsigned char *file = tu_read_file(path, &flen);
	ck_assert_uint_eq(flen, FIX_SIZE);
	for (size_t i = 0; i < f->ntensors; i++) {
		const struct st_tensor *t = &f->tensors[i];
		unsigned char *buf = malloc(st_tensor_bytes(t));
		ck_assert_int_eq(st_read_tensor(f, t, buf, &e), 0);
		ck_assert_mem_eq(buf, file + f->data_start + t->begin, st_tensor_bytes(t));
		free(buf);
	}
	/* ...and those are the float32 weights of stories260K.bin rounded to BF16
	 * (nearest even): the token embedding follows the 7-int32 header. */
	char *bin_path = path_in(tu_srcdir(), "data/stories260K.bin");
	size_t blen;
	unsigned char *bin = tu_read_file(bin_path, &blen);
	ck_assert_uint_ge(blen, 28 + 512 * 64 * 4);
	uint16_t *bf = malloc(st_tensor_bytes(emb));
	ck_assert_int_eq(st_read_tensor(f, emb, bf, &e), 0);
	for (size_t i = 0; i < 512 * 64; i++) {
		uint32_t u;
		memcpy(&u, bin + 28 + 4 * i, 4);
		uint16_t want = (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
		ck_assert_msg(bf[i] == want, "embedding[%zu]: %04x, float32 %08x rounds to %04x", i, bf[i], u, want);
	}
	free(bf);
	free(bin);
	free(bin_path);
	free(file);
	st_close(f);
	free(path);
	ck_assert_int_eq(tu_count_fds(), fds);
}
END_TEST

/* Rewrite the fixture tensor by tensor, in shuffled order, through the
 * writer: with the fixture's own header (verbatim) and with a generated
 * one. Both must give back the fixture byte for byte. */
static void rewrite_fixture(int verbatim)
{
	int fds = tu_count_fds();
	uint64_t seed = tu_seed();
	char *path = fixture_path(), *dir = tu_tmpdir(), *out = path_in(dir, "out.safetensors");
	struct st_file *f;
	struct uwerr e = {0};
	ck_assert_int_eq(st_open(path, &f, &e), 0);
	size_t flen, n = f->ntensors;
	unsigned char *file = tu_read_file(path, &flen);
	struct st_out_tensor *t = calloc(n, sizeof(*t));
	size_t *order = malloc(n * sizeof(*order));
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	/* A verbatim header fixes the layout whatever the order given; a
	 * generated one lays out in the order given, so keep the file's. */
	for (size_t i = n; verbatim && i > 1; i--) {
		size_t j = tu_rand(&seed) % i, x = order[i - 1];
		order[i - 1] = order[j];
		order[j] = x;
	}
	for (size_t i = 0; i < n; i++) {
		const struct st_tensor *s = &f->tensors[order[i]];
		t[i] = (struct st_out_tensor){.name = s->name, .dtype = s->dtype, .ndim = s->ndim};
		memcpy(t[i].shape, s->shape, sizeof(s->shape));
	}
	struct st_writer *w;
	int r = st_writer_open(out, t, n, NULL, 0, verbatim ? f->header : NULL, verbatim ? f->header_len : 0, &w, &e);
	ck_assert_msg(r == 0, "%s", e.msg);
	for (size_t i = 0; i < n; i++) {
		const struct st_tensor *s = &f->tensors[order[i]];
		ck_assert_uint_eq(t[i].begin, s->begin);
		ck_assert_uint_eq(t[i].end, s->end);
	}
	for (size_t k = n; k > 1; k--) {  /* put in another random order */
		size_t j = tu_rand(&seed) % k, x = order[k - 1];
		order[k - 1] = order[j];
		order[j] = x;
	}
	for (size_t k = 0; k < n; k++) {
		size_t i = order[k];
		ck_assert_int_eq(st_writer_put(w, i, file + f->data_start + t[i].begin, &e), 0);
	}
	ck_assert(!exists(out));
	ck_assert_msg(st_writer_close(w, 1, &e) == 0, "%s", e.msg);
	char *tmp = path_in(dir, "out.safetensors.tmp");
	ck_assert(!exists(tmp));
	size_t olen;
	unsigned char *copy = tu_read_file(out, &olen);
	ck_assert_uint_eq(olen, flen);
	ck_assert_msg(memcmp(copy, file, flen) == 0, "rewritten file differs from the fixture");
	struct stat sb;
	ck_assert_int_eq(stat(out, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 0777, 0644 & ~umask(022));
	free(copy);
	free(tmp);
	free(order);
	free(t);
	free(file);
	st_close(f);
	tu_rmtree(dir);
	free(dir);
	free(out);
	free(path);
	ck_assert_int_eq(tu_count_fds(), fds);
}

START_TEST(rewrite_verbatim)
{
	rewrite_fixture(1);
}
END_TEST

START_TEST(rewrite_generated)
{
	rewrite_fixture(0);
}
END_TEST

/* Random tensors of every dtype, random shapes (scalars, zero-size, up to 4
 * dims) and random metadata: write, then read back everything. */
START_TEST(roundtrip)
{
	int fds = tu_count_fds();
	uint64_t seed = tu_seed();
	char *dir = tu_tmpdir();
	for (int round = 0; round < 30; round++) {
		char *out = path_in(dir, "rt.safetensors");
		size_t n = tu_rand(&seed) % 12, nmeta = round % 3 ? tu_rand(&seed) % 4 : 0;
		struct st_out_tensor *t = calloc(n ? n : 1, sizeof(*t));
		char **names = calloc(n ? n : 1, sizeof(*names));
		unsigned char **data = calloc(n ? n : 1, sizeof(*data));
		struct st_meta *meta = calloc(nmeta ? nmeta : 1, sizeof(*meta));
		for (size_t i = 0; i < nmeta; i++) {
			ck_assert_int_ge(asprintf(&meta[i].key, "k%zu \"q\\ \xc3\xa9", i), 0);
			ck_assert_int_ge(asprintf(&meta[i].value, "v%llu\n\t", (unsigned long long)tu_rand(&seed)), 0);
		}
		for (size_t i = 0; i < n; i++) {
			ck_assert_int_ge(asprintf(&names[i], "t.%zu/\"%llx\"\xe2\x82\xac", i,
						  (unsigned long long)tu_rand(&seed)), 0);
			t[i].name = names[i];
			t[i].dtype = 1 + (int)(tu_rand(&seed) % (DT_COUNT - 1));
			t[i].ndim = (int)(tu_rand(&seed) % 5);
			for (int d = 0; d < t[i].ndim; d++)
				t[i].shape[d] = tu_rand(&seed) % 9 == 0 ? 0 : 1 + tu_rand(&seed) % 7;
		}
		struct st_writer *w;
		struct uwerr e = {0};
		ck_assert_msg(st_writer_open(out, t, n, meta, nmeta, NULL, 0, &w, &e) == 0, "%s", e.msg);
		uint64_t at = 0;
		for (size_t i = 0; i < n; i++) {
			uint64_t bytes = dtype_size(t[i].dtype);
			for (int d = 0; d < t[i].ndim; d++)
				bytes *= t[i].shape[d];
			ck_assert_uint_eq(t[i].begin, at);  /* contiguous, in the order given */
			ck_assert_uint_eq(t[i].end, at + bytes);
			at += bytes;
			data[i] = malloc(bytes ? bytes : 1);
			for (uint64_t b = 0; b < bytes; b++)
				data[i][b] = (unsigned char)tu_rand(&seed);
		}
		for (size_t k = 0; k < n; k++) {
			size_t i = n - 1 - k;
			ck_assert_int_eq(st_writer_put(w, i, data[i], &e), 0);
		}
		ck_assert_msg(st_writer_close(w, 1, &e) == 0, "%s", e.msg);

		struct st_file *f;
		ck_assert_msg(st_open(out, &f, &e) == 0, "%s", e.msg);
		ck_assert_uint_eq(f->ntensors, n);
		ck_assert_uint_eq(f->header_len % 8, 0);
		if (nmeta)
			ck_assert_int_eq(strncmp(f->header, "{\"__metadata__\":{", 17), 0);
		ck_assert_uint_eq(f->nmeta, nmeta);
		for (size_t i = 0; i < nmeta; i++) {
			ck_assert_str_eq(f->meta[i].key, meta[i].key);
			ck_assert_str_eq(f->meta[i].value, meta[i].value);
		}
		check_tiling(f);
		for (size_t i = 0; i < n; i++) {
			const struct st_tensor *r = find(f, names[i]);
			ck_assert_msg(r != NULL, "%s missing", names[i]);
			ck_assert_int_eq(r->dtype, t[i].dtype);
			ck_assert_int_eq(r->ndim, t[i].ndim);
			for (int d = 0; d < r->ndim; d++)
				ck_assert_uint_eq(r->shape[d], t[i].shape[d]);
			ck_assert_uint_eq(r->begin, t[i].begin);
			ck_assert_uint_eq(r->end, t[i].end);
			unsigned char *buf = malloc(st_tensor_bytes(r) + 1);
			ck_assert_int_eq(st_read_tensor(f, r, buf, &e), 0);
			ck_assert_mem_eq(buf, data[i], st_tensor_bytes(r));
			free(buf);
		}
		/* The same header, given verbatim, writes the same file. */
		char *again = path_in(dir, "again.safetensors");
		ck_assert_msg(st_writer_open(again, t, n, meta, nmeta, f->header, f->header_len, &w, &e) == 0, "%s",
			      e.msg);
		for (size_t i = 0; i < n; i++)
			ck_assert_int_eq(st_writer_put(w, i, data[i], &e), 0);
		ck_assert_int_eq(st_writer_close(w, 1, &e), 0);
		size_t l1, l2;
		unsigned char *b1 = tu_read_file(out, &l1), *b2 = tu_read_file(again, &l2);
		ck_assert_uint_eq(l1, l2);
		ck_assert_mem_eq(b1, b2, l1);
		free(b1);
		free(b2);
		unlink(again);
		free(again);
		st_close(f);
		unlink(out);
		for (size_t i = 0; i < n; i++) {
			free(names[i]);
			free(data[i]);
		}
		for (size_t i = 0; i < nmeta; i++) {
			free(meta[i].key);
			free(meta[i].value);
		}
		free(meta);
		free(data);
		free(names);
		free(t);
		free(out);
	}
	tu_rmtree(dir);
	free(dir);
	ck_assert_int_eq(tu_count_fds(), fds);
}
END_TEST

START_TEST(legal_edges)
{
	/* No tensors at all. */
	struct st_file *f = parse_ok("{}", 0);
	ck_assert_uint_eq(f->ntensors, 0);
	ck_assert_uint_eq(f->data_start, 10);
	st_close(f);
	/* Zero-size tensors: first, several at one offset, last; padding
	 * spaces; metadata anywhere; a scalar (shape []). */
	f = parse_ok("{\"z1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
		     "\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
		     "\"__metadata__\":{\"format\":\"pt\",\"\":\"\"},"
		     "\"z2\":{\"dtype\":\"BF16\",\"shape\":[4,0,2],\"data_offsets\":[3,3]},"
		     "\"z3\":{\"shape\":[0,5],\"data_offsets\":[3,3],\"dtype\":\"I64\"},"
		     "\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[3,11]},"
		     "\"z4\":{\"dtype\":\"BOOL\",\"shape\":[0],\"data_offsets\":[11,11]}}      ",
		     11);
	ck_assert_uint_eq(f->ntensors, 6);
	ck_assert_uint_eq(f->nmeta, 2);
	ck_assert_str_eq(f->meta[0].key, "format");
	ck_assert_str_eq(f->meta[0].value, "pt");
	ck_assert_str_eq(f->meta[1].key, "");
	check_tiling(f);
	static const char *order[] = {"z1", "a", "z2", "z3", "s", "z4"};
	for (int i = 0; i < 6; i++)
		ck_assert_str_eq(f->tensors[i].name, order[i]);
	ck_assert_int_eq(f->tensors[4].ndim, 0);
	ck_assert_int_eq(f->tensors[4].dtype, UW_DTYPE_F64);
	struct uwerr e = {0};
	unsigned char b[8];
	ck_assert_int_eq(st_read_tensor(f, &f->tensors[1], b, &e), -EBADF);  /* no file behind it */
	st_close(f);
	/* Names up to ST_MAX_NAME bytes, dimensions up to ST_MAX_DIMS. */
	char *h;
	char name[ST_MAX_NAME + 1];
	memset(name, 'n', ST_MAX_NAME);
	name[ST_MAX_NAME] = '\0';
	ck_assert_int_ge(asprintf(&h, "{\"%s\":{\"dtype\":\"I8\",\"shape\":[1,1,1,1,1,1,1,2],\"data_offsets\":[0,2]}}",
				  name), 0);
	f = parse_ok(h, 2);
	ck_assert_int_eq(f->tensors[0].ndim, ST_MAX_DIMS);
	ck_assert_uint_eq(strlen(f->tensors[0].name), ST_MAX_NAME);
	st_close(f);
	free(h);
}
END_TEST

#define T(name, dtype, shape, off) "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" off "}"

START_TEST(malformed_headers)
{
	static const struct {
		const char *header;
		size_t data;
		const char *why;
	} bad[] = {
		{"", 0, "JSON"},
		{"{garbage}", 0, "JSON: offset 1"},
		{"{\"a\":", 0, "JSON"},
		{"{}}", 0, "trailing"},
		{"[1,2]", 0, "not a JSON object"},
		{"\"x\"", 0, "not a JSON object"},
		{"null", 0, "not a JSON object"},
		{"{" T("w", "F12", "[2]", "[0,8]") "}", 8, "tensor 'w': unknown dtype 'F12'"},
		{"{" T("w", "bf16", "[2]", "[0,4]") "}", 4, "unknown dtype 'bf16'"},
		{"{\"w\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype is not a string"},
		{"{" T("w", "F32", "[4294967296,4294967296,2]", "[0,8]") "}", 8, "overflows"},
		{"{" T("w", "F32", "[4611686018427387904]", "[0,8]") "}", 8, "overflows"},
		{"{" T("w", "F32", "[18446744073709551616]", "[0,8]") "}", 8, "exceeds 2^64-1"},
		{"{" T("w", "F32", "[2]", "[0,18446744073709551616]") "}", 8, "exceeds 2^64-1"},
		{"{" T("w", "F32", "[-2]", "[0,8]") "}", 8, "shape[0] is not a non-negative integer"},
		{"{" T("w", "F32", "[2.0]", "[0,8]") "}", 8, "shape[0]"},
		{"{" T("w", "F32", "[\"2\"]", "[0,8]") "}", 8, "shape[0]"},
		{"{" T("w", "F32", "2", "[0,8]") "}", 8, "shape is not an array"},
		{"{" T("w", "F32", "[1,1,1,1,1,1,1,1,2]", "[0,8]") "}", 8, "9 dimensions"},
		{"{" T("w", "F32", "[250]", "[0,1000]") "}", 16, "tensor 'w': data_offsets [0,1000) past end of data (size 16)"},
		{"{" T("a", "F32", "[2]", "[0,8]") "," T("b", "F32", "[2]", "[8,16]") "}", 12, "tensor 'b': data_offsets [8,16) past end of data (size 12)"},
		{"{" T("w", "F32", "[2]", "[18446744073709551608,0]") "}", 8, "end before they begin"},
		{"{" T("w", "F32", "[0]", "[8,0]") "}", 8, "end before they begin"},
		{"{" T("a", "F32", "[2]", "[0,8]") "," T("b", "F32", "[2]", "[4,12]") "}", 12, "tensor 'b': data_offsets [4,12) overlap tensor 'a' [0,8)"},
		{"{" T("a", "F32", "[2]", "[0,8]") "," T("b", "F32", "[2]", "[0,8]") "}", 8, "overlap"},
		{"{" T("a", "F32", "[4]", "[0,16]") "," T("z", "F32", "[0]", "[8,8]") "}", 16, "tensor 'z': data_offsets [8,8) overlap tensor 'a'"},
		{"{" T("a", "F32", "[2]", "[0,8]") "," T("b", "F32", "[2]", "[12,20]") "}", 20, "hole in data: bytes [8,12) before tensor 'b'"},
		{"{" T("a", "F32", "[2]", "[4,12]") "}", 12, "hole in data: bytes [0,4)"},
		{"{" T("a", "F32", "[2]", "[0,8]") "}", 9, "hole in data: bytes [8,9) after the last tensor"},
		{"{}", 1, "hole in data: bytes [0,1)"},
		{"{" T("a", "F32", "[2]", "[0,8]") "," T("a", "F32", "[2]", "[8,16]") "}", 16, "tensor 'a' appears twice"},
		{"{" T("a", "F32", "[3]", "[0,8]") "}", 8, "tensor 'a': shape [3] of F32 is 12 bytes but data_offsets [0,8) hold 8"},
		{"{" T("a", "BF16", "[2,3]", "[0,8]") "}", 8, "shape [2,3] of BF16 is 12 bytes"},
		{"{" T("a", "F32", "[2]", "[0]") "}", 8, "not a [begin, end] pair"},
		{"{" T("a", "F32", "[2]", "[0,8,8]") "}", 8, "not a [begin, end] pair"},
		{"{" T("a", "F32", "[2]", "{}") "}", 8, "not a [begin, end] pair"},
		{"{" T("a", "F32", "[2]", "[0,-8]") "}", 8, "data_offsets[1]"},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "tensor 'a': no 'data_offsets'"},
		{"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "no 'dtype'"},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":1}}", 8, "unexpected key 'extra'"},
		{"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "given twice"},
		{"{\"a\":[1]}", 0, "entry is not an object"},
		{"{\"a\":null}", 0, "entry is not an object"},
		{"{" T("", "F32", "[2]", "[0,8]") "}", 8, "empty name"},
		{"{" T("a\\u0000b", "F32", "[2]", "[0,8]") "}", 8, "NUL"},
		{"{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ 'k': value is not a string"},
		{"{\"__metadata__\":{\"k\":[\"v\"]}}", 0, "not a string"},
		{"{\"__metadata__\":{\"k\":null}}", 0, "not a string"},
		{"{\"__metadata__\":[]}", 0, "__metadata__ is not an object"},
		{"{\"__metadata__\":\"x\"}", 0, "__metadata__ is not an object"},
		{"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ given twice"},
		{"{\"__metadata__\":{\"k\":\"a\\u0000\"}}", 0, "NUL"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		parse_bad(bad[i].header, bad[i].data, bad[i].why);

	char *h, name[ST_MAX_NAME + 2];
	memset(name, 'n', ST_MAX_NAME + 1);
	name[ST_MAX_NAME + 1] = '\0';
	ck_assert_int_ge(asprintf(&h, "{" T("%s", "I8", "[1]", "[0,1]") "}", name), 0);
	parse_bad(h, 1, "exceeds 1024");
	free(h);
}
END_TEST

static void length_bad(uint64_t hlen, size_t file_len, const char *why)
{
	unsigned char *b = calloc(1, file_len + 8);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(hlen >> (8 * i));
	memcpy(b + 8, "{}", file_len >= 10 ? 2 : 0);
	struct st_file *f;
	struct uwerr e = {0};
	ck_assert_int_lt(st_parse(b, file_len, file_len, &f, &e), 0);
	ck_assert_msg(strstr(e.msg, why), "length %llu: '%s' lacks '%s'", (unsigned long long)hlen, e.msg, why);
	free(b);
}

START_TEST(header_length)
{
	length_bad(UINT64_MAX, 64, "exceeds the limit");
	length_bad((uint64_t)ST_MAX_HEADER + 1, 64, "exceeds the limit");
	length_bad(1ull << 63, 64, "exceeds the limit");
	length_bad(57, 64, "runs past the end of the file (size 64)");
	length_bad(2, 7, "too short");
	length_bad(0, 0, "too short");
	/* A buffer shorter than the header it announces (the file is larger). */
	struct st_file *f;
	struct uwerr e = {0};
	size_t len;
	unsigned char *b = image("{}", 0, &len);
	ck_assert_int_lt(st_parse(b, len - 1, len, &f, &e), 0);
	ck_assert_msg(strstr(e.msg, "header truncated"), "%s", e.msg);
	ck_assert_int_lt(st_parse(b, 5, len, &f, &e), 0);
	ck_assert_msg(strstr(e.msg, "header truncated"), "%s", e.msg);
	free(b);
}
END_TEST

/* The fixture cut short at every byte of its header and beyond, and at
 * random points of its data: st_open refuses each, naming the file. */
START_TEST(truncated_file)
{
	int fds = tu_count_fds();
	uint64_t seed = tu_seed();
	char *path = fixture_path(), *dir = tu_tmpdir(), *cut = path_in(dir, "cut.safetensors");
	size_t flen;
	unsigned char *file = tu_read_file(path, &flen);
	ck_assert_int_eq(tu_write_file(cut, file, flen), 0);
	struct st_file *f;
	struct uwerr e = {0};
	ck_assert_msg(st_open(cut, &f, &e) == 0, "%s", e.msg);
	st_close(f);
	size_t cuts[4096], ncut = 0;
	cuts[ncut++] = flen - 1;
	cuts[ncut++] = flen - 2;
	while (ncut < 64)
		cuts[ncut++] = 8 + FIX_HEADER + tu_rand(&seed) % (flen - 8 - FIX_HEADER);
	for (size_t k = 0; k < 8 + FIX_HEADER + 16; k += k < 32 || k > FIX_HEADER - 16 ? 1 : 7)
		cuts[ncut++] = k;
	for (size_t i = 0; i < ncut; i++) {
		ck_assert_int_eq(tu_write_file(cut, file, cuts[i]), 0);
		f = (struct st_file *)1;
		int r = st_open(cut, &f, &e);
		ck_assert_msg(r < 0, "cut at %zu accepted", cuts[i]);
		ck_assert_ptr_null(f);
		ck_assert_int_eq(strncmp(e.msg, cut, strlen(cut)), 0);
		if (cuts[i] >= 8 + FIX_HEADER)  /* the header is whole: the last tensor runs past the data */
			ck_assert_msg(strstr(e.msg, "past end of data"), "%s", e.msg);
	}
	/* Exactly the message shape callers print. */
	ck_assert_int_eq(tu_write_file(cut, file, flen - 1), 0);
	ck_assert_int_lt(st_open(cut, &f, &e), 0);
	char *want;
	ck_assert_int_ge(asprintf(&want, "%s: tensor 'model.norm.weight': data_offsets [519936,520064) past end of data (size 520063)", cut), 0);
	ck_assert_str_eq(e.msg, want);
	free(want);

	/* A file that shrinks after st_open: the read fails, naming the file. */
	ck_assert_int_eq(tu_write_file(cut, file, flen), 0);
	ck_assert_int_eq(st_open(cut, &f, &e), 0);
	ck_assert_int_eq(truncate(cut, (off_t)(flen - 100)), 0);
	const struct st_tensor *last = &f->tensors[f->ntensors - 1];
	unsigned char buf[128];
	ck_assert_int_eq(st_read_tensor(f, last, buf, &e), -EIO);
	ck_assert_msg(strstr(e.msg, cut) && strstr(e.msg, "model.norm.weight") && strstr(e.msg, "end of file"), "%s",
		      e.msg);
	ck_assert_int_eq(st_read_tensor(f, &f->tensors[0], file, &e), 0);  /* the start is still there */
	st_close(f);

	/* Not there, not a file. */
	ck_assert_int_eq(st_open(dir, &f, &e), -EINVAL);
	ck_assert_msg(strstr(e.msg, "not a regular file"), "%s", e.msg);
	unlink(cut);
	ck_assert_int_eq(st_open(cut, &f, &e), -ENOENT);
	ck_assert_int_eq(strncmp(e.msg, cut, strlen(cut)), 0);
	free(file);
	tu_rmtree(dir);
	free(dir);
	free(cut);
	free(path);
	ck_assert_int_eq(tu_count_fds(), fds);
}
END_TEST

/* Random bytes of the fixture's header flipped: st_parse either accepts a
 * header that still tiles the file or names an error, never crashes. */
START_TEST(flipped_bytes)
{
	uint64_t seed = tu_seed();
	char *path = fixture_path();
	size_t flen;
	unsigned char *file = tu_read_file(path, &flen);
	size_t hl = 8 + FIX_HEADER;
	unsigned char *buf = malloc(hl);
	int accepted = 0, rejected = 0;
	for (int iter = 0; iter < 20000; iter++) {
		memcpy(buf, file, hl);
		int flips = 1 + (int)(tu_rand(&seed) % 3);
		for (int k = 0; k < flips; k++) {
			uint64_t x = tu_rand(&seed);
			/* Mostly the JSON; sometimes the length prefix. */
			size_t at = x % 16 == 0 ? (x >> 8) % 8 : 8 + (x >> 8) % FIX_HEADER;
			buf[at] = x % 5 == 0 ? (unsigned char)"0123456789[]{},:\" "[(x >> 40) % 19]
					     : (unsigned char)(x >> 32);
		}
		struct st_file *f = NULL;
		struct uwerr e = {0};
		if (st_parse(buf, hl, flen, &f, &e) == 0) {
			check_tiling(f);
			st_close(f);
			accepted++;
		} else {
			ck_assert_ptr_null(f);
			ck_assert_int_ne(e.code, 0);
			ck_assert_int_ne(e.msg[0], '\0');
			rejected++;
		}
	}
	ck_assert_int_gt(accepted, 0);  /* e.g. a byte of a tensor name */
	ck_assert_int_gt(rejected, 0);
	free(buf);
	free(file);
	free(path);
}
END_TEST

START_TEST(writer_errors)
{
	int fds = tu_count_fds();
	char *dir = tu_tmpdir(), *out = path_in(dir, "w.safetensors"), *tmp = path_in(dir, "w.safetensors.tmp");
	struct st_out_tensor t[2] = {
		{.name = "a", .dtype = UW_DTYPE_F32, .ndim = 1, .shape = {2}},
		{.name = "b", .dtype = UW_DTYPE_U8, .ndim = 2, .shape = {2, 2}},
	};
	const unsigned char data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	struct st_writer *w;
	struct uwerr e = {0};

	/* Commit with a tensor never put: error, nothing left behind. */
	ck_assert_int_eq(st_writer_open(out, t, 2, NULL, 0, NULL, 0, &w, &e), 0);
	ck_assert(exists(tmp));
	ck_assert_int_eq(st_writer_put(w, 0, data, &e), 0);
	ck_assert_int_lt(st_writer_put(w, 0, data, &e), 0);
	ck_assert_msg(strstr(e.msg, "'a' written twice"), "%s", e.msg);
	ck_assert_int_lt(st_writer_put(w, 2, data, &e), 0);
	ck_assert_msg(strstr(e.msg, "out of range"), "%s", e.msg);
	ck_assert_int_lt(st_writer_close(w, 1, &e), 0);
	ck_assert_msg(strstr(e.msg, "tensor 'b' was never written"), "%s", e.msg);
	ck_assert(!exists(out));
	ck_assert(!exists(tmp));

	/* Abort: nothing left behind. */
	ck_assert_int_eq(st_writer_open(out, t, 2, NULL, 0, NULL, 0, &w, &e), 0);
	ck_assert_int_eq(st_writer_put(w, 1, data, &e), 0);
	ck_assert_int_eq(st_writer_close(w, 0, &e), 0);
	ck_assert(!exists(out));
	ck_assert(!exists(tmp));
	ck_assert_int_eq(st_writer_close(NULL, 1, &e), 0);

	/* A stale temporary file is not overwritten. */
	ck_assert_int_eq(tu_write_file(tmp, "x", 1), 0);
	ck_assert_int_eq(st_writer_open(out, t, 2, NULL, 0, NULL, 0, &w, &e), -EEXIST);
	ck_assert_msg(strstr(e.msg, tmp), "%s", e.msg);
	unlink(tmp);

	/* Bad tensors are refused before any file is made. */
	struct st_out_tensor dup[2] = {t[0], t[0]};
	ck_assert_int_lt(st_writer_open(out, dup, 2, NULL, 0, NULL, 0, &w, &e), 0);
	ck_assert_msg(strstr(e.msg, "'a' appears twice"), "%s", e.msg);
	struct st_out_tensor odd[1] = {t[0]};
	odd[0].name = "__metadata__";
	ck_assert_int_lt(st_writer_open(out, odd, 1, NULL, 0, NULL, 0, &w, &e), 0);
	odd[0].name = "";
	ck_assert_int_lt(st_writer_open(out, odd, 1, NULL, 0, NULL, 0, &w, &e), 0);
	ck_assert_msg(strstr(e.msg, "empty name"), "%s", e.msg);
	odd[0].name = "bad\xff utf8";
	ck_assert_int_lt(st_writer_open(out, odd, 1, NULL, 0, NULL, 0, &w, &e), 0);
	ck_assert_msg(strstr(e.msg, "UTF-8"), "%s", e.msg);
	odd[0].name = "a";
	odd[0].dtype = 0;
	ck_assert_int_lt(st_writer_open(out, odd, 1, NULL, 0, NULL, 0, &w, &e), 0);
	odd[0].dtype = UW_DTYPE_F32;
	odd[0].ndim = ST_MAX_DIMS + 1;
	ck_assert_int_lt(st_writer_open(out, odd, 1, NULL, 0, NULL, 0, &w, &e), 0);
	odd[0].ndim = 3;
	odd[0].shape[0] = odd[0].shape[1] = odd[0].shape[2] = 1ull << 32;
	ck_assert_int_lt(st_writer_open(out, odd, 1, NULL, 0, NULL, 0, &w, &e), 0);
	ck_assert_msg(strstr(e.msg, "overflow"), "%s", e.msg);

	/* A verbatim header must describe exactly the tensors given. */
	const char *hdr = "{" T("b", "U8", "[2,2]", "[0,4]") "," T("a", "F32", "[2]", "[4,12]") "}";
	size_t hlen = strlen(hdr);
	ck_assert_int_eq(st_writer_open(out, t, 2, NULL, 0, hdr, hlen, &w, &e), 0);
	ck_assert_uint_eq(t[0].begin, 4);
	ck_assert_uint_eq(t[0].end, 12);
	ck_assert_uint_eq(t[1].begin, 0);
	ck_assert_int_eq(st_writer_close(w, 0, &e), 0);
	/* The header is checked against the file the tensors given make... */
	ck_assert_int_lt(st_writer_open(out, t, 1, NULL, 0, hdr, hlen, &w, &e), 0);
	ck_assert_msg(strstr(e.msg, "past end of data (size 8)"), "%s", e.msg);
	/* ...then tensor by tensor (the cases below keep the same total size). */
	struct st_out_tensor wrong[2] = {t[0], t[1]};
	wrong[0].shape[0] = 3;
	ck_assert_int_lt(st_writer_open(out, wrong, 1, NULL, 0, hdr, hlen, &w, &e), 0);
	ck_assert_msg(strstr(e.msg, "describes 2 tensors, 1 are given"), "%s", e.msg);
	wrong[0] = t[0];
	wrong[1].ndim = 1;
	wrong[1].shape[0] = 4;
	ck_assert_int_lt(st_writer_open(out, wrong, 2, NULL, 0, hdr, hlen, &w, &e), 0);
	ck_assert_msg(strstr(e.msg, "tensor 'b': the header says U8 [2,2], the tensor is U8 [4]"), "%s", e.msg);
	const char *ab = "{" T("a", "F32", "[2]", "[0,8]") "," T("b", "F32", "[2]", "[8,16]") "}";
	wrong[1] = t[0];
	ck_assert_int_lt(st_writer_open(out, wrong, 2, NULL, 0, ab, strlen(ab), &w, &e), 0);
	ck_assert_msg(strstr(e.msg, "tensor 'a' is given twice"), "%s", e.msg);
	wrong[1] = t[1];
	wrong[1].dtype = UW_DTYPE_I8;
	ck_assert_int_lt(st_writer_open(out, wrong, 2, NULL, 0, hdr, hlen, &w, &e), 0);
	ck_assert_msg(strstr(e.msg, "the header says U8"), "%s", e.msg);
	wrong[1] = t[1];
	wrong[1].name = "c";
	wrong[1].dtype = UW_DTYPE_I32;
	wrong[1].ndim = 1;
	wrong[1].shape[0] = 1;  /* same byte count as b, other name */
	ck_assert_int_lt(st_writer_open(out, wrong, 2, NULL, 0, hdr, hlen, &w, &e), 0);
	ck_assert_msg(strstr(e.msg, "tensor 'c' is not in the header"), "%s", e.msg);
	struct st_meta meta = {"k", "v"};
	ck_assert_int_lt(st_writer_open(out, t, 2, &meta, 1, hdr, hlen, &w, &e), 0);
	ck_assert_msg(strstr(e.msg, "metadata"), "%s", e.msg);
	ck_assert_int_lt(st_writer_open(out, t, 2, NULL, 0, "{\"a\":", 5, &w, &e), 0);
	ck_assert_msg(strstr(e.msg, "given verbatim: header: JSON"), "%s", e.msg);
	ck_assert(!exists(out));
	ck_assert(!exists(tmp));

	/* Into a directory that does not exist. */
	char *nowhere = path_in(dir, "no/such/dir.safetensors");
	ck_assert_int_eq(st_writer_open(nowhere, t, 2, NULL, 0, NULL, 0, &w, &e), -ENOENT);
	free(nowhere);
	tu_rmtree(dir);
	free(dir);
	free(out);
	free(tmp);
	ck_assert_int_eq(tu_count_fds(), fds);
}
END_TEST

/* Write a small shard of the tensors named, each F32 [2]. */
static void write_shard(const char *dir, const char *file, const char *const *names, size_t n)
{
	char *path = path_in(dir, file);
	struct st_out_tensor t[8];
	const float data[2] = {1.5f, -2.0f};
	for (size_t i = 0; i < n; i++)
		t[i] = (struct st_out_tensor){.name = names[i], .dtype = UW_DTYPE_F32, .ndim = 1, .shape = {2}};
	struct st_writer *w;
	struct uwerr e = {0};
	ck_assert_msg(st_writer_open(path, t, n, NULL, 0, NULL, 0, &w, &e) == 0, "%s", e.msg);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(st_writer_put(w, i, data, &e), 0);
	ck_assert_msg(st_writer_close(w, 1, &e) == 0, "%s", e.msg);
	free(path);
}

static void write_text(const char *dir, const char *file, const char *text)
{
	char *path = path_in(dir, file);
	ck_assert_int_eq(tu_write_file(path, text, strlen(text)), 0);
	free(path);
}

static void ckpt_bad(const char *dir, const char *const *files, size_t n, const char *why)
{
	const char *paths[4];
	for (size_t i = 0; i < n; i++)
		paths[i] = path_in(dir, files[i]);
	struct st_checkpoint *c = (struct st_checkpoint *)1;
	struct uwerr e = {0};
	ck_assert_int_lt(st_checkpoint_open(paths, n, &c, &e), 0);
	ck_assert_ptr_null(c);
	ck_assert_msg(strstr(e.msg, why), "'%s' lacks '%s'", e.msg, why);
	for (size_t i = 0; i < n; i++)
		free((char *)paths[i]);
}

static const char *wm(const char *entries)
{
	static char buf[1024];
	snprintf(buf, sizeof(buf), "{\"metadata\":{\"total_size\":24},\"weight_map\":{%s}}", entries);
	return buf;
}

START_TEST(sharded)
{
	int fds = tu_count_fds();
	char *dir = tu_tmpdir();
	static const char *const a[] = {"x.0", "x.1"}, *const b[] = {"y"}, *const a2[] = {"x.1", "z"};
	write_shard(dir, "model-00001-of-00002.safetensors", a, 2);
	write_shard(dir, "model-00002-of-00002.safetensors", b, 1);
	write_shard(dir, "dup.safetensors", a2, 2);
	const char *index = wm("\"y\":\"model-00002-of-00002.safetensors\","
			       "\"x.1\":\"model-00001-of-00002.safetensors\","
			       "\"x.0\":\"model-00001-of-00002.safetensors\"");
	write_text(dir, "model.safetensors.index.json", index);
	write_text(dir, "index.idx", index);  /* an index by its content, not its name */

	for (int byname = 0; byname < 2; byname++) {
		char *p = path_in(dir, byname ? "model.safetensors.index.json" : "index.idx");
		const char *paths[] = {p};
		struct st_checkpoint *c;
		struct uwerr e = {0};
		ck_assert_msg(st_checkpoint_open(paths, 1, &c, &e) == 0, "%s", e.msg);
		ck_assert_uint_eq(c->nfiles, 2);
		ck_assert_ptr_nonnull(strstr(c->files[0]->path, "model-00001-of-00002.safetensors"));
		ck_assert_ptr_nonnull(strstr(c->files[1]->path, "model-00002-of-00002.safetensors"));
		ck_assert_uint_eq(c->files[0]->ntensors, 2);
		ck_assert_ptr_nonnull(find(c->files[0], "x.0"));
		ck_assert_ptr_nonnull(find(c->files[1], "y"));
		ck_assert_uint_eq(c->index_len, strlen(index));
		ck_assert_str_eq(c->index_json, index);
		float v[2];
		ck_assert_int_eq(st_read_tensor(c->files[1], &c->files[1]->tensors[0], v, &e), 0);
		ck_assert(v[0] == 1.5f && v[1] == -2.0f);
		st_checkpoint_close(c);
		free(p);
	}
	/* Shards given directly: no index. */
	{
		char *p1 = path_in(dir, "model-00001-of-00002.safetensors");
		char *p2 = path_in(dir, "model-00002-of-00002.safetensors");
		const char *paths[] = {p2, p1};
		struct st_checkpoint *c;
		struct uwerr e = {0};
		ck_assert_msg(st_checkpoint_open(paths, 2, &c, &e) == 0, "%s", e.msg);
		ck_assert_uint_eq(c->nfiles, 2);
		ck_assert_str_eq(c->files[0]->path, p2);
		ck_assert_ptr_null(c->index_json);
		st_checkpoint_close(c);
		ck_assert_int_lt(st_checkpoint_open(paths, 0, &c, &e), 0);
		free(p1);
		free(p2);
	}

	static const char *const dupfiles[] = {"model-00001-of-00002.safetensors", "dup.safetensors"};
	char *want;
	ck_assert_int_ge(asprintf(&want, "tensor 'x.1' is in both %s/%s and %s/%s", dir, dupfiles[0], dir,
				  dupfiles[1]), 0);
	ckpt_bad(dir, dupfiles, 2, want);
	free(want);
	static const char *const idx[] = {"i.json"}, *const two[] = {"i.json", "model.safetensors.index.json"};

	write_text(dir, "i.json", wm("\"y\":\"model-00002-of-00002.safetensors\",\"ghost\":\"model-00002-of-00002.safetensors\""));
	ckpt_bad(dir, idx, 1, "weight_map puts tensor 'ghost' in model-00002-of-00002.safetensors, which does not hold it");
	write_text(dir, "i.json", wm("\"y\":\"model-00003-of-00002.safetensors\""));
	ckpt_bad(dir, idx, 1, "No such file");
	ckpt_bad(dir, idx, 1, "model-00003-of-00002.safetensors");
	write_text(dir, "i.json", wm("\"y\":\"../model-00002-of-00002.safetensors\""));
	ckpt_bad(dir, idx, 1, "not a plain file name");
	write_text(dir, "i.json", wm("\"y\":\"..\""));
	ckpt_bad(dir, idx, 1, "not a plain file name");
	write_text(dir, "i.json", wm("\"y\":\"/etc/passwd\""));
	ckpt_bad(dir, idx, 1, "not a plain file name");
	write_text(dir, "i.json", wm("\"y\":\"\""));
	ckpt_bad(dir, idx, 1, "not a plain file name");
	write_text(dir, "i.json", wm("\"y\":3"));
	ckpt_bad(dir, idx, 1, "is not a string");
	/* A shard tensor the map leaves out, or puts elsewhere. */
	write_text(dir, "i.json", wm("\"x.0\":\"model-00001-of-00002.safetensors\""));
	ckpt_bad(dir, idx, 1, "tensor 'x.1' of");
	write_text(dir, "i.json", wm("\"x.0\":\"model-00001-of-00002.safetensors\",\"x.1\":\"dup.safetensors\",\"z\":\"dup.safetensors\""));
	ckpt_bad(dir, idx, 1, "weight_map puts tensor 'x.1' in dup.safetensors, but it is in");
	/* The same tensor in two shards, though the map is consistent about z. */
	write_text(dir, "i.json", wm("\"x.0\":\"model-00001-of-00002.safetensors\",\"x.1\":\"model-00001-of-00002.safetensors\",\"z\":\"dup.safetensors\""));
	ckpt_bad(dir, idx, 1, "tensor 'x.1'");
	write_text(dir, "i.json", wm("\"y\":\"model-00002-of-00002.safetensors\",\"y\":\"model-00002-of-00002.safetensors\""));
	ckpt_bad(dir, idx, 1, "tensor 'y' appears twice in weight_map");
	write_text(dir, "i.json", "{\"metadata\":{}}");
	ckpt_bad(dir, idx, 1, "no \"weight_map\" object");
	write_text(dir, "i.json", "{\"weight_map\":{}, \"metadata\":[]}");
	ckpt_bad(dir, idx, 1, "\"metadata\" is not an object");
	write_text(dir, "i.json", "{\"weight_map\":{}}");
	ckpt_bad(dir, idx, 1, "\"weight_map\" names no tensor");
	write_text(dir, "i.json", "{\"weight_map\":{\"y\":\"model-00002-of-00002.safetensors\"");
	ckpt_bad(dir, idx, 1, "JSON: offset");
	write_text(dir, "i.json", "[]");
	ckpt_bad(dir, idx, 1, "not a JSON object");
	write_text(dir, "i.json", wm("\"y\":\"model-00002-of-00002.safetensors\""));
	ckpt_bad(dir, two, 2, "a second index");
	/* A file that starts with '{' and no NUL cannot be safetensors (its
	 * header length would pass 2^56): it is read as an index. */
	write_text(dir, "brace.safetensors", "{not json");
	static const char *const brace[] = {"brace.safetensors"};
	ckpt_bad(dir, brace, 1, "brace.safetensors: index: JSON: offset 1");
	/* A safetensors file whose header length is 123 mod 256 starts with '{'. */
	char pad[123 + 1];
	memset(pad, ' ', 123);
	memcpy(pad, "{}", 2);
	pad[123] = '\0';
	size_t plen;
	unsigned char *img = image(pad, 0, &plen);
	char *brace_st = path_in(dir, "brace2.safetensors");
	ck_assert_int_eq(tu_write_file(brace_st, img, plen), 0);
	ck_assert_int_eq(img[0], '{');
	const char *bp[] = {brace_st};
	struct st_checkpoint *c;
	struct uwerr e = {0};
	ck_assert_msg(st_checkpoint_open(bp, 1, &c, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(c->nfiles, 1);
	ck_assert_ptr_null(c->index_json);
	st_checkpoint_close(c);
	free(img);
	free(brace_st);
	static const char *const missing[] = {"absent.safetensors"};
	ckpt_bad(dir, missing, 1, "No such file");
	tu_rmtree(dir);
	free(dir);
	ck_assert_int_eq(tu_count_fds(), fds);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("safetensors");
	TCase *tc = tu_tcase(s, "core", 120);
	tcase_add_test(tc, fixture);
	tcase_add_test(tc, rewrite_verbatim);
	tcase_add_test(tc, rewrite_generated);
	tcase_add_test(tc, roundtrip);
	tcase_add_test(tc, legal_edges);
	tcase_add_test(tc, malformed_headers);
	tcase_add_test(tc, header_length);
	tcase_add_test(tc, truncated_file);
	tcase_add_test(tc, flipped_bytes);
	tcase_add_test(tc, writer_errors);
	tcase_add_test(tc, sharded);
	return tu_run(s);
}
