"""CASA ``combine`` for a solve step: which data boundaries a solution interval may cross.

Conventions (pinned by tests/test_solve_params.py):

* ``combine`` per step: ``''`` (none) or a comma-separated list of ``scan``, ``field``, ``spw``.
  Parsed by :func:`parse_combine`; :func:`check_step` refuses ``spw`` on frequency-dependent terms.
* ``scan``: solution intervals are not cut at scan boundaries.  With a duration solint the bins are
  anchored at the first selected scan's start and run across scans: one solution per bin holding the
  data of every scan inside it (bins with no data are dropped, as everywhere).  ``solint='scan'`` with
  ``combine='scan'`` is one solution over all the field's selected scans, as ``'inf'``.  alakazam's
  ``'inf'`` already combines scans without ``combine`` (SEED.md; in CASA ``'inf'`` without
  ``combine='scan'`` is one solution per scan).  The solution set is stored as the combined group
  ``scan_0`` with ``scans`` = every scan it spans.  Samples inside a bin stay one per (scan, bin) for
  D, KC and CP (the parallactic-angle diversity), as without combine.
* ``field``: the selected fields of the step are solved together: their data (each with its own
  model, pre-apply and parallactic angle) are summed into the same solution cells, so one solution
  set per time interval serves them all.  It is stored under the combined field name
  ``'<f1>+<f2>+...'`` (the fields in selection order; RA/Dec of the first; attr ``combined_fields``);
  apply's field selection treats it as one calibrator field (nearest_time / nearest_sky / pinned with
  that name).  Without ``scan`` the solution intervals still stop at scan boundaries (each scan is of
  one field), so ``field`` matters with ``inf`` or together with ``scan``, as in CASA.
* ``spw``: the selected SPWs are solved together for a frequency-independent term (G, D, CP with
  freqint 'full'; K/KC and frequency bins are refused): one solution from the data of every SPW.  It
  is stored once per SPW (identical values, attr ``combined_spws``), so apply and the pre-apply of later
  steps need no spwmap (CASA stores it under the first SPW only and needs ``spwmap``; alakazam's copies
  are equivalent to that spwmap).
* ``workers`` / ``scheduler`` (dask) with ``field`` or ``spw`` are refused (the distributed unit is one
  field and SPW).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from ..errors import AlakazamError

COMBINE_ITEMS = ("scan", "field", "spw")


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
        raise AlakazamError(f"{where}: {bad[0]!r} in {value!r} is not allowed; expected '' or a "
                            f"comma-separated list of {', '.join(COMBINE_ITEMS)}")
    return ",".join(dict.fromkeys(items))


def plan_scan_combined(scans_info, tint):
    """One group (scan_id 0) over all scans; time cells of ``tint.seconds`` anchored at the first scan's
    start, crossing scans (``inf`` / ``scan``: one cell).  Sample bins are the (scan, cell) pairs with
    any overlap, in time order."""
    from ..plan import time_cells

    scans_info = sorted(scans_info, key=lambda s: s[1])
    t_first = scans_info[0][1]
    one_cell = tint.kind in ("inf", "scan")
    pairs = []
    for scan, t0, t1 in scans_info:
        if one_cell:
            cells = [0]
        else:
            c0 = int(time_cells(t0 - t_first, tint))
            c1 = int(time_cells(t1 - t_first, tint))
            cells = range(c0, c1 + 1)
        pairs.extend((scan, c) for c in cells)
    g = CombinedGroup(0, [s[0] for s in scans_info], np.array([p[0] for p in pairs], np.int64),
                      np.array([p[1] for p in pairs], np.int64),
                      int(max(p[1] for p in pairs)) + 1)
    g.t_first = float(t_first)
    g.seconds = 0.0 if one_cell else float(tint.seconds)
    g.tint = None if one_cell else tint
    g.lookup = {p: i for i, p in enumerate(pairs)}
    return [g]


def _group_base():
    from ..plan import Group
    return Group


class CombinedGroup(_group_base()):
    """A :class:`alakazam.plan.Group` whose time cells cross scans (``combine='scan'``)."""

    t_first = 0.0
    seconds = 0.0
    tint = None             # the TimeInterval of the cells (plan.time_cells)
    lookup: dict = {}       # (scan, cell) -> sample bin; set per instance by plan_scan_combined

    def sample_bins(self, row_scan, row_time):
        """Sample-bin index (n_row,) of each row: its (scan, cell) pair."""
        from ..plan import time_cells

        row_scan = np.asarray(row_scan, np.int64)
        if self.seconds > 0:
            cell = time_cells(np.asarray(row_time, float) - self.t_first, self.tint).astype(np.int64)
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


def combines(step, what) -> bool:
    """Does ``step`` combine ``what`` ('scan', 'field', 'spw')?"""
    return what in str(getattr(step, "combine", "") or "").split(",")


def check_step(step, where="combine"):
    """Errors (AlakazamError naming ``where``) for combine='spw' on a frequency-dependent term."""
    if combines(step, "spw"):
        if step.jones_type in ("K", "KC"):
            raise AlakazamError(f"{where}: 'spw' for {step.key} ({step.jones_type}) is not supported: a "
                                "delay is fitted across the channels of one SPW; combine 'spw' needs a "
                                "frequency-independent term (G, D, CP with freqint 'full')")
        if step.freq_interval_hz is not None:
            raise AlakazamError(f"{where}: 'spw' for {step.key} needs freqint 'full' (one solution from all "
                                f"SPWs), not {step.freq_interval_text!r}")


def units(step, fids, spw_sel):
    """The solve units of a step: ``(fid, ddid, chans, members)``; members None = one field and SPW,
    otherwise the (fid, ddid, chans) solved together (combine 'field' / 'spw')."""
    by_field = combines(step, "field")
    by_spw = combines(step, "spw")
    items = list(spw_sel.items())
    if not by_field and not by_spw:
        for fid in fids:
            for ddid, chans in items:
                yield fid, ddid, chans, None
        return
    fgroups = [list(fids)] if by_field else [[f] for f in fids]
    sgroups = [items] if by_spw else [[x] for x in items]
    for fg in fgroups:
        for sg in sgroups:
            yield fg[0], sg[0][0], sg[0][1], [(f, d, c) for f in fg for d, c in sg]


@dataclass
class Member:
    """One (field, SPW) of a solve unit and what its accumulation needs."""

    fid: int
    ddid: int
    chans: np.ndarray
    fld: object
    fsamp_of_chan: np.ndarray
    corr_src: object


def member_contexts(meta, members, fid, ddid, chans, fsamp_of_chan, corr_src, chan_sampled, fbin_of_chan):
    """:class:`Member` list of a unit (the unit's own field and SPW first)."""
    from .averaging import corr_map

    first = Member(fid, ddid, chans, meta.fields[fid], fsamp_of_chan, corr_src)
    if not members:
        return [first]
    out = [first]
    for f, d, c in members:
        if (f, d) == (fid, ddid):
            continue
        if d == ddid:
            fs = fsamp_of_chan
        else:               # combine 'spw': one frequency bin (check_step), all channels in it
            fs = np.zeros(len(c), np.int64)
        out.append(Member(f, d, np.asarray(c), meta.fields[f], fs, corr_map(meta.spws[d].corr_types)))
    return out


def union_ranges(range_lists):
    """Scan ranges of several (field, SPW): (scan, t_start, t_end) merged per scan."""
    rng = {}
    for lst in range_lists:
        for sc, a, b in lst:
            lo, hi = rng.get(sc, (np.inf, -np.inf))
            rng[sc] = (min(lo, a), max(hi, b))
    return [(s, a, b) for s, (a, b) in rng.items()]


def member_chunks(mctx, chunks_of):
    """``(member, (chunk, rows))`` for every member's chunks of the group."""
    for m in mctx:
        for item in chunks_of(m):
            yield m, item


def stored_sets(sset, mctx, meta):
    """The solution set as stored: itself for one field and SPW; under the combined field name with
    combine 'field'; one copy per SPW with combine 'spw' (module doc)."""
    fids = list(dict.fromkeys(m.fid for m in mctx))
    ddids = list(dict.fromkeys(m.ddid for m in mctx))
    if len(fids) > 1:
        names = [meta.fields[f].name for f in fids]
        sset.attrs["field_name"] = "+".join(names)
        sset.attrs["combined_fields"] = names
    if len(ddids) == 1:
        return [sset]
    spws = [int(meta.spws[d].spw_id) for d in ddids]
    sset.attrs["combined_spws"] = sorted(spws)
    out = []
    for d in ddids:
        chans = next(m.chans for m in mctx if m.ddid == d)
        s2 = sset if d == ddids[0] else copy.deepcopy(sset)
        s2.attrs["spw"] = int(meta.spws[d].spw_id)
        s2.attrs["feed_basis"] = meta.spws[d].feed_basis
        s2.attrs["channels"] = np.asarray(chans, np.int64)
        s2.freq = np.array([float(np.mean(np.asarray(meta.spws[d].freqs)[chans]))])
        out.append(s2)
    return out
