"""The differential tests' app: reports how it was started, as one JSON line on stdout.

Arguments it understands (anywhere in sys.argv, so the same words work for every entry
point kind):

    stdin        read all of stdin and report it
    err=TEXT     write TEXT and a newline to stderr
    exit=N       exit with status N (after the report)
    fail=TEXT    raise SystemExit(TEXT) (after the report): pex prints TEXT, status 1
    raise=TEXT   raise RuntimeError(TEXT) (after the report): uncaught, a traceback, status 1
    extra        import `extra_mod` (found only through PEX_EXTRA_SYS_PATH or inherited paths)

Everything is reported raw: the test normalizes the locations that may legitimately differ
(see tests/differential.rs) and compares the rest.
"""

import json
import os
import sys


def origin(module):
    """Where a module came from: its file and the sys.path entry it was found under."""
    path = getattr(module, "__file__", None)
    return path


def report():
    import importlib.metadata

    import cowsay  # a pure-Python dependency (a wheel)
    import yaml  # a dependency with a native extension (PyYAML's _yaml)

    words = sys.argv[1:]
    main = sys.modules.get("__main__")
    data = {
        "argv": sys.argv,
        "path": sys.path,
        "env": dict(os.environ),
        "main": {
            "file": getattr(main, "__file__", None),
            "name": getattr(main, "__name__", None),
            "spec": getattr(getattr(main, "__spec__", None), "name", None),
        },
        "modules": {
            "probe": origin(sys.modules[__name__]),
            "cowsay": origin(cowsay),
            "yaml": origin(yaml),
            "yaml._yaml": origin(sys.modules.get("yaml._yaml")),
        },
        "libyaml": bool(getattr(yaml, "__with_libyaml__", False)),
        "versions": {
            name: importlib.metadata.version(name) for name in ("cowsay", "PyYAML", "probe")
        },
        "executable": os.path.realpath(sys.executable) if sys.executable else None,
        "cwd": os.getcwd(),
        "stdin": sys.stdin.read() if "stdin" in words else None,
        # Shown when the test fails, never compared: the venv prefix may differ.
        "info": {
            "executable": sys.executable,
            "prefix": sys.prefix,
            "base_prefix": sys.base_prefix,
            "flags": {
                "ignore_environment": sys.flags.ignore_environment,
                "no_user_site": sys.flags.no_user_site,
                "no_site": sys.flags.no_site,
                "isolated": sys.flags.isolated,
                "safe_path": int(getattr(sys.flags, "safe_path", 0)),
            },
        },
    }
    if "extra" in words:
        import extra_mod

        data["modules"]["extra_mod"] = origin(extra_mod)
    print(json.dumps(data, sort_keys=True), flush=True)
    for word in words:
        if word.startswith("err="):
            print(word[len("err="):], file=sys.stderr, flush=True)
    for word in words:
        if word.startswith("fail="):
            raise SystemExit(word[len("fail="):])
    for word in words:
        if word.startswith("raise="):
            raise RuntimeError(word[len("raise="):])
    for word in words:
        if word.startswith("exit="):
            return int(word[len("exit="):])
    return 0


def main():
    """The console script's and `-m probe.main:main`'s entry point."""
    return report()


if __name__ == "__main__":
    sys.exit(report())
