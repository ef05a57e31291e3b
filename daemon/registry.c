/* registry: models, budgets and leases (see registry.h). */
#include "config.h"

#include "daemon/registry.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "daemon/uwd.h"

#define MAX_FAILURES 32   /* failed loads remembered for stats */

struct lease {
	struct lease *next;
	uint64_t id;
	const void *owner;
	struct model *m;
};

struct failure {
	struct failure *next;
	char *name, *error;
};

struct registry {
	pthread_mutex_t lock;
	struct backend *be;
	struct model *models;
	struct lease *leases;
	struct failure *failures;   /* newest first */
	uint64_t used[BACKEND_MAX_DEVICES];
	uint64_t next_lease;
	void (*on_ready)(void *arg, const char *name);
	void *on_ready_arg;
};

static void model_destroy(struct registry *r, struct model *m)
{
	for (size_t i = 0; i < m->ntensors && m->t; i++)
		free(m->t[i].name);
	free(m->t);
	for (size_t i = 0; i < m->nbufs; i++)
		r->be->ops->buf_destroy(m->bufs[i]);
	free(m->bufs);
	free(m->buf_size);
	free(m->name);
	free(m);
}

static void failure_free(struct failure *f)
{
	free(f->name);
	free(f->error);
	free(f);
}

int registry_new(struct backend *be, struct registry **out, struct uwerr *e)
{
	struct registry *r = calloc(1, sizeof(*r));
	if (!r)
		return uwerr_set(e, ENOMEM, "registry: out of memory");
	pthread_mutex_init(&r->lock, NULL);
	r->be = be;
	*out = r;
	return 0;
}

