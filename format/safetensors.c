/* safetensors: the validating reader, sharded checkpoints and the atomic writer. */
#include "config.h"  /* first: _GNU_SOURCE, for asprintf */

#include "format/safetensors.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/io.h"
#include "common/json.h"
#include "common/strbuf.h"
#include "format/dtype.h"

typedef unsigned long long ull;

/* io_pread_full with this file's messages: the failing offset, and a short
 * read with the bytes still missing. */
static int pread_full(int fd, void *buf, uint64_t n, uint64_t off, struct uwerr *e)
{
	size_t done = 0;
	int r = io_pread_full(fd, buf, (size_t)n, off, &done);  /* buf holds n bytes */
	off += done;
	n -= done;
	if (r == -ENODATA)
		return uwerr_set(e, EIO, "unexpected end of file at offset %llu, %llu bytes short (did the file shrink?)",
				 (ull)off, (ull)n);
	if (r)
		return uwerr_set(e, -r, "read at offset %llu: %s", (ull)off, strerror(-r));
	return 0;
}

static int pwrite_full(int fd, const void *buf, uint64_t n, uint64_t off, struct uwerr *e)
{
	size_t done = 0;
	int r = io_pwrite_full(fd, buf, (size_t)n, off, &done);
	if (r)
		return uwerr_set(e, r == -ENODATA ? EIO : -r, "write at offset %llu: %s", (ull)(off + done),
				 r == -ENODATA ? "nothing written" : strerror(-r));
	return 0;
}

/* Bytes of path up to and including its last '/', 0 when it has none. */
static size_t dir_prefix_len(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? (size_t)(slash - path) + 1 : 0;
}

static int is_key(const struct json_member *m, const char *key)
{
	return m->key_len == strlen(key) && memcmp(m->key, key, m->key_len) == 0;
}

/* A name usable as a C string: no embedded NUL, 1..ST_MAX_NAME bytes. */
static int check_name(const char *name, size_t len, struct uwerr *e)
{
	if (len == 0)
		return uwerr_set(e, EINVAL, "tensor with an empty name");
	if (len > ST_MAX_NAME)
		return uwerr_set(e, EINVAL, "tensor '%.64s...': name of %zu bytes exceeds %d", name, len, ST_MAX_NAME);
	if (strlen(name) != len)
		return uwerr_set(e, EINVAL, "tensor '%s': name holds a NUL byte", name);
	return 0;
}

static void fmt_shape(char *buf, size_t cap, const uint64_t *shape, int ndim)
{
	size_t at = (size_t)snprintf(buf, cap, "[");
	for (int i = 0; i < ndim && at < cap; i++)
		at += (size_t)snprintf(buf + at, cap - at, "%s%llu", i ? "," : "", (ull)shape[i]);
	if (at < cap)
		snprintf(buf + at, cap - at, "]");
}

/* Bytes of a tensor of this dtype and shape; -EOVERFLOW past 64 bits. */
static int shape_bytes(int dtype, const uint64_t *shape, int ndim, uint64_t *out)
{
	uint64_t n = dtype_size(dtype);
	for (int i = 0; i < ndim; i++)
		if (__builtin_mul_overflow(n, shape[i], &n))
			return -EOVERFLOW;
	*out = n;
	return 0;
}

/* The length prefix of b[0..len) against a file of file_size bytes. */
static int check_header_len(const unsigned char *b, size_t len, uint64_t file_size, uint64_t *out,
			    struct uwerr *e)
{
	if (file_size < 8)
		return uwerr_set(e, EINVAL, "file of %llu bytes is too short for the 8-byte header length",
				 (ull)file_size);
	if (len < 8)
		return uwerr_set(e, EINVAL, "header truncated: %zu bytes, the length alone takes 8", len);
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | b[i];
	if (n > ST_MAX_HEADER)
		return uwerr_set(e, EINVAL, "header length %llu exceeds the limit of %u bytes", (ull)n, ST_MAX_HEADER);
	if (n > file_size - 8)
		return uwerr_set(e, EINVAL, "header length %llu runs past the end of the file (size %llu)", (ull)n,
				 (ull)file_size);
	*out = n;
	return 0;
}

static int take_meta(struct st_file *f, const struct json_value *v, struct uwerr *e)
{
	if (v->type != JSON_OBJ)
		return uwerr_set(e, EINVAL, "__metadata__ is not an object");
	if (!(f->meta = calloc(v->u.obj.n ? v->u.obj.n : 1, sizeof(*f->meta))))
		return uwerr_set(e, ENOMEM, "__metadata__: out of memory");
	for (size_t i = 0; i < v->u.obj.n; i++) {
		const struct json_member *m = &v->u.obj.m[i];
		if (m->value.type != JSON_STR)
			return uwerr_set(e, EINVAL, "__metadata__ '%s': value is not a string", m->key);
		if (strlen(m->key) != m->key_len || strlen(m->value.u.str.s) != m->value.u.str.len)
			return uwerr_set(e, EINVAL, "__metadata__ '%s': holds a NUL byte", m->key);
		struct st_meta *d = &f->meta[f->nmeta];
		if (!(d->key = strdup(m->key)) || !(d->value = strdup(m->value.u.str.s))) {
			free(d->key);
			d->key = NULL;
			return uwerr_set(e, ENOMEM, "__metadata__: out of memory");
		}
		f->nmeta++;
	}
	return 0;
}

