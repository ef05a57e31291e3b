/* fdstore: restart without reload (see fdstore.h).
 *
 * The manifest is one sealed memfd, stored with the model's buffers under
 * one FDNAME (so one FDSTOREREMOVE drops them all):
 *
 *   u64 magic "UWFDSTOR", u32 version,
 *   str model name, str device name, u64 raw_bytes,
 *   u32 nbufs, then per buffer: u64 inode, u32 CRC-32C of its tensors'
 *     bytes one after another in directory order (joined from the
 *     layouts' CRCs, so storing a model reads none of it back),
 *   the model's attach reply (lease 1: backend, device uuid, buffer sizes,
 *     the tensor directory) exactly as proto.h encodes it,
 *   u32 CRC-32C of everything before it.
 *
 * systemd may hand a name's fds back in any order: buffers are matched to
 * the manifest by inode, and the manifest is the fd that starts with the
 * magic. (The cuda backend's exported fds may all share the driver's inode;
 * its models have one buffer each, so that is no ambiguity, and a buffer
 * matched wrongly would fail its size or CRC-32C.) */
#include "config.h"

#include "daemon/fdstore.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "common/crc32c.h"
#include "common/io.h"
#include "common/le.h"
#include "daemon/backend.h"
#include "daemon/log.h"
#include "daemon/registry.h"
#include "daemon/uwd.h"
#include "proto/proto.h"

#define MANIFEST_MAGIC 0x524f545344465755ull   /* "UWFDSTOR" little-endian */
#define MANIFEST_VERSION 3u   /* 1: a buffer's CRC was of all its bytes, gaps too;
				 * 2: R11 tensors were format 2's layout (escapes) */
#define MANIFEST_MAX (64u << 20)
#define NAME_PREFIX "uw."

static int store_wanted(const struct backend *be)
{
	const char *ns = getenv("NOTIFY_SOCKET");
	return ns && *ns && be->ops->buf_adopt && be->ops->buf_crc32c;
}

/* Buffer b's tensors' CRCs joined (common/crc32c.h) in directory order:
 * the CRC-32C of their bytes one after another. crc[i] is tensor i's. */
static uint32_t join_tensor_crcs(const struct proto_tensor *t, size_t nt, uint32_t b,
				 const uint32_t *crc)
{
	uint32_t all = 0, op[32];
	for (size_t i = 0; i < nt; i++) {
		if (t[i].buf != b || !t[i].layout.nbytes)
			continue;
		crc32c_zeros_op(t[i].layout.nbytes, op);
		all = crc32c_shift(op, all) ^ crc[i];
	}
	return all;
}

static int manifest_build(const struct uwd *d, const struct model *m, struct wbuf *w,
			  struct uwerr *e)
{
	const struct backend *be = d->be;
	wb_u64(w, MANIFEST_MAGIC);
	wb_u32(w, MANIFEST_VERSION);
	wb_str(w, m->name);
	wb_str(w, be->dev[m->dev].name);
	wb_u64(w, m->raw_bytes);
	wb_u32(w, (uint32_t)m->nbufs);
	uint32_t *crc = malloc((m->ntensors ? m->ntensors : 1) * sizeof(*crc));
	if (!crc)
		return uwerr_set(e, ENOMEM, "out of memory");
	for (size_t i = 0; i < m->ntensors; i++)
		crc[i] = m->t[i].layout.crc32c;
	for (size_t i = 0; i < m->nbufs; i++) {
		struct stat st;
		if (fstat(be->ops->buf_fd(m->bufs[i]), &st) < 0) {
			free(crc);
			return uwerr_set(e, errno, "buffer %zu: fstat: %s", i, strerror(errno));
		}
		wb_u64(w, (uint64_t)st.st_ino);
		wb_u32(w, join_tensor_crcs(m->t, m->ntensors, (uint32_t)i, crc));
	}
	free(crc);
	struct msg_attach_reply r = {
		.lease = 1, .backend = (uint32_t)be->ops->id,
		.device_uuid = (char *)be->dev[m->dev].uuid,
		.nbufs = (uint32_t)m->nbufs, .buf_size = m->buf_size,
		.ntensors = (uint32_t)m->ntensors, .tensors = m->t,
	};
	enc_attach_reply(w, &r);
	wb_u32(w, w->err ? 0 : crc32c(0, w->p, w->len));
	if (w->err || w->len > MANIFEST_MAX)
		return uwerr_set(e, ENOMEM, "manifest of %zu bytes: out of memory", w->len);
	return 0;
}

