LD_LIBRARY_PATH=/usr/local/cuda/lib64 uw-bench-matmul -q -n -T   # the refactored side tables
