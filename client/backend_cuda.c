/* backend_cuda: the CUDA backend of the client: import the daemon's VMM
 * buffers from their fds, map them read-only on the GPU whose UUID the
 * daemon named, and run the kernels of kernels/cuda on them. */
#include "config.h"

#include "client/client.h"

#include <cuda_runtime_api.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/cudrv.h"
#include "kernels/cuda/uwk.h"

/* The driver, loaded by the first import (cudrv.h says why it is not linked). */
static const struct cudrv *cu;

/* Each attach makes the contexts read the tune cache again at their next
 * matmul ($UW_TUNE_DIR, kernels/tunecache.h): a worker that attaches after
 * `unweightctl tune` has finished uses its choices, and a matmul never
 * waits for a file. */
static atomic_uint tune_epoch = 1;

static void tune_stale(void)
{
	atomic_fetch_add(&tune_epoch, 1);
}

#define CL_CU(call, e, what)                                                       \
	do {                                                                       \
		CUresult cu_rc_ = (call);                                          \
		if (cu_rc_ != CUDA_SUCCESS) {                                      \
			char t_[256];                                              \
			rc = uwerr_set(e, cu_rc_ == CUDA_ERROR_OUT_OF_MEMORY ? ENOMEM : EIO, \
				       "%s: %s (%s, at %s:%d)", what,              \
				       cudrv_strerror(cu, cu_rc_, t_, sizeof(t_)), \
				       #call, __FILE__, __LINE__);                 \
			goto fail;                                                 \
		}                                                                  \
	} while (0)

/* The visible device whose UUID the daemon gave: ordinals differ between
 * processes with different CUDA_VISIBLE_DEVICES, UUIDs do not. */
static int find_device(const char *uuid, CUdevice *out, int *ordinal, struct uwerr *e)
{
	int n = 0, rc = 0;
	if (!(cu = cudrv_get(e)))
		return -e->code;
	CL_CU(cu->cuInit(0), e, "cuInit (no usable NVIDIA driver or GPU?)");
	CL_CU(cu->cuDeviceGetCount(&n), e, "counting GPUs");
	for (int i = 0; i < n; i++) {
		CUdevice d;
		CUuuid u;
		char s[64];
		if (cu->cuDeviceGet(&d, i) != CUDA_SUCCESS || cu->cuDeviceGetUuid(&u, d) != CUDA_SUCCESS)
			continue;
		const unsigned char *b = (const unsigned char *)u.bytes;
		snprintf(s, sizeof(s), "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
			 "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
			 b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
		if (strcmp(s, uuid) == 0) {
			*out = d;
			*ordinal = i;
			return 0;
		}
	}
	return uwerr_set(e, ENODEV, "the model is on GPU %s, which this process cannot see "
			 "(CUDA_VISIBLE_DEVICES?)", uuid);
fail:
	return rc;
}

/* Each device's primary context, retained once and kept for the life of the
 * process (the CUDA runtime shares it): releasing it at the last detach
 * would make the next attach pay for a new context, about 200 ms. */
static CUcontext ctxs[64];
static pthread_mutex_t ctxs_lock = PTHREAD_MUTEX_INITIALIZER;

static int primary_ctx(CUdevice dev, int ordinal, CUcontext *out, struct uwerr *e)
{
	int rc = 0;
	if (ordinal < 0 || ordinal >= 64)
		return uwerr_set(e, ENODEV, "device %d: too many devices", ordinal);
	pthread_mutex_lock(&ctxs_lock);
	if (!ctxs[ordinal]) {
		if (!e) {   /* release path: the context must exist already */
			rc = -ENODEV;
			goto out;
		}
		CL_CU(cu->cuDevicePrimaryCtxRetain(&ctxs[ordinal], dev), e, "device context");
	}
	*out = ctxs[ordinal];
	goto out;
fail:
	ctxs[ordinal] = NULL;
out:
	pthread_mutex_unlock(&ctxs_lock);
	return rc;
}

static int cuda_import(int fd, uint64_t size, const char *device_uuid, struct cl_buf *b,
		       struct uwerr *e)
{
	CUdevice dev = 0;
	CUcontext ctx = NULL;
	CUmemGenericAllocationHandle h = 0;
	CUmemAllocationProp prop = {0};
	CUmemAccessDesc acc = {0};
	CUdeviceptr ptr = 0;
	size_t gran = 0, mapsize = 0;
	int ordinal = 0, mapped = 0, rc;
	memset(b, 0, sizeof(*b));
	if ((rc = find_device(device_uuid, &dev, &ordinal, e)))
		goto fail;
	if ((rc = primary_ctx(dev, ordinal, &ctx, e)))
		goto fail;
	CL_CU(cu->cuCtxSetCurrent(ctx), e, "device context");
	CL_CU(cu->cuMemImportFromShareableHandle(&h, (void *)(uintptr_t)fd,
					     CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR),
	      e, "importing the buffer");
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = dev;
	prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
	CL_CU(cu->cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM),
	      e, "granularity");
	mapsize = (size + gran - 1) / gran * gran;
	CL_CU(cu->cuMemAddressReserve(&ptr, mapsize, gran, 0, 0), e, "reserving addresses");
	CL_CU(cu->cuMemMap(ptr, mapsize, 0, h, 0), e, "mapping the buffer");
	mapped = 1;
	/* Read-only: a buggy worker cannot change the weights others use. */
	acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	acc.location.id = dev;
	acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READ;
	CL_CU(cu->cuMemSetAccess(ptr, mapsize, &acc, 1), e, "read-only access");
	/* The mapping keeps the memory alive; the handle is no longer needed. */
	cu->cuMemRelease(h);
	tune_stale();
	close(fd);
	b->dev = ptr;
	b->size = mapsize;
	b->device = ordinal;
	return 0;
fail:
	if (mapped)
		cu->cuMemUnmap(ptr, mapsize);
	if (ptr)
		cu->cuMemAddressFree(ptr, mapsize);
	if (h)
		cu->cuMemRelease(h);
	close(fd);
	return rc;
}

static void cuda_release(struct cl_buf *b)
{
	if (!b->dev)
		return;
	CUcontext ctx = NULL;
	if (primary_ctx(0, b->device, &ctx, NULL) == 0) {
		cu->cuCtxSetCurrent(ctx);
		cu->cuMemUnmap(b->dev, b->size);
		cu->cuMemAddressFree(b->dev, b->size);
	}
	b->dev = 0;
}

/* uwk contexts (cuBLAS handle, scratch, tuned choices) by (device,
 * stream): work on one stream is ordered, so its scratch may be reused call
 * after call; the lock keeps two threads from enqueueing through one handle
 * at once. */
#define CTX_SLOTS 64
static struct ctx_slot {
	int device;
	cudaStream_t stream;
	struct uwk_ctx *ctx;
	unsigned tune_epoch;      /* the tune_epoch its choices were read at */
	pthread_mutex_t lock;
} slots[CTX_SLOTS];
static int nslots;
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;

static struct ctx_slot *ctx_get(int device, cudaStream_t s, struct uwerr *e)
{
	struct ctx_slot *slot = NULL;
	pthread_mutex_lock(&slots_lock);
	for (int i = 0; i < nslots && !slot; i++)
		if (slots[i].device == device && slots[i].stream == s)
			slot = &slots[i];
	if (!slot && nslots < CTX_SLOTS) {
		struct uwk_ctx *c = NULL;
		if (uwk_ctx_new(&c, e) == 0) {
			slot = &slots[nslots++];
			slot->device = device;
			slot->stream = s;
			slot->ctx = c;
			pthread_mutex_init(&slot->lock, NULL);
		}
	} else if (!slot) {
		uwerr_set(e, EMFILE, "more than %d (device, stream) pairs used for matmul",
			  CTX_SLOTS);
	}
	pthread_mutex_unlock(&slots_lock);
	return slot;
}

/* Run on the model's device, and give the caller back its own. */
static int device_enter(int device, int *old, struct uwerr *e)
{
	if (cudaGetDevice(old) != cudaSuccess)
		*old = -1;
	if (cudaSetDevice(device) != cudaSuccess)
		return uwerr_set(e, EIO, "cudaSetDevice(%d) failed", device);
	return 0;
}

static void device_leave(int old)
{
	if (old >= 0)
		cudaSetDevice(old);
}

static int cuda_decode(const struct uw_tensor *t, void *out, size_t out_bytes,
		       void *stream, struct uwerr *e)
{
	int old, rc = device_enter(t->m->bufs[t->pt->buf].device, &old, e);
	if (rc == 0)
		rc = uwk_decode(&t->pt->layout, (const void *)(uintptr_t)t->dev, out,
				out_bytes, (cudaStream_t)stream, e);
	device_leave(old);
	return rc < 0 ? uwerr_prefix(e, "decode %s", t->pt->name) : 0;
}

/* The context of (device, stream), locked, its tune cache read again if an
 * attach came since; NULL with e set. */
static struct ctx_slot *slot_enter(int device, void *stream, struct uwerr *e)
{
	struct ctx_slot *slot = ctx_get(device, (cudaStream_t)stream, e);
	if (!slot)
		return NULL;
	pthread_mutex_lock(&slot->lock);
	const unsigned ep = atomic_load(&tune_epoch);
	if (slot->tune_epoch != ep) {
		/* a cache that cannot be read leaves the choices as they were */
		slot->tune_epoch = ep;
		uwk_ctx_load_tune(slot->ctx, NULL, NULL, NULL);
	}
	return slot;
}

static int cuda_matmul(const struct uw_tensor *t, const void *x, size_t batch, void *y,
		       uint32_t y_dtype, void *stream, struct uwerr *e)
{
	int device = t->m->bufs[t->pt->buf].device;
	int old, rc = device_enter(device, &old, e);
	struct ctx_slot *slot = rc == 0 ? slot_enter(device, stream, e) : NULL;
	if (slot) {
		const void *base = (const void *)(uintptr_t)t->dev;
		rc = y_dtype == UW_DTYPE_F32 ?
		     uwk_matmul_f32(&t->pt->layout, base, x, batch, y, (cudaStream_t)stream,
				    slot->ctx, e) :
		     uwk_matmul(&t->pt->layout, base, x, batch, y, (cudaStream_t)stream,
				slot->ctx, e);
		pthread_mutex_unlock(&slot->lock);
	} else if (rc == 0) {
		rc = -EIO;
	}
	device_leave(old);
	return rc < 0 ? uwerr_prefix(e, "matmul %s", t->pt->name) : 0;
}

static int cuda_matmul2(const struct uw_tensor *t0, const struct uw_tensor *t1, const void *x,
			size_t batch, void *y0, void *y1, void *stream, struct uwerr *e)
{
	int device = t0->m->bufs[t0->pt->buf].device;
	if (device != t1->m->bufs[t1->pt->buf].device) {
		int rc = cuda_matmul(t0, x, batch, y0, UW_DTYPE_BF16, stream, e);
		return rc < 0 ? rc : cuda_matmul(t1, x, batch, y1, UW_DTYPE_BF16, stream, e);
	}
	int old, rc = device_enter(device, &old, e);
	struct ctx_slot *slot = rc == 0 ? slot_enter(device, stream, e) : NULL;
	if (slot) {
		rc = uwk_matmul2(&t0->pt->layout, (const void *)(uintptr_t)t0->dev,
				 &t1->pt->layout, (const void *)(uintptr_t)t1->dev, x, batch, y0, y1,
				 NULL, NULL, (cudaStream_t)stream, slot->ctx, e);
		pthread_mutex_unlock(&slot->lock);
	} else if (rc == 0) {
		rc = -EIO;
	}
	device_leave(old);
	return rc < 0 ? uwerr_prefix(e, "matmul %s and %s", t0->pt->name, t1->pt->name) : 0;
}

const struct cl_backend cl_backend_cuda = {
	.name = "cuda",
	.import = cuda_import,
	.release = cuda_release,
	.decode = cuda_decode,
	.matmul = cuda_matmul,
	.matmul2 = cuda_matmul2,
};
