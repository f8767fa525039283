"""Solve flow: the calibration chain from a Measurement Set to a cal.h5 solution table.

Unit of work
------------
One *unit* is (step, field, SPW, group): ``group`` is one MS scan when the step's time_interval is
``scan`` or a duration (solution bins never cross scan boundaries), or all selected scans of the field
when it is ``inf`` (HDF5 group ``scan_0``; see :mod:`alakazam.io.hdf5`).  A unit depends only on the
earlier steps' solutions, so units can run on any executor.  For each unit::

    read rows (memory-bounded chunks)  ->  FLAG | FLAG_ROW | RFI (MAD)  ->  pre-apply earlier terms
      ->  accumulate weighted sums into sample bins  ->  CellBatch  ->  solvers.solve  ->  SolutionSet

Pre-apply (docs/conventions.md): earlier diagonal terms (K, G, KC, CP) correct the data; earlier D
terms and, with ``apply_parang``, the parallactic-angle rotation P go into the model:
``V' = Jd_p^-1 V Jd_q^-H``, ``M' = D_p P_p M P_q^H D_q^H``.

Samples of a cell
-----------------
* time: G and K sum all data of a cell; D, KC and CP keep one sample per scan inside the cell (the
  parallactic angle changes between scans, which is what separates leakage from source polarisation).
* frequency: K and KC keep every selected channel as a sample (they fit a slope); G, D and CP average
  the channels of each freq bin.
* CP with no D before it in the chain: the cross hands of each baseline get a free constant over the
  cell's samples (the leakage of the unpolarised flux, not yet calibrated; see
  :func:`alakazam.solvers.cross_phase.remove_leakage_offsets`).

One pass per chunk
------------------
Pre-apply, FLAG -> weight, the orientation of the baselines (rows with ant1 > ant2 enter as
``V_ab = V_ba^H``) and the accumulation are one numba pass over the rows as read
(:func:`alakazam.core.averaging.accumulate_corrected`): no corrected or weight copy of the data is
made; the Jones tables are evaluated on the chunk's unique times, in blocks of times.  Steps that do
not keep one sample per scan (K, G) accumulate straight into their solution time cells.

Memory tiers (``memory_limit_gb``; 0 = 40% of available RAM; working set
:data:`alakazam.core.memory.SOLVE_BYTES_PER_SAMPLE`): tier 1 -- what is resident at once fits: each
(field, SPW) is read once and kept for all the steps that use it; tier 2 -- a whole group fits: one
read per group; tier 3 -- a group is read in row chunks into a running accumulator.  The accumulation
is exact (sums of weighted samples), so every tier gives the same solutions.

Field-major order (tier 1)
--------------------------
When every step of the block solves the same fields, tier 1 runs field-major: for each (field, SPW),
read it once, run all the steps on it, free it -- only one (field, SPW) is resident, so tier 1 needs
only the largest one to fit.  The solutions are identical to the step-major order (every step over all
fields, then the next) because a step's pre-apply of an earlier step of the block uses the field's own
solutions (``prefer_own``, :func:`alakazam.calibration.chain.choose_fields`) and, with the same fields
in every step, an earlier step has solved (field, SPW) whenever a later one has rows to pre-apply
there (both see the same cross-correlation rows).  With different fields per step, a field without
its own solutions would take another field's (nearest_time), which field-major order could not
provide yet: those blocks run step-major.  Terms are written when all fields are done; if a step
fails, the earlier steps are completed on the remaining fields and written first, then the error is
raised (the same file as step-major order leaves).
"""

from __future__ import annotations

import logging
import math
import time as _time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from . import __version__
from .config import SolveConfig, SolveStep
from .errors import AlakazamError

log = logging.getLogger("alakazam.flow")

#: Jones types whose cells keep every channel as a sample (they fit a slope across frequency).
_CHANNEL_SAMPLED = ("K", "KC")
#: Jones types whose cells keep one time sample per scan (parallactic angle diversity).
_SCAN_SAMPLED = ("D", "KC", "CP")
#: the pre-apply Jones tables of a chunk are evaluated on blocks of unique times of at most about this
#: size (estimated with full 2x2 evaluations of every term; the diagonal tables take about half)
_TABLE_BLOCK_BYTES = 64 * 2 ** 20
#: field-major order in tier 1 when every step solves the same fields (module docstring); False forces
#: step-major order (tests compare the two)
FIELD_MAJOR = True


# --------------------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------------------
@dataclass
class Group:
    """Rows solved together and stored in one HDF5 scan group."""

    scan_id: int                    # MS scan number, or 0 for all scans combined (time_interval inf)
    scans: List[int]
    # sample bins (scan-granular time bins): per bin its scan and its solution-time-bin index
    sbin_scan: np.ndarray           # (n_sbin,) scan number of each sample bin
    sbin_cell: np.ndarray           # (n_sbin,) solution time bin of each sample bin
    n_tcell: int


def plan_groups(scans_info, tint, combine="") -> List[Group]:
    """Split the field's scans into groups and solution time bins.

    Parameters
    ----------
    scans_info : list of (scan_number, t_start, t_end)
    tint : :class:`alakazam.config.TimeInterval`

    Returns
    -------
    list of :class:`Group`.  For ``inf`` one group (scan_id 0) with one time cell; for ``scan`` one
    group per scan with one time cell; for a duration, one group per scan with
    ceil(scan length / solint) time cells anchored at the scan start.
    """
    if "scan" in str(combine or "").split(","):       # CASA combine='scan' (core/combine.py)
        from .core.combine import plan_scan_combined
        return plan_scan_combined(scans_info, tint)
    scans_info = sorted(scans_info, key=lambda s: s[1])
    if tint.kind == "inf":
        scans = [s[0] for s in scans_info]
        return [Group(0, scans, np.array(scans), np.zeros(len(scans), int), 1)]
    groups = []
    for scan, t0, t1 in scans_info:
        if tint.kind == "scan":
            n = 1
        else:
            n = max(1, int(math.floor((t1 - t0) / tint.seconds + 1e-9)) + 1)
        groups.append(Group(scan, [scan], np.full(n, scan), np.arange(n), n))
    return groups


