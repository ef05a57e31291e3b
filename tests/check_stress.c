/* check_stress: a short bench/uw-stress (8 clients and a loader for 3
 * seconds; $UW_STRESS_CLIENTS and $UW_STRESS_SECONDS change that) against
 * a real ./unweightd: it must end with no unexpected error, every decoded
 * tensor equal to the source, no fd left behind in the daemon, and the
 * daemon still serving and exiting cleanly. */
#include "config.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/daemonutil.h"
#include "tests/testutil.h"

START_TEST(t_stress_short)
{
	struct daemon d;
	daemon_start(&d, NULL);
	const char *model = stage(&d, "stories260K.safetensors");
	char bin[1024], out[512];
	snprintf(bin, sizeof(bin), "%s/bench/uw-stress", tu_builddir());
	snprintf(out, sizeof(out), "%s/stress.out", d.dir);
	const char *clients = getenv("UW_STRESS_CLIENTS"), *secs = getenv("UW_STRESS_SECONDS");
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || dup2(fd, 1) < 0)
			_exit(126);
		execl(bin, "uw-stress", "--socket", d.sock, "--clients", clients ? clients : "8",
		      "--seconds", secs ? secs : "3", model, (char *)NULL);
		_exit(127);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	size_t n;
	char *text = tu_read_file(out, &n);
	ck_assert_ptr_nonnull(text);
	fprintf(stderr, "%.*s", (int)n, text);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "uw-stress failed (0x%x):\n%.*s", st,
		      (int)n, text);
	ck_assert_msg(strstr(text, " 0 differ from the source") && strstr(text, "all ops:"),
		      "%.*s", (int)n, text);
	free(text);
	int fd = connect_hello(&d);
	stats_ok(fd);
	ck_assert(!model_stat(fd, "stress-base").found);   /* it cleaned up */
	close(fd);
	daemon_stop(&d);
}
END_TEST

int main(void)
{
	rng = tu_seed();
	Suite *s = suite_create("stress");
	TCase *tc = tu_tcase(s, "stress", 300);
	tcase_add_test(tc, t_stress_short);
	return tu_run(s);
}
