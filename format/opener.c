/* opener: the default, open(2) (see opener.h). */
#include "config.h"

#include "format/opener.h"

#include <fcntl.h>
#include <string.h>

int opener_open(const struct opener *o, const char *path, struct uwerr *e)
{
	if (o)
		return o->open(o, path, e);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd >= 0 ? fd : uwerr_set(e, errno, "%s", strerror(errno));
}
