"""Solve flow: the calibration chain from a Measurement Set to a cal.h5 solution table.

The driver: :func:`run_solve` (lock, validation, one-replace writes) runs the units of
:mod:`alakazam.plan` (the planner: memory plan, field-major or step-major order) with
:mod:`alakazam.unit` (solve one unit) in-process, or on dask (:mod:`alakazam.distributed`).  The MS is
read through one :class:`alakazam.core.ms.MeasurementSet` handle per block (metadata read once).

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

import dataclasses
import functools
import logging
import time as _time
from typing import Dict

import numpy as np

from .config import SolveConfig, SolveStep
from .errors import AlakazamError
from .jones import terms
# the planner and the unit solver (re-exported: their former home was this module)
from .plan import (Group, freq_bins, plan_groups, sample_bin_of_rows,  # noqa: F401
                   field_scans as _field_scans, scan_ranges as _scan_ranges)
from .unit import (_TABLE_BLOCK_BYTES, _Context,  # noqa: F401
                   _bin_centres, _iter_group_chunks, _make_batch, _quality, _solve_field_spw, _ticking)

log = logging.getLogger("alakazam.flow")

#: field-major order in tier 1 when every step solves the same fields (module docstring); False forces
#: step-major order (tests compare the two)
FIELD_MAJOR = True


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
    if isinstance(cfg.ms, (list, tuple)):         # several MSs, one table (alakazam/multims.py)
        from . import multims
        return multims.run_solve(cfg)
    import contextlib

    from .core import locks, outputs
    from .io import hdf5

    outputs.check_output_file(cfg.output, "output")
    with locks.writer_lock(cfg.output, "table"):
        pending: Dict[str, list] = {}
        try:
            # the MS handle and the dask cluster, if any, live in here
            with contextlib.ExitStack() as stack:
                summary = _run_solve(cfg, pending, stack)
        except AlakazamError as e:
            if pending:
                hdf5.write_terms(cfg.output, pending)
            note = _stale_note(cfg, pending)
            if not note:
                raise                        # (its own class: ParameterError, ...)
            raise AlakazamError(str(e) + note) from e
        except Exception:
            if pending:
                hdf5.write_terms(cfg.output, pending)
            raise
        _refuse_all_flagged(cfg, pending)
        # the block's checks of its solutions, each a list of warnings (nothing changes): a bandpass
        # averaged over drifting gains; a full-band gain over several scans (CASA: per scan); gains
        # solved before D on a polarised calibrator; CP / D solutions the data do not fit (band, time)
        from .calibration import driftcheck, leakcheck, misfitcheck, spancheck
        for note in (driftcheck.notes(cfg, pending) + spancheck.notes(cfg, pending)
                     + leakcheck.all_notes(cfg, pending, summary.get("external_gains", ()))
                     + misfitcheck.notes(cfg, pending)):
            log.warning("%s", note)
        hdf5.write_terms(cfg.output, pending)
    return summary


def _stale_note(cfg, written) -> str:
    """When a block stops at a step after writing the ones before it (``written``), the keys of its
    later steps that the table already holds are an earlier run's, solved against the earlier versions
    of ``written``: '' when there are none, else a sentence naming them (logged as a warning too), so
    that nobody applies them with the new keys unawares.  They are kept (nothing the user did not ask
    to change is deleted; the block asked to replace them and could not)."""
    import os

    from .io import hdf5

    if not written or not os.path.exists(cfg.output):
        return ""
    try:
        have = set(hdf5.list_keys(cfg.output))
    except Exception:              # (an unreadable table was refused before anything ran)
        return ""
    stale = [st.key for st in cfg.steps if st.key not in written and st.key in have]
    if not stale:
        return ""
    note = (f" -- written: {', '.join(written)}; {cfg.output} still holds {', '.join(stale)} from an "
            f"earlier run, solved against the earlier {', '.join(written)}: do not apply "
            f"{'it' if len(stale) == 1 else 'them'} with the new keys (re-run the block, or remove "
            f"{'it' if len(stale) == 1 else 'them'})")
    log.warning("%s", note[4:])
    return note


def _refuse_all_flagged(cfg, pending):
    """A step whose every solution is flagged (all selected data flagged or of zero weight) is an
    error, not a success: the steps before it are written (one replace), it and the later ones are
    not.  A solution group (field, scan group, SPW) entirely flagged inside a usable step is a warning."""
    from .core.handflags import unusable
    from .io import hdf5

    keys = list(pending)
    for i, key in enumerate(keys):
        sets = pending[key]
        if sets and all(bool(np.all(unusable(s))) for s in sets):
            done = {k: pending[k] for k in keys[:i]}
            if done:
                hdf5.write_terms(cfg.output, done)
            n_sol = sum(s.flags.size for s in sets)
            raise AlakazamError(
                f"{key}: every solution is flagged (fields {sorted({s.field_name for s in sets})}, "
                f"spw={cfg.spw!r}, scan={cfg.scan!r}): "
                f"{_why_all_flagged(cfg, n_sol, _reasons(sets), _ref_counts(sets), _ref_name(sets))}; "
                f"nothing written for {', '.join(keys[i:])}"
                + (f" ({', '.join(done)} written)" if done else "") + _stale_note(cfg, done))
        for s in sets:
            if s.flags.size and np.all(unusable(s)):
                # this group's own re-referencing counts (solvers/rereference.py): a scan whose
                # reference antenna is flagged is flagged by refantmode strict, not for want of data
                why = _why_all_flagged(cfg, s.flags.size, _reasons([s]), getattr(s, "reference_counts", None),
                                       s.attrs.get("ref_ant_name"))
                if "no usable data" in why:     # (also beside other reasons: minblperant after a
                    why += _flagged_before(pending, keys[:i], s)     # flagged pre-applied K, a review)
                log.warning("%s field %s spw %d %s: every solution flagged (%s)", key, s.field_name,
                            s.spw, _scan_words(s), why)


def _scan_words(s) -> str:
    """'scan N', or for a set spanning scans (time_interval inf: HDF5 group scan_0, which is no MS scan)
    'scans 1-6' / 'scans 1, 3, 5' from its ``scans`` attribute."""
    scans = [int(x) for x in np.atleast_1d(s.attrs.get("scans", []))] if s.scan_id == 0 else []
    if not scans:
        return f"scan {s.scan_id}"
    if scans == list(range(scans[0], scans[-1] + 1)) and len(scans) > 2:
        return f"scans {scans[0]}-{scans[-1]}"
    return "scans " + ", ".join(str(x) for x in scans) if len(scans) > 1 else f"scan {scans[0]}"


def _ref_counts(sets):
    """The re-referencing counts of ``sets`` summed (``s.reference_counts``, solvers/rereference.py), or
    None when no set has them (KC, CP; sets read back from a table)."""
    have = [s.reference_counts for s in sets if getattr(s, "reference_counts", None)]
    if not have:
        return None
    return {k: sum(c.get(k, 0) for c in have) for k in have[0]}


def _ref_name(sets):
    """The reference antenna's name when ``sets`` share one (attr ``ref_ant_name``), else None."""
    names = {s.attrs.get("ref_ant_name") for s in sets}
    return names.pop() if len(names) == 1 else None


