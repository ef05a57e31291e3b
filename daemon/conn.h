/* conn: one client connection, served by a thread of its own: HELLO and
 * version negotiation, then one reply for every request. */
#ifndef UWD_CONN_H
#define UWD_CONN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "daemon/policy.h"

struct uwd;

struct conn {
	struct conn *next;        /* the server's list */
	struct uwd *d;
	int fd;                   /* the server's: closed after the thread is joined */
	pthread_t th;
	struct peer peer;         /* who it is, from the kernel at accept */
	uint16_t version;         /* agreed in HELLO; 0 before */
	int refuse;               /* over max_clients: answer the first request -EUSERS */
	atomic_llong io_since_ms; /* a message is being read or written since; 0: none */
	atomic_llong idle_since_ms; /* the last message ended then (idle_timeout_ms) */
	atomic_uint leases;       /* held now (max_leases; idle ones with none may be closed) */
	atomic_int done;          /* the thread has finished: the server joins it */
};

/* The thread. With refuse set, it waits io_timeout_ms for the first
 * request, answers it -EUSERS, and ends. Else it serves c until the peer
 * leaves, a framing error, or the server shuts the socket down (at exit,
 * when a message stalls past io_timeout_ms, or when a connection holding
 * no lease idles past idle_timeout_ms); then it ends c's leases. Either way it sets
 * done and wakes the server, which joins and frees it: never c itself. */
void *conn_main(void *arg);

/* A reply that is only a status, to a request not yet read (no thread
 * can serve the connection): the peer's first request gets it as its
 * answer, if the peer reads before it writes. */
int conn_refuse(int fd, int status, const char *msg);

#endif