void registry_free(struct registry *r)
{
	if (!r)
		return;
	while (r->leases) {
		struct lease *l = r->leases;
		r->leases = l->next;
		free(l);
	}
	while (r->models) {
		struct model *m = r->models;
		r->models = m->next;
		model_destroy(r, m);
	}
	while (r->failures) {
		struct failure *f = r->failures;
		r->failures = f->next;
		failure_free(f);
	}
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static struct model *find_listed(struct registry *r, const char *name)
{
	for (struct model *m = r->models; m; m = m->next)
		if (m->listed && strcmp(m->name, name) == 0)
			return m;
	return NULL;
}

static struct model *find_unlisted(struct registry *r, const char *name)
{
	for (struct model *m = r->models; m; m = m->next)
		if (!m->listed && strcmp(m->name, name) == 0)
			return m;
	return NULL;
}

static struct failure **find_failure(struct registry *r, const char *name)
{
	struct failure **p = &r->failures;
	while (*p && strcmp((*p)->name, name))
		p = &(*p)->next;
	return p;
}

static void forget_failure(struct registry *r, const char *name)
{
	struct failure **p = find_failure(r, name);
	if (*p) {
		struct failure *f = *p;
		*p = f->next;
		failure_free(f);
	}
}

/* Drop one reference, under the lock. Returns the model when that was the
 * last one: unlinked, its budget released, for the caller to destroy once
 * the lock is dropped. */
static struct model *unref_locked(struct registry *r, struct model *m)
{
	if (--m->refs)
		return NULL;
	for (struct model **p = &r->models; *p; p = &(*p)->next)
		if (*p == m) {
			*p = m->next;
			break;
		}
	r->used[m->dev] -= m->charged;
	return m;
}

static void destroy_released(struct registry *r, struct model *m)
{
	if (!m)
		return;
	log_info("model %s: memory released (%llu bytes)", m->name,
		 (unsigned long long)m->charged);
	model_destroy(r, m);
}

static unsigned pct(const struct model *m)
{
	uint64_t done = atomic_load(&m->loaded_bytes);
	return m->raw_bytes ? (unsigned)(done * 100 / m->raw_bytes) : 0;
}

int registry_has(struct registry *r, const char *name)
{
	pthread_mutex_lock(&r->lock);
	int has = find_listed(r, name) != NULL;
	pthread_mutex_unlock(&r->lock);
	return has;
}

int registry_add(struct registry *r, const char *name, int dev, size_t ntensors,
		 uint64_t raw_bytes, uint64_t charge, struct model **out, struct uwerr *e)
{
	struct model *m = calloc(1, sizeof(*m));
	if (!m || !(m->name = strdup(name))) {
		free(m);
		return uwerr_set(e, ENOMEM, "load %s: out of memory", name);
	}
	m->dev = dev;
	m->state = MODEL_LOADING;
	m->listed = 1;
	m->refs = 2;     /* the name table and the loader */
	m->charged = charge;
	m->ntensors = ntensors;
	m->raw_bytes = raw_bytes;
	m->load_start = uwd_now();

	pthread_mutex_lock(&r->lock);
	const struct backend_device *d = &r->be->dev[dev];
	int rc = 0;
	struct model *old = find_listed(r, name);
	if (old) {
		rc = uwerr_set(e, EEXIST, "a model of that name exists (%s)",
			       old->state == MODEL_LOADING ? "loading" : "ready");
	} else if (charge > d->budget || r->used[dev] > d->budget - charge) {
		rc = uwerr_set(e, ENOSPC,
			       "needs up to %llu bytes on device %s (its raw size) "
			       "but only %llu of its budget of %llu are free",
			       (unsigned long long)charge, d->name,
			       (unsigned long long)(d->budget > r->used[dev] ? d->budget - r->used[dev] : 0),
			       (unsigned long long)d->budget);
	} else {
		r->used[dev] += charge;
		forget_failure(r, name);
		m->next = r->models;
		r->models = m;
	}
	pthread_mutex_unlock(&r->lock);
	if (rc) {
		free(m->name);
		free(m);
		return rc;
	}
	*out = m;
	return 0;
}

int registry_adopt(struct registry *r, struct model *m, struct uwerr *e)
{
	m->state = MODEL_READY;
	m->listed = 1;
	m->refs = 1;     /* the name table */
	m->charged = m->resident_bytes;
	m->load_start = uwd_now();
	atomic_store(&m->loaded_bytes, m->raw_bytes);
	pthread_mutex_lock(&r->lock);
	const struct backend_device *d = &r->be->dev[m->dev];
	int rc = 0;
	if (find_listed(r, m->name)) {
		rc = uwerr_set(e, EEXIST, "a model of that name exists");
	} else if (m->charged > d->budget || r->used[m->dev] > d->budget - m->charged) {
		rc = uwerr_set(e, ENOSPC, "%llu bytes do not fit in what is left of device %s's "
			       "budget of %llu", (unsigned long long)m->charged, d->name,
			       (unsigned long long)d->budget);
	} else {
		r->used[m->dev] += m->charged;
		m->next = r->models;
		r->models = m;
	}
	pthread_mutex_unlock(&r->lock);
	if (rc)
		model_destroy(r, m);
	return rc;
}

int registry_loaded(struct registry *r, struct model *m, uint64_t resident_bytes)
{
	int rc = 0;
	pthread_mutex_lock(&r->lock);
	if (!m->listed) {
		rc = -ECANCELED;
	} else {
		m->state = MODEL_READY;
		m->resident_bytes = resident_bytes;
		m->load_seconds = uwd_now() - m->load_start;
		/* From the worst case down to what it really takes. */
		r->used[m->dev] -= m->charged - m->resident_bytes;
		m->charged = m->resident_bytes;
	}
	void (*fn)(void *, const char *) = r->on_ready;
	void *arg = r->on_ready_arg;
	pthread_mutex_unlock(&r->lock);
	if (!rc && fn)
		fn(arg, m->name);   /* the loader's reference keeps m */
	return rc;
}

void registry_on_ready(struct registry *r, void (*fn)(void *arg, const char *name), void *arg)
{
	pthread_mutex_lock(&r->lock);
	r->on_ready = fn;
	r->on_ready_arg = arg;
	pthread_mutex_unlock(&r->lock);
}

int registry_get(struct registry *r, const char *name, struct model **out, struct uwerr *e)
{
	int rc = 0;
	pthread_mutex_lock(&r->lock);
	struct model *m = find_listed(r, name);
	if (!m)
		rc = uwerr_set(e, ENOENT, "no model %s", name);
	else if (m->state != MODEL_READY)
		rc = uwerr_set(e, EAGAIN, "%s is still loading (%u%%)", name, pct(m));
	else {
		m->refs++;
		*out = m;
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

void registry_remove(struct registry *r, struct model *m, const char *error)
{
	struct failure *f = NULL;
	if (error && (f = calloc(1, sizeof(*f)))) {
		f->name = strdup(m->name);
		f->error = strdup(error);
		if (!f->name || !f->error) {
			failure_free(f);
			f = NULL;
		}
	}
	pthread_mutex_lock(&r->lock);
	struct model *dead = NULL;
	if (m->listed) {
		m->listed = 0;
		m->state = MODEL_EVICTING;
		dead = unref_locked(r, m);
		if (f) {
			forget_failure(r, m->name);
			f->next = r->failures;
			r->failures = f;
			f = NULL;
			size_t n = 0;
			for (struct failure **p = &r->failures; *p; ) {
				if (++n > MAX_FAILURES) {
					struct failure *old = *p;
					*p = old->next;
					failure_free(old);
				} else {
					p = &(*p)->next;
				}
			}
		}
	}
	pthread_mutex_unlock(&r->lock);
	if (f)
		failure_free(f);
	destroy_released(r, dead);
}

void registry_unref(struct registry *r, struct model *m)
{
	pthread_mutex_lock(&r->lock);
	struct model *dead = unref_locked(r, m);
	pthread_mutex_unlock(&r->lock);
	destroy_released(r, dead);
}

/* The ready model name, under the lock; NULL with e saying why, for op. */
static struct model *find_ready(struct registry *r, const char *op, const char *name,
				struct uwerr *e)
{
	struct model *m = find_listed(r, name);
	struct failure *f;
	if (!m) {
		if (find_unlisted(r, name))
			uwerr_set(e, ENOENT, "%s %s: the model is being evicted", op, name);
		else if ((f = *find_failure(r, name)))
			uwerr_set(e, ENOENT, "%s %s: its load failed: %s", op, name, f->error);
		else
			uwerr_set(e, ENOENT, "%s %s: no model of that name", op, name);
	} else if (m->state != MODEL_READY) {
		uwerr_set(e, EAGAIN, "%s %s: still loading (%u%%)", op, name, pct(m));
		m = NULL;
	}
	return m;
}

int registry_attach(struct registry *r, const char *name, const void *owner,
		    uint64_t *lease, struct model **out, struct uwerr *e)
{
	struct lease *l = calloc(1, sizeof(*l));
	if (!l)
		return uwerr_set(e, ENOMEM, "attach %s: out of memory", name);
	int rc = 0;
	pthread_mutex_lock(&r->lock);
	struct model *m = find_ready(r, "attach", name, e);
	if (!m) {
		rc = -e->code;
	} else {
		l->id = ++r->next_lease;
		l->owner = owner;
		l->m = m;
		l->next = r->leases;
		r->leases = l;
		m->refs++;
		m->leases++;
		m->attach_count++;
		*lease = l->id;
		*out = m;
	}
	pthread_mutex_unlock(&r->lock);
	if (rc)
		free(l);
	return rc;
}

/* Unlink lease *p, under the lock; returns the model if it died. */
static struct model *end_lease_locked(struct registry *r, struct lease **p)
{
	struct lease *l = *p;
	*p = l->next;
	l->m->leases--;
	struct model *dead = unref_locked(r, l->m);
	free(l);
	return dead;
}

int registry_detach(struct registry *r, const void *owner, uint64_t lease, struct uwerr *e)
{
	pthread_mutex_lock(&r->lock);
	struct lease **p = &r->leases;
	while (*p && !((*p)->id == lease && (*p)->owner == owner))
		p = &(*p)->next;
	struct model *dead = NULL;
	int found = *p != NULL;
	if (found)
		dead = end_lease_locked(r, p);
	pthread_mutex_unlock(&r->lock);
	destroy_released(r, dead);
	if (!found)
		return uwerr_set(e, ENOENT, "detach: no lease %llu on this connection",
				 (unsigned long long)lease);
	return 0;
}

unsigned registry_release(struct registry *r, const void *owner)
{
	for (unsigned n = 0;; n++) {
		pthread_mutex_lock(&r->lock);
		struct lease **p = &r->leases;
		while (*p && (*p)->owner != owner)
			p = &(*p)->next;
		if (!*p) {
			pthread_mutex_unlock(&r->lock);
			return n;
		}
		struct model *dead = end_lease_locked(r, p);
		pthread_mutex_unlock(&r->lock);
		destroy_released(r, dead);
	}
}

int registry_evict(struct registry *r, const char *name, unsigned flags, struct uwerr *e)
{
	int force = (flags & UW_EVICT_FORCE) != 0;
	int rc = 0;
	struct model *dead = NULL;
	pthread_mutex_lock(&r->lock);
	struct model *m = find_listed(r, name);
	struct failure **f;
	if (!m) {
		if (*(f = find_failure(r, name)))
			forget_failure(r, name);   /* evicting a failed load forgets it */
		else if ((m = find_unlisted(r, name)))
			rc = uwerr_set(e, ENOENT, "evict %s: already being evicted (%u leases left)",
				       name, m->leases);
		else
			rc = uwerr_set(e, ENOENT, "evict %s: no model of that name", name);
	} else if (m->state == MODEL_LOADING && !force) {
		rc = uwerr_set(e, EBUSY, "evict %s: still loading (%u%%); force cancels the load",
			       name, pct(m));
	} else if (m->leases && !force) {
		rc = uwerr_set(e, EBUSY, "evict %s: %u lease%s held by clients; force evicts it anyway "
			       "(its memory is released when the last lease ends)",
			       name, m->leases, m->leases == 1 ? " is" : "s are");
	} else {
		log_info("evict %s: %s%u lease%s left", name,
			 m->state == MODEL_LOADING ? "load canceled, " : "", m->leases,
			 m->leases == 1 ? "" : "s");
		atomic_store(&m->cancel, 1);
		m->listed = 0;
		m->state = MODEL_EVICTING;
		dead = unref_locked(r, m);
	}
	pthread_mutex_unlock(&r->lock);
	destroy_released(r, dead);
	return rc;
}

int registry_get_ready(struct registry *r, const char *name, struct model **out,
		       struct uwerr *e)
{
	pthread_mutex_lock(&r->lock);
	struct model *m = find_ready(r, "verify", name, e);
	if (m)
		m->refs++;
	pthread_mutex_unlock(&r->lock);
	*out = m;
	return m ? 0 : -e->code;
}

int registry_all_ready(struct registry *r, struct model ***out, size_t *n, struct uwerr *e)
{
	pthread_mutex_lock(&r->lock);
	size_t k = 0;
	for (struct model *m = r->models; m; m = m->next)
		k += m->listed && m->state == MODEL_READY;
	struct model **v = k ? calloc(k, sizeof(*v)) : NULL;
	*n = 0;
	for (struct model *m = r->models; v && m; m = m->next)
		if (m->listed && m->state == MODEL_READY) {
			m->refs++;
			v[(*n)++] = m;
		}
	pthread_mutex_unlock(&r->lock);
	*out = v;
	return k && !v ? uwerr_set(e, ENOMEM, "verify: out of memory") : 0;
}

void registry_verified(struct registry *r, struct model *m, const struct verify_record *v)
{
	pthread_mutex_lock(&r->lock);
	m->verify = *v;
	m->verify_count++;
	m->verify_failures += v->state != VERIFY_OK;
	pthread_mutex_unlock(&r->lock);
}

static const char *state_name(enum model_state s)
{
	switch (s) {
	case MODEL_LOADING: return "loading";
	case MODEL_READY: return "ready";
	default: return "evicting";
	}
}

int registry_snapshot(struct registry *r, const char *name, struct registry_snap *s,
		      struct uwerr *e)
{
	*s = (struct registry_snap){0};
	int rc = 0;
	pthread_mutex_lock(&r->lock);
	size_t n = 0;
	for (struct model *m = r->models; m; m = m->next)
		n += !name || strcmp(m->name, name) == 0;
	for (struct failure *f = r->failures; f; f = f->next)
		n += !name || strcmp(f->name, name) == 0;
	memcpy(s->used, r->used, sizeof(s->used));
	if (name && !n) {
		rc = uwerr_set(e, ENOENT, "stats %s: no model of that name", name);
		goto out;
	}
	if (n && !(s->m = calloc(n, sizeof(*s->m)))) {
		rc = uwerr_set(e, ENOMEM, "stats: out of memory");
		goto out;
	}
	double now = uwd_now();
	for (struct model *m = r->models; m; m = m->next) {
		if (name && strcmp(m->name, name))
			continue;
		struct model_snap *ms = &s->m[s->n++];
		*ms = (struct model_snap){
			.name = strdup(m->name), .state = state_name(m->state), .dev = m->dev,
			.tensors = m->ntensors, .raw_bytes = m->raw_bytes,
			.resident_bytes = m->resident_bytes,
			.loaded_bytes = atomic_load(&m->loaded_bytes),
			.load_seconds = m->state == MODEL_LOADING ? now - m->load_start : m->load_seconds,
			.leases = m->leases, .attach_count = m->attach_count,
			.verify = m->verify, .verify_count = m->verify_count,
			.verify_failures = m->verify_failures,
		};
		rc |= !ms->name;
		for (size_t k = 0; k < m->verify.nnames; k++)
			rc |= !(ms->bad[k] = strdup(m->t[m->verify.bad[k]].name));
	}
	for (struct failure *f = r->failures; f; f = f->next) {
		if (name && strcmp(f->name, name))
			continue;
		struct model_snap *ms = &s->m[s->n++];
		*ms = (struct model_snap){.name = strdup(f->name), .state = "failed",
					  .error = strdup(f->error)};
		rc |= !ms->name || !ms->error;
	}
	if (rc)
		rc = uwerr_set(e, ENOMEM, "stats: out of memory");
out:
	pthread_mutex_unlock(&r->lock);
	if (rc)
		registry_snap_free(s);
	return rc;
}

void registry_snap_free(struct registry_snap *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->m[i].name);
		free(s->m[i].error);
		for (size_t k = 0; k < s->m[i].verify.nnames; k++)
			free(s->m[i].bad[k]);
	}
	free(s->m);
	*s = (struct registry_snap){0};
}
