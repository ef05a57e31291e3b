/* tunecache: the tune cache's parser, writer and lookup table (see
 * tunecache.h; docs/FORMAT.md, "Tune cache", is the format's spec). */
#include "config.h"

#include "kernels/tunecache.h"

#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/io.h"
#include "common/strbuf.h"

#define MAX_LINE 1024
#define NFIELDS 9

unsigned tune_bucket(size_t batch)
{
	if (batch == 0 || batch > TUNE_MAX_BUCKET)
		return 0;
	unsigned b = 1;
	while (b < batch)
		b <<= 1;
	return b;
}

static int alnum(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

void tune_device_token(const char *name, char out[TUNE_MAX_DEVICE])
{
	size_t i = 0;
	for (; name[i] && i < TUNE_MAX_DEVICE - 1; i++) {
		int c = (unsigned char)name[i];
		out[i] = (char)(alnum(c) || c == '.' || c == '-' ? c : '_');
	}
	out[i] = '\0';
	if (!i)
		snprintf(out, TUNE_MAX_DEVICE, "unknown");
}

int tune_key_eq(const struct tune_key *a, const struct tune_key *b)
{
	return a->cc == b->cc && a->sms == b->sms && !strcmp(a->device, b->device) &&
	       !strcmp(a->lib, b->lib);
}

const char *tune_dir(const char *dir)
{
	if (dir && *dir)
		return dir;
	const char *env = getenv("UW_TUNE_DIR");
	if (env)
		return *env ? env : NULL;
	return TUNE_DIR_DEFAULT;
}

/* ---- parsing ----------------------------------------------------------- */

struct where {
	const char *what;
	unsigned line;
	struct uwerr *e;
};

__attribute__((format(printf, 2, 3)))
static int bad(const struct where *w, const char *fmt, ...)
{
	char msg[UWERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return uwerr_set(w->e, EINVAL, "%s:%u: %s", w->what, w->line, msg);
}

/* Digits at *p as a number in [lo, hi]; *p moves past them. */
static int take_uint(const char **p, uint64_t lo, uint64_t hi, uint64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (v < lo || v > hi)
		return -EINVAL;
	*p = s;
	*out = v;
	return 0;
}

/* A whole field that is a number in [lo, hi], after prefix. */
static int field_uint(const char *f, const char *prefix, uint64_t lo, uint64_t hi, uint64_t *out)
{
	size_t n = strlen(prefix);
	if (strncmp(f, prefix, n))
		return -EINVAL;
	f += n;
	return take_uint(&f, lo, hi, out) || *f ? -EINVAL : 0;
}

/* 1 to max - 1 bytes of [A-Za-z0-9._-] and those of extra. */
static int token_ok(const char *f, size_t max, const char *extra)
{
	size_t n = strlen(f);
	if (n == 0 || n >= max)
		return 0;
	for (; *f; f++)
		if (!alnum((unsigned char)*f) && !strchr("._-", *f) && !strchr(extra, *f))
			return 0;
	return 1;
}

/* "gemm", "wg" or "fused:WMxWK/KS/PF". */
static int parse_choice(const char *f, struct tune_choice *c)
{
	uint64_t wm, wk, ks, pf;
	if (!strcmp(f, "gemm") || !strcmp(f, "wg")) {
		*c = (struct tune_choice){.pipe = f[0] == 'g' ? TUNE_PIPE_GEMM : TUNE_PIPE_WG};
		return 0;
	}
	if (strncmp(f, "fused:", 6))
		return -EINVAL;
	f += 6;
	if (take_uint(&f, 1, 32, &wm) || *f++ != 'x' || take_uint(&f, 1, 32, &wk) ||
	    *f++ != '/' || take_uint(&f, 1, 65535, &ks) || *f++ != '/' ||
	    take_uint(&f, 1, 8, &pf) || *f || wm * wk > 32)
		return -EINVAL;
	*c = (struct tune_choice){TUNE_PIPE_FUSED, (int)wm, (int)wk, (int)ks, (int)pf};
	return 0;
}

static int parse_us(const char *f, double *out)
{
	char *end;
	if (*f < '0' || *f > '9')
		return -EINVAL;
	double v = strtod(f, &end);
	if (*end || !isfinite(v) || v > 1e9)
		return -EINVAL;
	*out = v;
	return 0;
}

static const char *const field_names[NFIELDS] = {
	"device", "compute capability", "multiprocessors", "library", "shape", "bucket",
	"choice", "tuned time", "default time",
};

/* One entry line, split into its fields. */
static int parse_entry(const struct where *w, char **f, struct tune_entry *en)
{
	uint64_t v, rows, cols;
	int i = 0;
	memset(en, 0, sizeof(*en));
#define FIELD(ok, expect) \
	do { \
		if (!(ok)) \
			return bad(w, "field %d (%s) '%.40s': %s", i + 1, field_names[i], f[i], expect); \
		i++; \
	} while (0)
	FIELD(token_ok(f[0], TUNE_MAX_DEVICE, ""), "not a device token ([A-Za-z0-9._-], up to 63 bytes)");
	snprintf(en->key.device, sizeof(en->key.device), "%s", f[0]);
	FIELD(!field_uint(f[1], "sm_", 10, 999, &v), "not sm_CC (like sm_90)");
	en->key.cc = (unsigned)v;
	FIELD(!field_uint(f[2], "", 1, 100000, &v), "not a count from 1 to 100000");
	en->key.sms = (unsigned)v;
	FIELD(token_ok(f[3], TUNE_MAX_LIB, "+"), "not a library token ([A-Za-z0-9._+-], up to 31 bytes)");
	snprintf(en->key.lib, sizeof(en->key.lib), "%s", f[3]);
	const char *s = f[4];
	FIELD(!take_uint(&s, 1, INT32_MAX, &rows) && *s++ == 'x' &&
	      !take_uint(&s, 1, INT32_MAX, &cols) && !*s, "not ROWSxCOLS (each 1 to 2^31 - 1)");
	en->rows = (uint32_t)rows;
	en->cols = (uint32_t)cols;
	FIELD(!field_uint(f[5], "b", 1, TUNE_MAX_BUCKET, &v) && tune_bucket(v) == v,
	      "not bN with N a power of two from 1 to 1024");
	en->bucket = (unsigned)v;
	FIELD(!parse_choice(f[6], &en->c),
	      "not gemm, wg or fused:WMxWK/KS/PF (WM * WK <= 32, KS 1 to 65535, PF 1 to 8)");
	FIELD(!parse_us(f[7], &en->us), "not a time in microseconds");
	FIELD(!parse_us(f[8], &en->default_us), "not a time in microseconds");
#undef FIELD
	return 0;
}

/* Split line (modified) at spaces and tabs into at most max fields. */
static int split(char *line, char **f, int max)
{
	int n = 0;
	char *save = NULL;
	for (char *t = strtok_r(line, " \t\r", &save); t; t = strtok_r(NULL, " \t\r", &save)) {
		if (n == max)
			return max + 1;
		f[n++] = t;
	}
	return n;
}

int tune_parse(const char *text, size_t len, const char *what, struct tune_set *s,
	       unsigned *version, struct uwerr *e)
{
	struct where w = {.what = what, .line = 0, .e = e};
	struct tune_set got = {0};
	char line[MAX_LINE + 1];
	unsigned ver = 0;
	int rc = 0;
	if (version)
		*version = 0;
	if (memchr(text, '\0', len))
		return uwerr_set(e, EINVAL, "%s: a NUL byte: not a text file", what);
	for (size_t pos = 0; pos < len && !rc; ) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
		w.line++;
		if (n > MAX_LINE) {
			rc = bad(&w, "line longer than %d bytes", MAX_LINE);
			break;
		}
		memcpy(line, text + pos, n);
		line[n] = '\0';
		pos += n + 1;
		char *f[NFIELDS + 1];
		int nf = line[strspn(line, " \t\r")] == '#' ? 0 : split(line, f, NFIELDS);
		if (nf == 0)
			continue;
		if (!ver) {
			uint64_t v;
			if (nf != 2 || strcmp(f[0], "unweight-tune") ||
			    field_uint(f[1], "", 1, UINT32_MAX, &v)) {
				rc = bad(&w, "not a tune cache: the first line must be 'unweight-tune %d'",
					 TUNE_FORMAT_VERSION);
				break;
			}
			ver = (unsigned)v;
			if (version)
				*version = ver;
			if (ver != TUNE_FORMAT_VERSION)
				break;        /* another format: ignored whole */
			continue;
		}
		if (nf != NFIELDS) {
			rc = bad(&w, "%s%d fields, want %d: DEVICE CC SMS LIB ROWSxCOLS BUCKET "
				 "CHOICE TUNED_US DEFAULT_US", nf > NFIELDS ? "more than " : "",
				 nf > NFIELDS ? NFIELDS : nf, NFIELDS);
			break;
		}
		struct tune_entry en;
		if (!(rc = parse_entry(&w, f, &en)))
			rc = tune_set_put(&got, &en, e);
	}
	if (!rc && !ver && len)
		rc = uwerr_set(e, EINVAL, "%s: no 'unweight-tune' line: not a tune cache", what);
	for (size_t i = 0; !rc && ver == TUNE_FORMAT_VERSION && i < got.n; i++)
		rc = tune_set_put(s, &got.e[i], e);
	tune_set_free(&got);
	return rc;
}

/* ---- sets -------------------------------------------------------------- */

static struct tune_entry *set_find(const struct tune_set *s, const struct tune_key *k,
				   uint32_t rows, uint32_t cols, unsigned bucket)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->e[i].rows == rows && s->e[i].cols == cols && s->e[i].bucket == bucket &&
		    tune_key_eq(&s->e[i].key, k))
			return &s->e[i];
	return NULL;
}

