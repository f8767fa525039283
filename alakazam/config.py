"""Configuration dataclasses (the engine's input) and their YAML / string parsers.

The engine takes these dataclasses; the task layer (``alakazam.caltasks``) and the YAML runner build
them.  Every parse error is an :class:`~alakazam.errors.AlakazamError` naming the YAML path
(e.g. ``solve[0].time_interval[2]``) or task parameter, the value and what was expected.

Conventions
-----------
* ``time_interval`` per step: ``"inf"``/``"infinity"`` (one solution over all selected scans of a
  field, n_time=1), ``"scan"`` (one per scan), or a duration ``"120s"``, ``"5min"``, ``"2m"`` (minutes,
  as SEED.md allows in YAML), ``"1h"``, or a plain number of seconds.  Parsed by
  :func:`parse_time_interval` into :class:`TimeInterval`.
* ``freq_interval`` per step: ``"full"``/``"inf"`` (n_freq=1 per SPW), a width ``"4MHz"``,
  ``"128kHz"``, ``"1GHz"``, ``"500Hz"``, or a number of channels ``"4ch"`` (CASA's solint
  ``'inf,4ch'``; measured: CASA 6.7 bandpass accepts it).  Parsed by :func:`parse_freq_interval`
  (width in Hz, :class:`Channels`, or None for full).
"""

from __future__ import annotations

import os

from dataclasses import dataclass, field, fields
from typing import List, Optional, Union

from .jones.terms import names as _jones_names

JONES_TYPES = _jones_names()


@dataclass(frozen=True)
class TimeInterval:
    """A parsed time_interval.  kind is 'inf', 'scan' or 'seconds' (then ``seconds`` > 0)."""

    kind: str
    seconds: float = 0.0
    text: str = ""
    #: seconds a time may fall short of a cell edge and still count in the next cell
    #: (:func:`alakazam.plan.time_cells`): half an integration for 'int' / 'Nints'
    #: (:func:`resolve_integrations`), else 0
    snap: float = 0.0
    #: 'Nints' resolved (:func:`resolve_integrations`): N, the integrations per cell -- the solve counts
    #: each scan's integrations (:func:`alakazam.plan.integration_edges`); 0 for any other interval
    ints: int = 0

    @property
    def solint_s(self) -> float:
        """Seconds for the HDF5 ``solint_s`` attr: inf -> +inf, scan -> -1 (one per scan)."""
        if self.kind == "inf":
            return float("inf")
        if self.kind == "scan":
            return -1.0
        return float(self.seconds)


@dataclass
class ExternalPreapply:
    """Solutions from earlier runs pre-applied before the block's first step."""

    tables: List[str] = field(default_factory=list)
    jones: List[str] = field(default_factory=list)          # keys, e.g. K0, G0
    field_select: List[str] = field(default_factory=list)   # nearest_time | nearest_sky | pinned
    time_interp: List[str] = field(default_factory=list)    # exact | nearest | linear | cubic
    # CASA interp freq part per term ('' = nearest bin)
    freq_interp: List[str] = field(default_factory=list)
    solution_field: List[Optional[List[str]]] = field(default_factory=list)
    # CASA spwmap per term ([] = none): data SPW i pre-applies the table's SPW spwmap[i]
    # (calibration/spwmap.py)
    spwmap: List[List[int]] = field(default_factory=list)


@dataclass
class SolveStep:
    """One term of a solve chain (already broadcast from the block's per-step lists)."""

    jones_type: str                 # K | G | D | KC | CP
    key: str                        # K0, G0, G1 ... (per-type counter from 0 within the output file)
    field: List[str]                # field names or ids to solve on
    time_interval: TimeInterval
    freq_interval_hz: Optional[float]   # None = full SPW
    freq_interval_text: str = "full"
    phase_only: bool = False
    preapply_time_interp: str = "nearest"
    amp_only: bool = False          # G amplitude only (CASA calmode='a'); YAML amp_only
    combine: str = ""               # CASA combine ('' or 'scan'; core/combine.py)


@dataclass
class SolveConfig:
    """One ``solve`` block."""

    ms: str
    output: str
    steps: List[SolveStep]
    ref_ant: Union[int, str, List[Union[int, str]]] = 0   # name/index, or a list in priority order
    #: ref_ant not given (YAML key absent or null, akcal refant=''): ANTENNA 0, or the first antenna by
    #: ANTENNA id with data in the MS when 0 has none (flow.run_solve says which)
    ref_ant_default: bool = False
    ref_ant_mode: str = "flex"      # flex (fall back, re-reference) | strict (flag); solvers/rereference.py
    data_col: str = "DATA"
    model_col: str = "MODEL_DATA"
    solver_backend: str = "numba"
    apply_parang: bool = False
    rfi_threshold: float = 5.0      # MAD sigmas; 0 disables
    min_snr: float = 3.0            # flag solutions with SNR below (CASA minsnr); 0 disables
    min_bl_per_ant: int = 4         # CASA minblperant; 0 disables
    max_iter: int = 100
    tol: float = 1.0e-10
    memory_limit_gb: float = 0.0    # 0 = 40% of available RAM
    gpu: bool = False
    spw: str = ""                   # CASA SPW/channel selection; "" = all
    scan: str = ""                  # CASA scan selection; "" = all
    external_preapply: Optional[ExternalPreapply] = None
    quiet: bool = False
    workers: int = 0                # > 0: a dask LocalCluster of this many worker processes
    scheduler: str = ""             # a dask scheduler address (tcp://host:port); wins over workers
    # antenna/uvrange/timerange/intent/observation (core/rowselect.py)
    select: dict = field(default_factory=dict)
    append: bool = False            # add to existing keys (io/solappend.py) instead of replacing them
    solnorm: bool = False           # normalise G amplitudes (calibration/solnorm.py)
    normtype: str = "mean"
    fill_gaps: int = 0              # CASA bandpass fillgaps (calibration/fillgaps.py)
    iterations: int = 1             # rounds of the block: 2+ re-solve each step with all others applied
    leakage_gauge: str = "reference"   # D: reference (CASA, d_pq[ref] = 0) | absolute (linear feeds)
    plots: str = ""                 # directory for the solution plots of this block; "" = none
    smodel: List[float] = field(default_factory=list)   # CASA smodel [I, Q, U, V]; [] = model column


