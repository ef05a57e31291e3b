/* stress: many clients at once against a running unweightd, for a while,
 * counting every error and checking every decoded tensor.
 *
 * C client processes (default 64) run for S seconds (default 60), each on
 * its own connection, choosing at random: attach a model (the stable one,
 * or one of the churned ones), decode a random tensor of a model it holds
 * and compare it bit for bit with the source file (host backend), detach,
 * ask for stats, or reconnect (detaching all first). A client holds up to
 * 4 leases at once. Meanwhile one more process loads the churned models
 * (copies of the same file under other names) one after another, waits
 * until each is ready, and force-evicts it while clients may hold it.
 *
 * Errors a client cannot avoid are counted apart as "expected": attaching a
 * churned model that is not loaded now (ENOENT) or still loading (EAGAIN).
 * Every other error is unexpected. The daemon's open fds and RSS are read
 * from /proc before and after (it must run as this user, or this as root).
 *
 * It prints, per operation, the count, ops/s, p50, p99 and max latency,
 * and the errors; and exits 1 on any unexpected error, any decoded tensor
 * that differs from the source, or a daemon that ends with more fds than it
 * began with. tests/check_stress.sh runs a short one in `make check`.
 *
 *   ./unweightd --socket /tmp/uws.sock --backend host --allow-dir "$PWD/../data" &
 *   bench/uw-stress --socket /tmp/uws.sock [-c 64] [-t 60] [MODEL.safetensors]
 */
#include "config.h"

#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/json.h"
#include "format/safetensors.h"
#include "unweight.h"

#define DEFAULT_MODEL UW_DATADIR "/stories260K.safetensors"
#define BASE "stress-base"
#define NCHURN 4           /* churned model names, stress-churn-0..3 */
#define MAX_HELD 4         /* leases one client holds at once */
#define MAX_SAMPLES 20000  /* latencies kept per process and operation */

enum op { OP_CONNECT, OP_ATTACH, OP_DECODE, OP_DETACH, OP_STATS, OP_LOAD, OP_EVICT, NOPS };
static const char *const op_name[NOPS] = {"connect", "attach", "decode", "detach", "stats",
					   "load", "evict"};

/* One process's results, in memory shared with the parent. */
struct result {
	uint64_t count[NOPS], errors[NOPS], expected[NOPS];
	uint64_t seen[NOPS];             /* samples offered; MAX_SAMPLES kept (reservoir) */
	uint64_t decoded, mismatches;
	char first_error[256];
	float us[NOPS][MAX_SAMPLES];
};

/* What the source file says each tensor decodes to. */
struct ref {
	size_t n;
	char **name;
	uint64_t *bytes;
	uint32_t *crc;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *s)   /* splitmix64 */
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void sample(struct result *r, enum op op, double t0, uint64_t *rng)
{
	float us = (float)((now_s() - t0) * 1e6);
	uint64_t k = r->seen[op]++;
	if (k < MAX_SAMPLES)
		r->us[op][k] = us;
	else if ((k = rnd(rng) % (k + 1)) < MAX_SAMPLES)
		r->us[op][k] = us;
}

static void fail(struct result *r, enum op op, const char *what, int rc)
{
	r->errors[op]++;
	if (!r->first_error[0])
		snprintf(r->first_error, sizeof(r->first_error), "%s: %s (%s)", what,
			 uw_strerror(rc), uw_errmsg());
}

static int ref_read(const char *path, struct ref *ref)
{
	struct st_file *f;
	struct uwerr e = {0};
	if (st_open(path, &f, &e) < 0) {
		fprintf(stderr, "uw-stress: %s\n", e.msg);
		return -1;
	}
	ref->n = f->ntensors;
	ref->name = calloc(ref->n, sizeof(*ref->name));
	ref->bytes = calloc(ref->n, sizeof(*ref->bytes));
	ref->crc = calloc(ref->n, sizeof(*ref->crc));
	int rc = ref->name && ref->bytes && ref->crc ? 0 : -1;
	for (size_t i = 0; i < ref->n && !rc; i++) {
		const struct st_tensor *t = &f->tensors[i];
		uint64_t b = st_tensor_bytes(t);
		void *buf = malloc(b ? b : 1);
		rc = buf && (ref->name[i] = strdup(t->name)) ? st_read_tensor(f, t, buf, &e) : -1;
		if (!rc) {
			ref->bytes[i] = b;
			ref->crc[i] = crc32c(0, buf, b);
		}
		free(buf);
	}
	if (rc)
		fprintf(stderr, "uw-stress: %s: %s\n", path, e.msg[0] ? e.msg : "out of memory");
	st_close(f);
	return rc;
}

