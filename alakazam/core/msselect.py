"""CASA data-selection expressions beyond field/spw/scan (pure functions, no MS access).

The parsers turn the strings a CASA user types into plain numbers; :mod:`alakazam.core.rowselect`
applies them to MS rows.  Every error is an :class:`AlakazamError` naming the parameter, the value and
what was expected.  Conventions (pinned by tests/test_msselect.py):

antenna (:func:`parse_antenna` -> :class:`AntennaSelection`)
    ``;``-separated items, each optionally negated with a leading ``!``:

    - ``A`` (a ``,`` list): every cross-correlation baseline with at least one antenna of the list,
      autocorrelations excluded (``ANT`` = ``ANT&*``; measured with CASA 6.7 flagdata, which selects no
      auto-correlation for ``antenna='ea01'``, and for ``'!ea05'`` keeps every auto-correlation,
      ea05's included: tests/test_flag_parity.py);
    - ``A&B``: baselines between an antenna of A and one of B, cross-correlations only;
      ``A&&B``: also the autocorrelations of antennas in both; ``A&&&``: autocorrelations only;
      ``A&`` = ``A&A``; ``*`` stands for every antenna (``ea01&&*``);
    - an antenna is a name, a wildcard over names (``ea0*``), an ANTENNA-table index, or an index
      range ``a~b``; an integer is matched first as a name, then as an index (CASA).

    The selection is the union of the positive items (every baseline when there is none) minus the
    union of the negated items (``'!ea05'`` = every baseline without ea05).
uvrange (:func:`parse_uvrange`)
    ``,``-separated ``lo~hi``, ``<x``, ``>x`` with an optional unit: ``m`` (default), ``km``,
    ``lambda``, ``klambda``, ``Mlambda``.  Bounds are inclusive (``<x`` is ``0~x``).  A range in metres
    is a per-row test on sqrt(u^2 + v^2); a range in wavelengths is a per-channel test on
    sqrt(u^2 + v^2) * nu / c, so one row may be selected in some channels only (the reader flags the
    others, which gives them zero weight).
timerange (:func:`parse_timerange`)
    ``,``-separated ``T0~T1``, ``T0+dT``, ``>T``, ``<T`` or a single ``T``.  ``T`` is
    ``YYYY/MM/DD/hh:mm:ss[.s]`` (also ``YYYY/MM/DD``) or ``hh:mm:ss[.s]`` on the date of the data's
    first integration (for the upper bound: on the lower bound's date); ``dT`` is ``hh:mm:ss`` or
    seconds.  A time or duration ``hh:mm`` without seconds is refused: CASA 6.7 reads it as
    minutes:seconds (measured with msselect: ``'2024/04/01/07:50'`` selects nothing,
    ``'>2024/04/01/23:59'`` everything), an accident that neither reading could follow safely.  Times are
    UTC and are compared with the integration mid-time (TIME): ``T0 <= TIME <= T1``; a single ``T``
    selects the integrations whose interval contains it.  A date without a time (measured with CASA
    6.7's msselect and flagdata, tests/test_review_s25_task.py): as a bound (``D1~D2``, ``>D``, ``<D``)
    it is 00:00 of that day, so ``D~D`` is empty and refused (flagdata: "zero rows"; the whole day is
    ``D~D+1``); alone (``'2024/04/01'``) it is that day at the time of day of the data's first
    integration, to the millisecond (casacore fills a time's missing fields from the first row): one
    integration, with a warning saying so.
intent (:func:`parse_intent`)
    ``,``-separated patterns (``*BANDPASS*``) matched with fnmatch against each STATE row's OBS_MODE,
    or STATE ids / id ranges.
observation (:func:`parse_observation`)
    OBSERVATION ids, CASA integer syntax (``'0~2,4'``, ``'<2'``).
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import functools
import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from ..errors import AlakazamError

C_LIGHT = 299792458.0
_MJD0 = _dt.datetime(1858, 11, 17)
_UV_UNITS = {"m": (1.0, "m"), "km": (1e3, "m"), "lambda": (1.0, "lambda"), "klambda": (1e3, "lambda"),
             "mlambda": (1e6, "lambda"), "l": (1.0, "lambda"), "kl": (1e3, "lambda"), "ml": (1e6, "lambda")}


# --------------------------------------------------------------------------------------------------
# time
# --------------------------------------------------------------------------------------------------
def mjds_to_str(t) -> str:
    """MJD seconds -> ``'YYYY/MM/DD/hh:mm:ss.s'`` (UTC, CASA's form)."""
    if t is None:
        return ""
    d = _MJD0 + _dt.timedelta(seconds=round(float(t), 1))
    return d.strftime("%Y/%m/%d/%H:%M:%S") + f".{d.microsecond // 100000:d}"


def _day_start(t) -> float:
    return float(np.floor(float(t) / 86400.0) * 86400.0)


_T_FULL = re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})(?:/(\d{1,2}):(\d{1,2})(?::(\d{1,2}(?:\.\d*)?))?)?$")
_T_CLOCK = re.compile(r"(\d{1,2}):(\d{1,2})(?::(\d{1,2}(?:\.\d*)?))?$")


