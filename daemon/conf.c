/* conf: the config file parser and the command line (see conf.h). */
#include "config.h"

#include "daemon/conf.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/log.h"
#include "kernels/resident.h"
#include "proto/proto.h"
#include "unweight.h"

enum origin { FROM_FILE, FROM_FLAG };

static int set_str(char **dst, const char *v, char *why, size_t whylen)
{
	char *s = strdup(v);
	if (!s) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	free(*dst);
	*dst = s;
	return 0;
}

static int parse_uint(const char *v, unsigned lo, unsigned hi, unsigned *out)
{
	char *end;
	errno = 0;
	if (!isdigit((unsigned char)v[0]))
		return -EINVAL;
	unsigned long x = strtoul(v, &end, 10);
	if (errno || *end || x < lo || x > hi)
		return -EINVAL;
	*out = (unsigned)x;
	return 0;
}

int config_parse_size(const char *s, uint64_t *out)
{
	char *end;
	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	static const char units[] = "KMGT";
	const char *u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
	unsigned shift = 0;
	if (u) {
		shift = 10 * (unsigned)(u - units + 1);
		end++;
		if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)
			end += strlen(end);
	} else if (strcmp(end, "B") == 0) {
		end++;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

/* v as the index of one of n words (an enum's values in order), or
 * -EINVAL with why naming v and the words. */
static int parse_word(const char *key, const char *v, const char *const *words, int n,
		      int *out, char *why, size_t whylen)
{
	for (int i = 0; i < n; i++)
		if (strcmp(v, words[i]) == 0) {
			*out = i;
			return 0;
		}
	size_t k = (size_t)snprintf(why, whylen, "%s: '%s' is not ", key, v);
	for (int i = 0; i < n && k < whylen; i++)
		k += (size_t)snprintf(why + k, whylen - k, "%s%s",
				      !i ? "" : i + 1 < n ? ", " : " or ", words[i]);
	return -EINVAL;
}

/* attach.MODEL = LIST: a later line for the same model replaces it. */
static int set_model_acl(struct uwd_config *c, const char *model, const char *v, char *why,
			 size_t whylen)
{
	if (!proto_name_valid(model)) {
		snprintf(why, whylen, "'%s' is not a model name", model);
		return -EINVAL;
	}
	size_t i;
	for (i = 0; i < c->nattach_models; i++)
		if (strcmp(c->attach_models[i].model, model) == 0)
			return acl_parse(v, &c->attach_models[i].acl, why, whylen);
	struct uwd_model_acl *m = realloc(c->attach_models, (i + 1) * sizeof(*m));
	if (!m) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	c->attach_models = m;
	m[i] = (struct uwd_model_acl){0};
	int rc = acl_parse(v, &m[i].acl, why, whylen);
	if (!rc && !(m[i].model = strdup(model))) {
		acl_free(&m[i].acl);
		snprintf(why, whylen, "out of memory");
		rc = -ENOMEM;
	}
	if (!rc)
		c->nattach_models++;
	return rc;
}

/* Apply one setting; why gets the reason on error. */
static int config_set(struct uwd_config *c, const char *key, const char *v,
		      enum origin from, char *why, size_t whylen)
{
	if (!*v) {
		snprintf(why, whylen, "%s: empty value", key);
		return -EINVAL;
	}
	if (strcmp(key, "socket") == 0) {
		if (v[0] != '/') {
			snprintf(why, whylen, "socket: '%s' is not an absolute path", v);
			return -EINVAL;
		}
		return set_str(&c->socket_path, v, why, whylen);
	}
	if (strcmp(key, "backend") == 0) {
		if (strcmp(v, "host") == 0)
			c->backend = UW_BACKEND_HOST;
		else if (strcmp(v, "cuda") == 0)
			c->backend = UW_BACKEND_CUDA;
		else if (strcmp(v, "auto") == 0)
			c->backend = UWD_BACKEND_AUTO;
		else {
			snprintf(why, whylen, "backend: '%s' is not host, cuda or auto", v);
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(key, "budget") == 0 || strncmp(key, "budget.", 7) == 0) {
		const char *dev = key[6] ? key + 7 : "";
		uint64_t bytes;
		if (key[6] && !*dev) {
			snprintf(why, whylen, "budget.: no device named");
			return -EINVAL;
		}
		if (config_parse_size(v, &bytes)) {
			snprintf(why, whylen, "%s: '%s' is not a size (like 8G, 512M or 1048576)", key, v);
			return -EINVAL;
		}
		size_t i;
		for (i = 0; i < c->nbudgets; i++)
			if (strcmp(c->budgets[i].device, dev) == 0)
				break;
		if (i == c->nbudgets) {
			if (i == UWD_MAX_LIST) {
				snprintf(why, whylen, "%s: more than %d budgets", key, UWD_MAX_LIST);
				return -E2BIG;
			}
			if (set_str(&c->budgets[i].device, dev, why, whylen))
				return -ENOMEM;
			c->nbudgets++;
		}
		c->budgets[i].bytes = bytes;
		return 0;
	}
	if (strcmp(key, "allow_dir") == 0) {
		if (v[0] != '/') {
			snprintf(why, whylen, "allow_dir: '%s' is not an absolute path", v);
			return -EINVAL;
		}
		if (from == FROM_FLAG && c->allow_from_file) {
			for (size_t i = 0; i < c->nallow; i++)
				free(c->allow_dirs[i]);
			c->nallow = 0;
			c->allow_from_file = 0;
		}
		if (c->nallow == UWD_MAX_LIST) {
			snprintf(why, whylen, "allow_dir: more than %d directories", UWD_MAX_LIST);
			return -E2BIG;
		}
		if (set_str(&c->allow_dirs[c->nallow], v, why, whylen))
			return -ENOMEM;
		c->nallow++;
		c->allow_from_file = from == FROM_FILE;
		return 0;
	}
	if (strcmp(key, "admin") == 0 || strcmp(key, "attach") == 0 ||
	    strncmp(key, "attach.", 7) == 0) {
		char sub[UWERR_MSG_MAX / 4];
		int rc = key[1] == 'd' ? acl_parse(v, &c->admin, sub, sizeof(sub))
			 : key[6] ? set_model_acl(c, key + 7, v, sub, sizeof(sub))
			 : acl_parse(v, &c->attach, sub, sizeof(sub));
		if (rc)
			snprintf(why, whylen, "%s: %s", key, sub);
		return rc;
	}
	if (strcmp(key, "tune") == 0) {
		static const char *const when[] = {"off", "on-load"};
		return parse_word(key, v, when, 2, &c->tune_on_load, why, whylen);
	}
	if (strcmp(key, "tune_dir") == 0) {
		if (v[0] != '/') {
			snprintf(why, whylen, "tune_dir: '%s' is not an absolute path", v);
			return -EINVAL;
		}
		return set_str(&c->tune_dir, v, why, whylen);
	}
	if (strcmp(key, "socket_owner") == 0)
		return set_str(&c->socket_owner, v, why, whylen);
	if (strcmp(key, "socket_group") == 0)
		return set_str(&c->socket_group, v, why, whylen);
	if (strcmp(key, "socket_mode") == 0) {
		char *end;
		unsigned long m = strtoul(v, &end, 8);
		if (!isdigit((unsigned char)v[0]) || *end || m > 0777) {
			snprintf(why, whylen, "socket_mode: '%s' is not an octal mode like 0660", v);
			return -EINVAL;
		}
		c->socket_mode = (unsigned)m;
		return 0;
	}
	if (strcmp(key, "log_level") == 0) {
		int l = log_level_parse(v);
		if (l < 0) {
			snprintf(why, whylen, "log_level: '%s' is not err, warning, notice, info or debug", v);
			return -EINVAL;
		}
		c->log_level = l;
		return 0;
	}
	if (strcmp(key, "load_io") == 0) {
		static const char *const modes[] = {"auto", "direct", "buffered"};  /* enum ur_mode */
		return parse_word(key, v, modes, 3, &c->load_io, why, whylen);
	}
	if (strcmp(key, "encode") == 0) {
		static const char *const where[] = {"auto", "cpu", "gpu"};  /* enum uwd_encode */
		return parse_word(key, v, where, 3, &c->encode, why, whylen);
	}
	if (strcmp(key, "prefer") == 0) {
		static const char *const what[] = {"speed", "size"};  /* enum res_prefer */
		return parse_word(key, v, what, 2, &c->prefer, why, whylen);
	}
	static const struct {
		const char *key;
		size_t off;
		unsigned lo, hi;
	} nums[] = {
		{"max_clients", offsetof(struct uwd_config, max_clients), 1, 65536},
		{"load_threads", offsetof(struct uwd_config, load_threads), 0, 256},
		{"io_timeout_ms", offsetof(struct uwd_config, io_timeout_ms), 1, 3600000},
		{"max_leases", offsetof(struct uwd_config, max_leases), 1, 1000000},
		{"max_request_bytes", offsetof(struct uwd_config, max_request_bytes), 4096,
		 PROTO_MAX_PAYLOAD},
		{"idle_timeout_ms", offsetof(struct uwd_config, idle_timeout_ms), 0, 86400000},
		{"max_loads", offsetof(struct uwd_config, max_loads), 1, 256},
		{"load_queue", offsetof(struct uwd_config, load_queue), 0, 4096},
		{"verify_interval", offsetof(struct uwd_config, verify_interval), 0, 31536000},
	};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		if (strcmp(key, nums[i].key))
			continue;
		if (parse_uint(v, nums[i].lo, nums[i].hi, (unsigned *)((char *)c + nums[i].off))) {
			snprintf(why, whylen, "%s: '%s' is not a number from %u to %u",
				 key, v, nums[i].lo, nums[i].hi);
			return -EINVAL;
		}
		return 0;
	}
	snprintf(why, whylen, "unknown key '%s'", key);
	return -EINVAL;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* `key = value` lines; '#' starts a comment at the start of a line or
 * after whitespace (so a path may hold a '#' inside a word). */
static int config_read_file(struct uwd_config *c, const char *path, int must_exist,
			    struct uwerr *e)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		if (errno == ENOENT && !must_exist)
			return 0;
		return uwerr_set(e, errno, "config %s: %s", path, strerror(errno));
	}
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	int rc = 0;
	while (getline(&line, &cap, f) >= 0) {
		lineno++;
		for (char *h = line; (h = strchr(h, '#')); h++)
			if (h == line || isspace((unsigned char)h[-1])) {
				*h = '\0';
				break;
			}
		char *s = trim(line);
		if (!*s)
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			rc = uwerr_set(e, EINVAL, "%s:%u: expected 'key = value'", path, lineno);
			goto out;
		}
		*eq = '\0';
		char why[UWERR_MSG_MAX / 2];
		rc = config_set(c, trim(s), trim(eq + 1), FROM_FILE, why, sizeof(why));
		if (rc) {
			uwerr_set(e, -rc, "%s:%u: %s", path, lineno, why);
			goto out;
		}
	}
	if (ferror(f))
		rc = uwerr_set(e, EIO, "config %s: read error", path);
