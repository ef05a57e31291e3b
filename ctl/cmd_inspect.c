/* cmd_inspect: `unweightctl inspect IN.uwb [--json]`: per tensor, how it is
 * stored at rest and resident (for both of the daemon's preferences),
 * beside the exponent entropy bound. */
#include "config.h"  /* first: _GNU_SOURCE */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/progress.h"
#include "common/strbuf.h"
#include "ctl/commands.h"
#include "format/bundle.h"
#include "format/dtype.h"
#include "format/restcodec.h"
#include "kernels/resident.h"

/* The figures of one tensor, or summed over a group of them. */
struct figures {
	size_t ntensors;
	uint64_t weights, raw, stored, resident, resident_size;
	int res_format, size_format; /* one tensor: enum uw_format, for speed and size */
	uint64_t bf16_weights;       /* the weights the entropy figures cover */
	double entropy_sum;          /* exponent entropy x weights, over BF16 tensors */
	double coverage_sum;         /* palette-16 coverage x weights, likewise */
};

static const char *enc_name(int enc)
{
	switch (enc) {
	case REST_RAW: return "raw";
	case REST_EXPHUF: return "exphuf";
	case REST_ZSTD: return "zstd";
	default: return "?";
	}
}

static const char *res_name(int format)
{
	return format == UW_FORMAT_R12 ? "r12" : format == UW_FORMAT_R11 ? "r11" : "raw";
}

static void add(struct figures *sum, const struct figures *f)
{
	sum->ntensors += f->ntensors;
	sum->weights += f->weights;
	sum->raw += f->raw;
	sum->stored += f->stored;
	sum->resident += f->resident;
	sum->resident_size += f->resident_size;
	sum->bf16_weights += f->bf16_weights;
	sum->entropy_sum += f->entropy_sum;
	sum->coverage_sum += f->coverage_sum;
}

/* Bits per weight, NAN where there are no weights. */
static double bits(uint64_t bytes, uint64_t weights)
{
	return weights ? 8.0 * (double)bytes / (double)weights : NAN;
}

/* The entropy bound of BF16 weights: the exponent's entropy plus the 8 raw
 * bits of sign and mantissa. Over a group, the weighted mean of the
 * per-tensor bounds, as each tensor has its own code. */
static double bound(const struct figures *f)
{
	return f->bf16_weights ? f->entropy_sum / (double)f->bf16_weights + 8.0 : NAN;
}

static double coverage(const struct figures *f)
{
	return f->bf16_weights ? f->coverage_sum / (double)f->bf16_weights : NAN;
}

/* Decode tensor i and measure it. buf holds raw_bytes. */
static int measure(const struct bundle *b, size_t i, void *buf, int threads,
		   struct figures *f, struct uwerr *e)
{
	const struct bundle_tensor *t = &b->tensors[i];
	struct uw_layout l, ls;
	int rc;
	if ((rc = bundle_read_tensor(b, i, buf, threads, e)))
		return rc;
	if ((rc = res_plan(t->dtype, t->ndim, t->shape, buf, t->raw_bytes, RES_PREFER_SPEED, &l, e)) ||
	    (rc = res_plan(t->dtype, t->ndim, t->shape, buf, t->raw_bytes, RES_PREFER_SIZE, &ls, e)))
		return uwerr_prefix(e, "tensor '%s': resident layout", t->name);
	*f = (struct figures){
		.ntensors = 1, .weights = t->raw_bytes / dtype_size(t->dtype), .raw = t->raw_bytes,
		.stored = t->length, .resident = l.nbytes, .resident_size = ls.nbytes,
		.res_format = (int)l.format, .size_format = (int)ls.format,
	};
	if (t->dtype == UW_DTYPE_BF16 && f->weights) {
		struct exp_stats s;
		exp_stats_bf16(buf, f->weights, &s);
		f->bf16_weights = f->weights;
		f->entropy_sum = s.entropy_bits * (double)f->weights;
		f->coverage_sum = s.palette16_coverage * (double)f->weights;
	}
	return 0;
}

static void shape_str(const struct bundle_tensor *t, char *buf, size_t n)
{
	size_t at = 0;
	buf[0] = '\0';
	for (int d = 0; d < t->ndim && at < n; d++)
		at += (size_t)snprintf(buf + at, n - at, "%s%llu", d ? "x" : "",
				       (unsigned long long)t->shape[d]);
	if (t->ndim == 0)
		snprintf(buf, n, "scalar");
}

