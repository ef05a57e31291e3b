#!/bin/bash
set -u
tar -xzf .carry/devbuild.tar.gz
B=$PWD/.devbuild
export LD_LIBRARY_PATH=$B/gpulibs:$B/.libs:/usr/local/cuda/lib64 UW_TOP_SRCDIR=$PWD UW_TOP_BUILDDIR=$B
R=$OUT/r; mkdir -p $R
timeout 150 sh tests/check_gpu_stories.sh > $R/stories.log 2>&1; echo "stories rc $?" >> $R/rc.txt
NCU=/usr/local/cuda/bin/ncu
timeout 60 $NCU --clock-control none --section SpeedOfLight --section SourceCounters -k regex:r11_decode_kernel -c 1 $B/bench/uw-bench-matmul -q -n -T > $R/ncu-dec.log 2>&1; echo "ncu rc $?" >> $R/rc.txt
cd $OUT && tar -czf r.tar.gz r && rm -rf r
