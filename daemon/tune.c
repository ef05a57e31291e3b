/* tune: the tuner's queue, thread, requests and stats (see tune.h). */
#include "config.h"

#include "daemon/tune.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/backend.h"
#include "daemon/conf.h"
#include "daemon/log.h"
#include "daemon/registry.h"
#include "daemon/uwd.h"
#include "kernels/tunecache.h"
#include "unweight.h"

#define MAX_QUEUE 256          /* models waiting; more requests are refused */

/* One model to tune (name NULL: a request that found none ready). */
struct titem {
	struct titem *next;
	char *name;
	int force;
	uint64_t job;
};

struct tuner {
	struct uwd *d;
	int gpu;                   /* the backend's buffers are on a GPU: kernels run */
	pthread_t th;
	int started;
	int stop;                  /* __atomic: shutting down */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct titem *head, **tail;
	unsigned nqueued;
	uint64_t next_job, done;   /* the last job numbered, the last finished */
	char *running;             /* the model being tuned, or NULL */
	struct tune_progress prog; /* of the model being tuned */
	struct {                   /* the job last worked on, for stats */
		uint64_t job;
		unsigned models, entries, rejected;
		double seconds;
		char error[UWERR_MSG_MAX];
	} last;
};

static const char *cache_dir(const struct tuner *t)
{
	return tune_dir(t->d->cfg->tune_dir);
}

/* Tune one model; the totals go to t->last. */
static void run_item(struct tuner *t, const struct titem *it)
{
	struct uwerr e = {0};
	struct model *m;
	const double t0 = uwd_now();
	const char *dir = cache_dir(t);
	int rc = dir ? 0 : uwerr_set(&e, EINVAL, "no tune cache directory (UW_TUNE_DIR is empty)");
	if (!rc && !(rc = registry_get(t->d->reg, it->name, &m, &e))) {
		rc = tune_gpu_model(t->d, m, dir, it->force, &t->stop, &t->prog, &e);
		registry_unref(t->d->reg, m);
	}
	const double s = uwd_now() - t0;
	const unsigned entries = atomic_load(&t->prog.entries);
	if (rc < 0)
		log_warning("tune %s: %s (%u entries written in %.1f s)", it->name, e.msg, entries, s);
	else
		log_notice("tune %s: %u shapes, %u entries written to %s/%s in %.1f s", it->name,
			   atomic_load(&t->prog.shapes_total), entries, dir, TUNE_FILE_NAME, s);
	pthread_mutex_lock(&t->lock);
	t->last.models++;
	t->last.entries += entries;
	t->last.rejected += atomic_load(&t->prog.rejected);
	t->last.seconds += s;
	if (rc < 0 && !t->last.error[0])
		snprintf(t->last.error, sizeof(t->last.error), "%.128s: %.370s", it->name, e.msg);
	pthread_mutex_unlock(&t->lock);
}

static void *tuner_main(void *arg)
{
	struct tuner *t = arg;
	pthread_mutex_lock(&t->lock);
	for (;;) {
		while (!__atomic_load_n(&t->stop, __ATOMIC_RELAXED) && !t->head)
			pthread_cond_wait(&t->wake, &t->lock);
		if (__atomic_load_n(&t->stop, __ATOMIC_RELAXED))
			break;
		struct titem *it = t->head;
		if (!(t->head = it->next))
			t->tail = &t->head;
		t->nqueued--;
		if (it->job != t->last.job) {
			memset(&t->last, 0, sizeof(t->last));
			t->last.job = it->job;
		}
		t->running = it->name;
		atomic_store(&t->prog.shapes_total, 0);
		atomic_store(&t->prog.shapes_done, 0);
		atomic_store(&t->prog.entries, 0);
		atomic_store(&t->prog.rejected, 0);
		pthread_mutex_unlock(&t->lock);
		if (it->name)
			run_item(t, it);
		pthread_mutex_lock(&t->lock);
		t->running = NULL;
		/* a request's items are queued together: it is done after its last */
		if (!t->head || t->head->job != it->job)
			t->done = it->job;
		free(it->name);
		free(it);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

/* tune = on-load: a load has finished. */
static void on_ready(void *arg, const char *name)
{
	struct uwerr e = {0};
	if (tuner_request(arg, name, 0, "tune = on-load", NULL, &e) < 0)
		log_warning("tune %s after its load: %s", name, e.msg);
}

int tuner_new(struct uwd *d, struct tuner **out, struct uwerr *e)
{
	struct tuner *t = calloc(1, sizeof(*t));
	if (!t)
		return uwerr_set(e, ENOMEM, "tuner: out of memory");
	t->d = d;
	t->tail = &t->head;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->wake, NULL);
	*out = t;
	if (!(t->gpu = d->be->ops->buf_dev_addr != NULL))
		return 0;
	int rc = -pthread_create(&t->th, NULL, tuner_main, t);
	if (rc) {
		uwerr_set(e, -rc, "tuner: thread: %s", strerror(-rc));
		tuner_free(t);
		*out = NULL;
		return rc;
	}
	t->started = 1;
	if (d->cfg->tune_on_load)
		registry_on_ready(d->reg, on_ready, t);
	return 0;
}

void tuner_free(struct tuner *t)
{
	if (!t)
		return;
	registry_on_ready(t->d->reg, NULL, NULL);
	if (t->started) {
		pthread_mutex_lock(&t->lock);
		__atomic_store_n(&t->stop, 1, __ATOMIC_RELAXED);
		pthread_cond_signal(&t->wake);
		pthread_mutex_unlock(&t->lock);
		pthread_join(t->th, NULL);
	}
	while (t->head) {
		struct titem *it = t->head;
		t->head = it->next;
		free(it->name);
		free(it);
	}
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->wake);
	free(t);
}

