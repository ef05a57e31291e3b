/* check_daemon: the real ./unweightd on a temporary socket, spoken to
 * through proto.h directly: HELLO and versions, load of the stories260K
 * fixture and attach (every tensor decoded from the sealed memfd equals the
 * source), refused loads, shards of an index checked against the
 * allow_dir, failed loads, leases and evict, malformed
 * messages, max_clients, stalled peers, systemd readiness, watchdog and
 * socket activation, and a clean exit on SIGTERM. The "load faults" cases
 * run tests/unweightd-faults (the reader's fault hooks compiled in): short
 * reads and O_DIRECT refused still load every byte; a read error, a file
 * truncated mid-load and a bundle payload changed on disk fail the load
 * cleanly while other models are served. */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/json.h"
#include "format/bundle.h"
#include "format/pack.h"
#include "format/source.h"
#include "kernels/resident.h"
#include "proto/proto.h"
#include "tests/testutil.h"

static uint64_t rng;          /* seeded once in main; each test forks a copy */

/* ---- the daemon under test -------------------------------------------- */

struct daemon {
	pid_t pid;
	char *dir;                /* temporary: the socket, config, allow/ */
	char allow[256];          /* the allow_dir */
	char sock[108];
	char notify_path[108];
	int notify_fd;            /* our end of its NOTIFY_SOCKET */
	int activated;            /* socket passed as fd 3: not bound by it */
	/* A thread reads the notifications as they come: a full queue would
	 * block the daemon in sd_notify. */
	pthread_t drain;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stop;
	char notes[16384];        /* the latest notifications, one per line */
	size_t notes_len;
};

struct start_opts {
	const char *conf;         /* config file text, or NULL */
	const char *env;          /* one extra NAME=VALUE, or NULL */
	int activate_fd;          /* socket activation: pass this as fd 3; 0: none */
	const char *sock;         /* --socket, else one in the temporary dir */
	const char *prog;         /* the program, in the build tree; NULL: unweightd */
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

static void *drain_main(void *arg)
{
	struct daemon *d = arg;
	for (;;) {
		struct pollfd p = {.fd = d->notify_fd, .events = POLLIN};
		int r = poll(&p, 1, 50);
		pthread_mutex_lock(&d->lock);
		int stop = d->stop;
		pthread_mutex_unlock(&d->lock);
		if (stop)
			return NULL;
		char buf[4096];
		ssize_t n = r > 0 ? recv(d->notify_fd, buf, sizeof(buf) - 1, 0) : 0;
		if (n <= 0)
			continue;
		buf[n] = '\0';
		pthread_mutex_lock(&d->lock);
		if (d->notes_len + (size_t)n + 2 > sizeof(d->notes)) {   /* keep the newer half */
			size_t half = d->notes_len / 2;
			memmove(d->notes, d->notes + half, d->notes_len - half + 1);
			d->notes_len -= half;
		}
		if (d->notes_len + (size_t)n + 2 <= sizeof(d->notes))
			d->notes_len += (size_t)snprintf(d->notes + d->notes_len,
							 sizeof(d->notes) - d->notes_len, "%s\n", buf);
		pthread_cond_broadcast(&d->cond);
		pthread_mutex_unlock(&d->lock);
	}
}

/* Wait up to ms for a notification holding want; 1 if it came. */
static int notify_wait(struct daemon *d, const char *want, int ms)
{
	struct timespec end;
	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += ms / 1000;
	end.tv_nsec += (long)(ms % 1000) * 1000000;
	if (end.tv_nsec >= 1000000000) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&d->lock);
	int rc = 0;
	while (!strstr(d->notes, want) && rc == 0)
		rc = pthread_cond_timedwait(&d->cond, &d->lock, &end);
	int found = strstr(d->notes, want) != NULL;
	pthread_mutex_unlock(&d->lock);
	return found;
}

/* Stop reading notifications, and forget the daemon's files. */
static void daemon_forget(struct daemon *d)
{
	pthread_mutex_lock(&d->lock);
	d->stop = 1;
	pthread_mutex_unlock(&d->lock);
	pthread_join(d->drain, NULL);
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->cond);
	close(d->notify_fd);
	tu_rmtree(d->dir);
	free(d->dir);
}

