/* check_integration: a real unweightd from the build tree on a temporary
 * socket, driven through libunweight-client and unweightctl: load, list,
 * stats, 8 concurrent client processes, evict refused and forced, kill -9 of
 * a client, kill -9 of the daemon under working clients, load --device,
 * --prefer size, SIGTERM, and no fd left behind. $UW_TEST_BACKEND picks the
 * daemon's backend (host when unset; tests/check_gpu_integration.sh runs it
 * again with cuda, where two more tests check the GPU's memory and the
 * read-only mapping). */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_CUDA
#include "common/cudrv.h"
#endif
#include "common/json.h"
#include "format/safetensors.h"
#include "kernels/resident.h"
#include "kernels/tunecache.h"
#include "tests/clientutil.h"
#include "tests/testutil.h"
#include "unweight.h"

#define MODEL "stories"
#define FIXTURE "stories260K.safetensors"
#define NCLIENTS 8
#define WAIT_MS 20000

struct daemon {
	pid_t pid;
	char *dir, *sock, *model_path;
	char *tune_dir;           /* its tune cache: DIR/tune */
};

/* The daemon's tune setting (unweightd.conf(5)), for the next start. */
static const char *tune_mode = "off";
/* Its prefer setting for the next start (enum res_prefer; speed, the
 * default, is left unsaid), and what verify_model expects the layouts of. */
static int prefer = RES_PREFER_SPEED;

/* The fixture's tensors as stored in the safetensors file. */
struct source {
	struct st_file *f;
	uint8_t **raw;        /* [f->ntensors] */
};

static const char *backend(void)
{
	const char *b = getenv("UW_TEST_BACKEND");
	return b && *b ? b : "host";
}

/* Open fds are counted where the daemon's backend is host; once CUDA is
 * initialised the driver keeps its own device fds open for good, and a
 * process that initialised CUDA cannot fork workers, so under cuda the
 * library's fd hygiene is left to the host run of this same suite. */
static void assert_fds(int before)
{
	if (strcmp(backend(), "host") == 0)
		ck_assert_int_eq(tu_count_fds(), before);
}

static void sleep_ms(long ms)
{
	nanosleep(&(struct timespec){ ms / 1000, ms % 1000 * 1000000L }, NULL);
}

static char *build_path(const char *rel)
{
	char *p;
	ck_assert_int_ge(asprintf(&p, "%s/%s", tu_builddir(), rel), 0);
	return p;
}

/* Start unweightd on a fresh directory holding a copy of the fixture, and
 * wait until it answers. It dies with the test process if the test fails. */
