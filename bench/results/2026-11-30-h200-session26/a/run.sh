#!/bin/bash
# session 26 run a: verification of 36ddef0/1dd96f9 + R11 profile
set -u
tar -xzf .carry/devbuild.tar.gz
B=$PWD/.devbuild
export LD_LIBRARY_PATH=$B/gpulibs:$B/.libs:/usr/local/cuda/lib64 UW_TOP_SRCDIR=$PWD UW_TOP_BUILDDIR=$B
R=$OUT/r; mkdir -p $R
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv; } > $R/host.txt 2>&1
timeout 200 $B/bench/uw-bench-matmul -n -T -b 1 -b 4 -b 16 -b 64 > $R/bench.log 2>&1; echo "bench rc $?" >> $R/rc.txt
NCU=/usr/local/cuda/bin/ncu; [ -x $NCU ] || NCU=ncu
timeout 100 $NCU --clock-control none --set full --kernel-name-base demangled -k "regex:r12_fused_kernel<.*, true>\(" -c 1 -o $R/r11b1 $B/bench/uw-bench-matmul -q -n -T > $R/ncu-r11.log 2>&1; echo "ncu1 rc $?" >> $R/rc.txt
timeout 60 $NCU --clock-control none --set full -k regex:r11_decode_kernel -c 1 -o $R/r11dec $B/bench/uw-bench-matmul -q -n -T > $R/ncu-dec.log 2>&1; echo "ncu2 rc $?" >> $R/rc.txt
for f in r11b1 r11dec; do
  [ -f $R/$f.ncu-rep ] || continue
  $NCU -i $R/$f.ncu-rep --page details > $R/$f-details.txt 2>&1
  $NCU -i $R/$f.ncu-rep --page source --csv --print-source sass > $R/$f-sass.csv 2>&1
  rm -f $R/$f.ncu-rep
done
timeout $((560 - SECONDS)) $B/tests/check_gpu_kernels > $R/kernels.log 2>&1; echo "kernels rc $?" >> $R/rc.txt
for t in integration restart stories; do
  [ $SECONDS -lt 480 ] || { echo "$t skipped (time)" >> $R/rc.txt; continue; }
  timeout 120 sh tests/check_gpu_$t.sh > $R/$t.log 2>&1; echo "$t rc $?" >> $R/rc.txt
done
cd $OUT && tar -czf r.tar.gz r && rm -rf r
