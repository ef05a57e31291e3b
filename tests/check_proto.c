/* check_proto: the wire protocol: its byte layout, fd passing, a round trip
 * of every message, and malformed input of every kind, with no fd leak. */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/resident.h"
#include "proto/proto.h"
#include "tests/testutil.h"

static uint64_t rng;      /* seeded once in main; each test forks a copy */
static int fds_at_start;

static void fd_setup(void)
{
	fds_at_start = tu_count_fds();
}

static void fd_teardown(void)
{
	ck_assert_int_eq(tu_count_fds(), fds_at_start);
}

static uint32_t rnd(uint32_t n)   /* 0..n-1 */
{
	return (uint32_t)(tu_rand(&rng) % n);
}

#define ck_assert_msg_has(e, s) \
	ck_assert_msg(strstr((e)->msg, (s)), "message \"%s\" lacks \"%s\"", (e)->msg, (s))

/* ---- helpers: sockets, raw frames, memfds ------------------------------ */

static void pair(int sv[2])
{
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

/* Send bytes with fds attached to the first of them, bypassing proto_send. */
static void send_raw(int sock, const void *p, size_t n, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * 250)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { (void *)p, n };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	proto_put_fds(&mh, ctl.buf, fds, nfds);
	ck_assert_int_eq(sendmsg(sock, &mh, MSG_NOSIGNAL), (ssize_t)n);
}