static void ref_free(struct ref *ref)
{
	for (size_t i = 0; ref->name && i < ref->n; i++)
		free(ref->name[i]);
	free(ref->name);
	free(ref->bytes);
	free(ref->crc);
}

/* Decode tensor i of the source from m, and compare. */
static void decode_check(struct result *r, const struct ref *ref, uw_model *m, uint64_t *rng)
{
	size_t i = rnd(rng) % ref->n;
	const uw_tensor *t = uw_model_find(m, ref->name[i]);
	if (!t) {
		fail(r, OP_DECODE, "decode: a tensor of the source is missing", -ENOENT);
		return;
	}
	if (uw_tensor_device_ptr(t))   /* cuda: the check reads host memory only */
		return;
	void *out = malloc(ref->bytes[i] ? ref->bytes[i] : 1);
	double t0 = now_s();
	int rc = out ? uw_decode(t, out, ref->bytes[i], NULL) : -ENOMEM;
	sample(r, OP_DECODE, t0, rng);
	r->count[OP_DECODE]++;
	if (rc < 0) {
		fail(r, OP_DECODE, "decode", rc);
	} else {
		r->decoded++;
		if (crc32c(0, out, ref->bytes[i]) != ref->crc[i]) {
			r->mismatches++;
			if (!r->first_error[0])
				snprintf(r->first_error, sizeof(r->first_error),
					 "decode %s: differs from the source", ref->name[i]);
		}
	}
	free(out);
}

static void detach_one(struct result *r, uw_model **held, int *nheld, int k, uint64_t *rng)
{
	double t0 = now_s();
	int rc = uw_detach(held[k]);
	sample(r, OP_DETACH, t0, rng);
	r->count[OP_DETACH]++;
	if (rc < 0)
		fail(r, OP_DETACH, "detach", rc);
	held[k] = held[--*nheld];
}

static void client_main(const char *sock, double end, const struct ref *ref, struct result *r,
			uint64_t seed)
{
	uint64_t rng = seed;
	uw_client *c = NULL;
	uw_model *held[MAX_HELD];
	int nheld = 0;
	while (now_s() < end) {
		unsigned pick = (unsigned)(rnd(&rng) % 100);
		if (!c || pick < 3) {
			while (nheld)
				detach_one(r, held, &nheld, 0, &rng);
			uw_disconnect(c);
			c = NULL;
			double t0 = now_s();
			int rc = uw_connect(sock, &c);
			sample(r, OP_CONNECT, t0, &rng);
			r->count[OP_CONNECT]++;
			if (rc < 0) {
				fail(r, OP_CONNECT, "connect", rc);
				c = NULL;
				usleep(10000);
			}
		} else if (pick < 35 && nheld < MAX_HELD) {
			char name[32];
			unsigned k = (unsigned)(rnd(&rng) % (NCHURN * 2));
			int churn = k < NCHURN;   /* half to the churned ones */
			snprintf(name, sizeof(name), churn ? "stress-churn-%u" : BASE, k);
			uw_model *m;
			double t0 = now_s();
			int rc = uw_attach(c, name, &m);
			sample(r, OP_ATTACH, t0, &rng);
			r->count[OP_ATTACH]++;
			if (rc >= 0)
				held[nheld++] = m;
			else if (churn && (rc == -ENOENT || rc == -EAGAIN))
				r->expected[OP_ATTACH]++;
			else
				fail(r, OP_ATTACH, name, rc);
		} else if (pick < 70 && nheld) {
			decode_check(r, ref, held[rnd(&rng) % (uint64_t)nheld], &rng);
		} else if (pick < 90 && nheld) {
			detach_one(r, held, &nheld, (int)(rnd(&rng) % (uint64_t)nheld), &rng);
		} else {
			char *json = NULL;
			double t0 = now_s();
			int rc = uw_stats_json(c, "", &json);
			sample(r, OP_STATS, t0, &rng);
			r->count[OP_STATS]++;
			if (rc < 0)
				fail(r, OP_STATS, "stats", rc);
			free(json);
		}
	}
	while (nheld)
		detach_one(r, held, &nheld, 0, &rng);
	uw_disconnect(c);
}

/* The state of model name in stats ("" when absent). */
static void model_state(uw_client *c, const char *name, char *state, size_t len)
{
	char *text = NULL;
	struct json_value *doc = NULL;
	struct uwerr e = {0};
	state[0] = '\0';
	if (uw_stats_json(c, name, &text) < 0 || json_parse(text, strlen(text), &doc, &e) < 0) {
		free(text);
		return;
	}
	const struct json_value *m = json_get(doc, "models");
	for (size_t i = 0; m && m->type == JSON_ARR && i < m->u.arr.n; i++) {
		const struct json_value *n = json_get(&m->u.arr.v[i], "name");
		const struct json_value *s = json_get(&m->u.arr.v[i], "state");
		if (n && s && n->type == JSON_STR && s->type == JSON_STR && !strcmp(n->u.str.s, name)) {
			snprintf(state, len, "%s", s->u.str.s);
			if (strcmp(state, "failed"))
				break;
		}
	}
	json_free(doc);
	free(text);
}

