# bench: files of this directory, included by ../Makefile.am
noinst_PROGRAMS += bench/uw-bench-compress
bench_uw_bench_compress_SOURCES = bench/compress.c tests/bf16cases.c tests/bf16cases.h
bench_uw_bench_compress_LDADD = tests/libtestutil.la libuwcore.la

# The fused matmul beside cuBLAS (GPU host: bench/gpu-run.sh).
if HAVE_CUDA
noinst_PROGRAMS += bench/uw-bench-matmul
bench_uw_bench_matmul_SOURCES =
bench_uw_bench_matmul_LDADD = bench/matmul.o $(UWCUDA_LIBS) $(CUBLAS_LIBS) libuwcore.la
bench_uw_bench_matmul_LDFLAGS = $(AM_LDFLAGS) $(UWCUDA_RPATH)
EXTRA_bench_uw_bench_matmul_DEPENDENCIES = bench/matmul.o kernels/libuwcuda.a
bench/matmul.o: bench/matmul.cu bench/benchutil.h kernels/cuda/uwk.h
	$(AM_V_GEN)$(MKDIR_P) bench && $(NVCC) $(NVCCFLAGS) -c -o $@ $(srcdir)/bench/matmul.cu
CLEANFILES += bench/matmul.o
endif

# The fused kernel's loads of W alone (no decode), against the copy's rate.
if HAVE_CUDA
noinst_PROGRAMS += bench/uw-bench-readpat
bench_uw_bench_readpat_SOURCES =
bench_uw_bench_readpat_LDADD = bench/readpat.o -L$(CUDA_DIR)/lib64 -lcudart -lstdc++
bench_uw_bench_readpat_LDFLAGS = $(AM_LDFLAGS) $(UWCUDA_RPATH)
EXTRA_bench_uw_bench_readpat_DEPENDENCIES = bench/readpat.o
bench/readpat.o: bench/readpat.cu kernels/cuda/uwk_int.h
	$(AM_V_GEN)$(MKDIR_P) bench && $(NVCC) $(NVCCFLAGS) -c -o $@ $(srcdir)/bench/readpat.cu
CLEANFILES += bench/readpat.o
endif
EXTRA_DIST += bench/readpat.cu

# A Llama-3.1-8B-shaped MLP stack against cuBLAS (GPU host: bench/gpu-tune.sh).
if HAVE_CUDA
noinst_PROGRAMS += bench/uw-bench-mlp
bench_uw_bench_mlp_SOURCES =
bench_uw_bench_mlp_LDADD = bench/mlp.o $(UWCUDA_LIBS) $(CUBLAS_LIBS) libuwcore.la
bench_uw_bench_mlp_LDFLAGS = $(AM_LDFLAGS) $(UWCUDA_RPATH)
EXTRA_bench_uw_bench_mlp_DEPENDENCIES = bench/mlp.o kernels/libuwcuda.a
bench/mlp.o: bench/mlp.cu bench/benchutil.h kernels/cuda/uwk.h kernels/tunecache.h
	$(AM_V_GEN)$(MKDIR_P) bench && $(NVCC) $(NVCCFLAGS) -c -o $@ $(srcdir)/bench/mlp.cu
CLEANFILES += bench/mlp.o
endif
EXTRA_DIST += bench/mlp.cu bench/benchutil.h

# Encoding on the CPU beside the GPU (GPU host: bench/gpu-run.sh).
if HAVE_CUDA
noinst_PROGRAMS += bench/uw-bench-encode
bench_uw_bench_encode_SOURCES = bench/encode.c tests/bf16cases.c tests/bf16cases.h
bench_uw_bench_encode_CFLAGS = $(AM_CFLAGS) $(CUDA_CFLAGS)
bench_uw_bench_encode_LDADD = $(UWCUDA_LIBS) tests/libtestutil.la libuwcore.la
bench_uw_bench_encode_LDFLAGS = $(AM_LDFLAGS) $(UWCUDA_RPATH)
EXTRA_bench_uw_bench_encode_DEPENDENCIES = kernels/libuwcuda.a
endif
EXTRA_DIST += bench/matmul.cu bench/encode.c bench/gpu-run.sh bench/gpu-tune.sh bench/NOTES.md

# Attach latency and host load throughput, against a running unweightd.
noinst_PROGRAMS += bench/uw-bench-attach
bench_uw_bench_attach_SOURCES = bench/attach.c
bench_uw_bench_attach_LDADD = $(UW_CLIENT_LIBS)
if HAVE_CUDA
bench_uw_bench_attach_LDFLAGS = $(AM_LDFLAGS) $(UWCUDA_RPATH)
endif

# Many clients and a loader at once against a running unweightd (a short
# run is tests/check_stress.sh).
noinst_PROGRAMS += bench/uw-stress
bench_uw_stress_SOURCES = bench/stress.c
bench_uw_stress_LDADD = $(UW_CLIENT_LIBS)
if HAVE_CUDA
bench_uw_stress_LDFLAGS = $(AM_LDFLAGS) $(UWCUDA_RPATH)
endif
check_PROGRAMS += tests/check_stress
TESTS += tests/check_stress
tests_check_stress_SOURCES = tests/check_stress.c
tests_check_stress_CFLAGS = $(TEST_CFLAGS)
tests_check_stress_LDADD = $(TEST_LIBS)
EXTRA_tests_check_stress_DEPENDENCIES = unweightd bench/uw-stress

# A synthetic Llama-3.1-8B-shaped checkpoint, and the load benchmark around
# it (bench/load.sh, for the GPU host).
noinst_PROGRAMS += bench/uw-bench-gen-llama
bench_uw_bench_gen_llama_SOURCES = bench/gen_llama.c
bench_uw_bench_gen_llama_LDADD = tests/libtestutil.la libuwcore.la
EXTRA_DIST += bench/load.sh bench/load_peers.py
noinst_PROGRAMS += bench/uw-bench-read
bench_uw_bench_read_SOURCES = bench/read.c
bench_uw_bench_read_LDADD = libuwcore.la
