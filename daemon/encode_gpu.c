/* encode_gpu: see encode_gpu.h. */
#include "config.h"

#include "daemon/encode_gpu.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "daemon/filemap.h"
#include "format/restcodec.h"
#include "kernels/cuda/uwk.h"

/* Two stages: one filling while the other crosses PCIe. */
#define STAGE_BYTES (16u << 20)
#define NSTAGES 2
/* The scratch grows in steps this large, so a model's tensors of a few
 * sizes do not reallocate it at every new size. */
#define SCRATCH_STEP (64u << 20)
/* Mapped tensors with fewer whole pages than this are pread instead:
 * registering pages costs a system call and the driver's bookkeeping. */
#define REGISTER_MIN (1u << 20)

struct encode_gpu {
	cudaStream_t s;
	void *host[NSTAGES];
	cudaEvent_t done[NSTAGES];
	int next;
	void *dev;                /* the raw tensor on the device */
	size_t cap;
	void *reg;                /* host pages registered for the copy in flight */
	int noreg;                /* registering failed once: pread from then on */
};

static int cuda_fail(struct uwerr *e, cudaError_t err, const char *what)
{
	return uwerr_set(e, err == cudaErrorMemoryAllocation ? ENOMEM : EIO, "GPU encoder: %s: %s: %s",
			 what, cudaGetErrorName(err), cudaGetErrorString(err));
}

/* After the stream is done with them: unregister the pages copied from. */
static void unregister(struct encode_gpu *g)
{
	if (g->reg)
		cudaHostUnregister(g->reg);
	g->reg = NULL;
}

void encode_gpu_free(struct encode_gpu *g)
{
	if (!g)
		return;
	if (g->s)
		cudaStreamSynchronize(g->s);
	unregister(g);
	for (int i = 0; i < NSTAGES; i++) {
		if (g->done[i])
			cudaEventDestroy(g->done[i]);
		if (g->host[i])
			cudaFreeHost(g->host[i]);
	}
	cudaFree(g->dev);
	if (g->s)
		cudaStreamDestroy(g->s);
	free(g);
}

int encode_gpu_new(struct encode_gpu **out, struct uwerr *e)
{
	struct encode_gpu *g = calloc(1, sizeof(*g));
	cudaError_t err = cudaSuccess;
	if (!g)
		return uwerr_set(e, ENOMEM, "GPU encoder: out of memory");
	err = cudaStreamCreateWithFlags(&g->s, cudaStreamNonBlocking);
	for (int i = 0; i < NSTAGES && err == cudaSuccess; i++) {
		err = cudaHostAlloc(&g->host[i], STAGE_BYTES, cudaHostAllocDefault);
		if (err == cudaSuccess)
			err = cudaEventCreateWithFlags(&g->done[i], cudaEventDisableTiming);
	}
	if (err != cudaSuccess) {
		encode_gpu_free(g);
		return cuda_fail(e, err, "stream and pinned staging");
	}
	*out = g;
	return 0;
}

/* A device scratch of at least n bytes: 1 when the device has no room. */
static int scratch(struct encode_gpu *g, size_t n, struct uwerr *e)
{
	if (n <= g->cap)
		return 0;
	cudaError_t err = cudaStreamSynchronize(g->s);
	if (err != cudaSuccess)
		return cuda_fail(e, err, "stream");
	cudaFree(g->dev);
	g->dev = NULL;
	g->cap = 0;
	size_t want = (n + SCRATCH_STEP - 1) / SCRATCH_STEP * SCRATCH_STEP;
	err = cudaMalloc(&g->dev, want);
	if (err == cudaErrorMemoryAllocation) {
		cudaGetLastError();   /* not sticky: clear it */
		g->dev = NULL;
		return 1;
	}
	if (err != cudaSuccess)
		return cuda_fail(e, err, "scratch");
	g->cap = want;
	return 0;
}

/* n bytes to dev through the stages, from host memory src, or (src NULL)
 * pread from in's file at off: a stage is refilled once its last copy is
 * done. */
static int upload(struct encode_gpu *g, void *dev, const void *src, const struct encode_input *in,
		  uint64_t off, size_t n, struct uwerr *e)
{
	for (size_t done = 0; done < n; ) {
		size_t k = n - done < STAGE_BYTES ? n - done : STAGE_BYTES;
		int i = g->next, rc;
		cudaError_t err = cudaEventSynchronize(g->done[i]);
		if (err != cudaSuccess)
			return cuda_fail(e, err, "upload");
		if (src)
			memcpy(g->host[i], (const char *)src + done, k);
		else if ((rc = filemap_pread(in->fd, in->path, g->host[i], k, off + done, e)))
			return rc;
		err = cudaMemcpyAsync((char *)dev + done, g->host[i], k, cudaMemcpyHostToDevice, g->s);
		if (err == cudaSuccess)
			err = cudaEventRecord(g->done[i], g->s);
		if (err != cudaSuccess)
			return cuda_fail(e, err, "upload");
		g->next = (i + 1) % NSTAGES;
		done += k;
	}
	return 0;
}

