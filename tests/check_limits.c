/* check_limits: the real ./unweightd keeps serving everyone while single
 * clients misbehave or ask for too much: leases per connection
 * (max_leases), connections idle with no lease (idle_timeout_ms), requests
 * over max_request_bytes, a client that sends one byte at a time, one that
 * never reads its replies (both dropped after io_timeout_ms while another
 * client is served meanwhile), and the load queue (max_loads, load_queue).
 * Too many clients (max_clients) is t_max_clients of check_daemon. */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/daemonutil.h"
#include "tests/testutil.h"

/* The peer closed fd: reading gives the end of the stream (after whatever
 * replies were still queued) within s seconds. */
static int closed_within(int fd, double s)
{
	double end = now() + s;
	char buf[65536];
	while (now() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 50) <= 0)
			continue;
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return 1;
	}
	return 0;
}

/* A whole request, header and payload, as bytes to send by hand. */
static size_t raw_request(uint16_t op, struct wbuf *w, uint8_t *msg, size_t cap)
{
	size_t len = PROTO_HDR_SIZE + w->len;
	ck_assert_uint_le(len, cap);
	raw_hdr(msg, PROTO_MAGIC, PROTO_VERSION, op, (uint32_t)w->len, 0);
	memcpy(msg + PROTO_HDR_SIZE, w->p, w->len);
	wb_free(w);
	return len;
}

START_TEST(t_max_leases)
{
	struct daemon d;
	struct start_opts o = {.conf = "max_leases = 2\n"};
	daemon_start(&d, &o);
	int fd = connect_hello(&d), other = connect_hello(&d);
	load_ready(&d, fd, "stories");
	struct attached a[3];
	ck_assert_int_eq(req_attach(fd, "stories", &a[0]), 0);
	ck_assert_int_eq(req_attach(fd, "stories", &a[1]), 0);
	ck_assert_int_eq(req_attach(fd, "stories", &a[2]), -EMFILE);
	ck_assert_msg(strstr(last_msg, "max_leases") && strstr(last_msg, "2 leases"), "\"%s\"",
		      last_msg);
	/* Per connection: another still may. */
	struct attached b;
	ck_assert_int_eq(req_attach(other, "stories", &b), 0);
	attached_free(&b);
	/* A detach makes room. */
	ck_assert_int_eq(req_detach(fd, a[0].r.lease), 0);
	attached_free(&a[0]);
	ck_assert_int_eq(req_attach(fd, "stories", &a[2]), 0);
	verify_model(&a[2], fixture());
	attached_free(&a[1]);
	attached_free(&a[2]);
	ck_assert_uint_eq(model_stat(other, "stories").clients, 3);   /* leases, that is */
	close(fd);
	close(other);
	daemon_stop(&d);
}
END_TEST

/* A connection with no lease is closed once idle past idle_timeout_ms;
 * one that holds a lease may idle on. */
START_TEST(t_idle_timeout)
{
	struct daemon d;
	struct start_opts o = {.conf = "idle_timeout_ms = 300\n"};
	daemon_start(&d, &o);
	int holder = connect_hello(&d);
	load_ready(&d, holder, "stories");
	struct attached a;
	ck_assert_int_eq(req_attach(holder, "stories", &a), 0);
	int idle = connect_hello(&d);
	double t0 = now();
	ck_assert_msg(closed_within(idle, 10), "an idle connection with no lease stayed open");
	ck_assert(now() - t0 >= 0.3);
	close(idle);
	sleep_ms(400);
	stats_ok(holder);   /* idle as long, but it holds a lease */
	ck_assert_int_eq(req_detach(holder, a.r.lease), 0);
	attached_free(&a);
	close(holder);
	daemon_stop(&d);
}
END_TEST

/* A request over max_request_bytes is refused before the daemon allocates
 * it, naming the limit; the connection ends (its stream is out of step). */