static void daemon_start(struct daemon *d)
{
	size_t len;
	char *src;
	d->dir = tu_tmpdir();
	ck_assert_ptr_nonnull(d->dir);
	ck_assert_int_ge(asprintf(&d->sock, "%s/uwd.sock", d->dir), 0);
	ck_assert_int_ge(asprintf(&d->model_path, "%s/" FIXTURE, d->dir), 0);
	ck_assert_int_ge(asprintf(&d->tune_dir, "%s/tune", d->dir), 0);
	ck_assert_int_eq(mkdir(d->tune_dir, 0755), 0);
	ck_assert_int_ge(asprintf(&src, "%s/data/" FIXTURE, tu_srcdir()), 0);
	void *bytes = tu_read_file(src, &len);
	ck_assert_msg(bytes, "cannot read %s", src);
	ck_assert_int_eq(tu_write_file(d->model_path, bytes, len), 0);
	free(bytes);
	free(src);

	char *bin = build_path("unweightd");
	ck_assert_msg(access(bin, X_OK) == 0, "%s: not built", bin);
	d->pid = fork();
	ck_assert_int_ge(d->pid, 0);
	if (d->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		const char *argv[] = {"unweightd", "--socket", d->sock, "--backend", backend(),
				      "--allow-dir", d->dir, "--tune", tune_mode, "--tune-dir",
				      d->tune_dir, "--foreground",
				      prefer == RES_PREFER_SIZE ? "--prefer=size" : NULL, NULL};
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	free(bin);
	for (int ms = 0;; ms += 10) {
		uw_client *c;
		int st;
		if (uw_connect(d->sock, &c) == 0) {
			uw_disconnect(c);
			return;
		}
		ck_assert_msg(waitpid(d->pid, &st, WNOHANG) == 0,
			      "unweightd exited at start (status 0x%x)", st);
		ck_assert_msg(ms < WAIT_MS, "unweightd did not answer at %s: %s", d->sock,
			      uw_errmsg());
		sleep_ms(10);
	}
}

/* SIGTERM must shut the daemon down cleanly: exit status 0. */
static void daemon_stop(struct daemon *d)
{
	int st;
	ck_assert_int_eq(kill(d->pid, SIGTERM), 0);
	ck_assert_int_eq(waitpid(d->pid, &st, 0), d->pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "unweightd after SIGTERM: status 0x%x", st);
	tu_rmtree(d->dir);
	free(d->dir);
	free(d->sock);
	free(d->model_path);
	free(d->tune_dir);
}

static void source_load(struct source *s, const char *path)
{
	struct uwerr e = {0};
	ck_assert_msg(st_open(path, &s->f, &e) == 0, "%s", e.msg);
	s->raw = calloc(s->f->ntensors, sizeof(*s->raw));
	ck_assert_ptr_nonnull(s->raw);
	for (size_t i = 0; i < s->f->ntensors; i++) {
		s->raw[i] = malloc(st_tensor_bytes(&s->f->tensors[i]));
		ck_assert_ptr_nonnull(s->raw[i]);
		ck_assert_msg(st_read_tensor(s->f, &s->f->tensors[i], s->raw[i], &e) == 0,
			      "%s", e.msg);
	}
}

static void source_free(struct source *s)
{
	for (size_t i = 0; i < s->f->ntensors; i++)
		free(s->raw[i]);
	free(s->raw);
	st_close(s->f);
}

/* ---- the stats document ------------------------------------------------ */

struct stats {
	char *text;
	struct json_value *doc;
};

static void stats_get(uw_client *c, const char *name, struct stats *s)
{
	struct uwerr e = {0};
	ck_assert_msg(uw_stats_json(c, name, &s->text) == 0, "stats: %s", uw_errmsg());
	ck_assert_msg(json_parse(s->text, strlen(s->text), &s->doc, &e) == 0,
		      "stats reply: %s", e.msg);
	ck_assert_int_eq(s->doc->type, JSON_OBJ);
}

static void stats_free(struct stats *s)
{
	json_free(s->doc);
	free(s->text);
}

static const struct json_value *stats_model(const struct stats *s, const char *name)
{
	const struct json_value *m = json_get(s->doc, "models");
	ck_assert_msg(m && m->type == JSON_ARR, "stats: no models array: %s", s->text);
	for (size_t i = 0; i < m->u.arr.n; i++) {
		const struct json_value *n = json_get(&m->u.arr.v[i], "name");
		if (n && n->type == JSON_STR && !strcmp(n->u.str.s, name))
			return &m->u.arr.v[i];
	}
	return NULL;
}

static uint64_t key_u64(const struct json_value *o, const char *key)
{
	uint64_t v;
	const struct json_value *j = json_get(o, key);
	ck_assert_msg(j && json_u64(j, &v) == 0, "stats: %s is not a count", key);
	return v;
}

static const char *key_str(const struct json_value *o, const char *key)
{
	const struct json_value *j = json_get(o, key);
	ck_assert_msg(j && j->type == JSON_STR, "stats: %s is not a string", key);
	return j->u.str.s;
}

/* Bytes used on the (single) host device. */
static uint64_t device_used(uw_client *c)
{
	struct stats s;
	stats_get(c, NULL, &s);
	const struct json_value *d = json_get(s.doc, "devices");
	ck_assert_msg(d && d->type == JSON_ARR && d->u.arr.n == 1, "devices: %s", s.text);
	uint64_t used = key_u64(&d->u.arr.v[0], "used");
	stats_free(&s);
	return used;
}

/* The model's attached_clients; -1 when it is not in stats. */
static long attached(uw_client *c, const char *name)
{
	struct stats s;
	stats_get(c, NULL, &s);
	const struct json_value *m = stats_model(&s, name);
	long n = m ? (long)key_u64(m, "attached_clients") : -1;
	stats_free(&s);
	return n;
}

static void wait_attached(uw_client *c, const char *name, long want)
{
	long n = -2;
	for (int ms = 0; ms < WAIT_MS && (n = attached(c, name)) != want; ms += 20)
		sleep_ms(20);
	ck_assert_msg(n == want, "%s: attached_clients %ld, expected %ld", name, n, want);
}

static void wait_ready(uw_client *c, const char *name)
{
	for (int ms = 0;; ms += 20) {
		struct stats s;
		stats_get(c, name, &s);
		const struct json_value *m = stats_model(&s, name);
		ck_assert_msg(m, "load %s: not in stats: %s", name, s.text);
		const char *state = key_str(m, "state");
		ck_assert_msg(strcmp(state, "failed"), "load %s failed: %s", name, s.text);
		int ready = !strcmp(state, "ready");
		stats_free(&s);
		if (ready)
			return;
		ck_assert_msg(ms < WAIT_MS, "load %s: not ready after %d ms", name, WAIT_MS);
		sleep_ms(20);
	}
}

static void load_and_wait(uw_client *c, const struct daemon *d, const char *name)
{
	const char *paths[] = { d->model_path };
	ck_assert_msg(uw_load(c, name, paths, 1) == 0, "load: %s", uw_errmsg());
	wait_ready(c, name);
}

/* Run unweightctl with args; its exit status, and its output in out. */
static int run_ctl(const struct daemon *d, const char *args, char **out)
{
	char *bin = build_path("ctl/unweightctl"), *cmd, *text = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&text, &len);
	char buf[4096];
	size_t n;
	ck_assert_int_ge(asprintf(&cmd, "'%s' --socket '%s' %s 2>&1", bin, d->sock, args), 0);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
		fwrite(buf, 1, n, mem);
	int st = pclose(p);
	fclose(mem);
	free(cmd);
	free(bin);
	*out = text;
	ck_assert_msg(WIFEXITED(st), "unweightctl %s: status 0x%x", args, st);
	return WEXITSTATUS(st);
}

/* unweightctl's --json output parses, is of type want, and (given name)
 * holds the model with that state: the object itself, or in the array. */
static void ctl_json_check(const char *out, const char *what, enum json_type want,
			   const char *name, const char *state)
{
	struct json_value *v;
	struct uwerr e = {0};
	ck_assert_msg(json_parse(out, strlen(out), &v, &e) == 0, "%s: %s: %s", what, e.msg, out);
	ck_assert_msg(v->type == want, "%s: wrong JSON type: %s", what, out);
	const struct json_value *m = v;
	if (want == JSON_ARR) {
		m = NULL;
		for (size_t i = 0; i < v->u.arr.n; i++)
			if (!strcmp(key_str(&v->u.arr.v[i], "name"), name))
				m = &v->u.arr.v[i];
	}
	if (name) {
		ck_assert_msg(m, "%s: no %s in %s", what, name, out);
		ck_assert_str_eq(key_str(m, "name"), name);
		ck_assert_str_eq(key_str(m, "state"), state);
	} else {
		const struct json_value *r = json_get(m, "running");
		ck_assert_msg(r && r->type == JSON_BOOL && r->u.b, "%s: %s", what, out);
	}
	json_free(v);
}

/* ---- a client process -------------------------------------------------- */

/* The daemon's layout of a tensor (encoded on the GPU with the cuda
 * backend) is the CPU encoder's for prefer, checksum of the bytes included. */
