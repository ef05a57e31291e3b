# daemon: unweightd (installed as sbin/unweightd; ./unweightd in the build
# tree), its man pages, example config and Check suite.
sbin_PROGRAMS += unweightd
unweightd_SOURCES = \
	daemon/main.c daemon/uwd.h \
	daemon/conf.c daemon/conf.h \
	daemon/log.c daemon/log.h \
	daemon/allow.c daemon/allow.h \
	daemon/beneath.c daemon/beneath.h \
	daemon/policy.c daemon/policy.h \
	daemon/server.c daemon/server.h \
	daemon/conn.c daemon/conn.h \
	daemon/registry.c daemon/registry.h \
	daemon/loader.c daemon/loader.h \
	daemon/filemap.c daemon/filemap.h \
	daemon/fdstore.c daemon/fdstore.h \
	daemon/stats.c daemon/stats.h \
	daemon/verify.c daemon/verify.h \
	daemon/tune.c daemon/tune.h daemon/tune_cuda.c \
	daemon/backend.c daemon/backend.h daemon/backend_host.c daemon/encode_gpu.h
unweightd_CFLAGS = $(AM_CFLAGS) $(SYSTEMD_CFLAGS)
unweightd_LDADD = libuwcore.la $(SYSTEMD_LIBS)
unweightd_LDFLAGS = $(AM_LDFLAGS)
EXTRA_unweightd_DEPENDENCIES =

dist_man_MANS += man/unweightd.8 man/unweightd.conf.5
uwdexampledir = $(docdir)/examples
dist_uwdexample_DATA = daemon/unweightd.conf.example

# Starts the real ./unweightd on a temporary socket.
check_PROGRAMS += tests/check_daemon
TESTS += tests/check_daemon
tests_check_daemon_SOURCES = tests/check_daemon.c
tests_check_daemon_CFLAGS = $(TEST_CFLAGS)
tests_check_daemon_LDADD = $(TEST_LIBS)
EXTRA_tests_check_daemon_DEPENDENCIES = unweightd

if HAVE_CUDA
# VMM buffers exported as fds; the driver itself is loaded at run time.
# Loads encode on the GPU and the tuner times kernels, both with the
# kernels of kernels/cuda (libuwcore after them: they use it; cudart loads
# the driver lazily too, so a host without one still starts).
unweightd_SOURCES += daemon/backend_cuda.c daemon/encode_gpu.c
unweightd_CFLAGS += $(CUDA_CFLAGS)
unweightd_LDADD += $(UWCUDA_LIBS) libuwcore.la
unweightd_LDFLAGS += $(UWCUDA_RPATH)
EXTRA_unweightd_DEPENDENCIES += kernels/libuwcuda.a
endif
EXTRA_DIST += daemon/backend_cuda.c daemon/encode_gpu.c

# Restart without reload: a fake systemd fd store.
check_PROGRAMS += tests/check_restart
TESTS += tests/check_restart
tests_check_restart_SOURCES = tests/check_restart.c
tests_check_restart_CFLAGS = $(TEST_CFLAGS)
tests_check_restart_LDADD = $(TEST_LIBS)
EXTRA_tests_check_restart_DEPENDENCIES = unweightd

# Clients killed at every step of the protocol, the daemon killed mid-load.
check_PROGRAMS += tests/check_crash
TESTS += tests/check_crash
tests_check_crash_SOURCES = tests/check_crash.c
tests_check_crash_CFLAGS = $(TEST_CFLAGS)
tests_check_crash_LDADD = $(TEST_LIBS)
EXTRA_tests_check_crash_DEPENDENCIES = unweightd tests/unweightd-faults

# The policy (admin, attach lists) and the load path confinement.
check_PROGRAMS += tests/check_policy
TESTS += tests/check_policy
tests_check_policy_SOURCES = tests/check_policy.c daemon/beneath.c
tests_check_policy_CFLAGS = $(TEST_CFLAGS)
tests_check_policy_LDADD = $(TEST_LIBS)
EXTRA_tests_check_policy_DEPENDENCIES = unweightd

# The cuda loader's file mappings, CPU side.
check_PROGRAMS += tests/check_filemap
TESTS += tests/check_filemap
tests_check_filemap_SOURCES = tests/check_filemap.c daemon/filemap.c
tests_check_filemap_CFLAGS = $(TEST_CFLAGS)
tests_check_filemap_LDADD = $(TEST_LIBS)

# Limits: leases, idle and stalled clients, request size, the load queue.
check_PROGRAMS += tests/check_limits
TESTS += tests/check_limits
tests_check_limits_SOURCES = tests/check_limits.c
tests_check_limits_CFLAGS = $(TEST_CFLAGS)
tests_check_limits_LDADD = $(TEST_LIBS)
EXTRA_tests_check_limits_DEPENDENCIES = unweightd

# unweightd with the reader's fault hooks (format/uring_read.c built with
# UW_READ_FAULTS, taken before libuwcore's copy) and the backend's
# (UW_ALLOC_FAULTS, daemon/backend.c): check_daemon, check_crash and
# check_verify drive them through UW_TEST_READ_FAULTS, UW_TEST_ALLOC_FAULTS
# and UW_TEST_CORRUPT. Never installed; unweightd has no hooks.
check_PROGRAMS += tests/unweightd-faults
tests_unweightd_faults_SOURCES = $(unweightd_SOURCES) format/uring_read.c
tests_unweightd_faults_CFLAGS = $(unweightd_CFLAGS) $(URING_CFLAGS) -DUW_READ_FAULTS -DUW_ALLOC_FAULTS
tests_unweightd_faults_LDADD = $(unweightd_LDADD)
tests_unweightd_faults_LDFLAGS = $(unweightd_LDFLAGS)
EXTRA_tests_unweightd_faults_DEPENDENCIES = $(EXTRA_unweightd_DEPENDENCIES)
EXTRA_tests_check_daemon_DEPENDENCIES += tests/unweightd-faults ctl/unweightctl

# Verify: a good model, one corrupted as it was written, the periodic verify.
check_PROGRAMS += tests/check_verify
TESTS += tests/check_verify
tests_check_verify_SOURCES = tests/check_verify.c
tests_check_verify_CFLAGS = $(TEST_CFLAGS)
tests_check_verify_LDADD = $(TEST_LIBS)
EXTRA_tests_check_verify_DEPENDENCIES = unweightd tests/unweightd-faults ctl/unweightctl