def sample_bin_of_rows(group: Group, tint, scan_t0: Dict[int, float], row_scan, row_time):
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
    t0 = scan_t0[group.scan_id]
    idx = np.floor((row_time - t0) / tint.seconds + 1e-9).astype(np.int64)
    return np.clip(idx, 0, group.n_tcell - 1)


def freq_bins(freqs: np.ndarray, chan_width: float, width_hz: Optional[float]) -> np.ndarray:
    """Solution freq-bin index (n_chan,) of each selected channel; contiguous runs of channels.

    ``width_hz`` None = one bin for the whole selection; otherwise
    n_per_bin = max(1, round(width_hz / |chan_width|)) channels per bin.
    """
    n = len(freqs)
    if width_hz is None:
        return np.zeros(n, np.int64)
    per = max(1, int(round(width_hz / abs(chan_width))))
    return np.arange(n, dtype=np.int64) // per


# --------------------------------------------------------------------------------------------------
# the solve chain
# --------------------------------------------------------------------------------------------------
@dataclass
class _Context:
    cfg: SolveConfig
    meta: object
    ref: int
    spw_sel: dict                  # ddid -> channel indices
    scans: Optional[list]
    max_rows: int
    tier: int
    cache: dict = field(default_factory=dict)
    prior: list = field(default_factory=list)     # LoadedTerm, in chain order
    stats: dict = field(default_factory=dict)
    advance: object = None                        # progress callback: one call per solution group
    rowsel: object = None                         # antenna/uvrange/timerange/... selection (core/rowselect)
    refs: list = field(default_factory=list)      # reference antennas in priority order (ref = refs[0])


def run_solve(cfg: SolveConfig) -> dict:
    """Run one solve block: every step of the chain; all its keys are written to ``cfg.output`` in ONE
    atomic replace at the end (:func:`alakazam.io.hdf5.write_terms`), under the table's writer lock
    (:mod:`alakazam.core.locks`), so a kill or Ctrl-C leaves the old file and never a new K0 beside an
    old G0.

    Returns a summary dict ``{"output": path, "terms": {key: {...stats...}}}``.
    A failing step raises; the steps finished before it are still written (one replace), the failing one
    never is.  The output is checked to be writable before anything is read.

    With ``cfg.workers`` / ``cfg.scheduler`` the units of each step run on dask.distributed
    (:mod:`alakazam.distributed`; always step-major); the cluster is started after validation and the
    memory plan, and closed when the block ends, whatever happens.
    """
    import contextlib

    from .core import locks, outputs
    from .io import hdf5

    outputs.check_output_file(cfg.output, "output")
    with locks.writer_lock(cfg.output, "table"):
        pending: Dict[str, list] = {}
        try:
            with contextlib.ExitStack() as stack:           # the dask cluster, if any, lives in here
                summary = _run_solve(cfg, pending, stack)
        except Exception:
            if pending:
                hdf5.write_terms(cfg.output, pending)
            raise
        _refuse_all_flagged(cfg, pending)
        hdf5.write_terms(cfg.output, pending)
    return summary


def _refuse_all_flagged(cfg, pending):
    """A step whose every solution is flagged (all selected data flagged or of zero weight) is an
    error, not a success: the steps before it are written (one replace), it and the later ones are
    not.  A solution group (field, scan group, SPW) entirely flagged inside a usable step is a warning."""
    from .io import hdf5

    keys = list(pending)
    for i, key in enumerate(keys):
        sets = pending[key]
        if sets and all(bool(np.all(s.flags)) for s in sets):
            done = {k: pending[k] for k in keys[:i]}
            if done:
                hdf5.write_terms(cfg.output, done)
            raise AlakazamError(
                f"{key}: every solution is flagged -- the selected data (fields "
                f"{sorted({s.field_name for s in sets})}, spw={cfg.spw!r}, scan={cfg.scan!r}) are all "
                f"flagged or have zero weight; nothing written for {', '.join(keys[i:])}"
                + (f" ({', '.join(done)} written)" if done else ""))
        for s in sets:
            if s.flags.size and np.all(s.flags):
                log.warning("%s field %s spw %d scan %d: every solution flagged (all data flagged or of "
                            "zero weight)", key, s.field_name, s.spw, s.scan_id)


