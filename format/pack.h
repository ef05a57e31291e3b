/* pack: a safetensors checkpoint into a .uwb bundle and back (what
 * `unweightctl pack` and `unpack` do), streaming with bounded memory. */
#ifndef UW_FORMAT_PACK_H
#define UW_FORMAT_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "format/bundle.h"

/* Raw bytes read and encoding at once, across the pack workers; a single
 * larger tensor is still packed, alone. */
#define PACK_INFLIGHT_MAX (1ull << 30)

struct pack_stats {
	size_t ntensors;
	uint64_t raw_bytes;          /* the tensors' bytes */
	uint64_t stored_bytes;       /* their payloads in the bundle */
	uint64_t file_bytes;         /* the whole bundle */
};

/* Pack the checkpoint named by paths (safetensors files and/or one
 * index.json, as st_checkpoint_open) into the bundle out. Tensors are read,
 * encoded and written by several workers at once, in checkpoint order.
 * nthreads <= 0: one per CPU. progress: draw a bar on a terminal. */
int bundle_pack(const char *const *paths, size_t npaths, const char *out, int nthreads,
		int progress, struct pack_stats *stats, struct uwerr *e);

/* Write one merged safetensors file with a generated header, whatever the
 * shards (__metadata__: the union over the shards, the first value of a key
 * wins). Without it: a bundle of one shard packed without an index becomes
 * the original file, byte for byte; any other becomes a directory holding
 * every shard and the index, byte for byte. */
#define UNPACK_MERGE 1u

static inline int bundle_unpacks_to_dir(const struct bundle *b, unsigned flags)
{
	return !(flags & UNPACK_MERGE) && (b->nshards > 1 || b->index_name);
}

int bundle_unpack(const struct bundle *b, const char *out, unsigned flags, int nthreads,
		  int progress, struct uwerr *e);

#endif
