"""Apply solved terms to a Measurement Set: CORRECTED = J_p^-1 V J_q^-H.

For every target field, SPW and memory-bounded row chunk the chain is evaluated on the chunk's grid by
:mod:`alakazam.calibration.chain` (field selection, time interpolation, delay->jones / broadcast /
pass-through / nearest frequency mapping, antenna remap by name) and composed in the RIME order of
docs/conventions.md: ``J = Diag D P`` (P only with ``apply_parang``).  Diagonal-only chains use the
diagonal kernel; D or P use the full 2x2 inverse -- except a D whose gains were solved without it, which
is applied linearised as CASA's Df (:mod:`alakazam.calibration.dapply`).  Flags per hand (K, G;
:mod:`alakazam.core.handflags`): the diagonal kernel flags a correlation whose hand is flagged on either
side and keeps the others; the full kernel flags all four correlations of an antenna with a flagged
hand (D and linear-feed P mix the hands); circular-feed P, diagonal, is folded into the diagonal kernel
when a hand is flagged.

DATA is never modified.  What happens to data with no valid solution (flagged solution, antenna
missing from the table) is CASA's ``applymode`` (:mod:`alakazam.calibration.applymode`): flagged
(calflag, flagonly: FLAG is first saved to ``<ms>.flagversions/flags.akapply_N`` -- restore with
:func:`restore_flags`), written uncorrected (calonly; never multiplied by NaN), or only counted
(trial: nothing written).  The counts per term and field are logged and returned.
"""

from __future__ import annotations

import logging
import time as _time

import numpy as np

from ..config import ApplyConfig
from ..errors import AlakazamError
from . import applyblocks as _blocks
from . import applymode as _am
from . import chain
from ..core.scanobs import own_scan_keys

log = logging.getLogger("alakazam.apply")


def _native(out4, corr_types, n_corr):
    from ..core.ms_io import CORR_ORDER, canonical_corr

    if n_corr == 4 and canonical_corr(corr_types):
        return out4
    return np.stack([out4[..., CORR_ORDER[c]] for c in corr_types], axis=-1)


def backup_flags(ms):
    """Save FLAG and FLAG_ROW as flag version 'akapply_N' in <ms>.flagversions (listed in
    FLAG_VERSION_LIST; see :mod:`alakazam.core.flagversions`); returns the version name."""
    from ..core import flagversions

    return flagversions.save(ms, task="akapply", comment="akapply: before flagging data without solutions")


def restore_flags(ms, version):
    """Restore FLAG and FLAG_ROW saved by :func:`backup_flags` (e.g. version='akapply_1')."""
    from ..core import flagversions

    flagversions.restore(ms, version, merge="replace")
    from .flagsafety import clear_marker

    clear_marker(ms, version)


def run_apply(cfg: ApplyConfig) -> dict:
    """Correct ``cfg.ms`` into ``cfg.output_col``; returns counts and the log lines.

    The output column must be CORRECTED_DATA or a new column (:mod:`.compat`); the MS's writer lock is
    held throughout (:mod:`alakazam.core.locks`); a new column appears only once fully written
    (:mod:`alakazam.core.columns`)."""
    from ..core import locks, ms_io, outputs

    if isinstance(cfg.ms, (list, tuple)):         # several MSs, one job (alakazam/multims.py)
        from .. import multims
        return multims.run_apply(cfg)
    ms_io.check_ms(cfg.ms)
    outputs.check_ms_writable(cfg.ms, flag_backup=cfg.propagate_flags)
    from ..core.ms import MeasurementSet
    try:
        with locks.writer_lock(cfg.ms, "ms"), MeasurementSet.open(cfg.ms):    # metadata read once
            return _run_apply(cfg)
    except RuntimeError as e:
        if "lock" in str(e).lower():        # casacore: another program has the table open for writing
            raise AlakazamError(f"ms: {cfg.ms} is locked by another program ({str(e).strip()}); close it "
                                "there and re-run") from None
        raise


