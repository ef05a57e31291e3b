/* conn: serving one connection (see conn.h). */
#include "config.h"

#include "daemon/conn.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/backend.h"
#include "daemon/conf.h"
#include "daemon/fdstore.h"
#include "daemon/loader.h"
#include "daemon/log.h"
#include "daemon/registry.h"
#include "daemon/stats.h"
#include "daemon/tune.h"
#include "daemon/uwd.h"
#include "daemon/verify.h"
#include "proto/proto.h"

/* What a reply carries besides its status. */
struct body {
	struct wbuf w;
	const int *fds;
	int nfds;
};

/* One reply: the status, then the body only when status is 0. */
static int send_reply(int fd, uint16_t version, uint16_t op, int status, const char *msg,
		      const struct body *b)
{
	op &= (uint16_t)~OP_REPLY;
	struct wbuf w = {0};
	struct msg_status st = {.status = status, .message = (char *)(status ? msg : "")};
	enc_status(&w, &st);
	if (!status && b && b->w.len)
		wb_bytes(&w, b->w.p, b->w.len);
	struct uwerr e = {0};
	int rc = -ENOMEM;
	if (!w.err)
		rc = proto_send(fd, version, (uint16_t)(op | OP_REPLY), w.p, (uint32_t)w.len,
				status || !b ? NULL : b->fds, status || !b ? 0 : b->nfds, &e);
	wb_free(&w);
	return rc;
}

int conn_refuse(int fd, int status, const char *msg)
{
	return send_reply(fd, PROTO_VERSION, OP_HELLO, status, msg, NULL);
}

static int do_hello(struct conn *c, struct rbuf *rb, struct body *b, struct uwerr *e)
{
	struct msg_hello h = {0};
	int rc = dec_hello(rb, &h, e);   /* decoders name the message in e */
	if (rc)
		return rc;
	uint16_t v;
	if (!(rc = proto_version_pick(h.min_version, h.max_version, &v, e))) {
		struct msg_hello_reply r = {.version = v,
					    .backend = (uint32_t)c->d->be->ops->id,
					    .daemon = "unweightd " PACKAGE_VERSION};
		enc_hello_reply(&b->w, &r);
		c->version = v;
		log_info("client %s: %s, protocol version %u", c->peer.who, h.peer, v);
	} else {
		uwerr_prefix(e, "%s", h.peer);
	}
	msg_hello_free(&h);
	return rc;
}

static int admin_only(struct conn *c, const char *op, const char *model, struct uwerr *e)
{
	char what[PROTO_MAX_NAME + 16];
	snprintf(what, sizeof(what), "%s %s", op, model);
	return policy_admin(c->d->cfg, &c->peer, what, e);
}

static int do_load(struct conn *c, struct rbuf *rb, struct uwerr *e)
{
	struct msg_load q = {0};
	int rc = dec_load(rb, &q, e);
	if (!rc)
		rc = admin_only(c, "load", q.name, e);
	if (!rc)
		rc = loader_start(c->d->ld, &q, c->peer.who, e);
	msg_load_free(&q);
	return rc;
}

static int do_evict(struct conn *c, struct rbuf *rb, struct uwerr *e)
{
	struct msg_evict q = {0};
	int rc = dec_evict(rb, &q, e);
	if (!rc)
		rc = admin_only(c, "evict", q.name, e);
	if (!rc && !(rc = registry_evict(c->d->reg, q.name, q.flags, e))) {
		fdstore_forget(c->d, q.name);
		log_notice("evict %s%s: by %s", q.name, q.flags & UW_EVICT_FORCE ? " (force)" : "",
			   c->peer.who);
	}
	msg_evict_free(&q);
	return rc;
}

static int do_tune(struct conn *c, struct rbuf *rb, struct body *b, struct uwerr *e)
{
	struct msg_tune q = {0};
	struct msg_tune_reply r = {0};
	int rc = dec_tune(rb, &q, e);
	if (!rc)
		rc = admin_only(c, "tune", q.name[0] ? q.name : "(every model)", e);
	if (!rc && !(rc = tuner_request(c->d->tune, q.name, q.flags, c->peer.who, &r.job, e)))
		enc_tune_reply(&b->w, &r);
	msg_tune_free(&q);
	return rc;
}

static int do_stats(struct conn *c, struct rbuf *rb, struct body *b, struct uwerr *e)
{
	struct msg_stats q = {0};
	struct msg_stats_reply r = {0};
	int rc = dec_stats(rb, &q, e);
	if (!rc && !(rc = stats_json(c->d, q.name, &r.json, e)))
		enc_stats_reply(&b->w, &r);
	msg_stats_reply_free(&r);
	msg_stats_free(&q);
	return rc;
}

