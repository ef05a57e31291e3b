# proto: the wire protocol (PROTOCOL.md), shared by the daemon and the client.
libuwcore_la_SOURCES += \
	proto/proto.h \
	proto/transport.c proto/messages.c
EXTRA_DIST += proto/PROTOCOL.md

check_PROGRAMS += tests/check_proto
TESTS += tests/check_proto
tests_check_proto_SOURCES = tests/check_proto.c
tests_check_proto_CFLAGS = $(TEST_CFLAGS)
tests_check_proto_LDADD = $(TEST_LIBS)
