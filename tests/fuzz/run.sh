#!/bin/sh
# run.sh SEEDDIR OUTDIR NAME...: run each libFuzzer harness
# tests/fuzz/fuzz_NAME (of the current build directory) for $FUZZ_SECONDS
# (default 60) on its seeds SEEDDIR/NAME, $FUZZ_JOBS (default 1) at a time.
# New inputs go to OUTDIR/corpus/NAME, crash reproducers to OUTDIR/crashes,
# each harness's log to OUTDIR/NAME.log. Exits 1 if any harness failed.
set -u
seeds=$1 out=$2
shift 2
secs=${FUZZ_SECONDS:-60} jobs=${FUZZ_JOBS:-1}
mkdir -p "$out/crashes"
crashes=$(cd "$out/crashes" && pwd)

run_one() {
	name=$1
	mkdir -p "$out/corpus/$name"
	rm -f "$out/$name.rc"
	dict=
	case $name in json|safetensors|index) dict=-dict=$seeds/json.dict ;; esac
	# -timeout: a single input that takes 10 s is a hang, and a finding.
	tests/fuzz/fuzz_"$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$crashes/$name-" $dict \
		"$out/corpus/$name" "$seeds/$name" >"$out/$name.log" 2>&1
	echo $? >"$out/$name.rc"
}

# Batches of $jobs harnesses at once.
names=$*
while [ $# -gt 0 ]; do
	n=0
	while [ $# -gt 0 ] && [ $n -lt "$jobs" ]; do
		run_one "$1" &
		shift
		n=$((n + 1))
	done
	wait
done

status=0
for name in $names; do
	log=$out/$name.log
	rc=$(cat "$out/$name.rc" 2>/dev/null || echo 1)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	if [ "$rc" -eq 0 ]; then
		echo "fuzz $name: ok, ${execs:-?} runs in ${secs} s (${rate:-?}/s)"
	else
		echo "fuzz $name: FAILED (exit $rc), log $out/$name.log:"
		grep -E '^(==[0-9]+==ERROR|SUMMARY|.*fuzz check failed|artifact_prefix|Test unit written)' "$log" | head -8
		status=1
	fi
done
if [ $status -ne 0 ]; then
	echo "fuzz: crash reproducers in $crashes:"
	ls -l "$crashes"
fi
exit $status
