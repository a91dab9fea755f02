#!/usr/bin/env python3
"""Times commands round by round, alternating (not one command's runs after another's), so
drift and neighbours' load hit every command alike. The order is shuffled every round (with a
fixed seed): a command with after-effects (a cold start leaves hundreds of MB to write back)
must not always weigh on the same successor. A stand-in for `hyperfine -N` with
that one difference; it writes hyperfine's JSON shape (results[].command / median in
seconds) so scripts read either.

    alternate.py --runs N [--warmup W] [--prepare CMD] --export-json FILE -n NAME CMD ...

CMD is split like a shell would (no shell runs it); --prepare runs before every timed
command, untimed.
"""
import argparse
import json
import random
import shlex
import statistics
import subprocess
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--prepare")
    parser.add_argument("--export-json", required=True)
    parser.add_argument("-n", nargs=2, action="append", metavar=("NAME", "CMD"), required=True)
    args = parser.parse_args()
    commands = [(name, shlex.split(cmd)) for name, cmd in args.n]
    prepare = shlex.split(args.prepare) if args.prepare else None

    def once(argv):
        if prepare:
            subprocess.run(prepare, check=True)
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start

    for _, argv in commands:
        for _ in range(args.warmup):
            once(argv)
    times = [[] for _ in commands]
    order = list(range(len(commands)))
    shuffle = random.Random(0).shuffle
    for _ in range(args.runs):
        shuffle(order)
        for i in order:
            times[i].append(once(commands[i][1]))
    results = [
        {"command": name, "median": statistics.median(t), "times": t}
        for (name, _), t in zip(commands, times)
    ]
    with open(args.export_json, "w") as out:
        json.dump({"results": results}, out)
    for r in results:
        print(f"{r['median'] * 1000:9.1f} ms  {r['command']}")


if __name__ == "__main__":
    main()
