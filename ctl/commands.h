/* commands: the subcommands of unweightctl, dispatched by unweightctl.c. */
#ifndef UW_CTL_COMMANDS_H
#define UW_CTL_COMMANDS_H

/* Exit statuses of every subcommand. */
enum { CTL_OK = 0, CTL_ERR = 1, CTL_USAGE = 2 };

/* Options given before the subcommand. */
struct ctl_global {
	const char *socket;          /* --socket PATH; NULL: $UNWEIGHT_SOCKET or the default */
};

/* argv[0] is the subcommand's name; each parses its own options with
 * getopt_long and returns an exit status. */
int cmd_pack(int argc, char **argv, const struct ctl_global *g);
int cmd_unpack(int argc, char **argv, const struct ctl_global *g);
int cmd_inspect(int argc, char **argv, const struct ctl_global *g);
/* The daemon's commands (cmd_daemon.c). */
int cmd_load(int argc, char **argv, const struct ctl_global *g);
int cmd_evict(int argc, char **argv, const struct ctl_global *g);
int cmd_verify(int argc, char **argv, const struct ctl_global *g);
int cmd_stats(int argc, char **argv, const struct ctl_global *g);
int cmd_list(int argc, char **argv, const struct ctl_global *g);
int cmd_status(int argc, char **argv, const struct ctl_global *g);
int cmd_tune(int argc, char **argv, const struct ctl_global *g);

/* Shared by the subcommands. */
/* "unweightctl CMD: msg" on stderr, then the subcommand's usage line;
 * returns CTL_USAGE. */
int ctl_usage_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* "unweightctl: msg" on stderr; returns CTL_ERR. */
int ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parse a --threads value (0: one per CPU); -1 when it is not a count. */
int ctl_threads(const char *s);

/* The options the offline subcommands (pack, unpack, inspect) share. */
struct ctl_opts {
	const char *out;             /* -o/--output, NULL when not given */
	int threads;                 /* -t/--threads, 0: one per CPU */
	int json, merge;             /* --json, --merge */
};
struct option;
/* getopt_long over argv with shorts and longs (the options cmd takes) into
 * o, which starts zeroed; CTL_OK, or a usage error for cmd. */
int ctl_getopt(const char *cmd, int argc, char **argv, const char *shorts,
	       const struct option *longs, struct ctl_opts *o);

#endif