static void daemon_start(struct daemon *d, const struct start_opts *o)
{
	memset(d, 0, sizeof(*d));
	ck_assert_ptr_nonnull(d->dir = tu_tmpdir());
	snprintf(d->allow, sizeof(d->allow), "%s/allow", d->dir);
	ck_assert_int_eq(mkdir(d->allow, 0755), 0);
	if (o && o->sock)
		snprintf(d->sock, sizeof(d->sock), "%s", o->sock);
	else    /* run/ is for it to make */
		snprintf(d->sock, sizeof(d->sock), "%s/run/uwd.sock", d->dir);
	snprintf(d->notify_path, sizeof(d->notify_path), "%s/notify", d->dir);
	char conf[300], bin[1024];
	snprintf(conf, sizeof(conf), "%s/unweightd.conf", d->dir);
	ck_assert_int_eq(tu_write_file(conf, o && o->conf ? o->conf : "", o && o->conf ? strlen(o->conf) : 0), 0);
	snprintf(bin, sizeof(bin), "%s/%s", tu_builddir(), o && o->prog ? o->prog : "unweightd");

	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d->notify_path);
	d->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(d->notify_fd, 0);
	ck_assert_int_eq(bind(d->notify_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	ck_assert_int_eq(pthread_create(&d->drain, NULL, drain_main, d), 0);

	int lfd = o && o->activate_fd > 0 ? o->activate_fd : -1;
	d->activated = lfd >= 0;
	d->pid = fork();
	ck_assert_int_ge(d->pid, 0);
	if (d->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);   /* a failed test leaves no daemon */
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_PID");
		unsetenv("WATCHDOG_USEC");
		if (lfd >= 0) {
			char pid[32];
			if (dup2(lfd, 3) < 0)
				_exit(126);
			snprintf(pid, sizeof(pid), "%ld", (long)getpid());
			setenv("LISTEN_FDS", "1", 1);
			setenv("LISTEN_PID", pid, 1);
		}
		/* Only what a service would get: valgrind --track-fds then
		 * reports the daemon's own fds alone. */
		close_range(lfd >= 0 ? 4 : 3, ~0u, 0);
		setenv("NOTIFY_SOCKET", d->notify_path, 1);
		if (o && o->env)
			putenv((char *)o->env);
		execl(bin, "unweightd", "--config", conf, "--socket", d->sock, "--backend", "host",
		      "--allow-dir", d->allow, "--foreground", (char *)NULL);
		_exit(127);
	}
	ck_assert_msg(notify_wait(d, "READY=1", 30000), "%s never said READY=1 (notes: %s)",
		      bin, d->notes);
}

/* SIGTERM: it must exit 0 and remove the socket it bound. */
static void daemon_stop(struct daemon *d)
{
	ck_assert_int_eq(kill(d->pid, SIGTERM), 0);
	int st = 0;
	double end = now() + 30;
	pid_t w;
	while ((w = waitpid(d->pid, &st, WNOHANG)) == 0 && now() < end)
		sleep_ms(10);
	ck_assert_msg(w == d->pid, "unweightd did not exit within 30 s of SIGTERM");
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "unweightd exit status 0x%x", st);
	ck_assert_msg(notify_wait(d, "STOPPING=1", 1000), "no STOPPING=1 (notes: %s)", d->notes);
	struct stat sb;
	if (!d->activated)
		ck_assert_msg(stat(d->sock, &sb) < 0, "the socket %s is left behind", d->sock);
	daemon_forget(d);
}

/* ---- speaking the protocol -------------------------------------------- */

static char last_msg[PROTO_MAX_MSG + 1];   /* the message of the last reply */

static int dial(const struct daemon *d)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d->sock);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %s: %s",
		      d->sock, strerror(errno));
	struct timeval tv = {.tv_sec = 60};   /* a hung daemon fails the test, not CI */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Receive one reply to op: its status, with the body left in *rb. */
static int recv_reply(int fd, uint16_t op, struct proto_msg *m, struct rbuf *rb)
{
	struct uwerr e = {0};
	int rc = proto_recv(fd, m, &e);
	ck_assert_msg(rc == 0, "no reply to %s: %s", proto_op_name(op), e.msg);
	ck_assert_uint_eq(m->hdr.opcode, op | OP_REPLY);
	*rb = (struct rbuf){.p = m->payload, .len = m->hdr.len};
	struct msg_status st;
	ck_assert_msg(dec_status(rb, &st, &e) == 0, "reply to %s: %s", proto_op_name(op), e.msg);
	snprintf(last_msg, sizeof(last_msg), "%s", st.message);
	int status = st.status;
	msg_status_free(&st);
	return status;
}

