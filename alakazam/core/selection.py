"""CASA selection syntax parsers (pure: no MS access).

spw: ``'0'``, ``'0~2,4'``, ``'<2'``, ``'0:5~61'``, ``'*:5~61'``, ``'0:0~10;15~60'``, ``'0:0~10^2'``
(step), ``'0:1.401~1.404GHz'`` (frequency range), ``'0:10~500,1,2'``, ``'SPW1:0~3'`` (names),
``'*:1.401~1.404GHz'``, ``'1.40~1.41GHz'``: see :func:`parse_spw`.
scan: ``'1~5,7'``, ``'<5'``, ``'>3'``.
field, correlation: see :func:`parse_fields`, :func:`parse_correlation`.  antenna, timerange, uvrange,
intent and observation are parsed by :mod:`alakazam.core.msselect` (one parser per concept).
"""

from __future__ import annotations

import fnmatch
import re
from typing import Dict, List, Tuple

import numpy as np

from ..errors import AlakazamError
from . import warnonce

_FUNITS = {"hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}
#: CASA's id syntax ('0', '0~2', '<2', '>0'): always ids in a field or spw selection, never names
ID_SYNTAX = re.compile(r"[\d\s~<>]+")


def _int_ranges(text, have, what, offset=0, full=None, table=None):
    """'1~5,7', '<5', '>3', '*' over the available integers ``have`` (positions reported from ``offset``
    in ``full``, the whole user string).  ``table``: every id the table holds (with data or not, its
    row numbers); a range 'a~b' past its last id is an error, as CASA's MSSelection refuses an SPW
    range past the SPECTRAL_WINDOW table (None: a range selects what it covers of ``have``)."""
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
                if table is not None and b > max(table, default=-1):
                    raise AlakazamError(f"{what}: {p!r} goes past the last {what} id of the MS, "
                                        f"{max(table, default='none')} (CASA refuses such a range too)")
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
            start = at + len(part) - len(part.lstrip())           # where ``p`` starts in ``full``
            raise AlakazamError(f"{what}: cannot parse {p!r} at position {at} of {full!r}"
                                f"{_bad_token(p, start)}; expected e.g. '1~5,7', '<5', '>3'") from None
    return sorted(dict.fromkeys(out))


def _bad_token(p, start):
    """': <token> at position N ...' naming the first token of the range item ``p`` (at ``start`` of the
    whole string) that breaks '*', '<n', '>n', 'n' or 'a~b'; '' when that token is ``p`` itself (the
    message names it already)."""
    toks = [(m.group(), m.start()) for m in re.finditer(r"\d+|\S", p)]
    i = 0

    def take(want):
        nonlocal i
        if i < len(toks) and (toks[i][0].isdigit() if want == "n" else toks[i][0] in want):
            i += 1
            return True
        return False

    if not take("*"):
        if take("<>"):
            ok = take("n")
        else:
            ok = take("n") and (not take("~") or take("n"))
        if not ok:
            if i >= len(toks):
                return f": a number is expected after {p!r}"
    if i >= len(toks):
        return ""
    tok, off = toks[i]
    if tok == p:
        return ""
    hint = " (items are separated by ',')" if tok in ";|" else ""
    return f": {tok!r} at position {start + off} is not allowed there{hint}"


def parse_scans(text, have) -> List[int]:
    """Sorted scan numbers of ``have`` selected by CASA scan syntax ('1~5,7', '<5', '>3', '*')."""
    return _int_ranges(text, sorted(have), "scan")


def parse_fields(sel, names: List[str]) -> List[int]:
    """Field ids (in selection order, no duplicates) from names, ids, 'a~b' id ranges, '<n' / '>n' or
    wildcards.  Id syntax is always ids, as CASA's MSSelection: a field named '2' is '"2"'.  A range
    past the last id is clipped with a warning, as CASA's ('0~5' on three fields: 0, 1, 2); one that
    starts past it, and a single id that is no FIELD row, are errors (CASA drops such an id with a
    warning when another item selects something: '0,7' is field 0 there, an error here).

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
        quoted = len(it) >= 2 and it[0] == it[-1] == '"'       # a name forced by double quotes (CASA)
        if quoted:
            it = it[1:-1]
        if it in names and (quoted or not ID_SYNTAX.fullmatch(it)):
            out.extend(i for i, n in enumerate(names) if n == it)     # every FIELD row of that name (CASA)
        elif quoted and not any(c in it for c in "*?["):      # (a quoted pattern is a pattern, as CASA)
            raise AlakazamError(f"field: {raw!r} (item {k}) is not a field name; available: {avail}")
        elif any(c in it for c in "*?["):
            m = [i for i, n in enumerate(names) if fnmatch.fnmatchcase(n, it)]
            if not m:
                raise AlakazamError(f"field: pattern {it!r} (item {k}) matches no field; available: {avail}")
            out.extend(m)
        elif re.fullmatch(r"\d+\s*~\s*\d+", it):
            a, b = (int(x) for x in it.split("~"))
            if a > b or a >= len(names):
                raise AlakazamError(f"field: range {it!r} (item {k}) selects no field id (ids "
                                    f"0~{len(names) - 1}); available: {avail}")
            if b >= len(names):     # CASA's MSSelection clips a range past the table, and warns
                warnonce.warning("alakazam", "field: range %r goes past the last field id, %d: ids %d~%d "
                                 "selected (as CASA)", it, len(names) - 1, a, len(names) - 1)
            out.extend(range(a, min(b, len(names) - 1) + 1))
        elif re.fullmatch(r"[<>]\s*\d+", it):          # CASA '<2' (ids 0, 1), '>0'
            v = int(it[1:])
            m = [i for i in range(len(names)) if (i < v if it[0] == "<" else i > v)]
            if not m:
                raise AlakazamError(f"field: {it!r} (item {k}) selects no field id (ids 0~{len(names) - 1}); "
                                    f"available: {avail}")
            out.extend(m)
        elif it.isdigit() and int(it) < len(names):
            out.append(int(it))
        elif it in names:       # a name in id syntax that is no valid id
            raise AlakazamError(f"field: {it!r} (item {k}) is id syntax and no field id (ids "
                                f"0~{len(names) - 1}); the field named {it!r} is selected as "
                                f"'\"{it}\"' (as CASA)")
        else:
            raise AlakazamError(f"field: {it!r} (item {k}) is not a field name or id; available: {avail}")
    if not out and isinstance(sel, str) and sel.strip():      # ',' : separators only
        raise AlakazamError(f"field: {sel!r} names no field; available: {avail}")
    return list(dict.fromkeys(out))


def _half_widths(freqs, widths=None):
    """Half of each channel's width in Hz: CHAN_WIDTH's where it is given (finite and non-zero, one per
    channel), else half the smallest spacing of the channel frequencies (0 for one channel without a
    width).  A channel's extent is its frequency -/+ this."""
    f = np.asarray(freqs, float)
    if widths is not None:
        w = np.abs(np.asarray(widths, float))
        if w.shape == f.shape and np.all(np.isfinite(w)) and np.all(w > 0):
            return 0.5 * w
    return np.full(f.shape, 0.5 * float(np.min(np.abs(np.diff(f)))) if len(f) > 1 else 0.0)


def _chan_ranges(text, n_chan, freqs, spw, widths=None, clipped=None):
    """Sorted channel indices of one SPW from '5~61', '0~10;15~60', '0~10^2', '1.401~1.404GHz',
    '1.401GHz~1.404GHz' or one frequency '1.4025GHz' (the channel whose extent holds it; ``widths``:
    the SPW's CHAN_WIDTH, :func:`_half_widths`).  A channel range past the SPW's last channel is an
    error, unless ``clipped`` (a list) is given -- an item naming several SPWs of different sizes,
    ``'*:3~10'``: it is then cut at the last channel, or left out when it starts past it, and
    ``(spw, part, what)`` appended to ``clipped``; a frequency part that selects no channel of the SPW
    is then left out too (the SPWs that hold it), the other parts kept -- ``'*:20~23;1.301~1.303GHz'``
    dropped channels 20-23 of every SPW without that band (a review).  Nothing left: an error."""
    chans = []
    for part in text.split(";"):
        p = part.strip().lower()
        if not p:
            continue
        band = _freq_bounds(p)
        if band is not None:
            if freqs is None:
                raise AlakazamError(f"spw: frequency selection {part!r} needs the channel frequencies of "
                                    f"SPW {spw}")
            freqs = np.asarray(freqs, float)
            lo, hi = band
            if lo > hi:
                raise AlakazamError(f"spw: in {part!r} the first frequency is above the last (as CASA, "
                                    "a range goes from low to high)")
            half = _half_widths(freqs, widths)
            if lo == hi and "~" not in p:       # one frequency: the channel whose extent holds it
                sel = np.nonzero((freqs - half <= lo) & (lo < freqs + half))[0]
                if len(sel) == 0:
                    sel = np.nonzero(freqs == lo)[0]         # (a one-channel SPW without a width)
            else:
                sel = np.nonzero((freqs >= lo) & (freqs <= hi))[0]
                if len(sel) == 0 and len(freqs):     # a range inside one channel: the channel(s) it lies in
                    sel = np.nonzero((freqs - half < hi) & (freqs + half > lo))[0]
                    if len(sel) == 0:                # (no width, on the edge of two: both, as CASA)
                        sel = np.nonzero((freqs - half <= hi) & (freqs + half >= lo))[0]
            if len(sel) == 0:
                if clipped is not None:     # several SPWs: the ones that hold it (the other parts kept)
                    clipped.append((spw, part.strip(), None))
                    continue
                raise AlakazamError(f"spw: {part!r} selects no channel of SPW {spw}")
            chans.extend(sel.tolist())
            continue
        step = 1
        try:
            if "^" in p:
                p, s = p.split("^")
                step = int(s)
            if "~" in p:
                a, b = (int(x) for x in p.split("~"))
            else:
                a = b = int(p)
        except ValueError:
            raise AlakazamError(f"spw: cannot parse channel range {part!r}; expected e.g. 5~61, 0~10^2, "
                                "1.401~1.404GHz") from None
        if step < 1:
            raise AlakazamError(f"spw: channel step {step} in {part!r} must be a positive integer")
        if a > b:
            raise AlakazamError(f"spw: in {part!r} the first channel {a} is after the last {b}")
        if a >= 0 and b >= n_chan and clipped is not None:
            if a >= n_chan:
                clipped.append((spw, part.strip(), "left out"))
                continue
            clipped.append((spw, part.strip(), f"cut to {a}~{n_chan - 1}"))
            b = n_chan - 1
        if a < 0 or b >= n_chan:
            raise AlakazamError(f"spw: channels {a}~{b} outside SPW {spw} (0~{n_chan - 1})")
        chans.extend(range(a, b + 1, step))
    if not chans:
        raise AlakazamError(f"spw: {text!r} selects no channel of SPW {spw}")
    return sorted(dict.fromkeys(chans))


_NUM = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?"
_UNIT = r"(?:hz|khz|mhz|ghz)"
#: a frequency range, the unit on the last end (or on both: '1.401GHz~1.404GHz'), or one frequency
_FREQ = re.compile(rf"\s*({_NUM})\s*(?:({_UNIT})\s*)?(?:~\s*({_NUM})\s*)?({_UNIT})\s*", re.I)


def _freq_bounds(text):
    """(lo, hi) in Hz of a frequency item -- '1.401~1.404GHz', '1401MHz~1.404GHz' (each end its own
    unit, as CASA; the first takes the last's when it has none) or one frequency '1.4025GHz' (lo = hi)
    -- or None when ``text`` is no frequency item (a channel range, an SPW id or name)."""
    m = _FREQ.fullmatch(str(text))
    if m is None or (m.group(2) and not m.group(3)):      # ('1GHzMHz' is no frequency)
        return None
    last = _FUNITS[m.group(4).lower()]
    first = _FUNITS[m.group(2).lower()] if m.group(2) else last
    lo = float(m.group(1)) * first
    return (lo, float(m.group(3)) * last) if m.group(3) else (lo, lo)


def _spws_by_name(s, names):
    """SPW ids whose NAME is ``s`` (case-sensitive) or matches it as a wildcard pattern (CASA's
    MSSelection: ``'SPW1'``, ``'EVLA_L*'``); [] when none does.  Id syntax (``'0'``, ``'0~2'``,
    ``'<2'``) is always ids, as CASA's: a name that looks like one is given in double quotes
    (``'"0"'``)."""
    if not names:
        return []
    if len(s) >= 2 and s[0] == s[-1] == '"':
        s = s[1:-1]
    elif ID_SYNTAX.fullmatch(s):
        return []
    if any(c in s for c in "*?["):
        return [i for i, n in sorted(names.items()) if n and fnmatch.fnmatchcase(n, s)]
    return [i for i, n in sorted(names.items()) if n == s]


def _spws_in_band(item, have, freqs, text, widths=None):
    """The SPWs of ``have`` that a bare frequency item selects, every channel of each.  A range
    ('1.3~1.4GHz'): the SPWs whose centre frequency (the middle of its first and last channel) lies in
    it -- CASA's MSSelection, measured with msseltoindex: an SPW the range only overlaps is not
    selected.  One frequency ('1.42GHz'): the SPWs whose channels' extents span it (``widths``: each
    SPW's CHAN_WIDTH, :func:`_half_widths`; CASA 6.7 selects only an SPW whose centre is within about
    a channel width of it, measured).  No SPW is an error."""
    lo, hi = _freq_bounds(item)
    if lo > hi:
        raise AlakazamError(f"spw: in {item!r} the first frequency is above the last (as CASA, a range "
                            "goes from low to high)")
    one = "~" not in item
    out = []
    for sp in have:
        f = np.asarray((freqs or {}).get(sp, []), float)
        if not len(f):
            continue
        if one:
            half = _half_widths(f, (widths or {}).get(sp))
            if np.min(f - half) <= lo < np.max(f + half) or lo in f:
                out.append(sp)
        elif lo <= 0.5 * (f.min() + f.max()) <= hi:
            out.append(sp)
    if not out:
        what = ("no SPW's channels span it" if one else "holds no SPW's centre frequency (an SPW is selected "
                "by a bare frequency range when its centre lies in it, as CASA)")
        raise AlakazamError(f"spw: {item!r} of {text!r}: {what}")
    return out


def _spws_named_or_in_band(s, have, freqs, widths, names, text):
    """The SPWs of a bare frequency item ``s`` (:func:`_spws_in_band`), where ``s`` may also be an SPW's
    NAME ('1.3GHz'): the same SPWs either way, or an error asking for the quoted name (CASA reads the
    item as a frequency; a name that looks like one is given in double quotes, '"1.3GHz"')."""
    named = _spws_by_name(s, names)
    try:
        by_freq, err = _spws_in_band(s, have, freqs, text, widths), None
    except AlakazamError as e:
        by_freq, err = None, e
    if named and named != by_freq:
        ids = ", ".join(map(str, named))
        read = f"selects SPW {', '.join(map(str, by_freq))}" if by_freq else "selects no SPW"
        raise AlakazamError(f"spw: {s!r} is the name of SPW {ids} and, read as a frequency (as CASA reads "
                            f"it), {read}: give '\"{s}\"' for the SPW of that name")
    if err is not None:
        raise err
    return by_freq


def parse_spw(text, n_chan: Dict[int, int], freqs: Dict[int, np.ndarray],
              names: Dict[int, str] = None, table=None,
              widths: Dict[int, np.ndarray] = None) -> List[Tuple[int, List[int]]]:
    """[(spw_id, channel list), ...] for a CASA SPW selection string.

    Parameters
    ----------
    text : str
        e.g. '0', '0~2,4', '<2', '0:5~61', '*:5~61', '0:0~10;15~60', '0:0~10^2', '0:10~500,1,2',
        '0:1.401~1.404GHz', 'SPW1:0~3' / 'EVLA_L*' (SPW names, as CASA: exact and case-sensitive, or a
        wildcard pattern; id syntax is always ids, a name that looks like one in double quotes:
        '"0"'), '1.40~1.41GHz' (every channel of the SPWs whose centre frequency is in the range).
        Where an item names several SPWs (``'*'``, a range, a pattern) a frequency range selects the
        channels of the SPWs that hold it and leaves out the others (CASA's ``'*:1.40~1.41GHz'``); an
        error only when none of them does.
    n_chan : dict
        SPW id -> number of channels.
    freqs : dict
        SPW id -> (chan,) channel frequencies in Hz (for frequency ranges).
    names : dict, optional
        SPW id -> SPECTRAL_WINDOW NAME (for selection by name).
    table : collection of int, optional
        Every SPW id of the SPECTRAL_WINDOW table, with data or not: an id range past it (``'0~5'`` on
        two SPWs) is an error, as CASA's; an id in it without data is left out of a range.  None: the
        ids of ``n_chan``.
    widths : dict, optional
        SPW id -> (chan,) CHAN_WIDTH in Hz: a channel's extent for one frequency ('0:1.4025GHz') and a
        range inside a channel (else half the channel spacing; a one-channel SPW needs it).
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
        s = s.strip()
        if not s:
            spws = have
        elif _freq_bounds(s) is not None:    # '1.3~1.4GHz', '1.42GHz' (and '1.3~1.4GHz:0~2', as CASA)
            spws = _spws_named_or_in_band(s, have, freqs, widths, names, text)
        else:
            spws = _spws_by_name(s, names) if s != "*" else []
            if not spws and s.startswith('"'):
                raise AlakazamError(f"spw: {s} is not an SPW name (names: "
                                    f"{', '.join(n for _, n in sorted((names or {}).items()) if n)})")
            if not spws:
                try:
                    spws = _int_ranges(s, have, "spw", at, text, set(have if table is None else table))
                except AlakazamError as e:
                    if names and not re.fullmatch(r"[\d\s~<>*]+", s):
                        known = ", ".join(n for _, n in sorted(names.items()) if n)
                        raise AlakazamError(f"{e} (nor is {s!r} an SPW name: {known})") from None
                    raise
        several = len(spws) > 1
        # an item naming several SPWs ('*:3~10', '0~3:0~1;60~63'): a channel range is cut at each SPW's
        # last channel, and left out of an SPW it starts past, as CASA's MSSelection cuts it (a review:
        # edge channels of SPWs of 16, 24, 32 and 8 channels were refused); one SPW: an error
        clipped = [] if several else None
        for sp in spws:
            if c is None:
                ch = list(range(n_chan[sp]))
            else:
                try:
                    ch = _chan_ranges(c, n_chan[sp], (freqs or {}).get(sp), sp, (widths or {}).get(sp),
                                      clipped)
                except AlakazamError as e:
                    if several and "selects no channel" in str(e):
                        continue        # (a frequency selection: the SPWs that hold it; ranges past the end)
                    raise
            out[sp] = sorted(set(out.get(sp, [])) | set(ch))
        if several and c is not None and not any(sp in out for sp in spws):
            raise AlakazamError(f"spw: {item!r} selects no channel of SPWs {', '.join(map(str, spws))}")
        # a frequency part no SPW of the item holds: said (the SPWs that hold one are not listed)
        nowhere = [part for part in dict.fromkeys(p for _, p, w in (clipped or []) if w is None)
                   if sum(1 for _, p, w in clipped if p == part and w is None) == len(spws)]
        if nowhere:
            warnonce.warning("alakazam", "spw: %r: %s selects no channel of SPWs %s (left out)", item,
                             " and ".join(repr(p) for p in nowhere), ", ".join(map(str, spws)))
        cut = [(sp, part, what) for sp, part, what in (clipped or []) if what is not None]
        if cut:
            warnonce.warning("alakazam", "spw: %r: %s (a range past an SPW's last channel is cut there, as "
                             "CASA's MSSelection does; one that starts past it is left out, where CASA "
                             "selects the last channel)",
                             item, "; ".join(f"SPW {sp} ({n_chan[sp]} channels): {part} {what}"
                                             for sp, part, what in cut))
    return sorted(out.items())


def _split_top(text):
    """Split on commas that separate SPW items ('0:0~10;15~60,1' -> ['0:0~10;15~60', '1'])."""
    return [p for p in str(text).split(",")]


# --------------------------------------------------------------------------------------------------
# correlation selection (pure).  antenna / timerange / uvrange / intent / observation: core/msselect.py
# (one parser per concept, shared by akcal, akapply and akflag)
# --------------------------------------------------------------------------------------------------
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