@dataclass
class FluxscaleConfig:
    """One ``fluxscale`` block."""

    reference_table: str
    reference_field: List[str]
    transfer_field: List[str]       # [] = every other field with solutions
    output: str
    jones_type: str = "G0"          # the key to scale
    transfer_table: Optional[str] = None   # default: reference_table
    spw: str = ""
    method: str = "mean"            # mean (CASA) | interpolate; YAML key fluxscale_method
    refspwmap: List[int] = field(default_factory=lambda: [-1])   # CASA semantics; [-1] = none
    fitorder: int = 1               # spectral fit order across SPWs
    reffreq: float = 0.0            # Hz; 0 = 10**mean(log10 freq) as CASA
    gain_threshold: float = -1.0    # fractional deviation from the median; < 0 = off
    ms: str = ""                    # the MS whose MODEL_DATA gives the model flux ('' = the tables' attr ms)


@dataclass
class ApplyTerm:
    """One term to apply."""

    key: str                    # e.g. K0, G1
    table: str
    field_select: str = "nearest_time"
    time_interp: str = "nearest"
    solution_field: Optional[List[str]] = None   # required when field_select == 'pinned'
    freq_interp: str = ""       # CASA interp 'time,freq' freq part (core/freqinterp.py); '' = nearest bin
    spwmap: List[int] = field(default_factory=list)   # CASA spwmap of this table (calibration/spwmap.py)
    calwt: bool = False         # scale the weights by this term's gains (calibration/calwt.py)
    #: the time part of interp was given (False: defaulted to nearest, where CASA's default is linear;
    #: calibration/interpnotes.casa_time_default_notes)
    time_interp_given: bool = True


@dataclass
class ApplyConfig:
    """One ``apply`` block."""

    ms: str
    terms: List[ApplyTerm]
    output_col: str = "CORRECTED_DATA"
    data_col: str = "DATA"
    target_field: Optional[List[str]] = None     # None = all fields
    target_scans: str = ""
    spw: str = ""
    apply_parang: bool = False
    propagate_flags: bool = False
    memory_limit_gb: float = 0.0
    quiet: bool = False
    # antenna/uvrange/timerange/intent/observation (core/rowselect.py)
    select: dict = field(default_factory=dict)
    correlation: str = ""                        # correlations written ('' = all; core/corrselect.py)
    applymode: str = ""             # CASA applymode (calibration/applymode.py); "" = from propagate_flags
    workers: int = 0                # > 0: a dask LocalCluster (alakazam/distributed_apply.py)
    scheduler: str = ""             # a dask scheduler address (tcp://host:port); wins over workers


@dataclass
class RunConfig:
    """A whole YAML file: blocks executed in order flag -> solve -> fluxscale -> apply."""

    solve: List[SolveConfig] = field(default_factory=list)
    fluxscale: List[FluxscaleConfig] = field(default_factory=list)
    apply: List[ApplyConfig] = field(default_factory=list)
    flag: list = field(default_factory=list)        # alakazam.flagging.FlagConfig, run before solve


# ==================================================================================================
# parsing
# ==================================================================================================
import difflib  # noqa: E402
import re  # noqa: E402

from . import schema  # noqa: E402
from .errors import AlakazamError, ParameterError  # noqa: E402

#: CASA applycal applymodes (alakazam.calibration.applymode)
APPLY_MODES = ("calflag", "calflagstrict", "calonly", "trial", "flagonly", "flagonlystrict")

