/* backend_host: the host backend of the client: sealed memfds mapped
 * read-only, and the CPU reference kernels run on the mapping. */
#include "config.h"

#include "client/client.h"

#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/resident.h"

/* A buffer that could still shrink would fault the worker (SIGBUS) on a
 * read past its new end; one that could still be written would change
 * weights under a running kernel. */
#define HOST_SEALS_NEEDED (F_SEAL_SHRINK | F_SEAL_WRITE)

static int host_import(int fd, uint64_t size, const char *device_uuid,
		       struct cl_buf *b, struct uwerr *e)
{
	struct stat st;
	int rc = 0, seals;
	memset(b, 0, sizeof(*b));
	if (fstat(fd, &st) < 0) {
		rc = uwerr_set(e, errno, "fstat: %s", strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size < size) {
		rc = uwerr_set(e, EBADMSG, "the fd holds %lld bytes, the reply says %llu",
			       (long long)st.st_size, (unsigned long long)size);
		goto out;
	}
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || (seals & HOST_SEALS_NEEDED) != HOST_SEALS_NEEDED) {
		rc = uwerr_set(e, EPERM, "the buffer is not sealed against writes and "
			       "shrinking (seals 0x%x)", seals < 0 ? 0 : seals);
		goto out;
	}
	if (size > SIZE_MAX) {
		rc = uwerr_set(e, EFBIG, "%llu bytes do not fit the address space",
			       (unsigned long long)size);
		goto out;
	}
	void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		rc = uwerr_set(e, errno, "mmap of %llu bytes: %s",
			       (unsigned long long)size, strerror(errno));
		goto out;
	}
	b->host = p;
	b->size = size;
out:
	close(fd);
	return rc;
}

static void host_release(struct cl_buf *b)
{
	if (b->host)
		munmap((void *)b->host, (size_t)b->size);
	b->host = NULL;
}

static int host_stream(const struct uw_tensor *t, const void *stream, struct uwerr *e)
{
	if (stream)
		return uwerr_set(e, EINVAL, "a stream was given, but the model is on "
				 "the host backend (pass NULL)");
	return 0;
}

static int host_decode(const struct uw_tensor *t, void *out, size_t out_bytes,
		       void *stream, struct uwerr *e)
{
	int rc = host_stream(t, stream, e);
	if (rc == 0)
		rc = ref_decode(&t->pt->layout, t->host, out, (size_t)t->pt->raw_bytes, e);
	return rc < 0 ? uwerr_prefix(e, "decode %s", t->pt->name) : 0;
}

static int host_matmul(const struct uw_tensor *t, const void *x, size_t batch,
		       void *y, uint32_t y_dtype, void *stream, struct uwerr *e)
{
	int rc = host_stream(t, stream, e);
	if (rc == 0)
		rc = y_dtype == UW_DTYPE_F32 ?
		     ref_matmul_f32(&t->pt->layout, t->host, x, batch, y, 0, e) :
		     ref_matmul(&t->pt->layout, t->host, x, batch, y, 0, e);
	return rc < 0 ? uwerr_prefix(e, "matmul %s", t->pt->name) : 0;
}

const struct cl_backend cl_backend_host = {
	.name = "host",
	.import = host_import,
	.release = host_release,
	.decode = host_decode,
	.matmul = host_matmul,
};
