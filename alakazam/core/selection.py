"""CASA selection syntax parsers (pure: no MS access).

spw: ``'0'``, ``'0~2,4'``, ``'<2'``, ``'0:5~61'``, ``'*:5~61'``, ``'0:0~10;15~60'``, ``'0:0~10^2'``
(step), ``'0:1.401~1.404GHz'`` (frequency range), ``'0:10~500,1,2'``.
scan: ``'1~5,7'``, ``'<5'``, ``'>3'``.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Dict, List, Tuple

import numpy as np

from ..errors import AlakazamError

_FUNITS = {"hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}


def _int_ranges(text, have, what, offset=0, full=None):
    """'1~5,7', '<5', '>3', '*' over the available integers ``have`` (positions reported from ``offset``
    in ``full``, the whole user string)."""
    full = text if full is None else full
    out = []
    pos = offset
    for part in str(text).split(","):
        at = pos
        pos += len(part) + 1
        p = part.strip()
        if not p:
            continue
        try:
            if p == "*":
                out.extend(have)
            elif p.startswith("<"):
                out.extend(h for h in have if h < int(p[1:]))
            elif p.startswith(">"):
                out.extend(h for h in have if h > int(p[1:]))
            elif "~" in p:
                a, b = (int(x) for x in p.split("~"))
                out.extend(h for h in have if a <= h <= b)
            else:
                v = int(p)
                if v not in have:
                    raise AlakazamError(f"{what}: {v} is not present (available: "
                                        f"{', '.join(str(h) for h in have) or 'none'})")
                out.append(v)
        except AlakazamError:
            raise
        except ValueError:
            raise AlakazamError(f"{what}: cannot parse {p!r} at position {at} of {full!r}; expected e.g. "
                                "'1~5,7', '<5', '>3'") from None
    return sorted(dict.fromkeys(out))


def parse_scans(text, have) -> List[int]:
    """Sorted scan numbers of ``have`` selected by CASA scan syntax ('1~5,7', '<5', '>3', '*')."""
    return _int_ranges(text, sorted(have), "scan")


def parse_fields(sel, names: List[str]) -> List[int]:
    """Field ids (in selection order, no duplicates) from names, ids, 'a~b' id ranges, '<n' / '>n' or
    wildcards.

    Parameters
    ----------
    sel : str or list
        Comma-separated string or list of items; '' / None / [] select all fields.
    names : list of str
        Field names in FIELD-table order.
    """
    if sel is None or sel == "" or (isinstance(sel, (list, tuple)) and len(sel) == 0):
        return list(range(len(names)))
    items = list(sel) if isinstance(sel, (list, tuple)) else str(sel).split(",")
    out = []
    avail = ", ".join(names)
    for k, raw in enumerate(items):
        it = str(raw).strip()
        if not it:
            continue
        if it in names:
            out.append(names.index(it))
        elif any(c in it for c in "*?["):
            m = [i for i, n in enumerate(names) if fnmatch.fnmatchcase(n, it)]
            if not m:
                raise AlakazamError(f"field: pattern {it!r} (item {k}) matches no field; available: {avail}")
            out.extend(m)
        elif re.fullmatch(r"\d+\s*~\s*\d+", it):
            a, b = (int(x) for x in it.split("~"))
            if a > b or b >= len(names):
                raise AlakazamError(f"field: range {it!r} (item {k}) outside field ids 0~{len(names) - 1}; "
                                    f"available: {avail}")
            out.extend(range(a, b + 1))
        elif re.fullmatch(r"[<>]\s*\d+", it):          # CASA '<2' (ids 0, 1), '>0'
            v = int(it[1:])
            m = [i for i in range(len(names)) if (i < v if it[0] == "<" else i > v)]
            if not m:
                raise AlakazamError(f"field: {it!r} (item {k}) selects no field id (ids 0~{len(names) - 1}); "
                                    f"available: {avail}")
            out.extend(m)
        elif it.isdigit() and int(it) < len(names):
            out.append(int(it))
        else:
            raise AlakazamError(f"field: {it!r} (item {k}) is not a field name or id; available: {avail}")
    return list(dict.fromkeys(out))


def _chan_ranges(text, n_chan, freqs, spw):
    """Sorted channel indices of one SPW from '5~61', '0~10;15~60', '0~10^2', '1.401~1.404GHz'."""
    chans = []
    for part in text.split(";"):
        p = part.strip().lower()
        if not p:
            continue
        m = re.fullmatch(r"([0-9.eE+-]+)\s*~\s*([0-9.eE+-]+)\s*(hz|khz|mhz|ghz)", p)
        if m:
            if freqs is None:
                raise AlakazamError(f"spw: frequency range {part!r} needs the channel frequencies of "
                                    f"SPW {spw}")
            freqs = np.asarray(freqs, float)
            lo, hi = sorted(float(m.group(i)) * _FUNITS[m.group(3)] for i in (1, 2))
            sel = np.nonzero((freqs >= lo) & (freqs <= hi))[0]
            if len(sel) == 0:
                raise AlakazamError(f"spw: {part!r} selects no channel of SPW {spw}")
            chans.extend(sel.tolist())
            continue
        step = 1
        if "^" in p:
            p, s = p.split("^")
            step = int(s)
        try:
            if "~" in p:
                a, b = (int(x) for x in p.split("~"))
            else:
                a = b = int(p)
        except ValueError:
            raise AlakazamError(f"spw: cannot parse channel range {part!r}; expected e.g. 5~61, 0~10^2, "
                                "1.401~1.404GHz") from None
        if a < 0 or b >= n_chan or a > b:
            raise AlakazamError(f"spw: channels {a}~{b} outside SPW {spw} (0~{n_chan - 1})")
        chans.extend(range(a, b + 1, step))
    return sorted(dict.fromkeys(chans))


def parse_spw(text, n_chan: Dict[int, int], freqs: Dict[int, np.ndarray]) -> List[Tuple[int, List[int]]]:
    """[(spw_id, channel list), ...] for a CASA SPW selection string.

    Parameters
    ----------
    text : str
        e.g. '0', '0~2,4', '<2', '0:5~61', '*:5~61', '0:0~10;15~60', '0:0~10^2', '0:10~500,1,2',
        '0:1.401~1.404GHz'.
    n_chan : dict
        SPW id -> number of channels.
    freqs : dict
        SPW id -> (chan,) channel frequencies in Hz (for frequency ranges).
    """
    if not str(text).strip() or str(text).strip() == "*":
        return [(s, list(range(n_chan[s]))) for s in sorted(n_chan)]
    have = sorted(n_chan)
    out = {}
    pos = 0
    for raw in _split_top(text):
        at = pos + len(raw) - len(raw.lstrip())
        pos += len(raw) + 1
        item = raw.strip()
        if not item:
            continue
        if ":" in item:
            s, c = item.split(":", 1)
        else:
            s, c = item, None
        spws = _int_ranges(s.strip(), have, "spw", at, text) if s.strip() else have
        for sp in spws:
            ch = (list(range(n_chan[sp])) if c is None
                  else _chan_ranges(c, n_chan[sp], (freqs or {}).get(sp), sp))
            out[sp] = sorted(set(out.get(sp, [])) | set(ch))
    return sorted(out.items())


def _split_top(text):
    """Split on commas that separate SPW items ('0:0~10;15~60,1' -> ['0:0~10;15~60', '1'])."""
    return [p for p in str(text).split(",")]


# --------------------------------------------------------------------------------------------------
# antenna / baseline, timerange and correlation selection (pure functions)
# --------------------------------------------------------------------------------------------------
def _antenna_ids(item, names, full):
    """ANTENNA ids for one antenna item: a name (matched first), an index, 'a~b' index range, or a
    wildcard pattern ('ea0*', '*')."""
    it = item.strip()
    if not it:
        raise AlakazamError(f"antenna: empty antenna name in {full!r}")
    if it in names:
        return [names.index(it)]
    if any(c in it for c in "*?["):
        m = [i for i, n in enumerate(names) if fnmatch.fnmatchcase(n, it)]
        if not m:
            raise AlakazamError(f"antenna: pattern {it!r} in {full!r} matches no antenna; available: "
                                f"{', '.join(names)}")
        return m
    if re.fullmatch(r"\d+\s*~\s*\d+", it):
        a, b = (int(x) for x in it.split("~"))
        if a > b or b >= len(names):
            raise AlakazamError(f"antenna: index range {it!r} in {full!r} outside 0~{len(names) - 1}")
        return list(range(a, b + 1))
    if it.isdigit() and int(it) < len(names):
        return [int(it)]
    raise AlakazamError(f"antenna: {it!r} in {full!r} is not an antenna name or index; available: "
                        f"{', '.join(names)}")


def parse_antenna(text, names) -> frozenset:
    """Baselines selected by CASA antenna syntax, as a frozenset of ANTENNA-id pairs ``(i, j)``, i <= j.

    Syntax (items separated by ';', antenna lists inside an item by ','):

    * ``'ea01'`` or ``'ea01,ea02'``: every baseline with any of them (cross-correlations and their
      auto-correlations, as ``ea01&&*``);
    * ``'ea01&ea02'``: that baseline; ``'ea01,ea02&ea03'``: ea01-ea03 and ea02-ea03; ``'ea01&*'``:
      every cross-correlation of ea01; ``&&`` also includes auto-correlations; ``'ea01&&&'``: only
      the auto-correlation of ea01;
    * ``'!ea05'`` (any item): those baselines are removed; an expression of negations only starts from
      every baseline;
    * antennas are names (matched first), indices, index ranges ``'0~3'`` or wildcards ``'ea0*'``.

    ``''`` selects every baseline.  ``names``: ANTENNA-table names (index = ANTENNA id).
    """
    n = len(names)
    every = frozenset((i, j) for i in range(n) for j in range(i, n))
    text = "" if text is None else str(text)
    if not text.strip():
        return every
    inc, exc, any_pos = set(), set(), False
    for raw in text.split(";"):
        item = raw.strip()
        if not item:
            continue
        neg = item.startswith("!")
        if neg:
            item = item[1:].strip()
        m = re.fullmatch(r"(.*?)(&{1,3})(.*)", item)
        if m is None:
            left = [a for p in item.split(",") for a in _antenna_ids(p, names, text)]
            sel = {(min(a, b), max(a, b)) for a in left for b in range(n)}
        else:
            lhs, amp, rhs = m.group(1), m.group(2), m.group(3).strip()
            left = [a for p in lhs.split(",") for a in _antenna_ids(p, names, text)]
            if amp == "&&&":
                if rhs:
                    raise AlakazamError(f"antenna: {raw.strip()!r} in {text!r}: '&&&' (auto-correlations "
                                        "only) takes no second antenna list")
                sel = {(a, a) for a in left}
            else:
                right = list(range(n)) if rhs in ("", "*") else \
                    [a for p in rhs.split(",") for a in _antenna_ids(p, names, text)]
                sel = {(min(a, b), max(a, b)) for a in left for b in right if a != b or amp == "&&"}
        if neg:
            exc |= sel
        else:
            inc |= sel
            any_pos = True
    if not any_pos:
        inc = set(every)
    out = frozenset(inc - exc)
    if not out:
        raise AlakazamError(f"antenna: {text!r} selects no baseline")
    return out


_MONTHS_OK = re.compile(r"^\d{4}/\d{1,2}/\d{1,2}(/|$)")


def _mjd_seconds_of(text, t0, full):
    """MJD seconds of one CASA time 'YYYY/MM/DD/hh:mm:ss.s', 'YYYY/MM/DD', 'hh:mm:ss.s', 'hh:mm' (date
    of ``t0``)."""
    import datetime as _dt

    s = text.strip()
    epoch = _dt.datetime(1858, 11, 17)
    try:
        if _MONTHS_OK.match(s):
            parts = s.split("/")
            y, mo, d = (int(x) for x in parts[:3])
            day = (_dt.datetime(y, mo, d) - epoch).days
            hms = parts[3] if len(parts) > 3 else "0:0:0"
        else:
            if t0 is None:
                raise AlakazamError(f"timerange: {s!r} in {full!r} has no date and no reference time")
            day = int(np.floor(float(t0) / 86400.0))
            hms = s
        f = [float(x) for x in hms.split(":")]
        if not 1 <= len(f) <= 3:
            raise ValueError
        f += [0.0] * (3 - len(f))
        if not (0 <= f[0] < 48 and 0 <= f[1] < 60 and 0 <= f[2] < 60):
            raise ValueError
        return day * 86400.0 + f[0] * 3600.0 + f[1] * 60.0 + f[2]
    except AlakazamError:
        raise
    except (ValueError, OverflowError):
        raise AlakazamError(f"timerange: cannot parse the time {s!r} in {full!r}; expected "
                            "'YYYY/MM/DD/hh:mm:ss', 'hh:mm:ss' or 'hh:mm'") from None


def _duration_s(text, full):
    f = [float(x) for x in text.strip().split(":")] if text.strip() else []
    if not 1 <= len(f) <= 3:
        raise AlakazamError(f"timerange: cannot parse the duration {text!r} in {full!r}; expected hh:mm:ss")
    f = [0.0] * (3 - len(f)) + f
    return f[0] * 3600.0 + f[1] * 60.0 + f[2]


def parse_timerange(text, t0=None, interval=0.0) -> List[Tuple[float, float]]:
    """CASA timerange -> list of (start, end) in MJD seconds (a row is selected when start <= TIME <= end).

    Items separated by ','; each item is ``'T1~T2'``, ``'>T'``, ``'<T'``, ``'T+hh:mm:ss'`` (start and
    duration) or a single time ``'T'`` (the integration containing it: T -+ interval/2).  Times are
    ``'YYYY/MM/DD/hh:mm:ss.s'`` or, without a date, ``'hh:mm:ss.s'`` / ``'hh:mm'`` on the day of ``t0``
    (MJD seconds, e.g. the first time of the MS).  ``''`` selects everything (``[(-inf, inf)]``).
    """
    text = "" if text is None else str(text)
    if not text.strip():
        return [(-np.inf, np.inf)]
    out = []
    for raw in text.split(","):
        it = raw.strip()
        if not it:
            continue
        try:
            if it.startswith(">"):
                out.append((_mjd_seconds_of(it[1:], t0, text), np.inf))
            elif it.startswith("<"):
                out.append((-np.inf, _mjd_seconds_of(it[1:], t0, text)))
            elif "~" in it:
                a, b = it.split("~", 1)
                ta = _mjd_seconds_of(a, t0, text)
                if not re.match(r"^\d{4}/", b.strip()) and _MONTHS_OK.match(a.strip()):
                    b = a.strip().rsplit("/", 1)[0] + "/" + b.strip()     # end without a date: start's date
                tb = _mjd_seconds_of(b, t0, text)
                if tb < ta:
                    raise AlakazamError(f"timerange: {it!r} in {text!r} ends before it starts")
                out.append((ta, tb))
            elif "+" in it:
                a, d = it.split("+", 1)
                ta = _mjd_seconds_of(a, t0, text)
                out.append((ta, ta + _duration_s(d, text)))
            else:
                tc = _mjd_seconds_of(it, t0, text)
                h = max(float(interval), 0.0) / 2.0
                out.append((tc - h, tc + h))
        except ValueError as e:
            if isinstance(e, AlakazamError):
                raise
            raise AlakazamError(f"timerange: cannot parse {it!r} in {text!r}") from None
    return out


def time_mask(times, ranges) -> np.ndarray:
    """Boolean mask of ``times`` (MJD s) inside any (start, end) of ``ranges`` (ends included)."""
    t = np.asarray(times, float)
    m = np.zeros(t.shape, bool)
    for a, b in ranges:
        m |= (t >= a) & (t <= b)
    return m


def parse_correlation(text, corr_types) -> List[int]:
    """Indices into ``corr_types`` (e.g. ['XX', 'XY', 'YX', 'YY']) selected by CASA correlation syntax:
    ``'XX,YY'``, ``'RR'``, ``''`` / ``'*'`` = all.  A CASA clip expression prefix (``'ABS_XX'``,
    ``'ABS_ALL'``) is accepted; ``'ALL'`` = all, ``'PARALLEL'`` (``'XX,YY'`` / ``'RR,LL'``) and
    ``'CROSS'`` select the hands.  Case-insensitive; a name not in ``corr_types`` is an error."""
    types = [str(c).upper() for c in corr_types]
    text = "" if text is None else str(text)
    if text.strip() in ("", "*"):
        return list(range(len(types)))
    out = []
    for raw in text.split(","):
        it = raw.strip().upper()
        if not it:
            continue
        for pre in ("ABS_", "REAL_", "IMAG_", "ARG_", "NORM_"):
            if it.startswith(pre):
                it = it[len(pre):]
        if it in ("ALL", "*"):
            out.extend(range(len(types)))
        elif it == "PARALLEL":
            out.extend(i for i, c in enumerate(types) if c[0] == c[1])
        elif it == "CROSS":
            out.extend(i for i, c in enumerate(types) if c[0] != c[1])
        elif it in types:
            out.append(types.index(it))
        else:
            raise AlakazamError(f"correlation: {raw.strip()!r} is not a correlation of the data; available: "
                                f"{', '.join(types)} (or ALL, PARALLEL, CROSS)")
    return sorted(dict.fromkeys(out))
