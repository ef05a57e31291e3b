# format: files of this directory, included by ../Makefile.am
libuwcore_la_SOURCES += \
	format/dtype.c format/dtype.h