def _flagged_before(pending, earlier, s):
    """A note naming the earlier steps of the block (pre-applied to this one) that have every solution
    flagged in the same field, SPW and scan as ``s``: their flags flag the data this step solves on,
    which is then "no usable data" although FLAG and the weights are fine."""
    from .core.handflags import unusable

    keys = [k for k in earlier for e in pending[k]
            if (e.field_name, e.spw, e.scan_id) == (s.field_name, s.spw, s.scan_id)
            and e.flags.size and np.all(unusable(e))]
    if not keys:
        return ""
    keys = list(dict.fromkeys(keys))
    return (f"; the pre-applied {', '.join(keys)} of this block {'has' if len(keys) == 1 else 'have'} every "
            "solution flagged in this scan (see above), which flags the data solved here")



def _run_solve(cfg: SolveConfig, pending, stack) -> dict:
    """The solve itself; ``finish`` collects each step's sets in ``pending`` (written by run_solve);
    ``stack`` holds what must be closed when the block ends (a dask cluster, the MS handle)."""
    from . import distributed, plan
    from .calibration import solve_order
    from .core.ms import MeasurementSet

    t_start = _time.perf_counter()
    ms = stack.enter_context(MeasurementSet.open(cfg.ms))     # metadata read once, main table opened once
    cfg, meta, rowsel, refs, spw_sel, scans, step_fields, ext_terms = _validate(cfg)
    from .core import weightbackup, weights
    if not weights.uses_sigma(cfg.data_col) and weightbackup.pending(cfg.ms):   # a killed calwt apply
        log.warning("%s: an apply with calwt did not finish and WEIGHT, which weights a solve from %s, "
                    "may be partly rewritten; put it back first with: %s (the next apply or akflag on this "
                    "MS does it too)", cfg.ms, cfg.data_col, weightbackup.recover_command(cfg.ms))
    from .core import columns
    columns.warn_rewritten(cfg.ms, cfg.data_col)        # a killed in-place apply into that column
    # first run on this machine: the solvers compile on the other core while this one reads and flags
    from . import warmup
    warmup.start([st.jones_type for st in cfg.steps], cfg.solver_backend)
    # ---- memory plan
    use_dask = distributed.wanted(getattr(cfg, "workers", 0), getattr(cfg, "scheduler", ""))
    from .core import combine
    joint = [st.key for st in cfg.steps if combine.combines(st, "field") or combine.combines(st, "spw")]
    if use_dask and joint:
        from .errors import ParameterError
        raise ParameterError({"combine": [f"'field'/'spw' ({', '.join(joint)}) cannot run on dask workers "
                                          "(a distributed unit is one field and SPW); run without workers"]})
    mp = plan.memory_plan(cfg, meta, spw_sel, scans, step_fields, ms.row_counts,   # combine field/spw:
                          allow_field_major=FIELD_MAJOR and not joint, use_dask=use_dask)   # step-major
    tier, max_rows, field_major = mp.tier, mp.max_rows, mp.field_major
    log.info("memory: tier %d%s (limit %.2f GB, %d rows x %d B/row, max %d rows per read)",
             tier, " field-major" if field_major else "", mp.limit / 1e9, mp.n_rows_total, mp.bytes_per_row,
             max_rows)

    # a calibrator whose model was never filled (MODEL_DATA 0 in every row): said before the reads, a
    # step with no model anywhere refused (solve_diagnose.py; review 58b)
    from .solve_diagnose import model_precheck
    model_precheck(cfg, meta, spw_sel, scans, step_fields, rowsel, max_rows)
    # KC, CP, D without the parallactic angle on a polarised calibrator: refused (review 58f)
    from .calibration import polparang
    sky_pol = {}
    polparang.check_solve(cfg, meta, spw_sel, scans, step_fields, rowsel, sky_pol)
    for note in polparang.unpolarised_notes(cfg, meta, spw_sel, scans, step_fields, rowsel):
        log.warning("%s", note)     # KC / CP on an unpolarised model: noise, stored (review 58f)
    for note in polparang.mixed_mount_notes(cfg, meta, spw_sel, rowsel):
        log.warning("%s", note)     # KC / CP / D on an array of mixed mounts: not validated (review 60i)
    solve_order.check_terms(ext_terms, cfg.ms, meta, cfg.model_col, "external_preapply",
                            [st.jones_type for st in cfg.steps if terms.get(st.jones_type).cross_only])
    ctx = _Context(cfg, meta, refs[0], spw_sel, scans, max_rows, tier, rowsel=rowsel, refs=refs,
                   mem_limit=mp.limit, bytes_per_row=mp.bytes_per_row)
    from .calibration import chainid
    ctx.term_ids = {st.key: chainid.new_identity() for st in cfg.steps}     # (before units go to workers)
    ctx.prior = list(ext_terms)
    ctx.stats["model_polarisation"] = sky_pol     # field id -> its model's polarisation (unit._solution_set)
    if tier != 1 or use_dask:   # reads in chunks / on workers: earlier blocks' kept reads fit this limit too
        from .core import readcache     # (tier 1 makes room before its own reads: unit._iter_group_chunks)
        readcache.make_room(max_rows * mp.bytes_per_row, mp.limit)
    summary = {"output": cfg.output, "terms": {}, "tier": tier, "field_major": field_major}
    # terms pre-applied together that were not solved together: a term solved with another K / bandpass
    # than the one given beside it (a warning; calibration/chainid.py)
    summary["chain_warnings"] = chainid.check(ext_terms, "alakazam.flow")
    # the pre-applied gains from other tables and the fields they were solved on (calibration/leakcheck.py)
    from .calibration.leakcheck import set_fields
    summary["external_gains"] = [(t.key, sorted(set().union(*(set_fields(s) for s in t.sets))))
                                 for t in ext_terms if t.jones_type in ("K", "G", "T")]
    dask_client = stack.enter_context(distributed.client(cfg.workers, cfg.scheduler)) if use_dask else None
    summary["distributed"] = use_dask
    finish = functools.partial(_finish, ctx, pending, summary)
    if not field_major:
        _run_step_major(ctx, step_fields, finish, dask_client)
    else:
        _run_field_major(ctx, step_fields, ext_terms, finish)
    for rnd in range(1, cfg.iterations):        # iterations: re-solve each step with all the others
        from .solve_rounds import iterate_round
        ctx.prior = iterate_round(ctx, cfg, ext_terms, step_fields, spw_sel, finish, rnd, _solve_field_spw,
                                  after_unit=lambda st, sets: _rereference(ctx, st, sets))
    if cfg.iterations > 1:      # whether the rounds converged: a probe of the final chain (CP and D)
        from .solve_rounds import probe_changes, warn_unconverged
        probe = probe_changes(ctx, cfg, ext_terms, step_fields, spw_sel, _solve_field_spw,
                              after_unit=lambda st, sets: _rereference(ctx, st, sets))
        warn_unconverged(ctx.round_changes, cfg, log, probe)
        summary["round_changes"] = list(ctx.round_changes)
        summary["probe_changes"] = probe
    # CP / D on a polarised calibrator over too little parallactic angle (review 58f)
    polparang.warn_coverage(cfg, meta, pending, spw_sel, scans, rowsel)
    summary["seconds"] = _time.perf_counter() - t_start
    return summary


