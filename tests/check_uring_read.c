/* check_uring_read: the chunked io_uring reader on real files: unaligned
 * ranges across chunk boundaries and the end of the file, read O_DIRECT and
 * buffered, must equal pread's bytes; short reads are resubmitted; an
 * O_DIRECT read refused with EINVAL turns the file buffered; a file that
 * shrank and a read error give an error naming the file and offset; cancel
 * returns everything and leaks nothing. Built with UW_READ_FAULTS (the
 * fault hooks of uring_read.c, in test programs only). */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/uring_read.h"
#include "tests/testutil.h"

static uint64_t rng;

struct fixture {
	char *dir;
	char path[512];
	unsigned char *data;
	size_t size;
	int fd;
};

/* A file of size random bytes in a fresh directory (under $TMPDIR). */
static void fixture_make(struct fixture *x, size_t size)
{
	ck_assert_ptr_nonnull(x->dir = tu_tmpdir());
	snprintf(x->path, sizeof(x->path), "%s/data.bin", x->dir);
	x->size = size;
	ck_assert_ptr_nonnull(x->data = malloc(size));
	for (size_t i = 0; i < size; i++)
		x->data[i] = (unsigned char)(tu_rand(&rng) >> 24);
	ck_assert_int_eq(tu_write_file(x->path, x->data, size), 0);
	ck_assert_int_ge(x->fd = open(x->path, O_RDONLY | O_CLOEXEC), 0);
}

static void fixture_free(struct fixture *x)
{
	close(x->fd);
	free(x->data);
	tu_rmtree(x->dir);
	free(x->dir);
}

/* x's file and a ring of depth chunks (0: the default). */
static void open_ring(struct fixture *x, enum ur_mode mode, unsigned depth, struct ur_file **f,
		      struct ur_ring **r)
{
	struct uwerr e = {0};
	ck_assert_msg(ur_file_open(x->fd, x->size, x->path, mode, f, &e) == 0, "%s", e.msg);
	ck_assert_msg(ur_ring_new(depth, r, &e) == 0, "%s", e.msg);
}

#define NREADS 12

/* Ranges that start and end off alignment, cross 16 MiB chunk boundaries,
 * touch the end of the file, and one that is empty. */
static void ranges(size_t size, uint64_t off[NREADS], uint64_t len[NREADS])
{
	static const uint64_t fixed[][2] = {
		{0, 1}, {1, 4095}, {4095, 2}, {4096, 4096}, {12345, 16u << 20},
		{(16u << 20) - 7, 14}, {100, 0},
	};
	size_t k = 0;
	for (; k < sizeof(fixed) / sizeof(fixed[0]); k++) {
		off[k] = fixed[k][0];
		len[k] = fixed[k][1];
	}
	off[k] = size - 3;   /* the last bytes of a file not a block multiple */
	len[k++] = 3;
	off[k] = 0;          /* all of it */
	len[k++] = size;
	for (; k < NREADS; k++) {
		off[k] = tu_rand(&rng) % size;
		len[k] = tu_rand(&rng) % (size - off[k]);
	}
}

/* Read every range at once through one ring; each must equal the file. */
static void read_all(struct fixture *x, enum ur_mode mode, int expect_direct_after)
{
	struct uwerr e = {0};
	struct ur_file *f;
	struct ur_ring *r;
	open_ring(x, mode, 4, &f, &r);
	struct ur_read q[NREADS] = {0};
	uint64_t off[NREADS], len[NREADS];
	ranges(x->size, off, len);
	for (int i = 0; i < NREADS; i++) {
		q[i] = (struct ur_read){.f = f, .off = off[i], .len = len[i], .user = &q[i]};
		ck_assert_msg(ur_submit(r, &q[i], &e) == 0, "%s", e.msg);
	}
	ck_assert_uint_eq(ur_pending(r), NREADS);
	int seen[NREADS] = {0};
	for (int n = 0; n < NREADS; n++) {
		struct ur_read *d = ur_wait(r);
		ck_assert_ptr_nonnull(d);
		int i = (int)(d - q);
		ck_assert_ptr_eq(d->user, &q[i]);
		ck_assert_msg(!seen[i]++, "read %d returned twice", i);
		ck_assert_msg(d->rc == 0, "read %d [%llu,+%llu): %s", i, (unsigned long long)off[i],
			      (unsigned long long)len[i], d->e.msg);
		ck_assert_msg(memcmp(d->data, x->data + off[i], len[i]) == 0,
			      "read %d [%llu,+%llu) differs from the file", i,
			      (unsigned long long)off[i], (unsigned long long)len[i]);
		free(d->buf);
	}
	ck_assert_ptr_null(ur_wait(r));
	ck_assert_uint_eq(ur_pending(r), 0);
	if (expect_direct_after >= 0)
		ck_assert_int_eq(ur_file_direct(f), expect_direct_after);
	ur_ring_free(r);
	ur_file_close(f);
}