_TIME_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "hr": 3600.0}
_FREQ_UNITS = {"hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}
_NUM = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def parse_time_interval(value, where="time_interval") -> TimeInterval:
    """'inf'/'infinity', 'scan', '120s', '5min', '2m' (minutes), '1h', a number of seconds, or CASA's
    'int' / '5ints' (kind 'ints', ``seconds`` = the number of integrations: the solve turns it into
    that many times the MS's median INTERVAL, :func:`resolve_integrations`)."""
    expected = ("expected inf, scan, int, 5ints, or a duration like 120s, 5min, 2m, 1h (or seconds as a "
                "number)")
    if isinstance(value, bool):
        raise AlakazamError(f"{where}: {value!r} is not a time interval; {expected}")
    if isinstance(value, (int, float)):
        if value > 0 and value != float("inf"):
            return TimeInterval("seconds", float(value), f"{value}s")
        if value == float("inf"):
            return TimeInterval("inf", 0.0, "inf")
        raise AlakazamError(f"{where}: {value!r} must be positive; {expected}")
    text = str(value).strip().lower()
    if text in ("inf", "infinity"):
        return TimeInterval("inf", 0.0, "inf")
    if text == "scan":
        return TimeInterval("scan", 0.0, "scan")
    m = re.fullmatch(r"(\d*)\s*ints?", text)        # CASA 'int' / '5ints': integrations (flow resolves)
    if m and text != "ints" and int(m.group(1) or 1) > 0:
        return TimeInterval("ints", float(int(m.group(1) or 1)), str(value).strip())
    m = re.fullmatch(_NUM + r"\s*(s|sec|min|m|h|hr)?", text)
    if m:
        sec = float(m.group(1)) * _TIME_UNITS[m.group(2) or "s"]
        if sec > 0:
            return TimeInterval("seconds", sec, str(value).strip())
    raise AlakazamError(f"{where}: {value!r} is not a time interval; {expected}")


def resolve_integrations(tint: TimeInterval, interval_s: float) -> TimeInterval:
    """'Nints' -> N x the MS's integration time (median INTERVAL) in seconds; other kinds unchanged.
    Bins stay anchored at each scan start, so with regular integrations each bin holds N of them.

    'int' / 'Nints' get ``snap`` = half an integration: their cell edges sit midway between integrations
    (:func:`alakazam.plan.time_cells`), so TIME off its grid by less than that -- a converter's rounding
    through a Julian Date (~20 us), per-baseline time centroids -- never moves an integration into the
    cell before (with edges on the integrations, 1 us merged 'int' solutions; CASA keeps one per
    integration).  On an exact grid the cells are the same.  A duration ('60s') keeps its edges at
    multiples of itself from the scan start, as CASA's (a review: snapping durations within 1% of
    whole integrations, e.g. '10.05s', made other cells than CASA's)."""
    if tint.kind != "ints":
        return tint
    if not interval_s or interval_s <= 0:
        raise AlakazamError(f"time_interval: {tint.text!r} needs the MS integration time, which is unknown "
                            "(INTERVAL is 0)")
    return TimeInterval("seconds", tint.seconds * float(interval_s), tint.text, snap=0.5 * float(interval_s),
                        ints=int(tint.seconds))


class Channels(int):
    """A frequency interval of this many channels per solution bin ('4ch'), whatever their width:
    :func:`alakazam.plan.freq_bins` takes it as the channel count; the solution's ``freqint_hz`` attr
    is the count times the SPW's channel width."""

    channels = property(int)


def parse_freq_interval(value, where="freq_interval"):
    """(width_hz, :class:`Channels` or None for full, text): 'full'/'inf', '4MHz', '128kHz', '1GHz',
    '500Hz', a number = Hz, '4ch' = 4 channels."""
    expected = "expected full, inf, a width like 4MHz, 128kHz (or Hz as a number), or channels like 4ch"
    if isinstance(value, bool):
        raise AlakazamError(f"{where}: {value!r} is not a frequency interval; {expected}")
    if isinstance(value, (int, float)):
        if value == float("inf"):
            return None, "full"
        if value > 0:
            return float(value), f"{value}Hz"
        raise AlakazamError(f"{where}: {value!r} must be positive; {expected}")
    text = str(value).strip().lower()
    if text in ("full", "inf", "infinity"):
        return None, "full"
    m = re.fullmatch(r"(\d+)\s*(ch|chan|chans|channel|channels)", text)
    if m and int(m.group(1)) > 0:
        return Channels(int(m.group(1))), f"{int(m.group(1))}ch"
    m = re.fullmatch(_NUM + r"\s*(hz|khz|mhz|ghz)?", text)
    if m and float(m.group(1)) > 0:
        return float(m.group(1)) * _FREQ_UNITS[m.group(2) or "hz"], str(value).strip()
    raise AlakazamError(f"{where}: {value!r} is not a frequency interval; {expected}")


class _Errors:
    """Collects every error of a block; raised together as one ParameterError."""

    def __init__(self):
        self.errors = {}

    def add(self, path, msg):
        self.errors.setdefault(path, []).append(msg)

    def run(self, path, fn, *a):
        try:
            return fn(*a)
        except AlakazamError as e:
            msg = str(e)
            head, sep, rest = msg.partition(": ")
            if sep and (head == path or head.startswith(path + "[")):   # the message names its own path
                path, msg = head, rest
            self.add(path, msg)
            return None

    def raise_if_any(self):
        if self.errors:
            raise ParameterError(self.errors)


def _name(key, where, names):
    shown = names.get(key, key) if names else key
    return f"{where}.{shown}" if where else shown


def broadcast_steps(value, n_steps, path, errs: _Errors, default=None):
    """Scalar -> per-step list; a list must have exactly n_steps entries, or one entry, which (as a
    scalar, and as CASA's one-entry gainfield / interp / spwmap lists) serves every step."""
    if value is None:
        value = default
    if isinstance(value, (list, tuple)):
        if len(value) == 1 and n_steps != 1:
            return [value[0]] * n_steps
        if len(value) != n_steps:
            errs.add(path, f"has {len(value)} entries but jones has {n_steps} steps; give one per step "
                           "or a single value for all")
            return [default] * n_steps
        return list(value)
    return [value] * n_steps


#: CASA calibration types a CASA user may write, and what they are here
_CASA_JONES = {
    "B": "CASA's bandpass B is jones 'G' with a per-channel frequency interval: akcal freqint, "
         "YAML freq_interval (e.g. solint 'inf' with freqint '1MHz' or the channel width)",
    "BPOLY": "a polynomial bandpass is not supported; a bandpass is jones 'G' with a per-channel freqint",
    "DF": "CASA's Df (leakage per channel) is jones 'D' with a per-channel freqint",
    "DF+QU": "jones 'D' (the source's Q, U are not solved)",
    "KCROSS": "CASA's KCROSS is jones 'KC'",
    "XF": "CASA's Xf (cross-hand phase per channel) is jones 'CP' with a per-channel freqint",
    "X": "CASA's X (cross-hand phase) is jones 'CP'",
    "GSPLINE": "a spline gain is not supported; use jones 'G' per integration or scan",
}


def assign_keys(jones_list, existing_keys=(), where="jones"):
    """['K','G','D','G','G'] -> ['K0','G0','D0','G1','G2'], continuing after keys already present."""
    from .io.hdf5 import _KEY_RE

    counters = {}
    for k in existing_keys:
        m = _KEY_RE.match(str(k))
        if m:
            counters[m.group(1)] = max(counters.get(m.group(1), 0), int(m.group(2)) + 1)
    out = []
    for i, j in enumerate(jones_list):
        t = str(j).strip().upper()
        if t not in JONES_TYPES:
            hint = _CASA_JONES.get(t)
            raise AlakazamError(f"{where}[{i}]: {j!r} is not a Jones type; expected one of "
                                f"{', '.join(JONES_TYPES)}" + (f" ({hint})" if hint else ""))
        n = counters.get(t, 0)
        out.append(f"{t}{n}")
        counters[t] = n + 1
    return out


_SELECT_KEYS = ("antenna", "uvrange", "timerange", "intent", "observation")   # = core.rowselect.SELECT_KEYS

#: YAML keys a block must give (the tasks have defaults for some of them; a YAML block must say)
REQUIRED = {"solve": ("ms", "output", "jones"), "fluxscale": ("reference_table", "reference_field", "output"),
            "apply": ("ms", "jones", "tables"), "flag": ("ms",)}


def _check_keys(d, section, where, names, errs):
    """Unknown keys of a block (the XML's yamlkeys and schema.YAML_ONLY are the known ones)."""
    if not isinstance(d, dict):
        raise ParameterError({where or "block": [f"expected a mapping of keys, got {type(d).__name__}"]})
    allowed = schema.top_keys(section)
    for k in d:
        if k not in allowed:
            hint = schema.unknown_key_hint(section, k)
            errs.add(_name(k, where, names), f"unknown key{hint} (valid: {', '.join(sorted(allowed))})")


def _values(d, section, where, names, errs, parsed=()) -> dict:
    """{YAML key: value} for every key of the block's schema except ``parsed`` (the keys whose YAML form
    the caller parses itself): checked as the XML says (type, allowed values, range; a list for a
    *Vec), the XML default when absent or ~ (or when bad: the error is recorded)."""
    out = {}
    for key in schema.specs(section):
        if key in parsed or "." in key:
            continue
        v, err = schema.check(section, key, d.get(key))
        if err:
            errs.add(_name(key, where, names), err)
            v = schema.default(section, key)
        out[key] = v
    return out


def _require(d, section, where, names, errs):
    """REQUIRED keys that are absent or empty (a key already reported bad is not reported again)."""
    for key in REQUIRED[section]:
        path = _name(key, where, names)
        if d.get(key) in (None, "", []) and path not in errs.errors:
            errs.add(path, "is required")


def _kwargs(cls, values) -> dict:
    """The values whose YAML key is a field of the dataclass ``cls``."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def parse_ref_ant(v):
    """A reference antenna as given -- 'C03,C04', ['C03', 'C04'], 3 or 'C03' -- as one name/index or a
    list in priority order (items of digits -> int), the same for akcal's refant and YAML's ref_ant.
    '' or [] (CASA's unset refant) or None -> None: the default, ANTENNA index 0 or, when it has no
    data in the MS, the first antenna with data (each cell then falls back to the antenna with the
    most data where the reference has none, refantmode 'flex').  Other types are returned as given,
    for the caller's check to name."""
    if v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, (list, tuple)) and not v):
        return None
    if isinstance(v, str):
        items = [s.strip() for s in v.split(",")]
    elif isinstance(v, (list, tuple)):
        items = list(v)
    else:
        return v
    items = [int(x) if isinstance(x, str) and x.isdigit() else x for x in items]
    return items[0] if len(items) == 1 else items


