# tests/fuzz: a libFuzzer harness per parser of untrusted bytes (one entry
# function each, fuzz.h) and its seed corpus, tests/fuzz/NAME/. make check
# replays every corpus through the harnesses (tests/check_fuzz_corpus); a
# build configured with --enable-fuzz CC=clang links each harness with
# libFuzzer, and `make fuzz` runs them (tests/fuzz/run.sh).
FUZZ_TARGETS = json safetensors index bundle restcodec resident proto tune
FUZZ_SHARED = tests/fuzz/fuzz.h tests/fuzz/fuzzutil.c

check_PROGRAMS += tests/check_fuzz_corpus
TESTS += tests/check_fuzz_corpus
tests_check_fuzz_corpus_SOURCES = tests/check_fuzz_corpus.c $(FUZZ_SHARED) \
	tests/fuzz/json.c tests/fuzz/safetensors.c tests/fuzz/index.c tests/fuzz/bundle.c \
	tests/fuzz/restcodec.c tests/fuzz/resident.c tests/fuzz/proto.c tests/fuzz/tune.c
tests_check_fuzz_corpus_CFLAGS = $(TEST_CFLAGS)
tests_check_fuzz_corpus_LDADD = $(TEST_LIBS)

EXTRA_DIST += tests/fuzz/run.sh tests/fuzz/json.dict tests/fuzz/json \
	tests/fuzz/safetensors tests/fuzz/index tests/fuzz/bundle tests/fuzz/restcodec \
	tests/fuzz/resident tests/fuzz/proto tests/fuzz/tune

# Seconds each harness runs under make fuzz, and how many run at once.
FUZZ_SECONDS = 60
FUZZ_JOBS = 1

if FUZZ
UW_FUZZERS = tests/fuzz/fuzz_json tests/fuzz/fuzz_safetensors tests/fuzz/fuzz_index \
	tests/fuzz/fuzz_bundle tests/fuzz/fuzz_restcodec tests/fuzz/fuzz_resident \
	tests/fuzz/fuzz_proto tests/fuzz/fuzz_tune
noinst_PROGRAMS += $(UW_FUZZERS)
# UW_LIBFUZZER: the harness defines LLVMFuzzerTestOneInput; libFuzzer's main.
UW_FUZZ_DEFS = $(AM_CPPFLAGS) -DUW_LIBFUZZER
UW_FUZZ_LINK = $(AM_LDFLAGS) -fsanitize=fuzzer
tests_fuzz_fuzz_json_SOURCES = tests/fuzz/json.c $(FUZZ_SHARED)
tests_fuzz_fuzz_json_CPPFLAGS = $(UW_FUZZ_DEFS)
tests_fuzz_fuzz_json_LDFLAGS = $(UW_FUZZ_LINK)
tests_fuzz_fuzz_json_LDADD = libuwcore.la
tests_fuzz_fuzz_safetensors_SOURCES = tests/fuzz/safetensors.c $(FUZZ_SHARED)
tests_fuzz_fuzz_safetensors_CPPFLAGS = $(UW_FUZZ_DEFS)
tests_fuzz_fuzz_safetensors_LDFLAGS = $(UW_FUZZ_LINK)
tests_fuzz_fuzz_safetensors_LDADD = libuwcore.la
tests_fuzz_fuzz_index_SOURCES = tests/fuzz/index.c $(FUZZ_SHARED)
tests_fuzz_fuzz_index_CPPFLAGS = $(UW_FUZZ_DEFS)
tests_fuzz_fuzz_index_LDFLAGS = $(UW_FUZZ_LINK)
tests_fuzz_fuzz_index_LDADD = tests/libtestutil.la libuwcore.la
tests_fuzz_fuzz_bundle_SOURCES = tests/fuzz/bundle.c $(FUZZ_SHARED)
tests_fuzz_fuzz_bundle_CPPFLAGS = $(UW_FUZZ_DEFS)
tests_fuzz_fuzz_bundle_LDFLAGS = $(UW_FUZZ_LINK)
tests_fuzz_fuzz_bundle_LDADD = libuwcore.la
tests_fuzz_fuzz_restcodec_SOURCES = tests/fuzz/restcodec.c $(FUZZ_SHARED)
tests_fuzz_fuzz_restcodec_CPPFLAGS = $(UW_FUZZ_DEFS)
tests_fuzz_fuzz_restcodec_LDFLAGS = $(UW_FUZZ_LINK)
tests_fuzz_fuzz_restcodec_LDADD = libuwcore.la
tests_fuzz_fuzz_resident_SOURCES = tests/fuzz/resident.c $(FUZZ_SHARED)
tests_fuzz_fuzz_resident_CPPFLAGS = $(UW_FUZZ_DEFS)
tests_fuzz_fuzz_resident_LDFLAGS = $(UW_FUZZ_LINK)
tests_fuzz_fuzz_resident_LDADD = libuwcore.la
tests_fuzz_fuzz_proto_SOURCES = tests/fuzz/proto.c $(FUZZ_SHARED)
tests_fuzz_fuzz_proto_CPPFLAGS = $(UW_FUZZ_DEFS)
tests_fuzz_fuzz_proto_LDFLAGS = $(UW_FUZZ_LINK)
tests_fuzz_fuzz_proto_LDADD = libuwcore.la
tests_fuzz_fuzz_tune_SOURCES = tests/fuzz/tune.c $(FUZZ_SHARED)
tests_fuzz_fuzz_tune_CPPFLAGS = $(UW_FUZZ_DEFS)
tests_fuzz_fuzz_tune_LDFLAGS = $(UW_FUZZ_LINK)
tests_fuzz_fuzz_tune_LDADD = libuwcore.la

# Each harness for FUZZ_SECONDS on its corpus; new inputs go to
# fuzz-out/corpus/NAME, crash reproducers to fuzz-out/crashes. Fails on any.
fuzz: $(UW_FUZZERS)
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) \
	$(SHELL) $(srcdir)/tests/fuzz/run.sh $(srcdir)/tests/fuzz fuzz-out $(FUZZ_TARGETS)
else
fuzz:
	@echo "make fuzz: this build has no fuzzers; configure one with --enable-fuzz CC=clang" >&2; exit 1
endif
.PHONY: fuzz

# Regenerate the seeds with the library's own writers (tests/fuzz/mkseeds.c).
EXTRA_PROGRAMS = tests/fuzz/mkseeds
tests_fuzz_mkseeds_SOURCES = tests/fuzz/mkseeds.c
tests_fuzz_mkseeds_LDADD = tests/libtestutil.la libuwcore.la
fuzz-seeds: tests/fuzz/mkseeds$(EXEEXT)
	for t in $(FUZZ_TARGETS); do $(MKDIR_P) $(srcdir)/tests/fuzz/$$t; done
	UW_TOP_SRCDIR='$(abs_top_srcdir)' tests/fuzz/mkseeds $(srcdir)/tests/fuzz
.PHONY: fuzz-seeds