_FORMS = "YYYY/MM/DD/hh:mm:ss[.s], YYYY/MM/DD or hh:mm:ss[.s]"


def _no_seconds(text, where, kind="time"):
    """A time or duration 'a:b' (no seconds) is refused: CASA 6.7's msselect reads it as minutes:seconds
    (measured on an MS of 60 s integrations from 07:46:24.8: '2024/04/01/07:50' and '07:48~07:52' select
    nothing, '>2024/04/01/23:59' everything, 'T+01:00' is 60 s), an accident of its parser that
    following would silently select other data than meant, while reading it as hh:mm would select other
    data than CASA does for the same string."""
    fix = str(text).strip() + ":00"
    return AlakazamError(
        f"{where}: {str(text).strip()!r} has no seconds: CASA reads a {kind} 'a:b' as minutes:seconds (so "
        f"'07:50' is 00:07:50 there), hence it is refused; give hh:mm:ss, e.g. {fix!r}; accepted forms: "
        + (_FORMS if kind == "time" else "hh:mm:ss or seconds"))


def parse_time(text, day0, where="timerange") -> float:
    """One CASA time (``YYYY/MM/DD/hh:mm:ss.s``, ``YYYY/MM/DD``, ``hh:mm:ss``) -> MJD seconds;
    ``day0`` (MJD seconds of 0 h UTC) is used when the date is omitted.  ``hh:mm`` without seconds is
    refused (:func:`_no_seconds`)."""
    s = str(text).strip()
    m = _T_FULL.match(s)
    if m and m.group(4) is not None and m.group(6) is None:
        raise _no_seconds(text, where)
    if m:
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
        h, mi = int(m.group(4) or 0), int(m.group(5) or 0)
        sec = float(m.group(6) or 0.0)
        try:
            base = (_dt.datetime(y, mo, d) - _MJD0).total_seconds()
        except ValueError:
            raise AlakazamError(f"{where}: {text!r} is not a valid date") from None
        if h > 24 or mi > 59 or sec >= 60:
            raise AlakazamError(f"{where}: {text!r} is not a valid time of day")
        return base + 3600 * h + 60 * mi + sec
    m = _T_CLOCK.match(s)
    if m and m.group(3) is None:
        raise _no_seconds(text, where)
    if m:
        h, mi, sec = int(m.group(1)), int(m.group(2)), float(m.group(3) or 0.0)
        if h > 24 or mi > 59 or sec >= 60:
            raise AlakazamError(f"{where}: {text!r} is not a valid time of day")
        return float(day0) + 3600 * h + 60 * mi + sec
    raise AlakazamError(f"{where}: cannot parse time {text!r}; expected {_FORMS}")


def _parse_duration(text, where):
    s = str(text).strip()
    m = _T_CLOCK.match(s)
    if m and m.group(3) is None:
        raise _no_seconds(text, where, "duration")
    if m:
        return 3600 * int(m.group(1)) + 60 * int(m.group(2)) + float(m.group(3) or 0.0)
    try:
        return float(s)
    except ValueError:
        raise AlakazamError(f"{where}: cannot parse duration {text!r}; expected hh:mm:ss or "
                            "seconds") from None


def _date_only(text) -> bool:
    m = _T_FULL.match(str(text).strip())
    return bool(m) and m.group(4) is None


def _next_day(text) -> str:
    d = _dt.date(*(int(x) for x in str(text).strip().split("/"))) + _dt.timedelta(days=1)
    return d.strftime("%Y/%m/%d")


