/* proto: a byte stream as a peer sends it, framed by proto_recv from a real
 * Unix socket (with fds riding on its first byte, as many as the input's
 * first byte says, mod 8), each message then decoded as the daemon (requests)
 * or the client (replies: the status, then the body of its request's kind)
 * decodes it. What decodes must encode back to the very same payload bytes,
 * and nothing received may leak an fd. */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/proto.h"
#include "tests/fuzz/fuzz.h"

#define MAX_STREAM 60000       /* fits one socket buffer: no reader needed */
#define MAX_SENT_FDS 8

/* Decode one message into its struct with dec, encode it back with enc
 * into w, free it with fr. */
#define ROUND_TRIP(type, dec, enc, fr)                                    \
	do {                                                                  \
		type msg_;                                                    \
		ok = dec(&r, &msg_, &e) == 0;                                 \
		if (ok) {                                                     \
			FUZZ_CHECK(enc(&w, &msg_) == 0);                      \
			fr(&msg_);                                            \
		}                                                             \
	} while (0)

static void no_free(void *m)
{
	(void)m;
}

/* A reply: the status the client checks, then the body of op's reply. */
static int reply(struct rbuf *r, struct wbuf *w, uint16_t op, int nfds, struct uwerr *e)
{
	struct msg_status st;
	if (dec_status(r, &st, e) < 0)
		return 0;
	FUZZ_CHECK(enc_status(w, &st) == 0);
	int status = st.status;
	msg_status_free(&st);
	if (status != 0)
		return 1;
	struct rbuf rr = *r;
	int ok = 0;
	switch (op) {
	case OP_HELLO: {
		struct msg_hello_reply m;
		if ((ok = dec_hello_reply(&rr, &m, e) == 0)) {
			FUZZ_CHECK(enc_hello_reply(w, &m) == 0);
			msg_hello_reply_free(&m);
		}
		break;
	}
	case OP_STATS: {
		struct msg_stats_reply m;
		if ((ok = dec_stats_reply(&rr, &m, e) == 0)) {
			FUZZ_CHECK(enc_stats_reply(w, &m) == 0);
			msg_stats_reply_free(&m);
		}
		break;
	}
	case OP_VERIFY: {
		struct msg_verify_reply m;
		if ((ok = dec_verify_reply(&rr, &m, e) == 0)) {
			FUZZ_CHECK(m.nbad <= m.tensors && m.nnames <= PROTO_MAX_BAD_NAMES);
			FUZZ_CHECK(enc_verify_reply(w, &m) == 0);
			msg_verify_reply_free(&m);
		}
		break;
	}
	case OP_TUNE: {
		struct msg_tune_reply m;
		if ((ok = dec_tune_reply(&rr, &m, e) == 0))
			FUZZ_CHECK(enc_tune_reply(w, &m) == 0);
		break;
	}
	case OP_ATTACH: {
		struct msg_attach_reply m;
		if ((ok = dec_attach_reply(&rr, nfds, &m, e) == 0)) {
			FUZZ_CHECK(m.nbufs == (uint32_t)nfds);
			FUZZ_CHECK(enc_attach_reply(w, &m) == 0);
			msg_attach_reply_free(&m);
		}
		break;
	}
	default:
		ok = rb_done(&rr, e) == 0;
	}
	return ok;
}

static void decode(const struct proto_msg *m)
{
	struct rbuf r = { .p = m->payload, .len = m->hdr.len };
	struct wbuf w = {0};
	struct uwerr e = {0};
	int ok = 0;
	if (m->hdr.opcode & OP_REPLY) {
		ok = reply(&r, &w, m->hdr.opcode & (uint16_t)~OP_REPLY, m->nfds, &e);
	} else {
		switch (m->hdr.opcode) {
		case OP_HELLO:
			ROUND_TRIP(struct msg_hello, dec_hello, enc_hello, msg_hello_free);
			break;
		case OP_LOAD:
			ROUND_TRIP(struct msg_load, dec_load, enc_load, msg_load_free);
			break;
		case OP_EVICT:
			ROUND_TRIP(struct msg_evict, dec_evict, enc_evict, msg_evict_free);
			break;
		case OP_STATS:
			ROUND_TRIP(struct msg_stats, dec_stats, enc_stats, msg_stats_free);
			break;
		case OP_ATTACH:
			ROUND_TRIP(struct msg_attach, dec_attach, enc_attach, msg_attach_free);
			break;
		case OP_DETACH:
			ROUND_TRIP(struct msg_detach, dec_detach, enc_detach, no_free);
			break;
		case OP_VERIFY:
			ROUND_TRIP(struct msg_verify, dec_verify, enc_verify, msg_verify_free);
		case OP_TUNE:
			ROUND_TRIP(struct msg_tune, dec_tune, enc_tune, msg_tune_free);
			break;
		default:
			wb_free(&w);
			return;
		}
	}
	if (ok)
		FUZZ_CHECK(w.len == m->hdr.len && (w.len == 0 || memcmp(w.p, m->payload, w.len) == 0));
	else
		FUZZ_CHECK(e.code != 0 && e.msg[0]);
	wb_free(&w);
}

/* The lowest free fd: the same after an input as before it, or something
 * leaked (the kernel hands out the lowest free fd first). */
static int lowest_fd(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	FUZZ_CHECK(fd >= 0);
	close(fd);
	return fd;
}

int fuzz_proto(const uint8_t *data, size_t size)
{
	if (size < 1 || size > MAX_STREAM)
		return 0;
	int fd0 = lowest_fd();
	int nfds = data[0] % MAX_SENT_FDS, sv[2], fds[MAX_SENT_FDS];
	FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	for (int i = 0; i < nfds; i++)
		fds[i] = sv[0];         /* the kernel dups each: any open fd will do */
	struct iovec iov = { (void *)(data + 1), size - 1 };
	uint8_t zero = 0;
	if (size == 1) {                /* fds need a byte to ride on */
		iov.iov_base = &zero;
		iov.iov_len = nfds ? 1 : 0;
	}
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int) * MAX_SENT_FDS)];
		struct cmsghdr align;
	} ctl;
	proto_put_fds(&mh, ctl.buf, fds, nfds);
	if (iov.iov_len)
		FUZZ_CHECK(sendmsg(sv[0], &mh, MSG_NOSIGNAL) == (ssize_t)iov.iov_len);
	FUZZ_CHECK(shutdown(sv[0], SHUT_WR) == 0);
	for (;;) {
		struct proto_msg m;
		struct uwerr e = {0};
		int rc = proto_recv(sv[1], &m, &e);
		if (rc < 0) {
			FUZZ_CHECK(e.msg[0] && m.payload == NULL);
			break;
		}
		FUZZ_CHECK(m.nfds == m.hdr.nfds && (m.hdr.len == 0 || m.payload));
		decode(&m);
		proto_msg_free(&m);
	}
	close(sv[0]);
	close(sv[1]);
	FUZZ_CHECK(lowest_fd() == fd0);
	return 0;
}

FUZZ_ENTRY(proto)
