/* server: the listening socket (from systemd, or bound here), the accept
 * loop, signals, the watchdog, and the lives of the connection threads. */
#ifndef UWD_SERVER_H
#define UWD_SERVER_H

#include "common/err.h"

struct uwd;

/* Listen, tell systemd READY=1, and serve until SIGTERM or SIGINT (which
 * the caller has blocked in every thread); then stop accepting, cancel the
 * loads, close every connection and join its thread. Returns 0 after a
 * clean shutdown, or a negative errno with e set if it could not start. */
int server_run(struct uwd *d, struct uwerr *e);

#endif