/* ---- JSON ---- */

static void json_num(struct strbuf *s, const char *key, double v)
{
	if (isfinite(v))
		sb_printf(s, ",\"%s\":%.6f", key, v);
	else
		sb_printf(s, ",\"%s\":null", key);
}

static void json_figures(struct strbuf *s, const struct figures *f)
{
	sb_printf(s, "\"raw_bytes\":%llu,\"stored_bytes\":%llu,\"resident_bytes\":%llu,"
		  "\"resident_size_bytes\":%llu", (unsigned long long)f->raw,
		  (unsigned long long)f->stored, (unsigned long long)f->resident,
		  (unsigned long long)f->resident_size);
	json_num(s, "bits_at_rest", bits(f->stored, f->weights));
	json_num(s, "bits_resident", bits(f->resident, f->weights));
	json_num(s, "bits_resident_size", bits(f->resident_size, f->weights));
	json_num(s, "entropy_bound", bound(f));
	json_num(s, "palette16_coverage", coverage(f));
}

static void json_group(struct strbuf *s, const char *key, const struct figures *f)
{
	sb_printf(s, ",\"%s\":{\"tensors\":%zu,\"weights\":%llu,", key, f->ntensors,
		  (unsigned long long)f->weights);
	json_figures(s, f);
	sb_append(s, "}", 1);
}

static char *report_json(const char *path, const struct bundle *b, const struct figures *rows,
			 const struct figures *total, const struct figures *mlp)
{
	struct strbuf s = { 0 };
	sb_append(&s, "{\"bundle\":", 10);
	sb_json_str(&s, path, strlen(path));
	sb_printf(&s, ",\"version\":%d,\"file_bytes\":%llu,\"index\":", BUNDLE_VERSION,
		  (unsigned long long)b->file_size);
	if (b->index_name)
		sb_json_str(&s, b->index_name, strlen(b->index_name));
	else
		sb_append(&s, "null", 4);
	sb_append(&s, ",\"shards\":[", 11);
	for (size_t i = 0; i < b->nshards; i++) {
		sb_append(&s, i ? ",{\"name\":" : "{\"name\":", i ? 9 : 8);
		sb_json_str(&s, b->shards[i].name, strlen(b->shards[i].name));
		sb_printf(&s, ",\"tensors\":%zu}", b->shards[i].count);
	}
	sb_append(&s, "],\"tensors\":[", 13);
	for (size_t i = 0; i < b->ntensors; i++) {
		const struct bundle_tensor *t = &b->tensors[i];
		sb_append(&s, i ? ",{\"name\":" : "{\"name\":", i ? 9 : 8);
		sb_json_str(&s, t->name, strlen(t->name));
		sb_printf(&s, ",\"dtype\":\"%s\",\"shape\":[", dtype_name(t->dtype));
		for (int d = 0; d < t->ndim; d++)
			sb_printf(&s, "%s%llu", d ? "," : "", (unsigned long long)t->shape[d]);
		sb_printf(&s, "],\"shard\":%u,\"encoding\":\"%s\",\"resident_format\":\"%s\","
			  "\"resident_format_size\":\"%s\",\"weights\":%llu,", t->shard,
			  enc_name(t->enc), res_name(rows[i].res_format), res_name(rows[i].size_format),
			  (unsigned long long)rows[i].weights);
		json_figures(&s, &rows[i]);
		sb_append(&s, "}", 1);
	}
	sb_append(&s, "]", 1);
	json_group(&s, "total", total);
	json_group(&s, "mlp", mlp);
	sb_append(&s, "}\n", 2);
	return sb_take(&s);
}

/* ---- table ---- */

static void fmt_num(char *buf, size_t n, double v, int digits, const char *suffix)
{
	if (isfinite(v))
		snprintf(buf, n, "%.*f%s", digits, v, suffix);
	else
		snprintf(buf, n, "-");
}

static void table_row(int w, const char *name, const char *dtype, const char *shape,
		      const char *enc, const struct figures *f)
{
	char rest[16], res[16], size[16], bnd[16], cov[16];
	fmt_num(rest, sizeof(rest), bits(f->stored, f->weights), 2, "");
	fmt_num(res, sizeof(res), bits(f->resident, f->weights), 2, "");
	fmt_num(size, sizeof(size), bits(f->resident_size, f->weights), 2, "");
	fmt_num(bnd, sizeof(bnd), bound(f), 2, "");
	fmt_num(cov, sizeof(cov), 100.0 * coverage(f), 3, "%");
	printf("%-*s %-5s %-11s %-14s %12llu %12llu %6s %6s %6s %6s %9s\n", w, name, dtype, shape,
	       enc, (unsigned long long)f->raw, (unsigned long long)f->stored, rest, res, size, bnd,
	       cov);
}

