# Written by `pexinit seed`: starts a seeded venv's `pex` script from the bytecode the
# seed compiled for it, as `PYTHON [FLAGS] VENV/pex ARGS` starts it from its source.
# pexinit runs it as `PYTHON [FLAGS] THIS_FILE VENV/pex ARGS` (Python >= 3.11 only).
#
# Python compiles a script it runs from its source on every start (a few ms for pex's
# venv script); an imported module's bytecode is read from `__pycache__`. Here pex's
# script is loaded the way Python loads a module (`SourceFileLoader.get_code`: the
# checked-hash .pyc when it matches the source, the source otherwise) and run in this
# `__main__`, set up as Python sets it up for the script itself: `sys.argv`,
# `sys.orig_argv`, `sys.path[0]`, `__file__` and `__loader__`. No name of this file is
# left in `__main__` (no docstring either: it would set `__doc__`), and its own frame is
# taken out of the traceback of an uncaught exception.


def _pexinit_start_venv():
    import sys
    from _frozen_importlib_external import SourceFileLoader

    del globals()["_pexinit_start_venv"]
    given = sys.argv[1]
    count = len(sys.argv)
    del sys.argv[0]
    # The interpreter's own arguments, with this file's name taken out.
    orig = getattr(sys, "orig_argv", None)
    if orig is not None and len(orig) >= count:
        orig[len(orig) - count :] = sys.argv
    import os

    # Python makes the script's `__file__` absolute (a plain join with the working
    # directory) and puts its real directory first on sys.path, unless -P or -I.
    script = given if given.startswith("/") else os.path.join(os.getcwd(), given)
    if not (sys.flags.isolated or getattr(sys.flags, "safe_path", False)):
        sys.path[0] = os.path.dirname(os.path.realpath(given))
    loader = SourceFileLoader("__main__", script)
    globals()["__file__"] = script
    globals()["__loader__"] = loader
    # Python never writes bytecode for the script it runs: neither does this.
    keep = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        return loader.get_code("__main__")
    finally:
        sys.dont_write_bytecode = keep


try:
    exec(_pexinit_start_venv(), globals())
except BaseException:
    # A bare raise keeps the exception's traceback as set here (Python >= 3.11).
    __import__("sys").exc_info()[1].with_traceback(__import__("sys").exc_info()[2].tb_next)
    raise
