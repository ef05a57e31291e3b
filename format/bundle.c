/* bundle: reader and streaming writer of the .uwb container (bundle.h,
 * docs/FORMAT.md). Payload encodings belong to restcodec.c. */
#include "config.h"  /* first: _GNU_SOURCE */
#include "format/bundle.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/io.h"
#include "common/strbuf.h"
#include "format/dtype.h"
#include "format/restcodec.h"
#include "common/le.h"

/* Header field offsets (docs/FORMAT.md, "Header"). */
enum {
	H_MAGIC = 0, H_VERSION = 8, H_FLAGS = 12, H_FILE_SIZE = 16,
	H_DIR_OFFSET = 24, H_DIR_LENGTH = 32, H_DIR_CRC = 40, H_NTENSORS = 44,
	H_NSHARDS = 48, H_RESERVED = 52, H_CRC = 60,
};
/* The smallest records: they bound the counts a directory can hold. */
#define TENSOR_RECORD_MIN 45u   /* 44 fixed bytes and a name of one byte */
#define SHARD_RECORD_MIN 10u    /* two lengths, a name byte and a header byte */
#define INDEX_RECORD_MIN 8u

static uint64_t align_up(uint64_t v)
{
	return (v + BUNDLE_ALIGN - 1) & ~(uint64_t)(BUNDLE_ALIGN - 1);
}

/* io_pread_full with this file's messages: the failing offset, and a short
 * read said as a file that shrank under us. */
static int pread_full(int fd, void *buf, size_t len, uint64_t off, struct uwerr *e)
{
	size_t done;
	int rc = io_pread_full(fd, buf, len, off, &done);
	off += done;
	if (rc == -ENODATA)
		return uwerr_set(e, EIO, "read at offset %llu: file shrank while open",
				 (unsigned long long)off);
	if (rc)
		return uwerr_set(e, -rc, "read at offset %llu: %s",
				 (unsigned long long)off, strerror(-rc));
	return 0;
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off, struct uwerr *e)
{
	size_t done;
	int rc = io_pwrite_full(fd, buf, len, off, &done);
	if (rc)
		return uwerr_set(e, rc == -ENODATA ? EIO : -rc, "write at offset %llu: %s",
				 (unsigned long long)(off + done),
				 rc == -ENODATA ? "nothing written" : strerror(-rc));
	return 0;
}

int bundle_sniff(int fd)
{
	unsigned char m[BUNDLE_MAGIC_LEN];
	int rc = io_pread_full(fd, m, sizeof(m), 0, NULL);
	if (rc)
		return rc == -ENODATA ? 0 : rc;
	return memcmp(m, BUNDLE_MAGIC, BUNDLE_MAGIC_LEN) == 0;
}

/* ---- header ---- */

struct header {
	uint64_t file_size, dir_offset, dir_length;
	uint32_t dir_crc, ntensors, nshards;
};

