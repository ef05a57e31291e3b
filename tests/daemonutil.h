/* daemonutil: what the suites that start a real ./unweightd share: starting
 * and stopping it on a temporary socket (with systemd's notifications read
 * as they come), speaking proto.h to it request by request, reading its
 * stats, and the fixtures loads use (stories260K, generated BF16 files). */
#ifndef UW_TESTS_DAEMONUTIL_H
#define UW_TESTS_DAEMONUTIL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/json.h"
#include "proto/proto.h"

extern uint64_t rng;          /* seeded once in main; each test forks a copy */
extern char last_msg[PROTO_MAX_MSG + 1];   /* the message of the last reply */

/* A fake systemd fd store: the fds FDSTORE=1 notifications left, by
 * FDNAME, minus those FDSTOREREMOVE=1 took away (closed here, as systemd
 * does). A test owns it; daemons started with it record into it. */
#define FAKE_STORE_MAX 256
struct fake_store {
	pthread_mutex_t lock;
	size_t n;
	struct {
		char name[256];
		int fd;
	} e[FAKE_STORE_MAX];
};

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
	struct fake_store *store; /* FDSTORE=1 fds go here; NULL: closed */
	char notes[16384];        /* the latest notifications, one per line */
	size_t notes_len;
};

struct start_opts {
	const char *conf;         /* config file text, or NULL */
	const char *env;          /* one extra NAME=VALUE, or NULL */
	int activate_fd;          /* socket activation: pass this as fd 3; 0: none */
	const char *sock;         /* --socket, else one in the temporary dir */
	const char *log;          /* its stderr (the log) goes to this file, or NULL */
	const char *prog;         /* the program, in the build tree; NULL: unweightd */
	const char *backend;      /* --backend; NULL: host */
	struct fake_store *store; /* record its FDSTORE=1 fds here */
	/* Hand store's fds back (after activate_fd, if any), as systemd does
	 * on a restart: LISTEN_FDS, LISTEN_FDNAMES ("unweightd.socket" first). */
	int pass_store;
};

struct mstat {
	int found;
	char state[16];
	char error[PROTO_MAX_MSG];
	uint64_t tensors, raw, resident, clients, attaches;
	double progress, ratio;
	uint64_t used, budget, free_;     /* of device 0 */
};

/* An attach reply and the fds that came with it. */
struct attached {
	struct msg_attach_reply r;
	struct proto_msg m;
};

double now(void);
void sleep_ms(int ms);

/* Start ./unweightd --backend host (or o->backend) with o's config (o may
 * be NULL), an allow_dir d->allow and its own socket; returns once it said
 * READY=1. */
void daemon_start(struct daemon *d, const struct start_opts *o);
void fake_store_init(struct fake_store *s);
void fake_store_free(struct fake_store *s);   /* closes its fds */
/* How many fds the store holds under name. */
size_t fake_store_count(struct fake_store *s, const char *name);
/* The fds process pid holds (/proc/PID/fd). */
int fd_count(pid_t pid);
/* Wait up to 10 s for pid to hold want fds again: threads that end a
 * connection or a load close theirs a moment after the reply. */
void fds_back_to(pid_t pid, int want);
/* SIGKILL it, reap it and forget its files. */
void daemon_kill(struct daemon *d);
/* SIGTERM: it must exit 0 and remove the socket it bound. */
void daemon_stop(struct daemon *d);
/* Stop reading notifications, and forget the daemon's files. */
void daemon_forget(struct daemon *d);
/* Wait up to ms for a notification holding want; 1 if it came. */
int notify_wait(struct daemon *d, const char *want, int ms);

/* For restarts: a listening socket of the test's, passed to every daemon
 * started (socket activation) so that a restart keeps its address, a fake
 * fd store the daemons record into, and one log file for all of them. */
struct rig {
	char *dir;
	char sock[108];
	char ref[300];            /* a copy of the fixture outside any allow_dir */
	char log[300];
	int lfd;
	struct fake_store store;
	const char *backend;      /* as start_opts; NULL: host */
	const char *prog;
	const char *env;
};
void rig_init(struct rig *g);
void rig_free(struct rig *g);
/* Start a daemon of the rig's; restart: hand it the store's fds. */
void rig_start(struct rig *g, struct daemon *d, int restart);
/* The log so far (malloc'd). */
char *rig_log(const struct rig *g);