def _check_delay_channels(meta, spw_sel, steps):
    """A delay step (K, KC) whose every selected SPW has its selected channels at one frequency is
    refused before anything is read: a delay needs two frequencies and K / KC do not combine SPWs (a
    review's 64 one-channel SPWs solved every cell for 33 s, then 'every solution is flagged ...
    delay_undetermined', 56a).  Where some SPW has two, the others' cells are flagged as before."""
    bad = []
    for step in steps:
        if terms.get(step.jones_type).freq != "delay" or not spw_sel:
            continue
        counts = {}
        for ddid, chans in spw_sel.items():
            f = np.asarray(meta.spws[ddid].freqs, float)[np.asarray(chans, int)]
            counts[int(meta.spws[ddid].spw_id)] = len(np.unique(f))
        if counts and max(counts.values()) < 2:
            ids = sorted(counts)
            shown = ", ".join(map(str, ids[:8])) + (f", ... ({len(ids)} SPWs)" if len(ids) > 8 else "")
            bad.append(f"{step.key} ({step.jones_type}): every selected SPW ({shown}) has one channel "
                       "selected: a delay needs data at two or more frequencies of one SPW (K and KC do "
                       "not combine SPWs); select more channels, or solve a phase per SPW (G, calmode 'p') "
                       "instead")
    if bad:
        raise AlakazamError("; ".join(bad))


