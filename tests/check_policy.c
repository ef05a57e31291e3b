/* check_policy: the real ./unweightd enforcing unweightd.conf's policy on
 * the peer the kernel names (SO_PEERCRED): a config whose admin list leaves
 * out this test's uid refuses its load, evict, verify and tune with -EPERM and a message
 * naming it, and logs the refusal with its uid and pid; a group in the list
 * lets it in; attach follows the default list unless the model has an
 * attach.NAME list of its own. No privilege is needed: the lists name other
 * uids instead of switching this process to another. Run as root (as CI
 * does), t_other_users also switches clients to other uids and checks that
 * supplementary groups (SO_PEERGROUPS) let one in and keep another out.
 *
 * And the load path confinement: beneath_open (openat2) and beneath_walk
 * (its fallback) agree on a table of paths that stay inside or escape, and
 * the daemon refuses loads whose path, or whose index's shard, escapes its
 * allow_dir by ".." or by a symlink. */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/beneath.h"

#include "tests/daemonutil.h"
#include "tests/testutil.h"

/* A uid that is not ours, and that no test process runs as. */
static long other_uid(void)
{
	return (long)getuid() == 4242 ? 4243 : 4242;
}

static int log_has(const char *path, const char *want)
{
	size_t n;
	char *text = tu_read_file(path, &n);
	int found = text && memmem(text, n, want, strlen(want)) != NULL;
	free(text);
	return found;
}

START_TEST(t_admin_refused)
{
	char conf[128], *dir = tu_tmpdir(), logf[512], want[128];
	snprintf(conf, sizeof(conf), "admin = %ld, @%ld\n", other_uid(), other_uid());
	snprintf(logf, sizeof(logf), "%s/unweightd.log", dir);
	struct daemon d;
	struct start_opts o = {.conf = conf, .log = logf};
	daemon_start(&d, &o);
	int fd = connect_hello(&d);
	const char *p = stage(&d, "stories260K.safetensors");

	ck_assert_int_eq(req_load(fd, "stories", p), -EPERM);
	snprintf(want, sizeof(want), "uid %ld ", (long)getuid());
	ck_assert_msg(strstr(last_msg, "load stories: permission denied") && strstr(last_msg, want) &&
		      strstr(last_msg, "admin = "), "\"%s\"", last_msg);
	ck_assert_int_eq(req_evict(fd, "stories", 0), -EPERM);
	ck_assert_msg(strstr(last_msg, "evict stories: permission denied"), "\"%s\"", last_msg);
	struct msg_verify_reply vr;
	ck_assert_int_eq(req_verify(fd, "stories", &vr), -EPERM);
	ck_assert_msg(strstr(last_msg, "verify stories: permission denied") && strstr(last_msg, want),
		      "\"%s\"", last_msg);
	uint64_t job = 0;
	ck_assert_int_eq(req_tune(fd, "stories", 0, &job), -EPERM);
	ck_assert_msg(strstr(last_msg, "tune stories: permission denied") &&
		      strstr(last_msg, "may not load, evict, verify or tune"), "\"%s\"", last_msg);
	ck_assert_int_eq(req_tune(fd, "", 0, &job), -EPERM);
	ck_assert_msg(strstr(last_msg, "tune (every model): permission denied"), "\"%s\"", last_msg);
	ck_assert(!model_stat(fd, "stories").found);   /* stats stays open to all */

	/* The log names the peer by uid and pid, as the kernel gave them. */
	snprintf(want, sizeof(want), "uid %ld gid %ld pid %ld: load stories: permission denied",
		 (long)getuid(), (long)getgid(), (long)getpid());
	double end = now() + 10;
	while (!log_has(logf, want) && now() < end)
		sleep_ms(10);
	ck_assert_msg(log_has(logf, want), "the log lacks \"%s\"", want);
	close(fd);
	daemon_stop(&d);
	tu_rmtree(dir);
	free(dir);
}
END_TEST

/* The admin list names our group, not us: that is enough. */
START_TEST(t_admin_group)
{
	char conf[128];
	snprintf(conf, sizeof(conf), "admin = %ld @%ld\n", other_uid(), (long)getgid());
	struct daemon d;
	struct start_opts o = {.conf = conf};
	daemon_start(&d, &o);
	int fd = connect_hello(&d);
	load_ready(&d, fd, "stories");
	ck_assert_int_eq(req_evict(fd, "stories", 0), 0);
	close(fd);
	daemon_stop(&d);
}
END_TEST

