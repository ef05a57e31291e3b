#!/bin/sh
# run-demo: start unweightd on a temporary socket, load stories260K, print
# the story the example worker generates through uw_matmul, stop the daemon.
#
#   examples/run-demo.sh [--build DIR] [--backend host|cuda] [--prefer speed|size]
#                        [--data DIR] [--steps N]
#
# --build is the build tree holding unweightd, unweightctl and uw-stories
# (default: the current directory); --prefer the daemon's resident format
# preference (unweightd(8), default speed); --data the directory of
# stories260K.safetensors and tok512.bin (default: data/ beside this script).
# The story goes to stdout, everything else to stderr.
set -eu

me=run-demo
build=.
backend=host
prefer=speed
data=$(dirname "$0")/../data
steps=256

warn() {
	echo "$me: $*" >&2
}

die() {
	warn "$@"
	exit 1
}

while [ $# -gt 0 ]; do
	case $1 in
	--build) [ $# -ge 2 ] || die "--build needs a directory"; build=$2; shift 2 ;;
	--backend) [ $# -ge 2 ] || die "--backend needs host or cuda"; backend=$2; shift 2 ;;
	--prefer) [ $# -ge 2 ] || die "--prefer needs speed or size"; prefer=$2; shift 2 ;;
	--data) [ $# -ge 2 ] || die "--data needs a directory"; data=$2; shift 2 ;;
	--steps) [ $# -ge 2 ] || die "--steps needs a count"; steps=$2; shift 2 ;;
	-h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
done
case $backend in
host|cuda) ;;
*) die "--backend $backend: not host or cuda" ;;
esac
case $prefer in
speed|size) ;;
*) die "--prefer $prefer: not speed or size" ;;
esac

# A program of the build tree: at its top, or in its source's directory.
prog() {
	for d in "$build" "$build/daemon" "$build/ctl" "$build/examples"; do
		if [ -x "$d/$1" ] && [ -f "$d/$1" ]; then
			echo "$d/$1"
			return 0
		fi
	done
	die "$1: not found in the build tree $build (run make there first)"
}
unweightd=$(prog unweightd)
unweightctl=$(prog unweightctl)
stories=$(prog uw-stories)

[ -f "$data/stories260K.safetensors" ] && [ -f "$data/tok512.bin" ] ||
	die "$data: no stories260K.safetensors and tok512.bin there (see --data)"
data=$(cd "$data" && pwd)   # the daemon checks --allow-dir on absolute paths

tmp=$(mktemp -d "${TMPDIR:-/tmp}/uw-demo.XXXXXX")
sock=$tmp/unweightd.sock
log=$tmp/unweightd.log
dpid=

show_log() {
	echo "$me: unweightd's log:" >&2
	sed 's/^/  /' "$log" >&2
}

# Stop the daemon with SIGTERM and wait (10 s at most) for a clean exit;
# fails, saying why, when it was not clean.
stop_daemon() {
	[ -n "$dpid" ] || return 0
	pid=$dpid
	dpid=
	kill -TERM "$pid" 2>/dev/null || true
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		show_log
		warn "unweightd did not exit within 10 s of SIGTERM"
		return 1
	fi
	st=0
	wait "$pid" || st=$?
	if [ $st -ne 0 ]; then
		show_log
		warn "unweightd exited with status $st after SIGTERM"
		return 1
	fi
}

cleanup() {
	rc=$?
	trap - EXIT
	stop_daemon || rc=1
	rm -rf "$tmp"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$unweightd" --socket "$sock" --backend "$backend" --prefer "$prefer" --allow-dir "$data" \
	--foreground 2>"$log" &
dpid=$!

# Ready when it answers; give up after 10 s or if it died.
i=0
until "$unweightctl" --socket "$sock" status >/dev/null 2>&1; do
	if ! kill -0 "$dpid" 2>/dev/null; then
		st=0
		wait "$dpid" || st=$?
		dpid=
		show_log
		die "unweightd exited with status $st before it answered on $sock"
	fi
	[ $i -lt 100 ] || { show_log; die "unweightd did not answer on $sock within 10 s"; }
	sleep 0.1
	i=$((i + 1))
done

"$unweightctl" --socket "$sock" load stories260K "$data/stories260K.safetensors" \
	--wait >&2 || { show_log; die "loading stories260K failed"; }
"$stories" --socket "$sock" --model stories260K --steps "$steps" \
	--tokenizer "$data/tok512.bin" || { show_log; die "uw-stories failed"; }
stop_daemon || exit 1
