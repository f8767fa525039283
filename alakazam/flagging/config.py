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

from ..config import _check_keys, _duplicate_terms, _Errors, _kwargs, _name, _require, _values
from ..errors import AlakazamError

#: akflag's modes (tasks_xml/akflag.xml; tests/test_schema.py pins the two lists to it)
MODES = ("manual", "unflag", "clip", "quack", "shadow", "elevation", "extend", "aoflagger", "mad", "tfcrop",
         "rflag", "summary")
#: modes that write FLAG (a flag version is saved first)
WRITING_MODES = ("manual", "unflag", "clip", "quack", "shadow", "elevation", "extend", "aoflagger", "mad",
                 "tfcrop", "rflag")
#: flagdata modes akflag does not have (a ParameterError naming the mode and what to use instead)
UNSUPPORTED_MODES = ("antint", "list")
_SELECTION_KEYS = ("field", "spw", "antenna", "uvrange", "timerange", "scan", "intent", "observation",
                   "correlation")


@dataclass
class FlagConfig:
    """One ``flag`` block / akflag call (CASA flagdata parameter names and meanings)."""

    ms: str
    mode: str = "manual"
    field: str = ""
    spw: str = ""
    antenna: str = ""
    uvrange: str = ""                   # CASA uv-distance selection (m, or per channel in wavelengths)
    timerange: str = ""
    scan: str = ""
    intent: str = ""
    observation: str = ""
    correlation: str = ""
    autocorr: bool = False              # select only the auto-correlations (flagdata's autocorr)
    # data | corrected | residual (CORRECTED_DATA - MODEL_DATA, as CASA's flagdata; with gaintable: DATA
    # corrected on the fly - MODEL_DATA) | residual_data (DATA - MODEL_DATA) | corrected_residual
    datacolumn: str = "data"
    strategy: str = ""                  # aoflagger: '' = from the telescope, a shipped name, or a .lua file
    clipminmax: List[float] = _dcfield(default_factory=list)
    clipoutside: bool = True
    clipzeros: bool = False
    quackinterval: float = 1.0
    quackmode: str = "beg"
    quackincrement: bool = False        # quack from the first / last unflagged integration (flagdata's)
    growtime: float = 50.0
    growfreq: float = 50.0
    extendpols: bool = True
    growaround: bool = False
    flagneartime: bool = False
    flagnearfreq: bool = False
    threshold: float = 5.0              # mad: robust sigmas
    # tfcrop (flagdata's parameters and defaults; flagging/tfcrop.py)
    ntime: object = "scan"              # 'scan' or seconds (a number or '60s', '2min')
    combinescans: bool = False
    timecutoff: float = 4.0
    freqcutoff: float = 3.0
    timefit: str = "line"
    freqfit: str = "poly"
    maxnpieces: int = 7
    flagdimension: str = "freqtime"
    usewindowstats: str = "none"
    halfwin: int = 1
    extendflags: bool = True            # tfcrop and rflag
    # rflag (flagdata's parameters and defaults; flagging/rflag.py; ntime, combinescans, extendflags above)
    winsize: int = 3
    timedev: object = _dcfield(default_factory=list)    # [] (computed), a number, or [[field, spw, dev]]
    freqdev: object = _dcfield(default_factory=list)
    timedevscale: float = 5.0
    freqdevscale: float = 5.0
    spectralmax: float = 1.0e6
    spectralmin: float = 0.0
    display: str = ""                   # flagdata's interactive display: only '' / 'none'
    tolerance: float = 0.0              # shadow: metres added to (D1+D2)/2
    addantenna: str = ""                # shadow: not supported (must be '')
    lowerlimit: float = 0.0             # elevation: degrees
    upperlimit: float = 90.0            # elevation: degrees
    flagbackup: bool = True             # accepted; a flag version is always saved (alakazam's safety rule)
    nproc: int = 1                      # aoflagger: worker processes (the binding holds the GIL)
    action: str = "apply"               # apply | calculate (count only, FLAG untouched)
    memory_limit_gb: float = 0.0
    quiet: bool = False
    # calibration applied on the fly to DATA before a data mode (flagging/preapply.py)
    gaintable: List[str] = _dcfield(default_factory=list)
    gainjones: List[str] = _dcfield(default_factory=list)
    gainfield: List[str] = _dcfield(default_factory=list)
    interp: List[str] = _dcfield(default_factory=list)
    parang: bool = False
    workers: int = 0                    # > 0: a dask LocalCluster (alakazam/distributed_apply.py)
    scheduler: str = ""                 # a dask scheduler address; wins over workers


