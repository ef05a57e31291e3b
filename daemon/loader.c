/* loader: admission and the load threads (see loader.h). */
#include "config.h"

#include "daemon/loader.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "common/parallel.h"
#include "daemon/allow.h"
#include "daemon/backend.h"
#include "daemon/conf.h"
#include "daemon/log.h"
#include "daemon/registry.h"
#include "daemon/uwd.h"
#include "format/source.h"
#include "kernels/resident.h"

#define MAX_LOAD_THREADS 8

/* One load in progress. */
struct job {
	struct job *next;
	struct loader *ld;
	struct model *m;
	struct source *src;
	pthread_t th;
	atomic_int done;
	atomic_int stop;              /* shutdown: the model may be gone, so not m->cancel */
	struct job *qnext;            /* the loader's queue, while it waits for a turn */
	int has_turn;                 /* it holds one of the max_loads turns */
	int nthreads;
	uint64_t cap;                 /* the buffer's capacity: the worst case */

	/* Shared by the encode workers. */
	atomic_size_t next_tensor;
	pthread_mutex_t lock;         /* cursor */
	uint64_t cursor;              /* where the next tensor goes */
	struct par_err err;
	pthread_mutex_t note_lock;    /* the two below */
	unsigned pct;                 /* the last progress percent announced */
	double noted;                 /* when */
};

struct loader {
	struct uwd *d;
	pthread_mutex_t lock;
	pthread_cond_t turn;          /* a running load ended: a queued one may go */
	struct job *jobs;
	struct job *queue;            /* waiting for a turn, oldest first */
	unsigned admitted;            /* loads not yet finished: running or queued */
	unsigned running;             /* at most max_loads */
	int stopping;
};

static uint64_t align_up(uint64_t x)
{
	return (x + RES_ALIGN - 1) & ~(uint64_t)(RES_ALIGN - 1);
}

static int grow(void **p, size_t *cap, size_t n)
{
	if (n <= *cap && *p)
		return 0;
	void *q = realloc(*p, n ? n : 1);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
	return 0;
}

/* STATUS= at most once a second (and at 100%): sd_notify blocks while the
 * manager's queue is full, and a load must not wait on it. */
static void announce(struct job *j)
{
	struct model *m = j->m;
	uint64_t done = atomic_load(&m->loaded_bytes);
	unsigned pct = m->raw_bytes ? (unsigned)(done * 100 / m->raw_bytes) : 100;
	double now = uwd_now();
	pthread_mutex_lock(&j->note_lock);
	int due = pct != j->pct && (pct == 100 || now - j->noted >= 1.0);
	if (due) {
		j->pct = pct;
		j->noted = now;
	}
	pthread_mutex_unlock(&j->note_lock);
	if (due)
		sd_notifyf(0, "STATUS=loading %s: %u%%", m->name, pct);
}

/* Read, plan and encode tensor i, then write it at the next free offset. */
static int encode_one(struct job *j, size_t i, void **raw, size_t *raw_cap, void **enc,
		      size_t *enc_cap, struct uwerr *e)
{
	struct model *m = j->m;
	const struct backend *be = j->ld->d->be;
	struct proto_tensor *t = &m->t[i];
	struct uw_layout l;
	if (grow(raw, raw_cap, t->raw_bytes))
		return uwerr_set(e, ENOMEM, "tensor %s: %llu bytes: out of memory", t->name,
				 (unsigned long long)t->raw_bytes);
	int rc = source_read(j->src, i, *raw, e);
	if (!rc)
		rc = res_plan((int)t->dtype, (int)t->ndim, t->shape, *raw, t->raw_bytes, &l, e);
	if (!rc && grow(enc, enc_cap, l.nbytes))
		rc = uwerr_set(e, ENOMEM, "%llu bytes: out of memory", (unsigned long long)l.nbytes);
	if (!rc)
		rc = res_encode(&l, *raw, t->raw_bytes, *enc, e);
	if (rc)
		return uwerr_prefix(e, "tensor %s", t->name);

	/* Tensors go where the cursor is when they are done: the layout
	 * depends on timing, the bytes of each tensor do not. */
	pthread_mutex_lock(&j->lock);
	uint64_t off = j->cursor, end = align_up(off + l.nbytes);
	j->cursor = end;
	pthread_mutex_unlock(&j->lock);
	if (end > j->cap || end < off)
		return uwerr_set(e, EOVERFLOW, "tensor %s: resident form (%llu bytes) larger than "
				 "its raw size", t->name, (unsigned long long)l.nbytes);
	if (l.nbytes && (rc = be->ops->buf_write(m->bufs[0], off, *enc, l.nbytes, e)))
		return uwerr_prefix(e, "tensor %s", t->name);
	t->buf = 0;
	t->offset = off;
	t->layout = l;
	atomic_fetch_add(&m->loaded_bytes, t->raw_bytes);
	announce(j);
	return 0;
}

