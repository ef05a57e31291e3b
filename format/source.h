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

/* For callers that do their own reading (the daemon's loader): where tensor
 * i's stored bytes are, in file source_file_fd(file) of size bytes... */
struct src_extent {
	size_t file;
	uint64_t off, len;
};
void source_extent(const struct source *s, size_t i, struct src_extent *x);
uint64_t source_file_size(const struct source *s, size_t file);
/* The files the source holds open (the shards, or the bundle; an index is
 * read and closed on open): their count, the path each was opened by and
 * its fd (owned by the source), for the reader. */
size_t source_file_count(const struct source *s);
const char *source_file_path(const struct source *s, size_t i);
int source_file_fd(const struct source *s, size_t i);

/* ...whether those stored bytes are already the original ones (a
 * safetensors checkpoint), and, where they are not (a bundle's payload),
 * their checksums verified and decoded into raw. */
int source_stored_is_raw(const struct source *s);
int source_decode(const struct source *s, size_t i, const void *stored, void *raw,
		  struct uwerr *e);

/* For a decoder elsewhere (the GPU), which checks the checksums itself:
 * how many bytes at the start of tensor i's stored bytes it must have when
 * they are a bundle's REST_EXPHUF payload (0 for any other tensor); those
 * bytes parsed into *x (rest_exphuf_free it), with the CRC-32C the whole
 * payload and the decoded bytes must have. */
struct rest_exphuf;
size_t source_exphuf_head_len(const struct source *s, size_t i);
int source_exphuf_parse(const struct source *s, size_t i, const void *head,
			struct rest_exphuf *x, uint32_t *payload_crc, uint32_t *raw_crc,
			struct uwerr *e);

#endif
