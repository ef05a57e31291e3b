/* conn: one client connection, served by a thread of its own: HELLO and
 * version negotiation, then one reply for every request. */
#ifndef UWD_CONN_H
#define UWD_CONN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

struct uwd;

struct conn {
	struct conn *next;        /* the server's list */
	struct uwd *d;
	int fd;                   /* the server's: closed after the thread is joined */
	pthread_t th;
	struct ucred cred;        /* SO_PEERCRED at accept */
	char who[64];             /* "uid 1000 pid 4242", for the log */
	uint16_t version;         /* agreed in HELLO; 0 before */
	atomic_llong io_since_ms; /* a message is being read or written since; 0: none */
	atomic_int done;          /* the thread has finished: the server joins it */
};

/* The thread: serves c until the peer leaves, a framing error, or the
 * server shuts the socket down (at exit, or when a message stalls past
 * io_timeout_ms: the peer may idle between messages, never inside one); then ends c's leases, sets done and wakes
 * the server. It never frees c. */
void *conn_main(void *arg);

/* A reply that is only a status, for a connection no thread serves (over
 * max_clients): the peer's first request gets it as its answer. */
int conn_refuse(int fd, int status, const char *msg);

#endif
