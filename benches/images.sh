#!/usr/bin/env bash
# Image bytes, registry uploads and layer writing time of pexinit's image recipe (a
# benchmark, not a test), against pex's own container recipe.
#
#   benches/images.sh              # builds the apps (PyPI once), measures, appends to docs/BENCHMARKS.md
#   ROUNDS=9 benches/images.sh
#   NO_APPEND=1 benches/images.sh
#
# Apps, default zipapps built by pex 2.105.2:
#   cowsay   cowsay==6.1 -c cowsay
#   numpy    numpy==2.1.3 -D SRC -e npapp.main:main, SRC/npapp/main.py printing a word and
#            numpy.arange(6).sum() (3 lines of code)
#
# pexinit's recipe (tests/oci_support/recipe.rs), on an empty base image (umoci new):
#   pexinit seed --slim --pex-root /opt/pex-root --python /usr/bin/python3.11 app.pex
#   pexinit layer --normalize-modes -o pexinit.tar.gz PEXINIT:/usr/local/bin/pexinit
#   pexinit layer -o deps.tar.gz --split code.tar.gz /opt/pex-root
#   pexinit image append ... --layer pexinit.tar.gz --layer deps.tar.gz --layer code.tar.gz
# The seed is made in a private mount namespace whose /opt is $WORK/opt (the host's
# /opt/pex-root is left alone), then layered from there to /opt/pex-root.
#
# pex's recipe: `pex-tools app.pex venv --scope=deps --compile /app`, then `--scope=srcs`
# into a new /app, each directory one layer (as two build stages copied into the image).
# /app is made on the host for the time of each venv (the script stops if it exists) and
# moved into $WORK. Its bytes as a registry stores them: the two directories as
# uncompressed layers (pexinit layer --compression none), compressed by `skopeo copy
# --dest-compress --dest-compress-format gzip` as `podman push` does; and, for the same
# compressor on both sides, the two directories written by `pexinit layer` (gzip -6).
#
# Measures:
#   1. bytes of both recipes' app layers (pexinit's own layer apart: every app shares it);
#   2. bytes uploaded by the second push to a local docker-registry (127.0.0.1, its
#      access log names the blobs each push uploaded) after the numpy app's module prints
#      another word, against the code layer's size;
#   3. wall time of `pexinit layer` of the numpy seed against `tar -cf - DIR | gzip -6`
#      of the same tree, ROUNDS alternating rounds (default 5), medians.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
bench_init "$PWD/target/bench-images"
export PATH=/usr/bin:/bin:/usr/sbin:/sbin
INSTALL="scripts/install-test-deps (apt-get install -y umoci skopeo docker-registry util-linux)"
need umoci "$INSTALL"
need skopeo "$INSTALL"
need docker-registry "$INSTALL"
need unshare "$INSTALL"
[ "$(id -u)" -eq 0 ] || { echo "run as root: the seed is made in a mount namespace, pex's venv at /app" >&2; exit 1; }
ROUNDS=${ROUNDS:-5}
V=2.105.2
SEED=/opt/pex-root
HOST_SEED=$WORK/opt/pex-root # the seed as the host sees it (in_opt)
export SOURCE_DATE_EPOCH=1700000000
ENTRYPOINT='["/usr/local/bin/pexinit","run","--python","/usr/bin/python3.11","--"]'

PEX_TOOLS=$(dirname "$(pex_for $V)")/pex-tools
size() { stat -c %s "$1"; }

# The apps: cowsay, and numpy with a module printing WORD (moo for 1 and 3, baa for 2).
npapp() { # WORD -> path of the pex
    local src=$WORK/npapp-$1-src
    mkdir -p "$src/npapp"
    : >"$src/npapp/__init__.py"
    printf 'import numpy\n\n\ndef main():\n    print("%s", numpy.arange(6).sum())\n' "$1" >"$src/npapp/main.py"
    build_pex $V zipapp "$WORK/npapp-$1.pex" numpy==2.1.3 -D "$src" -e npapp.main:main >&2
    echo "$WORK/npapp-$1.pex"
}
build_pex $V zipapp "$WORK/cowsay.pex" cowsay==6.1 -c cowsay >&2
NP_MOO=$(npapp moo)
NP_BAA=$(npapp baa)

