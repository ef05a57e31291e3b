/* check_crash: clients killed at every step of the protocol, and the
 * daemon killed during a load. After a client dies, wherever it was, the
 * daemon holds no lease of it and no more fds than before (/proc/PID/fd),
 * and serves the next client bit-exact. After a SIGKILL mid-load, the next
 * daemon starts on the same socket path (the stale socket replaced), the
 * partial model is nowhere (not listed, not in the fd store, no memfd of
 * it held by any process), and the finished model is re-adopted. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/daemonutil.h"
#include "tests/testutil.h"

static void send_all(int fd, const void *p, size_t n)
{
	ck_assert_int_eq(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* An attach request for stories, as it goes on the wire. */
static struct wbuf attach_wire(void)
{
	struct wbuf p = {0}, w = {0};
	struct msg_attach q = {.name = "stories"};
	enc_attach(&p, &q);
	uint8_t h[PROTO_HDR_SIZE];
	raw_hdr(h, PROTO_MAGIC, PROTO_VERSION, OP_ATTACH, (uint32_t)p.len, 0);
	wb_bytes(&w, h, sizeof(h));
	wb_bytes(&w, p.p, p.len);
	wb_free(&p);
	ck_assert_int_eq(w.err, 0);
	return w;
}

/* Where a client is when it is killed: it does step, says so, and waits. */
enum step {
	CONNECTED, HALF_HEADER, HEADER_ONLY, HALF_PAYLOAD, HELLO_DONE,
	REPLY_UNREAD, ATTACH_SENT, HOLDS_LEASE, DETACH_SENT, NSTEPS
};
static const char *const step_name[NSTEPS] = {
	"connected, nothing sent", "half a header", "a header without its payload",
	"half an attach payload", "after hello", "a stats request, its reply unread",
	"an attach request sent (mid-attach)", "holding a lease",
	"a detach request sent, its reply unread",
};

static void client_step(const struct daemon *d, enum step s)
{
	struct wbuf w = attach_wire();
	int fd = s == CONNECTED || s == HALF_HEADER || s == HEADER_ONLY || s == HALF_PAYLOAD
		 ? dial(d) : connect_hello(d);
	struct attached a;
	switch (s) {
	case HALF_HEADER: send_all(fd, w.p, PROTO_HDR_SIZE / 2); break;
	case HEADER_ONLY: send_all(fd, w.p, PROTO_HDR_SIZE); break;
	case HALF_PAYLOAD: send_all(fd, w.p, PROTO_HDR_SIZE + (w.len - PROTO_HDR_SIZE) / 2); break;
	case REPLY_UNREAD: {
		struct wbuf q = {0};
		struct msg_stats m = {.name = ""};
		enc_stats(&q, &m);
		struct uwerr e = {0};
		ck_assert_int_eq(proto_send(fd, PROTO_VERSION, OP_STATS, q.p, (uint32_t)q.len,
					    NULL, 0, &e), 0);
		wb_free(&q);
		break;
	}
	case ATTACH_SENT: send_all(fd, w.p, w.len); break;
	case HOLDS_LEASE:
	case DETACH_SENT: {
		ck_assert_int_eq(req_attach(fd, "stories", &a), 0);
		if (s == DETACH_SENT) {
			struct wbuf q = {0};
			struct msg_detach m = {.lease = a.r.lease};
			enc_detach(&q, &m);
			struct uwerr e = {0};
			ck_assert_int_eq(proto_send(fd, PROTO_VERSION, OP_DETACH, q.p,
						    (uint32_t)q.len, NULL, 0, &e), 0);
			wb_free(&q);
		}
		break;
	}
	default: break;
	}
	wb_free(&w);
}

static void wait_no_lease(int op)
{
	uint64_t n = 1;
	for (int i = 0; i < 500 && (n = model_stat(op, "stories").clients); i++)
		sleep_ms(10);
	ck_assert_msg(n == 0, "%llu leases left on stories", (unsigned long long)n);
}

/* A fresh client attaches, checks every tensor, detaches. */
static void served(const struct daemon *d)
{
	int fd = connect_hello(d);
	struct attached a;
	ck_assert_msg(req_attach(fd, "stories", &a) == 0, "%s", last_msg);
	verify_model(&a, fixture());
	ck_assert_int_eq(req_detach(fd, a.r.lease), 0);
	attached_free(&a);
	close(fd);
}

START_TEST(t_client_killed_at_every_step)
{
	struct daemon d;
	daemon_start(&d, NULL);
	int op = connect_hello(&d);
	load_ready(&d, op, "stories");
	served(&d);
	sleep_ms(300);   /* its connection reaped */
	int base = fd_count(d.pid);
	for (int s = 0; s < NSTEPS; s++) {
		int ready[2];
		ck_assert_int_eq(pipe(ready), 0);
		pid_t kid = fork();
		ck_assert_int_ge(kid, 0);
		if (kid == 0) {
			client_step(&d, (enum step)s);
			if (write(ready[1], "x", 1) == 1)
				pause();
			_exit(1);
		}
		char x;
		ck_assert_msg(read(ready[0], &x, 1) == 1, "the client did not reach: %s",
			      step_name[s]);
		ck_assert_int_eq(kill(kid, SIGKILL), 0);
		ck_assert_int_eq(waitpid(kid, NULL, 0), kid);
		close(ready[0]);
		close(ready[1]);
		wait_no_lease(op);
		fds_back_to(d.pid, base);
		served(&d);
		fds_back_to(d.pid, base);
		ck_assert_str_eq(model_stat(op, "stories").state, "ready");
	}
	close(op);
	daemon_stop(&d);
}
END_TEST