def parse_timerange(text, t_first) -> List[Tuple[float, float, bool]]:
    """``[(t0, t1, point), ...]`` in MJD seconds (module docstring); ``t_first`` = the data's first
    TIME (its date is used when a time has none; its time of day for a date alone).  ``point`` marks a
    single time ``T`` (t0 == t1)."""
    day0 = _day_start(t_first)
    out = []
    for part in str(text).split(","):
        p = part.strip()
        if not p:
            continue
        if p.startswith(">"):
            out.append((parse_time(p[1:], day0), np.inf, False))
        elif p.startswith("<"):
            out.append((-np.inf, parse_time(p[1:], day0), False))
        elif "~" in p:
            a, b = p.split("~", 1)
            t0 = parse_time(a, day0)
            t1 = parse_time(b, _day_start(t0))
            if t1 == t0 and _date_only(a) and _date_only(b):
                raise AlakazamError(
                    f"timerange: {p!r} is empty: in a range a date without a time is 00:00 of that day (as "
                    f"in CASA, whose flagdata finds zero rows); for the whole day give "
                    f"'{a.strip()}~{_next_day(a)}'; accepted forms: T0~T1, T0+dT, >T, <T, T with T = "
                    "YYYY/MM/DD/hh:mm:ss, YYYY/MM/DD or hh:mm:ss")
            if t1 < t0:
                hint = ""
                if _T_CLOCK.match(b.strip()):       # an end without a date: on the start's day
                    d0 = mjds_to_str(_day_start(t0))[:10]
                    d1 = mjds_to_str(_day_start(t0) + 86400.0)[:10]
                    hint = (f"; a time without a date is on the first day of the data ({d0}), so a range "
                            f"across midnight needs the dates, e.g. '{d0}/{a.strip()}~{d1}/{b.strip()}'"
                            if _T_CLOCK.match(a.strip()) else
                            f"; its end, without a date, is on its start's day ({d0}): give the end's date, "
                            f"e.g. '{a.strip()}~{d1}/{b.strip()}'")
                raise AlakazamError(f"timerange: {p!r} ends before it starts{hint}")
            out.append((t0, t1, False))
        elif "+" in p:
            a, b = p.split("+", 1)
            t0 = parse_time(a, day0)
            out.append((t0, t0 + _parse_duration(b, "timerange"), False))
        elif _date_only(p):         # CASA: the missing hh:mm:ss.sss from the first row's TIME
            tod = np.floor((float(t_first) - day0) * 1000.0) / 1000.0
            t = parse_time(p, day0) + tod
            _warn_date_alone(p, mjds_to_str(t))
            out.append((t, t, True))
        else:
            t = parse_time(p, day0)
            out.append((t, t, True))
    return out


@functools.lru_cache(maxsize=64)
def _warn_date_alone(p, when):
    import logging

    logging.getLogger("alakazam").warning(
        "timerange: %r (a date without a time) selects, as in CASA, the integration at %s (the data's "
        "first time of day on that date), not the whole day; for the whole day give '%s~%s'", p, when,
        p, _next_day(p))


def time_mask(ranges, time, interval=None) -> np.ndarray:
    """Rows whose TIME falls in one of ``ranges`` (from :func:`parse_timerange`)."""
    time = np.asarray(time, float)
    half = np.zeros_like(time) if interval is None else 0.5 * np.asarray(interval, float)
    m = np.zeros(len(time), bool)
    for t0, t1, point in ranges:
        if point:
            m |= (time - half <= t0) & (t0 <= time + half)
        else:
            m |= (time >= t0) & (time <= t1)
    return m


# --------------------------------------------------------------------------------------------------
# uvrange
# --------------------------------------------------------------------------------------------------
_NUM = r"[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?"


