/* cmd_daemon: the subcommands that talk to unweightd through
 * libunweight-client: load, evict, verify, tune, stats, list and status. Human output is
 * read from the daemon's stats JSON (keys in unweightd(8)). */
#include "config.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"
#include "common/progress.h"
#include "common/strbuf.h"
#include "ctl/commands.h"
#include "unweight.h"

#define POLL_NS 20000000L    /* --wait asks the daemon fifty times a second */

static const char *socket_path(const struct ctl_global *g)
{
	const char *env = getenv("UNWEIGHT_SOCKET");
	return g->socket && g->socket[0] ? g->socket
	       : env && env[0] ? env : UW_DEFAULT_SOCKET;
}

static int connect_or_say(const struct ctl_global *g, uw_client **c)
{
	if (uw_connect(socket_path(g), c) < 0)
		return ctl_error("%s", uw_errmsg());
	return CTL_OK;
}

/* The daemon's stats for name (NULL: all), parsed. */
static int fetch_stats(uw_client *c, const char *name, char **text,
		       struct json_value **doc)
{
	struct uwerr e = {0};
	if (uw_stats_json(c, name, text) < 0)
		return ctl_error("%s", uw_errmsg());
	if (json_parse(*text, strlen(*text), doc, &e) < 0 || (*doc)->type != JSON_OBJ) {
		ctl_error("stats reply from unweightd: %s", e.msg[0] ? e.msg : "not an object");
		json_free(*doc);
		free(*text);
		return CTL_ERR;
	}
	return CTL_OK;
}

/* fetch_stats over a connection of its own. */
static int fetch_stats_once(const struct ctl_global *g, const char *name, char **text,
			    struct json_value **doc)
{
	uw_client *c;
	if (connect_or_say(g, &c) != CTL_OK)
		return CTL_ERR;
	int rc = fetch_stats(c, name, text, doc);
	uw_disconnect(c);
	return rc;
}

/* Options of the commands whose only one is -j/--json. */
static int json_option(const char *cmd, int argc, char **argv, int *json)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ 0 },
	};
	int o;
	while ((o = getopt_long(argc, argv, "j", opts, NULL)) != -1) {
		if (o != 'j')
			return ctl_usage_error(cmd, "unknown option");
		*json = 1;
	}
	return CTL_OK;
}

/* ---- reading the stats document ---------------------------------------- */

static const char *jstr(const struct json_value *o, const char *key)
{
	const struct json_value *v = json_get(o, key);
	return v && v->type == JSON_STR ? v->u.str.s : "";
}

static uint64_t ju64(const struct json_value *o, const char *key)
{
	uint64_t n = 0;
	const struct json_value *v = json_get(o, key);
	return v && json_u64(v, &n) == 0 ? n : 0;
}

static double jnum(const struct json_value *o, const char *key)
{
	const struct json_value *v = json_get(o, key);
	return v && v->type == JSON_NUM ? v->u.num.d : 0;
}

/* The array under key, or an empty one. */
static const struct json_value *jarr(const struct json_value *o, const char *key, size_t *n)
{
	const struct json_value *v = json_get(o, key);
	*n = v && v->type == JSON_ARR ? v->u.arr.n : 0;
	return *n ? v->u.arr.v : NULL;
}

static const struct json_value *find_model(const struct json_value *doc, const char *name)
{
	size_t n;
	const struct json_value *m = jarr(doc, "models", &n);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(jstr(&m[i], "name"), name))
			return &m[i];
	return NULL;
}

static void human_bytes(char *buf, size_t n, uint64_t bytes)
{
	static const char units[] = "KMGTP";
	double v = (double)bytes;
	int u = -1;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, n, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, n, "%.1f %ciB", v, units[u]);
}

static void human_time(char *buf, size_t n, double s)
{
	unsigned long t = s > 0 ? (unsigned long)s : 0;
	if (t >= 86400)
		snprintf(buf, n, "%lud %luh %lum", t / 86400, t / 3600 % 24, t / 60 % 60);
	else if (t >= 3600)
		snprintf(buf, n, "%luh %lum %lus", t / 3600, t / 60 % 60, t % 60);
	else if (t >= 60)
		snprintf(buf, n, "%lum %lus", t / 60, t % 60);
	else
		snprintf(buf, n, "%.1fs", s);
}

