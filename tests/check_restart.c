/* check_restart: restart without reload, against a fake systemd fd store
 * (daemonutil's notification reader keeps the fds of FDSTORE=1 messages by
 * FDNAME and hands them back with LISTEN_FDS/LISTEN_FDNAMES, as systemd
 * does). A model loaded before a SIGKILL or a SIGTERM is ready again after
 * the restart with its file deleted, attaches bit-exact, and a worker that
 * attached before keeps decoding correctly throughout; a corrupted
 * manifest, a buffer of the wrong size and one whose bytes changed are
 * dropped (FDSTOREREMOVE) while the others are adopted; an evicted model
 * leaves the store. */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/le.h"
#include "tests/daemonutil.h"
#include "tests/testutil.h"

/* Load name from a staged copy, wait until the store holds it. */
static void load_stored(struct daemon *d, int fd, const char *name)
{
	load_ready(d, fd, name);
	char want[200];
	snprintf(want, sizeof(want), "FDNAME=uw.%s", name);
	ck_assert_msg(notify_wait(d, want, 10000), "no FDSTORE for %s (notes: %s)", name, d->notes);
	snprintf(want, sizeof(want), "uw.%s", name);
	ck_assert_uint_eq(fake_store_count(d->store, want), 2);   /* manifest + buffer */
}

/* ---- a worker that keeps decoding -------------------------------------- */

/* Attach name over its own connection, then verify every tensor against
 * ref, again and again, until told to stop. */
static void worker_start(struct worker *w, const struct daemon *d, const char *name,
			 const char *ref)
{
	if (worker_fork(w)) {
		worker_first(w);
		return;
	}
	int fd = connect_hello(d);
	struct attached a;
	if (req_attach(fd, name, &a) != 0)
		_exit(3);
	do
		verify_model(&a, ref);   /* a mismatch fails and exits the worker */
	while (!worker_pass(w));
	attached_free(&a);
	_exit(0);
}

/* ---- tests ------------------------------------------------------------- */

/* Load, kill (how), restart with the stored fds: ready without its file,
 * bit-exact, the worker unharmed. */
static void restart_keeps(int how)
{
	struct rig g;
	rig_init(&g);
	struct daemon d;
	rig_start(&g, &d, 0);
	int fd = connect_hello(&d);
	load_stored(&d, fd, "stories");
	struct mstat before = model_stat(fd, "stories");
	char staged[512];
	snprintf(staged, sizeof(staged), "%s/stories.safetensors", d.allow);
	struct worker w;
	worker_start(&w, &d, "stories", g.ref);
	close(fd);

	if (how == SIGKILL)
		daemon_kill(&d);
	else
		daemon_stop(&d);   /* a systemctl restart: the store stays */
	ck_assert_msg(access(staged, F_OK) != 0, "the staged file outlived its daemon's dir");
	ck_assert_uint_eq(fake_store_count(&g.store, "uw.stories"), 2);
	worker_progress(&w, 3);

	double t0 = now();
	rig_start(&g, &d, 1);
	fd = connect_hello(&d);
	struct mstat s = model_stat(fd, "stories");
	double took = now() - t0;
	ck_assert_msg(s.found && strcmp(s.state, "ready") == 0, "after restart: %s", s.state);
	ck_assert_uint_eq(s.tensors, before.tensors);
	ck_assert_uint_eq(s.raw, before.raw);
	ck_assert_uint_eq(s.resident, before.resident);
	ck_assert_uint_eq(s.used, before.used);
	ck_assert(s.progress == 1.0);
	printf("restart: ready again %.3f s after the start\n", took);
	char *text = rig_log(&g);
	ck_assert_msg(strstr(text, "fd store: stories: re-adopted ready"), "log: %s", text);
	free(text);
	worker_progress(&w, 3);

	struct attached a;
	ck_assert_int_eq(req_attach(fd, "stories", &a), 0);
	verify_model(&a, g.ref);
	ck_assert_int_eq(req_detach(fd, a.r.lease), 0);
	attached_free(&a);
	worker_progress(&w, 3);
	worker_stop(&w);

	/* Evicted: it leaves the store. */
	ck_assert_int_eq(req_evict(fd, "stories", 0), 0);
	ck_assert(notify_wait(&d, "FDSTOREREMOVE=1\nFDNAME=uw.stories", 5000));
	for (int i = 0; i < 200 && fake_store_count(&g.store, "uw.stories"); i++)
		sleep_ms(10);
	ck_assert_uint_eq(fake_store_count(&g.store, "uw.stories"), 0);
	close(fd);
	daemon_stop(&d);
	rig_free(&g);
}

START_TEST(t_restart_sigkill)
{
	restart_keeps(SIGKILL);
}
END_TEST

START_TEST(t_restart_sigterm)
{
	restart_keeps(SIGTERM);
}
END_TEST

/* The store's fds for name: the manifest (it starts with the magic) and
 * the buffer. */
static void stored_fds(struct fake_store *s, const char *name, int *manifest, int *buffer)
{
	*manifest = *buffer = -1;
	for (size_t i = 0; i < s->n; i++) {
		if (strcmp(s->e[i].name, name))
			continue;
		char b[8];
		if (pread(s->e[i].fd, b, 8, 0) == 8 && memcmp(b, "UWFDSTOR", 8) == 0)
			*manifest = (int)i;
		else
			*buffer = (int)i;
	}
	ck_assert(*manifest >= 0 && *buffer >= 0);
}