static int do_attach(struct conn *c, struct rbuf *rb, struct body *b, int *fds,
		     struct uwerr *e)
{
	struct msg_attach q = {0};
	struct model *m;
	uint64_t lease;
	int rc = dec_attach(rb, &q, e);
	if (!rc)
		rc = policy_attach(c->d->cfg, &c->peer, q.name, e);
	if (!rc && atomic_load(&c->leases) >= c->d->cfg->max_leases)
		rc = uwerr_set(e, EMFILE, "attach %s: this connection holds %u leases already, the "
			       "most one may (max_leases); detach some first", q.name,
			       atomic_load(&c->leases));
	if (rc || (rc = registry_attach(c->d->reg, q.name, c, &lease, &m, e)))
		goto out;
	/* The lease keeps m alive, and a ready model does not change. */
	const struct backend *be = c->d->be;
	struct msg_attach_reply r = {
		.lease = lease, .backend = (uint32_t)be->ops->id,
		.device_uuid = (char *)be->dev[m->dev].uuid,
		.nbufs = (uint32_t)m->nbufs, .buf_size = m->buf_size,
		.ntensors = (uint32_t)m->ntensors, .tensors = m->t,
	};
	enc_attach_reply(&b->w, &r);
	if (b->w.err || b->w.len > PROTO_MAX_PAYLOAD - PROTO_MAX_MSG - 64) {
		rc = uwerr_set(e, EMSGSIZE, "attach %s: its tensor directory (%zu bytes) does "
			       "not fit in one message", q.name, b->w.len);
		registry_detach(c->d->reg, c, lease, NULL);
		goto out;
	}
	for (size_t i = 0; i < m->nbufs; i++)
		fds[i] = be->ops->buf_fd(m->bufs[i]);
	b->fds = fds;
	b->nfds = (int)m->nbufs;
	atomic_fetch_add(&c->leases, 1);
	log_info("attach %s: lease %llu to %s", q.name, (unsigned long long)lease, c->peer.who);
out:
	msg_attach_free(&q);
	return rc;
}

static int do_detach(struct conn *c, struct rbuf *rb, struct uwerr *e)
{
	struct msg_detach q = {0};
	int rc = dec_detach(rb, &q, e);
	if (!rc && !(rc = registry_detach(c->d->reg, c, q.lease, e)))
		atomic_fetch_sub(&c->leases, 1);
	return rc;
}

/* Read the model back and check every tensor. A corrupt one is a success
 * with the bad tensors named: the check itself worked. */
static int do_verify(struct conn *c, struct rbuf *rb, struct body *b, struct uwerr *e)
{
	struct msg_verify q = {0};
	struct model *m = NULL;
	struct verify_report rep = {0};
	int rc = dec_verify(rb, &q, e);
	if (!rc)
		rc = admin_only(c, "verify", q.name, e);
	if (!rc)
		rc = registry_get_ready(c->d->reg, q.name, &m, e);
	if (!rc)
		rc = verify_model(c->d->vf, m, c->peer.who, &rep, e);
	if (!rc) {
		struct msg_verify_reply r = {
			.tensors = rep.tensors, .bytes = rep.bytes,
			.usec = (uint64_t)(rep.seconds * 1e6), .nbad = rep.nbad,
			.nnames = (uint32_t)(rep.nbad < PROTO_MAX_BAD_NAMES ? rep.nbad
					     : PROTO_MAX_BAD_NAMES),
		};
		/* The names stay the model's: our reference keeps them. */
		if (r.nnames && !(r.bad = calloc(r.nnames, sizeof(*r.bad))))
			rc = uwerr_set(e, ENOMEM, "verify %s: reply: out of memory", q.name);
		for (uint32_t i = 0; !rc && i < r.nnames; i++)
			r.bad[i] = m->t[rep.bad[i]].name;
		if (!rc)
			enc_verify_reply(&b->w, &r);
		free(r.bad);
	}
	verify_report_free(&rep);
	if (m)
		registry_unref(c->d->reg, m);
	msg_verify_free(&q);
	return rc;
}

/* The server closes a connection whose message (either way) has been in
 * flight longer than io_timeout_ms: the peer stalled mid-message. */
static void conn_io_begin(struct conn *c)
{
	atomic_store(&c->io_since_ms, uwd_now_ms());
}

static void conn_io_end(struct conn *c)
{
	atomic_store(&c->io_since_ms, 0);
	atomic_store(&c->idle_since_ms, uwd_now_ms());
}