def _run_apply(cfg: ApplyConfig) -> dict:
    from contextlib import nullcontext

    from ..core import columns, ms_io, signals, weightbackup
    from . import compat
    from .parang_check import (check_full_terms, check_known_correlations, check_parang_correlations,
                               cross_hand_phase_note)
    from .solve_order import check_terms

    t_start = _time.perf_counter()
    columns.recover(cfg.ms)         # undo what an apply killed mid-column left (core/columns.py)
    # ---- validation first: nothing is written on bad input
    meta = ms_io.read_meta(cfg.ms)
    from ..core import rowselect    # antenna/uvrange/timerange/intent/observation: whole rows here
    rowsel = rowselect.build(meta, cfg.select, per_channel=False)
    ms_io.check_columns(cfg.ms, [cfg.data_col])
    ms_io.check_antenna_names(meta)      # solutions are matched to antennas by name
    compat.check_output_column(cfg.output_col, cfg.data_col, cfg.ms, meta.columns)
    from ..core.selcheck import check_no_duplicates     # a term listed twice (also applied twice)
    check_no_duplicates([t.table for t in cfg.terms], [t.key for t in cfg.terms], "jones")
    terms = [chain.load_term(t.table, t.key, t.field_select, t.time_interp, t.solution_field)
             for t in cfg.terms]
    from . import spwmap as _spwmap
    for term, t in zip(terms, cfg.terms):   # interp 'time,freq' and spwmap (core/freqinterp, spwmap.py)
        term.freq_interp = getattr(t, "freq_interp", "")
        term.spwmap = _spwmap.as_dict(getattr(t, "spwmap", []))
    fields = ms_io.resolve_fields(meta, cfg.target_field)
    scans = ms_io.resolve_scans(meta, cfg.target_scans)
    spw_sel = ms_io.resolve_spw(meta, cfg.spw)
    check_known_correlations(meta, spw_sel)                        # feed correlations only
    check_parang_correlations(meta, spw_sel, cfg.apply_parang)     # linear feeds need XY, YX
    check_full_terms(meta, spw_sel, terms)                         # D needs 4 correlations
    check_terms(terms, cfg.ms, meta)            # a D solved before KC/CP must be from an unpolarised field
    note = cross_hand_phase_note(meta, spw_sel, cfg.apply_parang, terms)     # linear feeds, no CP
    if note:
        log.warning("%s", note)
    from .polparang import apply_notes      # KC, CP, D and the parallactic angle (review 58f)
    for note in apply_notes(meta, spw_sel, cfg.apply_parang, terms):
        log.warning("%s", note)
    from .dapply import linearised      # D linearised (CASA's Df) or in full (review 59c)
    why = linearised(terms)[1]
    if why:
        log.info("apply: %s", why)
    names = meta.active_names
    plan = []
    rows_of = {}            # (field, DATA_DESC_ID) -> its row numbers, found once (_apply_field uses them)
    for fid in fields:
        for ddid, chans in spw_sel.items():
            rows_of[(fid, ddid)] = ms_io.row_numbers(cfg.ms, ddid, [fid], scans, rowsel=rowsel)
            n = len(rows_of[(fid, ddid)])
            if n:
                plan.append((fid, ddid, chans, n))
    if not plan:
        raise AlakazamError(f"apply: the selection (field={cfg.target_field}, scans={cfg.target_scans!r}, "
                            f"spw={cfg.spw!r}{''.join(f', {k}={v!r}' for k, v in cfg.select.items())}) "
                            "has no data")
    from ..core.corrselect import parse_correlation
    left = set()
    for _, ddid, _, _ in plan:      # correlation checked before anything is written
        ct = meta.spws[ddid].corr_types
        m = parse_correlation(cfg.correlation, ct)
        if m is not None:
            left.update(c for c, keep in zip(ct, m) if not keep)
    if left:        # said once, before writing: akapply's correlation is not CASA applycal's (it has none),
        # and in akshell a correlation set for akflag carries over to akapply (review, session 46)
        new_col = "" if cfg.output_col in meta.columns else f" (a new column: {cfg.data_col}'s, uncorrected)"
        log.warning("correlation=%r: only those correlations of %s (and of FLAG, where the apply flags) are "
                    "written; %s keep their values%s (correlation='' writes all)", cfg.correlation,
                    cfg.output_col, ", ".join(sorted(left)), new_col)
    for term, t in zip(terms, cfg.terms):   # every SPW to correct must have solutions in every term
        have = {int(s.attrs["spw"]) for s in term.sets}
        for _, ddid, _, _ in plan:
            tspw = _spwmap.table_spw(term, meta.spws[ddid].spw_id)
            if tspw not in have:    # (akapply's parameter check says it first: calibration/apply_precheck)
                via = (f" (spwmap maps SPW {meta.spws[ddid].spw_id} to it)"
                       if tspw != meta.spws[ddid].spw_id else "")
                raise AlakazamError(f"{term.key}: no solutions for SPW {tspw}{via} in {t.table} (it has SPW "
                                    f"{', '.join(map(str, sorted(have)))}); select spw, or give spwmap")
    compat.check_tables(cfg, meta, terms, plan, spwmap=getattr(cfg, "spwmap", None),
                        tables=[t.table for t in cfg.terms])
    _check_some_valid_solution(cfg, meta, terms, plan)
    # a term given beside another than the one it was solved with (a re-solved K / bandpass with the old
    # gains): a warning, said before the data pass and listed in the result (calibration/chainid.py)
    from .chainid import check as _chain_check
    chain_warnings = _chain_check(terms, "alakazam.apply")
    # ---- now write.  A new column is initialised with a copy of the data column only when some rows
    # will not be written here (CASA convention: every row holds an array); when the selection covers
    # every row and channel that copy would be overwritten at once, so it is skipped.
    n_rows_ms = ms_io.n_rows(cfg.ms)
    ms_io.release_handle_table(cfg.ms)  # no read-only table of ours beside the writes (core/ms.py)
    covers_all = (sum(p[3] for p in plan) == n_rows_ms and not cfg.correlation and
                  all(len(c) == len(meta.spws[d].freqs) for _, d, c, _ in plan))
    mode = _am.resolve(getattr(cfg, "applymode", ""), cfg.propagate_flags)
    if mode not in _am.APPLY_MODES:
        raise AlakazamError(f"applymode: {mode!r} is not allowed; expected one of "
                            f"{', '.join(_am.APPLY_MODES)}")
    # the disk space the writes need, before any (core/diskspace.py): a new column, a flag version
    from ..core import diskspace
    need = diskspace.column_bytes(cfg.ms, cfg.data_col) if (
        _am.writes_data(mode) and cfg.output_col not in meta.columns) else 0
    need += diskspace.flag_bytes(cfg.ms) if _am.writes_flags(mode) else 0
    # calwt: WEIGHT (WEIGHT_SPECTRUM) of the rows to write saved before the first write, put back if
    # the run stops, removed once it completes (core/weightbackup.py)
    wrows = None
    if _am.writes_data(mode) and any(getattr(a, "calwt", False) and t.diagonal
                                     for t, a in zip(terms, cfg.terms)):
        wrows = np.concatenate([rows_of[(fid, ddid)] for fid, ddid, _, _ in plan])
    need += weightbackup.bytes_needed(cfg.ms, wrows) if wrows is not None else 0
    diskspace.require(cfg.ms, need, f"{cfg.output_col}" + (" and a flag version" if _am.writes_flags(mode)
                                                           else "") + f" of {cfg.ms}")
    # a new column is written under a temporary name and renamed once complete (core/columns.py)
    try:
        columns.begin_writes(cfg.ms)    # what the next apply needs to undo a kill -9 from here on
    except BaseException as e:
        full = diskspace.translate(e, cfg.ms, f"the apply's recovery snapshot in {cfg.ms} (nothing else "
                                   "was written)")
        if full is not None:
            raise full from e
        raise
    write_col, created = None, False
    from ..core.ms import writes_begun
    try:
        if _am.writes_data(mode):       # flagonly / trial write no data column
            write_col, created = columns.prepare(cfg.ms, cfg.output_col, cfg.data_col, init=not covers_all)
            begun = writes_begun(cfg.ms, write_col)
        with (weightbackup.weight_writes(cfg.ms, wrows) if wrows is not None else nullcontext()):
            res = _apply_plan(cfg, meta, terms, plan, scans, names, created, t_start, write_col, rowsel,
                              rows_of=rows_of)
        with signals.held():            # the column and its weights complete together
            if write_col is not None:
                columns.commit(cfg.ms, write_col, cfg.output_col)
            if wrows is not None:
                weightbackup.finish(cfg.ms)
        columns.take_made(cfg.ms)
        columns.end_writes(cfg.ms)
        res["chain_warnings"] = chain_warnings
        return res
    except BaseException as e:
        made = columns.take_made(cfg.ms)    # also when the interrupt came before prepare returned
        if created or made:             # only the partial column this run created (MS lock held)
            columns.drop(cfg.ms, write_col if created else made)
        elif write_col is not None and writes_begun(cfg.ms, write_col) != begun:
            from .flagsafety import partial_column_message     # an existing column, rewritten in place:
            partial_column_message(cfg.ms, write_col, e)        # say it is half done
        elif write_col is not None:     # (before: said "the rows written so far hold the new correction")
            log.info("apply stopped (%s) before writing %s of %s: the column is unchanged",
                     type(e).__name__, write_col, cfg.ms)
        if wrows is not None:           # WEIGHT as before the run, said (core/weightbackup.py)
            weightbackup.put_back(cfg.ms, e)
        columns.end_writes(cfg.ms)
        full = diskspace.translate(e, cfg.ms, f"{cfg.output_col} of {cfg.ms}")
        if full is not None:            # a full disk said as such, after the undo above
            raise full from e
        raise