static int canceled(struct job *j)
{
	return atomic_load(&j->stop) || atomic_load(&j->m->cancel);
}

/* A par_for range of one: each worker pulls tensors until none is left. */
static void encode_worker(void *ctx, size_t begin, size_t end)
{
	struct job *j = ctx;
	void *raw = NULL, *enc = NULL;
	size_t raw_cap = 0, enc_cap = 0;
	struct uwerr e = {0};
	while (!par_failed(&j->err) && !canceled(j)) {
		size_t i = atomic_fetch_add(&j->next_tensor, 1);
		if (i >= j->m->ntensors)
			break;
		if (encode_one(j, i, &raw, &raw_cap, &enc, &enc_cap, &e)) {
			par_fail(&j->err, &e);
			break;
		}
	}
	free(raw);
	free(enc);
}

/* The tensor table and the buffer, before the workers fill them. */
static int job_prepare(struct job *j, struct uwerr *e)
{
	struct model *m = j->m;
	const struct backend *be = j->ld->d->be;
	m->t = calloc(m->ntensors, sizeof(*m->t));
	m->bufs = calloc(1, sizeof(*m->bufs));
	m->buf_size = calloc(1, sizeof(*m->buf_size));
	if (!m->t || !m->bufs || !m->buf_size)
		return uwerr_set(e, ENOMEM, "%zu tensors: out of memory", m->ntensors);
	for (size_t i = 0; i < m->ntensors; i++) {
		const struct src_tensor *s = source_tensor(j->src, i);
		struct proto_tensor *t = &m->t[i];
		if (!(t->name = strdup(s->name)))
			return uwerr_set(e, ENOMEM, "tensor names: out of memory");
		t->dtype = (uint32_t)s->dtype;
		t->ndim = (uint32_t)s->ndim;
		memcpy(t->shape, s->shape, sizeof(t->shape));
		t->raw_bytes = s->raw_bytes;
	}
	int rc = be->ops->buf_create(j->ld->d->be, m->dev, m->name, j->cap, &m->bufs[0], e);
	if (!rc)
		m->nbufs = 1;
	return rc;
}

/* Wait (queued) until it is the oldest waiting and fewer than max_loads
 * run, or until it is canceled; nothing is allocated for it before. */
