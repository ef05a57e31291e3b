/* loader: admission and the load threads (see loader.h). */
#include "config.h"

#include "daemon/loader.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include "common/parallel.h"
#include "daemon/allow.h"
#include "daemon/backend.h"
#include "daemon/conf.h"
#include "daemon/fdstore.h"
#include "daemon/filemap.h"
#include "daemon/log.h"
#include "daemon/registry.h"
#include "daemon/uwd.h"
#include "format/restcodec.h"
#include "format/source.h"
#include "format/uring_read.h"
#include "kernels/resident.h"

#define MAX_LOAD_THREADS 8
#define MAX_READERS 4                   /* parts of files read at once */
#define READ_WINDOW (1ull << 30)        /* bytes read ahead of the encoders */
#define UNIT_MIN UR_CHUNK               /* small tensors are read together up to this */
#define UNIT_GAP (1u << 20)             /* and across gaps this small between them */
#define POLL_NS 100000000L              /* waits look at cancel this often */
#define POOL_MAX 64                     /* read buffers kept for reuse */
#define HUGE_PAGE (2u << 20)
#define PIN_PIECE (64u << 20)           /* mapped files are registered in pieces this large */
#define POPULATORS 4                    /* threads faulting their pages in ahead of it */
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22           /* Linux 5.14; older C libraries lack the name */
#endif

struct job;

/* A run of tensors adjacent in one file, read as one range: the readers
 * make them, the encoders free them when their last tensor is done. */
struct unit {
	struct ur_read rd;
	struct job *j;
	uint64_t bytes;               /* of the window it holds */
	size_t first, count;          /* its tensors: order[first .. first+count) */
	atomic_size_t left;           /* tensors not encoded yet */
};

/* A tensor read and waiting for an encoder: its stored bytes inside u (or,
 * the files mapped, u and stored NULL: the encoder takes it from there). */
struct item {
	struct unit *u;
	size_t tensor;
	const unsigned char *stored;
};

/* A reader's share: tensors order[first .. end) of one file. */
struct part {
	size_t file, first, end;
};

/* A piece of a mapped file, as registered. */
struct piece {
	size_t file;
	uint64_t off, len;
};

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
	int gpu;                      /* the workers encode on the device */
	struct benc **encs;           /* per worker: its GPU encoder, or NULL (the CPU) */
	int encs_made;
	double enc_new_s, enc_free_s; /* making and freeing them */
	uint64_t cap;                 /* the buffer's capacity: the worst case */
	enum ur_mode io;
	const void **map;             /* per file: its filemap, when all are mapped */
	/* Mapped: one thread registers the files with the device, a piece at
	 * a time, in file order, ahead of the encoders. */
	pthread_t pinner;
	int pinning;                  /* the pinner was started */
	uint64_t *pinned;             /* per file: bytes registered from its start (qlock) */
	int *pin_over;                /* per file: no more will be (qlock) */
	double pin_s, unpin_s, pin_wait_s;
	/* Ahead of the pinner, threads fault the pieces' pages in. */
	struct piece *pieces;         /* every file's, in file order */
	size_t npieces;
	atomic_size_t pop_next;       /* the next piece to fault in */
	unsigned char *populated;     /* per piece: faulted in, or tried (qlock) */
	pthread_t populators[POPULATORS];
	int npopulators;
	double pop_s, pop_wait_s;     /* the last populator's end; the pinner's wait */

	/* The reading plan: tensors in file order, and each file's share. */
	struct src_extent *ext;       /* per tensor */
	size_t *order;                /* tensor indices by (file, offset) */
	size_t *file_first;           /* file f's tensors: order[file_first[f] .. file_first[f+1]) */
	struct part *parts;           /* what one reader takes at a time */
	size_t nparts;
	atomic_size_t next_part;
	int nreaders;

	/* Between the readers and the encoders, under qlock. */
	pthread_mutex_t qlock;
	pthread_cond_t qcond;
	struct item *items;           /* every tensor passes once: a plain array */
	size_t qhead, qtail;
	int readers_left;
	uint64_t inflight;            /* window bytes held by units */
	void **pool;                  /* read buffers to reuse (faulting in new ones costs) */
	size_t *pool_cap, npool;
	uint64_t pooled;              /* their bytes */

	/* Shared by the encode workers. */
	pthread_mutex_t lock;         /* cursor, gst */
	uint64_t cursor;              /* where the next tensor goes */
	struct encode_gpu_stats gst;  /* the GPU encoders' times, summed */
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

/* Scratch of at least n bytes; the old contents are not kept. Large ones
 * on huge pages: first touches fault far less. */