/* attach = everyone, but attach.secret = another uid: secret is refused,
 * plain is served. Then the other way round: nobody by default, and
 * attach.plain names us. */
START_TEST(t_attach_override)
{
	for (int round = 0; round < 2; round++) {
		char conf[256];
		if (round == 0)
			snprintf(conf, sizeof(conf), "attach = *\nattach.secret = %ld\n", other_uid());
		else
			snprintf(conf, sizeof(conf), "attach = %ld\nattach.plain = %ld\n", other_uid(),
				 (long)getuid());
		struct daemon d;
		struct start_opts o = {.conf = conf};
		daemon_start(&d, &o);
		int fd = connect_hello(&d);
		load_ready(&d, fd, "plain");
		load_ready(&d, fd, "secret");
		struct attached a;
		ck_assert_int_eq(req_attach(fd, "secret", &a), -EPERM);
		ck_assert_msg(strstr(last_msg, "attach secret: permission denied") &&
			      strstr(last_msg, round ? "(attach = " : "(attach.secret = "),
			      "\"%s\"", last_msg);
		ck_assert_int_eq(req_attach(fd, "plain", &a), 0);
		verify_model(&a, fixture());
		ck_assert_int_eq(req_detach(fd, a.r.lease), 0);
		attached_free(&a);
		ck_assert_uint_eq(model_stat(fd, "secret").attaches, 0);
		close(fd);
		daemon_stop(&d);
	}
}
END_TEST

/* What a client of another uid, in the supplementary group extra, gets
 * for a load, an attach of stories, an evict of a name nobody has and a
 * verify of stories: it runs in a child that switched to that uid (so this
 * needs root), and reports the statuses through a pipe. */
static void as_user(const struct daemon *d, uid_t uid, gid_t extra, const char *path, int st[4])
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[0]);
		if (setgroups(1, &extra) || setgid((gid_t)uid) || setuid(uid))
			_exit(2);
		int fd = connect_hello(d);
		struct attached a;
		struct msg_verify_reply vr;
		int got[4] = {req_load(fd, "mine", path), req_attach(fd, "stories", &a),
			      req_evict(fd, "nosuch", 0), req_verify(fd, "stories", &vr)};
		if (got[1] == 0)
			attached_free(&a);
		if (got[3] == 0 && (vr.nbad || vr.tensors == 0))
			got[3] = -EBADMSG;   /* stories is sound: a verify that ran finds so */
		msg_verify_reply_free(&vr);
		_exit(write(p[1], got, sizeof(got)) == sizeof(got) ? 0 : 3);
	}
	close(p[1]);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "uid %ld: 0x%x", (long)uid,
		      status);
	ck_assert_int_eq(read(p[0], st, 4 * sizeof(int)), 4 * sizeof(int));
	close(p[0]);
}

/* As root: the daemon judges clients of other uids by their supplementary
 * groups (SO_PEERGROUPS). admin and attach.stories name group 4250: a
 * client in it loads, attaches, may evict and verifies; one outside is
 * refused all four. */
START_TEST(t_other_users)
{
	if (geteuid() != 0) {
		fprintf(stderr, "t_other_users: not root, so no other uid to switch to; not run\n");
		return;
	}
	struct daemon d;
	struct start_opts o = {.conf = "admin = root @4250\nattach.stories = root @4250\n"
				       "socket_mode = 0666\n"};
	daemon_start(&d, &o);
	ck_assert_int_eq(chmod(d.dir, 0755), 0);   /* the way to the socket */
	int fd = connect_hello(&d);
	load_ready(&d, fd, "stories");
	const char *mine = stage(&d, "mine.safetensors");
	int st[4];
	as_user(&d, 4251, 4250, mine, st);
	ck_assert_int_eq(st[0], 0);
	ck_assert_int_eq(st[1], 0);
	ck_assert_int_eq(st[2], -ENOENT);   /* allowed: the name decides */
	ck_assert_int_eq(st[3], 0);
	as_user(&d, 4252, 4253, mine, st);
	ck_assert_int_eq(st[0], -EPERM);
	ck_assert_int_eq(st[1], -EPERM);
	ck_assert_int_eq(st[2], -EPERM);
	ck_assert_int_eq(st[3], -EPERM);
	close(fd);
	daemon_stop(&d);
}
END_TEST

