# syntax=docker/dockerfile:1
# Build stage: release binary, dependencies cached in their own layer.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > benches/exposition.rs \
 && cargo build --release --locked && rm -rf src benches
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

# Runtime: distroless (glibc, CA certificates, no shell), non-root.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/crypto-market-exporter /usr/local/bin/crypto-market-exporter
USER nonroot:nonroot
EXPOSE 9795
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/crypto-market-exporter", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/crypto-market-exporter"]
