/* check_verify: VERIFY against a real unweightd on the host backend. A good
 * model verifies clean. A model whose resident bytes were corrupted as
 * they were written (tests/unweightd-faults with UW_TEST_CORRUPT: one bit
 * of one tensor flipped after the encoder took its CRC-32C) is reported
 * with exactly the tensor that this test, reading the model through its
 * own read-only mapping, finds failing its checksum; the daemon logs it at
 * error level, stats flags it, and it is still served. unweightctl verify
 * says the same (exit status 1 when corrupt). The periodic verify
 * (verify_interval) keeps stats up to date with no request at all. An
 * unknown or malformed name is refused; a non-admin peer is refused in
 * check_policy. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "tests/daemonutil.h"
#include "tests/testutil.h"

#define FAULTY "tests/unweightd-faults"

static int log_has(const char *path, const char *a, const char *b)
{
	size_t n;
	char *text = tu_read_file(path, &n);
	int found = 0;
	for (const char *l = text; l && (l = strstr(l, a)); l++) {
		const char *end = strchr(l, '\n');
		const char *hit = strstr(l, b);
		if (hit && (!end || hit < end)) {
			found = 1;
			break;
		}
	}
	free(text);
	return found;
}

static void wait_log(const char *path, const char *a, const char *b)
{
	double end = now() + 10;
	while (!log_has(path, a, b) && now() < end)
		sleep_ms(10);
	ck_assert_msg(log_has(path, a, b), "the log has no line with \"%s\" then \"%s\"", a, b);
}

/* The tensors of model name whose bytes, read here through the client's
 * mapping, fail the CRC-32C of their layout: how many, and the first's
 * name in first. The test's own judge of what verify must find. */
static unsigned crc_failures(int fd, const char *name, char *first, size_t n)
{
	struct attached a;
	ck_assert_int_eq(req_attach(fd, name, &a), 0);
	ck_assert_uint_eq(a.r.nbufs, 1);
	size_t size = a.r.buf_size[0];
	const uint8_t *base = mmap(NULL, size, PROT_READ, MAP_SHARED, a.m.fds[0], 0);
	ck_assert(base != MAP_FAILED);
	unsigned bad = 0;
	for (uint32_t i = 0; i < a.r.ntensors; i++) {
		const struct proto_tensor *t = &a.r.tensors[i];
		if (crc32c(0, base + t->offset, t->layout.nbytes) != t->layout.crc32c && !bad++)
			snprintf(first, n, "%s", t->name);
	}
	munmap((void *)base, size);
	ck_assert_int_eq(req_detach(fd, a.r.lease), 0);
	attached_free(&a);
	return bad;
}

static const struct json_value *model_entry(const struct json_value *j, const char *name)
{
	const struct json_value *m = stats_model(j, name);
	ck_assert_msg(m, "stats lists no model %s", name);
	return m;
}

/* What stats says of the last verify of model: its state, verifies and
 * failures, and the bad tensors it names (checked against want: NULL for
 * none). */
static void verify_stats(const struct json_value *m, const char *state, uint64_t count,
			 uint64_t failures, const char *want_bad)
{
	ck_assert_str_eq(stat_str(m, "verify_state"), state);
	ck_assert_uint_eq(stat_u64(m, "verify_count"), count);
	ck_assert_uint_eq(stat_u64(m, "verify_failures"), failures);
	const struct json_value *bad = json_get(m, "verify_bad"), *at = json_get(m, "verified_at");
	ck_assert(bad && bad->type == JSON_ARR);
	ck_assert_uint_eq(stat_u64(m, "verify_bad_tensors"), want_bad ? 1 : 0);
	ck_assert_uint_eq(bad->u.arr.n, want_bad ? 1 : 0);
	if (want_bad) {
		ck_assert_int_eq(bad->u.arr.v[0].type, JSON_STR);
		ck_assert_str_eq(bad->u.arr.v[0].u.str.s, want_bad);
	}
	ck_assert(at && at->type == JSON_NUM);
	double wall = (double)time(NULL);
	ck_assert_msg(at->u.num.d > wall - 120 && at->u.num.d < wall + 2,
		      "verified_at %.3f, now %.0f", at->u.num.d, wall);
}

/* unweightctl's output and exit status. */
static int run_ctl(const struct daemon *d, const char *args, char *out, size_t n)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "'%s/ctl/unweightctl' --socket '%s' %s 2>&1", tu_builddir(),
		 d->sock, args);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	size_t got = fread(out, 1, n - 1, p);
	out[got] = '\0';
	int st = pclose(p);
	ck_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

/* The daemon with the corruption hook, model "bad" corrupted, "good" not. */
static int start_corrupting(struct daemon *d, const char *conf, const char *log)
{
	struct start_opts o = {.prog = FAULTY, .env = "UW_TEST_CORRUPT=bad", .log = log,
			       .conf = conf};
	daemon_start(d, &o);
	int fd = connect_hello(d);
	load_ready(d, fd, "good");
	load_ready(d, fd, "bad");
	return fd;
}

