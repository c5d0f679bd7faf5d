#!/usr/bin/env bash
# Stop what node-up.sh started (by the PIDs it recorded), the pods' containers, and undo its network changes.
# --purge also removes the cluster's state (etcd, certificates, kubelet's and containerd's directories).
# Usage: node-down.sh [--purge]
set -uo pipefail
BIN=${BIN:-/var/tmp/souk-k8s/bin}
BASE=${BASE:-/var/tmp/souk-k8s/cluster}
RUN=$BASE/run
export PATH=$BIN:$PATH
CTR="ctr --address /run/souk-k8s/containerd/containerd.sock -n k8s.io"
stop() { # name: TERM, wait up to 20 s, then KILL
  local f=$RUN/$1.pid p
  [ -f "$f" ] || return 0; p=$(cat "$f")
  if kill -0 "$p" 2>/dev/null; then
    kill "$p"; for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$p" 2>/dev/null && kill -9 "$p"
  fi
  rm -f "$f"
}
stop kubelet; stop kube-proxy
# the pods' containers: kill their tasks and remove them, so the shims exit
if [ -S /run/souk-k8s/containerd/containerd.sock ]; then
  for c in $($CTR tasks ls -q 2>/dev/null); do $CTR tasks kill -s SIGKILL "$c" >/dev/null 2>&1; done
  sleep 1
  for c in $($CTR containers ls -q 2>/dev/null); do $CTR tasks delete -f "$c" >/dev/null 2>&1; $CTR containers delete "$c" >/dev/null 2>&1; done
fi
stop kube-scheduler; stop kube-controller-manager; stop kube-apiserver; stop etcd; stop containerd
kube-proxy --cleanup >/dev/null 2>&1 || true
# kubelet's tmpfs volume mounts and the CNI network namespaces
grep -o " $BASE/kubelet[^ ]*" /proc/mounts | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
grep -o " /run/souk-k8s[^ ]*" /proc/mounts | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
for ns in $(ip netns list | awk '/^cni-/{print $1}'); do
  ip netns del "$ns" 2>/dev/null || { umount -l "/run/netns/$ns" 2>/dev/null; rm -f "/run/netns/$ns"; }
done
ip link del soukk8s-cni0 2>/dev/null; ip link del soukk8s0 2>/dev/null
ip route del blackhole 10.96.0.0/16 2>/dev/null; ip route del blackhole 10.244.0.0/16 2>/dev/null
while iptables -D FORWARD -i soukk8s-cni0 -m comment --comment souk-k8s -j ACCEPT 2>/dev/null; do :; done
while iptables -D FORWARD -o soukk8s-cni0 -m comment --comment souk-k8s -j ACCEPT 2>/dev/null; do :; done
# what kubelet, kube-proxy and the portmap plugin left: KUBE-* and CNI-* chains and the jumps to them
for ipt in iptables ip6tables; do
  for t in filter nat mangle; do
    $ipt-save -t $t 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j (KUBE-|CNI-)' | sed 's/^-A/-D/' \
      | while read -r r; do eval "$ipt -t $t $r"; done
    chains=$($ipt-save -t $t 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p')
    for c in $chains; do $ipt -t $t -F "$c"; done
    for c in $chains; do $ipt -t $t -X "$c"; done
  done
done
if [ "${1:-}" = --purge ]; then rm -rf "$BASE" /run/souk-k8s; fi
echo "node down"
