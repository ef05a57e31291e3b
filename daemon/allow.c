/* allow: the load path policy and its opener (see allow.h). */
#include "config.h"

#include "daemon/allow.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/beneath.h"
#include "daemon/conf.h"

struct allow {
	struct opener opener;     /* first: the opener is the allow */
	const struct uwd_config *cfg;
	int dirfd[UWD_MAX_LIST];  /* of cfg->allow_dirs[i], O_PATH */
};

static int allow_open(const struct opener *o, const char *path, struct uwerr *e);

int allow_new(struct uwd_config *c, struct allow **out, struct uwerr *e)
{
	struct allow *a = calloc(1, sizeof(*a));
	if (!a)
		return uwerr_set(e, ENOMEM, "out of memory");
	a->opener.open = allow_open;
	a->cfg = c;
	for (size_t i = 0; i < UWD_MAX_LIST; i++)
		a->dirfd[i] = -1;
	int rc = 0;
	for (size_t i = 0; i < c->nallow && !rc; i++) {
		char *real = realpath(c->allow_dirs[i], NULL);
		if (!real) {
			rc = uwerr_set(e, errno, "allow_dir %s: %s", c->allow_dirs[i], strerror(errno));
			break;
		}
		free(c->allow_dirs[i]);
		c->allow_dirs[i] = real;
		a->dirfd[i] = open(real, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (a->dirfd[i] < 0)
			rc = uwerr_set(e, errno == ENOTDIR ? ENOTDIR : errno, "allow_dir %s: %s", real,
				       errno == ENOTDIR ? "not a directory" : strerror(errno));
	}
	if (rc) {
		allow_free(a);
		return rc;
	}
	*out = a;
	return 0;
}

void allow_free(struct allow *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < UWD_MAX_LIST; i++)
		if (a->dirfd[i] >= 0)
			close(a->dirfd[i]);
	free(a);
}

const struct opener *allow_opener(const struct allow *a)
{
	return &a->opener;
}

/* The length of dir when path lies under it (by its words, not yet by
 * what they lead to), else 0. */
static size_t under(const char *dir, const char *path)
{
	size_t n = strlen(dir);
	if (n == 1)   /* "/" */
		return 1;
	return strncmp(dir, path, n) == 0 && (path[n] == '/' || !path[n]) ? n : 0;
}

static int allow_open(const struct opener *o, const char *path, struct uwerr *e)
{
	const struct allow *a = (const struct allow *)o;
	const struct uwd_config *c = a->cfg;
	if (path[0] != '/')
		return uwerr_set(e, EINVAL, "not an absolute path (the daemon has its own "
				 "working directory)");
	if (!c->nallow)
		return uwerr_set(e, EACCES, "no allow_dir is configured, so nothing may be "
				 "loaded (see unweightd.conf(5))");
	/* The widest allow_dir holding it: every narrower one lies inside. */
	size_t best = 0, len = 0;
	for (size_t i = 0; i < c->nallow; i++) {
		size_t n = under(c->allow_dirs[i], path);
		if (n && (!len || n < len)) {
			best = i;
			len = n;
		}
	}
	if (!len)
		return uwerr_set(e, EACCES, "outside every allow_dir");
	const char *rel = path + len;
	while (*rel == '/')
		rel++;
	int fd = beneath_open(a->dirfd[best], *rel ? rel : ".",
			      O_RDONLY | O_NOCTTY | O_NONBLOCK);   /* a FIFO must not block */
	if (fd == -EXDEV) {
		/* Where it leads, for the message only: the open decided. */
		char *real = realpath(path, NULL);
		int rc = uwerr_set(e, EACCES, "leads outside allow_dir %s%s%s (a symlink or '..' "
				   "that escapes)", c->allow_dirs[best], real ? ", to " : "",
				   real ? real : "");
		free(real);
		return rc;
	}
	if (fd < 0)
		return uwerr_set(e, -fd, "%s", strerror(-fd));
	struct stat st;
	int fl;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (fl = fcntl(fd, F_GETFL)) < 0 ||
	    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		close(fd);
		return uwerr_set(e, EINVAL, "not a regular file");
	}
	return fd;
}
