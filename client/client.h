/* client: what the files of libunweight-client share: the connection, the
 * attached model and its tensors, the request/reply call and error recording. */
#ifndef UW_CLIENT_CLIENT_H
#define UW_CLIENT_CLIENT_H

#include <pthread.h>
#include <stdint.h>

#include "common/err.h"
#include "proto/proto.h"
#include "unweight.h"

/* One connection. Refcounted: the user's handle holds one reference and
 * every attached model another, so a model outlives uw_disconnect and its
 * uw_detach can still see that the socket is gone. */
struct uw_client {
	pthread_mutex_t lock;     /* serialises request/reply pairs and sock */
	int sock;                 /* owned; -1 once disconnected or broken */
	uint16_t version;         /* agreed in HELLO */
	uint32_t backend;         /* the daemon's, enum uw_backend */
	char *path;               /* socket path, for messages */
	int refs;                 /* __atomic */
};

/* One imported buffer of an attached model. */
struct cl_buf {
	const void *host;         /* host backend: the read-only mapping */
	uint64_t dev;             /* cuda backend: the device address */
	uint64_t size;
	int device;                /* cuda backend: the device ordinal here */
};

struct uw_tensor {
	const struct uw_model *m;
	const struct proto_tensor *pt;   /* in m->ar */
	const uint8_t *host;             /* base: buffer + offset, or NULL */
	uint64_t dev;                    /* base on the device, or 0 */
};

struct cl_backend;

struct uw_model {
	struct uw_client *c;      /* a reference, dropped by uw_detach */
	const struct cl_backend *be;
	char *name;
	int leased;               /* the daemon granted ar.lease */
	struct msg_attach_reply ar;     /* owns the tensor names and layouts */
	struct cl_buf *bufs;      /* [ar.nbufs] */
	uint32_t nimported;       /* bufs[0..nimported) hold a mapping */
	struct uw_tensor *tensors;      /* [ar.ntensors], in reply order */
	uint32_t *index;          /* hash of names: tensor index + 1, 0 = empty */
	size_t index_mask;
};

/* Per-backend import and kernels, chosen by the attach reply's backend. */
struct cl_backend {
	const char *name;
	/* Import buffer fd of size bytes into *b. Takes fd: closed on every path. */
	int (*import)(int fd, uint64_t size, const char *device_uuid,
		      struct cl_buf *b, struct uwerr *e);
	void (*release)(struct cl_buf *b);
	/* Arguments are checked by the caller, except stream. */
	int (*decode)(const struct uw_tensor *t, void *out, size_t out_bytes,
		      void *stream, struct uwerr *e);
	/* y_dtype: UW_DTYPE_BF16 (uw_matmul) or UW_DTYPE_F32 (uw_matmul_f32) */
	int (*matmul)(const struct uw_tensor *t, const void *x, size_t batch,
		      void *y, uint32_t y_dtype, void *stream, struct uwerr *e);
	/* Both BF16 matmuls of uw_matmul2 (same cols, checked); NULL: matmul
	 * twice. */
	int (*matmul2)(const struct uw_tensor *t0, const struct uw_tensor *t1, const void *x,
		       size_t batch, void *y0, void *y1, void *stream, struct uwerr *e);
};

extern const struct cl_backend cl_backend_host;
extern const struct cl_backend cl_backend_cuda;   /* built with CUDA only */

/* The backend for enum uw_backend value id, or NULL with e set. */
const struct cl_backend *cl_backend_get(uint32_t id, struct uwerr *e);

/* Send one request and receive its reply (opcode, version checked). On
 * success *reply holds the message and *body reads what follows the status;
 * a refusal returns the daemon's status with its message in e. A transport
 * failure marks the connection broken (the stream is out of step). */
int cl_call(struct uw_client *c, uint16_t op, const struct wbuf *req,
	    struct proto_msg *reply, struct rbuf *body, struct uwerr *e);

/* -EBADMSG unless the body of op's reply was read to its end. */
int cl_body_done(struct rbuf *body, uint16_t op, struct uwerr *e);

/* Record that encoding the request for what failed with enc_*'s rc. */
int cl_enc_fail(int rc, const char *what, struct uwerr *e);

/* Close the socket (the daemon ends its leases); later calls: -ENOTCONN. */
void cl_shutdown(struct uw_client *c);

void cl_ref(struct uw_client *c);
void cl_unref(struct uw_client *c);

/* Record e's message (or strerror when it has none) as this thread's
 * uw_errmsg() when rc < 0; returns rc. */
int cl_ret(const struct uwerr *e, int rc);

#endif
