/* parallel: a tiny pthread parallel-for over contiguous ranges, and the
 * first-error record its workers share. */
#ifndef UW_COMMON_PARALLEL_H
#define UW_COMMON_PARALLEL_H

#include <stdatomic.h>
#include <stddef.h>

#include "common/err.h"

/* Split [0, n) into at most nthreads contiguous ranges of near-equal size and
 * call fn(ctx, begin, end) once per range, each on its own thread; returns
 * when all are done. nthreads <= 0: one per online CPU. One range (or a
 * thread that cannot be started) runs on the calling thread, so the work is
 * always done: returns 0, or -EINVAL when fn is NULL. */
int par_for(size_t n, int nthreads, void (*fn)(void *ctx, size_t begin, size_t end),
	    void *ctx);

/* The thread count par_for uses for nthreads (resolves <= 0). */
int par_threads(int nthreads);

/* The first error raised by any worker of one job; zero-initialize it. */
struct par_err {
	atomic_int failed;
	struct uwerr e;
};

/* Record err (a uwerr filled by the worker) unless another worker already
 * did; returns -err->code. */
int par_fail(struct par_err *pe, const struct uwerr *err);

/* After the job: copy the recorded error into e (may be NULL) and return
 * its -code, or 0 when no worker failed. */
int par_err_take(struct par_err *pe, struct uwerr *e);

/* Whether some worker failed: lets the others stop early. */
static inline int par_failed(struct par_err *pe)
{
	return atomic_load_explicit(&pe->failed, memory_order_relaxed) != 0;
}

#endif