/* One request without fds; returns the reply's status (the body in m, rb). */
static int call(int fd, uint16_t op, struct wbuf *w, struct proto_msg *m, struct rbuf *rb)
{
	struct uwerr e = {0};
	ck_assert_int_eq(w->err, 0);
	ck_assert_msg(proto_send(fd, PROTO_VERSION, op, w->p, (uint32_t)w->len, NULL, 0, &e) == 0,
		      "send %s: %s", proto_op_name(op), e.msg);
	wb_free(w);
	return recv_reply(fd, op, m, rb);
}

static int call_nobody(int fd, uint16_t op, struct wbuf *w)
{
	struct proto_msg m;
	struct rbuf rb;
	int st = call(fd, op, w, &m, &rb);
	if (st == 0)
		ck_assert_int_eq(rb_done(&rb, NULL), 0);
	proto_msg_free(&m);
	return st;
}

static int hello_range(int fd, uint16_t lo, uint16_t hi, uint16_t *agreed)
{
	struct wbuf w = {0};
	struct msg_hello h = {.min_version = lo, .max_version = hi, .peer = "check_daemon"};
	enc_hello(&w, &h);
	struct proto_msg m;
	struct rbuf rb;
	int st = call(fd, OP_HELLO, &w, &m, &rb);
	if (st == 0) {
		struct msg_hello_reply r;
		struct uwerr e = {0};
		ck_assert_msg(dec_hello_reply(&rb, &r, &e) == 0, "hello reply: %s", e.msg);
		ck_assert_uint_eq(r.backend, UW_BACKEND_HOST);
		ck_assert_ptr_nonnull(strstr(r.daemon, "unweightd"));
		*agreed = r.version;
		msg_hello_reply_free(&r);
	}
	proto_msg_free(&m);
	return st;
}

static int connect_hello(const struct daemon *d)
{
	int fd = dial(d);
	uint16_t v = 0;
	ck_assert_msg(hello_range(fd, PROTO_MIN_VERSION, PROTO_VERSION, &v) == 0, "hello: %s", last_msg);
	ck_assert_uint_eq(v, PROTO_VERSION);
	return fd;
}

static int req_load(int fd, const char *name, const char *path)
{
	struct wbuf w = {0};
	char *paths[1] = {(char *)path};
	struct msg_load q = {.name = (char *)name, .device = "", .npaths = 1, .paths = paths};
	enc_load(&w, &q);
	return call_nobody(fd, OP_LOAD, &w);
}

static int req_evict(int fd, const char *name, unsigned flags)
{
	struct wbuf w = {0};
	struct msg_evict q = {.name = (char *)name, .flags = flags};
	enc_evict(&w, &q);
	return call_nobody(fd, OP_EVICT, &w);
}

static int req_detach(int fd, uint64_t lease)
{
	struct wbuf w = {0};
	struct msg_detach q = {.lease = lease};
	enc_detach(&w, &q);
	return call_nobody(fd, OP_DETACH, &w);
}

/* The stats document, parsed; name "" for all. NULL when refused. */
static struct json_value *req_stats(int fd, const char *name)
{
	struct wbuf w = {0};
	struct msg_stats q = {.name = (char *)name};
	enc_stats(&w, &q);
	struct proto_msg m;
	struct rbuf rb;
	struct json_value *j = NULL;
	if (call(fd, OP_STATS, &w, &m, &rb) == 0) {
		struct msg_stats_reply r;
		struct uwerr e = {0};
		ck_assert_msg(dec_stats_reply(&rb, &r, &e) == 0, "stats reply: %s", e.msg);
		ck_assert_msg(json_parse(r.json, strlen(r.json), &j, &e) == 0,
			      "stats JSON: %s: %s", e.msg, r.json);
		msg_stats_reply_free(&r);
	}
	proto_msg_free(&m);
	return j;
}

struct mstat {
	int found;
	char state[16];
	char error[PROTO_MAX_MSG];
	uint64_t tensors, raw, resident, clients, attaches;
	double progress, ratio;
	uint64_t used, budget, free_;     /* of device 0 */
};

static uint64_t get_u64(const struct json_value *o, const char *key)
{
	uint64_t v = 0;
	const struct json_value *j = json_get(o, key);
	ck_assert_msg(j && json_u64(j, &v) == 0, "stats: no integer \"%s\"", key);
	return v;
}

