/* mkseeds: writes the seed corpora of the fuzz harnesses (tests/fuzz/NAME/)
 * with the library's own writers and encoders, so every seed is an input
 * the parsers accept: make fuzz-seeds regenerates them. Deterministic. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/le.h"
#include "format/pack.h"
#include "format/restcodec.h"
#include "format/safetensors.h"
#include "kernels/resident.h"
#include "kernels/tunecache.h"
#include "proto/proto.h"
#include "tests/testutil.h"

static const char *outdir;
static uint64_t rng = 0x5eed;

static void die(const char *what, const struct uwerr *e)
{
	fprintf(stderr, "mkseeds: %s: %s\n", what, e ? e->msg : "failed");
	exit(1);
}

static void put(const char *target, const char *name, const void *p, size_t n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
	if (tu_write_file(path, p, n) < 0)
		die(path, NULL);
}

/* BF16 weights as training leaves them: a few binades around 2^-5, and a
 * rare far exponent (a patch for R12, a long code for exphuf). */
static void weights(uint16_t *w, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t r = tu_rand(&rng);
		unsigned ex = 118 + (unsigned)(r % 5) + (r % 97 == 0 ? 20 : 0);
		w[i] = (uint16_t)((r >> 32 & 0x8000) | ex << 7 | (r >> 40 & 0x7f));
	}
}

/* ---- safetensors and bundles ---- */

static void write_st(const char *path, struct st_out_tensor *t, size_t n,
		     const void *const *data, int meta)
{
	struct st_meta md = { "format", "pt" };
	struct st_writer *w;
	struct uwerr e = {0};
	if (st_writer_open(path, t, n, &md, meta ? 1 : 0, NULL, 0, &w, &e) < 0)
		die(path, &e);
	for (size_t i = 0; i < n; i++)
		if (st_writer_put(w, i, data[i], &e) < 0)
			die(path, &e);
	if (st_writer_close(w, 1, &e) < 0)
		die(path, &e);
}

static void copy_seed(const char *target, const char *name, const char *path)
{
	size_t n;
	void *p = tu_read_file(path, &n);
	if (!p)
		die(path, NULL);
	put(target, name, p, n);
	free(p);
}

static void checkpoints(const char *tmp)
{
	static uint16_t w[32 * 24], norm[24];
	static float bias[6] = { 0.5f, -1.0f, 0.0f, 3.25f, 1e-3f, -7.0f };
	static uint8_t flags[5] = { 1, 0, 1, 1, 0 };
	weights(w, 32 * 24);
	weights(norm, 24);
	struct st_out_tensor t[] = {
		{ .name = "model.w", .dtype = UW_DTYPE_BF16, .ndim = 2, .shape = { 32, 24 } },
		{ .name = "model.norm", .dtype = UW_DTYPE_BF16, .ndim = 1, .shape = { 24 } },
		{ .name = "model.bias", .dtype = UW_DTYPE_F32, .ndim = 2, .shape = { 2, 3 } },
		{ .name = "model.flags", .dtype = UW_DTYPE_BOOL, .ndim = 1, .shape = { 5 } },
		{ .name = "model.empty", .dtype = UW_DTYPE_F16, .ndim = 2, .shape = { 0, 4 } },
		{ .name = "model.steps", .dtype = UW_DTYPE_F32, .ndim = 1, .shape = { 64 } },
	};
	static float steps[64];      /* repetitive: zstd wins */
	for (int i = 0; i < 64; i++)
		steps[i] = (float)(i / 16);
	const void *data[] = { w, norm, bias, flags, "", steps };
	char a[4096], b[4096], out[4096];
	snprintf(a, sizeof(a), "%s/model-00001-of-00002.safetensors", tmp);
	snprintf(b, sizeof(b), "%s/model-00002-of-00002.safetensors", tmp);
	write_st(a, t, 6, data, 1);
	copy_seed("safetensors", "six-tensors", a);
	write_st(b, t + 2, 1, data + 2, 0);
	copy_seed("safetensors", "one-f32", b);
	write_st(b, t, 0, NULL, 0);
	copy_seed("safetensors", "empty", b);

	/* one shard, every encoding; then two shards */
	struct pack_stats ps;
	struct uwerr e = {0};
	const char *one[] = { a }, *two[] = { a, b };
	write_st(b, t + 2, 2, data + 2, 0);
	snprintf(out, sizeof(out), "%s/m.uwb", tmp);
	if (bundle_pack(one, 1, out, 1, 0, &ps, &e) < 0)
		die("pack", &e);
	copy_seed("bundle", "one-shard", out);
	snprintf(a, sizeof(a), "%s/a.safetensors", tmp);
	write_st(a, t + 1, 1, data + 1, 0);
	if (bundle_pack(two, 2, out, 1, 0, &ps, &e) < 0)
		die("pack", &e);
	copy_seed("bundle", "two-shards", out);

	/* the real fixture's header, without its data (rejected: too short) */
	char fixture[4096];
	snprintf(fixture, sizeof(fixture), "%s/data/stories260K.safetensors", tu_srcdir());
	size_t n;
	uint8_t *st = tu_read_file(fixture, &n);
	if (!st || n < 8)
		die(fixture, NULL);
	uint64_t hl = le64_get(st);
	put("safetensors", "stories260K-header-only", st, 8 + hl);
	put("json", "stories260K-header", st + 8, hl);
	free(st);
}

