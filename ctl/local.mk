# ctl: files of this directory, included by ../Makefile.am
bin_PROGRAMS += ctl/unweightctl
ctl_unweightctl_SOURCES = ctl/unweightctl.c ctl/commands.h \
	ctl/cmd_pack.c ctl/cmd_unpack.c ctl/cmd_inspect.c \
	ctl/cmd_daemon.c
ctl_unweightctl_LDADD = $(UW_CLIENT_LIBS)

# The offline subcommands, run as a user runs them.
check_PROGRAMS += tests/check_ctl
TESTS += tests/check_ctl
tests_check_ctl_SOURCES = tests/check_ctl.c
tests_check_ctl_CFLAGS = $(TEST_CFLAGS)
tests_check_ctl_LDADD = $(TEST_LIBS)
if HAVE_CUDA
ctl_unweightctl_LDFLAGS = $(AM_LDFLAGS) $(UWCUDA_RPATH)
endif