def _validate(cfg: SolveConfig):
    """Everything is checked before anything is read or written.  Returns (cfg, meta, rowsel, refs,
    spw_sel, scans, step_fields, ext_terms): the selection applied (:func:`_apply_selection`), the
    reference antennas in priority order, the channels of each DATA_DESC_ID, the scans (None = all),
    the fields of each step and the external pre-apply terms."""
    from .core import ms_io
    from . import solvers
    from .calibration import chain, parang_check, solve_order, spwmap as _spwmap
    from .core import scanobs

    solvers.check_backend(cfg.solver_backend)
    solvers.check_device(cfg.solver_backend, cfg.gpu)
    solvers.check_amp_only(cfg.solver_backend,
                           any(s.amp_only and terms.get(s.jones_type).gain for s in cfg.steps))
    meta = ms_io.read_meta(cfg.ms)
    cfg, meta, rowsel = _apply_selection(cfg, meta)
    if cfg.append:                 # cheap compatibility check before anything is solved (io/solappend)
        from .io import solappend
        for step in cfg.steps:
            solappend.check_compatible(cfg.output, step.key, ms=cfg.ms, ant_names=meta.active_names,
                                       jones_type=step.jones_type)
    ms_io.check_columns(cfg.ms, [cfg.data_col] + ([] if cfg.smodel else [cfg.model_col]))   # smodel: no MODEL
    ms_io.check_antenna_names(meta)      # solutions are matched to antennas by name
    if cfg.ref_ant_default and len(meta.ant_map) and meta.ant_map[0] < 0:
        # no ref_ant given and ANTENNA 0 has no rows: the first antenna with data (not an error naming
        # a parameter the user never set)
        first = int(np.flatnonzero(np.asarray(meta.ant_map) >= 0)[0])
        log.info("ref_ant not given: %s (ANTENNA %d, the first antenna with data; ANTENNA 0, %s, has "
                 "none)", meta.ant_names[first], first, meta.ant_names[0])
        cfg = dataclasses.replace(cfg, ref_ant=first)
    refs = ms_io.resolve_antenna(meta, cfg.ref_ant)
    refs = refs if isinstance(refs, list) else [refs]
    spw_sel = ms_io.resolve_spw(meta, cfg.spw)
    scans = ms_io.resolve_scans(meta, cfg.scan) if cfg.scan else None
    step_fields = [ms_io.resolve_fields(meta, step.field) for step in cfg.steps]
    solve_order.check_block(cfg, meta, step_fields)     # D before KC/CP needs an unpolarised calibrator
    _check_delay_channels(meta, spw_sel, cfg.steps)     # K, KC: two frequencies in some SPW
    parang_check.check_known_correlations(meta, spw_sel)                      # feed correlations only
    parang_check.check_parang_correlations(meta, spw_sel, cfg.apply_parang)   # linear feeds need XY, YX
    parang_check.check_cross_hand_steps(meta, spw_sel, cfg.steps)             # D, KC, CP need 4 correlations
    parang_check.check_leakage_gauge(meta, spw_sel, cfg.steps, cfg.leakage_gauge)   # absolute: linear feeds
    scanobs.check_scan_solints(meta, cfg.steps, step_fields, scans)          # scan numbers reused per obs
    from .plan import check_shared_spw                # two DATA_DESC_IDs of one SPW into one solution
    check_shared_spw(meta, cfg.steps, step_fields, spw_sel, scans)
    ext_terms = []
    if cfg.external_preapply is not None:
        ep = cfg.external_preapply
        from .core.selcheck import check_no_duplicates      # a term listed twice (pre-applied twice)
        check_no_duplicates(ep.tables, ep.jones, "external_preapply.jones")
        for i, (table, key) in enumerate(zip(ep.tables, ep.jones)):
            ext_terms.append(chain.load_term(
                table, key,
                field_select=ep.field_select[i] if i < len(ep.field_select) else "nearest_time",
                time_interp=ep.time_interp[i] if i < len(ep.time_interp) else "nearest",
                solution_field=(ep.solution_field[i] if i < len(ep.solution_field) else None)))
            fi = getattr(ep, "freq_interp", None) or []          # CASA interp 'time,freq' (core/freqinterp)
            ext_terms[-1].freq_interp = fi[i] if i < len(fi) else ""
            sm = getattr(ep, "spwmap", None) or []               # CASA spwmap (calibration/spwmap.py)
            ext_terms[-1].spwmap = _spwmap.as_dict(sm[i]) if i < len(sm) else {}
        _spwmap.check_solve_terms(ext_terms, meta, spw_sel, getattr(ep, "spwmap", None))
        parang_check.check_full_terms(meta, spw_sel, ext_terms, "external_preapply")   # D: 4 correlations
        solve_order.check_external_leakage(cfg.steps, ext_terms)     # no D pre-applied to CASA's order
        from .calibration.bandcover import warn_preapply     # bandpass channels outside its band
        warn_preapply(ext_terms, meta, spw_sel, log)
        from .calibration import kswitch        # another field's per-scan K switching inside a gain interval
        kswitch.warn_preapply(ext_terms, cfg, step_fields, meta, spw_sel, scans, log)
    return cfg, meta, rowsel, refs, spw_sel, scans, step_fields, ext_terms


