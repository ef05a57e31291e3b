/* cmd_unpack: `unweightctl unpack IN.uwb -o OUT`: the original safetensors back. */
#include "config.h"  /* first: _GNU_SOURCE */
#include <getopt.h>
#include <stdio.h>
#include <unistd.h>

#include "ctl/commands.h"
#include "format/pack.h"

int cmd_unpack(int argc, char **argv, const struct ctl_global *g)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "merge", no_argument, NULL, 'm' },
		{ "threads", required_argument, NULL, 't' },
		{ 0 },
	};
	struct ctl_opts o = { 0 };
	int rc = ctl_getopt("unpack", argc, argv, "o:t:", opts, &o);
	if (rc != CTL_OK)
		return rc;
	if (argc - optind != 1)
		return ctl_usage_error("unpack", "give exactly one bundle (%d given)", argc - optind);
	if (!o.out)
		return ctl_usage_error("unpack", "no output given (-o OUT)");
	const char *in = argv[optind], *out = o.out;
	unsigned flags = o.merge ? UNPACK_MERGE : 0;

	struct uwerr e = { 0 };
	struct bundle *b = NULL;
	if (bundle_open(in, &b, &e) ||
	    bundle_unpack(b, out, flags, o.threads, isatty(STDERR_FILENO), &e)) {
		bundle_close(b);
		uwerr_prefix(&e, "unpack %s", in);
		return ctl_error("%s", e.msg);
	}
	if (bundle_unpacks_to_dir(b, flags))
		printf("%s: %zu tensors in %zu shard files%s\n", out, b->ntensors, b->nshards,
		       b->index_name ? " and the index" : "");
	else
		printf("%s: %zu tensors\n", out, b->ntensors);
	bundle_close(b);
	return CTL_OK;
}
