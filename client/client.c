/* client: the connection to unweightd (hello, request/reply), the operator
 * requests (load, evict, verify, stats) and the error reporting of
 * libunweight-client. */
#include "config.h"   /* first: _GNU_SOURCE, for the GNU strerror_r */

#include "client/client.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CL_PEER "libunweight-client " PACKAGE_VERSION

static __thread char tls_msg[UWERR_MSG_MAX];

int cl_ret(const struct uwerr *e, int rc)
{
	if (rc < 0) {
		if (e && e->msg[0])
			snprintf(tls_msg, sizeof(tls_msg), "%s", e->msg);
		else
			snprintf(tls_msg, sizeof(tls_msg), "%s", uw_strerror(rc));
	}
	return rc;
}

UW_API const char *uw_errmsg(void)
{
	return tls_msg;
}

UW_API const char *uw_strerror(int err)
{
	static __thread char buf[128];
	if (err == INT_MIN)
		return "Unknown error";
	/* The GNU strerror_r returns a static string or fills buf: thread-safe. */
	return strerror_r(err < 0 ? -err : err, buf, sizeof(buf));
}

void cl_ref(struct uw_client *c)
{
	__atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
}

void cl_unref(struct uw_client *c)
{
	if (__atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (c->sock >= 0)
		close(c->sock);
	pthread_mutex_destroy(&c->lock);
	free(c->path);
	free(c);
}

/* Under c->lock. The daemon ends this connection's leases when it sees the
 * socket close; mappings already made stay valid. */
static void cl_break(struct uw_client *c)
{
	if (c->sock >= 0)
		close(c->sock);
	c->sock = -1;
}

/* Decode the status that opens every reply; a refusal becomes the return
 * value, with the daemon's message in e. */
static int reply_status(struct rbuf *r, uint16_t op, struct uwerr *e)
{
	struct msg_status st = {0};
	int rc = dec_status(r, &st, e);
	if (rc < 0) {
		uwerr_prefix(e, "%s reply", proto_op_name(op));
	} else if (st.status > 0) {
		rc = uwerr_set(e, EBADMSG, "%s reply: status %d is not a negative errno",
			       proto_op_name(op), st.status);
	} else if (st.status < 0) {
		if (st.message && st.message[0])
			uwerr_set(e, -st.status, "%s", st.message);
		else
			uwerr_set(e, -st.status, "unweightd refused %s: %s",
				  proto_op_name(op), uw_strerror(st.status));
		rc = st.status;
	}
	msg_status_free(&st);
	return rc;
}

/* One request and its reply, under c->lock. version is the header version
 * to send (HELLO sends our highest; later messages the agreed one). */
static int call_locked(struct uw_client *c, uint16_t version, uint16_t op,
		       const struct wbuf *req, struct proto_msg *reply,
		       struct uwerr *e)
{
	if (c->sock < 0)
		return uwerr_set(e, ENOTCONN, "%s: not connected to unweightd at %s",
				 proto_op_name(op), c->path);
	int rc = proto_send(c->sock, version, op, req->p, (uint32_t)req->len,
			    NULL, 0, e);
	if (rc == 0)
		rc = proto_recv(c->sock, reply, e);
	if (rc < 0) {
		uwerr_prefix(e, "%s: unweightd at %s", proto_op_name(op), c->path);
		cl_break(c);
		return rc;
	}
	if (reply->hdr.opcode != (op | OP_REPLY) ||
	    (op != OP_HELLO && reply->hdr.version != c->version)) {
		rc = uwerr_set(e, EBADMSG,
			       "%s: reply has opcode 0x%x version %u, expected 0x%x version %u",
			       proto_op_name(op), reply->hdr.opcode, reply->hdr.version,
			       op | OP_REPLY, c->version);
		proto_msg_free(reply);
		cl_break(c);
	}
	return rc;
}

int cl_call(struct uw_client *c, uint16_t op, const struct wbuf *req,
	    struct proto_msg *reply, struct rbuf *body, struct uwerr *e)
{
	memset(reply, 0, sizeof(*reply));
	if (req->err)
		return cl_enc_fail(-ENOMEM, proto_op_name(op), e);
	pthread_mutex_lock(&c->lock);
	int rc = call_locked(c, c->version, op, req, reply, e);
	pthread_mutex_unlock(&c->lock);
	if (rc < 0)
		return rc;
	*body = (struct rbuf){ .p = reply->payload, .len = reply->hdr.len };
	rc = reply_status(body, op, e);
	if (rc < 0)
		proto_msg_free(reply);
	return rc;
}

int cl_body_done(struct rbuf *body, uint16_t op, struct uwerr *e)
{
	int rc = rb_done(body, e);
	return rc < 0 ? uwerr_prefix(e, "%s reply", proto_op_name(op)) : 0;
}

int cl_enc_fail(int rc, const char *what, struct uwerr *e)
{
	return uwerr_set(e, rc < 0 ? -rc : ENOMEM, "%s: encoding the request: %s",
			 what, uw_strerror(rc < 0 ? rc : -ENOMEM));
}

static int hello(struct uw_client *c, struct uwerr *e)
{
	struct msg_hello h = {
		.min_version = PROTO_MIN_VERSION,
		.max_version = PROTO_VERSION,
		.peer = CL_PEER,
	};
	struct msg_hello_reply hr = {0};
	struct wbuf w = {0};
	struct proto_msg reply = {0};
	int rc = enc_hello(&w, &h);
	if (rc < 0 || w.err) {
		rc = cl_enc_fail(rc, "hello", e);
		goto fail;
	}
	rc = call_locked(c, PROTO_VERSION, OP_HELLO, &w, &reply, e);
	if (rc < 0)
		goto fail;
	struct rbuf r = { .p = reply.payload, .len = reply.hdr.len };
	rc = reply_status(&r, OP_HELLO, e);
	if (rc < 0)
		goto fail;
	rc = dec_hello_reply(&r, &hr, e);
	if (rc < 0)
		goto fail;
	if (hr.version < PROTO_MIN_VERSION || hr.version > PROTO_VERSION) {
		rc = uwerr_set(e, EPROTONOSUPPORT,
			       "%s at %s chose protocol version %u; this library speaks %u..%u",
			       hr.daemon, c->path, hr.version, PROTO_MIN_VERSION,
			       PROTO_VERSION);
		goto fail;
	}
	c->version = hr.version;
	c->backend = hr.backend;
fail:
	msg_hello_reply_free(&hr);
	proto_msg_free(&reply);
	wb_free(&w);
	return rc;
}

UW_API int uw_connect(const char *path, uw_client **out)
{
	struct uwerr e = {0};
	struct uw_client *c = NULL;
	int rc;
	if (!out)
		return cl_ret(&e, uwerr_set(&e, EINVAL, "uw_connect: out is NULL"));
	*out = NULL;
	if (!path || !path[0])
		path = getenv("UNWEIGHT_SOCKET");
	if (!path || !path[0])
		path = UW_DEFAULT_SOCKET;

	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return cl_ret(&e, uwerr_set(&e, ENAMETOOLONG,
			      "connect to %s: socket path longer than %zu bytes",
			      path, sizeof(sa.sun_path) - 1));
	memcpy(sa.sun_path, path, strlen(path) + 1);

	c = calloc(1, sizeof(*c));
	if (!c)
		return cl_ret(&e, uwerr_set(&e, ENOMEM, "connect to %s: out of memory", path));
	c->refs = 1;
	c->sock = -1;
	pthread_mutex_init(&c->lock, NULL);
	if (!(c->path = strdup(path))) {
		rc = uwerr_set(&e, ENOMEM, "connect to %s: out of memory", path);
		goto fail;
	}
	c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->sock < 0) {
		rc = uwerr_set(&e, errno, "connect to %s: socket: %s", path, strerror(errno));
		goto fail;
	}
	while ((rc = connect(c->sock, (struct sockaddr *)&sa, sizeof(sa))) < 0 &&
	       errno == EINTR)
		;
	if (rc < 0) {
		rc = uwerr_set(&e, errno, "connect to %s: %s (is unweightd running?)",
			       path, strerror(errno));
		goto fail;
	}
	rc = hello(c, &e);
	if (rc < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	cl_unref(c);
	return cl_ret(&e, rc);
}

void cl_shutdown(struct uw_client *c)
{
	pthread_mutex_lock(&c->lock);
	cl_break(c);
	pthread_mutex_unlock(&c->lock);
}

UW_API void uw_disconnect(uw_client *c)
{
	if (!c)
		return;
	cl_shutdown(c);
	cl_unref(c);
}

/* A request whose reply has no body. */
static int call_no_body(struct uw_client *c, uint16_t op, struct wbuf *w,
			struct uwerr *e)
{
	struct proto_msg reply;
	struct rbuf body;
	int rc = cl_call(c, op, w, &reply, &body, e);
	if (rc == 0) {
		rc = cl_body_done(&body, op, e);
		proto_msg_free(&reply);
	}
	wb_free(w);
	return rc;
}

UW_API int uw_load_device(uw_client *c, const char *model, const char *device,
			  const char *const *paths, size_t npaths)
{
	struct uwerr e = {0};
	struct msg_load m = { .name = (char *)model, .device = (char *)(device ? device : "") };
	struct wbuf w = {0};
	size_t i = 0;
	int rc;
	if (!c || !model || !paths)
		return cl_ret(&e, uwerr_set(&e, EINVAL, "load: NULL argument"));
	if (!proto_name_valid(model))
		return cl_ret(&e, uwerr_set(&e, EINVAL,
			      "load %s: invalid model name (1..%d bytes of [A-Za-z0-9._-])",
			      model, PROTO_MAX_NAME));
	if (strlen(m.device) > PROTO_MAX_DEVICE)
		return cl_ret(&e, uwerr_set(&e, EINVAL, "load %s: device name of %zu bytes "
					    "(at most %d)", model, strlen(m.device),
					    PROTO_MAX_DEVICE));
	if (npaths == 0 || npaths > UW_LOAD_MAX_PATHS)
		return cl_ret(&e, uwerr_set(&e, EINVAL, "load %s: %zu paths (1..%d allowed)",
					    model, npaths, UW_LOAD_MAX_PATHS));
	/* The daemon resolves nothing relative to its own cwd: send absolute
	 * paths, and name a missing file here, where the user can see why. */
	m.npaths = (uint32_t)npaths;
	m.paths = calloc(npaths, sizeof(*m.paths));
	if (!m.paths) {
		rc = uwerr_set(&e, ENOMEM, "load %s: out of memory", model);
		goto out;
	}
	for (i = 0; i < npaths; i++) {
		if (!paths[i]) {
			rc = uwerr_set(&e, EINVAL, "load %s: path %zu is NULL", model, i);
			goto out;
		}
		m.paths[i] = realpath(paths[i], NULL);
		if (!m.paths[i]) {
			rc = uwerr_set(&e, errno, "load %s: %s: %s", model, paths[i],
				       strerror(errno));
			goto out;
		}
	}
	rc = enc_load(&w, &m);
	if (rc < 0) {
		rc = cl_enc_fail(rc, "load", &e);
		wb_free(&w);
		goto out;
	}
	rc = call_no_body(c, OP_LOAD, &w, &e);
out:
	for (size_t j = 0; m.paths && j < npaths; j++)
		free(m.paths[j]);
	free(m.paths);
	return cl_ret(&e, rc);
}

UW_API int uw_load(uw_client *c, const char *model, const char *const *paths,
		   size_t npaths)
{
	return uw_load_device(c, model, NULL, paths, npaths);
}

UW_API int uw_evict(uw_client *c, const char *model, unsigned flags)
{
	struct uwerr e = {0};
	struct msg_evict m = { .name = (char *)model, .flags = flags };
	struct wbuf w = {0};
	if (!c || !model)
		return cl_ret(&e, uwerr_set(&e, EINVAL, "uw_evict: NULL argument"));
	if (flags & ~UW_EVICT_FORCE)
		return cl_ret(&e, uwerr_set(&e, EINVAL, "evict %s: unknown flags 0x%x",
					    model, flags & ~UW_EVICT_FORCE));
	int rc = enc_evict(&w, &m);
	if (rc < 0) {
		wb_free(&w);
		return cl_ret(&e, cl_enc_fail(rc, "evict", &e));
	}
	return cl_ret(&e, call_no_body(c, OP_EVICT, &w, &e));
}

UW_API void uw_verify_free(struct uw_verify_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nnames; i++)
		free(r->bad[i]);
	free(r->bad);
	free(r);
}

