#!/usr/bin/env bash
# Builds souk and runs the gateway benchmark with the load generator and
# backends on CPU 1 (the proxies pin themselves to CPU 0).
#
#   bench/gateway/run.sh [flags of bench/gateway, e.g. -duration 10s -rounds 5]
#
# Needs: wrk, h2load, nginx, haproxy, caddy (apt-get install wrk nghttp2-client nginx haproxy caddy).
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in wrk h2load nginx haproxy caddy taskset; do
  command -v "$tool" >/dev/null || { echo "bench: needs $tool" >&2; exit 1; }
done
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/souk" ./cmd/souk
go build -o "$bin/bench-gateway" ./bench/gateway
exec taskset -c 1 "$bin/bench-gateway" -souk "$bin/souk" "$@"