def parse_uvrange(text) -> List[Tuple[float, float, str]]:
    """``[(lo, hi, unit), ...]`` with unit 'm' (metres) or 'lambda' (wavelengths), bounds inclusive."""
    out = []
    expected = "expected e.g. '<5klambda', '>100m', '1~10klambda', '0~1000' (default unit m)"
    for part in str(text).split(","):
        p = part.strip().replace(" ", "")
        if not p:
            continue
        m = re.fullmatch(rf"([<>]?)({_NUM})(?:~({_NUM}))?([a-zA-Z]*)", p)
        if not m:
            raise AlakazamError(f"uvrange: cannot parse {part.strip()!r} in {text!r}; {expected}")
        op, a, b, unit = m.groups()
        u = unit.lower() or "m"          # Mlambda / mlambda alike: there is no milli-lambda
        if u not in _UV_UNITS:
            raise AlakazamError(f"uvrange: unknown unit {unit!r} in {part.strip()!r}; units: m, km, lambda, "
                                "klambda, Mlambda")
        scale, kind = _UV_UNITS[u]
        if op and b is not None:
            raise AlakazamError(f"uvrange: {part.strip()!r} mixes {op} and ~; {expected}")
        lo, hi = float(a) * scale, (float(b) * scale if b is not None else None)
        if op == "<":
            lo, hi = 0.0, lo
        elif op == ">":
            hi = np.inf
        elif hi is None:
            raise AlakazamError(f"uvrange: {part.strip()!r} is a single value; {expected}")
        if hi < lo:
            raise AlakazamError(f"uvrange: {part.strip()!r} ends below its start")
        out.append((lo, hi, kind))
    return out


def uv_masks(ranges, uvw, freqs):
    """(row_mask (row,), chan_mask (row, chan) or None) for ``ranges`` of :func:`parse_uvrange`.

    ``row_mask`` keeps a row when at least one channel is selected; ``chan_mask`` is None when every
    range is in metres (then whole rows are in or out)."""
    uvw = np.asarray(uvw, float)
    uvd = np.hypot(uvw[:, 0], uvw[:, 1])
    rows = np.zeros(len(uvd), bool)
    chan = None
    metric = [r for r in ranges if r[2] == "m"]
    lam = [r for r in ranges if r[2] == "lambda"]
    for lo, hi, _ in metric:
        rows |= (uvd >= lo) & (uvd <= hi)
    if lam:
        ul = uvd[:, None] * (np.asarray(freqs, float)[None, :] / C_LIGHT)
        chan = np.repeat(rows[:, None], ul.shape[1], axis=1)
        for lo, hi, _ in lam:
            chan |= (ul >= lo) & (ul <= hi)
        rows = chan.any(axis=1)
    return rows, chan


# --------------------------------------------------------------------------------------------------
# antenna
# --------------------------------------------------------------------------------------------------
@dataclass
class _BlItem:
    negate: bool
    left: np.ndarray             # antenna ids
    right: Optional[np.ndarray]  # None: any baseline with an antenna of `left` (autos included)
    mode: str                    # 'any' | 'cross' | 'both' | 'auto'


@dataclass
class AntennaSelection:
    """Parsed antenna expression; :meth:`mask` selects rows from ANTENNA1/ANTENNA2 (ANTENNA ids)."""
    text: str
    items: List[_BlItem] = field(default_factory=list)

    def _item_mask(self, it, a1, a2):
        in1, in2 = np.isin(a1, it.left), np.isin(a2, it.left)
        if it.mode == "any":                   # (CASA: cross-correlations only)
            return (in1 | in2) & (a1 != a2)
        if it.mode == "auto":
            return in1 & (a1 == a2)
        r1, r2 = np.isin(a1, it.right), np.isin(a2, it.right)
        m = (in1 & r2) | (in2 & r1)
        if it.mode == "cross":
            m &= a1 != a2
        return m

    def mask(self, a1, a2) -> np.ndarray:
        a1, a2 = np.asarray(a1), np.asarray(a2)
        pos = [it for it in self.items if not it.negate]
        neg = [it for it in self.items if it.negate]
        if pos:
            m = np.zeros(len(a1), bool)
            for it in pos:
                m |= self._item_mask(it, a1, a2)
        else:
            m = np.ones(len(a1), bool)
        for it in neg:
            m &= ~self._item_mask(it, a1, a2)
        return m


