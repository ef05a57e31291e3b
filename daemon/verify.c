/* verify: re-reading resident models (see verify.h). */
#include "config.h"

#include "daemon/verify.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/strbuf.h"
#include "daemon/backend.h"
#include "daemon/conf.h"
#include "daemon/log.h"
#include "daemon/registry.h"
#include "daemon/uwd.h"

/* Bytes read between two looks at whether to stop. */
#define BATCH_BYTES (256ull << 20)
/* Bad tensors named in the log line. */
#define LOG_NAMES 8

struct verifier {
	struct uwd *d;
	pthread_mutex_t run;      /* one verify at a time: each costs memory bandwidth */
	pthread_mutex_t lock;     /* for wake */
	pthread_cond_t wake;      /* the periodic thread's sleep, cut short by a stop */
	atomic_int stop;
	int threaded;
	pthread_t th;
};

void verify_report_free(struct verify_report *r)
{
	free(r->bad);
	*r = (struct verify_report){0};
}

static int stopping(struct verifier *v, const struct model *m)
{
	return atomic_load(&v->stop) || atomic_load(&m->cancel);
}

/* Check the spans sp[0..n) of buffer b, tensors which[0..n), into r. */
static int check_batch(struct verifier *v, struct model *m, size_t b, struct bspan *sp,
		       const uint32_t *which, size_t n, struct verify_report *r,
		       struct uwerr *e)
{
	if (stopping(v, m))
		return uwerr_set(e, ECANCELED, "canceled: %s", atomic_load(&v->stop) ?
				 "unweightd is shutting down" : "the model was evicted");
	int rc = v->d->be->ops->buf_crc32c(m->bufs[b], sp, n, e);
	if (rc)
		return uwerr_prefix(e, "buffer %zu", b);
	for (size_t k = 0; k < n; k++) {
		if (sp[k].crc != m->t[which[k]].layout.crc32c)
			r->bad[r->nbad++] = which[k];
		r->bytes += sp[k].len;
	}
	r->tensors += n;
	return 0;
}

/* Every tensor of m, buffer by buffer, in batches of about BATCH_BYTES. */
static int check_model(struct verifier *v, struct model *m, struct verify_report *r,
		       struct uwerr *e)
{
	size_t nt = m->ntensors;
	struct bspan *sp = calloc(nt ? nt : 1, sizeof(*sp));
	uint32_t *which = calloc(nt ? nt : 1, sizeof(*which));
	r->bad = calloc(nt ? nt : 1, sizeof(*r->bad));
	int rc = sp && which && r->bad ? 0 : uwerr_set(e, ENOMEM, "out of memory");
	for (size_t b = 0; b < m->nbufs && !rc; b++) {
		size_t n = 0;
		uint64_t batch = 0;
		for (size_t i = 0; i < nt && !rc; i++) {
			const struct proto_tensor *t = &m->t[i];
			if (t->buf != b)
				continue;
			sp[n] = (struct bspan){.off = t->offset, .len = t->layout.nbytes};
			which[n++] = (uint32_t)i;
			batch += t->layout.nbytes;
			if (batch >= BATCH_BYTES) {
				rc = check_batch(v, m, b, sp, which, n, r, e);
				n = 0;
				batch = 0;
			}
		}
		if (n && !rc)
			rc = check_batch(v, m, b, sp, which, n, r, e);
	}
	free(sp);
	free(which);
	return rc;
}

/* "a, b, c and 4 more" */
static void bad_names(struct strbuf *s, const struct model *m, const struct verify_report *r)
{
	for (uint64_t i = 0; i < r->nbad && i < LOG_NAMES; i++)
		sb_printf(s, "%s%s", i ? ", " : "", m->t[r->bad[i]].name);
	if (r->nbad > LOG_NAMES)
		sb_printf(s, " and %llu more", (unsigned long long)(r->nbad - LOG_NAMES));
}