#: what each quality check of the solve (unit._quality) means for a user, and what to change
_FLAG_REASONS = {
    "nonconverged": "the fit did not converge (check the model column, the pre-applied terms and refant "
                    "-- YAML ref_ant --; or raise maxiter -- YAML max_iter)",
    "minsnr": "SNR below minsnr (lower minsnr -- YAML min_snr --, or lengthen solint / widen the frequency "
              "bins: time_interval / freq_interval)",
    "minblperant": "fewer than minblperant unflagged baselines per antenna (lower minblperant -- YAML "
                   "min_bl_per_ant --, or check which antennas are flagged)",
    "amplitude_undetermined": "antenna amplitudes are not determined by the baselines with data -- one "
                              "baseline (an array of two antennas), or a chain or star of baselines that "
                              "closes no triangle, gives only the products |g_a| |g_b| (use calmode='p' "
                              "(phase-only; YAML phase_only: true), or solve amplitudes with at least three "
                              "antennas whose baselines form a triangle)",
    "delay_undetermined": "a delay needs data at two or more frequencies, and the data of these solutions "
                          "lie at one (a 1-channel SPW or channel selection, or every other channel flagged "
                          "for the antenna: select more channels for K / KC; K and KC do not combine SPWs)",
    "outlier_chi2": "the chi2 of a frequency bin was an outlier",
    "outlier_channel": "an outlier bandpass channel",
}


def _reasons(sets):
    """Solutions flagged per quality check, summed over ``sets`` (their ``quality`` counts)."""
    reasons = {}
    for s in sets:
        for k, v in getattr(s, "quality", {}).items():
            reasons[k] = reasons.get(k, 0) + v
    return reasons