/* The names of the models to tune: name, or every ready one. */
static int pick_models(struct tuner *t, const char *name, char ***names, size_t *n,
		       struct uwerr *e)
{
	struct registry_snap s;
	struct model *m;
	*names = NULL;
	*n = 0;
	if (name && *name) {
		int rc = registry_get(t->d->reg, name, &m, e);
		if (rc)
			return rc;
		registry_unref(t->d->reg, m);
		if (!(*names = calloc(1, sizeof(char *))) || !((*names)[0] = strdup(name))) {
			free(*names);
			return uwerr_set(e, ENOMEM, "out of memory");
		}
		*n = 1;
		return 0;
	}
	int rc = registry_snapshot(t->d->reg, NULL, &s, e);
	if (rc)
		return rc;
	if (s.n && !(*names = calloc(s.n, sizeof(char *))))
		rc = uwerr_set(e, ENOMEM, "out of memory");
	for (size_t i = 0; !rc && i < s.n; i++) {
		if (strcmp(s.m[i].state, "ready"))
			continue;
		if (!((*names)[*n] = strdup(s.m[i].name)))
			rc = uwerr_set(e, ENOMEM, "out of memory");
		else
			(*n)++;
	}
	registry_snap_free(&s);
	return rc;
}

int tuner_request(struct tuner *t, const char *name, unsigned flags, const char *who,
		  uint64_t *job, struct uwerr *e)
{
	const char *what = name && *name ? name : "(every ready model)";
	if (!t->gpu)
		return uwerr_set(e, EOPNOTSUPP, "tune %s: nothing to tune: the %s backend runs no "
				 "GPU kernels (the tuner times uw_matmul on a GPU)", what,
				 t->d->be->ops->name);
	const char *dir = cache_dir(t);
	if (!dir)
		return uwerr_set(e, EINVAL, "tune %s: no tune cache directory: UW_TUNE_DIR is set "
				 "and empty and tune_dir is not set (unweightd.conf(5))", what);
	if (access(dir, W_OK) < 0)
		return uwerr_set(e, errno, "tune %s: the tune cache directory %s: %s (tune_dir, "
				 "unweightd.conf(5))", what, dir, strerror(errno));
	char **names;
	size_t n;
	int rc = pick_models(t, name, &names, &n, e);
	if (rc)
		return name && *name ? uwerr_prefix(e, "tune %s", name) : rc;
	struct titem *items = NULL, **tail = &items;
	for (size_t i = 0; !rc && i < (n ? n : 1); i++) {
		struct titem *it = calloc(1, sizeof(*it));
		if (!it) {
			rc = uwerr_set(e, ENOMEM, "tune: out of memory");
			break;
		}
		if (n) {
			it->name = names[i];
			names[i] = NULL;
		}
		it->force = (flags & UW_TUNE_FORCE) != 0;
		*tail = it;
		tail = &it->next;
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	pthread_mutex_lock(&t->lock);
	if (!rc && t->nqueued + (n ? n : 1) > MAX_QUEUE)
		rc = uwerr_set(e, EAGAIN, "tune %s: %u models wait for the tuner already (at most %d)",
			       what, t->nqueued, MAX_QUEUE);
	if (!rc) {
		uint64_t j = ++t->next_job;
		for (struct titem *it = items; it; it = it->next)
			it->job = j;
		*t->tail = items;
		t->tail = tail;
		t->nqueued += (unsigned)(n ? n : 1);
		items = NULL;
		if (job)
			*job = j;
		pthread_cond_signal(&t->wake);
		log_info("tune %s%s: job %llu (%zu model%s), by %s", what,
			 flags & UW_TUNE_FORCE ? " (force)" : "", (unsigned long long)j, n,
			 n == 1 ? "" : "s", who);
	}
	pthread_mutex_unlock(&t->lock);
	while (items) {
		struct titem *it = items;
		items = it->next;
		free(it->name);
		free(it);
	}
	return rc;
}

void tuner_stats(struct tuner *t, struct strbuf *b)
{
	const char *dir = cache_dir(t);
	sb_printf(b, ",\"tune\":{\"on_load\":%s,\"dir\":", t->d->cfg->tune_on_load ? "true" : "false");
	sb_json_str(b, dir ? dir : "", dir ? strlen(dir) : 0);
	pthread_mutex_lock(&t->lock);
	const char *state = !t->gpu ? "unavailable" : t->running || t->head ? "running" : "idle";
	sb_printf(b, ",\"state\":\"%s\",\"job\":%llu,\"done\":%llu,\"queued\":%u,\"model\":", state,
		  (unsigned long long)t->next_job, (unsigned long long)t->done, t->nqueued);
	sb_json_str(b, t->running ? t->running : "", t->running ? strlen(t->running) : 0);
	sb_printf(b, ",\"shapes_done\":%u,\"shapes_total\":%u,\"last\":{\"job\":%llu,\"models\":%u,"
		  "\"entries\":%u,\"rejected\":%u,\"seconds\":%.3f,\"error\":",
		  atomic_load(&t->prog.shapes_done), atomic_load(&t->prog.shapes_total),
		  (unsigned long long)t->last.job, t->last.models, t->last.entries,
		  t->last.rejected, t->last.seconds);
	sb_json_str(b, t->last.error, strlen(t->last.error));
	pthread_mutex_unlock(&t->lock);
	sb_append(b, "}}", 2);
}