/* ---- JSON ---- */

static void json(void)
{
	static const char *const docs[][2] = {
		{ "scalars", "[0,-0,1.5e-3,-12E+4,18446744073709551615,true,false,null,\"\"]" },
		{ "strings", "{\"a\\\"b\\\\/\\b\\f\\n\\r\\t\":\"\\u00e9\\ud83d\\ude00 caf\xc3\xa9\"}" },
		{ "nested", "{\"a\":{\"b\":[[[{\"c\":[]}]]],\"d\":{}}, \"a\":1}" },
		{ "index", "{\"metadata\":{\"total_size\":1234},\"weight_map\":"
			   "{\"w\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00002-of-00002.safetensors\"}}" },
	};
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++)
		put("json", docs[i][0], docs[i][1], strlen(docs[i][1]));
	/* indexes of the index harness's two shards (tests/fuzz/index.c) */
	static const char *const idx[][2] = {
		{ "both-shards", "{\"metadata\":{\"total_size\":7},\"weight_map\":"
				 "{\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\"}}" },
		{ "one-shard", "{\"weight_map\":{\"z\":\"b.safetensors\"}}" },
	};
	for (size_t i = 0; i < sizeof(idx) / sizeof(idx[0]); i++)
		put("index", idx[i][0], idx[i][1], strlen(idx[i][1]));
}

/* ---- at-rest payloads: enc, dtype, nbytes (LE 32), payload ---- */

static void rest(const char *name, int enc, int dtype, const void *raw, size_t nbytes)
{
	struct rest_blob b;
	struct uwerr e = {0};
	if (rest_encode_with(enc, dtype, raw, nbytes, 1, &b, &e) < 0)
		die(name, &e);
	uint8_t *p = malloc(6 + b.len);
	p[0] = (uint8_t)enc;
	p[1] = (uint8_t)dtype;
	le32_put(p + 2, (uint32_t)nbytes);
	memcpy(p + 6, b.data, b.len);
	put("restcodec", name, p, 6 + b.len);
	free(p);
	free(b.data);
}

static void restcodec(void)
{
	static uint16_t w[65536 + 40], same[300];
	static int32_t ints[50];
	weights(w, 512);
	for (size_t i = 0; i < 300; i++)
		same[i] = (uint16_t)(0x3c00 | (i & 0x7f));
	for (int i = 0; i < 50; i++)
		ints[i] = i * i - 300;
	rest("exphuf", 1, UW_DTYPE_BF16, w, 2 * 512);
	rest("exphuf-lone-symbol", 1, UW_DTYPE_BF16, same, sizeof(same));
	rest("exphuf-empty", 1, UW_DTYPE_BF16, w, 0);
	rest("zstd-bf16", 2, UW_DTYPE_BF16, w, 2 * 512);
	rest("zstd-i32", 2, UW_DTYPE_I32, ints, sizeof(ints));
	rest("raw-f32", 0, UW_DTYPE_F32, ints, 16);
	/* two chunks: exponents of a single binade keep it small */
	for (size_t i = 0; i < 65536 + 40; i++)
		w[i] = (uint16_t)(0x3c00 | (i % 3 == 0 ? 0x80 : 0) | (i & 0x7f));
	rest("exphuf-two-chunks", 1, UW_DTYPE_BF16, w, sizeof(w));
}

/* ---- resident layouts: the wire layout (108 bytes), then the bytes ---- */

static size_t put_layout(uint8_t *p, const struct uw_layout *l)
{
	le32_put(p, l->format);
	le32_put(p + 4, l->dtype);
	le64_put(p + 8, l->rows);
	le64_put(p + 16, l->cols);
	le64_put(p + 24, l->nbytes);
	le32_put(p + 32, l->crc32c);
	memcpy(p + 36, l->palette, UW_PALETTE_SIZE);
	const uint64_t r12[] = { l->mant_off, l->mant_stride, l->nib_off, l->nib_stride,
				 l->patch_grp_off, l->patch_off, l->npatch };
	for (int i = 0; i < 7; i++)
		le64_put(p + 36 + UW_PALETTE_SIZE + 8 * i, r12[i]);
	return 36 + UW_PALETTE_SIZE + 56;
}