static int make_memfd(size_t size)
{
	int fd = memfd_create("check_proto", MFD_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	return fd;
}

/* Expect proto_recv on sock to fail with code, its message holding what. */
static void recv_fails(int sock, int code, const char *what)
{
	struct proto_msg m;
	struct uwerr e = {0};
	ck_assert_int_eq(proto_recv(sock, &m, &e), -code);
	ck_assert_int_eq(e.code, code);
	ck_assert_msg_has(&e, what);
	ck_assert_ptr_null(m.payload);
	ck_assert_int_eq(m.nfds, 0);
	proto_msg_free(&m);
}

/* ---- random messages ---------------------------------------------------- */

static char *rand_name(void)
{
	static const char cs[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
	size_t n = 1 + rnd(PROTO_MAX_NAME);
	char *s = malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		s[i] = cs[rnd(i ? sizeof(cs) - 1 : 62)];   /* never "." nor ".." */
	s[n] = '\0';
	return s;
}

/* Any bytes but NUL. */
static char *rand_text(size_t min, size_t max)
{
	size_t n = min + rnd((uint32_t)(max - min + 1));
	char *s = malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		s[i] = (char)(1 + rnd(255));
	s[n] = '\0';
	return s;
}

static char *rand_path(void)
{
	char *s = rand_text(1, 300);
	s[0] = '/';
	return s;
}

enum kind {
	K_HELLO, K_STATUS, K_HELLO_REPLY, K_LOAD, K_EVICT, K_STATS, K_STATS_REPLY,
	K_ATTACH, K_ATTACH_REPLY, K_DETACH, K_VERIFY, K_VERIFY_REPLY, K_TUNE, K_TUNE_REPLY, K_COUNT
};
static const char *const kind_name[K_COUNT] = {
	"hello", "status", "hello reply", "load", "evict", "stats", "stats reply",
	"attach", "attach reply", "detach", "verify", "verify reply", "tune", "tune reply",
};

union anymsg {
	struct msg_hello hello;
	struct msg_status status;
	struct msg_hello_reply hello_reply;
	struct msg_load load;
	struct msg_evict evict;
	struct msg_stats stats;
	struct msg_stats_reply stats_reply;
	struct msg_attach attach;
	struct msg_attach_reply attach_reply;
	struct msg_detach detach;
	struct msg_verify verify;
	struct msg_verify_reply verify_reply;
	struct msg_tune tune;
	struct msg_tune_reply tune_reply;
};

/* One tensor with a real layout (res_plan), placed in buffer buf. */
static void rand_tensor(struct proto_tensor *t, uint32_t buf, uint64_t *cursor)
{
	static const uint32_t dtypes[] = { UW_DTYPE_BF16, UW_DTYPE_BF16, UW_DTYPE_F32,
					   UW_DTYPE_U8, UW_DTYPE_I64, UW_DTYPE_BOOL };
	memset(t, 0, sizeof(*t));
	t->name = rand_text(1, 200);
	t->dtype = dtypes[rnd(sizeof(dtypes) / sizeof(dtypes[0]))];
	t->ndim = t->dtype == UW_DTYPE_BF16 ? 2 : rnd(4);
	uint64_t elems = 1;
	for (uint32_t d = 0; d < t->ndim; d++)
		elems *= t->shape[d] = 1 + rnd(t->dtype == UW_DTYPE_BF16 ? 64 : 6);
	size_t esize = t->dtype == UW_DTYPE_BF16 ? 2 : t->dtype == UW_DTYPE_F32 ? 4 :
		       t->dtype == UW_DTYPE_I64 ? 8 : 1;
	t->raw_bytes = elems * esize;
	uint8_t *raw = malloc(t->raw_bytes);
	for (size_t i = 0; i < t->raw_bytes; i++)
		raw[i] = (uint8_t)rnd(256);
	if (t->dtype == UW_DTYPE_BF16)   /* a few exponents: R12 pays off */
		for (size_t i = 0; i < t->raw_bytes; i += 2)
			raw[i + 1] = (uint8_t)((raw[i + 1] & 0x80) | (0x3c + rnd(3)));
	struct uwerr e = {0};
	ck_assert_msg(res_plan((int)t->dtype, (int)t->ndim, t->shape, raw, t->raw_bytes, RES_PREFER_SPEED,
			       &t->layout, &e) == 0, "res_plan: %s", e.msg);
	free(raw);
	t->layout.crc32c = (uint32_t)tu_rand(&rng);
	t->buf = buf;
	t->offset = (*cursor + RES_ALIGN - 1) / RES_ALIGN * RES_ALIGN;
	*cursor = t->offset + t->layout.nbytes;
}

static void rand_attach_reply(struct msg_attach_reply *m)
{
	memset(m, 0, sizeof(*m));
	m->lease = 1 + tu_rand(&rng) % UINT64_MAX;
	m->backend = rnd(2);
	m->device_uuid = m->backend == UW_BACKEND_CUDA ? rand_text(0, PROTO_MAX_DEVICE) : strdup("");
	m->nbufs = 1 + rnd(3);
	m->buf_size = calloc(m->nbufs, sizeof(*m->buf_size));
	m->ntensors = rnd(12);
	m->tensors = calloc(m->ntensors ? m->ntensors : 1, sizeof(*m->tensors));
	for (uint32_t i = 0; i < m->ntensors; i++) {
		uint32_t b = rnd(m->nbufs);
		rand_tensor(&m->tensors[i], b, &m->buf_size[b]);
	}
	for (uint32_t b = 0; b < m->nbufs; b++)
		m->buf_size[b] += 1 + rnd(4096);   /* slack: a buffer may be larger */
}

/* A valid attach reply of one buffer and two tensors, the second an R12
 * BF16 matrix; each case breaks one thing and names what it expects. */
static void attach_reply_fixture(struct msg_attach_reply *m)
{
	memset(m, 0, sizeof(*m));
	m->lease = 7;
	m->device_uuid = strdup("");
	m->nbufs = 1;
	m->buf_size = calloc(1, sizeof(uint64_t));
	m->ntensors = 2;
	m->tensors = calloc(2, sizeof(struct proto_tensor));
	uint64_t cursor = 0;
	rand_tensor(&m->tensors[0], 0, &cursor);
	for (;;) {   /* the second is the one the cases break: want it R12 */
		uint64_t c = cursor;
		rand_tensor(&m->tensors[1], 0, &c);
		if (m->tensors[1].layout.format == UW_FORMAT_R12) {
			cursor = c;
			break;
		}
		free(m->tensors[1].name);
	}
	m->buf_size[0] = cursor;
}

static void rand_msg(enum kind k, union anymsg *u)
{
	memset(u, 0, sizeof(*u));
	switch (k) {
	case K_HELLO:
		u->hello.min_version = (uint16_t)(1 + rnd(100));
		u->hello.max_version = (uint16_t)(u->hello.min_version + rnd(100));
		u->hello.peer = rand_text(0, PROTO_MAX_PEER);
		break;
	case K_STATUS:
		u->status.status = rnd(2) ? 0 : -(int32_t)(1 + rnd(PROTO_MAX_ERRNO));
		u->status.message = rand_text(0, PROTO_MAX_MSG);
		break;
	case K_HELLO_REPLY:
		u->hello_reply.version = (uint16_t)(1 + rnd(65535));
		u->hello_reply.backend = rnd(2);
		u->hello_reply.daemon = rand_text(0, PROTO_MAX_PEER);
		break;
	case K_LOAD:
		u->load.name = rand_name();
		u->load.device = rand_text(0, PROTO_MAX_DEVICE);
		u->load.npaths = 1 + rnd(20);
		u->load.paths = calloc(u->load.npaths, sizeof(char *));
		for (uint32_t i = 0; i < u->load.npaths; i++)
			u->load.paths[i] = rand_path();
		break;
	case K_EVICT:
		u->evict.name = rand_name();
		u->evict.flags = rnd(2) ? UW_EVICT_FORCE : 0;
		break;
	case K_STATS:
		u->stats.name = rnd(3) ? rand_name() : strdup("");
		break;
	case K_STATS_REPLY:
		u->stats_reply.json = rand_text(0, 5000);
		break;
	case K_ATTACH:
		u->attach.name = rand_name();
		break;
	case K_ATTACH_REPLY:
		rand_attach_reply(&u->attach_reply);
		break;
	case K_DETACH:
		u->detach.lease = 1 + tu_rand(&rng) % UINT64_MAX;
		break;
	case K_VERIFY:
		u->verify.name = rand_name();
		break;
	case K_VERIFY_REPLY: {
		struct msg_verify_reply *v = &u->verify_reply;
		v->tensors = rnd(100000);
		v->bytes = tu_rand(&rng);
		v->usec = tu_rand(&rng);
		v->nbad = v->tensors < 20 ? rnd((uint32_t)v->tensors + 1) : rnd(20);
		v->nnames = (uint32_t)v->nbad;
		v->bad = calloc(v->nnames ? v->nnames : 1, sizeof(*v->bad));
		for (uint32_t i = 0; i < v->nnames; i++)
			v->bad[i] = rand_text(1, 60);
		break;
	}
	case K_TUNE:
		u->tune.name = rnd(3) ? rand_name() : strdup("");
		u->tune.flags = rnd(2) ? UW_TUNE_FORCE : 0;
		break;
	case K_TUNE_REPLY:
		u->tune_reply.job = 1 + tu_rand(&rng) % UINT64_MAX;
		break;
	case K_COUNT:
		break;
	}
}

static int enc_any(enum kind k, struct wbuf *w, const union anymsg *u)
{
	switch (k) {
	case K_HELLO: return enc_hello(w, &u->hello);
	case K_STATUS: return enc_status(w, &u->status);
	case K_HELLO_REPLY: return enc_hello_reply(w, &u->hello_reply);
	case K_LOAD: return enc_load(w, &u->load);
	case K_EVICT: return enc_evict(w, &u->evict);
	case K_STATS: return enc_stats(w, &u->stats);
	case K_STATS_REPLY: return enc_stats_reply(w, &u->stats_reply);
	case K_ATTACH: return enc_attach(w, &u->attach);
	case K_ATTACH_REPLY: return enc_attach_reply(w, &u->attach_reply);
	case K_DETACH: return enc_detach(w, &u->detach);
	case K_VERIFY: return enc_verify(w, &u->verify);
	case K_VERIFY_REPLY: return enc_verify_reply(w, &u->verify_reply);
	case K_TUNE: return enc_tune(w, &u->tune);
	case K_TUNE_REPLY: return enc_tune_reply(w, &u->tune_reply);
	case K_COUNT: break;
	}
	return -EINVAL;
}

static int dec_any(enum kind k, struct rbuf *r, int nfds, union anymsg *u, struct uwerr *e)
{
	switch (k) {
	case K_HELLO: return dec_hello(r, &u->hello, e);
	case K_STATUS: return dec_status(r, &u->status, e);
	case K_HELLO_REPLY: return dec_hello_reply(r, &u->hello_reply, e);
	case K_LOAD: return dec_load(r, &u->load, e);
	case K_EVICT: return dec_evict(r, &u->evict, e);
	case K_STATS: return dec_stats(r, &u->stats, e);
	case K_STATS_REPLY: return dec_stats_reply(r, &u->stats_reply, e);
	case K_ATTACH: return dec_attach(r, &u->attach, e);
	case K_ATTACH_REPLY: return dec_attach_reply(r, nfds, &u->attach_reply, e);
	case K_DETACH: return dec_detach(r, &u->detach, e);
	case K_VERIFY: return dec_verify(r, &u->verify, e);
	case K_VERIFY_REPLY: return dec_verify_reply(r, &u->verify_reply, e);
	case K_TUNE: return dec_tune(r, &u->tune, e);
	case K_TUNE_REPLY: return dec_tune_reply(r, &u->tune_reply, e);
	case K_COUNT: break;
	}
	return -EINVAL;
}

static void free_any(enum kind k, union anymsg *u)
{
	switch (k) {
	case K_HELLO: msg_hello_free(&u->hello); break;
	case K_STATUS: msg_status_free(&u->status); break;
	case K_HELLO_REPLY: msg_hello_reply_free(&u->hello_reply); break;
	case K_LOAD: msg_load_free(&u->load); break;
	case K_EVICT: msg_evict_free(&u->evict); break;
	case K_STATS: msg_stats_free(&u->stats); break;
	case K_STATS_REPLY: msg_stats_reply_free(&u->stats_reply); break;
	case K_ATTACH: msg_attach_free(&u->attach); break;
	case K_ATTACH_REPLY: msg_attach_reply_free(&u->attach_reply); break;
	case K_VERIFY: msg_verify_free(&u->verify); break;
	case K_VERIFY_REPLY: msg_verify_reply_free(&u->verify_reply); break;
	case K_TUNE: msg_tune_free(&u->tune); break;
	case K_DETACH: case K_TUNE_REPLY: case K_COUNT: break;
	}
}

/* A failed dec leaves nothing allocated behind. */
static void assert_empty(enum kind k, const union anymsg *u)
{
	switch (k) {
	case K_HELLO: ck_assert_ptr_null(u->hello.peer); break;
	case K_STATUS: ck_assert_ptr_null(u->status.message); break;
	case K_HELLO_REPLY: ck_assert_ptr_null(u->hello_reply.daemon); break;
	case K_LOAD:
		ck_assert_ptr_null(u->load.name);
		ck_assert_ptr_null(u->load.device);
		ck_assert_ptr_null(u->load.paths);
		break;
	case K_EVICT: ck_assert_ptr_null(u->evict.name); break;
	case K_STATS: ck_assert_ptr_null(u->stats.name); break;
	case K_STATS_REPLY: ck_assert_ptr_null(u->stats_reply.json); break;
	case K_ATTACH: ck_assert_ptr_null(u->attach.name); break;
	case K_ATTACH_REPLY:
		ck_assert_ptr_null(u->attach_reply.device_uuid);
		ck_assert_ptr_null(u->attach_reply.buf_size);
		ck_assert_ptr_null(u->attach_reply.tensors);
		break;
	case K_VERIFY: ck_assert_ptr_null(u->verify.name); break;
	case K_VERIFY_REPLY: ck_assert_ptr_null(u->verify_reply.bad); break;
	case K_TUNE: ck_assert_ptr_null(u->tune.name); break;
	case K_DETACH: case K_TUNE_REPLY: case K_COUNT: break;
	}
}

static void layout_eq(const struct uw_layout *a, const struct uw_layout *b)
{
	ck_assert_uint_eq(a->format, b->format);
	ck_assert_uint_eq(a->dtype, b->dtype);
	ck_assert_uint_eq(a->rows, b->rows);
	ck_assert_uint_eq(a->cols, b->cols);
	ck_assert_uint_eq(a->nbytes, b->nbytes);
	ck_assert_uint_eq(a->crc32c, b->crc32c);
	ck_assert_mem_eq(a->palette, b->palette, UW_PALETTE_SIZE);
	ck_assert_uint_eq(a->mant_off, b->mant_off);
	ck_assert_uint_eq(a->mant_stride, b->mant_stride);
	ck_assert_uint_eq(a->nib_off, b->nib_off);
	ck_assert_uint_eq(a->nib_stride, b->nib_stride);
	ck_assert_uint_eq(a->patch_grp_off, b->patch_grp_off);
	ck_assert_uint_eq(a->patch_off, b->patch_off);
	ck_assert_uint_eq(a->npatch, b->npatch);
}

static void eq_any(enum kind k, const union anymsg *a, const union anymsg *b)
{
	switch (k) {
	case K_HELLO:
		ck_assert_uint_eq(a->hello.min_version, b->hello.min_version);
		ck_assert_uint_eq(a->hello.max_version, b->hello.max_version);
		ck_assert_str_eq(a->hello.peer, b->hello.peer);
		break;
	case K_STATUS:
		ck_assert_int_eq(a->status.status, b->status.status);
		ck_assert_str_eq(a->status.message, b->status.message);
		break;
	case K_HELLO_REPLY:
		ck_assert_uint_eq(a->hello_reply.version, b->hello_reply.version);
		ck_assert_uint_eq(a->hello_reply.backend, b->hello_reply.backend);
		ck_assert_str_eq(a->hello_reply.daemon, b->hello_reply.daemon);
		break;
	case K_LOAD:
		ck_assert_str_eq(a->load.name, b->load.name);
		ck_assert_str_eq(a->load.device, b->load.device);
		ck_assert_uint_eq(a->load.npaths, b->load.npaths);
		for (uint32_t i = 0; i < a->load.npaths; i++)
			ck_assert_str_eq(a->load.paths[i], b->load.paths[i]);
		break;
	case K_EVICT:
		ck_assert_str_eq(a->evict.name, b->evict.name);
		ck_assert_uint_eq(a->evict.flags, b->evict.flags);
		break;
	case K_STATS:
		ck_assert_str_eq(a->stats.name, b->stats.name);
		break;
	case K_STATS_REPLY:
		ck_assert_str_eq(a->stats_reply.json, b->stats_reply.json);
		break;
	case K_ATTACH:
		ck_assert_str_eq(a->attach.name, b->attach.name);
		break;
	case K_ATTACH_REPLY: {
		const struct msg_attach_reply *x = &a->attach_reply, *y = &b->attach_reply;
		ck_assert_uint_eq(x->lease, y->lease);
		ck_assert_uint_eq(x->backend, y->backend);
		ck_assert_str_eq(x->device_uuid, y->device_uuid);
		ck_assert_uint_eq(x->nbufs, y->nbufs);
		for (uint32_t i = 0; i < x->nbufs; i++)
			ck_assert_uint_eq(x->buf_size[i], y->buf_size[i]);
		ck_assert_uint_eq(x->ntensors, y->ntensors);
		for (uint32_t i = 0; i < x->ntensors; i++) {
			const struct proto_tensor *s = &x->tensors[i], *t = &y->tensors[i];
			ck_assert_str_eq(s->name, t->name);
			ck_assert_uint_eq(s->dtype, t->dtype);
			ck_assert_uint_eq(s->ndim, t->ndim);
			for (uint32_t d = 0; d < s->ndim; d++)
				ck_assert_uint_eq(s->shape[d], t->shape[d]);
			ck_assert_uint_eq(s->raw_bytes, t->raw_bytes);
			ck_assert_uint_eq(s->buf, t->buf);
			ck_assert_uint_eq(s->offset, t->offset);
			layout_eq(&s->layout, &t->layout);
		}
		break;
	}
	case K_DETACH:
		ck_assert_uint_eq(a->detach.lease, b->detach.lease);
		break;
	case K_VERIFY:
		ck_assert_str_eq(a->verify.name, b->verify.name);
		break;
	case K_VERIFY_REPLY: {
		const struct msg_verify_reply *x = &a->verify_reply, *y = &b->verify_reply;
		ck_assert_uint_eq(x->tensors, y->tensors);
		ck_assert_uint_eq(x->bytes, y->bytes);
		ck_assert_uint_eq(x->usec, y->usec);
		ck_assert_uint_eq(x->nbad, y->nbad);
		ck_assert_uint_eq(x->nnames, y->nnames);
		for (uint32_t i = 0; i < x->nnames; i++)
			ck_assert_str_eq(x->bad[i], y->bad[i]);
		break;
	}
	case K_TUNE:
		ck_assert_str_eq(a->tune.name, b->tune.name);
		ck_assert_uint_eq(a->tune.flags, b->tune.flags);
		break;
	case K_TUNE_REPLY:
		ck_assert_uint_eq(a->tune_reply.job, b->tune_reply.job);
		break;
	case K_COUNT:
		break;
	}
}

static int is_reply_body(enum kind k)
{
	return k == K_HELLO_REPLY || k == K_STATS_REPLY || k == K_ATTACH_REPLY ||
	       k == K_VERIFY_REPLY || k == K_TUNE_REPLY;
}

static const uint16_t kind_op[K_COUNT] = {
	[K_HELLO] = OP_HELLO, [K_STATUS] = OP_EVICT | OP_REPLY,
	[K_HELLO_REPLY] = OP_HELLO | OP_REPLY, [K_LOAD] = OP_LOAD, [K_EVICT] = OP_EVICT,
	[K_STATS] = OP_STATS, [K_STATS_REPLY] = OP_STATS | OP_REPLY, [K_ATTACH] = OP_ATTACH,
	[K_ATTACH_REPLY] = OP_ATTACH | OP_REPLY, [K_DETACH] = OP_DETACH,
	[K_VERIFY] = OP_VERIFY, [K_VERIFY_REPLY] = OP_VERIFY | OP_REPLY,
	[K_TUNE] = OP_TUNE, [K_TUNE_REPLY] = OP_TUNE | OP_REPLY,
};

/* ---- framing ------------------------------------------------------------ */

START_TEST(test_wire_layout)
{
	int sv[2];
	pair(sv);
	struct uwerr e = {0};
	ck_assert_int_eq(proto_send(sv[0], 0x0102, OP_ATTACH | OP_REPLY, "abc", 3, NULL, 0, &e), 0);
	static const uint8_t want[] = { 'U', 'W', 'P', '1', 0x02, 0x01, 0x05, 0x80,
					3, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', 'c' };
	uint8_t got[sizeof(want) + 1];
	ck_assert_int_eq(recv(sv[1], got, sizeof(got), MSG_DONTWAIT), (ssize_t)sizeof(want));
	ck_assert_mem_eq(got, want, sizeof(want));

	/* And the other way: hand-built bytes parse into the header fields. */
	uint8_t b[PROTO_HDR_SIZE + 2] = { [PROTO_HDR_SIZE] = 7, 9 };
	tu_proto_hdr(b, PROTO_MAGIC, 0xbeef, OP_STATS, 2, 0, 0);
	send_raw(sv[0], b, sizeof(b), NULL, 0);
	struct proto_msg m;
	ck_assert_int_eq(proto_recv(sv[1], &m, &e), 0);
	ck_assert_uint_eq(m.hdr.magic, PROTO_MAGIC);
	ck_assert_uint_eq(m.hdr.version, 0xbeef);
	ck_assert_uint_eq(m.hdr.opcode, OP_STATS);
	ck_assert_uint_eq(m.hdr.len, 2);
	ck_assert_uint_eq(m.hdr.nfds, 0);
	ck_assert_int_eq(m.payload[0], 7);
	ck_assert_int_eq(m.payload[1], 9);
	proto_msg_free(&m);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* Every message, random content, through a socket: what comes out is what
 * went in. Replies with a body go behind a success status, as the daemon
 * sends them; an attach reply carries one memfd per buffer. */
START_TEST(test_roundtrip)
{
	int sv[2];
	pair(sv);
	for (int iter = 0; iter < 40; iter++)
		for (enum kind k = 0; k < K_COUNT; k++) {
			union anymsg in, out;
			struct wbuf w = {0};
			struct uwerr e = {0};
			int fds[PROTO_MAX_FDS], nfds = 0;
			rand_msg(k, &in);
			if (is_reply_body(k))
				ck_assert_int_eq(enc_status(&w, &(struct msg_status){ 0, "" }), 0);
			ck_assert_int_eq(enc_any(k, &w, &in), 0);
			if (k == K_ATTACH_REPLY)
				for (; nfds < (int)in.attach_reply.nbufs; nfds++)
					fds[nfds] = make_memfd(in.attach_reply.buf_size[nfds]);
			ck_assert_int_eq(proto_send(sv[0], PROTO_VERSION, kind_op[k], w.p,
						    (uint32_t)w.len, fds, nfds, &e), 0);
			struct proto_msg m;
			ck_assert_msg(proto_recv(sv[1], &m, &e) == 0, "%s", e.msg);
			ck_assert_uint_eq(m.hdr.opcode, kind_op[k]);
			ck_assert_uint_eq(m.hdr.version, PROTO_VERSION);
			ck_assert_uint_eq(m.hdr.len, w.len);
			ck_assert_int_eq(m.nfds, nfds);
			struct rbuf r = { m.payload, m.hdr.len, 0, 0 };
			if (is_reply_body(k)) {
				struct msg_status st;
				ck_assert_int_eq(dec_status(&r, &st, &e), 0);
				ck_assert_int_eq(st.status, 0);
				ck_assert_str_eq(st.message, "");
				msg_status_free(&st);
			}
			ck_assert_msg(dec_any(k, &r, m.nfds, &out, &e) == 0, "%s: %s", kind_name[k], e.msg);
			eq_any(k, &in, &out);
			free_any(k, &in);
			free_any(k, &out);
			proto_msg_free(&m);
			for (int i = 0; i < nfds; i++)
				close(fds[i]);
			wb_free(&w);
		}
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_fd_passing)
{
	int sv[2], fds[3];
	pair(sv);
	for (int i = 0; i < 3; i++)
		fds[i] = make_memfd(4096);
	struct uwerr e = {0};
	ck_assert_int_eq(proto_send(sv[0], PROTO_VERSION, OP_ATTACH | OP_REPLY, "x", 1, fds, 3, &e), 0);
	struct proto_msg m;
	ck_assert_msg(proto_recv(sv[1], &m, &e) == 0, "%s", e.msg);
	ck_assert_int_eq(m.nfds, 3);
	for (int i = 0; i < 3; i++) {
		int got = m.fds[i];
		ck_assert_int_ne(got, fds[i]);
		ck_assert_int_eq(fcntl(got, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
		/* The same file: a write through one shows through the other. */
		uint64_t a = tu_rand(&rng), b = tu_rand(&rng), x = 0;
		ck_assert_int_eq(pwrite(fds[i], &a, sizeof(a), 64 * i), (ssize_t)sizeof(a));
		ck_assert_int_eq(pread(got, &x, sizeof(x), 64 * i), (ssize_t)sizeof(x));
		ck_assert_uint_eq(x, a);
		ck_assert_int_eq(pwrite(got, &b, sizeof(b), 1000 + i), (ssize_t)sizeof(b));
		ck_assert_int_eq(pread(fds[i], &x, sizeof(x), 1000 + i), (ssize_t)sizeof(x));
		ck_assert_uint_eq(x, b);
	}
	/* A taken fd is the caller's: proto_msg_free leaves it open. */
	int taken = proto_msg_take_fd(&m, 1);
	ck_assert_int_ge(taken, 0);
	ck_assert_int_eq(m.fds[1], -1);
	ck_assert_int_eq(proto_msg_take_fd(&m, 1), -1);
	ck_assert_int_eq(proto_msg_take_fd(&m, 3), -1);
	int others[2] = { m.fds[0], m.fds[2] };
	proto_msg_free(&m);
	ck_assert_int_ge(fcntl(taken, F_GETFD), 0);
	ck_assert_int_eq(fcntl(others[0], F_GETFD), -1);   /* closed by free */
	ck_assert_int_eq(fcntl(others[1], F_GETFD), -1);
	close(taken);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* 8 MiB outgrows the socket buffer; on a non-blocking socket the send goes
 * in many pieces while a child reads, and the fds must come once, with the
 * first byte. */
START_TEST(test_large_message)
{
	int sv[2];
	pair(sv);
	size_t len = 8u << 20;
	uint8_t *p = malloc(len);
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = tu_rand(&rng);
		memcpy(p + i, &v, 8);
	}
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct proto_msg m;
		int ok = proto_recv(sv[1], &m, NULL) == 0 && m.hdr.len == len && m.nfds == 2 &&
			 !memcmp(m.payload, p, len);
		proto_msg_free(&m);
		free(p);
		_exit(ok ? 0 : 1);
	}
	int fds[2] = { make_memfd(1), make_memfd(1) };
	struct uwerr e = {0};
	ck_assert_int_eq(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	ck_assert_msg(proto_send(sv[0], 1, OP_STATS | OP_REPLY, p, (uint32_t)len, fds, 2, &e) == 0,
		      "%s", e.msg);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	free(p);
	close(fds[0]);
	close(fds[1]);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_send_errors)
{
	int sv[2], fd = make_memfd(1), many[PROTO_MAX_FDS + 1];
	pair(sv);
	struct uwerr e = {0};
	ck_assert_int_eq(proto_send(sv[0], 1, OP_LOAD, "x", PROTO_MAX_PAYLOAD + 1, NULL, 0, &e), -EMSGSIZE);
	ck_assert_msg_has(&e, "over the limit");
	for (int i = 0; i <= PROTO_MAX_FDS; i++)
		many[i] = fd;
	ck_assert_int_eq(proto_send(sv[0], 1, OP_LOAD, "x", 1, many, PROTO_MAX_FDS + 1, &e), -EINVAL);
	ck_assert_int_eq(proto_send(sv[0], 1, OP_LOAD, NULL, 1, NULL, 0, &e), -EINVAL);
	uint8_t c;
	ck_assert_int_eq(recv(sv[1], &c, 1, MSG_DONTWAIT), -1);   /* nothing went out */
	ck_assert_int_eq(errno, EAGAIN);
	/* A dead peer is -EPIPE, not SIGPIPE (which would kill this test). */
	close(sv[1]);
	ck_assert_int_eq(proto_send(sv[0], 1, OP_LOAD, "x", 1, &fd, 1, &e), -EPIPE);
	ck_assert_msg_has(&e, "send load");
	close(sv[0]);
	close(fd);
}
END_TEST

START_TEST(test_nonblocking)
{
	int sv[2];
	pair(sv);
	ck_assert_int_eq(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
	recv_fails(sv[1], EAGAIN, "receive");
	/* Once a message has begun, the rest is waited for. */
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		uint8_t b[PROTO_HDR_SIZE + 3];
		tu_proto_hdr(b, PROTO_MAGIC, 1, OP_ATTACH, 3, 0, 0);
		memcpy(b + PROTO_HDR_SIZE, "xyz", 3);
		ssize_t n = write(sv[0], b, 5);
		usleep(100000);
		n += write(sv[0], b + 5, sizeof(b) - 5);
		_exit(n == (ssize_t)sizeof(b) ? 0 : 1);
	}
	struct pollfd pfd = { .fd = sv[1], .events = POLLIN };
	ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
	struct proto_msg m;
	struct uwerr e = {0};
	ck_assert_msg(proto_recv(sv[1], &m, &e) == 0, "%s", e.msg);
	ck_assert_mem_eq(m.payload, "xyz", 3);
	proto_msg_free(&m);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(test_eof)
{
	int sv[2];
	pair(sv);
	close(sv[0]);
	recv_fails(sv[1], ECONNRESET, "closed by the peer");
	close(sv[1]);
}
END_TEST

START_TEST(test_short_header)
{
	int sv[2];
	pair(sv);
	uint8_t b[PROTO_HDR_SIZE];
	tu_proto_hdr(b, PROTO_MAGIC, 1, OP_HELLO, 0, 0, 0);
	send_raw(sv[0], b, 7, NULL, 0);
	shutdown(sv[0], SHUT_WR);
	recv_fails(sv[1], EBADMSG, "header truncated: connection closed after 7 of 16 bytes");
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* A bad header is refused whole: nothing of what follows it is read (the
 * bytes sent after it are still in the socket), and nothing is allocated
 * for the length it claims. The fds that came with it are closed. */
static void header_refused(uint32_t magic, uint32_t len, uint16_t nfds, uint16_t reserved,
			   int code, const char *what)
{
	int sv[2], fd = make_memfd(1);
	pair(sv);
	uint8_t b[PROTO_HDR_SIZE + 5] = { [PROTO_HDR_SIZE] = 'a', 'f', 't', 'e', 'r' };
	tu_proto_hdr(b, magic, 1, OP_LOAD, len, nfds, reserved);
	int before = tu_count_fds();
	send_raw(sv[0], b, sizeof(b), &fd, 1);
	recv_fails(sv[1], code, what);
	ck_assert_int_eq(tu_count_fds(), before);
	char rest[8];
	ck_assert_int_eq(recv(sv[1], rest, sizeof(rest), MSG_DONTWAIT), 5);
	ck_assert_mem_eq(rest, "after", 5);
	close(fd);
	close(sv[0]);
	close(sv[1]);
}

START_TEST(test_bad_magic)
{
	header_refused(0x31505756, 5, 1, 0, EBADMSG, "bad magic 0x31505756");
}
END_TEST

START_TEST(test_reserved)
{
	header_refused(PROTO_MAGIC, 5, 1, 0x100, EBADMSG, "reserved header field is 0x0100");
}
END_TEST

START_TEST(test_len_over_max)
{
	header_refused(PROTO_MAGIC, PROTO_MAX_PAYLOAD + 1, 1, 0, EMSGSIZE, "over the limit");
	header_refused(PROTO_MAGIC, UINT32_MAX, 1, 0, EMSGSIZE, "payload of 4294967295 bytes");
}
END_TEST

START_TEST(test_nfds_over_max)
{
	header_refused(PROTO_MAGIC, 5, PROTO_MAX_FDS + 1, 0, EBADMSG, "announces 65 fds");
}
END_TEST

/* A whole message arrives, but its fds do not match its header. */
static void fds_mismatch(uint16_t announced, int sent, const char *what)
{
	int sv[2], fd = make_memfd(1), *fds = calloc((size_t)sent + 1, sizeof(int));
	pair(sv);
	for (int i = 0; i < sent; i++)
		fds[i] = fd;
	uint8_t b[PROTO_HDR_SIZE + 4] = { [PROTO_HDR_SIZE] = 1, 2, 3, 4 };
	tu_proto_hdr(b, PROTO_MAGIC, 1, OP_ATTACH | OP_REPLY, 4, announced, 0);
	int before = tu_count_fds();
	send_raw(sv[0], b, sizeof(b), fds, sent);
	recv_fails(sv[1], EBADMSG, what);
	ck_assert_int_eq(tu_count_fds(), before);
	free(fds);
	close(fd);
	close(sv[0]);
	close(sv[1]);
}

START_TEST(test_missing_fds)
{
	fds_mismatch(2, 0, "expected 2 fds, got 0");
}
END_TEST

START_TEST(test_unexpected_fds)
{
	fds_mismatch(0, 2, "expected 0 fds, got 2");
}
END_TEST

START_TEST(test_surplus_fds)
{
	fds_mismatch(1, 3, "expected 1 fds, got 3");
	fds_mismatch(PROTO_MAX_FDS, PROTO_MAX_FDS + 1, "expected 64 fds, got 65");
	/* More than the receive buffer holds: the kernel truncates. */
	fds_mismatch(PROTO_MAX_FDS, 200, "expected 64 fds");
}
END_TEST

START_TEST(test_truncated_payload)
{
	int sv[2], fd = make_memfd(1);
	pair(sv);
	uint8_t b[PROTO_HDR_SIZE + 50] = {0};
	tu_proto_hdr(b, PROTO_MAGIC, 1, OP_ATTACH | OP_REPLY, 100, 1, 0);
	int before = tu_count_fds();
	send_raw(sv[0], b, sizeof(b), &fd, 1);
	shutdown(sv[0], SHUT_WR);
	recv_fails(sv[1], EBADMSG, "payload truncated: connection closed after 50 of 100 bytes");
	ck_assert_int_eq(tu_count_fds(), before);
	close(fd);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* ---- payload codec ------------------------------------------------------ */

START_TEST(test_reader)
{
	const uint8_t b[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 };
	struct rbuf r = { b, sizeof(b), 0, 0 };
	ck_assert_uint_eq(rb_u8(&r), 1);
	ck_assert_uint_eq(rb_u16(&r), 0x0302);
	ck_assert_uint_eq(rb_u64(&r), 0x0b0a090807060504ull);
	ck_assert_int_eq(r.err, 0);
	ck_assert_int_eq(rb_done(&r, NULL), 0);
	ck_assert_uint_eq(rb_u8(&r), 0);   /* past the end: zero, and err set */
	ck_assert_int_ne(r.err, 0);
	ck_assert_uint_eq(rb_u32(&(struct rbuf){ b, 3, 0, 0 }), 0);

	struct wbuf w = {0};
	wb_u32(&w, 5);
	wb_bytes(&w, "hello", 5);
	wb_str(&w, "hi");
	r = (struct rbuf){ w.p, w.len, 0, 0 };
	char *s = rb_str(&r, 5);
	ck_assert_str_eq(s, "hello");
	free(s);
	ck_assert_ptr_null(rb_str(&r, 1));   /* 2 bytes, over max 1 */
	ck_assert_int_ne(r.err, 0);
	wb_free(&w);
}
END_TEST

/* Every proper prefix of every message fails cleanly: -EBADMSG, a message,
 * and nothing left allocated (ASan's leak check sees the rest). */
START_TEST(test_truncated_every_cut)
{
	for (int iter = 0; iter < 3; iter++)
		for (enum kind k = 0; k < K_COUNT; k++) {
			union anymsg in, out;
			struct wbuf w = {0};
			rand_msg(k, &in);
			ck_assert_int_eq(enc_any(k, &w, &in), 0);
			int nfds = k == K_ATTACH_REPLY ? (int)in.attach_reply.nbufs : 0;
			for (size_t cut = 0; cut < w.len; cut++) {
				struct uwerr e = {0};
				struct rbuf r = { w.p, cut, 0, 0 };
				int rc = dec_any(k, &r, nfds, &out, &e);
				ck_assert_msg(rc == -EBADMSG, "%s cut at %zu of %zu: %d", kind_name[k], cut, w.len, rc);
				ck_assert_msg_has(&e, kind_name[k]);
				assert_empty(k, &out);
			}
			struct uwerr e = {0};
			struct rbuf r = { w.p, w.len, 0, 0 };
			ck_assert_msg(dec_any(k, &r, nfds, &out, &e) == 0, "%s: %s", kind_name[k], e.msg);
			free_any(k, &out);
			free_any(k, &in);
			wb_free(&w);
		}
}
END_TEST

START_TEST(test_trailing_bytes)
{
	for (enum kind k = 0; k < K_COUNT; k++) {
		union anymsg in, out;
		struct wbuf w = {0};
		struct uwerr e = {0};
		rand_msg(k, &in);
		if (k == K_STATUS)
			in.status.status = -EIO;   /* a success leaves the rest to its body */
		ck_assert_int_eq(enc_any(k, &w, &in), 0);
		wb_u8(&w, 0);
		struct rbuf r = { w.p, w.len, 0, 0 };
		int nfds = k == K_ATTACH_REPLY ? (int)in.attach_reply.nbufs : 0;
		ck_assert_int_eq(dec_any(k, &r, nfds, &out, &e), -EBADMSG);
		ck_assert_msg_has(&e, "1 trailing bytes");
		assert_empty(k, &out);
		free_any(k, &in);
		wb_free(&w);
	}
	/* After a success status, the body's dec (or rb_done) sees the rest. */
	struct wbuf w = {0};
	struct msg_status st;
	struct uwerr e = {0};
	enc_status(&w, &(struct msg_status){ 0, "ok" });
	wb_u32(&w, 1);
	struct rbuf r = { w.p, w.len, 0, 0 };
	ck_assert_int_eq(dec_status(&r, &st, &e), 0);
	ck_assert_str_eq(st.message, "ok");
	ck_assert_int_eq(rb_done(&r, &e), -EBADMSG);
	ck_assert_msg_has(&e, "4 trailing bytes");
	msg_status_free(&st);
	wb_free(&w);
}
END_TEST

/* A payload of one string field of length len (its bytes: fill, n of them). */
static void str_payload(struct wbuf *w, uint32_t len, char fill, size_t n)
{
	wb_u32(w, len);
	for (size_t i = 0; i < n; i++)
		wb_u8(w, (uint8_t)fill);
}

START_TEST(test_oversized_strings)
{
	struct wbuf w = {0};
	struct uwerr e = {0};
	struct msg_attach a;
	struct msg_stats_reply sr;
	struct msg_status st;

	str_payload(&w, PROTO_MAX_NAME + 1, 'a', PROTO_MAX_NAME + 1);
	ck_assert_int_eq(dec_attach(&(struct rbuf){ w.p, w.len, 0, 0 }, &a, &e), -EBADMSG);
	ck_assert_msg_has(&e, "attach: name: 129 bytes, over the limit of 128");
	ck_assert_ptr_null(a.name);
	wb_free(&w);

	/* A huge length with nothing behind it: refused before any allocation. */
	str_payload(&w, UINT32_MAX, 'a', 3);
	ck_assert_int_eq(dec_stats_reply(&(struct rbuf){ w.p, w.len, 0, 0 }, &sr, &e), -EBADMSG);
	ck_assert_msg_has(&e, "json: 4294967295 bytes, over the limit");
	wb_free(&w);
	str_payload(&w, 1000, 'a', 10);
	ck_assert_int_eq(dec_stats_reply(&(struct rbuf){ w.p, w.len, 0, 0 }, &sr, &e), -EBADMSG);
	ck_assert_msg_has(&e, "json: 1000 bytes, but only 10 left");
	wb_free(&w);

	wb_u32(&w, (uint32_t)-EINVAL);
	str_payload(&w, PROTO_MAX_MSG + 1, 'm', PROTO_MAX_MSG + 1);
	ck_assert_int_eq(dec_status(&(struct rbuf){ w.p, w.len, 0, 0 }, &st, &e), -EBADMSG);
	ck_assert_msg_has(&e, "message: 1025 bytes, over the limit of 1024");
	wb_free(&w);

	struct msg_hello h = { 1, 1, NULL };
	h.peer = rand_text(PROTO_MAX_PEER + 1, PROTO_MAX_PEER + 1);
	ck_assert_int_eq(enc_hello(&w, &h), 0);
	struct msg_hello hd;
	ck_assert_int_eq(dec_hello(&(struct rbuf){ w.p, w.len, 0, 0 }, &hd, &e), -EBADMSG);
	ck_assert_msg_has(&e, "hello: peer: 257 bytes");
	free(h.peer);
	wb_free(&w);

	char *paths[2] = { "/ok", NULL };
	paths[1] = malloc(PROTO_MAX_PATH + 2);
	memset(paths[1], 'p', PROTO_MAX_PATH + 1);
	paths[1][0] = '/';
	paths[1][PROTO_MAX_PATH + 1] = '\0';
	struct msg_load l = { "m", "", 2, paths }, ld;
	ck_assert_int_eq(enc_load(&w, &l), 0);
	ck_assert_int_eq(dec_load(&(struct rbuf){ w.p, w.len, 0, 0 }, &ld, &e), -EBADMSG);
	ck_assert_msg_has(&e, "load: path 1: 4097 bytes, over the limit of 4096");
	free(paths[1]);
	wb_free(&w);

	struct msg_attach_reply ar, out;
	attach_reply_fixture(&ar);
	free(ar.tensors[1].name);
	ar.tensors[1].name = rand_text(PROTO_MAX_TENSOR_NAME + 1, PROTO_MAX_TENSOR_NAME + 1);
	ck_assert_int_eq(enc_attach_reply(&w, &ar), 0);
	ck_assert_int_eq(dec_attach_reply(&(struct rbuf){ w.p, w.len, 0, 0 }, 1, &out, &e), -EBADMSG);
	ck_assert_msg_has(&e, "attach reply: tensor 1: name: 1025 bytes, over the limit of 1024");
	wb_free(&w);
	msg_attach_reply_free(&ar);
}
END_TEST

START_TEST(test_nul_in_string)
{
	struct wbuf w = {0};
	struct uwerr e = {0};
	wb_u32(&w, 4);
	wb_bytes(&w, "ab\0c", 4);
	struct msg_attach a;
	ck_assert_int_eq(dec_attach(&(struct rbuf){ w.p, w.len, 0, 0 }, &a, &e), -EBADMSG);
	ck_assert_msg_has(&e, "attach: name: NUL byte at offset 2 of 4");
	wb_free(&w);

	wb_u32(&w, 0);
	wb_u32(&w, 3);
	wb_bytes(&w, "\0xy", 3);
	struct msg_status st;
	ck_assert_int_eq(dec_status(&(struct rbuf){ w.p, w.len, 0, 0 }, &st, &e), -EBADMSG);
	ck_assert_msg_has(&e, "message: NUL byte at offset 0");
	ck_assert_ptr_null(st.message);
	wb_free(&w);
}
END_TEST

START_TEST(test_names)
{
	char longest[PROTO_MAX_NAME + 2];
	memset(longest, 'n', sizeof(longest));
	longest[PROTO_MAX_NAME] = '\0';
	const char *good[] = { "a", "llama-3.1_8B", "...", ".a", "a..", longest };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(proto_name_valid(good[i]), "%s", good[i]);
	longest[PROTO_MAX_NAME] = 'n';
	longest[PROTO_MAX_NAME + 1] = '\0';
	const char *bad_names[] = { "", ".", "..", "a/b", "../x", "a b", "caf\xc3\xa9", "a\n", "x\x7f", longest };
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
		ck_assert_msg(!proto_name_valid(bad_names[i]), "%s", bad_names[i]);
		struct wbuf w = {0};
		struct uwerr e = {0};
		struct msg_attach a;
		struct msg_evict ev;
		enc_attach(&w, &(struct msg_attach){ (char *)bad_names[i] });
		ck_assert_int_eq(dec_attach(&(struct rbuf){ w.p, w.len, 0, 0 }, &a, &e), -EBADMSG);
		ck_assert_msg_has(&e, "attach: name");
		ck_assert_ptr_null(a.name);
		wb_free(&w);
		enc_evict(&w, &(struct msg_evict){ (char *)bad_names[i], 0 });
		ck_assert_int_eq(dec_evict(&(struct rbuf){ w.p, w.len, 0, 0 }, &ev, &e), -EBADMSG);
		wb_free(&w);
	}
	ck_assert(!proto_name_valid(NULL));

	/* stats takes "" for every model, attach does not. */
	struct wbuf w = {0};
	struct uwerr e = {0};
	struct msg_stats s;
	struct msg_attach a;
	enc_stats(&w, &(struct msg_stats){ "" });
	ck_assert_int_eq(dec_stats(&(struct rbuf){ w.p, w.len, 0, 0 }, &s, &e), 0);
	ck_assert_str_eq(s.name, "");
	msg_stats_free(&s);
	ck_assert_int_eq(dec_attach(&(struct rbuf){ w.p, w.len, 0, 0 }, &a, &e), -EBADMSG);
	ck_assert_msg_has(&e, "not a model name");
	wb_free(&w);
}
END_TEST

START_TEST(test_counts)
{
	struct wbuf w = {0};
	struct uwerr e = {0};
	struct msg_load l;
	static const uint32_t bad_n[] = { 0, PROTO_MAX_PATHS + 1, PROTO_MAX_PATHS, 3 };
	for (size_t i = 0; i < 4; i++) {
		wb_str(&w, "m");
		wb_str(&w, "");
		wb_u32(&w, bad_n[i]);
		wb_str(&w, "/a");   /* 6 bytes: room for one path, not for three */
		ck_assert_int_eq(dec_load(&(struct rbuf){ w.p, w.len, 0, 0 }, &l, &e), -EBADMSG);
		ck_assert_msg_has(&e, "load: npaths");
		ck_assert_ptr_null(l.paths);
		wb_free(&w);
	}
	ck_assert_msg_has(&e, "npaths 3: more than the 6 bytes left can hold");

	/* attach reply: too many buffers, buffers without fds, too many tensors */
	union anymsg u;
	rand_msg(K_ATTACH_REPLY, &u);
	struct msg_attach_reply *m = &u.attach_reply, out;
	ck_assert_int_eq(enc_attach_reply(&w, m), 0);
	ck_assert_int_eq(dec_attach_reply(&(struct rbuf){ w.p, w.len, 0, 0 }, (int)m->nbufs - 1, &out, &e),
			 -EBADMSG);
	ck_assert_msg_has(&e, "fds came with the reply");
	wb_free(&w);

	uint32_t nbufs = m->nbufs, ntensors = m->ntensors;
	m->nbufs = PROTO_MAX_FDS + 1;
	m->buf_size = realloc(m->buf_size, sizeof(uint64_t) * m->nbufs);
	memset(m->buf_size + nbufs, 0, sizeof(uint64_t) * (m->nbufs - nbufs));
	ck_assert_int_eq(enc_attach_reply(&w, m), 0);
	ck_assert_int_eq(dec_attach_reply(&(struct rbuf){ w.p, w.len, 0, 0 }, (int)m->nbufs, &out, &e),
			 -EBADMSG);
	ck_assert_msg_has(&e, "nbufs 65, over the limit of 64");
	m->nbufs = nbufs;
	wb_free(&w);

	m->ntensors = 0;
	ck_assert_int_eq(enc_attach_reply(&w, m), 0);
	w.len -= 4;
	wb_u32(&w, 1000);   /* a count with no tensors behind it */
	ck_assert_int_eq(dec_attach_reply(&(struct rbuf){ w.p, w.len, 0, 0 }, (int)nbufs, &out, &e),
			 -EBADMSG);
	ck_assert_msg_has(&e, "ntensors 1000: more than the 0 bytes left can hold");
	ck_assert_ptr_null(out.tensors);
	w.len -= 4;
	wb_u32(&w, PROTO_MAX_TENSORS + 1);
	ck_assert_int_eq(dec_attach_reply(&(struct rbuf){ w.p, w.len, 0, 0 }, (int)nbufs, &out, &e),
			 -EBADMSG);
	ck_assert_msg_has(&e, "over the limit of 1000000");
	m->ntensors = ntensors;
	wb_free(&w);
	free_any(K_ATTACH_REPLY, &u);
}
END_TEST

/* verify reply: nbad within tensors, names exactly min(nbad, the limit),
 * each one non-empty, and no more of them than the bytes left hold. */
START_TEST(test_verify_reply_counts)
{
	struct wbuf w = {0};
	struct uwerr e = {0};
	struct msg_verify_reply out;
	char *names[2] = { "layers.0.w1", "layers.1.w2" };
	static const struct {
		uint64_t tensors, nbad;
		uint32_t nnames;
		const char *why;
	} cases[] = {
		{ 3, 4, 2, "nbad 4 of 3 tensors" },
		{ 5, 2, 1, "nnames 1, but nbad 2 asks for 2" },
		{ 5000, 2000, 2, "nnames 2, but nbad 2000 asks for 1024" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct msg_verify_reply v = { cases[i].tensors, 1, 1, cases[i].nbad,
					      cases[i].nnames, names };
		ck_assert_int_eq(enc_verify_reply(&w, &v), 0);
		ck_assert_int_eq(dec_verify_reply(&(struct rbuf){ w.p, w.len, 0, 0 }, &out, &e),
				 -EBADMSG);
		ck_assert_msg_has(&e, cases[i].why);
		ck_assert_ptr_null(out.bad);
		wb_free(&w);
	}
	/* 1024 names announced, nothing behind them */
	struct msg_verify_reply v = { 5000, 1, 1, 2000, 0, NULL };
	enc_verify_reply(&w, &v);
	w.len -= 4;
	wb_u32(&w, PROTO_MAX_BAD_NAMES);
	ck_assert_int_eq(dec_verify_reply(&(struct rbuf){ w.p, w.len, 0, 0 }, &out, &e), -EBADMSG);
	ck_assert_msg_has(&e, "nnames 1024: more than the 0 bytes left can hold");
	wb_free(&w);
	/* an empty name */
	char *empty[2] = { "layers.0.w1", "" };
	struct msg_verify_reply two = { 2, 1, 1, 2, 2, empty };
	enc_verify_reply(&w, &two);
	ck_assert_int_eq(dec_verify_reply(&(struct rbuf){ w.p, w.len, 0, 0 }, &out, &e), -EBADMSG);
	ck_assert_msg_has(&e, "verify reply: name 1: bad tensor name: empty");
	wb_free(&w);
}
END_TEST

static void attach_reply_refused(void (*breakit)(struct msg_attach_reply *), const char *what)
{
	struct msg_attach_reply m, out;
	struct wbuf w = {0};
	struct uwerr e = {0};
	attach_reply_fixture(&m);
	ck_assert_int_eq(enc_attach_reply(&w, &m), 0);
	ck_assert_msg(dec_attach_reply(&(struct rbuf){ w.p, w.len, 0, 0 }, 1, &out, &e) == 0, "%s", e.msg);
	msg_attach_reply_free(&out);
	wb_free(&w);
	breakit(&m);
	ck_assert_int_eq(enc_attach_reply(&w, &m), 0);
	ck_assert_int_eq(dec_attach_reply(&(struct rbuf){ w.p, w.len, 0, 0 }, 1, &out, &e), -EBADMSG);
	ck_assert_msg_has(&e, what);
	ck_assert_ptr_null(out.tensors);
	msg_attach_reply_free(&m);
	wb_free(&w);
}

#define T1 (&m->tensors[1])
static void past_buffer(struct msg_attach_reply *m) { T1->offset += RES_ALIGN; }
static void wraps(struct msg_attach_reply *m) { T1->offset = UINT64_MAX / RES_ALIGN * RES_ALIGN; }
static void small_buffer(struct msg_attach_reply *m) { m->buf_size[0] -= 1; }
static void misaligned(struct msg_attach_reply *m) { T1->offset += 8; }
static void bad_buf(struct msg_attach_reply *m) { T1->buf = 1; }
static void bad_dtype(struct msg_attach_reply *m) { T1->dtype = T1->layout.dtype = 99; }
static void dtype_differs(struct msg_attach_reply *m) { T1->layout.dtype = UW_DTYPE_F16; }
static void raw_bytes_off(struct msg_attach_reply *m) { T1->raw_bytes += 2; }
static void layout_rows(struct msg_attach_reply *m) { T1->layout.rows += 1; }
static void bad_format(struct msg_attach_reply *m) { T1->layout.format = 9; }
static void plane_past(struct msg_attach_reply *m) { T1->layout.patch_off += T1->layout.nbytes; }
static void lease_zero(struct msg_attach_reply *m) { m->lease = 0; }
static void backend_unknown(struct msg_attach_reply *m) { m->backend = 2; }
static void empty_buffer(struct msg_attach_reply *m) { m->buf_size[0] = 0; }
static void empty_name(struct msg_attach_reply *m) { T1->name[0] = '\0'; }

START_TEST(test_attach_reply_checks)
{
	attach_reply_refused(past_buffer, "attach reply: tensor 1 (");
	attach_reply_refused(past_buffer, "): offset+size");
	attach_reply_refused(past_buffer, "past buffer 0 (size");
	attach_reply_refused(wraps, "past buffer 0");
	attach_reply_refused(small_buffer, "past buffer 0");
	attach_reply_refused(misaligned, "not 256-byte aligned");
	attach_reply_refused(bad_buf, "buf 1, but the reply has 1 buffers");
	attach_reply_refused(bad_dtype, "dtype 99 unknown");
	attach_reply_refused(dtype_differs, "layout dtype 8 differs from the tensor's 9");
	attach_reply_refused(raw_bytes_off, "raw_bytes");
	attach_reply_refused(layout_rows, "does not hold the shape's");
	attach_reply_refused(bad_format, "layout: unknown format 9");
	attach_reply_refused(plane_past, "layout: ");
	attach_reply_refused(lease_zero, "attach reply: lease 0");
	attach_reply_refused(backend_unknown, "backend 2 unknown");
	attach_reply_refused(empty_buffer, "buffer 0: size 0");
	attach_reply_refused(empty_name, "tensor 1: name: empty");
}
END_TEST

/* enc_attach_reply will not write ndim 9, so patch it into the bytes: the
 * second tensor starts where a reply of only the first one ends. */
START_TEST(test_attach_reply_ndim)
{
	struct msg_attach_reply m, out;
	struct wbuf w = {0}, one = {0};
	struct uwerr e = {0};
	attach_reply_fixture(&m);
	ck_assert_int_eq(enc_attach_reply(&w, &m), 0);
	m.ntensors = 1;
	ck_assert_int_eq(enc_attach_reply(&one, &m), 0);
	m.ntensors = 2;
	size_t at = one.len + 4 + strlen(m.tensors[1].name) + 4;
	ck_assert_uint_eq(w.p[at], m.tensors[1].ndim);
	w.p[at] = UW_MAX_DIMS + 1;
	ck_assert_int_eq(dec_attach_reply(&(struct rbuf){ w.p, w.len, 0, 0 }, 1, &out, &e), -EBADMSG);
	ck_assert_msg_has(&e, "tensor 1 (");
	ck_assert_msg_has(&e, "ndim 9, over the limit of 8");
	msg_attach_reply_free(&m);
	wb_free(&w);
	wb_free(&one);
}
END_TEST

START_TEST(test_field_checks)
{
	struct wbuf w = {0};
	struct uwerr e = {0};
	struct msg_hello h;
	struct msg_status st;
	struct msg_evict ev;
	struct msg_load l;
	struct msg_detach d;

	enc_hello(&w, &(struct msg_hello){ 3, 2, "x" });
	ck_assert_int_eq(dec_hello(&(struct rbuf){ w.p, w.len, 0, 0 }, &h, &e), -EBADMSG);
	ck_assert_msg_has(&e, "hello: versions 3..2");
	wb_free(&w);
	enc_hello(&w, &(struct msg_hello){ 0, 2, "x" });
	ck_assert_int_eq(dec_hello(&(struct rbuf){ w.p, w.len, 0, 0 }, &h, &e), -EBADMSG);
	wb_free(&w);

	enc_status(&w, &(struct msg_status){ 5, "" });
	ck_assert_int_eq(dec_status(&(struct rbuf){ w.p, w.len, 0, 0 }, &st, &e), -EBADMSG);
	ck_assert_msg_has(&e, "status 5: not 0 or a negative errno");
	wb_free(&w);
	enc_status(&w, &(struct msg_status){ -PROTO_MAX_ERRNO - 1, "" });
	ck_assert_int_eq(dec_status(&(struct rbuf){ w.p, w.len, 0, 0 }, &st, &e), -EBADMSG);
	wb_free(&w);

	enc_evict(&w, &(struct msg_evict){ "m", 6 });
	ck_assert_int_eq(dec_evict(&(struct rbuf){ w.p, w.len, 0, 0 }, &ev, &e), -EBADMSG);
	ck_assert_msg_has(&e, "evict: flags 0x6: unknown bits 0x6");
	ck_assert_ptr_null(ev.name);
	wb_free(&w);

	char *paths[] = { "/abs", "relative/x" };
	enc_load(&w, &(struct msg_load){ "m", "", 2, paths });
	ck_assert_int_eq(dec_load(&(struct rbuf){ w.p, w.len, 0, 0 }, &l, &e), -EBADMSG);
	ck_assert_msg_has(&e, "load: path 1 \"relative/x\": not absolute");
	wb_free(&w);
	paths[1] = "";
	enc_load(&w, &(struct msg_load){ "m", "", 2, paths });
	ck_assert_int_eq(dec_load(&(struct rbuf){ w.p, w.len, 0, 0 }, &l, &e), -EBADMSG);
	ck_assert_msg_has(&e, "load: path 1: empty");
	wb_free(&w);

	enc_detach(&w, &(struct msg_detach){ 0 });
	ck_assert_int_eq(dec_detach(&(struct rbuf){ w.p, w.len, 0, 0 }, &d, &e), -EBADMSG);
	ck_assert_msg_has(&e, "detach: lease 0");
	wb_free(&w);

	struct msg_tune tq;
	struct msg_tune_reply tr;
	enc_tune(&w, &(struct msg_tune){ "m", 2 });
	ck_assert_int_eq(dec_tune(&(struct rbuf){ w.p, w.len, 0, 0 }, &tq, &e), -EBADMSG);
	ck_assert_msg_has(&e, "tune: flags 0x2: unknown bits 0x2");
	ck_assert_ptr_null(tq.name);
	wb_free(&w);
	enc_tune(&w, &(struct msg_tune){ "a/b", 0 });
	ck_assert_int_eq(dec_tune(&(struct rbuf){ w.p, w.len, 0, 0 }, &tq, &e), -EBADMSG);
	ck_assert_msg_has(&e, "not a model name");
	wb_free(&w);
	enc_tune(&w, &(struct msg_tune){ "", UW_TUNE_FORCE });   /* "": every model */
	ck_assert_int_eq(dec_tune(&(struct rbuf){ w.p, w.len, 0, 0 }, &tq, &e), 0);
	ck_assert(tq.name && !tq.name[0] && tq.flags == UW_TUNE_FORCE);
	msg_tune_free(&tq);
	wb_free(&w);
	enc_tune_reply(&w, &(struct msg_tune_reply){ 0 });
	ck_assert_int_eq(dec_tune_reply(&(struct rbuf){ w.p, w.len, 0, 0 }, &tr, &e), -EBADMSG);
	ck_assert_msg_has(&e, "tune reply: job 0");
	wb_free(&w);
}
END_TEST

START_TEST(test_enc_limits)
{
	struct wbuf w = {0};
	struct msg_attach_reply ar;
	attach_reply_fixture(&ar);
	ar.tensors[0].ndim = UW_MAX_DIMS + 1;
	ck_assert_int_eq(enc_attach_reply(&w, &ar), -EINVAL);
	wb_free(&w);
	msg_attach_reply_free(&ar);

	char *big = malloc(PROTO_MAX_PAYLOAD + 1);
	memset(big, 'j', PROTO_MAX_PAYLOAD);
	big[PROTO_MAX_PAYLOAD] = '\0';
	ck_assert_int_eq(enc_stats_reply(&w, &(struct msg_stats_reply){ big }), -EMSGSIZE);
	free(big);
	wb_free(&w);
}
END_TEST

START_TEST(test_version_pick)
{
	uint16_t v = 0;
	struct uwerr e = {0};
	ck_assert_int_eq(proto_version_pick(PROTO_MIN_VERSION, PROTO_VERSION, &v, &e), 0);
	ck_assert_uint_eq(v, PROTO_VERSION);
	ck_assert_int_eq(proto_version_pick(1, 60000, &v, &e), 0);
	ck_assert_uint_eq(v, PROTO_VERSION);   /* the highest both speak */
	ck_assert_int_eq(proto_version_pick(PROTO_VERSION + 1, PROTO_VERSION + 5, &v, &e),
			 -EPROTONOSUPPORT);
	char want[128];
	snprintf(want, sizeof(want), "the client speaks %d..%d, unweightd %d..%d",
		 PROTO_VERSION + 1, PROTO_VERSION + 5, PROTO_MIN_VERSION, PROTO_VERSION);
	ck_assert_msg_has(&e, want);
	ck_assert_int_eq(proto_version_pick(0, PROTO_MIN_VERSION - 1, &v, &e), -EPROTONOSUPPORT);
	ck_assert_int_eq(proto_version_pick(5, 4, &v, &e), -EPROTONOSUPPORT);
}
END_TEST

int main(void)
{
	rng = tu_seed();
	Suite *s = suite_create("proto");
	TCase *t = tu_tcase(s, "framing", 0);
	tcase_add_checked_fixture(t, fd_setup, fd_teardown);
	tcase_add_test(t, test_wire_layout);
	tcase_add_test(t, test_roundtrip);
	tcase_add_test(t, test_fd_passing);
	tcase_add_test(t, test_large_message);
	tcase_add_test(t, test_send_errors);
	tcase_add_test(t, test_nonblocking);
	tcase_add_test(t, test_eof);
	tcase_add_test(t, test_short_header);
	tcase_add_test(t, test_bad_magic);
	tcase_add_test(t, test_reserved);
	tcase_add_test(t, test_len_over_max);
	tcase_add_test(t, test_nfds_over_max);
	tcase_add_test(t, test_missing_fds);
	tcase_add_test(t, test_unexpected_fds);
	tcase_add_test(t, test_surplus_fds);
	tcase_add_test(t, test_truncated_payload);

	t = tu_tcase(s, "codec", 0);
	tcase_add_checked_fixture(t, fd_setup, fd_teardown);
	tcase_add_test(t, test_reader);
	tcase_add_test(t, test_truncated_every_cut);
	tcase_add_test(t, test_trailing_bytes);
	tcase_add_test(t, test_oversized_strings);
	tcase_add_test(t, test_nul_in_string);
	tcase_add_test(t, test_names);
	tcase_add_test(t, test_counts);
	tcase_add_test(t, test_verify_reply_counts);
	tcase_add_test(t, test_attach_reply_checks);
	tcase_add_test(t, test_attach_reply_ndim);
	tcase_add_test(t, test_field_checks);
	tcase_add_test(t, test_enc_limits);
	tcase_add_test(t, test_version_pick);

	return tu_run(s);
}
