/* blas: cuBLAS, loaded (dlopen) when the decode + cuBLAS pipeline first
 * needs it. Linked, it initializes itself (and cublasLt) in every process
 * that links the kernels, unweightctl and workers alike, 0.47 s of 0.85 s
 * for `unweightctl list` on the dev VM (bench/NOTES.md, 2026-11-29), though
 * AUTO takes the fused kernel up to batch 64 and never calls it. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#include "kernels/cuda/uwk_int.h"

#define STR_(x) #x
#define STR(x) STR_(x)
#define CUBLAS_SONAME "libcublas.so." STR(CUBLAS_VER_MAJOR)

/* cublasGemmEx's C entry point (C++ also sees an inline overload); the
 * static_assert holds it to the header's declaration. */
typedef cublasStatus_t (*gemm_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
				  int, const void *, const void *, cudaDataType, int, const void *,
				  cudaDataType, int, const void *, void *, cudaDataType, int,
				  cublasComputeType_t, cublasGemmAlgo_t);
static_assert(sizeof(static_cast<gemm_fn>(&cublasGemmEx)) == sizeof(gemm_fn), "cublasGemmEx's type");

static struct {
	/* the header's own declarations give the types: no cast can disagree */
	decltype(&cublasCreate_v2) create;
	decltype(&cublasDestroy_v2) destroy;
	decltype(&cublasSetStream_v2) set_stream;
	gemm_fn gemm_ex;
	decltype(&cublasGetStatusString) status_string;
	char why[256];             /* empty: loaded */
} lib;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

/* By its soname (the caller's run path, LD_LIBRARY_PATH, ld.so.cache),
 * else from the toolkit configure found. */
static void lib_load(void)
{
	void *h = dlopen(CUBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		h = dlopen(UWK_CUDA_LIBDIR "/" CUBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(lib.why, sizeof(lib.why), "%s", dlerror());
		return;
	}
	*(void **)&lib.create = dlsym(h, "cublasCreate_v2");
	*(void **)&lib.destroy = dlsym(h, "cublasDestroy_v2");
	*(void **)&lib.set_stream = dlsym(h, "cublasSetStream_v2");
	*(void **)&lib.gemm_ex = dlsym(h, "cublasGemmEx");
	*(void **)&lib.status_string = dlsym(h, "cublasGetStatusString");
	if (!lib.create || !lib.destroy || !lib.set_stream || !lib.gemm_ex || !lib.status_string)
		snprintf(lib.why, sizeof(lib.why), "%s: an entry point is missing", CUBLAS_SONAME);
}

/* The context's handle, created at first use. */
static int blas_handle(struct uwk_ctx *c, struct uwerr *e)
{
	pthread_once(&lib_once, lib_load);
	if (lib.why[0])
		return uwerr_set(e, ENOSYS, "cuBLAS: %s", lib.why);
	if (!c->blas && lib.create(&c->blas) != CUBLAS_STATUS_SUCCESS) {
		c->blas = NULL;
		return uwerr_set(e, EIO, "cublasCreate failed on device %d", c->device);
	}
	return 0;
}

int uwk_blas_gemm(struct uwk_ctx *c, const void *w, uint64_t rows, uint64_t cols,
		  const void *x, size_t batch, void *y, cudaDataType_t yt, cudaStream_t s,
		  struct uwerr *e)
{
	const float one = 1.f, zero = 0.f;
	int rc = blas_handle(c, e);
	if (rc < 0)
		return rc;
	if (lib.set_stream(c->blas, s) != CUBLAS_STATUS_SUCCESS)
		return uwerr_set(e, EIO, "cublasSetStream failed");
	cublasStatus_t st = lib.gemm_ex(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)batch,
					(int)cols, &one, w, CUDA_R_16BF, (int)cols, x, CUDA_R_16BF,
					(int)cols, &zero, y, yt, (int)rows, CUBLAS_COMPUTE_32F,
					CUBLAS_GEMM_DEFAULT);
	if (st != CUBLAS_STATUS_SUCCESS)
		return uwerr_set(e, EIO, "cublasGemmEx %llux%llu batch %zu: %s",
				 (unsigned long long)rows, (unsigned long long)cols, batch,
				 lib.status_string(st));
	return 0;
}

void uwk_blas_free(struct uwk_ctx *c)
{
	if (c->blas)
		lib.destroy(c->blas);
	c->blas = NULL;
}
