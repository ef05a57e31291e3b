/* conf: unweightd's settings, from its config file and its command line
 * (flags override the file). unweightd.conf(5) documents every key. */
#ifndef UWD_CONF_H
#define UWD_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "daemon/policy.h"

#define UWD_CONFIG_FILE "/etc/unweight/unweightd.conf"
#define UWD_BACKEND_AUTO (-1)

/* Where loads turn tensors into the resident form. */
enum uwd_encode {
	UWD_ENCODE_AUTO = 0,       /* on the device where the backend can, else the CPU */
	UWD_ENCODE_CPU,
	UWD_ENCODE_GPU,
};
#define UWD_MAX_LIST 64            /* allow_dir and budget entries */

struct uwd_budget {
	char *device;              /* "" = the default device */
	uint64_t bytes;
};

/* attach.MODEL: who may attach one model (instead of the default list). */
struct uwd_model_acl {
	char *model;
	struct acl acl;
};

struct uwd_config {
	char *socket_path;
	int backend;               /* enum uw_backend, or UWD_BACKEND_AUTO */
	struct uwd_budget budgets[UWD_MAX_LIST];
	size_t nbudgets;
	char *allow_dirs[UWD_MAX_LIST];
	size_t nallow;
	int allow_from_file;       /* the first --allow-dir replaces the file's list */
	char *socket_owner;        /* NULL: leave the owner as created */
	char *socket_group;        /* NULL: leave the group as created */
	unsigned socket_mode;      /* permission bits of a socket unweightd binds */
	struct acl admin;          /* may load, evict and tune */
	struct acl attach;         /* may attach a model with no attach.NAME of its own */
	struct uwd_model_acl *attach_models;
	size_t nattach_models;
	int log_level;             /* LOG_ERR .. LOG_DEBUG */
	unsigned max_clients;
	unsigned max_leases;       /* leases one connection may hold at once */
	unsigned max_request_bytes;  /* payload of one request */
	unsigned idle_timeout_ms;  /* a connection with no lease, silent this long, is closed; 0 never */
	unsigned max_loads;        /* loads running at once */
	unsigned load_queue;       /* loads waiting for a turn; more are refused */
	unsigned load_threads;     /* encoder threads per load; 0: one per CPU, at most 8 */
	int load_io;               /* enum ur_mode: how checkpoints are read (0: auto) */
	int encode;                /* enum uwd_encode: where loads encode */
	int prefer;                /* enum res_prefer: what loads keep BF16 matrices as */
	unsigned io_timeout_ms;    /* a message once begun must complete within this */
	unsigned verify_interval;  /* seconds between verifies of every model; 0 never */
	int tune_on_load;          /* tune = on-load: tune a model's shapes once it is loaded */
	char *tune_dir;            /* the tune cache's directory; NULL: tunecache.h's tune_dir */
	int foreground;            /* accepted; unweightd never forks anyway */
};

/* Fill c from the defaults, the config file (--config PATH, else
 * UWD_CONFIG_FILE if it exists) and argv. Returns 0; 1 when --help or
 * --version was printed (exit 0); or a negative errno with e naming the
 * flag or FILE:LINE at fault. c must be freed with config_free either way. */
int config_load(struct uwd_config *c, int argc, char **argv, struct uwerr *e);
void config_free(struct uwd_config *c);

/* "8G", "512MiB", "1024": bytes, with binary K/M/G/T suffixes. */
int config_parse_size(const char *s, uint64_t *out);

#endif
