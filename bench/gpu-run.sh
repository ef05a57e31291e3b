#!/bin/bash
# gpu-run: on the GPU host, run the GPU tests and the matmul benchmark from a
# build directory made elsewhere and carried along (this builds nothing).
#   bash bench/gpu-run.sh [BUILDDIR] [bench args]    (default .devbuild)
# Logs go to $OUT (the device tool's folder), else ./gpu-out. Libraries the
# host may lack (libsubunit of Check) can be put in BUILDDIR/gpulibs.
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
	for p in tests/check_gpu_kernels bench/uw-bench-matmul; do
		ldd "$B/$p" | grep -i "not found" && echo "$p: missing libraries"
	done
} 2>&1 | tee "$O/host.txt"

rc=0
UW_TOP_SRCDIR=$PWD UW_TOP_BUILDDIR=$B "$B/tests/check_gpu_kernels" >"$O/check_gpu_kernels.log" 2>&1
t=$?
echo "check_gpu_kernels: exit $t"
tail -n 30 "$O/check_gpu_kernels.log"
[ $t -eq 0 ] || rc=1

"$B/bench/uw-bench-matmul" "$@" 2>&1 | tee "$O/bench-matmul.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1

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