/* Serve one request; returns 0 to go on, -1 to close the connection. */
static int dispatch(struct conn *c, struct proto_msg *m)
{
	uint16_t op = m->hdr.opcode;
	struct rbuf rb = {.p = m->payload, .len = m->hdr.len};
	struct body b = {0};
	int fds[PROTO_MAX_FDS];
	struct uwerr e = {0};
	int rc, keep = 1;
	if (c->version && m->hdr.version != c->version) {
		/* Its layout is not the one agreed: nothing after it can be trusted. */
		rc = uwerr_set(&e, EPROTO, "message of protocol version %u on a connection "
			       "that agreed on version %u", m->hdr.version, c->version);
		keep = 0;
	} else if (m->nfds) {
		/* Closed before the reply, so the peer can count on it. */
		for (int i = 0; i < m->nfds; i++)
			close(proto_msg_take_fd(m, i));
		rc = uwerr_set(&e, EBADMSG, "%s carries %d fds; requests carry none (closed them)",
			       proto_op_name(op), m->nfds);
	} else if (!c->version) {
		if (op == OP_HELLO)
			rc = do_hello(c, &rb, &b, &e);
		else
			rc = uwerr_set(&e, EPROTO, "the first message must be HELLO, not opcode %u", op);
		keep = rc == 0;
	} else {
		switch (op) {
		case OP_HELLO:
			rc = uwerr_set(&e, EPROTO, "HELLO: the version is agreed already");
			break;
		case OP_LOAD: rc = do_load(c, &rb, &e); break;
		case OP_EVICT: rc = do_evict(c, &rb, &e); break;
		case OP_STATS: rc = do_stats(c, &rb, &b, &e); break;
		case OP_ATTACH: rc = do_attach(c, &rb, &b, fds, &e); break;
		case OP_DETACH: rc = do_detach(c, &rb, &e); break;
		case OP_VERIFY: rc = do_verify(c, &rb, &b, &e); break;
		case OP_TUNE: rc = do_tune(c, &rb, &b, &e); break;
		default:
			rc = uwerr_set(&e, EOPNOTSUPP, "opcode %u is no request unweightd knows", op);
		}
	}
	if (!rc && b.w.err)
		rc = uwerr_set(&e, ENOMEM, "%s: reply: out of memory", proto_op_name(op));
	if (rc)
		log_warning("refused %s from %s: %s", proto_op_name(op), c->peer.who, e.msg);
	conn_io_begin(c);
	if (send_reply(c->fd, c->version ? c->version : PROTO_VERSION, op, rc, e.msg, &b))
		keep = 0;
	conn_io_end(c);
	wb_free(&b.w);
	return keep ? 0 : -1;
}

/* Answer the first request, whatever it is, with -EUSERS. Reading it
 * first matters: closing with it unread would make the peer's send fail
 * (EPIPE), and the peer would never see why. */
static void refuse_first(struct conn *c)
{
	const struct uwd_config *cfg = c->d->cfg;
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	struct proto_msg m;
	if (poll(&p, 1, (int)cfg->io_timeout_ms) <= 0)
		return;
	conn_io_begin(c);
	if (proto_recv_max(c->fd, cfg->max_request_bytes, &m, NULL) == 0) {
		char msg[128];
		snprintf(msg, sizeof(msg), "unweightd serves at most %u clients at once (max_clients)",
			 cfg->max_clients);
		send_reply(c->fd, PROTO_VERSION, m.hdr.opcode, -EUSERS, msg, NULL);
		proto_msg_free(&m);
	}
	conn_io_end(c);
}

void *conn_main(void *arg)
{
	struct conn *c = arg;
	struct uwd *d = c->d;
	if (c->refuse) {
		refuse_first(c);
		atomic_store(&c->done, 1);
		uwd_wake(d);
		return NULL;
	}
	atomic_store(&c->idle_since_ms, uwd_now_ms());
	for (;;) {
		/* Idle for as long as it likes while it holds a lease (a worker
		 * holds one for hours); the io timeout applies once a message has
		 * begun. */
		struct pollfd p = {.fd = c->fd, .events = POLLIN};
		if (poll(&p, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		struct proto_msg m;
		struct uwerr e = {0};
		conn_io_begin(c);
		int rc = proto_recv_max(c->fd, d->cfg->max_request_bytes, &m, &e);
		conn_io_end(c);
		if (rc == -EMSGSIZE && m.hdr.len <= PROTO_MAX_PAYLOAD) {
			char why[sizeof(e.msg)];
			snprintf(why, sizeof(why), "%s", e.msg);
			uwerr_set(&e, EMSGSIZE, "%s (unweightd's max_request_bytes)", why);
		}
		if (rc == -ECONNRESET)
			break;
		if (rc) {
			/* The stream is out of step: answer if we can, then close. */
			log_warning("client %s: %s; closing the connection", c->peer.who, e.msg);
			conn_io_begin(c);
			send_reply(c->fd, c->version ? c->version : PROTO_VERSION, m.hdr.opcode, rc,
				   e.msg, NULL);
			conn_io_end(c);
			break;
		}
		rc = dispatch(c, &m);
		proto_msg_free(&m);
		if (rc)
			break;
	}
	unsigned n = registry_release(d->reg, c);
	log_info("client %s: gone (%u lease%s ended)", c->peer.who, n, n == 1 ? "" : "s");
	atomic_store(&c->done, 1);
	uwd_wake(d);
	return NULL;
}
