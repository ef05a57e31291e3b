/* encode_gpu: a loader worker's GPU-side encoding for the cuda backend.
 * A tensor's stored bytes cross PCIe through pinned staging into a device
 * scratch (a bundle's exphuf payload is decoded there by uwk_exphuf_decode
 * and its CRC-32C checked against the bundle's); uwk_encode_plan counts its exponents there and plans
 * with res_plan's own code; the caller places it; uwk_encode writes the
 * resident bytes and their CRC-32C straight into the model's buffer. The
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

/* A tensor as the loader has it, in host memory: its raw bytes, or (x set)
 * a bundle's REST_EXPHUF payload, checked and parsed by rest_exphuf_parse,
 * with the CRC-32C its decoded bytes must have. Or (fd >= 0) raw bytes that
 * data points to inside a filemap (filemap.h) of fd, at file_off: the
 * device copies their whole pages from there (registered for the copy,
 * unregistered when it is done), and the bytes of the first and last
 * partial pages, or of a small tensor, are pread into pinned staging. */
struct rest_exphuf;
struct encode_input {
	const void *data;
	size_t len;                    /* bytes at data */
	size_t raw_bytes;              /* the tensor's */
	const struct rest_exphuf *x;   /* NULL: data is the raw bytes */
	uint32_t raw_crc;              /* x: the decoded bytes' CRC-32C */
	int fd;                        /* -1, or data is mapped from fd: never read it */
	const char *path;              /* fd's, for messages */
	uint64_t file_off;
};

/* Plan and encode the tensor into dst + the offset place gives (*off), and
 * fill *l (crc32c included). Returns 1, having placed and written nothing,
 * when the device has no room for the scratch now: the caller encodes this
 * one on the CPU. */
int encode_gpu_tensor(struct encode_gpu *g, int dtype, int ndim, const uint64_t *shape,
		      const struct encode_input *in, void *dst, encode_place_fn place,
		      void *ctx, struct uw_layout *l, uint64_t *off, struct uwerr *e);

#endif