def _why_all_flagged(cfg, n_sol, reasons, ref=None, ref_name=None):
    """Why every one of ``n_sol`` solutions is flagged: the data had none to give (flagged, zero
    weight, NaN/zero model) or the solve's quality checks flagged them, and what to change for each
    (``reasons``: solutions flagged per check, :func:`alakazam.unit._quality`; ``ref``: the step's or
    the group's re-referencing counts, whose ``strict`` / ``no_bridge`` cells were flagged for the
    reference antenna, not for the data; ``ref_name``: the step's reference antenna, named in the
    message)."""
    from .core import ms_io

    by_check = sum(v for v in reasons.values() if v)
    no_data = (f"the selected data are all flagged, have zero weight, NaN/Inf values or are exactly 0, or "
               f"{cfg.model_col} is NaN or zero; check FLAG, {ms_io.weight_column(cfg.ms, cfg.data_col)} "
               f"and {cfg.model_col}")
    checks = "; ".join(f"{k} flagged {v}: {_FLAG_REASONS.get(k, k)}" for k, v in reasons.items() if v)
    ref = ref or {}
    named = f"{ref_name} " if ref_name else ""
    if ref.get("strict") or ref.get("no_bridge"):
        parts = []
        if ref.get("strict"):
            parts.append(f"refantmode strict flagged {ref['strict']} solution cell(s) in which the first "
                         f"reference antenna {named}(refant={cfg.ref_ant!r}) has no data (put an antenna "
                         "with data first in refant, or use refantmode 'flex')")
        if ref.get("no_bridge"):
            parts.append(f"{ref['no_bridge']} cell(s) solved with a fallback reference antenna could not be "
                         f"re-referenced to the reference {named}(refant={cfg.ref_ant!r}) (no cell in which "
                         "both have data; choose a refant with data in every scan -- or, for simultaneous "
                         "subarrays, whose antennas never share a cell, solve each subarray on its own with "
                         "a refant of its own)")
        if ref.get("no_data"):
            parts.append(f"{ref['no_data']} cell(s) had no usable data ({no_data})")
        if by_check:
            parts.append(f"the solve's checks had flagged -- {checks}")
        return "; ".join(parts)
    if not by_check:
        why = f"no usable data: {no_data}"
    elif by_check >= n_sol:
        why = f"flagged by the solve's checks -- {checks}"
    else:
        why = (f"{n_sol - by_check} had no usable data ({no_data}); the others flagged by the solve's "
               f"checks -- {checks}")
    return why


def _finish(ctx, pending, summary, step, sets, seconds):
    """A step's sets are complete: refuse an empty or all-flagged step, solnorm, append or replace the
    key in ``pending`` (written by run_solve) and the step's summary."""
    from .core.handflags import unusable

    cfg = ctx.cfg
    if not sets:
        rs = getattr(ctx.rowsel, "text", None) or {}        # antenna / uvrange / timerange / ...
        raise AlakazamError(
            f"{step.key}: no data selected for field(s) {step.field} (spw={cfg.spw!r}, "
            f"scan={cfg.scan!r}" + "".join(f", {k}={v!r}" for k, v in rs.items())
            + "); check the selection with 'alakazam info' / listobs")
    n_sol = sum(s.flags.size for s in sets)
    n_flag = int(sum(s.flags.sum() for s in sets))          # not whole (SEED flags)
    n_none = int(sum(unusable(s).sum() for s in sets))      # no usable hand (core/handflags.py)
    reasons = _reasons(sets)
    if n_none == n_sol:
        why = _why_all_flagged(cfg, n_sol, reasons, ctx.stats.get(("reference", step.key)), _ref_name(sets))
        if "no usable data" in why:     # which selection, and where its samples went (review 58b)
            from .solve_diagnose import explain
            why += explain(ctx, step)
        why += _unpolarised_note(ctx, step)
        raise AlakazamError(f"{step.key} ({step.jones_type}): every solution is flagged ({n_sol} solutions, "
                            f"field(s) {step.field}): {why} (nothing was "
                            f"written for {step.key})")
    why = ", ".join(f"{k} {v}" for k, v in reasons.items() if v)
    if cfg.solnorm:
        _solnorm(cfg, step, sets)
    n_fill = 0
    if getattr(cfg, "fill_gaps", 0) and terms.get(step.jones_type).gain:
        from .calibration.fillgaps import fill_sets
        n_fill = fill_sets(sets, int(cfg.fill_gaps))
        n_flag -= n_fill            # the filled solutions are unflagged (counted in the log line)
    from .io import solappend
    if cfg.append:              # the key's existing groups + these (written with the block)
        pending[step.key] = solappend.merged_sets(cfg.output, step.key, sets)
    else:
        note = None if step.key in pending else solappend.replaced_note(cfg.output, step.key)
        if note:                # (once: a later round of iterations replaces the block's own sets)
            log.warning(note)
        pending[step.key] = sets
    summary["terms"][step.key] = {
        "jones_type": step.jones_type, "n_groups": len(sets), "n_solutions": n_sol,
        "flagged": n_flag, "seconds": seconds,
        "converged": float(np.mean(np.concatenate([s.converged.ravel() for s in sets]))),
        "reference": ctx.stats.get(("reference", step.key)),   # cells re-referenced / flagged
        "phases": ctx.stats.get(("phases", step.key)),         # seconds by phase (unit.PHASES; in process)
    }
    summary["terms"][step.key]["flag_reasons"] = reasons
    summary["terms"][step.key]["filled"] = n_fill
    filled = (f"; {n_fill} more were flagged and filled by fillgaps={cfg.fill_gaps} (interpolated in "
              f"frequency)" if n_fill else "")
    n_hand = int(sum((s.flags & ~unusable(s)).sum() for s in sets))     # one hand flagged, the other kept
    summary["terms"][step.key]["one_hand_flagged"] = n_hand
    log.info("%s: %d solution groups, %d/%d flagged%s%s%s, %.2f s", step.key, len(sets), n_flag, n_sol,
             f" (of which {why})" if why else "", filled,
             f"; {n_hand} of them keep one hand (pol_flags: the other hand is flagged)" if n_hand else "",
             seconds)
    dead = _antennas_without_solution(sets)
    if dead:
        log.info("%s: no valid solution in any cell for %s -- flagged, dead or without signal there (the "
                 "solve-time flags flag an antenna whose data carry no signal); an apply with calflag flags "
                 "their data in those SPWs", step.key,
                 "; ".join(f"{', '.join(names)} (SPW {sp})" for sp, names in sorted(dead.items())))
    summary["terms"][step.key]["no_solution_antennas"] = {int(k): v for k, v in dead.items()}


