/* loader: `load NAME PATH...`: every check that can refuse a load happens
 * on the request's thread, before the reply; the reading and encoding then
 * run on a thread of their own (with helpers), so the daemon keeps
 * answering while a large model loads. */
#ifndef UWD_LOADER_H
#define UWD_LOADER_H

#include "common/err.h"
#include "proto/proto.h"

struct uwd;
struct loader;

int loader_new(struct uwd *d, struct loader **out, struct uwerr *e);

/* Admit the load req (name free, paths allowed and well-formed, budget
 * enough) and start it; who names the requester for the log. */
int loader_start(struct loader *ld, const struct msg_load *req, const char *who,
		 struct uwerr *e);

/* Loads reading and encoding now (at most max_loads), and loads waiting
 * for a turn. */
void loader_counts(struct loader *ld, unsigned *running, unsigned *queued);

/* Join the loads that have finished (the server calls it when woken). */
void loader_reap(struct loader *ld);

/* Cancel every load (they stop between tensors) and refuse new ones. */
void loader_cancel_all(struct loader *ld);

/* Cancel and join every load, then free ld. NULL is fine. */
void loader_free(struct loader *ld);

#endif
