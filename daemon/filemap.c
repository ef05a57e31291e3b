/* filemap: see filemap.h. */
#include "config.h"

#include "daemon/filemap.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/io.h"
#include "format/uring_read.h"

#define FILEMAP_SAMPLES 4096    /* pages mincore looks at in a file */

int filemap_cached(int fd, uint64_t size, const void **map, struct uwerr *e)
{
	long psz = sysconf(_SC_PAGESIZE);
	*map = NULL;
	if (size == 0 || psz <= 0 || size > SIZE_MAX)
		return 0;
	void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		return uwerr_set(e, errno, "mmap: %s", strerror(errno));
	/* Sampled: mincore over every page of 16 GB costs 0.15 s (an H200
	 * host), a fifth of such a load; a page the samples miss is read from
	 * disk when the driver registers it: slower, not wrong. */
	unsigned n;
	if (ur_cached_pages(m, size, FILEMAP_SAMPLES, &n) != n) {
		munmap(m, (size_t)size);
		return 0;
	}
	*map = m;
	return 1;
}

void filemap_unmap(const void *map, uint64_t size)
{
	if (map)
		munmap((void *)map, (size_t)size);
}

int filemap_pread(int fd, const char *path, void *buf, size_t n, uint64_t off,
		  struct uwerr *e)
{
	size_t got = 0;
	int rc = io_pread_full(fd, buf, n, off, &got);
	if (rc == -ENODATA)
		return uwerr_set(e, EIO, "%s: ends at %llu, inside a tensor (%zu bytes at "
				 "%llu): was it truncated?", path,
				 (unsigned long long)(off + got), n, (unsigned long long)off);
	if (rc)
		return uwerr_set(e, -rc, "%s: read at %llu: %s", path,
				 (unsigned long long)(off + got), strerror(-rc));
	return 0;
}
