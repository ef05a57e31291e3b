/* backend: choosing and opening a backend, and its devices' budgets. */
#include "config.h"

#include "daemon/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/conf.h"
#include "daemon/log.h"
#include "unweight.h"

/* The backends built into this unweightd; the CUDA backend joins here. */
static const struct backend_ops *const backends[] = {
	&backend_host_ops,
#ifdef HAVE_CUDA
	&backend_cuda_ops,
#endif
};
#define NBACKENDS (sizeof(backends) / sizeof(backends[0]))

static const struct backend_ops *backend_by_id(int id)
{
	for (size_t i = 0; i < NBACKENDS; i++)
		if (backends[i]->id == id)
			return backends[i];
	return NULL;
}

static int backend_pick(const struct uwd_config *cfg, const struct backend_ops **out,
			struct uwerr *e)
{
	if (cfg->backend != UWD_BACKEND_AUTO) {
		const struct backend_ops *ops = backend_by_id(cfg->backend);
		const char *name = cfg->backend == UW_BACKEND_CUDA ? "cuda" : "host";
		if (!ops)
			return uwerr_set(e, ENOTSUP,
					 "backend %s: not built into this unweightd (configure --with-cuda, "
					 "and a CUDA backend, are needed); use --backend host", name);
		if (ops->probe(e))
			return uwerr_prefix(e, "backend %s", name);
		*out = ops;
		return 0;
	}
	const struct backend_ops *cuda = backend_by_id(UW_BACKEND_CUDA);
	struct uwerr why = {0};
	if (cuda && cuda->probe(&why) == 0) {
		*out = cuda;
		return 0;
	}
	log_info("backend auto: using host (%s)", cuda ? why.msg : "the CUDA backend is not built in");
	*out = &backend_host_ops;
	return 0;
}

int backend_find_device(const struct backend *b, const char *spec)
{
	if (!*spec)
		return 0;
	for (int i = 0; i < b->ndev; i++)
		if (strcmp(spec, b->dev[i].name) == 0 ||
		    (b->dev[i].uuid[0] && strcmp(spec, b->dev[i].uuid) == 0))
			return i;
	char *end;
	long i = strtol(spec, &end, 10);
	if (*end == '\0' && i >= 0 && i < b->ndev)
		return (int)i;
	return -1;
}

int backend_open(const struct uwd_config *cfg, struct backend **out, struct uwerr *e)
{
	const struct backend_ops *ops;
	int rc = backend_pick(cfg, &ops, e);
	if (rc)
		return rc;
	struct backend *b = calloc(1, sizeof(*b));
	if (!b)
		return uwerr_set(e, ENOMEM, "backend %s: out of memory", ops->name);
	b->ops = ops;
	rc = ops->open(b, e);
	if (rc) {
		free(b);
		return uwerr_prefix(e, "backend %s", ops->name);
	}
	for (size_t i = 0; i < cfg->nbudgets; i++) {
		const struct uwd_budget *bu = &cfg->budgets[i];
		if (!bu->device[0])
			continue;
		int d = backend_find_device(b, bu->device);
		if (d < 0) {
			backend_close(b);
			return uwerr_set(e, ENODEV, "budget.%s: backend %s has no such device",
					 bu->device, ops->name);
		}
		b->dev[d].budget = bu->bytes;
	}
	/* A plain `budget` is the default device's, unless budget.NAME set it. */
	for (size_t i = 0; i < cfg->nbudgets; i++) {
		if (cfg->budgets[i].device[0])
			continue;
		int named = 0;
		for (size_t j = 0; j < cfg->nbudgets; j++)
			named |= cfg->budgets[j].device[0] &&
				 backend_find_device(b, cfg->budgets[j].device) == 0;
		if (!named)
			b->dev[0].budget = cfg->budgets[i].bytes;
	}
	*out = b;
	return 0;
}

void backend_close(struct backend *b)
{
	if (!b)
		return;
	b->ops->close(b);
	free(b);
}
