/* stats: the stats document (see stats.h). */
#include "config.h"

#include "daemon/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/strbuf.h"
#include "daemon/backend.h"
#include "daemon/conf.h"
#include "daemon/loader.h"
#include "daemon/registry.h"
#include "daemon/tune.h"
#include "daemon/uwd.h"

/* JSON has no NaN or infinity. */
static double json_num(double x)
{
	return isfinite(x) ? x : 0.0;
}

static void key_str(struct strbuf *b, const char *key, const char *v)
{
	sb_printf(b, "\"%s\":", key);
	sb_json_str(b, v, strlen(v));
}

/* The last verify of a model, and how many there were. */
static void verify_json(struct strbuf *b, const struct model_snap *m)
{
	static const char *const states[] = {
		[VERIFY_NEVER] = "never", [VERIFY_OK] = "ok", [VERIFY_CORRUPT] = "corrupt",
		[VERIFY_ERROR] = "error",
	};
	const struct verify_record *v = &m->verify;
	sb_append(b, ",", 1);
	key_str(b, "verify_state", states[v->state]);
	sb_printf(b, ",\"verify_count\":%llu,\"verify_failures\":%llu,\"verified_at\":%.3f,"
		  "\"verify_seconds\":%.6f,\"verify_bad_tensors\":%llu,\"verify_bad\":[",
		  (unsigned long long)m->verify_count, (unsigned long long)m->verify_failures,
		  json_num(v->at), json_num(v->seconds), (unsigned long long)v->nbad);
	for (size_t i = 0; i < v->nnames; i++) {
		if (i)
			sb_append(b, ",", 1);
		sb_json_str(b, m->bad[i], strlen(m->bad[i]));
	}
	sb_append(b, "]", 1);
	if (v->state == VERIFY_ERROR) {
		sb_append(b, ",", 1);
		key_str(b, "verify_error", v->error);
	}
}

static void model_json(struct strbuf *b, const struct backend *be, const struct model_snap *m)
{
	sb_append(b, "{", 1);
	key_str(b, "name", m->name);
	sb_append(b, ",", 1);
	key_str(b, "state", m->state);
	sb_append(b, ",", 1);
	key_str(b, "device", strcmp(m->state, "failed") ? be->dev[m->dev].name : "");
	double ratio = m->raw_bytes ? (double)m->resident_bytes / (double)m->raw_bytes : 0;
	double done = m->raw_bytes ? (double)m->loaded_bytes / (double)m->raw_bytes : 0;
	double mbps = m->load_seconds > 0 ? (double)m->loaded_bytes / 1e6 / m->load_seconds : 0;
	sb_printf(b, ",\"tensors\":%llu,\"raw_bytes\":%llu,\"resident_bytes\":%llu,"
		  "\"ratio\":%.6f,\"load_seconds\":%.6f,\"load_mb_per_s\":%.3f,"
		  "\"progress\":%.6f,\"loaded_bytes\":%llu,"
		  "\"attached_clients\":%u,\"attach_count\":%llu",
		  (unsigned long long)m->tensors, (unsigned long long)m->raw_bytes,
		  (unsigned long long)m->resident_bytes, json_num(ratio), json_num(m->load_seconds),
		  json_num(mbps), json_num(done), (unsigned long long)m->loaded_bytes, m->leases,
		  (unsigned long long)m->attach_count);
	verify_json(b, m);
	if (m->error) {
		sb_append(b, ",", 1);
		key_str(b, "error", m->error);
	}
	sb_append(b, "}", 1);
}

int stats_json(struct uwd *d, const char *name, char **out, struct uwerr *e)
{
	struct registry_snap s;
	int rc = registry_snapshot(d->reg, name && *name ? name : NULL, &s, e);
	if (rc)
		return rc;
	struct strbuf b = {0};
	sb_printf(&b, "{\"daemon\":\"unweightd %s\",\"pid\":%ld,\"uptime_s\":%.3f,",
		  PACKAGE_VERSION, (long)getpid(), json_num(uwd_now() - d->started));
	key_str(&b, "backend", d->be->ops->name);
	unsigned running, queued;
	loader_counts(d->ld, &running, &queued);
	sb_printf(&b, ",\"loads_running\":%u,\"loads_queued\":%u,\"verify_interval_s\":%u",
		  running, queued, d->cfg->verify_interval);
	tuner_stats(d->tune, &b);
	sb_append(&b, ",\"devices\":[", 12);
	for (int i = 0; i < d->be->ndev; i++) {
		const struct backend_device *dev = &d->be->dev[i];
		uint64_t used = s.used[i];
		sb_append(&b, i ? ",{" : "{", i ? 2 : 1);
		key_str(&b, "name", dev->name);
		sb_append(&b, ",", 1);
		key_str(&b, "uuid", dev->uuid);
		sb_printf(&b, ",\"budget\":%llu,\"used\":%llu,\"free\":%llu}",
			  (unsigned long long)dev->budget, (unsigned long long)used,
			  (unsigned long long)(dev->budget > used ? dev->budget - used : 0));
	}
	sb_append(&b, "],\"models\":[", 12);
	for (size_t i = 0; i < s.n; i++) {
		if (i)
			sb_append(&b, ",", 1);
		model_json(&b, d->be, &s.m[i]);
	}
	sb_append(&b, "]}", 2);
	registry_snap_free(&s);
	if (!(*out = sb_take(&b)))
		return uwerr_set(e, ENOMEM, "stats: out of memory");
	return 0;
}