/* The manifest in a sealed memfd. */
static int manifest_fd(const char *name, const struct wbuf *w, struct uwerr *e)
{
	char label[200];
	snprintf(label, sizeof(label), "unweight-manifest:%s", name);
	int fd = memfd_create(label, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return uwerr_set(e, errno, "memfd_create: %s", strerror(errno));
	size_t done;
	int rc = io_pwrite_full(fd, w->p, w->len, 0, &done);
	if (rc) {
		uwerr_set(e, -rc, "manifest write: %s", strerror(-rc));
	} else if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK |
			 F_SEAL_SEAL) < 0) {
		rc = uwerr_set(e, errno, "manifest seal: %s", strerror(errno));
	}
	if (rc) {
		close(fd);
		return rc;
	}
	return fd;
}

void fdstore_save(struct uwd *d, const struct model *m)
{
	if (!store_wanted(d->be))
		return;
	struct wbuf w = {0};
	struct uwerr e = {0};
	int fds[PROTO_MAX_FDS + 1], n = 0, mfd = -1;
	int rc = m->nbufs > PROTO_MAX_FDS ? uwerr_set(&e, E2BIG, "%zu buffers", m->nbufs) : 0;
	if (!rc)
		rc = manifest_build(d, m, &w, &e);
	if (!rc && (mfd = manifest_fd(m->name, &w, &e)) < 0)
		rc = mfd;
	wb_free(&w);
	if (!rc) {
		fds[n++] = mfd;
		for (size_t i = 0; i < m->nbufs; i++)
			fds[n++] = d->be->ops->buf_fd(m->bufs[i]);
		/* FDPOLL=0: these are memory, not connections; a driver's fd that
		 * polls POLLHUP must not make systemd drop it (older systemd
		 * ignores the field, and cannot poll a memfd anyway). */
		char state[64 + PROTO_MAX_NAME];
		snprintf(state, sizeof(state), "FDSTORE=1\nFDPOLL=0\nFDNAME=" NAME_PREFIX "%s",
			 m->name);
		rc = sd_pid_notify_with_fds(0, 0, state, fds, (unsigned)n);
		if (rc < 0)
			uwerr_set(&e, -rc, "sd_notify: %s", strerror(-rc));
		else
			rc = 0;
	}
	if (mfd >= 0)
		close(mfd);   /* the store holds its own copy */
	if (rc)
		log_warning("fd store: %s: not stored (after a restart it must be loaded again): %s",
			    m->name, e.msg);
	else
		log_info("fd store: %s: stored %d fds", m->name, n);
}

void fdstore_forget(const struct uwd *d, const char *name)
{
	if (store_wanted(d->be))
		sd_notifyf(0, "FDSTOREREMOVE=1\nFDNAME=" NAME_PREFIX "%s", name);
}

/* ---- adoption ---------------------------------------------------------- */

/* The fds systemd passed under one name. */
struct group {
	char *name;               /* the FDNAME */
	int *fd;
	size_t n;
};

static int read_all(int fd, uint8_t **out, size_t *len, struct uwerr *e)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return uwerr_set(e, errno, "fstat: %s", strerror(errno));
	if (st.st_size < 8 || (uint64_t)st.st_size > MANIFEST_MAX)
		return uwerr_set(e, EBADMSG, "manifest of %lld bytes", (long long)st.st_size);
	uint8_t *p = malloc((size_t)st.st_size);
	if (!p)
		return uwerr_set(e, ENOMEM, "out of memory");
	size_t got;
	int rc = io_pread_full(fd, p, (size_t)st.st_size, 0, &got);
	if (rc) {
		free(p);
		return uwerr_set(e, rc == -ENODATA ? EBADMSG : -rc, "manifest read: %s",
				 rc == -ENODATA ? "short" : strerror(-rc));
	}
	*out = p;
	*len = (size_t)st.st_size;
	return 0;
}

/* Whether fd starts with the manifest's magic (buffers never do: cuda's
 * cannot even be read, a host buffer starts with a tensor). */
static int is_manifest(int fd)
{
	uint8_t b[8];
	return pread(fd, b, sizeof(b), 0) == (ssize_t)sizeof(b) && le64_get(b) == MANIFEST_MAGIC;
}

/* Verify group g against its manifest and build its model; the fds taken
 * are set to -1 in g. */
/* Read every tensor of the adopted buffers back (one pass, no gaps) and
 * join their CRCs as manifest_build did: each buffer's must be the
 * manifest's. */