/* socket_owner, socket_group and socket_mode take effect on the socket it
 * binds. Run as root, it is given to another user and group, and a third
 * user is kept out by the mode; otherwise to our own ids (all a user may). */
START_TEST(t_socket_owner)
{
	int root = geteuid() == 0;
	long uid = root ? 4242 : (long)geteuid(), gid = root ? 4243 : (long)getegid();
	char conf[160];
	snprintf(conf, sizeof(conf), "socket_owner = %ld\nsocket_group = %ld\nsocket_mode = 0660\n",
		 uid, gid);
	struct daemon d;
	struct start_opts o = {.conf = conf};
	daemon_start(&d, &o);
	struct stat sb;
	ck_assert_int_eq(stat(d.sock, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 07777, 0660);
	ck_assert_uint_eq(sb.st_uid, (uid_t)uid);
	ck_assert_uint_eq(sb.st_gid, (gid_t)gid);
	if (root) {
		ck_assert_int_eq(chmod(d.dir, 0755), 0);   /* only the socket's mode keeps it out */
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			struct sockaddr_un sa = {.sun_family = AF_UNIX};
			snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d.sock);
			int fd = socket(AF_UNIX, SOCK_STREAM, 0);
			if (setgroups(0, NULL) || setgid(4244) || setuid(4244))
				_exit(2);
			_exit(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno == EACCES ? 0 : 1);
		}
		int st;
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "uid 4244 could connect (0x%x)", st);
	}
	int fd = connect_hello(&d);
	stats_ok(fd);
	close(fd);
	daemon_stop(&d);
}
END_TEST

/* ---- the load path ----------------------------------------------------- */

static void mkfile(const char *dir, const char *name, const char *text)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	ck_assert_int_eq(tu_write_file(p, text, strlen(text)), 0);
}

static void mklink(const char *dir, const char *name, const char *target)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	ck_assert_msg(symlink(target, p) == 0, "symlink %s: %s", p, strerror(errno));
}

/* Each path under in/, what it must give: the text of the file it opens,
 * or the error. Both ways of opening must agree. */