/* A sealed memfd holding n bytes of b. */
static int sealed_copy(const void *b, size_t n)
{
	int fd = memfd_create("tampered", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, b, n), (ssize_t)n);
	ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK), 0);
	return fd;
}

static char *contents(int fd, size_t *n)
{
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	*n = (size_t)st.st_size;
	char *b = malloc(*n);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(pread(fd, b, *n, 0), (ssize_t)*n);
	return b;
}

/* Tamper with model name in the store. 'm': flip a bit in its manifest.
 * 't' (a buffer one byte short) and 'f' (a bit of its first tensor flipped):
 * a new sealed memfd replaces the buffer, and the manifest is rewritten
 * to name its inode (with its own checksum made right), so that only the
 * buffer's size or bytes are wrong. The layout is fdstore.c's. */
static void tamper(struct fake_store *s, const char *name, char how)
{
	int mi, bi;
	stored_fds(s, name, &mi, &bi);
	size_t mn, bn;
	uint8_t *m = (uint8_t *)contents(s->e[mi].fd, &mn);
	if (how == 'm') {
		m[mn / 2] ^= 0x10;
	} else {
		char *b = contents(s->e[bi].fd, &bn);
		if (how == 'f')
			b[0] ^= 0x10;   /* the tensor placed first: the gaps are not checked */
		else
			bn--;
		int nfd = sealed_copy(b, bn);
		free(b);
		close(s->e[bi].fd);
		s->e[bi].fd = nfd;
		struct stat st;
		ck_assert_int_eq(fstat(nfd, &st), 0);
		size_t off = 12;                          /* magic, version */
		off += 4 + le32_get(m + off);             /* model name */
		off += 4 + le32_get(m + off);             /* device name */
		off += 8;                                 /* raw_bytes */
		ck_assert_uint_eq(le32_get(m + off), 1);  /* nbufs */
		le64_put(m + off + 4, (uint64_t)st.st_ino);
		le32_put(m + mn - 4, crc32c(0, m, mn - 4));
	}
	int nfd = sealed_copy(m, mn);
	free(m);
	close(s->e[mi].fd);
	s->e[mi].fd = nfd;
}

START_TEST(t_restart_drops_bad)
{
	struct rig g;
	rig_init(&g);
	struct daemon d;
	rig_start(&g, &d, 0);
	int fd = connect_hello(&d);
	const char *names[] = {"good", "badmanifest", "shortbuf", "changedbuf"};
	for (int i = 0; i < 4; i++)
		load_stored(&d, fd, names[i]);
	close(fd);
	daemon_kill(&d);

	tamper(&g.store, "uw.badmanifest", 'm');
	tamper(&g.store, "uw.shortbuf", 't');
	tamper(&g.store, "uw.changedbuf", 'f');

	rig_start(&g, &d, 1);
	fd = connect_hello(&d);
	struct mstat s = model_stat(fd, "good");
	ck_assert_msg(s.found && strcmp(s.state, "ready") == 0, "good: %s", s.state);
	struct attached a;
	ck_assert_int_eq(req_attach(fd, "good", &a), 0);
	verify_model(&a, g.ref);
	attached_free(&a);
	const char *why[] = {NULL, "manifest checksum mismatch", "bytes where the manifest says",
			     "CRC-32C"};
	char *text = rig_log(&g);
	for (int i = 1; i < 4; i++) {
		char line[300], want[200];
		ck_assert_msg(!model_stat(fd, names[i]).found, "%s was adopted", names[i]);
		snprintf(line, sizeof(line), "fd store: uw.%s: dropped: ", names[i]);
		const char *l = strstr(text, line);
		ck_assert_msg(l && strstr(l, why[i]) && strstr(l, why[i]) < strchr(l, '\n'),
			      "no drop line for %s naming '%s': %s", names[i], why[i], text);
		snprintf(want, sizeof(want), "FDSTOREREMOVE=1\nFDNAME=uw.%s", names[i]);
		ck_assert_msg(notify_wait(&d, want, 5000), "%s not removed", names[i]);
		snprintf(want, sizeof(want), "uw.%s", names[i]);
		for (int k = 0; k < 200 && fake_store_count(&g.store, want); k++)
			sleep_ms(10);
		ck_assert_uint_eq(fake_store_count(&g.store, want), 0);
	}
	free(text);
	/* A dropped name loads again from disk. */
	load_ready(&d, fd, "shortbuf");
	close(fd);
	daemon_stop(&d);
	ck_assert_uint_eq(fake_store_count(&g.store, "uw.good"), 2);
	rig_free(&g);
}
END_TEST

int main(void)
{
	rng = tu_seed();
	Suite *s = suite_create("restart");
	TCase *tc = tu_tcase(s, "restart", 300);
	tcase_add_test(tc, t_restart_sigkill);
	tcase_add_test(tc, t_restart_sigterm);
	tcase_add_test(tc, t_restart_drops_bad);
	return tu_run(s);
}
