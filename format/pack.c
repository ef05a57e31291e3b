/* pack: checkpoint -> bundle through an ordered pipeline of workers, and
 * bundle -> safetensors (pack.h). */
#include "config.h"  /* first: _GNU_SOURCE */
#include "format/pack.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/parallel.h"
#include "common/progress.h"
#include "format/restcodec.h"
#include "format/safetensors.h"

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* ---- pack ---- */

struct pack_item {
	const struct st_file *f;
	const struct st_tensor *t;
	uint32_t shard;
};

/* Workers claim tensors in order, read and encode them unlocked, and put
 * them in order, so the bundle does not depend on timing. At most
 * PACK_INFLIGHT_MAX raw bytes are claimed and not yet written. */
struct pack_job {
	struct pack_item *items;
	size_t n;
	struct bundle_writer *w;
	int nthreads;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	size_t next_claim, next_write, inflight_n;
	uint64_t inflight_bytes, stored;
	struct progress *progress;
	struct par_err err;
};

/* Read and encode item i; fills bt (the directory entry) and blob. */
static int pack_encode(const struct pack_item *it, int nthreads, struct bundle_tensor *bt,
		       struct rest_blob *blob, struct uwerr *e)
{
	uint64_t bytes = st_tensor_bytes(it->t);
	void *raw = malloc(bytes ? bytes : 1);
	if (!raw)
		return uwerr_set(e, ENOMEM, "tensor '%s': out of memory for %llu bytes",
				 it->t->name, (unsigned long long)bytes);
	int rc = st_read_tensor(it->f, it->t, raw, e);
	if (!rc) {
		*bt = (struct bundle_tensor){
			.name = it->t->name, .dtype = it->t->dtype, .ndim = it->t->ndim,
			.shard = it->shard, .raw_bytes = bytes, .raw_crc = crc32c(0, raw, bytes),
		};
		memcpy(bt->shape, it->t->shape, sizeof(bt->shape));
		rc = rest_encode(it->t->dtype, it->t->ndim, it->t->shape, raw, bytes, nthreads,
				 blob, e);
		if (rc)
			uwerr_prefix(e, "%s: tensor '%s'", it->f->path, it->t->name);
	}
	free(raw);
	return rc;
}

static void pack_worker(void *ctx, size_t begin, size_t end)
{
	struct pack_job *j = ctx;
	pthread_mutex_lock(&j->lock);
	for (;;) {
		while (!par_failed(&j->err) && j->next_claim < j->n && j->inflight_n > 0 &&
		       j->inflight_bytes + st_tensor_bytes(j->items[j->next_claim].t) > PACK_INFLIGHT_MAX)
			pthread_cond_wait(&j->cond, &j->lock);
		if (par_failed(&j->err) || j->next_claim >= j->n)
			break;
		size_t i = j->next_claim++;
		uint64_t bytes = st_tensor_bytes(j->items[i].t);
		j->inflight_bytes += bytes;
		j->inflight_n++;
		/* Share the threads among the tensors in flight. */
		int threads = j->nthreads / (int)j->inflight_n;
		pthread_mutex_unlock(&j->lock);

		struct uwerr e = {0};
		struct bundle_tensor bt;
		struct rest_blob blob = {0};
		int rc = pack_encode(&j->items[i], threads > 0 ? threads : 1, &bt, &blob, &e);

		pthread_mutex_lock(&j->lock);
		while (!rc && !par_failed(&j->err) && j->next_write != i)
			pthread_cond_wait(&j->cond, &j->lock);
		if (!rc && !par_failed(&j->err)) {
			rc = bundle_writer_put(j->w, &bt, blob.enc, blob.data, blob.len, &e);
			j->stored += blob.len;
		}
		if (rc)
			par_fail(&j->err, &e);
		j->next_write++;
		j->inflight_bytes -= bytes;
		j->inflight_n--;
		pthread_cond_broadcast(&j->cond);
		pthread_mutex_unlock(&j->lock);
		free(blob.data);
		progress_add(j->progress, bytes);
		pthread_mutex_lock(&j->lock);
	}
	pthread_mutex_unlock(&j->lock);
}