def _apply_plan(cfg, meta, terms, plan, scans, names, created, t_start, write_col=None, rowsel=None,
                rows_of=None):
    from .. import progress
    from ..core import memory
    from . import flagsafety

    write_col = write_col or cfg.output_col
    mode = _am.resolve(getattr(cfg, "applymode", ""), cfg.propagate_flags)
    # an interrupted run of this same apply is finished by this one (flagsafety.finish_job): said as such
    job = flagsafety.apply_job(cfg, terms) if _am.writes_flags(mode) else ""
    same = [m[0] for m in flagsafety.interrupted(cfg.ms) if job and m[1] is None
            and flagsafety.marker_job(cfg.ms, m[0]) == job]
    for v in same:
        log.info("re-running the apply that was interrupted after saving flag version %s: this run redoes "
                 "its FLAG writes", v)
    flagsafety.warn_interrupted(cfg.ms, skip=lambda m: m[0] in same)
    limit = memory.memory_limit_bytes(cfg.memory_limit_gb)
    lines = []
    counts = {"rows": 0, "samples": 0, "unflagged": 0, "no_solution": 0, "flagged_by_solution": 0,
              "flagged_bad_data": 0}
    per_term = {}           # (term key, field name) -> samples whose solution in that term is flagged
    from .. import distributed
    save = (lambda: backup_flags(cfg.ms)) if _am.writes_flags(mode) else (lambda: None)
    with flagsafety.saved_then_marked(cfg.ms, save, job=job) as backup:
        if backup:
            log.info("FLAG saved as flag version %s; restore with: %s", backup,
                     flagsafety.restore_command(cfg.ms, backup))
        if distributed.wanted(getattr(cfg, "workers", 0), getattr(cfg, "scheduler", "")):
            from ..core import readbuffers
            readbuffers.release()       # the workers read: no spare memory held here (core/readbuffers.py)
            from .. import distributed_apply     # workers correct, this process writes (one writer)
            plan = distributed_apply.apply_plan(cfg, meta, terms, plan, scans, names, limit, lines, counts,
                                                write_col, rowsel, mode, per_term)
        from ..core import readbuffers
        by_field = {}       # field name -> [samples left uncorrected (calonly), unflagged samples]
        with readbuffers.shared():          # every field's chunks read into the same memory
            for fid, ddid, chans, n_rows in plan:
                fld = meta.fields[fid]
                spw = meta.spws[ddid]
                label = f"apply {fld.name} spw {spw.spw_id}: rows"
                before = (counts["no_solution"], counts["unflagged"])
                with progress.bar(label, n_rows, quiet=cfg.quiet) as pbar:
                    _apply_field(cfg, meta, terms, scans, names, fid, ddid, chans, limit, lines, counts, pbar,
                                 write_col, rowsel, mode, per_term, rows=(rows_of or {}).get((fid, ddid)))
                tally = by_field.setdefault(fld.name, [0, 0])
                tally[0] += counts["no_solution"] - before[0]
                tally[1] += counts["unflagged"] - before[1]
    verb = {"calflag": "flagged", "calflagstrict": "flagged", "flagonly": "flagged",
            "flagonlystrict": "flagged", "calonly": "left uncorrected",
            "trial": "would be flagged (trial: nothing written)"}[mode]
    for (key, fname), n in per_term.items():
        if n:
            log.info("applymode %s: %s %s: %d samples have a flagged solution and %s", mode, key, fname,
                     n, verb if mode == "trial" else "are " + verb)
    if counts["flagged_bad_data"]:
        log.warning("%d samples whose DATA is NaN or infinite, or 0 in every correlation (unflagged in "
                    "FLAG), %s",
                    counts["flagged_bad_data"],
                    "would be flagged (trial)" if mode == "trial" else "were flagged")
    if counts["no_solution"] and mode == "calonly":
        _warn_uncorrected(cfg, counts, by_field)
    _check_something_corrected(cfg, mode, counts, backup)
    return {"output_col": cfg.output_col if _am.writes_data(mode) else None, "created_column": created,
            "flag_backup": backup, "applymode": mode,
            "flagged_by_term": {f"{k}/{f}": n for (k, f), n in per_term.items()},
            "log": lines, "seconds": _time.perf_counter() - t_start, **counts}


