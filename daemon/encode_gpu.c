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
#include "daemon/log.h"
#include "daemon/uwd.h"
#include "format/restcodec.h"
#include "kernels/cuda/uwk.h"

/* Two stages: one filling while the other crosses PCIe. */
#define STAGE_BYTES (16u << 20)
#define NSTAGES 2
/* The scratch grows in steps this large, so a model's tensors of a few
 * sizes do not reallocate it at every new size. */
#define SCRATCH_STEP (64u << 20)

struct encode_gpu {
	cudaStream_t s;
	void *host[NSTAGES];
	cudaEvent_t done[NSTAGES];
	int next;
	void *dev;                /* the scratch: the raw tensor (and a payload) on the device */
	size_t cap;
	struct encode_gpu_stats st;
};

static int cuda_fail(struct uwerr *e, cudaError_t err, const char *what)
{
	return uwerr_set(e, err == cudaErrorMemoryAllocation ? ENOMEM : EIO, "GPU encoder: %s: %s: %s",
			 what, cudaGetErrorName(err), cudaGetErrorString(err));
}

const struct encode_gpu_stats *encode_gpu_stats(const struct encode_gpu *g)
{
	return &g->st;
}

void encode_gpu_free(struct encode_gpu *g)
{
	if (!g)
		return;
	if (g->s) {
		if (g->dev)
			cudaFreeAsync(g->dev, g->s);
		cudaStreamSynchronize(g->s);
		cudaStreamDestroy(g->s);
	}
	for (int i = 0; i < NSTAGES; i++) {
		if (g->done[i])
			cudaEventDestroy(g->done[i]);
		if (g->host[i])
			cudaFreeHost(g->host[i]);
	}
	free(g);
}

int encode_gpu_new(struct encode_gpu **out, struct uwerr *e)
{
	struct encode_gpu *g = calloc(1, sizeof(*g));
	if (!g)
		return uwerr_set(e, ENOMEM, "GPU encoder: out of memory");
	cudaError_t err = cudaStreamCreateWithFlags(&g->s, cudaStreamNonBlocking);
	if (err != cudaSuccess) {
		encode_gpu_free(g);
		return cuda_fail(e, err, "stream");
	}
	*out = g;
	return 0;
}

/* The pinned stages, at their first use: a load whose bytes the device
 * copies from pinned pages needs none (and pinning them would contend with
 * the loader's pinning of the files). */
static int stages(struct encode_gpu *g, struct uwerr *e)
{
	cudaError_t err = cudaSuccess;
	for (int i = 0; i < NSTAGES && err == cudaSuccess; i++) {
		if (!g->host[i])
			err = cudaHostAlloc(&g->host[i], STAGE_BYTES, cudaHostAllocDefault);
		if (err == cudaSuccess && !g->done[i])
			err = cudaEventCreateWithFlags(&g->done[i], cudaEventDisableTiming);
	}
	return err == cudaSuccess ? 0 : cuda_fail(e, err, "pinned staging");
}

/* A device scratch of at least n bytes: 1 when the device has no room. */
static int scratch(struct encode_gpu *g, size_t n, struct uwerr *e)
{
	if (n <= g->cap)
		return 0;
	/* Stream-ordered: cudaFree would wait for every encoder's copies. */
	cudaError_t err = g->dev ? cudaFreeAsync(g->dev, g->s) : cudaSuccess;
	g->dev = NULL;
	g->cap = 0;
	if (err != cudaSuccess)
		return cuda_fail(e, err, "scratch");
	size_t want = (n + SCRATCH_STEP - 1) / SCRATCH_STEP * SCRATCH_STEP;
	err = cudaMallocAsync(&g->dev, want, g->s);
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
	int rc = n ? stages(g, e) : 0;
	for (size_t done = 0; !rc && done < n; ) {
		size_t k = n - done < STAGE_BYTES ? n - done : STAGE_BYTES;
		int i = g->next;
		double t = uwd_now();
		cudaError_t err = cudaEventSynchronize(g->done[i]);
		if (err != cudaSuccess)
			return cuda_fail(e, err, "upload");
		if (src)
			memcpy(g->host[i], (const char *)src + done, k);
		else if ((rc = filemap_pread(in->fd, in->path, g->host[i], k, off + done, e)))
			return rc;
		g->st.staged_s += uwd_now() - t;
		g->st.staged_bytes += k;
		err = cudaMemcpyAsync((char *)dev + done, g->host[i], k, cudaMemcpyHostToDevice, g->s);
		if (err == cudaSuccess)
			err = cudaEventRecord(g->done[i], g->s);
		if (err != cudaSuccess)
			return cuda_fail(e, err, "upload");
		g->next = (i + 1) % NSTAGES;
		done += k;
	}
	return rc;
}

