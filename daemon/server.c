/* server: listening, accepting and shutting down (see server.h). */
#include "config.h"

#include "daemon/server.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "daemon/backend.h"
#include "daemon/conf.h"
#include "daemon/conn.h"
#include "daemon/loader.h"
#include "daemon/log.h"
#include "daemon/policy.h"
#include "daemon/uwd.h"
#include "daemon/verify.h"

#define MAX_REFUSING 16   /* threads that tell clients over max_clients so */

struct server {
	struct uwd *d;
	int lfd;
	int bound;                /* we bound the path: unlink it on the way out */
	int sigfd, timerfd;       /* timerfd: the watchdog's; -1 without one */
	int tickfd;               /* looks for stalled connections */
	pthread_mutex_t lock;     /* conns */
	struct conn *conns;
	double paused_until;      /* out of fds: accept nothing until then */
};

static int mkdir_parents(const char *path, struct uwerr *e)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	snprintf(dir, sizeof(dir), "%s", path);
	for (char *p = dir + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return uwerr_set(e, errno, "socket %s: create %s: %s", path, dir, strerror(errno));
		*p = '/';
	}
	return 0;
}

/* A socket file left by a daemon that died: stale if nothing answers. */
static int remove_stale(const char *path, const struct sockaddr_un *sa, struct uwerr *e)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return 0;
	if (!S_ISSOCK(st.st_mode))
		return uwerr_set(e, EEXIST, "socket %s: exists and is not a socket", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return uwerr_set(e, errno, "socket: %s", strerror(errno));
	int rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	int err = errno;
	close(fd);
	if (rc == 0)
		return uwerr_set(e, EADDRINUSE, "socket %s: another daemon answers on it", path);
	if (err != ECONNREFUSED)
		return uwerr_set(e, err, "socket %s: probing it: %s", path, strerror(err));
	log_notice("socket %s: removing the stale socket of a daemon that is gone", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return uwerr_set(e, errno, "socket %s: remove stale: %s", path, strerror(errno));
	return 0;
}

/* chown the socket to socket_owner and/or socket_group (names or ids). */
static int set_owner(const char *path, const char *owner, const char *group, struct uwerr *e)
{
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	char why[256];
	int rc;
	if (owner && (rc = policy_uid(owner, &uid, why, sizeof(why))))
		return uwerr_set(e, -rc, "socket_owner %s", why);
	if (group && (rc = policy_gid(group, &gid, why, sizeof(why))))
		return uwerr_set(e, -rc, "socket_group %s", why);
	if (chown(path, uid, gid) < 0)
		return uwerr_set(e, errno, "socket %s: chown to %s:%s: %s", path, owner ? owner : "",
				 group ? group : "", strerror(errno));
	return 0;
}

static int bind_path(struct server *s, struct uwerr *e)
{
	const struct uwd_config *cfg = s->d->cfg;
	const char *path = cfg->socket_path;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return uwerr_set(e, ENAMETOOLONG, "socket %s: path longer than %zu bytes", path,
				 sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int rc = mkdir_parents(path, e);
	if (!rc)
		rc = remove_stale(path, &sa, e);
	if (rc)
		return rc;
	s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->lfd < 0)
		return uwerr_set(e, errno, "socket: %s", strerror(errno));
	/* Never wider than asked for, not even between bind and chmod. */
	mode_t old = umask(0777 & ~(mode_t)cfg->socket_mode);
	rc = bind(s->lfd, (const struct sockaddr *)&sa, sizeof(sa));
	int err = errno;
	umask(old);
	if (rc < 0)
		return uwerr_set(e, err, "socket %s: bind: %s", path, strerror(err));
	s->bound = 1;
	if (chmod(path, cfg->socket_mode) < 0)
		return uwerr_set(e, errno, "socket %s: chmod: %s", path, strerror(errno));
	if ((cfg->socket_owner || cfg->socket_group) &&
	    (rc = set_owner(path, cfg->socket_owner, cfg->socket_group, e)))
		return rc;
	if (listen(s->lfd, SOMAXCONN) < 0)
		return uwerr_set(e, errno, "socket %s: listen: %s", path, strerror(errno));
	log_info("listening on %s (mode %04o)", path, cfg->socket_mode);
	return 0;
}

static int listen_socket(struct server *s, struct uwerr *e)
{
	/* fdstore_adopt sorted what systemd passed: the socket, stored models. */
	if (s->d->listen_fd < 0)
		return bind_path(s, e);
	s->lfd = s->d->listen_fd;
	s->d->listen_fd = -1;
	int fl = fcntl(s->lfd, F_GETFL);
	if (fl < 0 || fcntl(s->lfd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(s->lfd, F_SETFD, FD_CLOEXEC) < 0)
		return uwerr_set(e, errno, "fd %d from systemd: %s", s->lfd, strerror(errno));
	log_info("listening on the socket systemd passed (fd %d); --socket is not used",
		 s->lfd);
	return 0;
}

static int periodic(int *fd, uint64_t usec, struct uwerr *e)
{
	*fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (*fd < 0)
		return uwerr_set(e, errno, "timerfd: %s", strerror(errno));
	struct itimerspec its = {
		.it_interval = {.tv_sec = (time_t)(usec / 1000000), .tv_nsec = (long)(usec % 1000000) * 1000},
	};
	its.it_value = its.it_interval;
	if (timerfd_settime(*fd, 0, &its, NULL) < 0)
		return uwerr_set(e, errno, "timerfd: %s", strerror(errno));
	return 0;
}

static int timers(struct server *s, struct uwerr *e)
{
	const struct uwd_config *cfg = s->d->cfg;
	unsigned shortest = cfg->idle_timeout_ms && cfg->idle_timeout_ms < cfg->io_timeout_ms
			    ? cfg->idle_timeout_ms : cfg->io_timeout_ms;
	uint64_t usec, tick = (uint64_t)shortest * 1000 / 4;
	tick = tick < 20000 ? 20000 : tick > 1000000 ? 1000000 : tick;
	int rc = periodic(&s->tickfd, tick, e);
	if (rc || sd_watchdog_enabled(0, &usec) <= 0)
		return rc;
	usec /= 2;    /* ping at half the interval systemd allows */
	log_info("watchdog: pinging every %llu ms", (unsigned long long)(usec / 1000));
	return periodic(&s->timerfd, usec, e);
}

/* Shut down the connections stalled inside a message, and those that hold
 * no lease and have said nothing for idle_timeout_ms; their threads then
 * see the end of the stream and finish. */
static void close_stalled(struct server *s)
{
	const struct uwd_config *cfg = s->d->cfg;
	long long now = uwd_now_ms(), limit = cfg->io_timeout_ms, idle = cfg->idle_timeout_ms;
	pthread_mutex_lock(&s->lock);
	for (struct conn *c = s->conns; c; c = c->next) {
		if (atomic_load(&c->done))
			continue;
		long long since = atomic_load(&c->io_since_ms);
		long long quiet = atomic_load(&c->idle_since_ms);
		if (since && now - since > limit) {
			log_warning("client %s: stalled inside a message for over %lld ms; closing "
				    "the connection", c->peer.who, limit);
		} else if (idle && !c->refuse && !since && quiet && now - quiet > idle &&
			   !atomic_load(&c->leases)) {
			log_notice("client %s: idle for over %lld ms with no lease (idle_timeout_ms); "
				   "closing the connection", c->peer.who, idle);
		} else {
			continue;
		}
		shutdown(c->fd, SHUT_RDWR);
		atomic_store(&c->io_since_ms, 0);
		atomic_store(&c->idle_since_ms, 0);
	}
	pthread_mutex_unlock(&s->lock);
}

/* Join the connection threads that have finished, and free them. Returns
 * how many serve, and sets *refusing to how many are refusing. */
static unsigned reap(struct server *s, unsigned *refusing)
{
	struct conn *dead = NULL;
	unsigned serving = 0, nref = 0;
	pthread_mutex_lock(&s->lock);
	for (struct conn **p = &s->conns; *p; ) {
		struct conn *c = *p;
		if (atomic_load(&c->done)) {
			*p = c->next;
			c->next = dead;
			dead = c;
		} else {
			if (c->refuse)
				nref++;
			else
				serving++;
			p = &c->next;
		}
	}
	pthread_mutex_unlock(&s->lock);
	while (dead) {
		struct conn *c = dead;
		dead = c->next;
		pthread_join(c->th, NULL);
		close(c->fd);
		free(c);
	}
	if (refusing)
		*refusing = nref;
	return serving;
}

static void accept_one(struct server *s)
{
	struct uwd *d = s->d;
	int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			log_warning("accept: %s; pausing for 100 ms", strerror(errno));
			s->paused_until = uwd_now() + 0.1;
		} else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
			log_err("accept: %s", strerror(errno));
		}
		return;
	}
	struct peer peer;
	struct uwerr e = {0};
	if (peer_identify(fd, &peer, &e)) {
		log_err("refused a connection: %s", e.msg);
		close(fd);
		return;
	}
	const char *who = peer.who;

	unsigned refusing, serving = reap(s, &refusing);
	int refuse = serving >= d->cfg->max_clients;
	if (refuse) {
		log_warning("refused connection from %s: max_clients (%u) reached", who,
			    d->cfg->max_clients);
		if (refusing >= MAX_REFUSING) {
			/* A flood: no thread even to say so. */
			conn_refuse(fd, -EUSERS, "unweightd serves no more clients now (max_clients)");
			close(fd);
			return;
		}
	}
	struct conn *c = calloc(1, sizeof(*c));
	if (!c) {
		log_err("refused connection from %s: out of memory", who);
		close(fd);
		return;
	}
	c->d = d;
	c->fd = fd;
	c->peer = peer;
	c->refuse = refuse;
	pthread_mutex_lock(&s->lock);
	int rc = pthread_create(&c->th, NULL, conn_main, c);
	if (!rc) {
		c->next = s->conns;
		s->conns = c;
	}
	pthread_mutex_unlock(&s->lock);
	if (rc) {
		log_err("refused connection from %s: thread: %s", peer.who, strerror(rc));
		conn_refuse(fd, -rc, "unweightd cannot start a thread for this connection");
		close(fd);
		free(c);
		return;
	}
	log_debug("client %s: connected", who);
}

