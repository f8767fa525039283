"""Apply solved terms to a Measurement Set: CORRECTED = J_p^-1 V J_q^-H.

For every target field, SPW and memory-bounded row chunk the chain is evaluated on the chunk's grid by
:mod:`alakazam.calibration.chain` (field selection, time interpolation, delay->jones / broadcast /
pass-through / nearest frequency mapping, antenna remap by name) and composed in the RIME order of
docs/conventions.md: ``J = Diag D P`` (P only with ``apply_parang``).  Diagonal-only chains use the
diagonal kernel; D or P use the full 2x2 inverse.

DATA is never modified.  What happens to data with no valid solution (flagged solution, antenna
missing from the table) is CASA's ``applymode`` (:mod:`alakazam.calibration.applymode`): flagged
(calflag, flagonly: FLAG is first saved to ``<ms>.flagversions/flags.akapply_N.npz`` -- restore with
:func:`restore_flags`), written uncorrected (calonly; never multiplied by NaN), or only counted
(trial: nothing written).  The counts per term and field are logged and returned.
"""

from __future__ import annotations

import logging
import os
import time as _time

import numpy as np

from ..config import ApplyConfig
from ..errors import AlakazamError
from . import applymode as _am
from . import chain

log = logging.getLogger("alakazam.apply")


def _native(out4, corr_types, n_corr):
    if n_corr == 4:
        return out4
    order = {"XX": 0, "XY": 1, "YX": 2, "YY": 3, "RR": 0, "RL": 1, "LR": 2, "LL": 3}
    return np.stack([out4[..., order[c]] for c in corr_types], axis=-1)


