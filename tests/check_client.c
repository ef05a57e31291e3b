/* check_client: libunweight-client against a scripted fake daemon (errors,
 * refusals, malformed replies, cleanup, threads) and its exported symbols. */
#include "config.h"

#include <check.h>
#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/resident.h"
#include "proto/proto.h"
#include "tests/clientutil.h"
#include "tests/testutil.h"
#include "unweight.h"

#define FAKE_OLD_MSG "fake unweightd: protocol versions 7..9 only"
#define FAKE_MISSING_MSG "attach missing: no model of that name (fake)"
#define FAKE_STATS "{\"fake\":true,\"models\":[]}"

/* ---- the fixture: three tensors in one resident buffer ------------------ */

struct fx_tensor {
	const char *name;
	int dtype, ndim;
	uint64_t shape[2];
	size_t raw_bytes;
	uint8_t *raw;
	struct uw_layout l;
	uint64_t off;
};

static struct fx_tensor fx[] = {
	{ .name = "w", .dtype = UW_DTYPE_BF16, .ndim = 2, .shape = { 37, 72 } },
	{ .name = "norm", .dtype = UW_DTYPE_BF16, .ndim = 1, .shape = { 72 } },
	{ .name = "f", .dtype = UW_DTYPE_F32, .ndim = 2, .shape = { 3, 5 } },
};
#define NFX (sizeof(fx) / sizeof(fx[0]))
static uint8_t *fx_buf;
static size_t fx_size;

/* Weight-like BF16 values (a few exponents dominate, as in real weights,
 * so res_plan picks R12 for "w"), random bits for the rest. */
static void fx_build(uint64_t seed)
{
	uint64_t rng = seed;
	struct uwerr e = {0};
	fx_size = 0;
	free(fx_buf);   /* a previous test's, when Check does not fork */
	for (size_t i = 0; i < NFX; i++)
		free(fx[i].raw);
	for (size_t i = 0; i < NFX; i++) {
		struct fx_tensor *t = &fx[i];
		size_t n = t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1);
		t->raw_bytes = n * (t->dtype == UW_DTYPE_F32 ? 4 : 2);
		t->raw = malloc(t->raw_bytes);
		ck_assert_ptr_nonnull(t->raw);
		for (size_t k = 0; k < n; k++) {
			float v = (float)((double)(tu_rand(&rng) >> 11) * 0x1p-53 - 0.5) * 0.25f;
			if (t->dtype == UW_DTYPE_BF16) {
				uint16_t h = f32_to_bf16(v);
				memcpy(t->raw + 2 * k, &h, 2);
			} else {
				memcpy(t->raw + 4 * k, &v, 4);
			}
		}
		ck_assert_int_eq(res_plan(t->dtype, t->ndim, t->shape, t->raw, t->raw_bytes, RES_PREFER_SPEED,
					  &t->l, &e), 0);
		t->off = (fx_size + RES_ALIGN - 1) / RES_ALIGN * RES_ALIGN;
		fx_size = t->off + t->l.nbytes;
	}
	ck_assert_int_eq(fx[0].l.format, UW_FORMAT_R12);
	fx_buf = calloc(1, fx_size);
	ck_assert_ptr_nonnull(fx_buf);
	for (size_t i = 0; i < NFX; i++)
		ck_assert_int_eq(res_encode(&fx[i].l, fx[i].raw, fx[i].raw_bytes,
					    fx_buf + fx[i].off, &e), 0);
}

/* ---- the fake daemon --------------------------------------------------- */

enum fake_mode {
	FAKE_OK,          /* answers hello, attach, detach, stats */
	FAKE_OLD,         /* refuses hello: no common version */
	FAKE_UNSEALED,    /* attach hands a memfd without seals */
	FAKE_CUDA,        /* attach says the buffers are CUDA memory */
	FAKE_SHORT_FD,    /* attach claims a buffer larger than its memfd */
	FAKE_WRONG_OP,    /* stats is answered with an evict reply */
};