/* The index among paths: the one path that is not a shard itself. */
static const char *index_path(const struct st_checkpoint *c, const char *const *paths,
			      size_t npaths)
{
	for (size_t i = 0; c->index_json && i < npaths; i++) {
		size_t k = 0;
		while (k < c->nfiles && strcmp(c->files[k]->path, paths[i]) != 0)
			k++;
		if (k == c->nfiles)
			return paths[i];
	}
	return NULL;
}

/* Shards and index go to one directory on unpack: their names must differ. */
static int check_names(const struct st_checkpoint *c, const char *index, struct uwerr *e)
{
	for (size_t a = 0; a < c->nfiles; a++) {
		const char *na = base_name(c->files[a]->path);
		if (index && strcmp(na, base_name(index)) == 0)
			return uwerr_set(e, EINVAL, "%s and the index %s have the same file name",
					 c->files[a]->path, index);
		for (size_t b = a + 1; b < c->nfiles; b++)
			if (strcmp(na, base_name(c->files[b]->path)) == 0)
				return uwerr_set(e, EINVAL, "%s and %s have the same file name; a bundle keeps shards by name",
						 c->files[a]->path, c->files[b]->path);
	}
	return 0;
}

int bundle_pack(const char *const *paths, size_t npaths, const char *out, int nthreads,
		int progress, struct pack_stats *stats, struct uwerr *e)
{
	struct st_checkpoint *c = NULL;
	struct pack_job j = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	uint64_t total = 0;
	int rc;
	memset(stats, 0, sizeof(*stats));
	if ((rc = st_checkpoint_open(paths, npaths, &c, e)))
		return rc;
	const char *index = index_path(c, paths, npaths);
	if ((rc = check_names(c, index, e)))
		goto out;
	for (size_t f = 0; f < c->nfiles; f++)
		j.n += c->files[f]->ntensors;
	j.items = calloc(j.n ? j.n : 1, sizeof(*j.items));
	if (!j.items) {
		rc = uwerr_set(e, ENOMEM, "out of memory for %zu tensors", j.n);
		goto out;
	}
	for (size_t f = 0, i = 0; f < c->nfiles; f++)
		for (size_t k = 0; k < c->files[f]->ntensors; k++, i++) {
			j.items[i] = (struct pack_item){ c->files[f], &c->files[f]->tensors[k], (uint32_t)f };
			total += st_tensor_bytes(&c->files[f]->tensors[k]);
		}
	if ((rc = bundle_writer_open(out, &j.w, e)))
		goto out;
	if (index && (rc = bundle_writer_index(j.w, base_name(index), c->index_json,
					       c->index_len, e)))
		goto out;
	for (size_t f = 0; f < c->nfiles; f++)
		if ((rc = bundle_writer_shard(j.w, base_name(c->files[f]->path), c->files[f]->header,
					      c->files[f]->header_len, e)))
			goto out;

	j.nthreads = par_threads(nthreads);
	size_t workers = (size_t)j.nthreads < j.n ? (size_t)j.nthreads : j.n;
	j.progress = progress ? progress_new("pack", total) : NULL;
	if (workers)
		par_for(workers, (int)workers, pack_worker, &j);
	progress_free(j.progress);
	if (par_failed(&j.err)) {
		rc = uwerr_set(e, j.err.e.code, "%s", j.err.e.msg);
		goto out;
	}
	uint64_t payload_end = bundle_writer_size(j.w);
	rc = bundle_writer_close(j.w, 1, e);
	j.w = NULL;
	if (rc)
		goto out;
	struct stat st;
	*stats = (struct pack_stats){ .ntensors = j.n, .raw_bytes = total, .stored_bytes = j.stored,
				      .file_bytes = stat(out, &st) == 0 ? (uint64_t)st.st_size : payload_end };
out:
	bundle_writer_close(j.w, 0, NULL);
	free(j.items);
	st_checkpoint_close(c);
	return rc;
}