static int grow(void **p, size_t *cap, size_t n)
{
	if (n <= *cap && *p)
		return 0;
	free(*p);
	*p = NULL;
	*cap = 0;
	size_t align = n >= HUGE_PAGE ? HUGE_PAGE : 64;
	if (posix_memalign(p, align, n ? n : 1)) {
		*p = NULL;
		return -ENOMEM;
	}
	if (align == HUGE_PAGE)
		madvise(*p, n, MADV_HUGEPAGE);
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

static int canceled(struct job *j)
{
	return atomic_load(&j->stop) || atomic_load(&j->m->cancel);
}

/* Wait on the job's queue condition for a while: cancels come without a
 * signal, so every wait looks again at them. qlock held. */
static void qwait(struct job *j)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	t.tv_nsec += POLL_NS;
	if (t.tv_nsec >= 1000000000) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&j->qcond, &j->qlock, &t);
}

static void fail(struct job *j, const struct uwerr *e)
{
	par_fail(&j->err, e);
	pthread_mutex_lock(&j->qlock);
	pthread_cond_broadcast(&j->qcond);
	pthread_mutex_unlock(&j->qlock);
}

/* Free u and give its bytes back to the window, and its buffer to the
 * pool while the pool holds less than a window. */
static void unit_free(struct unit *u)
{
	struct job *j = u->j;
	pthread_mutex_lock(&j->qlock);
	j->inflight -= u->bytes;
	if (u->rd.buf && j->npool < POOL_MAX && j->pooled + u->rd.cap <= READ_WINDOW) {
		j->pool[j->npool] = u->rd.buf;
		j->pool_cap[j->npool++] = u->rd.cap;
		j->pooled += u->rd.cap;
		u->rd.buf = NULL;
	}
	pthread_cond_broadcast(&j->qcond);
	pthread_mutex_unlock(&j->qlock);
	free(u->rd.buf);
	free(u);
}

/* The smallest pooled buffer that holds span bytes, into u's read. */
static void pool_take(struct job *j, struct unit *u, size_t span)
{
	pthread_mutex_lock(&j->qlock);
	size_t best = j->npool;
	for (size_t i = 0; i < j->npool; i++)
		if (j->pool_cap[i] >= span && (best == j->npool || j->pool_cap[i] < j->pool_cap[best]))
			best = i;
	if (best < j->npool) {
		u->rd.buf = j->pool[best];
		u->rd.cap = j->pool_cap[best];
		j->pooled -= j->pool_cap[best];
		j->pool[best] = j->pool[--j->npool];
		j->pool_cap[best] = j->pool_cap[j->npool];
	}
	pthread_mutex_unlock(&j->qlock);
}

static void unit_put(struct unit *u)
{
	if (u && atomic_fetch_sub(&u->left, 1) == 1)
		unit_free(u);
}

/* The offset of a tensor's nbytes of resident bytes: tensors go where the
 * cursor is when they are done, so the layout depends on timing, the bytes
 * of each tensor do not. */
static int place(void *ctx, uint64_t nbytes, uint64_t *off, struct uwerr *e)
{
	struct job *j = ctx;
	pthread_mutex_lock(&j->lock);
	uint64_t at = j->cursor, end = align_up(at + nbytes);
	j->cursor = end;
	pthread_mutex_unlock(&j->lock);
	if (end > j->cap || end < at)
		return uwerr_set(e, EOVERFLOW, "resident form (%llu bytes) larger than its raw size",
				 (unsigned long long)nbytes);
	*off = at;
	return 0;
}

/* One worker's scratch: raw and enc for the CPU, gpu the backend's
 * encoder (NULL: encode on the CPU). */
struct worker {
	void *raw, *enc;
	size_t raw_cap, enc_cap;
	struct benc *gpu;
};

/* Wait until the pinner has registered x's bytes (1) or never will (0). */
static int pinned_wait(struct job *j, const struct src_extent *x)
{
	double t = uwd_now();
	pthread_mutex_lock(&j->qlock);
	while (j->pinned[x->file] < x->off + x->len && !j->pin_over[x->file] &&
	       !par_failed(&j->err) && !canceled(j))
		qwait(j);
	int ok = j->pinned[x->file] >= x->off + x->len;
	j->pin_wait_s += uwd_now() - t;
	pthread_mutex_unlock(&j->qlock);
	return ok;
}

/* The first n stored bytes of a mapped tensor, pread: the CPU reads no
 * mapping. */
static int extent_pread(struct job *j, const struct src_extent *x, void *buf, size_t n,
			struct uwerr *e)
{
	return filemap_pread(source_file_fd(j->src, x->file), source_file_path(j->src, x->file),
			     buf, n, x->off, e);
}

/* A mapped bundle's exphuf payload: its head pread into the worker's
 * scratch, and parsed. */
static int exphuf_head_pread(struct job *j, size_t i, size_t head, struct worker *w,
			     struct encode_input *in, struct rest_exphuf *x, struct uwerr *e)
{
	if (grow(&w->enc, &w->enc_cap, head))
		return uwerr_set(e, ENOMEM, "out of memory");
	int rc = extent_pread(j, &j->ext[i], w->enc, head, e);
	return rc ? rc : source_exphuf_parse(j->src, i, w->enc, x, &in->stored_crc, &in->raw_crc, e);
}

