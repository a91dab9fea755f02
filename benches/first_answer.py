#!/usr/bin/env python3
"""Times container starts to their first HTTP 200: from `podman run -d` being started to
the first GET / on a published port that answers 200. The commands alternate round by
round (the order rotates each round, so with two commands A B, then B A), like
benches/alternate.py, and the results are written in the same JSON shape
(results[].command / median in seconds / times), plus, per command, the times from the
container's own start (podman's State.StartedAt) to the first 200.

    first_answer.py --runs N [--warmup W] --url URL --export-json FILE \
        -n NAME 'podman run -d --name {name} ... IMAGE ARGS' ...

Each command must start a detached container named {name} (a fresh name per start) that
serves URL; it is removed (podman rm -f) after its first answer. The poll connects every
5 ms with a 100 ms connect timeout; once connected, the answer may take 30 s.
"""
import argparse
import http.client
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
import urllib.parse

LIMIT = 180.0  # seconds a start may take on a loaded machine before the run fails


def get_status(host, port, path):
    conn = http.client.HTTPConnection(host, port, timeout=0.1)
    try:
        conn.connect()
        conn.sock.settimeout(30)
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def podman(*args, check=True):
    return subprocess.run(["podman", *args], check=check, capture_output=True, text=True)


def start(argv, name, url):
    """Returns (seconds from `podman run -d` to the first 200, seconds from the
    container's StartedAt to it)."""
    parts = urllib.parse.urlsplit(url)
    wall0 = time.time()
    t0 = time.perf_counter()
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while True:
            try:
                status = get_status(parts.hostname, parts.port, parts.path or "/")
            except (OSError, http.client.HTTPException):
                status = None
            if status == 200:
                t = time.perf_counter() - t0
                wall = wall0 + t
                break
            if run.poll() not in (None, 0):
                raise SystemExit(f"{argv} failed ({run.returncode}): {run.stderr.read()}")
            if time.perf_counter() - t0 > LIMIT:
                logs = podman("logs", name, check=False)
                raise SystemExit(f"{name}: no 200 after {LIMIT} s (last: {status});"
                                 f" log:\n{logs.stdout}{logs.stderr}")
            time.sleep(0.005)
        run.wait()
        if run.returncode != 0:
            raise SystemExit(f"{argv} failed ({run.returncode}): {run.stderr.read()}")
        started = podman("inspect", "--format", "{{.State.StartedAt.UnixNano}}", name).stdout
        return t, wall - int(started) / 1e9
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--url", required=True)
    parser.add_argument("--export-json", required=True)
    parser.add_argument("-n", nargs=2, action="append", metavar=("NAME", "CMD"), required=True)
    args = parser.parse_args()
    commands = [(name, cmd) for name, cmd in args.n]
    count = 0

    def once(i):
        nonlocal count
        count += 1
        name = f"pexinit-bench-{os.getpid()}-{count}"
        argv = [a.replace("{name}", name) for a in shlex.split(commands[i][1])]
        return start(argv, name, args.url)

    for i in range(len(commands)):
        for _ in range(args.warmup):
            once(i)
    times = [[] for _ in commands]
    from_started = [[] for _ in commands]
    order = list(range(len(commands)))
    for _ in range(args.runs):
        for i in order:
            t, s = once(i)
            times[i].append(t)
            from_started[i].append(s)
        order = order[1:] + order[:1]
    results = [
        {
            "command": name,
            "median": statistics.median(t),
            "times": t,
            "median_from_started": statistics.median(s),
            "times_from_started": s,
        }
        for (name, _), t, s in zip(commands, times, from_started)
    ]
    with open(args.export_json, "w") as out:
        json.dump({"results": results}, out)
    for r in results:
        print(f"{r['median'] * 1000:9.1f} ms ({r['median_from_started'] * 1000:9.1f} ms from"
              f" StartedAt)  {r['command']}", file=sys.stdout)


if __name__ == "__main__":
    main()
