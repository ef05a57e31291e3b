/* messages: the payload codec: little-endian byte buffers, and the encoder
 * and checking decoder of every message (proto/PROTOCOL.md lays them out). */
#include "config.h"

#include "proto/proto.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/dtype.h"
#include "kernels/resident.h"
#include "common/le.h"

/* ---- writer ------------------------------------------------------------ */

/* Room for n more bytes at the end; NULL (and err set) once anything failed. */
static uint8_t *wb_grow(struct wbuf *w, size_t n)
{
	size_t total;
	if (w->err)
		return NULL;
	if (uw_add_size(w->len, n, &total) < 0) {
		w->err = EOVERFLOW;
		return NULL;
	}
	if (total > w->cap) {
		size_t cap = w->cap ? w->cap : 256;
		while (cap < total)
			cap = cap > SIZE_MAX / 2 ? total : cap * 2;
		uint8_t *p = realloc(w->p, cap);
		if (!p) {
			w->err = ENOMEM;
			return NULL;
		}
		w->p = p;
		w->cap = cap;
	}
	uint8_t *at = w->p + w->len;
	w->len = total;
	return at;
}

void wb_u8(struct wbuf *w, uint8_t v)
{
	uint8_t *b = wb_grow(w, 1);
	if (b)
		b[0] = v;
}

void wb_u16(struct wbuf *w, uint16_t v)
{
	uint8_t *b = wb_grow(w, 2);
	if (b)
		le16_put(b, v);
}

void wb_u32(struct wbuf *w, uint32_t v)
{
	uint8_t *b = wb_grow(w, 4);
	if (b)
		le32_put(b, v);
}

void wb_u64(struct wbuf *w, uint64_t v)
{
	uint8_t *b = wb_grow(w, 8);
	if (b)
		le64_put(b, v);
}

void wb_bytes(struct wbuf *w, const void *p, size_t n)
{
	uint8_t *b = n ? wb_grow(w, n) : NULL;
	if (b)
		memcpy(b, p, n);
}

void wb_str(struct wbuf *w, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n > UINT32_MAX) {
		if (!w->err)
			w->err = EOVERFLOW;
		return;
	}
	wb_u32(w, (uint32_t)n);
	wb_bytes(w, s, n);
}

void wb_free(struct wbuf *w)
{
	free(w->p);
	memset(w, 0, sizeof(*w));
}

/* What every enc_* returns: the writer's error, or -EMSGSIZE when the
 * payload (status and body together) outgrew what a peer accepts. */
static int enc_end(struct wbuf *w)
{
	if (w->err)
		return -w->err;
	return w->len > PROTO_MAX_PAYLOAD ? -EMSGSIZE : 0;
}

/* ---- reader ------------------------------------------------------------ */

static size_t rb_left(const struct rbuf *r)
{
	return r->len - r->pos;
}

static const uint8_t *rb_take(struct rbuf *r, size_t n)
{
	if (r->err || n > rb_left(r)) {
		r->err = r->err ? r->err : EBADMSG;
		return NULL;
	}
	const uint8_t *p = r->p + r->pos;
	r->pos += n;
	return p;
}

uint8_t rb_u8(struct rbuf *r)
{
	const uint8_t *b = rb_take(r, 1);
	return b ? b[0] : 0;
}

uint16_t rb_u16(struct rbuf *r)
{
	const uint8_t *b = rb_take(r, 2);
	return b ? le16_get(b) : 0;
}

uint32_t rb_u32(struct rbuf *r)
{
	const uint8_t *b = rb_take(r, 4);
	return b ? le32_get(b) : 0;
}

uint64_t rb_u64(struct rbuf *r)
{
	const uint8_t *b = rb_take(r, 8);
	return b ? le64_get(b) : 0;
}

/* The decoders run every step unconditionally and check r->err once at the
 * end: after the first failure every read yields zeros and every check is a
 * no-op, so the first error's message is the one that stays in e. */
__attribute__((format(printf, 4, 5)))
static int rfail(struct rbuf *r, struct uwerr *e, int code, const char *fmt, ...)
{
	if (!r->err) {
		char msg[UWERR_MSG_MAX];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		r->err = code;
		uwerr_set(e, code, "%s", msg);
	}
	return -r->err;
}
#define bad(r, e, ...) rfail(r, e, EBADMSG, __VA_ARGS__)

