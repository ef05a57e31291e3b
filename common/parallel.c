/* parallel: par_for on pthreads (see parallel.h). */
#include "common/parallel.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAR_MAX_THREADS 256

struct par_range {
	void (*fn)(void *, size_t, size_t);
	void *ctx;
	size_t begin, end;
};

static void *par_run(void *arg)
{
	struct par_range *r = arg;
	r->fn(r->ctx, r->begin, r->end);
	return NULL;
}

int par_threads(int nthreads)
{
	if (nthreads <= 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		nthreads = c > 0 ? (int)c : 1;
	}
	return nthreads > PAR_MAX_THREADS ? PAR_MAX_THREADS : nthreads;
}

int par_for(size_t n, int nthreads, void (*fn)(void *ctx, size_t begin, size_t end),
	    void *ctx)
{
	if (!fn)
		return -EINVAL;
	size_t t = (size_t)par_threads(nthreads);
	if (t > n)
		t = n;
	if (t <= 1) {
		if (n)
			fn(ctx, 0, n);
		return 0;
	}
	struct par_range r[PAR_MAX_THREADS];
	pthread_t tid[PAR_MAX_THREADS];
	int started[PAR_MAX_THREADS];
	for (size_t i = 0; i < t; i++) {
		/* n * i / t without overflow: n < 2^64 and t <= 256 */
		r[i] = (struct par_range){fn, ctx, n / t * i + n % t * i / t,
					  n / t * (i + 1) + n % t * (i + 1) / t};
	}
	/* Range 0 runs here; the others on threads, or here when none starts. */
	for (size_t i = 1; i < t; i++)
		started[i] = pthread_create(&tid[i], NULL, par_run, &r[i]) == 0;
	par_run(&r[0]);
	for (size_t i = 1; i < t; i++) {
		if (started[i])
			pthread_join(tid[i], NULL);
		else
			par_run(&r[i]);
	}
	return 0;
}

int par_fail(struct par_err *pe, const struct uwerr *err)
{
	int expect = 0;
	if (atomic_compare_exchange_strong(&pe->failed, &expect, 1))
		memcpy(&pe->e, err, sizeof(*err));
	return -(err->code ? err->code : EIO);
}

int par_err_take(struct par_err *pe, struct uwerr *e)
{
	if (!atomic_load(&pe->failed))
		return 0;
	if (e)
		memcpy(e, &pe->e, sizeof(*e));
	return -(pe->e.code ? pe->e.code : EIO);
}