static int take_u64(const struct json_value *v, uint64_t *out, const char *name, const char *what,
		    struct uwerr *e)
{
	int r = json_u64(v, out);
	if (r == -ERANGE)
		return uwerr_set(e, EINVAL, "tensor '%s': %s %.40s exceeds 2^64-1", name, what, v->u.num.text);
	if (r)
		return uwerr_set(e, EINVAL, "tensor '%s': %s is not a non-negative integer", name, what);
	return 0;
}

/* One header entry "name": {"dtype", "shape", "data_offsets"}, exactly. */
static int take_tensor(struct st_tensor *t, const struct json_member *m, struct uwerr *e)
{
	const char *name = m->key;
	const struct json_value *v = &m->value, *dt = NULL, *shape = NULL, *off = NULL;
	char what[32], sh[256];
	int r;
	if ((r = check_name(name, m->key_len, e)))
		return r;
	if (v->type != JSON_OBJ)
		return uwerr_set(e, EINVAL, "tensor '%s': entry is not an object", name);
	for (size_t i = 0; i < v->u.obj.n; i++) {
		const struct json_member *k = &v->u.obj.m[i];
		const struct json_value **slot = is_key(k, "dtype") ? &dt
			: is_key(k, "shape") ? &shape
			: is_key(k, "data_offsets") ? &off : NULL;
		if (!slot)
			return uwerr_set(e, EINVAL, "tensor '%s': unexpected key '%.64s'", name, k->key);
		if (*slot)
			return uwerr_set(e, EINVAL, "tensor '%s': key '%s' given twice", name, k->key);
		*slot = &k->value;
	}
	if (!dt || !shape || !off)
		return uwerr_set(e, EINVAL, "tensor '%s': no '%s'", name,
				 !dt ? "dtype" : !shape ? "shape" : "data_offsets");
	if (dt->type != JSON_STR)
		return uwerr_set(e, EINVAL, "tensor '%s': dtype is not a string", name);
	if (!(t->dtype = dtype_from_name(dt->u.str.s, dt->u.str.len)))
		return uwerr_set(e, EINVAL, "tensor '%s': unknown dtype '%.64s'", name, dt->u.str.s);
	if (shape->type != JSON_ARR)
		return uwerr_set(e, EINVAL, "tensor '%s': shape is not an array", name);
	if (shape->u.arr.n > ST_MAX_DIMS)
		return uwerr_set(e, EINVAL, "tensor '%s': shape has %zu dimensions, at most %d are supported", name,
				 shape->u.arr.n, ST_MAX_DIMS);
	t->ndim = (int)shape->u.arr.n;
	for (int i = 0; i < t->ndim; i++) {
		snprintf(what, sizeof(what), "shape[%d]", i);
		if ((r = take_u64(&shape->u.arr.v[i], &t->shape[i], name, what, e)))
			return r;
	}
	if (off->type != JSON_ARR || off->u.arr.n != 2)
		return uwerr_set(e, EINVAL, "tensor '%s': data_offsets is not a [begin, end] pair", name);
	if ((r = take_u64(&off->u.arr.v[0], &t->begin, name, "data_offsets[0]", e)) ||
	    (r = take_u64(&off->u.arr.v[1], &t->end, name, "data_offsets[1]", e)))
		return r;
	if (t->begin > t->end)
		return uwerr_set(e, EINVAL, "tensor '%s': data_offsets [%llu,%llu) end before they begin", name,
				 (ull)t->begin, (ull)t->end);
	uint64_t bytes;
	fmt_shape(sh, sizeof(sh), t->shape, t->ndim);
	if (shape_bytes(t->dtype, t->shape, t->ndim, &bytes))
		return uwerr_set(e, EOVERFLOW, "tensor '%s': shape %s of %s overflows 64 bits", name, sh,
				 dtype_name(t->dtype));
	if (bytes != t->end - t->begin)
		return uwerr_set(e, EINVAL, "tensor '%s': shape %s of %s is %llu bytes but data_offsets [%llu,%llu) hold %llu",
				 name, sh, dtype_name(t->dtype), (ull)bytes, (ull)t->begin, (ull)t->end,
				 (ull)(t->end - t->begin));
	if (!(t->name = strdup(name)))
		return uwerr_set(e, ENOMEM, "tensor '%s': out of memory", name);
	return 0;
}