out:
	free(line);
	fclose(f);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: unweightd [OPTION]...\n"
		"Hold LLM weights compressed in memory and share them with workers.\n\n"
		"  -c, --config PATH       config file (default " UWD_CONFIG_FILE ")\n"
		"  -s, --socket PATH       listen here (default " UW_DEFAULT_SOCKET ")\n"
		"  -b, --backend NAME      host, cuda or auto (default auto)\n"
		"  -a, --allow-dir DIR     models may be loaded from under DIR (repeatable)\n"
		"      --budget [DEV=]SIZE memory models may take on a device (repeatable)\n"
		"      --socket-owner NAME owner of the socket (needs privilege)\n"
		"      --socket-group NAME group of the socket\n"
		"      --socket-mode MODE  permissions of the socket (default 0660)\n"
		"      --admin LIST        who may load, evict and tune (default: root and the\n"
		"                          daemon's own uid); LIST: users, @groups, *\n"
		"      --attach [MODEL=]LIST  who may attach (every model, or MODEL;\n"
		"                          default *)\n"
		"  -l, --log-level LEVEL   err, warning, notice, info or debug (default info)\n"
		"      --max-clients N     connections served at once (default 128)\n"
		"      --load-threads N    encoder threads per load (0: one per CPU, up to 8)\n"
		"      --load-io MODE      auto, direct (O_DIRECT) or buffered reads of checkpoints\n"
		"      --encode WHERE      auto, cpu or gpu: where loads encode (auto: on the\n"
		"                          GPU with the cuda backend)\n"
		"      --prefer WHAT       speed or size: BF16 matrices as R12, which the fused\n"
		"                          matmul reads (default), or the smaller of R12 and\n"
		"                          R11 (encoded on the CPU)\n"
		"      --io-timeout-ms N   a message once begun must arrive within N ms\n"
		"      --idle-timeout-ms N close a connection with no lease silent for N ms\n"
		"                          (default 0: never)\n"
		"      --max-leases N      leases one connection may hold (default 1024)\n"
		"      --max-request-bytes N  payload of one request (default 1048576)\n"
		"      --max-loads N       loads running at once (default 2)\n"
		"      --load-queue N      loads waiting for a turn (default 16)\n"
		"      --verify-interval S check every model's checksums every S seconds\n"
		"                          (default 0: only on request)\n"
		"      --tune MODE         off, or on-load: tune a model's matmuls once loaded\n"
		"      --tune-dir DIR      the tune cache's directory (default $UW_TUNE_DIR,\n"
		"                          else /var/cache/unweight)\n"
		"  -f, --foreground        stay in the foreground (it always does)\n"
		"  -h, --help              show this help\n"
		"  -V, --version           show the version\n\n"
		"See unweightd(8) and unweightd.conf(5).\n");
}