/* On the worker's GPU encoder: the stored bytes when they are raw or a
 * bundle's exphuf payload (decoded on the device), from the read buffer or
 * the files' mapping; 1 for the CPU to do it (other payloads, or no room
 * on the device now). Errors name the tensor. */
static int encode_gpu_one(struct job *j, const struct item *it, struct worker *w,
			  struct uw_layout *l, uint64_t *off, struct uwerr *e)
{
	const struct backend *be = j->ld->d->be;
	const struct proto_tensor *t = &j->m->t[it->tensor];
	const struct src_extent *at = &j->ext[it->tensor];
	struct encode_input in = {.data = it->stored, .len = at->len, .raw_bytes = t->raw_bytes, .fd = -1};
	struct rest_exphuf x;
	int rc = 0;
	const double t0 = uwd_now();
	double t1 = t0;
	if (j->map) {
		in.data = (const char *)j->map[at->file] + at->off;
		in.fd = source_file_fd(j->src, at->file);
		in.path = source_file_path(j->src, at->file);
		in.file_off = at->off;
		if (pinned_wait(j, at)) {
			in.pin_base = j->map[at->file];
			in.pin_piece = PIN_PIECE;
		}
		t1 = uwd_now();
	}
	if (!source_stored_is_raw(j->src)) {
		size_t head = source_exphuf_head_len(j->src, it->tensor);
		if (!head)
			return 1;
		rc = j->map ? exphuf_head_pread(j, it->tensor, head, w, &in, &x, e)
			    : source_exphuf_parse(j->src, it->tensor, it->stored, &x,
						  &in.stored_crc, &in.raw_crc, e);
		if (rc)
			return uwerr_prefix(e, "tensor %s", t->name);
		in.x = &x;
	}
	const double t2 = uwd_now();
	rc = be->ops->enc_tensor(w->gpu, (int)t->dtype, (int)t->ndim, t->shape, &in, place, j,
				 l, off, e);
	log_debug("load %s: tensor %s from %.3f s: %.2f ms waiting for its pages' registration, "
		  "%.2f ms for its head, %.2f ms on the GPU", j->m->name, t->name,
		  t0 - j->m->load_start, 1e3 * (t1 - t0), 1e3 * (t2 - t1), 1e3 * (uwd_now() - t2));
	if (in.x)
		rest_exphuf_free(&x);
	return rc < 0 ? uwerr_prefix(e, "tensor %s", t->name) : rc;
}

/* The same on the CPU (the reference encoder), writing through buf_write;
 * a mapped tensor's stored bytes are pread (into enc, free until the
 * encoding). */
static int encode_cpu_one(struct job *j, const struct item *it, struct worker *w,
			  struct uw_layout *l, uint64_t *off, struct uwerr *e)
{
	const struct proto_tensor *t = &j->m->t[it->tensor];
	const struct src_extent *x = &j->ext[it->tensor];
	const int raw = source_stored_is_raw(j->src);
	const void *data = it->stored;
	int rc;
	if (j->map) {
		void **buf = raw ? &w->raw : &w->enc;
		size_t *cap = raw ? &w->raw_cap : &w->enc_cap;
		if (grow(buf, cap, x->len))
			return uwerr_set(e, ENOMEM, "tensor %s: %llu bytes: out of memory", t->name,
					 (unsigned long long)x->len);
		if ((rc = extent_pread(j, x, *buf, x->len, e)))
			return uwerr_prefix(e, "tensor %s", t->name);
		data = *buf;
	}
	if (!raw) {
		if (grow(&w->raw, &w->raw_cap, t->raw_bytes))
			return uwerr_set(e, ENOMEM, "tensor %s: %llu bytes: out of memory", t->name,
					 (unsigned long long)t->raw_bytes);
		/* its message names the tensor */
		if ((rc = source_decode(j->src, it->tensor, data, w->raw, e)))
			return rc;
		data = w->raw;
	}
	rc = res_plan((int)t->dtype, (int)t->ndim, t->shape, data, t->raw_bytes, j->ld->d->cfg->prefer,
		      l, e);
	if (!rc && grow(&w->enc, &w->enc_cap, l->nbytes))
		rc = uwerr_set(e, ENOMEM, "%llu bytes: out of memory", (unsigned long long)l->nbytes);
	if (!rc)
		rc = res_encode(l, data, t->raw_bytes, w->enc, e);
	if (!rc)
		rc = place(j, l->nbytes, off, e);
	if (!rc && l->nbytes)
		rc = j->ld->d->be->ops->buf_write(j->m->bufs[0], *off, w->enc, l->nbytes, e);
	return rc ? uwerr_prefix(e, "tensor %s", t->name) : 0;
}

/* Decode (bundles), plan and encode one tensor, on the device where the
 * worker has an encoder, and write it at the next free offset. */