static int take_entries(struct st_file *f, const struct json_value *root, struct uwerr *e)
{
	const struct json_value *meta = NULL;
	size_t n = root->u.obj.n;
	int r;
	for (size_t i = 0; i < root->u.obj.n; i++) {
		if (!is_key(&root->u.obj.m[i], "__metadata__"))
			continue;
		if (meta)
			return uwerr_set(e, EINVAL, "__metadata__ given twice");
		meta = &root->u.obj.m[i].value;
		n--;
	}
	if (n > ST_MAX_TENSORS)
		return uwerr_set(e, EINVAL, "%zu tensors exceed the limit of %d", n, ST_MAX_TENSORS);
	if (meta && (r = take_meta(f, meta, e)))
		return r;
	if (!(f->tensors = calloc(n ? n : 1, sizeof(*f->tensors))))
		return uwerr_set(e, ENOMEM, "%zu tensors: out of memory", n);
	for (size_t i = 0; i < root->u.obj.n; i++) {
		const struct json_member *m = &root->u.obj.m[i];
		if (&m->value == meta)
			continue;
		if ((r = take_tensor(&f->tensors[f->ntensors], m, e)))
			return r;
		f->ntensors++;
	}
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct st_tensor *)a)->name, ((const struct st_tensor *)b)->name);
}

