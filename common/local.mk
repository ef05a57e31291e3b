# common: error records, checksums, full I/O, JSON, progress, threads.
libuwcore_la_SOURCES += \
	common/err.c common/err.h \
	common/crc32c.c common/crc32c.h
libuwcore_la_SOURCES += common/strbuf.c common/strbuf.h common/le.h
libuwcore_la_SOURCES += common/io.c common/io.h
libuwcore_la_SOURCES += common/parallel.c common/parallel.h
libuwcore_la_SOURCES += common/json.c common/json.h

check_PROGRAMS += tests/check_json
TESTS += tests/check_json
tests_check_json_SOURCES = tests/check_json.c
tests_check_json_CFLAGS = $(TEST_CFLAGS)
tests_check_json_LDADD = $(TEST_LIBS)

libuwcore_la_SOURCES += common/progress.c common/progress.h
if HAVE_CUDA
libuwcore_la_SOURCES += common/cudrv.c common/cudrv.h
libuwcore_la_CFLAGS += $(CUDA_CFLAGS)
libuwcore_la_LIBADD += -ldl
endif
EXTRA_DIST += common/cudrv.c common/cudrv.h
