#!/usr/bin/env bash
# Kubernetes' own binaries, built from the k8s.io/kubernetes module on the Go
# module proxy (no release download is reachable from CI's machine).
#
# The module zip leaves out staging/ (nested modules), so its go.mod's
# "k8s.io/x => ./staging/…" replaces are pointed at the published k8s.io/x
# v0.<minor>.<patch> instead: the newest the proxy serves at or below the
# wanted patch. k8s.io/sample-* are examples nothing here imports: dropped.
#
# Usage: build-k8s.sh [VERSION] [OUTDIR]   (defaults v1.32.13, $W/bin)
# Skips the build when OUTDIR already has this version's binaries.
set -euo pipefail
K8S_VERSION=${1:-${K8S_VERSION:-v1.32.13}}
W=${W:-/var/tmp/souk-k8s}
OUT=${2:-$W/bin}
TARGETS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
export GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
mkdir -p "$OUT"

have=1
for t in "${TARGETS[@]}"; do [ -x "$OUT/$t" ] || have=0; done
if [ $have = 1 ] && [ "$(cat "$OUT/.k8s-version" 2>/dev/null)" = "$K8S_VERSION" ]; then
  echo "kubernetes $K8S_VERSION binaries cached in $OUT"
  exit 0
fi

go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" > /dev/null
SRC="$W/k8s-src-${K8S_VERSION}"
if [ ! -f "$SRC/.prepared" ]; then
  rm -rf "$SRC"
  cp -r "$(go env GOMODCACHE)/k8s.io/kubernetes@${K8S_VERSION}" "$SRC"
  chmod -R u+w "$SRC"
  cd "$SRC"
  rm -rf vendor go.work go.work.sum
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  want="v0.${K8S_VERSION#v1.}"          # v1.32.13 -> v0.32.13
  edits=()
  for m in $(grep -oE 'k8s.io/[a-z-]+ => ./staging' go.mod | awk '{print $1}'); do
    case $m in k8s.io/sample-*) edits+=("-dropreplace=$m" "-droprequire=$m"); continue;; esac
    v=""
    for cand in $(go list -m -versions "$m" | tr ' ' '\n' | grep -E "^v0\.$minor\." | sort -V -r); do
      # newest first; take the first at or below the wanted patch that downloads
      if [ "$(printf '%s\n%s\n' "$cand" "$want" | sort -V | tail -1)" = "$want" ] \
          && go mod download "$m@$cand" >/dev/null 2>&1; then v=$cand; break; fi
    done
    [ -n "$v" ] || { echo "build-k8s: no usable version of $m" >&2; exit 1; }
    edits+=("-dropreplace=$m" "-require=$m@$v")
  done
  go mod edit "${edits[@]}"
  touch .prepared
fi

cd "$SRC"
minor=$(echo "$K8S_VERSION" | cut -d. -f2)
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
for t in "${TARGETS[@]}"; do
  s=$(date +%s)
  go build -trimpath -ldflags "$ldflags" -o "$OUT/$t" "./cmd/$t"
  echo "built $t in $(( $(date +%s) - s ))s, $(du -h "$OUT/$t" | cut -f1)"
done
echo "$K8S_VERSION" > "$OUT/.k8s-version"
