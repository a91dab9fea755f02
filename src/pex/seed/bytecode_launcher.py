# Written by `pexinit seed`. `PYTHON [FLAGS] THIS_FILE SCRIPT ARGS` runs SCRIPT from the
# bytecode the seed compiled for it, exactly as `PYTHON [FLAGS] SCRIPT ARGS` would from
# its source (see pexinit's src/pex/seed/bytecode.rs).
def _pexinit_bytecode():
    import sys
    from _frozen_importlib_external import SourceFileLoader

    del globals()["_pexinit_bytecode"]
    given = sys.argv[1]
    count = len(sys.argv)
    del sys.argv[0]
    orig = getattr(sys, "orig_argv", None)
    if orig is not None and len(orig) >= count:
        orig[len(orig) - count :] = sys.argv
    import os

    script = given if given.startswith("/") else os.path.join(os.getcwd(), given)
    if not (sys.flags.isolated or getattr(sys.flags, "safe_path", False)):
        sys.path[0] = os.path.dirname(os.path.realpath(given))
    loader = SourceFileLoader("__main__", script)
    globals()["__file__"] = script
    globals()["__loader__"] = loader
    keep = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        return loader.get_code("__main__")
    finally:
        sys.dont_write_bytecode = keep


try:
    exec(_pexinit_bytecode(), globals())
except BaseException:
    __import__("sys").exc_info()[1].with_traceback(__import__("sys").exc_info()[2].tb_next)
    raise
