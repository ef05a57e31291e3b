# client: libunweight-client, its public header, pkg-config file and man page,
# and the Check suites of the library and of the whole system.
lib_LTLIBRARIES += libunweight-client.la
libunweight_client_la_SOURCES = \
	client/client.c client/client.h \
	client/model.c \
	client/backend_host.c
libunweight_client_la_LIBADD = libuwcore.la
# current:revision:age (libtool); bump per the libtool rules on each release.
libunweight_client_la_LDFLAGS = -version-info 0:0:0 -no-undefined \
	-Wl,--version-script=$(srcdir)/client/libunweight-client.map
EXTRA_libunweight_client_la_DEPENDENCIES = client/libunweight-client.map
if HAVE_CUDA
# The CUDA import path and the kernels of kernels/cuda (built -fPIC for this).
libunweight_client_la_SOURCES += client/backend_cuda.c
libunweight_client_la_CFLAGS = $(AM_CFLAGS) $(CUDA_CFLAGS)
libunweight_client_la_LIBADD += $(UWCUDA_LIBS)
libunweight_client_la_LDFLAGS += $(UWCUDA_RPATH)
EXTRA_libunweight_client_la_DEPENDENCIES += kernels/libuwcuda.a
endif
EXTRA_DIST += client/backend_cuda.c

# What a program using the library links. A static build of the library
# cannot carry the CUDA kernels' archive, so programs name it too.
UW_CLIENT_LIBS = libunweight-client.la libuwcore.la
if HAVE_CUDA
UW_CLIENT_LIBS += $(UWCUDA_LIBS)
endif
include_HEADERS += client/unweight.h
pkgconfig_DATA += client/unweight-client.pc
dist_man_MANS += man/libunweight-client.3
EXTRA_DIST += client/libunweight-client.map

check_PROGRAMS += tests/check_client
TESTS += tests/check_client
tests_check_client_SOURCES = tests/check_client.c tests/clientutil.c tests/clientutil.h
tests_check_client_CFLAGS = $(TEST_CFLAGS)
tests_check_client_LDADD = $(UW_CLIENT_LIBS) $(TEST_LIBS)

# A real unweightd on a temporary socket, driven through the library.
check_PROGRAMS += tests/check_integration
TESTS += tests/check_integration
tests_check_integration_SOURCES = tests/check_integration.c tests/clientutil.c tests/clientutil.h
tests_check_integration_CFLAGS = $(TEST_CFLAGS)
tests_check_integration_LDADD = $(UW_CLIENT_LIBS) $(TEST_LIBS)
EXTRA_tests_check_integration_DEPENDENCIES = unweightd$(EXEEXT) ctl/unweightctl$(EXEEXT)
if HAVE_CUDA
# clientutil stages buffers through device memory on the cuda backend.
tests_check_client_CFLAGS += $(CUDA_CFLAGS)
tests_check_client_LDADD += -L$(CUDA_DIR)/lib64 -lcudart
tests_check_client_LDFLAGS = $(AM_LDFLAGS) $(UWCUDA_RPATH)
tests_check_integration_CFLAGS += $(CUDA_CFLAGS)
tests_check_integration_LDADD += -L$(CUDA_DIR)/lib64 -lcudart
tests_check_integration_LDFLAGS = $(AM_LDFLAGS) $(UWCUDA_RPATH)
endif
# The same suite on the cuda backend (skips without a GPU).
TESTS += tests/check_gpu_integration.sh
GPU_TESTS += tests/check_gpu_integration.sh
EXTRA_DIST += tests/check_gpu_integration.sh

# Restart without reload and verify, seen by workers through the library, on
# $UW_TEST_BACKEND (host here; tests/check_gpu_restart.sh runs it on cuda).
check_PROGRAMS += tests/check_restart_client
TESTS += tests/check_restart_client
tests_check_restart_client_SOURCES = tests/check_restart_client.c tests/clientutil.c \
	tests/clientutil.h
tests_check_restart_client_CFLAGS = $(TEST_CFLAGS)
tests_check_restart_client_LDADD = $(UW_CLIENT_LIBS) $(TEST_LIBS)
EXTRA_tests_check_restart_client_DEPENDENCIES = unweightd$(EXEEXT) tests/unweightd-faults$(EXEEXT)
if HAVE_CUDA
tests_check_restart_client_CFLAGS += $(CUDA_CFLAGS)
tests_check_restart_client_LDADD += -L$(CUDA_DIR)/lib64 -lcudart
tests_check_restart_client_LDFLAGS = $(AM_LDFLAGS) $(UWCUDA_RPATH)
endif
TESTS += tests/check_gpu_restart.sh
GPU_TESTS += tests/check_gpu_restart.sh
EXTRA_DIST += tests/check_gpu_restart.sh
