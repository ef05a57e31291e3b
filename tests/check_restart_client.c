/* check_restart_client: restart without reload and verify as workers see
 * them, through libunweight-client, on the backend $UW_TEST_BACKEND names
 * (host when unset: make check; tests/check_gpu_restart.sh runs it on cuda,
 * where the buffers are VMM allocations exported as fds).
 *
 * t_restart: a model is loaded and stored (fake fd store, daemonutil), a
 * worker attaches it and keeps decoding every tensor and multiplying with
 * every matrix; the daemon is killed with SIGKILL and started again with
 * the stored fds and its checkpoint gone: the model is listed ready with
 * the same sizes, verifies clean, attaches and decodes bit-exact in a new
 * worker, and the old worker never stopped. The time from the start to
 * ready is printed (a test asserts no timing).
 *
 * t_verify: tests/unweightd-faults corrupts one tensor of model "bad" as it
 * is written (UW_TEST_CORRUPT); a worker finds which by decoding every
 * tensor against the checkpoint, and verify must name exactly that one,
 * while "good" verifies clean.
 *
 * The test process itself never touches CUDA: a process that initialised
 * it cannot fork workers, so everything that maps a model runs in a child. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/json.h"
#include "format/source.h"
#include "tests/clientutil.h"
#include "tests/daemonutil.h"
#include "tests/testutil.h"
#include "unweight.h"

#define FAULTY "tests/unweightd-faults"

static const char *backend(void)
{
	const char *b = getenv("UW_TEST_BACKEND");
	return b && *b ? b : "host";
}

/* ---- the daemon, through the library ------------------------------------ */

static uw_client *dial_lib(const struct daemon *d)
{
	uw_client *c;
	ck_assert_msg(uw_connect(d->sock, &c) == 0, "connect: %s", uw_errmsg());
	return c;
}

/* The stats document (json_free it). */
static struct json_value *lib_stats(uw_client *c)
{
	char *text;
	struct json_value *doc;
	struct uwerr e = {0};
	ck_assert_msg(uw_stats_json(c, NULL, &text) == 0, "stats: %s", uw_errmsg());
	ck_assert_msg(json_parse(text, strlen(text), &doc, &e) == 0, "%s", e.msg);
	free(text);
	return doc;
}

/* What the tests compare before and after a restart. */
struct sizes {
	uint64_t tensors, raw, resident, used;
};

static struct sizes model_sizes(uw_client *c, const char *name)
{
	struct json_value *doc = lib_stats(c);
	const struct json_value *m = stats_model(doc, name);
	ck_assert_msg(m, "stats lists no model %s", name);
	ck_assert_str_eq(stat_str(m, "state"), "ready");
	const struct json_value *dev = json_get(doc, "devices");
	ck_assert(dev && dev->type == JSON_ARR && dev->u.arr.n >= 1);
	struct sizes s = {stat_u64(m, "tensors"), stat_u64(m, "raw_bytes"),
			  stat_u64(m, "resident_bytes"), stat_u64(&dev->u.arr.v[0], "used")};
	json_free(doc);
	return s;
}

/* Load the fixture (staged into the daemon's allow dir) as name, and wait
 * until it is ready. */
static void load_wait(const struct daemon *d, uw_client *c, const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s.safetensors", d->allow, name);
	copy_file(fixture(), path, 0);
	const char *paths[1] = {path};
	ck_assert_msg(uw_load(c, name, paths, 1) == 0, "load %s: %s", name, uw_errmsg());
	double end = now() + 120;
	for (;;) {
		struct json_value *doc = lib_stats(c);
		const struct json_value *m = stats_model(doc, name);
		ck_assert_msg(m, "stats lists no model %s", name);
		char state[16];
		snprintf(state, sizeof(state), "%s", stat_str(m, "state"));
		json_free(doc);
		if (strcmp(state, "loading") == 0) {
			ck_assert_msg(now() < end, "%s still loading after 120 s", name);
			sleep_ms(10);
			continue;
		}
		ck_assert_msg(strcmp(state, "ready") == 0, "load %s: %s", name, state);
		return;
	}
}

/* ---- workers: child processes that map the model ------------------------ */

/* The checkpoint's tensors, read in the child that checks against them. */
struct ref {
	struct source *src;
	uint8_t **raw;
};

