#!/bin/bash
# session 26 run h: the committed build (R11 v4, half-tile staging): bench, all GPU suites; a42802b beside at batch 1, 4, 16
set -u
tar -xzf .carry/devbuild.tar.gz
B=$PWD/.devbuild
export LD_LIBRARY_PATH=$B/gpulibs:$B/.libs:/usr/local/cuda/lib64 UW_TOP_SRCDIR=$PWD UW_TOP_BUILDDIR=$B
R=$OUT/r; mkdir -p $R
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv; } > $R/host.txt 2>&1
timeout 70 $B/ab/matmul-a42802b -n -T -b 1 -b 4 -b 16 > $R/bench-a42802b.log 2>&1; echo "base rc $?" >> $R/rc.txt
timeout 220 $B/bench/uw-bench-matmul -n -T > $R/bench-final.log 2>&1; echo "final rc $?" >> $R/rc.txt
timeout 200 $B/tests/check_gpu_kernels > $R/kernels.log 2>&1; echo "kernels rc $?" >> $R/rc.txt
for t in integration restart stories; do
  [ $SECONDS -lt 530 ] || { echo "$t skipped (time)" >> $R/rc.txt; continue; }
  timeout $((590 - SECONDS)) sh tests/check_gpu_$t.sh > $R/$t.log 2>&1; echo "$t rc $?" >> $R/rc.txt
done
/usr/local/cuda/bin/cuobjdump --dump-resource-usage $B/tests/check_gpu_kernels 2>/dev/null | grep -A1 "r12_fused_kernel.*Lb1EEv8\|r11_decode" > $R/resources.txt
echo "total $SECONDS s" >> $R/rc.txt
cd $OUT && tar -czf r.tar.gz r && rm -rf r
