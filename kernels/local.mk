# kernels: files of this directory, included by ../Makefile.am
libuwcore_la_SOURCES += \
	kernels/resident.c kernels/resident.h kernels/r11.c kernels/r11.h \
	kernels/ref_decode.c kernels/ref_matmul.c \
	kernels/tunecache.c kernels/tunecache.h

check_PROGRAMS += tests/check_resident
TESTS += tests/check_resident
tests_check_resident_SOURCES = tests/check_resident.c tests/bf16cases.c tests/bf16cases.h
tests_check_resident_CFLAGS = $(TEST_CFLAGS)
tests_check_resident_LDADD = $(TEST_LIBS)

# The autotuner's cache file: parser, writer, lookup.
check_PROGRAMS += tests/check_tunecache
TESTS += tests/check_tunecache
tests_check_tunecache_SOURCES = tests/check_tunecache.c
tests_check_tunecache_CFLAGS = $(TEST_CFLAGS)
tests_check_tunecache_LDADD = $(TEST_LIBS)

# The CUDA kernels (kernels/cuda/): nvcc builds them for sm_90a plus portable
# compute_90 PTX into kernels/libuwcuda.a, position-independent so the client
# library can take them in later. Programs linking it add UWCUDA_LIBS.
if HAVE_CUDA
NVCCFLAGS = -std=c++17 -O3 -lineinfo \
	-gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_90,code=compute_90 \
	-Xcompiler -fPIC,-fvisibility=hidden,-Wall \
	-I$(srcdir) -I$(srcdir)/client -I$(builddir) \
	-DUWK_CUDA_LIBDIR='"$(CUDA_DIR)/lib64"'
UWCUDA_HDRS = kernels/cuda/uwk.h kernels/cuda/uwk_int.h kernels/cuda/fused.h kernels/resident.h kernels/tunecache.h
UWCUDA_OBJS = kernels/cuda/ctx.o kernels/cuda/decode.o kernels/cuda/encode.o \
	kernels/cuda/matmul.o kernels/cuda/tune.o kernels/cuda/exphuf.o kernels/cuda/blas.o \
	kernels/cuda/r11.o kernels/cuda/matmul_wg.o
# Link with gcc: the C++ runtime and cudart (dynamic, found through the rpath;
# libcuda is loaded by cudart, so a host without a driver still starts).
# cuBLAS is not linked: kernels/cuda/blas.cu loads it when first needed.
# Programs that call it themselves (the benchmarks' peer) add CUBLAS_LIBS.
UWCUDA_LIBS = kernels/libuwcuda.a -L$(CUDA_DIR)/lib64 -lcudart -lstdc++ -lm
CUBLAS_LIBS = -L$(CUDA_DIR)/lib64 -lcublas
UWCUDA_RPATH = -Wl,-rpath,$(CUDA_DIR)/lib64

kernels/cuda/blas.o: kernels/cuda/blas.cu $(UWCUDA_HDRS)
	$(AM_V_GEN)$(MKDIR_P) kernels/cuda && $(NVCC) $(NVCCFLAGS) -c -o $@ $(srcdir)/kernels/cuda/blas.cu
kernels/cuda/ctx.o: kernels/cuda/ctx.cu $(UWCUDA_HDRS)
	$(AM_V_GEN)$(MKDIR_P) kernels/cuda && $(NVCC) $(NVCCFLAGS) -c -o $@ $(srcdir)/kernels/cuda/ctx.cu
kernels/cuda/decode.o: kernels/cuda/decode.cu $(UWCUDA_HDRS)
	$(AM_V_GEN)$(MKDIR_P) kernels/cuda && $(NVCC) $(NVCCFLAGS) -c -o $@ $(srcdir)/kernels/cuda/decode.cu
kernels/cuda/encode.o: kernels/cuda/encode.cu $(UWCUDA_HDRS)
	$(AM_V_GEN)$(MKDIR_P) kernels/cuda && $(NVCC) $(NVCCFLAGS) -c -o $@ $(srcdir)/kernels/cuda/encode.cu
kernels/cuda/exphuf.o: kernels/cuda/exphuf.cu $(UWCUDA_HDRS) format/restcodec.h format/huffman.h
	$(AM_V_GEN)$(MKDIR_P) kernels/cuda && $(NVCC) $(NVCCFLAGS) -c -o $@ $(srcdir)/kernels/cuda/exphuf.cu
kernels/cuda/matmul.o: kernels/cuda/matmul.cu $(UWCUDA_HDRS)
	$(AM_V_GEN)$(MKDIR_P) kernels/cuda && $(NVCC) $(NVCCFLAGS) -c -o $@ $(srcdir)/kernels/cuda/matmul.cu
kernels/cuda/matmul_wg.o: kernels/cuda/matmul_wg.cu $(UWCUDA_HDRS)
	$(AM_V_GEN)$(MKDIR_P) kernels/cuda && $(NVCC) $(NVCCFLAGS) -c -o $@ $(srcdir)/kernels/cuda/matmul_wg.cu
kernels/cuda/r11.o: kernels/cuda/r11.cu $(UWCUDA_HDRS)
	$(AM_V_GEN)$(MKDIR_P) kernels/cuda && $(NVCC) $(NVCCFLAGS) -c -o $@ $(srcdir)/kernels/cuda/r11.cu
kernels/cuda/tune.o: kernels/cuda/tune.cu $(UWCUDA_HDRS)
	$(AM_V_GEN)$(MKDIR_P) kernels/cuda && $(NVCC) $(NVCCFLAGS) -c -o $@ $(srcdir)/kernels/cuda/tune.cu
kernels/libuwcuda.a: $(UWCUDA_OBJS)
	$(AM_V_AR)rm -f $@ && $(AR) cr $@ $(UWCUDA_OBJS) && $(RANLIB) $@
CLEANFILES += kernels/libuwcuda.a $(UWCUDA_OBJS)

# In TESTS too: automake writes a test's .log rule only for TESTS, and
# check-gpu narrows TESTS to GPU_TESTS. Without a GPU the test skips (77).
check_PROGRAMS += tests/check_gpu_kernels
TESTS += tests/check_gpu_kernels
GPU_TESTS += tests/check_gpu_kernels
tests_check_gpu_kernels_SOURCES = tests/check_gpu_kernels.c tests/bf16cases.c tests/bf16cases.h
tests_check_gpu_kernels_CFLAGS = $(TEST_CFLAGS) $(CUDA_CFLAGS)
tests_check_gpu_kernels_LDADD = $(UWCUDA_LIBS) $(TEST_LIBS)
tests_check_gpu_kernels_LDFLAGS = $(AM_LDFLAGS) $(UWCUDA_RPATH)
EXTRA_tests_check_gpu_kernels_DEPENDENCIES = kernels/libuwcuda.a
endif
EXTRA_DIST += kernels/cuda/uwk.h kernels/cuda/uwk_int.h kernels/cuda/fused.h kernels/cuda/ctx.cu \
	kernels/cuda/matmul_wg.cu \
	kernels/cuda/decode.cu kernels/cuda/encode.cu kernels/cuda/matmul.cu kernels/cuda/tune.cu \
	kernels/cuda/exphuf.cu kernels/cuda/blas.cu kernels/cuda/r11.cu