# An empty base image.
BASE=$WORK/base
if [ ! -e "$BASE/index.json" ]; then
    rm -rf "$BASE"
    umoci init --layout "$BASE"
    umoci new --image "$BASE:base"
fi

# pexinit's layer, the same for every app.
LAYERS=$WORK/layers
mkdir -p "$LAYERS"
"$PEXINIT" layer --normalize-modes -o "$LAYERS/pexinit.tar.gz" "$PEXINIT:/usr/local/bin/pexinit" >/dev/null

# Runs ARGS with $WORK/opt as /opt (a private mount namespace).
in_opt() {
    mkdir -p "$WORK/opt"
    unshare --mount --propagation private sh -c 'mount --bind "$0" /opt && exec "$@"' "$WORK/opt" "$@"
}

ours() { # NAME PEX RUN_ARGS PRINTS: seed, layers, image $WORK/image-NAME:app
    local name=$1 app=$2 args=$3 prints=$4 build=$WORK/build-$1 out
    rm -rf "$build" "$HOST_SEED"
    mkdir -p "$build"
    cp "$app" "$build/app.pex"
    in_opt "$PEXINIT" seed --slim --pex-root "$SEED" --python "$PY" "$build/app.pex" >/dev/null
    # The slim seed starts the app without its .pex file.
    out=$(in_opt "$PEXINIT" run --seed "$SEED" --python "$PY" -- /app/app.pex $args 2>&1) ||
        { echo "$out" >&2; exit 1; }
    grep -q "$prints" <<<"$out" || { echo "$name did not print $prints: $out" >&2; exit 1; }
    rm -rf "$build/seed"
    mv "$HOST_SEED" "$build/seed"
    "$PEXINIT" layer -o "$build/deps.tar.gz" --split "$build/code.tar.gz" "$build/seed:$SEED" >/dev/null
    if tar tzf "$build/deps.tar.gz" | grep -q '\.pex$' || tar tzf "$build/code.tar.gz" | grep -q '\.pex$'; then
        echo "a .pex file is in $name's layers" >&2
        exit 1
    fi
    rm -rf "$WORK/image-$name"
    cp -a "$BASE" "$WORK/image-$name"
    "$PEXINIT" image append --layout "$WORK/image-$name" --ref base --tag app \
        --layer "$LAYERS/pexinit.tar.gz" --layer "$build/deps.tar.gz" --layer "$build/code.tar.gz" \
        --entrypoint "$ENTRYPOINT" --cmd '["/app/app.pex"]' --env "PEXINIT_SEED=$SEED" \
        --user 123456:0 >/dev/null
}

theirs() { # NAME PEX: pex's venvs in $WORK/pex-NAME/{deps,srcs}, their layers, pushed bytes
    local name=$1 app=$2 dir=$WORK/pex-$1 scope
    rm -rf "$dir" && mkdir -p "$dir"
    rm -rf "$WORK/image-pex-$name" "$WORK/pushed-pex-$name"
    cp -a "$BASE" "$WORK/image-pex-$name"
    local append=("$PEXINIT" image append --layout "$WORK/image-pex-$name" --ref base --tag app)
    for scope in deps srcs; do
        mkdir /app 2>/dev/null || { echo "/app exists: pex's recipe writes its venv there" >&2; exit 1; }
        rmdir /app
        env -i PATH=$PATH PEX_ROOT=$WORK/tools-root "$PEX_TOOLS" "$app" venv --scope=$scope --compile /app >/dev/null ||
            { rm -rf /app; exit 1; }
        mv /app "$dir/$scope"
        "$PEXINIT" layer --compression none -o "$dir/$scope.tar" "$dir/$scope:/app" >/dev/null
        "$PEXINIT" layer -o "$dir/$scope.tar.gz" "$dir/$scope:/app" >/dev/null
        append+=(--layer "$dir/$scope.tar")
    done
    "${append[@]}" --entrypoint '["/app/pex"]' >/dev/null
    skopeo copy --quiet --dest-compress --dest-compress-format gzip \
        "oci:$WORK/image-pex-$name:app" "oci:$WORK/pushed-pex-$name:app"
}

