/* uring_read: chunked, aligned reads through io_uring (uring_read.h). */
#include "config.h"  /* first: _GNU_SOURCE (O_DIRECT) */
#include "format/uring_read.h"

#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* valgrind cannot see the kernel fill an io_uring read's buffer: say it
 * (a few instructions that do nothing outside valgrind). */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#endif
#endif
#ifndef VALGRIND_MAKE_MEM_DEFINED
#define VALGRIND_MAKE_MEM_DEFINED(p, n) ((void)(p), (void)(n))
#endif

#ifdef UW_READ_FAULTS
#include <pthread.h>
#include <time.h>
#endif

#define ALIGN_DOWN(x) ((x) & ~(uint64_t)(UR_ALIGN - 1))
#define ALIGN_UP(x) ALIGN_DOWN((x) + UR_ALIGN - 1)
#define HUGE (2u << 20)          /* a transparent huge page */
#define CACHE_SAMPLES 64        /* pages mincore looks at to call a file cached */

struct ur_file {
	int fd;                     /* borrowed: buffered reads */
	int dfd;                    /* owned: O_DIRECT reads, or -1 */
	int direct;                 /* reads still go through dfd */
	uint64_t size;              /* when opened */
	char *path;
};

/* One chunk in flight: [pos, need) still wanted, read up to end. */
struct chunk {
	struct ur_read *q;
	uint64_t pos, need, end;
	uint64_t start;             /* where the read in flight began */
	int direct;
	int busy;
	int res, has_res;           /* the pread fallback's completion */
};

struct ur_ring {
	struct io_uring ring;
	int uring;                  /* 0: the pread fallback */
	unsigned depth;
	struct chunk *c;
	unsigned busy;
	struct ur_read *queue, **queue_tail;   /* chunks left to submit */
	struct ur_read *done;                  /* finished, not yet returned */
	size_t pending;
};

#ifdef UW_READ_FAULTS
/* Faults for the test suites, from UW_TEST_READ_FAULTS: compiled only into
 * the test programs (tests/local.mk), never into unweightd or the library.
 * A comma-separated list of:
 *   short=N      every read asks for at most 2N bytes and moves at most N
 *                (whole blocks when O_DIRECT): the rest must be resubmitted
 *   eio=OFF      a read that covers file offset OFF fails with EIO
 *   einval       every O_DIRECT read fails with EINVAL, as on a file system
 *                that takes the open but not the reads
 *   gate=OFF:P   reads reaching past OFF wait until file P exists
 *   nouring      io_uring is refused: the pread fallback serves */
static struct {
	uint64_t short_max;
	int64_t eio_at;
	int einval;
	uint64_t gate_at;
	char gate[512];
	int nouring;
} faults = {.eio_at = -1};
static pthread_once_t faults_once = PTHREAD_ONCE_INIT;

static void faults_parse(void)
{
	const char *s = getenv("UW_TEST_READ_FAULTS");
	char buf[1024];
	snprintf(buf, sizeof(buf), "%s", s ? s : "");
	for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (!strncmp(t, "short=", 6))
			faults.short_max = strtoull(t + 6, NULL, 0);
		else if (!strncmp(t, "eio=", 4))
			faults.eio_at = strtoll(t + 4, NULL, 0);
		else if (!strcmp(t, "einval"))
			faults.einval = 1;
		else if (!strcmp(t, "nouring"))
			faults.nouring = 1;
		else if (!strncmp(t, "gate=", 5)) {
			char *colon = strchr(t, ':');
			faults.gate_at = strtoull(t + 5, NULL, 0);
			snprintf(faults.gate, sizeof(faults.gate), "%s", colon ? colon + 1 : "");
		}
	}
}

static void fault_gate(const struct chunk *c)
{
	pthread_once(&faults_once, faults_parse);
	for (int i = 0; faults.gate[0] && c->end > faults.gate_at && i < 6000 &&
	     access(faults.gate, F_OK) != 0; i++)
		nanosleep(&(struct timespec){0, 10000000}, NULL);
}

static size_t fault_len(const struct chunk *c, size_t n)
{
	pthread_once(&faults_once, faults_parse);
	uint64_t cap = c->direct ? ALIGN_UP(2 * faults.short_max) : 2 * faults.short_max;
	return faults.short_max && n > cap ? (size_t)cap : n;
}