/* Zero-size tensors sort before the tensor that starts where they sit. */
static int by_offset(const void *a, const void *b)
{
	const struct st_tensor *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Names unique; the tensors tile [0, data size) exactly. Sorts by offset. */
static int check_layout(struct st_file *f, struct uwerr *e)
{
	uint64_t size = f->file_size - f->data_start, at = 0;
	struct st_tensor *t = f->tensors, *prev = NULL;
	for (size_t i = 0; i < f->ntensors; i++)
		if (t[i].end > size)
			return uwerr_set(e, EINVAL, "tensor '%s': data_offsets [%llu,%llu) past end of data (size %llu)",
					 t[i].name, (ull)t[i].begin, (ull)t[i].end, (ull)size);
	qsort(t, f->ntensors, sizeof(*t), by_name);
	for (size_t i = 1; i < f->ntensors; i++)
		if (strcmp(t[i - 1].name, t[i].name) == 0)
			return uwerr_set(e, EINVAL, "tensor '%s' appears twice in the header", t[i].name);
	qsort(t, f->ntensors, sizeof(*t), by_offset);
	for (size_t i = 0; i < f->ntensors; prev = &t[i++]) {
		if (t[i].begin < at)
			return uwerr_set(e, EINVAL, "tensor '%s': data_offsets [%llu,%llu) overlap tensor '%s' [%llu,%llu)",
					 t[i].name, (ull)t[i].begin, (ull)t[i].end, prev->name, (ull)prev->begin,
					 (ull)prev->end);
		if (t[i].begin > at)
			return uwerr_set(e, EINVAL, "hole in data: bytes [%llu,%llu) before tensor '%s' belong to no tensor",
					 (ull)at, (ull)t[i].begin, t[i].name);
		at = t[i].end;
	}
	if (at != size)
		return uwerr_set(e, EINVAL, "hole in data: bytes [%llu,%llu) after the last tensor belong to no tensor",
				 (ull)at, (ull)size);
	return 0;
}

int st_parse(const void *buf, size_t len, uint64_t file_size, struct st_file **out, struct uwerr *e)
{
	struct json_value *root = NULL;
	struct st_file *f = NULL;
	uint64_t n;
	int r;
	*out = NULL;
	if ((r = check_header_len(buf, len, file_size, &n, e)))
		return r;
	if (n > len - 8)
		return uwerr_set(e, EINVAL, "header truncated: %zu of %llu bytes", len - 8, (ull)n);
	const char *text = (const char *)buf + 8;
	if ((r = json_parse(text, n, &root, e))) {
		uwerr_prefix(e, "header");
		return r;
	}
	if (root->type != JSON_OBJ) {
		r = uwerr_set(e, EINVAL, "header is not a JSON object");
		goto fail;
	}
	if (!(f = calloc(1, sizeof(*f))) || !(f->header = malloc(n + 1))) {
		r = uwerr_set(e, ENOMEM, "header of %llu bytes: out of memory", (ull)n);
		goto fail;
	}
	memcpy(f->header, text, n);
	f->header[n] = '\0';
	f->header_len = n;
	f->fd = -1;
	f->file_size = file_size;
	f->data_start = 8 + n;
	if ((r = take_entries(f, root, e)) || (r = check_layout(f, e)))
		goto fail;
	json_free(root);
	*out = f;
	return 0;
fail:
	json_free(root);
	st_close(f);
	return r;
}

static int st_open_via(const struct opener *o, const char *path, struct st_file **out,
		       struct uwerr *e)
{
	unsigned char head[8], *buf = NULL;
	struct st_file *f = NULL;
	struct stat sb;
	uint64_t n, size;
	int r;
	*out = NULL;
	int fd = opener_open(o, path, e);
	if (fd < 0)
		return uwerr_prefix(e, "%s", path);
	if (fstat(fd, &sb) < 0) {
		r = uwerr_set(e, errno, "stat: %s", strerror(errno));
		goto fail;
	}
	if (!S_ISREG(sb.st_mode)) {
		r = uwerr_set(e, EINVAL, "not a regular file");
		goto fail;
	}
	size = (uint64_t)sb.st_size;
	if ((size >= 8 && (r = pread_full(fd, head, 8, 0, e))) ||
	    (r = check_header_len(head, size >= 8 ? 8 : 0, size, &n, e)))
		goto fail;
	if (!(buf = malloc(8 + n))) {
		r = uwerr_set(e, ENOMEM, "header of %llu bytes: out of memory", (ull)n);
		goto fail;
	}
	if ((r = pread_full(fd, buf, 8 + n, 0, e)) || (r = st_parse(buf, 8 + n, size, &f, e)))
		goto fail;
	if (!(f->path = strdup(path))) {
		r = uwerr_set(e, ENOMEM, "out of memory");
		goto fail;
	}
	free(buf);
	f->fd = fd;
	*out = f;
	return 0;
fail:
	free(buf);
	st_close(f);
	close(fd);
	uwerr_prefix(e, "%s", path);
	return r;
}

int st_open(const char *path, struct st_file **out, struct uwerr *e)
{
	return st_open_via(NULL, path, out, e);
}

void st_close(struct st_file *f)
{
	if (!f)
		return;
	if (f->fd >= 0)
		close(f->fd);
	for (size_t i = 0; i < f->ntensors; i++)
		free(f->tensors[i].name);
	for (size_t i = 0; i < f->nmeta; i++) {
		free(f->meta[i].key);
		free(f->meta[i].value);
	}
	free(f->tensors);
	free(f->meta);
	free(f->header);
	free(f->path);
	free(f);
}

int st_read_tensor(const struct st_file *f, const struct st_tensor *t, void *buf, struct uwerr *e)
{
	if (f->fd < 0)
		return uwerr_set(e, EBADF, "tensor '%s': the header was parsed from memory, there is no file to read",
				 t->name);
	int r = pread_full(f->fd, buf, st_tensor_bytes(t), f->data_start + t->begin, e);
	if (r)
		uwerr_prefix(e, "%s: tensor '%s'", f->path, t->name);
	return r;
}

/* --- checkpoints --------------------------------------------------------- */

static int ckpt_add(struct st_checkpoint *c, struct st_file *f, struct uwerr *e)
{
	struct st_file **files = NULL;
	if (c->nfiles >= ST_MAX_SHARDS || !(files = realloc(c->files, (c->nfiles + 1) * sizeof(*files)))) {
		int r = c->nfiles >= ST_MAX_SHARDS
			? uwerr_set(e, EINVAL, "%s: more than %d files in one checkpoint", f->path, ST_MAX_SHARDS)
			: uwerr_set(e, ENOMEM, "%s: out of memory", f->path);
		st_close(f);
		return r;
	}
	c->files = files;
	c->files[c->nfiles++] = f;
	return 0;
}

static int ckpt_open_file(struct st_checkpoint *c, const struct opener *o, const char *path,
			  struct uwerr *e)
{
	struct st_file *f;
	int r = st_open_via(o, path, &f, e);
	return r ? r : ckpt_add(c, f, e);
}

/* Read path as an index when it is one: named *.json, or starting with '{'
 * and parsing as a JSON object. A safetensors file starts with '{' only when
 * its header length is 123 mod 256, and then its first 8 bytes hold a NUL
 * (the length is below 2^32), which JSON text never does. Returns 1 with the
 * text and tree, 0 for "open it as safetensors", or -errno. */
static int read_index(const struct opener *o, const char *path, char **text,
		      struct json_value **root, struct uwerr *e)
{
	size_t plen = strlen(path);
	int named = plen >= 5 && strcmp(path + plen - 5, ".json") == 0, r = 0;
	char *buf = NULL, head[8];
	struct stat sb;
	*text = NULL;
	*root = NULL;
	int fd = opener_open(o, path, e);
	if (fd < 0)
		return uwerr_prefix(e, "%s", path);
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		r = uwerr_set(e, EINVAL, "not a regular file");
		goto out;
	}
	uint64_t size = (uint64_t)sb.st_size;
	size_t nhead = size < sizeof(head) ? (size_t)size : sizeof(head);
	if (!named) {
		if ((r = pread_full(fd, head, nhead, 0, e)))
			goto out;
		if (nhead == 0 || head[0] != '{' || memchr(head, 0, nhead))
			goto out;
	}
	if (size > ST_MAX_HEADER) {
		r = uwerr_set(e, EINVAL, "index of %llu bytes exceeds the limit of %u", (ull)size, ST_MAX_HEADER);
		goto out;
	}
	if (!(buf = malloc(size + 1))) {
		r = uwerr_set(e, ENOMEM, "out of memory");
		goto out;
	}
	if ((r = pread_full(fd, buf, size, 0, e)))
		goto out;
	buf[size] = '\0';
	if ((r = json_parse(buf, size, root, e))) {
		uwerr_prefix(e, "index");
		goto out;
	}
	if ((*root)->type != JSON_OBJ) {
		r = uwerr_set(e, EINVAL, "index is not a JSON object");
		goto out;
	}
	*text = buf;
	buf = NULL;
	r = 1;
out:
	if (r < 0) {
		json_free(*root);
		*root = NULL;
		uwerr_prefix(e, "%s", path);
	}
	free(buf);
	close(fd);
	return r;
}