def _field_list(v):
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        return [str(x) for x in v]
    return [s.strip() for s in str(v).split(",") if s.strip()]


def _per_step_allowed(values, section, key, where, names, errs):
    ok = schema.allowed(section, key)
    for i, v in enumerate(values):
        if v not in ok:
            errs.add(f"{_name(key, where, names)}[{i}]",
                     f"{v!r} is not allowed; expected one of {', '.join(ok)}")


def check_cluster(cfg, where, names, errs):
    """``workers`` >= 0 and ``scheduler`` a dask address (solve, apply and flag blocks)."""
    if cfg.workers is not None and cfg.workers < 0:
        errs.add(_name("workers", where, names), f"{cfg.workers} must be >= 0 (0 = in this process)")
    if cfg.scheduler and not re.match(r"^(tcp|tls|inproc|ucx|ws|wss)://\S+$", cfg.scheduler):
        errs.add(_name("scheduler", where, names),
                 f"{cfg.scheduler!r} is not a dask scheduler address; expected e.g. tcp://host:8786")


def _duplicate_terms(tables, keys, path, errs):
    """A (table, key) listed twice (resolved as the apply does: core/selcheck.duplicate_terms) is refused
    at ``path`` (the keys' parameter): it was applied twice, without a word."""
    from .core.selcheck import duplicate_message, duplicate_terms

    for i, j, real in duplicate_terms(tables, keys):
        errs.add(path, duplicate_message(tables, keys, i, j, real))