START_TEST(t_beneath)
{
	char *root = tu_tmpdir(), in[512], sub[512], abs_target[600];
	snprintf(in, sizeof(in), "%s/in", root);
	snprintf(sub, sizeof(sub), "%s/in/sub", root);
	ck_assert_int_eq(mkdir(in, 0755), 0);
	ck_assert_int_eq(mkdir(sub, 0755), 0);
	mkfile(root, "out", "outside");
	mkfile(in, "f", "file f");
	mkfile(sub, "g", "file g");
	snprintf(abs_target, sizeof(abs_target), "%s/f", in);
	mklink(in, "lrel", "sub/g");            /* inside */
	mklink(in, "ldir", "sub");              /* a directory, inside */
	mklink(sub, "lchain", "../lrel");       /* a chain, inside */
	mklink(in, "lup", "../out");            /* climbs out */
	mklink(sub, "lup2", "../../out");
	mklink(in, "labs", abs_target);         /* absolute: refused even pointing inside */
	mklink(in, "loop", "loop");
	int dirfd = open(in, O_PATH | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(dirfd, 0);
	static const struct {
		const char *path, *text;
		int err;
	} cases[] = {
		{"f", "file f", 0},
		{"./sub//g", "file g", 0},
		{"sub/../f", "file f", 0},
		{"lrel", "file g", 0},
		{"ldir/g", "file g", 0},
		{"sub/lchain", "file g", 0},
		{"../out", NULL, -EXDEV},
		{"sub/../../out", NULL, -EXDEV},
		{"lup", NULL, -EXDEV},
		{"sub/lup2", NULL, -EXDEV},
		{"ldir/../../out", NULL, -EXDEV},
		{"labs", NULL, -EXDEV},
		{"loop", NULL, -ELOOP},
		{"f/x", NULL, -ENOTDIR},
		{"missing", NULL, -ENOENT},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		for (int way = 0; way < 2; way++) {
			int fd = way ? beneath_walk(dirfd, cases[i].path, O_RDONLY)
				 : beneath_open(dirfd, cases[i].path, O_RDONLY);
			const char *how = way ? "beneath_walk" : "beneath_open";
			if (cases[i].err) {
				ck_assert_msg(fd == cases[i].err, "%s %s: %d, expected %d", how,
					      cases[i].path, fd, cases[i].err);
				continue;
			}
			ck_assert_msg(fd >= 0, "%s %s: %s", how, cases[i].path, strerror(-fd));
			char buf[32] = {0};
			ck_assert_int_ge(read(fd, buf, sizeof(buf) - 1), 0);
			ck_assert_msg(strcmp(buf, cases[i].text) == 0, "%s %s read \"%s\"", how,
				      cases[i].path, buf);
			ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
			close(fd);
		}
	close(dirfd);
	tu_rmtree(root);
	free(root);
}
END_TEST

/* A load whose path escapes by "..", or by a symlink climbing out, is
 * refused; so is an index whose shard is such a symlink; a symlink that
 * stays inside loads; a FIFO is refused at once instead of blocking. */
START_TEST(t_load_escapes)
{
	struct daemon d;
	daemon_start(&d, NULL);
	int fd = connect_hello(&d);
	char out[512], p[600], sub[512];
	snprintf(out, sizeof(out), "%s/outside.safetensors", d.dir);
	copy_file(fixture(), out, 0);

	snprintf(p, sizeof(p), "%s/../outside.safetensors", d.allow);
	ck_assert_int_eq(req_load(fd, "dots", p), -EACCES);
	ck_assert_msg(strstr(last_msg, "leads outside allow_dir") && strstr(last_msg, out),
		      "\"%s\"", last_msg);

	mklink(d.allow, "up.safetensors", "../outside.safetensors");
	snprintf(p, sizeof(p), "%s/up.safetensors", d.allow);
	ck_assert_int_eq(req_load(fd, "up", p), -EACCES);
	ck_assert_msg(strstr(last_msg, "up.safetensors") && strstr(last_msg, "leads outside"),
		      "\"%s\"", last_msg);

	/* An index beside a shard that climbs out. */
	snprintf(p, sizeof(p), "%s/w.safetensors", d.allow);
	write_big(p, 2, 8, 64);
	snprintf(p, sizeof(p), "%s/evil.safetensors.index.json", d.allow);
	const char *idx = "{\"weight_map\":{\"w000\":\"w.safetensors\",\"w001\":\"w.safetensors\","
			  "\"tok_embeddings.weight\":\"up.safetensors\"}}";
	ck_assert_int_eq(tu_write_file(p, idx, strlen(idx)), 0);
	ck_assert_int_eq(req_load(fd, "evil", p), -EACCES);
	ck_assert_msg(strstr(last_msg, "up.safetensors") && strstr(last_msg, "evil.safetensors.index"),
		      "\"%s\"", last_msg);

	/* A FIFO: not a regular file, and no writer ever comes. */
	snprintf(p, sizeof(p), "%s/fifo.safetensors", d.allow);
	ck_assert_int_eq(mkfifo(p, 0644), 0);
	ck_assert_int_eq(req_load(fd, "fifo", p), -EINVAL);
	ck_assert_msg(strstr(last_msg, "not a regular file"), "\"%s\"", last_msg);

	/* Inside, through a directory symlink and a file symlink. */
	snprintf(sub, sizeof(sub), "%s/blobs", d.allow);
	ck_assert_int_eq(mkdir(sub, 0755), 0);
	stage(&d, "blobs/stories");
	mklink(d.allow, "snap", "blobs");
	mklink(sub, "model.safetensors", "stories");
	snprintf(p, sizeof(p), "%s/snap/model.safetensors", d.allow);
	ck_assert_msg(req_load(fd, "inside", p) == 0, "load: %s", last_msg);
	ck_assert_str_eq(wait_loaded(fd, "inside").state, "ready");
	struct attached a;
	ck_assert_int_eq(req_attach(fd, "inside", &a), 0);
	verify_model(&a, fixture());
	attached_free(&a);

	/* Only the one that stayed inside is there. */
	struct json_value *j = req_stats(fd, "");
	ck_assert_uint_eq(json_get(j, "models")->u.arr.n, 1);
	json_free(j);
	close(fd);
	daemon_stop(&d);
}
END_TEST

int main(void)
{
	rng = tu_seed();
	Suite *s = suite_create("policy");
	TCase *tc = tu_tcase(s, "policy", 120);
	tcase_add_test(tc, t_admin_refused);
	tcase_add_test(tc, t_admin_group);
	tcase_add_test(tc, t_attach_override);
	tcase_add_test(tc, t_other_users);
	tcase_add_test(tc, t_socket_owner);
	tcase_add_test(tc, t_beneath);
	tcase_add_test(tc, t_load_escapes);
	return tu_run(s);
}