static int same_layout(const uw_tensor *t, const struct st_tensor *st, const void *raw)
{
	struct uw_tensor_info info;
	struct uw_layout l;
	struct uwerr e = {0};
	size_t n = st_tensor_bytes(st);
	void *enc = NULL;
	int ok = uw_tensor_info(t, &info) == 0 &&
		 res_plan((int)st->dtype, (int)st->ndim, st->shape, raw, n, prefer, &l, &e) == 0 &&
		 (enc = malloc(l.nbytes ? l.nbytes : 1)) &&
		 res_encode(&l, raw, n, enc, &e) == 0;
	free(enc);
	const struct uw_layout *a = &info.layout;
	if (ok && a->format == l.format && a->dtype == l.dtype && a->rows == l.rows &&
	    a->cols == l.cols && a->nbytes == l.nbytes && a->crc32c == l.crc32c &&
	    !memcmp(a->palette, l.palette, sizeof(l.palette)) && a->mant_off == l.mant_off &&
	    a->mant_stride == l.mant_stride && a->nib_off == l.nib_off &&
	    a->nib_stride == l.nib_stride && a->patch_grp_off == l.patch_grp_off &&
	    a->patch_off == l.patch_off && a->npatch == l.npatch)
		return 0;
	fprintf(stderr, "tensor %s: layout (%llu bytes, crc %08x) is not the CPU encoder's "
		"(%llu bytes, crc %08x)%s%s\n", st->name, (unsigned long long)info.layout.nbytes,
		info.layout.crc32c, (unsigned long long)l.nbytes, l.crc32c, e.msg[0] ? ": " : "",
		e.msg);
	return -1;
}

/* Every tensor has the CPU encoder's layout, decodes to its source bytes,
 * and every 2-D BF16 one multiplies as the float64 reference does.
 * Returns the failures. */
static int verify_model(const uw_model *m, const struct source *src, uint64_t seed,
			uint32_t *crc)
{
	int bad = 0;
	uint64_t rng = seed;
	if (uw_model_tensor_count(m) != src->f->ntensors) {
		fprintf(stderr, "model has %zu tensors, the source %zu\n",
			uw_model_tensor_count(m), src->f->ntensors);
		return 1;
	}
	for (size_t i = 0; i < src->f->ntensors; i++) {
		const struct st_tensor *st = &src->f->tensors[i];
		const uw_tensor *t = uw_model_find(m, st->name);
		if (!t) {
			fprintf(stderr, "tensor %s: missing from the model\n", st->name);
			bad++;
			continue;
		}
		bad += same_layout(t, st, src->raw[i]) < 0;
		bad += cu_check_decode(t, src->raw[i], st_tensor_bytes(st)) < 0;
		if (st->dtype == UW_DTYPE_BF16 && st->ndim == 2) {
			bad += cu_check_matmul(t, (const uint16_t *)src->raw[i], 1, 0, &rng, crc) < 0;
			bad += cu_check_matmul(t, (const uint16_t *)src->raw[i], 5, 0, &rng, crc) < 0;
			bad += cu_check_matmul(t, (const uint16_t *)src->raw[i], 3, 1, &rng, crc) < 0;
		}
	}
	/* uw_matmul2 on pairs of matrices that could share x (the same cols) */
	for (size_t i = 0, pairs = 0; i < src->f->ntensors && pairs < 4; i++) {
		const struct st_tensor *a = &src->f->tensors[i];
		for (size_t j = i + 1; a->dtype == UW_DTYPE_BF16 && a->ndim == 2 &&
				       j < src->f->ntensors; j++) {
			const struct st_tensor *b = &src->f->tensors[j];
			if (b->dtype != UW_DTYPE_BF16 || b->ndim != 2 || b->shape[1] != a->shape[1])
				continue;
			const uw_tensor *ta = uw_model_find(m, a->name), *tb = uw_model_find(m, b->name);
			for (size_t batch = 1; batch <= 9 && ta && tb; batch += 8)
				bad += cu_check_matmul2(ta, (const uint16_t *)src->raw[i], tb,
							(const uint16_t *)src->raw[j], batch, &rng) < 0;
			pairs++;
			break;
		}
	}
	return bad;
}

/* Attach, say so on ready, wait for go to close, verify, detach. */
static void client_main(const struct daemon *d, const struct source *src, uint64_t seed,
			int ready, int go)
{
	uw_client *c;
	uw_model *m;
	char b;
	if (uw_connect(d->sock, &c) < 0 || uw_attach(c, MODEL, &m) < 0) {
		fprintf(stderr, "client %d: %s\n", (int)getpid(), uw_errmsg());
		_exit(2);
	}
	if (write(ready, "a", 1) != 1 || read(go, &b, 1) != 0)
		_exit(3);
	int bad = verify_model(m, src, seed, NULL);
	if (uw_detach(m) < 0) {
		fprintf(stderr, "client %d: detach: %s\n", (int)getpid(), uw_errmsg());
		bad++;
	}
	uw_disconnect(c);
	_exit(bad ? 1 : 0);
}

/* ---- tests ------------------------------------------------------------- */

