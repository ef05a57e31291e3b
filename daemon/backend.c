/* backend: choosing and opening a backend, and its devices' budgets. */
#include "config.h"

#include "daemon/backend.h"

#include <stdatomic.h>
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

#ifdef UW_ALLOC_FAULTS
/* Backend faults for the test suites, compiled only into
 * tests/unweightd-faults (daemon/local.mk), never into unweightd.
 * UW_TEST_ALLOC_FAULTS, a comma-separated list of:
 *   create=N   the daemon's Nth buf_create fails with ENOMEM
 *   write=N    its Nth buf_write fails with ENOMEM (counted over all loads)
 * UW_TEST_CORRUPT=MODEL: the first tensor written into model MODEL's
 * buffer lands with one bit flipped (in its middle byte), after the
 * encoder took its CRC-32C: a model corrupt in memory, for verify to find
 * (a sealed buffer cannot be changed later, not even by the daemon).
 * Both act on buf_write, so with either on the loads encode on the CPU
 * (the GPU encoder writes the buffer itself). */
static const struct backend_ops *real_ops;
static struct backend_ops faulty_ops;
static long create_at = -1, write_at = -1;
static atomic_long creates, writes;
static const char *corrupt_model;
static struct bbuf *_Atomic corrupt_buf;
static atomic_int corrupted;

static int faulty_create(struct backend *b, int dev, const char *label, uint64_t cap,
			 struct bbuf **out, struct uwerr *e)
{
	if (atomic_fetch_add(&creates, 1) + 1 == create_at)
		return uwerr_set(e, ENOMEM, "buffer of %llu bytes for %s: injected allocation "
				 "failure", (unsigned long long)cap, label);
	int rc = real_ops->buf_create(b, dev, label, cap, out, e);
	if (!rc && corrupt_model && strcmp(label, corrupt_model) == 0)
		atomic_store(&corrupt_buf, *out);
	return rc;
}

static int faulty_write(struct bbuf *buf, uint64_t off, const void *src, size_t n,
			struct uwerr *e)
{
	if (atomic_fetch_add(&writes, 1) + 1 == write_at)
		return uwerr_set(e, ENOMEM, "write at %llu: injected allocation failure",
				 (unsigned long long)off);
	if (n && buf == atomic_load(&corrupt_buf) && !atomic_exchange(&corrupted, 1)) {
		uint8_t *bad = malloc(n);
		if (!bad)
			return uwerr_set(e, ENOMEM, "write at %llu: out of memory", (unsigned long long)off);
		memcpy(bad, src, n);
		bad[n / 2] ^= 0x04;
		int rc = real_ops->buf_write(buf, off, bad, n, e);
		free(bad);
		return rc;
	}
	return real_ops->buf_write(buf, off, src, n, e);
}

static const struct backend_ops *with_faults(const struct backend_ops *ops)
{
	const char *s = getenv("UW_TEST_ALLOC_FAULTS");
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", s ? s : "");
	for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (!strncmp(t, "create=", 7))
			create_at = strtol(t + 7, NULL, 0);
		else if (!strncmp(t, "write=", 6))
			write_at = strtol(t + 6, NULL, 0);
	}
	corrupt_model = getenv("UW_TEST_CORRUPT");
	if (create_at < 0 && write_at < 0 && !corrupt_model)
		return ops;
	real_ops = ops;
	faulty_ops = *ops;
	faulty_ops.buf_create = faulty_create;
	faulty_ops.buf_write = faulty_write;
	faulty_ops.enc_new = NULL;
	faulty_ops.enc_tensor = NULL;
	faulty_ops.enc_free = NULL;
	return &faulty_ops;
}
#endif

int backend_open(const struct uwd_config *cfg, struct backend **out, struct uwerr *e)
{
	const struct backend_ops *ops;
	int rc = backend_pick(cfg, &ops, e);
	if (rc)
		return rc;
	if (cfg->encode == UWD_ENCODE_GPU && !ops->enc_new)
		return uwerr_set(e, ENOTSUP, "encode = gpu: backend %s encodes on the CPU only "
				 "(encode = auto or cpu)", ops->name);
#ifdef UW_ALLOC_FAULTS
	ops = with_faults(ops);
#endif
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