static void report_table(const struct bundle *b, const struct figures *rows,
			 const struct figures *total, const struct figures *mlp)
{
	int w = 6;
	for (size_t i = 0; i < b->ntensors; i++) {
		int len = (int)strlen(b->tensors[i].name);
		w = len > w ? len : w;
	}
	printf("%-*s %-5s %-11s %-14s %12s %12s %6s %6s %6s %6s %9s\n", w, "tensor", "dtype",
	       "shape", "rest/res/size", "raw bytes", "stored", "b/w", "b/w", "b/w", "bound", "pal16");
	printf("%-*s %-5s %-11s %-14s %12s %12s %6s %6s %6s %6s %9s\n", w, "", "", "", "", "", "",
	       "rest", "res", "size", "", "");
	for (size_t i = 0; i < b->ntensors; i++) {
		const struct bundle_tensor *t = &b->tensors[i];
		char shape[96], enc[32];
		shape_str(t, shape, sizeof(shape));
		snprintf(enc, sizeof(enc), "%s/%s/%s", enc_name(t->enc), res_name(rows[i].res_format),
			 res_name(rows[i].size_format));
		table_row(w, t->name, dtype_name(t->dtype), shape, enc, &rows[i]);
	}
	char label[48];
	snprintf(label, sizeof(label), "total (%zu tensors)", total->ntensors);
	table_row(w, label, "", "", "", total);
	snprintf(label, sizeof(label), "mlp (%zu tensors)", mlp->ntensors);
	table_row(w, label, "", "", "", mlp);
}

int cmd_inspect(int argc, char **argv, const struct ctl_global *g)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "threads", required_argument, NULL, 't' },
		{ 0 },
	};
	struct ctl_opts o = { 0 };
	int rc = ctl_getopt("inspect", argc, argv, "t:", opts, &o);
	if (rc != CTL_OK)
		return rc;
	if (argc - optind != 1)
		return ctl_usage_error("inspect", "give exactly one bundle (%d given)", argc - optind);
	const char *in = argv[optind];

	struct uwerr e = { 0 };
	struct bundle *b = NULL;
	struct figures *rows = NULL, total = { 0 }, mlp = { 0 };
	struct progress *p = NULL;
	void *buf = NULL;
	rc = CTL_ERR;
	if (bundle_open(in, &b, &e))
		goto fail;
	uint64_t most = 1, all = 0;
	for (size_t i = 0; i < b->ntensors; i++) {
		all += b->tensors[i].raw_bytes;
		if (b->tensors[i].raw_bytes > most)
			most = b->tensors[i].raw_bytes;
	}
	rows = calloc(b->ntensors ? b->ntensors : 1, sizeof(*rows));
	buf = malloc(most);
	if (!rows || !buf) {
		uwerr_set(&e, ENOMEM, "out of memory for a tensor of %llu bytes",
			  (unsigned long long)most);
		goto fail;
	}
	p = isatty(STDERR_FILENO) ? progress_new("inspect", all) : NULL;
	for (size_t i = 0; i < b->ntensors; i++) {
		if (measure(b, i, buf, o.threads, &rows[i], &e))
			goto fail;
		add(&total, &rows[i]);
		if (strstr(b->tensors[i].name, "mlp."))
			add(&mlp, &rows[i]);
		progress_add(p, b->tensors[i].raw_bytes);
	}
	progress_free(p);
	p = NULL;
	if (o.json) {
		char *text = report_json(in, b, rows, &total, &mlp);
		if (!text) {
			uwerr_set(&e, ENOMEM, "out of memory for the report");
			goto fail;
		}
		fputs(text, stdout);
		free(text);
	} else {
		report_table(b, rows, &total, &mlp);
	}
	rc = fflush(stdout) == 0 ? CTL_OK : ctl_error("inspect %s: writing the report failed", in);
	goto out;
fail:
	progress_free(p);
	uwerr_prefix(&e, "inspect %s", in);
	ctl_error("%s", e.msg);
out:
	free(buf);
	free(rows);
	bundle_close(b);
	return rc;
}
