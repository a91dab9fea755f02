"""Writes the probe's wheel (pure Python, with a console script and a plain script).

    python3.11 make_wheel.py PROBE_PY OUT_DIR

Written by hand, not by a build backend: nothing to download, and the same bytes every
time (fixed timestamps, sorted entries).
"""

import base64
import hashlib
import os
import sys
import zipfile

NAME, VERSION = "probe", "1.0"
DIST = f"{NAME}-{VERSION}"
SCRIPT = """#!python
# The wheel's plain script (pex --script / PEX_SCRIPT): runs as __main__.
import sys

from probe.main import report

sys.exit(report())
"""


def record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def main():
    probe_py, out_dir = sys.argv[1:]
    with open(probe_py, "rb") as f:
        probe = f.read()
    files = {
        "probe/__init__.py": b"",
        "probe/main.py": probe,
        f"{DIST}.data/scripts/probe-script": SCRIPT.encode(),
        f"{DIST}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n"
            "Requires-Dist: cowsay==6.1\nRequires-Dist: PyYAML==6.0.4\n"
        ).encode(),
        f"{DIST}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: make_wheel.py\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ).encode(),
        f"{DIST}.dist-info/entry_points.txt": (
            "[console_scripts]\nprobe = probe.main:main\n"
        ).encode(),
        f"{DIST}.dist-info/top_level.txt": b"probe\n",
    }
    record = f"{DIST}.dist-info/RECORD"
    lines = [record_line(n, d) for n, d in sorted(files.items())] + [f"{record},,"]
    files[record] = ("\n".join(lines) + "\n").encode()
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, f"{DIST}-py3-none-any.whl")
    tmp = f"{out}.{os.getpid()}.tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as whl:
        for name, data in sorted(files.items()):
            info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if "/scripts/" in name else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            whl.writestr(info, data)
    os.replace(tmp, out)
    print(out)


if __name__ == "__main__":
    main()
