/* bundle: the .uwb container: every tensor of a checkpoint encoded at rest
 * (restcodec.h), each payload checksummed, with the original safetensors
 * headers kept verbatim. docs/FORMAT.md specifies it byte by byte. */
#ifndef UW_FORMAT_BUNDLE_H
#define UW_FORMAT_BUNDLE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "format/opener.h"
#include "format/safetensors.h"

#define BUNDLE_MAGIC "\x89UWB\r\n\x1a\n"
#define BUNDLE_MAGIC_LEN 8
#define BUNDLE_VERSION 1
#define BUNDLE_HEADER_SIZE 64
#define BUNDLE_ALIGN 64                     /* payload alignment */

/* Limits, checked on read before anything is allocated, and on write so
 * that a bundle this build writes is one it can read. */
#define BUNDLE_MAX_TENSORS ST_MAX_TENSORS
#define BUNDLE_MAX_SHARDS ST_MAX_SHARDS
#define BUNDLE_MAX_NAME ST_MAX_NAME         /* tensor name bytes */
#define BUNDLE_MAX_PATH 4096                /* shard and index file name bytes */
#define BUNDLE_MAX_JSON ST_MAX_HEADER       /* a shard header or the index JSON */
#define BUNDLE_MAX_DIR (1ull << 30)         /* directory bytes */

struct bundle_tensor {
	char *name;                  /* NUL-terminated, owned by the bundle */
	int dtype;                   /* enum uw_dtype */
	int ndim;
	uint64_t shape[ST_MAX_DIMS];
	uint32_t shard;              /* index into shards */
	int enc;                     /* enum rest_enc */
	uint64_t offset, length;     /* the stored payload, from the start of the file */
	uint32_t payload_crc;        /* CRC-32C of the stored payload */
	uint64_t raw_bytes;          /* decoded bytes: shape x dtype size */
	uint32_t raw_crc;            /* CRC-32C of the decoded bytes */
};

struct bundle_shard {
	char *name;                  /* plain file name (no directory part) */
	char *header;                /* the safetensors header JSON verbatim */
	size_t header_len;
	size_t first, count;         /* its tensors: tensors[first .. first+count) */
};

struct bundle {
	int fd;                      /* owned, O_RDONLY|O_CLOEXEC; -1 for a parsed buffer */
	const unsigned char *mem;    /* the parsed buffer (not owned), or NULL */
	uint64_t file_size;
	size_t ntensors;
	struct bundle_tensor *tensors;   /* grouped by shard, in shard order */
	size_t nshards;
	struct bundle_shard *shards;
	char *index_name;            /* NULL unless packed from an index.json */
	char *index_json;            /* verbatim */
	size_t index_len;
	char *strings;               /* owns every name, header and JSON above */
};

/* Does fd start with the bundle magic? 1 yes, 0 no, negative errno. */
int bundle_sniff(int fd);

/* Open and fully validate: header and directory checksums, every count and
 * length within limits, every payload inside the file, 64-byte aligned and
 * disjoint from the others, names unique. Payload checksums are verified
 * when a tensor is read. */
int bundle_open(const char *path, struct bundle **out, struct uwerr *e);
/* The same, opening path with o. */
int bundle_open_via(const struct opener *o, const char *path, struct bundle **out,
		    struct uwerr *e);

/* The same over a whole bundle file in memory, for the fuzzers; buf must
 * outlive the bundle. */
int bundle_parse(const void *buf, size_t len, struct bundle **out, struct uwerr *e);

void bundle_close(struct bundle *b);

/* The decoded bytes of tensor i into raw (raw_bytes of them): the payload's
 * CRC is checked before decoding and the decoded bytes' CRC after. pread
 * based: safe from several threads. nthreads as for rest_decode. */
int bundle_read_tensor(const struct bundle *b, size_t i, void *raw, int nthreads,
		       struct uwerr *e);

/* The same for a payload the caller read itself (t->length bytes from
 * t->offset): checksums and decoding, no I/O. payload may equal raw for a
 * REST_RAW tensor. */
int bundle_decode_tensor(const struct bundle *b, size_t i, const void *payload, void *raw,
			 int nthreads, struct uwerr *e);

/* The first half of that: the payload's CRC, for a decoder elsewhere (the
 * GPU), which checks the decoded bytes against the tensor's raw_crc. */
int bundle_check_payload(const struct bundle *b, size_t i, const void *payload,
			 struct uwerr *e);

/* Streaming writer: payloads go out one by one as they are put; the
 * directory is written at the end and the header rewritten to point at it.
 * Writes PATH.tmp, renamed to PATH on commit. Not thread-safe: callers
 * serialise puts. */
struct bundle_writer;

int bundle_writer_open(const char *path, struct bundle_writer **out, struct uwerr *e);

/* Record the index.json the checkpoint was packed from (at most once). */
int bundle_writer_index(struct bundle_writer *w, const char *name,
			const char *json, size_t len, struct uwerr *e);

/* Add a shard; shards are numbered in the order they are added, and the
 * tensors put must follow that order (all of shard 0, then shard 1, ...). */
int bundle_writer_shard(struct bundle_writer *w, const char *name,
			const char *header, size_t header_len, struct uwerr *e);

/* Append one tensor's payload. t gives name, dtype, ndim, shape, shard,
 * raw_bytes and raw_crc; the writer fills the rest from enc and payload. */
int bundle_writer_put(struct bundle_writer *w, const struct bundle_tensor *t,
		      int enc, const void *payload, size_t len, struct uwerr *e);

/* Bytes written so far (payloads and padding, with the header). */
uint64_t bundle_writer_size(const struct bundle_writer *w);

/* commit != 0: write the directory and header, fsync, rename. commit == 0
 * or any failure: remove the temporary file. Frees w either way. */
int bundle_writer_close(struct bundle_writer *w, int commit, struct uwerr *e);

#endif
