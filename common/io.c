/* io: full positioned reads and writes (io.h). */
#include "config.h"
#include "common/io.h"

#include <errno.h>
#include <sys/types.h>
#include <unistd.h>

/* The bytes of one call; Linux moves at most ~2 GiB per call anyway. */
#define IO_CHUNK ((size_t)1 << 30)

int io_pread_full(int fd, void *buf, size_t n, uint64_t off, size_t *done)
{
	char *p = buf;
	size_t got = 0;
	int rc = 0;
	while (got < n) {
		size_t want = n - got < IO_CHUNK ? n - got : IO_CHUNK;
		ssize_t r = pread(fd, p + got, want, (off_t)(off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : -ENODATA;
			break;
		}
		got += (size_t)r;
	}
	if (done)
		*done = got;
	return rc;
}

int io_pwrite_full(int fd, const void *buf, size_t n, uint64_t off, size_t *done)
{
	const char *p = buf;
	size_t put = 0;
	int rc = 0;
	while (put < n) {
		size_t want = n - put < IO_CHUNK ? n - put : IO_CHUNK;
		ssize_t r = pwrite(fd, p + put, want, (off_t)(off + put));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : -ENODATA;
			break;
		}
		put += (size_t)r;
	}
	if (done)
		*done = put;
	return rc;
}
