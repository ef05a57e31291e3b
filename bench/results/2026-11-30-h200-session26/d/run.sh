#!/bin/bash
# session 26 run d: the committed build: full bench, A/B of the p[] join, all GPU suites
set -u
tar -xzf .carry/devbuild.tar.gz
B=$PWD/.devbuild
export LD_LIBRARY_PATH=$B/gpulibs:$B/.libs:/usr/local/cuda/lib64 UW_TOP_SRCDIR=$PWD UW_TOP_BUILDDIR=$B
R=$OUT/r; mkdir -p $R
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv; } > $R/host.txt 2>&1
timeout 50 $B/ab/matmul-deae05a -n -T -b 1 -b 4 > $R/bench-deae05a.log 2>&1; echo "deae05a rc $?" >> $R/rc.txt
timeout 240 $B/bench/uw-bench-matmul -n -T > $R/bench-final.log 2>&1; echo "final rc $?" >> $R/rc.txt
timeout 200 $B/tests/check_gpu_kernels > $R/kernels.log 2>&1; echo "kernels rc $?" >> $R/rc.txt
for t in integration restart stories; do
  [ $SECONDS -lt 520 ] || { echo "$t skipped (time)" >> $R/rc.txt; continue; }
  timeout $((585 - SECONDS)) sh tests/check_gpu_$t.sh > $R/$t.log 2>&1; echo "$t rc $?" >> $R/rc.txt
done
cd $OUT && tar -czf r.tar.gz r && rm -rf r
