/* cmd_pack: `unweightctl pack IN... -o OUT.uwb`: a checkpoint into a bundle. */
#include "config.h"  /* first: _GNU_SOURCE */
#include <getopt.h>
#include <stdio.h>
#include <unistd.h>

#include "ctl/commands.h"
#include "format/pack.h"

int cmd_pack(int argc, char **argv, const struct ctl_global *g)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "threads", required_argument, NULL, 't' },
		{ 0 },
	};
	struct ctl_opts o = { 0 };
	int rc = ctl_getopt("pack", argc, argv, "o:t:", opts, &o);
	if (rc != CTL_OK)
		return rc;
	if (optind >= argc)
		return ctl_usage_error("pack", "no input checkpoint given");
	if (!o.out)
		return ctl_usage_error("pack", "no output given (-o OUT.uwb)");
	const char *out = o.out;

	struct uwerr e = { 0 };
	struct pack_stats st;
	if (bundle_pack((const char *const *)argv + optind, (size_t)(argc - optind), out, o.threads,
			isatty(STDERR_FILENO), &st, &e)) {
		uwerr_prefix(&e, "pack %s", out);
		return ctl_error("%s", e.msg);
	}
	printf("%s: %zu tensors, %llu bytes raw, %llu bytes stored (%.2f%%, file %llu bytes)\n",
	       out, st.ntensors, (unsigned long long)st.raw_bytes,
	       (unsigned long long)st.stored_bytes,
	       st.raw_bytes ? 100.0 * (double)st.stored_bytes / (double)st.raw_bytes : 100.0,
	       (unsigned long long)st.file_bytes);
	return CTL_OK;
}