def _time_freq_interp(values, key, where, names, errs):
    """(time parts, freq parts) of per-term interp values, CASA 'time[,freq]' (core/freqinterp.py; freq
    '' = the nearest solution bin; time one of core.interpolation.MODES -- the XML's interp has no enum,
    its values may carry the freq part).  Errors name ``key[i]``, the value and what was expected."""
    from .core.freqinterp import parse_interp
    from .core.interpolation import MODES

    tin, fin = list(values), [""] * len(values)
    for i, v in enumerate(values):
        path = f"{_name(key, where, names)}[{i}]"
        if not isinstance(v, str):
            errs.add(path, f"{v!r} is not allowed; expected one of {', '.join(MODES)}")
            continue
        tf = errs.run(path, parse_interp, v, MODES, path)
        if tf:
            tin[i], fin[i] = tf
    return tin, fin


def solve_config_from_dict(d, where="solve[0]", names=None, existing_keys=()) -> SolveConfig:
    """A ``solve`` block (SEED.md YAML keys) -> SolveConfig; all errors reported together.  ``ms`` may
    be a list of MSs solved as one job (:mod:`alakazam.multims`)."""
    if isinstance(d.get("ms"), (list, tuple)):
        from .multims import config_many
        return config_many(solve_config_from_dict, d, where, names, existing_keys=existing_keys)
    errs = _Errors()
    _check_keys(d, "solve", where, names, errs)
    per_step = ("jones", "field", "time_interval", "freq_interval", "phase_only", "amp_only",
                "preapply_time_interp", "ref_ant", "combine", "smodel")
    v = _values(d, "solve", where, names, errs, parsed=per_step)
    _require(d, "solve", where, names, errs)
    jones = d.get("jones") or []
    jones = jones if isinstance(jones, (list, tuple)) else [jones]
    keys = errs.run(_name("jones", where, names), assign_keys, jones, existing_keys,
                    _name("jones", where, names)) or []
    n = len(jones)
    # field: list of lists (one per step), or one list / string for every step
    f = d.get("field")
    if isinstance(f, (list, tuple)) and f and all(isinstance(x, (list, tuple)) for x in f):
        if len(f) != n:
            flat = ",".join(str(x) for v in f for x in v)
            errs.add(_name("field", where, names), f"has {len(f)} entries but jones has {n} steps; give one "
                     f"selection per step, or one for every step (akcal: field='{flat}'; YAML: a flat "
                     "list)")
            fields_ = [[]] * n
        else:
            fields_ = [_field_list(x) for x in f]
    else:
        fields_ = [_field_list(f) or []] * n
    step = {k: broadcast_steps(d.get(k), n, _name(k, where, names), errs, schema.default("solve", k))
            for k in ("time_interval", "freq_interval", "preapply_time_interp")}
    po = broadcast_steps(d.get("phase_only"), n, _name("phase_only", where, names), errs, False)
    ao = broadcast_steps(d.get("amp_only"), n, _name("amp_only", where, names), errs, False)
    _per_step_allowed(step["preapply_time_interp"], "solve", "preapply_time_interp", where, names, errs)
    from .core.combine import check_step, parse_combine
    cb = broadcast_steps(d.get("combine"), n, _name("combine", where, names), errs, "")
    cb = [errs.run(f"{_name('combine', where, names)}[{i}]", parse_combine, cb[i],
                   f"{_name('combine', where, names)}[{i}]") or "" for i in range(n)]
    steps = []
    for i in range(n):
        tpath, fpath = (f"{_name(k, where, names)}[{i}]" for k in ("time_interval", "freq_interval"))
        t = errs.run(tpath, parse_time_interval, step["time_interval"][i], tpath)
        fw = errs.run(fpath, parse_freq_interval, step["freq_interval"][i], fpath)
        if not isinstance(po[i], bool):
            errs.add(f"{_name('phase_only', where, names)}[{i}]", f"{po[i]!r} must be true or false")
        if not isinstance(ao[i], bool):
            errs.add(f"{_name('amp_only', where, names)}[{i}]", f"{ao[i]!r} must be true or false")
        elif ao[i] and po[i] is True:
            errs.add(f"{_name('amp_only', where, names)}[{i}]", "amp_only and phase_only exclude each other")
        if i >= len(keys):
            continue
        st = SolveStep(jones_type=keys[i].rstrip("0123456789"), key=keys[i], field=fields_[i],
                       time_interval=t, freq_interval_hz=fw[0] if fw else None,
                       freq_interval_text=fw[1] if fw else "full",
                       phase_only=po[i] is True, preapply_time_interp=step["preapply_time_interp"][i],
                       amp_only=ao[i] is True, combine=cb[i])
        # combine 'spw' needs a frequency-independent term (core/combine.py); also with a bad solint
        errs.run(f"{_name('combine', where, names)}[{i}]", check_step, st,
                 f"{_name('combine', where, names)}[{i}]")
        if t is not None and fw is not None:
            steps.append(st)
    ext = _external_preapply(d.get("external_preapply"), where, names, errs)
    # 'C05,C09' as akcal's refant (a list in priority order); '' as no ref_ant (the default)
    ref = parse_ref_ant(d.get("ref_ant"))
    ref_default = ref is None
    ref = 0 if ref_default else ref
    refs = ref if isinstance(ref, (list, tuple)) else [ref]
    if not refs or any(isinstance(r, bool) or not isinstance(r, (int, str)) or r == "" for r in refs):
        errs.add(_name("ref_ant", where, names), f"{ref!r} must be an antenna name or index, or a list of "
                                                 "them in priority order")
    elif isinstance(ref, (list, tuple)):
        ref = list(ref) if len(ref) > 1 else ref[0]
    cfg = SolveConfig(steps=steps, ref_ant=ref, ref_ant_default=ref_default, external_preapply=ext,
                      select={k: v[k] for k in _SELECT_KEYS if v[k]}, **_kwargs(SolveConfig, v))
    from .solvers.smodel import parse_smodel
    cfg.smodel = errs.run(_name("smodel", where, names), parse_smodel, d.get("smodel"),
                          _name("smodel", where, names)) or []
    # what the XML cannot say (a strict bound, an address)
    check_cluster(cfg, where, names, errs)
    if cfg.tol <= 0 and _name("tol", where, names) not in errs.errors:
        errs.add(_name("tol", where, names), f"{cfg.tol} must be > 0")
    errs.raise_if_any()
    return cfg


