#!/bin/bash
# session 26 run j: R11 v4c (one staging pass, swizzled, R11's table only) against v4 half-tile; all kernel tests
set -u
tar -xzf .carry/devbuild.tar.gz
B=$PWD/.devbuild
export LD_LIBRARY_PATH=$B/gpulibs:$B/.libs:/usr/local/cuda/lib64 UW_TOP_SRCDIR=$PWD UW_TOP_BUILDDIR=$B
R=$OUT/r; mkdir -p $R
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv; } > $R/host.txt 2>&1
timeout 40 $B/ab/matmul-v4half -n -T -b 1 -b 4 -b 16 > $R/bench-v4half.log 2>&1; echo "v4half rc $?" >> $R/rc.txt
timeout 40 $B/bench/uw-bench-matmul -n -T -b 1 -b 4 -b 16 > $R/bench-v4c.log 2>&1; echo "v4c rc $?" >> $R/rc.txt
timeout $((250 - SECONDS)) $B/tests/check_gpu_kernels > $R/kernels.log 2>&1; echo "kernels rc $?" >> $R/rc.txt
echo "total $SECONDS s" >> $R/rc.txt
cd $OUT && tar -czf r.tar.gz r && rm -rf r
