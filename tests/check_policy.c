/* check_policy: the real ./unweightd enforcing unweightd.conf's policy on
 * the peer the kernel names (SO_PEERCRED): a config whose admin list leaves
 * out this test's uid refuses its load and evict with -EPERM and a message
 * naming it, and logs the refusal with its uid and pid; a group in the list
 * lets it in; attach follows the default list unless the model has an
 * attach.NAME list of its own. No privilege is needed: the lists name other
 * uids instead of switching this process to another. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

int main(void)
{
	rng = tu_seed();
	Suite *s = suite_create("policy");
	TCase *tc = tu_tcase(s, "policy", 120);
	tcase_add_test(tc, t_admin_refused);
	tcase_add_test(tc, t_admin_group);
	tcase_add_test(tc, t_attach_override);
	return tu_run(s);
}