struct fake_counts {
	int attaches;     /* leases granted: 1..attaches */
	int detaches;     /* DETACHes naming a granted lease */
	int bad_detaches; /* DETACHes naming anything else */
};

struct fake {
	pid_t pid;
	char *dir, *sock;
	int res;          /* read end: the child's fake_counts at its exit */
};

static int fake_memfd(enum fake_mode mode)
{
	int fd = memfd_create("fake-model", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || write(fd, fx_buf, fx_size) != (ssize_t)fx_size)
		_exit(90);
	if (mode != FAKE_UNSEALED &&
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
		_exit(91);
	return fd;
}

static void fake_attach(struct wbuf *w, enum fake_mode mode, uint64_t lease)
{
	struct proto_tensor pt[NFX];
	uint64_t size = fx_size + (mode == FAKE_SHORT_FD ? 4096 : 0);
	memset(pt, 0, sizeof(pt));
	for (size_t i = 0; i < NFX; i++) {
		pt[i].name = (char *)fx[i].name;
		pt[i].dtype = (uint32_t)fx[i].dtype;
		pt[i].ndim = (uint32_t)fx[i].ndim;
		memcpy(pt[i].shape, fx[i].shape, sizeof(fx[i].shape));
		pt[i].raw_bytes = fx[i].raw_bytes;
		pt[i].offset = fx[i].off;
		pt[i].layout = fx[i].l;
	}
	struct msg_attach_reply ar = {
		.lease = lease,
		.backend = mode == FAKE_CUDA ? UW_BACKEND_CUDA : UW_BACKEND_HOST,
		.device_uuid = mode == FAKE_CUDA ? "GPU-00000000-fake" : "",
		.nbufs = 1, .buf_size = &size, .ntensors = NFX, .tensors = pt,
	};
	enc_attach_reply(w, &ar);
}

/* Serve one connection as the mode says; report the counts at EOF. */
static void fake_serve(int lsock, enum fake_mode mode, int res)
{
	struct fake_counts n = {0};
	int s = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
	if (s < 0)
		_exit(92);
	for (;;) {
		struct proto_msg m;
		struct uwerr e = {0};
		if (proto_recv(s, &m, &e) < 0)
			break;
		struct rbuf r = { .p = m.payload, .len = m.hdr.len };
		struct wbuf w = {0};
		struct msg_status ok = { .status = 0, .message = "" };
		uint16_t op = m.hdr.opcode | OP_REPLY;
		int fd = -1;
		switch (m.hdr.opcode) {
		case OP_HELLO:
			if (mode == FAKE_OLD) {
				enc_status(&w, &(struct msg_status){ -EPROTONOSUPPORT, FAKE_OLD_MSG });
			} else {
				enc_status(&w, &ok);
				enc_hello_reply(&w, &(struct msg_hello_reply){
					.version = PROTO_VERSION, .backend = UW_BACKEND_HOST,
					.daemon = "fake-unweightd" });
			}
			break;
		case OP_ATTACH: {
			struct msg_attach a = {0};
			if (dec_attach(&r, &a, &e) < 0)
				_exit(93);
			if (!strcmp(a.name, "missing")) {
				enc_status(&w, &(struct msg_status){ -ENOENT, FAKE_MISSING_MSG });
			} else {
				enc_status(&w, &ok);
				fake_attach(&w, mode, (uint64_t)++n.attaches);
				fd = fake_memfd(mode);
			}
			msg_attach_free(&a);
			break;
		}
		case OP_DETACH: {
			struct msg_detach d = {0};
			if (dec_detach(&r, &d, &e) < 0)
				_exit(94);
			if (d.lease >= 1 && d.lease <= (uint64_t)n.attaches)
				n.detaches++;
			else
				n.bad_detaches++;
			enc_status(&w, &ok);
			break;
		}
		case OP_STATS:
			enc_status(&w, &ok);
			enc_stats_reply(&w, &(struct msg_stats_reply){ FAKE_STATS });
			if (mode == FAKE_WRONG_OP)
				op = OP_EVICT | OP_REPLY;
			break;
		default:
			enc_status(&w, &(struct msg_status){ -EOPNOTSUPP, "fake: not scripted" });
		}
		if (w.err || proto_send(s, PROTO_VERSION, op, w.p, (uint32_t)w.len,
					&fd, fd >= 0, &e) < 0)
			_exit(95);
		if (fd >= 0)
			close(fd);
		wb_free(&w);
		proto_msg_free(&m);
	}
	if (write(res, &n, sizeof(n)) != sizeof(n))
		_exit(96);
	_exit(0);
}

static void fake_start(struct fake *f, enum fake_mode mode)
{
	int p[2];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	f->dir = tu_tmpdir();
	ck_assert_ptr_nonnull(f->dir);
	ck_assert_int_ge(asprintf(&f->sock, "%s/fake.sock", f->dir), 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->sock);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(l, 0);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(l, 4), 0);
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	f->pid = fork();
	ck_assert_int_ge(f->pid, 0);
	if (f->pid == 0) {
		close(p[0]);
		fake_serve(l, mode, p[1]);
	}
	close(l);
	close(p[1]);
	f->res = p[0];
}

