#!/usr/bin/env bash
# Seeded start-up benchmark (not a test): how fast a PEX starts from a `pexinit seed`
# compared with pex's own paths and with the floor (the venv's python importing the
# entry point directly). All variants of one app run alternating, round by round, in one
# run (benches/alternate.py).
#
#   benches/startup.sh              # build fixtures (needs PyPI once), measure, append to docs/BENCHMARKS.md
#   RUNS=30 benches/startup.sh      # more runs per command
#   NO_APPEND=1 benches/startup.sh
#
# Apps: cowsay (1 wheel) and "bigapp" (requests rich boto3 click attrs jinja2 pyyaml
# packaging typing-extensions: >= 20 wheels), built by pex 2.105.2 as zipapp and --venv,
# run with /usr/bin/python3.11 and PATH=/usr/bin:/bin.
#
# Seeds are made with `pexinit seed`; the seeded rows time `pexinit run --seed` itself,
# pexinit's own start-up included. The shipped (static, LTO) build is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
bench_init "$PWD/target/bench-startup"
need unzip apt-get install -y unzip
need setpriv apt-get install -y util-linux
V=2.105.2
RUNS=${RUNS:-20}

build() { # NAME ARGS... -> $WORK/NAME-{zipapp,venv}.pex
    local name=$1; shift
    for mode in zipapp venv; do
        build_pex $V $mode "$WORK/$name-$mode.pex" "$@"
    done
}

write_bigapp_src "$WORK/src"
build cowsay cowsay -c cowsay
build bigapp requests rich boto3 click attrs jinja2 pyyaml packaging typing-extensions \
    -D "$WORK/src" -e bigapp.main:main
NWHEELS=$(unzip -p "$WORK/bigapp-venv.pex" PEX-INFO | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["distributions"]))')

seed() { # DIR PEX...
    local dir=$1; shift
    [ -e "$dir/.pexinit-seed.json" ] && return
    rm -rf "$dir"
    "$PEXINIT" seed --pex-root "$dir" --python $PY "$@" >/dev/null
}

# A TMPDIR of our own: the read-only case's farm goes there.
mkdir -p "$WORK/tmp" && chmod 1777 "$WORK/tmp"
RUN_ENV="env -i PATH=/usr/bin:/bin HOME=/tmp TMPDIR=$WORK/tmp"

RESULTS=()
for app in cowsay bigapp; do
    if [ $app = cowsay ]; then
        ARGS1=-t$'\x1f'moo; ARGS="-t moo"; FLOOR="from cowsay.__main__ import cli; cli()"
    else
        ARGS1=""; ARGS=""; FLOOR="from bigapp.main import main; main()"
    fi
    Z=$WORK/$app-zipapp.pex; VP=$WORK/$app-venv.pex
    SEED=$WORK/seed-$app
    seed "$SEED" "$Z" "$VP"
    WARM=$WORK/warm-$app
    env -i PATH=$PATH PEX_ROOT=$WARM $PY "$Z" $ARGS >/dev/null
    env -i PATH=$PATH PEX_ROOT=$WARM $PY "$VP" $ARGS >/dev/null
    rm -rf "$WORK/tools-$app"
    env -i PATH=$PATH PEX_ROOT=$WARM PEX_TOOLS=1 $PY "$VP" venv "$WORK/tools-$app" >/dev/null
    # The seeded venv, for the floor: where doctor says the fast path execs.
    VENV=$($RUN_ENV "$PEXINIT" doctor --json --seed "$SEED" -- "$VP" |
        "$PY" -c 'import json,sys; print(json.load(sys.stdin)["seed"]["fast_path"]["Ok"]["venv"])')
    # Read-only seed: a copy owned by root, chmod a-w, run as uid 65534 through its farm.
    RO=$WORK/ro-$app
    if [ ! -e "$RO/.pexinit-seed.json" ]; then
        seed "$RO" "$Z" "$VP"; chmod -R a-w "$RO"
    fi
    AS_ROOT="setpriv --reuid 0 --regid 0 --clear-groups"
    AS_NOBODY="setpriv --reuid 65534 --regid 65534 --clear-groups"
    CMDS=(
        "env -i PATH=/usr/bin:/bin PEX_ROOT=$WORK/cold-$app $PY $Z $ARGS"
        "env -i PATH=/usr/bin:/bin PEX_ROOT=$WARM $PY $Z $ARGS"
        "env -i PATH=/usr/bin:/bin PEX_ROOT=$WARM $PY $VP $ARGS"
        "env -i PATH=/usr/bin:/bin $WORK/tools-$app/pex $ARGS"
        "$RUN_ENV $PEXINIT run --seed $SEED -- $VP $ARGS"
        "$AS_ROOT $RUN_ENV $PEXINIT run --seed $SEED -- $VP $ARGS"
        "$AS_NOBODY $RUN_ENV $PEXINIT run --seed $RO -- $VP $ARGS"
        "env -i PATH=/usr/bin:/bin $VENV/bin/python -I -c '$FLOOR' $ARGS"
    )
    NAMES=("cold zipapp" "warm zipapp" "warm --venv PEX" "PEX_TOOLS venv (<dir>/pex)"
        "pexinit run --seed (fast path)" "pexinit run --seed, writable seed, via setpriv"
        "pexinit run --seed, read-only seed as uid 65534 (farm)" "floor (venv python -I -c import entry)")
    HF=()
    for i in "${!CMDS[@]}"; do HF+=(-n "${NAMES[$i]}" "${CMDS[$i]}"); done
    alternate $app --prepare "rm -rf $WORK/cold-$app" "${HF[@]}"
    RESULTS+=("$app")
done

KERNEL=$(uname -r)
{
    echo
    echo "### Seeded start-up — $(date -u +%Y-%m-%d) ($(nproc) cores, $KERNEL)"
    echo "pex $V, /usr/bin/python3.11. cowsay: 1 wheel, \`-t moo\`. bigapp: $NWHEELS wheels (requests rich boto3 click attrs jinja2 pyyaml packaging typing-extensions), imports them and prints."
    echo "benches/alternate.py: $RUNS rounds + 3 warm-up runs per command, alternating round by round in a shuffled order, medians (ms). The cold zipapp's cache is removed before every command (untimed; harmless for the others)."
    for app in "${RESULTS[@]}"; do
        J=$WORK/$app.json
        echo
        echo "| $app | median ms | × floor |"
        echo "|---|---|---|"
        rows "$J" "$(median "$J" 7)"
        "$PY" -c 'import json,sys
r = [x["median"] for x in json.load(open(sys.argv[1]))["results"]]
print()
print("fast path / floor = **%.2f×**; cold zipapp / fast path = **%.1f×**; warm zipapp / fast path = %.1f×; read-only (farm) / writable seed = **%.2f×**" % (r[4]/r[7], r[0]/r[4], r[1]/r[4], r[6]/r[5]))' "$J"
    done
    echo
    echo "Command: \`RUNS=$RUNS benches/startup.sh\`"
} >"$WORK/section.md"
finish_section "Seeded start-up" 'How fast a PEX starts from a `pexinit seed` (fast path: exec the seeded venv, no zip bootstrap) against pex'"'"'s own paths and the floor.'