#: the prefixes of a clip expression in ``correlation`` (flagdata's ABS_XX, REAL_ALL, ...)
CLIP_PREFIXES = ("ABS_", "REAL_", "IMAG_", "ARG_", "NORM_")


def unsupported_mode_message(mode) -> str:
    """The error for one of flagdata's modes akflag does not have (:data:`UNSUPPORTED_MODES`)."""
    return (f"{mode!r} (flagdata's) is not supported by akflag; for RFI use mode='tfcrop' (flagdata's "
            "tfcrop), mode='rflag' (flagdata's rflag), mode='aoflagger' (AOFlagger strategies) or mode='mad' "
            "(robust outliers); modes: "
            + ", ".join(MODES))


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
    """A ``flag`` block (or akflag parameters keyed like it) -> FlagConfig; all errors together.  Types,
    allowed values and ranges are akflag.xml's (:mod:`alakazam.schema`)."""
    errs = _Errors()
    _check_keys(d, "flag", where, names, errs)
    d = dict(d)
    if isinstance(d.get("mode"), str) and d["mode"].strip().lower() in UNSUPPORTED_MODES:
        errs.add(_name("mode", where, names), unsupported_mode_message(d["mode"]))
        d.pop("mode")
    if isinstance(d.get("datacolumn"), str):
        d["datacolumn"] = d["datacolumn"].lower()       # (flagdata accepts DATA, CORRECTED, ...)
    v = _values(d, "flag", where, names, errs, parsed=_SELECTION_KEYS)
    _require(d, "flag", where, names, errs)
    cfg = FlagConfig(**{k: _str(d, k, where, names, errs) for k in _SELECTION_KEYS}, **_kwargs(FlagConfig, v))
    _gain_params(cfg, d, where, names, errs, check_ms)
    if len(cfg.clipminmax) not in (0, 2):
        errs.add(_name("clipminmax", where, names),
                 f"{cfg.clipminmax!r} must be [] or two numbers [min, max]")
        cfg.clipminmax = []
    elif len(cfg.clipminmax) == 2 and not cfg.clipminmax[0] <= cfg.clipminmax[1]:
        errs.add(_name("clipminmax", where, names), f"{cfg.clipminmax!r}: min must not exceed max")
        cfg.clipminmax = []
    if cfg.mode == "quack" and not cfg.quackinterval > 0 \
            and _name("quackinterval", where, names) not in errs.errors:   # (flagdata refuses <= 0)
        errs.add(_name("quackinterval", where, names), f"{cfg.quackinterval!r} must be > 0 seconds "
                 "(as flagdata: 'quackinterval' must be greater than zero)")
    if cfg.mode == "shadow" and str(cfg.addantenna).strip():
        errs.add(_name("addantenna", where, names), f"{cfg.addantenna!r}: extra antennas are not supported "
                 "by akflag (only the MS's ANTENNA table is used); must be ''")
    if cfg.mode == "elevation" and not cfg.lowerlimit < cfg.upperlimit \
            and _name("upperlimit", where, names) not in errs.errors:
        errs.add(_name("upperlimit", where, names), f"{cfg.upperlimit!r} must exceed lowerlimit "
                 f"({cfg.lowerlimit!r}) degrees")
    prefixed = [c.strip() for c in str(cfg.correlation).split(",")
                if c.strip().upper().startswith(CLIP_PREFIXES)]
    if prefixed and cfg.mode not in ("clip", "tfcrop", "rflag"):
        # (CASA 6.7's flagdata applies its other modes to every correlation for such a form: measured,
        # review 54f -- 468,320 samples for manual 'ABS_XY' where 'XY' flags 117,080)
        casa = ("" if cfg.mode in ("mad", "aoflagger") else
                "; CASA's flagdata applies its other modes to every correlation for this form")
        errs.add(_name("correlation", where, names), f"{cfg.correlation!r}: {prefixed[0]!r} is a clip "
                 "expression (ABS_, REAL_, IMAG_, ARG_, NORM_: modes clip, tfcrop and rflag); the other "
                 f"modes select products: give them plainly (e.g. 'XY'){casa}")
    if not cfg.threshold > 0 and _name("threshold", where, names) not in errs.errors:
        errs.add(_name("threshold", where, names), f"{cfg.threshold!r} must be > 0 (robust sigmas)")
    if cfg.mode in ("tfcrop", "rflag"):
        _tfcrop_params(cfg, where, names, errs)
    if cfg.mode == "rflag":
        _rflag_params(cfg, where, names, errs)
    from ..config import check_cluster

    check_cluster(cfg, where, names, errs)
    if cfg.mode == "aoflagger" and cfg.strategy:
        from .aoflagger import check_strategy

        errs.run(_name("strategy", where, names), check_strategy, cfg.strategy, None)
    if check_ms and cfg.ms and os.path.exists(cfg.ms):
        # (a path that does not exist here may be relative to a YAML file: the YAML runner checks the
        # block again from the file's folder before anything runs; the task's XML requires it to exist)
        from .select import resolve

        for key, msg in resolve_errors(cfg, resolve).items():
            errs.add(_name(key, where, names), msg)
    errs.raise_if_any()
    return cfg


