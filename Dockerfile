# syntax=docker/dockerfile:1
# The syntax line pins a Dockerfile frontend that supports `RUN --mount=type=cache` (BuildKit;
# the default builder since Docker 23, and what `docker compose build` uses).
#
# One image for the whole system: the `shop` binary runs any service (`shop serve checkout|cart|
# inventory`), the demo and the operator tools. docker-compose.yml starts it three times.
#
#   docker build -t shop:local .
#   docker run --rm shop:local --help

# ---------------------------------------------------------------------------------------------
# Builder
# ---------------------------------------------------------------------------------------------
# The workspace uses edition 2024 and is developed on rustc 1.95: build with that same version
# so a clean build here resolves and compiles exactly as it does on the dev/CI machines.
# Bookworm, to match the runtime stage's glibc (a binary linked against a newer glibc than the
# runtime's fails to start).
FROM rust:1.95-bookworm AS builder

WORKDIR /src

# sqlx's `query!` macros would try to reach a database at compile time; there is none in a
# build sandbox. Offline mode makes them use a committed `.sqlx/` cache instead, and is a no-op
# for the `query_as` + `FromRow` style that needs neither.
ENV SQLX_OFFLINE=true

# The whole workspace: cargo needs every member's manifest to load the workspace, even when
# building only `-p shop`, and the crates embed their migrations at compile time
# (`sqlx::migrate!`). `.dockerignore` keeps `target/` and `.git/` out of the context.
COPY . .

# Cache mounts keep the crates.io download/index and the incremental build between image
# builds, so a source change recompiles the workspace crates, not the ~400 dependencies.
# `sharing=locked` serialises concurrent builds on the same cache instead of letting them race.
# A cache mount is not part of the image, so the binary is copied out of it within the same RUN.
# `--locked`: build exactly the committed Cargo.lock (fails if it is out of date), as CI does.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release -p shop --locked \
    && install -D -m 0755 target/release/shop /out/shop

# ---------------------------------------------------------------------------------------------
# Runtime
# ---------------------------------------------------------------------------------------------
# Same Debian release as the builder (glibc), slim: no compiler, no shell tools beyond coreutils.
FROM debian:bookworm-slim

# ca-certificates only: the TLS stacks (rustls for reqwest/sqlx/lapin) need the system roots to
# reach a managed Postgres or an amqps:// broker. No curl: container health checks use
# `shop probe URL`, which exits 0 iff the URL answers 200.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed, non-root uid/gid (10001, above any uid a host distribution assigns to real users) so
# volume ownership and Kubernetes `runAsUser`/`runAsNonRoot` policies can rely on it. No home
# directory and no login shell: the process needs neither.
RUN groupadd --system --gid 10001 shop \
    && useradd --system --uid 10001 --gid shop --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin shop

COPY --from=builder /out/shop /usr/local/bin/shop

# The demo reads `data/online-retail/online_retail.csv.gz` relative to the working directory.
# The README travels with the data: it carries the CC BY 4.0 attribution the licence requires
# wherever the data set is shipped. Owned by root and read-only for `shop`: nothing writes here.
WORKDIR /app
COPY data/online-retail/ /app/data/online-retail/

# Numeric USER (not the name) so a runtime can verify "non-root" without reading /etc/passwd.
USER 10001:10001

# checkout, cart, inventory (CHECKOUT_ADDR / CART_ADDR / INVENTORY_ADDR choose the bind
# address; bind 0.0.0.0 inside a container). Documentation only: publishing is done at run time.
EXPOSE 8081 8082 8083

# Exec form: `shop` is PID 1 and receives SIGTERM from `docker stop` directly (no shell in
# between), so it must handle SIGTERM itself to drain and exit within the stop grace period.
# No HEALTHCHECK here: the port depends on which service the container runs; compose sets it.
ENTRYPOINT ["shop"]
CMD ["--help"]