/* A child process that repeats a check of an attached model until told to
 * stop (a worker that keeps computing while the daemon restarts). */
struct worker {
	pid_t pid;
	atomic_ulong *rounds;     /* shared: passes the child finished */
	int stop[2];
};
/* Fork: 0 in the child, which attaches, then runs a pass and calls
 * worker_pass after each until it says stop, and _exits (0: every pass
 * was right); 1 in the parent. */
int worker_fork(struct worker *w);
/* In the child: count a finished pass; 1 once the parent said stop. */
int worker_pass(struct worker *w);
/* In the parent: wait for the child's first pass (it must not exit). */
void worker_first(struct worker *w);
/* Wait for n more passes. */
void worker_progress(struct worker *w, unsigned long n);
/* Tell it to stop; it must exit 0. */
void worker_stop(struct worker *w);

/* A connection (SO_RCVTIMEO 60 s); connect_hello also agrees on a version. */
int dial(const struct daemon *d);
int connect_hello(const struct daemon *d);
int hello_range(int fd, uint16_t lo, uint16_t hi, uint16_t *agreed);

/* One request without fds; returns the reply's status (its message in
 * last_msg, the body in m and rb). call_nobody: a reply with no body. */
int recv_reply(int fd, uint16_t op, struct proto_msg *m, struct rbuf *rb);
int call(int fd, uint16_t op, struct wbuf *w, struct proto_msg *m, struct rbuf *rb);
int call_nobody(int fd, uint16_t op, struct wbuf *w);

int req_load(int fd, const char *name, const char *path);
int req_evict(int fd, const char *name, unsigned flags);
int req_detach(int fd, uint64_t lease);
/* TUNE: the status; *job on success. */
int req_tune(int fd, const char *name, unsigned flags, uint64_t *job);
int req_attach(int fd, const char *name, struct attached *a);
/* VERIFY: the reply's status; on 0, *r holds the body (msg_verify_reply_free it). */
int req_verify(int fd, const char *name, struct msg_verify_reply *r);
void attached_free(struct attached *a);
/* The stats document, parsed; name "" for all. NULL when refused. */
struct json_value *req_stats(int fd, const char *name);
/* What stats says of model name (found = 0 if it lists none) and device 0. */
struct mstat model_stat(int fd, const char *name);
/* A member of a stats object that must be there: an integer, a number, a
 * string. */
uint64_t stat_u64(const struct json_value *o, const char *key);
double stat_num(const struct json_value *o, const char *key);
const char *stat_str(const struct json_value *o, const char *key);
/* The first entry of model name in a stats document, or NULL. */
const struct json_value *stats_model(const struct json_value *doc, const char *name);
/* Poll stats until name is ready or failed. */
struct mstat wait_loaded(int fd, const char *name);
/* Stats must be answered. */
void stats_ok(int fd);

/* data/stories260K.safetensors in the source tree. */
const char *fixture(void);
void copy_file(const char *from, const char *to, size_t keep /* 0: all */);
/* The fixture, copied into the allow dir as name. */
const char *stage(const struct daemon *d, const char *name);
/* A safetensors file of n BF16 [rows][cols] tensors of plausible weights. */
void write_big(const char *path, int n, int rows, int cols);
/* Every tensor of the attach reply, read from the sealed buffer, against
 * the source file: metadata, checksum, and decoded bytes. */
void verify_model(const struct attached *a, const char *src_path);
/* Load the fixture as name and wait for it to be ready. */
const char *load_ready(const struct daemon *d, int fd, const char *name);

/* Raw header bytes, as PROTOCOL.md lays them out; reserved is 0. */
void raw_hdr(uint8_t *b, uint32_t magic, uint16_t version, uint16_t op, uint32_t len,
	     uint16_t nfds);
/* After a framing error: an error reply (if any) and then the end. */
void expect_error_then_close(int fd);

#endif