const struct tune_entry *tune_set_find(const struct tune_set *s, const struct tune_key *k,
				       uint32_t rows, uint32_t cols, unsigned bucket)
{
	return set_find(s, k, rows, cols, bucket);
}

int tune_set_put(struct tune_set *s, const struct tune_entry *en, struct uwerr *e)
{
	struct tune_entry *old = set_find(s, &en->key, en->rows, en->cols, en->bucket);
	if (old) {
		*old = *en;
		return 0;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 32;
		struct tune_entry *p = realloc(s->e, cap * sizeof(*p));
		if (!p)
			return uwerr_set(e, ENOMEM, "tune cache: out of memory");
		s->e = p;
		s->cap = cap;
	}
	s->e[s->n++] = *en;
	return 0;
}

void tune_set_free(struct tune_set *s)
{
	free(s->e);
	*s = (struct tune_set){0};
}

void tune_choice_name(const struct tune_choice *c, char *buf, size_t n)
{
	if (c->pipe == TUNE_PIPE_FUSED)
		snprintf(buf, n, "fused:%dx%d/%d/%d", c->wm, c->wk, c->ks, c->pf);
	else
		snprintf(buf, n, "%s", c->pipe == TUNE_PIPE_WG ? "wg" : "gemm");
}

char *tune_format(const struct tune_set *s)
{
	struct strbuf b = {0};
	sb_printf(&b, "unweight-tune %d\n"
		  "# unweightd's matmul tuner (unweightd(8), TUNING): one line per device, shape and batch bucket\n"
		  "# DEVICE CC SMS LIB ROWSxCOLS BUCKET CHOICE TUNED_US DEFAULT_US\n",
		  TUNE_FORMAT_VERSION);
	for (size_t i = 0; i < s->n; i++) {
		const struct tune_entry *en = &s->e[i];
		char choice[64];
		tune_choice_name(&en->c, choice, sizeof(choice));
		sb_printf(&b, "%s sm_%u %u %s %ux%u b%u %s %.2f %.2f\n", en->key.device, en->key.cc,
			  en->key.sms, en->key.lib, en->rows, en->cols, en->bucket, choice, en->us,
			  en->default_us);
	}
	return sb_take(&b);
}