def _tfcrop_params(cfg, where, names, errs):
    """tfcrop's checks beyond the XML's (ntime's forms, cutoffs > 0, combinescans False); rflag's too."""
    from .tfcrop import ntime_seconds

    try:
        ntime_seconds(cfg.ntime)
    except ValueError as e:
        errs.add(_name("ntime", where, names), str(e))
    for key in ("timecutoff", "freqcutoff"):
        v = getattr(cfg, key)
        if not v > 0 and _name(key, where, names) not in errs.errors:
            errs.add(_name(key, where, names), f"{v!r} must be > 0 (a multiple of the rms deviation)")
    if cfg.combinescans:
        errs.add(_name("combinescans", where, names), "True is not supported by akflag: flagdata then makes "
                 "chunks of all scans of a field (with ntime='scan' too: measured, tfcrop and rflag flag "
                 "differently) and akflag flags each scan on its own; use combinescans=False")


def _rflag_params(cfg, where, names, errs):
    """rflag's checks beyond the XML's (timedev / freqdev forms, scales > 0, no interactive display, no
    threshold-only run); ntime and combinescans as tfcrop's (:func:`_tfcrop_params`)."""
    from .rflag import parse_dev

    for key in ("timedev", "freqdev"):
        try:
            parse_dev(getattr(cfg, key), key)
        except ValueError as e:
            errs.add(_name(key, where, names), str(e))
    for key in ("timedevscale", "freqdevscale"):
        v = getattr(cfg, key)
        if not v > 0 and _name(key, where, names) not in errs.errors:
            errs.add(_name(key, where, names), f"{v!r} must be > 0 (the threshold is {key} x "
                     f"{key[:-5]})")
    if str(cfg.display).strip().lower() not in ("", "none"):
        errs.add(_name("display", where, names), f"{cfg.display!r}: flagdata's interactive display / plot "
                 "reports are not supported by akflag; use '' (the flag counts are logged)")
    if cfg.action == "calculate":
        errs.add(_name("action", where, names), "'calculate' with mode='rflag' (flagdata: compute and return "
                 "the timedev / freqdev thresholds without flagging) is not supported by akflag; use "
                 "action='apply' (thresholds computed from the data of each chunk, as flagdata's "
                 "default) and undo with akflagmanager(mode='restore') if needed")


def _strlist(v):
    if v is None or v == "":
        return []
    return [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]


