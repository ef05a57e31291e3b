#!/bin/sh
# hf_llama-gpu.sh BUILDDIR [hf_llama.py args]: on a GPU host, run the Python
# binding's test with a Python that has torch (so unweight.torch is tested
# on the host backend too), then start unweightd --backend cuda from BUILDDIR
# on a temporary socket, allowed to load from a temporary directory, run
# examples/hf_llama.py against it, and stop the daemon.
#   PYTHON   the interpreter with torch, transformers and safetensors
#            (default python3)
#   OUT      if set, the logs are copied there
# BUILDDIR must be a shared build (.libs/libunweight-client.so.0) configured
# --with-cuda. Exit status: 0 when both passed.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { echo "usage: $0 BUILDDIR [hf_llama.py args]" >&2; exit 2; }
build=$(cd "$1" && pwd) || exit 2
shift
py=${PYTHON:-python3}
lib=$build/.libs/libunweight-client.so.0
[ -f "$lib" ] || {
	echo "hf_llama-gpu: no $lib: the build must make the shared library (no --disable-shared)" >&2
	exit 2
}
[ -x "$build/unweightd" ] || { echo "hf_llama-gpu: no $build/unweightd" >&2; exit 2; }
export UNWEIGHT_LIB=$lib PYTHONPATH=$top/python${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export PYTHONDONTWRITEBYTECODE=1

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hf_llama.XXXXXX")
pid=
stop() {
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null
		wait "$pid"
		pid=
	fi
	[ -n "${OUT:-}" ] && cp "$tmp"/*.log "$OUT"/ 2>/dev/null
	rm -rf "$tmp"
}
trap stop EXIT
trap 'exit 130' INT TERM

rc=0
echo "== tests/check_python.py with $py (host backend)"
UW_TOP_SRCDIR=$top UW_TOP_BUILDDIR=$build "$py" "$top/tests/check_python.py" \
	>"$tmp/check_python.log" 2>&1 || rc=1
cat "$tmp/check_python.log"

echo "== unweightd --backend cuda, examples/hf_llama.py"
sock=$tmp/uw.sock
"$build/unweightd" --socket "$sock" --backend cuda --allow-dir "$tmp" --foreground \
	2>"$tmp/unweightd.log" &
pid=$!
i=0
until [ -S "$sock" ]; do
	# A daemon that exited is a zombie until waited for: read its state.
	state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1)
	if [ -z "$state" ] || [ "$state" = Z ] || [ $i -ge 300 ]; then
		echo "hf_llama-gpu: unweightd did not start:" >&2
		cat "$tmp/unweightd.log" >&2
		exit 1
	fi
	i=$((i + 1))
	sleep 0.1
done
"$py" "$top/examples/hf_llama.py" --socket "$sock" --dir "$tmp" "$@" 2>&1 |
	tee "$tmp/hf_llama.log"
# POSIX sh has no pipefail: the example's verdict is its last line.
tail -n 1 "$tmp/hf_llama.log" | grep -q "^hf_llama: PASS" || {
	rc=1
	echo "== unweightd log"
	tail -n 30 "$tmp/unweightd.log"
}
exit $rc
