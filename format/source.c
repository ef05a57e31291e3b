/* source: one view over safetensors checkpoints and .uwb bundles (source.h). */
#include "config.h"  /* first: _GNU_SOURCE */
#include "format/source.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/bundle.h"
#include "format/restcodec.h"

struct source {
	struct bundle *b;            /* exactly one of b and c */
	struct st_checkpoint *c;
	char *bundle_path;           /* the path b was opened by */
	size_t n;
	struct src_tensor *t;
	const struct st_file **file; /* checkpoint: the shard of each tensor */
	const struct st_tensor **st; /* checkpoint: its entry there */
	uint64_t raw_total;
	int nthreads;
};

/* 1 when path is a bundle, 0 when not, negative errno (recorded in e). */
static int is_bundle(const struct opener *o, const char *path, struct uwerr *e)
{
	int fd = opener_open(o, path, e);
	if (fd < 0)
		return uwerr_prefix(e, "%s: open", path);
	int rc = bundle_sniff(fd);
	close(fd);
	if (rc < 0)
		return uwerr_set(e, -rc, "%s: read: %s", path, strerror(-rc));
	return rc;
}

static int from_bundle(struct source *s, struct uwerr *e)
{
	s->n = s->b->ntensors;
	s->t = calloc(s->n ? s->n : 1, sizeof(*s->t));
	if (!s->t)
		return uwerr_set(e, ENOMEM, "out of memory for %zu tensors", s->n);
	for (size_t i = 0; i < s->n; i++) {
		const struct bundle_tensor *bt = &s->b->tensors[i];
		struct src_tensor *t = &s->t[i];
		t->name = bt->name;
		t->dtype = bt->dtype;
		t->ndim = bt->ndim;
		memcpy(t->shape, bt->shape, sizeof(t->shape));
		t->raw_bytes = bt->raw_bytes;
		s->raw_total += t->raw_bytes;
	}
	return 0;
}

static int from_checkpoint(struct source *s, struct uwerr *e)
{
	for (size_t f = 0; f < s->c->nfiles; f++)
		s->n += s->c->files[f]->ntensors;
	s->t = calloc(s->n ? s->n : 1, sizeof(*s->t));
	s->file = calloc(s->n ? s->n : 1, sizeof(*s->file));
	s->st = calloc(s->n ? s->n : 1, sizeof(*s->st));
	if (!s->t || !s->file || !s->st)
		return uwerr_set(e, ENOMEM, "out of memory for %zu tensors", s->n);
	size_t i = 0;
	for (size_t f = 0; f < s->c->nfiles; f++) {
		const struct st_file *sf = s->c->files[f];
		for (size_t k = 0; k < sf->ntensors; k++, i++) {
			const struct st_tensor *st = &sf->tensors[k];
			struct src_tensor *t = &s->t[i];
			t->name = st->name;
			t->dtype = st->dtype;
			t->ndim = st->ndim;
			memcpy(t->shape, st->shape, sizeof(t->shape));
			t->raw_bytes = st_tensor_bytes(st);
			s->file[i] = sf;
			s->st[i] = st;
			s->raw_total += t->raw_bytes;
		}
	}
	return 0;
}

int source_open(const char *const *paths, size_t npaths, struct source **out,
		struct uwerr *e)
{
	return source_open_via(NULL, paths, npaths, out, e);
}

int source_open_via(const struct opener *o, const char *const *paths, size_t npaths,
		    struct source **out, struct uwerr *e)
{
	*out = NULL;
	if (npaths == 0)
		return uwerr_set(e, EINVAL, "no checkpoint path given");
	struct source *s = calloc(1, sizeof(*s));
	if (!s)
		return uwerr_set(e, ENOMEM, "out of memory");
	s->nthreads = 1;
	int rc = 0;
	for (size_t i = 0; i < npaths; i++) {
		if ((rc = is_bundle(o, paths[i], e)) < 0)
			goto fail;
		if (rc == 1 && npaths > 1) {
			rc = uwerr_set(e, EINVAL, "%s: a .uwb bundle must be the only path given (%zu given)",
				       paths[i], npaths);
			goto fail;
		}
	}
	if (rc == 1) {
		if ((rc = bundle_open_via(o, paths[0], &s->b, e))) {
			uwerr_prefix(e, "%s", paths[0]);
			goto fail;
		}
		if (!(s->bundle_path = strdup(paths[0]))) {
			rc = uwerr_set(e, ENOMEM, "out of memory");
			goto fail;
		}
		rc = from_bundle(s, e);
	} else {
		if ((rc = st_checkpoint_open_via(o, paths, npaths, &s->c, e)))
			goto fail;
		rc = from_checkpoint(s, e);
	}
	if (rc)
		goto fail;
	*out = s;
	return 0;
fail:
	source_close(s);
	return rc;
}

