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
 * (fixed reduction orders, no floating-point atomics), for a given choice of
 * pipeline: a context that uses tuned choices (uwk_ctx_load_tune) may give
 * other bits than one that does not, within the same error bound. */
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
	UWK_PIPE_AUTO = 0,     /* the context's tuned choice, else by format and batch (below) */
	UWK_PIPE_FUSED,        /* R12 (R11: cols % 128 == 0, x 16-byte aligned) read once, BF16
				* rebuilt in registers; batch <= UWK_FUSED_MAX_BATCH */
	UWK_PIPE_DECODE_GEMM,  /* uwk_decode into the context's scratch, then cublasGemmEx */
	UWK_PIPE_FUSED_WG,     /* R12 with 16-byte rows on a compute capability 9.0 device
				* (else ENOTSUP), any batch: BF16 rebuilt in registers feeds
				* wgmma, x read by the tensor cores from shared memory */
};

#define UWK_FUSED_MAX_BATCH 64
/* Where no tuned choice applies, AUTO uses a fused kernel for R12 up to
 * these batches (bench/NOTES.md has the measurements behind them, on an
 * H200; the tuner decides per device up to batch 1024): the warpgroup one
 * (UWK_PIPE_FUSED_WG) from batch 9 to 256 where it runs, else the mma.sync
 * one up to 64; decode + cuBLAS above; R11 the mma.sync one up to
 * UWK_AUTO_R11_FUSED_MAX_BATCH where its columns are a multiple of 128 and
 * x is 16-byte aligned (at batch 64 it only matches decode + cuBLAS),
 * else decode + cuBLAS; RAW goes to cuBLAS. */
#define UWK_AUTO_FUSED_MAX_BATCH 64
#define UWK_AUTO_WG_MAX_BATCH 256
#define UWK_AUTO_R11_FUSED_MAX_BATCH 16

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
 * l->crc32c: the bytes and checksum res_encode writes. RAW and R12 only: an
 * R11 layout is -EINVAL (res_encode writes R11). Data whose exponents
 * do not fit the layout's patch count is -EINVAL (nothing past nbytes is
 * written). Waits for stream s. */
int uwk_encode(struct uw_layout *l, const void *dev_raw, size_t raw_bytes,
	       void *dev_dst, cudaStream_t s, struct uwerr *e);

/* Decode a REST_EXPHUF payload (docs/FORMAT.md) of n BF16 elements whose
 * parts are in device memory: the sign|mantissa bytes (dev_sm, 4-byte
 * aligned), the bitstreams (dev_bits; the 16-byte words holding their
 * first and last bytes are read whole, so the buffer must reach the next
 * 16-byte boundary), the chunk starts and the code table as
 * rest_exphuf_parse checked them on the host (dev_start, nchunks + 1
 * entries; dev_dec, 4096) into dev_out (8-byte aligned). A warp decodes a
 * chunk (exphuf.cu says how). A chunk whose bitstream does not decode to
 * exactly its bytes with zero padding is -EBADMSG naming it; misaligned
 * pointers are -EINVAL. Waits for stream s. */
#define UWK_EXPHUF_PAD 16   /* readable bytes a payload's buffer needs past its end */
/* Where a payload whose sign|mantissa bytes start at sm_off goes past a
 * 16-byte boundary, for those bytes to be 16-byte aligned. */
static inline size_t uwk_exphuf_lead(size_t sm_off)
{
	return (16 - sm_off % 16) % 16;
}
int uwk_exphuf_decode(const uint8_t *dev_sm, const uint8_t *dev_bits, const uint64_t *dev_start,
		      const uint16_t *dev_dec, uint64_t n, void *dev_out, cudaStream_t s,
		      struct uwerr *e);

/* CRC-32C of n bytes of device memory (common/crc32c.h's). Waits for s. */
int uwk_crc32c(const void *dev, uint64_t n, uint32_t *crc, cudaStream_t s, struct uwerr *e);

/* Decode the resident tensor at dev_base into dev_out (bit-exact BF16, or the
 * raw bytes for RAW), on stream s. */
int uwk_decode(const struct uw_layout *l, const void *dev_base, void *dev_out,
	       size_t out_bytes, cudaStream_t s, struct uwerr *e);

/* y[batch][rows] = x[batch][cols] . W^T for a BF16 tensor W (R12, R11 or RAW),
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
 * pf 1 at batch <= 8, with x on 16 bytes and cols a multiple of 128 where
 * the block's x is staged once, is the lean loop (AUTO's choice there).
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
/* y0 = x . W0^T and y1 = x . W1^T for two BF16 tensors of the same cols
 * that share x (the gate and up projections of a Llama MLP). Where the
 * fused kernel takes both (R12, batch <= UWK_FUSED_MAX_BATCH, and not where
 * AUTO takes the warpgroup kernel for both unless cfg names a split) and a
 * two-tensor kernel of the chosen shape is built (AUTO's shape at each
 * batch, pf 2, or AUTO's lean loop, pf 1), one launch runs both grids side
 * by side, so that the second's blocks fill the first's last wave and x is
 * staged from L2 for the second; each y is bit for bit what
 * uwk_matmul_fused_cfg gives with *used. The shape: cfg's (wm != 0;
 * -ENOTSUP when no two-tensor kernel of it is built), else the context's
 * tuned choice where it is such a shape, else AUTO's; the split is
 * recomputed for both grids unless cfg names one.
 * Where uwk_matmul's AUTO (tuned or not) takes the warpgroup kernel for
 * both and cfg names no shape or split, two of its launches that permute x
 * once; otherwise two uwk_matmul calls. Then *used (may be NULL) is all
 * zeros and each y is bit for bit uwk_matmul's. */
