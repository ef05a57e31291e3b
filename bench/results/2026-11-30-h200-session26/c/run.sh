#!/bin/bash
# session 26 run c: R11 fused (patch loads carried, lane-order sums) A/B; r11 case
set -u
tar -xzf .carry/devbuild.tar.gz
B=$PWD/.devbuild
export LD_LIBRARY_PATH=$B/gpulibs:$B/.libs:/usr/local/cuda/lib64 UW_TOP_SRCDIR=$PWD UW_TOP_BUILDDIR=$B
R=$OUT/r; mkdir -p $R
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv; } > $R/host.txt 2>&1
timeout 60 $B/ab/matmul-base -n -T -b 1 -b 4 > $R/bench-base1.log 2>&1; echo "base1 rc $?" >> $R/rc.txt
timeout 150 $B/bench/uw-bench-matmul -n -T -b 1 -b 4 -b 16 -b 64 > $R/bench-new1.log 2>&1; echo "new1 rc $?" >> $R/rc.txt
timeout 60 $B/ab/matmul-base -n -T -b 1 -b 4 > $R/bench-base2.log 2>&1; echo "base2 rc $?" >> $R/rc.txt
timeout 60 $B/bench/uw-bench-matmul -n -T -b 1 -b 4 > $R/bench-new2.log 2>&1; echo "new2 rc $?" >> $R/rc.txt
NCU=/usr/local/cuda/bin/ncu; [ -x $NCU ] || NCU=ncu
timeout 90 $NCU --clock-control none --set full --kernel-name-base demangled -k "regex:r12_fused_kernel<.*\(bool\)1>" -c 1 -o $R/r11b1 $B/bench/uw-bench-matmul -q -n -T > $R/ncu-r11.log 2>&1; echo "ncu1 rc $?" >> $R/rc.txt
for f in r11b1; do
  [ -f $R/$f.ncu-rep ] || continue
  $NCU -i $R/$f.ncu-rep --page details > $R/$f-details.txt 2>&1
  $NCU -i $R/$f.ncu-rep --page source --csv --print-source sass > $R/$f-sass.csv 2>&1
  rm -f $R/$f.ncu-rep
done
CK_RUN_CASE=r11 timeout $((590 - SECONDS)) $B/tests/check_gpu_kernels > $R/kernels-r11.log 2>&1; echo "kernels r11 rc $?" >> $R/rc.txt
cd $OUT && tar -czf r.tar.gz r && rm -rf r