/* ---- files ------------------------------------------------------------- */

int tune_read(const char *dir, struct tune_set *s, unsigned *version, struct uwerr *e)
{
	char path[4096];
	struct stat st;
	int rc = 0;
	if (version)
		*version = 0;
	if (snprintf(path, sizeof(path), "%s/%s", dir, TUNE_FILE_NAME) >= (int)sizeof(path))
		return uwerr_set(e, ENAMETOOLONG, "tune cache: directory name too long");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : uwerr_set(e, errno, "%s: %s", path, strerror(errno));
	char *text = NULL;
	if (fstat(fd, &st) < 0) {
		rc = uwerr_set(e, errno, "%s: %s", path, strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		rc = uwerr_set(e, EINVAL, "%s: not a regular file", path);
	} else if (st.st_size > TUNE_MAX_FILE) {
		rc = uwerr_set(e, EFBIG, "%s: %lld bytes, more than a tune cache may hold (%u)", path,
			       (long long)st.st_size, TUNE_MAX_FILE);
	} else if (!(text = malloc((size_t)st.st_size + 1))) {
		rc = uwerr_set(e, ENOMEM, "%s: out of memory", path);
	} else if ((rc = io_pread_full(fd, text, (size_t)st.st_size, 0, NULL)) < 0) {
		rc = uwerr_set(e, -rc, "%s: read: %s", path, strerror(-rc));
	} else {
		rc = tune_parse(text, (size_t)st.st_size, path, s, version, e);
	}
	free(text);
	close(fd);
	return rc;
}

/* Write text to DIR/matmul.tune through a temporary file and a rename. */
static int write_atomic(int dfd, const char *dir, const char *text, struct uwerr *e)
{
	char tmp[4096], path[4096];
	if (snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, TUNE_FILE_NAME) >= (int)sizeof(tmp))
		return uwerr_set(e, ENAMETOOLONG, "tune cache: directory name too long");
	snprintf(path, sizeof(path), "%s/%s", dir, TUNE_FILE_NAME);
	int fd = mkostemp(tmp, O_CLOEXEC), rc = 0;
	if (fd < 0)
		return uwerr_set(e, errno, "%s: creating a temporary file: %s", dir, strerror(errno));
	if ((rc = io_pwrite_full(fd, text, strlen(text), 0, NULL)) < 0)
		rc = uwerr_set(e, -rc, "%s: write: %s", tmp, strerror(-rc));
	else if (fchmod(fd, 0644) < 0 || fsync(fd) < 0)
		rc = uwerr_set(e, errno, "%s: %s", tmp, strerror(errno));
	if (close(fd) < 0 && !rc)
		rc = uwerr_set(e, errno, "%s: close: %s", tmp, strerror(errno));
	if (!rc && rename(tmp, path) < 0)
		rc = uwerr_set(e, errno, "%s: rename to %s: %s", tmp, path, strerror(errno));
	if (rc) {
		unlink(tmp);
		return rc;
	}
	if (fsync(dfd) < 0)
		return uwerr_set(e, errno, "%s: fsync: %s", dir, strerror(errno));
	return 0;
}