static double get_num(const struct json_value *o, const char *key)
{
	const struct json_value *j = json_get(o, key);
	ck_assert_msg(j && j->type == JSON_NUM, "stats: no number \"%s\"", key);
	return j->u.num.d;
}

/* What stats says of model name (found = 0 if it lists none) and device 0. */
static struct mstat model_stat(int fd, const char *name)
{
	struct mstat s = {0};
	struct json_value *j = req_stats(fd, "");
	ck_assert_msg(j, "stats refused: %s", last_msg);
	ck_assert_ptr_nonnull(json_get(j, "uptime_s"));
	const struct json_value *dev = json_get(j, "devices"), *models = json_get(j, "models");
	ck_assert(dev && dev->type == JSON_ARR && dev->u.arr.n == 1);
	s.budget = get_u64(&dev->u.arr.v[0], "budget");
	s.used = get_u64(&dev->u.arr.v[0], "used");
	s.free_ = get_u64(&dev->u.arr.v[0], "free");
	ck_assert_uint_eq(s.used + s.free_, s.budget);
	ck_assert(models && models->type == JSON_ARR);
	for (size_t i = 0; i < models->u.arr.n; i++) {
		const struct json_value *mo = &models->u.arr.v[i], *n = json_get(mo, "name");
		ck_assert(n && n->type == JSON_STR);
		if (strcmp(n->u.str.s, name))
			continue;
		const struct json_value *st = json_get(mo, "state"), *er = json_get(mo, "error");
		s.found = 1;
		snprintf(s.state, sizeof(s.state), "%s", st->u.str.s);
		if (er)
			snprintf(s.error, sizeof(s.error), "%s", er->u.str.s);
		s.tensors = get_u64(mo, "tensors");
		s.raw = get_u64(mo, "raw_bytes");
		s.resident = get_u64(mo, "resident_bytes");
		s.clients = get_u64(mo, "attached_clients");
		s.attaches = get_u64(mo, "attach_count");
		s.progress = get_num(mo, "progress");
		s.ratio = get_num(mo, "ratio");
		get_num(mo, "load_seconds");
		get_num(mo, "load_mb_per_s");
		if (strcmp(s.state, "failed"))   /* a live model comes first */
			break;
	}
	json_free(j);
	return s;
}

/* Poll stats until name is ready or failed. */
static struct mstat wait_loaded(int fd, const char *name)
{
	double end = now() + 120;
	for (;;) {
		struct mstat s = model_stat(fd, name);
		ck_assert_msg(s.found, "stats lists no model %s", name);
		ck_assert(s.progress >= 0 && s.progress <= 1);
		if (strcmp(s.state, "loading"))
			return s;
		ck_assert_msg(now() < end, "%s still loading after 120 s", name);
		sleep_ms(5);
	}
}

/* An attach reply and the fds that came with it. */
struct attached {
	struct msg_attach_reply r;
	struct proto_msg m;
};

static int req_attach(int fd, const char *name, struct attached *a)
{
	struct wbuf w = {0};
	struct msg_attach q = {.name = (char *)name};
	enc_attach(&w, &q);
	struct rbuf rb;
	int st = call(fd, OP_ATTACH, &w, &a->m, &rb);
	if (st == 0) {
		struct uwerr e = {0};
		ck_assert_msg(dec_attach_reply(&rb, a->m.nfds, &a->r, &e) == 0, "attach reply: %s", e.msg);
	} else {
		ck_assert_int_eq(a->m.nfds, 0);   /* a refusal carries no fds */
		proto_msg_free(&a->m);
	}
	return st;
}

static void attached_free(struct attached *a)
{
	msg_attach_reply_free(&a->r);
	proto_msg_free(&a->m);
}

/* ---- fixtures ---------------------------------------------------------- */

static const char *fixture(void)
{
	static char p[1024];
	snprintf(p, sizeof(p), "%s/data/stories260K.safetensors", tu_srcdir());
	return p;
}

static void copy_file(const char *from, const char *to, size_t keep /* 0: all */)
{
	size_t n;
	void *b = tu_read_file(from, &n);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(tu_write_file(to, b, keep && keep < n ? keep : n), 0);
	free(b);
}

/* The fixture, copied into the allow dir as name. */
static const char *stage(const struct daemon *d, const char *name)
{
	static char p[512];
	snprintf(p, sizeof(p), "%s/%s", d->allow, name);
	copy_file(fixture(), p, 0);
	return p;
}

