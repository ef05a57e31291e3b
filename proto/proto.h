/* proto: the unweightd wire protocol, shared by the daemon and the client.
 * proto/PROTOCOL.md is the specification; keep the two in step.
 *
 * Bump PROTO_VERSION if any message layout below changes. */
#ifndef UW_PROTO_PROTO_H
#define UW_PROTO_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "unweight.h"

#define PROTO_MAGIC 0x31505755u      /* "UWP1", little-endian on the wire */
#define PROTO_VERSION 2
#define PROTO_MIN_VERSION 2    /* version 1 had per-row R12 patch indexes */
#define PROTO_HDR_SIZE 16
#define PROTO_MAX_PAYLOAD (16u << 20)
#define PROTO_MAX_FDS 64
#define PROTO_MAX_NAME 128           /* model names: [A-Za-z0-9._-], not "." or ".." */
#define PROTO_MAX_PATH 4096
#define PROTO_MAX_PATHS 4096
#define PROTO_MAX_MSG 1024           /* reply status messages */
#define PROTO_MAX_TENSORS 1000000
#define PROTO_MAX_TENSOR_NAME 1024
#define PROTO_MAX_PEER 256           /* hello: peer and daemon program names */
#define PROTO_MAX_DEVICE 128         /* load device, attach device_uuid */
#define PROTO_MAX_ERRNO 4095         /* a status is 0 or -1..-PROTO_MAX_ERRNO */
#define PROTO_MAX_BAD_NAMES 1024     /* verify reply: bad tensors named */

/* Every message: this header, then len payload bytes. nfds says how many fds
 * ride with the message (SCM_RIGHTS, on its first byte). */
struct proto_hdr {
	uint32_t magic;
	uint16_t version;   /* HELLO: the sender's highest; after it, the agreed one */
	uint16_t opcode;
	uint32_t len;
	uint16_t nfds;
	uint16_t reserved;  /* 0 */
};

enum proto_op {
	OP_HELLO = 1,
	OP_LOAD = 2,
	OP_EVICT = 3,
	OP_STATS = 4,
	OP_ATTACH = 5,
	OP_DETACH = 6,
	OP_TUNE = 7,        /* a daemon that predates it answers -EOPNOTSUPP */
	OP_VERIFY = 8,      /* a daemon that predates it answers -EOPNOTSUPP */
	OP_REPLY = 0x8000,  /* a reply's opcode is its request's | OP_REPLY */
};

/* "hello", "attach", ... for messages (a reply's name is its request's). */
const char *proto_op_name(uint16_t op);

/* ---- transport --------------------------------------------------------- */

/* A received message. Owns payload and every fd in fds until taken. */
struct proto_msg {
	struct proto_hdr hdr;
	uint8_t *payload;
	int fds[PROTO_MAX_FDS];
	int nfds;
};

/* Send one message; fds are dup'd by the kernel, the caller keeps its own.
 * Retries on EINTR and partial writes. MSG_NOSIGNAL: a dead peer is -EPIPE. */
int proto_send(int sock, uint16_t version, uint16_t op, const void *payload,
	       uint32_t len, const int *fds, int nfds, struct uwerr *e);

/* Attach fds[0..nfds) to mh as one SCM_RIGHTS message built in ctl, which
 * holds CMSG_SPACE(sizeof(int) * nfds) bytes aligned for a cmsghdr. nfds 0
 * attaches nothing. proto_send's own, and tests' for hand-made frames. */
struct msghdr;
void proto_put_fds(struct msghdr *mh, void *ctl, const int *fds, int nfds);

/* Receive one message, MSG_CMSG_CLOEXEC. The header is checked before any
 * allocation (magic, len <= PROTO_MAX_PAYLOAD, nfds <= PROTO_MAX_FDS, reserved
 * == 0) and the fds received must be exactly hdr.nfds: surplus or missing fds
 * are an error (-EBADMSG), and everything received is closed on every error.
 * Returns 0, -ECONNRESET on a clean EOF before a header, or a negative errno
 * (-EBADMSG malformed, -EMSGSIZE len over the limit). On error m owns
 * nothing, and m->hdr holds the header if one was read whole (zeros if not),
 * so the daemon can address its error reply. On a non-blocking socket,
 * -EAGAIN when no byte is there yet; once a message has begun, it waits. */
