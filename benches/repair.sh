#!/usr/bin/env bash
# Repair scan benchmark (not a test): how long `pexinit repair --dry-run` takes on a
# large, healthy, real PEX_ROOT, against `find PEX_ROOT -xtype l` (the cheapest generic
# "dangling links?" check), alternating the two in one run; medians of $ROUNDS rounds.
#
#   benches/repair.sh            # populate once (needs PyPI), measure, append to docs/BENCHMARKS.md
#   ROUNDS=21 benches/repair.sh  # more rounds
#   NO_APPEND=1 benches/repair.sh
#
# The PEX_ROOT is filled by real runs of three apps (`pex requests rich boto3 numpy`, …)
# built by pex 2.20.3 and 2.105.2, each as a zipapp and with --venv, run once each.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=$(command -v cargo)
export PATH=/usr/bin:/bin
PY=/usr/bin/python3.11
ROUNDS=${ROUNDS:-11}
WORK=${BENCH_DIR:-$PWD/target/bench-repair}
FIXTURES=$PWD/target/tmp/fixtures
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd -P)
ROOT=$WORK/pex_root
# Three apps; every PEX runs once, so each pex version installs its own wheels.
APP_REQUIREMENTS=("requests rich boto3 numpy" "pandas scipy sympy django"
    "matplotlib scikit-learn networkx sqlalchemy")
APPS=$(IFS=/; echo "${APP_REQUIREMENTS[*]}")

pex_for() { # the pex CLI of a version, from the tests' fixtures or installed here
    local v=$1 venv=$FIXTURES/pex-$1
    [ -x "$venv/bin/pex" ] || venv=$WORK/pex-$v
    if [ ! -x "$venv/bin/pex" ]; then
        "$PY" -m venv "$venv" && "$venv/bin/pip" install --quiet "pex==$v"
    fi
    echo "$venv/bin/pex"
}

if [ ! -e "$WORK/.populated" ]; then
    rm -rf "$ROOT"
    for v in 2.20.3 2.105.2; do
        pex=$(pex_for $v)
        for i in "${!APP_REQUIREMENTS[@]}"; do
            requirements=${APP_REQUIREMENTS[$i]}
            for mode in zipapp venv; do
                flags=(); [ $mode = venv ] && flags=(--venv)
                app=$WORK/app$i-$v-$mode.pex
                [ -e "$app" ] || PEX_ROOT=$WORK/build-root "$pex" $requirements --python "$PY" "${flags[@]}" -o "$app"
                modules=${requirements//scikit-learn/sklearn}
                env -i PATH=$PATH PEX_ROOT="$ROOT" "$PY" "$app" -c "import ${modules// /, }"
            done
        done
    done
    touch "$WORK/.populated"
fi

# The scanner: `pexinit repair` once the CLI has it, else the library through the
# release build of the repair tests' child entry point (same code, same output).
"$CARGO" build --release --quiet
TARGET=${CARGO_TARGET_DIR:-target}
if "$TARGET/release/pexinit" repair --help >/dev/null 2>&1; then
    scan=("$TARGET/release/pexinit" repair --dry-run --json "$ROOT")
    scan_name="pexinit repair --dry-run --json $ROOT"
else
    bin=$("$CARGO" test --release --test repair --no-run --message-format=json 2>/dev/null |
        "$PY" -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("executable") and m.get("target", {}).get("name") == "repair": print(m["executable"])')
    scan=(env PEXINIT_TEST_REPAIR_ROOT="$ROOT" PEXINIT_TEST_REPAIR_DRY_RUN=1 "$bin" --ignored --exact repair_child --nocapture)
    scan_name="pexinit::pex::repair::repair(PEX_ROOT, dry_run) via the release test binary (repair_child)"
fi

entries=$(find "$ROOT" | wc -l)
links=$(find "$ROOT" -type l | wc -l)
[ "$entries" -ge 50000 ] || echo "warning: only $entries entries in $ROOT" >&2
# The cache must be healthy: a dry run exits 0 and find lists no dangling link.
"${scan[@]}" >/dev/null || { echo "repair --dry-run failed on a healthy cache" >&2; exit 1; }
[ -z "$(find "$ROOT" -xtype l)" ] || { echo "dangling links in $ROOT" >&2; exit 1; }

now() { date +%s%N; }
find_ms=() scan_ms=()
for _ in $(seq "$ROUNDS"); do
    t=$(now); find "$ROOT" -xtype l >/dev/null; find_ms+=($(( ($(now) - t) / 1000 )))
    t=$(now); "${scan[@]}" >/dev/null; scan_ms+=($(( ($(now) - t) / 1000 )))
done
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
mf=$(median "${find_ms[@]}") ms=$(median "${scan_ms[@]}")
ratio=$("$PY" -c "print(f'{$ms / $mf:.2f}')")

report=$(cat <<MD

### Repair scan — $(date -u +%Y-%m-%d) ($(nproc) cores, $(uname -r))
PEX_ROOT: ${#APP_REQUIREMENTS[@]} apps (\`$APPS\`) built by pex 2.20.3 and 2.105.2, zipapp and --venv, run once each:
$entries paths, $links symlinks. Medians of $ROUNDS alternating rounds (µs):

| command | median | all rounds |
|---|---|---|
| \`find PEX_ROOT -xtype l\` | $mf | ${find_ms[*]} |
| $scan_name | $ms | ${scan_ms[*]} |

repair / find = **$ratio×**. Command: \`ROUNDS=$ROUNDS benches/repair.sh\`
MD
)
echo "$report"
if [ -z "${NO_APPEND:-}" ]; then
    mkdir -p docs
    grep -q '^## Repair scan' docs/BENCHMARKS.md 2>/dev/null || printf '\n## Repair scan\n' >> docs/BENCHMARKS.md
    echo "$report" >> docs/BENCHMARKS.md
fi