/* ---- unpack ---- */

/* Write tensors [first, first+count) of b as one safetensors file: with
 * header verbatim when given, else generated with meta. */
static int write_tensors(const struct bundle *b, const char *path, size_t first, size_t count,
			 const char *header, size_t header_len, const struct st_meta *meta,
			 size_t nmeta, int nthreads, struct progress *p, struct uwerr *e)
{
	struct st_out_tensor *ot = calloc(count ? count : 1, sizeof(*ot));
	struct st_writer *w = NULL;
	void *buf = NULL;
	uint64_t most = 1;
	int rc;
	if (!ot)
		return uwerr_set(e, ENOMEM, "%s: out of memory for %zu tensors", path, count);
	for (size_t k = 0; k < count; k++) {
		const struct bundle_tensor *t = &b->tensors[first + k];
		ot[k] = (struct st_out_tensor){ .name = t->name, .dtype = t->dtype, .ndim = t->ndim };
		memcpy(ot[k].shape, t->shape, sizeof(ot[k].shape));
		if (t->raw_bytes > most)
			most = t->raw_bytes;
	}
	if ((rc = st_writer_open(path, ot, count, meta, nmeta, header, header_len, &w, e)))
		goto out;
	if (!(buf = malloc(most))) {
		rc = uwerr_set(e, ENOMEM, "out of memory for a tensor of %llu bytes",
			       (unsigned long long)most);
		goto out;
	}
	for (size_t k = 0; k < count; k++) {
		if ((rc = bundle_read_tensor(b, first + k, buf, nthreads, e)) ||
		    (rc = st_writer_put(w, k, buf, e)))
			goto out;
		progress_add(p, b->tensors[first + k].raw_bytes);
	}
	rc = st_writer_close(w, 1, e);
	w = NULL;
out:
	st_writer_close(w, 0, NULL);
	free(buf);
	free(ot);
	return rc;
}

/* The shard's header parsed (as the original file's, for its metadata). */
static int parse_shard(const struct bundle *b, size_t s, struct st_file **f, struct uwerr *e)
{
	const struct bundle_shard *sh = &b->shards[s];
	uint64_t size = 8 + sh->header_len;
	for (size_t k = 0; k < sh->count; k++)
		size += b->tensors[sh->first + k].raw_bytes;
	unsigned char *buf = malloc(8 + sh->header_len);
	if (!buf)
		return uwerr_set(e, ENOMEM, "shard %s: out of memory", sh->name);
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)((uint64_t)sh->header_len >> (8 * i));
	memcpy(buf + 8, sh->header, sh->header_len);
	int rc = st_parse(buf, 8 + sh->header_len, size, f, e);
	if (rc)
		uwerr_prefix(e, "shard %s: stored header", sh->name);
	free(buf);
	return rc;
}

static int unpack_merged(const struct bundle *b, const char *out, int nthreads,
			 struct progress *p, struct uwerr *e)
{
	struct st_file **files = calloc(b->nshards, sizeof(*files));
	struct st_meta *meta = NULL;
	size_t nmeta = 0, cap = 0;
	int rc = 0;
	if (!files)
		return uwerr_set(e, ENOMEM, "out of memory");
	for (size_t s = 0; s < b->nshards && !rc; s++) {
		if ((rc = parse_shard(b, s, &files[s], e)))
			break;
		for (size_t m = 0; m < files[s]->nmeta; m++) {
			size_t k = 0;
			while (k < nmeta && strcmp(meta[k].key, files[s]->meta[m].key) != 0)
				k++;
			if (k < nmeta)
				continue;
			if (nmeta == cap) {
				struct st_meta *nm = realloc(meta, (cap = cap ? 2 * cap : 8) * sizeof(*meta));
				if (!nm) {
					rc = uwerr_set(e, ENOMEM, "out of memory for metadata");
					break;
				}
				meta = nm;
			}
			meta[nmeta++] = files[s]->meta[m];
		}
	}
	if (!rc)
		rc = write_tensors(b, out, 0, b->ntensors, NULL, 0, meta, nmeta, nthreads, p, e);
	for (size_t s = 0; s < b->nshards; s++)
		st_close(files[s]);
	free(files);
	free(meta);
	return rc;
}