/* A shard name must stay in the index's directory. */
static int check_shard_name(const char *index, const char *tensor, const struct json_value *v, struct uwerr *e)
{
	if (v->type != JSON_STR)
		return uwerr_set(e, EINVAL, "%s: weight_map['%s'] is not a string", index, tensor);
	const char *s = v->u.str.s;
	if (v->u.str.len == 0 || strlen(s) != v->u.str.len || strchr(s, '/') || strcmp(s, ".") == 0 ||
	    strcmp(s, "..") == 0)
		return uwerr_set(e, EINVAL, "%s: weight_map['%s'] = '%s' is not a plain file name beside the index",
				 index, tensor, s);
	return 0;
}

struct wm_entry {
	const char *tensor, *shard;
	size_t file;                 /* index into the checkpoint's files */
	int found;
};

static int wm_by_tensor(const void *a, const void *b)
{
	return strcmp(((const struct wm_entry *)a)->tensor, ((const struct wm_entry *)b)->tensor);
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Open the shards of the index at path (tree root) and check that the
 * weight_map and the shards agree in both directions. */
static int ckpt_open_index(struct st_checkpoint *c, const struct opener *o, const char *path,
			   const struct json_value *root, struct uwerr *e)
{
	const struct json_value *wm = json_get(root, "weight_map"), *md = json_get(root, "metadata");
	struct wm_entry *ent = NULL;
	const char **shards = NULL;
	char *shard_path = NULL;
	size_t n, nshards = 0, first = c->nfiles, dirlen = dir_prefix_len(path);
	int r = 0;
	if (!wm || wm->type != JSON_OBJ)
		return uwerr_set(e, EINVAL, "%s: no \"weight_map\" object", path);
	if (md && md->type != JSON_OBJ)
		return uwerr_set(e, EINVAL, "%s: \"metadata\" is not an object", path);
	if (!wm->u.obj.n)   /* else an index of no shard opens as an empty checkpoint */
		return uwerr_set(e, EINVAL, "%s: \"weight_map\" names no tensor", path);
	n = wm->u.obj.n;
	ent = calloc(n ? n : 1, sizeof(*ent));
	shards = calloc(n ? n : 1, sizeof(*shards));
	if (!ent || !shards) {
		r = uwerr_set(e, ENOMEM, "%s: out of memory", path);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct json_member *m = &wm->u.obj.m[i];
		if ((r = check_name(m->key, m->key_len, e))) {
			uwerr_prefix(e, "%s: weight_map", path);
			goto out;
		}
		if ((r = check_shard_name(path, m->key, &m->value, e)))
			goto out;
		ent[i].tensor = m->key;
		ent[i].shard = shards[i] = m->value.u.str.s;
	}
	qsort(ent, n, sizeof(*ent), wm_by_tensor);
	for (size_t i = 1; i < n; i++)
		if (strcmp(ent[i - 1].tensor, ent[i].tensor) == 0) {
			r = uwerr_set(e, EINVAL, "%s: tensor '%s' appears twice in weight_map", path, ent[i].tensor);
			goto out;
		}
	/* The distinct shards, opened in name order (model-00001-of-00003, ...). */
	qsort(shards, n, sizeof(*shards), str_cmp);
	for (size_t i = 0; i < n; i++) {
		if (nshards && strcmp(shards[nshards - 1], shards[i]) == 0)
			continue;
		shards[nshards++] = shards[i];
		free(shard_path);
		if (asprintf(&shard_path, "%.*s%s", (int)dirlen, path, shards[i]) < 0) {
			shard_path = NULL;
			r = uwerr_set(e, ENOMEM, "%s: out of memory", path);
			goto out;
		}
		if ((r = ckpt_open_file(c, o, shard_path, e))) {
			uwerr_prefix(e, "index %s", path);
			goto out;
		}
	}
	for (size_t i = 0; i < n; i++) {
		const char **s = bsearch(&ent[i].shard, shards, nshards, sizeof(*shards), str_cmp);
		ent[i].file = first + (size_t)(s - shards);
	}
	for (size_t k = first; k < c->nfiles; k++) {
		const struct st_file *f = c->files[k];
		for (size_t j = 0; j < f->ntensors; j++) {
			struct wm_entry key = {.tensor = f->tensors[j].name};
			struct wm_entry *hit = bsearch(&key, ent, n, sizeof(*ent), wm_by_tensor);
			if (!hit) {
				r = uwerr_set(e, EINVAL, "%s: tensor '%s' of %s is not in weight_map", path, key.tensor,
					      f->path);
				goto out;
			}
			if (hit->file != k) {
				r = uwerr_set(e, EINVAL, "%s: weight_map puts tensor '%s' in %s, but it is in %s", path,
					      key.tensor, hit->shard, f->path);
				goto out;
			}
			hit->found = 1;
		}
	}
	for (size_t i = 0; i < n; i++)
		if (!ent[i].found) {
			r = uwerr_set(e, EINVAL, "%s: weight_map puts tensor '%s' in %s, which does not hold it", path,
				      ent[i].tensor, ent[i].shard);
			goto out;
		}
out:
	free(shard_path);
	free(shards);
	free(ent);
	return r;
}

struct owner {
	const char *name;
	size_t file;
};

/* By name, then by file, so a duplicate is reported in the order given. */
static int owner_by_name(const void *a, const void *b)
{
	const struct owner *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : (x->file > y->file) - (x->file < y->file);
}

static int ckpt_check_unique(const struct st_checkpoint *c, struct uwerr *e)
{
	size_t total = 0, k = 0;
	for (size_t i = 0; i < c->nfiles; i++)
		total += c->files[i]->ntensors;
	struct owner *o = malloc((total ? total : 1) * sizeof(*o));
	if (!o)
		return uwerr_set(e, ENOMEM, "%zu tensors: out of memory", total);
	for (size_t i = 0; i < c->nfiles; i++)
		for (size_t j = 0; j < c->files[i]->ntensors; j++)
			o[k++] = (struct owner){c->files[i]->tensors[j].name, i};
	qsort(o, total, sizeof(*o), owner_by_name);
	int r = 0;
	for (size_t i = 1; i < total && !r; i++)
		if (strcmp(o[i - 1].name, o[i].name) == 0)
			r = uwerr_set(e, EINVAL, "tensor '%s' is in both %s and %s", o[i].name,
				      c->files[o[i - 1].file]->path, c->files[o[i].file]->path);
	free(o);
	return r;
}

int st_checkpoint_open(const char *const *paths, size_t npaths, struct st_checkpoint **out, struct uwerr *e)
{
	return st_checkpoint_open_via(NULL, paths, npaths, out, e);
}

int st_checkpoint_open_via(const struct opener *o, const char *const *paths, size_t npaths,
			   struct st_checkpoint **out, struct uwerr *e)
{
	struct st_checkpoint *c = calloc(1, sizeof(*c));
	const char *index_path = NULL;
	int r = 0;
	*out = NULL;
	if (!c)
		return uwerr_set(e, ENOMEM, "checkpoint: out of memory");
	if (npaths == 0) {
		r = uwerr_set(e, EINVAL, "checkpoint: no files given");
		goto fail;
	}
	for (size_t i = 0; i < npaths; i++) {
		char *text;
		struct json_value *root;
		if ((r = read_index(o, paths[i], &text, &root, e)) < 0)
			goto fail;
		if (r == 0) {
			if ((r = ckpt_open_file(c, o, paths[i], e)))
				goto fail;
			continue;
		}
		if (index_path) {
			r = uwerr_set(e, EINVAL, "%s: a second index (the first is %s); a checkpoint has one", paths[i],
				      index_path);
		} else {
			index_path = paths[i];
			c->index_json = text;
			c->index_len = strlen(text);
			text = NULL;
			r = ckpt_open_index(c, o, paths[i], root, e);
		}
		free(text);
		json_free(root);
		if (r)
			goto fail;
	}
	if ((r = ckpt_check_unique(c, e)))
		goto fail;
	*out = c;
	return 0;
fail:
	st_checkpoint_close(c);
	return r;
}

void st_checkpoint_close(struct st_checkpoint *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->nfiles; i++)
		st_close(c->files[i]);
	free(c->files);
	free(c->index_json);
	free(c);
}

