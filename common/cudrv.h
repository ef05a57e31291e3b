/* cudrv: the CUDA driver API, loaded with dlopen at first use rather than
 * linked, so that programs built with CUDA still start (and fall back to the
 * host backend) on a machine whose toolkit has no driver or GPU beside it. */
#ifndef UW_COMMON_CUDRV_H
#define UW_COMMON_CUDRV_H

#include <cuda.h>

#include "common/err.h"

/* The driver functions unweight calls; cuda.h maps each name to the
 * versioned symbol (cuMemGetInfo -> cuMemGetInfo_v2), which is looked up. */
#define CUDRV_FUNCS(X)                                                  \
	X(cuInit) X(cuDeviceGetCount) X(cuDeviceGet) X(cuDeviceGetAttribute) \
	X(cuDeviceGetUuid) X(cuDevicePrimaryCtxRetain)                  \
	X(cuDevicePrimaryCtxRelease) X(cuCtxSetCurrent) X(cuCtxSynchronize) \
	X(cuMemGetAllocationGranularity) X(cuMemGetInfo) X(cuMemCreate)  \
	X(cuMemRelease) X(cuMemAddressReserve) X(cuMemAddressFree)      \
	X(cuMemMap) X(cuMemUnmap) X(cuMemSetAccess)                     \
	X(cuMemExportToShareableHandle) X(cuMemImportFromShareableHandle) \
	X(cuMemcpyHtoD) X(cuMemcpyDtoD) X(cuMemsetD8)                   \
	X(cuMemHostAlloc) X(cuMemFreeHost) X(cuMemcpyHtoDAsync)         \
	X(cuMemcpyDtoHAsync) X(cuMemGetAllocationPropertiesFromHandle)  \
	X(cuStreamCreate) X(cuStreamDestroy) X(cuStreamSynchronize)     \
	X(cuEventCreate) X(cuEventRecord) X(cuEventSynchronize) X(cuEventDestroy) \
	X(cuGetErrorName) X(cuGetErrorString)

struct cudrv {
#define CUDRV_FIELD(f) __typeof__(f) *f;
	CUDRV_FUNCS(CUDRV_FIELD)
#undef CUDRV_FIELD
};

/* The driver's functions, loaded once (thread-safe); NULL with e saying why
 * (no libcuda.so.1, or a driver too old for a function). */
const struct cudrv *cudrv_get(struct uwerr *e);

/* "CUDA_ERROR_OUT_OF_MEMORY: out of memory" for rc, into buf. */
const char *cudrv_strerror(const struct cudrv *cu, CUresult rc, char *buf, size_t n);

#endif
