# pexinit's own image: a Python base with the static pexinit binary as ENTRYPOINT.
#
#   podman build -t pexinit .            (or docker build)
#   podman run --rm -v "$PWD/app.pex:/app/app.pex:ro" pexinit /app/app.pex
#
# Build arguments:
#   RUST_IMAGE    the build stage: any image with cargo >= 1.85 (edition 2024) and a C
#                 compiler; the musl target and musl-tools are added when missing
#   PYTHON_IMAGE  the runtime base: the Python your PEX files run with
#   PYTHON        that base's interpreter; exported as PEXINIT_PYTHON, so `pexinit seed`
#                 and `pexinit run` use the same one (pex's venv hashes include its path)
#   UID           the numeric, non-root user the image runs as (any other uid works too:
#                 `--user 123456:0`, OpenShift, Kubernetes runAsUser)
ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${RUST_IMAGE} AS build
# The Rust musl target and musl-gcc (the zstd C library is compiled for musl), unless
# the build image already has them.
RUN set -eu; \
    target="$(uname -m)-unknown-linux-musl"; \
    [ -d "$(rustc --print sysroot)/lib/rustlib/$target" ] || rustup target add "$target"; \
    command -v musl-gcc >/dev/null || { \
        apt-get update -q && \
        apt-get install -y -q --no-install-recommends musl-tools && \
        rm -rf /var/lib/apt/lists/*; }
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The binary scripts/build-release ships: release profile (LTO, stripped), statically
# linked against musl, so it needs nothing from the runtime image (no libc).
# The cache mounts keep downloaded crates and compiled dependencies between builds.
RUN --mount=type=cache,target=/src/target \
    --mount=type=cache,target=/usr/local/cargo/registry \
    set -eu; \
    target="$(uname -m)-unknown-linux-musl"; \
    cargo build --release --locked --target "$target"; \
    install -D -m 0755 "target/$target/release/pexinit" /out/pexinit; \
    /out/pexinit --version

FROM ${PYTHON_IMAGE}
ARG PYTHON=/usr/local/bin/python3.11
ARG UID=10001
COPY --from=build /out/pexinit /usr/local/bin/pexinit
# A HOME any uid of group 0 can write: OpenShift and Kubernetes run images as arbitrary
# uids without a passwd entry, in group 0. (With a read-only root filesystem pexinit
# falls back to a private HOME under /tmp and says so.)
RUN install -d -o "${UID}" -g 0 -m 0775 /home/app
ENV PEXINIT_PYTHON=${PYTHON} HOME=/home/app
USER ${UID}:0
ENTRYPOINT ["pexinit", "run", "--"]