static int header_parse(const unsigned char *h, uint64_t have, struct header *out,
			struct uwerr *e)
{
	if (have < BUNDLE_MAGIC_LEN || memcmp(h, BUNDLE_MAGIC, BUNDLE_MAGIC_LEN) != 0)
		return uwerr_set(e, EBADMSG, "not a .uwb bundle (bad magic)");
	if (have < BUNDLE_HEADER_SIZE)
		return uwerr_set(e, EBADMSG, "truncated: %llu bytes, shorter than the %d-byte header",
				 (unsigned long long)have, BUNDLE_HEADER_SIZE);
	uint32_t stored = le32_get(h + H_CRC), crc = crc32c(0, h, H_CRC);
	if (stored != crc)
		return uwerr_set(e, EBADMSG, "header CRC-32C mismatch (stored 0x%08x, computed 0x%08x)",
				 stored, crc);
	uint32_t version = le32_get(h + H_VERSION);
	if (version != BUNDLE_VERSION)
		return uwerr_set(e, ENOTSUP, "format version %u, this build reads version %d",
				 version, BUNDLE_VERSION);
	if (le32_get(h + H_FLAGS) != 0 || le64_get(h + H_RESERVED) != 0)
		return uwerr_set(e, ENOTSUP, "header: flags or reserved bytes set (unknown extension)");
	out->file_size = le64_get(h + H_FILE_SIZE);
	out->dir_offset = le64_get(h + H_DIR_OFFSET);
	out->dir_length = le64_get(h + H_DIR_LENGTH);
	out->dir_crc = le32_get(h + H_DIR_CRC);
	out->ntensors = le32_get(h + H_NTENSORS);
	out->nshards = le32_get(h + H_NSHARDS);
	if (out->file_size != have)
		return uwerr_set(e, EBADMSG, "%s: header says %llu bytes, file has %llu",
				 have < out->file_size ? "truncated" : "trailing bytes",
				 (unsigned long long)out->file_size, (unsigned long long)have);
	if (out->ntensors > BUNDLE_MAX_TENSORS)
		return uwerr_set(e, EBADMSG, "%u tensors, more than the limit of %d",
				 out->ntensors, BUNDLE_MAX_TENSORS);
	if (out->nshards < 1 || out->nshards > BUNDLE_MAX_SHARDS)
		return uwerr_set(e, EBADMSG, "%u shards, outside [1, %d]",
				 out->nshards, BUNDLE_MAX_SHARDS);
	uint64_t end;
	if (out->dir_offset < BUNDLE_HEADER_SIZE || out->dir_length > BUNDLE_MAX_DIR ||
	    __builtin_add_overflow(out->dir_offset, out->dir_length, &end) ||
	    end != out->file_size)
		return uwerr_set(e, EBADMSG, "directory [%llu, +%llu) does not end the file (size %llu, directory limit %llu)",
				 (unsigned long long)out->dir_offset,
				 (unsigned long long)out->dir_length,
				 (unsigned long long)out->file_size,
				 (unsigned long long)BUNDLE_MAX_DIR);
	return 0;
}

/* ---- directory ---- */

struct cursor {
	const unsigned char *p;
	size_t left;
	int short_read;
};

static const unsigned char *take(struct cursor *c, size_t n)
{
	if (c->short_read || c->left < n) {
		c->short_read = 1;
		return NULL;
	}
	const unsigned char *p = c->p;
	c->p += n;
	c->left -= n;
	return p;
}

static uint32_t take32(struct cursor *c)
{
	const unsigned char *p = take(c, 4);
	return p ? le32_get(p) : 0;
}

static uint64_t take64(struct cursor *c)
{
	const unsigned char *p = take(c, 8);
	return p ? le64_get(p) : 0;
}

static unsigned take8(struct cursor *c)
{
	const unsigned char *p = take(c, 1);
	return p ? *p : 0;
}

/* Copy n bytes into the arena as a NUL-terminated string. */
static char *arena_str(char **arena, const unsigned char *s, size_t n)
{
	char *out = *arena;
	memcpy(out, s, n);
	out[n] = '\0';
	*arena += n + 1;
	return out;
}

/* A file name that stays in the directory it is unpacked to: no '/', not
 * "." or "..", no NUL. */
static int plain_name(const unsigned char *s, size_t n)
{
	return n > 0 && !memchr(s, '/', n) && !memchr(s, '\0', n) &&
	       !(n == 1 && s[0] == '.') && !(n == 2 && s[0] == '.' && s[1] == '.');
}