pushed_sizes() { # LAYOUT -> sizes of its last two layers, as skopeo's manifest says
    skopeo inspect --raw "oci:$1:app" |
        "$PY" -c 'import json,sys; print(*[l["size"] for l in json.load(sys.stdin)["layers"][-2:]])'
}

ours cowsay "$WORK/cowsay.pex" "-t Moo" Moo
ours numpy "$NP_MOO" "" "moo 15"
theirs cowsay "$WORK/cowsay.pex"
theirs numpy "$NP_MOO"

# 2. Pushes to a local registry: the numpy app, then the same app printing another word.
REG=$WORK/registry
rm -rf "$REG" && mkdir -p "$REG"
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$REG/config.yml" <<END
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $REG/storage
http:
  addr: 127.0.0.1:$PORT
END
docker-registry serve "$REG/config.yml" >"$REG/log" 2>&1 &
REG_PID=$!
trap 'kill "$REG_PID" 2>/dev/null || true' EXIT
for _ in $(seq 600); do
    "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$PORT" 2>/dev/null && break
    kill -0 "$REG_PID" 2>/dev/null || { cat "$REG/log" >&2; exit 1; }
    sleep 0.05
done

push() { # NAME -> "BLOBS BYTES MANIFEST_BYTES": what the registry log shows NAME's push uploaded
    local from
    from=$(size "$REG/log")
    skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/image-$1:app" "docker://127.0.0.1:$PORT/app:app"
    # A completed upload is a PUT .../blobs/uploads/UUID?_state=S&digest=D answered 201; S is
    # the registry's signed upload state (32 bytes of HMAC, then JSON), whose Offset is the
    # bytes received for the blob. The manifest is stored as a blob under its digest.
    "$PY" - "$REG/log" "$from" "$WORK/image-$1" "$REG/storage" <<'PY'
import base64, json, os, re, sys, urllib.parse
log, start, layout, storage = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with open(log, "rb") as f:
    f.seek(start)
    text = f.read().decode(errors="replace")
blobs = {}
for m in re.finditer(r'"PUT /v2/app/blobs/uploads/[^?]*\?(\S+) HTTP/1\.1" 201 ', text):
    q = urllib.parse.parse_qs(m.group(1))
    state = json.loads(base64.urlsafe_b64decode(q["_state"][0])[32:])
    digest = q["digest"][0]
    blob = os.path.join(layout, "blobs", *digest.split(":"))
    assert state["Offset"] == os.path.getsize(blob), (digest, state, os.path.getsize(blob))
    blobs[digest] = state["Offset"]
assert '"PUT /v2/app/manifests/app HTTP/1.1" 201 ' in text, "no manifest pushed:\n" + text
index = json.load(open(os.path.join(layout, "index.json")))
manifest = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "app")
algo, hexd = manifest["digest"].split(":")
stored = os.path.join(storage, "docker/registry/v2/blobs", algo, hexd[:2], hexd, "data")
assert os.path.getsize(stored) == manifest["size"], "the registry holds another manifest"
print(" ".join(sorted(blobs)), sum(blobs.values()), manifest["size"])
PY
}
digests() { # NAME -> the digests of its image's layers and config
    skopeo inspect --raw "oci:$WORK/image-$1:app" |
        "$PY" -c 'import json,sys; m = json.load(sys.stdin); print(*[l["digest"] for l in m["layers"]], m["config"]["digest"])'
}
read -r -a FIRST_BLOBS < <(push numpy)
ours numpy-baa "$NP_BAA" "" "baa 15"
read -r -a SECOND_BLOBS < <(push numpy-baa)
read -r -a BEFORE < <(digests numpy)
read -r -a AFTER < <(digests numpy-baa)
# [pexinit, deps, code, config]: only the code and the config moved, and only they went up.
[ "${BEFORE[0]}${BEFORE[1]}" = "${AFTER[0]}${AFTER[1]}" ] && [ "${BEFORE[2]}" != "${AFTER[2]}" ] ||
    { echo "layers other than the code changed: ${BEFORE[*]} -> ${AFTER[*]}" >&2; exit 1; }