static void wait_turn(struct job *j)
{
	struct loader *ld = j->ld;
	pthread_mutex_lock(&ld->lock);
	while (!canceled(j) && (ld->running >= ld->d->cfg->max_loads || ld->queue != j)) {
		/* Timed: an evict --force sets m->cancel without telling us. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&ld->turn, &ld->lock, &ts);
	}
	for (struct job **p = &ld->queue; *p; p = &(*p)->qnext)
		if (*p == j) {
			*p = j->qnext;
			break;
		}
	j->has_turn = !canceled(j);
	ld->running += (unsigned)j->has_turn;
	pthread_cond_broadcast(&ld->turn);   /* the queue's head changed */
	pthread_mutex_unlock(&ld->lock);
}

static void end_turn(struct job *j)
{
	struct loader *ld = j->ld;
	pthread_mutex_lock(&ld->lock);
	ld->running -= (unsigned)j->has_turn;
	ld->admitted--;
	pthread_cond_broadcast(&ld->turn);
	pthread_mutex_unlock(&ld->lock);
}

static void *job_main(void *arg)
{
	struct job *j = arg;
	struct model *m = j->m;
	struct uwd *d = j->ld->d;
	struct uwerr e = {0};
	wait_turn(j);
	/* Canceled while queued: nothing to prepare, and the workers find
	 * nothing to do; the check after them reports it. */
	int rc = j->has_turn ? job_prepare(j, &e) : 0;
	if (!rc) {
		par_for((size_t)j->nthreads, j->nthreads, encode_worker, j);
		if (par_failed(&j->err)) {
			e = j->err.e;
			rc = -e.code;
		} else if (canceled(j)) {
			rc = uwerr_set(&e, ECANCELED, atomic_load(&j->stop) ?
				       "canceled: unweightd is shutting down" : "canceled by evict");
		}
	}
	if (!rc && !(rc = d->be->ops->buf_finish(m->bufs[0], j->cursor, &e)))
		m->buf_size[0] = j->cursor;
	if (!rc && registry_loaded(d->reg, m, j->cursor) == 0) {
		double s = uwd_now() - m->load_start;
		log_notice("load %s: ready: %zu tensors, %llu bytes raw, %llu resident (%.3f), "
			   "%.3f s, %.1f MB/s", m->name, m->ntensors,
			   (unsigned long long)m->raw_bytes, (unsigned long long)j->cursor,
			   m->raw_bytes ? (double)j->cursor / (double)m->raw_bytes : 0.0, s,
			   s > 0 ? (double)m->raw_bytes / 1e6 / s : 0.0);
		sd_notifyf(0, "STATUS=loaded %s", m->name);
	} else if (rc) {
		uwerr_prefix(&e, "load %s", m->name);
		log_msg(rc == -ECANCELED ? LOG_NOTICE : LOG_ERR, "%s", e.msg);
		sd_notifyf(0, "STATUS=load of %s failed", m->name);
		registry_remove(d->reg, m, e.msg);
	} else {
		log_notice("load %s: evicted while it loaded", m->name);
	}
	registry_unref(d->reg, m);
	source_close(j->src);
	j->src = NULL;
	end_turn(j);
	atomic_store(&j->done, 1);
	uwd_wake(d);
	return NULL;
}

int loader_new(struct uwd *d, struct loader **out, struct uwerr *e)
{
	struct loader *ld = calloc(1, sizeof(*ld));
	if (!ld)
		return uwerr_set(e, ENOMEM, "loader: out of memory");
	ld->d = d;
	pthread_mutex_init(&ld->lock, NULL);
	pthread_cond_init(&ld->turn, NULL);
	*out = ld;
	return 0;
}

/* The worst case the buffer must hold: every tensor raw, each aligned. */
static int worst_case(const struct source *src, uint64_t *cap, struct uwerr *e)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < source_count(src); i++) {
		uint64_t b = source_tensor(src, i)->raw_bytes;
		if (b > UINT64_MAX - RES_ALIGN || __builtin_add_overflow(sum, align_up(b), &sum))
			return uwerr_set(e, EOVERFLOW, "total size overflows");
	}
	*cap = sum;
	return 0;
}

static void job_free(struct job *j)
{
	pthread_mutex_destroy(&j->lock);
	pthread_mutex_destroy(&j->note_lock);
	free(j);
}

/* -ENODEV, naming the device asked for and every one there is. */
static int no_device(const struct backend *be, const struct msg_load *q, struct uwerr *e)
{
	char have[512] = "";
	size_t n = 0;
	for (int i = 0; i < be->ndev && n < sizeof(have); i++) {
		int w = snprintf(have + n, sizeof(have) - n, "%s%d = %s%s%s%s", i ? ", " : "", i,
				 be->dev[i].name, be->dev[i].uuid[0] ? " (" : "",
				 be->dev[i].uuid, be->dev[i].uuid[0] ? ")" : "");
		n += w > 0 ? (size_t)w : 0;
	}
	return uwerr_set(e, ENODEV, "load %s: backend %s has no device '%s' (it has %s)",
			 q->name, be->ops->name, q->device, have);
}

int loader_start(struct loader *ld, const struct msg_load *q, const char *who,
		 struct uwerr *e)
{
	struct uwd *d = ld->d;
	struct job *j = NULL;
	struct source *src = NULL;
	int rc;
	if (!proto_name_valid(q->name))
		return uwerr_set(e, EINVAL, "load: '%s' is not a valid model name (1 to %d of "
				 "A-Z a-z 0-9 . _ -, not . or ..)", q->name, PROTO_MAX_NAME);
	if (!q->npaths)
		return uwerr_set(e, EINVAL, "load %s: no paths given", q->name);
	int dev = backend_find_device(d->be, q->device);
	if (dev < 0)
		return no_device(d->be, q, e);
	if (registry_has(d->reg, q->name))
		return uwerr_set(e, EEXIST, "load %s: a model of that name exists", q->name);
	/* From here on, messages get the "load NAME: " prefix at fail. */