def backup_flags(ms):
    """Save FLAG and FLAG_ROW to <ms>.flagversions/flags.akapply_N.npz (per DATA_DESC_ID, with row
    numbers) and list it in FLAG_VERSION_LIST; returns the version name (e.g. 'akapply_1')."""
    from casacore.tables import table, taql

    d = str(ms).rstrip("/") + ".flagversions"
    os.makedirs(d, exist_ok=True)
    n = 1
    while os.path.exists(os.path.join(d, f"flags.akapply_{n}.npz")):
        n += 1
    name = f"akapply_{n}"
    arrays = {}
    with table(str(ms), ack=False) as t:
        arrays["flag_row"] = t.getcol("FLAG_ROW")
        for dd in np.unique(t.getcol("DATA_DESC_ID")):
            q = taql(f"SELECT FLAG, ROWID() AS R FROM $t WHERE DATA_DESC_ID=={int(dd)}")
            arrays[f"rows_{dd}"] = q.getcol("R")
            arrays[f"flag_{dd}"] = q.getcol("FLAG")
            q.close()
    path = os.path.join(d, f"flags.{name}.npz")
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    with open(os.path.join(d, "FLAG_VERSION_LIST"), "a") as fh:
        fh.write(f"{name} : akapply {_time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    return name


def restore_flags(ms, version):
    """Restore FLAG and FLAG_ROW saved by :func:`backup_flags` (e.g. version='akapply_1')."""
    from casacore.tables import table

    path = str(ms).rstrip("/") + f".flagversions/flags.{version}.npz"
    if not os.path.exists(path):
        raise AlakazamError(f"flag version {version!r} not found ({path})")
    z = np.load(path)
    with table(str(ms), readonly=False, ack=False) as t:
        t.putcol("FLAG_ROW", z["flag_row"])
        for k in z.files:
            if k.startswith("rows_"):
                dd = k[len("rows_"):]
                q = t.selectrows(z[k])
                q.putcol("FLAG", z[f"flag_{dd}"])
                q.close()


def run_apply(cfg: ApplyConfig) -> dict:
    """Correct ``cfg.ms`` into ``cfg.output_col``; returns counts and the log lines."""
    from ..core import ms_io

    t_start = _time.perf_counter()
    # ---- validation first: nothing is written on bad input
    meta = ms_io.read_meta(cfg.ms)
    ms_io.check_columns(cfg.ms, [cfg.data_col])
    if cfg.output_col == cfg.data_col or cfg.output_col == "DATA":
        raise AlakazamError(f"output_col: {cfg.output_col!r} would overwrite the input data; use e.g. "
                            "CORRECTED_DATA")
    terms = [chain.load_term(t.table, t.key, t.field_select, t.time_interp, t.solution_field)
             for t in cfg.terms]
    fields = ms_io.resolve_fields(meta, cfg.target_field)
    scans = ms_io.resolve_scans(meta, cfg.target_scans)
    spw_sel = ms_io.resolve_spw(meta, cfg.spw)
    names = meta.active_names
    plan = []
    for fid in fields:
        for ddid, chans in spw_sel.items():
            n = ms_io.row_count(cfg.ms, ddid, [fid], scans)
            if n:
                plan.append((fid, ddid, chans, n))
    if not plan:
        raise AlakazamError(f"apply: the selection (field={cfg.target_field}, scans={cfg.target_scans!r}, "
                            f"spw={cfg.spw!r}) has no data")
    for term in terms:       # every SPW to correct must have solutions in every term
        have = {int(s.attrs["spw"]) for s in term.sets}
        for _, ddid, _, _ in plan:
            if meta.spws[ddid].spw_id not in have:
                raise AlakazamError(f"{term.key}: no solutions for SPW {meta.spws[ddid].spw_id} in "
                                    f"{term.sets[0].attrs.get('ms', 'the table')}; select spw={sorted(have)}")
    # ---- now write.  A new column is initialised with a copy of the data column only when some rows
    # will not be written here (CASA convention: every row holds an array); when the selection covers
    # every row and channel that copy would be overwritten at once, so it is skipped.
    with ms_io._table(cfg.ms) as t:
        n_rows_ms = t.nrows()
    covers_all = (sum(p[3] for p in plan) == n_rows_ms and
                  all(len(c) == len(meta.spws[d].freqs) for _, d, c, _ in plan))
    mode = _am.resolve(getattr(cfg, "applymode", ""), cfg.propagate_flags)
    if mode not in _am.APPLY_MODES:
        raise AlakazamError(f"applymode: {mode!r} is not allowed; expected one of "
                            f"{', '.join(_am.APPLY_MODES)}")
    created = (ms_io.ensure_column(cfg.ms, cfg.output_col, like=cfg.data_col, init=not covers_all)
               if _am.writes_data(mode) else False)
    try:
        return _apply_plan(cfg, meta, terms, plan, scans, names, created, t_start)
    except BaseException:
        if created and covers_all:      # never leave a column with rows that hold no array
            with ms_io._table(cfg.ms, readonly=False) as t:
                t.removecols([cfg.output_col])
        raise


def _apply_plan(cfg, meta, terms, plan, scans, names, created, t_start):
    from .. import progress
    from ..core import memory

    mode = _am.resolve(getattr(cfg, "applymode", ""), cfg.propagate_flags)
    backup = backup_flags(cfg.ms) if _am.writes_flags(mode) else None
    if backup:
        log.info("FLAG saved as flag version %s; restore with: python -c \"from alakazam.calibration.apply "
                 "import restore_flags; restore_flags('%s', '%s')\"", backup, cfg.ms, backup)
    limit = memory.memory_limit_bytes(cfg.memory_limit_gb)
    lines = []
    counts = {"rows": 0, "samples": 0, "no_solution": 0, "flagged_by_solution": 0}
    per_term = {}           # (term key, field name) -> samples whose solution in that term is flagged
    for fid, ddid, chans, n_rows in plan:
        fld = meta.fields[fid]
        spw = meta.spws[ddid]
        with progress.bar(f"apply {fld.name} spw {spw.spw_id}: rows", n_rows, quiet=cfg.quiet) as pbar:
            _apply_field(cfg, meta, terms, scans, names, fid, ddid, chans, limit, lines, counts, pbar,
                         mode, per_term)
    verb = {"calflag": "flagged", "calflagstrict": "flagged", "flagonly": "flagged",
            "flagonlystrict": "flagged", "calonly": "left uncorrected",
            "trial": "would be flagged (trial: nothing written)"}[mode]
    for (key, fname), n in per_term.items():
        if n:
            log.info("applymode %s: %s %s: %d samples have a flagged solution and are %s", mode, key, fname,
                     n, verb)
    if counts["no_solution"] and mode == "calonly":
        log.warning("%d samples had no valid solution and were written uncorrected (applymode calflag / "
                    "propagate_flags flags them instead)", counts["no_solution"])
    return {"output_col": cfg.output_col if _am.writes_data(mode) else None, "created_column": created,
            "flag_backup": backup, "applymode": mode,
            "flagged_by_term": {f"{k}/{f}": n for (k, f), n in per_term.items()},
            "log": lines, "seconds": _time.perf_counter() - t_start, **counts}


def _apply_field(cfg, meta, terms, scans, names, fid, ddid, chans, limit, lines, counts, pbar,
                 mode="calonly", per_term=None):
    """Correct the rows of one field and SPW, chunk by chunk."""
    from ..core import memory, ms_io
    from ..jones import algebra

    fld = meta.fields[fid]
    spw = meta.spws[ddid]
    freqs_all = spw.freqs
    freqs = freqs_all[chans]
    rows = ms_io.row_numbers(cfg.ms, ddid, [fid], scans)
    with_times = ms_io.read_times(cfg.ms, rows)
    utimes_all = np.unique(with_times)
    for term in terms:
        lines.extend(chain.describe(term, spw.spw_id, utimes_all, freqs, names, fld.name,
                                    (fld.ra, fld.dec), len(names)))
    for ln in lines[-2 * len(terms):]:
        log.info(ln)
    bpr = memory.bytes_per_row(len(freqs_all), spw.n_corr) + 16 * len(terms) * len(freqs_all)
    max_rows = max(1, int(limit // max(bpr, 1)))
    for ch in ms_io.iter_chunks(cfg.ms, ddid, [fid], scans=scans, data_col=cfg.data_col, model_col=None,
                                max_rows=max_rows, meta=meta):
        data, _, flag, _ = ch.four_corr(spw.corr_types)
        utimes, tidx = np.unique(ch.time, return_inverse=True)
        tscan = np.zeros(len(utimes), np.int64)
        tscan[tidx] = ch.scan               # flagged solutions are not bridged across scans
        diag, sky = chain.compose(terms, spw.spw_id, utimes, freqs, names, fld.name, (fld.ra, fld.dec),
                                  time_scan=tscan)
        if per_term is not None:
            for k, n in _am.term_flag_counts(terms, spw.spw_id, utimes, freqs, names, fld,
                                             tidx.astype(np.int64), ch.ant1.astype(np.int64),
                                             ch.ant2.astype(np.int64), flag, chans, tscan).items():
                per_term[(k, fld.name)] = per_term.get((k, fld.name), 0) + n
        if cfg.apply_parang:
            p = chain.parang_table(meta, fld, utimes, spw.feed_basis)
            p = np.broadcast_to(p[:, :, None], (len(utimes), len(names), len(freqs), 2, 2))
            sky = p if sky is None else np.einsum("...ij,...jk->...ik", sky, p)
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
        if sky is None and diag is not None:
            # a product with the precomputed inverse instead of a division per sample (same flags);
            # in place in the chunk just read (it is not used afterwards): no second chunk-sized array
            out = sub if all_chans and sub.flags.writeable else np.empty(sub.shape, data.dtype)
            kept = not propagate
            nsol = int(algebra.correct_diag_inv(sub, algebra.diag_inverse_table(diag), tix, a1, a2, out,
                                                bad, not kept))     # = bad.sum() (bad starts False)
        elif sky is not None:
            out = np.empty(sub.shape, data.dtype)
            J = sky if diag is None else diag[..., :, None] * sky
            algebra.correct_full(sub, np.ascontiguousarray(J), tix, a1, a2, out, bad)
        else:
            out = sub.copy()
        counts["rows"] += ch.n_row
        counts["samples"] += int(sub.size)
        if nsol is None:
            nsol = int(bad.sum())
        if propagate or mode == "trial":
            counts["flagged_by_solution"] += int((bad & ~flag[:, chans]).sum())
            newflag = flag.copy()
            newflag[:, chans] |= bad
        else:
            # counted where the data are not flagged already (e.g. a dead antenna's flagged scan)
            counts["no_solution"] += int((bad & ~flag[:, chans]).sum()) if nsol else 0
            if nsol and not kept:
                out[bad] = sub[bad]      # uncorrected, never NaN
        if all_chans:
            full = out
        else:
            full = data.copy()
            full[:, chans] = out
        if _am.writes_data(mode):
            ms_io.write_column(cfg.ms, cfg.output_col, ch.rownr,
                               _native(full, spw.corr_types, spw.n_corr).astype(ch.data.dtype, copy=False))
        if propagate:
            ms_io.write_column(cfg.ms, "FLAG", ch.rownr, _native(newflag, spw.corr_types, spw.n_corr))
        pbar.advance(ch.n_row)

