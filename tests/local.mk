# tests: the shared test helpers. Each directory's local.mk adds its own
# Check suites (tests/check_*.c) to check_PROGRAMS and TESTS.
check_LTLIBRARIES += tests/libtestutil.la
tests_libtestutil_la_SOURCES = tests/testutil.c tests/testutil.h tests/turun.c \
	tests/daemonutil.c tests/daemonutil.h
tests_libtestutil_la_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)

# What every Check suite links.
TEST_LIBS = tests/libtestutil.la libuwcore.la $(CHECK_LIBS)
TEST_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)

# unweightd under valgrind for one whole run (issue 3's leak check).
TESTS += tests/check_valgrind.sh
EXTRA_DIST += tests/check_valgrind.sh tests/valgrind.supp