int proto_recv(int sock, struct proto_msg *m, struct uwerr *e);
/* The same with a lower payload limit (max_len <= PROTO_MAX_PAYLOAD): the
 * daemon's bound on what one connection makes it allocate. */
int proto_recv_max(int sock, uint32_t max_len, struct proto_msg *m, struct uwerr *e);

/* Move fd i out of m: the caller owns it now (m keeps -1); -1 if none. */
int proto_msg_take_fd(struct proto_msg *m, int i);

/* Free the payload and close every fd nobody took. */
void proto_msg_free(struct proto_msg *m);

/* ---- payload codec ---------------------------------------------------- */

/* Little-endian writer; on allocation failure err is set and later puts do
 * nothing, so callers check once at the end. */
struct wbuf {
	uint8_t *p;
	size_t len, cap;
	int err;
};
void wb_u8(struct wbuf *w, uint8_t v);
void wb_u16(struct wbuf *w, uint16_t v);
void wb_u32(struct wbuf *w, uint32_t v);
void wb_u64(struct wbuf *w, uint64_t v);
void wb_bytes(struct wbuf *w, const void *p, size_t n);
void wb_str(struct wbuf *w, const char *s);   /* u32 length, then bytes, no NUL */
void wb_free(struct wbuf *w);

/* Bounds-checked reader: reading past the end sets err and yields zeros. */
struct rbuf {
	const uint8_t *p;
	size_t len, pos;
	int err;
};
uint8_t rb_u8(struct rbuf *r);
uint16_t rb_u16(struct rbuf *r);
uint32_t rb_u32(struct rbuf *r);
uint64_t rb_u64(struct rbuf *r);
/* A string of at most max bytes (checked before allocating), with no NUL
 * inside; returned malloc'd and NUL-terminated, or NULL with err set. */
char *rb_str(struct rbuf *r, size_t max);
/* 0 when r was read to its end; -EBADMSG naming the trailing bytes, or the
 * error of an earlier read. For replies whose status has no body after it. */
int rb_done(struct rbuf *r, struct uwerr *e);

/* ---- messages ---------------------------------------------------------- */
/* Each request has an enc (build the payload) and a dec (parse and check it:
 * every length against its limit, every string, no trailing bytes). dec
 * returns -EBADMSG with a message naming the field. */

struct msg_hello {
	uint16_t min_version, max_version;
	char *peer;               /* "unweightctl 0.1.0", "libunweight-client 0.1.0" */
};

/* Every reply starts with this; the body follows only when status == 0.
 * dec_status rejects trailing bytes after a refusal, and leaves the body of
 * a success to the body's dec (or rb_done when the reply has none). */
struct msg_status {
	int32_t status;           /* 0 or a negative errno */
	char *message;            /* why, in the daemon's words ("" on success) */
};

struct msg_hello_reply {
	uint16_t version;         /* agreed */
	uint32_t backend;         /* enum uw_backend */
	char *daemon;             /* "unweightd 0.1.0" */
};

struct msg_load {
	char *name;
	char *device;             /* "" = default; a UUID or an index */
	uint32_t npaths;
	char **paths;
};

struct msg_evict {
	char *name;
	uint32_t flags;           /* UW_EVICT_FORCE */
};

struct msg_stats {
	char *name;               /* "" = every model */
};
struct msg_stats_reply {
	char *json;               /* unweightd(8), STATISTICS, lists the keys */
};

struct msg_attach {
	char *name;
};

/* One tensor of an attach reply: where it lives and how to read it. */
struct proto_tensor {
	char *name;
	uint32_t dtype, ndim;
	uint64_t shape[UW_MAX_DIMS];
	uint64_t raw_bytes;
	uint32_t buf;             /* index into the reply's buffers (and fds) */
	uint64_t offset;          /* of the tensor's base in that buffer */
	struct uw_layout layout;
};

struct msg_attach_reply {
	uint64_t lease;
	uint32_t backend;         /* enum uw_backend */
	char *device_uuid;        /* "GPU-..." for cuda, "" for host */
	uint32_t nbufs;           /* == the fds attached to the reply */
	uint64_t *buf_size;       /* [nbufs], bytes of each buffer */
	uint32_t ntensors;
	struct proto_tensor *tensors;
};

struct msg_detach {
	uint64_t lease;
};

