"""The flagging engine: selection -> (DATA_DESC_ID, scan) units -> pieces of whole baselines -> a mode
-> FLAG written back in row chunks.

Flags a mode sees are the *effective* flags ``FLAG | FLAG_ROW`` of the selected channels and
correlations (a :class:`Piece`); it returns the new flags of those samples.  Samples outside the
selection are never changed.  When a piece changed, its rows are written as ``FLAG`` = the effective
flags with the selected block replaced and ``FLAG_ROW`` = all of the row's FLAG set (flagdata's
convention), in chunks of :data:`alakazam.core.flagversions.CHUNK_ROWS` rows.  Before the first write a
flag version ``akflag_<n>`` is saved (:mod:`alakazam.core.flagversions`); with ``action='calculate'``
nothing is saved or written and the counts say what would have changed.  The engine knows nothing of
tasks: its input is a :class:`~alakazam.flagging.config.FlagConfig`.
"""

from __future__ import annotations

import logging
import time as _time
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from ..core import flagversions, memory, ms_io
from ..core.ms_io import _row_runs
from .config import WRITING_MODES, FlagConfig
from .select import BY_OBSERVATION, BYTES_PER_ROW, BYTES_PER_SAMPLE, resolve, units

log = logging.getLogger("alakazam.flag")


@dataclass
class Piece:
    """Selected samples of whole baselines of one (DATA_DESC_ID, scan) unit.

    data : (row, chan, corr) complex64 of the chosen column (None for modes that do not read data);
    model : MODEL_DATA of the same block when the mode asked for it (else None);
    flag : (row, chan, corr) bool effective flags; time, ant1, ant2 (ANTENNA ids), field_id : (row,);
    scan; freqs (chan,) Hz; corr_types (corr,); scan_t0 / scan_t1 : first / last TIME of the unit's
    selected rows; interval : median integration time (s).
    """

    data: Optional[np.ndarray]
    model: Optional[np.ndarray]
    flag: np.ndarray
    time: np.ndarray
    ant1: np.ndarray
    ant2: np.ndarray
    field_id: np.ndarray
    scan: int
    ddid: int
    spw_id: int
    chans: np.ndarray
    freqs: np.ndarray
    corr_types: List[str]
    scan_t0: float
    scan_t1: float
    interval: float
    #: with a partial channel / correlation selection: (the rows' incoming FLAG | FLAG_ROW of every
    #: channel and correlation, selected channel indices, selected correlation indices); a mode may then
    #: return new flags of that whole plane (tfcrop / rflag's extension, as flagdata's)
    full: Optional[tuple] = None

    def baseline_groups(self):
        """[(row indices of one baseline sorted by time, time index of each into ``self.times``)] and the
        unit-wide sorted unique times of the piece."""
        times, tidx = np.unique(self.time, return_inverse=True)
        code = self.ant1.astype(np.int64) * 100000 + self.ant2
        order = np.lexsort((self.time, code))
        _, start, counts = np.unique(code[order], return_index=True, return_counts=True)
        return [(order[s:s + c], tidx[order[s:s + c]]) for s, c in zip(start, counts)], times