static int cmp_offset(const void *a, const void *b)
{
	const struct bundle_tensor *x = *(struct bundle_tensor *const *)a;
	const struct bundle_tensor *y = *(struct bundle_tensor *const *)b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* No two payloads overlap, no two tensors and no two shards share a name. */
static int check_disjoint(struct bundle *b, struct uwerr *e)
{
	size_t n = b->ntensors > b->nshards ? b->ntensors : b->nshards;
	void **v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return uwerr_set(e, ENOMEM, "directory: out of memory");
	int rc = 0;
	for (size_t i = 0; i < b->ntensors; i++)
		v[i] = &b->tensors[i];
	qsort(v, b->ntensors, sizeof(*v), cmp_offset);
	for (size_t i = 1; i < b->ntensors; i++) {
		const struct bundle_tensor *x = v[i - 1], *y = v[i];
		if (x->offset + x->length > y->offset) {
			rc = uwerr_set(e, EBADMSG, "directory: payloads of '%s' [%llu, +%llu) and '%s' [%llu, +%llu) overlap",
				       x->name, (unsigned long long)x->offset,
				       (unsigned long long)x->length, y->name,
				       (unsigned long long)y->offset,
				       (unsigned long long)y->length);
			goto out;
		}
	}
	for (size_t i = 0; i < b->ntensors; i++)
		v[i] = b->tensors[i].name;
	qsort(v, b->ntensors, sizeof(*v), cmp_name);
	for (size_t i = 1; i < b->ntensors; i++)
		if (strcmp(v[i - 1], v[i]) == 0) {
			rc = uwerr_set(e, EBADMSG, "directory: tensor name '%s' appears twice",
				       (char *)v[i]);
			goto out;
		}
	for (size_t i = 0; i < b->nshards; i++)
		v[i] = b->shards[i].name;
	qsort(v, b->nshards, sizeof(*v), cmp_name);
	for (size_t i = 1; i < b->nshards; i++)
		if (strcmp(v[i - 1], v[i]) == 0) {
			rc = uwerr_set(e, EBADMSG, "directory: shard file name '%s' appears twice",
				       (char *)v[i]);
			goto out;
		}
out:
	free(v);
	return rc;
}

static int parse_tensor(struct cursor *c, struct bundle *b, size_t i, char **arena,
			uint64_t payload_end, struct uwerr *e)
{
	struct bundle_tensor *t = &b->tensors[i];
	uint32_t name_len = take32(c);
	t->shard = take32(c);
	t->dtype = (int)take8(c);
	t->ndim = (int)take8(c);
	t->enc = (int)take8(c);
	unsigned reserved = take8(c);
	t->payload_crc = take32(c);
	t->raw_crc = take32(c);
	t->offset = take64(c);
	t->length = take64(c);
	t->raw_bytes = take64(c);
	if (c->short_read)
		return uwerr_set(e, EBADMSG, "directory: tensor %zu: record runs past the end", i);
	if (t->ndim > ST_MAX_DIMS)
		return uwerr_set(e, EBADMSG, "directory: tensor %zu: %d dimensions, more than %d",
				 i, t->ndim, ST_MAX_DIMS);
	for (int d = 0; d < t->ndim; d++)
		t->shape[d] = take64(c);
	if (name_len == 0 || name_len > BUNDLE_MAX_NAME)
		return uwerr_set(e, EBADMSG, "directory: tensor %zu: name of %u bytes, outside [1, %d]",
				 i, name_len, BUNDLE_MAX_NAME);
	const unsigned char *name = take(c, name_len);
	if (!name)
		return uwerr_set(e, EBADMSG, "directory: tensor %zu: record runs past the end", i);
	if (memchr(name, '\0', name_len))
		return uwerr_set(e, EBADMSG, "directory: tensor %zu: name holds a NUL byte", i);
	t->name = arena_str(arena, name, name_len);

	size_t esize = dtype_size(t->dtype);
	if (esize == 0)
		return uwerr_set(e, EBADMSG, "directory: tensor '%s': unknown dtype %d", t->name, t->dtype);
	/* REST_ZSTD is the last encoding this version knows. */
	if (t->enc < REST_RAW || t->enc > REST_ZSTD || reserved != 0)
		return uwerr_set(e, EBADMSG, "directory: tensor '%s': unknown encoding %d",
				 t->name, t->enc);
	if (t->shard >= b->nshards || (i > 0 && t->shard < b->tensors[i - 1].shard))
		return uwerr_set(e, EBADMSG, "directory: tensor '%s': shard %u out of order or past %zu shards",
				 t->name, t->shard, b->nshards);
	uint64_t bytes = esize;
	for (int d = 0; d < t->ndim; d++)
		if (__builtin_mul_overflow(bytes, t->shape[d], &bytes))
			return uwerr_set(e, EBADMSG, "directory: tensor '%s': shape overflows 64 bits",
					 t->name);
	if (bytes != t->raw_bytes || bytes > SIZE_MAX)
		return uwerr_set(e, EBADMSG, "directory: tensor '%s': %llu raw bytes, shape x dtype says %llu",
				 t->name, (unsigned long long)t->raw_bytes, (unsigned long long)bytes);
	if (t->enc == REST_RAW && t->length != t->raw_bytes)
		return uwerr_set(e, EBADMSG, "directory: tensor '%s': raw payload of %llu bytes for %llu raw bytes",
				 t->name, (unsigned long long)t->length,
				 (unsigned long long)t->raw_bytes);
	uint64_t end;
	if (t->offset < BUNDLE_HEADER_SIZE || t->offset % BUNDLE_ALIGN != 0 ||
	    __builtin_add_overflow(t->offset, t->length, &end) || end > payload_end)
		return uwerr_set(e, EBADMSG, "directory: tensor '%s': payload [%llu, +%llu) not %d-byte aligned inside the payload area [%d, %llu)",
				 t->name, (unsigned long long)t->offset,
				 (unsigned long long)t->length, BUNDLE_ALIGN,
				 BUNDLE_HEADER_SIZE, (unsigned long long)payload_end);
	return 0;
}

/* Parse and validate a directory of len bytes; payloads must lie in
 * [BUNDLE_HEADER_SIZE, payload_end). Fills b's tables. */
static int dir_parse(struct bundle *b, const unsigned char *dir, size_t len,
		     const struct header *h, struct uwerr *e)
{
	uint64_t need = INDEX_RECORD_MIN + (uint64_t)h->ntensors * TENSOR_RECORD_MIN +
			(uint64_t)h->nshards * SHARD_RECORD_MIN;
	if (need > len)
		return uwerr_set(e, EBADMSG, "directory of %zu bytes cannot hold %u tensors and %u shards",
				 len, h->ntensors, h->nshards);
	b->ntensors = h->ntensors;
	b->nshards = h->nshards;
	b->tensors = calloc(b->ntensors ? b->ntensors : 1, sizeof(*b->tensors));
	b->shards = calloc(b->nshards, sizeof(*b->shards));
	/* Every string of the directory, each with its NUL. */
	b->strings = malloc(len + 2 + b->nshards * 2 + b->ntensors);
	if (!b->tensors || !b->shards || !b->strings)
		return uwerr_set(e, ENOMEM, "directory: out of memory for %zu tensors", b->ntensors);
	char *arena = b->strings;
	struct cursor c = { dir, len, 0 };

	uint32_t name_len = take32(&c), json_len = take32(&c);
	if ((name_len == 0) != (json_len == 0) || name_len > BUNDLE_MAX_PATH ||
	    json_len > BUNDLE_MAX_JSON)
		return uwerr_set(e, EBADMSG, "directory: index name of %u bytes and JSON of %u bytes (limits %d, %d)",
				 name_len, json_len, BUNDLE_MAX_PATH, BUNDLE_MAX_JSON);
	if (name_len) {
		const unsigned char *name = take(&c, name_len), *json = take(&c, json_len);
		if (!json)
			return uwerr_set(e, EBADMSG, "directory: index record runs past the end");
		if (!plain_name(name, name_len))
			return uwerr_set(e, EBADMSG, "directory: index file name is not a plain file name");
		b->index_name = arena_str(&arena, name, name_len);
		b->index_json = arena_str(&arena, json, json_len);
		b->index_len = json_len;
	}
	for (size_t s = 0; s < b->nshards; s++) {
		struct bundle_shard *sh = &b->shards[s];
		name_len = take32(&c);
		json_len = take32(&c);
		if (name_len == 0 || name_len > BUNDLE_MAX_PATH || json_len == 0 ||
		    json_len > BUNDLE_MAX_JSON)
			return uwerr_set(e, EBADMSG, "directory: shard %zu: name of %u bytes, header of %u bytes (limits %d, %d)",
					 s, name_len, json_len, BUNDLE_MAX_PATH, BUNDLE_MAX_JSON);
		const unsigned char *name = take(&c, name_len), *json = take(&c, json_len);
		if (!json)
			return uwerr_set(e, EBADMSG, "directory: shard %zu: record runs past the end", s);
		if (!plain_name(name, name_len))
			return uwerr_set(e, EBADMSG, "directory: shard %zu: file name is not a plain file name", s);
		sh->name = arena_str(&arena, name, name_len);
		sh->header = arena_str(&arena, json, json_len);
		sh->header_len = json_len;
	}
	for (size_t i = 0; i < b->ntensors; i++) {
		int rc = parse_tensor(&c, b, i, &arena, h->dir_offset, e);
		if (rc)
			return rc;
		b->shards[b->tensors[i].shard].count++;
	}
	if (c.left != 0)
		return uwerr_set(e, EBADMSG, "directory: %zu bytes left over after the last tensor", c.left);
	for (size_t s = 1; s < b->nshards; s++)
		b->shards[s].first = b->shards[s - 1].first + b->shards[s - 1].count;
	return check_disjoint(b, e);
}

/* ---- reader ---- */

/* Check the directory's CRC, then parse it into b. */
static int dir_load(struct bundle *b, const unsigned char *dir, const struct header *h,
		    struct uwerr *e)
{
	uint32_t crc = crc32c(0, dir, h->dir_length);
	if (crc != h->dir_crc)
		return uwerr_set(e, EBADMSG, "directory CRC-32C mismatch (stored 0x%08x, computed 0x%08x)",
				 h->dir_crc, crc);
	return dir_parse(b, dir, h->dir_length, h, e);
}

static struct bundle *bundle_new(void)
{
	struct bundle *b = calloc(1, sizeof(*b));
	if (b)
		b->fd = -1;
	return b;
}

void bundle_close(struct bundle *b)
{
	if (!b)
		return;
	if (b->fd >= 0)
		close(b->fd);
	free(b->tensors);
	free(b->shards);
	free(b->strings);
	free(b);
}

int bundle_parse(const void *buf, size_t len, struct bundle **out, struct uwerr *e)
{
	*out = NULL;
	struct header h;
	int rc = header_parse(buf, len, &h, e);
	if (rc)
		return rc;
	struct bundle *b = bundle_new();
	if (!b)
		return uwerr_set(e, ENOMEM, "out of memory");
	b->mem = buf;
	b->file_size = len;
	rc = dir_load(b, (const unsigned char *)buf + h.dir_offset, &h, e);
	if (rc) {
		bundle_close(b);
		return rc;
	}
	*out = b;
	return 0;
}

int bundle_open(const char *path, struct bundle **out, struct uwerr *e)
{
	return bundle_open_via(NULL, path, out, e);
}

int bundle_open_via(const struct opener *o, const char *path, struct bundle **out,
		    struct uwerr *e)
{
	*out = NULL;
	unsigned char hb[BUNDLE_HEADER_SIZE];
	unsigned char *dir = NULL;
	struct header h;
	struct stat st;
	int rc;
	struct bundle *b = bundle_new();
	if (!b)
		return uwerr_set(e, ENOMEM, "out of memory");
	b->fd = opener_open(o, path, e);
	if (b->fd < 0) {
		rc = uwerr_prefix(e, "open");
		goto fail;
	}
	if (fstat(b->fd, &st) < 0) {
		rc = uwerr_set(e, errno, "stat: %s", strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = uwerr_set(e, EINVAL, "not a regular file");
		goto fail;
	}
	b->file_size = (uint64_t)st.st_size;
	size_t hlen = b->file_size < sizeof(hb) ? (size_t)b->file_size : sizeof(hb);
	if ((rc = pread_full(b->fd, hb, hlen, 0, e)) ||
	    (rc = header_parse(hb, b->file_size, &h, e)))
		goto fail;
	dir = malloc(h.dir_length ? h.dir_length : 1);
	if (!dir) {
		rc = uwerr_set(e, ENOMEM, "out of memory for a directory of %llu bytes",
			       (unsigned long long)h.dir_length);
		goto fail;
	}
	if ((rc = pread_full(b->fd, dir, h.dir_length, h.dir_offset, e)))
		goto fail;
	if ((rc = dir_load(b, dir, &h, e)))
		goto fail;
	free(dir);
	*out = b;
	return 0;
fail:
	free(dir);
	bundle_close(b);
	return rc;
}

static int check_crc(const char *what, const struct bundle_tensor *t, uint32_t stored,
		     const void *p, size_t n, struct uwerr *e)
{
	uint32_t crc = crc32c(0, p, n);
	if (crc != stored)
		return uwerr_set(e, EBADMSG, "tensor '%s': %s CRC-32C mismatch (stored 0x%08x, computed 0x%08x)",
				 t->name, what, stored, crc);
	return 0;
}

int bundle_check_payload(const struct bundle *b, size_t i, const void *payload,
			 struct uwerr *e)
{
	if (i >= b->ntensors)
		return uwerr_set(e, EINVAL, "tensor %zu of %zu", i, b->ntensors);
	const struct bundle_tensor *t = &b->tensors[i];
	return check_crc("payload", t, t->payload_crc, payload, t->length, e);
}

int bundle_decode_tensor(const struct bundle *b, size_t i, const void *payload, void *raw,
			 int nthreads, struct uwerr *e)
{
	int rc = bundle_check_payload(b, i, payload, e);
	if (rc)
		return rc;
	const struct bundle_tensor *t = &b->tensors[i];
	if (t->enc == REST_RAW) {
		if (payload != raw)
			memcpy(raw, payload, t->raw_bytes);
	} else if ((rc = rest_decode(t->enc, t->dtype, payload, t->length, raw,
				     t->raw_bytes, nthreads, e))) {
		return uwerr_prefix(e, "tensor '%s'", t->name);
	}
	return check_crc("decoded bytes", t, t->raw_crc, raw, t->raw_bytes, e);
}

int bundle_read_tensor(const struct bundle *b, size_t i, void *raw, int nthreads,
		       struct uwerr *e)
{
	if (i >= b->ntensors)
		return uwerr_set(e, EINVAL, "tensor %zu of %zu", i, b->ntensors);
	const struct bundle_tensor *t = &b->tensors[i];
	if (b->mem)
		return bundle_decode_tensor(b, i, b->mem + t->offset, raw, nthreads, e);
	/* A raw payload is read where it is going. */
	void *buf = t->enc == REST_RAW ? raw : malloc(t->length ? t->length : 1);
	if (!buf)
		return uwerr_set(e, ENOMEM, "tensor '%s': out of memory for %llu payload bytes",
				 t->name, (unsigned long long)t->length);
	int rc = pread_full(b->fd, buf, t->length, t->offset, e);
	if (rc)
		uwerr_prefix(e, "tensor '%s'", t->name);
	else
		rc = bundle_decode_tensor(b, i, buf, raw, nthreads, e);
	if (buf != raw)
		free(buf);
	return rc;
}

/* ---- writer ---- */

struct bundle_writer {
	char *path, *tmp;
	int fd;
	uint64_t pos;                /* end of the payloads written so far */
	size_t ntensors, nshards;
	struct strbuf dir;           /* tensor records, appended as they come */
	struct strbuf shards, index; /* shard and index records */
};

int bundle_writer_open(const char *path, struct bundle_writer **out, struct uwerr *e)
{
	*out = NULL;
	struct bundle_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return uwerr_set(e, ENOMEM, "out of memory");
	w->fd = -1;
	w->pos = BUNDLE_HEADER_SIZE;
	w->path = strdup(path);
	if (!w->path || asprintf(&w->tmp, "%s.tmp", path) < 0) {
		w->tmp = NULL;
		free(w->path);
		free(w);
		return uwerr_set(e, ENOMEM, "out of memory");
	}
	w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (w->fd < 0) {
		int rc = uwerr_set(e, errno, "create %s: %s", w->tmp, strerror(errno));
		free(w->tmp);
		free(w->path);
		free(w);
		return rc;
	}
	*out = w;
	return 0;
}

static void rec32(struct strbuf *s, uint32_t v)
{
	unsigned char b[4];
	le32_put(b, v);
	sb_append(s, (const char *)b, 4);
}

static void rec64(struct strbuf *s, uint64_t v)
{
	unsigned char b[8];
	le64_put(b, v);
	sb_append(s, (const char *)b, 8);
}

int bundle_writer_index(struct bundle_writer *w, const char *name, const char *json,
			size_t len, struct uwerr *e)
{
	size_t nlen = strlen(name);
	if (w->index.len)
		return uwerr_set(e, EINVAL, "index: recorded twice");
	if (nlen == 0 || nlen > BUNDLE_MAX_PATH || len == 0 || len > BUNDLE_MAX_JSON ||
	    !plain_name((const unsigned char *)name, nlen))
		return uwerr_set(e, EINVAL, "index %s: name or %zu JSON bytes outside the limits (%d, %d)",
				 name, len, BUNDLE_MAX_PATH, BUNDLE_MAX_JSON);
	rec32(&w->index, (uint32_t)nlen);
	rec32(&w->index, (uint32_t)len);
	sb_append(&w->index, name, nlen);
	sb_append(&w->index, json, len);
	return w->index.err ? uwerr_set(e, ENOMEM, "index: out of memory") : 0;
}

int bundle_writer_shard(struct bundle_writer *w, const char *name, const char *header,
			size_t header_len, struct uwerr *e)
{
	size_t nlen = strlen(name);
	if (w->nshards >= BUNDLE_MAX_SHARDS)
		return uwerr_set(e, EINVAL, "shard %s: more than %d shards", name, BUNDLE_MAX_SHARDS);
	if (nlen == 0 || nlen > BUNDLE_MAX_PATH || header_len == 0 || header_len > BUNDLE_MAX_JSON ||
	    !plain_name((const unsigned char *)name, nlen))
		return uwerr_set(e, EINVAL, "shard %s: name or %zu header bytes outside the limits (%d, %d)",
				 name, header_len, BUNDLE_MAX_PATH, BUNDLE_MAX_JSON);
	rec32(&w->shards, (uint32_t)nlen);
	rec32(&w->shards, (uint32_t)header_len);
	sb_append(&w->shards, name, nlen);
	sb_append(&w->shards, header, header_len);
	w->nshards++;
	return w->shards.err ? uwerr_set(e, ENOMEM, "shard %s: out of memory", name) : 0;
}

int bundle_writer_put(struct bundle_writer *w, const struct bundle_tensor *t, int enc,
		      const void *payload, size_t len, struct uwerr *e)
{
	size_t nlen = strlen(t->name);
	if (w->ntensors >= BUNDLE_MAX_TENSORS)
		return uwerr_set(e, EINVAL, "tensor '%s': more than %d tensors", t->name,
				 BUNDLE_MAX_TENSORS);
	if (nlen == 0 || nlen > BUNDLE_MAX_NAME || t->ndim < 0 || t->ndim > ST_MAX_DIMS)
		return uwerr_set(e, EINVAL, "tensor '%s': name of %zu bytes or %d dimensions outside the limits",
				 t->name, nlen, t->ndim);
	uint64_t off = align_up(w->pos);
	int rc = pwrite_full(w->fd, payload, len, off, e);
	if (rc)
		return uwerr_prefix(e, "%s: tensor '%s'", w->tmp, t->name);
	w->pos = off + len;
	w->ntensors++;

	rec32(&w->dir, (uint32_t)nlen);
	rec32(&w->dir, t->shard);
	unsigned char small[4] = { (unsigned char)t->dtype, (unsigned char)t->ndim,
				   (unsigned char)enc, 0 };
	sb_append(&w->dir, (const char *)small, 4);
	rec32(&w->dir, crc32c(0, payload, len));
	rec32(&w->dir, t->raw_crc);
	rec64(&w->dir, off);
	rec64(&w->dir, len);
	rec64(&w->dir, t->raw_bytes);
	for (int d = 0; d < t->ndim; d++)
		rec64(&w->dir, t->shape[d]);
	sb_append(&w->dir, t->name, nlen);
	return w->dir.err ? uwerr_set(e, ENOMEM, "tensor '%s': out of memory", t->name) : 0;
}

uint64_t bundle_writer_size(const struct bundle_writer *w)
{
	return w->pos;
}

/* Make the rename itself durable. */
static void sync_parent(const char *path)
{
	char *dir = strdup(path);
	if (!dir)
		return;
	char *slash = strrchr(dir, '/');
	const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
	int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	free(dir);
}

static int writer_finish(struct bundle_writer *w, struct uwerr *e)
{
	struct strbuf d = {0};
	struct bundle *check = NULL;
	int rc;
	if (w->nshards == 0)
		return uwerr_set(e, EINVAL, "%s: no shard recorded", w->tmp);
	if (!w->index.len)
		sb_append(&d, "\0\0\0\0\0\0\0\0", 8);
	else
		sb_append(&d, w->index.s, w->index.len);
	sb_append(&d, w->shards.s, w->shards.len);
	if (w->ntensors)
		sb_append(&d, w->dir.s, w->dir.len);
	if (d.err) {
		rc = uwerr_set(e, ENOMEM, "%s: out of memory for the directory", w->tmp);
		goto out;
	}
	struct header h = {
		.dir_offset = align_up(w->pos), .dir_length = d.len,
		.dir_crc = crc32c(0, d.s, d.len),
		.ntensors = (uint32_t)w->ntensors, .nshards = (uint32_t)w->nshards,
	};
	h.file_size = h.dir_offset + h.dir_length;
	/* Write only what this build would accept on read. */
	if (d.len > BUNDLE_MAX_DIR) {
		rc = uwerr_set(e, EFBIG, "%s: directory of %zu bytes over the limit", w->tmp, d.len);
		goto out;
	}
	if (!(check = bundle_new())) {
		rc = uwerr_set(e, ENOMEM, "%s: out of memory", w->tmp);
		goto out;
	}
	if ((rc = dir_parse(check, (const unsigned char *)d.s, d.len, &h, e))) {
		uwerr_prefix(e, "%s", w->tmp);
		goto out;
	}
	unsigned char hb[BUNDLE_HEADER_SIZE] = {0};
	memcpy(hb + H_MAGIC, BUNDLE_MAGIC, BUNDLE_MAGIC_LEN);
	le32_put(hb + H_VERSION, BUNDLE_VERSION);
	le64_put(hb + H_FILE_SIZE, h.file_size);
	le64_put(hb + H_DIR_OFFSET, h.dir_offset);
	le64_put(hb + H_DIR_LENGTH, h.dir_length);
	le32_put(hb + H_DIR_CRC, h.dir_crc);
	le32_put(hb + H_NTENSORS, h.ntensors);
	le32_put(hb + H_NSHARDS, h.nshards);
	le32_put(hb + H_CRC, crc32c(0, hb, H_CRC));
	if ((rc = pwrite_full(w->fd, d.s, d.len, h.dir_offset, e)) ||
	    (rc = pwrite_full(w->fd, hb, sizeof(hb), 0, e))) {
		uwerr_prefix(e, "%s", w->tmp);
		goto out;
	}
	if (fsync(w->fd) < 0) {
		rc = uwerr_set(e, errno, "fsync %s: %s", w->tmp, strerror(errno));
		goto out;
	}
	if (close(w->fd) < 0) {
		w->fd = -1;
		rc = uwerr_set(e, errno, "close %s: %s", w->tmp, strerror(errno));
		goto out;
	}
	w->fd = -1;
	if (rename(w->tmp, w->path) < 0) {
		rc = uwerr_set(e, errno, "rename %s to %s: %s", w->tmp, w->path, strerror(errno));
		goto out;
	}
	sync_parent(w->path);
out:
	bundle_close(check);
	sb_free(&d);
	return rc;
}

int bundle_writer_close(struct bundle_writer *w, int commit, struct uwerr *e)
{
	if (!w)
		return 0;
	int rc = commit ? writer_finish(w, e) : 0;
	if (w->fd >= 0)
		close(w->fd);
	if (!commit || rc)
		unlink(w->tmp);
	sb_free(&w->dir);
	sb_free(&w->shards);
	sb_free(&w->index);
	free(w->tmp);
	free(w->path);
	free(w);
	return rc;
}
