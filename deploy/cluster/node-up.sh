#!/usr/bin/env bash
# A one-node Kubernetes for Souk's cluster test (.ci/k8s), from locally built binaries: etcd (Debian's
# etcd-server), kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy (build-k8s.sh),
# containerd + runc + the bridge CNI plugin (Debian). Every process is a host process whose PID is recorded in
# $BASE/run, so that node-down.sh stops exactly these. Everything listens on loopback or on 10.201.0.1, an
# address on a local veth that only this machine has. The bridge CNI does not enforce NetworkPolicy.
# Usage: node-up.sh   (env: BIN=/var/tmp/souk-k8s/bin  BASE=/var/tmp/souk-k8s/cluster)
set -euo pipefail
BIN=${BIN:-/var/tmp/souk-k8s/bin}
BASE=${BASE:-/var/tmp/souk-k8s/cluster}
HERE=$(cd "$(dirname "$0")" && pwd)
NODE=souk-node NODE_IP=10.201.0.1 POD_CIDR=10.244.0.0/24 CLUSTER_CIDR=10.244.0.0/16 SVC_CIDR=10.96.0.0/16 DNS_IP=10.96.0.10
PKI=$BASE/pki LOG=$BASE/log RUN=$BASE/run
mkdir -p "$PKI" "$LOG" "$RUN" "$BASE/etc" "$BASE/cni/net.d" "$BASE/etcd" "$BASE/kubelet" "$BASE/containerd"
export PATH=$BIN:$PATH

# --- network: the "node" address lives on a veth (this kernel has no dummy device) that only this machine has;
# blackhole routes make sure nothing for the cluster ranges can leave by eth0 (forwarded pod traffic is DNATed
# before routing, so it is unaffected; a ClusterIP is therefore not reachable from the host itself: use a NodePort)
ip link show soukk8s0 >/dev/null 2>&1 || { ip link add soukk8s0 type veth peer name soukk8s0p; ip addr add $NODE_IP/32 dev soukk8s0; ip link set soukk8s0p up; ip link set soukk8s0 up; }
ip route replace blackhole $SVC_CIDR
ip route replace blackhole $CLUSTER_CIDR
# let `ip netns` set up /run/netns (a shared bind mount) before containerd mounts pod namespaces there; otherwise a
# later `ip netns add` covers those mounts and they can no longer be removed by path
ip netns add soukk8s-probe && ip netns del soukk8s-probe
sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
# docker sets the FORWARD policy to DROP: let the pod bridge forward
iptables -C FORWARD -i soukk8s-cni0 -m comment --comment souk-k8s -j ACCEPT 2>/dev/null || iptables -I FORWARD -i soukk8s-cni0 -m comment --comment souk-k8s -j ACCEPT
iptables -C FORWARD -o soukk8s-cni0 -m comment --comment souk-k8s -j ACCEPT 2>/dev/null || iptables -I FORWARD -o soukk8s-cni0 -m comment --comment souk-k8s -j ACCEPT

SVC_IP=10.96.0.1 "$HERE/pki.sh" "$PKI" $NODE_IP $NODE >/dev/null

start() { # name cmd...
  local n=$1; shift
  if [ -f "$RUN/$n.pid" ] && kill -0 "$(cat "$RUN/$n.pid")" 2>/dev/null; then return 0; fi
  nohup "$@" > "$LOG/$n.log" 2>&1 &
  echo $! > "$RUN/$n.pid"
}
put() { # write stdin to $1 only if it changed (kube-proxy exits when its config file changes)
  local t; t=$(mktemp); cat > "$t"
  if cmp -s "$t" "$1"; then rm -f "$t"; else mv "$t" "$1"; fi
}
wait_for() { # what cmd...
  local what=$1; shift
  for _ in $(seq 1 120); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "timed out waiting for $what" >&2; return 1
}

