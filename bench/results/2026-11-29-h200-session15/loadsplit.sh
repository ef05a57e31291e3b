#!/bin/bash
# experiment: shards and bundle load, daemon's breakdown
B=$PWD/.devbuild D=/tmp/uwload8b
export LD_LIBRARY_PATH=$B/gpulibs:$B/.libs:/usr/local/cuda/lib64 PATH=/opt/torch/.venv/bin:$PATH
mkdir -p $D; [ -f $D/model.safetensors.index.json ] || $B/bench/uw-bench-gen-llama --layers 32 $D >/dev/null
idx=$D/model.safetensors.index.json
ctl=$B/ctl/.libs/unweightctl
[ -f $D/model.uwb ] || $ctl pack $idx -o $D/model.uwb >/dev/null
cat $D/model-*.safetensors $D/model.uwb >/dev/null
for T in ${THREADS:-8}; do
  s=/tmp/e$T.sock
  $B/unweightd --socket $s --backend cuda --allow-dir $D --foreground --log-level debug --load-threads $T 2>$OUT/d$T.log &
  p=$!; for i in $(seq 100); do [ -S $s ] && break; sleep 0.1; done
  for r in 1 2; do for f in $idx $D/model.uwb; do
    t=$EPOCHREALTIME; $ctl --socket $s load m $f --wait >/dev/null; echo "T=$T $(basename $f) wall $(awk -v a=$t -v b=$EPOCHREALTIME 'BEGIN{print b-a}')"
    $ctl --socket $s evict m >/dev/null
  done; done
  kill -TERM $p; wait $p
  grep -E "load m: |XX" $OUT/d$T.log | grep -v "reading /\|accepted\|evict\|wholly\|queued" | sed 's/^/   /'
done
python3 bench/load_peers.py safetensors $D/model-*.safetensors
