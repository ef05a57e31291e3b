#!/bin/bash
# gpu-run: on the GPU host, run the GPU tests (make check-gpu's list), the
# matmul benchmark and the attach benchmark on both backends, from a build
# directory made elsewhere and carried along (this builds nothing).
#   bash bench/gpu-run.sh [BUILDDIR] [bench args]    (default .devbuild)
# Logs go to $OUT (the device tool's folder), else ./gpu-out. Libraries the
# host may lack (libsubunit of Check) can be put in BUILDDIR/gpulibs.
# SKIP_MATMUL=1 leaves the matmul benchmarks (uw-bench-matmul, -readpat) out;
# SKIP_ENCODE=1 the encode one.
# PROFILE=1 also writes the fused kernels' SASS and an Nsight Compute
# report of the batch-1 fused kernel on 14336x4096.
set -u
B=${1:-.devbuild}
shift || true
B=$(cd "$B" && pwd)
O=${OUT:-$PWD/gpu-out}
mkdir -p "$O"
export LD_LIBRARY_PATH="$B/gpulibs:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
	date -u +%Y-%m-%dT%H:%MZ
	nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu --format=csv
	for p in tests/check_gpu_kernels bench/uw-bench-matmul bench/uw-bench-encode; do
		ldd "$B/$p" | grep -i "not found" && echo "$p: missing libraries"
	done
} 2>&1 | tee "$O/host.txt"

rc=0
export UW_TOP_SRCDIR=$PWD UW_TOP_BUILDDIR=$B
for t in tests/check_gpu_kernels tests/check_gpu_integration.sh tests/check_gpu_restart.sh \
	tests/check_gpu_stories.sh; do
	n=$(basename "$t" .sh)
	case $t in
	*.sh) timeout 300 sh "$PWD/$t" >"$O/$n.log" 2>&1 ;;
	*) timeout 300 "$B/$t" >"$O/$n.log" 2>&1 ;;
	esac
	s=$?
	echo "$n: exit $s"
	tail -n 12 "$O/$n.log"
	[ $s -eq 0 ] || rc=1
done

# Attach latency of the bundled model, host and cuda backends.
for be in host cuda; do
	sock=/tmp/uwb-$be.sock
	"$B/unweightd" --socket $sock --backend $be --allow-dir "$PWD/data" --foreground \
		2>"$O/unweightd-$be.log" &
	d=$!
	for i in $(seq 50); do [ -S $sock ] && break; sleep 0.1; done
	echo "== attach bench, backend $be"
	"$B/bench/uw-bench-attach" --socket $sock -n 1000 -l 3 "$PWD/data/stories260K.safetensors" 2>&1 |
		tee "$O/bench-attach-$be.log" | tail -n 8
	kill -TERM $d
	wait $d
done

# Load throughput of a synthetic 1 GiB checkpoint (8 BF16 tensors of
# 8192x8192, N(0, 0.02)) from the page cache: host, and cuda encoding on
# the CPU and on the GPU.
if [ "${LOADBENCH:-1}" = 1 ] && python3 -c "import torch, safetensors" 2>/dev/null; then
	ld=/tmp/uwload; mkdir -p $ld
	python3 - $ld/synth.safetensors <<'PY'
import sys, torch
from safetensors.torch import save_file
g = torch.Generator().manual_seed(1)
save_file({f"model.layers.{i}.mlp.up_proj.weight": (torch.randn(8192, 8192, generator=g) * 0.02).to(torch.bfloat16)
           for i in range(8)}, sys.argv[1])
PY
	cat $ld/synth.safetensors >/dev/null
	for be in host:cpu cuda:cpu cuda:gpu; do
		enc=${be#*:} be=${be%:*}
		sock=/tmp/uwl-$be-$enc.sock
		"$B/unweightd" --socket $sock --backend $be --encode $enc --allow-dir $ld \
			--foreground 2>"$O/unweightd-load-$be-$enc.log" &
		d=$!
		for i in $(seq 50); do [ -S $sock ] && break; sleep 0.1; done
		echo "== load 1 GiB, backend $be, encode $enc"
		"$B/ctl/unweightctl" --socket $sock load synth $ld/synth.safetensors --wait --json |
			tee "$O/load-$be-$enc.json" | tr ',' '\n' | grep -E "load_seconds|load_mb_per_s|ratio|resident_bytes"
		kill -TERM $d
		wait $d
	done
fi

# Encoding on the CPU (1 thread, all) and on the GPU (raw on the device,
# and with its H2D copy from pinned memory).
if [ "${SKIP_ENCODE:-0}" != 1 ]; then
	timeout 120 "$B/bench/uw-bench-encode" 2>&1 | tee "$O/bench-encode.log"
	[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
fi

if [ "${SKIP_MATMUL:-0}" != 1 ]; then
	"$B/bench/uw-bench-matmul" "$@" 2>&1 | tee "$O/bench-matmul.log"
	[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
	"$B/bench/uw-bench-readpat" >"$O/readpat.log" 2>&1 || rc=1
fi

if [ "${PROFILE:-0}" = 1 ]; then
	cuobjdump -sass "$B/kernels/cuda/matmul.o" >"$O/matmul.sass" 2>&1
	grep -c "LDL\|STL" "$O/matmul.sass" | sed 's/^/local-memory instructions in matmul.o: /'
	timeout 240 ncu --clock-control none -k regex:r12_fused_kernel -s 3 -c 2 \
		--section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy \
		--section LaunchStats --section WarpStateStats --section SchedulerStats \
		"$B/bench/uw-bench-matmul" -q -n >"$O/ncu.txt" 2>&1
	echo "ncu: exit $?"
	grep -E "DRAM Throughput|Memory Throughput|Duration|Achieved Occupancy|Registers Per|Issue Slots|No Eligible|Stall" "$O/ncu.txt" | head -40
fi
exit $rc