/* Fixed-size fields ahead: fail now, naming them, if they are not all there. */
static void need(struct rbuf *r, size_t n, const char *what, struct uwerr *e)
{
	if (n > rb_left(r))
		bad(r, e, "%s: truncated: %zu bytes needed, %zu left", what, n, rb_left(r));
}

/* Prepend context to the message of a failure already recorded. */
__attribute__((format(printf, 2, 3)))
static void ctx(struct uwerr *e, const char *fmt, ...)
{
	if (!e)
		return;
	char head[UWERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	uwerr_prefix(e, "%s", head);
}

/* A peer's string, fit to quote in a message: bounded, control bytes as '?'. */
static const char *quoted(const char *s, char out[48])
{
	size_t i = 0;
	for (; s[i] && i < 40; i++)
		out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	strcpy(out + i, s[i] ? "..." : "");
	return out;
}

/* A string field of min..max bytes. Its length is checked against max and
 * against the bytes left before anything is allocated. */
static char *str_field(struct rbuf *r, size_t min, size_t max, const char *what,
		       struct uwerr *e)
{
	need(r, 4, what, e);
	uint32_t n = rb_u32(r);
	if (n > max)
		bad(r, e, "%s: %u bytes, over the limit of %zu", what, n, max);
	else if (n < min)
		bad(r, e, "%s: empty", what);
	else if (n > rb_left(r))
		bad(r, e, "%s: %u bytes, but only %zu left in the payload", what, n, rb_left(r));
	if (r->err)
		return NULL;
	const uint8_t *p = rb_take(r, n);
	const uint8_t *nul = memchr(p, 0, n);
	if (nul) {
		bad(r, e, "%s: NUL byte at offset %td of %u", what, nul - p, n);
		return NULL;
	}
	char *s = malloc((size_t)n + 1);
	if (!s) {
		rfail(r, e, ENOMEM, "%s: %u bytes: out of memory", what, n);
		return NULL;
	}
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

char *rb_str(struct rbuf *r, size_t max)
{
	return str_field(r, 0, max, "string", NULL);
}

int rb_done(struct rbuf *r, struct uwerr *e)
{
	if (!r->err && rb_left(r))
		bad(r, e, "%zu trailing bytes after the message", rb_left(r));
	return -r->err;
}

/* The end of every dec_*: no trailing bytes, and context on a failure. */
static int finish(struct rbuf *r, const char *what, struct uwerr *e)
{
	int rc = rb_done(r, e);
	if (rc)
		ctx(e, "%s", what);
	return rc;
}

/* ---- names and versions ------------------------------------------------ */

int proto_name_valid(const char *name)
{
	if (!name || !name[0] || !strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	size_t n = 0;
	for (; name[n]; n++) {
		char c = name[n];
		if (n == PROTO_MAX_NAME ||
		    !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* A model name field; empty_ok for "every model". */
static char *name_field(struct rbuf *r, int empty_ok, struct uwerr *e)
{
	char *s = str_field(r, 0, PROTO_MAX_NAME, "name", e);
	if (s && !(empty_ok && !s[0]) && !proto_name_valid(s)) {
		char q[48];
		bad(r, e, "name \"%s\": not a model name (1 to %d of A-Z a-z 0-9 . _ -, not . or ..)",
		    quoted(s, q), PROTO_MAX_NAME);
		free(s);
		return NULL;
	}
	return s;
}

int proto_version_pick(uint16_t peer_min, uint16_t peer_max, uint16_t *out,
		       struct uwerr *e)
{
	uint16_t lo = peer_min > PROTO_MIN_VERSION ? peer_min : PROTO_MIN_VERSION;
	uint16_t hi = peer_max < PROTO_VERSION ? peer_max : PROTO_VERSION;
	if (lo > hi)
		return uwerr_set(e, EPROTONOSUPPORT,
				 "no common protocol version: the client speaks %u..%u, unweightd %u..%u",
				 peer_min, peer_max, PROTO_MIN_VERSION, PROTO_VERSION);
	*out = hi;
	return 0;
}

/* ---- hello and status -------------------------------------------------- */

int enc_hello(struct wbuf *w, const struct msg_hello *m)
{
	wb_u16(w, m->min_version);
	wb_u16(w, m->max_version);
	wb_str(w, m->peer);
	return enc_end(w);
}

int dec_hello(struct rbuf *r, struct msg_hello *m, struct uwerr *e)
{
	memset(m, 0, sizeof(*m));
	need(r, 4, "versions", e);
	m->min_version = rb_u16(r);
	m->max_version = rb_u16(r);
	if (m->min_version == 0 || m->min_version > m->max_version)
		bad(r, e, "versions %u..%u: not a range of versions", m->min_version, m->max_version);
	m->peer = str_field(r, 0, PROTO_MAX_PEER, "peer", e);
	int rc = finish(r, "hello", e);
	if (rc)
		msg_hello_free(m);
	return rc;
}

void msg_hello_free(struct msg_hello *m)
{
	free(m->peer);
	m->peer = NULL;
}

int enc_status(struct wbuf *w, const struct msg_status *m)
{
	wb_u32(w, (uint32_t)m->status);
	wb_str(w, m->message);
	return enc_end(w);
}

int dec_status(struct rbuf *r, struct msg_status *m, struct uwerr *e)
{
	memset(m, 0, sizeof(*m));
	need(r, 4, "status", e);
	m->status = (int32_t)rb_u32(r);
	if (m->status > 0 || m->status < -PROTO_MAX_ERRNO)
		bad(r, e, "status %d: not 0 or a negative errno", m->status);
	m->message = str_field(r, 0, PROTO_MAX_MSG, "message", e);
	/* A refusal has no body; a success leaves the body to its decoder. */
	int rc = m->status ? rb_done(r, e) : -r->err;
	if (rc) {
		ctx(e, "status");
		msg_status_free(m);
	}
	return rc;
}

void msg_status_free(struct msg_status *m)
{
	free(m->message);
	m->message = NULL;
}

int enc_hello_reply(struct wbuf *w, const struct msg_hello_reply *m)
{
	wb_u16(w, m->version);
	wb_u32(w, m->backend);
	wb_str(w, m->daemon);
	return enc_end(w);
}

static void backend_check(struct rbuf *r, uint32_t backend, struct uwerr *e)
{
	if (backend > UW_BACKEND_CUDA)
		bad(r, e, "backend %u unknown", backend);
}

int dec_hello_reply(struct rbuf *r, struct msg_hello_reply *m, struct uwerr *e)
{
	memset(m, 0, sizeof(*m));
	need(r, 6, "version, backend", e);
	m->version = rb_u16(r);
	m->backend = rb_u32(r);
	if (m->version == 0)
		bad(r, e, "version 0");
	backend_check(r, m->backend, e);
	m->daemon = str_field(r, 0, PROTO_MAX_PEER, "daemon", e);
	int rc = finish(r, "hello reply", e);
	if (rc)
		msg_hello_reply_free(m);
	return rc;
}

void msg_hello_reply_free(struct msg_hello_reply *m)
{
	free(m->daemon);
	m->daemon = NULL;
}

/* ---- load, evict, stats, detach ---------------------------------------- */

int enc_load(struct wbuf *w, const struct msg_load *m)
{
	wb_str(w, m->name);
	wb_str(w, m->device);
	wb_u32(w, m->npaths);
	for (uint32_t i = 0; i < m->npaths; i++)
		wb_str(w, m->paths[i]);
	return enc_end(w);
}

int dec_load(struct rbuf *r, struct msg_load *m, struct uwerr *e)
{
	memset(m, 0, sizeof(*m));
	m->name = name_field(r, 0, e);
	m->device = str_field(r, 0, PROTO_MAX_DEVICE, "device", e);
	need(r, 4, "npaths", e);
	uint32_t n = rb_u32(r);
	if (n == 0 || n > PROTO_MAX_PATHS)
		bad(r, e, "npaths %u: not 1 to %d", n, PROTO_MAX_PATHS);
	else if (n > rb_left(r) / 4)
		bad(r, e, "npaths %u: more than the %zu bytes left can hold", n, rb_left(r));
	if (!r->err) {
		m->paths = calloc(n, sizeof(*m->paths));
		if (m->paths)
			m->npaths = n;
		else
			rfail(r, e, ENOMEM, "paths: %u: out of memory", n);
	}
	for (uint32_t i = 0; i < m->npaths && !r->err; i++) {
		char what[32];
		snprintf(what, sizeof(what), "path %u", i);
		m->paths[i] = str_field(r, 1, PROTO_MAX_PATH, what, e);
		if (m->paths[i] && m->paths[i][0] != '/') {
			char q[48];
			bad(r, e, "%s \"%s\": not absolute", what, quoted(m->paths[i], q));
		}
	}
	int rc = finish(r, "load", e);
	if (rc)
		msg_load_free(m);
	return rc;
}

void msg_load_free(struct msg_load *m)
{
	for (uint32_t i = 0; m->paths && i < m->npaths; i++)
		free(m->paths[i]);
	free(m->paths);
	free(m->name);
	free(m->device);
	memset(m, 0, sizeof(*m));
}

int enc_evict(struct wbuf *w, const struct msg_evict *m)
{
	wb_str(w, m->name);
	wb_u32(w, m->flags);
	return enc_end(w);
}

int dec_evict(struct rbuf *r, struct msg_evict *m, struct uwerr *e)
{
	memset(m, 0, sizeof(*m));
	m->name = name_field(r, 0, e);
	need(r, 4, "flags", e);
	m->flags = rb_u32(r);
	if (m->flags & ~UW_EVICT_FORCE)
		bad(r, e, "flags 0x%x: unknown bits 0x%x", m->flags, m->flags & ~UW_EVICT_FORCE);
	int rc = finish(r, "evict", e);
	if (rc)
		msg_evict_free(m);
	return rc;
}

void msg_evict_free(struct msg_evict *m)
{
	free(m->name);
	m->name = NULL;
}

int enc_stats(struct wbuf *w, const struct msg_stats *m)
{
	wb_str(w, m->name);
	return enc_end(w);
}

int dec_stats(struct rbuf *r, struct msg_stats *m, struct uwerr *e)
{
	memset(m, 0, sizeof(*m));
	m->name = name_field(r, 1, e);
	int rc = finish(r, "stats", e);
	if (rc)
		msg_stats_free(m);
	return rc;
}

void msg_stats_free(struct msg_stats *m)
{
	free(m->name);
	m->name = NULL;
}

int enc_stats_reply(struct wbuf *w, const struct msg_stats_reply *m)
{
	wb_str(w, m->json);
	return enc_end(w);
}

int dec_stats_reply(struct rbuf *r, struct msg_stats_reply *m, struct uwerr *e)
{
	memset(m, 0, sizeof(*m));
	m->json = str_field(r, 0, PROTO_MAX_PAYLOAD, "json", e);
	int rc = finish(r, "stats reply", e);
	if (rc)
		msg_stats_reply_free(m);
	return rc;
}

void msg_stats_reply_free(struct msg_stats_reply *m)
{
	free(m->json);
	m->json = NULL;
}

int enc_detach(struct wbuf *w, const struct msg_detach *m)
{
	wb_u64(w, m->lease);
	return enc_end(w);
}

int dec_detach(struct rbuf *r, struct msg_detach *m, struct uwerr *e)
{
	memset(m, 0, sizeof(*m));
	need(r, 8, "lease", e);
	m->lease = rb_u64(r);
	if (m->lease == 0)
		bad(r, e, "lease 0 (leases start at 1)");
	return finish(r, "detach", e);
}

/* ---- tune -------------------------------------------------------------- */

int enc_tune(struct wbuf *w, const struct msg_tune *m)
{
	wb_str(w, m->name);
	wb_u32(w, m->flags);
	return enc_end(w);
}

int dec_tune(struct rbuf *r, struct msg_tune *m, struct uwerr *e)
{
	memset(m, 0, sizeof(*m));
	m->name = name_field(r, 1, e);
	need(r, 4, "flags", e);
	m->flags = rb_u32(r);
	if (m->flags & ~UW_TUNE_FORCE)
		bad(r, e, "flags 0x%x: unknown bits 0x%x", m->flags, m->flags & ~UW_TUNE_FORCE);
	int rc = finish(r, "tune", e);
	if (rc)
		msg_tune_free(m);
	return rc;
}

void msg_tune_free(struct msg_tune *m)
{
	free(m->name);
	m->name = NULL;
}

int enc_tune_reply(struct wbuf *w, const struct msg_tune_reply *m)
{
	wb_u64(w, m->job);
	return enc_end(w);
}

int dec_tune_reply(struct rbuf *r, struct msg_tune_reply *m, struct uwerr *e)
{
	memset(m, 0, sizeof(*m));
	need(r, 8, "job", e);
	m->job = rb_u64(r);
	if (m->job == 0)
		bad(r, e, "job 0 (jobs start at 1)");
	return finish(r, "tune reply", e);
}

/* ---- attach ------------------------------------------------------------ */

int enc_attach(struct wbuf *w, const struct msg_attach *m)
{
	wb_str(w, m->name);
	return enc_end(w);
}

/* A request that is one model name (attach, verify). */
static int dec_name_only(struct rbuf *r, char **name, const char *what, struct uwerr *e)
{
	*name = name_field(r, 0, e);
	int rc = finish(r, what, e);
	if (rc) {
		free(*name);
		*name = NULL;
	}
	return rc;
}

int dec_attach(struct rbuf *r, struct msg_attach *m, struct uwerr *e)
{
	return dec_name_only(r, &m->name, "attach", e);
}

void msg_attach_free(struct msg_attach *m)
{
	free(m->name);
	m->name = NULL;
}

/* Wire sizes of a tensor entry's fixed parts (PROTOCOL.md, "ATTACH"). */
#define LAYOUT_WIRE (4 + 4 + 8 * 3 + 4 + UW_PALETTE_SIZE + 8 * 7)
#define TENSOR_HEAD_WIRE (4 + 4)                 /* dtype, ndim */
#define TENSOR_TAIL_WIRE (8 + 4 + 8)             /* raw_bytes, buf, offset */
/* The least a tensor can take: a one-byte name and no dimensions. */
#define TENSOR_MIN_WIRE (4 + 1 + TENSOR_HEAD_WIRE + TENSOR_TAIL_WIRE + LAYOUT_WIRE)

static void wb_layout(struct wbuf *w, const struct uw_layout *l)
{
	wb_u32(w, l->format);
	wb_u32(w, l->dtype);
	wb_u64(w, l->rows);
	wb_u64(w, l->cols);
	wb_u64(w, l->nbytes);
	wb_u32(w, l->crc32c);
	wb_bytes(w, l->palette, UW_PALETTE_SIZE);
	wb_u64(w, l->mant_off);
	wb_u64(w, l->mant_stride);
	wb_u64(w, l->nib_off);
	wb_u64(w, l->nib_stride);
	wb_u64(w, l->patch_grp_off);
	wb_u64(w, l->patch_off);
	wb_u64(w, l->npatch);
}

static void rb_layout(struct rbuf *r, struct uw_layout *l, struct uwerr *e)
{
	need(r, LAYOUT_WIRE, "layout", e);
	l->format = rb_u32(r);
	l->dtype = rb_u32(r);
	l->rows = rb_u64(r);
	l->cols = rb_u64(r);
	l->nbytes = rb_u64(r);
	l->crc32c = rb_u32(r);
	for (int i = 0; i < UW_PALETTE_SIZE; i++)
		l->palette[i] = rb_u8(r);
	l->mant_off = rb_u64(r);
	l->mant_stride = rb_u64(r);
	l->nib_off = rb_u64(r);
	l->nib_stride = rb_u64(r);
	l->patch_grp_off = rb_u64(r);
	l->patch_off = rb_u64(r);
	l->npatch = rb_u64(r);
}

int enc_attach_reply(struct wbuf *w, const struct msg_attach_reply *m)
{
	wb_u64(w, m->lease);
	wb_u32(w, m->backend);
	wb_str(w, m->device_uuid);
	wb_u32(w, m->nbufs);
	for (uint32_t i = 0; i < m->nbufs; i++)
		wb_u64(w, m->buf_size[i]);
	wb_u32(w, m->ntensors);
	for (uint32_t i = 0; i < m->ntensors; i++) {
		const struct proto_tensor *t = &m->tensors[i];
		if (t->ndim > UW_MAX_DIMS)
			return -EINVAL;
		wb_str(w, t->name);
		wb_u32(w, t->dtype);
		wb_u32(w, t->ndim);
		for (uint32_t d = 0; d < t->ndim; d++)
			wb_u64(w, t->shape[d]);
		wb_u64(w, t->raw_bytes);
		wb_u32(w, t->buf);
		wb_u64(w, t->offset);
		wb_layout(w, &t->layout);
	}
	return enc_end(w);
}

/* One tensor entry: read it, then check it against itself and the buffers. */
static void rb_tensor(struct rbuf *r, struct proto_tensor *t, uint32_t nbufs,
		      const uint64_t *buf_size, struct uwerr *e)
{
	t->name = str_field(r, 1, PROTO_MAX_TENSOR_NAME, "name", e);
	need(r, TENSOR_HEAD_WIRE, "dtype, ndim", e);
	t->dtype = rb_u32(r);
	t->ndim = rb_u32(r);
	if (t->ndim > UW_MAX_DIMS)
		bad(r, e, "ndim %u, over the limit of %d", t->ndim, UW_MAX_DIMS);
	need(r, 8 * (size_t)t->ndim, "shape", e);
	for (uint32_t d = 0; d < t->ndim && !r->err; d++)
		t->shape[d] = rb_u64(r);
	need(r, TENSOR_TAIL_WIRE, "raw_bytes, buf, offset", e);
	t->raw_bytes = rb_u64(r);
	t->buf = rb_u32(r);
	t->offset = rb_u64(r);
	rb_layout(r, &t->layout, e);
	if (r->err)
		return;

	size_t esize = dtype_size((int)t->dtype);
	if (!esize) {
		bad(r, e, "dtype %u unknown", t->dtype);
		return;
	}
	uint64_t elems = 1, raw, cells, end;
	for (uint32_t d = 0; d < t->ndim; d++)
		if (__builtin_mul_overflow(elems, t->shape[d], &elems)) {
			bad(r, e, "shape overflows 64 bits at dimension %u", d);
			return;
		}
	if (__builtin_mul_overflow(elems, (uint64_t)esize, &raw) || raw != t->raw_bytes) {
		bad(r, e, "raw_bytes %llu, but the shape and dtype make %llu elements of %zu bytes",
		    (unsigned long long)t->raw_bytes, (unsigned long long)elems, esize);
		return;
	}
	if (t->layout.dtype != t->dtype) {
		bad(r, e, "layout dtype %u differs from the tensor's %u", t->layout.dtype, t->dtype);
		return;
	}
	if (__builtin_mul_overflow(t->layout.rows, t->layout.cols, &cells) || cells != elems) {
		bad(r, e, "layout %llu x %llu does not hold the shape's %llu elements",
		    (unsigned long long)t->layout.rows, (unsigned long long)t->layout.cols,
		    (unsigned long long)elems);
		return;
	}
	if (t->buf >= nbufs) {
		bad(r, e, "buf %u, but the reply has %u buffers", t->buf, nbufs);
		return;
	}
	if (t->offset % RES_ALIGN) {
		bad(r, e, "offset %llu not %d-byte aligned", (unsigned long long)t->offset, RES_ALIGN);
		return;
	}
	if (__builtin_add_overflow(t->offset, t->layout.nbytes, &end) || end > buf_size[t->buf]) {
		bad(r, e, "offset+size %llu+%llu past buffer %u (size %llu)",
		    (unsigned long long)t->offset, (unsigned long long)t->layout.nbytes, t->buf,
		    (unsigned long long)buf_size[t->buf]);
		return;
	}
	/* Its messages start "layout: ". */
	if (res_validate(&t->layout, (size_t)(buf_size[t->buf] - t->offset), e) < 0)
		r->err = EBADMSG;
}

int dec_attach_reply(struct rbuf *r, int nfds, struct msg_attach_reply *m,
		     struct uwerr *e)
{
	memset(m, 0, sizeof(*m));
	need(r, 12, "lease, backend", e);
	m->lease = rb_u64(r);
	m->backend = rb_u32(r);
	if (m->lease == 0)
		bad(r, e, "lease 0 (leases start at 1)");
	backend_check(r, m->backend, e);
	m->device_uuid = str_field(r, 0, PROTO_MAX_DEVICE, "device_uuid", e);
	need(r, 4, "nbufs", e);
	uint32_t nbufs = rb_u32(r);
	if (nbufs > PROTO_MAX_FDS)
		bad(r, e, "nbufs %u, over the limit of %d", nbufs, PROTO_MAX_FDS);
	else if ((int)nbufs != nfds)
		bad(r, e, "nbufs %u, but %d fds came with the reply", nbufs, nfds);
	need(r, 8 * (size_t)nbufs, "buf_size", e);
	if (!r->err && nbufs) {
		m->buf_size = calloc(nbufs, sizeof(*m->buf_size));
		if (m->buf_size)
			m->nbufs = nbufs;
		else
			rfail(r, e, ENOMEM, "buf_size: %u: out of memory", nbufs);
	}
	for (uint32_t i = 0; i < m->nbufs; i++) {
		m->buf_size[i] = rb_u64(r);
		if (m->buf_size[i] == 0)
			bad(r, e, "buffer %u: size 0", i);
	}
	need(r, 4, "ntensors", e);
	uint32_t nt = rb_u32(r);
	if (nt > PROTO_MAX_TENSORS)
		bad(r, e, "ntensors %u, over the limit of %d", nt, PROTO_MAX_TENSORS);
	else if (nt > rb_left(r) / TENSOR_MIN_WIRE)
		bad(r, e, "ntensors %u: more than the %zu bytes left can hold", nt, rb_left(r));
	if (!r->err && nt) {
		m->tensors = calloc(nt, sizeof(*m->tensors));
		if (m->tensors)
			m->ntensors = nt;
		else
			rfail(r, e, ENOMEM, "tensors: %u: out of memory", nt);
	}
	for (uint32_t i = 0; i < m->ntensors && !r->err; i++) {
		struct proto_tensor *t = &m->tensors[i];
		rb_tensor(r, t, m->nbufs, m->buf_size, e);
		if (r->err) {
			char q[48];
			if (t->name)
				ctx(e, "tensor %u (%s)", i, quoted(t->name, q));
			else
				ctx(e, "tensor %u", i);
		}
	}
	int rc = finish(r, "attach reply", e);
	if (rc)
		msg_attach_reply_free(m);
	return rc;
}

void msg_attach_reply_free(struct msg_attach_reply *m)
{
	for (uint32_t i = 0; m->tensors && i < m->ntensors; i++)
		free(m->tensors[i].name);
	free(m->tensors);
	free(m->buf_size);
	free(m->device_uuid);
	memset(m, 0, sizeof(*m));
}

/* ---- verify ------------------------------------------------------------ */

int enc_verify(struct wbuf *w, const struct msg_verify *m)
{
	wb_str(w, m->name);
	return enc_end(w);
}

int dec_verify(struct rbuf *r, struct msg_verify *m, struct uwerr *e)
{
	return dec_name_only(r, &m->name, "verify", e);
}

void msg_verify_free(struct msg_verify *m)
{
	free(m->name);
	m->name = NULL;
}

int enc_verify_reply(struct wbuf *w, const struct msg_verify_reply *m)
{
	wb_u64(w, m->tensors);
	wb_u64(w, m->bytes);
	wb_u64(w, m->usec);
	wb_u64(w, m->nbad);
	wb_u32(w, m->nnames);
	for (uint32_t i = 0; i < m->nnames; i++)
		wb_str(w, m->bad[i]);
	return enc_end(w);
}

int dec_verify_reply(struct rbuf *r, struct msg_verify_reply *m, struct uwerr *e)
{
	memset(m, 0, sizeof(*m));
	need(r, 4 * 8 + 4, "counts", e);
	m->tensors = rb_u64(r);
	m->bytes = rb_u64(r);
	m->usec = rb_u64(r);
	m->nbad = rb_u64(r);
	uint32_t n = rb_u32(r);
	uint64_t want = m->nbad < PROTO_MAX_BAD_NAMES ? m->nbad : PROTO_MAX_BAD_NAMES;
	if (m->nbad > m->tensors)
		bad(r, e, "nbad %llu of %llu tensors", (unsigned long long)m->nbad,
		    (unsigned long long)m->tensors);
	else if (n != want)
		bad(r, e, "nnames %u, but nbad %llu asks for %llu", n, (unsigned long long)m->nbad,
		    (unsigned long long)want);
	else if (n > rb_left(r) / 5)   /* a name: its length and at least a byte */
		bad(r, e, "nnames %u: more than the %zu bytes left can hold", n, rb_left(r));
	if (!r->err && n) {
		m->bad = calloc(n, sizeof(*m->bad));
		if (m->bad)
			m->nnames = n;
		else
			rfail(r, e, ENOMEM, "bad: %u names: out of memory", n);
	}
	for (uint32_t i = 0; i < m->nnames && !r->err; i++)
		if (!(m->bad[i] = str_field(r, 1, PROTO_MAX_TENSOR_NAME, "bad tensor name", e)))
			ctx(e, "name %u", i);
	int rc = finish(r, "verify reply", e);
	if (rc)
		msg_verify_reply_free(m);
	return rc;
}

void msg_verify_reply_free(struct msg_verify_reply *m)
{
	for (uint32_t i = 0; m->bad && i < m->nnames; i++)
		free(m->bad[i]);
	free(m->bad);
	memset(m, 0, sizeof(*m));
}
