/* tune: unweightd's matmul tuner. TUNE requests (`unweightctl tune`) and,
 * with `tune = on-load`, each finished load queue models; one thread times
 * uwk_matmul's pipelines for each of a model's weight shapes and batch
 * buckets on the model's own resident buffers (tune_cuda.c) and merges the
 * fastest into the tune cache that workers read (kernels/tunecache.h). */
#ifndef UWD_TUNE_H
#define UWD_TUNE_H

#include <stdatomic.h>
#include <stdint.h>

#include "common/err.h"
#include "common/strbuf.h"

struct uwd;
struct model;
struct tuner;

/* Where the backend runs no kernels (host), the tuner refuses every
 * request; on cuda it starts its thread. */
int tuner_new(struct uwd *d, struct tuner **out, struct uwerr *e);
/* Stop the work in progress (between two timings), join the thread and
 * free t. NULL is fine. */
void tuner_free(struct tuner *t);

/* Queue the shapes of the ready model name ("": every ready model) for
 * tuning, UW_TUNE_FORCE timing again what the cache holds; *job (may be
 * NULL) numbers the request. -EOPNOTSUPP where the backend runs no
 * kernels; -ENOENT or -EAGAIN for the model; the errno of a tune cache
 * directory that cannot be written; -EAGAIN when the queue is full. who
 * names the requester for the log. */
int tuner_request(struct tuner *t, const char *name, unsigned flags, const char *who,
		  uint64_t *job, struct uwerr *e);

/* `,"tune":{...}` for the stats document (unweightd(8), STATISTICS). */
void tuner_stats(struct tuner *t, struct strbuf *b);

/* ---- tune_cuda.c: the GPU side, run on the tuner's thread ---- */

/* What the work on one model has done so far (stats read it meanwhile). */
struct tune_progress {
	atomic_uint shapes_total, shapes_done;
	atomic_uint entries;          /* written to the cache */
	atomic_uint rejected;         /* candidates that failed their check */
};

/* Tune every R12 BF16 2-D shape of m (a reference held) at every batch
 * bucket the cache in dir lacks (force: every one) and merge each shape's
 * entries into the cache as they come. *stop or m->cancel end it between
 * two timings (-ECANCELED). A bucket that fails is skipped and its error
 * returned at the end, after the others ran. Built without CUDA: -ENOTSUP
 * (never called: only the cuda backend's buffers have a device address). */
int tune_gpu_model(struct uwd *d, struct model *m, const char *dir, int force, const int *stop,
		   struct tune_progress *p, struct uwerr *e);

#endif
