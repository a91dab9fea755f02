#!/usr/bin/env bash
# Time to the first HTTP 200 of a gunicorn + Flask app in podman (benchmark, not a test):
# pexinit's recipe against pex's own, from `podman run -d` to the first 200 on a published
# port, the images alternating round by round (benches/first_answer.py).
#
#   benches/http_start.sh              # build the app and images (PyPI and Debian's mirror once), measure, append to docs/BENCHMARKS.md
#   RUNS=21 benches/http_start.sh
#   NO_APPEND=1 benches/http_start.sh
#
# App: tests/differential_support/real_apps/flask (flask==3.1.3, gunicorn==27.0.1), one
# default zipapp built by pex 2.105.2 with --include-tools (pex's recipe needs PEX_TOOLS),
# served by `gunicorn webapp:app --bind 0.0.0.0:8000 --workers 2 --no-control-socket`.
# The images are built with `podman build` (no Docker daemon) on the tests' local Debian
# base (scripts/make-base-images: bookworm + /usr/bin/python3.11):
#
#   A   pexinit: the shipped binary (scripts/build-release) in /usr/local/bin, app.pex in
#       /app, `pexinit seed --pex-root /opt/pex-root` at build time (the shape of the
#       repo's Dockerfile and examples/docker/Dockerfile); ENTRYPOINT pexinit run --
#       /app/app.pex.
#   B   pex: `PEX_TOOLS=1 python3.11 app.pex venv --scope=deps --compile /app` and
#       `--scope=srcs` in two build stages, both copied into the final image (pex's
#       documented recipe); ENTRYPOINT /app/pex.
#   B'  B with the venv's mtimes truncated to whole seconds in each stage: a .pyc records
#       its source's mtime truncated to the second, and podman build's (buildah 1.28)
#       `COPY --from` rounds mtimes to the nearest second, so about half of B's .pyc files
#       are stale in the image (and, the root being read-only, compiled again at every
#       start). B' is pex's recipe at its best.
#
# All run as `podman run -d --read-only --user 123456:0 --passwd=false -p 127.0.0.1:PORT:8000`.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
bench_init "$PWD/target/bench-http"
export PATH=/usr/bin:/bin:/usr/sbin:/sbin # runc, iptables
INSTALL="scripts/install-test-deps (apt-get install -y podman runc catatonit mmdebstrap)"
need podman "$INSTALL"
need runc "$INSTALL"
need mmdebstrap "$INSTALL"
export CONTAINERS_CONF=$PWD/tests/podman/containers.conf
RUNS=${RUNS:-11}
V=2.105.2
IMAGE_PYTHON=/usr/bin/python3.11
APP_ARGS="webapp:app --bind 0.0.0.0:8000 --workers 2 --no-control-socket"

