/* encode_gpu: a loader worker's GPU-side encoding for the cuda backend.
 * A tensor's stored bytes cross PCIe into a device scratch, through pinned
 * staging or straight from pinned page-cache pages (a bundle's exphuf
 * payload is checked there against the bundle's CRC-32C, decoded by
 * uwk_exphuf_decode and the result checked); uwk_encode_plan counts its
 * exponents there and plans with res_plan's own code; the caller places
 * it; uwk_encode writes the resident bytes and their CRC-32C straight into
 * the model's buffer. The
 * CPU encoder (kernels/resident.c) stays the reference and the host
 * backend's path: check_gpu_kernels holds the two byte for byte.
 *
 * Runtime API on the context current in the calling thread (the daemon
 * makes its device's primary context current first), one encoder per
 * thread. */
#ifndef UWD_ENCODE_GPU_H
#define UWD_ENCODE_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "unweight.h"

struct encode_gpu;

/* Where the caller puts nbytes of resident bytes: their offset in dst. */
typedef int (*encode_place_fn)(void *ctx, uint64_t nbytes, uint64_t *off, struct uwerr *e);

int encode_gpu_new(struct encode_gpu **out, struct uwerr *e);
void encode_gpu_free(struct encode_gpu *g);   /* NULL is fine */

/* A tensor as the loader has it: its stored bytes, len of them, at data,
 * which are its raw bytes, or (x set) a bundle's REST_EXPHUF payload,
 * parsed by rest_exphuf_parse (from its head alone, when mapped), whose
 * CRC-32C must be stored_crc and whose decoded bytes' must be raw_crc (both
 * checked on the device). In host memory; or inside a filemap (filemap.h)
 * of fd, at file_off, where the CPU never reads them: pinned (pin_piece
 * set: registered with encode_gpu_pin in pieces of pin_piece bytes from
 * pin_base), the device copies them from there, else they are pread into
 * pinned staging. */
struct rest_exphuf;
struct encode_input {
	const void *data;
	size_t len;                    /* stored bytes at data */
	size_t raw_bytes;              /* the tensor's */
	const struct rest_exphuf *x;   /* NULL: data is the raw bytes */
	uint32_t stored_crc;           /* x: the payload's CRC-32C */
	uint32_t raw_crc;              /* x: the decoded bytes' CRC-32C */
	int fd;                        /* -1, or data is mapped from fd: never read it */
	const char *path;              /* fd's, for messages */
	uint64_t file_off;
	const char *pin_base;          /* fd: where the registered pieces start */
	size_t pin_piece;              /* their size; 0: not registered */
};

/* Register n bytes of a read-only file mapping at p (page-aligned) with the
 * driver, so that the device copies from there: it pins the pages (a page
 * past the file's end fails here, not in the CPU). Unpin when no copy from
 * them is in flight. */
int encode_gpu_pin(const void *p, size_t n, struct uwerr *e);
void encode_gpu_unpin(const void *p);

/* Where an encoder's time went, for the loader's log, in seconds: all of
 * it, then issuing
 * the copies of stored bytes (straight from pinned pages: queued, not
 * waited for), checking CRCs of payloads and decoded bytes, decoding exphuf
 * payloads, planning (its sync waits for the copies) and encoding, each
 * with the device's waits; and filling the pinned stages (waiting for one,
 * pread or memcpy). Bytes copied straight from pinned pages and through
 * the stages. */
struct encode_gpu_stats {
	unsigned long tensors;
	double total_s;   /* in encode_gpu_tensor, all of it */
	double scratch_s, put_s, crc_s, decode_s, plan_s, encode_s, staged_s;
	uint64_t direct_bytes, staged_bytes;
};
const struct encode_gpu_stats *encode_gpu_stats(const struct encode_gpu *g);

/* Inline: the loader sums them in builds without the encoder (no CUDA). */
static inline void encode_gpu_stats_add(struct encode_gpu_stats *sum,
					const struct encode_gpu_stats *x)
{
	sum->tensors += x->tensors;
	sum->total_s += x->total_s;
	sum->scratch_s += x->scratch_s;
	sum->put_s += x->put_s;
	sum->crc_s += x->crc_s;
	sum->decode_s += x->decode_s;
	sum->plan_s += x->plan_s;
	sum->encode_s += x->encode_s;
	sum->staged_s += x->staged_s;
	sum->direct_bytes += x->direct_bytes;
	sum->staged_bytes += x->staged_bytes;
}

/* Plan and encode the tensor into dst + the offset place gives (*off), and
 * fill *l (crc32c included). Returns 1, having placed and written nothing,
 * when the device has no room for the scratch now: the caller encodes this
 * one on the CPU. */
int encode_gpu_tensor(struct encode_gpu *g, int dtype, int ndim, const uint64_t *shape,
		      const struct encode_input *in, void *dst, encode_place_fn place,
		      void *ctx, struct uw_layout *l, uint64_t *off, struct uwerr *e);

#endif