def _warn_uncorrected(cfg, counts, by_field):
    """applymode calonly (akapply's default): the samples without a valid solution went into the output
    column uncorrected and unflagged -- raw data among calibrated data, which an image or an average of
    the column mixes in (a review, 58b: 22% of the samples after the bandpass flagged RFI channels, every
    field's Stokes I 22% low, and one warning line said only the count).  Said with the fraction, per
    field, and what to do; ``by_field`` (field name -> [uncorrected, unflagged]) is empty when the apply
    ran on workers (the total only)."""
    n, tot = counts["no_solution"], max(counts["unflagged"], 1)
    parts = ", ".join(f"{name} {100.0 * a / max(b, 1):.1f}%" for name, (a, b) in by_field.items() if a)
    log.warning("applymode calonly (akapply's default): %d of the %d unflagged samples (%.1f%%%s) have "
                "no valid solution and were written UNCORRECTED and unflagged to %s -- raw data among "
                "calibrated data, which imaging or averaging that column mixes in. To flag them instead, as "
                "CASA's applycal does by default, run again with applymode='calflag' (YAML: "
                "propagate_flags: true; FLAG is saved as a flag version first)", n, counts["unflagged"],
                100.0 * n / tot, f": {parts}" if parts else "", cfg.output_col)


def _check_some_valid_solution(cfg, meta, terms, plan):
    """An apply none of whose (field, SPW) parts can be corrected -- in each, some term's every
    solution that could serve it is flagged -- is an error before anything is written (what
    :func:`_check_something_corrected` finds after the writes otherwise).  The solutions that could
    serve a field are chain.choose_fields' candidates: the pinned fields' (``solution_field``), else
    the field's own when the term has some in that SPW, else every field's.  Checked only for the modes
    that correct (calonly, calflag, calflagstrict), which would fail anyway."""
    mode = _am.resolve(getattr(cfg, "applymode", ""), cfg.propagate_flags)
    if mode not in ("calonly", "calflag", "calflagstrict"):
        return
    from . import spwmap as _spwmap

    dead = []
    for fid, ddid, _, _ in plan:
        fname, spw_id = meta.fields[fid].name, meta.spws[ddid].spw_id
        why = None
        for term, t in zip(terms, cfg.terms):
            tspw = _spwmap.table_spw(term, spw_id)
            sets = [x for x in term.sets if int(x.attrs["spw"]) == tspw]
            if term.field_select == "pinned":
                sets = [x for x in sets if x.field_name in (term.solution_field or [])]
            elif any(x.field_name == fname for x in sets):
                sets = [x for x in sets if x.field_name == fname]
            if sets and all(bool(np.all(x.hand_flags())) for x in sets):
                why = (f"{fname} SPW {spw_id}: every solution of {term.key} in {t.table} that could "
                       f"serve it ({', '.join(sorted({x.field_name for x in sets}))}, SPW {tspw}) is flagged")
                break
        if why is None:
            return
        dead.append(why)
    raise AlakazamError("jones: no sample can be corrected (" + "; ".join(dead) + "); nothing was written "
                        "(re-solve, select other fields, or leave the term out)")


