/* daemonutil: implementation of daemonutil.h. */
#include "config.h"

#include "tests/daemonutil.h"

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
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
#include "format/source.h"
#include "kernels/resident.h"
#include "tests/testutil.h"

uint64_t rng;
char last_msg[PROTO_MAX_MSG + 1];

double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

void fake_store_init(struct fake_store *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
}

void fake_store_free(struct fake_store *s)
{
	for (size_t i = 0; i < s->n; i++)
		close(s->e[i].fd);
	pthread_mutex_destroy(&s->lock);
}

size_t fake_store_count(struct fake_store *s, const char *name)
{
	size_t n = 0;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n; i++)
		n += strcmp(s->e[i].name, name) == 0;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* What sd_notify sent in text with fds: into the store, as systemd's
 * service_add_fd_store() and FDSTOREREMOVE do, else closed. */
static void store_note(struct daemon *d, const char *text, const int *fds, size_t nfds)
{
	char name[256] = "stored";
	const char *nm = strstr(text, "FDNAME=");
	if (nm)
		snprintf(name, sizeof(name), "%.*s", (int)strcspn(nm + 7, "\n"), nm + 7);
	struct fake_store *s = d->store;
	int add = s && strstr(text, "FDSTORE=1") != NULL;
	if (s && strstr(text, "FDSTOREREMOVE=1") && nm) {
		pthread_mutex_lock(&s->lock);
		for (size_t i = 0; i < s->n; )
			if (strcmp(s->e[i].name, name) == 0) {
				close(s->e[i].fd);
				s->e[i] = s->e[--s->n];
			} else {
				i++;
			}
		pthread_mutex_unlock(&s->lock);
	}
	for (size_t i = 0; i < nfds; i++) {
		if (add) {
			pthread_mutex_lock(&s->lock);
			ck_assert_int_lt(s->n, FAKE_STORE_MAX);
			snprintf(s->e[s->n].name, sizeof(s->e[s->n].name), "%s", name);
			s->e[s->n++].fd = fds[i];
			pthread_mutex_unlock(&s->lock);
		} else {
			close(fds[i]);
		}
	}
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
		union {
			struct cmsghdr h;
			char b[CMSG_SPACE(sizeof(int) * 253)];
		} ctl;
		struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf) - 1};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
				    .msg_controllen = sizeof(ctl)};
		ssize_t n = r > 0 ? recvmsg(d->notify_fd, &mh, MSG_CMSG_CLOEXEC) : 0;
		if (n <= 0)
			continue;
		buf[n] = '\0';
		const int *fds = NULL;
		size_t nfds = 0;
		for (struct cmsghdr *ch = CMSG_FIRSTHDR(&mh); ch; ch = CMSG_NXTHDR(&mh, ch))
			if (ch->cmsg_level == SOL_SOCKET && ch->cmsg_type == SCM_RIGHTS) {
				fds = (const int *)CMSG_DATA(ch);
				nfds = (ch->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			}
		store_note(d, buf, fds, nfds);
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
int notify_wait(struct daemon *d, const char *want, int ms)
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
void daemon_forget(struct daemon *d)
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

void daemon_start(struct daemon *d, const struct start_opts *o)
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
	d->store = o ? o->store : NULL;
	/* The store's fds and names, taken before the fork. */
	int pass[FAKE_STORE_MAX];
	size_t npass = 0;
	char names[FAKE_STORE_MAX * 260] = "";
	if (lfd >= 0)
		strcat(names, "unweightd.socket");
	if (o && o->pass_store) {
		ck_assert_msg(o->store != NULL, "pass_store needs a store");
		pthread_mutex_lock(&o->store->lock);
		for (; npass < o->store->n; npass++) {
			pass[npass] = o->store->e[npass].fd;
			if (names[0])
				strcat(names, ":");
			strcat(names, o->store->e[npass].name);
		}
		pthread_mutex_unlock(&o->store->lock);
	}
	d->pid = fork();
	ck_assert_int_ge(d->pid, 0);
	if (d->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);   /* a failed test leaves no daemon */
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_PID");
		unsetenv("WATCHDOG_USEC");
		unsetenv("LISTEN_FDNAMES");
		unsigned nfds = (lfd >= 0) + (unsigned)npass;
		if (nfds) {
			char pid[32], n[32];
			/* Out of the way first: a source may sit where another goes. */
			int high = lfd >= 0 ? fcntl(lfd, F_DUPFD, 1000) : -1;
			for (size_t i = 0; i < npass; i++)
				if ((pass[i] = fcntl(pass[i], F_DUPFD, 1001 + (int)i)) < 0)
					_exit(126);
			if (lfd >= 0 && (high < 0 || dup2(high, 3) < 0))
				_exit(126);
			for (size_t i = 0; i < npass; i++)
				if (dup2(pass[i], 3 + (lfd >= 0) + (int)i) < 0)
					_exit(126);
			snprintf(pid, sizeof(pid), "%ld", (long)getpid());
			snprintf(n, sizeof(n), "%u", nfds);
			setenv("LISTEN_FDS", n, 1);
			setenv("LISTEN_PID", pid, 1);
			if (npass)
				setenv("LISTEN_FDNAMES", names, 1);
		}
		/* Only what a service would get: valgrind --track-fds then
		 * reports the daemon's own fds alone. */
		close_range(3 + nfds, ~0u, 0);
		if (o && o->log) {
			int lf = open(o->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
			if (lf < 0 || dup2(lf, 2) < 0)
				_exit(126);
		}
		setenv("NOTIFY_SOCKET", d->notify_path, 1);
		if (o && o->env)
			putenv((char *)o->env);
		execl(bin, "unweightd", "--config", conf, "--socket", d->sock, "--backend",
		      o && o->backend ? o->backend : "host", "--allow-dir", d->allow,
		      "--foreground", (char *)NULL);
		_exit(127);
	}
	ck_assert_msg(notify_wait(d, "READY=1", 30000), "%s never said READY=1 (notes: %s)",
		      bin, d->notes);
}

