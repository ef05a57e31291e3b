# common: error records, checksums, JSON, progress, threads.
libuwcore_la_SOURCES += \
	common/err.c common/err.h \
	common/crc32c.c common/crc32c.h
libuwcore_la_SOURCES += common/strbuf.c common/strbuf.h