/* Write v back as JSON text: numbers exactly as the daemon wrote them. */
static void json_emit(struct strbuf *b, const struct json_value *v)
{
	switch (v->type) {
	case JSON_NULL:
		sb_append(b, "null", 4);
		break;
	case JSON_BOOL:
		sb_append(b, v->u.b ? "true" : "false", v->u.b ? 4 : 5);
		break;
	case JSON_NUM:
		sb_append(b, v->u.num.text, v->u.num.text_len);
		break;
	case JSON_STR:
		sb_json_str(b, v->u.str.s, v->u.str.len);
		break;
	case JSON_ARR:
		sb_append(b, "[", 1);
		for (size_t i = 0; i < v->u.arr.n; i++) {
			if (i)
				sb_append(b, ",", 1);
			json_emit(b, &v->u.arr.v[i]);
		}
		sb_append(b, "]", 1);
		break;
	case JSON_OBJ:
		sb_append(b, "{", 1);
		for (size_t i = 0; i < v->u.obj.n; i++) {
			if (i)
				sb_append(b, ",", 1);
			sb_json_str(b, v->u.obj.m[i].key, v->u.obj.m[i].key_len);
			sb_append(b, ":", 1);
			json_emit(b, &v->u.obj.m[i].value);
		}
		sb_append(b, "}", 1);
		break;
	}
}

/* Print b's text and a newline on stdout; CTL_ERR if b ran out of memory. */
static int print_buf(struct strbuf *b)
{
	char *out = sb_take(b);
	if (!out)
		return ctl_error("out of memory");
	printf("%s\n", out);
	free(out);
	return CTL_OK;
}

/* "key": after a comma unless first; then the value's put_* or json_emit. */
static void put_key(struct strbuf *b, int first, const char *key)
{
	sb_printf(b, "%s\"%s\":", first ? "" : ",", key);
}

static void put_str(struct strbuf *b, int first, const char *key, const char *v)
{
	put_key(b, first, key);
	sb_json_str(b, v, strlen(v));
}

/* Member key of o as the daemon wrote it; null when it is absent. */
static void put_member(struct strbuf *b, int first, const struct json_value *o,
		       const char *key)
{
	const struct json_value *v = json_get(o, key);
	put_key(b, first, key);
	if (v)
		json_emit(b, v);
	else
		sb_append(b, "null", 4);
}

/* "NAME: ready, 48 tensors, 508.0 KiB -> 361.5 KiB (ratio 0.712), loaded in 0.01 s (40.2 MB/s)" */
static void print_model_summary(const struct json_value *m)
{
	char raw[16], res[16];
	human_bytes(raw, sizeof(raw), ju64(m, "raw_bytes"));
	human_bytes(res, sizeof(res), ju64(m, "resident_bytes"));
	printf("%s: %s, %llu tensors, %s -> %s (ratio %.3f), loaded in %.2f s (%.1f MB/s)\n",
	       jstr(m, "name"), jstr(m, "state"), (unsigned long long)ju64(m, "tensors"),
	       raw, res, jnum(m, "ratio"), jnum(m, "load_seconds"), jnum(m, "load_mb_per_s"));
}

/* ---- load ------------------------------------------------------------- */

/* Progress where stderr is no terminal (a log, a pipe): a line at each
 * tenth of the way. */
static void progress_line(const char *name, uint64_t done, uint64_t total, unsigned *tenth)
{
	unsigned t = total ? (unsigned)(done * 10 / total) : 10;
	if (t <= *tenth && *tenth != UINT32_MAX)
		return;
	char d[32], a[32];
	human_bytes(d, sizeof(d), done);
	human_bytes(a, sizeof(a), total);
	fprintf(stderr, "load %s: %u%% (%s of %s)\n", name, t * 10, d, a);
	*tenth = t;
}

