/* backend_cuda: models in GPU memory allocated with the driver's virtual
 * memory management (cuMemCreate), exported as POSIX fds so that workers
 * import them (cuMemImportFromShareableHandle) and map them read-only.
 * VMM memory lives while any handle or mapping refers to it, so workers keep
 * computing even if the daemon dies; legacy cudaIpc memory would not. */
#include "config.h"

#include "daemon/backend.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cudrv.h"
#include "daemon/encode_gpu.h"
#include "kernels/cuda/uwk.h"
#include "unweight.h"

/* The driver, loaded by probe (cudrv.h says why it is not linked). */
static const struct cudrv *cu;

/* Record a failed driver call with its file and line. */
#define CU_TRY(call, e, ...)                                                       \
	do {                                                                       \
		CUresult cu_rc_ = (call);                                          \
		if (cu_rc_ != CUDA_SUCCESS)                                        \
			return cu_fail(cu_rc_, #call, __FILE__, __LINE__, e, __VA_ARGS__); \
	} while (0)

__attribute__((format(printf, 6, 7)))
static int cu_fail(CUresult rc, const char *call, const char *file, int line,
		   struct uwerr *e, const char *fmt, ...)
{
	char what[256], text[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	int code = rc == CUDA_ERROR_OUT_OF_MEMORY ? ENOMEM : EIO;
	return uwerr_set(e, code, "%s: %s (%s, at %s:%d)", what,
			 cudrv_strerror(cu, rc, text, sizeof(text)), call, file, line);
}

struct cuda_dev {
	CUdevice dev;
	CUcontext ctx;            /* the primary context, retained */
	size_t gran;              /* allocation granularity */
};

struct cuda_priv {
	int ndev;
	struct cuda_dev d[BACKEND_MAX_DEVICES];
};

/* Uploads go through pinned staging buffers with async copies, so that the
 * next stages are filled while the last one crosses PCIe (three: one
 * filling, one crossing, one spare so a fill never waits on a copy just
 * queued). Set up at the first write; writers from several loader threads
 * take turns. */
#define STAGE_BYTES (8u << 20)
#define NSTAGES 3

struct stager {
	pthread_mutex_t lock;
	int ready;
	CUstream stream;
	void *host[NSTAGES];
	CUevent done[NSTAGES];
	int next;
};

struct bbuf {
	struct stager st;
	struct cuda_dev *cd;
	CUmemGenericAllocationHandle h;
	CUdeviceptr ptr;          /* the daemon's own mapping */
	size_t size;              /* of the allocation, granularity-rounded */
	int fd;                   /* the exported handle, handed to clients */
	char label[64];
};

static void prop_init(CUmemAllocationProp *p, CUdevice dev)
{
	memset(p, 0, sizeof(*p));
	p->type = CU_MEM_ALLOCATION_TYPE_PINNED;
	p->location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	p->location.id = dev;
	p->requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
}

static size_t round_up(size_t n, size_t g)
{
	return (n + g - 1) / g * g;
}

/* Why device i cannot serve, or 0. */
static int device_check(int i, CUdevice *dev, struct uwerr *e)
{
	int vmm = 0, posix = 0;
	CU_TRY(cu->cuDeviceGet(dev, i), e, "device %d", i);
	CU_TRY(cu->cuDeviceGetAttribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, *dev),
	       e, "device %d", i);
	CU_TRY(cu->cuDeviceGetAttribute(&posix, CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED, *dev),
	       e, "device %d", i);
	if (!vmm)
		return uwerr_set(e, ENOTSUP, "device %d: the driver offers no virtual memory "
				 "management (cuMemCreate) on it", i);
	if (!posix)
		return uwerr_set(e, ENOTSUP, "device %d: the driver cannot export memory as "
				 "POSIX file descriptors (CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_"
				 "DESCRIPTOR_SUPPORTED is 0), so workers could not import it", i);
	return 0;
}

static int cuda_probe(struct uwerr *e)
{
	int n = 0;
	if (!(cu = cudrv_get(e)))
		return -e->code;
	CU_TRY(cu->cuInit(0), e, "cuInit (no usable NVIDIA driver or GPU?)");
	CU_TRY(cu->cuDeviceGetCount(&n), e, "counting GPUs");
	if (n == 0)
		return uwerr_set(e, ENODEV, "no GPU is visible");
	CUdevice dev;
	return device_check(0, &dev, e);
}

static void format_uuid(const CUuuid *u, char *out, size_t n)
{
	const unsigned char *b = (const unsigned char *)u->bytes;
	snprintf(out, n, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
		 "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5], b[6],
		 b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static int open_device(struct backend *b, struct cuda_priv *p, int i, struct uwerr *e)
{
	struct cuda_dev *cd = &p->d[i];
	struct backend_device *bd = &b->dev[i];
	CUuuid uuid;
	CUmemAllocationProp prop;
	size_t free_b = 0, total_b = 0;
	int rc = device_check(i, &cd->dev, e);
	if (rc)
		return rc;
	CU_TRY(cu->cuDevicePrimaryCtxRetain(&cd->ctx, cd->dev), e, "device %d: context", i);
	p->ndev = i + 1;
	CU_TRY(cu->cuCtxSetCurrent(cd->ctx), e, "device %d: context", i);
	CU_TRY(cu->cuDeviceGetUuid(&uuid, cd->dev), e, "device %d: uuid", i);
	prop_init(&prop, cd->dev);
	CU_TRY(cu->cuMemGetAllocationGranularity(&cd->gran, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED),
	       e, "device %d: granularity", i);
	CU_TRY(cu->cuMemGetInfo(&free_b, &total_b), e, "device %d: memory", i);
	snprintf(bd->name, sizeof(bd->name), "cuda%d", i);
	format_uuid(&uuid, bd->uuid, sizeof(bd->uuid));
	/* 90% of what is free at start unless configured: workers need room
	 * for activations, and loads peak above their final size. */
	bd->budget = (uint64_t)free_b / 10 * 9;
	return 0;
}

static void cuda_close(struct backend *b)
{
	struct cuda_priv *p = b->priv;
	if (!p)
		return;
	for (int i = 0; i < p->ndev; i++)
		cu->cuDevicePrimaryCtxRelease(p->d[i].dev);
	free(p);
	b->priv = NULL;
}

static int cuda_open(struct backend *b, struct uwerr *e)
{
	int n = 0, rc;
	struct cuda_priv *p = calloc(1, sizeof(*p));
	if (!p)
		return uwerr_set(e, ENOMEM, "out of memory");
	b->priv = p;
	if (!(cu = cudrv_get(e))) {
		rc = -e->code;
		goto fail;
	}
	if (cu->cuInit(0) != CUDA_SUCCESS || cu->cuDeviceGetCount(&n) != CUDA_SUCCESS || n == 0) {
		rc = uwerr_set(e, ENODEV, "no usable GPU");
		goto fail;
	}
	if (n > BACKEND_MAX_DEVICES)
		n = BACKEND_MAX_DEVICES;
	for (int i = 0; i < n; i++)
		if ((rc = open_device(b, p, i, e)))
			goto fail;
	b->ndev = n;
	return 0;
fail:
	cuda_close(b);
	return rc;
}

/* Allocate, map for the daemon's writes, and export: one step so that
 * buf_create and the shrink in buf_finish share it. */
static int alloc_mapped(struct cuda_dev *cd, size_t size, struct bbuf *buf, struct uwerr *e)
{
	CUmemAllocationProp prop;
	CUmemAccessDesc acc = {0};
	prop_init(&prop, cd->dev);
	buf->cd = cd;
	buf->size = round_up(size ? size : 1, cd->gran);
	buf->fd = -1;
	CU_TRY(cu->cuCtxSetCurrent(cd->ctx), e, "buffer %s", buf->label);
	CU_TRY(cu->cuMemCreate(&buf->h, buf->size, &prop, 0), e, "buffer %s: allocating %zu bytes",
	       buf->label, buf->size);
	CU_TRY(cu->cuMemAddressReserve(&buf->ptr, buf->size, cd->gran, 0, 0), e,
	       "buffer %s: reserving addresses", buf->label);
	CU_TRY(cu->cuMemMap(buf->ptr, buf->size, 0, buf->h, 0), e, "buffer %s: mapping", buf->label);
	acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	acc.location.id = cd->dev;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
	CU_TRY(cu->cuMemSetAccess(buf->ptr, buf->size, &acc, 1), e, "buffer %s: access", buf->label);
	CU_TRY(cu->cuMemExportToShareableHandle(&buf->fd, buf->h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0),
	       e, "buffer %s: exporting as an fd", buf->label);
	return 0;
}

static void free_mapped(struct bbuf *buf)
{
	if (buf->fd >= 0)
		close(buf->fd);
	buf->fd = -1;
	if (!buf->cd)
		return;
	cu->cuCtxSetCurrent(buf->cd->ctx);
	if (buf->ptr) {
		cu->cuMemUnmap(buf->ptr, buf->size);
		cu->cuMemAddressFree(buf->ptr, buf->size);
	}
	if (buf->h)
		cu->cuMemRelease(buf->h);
	buf->ptr = 0;
	buf->h = 0;
}

static void stager_free(struct stager *st)
{
	if (!st->ready)
		return;
	if (st->stream) {
		cu->cuStreamSynchronize(st->stream);
		cu->cuStreamDestroy(st->stream);
	}
	for (int i = 0; i < NSTAGES; i++) {
		if (st->done[i])
			cu->cuEventDestroy(st->done[i]);
		if (st->host[i])
			cu->cuMemFreeHost(st->host[i]);
	}
	st->stream = NULL;
	memset(st->host, 0, sizeof(st->host));
	memset(st->done, 0, sizeof(st->done));
	st->next = 0;
	st->ready = 0;
}

static int stager_init(struct stager *st, const char *label, struct uwerr *e)
{
	st->ready = 1;   /* stager_free frees what was made, whatever failed */
	CU_TRY(cu->cuStreamCreate(&st->stream, CU_STREAM_NON_BLOCKING), e, "buffer %s: stream", label);
	for (int i = 0; i < NSTAGES; i++) {
		CU_TRY(cu->cuMemHostAlloc(&st->host[i], STAGE_BYTES, 0), e,
		       "buffer %s: pinned staging of %u bytes", label, STAGE_BYTES);
		CU_TRY(cu->cuEventCreate(&st->done[i], CU_EVENT_DISABLE_TIMING), e,
		       "buffer %s: event", label);
	}
	return 0;
}

static void cuda_buf_destroy(struct bbuf *buf)
{
	if (!buf)
		return;
	if (buf->cd)
		cu->cuCtxSetCurrent(buf->cd->ctx);
	stager_free(&buf->st);
	pthread_mutex_destroy(&buf->st.lock);
	free_mapped(buf);
	free(buf);
}

static int cuda_buf_create(struct backend *b, int dev, const char *label, uint64_t cap,
			   struct bbuf **out, struct uwerr *e)
{
	struct cuda_priv *p = b->priv;
	if (dev < 0 || dev >= p->ndev)
		return uwerr_set(e, ENODEV, "buffer %s: no device %d", label, dev);
	if (cap > SIZE_MAX / 2)
		return uwerr_set(e, EFBIG, "buffer %s: %llu bytes", label, (unsigned long long)cap);
	struct bbuf *buf = calloc(1, sizeof(*buf));
	if (!buf)
		return uwerr_set(e, ENOMEM, "buffer %s: out of memory", label);
	snprintf(buf->label, sizeof(buf->label), "%s", label);
	pthread_mutex_init(&buf->st.lock, NULL);
	int rc = alloc_mapped(&p->d[dev], (size_t)cap, buf, e);
	if (rc) {
		cuda_buf_destroy(buf);
		return rc;
	}
	*out = buf;
	return 0;
}

static int cuda_buf_write(struct bbuf *buf, uint64_t off, const void *src, size_t n,
			  struct uwerr *e)
{
	if (off > buf->size || n > buf->size - off)
		return uwerr_set(e, ERANGE, "buffer %s: write of %zu bytes at %llu past its "
				 "%zu bytes", buf->label, n, (unsigned long long)off, buf->size);
	CU_TRY(cu->cuCtxSetCurrent(buf->cd->ctx), e, "buffer %s", buf->label);
	struct stager *st = &buf->st;
	int rc = 0;
	pthread_mutex_lock(&st->lock);
	if (!st->ready && (rc = stager_init(st, buf->label, e)))
		goto out;
	const char *p = src;
	while (n > 0) {
		size_t k = n < STAGE_BYTES ? n : STAGE_BYTES;
		int i = st->next;
		CUresult r = cu->cuEventSynchronize(st->done[i]);   /* the stage is free */
		if (r == CUDA_SUCCESS) {
			memcpy(st->host[i], p, k);
			r = cu->cuMemcpyHtoDAsync(buf->ptr + off, st->host[i], k, st->stream);
		}
		if (r == CUDA_SUCCESS)
			r = cu->cuEventRecord(st->done[i], st->stream);
		if (r != CUDA_SUCCESS) {
			rc = cu_fail(r, "staged upload", __FILE__, __LINE__, e,
				     "buffer %s: upload of %zu bytes at %llu", buf->label, k,
				     (unsigned long long)off);
			goto out;
		}
		st->next = (i + 1) % NSTAGES;
		p += k;
		off += k;
		n -= k;
	}
out:
	pthread_mutex_unlock(&st->lock);
	return rc;
}

/* The capacity was the worst case (raw size). Where the resident form is
 * smaller by a granule or more, move it into an allocation of its own size
 * so the card keeps only what the model needs. */
static int cuda_buf_finish(struct bbuf *buf, uint64_t size, struct uwerr *e)
{
	CUmemAccessDesc acc = {0};
	if (size > buf->size)
		return uwerr_set(e, ERANGE, "buffer %s: finish at %llu bytes, past its %zu",
				 buf->label, (unsigned long long)size, buf->size);
	CU_TRY(cu->cuCtxSetCurrent(buf->cd->ctx), e, "buffer %s", buf->label);
	CU_TRY(cu->cuCtxSynchronize(), e, "buffer %s: finishing uploads", buf->label);
	stager_free(&buf->st);
	if (round_up(size ? size : 1, buf->cd->gran) < buf->size) {
		struct bbuf fit = {0};
		memcpy(fit.label, buf->label, sizeof(fit.label));
		int rc = alloc_mapped(buf->cd, (size_t)size, &fit, e);
		if (!rc && size && cu->cuMemcpyDtoD(fit.ptr, buf->ptr, (size_t)size) != CUDA_SUCCESS)
			rc = uwerr_set(e, EIO, "buffer %s: moving %llu bytes", buf->label,
				       (unsigned long long)size);
		if (!rc && cu->cuCtxSynchronize() != CUDA_SUCCESS)
			rc = uwerr_set(e, EIO, "buffer %s: moving", buf->label);
		if (rc) {
			free_mapped(&fit);
			return rc;
		}
		free_mapped(buf);
		fit.st = buf->st;   /* the (idle, freed) stager and its lock stay */
		*buf = fit;
	}
	/* The daemon itself only reads from now on. */
	acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	acc.location.id = buf->cd->dev;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READ;
	CU_TRY(cu->cuMemSetAccess(buf->ptr, buf->size, &acc, 1), e, "buffer %s: read-only", buf->label);
	return 0;
}

static int cuda_buf_fd(const struct bbuf *buf)
{
	return buf->fd;
}

/* ---- reading back: checksums, and buffers a previous daemon stored ---- */

/* Each span summed on the device by the encoder's checksum kernel
 * (uwk_crc32c): only the per-chunk CRCs cross PCIe, and the host joins
 * them; on its own stream, so a load's encoders run on beside it. */
static int cuda_buf_crc32c(const struct bbuf *buf, struct bspan *spans, size_t n,
			   struct uwerr *e)
{
	for (size_t i = 0; i < n; i++) {
		if (spans[i].off > buf->size || spans[i].len > buf->size - spans[i].off)
			return uwerr_set(e, ERANGE, "buffer %s: checksum of [%llu,+%llu) past its "
					 "%zu bytes", buf->label, (unsigned long long)spans[i].off,
					 (unsigned long long)spans[i].len, buf->size);
		spans[i].crc = 0;
	}
	CU_TRY(cu->cuCtxSetCurrent(buf->cd->ctx), e, "buffer %s", buf->label);
	cudaStream_t s;
	cudaError_t err = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
	if (err != cudaSuccess)
		return uwerr_set(e, EIO, "buffer %s: checksum stream: %s", buf->label,
				 cudaGetErrorString(err));
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++)
		rc = uwk_crc32c((const void *)(uintptr_t)(buf->ptr + spans[i].off), spans[i].len,
				&spans[i].crc, s, e);
	cudaStreamDestroy(s);
	return rc ? uwerr_prefix(e, "buffer %s: checksum", buf->label) : 0;
}

/* Import a stored fd and map all of it, read-only, for the daemon's reads.
 * The allocation is size rounded up to the granularity (buf_finish makes
 * it so); a smaller one does not map, a larger one fails its checksum. */
static int import_mapped(struct cuda_dev *cd, int fd, size_t size, struct bbuf *buf,
			 struct uwerr *e)
{
	CUmemAllocationProp prop;
	CUmemAccessDesc acc = {0};
	buf->cd = cd;
	buf->size = round_up(size ? size : 1, cd->gran);
	CU_TRY(cu->cuCtxSetCurrent(cd->ctx), e, "stored buffer");
	CU_TRY(cu->cuMemImportFromShareableHandle(&buf->h, (void *)(uintptr_t)fd,
						  CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR),
	       e, "importing the stored fd (not an exported cuMemCreate allocation?)");
	CU_TRY(cu->cuMemGetAllocationPropertiesFromHandle(&prop, buf->h), e,
	       "stored buffer: its properties");
	if (prop.location.type != CU_MEM_LOCATION_TYPE_DEVICE || prop.location.id != cd->dev)
		return uwerr_set(e, ENODEV, "stored buffer: memory of device ordinal %d, not %d",
				 prop.location.id, (int)cd->dev);
	CU_TRY(cu->cuMemAddressReserve(&buf->ptr, buf->size, cd->gran, 0, 0), e,
	       "stored buffer: reserving addresses");
	CU_TRY(cu->cuMemMap(buf->ptr, buf->size, 0, buf->h, 0), e,
	       "stored buffer: mapping %zu bytes (a smaller allocation than the manifest says?)",
	       buf->size);
	acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	acc.location.id = cd->dev;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READ;
	CU_TRY(cu->cuMemSetAccess(buf->ptr, buf->size, &acc, 1), e, "stored buffer: read-only");
	return 0;
}

static int cuda_buf_adopt(struct backend *b, int dev, int fd, uint64_t size,
			  struct bbuf **out, struct uwerr *e)
{
	struct cuda_priv *p = b->priv;
	if (dev < 0 || dev >= p->ndev)
		return uwerr_set(e, ENODEV, "stored buffer: no device %d", dev);
	if (size > SIZE_MAX / 2)
		return uwerr_set(e, EFBIG, "stored buffer: %llu bytes", (unsigned long long)size);
	struct bbuf *buf = calloc(1, sizeof(*buf));
	if (!buf)
		return uwerr_set(e, ENOMEM, "stored buffer: out of memory");
	snprintf(buf->label, sizeof(buf->label), "stored %s", b->dev[dev].name);
	pthread_mutex_init(&buf->st.lock, NULL);
	buf->fd = -1;   /* the caller's until this succeeds */
	int rc = import_mapped(&p->d[dev], fd, (size_t)size, buf, e);
	if (rc) {
		cuda_buf_destroy(buf);
		return rc;
	}
	buf->fd = fd;   /* handed to clients as it was by the previous daemon */
	*out = buf;
	return 0;
}

/* A loader thread's encoder on the buffer's device (daemon/encode_gpu.c). */
struct benc {
	struct bbuf *buf;
	struct encode_gpu *g;
};

static void cuda_enc_free(struct benc *b, struct encode_gpu_stats *sum)
{
	if (!b)
		return;
	cu->cuCtxSetCurrent(b->buf->cd->ctx);
	if (sum)
		encode_gpu_stats_add(sum, encode_gpu_stats(b->g));
	encode_gpu_free(b->g);
	free(b);
}

static int cuda_enc_new(struct bbuf *buf, struct benc **out, struct uwerr *e)
{
	CU_TRY(cu->cuCtxSetCurrent(buf->cd->ctx), e, "buffer %s", buf->label);
	struct benc *b = calloc(1, sizeof(*b));
	if (!b)
		return uwerr_set(e, ENOMEM, "buffer %s: out of memory", buf->label);
	b->buf = buf;
	int rc = encode_gpu_new(&b->g, e);
	if (rc) {
		free(b);
		return uwerr_prefix(e, "buffer %s", buf->label);
	}
	*out = b;
	return 0;
}

/* The place callback of the loader, with the buffer's bounds checked. */
struct enc_place {
	encode_place_fn place;
	void *ctx;
	const struct bbuf *buf;
};

static int enc_place_checked(void *ctx, uint64_t nbytes, uint64_t *off, struct uwerr *e)
{
	struct enc_place *p = ctx;
	int rc = p->place(p->ctx, nbytes, off, e);
	if (!rc && (*off > p->buf->size || nbytes > p->buf->size - *off))
		rc = uwerr_set(e, ERANGE, "buffer %s: %llu bytes at %llu past its %zu bytes",
			       p->buf->label, (unsigned long long)nbytes, (unsigned long long)*off,
			       p->buf->size);
	return rc;
}

static int cuda_enc_tensor(struct benc *b, int dtype, int ndim, const uint64_t *shape,
			   const struct encode_input *in, encode_place_fn place, void *ctx,
			   struct uw_layout *l, uint64_t *off, struct uwerr *e)
{
	CU_TRY(cu->cuCtxSetCurrent(b->buf->cd->ctx), e, "buffer %s", b->buf->label);
	struct enc_place p = {place, ctx, b->buf};
	return encode_gpu_tensor(b->g, dtype, ndim, shape, in, (void *)(uintptr_t)b->buf->ptr,
				 enc_place_checked, &p, l, off, e);
}

static int cuda_pin(struct bbuf *buf, const void *p, size_t n, struct uwerr *e)
{
	CU_TRY(cu->cuCtxSetCurrent(buf->cd->ctx), e, "buffer %s", buf->label);
	return encode_gpu_pin(p, n, e);
}

static void cuda_unpin(struct bbuf *buf, const void *p)
{
	cu->cuCtxSetCurrent(buf->cd->ctx);
	encode_gpu_unpin(p);
}

static uint64_t cuda_buf_dev_addr(const struct bbuf *buf)
{
	return buf->ptr;
}

const struct backend_ops backend_cuda_ops = {
	.name = "cuda",
	.id = UW_BACKEND_CUDA,
	.probe = cuda_probe,
	.open = cuda_open,
	.close = cuda_close,
	.buf_create = cuda_buf_create,
	.buf_write = cuda_buf_write,
	.buf_finish = cuda_buf_finish,
	.buf_fd = cuda_buf_fd,
	.buf_destroy = cuda_buf_destroy,
	.buf_adopt = cuda_buf_adopt,
	.buf_crc32c = cuda_buf_crc32c,
	.enc_new = cuda_enc_new,
	.enc_tensor = cuda_enc_tensor,
	.enc_free = cuda_enc_free,
	.pin = cuda_pin,
	.unpin = cuda_unpin,
	.buf_dev_addr = cuda_buf_dev_addr,
};
