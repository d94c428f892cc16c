# syntax=docker/dockerfile:1.6
# Multi-stage build of quorumd: compile in the Rust image, ship the binary
# alone on Debian slim. Migrations are embedded in the binary (sqlx::migrate!).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target-docker \
    CARGO_TARGET_DIR=/src/target-docker cargo build --release --locked -p quorumd --bin quorumd \
    && cp /src/target-docker/release/quorumd /usr/local/bin/quorumd

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/quorumlog quorumlog
COPY --from=build /usr/local/bin/quorumd /usr/local/bin/quorumd
USER quorumlog
WORKDIR /var/lib/quorumlog
# 7000 internal RPC, 8080 gateway HTTP, 9100 node /metrics
EXPOSE 7000 8080 9100
ENTRYPOINT ["quorumd"]
CMD ["cluster", "--gateway", "0.0.0.0:8080"]
