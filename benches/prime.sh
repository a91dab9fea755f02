#!/usr/bin/env bash
# `pexinit prime` benchmark (not a test): priming a big real seed into an empty directory
# on the same filesystem and on a tmpfs (another filesystem), against `cp -a`, alternating
# every command in each round (the order rotates); medians of $ROUNDS rounds.
#
#   benches/prime.sh [PEX...]    # default: the big apps benches/repair.sh builds
#   ROUNDS=7 benches/prime.sh
#
# Rows, each into a fresh empty target (the removal between runs is not timed):
#   same filesystem: cp -a; cp -a + sync -f (prime flushes the filesystem with syncfs
#     before its rename, cp does not); prime --link copy; prime --link hardlink (what
#     auto does here: ext4 has no reflinks)
#   tmpfs: cp -a; prime (auto: copies, as hardlinks cannot cross filesystems)
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
ROUNDS=${ROUNDS:-5}
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
same, tmpfs = f"{work}/same/dst", f"{work}/tmpfs/dst"

def prime(dst, *flags):
    return [pexinit, "prime", "--from", seed, "--into", dst, *flags]

rows = {
    "same fs: cp -a": [["cp", "-a", seed, same]],
    "same fs: cp -a + sync -f": [["cp", "-a", seed, same], ["sync", "-f", same]],
    "same fs: prime --link copy": [prime(same, "--link", "copy")],
    "same fs: prime --link hardlink": [prime(same, "--link", "hardlink")],
    "tmpfs: cp -a": [["cp", "-a", seed, tmpfs]],
    "tmpfs: prime (auto = copy)": [prime(tmpfs)],
}
runs = {name: [] for name in rows}

def clean():
    for dst in (same, tmpfs):
        subprocess.run(["rm", "-rf", dst], check=True)
        for d in (os.path.dirname(dst),):
            for name in os.listdir(d):
                if name.startswith(".dst."):
                    subprocess.run(["rm", "-rf", os.path.join(d, name)], check=True)

names = list(rows)
for r in range(rounds):
    order = names[r % len(names):] + names[:r % len(names)]
    for name in order:
        clean()
        start = time.perf_counter()
        for argv in rows[name]:
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        runs[name].append(time.perf_counter() - start)
        print(f"round {r + 1}: {name}: {runs[name][-1]:.2f} s", file=sys.stderr, flush=True)
clean()
med = {name: statistics.median(v) for name, v in runs.items()}
print(f"seed: {nbytes/1e9:.2f} GB, {paths} paths; {rounds} alternating rounds, medians (s, wall)")
print("| command | median s | vs cp -a (same target fs) | vs cp -a + sync -f |")
print("|---|---|---|---|")
for name, m in med.items():
    anchor = med["tmpfs: cp -a"] if name.startswith("tmpfs") else med["same fs: cp -a"]
    synced = "" if name.startswith("tmpfs") else f"{m / med['same fs: cp -a + sync -f']:.2f}×"
    print(f"| {name} | {m:.2f} | {m / anchor:.2f}× | {synced} |")
PY