START_TEST(t_request_limit)
{
	struct daemon d;
	struct start_opts o = {.conf = "max_request_bytes = 4096\n"};
	daemon_start(&d, &o);
	int fd = connect_hello(&d), other = connect_hello(&d);
	char path[3001];
	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	char *paths[2] = {path, path};
	struct wbuf w = {0};
	struct msg_load q = {.name = "big", .device = "", .npaths = 2, .paths = paths};
	enc_load(&w, &q);
	ck_assert_uint_gt(w.len, 4096);
	ck_assert_int_eq(call_nobody(fd, OP_LOAD, &w), -EMSGSIZE);
	ck_assert_msg(strstr(last_msg, "max_request_bytes"), "\"%s\"", last_msg);
	ck_assert(closed_within(fd, 10));
	close(fd);
	stats_ok(other);
	close(other);
	daemon_stop(&d);
}
END_TEST

/* One byte every 100 ms of a 20-byte request: bytes keep coming, but the
 * message is not done within io_timeout_ms, so the connection is dropped;
 * meanwhile another client is answered every time it asks. */
START_TEST(t_byte_a_second)
{
	struct daemon d;
	struct start_opts o = {.conf = "io_timeout_ms = 500\n"};
	daemon_start(&d, &o);
	int slow = connect_hello(&d), good = connect_hello(&d);
	struct wbuf w = {0};
	struct msg_stats q = {.name = ""};
	enc_stats(&w, &q);
	uint8_t msg[PROTO_HDR_SIZE + 64];
	size_t len = raw_request(OP_STATS, &w, msg, sizeof(msg));
	double t0 = now();
	int served = 0, dropped = 0;
	for (size_t i = 0; i < len && !dropped; i++) {
		if (send(slow, msg + i, 1, MSG_NOSIGNAL) != 1)
			break;
		stats_ok(good);
		served++;
		sleep_ms(100);
		struct pollfd p = {.fd = slow, .events = POLLIN};
		dropped = poll(&p, 1, 0) > 0;
	}
	ck_assert_msg(dropped || closed_within(slow, 5), "a byte-a-time client was never dropped");
	double took = now() - t0;
	ck_assert_msg(took >= 0.5 && took < 1.9, "dropped after %.2f s", took);
	ck_assert_int_ge(served, 4);
	close(slow);
	stats_ok(good);
	close(good);
	daemon_stop(&d);
}
END_TEST

/* A client that sends requests and never reads a reply: once its replies
 * (attach replies, a tensor directory each) fill the socket, the daemon's
 * send stalls, and after io_timeout_ms the connection is dropped; another
 * client is served meanwhile. */
START_TEST(t_never_reads)
{
	struct daemon d;
	struct start_opts o = {.conf = "io_timeout_ms = 500\n"};
	daemon_start(&d, &o);
	int bad = connect_hello(&d), good = connect_hello(&d);
	load_ready(&d, good, "stories");
	struct wbuf w = {0};
	struct msg_attach q = {.name = "stories"};
	enc_attach(&w, &q);
	uint8_t msg[PROTO_HDR_SIZE + 64];
	size_t len = raw_request(OP_ATTACH, &w, msg, sizeof(msg));
	/* Stuff requests until they stop going out for 300 ms. */
	double quiet_since = now(), t0 = now();
	size_t sent = 0;
	while (now() - quiet_since < 0.3) {
		ssize_t n = send(bad, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			ck_assert_int_eq(n, (ssize_t)len);   /* small: whole or not at all */
			sent++;
			quiet_since = now();
		} else if (n < 0 && errno != EAGAIN) {
			break;   /* dropped already */
		} else {
			sleep_ms(5);
		}
		ck_assert_msg(now() - t0 < 30, "the daemon read %zu requests and kept reading", sent);
	}
	ck_assert_uint_gt(sent, 50);
	/* Still not reading, for three times io_timeout_ms (reading now would
	 * unblock the daemon's send), while the other is served. */
	for (int i = 0; i < 15; i++) {
		stats_ok(good);
		sleep_ms(100);
	}
	ck_assert_msg(closed_within(bad, 10), "a client that never reads was never dropped");
	close(bad);
	/* Its leases ended with it. */
	double end = now() + 10;
	while (model_stat(good, "stories").clients && now() < end)
		sleep_ms(20);
	ck_assert_uint_eq(model_stat(good, "stories").clients, 0);
	close(good);
	daemon_stop(&d);
}
END_TEST

