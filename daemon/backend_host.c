/* backend_host: models in host memory, one sealed memfd per buffer. Clients
 * map the fd PROT_READ; the seals forbid writing, growing or shrinking it. */
#include "config.h"

#include "daemon/backend.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/io.h"
#include "unweight.h"

/* A finished buffer's: nothing may write, grow or shrink it. */
#define FINAL_SEALS (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK)

struct bbuf {
	int fd;
	uint64_t cap;
};

static int host_probe(struct uwerr *e)
{
	return 0;
}

static int host_open(struct backend *b, struct uwerr *e)
{
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	if (pages <= 0 || psize <= 0)
		return uwerr_set(e, EIO, "cannot tell the size of physical memory");
	b->ndev = 1;
	snprintf(b->dev[0].name, sizeof(b->dev[0].name), "host");
	b->dev[0].uuid[0] = '\0';
	/* Half of RAM unless configured: the workers need the rest. */
	b->dev[0].budget = (uint64_t)pages * (uint64_t)psize / 2;
	return 0;
}

static void host_close(struct backend *b)
{
}

static int host_buf_create(struct backend *b, int dev, const char *label, uint64_t cap,
			   struct bbuf **out, struct uwerr *e)
{
	char name[200];
	snprintf(name, sizeof(name), "unweight:%s", label);
	struct bbuf *buf = calloc(1, sizeof(*buf));
	if (!buf)
		return uwerr_set(e, ENOMEM, "memfd %s: out of memory", name);
	buf->cap = cap;
	buf->fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (buf->fd < 0) {
		uwerr_set(e, errno, "memfd_create %s: %s", name, strerror(errno));
		goto fail;
	}
	/* Sparse until written, so the worst-case size costs nothing yet. */
	if (ftruncate(buf->fd, (off_t)cap) < 0) {
		uwerr_set(e, errno, "memfd %s: size %llu bytes: %s", name,
			  (unsigned long long)cap, strerror(errno));
		goto fail;
	}
	*out = buf;
	return 0;
fail:
	if (buf->fd >= 0)
		close(buf->fd);
	free(buf);
	return -e->code;
}

static int host_buf_write(struct bbuf *buf, uint64_t off, const void *src, size_t n,
			  struct uwerr *e)
{
	if (off > buf->cap || n > buf->cap - off)
		return uwerr_set(e, EOVERFLOW, "memfd write [%llu,+%zu) past its capacity %llu",
				 (unsigned long long)off, n, (unsigned long long)buf->cap);
	size_t done;
	int rc = io_pwrite_full(buf->fd, src, n, off, &done);
	if (rc)
		return uwerr_set(e, rc == -ENODATA ? EIO : -rc, "memfd write at %llu: %s",
				 (unsigned long long)(off + done),
				 rc == -ENODATA ? "no progress" : strerror(-rc));
	return 0;
}

static int host_buf_finish(struct bbuf *buf, uint64_t size, struct uwerr *e)
{
	if (size > buf->cap)
		return uwerr_set(e, EOVERFLOW, "memfd: final size %llu past its capacity %llu",
				 (unsigned long long)size, (unsigned long long)buf->cap);
	if (ftruncate(buf->fd, (off_t)size) < 0)
		return uwerr_set(e, errno, "memfd: cut to %llu bytes: %s",
				 (unsigned long long)size, strerror(errno));
	buf->cap = size;
	if (fcntl(buf->fd, F_ADD_SEALS, FINAL_SEALS | F_SEAL_SEAL) < 0)
		return uwerr_set(e, errno, "memfd: seal: %s", strerror(errno));
	return 0;
}

static int host_buf_fd(const struct bbuf *buf)
{
	return buf->fd;
}

static void host_buf_destroy(struct bbuf *buf)
{
	if (!buf)
		return;
	close(buf->fd);
	free(buf);
}

static int host_buf_adopt(struct backend *b, int dev, int fd, uint64_t size,
			  struct bbuf **out, struct uwerr *e)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return uwerr_set(e, errno, "fstat: %s", strerror(errno));
	if ((uint64_t)st.st_size != size)
		return uwerr_set(e, EBADF, "%llu bytes where the manifest says %llu",
				 (unsigned long long)st.st_size, (unsigned long long)size);
	/* Unsealed, it could have changed under the clients' mappings. */
	int seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || (seals & FINAL_SEALS) != FINAL_SEALS)
		return uwerr_set(e, EBADF, "not a sealed memfd (seals %#x)", seals < 0 ? 0 : seals);
	struct bbuf *buf = calloc(1, sizeof(*buf));
	if (!buf)
		return uwerr_set(e, ENOMEM, "out of memory");
	buf->fd = fd;
	buf->cap = size;
	*out = buf;
	return 0;
}

static int host_buf_crc32c(const struct bbuf *buf, struct bspan *spans, size_t n,
			   struct uwerr *e)
{
	for (size_t i = 0; i < n; i++)
		if (spans[i].off > buf->cap || spans[i].len > buf->cap - spans[i].off)
			return uwerr_set(e, ERANGE, "checksum of [%llu,+%llu) past the buffer's "
					 "%llu bytes", (unsigned long long)spans[i].off,
					 (unsigned long long)spans[i].len,
					 (unsigned long long)buf->cap);
	const uint8_t *p = NULL;
	if (buf->cap) {
		p = mmap(NULL, buf->cap, PROT_READ, MAP_SHARED, buf->fd, 0);
		if (p == MAP_FAILED)
			return uwerr_set(e, errno, "mmap %llu bytes: %s",
					 (unsigned long long)buf->cap, strerror(errno));
	}
	for (size_t i = 0; i < n; i++)
		spans[i].crc = spans[i].len ? crc32c(0, p + spans[i].off, spans[i].len) : 0;
	if (p)
		munmap((void *)p, buf->cap);
	return 0;
}

const struct backend_ops backend_host_ops = {
	.name = "host",
	.id = UW_BACKEND_HOST,
	.probe = host_probe,
	.open = host_open,
	.close = host_close,
	.buf_create = host_buf_create,
	.buf_write = host_buf_write,
	.buf_finish = host_buf_finish,
	.buf_fd = host_buf_fd,
	.buf_destroy = host_buf_destroy,
	.buf_adopt = host_buf_adopt,
	.buf_crc32c = host_buf_crc32c,
};
