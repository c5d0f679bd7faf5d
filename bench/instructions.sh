#!/usr/bin/env bash
# Instructions per operation of Go benchmarks, counted by callgrind: each
# benchmark runs at N and 2N iterations and the script prints
# (instructions at 2N − at N) / N, which leaves out the setup. Counts do not
# depend on what else the machine does, so they compare on a noisy machine
# where timings do not; the garbage collector is off (GOGC=off), so that
# when it happens to run does not move them: allocations count by what
# mallocgc does, and -benchmem tells their number. With -base REF, the same benchmarks of the commit
# REF are counted beside this tree's, and the difference is printed.
#
#   bench/instructions.sh [-n N] [-base REF] PACKAGE BENCHMARK...
#   bench/instructions.sh -base HEAD~1 ./services/gateway 'BenchmarkHandler/jwt+limits'
#
# A BENCHMARK is a full name (Benchmark/sub, as go test prints it without
# the -GOMAXPROCS suffix). Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
n=5000 base=
while [ $# -gt 0 ]; do
  case $1 in
    -n) n=$2; shift 2 ;;
    -base) base=$2; shift 2 ;;
    *) break ;;
  esac
done
pkg=${1:?package}; shift
[ $# -gt 0 ] || { echo "bench: name at least one benchmark" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "bench: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"; [ -z "$base" ] || git worktree remove --force "$dir/base" >/dev/null 2>&1 || true' EXIT
go test -c -o "$dir/new.test" "$pkg"
if [ -n "$base" ]; then
  git worktree add -q --detach "$dir/base" "$base"
  (cd "$dir/base" && go test -c -o "$dir/base.test" "$pkg")
fi

# count BINARY BENCHMARK ITERATIONS → instructions
count() {
  local pattern
  pattern=$(printf '%s' "$2" | sed -E 's/[][()+*?.^$|{}\\]/\\&/g; s#/#$/^#g')
  GOGC=off GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 valgrind --tool=callgrind --callgrind-out-file="$dir/cg" \
    "$1" -test.run '^$' -test.bench "^${pattern}\$" -test.benchtime "$3x" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
per() { echo $(( ($(count "$1" "$2" $((2 * n))) - $(count "$1" "$2" "$n")) / n )); }

if [ -z "$base" ]; then
  printf '%-48s %14s\n' benchmark instr/op
  for b in "$@"; do printf '%-48s %14d\n' "$b" "$(per "$dir/new.test" "$b")"; done
else
  printf '%-48s %14s %14s %9s\n' benchmark "$base" "this tree" change
  for b in "$@"; do
    old=$(per "$dir/base.test" "$b") new=$(per "$dir/new.test" "$b")
    printf '%-48s %14d %14d %+8.1f%%\n' "$b" "$old" "$new" "$(echo "($new - $old) * 100 / $old" | bc -l)"
  done
fi
