# syntax=docker/dockerfile:1
#
# rollout-breaker processor image.
#
#   docker build -t rollout-breaker .
#   docker run --rm -v "$PWD/processor.toml:/etc/rollout-breaker/processor.toml:ro" \
#       -p 9464:9464 rollout-breaker                      # = rollout-breaker run
#   docker run --rm rollout-breaker simulate --help       # any other subcommand
#
# The build stage runs scripts/build-release, the same cargo command CI can run without Docker.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# librdkafka is compiled from source by rdkafka-sys (configure + make; zlib from the system),
# with OpenSSL (the `tls` feature: SSL, SASL_SSL, SCRAM; libssl-dev is in this base image).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_TARGET_DIR=/src/target CARGO_FEATURES=tls scripts/build-release \
    && cp /src/target/release/rollout-breaker /usr/local/bin/rollout-breaker

FROM debian:bookworm-slim AS runtime
# curl: the HEALTHCHECK; ca-certificates and libssl3: TLS to brokers (the system CAs are
# librdkafka's default trust store); zlib: librdkafka's compression.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin rollout-breaker
COPY --from=build /usr/local/bin/rollout-breaker /usr/local/bin/rollout-breaker
# A default config so the image starts without a mount; mount your own over it.
COPY deploy/config/processor.toml /etc/rollout-breaker/processor.toml
ENV ROLLOUT_BREAKER_CONFIG=/etc/rollout-breaker/processor.toml \
    ROLLOUT_BREAKER_HTTP_LISTEN=0.0.0.0:9464 \
    ROLLOUT_BREAKER_LOG_FORMAT=json
USER 10001:10001
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:9464/healthz || exit 1
ENTRYPOINT ["rollout-breaker"]
CMD ["run"]
