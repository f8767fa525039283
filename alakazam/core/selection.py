"""CASA selection syntax parsers (pure: no MS access).

spw: ``'0'``, ``'0~2,4'``, ``'<2'``, ``'0:5~61'``, ``'*:5~61'``, ``'0:0~10;15~60'``, ``'0:0~10^2'``
(step), ``'0:1.401~1.404GHz'`` (frequency range), ``'0:10~500,1,2'``.
scan: ``'1~5,7'``, ``'<5'``, ``'>3'``.
"""

from __future__ import annotations

import re
from typing import Dict, List, Tuple

import numpy as np

from ..errors import AlakazamError

_FUNITS = {"hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}


def _int_ranges(text, have, what):
    """'1~5,7', '<5', '>3', '*' over the available integers ``have``."""
    out = []
    for part in str(text).split(","):
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
                    raise AlakazamError(f"{what}: {v} is not present (have {have[0]}~{have[-1]})"
                                        if have else f"{what}: {v} is not present")
                out.append(v)
        except ValueError:
            raise AlakazamError(f"{what}: cannot parse {p!r} in {text!r}; expected e.g. '1~5,7', '<5', '>3'") \
                from None
    return sorted(dict.fromkeys(out))


def parse_scans(text, have) -> List[int]:
    return _int_ranges(text, sorted(have), "scan")


def _chan_ranges(text, n_chan, freqs, spw):
    chans = []
    for part in text.split(";"):
        p = part.strip().lower()
        if not p:
            continue
        m = re.fullmatch(r"([0-9.eE+-]+)\s*~\s*([0-9.eE+-]+)\s*(hz|khz|mhz|ghz)", p)
        if m:
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
    """[(spw_id, channel list), ...] for a CASA SPW selection string."""
    have = sorted(n_chan)
    out = {}
    for item in _split_top(text):
        item = item.strip()
        if not item:
            continue
        if ":" in item:
            s, c = item.split(":", 1)
        else:
            s, c = item, None
        spws = _int_ranges(s.strip(), have, "spw") if s.strip() else have
        for sp in spws:
            ch = list(range(n_chan[sp])) if c is None else _chan_ranges(c, n_chan[sp], freqs[sp], sp)
            out[sp] = sorted(set(out.get(sp, [])) | set(ch))
    return sorted(out.items())


def _split_top(text):
    """Split on commas that separate SPW items ('0:0~10;15~60,1' -> ['0:0~10;15~60', '1'])."""
    return [p for p in str(text).split(",")]