def _external_preapply(ep, where, names, errs):
    """The ``external_preapply`` mapping (akcal gaintable, gainjones, gainfield, interp,
    gainsolutionfield) -> ExternalPreapply or None."""
    if ep is None:
        return None
    epw = _name("external_preapply", where, names)
    if not isinstance(ep, dict):
        errs.add(epw, "must be a mapping with tables, jones, field_select, time_interp")
        return None
    subs = sorted(k.split(".", 1)[1] for k in schema.keys("solve") if k.startswith("external_preapply."))
    for k in ep:
        if k not in subs:
            hint = schema.unknown_key_hint("solve", k, under="external_preapply")
            errs.add(f"{epw}.{k}", f"unknown key{hint} (valid: {', '.join(subs)})")
    def as_list(v):         # a scalar is one entry (as apply's tables; not split into characters)
        return [v] if isinstance(v, str) else list(v or [])

    tables = [os.path.expanduser(t) if isinstance(t, str) else t for t in as_list(ep.get("tables"))]
    ej = as_list(ep.get("jones"))
    if len(tables) == 1 and len(ej) > 1:        # one table for every key (as apply's tables)
        tables = tables * len(ej)
    if len(tables) != len(ej):
        keys_name = _name("external_preapply.jones", "", names)
        errs.add(_name("external_preapply.tables", where, names),
                 f"has {len(tables)} entries but {keys_name} has {len(ej)}; give one table per key, or one "
                 "table for all")
    else:
        _duplicate_terms(tables, ej, _name("external_preapply.jones", where, names), errs)

    def per_term(key, default):
        """A scalar or a one-entry list serves every term (as apply's, and CASA's gainfield / interp);
        otherwise one entry per term (before: a string was split into characters, a short list left
        the other terms at the default silently)."""
        v = ep.get(key)
        if v is None or (isinstance(v, (str, list, tuple)) and len(v) == 0):
            return [default] * len(ej)
        if not isinstance(v, (list, tuple)):
            return [v] * len(ej)
        if len(v) == 1:
            return list(v) * len(ej)
        if len(v) != len(ej):
            errs.add(_name(f"external_preapply.{key}", where, names), f"has {len(v)} entries but there are "
                     f"{len(ej)} tables; give one per table or one for all")
            return [default] * len(ej)
        return list(v)

    if not tables and not ej:       # per-term values without any term: refused (akcal dropped them and
        # solved without a pre-apply, without a word)
        for key in ("field_select", "time_interp", "solution_field", "spwmap"):
            v = ep.get(key)
            items = v if isinstance(v, (list, tuple)) else [v]
            if any(x not in (None, "", []) for x in items):
                tn, jn = (_name(f"external_preapply.{k}", "", names) for k in ("tables", "jones"))
                errs.add(_name(f"external_preapply.{key}", where, names),
                         f"is {v!r} but there is no term to pre-apply ({tn} and {jn} are empty); give the "
                         "tables and their keys, or leave it out")
    fs = per_term("field_select", "nearest_time")
    tin = per_term("time_interp", "nearest")
    sfs = per_term("solution_field", None)
    _per_step_allowed(fs, "solve", "external_preapply.field_select", where, names, errs)
    for i, (f, sf) in enumerate(zip(fs, sfs)):      # (as apply's; before: said when the block ran)
        if f == "pinned" and not _field_list(sf):
            errs.add(f"{_name('external_preapply.solution_field', where, names)}[{i}]",
                     f"is required when {_name('external_preapply.field_select', '', names)} is 'pinned' "
                     "(the calibrator field(s) to use)")
    tin, fin = _time_freq_interp(tin, "external_preapply.time_interp", where, names, errs)
    from .calibration.spwmap import parse_spwmap

    smw = _name("external_preapply.spwmap", where, names)        # akcal: 'spwmap'
    smaps = errs.run(smw, parse_spwmap, ep.get("spwmap"), len(ej), smw) or [[]] * len(ej)
    return ExternalPreapply(tables=[str(t) for t in tables], jones=[str(j) for j in ej],
                            field_select=fs, time_interp=tin, freq_interp=fin,
                            solution_field=[_field_list(x) for x in sfs],
                            spwmap=[list(m) for m in smaps])