static int encode_one(struct job *j, const struct item *it, struct worker *w, struct uwerr *e)
{
	struct model *m = j->m;
	struct proto_tensor *t = &m->t[it->tensor];
	struct uw_layout l;
	uint64_t off = 0;
	int rc = w->gpu ? encode_gpu_one(j, it, w, &l, &off, e) : 1;
	if (rc == 1)
		rc = encode_cpu_one(j, it, w, &l, &off, e);
	if (rc)
		return rc;
	t->buf = 0;
	t->offset = off;
	t->layout = l;
	atomic_fetch_add(&m->loaded_bytes, t->raw_bytes);
	announce(j);
	return 0;
}

/* A par_for range of one, worker begin: it takes tensors as the readers
 * bring them, until they have brought all. */
static void encode_worker(void *ctx, size_t begin, size_t end)
{
	struct job *j = ctx;
	struct worker w = {.gpu = j->encs ? j->encs[begin] : NULL};
	struct uwerr e = {0};
	(void)end;
	for (;;) {
		pthread_mutex_lock(&j->qlock);
		while (j->qhead == j->qtail && j->readers_left && !par_failed(&j->err) &&
		       !canceled(j))
			qwait(j);
		int have = j->qhead < j->qtail && !par_failed(&j->err) && !canceled(j);
		struct item it = have ? j->items[j->qhead++] : (struct item){0};
		pthread_mutex_unlock(&j->qlock);
		if (!have)
			break;
		int rc = encode_one(j, &it, &w, &e);
		unit_put(it.u);
		if (rc) {
			fail(j, &e);
			break;
		}
	}
	free(w.raw);
	free(w.enc);
}

/* The workers' GPU encoders, made before the pinner starts: made while it
 * registers, they waited on it for up to half a second each (bench/NOTES.md,
 * 2026-11-29). A worker whose encoder cannot be made encodes on the CPU,
 * unless the configuration demands the GPU. */
static int encoders_new(struct job *j, struct uwerr *e)
{
	const struct backend_ops *ops = j->ld->d->be->ops;
	if (!j->gpu)
		return 0;
	if (!(j->encs = calloc((size_t)j->nthreads, sizeof(*j->encs))))
		return uwerr_set(e, ENOMEM, "%d encoders: out of memory", j->nthreads);
	const double t = uwd_now();
	for (int i = 0; i < j->nthreads; i++) {
		struct uwerr x = {0};
		if (ops->enc_new(j->m->bufs[0], &j->encs[i], &x) == 0) {
			j->encs_made++;
			continue;
		}
		j->encs[i] = NULL;
		if (j->ld->d->cfg->encode == UWD_ENCODE_GPU) {
			*e = x;
			return -x.code;
		}
		log_warning("load %s: encoding on the CPU: %s", j->m->name, x.msg);
		break;
	}
	j->enc_new_s = uwd_now() - t;
	return 0;
}

/* After the workers: their times summed into gst. */
static void encoders_free(struct job *j)
{
	const struct backend_ops *ops = j->ld->d->be->ops;
	const double t = uwd_now();
	for (int i = 0; j->encs && i < j->nthreads; i++)
		ops->enc_free(j->encs[i], &j->gst);
	free(j->encs);
	j->encs = NULL;
	j->enc_free_s = uwd_now() - t;
}

/* Take bytes of the read-ahead window. A unit larger than the window goes
 * when nothing else holds any. Waits only when the reader has nothing in
 * flight (idle); 0 when the bytes are not to be had (or the load stops). */
static int window_take(struct job *j, uint64_t bytes, int idle)
{
	int got = 0;
	pthread_mutex_lock(&j->qlock);
	for (;;) {
		if (par_failed(&j->err) || canceled(j))
			break;
		if (!j->inflight || j->inflight + bytes <= READ_WINDOW) {
			j->inflight += bytes;
			got = 1;
			break;
		}
		if (!idle)
			break;
		qwait(j);
	}
	pthread_mutex_unlock(&j->qlock);
	return got;
}

/* The next unit of file uf from order[k] on (below end): the tensors
 * that follow each other closely, up to UNIT_MIN bytes, or one large one. */
static struct unit *unit_plan(struct job *j, struct ur_file *uf, size_t k, size_t end)
{
	const struct src_extent *x = &j->ext[j->order[k]];
	uint64_t lo = x->off, hi = x->off + x->len;
	size_t n = 1;
	while (k + n < end && hi - lo < UNIT_MIN) {
		const struct src_extent *y = &j->ext[j->order[k + n]];
		if (y->off < hi || y->off - hi > UNIT_GAP || y->len >= UNIT_MIN)
			break;
		hi = y->off + y->len;
		n++;
	}
	struct unit *u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->j = j;
	u->rd.f = uf;
	u->rd.off = lo;
	u->rd.len = hi - lo;
	u->rd.user = u;
	u->bytes = ur_span(lo, hi - lo);
	u->first = k;
	u->count = n;
	atomic_init(&u->left, n);
	return u;
}