def _gain_params(cfg, d, where, names, errs, check_ms=True):
    """gaintable / gainjones / gainfield / interp / parang (the pre-apply of :mod:`.preapply`): one key
    per table entry (a single table serves every key), checked before anything runs."""
    from ..core.interpolation import MODES as TIME_INTERP_MODES

    FIELD_SELECT_MODES = ("nearest_time", "nearest_sky", "pinned")   # (chain.py; 'pinned' refused below)
    tables, jones = _strlist(d.get("gaintable")), _strlist(d.get("gainjones"))
    fsel, tint = _strlist(d.get("gainfield")), _strlist(d.get("interp"))
    if not tables and not jones:
        if cfg.parang:
            errs.add(_name("parang", where, names), "True needs gaintable and gainjones (the calibration "
                     "to apply before flagging)")
        for key, v in (("gainfield", fsel), ("interp", tint)):     # (before: ignored without a word)
            if any(v):
                errs.add(_name(key, where, names), f"is {v!r} but there is no term to apply (gaintable and "
                         "gainjones are empty); give the tables and their keys, or leave it out")
        return
    if not jones:
        errs.add(_name("gainjones", where, names), "is required with gaintable (one key per table, e.g. "
                 "['K0', 'G0'])")
        return
    if not tables:
        errs.add(_name("gaintable", where, names), "is required with gainjones")
        return
    if len(tables) == 1:
        tables = tables * len(jones)
    # every bad entry is said, a count mismatch with the others (it hid them: a review); only the
    # per-table checks below need one table per key
    tables_ok = True
    for key, v, allowed in (("gaintable", tables, None), ("gainfield", fsel, FIELD_SELECT_MODES),
                            ("interp", tint, TIME_INTERP_MODES)):
        if v and len(v) != len(jones):
            errs.add(_name(key, where, names), f"has {len(v)} entries but gainjones has {len(jones)}; give "
                     "one per key" + ("" if key == "gaintable" else " or none"))
            tables_ok = tables_ok and key != "gaintable"
        for i, x in enumerate(v if allowed else []):
            if x and x not in allowed:
                errs.add(_name(key, where, names), f"[{i}] {x!r} is not allowed; expected one of "
                         f"{', '.join(allowed)}")
    if tables_ok:
        _duplicate_terms(tables, jones, _name("gainjones", where, names), errs)
    if "pinned" in fsel:
        errs.add(_name("gainfield", where, names), "'pinned' is not supported by akflag (use nearest_time "
                 "or nearest_sky)")
    if cfg.datacolumn in ("corrected", "corrected_residual"):
        errs.add(_name("datacolumn", where, names), f"{cfg.datacolumn!r} with gaintable would correct the "
                 "data twice; use 'data' or 'residual' (DATA corrected on the fly)")
    elif cfg.datacolumn == "residual_data":
        errs.add(_name("datacolumn", where, names), "'residual_data' is DATA - MODEL_DATA uncorrected, but "
                 "gaintable corrects DATA on the fly; use 'residual' (the corrected DATA - MODEL_DATA)")
    if cfg.mode not in ("aoflagger", "mad", "clip", "tfcrop", "rflag"):
        errs.add(_name("gaintable", where, names), f"is used only by the data modes aoflagger, mad, clip, "
                 "tfcrop and rflag "
                 f"(mode is {cfg.mode!r})")
    for i, tb in enumerate(tables if check_ms and tables_ok else []):  # (a YAML file's: checked there)
        if not os.path.exists(tb):
            errs.add(_name("gaintable", where, names), f"[{i}] {tb!r} does not exist")
        elif not (os.path.isdir(tb) or _is_hdf5(tb)):     # (a CASA caltable is a directory)
            from ..core.selcheck import not_a_table

            errs.add(_name("gaintable", where, names), f"[{i}] {not_a_table(tb)}")
        else:                                              # the key in its table, with the rest
            from ..io import solutions

            try:
                solutions.resolve_key(tb, jones[i])
            except AlakazamError as e:
                errs.add(_name("gainjones", where, names), f"[{i}] {e}")
    cfg.gaintable, cfg.gainjones, cfg.gainfield, cfg.interp = tables, jones, fsel, tint


def _is_hdf5(path) -> bool:
    import h5py

    return os.path.isfile(path) and h5py.is_hdf5(path)


def resolve_errors(cfg, resolve) -> dict:
    """{key: message} for every selection string of ``cfg`` that does not parse against its MS."""
    from ..errors import AlakazamError

    out = {}
    try:
        resolve(cfg, keys_errors=out)
    except AlakazamError as e:
        msg = str(e)
        out.setdefault("ms", msg[len("vis/ms: "):] if msg.startswith("vis/ms: ") else msg)
    return out
