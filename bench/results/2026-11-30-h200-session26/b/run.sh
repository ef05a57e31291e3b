#!/bin/bash
# session 26 run b: R11 decoder whole-sector A/B, R11 fused profile, r11 case, daemon suites
set -u
tar -xzf .carry/devbuild.tar.gz
B=$PWD/.devbuild
export LD_LIBRARY_PATH=$B/gpulibs:$B/.libs:/usr/local/cuda/lib64 UW_TOP_SRCDIR=$PWD UW_TOP_BUILDDIR=$B
R=$OUT/r; mkdir -p $R
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv; } > $R/host.txt 2>&1
for v in old new old new; do
  bin=$B/bench/uw-bench-matmul; [ $v = old ] && bin=$B/ab/matmul-old
  timeout 60 $bin -n -T -b 16 >> $R/bench-$v.log 2>&1; echo "bench $v rc $?" >> $R/rc.txt
done
NCU=/usr/local/cuda/bin/ncu; [ -x $NCU ] || NCU=ncu
timeout 90 $NCU --clock-control none --set full --kernel-name-base demangled -k "regex:r12_fused_kernel<.*\(bool\)1>" -c 1 -o $R/r11b1 $B/bench/uw-bench-matmul -q -n -T > $R/ncu-r11.log 2>&1; echo "ncu1 rc $?" >> $R/rc.txt
timeout 60 $NCU --clock-control none --set full -k regex:r11_decode_kernel -c 1 -o $R/r11dec $B/bench/uw-bench-matmul -q -n -T > $R/ncu-dec.log 2>&1; echo "ncu2 rc $?" >> $R/rc.txt
for f in r11b1 r11dec; do
  [ -f $R/$f.ncu-rep ] || continue
  $NCU -i $R/$f.ncu-rep --page details > $R/$f-details.txt 2>&1
  $NCU -i $R/$f.ncu-rep --page source --csv --print-source sass > $R/$f-sass.csv 2>&1
  rm -f $R/$f.ncu-rep
done
CK_RUN_CASE=r11 timeout 200 $B/tests/check_gpu_kernels > $R/kernels-r11.log 2>&1; echo "kernels r11 rc $?" >> $R/rc.txt
for t in integration restart stories; do
  [ $SECONDS -lt 500 ] || { echo "$t skipped (time)" >> $R/rc.txt; continue; }
  timeout $((580 - SECONDS)) sh tests/check_gpu_$t.sh > $R/$t.log 2>&1; echo "$t rc $?" >> $R/rc.txt
done
cd $OUT && tar -czf r.tar.gz r && rm -rf r
