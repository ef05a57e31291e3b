/* uring_read: large reads of checkpoint files through io_uring: each read
 * is cut into aligned chunks (UR_CHUNK) with several in flight, O_DIRECT
 * where the file system takes it (an aligned super-range is read and the
 * wanted bytes sliced out of it), buffered otherwise. Short reads are
 * resubmitted; a file that ends early is an error, never zeros.
 *
 * One ring belongs to one thread. Where io_uring is not available (seccomp,
 * io_uring_disabled) the same requests are served by pread, one chunk at a
 * time, so callers never see the difference except in speed. */
#ifndef UW_FORMAT_URING_READ_H
#define UW_FORMAT_URING_READ_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define UR_ALIGN 4096u          /* O_DIRECT offset, length and buffer alignment */
#define UR_CHUNK (16u << 20)    /* bytes per submitted read */
#define UR_DEPTH 8              /* chunks in flight per ring */

/* How a file is read: O_DIRECT skips the page cache, which pays when the
 * file is not in it (cold disk) and costs when it is. */
enum ur_mode {
	UR_AUTO,        /* O_DIRECT unless most of the file is in the page cache */
	UR_DIRECT,      /* O_DIRECT wherever the file system takes it */
	UR_BUFFERED,    /* through the page cache */
};

struct ur_file;

/* Of up to samples pages of a file mapping (never touched) of size bytes,
 * spread evenly with the first and the last among them, how many are in
 * the page cache (mincore); *looked: how many were looked at. */
unsigned ur_cached_pages(const void *map, uint64_t size, unsigned samples, unsigned *looked);

/* Read fd (borrowed: it stays the caller's, and must outlive f) of size
 * bytes; path names it in messages. The O_DIRECT reads go through a second
 * open file description of the same file (/proc/self/fd), never a new path
 * lookup; where that or O_DIRECT is refused, reads are buffered. One ring
 * at a time reads a file (a refused O_DIRECT read changes it). */
int ur_file_open(int fd, uint64_t size, const char *path, enum ur_mode mode,
		 struct ur_file **out, struct uwerr *e);
void ur_file_close(struct ur_file *f);     /* NULL is fine */

/* Whether f's reads still go O_DIRECT (a refused read turns them buffered). */
int ur_file_direct(const struct ur_file *f);

/* One read: the caller sets f, off, len and user, and owns the struct until
 * ur_wait hands it back. */
struct ur_read {
	struct ur_file *f;
	uint64_t off, len;
	void *user;
	/* [off, off+len) lands at data, inside buf: UR_ALIGN-aligned, cap
	 * bytes, the caller's to free() (or reuse) once ur_wait has returned
	 * the read. The caller may hand in a buf from an earlier read; where it
	 * is NULL or shorter than ur_span(), ur_submit replaces it. */
	unsigned char *data;
	void *buf;
	size_t cap;
	/* Set when ur_wait returns it: 0, or -errno with the message in e. */
	int rc;
	struct uwerr e;
	/* The ring's. */
	uint64_t next;             /* the next aligned offset to submit */
	uint64_t end;              /* aligned end of the range */
	unsigned inflight;
	struct ur_read *link;
};

struct ur_ring;

/* A ring of depth chunks in flight (0: UR_DEPTH). */
int ur_ring_new(unsigned depth, struct ur_ring **out, struct uwerr *e);

/* Wait for what is in flight, then free r (reads not yet returned are
 * dropped: their buffers are freed). NULL is fine. */
void ur_ring_free(struct ur_ring *r);

/* Whether r reads through io_uring (0: the pread fallback). */
int ur_ring_uring(const struct ur_ring *r);

/* The buffer bytes a read of [off, off+len) takes: its aligned cover. */
size_t ur_span(uint64_t off, uint64_t len);

/* Queue q: allocate its buffer and plan its chunks; they are submitted as
 * slots free up. -ENOMEM (in e) when the buffer cannot be had. */
int ur_submit(struct ur_ring *r, struct ur_read *q, struct uwerr *e);

/* Stop: the reads not yet finished fail with -ECANCELED once what is in
 * flight has landed; ur_wait returns them as usual. */
void ur_cancel(struct ur_ring *r);

/* The reads queued or in flight that ur_wait has not returned yet. */
size_t ur_pending(const struct ur_ring *r);

/* Submit what fits, wait, and return the next read that is complete or
 * failed (its rc says which); NULL when nothing is pending. Reads come
 * back as they finish, not in the order queued. */
struct ur_read *ur_wait(struct ur_ring *r);

#endif
