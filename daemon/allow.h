/* allow: which files a load may name. A path is loaded only when its real
 * path (every symlink resolved) lies under the real path of an allow_dir,
 * and so is every file opened for it (the shards an index names). */
#ifndef UWD_ALLOW_H
#define UWD_ALLOW_H

#include "common/err.h"

struct uwd_config;

/* Replace each allow_dir by its real path; each must be a directory. */
int allow_resolve_dirs(struct uwd_config *c, struct uwerr *e);

/* Check path (absolute, an existing regular file, under an allow_dir) and
 * return its real path in *real (malloc'd): that is what gets opened. */
int allow_check(const struct uwd_config *c, const char *path, char **real,
		struct uwerr *e);

/* Check a file as opened: where its fd leads now (/proc/self/fd/N), so
 * that a symlink or rename swapped in between a path check and the open
 * cannot lead outside. path names it in messages. */
int allow_check_fd(const struct uwd_config *c, int fd, const char *path, struct uwerr *e);

#endif
