/* check_daemon: the real ./unweightd on a temporary socket, spoken to
 * through proto.h directly: HELLO and versions, load of the stories260K
 * fixture and attach (every tensor decoded from the sealed memfd equals the
 * source), refused loads, shards of an index checked against the
 * allow_dir, failed loads, leases and evict, malformed
 * messages, max_clients, stalled peers, systemd readiness, watchdog and
 * socket activation, prefer = size, and a clean exit on SIGTERM. The "load
 * faults" cases run tests/unweightd-faults (the reader's fault hooks compiled
 * in): short reads and O_DIRECT refused still load every byte; a read error, a file
 * truncated mid-load and a bundle payload changed on disk fail the load
 * cleanly while other models are served; so do a buffer the backend fails
 * to allocate and a write into it that fails (UW_TEST_ALLOC_FAULTS), and
 * the daemon then holds no more fds than before the load. */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/json.h"
#include "format/bundle.h"
#include "format/pack.h"
#include "format/source.h"
#include "tests/daemonutil.h"
#include "tests/testutil.h"

/* ---- tests ------------------------------------------------------------- */

START_TEST(t_hello_versions)
{
	struct daemon d;
	daemon_start(&d, NULL);
	/* No common version: a status naming both ranges, then the end. */
	int fd = dial(&d);
	uint16_t v;
	ck_assert_int_eq(hello_range(fd, PROTO_VERSION + 5, PROTO_VERSION + 9, &v), -EPROTONOSUPPORT);
	char want[64];
	snprintf(want, sizeof(want), "%u..%u", PROTO_VERSION + 5, PROTO_VERSION + 9);
	ck_assert_msg(strstr(last_msg, want), "\"%s\" lacks the client's range", last_msg);
	snprintf(want, sizeof(want), "%u..%u", PROTO_MIN_VERSION, PROTO_VERSION);
	ck_assert_msg(strstr(last_msg, want), "\"%s\" lacks the daemon's range", last_msg);
	struct proto_msg m;
	ck_assert_int_eq(proto_recv(fd, &m, NULL), -ECONNRESET);
	close(fd);

	/* A range reaching past ours settles on our highest. */
	fd = dial(&d);
	ck_assert_int_eq(hello_range(fd, PROTO_MIN_VERSION, PROTO_VERSION + 3, &v), 0);
	ck_assert_uint_eq(v, PROTO_VERSION);
	close(fd);

	/* Anything before HELLO is refused, and the connection closed. */
	fd = dial(&d);
	struct wbuf w = {0};
	struct msg_stats q = {.name = ""};
	enc_stats(&w, &q);
	ck_assert_int_eq(call_nobody(fd, OP_STATS, &w), -EPROTO);
	ck_assert_ptr_nonnull(strstr(last_msg, "HELLO"));
	ck_assert_int_eq(proto_recv(fd, &m, NULL), -ECONNRESET);
	close(fd);
	daemon_stop(&d);
}
END_TEST

START_TEST(t_load_attach)
{
	struct daemon d;
	daemon_start(&d, NULL);
	int fds0 = tu_count_fds();
	int fd = connect_hello(&d);
	const char *p = load_ready(&d, fd, "stories");
	ck_assert(notify_wait(&d, "STATUS=loading stories: ", 2000));

	struct source *src;
	const char *paths[1] = {p};
	ck_assert_int_eq(source_open(paths, 1, &src, NULL), 0);
	struct mstat s = model_stat(fd, "stories");
	ck_assert_uint_eq(s.tensors, source_count(src));
	ck_assert_uint_eq(s.raw, source_raw_total(src));
	ck_assert(s.progress == 1.0);
	ck_assert_uint_gt(s.resident, 0);
	ck_assert_uint_eq(s.used, s.resident);   /* after the load, it holds what it uses */
	ck_assert(s.ratio > 0 && s.ratio < 1.01);
	ck_assert_uint_eq(s.clients, 0);
	source_close(src);

	/* stats NAME gives the same model alone. */
	struct json_value *j = req_stats(fd, "stories");
	ck_assert_ptr_nonnull(j);
	ck_assert_uint_eq(json_get(j, "models")->u.arr.n, 1);
	json_free(j);
	ck_assert_ptr_null(req_stats(fd, "nosuch"));
	ck_assert_ptr_nonnull(strstr(last_msg, "nosuch"));

	struct attached a;
	ck_assert_msg(req_attach(fd, "stories", &a) == 0, "attach: %s", last_msg);
	ck_assert_uint_eq(a.r.buf_size[0], s.resident);
	verify_model(&a, fixture());
	s = model_stat(fd, "stories");
	ck_assert_uint_eq(s.clients, 1);
	ck_assert_uint_eq(s.attaches, 1);

	/* A second lease on the same connection, then both ended. */
	struct attached b;
	ck_assert_int_eq(req_attach(fd, "stories", &b), 0);
	ck_assert_uint_ne(b.r.lease, a.r.lease);
	ck_assert_uint_eq(model_stat(fd, "stories").clients, 2);
	ck_assert_int_eq(req_detach(fd, a.r.lease), 0);
	ck_assert_int_eq(req_detach(fd, a.r.lease), -ENOENT);
	ck_assert_int_eq(req_detach(fd, b.r.lease), 0);
	s = model_stat(fd, "stories");
	ck_assert_uint_eq(s.clients, 0);
	ck_assert_uint_eq(s.attaches, 2);
	attached_free(&a);
	attached_free(&b);

	ck_assert_int_eq(req_attach(fd, "nosuch", &a), -ENOENT);
	close(fd);
	ck_assert_int_eq(tu_count_fds(), fds0);
	daemon_stop(&d);
}
END_TEST

