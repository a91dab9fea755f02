#!/usr/bin/env bash
# Read-only seed cost (not a test): what `pexinit run` pays to put a writable link farm in
# front of a seed the runtime user cannot write, against the seed's size. The farm holds
# links and one small directory per cache entry, so its cost should follow the number of
# entries, not the bytes.
#
#   benches/farm.sh [PEX...]    # default: the big apps benches/repair.sh builds
#
# Measures, alternating, ROUNDS times each (medians):
#   - `pexinit run --seed RO -- /bin/true` as uid 65534 with a fresh TMPDIR (the farm is
#     built: a container's first start),
#   - the same with the farm already there (every later start),
#   - `pexinit run -- /bin/true` without a seed (the anchor).
set -euo pipefail
cd "$(dirname "$0")/.."
# Build with the caller's PATH (cargo), then run everything with Debian's python first.
PEXINIT=$(scripts/build-release)
export PATH=/usr/bin:/bin
unset PYTHONDONTWRITEBYTECODE
ROUNDS=${ROUNDS:-21}
WORK=$PWD/target/bench-farm
if (($# == 0)); then
    set -- target/bench-repair/app{0,1,2}-2.105.2-venv.pex
fi
for pex in "$@"; do
    [ -e "$pex" ] || { echo "missing $pex: run benches/repair.sh first, or name PEX files" >&2; exit 1; }
done
mkdir -p "$WORK"
SEED=$WORK/seed
if [ ! -e "$SEED/.pexinit-seed.json" ]; then
    rm -rf "$SEED"
    "$PEXINIT" seed --pex-root "$SEED" --python /usr/bin/python3.11 "$@" >&2
    chmod -R a-w "$SEED"
fi
BYTES=$(du -sb "$SEED" | cut -f1)
FILES=$(find "$SEED" | wc -l)
ENTRIES=$(find "$SEED"/unzipped_pexes "$SEED"/venvs -mindepth 2 -maxdepth 3 -type d 2>/dev/null | wc -l)
mkdir -p "$WORK/home" && chmod 777 "$WORK/home"

/usr/bin/python3.11 - "$PEXINIT" "$SEED" "$WORK" "$ROUNDS" "$BYTES" "$FILES" <<'PY'
import os, shutil, statistics, subprocess, sys, time
pexinit, seed, work, rounds, nbytes, files = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]

def timed(argv, tmp):
    env = {"PATH": "/usr/bin:/bin", "HOME": f"{work}/home", "TMPDIR": tmp}
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000

def fresh_tmp(name):
    tmp = f"{work}/{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    os.chmod(tmp, 0o1777)
    return tmp

runs = {"first start (farm built)": [], "later start (farm reused)": [], "no seed (anchor)": []}
kept = fresh_tmp("tmp-kept")
subprocess.run(nobody + [pexinit, "run", "--seed", seed, "--", "/bin/true"],
               env={"PATH": "/usr/bin:/bin", "HOME": f"{work}/home", "TMPDIR": kept}, check=True)
for _ in range(rounds):
    runs["first start (farm built)"].append(timed(nobody + [pexinit, "run", "--seed", seed, "--", "/bin/true"], fresh_tmp("tmp-fresh")))
    runs["later start (farm reused)"].append(timed(nobody + [pexinit, "run", "--seed", seed, "--", "/bin/true"], kept))
    runs["no seed (anchor)"].append(timed(nobody + [pexinit, "run", "--", "/bin/true"], kept))
anchor = statistics.median(runs["no seed (anchor)"])
print(f"seed: {nbytes/1e9:.2f} GB, {files} paths; {rounds} alternating rounds, medians (ms, wall, setpriv included)")
print("| command | median ms | minus anchor |")
print("|---|---|---|")
for name, values in runs.items():
    med = statistics.median(values)
    print(f"| {name} | {med:.1f} | {med - anchor:+.1f} |")
PY