/* Wait for the fake to see the client go; its counts. */
static struct fake_counts fake_stop(struct fake *f)
{
	struct fake_counts n = { -1, -1, -1 };
	int st;
	ck_assert_int_eq(read(f->res, &n, sizeof(n)), (ssize_t)sizeof(n));
	close(f->res);
	ck_assert_int_eq(waitpid(f->pid, &st, 0), f->pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "fake daemon status 0x%x", st);
	tu_rmtree(f->dir);
	free(f->dir);
	free(f->sock);
	return n;
}

/* ---- tests ------------------------------------------------------------- */

START_TEST(test_connect_missing)
{
	char *dir = tu_tmpdir(), *path;
	uw_client *c = (uw_client *)1;
	ck_assert_int_ge(asprintf(&path, "%s/nobody.sock", dir), 0);
	ck_assert_int_eq(uw_connect(path, &c), -ENOENT);
	ck_assert_ptr_null(c);
	ck_assert_msg(strstr(uw_errmsg(), path), "errmsg: %s", uw_errmsg());

	/* A socket file nobody listens on. */
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(s);
	ck_assert_int_eq(uw_connect(path, &c), -ECONNREFUSED);

	/* No path: $UNWEIGHT_SOCKET is the one tried. */
	free(path);
	ck_assert_int_ge(asprintf(&path, "%s/from-env.sock", dir), 0);
	setenv("UNWEIGHT_SOCKET", path, 1);
	ck_assert_int_eq(uw_connect(NULL, &c), -ENOENT);
	ck_assert_msg(strstr(uw_errmsg(), path), "errmsg: %s", uw_errmsg());

	char longp[200];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	ck_assert_int_eq(uw_connect(longp, &c), -ENAMETOOLONG);
	ck_assert_int_eq(uw_connect(path, NULL), -EINVAL);
	free(path);
	tu_rmtree(dir);
	free(dir);
}
END_TEST

START_TEST(test_version_mismatch)
{
	struct fake f;
	uw_client *c = (uw_client *)1;
	int fds = tu_count_fds();
	fake_start(&f, FAKE_OLD);
	ck_assert_int_eq(uw_connect(f.sock, &c), -EPROTONOSUPPORT);
	ck_assert_ptr_null(c);
	ck_assert_str_eq(uw_errmsg(), FAKE_OLD_MSG);
	fake_stop(&f);
	ck_assert_int_eq(tu_count_fds(), fds);
}
END_TEST