/* A safetensors file of n BF16 [rows][cols] tensors of plausible weights:
 * big enough that a load takes a while. */
static void write_big(const char *path, int n, int rows, int cols)
{
	size_t tb = (size_t)rows * (size_t)cols * 2;
	char *hdr = malloc((size_t)n * 128 + 16);
	ck_assert_ptr_nonnull(hdr);
	size_t hl = 0;
	hl += (size_t)sprintf(hdr + hl, "{");
	for (int i = 0; i < n; i++)
		hl += (size_t)sprintf(hdr + hl, "%s\"w%03d\":{\"dtype\":\"BF16\",\"shape\":[%d,%d],"
				      "\"data_offsets\":[%zu,%zu]}", i ? "," : "", i, rows, cols,
				      tb * (size_t)i, tb * (size_t)(i + 1));
	hdr[hl++] = '}';
	while (hl % 8)
		hdr[hl++] = ' ';
	FILE *f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	uint64_t len = hl;
	ck_assert_int_eq(fwrite(&len, 8, 1, f), 1);   /* little-endian host */
	ck_assert_int_eq(fwrite(hdr, 1, hl, f), hl);
	uint16_t *t = malloc(tb);
	ck_assert_ptr_nonnull(t);
	for (int i = 0; i < n; i++) {
		for (size_t k = 0; k < tb / 2; k++) {
			uint64_t r = tu_rand(&rng);
			/* sign, an exponent near 2^-6 .. 2^-1, any mantissa */
			t[k] = (uint16_t)((r & 0x8000) | ((uint16_t)(120 + r % 6 + (r >> 20) % 2) << 7) |
					  ((r >> 32) & 0x7f));
		}
		ck_assert_int_eq(fwrite(t, 1, tb, f), tb);
	}
	ck_assert_int_eq(fclose(f), 0);
	free(t);
	free(hdr);
}

/* Every tensor of the attach reply, read from the sealed buffer, against
 * the source file: metadata, checksum, and decoded bytes. */
