/* unweight.h: the public API of libunweight-client.
 *
 * A worker connects to unweightd, attaches a loaded model (the daemon hands
 * over its buffers as fds, mapped read-only here: no copy of the weights),
 * looks tensors up by name, and runs uw_decode / uw_matmul on them.
 *
 * Every function that can fail returns 0 or a negative errno; uw_strerror()
 * names it and uw_errmsg() gives the last detailed message of this thread
 * (the daemon's own words where it refused). All functions are thread-safe;
 * one uw_client may be shared by threads. See libunweight-client(3). */
#ifndef UNWEIGHT_H
#define UNWEIGHT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define UW_API __attribute__((visibility("default")))
#else
#define UW_API
#endif

#define UW_DEFAULT_SOCKET "/run/unweight/unweightd.sock"
#define UW_MAX_DIMS 8
#define UW_PALETTE_SIZE 16

/* Element types, as in safetensors. Values are on the wire: never renumber. */
enum uw_dtype {
	UW_DTYPE_BOOL = 1, UW_DTYPE_U8, UW_DTYPE_I8, UW_DTYPE_F8_E5M2,
	UW_DTYPE_F8_E4M3, UW_DTYPE_I16, UW_DTYPE_U16, UW_DTYPE_F16,
	UW_DTYPE_BF16, UW_DTYPE_I32, UW_DTYPE_U32, UW_DTYPE_F32, UW_DTYPE_F64,
	UW_DTYPE_I64, UW_DTYPE_U64
};

/* Resident formats: how a tensor's bytes lie in the shared buffer.
 * docs/FORMAT.md ("Resident formats") specifies them bit by bit. */
enum uw_format {
	UW_FORMAT_RAW = 0,  /* the tensor's bytes as in safetensors */
	UW_FORMAT_R12 = 1,  /* BF16 [rows][cols]: 4-bit exponent palette index plane,
			     * sign|mantissa byte plane, and exponent patches */
	UW_FORMAT_R11 = 3,  /* BF16 [rows][cols]: sign|mantissa byte plane, 3-bit
			     * exponent codes in 16x128 tiles, 3-byte patches for
			     * exponents outside the 8 codes. (2 was R11's first
			     * layout, retired: refused as an unknown format.) */
};

/* The raw layout of one resident tensor, for users with their own kernels.
 * Offsets are in bytes from the tensor's base (uw_tensor_host_ptr or
 * uw_tensor_device_ptr); the base is 256-byte aligned. */
struct uw_layout {
	uint32_t format;          /* enum uw_format */
	uint32_t dtype;           /* enum uw_dtype */
	uint64_t rows, cols;      /* 2-D view: rows = shape[0], cols = the rest */
	uint64_t nbytes;          /* resident bytes of this tensor */
	uint32_t crc32c;          /* CRC-32C of those bytes */
	uint8_t palette[UW_PALETTE_SIZE]; /* R12: exponent byte of each index;
					   * R11: of each code in [0..7], [8..15] zero */
	uint64_t mant_off, mant_stride;   /* R12, R11: sign|mantissa plane, row stride */
	uint64_t nib_off, nib_stride;     /* R12: index plane (low nibble = even col);
					   * R11: code plane, bytes of one 16-row group */
	uint64_t patch_grp_off;   /* R12: uint32 [ceil(rows / 16) + 1] first patch of each 16-row group;
				   * R11: uint32 [tiles + 1] first patch of each tile */
	uint64_t patch_off;       /* R12: uint32 [npatch] (row % 16) << 28 | col << 8 | exponent;
				   * R11: uint16 [npatch] xtab index << 11 | row << 7 | col in
				   * the tile, uint8 [npatch] sign|mantissa bytes, uint8 [32] xtab */
	uint64_t npatch;          /* R12, R11: patches */
};

struct uw_tensor_info {
	const char *name;         /* valid while the model is attached */
	uint32_t dtype;
	uint32_t ndim;
	uint64_t shape[UW_MAX_DIMS];
	uint64_t raw_bytes;       /* bytes of the decoded tensor */
	struct uw_layout layout;
};

enum uw_backend { UW_BACKEND_HOST = 0, UW_BACKEND_CUDA = 1 };

typedef struct uw_client uw_client;
typedef struct uw_model uw_model;
typedef struct uw_tensor uw_tensor;

/* Connect. path NULL: $UNWEIGHT_SOCKET, else UW_DEFAULT_SOCKET. */
UW_API int uw_connect(const char *path, uw_client **out);
/* Close the connection; attached models stay usable until detached. NULL is fine. */
UW_API void uw_disconnect(uw_client *c);

/* Attach a loaded model: its buffers are mapped read-only. */
UW_API int uw_attach(uw_client *c, const char *model, uw_model **out);
/* Release the lease and unmap. NULL is fine. */
UW_API int uw_detach(uw_model *m);