void source_close(struct source *s)
{
	if (!s)
		return;
	bundle_close(s->b);
	st_checkpoint_close(s->c);
	free(s->bundle_path);
	free(s->t);
	free(s->file);
	free(s->st);
	free(s);
}

void source_set_threads(struct source *s, int nthreads)
{
	s->nthreads = nthreads;
}

size_t source_count(const struct source *s)
{
	return s->n;
}

const struct src_tensor *source_tensor(const struct source *s, size_t i)
{
	return i < s->n ? &s->t[i] : NULL;
}

uint64_t source_raw_total(const struct source *s)
{
	return s->raw_total;
}

int source_read(const struct source *s, size_t i, void *raw, struct uwerr *e)
{
	if (i >= s->n)
		return uwerr_set(e, EINVAL, "tensor %zu of %zu", i, s->n);
	if (s->b)
		return bundle_read_tensor(s->b, i, raw, s->nthreads, e);
	return st_read_tensor(s->file[i], s->st[i], raw, e);
}

void source_extent(const struct source *s, size_t i, struct src_extent *x)
{
	if (s->b) {
		*x = (struct src_extent){0, s->b->tensors[i].offset, s->b->tensors[i].length};
		return;
	}
	size_t f = 0;
	while (s->c->files[f] != s->file[i])
		f++;
	*x = (struct src_extent){f, s->file[i]->data_start + s->st[i]->begin,
				 st_tensor_bytes(s->st[i])};
}

size_t source_file_count(const struct source *s)
{
	return s->b ? 1 : s->c->nfiles;
}

const char *source_file_path(const struct source *s, size_t i)
{
	if (i >= source_file_count(s))
		return NULL;
	return s->b ? s->bundle_path : s->c->files[i]->path;
}

int source_file_fd(const struct source *s, size_t i)
{
	if (i >= source_file_count(s))
		return -1;
	return s->b ? s->b->fd : s->c->files[i]->fd;
}

uint64_t source_file_size(const struct source *s, size_t file)
{
	return s->b ? s->b->file_size : s->c->files[file]->file_size;
}

int source_stored_is_raw(const struct source *s)
{
	return s->b == NULL;
}

size_t source_exphuf_head_len(const struct source *s, size_t i)
{
	if (i >= s->n || !s->b || s->b->tensors[i].enc != REST_EXPHUF)
		return 0;
	const struct bundle_tensor *t = &s->b->tensors[i];
	return rest_exphuf_head_len(t->length, t->raw_bytes);
}

int source_exphuf_parse(const struct source *s, size_t i, const void *head,
			struct rest_exphuf *x, uint32_t *payload_crc, uint32_t *raw_crc,
			struct uwerr *e)
{
	if (!source_exphuf_head_len(s, i))
		return uwerr_set(e, EINVAL, "tensor %zu: not an exphuf payload", i);
	const struct bundle_tensor *t = &s->b->tensors[i];
	int rc = rest_exphuf_parse(head, t->length, t->raw_bytes, x, e);
	if (rc)
		return uwerr_prefix(e, "tensor '%s'", t->name);
	*payload_crc = t->payload_crc;
	*raw_crc = t->raw_crc;
	return 0;
}

int source_decode(const struct source *s, size_t i, const void *stored, void *raw,
		  struct uwerr *e)
{
	if (i >= s->n)
		return uwerr_set(e, EINVAL, "tensor %zu of %zu", i, s->n);
	if (s->b)
		return bundle_decode_tensor(s->b, i, stored, raw, s->nthreads, e);
	memcpy(raw, stored, s->t[i].raw_bytes);
	return 0;
}