START_TEST(test_attach_decode_matmul)
{
	struct fake f;
	uw_client *c;
	uw_model *m = (uw_model *)1;
	uint64_t seed = tu_seed(), rng = seed ^ 0x1234;
	fx_build(seed);
	int fds = tu_count_fds();
	fake_start(&f, FAKE_OK);
	ck_assert_int_eq(uw_connect(f.sock, &c), 0);

	ck_assert_int_eq(uw_attach(c, "missing", &m), -ENOENT);
	ck_assert_ptr_null(m);
	ck_assert_str_eq(uw_errmsg(), FAKE_MISSING_MSG);

	/* The refusal left the connection usable. */
	ck_assert_int_eq(uw_attach(c, "m", &m), 0);
	ck_assert_int_eq(uw_model_backend(m), UW_BACKEND_HOST);
	ck_assert_uint_eq(uw_model_tensor_count(m), NFX);
	ck_assert_ptr_null(uw_model_tensor(m, NFX));
	ck_assert_ptr_null(uw_model_find(m, "nope"));
	for (size_t i = 0; i < NFX; i++) {
		const uw_tensor *t = uw_model_find(m, fx[i].name);
		struct uw_tensor_info info;
		ck_assert_ptr_eq(t, uw_model_tensor(m, i));
		ck_assert_int_eq(uw_tensor_info(t, &info), 0);
		ck_assert_str_eq(info.name, fx[i].name);
		ck_assert_uint_eq(info.dtype, fx[i].dtype);
		ck_assert_uint_eq(info.ndim, fx[i].ndim);
		ck_assert_uint_eq(info.shape[0], fx[i].shape[0]);
		ck_assert_uint_eq(info.layout.format, fx[i].l.format);
		ck_assert_uint_eq(info.layout.crc32c, fx[i].l.crc32c);
		ck_assert_ptr_nonnull(uw_tensor_host_ptr(t));
		ck_assert_uint_eq(uw_tensor_device_ptr(t), 0);
		ck_assert_int_eq(memcmp(uw_tensor_host_ptr(t), fx_buf + fx[i].off,
					fx[i].l.nbytes), 0);
		ck_assert_int_eq(cu_check_decode(t, fx[i].raw, fx[i].raw_bytes), 0);
	}
	const uw_tensor *w = uw_model_find(m, "w");
	ck_assert_int_eq(cu_check_matmul(w, (const uint16_t *)fx[0].raw, 1, 0, &rng, NULL), 0);
	ck_assert_int_eq(cu_check_matmul(w, (const uint16_t *)fx[0].raw, 5, 0, &rng, NULL), 0);
	ck_assert_int_eq(cu_check_matmul(w, (const uint16_t *)fx[0].raw, 1, 1, &rng, NULL), 0);
	ck_assert_int_eq(cu_check_matmul(w, (const uint16_t *)fx[0].raw, 5, 1, &rng, NULL), 0);

	/* The mapping is read-only: a write faults. */
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);   /* not a sanitizer's handler */
		*(volatile uint8_t *)uw_tensor_host_ptr(w) = 1;
		_exit(0);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "writer status 0x%x", st);

	char *json = (char *)1;
	ck_assert_int_eq(uw_stats_json(c, NULL, &json), 0);
	ck_assert_str_eq(json, FAKE_STATS);
	free(json);

	ck_assert_int_eq(uw_detach(m), 0);
	uw_disconnect(c);
	struct fake_counts n = fake_stop(&f);
	ck_assert_int_eq(n.attaches, 1);
	ck_assert_int_eq(n.detaches, 1);
	ck_assert_int_eq(n.bad_detaches, 0);
	ck_assert_int_eq(tu_count_fds(), fds);
}
END_TEST

