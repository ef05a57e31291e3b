# format: files of this directory, included by ../Makefile.am
libuwcore_la_SOURCES += \
	format/dtype.c format/dtype.h
libuwcore_la_SOURCES += \
	format/huffman.c format/huffman.h \
	format/restcodec.c format/restcodec.h format/bf16.h
libuwcore_la_SOURCES += format/safetensors.c format/safetensors.h

check_PROGRAMS += tests/check_safetensors
TESTS += tests/check_safetensors
tests_check_safetensors_SOURCES = tests/check_safetensors.c
tests_check_safetensors_CFLAGS = $(TEST_CFLAGS)
tests_check_safetensors_LDADD = $(TEST_LIBS)

libuwcore_la_SOURCES += \
	format/bundle.c format/bundle.h \
	format/pack.c format/pack.h \
	format/source.c format/source.h \
	format/opener.c format/opener.h \
	format/uring_read.c format/uring_read.h

check_PROGRAMS += tests/check_bundle
TESTS += tests/check_bundle
tests_check_bundle_SOURCES = tests/check_bundle.c
tests_check_bundle_CFLAGS = $(TEST_CFLAGS)
tests_check_bundle_LDADD = $(TEST_LIBS)

check_PROGRAMS += tests/check_restcodec
TESTS += tests/check_restcodec
tests_check_restcodec_SOURCES = tests/check_restcodec.c tests/bf16cases.c tests/bf16cases.h
tests_check_restcodec_CFLAGS = $(TEST_CFLAGS)
tests_check_restcodec_LDADD = $(TEST_LIBS)

# The reader's fault hooks (UW_READ_FAULTS) are compiled into test programs
# only: this suite, and tests/unweightd-faults (daemon/local.mk).
check_PROGRAMS += tests/check_uring_read
TESTS += tests/check_uring_read
tests_check_uring_read_SOURCES = tests/check_uring_read.c format/uring_read.c
tests_check_uring_read_CFLAGS = $(TEST_CFLAGS) $(URING_CFLAGS) -DUW_READ_FAULTS
tests_check_uring_read_LDADD = $(TEST_LIBS)
