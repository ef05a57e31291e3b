#!/bin/bash
# gpu-tune: on the GPU host, from a build directory made elsewhere and
# carried along (this builds nothing), what issue 5's tuner needs checked
# and measured, in about 8 minutes:
#   1. check_gpu_kernels (the tuner's and AUTO's tests among the others),
#   2. check_gpu_integration (the daemon tunes a model on load, unweightctl
#      tune, a worker computes with the choices),
#   3. uw-bench-matmul -n: AUTO's defaults, cuBLAS and the tuned choice in
#      one run (the tuned columns; the cache it writes is kept),
#   4. uw-bench-mlp, where built: a Llama-3.1-8B-shaped MLP stack, tuned
#      and fused gate+up, against cuBLAS, tokens/s at batch 1, 8 and 64.
#   bash bench/gpu-tune.sh [BUILDDIR]       (default .devbuild)
# Logs go to $OUT (the device tool's folder), else ./gpu-out. Libraries the
# host may lack (libsubunit of Check) can be put in BUILDDIR/gpulibs.
# SKIP_TESTS=1 leaves 1 and 2 out; SKIP_BENCH=1 leaves 3 and 4 out.
set -u
B=$(cd "${1:-.devbuild}" && pwd)
O=${OUT:-$PWD/gpu-out}
mkdir -p "$O/tune"
export LD_LIBRARY_PATH="$B/gpulibs:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export UW_TOP_SRCDIR=$PWD UW_TOP_BUILDDIR=$B
# The tests must not read a cache left on the host by someone else.
export UW_TUNE_DIR=$O/tune-tests
mkdir -p "$UW_TUNE_DIR"
start=$(date +%s)
step() { echo "== $1 ($(($(date +%s) - start)) s)"; }
{
	date -u +%Y-%m-%dT%H:%MZ
	git log --oneline -1 2>/dev/null
	nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu --format=csv
	for p in tests/check_gpu_kernels tests/check_integration bench/uw-bench-matmul unweightd; do
		ldd "$B/$p" | grep -i "not found" && echo "$p: missing libraries"
	done
} 2>&1 | tee "$O/host.txt"

rc=0
if [ "${SKIP_TESTS:-0}" != 1 ]; then
	for t in tests/check_gpu_kernels tests/check_gpu_integration.sh; do
		n=$(basename "$t" .sh)
		step "$n"
		case $t in
		*.sh) timeout 240 sh "$PWD/$t" >"$O/$n.log" 2>&1 ;;
		*) timeout 240 "$B/$t" >"$O/$n.log" 2>&1 ;;
		esac
		s=$?
		echo "$n: exit $s"
		grep -E "^[0-9]+%: Checks|:[EF]:" "$O/$n.log" | head -20
		[ $s -eq 0 ] || rc=1
	done
fi

if [ "${SKIP_BENCH:-0}" != 1 ]; then
	step "uw-bench-matmul -n -w $O/tune"
	timeout 240 "$B/bench/uw-bench-matmul" -n -w "$O/tune" >"$O/bench-matmul.log" 2>&1
	s=$?
	echo "uw-bench-matmul: exit $s"
	sed -n '/^shape/,$p' "$O/bench-matmul.log" | cut -c1-200
	[ $s -eq 0 ] || rc=1
	if [ -x "$B/bench/uw-bench-mlp" ]; then
		step "uw-bench-mlp"
		timeout 150 "$B/bench/uw-bench-mlp" >"$O/bench-mlp.log" 2>&1
		s=$?
		echo "uw-bench-mlp: exit $s"
		tail -n 20 "$O/bench-mlp.log"
		[ $s -eq 0 ] || rc=1
	fi
fi
step "done, exit $rc"
exit $rc