UW_API int uw_verify(uw_client *c, const char *model, struct uw_verify_result **out)
{
	struct uwerr e = {0};
	struct msg_verify m = { .name = (char *)model };
	struct msg_verify_reply vr = {0};
	struct wbuf w = {0};
	struct proto_msg reply;
	struct rbuf body;
	if (!c || !model || !out)
		return cl_ret(&e, uwerr_set(&e, EINVAL, "uw_verify: NULL argument"));
	*out = NULL;
	int rc = enc_verify(&w, &m);
	if (rc < 0) {
		wb_free(&w);
		return cl_ret(&e, cl_enc_fail(rc, "verify", &e));
	}
	rc = cl_call(c, OP_VERIFY, &w, &reply, &body, &e);
	wb_free(&w);
	if (rc < 0)
		return cl_ret(&e, rc);
	rc = dec_verify_reply(&body, &vr, &e);
	proto_msg_free(&reply);
	if (rc < 0)
		return cl_ret(&e, rc);
	struct uw_verify_result *r = calloc(1, sizeof(*r));
	if (!r) {
		msg_verify_reply_free(&vr);
		return cl_ret(&e, uwerr_set(&e, ENOMEM, "verify %s: out of memory", model));
	}
	*r = (struct uw_verify_result){
		.tensors = vr.tensors, .bytes = vr.bytes, .seconds = (double)vr.usec * 1e-6,
		.nbad = vr.nbad, .nnames = vr.nnames, .bad = vr.bad,
	};
	vr.bad = NULL;   /* the names move to r */
	vr.nnames = 0;
	msg_verify_reply_free(&vr);
	*out = r;
	return 0;
}