/* A refused call: rc, and a message naming what was wrong. */
#define BAD(call, want, has) do { \
		int rc_ = (call); \
		ck_assert_msg(rc_ == (want), "%s: %d, expected %d", #call, rc_, want); \
		ck_assert_msg(strstr(uw_errmsg(), has), "%s: errmsg \"%s\" lacks \"%s\"", \
			      #call, uw_errmsg(), has); \
	} while (0)

START_TEST(test_bad_arguments)
{
	struct fake f;
	uw_client *c;
	uw_model *m, *m2;
	uint16_t x[72 * 2] = {0}, y[37 * 2];
	uint8_t out[64];
	const char *nowhere[] = { "/nonexistent/w.safetensors" };
	fx_build(tu_seed());
	fake_start(&f, FAKE_OK);
	ck_assert_int_eq(uw_connect(f.sock, &c), 0);
	ck_assert_int_eq(uw_attach(c, "m", &m), 0);
	const uw_tensor *w = uw_model_find(m, "w"), *norm = uw_model_find(m, "norm"),
			*f32 = uw_model_find(m, "f");

	BAD(uw_decode(NULL, out, sizeof(out), NULL), -EINVAL, "tensor");
	BAD(uw_decode(w, NULL, 1 << 20, NULL), -EINVAL, "out");
	BAD(uw_decode(w, out, sizeof(out), NULL), -EINVAL, "needs");
	BAD(uw_decode(f32, out, sizeof(out), (void *)1), -EINVAL, "stream");
	BAD(uw_matmul(NULL, x, 1, y, NULL), -EINVAL, "tensor");
	BAD(uw_matmul(w, NULL, 1, y, NULL), -EINVAL, "x is NULL");
	BAD(uw_matmul(w, x, 1, NULL, NULL), -EINVAL, "y is NULL");
	BAD(uw_matmul(w, x, 0, y, NULL), -EINVAL, "batch");
	BAD(uw_matmul(w, x, SIZE_MAX / 4, y, NULL), -EINVAL, "overflow");
	BAD(uw_matmul(norm, x, 1, y, NULL), -EINVAL, "2-D");
	BAD(uw_matmul(f32, x, 1, y, NULL), -EINVAL, "BF16");
	BAD(uw_matmul(w, x, 2, y, (void *)1), -EINVAL, "stream");
	BAD(uw_matmul_f32(w, NULL, 1, (float *)y, NULL), -EINVAL, "x is NULL");
	BAD(uw_matmul_f32(w, x, 0, (float *)y, NULL), -EINVAL, "batch");
	BAD(uw_matmul_f32(f32, x, 1, (float *)y, NULL), -EINVAL, "BF16");
	BAD(uw_tensor_info(w, NULL), -EINVAL, "NULL");
	BAD(uw_attach(c, NULL, &m2), -EINVAL, "NULL");
	BAD(uw_attach(c, "m", NULL), -EINVAL, "NULL");
	BAD(uw_evict(c, "m", 2), -EINVAL, "flags");
	BAD(uw_load(c, "bad/name", nowhere, 1), -EINVAL, "name");
	BAD(uw_load(c, "m", nowhere, 0), -EINVAL, "paths");
	BAD(uw_load(c, "m", nowhere, 1), -ENOENT, nowhere[0]);
	BAD(uw_stats_json(c, NULL, NULL), -EINVAL, "NULL");

	/* None of these reached the daemon: it saw one attach, one detach. */
	ck_assert_int_eq(uw_detach(m), 0);
	uw_disconnect(c);
	struct fake_counts n = fake_stop(&f);
	ck_assert_int_eq(n.attaches, 1);
	ck_assert_int_eq(n.detaches, 1);
}
END_TEST

START_TEST(test_null_safety)
{
	struct uw_tensor_info info;
	ck_assert_int_eq(uw_detach(NULL), 0);
	uw_disconnect(NULL);
	ck_assert_int_eq(uw_model_backend(NULL), -EINVAL);
	ck_assert_uint_eq(uw_model_tensor_count(NULL), 0);
	ck_assert_ptr_null(uw_model_tensor(NULL, 0));
	ck_assert_ptr_null(uw_model_find(NULL, "w"));
	ck_assert_ptr_null(uw_tensor_host_ptr(NULL));
	ck_assert_uint_eq(uw_tensor_device_ptr(NULL), 0);
	ck_assert_int_eq(uw_tensor_info(NULL, &info), -EINVAL);
	ck_assert_int_eq(uw_attach(NULL, "m", &(uw_model *){ NULL }), -EINVAL);
	ck_assert_int_eq(uw_evict(NULL, "m", 0), -EINVAL);
	ck_assert_str_eq(uw_strerror(-ENOENT), strerror(ENOENT));
	ck_assert_str_eq(uw_strerror(-EBUSY), strerror(EBUSY));
	ck_assert_ptr_nonnull(uw_errmsg());
}
END_TEST

/* Every way an attach can fail after the lease was granted: nothing stays
 * open or mapped, and the lease is given back. */
START_TEST(test_attach_failures)
{
	static const struct { enum fake_mode mode; int rc; const char *has; } cases[] = {
		{ FAKE_UNSEALED, -EPERM, "sealed" },
#ifdef HAVE_CUDA
		/* No driver here (-ENOENT), or no GPU of the fake's UUID (-ENODEV). */
		{ FAKE_CUDA, 0, "" },
#else
		{ FAKE_CUDA, -EOPNOTSUPP, "without CUDA" },
#endif
		{ FAKE_SHORT_FD, -EBADMSG, "bytes" },
	};
	fx_build(tu_seed());
	int fds = tu_count_fds();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fake f;
		uw_client *c;
		uw_model *m = (uw_model *)1;
		fake_start(&f, cases[i].mode);
		ck_assert_int_eq(uw_connect(f.sock, &c), 0);
		int rc = uw_attach(c, "m", &m);
		if (cases[i].rc)
			ck_assert_int_eq(rc, cases[i].rc);
		else
			ck_assert_msg(rc == -ENOENT || rc == -ENODEV, "case %zu: rc %d", i, rc);
		ck_assert_ptr_null(m);
		ck_assert_msg(strstr(uw_errmsg(), cases[i].has), "case %zu: errmsg: %s", i,
			      uw_errmsg());
		ck_assert_msg(strstr(uw_errmsg(), "attach m"), "errmsg: %s", uw_errmsg());
		uw_disconnect(c);
		struct fake_counts n = fake_stop(&f);
		ck_assert_int_eq(n.attaches, 1);
		ck_assert_int_eq(n.detaches, 1);
		ck_assert_int_eq(tu_count_fds(), fds);
	}
}
END_TEST