/* Serve until a signal; returns the signal. */
static int serve(struct server *s)
{
	struct uwd *d = s->d;
	for (;;) {
		double wait = s->paused_until - uwd_now();
		struct pollfd p[5] = {
			{.fd = s->sigfd, .events = POLLIN},
			{.fd = d->wake_fd, .events = POLLIN},
			{.fd = s->timerfd, .events = POLLIN},
			{.fd = wait > 0 ? -1 : s->lfd, .events = POLLIN},
			{.fd = s->tickfd, .events = POLLIN},
		};
		if (poll(p, 5, wait > 0 ? (int)(wait * 1000) + 1 : -1) < 0) {
			if (errno == EINTR)
				continue;
			log_err("poll: %s", strerror(errno));
			return SIGTERM;
		}
		if (p[0].revents) {
			struct signalfd_siginfo si;
			if (read(s->sigfd, &si, sizeof(si)) == sizeof(si))
				return (int)si.ssi_signo;
		}
		if (p[1].revents) {
			eventfd_t n;
			eventfd_read(d->wake_fd, &n);
			reap(s, NULL);
			loader_reap(d->ld);
		}
		if (p[2].revents) {
			uint64_t n;
			if (read(s->timerfd, &n, sizeof(n)) == sizeof(n))
				sd_notify(0, "WATCHDOG=1");
		}
		if (p[3].revents)
			accept_one(s);
		if (p[4].revents) {
			uint64_t n;
			if (read(s->tickfd, &n, sizeof(n)) == sizeof(n))
				close_stalled(s);
		}
	}
}