/* --- writer -------------------------------------------------------------- */

struct st_writer {
	char *path, *tmp;
	int fd;
	size_t n;
	struct st_file *layout;      /* the header as written, parsed back */
	const struct st_tensor **at; /* at[i]: the header's entry for tensor i */
	unsigned char *put;          /* put[i]: tensor i's data is written */
	uint64_t data_start;
};

/* The header Python's safetensors writes: __metadata__ first, then the
 * tensors in order with contiguous offsets, no spaces, padded to 8 bytes. */
static char *gen_header(const struct st_out_tensor *t, size_t n, const struct st_meta *meta, size_t nmeta,
			size_t *len)
{
	struct strbuf b = {0};
	uint64_t at = 0, bytes = 0;
	sb_append(&b, "{", 1);
	if (nmeta) {
		sb_json_str(&b, "__metadata__", strlen("__metadata__"));
		sb_append(&b, ":{", 2);
		for (size_t i = 0; i < nmeta; i++) {
			if (i)
				sb_append(&b, ",", 1);
			sb_json_str(&b, meta[i].key, strlen(meta[i].key));
			sb_append(&b, ":", 1);
			sb_json_str(&b, meta[i].value, strlen(meta[i].value));
		}
		sb_append(&b, "}", 1);
	}
	for (size_t i = 0; i < n; i++) {
		if (nmeta || i)
			sb_append(&b, ",", 1);
		sb_json_str(&b, t[i].name, strlen(t[i].name));
		sb_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", dtype_name(t[i].dtype));
		for (int d = 0; d < t[i].ndim; d++)
			sb_printf(&b, "%s%llu", d ? "," : "", (ull)t[i].shape[d]);
		shape_bytes(t[i].dtype, t[i].shape, t[i].ndim, &bytes);  /* checked by the caller */
		sb_printf(&b, "],\"data_offsets\":[%llu,%llu]}", (ull)at, (ull)(at + bytes));
		at += bytes;
	}
	sb_append(&b, "}", 1);
	while (!b.err && b.len % 8)
		sb_append(&b, " ", 1);
	*len = b.len;
	return sb_take(&b);
}