static void record(struct verifier *v, struct model *m, const char *by, int rc,
		   const struct verify_report *r, const struct uwerr *e)
{
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	struct verify_record rec = {
		.state = rc ? VERIFY_ERROR : r->nbad ? VERIFY_CORRUPT : VERIFY_OK,
		.at = (double)wall.tv_sec + (double)wall.tv_nsec * 1e-9,
		.seconds = r->seconds,
		.nbad = r->nbad,
		.nnames = r->nbad < VERIFY_STATS_NAMES ? r->nbad : VERIFY_STATS_NAMES,
	};
	for (size_t i = 0; i < rec.nnames; i++)
		rec.bad[i] = r->bad[i];
	if (rc)
		snprintf(rec.error, sizeof(rec.error), "%s", e->msg);
	registry_verified(v->d->reg, m, &rec);

	if (rec.state == VERIFY_OK) {
		log_info("verify %s (%s): %llu tensors, %llu bytes: every CRC-32C matches (%.3f s)",
			 m->name, by, (unsigned long long)r->tensors,
			 (unsigned long long)r->bytes, r->seconds);
	} else if (rec.state == VERIFY_ERROR) {
		log_err("verify %s (%s): could not read the model: %s", m->name, by, e->msg);
	} else {
		struct strbuf s = {0};
		bad_names(&s, m, r);
		char *names = sb_take(&s);
		log_err("verify %s (%s): CORRUPT: %llu of %llu tensors fail their CRC-32C: %s; "
			"still served (unweightd(8), VERIFY): evict it and load it again", m->name,
			by, (unsigned long long)r->nbad, (unsigned long long)r->tensors,
			names ? names : "(out of memory)");
		free(names);
	}
}

int verify_model(struct verifier *v, struct model *m, const char *by,
		 struct verify_report *r, struct uwerr *e)
{
	*r = (struct verify_report){0};
	pthread_mutex_lock(&v->run);
	double t0 = uwd_now();
	int rc = check_model(v, m, r, e);
	r->seconds = uwd_now() - t0;
	if (rc != -ECANCELED)
		record(v, m, by, rc, r, e);
	pthread_mutex_unlock(&v->run);
	if (rc) {
		uwerr_prefix(e, "verify %s", m->name);
		verify_report_free(r);
	}
	return rc;
}

/* Verify every ready model once. */
static void verify_all(struct verifier *v)
{
	struct model **ms;
	size_t n;
	struct uwerr e = {0};
	if (registry_all_ready(v->d->reg, &ms, &n, &e)) {
		log_warning("periodic verify: %s", e.msg);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct verify_report r;
		if (!atomic_load(&v->stop) && verify_model(v, ms[i], "periodic", &r, &e) == 0)
			verify_report_free(&r);
		registry_unref(v->d->reg, ms[i]);
	}
	free(ms);
}

static void *periodic_main(void *arg)
{
	struct verifier *v = arg;
	unsigned interval = v->d->cfg->verify_interval;
	pthread_mutex_lock(&v->lock);
	while (!atomic_load(&v->stop)) {
		/* The interval runs from the end of one pass to the start of the
		 * next, so a model larger than it can read does not pile them up. */
		struct timespec at;
		clock_gettime(CLOCK_MONOTONIC, &at);
		at.tv_sec += interval;
		while (!atomic_load(&v->stop) &&
		       pthread_cond_timedwait(&v->wake, &v->lock, &at) != ETIMEDOUT)
			;
		if (atomic_load(&v->stop))
			break;
		pthread_mutex_unlock(&v->lock);
		verify_all(v);
		pthread_mutex_lock(&v->lock);
	}
	pthread_mutex_unlock(&v->lock);
	return NULL;
}

int verifier_new(struct uwd *d, struct verifier **out, struct uwerr *e)
{
	struct verifier *v = calloc(1, sizeof(*v));
	if (!v)
		return uwerr_set(e, ENOMEM, "verifier: out of memory");
	v->d = d;
	pthread_mutex_init(&v->run, NULL);
	pthread_mutex_init(&v->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&v->wake, &ca);
	pthread_condattr_destroy(&ca);
	if (d->cfg->verify_interval) {
		int rc = pthread_create(&v->th, NULL, periodic_main, v);
		if (rc) {
			verifier_free(v);
			return uwerr_set(e, rc, "verify thread: %s", strerror(rc));
		}
		v->threaded = 1;
		log_info("verify: every model every %u s", d->cfg->verify_interval);
	}
	*out = v;
	return 0;
}

void verifier_cancel(struct verifier *v)
{
	if (!v)
		return;
	pthread_mutex_lock(&v->lock);
	atomic_store(&v->stop, 1);
	pthread_cond_broadcast(&v->wake);
	pthread_mutex_unlock(&v->lock);
}

void verifier_free(struct verifier *v)
{
	if (!v)
		return;
	verifier_cancel(v);
	if (v->threaded)
		pthread_join(v->th, NULL);
	pthread_cond_destroy(&v->wake);
	pthread_mutex_destroy(&v->lock);
	pthread_mutex_destroy(&v->run);
	free(v);
}