def _antenna_ids(text, names, whole) -> np.ndarray:
    out = []
    for raw in str(text).split(","):
        s = raw.strip()
        if not s:
            continue
        if s == "*":
            out.extend(range(len(names)))
        elif s in names:
            out.append(names.index(s))
        elif any(c in s for c in "*?["):
            m = [i for i, n in enumerate(names) if fnmatch.fnmatchcase(n, s)]
            if not m:
                raise AlakazamError(f"antenna: pattern {s!r} in {whole!r} matches no antenna; antennas: "
                                    f"{', '.join(names)}")
            out.extend(m)
        elif re.fullmatch(r"\d+\s*~\s*\d+", s):
            # CASA's MSSelection (msseltoindex, flagdata): the integers a, a+1, ..., b, each a name first
            # (its decimal text), then an id; ids past the last antenna are dropped.  With antennas
            # named '1'..'8', '1~3' is the antennas named 1, 2, 3 (ids 0~2); taken as ids it was 1~3 (and
            # '!5~7' kept antenna '5'); taken as the ids between the two ends' ids, names out of id order
            # gave other antennas (a review)
            a, b = (int(y) for y in s.split("~"))
            if a > b:
                raise AlakazamError(f"antenna: range {s!r} in {whole!r} runs backwards; expected a~b with "
                                    "a <= b")
            ids = [names.index(str(i)) if str(i) in names else i for i in range(a, b + 1)]
            ids = [i for i in ids if i < len(names)]
            if not ids:
                raise AlakazamError(f"antenna: range {s!r} in {whole!r} names no antenna (no such names, "
                                    f"ids 0~{len(names) - 1})")
            out.extend(ids)
        elif s.isdigit() and int(s) < len(names):
            out.append(int(s))
        else:
            raise AlakazamError(f"antenna: {s!r} in {whole!r} is not an antenna name or id; antennas: "
                                f"{', '.join(names)}")
    return np.asarray(sorted(set(out)), np.int64)


def parse_antenna(text, names: List[str]) -> Optional[AntennaSelection]:
    """Parse a CASA antenna expression against the ANTENNA-table ``names`` ('' -> None = all)."""
    if text is None or not str(text).strip():
        return None
    sel = AntennaSelection(str(text))
    for raw in str(text).split(";"):
        s = raw.strip()
        if not s:
            continue
        neg = s.startswith("!")
        if neg:
            s = s[1:].strip()
        if not s:                   # '!' alone would negate nothing, i.e. select every baseline
            raise AlakazamError(f"antenna: {raw.strip()!r} in {text!r} names no antenna")
        if "&&&" in s:
            left, rest = s.split("&&&", 1)
            if rest.strip():
                raise AlakazamError(f"antenna: {raw.strip()!r}: nothing may follow '&&&'")
            sel.items.append(_BlItem(neg, _antenna_ids(left, names, text), None, "auto"))
        elif "&&" in s:
            left, right = s.split("&&", 1)
            lids = _antenna_ids(left, names, text)
            rids = _antenna_ids(right, names, text) if right.strip() else lids
            sel.items.append(_BlItem(neg, lids, rids, "both"))
        elif "&" in s:
            left, right = s.split("&", 1)
            lids = _antenna_ids(left, names, text)
            rids = _antenna_ids(right, names, text) if right.strip() else lids
            sel.items.append(_BlItem(neg, lids, rids, "cross"))
        else:
            sel.items.append(_BlItem(neg, _antenna_ids(s, names, text), None, "any"))
    if not sel.items:               # ';;' : separators only (not "all")
        raise AlakazamError(f"antenna: {text!r} names no antenna")
    return sel


# --------------------------------------------------------------------------------------------------
# intent, observation
# --------------------------------------------------------------------------------------------------
def parse_intent(text, obs_modes: List[str]) -> Optional[np.ndarray]:
    """STATE ids whose OBS_MODE matches one of the ``,``-separated patterns (or ids); '' -> None."""
    if text is None or not str(text).strip():
        return None
    out = []
    for raw in str(text).split(","):
        s = raw.strip()
        if not s:
            continue
        if re.fullmatch(r"\d+(\s*~\s*\d+)?", s):
            a, _, b = s.partition("~")
            a, b = int(a), int(b or a)
            out.extend(i for i in range(a, b + 1) if i < len(obs_modes))
            continue
        m = [i for i, mode in enumerate(obs_modes) if fnmatch.fnmatchcase(mode, s)]
        out.extend(m)
    if not out:
        have = sorted(set(x for mode in obs_modes for x in mode.split(",") if x))
        raise AlakazamError(f"intent: {text!r} matches no scan intent; intents present: "
                            f"{', '.join(have) if have else 'none (the MS has no STATE/intent information)'}")
    return np.asarray(sorted(set(out)), np.int64)


def parse_observation(text, have) -> Optional[List[int]]:
    """OBSERVATION ids of ``have`` selected by CASA integer syntax; '' -> None (all)."""
    from .selection import _int_ranges

    if text is None or not str(text).strip():
        return None
    out = _int_ranges(str(text), sorted(have), "observation")
    if not out:
        raise AlakazamError(f"observation: {text!r} selects no observation; present: {sorted(have)}")
    return out