/* Load name and wait until it is ready; 0, or the error. */
static int load_wait(uw_client *c, const char *name, const char *path)
{
	int rc = uw_load(c, name, &path, 1);
	char state[32];
	while (!rc) {
		model_state(c, name, state, sizeof(state));
		if (!strcmp(state, "ready"))
			break;
		if (strcmp(state, "loading"))
			rc = -EIO;
		else
			usleep(2000);
	}
	return rc;
}

static void churn_main(const char *sock, const char *path, double end, struct result *r,
		       uint64_t seed)
{
	uint64_t rng = seed;
	uw_client *c;
	int rc = uw_connect(sock, &c);
	if (rc < 0) {
		fail(r, OP_CONNECT, "churn: connect", rc);
		return;
	}
	for (unsigned k = 0; now_s() < end; k = (k + 1) % NCHURN) {
		char name[32];
		snprintf(name, sizeof(name), "stress-churn-%u", k);
		double t0 = now_s();
		rc = load_wait(c, name, path);
		sample(r, OP_LOAD, t0, &rng);
		r->count[OP_LOAD]++;
		if (rc < 0) {
			fail(r, OP_LOAD, name, rc);
			continue;
		}
		usleep((useconds_t)(rnd(&rng) % 200000));   /* let clients attach it */
		t0 = now_s();
		rc = uw_evict(c, name, UW_EVICT_FORCE);
		sample(r, OP_EVICT, t0, &rng);
		r->count[OP_EVICT]++;
		if (rc < 0)
			fail(r, OP_EVICT, name, rc);
	}
	uw_disconnect(c);
}

/* The daemon's pid, from stats. */
static long daemon_pid(uw_client *c)
{
	char *text = NULL;
	struct json_value *doc = NULL;
	struct uwerr e = {0};
	uint64_t pid = 0;
	if (uw_stats_json(c, "", &text) == 0 && json_parse(text, strlen(text), &doc, &e) == 0)
		json_u64(json_get(doc, "pid"), &pid);
	json_free(doc);
	free(text);
	return (long)pid;
}

/* Open fds of the daemon, or -1 when /proc does not let us see them. */
static int count_fds(long pid)
{
	char dir[64];
	snprintf(dir, sizeof(dir), "/proc/%ld/fd", pid);
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static long rss_kib(long pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	FILE *f = fopen(path, "re");
	long kib = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: uw-stress [--socket PATH] [-c CLIENTS] [-t SECONDS] [MODEL.safetensors]\n"
		"Many clients attach, decode, detach, reconnect and ask for stats while one\n"
		"more loads and evicts models; prints ops/s and latency percentiles.\n");
}