def _unpolarised_note(ctx, step) -> str:
    """'; the real cause ...' for a KC or CP step whose calibrator's model has no linear polarisation
    (review 58f: CP on 3C147 said only "SNR below minsnr (lower minsnr ... or lengthen solint)"), else
    ''."""
    if step.jones_type not in ("KC", "CP"):
        return ""
    from .calibration import polparang
    from .core import ms_io
    try:
        fids = ms_io.resolve_fields(ctx.meta, step.field)
        four = {d: c for d, c in ctx.spw_sel.items() if ctx.meta.spws[d].n_corr == 4}
        fr = [polparang.pol_fraction(polparang.model_stokes(ctx.cfg, ctx.meta, four, ctx.scans, f,
                                                            ctx.rowsel)) for f in fids]
    except Exception as e:          # noqa: BLE001 -- a diagnosis never hides the error it explains
        log.debug("no model polarisation for %s: %s", step.key, e)
        return ""
    fr = [x for x in fr if np.isfinite(x)]
    if not fr or max(fr) > polparang.POLARISED_FRACTION:
        return ""
    model = "smodel" if ctx.cfg.smodel else ctx.cfg.model_col
    names = [ctx.meta.fields[f].name for f in fids]
    level = "Q = U = 0" if max(fr) == 0 else f"sqrt(Q^2 + U^2) {max(fr):.1g} of I"
    jt = step.jones_type
    return (f"; the cause: the {model} of {', '.join(names)} is unpolarised ({level}), so its cross "
            f"hands carry no polarised signal for {jt} to fit -- lowering minsnr or lengthening solint "
            f"will not help. Solve {jt} on a polarised calibrator (e.g. 3C286, 3C138, with its Q and U in "
            f"the model) with apply_parang: true")


def _antennas_without_solution(sets):
    """``{SPW: [antenna names]}``: the antennas with no usable solution in any set and cell of the SPW while
    another antenna has one (a dead antenna, one flagged in that SPW, one without signal: review 54a saw
    only "K0: 12/160 flagged" for an antenna dead in one SPW, and 20% of that SPW gone after calflag)."""
    from .core.handflags import unusable

    out = {}
    for sp in sorted({int(s.spw) for s in sets}):
        bad = None
        names = None
        for s in sets:
            if int(s.spw) != sp:
                continue
            u = unusable(s).reshape(s.flags.shape[0], -1).all(axis=1)          # (n_ant,)
            names = [str(a) for a in s.attrs.get("ant_names", [])]
            bad = u if bad is None else bad & u
        if bad is not None and not bad.all() and bad.any() and len(names) == len(bad):
            out[sp] = [n for n, b in zip(names, bad) if b]
    return out


def _run_step_major(ctx, step_fields, finish, dask_client):
    """Every step over all its (field, SPW) batches (:func:`alakazam.plan.step_major`), then the next
    step; on dask the units of a step run in parallel and are re-referenced in the same order."""
    from . import distributed, plan, progress
    from .calibration import chain
    from .core import combine

    cfg, meta, spw_sel = ctx.cfg, ctx.meta, ctx.spw_sel
    for i, (step, fids) in enumerate(zip(cfg.steps, step_fields)):
        t0 = _time.perf_counter()
        sets = []
        with progress.bar(f"{step.key} ({step.jones_type}): solution groups",
                          plan.n_units(meta, step, fids, spw_sel, ctx.scans), quiet=cfg.quiet) as bar:
            ctx.advance = bar.advance
            if dask_client is not None:       # units in parallel; re-referenced in the same order
                for unit_sets in distributed.solve_step(dask_client, ctx, step, fids, bar.advance,
                                                        step_index=i):
                    sets.extend(unit_sets)
                    _rereference(ctx, step, sets)
            # combine 'field'/'spw': joint units (core/combine.py)
            for fid, ddid, chans, members in (combine.units(step, fids, spw_sel) if dask_client is None
                                               else ()):
                sets.extend(_solve_field_spw(ctx, step, fid, ddid, chans, members))
                _rereference(ctx, step, sets)
        finish(step, sets, _time.perf_counter() - t0)
        ctx.prior.append(chain.term_from_sets(step.key, step.jones_type, sets,
                                              time_interp=step.preapply_time_interp))
    ctx.cache.clear()