/* Close every connection and join its thread. */
static void close_all(struct server *s)
{
	pthread_mutex_lock(&s->lock);
	for (struct conn *c = s->conns; c; c = c->next)
		shutdown(c->fd, SHUT_RDWR);   /* its thread sees EOF, or EPIPE */
	pthread_mutex_unlock(&s->lock);
	unsigned refusing;
	while (reap(s, &refusing) || refusing) {
		struct pollfd p = {.fd = s->d->wake_fd, .events = POLLIN};
		if (poll(&p, 1, 1000) > 0) {
			eventfd_t n;
			eventfd_read(s->d->wake_fd, &n);
		}
	}
}

int server_run(struct uwd *d, struct uwerr *e)
{
	struct server s = {.d = d, .lfd = -1, .sigfd = -1, .timerfd = -1, .tickfd = -1};
	pthread_mutex_init(&s.lock, NULL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	int rc = 0;
	if ((s.sigfd = signalfd(-1, &set, SFD_CLOEXEC)) < 0)
		rc = uwerr_set(e, errno, "signalfd: %s", strerror(errno));
	if (!rc)
		rc = listen_socket(&s, e);
	if (!rc)
		rc = timers(&s, e);
	if (!rc) {
		sd_notify(0, "READY=1\nSTATUS=serving");
		log_notice("ready: backend %s, pid %ld", d->be->ops->name, (long)getpid());
		int sig = serve(&s);
		log_notice("caught %s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
		sd_notify(0, "STOPPING=1\nSTATUS=shutting down");
	}
	/* Stop accepting first: nobody should queue up behind a closing daemon. */
	if (s.lfd >= 0)
		close(s.lfd);
	if (s.bound)
		unlink(d->cfg->socket_path);
	if (!rc) {
		loader_cancel_all(d->ld);
		verifier_cancel(d->vf);
		close_all(&s);
	}
	if (s.sigfd >= 0)
		close(s.sigfd);
	if (s.timerfd >= 0)
		close(s.timerfd);
	if (s.tickfd >= 0)
		close(s.tickfd);
	pthread_mutex_destroy(&s.lock);
	return rc;
}