/* Hand the tensors of a unit read to the encoders. */
static void unit_deliver(struct job *j, struct unit *u)
{
	pthread_mutex_lock(&j->qlock);
	for (size_t i = 0; i < u->count; i++) {
		size_t t = j->order[u->first + i];
		j->items[j->qtail++] = (struct item){u, t, u->rd.data + (j->ext[t].off - u->rd.off)};
	}
	pthread_cond_broadcast(&j->qcond);
	pthread_mutex_unlock(&j->qlock);
}

/* Read every tensor of a part, a window's worth ahead of the encoders. */
static int read_part(struct job *j, struct ur_ring *r, const struct part *p, struct uwerr *e)
{
	struct ur_file *uf;
	size_t f = p->file;
	int rc = ur_file_open(source_file_fd(j->src, f), source_file_size(j->src, f),
			      source_file_path(j->src, f), j->io, &uf, e);
	if (rc)
		return rc;
	if (p->first == j->file_first[f])
		log_info("load %s: reading %s %s, through %s", j->m->name,
			 source_file_path(j->src, f), ur_file_direct(uf) ? "with O_DIRECT" : "buffered",
			 ur_ring_uring(r) ? "io_uring" : "pread");
	size_t k = p->first, end = p->end;
	struct unit *next = NULL;   /* planned, waiting for window */
	while ((k < end || ur_pending(r)) && !par_failed(&j->err) && !canceled(j)) {
		if (k < end && !next && !(next = unit_plan(j, uf, k, end))) {
			rc = uwerr_set(e, ENOMEM, "out of memory");
			break;
		}
		if (next && window_take(j, next->bytes, !ur_pending(r))) {
			struct unit *u = next;
			next = NULL;
			pool_take(j, u, ur_span(u->rd.off, u->rd.len));
			if ((rc = ur_submit(r, &u->rd, e))) {
				unit_free(u);
				break;
			}
			k += u->count;
			continue;
		}
		struct ur_read *q = ur_wait(r);
		if (!q)
			continue;
		struct unit *u = q->user;
		if (q->rc) {
			*e = q->e;
			rc = -q->e.code;
			unit_free(u);
			break;
		}
		unit_deliver(j, u);
	}
	free(next);   /* planned only: it holds no window */
	if (ur_pending(r)) {   /* failed or canceled: let what is in flight land */
		ur_cancel(r);
		for (struct ur_read *q; (q = ur_wait(r)); )
			unit_free(q->user);
	}
	ur_file_close(uf);
	return rc;
}

static void *reader_main(void *arg)
{
	struct job *j = arg;
	struct ur_ring *r = NULL;
	struct uwerr e = {0};
	if (ur_ring_new(0, &r, &e)) {
		fail(j, &e);
	} else {
		size_t i;
		while ((i = atomic_fetch_add(&j->next_part, 1)) < j->nparts &&
		       !par_failed(&j->err) && !canceled(j))
			if (read_part(j, r, &j->parts[i], &e)) {
				fail(j, &e);
				break;
			}
	}
	ur_ring_free(r);
	pthread_mutex_lock(&j->qlock);
	j->readers_left--;
	pthread_cond_broadcast(&j->qcond);
	pthread_mutex_unlock(&j->qlock);
	return NULL;
}