static int same_shape(const struct st_out_tensor *a, const struct st_tensor *b)
{
	return a->ndim == b->ndim && memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof(a->shape[0])) == 0;
}

/* Map each given tensor to its entry of the parsed header: the same set of
 * names, each with the same dtype and shape; fills t[i].begin/end. */
static int match_layout(struct st_writer *w, struct st_out_tensor *t, const struct st_meta *meta,
			size_t nmeta, struct uwerr *e)
{
	const struct st_file *f = w->layout;
	char sa[256], sb[256];
	if (f->ntensors != w->n)
		return uwerr_set(e, EINVAL, "the header describes %zu tensors, %zu are given", f->ntensors, w->n);
	struct st_tensor *byname = malloc((f->ntensors ? f->ntensors : 1) * sizeof(*byname));
	unsigned char *taken = calloc(f->ntensors ? f->ntensors : 1, 1);
	int r = 0;
	if (!byname || !taken) {
		r = uwerr_set(e, ENOMEM, "out of memory");
		goto out;
	}
	memcpy(byname, f->tensors, f->ntensors * sizeof(*byname));
	qsort(byname, f->ntensors, sizeof(*byname), by_name);
	for (size_t i = 0; i < w->n; i++) {
		struct st_tensor key = {.name = (char *)t[i].name};
		const struct st_tensor *hit = bsearch(&key, byname, f->ntensors, sizeof(*byname), by_name);
		if (!hit) {
			r = uwerr_set(e, EINVAL, "tensor '%s' is not in the header", t[i].name);
			goto out;
		}
		/* Its entry in f->tensors, which is sorted by offset. */
		const struct st_tensor *self = bsearch(hit, f->tensors, f->ntensors, sizeof(*hit), by_offset);
		size_t k = (size_t)(self - f->tensors);
		if (taken[k]) {
			r = uwerr_set(e, EINVAL, "tensor '%s' is given twice", t[i].name);
			goto out;
		}
		if (self->dtype != t[i].dtype || !same_shape(&t[i], self)) {
			fmt_shape(sa, sizeof(sa), self->shape, self->ndim);
			fmt_shape(sb, sizeof(sb), t[i].shape, t[i].ndim);
			r = uwerr_set(e, EINVAL, "tensor '%s': the header says %s %s, the tensor is %s %s", t[i].name,
				      dtype_name(self->dtype), sa, dtype_name(t[i].dtype), sb);
			goto out;
		}
		taken[k] = 1;
		w->at[i] = self;
		t[i].begin = self->begin;
		t[i].end = self->end;
	}
	if (nmeta) {
		int same = f->nmeta == nmeta;
		for (size_t i = 0; same && i < nmeta; i++)
			same = strcmp(f->meta[i].key, meta[i].key) == 0 &&
			       strcmp(f->meta[i].value, meta[i].value) == 0;
		if (!same)
			r = uwerr_set(e, EINVAL, "the metadata given differs from the header's __metadata__");
	}
out:
	free(taken);
	free(byname);
	return r;
}