/* Eight processes attach at once, each checking every tensor. */
START_TEST(t_concurrent_clients)
{
	struct daemon d;
	daemon_start(&d, NULL);
	int fd = connect_hello(&d);
	load_ready(&d, fd, "stories");
	pid_t kids[8];
	for (int i = 0; i < 8; i++) {
		kids[i] = fork();
		ck_assert_int_ge(kids[i], 0);
		if (kids[i] == 0) {
			close(fd);
			int c = connect_hello(&d);
			struct attached a;
			ck_assert_int_eq(req_attach(c, "stories", &a), 0);
			verify_model(&a, fixture());
			ck_assert_int_eq(req_detach(c, a.r.lease), 0);
			attached_free(&a);
			close(c);
			_exit(0);
		}
	}
	for (int i = 0; i < 8; i++) {
		int st;
		ck_assert_int_eq(waitpid(kids[i], &st, 0), kids[i]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client %d failed (0x%x)", i, st);
	}
	struct mstat s = model_stat(fd, "stories");
	ck_assert_uint_eq(s.attaches, 8);
	ck_assert_uint_eq(s.clients, 0);
	close(fd);
	daemon_stop(&d);
}
END_TEST

START_TEST(t_load_refused)
{
	struct daemon d;
	daemon_start(&d, NULL);
	int fd = connect_hello(&d);
	const char *good = load_ready(&d, fd, "stories");
	struct mstat before = model_stat(fd, "stories");

	/* The name is taken. */
	ck_assert_int_eq(req_load(fd, "stories", good), -EEXIST);
	ck_assert_ptr_nonnull(strstr(last_msg, "stories"));

	/* Outside every allow_dir. */
	char out[512], link[512], trunc[512], rel[] = "stories260K.safetensors";
	snprintf(out, sizeof(out), "%s/outside.safetensors", d.dir);
	copy_file(fixture(), out, 0);
	ck_assert_int_eq(req_load(fd, "m1", out), -EACCES);
	ck_assert_msg(strstr(last_msg, "allow_dir"), "\"%s\"", last_msg);

	/* A symlink inside that points outside. */
	snprintf(link, sizeof(link), "%s/escape.safetensors", d.allow);
	ck_assert_int_eq(symlink(out, link), 0);
	ck_assert_int_eq(req_load(fd, "m2", link), -EACCES);
	ck_assert_msg(strstr(last_msg, out), "\"%s\" does not name where it resolves", last_msg);

	/* Relative, missing, a directory. */
	ck_assert_int_lt(req_load(fd, "m3", rel), 0);
	ck_assert_msg(strstr(last_msg, "absolute"), "\"%s\"", last_msg);
	snprintf(trunc, sizeof(trunc), "%s/missing.safetensors", d.allow);
	ck_assert_int_eq(req_load(fd, "m4", trunc), -ENOENT);
	snprintf(trunc, sizeof(trunc), "%s/sub", d.allow);
	ck_assert_int_eq(mkdir(trunc, 0755), 0);
	ck_assert_int_eq(req_load(fd, "m5", trunc), -EINVAL);

	/* Corrupt: cut short, and garbage. */
	snprintf(trunc, sizeof(trunc), "%s/trunc.safetensors", d.allow);
	copy_file(fixture(), trunc, 300000);
	int st = req_load(fd, "m6", trunc);
	ck_assert_msg(st < 0, "a truncated file was accepted");
	ck_assert_msg(strstr(last_msg, "m6") && strlen(last_msg) > 20, "\"%s\"", last_msg);
	snprintf(trunc, sizeof(trunc), "%s/garbage.safetensors", d.allow);
	ck_assert_int_eq(tu_write_file(trunc, "\x10\0\0\0\0\0\0\0{not json at all", 24), 0);
	ck_assert_int_lt(req_load(fd, "m7", trunc), 0);

	/* Bad names. */
	ck_assert_int_lt(req_load(fd, "../x", good), 0);

	/* None of them left a model, a failure record, or used memory. */
	struct json_value *j = req_stats(fd, "");
	ck_assert_uint_eq(json_get(j, "models")->u.arr.n, 1);
	json_free(j);
	struct mstat after = model_stat(fd, "stories");
	ck_assert_uint_eq(after.used, before.used);

	/* And the model it had still serves. */
	int fd2 = connect_hello(&d);
	struct attached a;
	ck_assert_int_eq(req_attach(fd2, "stories", &a), 0);
	verify_model(&a, fixture());
	attached_free(&a);
	close(fd2);
	close(fd);
	daemon_stop(&d);
}
END_TEST

/* An index in the allow dir mapping w000..w002 to shard1 and the
 * fixture's tensors to shard2 (names beside it). */
static void write_index(const char *path, const char *shard1, const char *shard2)
{
	struct source *src;
	const char *fx[1] = {fixture()};
	ck_assert_int_eq(source_open(fx, 1, &src, NULL), 0);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	ck_assert_ptr_nonnull(f);
	fprintf(f, "{\"metadata\":{},\"weight_map\":{");
	for (int i = 0; i < 3; i++)
		fprintf(f, "\"w%03d\":\"%s\",", i, shard1);
	for (size_t i = 0; i < source_count(src); i++)
		fprintf(f, "%s\"%s\":\"%s\"", i ? "," : "", source_tensor(src, i)->name, shard2);
	fprintf(f, "}}");
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(tu_write_file(path, text, len), 0);
	free(text);
	source_close(src);
}

/* The shards an index names are checked as opened: one that is a symlink
 * leading outside every allow_dir refuses the load, naming that shard; two
 * real shards beside the index load, and every tensor of both attaches. */
START_TEST(t_load_shards)
{
	struct daemon d;
	daemon_start(&d, NULL);
	int fd = connect_hello(&d);
	char shard1[512], idx[512], out[512], link[512];
	snprintf(shard1, sizeof(shard1), "%s/model-00001-of-00002.safetensors", d.allow);
	write_big(shard1, 3, 16, 64);
	stage(&d, "model-00002-of-00002.safetensors");
	snprintf(idx, sizeof(idx), "%s/model.safetensors.index.json", d.allow);
	write_index(idx, "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors");

	/* The second shard a symlink to a copy outside. */
	snprintf(out, sizeof(out), "%s/outside.safetensors", d.dir);
	copy_file(fixture(), out, 0);
	snprintf(link, sizeof(link), "%s/escape-00002.safetensors", d.allow);
	ck_assert_int_eq(symlink(out, link), 0);
	char evil[512];
	snprintf(evil, sizeof(evil), "%s/evil.safetensors.index.json", d.allow);
	write_index(evil, "model-00001-of-00002.safetensors", "escape-00002.safetensors");
	ck_assert_int_eq(req_load(fd, "evil", evil), -EACCES);
	ck_assert_msg(strstr(last_msg, "escape-00002.safetensors") && strstr(last_msg, "allow_dir"),
		      "\"%s\" does not name the shard", last_msg);
	ck_assert(!model_stat(fd, "evil").found);

	ck_assert_msg(req_load(fd, "sharded", idx) == 0, "load: %s", last_msg);
	struct mstat s = wait_loaded(fd, "sharded");
	ck_assert_msg(strcmp(s.state, "ready") == 0, "sharded: %s %s", s.state, s.error);
	struct attached a;
	ck_assert_int_eq(req_attach(fd, "sharded", &a), 0);
	ck_assert_uint_gt(a.r.ntensors, 3);
	verify_model(&a, idx);   /* every tensor of both shards */
	ck_assert_int_eq(req_detach(fd, a.r.lease), 0);
	attached_free(&a);
	close(fd);
	daemon_stop(&d);
}
END_TEST

/* A config file: its budget, socket group and mode take effect. */
START_TEST(t_config_file)
{
	struct group *gr = getgrgid(getegid());
	ck_assert_ptr_nonnull(gr);
	char conf[512];
	snprintf(conf, sizeof(conf), "# a budget too small for stories260K\n"
		 "budget = 256K   # bytes of the host\n\n"
		 "  socket_group = %s\n"
		 "socket_mode=0600\n", gr->gr_name);
	struct daemon d;
	struct start_opts o = {.conf = conf};
	daemon_start(&d, &o);
	struct stat sb;
	ck_assert_int_eq(stat(d.sock, &sb), 0);
	ck_assert(S_ISSOCK(sb.st_mode));
	ck_assert_uint_eq(sb.st_mode & 07777, 0600);
	ck_assert_uint_eq(sb.st_gid, gr->gr_gid);

	int fd = connect_hello(&d);
	struct mstat s = model_stat(fd, "none");
	ck_assert_uint_eq(s.budget, 256 * 1024);
	ck_assert_int_eq(req_load(fd, "stories", stage(&d, "s.safetensors")), -ENOSPC);
	ck_assert_msg(strstr(last_msg, "budget"), "\"%s\"", last_msg);
	s = model_stat(fd, "stories");
	ck_assert(!s.found);
	ck_assert_uint_eq(s.used, 0);
	close(fd);
	daemon_stop(&d);
}
END_TEST

/* A load that fails after it was accepted leaves no model and no memory
 * used, keeps its error for stats, and frees the name. */
START_TEST(t_failed_load)
{
	struct daemon d;
	struct start_opts o = {.conf = "load_threads = 1\n"};
	daemon_start(&d, &o);
	int fd = connect_hello(&d);
	char big[512];
	snprintf(big, sizeof(big), "%s/big.safetensors", d.allow);
	struct mstat s;
	int failed = 0;
	/* The file shrinks under the loader; retried in case the load won. */
	for (int tries = 0; tries < 5 && !failed; tries++) {
		write_big(big, 48, 1024, 512);
		ck_assert_msg(req_load(fd, "big", big) == 0, "load: %s", last_msg);
		ck_assert_int_eq(truncate(big, 4096), 0);
		s = wait_loaded(fd, "big");
		failed = strcmp(s.state, "failed") == 0;
		if (!failed)
			ck_assert_int_eq(req_evict(fd, "big", 0), 0);
	}
	ck_assert_msg(failed, "the load never saw its file shrink");
	ck_assert_msg(strstr(s.error, "big"), "error \"%s\"", s.error);
	ck_assert_uint_eq(s.used, 0);
	struct attached a;
	ck_assert_int_eq(req_attach(fd, "big", &a), -ENOENT);
	ck_assert_msg(strstr(last_msg, "failed"), "\"%s\"", last_msg);

	/* The name is free again. */
	const char *p = stage(&d, "s.safetensors");
	ck_assert_msg(req_load(fd, "big", p) == 0, "%s", last_msg);
	s = wait_loaded(fd, "big");
	ck_assert_str_eq(s.state, "ready");
	ck_assert_str_eq(s.error, "");
	close(fd);
	daemon_stop(&d);
}
END_TEST

/* While a large model loads, other models answer; evict --force cancels a
 * load; SIGTERM mid-load still exits 0. */
START_TEST(t_busy_loading)
{
	struct daemon d;
	struct start_opts o = {.conf = "load_threads = 1\n"};
	daemon_start(&d, &o);
	int fd = connect_hello(&d);
	load_ready(&d, fd, "stories");
	uint64_t used = model_stat(fd, "stories").used;
	char big[512];
	snprintf(big, sizeof(big), "%s/big.safetensors", d.allow);
	write_big(big, 48, 1024, 512);
	ck_assert_int_eq(req_load(fd, "big", big), 0);
	int fd2 = connect_hello(&d);
	struct attached a;
	ck_assert_int_eq(req_attach(fd2, "stories", &a), 0);
	struct mstat s = model_stat(fd2, "big");
	ck_assert(s.found);
	ck_assert(s.progress >= 0 && s.progress <= 1);
	if (strcmp(s.state, "loading") == 0)
		ck_assert_int_eq(req_attach(fd2, "big", &(struct attached){0}), -EAGAIN);
	attached_free(&a);

	/* Without force, a load in progress is not evicted; with it, it stops
	 * (unless it won the race and is simply evicted). */
	int st = req_evict(fd2, "big", 0);
	if (st == -EBUSY) {
		ck_assert_msg(strstr(last_msg, "loading"), "\"%s\"", last_msg);
		ck_assert_int_eq(req_evict(fd2, "big", UW_EVICT_FORCE), 0);
	} else {
		ck_assert_int_eq(st, 0);
	}
	double end = now() + 60;
	while ((s = model_stat(fd2, "big")).found || s.used != used) {
		ck_assert_msg(now() < end, "the evicted load never let go (%s)", s.state);
		sleep_ms(5);
	}

	ck_assert_int_eq(req_load(fd, "big2", big), 0);
	close(fd2);
	close(fd);
	daemon_stop(&d);
}
END_TEST

START_TEST(t_evict_leases)
{
	struct daemon d;
	daemon_start(&d, NULL);
	int op = connect_hello(&d), worker = connect_hello(&d);
	load_ready(&d, op, "stories");
	uint64_t used = model_stat(op, "stories").used;
	struct attached a;
	ck_assert_int_eq(req_attach(worker, "stories", &a), 0);

	ck_assert_int_eq(req_evict(op, "stories", 0), -EBUSY);
	ck_assert_msg(strstr(last_msg, "1 lease"), "\"%s\"", last_msg);
	ck_assert_int_eq(req_evict(op, "stories", UW_EVICT_FORCE), 0);

	/* Gone by name at once, memory held while the lease lasts. */
	struct attached b;
	ck_assert_int_eq(req_attach(op, "stories", &b), -ENOENT);
	ck_assert_msg(strstr(last_msg, "evict"), "\"%s\"", last_msg);
	struct mstat s = model_stat(op, "stories");
	ck_assert_str_eq(s.state, "evicting");
	ck_assert_uint_eq(s.used, used);
	verify_model(&a, fixture());   /* the worker's mapping still reads */

	/* The name can be loaded again meanwhile. */
	ck_assert_int_eq(req_load(op, "stories", stage(&d, "again.safetensors")), 0);
	ck_assert_str_eq(wait_loaded(op, "stories").state, "ready");
	ck_assert_uint_eq(model_stat(op, "stories").used, 2 * used);
	ck_assert_int_eq(req_evict(op, "stories", 0), 0);

	/* The last lease ends: the memory is released. */
	ck_assert_int_eq(req_detach(worker, a.r.lease), 0);
	attached_free(&a);
	s = model_stat(op, "stories");
	ck_assert(!s.found);
	ck_assert_uint_eq(s.used, 0);
	ck_assert_int_eq(req_evict(op, "stories", 0), -ENOENT);
	close(worker);
	close(op);
	daemon_stop(&d);
}
END_TEST

/* Poll until stats shows clients leases on name. */
static void wait_clients(int fd, const char *name, uint64_t clients)
{
	double end = now() + 30;
	while (model_stat(fd, name).clients != clients) {
		ck_assert_msg(now() < end, "%s never got to %llu clients", name,
			      (unsigned long long)clients);
		sleep_ms(5);
	}
}

/* A connection that closes, or a client killed with -9, ends its leases. */
START_TEST(t_close_releases)
{
	struct daemon d;
	daemon_start(&d, NULL);
	int op = connect_hello(&d);
	load_ready(&d, op, "stories");

	int w = connect_hello(&d);
	struct attached a;
	ck_assert_int_eq(req_attach(w, "stories", &a), 0);
	ck_assert_int_eq(req_evict(op, "stories", 0), -EBUSY);
	close(w);
	wait_clients(op, "stories", 0);

	int ready[2];
	ck_assert_int_eq(pipe(ready), 0);
	pid_t kid = fork();
	ck_assert_int_ge(kid, 0);
	if (kid == 0) {
		int c = connect_hello(&d);
		struct attached k;
		if (req_attach(c, "stories", &k) == 0 && write(ready[1], "x", 1) == 1)
			pause();
		_exit(1);
	}
	char x;
	ck_assert_int_eq(read(ready[0], &x, 1), 1);
	ck_assert_uint_eq(model_stat(op, "stories").clients, 1);
	ck_assert_int_eq(kill(kid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(kid, NULL, 0), kid);
	wait_clients(op, "stories", 0);
	ck_assert_int_eq(req_evict(op, "stories", 0), 0);
	ck_assert_uint_eq(model_stat(op, "stories").used, 0);
	close(ready[0]);
	close(ready[1]);
	attached_free(&a);
	close(op);
	daemon_stop(&d);
}
END_TEST


START_TEST(t_malformed)
{
	struct daemon d;
	daemon_start(&d, NULL);
	int op = connect_hello(&d);
	load_ready(&d, op, "stories");
	uint8_t h[PROTO_HDR_SIZE];

	/* Short: half a header, then the client's end closes. */
	int fd = dial(&d);
	raw_hdr(h, PROTO_MAGIC, PROTO_VERSION, OP_HELLO, 0, 0);
	ck_assert_int_eq(write(fd, h, 7), 7);
	shutdown(fd, SHUT_WR);
	expect_error_then_close(fd);

	/* Short payload: a header announcing more than comes. */
	fd = connect_hello(&d);
	raw_hdr(h, PROTO_MAGIC, PROTO_VERSION, OP_STATS, 100, 0);
	ck_assert_int_eq(write(fd, h, sizeof(h)), sizeof(h));
	ck_assert_int_eq(write(fd, "abc", 3), 3);
	shutdown(fd, SHUT_WR);
	expect_error_then_close(fd);

	/* Oversized: a length over the limit is refused before it is read. */
	fd = connect_hello(&d);
	raw_hdr(h, PROTO_MAGIC, PROTO_VERSION, OP_LOAD, PROTO_MAX_PAYLOAD + 1, 0);
	ck_assert_int_eq(write(fd, h, sizeof(h)), sizeof(h));
	expect_error_then_close(fd);

	/* Wrong magic. */
	fd = dial(&d);
	raw_hdr(h, 0x50545448, PROTO_VERSION, OP_HELLO, 0, 0);   /* "HTTP" */
	ck_assert_int_eq(write(fd, h, sizeof(h)), sizeof(h));
	expect_error_then_close(fd);

	/* Wrong version after HELLO agreed on one. */
	fd = connect_hello(&d);
	raw_hdr(h, PROTO_MAGIC, PROTO_VERSION + 7, OP_STATS, 0, 0);
	ck_assert_int_eq(write(fd, h, sizeof(h)), sizeof(h));
	expect_error_then_close(fd);

	/* Unknown opcode: refused, and the connection keeps serving. */
	fd = connect_hello(&d);
	struct wbuf w = {0};
	wb_u32(&w, 42);
	ck_assert_int_eq(call_nobody(fd, 77, &w), -EOPNOTSUPP);
	stats_ok(fd);

	/* A payload that does not decode: -EBADMSG, and on it goes. */
	w = (struct wbuf){0};
	wb_u32(&w, 0xffffffffu);   /* a string length past the end */
	ck_assert_int_eq(call_nobody(fd, OP_ATTACH, &w), -EBADMSG);
	ck_assert_uint_gt(strlen(last_msg), 0);
	w = (struct wbuf){0};
	struct msg_stats q = {.name = ""};
	enc_stats(&w, &q);
	wb_u8(&w, 0);              /* a trailing byte */
	ck_assert_int_eq(call_nobody(fd, OP_STATS, &w), -EBADMSG);
	stats_ok(fd);

	/* An fd where none belongs: refused, and the daemon closed its copy
	 * (the pipe's read end sees EOF once ours is closed too). */
	int pfd[2];
	ck_assert_int_eq(pipe2(pfd, O_CLOEXEC | O_NONBLOCK), 0);
	w = (struct wbuf){0};
	enc_stats(&w, &q);
	struct uwerr e = {0};
	ck_assert_int_eq(proto_send(fd, PROTO_VERSION, OP_STATS, w.p, (uint32_t)w.len, &pfd[1], 1, &e), 0);
	wb_free(&w);
	struct proto_msg m;
	struct rbuf rb;
	ck_assert_int_eq(recv_reply(fd, OP_STATS, &m, &rb), -EBADMSG);
	ck_assert_msg(strstr(last_msg, "fd"), "\"%s\"", last_msg);
	proto_msg_free(&m);
	close(pfd[1]);
	char c;
	ck_assert_int_eq(read(pfd[0], &c, 1), 0);
	close(pfd[0]);
	stats_ok(fd);
	close(fd);

	/* Through all of it, the model kept serving. */
	fd = connect_hello(&d);
	struct attached a;
	ck_assert_int_eq(req_attach(fd, "stories", &a), 0);
	verify_model(&a, fixture());
	attached_free(&a);
	close(fd);
	close(op);
	daemon_stop(&d);
}
END_TEST

/* A peer that stops inside a message loses its connection after
 * io_timeout_ms; one idle between messages keeps it. */
START_TEST(t_stalled_peer)
{
	struct daemon d;
	struct start_opts o = {.conf = "io_timeout_ms = 200\n"};
	daemon_start(&d, &o);
	int idle = connect_hello(&d);
	int fd = connect_hello(&d);
	uint8_t h[PROTO_HDR_SIZE];
	raw_hdr(h, PROTO_MAGIC, PROTO_VERSION, OP_STATS, 64, 0);
	ck_assert_int_eq(write(fd, h, 10), 10);
	double t0 = now();
	expect_error_then_close(fd);
	ck_assert(now() - t0 >= 0.2);
	sleep_ms(300);
	stats_ok(idle);
	close(idle);
	daemon_stop(&d);
}
END_TEST

START_TEST(t_max_clients)
{
	struct daemon d;
	struct start_opts o = {.conf = "max_clients = 2\n"};
	daemon_start(&d, &o);
	int a = connect_hello(&d), b = connect_hello(&d);
	int c = dial(&d);
	uint16_t v;
	ck_assert_int_eq(hello_range(c, PROTO_MIN_VERSION, PROTO_VERSION, &v), -EUSERS);
	ck_assert_msg(strstr(last_msg, "max_clients"), "\"%s\"", last_msg);
	close(c);
	close(a);
	/* Once the daemon has seen a go, a new client fits again. */
	double end = now() + 30;
	for (;;) {
		c = dial(&d);
		int st = hello_range(c, PROTO_MIN_VERSION, PROTO_VERSION, &v);
		if (st == 0)
			break;
		ck_assert_int_eq(st, -EUSERS);
		close(c);
		ck_assert(now() < end);
		sleep_ms(10);
	}
	stats_ok(b);
	stats_ok(c);
	close(b);
	close(c);
	daemon_stop(&d);
}
END_TEST

/* READY=1 (every start waits for it), STATUS= while loading, WATCHDOG=1 at
 * half the interval, STOPPING=1 (every stop checks it). */
START_TEST(t_notify)
{
	struct daemon d;
	struct start_opts o = {.env = "WATCHDOG_USEC=200000"};
	daemon_start(&d, &o);
	ck_assert_msg(notify_wait(&d, "WATCHDOG=1", 5000), "no WATCHDOG=1 (notes: %s)", d.notes);
	int fd = connect_hello(&d);
	load_ready(&d, fd, "stories");
	ck_assert_msg(notify_wait(&d, "STATUS=loading stories: 100%", 2000), "notes: %s", d.notes);
	close(fd);
	daemon_stop(&d);
}
END_TEST

/* Socket activation: the listening socket comes as fd 3. */
START_TEST(t_socket_activation)
{
	char *dir = tu_tmpdir();
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/activated.sock", dir);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(lfd, 0);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(lfd, 16), 0);

	struct daemon d;
	struct start_opts o = {.activate_fd = lfd};
	daemon_start(&d, &o);
	close(lfd);
	char bound[108];
	snprintf(bound, sizeof(bound), "%s", d.sock);
	snprintf(d.sock, sizeof(d.sock), "%s", sa.sun_path);
	int fd = connect_hello(&d);
	load_ready(&d, fd, "stories");
	struct attached a;
	ck_assert_int_eq(req_attach(fd, "stories", &a), 0);
	verify_model(&a, fixture());
	attached_free(&a);
	close(fd);
	struct stat sb;
	ck_assert_msg(stat(bound, &sb) < 0, "it bound --socket %s as well", bound);
	daemon_stop(&d);
	ck_assert_msg(stat(sa.sun_path, &sb) == 0, "it removed systemd's socket");
	tu_rmtree(dir);
	free(dir);
}
END_TEST

/* A non-listening socket as fd 3 is refused plainly. */
START_TEST(t_bad_activation)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char p[32], bin[1024];
		dup2(sv[0], 3);
		snprintf(p, sizeof(p), "%ld", (long)getpid());
		setenv("LISTEN_FDS", "1", 1);
		setenv("LISTEN_PID", p, 1);
		snprintf(bin, sizeof(bin), "%s/unweightd", tu_builddir());
		execl(bin, "unweightd", "--config", "/dev/null", "--backend", "host",
		      "--socket", "/nonexistent/x.sock", (char *)NULL);
		_exit(127);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* The host backend runs no kernels: TUNE says so plainly, through the
 * protocol and through unweightctl, and writes nothing; tune = on-load
 * leaves its loads alone; stats describe the tuner with its directory. */
START_TEST(t_tune_host)
{
	char conf[600], cmd[2048], out[4096] = "", line[1024], *tdir = tu_tmpdir();
	snprintf(conf, sizeof(conf), "tune = on-load\ntune_dir = %s\n", tdir);
	struct daemon d;
	struct start_opts o = {.conf = conf};
	daemon_start(&d, &o);
	int fd = connect_hello(&d);
	load_ready(&d, fd, "stories");
	uint64_t job = 0;
	ck_assert_int_eq(req_tune(fd, "stories", 0, &job), -EOPNOTSUPP);
	ck_assert_msg(strstr(last_msg, "tune stories: nothing to tune: the host backend runs no "
			     "GPU kernels"), "\"%s\"", last_msg);
	ck_assert_int_eq(req_tune(fd, "", UW_TUNE_FORCE, &job), -EOPNOTSUPP);
	ck_assert_msg(strstr(last_msg, "nothing to tune"), "\"%s\"", last_msg);
	ck_assert_int_eq(req_tune(fd, "stories", 4, &job), -EBADMSG);
	ck_assert_msg(strstr(last_msg, "unknown bits 0x4"), "\"%s\"", last_msg);
	ck_assert_uint_eq(job, 0);

	struct json_value *doc = req_stats(fd, "");
	const struct json_value *t = doc ? json_get(doc, "tune") : NULL, *v;
	ck_assert_msg(t && t->type == JSON_OBJ, "stats without a tune object");
	ck_assert((v = json_get(t, "state")) && v->type == JSON_STR &&
		  !strcmp(v->u.str.s, "unavailable"));
	ck_assert((v = json_get(t, "dir")) && v->type == JSON_STR && !strcmp(v->u.str.s, tdir));
	ck_assert((v = json_get(t, "on_load")) && v->type == JSON_BOOL && v->u.b);
	json_free(doc);

	snprintf(cmd, sizeof(cmd), "'%s/ctl/unweightctl' --socket '%s' tune stories 2>&1",
		 tu_builddir(), d.sock);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	while (fgets(line, sizeof(line), p))
		strncat(out, line, sizeof(out) - strlen(out) - 1);
	int st = pclose(p);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "unweightctl tune: status %d", st);
	ck_assert_msg(strstr(out, "unweightctl: tune stories: nothing to tune: the host backend"),
		      "\"%s\"", out);

	char file[600];
	snprintf(file, sizeof(file), "%s/matmul.tune", tdir);
	ck_assert_int_eq(access(file, F_OK), -1);
	stats_ok(fd);
	close(fd);
	daemon_stop(&d);
	tu_rmtree(tdir);
	free(tdir);
}
END_TEST

/* Config and flag errors name what is wrong, and where. */
static int run_daemon(const char *conf_text, const char *flag, char *err, size_t errlen)
{
	char *dir = tu_tmpdir(), conf[512], bin[1024], errf[512];
	snprintf(conf, sizeof(conf), "%s/u.conf", dir);
	snprintf(errf, sizeof(errf), "%s/err", dir);
	snprintf(bin, sizeof(bin), "%s/unweightd", tu_builddir());
	ck_assert_int_eq(tu_write_file(conf, conf_text, strlen(conf_text)), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(errf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		dup2(fd, 2);
		execl(bin, "unweightd", "--config", conf, "--socket", "/nonexistent/x.sock",
		      flag ? flag : "--foreground", (char *)NULL);
		_exit(127);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	size_t n;
	char *text = tu_read_file(errf, &n);
	snprintf(err, errlen, "%.*s", text ? (int)n : 0, text ? text : "");
	free(text);
	tu_rmtree(dir);
	free(dir);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(t_config_errors)
{
	char err[2048];
	ck_assert_int_eq(run_daemon("# fine\n\nbogus_key = 1\n", NULL, err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "u.conf:3") && strstr(err, "bogus_key"), "%s", err);
	ck_assert_int_eq(run_daemon("socket_mode = 999\n", NULL, err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "u.conf:1") && strstr(err, "socket_mode"), "%s", err);
	ck_assert_int_eq(run_daemon("budget = lots\n", NULL, err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "budget"), "%s", err);
	ck_assert_int_eq(run_daemon("no equals sign\n", NULL, err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "u.conf:1"), "%s", err);
	ck_assert_int_eq(run_daemon("", "--log-level=loud", err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "--log-level"), "%s", err);
	ck_assert_int_eq(run_daemon("load_io = fast\n", NULL, err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "u.conf:1") && strstr(err, "load_io: 'fast' is not auto, direct "
			  "or buffered"), "%s", err);
	ck_assert_int_eq(run_daemon("", "--load-io=sideways", err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "--load-io") && strstr(err, "sideways"), "%s", err);
	ck_assert_int_eq(run_daemon("encode = fpga\n", NULL, err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "u.conf:1") && strstr(err, "encode: 'fpga' is not auto, cpu or gpu"),
		      "%s", err);
	ck_assert_int_eq(run_daemon("backend = host\n", "--encode=gpu", err, sizeof(err)), 1);
	ck_assert_msg(strstr(err, "encode = gpu: backend host encodes on the CPU only"), "%s", err);
	ck_assert_int_eq(run_daemon("prefer = smallest\n", NULL, err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "u.conf:1: prefer: 'smallest' is not speed or size"), "%s", err);
	ck_assert_int_eq(run_daemon("", "--prefer=fast", err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "--prefer: prefer: 'fast' is not speed or size"), "%s", err);
	ck_assert_int_eq(run_daemon("encode = gpu\n", "--prefer=size", err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "encode = gpu and prefer = size") && strstr(err, "on the CPU"),
		      "%s", err);
	/* both words pass, in the file and as a flag: the start fails later, at the allow_dir */
	ck_assert_int_eq(run_daemon("prefer = size\nprefer = speed\nallow_dir = /nonexistent/models\n",
				    "--prefer=size", err, sizeof(err)), 1);
	ck_assert_msg(strstr(err, "/nonexistent/models") && !strstr(err, "prefer"), "%s", err);
#ifndef HAVE_CUDA
	/* (Built with CUDA, the cuda backend is tested on a GPU host.) */
	ck_assert_int_eq(run_daemon("", "--backend=cuda", err, sizeof(err)), 1);
	ck_assert_msg(strstr(err, "cuda") && strstr(err, "not built"), "%s", err);
#endif
	ck_assert_int_eq(run_daemon("budget.gpu7 = 1G\nbackend = host\n", NULL, err, sizeof(err)), 1);
	ck_assert_msg(strstr(err, "gpu7"), "%s", err);
	ck_assert_int_eq(run_daemon("max_request_bytes = 100\n", NULL, err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "max_request_bytes: '100' is not a number from 4096"), "%s", err);
	ck_assert_int_eq(run_daemon("admin = root no-such-user-here\n", NULL, err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "u.conf:1: admin: 'no-such-user-here': no such user"), "%s", err);
	ck_assert_int_eq(run_daemon("attach.../x = *\n", NULL, err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "not a model name"), "%s", err);
	ck_assert_int_eq(run_daemon("", "--attach=m=@no-such-group-here", err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "--attach") && strstr(err, "no such group"), "%s", err);
	ck_assert_int_eq(run_daemon("tune = always\n", NULL, err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "u.conf:1: tune: 'always' is not off or on-load"), "%s", err);
	ck_assert_int_eq(run_daemon("", "--tune=sometimes", err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "--tune") && strstr(err, "sometimes"), "%s", err);
	ck_assert_int_eq(run_daemon("tune_dir = cache\n", NULL, err, sizeof(err)), 2);
	ck_assert_msg(strstr(err, "tune_dir: 'cache' is not an absolute path"), "%s", err);
	ck_assert_int_eq(run_daemon("allow_dir = /nonexistent/models\n", NULL, err, sizeof(err)), 1);
	ck_assert_msg(strstr(err, "/nonexistent/models"), "%s", err);
}
END_TEST

/* prefer = size in the config file reaches the loads: the log names it,
 * BF16 matrices come as R11 where that is smaller, and every tensor
 * decodes to its source bytes. */
START_TEST(t_config_prefer)
{
	char *dir = tu_tmpdir(), logf[512];
	snprintf(logf, sizeof(logf), "%s/unweightd.log", dir);
	struct daemon d;
	struct start_opts o = {.conf = "prefer = size\n", .log = logf};
	daemon_start(&d, &o);
	int fd = connect_hello(&d);
	load_ready(&d, fd, "stories");
	struct attached a;
	ck_assert_msg(req_attach(fd, "stories", &a) == 0, "attach: %s", last_msg);
	verify_model(&a, fixture());
	size_t r11 = 0;
	for (uint32_t i = 0; i < a.r.ntensors; i++)
		r11 += a.r.tensors[i].layout.format == UW_FORMAT_R11;
	ck_assert_uint_gt(r11, 0);
	attached_free(&a);
	size_t n;
	char *log = tu_read_file(logf, &n);
	const char *want = "encoding on the CPU, prefer size (R12 or R11)\n";
	ck_assert_msg(log && memmem(log, n, want, strlen(want)), "log: %.*s", log ? (int)n : 0,
		      log ? log : "");
	free(log);
	close(fd);
	daemon_stop(&d);
	tu_rmtree(dir);
	free(dir);
}
END_TEST

/* A socket file another daemon answers on is refused; a stale one (its
 * daemon killed) is replaced. */
START_TEST(t_stale_socket)
{
	struct daemon d;
	daemon_start(&d, NULL);
	char err[2048], flag[300];
	snprintf(flag, sizeof(flag), "--socket=%s", d.sock);
	ck_assert_int_eq(run_daemon("backend = host\n", flag, err, sizeof(err)), 1);
	ck_assert_msg(strstr(err, "another daemon answers"), "%s", err);
	int fd = connect_hello(&d);
	stats_ok(fd);
	close(fd);

	kill(d.pid, SIGKILL);
	ck_assert_int_eq(waitpid(d.pid, NULL, 0), d.pid);
	struct stat sb;
	ck_assert_int_eq(stat(d.sock, &sb), 0);
	struct daemon d2;
	struct start_opts o = {.sock = d.sock};
	daemon_start(&d2, &o);
	fd = connect_hello(&d2);
	stats_ok(fd);
	close(fd);
	daemon_stop(&d2);
	daemon_forget(&d);
}
END_TEST


/* ---- load faults (tests/unweightd-faults) ------------------------------- */

#define FAULTY "tests/unweightd-faults"

/* A 48 MiB checkpoint of 1 MiB tensors whose data starts off any block
 * boundary (the header is not a multiple of 4096), so O_DIRECT reads are
 * aligned super-ranges sliced, and its bundle. */
static void write_big_and_bundle(const struct daemon *d, char *st, char *uwb, size_t n)
{
	snprintf(st, n, "%s/big.safetensors", d->allow);
	snprintf(uwb, n, "%s/big.uwb", d->allow);
	write_big(st, 48, 1024, 512);
	struct uwerr e = {0};
	struct pack_stats ps;
	const char *paths[1] = {st};
	ck_assert_msg(bundle_pack(paths, 1, uwb, 2, 0, &ps, &e) == 0, "pack: %s", e.msg);
}

static void load_verify(int fd, const char *name, const char *path)
{
	ck_assert_msg(req_load(fd, name, path) == 0, "load %s: %s", name, last_msg);
	struct mstat s = wait_loaded(fd, name);
	ck_assert_msg(strcmp(s.state, "ready") == 0, "%s: %s %s", name, s.state, s.error);
	struct attached a;
	ck_assert_msg(req_attach(fd, name, &a) == 0, "attach %s: %s", name, last_msg);
	verify_model(&a, path);
	attached_free(&a);
}

static void loads_despite(const char *faults)
{
	char env[128];
	snprintf(env, sizeof(env), "UW_TEST_READ_FAULTS=%s", faults);
	struct daemon d;
	struct start_opts o = {.conf = "load_io = direct\n", .env = env, .prog = FAULTY};
	daemon_start(&d, &o);
	int fd = connect_hello(&d);
	char st[512], uwb[512];
	write_big_and_bundle(&d, st, uwb, sizeof(st));
	load_verify(fd, "big", st);
	load_verify(fd, "bigb", uwb);
	load_verify(fd, "stories", stage(&d, "stories260K.safetensors"));
	close(fd);
	daemon_stop(&d);
}

START_TEST(t_load_short_reads)
{
	loads_despite("short=100000");
}
END_TEST

START_TEST(t_load_direct_refused)
{
	loads_despite("einval");
}
END_TEST

/* unweightctl load --wait, its stderr a pipe: plain progress lines while
 * the reads wait at the gate, then the summary. */
START_TEST(t_ctl_wait_lines)
{
	char *gdir = tu_tmpdir(), env[600], go[520], cmd[2048];
	ck_assert_ptr_nonnull(gdir);
	snprintf(go, sizeof(go), "%s/go", gdir);
	snprintf(env, sizeof(env), "UW_TEST_READ_FAULTS=gate=0:%s", go);
	struct daemon d;
	struct start_opts o = {.env = env, .prog = FAULTY};
	daemon_start(&d, &o);
	char st[512];
	snprintf(st, sizeof(st), "%s/big.safetensors", d.allow);
	write_big(st, 48, 1024, 512);
	snprintf(cmd, sizeof(cmd), "'%s/ctl/unweightctl' --socket '%s' load big '%s' --wait 2>&1",
		 tu_builddir(), d.sock, st);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	char line[1024], out[8192] = "";
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), p));
	ck_assert_msg(strstr(line, "load big: 0% (0 B of 48.0 MiB)"), "first line \"%s\"", line);
	ck_assert_int_eq(tu_write_file(go, "", 0), 0);
	while (fgets(line, sizeof(line), p))
		strncat(out, line, sizeof(out) - strlen(out) - 1);
	ck_assert_int_eq(pclose(p), 0);
	ck_assert_msg(strstr(out, "big: ready, 48 tensors"), "then \"%s\"", out);
	daemon_stop(&d);
	tu_rmtree(gdir);
	free(gdir);
}
END_TEST

/* A load that fails after its reply: no model and no memory left (used
 * is back where it was before the load), its error in stats, and the model
 * loaded before it still served. */
static void fails_cleanly(struct daemon *d, int fd, uint64_t used, const char *where,
			  const char *want)
{
	struct mstat s = wait_loaded(fd, "big");
	ck_assert_str_eq(s.state, "failed");
	ck_assert_msg(strstr(s.error, where) && strstr(s.error, want),
		      "error \"%s\" (wanted %s: %s)", s.error, where, want);
	ck_assert_uint_eq(s.used, used);
	ck_assert_msg(notify_wait(d, "STATUS=load of big failed", 2000), "%s", d->notes);
	struct attached a;
	ck_assert_int_eq(req_attach(fd, "big", &a), -ENOENT);
	ck_assert_msg(req_attach(fd, "stories", &a) == 0, "%s", last_msg);
	verify_model(&a, fixture());
	attached_free(&a);
}

/* The fault daemon with env, stories loaded, and big.safetensors (48 MiB)
 * load accepted: the connection, and the memory used before big. */
static int faulty_big_load(struct daemon *d, const char *env, uint64_t *used, char *st, size_t n)
{
	struct start_opts o = {.env = env, .prog = FAULTY};
	daemon_start(d, &o);
	int fd = connect_hello(d);
	load_ready(d, fd, "stories");
	snprintf(st, n, "%s/big.safetensors", d->allow);
	write_big(st, 48, 1024, 512);
	*used = model_stat(fd, "stories").used;
	ck_assert_msg(req_load(fd, "big", st) == 0, "%s", last_msg);
	return fd;
}

START_TEST(t_load_read_error)
{
	struct daemon d;
	char st[512];
	uint64_t used;
	int fd = faulty_big_load(&d, "UW_TEST_READ_FAULTS=eio=20000000", &used, st, sizeof(st));
	fails_cleanly(&d, fd, used, "big.safetensors", "Input/output error");
	close(fd);
	daemon_stop(&d);
}
END_TEST

/* A bundle whose payload was changed on disk after it was written: the
 * checksum checked as the tensor arrives fails the load, cleanly. */
START_TEST(t_load_bad_payload)
{
	struct daemon d;
	daemon_start(&d, NULL);
	int fd = connect_hello(&d);
	load_ready(&d, fd, "stories");
	char st[512], uwb[512];
	write_big_and_bundle(&d, st, uwb, sizeof(st));
	struct bundle *b;
	struct uwerr e = {0};
	ck_assert_msg(bundle_open(uwb, &b, &e) == 0, "%s", e.msg);
	const struct bundle_tensor *t = &b->tensors[b->ntensors / 2];
	uint64_t at = t->offset + t->length / 2;
	char name[256];
	snprintf(name, sizeof(name), "%s", t->name);
	bundle_close(b);
	int f = open(uwb, O_RDWR | O_CLOEXEC);
	unsigned char c;
	ck_assert_int_eq(pread(f, &c, 1, (off_t)at), 1);
	c ^= 0x10;
	ck_assert_int_eq(pwrite(f, &c, 1, (off_t)at), 1);
	close(f);
	uint64_t used = model_stat(fd, "stories").used;
	ck_assert_msg(req_load(fd, "big", uwb) == 0, "%s", last_msg);
	struct mstat s = wait_loaded(fd, "big");
	ck_assert_str_eq(s.state, "failed");
	ck_assert_msg(strstr(s.error, name) && strstr(s.error, "payload CRC-32C mismatch"),
		      "error \"%s\" (tensor %s)", s.error, name);
	ck_assert_uint_eq(s.used, used);
	struct attached a;
	ck_assert_int_eq(req_attach(fd, "big", &a), -ENOENT);
	ck_assert_msg(req_attach(fd, "stories", &a) == 0, "%s", last_msg);
	attached_free(&a);
	close(fd);
	daemon_stop(&d);
}
END_TEST

/* The backend fails to allocate the buffer (create=2: stories took the
 * first), or a write into it mid-load (stories makes fewer than 60): the
 * load fails cleanly and its buffer's fd is closed. */
static void alloc_fails_cleanly(const char *faults, const char *where)
{
	struct daemon d;
	char st[512], env[128];
	uint64_t used;
	snprintf(env, sizeof(env), "UW_TEST_ALLOC_FAULTS=%s", faults);
	struct start_opts o = {.env = env, .prog = FAULTY};
	daemon_start(&d, &o);
	int fd = connect_hello(&d);
	load_ready(&d, fd, "stories");
	snprintf(st, sizeof(st), "%s/big.safetensors", d.allow);
	write_big(st, 48, 1024, 512);
	used = model_stat(fd, "stories").used;
	int fds = fd_count(d.pid);
	ck_assert_msg(req_load(fd, "big", st) == 0, "%s", last_msg);
	fails_cleanly(&d, fd, used, where, "injected allocation failure");
	fds_back_to(d.pid, fds);
	close(fd);
	daemon_stop(&d);
}

START_TEST(t_alloc_create_fails)
{
	alloc_fails_cleanly("create=2", "load big: buffer of");
}
END_TEST

START_TEST(t_alloc_write_fails)
{
	alloc_fails_cleanly("write=60", "load big: tensor");
}
END_TEST

/* The reads wait at a gate until the test has cut the file: the load was
 * admitted whole, and must find its file ending early. */
START_TEST(t_load_truncated)
{
	char *gdir = tu_tmpdir(), env[600], go[520];
	ck_assert_ptr_nonnull(gdir);
	snprintf(go, sizeof(go), "%s/go", gdir);
	snprintf(env, sizeof(env), "UW_TEST_READ_FAULTS=gate=%u:%s", 4u << 20, go);
	struct daemon d;
	char st[512];
	uint64_t used;
	int fd = faulty_big_load(&d, env, &used, st, sizeof(st));
	ck_assert_int_eq(truncate(st, 8u << 20), 0);
	ck_assert_int_eq(tu_write_file(go, "", 0), 0);
	fails_cleanly(&d, fd, used, "big.safetensors", "truncated");
	close(fd);
	daemon_stop(&d);
	tu_rmtree(gdir);
	free(gdir);
}
END_TEST

int main(void)
{
	rng = tu_seed();
	Suite *s = suite_create("daemon");
	TCase *tc = tu_tcase(s, "daemon", 300);
	tcase_add_test(tc, t_hello_versions);
	tcase_add_test(tc, t_load_attach);
	tcase_add_test(tc, t_concurrent_clients);
	tcase_add_test(tc, t_load_refused);
	tcase_add_test(tc, t_load_shards);
	tcase_add_test(tc, t_config_file);
	tcase_add_test(tc, t_failed_load);
	tcase_add_test(tc, t_busy_loading);
	tcase_add_test(tc, t_evict_leases);
	tcase_add_test(tc, t_close_releases);
	tcase_add_test(tc, t_malformed);
	tcase_add_test(tc, t_stalled_peer);
	tcase_add_test(tc, t_max_clients);
	tcase_add_test(tc, t_notify);
	tcase_add_test(tc, t_socket_activation);
	tcase_add_test(tc, t_bad_activation);
	tcase_add_test(tc, t_config_errors);
	tcase_add_test(tc, t_config_prefer);
	tcase_add_test(tc, t_tune_host);
	tcase_add_test(tc, t_stale_socket);
	tc = tu_tcase(s, "load faults", 300);
	tcase_add_test(tc, t_load_short_reads);
	tcase_add_test(tc, t_load_direct_refused);
	tcase_add_test(tc, t_load_read_error);
	tcase_add_test(tc, t_load_truncated);
	tcase_add_test(tc, t_load_bad_payload);
	tcase_add_test(tc, t_alloc_create_fails);
	tcase_add_test(tc, t_alloc_write_fails);
	tcase_add_test(tc, t_ctl_wait_lines);
	return tu_run(s);
}