/* max_loads 1 and load_queue 1: one load runs, one waits, a third is
 * refused -EAGAIN naming the limits; the two admitted both finish. */
START_TEST(t_load_queue)
{
	struct daemon d;
	/* One encoder thread: the first load lasts long enough to queue behind. */
	struct start_opts o = {.conf = "max_loads = 1\nload_queue = 1\nload_threads = 1\n"};
	daemon_start(&d, &o);
	int fd = connect_hello(&d);
	char p[3][512];
	for (int i = 0; i < 3; i++) {
		snprintf(p[i], sizeof(p[i]), "%s/big%d.safetensors", d.allow, i);
		write_big(p[i], i ? 8 : 128, 512, 512);   /* the first 64 MiB */
	}
	ck_assert_msg(req_load(fd, "big0", p[0]) == 0, "%s", last_msg);
	ck_assert_msg(req_load(fd, "big1", p[1]) == 0, "%s", last_msg);
	struct json_value *j = req_stats(fd, "");
	uint64_t running, queued;
	ck_assert(json_u64(json_get(j, "loads_running"), &running) == 0 &&
		  json_u64(json_get(j, "loads_queued"), &queued) == 0);
	/* (big0's thread may not have taken its turn yet) */
	ck_assert_msg(running <= 1 && running + queued == 2, "%llu running, %llu queued",
		      (unsigned long long)running, (unsigned long long)queued);
	json_free(j);
	ck_assert_int_eq(req_load(fd, "big2", p[2]), -EAGAIN);
	ck_assert_msg(strstr(last_msg, "load queue is full") && strstr(last_msg, "max_loads") &&
		      strstr(last_msg, "load_queue"), "\"%s\"", last_msg);
	ck_assert(!model_stat(fd, "big2").found);
	ck_assert_str_eq(wait_loaded(fd, "big0").state, "ready");
	ck_assert_str_eq(wait_loaded(fd, "big1").state, "ready");
	ck_assert_msg(req_load(fd, "big2", p[2]) == 0, "%s", last_msg);
	ck_assert_str_eq(wait_loaded(fd, "big2").state, "ready");

	/* A queued load evicted with force goes without ever running. */
	ck_assert_int_eq(req_evict(fd, "big0", 0), 0);
	ck_assert_msg(req_load(fd, "big0", p[0]) == 0, "%s", last_msg);
	char p3[600];
	snprintf(p3, sizeof(p3), "%s/big3.safetensors", d.allow);
	write_big(p3, 4, 64, 64);
	ck_assert_msg(req_load(fd, "big3", p3) == 0, "%s", last_msg);
	ck_assert_int_eq(req_evict(fd, "big3", UW_EVICT_FORCE), 0);
	double end = now() + 30;
	while (model_stat(fd, "big3").found && strcmp(model_stat(fd, "big3").state, "failed") &&
	       now() < end)
		sleep_ms(10);
	struct mstat s3 = model_stat(fd, "big3");
	ck_assert_msg(!s3.found || strcmp(s3.state, "failed") == 0, "big3: %s", s3.state);
	ck_assert_str_eq(wait_loaded(fd, "big0").state, "ready");
	struct attached a;
	ck_assert_int_eq(req_attach(fd, "big1", &a), 0);
	verify_model(&a, p[1]);
	attached_free(&a);
	close(fd);
	daemon_stop(&d);
}
END_TEST

int main(void)
{
	rng = tu_seed();
	Suite *s = suite_create("limits");
	TCase *tc = tu_tcase(s, "limits", 120);
	tcase_add_test(tc, t_max_leases);
	tcase_add_test(tc, t_idle_timeout);
	tcase_add_test(tc, t_request_limit);
	tcase_add_test(tc, t_byte_a_second);
	tcase_add_test(tc, t_never_reads);
	tcase_add_test(tc, t_load_queue);
	return tu_run(s);
}
