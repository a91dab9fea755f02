#!/usr/bin/env bash
# Every PEX at the floor (benchmark, not a test): a read-only seed started by `pexinit run`
# as an arbitrary uid on "another kernel" (setarch --uname-2.6), for every layout and pex
# version, against the floor (pex's own venv of the same app, its python importing the
# entry point directly). The commands of one app run alternating, round by round
# (benches/alternate.py).
#
#   benches/layouts.sh              # build fixtures (PyPI once), measure, append to docs/BENCHMARKS.md
#   RUNS=30 benches/layouts.sh
#   NO_APPEND=1 benches/layouts.sh
#
# Apps: cowsay 6.1 (`-t moo`) and "bigapp" (benches/startup.sh's: requests rich boto3
# click attrs jinja2 pyyaml packaging typing-extensions, 22 wheels, every one pinned below),
# each built by pex 2.1.137, 2.20.3, 2.27.1 and 2.105.2 as zipapp, --layout packed,
# --layout loose and --venv, with /usr/bin/python3.11. The shipped build
# (scripts/build-release) is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
# Python as a container image has it: this machine's /usr/lib/python3/dist-packages holds
# Debian's python packages and .pth files, whose processing costs every non-venv python
# start ~5 ms (a zipapp run by pex too, so the launcher replays it); a venv, the floor,
# never reads them. The script runs in a private mount namespace where that directory
# is an empty tmpfs (set KEEP_DIST_PACKAGES=1 to measure with the host's).
DIST_PACKAGES=/usr/lib/python3/dist-packages
if [ -z "${KEEP_DIST_PACKAGES:-}" ] && [ -z "${LAYOUTS_IN_NS:-}" ] && [ -d $DIST_PACKAGES ]; then
    exec unshare --mount --propagation private env LAYOUTS_IN_NS=1 "$0" "$@"
fi
if [ -n "${LAYOUTS_IN_NS:-}" ]; then
    mount -t tmpfs -o ro,mode=0755 tmpfs $DIST_PACKAGES
fi
. benches/lib.sh
bench_init "$PWD/target/bench-layouts"
need setarch apt-get install -y util-linux
need setpriv apt-get install -y util-linux
need unzip apt-get install -y unzip
RUNS=${RUNS:-15}
VERSIONS=(2.1.137 2.20.3 2.27.1 2.105.2)
LAYOUTS=(zipapp packed loose venv)
APPS=(cowsay bigapp)
# bigapp's whole resolve (pex 2.105.2, 2026-12-02), pinned so that every pex version
# builds the same 22 wheels.
BIGAPP_REQS=(attrs==26.1.0 boto3==1.44.8 botocore==1.44.8 certifi==2026.10.19.post1
    charset-normalizer==3.5.3 click==8.5.1 idna==3.20 jinja2==3.1.6 jmespath==1.1.0
    markdown-it-py==4.3.0 markupsafe==3.0.4 mdurl==0.1.2 packaging==26.4 pygments==2.21.0
    python-dateutil==2.9.0.post0 pyyaml==6.0.4 requests==2.34.2 rich==15.0.0
    s3transfer==0.19.3 six==1.17.0 typing-extensions==4.16.0 urllib3==2.8.0)

write_bigapp_src "$WORK/src"

declare -A RUN_ARGS=([cowsay]="-t moo" [bigapp]="")
declare -A ENTRY=([cowsay]="from cowsay.__main__ import cli; cli()" [bigapp]="from bigapp.main import main; main()")

PEXES=()
for app in "${APPS[@]}"; do
    case $app in
        cowsay) args=(cowsay==6.1 -c cowsay) ;;
        bigapp) args=("${BIGAPP_REQS[@]}" -D "$WORK/src" -e bigapp.main:main) ;;
    esac
    for v in "${VERSIONS[@]}"; do
        for layout in "${LAYOUTS[@]}"; do
            out=$WORK/$app-$v-$layout.pex
            build_pex "$v" "$layout" "$out" "${args[@]}"
            chmod -R a+rX "$out" # pex makes packed and loose PEX files 0700
            PEXES+=("$out")
        done
    done
done
NWHEELS=$(unzip -p "$WORK/bigapp-2.105.2-venv.pex" PEX-INFO | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["distributions"]))')

# One read-only seed holding every PEX, as an image layer would (made again when the set
# of PEX files or the pexinit binary changed).
SEED=$WORK/seed
seed_key() { sha256sum <"$PEXINIT"; printf '%s\n' "${PEXES[@]}"; }
if [ ! -e "$SEED/.pexinit-seed.json" ] || ! seed_key | cmp -s - "$WORK/seed.pexes"; then
    chmod -R u+w "$SEED" 2>/dev/null || true
    rm -rf "$SEED"
    "$PEXINIT" seed --pex-root "$SEED" --python $PY "${PEXES[@]}" >/dev/null
    chmod -R a-w "$SEED"
    seed_key >"$WORK/seed.pexes"
