/* backend: where models' resident bytes live (a sealed memfd on the host,
 * VMM memory on a GPU), behind one small interface picked at start-up.
 *
 * A model owns one or more buffers on one device. The loader creates a
 * buffer with a capacity (the worst case), writes tensors into it at
 * offsets, then finishes it at its final size; from then on it is
 * read-only and clients receive buf_fd() over the socket. */
#ifndef UWD_BACKEND_H
#define UWD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "daemon/encode_gpu.h"   /* encode_place_fn */

struct uwd_config;
struct backend;
struct bbuf;
struct benc;

#define BACKEND_MAX_DEVICES 16

/* A range of a buffer, and its CRC-32C once buf_crc32c has read it. */
struct bspan {
	uint64_t off, len;
	uint32_t crc;
};

struct backend_device {
	char name[32];            /* "host", "cuda0" */
	char uuid[64];            /* "GPU-..." on cuda, "" on host */
	uint64_t budget;          /* bytes models may take on it */
};

struct backend_ops {
	const char *name;         /* "host", "cuda" */
	int id;                   /* enum uw_backend */
	/* Whether this backend can run on this machine; e says why not. */
	int (*probe)(struct uwerr *e);
	/* Fill b->dev[] and b->ndev, with default budgets. */
	int (*open)(struct backend *b, struct uwerr *e);
	void (*close)(struct backend *b);
	/* A buffer of at most cap bytes on device dev; label names it (the model). */
	int (*buf_create)(struct backend *b, int dev, const char *label, uint64_t cap,
			  struct bbuf **out, struct uwerr *e);
	/* Copy n bytes to offset off; callable from several threads at once
	 * for disjoint ranges. */
	int (*buf_write)(struct bbuf *buf, uint64_t off, const void *src, size_t n,
			 struct uwerr *e);
	/* Cut to size (<= cap) and make it read-only for good. */
	int (*buf_finish)(struct bbuf *buf, uint64_t size, struct uwerr *e);
	/* The fd handed to clients; owned by the buffer, valid until destroy. */
	int (*buf_fd)(const struct bbuf *buf);
	void (*buf_destroy)(struct bbuf *buf);   /* NULL is fine */
	/* Restart without reload (fdstore.c); NULL where the backend cannot.
	 * A finished buffer of size bytes from an fd a previous daemon stored,
	 * checked (size, and seals or device); takes fd on success. */
	int (*buf_adopt)(struct backend *b, int dev, int fd, uint64_t size,
			 struct bbuf **out, struct uwerr *e);
	/* Read a finished buffer back: the CRC-32C of each of n spans (each
	 * inside its final size) into the span's crc: every tensor, for the fd
	 * store's adoption and for verify (verify.c). Callable from any thread,
	 * also while clients use the buffer. */
	int (*buf_crc32c)(const struct bbuf *buf, struct bspan *spans, size_t n,
			  struct uwerr *e);
	/* Encoding on the device (NULL where the backend has none): one
	 * encoder per loader thread, writing into buf. enc_tensor plans a
	 * tensor (raw bytes or an exphuf payload in host memory, encode_gpu.h),
	 * asks place for the offset of its l->nbytes (into *off), and writes
	 * them there; 1, with nothing placed or written, when the device has no
	 * room for the encoder's scratch now (the caller decodes and encodes
	 * that tensor on the CPU). */
	int (*enc_new)(struct bbuf *buf, struct benc **out, struct uwerr *e);
	int (*enc_tensor)(struct benc *enc, int dtype, int ndim, const uint64_t *shape,
			  const struct encode_input *in, encode_place_fn place, void *ctx,
			  struct uw_layout *l, uint64_t *off, struct uwerr *e);
	/* NULL is fine; where the encoder's time went is added to *sum
	 * (NULL: not wanted). */
	void (*enc_free)(struct benc *enc, struct encode_gpu_stats *sum);
	/* Beside the encoders: register a read-only file mapping's pages with
	 * buf's device for its copies, and unregister them once no copy from
	 * them is in flight (encode_gpu_pin). */
	int (*pin)(struct bbuf *buf, const void *p, size_t n, struct uwerr *e);
	void (*unpin)(struct bbuf *buf, const void *p);
	/* The daemon's own device address of a finished buffer, for kernels it
	 * runs itself (the tuner); NULL where the buffers are not on a GPU. */
	uint64_t (*buf_dev_addr)(const struct bbuf *buf);
};

struct backend {
	const struct backend_ops *ops;
	int ndev;
	struct backend_device dev[BACKEND_MAX_DEVICES];
	void *priv;               /* the backend's own state */
};

/* Pick the backend cfg names (auto: cuda where a GPU is present, else host),
 * open it, and apply the configured budgets to its devices. */
int backend_open(const struct uwd_config *cfg, struct backend **out, struct uwerr *e);
void backend_close(struct backend *b);

/* The device a load names: "" is device 0, else a name, uuid or index.
 * Returns the index, or -1. */
int backend_find_device(const struct backend *b, const char *spec);

extern const struct backend_ops backend_host_ops;
extern const struct backend_ops backend_cuda_ops;   /* built with CUDA only */

#endif
