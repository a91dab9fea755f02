# Run by `pexinit seed` as the entry point of a PEX (PEX_MODULE=_pexinit_seed_capture:main,
# this file's directory on PEX_EXTRA_SYS_PATH), after pex's own bootstrap has unzipped the
# PEX, installed its wheels and set up sys.path exactly as for the PEX's real entry point.
# It records that set-up and writes a launcher that replays it without pex's bootstrap:
# the same sys.path (re-rooted at the seed and the PEX wherever they are at run time), the
# same sys.argv[0], the same environment changes, and the entry point started the way
# pex's PEX.execute() starts it. When a PEX does something the launcher cannot replay
# exactly, no launcher is written and the reason is recorded instead.
#
# Input: the JSON file named by _PEXINIT_CAPTURE (not PEX_-prefixed: pex strips those).
import json
import os
import sys


def main():
    with open(os.environ["_PEXINIT_CAPTURE"]) as fp:
        request = json.load(fp)
    summary = {"launcher": None, "entry": None, "why_not": None}
    try:
        summary.update(capture(request))
    except NotReplayable as e:
        summary["why_not"] = str(e)
    with open(request["summary"], "w") as fp:
        json.dump(summary, fp, sort_keys=True)


class NotReplayable(Exception):
    pass


def capture(request):
    info = request["pex_info"]
    pex = request["pex"]
    root = request["root"]
    extra = request["extra"]

    inherit_path = info.get("inherit_path")
    if inherit_path not in (None, False, "false"):
        raise NotReplayable(
            "the PEX inherits sys.path (inherit_path=%s): pex adds the site-packages of "
            "the node it runs on" % inherit_path
        )
    if info.get("bind_resource_paths"):
        raise NotReplayable("the PEX binds resource paths to variables (bind_resource_paths)")
    inject_args = list(info.get("inject_args") or ())
    if any("{" in arg for arg in inject_args):
        raise NotReplayable("the PEX's inject_args use {pex.env...} replacements")

    entry_point = info.get("entry_point")
    script = info.get("script")
    if script and entry_point:
        raise NotReplayable("the PEX names both a script and an entry point")

    path = [entry for entry in sys.path if entry != extra]
    recorded_path = [relative_to(entry, root, pex) for entry in path]
    if script:
        entry_point = console_script(script, path)
        if entry_point is None:
            raise NotReplayable(
                "the PEX's script %r is not a console script: pex runs it with its own "
                "module globals" % script
            )
    if entry_point:
        kind = "callable" if ":" in entry_point else "module"
    else:
        kind = "interpreter"
        if inject_args:
            raise NotReplayable("the PEX has no entry point but inject_args")

    argv0 = sys.argv[0]
    if argv0 == pex or argv0.startswith(pex + os.sep):
        argv0_suffix = argv0[len(pex):]
    else:
        raise NotReplayable("pex set sys.argv[0] to %r, not a path of the PEX" % argv0)

    env_pex = os.environ.get("PEX")
    if env_pex is not None and env_pex != pex:
        raise NotReplayable("pex set PEX=%r, not the PEX's path" % env_pex)

    main_module = sys.modules.get("__main__")
    main_file = getattr(main_module, "__file__", None)
    main_spec = getattr(getattr(main_module, "__spec__", None), "name", None)

    launcher = {
        "path": recorded_path,
        "argv0_suffix": argv0_suffix,
        "set_pex": env_pex is not None,
        "main_file": relative_to(main_file, root, pex) if main_file else None,
        "main_spec": main_spec if main_file else None,
        "strip_pex_env": info.get("strip_pex_env", True) is not False,
        "inject_env": sorted((info.get("inject_env") or {}).items()),
        "inject_args": inject_args,
        "entry": kind,
        "entry_point": entry_point,
    }
    out = request["out"]
    directory = os.path.dirname(out)
    if not os.path.isdir(directory):
        os.makedirs(directory)
    # Written whole or not at all: a seed killed here must not leave a truncated
    # launcher for a PEX an earlier seed recorded.
    temp = os.path.join(directory, ".%s.tmp.%d" % (os.path.basename(out), os.getpid()))
    with open(temp, "w") as fp:
        fp.write(render(launcher, request["template"]))
    os.rename(temp, out)
    return {"launcher": out, "entry": kind}


def relative_to(entry, root, pex):
    """An entry as (base, rest): base "root" (the seed), "pex" (the PEX itself, for loose
    PEXes) or None (an absolute path outside both, like the standard library)."""
    for base, prefix in (("root", root), ("pex", pex)):
        if entry == prefix:
            return (base, "")
        if entry.startswith(prefix + os.sep):
            return (base, entry[len(prefix) + 1 :])
    return (None, entry)


def console_script(name, path):
    try:
        from importlib import metadata
    except ImportError:
        return None
    for dist in metadata.distributions(path=path):
        for entry in dist.entry_points:
            if entry.group == "console_scripts" and entry.name == name:
                return entry.value.split("[")[0].strip()
    return None


def render(launcher, template):
    lines = ["%s = %r" % (name.upper(), value) for name, value in sorted(launcher.items())]
    return template.replace("# @DATA@", "\n".join(lines))