static void resident(const char *name, int prefer, int dtype, uint64_t rows, uint64_t cols,
		     const void *raw, size_t raw_bytes)
{
	uint64_t shape[2] = { rows, cols };
	struct uw_layout l;
	struct uwerr e = {0};
	if (res_plan(dtype, 2, shape, raw, raw_bytes, prefer, &l, &e) < 0)
		die(name, &e);
	uint8_t *p = calloc(1, 108 + l.nbytes);
	size_t h = put_layout(p, &l);
	if (res_encode_mt(&l, raw, raw_bytes, p + h, 1, &e) < 0)
		die(name, &e);
	put_layout(p, &l);      /* with its CRC */
	put("resident", name, p, h + l.nbytes);
	free(p);
}

static void residents(void)
{
	static uint16_t w[20 * 150];
	static float f[6] = { 1, 2, 3, 4, 5, 6 };
	weights(w, 24 * 40);
	resident("r12-patches", RES_PREFER_SPEED, UW_DTYPE_BF16, 24, 40, w, 2 * 24 * 40);
	weights(w, 20 * 150);
	resident("r11-patches", RES_PREFER_SIZE, UW_DTYPE_BF16, 20, 150, w, sizeof(w));
	for (size_t i = 0; i < 24 * 40; i++)
		w[i] = (uint16_t)((i % 7 + 120) << 7 | (i & 0x7f));
	resident("r12-no-patches", RES_PREFER_SPEED, UW_DTYPE_BF16, 24, 40, w, 2 * 24 * 40);
	resident("r11-no-patches", RES_PREFER_SIZE, UW_DTYPE_BF16, 24, 40, w, 2 * 24 * 40);
	resident("raw-bf16-row", RES_PREFER_SPEED, UW_DTYPE_BF16, 1, 8, w, 16);
	resident("raw-f32", RES_PREFER_SPEED, UW_DTYPE_F32, 2, 3, f, sizeof(f));
}

/* ---- protocol streams: how many fds ride along, then frames ---- */

struct stream {
	uint8_t b[8192];
	size_t n;
};

static void frame(struct stream *s, uint16_t op, struct wbuf *w, uint16_t nfds)
{
	if (w->err || s->n + PROTO_HDR_SIZE + w->len > sizeof(s->b))
		die("frame", NULL);
	tu_proto_hdr(s->b + s->n, PROTO_MAGIC, PROTO_VERSION, op, (uint32_t)w->len, nfds, 0);
	memcpy(s->b + s->n + PROTO_HDR_SIZE, w->p, w->len);
	s->n += PROTO_HDR_SIZE + w->len;
	wb_free(w);
}

static void status(struct wbuf *w, int32_t st, const char *msg)
{
	struct msg_status m = { st, (char *)msg };
	enc_status(w, &m);
}