static int ref_open(struct ref *r, const char *path)
{
	struct uwerr e = {0};
	const char *paths[1] = {path};
	if (source_open(paths, 1, &r->src, &e)) {
		fprintf(stderr, "%s\n", e.msg);
		return -1;
	}
	r->raw = calloc(source_count(r->src), sizeof(*r->raw));
	for (size_t i = 0; r->raw && i < source_count(r->src); i++)
		if (!(r->raw[i] = malloc(source_tensor(r->src, i)->raw_bytes + 1)) ||
		    source_read(r->src, i, r->raw[i], &e)) {
			fprintf(stderr, "%s: %s\n", path, e.msg);
			return -1;
		}
	return r->raw ? 0 : -1;
}

/* Decode every tensor of m against r, and multiply with every 2-D BF16
 * one; the names of those that fail go to bad (as lines). Returns how many
 * failed. */
static int check_model(const uw_model *m, const struct ref *r, uint64_t *xr, char *bad,
		       size_t badn)
{
	int nbad = 0;
	for (size_t i = 0; i < source_count(r->src); i++) {
		const struct src_tensor *s = source_tensor(r->src, i);
		const uw_tensor *t = uw_model_find(m, s->name);
		int fail = !t || cu_check_decode(t, r->raw[i], s->raw_bytes) < 0;
		if (!fail && s->dtype == UW_DTYPE_BF16 && s->ndim == 2)
			fail = cu_check_matmul(t, (const uint16_t *)r->raw[i], 1, 0, xr, NULL) < 0;
		if (fail && bad) {
			size_t used = strlen(bad);
			snprintf(bad + used, badn - used, "%s\n", s->name);
		}
		nbad += fail;
	}
	return nbad;
}

/* Attach name, then check it against ref again and again until told to
 * stop; the worker exits 1 at the first wrong pass. */
static void worker_start(struct worker *w, const struct daemon *d, const char *name,
			 const char *ref)
{
	if (worker_fork(w)) {
		worker_first(w);
		return;
	}
	struct ref r = {0};
	uw_client *c;
	uw_model *m;
	uint64_t xr = 42;
	if (ref_open(&r, ref) || uw_connect(d->sock, &c) || uw_attach(c, name, &m)) {
		fprintf(stderr, "worker: %s\n", uw_errmsg());
		_exit(3);
	}
	do
		if (check_model(m, &r, &xr, NULL, 0))
			_exit(1);
	while (!worker_pass(w));
	/* The daemon that granted the lease may be gone: detach may fail. */
	uw_detach(m);
	uw_disconnect(c);
	_exit(0);
}

/* In a child: attach name once, check it against ref; the names of the
 * tensors that fail, as lines, into bad. Returns how many failed. */
static int check_once(const struct daemon *d, const char *name, const char *ref, char *bad,
		      size_t badn)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[0]);
		struct ref r = {0};
		uw_client *c;
		uw_model *m;
		uint64_t xr = 7;
		char names[4096] = "";
		if (ref_open(&r, ref) || uw_connect(d->sock, &c) || uw_attach(c, name, &m)) {
			fprintf(stderr, "check %s: %s\n", name, uw_errmsg());
			_exit(255);
		}
		int n = check_model(m, &r, &xr, names, sizeof(names));
		uw_detach(m);
		uw_disconnect(c);
		size_t len = strlen(names);
		_exit(write(p[1], names, len) == (ssize_t)len ? n : 255);
	}
	close(p[1]);
	ssize_t got = read(p[0], bad, badn - 1);
	bad[got > 0 ? got : 0] = '\0';
	close(p[0]);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) != 255, "check %s: status 0x%x", name, st);
	return WEXITSTATUS(st);
}

/* ---- tests ------------------------------------------------------------- */

