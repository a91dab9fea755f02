#!/usr/bin/env bash
# `pexinit prime` benchmark (not a test): priming a big real seed into an empty directory
# on the same filesystem and on a tmpfs (another filesystem), against `cp -a`, alternating
# every command in each round (the order rotates); medians of $ROUNDS rounds.
#
#   benches/prime.sh [PEX...]    # default: the big apps benches/repair.sh builds
#   ROUNDS=16 benches/prime.sh
#
# Rows, each into a fresh empty target:
#   same filesystem: cp -a; cp -a + sync -f (what a copy costs when it must be on disk, as
#     prime's is on filesystems shared between machines); prime --link copy (ext4 is
#     local: no flush, the marker names the boot); prime --link hardlink (what auto does
#     here: ext4 has no reflinks)
#   tmpfs: cp -a; prime (auto: copies, as hardlinks cannot cross filesystems)
#   and, pinned to one CPU (`taskset -c 0`), prime's hardlink and tmpfs rows again: what
#   filling directories on every core gains
# Each command starts after a `sync`, so none pays for the writeback of the one before.
# Targets on disk are removed only at the end: ext4 without a journal (these machines)
# skips inodes freed in the last minute when it allocates new ones, which made a copy
# right after `rm -rf` of the previous one up to twice as slow, at random. (That needs
# 3 x ROUNDS x the seed's size free on disk.) The tmpfs targets are removed after each
# round. With ROUNDS a multiple of 8 (the rows), every row starts a round equally often.
# The seed is built for $WORK/seed and primed elsewhere, so every prime also relocates
# (rewrites the venvs' shebangs and links): the Kubernetes case.
# Page cache: dropping caches between runs is not reliable here; all commands read the
# same warm seed, and alternating spreads the machine's noise over every row.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PRIME_BENCH_NS:-}" ]; then
    # Build with the caller's PATH (cargo), then measure in a private mount namespace
    # (for the tmpfs).
    PEXINIT=$(scripts/build-release)
    export PEXINIT PRIME_BENCH_NS=1
    exec unshare --mount -- "$0" "$@"
fi
export PATH=/usr/bin:/bin
ROUNDS=${ROUNDS:-8}
WORK=$PWD/target/bench-prime
if (($# == 0)); then
    set -- target/bench-repair/app{0,1,2}-2.105.2-{venv,zipapp}.pex target/bench-repair/app{0,1,2}-2.20.3-venv.pex
fi
for pex in "$@"; do
    [ -e "$pex" ] || { echo "missing $pex: run benches/repair.sh first, or name PEX files" >&2; exit 1; }
done
mkdir -p "$WORK/same" "$WORK/tmpfs"
SEED=$WORK/seed
if [ ! -e "$SEED/.pexinit-seed.json" ]; then
    rm -rf "$SEED"
    "$PEXINIT" seed --pex-root "$SEED" --python /usr/bin/python3.11 "$@" >&2
fi
mount --make-rprivate /
mount -t tmpfs -o size=12g tmpfs "$WORK/tmpfs"
BYTES=$(du -sb "$SEED" | cut -f1)
PATHS=$(find "$SEED" | wc -l)

/usr/bin/python3.11 - "$PEXINIT" "$SEED" "$WORK" "$ROUNDS" "$BYTES" "$PATHS" <<'PY'
import os, shutil, statistics, subprocess, sys, time
pexinit, seed, work, rounds, nbytes, paths = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])

# prime uses as many workers as CPUs it may run on: pinned to one, it walks alone.
one_core = ["taskset", "-c", "0"]

def prime(dst, *flags):
    return [pexinit, "prime", "--from", seed, "--into", dst, *flags]

rows = {
    "same fs: cp -a": lambda d: [["cp", "-a", seed, d]],
    "same fs: cp -a + sync -f": lambda d: [["cp", "-a", seed, d], ["sync", "-f", d]],
    "same fs: prime --link copy": lambda d: [prime(d, "--link", "copy")],
    "same fs: prime --link hardlink": lambda d: [prime(d, "--link", "hardlink")],
    "same fs: prime --link hardlink, one core": lambda d: [one_core + prime(d, "--link", "hardlink")],
    "tmpfs: cp -a": lambda d: [["cp", "-a", seed, d]],
    "tmpfs: prime (auto = copy)": lambda d: [prime(d)],
    "tmpfs: prime (auto = copy), one core": lambda d: [one_core + prime(d)],
}
runs = {name: [] for name in rows}

def clean(*parents):
    for parent in parents:
        for name in os.listdir(parent):
            subprocess.run(["rm", "-rf", os.path.join(parent, name)], check=True)
    subprocess.run(["sync"], check=True)

free = shutil.disk_usage(f"{work}/same").free
if free < 3.2 * rounds * nbytes:
    sys.exit(f"{work}/same: {free / 1e9:.1f} GB free, {3.2 * rounds * nbytes / 1e9:.1f} GB needed: lower ROUNDS")
names = list(rows)
clean(f"{work}/same", f"{work}/tmpfs")
time.sleep(65)  # inodes freed by an earlier run are reusable again (see the header)
for r in range(rounds):
    order = names[r % len(names):] + names[:r % len(names)]
    for name in order:
        dst = f"{work}/{'tmpfs' if name.startswith('tmpfs') else 'same'}/r{r}-{names.index(name)}"
        subprocess.run(["sync"], check=True)
        start = time.perf_counter()
        for argv in rows[name](dst):
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        runs[name].append(time.perf_counter() - start)
        print(f"round {r + 1}: {name}: {runs[name][-1]:.2f} s", file=sys.stderr, flush=True)
    clean(f"{work}/tmpfs")
clean(f"{work}/same")
med = {name: statistics.median(v) for name, v in runs.items()}
print(f"seed: {nbytes/1e9:.2f} GB, {paths} paths; {rounds} alternating rounds, medians (s, wall)")
print("| command | median s | vs cp -a (same target fs) | vs cp -a + sync -f |")
print("|---|---|---|---|")
for name, m in med.items():
    anchor = med["tmpfs: cp -a"] if name.startswith("tmpfs") else med["same fs: cp -a"]
    synced = "" if name.startswith("tmpfs") else f"{m / med['same fs: cp -a + sync -f']:.2f}×"
    print(f"| {name} | {m:.2f} | {m / anchor:.2f}× | {synced} |")
PY