/* Poll the model until it is ready or failed, drawing a bar on a tty. */
static int wait_loaded(uw_client *c, const char *name, int json)
{
	struct progress *bar = NULL;
	uint64_t shown = 0;
	unsigned tenth = UINT32_MAX;   /* no line yet */
	int tty = isatty(STDERR_FILENO);
	int rc;
	for (;;) {
		char *text;
		struct json_value *doc;
		if (fetch_stats(c, name, &text, &doc) != CTL_OK) {
			rc = CTL_ERR;
			break;
		}
		const struct json_value *m = find_model(doc, name);
		const char *state = m ? jstr(m, "state") : "gone";
		if (m && !strcmp(state, "loading")) {
			uint64_t done = ju64(m, "loaded_bytes");
			if (!tty && !json) {   /* --json: stdout and stderr may be one stream */
				progress_line(name, done, ju64(m, "raw_bytes"), &tenth);
			} else if (!bar) {
				char label[32];
				snprintf(label, sizeof(label), "load %s", name);
				bar = progress_new(label, ju64(m, "raw_bytes"));
			}
			if (done > shown) {
				progress_add(bar, done - shown);
				shown = done;
			}
			json_free(doc);
			free(text);
			nanosleep(&(struct timespec){ 0, POLL_NS }, NULL);
			continue;
		}
		progress_free(bar);
		bar = NULL;
		if (m && !strcmp(state, "ready")) {
			struct strbuf b = {0};
			rc = CTL_OK;
			if (json) {
				json_emit(&b, m);
				rc = print_buf(&b);
			} else {
				print_model_summary(m);
			}
		} else if (m && !strcmp(state, "failed")) {
			rc = ctl_error("load %s failed: %s", name, jstr(m, "error"));
		} else {
			rc = ctl_error("load %s: the model is %s (evicted while loading?)", name,
				       state);
		}
		json_free(doc);
		free(text);
		break;
	}
	progress_free(bar);
	return rc;
}

int cmd_load(int argc, char **argv, const struct ctl_global *g)
{
	static const struct option opts[] = {
		{ "wait", no_argument, NULL, 'w' },
		{ "json", no_argument, NULL, 'j' },
		{ "device", required_argument, NULL, 'd' },
		{ 0 },
	};
	int wait = 0, json = 0, o;
	const char *device = NULL;
	while ((o = getopt_long(argc, argv, "wjd:", opts, NULL)) != -1) {
		if (o == 'w')
			wait = 1;
		else if (o == 'j')
			json = 1;
		else if (o == 'd')
			device = optarg;
		else
			return ctl_usage_error("load", "unknown option");
	}
	if (argc - optind < 2)
		return ctl_usage_error("load", "a model name and at least one path are needed");
	const char *name = argv[optind];
	uw_client *c;
	if (connect_or_say(g, &c) != CTL_OK)
		return CTL_ERR;
	int rc = CTL_OK;
	if (uw_load_device(c, name, device, (const char *const *)argv + optind + 1,
			   (size_t)(argc - optind - 1)) < 0)
		rc = ctl_error("%s", uw_errmsg());
	else if (wait)
		rc = wait_loaded(c, name, json);
	else if (json)
		printf("{\"name\":\"%s\",\"state\":\"loading\"}\n", name);  /* a valid name needs no escaping */
	else
		printf("%s: loading (unweightctl stats %s shows its progress)\n", name, name);
	uw_disconnect(c);
	return rc;
}

/* ---- evict ------------------------------------------------------------ */