START_TEST(test_load_list_stats_clients)
{
	struct daemon d;
	struct source src;
	struct stats s;
	uw_client *c;
	uw_model *m = (uw_model *)1;
	char *out;
	uint64_t seed = tu_seed();
	daemon_start(&d);
	source_load(&src, d.model_path);
	int fds = tu_count_fds();
	ck_assert_int_eq(uw_connect(d.sock, &c), 0);
	uint64_t used0 = device_used(c);
	load_and_wait(c, &d, MODEL);

	/* A second load of the name is refused, and the first is untouched. */
	const char *paths[] = { d.model_path };
	ck_assert_int_eq(uw_load(c, MODEL, paths, 1), -EEXIST);
	ck_assert_msg(strstr(uw_errmsg(), MODEL), "errmsg: %s", uw_errmsg());
	ck_assert_int_eq(uw_attach(c, "no-such-model", &m), -ENOENT);
	ck_assert_ptr_null(m);
	ck_assert_msg(strstr(uw_errmsg(), "no-such-model"), "errmsg: %s", uw_errmsg());

	uint64_t raw = 0;
	for (size_t i = 0; i < src.f->ntensors; i++)
		raw += st_tensor_bytes(&src.f->tensors[i]);
	stats_get(c, MODEL, &s);
	const struct json_value *sm = stats_model(&s, MODEL);
	ck_assert_ptr_nonnull(sm);
	ck_assert_str_eq(key_str(sm, "state"), "ready");
	ck_assert_uint_eq(key_u64(sm, "tensors"), src.f->ntensors);
	ck_assert_uint_eq(key_u64(sm, "raw_bytes"), raw);
	ck_assert_uint_gt(key_u64(sm, "resident_bytes"), 0);
	ck_assert_uint_eq(key_u64(sm, "attached_clients"), 0);
	stats_free(&s);
	ck_assert_uint_gt(device_used(c), used0);

	/* unweightctl reads the same daemon. */
	ck_assert_int_eq(run_ctl(&d, "list", &out), 0);
	ck_assert_msg(strstr(out, MODEL) && strstr(out, "ready"), "list: %s", out);
	free(out);
	ck_assert_int_eq(run_ctl(&d, "list --json", &out), 0);
	ctl_json_check(out, "list --json", JSON_ARR, MODEL, "ready");
	free(out);
	ck_assert_int_eq(run_ctl(&d, "status --json", &out), 0);
	ctl_json_check(out, "status --json", JSON_OBJ, NULL, NULL);
	free(out);

	/* Through unweightctl: a second copy under another name, waited for. */
	char *args;
	ck_assert_int_ge(asprintf(&args, "load copy '%s' --wait --json", d.model_path), 0);
	ck_assert_int_eq(run_ctl(&d, args, &out), 0);
	ctl_json_check(out, "load --wait --json", JSON_OBJ, "copy", "ready");
	free(out);
	free(args);
	ck_assert_int_eq(run_ctl(&d, "evict copy", &out), 0);
	free(out);
	ck_assert_int_eq(run_ctl(&d, "stats " MODEL, &out), 0);
	ck_assert_msg(strstr(out, "model " MODEL) && strstr(out, "attached clients"), "stats: %s", out);
	free(out);
	ck_assert_int_eq(run_ctl(&d, "status", &out), 0);
	ck_assert_msg(strstr(out, "is running") && strstr(out, "backend") &&
		      strstr(out, backend()), "status: %s", out);
	free(out);

	/* 8 client processes attached at once, each checking every tensor. */
	int ready[2], go[2];
	pid_t pid[NCLIENTS];
	ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
	for (int i = 0; i < NCLIENTS; i++) {
		pid[i] = fork();
		ck_assert_int_ge(pid[i], 0);
		if (pid[i] == 0) {
			close(ready[0]);
			close(go[1]);
			client_main(&d, &src, seed + (uint64_t)i, ready[1], go[0]);
		}
	}
	close(ready[1]);
	close(go[0]);
	for (int i = 0; i < NCLIENTS; i++) {
		char b;
		ck_assert_msg(read(ready[0], &b, 1) == 1, "a client failed to attach");
	}
	ck_assert_int_eq(attached(c, MODEL), NCLIENTS);
	close(go[1]);
	for (int i = 0; i < NCLIENTS; i++) {
		int st;
		ck_assert_int_eq(waitpid(pid[i], &st, 0), pid[i]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client %d: status 0x%x", i, st);
	}
	close(ready[0]);
	wait_attached(c, MODEL, 0);
	stats_get(c, MODEL, &s);
	ck_assert_uint_ge(key_u64(stats_model(&s, MODEL), "attach_count"), NCLIENTS);
	stats_free(&s);

	/* The test process too: the same checks through the same library. */
	ck_assert_int_eq(uw_attach(c, MODEL, &m), 0);
	ck_assert_int_eq(verify_model(m, &src, seed, NULL), 0);
	ck_assert_int_eq(uw_detach(m), 0);

	ck_assert_int_eq(uw_evict(c, MODEL, 0), 0);
	stats_get(c, NULL, &s);
	ck_assert_ptr_null(stats_model(&s, MODEL));
	stats_free(&s);
	ck_assert_uint_eq(device_used(c), used0);
	uw_disconnect(c);
	assert_fds(fds);
	source_free(&src);

	char *sock = strdup(d.sock);
	daemon_stop(&d);
	/* Down: the library and unweightctl both say so. */
	ck_assert_int_lt(uw_connect(sock, &c), 0);
	free(sock);
}
END_TEST

/* The tuner's view in stats. */
static uint64_t tune_u64(uw_client *c, const char *key)
{
	struct stats s;
	stats_get(c, NULL, &s);
	const struct json_value *t = json_get(s.doc, "tune");
	ck_assert_msg(t && t->type == JSON_OBJ, "stats: no tune object: %s", s.text);
	uint64_t v = key_u64(t, key);
	stats_free(&s);
	return v;
}

/* Entries of the cache in dir per shape, for the key of its first entry. */
static size_t cached_buckets(const char *dir, uint64_t rows, uint64_t cols)
{
	struct tune_set set = {0};
	struct uwerr e = {0};
	ck_assert_msg(tune_read(dir, &set, NULL, &e) == 0, "%s", e.msg);
	size_t n = 0;
	for (unsigned b = 1; set.n && b <= TUNE_MAX_BUCKET; b *= 2)
		n += tune_set_find(&set, &set.e[0].key, (uint32_t)rows, (uint32_t)cols, b) != NULL;
	tune_set_free(&set);
	return n;
}

/* tune = on-load: once the model is loaded, the cuda backend's tuner has
 * written an entry for each of its R12 matrix shapes at every batch bucket
 * (b1 to b1024); `unweightctl tune` then finds them all cached (0
 * written), --force times them again; workers attached after it compute
 * within the float64 bound with the choices. The host backend says plainly
 * there is nothing to tune. */
START_TEST(test_tune)
{
	struct daemon d;
	struct source src;
	uw_client *c;
	uw_model *m;
	char *out;
	uint64_t job = 0;
	tune_mode = "on-load";
	daemon_start(&d);
	tune_mode = "off";
	source_load(&src, d.model_path);
	ck_assert_int_eq(uw_connect(d.sock, &c), 0);
	load_and_wait(c, &d, MODEL);
	if (strcmp(backend(), "cuda")) {
		ck_assert_int_eq(uw_tune(c, MODEL, 0, &job), -EOPNOTSUPP);
		ck_assert_msg(strstr(uw_errmsg(), "nothing to tune"), "errmsg: %s", uw_errmsg());
		ck_assert_int_eq(run_ctl(&d, "tune", &out), 1);
		ck_assert_msg(strstr(out, "nothing to tune"), "tune: %s", out);
		free(out);
		goto done;
	}
	/* the load queued job 1 */
	for (int ms = 0; tune_u64(c, "done") < 1; ms += 100) {
		ck_assert_msg(ms < 240000, "tune on load: not done after 240 s");
		sleep_ms(100);
	}
	ck_assert_uint_eq(tune_u64(c, "job"), 1);
	ck_assert_int_eq(uw_attach(c, MODEL, &m), 0);
	size_t shapes = 0;
	for (size_t i = 0; i < uw_model_tensor_count(m); i++) {
		struct uw_tensor_info ti;
		ck_assert_int_eq(uw_tensor_info(uw_model_tensor(m, i), &ti), 0);
		if (ti.ndim != 2 || ti.layout.format != UW_FORMAT_R12)
			continue;
		ck_assert_msg(cached_buckets(d.tune_dir, ti.layout.rows, ti.layout.cols) == 11,
			      "%s (%llux%llu): not every bucket tuned", ti.name,
			      (unsigned long long)ti.layout.rows, (unsigned long long)ti.layout.cols);
		shapes++;
	}
	ck_assert_uint_gt(shapes, 0);
	ck_assert_int_eq(uw_detach(m), 0);

	ck_assert_int_eq(run_ctl(&d, "tune " MODEL " --wait", &out), 0);
	ck_assert_msg(strstr(out, "tune " MODEL ": 1 model, 0 entries written to "), "tune: %s", out);
	free(out);
	ck_assert_int_eq(run_ctl(&d, "tune --force --wait --json", &out), 0);
	struct json_value *v;
	struct uwerr e = {0};
	ck_assert_msg(json_parse(out, strlen(out), &v, &e) == 0, "tune --json: %s: %s", e.msg, out);
	ck_assert_uint_eq(key_u64(v, "job"), 3);
	ck_assert_uint_eq(key_u64(v, "models"), 1);
	ck_assert_uint_eq(key_u64(v, "rejected"), 0);
	ck_assert_str_eq(key_str(v, "error"), "");
	json_free(v);
	free(out);

	/* a worker reads the cache at its attach */
	setenv("UW_TUNE_DIR", d.tune_dir, 1);
	ck_assert_int_eq(uw_attach(c, MODEL, &m), 0);
	ck_assert_int_eq(verify_model(m, &src, tu_seed(), NULL), 0);
	ck_assert_int_eq(uw_detach(m), 0);
	unsetenv("UW_TUNE_DIR");
done:
	uw_disconnect(c);
	source_free(&src);
	daemon_stop(&d);
}
END_TEST

/* --prefer size: stories260K's BF16 MLP matrices are R11, at most 11.5 bits
 * a weight resident, and every tensor is the CPU encoder's for size, decodes
 * to the file's bytes and multiplies within the float64 bound. A daemon
 * started without it (speed) keeps the same matrices as R12. */
START_TEST(test_prefer_size)
{
	for (int k = 0; k < 2; k++) {
		struct daemon d;
		struct source src;
		uw_client *c;
		uw_model *m;
		prefer = k ? RES_PREFER_SIZE : RES_PREFER_SPEED;
		const unsigned want = k ? UW_FORMAT_R11 : UW_FORMAT_R12;
		daemon_start(&d);
		source_load(&src, d.model_path);
		ck_assert_int_eq(uw_connect(d.sock, &c), 0);
		load_and_wait(c, &d, MODEL);
		ck_assert_int_eq(uw_attach(c, MODEL, &m), 0);
		ck_assert_int_eq(verify_model(m, &src, tu_seed(), NULL), 0);
		uint64_t bytes = 0, weights = 0;
		for (size_t i = 0; i < uw_model_tensor_count(m); i++) {
			struct uw_tensor_info ti;
			ck_assert_int_eq(uw_tensor_info(uw_model_tensor(m, i), &ti), 0);
			if (ti.dtype != UW_DTYPE_BF16 || ti.ndim < 2 || !strstr(ti.name, "mlp"))
				continue;
			ck_assert_msg(ti.layout.format == want, "prefer %s: %s is format %u, not %u",
				      k ? "size" : "speed", ti.name, ti.layout.format, want);
			bytes += ti.layout.nbytes;
			weights += ti.layout.rows * ti.layout.cols;
		}
		ck_assert_uint_gt(weights, 0);
		const double bits = (double)bytes * 8 / (double)weights;
		fprintf(stderr, "prefer %s: MLP matrices %.3f bits a weight resident\n",
			k ? "size" : "speed", bits);
		if (k)
			ck_assert_msg(bits <= 11.5, "prefer size: MLP matrices %.3f bits a weight", bits);
		ck_assert_int_eq(uw_detach(m), 0);
		uw_disconnect(c);
		source_free(&src);
		daemon_stop(&d);
	}
	prefer = RES_PREFER_SPEED;
}
END_TEST

/* evict is refused while a client holds a lease; kill -9 of that client
 * ends the lease, and evict then succeeds. */
START_TEST(test_evict_busy_kill9)
{
	struct daemon d;
	uw_client *c;
	char *out;
	int ready[2];
	daemon_start(&d);
	ck_assert_int_eq(uw_connect(d.sock, &c), 0);
	load_and_wait(c, &d, MODEL);

	ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		uw_client *cc;
		uw_model *m;
		if (uw_connect(d.sock, &cc) < 0 || uw_attach(cc, MODEL, &m) < 0)
			_exit(2);
		if (write(ready[1], "a", 1) != 1)
			_exit(3);
		for (;;)
			pause();
	}
	close(ready[1]);
	char b;
	ck_assert_msg(read(ready[0], &b, 1) == 1, "the client failed to attach");
	close(ready[0]);
	ck_assert_int_eq(attached(c, MODEL), 1);

	ck_assert_int_eq(uw_evict(c, MODEL, 0), -EBUSY);
	ck_assert_msg(strstr(uw_errmsg(), MODEL), "errmsg: %s", uw_errmsg());
	ck_assert_int_eq(run_ctl(&d, "evict " MODEL, &out), 1);
	ck_assert_msg(strstr(out, MODEL), "evict: %s", out);
	free(out);

	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	wait_attached(c, MODEL, 0);
	ck_assert_int_eq(run_ctl(&d, "evict " MODEL, &out), 0);
	free(out);
	ck_assert_int_eq(attached(c, MODEL), -1);
	uw_disconnect(c);
	daemon_stop(&d);
}
END_TEST