int fd_count(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
	DIR *dir = opendir(path);
	ck_assert_ptr_nonnull(dir);
	int n = 0;
	for (struct dirent *de; (de = readdir(dir)); )
		n += de->d_name[0] != '.';
	closedir(dir);
	return n;
}

void fds_back_to(pid_t pid, int want)
{
	int n = fd_count(pid);
	for (int i = 0; i < 1000 && n != want; i++) {
		sleep_ms(10);
		n = fd_count(pid);
	}
	ck_assert_msg(n == want, "unweightd holds %d fds, %d before", n, want);
}

void daemon_kill(struct daemon *d)
{
	ck_assert_int_eq(kill(d->pid, SIGKILL), 0);
	int st;
	ck_assert_int_eq(waitpid(d->pid, &st, 0), d->pid);
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	daemon_forget(d);
}

/* SIGTERM: it must exit 0 and remove the socket it bound. */
void daemon_stop(struct daemon *d)
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

void rig_init(struct rig *g)
{
	memset(g, 0, sizeof(*g));
	ck_assert_ptr_nonnull(g->dir = tu_tmpdir());
	snprintf(g->sock, sizeof(g->sock), "%s/uwd.sock", g->dir);
	snprintf(g->ref, sizeof(g->ref), "%s/reference.safetensors", g->dir);
	snprintf(g->log, sizeof(g->log), "%s/log", g->dir);
	copy_file(fixture(), g->ref, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", g->sock);
	ck_assert_int_ge(g->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), 0);
	ck_assert_int_eq(bind(g->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(g->lfd, 64), 0);
	fake_store_init(&g->store);
}

void rig_free(struct rig *g)
{
	close(g->lfd);
	fake_store_free(&g->store);
	tu_rmtree(g->dir);
	free(g->dir);
}

void rig_start(struct rig *g, struct daemon *d, int restart)
{
	struct start_opts o = {.activate_fd = g->lfd, .sock = g->sock, .store = &g->store,
			       .pass_store = restart, .log = g->log, .backend = g->backend,
			       .prog = g->prog, .env = g->env};
	daemon_start(d, &o);
}

char *rig_log(const struct rig *g)
{
	size_t n;
	char *t = tu_read_file(g->log, &n);
	ck_assert_ptr_nonnull(t);
	return t;
}

int worker_fork(struct worker *w)
{
	w->rounds = mmap(NULL, sizeof(*w->rounds), PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(w->rounds, MAP_FAILED);
	atomic_store(w->rounds, 0);
	ck_assert_int_eq(pipe2(w->stop, O_CLOEXEC), 0);
	w->pid = fork();
	ck_assert_int_ge(w->pid, 0);
	if (w->pid == 0) {
		close(w->stop[1]);
		return 0;
	}
	close(w->stop[0]);
	return 1;
}

int worker_pass(struct worker *w)
{
	atomic_fetch_add(w->rounds, 1);
	struct pollfd p = {.fd = w->stop[0], .events = POLLIN};
	return poll(&p, 1, 0) > 0;
}

void worker_first(struct worker *w)
{
	double end = now() + 120;
	while (atomic_load(w->rounds) == 0 && now() < end) {
		int st;
		ck_assert_msg(waitpid(w->pid, &st, WNOHANG) == 0, "the worker exited (0x%x)", st);
		sleep_ms(5);
	}
	ck_assert_msg(atomic_load(w->rounds) > 0, "the worker finished no pass in 120 s");
}

void worker_progress(struct worker *w, unsigned long n)
{
	unsigned long to = atomic_load(w->rounds) + n;
	double end = now() + 60;
	while (atomic_load(w->rounds) < to && now() < end)
		sleep_ms(5);
	ck_assert_msg(atomic_load(w->rounds) >= to, "the worker stopped computing");
}

void worker_stop(struct worker *w)
{
	close(w->stop[1]);
	int st;
	ck_assert_int_eq(waitpid(w->pid, &st, 0), w->pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker status 0x%x after %lu passes",
		      st, atomic_load(w->rounds));
	munmap(w->rounds, sizeof(*w->rounds));
}

/* ---- speaking the protocol -------------------------------------------- */

int dial(const struct daemon *d)
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
int recv_reply(int fd, uint16_t op, struct proto_msg *m, struct rbuf *rb)
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
int call(int fd, uint16_t op, struct wbuf *w, struct proto_msg *m, struct rbuf *rb)
{
	struct uwerr e = {0};
	ck_assert_int_eq(w->err, 0);
	ck_assert_msg(proto_send(fd, PROTO_VERSION, op, w->p, (uint32_t)w->len, NULL, 0, &e) == 0,
		      "send %s: %s", proto_op_name(op), e.msg);
	wb_free(w);
	return recv_reply(fd, op, m, rb);
}

int call_nobody(int fd, uint16_t op, struct wbuf *w)
{
	struct proto_msg m;
	struct rbuf rb;
	int st = call(fd, op, w, &m, &rb);
	if (st == 0)
		ck_assert_int_eq(rb_done(&rb, NULL), 0);
	proto_msg_free(&m);
	return st;
}

int hello_range(int fd, uint16_t lo, uint16_t hi, uint16_t *agreed)
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

int connect_hello(const struct daemon *d)
{
	int fd = dial(d);
	uint16_t v = 0;
	ck_assert_msg(hello_range(fd, PROTO_MIN_VERSION, PROTO_VERSION, &v) == 0, "hello: %s", last_msg);
	ck_assert_uint_eq(v, PROTO_VERSION);
	return fd;
}

int req_load(int fd, const char *name, const char *path)
{
	struct wbuf w = {0};
	char *paths[1] = {(char *)path};
	struct msg_load q = {.name = (char *)name, .device = "", .npaths = 1, .paths = paths};
	enc_load(&w, &q);
	return call_nobody(fd, OP_LOAD, &w);
}

int req_evict(int fd, const char *name, unsigned flags)
{
	struct wbuf w = {0};
	struct msg_evict q = {.name = (char *)name, .flags = flags};
	enc_evict(&w, &q);
	return call_nobody(fd, OP_EVICT, &w);
}

int req_tune(int fd, const char *name, unsigned flags, uint64_t *job)
{
	struct wbuf w = {0};
	struct msg_tune q = {.name = (char *)name, .flags = flags};
	struct msg_tune_reply r;
	struct proto_msg m;
	struct rbuf rb;
	struct uwerr e = {0};
	enc_tune(&w, &q);
	int st = call(fd, OP_TUNE, &w, &m, &rb);
	if (st == 0) {
		ck_assert_msg(dec_tune_reply(&rb, &r, &e) == 0, "tune reply: %s", e.msg);
		*job = r.job;
	}
	proto_msg_free(&m);
	return st;
}

int req_detach(int fd, uint64_t lease)
{
	struct wbuf w = {0};
	struct msg_detach q = {.lease = lease};
	enc_detach(&w, &q);
	return call_nobody(fd, OP_DETACH, &w);
}

int req_verify(int fd, const char *name, struct msg_verify_reply *r)
{
	struct wbuf w = {0};
	struct msg_verify q = {.name = (char *)name};
	enc_verify(&w, &q);
	struct proto_msg m;
	struct rbuf rb;
	int st = call(fd, OP_VERIFY, &w, &m, &rb);
	memset(r, 0, sizeof(*r));
	if (st == 0) {
		struct uwerr e = {0};
		ck_assert_msg(dec_verify_reply(&rb, r, &e) == 0, "verify reply: %s", e.msg);
	}
	proto_msg_free(&m);
	return st;
}

/* The stats document, parsed; name "" for all. NULL when refused. */
struct json_value *req_stats(int fd, const char *name)
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


uint64_t stat_u64(const struct json_value *o, const char *key)
{
	uint64_t v = 0;
	const struct json_value *j = json_get(o, key);
	ck_assert_msg(j && json_u64(j, &v) == 0, "stats: no integer \"%s\"", key);
	return v;
}

double stat_num(const struct json_value *o, const char *key)
{
	const struct json_value *j = json_get(o, key);
	ck_assert_msg(j && j->type == JSON_NUM, "stats: no number \"%s\"", key);
	return j->u.num.d;
}

const char *stat_str(const struct json_value *o, const char *key)
{
	const struct json_value *j = json_get(o, key);
	ck_assert_msg(j && j->type == JSON_STR, "stats: no string \"%s\"", key);
	return j->u.str.s;
}

const struct json_value *stats_model(const struct json_value *doc, const char *name)
{
	const struct json_value *ms = json_get(doc, "models");
	ck_assert(ms && ms->type == JSON_ARR);
	for (size_t i = 0; i < ms->u.arr.n; i++) {
		const struct json_value *n = json_get(&ms->u.arr.v[i], "name");
		if (n && n->type == JSON_STR && strcmp(n->u.str.s, name) == 0)
			return &ms->u.arr.v[i];
	}
	return NULL;
}

/* What stats says of model name (found = 0 if it lists none) and device 0. */
struct mstat model_stat(int fd, const char *name)
{
	struct mstat s = {0};
	struct json_value *j = req_stats(fd, "");
	ck_assert_msg(j, "stats refused: %s", last_msg);
	ck_assert_ptr_nonnull(json_get(j, "uptime_s"));
	const struct json_value *dev = json_get(j, "devices"), *models = json_get(j, "models");
	ck_assert(dev && dev->type == JSON_ARR && dev->u.arr.n == 1);
	s.budget = stat_u64(&dev->u.arr.v[0], "budget");
	s.used = stat_u64(&dev->u.arr.v[0], "used");
	s.free_ = stat_u64(&dev->u.arr.v[0], "free");
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
		s.tensors = stat_u64(mo, "tensors");
		s.raw = stat_u64(mo, "raw_bytes");
		s.resident = stat_u64(mo, "resident_bytes");
		s.clients = stat_u64(mo, "attached_clients");
		s.attaches = stat_u64(mo, "attach_count");
		s.progress = stat_num(mo, "progress");
		s.ratio = stat_num(mo, "ratio");
		stat_num(mo, "load_seconds");
		stat_num(mo, "load_mb_per_s");
		if (strcmp(s.state, "failed"))   /* a live model comes first */
			break;
	}
	json_free(j);
	return s;
}

/* Poll stats until name is ready or failed. */
struct mstat wait_loaded(int fd, const char *name)
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


int req_attach(int fd, const char *name, struct attached *a)
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

void attached_free(struct attached *a)
{
	msg_attach_reply_free(&a->r);
	proto_msg_free(&a->m);
}

/* ---- fixtures ---------------------------------------------------------- */

const char *fixture(void)
{
	static char p[1024];
	snprintf(p, sizeof(p), "%s/data/stories260K.safetensors", tu_srcdir());
	return p;
}

void copy_file(const char *from, const char *to, size_t keep /* 0: all */)
{
	size_t n;
	void *b = tu_read_file(from, &n);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(tu_write_file(to, b, keep && keep < n ? keep : n), 0);
	free(b);
}

/* The fixture, copied into the allow dir as name. */
const char *stage(const struct daemon *d, const char *name)
{
	static char p[512];
	snprintf(p, sizeof(p), "%s/%s", d->allow, name);
	copy_file(fixture(), p, 0);
	return p;
}

/* A safetensors file of n BF16 [rows][cols] tensors of plausible weights:
 * big enough that a load takes a while. */
void write_big(const char *path, int n, int rows, int cols)
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
void verify_model(const struct attached *a, const char *src_path)
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
const char *load_ready(const struct daemon *d, int fd, const char *name)
{
	const char *p = stage(d, "stories260K.safetensors");
	ck_assert_msg(req_load(fd, name, p) == 0, "load: %s", last_msg);
	struct mstat s = wait_loaded(fd, name);
	ck_assert_msg(strcmp(s.state, "ready") == 0, "%s: %s %s", name, s.state, s.error);
	return p;
}

/* Raw header bytes, as PROTOCOL.md lays them out; reserved is 0. */
void raw_hdr(uint8_t *b, uint32_t magic, uint16_t version, uint16_t op, uint32_t len,
		    uint16_t nfds)
{
	tu_proto_hdr(b, magic, version, op, len, nfds, 0);
}

/* After a framing error: an error reply (if any) and then the end. */
void expect_error_then_close(int fd)
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
void stats_ok(int fd)
{
	struct json_value *j = req_stats(fd, "");
	ck_assert_msg(j, "stats refused: %s", last_msg);
	json_free(j);
}