/* uwk: the CUDA kernels over the resident formats, behind a C API:
 * uwk_encode_plan + uwk_encode (BF16 -> resident, res_encode's bytes),
 * uwk_decode (resident -> BF16) and uwk_matmul (fused decode+matmul for small
 * batches, decode to scratch + cuBLAS for large ones).
 *
 * Memory. Every pointer is a device pointer of the current device.
 * - dev_base: the tensor's resident bytes (struct uw_layout offsets are from
 *   it); 256-byte aligned, as the resident formats promise.
 * - R12 planes: where both row strides are multiples of 16 (rows of 4096
 *   columns or more, or of a multiple of 32) the kernels read them with
 *   16-byte loads; packed narrow rows are read byte by byte (slower, same
 *   result).
 * - x: BF16 [batch][cols], y: BF16 [batch][rows], dense row-major (row stride
 *   = cols resp. rows elements); 2-byte aligned. When x is 16-byte aligned and
 *   cols % 8 == 0 the fused kernel stages x with 16-byte copies, else element
 *   by element (slower, same result).
 * - decode output: BF16 [rows][cols] dense, 2-byte aligned (16-byte aligned
 *   with cols % 8 == 0 gives 16-byte stores); out_bytes >= rows * cols * 2.
 *   RAW tensors of any dtype are copied (out_bytes >= nbytes, any alignment).
 *
 * Work is queued on the stream and returns at once; bad arguments are found
 * on the host before anything is queued. Every function returns 0 or a
 * negative errno and fills *e (may be NULL) with what failed, on what, and why.
 *
 * Results are deterministic: the same inputs give the same bits, run after run
 * (fixed reduction orders, no floating-point atomics). */
#ifndef UW_KERNELS_CUDA_UWK_H
#define UW_KERNELS_CUDA_UWK_H

#include <stddef.h>

#include <cuda_runtime_api.h>

#include "unweight.h"

#ifdef __cplusplus
extern "C" {
#endif

#include "common/err.h"

/* The pipelines of uwk_matmul. */
enum uwk_pipe {
	UWK_PIPE_AUTO = 0,     /* by format and batch (below) */
	UWK_PIPE_FUSED,        /* R12 read once, BF16 rebuilt in registers; batch <= UWK_FUSED_MAX_BATCH */
	UWK_PIPE_DECODE_GEMM,  /* uwk_decode into the context's scratch, then cublasGemmEx */
};

#define UWK_FUSED_MAX_BATCH 64
/* AUTO uses the fused kernel for R12 up to this batch (bench/NOTES.md has
 * the measurement behind it) and decode + cuBLAS above; RAW goes to cuBLAS. */
#define UWK_AUTO_FUSED_MAX_BATCH 64

/* Per-stream state of uwk_matmul: a cuBLAS handle, the decode scratch and the
 * split-K partial sums. One context serves one stream at a time (its scratch
 * is reused by the next call); it belongs to the device current at creation. */
struct uwk_ctx;

int uwk_ctx_new(struct uwk_ctx **out, struct uwerr *e);
/* Waits for nothing: free only after the work that used it is done. NULL is fine. */
void uwk_ctx_free(struct uwk_ctx *c);

/* Plan the resident layout of a tensor whose raw bytes (dev_raw, 2-byte
 * aligned for BF16) are in device memory: res_plan's result, from an
 * exponent histogram counted on the GPU. Waits for stream s. */
int uwk_encode_plan(int dtype, int ndim, const uint64_t *shape, const void *dev_raw,
		    size_t raw_bytes, struct uw_layout *l, cudaStream_t s,
		    struct uwerr *e);

/* Write the resident bytes of dev_raw into dev_dst (l->nbytes of them, from
 * uwk_encode_plan or res_plan; dev_dst 256-byte aligned for R12) and set
 * l->crc32c: the bytes and checksum res_encode writes. Data whose exponents
 * do not fit the layout's patch count is -EINVAL (nothing past nbytes is
 * written). Waits for stream s. */
int uwk_encode(struct uw_layout *l, const void *dev_raw, size_t raw_bytes,
	       void *dev_dst, cudaStream_t s, struct uwerr *e);

/* Decode the resident tensor at dev_base into dev_out (bit-exact BF16, or the
 * raw bytes for RAW), on stream s. */
int uwk_decode(const struct uw_layout *l, const void *dev_base, void *dev_out,
	       size_t out_bytes, cudaStream_t s, struct uwerr *e);

/* y[batch][rows] = x[batch][cols] . W^T for a BF16 tensor W (R12 or RAW),
 * float32 accumulation, y rounded to nearest even. batch >= 1. */
int uwk_matmul(const struct uw_layout *l, const void *dev_base, const void *x,
	       size_t batch, void *y, cudaStream_t s, struct uwk_ctx *ctx,
	       struct uwerr *e);

/* uwk_matmul with y float32 [batch][rows], the sums not rounded to BF16
 * (y 4-byte aligned). Decode to scratch + cuBLAS at every batch: it serves
 * the last layer of a model (logits), where a BF16 rounding could tie. */
int uwk_matmul_f32(const struct uw_layout *l, const void *dev_base, const void *x,
		   size_t batch, float *y, cudaStream_t s, struct uwk_ctx *ctx,
		   struct uwerr *e);

/* uwk_matmul with the pipeline named (tests and benchmarks). */
int uwk_matmul_pipe(const struct uw_layout *l, const void *dev_base, const void *x,
		    size_t batch, void *y, enum uwk_pipe pipe, cudaStream_t s,
		    struct uwk_ctx *ctx, struct uwerr *e);

/* The fused kernel's shape: warps per block = wm * wk; each warp owns a
 * 16-row tile, wm tiles side by side share one staged slice of x, wk warps
 * split the columns of a block, and ks blocks split them again (partial sums
 * in the context, added in a fixed order by a second kernel); pf chunks of
 * 128 columns of W are in flight ahead of the one being decoded (1, 2).
 * 0 = chosen from the shape and the device (ks: one wave of blocks). */
struct uwk_cfg {
	int wm, wk, ks, pf;
};

/* The fused kernel with a given shape; -ENOTSUP for a (wm, wk) or pf not built.
 * The shapes built are listed by uwk_cfg_list. */
int uwk_matmul_fused_cfg(const struct uw_layout *l, const void *dev_base,
			 const void *x, size_t batch, void *y,
			 const struct uwk_cfg *cfg, cudaStream_t s,
			 struct uwk_ctx *ctx, struct uwerr *e);
/* The (wm, wk) pairs built; returns their count, fills up to max. */
int uwk_cfg_list(struct uwk_cfg *out, int max);
/* The configuration AUTO would use for this shape (ks resolved). */
int uwk_cfg_default(const struct uw_layout *l, size_t batch, struct uwk_ctx *ctx,
		    struct uwk_cfg *out, struct uwerr *e);

#ifdef __cplusplus
}
#endif
#endif