# --- containerd (a second instance beside docker's, with the CRI plugin on)
put "$BASE/etc/containerd.toml" <<TOML
version = 2
root = "$BASE/containerd/root"
state = "/run/souk-k8s/containerd"
[grpc]
  address = "/run/souk-k8s/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  # this VM's root has no CAP_SYS_RESOURCE: runc cannot lower oom_score_adj (kubelet asks -998 for the pause
  # container) and fails with "can't get final child's PID from pipe: EOF"; clamp it to containerd's own instead
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$BASE/cni/net.d"
TOML
put "$BASE/cni/net.d/10-soukk8s.conflist" <<JSON
{ "cniVersion": "1.0.0", "name": "soukk8s", "plugins": [
  { "type": "bridge", "bridge": "soukk8s-cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": { "type": "host-local", "ranges": [[{ "subnet": "$POD_CIDR" }]], "routes": [{ "dst": "0.0.0.0/0" }],
              "dataDir": "$BASE/cni/ipam" } },
  { "type": "portmap", "capabilities": { "portMappings": true } } ] }
JSON
start containerd containerd --config "$BASE/etc/containerd.toml"
wait_for containerd ctr --address /run/souk-k8s/containerd/containerd.sock version

# --- etcd (Debian's etcd-server), loopback only, non-default ports
start etcd etcd --name souk-k8s --data-dir "$BASE/etcd" --listen-client-urls http://127.0.0.1:23790 \
  --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 \
  --initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster souk-k8s=http://127.0.0.1:23800
wait_for etcd curl -sf http://127.0.0.1:23790/health

# --- control plane
start kube-apiserver kube-apiserver --etcd-servers=http://127.0.0.1:23790 \
  --advertise-address=$NODE_IP --bind-address=$NODE_IP --secure-port=6443 \
  --service-cluster-ip-range=$SVC_CIDR --allow-privileged=true --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction --client-ca-file="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key"
export KUBECONFIG=$PKI/admin.kubeconfig
wait_for kube-apiserver kubectl get --raw /readyz
start kube-controller-manager kube-controller-manager --kubeconfig="$PKI/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$PKI/controller-manager.kubeconfig" --authorization-kubeconfig="$PKI/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --service-cluster-ip-range=$SVC_CIDR --cluster-cidr=$CLUSTER_CIDR --allocate-node-cidrs=false
start kube-scheduler kube-scheduler --kubeconfig="$PKI/scheduler.kubeconfig" \
  --authentication-kubeconfig="$PKI/scheduler.kubeconfig" --authorization-kubeconfig="$PKI/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --leader-elect=false

# --- node
put "$BASE/etc/resolv.conf" <<R
nameserver 127.0.0.1
R
put "$BASE/etc/kubelet.yaml" <<Y
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: "$PKI/ca.crt" } }
authorization: { mode: Webhook }
tlsCertFile: "$PKI/kubelet-serving.crt"
tlsPrivateKeyFile: "$PKI/kubelet-serving.key"
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix:///run/souk-k8s/containerd/containerd.sock
clusterDomain: cluster.local
clusterDNS: [ "$DNS_IP" ]
resolvConf: "$BASE/etc/resolv.conf"
podCIDR: $POD_CIDR
failSwapOn: false
maxPods: 60
serializeImagePulls: false
evictionHard: { memory.available: "200Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%" }
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
oomScoreAdj: 0
failCgroupV1: false   # this VM has cgroup v1; kubelet >= 1.35 refuses it unless told (field exists since 1.31)
Y
start kubelet kubelet --config="$BASE/etc/kubelet.yaml" --kubeconfig="$PKI/kubelet.kubeconfig" \
  --root-dir="$BASE/kubelet" --hostname-override=$NODE --node-ip=$NODE_IP
put "$BASE/etc/kube-proxy.yaml" <<Y
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: { kubeconfig: "$PKI/kube-proxy.kubeconfig" }
mode: iptables
hostnameOverride: $NODE
clusterCIDR: $CLUSTER_CIDR
bindAddress: $NODE_IP
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
nodePortAddresses: [ "$NODE_IP/32", "127.0.0.0/8" ]
conntrack: { maxPerCore: 0 }
oomScoreAdj: 0
Y
wait_for "node $NODE Ready" sh -c "kubectl get node $NODE -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -q True"
# only once the Node exists: kube-proxy >= 1.33 exits when the node's IPs change (null -> 10.201.0.1), expecting a
# supervisor to restart it
start kube-proxy kube-proxy --config="$BASE/etc/kube-proxy.yaml"
wait_for kube-proxy curl -sf http://127.0.0.1:10256/healthz
echo "cluster up: export KUBECONFIG=$KUBECONFIG"
