# examples: the example worker uw-stories (llama2.c stories260K, every matmul
# through uw_matmul), the demo that runs it against a real daemon, its test.
noinst_PROGRAMS += uw-stories
uw_stories_SOURCES = examples/stories.c \
	examples/llama.c examples/llama.h \
	examples/tokenizer.c examples/tokenizer.h \
	examples/weights.h examples/weights_daemon.c examples/weights_reference.c
# The reference matmul must round every product before it adds it, as the
# uw_matmul contract does: no FMA contraction.
uw_stories_CFLAGS = $(AM_CFLAGS) -ffp-contract=off
uw_stories_LDADD = $(UW_CLIENT_LIBS) -lm
if HAVE_CUDA
uw_stories_CFLAGS += $(CUDA_CFLAGS)
uw_stories_LDADD += -L$(CUDA_DIR)/lib64 -lcudart
uw_stories_LDFLAGS = $(AM_LDFLAGS) $(UWCUDA_RPATH)
endif

TESTS += tests/check_stories.sh
EXTRA_DIST += examples/run-demo.sh tests/check_stories.sh
TESTS += tests/check_gpu_stories.sh
GPU_TESTS += tests/check_gpu_stories.sh
EXTRA_DIST += tests/check_gpu_stories.sh