static int fault_apply(const struct chunk *c, int res)
{
	pthread_once(&faults_once, faults_parse);
	if (faults.einval && c->direct && res >= 0)
		return -EINVAL;
	if (faults.eio_at >= 0 && res > 0 && c->start <= (uint64_t)faults.eio_at &&
	    (uint64_t)faults.eio_at < c->start + (uint64_t)res)
		return -EIO;
	if (faults.short_max && (uint64_t)res > faults.short_max) {
		uint64_t k = c->direct ? ALIGN_DOWN(faults.short_max) : faults.short_max;
		return (int)(k ? k : UR_ALIGN);
	}
	return res;
}
#endif

unsigned ur_cached_pages(const void *map, uint64_t size, unsigned samples, unsigned *looked)
{
	const uint64_t psz = (uint64_t)sysconf(_SC_PAGESIZE), pages = (size + psz - 1) / psz;
	const unsigned n = pages < samples ? (unsigned)pages : samples;
	unsigned in = 0;
	for (unsigned i = 0; i < n; i++) {
		unsigned char v = 0;
		const uint64_t p = n > 1 ? i * (pages - 1) / (n - 1) : 0;
		if (mincore((char *)map + p * psz, (size_t)psz, &v) == 0 && (v & 1))
			in++;
	}
	*looked = n;
	return in;
}

/* Whether most of fd's pages are in the page cache. */
static int mostly_cached(int fd, uint64_t size)
{
	long psz = sysconf(_SC_PAGESIZE);
	if (size == 0 || psz <= 0 || size > SIZE_MAX)
		return 1;
	void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return 0;
	unsigned n, in = ur_cached_pages(m, size, CACHE_SAMPLES, &n);
	munmap(m, (size_t)size);
	return in * 2 > n;
}

int ur_file_open(int fd, uint64_t size, const char *path, enum ur_mode mode,
		 struct ur_file **out, struct uwerr *e)
{
	struct ur_file *f = calloc(1, sizeof(*f));
	if (!f || !(f->path = strdup(path))) {
		free(f);
		return uwerr_set(e, ENOMEM, "%s: out of memory", path);
	}
	f->fd = fd;
	f->dfd = -1;
	f->size = size;
	if (mode == UR_DIRECT || (mode == UR_AUTO && !mostly_cached(fd, size))) {
		/* The same open file, not the same path: nothing is looked up
		 * again, so what was vetted is what is read. */
		char proc[64];
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		f->dfd = open(proc, O_RDONLY | O_DIRECT | O_CLOEXEC);
		struct stat a, b;
		if (f->dfd >= 0 && (fstat(fd, &a) || fstat(f->dfd, &b) ||
				    a.st_dev != b.st_dev || a.st_ino != b.st_ino)) {
			close(f->dfd);
			f->dfd = -1;
		}
		f->direct = f->dfd >= 0;
	}
	*out = f;
	return 0;
}

void ur_file_close(struct ur_file *f)
{
	if (!f)
		return;
	if (f->dfd >= 0)
		close(f->dfd);
	free(f->path);
	free(f);
}

int ur_file_direct(const struct ur_file *f)
{
	return f->direct;
}

int ur_ring_new(unsigned depth, struct ur_ring **out, struct uwerr *e)
{
	struct ur_ring *r = calloc(1, sizeof(*r));
	if (!r)
		return uwerr_set(e, ENOMEM, "read ring: out of memory");
	r->depth = depth ? depth : UR_DEPTH;
	r->queue_tail = &r->queue;
#ifdef UW_READ_FAULTS
	pthread_once(&faults_once, faults_parse);
	r->uring = !faults.nouring && io_uring_queue_init(r->depth, &r->ring, 0) == 0;
#else
	r->uring = io_uring_queue_init(r->depth, &r->ring, 0) == 0;
#endif
	if (!r->uring)
		r->depth = 1;   /* pread: one chunk at a time */
	if (!(r->c = calloc(r->depth, sizeof(*r->c)))) {
		ur_ring_free(r);
		return uwerr_set(e, ENOMEM, "read ring: out of memory");
	}
	*out = r;
	return 0;
}

int ur_ring_uring(const struct ur_ring *r)
{
	return r->uring;
}

size_t ur_pending(const struct ur_ring *r)
{
	return r->pending;
}