/* A reply out of step closes the connection: later requests say so. */
START_TEST(test_wrong_reply)
{
	struct fake f;
	uw_client *c;
	char *json;
	fx_build(tu_seed());
	fake_start(&f, FAKE_WRONG_OP);
	ck_assert_int_eq(uw_connect(f.sock, &c), 0);
	ck_assert_int_eq(uw_stats_json(c, NULL, &json), -EBADMSG);
	ck_assert_ptr_null(json);
	ck_assert_msg(strstr(uw_errmsg(), "opcode"), "errmsg: %s", uw_errmsg());
	ck_assert_int_eq(uw_stats_json(c, NULL, &json), -ENOTCONN);
	uw_disconnect(c);
	fake_stop(&f);
}
END_TEST

/* Models outlive their connection: still mapped and correct, and detach
 * then only unmaps (the lease ended with the socket). */
START_TEST(test_disconnect_first)
{
	struct fake f;
	uw_client *c;
	uw_model *m;
	fx_build(tu_seed());
	int fds = tu_count_fds();
	fake_start(&f, FAKE_OK);
	ck_assert_int_eq(uw_connect(f.sock, &c), 0);
	ck_assert_int_eq(uw_attach(c, "m", &m), 0);
	uw_disconnect(c);
	struct fake_counts n = fake_stop(&f);
	ck_assert_int_eq(n.attaches, 1);
	ck_assert_int_eq(n.detaches, 0);
	for (size_t i = 0; i < NFX; i++)
		ck_assert_int_eq(cu_check_decode(uw_model_tensor(m, i), fx[i].raw,
						 fx[i].raw_bytes), 0);
	ck_assert_int_eq(uw_detach(m), 0);
	ck_assert_int_eq(tu_count_fds(), fds);
}
END_TEST

#define NTHREADS 4
#define NROUNDS 40

static void *attach_loop(void *arg)
{
	uw_client *c = arg;
	for (int i = 0; i < NROUNDS; i++) {
		uw_model *m;
		char *json;
		if (uw_attach(c, "m", &m) < 0)
			return "attach";
		if (cu_check_decode(uw_model_find(m, "f"), fx[2].raw, fx[2].raw_bytes) < 0)
			return "decode";
		if (uw_detach(m) < 0)
			return "detach";
		if (uw_stats_json(c, "m", &json) < 0 || strcmp(json, FAKE_STATS))
			return "stats";
		free(json);
	}
	return NULL;
}

