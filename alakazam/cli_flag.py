"""``alakazam flag`` and ``alakazam flagmanager``: the akflag / akflagmanager tasks on the command line.

    alakazam flag CONFIG.yaml                       # the flag blocks of a YAML file
    alakazam flag --vis X.ms --mode aoflagger --strategy jvla
    alakazam flag --vis X.ms --mode clip --clipminmax 0 50 --spw 0:10~20
    alakazam flagmanager --vis X.ms --mode restore --versionname akflag_1

Options are generated from tasks_xml/akflag.xml and akflagmanager.xml (one ``--name`` per parameter), so
they cannot drift from the tasks; values are checked by the tasks (every bad one reported).
"""

from __future__ import annotations

import argparse

from .errors import AlakazamError


def _bool(v):
    s = str(v).strip().lower()
    if s in ("true", "1", "yes", "t", "y"):
        return True
    if s in ("false", "0", "no", "f", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {v!r}")


def _flag_mode(v):
    """--mode of ``alakazam flag``: flagdata's modes akflag lacks get the task's message (what to use)."""
    from .flagging.config import MODES, UNSUPPORTED_MODES, unsupported_mode_message

    if str(v).strip().lower() in UNSUPPORTED_MODES:
        raise argparse.ArgumentTypeError(unsupported_mode_message(v))
    if v not in MODES:
        raise argparse.ArgumentTypeError(f"invalid choice: {v!r} (choose from {', '.join(MODES)})")
    return v


class _Numbers(argparse.Action):
    """A list of numbers (the XML's doubleVec) as a shell user types it: ``--clipminmax 0 5``, and also
    CASA's list as typed in casapy, ``0,5`` or ``[0,5]`` / ``[0, 5]`` (one list; ``[]`` = none)."""

    def __call__(self, parser, namespace, values, option_string=None):
        out, bad = [], []
        for v in values:
            for part in str(v).split(","):
                part = part.strip().strip("[]()").strip()
                if not part:
                    continue
                try:
                    out.append(float(part))
                except ValueError:
                    bad.append(part)
        if bad:
            parser.error(f"argument {option_string}: {', '.join(repr(b) for b in bad)} is not a number; "
                         f"expected numbers, e.g. {option_string} 0 5 (or 0,5)")
        setattr(namespace, self.dest, out)


def _add_task_options(parser, task_name):
    from alakazam.caltasks import TASKS

    for p in TASKS[task_name].spec.params:
        kw = {"dest": p.name, "default": argparse.SUPPRESS, "help": _help(p)}
        if p.type == "bool":
            kw.update(type=_bool, metavar="true|false")
        elif p.type == "double":
            kw["type"] = float
        elif p.type == "int":
            kw["type"] = int
        elif p.type == "doubleVec":
            kw.update(action=_Numbers, nargs="*", metavar="NUMBER")
        elif p.type in ("stringVec", "pathVec"):
            kw["nargs"] = "*"                  # --gaintable a.h5 b.h5 --gainjones K0 G0
        elif task_name == "akflag" and p.name == "mode":
            kw.update(type=_flag_mode, metavar="{" + ",".join(p.allowed) + "}")
        elif p.allowed:
            kw["choices"] = p.allowed
            if p.ignorecase:                   # (the XML's ignorecase: --datacolumn DATA as the task)
                kw["type"] = str.lower
        parser.add_argument(f"--{p.name}", **kw)


def _help(p):
    """The XML's one-line description and the task's default (argparse's own stays unset, so only
    given options reach the task)."""
    d = p.default
    if d in ("", [], None):            # (the short description says what empty means)
        return p.short.replace("%", "%%")
    shown = ("true" if d else "false") if isinstance(d, bool) else str(d)
    return f"{p.short} (default: {shown})".replace("%", "%%")


def _task_kwargs(args, task_name):
    from alakazam.caltasks import TASKS

    return {p.name: getattr(args, p.name) for p in TASKS[task_name].spec.params if hasattr(args, p.name)}


def cmd_flag(args):
    from alakazam.caltasks import akflag

    kw = _task_kwargs(args, "akflag")
    if args.config:
        if kw:
            raise AlakazamError(f"flag: give either a YAML file or --options, not both (got {args.config!r} "
                                f"and --{', --'.join(kw)})")
        from alakazam.caltasks.yamlrun import run_yaml

        if not run_yaml(args.config, sections=("flag",)).get("flag"):
            raise AlakazamError(f"flag: {args.config!r} has no flag blocks; nothing was flagged (`alakazam "
                                "run` runs its solve, fluxscale and apply blocks)")
        return
    if "vis" not in kw:
        raise AlakazamError("flag: expected a YAML file or --vis MS (with --mode ...)")
    akflag(**kw)


def cmd_flagmanager(args):
    from alakazam.caltasks import akflagmanager

    akflagmanager(**_task_kwargs(args, "akflagmanager"))


def _common(s):
    # also accepted after the subcommand, as for `alakazam run`
    s.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="warnings and errors only, no progress bars")
    from .cli import LogOnce

    s.add_argument("--log", default=argparse.SUPPRESS, metavar="FILE", action=LogOnce,
                   help="also write the log to FILE")


def add_parsers(sub):
    s = sub.add_parser("flag", help="flag data (the akflag task): a YAML file's flag blocks, or --vis ...")
    s.add_argument("config", nargs="?", default=None, help="YAML file whose flag blocks are run")
    _add_task_options(s, "akflag")
    _common(s)
    s.set_defaults(func=cmd_flag)
    s = sub.add_parser("flagmanager", help="list / save / restore / delete flag versions (akflagmanager)")
    _add_task_options(s, "akflagmanager")
    _common(s)
    s.set_defaults(func=cmd_flagmanager)