EXPECTED=$(printf '%s\n' "${AFTER[2]}" "${AFTER[3]}" | sort | tr '\n' ' ')
[ "${SECOND_BLOBS[*]:0:2} " = "$EXPECTED" ] && [ ${#SECOND_BLOBS[@]} -eq 4 ] ||
    { echo "the second push uploaded ${SECOND_BLOBS[*]}, not the code layer and config $EXPECTED" >&2; exit 1; }
kill "$REG_PID"
wait "$REG_PID" 2>/dev/null || true

# 3. Writing the numpy seed's layer: pexinit layer against tar | gzip -6, alternating.
TREE=$WORK/build-numpy/seed
TIMES=$WORK/times.md
"$PY" - "$PEXINIT" "$TREE" "$SEED" "$WORK" "$ROUNDS" >"$TIMES" <<'PY'
import os, statistics, subprocess, sys, time
pexinit, tree, seed, work, rounds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
cases = {
    "tar -cf - DIR \\| gzip -6 (anchor)": (["sh", "-c", f'tar -C "$0" -cf - . | gzip -6 > "$1"', tree, f"{work}/t-gzip.tar.gz"], ["t-gzip.tar.gz"]),
    "pexinit layer -o OUT DIR:/opt/pex-root": ([pexinit, "layer", "-o", f"{work}/t-pexinit.tar.gz", f"{tree}:{seed}"], ["t-pexinit.tar.gz"]),
    "pexinit layer -o deps --split code DIR:/opt/pex-root (the recipe's)": (
        [pexinit, "layer", "-o", f"{work}/t-deps.tar.gz", "--split", f"{work}/t-code.tar.gz", f"{tree}:{seed}"],
        ["t-deps.tar.gz", "t-code.tar.gz"]),
}
subprocess.run(["tar", "-C", tree, "-cf", "/dev/null", "."], check=True)  # warm the page cache
files = sum(1 + len(fs) for _, _, fs in os.walk(tree))
nbytes = sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(tree) for f in fs)
times = {name: [] for name in cases}
load_before = os.getloadavg()
for _ in range(rounds):
    for name, (argv, _) in cases.items():
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times[name].append(time.perf_counter() - start)
load_after = os.getloadavg()
anchor = statistics.median(times[next(iter(cases))])
print(f"Tree: the numpy app's slim seed, {files:,} paths, {nbytes / 1e6:.1f} MB of files; {rounds} alternating rounds, medians; "
      f"{os.cpu_count()} cores, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after.")
print()
print("| command | median wall | × tar \\| gzip -6 | output bytes |")
print("|---|---|---|---|")
for name, (_, outs) in cases.items():
    med = statistics.median(times[name])
    out = sum(os.path.getsize(os.path.join(work, o)) for o in outs)
    print(f"| {name} | {med:.2f} s | {med / anchor:.2f}× | {out:,} |")
PY

SECTION=$WORK/section.md
KERNEL=$(uname -r)
{
    echo
    echo "### Images: bytes and uploads — $(date +%F) (2 cores, $KERNEL)"
    echo "Apps: default zipapps built by pex $V: cowsay (\`cowsay==6.1 -c cowsay\`) and numpy (\`numpy==2.1.3\` plus a 3-line module, \`-e npapp.main:main\`). Bytes of the app's layers (pexinit's own layer apart). pexinit's are the same on every run; pex's srcs layer moves by a few bytes from run to run (its .pyc files record the mtimes its venv step gave their sources)."
    echo
    echo "| app | pexinit: deps + code | pex's recipe as pushed (skopeo gzip): deps + srcs | pexinit / pex | pex's recipe in pexinit's gzip -6: deps + srcs | pexinit / pex |"
    echo "|---|---|---|---|---|---|"
    for name in cowsay numpy; do
        b=$WORK/build-$name d=$WORK/pex-$name
        read -r pd ps < <(pushed_sizes "$WORK/pushed-pex-$name")
        "$PY" - "$name" "$(size "$b/deps.tar.gz")" "$(size "$b/code.tar.gz")" "$pd" "$ps" \
            "$(size "$d/deps.tar.gz")" "$(size "$d/srcs.tar.gz")" <<'PY'
import sys
name, od, oc, pd, ps, gd, gs = sys.argv[1], *map(int, sys.argv[2:])
f = lambda a, b: f"{a:,} + {b:,} = **{a + b:,}**"
print(f"| {name} | {f(od, oc)} | {f(pd, ps)} | {(od + oc) / (pd + ps):.3f}× | {f(gd, gs)} | {(od + oc) / (gd + gs):.3f}× |")
PY
    done
    echo
    echo "pexinit's own layer (\`layer --normalize-modes\`, the shipped static binary): $(size "$LAYERS/pexinit.tar.gz" | "$PY" -c 'print(f"{int(input()):,}")') bytes, the same in every app's image (a registry stores it once)."
    echo
    CODE=$(size "$WORK/build-numpy-baa/code.tar.gz")
    "$PY" - "$CODE" "${FIRST_BLOBS[@]}" "--" "${SECOND_BLOBS[@]}" <<'PY'
import sys
code, rest = int(sys.argv[1]), sys.argv[2:]
cut = rest.index("--")
first, second = rest[:cut], rest[cut + 1:]
up1, man1 = int(first[-2]), int(first[-1])
up2, man2 = int(second[-2]), int(second[-1])
print("Pushes of the numpy app to a local `docker-registry` (distribution 2.8, 127.0.0.1) with "
      "`skopeo copy`; the bytes of each uploaded blob are the offset of its completed upload "
      "in the registry's log, plus the manifest:")
print()
print("| push | blobs uploaded | bytes uploaded |")
print("|---|---|---|")
print(f"| first (empty registry) | {len(first) - 2} (pexinit, deps, code, config) + manifest | {up1:,} + {man1:,} = {up1 + man1:,} |")
print(f"| second (the module prints another word) | {len(second) - 2} (code, config) + manifest | {up2:,} + {man2:,} = **{up2 + man2:,}** |")
print()
print(f"Code layer: {code:,} bytes; second push / code layer = **{(up2 + man2) / code:.2f}×** (target ≤ 1.1×).")
PY
    echo
    cat "$TIMES"
} >"$SECTION"
finish_section "Images: bytes and uploads" "$(cat <<'END'
What a registry stores and receives for pexinit's image recipe (`seed --slim`, pexinit's own
layer, the seed split into a dependency and a code layer, `image append`; see
tests/oci_support/recipe.rs) against pex's own recipe (`pex-tools app.pex venv
--scope=deps --compile /app` and `--scope=srcs`, one layer each), and how long writing the
layer takes. benches/images.sh builds both on an empty base image; pex's layers are
compressed by `skopeo copy --dest-compress --dest-compress-format gzip`, as `podman push`
does, and also by `pexinit layer` (gzip -6) so that both columns use the same compressor.
END
)"
