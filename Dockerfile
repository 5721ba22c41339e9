# Multi-stage build: compile in the Rust image, run in a small Debian image as a non-root user.
#   docker build -t sift .
#   docker run -p 443:8443 -v $PWD/deploy:/etc/sift:ro -v sift-state:/var/lib/sift sift
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo install --locked --path crates/sift --root /out

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/sift --shell /usr/sbin/nologin sift \
    && mkdir -p /var/lib/sift /etc/sift \
    && chown sift:sift /var/lib/sift
COPY --from=build /out/bin/sift /usr/local/bin/sift
USER sift
WORKDIR /var/lib/sift
ENV SIFT_LOG_FORMAT=json
VOLUME ["/var/lib/sift"]
# Listen on an unprivileged port inside the container (listen = ":8443" in sift.toml).
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/sift"]
CMD ["serve", "--config", "/etc/sift/sift.toml"]