int tune_merge_write(const char *dir, const struct tune_set *add, struct uwerr *note,
		     struct uwerr *e)
{
	struct tune_set cur = {0};
	struct uwerr rd = {0};
	unsigned ver = 0;
	int rc = 0;
	if (note)
		uwerr_clear(note);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return uwerr_set(e, errno, "tune cache %s: %s", dir, strerror(errno));
	/* Two daemons sharing the directory merge in turn, losing nothing. */
	if (flock(dfd, LOCK_EX) < 0) {
		rc = uwerr_set(e, errno, "tune cache %s: lock: %s", dir, strerror(errno));
		goto out;
	}
	if (tune_read(dir, &cur, &ver, &rd) < 0) {
		tune_set_free(&cur);
		if (note)
			uwerr_set(note, rd.code, "%s; replaced", rd.msg);
	} else if (ver && ver != TUNE_FORMAT_VERSION && note) {
		uwerr_set(note, ENOTSUP, "%s/%s: format version %u (this is %d); replaced", dir,
			  TUNE_FILE_NAME, ver, TUNE_FORMAT_VERSION);
	}
	for (size_t i = 0; i < add->n && !rc; i++)
		rc = tune_set_put(&cur, &add->e[i], e);
	char *text = rc ? NULL : tune_format(&cur);
	if (!rc && !text)
		rc = uwerr_set(e, ENOMEM, "tune cache: out of memory");
	if (!rc)
		rc = write_atomic(dfd, dir, text, e);
	free(text);
out:
	tune_set_free(&cur);
	close(dfd);
	return rc;
}