def _run_field_major(ctx, step_fields, ext_terms, finish):
    """For each (field, SPW), every step (:func:`alakazam.plan.field_major`; tier 1: the (field, SPW)
    is read once).  A step failing on a (field, SPW): the steps before it are completed on the
    remaining ones and finished, then the error is raised (module docstring)."""
    from . import plan, progress
    from .calibration import chain

    cfg, spw_sel = ctx.cfg, ctx.spw_sel
    steps = list(cfg.steps)
    sets_by_step = [[] for _ in steps]
    seconds = [0.0] * len(steps)
    todo = list(dict.fromkeys((fid, ddid)
                              for _, fid, ddid in plan.field_major(steps, step_fields[0], spw_sel)))
    n_steps, error = len(steps), None
    total = sum(plan.n_units(ctx.meta, st, step_fields[0], spw_sel, ctx.scans) for st in steps)
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


def _solnorm(cfg, step, sets):
    """CASA solnorm on a G step's solution sets, in place (calibration/solnorm.py)."""
    from .calibration.solnorm import normalise_sets

    if not terms.get(step.jones_type).gain:
        log.info("%s: solnorm applies to gains only; %s left as solved", step.key, step.jones_type)
        return
    for spw, f in normalise_sets(sets, cfg.normtype).items():
        if f is None:
            log.info("%s: solnorm (%s) SPW %d: each antenna's bandpass per polarisation and time divided by "
                     "its %s amplitude and mean phase (CASA bandpass)", step.key, cfg.normtype, spw,
                     "rms" if cfg.normtype == "mean" else "median")
        else:
            log.info("%s: solnorm (%s) SPW %d: amplitudes of both polarisations divided by %.6g (CASA "
                     "gaincal)", step.key, cfg.normtype, spw, f)


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

    if step.jones_type == "D" and ctx.cfg.leakage_gauge == "absolute":
        return                      # the absolute leakage has no gauge (solvers/leakage.py)
    names = [ctx.meta.ant_names[a] for a in ctx.meta.active_ants]
    counts = rereference_step(step.jones_type, sets, ctx.refs, ctx.cfg.ref_ant_mode, names, step.key,
                              prior_phasor_from_chain(ctx.prior, ctx.meta))
    total = ctx.stats.setdefault(("reference", step.key), dict.fromkeys(counts, 0))
    for k, v in counts.items():
        total[k] += v
    if terms.get(step.jones_type).name == "K":
        _wrap_rereferenced_delays(ctx, sets)


def _wrap_rereferenced_delays(ctx: _Context, sets) -> None:
    """K's delays back in their principal range after the step's re-referencing: a cell solved with
    another reference and bridged to the step's took that reference's delay, which can carry a delay
    over 1/(2d) (review 56c: 22 of 103 per-integration delays at 530-1012 ns on 1 MHz channels; the cell's
    own solve had wrapped them, :func:`alakazam.solvers.parallel_delay.wrap_delays`).  Each antenna's
    delay moves by whole periods 1/d of its SPW's selected channel grid, and its stored Jones (the delay's
    phase at the bin centre) with it; the reference's is ~0 and stays."""
    from .solvers.parallel_delay import TWO_PI_NS, grid_step

    period = {}
    for ddid, chans in (ctx.spw_sel or {}).items():
        d = grid_step(np.asarray(ctx.meta.spws[ddid].freqs, float)[np.asarray(chans, int)])
        if d is not None:
            period.setdefault(int(ctx.meta.spws[ddid].spw_id), 1e9 / d)
    for s in sets:
        p = period.get(int(s.attrs.get("spw", -1)))
        if p is None or s.delay is None:
            continue
        with np.errstate(invalid="ignore"):
            k = np.where(np.isfinite(s.delay), np.round(s.delay / p), 0.0)     # (ant, f, t, hand)
        if not k.any():
            continue
        s.delay -= k * p
        for h in range(2):
            nu = np.asarray(s.freq, float)[None, :, None]
            s.jones[..., h, h] *= np.exp(1j * TWO_PI_NS * (k[..., h] * p) * nu)