static unsigned char *dst_of(const struct ur_read *q, uint64_t off)
{
	return (unsigned char *)q->buf + (off - ALIGN_DOWN(q->off));
}

/* Start (or restart) the read of c from its progress on. */
static void issue(struct ur_ring *r, struct chunk *c)
{
	struct ur_file *f = c->q->f;
	c->direct = c->direct && f->direct;
	c->start = c->direct ? ALIGN_DOWN(c->pos) : c->pos;
	size_t n = (size_t)(c->end - c->start);
	int fd = c->direct ? f->dfd : f->fd;
#ifdef UW_READ_FAULTS
	fault_gate(c);
	n = fault_len(c, n);
#endif
	if (r->uring) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);   /* never NULL: depth slots */
		io_uring_prep_read(sqe, fd, dst_of(c->q, c->start), (unsigned)n, c->start);
		io_uring_sqe_set_data(sqe, c);
	} else {
		ssize_t got = pread(fd, dst_of(c->q, c->start), n, (off_t)c->start);
		c->res = got < 0 ? -errno : (int)got;
		c->has_res = 1;
	}
}

static void queue_remove(struct ur_ring *r, struct ur_read *q)
{
	for (struct ur_read **p = &r->queue; *p; p = &(*p)->link) {
		if (*p == q) {
			*p = q->link;
			if (!*p)
				r->queue_tail = p;
			q->link = NULL;
			return;
		}
	}
}

/* q is finished once nothing of it is in flight and nothing is left to
 * submit (or it failed). */
static void maybe_done(struct ur_ring *r, struct ur_read *q)
{
	if (q->inflight || (!q->rc && q->next < q->end))
		return;
	queue_remove(r, q);
	q->link = r->done;
	r->done = q;
}

static void chunk_end(struct ur_ring *r, struct chunk *c)
{
	struct ur_read *q = c->q;
	c->busy = 0;
	r->busy--;
	q->inflight--;
	maybe_done(r, q);
}

static void complete(struct ur_ring *r, struct chunk *c, int res)
{
	struct ur_read *q = c->q;
	struct ur_file *f = q->f;
#ifdef UW_READ_FAULTS
	res = fault_apply(c, res);
#endif
	if (q->rc) {             /* another chunk failed: this one is moot */
		chunk_end(r, c);
		return;
	}
	if (res == -EINTR || res == -EAGAIN) {
		issue(r, c);
		return;
	}
	if (res == -EINVAL && c->direct) {
		/* The file system took the O_DIRECT open but not the read
		 * (alignment it wants more of, or none at all): buffered.
		 * dfd stays open until ur_file_close, as reads already
		 * prepared may name it. */
		f->direct = 0;
		c->direct = 0;
		issue(r, c);
		return;
	}
	if (res < 0) {
		q->rc = uwerr_set(&q->e, -res, "%s: read of %llu bytes at %llu: %s", f->path,
				  (unsigned long long)(c->end - c->start),
				  (unsigned long long)c->start, strerror(-res));
		chunk_end(r, c);
		return;
	}
	if (res > 0)
		(void)VALGRIND_MAKE_MEM_DEFINED(dst_of(q, c->start), (size_t)res);
	uint64_t got = c->start + (uint64_t)res;
	if (got <= c->pos) {     /* nothing new: the file ends here */
		struct stat sb;
		long long now = fstat(f->fd, &sb) == 0 ? (long long)sb.st_size : -1;
		q->rc = uwerr_set(&q->e, ENODATA, "%s: the file ends before byte %llu of its "
				  "data (it is %lld bytes now, %llu when opened: truncated while "
				  "loading?)", f->path, (unsigned long long)c->pos, now,
				  (unsigned long long)f->size);
		chunk_end(r, c);
		return;
	}
	c->pos = got;
	if (c->pos >= c->need)
		chunk_end(r, c);
	else
		issue(r, c);     /* a short read: the rest */
}

