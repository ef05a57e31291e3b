/* transport: proto messages over a Unix stream socket: the 16-byte header,
 * the payload, and the fds that ride on the message's first byte. */
#include "config.h"

#include "proto/proto.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/le.h"

/* Room for one more fd than allowed, so a surplus is seen rather than lost,
 * and for the credentials a socket with SO_PASSCRED adds to every read. */
#define RX_FDS (PROTO_MAX_FDS + 1)
#define RX_CTL (CMSG_SPACE(sizeof(int) * RX_FDS) + CMSG_SPACE(sizeof(struct ucred)))

void proto_put_fds(struct msghdr *mh, void *ctl, const int *fds, int nfds)
{
	if (!nfds)
		return;
	memset(ctl, 0, CMSG_SPACE(sizeof(int) * nfds));
	mh->msg_control = ctl;
	mh->msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
	struct cmsghdr *c = CMSG_FIRSTHDR(mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
	memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
}

const char *proto_op_name(uint16_t op)
{
	static const char *const names[] = {
		[OP_HELLO] = "hello", [OP_LOAD] = "load", [OP_EVICT] = "evict",
		[OP_STATS] = "stats", [OP_ATTACH] = "attach", [OP_DETACH] = "detach",
		[OP_TUNE] = "tune",
		[OP_VERIFY] = "verify",
	};
	uint16_t req = op & (uint16_t)~OP_REPLY;
	if (req >= sizeof(names) / sizeof(names[0]) || !names[req])
		return op & OP_REPLY ? "unknown reply" : "unknown request";
	return names[req];
}

/* Wait until sock is ready for ev: a non-blocking socket behaves as a
 * blocking one once a message has begun. */
static void wait_ready(int sock, short ev)
{
	struct pollfd p = { .fd = sock, .events = ev };
	while (poll(&p, 1, -1) < 0 && errno == EINTR)
		;
}

int proto_send(int sock, uint16_t version, uint16_t op, const void *payload,
	       uint32_t len, const int *fds, int nfds, struct uwerr *e)
{
	const char *what = proto_op_name(op);
	if (len > PROTO_MAX_PAYLOAD)
		return uwerr_set(e, EMSGSIZE, "send %s: payload of %u bytes, over the limit of %u",
				 what, len, PROTO_MAX_PAYLOAD);
	if (nfds < 0 || nfds > PROTO_MAX_FDS || (nfds && !fds))
		return uwerr_set(e, EINVAL, "send %s: %d fds, not 0 to %d", what, nfds, PROTO_MAX_FDS);
	if (len && !payload)
		return uwerr_set(e, EINVAL, "send %s: %u bytes of payload, but no payload", what, len);

	uint8_t hb[PROTO_HDR_SIZE];
	le32_put(hb, PROTO_MAGIC);
	le16_put(hb + 4, version);
	le16_put(hb + 6, op);
	le32_put(hb + 8, len);
	le16_put(hb + 12, (uint16_t)nfds);
	le16_put(hb + 14, 0);

	struct iovec iov[2] = { { hb, sizeof(hb) }, { (void *)payload, len } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = len ? 2 : 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int) * PROTO_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	proto_put_fds(&mh, ctl.buf, fds, nfds);

	size_t left = sizeof(hb) + len;
	while (left) {
		ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
		if (n < 0) {
			int err = errno;
			if (err == EINTR)
				continue;
			if (err == EAGAIN || err == EWOULDBLOCK) {
				wait_ready(sock, POLLOUT);
				continue;
			}
			return uwerr_set(e, err, "send %s: %s", what, strerror(err));
		}
		/* The fds went with the first byte; later pieces go bare. */
		mh.msg_control = NULL;
		mh.msg_controllen = 0;
		left -= (size_t)n;
		while (n > 0) {
			size_t k = (size_t)n < mh.msg_iov->iov_len ? (size_t)n : mh.msg_iov->iov_len;
			mh.msg_iov->iov_base = (char *)mh.msg_iov->iov_base + k;
			mh.msg_iov->iov_len -= k;
			n -= (ssize_t)k;
			if (mh.msg_iov->iov_len == 0 && mh.msg_iovlen > 1) {
				mh.msg_iov++;
				mh.msg_iovlen--;
			}
		}
	}
	return 0;
}

/* Every fd that came while one message was read, wherever it came. */
struct rx {
	int fds[RX_FDS];
	int got;        /* how many came; those past RX_FDS were closed at once */
	int ctrunc;     /* the kernel had more than fit, and dropped them */
};

static void rx_collect(struct rx *x, struct msghdr *mh)
{
	if (mh->msg_flags & MSG_CTRUNC)
		x->ctrunc = 1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (x->got < RX_FDS)
				x->fds[x->got] = fd;
			else
				close(fd);
			x->got++;
		}
	}
}

static void rx_close(struct rx *x)
{
	for (int i = 0; i < x->got && i < RX_FDS; i++)
		close(x->fds[i]);
	x->got = 0;
}

