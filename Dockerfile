# eventsrv container image.
#
#   docker build -t eventsrv:latest .
#   (with --build-arg VERSION=... --build-arg COMMIT=...: see the build stage)
#
# Two stages: a Go toolchain image builds one static binary, and a distroless
# image runs it. The runtime image has no shell, no package manager and no
# curl, so there is very little in it to attack or to patch; the health check
# is therefore a subcommand of the binary itself (`eventsrv healthcheck`).
# deploy/README.md describes the compose files and the tokens/certs volumes.

# ---------------------------------------------------------------------------
# Build stage
# ---------------------------------------------------------------------------
# Pinned to the 1.26 minor, the same one go.mod names (`go 1.26`): a newer minor
# could change the compiler or the standard library under us, and an older one
# cannot build the module at all. Patch releases (security fixes) still arrive
# with each rebuild. Bookworm matches the Debian 12 base of the runtime image.
FROM golang:1.26-bookworm AS build

# Build with the toolchain in this image, never one fetched at build time
# because go.mod asks for a newer one: a build must fail loudly instead. (The
# official image sets this already; it is repeated here so that it stays true
# if the base image changes.)
ENV GOTOOLCHAIN=local

WORKDIR /src

# Dependencies first, in their own layer: this layer is rebuilt only when
# go.mod or go.sum change, not on every source edit.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

COPY . .

# CGO_ENABLED=0: a fully static binary, since the runtime image has no C
#   library to link against.
# -trimpath: no build-machine paths in the binary (reproducible builds, and
#   stack traces show module paths instead of /src/...).
# -ldflags "-s -w": drop the symbol table and DWARF data (a smaller image);
#   panics still print full stack traces, which use a separate table.
# Only ./cmd/eventsrv is built; ./cmd/eventsrv-bench is a load generator for
# development and has no place in the service image.
# VERSION and COMMIT: .git stays out of the build context, so the binary
# cannot read them itself; `eventsrv version` and /admin/status show them:
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#                --build-arg COMMIT=$(git rev-parse HEAD) -t eventsrv .
ARG VERSION=
ARG COMMIT=
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags="-s -w -X main.buildVersion=${VERSION} -X main.buildCommit=${COMMIT}" \
      -o /out/eventsrv ./cmd/eventsrv

# Folders for the runtime image. The distroless image has no shell, so `RUN
# mkdir` is impossible there: make them here and COPY them across with the
# right owner. Mode 0700 because they hold secrets (the tokens file and the TLS
# key); COPY --from keeps the mode.
RUN mkdir -p /out/app/tokens /out/app/certs \
 && chmod 0700 /out/app/tokens /out/app/certs

# ---------------------------------------------------------------------------
# Runtime stage
# ---------------------------------------------------------------------------
# distroless/static: CA certificates, /etc/passwd with a `nonroot` user, time
# zone data, and nothing else. The :nonroot tag runs as uid/gid 65532 by
# default; USER below says so again explicitly.
FROM gcr.io/distroless/static-debian12:nonroot

# The service's defaults (TOKENS_FILE=tokens/tokens, TLS_CERT_FILE=
# certs/cert.crt, TLS_KEY_FILE=certs/cert.key) are relative to the working
# directory, so /app makes them /app/tokens/tokens and /app/certs/cert.*.
WORKDIR /app

# The binary stays owned by root (COPY's default) and is not writable by the
# user the service runs as.
COPY --from=build /out/eventsrv /app/eventsrv

# The service must be able to write /app/tokens: on first start it creates
# tokens/tokens with one random token. The folders only matter when nothing is
# mounted over them, or for a new named volume, which Docker fills from the
# image with the same owner; a bind mount (as in docker-compose.yml) brings the
# host folder's own owner and mode instead: see deploy/README.md.
COPY --from=build --chown=65532:65532 /out/app/tokens /app/tokens
COPY --from=build --chown=65532:65532 /out/app/certs /app/certs

# Logs go to a collector in production, which wants one JSON object a line.
# docker-compose.development.yml switches back to text.
ENV LOG_FORMAT=json

# 8080: listen server (POST /event, GET /healthz).
# 8081: broadcast server (WebSocket at any path, GET /healthz, SSE at /events).
EXPOSE 8080 8081

# Secrets live outside the image: the tokens file and the TLS key pair are
# mounted at run time and never baked in (.dockerignore keeps them out of the
# build context too).
VOLUME ["/app/tokens", "/app/certs"]

# Numeric, so that Kubernetes' runAsNonRoot and similar checks can verify it
# without reading /etc/passwd.
USER 65532:65532

# Exec form: there is no shell to run the shell form. The subcommand GETs
# http(s)://127.0.0.1:$LISTEN_PORT/healthz (it reads the same environment as
# the server, so a changed LISTEN_PORT or HTTPS_ENABLE=true is followed) and
# exits 0 on 200, 1 otherwise. --start-period gives the first start time to
# create the tokens file and bind the ports before failures count.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/app/eventsrv", "healthcheck"]

# SIGTERM is Docker's default already; stated because the service's graceful
# shutdown (close 1001 to every WebSocket subscriber, then exit 0 within
# SHUTDOWN_TIMEOUT) is wired to it. The stop timeout (compose's
# stop_grace_period) must be longer than SHUTDOWN_TIMEOUT, or Docker sends
# SIGKILL halfway through.
STOPSIGNAL SIGTERM

# Exec form, so the binary is PID 1 and receives SIGTERM itself (Go installs
# its own signal handlers, so PID 1's default of ignoring signals does not
# apply). Subcommands work as arguments: `docker run --rm eventsrv token`.
ENTRYPOINT ["/app/eventsrv"]
