#!/usr/bin/env bash
# Measures the walking skeleton: binary size, cold start to ready, idle RSS,
# and GET /users/{id} requests/s and p99 through the gateway and directly on
# the users service, interleaved in one run so that machine noise hits both.
#
#   bench/skeleton.sh [duration=10s] [connections=64] [rounds=3]
#
# Needs wrk (apt-get install wrk). Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}; conns=${2:-64}; rounds=${3:-3}
command -v wrk >/dev/null || { echo "bench: needs wrk (apt-get install wrk)" >&2; exit 1; }

work=$(mktemp -d)
go build -o "$work/souk" ./cmd/souk
echo "binary size: $(du -m "$work/souk" | cut -f1) MiB ($(stat -c %s "$work/souk") bytes)"

gw=127.0.0.1:18080; users=127.0.0.1:15001
start=$(date +%s%N)
"$work/souk" up --data "$work/data" --addr gateway=$gw --addr users=$users --addr catalog=127.0.0.1:15002 \
  --addr inventory=127.0.0.1:15003 --addr payments=127.0.0.1:15004 --addr orders=127.0.0.1:15005 \
  --nats-listen "" --log-level warn >"$work/up.out" 2>"$work/up.err" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
until curl -sf "http://$gw/readyz" >/dev/null && curl -sf "http://$users/readyz" >/dev/null; do sleep 0.01; done
ready=$(( ($(date +%s%N) - start) / 1000000 ))
echo "cold start to ready (process start to both /readyz green, from outside): ${ready} ms; souk's own figure: $(head -1 "$work/up.out")"
sleep 2
echo "idle RSS: $(( $(awk '/VmRSS/ {print $2}' /proc/$pid/status) / 1024 )) MiB"

id=$(curl -sf -XPOST "http://$gw/api/users" -H 'Content-Type: application/json' \
  -d '{"name":"Bench","email":"bench@example.com"}' | sed -E 's/.*"id":"([^"]+)".*/\1/')

run() { # label url
  wrk -t2 -c"$conns" -d"$duration" --latency "$2" | awk -v l="$1" '
    /Requests\/sec/ {rps=$2} / 99%/ {p99=$2}
    END {printf "%-8s %10s req/s  p99 %s\n", l, rps, p99}'
}
for r in $(seq 1 "$rounds"); do
  echo "round $r ($conns connections, $duration each):"
  run direct  "http://$users/users/$id"
  run gateway "http://$gw/api/users/$id"
done
echo "RSS after load: $(( $(awk '/VmRSS/ {print $2}' /proc/$pid/status) / 1024 )) MiB"