static const struct option longopts[] = {
	{"config", required_argument, NULL, 'c'},
	{"socket", required_argument, NULL, 's'},
	{"backend", required_argument, NULL, 'b'},
	{"allow-dir", required_argument, NULL, 'a'},
	{"budget", required_argument, NULL, 'B'},
	{"socket-owner", required_argument, NULL, 'U'},
	{"socket-group", required_argument, NULL, 'G'},
	{"socket-mode", required_argument, NULL, 'M'},
	{"admin", required_argument, NULL, 'A'},
	{"attach", required_argument, NULL, 'P'},
	{"log-level", required_argument, NULL, 'l'},
	{"max-clients", required_argument, NULL, 'C'},
	{"load-threads", required_argument, NULL, 'T'},
	{"load-io", required_argument, NULL, 'X'},
	{"encode", required_argument, NULL, 'E'},
	{"prefer", required_argument, NULL, 'F'},
	{"io-timeout-ms", required_argument, NULL, 'O'},
	{"idle-timeout-ms", required_argument, NULL, 'I'},
	{"max-leases", required_argument, NULL, 'L'},
	{"max-request-bytes", required_argument, NULL, 'R'},
	{"max-loads", required_argument, NULL, 'D'},
	{"load-queue", required_argument, NULL, 'Q'},
	{"verify-interval", required_argument, NULL, 'Y'},
	{"tune", required_argument, NULL, 'Z'},
	{"tune-dir", required_argument, NULL, 'W'},
	{"foreground", no_argument, NULL, 'f'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{0},
};
static const char shortopts[] = "c:s:b:a:l:fhV";

/* The config key each flag sets. */
static const char *flag_key(int opt)
{
	switch (opt) {
	case 's': return "socket";
	case 'b': return "backend";
	case 'a': return "allow_dir";
	case 'U': return "socket_owner";
	case 'G': return "socket_group";
	case 'M': return "socket_mode";
	case 'A': return "admin";
	case 'l': return "log_level";
	case 'C': return "max_clients";
	case 'T': return "load_threads";
	case 'X': return "load_io";
	case 'E': return "encode";
	case 'F': return "prefer";
	case 'O': return "io_timeout_ms";
	case 'I': return "idle_timeout_ms";
	case 'L': return "max_leases";
	case 'R': return "max_request_bytes";
	case 'D': return "max_loads";
	case 'Q': return "load_queue";
	case 'Y': return "verify_interval";
	case 'Z': return "tune";
	case 'W': return "tune_dir";
	default: return NULL;
	}
}

static const char *flag_name(int opt)
{
	for (const struct option *o = longopts; o->name; o++)
		if (o->val == opt)
			return o->name;
	return "?";
}

int config_load(struct uwd_config *c, int argc, char **argv, struct uwerr *e)
{
	*c = (struct uwd_config){
		.backend = UWD_BACKEND_AUTO,
		.socket_mode = 0660,
		.log_level = LOG_INFO,
		.max_clients = 128,
		.io_timeout_ms = 10000,
		.max_leases = 1024,
		.max_request_bytes = 1u << 20,
		.max_loads = 2,
		.load_queue = 16,
	};
	c->socket_path = strdup(UW_DEFAULT_SOCKET);
	char no[64];
	if (!c->socket_path || acl_parse("*", &c->attach, no, sizeof(no)))
		return uwerr_set(e, ENOMEM, "out of memory");

	/* First pass: only what decides which file to read, or to read none. */
	const char *file = NULL;
	int opt;
	opterr = 0;
	optind = 0;   /* 0, not 1: glibc then rescans from scratch */
	while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		if (opt == 'c')
			file = optarg;
		if (opt == 'h') {
			usage(stdout);
			return 1;
		}
		if (opt == 'V') {
			printf("unweightd %s\n", PACKAGE_VERSION);
			return 1;
		}
	}
	int rc = config_read_file(c, file ? file : UWD_CONFIG_FILE, file != NULL, e);
	if (rc)
		return rc;

	optind = 0;   /* 0, not 1: glibc then rescans from scratch */
	while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		char why[UWERR_MSG_MAX / 2];
		char key[160];
		const char *val = optarg;
		switch (opt) {
		case 'c':
			continue;
		case 'f':
			c->foreground = 1;
			continue;
		case 'B':
		case 'P': {
			/* --budget [DEV=]SIZE, --attach [MODEL=]LIST */
			const char *base = opt == 'B' ? "budget" : "attach";
			const char *eq = strchr(optarg, '=');
			if (eq && (size_t)(eq - optarg) < sizeof(key) - 8) {
				snprintf(key, sizeof(key), "%s.%.*s", base, (int)(eq - optarg), optarg);
				val = eq + 1;
			} else {
				snprintf(key, sizeof(key), "%s", base);
			}
			break;
		}
		case '?':
			return uwerr_set(e, EINVAL, "unknown or incomplete option '%s' (see --help)",
					 argv[optind - 1]);
		default:
			snprintf(key, sizeof(key), "%s", flag_key(opt));
		}
		rc = config_set(c, key, val, FROM_FLAG, why, sizeof(why));
		if (rc)
			return uwerr_set(e, -rc, "--%s: %s", flag_name(opt), why);
	}
	if (optind < argc)
		return uwerr_set(e, EINVAL, "unexpected argument '%s' (see --help)", argv[optind]);
	if (c->encode == UWD_ENCODE_GPU && c->prefer == RES_PREFER_SIZE)
		return uwerr_set(e, EINVAL, "encode = gpu and prefer = size: the GPU encoder writes "
				 "R12 only, so size encodes on the CPU (encode = auto or cpu)");
	if (!c->admin.text && acl_default_admin(&c->admin))
		return uwerr_set(e, ENOMEM, "out of memory");
	return 0;
}

void config_free(struct uwd_config *c)
{
	free(c->socket_path);
	free(c->socket_owner);
	free(c->socket_group);
	free(c->tune_dir);
	for (size_t i = 0; i < c->nbudgets; i++)
		free(c->budgets[i].device);
	for (size_t i = 0; i < c->nallow; i++)
		free(c->allow_dirs[i]);
	acl_free(&c->admin);
	acl_free(&c->attach);
	for (size_t i = 0; i < c->nattach_models; i++) {
		free(c->attach_models[i].model);
		acl_free(&c->attach_models[i].acl);
	}
	free(c->attach_models);
	*c = (struct uwd_config){0};
}
