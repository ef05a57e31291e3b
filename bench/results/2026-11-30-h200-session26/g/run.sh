#!/bin/bash
# session 26 run g: R11 v4 (patches written into the decoded W through shared memory) A/B; r11 case
set -u
tar -xzf .carry/devbuild.tar.gz
B=$PWD/.devbuild
export LD_LIBRARY_PATH=$B/gpulibs:$B/.libs:/usr/local/cuda/lib64 UW_TOP_SRCDIR=$PWD UW_TOP_BUILDDIR=$B
R=$OUT/r; mkdir -p $R
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv; } > $R/host.txt 2>&1
timeout 90 $B/ab/matmul-a42802b -n -T -b 1 -b 4 -b 16 > $R/bench-a42802b.log 2>&1; echo "base rc $?" >> $R/rc.txt
timeout 150 $B/bench/uw-bench-matmul -n -T -b 1 -b 4 -b 16 -b 64 > $R/bench-v4.log 2>&1; echo "v4 rc $?" >> $R/rc.txt
timeout 60 $B/ab/matmul-a42802b -n -T -b 1 -b 4 > $R/bench-a42802b-2.log 2>&1; echo "base2 rc $?" >> $R/rc.txt
CK_RUN_CASE=r11 timeout $((590 - SECONDS)) $B/tests/check_gpu_kernels > $R/kernels-r11.log 2>&1; echo "kernels r11 rc $?" >> $R/rc.txt
cd $OUT && tar -czf r.tar.gz r && rm -rf r
