#!/bin/bash
# device run: unpack the carried build; GPU integration tests, then (LOAD=1) the load bench
set -u
tar -xzf .carry/devbuild.tar.gz
B=$PWD/.devbuild
export LD_LIBRARY_PATH=$B/gpulibs:/usr/local/cuda/lib64 UW_TOP_SRCDIR=$PWD UW_TOP_BUILDDIR=$B
export PATH=/opt/torch/.venv/bin:$PATH
export UW_TUNE_DIR=$OUT/tune-tests; mkdir -p $UW_TUNE_DIR
for t in ${TESTS_GPU:-check_gpu_integration check_gpu_restart check_gpu_stories}; do
	timeout 200 sh tests/$t.sh > $OUT/$t.log 2>&1; echo "$t: exit $?"; tail -n 4 $OUT/$t.log
done
if [ "${LOAD:-0}" = 1 ]; then
	COLD=${COLD:-0} timeout ${LT:-500} bash bench/load.sh $B > /dev/null 2>&1; echo "load: exit $?"
	grep -E '^(cat|unweightd|naive|safetensors|the daemon|attach|  p)|GB/s|mapped|p99' $OUT/load.txt | head -40
fi
