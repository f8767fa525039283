"""Solve plan: the units of a solve block and the orders in which they run.

Unit of work
------------
A :class:`Unit` is (step, field, SPW, scan group): ``group`` (:class:`Group`) is one MS scan when the
step's time_interval is ``scan`` or a duration (solution bins never cross scan boundaries), or all
selected scans of the field when it is ``inf`` (HDF5 group ``scan_0``; see :mod:`alakazam.io.hdf5`).
A unit depends only on the earlier steps' solutions, so units can run on any executor
(:mod:`alakazam.distributed` ships them to dask workers); :mod:`alakazam.unit` solves one.

The planner
-----------
* :func:`memory_plan` -- the memory tier and the largest read (:mod:`alakazam.core.memory`), and
  whether the block runs field-major (:mod:`alakazam.flow` module docstring);
* :func:`units_of` -- the units of one step, in the in-process order (field, SPW, scan group);
* :func:`step_major` and :func:`field_major` -- the two orderings of the same units, as batches of
  one (step, field, SPW): every step over all its fields then the next step, or, for each (field, SPW),
  every step.  A batch is what the in-process driver solves in one call
  (:func:`alakazam.unit.solve_field_spw`): its units share one read in memory tier 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Group:
    """Rows solved together and stored in one HDF5 scan group."""

    scan_id: int                    # MS scan number, or 0 for all scans combined (time_interval inf)
    scans: list[int]
    # sample bins (scan-granular time bins): per bin its scan and its solution-time-bin index
    sbin_scan: np.ndarray           # (n_sbin,) scan number of each sample bin
    sbin_cell: np.ndarray           # (n_sbin,) solution time bin of each sample bin
    n_tcell: int
    #: 'int' / 'Nints': the times between the scan's cells (n_tcell - 1,), midway between the last
    #: integration of a cell and the first of the next (:func:`integration_edges`); None: cells of a
    #: duration from the scan start (:func:`time_cells`)
    tedges: object = None


def integration_edges(times, intervals, n_per, fallback_interval=0.0):
    """The cell edges of 'Nints' (``n_per`` integrations per cell) in one scan: its distinct TIMEs
    ``times`` (sorted) grouped into integrations -- a TIME more than half an integration (the rows'
    smallest INTERVAL there; ``fallback_interval`` where that is 0) after the first TIME of the current
    integration starts the next; where INTERVAL is 0, the scan's own median TIME spacing) -- then an
    edge midway between the last TIME of every n_per-th
    integration and the first of the next.  CASA's 'int' is one solution per timestamp: counting
    integrations keeps that where the dump spacing is not the MS's median INTERVAL (dumps every 9.5 s
    with INTERVAL 10 s, dumps of 5 s in one scan of a 10-s MS, irregular dumps: a duration of the
    median INTERVAL merged or split them, a review), and TIMEs of one integration that differ by
    rounding or per-baseline centroids stay one.  Returns ``(edges, n_integrations)``."""
    times = np.asarray(times, float)
    if not len(times):
        return np.zeros(0), 0
    iv = np.asarray(intervals, float)
    ok = np.isfinite(iv) & (iv > 0)
    if not ok.all():
        # INTERVAL 0 (some converters): the scan's own spacing -- the median gap between its TIMEs that is
        # more than 1e-3 of the MS's (a scan dumped at 5 s in a 10-s MS; the MS-wide spacing merged its
        # dumps, a review), ignoring the ms-level differences of one integration's TIMEs
        gaps = np.diff(times)
        big = gaps[gaps > 1e-3 * float(fallback_interval or 0.0)] if fallback_interval else gaps[gaps > 0]
        own = float(np.median(big)) if len(big) else float(fallback_interval or 0.0)
        iv = np.where(ok, iv, own)
    starts, ends = [0], []
    for k in range(1, len(times)):
        if times[k] - times[starts[-1]] > 0.5 * iv[starts[-1]]:
            ends.append(k - 1)
            starts.append(k)
    ends.append(len(times) - 1)
    n_int = len(starts)
    cut = np.arange(n_per, n_int, n_per)                 # first integration of each later cell
    edges = 0.5 * (times[np.asarray(ends)[cut - 1]] + times[np.asarray(starts)[cut]]) if len(cut) else \
        np.zeros(0)
    return edges, n_int


def plan_groups(scans_info, tint, combine="", integrations=None, fallback_interval=0.0) -> list[Group]:
    """Split the field's scans into groups and solution time bins.

    Parameters
    ----------
    scans_info : list of (scan_number, t_start, t_end)
    tint : :class:`alakazam.config.TimeInterval`

    Returns
    -------
    list of :class:`Group`.  For ``inf`` one group (scan_id 0) with one time cell; for ``scan`` one
    group per scan with one time cell; for a duration, one group per scan with
    ceil(scan length / solint) time cells anchored at the scan start.  ``combine`` (the step's CASA
    combine) with 'scan': one group whose time cells cross scans (:mod:`alakazam.core.combine`).
    """
    if "scan" in str(combine or "").split(","):       # CASA combine='scan' (core/combine.py)
        from .core.combine import plan_scan_combined
        return plan_scan_combined(scans_info, tint)
    scans_info = sorted(scans_info, key=lambda s: s[1])
    if tint.kind == "inf":
        scans = [s[0] for s in scans_info]
        return [Group(0, scans, np.array(scans), np.zeros(len(scans), int), 1)]
    groups = []
    n_per = int(getattr(tint, "ints", 0) or 0)
    for scan, t0, t1 in scans_info:
        edges = None
        if tint.kind == "scan":
            n = 1
        elif n_per and integrations is not None and scan in integrations:     # 'int' / 'Nints'
            edges, _ = integration_edges(*integrations[scan], n_per, fallback_interval)
            n = len(edges) + 1
        else:
            n = max(1, int(time_cells(t1 - t0, tint)) + 1)
        groups.append(Group(scan, [scan], np.full(n, scan), np.arange(n), n, edges))
    return groups


def sample_bin_of_rows(group: Group, tint, scan_t0: dict[int, float], row_scan, row_time):
    """Sample-bin index (n_row,) of each row of a group (see :func:`plan_groups`)."""
    if hasattr(group, "sample_bins"):                   # combine='scan' (core/combine.py)
        return group.sample_bins(row_scan, row_time)
    if tint.kind == "inf":
        scans = np.asarray(group.scans, np.int64)
        order = np.argsort(scans, kind="stable")
        pos = np.searchsorted(scans[order], np.asarray(row_scan, np.int64))
        return order[np.minimum(pos, len(scans) - 1)].astype(np.int64)
    if tint.kind == "scan":
        return np.zeros(len(row_scan), np.int64)
    if getattr(group, "tedges", None) is not None:       # 'int' / 'Nints': counted integrations
        idx = np.searchsorted(group.tedges, np.asarray(row_time, float), side="right").astype(np.int64)
        return np.clip(idx, 0, group.n_tcell - 1)
    t0 = scan_t0[group.scan_id]
    idx = time_cells(np.asarray(row_time, float) - t0, tint).astype(np.int64)
    return np.clip(idx, 0, group.n_tcell - 1)


def time_cells(dt, tint):
    """Solution time cell (float, floored) of times ``dt`` seconds after the cell grid's anchor (a scan's
    first TIME; combine='scan': the first scan's) for a duration ``tint``: floor((dt + snap) / seconds),
    ``tint.snap`` half an integration for 'int' / 'Nints' (edges midway between integrations,
    :func:`alakazam.config.resolve_integrations`), else 0 (a duration: edges at multiples of it, as
    CASA's; 1e-9 of an interval of rounding)."""
    return np.floor((np.asarray(dt, float) + getattr(tint, "snap", 0.0)) / tint.seconds + 1e-9)


def freq_bins(freqs: np.ndarray, chan_width: float, width_hz: float | None) -> np.ndarray:
    """Solution freq-bin index (n_chan,) of each selected channel; contiguous runs of channels.

    ``width_hz`` None = one bin for the whole selection; a :class:`alakazam.config.Channels` = that many
    channels per bin; otherwise n_per_bin = max(1, round(width_hz / |chan_width|)) channels per bin.
    """
    n = len(freqs)
    if width_hz is None:
        return np.zeros(n, np.int64)
    chans = getattr(width_hz, "channels", None)
    per = int(chans) if chans is not None else max(1, int(round(width_hz / abs(chan_width))))
    return np.arange(n, dtype=np.int64) // per


@dataclass(frozen=True, eq=False)
class Unit:
    """One unit of work: step ``step_index`` of the block on field ``fid``, DATA_DESC_ID ``ddid``
    (``chans``: the selected channels) and solution group ``group``."""

    step_index: int
    step: object                    # alakazam.config.SolveStep
    fid: int
    ddid: int
    chans: np.ndarray
    group: Group

    @property
    def batch(self):
        """(step_index, field, DATA_DESC_ID): the in-process batch the unit belongs to."""
        return (self.step_index, self.fid, self.ddid)


def units_of(meta, step_index, step, fids, spw_sel, scans) -> list[Unit]:
    """The units of one step over ``fids`` and the selected SPWs, in the in-process order (field, SPW,
    scan group); a (field, SPW) without selected scans has none.  (Joint units of combine 'field' /
    'spw' are not listed here: those steps do not run on dask, :func:`alakazam.flow._run_solve`.)"""
    out = []
    for fid in fids:
        for ddid, chans in spw_sel.items():
            ranges = scan_ranges(meta, fid, ddid, scans)
            if ranges:
                out.extend(Unit(step_index, step, fid, ddid, chans, g)
                           for g in plan_groups(ranges, step.time_interval, step.combine))
    return out


def step_major(steps, step_fields, spw_sel):
    """Batches ``(step_index, fid, ddid)`` in step-major order: every (field, SPW) of a step, then the
    next step."""
    return [(i, fid, ddid) for i in range(len(steps)) for fid in step_fields[i] for ddid in spw_sel]


def field_major(steps, fields, spw_sel):
    """Batches ``(step_index, fid, ddid)`` in field-major order: for each (field, SPW) every step (all
    steps solve the same ``fields``)."""
    return [(i, fid, ddid) for fid in fields for ddid in spw_sel for i in range(len(steps))]


@dataclass
class MemoryPlan:
    tier: int
    max_rows: int
    field_major: bool
    limit: int
    n_rows_total: int
    bytes_per_row: int


def memory_plan(cfg, meta, spw_sel, scans, step_fields, row_counts, *, allow_field_major=True,
                use_dask=False) -> MemoryPlan:
    """The memory tier, the largest read and the order of the block (module docstring of
    :mod:`alakazam.flow`).  ``row_counts(ddid, field_ids, scans)`` -> {(field, scan): rows} (one query
    per SPW, :meth:`alakazam.core.ms.MeasurementSet.row_counts`)."""
    from .core import memory

    limit = memory.memory_limit_bytes(cfg.memory_limit_gb)
    all_fields = sorted({f for fl in step_fields for f in fl})
    # field-major (tier 1): every step solves the same fields (module docstring)
    field_major = allow_field_major and all(list(fl) == list(step_fields[0]) for fl in step_fields)
    field_major = field_major and not cfg.solnorm      # solnorm needs a step's fields before the next step
    field_major = field_major and not getattr(cfg, "fill_gaps", 0)    # fillgaps too (calibration/fillgaps)
    n_rows_total, n_rows_pair, bytes_per_row, rows_per_group = 0, 0, 0, []
    for ddid, chans in spw_sel.items():
        counts = row_counts(ddid, all_fields, scans)     # {(field, scan): rows}
        for fid in all_fields:
            n = sum(v for (f, _), v in counts.items() if f == fid)
            n_rows_total += n
            n_rows_pair = max(n_rows_pair, n)
            n_corr = meta.spws[ddid].n_corr
            bytes_per_row = max(bytes_per_row, memory.solve_bytes_per_row(len(chans), n_corr))
            for sc in field_scans(meta, fid, ddid, scans):
                rows_per_group.append(counts.get((fid, sc), 0))
    tier, max_rows = memory.plan_chunks(n_rows_pair if field_major else n_rows_total, bytes_per_row,
                                        rows_per_group or [0], limit)
    field_major = field_major and tier == 1 and not use_dask
    return MemoryPlan(tier, max_rows, field_major, limit, n_rows_total, bytes_per_row)


def n_groups(meta, step, fid, ddid, scans) -> int:
    """Solution groups of one (field, SPW) (progress accounting)."""
    r = scan_ranges(meta, fid, ddid, scans)
    return len(plan_groups(r, step.time_interval, step.combine)) if r else 0


def n_units(meta, step, fids, spw_sel, scans) -> int:
    """Units (solution groups) of one step over ``fids`` and the selected SPWs; the joint units of
    combine 'field' / 'spw' (:func:`alakazam.core.combine.units`) counted once."""
    from .core.combine import union_ranges, units

    return sum(len(plan_groups(r, step.time_interval, step.combine)) for r in
               (union_ranges([scan_ranges(meta, f, d, scans) for f, d, _ in (m or [(fid, ddid, None)])])
                for fid, ddid, _, m in units(step, fids, spw_sel)) if r)


def field_scans(meta, fid, ddid, scans_sel):
    out = []
    for sc in meta.scans:
        if sc.field_id != fid:
            continue
        if ddid not in sc.ddids:
            continue
        if scans_sel is not None and sc.scan_number not in scans_sel:
            continue
        out.append(sc.scan_number)
    return sorted(set(out))


def scan_ranges(meta, fid, ddid, scans_sel):
    rng = {}
    for sc in meta.scans:
        if sc.field_id == fid and ddid in sc.ddids and (scans_sel is None or sc.scan_number in scans_sel):
            lo, hi = rng.get(sc.scan_number, (np.inf, -np.inf))
            rng[sc.scan_number] = (min(lo, sc.t_start), max(hi, sc.t_end))
    return [(s, a, b) for s, (a, b) in rng.items()]


def check_shared_spw(meta, steps, step_fields, spw_sel, scans):
    """Raise, before anything is read, when two selected DATA_DESC_IDs of one SPW (a concatenated MS
    whose parts had different POLARIZATION set-ups) would put solutions of one step, field and SPW into
    the same solution group: the table holds one set per (field, scan group, SPW), and the solve used to
    stop only when writing, blaming duplicate FIELD names (a review, session 49; combine 'spw' as
    well).  DATA_DESC_IDs of one SPW in different scans, solved per scan, are fine."""
    from .errors import AlakazamError

    by_spw = {}
    for d in spw_sel:
        by_spw.setdefault(meta.spws[d].spw_id, []).append(d)
    shared = {s: ds for s, ds in by_spw.items() if len(ds) > 1}
    if not shared:
        return
    for step, fids in zip(steps, step_fields):
        for fid in fids:
            for spw_id, ddids in shared.items():
                seen = {}
                for d in ddids:
                    r = scan_ranges(meta, fid, d, scans)
                    for g in (plan_groups(r, step.time_interval, step.combine) if r else []):
                        if g.scan_id in seen:
                            d0 = seen[g.scan_id]
                            ti = getattr(step.time_interval, "text", step.time_interval)
                            where = f"scan {g.scan_id}" if g.scan_id else f"time_interval {ti}"
                            raise AlakazamError(
                                f"jones: {step.key} ({step.jones_type}) on field {meta.fields[fid].name}: "
                                f"DATA_DESC_IDs {d0} and {d} of {meta.path} are both SPW {spw_id} "
                                f"(correlations {', '.join(meta.spws[d0].corr_types)} and "
                                f"{', '.join(meta.spws[d].corr_types)}) and would be solved into one "
                                f"solution ({where}), which the table cannot hold. Split the MS by "
                                f"DATA_DESC_ID (CASA split / mstransform), or solve per scan if they hold "
                                f"different scans")
                        seen[g.scan_id] = d
