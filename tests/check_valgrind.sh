#!/bin/sh
# check_valgrind: one run of unweightd under valgrind — load, attach and
# compute from a worker, evict, SIGTERM — leaks no memory and no fd, and
# makes no invalid access. Skipped (77) where valgrind is not installed.
set -eu

src=${UW_TOP_SRCDIR:?UW_TOP_SRCDIR: the source tree}
build=${UW_TOP_BUILDDIR:?UW_TOP_BUILDDIR: the build tree}
command -v valgrind >/dev/null 2>&1 || { echo "SKIP: valgrind is not installed"; exit 77; }

fail() {
	echo "FAIL: $*" >&2
	[ -f "$tmp/vg.log" ] && tail -n 40 "$tmp/vg.log" >&2
	exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check_valgrind.XXXXXX")
pid=
trap '[ -n "$pid" ] && kill -KILL $pid 2>/dev/null; rm -rf "$tmp"' EXIT
sock=$tmp/uw.sock
ctl=$build/ctl/unweightctl
stories=$build/uw-stories
# libtool wrappers would put valgrind on the shell: run the real binary.
daemon=$build/unweightd
[ -x "$build/.libs/unweightd" ] && daemon=$build/.libs/unweightd

valgrind --error-exitcode=99 --suppressions="$src/tests/valgrind.supp" \
	--leak-check=full --show-leak-kinds=definite,indirect \
	--errors-for-leak-kinds=definite,indirect --track-fds=yes --log-file="$tmp/vg.log" \
	"$daemon" --socket "$sock" --backend host --allow-dir "$src/data" --foreground \
	2>"$tmp/daemon.log" &
pid=$!
i=0
while [ ! -S "$sock" ]; do
	i=$((i + 1))
	[ $i -le 600 ] || fail "unweightd under valgrind made no socket in 60 s"
	kill -0 $pid 2>/dev/null || fail "unweightd under valgrind exited: $(cat "$tmp/daemon.log")"
	sleep 0.1
done

"$ctl" --socket "$sock" load stories "$src/data/stories260K.safetensors" --wait >/dev/null ||
	fail "load under valgrind"
"$ctl" --socket "$sock" list >/dev/null || fail "list"
"$ctl" --socket "$sock" stats stories --json >/dev/null || fail "stats"
"$stories" --socket "$sock" --model stories --tokenizer "$src/data/tok512.bin" --steps 16 \
	>"$tmp/story.txt" 2>/dev/null || fail "the worker could not attach and compute"
grep -q "Once upon a time" "$tmp/story.txt" || fail "worker story: $(cat "$tmp/story.txt")"
"$ctl" --socket "$sock" evict stories >/dev/null || fail "evict"
"$ctl" --socket "$sock" load stories2 "$src/data/stories260K.safetensors" --wait >/dev/null ||
	fail "second load"

kill -TERM $pid
st=0
wait $pid || st=$?
pid=
[ $st -ne 99 ] || fail "valgrind found errors or leaks"
[ $st -eq 0 ] || fail "unweightd under valgrind exited $st"
grep -q "ERROR SUMMARY: 0 errors" "$tmp/vg.log" || fail "valgrind reports errors"
# --track-fds: every fd open at exit must be one the daemon was started
# with ("<inherited from parent>"), none it opened itself.
own=$(awk '/== Open / { fd = $0; getline;
	if ($0 !~ /inherited from parent/) print fd }' "$tmp/vg.log")
grep -q "FILE DESCRIPTORS:" "$tmp/vg.log" || fail "no FILE DESCRIPTORS line in valgrind's log"
[ -z "$own" ] || fail "fds the daemon opened are still open at exit: $own"
echo "ok: unweightd under valgrind: no errors, no leaks, no fd of its own left open"
