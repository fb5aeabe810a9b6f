# syntax=docker/dockerfile:1
# Build and tag: docker build -t crypto-market-exporter:0.1.0 .  (docs: README.md "Container image")
#
# Build stage: release binary. Dependencies are cached by BuildKit cache mounts
# (cargo registry and target dir), not by a stub-source layer: a stub list kept
# by hand broke the build once when Cargo.toml gained a target. .ci/image-build
# replays the COPY and RUN steps below in a scratch directory.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin crypto-market-exporter \
 && cp target/release/crypto-market-exporter ./crypto-market-exporter

# Runtime: distroless (glibc, CA certificates, no shell), non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/crypto-market-exporter /usr/local/bin/crypto-market-exporter
USER nonroot:nonroot
EXPOSE 9795
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/crypto-market-exporter", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/crypto-market-exporter"]
