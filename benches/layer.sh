#!/usr/bin/env bash
# Layer writing speed and size (not a test): `pexinit layer` (gzip level 6, all cores)
# against the reproducible tar pipelines people write by hand, on a ~20k-file tree.
#
#   benches/layer.sh            # builds the tree once (needs PyPI for the seeded app)
#   ROUNDS=9 benches/layer.sh
#
# Tree (under target/bench-layer/tree): three copies of /usr/lib/python3.11, two of
# /usr/lib/python3/dist-packages, and a PEX_ROOT seeded by `pexinit seed` with a --venv
# app of `requests rich boto3 numpy` built by pex 2.105.2.
#
# Measures, alternating, ROUNDS times each (medians; the page cache is warmed first):
#   - pexinit layer -o OUT --compression gzip --level 6 TREE:/
#   - tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C TREE -cf - . | gzip -6
#   - the same tar | pigz -n -6
set -euo pipefail
cd "$(dirname "$0")/.."
PEXINIT=$(scripts/build-release)
export PATH=/usr/bin:/bin
command -v pigz >/dev/null || { echo "pigz is missing: apt-get install -y pigz" >&2; exit 1; }
ROUNDS=${ROUNDS:-5}
WORK=$PWD/target/bench-layer
TREE=$WORK/tree
PEX_VENV=$PWD/target/tmp/fixtures/pex-2.105.2

if [ -e "$TREE/python3.11-3" ]; then rm -rf "$TREE"; fi  # the four-copy tree of an earlier version
if [ ! -e "$TREE/.done" ]; then
    rm -rf "$TREE"
    mkdir -p "$TREE"
    for i in 0 1 2; do cp -a /usr/lib/python3.11 "$TREE/python3.11-$i"; done
    for i in 0 1; do cp -a /usr/lib/python3/dist-packages "$TREE/dist-packages-$i"; done
    if [ ! -x "$PEX_VENV/bin/pex" ]; then
        PEX_VENV=$WORK/pex-2.105.2
        [ -x "$PEX_VENV/bin/pex" ] || { /usr/bin/python3.11 -m venv "$PEX_VENV" && "$PEX_VENV/bin/pip" install --quiet pex==2.105.2; }
    fi
    PEX_ROOT=$WORK/build-root "$PEX_VENV/bin/pex" requests rich boto3 numpy --venv \
        --python /usr/bin/python3.11 -o "$WORK/app.pex" >&2
    "$PEXINIT" seed --pex-root "$TREE/pex-root" --python /usr/bin/python3.11 "$WORK/app.pex" >&2
    touch "$TREE/.done"
fi
FILES=$(find "$TREE" | wc -l)
BYTES=$(du -sb --apparent-size "$TREE" | cut -f1)

/usr/bin/python3.11 - "$PEXINIT" "$TREE" "$WORK" "$ROUNDS" "$FILES" "$BYTES" <<'PY'
import os, statistics, subprocess, sys, time
pexinit, tree, work, rounds, files, nbytes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
tar = f"tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C {tree} -cf - ."
cases = {
    "tar | gzip -6 (anchor)": ("sh", "-c", f"{tar} | gzip -6 > {work}/out-gzip.tar.gz"),
    "tar | pigz -n -6": ("sh", "-c", f"{tar} | pigz -n -6 > {work}/out-pigz.tar.gz"),
    "pexinit layer (gzip -6)": (pexinit, "layer", "-o", f"{work}/out-pexinit.tar.gz", "--level", "6", f"{tree}:/"),
}
outputs = {
    "tar | gzip -6 (anchor)": "out-gzip.tar.gz",
    "tar | pigz -n -6": "out-pigz.tar.gz",
    "pexinit layer (gzip -6)": "out-pexinit.tar.gz",
}
subprocess.run(f"{tar} > /dev/null", shell=True, check=True)  # warm the page cache
times = {name: [] for name in cases}
load_before = os.getloadavg()
for _ in range(rounds):
    for name, argv in cases.items():
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times[name].append(time.perf_counter() - start)
load_after = os.getloadavg()
anchor = statistics.median(times["tar | gzip -6 (anchor)"])
anchor_size = os.path.getsize(f"{work}/out-gzip.tar.gz")
print(f"tree: {files} paths, {nbytes / 1e6:.0f} MB; {rounds} alternating rounds; "
      f"{os.cpu_count()} cores; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
print()
print("| pipeline | median wall | ratio to tar \\| gzip -6 | size | size ratio |")
print("|---|---|---|---|---|")
for name in cases:
    med = statistics.median(times[name])
    size = os.path.getsize(f"{work}/{outputs[name]}")
    print(f"| {name.replace('|', chr(92) + '|')} | {med:.2f} s | {med / anchor:.2f}x | {size / 1e6:.1f} MB | {size / anchor_size:.3f} |")
PY