/* Cut chunks from the queued reads into the free slots. */
static void fill(struct ur_ring *r)
{
	unsigned slot = 0;
	while (r->queue && r->busy < r->depth) {
		struct ur_read *q = r->queue;
		if (q->rc) {        /* failed or canceled: nothing more of it */
			queue_remove(r, q);
			maybe_done(r, q);
			continue;
		}
		while (r->c[slot].busy)
			slot++;         /* busy < depth: there is a free one */
		struct chunk *c = &r->c[slot];
		uint64_t len = q->end - q->next < UR_CHUNK ? q->end - q->next : UR_CHUNK;
		*c = (struct chunk){.q = q, .pos = q->next, .end = q->next + len, .busy = 1,
				    .direct = 1};
		c->need = c->end < q->off + q->len ? c->end : q->off + q->len;
		if (c->pos < q->off)
			c->pos = q->off;   /* the head of the first block is not wanted */
		q->next += len;
		q->inflight++;
		r->busy++;
		if (q->next >= q->end)
			queue_remove(r, q);
		issue(r, c);
	}
}

void ur_cancel(struct ur_ring *r)
{
	for (struct ur_read *q = r->queue; q; q = q->link)
		if (!q->rc)
			q->rc = uwerr_set(&q->e, ECANCELED, "%s: read canceled", q->f->path);
}

size_t ur_span(uint64_t off, uint64_t len)
{
	uint64_t a = ALIGN_DOWN(off), end = ALIGN_UP(off + len);
	if (off + len < off || end < a || end - a > SIZE_MAX - UR_ALIGN)
		return SIZE_MAX;
	return end > a ? (size_t)(end - a) : UR_ALIGN;
}

int ur_submit(struct ur_ring *r, struct ur_read *q, struct uwerr *e)
{
	uint64_t a = ALIGN_DOWN(q->off), end = ALIGN_UP(q->off + q->len);
	size_t span = ur_span(q->off, q->len);
	q->rc = 0;
	uwerr_clear(&q->e);
	q->inflight = 0;
	q->link = NULL;
	if (q->buf && q->cap < span) {
		free(q->buf);
		q->buf = NULL;
	}
	if (!q->buf) {
		/* Huge pages where they fit: fewer page faults on the first
		 * fill, which cost more than the copy under a hypervisor. */
		size_t align = span >= HUGE ? HUGE : UR_ALIGN;
		if (span == SIZE_MAX || posix_memalign(&q->buf, align, span)) {
			q->buf = NULL;
			return uwerr_set(e, ENOMEM, "%s: out of memory for a read of %llu bytes",
					 q->f->path, (unsigned long long)q->len);
		}
		q->cap = span;
		if (align == HUGE)
			madvise(q->buf, span, MADV_HUGEPAGE);
	}
	q->data = (unsigned char *)q->buf + (q->off - a);
	q->next = a;
	q->end = end;
	r->pending++;
	if (q->len == 0) {
		q->link = r->done;
		r->done = q;
		return 0;
	}
	*r->queue_tail = q;
	r->queue_tail = &q->link;
	return 0;
}

/* Submit what was issued, wait for a completion, and take all there are. */
static void reap(struct ur_ring *r)
{
	if (!r->uring) {
		for (unsigned i = 0; i < r->depth; i++) {
			struct chunk *c = &r->c[i];
			while (c->busy && c->has_res) {
				c->has_res = 0;
				complete(r, c, c->res);   /* may issue again: has_res anew */
			}
		}
		return;
	}
	io_uring_submit_and_wait(&r->ring, 1);   /* -EINTR: the caller loops */
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	io_uring_for_each_cqe(&r->ring, head, cqe) {
		complete(r, io_uring_cqe_get_data(cqe), cqe->res);
		n++;
	}
	io_uring_cq_advance(&r->ring, n);
}

struct ur_read *ur_wait(struct ur_ring *r)
{
	while (!r->done && (r->queue || r->busy)) {
		fill(r);
		if (r->busy && !r->done)   /* fill may have finished canceled reads */
			reap(r);
	}
	struct ur_read *q = r->done;
	if (q) {
		r->done = q->link;
		q->link = NULL;
		r->pending--;
	}
	return q;
}

void ur_ring_free(struct ur_ring *r)
{
	if (!r)
		return;
	/* What is in flight writes into buffers: let it land first. */
	while (r->busy) {
		for (struct ur_read *q = r->queue; q; q = q->link)
			q->next = q->end;   /* submit nothing more */
		reap(r);
	}
	for (struct ur_read *q = r->queue; q; q = q->link)
		free(q->buf);
	for (struct ur_read *q = r->done; q; q = q->link)
		free(q->buf);
	if (r->uring)
		io_uring_queue_exit(&r->ring);
	free(r->c);
	free(r);
}
