#!/bin/bash
# one-off: load scaling with encoder threads, and cold loads where permitted
set -u
B=$PWD/.devbuild D=/tmp/uwload8b O=$OUT/g
mkdir -p $O
[ -f $D/model.safetensors.index.json ] || "$B/bench/uw-bench-gen-llama" --layers 32 $D >/dev/null || exit 1
[ -f $D/model.uwb ] || "$B/ctl/unweightctl" pack $D/model.safetensors.index.json -o $D/model.uwb >/dev/null || exit 1
shards=$(ls $D/model-*-of-*.safetensors)
cat $shards $D/model.uwb > /dev/null
run() {  # threads what path label
	local s=/tmp/exp-$$.sock
	"$B/unweightd" --socket $s --backend cuda --load-threads $1 --allow-dir $D --foreground 2>>$O/unweightd.log &
	local p=$!
	for i in $(seq 100); do [ -S $s ] && break; sleep 0.1; done
	local t0=$EPOCHREALTIME
	"$B/ctl/unweightctl" --socket $s load m $3 --wait --json > $O/l.json
	local t1=$EPOCHREALTIME
	printf '%-34s threads %2s: wall %.3f s  ' "$4" $1 $(awk -v a=$t0 -v b=$t1 'BEGIN{print b-a}')
	tr ',' '\n' < $O/l.json | grep -E 'load_seconds|load_mb_per_s' | tr '\n' ' '; echo
	kill -TERM $p; wait $p
}
for t in 4 8 12 16; do run $t x $D/model.safetensors.index.json "warm shards"; done
for t in 8 16; do run $t x $D/model.uwb "warm bundle"; done
if sync && echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then
	t0=$EPOCHREALTIME; cat $shards > /dev/null; echo "cold cat shards: $(awk -v a=$t0 -v b=$EPOCHREALTIME 'BEGIN{print b-a}') s"
	sync; echo 3 > /proc/sys/vm/drop_caches; t0=$EPOCHREALTIME; cat $D/model.uwb > /dev/null; echo "cold cat bundle: $(awk -v a=$t0 -v b=$EPOCHREALTIME 'BEGIN{print b-a}') s"
	sync; echo 3 > /proc/sys/vm/drop_caches; python3 bench/load_peers.py safetensors $shards
	sync; echo 3 > /proc/sys/vm/drop_caches; run 8 x $D/model.safetensors.index.json "cold shards"
	sync; echo 3 > /proc/sys/vm/drop_caches; run 8 x $D/model.uwb "cold bundle"
else
	echo "cold: cannot write /proc/sys/vm/drop_caches"
fi
