# syntax=docker/dockerfile:1
#
# tenantgate container image.
#
#   docker build -t tenantgate .
#   docker run --rm -p 6432:6432 -p 9187:9187 \
#       -v "$PWD/tenantgate.toml:/etc/tenantgate/tenantgate.toml:ro" \
#       -e TENANTGATE_UPSTREAM_PASSWORD=... tenantgate
#
# The mounted config must set `[server] listen = "0.0.0.0:6432"` and
# `admin_listen = "0.0.0.0:9187"` (the HEALTHCHECK below calls /health/live on 9187), and
# should use `[security] event_log = "stdout"` so security events reach the container log.
# Validate a config with the image itself:
#   docker run --rm -v "$PWD/tenantgate.toml:/etc/tenantgate/tenantgate.toml:ro" tenantgate \
#       check-config --config /etc/tenantgate/tenantgate.toml

# ---- build -----------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src

# Only what the release binary needs (benches and the workspace's crates: Cargo.toml declares
# them, so they must exist). --no-default-features: the image has no PostgreSQL for `demo`.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY crates ./crates

# --locked: build exactly the reviewed Cargo.lock. The cache mounts keep the registry and the
# target directory between builds; the binary is copied out of the mounted target.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --bin tenantgate \
    && install -m 0755 target/release/tenantgate /usr/local/bin/tenantgate

# ---- runtime ---------------------------------------------------------------------------------
FROM debian:bookworm-slim

# A fixed, unprivileged uid/gid (Kubernetes `runAsNonRoot` can check a numeric USER).
RUN groupadd --system --gid 10001 tenantgate \
    && useradd --system --uid 10001 --gid tenantgate --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin tenantgate \
    && mkdir -p /etc/tenantgate /var/log/tenantgate \
    && chown tenantgate:tenantgate /var/log/tenantgate

# Upstream TLS verification uses the compiled-in Mozilla roots (or `[upstream] tls_ca`), so no
# ca-certificates package is needed; the healthcheck is `tenantgate healthcheck`, so no curl.
COPY --from=builder /usr/local/bin/tenantgate /usr/local/bin/tenantgate

USER 10001:10001

# 6432: PostgreSQL clients; 9187: health and metrics (`[server] admin_listen`).
EXPOSE 6432 9187

HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["tenantgate", "healthcheck", "--url", "http://127.0.0.1:9187/health/live", "--timeout", "3"]

# SIGTERM drains in-flight transactions for `[server] shutdown_timeout` seconds (default 30):
# give `docker stop` / Kubernetes a longer grace period than that.
STOPSIGNAL SIGTERM

ENTRYPOINT ["tenantgate"]
CMD ["serve", "--config", "/etc/tenantgate/tenantgate.toml"]