/* A mapped tensor's raw bytes to the scratch: its whole pages copied by
 * the device from the page cache (registered read-only: the driver pins
 * them, and a page past the file's end fails here, not in the CPU), the
 * partial pages at either end pread. Where the driver will not register
 * them (once), everything is pread. */
static int upload_mapped(struct encode_gpu *g, const struct encode_input *in, struct uwerr *e)
{
	const size_t psz = (size_t)sysconf(_SC_PAGESIZE);
	const uintptr_t a = (uintptr_t)in->data, end = a + in->raw_bytes;
	const uintptr_t lo = (a + psz - 1) / psz * psz, hi = end / psz * psz;
	if (!g->noreg && hi >= lo + REGISTER_MIN) {
		if (cudaHostRegister((void *)lo, hi - lo, cudaHostRegisterReadOnly) == cudaSuccess) {
			g->reg = (void *)lo;
		} else {
			cudaGetLastError();   /* not sticky: clear it */
			g->noreg = 1;
		}
	}
	if (!g->reg)
		return upload(g, g->dev, NULL, in, in->file_off, in->raw_bytes, e);
	cudaError_t err = cudaMemcpyAsync((char *)g->dev + (lo - a), (const void *)lo, hi - lo,
					  cudaMemcpyHostToDevice, g->s);
	if (err != cudaSuccess)
		return cuda_fail(e, err, "copy from the page cache");
	int rc = upload(g, g->dev, NULL, in, in->file_off, lo - a, e);
	if (!rc)
		rc = upload(g, (char *)g->dev + (hi - a), NULL, in, in->file_off + (hi - a), end - hi, e);
	return rc;
}

static size_t align256(size_t n)
{
	return (n + 255) & ~(size_t)255;
}

/* The payload, its chunk starts and code table after the raw bytes in the
 * scratch; decoded into the scratch's start and checked there. */
static int exphuf_to_raw(struct encode_gpu *g, const struct encode_input *in, struct uwerr *e)
{
	const struct rest_exphuf *x = in->x;
	char *payload = (char *)g->dev + align256(in->raw_bytes);
	char *start = payload + align256(in->len);
	char *dec = start + align256((x->nchunks + 1) * sizeof(*x->start));
	int rc;
	if (!x->n)
		return 0;
	if ((rc = upload(g, payload, in->data, NULL, 0, in->len, e)) ||
	    (rc = upload(g, start, x->start, NULL, 0, (x->nchunks + 1) * sizeof(*x->start), e)) ||
	    (rc = upload(g, dec, x->dec->entry, NULL, 0, sizeof(x->dec->entry), e)))
		return rc;
	if ((rc = uwk_exphuf_decode((const uint8_t *)payload + x->sm_off,
				    (const uint8_t *)payload + x->bits_off, (const uint64_t *)start,
				    (const uint16_t *)dec, x->n, g->dev, g->s, e)))
		return rc;
	uint32_t crc;
	if ((rc = uwk_crc32c(g->dev, in->raw_bytes, &crc, g->s, e)))
		return rc;
	if (crc != in->raw_crc)
		return uwerr_set(e, EBADMSG, "decoded bytes CRC-32C mismatch (stored 0x%08x, computed "
				 "0x%08x on the GPU)", in->raw_crc, crc);
	return 0;
}

int encode_gpu_tensor(struct encode_gpu *g, int dtype, int ndim, const uint64_t *shape,
		      const struct encode_input *in, void *dst, encode_place_fn place,
		      void *ctx, struct uw_layout *l, uint64_t *off, struct uwerr *e)
{
	size_t need = in->raw_bytes;
	if (in->x)
		need = align256(in->raw_bytes) + align256(in->len) +
		       align256((in->x->nchunks + 1) * sizeof(*in->x->start)) +
		       sizeof(in->x->dec->entry);
	int rc = scratch(g, need, e);
	if (rc)
		return rc;
	rc = in->x ? exphuf_to_raw(g, in, e) : in->fd >= 0 ? upload_mapped(g, in, e)
	     : upload(g, g->dev, in->data, NULL, 0, in->raw_bytes, e);
	/* plan syncs the stream: the staging is free again after it, and the
	 * registered pages are done with */
	if (!rc)
		rc = uwk_encode_plan(dtype, ndim, shape, g->dev, in->raw_bytes, l, g->s, e);
	if (g->reg) {
		cudaStreamSynchronize(g->s);
		unregister(g);
	}
	if (rc)
		return rc;
	if ((rc = place(ctx, l->nbytes, off, e)))
		return rc;
	return uwk_encode(l, g->dev, in->raw_bytes, (char *)dst + *off, g->s, e);
}
