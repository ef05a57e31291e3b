/* unweightctl: the operator's tool; global options, then one subcommand
 * from the table below (see unweightctl(1)). */
#include "config.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/commands.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv, const struct ctl_global *g);
	const char *args;            /* the usage line after the name */
	const char *summary;
};

/* One line per subcommand; the daemon's commands join here. */
static const struct command commands[] = {
	{ "pack", cmd_pack, "IN.safetensors|INDEX.json... -o OUT.uwb [--threads N]",
	  "compress a safetensors checkpoint into a bundle" },
	{ "unpack", cmd_unpack, "IN.uwb -o OUT [--merge] [--threads N]",
	  "restore the original safetensors files from a bundle" },
	{ "inspect", cmd_inspect, "IN.uwb [--json] [--threads N]",
	  "show each tensor's encoding, sizes and compression bounds" },
	{ "load", cmd_load, "NAME PATH... [--device DEV] [--wait] [--json]",
	  "load a checkpoint into unweightd (--wait: until it is ready)" },
	{ "evict", cmd_evict, "NAME [--force]",
	  "unload a model (--force: even while clients hold leases)" },
	{ "verify", cmd_verify, "NAME [--json]",
	  "re-read a loaded model and check every tensor's CRC-32C (exit 1: corrupt)" },
	{ "tune", cmd_tune, "[NAME] [--force] [--wait] [--json]",
	  "time the GPU matmul kernels for a model's shapes and cache the fastest" },
	{ "stats", cmd_stats, "[NAME] [--json]",
	  "the daemon's statistics: devices, models, uptime" },
	{ "list", cmd_list, "[--json]",
	  "one line per loaded model" },
	{ "status", cmd_status, "[--json]",
	  "whether unweightd is up (exit 1 if it cannot be reached)" },
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct command *find(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: unweightctl [--socket PATH] COMMAND [ARGS]\n"
		   "       unweightctl --help | --version\n\ncommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nunweightctl COMMAND --help shows a command's arguments; see unweightctl(1).\n");
}

int ctl_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "unweightctl %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	const struct command *c = find(cmd);
	if (c)
		fprintf(stderr, "\nusage: unweightctl %s %s\n", c->name, c->args);
	else
		fputc('\n', stderr);
	return CTL_USAGE;
}

int ctl_error(const char *fmt, ...)
{
	va_list ap;
	fputs("unweightctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return CTL_ERR;
}

int ctl_threads(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < 0 || v > 4096)
		return -1;
	return (int)v;
}

int ctl_getopt(const char *cmd, int argc, char **argv, const char *shorts,
	       const struct option *longs, struct ctl_opts *o)
{
	int c;
	while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
		switch (c) {
		case 'o':
			o->out = optarg;
			break;
		case 't':
			if ((o->threads = ctl_threads(optarg)) < 0)
				return ctl_usage_error(cmd, "--threads '%s' is not a count of threads", optarg);
			break;
		case 'j':
			o->json = 1;
			break;
		case 'm':
			o->merge = 1;
			break;
		default:
			return ctl_usage_error(cmd, "bad option");
		}
	}
	return CTL_OK;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct ctl_global g = { 0 };
	int c;
	/* '+': stop at the subcommand, whose options are its own. */
	while ((c = getopt_long(argc, argv, "+hV", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			g.socket = optarg;
			break;
		case 'h':
			usage(stdout);
			return CTL_OK;
		case 'V':
			printf("unweightctl (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
			return CTL_OK;
		default:
			usage(stderr);
			return CTL_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return CTL_USAGE;
	}
	const struct command *cmd = find(argv[optind]);
	if (!cmd) {
		fprintf(stderr, "unweightctl: unknown command '%s'\n", argv[optind]);
		usage(stderr);
		return CTL_USAGE;
	}
	char **args = argv + optind;
	int nargs = argc - optind;
	for (int i = 1; i < nargs && strcmp(args[i], "--") != 0; i++)
		if (strcmp(args[i], "--help") == 0 || strcmp(args[i], "-h") == 0) {
			printf("usage: unweightctl %s %s\n%s\n", cmd->name, cmd->args, cmd->summary);
			return CTL_OK;
		}
	optind = 0;   /* GNU getopt: start afresh on the subcommand's arguments */
	return cmd->run(nargs, args, &g);
}
