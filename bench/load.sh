#!/bin/bash
# load: how fast a Llama-3.1-8B-shaped checkpoint (16.06 GB BF16, N(0, 0.02),
# 4 safetensors shards and an index, written by bench/uw-bench-gen-llama)
# gets onto the GPU, every way we know, in one run on the GPU host:
#   cat of the shards to /dev/null (the page-cache limit), the daemon's
#   reader alone (bench/uw-bench-read), a naive read()+cudaMemcpy loader and
#   safetensors.torch.load_file(device="cuda") (bench/load_peers.py),
#   unweightd loading the shards and a .uwb bundle of them (unweightctl pack)
#   on the cuda backend, and then the attach latency of the loaded model from
#   fresh connections (bench/uw-bench-attach --name).
# Everything from the page cache first (each file read once before); then,
# where this user may write /proc/sys/vm/drop_caches, cold (caches dropped
# before each). The daemon's loads run twice, encoding on the GPU
# (encode = gpu, the cuda backend's default) and on the CPU (encode = cpu),
# from two daemons started side by side.
#
#   bash bench/load.sh BUILDDIR [CKPTDIR]      (BUILDDIR configured --with-cuda)
#
# CKPTDIR (default /tmp/uwload8b) keeps the checkpoint and bundle between
# runs (~27 GB). LAYERS=N makes a smaller model of the same shapes (a quick
# try); COLD=0 leaves the cold runs out. Logs go to $OUT (the device tool's
# folder), else ./load-out.
set -u
B=$(cd "${1:?usage: bash bench/load.sh BUILDDIR [CKPTDIR]}" && pwd)
D=${2:-/tmp/uwload8b}
O=${OUT:-$PWD/load-out}
LAYERS=${LAYERS:-32}
mkdir -p "$O" "$D"
export LD_LIBRARY_PATH="$B/gpulibs:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec > >(tee "$O/load.txt") 2>&1

now() { echo "$EPOCHREALTIME"; }
# secs START: seconds since START, 3 decimals
secs() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
gbs() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.2f", (s > 0 ? n / 1e9 / s : 0) }'; }
row() { printf '%-44s %9s s %8s GB/s\n' "$1" "$2" "$(gbs "$3" "$2")"; }

date -u +%Y-%m-%dT%H:%MZ
nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current --format=csv 2>&1
nproc; free -g | head -2; df -h "$D" | tail -1
uname -r

idx=$D/model.safetensors.index.json
if [ ! -f "$idx" ] || [ "$(cat "$D/layers" 2>/dev/null)" != "$LAYERS" ]; then
	rm -f "$D"/model-*.safetensors "$D/model.uwb" "$idx"
	t=$(now)
	"$B/bench/uw-bench-gen-llama" --layers "$LAYERS" "$D" || exit 1
	echo "$LAYERS" >"$D/layers"
	echo "generated in $(secs "$t") s"
fi
shards=$(ls "$D"/model-*-of-*.safetensors)
bytes=$(stat -c %s $shards | awk '{ n += $1 } END { print n }')
if [ ! -f "$D/model.uwb" ]; then
	t=$(now)
	"$B/ctl/unweightctl" pack "$idx" -o "$D/model.uwb" || exit 1
	echo "packed in $(secs "$t") s"
fi
ubytes=$(stat -c %s "$D/model.uwb")
echo "checkpoint: $bytes bytes in $(echo $shards | wc -w) shards; bundle $ubytes bytes"

peers=0
python3 -c "import torch, safetensors; assert torch.cuda.is_available()" 2>/dev/null && peers=1

# The daemons, cuda backend (BACKEND=host to try the script on a machine
# without a GPU: encode = cpu only), reading where the checkpoint is.
be=${BACKEND:-cuda}
encs="gpu cpu"
[ "$be" = cuda ] || encs=cpu
dpids=
for e in $encs; do
	"$B/unweightd" --socket "/tmp/uwload-$$-$e.sock" --backend "$be" --encode "$e" \
		--allow-dir "$D" --foreground --log-level info 2>"$O/unweightd-$e.log" &
	dpids="$dpids $!"
done
trap 'kill -TERM $dpids 2>/dev/null; wait $dpids 2>/dev/null' EXIT
for e in $encs; do
	for i in $(seq 100); do [ -S "/tmp/uwload-$$-$e.sock" ] && break; sleep 0.1; done
done
enc=${encs%% *}
# The program itself, not libtool's wrapper script in a shared build tree:
# the wrapper's start-up (0.15-0.4 s, bench/NOTES.md 2026-11-29) is no part
# of a load, and an installed unweightctl has none.
ctlbin=$B/ctl/unweightctl
if [ -x "$B/ctl/.libs/unweightctl" ]; then
	ctlbin=$B/ctl/.libs/unweightctl
	export LD_LIBRARY_PATH="$B/.libs:$LD_LIBRARY_PATH"
fi
ctl() { "$ctlbin" --socket "/tmp/uwload-$$-$enc.sock" "$@"; }

# uwload NAME PATH LABEL: wall time of load --wait, and the daemon's own.
uwload() {
	local t=$(now) s
	ctl load "$1" "$2" --wait --json >"$O/load-$1.json" || { echo "$3: failed"; return; }
	s=$(secs "$t")
	row "$3" "$s" "$bytes"
	tr ',' '\n' <"$O/load-$1.json" | grep -E '"(load_seconds|load_mb_per_s|ratio|resident_bytes)"' |
		tr '\n' ' '
	echo
}

drop() { sync && echo 3 2>/dev/null >/proc/sys/vm/drop_caches; }

run_all() {   # $1: warm or cold
	local t pre=
	[ "$1" = cold ] && pre=drop
	$pre; [ "$1" = warm ] && cat $shards >/dev/null
	t=$(now); cat $shards >/dev/null; row "$1: cat shards > /dev/null" "$(secs "$t")" "$bytes"
	$pre; echo -n "$1: "; "$B/bench/uw-bench-read" --mode buffered $shards
	$pre; echo -n "$1: "; "$B/bench/uw-bench-read" --mode direct $shards
	for p in naive safetensors; do
		$pre
		if [ "$peers" = 1 ]; then
			echo -n "$1: "; python3 "$PWD/bench/load_peers.py" $p $shards
		else
			echo "$1: $p: skipped (no python3 with torch, safetensors and a GPU)"
		fi
	done
	for enc in $encs; do
		$pre; uwload "st-$1" "$idx" "$1: unweightd load, shards ($be, encode $enc)"
		ctl evict "st-$1" >/dev/null
		$pre; [ "$1" = warm ] && cat "$D/model.uwb" >/dev/null
		uwload "uwb-$1" "$D/model.uwb" "$1: unweightd load, .uwb bundle ($be, encode $enc)"
		ctl evict "uwb-$1" >/dev/null
	done
	enc=${encs%% *}
}

echo; echo "== from the page cache"
run_all warm
if [ "${COLD:-1}" = 0 ]; then
	echo; echo "== cold: skipped (COLD=0)"
elif drop; then
	echo; echo "== cold (caches dropped before each)"
	run_all cold
else
	echo; echo "== cold: skipped (cannot write /proc/sys/vm/drop_caches)"
fi

echo; echo "== attach latency, the shards' model, fresh connection each time"
ctl load attach "$idx" --wait >/dev/null &&
	"$B/bench/uw-bench-attach" --socket "/tmp/uwload-$$-$enc.sock" --name attach -n 1000
grep -E "reading|ready:|encoding" "$O"/unweightd-*.log | tail -n 16