def _check_something_corrected(cfg, mode, counts, backup):
    """An apply that corrected no sample -- every unflagged sample of the selection had a flagged
    solution -- is an error, not exit 0 (the guide: a step with no usable solution).  Raised after
    the writes, saying what they left: calonly wrote the data uncorrected; calflag flagged them (FLAG
    restorable from the backup saved first)."""
    if mode not in ("calonly", "calflag", "calflagstrict") or not counts["unflagged"]:
        return
    if counts["unflagged"] > (counts["no_solution"] + counts["flagged_by_solution"]
                              + counts["flagged_bad_data"]):
        return
    from . import flagsafety

    left = (f"{cfg.output_col} holds them uncorrected" if mode == "calonly" else
            f"they are flagged in FLAG (restore with: {flagsafety.restore_command(cfg.ms, backup)})"
            if backup else "they are flagged")
    raise AlakazamError(f"no sample was corrected: every one of the {counts['unflagged']} unflagged samples "
                        f"of the selection has a flagged (or missing) solution in the applied terms; {left}. "
                        "Check the terms' flags (akinfo / akplot), gainfield and interp")


def _with_spw(line, spw_id):
    """A chain.describe line with the SPW: ``K0: loaded [3C286(3t)] (7 ants, spw 1)`` and
    ``K0: 3C286 -> DA240 spw 1 (nearest_time, ...)``."""
    if " -> " in line and " (" in line:
        head, rest = line.split(" (", 1)
        return f"{head} spw {spw_id} ({rest}"
    if line.endswith(")"):
        return f"{line[:-1]}, spw {spw_id})"
    return f"{line} (spw {spw_id})"