def getcol_rows(t, col, rows):
    """Column ``col`` of sorted MS rows ``rows``: runs of consecutive rows read straight into one array."""
    runs = _row_runs(rows)
    if len(runs) <= max(1, len(rows) // 16):
        first = np.asarray(t.getcell(col, int(rows[0])))
        out = np.empty((len(rows),) + first.shape, first.dtype)
        for r0, n, i0 in runs:
            t.getcolnp(col, out[i0:i0 + n], r0, n)
        return out
    q = t.selectrows(rows)
    try:
        return q.getcol(col)
    finally:
        q.close()


def putcol_rows(t, col, rows, values, chunk=flagversions.CHUNK_ROWS):
    """Write ``values`` to sorted MS rows ``rows`` of ``col`` in chunks of ``chunk`` rows."""
    for s in range(0, len(rows), chunk):
        r = rows[s:s + chunk]
        v = values[s:s + chunk]
        runs = _row_runs(r)
        if len(runs) <= max(1, len(r) // 16):
            for r0, n, i0 in runs:
                t.putcol(col, np.ascontiguousarray(v[i0:i0 + n]), r0, n)
        else:
            q = t.selectrows(r)
            try:
                q.putcol(col, np.ascontiguousarray(v))
            finally:
                q.close()


def _mode_module(mode):
    from importlib import import_module

    return import_module(f"alakazam.flagging.{mode}")


def run_flag(cfg: FlagConfig) -> dict:
    """:func:`_run_flag` with the MS read through one handle (alakazam/core/ms.py: metadata read once;
    a summary borrows the handle's table, a writing mode releases it before its first write)."""
    from ..core.ms import MeasurementSet

    with MeasurementSet.open(cfg.ms):
        return _run_flag(cfg)


def _run_flag(cfg: FlagConfig) -> dict:
    """Run one flagging mode on ``cfg.ms``; returns counts (and the summary dict for mode='summary').

    Returns
    -------
    dict
        ``mode``, ``version`` (saved flag version or None), ``total`` (selected samples), ``flagged_before``,
        ``flagged_after``, ``newly_flagged``, ``unflagged``, ``extended``, ``no_solution``, ``seconds``
        (:func:`new_counts`); mode 'summary' returns
        flagdata's summary dict (see :mod:`alakazam.flagging.summary`).
    """
    t_start = _time.perf_counter()
    sel = resolve(cfg)
    mod = _mode_module(cfg.mode)
    writes = cfg.mode in WRITING_MODES and cfg.action == "apply"
    if cfg.autocorr and cfg.mode != "manual":
        log.warning("akflag: autocorr=True is a parameter of mode='manual' only (as flagdata) and is ignored "
                    "by mode=%r; select auto-correlations with antenna='*&&&'", cfg.mode)
    if writes and not getattr(cfg, "flagbackup", True):
        log.warning("akflag: flagbackup=False -- a flag version is saved anyway (alakazam writes FLAG only "
                    "after a saved version); delete it with akflagmanager(mode='delete') if unwanted")
    from . import preapply
    pre = preapply.load(cfg, sel.meta) if getattr(mod, "NEEDS_DATA", False) else None   # before any write
    if writes:
        ms_io.release_handle_table(cfg.ms)      # no read-only table of ours beside the writes
        return _writing(cfg, sel, mod, pre, t_start)
    from ..calibration import flagsafety

    flagsafety.warn_interrupted(cfg.ms)     # summary / calculate read the FLAG an interrupted run left
    return _flag_body(cfg, sel, mod, pre, t_start, writes)


def _writing(cfg, sel, mod, pre, t_start):
    """A writing mode: under the MS writer lock (one writer of FLAG at a time, core/locks.py), after
    undoing what a killed writer left (core/columns.recover)."""
    from ..calibration import flagsafety
    from ..core import columns, locks

    with locks.writer_lock(cfg.ms, "ms"):
        columns.recover(cfg.ms)
        flagsafety.warn_interrupted(cfg.ms)         # an earlier run's marker (before this run's own)
        return _flag_body(cfg, sel, mod, pre, t_start, True)


def _flag_body(cfg, sel, mod, pre, t_start, writes):
    from ..calibration import flagsafety

    comment = " ".join(x for x in (f"akflag mode={cfg.mode}", _selection_text(cfg, " ")) if x)
    save = (lambda: flagversions.save(cfg.ms, task="akflag", comment=comment)) if writes else (lambda: None)
    if writes and not _selects_rows(cfg, sel):     # nothing to flag: no flag version either
        log.warning("akflag mode=%s: the selection (%s) has no data in %s; nothing was flagged and no flag "
                    "version saved", cfg.mode, _selection_text(cfg) or "all", cfg.ms)
        return {"mode": cfg.mode, "action": cfg.action, "version": None, **new_counts(),
                "seconds": _time.perf_counter() - t_start}
    # the mode starts (AOFlagger: strategy loaded, worker processes up) before anything is saved: a
    # failure there leaves no flag version and no in-progress marker
    state = mod.start(cfg, sel) if hasattr(mod, "start") else None
    try:
        # from the saved version on, a marker holds the restore command and Ctrl-C logs it
        # (calibration/flagsafety): no window between the save and the first FLAG write without it
        with flagsafety.saved_then_marked(cfg.ms, save, what="akflag") as version:
            if version:
                log.info("akflag: saved flag version %s in %s (undo: %s)", version,
                         flagversions.versions_dir(cfg.ms), _restore_cmd(cfg.ms, version))
            return _run_units(cfg, sel, mod, state, writes, version, t_start, pre)
    finally:
        if hasattr(mod, "close"):
            mod.close(cfg, sel, state)


#: the selection parameters a flag version's comment and the no-data warnings name
_SELECTION_KEYS = ("field", "spw", "antenna", "uvrange", "timerange", "scan", "intent", "observation",
                   "correlation", "autocorr")


def _selection_text(cfg, sep=", ") -> str:
    """The selection parameters that are set, as k='v' joined by ``sep`` ('' when none is)."""
    return sep.join(f"{k}={getattr(cfg, k)!r}" for k in _SELECTION_KEYS if getattr(cfg, k))


def _selects_rows(cfg, sel) -> bool:
    """The selection has rows to flag (a mode that scans the whole MS itself, shadow, always has)."""
    if cfg.mode in ("shadow",):
        return True
    with ms_io.main_table(cfg.ms) as t:
        return any(len(units(t, sel, d)) for d in sel.ddids)


def _restore_cmd(ms, version):
    from ..calibration.flagsafety import restore_command

    return restore_command(ms, version)


#: the modes that flag the samples whose data are NaN or infinite, and leave them out of their statistics,
#: as flagdata's mode='clip' run before them would (measured against CASA 6.7, tests/test_nonfinite_flag.py:
#: flagdata's rflag and tfcrop leave a NaN sample unflagged -- an infinite one rflag flags by its
#: comparisons, tfcrop not -- and a NaN in a chunk upsets rflag's automatic thresholds: 2296 of 5540 flags
#: of its scan lost on a small simulated MS; akflag's flags equal flagdata's clip then rflag / tfcrop)
FLAGS_NONFINITE = ("rflag", "tfcrop")


def new_counts() -> dict:
    """The counts of a run, all 0.  ``total``, ``flagged_before``, ``flagged_after``, ``unflagged``: of
    the selected samples; ``newly_flagged``: every sample the run flags, also those outside the
    selection that a mode's extension flags (tfcrop / rflag ``extendflags`` with a channel or
    correlation selection), which are ``extended`` too; ``no_solution``: samples without a valid
    pre-applied solution (gaintable); ``nonfinite``: samples whose data are NaN or infinite, flagged by a
    mode that flags them (:data:`FLAGS_NONFINITE`)."""
    return {"total": 0, "flagged_before": 0, "flagged_after": 0, "newly_flagged": 0, "unflagged": 0,
            "no_solution": 0, "extended": 0, "nonfinite": 0}


def _run_units(cfg, sel, mod, state, writes, version, t_start, pre=None):
    from ..core.ms import writer as ms_writer

    limit = memory.memory_limit_bytes(cfg.memory_limit_gb)
    counts = new_counts()
    from contextlib import ExitStack

    from .. import distributed, progress

    if distributed.wanted(getattr(cfg, "workers", 0), getattr(cfg, "scheduler", "")) and \
            not hasattr(mod, "finish") and not getattr(mod, "IN_PROCESS", False) and \
            not getattr(mod, "in_process", lambda c: False)(cfg):
        # (summary collects in its state, shadow scans the whole MS once: in process)
        # (gaintable: each worker loads the tables itself, distributed_apply._flag_part)
        from .. import distributed_apply        # workers compute the flags, this process writes
        distributed_apply.flag_units(cfg, sel, writes, counts, limit)
    else:
        with (ms_writer(cfg.ms).flag_table() if writes else ms_io.main_table(cfg.ms)) as t, \
                ExitStack() as stack:
            todo = [(ddid, units(t, sel, ddid, cfg.mode in BY_OBSERVATION)) for ddid in sel.ddids]
            pbar = stack.enter_context(progress.bar(
                f"akflag {cfg.mode}: rows", sum(len(u.rows) for _, us in todo for u in us), quiet=cfg.quiet))
            for ddid, unit_list in todo:
                for unit in unit_list:
                    _flag_unit(t, cfg, sel, mod, state, ddid, unit, limit, counts,
                               (lambda rows, flag: _put_flags(t, rows, flag)) if writes else None, pre, pbar)
    secs = _time.perf_counter() - t_start
    if hasattr(mod, "finish"):
        out = mod.finish(cfg, sel, state)
        if out is not None:
            out["seconds"] = secs
            return out
    if counts["total"] == 0:        # (a silent no-op before: e.g. a field without rows)
        log.warning("akflag mode=%s: the selection (%s) has no data in %s; nothing was flagged", cfg.mode,
                    _selection_text(cfg) or "all", cfg.ms)
    frac = lambda n: 100.0 * n / max(counts["total"], 1)   # noqa: E731
    log.info("akflag mode=%s: %d of %d selected samples flagged before (%.2f%%), %d after (%.2f%%): "
             "%d newly flagged, %d unflagged%s (%.1f s)", cfg.mode, counts["flagged_before"], counts["total"],
             frac(counts["flagged_before"]), counts["flagged_after"], frac(counts["flagged_after"]),
             counts["newly_flagged"], counts["unflagged"],
             (f" ({counts['extended']} of them outside the selection: the extension)" if counts["extended"]
              else "") + ("" if writes else " -- action='calculate': FLAG not written"), secs)
    if counts["no_solution"]:
        log.info("akflag: %d samples had no valid solution in the pre-applied tables (gaintable) and were "
                 "flagged (as akapply's applymode='calflag')", counts["no_solution"])
    if counts.get("nonfinite"):
        log.info("akflag mode=%s: %d samples whose value (datacolumn=%r) is NaN or infinite were flagged and "
                 "left out of its statistics, as mode='clip' before it (CASA's flagdata %s leaves a NaN "
                 "unflagged and it upsets the statistics of its chunk; README, Flagging)", cfg.mode,
                 counts["nonfinite"], getattr(cfg, "datacolumn", "data"), cfg.mode)
    return {"mode": cfg.mode, "action": cfg.action, "version": version, **counts, "seconds": secs}


def _put_flags(t, rows, flag):
    from ..core.ms import note_flag_write

    note_flag_write(t.name())   # FLAG may change from here on (calibration/flagsafety.flag_writes)
    putcol_rows(t, "FLAG", rows, flag)
    putcol_rows(t, "FLAG_ROW", rows, flag.all(axis=(1, 2)))


def _flag_unit(t, cfg, sel, mod, state, ddid, unit, limit, counts, write, pre=None, pbar=None):
    """Flag one (DATA_DESC_ID, scan) unit piece by piece (``t``: the MS open); adds to ``counts``; the
    new FLAG of every changed piece goes to ``write(rows, flag)`` (None: nothing written).  ``pre``: the
    tables applied to DATA on the fly (flagging/preapply.py; samples without a valid solution are
    flagged, as applymode='calflag'); ``pbar``: a progress bar advanced by rows.  A mode with
    statistics over the whole unit (``prepare_unit``: rflag's automatic thresholds) gets a first pass
    over every piece when the unit does not fit in one."""
    from . import preapply

    spw = sel.meta.spws[ddid]
    per_sample = BYTES_PER_SAMPLE + (0 if pre is None else preapply.BYTES_PER_SAMPLE)
    per_row = len(spw.freqs) * spw.n_corr * per_sample + BYTES_PER_ROW
    max_rows = max(1, int(limit // per_row))
    pieces = list(unit.pieces(max_rows))
    if isinstance(state, dict):
        state.pop("unit", None)      # (a first pass of an earlier unit with the same DATA_DESC_ID and scan)
    if len(pieces) > 1 and hasattr(mod, "prepare_unit"):
        mod.prepare_unit(unit, (_read_piece(t, cfg, sel, mod, ddid, unit, idx, pre)[3] for idx in pieces),
                         cfg, state)
    for idx in pieces:
        if pbar is not None:
            pbar.advance(len(idx))
        rows, flag, sub, piece = _read_piece(t, cfg, sel, mod, ddid, unit, idx, pre, counts)
        mflag = piece.flag
        new = mod.flag_piece(piece, cfg, state)
        if new is None:              # summary: nothing to write
            continue
        new = np.asarray(new, bool)
        chans, corrs = sel.ddids[ddid]
        whole = None
        if new.shape != sub.shape:           # the mode's new flags of every channel and correlation
            whole = new
            new = new[:, chans][:, :, corrs] | (mflag & ~sub)
            whole[np.ix_(np.arange(len(rows)), chans, corrs)] = new
        else:
            new = new | (mflag & ~sub)
        counts["total"] += sub.size
        counts["flagged_before"] += int(sub.sum())
        counts["flagged_after"] += int(new.sum())
        counts["newly_flagged"] += int((new & ~sub).sum())
        counts["unflagged"] += int((sub & ~new).sum())
        if whole is not None:        # the extension's flags outside the selection: counted too
            ext = int((whole & ~flag).sum()) - int((new & ~sub).sum())     # (inside it: new vs sub)
            counts["newly_flagged"] += ext
            counts["extended"] += ext
            if write is not None and not np.array_equal(whole, flag):
                write(rows, whole)
            continue
        if write is not None and not np.array_equal(new, sub):
            if len(chans) == len(spw.freqs) and len(corrs) == spw.n_corr:
                flag = new
            elif len(chans) == len(spw.freqs):
                flag[:, :, corrs] = new
            else:
                flag[np.ix_(np.arange(len(rows)), chans, corrs)] = new
            write(rows, flag)


def _read_piece(t, cfg, sel, mod, ddid, unit, idx, pre=None, counts=None):
    """(rows, FLAG | FLAG_ROW of the rows, the selected block of it, :class:`Piece`) of the rows ``idx``
    of ``unit``; the piece's flags include the samples without a valid pre-applied solution (counted in
    ``counts['no_solution']`` when ``counts`` is given)."""
    chans, corrs = sel.ddids[ddid]
    spw = sel.meta.spws[ddid]
    full_chans = len(chans) == len(spw.freqs)
    all_corrs = len(corrs) == spw.n_corr          # (parse_correlation: sorted, unique)
    rows = unit.rows[idx]
    flag = getcol_rows(t, "FLAG", rows)
    flag |= getcol_rows(t, "FLAG_ROW", rows)[:, None, None]
    sub = _block(flag, chans, corrs, full_chans, all_corrs, copy=True)
    data = model = None
    mflag = sub
    if getattr(mod, "NEEDS_DATA", False):
        calib = None if pre is None else (pre, unit.time[idx], unit.ant1[idx], unit.ant2[idx],
                                          unit.field_id[idx], unit.scan, ddid)
        data, model, nosol = _read_data(t, cfg, rows, chans, corrs, full_chans, all_corrs,
                                        getattr(mod, "WANTS_MODEL", False), sel.meta.columns, calib)
        if nosol is not None:      # no valid solution: flagged, as applymode='calflag'
            if counts is not None:
                counts["no_solution"] = counts.get("no_solution", 0) + int((nosol & ~sub).sum())
            mflag = sub | nosol
        if cfg.mode in FLAGS_NONFINITE:
            # NaN / Inf samples: flagged and left out of the statistics, as mode='clip' before the mode
            # (flagdata's rflag / tfcrop leave a NaN unflagged, and it upsets the chunk's thresholds)
            bad = ~np.isfinite(data)
            if bad.any():
                if counts is not None:
                    counts["nonfinite"] = counts.get("nonfinite", 0) + int((bad & ~mflag).sum())
                mflag = mflag | bad
    piece = Piece(data, model, mflag, unit.time[idx], unit.ant1[idx], unit.ant2[idx],
                  unit.field_id[idx], unit.scan, ddid, spw.spw_id, chans, spw.freqs[chans],
                  [spw.corr_types[c] for c in corrs], float(unit.time.min()),
                  float(unit.time.max()), sel.meta.interval,
                  None if (full_chans and all_corrs) else (flag, chans, corrs))
    return rows, flag, sub, piece


def _block(a, chans, corrs, full_chans, all_corrs, copy=False):
    """The selected (chan, corr) block of a (row, chan, corr) array (a view or ``a`` itself when
    everything is selected, unless ``copy``; fancy indexing only along the axes that need it)."""
    if full_chans and all_corrs:
        return a.copy() if copy else a
    if full_chans:
        return a[:, :, corrs]
    if all_corrs:
        return a[:, chans]
    return a[:, chans][:, :, corrs]


def _read_data(t, cfg, rows, chans, corrs, full_chans, all_corrs, wants_model, columns, calib=None):
    """(data, model, no_solution) of the selected block; ``calib`` = (PreApply, time, ant1, ant2,
    field_id, scan, ddid) corrects DATA on the fly (:mod:`.preapply`), else no_solution is None."""
    def sel(a):
        return _block(a, chans, corrs, full_chans, all_corrs)

    nosol = None
    if calib is not None:           # (datacolumn data or residual: select.data_columns)
        full, bad = calib[0].correct(getcol_rows(t, "DATA", rows), *calib[1:])
        data, nosol = sel(full), sel(bad)
    elif cfg.datacolumn in ("corrected", "corrected_residual", "residual"):     # (residual: CASA's)
        data = sel(getcol_rows(t, "CORRECTED_DATA", rows))
    else:
        data = sel(getcol_rows(t, "DATA", rows))
    model = None
    if cfg.datacolumn in ("residual", "residual_data", "corrected_residual"):
        data = data - sel(getcol_rows(t, "MODEL_DATA", rows))
    elif wants_model and "MODEL_DATA" in columns:
        model = sel(getcol_rows(t, "MODEL_DATA", rows))
    return data, model, nosol
