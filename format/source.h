/* source: the tensors of a checkpoint, whatever form it is in (safetensors
 * files, a sharded index, or a .uwb bundle), as the daemon's loader and
 * unweightctl see them: names, shapes and the decoded original bytes. */
#ifndef UW_FORMAT_SOURCE_H
#define UW_FORMAT_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "format/opener.h"
#include "format/safetensors.h"

struct src_tensor {
	const char *name;
	int dtype;
	int ndim;
	uint64_t shape[ST_MAX_DIMS];
	uint64_t raw_bytes;
};

struct source;

/* paths: safetensors files and/or index.json files, or exactly one .uwb
 * (recognised by its magic, not its name). Fully validated on open. */
int source_open(const char *const *paths, size_t npaths, struct source **out,
		struct uwerr *e);
/* The same, opening every file it reads with o (format/opener.h). */
int source_open_via(const struct opener *o, const char *const *paths, size_t npaths,
		    struct source **out, struct uwerr *e);
void source_close(struct source *s);

size_t source_count(const struct source *s);
const struct src_tensor *source_tensor(const struct source *s, size_t i);
uint64_t source_raw_total(const struct source *s);

/* Threads a bundle's decoder may use inside one source_read, as for
 * rest_decode (0: one per CPU). The default is 1, for callers that read
 * several tensors at once from their own threads. */
void source_set_threads(struct source *s, int nthreads);

/* The original bytes of tensor i (raw_bytes of them), checksums verified
 * for bundles. Safe to call from several threads at once. */
int source_read(const struct source *s, size_t i, void *raw, struct uwerr *e);

#endif
