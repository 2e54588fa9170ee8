# syntax=docker/dockerfile:1
#
# payguard's container image: one static binary (musl) on distroless, running as uid 65532
# with nothing else in the image to exploit.
#
#   docker build -t payguard:0.1.0 .
#   openssl rand -hex 24 > admin-token && openssl rand -hex 32 > journal-key
#   docker run --rm --read-only -p 127.0.0.1:9090:9090 \
#     -v "$PWD/admin-token:/etc/payguard/admin-token:ro" \
#     -v "$PWD/journal-key:/etc/payguard/journal-key:ro" payguard:0.1.0
#   curl -s 127.0.0.1:9090/readyz
#
# The default config (deploy/base/config.toml) binds the proxy to 127.0.0.1:8080, so only a
# process sharing the container's network namespace reaches it: the app in the same pod, or
# `docker run --network container:<payguard>` locally. It reads the admin token and the
# journal key from files beside it, which Kubernetes mounts from the Secret `payguard` (the
# files must be readable by uid 65532). In Kubernetes see deploy/README.md.
# payguard drains in-flight requests for 30s after SIGTERM: stop it with `docker stop -t 45`
# (Docker's default is 10s).

# Rust stable, at least the crate's minimum (1.90). bookworm (Debian 12) matches the runtime
# image below and the musl-tools version pinned in the build stage: move all three together.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build

# ring (rustls' crypto) and mimalloc (the binary's allocator) compile C, so the musl target
# needs musl-gcc. There is no OpenSSL to link: TLS is rustls, and the CA roots are compiled in
# (webpki-roots).
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl

# Every cargo command below builds for musl: a static binary (crt-static is that target's
# default) that needs no libc in the runtime image.
ENV CARGO_BUILD_TARGET=x86_64-unknown-linux-musl \
    CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_TERM_COLOR=never

WORKDIR /src

# Dependencies first, from the manifest and lock file alone: this layer is rebuilt only when
# they change, not on every source edit. Stub sources let cargo compile every dependency; the
# stubs' own build records are then removed so the real sources below always rebuild.
COPY Cargo.toml Cargo.lock ./
# The workspace's other member, the provider double, which `payguard demo` runs in-process.
COPY crates ./crates
RUN cargo fetch --locked \
    && mkdir -p src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin payguard \
    && rm -rf src \
        target/x86_64-unknown-linux-musl/release/payguard \
        target/x86_64-unknown-linux-musl/release/deps/payguard-* \
        target/x86_64-unknown-linux-musl/release/deps/libpayguard-* \
        target/x86_64-unknown-linux-musl/release/.fingerprint/payguard-*

# The sources, then the binary. The image's default config is validated by the binary just
# built, beside placeholders for the two files of the Secret that the pod mounts beside it
# (they stay in this build stage), and the store's directory is prepared for the runtime
# stage (owned by 65532 there).
COPY src ./src
COPY deploy/base/config.toml ./deploy/base/config.toml
RUN cargo build --release --locked --bin payguard \
    && install -D -m 0555 target/x86_64-unknown-linux-musl/release/payguard /out/payguard \
    && /out/payguard --version \
    && install -D -m 0444 deploy/base/config.toml /tmp/check/config.toml \
    && printf 'placeholder-admin-token-0123456789\n' > /tmp/check/admin-token \
    && printf '%064d\n' 0 > /tmp/check/journal-key \
    && /out/payguard check --config /tmp/check/config.toml \
    && install -d -m 0750 /out/var/lib/payguard

# distroless/static: CA certificates, tzdata and /etc/passwd with nonroot (65532), no shell and
# no package manager.
FROM gcr.io/distroless/static-debian12:nonroot

LABEL org.opencontainers.image.title="payguard" \
      org.opencontainers.image.description="A sidecar that makes calls to a payment API safe to retry" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /out/payguard /payguard
# The embedded idempotency store ([idempotency] path = /var/lib/payguard/idempotency.redb):
# the one place payguard writes, so the root filesystem can be mounted read-only.
COPY --from=build --chown=65532:65532 /out/var/lib/payguard /var/lib/payguard
# A working default; Kubernetes mounts its ConfigMap over /etc/payguard. Owned by root, only
# readable by payguard.
COPY deploy/base/config.toml /etc/payguard/config.toml

USER 65532:65532

VOLUME ["/etc/payguard", "/var/lib/payguard"]

# 8080: the proxy, for the app (on 127.0.0.1 in the default config); 9090: /healthz, /readyz
# and /metrics.
EXPOSE 8080 9090

# No HEALTHCHECK: distroless has no shell or curl to run one, and Kubernetes ignores it anyway.
# The kubelet probes /healthz (liveness) and /readyz (startup, readiness) on port 9090 itself:
# see deploy/base/deployment.yaml.
ENTRYPOINT ["/payguard"]
CMD ["run", "--config", "/etc/payguard/config.toml"]