static void protos(void)
{
	struct stream s = { .b = { 0 }, .n = 1 };
	struct wbuf w = {0};
	char *paths[] = { "/models/a.safetensors", "/models/b.safetensors" };
	enc_hello(&w, &(struct msg_hello){ 1, 1, "libunweight-client 0.1.0" });
	frame(&s, OP_HELLO, &w, 0);
	enc_load(&w, &(struct msg_load){ "llama", "", 2, paths });
	frame(&s, OP_LOAD, &w, 0);
	enc_evict(&w, &(struct msg_evict){ "llama", UW_EVICT_FORCE });
	frame(&s, OP_EVICT, &w, 0);
	enc_stats(&w, &(struct msg_stats){ "" });
	frame(&s, OP_STATS, &w, 0);
	enc_attach(&w, &(struct msg_attach){ "llama" });
	frame(&s, OP_ATTACH, &w, 0);
	enc_detach(&w, &(struct msg_detach){ 7 });
	frame(&s, OP_DETACH, &w, 0);
	enc_verify(&w, &(struct msg_verify){ "llama" });
	frame(&s, OP_VERIFY, &w, 0);
	enc_tune(&w, &(struct msg_tune){ "llama", UW_TUNE_FORCE });
	frame(&s, OP_TUNE, &w, 0);
	enc_tune(&w, &(struct msg_tune){ "", 0 });
	frame(&s, OP_TUNE, &w, 0);
	put("proto", "requests", s.b, s.n);

	s.n = 1;
	status(&w, 0, "");
	enc_hello_reply(&w, &(struct msg_hello_reply){ 1, UW_BACKEND_HOST, "unweightd 0.1.0" });
	frame(&s, OP_HELLO | OP_REPLY, &w, 0);
	status(&w, -ENOENT, "no model 'llama'");
	frame(&s, OP_ATTACH | OP_REPLY, &w, 0);
	status(&w, 0, "");
	enc_stats_reply(&w, &(struct msg_stats_reply){ "{\"models\":[]}" });
	frame(&s, OP_STATS | OP_REPLY, &w, 0);
	status(&w, 0, "");
	frame(&s, OP_LOAD | OP_REPLY, &w, 0);
	static char *bad[] = { "model.layers.0.mlp.up_proj.weight", "lm_head.weight" };
	status(&w, 0, "");
	enc_verify_reply(&w, &(struct msg_verify_reply){ 291, 1 << 30, 52000, 2, 2, bad });
	frame(&s, OP_VERIFY | OP_REPLY, &w, 0);
	status(&w, 0, "");
	enc_tune_reply(&w, &(struct msg_tune_reply){ 3 });
	frame(&s, OP_TUNE | OP_REPLY, &w, 0);
	status(&w, -EOPNOTSUPP, "tune llama: nothing to tune: the host backend runs no GPU kernels");
	frame(&s, OP_TUNE | OP_REPLY, &w, 0);
	put("proto", "replies", s.b, s.n);

	/* an attach reply with two buffers, so two fds ride on its first byte */
	static uint16_t wt[24 * 40];
	weights(wt, 24 * 40);
	uint64_t shape[2] = { 24, 40 }, sizes[2] = { 1 << 16, 4096 };
	struct proto_tensor t[2] = {
		{ .name = "w", .dtype = UW_DTYPE_BF16, .ndim = 2, .shape = { 24, 40 },
		  .raw_bytes = sizeof(wt), .buf = 0, .offset = 0 },
		{ .name = "norm", .dtype = UW_DTYPE_F32, .ndim = 1, .shape = { 6 },
		  .raw_bytes = 24, .buf = 1, .offset = 256 },
	};
	struct uwerr e = {0};
	float f[6] = { 0 };
	uint64_t fshape[2] = { 6, 1 };
	if (res_plan(UW_DTYPE_BF16, 2, shape, wt, sizeof(wt), RES_PREFER_SPEED, &t[0].layout, &e) < 0 ||
	    res_plan(UW_DTYPE_F32, 1, fshape, f, sizeof(f), RES_PREFER_SPEED, &t[1].layout, &e) < 0)
		die("attach reply", &e);
	s.b[0] = 2;
	s.n = 1;
	status(&w, 0, "");
	enc_attach_reply(&w, &(struct msg_attach_reply){ 3, UW_BACKEND_HOST, "", 2, sizes, 2, t });
	frame(&s, OP_ATTACH | OP_REPLY, &w, 2);
	put("proto", "attach-reply-2-fds", s.b, s.n);
}

/* ---- tune caches ---- */

static void tunes(void)
{
	static const struct tune_key h200 = { "NVIDIA_H200", 90, 132, "0.1.0+uwk1" };
	static const struct tune_key a100 = { "NVIDIA_A100-SXM4-80GB", 80, 108, "0.1.0+uwk1" };
	struct tune_set s = {0};
	struct uwerr e = {0};
	const struct tune_entry en[] = {
		{ h200, 14336, 4096, 1, { TUNE_PIPE_FUSED, 4, 2, 1, 2 }, 35.9, 36.1 },
		{ h200, 14336, 4096, 64, { TUNE_PIPE_GEMM, 0, 0, 0, 0 }, 105.2, 108.3 },
		{ h200, 4096, 14336, 16, { TUNE_PIPE_FUSED, 4, 1, 8, 1 }, 44.5, 44.5 },
		{ h200, 14336, 4096, 256, { TUNE_PIPE_WG, 0, 0, 0, 0 }, 210.5, 210.5 },
		{ h200, 14336, 4096, 1024, { TUNE_PIPE_GEMM, 0, 0, 0, 0 }, 1310.2, 1335.9 },
		{ a100, 64, 172, 2, { TUNE_PIPE_FUSED, 1, 8, 1, 1 }, 3.2, 3.5 },
	};
	for (size_t i = 0; i < sizeof(en) / sizeof(en[0]); i++)
		if (tune_set_put(&s, &en[i], &e) < 0)
			die("tune seed", &e);
	char *text = tune_format(&s);
	if (!text)
		die("tune seed", NULL);
	put("tune", "two-devices", text, strlen(text));
	free(text);
	static const char other[] = "unweight-tune 2\nwhatever a later version writes\n";
	put("tune", "other-version", other, strlen(other));
	tune_set_free(&s);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: mkseeds DIR (tests/fuzz of the source tree)\n");
		return 2;
	}
	outdir = argv[1];
	char *tmp = tu_tmpdir();
	checkpoints(tmp);
	tu_rmtree(tmp);
	json();
	restcodec();
	residents();
	protos();
	tunes();
	return 0;
}