/* evict --force while leased: new attaches fail at once, the holder still
 * reads correct bytes, and the memory goes when it detaches. */
START_TEST(test_evict_force)
{
	struct daemon d;
	struct source src;
	uw_client *c, *op;
	uw_model *m, *m2 = (uw_model *)1;
	daemon_start(&d);
	source_load(&src, d.model_path);
	int fds = tu_count_fds();
	ck_assert_int_eq(uw_connect(d.sock, &op), 0);
	uint64_t used0 = device_used(op);
	load_and_wait(op, &d, MODEL);
	uint64_t used1 = device_used(op);
	ck_assert_uint_gt(used1, used0);

	ck_assert_int_eq(uw_connect(d.sock, &c), 0);
	ck_assert_int_eq(uw_attach(c, MODEL, &m), 0);
	ck_assert_int_eq(uw_evict(op, MODEL, UW_EVICT_FORCE), 0);
	ck_assert_int_lt(uw_attach(op, MODEL, &m2), 0);
	ck_assert_ptr_null(m2);
	ck_assert_msg(strstr(uw_errmsg(), MODEL), "errmsg: %s", uw_errmsg());
	ck_assert_uint_eq(device_used(op), used1);   /* held by the lease */

	ck_assert_int_eq(verify_model(m, &src, tu_seed(), NULL), 0);
	ck_assert_int_eq(uw_detach(m), 0);
	uint64_t used = used1;
	for (int ms = 0; ms < WAIT_MS && (used = device_used(op)) != used0; ms += 20)
		sleep_ms(20);
	ck_assert_uint_eq(used, used0);
	ck_assert_int_eq(attached(op, MODEL), -1);

	/* The name is free again. */
	load_and_wait(op, &d, MODEL);
	uw_disconnect(c);
	uw_disconnect(op);
	assert_fds(fds);
	source_free(&src);
	daemon_stop(&d);
}
END_TEST