int encode_gpu_pin(const void *p, size_t n, struct uwerr *e)
{
	cudaError_t err = cudaHostRegister((void *)p, n, cudaHostRegisterReadOnly);
	if (err == cudaSuccess)
		return 0;
	cudaGetLastError();   /* not sticky: clear it */
	return uwerr_set(e, EIO, "registering %zu bytes of a file's mapping with the driver: %s",
			 n, cudaGetErrorString(err));
}

void encode_gpu_unpin(const void *p)
{
	cudaHostUnregister((void *)p);
}

/* The stored bytes (in->len of them) to dev: straight from pinned pages
 * (a copy for each registered piece they touch), else through the stages,
 * from host memory or pread from the file. */
static int put(struct encode_gpu *g, void *dev, const struct encode_input *in, struct uwerr *e)
{
	if (!in->pin_piece)
		return in->fd >= 0 ? upload(g, dev, NULL, in, in->file_off, in->len, e)
				   : upload(g, dev, in->data, NULL, 0, in->len, e);
	const char *p = in->data, *end = p + in->len;
	while (p < end) {
		size_t into = (size_t)(p - in->pin_base) % in->pin_piece;
		size_t k = in->pin_piece - into < (size_t)(end - p) ? in->pin_piece - into
								     : (size_t)(end - p);
		cudaError_t err = cudaMemcpyAsync((char *)dev + (p - (const char *)in->data), p, k,
						  cudaMemcpyHostToDevice, g->s);
		if (err != cudaSuccess)
			return cuda_fail(e, err, "copy from the page cache");
		p += k;
	}
	g->st.direct_bytes += in->len;
	return 0;
}

/* CRC-32C of n bytes on the device against the one they must have. */
static int check_crc(struct encode_gpu *g, const void *dev, size_t n, uint32_t want,
		     const char *what, struct uwerr *e)
{
	uint32_t crc;
	int rc = uwk_crc32c(dev, n, &crc, g->s, e);
	if (!rc && crc != want)
		rc = uwerr_set(e, EBADMSG, "%s CRC-32C mismatch (stored 0x%08x, computed 0x%08x on "
			       "the GPU)", what, want, crc);
	return rc;
}

static size_t align256(size_t n)
{
	return (n + 255) & ~(size_t)255;
}

/* Where an exphuf payload goes in the scratch, after the raw bytes, as
 * uwk_exphuf_decode needs it placed, and the span it takes there. */
static size_t payload_off(const struct encode_input *in)
{
	return align256(in->raw_bytes) + uwk_exphuf_lead(in->x->sm_off);
}

static size_t payload_span(const struct encode_input *in)
{
	return align256(uwk_exphuf_lead(in->x->sm_off) + in->len + UWK_EXPHUF_PAD);
}

/* The tables the CPU checked, to the device: small, copied from pageable
 * memory (the stages would pin 32 MiB for them). */
static int tables(struct encode_gpu *g, void *dev, const void *src, size_t n, struct uwerr *e)
{
	cudaError_t err = cudaMemcpyAsync(dev, src, n, cudaMemcpyHostToDevice, g->s);
	return err == cudaSuccess ? 0 : cuda_fail(e, err, "exphuf tables");
}

