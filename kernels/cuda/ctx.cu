/* ctx: the uwk context (cuBLAS handle, scratch buffers), CUDA error records
 * and the argument checks every kernel entry point shares. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/uwk_int.h"

extern "C" {
#include "kernels/resident.h"
}

int uwk_cuda_fail(struct uwerr *e, cudaError_t err, const char *call,
		  const char *file, int line)
{
	cudaGetLastError();   /* a refused call is no reason to fail the next one */
	int code = err == cudaErrorMemoryAllocation ? ENOMEM :
		   err == cudaErrorInvalidValue ? EINVAL :
		   err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver ? ENODEV : EIO;
	return uwerr_set(e, code, "%s: %s (%s:%d)", call, cudaGetErrorString(err), file, line);
}

int uwk_check_ptr(const void *p, size_t align, const char *what, struct uwerr *e)
{
	if (!p)
		return uwerr_set(e, EINVAL, "%s: NULL", what);
	if ((uintptr_t)p % align)
		return uwerr_set(e, EINVAL, "%s %p: not %zu-byte aligned", what, p, align);
	cudaPointerAttributes at;
	cudaError_t rc = cudaPointerGetAttributes(&at, p);
	if (rc != cudaSuccess) {
		cudaGetLastError();   /* not sticky: leave no trace for later calls */
		return uwerr_set(e, EINVAL, "%s %p: not a CUDA pointer (%s)", what, p,
				 cudaGetErrorString(rc));
	}
	if (at.type != cudaMemoryTypeDevice && at.type != cudaMemoryTypeManaged)
		return uwerr_set(e, EINVAL, "%s %p: host memory, want device memory", what, p);
	return 0;
}

int uwk_args_make(const struct uw_layout *l, const void *dev_base,
		  struct r12_args *a, struct uwerr *e)
{
	int rc;
	if (!l)
		return uwerr_set(e, EINVAL, "layout: NULL");
	if ((rc = res_validate(l, l->nbytes, e)) < 0)
		return rc;
	const bool r11 = l->format == UW_FORMAT_R11;
	if (l->format != UW_FORMAT_R12 && !r11)
		return uwerr_set(e, EINVAL, "layout: format %u, want R12 or R11", l->format);
	if (!r11 && l->rows > INT32_MAX / 16)
		return uwerr_set(e, EINVAL, "layout: %llu rows (the kernels take up to %d)",
				 (unsigned long long)l->rows, INT32_MAX / 16);
	if (r11 && (l->rows > INT32_MAX || l->cols > INT32_MAX))
		return uwerr_set(e, EINVAL, "layout: %llux%llu (the kernels take up to %d a side)",
				 (unsigned long long)l->rows, (unsigned long long)l->cols, INT32_MAX);
	if ((rc = uwk_check_ptr(dev_base, RES_ALIGN, "tensor base", e)) < 0)
		return rc;
	const uint8_t *b = (const uint8_t *)dev_base;
	a->mant = b + l->mant_off;
	a->nib = b + l->nib_off;
	a->pgrp = (const uint32_t *)(b + l->patch_grp_off);
	a->patch = r11 ? NULL : (const uint32_t *)(b + l->patch_off);
	/* R11: res_validate checked pe, psm and xtab inside nbytes */
	a->pe = r11 ? (const uint16_t *)(b + l->patch_off) : NULL;
	a->psm = r11 ? b + l->patch_off + 2 * l->npatch : NULL;
	a->xtab = r11 ? b + l->patch_off + 3 * l->npatch : NULL;
	a->nk = r11 ? (uint32_t)((l->cols + 127) / 128) : 0;
	a->mstride = l->mant_stride;
	a->nstride = l->nib_stride;
	a->rows = (uint32_t)l->rows;
	a->cols = (uint32_t)l->cols;
	a->npatch = (uint32_t)l->npatch;
	/* res_validate: plane offsets are multiples of 16; R11's code plane
	 * is read in words */
	a->aligned = l->mant_stride % 16 == 0 && (r11 || l->nib_stride % 16 == 0);
	for (int i = 0; i < 4; i++)
		a->pal[i] = (uint32_t)l->palette[4 * i] | (uint32_t)l->palette[4 * i + 1] << 8 |
			    (uint32_t)l->palette[4 * i + 2] << 16 |
			    (uint32_t)l->palette[4 * i + 3] << 24;
	return 0;
}

int uwk_ctx_reserve(void **buf, size_t *have, size_t bytes, const char *what,
		    struct uwerr *e)
{
	if (*have >= bytes)
		return 0;
	/* cudaFree waits for the device: growing happens once per new size. */
	if (*buf)
		UWK_CK(e, cudaFree(*buf));
	*buf = NULL;
	*have = 0;
	cudaError_t rc = cudaMalloc(buf, bytes);
	if (rc != cudaSuccess) {
		*buf = NULL;
		cudaGetLastError();
		return uwerr_set(e, rc == cudaErrorMemoryAllocation ? ENOMEM : EIO,
				 "%s: cudaMalloc of %zu bytes: %s", what, bytes, cudaGetErrorString(rc));
	}
	*have = bytes;
	return 0;
}

int uwk_ctx_counters(struct uwk_ctx *ctx, uint64_t n, cudaStream_t s, struct uwerr *e)
{
	const size_t had = ctx->done_bytes;
	int rc = uwk_ctx_reserve((void **)&ctx->done, &ctx->done_bytes, n * sizeof(uint32_t),
				 "split-K counters", e);
	if (rc == 0 && ctx->done_bytes != had)
		UWK_CK(e, cudaMemsetAsync(ctx->done, 0, ctx->done_bytes, s));
	return rc;
}

int uwk_ctx_new(struct uwk_ctx **out, struct uwerr *e)
{
	struct uwk_ctx *c = (struct uwk_ctx *)calloc(1, sizeof(*c));
	int rc;
	if (!c)
		return uwerr_set(e, ENOMEM, "uwk context: out of memory");
	cudaError_t err = cudaGetDevice(&c->device);
	if (err == cudaSuccess)
		err = cudaDeviceGetAttribute(&c->sms, cudaDevAttrMultiProcessorCount, c->device);
	if (err != cudaSuccess) {
		rc = uwk_cuda_fail(e, err, "uwk context: cudaGetDevice", __FILE__, __LINE__);
		goto fail;
	}
	if ((rc = uwk_tune_key_make(c, e)) < 0)
		goto fail;
	*out = c;
	return 0;
fail:
	uwk_ctx_free(c);
	return rc;
}

void uwk_ctx_free(struct uwk_ctx *c)
{
	if (!c)
		return;
	uwk_blas_free(c);
	cudaFree(c->scratch);
	cudaFree(c->part);
	cudaFree(c->xperm);
	cudaFree(c->done);
	tune_table_free(c->tune);
	free(c);
}