/* A model outlives its connection: the lease ends with the socket, the
 * mapping stays readable, and detach then only unmaps. */
START_TEST(test_disconnect_keeps_mapping)
{
	struct daemon d;
	struct source src;
	uw_client *c, *op;
	uw_model *m;
	daemon_start(&d);
	source_load(&src, d.model_path);
	int fds = tu_count_fds();
	ck_assert_int_eq(uw_connect(d.sock, &op), 0);
	load_and_wait(op, &d, MODEL);
	ck_assert_int_eq(uw_connect(d.sock, &c), 0);
	ck_assert_int_eq(uw_attach(c, MODEL, &m), 0);
	ck_assert_int_eq(attached(op, MODEL), 1);
	uw_disconnect(c);
	wait_attached(op, MODEL, 0);
	ck_assert_int_eq(verify_model(m, &src, tu_seed(), NULL), 0);
	ck_assert_int_eq(uw_detach(m), 0);
	uw_disconnect(op);
	assert_fds(fds);
	source_free(&src);

	/* $UNWEIGHT_SOCKET reaches unweightctl too; a stopped daemon is exit 1. */
	char *cmd;
	ck_assert_int_ge(asprintf(&cmd, "'%s/ctl/unweightctl' status >/dev/null 2>&1",
				  tu_builddir()), 0);
	setenv("UNWEIGHT_SOCKET", d.sock, 1);
	int st = system(cmd);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status while up: 0x%x", st);
	daemon_stop(&d);
	st = system(cmd);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status while down: 0x%x", st);
	free(cmd);
}
END_TEST

/* kill -9 of the daemon while 4 clients compute: their mappings stay valid
 * (memfds and VMM memory live while a mapping refers to them), every result
 * is right, and clients given the same inputs get the same bits. */