UW_API int uw_model_backend(const uw_model *m);          /* enum uw_backend */
UW_API size_t uw_model_tensor_count(const uw_model *m);
UW_API const uw_tensor *uw_model_tensor(const uw_model *m, size_t i);
UW_API const uw_tensor *uw_model_find(const uw_model *m, const char *name);

UW_API int uw_tensor_info(const uw_tensor *t, struct uw_tensor_info *info);
/* Base of the tensor's resident bytes: host backend only (else NULL). */
UW_API const void *uw_tensor_host_ptr(const uw_tensor *t);
/* Base as a CUDA device pointer: cuda backend only (else 0). */
UW_API uint64_t uw_tensor_device_ptr(const uw_tensor *t);

/* Decode the tensor into out (out_bytes >= raw_bytes). Host backend: host
 * memory, synchronous. CUDA backend: device memory, ordered on stream
 * (a cudaStream_t, NULL for the default stream). */
UW_API int uw_decode(const uw_tensor *t, void *out, size_t out_bytes, void *stream);

/* y[batch][rows] = x[batch][cols] . W^T, BF16 in and out, float32
 * accumulation, W a BF16 2-D tensor. x and y are dense row-major. Memory
 * and stream as for uw_decode. */
UW_API int uw_matmul(const uw_tensor *t, const void *x, size_t batch,
		     void *y, void *stream);
/* y0 = x . W0^T and y1 = x . W1^T for two 2-D BF16 tensors of the same
 * cols that share x (the gate and up projections of a Llama MLP): on the
 * CUDA backend one launch of the fused kernel for both where it takes
 * them, else (and on the host) uw_matmul twice. The results are within
 * uw_matmul's tolerance, the same bits run after run, but may differ in
 * bits from two uw_matmul calls (the columns are split for both grids
 * together). Memory and stream as for uw_matmul. */
UW_API int uw_matmul2(const uw_tensor *t0, const uw_tensor *t1, const void *x, size_t batch,
		      void *y0, void *y1, void *stream);
/* The same sums with y float32 [batch][rows], not rounded to BF16: for the
 * last layer of a model, whose logits a BF16 rounding could tie. CUDA
 * backend: decode to scratch + cuBLAS at every batch (y 4-byte aligned). */
UW_API int uw_matmul_f32(const uw_tensor *t, const void *x, size_t batch,
			 float *y, void *stream);

/* Operator requests (what unweightctl does). */
#define UW_LOAD_MAX_PATHS 4096
UW_API int uw_load(uw_client *c, const char *model, const char *const *paths,
		   size_t npaths);
/* uw_load on a chosen device: its name ("host", "cuda0", ...), its GPU UUID
 * ("GPU-...") or its index; NULL or "" is the default device (the first). */
UW_API int uw_load_device(uw_client *c, const char *model, const char *device,
			  const char *const *paths, size_t npaths);
#define UW_EVICT_FORCE 1u
UW_API int uw_evict(uw_client *c, const char *model, unsigned flags);
/* Ask the daemon to tune uw_matmul for the weight shapes of a loaded model
 * (model NULL or "": every ready model) on its GPU, in the background; the
 * choices land in the tune cache that workers read ($UW_TUNE_DIR). *job
 * (may be NULL) numbers the request: the stats document's tune.done reaches
 * it when the work is done. UW_TUNE_FORCE times shapes the cache has too. */
#define UW_TUNE_FORCE 1u
UW_API int uw_tune(uw_client *c, const char *model, unsigned flags, uint64_t *job);

/* What uw_verify found. */
struct uw_verify_result {
	uint64_t tensors;         /* tensors checked */
	uint64_t bytes;           /* resident bytes read */
	double seconds;           /* how long the daemon took */
	uint64_t nbad;            /* tensors whose bytes fail their CRC-32C */
	size_t nnames;            /* bad[0..nnames): the first of them, at most 1024 */
	char **bad;               /* their names */
};
/* Have the daemon read model's resident bytes back and check every
 * tensor's CRC-32C (an admin request, like uw_load). Returns 0 when the
 * check ran, whatever it found: (*out)->nbad > 0 means the model is
 * corrupt. Free *out with uw_verify_free (NULL is fine). */
UW_API int uw_verify(uw_client *c, const char *model, struct uw_verify_result **out);
UW_API void uw_verify_free(struct uw_verify_result *r);

/* Daemon and model statistics, as JSON text (unweightd(8), STATISTICS, lists
 * the keys). model NULL: every model. *json is malloc'd; free() it. */
UW_API int uw_stats_json(uw_client *c, const char *model, char **json);

UW_API const char *uw_strerror(int err);
/* The last detailed error message of the calling thread ("" if none). */
UW_API const char *uw_errmsg(void);

#ifdef __cplusplus
}
#endif
#endif