# The tests' base images (tests/containers_support: tagged with a hash of the script that
# makes them), made when missing; the build image comes along, the tests use it.
BASE_HASH=$("$PY" -c 'import hashlib,struct
rel = b"scripts/make-base-images"; data = open(rel, "rb").read()
print(hashlib.sha256(rel + b"\0" + struct.pack("<Q", len(data)) + data).hexdigest()[:16])')
BASE=localhost/pexinit-test/python:bookworm-$BASE_HASH
podman image exists "$BASE" ||
    scripts/make-base-images "$BASE" "localhost/pexinit-test/rust-build:bookworm-$BASE_HASH"

APP=$WORK/app.pex
build_pex $V zipapp "$APP" flask==3.1.3 gunicorn==27.0.1 \
    -D "$PWD/tests/differential_support/real_apps/flask" -c gunicorn --include-tools

CTX=$WORK/context
rm -rf "$CTX" && mkdir -p "$CTX"
cp "$PEXINIT" "$CTX/pexinit"
cp "$APP" "$CTX/app.pex"
cat >"$CTX/pexinit.Containerfile" <<END
ARG BASE
FROM \${BASE}
COPY pexinit /usr/local/bin/pexinit
RUN install -d -o 10001 -g 0 -m 0775 /home/app
ENV PEXINIT_PYTHON=$IMAGE_PYTHON HOME=/home/app
COPY app.pex /app/app.pex
ARG SOURCE_DATE_EPOCH=0
RUN pexinit seed --pex-root /opt/pex-root --python "\${PEXINIT_PYTHON}" /app/app.pex
ENV PEXINIT_SEED=/opt/pex-root
USER 10001:0
ENTRYPOINT ["pexinit", "run", "--", "/app/app.pex"]
END
pex_recipe() { # [COMMAND run after each venv is made]
    cat <<END
ARG BASE
FROM \${BASE} AS deps
COPY app.pex /app.pex
RUN PEX_TOOLS=1 $IMAGE_PYTHON /app.pex venv --scope=deps --compile /app${1:+ && $1}

FROM \${BASE} AS srcs
COPY app.pex /app.pex
RUN PEX_TOOLS=1 $IMAGE_PYTHON /app.pex venv --scope=srcs --compile /app${1:+ && $1}

FROM \${BASE}
COPY --from=deps /app /app
COPY --from=srcs /app /app
ENTRYPOINT ["/app/pex"]
END
}
pex_recipe >"$CTX/pex.Containerfile"
TRUNCATE='import os; [os.utime(p, (int(st.st_atime), int(st.st_mtime))) for d, _, fs in os.walk("/app") for p in [os.path.join(d, f) for f in fs] if not os.path.islink(p) for st in [os.stat(p)]]'
pex_recipe "$IMAGE_PYTHON -c '$TRUNCATE'" >"$CTX/pex-whole-seconds.Containerfile"

image() { # NAME -> tag of the image built from CTX/NAME.Containerfile (kept per inputs)
    local hash
    hash=$(cat "$CTX/$1.Containerfile" "$CTX/pexinit" "$CTX/app.pex" <(echo "$BASE") | sha256sum)
    local tag=localhost/pexinit-bench/http-$1:${hash:0:16}
    if ! podman image exists "$tag"; then
        podman build --quiet --layers=false --build-arg "BASE=$BASE" \
            -f "$CTX/$1.Containerfile" --tag "$tag" "$CTX" >/dev/null
        # Keep the two newest older builds (other checkouts may be measuring with theirs).
        podman images --format '{{.Repository}}:{{.Tag}}' --filter "reference=${tag%:*}" |
            { grep -vxF "$tag" || true; } | tail -n +3 | while read -r old; do
                podman rmi "$old" >/dev/null 2>&1 || true
            done
    fi
    echo "$tag"
}
A=$(image pexinit)
B=$(image pex)
B2=$(image pex-whole-seconds)

# A must start through pexinit's fast path, and every image must serve the app.
RO="--rm --read-only --user 123456:0 --passwd=false"
FAST=$(podman run $RO --entrypoint pexinit "$A" -v run -- /app/app.pex --version 2>&1) ||
    { echo "$FAST" >&2; exit 1; }
grep -q 'fast path: exec' <<<"$FAST" || { echo "no fast path in image A:"$'\n'"$FAST" >&2; exit 1; }
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
name=pexinit-bench-http-check-$$
trap 'podman rm --force --time 0 "$name" >/dev/null 2>&1 || true' EXIT
for image in "$A" "$B" "$B2"; do
    podman run -d --name "$name" --read-only --user 123456:0 --passwd=false \
        -p "127.0.0.1:$PORT:8000" "$image" $APP_ARGS >/dev/null
    body=$("$PY" -c 'import sys, time, urllib.request
for _ in range(600):
    try:
        print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()); break
    except OSError:
        time.sleep(0.1)' "http://127.0.0.1:$PORT/")
    podman rm --force --time 0 "$name" >/dev/null
    grep -q '"hello"' <<<"$body" || { echo "$image did not serve the app: $body" >&2; exit 1; }
done
# How many modules each image compiles from source at start because their .pyc is stale
# (gunicorn --check-config loads the app).
stale() { grep -c 'bytecode is stale' || true; }
STALE_A=$(podman run $RO -e PYTHONVERBOSE=1 "$A" $APP_ARGS --check-config 2>&1 | stale)
STALE_B=$(podman run $RO --entrypoint /app/bin/python "$B" -I -v /app/pex $APP_ARGS --check-config 2>&1 | stale)
STALE_B2=$(podman run $RO --entrypoint /app/bin/python "$B2" -I -v /app/pex $APP_ARGS --check-config 2>&1 | stale)

RUN="podman run -d --name {name} --read-only --user 123456:0 --passwd=false -p 127.0.0.1:$PORT:8000"
"$PY" benches/first_answer.py --warmup 1 --runs "$RUNS" --url "http://127.0.0.1:$PORT/" \
    --export-json "$WORK/http.json" \
    -n "A: pexinit (seeded zipapp, pexinit run -- /app/app.pex)" "$RUN $A $APP_ARGS" \
    -n "B: pex (PEX_TOOLS venv --scope=deps/srcs --compile, /app/pex)" "$RUN $B $APP_ARGS" \
    -n "B': pex, venv mtimes truncated to whole seconds (valid .pyc)" "$RUN $B2 $APP_ARGS" \
    >"$WORK/http.log" 2>&1 || { cat "$WORK/http.log"; exit 1; }

J=$WORK/http.json
{
    echo
    echo "### Time to first HTTP 200 in podman — $(date -u +%Y-%m-%d) ($(nproc) cores, $(uname -r))"
    echo "gunicorn 27.0.1 + flask 3.1.3 (2 workers), one zipapp (pex $V, \`--include-tools\`); podman $(podman version --format '{{.Client.Version}}') with runc, \`--read-only --user 123456:0\`, port published on 127.0.0.1. From \`podman run -d\` to the first 200 of GET /, polled every 5 ms; the containers' own start (State.StartedAt) to that 200 in its own column. benches/first_answer.py: $RUNS rounds + 1 warm-up start per image, the order rotating every round, medians (ms). Stale .pyc: modules compiled from source when the app loads (read-only: every start)."
    echo
    echo "| image | median ms | × B' | from StartedAt, median ms | stale .pyc |"
    echo "|---|---|---|---|---|"
    "$PY" -c 'import json,sys
r = json.load(open(sys.argv[1]))["results"]
for x, stale in zip(r, sys.argv[2:]):
    print("| %s | %.1f | %.2f× | %.1f | %s |" % (x["command"], x["median"]*1000, x["median"]/r[2]["median"], x["median_from_started"]*1000, stale))
print()
print("A / B'"'"' = **%.2f×** from `podman run -d` (target ≤ 1.05×), %.2f× from the containers'"'"' start; A / B = %.2f×, %.2f×." % (
    r[0]["median"]/r[2]["median"], r[0]["median_from_started"]/r[2]["median_from_started"],
    r[0]["median"]/r[1]["median"], r[0]["median_from_started"]/r[1]["median_from_started"]))' \
        "$J" "$STALE_A" "$STALE_B" "$STALE_B2"
    echo
    echo "Command: \`RUNS=$RUNS benches/http_start.sh\`"
} >"$WORK/section.md"
finish_section "Time to first HTTP 200 in a container" 'A gunicorn + Flask app started by `pexinit run` from a seeded zipapp against pex'"'"'s own container recipe (a `PEX_TOOLS` venv), both in podman, read-only, as an arbitrary uid.'
