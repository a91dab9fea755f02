# Written by `pexinit seed`: starts one seeded PEX the way pex's bootstrap does, without
# the bootstrap. pexinit runs it as `PYTHON [FLAGS] THIS_FILE PEX [ARGS...]`.
# The data below was recorded from pex's own set-up of this PEX; paths are relative to
# the seed (this file is SEED/.pexinit/launch/NAME.py) or to the PEX.
import os
import sys

# @DATA@


def _at(base, rest):
    return os.path.join(base, rest) if rest else base


def _start():
    seed = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pex = os.path.abspath(sys.argv[1])
    bases = {"root": seed, "pex": pex}

    def located(entry):
        base, rest = entry
        return rest if base is None else _at(bases[base], rest)

    # What pex's bootstrap leaves behind before calling the entry point.
    sys.path[:] = [located(entry) for entry in PATH]
    sys.argv[:] = [pex + ARGV0_SUFFIX] + sys.argv[2:]
    if MAIN_FILE is not None:
        globals()["__file__"] = located(MAIN_FILE)
    if SET_PEX:
        os.environ["PEX"] = os.path.realpath(pex)

    # PEX.execute(): environment first, then the entry point.
    if STRIP_PEX_ENV:
        for name in list(os.environ):
            if name.startswith("PEX_"):
                del os.environ[name]
    for name, value in INJECT_ENV:
        os.environ.setdefault(name, value)

    if ENTRY == "interpreter":
        # Only `-m MODULE` is replayed (pexinit checks before choosing this launcher).
        sys.path.insert(0, "")
        module = sys.argv[2]
        sys.argv[:] = sys.argv[2:]
        return _run_module(module)
    sys.argv[1:1] = INJECT_ARGS
    if ENTRY == "module":
        return _run_module(ENTRY_POINT)
    module, _, attrs = ENTRY_POINT.partition(":")
    runner = __import__(module.strip(), fromlist=["__name__"], level=0)
    for attr in attrs.strip().split("."):
        runner = getattr(runner, attr)
    return runner()


def _run_module(module):
    import runpy

    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


_result = _start()
if "PYTHONINSPECT" not in os.environ:
    sys.exit(_result)