/* One read of [off, off+len); its rc, the message in msg. */
static int read_one(struct fixture *x, enum ur_mode mode, uint64_t off, uint64_t len,
		    char *msg, size_t msglen)
{
	struct uwerr e = {0};
	struct ur_file *f;
	struct ur_ring *r;
	open_ring(x, mode, 0, &f, &r);
	struct ur_read q = {.f = f, .off = off, .len = len};
	ck_assert_msg(ur_submit(r, &q, &e) == 0, "%s", e.msg);
	ck_assert_ptr_eq(ur_wait(r), &q);
	snprintf(msg, msglen, "%s", q.e.msg);
	if (q.rc == 0)
		ck_assert_msg(memcmp(q.data, x->data + off, len) == 0, "the bytes differ");
	free(q.buf);
	ur_ring_free(r);
	ur_file_close(f);
	return q.rc;
}

#define BIG ((size_t)(40u << 20) + 1234)   /* three chunks and a partial block */

START_TEST(t_ranges)
{
	struct fixture x;
	fixture_make(&x, BIG);
	int fds = tu_count_fds();
	read_all(&x, UR_DIRECT, -1);
	read_all(&x, UR_BUFFERED, 0);
	read_all(&x, UR_AUTO, -1);
	ck_assert_int_eq(tu_count_fds(), fds);
	fixture_free(&x);
}
END_TEST

/* On ext4 and xfs (the test directory) O_DIRECT is taken: check that the
 * direct path really ran, so the alignment slicing is what was tested. */
START_TEST(t_direct_used)
{
	struct fixture x;
	fixture_make(&x, BIG);
	struct uwerr e = {0};
	struct ur_file *f;
	ck_assert_msg(ur_file_open(x.fd, x.size, x.path, UR_DIRECT, &f, &e) == 0, "%s", e.msg);
	int direct = ur_file_direct(f);
	ur_file_close(f);
	if (!direct) {
		fprintf(stderr, "t_direct_used: %s takes no O_DIRECT here; the buffered path "
			"was tested instead\n", x.dir);
	} else {
		read_all(&x, UR_DIRECT, 1);
	}
	fixture_free(&x);
}
END_TEST

START_TEST(t_short_reads)
{
	setenv("UW_TEST_READ_FAULTS", "short=5000", 1);
	struct fixture x;
	fixture_make(&x, BIG);
	read_all(&x, UR_DIRECT, -1);
	read_all(&x, UR_BUFFERED, 0);
	fixture_free(&x);
}
END_TEST

START_TEST(t_direct_refused)
{
	setenv("UW_TEST_READ_FAULTS", "einval", 1);
	struct fixture x;
	fixture_make(&x, BIG);
	read_all(&x, UR_DIRECT, 0);   /* every read done, the file turned buffered */
	fixture_free(&x);
}
END_TEST

/* tmpfs: O_DIRECT is refused at open on older kernels, taken on newer
 * ones; either way the bytes must come. */
START_TEST(t_tmpfs)
{
	if (access("/dev/shm", W_OK) != 0) {
		fprintf(stderr, "t_tmpfs: no writable /dev/shm, skipped\n");
		return;
	}
	setenv("TMPDIR", "/dev/shm", 1);
	struct fixture x;
	fixture_make(&x, BIG);
	read_all(&x, UR_DIRECT, -1);
	fixture_free(&x);
}
END_TEST

START_TEST(t_truncated)
{
	struct fixture x;
	fixture_make(&x, BIG);
	char msg[UWERR_MSG_MAX];
	ck_assert_int_eq(truncate(x.path, 20u << 20), 0);
	for (int mode = UR_DIRECT; mode <= UR_BUFFERED; mode++) {
		int rc = read_one(&x, mode, 1000, x.size - 2000, msg, sizeof(msg));
		ck_assert_int_eq(rc, -ENODATA);
		ck_assert_msg(strstr(msg, x.path) && strstr(msg, "truncated"), "\"%s\"", msg);
		/* What is still there reads fine. */
		ck_assert_int_eq(read_one(&x, mode, 1000, (20u << 20) - 1000, msg, sizeof(msg)), 0);
	}
	fixture_free(&x);
}
END_TEST

