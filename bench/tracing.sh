#!/usr/bin/env bash
# What tracing costs the gateway per request, in instructions: runs
# BenchmarkTracing (services/gateway) under callgrind at N and 2N requests
# for each sampling ratio and prints (instructions at 2N − at N) / N, which
# leaves out the setup. Instruction counts do not depend on what else the
# machine is doing, so the ratios hold on a noisy machine where timings do
# not; they cover the gateway's own work, not the kernel's network I/O,
# which tracing does not change.
#
#   bench/tracing.sh [N]     (default 5000; needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000}
command -v valgrind >/dev/null || { echo "bench: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
go test -c -o "$dir/gateway.test" ./services/gateway
count() { # ratio requests → instructions
  GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 valgrind --tool=callgrind --callgrind-out-file="$dir/cg" \
    "$dir/gateway.test" -test.run '^$' -test.bench "^BenchmarkTracing/sample=$1\$" -test.benchtime "$2x" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
base=
printf '%-10s %14s %10s\n' sampling instr/request "vs off"
for ratio in 0 0.01 1; do
  per=$(( ($(count "$ratio" $((2 * n))) - $(count "$ratio" "$n")) / n ))
  base=${base:-$per}
  printf '%-10s %14d %+9.1f%%\n' "$ratio" "$per" "$(echo "($per - $base) * 100 / $base" | bc -l)"
done