/* Write a small file whole, through a temporary and a rename. */
static int write_whole(const char *path, const char *data, size_t len, struct uwerr *e)
{
	char *tmp;
	if (asprintf(&tmp, "%s.tmp", path) < 0)
		return uwerr_set(e, ENOMEM, "out of memory");
	int rc = 0, fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = uwerr_set(e, errno, "create %s: %s", tmp, strerror(errno));
		goto out;
	}
	for (size_t done = 0; done < len && !rc;) {
		ssize_t n = write(fd, data + done, len - done);
		if (n < 0 && errno != EINTR)
			rc = uwerr_set(e, errno, "write %s: %s", tmp, strerror(errno));
		else if (n > 0)
			done += (size_t)n;
	}
	if (!rc && fsync(fd) < 0)
		rc = uwerr_set(e, errno, "fsync %s: %s", tmp, strerror(errno));
	if (close(fd) < 0 && !rc)
		rc = uwerr_set(e, errno, "close %s: %s", tmp, strerror(errno));
	if (!rc && rename(tmp, path) < 0)
		rc = uwerr_set(e, errno, "rename %s to %s: %s", tmp, path, strerror(errno));
	if (rc)
		unlink(tmp);
out:
	free(tmp);
	return rc;
}

static int unpack_dir(const struct bundle *b, const char *dir, int nthreads,
		      struct progress *p, struct uwerr *e)
{
	struct stat st;
	if (mkdir(dir, 0777) < 0 && !(errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode)))
		return uwerr_set(e, errno == EEXIST ? ENOTDIR : errno, "%s: cannot make a directory there: %s",
				 dir, strerror(errno == EEXIST ? ENOTDIR : errno));
	char *path = NULL;
	int rc = 0;
	for (size_t s = 0; s < b->nshards && !rc; s++) {
		const struct bundle_shard *sh = &b->shards[s];
		free(path);
		if (asprintf(&path, "%s/%s", dir, sh->name) < 0) {
			path = NULL;
			return uwerr_set(e, ENOMEM, "out of memory");
		}
		rc = write_tensors(b, path, sh->first, sh->count, sh->header, sh->header_len,
				   NULL, 0, nthreads, p, e);
	}
	if (!rc && b->index_name) {
		free(path);
		if (asprintf(&path, "%s/%s", dir, b->index_name) < 0) {
			path = NULL;
			return uwerr_set(e, ENOMEM, "out of memory");
		}
		rc = write_whole(path, b->index_json, b->index_len, e);
	}
	free(path);
	return rc;
}

int bundle_unpack(const struct bundle *b, const char *out, unsigned flags, int nthreads,
		  int progress, struct uwerr *e)
{
	uint64_t total = 0;
	for (size_t i = 0; i < b->ntensors; i++)
		total += b->tensors[i].raw_bytes;
	struct progress *p = progress ? progress_new("unpack", total) : NULL;
	int rc;
	if (flags & UNPACK_MERGE)
		rc = unpack_merged(b, out, nthreads, p, e);
	else if (bundle_unpacks_to_dir(b, flags))
		rc = unpack_dir(b, out, nthreads, p, e);
	else
		rc = write_tensors(b, out, 0, b->ntensors, b->shards[0].header,
				   b->shards[0].header_len, NULL, 0, nthreads, p, e);
	progress_free(p);
	return rc;
}
