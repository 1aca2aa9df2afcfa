# One image with every Hangar binary; the Kubernetes manifests pick the process by command.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bins
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/hangar /src/target/release/command-api /src/target/release/query-api \
     /src/target/release/projectors /src/target/release/mqtt-bridge /usr/local/bin/
USER 65534
EXPOSE 6789
CMD ["/usr/local/bin/hangar", "serve"]
