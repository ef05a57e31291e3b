/* allow: the load path policy (see allow.h). */
#include "config.h"

#include "daemon/allow.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/conf.h"

int allow_resolve_dirs(struct uwd_config *c, struct uwerr *e)
{
	for (size_t i = 0; i < c->nallow; i++) {
		char *real = realpath(c->allow_dirs[i], NULL);
		struct stat st;
		if (!real)
			return uwerr_set(e, errno, "allow_dir %s: %s", c->allow_dirs[i], strerror(errno));
		if (stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
			free(real);
			return uwerr_set(e, ENOTDIR, "allow_dir %s: not a directory", c->allow_dirs[i]);
		}
		free(c->allow_dirs[i]);
		c->allow_dirs[i] = real;
	}
	return 0;
}

static int under(const char *dir, const char *path)
{
	size_t n = strlen(dir);
	if (n == 1)   /* "/" */
		return 1;
	return strncmp(dir, path, n) == 0 && path[n] == '/';
}

/* 0 when real lies under an allow_dir, else -EACCES naming path and real. */
static int inside(const struct uwd_config *c, const char *path, const char *real,
		  struct uwerr *e)
{
	if (!c->nallow)
		return uwerr_set(e, EACCES, "%s: no allow_dir is configured, so nothing may be "
				 "loaded (see unweightd.conf(5))", path);
	for (size_t i = 0; i < c->nallow; i++)
		if (under(c->allow_dirs[i], real))
			return 0;
	if (strcmp(real, path))
		return uwerr_set(e, EACCES, "%s: resolves to %s, outside every allow_dir",
				 path, real);
	return uwerr_set(e, EACCES, "%s: outside every allow_dir", path);
}

int allow_check(const struct uwd_config *c, const char *path, char **out, struct uwerr *e)
{
	if (path[0] != '/')
		return uwerr_set(e, EINVAL, "%s: not an absolute path (the daemon has its own "
				 "working directory)", path);
	if (!c->nallow)
		return inside(c, path, path, e);
	char *real = realpath(path, NULL);
	if (!real)
		return uwerr_set(e, errno, "%s: %s", path, strerror(errno));
	struct stat st;
	int rc = inside(c, path, real, e);
	if (!rc && stat(real, &st) < 0)
		rc = uwerr_set(e, errno, "%s: %s", path, strerror(errno));
	else if (!rc && !S_ISREG(st.st_mode))
		rc = uwerr_set(e, EINVAL, "%s: not a regular file", path);
	if (rc) {
		free(real);
		return rc;
	}
	*out = real;
	return 0;
}

int allow_check_fd(const struct uwd_config *c, int fd, const char *path, struct uwerr *e)
{
	char link[64], real[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, real, sizeof(real) - 1);
	if (n < 0)
		return uwerr_set(e, errno, "%s: cannot tell where the opened file lies: "
				 "readlink %s: %s", path, link, strerror(errno));
	real[n] = '\0';
	return inside(c, path, real, e);
}