int cmd_evict(int argc, char **argv, const struct ctl_global *g)
{
	static const struct option opts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ 0 },
	};
	unsigned flags = 0;
	int o;
	while ((o = getopt_long(argc, argv, "f", opts, NULL)) != -1) {
		if (o != 'f')
			return ctl_usage_error("evict", "unknown option");
		flags |= UW_EVICT_FORCE;
	}
	if (argc - optind != 1)
		return ctl_usage_error("evict", "exactly one model name is needed");
	const char *name = argv[optind];
	uw_client *c;
	if (connect_or_say(g, &c) != CTL_OK)
		return CTL_ERR;
	int rc = CTL_OK;
	if (uw_evict(c, name, flags) < 0)
		rc = ctl_error("%s", uw_errmsg());
	else if (flags & UW_EVICT_FORCE)
		printf("%s: evicted; its memory is released when the last lease ends\n", name);
	else
		printf("%s: evicted\n", name);
	uw_disconnect(c);
	return rc;
}

/* ---- verify ----------------------------------------------------------- */

int cmd_verify(int argc, char **argv, const struct ctl_global *g)
{
	int json = 0, rc = json_option("verify", argc, argv, &json);
	if (rc != CTL_OK)
		return rc;
	if (argc - optind != 1)
		return ctl_usage_error("verify", "exactly one model name is needed");
	const char *name = argv[optind];
	uw_client *c;
	struct uw_verify_result *r;
	if (connect_or_say(g, &c) != CTL_OK)
		return CTL_ERR;
	if (uw_verify(c, name, &r) < 0) {
		rc = ctl_error("%s", uw_errmsg());
		uw_disconnect(c);
		return rc;
	}
	uw_disconnect(c);
	if (json) {
		struct strbuf b = {0};
		sb_printf(&b, "{");
		put_str(&b, 1, "name", name);
		sb_printf(&b, ",\"ok\":%s,\"tensors\":%llu,\"bytes\":%llu,\"seconds\":%.6f,"
			  "\"bad_tensors\":%llu,\"bad\":[", r->nbad ? "false" : "true",
			  (unsigned long long)r->tensors, (unsigned long long)r->bytes, r->seconds,
			  (unsigned long long)r->nbad);
		for (size_t i = 0; i < r->nnames; i++) {
			if (i)
				sb_append(&b, ",", 1);
			sb_json_str(&b, r->bad[i], strlen(r->bad[i]));
		}
		sb_append(&b, "]}", 2);
		rc = print_buf(&b);
	} else {
		char bytes[16];
		human_bytes(bytes, sizeof(bytes), r->bytes);
		if (!r->nbad)
			printf("%s: ok: %llu tensors, %s read in %.3f s, every CRC-32C matches\n", name,
			       (unsigned long long)r->tensors, bytes, r->seconds);
		else
			printf("%s: CORRUPT: %llu of %llu tensors fail their CRC-32C (%s read in %.3f s):\n",
			       name, (unsigned long long)r->nbad, (unsigned long long)r->tensors, bytes,
			       r->seconds);
		for (size_t i = 0; i < r->nnames; i++)
			printf("  %s\n", r->bad[i]);
		if (r->nnames < r->nbad)
			printf("  and %llu more\n", (unsigned long long)(r->nbad - r->nnames));
	}
	if (rc == CTL_OK && r->nbad)
		rc = CTL_ERR;   /* a corrupt model fails the command, whatever the output */
	uw_verify_free(r);
	return rc;
}

/* ---- tune ------------------------------------------------------------- */

