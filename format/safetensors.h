/* safetensors: a validating reader and an atomic, streaming writer for the
 * Hugging Face safetensors format, and sharded checkpoints (index.json). */
#ifndef UW_FORMAT_SAFETENSORS_H
#define UW_FORMAT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "format/opener.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u << 20)   /* header JSON bytes, as the reference reader */
#define ST_MAX_NAME 1024             /* tensor name bytes */
#define ST_MAX_TENSORS 1000000
#define ST_MAX_SHARDS 4096

struct st_tensor {
	char *name;                  /* NUL-terminated, owned by the file */
	int dtype;                   /* enum uw_dtype (unweight.h) */
	int ndim;
	uint64_t shape[ST_MAX_DIMS];
	uint64_t begin, end;         /* data_offsets, relative to data_start */
};

struct st_meta {
	char *key, *value;           /* one __metadata__ entry, NUL-terminated */
};

struct st_file {
	char *path;
	int fd;                      /* owned, O_RDONLY|O_CLOEXEC; -1 for a parsed buffer */
	uint64_t file_size;
	uint64_t data_start;         /* 8 + header_len */
	char *header;                /* the header JSON exactly as stored */
	size_t header_len;
	size_t ntensors;
	struct st_tensor *tensors;   /* sorted by begin (the order of the data) */
	size_t nmeta;
	struct st_meta *meta;        /* in the order of the header */
};

/* Open and fully validate: header length bound, JSON well-formed, known
 * dtypes, shape x dtype size == end - begin (overflow-checked), offsets
 * inside the file, no overlap and no holes between tensors. */
int st_open(const char *path, struct st_file **out, struct uwerr *e);

/* Validate a header given in memory (the 8-byte length prefix and the JSON)
 * against a file of file_size bytes; used by st_open and by the fuzzers. */
int st_parse(const void *buf, size_t len, uint64_t file_size,
	     struct st_file **out, struct uwerr *e);

void st_close(struct st_file *f);

/* Bytes of tensor t: end - begin. */
static inline uint64_t st_tensor_bytes(const struct st_tensor *t)
{
	return t->end - t->begin;
}

/* Read the bytes of tensor t into buf (st_tensor_bytes(t) bytes): pread,
 * retried on EINTR and short reads; a file that shrank is an error. */
int st_read_tensor(const struct st_file *f, const struct st_tensor *t,
		   void *buf, struct uwerr *e);

/* A checkpoint: one or more shards. Each path is a .safetensors file or a
 * model.safetensors.index.json whose weight_map names shards relative to the
 * index's directory; every mapped tensor must be in its shard, and no name
 * may appear twice across the checkpoint. */
struct st_checkpoint {
	size_t nfiles;
	struct st_file **files;
	char *index_json;            /* verbatim when opened through an index, else NULL */
	size_t index_len;
};

int st_checkpoint_open(const char *const *paths, size_t npaths,
		       struct st_checkpoint **out, struct uwerr *e);
/* The same, opening every file (index, files, shards) with o. */
int st_checkpoint_open_via(const struct opener *o, const char *const *paths, size_t npaths,
			   struct st_checkpoint **out, struct uwerr *e);
void st_checkpoint_close(struct st_checkpoint *c);

/* Streaming writer. Writes PATH.tmp, renamed to PATH on commit. */
struct st_out_tensor {
	const char *name;
	int dtype;
	int ndim;
	uint64_t shape[ST_MAX_DIMS];
	uint64_t begin, end;         /* filled in by st_writer_open */
};

struct st_writer;

/* Lay out tensors in the given order and write the header. When header is
 * non-NULL it is written verbatim (so an unpacked file can be byte-identical
 * to the original); it must describe exactly these tensors, and their
 * begin/end are taken from it. Otherwise a header is generated, with meta
 * as __metadata__, padded with spaces to 8 bytes. */
int st_writer_open(const char *path, struct st_out_tensor *t, size_t n,
		   const struct st_meta *meta, size_t nmeta,
		   const char *header, size_t header_len,
		   struct st_writer **out, struct uwerr *e);

/* Write the data of tensor i (t[i].end - t[i].begin bytes), any order. */
int st_writer_put(struct st_writer *w, size_t i, const void *data, struct uwerr *e);

/* commit != 0: check every tensor was put, fsync, rename. commit == 0:
 * remove the temporary file. Frees w either way. */
int st_writer_close(struct st_writer *w, int commit, struct uwerr *e);

#endif
