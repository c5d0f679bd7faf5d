# One image for every Souk process: `souk serve <service>`, `souk migrate`,
# `souk check`, `souk events dlq …`. Written the ordinary way, a Go build
# stage and a distroless runtime, so that it builds with BuildKit or the
# legacy builder and pulls nothing it has not got (see docs/deploy.md).
#
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" -t souk:dev .
#   docker run --rm souk:dev --version
#   docker run --rm souk:dev serve users --addr :5001 --nats nats://nats:4222 --db postgres://…
#
# The image runs as nonroot (65532) and writes nothing outside /tmp, so it
# runs with a read-only root filesystem. It has no shell. /var/lib/souk, an
# empty directory of 65532's, is where a volume for the keyring goes
# (compose.yaml): Docker seeds a new named volume with it, owner included.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# .git is not in the build context (.dockerignore), so the go command cannot
# stamp the revision: VERSION says what this build is, for `souk --version`.
ARG VERSION=
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/souk ./cmd/souk \
 && /out/souk --version \
 && install -d -m 0700 /out/var-lib-souk

FROM gcr.io/distroless/static:nonroot
ARG VERSION=
LABEL org.opencontainers.image.title="souk" \
      org.opencontainers.image.description="Souk: an online shop's backend as Go microservices" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/souk /usr/local/bin/souk
# The keyring's directory, 65532's alone: a named volume mounted here starts
# as this (a keyring made in it by `souk secrets init` is 65532's, mode 0600).
COPY --from=build --chown=65532:65532 /out/var-lib-souk /var/lib/souk
USER 65532:65532
# SQLite files (souk up, or serve without --db) go under the working
# directory; give it a volume, or pass --db postgres://….
WORKDIR /tmp
# users, catalog, inventory, payments, orders; the gateway.
EXPOSE 5001 5002 5003 5004 5005 8080
ENTRYPOINT ["/usr/local/bin/souk"]
CMD ["--help"]