START_TEST(test_daemon_killed)
{
	enum { NWORKERS = 4 };
	struct daemon d;
	struct source src;
	uw_client *c;
	int ready[2], go[2], res[2];
	pid_t pid[NWORKERS];
	uint64_t seed = tu_seed();
	daemon_start(&d);
	source_load(&src, d.model_path);
	ck_assert_int_eq(uw_connect(d.sock, &c), 0);
	load_and_wait(c, &d, MODEL);
	uw_disconnect(c);
	ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
	ck_assert_int_eq(pipe2(res, O_CLOEXEC), 0);
	for (int i = 0; i < NWORKERS; i++) {
		pid[i] = fork();
		ck_assert_int_ge(pid[i], 0);
		if (pid[i] == 0) {
			uw_client *wc;
			uw_model *m;
			uint32_t crc = 0;
			char b;
			close(ready[0]);
			close(go[1]);
			close(res[0]);
			if (uw_connect(d.sock, &wc) < 0 || uw_attach(wc, MODEL, &m) < 0)
				_exit(2);
			if (write(ready[1], "a", 1) != 1 || read(go[0], &b, 1) != 0)
				_exit(3);
			int bad = verify_model(m, &src, seed, &crc);
			uw_detach(m);   /* the daemon is gone: only unmaps */
			uw_disconnect(wc);
			if (write(res[1], &crc, sizeof(crc)) != sizeof(crc))
				_exit(4);
			_exit(bad ? 1 : 0);
		}
	}
	close(ready[1]);
	close(go[0]);
	close(res[1]);
	for (int i = 0; i < NWORKERS; i++) {
		char b;
		ck_assert_msg(read(ready[0], &b, 1) == 1, "a worker failed to attach");
	}
	int st;
	ck_assert_int_eq(kill(d.pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(d.pid, &st, 0), d.pid);
	close(go[1]);
	uint32_t first = 0;
	for (int i = 0; i < NWORKERS; i++) {
		uint32_t crc;
		ck_assert_int_eq(read(res[0], &crc, sizeof(crc)), sizeof(crc));
		if (i == 0)
			first = crc;
		ck_assert_msg(crc == first, "worker results differ: 0x%08x vs 0x%08x", crc, first);
	}
	for (int i = 0; i < NWORKERS; i++) {
		ck_assert_int_eq(waitpid(pid[i], &st, 0), pid[i]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker %d: status 0x%x", i, st);
	}
	close(ready[0]);
	close(res[0]);
	source_free(&src);
	tu_rmtree(d.dir);
	free(d.dir);
	free(d.sock);
	free(d.model_path);
	free(d.tune_dir);
}
END_TEST

/* uw_load_device and load --device: device 0 named by its name and by its
 * index both load there; a device the daemon lacks is ENODEV, named in the
 * message with the devices there are, and leaves no model behind. */
START_TEST(test_load_device)
{
	struct daemon d;
	struct stats s;
	uw_client *c;
	char *out, *args;
	/* Device 0's name (unweightd(8), OPERATION). */
	const char *dev0 = strcmp(backend(), "cuda") ? "host" : "cuda0";
	daemon_start(&d);
	int fds = tu_count_fds();
	ck_assert_int_eq(uw_connect(d.sock, &c), 0);
	const char *paths[] = { d.model_path };
	ck_assert_msg(uw_load_device(c, "byname", dev0, paths, 1) == 0, "%s", uw_errmsg());
	ck_assert_msg(uw_load_device(c, "byindex", "0", paths, 1) == 0, "%s", uw_errmsg());
	wait_ready(c, "byname");
	wait_ready(c, "byindex");
	stats_get(c, NULL, &s);
	ck_assert_str_eq(key_str(stats_model(&s, "byname"), "device"), dev0);
	ck_assert_str_eq(key_str(stats_model(&s, "byindex"), "device"), dev0);
	stats_free(&s);

	ck_assert_int_eq(uw_load_device(c, "bad", "nope", paths, 1), -ENODEV);
	ck_assert_msg(strstr(uw_errmsg(), "'nope'") && strstr(uw_errmsg(), dev0),
		      "errmsg: %s", uw_errmsg());
	ck_assert_int_eq(uw_load_device(c, "bad", "1", paths, 1), -ENODEV);
	ck_assert_msg(strstr(uw_errmsg(), "'1'"), "errmsg: %s", uw_errmsg());

	ck_assert_int_ge(asprintf(&args, "load bad '%s' --device nope", d.model_path), 0);
	ck_assert_int_eq(run_ctl(&d, args, &out), 1);
	ck_assert_msg(strstr(out, "'nope'") && strstr(out, dev0), "load --device nope: %s", out);
	free(out);
	free(args);
	/* A bundle, this time: its file too is checked as opened. */
	ck_assert_int_ge(asprintf(&args, "pack '%s' -o '%s/m.uwb'", d.model_path, d.dir), 0);
	ck_assert_int_eq(run_ctl(&d, args, &out), 0);
	free(out);
	free(args);
	ck_assert_int_ge(asprintf(&args, "load byctl '%s/m.uwb' --device 0 --wait --json", d.dir), 0);
	ck_assert_int_eq(run_ctl(&d, args, &out), 0);
	ctl_json_check(out, "load --device 0 --wait --json", JSON_OBJ, "byctl", "ready");
	free(out);
	free(args);
	/* The bundle's tensors (exphuf payloads decoded on the GPU with the
	 * cuda backend) encode as the checkpoint's do on the CPU. */
	struct source src;
	uw_model *m;
	source_load(&src, d.model_path);
	ck_assert_int_eq(uw_attach(c, "byctl", &m), 0);
	ck_assert_int_eq(verify_model(m, &src, tu_seed(), NULL), 0);
	ck_assert_int_eq(uw_detach(m), 0);
	source_free(&src);

	stats_get(c, NULL, &s);
	ck_assert_ptr_null(stats_model(&s, "bad"));
	stats_free(&s);
	uw_disconnect(c);
	assert_fds(fds);
	daemon_stop(&d);
}
END_TEST

/* Tensors of a few MB at offsets that are not page-aligned (a 3-float
 * tensor ahead of them), as safetensors and packed into a bundle: with the
 * cuda backend, from the page cache, the daemon copies their whole pages
 * (raw bytes, or the bundle's exphuf payloads) straight from the file's
 * mapping, registered with the driver in 64 MiB pieces, and preads the
 * payloads' heads (daemon/filemap.h, loader.c); every tensor must still be
 * the CPU encoder's, and decode to the file's bytes. On cuda the large one
 * crosses a piece's end in both files (~98 MB raw, ~70 MB packed). */
START_TEST(test_large_tensors)
{
	struct daemon d;
	struct uwerr e = {0};
	struct st_writer *w;
	const uint64_t rows = strcmp(backend(), "cuda") == 0 ? 12000 : 1000;
	struct st_out_tensor t[] = {
		{"bias", UW_DTYPE_F32, 1, {3}, 0, 0},
		{"big.weight", UW_DTYPE_BF16, 2, {rows, 4100}, 0, 0},
		{"wide.weight", UW_DTYPE_BF16, 2, {600, 2048}, 0, 0},
		{"norm", UW_DTYPE_BF16, 1, {77}, 0, 0},
	};
	uint64_t rng = tu_seed();
	char *path, *uwb, *args, *out;
	daemon_start(&d);
	ck_assert_int_ge(asprintf(&path, "%s/large.safetensors", d.dir), 0);
	ck_assert_int_ge(asprintf(&uwb, "%s/large.uwb", d.dir), 0);
	ck_assert_msg(st_writer_open(path, t, 4, NULL, 0, NULL, 0, &w, &e) == 0, "%s", e.msg);
	for (size_t i = 0; i < 4; i++) {
		size_t n = (size_t)(t[i].end - t[i].begin);
		uint8_t *b = malloc(n);
		ck_assert_ptr_nonnull(b);
		/* BF16 of N(0, 0.02)-like magnitudes: exponents 117-122, a few
		 * outliers the palette leaves to patches */
		for (size_t k = 0; k + 1 < n; k += 2) {
			uint64_t r = tu_rand(&rng);
			unsigned ex = r % 997 == 0 ? 100 + (unsigned)(r >> 40) % 40 : 117 + (r >> 8) % 6;
			uint16_t v = (uint16_t)((r >> 16 & 1) << 15 | ex << 7 | (r >> 20 & 0x7f));
			memcpy(b + k, &v, 2);
		}
		ck_assert_msg(st_writer_put(w, i, b, &e) == 0, "%s", e.msg);
		free(b);
	}
	ck_assert_msg(st_writer_close(w, 1, &e) == 0, "%s", e.msg);
	ck_assert_uint_ne(t[1].begin % 4096, 0);
	ck_assert_int_ge(asprintf(&args, "pack '%s' -o '%s'", path, uwb), 0);
	ck_assert_msg(run_ctl(&d, args, &out) == 0, "%s", out);
	free(out);
	free(args);

	uw_client *c;
	uw_model *m;
	struct source src;
	source_load(&src, path);
	ck_assert_int_eq(uw_connect(d.sock, &c), 0);
	const char *names[] = {"large", "large-uwb"}, *files[] = {path, uwb};
	for (int k = 0; k < 2; k++) {
		ck_assert_msg(uw_load(c, names[k], &files[k], 1) == 0, "load: %s", uw_errmsg());
		wait_ready(c, names[k]);
		ck_assert_int_eq(uw_attach(c, names[k], &m), 0);
		ck_assert_int_eq(verify_model(m, &src, tu_seed(), NULL), 0);
		ck_assert_int_eq(uw_detach(m), 0);
	}
	source_free(&src);
	uw_disconnect(c);
	free(path);
	free(uwb);
	daemon_stop(&d);
}
END_TEST

#ifdef HAVE_CUDA
/* The GPU's free memory, seen from this process. */
static size_t gpu_free(const struct cudrv *cu)
{
	size_t free_b = 0, total_b = 0;
	ck_assert_int_eq(cu->cuMemGetInfo(&free_b, &total_b), CUDA_SUCCESS);
	return free_b;
}

/* A load takes GPU memory and evict gives all of it back; a worker's
 * mapping is read-only: the driver refuses a write to it. */
START_TEST(test_gpu_memory_and_readonly)
{
	struct daemon d;
	struct source src;
	uw_client *c;
	uw_model *m;
	struct uwerr e = {0};
	CUdevice dev;
	CUcontext ctx;
	const struct cudrv *cu = cudrv_get(&e);
	ck_assert_msg(cu, "%s", e.msg);
	ck_assert_int_eq(cu->cuInit(0), CUDA_SUCCESS);
	ck_assert_int_eq(cu->cuDeviceGet(&dev, 0), CUDA_SUCCESS);
	ck_assert_int_eq(cu->cuDevicePrimaryCtxRetain(&ctx, dev), CUDA_SUCCESS);
	ck_assert_int_eq(cu->cuCtxSetCurrent(ctx), CUDA_SUCCESS);
	daemon_start(&d);
	source_load(&src, d.model_path);
	ck_assert_int_eq(uw_connect(d.sock, &c), 0);
	load_and_wait(c, &d, MODEL);
	ck_assert_int_eq(uw_attach(c, MODEL, &m), 0);
	const uw_tensor *t = uw_model_tensor(m, 0);
	CUdeviceptr p = (CUdeviceptr)uw_tensor_device_ptr(t);
	ck_assert_uint_ne(p, 0);
	CUresult w = cu->cuMemsetD8(p, 0x5a, 16);
	char why[256];
	fprintf(stderr, "write to the read-only mapping: %s\n",
		cudrv_strerror(cu, w, why, sizeof(why)));
	ck_assert_msg(w != CUDA_SUCCESS, "cuMemsetD8 on the worker's mapping succeeded");
	ck_assert_int_eq(cu->cuCtxSynchronize(), CUDA_SUCCESS);
	ck_assert_int_eq(verify_model(m, &src, tu_seed(), NULL), 0);
	ck_assert_int_eq(uw_detach(m), 0);
	ck_assert_int_eq(uw_evict(c, MODEL, 0), 0);

	/* Measured only now: this process's own kernels took scratch memory. */
	size_t free0 = gpu_free(cu);
	load_and_wait(c, &d, MODEL);
	size_t free1 = gpu_free(cu);
	ck_assert_msg(free1 < free0, "free GPU memory %zu before the load, %zu after", free0, free1);
	ck_assert_int_eq(uw_evict(c, MODEL, 0), 0);
	size_t free2 = free0 + 1;
	for (int ms = 0; ms < WAIT_MS && (free2 = gpu_free(cu)) != free0; ms += 20)
		sleep_ms(20);
	ck_assert_msg(free2 == free0, "free GPU memory %zu before the load, %zu after evict",
		      free0, free2);
	uw_disconnect(c);
	source_free(&src);
	daemon_stop(&d);
	cu->cuDevicePrimaryCtxRelease(dev);
}
END_TEST
#endif

static Suite *integration_suite(void)
{
	Suite *s = suite_create("integration");
	TCase *tc = tcase_create("daemon");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_load_list_stats_clients);
	tcase_add_test(tc, test_evict_busy_kill9);
	tcase_add_test(tc, test_evict_force);
	tcase_add_test(tc, test_disconnect_keeps_mapping);
	tcase_add_test(tc, test_daemon_killed);
	tcase_add_test(tc, test_load_device);
	tcase_add_test(tc, test_large_tensors);
	tcase_add_test(tc, test_prefer_size);
#ifdef HAVE_CUDA
	if (strcmp(backend(), "cuda") == 0)
		tcase_add_test(tc, test_gpu_memory_and_readonly);
#endif
	suite_add_tcase(s, tc);
	tc = tcase_create("tune");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_tune);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(integration_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
