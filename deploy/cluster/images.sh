#!/usr/bin/env bash
# Local stand-ins for the registry images that Souk's Dockerfile, compose.yaml
# and manifests name, built with no registry at all (CI's machine can pull
# from none), under the names and tags those files use:
#
#   debian:bookworm                     debootstrap --variant=minbase (+ ca-certificates)
#   golang:1.26                         that + this machine's Go and CA bundle
#   gcr.io/distroless/static:nonroot    scratch + CA bundle + passwd/group (nonroot = 65532) + /tmp
#   nats:2.15                           nats-server from the Go module proxy, on scratch
#   postgres:15                         debian:bookworm + Debian's postgresql-15 + postgres-entrypoint.sh
#   registry.k8s.io/pause:3.10          pause.c from the k8s.io/kubernetes module, gcc -static
#   registry.k8s.io/coredns/coredns:v1.14.7   CoreDNS from the Go module proxy, on scratch
#
# An image already present is kept (NO_CACHE=1 rebuilds them all).
# Usage: images.sh [WORKDIR]   (default $W or /var/tmp/souk-k8s)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
W=${1:-${W:-/var/tmp/souk-k8s}}
K8S_VERSION=${K8S_VERSION:-v1.32.13}
mkdir -p "$W/img"; cd "$W/img"
export DOCKER_BUILDKIT=0   # the classic builder never looks for a registry
present() { [ -z "${NO_CACHE:-}" ] && docker image inspect "$1" >/dev/null 2>&1; }
build() { # tag... -- dir
  local tags=() s; s=$(date +%s)
  while [ "$1" != -- ]; do tags+=(-t "$1"); shift; done
  docker build -q ${NO_CACHE:+--no-cache} "${tags[@]}" "$2" >/dev/null
  echo "   image ${tags[1]} ($(( $(date +%s) - s ))s)"
}

if ! present debian:bookworm; then
  s=$(date +%s)
  rm -rf rootfs
  debootstrap --variant=minbase bookworm rootfs http://deb.debian.org/debian >/dev/null
  cp /etc/resolv.conf rootfs/etc/resolv.conf
  chroot rootfs sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null && apt-get clean && rm -rf /var/lib/apt/lists/*'
  rm -f rootfs/etc/resolv.conf
  tar -C rootfs -c . | docker import -c 'CMD ["bash"]' - debian:bookworm >/dev/null
  docker tag debian:bookworm debian:bookworm-slim
  rm -rf rootfs
  echo "   image debian:bookworm ($(( $(date +%s) - s ))s)"
fi

gov=$(go env GOVERSION); gov=${gov#go}
if ! present "golang:$gov"; then
  mkdir -p golang
  tar -C /usr/local -cf golang/go.tar go
  cp /etc/ssl/certs/ca-certificates.crt golang/
  cat > golang/Dockerfile <<'D'
FROM debian:bookworm
ADD go.tar /usr/local/
# this machine's CA bundle: it may reach the module proxy through a TLS-inspecting egress
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV GOPATH=/go GOTOOLCHAIN=local PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /go
D
  build "golang:${gov%.*}" "golang:$gov" -- golang
  rm -f golang/go.tar
fi

if ! present gcr.io/distroless/static:nonroot; then
  d=distroless/rootfs
  mkdir -p $d/etc/ssl/certs $d/tmp $d/home/nonroot
  cp /etc/ssl/certs/ca-certificates.crt $d/etc/ssl/certs/
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > $d/etc/passwd
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > $d/etc/group
  chmod 1777 $d/tmp
  # the home directory owned by 65532 through the tar itself: the classic
  # builder's COPY --chown does not chown the directory it creates
  tar --numeric-owner --owner=0 --group=0 -C $d -cf distroless/base.tar etc tmp
  tar --numeric-owner --owner=65532 --group=65532 -C $d -rf distroless/base.tar home
  printf 'FROM scratch\nADD base.tar /\nENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n' > distroless/Dockerfile
  build gcr.io/distroless/static:latest gcr.io/distroless/static-debian12:latest -- distroless
  mkdir -p distroless-nonroot
  printf 'FROM gcr.io/distroless/static:latest\nUSER 65532:65532\nWORKDIR /home/nonroot\n' > distroless-nonroot/Dockerfile
  build gcr.io/distroless/static:nonroot gcr.io/distroless/static-debian12:nonroot -- distroless-nonroot
fi

if ! present nats:2.15; then
  mkdir -p nats
  cat > nats/Dockerfile <<'D'
FROM golang:1.26 AS build
RUN CGO_ENABLED=0 GOBIN=/out go install -trimpath -ldflags="-s -w" github.com/nats-io/nats-server/v2@v2.15.2
RUN printf 'port: 4222\nmonitor_port: 8222\njetstream { store_dir: /data }\n' > /out/nats-server.conf && mkdir -p /out/data
FROM scratch
COPY --from=build /out/nats-server /nats-server
COPY --from=build /out/nats-server.conf /nats-server.conf
COPY --from=build /out/data /data
EXPOSE 4222 6222 8222
ENTRYPOINT ["/nats-server"]
CMD ["--config", "nats-server.conf"]
D
  build nats:2.15 nats:2.15.2 -- nats
fi

if ! present postgres:15; then
  mkdir -p postgres
  cp "$HERE/postgres-entrypoint.sh" postgres/docker-entrypoint.sh
  cat > postgres/Dockerfile <<'D'
FROM debian:bookworm
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* && mkdir -p /var/lib/postgresql/data /docker-entrypoint-initdb.d \
 && chown -R postgres:postgres /var/lib/postgresql
COPY docker-entrypoint.sh /usr/local/bin/
# as in the official image: pg_isready and the rest on PATH
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PGDATA=/var/lib/postgresql/data
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
D
  build postgres:15 postgres:15-bookworm -- postgres
fi

if ! present registry.k8s.io/pause:3.10; then
  mkdir -p pause
  kdir=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  gcc -Os -static -o pause/pause "$kdir/build/pause/linux/pause.c" -DVERSION=3.10-local
  strip pause/pause
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' > pause/Dockerfile
  build registry.k8s.io/pause:3.10 -- pause
fi

if ! present registry.k8s.io/coredns/coredns:v1.14.7; then
  mkdir -p coredns
  cat > coredns/Dockerfile <<'D'
FROM golang:1.26 AS build
RUN CGO_ENABLED=0 GOBIN=/out go install -trimpath -ldflags="-s -w" github.com/coredns/coredns@v1.14.7
FROM scratch
COPY --from=build /out/coredns /coredns
EXPOSE 53 53/udp
ENTRYPOINT ["/coredns"]
D
  build registry.k8s.io/coredns/coredns:v1.14.7 -- coredns
fi
echo "base images ready"
