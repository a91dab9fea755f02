"""The app the container tests run: reports how it was started, and handles signals."""

import json
import os
import signal
import sys


def on_signal(signum, _frame):
    print(f"got {signal.Signals(signum).name}", flush=True)
    if signum == signal.SIGTERM:
        print("stopping cleanly", flush=True)
        sys.exit(0)


def serve():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGUSR1, on_signal)
    print(f"ready pid={os.getpid()}", flush=True)
    while True:
        signal.pause()


def files_below(roots):
    """Every regular file below roots (links not followed): what the start wrote."""
    found = []
    for root in roots:
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                path = os.path.join(dirpath, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    found.append(path)
    return sorted(found)


def info(roots):
    import cowsay  # a dependency from a wheel: the app's environment really loaded

    with open("/proc/1/cmdline", "rb") as f:
        pid1 = [a.decode() for a in f.read().split(b"\0") if a]
    print(json.dumps({
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pid1": pid1,
        "uid": os.getuid(),
        "gid": os.getgid(),
        "env": {k: os.environ.get(k) for k in ("HOME", "XDG_CACHE_HOME", "PEX_ROOT", "TMPDIR")},
        "prefix": os.path.realpath(sys.prefix),
        "cowsay": os.path.realpath(cowsay.__file__),
        "written": files_below(roots),
    }, indent=1, sort_keys=True))


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "info"
    if mode == "serve":
        serve()
    elif mode == "info":
        info(sys.argv[2:])
    else:
        sys.exit(f"unknown mode {mode!r}")