static void verify_model(const struct attached *a, const char *src_path)
{
	struct source *src;
	struct uwerr e = {0};
	const char *paths[1] = {src_path};
	ck_assert_msg(source_open(paths, 1, &src, &e) == 0, "%s", e.msg);
	ck_assert_uint_eq(a->r.backend, UW_BACKEND_HOST);
	ck_assert_str_eq(a->r.device_uuid, "");
	ck_assert_uint_eq(a->r.nbufs, 1);
	ck_assert_int_eq(a->m.nfds, 1);
	ck_assert_uint_eq(a->r.ntensors, source_count(src));
	int fd = a->m.fds[0];
	struct stat sb;
	ck_assert_int_eq(fstat(fd, &sb), 0);
	ck_assert_uint_eq((uint64_t)sb.st_size, a->r.buf_size[0]);
	size_t size = a->r.buf_size[0];
	const uint8_t *base = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	ck_assert(base != MAP_FAILED);

	int seen[4096] = {0};
	ck_assert_uint_le(source_count(src), 4096);
	for (uint32_t i = 0; i < a->r.ntensors; i++) {
		const struct proto_tensor *t = &a->r.tensors[i];
		size_t k;
		for (k = 0; k < source_count(src); k++)
			if (strcmp(source_tensor(src, k)->name, t->name) == 0)
				break;
		ck_assert_msg(k < source_count(src), "tensor %s is not in the source", t->name);
		ck_assert_msg(!seen[k]++, "tensor %s twice", t->name);
		const struct src_tensor *s = source_tensor(src, k);
		ck_assert_uint_eq(t->dtype, (uint32_t)s->dtype);
		ck_assert_uint_eq(t->ndim, (uint32_t)s->ndim);
		ck_assert_mem_eq(t->shape, s->shape, sizeof(uint64_t) * (size_t)s->ndim);
		ck_assert_uint_eq(t->raw_bytes, s->raw_bytes);
		ck_assert_uint_eq(t->offset % RES_ALIGN, 0);
		ck_assert_uint_le(t->offset + t->layout.nbytes, size);
		ck_assert_uint_eq(crc32c(0, base + t->offset, t->layout.nbytes), t->layout.crc32c);
		uint8_t *want = malloc(s->raw_bytes + 1), *got = malloc(s->raw_bytes + 1);
		ck_assert(want && got);
		ck_assert_msg(source_read(src, k, want, &e) == 0, "%s", e.msg);
		ck_assert_msg(ref_decode(&t->layout, base + t->offset, got, s->raw_bytes, &e) == 0,
			      "decode %s: %s", t->name, e.msg);
		ck_assert_msg(memcmp(want, got, s->raw_bytes) == 0, "tensor %s differs from the source",
			      t->name);
		free(want);
		free(got);
	}
	/* Sealed: no writable mapping, no write, no resize. */
	ck_assert(mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
	int seals = fcntl(fd, F_GET_SEALS);
	ck_assert_int_eq(seals & (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL),
			 F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
	ck_assert_int_lt(pwrite(fd, "x", 1, 0), 0);
	ck_assert_int_lt(ftruncate(fd, 0), 0);
	munmap((void *)base, size);
	source_close(src);
}

/* Load the fixture as name and wait for it to be ready. */
static const char *load_ready(const struct daemon *d, int fd, const char *name)
{
	const char *p = stage(d, "stories260K.safetensors");
	ck_assert_msg(req_load(fd, name, p) == 0, "load: %s", last_msg);
	struct mstat s = wait_loaded(fd, name);
	ck_assert_msg(strcmp(s.state, "ready") == 0, "%s: %s %s", name, s.state, s.error);
	return p;
}

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

/* Raw header bytes, as PROTOCOL.md lays them out; reserved is 0. */
static void raw_hdr(uint8_t *b, uint32_t magic, uint16_t version, uint16_t op, uint32_t len,
		    uint16_t nfds)
{
	tu_proto_hdr(b, magic, version, op, len, nfds, 0);
}

/* After a framing error: an error reply (if any) and then the end. */
static void expect_error_then_close(int fd)
{
	struct proto_msg m;
	struct uwerr e = {0};
	int rc = proto_recv(fd, &m, &e);
	if (rc == 0) {
		struct rbuf rb = {.p = m.payload, .len = m.hdr.len};
		struct msg_status st;
		ck_assert(m.hdr.opcode & OP_REPLY);
		ck_assert_int_eq(dec_status(&rb, &st, &e), 0);
		ck_assert_int_lt(st.status, 0);
		ck_assert_uint_gt(strlen(st.message), 0);
		msg_status_free(&st);
		proto_msg_free(&m);
		rc = proto_recv(fd, &m, &e);
	}
	ck_assert_msg(rc == -ECONNRESET, "the connection stayed open (%d: %s)", rc, e.msg);
	close(fd);
}

/* A request with an extra payload after its fields or an fd, on a
 * connection that keeps serving afterwards. */
static void stats_ok(int fd)
{
	struct json_value *j = req_stats(fd, "");
	ck_assert_msg(j, "stats refused: %s", last_msg);
	json_free(j);
}

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
#ifndef HAVE_CUDA
	/* (Built with CUDA, the cuda backend is tested on a GPU host.) */
	ck_assert_int_eq(run_daemon("", "--backend=cuda", err, sizeof(err)), 1);
	ck_assert_msg(strstr(err, "cuda") && strstr(err, "not built"), "%s", err);
#endif
	ck_assert_int_eq(run_daemon("budget.gpu7 = 1G\nbackend = host\n", NULL, err, sizeof(err)), 1);
	ck_assert_msg(strstr(err, "gpu7"), "%s", err);
	ck_assert_int_eq(run_daemon("allow_dir = /nonexistent/models\n", NULL, err, sizeof(err)), 1);
	ck_assert_msg(strstr(err, "/nonexistent/models"), "%s", err);
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
static void fails_cleanly(struct daemon *d, int fd, uint64_t used, const char *want)
{
	struct mstat s = wait_loaded(fd, "big");
	ck_assert_str_eq(s.state, "failed");
	ck_assert_msg(strstr(s.error, "big.safetensors") && strstr(s.error, want),
		      "error \"%s\" (wanted %s)", s.error, want);
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
	fails_cleanly(&d, fd, used, "Input/output error");
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
	fails_cleanly(&d, fd, used, "truncated");
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
	tcase_add_test(tc, t_stale_socket);
	tc = tu_tcase(s, "load faults", 300);
	tcase_add_test(tc, t_load_short_reads);
	tcase_add_test(tc, t_load_direct_refused);
	tcase_add_test(tc, t_load_read_error);
	tcase_add_test(tc, t_load_truncated);
	tcase_add_test(tc, t_load_bad_payload);
	tcase_add_test(tc, t_ctl_wait_lines);
	return tu_run(s);
}
