#!/usr/bin/env bash
# Every PEX at the floor (benchmark, not a test): a read-only seed started by `pexinit run`
# as an arbitrary uid on "another kernel" (setarch --uname-2.6), for every layout and pex
# version, against the floor (pex's own venv of the same app, its python importing the
# entry point directly). All commands run alternating, round by round (benches/alternate.py).
#
#   benches/layouts.sh              # build fixtures (PyPI once), measure, append to docs/BENCHMARKS.md
#   RUNS=30 benches/layouts.sh
#   NO_APPEND=1 benches/layouts.sh
#
# App: cowsay 6.1 (`-t moo`), built by pex 2.1.137, 2.20.3, 2.27.1 and 2.105.2 as zipapp,
# --layout packed, --layout loose and --venv, with /usr/bin/python3.11. The shipped build
# (scripts/build-release) is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
bench_init "$PWD/target/bench-layouts"
need setarch apt-get install -y util-linux
need setpriv apt-get install -y util-linux
RUNS=${RUNS:-15}
VERSIONS=(2.1.137 2.20.3 2.27.1 2.105.2)
LAYOUTS=(zipapp packed loose venv)

PEXES=()
for v in "${VERSIONS[@]}"; do
    for layout in "${LAYOUTS[@]}"; do
        out=$WORK/cowsay-$v-$layout.pex
        build_pex "$v" "$layout" "$out" cowsay==6.1 -c cowsay
        chmod -R a+rX "$out" # pex makes packed and loose PEX files 0700
        PEXES+=("$out")
    done
done

# One read-only seed holding every PEX, as an image layer would.
SEED=$WORK/seed
if [ ! -e "$SEED/.pexinit-seed.json" ]; then
    chmod -R u+w "$SEED" 2>/dev/null || true
    rm -rf "$SEED"
    "$PEXINIT" seed --pex-root "$SEED" --python $PY "${PEXES[@]}" >/dev/null
    chmod -R a-w "$SEED"
fi
# The floor: pex's own container recipe (a venv made by PEX_TOOLS), entry point imported.
FLOOR_VENV=$WORK/floor-venv
[ -x "$FLOOR_VENV/bin/python" ] || env -i PATH=$PATH PEX_ROOT=$WORK/build-root PEX_TOOLS=1 \
    $PY "$WORK/cowsay-2.105.2-venv.pex" venv --compile "$FLOOR_VENV" >/dev/null

mkdir -p "$WORK/tmp" && chmod 1777 "$WORK/tmp"
NODE="setarch x86_64 --uname-2.6 setpriv --reuid 123456 --regid 0 --clear-groups env -i PATH=/usr/bin:/bin HOME=/ TMPDIR=$WORK/tmp"
HF=(-n "floor (pex's venv: python -I -c import entry)"
    "env -i PATH=/usr/bin:/bin $FLOOR_VENV/bin/python -I -c 'from cowsay.__main__ import cli; cli()' -t moo")
for pex in "${PEXES[@]}"; do
    name=$(basename "$pex" .pex)
    HF+=(-n "${name#cowsay-}" "$NODE $PEXINIT run --seed $SEED --python $PY -- $pex -t moo")
done
# Every row must have taken the fast path: a bootstrap row would not be what is claimed.
for pex in "${PEXES[@]}"; do
    $NODE "$PEXINIT" -v run --seed "$SEED" --python $PY -- "$pex" -t moo 2>&1 >/dev/null |
        grep 'fast path: exec' >/dev/null || { echo "no fast path for $pex" >&2; exit 1; }
done
alternate layouts "${HF[@]}"

{
    echo
    echo "### Every layout from a read-only seed — $(date -u +%Y-%m-%d) ($(nproc) cores, $(uname -r))"
    echo "cowsay 6.1 \`-t moo\`, /usr/bin/python3.11; one seed holding all ${#PEXES[@]} PEX files, \`chmod -R a-w\`; each row is \`pexinit run --seed\` as uid 123456:0 with HOME=/ under \`setarch x86_64 --uname-2.6\` (the shipped build). Floor: \`PEX_TOOLS=1 app.pex venv --compile\`'s python importing the entry point. benches/alternate.py, $RUNS rounds + 3 warm-up runs, medians (ms)."
    echo
    echo "| pex, layout | median ms | × floor |"
    echo "|---|---|---|"
    rows "$WORK/layouts.json" "$(median "$WORK/layouts.json" 0 17)"
    "$PY" -c 'import json,sys
r = json.load(open(sys.argv[1]))["results"]
floor = r[0]["median"]
worst = max(x["median"] for x in r[1:]) / floor
print()
print("Worst row / floor: **%.2f×**." % worst)' "$WORK/layouts.json"
    echo
    echo "Command: \`RUNS=$RUNS benches/layouts.sh\`"
} >"$WORK/section.md"
finish_section "Every PEX at the floor" 'A read-only seed started by `pexinit run` on another kernel as an arbitrary uid, per pex version and layout, against pex'"'"'s own venv recipe.'