/* Poll the tuner until it has done job; then say what the job did. */
static int wait_tuned(uw_client *c, uint64_t job, const char *what, int json)
{
	unsigned shown = UINT32_MAX;
	for (;;) {
		char *text;
		struct json_value *doc;
		if (fetch_stats(c, NULL, &text, &doc) != CTL_OK)
			return CTL_ERR;
		const struct json_value *t = json_get(doc, "tune");
		int rc = CTL_OK, done = t && ju64(t, "done") >= job;
		const struct json_value *last = t ? json_get(t, "last") : NULL;
		if (!t) {
			rc = ctl_error("tune %s: the daemon's statistics say nothing of its tuner", what);
			done = 1;
		} else if (done && json) {
			static const char *const keys[] = { "models", "entries", "rejected", "seconds",
							    "error" };
			struct strbuf b = {0};
			sb_printf(&b, "{\"job\":%llu", (unsigned long long)job);
			for (size_t k = 0; last && ju64(last, "job") == job && k < 5; k++)
				put_member(&b, 0, last, keys[k]);
			sb_append(&b, "}", 1);
			rc = print_buf(&b);
		} else if (done && last && ju64(last, "job") == job) {
			printf("tune %s: %llu model%s, %llu entries written to %s/matmul.tune in %.1f s\n",
			       what, (unsigned long long)ju64(last, "models"),
			       ju64(last, "models") == 1 ? "" : "s",
			       (unsigned long long)ju64(last, "entries"), jstr(t, "dir"),
			       jnum(last, "seconds"));
			if (ju64(last, "rejected"))
				fprintf(stderr, "unweightctl: tune %s: %llu candidates failed their check "
					"(unweightd's log says which)\n", what,
					(unsigned long long)ju64(last, "rejected"));
			if (*jstr(last, "error"))
				rc = ctl_error("tune %s: %s", what, jstr(last, "error"));
		} else if (done) {
			printf("tune %s: done\n", what);
		} else if (!json && ju64(t, "shapes_done") != shown && *jstr(t, "model")) {
			shown = (unsigned)ju64(t, "shapes_done");
			fprintf(stderr, "tune %s: shape %u of %llu\n", jstr(t, "model"), shown,
				(unsigned long long)ju64(t, "shapes_total"));
		}
		json_free(doc);
		free(text);
		if (done)
			return rc;
		nanosleep(&(struct timespec){ 0, POLL_NS }, NULL);
	}
}

int cmd_tune(int argc, char **argv, const struct ctl_global *g)
{
	static const struct option opts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ "wait", no_argument, NULL, 'w' },
		{ "json", no_argument, NULL, 'j' },
		{ 0 },
	};
	int wait = 0, json = 0, o;
	unsigned flags = 0;
	while ((o = getopt_long(argc, argv, "fwj", opts, NULL)) != -1) {
		if (o == 'f')
			flags |= UW_TUNE_FORCE;
		else if (o == 'w')
			wait = 1;
		else if (o == 'j')
			json = 1;
		else
			return ctl_usage_error("tune", "unknown option");
	}
	if (argc - optind > 1)
		return ctl_usage_error("tune", "at most one model name");
	const char *name = argc > optind ? argv[optind] : NULL;
	const char *what = name ? name : "(every ready model)";
	uw_client *c;
	if (connect_or_say(g, &c) != CTL_OK)
		return CTL_ERR;
	uint64_t job = 0;
	int rc = CTL_OK;
	if (uw_tune(c, name, flags, &job) < 0)
		rc = ctl_error("%s", uw_errmsg());
	else if (wait)
		rc = wait_tuned(c, job, what, json);
	else if (json)
		printf("{\"job\":%llu}\n", (unsigned long long)job);
	else
		printf("tune %s: job %llu queued (unweightctl stats shows its progress)\n", what,
		       (unsigned long long)job);
	uw_disconnect(c);
	return rc;
}

/* ---- stats and list --------------------------------------------------- */