struct msg_verify {
	char *name;
};
struct msg_verify_reply {
	uint64_t tensors;         /* tensors checked */
	uint64_t bytes;           /* resident bytes read */
	uint64_t usec;            /* how long the check took */
	uint64_t nbad;            /* tensors whose bytes fail their CRC-32C */
	uint32_t nnames;          /* min(nbad, PROTO_MAX_BAD_NAMES) */
	char **bad;               /* [nnames]: the first bad tensors' names */
};
struct msg_tune {
	char *name;               /* "" = every ready model */
	uint32_t flags;           /* UW_TUNE_FORCE */
};
struct msg_tune_reply {
	uint64_t job;             /* >= 1; the stats document's tune.done reaches it when done */
};

int enc_hello(struct wbuf *w, const struct msg_hello *m);
int dec_hello(struct rbuf *r, struct msg_hello *m, struct uwerr *e);
int enc_status(struct wbuf *w, const struct msg_status *m);
int dec_status(struct rbuf *r, struct msg_status *m, struct uwerr *e);
int enc_hello_reply(struct wbuf *w, const struct msg_hello_reply *m);
int dec_hello_reply(struct rbuf *r, struct msg_hello_reply *m, struct uwerr *e);
int enc_load(struct wbuf *w, const struct msg_load *m);
int dec_load(struct rbuf *r, struct msg_load *m, struct uwerr *e);
int enc_evict(struct wbuf *w, const struct msg_evict *m);
int dec_evict(struct rbuf *r, struct msg_evict *m, struct uwerr *e);
int enc_stats(struct wbuf *w, const struct msg_stats *m);
int dec_stats(struct rbuf *r, struct msg_stats *m, struct uwerr *e);
int enc_stats_reply(struct wbuf *w, const struct msg_stats_reply *m);
int dec_stats_reply(struct rbuf *r, struct msg_stats_reply *m, struct uwerr *e);
int enc_attach(struct wbuf *w, const struct msg_attach *m);
int dec_attach(struct rbuf *r, struct msg_attach *m, struct uwerr *e);
int enc_attach_reply(struct wbuf *w, const struct msg_attach_reply *m);
/* Also checks nbufs against the fds that came (nfds) and every tensor's
 * buf, offset and layout against its buffer's size (res_validate). */
int dec_attach_reply(struct rbuf *r, int nfds, struct msg_attach_reply *m,
		     struct uwerr *e);
int enc_detach(struct wbuf *w, const struct msg_detach *m);
int dec_detach(struct rbuf *r, struct msg_detach *m, struct uwerr *e);
int enc_verify(struct wbuf *w, const struct msg_verify *m);
int dec_verify(struct rbuf *r, struct msg_verify *m, struct uwerr *e);
int enc_verify_reply(struct wbuf *w, const struct msg_verify_reply *m);
int dec_verify_reply(struct rbuf *r, struct msg_verify_reply *m, struct uwerr *e);
int enc_tune(struct wbuf *w, const struct msg_tune *m);
int dec_tune(struct rbuf *r, struct msg_tune *m, struct uwerr *e);
int enc_tune_reply(struct wbuf *w, const struct msg_tune_reply *m);
int dec_tune_reply(struct rbuf *r, struct msg_tune_reply *m, struct uwerr *e);

/* Free what a dec_* allocated (NULL-safe fields). */
void msg_hello_free(struct msg_hello *m);
void msg_status_free(struct msg_status *m);
void msg_hello_reply_free(struct msg_hello_reply *m);
void msg_load_free(struct msg_load *m);
void msg_evict_free(struct msg_evict *m);
void msg_stats_free(struct msg_stats *m);
void msg_stats_reply_free(struct msg_stats_reply *m);
void msg_attach_free(struct msg_attach *m);
void msg_attach_reply_free(struct msg_attach_reply *m);
void msg_verify_free(struct msg_verify *m);
void msg_verify_reply_free(struct msg_verify_reply *m);
void msg_tune_free(struct msg_tune *m);

/* Model names: 1..PROTO_MAX_NAME bytes of [A-Za-z0-9._-], not "." or "..".
 * Returns 1 when name is one, else 0. */
int proto_name_valid(const char *name);

/* The daemon's side of HELLO: the highest version in both the client's
 * [peer_min, peer_max] and [PROTO_MIN_VERSION, PROTO_VERSION], or
 * -EPROTONOSUPPORT with a message naming both ranges. */
int proto_version_pick(uint16_t peer_min, uint16_t peer_max, uint16_t *out,
		       struct uwerr *e);

#endif
