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
	const char *out = NULL;
	unsigned flags = 0;
	int threads = 0, c;
	while ((c = getopt_long(argc, argv, "o:t:", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case 'm':
			flags |= UNPACK_MERGE;
			break;
		case 't':
			if ((threads = ctl_threads(optarg)) < 0)
				return ctl_usage_error("unpack", "--threads '%s' is not a count of threads", optarg);
			break;
		default:
			return ctl_usage_error("unpack", "bad option");
		}
	}
	if (argc - optind != 1)
		return ctl_usage_error("unpack", "give exactly one bundle (%d given)", argc - optind);
	if (!out)
		return ctl_usage_error("unpack", "no output given (-o OUT)");
	const char *in = argv[optind];

	struct uwerr e = { 0 };
	struct bundle *b = NULL;
	if (bundle_open(in, &b, &e) ||
	    bundle_unpack(b, out, flags, threads, isatty(STDERR_FILENO), &e)) {
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