def fluxscale_config_from_dict(d, where="fluxscale[0]", names=None) -> FluxscaleConfig:
    errs = _Errors()
    _check_keys(d, "fluxscale", where, names, errs)
    v = _values(d, "fluxscale", where, names, errs, parsed=("reference_field", "transfer_field", "refspwmap"))
    _require(d, "fluxscale", where, names, errs)
    cfg = FluxscaleConfig(
        reference_field=_field_list(d.get("reference_field")) or [],
        transfer_field=_field_list(d.get("transfer_field")) or [],
        method=v.pop("fluxscale_method"), **_kwargs(FluxscaleConfig, v))
    cfg.transfer_table = cfg.transfer_table or None
    rmap = d.get("refspwmap")
    rmap = [-1] if rmap in (None, [], "") else (list(rmap) if isinstance(rmap, (list, tuple)) else [rmap])
    if any(isinstance(x, bool) or not isinstance(x, int) or x < -1 for x in rmap):
        errs.add(_name("refspwmap", where, names), f"{d.get('refspwmap')!r} must be a list of SPW ids "
                 "(integers >= 0; [-1] = each SPW is its own reference)")
    else:
        cfg.refspwmap = rmap
    overlap = sorted(set(cfg.reference_field) & set(cfg.transfer_field))
    if overlap:
        errs.add(_name("transfer_field", where, names), f"{', '.join(overlap)} also in the reference fields; "
                 "a field is either a reference or a transfer field")
    if cfg.spw.strip() and not re.fullmatch(r"\s*\d+\s*(,\s*\d+\s*)*", cfg.spw):
        errs.add(_name("spw", where, names), f"{cfg.spw!r} is not an SPW list; expected SPW ids like '0' or "
                 "'0,1' ('' = all)")
    errs.raise_if_any()
    return cfg


