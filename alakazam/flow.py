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

Memory tiers (``memory_limit_gb``; 0 = 40% of available RAM): tier 1 -- everything the block reads
fits: each (field, SPW) is read once and kept for all steps; tier 2 -- a whole group fits: one read per
group; tier 3 -- a group is read in row chunks into a running accumulator.  The accumulation is exact
(sums of weighted samples), so every tier gives the same solutions.
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
#: tier 1: the cached rows are processed in blocks of about this many working-set bytes
_TIER1_BLOCK_BYTES = 128 * 2 ** 20


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


def plan_groups(scans_info, tint) -> List[Group]:
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
    if tint.kind == "inf":
        lookup = {s: i for i, s in enumerate(group.scans)}
        return np.array([lookup[s] for s in row_scan], dtype=np.int64) if len(row_scan) else \
            np.zeros(0, np.int64)
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


def run_solve(cfg: SolveConfig) -> dict:
    """Run one solve block: every step of the chain, each written to ``cfg.output`` when done.

    Returns a summary dict ``{"output": path, "terms": {key: {...stats...}}}``.
    A failing step raises; the steps written before it stay in the file, the failing one is never
    half-written (writes are atomic, :func:`alakazam.io.hdf5.write_term`).
    """
    from .core import ms_io
    from .io import hdf5
    from . import progress, solvers
    from .calibration import chain

    t_start = _time.perf_counter()
    # ---- validation: everything is checked before anything is read or written
    solvers.check_backend(cfg.solver_backend)
    meta = ms_io.read_meta(cfg.ms)
    ms_io.check_columns(cfg.ms, [cfg.data_col, cfg.model_col])
    ref = ms_io.resolve_antenna(meta, cfg.ref_ant)
    spw_sel = ms_io.resolve_spw(meta, cfg.spw)
    scans = ms_io.resolve_scans(meta, cfg.scan) if cfg.scan else None
    step_fields = [ms_io.resolve_fields(meta, step.field) for step in cfg.steps]
    ext_terms = []
    if cfg.external_preapply is not None:
        ep = cfg.external_preapply
        for i, (table, key) in enumerate(zip(ep.tables, ep.jones)):
            ext_terms.append(chain.load_term(
                table, key,
                field_select=ep.field_select[i] if i < len(ep.field_select) else "nearest_time",
                time_interp=ep.time_interp[i] if i < len(ep.time_interp) else "nearest",
                solution_field=(ep.solution_field[i] if i < len(ep.solution_field) else None)))

    # ---- memory plan
    from .core import memory
    limit = memory.memory_limit_bytes(cfg.memory_limit_gb)
    all_fields = sorted({f for fl in step_fields for f in fl})
    n_rows_total, bytes_per_row, rows_per_group = 0, 0, []
    for ddid, chans in spw_sel.items():
        for fid in all_fields:
            n = ms_io.row_count(cfg.ms, ddid, [fid], scans)
            n_rows_total += n
            n_corr = meta.spws[ddid].n_corr
            bytes_per_row = max(bytes_per_row, memory.bytes_per_row(len(chans), n_corr))
            for sc in _field_scans(meta, fid, ddid, scans):
                rows_per_group.append(ms_io.row_count(cfg.ms, ddid, [fid], [sc]))
    tier, max_rows = memory.plan_chunks(n_rows_total, bytes_per_row, rows_per_group or [0], limit)
    log.info("memory: tier %d (limit %.2f GB, %d rows x %d B/row, max %d rows per read)",
             tier, limit / 1e9, n_rows_total, bytes_per_row, max_rows)

    ctx = _Context(cfg, meta, ref, spw_sel, scans, max_rows, tier)
    ctx.prior = list(ext_terms)
    summary = {"output": cfg.output, "terms": {}, "tier": tier}
    for step, fids in zip(cfg.steps, step_fields):
        t0 = _time.perf_counter()
        sets = []
        n_units = sum(len(plan_groups(r, step.time_interval)) for r in
                      (_scan_ranges(meta, fid, ddid, scans) for fid in fids for ddid in spw_sel) if r)
        with progress.bar(f"{step.key} ({step.jones_type}): solution groups", n_units, quiet=cfg.quiet) as bar:
            ctx.advance = bar.advance
            for fid in fids:
                for ddid, chans in spw_sel.items():
                    sets.extend(_solve_field_spw(ctx, step, fid, ddid, chans))
        if not sets:
            raise AlakazamError(
                f"{step.key}: no data selected for field(s) {step.field} (spw={cfg.spw!r}, "
                f"scan={cfg.scan!r}); check the selection with 'alakazam info' / listobs")
        hdf5.write_term(cfg.output, step.key, sets)
        ctx.prior.append(chain.term_from_sets(step.key, step.jones_type, sets,
                                              time_interp=step.preapply_time_interp))
        n_sol = sum(s.flags.size for s in sets)
        n_flag = int(sum(s.flags.sum() for s in sets))
        summary["terms"][step.key] = {
            "jones_type": step.jones_type, "n_groups": len(sets), "n_solutions": n_sol,
            "flagged": n_flag, "seconds": _time.perf_counter() - t0,
            "converged": float(np.mean(np.concatenate([s.converged.ravel() for s in sets]))),
        }
        log.info("%s: %d solution groups, %d/%d flagged, %.2f s", step.key, len(sets), n_flag, n_sol,
                 _time.perf_counter() - t0)
    summary["seconds"] = _time.perf_counter() - t_start
    return summary


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
    """Yield ms_io Chunks of the group's rows (from the tier-1 cache or from the MS)."""
    from .core import memory, ms_io, rfi

    cfg = ctx.cfg
    if ctx.tier == 1:
        key = (fid, ddid)
        if key not in ctx.cache:
            c = ms_io.read_rows(cfg.ms, ddid, [fid], scans=ctx.scans, chans=chans,
                                data_col=cfg.data_col, model_col=cfg.model_col)
            if cfg.rfi_threshold and cfg.rfi_threshold > 0:
                # per-row statistics of the raw data: flag once here, not again in every step
                c.flag = rfi.mad_flag(c.data, c.model, c.flag, cfg.rfi_threshold)
            ctx.cache[key] = c
        ch = ctx.cache[key]
        sel = np.flatnonzero(np.isin(ch.scan, group.scans))
        # blocks of rows, so the working copies (pre-applied data, weights) stay small next to the cache
        per = max(256, _TIER1_BLOCK_BYTES // max(1, ch.data.shape[1] * 4 * memory.BYTES_PER_SAMPLE))
        contiguous = len(sel) and sel[-1] - sel[0] + 1 == len(sel)
        for s0 in range(0, len(sel), per):
            part = sel[s0:s0 + per]
            # contiguous rows: views of the cache, no copy
            yield ch.take(slice(int(part[0]), int(part[-1]) + 1) if contiguous else part)
        return
    yield from ms_io.iter_chunks(cfg.ms, ddid, [fid], scans=group.scans, chans=chans,
                                 data_col=cfg.data_col, model_col=cfg.model_col,
                                 max_rows=ctx.max_rows)


def _solve_field_spw(ctx: _Context, step: SolveStep, fid: int, ddid: int, chans) -> list:
    """Solve one step for one field and SPW: every group, returning hdf5.SolutionSet objects."""
    from .core import averaging, rfi
    from .io.hdf5 import SolutionSet
    from .jones import algebra
    from . import solvers
    from .calibration import chain

    cfg, meta = ctx.cfg, ctx.meta
    spw = meta.spws[ddid]
    fld = meta.fields[fid]
    freqs = np.asarray(spw.freqs)[chans]
    chan_width = float(np.median(np.abs(np.asarray(spw.chan_width)[chans]))) if len(chans) else 1.0
    fbin_of_chan = freq_bins(freqs, chan_width, step.freq_interval_hz)
    n_fcell = int(fbin_of_chan.max()) + 1 if len(chans) else 0
    jt = step.jones_type
    chan_sampled = jt in _CHANNEL_SAMPLED
    scan_sampled = jt in _SCAN_SAMPLED
    # frequency samples of the accumulator: channels (K, KC) or freq bins
    fsamp_of_chan = np.arange(len(chans), dtype=np.int64) if chan_sampled else fbin_of_chan
    n_fsamp = len(chans) if chan_sampled else n_fcell

    ranges = _scan_ranges(meta, fid, ddid, ctx.scans)
    if not ranges:
        return []
    scan_t0 = {s: a for s, a, b in ranges}
    groups = plan_groups(ranges, step.time_interval)
    n_ant = len(meta.active_ants)
    bl_a1, bl_a2 = np.triu_indices(n_ant, 1)
    n_bl = len(bl_a1)
    bl_lookup = -np.ones((n_ant, n_ant), np.int64)
    bl_lookup[bl_a1, bl_a2] = np.arange(n_bl)
    active_names = [meta.ant_names[a] for a in meta.active_ants]

    out = []
    for group in _ticking(groups, ctx.advance):
        n_sbin = len(group.sbin_scan)
        acc = averaging.new_accumulators(n_sbin, n_fsamp, n_bl)
        row_count = np.zeros(n_sbin, np.int64)
        time_sum = np.zeros(n_sbin)
        time_wsum = np.zeros(n_sbin)
        wsum_t = np.zeros(n_sbin)
        t_ref = min(scan_t0[sc] for sc in group.scans)
        for ch in _iter_group_chunks(ctx, fid, ddid, chans, group):
            cross = ch.ant1 != ch.ant2          # autocorrelations carry no gain-ratio information
            if not cross.all():
                ch = ch.take(cross)
            if ch.n_row == 0:
                continue
            data, model, flag, weight = ch.four_corr(spw.corr_types)
            if cfg.rfi_threshold and cfg.rfi_threshold > 0 and ctx.tier != 1:   # tier 1: done on reading
                flag = rfi.mad_flag(data, model, flag, cfg.rfi_threshold)
            utimes, tidx = np.unique(ch.time, return_inverse=True)
            data, model, flag = chain.preapply(ctx.prior, data, model, flag, tidx, utimes, ch.ant1,
                                               ch.ant2, meta, ddid, chans, fld, cfg.apply_parang)
            sbin = sample_bin_of_rows(group, step.time_interval, scan_t0, ch.scan, ch.time)
            row_bl = bl_lookup[np.minimum(ch.ant1, ch.ant2), np.maximum(ch.ant1, ch.ant2)]
            swap = ch.ant1 > ch.ant2
            if swap.any():   # keep baselines as (a<b): V_ba = V_ab^H (on copies: never the tier-1 cache)
                data, model, flag = data.copy(), model.copy(), flag.copy()
                data[swap] = np.conj(data[swap][:, :, [0, 2, 1, 3]])
                model[swap] = np.conj(model[swap][:, :, [0, 2, 1, 3]])
                flag[swap] = flag[swap][:, :, [0, 2, 1, 3]]
            w = np.where(flag, 0.0, weight)
            averaging.accumulate(acc, data, model, w, sbin, row_bl, fsamp_of_chan)
            row_count += np.bincount(sbin, minlength=n_sbin)
            trel = ch.time - t_ref          # relative times: sums of MJD seconds (~5e9) lose microseconds
            time_sum += np.bincount(sbin, weights=trel, minlength=n_sbin)
            wrow = w.sum(axis=(1, 2))
            time_wsum += np.bincount(sbin, weights=wrow * trel, minlength=n_sbin)
            wsum_t += np.bincount(sbin, weights=wrow, minlength=n_sbin)
        present = row_count > 0
        if not present.any():
            continue
        # --- time cells of the group (drop cells with no rows at all)
        cell_of_sbin = group.sbin_cell
        cells_t = np.unique(cell_of_sbin[present])
        batch, cell_index = _make_batch(jt, acc, cell_of_sbin, present, cells_t,
                                        fbin_of_chan, fsamp_of_chan, n_fcell, freqs, scan_sampled,
                                        chan_sampled, bl_a1, bl_a2, n_ant, ctx.ref)
        if jt == "CP" and not any(t.jones_type == "D" for t in ctx.prior):
            # the not-yet-solved leakage: a per-baseline offset (cross_phase.remove_leakage_offsets);
            # once a D is in the model, the model's cross hands carry the leakage themselves
            from .solvers import cross_phase
            n_off = int(cross_phase.remove_leakage_offsets(batch).sum())
            log.debug("%s: leakage offsets removed in %d/%d cells", step.key, n_off, batch.n_cell)
        opts = solvers.SolveOptions(phase_only=step.phase_only, max_iter=cfg.max_iter, tol=cfg.tol,
                                    gpu=cfg.gpu)
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
        fcent = np.array([freqs[fbin_of_chan == j].mean() for j in range(n_fcell)])
        if np.all(refused == ctx.ref):
            ref_used = ctx.ref
        else:
            vals, counts = np.unique(refused, return_counts=True)
            ref_used = int(vals[np.argmax(counts)])
            log.warning("%s field %s spw %d scan %s: reference antenna %s had no data in some cells; "
                        "re-referenced to %s there (recorded in solver_stats/ref_ant)", step.key,
                        fld.name, spw.spw_id, group.scan_id, active_names[ctx.ref],
                        ", ".join(active_names[v] for v in vals if v != ctx.ref))
        attrs = dict(
            jones_type=jt, field_name=fld.name, scan_id=int(group.scan_id), scans=list(group.scans),
            spw=int(spw.spw_id), n_ant=n_ant, field_ra=float(fld.ra), field_dec=float(fld.dec),
            matrix_form="full" if jt == "D" else "diagonal", ref_ant=int(ctx.ref),
            ref_ant_name=active_names[ctx.ref], ant_names=active_names,
            solint_s=step.time_interval.solint_s, time_interval=step.time_interval.text,
            freqint_hz=float(step.freq_interval_hz) if step.freq_interval_hz else float("inf"),
            freq_interval=step.freq_interval_text, phase_only=bool(step.phase_only),
            feed_basis=spw.feed_basis, solver_backend=cfg.solver_backend,
            apply_parang=bool(cfg.apply_parang), ms=str(cfg.ms),
            preapply_chain=[t.key for t in ctx.prior], alakazam_version=__version__,
            channels=np.asarray(chans, dtype=np.int64),
        )
        sset = SolutionSet(jones=jones, flags=flags, time=times, freq=fcent, delay=delay,
                           converged=conv, n_iter=niter, cost=cost, attrs=attrs)
        sset.extra = {"ref_ant": refused}
        out.append(sset)
    return out


def _make_batch(jt, acc, cell_of_sbin, present, cells_t, fbin_of_chan,
                fsamp_of_chan, n_fcell, freqs, scan_sampled, chan_sampled, bl_a1, bl_a2, n_ant, ref):
    """Gather accumulated sample bins (n_sbin, n_fsamp, n_bl, 4) into a CellBatch.

    Cells are (time cell, freq bin); samples are (time samples) x (channel samples), padded with
    weight 0 to a common length.  Weighted sums are added before dividing, so merging sample bins is an
    exact weighted average.
    """
    from .solvers import CellBatch

    vis_sum, mod_sum, wsum = acc.vis_sum, acc.model_sum, acc.w_sum
    n_bl = len(bl_a1)
    cells = []
    samples = []   # per cell: list of (sbin indices, fsamp indices, freq)
    for it, ct in enumerate(cells_t):
        sb = np.nonzero((cell_of_sbin == ct) & present)[0]
        for jf in range(n_fcell):
            if chan_sampled:
                fs = np.nonzero(fbin_of_chan == jf)[0]
            else:
                fs = np.array([jf])
            tgroups = [[s] for s in sb] if scan_sampled else [list(sb)]
            cells.append((it, jf))
            samples.append((tgroups, fs))
    n_samp = max(len(tg) * len(fs) for tg, fs in samples)
    n_cell = len(cells)
    vis = np.zeros((n_cell, n_bl, n_samp, 4), np.complex128)
    model = np.zeros_like(vis)
    weight = np.zeros((n_cell, n_bl, n_samp, 4))
    freq = np.zeros((n_cell, n_samp))
    if not chan_sampled and not scan_sampled:
        # one sample per cell (G): all freq bins of a time cell at once (cells are in (it, jf) order);
        # the same sums and divisions as the general loop below, without a Python loop over the bins
        fcent = np.array([freqs[fbin_of_chan == j].mean() for j in range(n_fcell)])
        for it in range(len(cells_t)):
            tg = samples[it * n_fcell][0][0]
            v = vis_sum[tg].sum(axis=0)           # (n_fcell, n_bl, 4)
            m = mod_sum[tg].sum(axis=0)
            w = wsum[tg].sum(axis=0)
            c0 = it * n_fcell
            with np.errstate(invalid="ignore", divide="ignore"):
                vis[c0:c0 + n_fcell, :, 0] = np.where(w > 0, v / w, 0)
                model[c0:c0 + n_fcell, :, 0] = np.where(w > 0, m / w, 0)
            weight[c0:c0 + n_fcell, :, 0] = w
            freq[c0:c0 + n_fcell, 0] = fcent
        samples = []
    for c, (tgroups, fs) in enumerate(samples):
        k = 0
        for tg in tgroups:
            ix = np.ix_(tg, fs)                   # select the cell's samples before summing
            v = vis_sum[ix].sum(axis=0)           # (n_f, n_bl, 4)
            m = mod_sum[ix].sum(axis=0)
            w = wsum[ix].sum(axis=0)
            nf = len(fs)
            with np.errstate(invalid="ignore", divide="ignore"):
                vis[c, :, k:k + nf] = np.where(w > 0, v / w, 0).transpose(1, 0, 2)
                model[c, :, k:k + nf] = np.where(w > 0, m / w, 0).transpose(1, 0, 2)
            weight[c, :, k:k + nf] = w.transpose(1, 0, 2)
            if chan_sampled:
                freq[c, k:k + nf] = freqs[fs]
            else:
                freq[c, k:k + nf] = freqs[fbin_of_chan == fs[0]].mean()
            k += nf
        if k < n_samp:      # padding samples: weight 0, a valid frequency
            freq[c, k:] = freq[c, k - 1] if k else freqs.mean()
    batch = CellBatch(vis=vis, model=model, weight=weight, ant1=bl_a1.astype(np.int32),
                      ant2=bl_a2.astype(np.int32), freq=freq, n_ant=n_ant, ref_ant=int(ref))
    return batch, cells