START_TEST(t_verify_request)
{
	char *dir = tu_tmpdir(), logf[512], bad_name[1100] = "", out[8192];
	snprintf(logf, sizeof(logf), "%s/log", dir);
	struct daemon d;
	int fd = start_corrupting(&d, NULL, logf);
	struct mstat sg = model_stat(fd, "good");
	ck_assert_uint_eq(crc_failures(fd, "good", bad_name, sizeof(bad_name)), 0);
	ck_assert_uint_eq(crc_failures(fd, "bad", bad_name, sizeof(bad_name)), 1);

	struct msg_verify_reply r;
	ck_assert_msg(req_verify(fd, "good", &r) == 0, "verify good: %s", last_msg);
	ck_assert_uint_eq(r.tensors, sg.tensors);
	ck_assert_uint_eq(r.nbad, 0);
	ck_assert_uint_eq(r.nnames, 0);
	ck_assert(r.bytes > 0 && r.bytes <= sg.resident);
	uint64_t good_bytes = r.bytes;
	msg_verify_reply_free(&r);

	ck_assert_msg(req_verify(fd, "bad", &r) == 0, "verify bad: %s", last_msg);
	ck_assert_uint_eq(r.tensors, sg.tensors);
	ck_assert_uint_eq(r.bytes, good_bytes);
	ck_assert_uint_eq(r.nbad, 1);
	ck_assert_uint_eq(r.nnames, 1);
	ck_assert_str_eq(r.bad[0], bad_name);
	msg_verify_reply_free(&r);

	struct json_value *j = req_stats(fd, "");
	ck_assert_ptr_nonnull(j);
	ck_assert_uint_eq(stat_u64(j, "verify_interval_s"), 0);
	verify_stats(model_entry(j, "good"), "ok", 1, 0, NULL);
	verify_stats(model_entry(j, "bad"), "corrupt", 1, 1, bad_name);
	json_free(j);
	wait_log(logf, "<3>verify bad (uid ", "CORRUPT: 1 of");
	wait_log(logf, "<3>verify bad (uid ", bad_name);

	/* Flagged, and still served. */
	struct attached a;
	ck_assert_int_eq(req_attach(fd, "bad", &a), 0);
	ck_assert_int_eq(req_detach(fd, a.r.lease), 0);
	attached_free(&a);

	ck_assert_int_eq(run_ctl(&d, "verify good", out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "good: ok: ") && strstr(out, "every CRC-32C matches"), "%s", out);
	ck_assert_int_eq(run_ctl(&d, "verify bad", out, sizeof(out)), 1);
	ck_assert_msg(strstr(out, "bad: CORRUPT: 1 of ") && strstr(out, bad_name), "%s", out);
	ck_assert_int_eq(run_ctl(&d, "verify bad --json", out, sizeof(out)), 1);
	struct uwerr e = {0};
	ck_assert_msg(json_parse(out, strlen(out), &j, &e) == 0, "%s: %s", e.msg, out);
	const struct json_value *ok = json_get(j, "ok"), *bad = json_get(j, "bad");
	ck_assert(ok && ok->type == JSON_BOOL && !ok->u.b);
	ck_assert(bad && bad->type == JSON_ARR && bad->u.arr.n == 1);
	ck_assert_str_eq(bad->u.arr.v[0].u.str.s, bad_name);
	ck_assert_uint_eq(stat_u64(j, "bad_tensors"), 1);
	ck_assert_uint_eq(stat_u64(j, "tensors"), sg.tensors);
	json_free(j);
	ck_assert_int_eq(run_ctl(&d, "stats bad", out, sizeof(out)), 0);
	ck_assert_msg(strstr(out, "CORRUPT (1 bad tensor: ") && strstr(out, "3 of 3 failed"),
		      "%s", out);

	/* Requests that verify nothing. */
	ck_assert_int_eq(req_verify(fd, "nosuch", &r), -ENOENT);
	ck_assert_msg(strstr(last_msg, "verify nosuch: no model of that name"), "%s", last_msg);
	ck_assert_int_eq(req_verify(fd, "../x", &r), -EBADMSG);
	ck_assert_msg(strstr(last_msg, "verify: name"), "%s", last_msg);
	ck_assert_int_eq(req_evict(fd, "good", 0), 0);
	ck_assert_int_eq(req_verify(fd, "good", &r), -ENOENT);
	close(fd);
	daemon_stop(&d);
	tu_rmtree(dir);
	free(dir);
}
END_TEST

/* verify_interval = 1: no request, and stats follows both models. */
START_TEST(t_verify_periodic)
{
	char *dir = tu_tmpdir(), logf[512], bad_name[1100] = "";
	snprintf(logf, sizeof(logf), "%s/log", dir);
	struct daemon d;
	int fd = start_corrupting(&d, "verify_interval = 1\n", logf);
	ck_assert_uint_eq(crc_failures(fd, "bad", bad_name, sizeof(bad_name)), 1);
	struct json_value *j = NULL;
	double end = now() + 60;
	for (;;) {
		j = req_stats(fd, "");
		ck_assert_ptr_nonnull(j);
		if (stat_u64(model_entry(j, "good"), "verify_count") >= 2 &&
		    stat_u64(model_entry(j, "bad"), "verify_count") >= 2)
			break;
		json_free(j);
		ck_assert_msg(now() < end, "no two periodic verifies of both models in 60 s");
		sleep_ms(50);
	}
	ck_assert_uint_eq(stat_u64(j, "verify_interval_s"), 1);
	const struct json_value *g = model_entry(j, "good"), *b = model_entry(j, "bad");
	uint64_t ng = stat_u64(g, "verify_count"), nb = stat_u64(b, "verify_count");
	verify_stats(g, "ok", ng, 0, NULL);
	verify_stats(b, "corrupt", nb, nb, bad_name);
	json_free(j);
	wait_log(logf, "<3>verify bad (periodic): CORRUPT", bad_name);
	wait_log(logf, "<6>verify good (periodic): ", "every CRC-32C matches");
	close(fd);
	daemon_stop(&d);   /* the periodic thread ends with it: exit status 0 */
	tu_rmtree(dir);
	free(dir);
}
END_TEST

int main(void)
{
	rng = tu_seed();
	Suite *s = suite_create("verify");
	TCase *tc = tu_tcase(s, "verify", 120);
	tcase_add_test(tc, t_verify_request);
	tcase_add_test(tc, t_verify_periodic);
	return tu_run(s);
}