static int check_tensors(const struct backend *be, const struct model *m,
			 const struct msg_attach_reply *ar, const uint32_t *want, struct uwerr *e)
{
	size_t nt = ar->ntensors;
	struct bspan *sp = calloc(nt ? nt : 1, sizeof(*sp));
	uint32_t *crc = calloc(nt ? nt : 1, sizeof(*crc));
	int rc = 0;
	if (!sp || !crc)
		rc = uwerr_set(e, ENOMEM, "out of memory");
	for (uint32_t b = 0; b < m->nbufs && !rc; b++) {
		size_t n = 0;
		for (size_t i = 0; i < nt; i++)
			if (ar->tensors[i].buf == b && ar->tensors[i].layout.nbytes)
				sp[n++] = (struct bspan){.off = ar->tensors[i].offset,
							 .len = ar->tensors[i].layout.nbytes};
		if ((rc = be->ops->buf_crc32c(m->bufs[b], sp, n, e))) {
			uwerr_prefix(e, "buffer %u", b);
			break;
		}
		n = 0;
		for (size_t i = 0; i < nt; i++)
			if (ar->tensors[i].buf == b && ar->tensors[i].layout.nbytes)
				crc[i] = sp[n++].crc;
		uint32_t all = join_tensor_crcs(ar->tensors, nt, b, crc);
		if (all != want[b])
			rc = uwerr_set(e, EBADMSG, "buffer %u: CRC-32C %08x of its tensors, the "
				       "manifest says %08x", b, all, want[b]);
	}
	free(sp);
	free(crc);
	return rc;
}

