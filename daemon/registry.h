/* registry: the models by name, their memory on each device, and the
 * leases clients hold on them.
 *
 * A model is freed when its last reference goes: the name table holds one,
 * the loader one while it loads, and every lease one. So an evicted model's
 * memory outlives it until the last client detaches (or dies: leases end
 * when their connection closes). All of it is under one lock, never held
 * across I/O or a backend call. */
#ifndef UWD_REGISTRY_H
#define UWD_REGISTRY_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "daemon/backend.h"
#include "proto/proto.h"

enum model_state { MODEL_LOADING, MODEL_READY, MODEL_EVICTING };

/* What the last verify of a model found (verify.c), kept for stats. */
enum verify_state { VERIFY_NEVER, VERIFY_OK, VERIFY_CORRUPT, VERIFY_ERROR };
#define VERIFY_STATS_NAMES 16      /* bad tensors stats names */
struct verify_record {
	enum verify_state state;
	double at;                  /* when it ended, UNIX time */
	double seconds;
	uint64_t nbad;              /* tensors whose bytes fail their CRC-32C */
	size_t nnames;
	uint32_t bad[VERIFY_STATS_NAMES];   /* the first of them, indexes into t */
	char error[UWERR_MSG_MAX];  /* VERIFY_ERROR: why it could not read */
};

struct model {
	struct model *next;         /* the registry's list of live models */
	char *name;
	int dev;                    /* device index in the backend */
	enum model_state state;
	int listed;                 /* in the name table: attach and load see it */
	unsigned refs;
	unsigned leases;
	uint64_t attach_count;
	uint64_t charged;           /* bytes of the device's budget it holds */
	double load_start, load_seconds;

	size_t ntensors;
	uint64_t raw_bytes;
	uint64_t resident_bytes;    /* set when ready */

	/* Written by the loader alone until MODEL_READY, then immutable: the
	 * attach reply is built from them without the lock. */
	struct proto_tensor *t;     /* [ntensors], names owned here */
	size_t nbufs;
	struct bbuf **bufs;
	uint64_t *buf_size;

	/* Under the lock: the last verify, verifies done, and those that found
	 * the model corrupt or could not read it. */
	struct verify_record verify;
	uint64_t verify_count, verify_failures;

	atomic_uint_fast64_t loaded_bytes;   /* raw bytes done, for progress */
	atomic_int cancel;                   /* evict --force or shutdown */
};

struct registry;

int registry_new(struct backend *be, struct registry **out, struct uwerr *e);
/* Only once no connection or load is left. */
void registry_free(struct registry *r);

/* A name the table holds (for a fast refusal before any file is opened). */
int registry_has(struct registry *r, const char *name);

/* Enter a new model of ntensors tensors and raw_bytes, in state loading,
 * charging charge bytes to device dev: -EEXIST if the name is taken,
 * -ENOSPC if the budget can't hold it. The caller (the loader) holds a
 * reference. */
int registry_add(struct registry *r, const char *name, int dev, size_t ntensors,
		 uint64_t raw_bytes, uint64_t charge, struct model **out, struct uwerr *e);
/* A model re-adopted from the fd store (fdstore.c), ready: m is filled
 * (name, dev, tensors, buffers, sizes, raw and resident bytes) and owned by
 * the registry from now on, destroyed here on failure (-EEXIST, -ENOSPC). */
int registry_adopt(struct registry *r, struct model *m, struct uwerr *e);
/* The loader is done: ready, holding resident_bytes of the budget from now
 * on. -ECANCELED when it was evicted meanwhile. */
int registry_loaded(struct registry *r, struct model *m, uint64_t resident_bytes);
/* Take a model out of the name table after its load failed; error (if not
 * NULL) is kept for `stats NAME` until the name is loaded again or evicted. */
void registry_remove(struct registry *r, struct model *m, const char *error);
void registry_unref(struct registry *r, struct model *m);
/* A reference on the ready model name (the tuner's, which is no lease: an
 * evict goes ahead and sets m->cancel), released with registry_unref.
 * -ENOENT, or -EAGAIN while it loads. */
int registry_get(struct registry *r, const char *name, struct model **m, struct uwerr *e);
/* Call fn(arg, name) when a load has made a model ready, on the loader's
 * thread, outside the lock (tune = on-load). One hook; NULL removes it. */
void registry_on_ready(struct registry *r, void (*fn)(void *arg, const char *name), void *arg);

/* A lease on a ready model for owner (a connection); *m is valid until the
 * lease ends. */
int registry_attach(struct registry *r, const char *name, const void *owner,
		    uint64_t *lease, struct model **m, struct uwerr *e);
int registry_detach(struct registry *r, const void *owner, uint64_t lease,
		    struct uwerr *e);
/* End every lease of owner; returns how many there were. */
unsigned registry_release(struct registry *r, const void *owner);

int registry_evict(struct registry *r, const char *name, unsigned flags,
		   struct uwerr *e);

/* A reference on the ready model name (for a verify; registry_unref it):
 * -ENOENT as attach says it, -EAGAIN while it loads. */
int registry_get_ready(struct registry *r, const char *name, struct model **out,
		       struct uwerr *e);
/* References on every ready model: *out (malloc'd) holds *n of them. */
int registry_all_ready(struct registry *r, struct model ***out, size_t *n, struct uwerr *e);
/* Keep v as m's last verify, and count it. */
void registry_verified(struct registry *r, struct model *m, const struct verify_record *v);

/* A copy of what stats reports, taken under the lock. */
struct model_snap {
	char *name;
	const char *state;          /* "loading", "ready", "evicting", "failed" */
	int dev;
	char *error;                /* failed loads only */
	uint64_t tensors, raw_bytes, resident_bytes, loaded_bytes;
	double load_seconds;
	unsigned leases;
	uint64_t attach_count;
	struct verify_record verify;
	char *bad[VERIFY_STATS_NAMES];   /* the names of verify.bad */
	uint64_t verify_count, verify_failures;
};
struct registry_snap {
	uint64_t used[BACKEND_MAX_DEVICES];
	size_t n;
	struct model_snap *m;
};
/* Every model (name NULL), or those named name (-ENOENT if none). */
int registry_snapshot(struct registry *r, const char *name, struct registry_snap *s,
		      struct uwerr *e);
void registry_snap_free(struct registry_snap *s);

#endif
