# syntax=docker/dockerfile:1
# The container image: docker build -t fargate-health-monitor:0.1.0 .
# deploy/image/build.sh builds the same contents without a container engine (README "Install").

# Build with the Rust toolchain on Debian 12, the glibc the runtime image carries.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin fargate-health-monitor \
    && mkdir /state

# Run on distroless cc (glibc, libgcc, CA certificates, /etc/passwd with nonroot 65532, no shell).
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="fargate-health-monitor" \
      org.opencontainers.image.description="Watches the health of Amazon EKS Fargate profiles: Prometheus metrics and alerts when issues open, change or resolve" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/fargate-health-monitor/fargate-health-monitor" \
      org.opencontainers.image.url="https://github.com/fargate-health-monitor/fargate-health-monitor"
COPY --from=build /src/target/release/fargate-health-monitor /usr/local/bin/fargate-health-monitor
COPY deploy/image/config.toml /etc/fargate-health-monitor/config.toml
COPY LICENSE /usr/share/doc/fargate-health-monitor/LICENSE
# The state file's directory: mount a volume here to keep it across restarts.
COPY --from=build --chown=65532:65532 --chmod=0700 /state /var/lib/fargate-health-monitor
USER 65532:65532
WORKDIR /
EXPOSE 9877
ENTRYPOINT ["/usr/local/bin/fargate-health-monitor"]
CMD ["run", "--config", "/etc/fargate-health-monitor/config.toml"]