def _max_rows(limit, spw, n_terms):
    """Rows of one apply chunk within ``limit`` bytes."""
    from ..core import memory

    bpr = memory.bytes_per_row(len(spw.freqs), spw.n_corr) + 16 * n_terms * len(spw.freqs)
    return max(1, int(limit // max(bpr, 1)))


def _keep_unselected_channels(ms, column, rownr, values, chans):
    """``values`` (row, chan, corr; native order) with the channels outside ``chans`` replaced by the
    output column's current contents in rows ``rownr``, as CASA's applycal leaves them: a channel
    selection (``spw='0:0~3'``) corrects those channels and changes no other channel of an existing
    column (a new column holds DATA there, from its creation).  A column not in the MS yet: unchanged."""
    from ..core.ms_io import _table

    with _table(str(ms)) as t:
        if column not in t.colnames():
            return values
        q = t.selectrows(np.asarray(rownr))
        old = q.getcol(column)
        q.close()
    keep = np.ones(values.shape[1], bool)
    keep[np.asarray(chans)] = False
    out = np.array(values, copy=True)
    out[:, keep] = old[:, keep]
    return out


def _write(cfg, col, rownr, values, cmask):
    """The output of one chunk into ``col`` (the unselected correlations keep the column's contents)."""
    from ..core import corrselect, ms_io

    ms_io.write_column(cfg.ms, col, rownr, corrselect.keep_unselected(cfg.ms, col, rownr, values, cmask))


def _apply_field(cfg, meta, terms, scans, names, fid, ddid, chans, limit, lines, counts, pbar,
                 write_col=None, rowsel=None, mode="calonly", per_term=None, write=None, part=None,
                 rows=None):
    """Correct the rows of one field and SPW, chunk by chunk: all chunks, or with ``part`` = k only the
    k-th (a distributed unit); each chunk's output goes to ``write(cfg, column, rownr, values, cmask)``
    (default :func:`_write`; a dask worker hands it back to the writing client instead)."""
    from ..core import corrselect, ms_io
    from ..jones import algebra

    fld = meta.fields[fid]
    spw = meta.spws[ddid]
    freqs_all = spw.freqs
    freqs = freqs_all[chans]
    from . import calwt as _calwt, spwmap as _spwmap
    terms = _spwmap.for_spw(terms, spw.spw_id, freqs_all)      # spwmap: the mapped SPW's solutions
    from .dapply import linearised
    lin_d = linearised(terms)[0]        # D inverted as CASA's Df (calibration/dapply.py)
    wterms = [t for t, a in zip(terms, cfg.terms) if getattr(a, "calwt", False) and t.diagonal]
    if rows is None:        # (the caller's, found for its plan: the same selection)
        rows = ms_io.row_numbers(cfg.ms, ddid, [fid], scans, rowsel=rowsel)
    with_times = ms_io.read_times(cfg.ms, rows)
    utimes_all = np.unique(with_times)
    for term in terms:      # SEED's two lines per term and field, once per SPW (named in the line)
        lines.extend(_with_spw(ln, spw.spw_id) for ln in chain.describe(
            term, spw.spw_id, utimes_all, freqs, names, fld.name, (fld.ra, fld.dec), len(names)))
    for ln in lines[-2 * len(terms):]:
        log.info(ln)
    from .bandcover import warnings as _outside      # bandpass channels outside the solved band
    from .timecover import warnings as _held         # data long after (before) the last (first) solution
    # (said once per field and SPW: by its first row chunk where a distributed apply runs several)
    held = _held(terms, spw.spw_id, utimes_all, fld.name, (fld.ra, fld.dec)) if not part else []
    from ..core.freqinterp import casa_default_notes        # a binned term without a freq part
    from .interpnotes import casa_time_default_notes        # interp not given: nearest, CASA's linear
    given = [getattr(a, "time_interp_given", True) for a in cfg.terms]
    for w in (_outside(terms, spw.spw_id, freqs, chans) + held + casa_default_notes(terms, spw.spw_id, freqs)
              + casa_time_default_notes(terms, given, spw.spw_id, utimes_all, fld.name, (fld.ra, fld.dec))):
        if w not in lines:
            lines.append(w)
            log.warning(w)
    from ..core.freqinterp import flagged_channel_notes       # (a difference from CASA to know: INFO)
    for w in flagged_channel_notes(terms, spw.spw_id, freqs, fld.name):
        if w not in lines:
            lines.append(w)
            log.info(w)
    max_rows = _max_rows(limit, spw, len(terms))
    write = write or _write
    if part is None:
        # the rows found above; each chunk read into the previous chunk's memory (core/readbuffers.py)
        chunks = ms_io.iter_chunks(cfg.ms, ddid, [fid], scans=scans, data_col=cfg.data_col, model_col=None,
                                   max_rows=max_rows, meta=meta, rowsel=rowsel, rows=rows, reuse=True,
                                   weights=False)
    else:                   # the part-th chunk of iter_chunks's
        chunks = [ms_io.read_rows(cfg.ms, ddid, [fid], data_col=cfg.data_col, model_col=None, meta=meta,
                                  rows=rows[part * max_rows:(part + 1) * max_rows], rowsel=rowsel,
                                  weights=False)]
    from .. import warmup           # the background compile busy with the apply's kernels: wait for them
    warmup.wait_for("apply")        # rather than compile them again here (cold start, issue 16)
    cmask = corrselect.parse_correlation(cfg.correlation, spw.corr_types)   # None = all (core/corrselect)
    # the correlations written (stored and selected), in the 4-correlation order
    from ..core.ms_io import CORR_ORDER
    use4 = np.zeros(4, np.bool_)
    for i, c in enumerate(spw.corr_types):
        use4[CORR_ORDER[c]] = True if cmask is None else bool(cmask[i])
    all4 = bool(use4.all())
    for ch in chunks:
        data, _, flag, _ = ch.four_corr(spw.corr_types)
        utimes, tidx = np.unique(ch.time, return_inverse=True)
        tscan = np.zeros(len(utimes), np.int64)
        tscan[tidx] = ch.scan               # flagged solutions are not bridged across scans
        tscan = own_scan_keys(meta, tscan)  # (a number recurring in several observations: none)
        all_chans = len(chans) == data.shape[1] and bool(np.all(chans == np.arange(data.shape[1])))
        sub = data if all_chans else data[:, chans]
        # corrected in double precision by the kernels, rounded once to the stored type on assignment
        bad = np.zeros(sub.shape, bool)
        a1 = ch.ant1.astype(np.int64)
        a2 = ch.ant2.astype(np.int64)
        tix = tidx.astype(np.int64)
        kept = False            # samples without a valid solution already hold the uncorrected data
        nsol = None
        propagate = _am.writes_flags(mode)
        out = None
        # P (n_t, n_ant, 2, 2), composed with the other terms per channel by the kernels below: of the
        # whole chunk (small), sliced per block (the parallactic angle's measures anchors depend on the
        # span of the times asked, jones/parang.py: a block's own P would differ in the last bits)
        par_all = chain.parang_table(meta, fld, utimes, spw) if cfg.apply_parang else None
        # the chain's (time, antenna, channel) tables a block of times at a time (applyblocks.py): each
        # term is evaluated once per block; its flags serve the counts below
        for r0, r1, t0, t1 in _blocks.time_blocks(tix):
            bt = slice(t0, t1)
            btix = tix[r0:r1] - t0 if t0 else tix[r0:r1]
            bad_by_key = {}
            diag, sky = chain.compose(terms, spw.spw_id, utimes[bt], freqs, names, fld.name,
                                      (fld.ra, fld.dec), time_scan=tscan[bt], bad_out=bad_by_key,
                                      sky_chan_one=True)
            if per_term is not None:
                for k, n in _am.term_flag_counts(terms, spw.spw_id, utimes[bt], freqs, names, fld, btix,
                                                 a1[r0:r1], a2[r0:r1], flag[r0:r1], chans, tscan[bt],
                                                 bad_by_key).items():
                    per_term[(k, fld.name)] = per_term.get((k, fld.name), 0) + n
            par = None if par_all is None else par_all[bt]
            if sky is None and par is not None:     # circular P with a flagged hand: per correlation
                from ..core.handflags import fold_diagonal_parang
                diag, par = fold_diagonal_parang(diag, par)
            if sky is None and par is None and diag is not None:
                # a product with the precomputed inverse instead of a division per sample (same flags);
                # in place in the chunk just read (it is not used afterwards): no second chunk-sized array
                if out is None:
                    out = sub if all_chans and sub.flags.writeable else np.empty(sub.shape, data.dtype)
                kept = not propagate
                nsol = (nsol or 0) + int(algebra.correct_diag_inv(
                    sub[r0:r1], algebra.diag_inverse_table(diag), btix, a1[r0:r1], a2[r0:r1], out[r0:r1],
                    bad[r0:r1], not kept))     # = bad.sum() (bad starts False)
            elif sky is not None and lin_d:
                # D linearised (calibration/dapply.py): the diagonal terms inverted, the leakages' first
                # order taken off the cross hands, then P^-1 -- in place as the full path
                if out is None:
                    out = sub if all_chans and sub.flags.writeable else np.empty(sub.shape, data.dtype)
                kept = not propagate
                dinv = (algebra.diag_inverse_table(diag) if diag is not None
                        else np.ones((t1 - t0, len(names), len(freqs), 2), np.complex128))
                leak = np.stack([sky[..., 0, 1], sky[..., 1, 0]], axis=-1)
                pinv = None if par is None else np.conj(np.swapaxes(par, -1, -2))     # P unitary
                nsol = (nsol or 0) + int(algebra.correct_lin_d(
                    sub[r0:r1], dinv, leak, pinv, btix, a1[r0:r1], a2[r0:r1], out[r0:r1], bad[r0:r1],
                    not kept))
                del dinv, leak, pinv
            elif sky is not None or par is not None:
                # J = diag D P composed and inverted once per (time, antenna, channel), not per visibility;
                # in place in the chunk just read (as the diagonal path: samples without a valid
                # solution keep the uncorrected data unless they are flagged)
                if out is None:
                    out = sub if all_chans and sub.flags.writeable else np.empty(sub.shape, data.dtype)
                kept = not propagate
                inv, ok = algebra.compose_inverse_table(t1 - t0, len(names), len(freqs), diag, sky, par)
                del diag, sky
                nsol = (nsol or 0) + int(algebra.correct_full_inv(
                    sub[r0:r1], inv, ok, btix, a1[r0:r1], a2[r0:r1], out[r0:r1], bad[r0:r1], not kept))
                del inv, ok
            else:
                if out is None:
                    out = np.empty(sub.shape, data.dtype)
                out[r0:r1] = sub[r0:r1]
            bad_by_key = diag = sky = par = None
        counts["rows"] += ch.n_row
        counts["samples"] += int(sub.size)
        # FLAG of the selected channels (a copy once, with a channel selection); the unflagged samples
        # counted in the correlations written, as the flagged-solution counts below are (with
        # correlation='XX,YY' the four hands' count hid an apply that corrected nothing)
        fsel = flag if all_chans else np.ascontiguousarray(flag[:, chans])
        counts["unflagged"] += (int(sub.size) - int(np.count_nonzero(fsel)) if all4 else
                                int(np.count_nonzero(~fsel[..., use4])))
        if nsol is None:
            nsol = int(bad.sum())
        n_new = None            # samples flagged here that FLAG did not hold
        if propagate or mode == "trial":
            # with the samples whose DATA is NaN / Inf (their corrected value too): no solution corrects
            # them, and unflagged they went into CORRECTED_DATA as NaN (a review); and those of a (row,
            # channel) whose DATA is 0 in every correlation (a dropout: the solve's bad values too)
            # (in the chunk's FLAG just read, or the selected channels' copy: not used afterwards)
            n_new, n_nf = algebra.merge_flags_nonfinite(fsel, bad if nsol else None, out, use4)
            if all_chans:
                newflag = flag
            else:
                newflag = flag.copy()
                newflag[:, chans] = fsel
            counts["flagged_by_solution"] += int(n_new)
            counts["flagged_bad_data"] += int(n_nf)
        else:
            # counted where the data are not flagged already (e.g. a dead antenna's flagged scan)
            # (in the correlations written, as "unflagged")
            if nsol:
                nos = bad & ~fsel
                counts["no_solution"] += int(np.count_nonzero(nos if all4 else nos[..., use4]))
                del nos
            if nsol and not kept:
                out[bad] = sub[bad]      # uncorrected, never NaN
        if all_chans:
            full = out
        else:
            full = data.copy()
            full[:, chans] = out
        if _am.writes_data(mode):
            col = write_col or cfg.output_col
            vals = _native(full, spw.corr_types, spw.n_corr).astype(ch.data.dtype, copy=False)
            if not all_chans:
                vals = _keep_unselected_channels(cfg.ms, col, ch.rownr, vals, chans)
            write(cfg, col, ch.rownr, vals, cmask)
        if propagate:
            write(cfg, "FLAG", ch.rownr, _native(newflag, spw.corr_types, spw.n_corr), cmask)
        if wterms and _am.writes_data(mode):         # calwt (calibration/calwt.py)
            wdiag, _ = chain.compose(wterms, spw.spw_id, utimes, freqs, names, fld.name, (fld.ra, fld.dec),
                                     time_scan=tscan)
            fac = _calwt.factors(wdiag, tix, a1, a2, spw.corr_types)
            fac = np.broadcast_to(fac, (fac.shape[0], len(chans), fac.shape[2]))
            _calwt.write(cfg.ms, ch.rownr, fac, chans, len(freqs_all), propagate, cmask,
                         put=lambda col, rows, values: write(cfg, col, rows, values, None))
        pbar.advance(ch.n_row)
        # nothing of this chunk outlives it: the next read does not add to it (issue 16 peak memory)
        ch = data = flag = fsel = sub = out = full = bad = newflag = par_all = vals = None

