#!/bin/sh
# Launch overhead of `pexinit run --init always` (environment normalization included)
# against tini and dumb-init, each starting /bin/true.
#
#   benches/launch.sh [LAUNCHES]        (default 200)
#
# One run alternates the commands round by round (direct /bin/true, pexinit as
# `cargo build --release` makes it, pexinit linked statically, tini -s, dumb-init), so
# drift and neighbours' load hit all of them alike. For every launch it records wall time
# (spawn to reap) and CPU time (user + sys of the process and everything it reaped, from
# wait4). Overhead = median of a command - median of direct /bin/true, all from the same
# run. Peak RSS comes from `/usr/bin/time -v` (median of 20 runs each).
#
# pexinit runs with its defaults: no config file (/etc/pexinit.yaml absent), HOME a
# physical writable directory, PEX_ROOT derived as HOME/.cache/pex (created by the first
# launch), so normalization is included in its figures.
#
# Installs tini, dumb-init and time with apt-get when they are missing, builds pexinit
# with `cargo build --release` (glibc, dynamic: for comparison) and with
# scripts/build-release (static musl: the shipped binary), honouring CARGO_TARGET_DIR.
# Results go to stdout; docs/BENCHMARKS.md quotes them.
set -eu

LAUNCHES=${1:-200}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=/usr/bin/python3.11

missing=""
[ -x /usr/bin/tini ] || missing="$missing tini"
[ -x /usr/bin/dumb-init ] || missing="$missing dumb-init"
[ -x /usr/bin/time ] || missing="$missing time"
if [ -n "$missing" ]; then
    echo "installing:$missing" >&2
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y $missing >&2
fi
[ -x "$PYTHON" ] || { echo "needs $PYTHON: apt-get install -y python3.11" >&2; exit 1; }

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release --quiet)
# The shipped binary (static musl, LTO) and the plain dynamic glibc build for comparison.
PEXINIT_STATIC=$("$ROOT/scripts/build-release")
PEXINIT="$TARGET/release/pexinit"
[ -e /etc/pexinit.yaml ] && echo "note: /etc/pexinit.yaml exists and is read by pexinit" >&2

# A physical, writable HOME: pexinit normalizes it and derives PEX_ROOT below it, as it
# would in a container (the first launch creates ~/.cache/pex; the rest find it).
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/home"

echo "# $(uname -srm); $(nproc) cpus; load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "# pexinit $("$PEXINIT" --version | cut -d' ' -f2) ($(stat -c %s "$PEXINIT") bytes), $(tini --version 2>&1 | head -1), $(dumb-init --version 2>&1 | head -1)"

"$PYTHON" - "$LAUNCHES" "$PEXINIT" "$PEXINIT_STATIC" "$WORK/home" <<'EOF'
import os, re, statistics, subprocess, sys, time

launches, pexinit, pexinit_static, home = int(sys.argv[1]), *sys.argv[2:5]
env = {"PATH": "/usr/bin:/bin", "HOME": home}
commands = {
    "direct": ["/bin/true"],
    "pexinit": [pexinit, "run", "--init", "always", "--", "/bin/true"],
    "pexinit-static": [pexinit_static, "run", "--init", "always", "--", "/bin/true"],
    "tini": ["/usr/bin/tini", "-s", "--", "/bin/true"],
    "dumb-init": ["/usr/bin/dumb-init", "/bin/true"],
}

def launch(argv):
    start = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter_ns() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{argv} failed with status {status}")
    return wall / 1e3, (usage.ru_utime + usage.ru_stime) * 1e6

for argv in commands.values():  # warm the page cache
    for _ in range(5):
        launch(argv)

wall = {name: [] for name in commands}
cpu = {name: [] for name in commands}
names = list(commands)
for round_ in range(launches):
    # Rotate the order each round so no command always follows the same one.
    shift = round_ % len(names)
    for name in names[shift:] + names[:shift]:
        w, c = launch(commands[name])
        wall[name].append(w)
        cpu[name].append(c)

def peak_rss_kib(argv):
    runs = []
    for _ in range(20):
        out = subprocess.run(["/usr/bin/time", "-v", *argv], env=env,
                             capture_output=True, text=True, check=True).stderr
        runs.append(int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out)[1]))
    return statistics.median(runs)

med_wall = {n: statistics.median(v) for n, v in wall.items()}
med_cpu = {n: statistics.median(v) for n, v in cpu.items()}
over_wall = {n: med_wall[n] - med_wall["direct"] for n in commands}
over_cpu = {n: med_cpu[n] - med_cpu["direct"] for n in commands}
rss = {n: peak_rss_kib(argv) for n, argv in commands.items()}

print(f"# {launches} launches each, alternating; medians; overhead = minus direct /bin/true")
print(f"{'command':<15} {'wall us':>9} {'cpu us':>9} {'wall ovh':>9} {'cpu ovh':>9} "
      f"{'wall/tini':>9} {'cpu/tini':>9} {'rss KiB':>8} {'rss/tini':>8}")
for n in commands:
    ratio = lambda a, b: f"{a / b:.2f}" if n != "direct" and b > 0 else "-"
    print(f"{n:<15} {med_wall[n]:>9.0f} {med_cpu[n]:>9.0f} {over_wall[n]:>9.0f} "
          f"{over_cpu[n]:>9.0f} {ratio(over_wall[n], over_wall['tini']):>9} "
          f"{ratio(over_cpu[n], over_cpu['tini']):>9} {rss[n]:>8.0f} "
          f"{ratio(rss[n], rss['tini']):>8}")
EOF