/* The payload, its chunk starts and code table after the raw bytes in the
 * scratch; the payload checked there, decoded into the scratch's start and
 * the decoded bytes checked. */
static int exphuf_to_raw(struct encode_gpu *g, const struct encode_input *in, struct uwerr *e)
{
	const struct rest_exphuf *x = in->x;
	char *payload = (char *)g->dev + payload_off(in);
	char *start = (char *)g->dev + align256(in->raw_bytes) + payload_span(in);
	char *dec = start + align256((x->nchunks + 1) * sizeof(*x->start));
	double t = uwd_now();
	int rc = put(g, payload, in, e);
	double t2 = uwd_now();
	g->st.put_s += t2 - t;
	if (!rc)
		rc = check_crc(g, payload, in->len, in->stored_crc, "payload", e);
	g->st.crc_s += uwd_now() - t2;
	if (rc || !x->n)
		return rc;
	if ((rc = tables(g, start, x->start, (x->nchunks + 1) * sizeof(*x->start), e)) ||
	    (rc = tables(g, dec, x->dec->entry, sizeof(x->dec->entry), e)))
		return rc;
	t = uwd_now();
	rc = uwk_exphuf_decode((const uint8_t *)payload + x->sm_off,
			       (const uint8_t *)payload + x->bits_off, (const uint64_t *)start,
			       (const uint16_t *)dec, x->n, g->dev, g->s, e);
	t2 = uwd_now();
	g->st.decode_s += t2 - t;
	if (!rc)
		rc = check_crc(g, g->dev, in->raw_bytes, in->raw_crc, "decoded bytes", e);
	g->st.crc_s += uwd_now() - t2;
	return rc;
}

int encode_gpu_tensor(struct encode_gpu *g, int dtype, int ndim, const uint64_t *shape,
		      const struct encode_input *in, void *dst, encode_place_fn place,
		      void *ctx, struct uw_layout *l, uint64_t *off, struct uwerr *e)
{
	size_t need = in->raw_bytes;
	if (in->x)
		need = align256(in->raw_bytes) + payload_span(in) +
		       align256((in->x->nchunks + 1) * sizeof(*in->x->start)) +
		       sizeof(in->x->dec->entry);
	const struct encode_gpu_stats was = g->st;
	const double t0 = uwd_now();
	int rc = scratch(g, need, e);
	double t = uwd_now();
	g->st.scratch_s += t - t0;
	if (rc) {
		g->st.total_s += t - t0;
		return rc;
	}
	g->st.tensors++;
	if (in->x) {
		rc = exphuf_to_raw(g, in, e);
	} else {
		rc = put(g, g->dev, in, e);
		g->st.put_s += uwd_now() - t;
	}
	/* plan syncs the stream: the staging is free again after it */
	double t2 = uwd_now();
	if (!rc)
		rc = uwk_encode_plan(dtype, ndim, shape, g->dev, in->raw_bytes, l, g->s, e);
	double t3 = uwd_now();
	g->st.plan_s += t3 - t2;
	if (!rc && !(rc = place(ctx, l->nbytes, off, e)))
		rc = uwk_encode(l, g->dev, in->raw_bytes, (char *)dst + *off, g->s, e);
	const double t4 = uwd_now();
	g->st.encode_s += t4 - t3;
	g->st.total_s += t4 - t0;
	log_debug("GPU encoder: %zu stored bytes in %.2f ms: %.2f copying, %.2f checking, "
		  "%.2f decoding, %.2f planning, %.2f encoding", in->len, 1e3 * (t4 - t0),
		  1e3 * (g->st.put_s - was.put_s), 1e3 * (g->st.crc_s - was.crc_s),
		  1e3 * (g->st.decode_s - was.decode_s), 1e3 * (g->st.plan_s - was.plan_s),
		  1e3 * (g->st.encode_s - was.encode_s));
	return rc;
}