def _run_solve(cfg: SolveConfig, pending, stack) -> dict:
    """The solve itself; ``finish`` collects each step's sets in ``pending`` (written by run_solve);
    ``stack`` holds what must be closed when the block ends (a dask cluster)."""
    from .core import ms_io
    from . import progress, solvers
    from .calibration import chain, parang_check, solve_order

    t_start = _time.perf_counter()
    # ---- validation: everything is checked before anything is read or written
    solvers.check_backend(cfg.solver_backend)
    solvers.check_device(cfg.solver_backend, cfg.gpu)
    solvers.check_amp_only(cfg.solver_backend, any(s.amp_only and s.jones_type == "G" for s in cfg.steps))
    meta = ms_io.read_meta(cfg.ms)
    cfg, meta, rowsel = _apply_selection(cfg, meta)
    if cfg.append:                 # cheap compatibility check before anything is solved (io/solappend)
        from .io import solappend
        for step in cfg.steps:
            solappend.check_compatible(cfg.output, step.key, ms=cfg.ms, ant_names=meta.active_names,
                                       jones_type=step.jones_type)
    ms_io.check_columns(cfg.ms, [cfg.data_col] + ([] if cfg.smodel else [cfg.model_col]))   # smodel: no MODEL
    refs = ms_io.resolve_antenna(meta, cfg.ref_ant)
    refs = refs if isinstance(refs, list) else [refs]
    ref = refs[0]
    spw_sel = ms_io.resolve_spw(meta, cfg.spw)
    scans = ms_io.resolve_scans(meta, cfg.scan) if cfg.scan else None
    step_fields = [ms_io.resolve_fields(meta, step.field) for step in cfg.steps]
    solve_order.check_block(cfg, meta, step_fields)     # D before KC/CP needs an unpolarised calibrator
    parang_check.check_parang_correlations(meta, spw_sel, cfg.apply_parang)   # linear feeds need XY, YX
    ext_terms = []
    if cfg.external_preapply is not None:
        ep = cfg.external_preapply
        for i, (table, key) in enumerate(zip(ep.tables, ep.jones)):
            ext_terms.append(chain.load_term(
                table, key,
                field_select=ep.field_select[i] if i < len(ep.field_select) else "nearest_time",
                time_interp=ep.time_interp[i] if i < len(ep.time_interp) else "nearest",
                solution_field=(ep.solution_field[i] if i < len(ep.solution_field) else None)))
            fi = getattr(ep, "freq_interp", None) or []          # CASA interp 'time,freq' (core/freqinterp)
            ext_terms[-1].freq_interp = fi[i] if i < len(fi) else ""

    # ---- memory plan
    from .core import memory
    limit = memory.memory_limit_bytes(cfg.memory_limit_gb)
    all_fields = sorted({f for fl in step_fields for f in fl})
    # field-major (tier 1): every step solves the same fields (module docstring)
    field_major = FIELD_MAJOR and all(list(fl) == list(step_fields[0]) for fl in step_fields)
    field_major = field_major and not cfg.solnorm      # solnorm needs a step's fields before the next step
    from .core import combine
    joint = [st.key for st in cfg.steps if combine.combines(st, "field") or combine.combines(st, "spw")]
    field_major = field_major and not joint            # combine field/spw: units of several fields/SPWs
    n_rows_total, n_rows_pair, bytes_per_row, rows_per_group = 0, 0, 0, []
    for ddid, chans in spw_sel.items():
        counts = _row_counts(cfg.ms, ddid, all_fields, scans)     # {(field, scan): rows}
        for fid in all_fields:
            n = sum(v for (f, _), v in counts.items() if f == fid)
            n_rows_total += n
            n_rows_pair = max(n_rows_pair, n)
            n_corr = meta.spws[ddid].n_corr
            bytes_per_row = max(bytes_per_row, memory.solve_bytes_per_row(len(chans), n_corr))
            for sc in _field_scans(meta, fid, ddid, scans):
                rows_per_group.append(counts.get((fid, sc), 0))
    tier, max_rows = memory.plan_chunks(n_rows_pair if field_major else n_rows_total, bytes_per_row,
                                        rows_per_group or [0], limit)
    from . import distributed
    use_dask = distributed.wanted(getattr(cfg, "workers", 0), getattr(cfg, "scheduler", ""))
    if use_dask and joint:
        from .errors import ParameterError
        raise ParameterError({"combine": [f"'field'/'spw' ({', '.join(joint)}) cannot run on dask workers "
                                          "(a distributed unit is one field and SPW); run without workers"]})
    field_major = field_major and tier == 1 and not use_dask
    log.info("memory: tier %d%s (limit %.2f GB, %d rows x %d B/row, max %d rows per read)",
             tier, " field-major" if field_major else "", limit / 1e9, n_rows_total, bytes_per_row, max_rows)

    solve_order.check_terms(ext_terms, cfg.ms, meta, cfg.model_col, "external_preapply",
                            [st.jones_type for st in cfg.steps if st.jones_type in ("KC", "CP")])
    ctx = _Context(cfg, meta, ref, spw_sel, scans, max_rows, tier, rowsel=rowsel, refs=refs)
    ctx.prior = list(ext_terms)
    summary = {"output": cfg.output, "terms": {}, "tier": tier, "field_major": field_major}
    dask_client = stack.enter_context(distributed.client(cfg.workers, cfg.scheduler)) if use_dask else None
    summary["distributed"] = use_dask

    def n_units(step, fids):
        from .core.combine import union_ranges, units     # joint units of combine field/spw counted once
        return sum(len(plan_groups(r, step.time_interval, step.combine)) for r in
                   (union_ranges([_scan_ranges(meta, f, d, scans) for f, d, _ in (m or [(fid, ddid, None)])])
                    for fid, ddid, _, m in units(step, fids, spw_sel)) if r)

    def finish(step, sets, seconds):
        if not sets:
            raise AlakazamError(
                f"{step.key}: no data selected for field(s) {step.field} (spw={cfg.spw!r}, "
                f"scan={cfg.scan!r}); check the selection with 'alakazam info' / listobs")
        n_sol = sum(s.flags.size for s in sets)
        n_flag = int(sum(s.flags.sum() for s in sets))
        reasons = {}
        for s in sets:
            for k, v in getattr(s, "quality", {}).items():
                reasons[k] = reasons.get(k, 0) + v
        why = ", ".join(f"{k} {v}" for k, v in reasons.items() if v)
        if n_flag == n_sol:
            raise AlakazamError(
                f"{step.key} ({step.jones_type}): every solution is flagged ({n_sol} solutions, field(s) "
                f"{step.field}; {why or 'no usable data'}): the selected data are all flagged, have zero "
                f"weight or NaN/Inf values, or MODEL_DATA is NaN or zero; check FLAG, WEIGHT and "
                f"{cfg.model_col} (nothing was written for {step.key})")
        if cfg.solnorm:
            _solnorm(cfg, step, sets)
        from .io import solappend
        if cfg.append:              # the key's existing groups + these (written with the block)
            pending[step.key] = solappend.merged_sets(cfg.output, step.key, sets)
        else:
            note = solappend.replaced_note(cfg.output, step.key)
            if note:
                log.warning(note)
            pending[step.key] = sets
        summary["terms"][step.key] = {
            "jones_type": step.jones_type, "n_groups": len(sets), "n_solutions": n_sol,
            "flagged": n_flag, "seconds": seconds,
            "converged": float(np.mean(np.concatenate([s.converged.ravel() for s in sets]))),
            "reference": ctx.stats.get(("reference", step.key)),   # cells re-referenced / flagged
        }
        summary["terms"][step.key]["flag_reasons"] = reasons
        log.info("%s: %d solution groups, %d/%d flagged%s, %.2f s", step.key, len(sets), n_flag, n_sol,
                 f" (of which {why})" if why else "", seconds)

    if not field_major:
        for step, fids in zip(cfg.steps, step_fields):
            t0 = _time.perf_counter()
            sets = []
            with progress.bar(f"{step.key} ({step.jones_type}): solution groups", n_units(step, fids),
                              quiet=cfg.quiet) as bar:
                ctx.advance = bar.advance
                if dask_client is not None:       # units in parallel; re-referenced in the same order
                    for unit_sets in distributed.solve_step(dask_client, ctx, step, fids,
                                                            lambda fid, ddid, st=step: bar.advance(
                                                                _n_groups(ctx, st, fid, ddid))):
                        sets.extend(unit_sets)
                        _rereference(ctx, step, sets)
                for fid, ddid, chans, members in (combine.units(step, fids, spw_sel) if dask_client is None
                                                   else ()):    # combine 'field'/'spw': core/combine.py
                    sets.extend(_solve_field_spw(ctx, step, fid, ddid, chans, members))
                    _rereference(ctx, step, sets)
            finish(step, sets, _time.perf_counter() - t0)
            ctx.prior.append(chain.term_from_sets(step.key, step.jones_type, sets,
                                                  time_interp=step.preapply_time_interp))
        ctx.cache.clear()
    else:
        steps = list(cfg.steps)
        sets_by_step = [[] for _ in steps]
        seconds = [0.0] * len(steps)
        todo = [(fid, ddid) for fid in step_fields[0] for ddid in spw_sel]
        n_steps, error = len(steps), None
        total = sum(n_units(st, step_fields[0]) for st in steps)
        with progress.bar(f"{', '.join(st.key for st in steps)}: solution groups (field by field)", total,
                          quiet=cfg.quiet) as bar:
            ctx.advance = bar.advance
            while todo and n_steps:
                failed = None
                for k, (fid, ddid) in enumerate(todo):
                    for i in range(n_steps):
                        t0 = _time.perf_counter()
                        ctx.prior = list(ext_terms) + [
                            chain.term_from_sets(steps[j].key, steps[j].jones_type, sets_by_step[j],
                                                 time_interp=steps[j].preapply_time_interp)
                            for j in range(i)]
                        try:
                            sets_by_step[i].extend(_solve_field_spw(ctx, steps[i], fid, ddid, spw_sel[ddid]))
                            _rereference(ctx, steps[i], sets_by_step[i])
                        except Exception as exc:          # noqa: BLE001 -- re-raised below
                            failed = (i, k, exc)
                            break
                        finally:
                            seconds[i] += _time.perf_counter() - t0
                    ctx.cache.clear()                     # free this (field, SPW) before the next read
                    if failed:
                        break
                if failed is None:
                    break
                # step i failed on todo[k]: the steps before it still need the remaining fields
                n_steps, k, error = failed[0], failed[1], failed[2]
                todo = todo[k + 1:]
        for i in range(n_steps):
            finish(steps[i], sets_by_step[i], seconds[i])
        ctx.prior = list(ext_terms) + [
            chain.term_from_sets(st.key, st.jones_type, sets_by_step[i], time_interp=st.preapply_time_interp)
            for i, st in enumerate(steps[:n_steps])]
        if error is not None:
            raise error
    for rnd in range(1, cfg.iterations):        # iterations: re-solve each step with all the others
        from .solve_rounds import iterate_round
        ctx.prior = iterate_round(ctx, cfg, ext_terms, step_fields, spw_sel, finish, rnd, _solve_field_spw,
                                  after_unit=lambda st, sets: _rereference(ctx, st, sets))
    summary["seconds"] = _time.perf_counter() - t_start
    return summary


