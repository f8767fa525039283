"""CASA ``combine`` for a solve step: which data boundaries a solution interval may cross.

Conventions (pinned by tests/test_solve_params.py):

* ``combine`` per step: ``''`` (none) or a comma-separated list of ``scan`` (and, see below, ``field``
  / ``spw``).  Parsed by :func:`parse_combine`.
* ``scan``: solution intervals are not cut at scan boundaries.  With a duration solint the bins are
  anchored at the first selected scan's start and run across scans: one solution per bin holding the
  data of every scan inside it (bins with no data are dropped, as everywhere).  ``solint='scan'`` with
  ``combine='scan'`` is one solution over all the field's selected scans, as ``'inf'``.  alakazam's
  ``'inf'`` already combines scans without ``combine`` (SEED.md; in CASA ``'inf'`` without
  ``combine='scan'`` is one solution per scan).  The solution set is stored as the combined group
  ``scan_0`` with ``scans`` = every scan it spans.  Samples inside a bin stay one per (scan, bin) for
  D, KC and CP (the parallactic-angle diversity), as without combine.
* ``field`` and ``spw`` are refused with a ParameterError naming ``combine`` (not implemented; see
  the README's "CASA parameters").
"""

from __future__ import annotations

import math
import numpy as np

from ..errors import AlakazamError

COMBINE_ITEMS = ("scan", "field", "spw")
IMPLEMENTED = ("scan",)


def parse_combine(value, where="combine"):
    """'' / None -> ''; 'scan', 'scan,field' ... -> normalised comma string; errors name ``where``."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise AlakazamError(f"{where}: {value!r} must be a string: '' or a comma-separated list of "
                            f"{', '.join(COMBINE_ITEMS)}")
    items = [x.strip().lower() for x in value.split(",") if x.strip()]
    bad = [x for x in items if x not in COMBINE_ITEMS]
    if bad:
        raise AlakazamError(f"{where}: {bad[0]!r} in {value!r} is not allowed; expected '' or a comma-separated "
                            f"list of {', '.join(COMBINE_ITEMS)}")
    todo = [x for x in items if x not in IMPLEMENTED]
    if todo:
        raise AlakazamError(f"{where}: {todo[0]!r} is not supported yet (only 'scan'); solve the fields / SPWs "
                            "separately, or append them to one key with append=True")
    return ",".join(dict.fromkeys(items))


def combines_scans(step) -> bool:
    return "scan" in str(getattr(step, "combine", "") or "").split(",")


def plan_scan_combined(scans_info, tint):
    """One group (scan_id 0) over all scans; time cells of ``tint.seconds`` anchored at the first scan's
    start, crossing scans (``inf`` / ``scan``: one cell).  Sample bins are the (scan, cell) pairs with
    any overlap, in time order."""
    scans_info = sorted(scans_info, key=lambda s: s[1])
    t_first = scans_info[0][1]
    one_cell = tint.kind in ("inf", "scan")
    pairs = []
    for scan, t0, t1 in scans_info:
        if one_cell:
            cells = [0]
        else:
            c0 = int(math.floor((t0 - t_first) / tint.seconds + 1e-9))
            c1 = int(math.floor((t1 - t_first) / tint.seconds + 1e-9))
            cells = range(c0, c1 + 1)
        pairs.extend((scan, c) for c in cells)
    g = CombinedGroup(0, [s[0] for s in scans_info], np.array([p[0] for p in pairs], np.int64),
                      np.array([p[1] for p in pairs], np.int64),
                      int(max(p[1] for p in pairs)) + 1)
    g.t_first = float(t_first)
    g.seconds = 0.0 if one_cell else float(tint.seconds)
    g.lookup = {p: i for i, p in enumerate(pairs)}
    return [g]


def _group_base():
    from ..flow import Group
    return Group


class CombinedGroup(_group_base()):
    """A :class:`alakazam.flow.Group` whose time cells cross scans (``combine='scan'``)."""

    t_first = 0.0
    seconds = 0.0
    lookup: dict = {}       # (scan, cell) -> sample bin; set per instance by plan_scan_combined

    def sample_bins(self, row_scan, row_time):
        """Sample-bin index (n_row,) of each row: its (scan, cell) pair."""
        row_scan = np.asarray(row_scan, np.int64)
        if self.seconds > 0:
            cell = np.floor((np.asarray(row_time, float) - self.t_first) / self.seconds + 1e-9).astype(np.int64)
            cell = np.clip(cell, 0, self.n_tcell - 1)
        else:
            cell = np.zeros(len(row_scan), np.int64)
        out = np.full(len(row_scan), -1, np.int64)
        for (s, c), i in self.lookup.items():
            out[(row_scan == s) & (cell == c)] = i
        for k in np.flatnonzero(out < 0):      # a time just past its scan's last cell: that scan's nearest
            mine = [(abs(c - cell[k]), i) for (s, c), i in self.lookup.items() if s == row_scan[k]]
            out[k] = min(mine)[1]
        return out