def apply_config_from_dict(d, where="apply[0]", names=None) -> ApplyConfig:
    if isinstance(d.get("ms"), (list, tuple)):         # several MSs, one job (alakazam/multims.py)
        from .multims import config_many
        return config_many(apply_config_from_dict, d, where, names)
    errs = _Errors()
    _check_keys(d, "apply", where, names, errs)
    per_term = ("jones", "tables", "field_select", "time_interp", "solution_field", "target_field",
                "propagate_flags", "applymode", "spwmap", "calwt")
    v = _values(d, "apply", where, names, errs, parsed=per_term)
    _require(d, "apply", where, names, errs)
    jones = d.get("jones") or []
    jones = jones if isinstance(jones, (list, tuple)) else [jones]
    n = len(jones)
    tables = broadcast_steps(d.get("tables"), n, _name("tables", where, names), errs)
    tables = [os.path.expanduser(t) if isinstance(t, str) else t for t in tables]   # '~' as for ms
    fsel = broadcast_steps(d.get("field_select"), n, _name("field_select", where, names), errs,
                           "nearest_time")
    tint = broadcast_steps(d.get("time_interp"), n, _name("time_interp", where, names), errs, "nearest")
    # the entries whose time part was given ('' / absent: nearest, not CASA's linear -- noted at the apply)
    tgiven = [isinstance(x, str) and x.split(",")[0].strip() != ""
              for x in broadcast_steps(d.get("time_interp"), n, "", _Errors(), None)]
    _per_step_allowed(fsel, "apply", "field_select", where, names, errs)
    tint, fint = _time_freq_interp(tint, "time_interp", where, names, errs)   # CASA 'time,freq'
    sf = d.get("solution_field")
    sf_bad = False
    if isinstance(sf, str) and sf.strip():          # one selection for every term (as every scalar)
        sf = [sf] * n
    elif isinstance(sf, (list, tuple)) and len(sf) == 1 and n > 1:     # a one-entry list: the same
        sf = list(sf) * n
    if sf is None:
        sf = [None] * n
    elif not isinstance(sf, (list, tuple)) or len(sf) != n:
        errs.add(_name("solution_field", where, names), f"must be a list with one entry per term ({n}), "
                 f"or one for all; got {sf!r}")
        sf, sf_bad = [None] * n, True
    from .calibration.calwt import parse_calwt
    from .calibration.spwmap import parse_spwmap

    smaps = errs.run(_name("spwmap", where, names), parse_spwmap, d.get("spwmap"), n,
                     _name("spwmap", where, names)) or [[]] * n
    cwts = errs.run(_name("calwt", where, names), parse_calwt, d.get("calwt"), n,
                    _name("calwt", where, names)) or [False] * n
    terms = []
    for i in range(n):
        if fsel[i] == "pinned" and not sf[i] and not sf_bad:
            errs.add(f"{_name('solution_field', where, names)}[{i}]",
                     f"is required when {_name('field_select', '', names)} is 'pinned' (the calibrator "
                     "field(s) to use)")
        terms.append(ApplyTerm(key=str(jones[i]), table=str(tables[i]), field_select=fsel[i],
                               time_interp=tint[i], solution_field=_field_list(sf[i]),
                               freq_interp=fint[i], spwmap=list(smaps[i]), calwt=bool(cwts[i]),
                               time_interp_given=bool(tgiven[i])))
    _duplicate_terms(tables, jones, _name("jones", where, names), errs)
    pf = d.get("propagate_flags")
    if pf is not None and not isinstance(pf, bool):
        errs.add(_name("propagate_flags", where, names), f"{pf!r} must be true or false")
        pf = None
    mode = ""
    if d.get("applymode") not in (None, ""):        # '' / absent: from propagate_flags
        mode, err = schema.check("apply", "applymode", d["applymode"])
        if err:
            errs.add(_name("applymode", where, names), err)
            mode = ""
    cfg = ApplyConfig(terms=terms, target_field=_field_list(d.get("target_field")) or None,
                      propagate_flags=bool(pf), applymode=mode,
                      select={k: v[k] for k in _SELECT_KEYS if v[k]}, **_kwargs(ApplyConfig, v))
    check_cluster(cfg, where, names, errs)

    from .calibration.compat import output_column_errors

    for msg in output_column_errors(cfg.output_col, cfg.data_col):
        errs.add(_name("output_col", where, names), msg)
    writes = ("calflag", "calflagstrict", "flagonly", "flagonlystrict")
    if cfg.applymode:
        if pf is not None and pf != (cfg.applymode in writes):
            errs.add(_name("applymode", where, names),
                     f"{cfg.applymode!r} contradicts propagate_flags: {pf!r} (give one of them)")
        cfg.propagate_flags = cfg.applymode in writes
    errs.raise_if_any()
    return cfg


def yaml_blocks(d):
    """A YAML document -> (``[(section, 'solve[0]', block), ...]`` in run order flag, solve, fluxscale,
    apply; {path: [errors]} of unknown top-level blocks).  (A section may be one mapping or a list.)"""
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise ParameterError({"config": ["the top level must be a mapping with flag/solve/fluxscale/apply"]})
    sections = tuple(schema.SECTIONS)
    errs = _Errors()
    for k in d:
        if k not in sections:
            close = difflib.get_close_matches(str(k), sections, n=1)
            errs.add(str(k), "unknown top-level block" + (f"; did you mean {close[0]!r}?" if close else "")
                     + f" (valid: {', '.join(sections)})")
    blocks = []
    for name in sections:
        these = d.get(name) or []
        if not isinstance(these, (dict, list)):
            errs.add(name, f"{these!r} is not a block; expected a list of mappings (or one mapping) with "
                     f"the {name} keys")
            continue
        for i, b in enumerate([these] if isinstance(these, dict) else these):
            if not isinstance(b, dict):
                errs.add(f"{name}[{i}]", f"{b!r} is not a block; expected a mapping with the {name} keys")
                continue
            blocks.append((name, f"{name}[{i}]", b))
    return blocks, errs.errors


def run_config_from_dict(d) -> RunConfig:
    """A whole YAML document -> RunConfig (no file-system checks: the runner's preflight adds those);
    every error of every block together."""
    blocks, top = yaml_blocks(d)
    if top:
        raise ParameterError(top)
    errs = _Errors()
    out = RunConfig()
    from .flagging.config import flag_config_from_dict

    build = {"flag": (flag_config_from_dict, out.flag), "solve": (solve_config_from_dict, out.solve),
             "fluxscale": (fluxscale_config_from_dict, out.fluxscale),
             "apply": (apply_config_from_dict, out.apply)}
    for name, where, b in blocks:
        fn, dest = build[name]
        try:
            dest.append(fn(b, where))
        except ParameterError as e:
            for p, m in e.errors.items():
                for msg in m:
                    errs.add(p, msg)
    errs.raise_if_any()
    return out


def load_run_config(path) -> RunConfig:
    """Read (:func:`alakazam.safeyaml.load`: bounded aliases, no duplicate keys, YAML 1.2 numbers) and
    validate a YAML file."""
    from .safeyaml import load

    return run_config_from_dict(load(path))
