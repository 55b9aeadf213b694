#!/usr/bin/env bash
# SIGKILL make conformance's execconform process N times (default 20) at
# random moments, and after each count what it left: processes carrying
# its EXECCONFORM_SERVER_PID and its temp directories, waiting up to 15 s
# (its janitor should leave none, within a fraction of a second). Nobody
# runs reap. Prints one line per kill; exits 1 if anything was left.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
go build -o /dev/null ./cmd/execconform # warm the build cache: go run starts at once
bad=0
for i in $(seq "$n"); do
	setsid make conformance >/dev/null 2>&1 &
	mk=$!
	pid=
	for _ in $(seq 400); do
		pid=$(pgrep -f '^/.*/execconform run --out conformance-report' | head -1 || true)
		[[ -n $pid ]] && break
		sleep 0.05
	done
	[[ -n $pid ]] || { echo "kill $i: the run never started"; exit 2; }
	at=$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.1f", 0.5 + rand() * 13.5 }')
	sleep "$at"
	kill -9 "$pid" 2>/dev/null || true
	t0=$SECONDS left=0 dirs=0
	for _ in $(seq 150); do
		left=$(grep -l "EXECCONFORM_SERVER_PID=$pid\b" /proc/[0-9]*/environ 2>/dev/null | wc -l || true)
		dirs=$(find /tmp -maxdepth 1 -name "execconform-*-$pid-*" 2>/dev/null | wc -l)
		((left == 0 && dirs == 0)) && break
		sleep 0.1
	done
	echo "kill $i at ${at}s (pid $pid): $left process(es), $dirs temp dir(s) left after $((SECONDS - t0)) s"
	((left == 0 && dirs == 0)) || bad=1
	wait "$mk" 2>/dev/null || true
done
exit "$bad"