int main(int argc, char **argv)
{
	const char *sock = getenv("UNWEIGHT_SOCKET"), *path = DEFAULT_MODEL;
	int nclients = 64;
	double seconds = 60;
	static const struct option lo[] = {
		{"socket", required_argument, NULL, 's'}, {"clients", required_argument, NULL, 'c'},
		{"seconds", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'}, {0}};
	int opt;
	while ((opt = getopt_long(argc, argv, "s:c:t:h", lo, NULL)) != -1) {
		if (opt == 's')
			sock = optarg;
		else if (opt == 'c')
			nclients = atoi(optarg);
		else if (opt == 't')
			seconds = atof(optarg);
		else {
			usage(opt == 'h' ? stdout : stderr);
			return opt == 'h' ? 0 : 2;
		}
	}
	if (optind < argc)
		path = argv[optind];
	if (nclients < 1 || nclients > 4096 || !(seconds > 0)) {
		usage(stderr);
		return 2;
	}
	char *real = realpath(path, NULL);
	struct ref ref = {0};
	if (!real || ref_read(real, &ref) < 0) {
		fprintf(stderr, "uw-stress: %s: %s\n", path, real ? "unreadable" : strerror(errno));
		return 2;
	}

	uw_client *c;
	if (uw_connect(sock, &c) < 0) {
		fprintf(stderr, "uw-stress: connect: %s\n", uw_errmsg());
		return 2;
	}
	int rc = load_wait(c, BASE, real);
	int loaded_base = rc == 0;
	if (rc < 0 && rc != -EEXIST) {
		fprintf(stderr, "uw-stress: load %s: %s\n", BASE, uw_errmsg());
		return 2;
	}
	long pid = daemon_pid(c);
	int fds_before = count_fds(pid);
	long rss_before = rss_kib(pid), rss_max = rss_before;

	int nproc = nclients + 1;
	size_t bytes = sizeof(struct result) * (size_t)nproc;
	struct result *res = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
				  -1, 0);
	if (res == MAP_FAILED) {
		perror("uw-stress: mmap");
		return 2;
	}
	double start = now_s(), end = start + seconds;
	uint64_t seed = (uint64_t)time(NULL) * 0x2545f4914f6cdd1dull;
	pid_t *kids = calloc((size_t)nproc, sizeof(*kids));
	for (int i = 0; i < nproc && kids; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			if (i < nclients)
				client_main(sock, end, &ref, &res[i], seed + (uint64_t)i);
			else
				churn_main(sock, real, end, &res[i], seed + (uint64_t)i);
			_exit(0);
		}
		if (kids[i] < 0) {
			perror("uw-stress: fork");
			return 2;
		}
	}
	while (now_s() < end) {
		usleep(200000);
		long r = rss_kib(pid);
		rss_max = r > rss_max ? r : rss_max;
	}
	int died = 0;
	for (int i = 0; i < nproc; i++) {
		int st;
		if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) || WEXITSTATUS(st))
			died++;
	}
	double took = now_s() - start;

	/* The churner may have stopped between a load and its evict. */
	for (int k = 0; k < NCHURN; k++) {
		char name[32];
		snprintf(name, sizeof(name), "stress-churn-%d", k);
		uw_evict(c, name, UW_EVICT_FORCE);
	}
	/* Connections and leases end as the daemon sees the clients go. */
	int fds_after = count_fds(pid);
	for (int i = 0; i < 100 && fds_after > fds_before; i++) {
		usleep(50000);
		fds_after = count_fds(pid);
	}
	long rss_after = rss_kib(pid);

	printf("uw-stress: %d clients and 1 loader, %.1f s, model %s (%zu tensors), daemon pid %ld\n",
	       nclients, took, real, ref.n, pid);
	printf("%-8s %10s %10s %10s %10s %10s %8s %9s\n", "op", "count", "ops/s", "p50 us", "p99 us",
	       "max us", "errors", "expected");
	uint64_t total = 0, errors = 0, mismatches = 0, decoded = 0;
	float *all = malloc(sizeof(float) * MAX_SAMPLES * (size_t)nproc);
	for (int op = 0; op < NOPS && all; op++) {
		uint64_t n = 0, err = 0, exp = 0;
		size_t ns = 0;
		for (int i = 0; i < nproc; i++) {
			n += res[i].count[op];
			err += res[i].errors[op];
			exp += res[i].expected[op];
			size_t k = res[i].seen[op] < MAX_SAMPLES ? (size_t)res[i].seen[op] : MAX_SAMPLES;
			memcpy(all + ns, res[i].us[op], k * sizeof(float));
			ns += k;
		}
		qsort(all, ns, sizeof(float), cmp_float);
		double p50 = ns ? all[(ns - 1) / 2] : 0, p99 = ns ? all[(size_t)((double)(ns - 1) * 0.99)] : 0;
		printf("%-8s %10llu %10.0f %10.0f %10.0f %10.0f %8llu %9llu\n", op_name[op],
		       (unsigned long long)n, (double)n / took, p50, p99, ns ? all[ns - 1] : 0.0,
		       (unsigned long long)err, (unsigned long long)exp);
		total += n;
		errors += err;
	}
	free(all);
	for (int i = 0; i < nproc; i++) {
		mismatches += res[i].mismatches;
		decoded += res[i].decoded;
		if (res[i].first_error[0])
			printf("process %d: first error: %s\n", i, res[i].first_error);
	}
	printf("all ops: %.0f/s; decoded %llu tensors, %llu differ from the source\n",
	       (double)total / took, (unsigned long long)decoded, (unsigned long long)mismatches);
	printf("daemon fds: %d before, %d after; RSS %ld KiB before, %ld max, %ld after\n",
	       fds_before, fds_after, rss_before, rss_max, rss_after);

	if (loaded_base)
		uw_evict(c, BASE, UW_EVICT_FORCE);
	uw_disconnect(c);
	int bad = errors || mismatches || died || fds_after > fds_before;
	if (died)
		printf("FAIL: %d processes did not exit cleanly\n", died);
	if (fds_after > fds_before)
		printf("FAIL: the daemon holds %d fds more than before\n", fds_after - fds_before);
	if (errors || mismatches)
		printf("FAIL: %llu unexpected errors, %llu mismatches\n", (unsigned long long)errors,
		       (unsigned long long)mismatches);
	munmap(res, bytes);
	free(kids);
	ref_free(&ref);
	free(real);
	return bad ? 1 : 0;
}