START_TEST(t_restart)
{
	struct rig g;
	rig_init(&g);
	g.backend = backend();
	struct daemon d;
	rig_start(&g, &d, 0);
	uw_client *c = dial_lib(&d);
	load_wait(&d, c, "stories");
	ck_assert_msg(notify_wait(&d, "FDNAME=uw.stories", 30000), "not stored: %s", d.notes);
	ck_assert_uint_eq(fake_store_count(&g.store, "uw.stories"), 2);   /* manifest, buffer */
	struct sizes before = model_sizes(c, "stories");
	uw_disconnect(c);
	char staged[512];
	snprintf(staged, sizeof(staged), "%s/stories.safetensors", d.allow);

	struct worker w;
	worker_start(&w, &d, "stories", g.ref);
	daemon_kill(&d);
	ck_assert_msg(access(staged, F_OK) != 0, "the checkpoint outlived its daemon's dir");
	worker_progress(&w, 2);   /* no daemon at all now */

	double t0 = now();
	rig_start(&g, &d, 1);     /* returns at READY=1: adoption comes before it */
	double took = now() - t0;
	c = dial_lib(&d);
	struct sizes after = model_sizes(c, "stories");
	ck_assert_uint_eq(after.tensors, before.tensors);
	ck_assert_uint_eq(after.raw, before.raw);
	ck_assert_uint_eq(after.resident, before.resident);
	ck_assert_uint_eq(after.used, before.used);
	struct json_value *doc = lib_stats(c);
	printf("restart (%s): ready %.3f s after the start, model adopted in %.3f s\n", backend(),
	       took, stat_num(stats_model(doc, "stories"), "load_seconds"));
	json_free(doc);
	char *log = rig_log(&g);
	ck_assert_msg(strstr(log, "fd store: stories: re-adopted ready without reading its files"),
		      "log: %s", log);
	free(log);

	struct uw_verify_result *v;
	ck_assert_msg(uw_verify(c, "stories", &v) == 0, "verify: %s", uw_errmsg());
	ck_assert_uint_eq(v->tensors, before.tensors);
	ck_assert_uint_eq(v->nbad, 0);
	uw_verify_free(v);
	char bad[4096];
	ck_assert_msg(check_once(&d, "stories", g.ref, bad, sizeof(bad)) == 0, "bad: %s", bad);
	worker_progress(&w, 2);
	worker_stop(&w);

	ck_assert_int_eq(uw_evict(c, "stories", 0), 0);
	ck_assert(notify_wait(&d, "FDSTOREREMOVE=1\nFDNAME=uw.stories", 5000));
	for (int i = 0; i < 200 && fake_store_count(&g.store, "uw.stories"); i++)
		sleep_ms(10);
	ck_assert_uint_eq(fake_store_count(&g.store, "uw.stories"), 0);
	uw_disconnect(c);
	daemon_stop(&d);
	rig_free(&g);
}
END_TEST

START_TEST(t_verify)
{
	struct rig g;
	rig_init(&g);
	g.backend = backend();
	g.prog = FAULTY;
	g.env = "UW_TEST_CORRUPT=bad";
	struct daemon d;
	rig_start(&g, &d, 0);
	uw_client *c = dial_lib(&d);
	load_wait(&d, c, "good");
	load_wait(&d, c, "bad");
	char bad[4096];
	ck_assert_msg(check_once(&d, "good", g.ref, bad, sizeof(bad)) == 0, "good: %s", bad);
	ck_assert_msg(check_once(&d, "bad", g.ref, bad, sizeof(bad)) == 1, "bad: %s", bad);
	bad[strcspn(bad, "\n")] = '\0';

	struct uw_verify_result *v;
	ck_assert_msg(uw_verify(c, "good", &v) == 0, "verify good: %s", uw_errmsg());
	ck_assert_uint_eq(v->nbad, 0);
	ck_assert_uint_eq(v->nnames, 0);
	uint64_t tensors = v->tensors;
	uw_verify_free(v);
	ck_assert_msg(uw_verify(c, "bad", &v) == 0, "verify bad: %s", uw_errmsg());
	ck_assert_uint_eq(v->tensors, tensors);
	ck_assert_uint_eq(v->nbad, 1);
	ck_assert_uint_eq(v->nnames, 1);
	ck_assert_str_eq(v->bad[0], bad);
	printf("verify (%s): %llu tensors, %llu bytes in %.3f s; the corrupt one: %s\n", backend(),
	       (unsigned long long)v->tensors, (unsigned long long)v->bytes, v->seconds, bad);
	uw_verify_free(v);
	uw_disconnect(c);
	daemon_stop(&d);
	rig_free(&g);
}
END_TEST

int main(void)
{
	rng = tu_seed();
	Suite *s = suite_create("restart_client");
	TCase *tc = tu_tcase(s, "restart_client", 300);
	tcase_add_test(tc, t_restart);
	tcase_add_test(tc, t_verify);
	return tu_run(s);
}