/* "verify  CORRUPT (1 bad tensor: w1) at 2026-12-01 10:00:00 UTC, 3 of 5 failed" */
static void print_verify(const struct json_value *x)
{
	const char *state = jstr(x, "verify_state");
	if (!*state || !strcmp(state, "never")) {
		printf("  %-18s never\n", "verify");
		return;
	}
	char when[64] = "?";
	time_t at = (time_t)jnum(x, "verified_at");
	struct tm tm;
	if (gmtime_r(&at, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
	printf("  %-18s %s", "verify", !strcmp(state, "corrupt") ? "CORRUPT" : state);
	size_t n;
	const struct json_value *bad = jarr(x, "verify_bad", &n);
	if (!strcmp(state, "corrupt")) {
		printf(" (%llu bad tensor%s:", (unsigned long long)ju64(x, "verify_bad_tensors"),
		       ju64(x, "verify_bad_tensors") == 1 ? "" : "s");
		for (size_t i = 0; i < n; i++)
			printf(" %s", bad[i].type == JSON_STR ? bad[i].u.str.s : "?");
		printf("%s)", n < ju64(x, "verify_bad_tensors") ? " ..." : "");
	} else if (!strcmp(state, "error")) {
		printf(" (%s)", jstr(x, "verify_error"));
	}
	printf(" at %s in %.3f s; %llu of %llu failed\n", when, jnum(x, "verify_seconds"),
	       (unsigned long long)ju64(x, "verify_failures"),
	       (unsigned long long)ju64(x, "verify_count"));
}

static void print_stats(const struct json_value *doc)
{
	char up[32], b[3][16];
	size_t n;
	human_time(up, sizeof(up), jnum(doc, "uptime_s"));
	printf("%s (pid %llu), backend %s, up %s\n", jstr(doc, "daemon"),
	       (unsigned long long)ju64(doc, "pid"), jstr(doc, "backend"), up);
	const struct json_value *t = json_get(doc, "tune"), *ol = t ? json_get(t, "on_load") : NULL;
	if (t)
		printf("tuner %s, cache %s/matmul.tune, tune on load: %s\n", jstr(t, "state"),
		       jstr(t, "dir"), ol && ol->type == JSON_BOOL && ol->u.b ? "on" : "off");
	printf("\n");

	const struct json_value *d = jarr(doc, "devices", &n);
	printf("%-12s %12s %12s %12s  %s\n", "DEVICE", "BUDGET", "USED", "FREE", "UUID");
	for (size_t i = 0; i < n; i++) {
		human_bytes(b[0], sizeof(b[0]), ju64(&d[i], "budget"));
		human_bytes(b[1], sizeof(b[1]), ju64(&d[i], "used"));
		human_bytes(b[2], sizeof(b[2]), ju64(&d[i], "free"));
		printf("%-12s %12s %12s %12s  %s\n", jstr(&d[i], "name"), b[0], b[1], b[2],
		       jstr(&d[i], "uuid"));
	}

	const struct json_value *m = jarr(doc, "models", &n);
	for (size_t i = 0; i < n; i++) {
		const struct json_value *x = &m[i];
		human_bytes(b[0], sizeof(b[0]), ju64(x, "raw_bytes"));
		human_bytes(b[1], sizeof(b[1]), ju64(x, "resident_bytes"));
		human_bytes(b[2], sizeof(b[2]), ju64(x, "loaded_bytes"));
		printf("\nmodel %s\n", jstr(x, "name"));
		printf("  %-18s %s\n", "state", jstr(x, "state"));
		if (json_get(x, "error"))
			printf("  %-18s %s\n", "error", jstr(x, "error"));
		printf("  %-18s %s\n", "device", jstr(x, "device"));
		printf("  %-18s %llu\n", "tensors", (unsigned long long)ju64(x, "tensors"));
		printf("  %-18s %s\n", "raw", b[0]);
		printf("  %-18s %s\n", "resident", b[1]);
		printf("  %-18s %.3f\n", "ratio", jnum(x, "ratio"));
		printf("  %-18s %s (%.0f%%)\n", "loaded", b[2], 100 * jnum(x, "progress"));
		printf("  %-18s %.3f s\n", "load time", jnum(x, "load_seconds"));
		printf("  %-18s %.1f MB/s\n", "load throughput", jnum(x, "load_mb_per_s"));
		printf("  %-18s %llu\n", "attached clients",
		       (unsigned long long)ju64(x, "attached_clients"));
		printf("  %-18s %llu\n", "attach count", (unsigned long long)ju64(x, "attach_count"));
		print_verify(x);
	}
}

int cmd_stats(int argc, char **argv, const struct ctl_global *g)
{
	int json = 0, rc = json_option("stats", argc, argv, &json);
	if (rc != CTL_OK)
		return rc;
	if (argc - optind > 1)
		return ctl_usage_error("stats", "at most one model name");
	char *text;
	struct json_value *doc;
	rc = fetch_stats_once(g, argc > optind ? argv[optind] : NULL, &text, &doc);
	if (rc != CTL_OK)
		return rc;
	if (json)
		printf("%s\n", text);
	else
		print_stats(doc);
	json_free(doc);
	free(text);
	return CTL_OK;
}

int cmd_list(int argc, char **argv, const struct ctl_global *g)
{
	static const char *const keys[] = { "name", "state", "tensors", "resident_bytes",
					    "ratio", "attached_clients" };
	int json = 0, rc = json_option("list", argc, argv, &json);
	if (rc != CTL_OK)
		return rc;
	if (argc != optind)
		return ctl_usage_error("list", "no arguments are taken");
	char *text;
	struct json_value *doc;
	rc = fetch_stats_once(g, NULL, &text, &doc);
	if (rc != CTL_OK)
		return rc;
	size_t n;
	const struct json_value *m = jarr(doc, "models", &n);
	if (json) {
		struct strbuf b = {0};
		sb_append(&b, "[", 1);
		for (size_t i = 0; i < n; i++) {
			sb_append(&b, i ? ",{" : "{", i ? 2 : 1);
			for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
				put_member(&b, k == 0, &m[i], keys[k]);
			sb_append(&b, "}", 1);
		}
		sb_append(&b, "]", 1);
		rc = print_buf(&b);
	} else {
		printf("%-24s %-9s %8s %12s %7s %8s\n", "NAME", "STATE", "TENSORS",
		       "RESIDENT", "RATIO", "CLIENTS");
		for (size_t i = 0; i < n; i++) {
			char res[16];
			human_bytes(res, sizeof(res), ju64(&m[i], "resident_bytes"));
			printf("%-24s %-9s %8llu %12s %7.3f %8llu\n", jstr(&m[i], "name"),
			       jstr(&m[i], "state"), (unsigned long long)ju64(&m[i], "tensors"),
			       res, jnum(&m[i], "ratio"),
			       (unsigned long long)ju64(&m[i], "attached_clients"));
		}
	}
	json_free(doc);
	free(text);
	return rc;
}

/* ---- status ----------------------------------------------------------- */

int cmd_status(int argc, char **argv, const struct ctl_global *g)
{
	int json = 0, rc = json_option("status", argc, argv, &json);
	if (rc != CTL_OK)
		return rc;
	if (argc != optind)
		return ctl_usage_error("status", "no arguments are taken");
	const char *path = socket_path(g);
	struct strbuf b = {0};
	uw_client *c;
	if (uw_connect(path, &c) < 0) {
		const char *why = uw_errmsg();
		if (json) {
			sb_printf(&b, "{\"running\":false");
			put_str(&b, 0, "socket", path);
			put_str(&b, 0, "error", why);
			sb_append(&b, "}", 1);
			print_buf(&b);
		} else {
			printf("unweightd is not running: %s\n", why);
		}
		return CTL_ERR;
	}
	char *text;
	struct json_value *doc;
	rc = fetch_stats(c, NULL, &text, &doc);
	uw_disconnect(c);
	if (rc != CTL_OK)
		return rc;
	size_t n, ready = 0;
	const struct json_value *m = jarr(doc, "models", &n);
	for (size_t i = 0; i < n; i++)
		ready += !strcmp(jstr(&m[i], "state"), "ready");
	if (json) {
		sb_printf(&b, "{\"running\":true");
		put_str(&b, 0, "socket", path);
		put_member(&b, 0, doc, "daemon");
		put_member(&b, 0, doc, "backend");
		put_member(&b, 0, doc, "uptime_s");
		sb_printf(&b, ",\"models\":%zu,\"ready\":%zu}", n, ready);
		rc = print_buf(&b);
	} else {
		char up[32];
		human_time(up, sizeof(up), jnum(doc, "uptime_s"));
		printf("%s is running at %s: backend %s, up %s, %zu model%s (%zu ready)\n",
		       jstr(doc, "daemon"), path, jstr(doc, "backend"), up, n,
		       n == 1 ? "" : "s", ready);
	}
	json_free(doc);
	free(text);
	return rc;
}