fi

mkdir -p "$WORK/tmp" && chmod 1777 "$WORK/tmp"
NODE="setarch x86_64 --uname-2.6 setpriv --reuid 123456 --regid 0 --clear-groups env -i PATH=/usr/bin:/bin HOME=/ TMPDIR=$WORK/tmp"
for app in "${APPS[@]}"; do
    # The floor: pex's own container recipe (a venv made by PEX_TOOLS), entry point imported.
    FLOOR_VENV=$WORK/floor-venv-$app
    [ -x "$FLOOR_VENV/bin/python" ] || env -i PATH=$PATH PEX_ROOT=$WORK/build-root PEX_TOOLS=1 \
        $PY "$WORK/$app-2.105.2-venv.pex" venv --compile "$FLOOR_VENV" >/dev/null
    # Started the way the rows are (same uid, kernel release and process wrappers), so
    # the ratio is pexinit's cost alone.
    # A second anchor: the same venv started as pex's recipe image starts it (its `pex`
    # script, which pex's --venv bootstrap execs too).
    HF=(-n "floor (pex's venv: python -I -c import entry)"
        "$NODE $FLOOR_VENV/bin/python -I -c '${ENTRY[$app]}' ${RUN_ARGS[$app]}"
        -n "pex's recipe as its image runs it (venv/pex)"
        "$NODE $FLOOR_VENV/pex ${RUN_ARGS[$app]}")
    APP_PEXES=()
    for v in "${VERSIONS[@]}"; do
        for layout in "${LAYOUTS[@]}"; do APP_PEXES+=("$WORK/$app-$v-$layout.pex"); done
    done
    for pex in "${APP_PEXES[@]}"; do
        name=$(basename "$pex" .pex)
        HF+=(-n "${name#"$app"-}" "$NODE $PEXINIT run --seed $SEED --python $PY -- $pex ${RUN_ARGS[$app]}")
    done
    # Every row must have taken the fast path: a bootstrap row would not be what is claimed.
    for pex in "${APP_PEXES[@]}"; do
        $NODE "$PEXINIT" -v run --seed "$SEED" --python $PY -- "$pex" ${RUN_ARGS[$app]} 2>&1 >/dev/null |
            grep 'fast path: exec' >/dev/null || { echo "no fast path for $pex" >&2; exit 1; }
    done
    alternate "layouts-$app" "${HF[@]}"
done

{
    echo
    echo "### Every layout from a read-only seed — $(date -u +%Y-%m-%d) ($(nproc) cores, $(uname -r))"
    echo "cowsay 6.1 \`-t moo\`; bigapp: $NWHEELS wheels (requests rich boto3 click attrs jinja2 pyyaml packaging typing-extensions, all pinned), imports them and prints; /usr/bin/python3.11; one seed holding all ${#PEXES[@]} PEX files, \`chmod -R a-w\`; each row is \`pexinit run --seed\` as uid 123456:0 with HOME=/ under \`setarch x86_64 --uname-2.6\` (the shipped build). Floor: \`PEX_TOOLS=1 app.pex venv --compile\`'s python importing the entry point, started by the same uid and wrappers. $( [ -n "${LAYOUTS_IN_NS:-}" ] && echo "/usr/lib/python3/dist-packages masked by an empty tmpfs, as in a container's python (KEEP_DIST_PACKAGES=1 keeps the host's)." ) benches/alternate.py, $RUNS rounds + 3 warm-up runs, one run per app, medians (ms)."
    for app in "${APPS[@]}"; do
        J=$WORK/layouts-$app.json
        echo
        echo "| $app: pex, layout | median ms | × floor |"
        echo "|---|---|---|"
        rows "$J" "$(median "$J" 0 17)"
        "$PY" -c 'import json,sys
r = json.load(open(sys.argv[1]))["results"]
floor, recipe = r[0]["median"], r[1]["median"]
worst = max(x["median"] for x in r[2:])
print()
print("%s: worst row / floor: **%.2f×**; worst row / the recipe as run: **%.2f×**." % (sys.argv[2], worst / floor, worst / recipe))' "$J" $app
    done
    echo
    echo "Command: \`RUNS=$RUNS benches/layouts.sh\`"
} >"$WORK/section.md"
finish_section "Every PEX at the floor" 'A read-only seed started by `pexinit run` on another kernel as an arbitrary uid, per pex version and layout, against pex'"'"'s own venv recipe.'