	/* Every file it opens, each shard an index names too, goes through
	 * the allow_dir opener. */
	if ((rc = source_open_via(allow_opener(d->allow), (const char *const *)q->paths,
				  q->npaths, &src, e)))
		goto fail;
	if (!source_count(src)) {
		rc = uwerr_set(e, EINVAL, "%s: holds no tensors", q->paths[0]);
		goto fail;
	}
	if (!(j = calloc(1, sizeof(*j)))) {
		rc = uwerr_set(e, ENOMEM, "out of memory");
		goto fail;
	}
	pthread_mutex_init(&j->lock, NULL);
	pthread_mutex_init(&j->note_lock, NULL);
	j->pct = 101;   /* none announced yet */
	j->noted = -1e9;
	j->ld = ld;
	j->src = src;
	if ((rc = worst_case(src, &j->cap, e)))
		goto fail;
	size_t n = source_count(src);
	uint64_t raw = source_raw_total(src);
	int ncpu = par_threads(0);
	unsigned nt = d->cfg->load_threads ? d->cfg->load_threads
		      : ncpu < MAX_LOAD_THREADS ? (unsigned)ncpu : MAX_LOAD_THREADS;
	int nth = j->nthreads = (int)(nt < n ? nt : n);
	/* The workers split the tensors; a bundle's decoder splits what is left. */
	int per = ncpu / nth;
	source_set_threads(src, per > 1 ? per : 1);
	if ((rc = registry_add(d->reg, q->name, dev, n, raw, j->cap, &j->m, e)))
		goto fail;
	pthread_mutex_lock(&ld->lock);
	/* Once the thread runs, j, its model and src are its own. */
	const struct uwd_config *cfg = d->cfg;
	if (ld->stopping)
		rc = uwerr_set(e, ESHUTDOWN, "unweightd is shutting down");
	else if (ld->admitted >= cfg->max_loads + cfg->load_queue)
		rc = uwerr_set(e, EAGAIN, "the load queue is full: %u loads running (max_loads) "
			       "and %u waiting (load_queue); try again later", ld->running,
			       ld->admitted - ld->running);
	else if ((rc = pthread_create(&j->th, NULL, job_main, j)))
		rc = uwerr_set(e, rc, "thread: %s", strerror(rc));
	if (!rc) {
		ld->admitted++;
		struct job **tail = &ld->queue;
		while (*tail)
			tail = &(*tail)->qnext;
		*tail = j;
		log_notice("load %s: accepted from %s: %zu tensors, %llu bytes, %d threads",
			   q->name, who, n, (unsigned long long)raw, nth);
		j->next = ld->jobs;
		ld->jobs = j;
	}
	pthread_mutex_unlock(&ld->lock);
	if (rc) {
		registry_remove(d->reg, j->m, NULL);
		registry_unref(d->reg, j->m);
		goto fail;
	}
	return 0;
fail:
	if (j)
		job_free(j);
	if (src)
		source_close(src);
	return uwerr_prefix(e, "load %s", q->name);
}

void loader_counts(struct loader *ld, unsigned *running, unsigned *queued)
{
	pthread_mutex_lock(&ld->lock);
	*running = ld->running;
	*queued = ld->admitted - ld->running;
	pthread_mutex_unlock(&ld->lock);
}

void loader_reap(struct loader *ld)
{
	pthread_mutex_lock(&ld->lock);
	struct job *dead = NULL;
	for (struct job **p = &ld->jobs; *p; ) {
		struct job *j = *p;
		if (atomic_load(&j->done)) {
			*p = j->next;
			j->next = dead;
			dead = j;
		} else {
			p = &j->next;
		}
	}
	pthread_mutex_unlock(&ld->lock);
	while (dead) {
		struct job *j = dead;
		dead = j->next;
		pthread_join(j->th, NULL);
		job_free(j);
	}
}

void loader_cancel_all(struct loader *ld)
{
	pthread_mutex_lock(&ld->lock);
	ld->stopping = 1;
	for (struct job *j = ld->jobs; j; j = j->next)
		atomic_store(&j->stop, 1);
	pthread_mutex_unlock(&ld->lock);
}

void loader_free(struct loader *ld)
{
	if (!ld)
		return;
	loader_cancel_all(ld);
	pthread_mutex_lock(&ld->lock);
	struct job *jobs = ld->jobs;
	ld->jobs = NULL;
	pthread_mutex_unlock(&ld->lock);
	while (jobs) {
		struct job *j = jobs;
		jobs = j->next;
		pthread_join(j->th, NULL);
		job_free(j);
	}
	pthread_mutex_destroy(&ld->lock);
	pthread_cond_destroy(&ld->turn);
	free(ld);
}