START_TEST(t_read_error)
{
	setenv("UW_TEST_READ_FAULTS", "eio=30000000", 1);
	struct fixture x;
	fixture_make(&x, BIG);
	char msg[UWERR_MSG_MAX];
	for (int mode = UR_DIRECT; mode <= UR_BUFFERED; mode++) {
		ck_assert_int_eq(read_one(&x, mode, 0, x.size, msg, sizeof(msg)), -EIO);
		ck_assert_msg(strstr(msg, x.path) && strstr(msg, "Input/output error"), "\"%s\"", msg);
		/* Ranges that do not cover the bad offset read fine. */
		ck_assert_int_eq(read_one(&x, mode, 0, 29000000, msg, sizeof(msg)), 0);
		ck_assert_int_eq(read_one(&x, mode, 34000000, 1000000, msg, sizeof(msg)), 0);
	}
	fixture_free(&x);
}
END_TEST

/* Where io_uring is refused, pread serves the same reads. */
START_TEST(t_pread_fallback)
{
	setenv("UW_TEST_READ_FAULTS", "nouring,short=70000", 1);
	struct fixture x;
	fixture_make(&x, BIG);
	struct uwerr e = {0};
	struct ur_ring *r;
	ck_assert_int_eq(ur_ring_new(0, &r, &e), 0);
	ck_assert_int_eq(ur_ring_uring(r), 0);
	ur_ring_free(r);
	read_all(&x, UR_DIRECT, -1);
	read_all(&x, UR_BUFFERED, 0);
	fixture_free(&x);
}
END_TEST

/* Cancel with reads queued and in flight: each comes back exactly once,
 * done or canceled, and nothing leaks (the fd count, and valgrind). */
START_TEST(t_cancel)
{
	struct fixture x;
	fixture_make(&x, BIG);
	int fds = tu_count_fds();
	struct uwerr e = {0};
	struct ur_file *f;
	struct ur_ring *r;
	open_ring(&x, UR_DIRECT, 2, &f, &r);
	struct ur_read q[6];
	for (int i = 0; i < 6; i++) {
		q[i] = (struct ur_read){.f = f, .off = (uint64_t)i * 1000, .len = 30u << 20};
		ck_assert_int_eq(ur_submit(r, &q[i], &e), 0);
	}
	struct ur_read *d = ur_wait(r);   /* gets the first chunks going */
	ck_assert_ptr_nonnull(d);
	free(d->buf);
	ur_cancel(r);
	int back = 1, canceled = 0;
	while ((d = ur_wait(r))) {
		back++;
		canceled += d->rc == -ECANCELED;
		ck_assert(d->rc == 0 || d->rc == -ECANCELED);
		free(d->buf);
	}
	ck_assert_int_eq(back, 6);
	ck_assert_int_ge(canceled, 1);
	ur_ring_free(r);
	ur_file_close(f);
	ck_assert_int_eq(tu_count_fds(), fds);
	fixture_free(&x);
}
END_TEST

/* Freeing a ring with reads still queued and in flight frees them. */
START_TEST(t_free_busy)
{
	struct fixture x;
	fixture_make(&x, BIG);
	struct uwerr e = {0};
	struct ur_file *f;
	struct ur_ring *r;
	open_ring(&x, UR_BUFFERED, 0, &f, &r);
	struct ur_read q[3];
	for (int i = 0; i < 3; i++) {
		q[i] = (struct ur_read){.f = f, .off = 0, .len = x.size};
		ck_assert_int_eq(ur_submit(r, &q[i], &e), 0);
	}
	ur_ring_free(r);
	ur_file_close(f);
	fixture_free(&x);
}
END_TEST

int main(void)
{
	rng = tu_seed();
	Suite *s = suite_create("uring_read");
	TCase *tc = tu_tcase(s, "uring_read", 120);
	tcase_add_test(tc, t_ranges);
	tcase_add_test(tc, t_direct_used);
	tcase_add_test(tc, t_short_reads);
	tcase_add_test(tc, t_direct_refused);
	tcase_add_test(tc, t_tmpfs);
	tcase_add_test(tc, t_pread_fallback);
	tcase_add_test(tc, t_truncated);
	tcase_add_test(tc, t_read_error);
	tcase_add_test(tc, t_cancel);
	tcase_add_test(tc, t_free_busy);
	return tu_run(s);
}