int st_writer_open(const char *path, struct st_out_tensor *t, size_t n, const struct st_meta *meta, size_t nmeta,
		   const char *header, size_t header_len, struct st_writer **out, struct uwerr *e)
{
	struct st_writer *w = NULL;
	unsigned char *head = NULL;
	char *gen = NULL;
	uint64_t total = 0, bytes, file_size;
	int r;
	*out = NULL;
	if (n > ST_MAX_TENSORS)
		return uwerr_set(e, EINVAL, "%s: %zu tensors exceed the limit of %d", path, n, ST_MAX_TENSORS);
	for (size_t i = 0; i < n; i++) {
		if (!t[i].name)
			return uwerr_set(e, EINVAL, "%s: tensor %zu has no name", path, i);
		if (strcmp(t[i].name, "__metadata__") == 0)
			return uwerr_set(e, EINVAL, "%s: the tensor name '__metadata__' is reserved", path);
		if (!dtype_size(t[i].dtype) || t[i].ndim < 0 || t[i].ndim > ST_MAX_DIMS)
			return uwerr_set(e, EINVAL, "%s: tensor '%s': dtype %d or ndim %d out of range", path, t[i].name,
					 t[i].dtype, t[i].ndim);
		if (shape_bytes(t[i].dtype, t[i].shape, t[i].ndim, &bytes) ||
		    __builtin_add_overflow(total, bytes, &total))
			return uwerr_set(e, EOVERFLOW, "%s: tensor '%s': size overflows 64 bits", path, t[i].name);
	}
	if (!header && !(header = gen = gen_header(t, n, meta, nmeta, &header_len)))
		return uwerr_set(e, ENOMEM, "%s: header: out of memory", path);
	if (header_len > ST_MAX_HEADER || __builtin_add_overflow(8 + (uint64_t)header_len, total, &file_size)) {
		r = uwerr_set(e, EINVAL, "%s: header of %zu bytes or data of %llu bytes too large", path, header_len,
			      (ull)total);
		goto fail;
	}
	if (!(w = calloc(1, sizeof(*w)))) {
		r = uwerr_set(e, ENOMEM, "%s: out of memory", path);
		goto fail;
	}
	w->fd = -1;  /* st_writer_close unlinks the temporary file only once it is ours */
	w->n = n;
	if (!(head = malloc(8 + header_len)) || !(w->at = calloc(n ? n : 1, sizeof(*w->at))) ||
	    !(w->put = calloc(n ? n : 1, 1)) || !(w->path = strdup(path)) ||
	    asprintf(&w->tmp, "%s.tmp", path) < 0) {
		w->tmp = NULL;
		r = uwerr_set(e, ENOMEM, "%s: out of memory", path);
		goto fail;
	}
	for (int i = 0; i < 8; i++)
		head[i] = (unsigned char)((uint64_t)header_len >> (8 * i));
	memcpy(head + 8, header, header_len);
	if ((r = st_parse(head, 8 + header_len, file_size, &w->layout, e))) {
		uwerr_prefix(e, "%s: %s", path, gen ? "generated" : "given verbatim");
		goto fail;
	}
	w->data_start = w->layout->data_start;
	if ((r = match_layout(w, t, meta, nmeta, e))) {
		uwerr_prefix(e, "%s", path);
		goto fail;
	}
	w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (w->fd < 0) {
		int err = errno;
		r = uwerr_set(e, err, "%s: %s%s", w->tmp, strerror(err),
			      err == EEXIST ? " (left by an interrupted write? remove it)" : "");
		goto fail;
	}
	if ((r = pwrite_full(w->fd, head, 8 + header_len, 0, e))) {
		uwerr_prefix(e, "%s", w->tmp);
		goto fail;
	}
	free(head);
	free(gen);
	*out = w;
	return 0;
fail:
	free(head);
	free(gen);
	st_writer_close(w, 0, NULL);
	return r;
}

int st_writer_put(struct st_writer *w, size_t i, const void *data, struct uwerr *e)
{
	if (i >= w->n)
		return uwerr_set(e, EINVAL, "%s: tensor %zu out of range (%zu tensors)", w->tmp, i, w->n);
	const struct st_tensor *t = w->at[i];
	if (w->put[i])
		return uwerr_set(e, EINVAL, "%s: tensor '%s' written twice", w->tmp, t->name);
	int r = pwrite_full(w->fd, data, st_tensor_bytes(t), w->data_start + t->begin, e);
	if (r)
		uwerr_prefix(e, "%s: tensor '%s'", w->tmp, t->name);
	else
		w->put[i] = 1;
	return r;
}

/* Make the rename durable: fsync the directory that holds path. */
static int sync_dir(const char *path, struct uwerr *e)
{
	size_t n = dir_prefix_len(path);
	char *dir = n ? strndup(path, n) : strdup(".");
	if (!dir)
		return uwerr_set(e, ENOMEM, "out of memory");
	int r = 0, fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || (fsync(fd) < 0 && errno != EINVAL))
		r = uwerr_set(e, errno, "fsync directory %s: %s", dir, strerror(errno));
	if (fd >= 0)
		close(fd);
	free(dir);
	return r;
}

int st_writer_close(struct st_writer *w, int commit, struct uwerr *e)
{
	if (!w)
		return 0;
	int r = 0, renamed = 0;
	for (size_t i = 0; commit && i < w->n && !r; i++)
		if (!w->put[i])
			r = uwerr_set(e, EINVAL, "%s: tensor '%s' was never written", w->tmp, w->at[i]->name);
	if (commit && !r && fsync(w->fd) < 0)
		r = uwerr_set(e, errno, "%s: fsync: %s", w->tmp, strerror(errno));
	if (w->fd >= 0 && close(w->fd) < 0 && commit && !r)
		r = uwerr_set(e, errno, "%s: close: %s", w->tmp, strerror(errno));
	if (commit && !r) {
		if (rename(w->tmp, w->path) < 0)
			r = uwerr_set(e, errno, "rename %s to %s: %s", w->tmp, w->path, strerror(errno));
		else
			renamed = 1;
	}
	if (renamed)
		r = sync_dir(w->path, e);
	else if (w->fd >= 0)
		unlink(w->tmp);
	st_close(w->layout);
	free(w->at);
	free(w->put);
	free(w->path);
	free(w->tmp);
	free(w);
	return r;
}