static int by_file_offset(const void *a, const void *b, void *ctx)
{
	const struct src_extent *ext = ctx;
	const struct src_extent *x = &ext[*(const size_t *)a], *y = &ext[*(const size_t *)b];
	if (x->file != y->file)
		return x->file < y->file ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* Each file in parts of about equal bytes, so that a bundle (one file), or
 * a checkpoint of fewer shards than readers, keeps every reader busy: one
 * reader copies from the page cache at a few GB/s. */
static int plan_parts(struct job *j, size_t nf)
{
	size_t per = nf && nf < MAX_READERS ? MAX_READERS / nf : 1;
	if (!(j->parts = calloc(nf * per, sizeof(*j->parts))))
		return -1;
	for (size_t f = 0; f < nf; f++) {
		size_t k = j->file_first[f], end = j->file_first[f + 1];
		uint64_t total = 0, acc = 0;
		for (size_t i = k; i < end; i++)
			total += j->ext[j->order[i]].len;
		for (size_t p = 0; p < per && k < end; p++) {
			size_t first = k;
			uint64_t goal = p + 1 == per ? UINT64_MAX : total / per * (p + 1);
			while (k < end && (k == first || acc < goal))
				acc += j->ext[j->order[k++]].len;
			j->parts[j->nparts++] = (struct part){f, first, k};
		}
	}
	return 0;
}

/* Fault the pieces' pages into the daemon's page tables, ahead of the
 * pinner and from several threads: a registration otherwise faults them
 * in itself, on the pinner's one thread, while every copy waits for it
 * (bench/NOTES.md, 2026-11-29). A piece that will not fault in is left to
 * the registration, which reports it. */
static void *populator_main(void *arg)
{
	struct job *j = arg;
	for (;;) {
		const size_t p = atomic_fetch_add(&j->pop_next, 1);
		if (p >= j->npieces || par_failed(&j->err) || canceled(j))
			break;
		const struct piece *x = &j->pieces[p];
		/* an older kernel says EINVAL: the registration faults them */
		madvise((char *)(uintptr_t)j->map[x->file] + x->off, x->len, MADV_POPULATE_READ);
		pthread_mutex_lock(&j->qlock);
		j->populated[p] = 1;
		j->pop_s = uwd_now() - j->m->load_start;
		pthread_cond_broadcast(&j->qcond);
		pthread_mutex_unlock(&j->qlock);
	}
	return NULL;
}

/* Register the mapped files with the device, a piece at a time, in file
 * order: the encoders take tensors in that order and wait for theirs. One
 * thread: registrations from several at once slow each other down many
 * times over (bench/NOTES.md, 2026-11-29). Where a piece will not
 * register, the rest of its file is pread by the encoders. */
static void *pinner_main(void *arg)
{
	struct job *j = arg;
	const struct backend_ops *ops = j->ld->d->be->ops;
	double t = uwd_now();
	for (size_t p = 0; p < j->npieces && !par_failed(&j->err) && !canceled(j); p++) {
		const struct piece *x = &j->pieces[p];
		if (j->pin_over[x->file])
			continue;   /* a piece before would not register */
		const double w = uwd_now();
		pthread_mutex_lock(&j->qlock);
		while (!j->populated[p] && !par_failed(&j->err) && !canceled(j))
			qwait(j);
		pthread_mutex_unlock(&j->qlock);
		j->pop_wait_s += uwd_now() - w;
		struct uwerr e = {0};
		int rc = ops->pin(j->m->bufs[0], (const char *)j->map[x->file] + x->off, x->len, &e);
		if (rc)
			log_info("load %s: %s: %s: read instead from byte %llu on", j->m->name,
				 source_file_path(j->src, x->file), e.msg, (unsigned long long)x->off);
		pthread_mutex_lock(&j->qlock);
		if (rc)
			j->pin_over[x->file] = 1;
		else
			j->pinned[x->file] = x->off + x->len;
		pthread_cond_broadcast(&j->qcond);
		pthread_mutex_unlock(&j->qlock);
		if (!rc)
			log_debug("load %s: %s: %llu bytes registered at %.3f s", j->m->name,
				  source_file_path(j->src, x->file), (unsigned long long)(x->off + x->len),
				  uwd_now() - j->m->load_start);
	}
	pthread_mutex_lock(&j->qlock);
	for (size_t f = 0; f < source_file_count(j->src); f++)
		j->pin_over[f] = 1;
	pthread_cond_broadcast(&j->qcond);
	pthread_mutex_unlock(&j->qlock);
	j->pin_s = uwd_now() - t;
	return NULL;
}

/* File f's bytes, rounded up to whole pages. */
static uint64_t page_span(const struct job *j, size_t f)
{
	const uint64_t psz = (uint64_t)sysconf(_SC_PAGESIZE);
	return (source_file_size(j->src, f) + psz - 1) / psz * psz;
}

/* The pieces of every mapped file, in file order. */
static int plan_pieces(struct job *j)
{
	const size_t nf = source_file_count(j->src);
	size_t n = 0;
	for (size_t f = 0; f < nf; f++)
		n += (page_span(j, f) + PIN_PIECE - 1) / PIN_PIECE;
	if (!(j->pieces = calloc(n ? n : 1, sizeof(*j->pieces))) ||
	    !(j->populated = calloc(n ? n : 1, 1)))
		return -1;
	for (size_t f = 0; f < nf; f++) {
		const uint64_t span = page_span(j, f);
		for (uint64_t off = 0; off < span; off += PIN_PIECE)
			j->pieces[j->npieces++] = (struct piece){f, off,
				span - off < PIN_PIECE ? span - off : PIN_PIECE};
	}
	return 0;
}

/* The populators and the pinner; with none of them, nothing is pinned. */
static void pinning_start(struct job *j)
{
	if (plan_pieces(j) == 0) {
		for (int i = 0; i < POPULATORS; i++)
			if (pthread_create(&j->populators[j->npopulators], NULL, populator_main, j) == 0)
				j->npopulators++;
		if (!j->npopulators)
			memset(j->populated, 1, j->npieces);
		j->pinning = pthread_create(&j->pinner, NULL, pinner_main, j) == 0;
	}
	for (size_t f = 0; !j->pinning && f < source_file_count(j->src); f++)
		j->pin_over[f] = 1;
}

static void pinning_join(struct job *j)
{
	if (j->pinning)
		pthread_join(j->pinner, NULL);
	for (int i = 0; i < j->npopulators; i++)
		pthread_join(j->populators[i], NULL);
}

/* After the encoders (no copy in flight): unregister what the pinner did. */
static void unpin_files(struct job *j)
{
	const struct backend_ops *ops = j->ld->d->be->ops;
	double t = uwd_now();
	/* each file's registered pieces end where the pinner got in it */
	for (size_t p = 0; p < j->npieces; p++) {
		const struct piece *x = &j->pieces[p];
		if (x->off + x->len <= j->pinned[x->file])
			ops->unpin(j->m->bufs[0], (const char *)j->map[x->file] + x->off);
	}
	j->unpin_s = uwd_now() - t;
}

static void unmap_files(struct job *j)
{
	for (size_t f = 0; j->map && f < source_file_count(j->src); f++)
		filemap_unmap(j->map[f], source_file_size(j->src, f));
	free(j->map);
	j->map = NULL;
}

/* On the GPU, files that are wholly in the page cache need no reading:
 * the device copies raw tensors and exphuf payloads from there
 * (filemap.h), 2x the rate of reading them into pinned staging on the H200
 * host (bench/NOTES.md, 2026-11-29); the CPU preads what it needs (a
 * payload's head, the tensors it decodes itself). Every file or none:
 * otherwise the readers read. */
static void map_files(struct job *j)
{
	const size_t nf = source_file_count(j->src);
	if (!j->gpu || j->io != UR_AUTO || !j->ld->d->be->ops->pin ||
	    !(j->map = calloc(nf, sizeof(*j->map))) || !(j->pinned = calloc(nf, sizeof(*j->pinned))) ||
	    !(j->pin_over = calloc(nf, sizeof(*j->pin_over)))) {
		free(j->map);   /* the rest job_free frees */
		j->map = NULL;
		return;
	}
	for (size_t f = 0; f < nf; f++) {
		struct uwerr e = {0};
		int rc = filemap_cached(source_file_fd(j->src, f), source_file_size(j->src, f),
					&j->map[f], &e);
		if (rc < 0)
			log_info("load %s: %s: not mapped (%s): read instead", j->m->name,
				 source_file_path(j->src, f), e.msg);
		if (rc <= 0) {
			unmap_files(j);
			return;
		}
	}
	log_info("load %s: %zu file%s wholly in the page cache: the GPU copies from there",
		 j->m->name, nf, nf == 1 ? "" : "s");
}

/* The tensor table and the buffer, before the workers fill them, and the
 * reading plan. */
static int job_prepare(struct job *j, struct uwerr *e)
{
	struct model *m = j->m;
	const struct backend *be = j->ld->d->be;
	size_t nf = source_file_count(j->src);
	m->t = calloc(m->ntensors, sizeof(*m->t));
	m->bufs = calloc(1, sizeof(*m->bufs));
	m->buf_size = calloc(1, sizeof(*m->buf_size));
	j->ext = calloc(m->ntensors, sizeof(*j->ext));
	j->order = calloc(m->ntensors, sizeof(*j->order));
	j->file_first = calloc(nf + 1, sizeof(*j->file_first));
	j->items = calloc(m->ntensors, sizeof(*j->items));
	j->pool = calloc(POOL_MAX, sizeof(*j->pool));
	j->pool_cap = calloc(POOL_MAX, sizeof(*j->pool_cap));
	if (!m->t || !m->bufs || !m->buf_size || !j->ext || !j->order || !j->file_first ||
	    !j->items || !j->pool || !j->pool_cap)
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
		source_extent(j->src, i, &j->ext[i]);
		j->order[i] = i;
		j->file_first[j->ext[i].file + 1]++;
	}
	qsort_r(j->order, m->ntensors, sizeof(*j->order), by_file_offset, j->ext);
	for (size_t f = 0; f < nf; f++)
		j->file_first[f + 1] += j->file_first[f];
	if (plan_parts(j, nf))
		return uwerr_set(e, ENOMEM, "%zu files: out of memory", nf);
	int rc = be->ops->buf_create(j->ld->d->be, m->dev, m->name, j->cap, &m->bufs[0], e);
	if (!rc) {
		m->nbufs = 1;
		map_files(j);   /* undone at the end of job_run */
	}
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

/* Readers and encoders, all at once; returns when both are done. */
static void job_run(struct job *j)
{
	pthread_t th[MAX_READERS];
	int started = 0;
	struct uwerr e = {0};
	if (encoders_new(j, &e)) {
		fail(j, &e);
		encoders_free(j);
		return;
	}
	j->nreaders = j->map ? 0 : j->nparts < MAX_READERS ? (int)j->nparts : MAX_READERS;
	j->readers_left = j->nreaders;
	if (j->map) {
		/* nothing to read: every tensor waits for an encoder, in file
		 * order, the pinner's */
		for (size_t i = 0; i < j->m->ntensors; i++)
			j->items[i] = (struct item){NULL, j->order[i], NULL};
		j->qtail = j->m->ntensors;
		pinning_start(j);
	}
	for (int i = 0; i < j->nreaders; i++) {
		int rc = pthread_create(&th[i], NULL, reader_main, j);
		if (rc) {
			uwerr_set(&e, rc, "reader thread: %s", strerror(rc));
			fail(j, &e);
			pthread_mutex_lock(&j->qlock);
			j->readers_left -= j->nreaders - i;
			pthread_mutex_unlock(&j->qlock);
			break;
		}
		started++;
	}
	par_for((size_t)j->nthreads, j->nthreads, encode_worker, j);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pinning_join(j);
	encoders_free(j);
	/* A failure leaves tensors read but not encoded. */
	for (size_t i = j->qhead; i < j->qtail; i++)
		unit_put(j->items[i].u);
	j->qhead = j->qtail;
	for (size_t i = 0; i < j->npool; i++)
		free(j->pool[i]);
	j->npool = 0;
	j->pooled = 0;
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
	double t0 = uwd_now();
	int rc = j->has_turn ? job_prepare(j, &e) : 0;
	double t1 = uwd_now(), t2 = t1;
	if (!rc) {
		job_run(j);
		t2 = uwd_now();
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
	/* Stored before it is ready, so an evict from then on removes it. */
	if (!rc)
		fdstore_save(d, m);
	if (!rc && registry_loaded(d->reg, m, j->cursor) == 0) {
		double now = uwd_now(), s = now - m->load_start;
		log_notice("load %s: ready: %zu tensors, %llu bytes raw, %llu resident (%.3f), "
			   "%.3f s, %.1f MB/s", m->name, m->ntensors,
			   (unsigned long long)m->raw_bytes, (unsigned long long)j->cursor,
			   m->raw_bytes ? (double)j->cursor / (double)m->raw_bytes : 0.0, s,
			   s > 0 ? (double)m->raw_bytes / 1e6 / s : 0.0);
		log_info("load %s: %.3f s queued, %.3f s buffer and plan, %.3f s reading and "
			 "encoding, %.3f s finishing", m->name, t0 - m->load_start, t1 - t0,
			 t2 - t1, now - t2);
		const struct encode_gpu_stats *g = &j->gst;
		if (g->tensors)
			log_info("load %s: GPU encoders, %lu tensors, seconds summed over %d "
				 "threads: %.3f in the encoders: %.3f scratch, %.3f copying, "
				 "%.3f checking, %.3f decoding, %.3f planning, %.3f encoding, %.3f filling "
				 "stages; %.2f GB copied from pinned pages, %.2f GB through stages",
				 m->name, g->tensors, j->nthreads, g->total_s, g->scratch_s,
				 g->put_s, g->crc_s, g->decode_s, g->plan_s, g->encode_s, g->staged_s,
				 (double)g->direct_bytes / 1e9, (double)g->staged_bytes / 1e9);
		if (j->encs_made)
			log_info("load %s: %d GPU encoders made in %.3f s, freed in %.3f s", m->name,
				 j->encs_made, j->enc_new_s, j->enc_free_s);
		sd_notifyf(0, "STATUS=loaded %s", m->name);
	} else if (rc) {
		uwerr_prefix(&e, "load %s", m->name);
		log_msg(rc == -ECANCELED ? LOG_NOTICE : LOG_ERR, "%s", e.msg);
		sd_notifyf(0, "STATUS=load of %s failed", m->name);
		registry_remove(d->reg, m, e.msg);
	} else {
		log_notice("load %s: evicted while it loaded", m->name);
		fdstore_forget(d, m->name);
	}
	/* After ready: clients need none of it. m is still ours (its buffer
	 * names the device). */
	if (j->map) {
		unpin_files(j);
		if (j->pinning)
			log_info("load %s: files faulted in by %d threads by %.3f s (the pinner "
				 "waited %.3f s for them), registered with the device in %.3f s (the "
				 "encoders waited %.3f s for them), unregistered in %.3f s",
				 m->name, j->npopulators, j->pop_s, j->pop_wait_s, j->pin_s,
				 j->pin_wait_s, j->unpin_s);
		unmap_files(j);
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
	free(j->pool);
	free(j->pool_cap);
	free(j->ext);
	free(j->order);
	free(j->file_first);
	free(j->parts);
	free(j->items);
	free(j->pinned);
	free(j->pin_over);
	free(j->pieces);
	free(j->populated);
	pthread_mutex_destroy(&j->qlock);
	pthread_cond_destroy(&j->qcond);
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
	pthread_mutex_init(&j->qlock, NULL);
	pthread_cond_init(&j->qcond, NULL);
	j->io = (enum ur_mode)d->cfg->load_io;
	/* The GPU encoder writes R12 only: loads for size encode on the CPU. */
	j->gpu = d->be->ops->enc_new && d->cfg->encode != UWD_ENCODE_CPU &&
		 d->cfg->prefer == RES_PREFER_SPEED;
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
		log_notice("load %s: accepted from %s: %zu tensors, %llu bytes, %d threads "
			   "encoding on the %s, prefer %s", q->name, who, n, (unsigned long long)raw,
			   nth, j->gpu ? "GPU" : "CPU",
			   cfg->prefer == RES_PREFER_SIZE ? "size (R12 or R11)" : "speed (R12)");
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
