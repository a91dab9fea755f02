# Shared by the start-up benchmarks (startup.sh, layouts.sh). Source it from the
# repository root, after `set -euo pipefail`:
#
#   bench_init DEFAULT_WORK       builds the shipped pexinit (scripts/build-release, with the
#                                 caller's PATH: cargo), then runs with PATH=/usr/bin:/bin.
#                                 Sets PEXINIT, PY, FIXTURES and WORK ($BENCH_DIR, else
#                                 DEFAULT_WORK; created, physical path).
#   need COMMAND INSTALL...       fails, naming the install command, unless COMMAND exists
#   pex_for VERSION               the `pex` of pex VERSION (the tests' fixture venv if there
#                                 is one, else a venv in $WORK made with pip once)
#   build_pex VERSION LAYOUT OUT ARGS...
#                                 builds OUT with pex VERSION unless it exists; LAYOUT is
#                                 zipapp, packed, loose or venv; ARGS are pex's (requirements,
#                                 -c/-e, -D)
#   write_bigapp_src DIR          writes bigapp's own module to DIR/bigapp (the 22-wheel app)
#   alternate NAME ARGS...        benches/alternate.py --warmup 3 --runs $RUNS ARGS, results
#                                 in $WORK/NAME.json, its output in $WORK/NAME.log (printed
#                                 when it fails)
#   median JSON I [DIGITS]        median of command I in JSON, in ms, rounded to DIGITS (1)
#   rows JSON ANCHOR_MS           a table row per command: | command | median ms | × anchor |
#   finish_section HEADING INTRO  prints $WORK/section.md and, unless NO_APPEND is set,
#                                 appends it to docs/BENCHMARKS.md under "## HEADING"
#                                 (made, with INTRO, when missing)

need() {
    local command=$1
    shift
    command -v "$command" >/dev/null || {
        echo "$command is missing: $*" >&2
        exit 1
    }
}

bench_init() {
    # Build with the caller's PATH (cargo), then run everything with Debian's python first.
    PEXINIT=$(scripts/build-release)
    export PATH=/usr/bin:/bin
    unset PYTHONDONTWRITEBYTECODE
    PY=/usr/bin/python3.11
    [ -x "$PY" ] || { echo "$PY is missing: apt-get install -y python3.11 python3.11-venv" >&2; exit 1; }
    "$PY" -c 'import ensurepip, venv' 2>/dev/null ||
        { echo "python3.11's venv module is missing: apt-get install -y python3.11-venv" >&2; exit 1; }
    WORK=${BENCH_DIR:-$1}
    FIXTURES=$PWD/target/tmp/fixtures
    mkdir -p "$WORK"
    WORK=$(cd "$WORK" && pwd -P)
}

pex_for() { # VERSION -> path of its pex
    local venv=$FIXTURES/pex-$1
    [ -x "$venv/bin/pex" ] || venv=$WORK/pex-$1
    if [ ! -x "$venv/bin/pex" ]; then
        "$PY" -m venv "$venv" && "$venv/bin/pip" install --quiet "pex==$1"
    fi
    echo "$venv/bin/pex"
}

build_pex() { # VERSION LAYOUT OUT ARGS...
    local version=$1 layout=$2 out=$3 flags=()
    shift 3
    case $layout in
        zipapp) flags=() ;;
        venv) flags=(--venv) ;;
        *) flags=(--layout "$layout") ;;
    esac
    [ -e "$out" ] || env -i PATH=$PATH PEX_ROOT=$WORK/build-root "$(pex_for "$version")" \
        "$@" --python $PY "${flags[@]}" -o "$out"
}

alternate() { # NAME ARGS...
    local name=$1
    shift
    "$PY" benches/alternate.py --warmup 3 --runs "$RUNS" --export-json "$WORK/$name.json" \
        "$@" >"$WORK/$name.log" 2>&1 || { cat "$WORK/$name.log"; exit 1; }
}

median() { # JSON I [DIGITS]
    "$PY" -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]["median"]*1000, int(sys.argv[3])))' \
        "$1" "$2" "${3:-1}"
}

rows() { # JSON ANCHOR_MS
    "$PY" -c 'import json,sys
for r in json.load(open(sys.argv[1]))["results"]:
    print("| %s | %.1f | %.2f× |" % (r["command"], r["median"]*1000, r["median"]*1000/float(sys.argv[2])))' "$@"
}

finish_section() { # HEADING INTRO
    cat "$WORK/section.md"
    if [ -z "${NO_APPEND:-}" ]; then
        grep -q "^## $1" docs/BENCHMARKS.md || printf '\n## %s\n\n%s\n' "$1" "$2" >>docs/BENCHMARKS.md
        cat "$WORK/section.md" >>docs/BENCHMARKS.md
    fi
}

write_bigapp_src() { # DIR: bigapp's own module (imports its wheels' top packages, prints)
    mkdir -p "$1/bigapp"
    : >"$1/bigapp/__init__.py"
    cat >"$1/bigapp/main.py" <<'PY'
import boto3, requests, rich.console, click, jinja2, yaml, attr


def main():
    rich.console.Console().print("ok", requests.__version__, boto3.__version__)
PY
}
