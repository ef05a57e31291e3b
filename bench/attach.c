/* attach: how long a worker waits to get a loaded model, and how fast the
 * daemon's backend loads one, measured against a running unweightd.
 *
 * Attach latency: N cycles (default 1000) of connect + attach (the daemon
 * hands over the buffers' fds; the library maps them read-only and builds
 * the tensor index) + detach + disconnect, each timed; p50, p99, max and mean.
 * A second row does attach + detach on one open connection, to show what the
 * connection itself costs. Load throughput: the model is loaded L times
 * (default 5) under fresh names, each waited for and evicted; the table shows
 * the daemon's own load_seconds and load_mb_per_s (raw MB per second) from
 * stats, and the ratio.
 *
 * The daemon must be allowed to read the model's directory:
 *
 *   ./unweightd --socket /tmp/uwb.sock --backend host --allow-dir /path/to/unweight/data --foreground &
 *   bench/uw-bench-attach --socket /tmp/uwb.sock [-n 1000] [-l 5] [MODEL.safetensors]
 *   bench/uw-bench-attach --socket /tmp/uwb.sock --name NAME [-n 1000]
 *
 * --name attaches to a model already loaded under NAME (a large one that
 * bench/load.sh loaded), and neither loads nor evicts anything.
 *
 * The socket defaults to $UNWEIGHT_SOCKET, then the system one; the model to
 * the bundled data/stories260K.safetensors.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"
#include "unweight.h"

#define DEFAULT_MODEL UW_DATADIR "/stories260K.safetensors"

static void die(const char *what)
{
	fprintf(stderr, "uw-bench-attach: %s: %s\n", what, uw_errmsg());
	exit(1);
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The model's stats object, with its document (free the document). */
static const struct json_value *model_stats(uw_client *c, const char *name,
					    struct json_value **doc)
{
	char *text;
	struct uwerr e = {0};
	if (uw_stats_json(c, name, &text) < 0)
		die("stats");
	if (json_parse(text, strlen(text), doc, &e) < 0) {
		fprintf(stderr, "uw-bench-attach: stats reply: %s\n", e.msg);
		exit(1);
	}
	free(text);
	const struct json_value *m = json_get(*doc, "models");
	for (size_t i = 0; m && m->type == JSON_ARR && i < m->u.arr.n; i++) {
		const struct json_value *n = json_get(&m->u.arr.v[i], "name");
		if (n && n->type == JSON_STR && !strcmp(n->u.str.s, name))
			return &m->u.arr.v[i];
	}
	fprintf(stderr, "uw-bench-attach: %s is not in stats\n", name);
	exit(1);
}

static double num(const struct json_value *o, const char *key)
{
	const struct json_value *v = json_get(o, key);
	return v && v->type == JSON_NUM ? v->u.num.d : 0;
}

static const char *str(const struct json_value *o, const char *key)
{
	const struct json_value *v = json_get(o, key);
	return v && v->type == JSON_STR ? v->u.str.s : "";
}

/* Load path as name and wait until it is ready; its stats (free doc). */
static const struct json_value *load_ready(uw_client *c, const char *name,
					   const char *path, struct json_value **doc)
{
	if (uw_load(c, name, &path, 1) < 0)
		die("load");
	for (;;) {
		const struct json_value *m = model_stats(c, name, doc);
		const char *state = str(m, "state");
		if (!strcmp(state, "ready"))
			return m;
		if (strcmp(state, "loading")) {
			fprintf(stderr, "uw-bench-attach: load %s: %s %s\n", name, state,
				str(m, "error"));
			exit(1);
		}
		json_free(*doc);
		nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
	}
}

/* Nearest-rank percentile of sorted us[0..n). */
static double pct(const double *us, int n, double p)
{
	int k = (int)(p / 100 * n + 0.999999) - 1;
	return us[k < 0 ? 0 : k >= n ? n - 1 : k];
}

