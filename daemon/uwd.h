/* uwd: the daemon's shared state, handed to every part of it. */
#ifndef UWD_UWD_H
#define UWD_UWD_H

#include <sys/eventfd.h>
#include <time.h>

struct uwd_config;
struct backend;
struct registry;
struct loader;
struct allow;
struct verifier;
struct tuner;

struct uwd {
	const struct uwd_config *cfg;
	struct backend *be;
	struct registry *reg;
	struct loader *ld;
	struct tuner *tune;       /* the matmul tuner (tune.h) */
	struct allow *allow;      /* opens the files loads read */
	struct verifier *vf;      /* verify requests and verify_interval */
	double started;           /* uwd_now() at start-up */
	int listen_fd;            /* the socket systemd passed, or -1 (fdstore_adopt) */
	int wake_fd;              /* eventfd: a connection or a load ended, reap it */
};

/* Seconds on the monotonic clock. */
static inline double uwd_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline long long uwd_now_ms(void)
{
	return (long long)(uwd_now() * 1000.0);
}

/* Tell the server loop that a thread has finished and waits to be joined. */
static inline void uwd_wake(struct uwd *d)
{
	eventfd_write(d->wake_fd, 1);
}

#endif