/* ---- lookup ------------------------------------------------------------ */

struct tslot {
	uint32_t rows, cols;
	unsigned bucket;           /* 0: empty */
	struct tune_choice c;
};

struct tune_table {
	size_t n, mask;
	struct tslot *slot;
};

static size_t slot_of(const struct tune_table *t, uint32_t rows, uint32_t cols, unsigned bucket)
{
	uint64_t h = ((uint64_t)rows << 32 | cols) * 0x9e3779b97f4a7c15ull;
	h ^= (uint64_t)bucket * 0xc2b2ae3d27d4eb4full;
	return (size_t)(h ^ h >> 29) & t->mask;
}

int tune_table_build(const struct tune_set *s, const struct tune_key *k,
		     int (*keep)(const struct tune_entry *en), struct tune_table **out,
		     struct uwerr *e)
{
	struct tune_table *t = calloc(1, sizeof(*t));
	size_t cap = 16;
	while (cap < 2 * s->n)
		cap *= 2;
	if (!t || !(t->slot = calloc(cap, sizeof(*t->slot)))) {
		free(t);
		return uwerr_set(e, ENOMEM, "tune table: out of memory");
	}
	t->mask = cap - 1;
	for (size_t i = 0; i < s->n; i++) {
		const struct tune_entry *en = &s->e[i];
		if (!tune_key_eq(&en->key, k) || (keep && !keep(en)))
			continue;
		size_t j = slot_of(t, en->rows, en->cols, en->bucket);
		while (t->slot[j].bucket && !(t->slot[j].rows == en->rows &&
					       t->slot[j].cols == en->cols &&
					       t->slot[j].bucket == en->bucket))
			j = (j + 1) & t->mask;
		t->n += !t->slot[j].bucket;
		t->slot[j] = (struct tslot){en->rows, en->cols, en->bucket, en->c};
	}
	*out = t;
	return 0;
}

const struct tune_choice *tune_table_find(const struct tune_table *t, uint64_t rows,
					  uint64_t cols, size_t batch)
{
	unsigned bucket = tune_bucket(batch);
	if (!t || !t->n || !bucket || rows > UINT32_MAX || cols > UINT32_MAX)
		return NULL;
	for (size_t j = slot_of(t, (uint32_t)rows, (uint32_t)cols, bucket);; j = (j + 1) & t->mask) {
		const struct tslot *sl = &t->slot[j];
		if (!sl->bucket)
			return NULL;
		if (sl->rows == rows && sl->cols == cols && sl->bucket == bucket)
			return &sl->c;
	}
}

size_t tune_table_size(const struct tune_table *t)
{
	return t ? t->n : 0;
}

void tune_table_free(struct tune_table *t)
{
	if (!t)
		return;
	free(t->slot);
	free(t);
}