static void row(const char *what, double *us, int n)
{
	double sum = 0;
	qsort(us, (size_t)n, sizeof(*us), cmp_double);
	for (int i = 0; i < n; i++)
		sum += us[i];
	printf("%-36s %9.1f %9.1f %9.1f %9.1f\n", what, pct(us, n, 50), pct(us, n, 99),
	       us[n - 1], sum / n);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "attaches", required_argument, NULL, 'n' },
		{ "loads", required_argument, NULL, 'l' },
		{ "name", required_argument, NULL, 'N' },
		{ 0 },
	};
	const char *sock = NULL, *path = DEFAULT_MODEL, *loaded = NULL;
	int n = 1000, loads = 5, o;
	while ((o = getopt_long(argc, argv, "s:n:l:", opts, NULL)) != -1) {
		switch (o) {
		case 's': sock = optarg; break;
		case 'N': loaded = optarg; loads = 0; break;
		case 'n': n = atoi(optarg); break;
		case 'l': loads = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: uw-bench-attach [--socket PATH] [-n ATTACHES] "
				"[-l LOADS] [MODEL.safetensors | --name LOADED]\n");
			return 2;
		}
	}
	if (optind < argc)
		path = argv[optind];
	if (n < 1 || loads < 0) {
		fprintf(stderr, "uw-bench-attach: -n must be at least 1, -l at least 0\n");
		return 2;
	}

	uw_client *c;
	uw_model *m;
	struct json_value *doc;
	char name[64];
	if (uw_connect(sock, &c) < 0)
		die("connect");
	if (loaded)
		snprintf(name, sizeof(name), "%s", loaded);
	else
		snprintf(name, sizeof(name), "bench-attach-%d", (int)getpid());
	const struct json_value *ms = loaded ? model_stats(c, name, &doc)
				      : load_ready(c, name, path, &doc);
	printf("model %s: %.0f tensors, %.0f raw bytes, %.0f resident (ratio %.3f)\n\n",
	       loaded ? loaded : path,
	       num(ms, "tensors"), num(ms, "raw_bytes"), num(ms, "resident_bytes"),
	       num(ms, "ratio"));
	json_free(doc);

	double *us = malloc((size_t)n * sizeof(*us));
	if (!us)
		return 1;
	char title[64];
	snprintf(title, sizeof(title), "attach latency, %d runs (us)", n);
	printf("%-36s %9s %9s %9s %9s\n", title, "p50", "p99", "max", "mean");
	for (int i = 0; i < n; i++) {
		uw_client *w;
		double t0 = now_us();
		if (uw_connect(sock, &w) < 0 || uw_attach(w, name, &m) < 0)
			die("attach");
		if (uw_detach(m) < 0)
			die("detach");
		uw_disconnect(w);
		us[i] = now_us() - t0;
	}
	row("connect + attach + map + detach", us, n);
	for (int i = 0; i < n; i++) {
		double t0 = now_us();
		if (uw_attach(c, name, &m) < 0)
			die("attach");
		if (uw_detach(m) < 0)
			die("detach");
		us[i] = now_us() - t0;
	}
	row("attach + map + detach (connected)", us, n);
	free(us);
	if (!loaded && uw_evict(c, name, 0) < 0)
		die("evict");

	if (loads)
		printf("\nload throughput (the daemon's backend)\n%-6s %12s %12s %10s\n", "load",
		       "seconds", "MB/s", "ratio");
	for (int i = 0; i < loads; i++) {
		snprintf(name, sizeof(name), "bench-load-%d-%d", (int)getpid(), i);
		ms = load_ready(c, name, path, &doc);
		printf("%-6d %12.4f %12.1f %10.3f\n", i + 1, num(ms, "load_seconds"),
		       num(ms, "load_mb_per_s"), num(ms, "ratio"));
		json_free(doc);
		if (uw_evict(c, name, 0) < 0)
			die("evict");
	}
	uw_disconnect(c);
	return 0;
}
