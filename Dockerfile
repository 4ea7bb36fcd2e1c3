# syntax=docker/dockerfile:1
# ordergate in a container: built with the Rust toolchain, run from
# debian:bookworm-slim as an unprivileged user.
#
#   docker build --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD) -t ordergate .
#   docker run -p 8080:8080 \
#     -v $PWD/config/ordergate.toml:/etc/ordergate/ordergate.toml:ro \
#     -v ordergate-data:/var/lib/ordergate \
#     -e ORDERGATE_UPSTREAM__URL=http://orders.internal:8092 \
#     -e ORDERGATE_SERVER__PUBLIC_BASE_URL=https://api.example.com \
#     ordergate

FROM rust:1.88-bookworm AS build
WORKDIR /src
# The dependencies first, in their own layer, so that a change to the
# sources does not build them again.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src benches \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for b in hot_path stack redis_store; do echo 'fn main() {}' > benches/$b.rs; done \
    && cargo build --release --locked --bin ordergate \
    && rm -rf src benches
COPY build.rs ./
COPY src src
COPY benches benches
# No .git in the build context: the commit comes as a build argument.
ARG GIT_COMMIT=unknown
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin ordergate \
    && cp target/release/ordergate /ordergate

FROM debian:bookworm-slim
# No packages beyond the base: TLS roots are built in (webpki-roots), and the
# health check is the binary itself.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/ordergate \
        --create-home --shell /usr/sbin/nologin ordergate \
    && mkdir -p /etc/ordergate
COPY --from=build /ordergate /usr/local/bin/ordergate
COPY config/ordergate.toml /etc/ordergate/ordergate.toml
COPY LICENSE-MIT LICENSE-APACHE /usr/share/doc/ordergate/
# The shipped file listens on loopback and keeps its store beside itself;
# in a container the gateway listens on every interface and keeps its store
# on the volume. Any key can be set the same way (ORDERGATE_<SECTION>__<KEY>);
# the admin listener stays on loopback, where the health check asks it.
ENV ORDERGATE_SERVER__LISTEN=0.0.0.0:8080 \
    ORDERGATE_STORE__PATH=/var/lib/ordergate/owners.redb
USER ordergate
VOLUME ["/var/lib/ordergate"]
EXPOSE 8080
# SIGTERM drains requests in flight (server.drain_timeout_secs, 30 s by
# default): give `docker stop` longer than that, e.g. `--stop-timeout 40`.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["ordergate", "health", "--url", "http://127.0.0.1:9901/healthz", "--timeout-secs", "2"]
ENTRYPOINT ["ordergate"]
CMD ["--config", "/etc/ordergate/ordergate.toml"]
