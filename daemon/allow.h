/* allow: the one place that opens the files a load reads. A file is opened
 * only when its path lies under an allow_dir and nothing on the way (a
 * "..", a symlink, a /proc magic link) leads outside that directory:
 * daemon/beneath.h opens it relative to the directory, held open since
 * start-up. Symlinks that stay inside are followed. */
#ifndef UWD_ALLOW_H
#define UWD_ALLOW_H

#include "common/err.h"
#include "format/opener.h"

struct uwd_config;
struct allow;

/* Replace each allow_dir of c by its real path (each must be a directory)
 * and hold it open (O_PATH): renaming or replacing one later does not
 * move the boundary. */
int allow_new(struct uwd_config *c, struct allow **out, struct uwerr *e);
void allow_free(struct allow *a);

/* The opener for source_open_via: an absolute path under an allow_dir,
 * opened read-only, and a regular file. Refusals are -EACCES (outside
 * every allow_dir, or leading out of it), -EINVAL (relative path, not a
 * regular file), or the errno of the open (-ENOENT). */
const struct opener *allow_opener(const struct allow *a);

#endif