def _n_groups(ctx, step, fid, ddid) -> int:
    """Solution groups of one (field, SPW) unit (progress accounting of distributed units)."""
    r = _scan_ranges(ctx.meta, fid, ddid, ctx.scans)
    return len(plan_groups(r, step.time_interval, step.combine)) if r else 0


def _solnorm(cfg, step, sets):
    """CASA solnorm on a G step's solution sets, in place (calibration/solnorm.py)."""
    from .calibration.solnorm import normalise_sets

    if step.jones_type != "G":
        log.info("%s: solnorm applies to G only; %s left as solved", step.key, step.jones_type)
        return
    for spw, (fp, fq) in normalise_sets(sets, cfg.normtype).items():
        log.info("%s: solnorm (%s) SPW %d: amplitudes divided by %.6g (p), %.6g (q)", step.key, cfg.normtype,
                 spw, fp, fq)


def _apply_selection(cfg, meta):
    """(cfg, meta, rowsel): the antenna/uvrange/timerange/intent/observation selection parsed
    (core/rowselect.py), ``meta.scans`` restricted to the selected rows, and CASA's 'int' / 'Nints'
    solints turned into seconds (N x the MS's integration time)."""
    import dataclasses

    from .config import resolve_integrations
    from .core import rowselect

    rowsel = rowselect.build(meta, cfg.select)
    meta = rowselect.restrict_meta(meta, rowsel)
    steps = [dataclasses.replace(st, time_interval=resolve_integrations(st.time_interval, meta.interval))
             for st in cfg.steps]
    return dataclasses.replace(cfg, steps=steps), meta, rowsel


