/* beneath: confined opens (see beneath.h). */
#include "config.h"

#include "daemon/beneath.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define WALK_MAX_LINKS 40     /* as the kernel's own limit */
#define WALK_MAX_DEPTH 256    /* directories held at once */

int beneath_open(int dirfd, const char *rel, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	for (int tries = 0; tries < 8; tries++) {
		long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
		if (fd >= 0)
			return (int)fd;
		if (errno == ENOSYS || errno == EPERM)
			return beneath_walk(dirfd, rel, flags);
		if (errno != EAGAIN)   /* EAGAIN: a rename raced the lookup */
			return -errno;
	}
	return -EAGAIN;
}

int beneath_walk(int dirfd, const char *rel, int flags)
{
	int held[WALK_MAX_DEPTH], depth = 0, links = 0, rc = 0;
	char *todo = strdup(rel), name[NAME_MAX + 1];
	if (!todo)
		return -ENOMEM;
	const char *p = todo;
	for (;;) {
		int cur = depth ? held[depth - 1] : dirfd;
		while (*p == '/')
			p++;
		if (!*p) {   /* it names a directory: the one we are in */
			rc = openat(cur, ".", flags | O_CLOEXEC);
			rc = rc >= 0 ? rc : -errno;
			break;
		}
		size_t n = strcspn(p, "/");
		if (n > NAME_MAX) {
			rc = -ENAMETOOLONG;
			break;
		}
		memcpy(name, p, n);
		name[n] = '\0';
		p += n;
		int last = !*p;
		if (strcmp(name, ".") == 0)
			continue;
		if (strcmp(name, "..") == 0) {
			if (!depth) {
				rc = -EXDEV;
				break;
			}
			close(held[--depth]);
			continue;
		}
		int fd = openat(cur, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0) {
			rc = -errno;
			if (fd >= 0)
				close(fd);
			break;
		}
		if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX];
			ssize_t tl = readlinkat(fd, "", target, sizeof(target) - 1);
			rc = tl < 0 ? -errno : ++links > WALK_MAX_LINKS ? -ELOOP
			     : target[0] == '/' ? -EXDEV : 0;
			close(fd);
			char *next = NULL;
			if (!rc && asprintf(&next, "%.*s%s", (int)tl, target, p) < 0)
				rc = -ENOMEM;
			if (rc)
				break;
			free(todo);
			p = todo = next;
			continue;
		}
		if (last) {
			close(fd);
			/* O_NOFOLLOW: a symlink swapped in since we looked is refused. */
			rc = openat(cur, name, flags | O_NOFOLLOW | O_CLOEXEC);
			rc = rc >= 0 ? rc : -errno;
			break;
		}
		if (!S_ISDIR(st.st_mode) || depth == WALK_MAX_DEPTH) {
			rc = S_ISDIR(st.st_mode) ? -ENAMETOOLONG : -ENOTDIR;
			close(fd);
			break;
		}
		held[depth++] = fd;
	}
	while (depth)
		close(held[--depth]);
	free(todo);
	return rc;
}