int uwk_matmul2(const struct uw_layout *l0, const void *base0, const struct uw_layout *l1,
		const void *base1, const void *x, size_t batch, void *y0, void *y1,
		const struct uwk_cfg *cfg, struct uwk_cfg *used, cudaStream_t s,
		struct uwk_ctx *ctx, struct uwerr *e);
/* The (wm, wk) pairs built; returns their count, fills up to max. */
int uwk_cfg_list(struct uwk_cfg *out, int max);
/* The configuration AUTO's defaults give this shape (ks resolved), whatever
 * the context's tuned choices. */
int uwk_cfg_default(const struct uw_layout *l, size_t batch, struct uwk_ctx *ctx,
		    struct uwk_cfg *out, struct uwerr *e);
/* Fill in what *cfg leaves to the defaults (wm 0: AUTO's shape; ks, pf 0)
 * and set ks to the splits that run (a ks that leaves a split empty runs as
 * fewer): the launch uwk_matmul_fused_cfg makes of cfg. -ENOTSUP as there. */
int uwk_cfg_resolve(const struct uw_layout *l, size_t batch, struct uwk_ctx *ctx,
		    struct uwk_cfg *cfg, struct uwerr *e);

/* ---- tuning (kernels/cuda/tune.cu; the cache file: kernels/tunecache.h) ---- */

/* The kernels' generation: bump when a change to the kernels or to what a
 * uwk_cfg means makes the choices of earlier tuning stale. */
#define UWK_KERNELS "uwk4"       /* uwk4: the warpgroup kernel's stages and W prefetch retuned */

struct tune_key;
struct tune_set;
struct tune_entry;

/* The tune cache key of the context's device and this library. */
int uwk_tune_key(const struct uwk_ctx *c, struct tune_key *k, struct uwerr *e);

/* AUTO's choices from here on: the entries of s for the context's device
 * (s NULL: none, the defaults). The context keeps its own copy. */
int uwk_ctx_use_tune(struct uwk_ctx *c, const struct tune_set *s, struct uwerr *e);
/* The same from the cache file of dir (NULL: $UW_TUNE_DIR, else the default;
 * tunecache.h's tune_dir). No file, no entry for this device, or no cache
 * at all: the defaults, 0. A file that does not parse: its error, and the
 * context keeps the choices it had. *n (may be NULL): entries now in use. */
int uwk_ctx_load_tune(struct uwk_ctx *c, const char *dir, size_t *n, struct uwerr *e);

/* What uwk_tune_shape tried. */
struct uwk_tune_info {
	int tried;                /* candidates that ran, were checked and timed */
	int rejected;             /* candidates that failed or gave wrong results */
	char why[UWERR_MSG_MAX];  /* the first rejection's reason, "" if none */
};

/* Time AUTO's candidates for the R12 tensor at dev_base at this batch
 * (1 to TUNE_MAX_BUCKET, 1024; the entry is for its tune_bucket) and fill
 * *out with the fastest: AUTO's default, decode + cuBLAS, the warpgroup
 * kernel where it runs, and up to UWK_FUSED_MAX_BATCH every fused (wm, wk)
 * built, each at ks = 1 and at half, once and twice its default split,
 * with pf 1 and 2 (above that batch, where the warpgroup kernel and decode
 * + cuBLAS cross over on this device is what is left to decide). Before it
 * is timed, each candidate's y (poisoned with NaN first) must be within
 * 1e-2 relative L2 error of decode + cuBLAS in float32, every output
 * finite, and a second run must give the same bits; a candidate that fails
 * is rejected and counted in *info. Times: median of reps (>= 3) launches
 * on stream s, each after a write of twice the L2 cache so that W comes
 * from memory as in a model's pass. AUTO's default is kept unless a
 * candidate beats it by more than 1 %. *stop (may be NULL), read between
 * candidates, cancels: -ECANCELED. Allocates its own buffers (x, y, the
 * reference, the L2 flush, sized for the batch) and uses ctx's scratch. */
int uwk_tune_shape(const struct uw_layout *l, const void *dev_base, size_t batch, int reps,
		   const int *stop, cudaStream_t s, struct uwk_ctx *ctx, struct tune_entry *out,
		   struct uwk_tune_info *info, struct uwerr *e);

#ifdef __cplusplus
}
#endif
#endif