def _rereference(ctx: _Context, step: SolveStep, sets) -> None:
    """One phase reference for the step's sets solved so far (alakazam.solvers.rereference): before
    they are pre-applied by later steps or written."""
    from .solvers.rereference import prior_phasor_from_chain, rereference_step

    names = [ctx.meta.ant_names[a] for a in ctx.meta.active_ants]
    counts = rereference_step(step.jones_type, sets, ctx.refs, ctx.cfg.ref_ant_mode, names, step.key,
                              prior_phasor_from_chain(ctx.prior, ctx.meta))
    total = ctx.stats.setdefault(("reference", step.key), dict.fromkeys(counts, 0))
    for k, v in counts.items():
        total[k] += v


def _row_counts(ms, ddid, field_ids, scans):
    """Rows per (FIELD_ID, SCAN_NUMBER) of one DATA_DESC_ID (one query for the memory plan)."""
    from casacore.tables import taql
    from .core import ms_io

    with ms_io._table(str(ms)) as t:
        q = taql(f"SELECT FIELD_ID, SCAN_NUMBER FROM $t WHERE {ms_io._where(ddid, field_ids, scans)}")
        if q.nrows() == 0:
            q.close()
            return {}
        f = np.asarray(q.getcol("FIELD_ID"), np.int64)
        sc = np.asarray(q.getcol("SCAN_NUMBER"), np.int64)
        q.close()
    pairs, n = np.unique(np.stack([f, sc], axis=1), axis=0, return_counts=True)
    return {(int(a), int(b)): int(c) for (a, b), c in zip(pairs, n)}


def _field_scans(meta, fid, ddid, scans_sel):
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


def _scan_ranges(meta, fid, ddid, scans_sel):
    rng = {}
    for sc in meta.scans:
        if sc.field_id == fid and ddid in sc.ddids and (scans_sel is None or sc.scan_number in scans_sel):
            lo, hi = rng.get(sc.scan_number, (np.inf, -np.inf))
            rng[sc.scan_number] = (min(lo, sc.t_start), max(hi, sc.t_end))
    return [(s, a, b) for s, (a, b) in rng.items()]


def _ticking(items, advance):
    """Yield the items, calling ``advance()`` after the caller's loop body has finished each one."""
    for it in items:
        yield it
        if advance is not None:
            advance()


def _iter_group_chunks(ctx: _Context, fid, ddid, chans, group: Group):
    """Yield ``(chunk, rows)``: ms_io Chunks holding the group's rows and the indices of those rows
    in the chunk (None = all).  Tier 1: the cached (field, SPW) read, never copied; tiers 2/3: reads of
    at most ``max_rows`` rows, flagged here (:func:`alakazam.core.cellflags.flag_chunk`)."""
    from .core import cellflags, ms_io

    cfg = ctx.cfg
    corr_types = ctx.meta.spws[ddid].corr_types
    if ctx.tier == 1:
        key = (fid, ddid)
        if key not in ctx.cache:
            c = ms_io.read_rows(cfg.ms, ddid, [fid], scans=ctx.scans, chans=chans,
                                data_col=cfg.data_col, model_col=None if cfg.smodel else cfg.model_col,
                                rowsel=ctx.rowsel)
            _smodel(cfg, ctx.meta, ddid, c)
            # bad values, per-row MAD and per-scan channel statistics of the raw data: flagged once
            # here, not again in every step (alakazam.core.cellflags)
            c.flag = cellflags.flag_chunk(c, corr_types, cfg.rfi_threshold)
            ctx.cache[key] = c
        ch = ctx.cache[key]
        sel = np.flatnonzero(np.isin(ch.scan, group.scans))
        yield ch, (None if len(sel) == ch.n_row else sel)
        return
    # reads of whole blocks of integrations: the channel statistics see the same rows in every tier
    group_rows = ms_io.row_numbers(cfg.ms, ddid, [fid], group.scans, rowsel=ctx.rowsel)
    for rows, gid in cellflags.block_reads(cfg.ms, group_rows, ctx.max_rows):
        ch = ms_io.read_rows(cfg.ms, ddid, [fid], chans=chans, data_col=cfg.data_col,
                             model_col=None if cfg.smodel else cfg.model_col, meta=ctx.meta, rows=rows,
                             rowsel=ctx.rowsel)
        _smodel(cfg, ctx.meta, ddid, ch)
        if ch.n_row:
            same = len(ch.rownr) == len(rows) and np.array_equal(ch.rownr, rows)
            ch.flag = cellflags.flag_chunk(ch, corr_types, cfg.rfi_threshold, groups=gid if same else None)
        yield ch, None
        del ch                  # not held while the next chunk is read (one chunk resident)


def _smodel(cfg, meta, ddid, chunk):
    """CASA smodel: the chunk's model is the Stokes point source ``cfg.smodel`` (solvers/smodel.py)."""
    if cfg.smodel:
        from .solvers.smodel import model_like
        chunk.model = model_like(chunk.data, meta.spws[ddid].corr_types, cfg.smodel)