/* One client shared by threads: every request gets its own reply. */
START_TEST(test_threads)
{
	struct fake f;
	uw_client *c;
	pthread_t th[NTHREADS];
	fx_build(tu_seed());
	fake_start(&f, FAKE_OK);
	ck_assert_int_eq(uw_connect(f.sock, &c), 0);
	for (int i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, attach_loop, c), 0);
	for (int i = 0; i < NTHREADS; i++) {
		void *fail;
		ck_assert_int_eq(pthread_join(th[i], &fail), 0);
		ck_assert_msg(!fail, "thread %d: %s failed: %s", i, (char *)fail, uw_errmsg());
	}
	uw_disconnect(c);
	struct fake_counts n = fake_stop(&f);
	ck_assert_int_eq(n.attaches, NTHREADS * NROUNDS);
	ck_assert_int_eq(n.detaches, NTHREADS * NROUNDS);
	ck_assert_int_eq(n.bad_detaches, 0);
}
END_TEST

/* name is declared as a function in h: preceded by a non-identifier
 * character and followed by '('. */
static int declared(const char *h, const char *name)
{
	size_t n = strlen(name);
	for (const char *s = h; (s = strstr(s, name)); s++)
		if (s > h && !(isalnum((unsigned char)s[-1]) || s[-1] == '_') && s[n] == '(')
			return 1;
	return 0;
}

/* The .so exports exactly the UW_API functions of unweight.h, all uw_. */
START_TEST(test_exported_symbols)
{
	char *cmd, *hdr, line[512];
	size_t hlen, nexp = 0, ndecl = 0;
	ck_assert_int_ge(asprintf(&hdr, "%s/client/unweight.h", tu_srcdir()), 0);
	char *h = tu_read_file(hdr, &hlen);
	ck_assert_ptr_nonnull(h);
	h = realloc(h, hlen + 1);
	h[hlen] = '\0';
	ck_assert_int_ge(asprintf(&cmd, "nm -D --defined-only '%s/.libs/libunweight-client.so'",
				  tu_builddir()), 0);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	while (fgets(line, sizeof(line), p)) {
		char type, name[256];
		if (sscanf(line, "%*s %c %255s", &type, name) != 2)
			continue;
		name[strcspn(name, "@")] = '\0';
		if (type == 'A' && !strncmp(name, "UW_", 3))
			continue;   /* the version node itself */
		ck_assert_msg(!strncmp(name, "uw_", 3), "exported symbol %s is not uw_*", name);
		ck_assert_msg(declared(h, name), "exported %s is not declared in unweight.h", name);
		nexp++;
	}
	ck_assert_int_eq(pclose(p), 0);
	/* And every declared function is exported (one per line). */
	for (char *s = h; (s = strstr(s, "\nUW_API ")); s++)
		ndecl++;
	ck_assert_uint_gt(ndecl, 0);
	ck_assert_uint_eq(nexp, ndecl);
	free(h);
	free(hdr);
	free(cmd);
}
END_TEST

static Suite *client_suite(void)
{
	Suite *s = suite_create("client");
	TCase *tc = tu_tcase(s, "core", 60);
	tcase_add_test(tc, test_connect_missing);
	tcase_add_test(tc, test_version_mismatch);
	tcase_add_test(tc, test_attach_decode_matmul);
	tcase_add_test(tc, test_bad_arguments);
	tcase_add_test(tc, test_null_safety);
	tcase_add_test(tc, test_attach_failures);
	tcase_add_test(tc, test_wrong_reply);
	tcase_add_test(tc, test_disconnect_first);
	tcase_add_test(tc, test_threads);
	tcase_add_test(tc, test_exported_symbols);
	return s;
}

int main(void)
{
	return tu_run(client_suite());
}
