# syntax=docker/dockerfile:1
# A small production image of cartsource: built in a Rust image, run as a non-root user
# in a slim Debian with nothing but the binary and CA certificates.
#   docker build -t cartsource .
#   docker run -p 8080:8080 -e JWT_SECRET=... -e DATABASE_URL=postgres://... cartsource

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p api --bin cartsource \
    && install -D target/release/cartsource /out/cartsource

FROM debian:bookworm-slim
# ca-certificates stays unpinned on purpose: it must follow the security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/cartsource --create-home cartsource
COPY --from=build /out/cartsource /usr/local/bin/cartsource
USER 10001
WORKDIR /var/lib/cartsource
ENV CARTSOURCE_ENV=production \
    CARTSOURCE_DATA_DIR=/var/lib/cartsource \
    LISTEN_ADDR=0.0.0.0:8080 \
    LOG_FORMAT=json
# Probes: GET /healthz (alive) and /readyz (database and projections), e.g. httpGet in Kubernetes.
EXPOSE 8080
ENTRYPOINT ["cartsource"]
CMD ["serve"]
