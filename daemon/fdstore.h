/* fdstore: restart without reload. Every ready model's buffer fds and a
 * manifest (a sealed memfd) go to systemd's fd store under the name
 * "uw.MODEL"; after a crash or a restart systemd hands them back through
 * LISTEN_FDS, and the next daemon re-adopts each model that verifies
 * (format version, sizes, seals, CRC-32C of every buffer) without reading
 * its files. See unweightd(8), RESTART. */
#ifndef UWD_FDSTORE_H
#define UWD_FDSTORE_H

#include "common/err.h"

struct uwd;
struct model;

/* Take what systemd passed: the listening socket goes to d->listen_fd (-1:
 * none, bind --socket), stored models are verified and registered ready;
 * those that fail are dropped with a log line and FDSTOREREMOVE. Fails
 * only for a passed fd that is neither (as before: the unit is wrong). */
int fdstore_adopt(struct uwd *d, struct uwerr *e);
/* Store a finished model (its buffers final and sealed); a failure is
 * logged, the model still serves. Nothing without NOTIFY_SOCKET, or on a
 * backend that cannot re-adopt its buffers. */
void fdstore_save(struct uwd *d, const struct model *m);
/* Take model name out of the store (evicted). */
void fdstore_forget(const struct uwd *d, const char *name);

#endif