/* Read exactly n bytes (fewer only at end of file), collecting fds.
 * Returns the bytes read or a negative errno. */
static ssize_t rx_read(int sock, uint8_t *p, size_t n, struct rx *x, int begun)
{
	size_t done = 0;
	while (done < n) {
		union {
			char buf[RX_CTL];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = { p + done, n - done };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
		ssize_t r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
		if (r < 0) {
			int err = errno;
			if (err == EINTR)
				continue;
			if ((err == EAGAIN || err == EWOULDBLOCK) && (begun || done)) {
				wait_ready(sock, POLLIN);
				continue;
			}
			return -err;
		}
		rx_collect(x, &mh);
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

int proto_recv(int sock, struct proto_msg *m, struct uwerr *e)
{
	return proto_recv_max(sock, PROTO_MAX_PAYLOAD, m, e);
}

int proto_recv_max(int sock, uint32_t max_len, struct proto_msg *m, struct uwerr *e)
{
	memset(m, 0, sizeof(*m));
	for (int i = 0; i < PROTO_MAX_FDS; i++)
		m->fds[i] = -1;
	struct rx x = { .got = 0 };
	struct proto_hdr *h = &m->hdr;
	uint8_t hb[PROTO_HDR_SIZE];
	int rc;

	ssize_t n = rx_read(sock, hb, sizeof(hb), &x, 0);
	if (n < 0) {
		rc = uwerr_set(e, (int)-n, "receive: %s", strerror((int)-n));
		goto fail;
	}
	if (n == 0) {
		rc = uwerr_set(e, ECONNRESET, "receive: connection closed by the peer");
		goto fail;
	}
	if (n < (ssize_t)sizeof(hb)) {
		rc = uwerr_set(e, EBADMSG, "receive: header truncated: connection closed after %zd of %d bytes",
			       n, PROTO_HDR_SIZE);
		goto fail;
	}
	h->magic = le32_get(hb);
	h->version = le16_get(hb + 4);
	h->opcode = le16_get(hb + 6);
	h->len = le32_get(hb + 8);
	h->nfds = le16_get(hb + 12);
	h->reserved = le16_get(hb + 14);

	if (h->magic != PROTO_MAGIC) {
		rc = uwerr_set(e, EBADMSG, "receive: bad magic 0x%08x (expected 0x%08x): not an unweight peer",
			       h->magic, PROTO_MAGIC);
		goto fail;
	}
	const char *what = proto_op_name(h->opcode);
	if (h->reserved != 0) {
		rc = uwerr_set(e, EBADMSG, "receive %s: reserved header field is 0x%04x, not 0",
			       what, h->reserved);
		goto fail;
	}
	if (h->len > max_len) {
		rc = uwerr_set(e, EMSGSIZE, "receive %s: payload of %u bytes, over the limit of %u",
			       what, h->len, max_len);
		goto fail;
	}
	if (h->nfds > PROTO_MAX_FDS) {
		rc = uwerr_set(e, EBADMSG, "receive %s: header announces %u fds, over the limit of %d",
			       what, h->nfds, PROTO_MAX_FDS);
		goto fail;
	}
	if (h->len) {
		m->payload = malloc(h->len);
		if (!m->payload) {
			rc = uwerr_set(e, ENOMEM, "receive %s: payload of %u bytes: out of memory",
				       what, h->len);
			goto fail;
		}
		n = rx_read(sock, m->payload, h->len, &x, 1);
		if (n < 0) {
			rc = uwerr_set(e, (int)-n, "receive %s: %s", what, strerror((int)-n));
			goto fail;
		}
		if ((size_t)n < h->len) {
			rc = uwerr_set(e, EBADMSG, "receive %s: payload truncated: connection closed after %zd of %u bytes",
				       what, n, h->len);
			goto fail;
		}
	}
	if (x.ctrunc) {
		rc = uwerr_set(e, EBADMSG, "receive %s: expected %u fds, got more than %d (control data truncated)",
			       what, h->nfds, x.got);
		goto fail;
	}
	if (x.got != h->nfds) {
		rc = uwerr_set(e, EBADMSG, "receive %s: expected %u fds, got %d", what, h->nfds, x.got);
		goto fail;
	}
	memcpy(m->fds, x.fds, sizeof(int) * (size_t)x.got);
	m->nfds = x.got;
	return 0;

fail:
	rx_close(&x);
	free(m->payload);
	m->payload = NULL;
	return rc;
}

int proto_msg_take_fd(struct proto_msg *m, int i)
{
	if (i < 0 || i >= m->nfds)
		return -1;
	int fd = m->fds[i];
	m->fds[i] = -1;
	return fd;
}

void proto_msg_free(struct proto_msg *m)
{
	if (!m)
		return;
	for (int i = 0; i < m->nfds && i < PROTO_MAX_FDS; i++)
		if (m->fds[i] >= 0)
			close(m->fds[i]);
	m->nfds = 0;
	free(m->payload);
	m->payload = NULL;
}
