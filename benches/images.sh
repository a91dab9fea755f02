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

SECTION=$WORK/section.md
KERNEL=$(uname -r)
{
    echo "### Images: bytes and uploads — $(date +%F) (2 cores, $KERNEL), taken while other builds ran"
    echo "Apps: default zipapps built by pex $V: cowsay (\`cowsay==6.1 -c cowsay\`) and numpy (\`numpy==2.1.3\` plus a 3-line module, \`-e npapp.main:main\`). Bytes of the app's layers (pexinit's own layer apart); sizes are deterministic."
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
} >"$SECTION"
cat "$SECTION"