/* Whether any process holds a memfd of model name. */
static int memfd_held(const char *name)
{
	char want[128];
	snprintf(want, sizeof(want), "/memfd:unweight:%s ", name);
	DIR *proc = opendir("/proc");
	ck_assert_ptr_nonnull(proc);
	int held = 0;
	for (struct dirent *p; !held && (p = readdir(proc)); ) {
		char dir[300];
		if (p->d_name[0] < '0' || p->d_name[0] > '9')
			continue;
		snprintf(dir, sizeof(dir), "/proc/%s/fd", p->d_name);
		DIR *fds = opendir(dir);
		if (!fds)
			continue;
		for (struct dirent *f; !held && (f = readdir(fds)); ) {
			char link[600], target[512];
			snprintf(link, sizeof(link), "%s/%s", dir, f->d_name);
			ssize_t n = readlink(link, target, sizeof(target) - 2);
			if (n > 0) {
				target[n] = ' ';
				target[n + 1] = '\0';
				held = strstr(target, want) == target;
			}
		}
		closedir(fds);
	}
	closedir(proc);
	return held;
}

START_TEST(t_daemon_killed_mid_load)
{
	char *dir = tu_tmpdir(), sock[108], go[300], env[400], st[300], log[300];
	struct stat sb;
	ck_assert_ptr_nonnull(dir);
	snprintf(sock, sizeof(sock), "%s/uwd.sock", dir);
	snprintf(go, sizeof(go), "%s/go", dir);
	snprintf(st, sizeof(st), "%s/big.safetensors", dir);
	snprintf(log, sizeof(log), "%s/log", dir);
	/* Reads past 20 MB of big wait at the gate (its first 16 MiB chunk
	 * passes): stories (1 MB) loads. */
	snprintf(env, sizeof(env), "UW_TEST_READ_FAULTS=gate=20000000:%s", go);
	struct fake_store store;
	fake_store_init(&store);
	struct daemon d;
	struct start_opts o = {.env = env, .prog = "tests/unweightd-faults", .sock = sock,
			       .store = &store};
	daemon_start(&d, &o);
	int fd = connect_hello(&d);
	load_ready(&d, fd, "stories");
	ck_assert(notify_wait(&d, "FDNAME=uw.stories", 10000));
	char big[512];
	snprintf(big, sizeof(big), "%s/big.safetensors", d.allow);
	write_big(big, 48, 1024, 512);
	copy_file(big, st, 0);
	ck_assert_msg(req_load(fd, "big", big) == 0, "%s", last_msg);
	/* Mid-load: its buffer made, its reads held at the gate. */
	for (int i = 0; i < 1000 && !memfd_held("big"); i++)
		sleep_ms(10);
	ck_assert(memfd_held("big"));
	struct mstat s = model_stat(fd, "big");
	ck_assert_msg(strcmp(s.state, "loading") == 0 && s.progress < 1, "big: %s %.2f",
		      s.state, s.progress);
	close(fd);
	daemon_kill(&d);

	ck_assert_uint_eq(fake_store_count(&store, "uw.big"), 0);
	ck_assert_uint_eq(fake_store_count(&store, "uw.stories"), 2);
	/* The kernel closes a killed process's files once its io_uring
	 * workers, which share its file table, have stopped too: soon, not
	 * at once. */
	for (int i = 0; i < 500 && memfd_held("big"); i++)
		sleep_ms(10);
	ck_assert_msg(!memfd_held("big"), "a memfd of the killed load outlived it by 5 s");
	ck_assert_msg(lstat(sock, &sb) == 0, "the killed daemon's socket is gone");

	struct start_opts o2 = {.sock = sock, .store = &store, .pass_store = 1, .log = log};
	daemon_start(&d, &o2);
	fd = connect_hello(&d);
	ck_assert_str_eq(model_stat(fd, "stories").state, "ready");
	ck_assert(!model_stat(fd, "big").found);
	size_t n;
	char *text = tu_read_file(log, &n);
	ck_assert_msg(text && strstr(text, "removing the stale socket"), "log: %s", text);
	free(text);
	snprintf(big, sizeof(big), "%s/big.safetensors", d.allow);
	copy_file(st, big, 0);
	ck_assert_msg(req_load(fd, "big", big) == 0, "%s", last_msg);
	s = wait_loaded(fd, "big");
	ck_assert_str_eq(s.state, "ready");
	struct attached a;
	ck_assert_int_eq(req_attach(fd, "big", &a), 0);
	verify_model(&a, st);
	attached_free(&a);
	close(fd);
	daemon_stop(&d);
	fake_store_free(&store);
	tu_rmtree(dir);
	free(dir);
}
END_TEST

int main(void)
{
	rng = tu_seed();
	Suite *s = suite_create("crash");
	TCase *tc = tu_tcase(s, "crash", 300);
	tcase_add_test(tc, t_client_killed_at_every_step);
	tcase_add_test(tc, t_daemon_killed_mid_load);
	return tu_run(s);
}