UW_API int uw_tune(uw_client *c, const char *model, unsigned flags, uint64_t *job)
{
	struct uwerr e = {0};
	struct msg_tune m = { .name = (char *)(model ? model : ""), .flags = flags };
	struct msg_tune_reply tr;
	struct wbuf w = {0};
	struct proto_msg reply;
	struct rbuf body;
	if (!c)
		return cl_ret(&e, uwerr_set(&e, EINVAL, "uw_tune: NULL argument"));
	if (m.name[0] && !proto_name_valid(m.name))
		return cl_ret(&e, uwerr_set(&e, EINVAL,
			      "tune %s: invalid model name (1..%d bytes of [A-Za-z0-9._-])",
			      m.name, PROTO_MAX_NAME));
	if (flags & ~UW_TUNE_FORCE)
		return cl_ret(&e, uwerr_set(&e, EINVAL, "tune %s: unknown flags 0x%x", m.name,
					    flags & ~UW_TUNE_FORCE));
	int rc = enc_tune(&w, &m);
	if (rc < 0) {
		wb_free(&w);
		return cl_ret(&e, cl_enc_fail(rc, "tune", &e));
	}
	rc = cl_call(c, OP_TUNE, &w, &reply, &body, &e);
	wb_free(&w);
	if (rc < 0)
		return cl_ret(&e, rc);
	rc = dec_tune_reply(&body, &tr, &e);
	if (rc == 0 && job)
		*job = tr.job;
	proto_msg_free(&reply);
	return cl_ret(&e, rc);
}

UW_API int uw_stats_json(uw_client *c, const char *model, char **json)
{
	struct uwerr e = {0};
	struct msg_stats m = { .name = (char *)(model ? model : "") };
	struct msg_stats_reply sr = {0};
	struct wbuf w = {0};
	struct proto_msg reply;
	struct rbuf body;
	if (!c || !json)
		return cl_ret(&e, uwerr_set(&e, EINVAL, "uw_stats_json: NULL argument"));
	*json = NULL;
	int rc = enc_stats(&w, &m);
	if (rc < 0) {
		wb_free(&w);
		return cl_ret(&e, cl_enc_fail(rc, "stats", &e));
	}
	rc = cl_call(c, OP_STATS, &w, &reply, &body, &e);
	wb_free(&w);
	if (rc < 0)
		return cl_ret(&e, rc);
	rc = dec_stats_reply(&body, &sr, &e);
	if (rc == 0) {
		*json = sr.json;
		sr.json = NULL;
	}
	msg_stats_reply_free(&sr);
	proto_msg_free(&reply);
	return cl_ret(&e, rc);
}