def _solve_field_spw(ctx: _Context, step: SolveStep, fid: int, ddid: int, chans, members=None) -> list:
    """Solve one step for one field and SPW: every group, returning hdf5.SolutionSet objects.
    ``members``: the (field, DATA_DESC_ID, channels) solved together with combine='field'/'spw'
    (core/combine.py); None = this field and SPW alone."""
    from .core import averaging
    from .io.hdf5 import SolutionSet
    from . import solvers
    from .calibration import chain, solve_order

    cfg, meta = ctx.cfg, ctx.meta
    spw = meta.spws[ddid]
    fld = meta.fields[fid]
    freqs = np.asarray(spw.freqs)[chans]
    chan_width = float(np.median(np.abs(np.asarray(spw.chan_width)[chans]))) if len(chans) else 1.0
    fbin_of_chan = freq_bins(freqs, chan_width, step.freq_interval_hz)
    n_fcell = int(fbin_of_chan.max()) + 1 if len(chans) else 0
    jt = step.jones_type
    prior = solve_order.step_prior(jt, ctx.prior)   # a KC/CP step leaves out a D solved before it
    chan_sampled = jt in _CHANNEL_SAMPLED
    scan_sampled = jt in _SCAN_SAMPLED
    # frequency samples of the accumulator: channels (K, KC) or freq bins
    fsamp_of_chan = np.arange(len(chans), dtype=np.int64) if chan_sampled else fbin_of_chan
    n_fsamp = len(chans) if chan_sampled else n_fcell
    corr_src = averaging.corr_map(spw.corr_types)

    from .core import combine
    mctx = combine.member_contexts(meta, members, fid, ddid, chans, fsamp_of_chan, corr_src, chan_sampled,
                                   fbin_of_chan)
    ranges = combine.union_ranges([_scan_ranges(meta, m.fid, m.ddid, ctx.scans) for m in mctx])
    if not ranges:
        return []
    scan_t0 = {s: a for s, a, b in ranges}
    groups = plan_groups(ranges, step.time_interval, step.combine)
    n_ant = len(meta.active_ants)
    bl_a1, bl_a2 = np.triu_indices(n_ant, 1)
    n_bl = len(bl_a1)
    bl_lookup = -np.ones((n_ant, n_ant), np.int64)        # -1 on the diagonal: autocorrelations skipped
    bl_lookup[bl_a1, bl_a2] = np.arange(n_bl)
    active_names = [meta.ant_names[a] for a in meta.active_ants]
    # Jones tables per unique time: the diagonal product (2 x 16 B), its inverse and flags, the terms'
    # own (n_t, n_ant, n_chan, 2, 2) evaluations (64 B each) and the sky product
    table_bytes = n_ant * max(len(chans), 1) * (64 * (len(prior) + 2) + 64 * bool(cfg.apply_parang))
    t_block = max(1, _TABLE_BLOCK_BYTES // table_bytes)
    need_tables = bool(prior) or bool(cfg.apply_parang)

    out = []
    for group in _ticking(groups, ctx.advance):
        n_sbin = len(group.sbin_scan)
        cell_of_sbin = group.sbin_cell
        # accumulator bins: one per sample bin (one time sample per scan) or per time cell
        n_acc = n_sbin if scan_sampled else group.n_tcell
        shape = (n_acc, n_bl, n_fsamp, 4)
        vis_sum, model_sum, w_sum = (np.zeros(shape, np.complex128), np.zeros(shape, np.complex128),
                                     np.zeros(shape, np.float64))
        row_count = np.zeros(n_sbin, np.int64)
        time_sum = np.zeros(n_sbin)
        time_wsum = np.zeros(n_sbin)
        wsum_t = np.zeros(n_sbin)
        t_ref = min(scan_t0[sc] for sc in group.scans)
        for m, (ch, rows) in combine.member_chunks(mctx, lambda m: _iter_group_chunks(
                ctx, m.fid, m.ddid, m.chans, group)):
            if rows is None:
                rows = np.arange(ch.n_row)
            if len(rows) == 0:
                continue
            a1, a2 = ch.ant1[rows], ch.ant2[rows]
            bl = bl_lookup[np.minimum(a1, a2), np.maximum(a1, a2)]
            cross = bl >= 0                 # autocorrelations carry no gain-ratio information
            if not cross.all():
                rows, a1, a2, bl = rows[cross], a1[cross], a2[cross], bl[cross]
            if len(rows) == 0:
                continue
            times = ch.time[rows]
            sbin = sample_bin_of_rows(group, step.time_interval, scan_t0, ch.scan[rows], times)
            utimes, tix = np.unique(times, return_inverse=True)
            uscan = np.zeros(len(utimes), np.int64)
            uscan[tix] = ch.scan[rows]          # flagged solutions are not bridged across scans
            # per-row arrays over the whole chunk (rows not in the group: never read by the kernel)
            n = ch.n_row
            row_bl = np.full(n, -1, np.int64)
            row_bl[rows] = bl
            acc_bin = np.full(n, -1, np.int64)
            acc_bin[rows] = sbin if scan_sampled else cell_of_sbin[sbin]
            tidx = np.zeros(n, np.int64)
            tidx[rows] = tix
            w_row = np.zeros(n)
            for t0 in range(0, len(utimes), t_block if need_tables else max(len(utimes), 1)):
                t1 = min(t0 + t_block, len(utimes)) if need_tables else len(utimes)
                diag = sky = None
                if need_tables:
                    diag, sky = chain.preapply_tables(prior, meta, m.ddid, m.chans, m.fld, utimes[t0:t1],
                                                      cfg.apply_parang, time_scan=uscan[t0:t1])
                part = rows if (t0 == 0 and t1 == len(utimes)) else rows[(tix >= t0) & (tix < t1)]
                averaging.accumulate_corrected(vis_sum, model_sum, w_sum, w_row, ch.data, ch.model, ch.flag,
                                               ch.weight, part, tidx, ch.ant1, ch.ant2, acc_bin, row_bl,
                                               m.fsamp_of_chan, m.corr_src, diag, sky, t_off=t0)
            row_count += np.bincount(sbin, minlength=n_sbin)
            trel = times - t_ref            # relative times: sums of MJD seconds (~5e9) lose microseconds
            time_sum += np.bincount(sbin, weights=trel, minlength=n_sbin)
            wrow = w_row[rows]
            time_wsum += np.bincount(sbin, weights=wrow * trel, minlength=n_sbin)
            wsum_t += np.bincount(sbin, weights=wrow, minlength=n_sbin)
            del ch, rows            # tiers 2/3: the chunk is freed before the next one is read
        present = row_count > 0
        if not present.any():
            continue
        # --- time cells of the group (drop cells with no rows at all)
        cells_t = np.unique(cell_of_sbin[present])
        if scan_sampled:     # one time sample per sample bin with rows
            tsamples = [np.nonzero((cell_of_sbin == ct) & present)[0] for ct in cells_t]
        else:                # the accumulator bin is the time cell
            tsamples = [np.array([ct]) for ct in cells_t]
        batch, cell_index = _make_batch(vis_sum, model_sum, w_sum, tsamples, fbin_of_chan, n_fcell, freqs,
                                        chan_sampled, bl_a1, bl_a2, n_ant, ctx.ref)
        batch.ref_ants = tuple(ctx.refs)
        del vis_sum, model_sum, w_sum
        if jt == "CP" and not any(t.jones_type == "D" for t in prior):
            # the not-yet-solved leakage: a per-baseline offset (cross_phase.remove_leakage_offsets);
            # once a D is in the model, the model's cross hands carry the leakage themselves
            from .solvers import cross_phase
            n_off = int(cross_phase.remove_leakage_offsets(batch).sum())
            log.debug("%s: leakage offsets removed in %d/%d cells", step.key, n_off, batch.n_cell)
        opts = solvers.SolveOptions(phase_only=step.phase_only, amp_only=step.amp_only,
                                    max_iter=cfg.max_iter, tol=cfg.tol, gpu=cfg.gpu,
                                    min_bl_per_ant=cfg.min_bl_per_ant, min_snr=cfg.min_snr,
                                    flag_nonconverged=True)
        res = solvers.solve(jt, batch, backend=cfg.solver_backend, opts=opts)
        # --- assemble the (n_ant, n_freq, n_time, 2, 2) grid
        n_t = len(cells_t)
        jones = np.empty((n_ant, n_fcell, n_t, 2, 2), np.complex128)
        flags = np.empty((n_ant, n_fcell, n_t), bool)
        delay = np.empty((n_ant, n_fcell, n_t, 2)) if res.delay is not None else None
        conv = np.empty((n_fcell, n_t), bool)
        niter = np.empty((n_fcell, n_t), np.int32)
        cost = np.empty((n_fcell, n_t))
        refused = np.empty((n_fcell, n_t), np.int32)
        for c, (it, jf) in enumerate(cell_index):
            jones[:, jf, it] = res.jones[c]
            flags[:, jf, it] = res.flags[c]
            if delay is not None:
                delay[:, jf, it] = res.delay[c]
            conv[jf, it] = res.converged[c]
            niter[jf, it] = res.n_iter[c]
            cost[jf, it] = res.cost[c]
            refused[jf, it] = res.ref_ant[c]
        # weighted centroid time of each cell (plain mean of row times where fully flagged)
        times = np.empty(n_t)
        for i, ct in enumerate(cells_t):
            m = (cell_of_sbin == ct) & present
            ws = wsum_t[m].sum()
            times[i] = t_ref + (time_wsum[m].sum() / ws if ws > 0 else time_sum[m].sum() / row_count[m].sum())
        fcent = _bin_centres(freqs, fbin_of_chan, n_fcell)
        attrs = dict(
            jones_type=jt, field_name=fld.name, scan_id=int(group.scan_id), scans=list(group.scans),
            spw=int(spw.spw_id), n_ant=n_ant, field_ra=float(fld.ra), field_dec=float(fld.dec),
            matrix_form="full" if jt == "D" else "diagonal", ref_ant=int(ctx.ref),
            ref_ant_name=active_names[ctx.ref], ant_names=active_names,
            solint_s=step.time_interval.solint_s, time_interval=step.time_interval.text,
            freqint_hz=float(step.freq_interval_hz) if step.freq_interval_hz else float("inf"),
            freq_interval=step.freq_interval_text, phase_only=bool(step.phase_only),
            amp_only=bool(step.amp_only),
            feed_basis=spw.feed_basis, solver_backend=cfg.solver_backend,
            apply_parang=bool(cfg.apply_parang), ms=str(cfg.ms),
            preapply_chain=[t.key for t in prior], alakazam_version=__version__,
            channels=np.asarray(chans, dtype=np.int64),
        )
        sset = SolutionSet(jones=jones, flags=flags, time=times, freq=fcent, delay=delay,
                           converged=conv, n_iter=niter, cost=cost, attrs=attrs)
        sset.extra = {"ref_ant": refused}
        _quality(sset, res, cell_index)
        out.extend(combine.stored_sets(sset, mctx, meta))   # this set, or its combined field/SPW forms
    return out


def _quality(sset, res, cell_index):
    """SNR grid into ``solver_stats/snr`` (n_ant, n_freq, n_time, 2) and chi2 / nDOF into
    ``solver_stats/rchi2`` (n_freq, n_time), freq bins with an outlier chi2 and bandpass outlier
    channels (G with >= 4 freq bins) flagged (:mod:`alakazam.solvers.quality`), and the counts of
    solutions flagged per reason kept on ``sset.quality`` (logged by the step; not written)."""
    from .solvers import quality

    n_ant, n_f, n_t = sset.flags.shape
    snr = np.zeros((n_ant, n_f, n_t, 2))
    rchi2 = np.full((n_f, n_t), np.nan)
    counts = {}
    for name in ("minblperant", "minsnr", "nonconverged"):
        counts[name] = int(sum(res.extra[name][c].sum() for c in range(len(cell_index))))
    for c, (it, jf) in enumerate(cell_index):
        snr[:, jf, it] = res.extra["snr"][c]
        rchi2[jf, it] = res.extra["rchi2"][c]
    counts["outlier_chi2"] = counts["outlier_channel"] = 0
    new = np.broadcast_to(quality.chi2_outlier_bins(rchi2)[None], sset.flags.shape) & ~sset.flags
    if new.any():
        sset.flags |= new
        counts["outlier_chi2"] = int(new.sum())
    if sset.attrs.get("jones_type") == "G" and n_f >= 4:
        new = quality.outlier_channels(sset.jones, sset.flags, snr) & ~sset.flags
        if new.any():
            sset.flags |= new
            counts["outlier_channel"] = int(new.sum())
    sset.jones[sset.flags] = np.nan
    if sset.delay is not None:
        sset.delay[sset.flags] = np.nan
    sset.extra["snr"] = snr
    sset.extra["rchi2"] = rchi2
    sset.quality = counts


def _bin_centres(freqs, fbin_of_chan, n_fcell):
    """Mean channel frequency of each freq bin (n_fcell,)."""
    return (np.bincount(fbin_of_chan, weights=freqs, minlength=n_fcell)[:n_fcell]
            / np.maximum(np.bincount(fbin_of_chan, minlength=n_fcell)[:n_fcell], 1))


def _make_batch(vis_sum, model_sum, w_sum, tsamples, fbin_of_chan, n_fcell, freqs, chan_sampled,
                bl_a1, bl_a2, n_ant, ref):
    """Gather accumulated bins (n_acc, n_bl, n_fsamp, 4) into a CellBatch (K over the whole band: the
    accumulators themselves, divided in place).

    Cells are (time cell, freq bin) in that order; ``tsamples[it]`` lists the accumulator bins that are
    the time samples of time cell ``it``.  The samples of a cell are (time samples) x (frequency
    samples: the channels of the bin (K, KC) or the bin itself), padded with weight 0 to a common
    length.  Each sample is its weighted sum divided by its sum of weights (0 where that is 0).
    """
    from .solvers import CellBatch
    from .core.averaging import divide_sums

    n_bl = len(bl_a1)
    n_t = len(tsamples)
    one = [int(ts[0]) for ts in tsamples if len(ts) == 1]
    if chan_sampled and n_fcell == 1 and len(one) == n_t and one == list(range(one[0], one[0] + n_t)):
        # K over the whole band (one sample per channel, one time sample per cell): the accumulator
        # layout (bin, baseline, channel, corr) is the batch layout; divide in place, no copy
        sl = slice(one[0], one[0] + n_t)
        for s in range(sl.start, sl.stop):
            divide_sums(vis_sum[s], model_sum[s], w_sum[s], vis_sum[s], model_sum[s], w_sum[s])
        freq = np.repeat(np.asarray(freqs, float)[None], n_t, axis=0)
        batch = CellBatch(vis=vis_sum[sl], model=model_sum[sl], weight=w_sum[sl], ant1=bl_a1.astype(np.int32),
                          ant2=bl_a2.astype(np.int32), freq=freq, n_ant=n_ant, ref_ant=int(ref))
        return batch, [(it, 0) for it in range(n_t)]
    if chan_sampled:
        bounds = np.searchsorted(fbin_of_chan, np.arange(n_fcell + 1), side="left")
        fsl = [slice(int(bounds[j]), int(bounds[j + 1])) for j in range(n_fcell)]
    else:
        fsl = [slice(j, j + 1) for j in range(n_fcell)]
    n_samp = max(len(ts) for ts in tsamples) * max(sl.stop - sl.start for sl in fsl)
    n_cell = n_t * n_fcell
    vis = np.zeros((n_cell, n_bl, n_samp, 4), np.complex128)
    model = np.zeros((n_cell, n_bl, n_samp, 4), np.complex128)
    weight = np.zeros((n_cell, n_bl, n_samp, 4))
    freq = np.zeros((n_cell, n_samp))
    fcent = _bin_centres(freqs, fbin_of_chan, n_fcell)
    cells = [(it, jf) for it in range(n_t) for jf in range(n_fcell)]
    if not chan_sampled and all(len(ts) == 1 for ts in tsamples):
        # one sample per cell (G): all freq bins of a time cell at once
        for it, ts in enumerate(tsamples):
            s = int(ts[0])
            c0 = it * n_fcell
            divide_sums(vis[c0:c0 + n_fcell, :, 0], model[c0:c0 + n_fcell, :, 0],
                        weight[c0:c0 + n_fcell, :, 0], vis_sum[s].transpose(1, 0, 2),
                        model_sum[s].transpose(1, 0, 2), w_sum[s].transpose(1, 0, 2))
            freq[c0:c0 + n_fcell, 0] = fcent
    else:
        for c, (it, jf) in enumerate(cells):
            sl = fsl[jf]
            nf = sl.stop - sl.start
            k = 0
            for s in tsamples[it]:
                divide_sums(vis[c, :, k:k + nf], model[c, :, k:k + nf], weight[c, :, k:k + nf],
                            vis_sum[s, :, sl], model_sum[s, :, sl], w_sum[s, :, sl])   # (n_bl, nf, 4)
                freq[c, k:k + nf] = freqs[sl] if chan_sampled else fcent[jf]
                k += nf
            if k < n_samp:      # padding samples: weight 0, a valid frequency
                freq[c, k:] = freq[c, k - 1] if k else freqs.mean()
    batch = CellBatch(vis=vis, model=model, weight=weight, ant1=bl_a1.astype(np.int32),
                      ant2=bl_a2.astype(np.int32), freq=freq, n_ant=n_ant, ref_ant=int(ref))
    return batch, cells