static int adopt_group(struct uwd *d, struct group *g, struct model **out, struct uwerr *e)
{
	const struct backend *be = d->be;
	if (!be->ops->buf_adopt)
		return uwerr_set(e, ENOTSUP, "backend %s cannot re-adopt buffers", be->ops->name);
	size_t mi = g->n;
	for (size_t i = 0; i < g->n; i++)
		if (is_manifest(g->fd[i])) {
			if (mi != g->n)
				return uwerr_set(e, EBADMSG, "two manifests");
			mi = i;
		}
	if (mi == g->n)
		return uwerr_set(e, EBADMSG, "no manifest among its %zu fds", g->n);
	uint8_t *p = NULL;
	size_t len = 0;
	int rc = read_all(g->fd[mi], &p, &len, e);
	if (rc)
		return rc;
	struct model *m = calloc(1, sizeof(*m));
	struct rbuf r = {.p = p, .len = len - 4};
	char *devname = NULL;
	uint64_t *ino = NULL;
	uint32_t *crc = NULL;
	struct msg_attach_reply ar = {0};
	if (!m) {
		rc = uwerr_set(e, ENOMEM, "out of memory");
		goto out;
	}
	if (crc32c(0, p, len - 4) != le32_get(p + len - 4)) {
		rc = uwerr_set(e, EBADMSG, "manifest checksum mismatch");
		goto out;
	}
	rb_u64(&r);
	uint32_t version = rb_u32(&r);
	if (version != MANIFEST_VERSION) {
		rc = uwerr_set(e, EPROTO, "manifest version %u; this unweightd reads %u", version,
			       MANIFEST_VERSION);
		goto out;
	}
	m->name = rb_str(&r, PROTO_MAX_NAME);
	devname = rb_str(&r, 64);
	m->raw_bytes = rb_u64(&r);
	uint32_t nbufs = rb_u32(&r);
	if (r.err || nbufs > PROTO_MAX_FDS || nbufs + 1 != g->n) {
		rc = uwerr_set(e, EBADMSG, "manifest: bad header, or %u buffers for %zu fds",
			       nbufs, g->n);
		goto out;
	}
	ino = calloc(nbufs + 1, sizeof(*ino));
	crc = calloc(nbufs + 1, sizeof(*crc));
	if (!ino || !crc) {
		rc = uwerr_set(e, ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < nbufs; i++) {
		ino[i] = rb_u64(&r);
		crc[i] = rb_u32(&r);
	}
	if ((rc = dec_attach_reply(&r, (int)nbufs, &ar, e)) || (rc = rb_done(&r, e))) {
		uwerr_prefix(e, "manifest");
		goto out;
	}
	if (strcmp(m->name, g->name + strlen(NAME_PREFIX)) != 0) {
		rc = uwerr_set(e, EBADMSG, "the manifest names model %s", m->name);
		goto out;
	}
	if (ar.backend != (uint32_t)be->ops->id || (m->dev = backend_find_device(be, devname)) < 0 ||
	    strcmp(be->dev[m->dev].uuid, ar.device_uuid) != 0) {
		rc = uwerr_set(e, ENODEV, "stored for backend %u device %s (%s); this daemon "
			       "has no such device", ar.backend, devname, ar.device_uuid);
		goto out;
	}
	m->bufs = calloc(nbufs, sizeof(*m->bufs));
	if (!m->bufs) {
		rc = uwerr_set(e, ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < nbufs; i++) {
		size_t k = g->n;
		struct stat st;
		for (size_t f = 0; f < g->n; f++)
			if (f != mi && g->fd[f] >= 0 && fstat(g->fd[f], &st) == 0 &&
			    (uint64_t)st.st_ino == ino[i])
				k = f;
		if (k == g->n) {
			rc = uwerr_set(e, ENOENT, "buffer %u (inode %llu) was not passed", i,
				       (unsigned long long)ino[i]);
			goto out;
		}
		if ((rc = be->ops->buf_adopt(d->be, m->dev, g->fd[k], ar.buf_size[i], &m->bufs[i], e))) {
			uwerr_prefix(e, "buffer %u", i);
			goto out;
		}
		g->fd[k] = -1;
		m->nbufs++;
		m->resident_bytes += ar.buf_size[i];
	}
	if ((rc = check_tensors(be, m, &ar, crc, e)))
		goto out;
	/* The directory moves to the model: the attach reply is built from it. */
	m->t = ar.tensors;
	m->ntensors = ar.ntensors;
	m->buf_size = ar.buf_size;
	ar.tensors = NULL;
	ar.ntensors = 0;
	ar.buf_size = NULL;
	*out = m;
	m = NULL;
out:
	if (m) {
		for (size_t i = 0; i < m->nbufs; i++)
			be->ops->buf_destroy(m->bufs[i]);
		free(m->bufs);
		free(m->name);
		free(m);
	}
	msg_attach_reply_free(&ar);
	free(devname);
	free(ino);
	free(crc);
	free(p);
	return rc;
}

static void adopt_all(struct uwd *d, struct group *g, size_t ng)
{
	for (size_t i = 0; i < ng; i++) {
		struct uwerr e = {0};
		struct model *m = NULL;
		double t0 = uwd_now();
		int rc = adopt_group(d, &g[i], &m, &e);
		if (!rc) {
			const char *name = g[i].name + strlen(NAME_PREFIX);
			uint64_t resident = m->resident_bytes;
			size_t nt = m->ntensors;
			m->load_seconds = uwd_now() - t0;
			if ((rc = registry_adopt(d->reg, m, &e)) == 0)
				log_notice("fd store: %s: re-adopted ready without reading its files: "
					   "%zu tensors, %llu bytes resident, checksums verified",
					   name, nt, (unsigned long long)resident);
		}
		if (rc) {
			log_warning("fd store: %s: dropped: %s", g[i].name, e.msg);
			sd_notifyf(0, "FDSTOREREMOVE=1\nFDNAME=%s", g[i].name);
		}
		for (size_t f = 0; f < g[i].n; f++)
			if (g[i].fd[f] >= 0)
				close(g[i].fd[f]);
	}
}

int fdstore_adopt(struct uwd *d, struct uwerr *e)
{
	char **names = NULL;
	d->listen_fd = -1;
	int n = sd_listen_fds_with_names(1, &names);
	if (n < 0)
		return uwerr_set(e, -n, "sd_listen_fds: %s", strerror(-n));
	struct group *g = calloc((size_t)n + 1, sizeof(*g));
	size_t ng = 0;
	int rc = g ? 0 : uwerr_set(e, ENOMEM, "out of memory");
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		const char *name = names && names[i] ? names[i] : "unknown";
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		if (!rc && strncmp(name, NAME_PREFIX, strlen(NAME_PREFIX)) == 0) {
			size_t k = 0;
			while (k < ng && strcmp(g[k].name, name))
				k++;
			int *grown = realloc(g[k].fd, (g[k].n + 1) * sizeof(int));
			if (!grown || (k == ng && !(g[k].name = strdup(name)))) {
				free(grown);
				rc = uwerr_set(e, ENOMEM, "out of memory");
				close(fd);
				continue;
			}
			ng += k == ng;
			g[k].fd = grown;
			g[k].fd[g[k].n++] = fd;
		} else if (!rc && d->listen_fd < 0 &&
			   sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0) {
			d->listen_fd = fd;
		} else {
			if (!rc)
				rc = uwerr_set(e, EINVAL, "fd %d from systemd (LISTEN_FDS, name %s) is "
					       "neither a listening AF_UNIX stream socket nor a "
					       "stored model", fd, name);
			close(fd);
		}
	}
	if (!rc)
		adopt_all(d, g, ng);
	if (!rc && !d->be->ops->buf_adopt)
		log_info("fd store: not used: backend %s cannot re-adopt its buffers; models "
			 "load from disk again after a restart", d->be->ops->name);
	for (size_t k = 0; k < ng; k++) {
		if (rc)
			for (size_t f = 0; f < g[k].n; f++)
				close(g[k].fd[f]);
		free(g[k].name);
		free(g[k].fd);
	}
	free(g);
	if (names)
		for (int i = 0; i < n; i++)
			free(names[i]);
	free(names);
	if (rc && d->listen_fd >= 0) {
		close(d->listen_fd);
		d->listen_fd = -1;
	}
	return rc;
}
