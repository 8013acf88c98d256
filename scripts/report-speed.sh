#!/usr/bin/env bash
# report-speed.sh — the cost of `spillway report`: builds (Release) the CLI and the synthetic
# log generator, writes a log of EVENTS records (default 1,000,000) and times the report on it,
# printing seconds per million events; then again on a log of as many records with a tracker's
# touches and access summaries in it (the kinds of tensor are inferred from them). Target:
# under 1 s per million events.
#   scripts/report-speed.sh [EVENTS] [BUILD_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
events="${1:-1000000}"
build="${2:-$root/build-cpu}"
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPILLWAY_BUILD_GPU_TESTS=OFF >/dev/null
fi
ninja -C "$build" spillway_cli make_big_trace >/dev/null
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for touches in "" --touches; do
  "$build/make_big_trace" "$work/big.trace" "$events" $touches >/dev/null
  records=$(( ($(stat -c %s "$work/big.trace") - 64) / 64 ))
  for formats in text,json,chrome text,json,chrome,html all; do
    start=$(date +%s.%N)
    "$build/spillway" report "$work/big.trace" -o "$work/out" --format "$formats" >/dev/null 2>&1
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" -v n="$records" -v f="$formats" -v k="${touches:-(allocations only)}" \
      'BEGIN { t = e - s; printf "%-20s --format %-22s %d events: %.3f s, %.3f s per million events\n", k, f, n, t, t * 1e6 / n }'
  done
done
