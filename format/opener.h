/* opener: how the checkpoint readers open the files they read. Tools open
 * what they are given (open(2)); the daemon passes its own opener, which
 * opens only files under its allowed directories (daemon/allow.h), so that
 * every file a load reads, each shard an index names too, is opened in one
 * place. */
#ifndef UW_FORMAT_OPENER_H
#define UW_FORMAT_OPENER_H

#include "common/err.h"

struct opener {
	/* An fd of path, opened O_RDONLY | O_CLOEXEC, or a negative errno with
	 * the reason in e (without the path: callers prefix it). */
	int (*open)(const struct opener *o, const char *path, struct uwerr *e);
};

/* o's open, or open(2) when o is NULL. */
int opener_open(const struct opener *o, const char *path, struct uwerr *e);

#endif
