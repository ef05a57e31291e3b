#!/bin/bash
# device run: mapped loads of the 16 GB checkpoint at 8, 12, 16 encoder threads, with safetensors beside
set -u
tar -xzf .carry/devbuild.tar.gz
B=$PWD/.devbuild
export LD_LIBRARY_PATH=$B/gpulibs:/usr/local/cuda/lib64 PATH=/opt/torch/.venv/bin:$PATH
D=/tmp/uwload8b; mkdir -p $D
t0=$(date +%s.%N)
$B/bench/uw-bench-gen-llama --layers 32 $D > $OUT/gen.txt 2>&1 || exit 1
echo "gen $(echo "$(date +%s.%N) - $t0" | awk '{print}' )"
cat $D/*.safetensors > /dev/null; cat $D/*.safetensors > /dev/null
python3 bench/load_peers.py safetensors $D/model-*.safetensors
for T in ${THREADS:-8}; do
	s=/tmp/thr$T.sock
	$B/unweightd --socket $s --backend cuda --load-threads $T --allow-dir $D --foreground --log-level info 2> $OUT/uwd-$T.log &
	p=$!
	for i in $(seq 100); do [ -S $s ] && break; sleep 0.1; done
	for n in a b c; do
		a=$EPOCHREALTIME
		$B/ctl/unweightctl --socket $s load $n-$T $D/model.safetensors.index.json --wait > /dev/null 2>&1
		echo "threads $T load $n: wall $(awk -v a=$a -v b=$EPOCHREALTIME 'BEGIN{printf "%.3f", b-a}') s; $(grep "load $n-$T: ready" $OUT/uwd-$T.log | sed 's/.*resident//')"
		$B/ctl/unweightctl --socket $s evict $n-$T > /dev/null 2>&1
	done
	kill $p; wait $p; grep -h "queued" $OUT/uwd-$T.log
done
python3 bench/load_peers.py safetensors $D/model-*.safetensors
