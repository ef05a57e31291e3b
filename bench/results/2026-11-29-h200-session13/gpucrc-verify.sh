#!/bin/bash
# device run: restart/adopt tests, then verify of a large model timed (checksums on the GPU)
set -u
tar -xzf .carry/devbuild.tar.gz
B=$PWD/.devbuild
export LD_LIBRARY_PATH=$B/gpulibs:/usr/local/cuda/lib64 UW_TOP_SRCDIR=$PWD UW_TOP_BUILDDIR=$B
timeout 120 sh tests/check_gpu_restart.sh > $OUT/check_gpu_restart.log 2>&1; echo "restart: exit $?"; tail -n 5 $OUT/check_gpu_restart.log
D=/tmp/uwv; mkdir -p $D
$B/bench/uw-bench-gen-llama --layers 8 $D > $OUT/gen.txt 2>&1 || exit 1
cat $D/*.safetensors > /dev/null
s=/tmp/v.sock
$B/unweightd --socket $s --backend cuda --allow-dir $D --foreground --log-level info 2> $OUT/uwd.log &
p=$!
for i in $(seq 100); do [ -S $s ] && break; sleep 0.1; done
$B/ctl/unweightctl --socket $s load m $D/model.safetensors.index.json --wait > /dev/null 2>&1
grep 'ready:' $OUT/uwd.log
for k in 1 2 3; do
	a=$EPOCHREALTIME
	$B/ctl/unweightctl --socket $s verify m > $OUT/verify-$k.txt 2>&1; r=$?
	echo "verify $k: exit $r, wall $(awk -v a=$a -v b=$EPOCHREALTIME 'BEGIN{printf "%.3f", b-a}') s: $(tail -1 $OUT/verify-$k.txt)"
done
grep -i 'verif' $OUT/uwd.log | tail -3
kill $p; wait $p
