"""``FlagConfig`` (the flagging engine's input) and its builder from a YAML-keyed dict.

A YAML ``flag`` block and the ``akflag`` task build the same :class:`FlagConfig` through
:func:`flag_config_from_dict`; every error of a block is reported together (YAML path or task
parameter, value, what was expected), before anything runs.  The CASA selection strings are parsed
against the MS here too, so a bad antenna name or timerange stops the run before any block runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from dataclasses import field as _dcfield
from typing import List

from ..config import _check_keys, _Errors, _name, _typed

MODES = ("manual", "unflag", "clip", "quack", "extend", "aoflagger", "mad", "summary")
#: modes that write FLAG (a flag version is saved first)
WRITING_MODES = ("manual", "unflag", "clip", "quack", "extend", "aoflagger", "mad")
DATACOLUMNS = ("data", "corrected", "residual", "corrected_residual")
QUACKMODES = ("beg", "endb", "end", "tail")
ACTIONS = ("apply", "calculate")
_SELECTION_KEYS = ("field", "spw", "antenna", "timerange", "scan", "correlation")

FLAG_KEYS = {"ms", "mode", "field", "spw", "antenna", "timerange", "scan", "correlation", "datacolumn",
             "strategy", "clipminmax", "clipoutside", "clipzeros", "quackinterval", "quackmode", "growtime",
             "growfreq", "extendpols", "growaround", "flagneartime", "flagnearfreq", "threshold", "action",
             "nproc", "memory_limit_gb", "quiet", "workers", "scheduler"}


@dataclass
class FlagConfig:
    """One ``flag`` block / akflag call (CASA flagdata parameter names and meanings)."""

    ms: str
    mode: str = "manual"
    field: str = ""
    spw: str = ""
    antenna: str = ""
    timerange: str = ""
    scan: str = ""
    correlation: str = ""
    datacolumn: str = "data"            # data | corrected | residual (DATA - MODEL_DATA) | corrected_residual
    strategy: str = ""                  # aoflagger: '' = from the telescope, a shipped name, or a .lua file
    clipminmax: List[float] = _dcfield(default_factory=list)
    clipoutside: bool = True
    clipzeros: bool = False
    quackinterval: float = 1.0
    quackmode: str = "beg"
    growtime: float = 50.0
    growfreq: float = 50.0
    extendpols: bool = True
    growaround: bool = False
    flagneartime: bool = False
    flagnearfreq: bool = False
    threshold: float = 5.0              # mad: robust sigmas
    nproc: int = 1                      # aoflagger: worker processes (the binding holds the GIL)
    action: str = "apply"               # apply | calculate (count only, FLAG untouched)
    memory_limit_gb: float = 0.0
    quiet: bool = False
    workers: int = 0                    # > 0: a dask LocalCluster (alakazam/distributed_apply.py)
    scheduler: str = ""                 # a dask scheduler address; wins over workers


def _str(d, key, where, names, errs):
    v = d.get(key, "")
    if v is None:
        return ""
    if isinstance(v, (list, tuple)) and key in _SELECTION_KEYS:
        sep = ";" if key == "antenna" else ","
        return sep.join(str(x) for x in v)
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        errs.add(_name(key, where, names), f"{v!r} must be a string (CASA selection syntax)")
        return ""
    return str(v)


def flag_config_from_dict(d, where="flag[0]", names=None, check_ms=True) -> FlagConfig:
    """A ``flag`` block (or akflag parameters keyed like it) -> FlagConfig; all errors together."""
    errs = _Errors()
    _check_keys(d, FLAG_KEYS, where, names, errs)
    ms = d.get("ms")
    if not ms or not isinstance(ms, str):
        errs.add(_name("ms", where, names), f"{ms!r}: a Measurement Set path is required")
        ms = ""
    cfg = FlagConfig(
        ms=ms,
        mode=_typed(d, "mode", str, "manual", where, names, errs, choices=MODES),
        field=_str(d, "field", where, names, errs), spw=_str(d, "spw", where, names, errs),
        antenna=_str(d, "antenna", where, names, errs), timerange=_str(d, "timerange", where, names, errs),
        scan=_str(d, "scan", where, names, errs), correlation=_str(d, "correlation", where, names, errs),
        datacolumn=str(_typed(d, "datacolumn", str, "data", where, names, errs)).lower(),
        strategy=_typed(d, "strategy", str, "", where, names, errs),
        clipoutside=_typed(d, "clipoutside", bool, True, where, names, errs),
        clipzeros=_typed(d, "clipzeros", bool, False, where, names, errs),
        quackinterval=_typed(d, "quackinterval", float, 1.0, where, names, errs),
        quackmode=_typed(d, "quackmode", str, "beg", where, names, errs, choices=QUACKMODES),
        growtime=_typed(d, "growtime", float, 50.0, where, names, errs),
        growfreq=_typed(d, "growfreq", float, 50.0, where, names, errs),
        extendpols=_typed(d, "extendpols", bool, True, where, names, errs),
        growaround=_typed(d, "growaround", bool, False, where, names, errs),
        flagneartime=_typed(d, "flagneartime", bool, False, where, names, errs),
        flagnearfreq=_typed(d, "flagnearfreq", bool, False, where, names, errs),
        threshold=_typed(d, "threshold", float, 5.0, where, names, errs),
        action=_typed(d, "action", str, "apply", where, names, errs, choices=ACTIONS),
        nproc=_typed(d, "nproc", int, 1, where, names, errs),
        memory_limit_gb=_typed(d, "memory_limit_gb", float, 0.0, where, names, errs),
        workers=_typed(d, "workers", int, 0, where, names, errs), scheduler=str(d.get("scheduler") or ""),
        quiet=_typed(d, "quiet", bool, False, where, names, errs))
    if cfg.datacolumn not in DATACOLUMNS:
        errs.add(_name("datacolumn", where, names),
                 f"{d.get('datacolumn')!r} is not allowed; expected one of {', '.join(DATACOLUMNS)}")
    cmm = d.get("clipminmax") or []
    if not isinstance(cmm, (list, tuple)) or len(cmm) not in (0, 2) or \
            any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in cmm):
        errs.add(_name("clipminmax", where, names), f"{cmm!r} must be [] or two numbers [min, max]")
    elif len(cmm) == 2 and not cmm[0] <= cmm[1]:
        errs.add(_name("clipminmax", where, names), f"{list(cmm)!r}: min must not exceed max")
    else:
        cfg.clipminmax = [float(x) for x in cmm]
    if cfg.quackinterval < 0:
        errs.add(_name("quackinterval", where, names), f"{cfg.quackinterval!r} must be >= 0 seconds")
    for k in ("growtime", "growfreq"):
        v = getattr(cfg, k)
        if not 0.0 <= v <= 100.0:
            errs.add(_name(k, where, names), f"{v!r} must be a percentage in 0~100 (0 disables)")
    if not cfg.threshold > 0:
        errs.add(_name("threshold", where, names), f"{cfg.threshold!r} must be > 0 (robust sigmas)")
    from ..config import check_cluster
    check_cluster(cfg, where, names, errs)
    if cfg.nproc < 1:
        errs.add(_name("nproc", where, names), f"{cfg.nproc!r} must be >= 1 (worker processes)")
    if cfg.memory_limit_gb < 0:
        errs.add(_name("memory_limit_gb", where, names), f"{cfg.memory_limit_gb!r} must be >= 0 (0 = auto)")
    if cfg.mode == "aoflagger" and cfg.strategy:
        from .aoflagger import strategy_path

        errs.run(_name("strategy", where, names), strategy_path, cfg.strategy, None)
    if check_ms and cfg.ms and os.path.isdir(cfg.ms):
        # (a path that does not exist here may be relative to a YAML file: the YAML runner checks the
        # block again from the file's folder before anything runs; the task's XML requires it to exist)
        from .select import resolve

        for key, msg in resolve_errors(cfg, resolve).items():
            errs.add(_name(key, where, names), msg)
    errs.raise_if_any()
    return cfg


def resolve_errors(cfg, resolve) -> dict:
    """{key: message} for every selection string of ``cfg`` that does not parse against its MS."""
    from ..errors import AlakazamError

    out = {}
    try:
        resolve(cfg, keys_errors=out)
    except AlakazamError as e:
        out.setdefault("ms", str(e))
    return out
