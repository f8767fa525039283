"""Solve one unit: read, flag, pre-apply, accumulate, solve (see :mod:`alakazam.plan` for units).

For each unit (step, field, SPW, scan group)::

    read rows (memory-bounded chunks)  ->  FLAG | FLAG_ROW | RFI (MAD)  ->  pre-apply earlier terms
      ->  accumulate weighted sums into sample bins  ->  CellBatch  ->  solvers.solve  ->  SolutionSet

:func:`solve_field_spw` solves every unit of one (step, field, SPW) -- the batch of the in-process
driver, whose units share one read in memory tier 1; :func:`solve_unit` solves a single unit (a
dask task, :mod:`alakazam.distributed`).  Both give the same SolutionSet for the same group: the
per-(field, SPW) setup (:func:`setup`) is a pure function of the context and the step.  The sample
and pre-apply conventions are in the :mod:`alakazam.flow` module docstring.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from . import __version__
from .config import SolveConfig, SolveStep
from .core.scanobs import own_scan_keys
from .jones import terms
from .plan import Group, freq_bins, plan_groups, sample_bin_of_rows, scan_ranges

log = logging.getLogger("alakazam.flow")     # the solve's messages keep the logger users filter on

#: the pre-apply Jones tables of a chunk are evaluated on blocks of unique times of at most about this
#: size (estimated with full 2x2 evaluations of every term; the diagonal tables take about half)
_TABLE_BLOCK_BYTES = 64 * 2 ** 20


@dataclass
class _Context:
    cfg: SolveConfig
    meta: object
    ref: int
    spw_sel: dict                  # ddid -> channel indices
    scans: list | None
    max_rows: int
    tier: int
    cache: dict = field(default_factory=dict)
    prior: list = field(default_factory=list)     # LoadedTerm, in chain order
    stats: dict = field(default_factory=dict)
    advance: object = None                        # progress callback: one call per solution group
    rowsel: object = None                         # antenna/uvrange/timerange/... selection (core/rowselect)
    refs: list = field(default_factory=list)      # reference antennas in priority order (ref = refs[0])
    mem_limit: int = 0                            # the block's memory limit (bytes; core/memory.py)
    bytes_per_row: int = 0                        # the plan's solve bytes per row (core/memory.py)
    spare: list = field(default_factory=list)     # large arrays a step no longer uses (_zeros, tier 1)
    # a CP step fits the leakage offsets although a D is pre-applied (solve_rounds.iterate_round: the
    # rounds before the last, whose D is still on its way to the fit)
    cp_offsets: bool = False
    # (CP key, field, DATA_DESC_ID, scan group) -> the cells whose leakage offsets the first round removed
    # (cross_phase.remove_leakage_offsets); a later round with cp_offsets repeats that decision
    cp_offset_cells: dict = field(default_factory=dict)
    # the same keys -> the CP step's model power measured in the first round (_measures_model_power);
    # later rounds, whose CP model carries the block's D, keep it (calibration/leakcheck.py)
    cp_model_power: dict = field(default_factory=dict)
    # iterations: per round after the first, {step key: (median change, median noise, median ratio)} of
    # the CP and D steps (solve_rounds.round_changes; the rounds' convergence, solve_rounds.warn_unconverged)
    round_changes: list = field(default_factory=list)
    # {step key: (term_id, term_written)}: each term's identity, made once per solve before any unit runs
    # (so that units on dask workers agree; calibration/chainid.py)
    term_ids: dict = field(default_factory=dict)

    def __getstate__(self):
        # a context sent to dask workers (alakazam.distributed) never carries the spare arrays
        state = dict(self.__dict__)
        state["spare"] = []
        return state



#: the phases of a step's wall time kept in ``_Context.stats[("phases", step key)]`` (seconds; the
#: flow's summary reports them per step): the data reads, the solve-time sample flags
#: (core/cellflags), the pre-apply + accumulation, and the batch + solve + quality
PHASES = ("read", "flags", "accumulate", "solve")


def _phases(ctx, step) -> dict:
    return ctx.stats.setdefault(("phases", step.key), dict.fromkeys(PHASES, 0.0))


def _ticking(items, advance):
    """Yield the items, calling ``advance()`` after the caller's loop body has finished each one."""
    for it in items:
        yield it
        if advance is not None:
            advance()


def _iter_group_chunks(ctx: _Context, fid, ddid, chans, group: Group, phases=None):
    """Yield ``(chunk, rows)``: ms_io Chunks holding the group's rows and the indices of those rows
    in the chunk (None = all).  Tier 1: the cached (field, SPW) read, never copied; tiers 2/3: reads of
    at most ``max_rows`` rows, flagged here (:func:`alakazam.core.cellflags.flag_chunk`)."""
    from .core import cellflags, flagcache, memory, ms_io, readcache

    cfg = ctx.cfg
    corr_types = ctx.meta.spws[ddid].corr_types
    if ctx.tier == 1:
        key = (fid, ddid)
        if key not in ctx.cache:
            t0 = time.perf_counter()
            model_col = None if cfg.smodel else cfg.model_col
            rkey = readcache.key(cfg.ms, ddid, fid, ctx.scans, chans, cfg.data_col, model_col, ctx.rowsel) \
                if readcache.active() else None
            c = readcache.get(rkey) if rkey else None       # an earlier block's read of these rows
            if c is None:
                if rkey:
                    readcache.make_room(ctx.max_rows * ctx.bytes_per_row, ctx.mem_limit)
                # the one large read of the (field, SPW), kept for every step: ordinary pages (no huge-page
                # compaction stalls on its first touch; core/memory.small_pages).  Repeated chunk reads
                # of tiers 2/3 keep numpy's default (their freed huge pages are reused at once); the
                # apply's reuse the previous chunk's memory (core/readbuffers.py)
                with memory.small_pages():
                    c = ms_io.read_rows(cfg.ms, ddid, [fid], scans=ctx.scans, chans=chans,
                                        data_col=cfg.data_col, model_col=model_col, rowsel=ctx.rowsel)
                if rkey:
                    c = readcache.put(rkey, c, ctx.mem_limit)   # kept as read; c: a copy to modify
            _smodel(cfg, ctx.meta, ddid, c)
            t1 = time.perf_counter()
            # bad values, per-row MAD and per-scan channel statistics of the raw data: flagged once
            # here, not again in every step (alakazam.core.cellflags)
            # once per process (core/flagcache.py); beside a kept read, unpacked (core/readcache.py)
            kept = readcache.derived(rkey)
            fkey = ("solve flags", float(cfg.rfi_threshold or 0.0), repr(cfg.smodel),
                    tuple(str(x) for x in corr_types))
            fl = kept.get(fkey) if kept is not None else None
            if fl is None:
                fl = flagcache.flags(cfg, c, corr_types, chans)
                if kept is not None:
                    kept[fkey] = fl
            c.flag = fl
            ctx.cache[key] = c
            if phases is not None:
                phases["read"] += t1 - t0
                phases["flags"] += time.perf_counter() - t1
        ch = ctx.cache[key]
        sel = np.flatnonzero(np.isin(ch.scan, group.scans))
        yield ch, (None if len(sel) == ch.n_row else sel)
        return
    # reads of whole blocks of integrations: the channel statistics see the same rows in every tier
    group_rows = ms_io.row_numbers(cfg.ms, ddid, [fid], group.scans, rowsel=ctx.rowsel)
    for rows, gid in cellflags.block_reads(cfg.ms, group_rows, ctx.max_rows):
        t0 = time.perf_counter()
        ch = ms_io.read_rows(cfg.ms, ddid, [fid], chans=chans, data_col=cfg.data_col,
                             model_col=None if cfg.smodel else cfg.model_col, meta=ctx.meta, rows=rows,
                             rowsel=ctx.rowsel)
        _smodel(cfg, ctx.meta, ddid, ch)
        t1 = time.perf_counter()
        if ch.n_row:
            same = len(ch.rownr) == len(rows) and np.array_equal(ch.rownr, rows)
            ch.flag = flagcache.flags(cfg, ch, corr_types, chans, groups=gid if same else None)
        if phases is not None:
            phases["read"] += t1 - t0
            phases["flags"] += time.perf_counter() - t1
        yield ch, None
        del ch                  # not held while the next chunk is read (one chunk resident)


def _smodel(cfg, meta, ddid, chunk):
    """CASA smodel: the chunk's model is the Stokes point source ``cfg.smodel`` (solvers/smodel.py)."""
    if cfg.smodel:
        from .solvers.smodel import model_like
        chunk.model = model_like(chunk.data, meta.spws[ddid].corr_types, cfg.smodel)



@dataclass
class FieldSpw:
    """What every unit of one (step, field, SPW) shares: channels and their bins, the baselines, the
    pre-apply chain and the sizes of the Jones-table blocks (:func:`setup`)."""

    fid: int
    ddid: int
    chans: np.ndarray
    spw: object
    fld: object
    freqs: np.ndarray
    fbin_of_chan: np.ndarray
    n_fcell: int
    jt: str
    prior: list
    chan_sampled: bool
    scan_sampled: bool
    fsamp_of_chan: np.ndarray
    n_fsamp: int
    corr_src: object
    scan_t0: dict
    groups: list
    n_ant: int
    bl_a1: np.ndarray
    bl_a2: np.ndarray
    bl_lookup: np.ndarray
    active_names: list
    t_block: int
    need_tables: bool
    members: list                   # combine.Member: the (field, SPW)s solved together (this one first)


def _narrow_bin_note(ctx, step, ddid, chan_width):
    """A frequency interval in Hz under half a channel (a bare number is Hz: ``freqint=4`` is 4 Hz, one
    bin per channel) is said once per step and SPW: a user who meant 4 channels ('4ch', CASA's 'inf,4ch')
    would otherwise get a per-channel bandpass without a word (review, session 46)."""
    hz = step.freq_interval_hz
    if hz is None or getattr(hz, "channels", None) is not None or not chan_width or hz >= 0.5 * chan_width:
        return
    said = ctx.cache.setdefault("narrow freq bins said", set())
    if (step.key, ddid) in said:
        return
    said.add((step.key, ddid))
    from .core import warnonce          # once per task call / YAML run (iterations re-solve every step)
    warnonce.warning(log.name, "%s: freq_interval (akcal freqint) %s is %.6g Hz, narrower than a channel "
                     "of SPW %d (%.6g Hz): one solution per channel. A number is Hz; '4ch' is 4 channels, "
                     "'4MHz' 4 MHz", step.key, step.freq_interval_text, float(hz), ctx.meta.spws[ddid].spw_id,
                     chan_width)


def setup(ctx: _Context, step: SolveStep, fid: int, ddid: int, chans, members=None) -> FieldSpw | None:
    """The shared part of the units of one (step, field, SPW); None when no selected scan has it.
    ``members``: the (field, DATA_DESC_ID, channels) solved together with combine='field'/'spw'
    (:mod:`alakazam.core.combine`); None = this field and SPW alone."""
    from .calibration import solve_order
    from .core import averaging, combine

    cfg, meta = ctx.cfg, ctx.meta
    spw = meta.spws[ddid]
    fld = meta.fields[fid]
    freqs = np.asarray(spw.freqs)[chans]
    chan_width = float(np.median(np.abs(np.asarray(spw.chan_width)[chans]))) if len(chans) else 1.0
    fbin_of_chan = freq_bins(freqs, chan_width, step.freq_interval_hz)
    n_fcell = int(fbin_of_chan.max()) + 1 if len(chans) else 0
    _narrow_bin_note(ctx, step, ddid, chan_width)
    jt = step.jones_type
    prior = solve_order.step_prior(jt, ctx.prior)   # a KC/CP step leaves out a D solved before it
    chan_sampled = terms.get(jt).channel_sampled    # a slope over frequency (delay types)
    scan_sampled = terms.get(jt).scan_sampled       # parallactic-angle diversity
    # frequency samples of the accumulator: channels (K, KC) or freq bins
    fsamp_of_chan = np.arange(len(chans), dtype=np.int64) if chan_sampled else fbin_of_chan
    n_fsamp = len(chans) if chan_sampled else n_fcell
    corr_src = averaging.corr_map(spw.corr_types)

    mctx = combine.member_contexts(meta, members, fid, ddid, chans, fsamp_of_chan, corr_src, chan_sampled,
                                   fbin_of_chan)
    ranges = combine.union_ranges([scan_ranges(meta, m.fid, m.ddid, ctx.scans) for m in mctx])
    if not ranges:
        return None
    scan_t0 = {s: a for s, a, b in ranges}
    ints = None
    if getattr(step.time_interval, "ints", 0) and "scan" not in str(step.combine or "").split(","):
        # 'int' / 'Nints': each scan's integrations counted from its TIMEs (plan.integration_edges)
        from .core import ms_io
        key = ("scan_times", tuple((m.fid, m.ddid) for m in mctx), None if ctx.scans is None
               else tuple(ctx.scans))
        ints = ctx.cache.get(key)
        if ints is None:
            ints = ctx.cache[key] = ms_io.scan_times(cfg.ms, [(m.fid, m.ddid) for m in mctx], ctx.scans)
    groups = plan_groups(ranges, step.time_interval, step.combine, ints, meta.interval)
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
    return FieldSpw(fid, ddid, chans, spw, fld, freqs, fbin_of_chan, n_fcell, jt, prior, chan_sampled,
                    scan_sampled, fsamp_of_chan, n_fsamp, corr_src, scan_t0, groups, n_ant, bl_a1, bl_a2,
                    bl_lookup, active_names, t_block, need_tables, mctx)


def _solve_field_spw(ctx: _Context, step: SolveStep, fid: int, ddid: int, chans, members=None) -> list:
    """Solve one step for one field and SPW: every group, returning hdf5.SolutionSet objects.
    ``members``: the (field, DATA_DESC_ID, channels) solved together with combine='field'/'spw'
    (core/combine.py); None = this field and SPW alone."""
    from .core import combine

    g = setup(ctx, step, fid, ddid, chans, members)
    if g is None:
        return []
    out = []
    for group in _ticking(g.groups, ctx.advance):
        sset = _solve_group(ctx, step, g, group)
        if sset is not None:
            out.extend(combine.stored_sets(sset, g.members, ctx.meta))   # itself, or its combined forms
    return out


solve_field_spw = _solve_field_spw


def solve_unit(ctx: _Context, unit) -> object | None:
    """Solve one :class:`alakazam.plan.Unit`: its SolutionSet, or None when the group has no rows (the
    same set :func:`solve_field_spw` makes for that group)."""
    g = setup(ctx, unit.step, unit.fid, unit.ddid, unit.chans)
    if g is None:
        return None
    # the group as setup plans it: 'int' / 'Nints' count the scan's integrations from its TIMEs there
    # (plan.units_of, which ships the units, does not read them: its cells were a duration of the median
    # INTERVAL, and a distributed 'int' solve merged integrations -- residual 68x the noise, a review)
    group = next((x for x in g.groups if x.scan_id == unit.group.scan_id), unit.group)
    return _solve_group(ctx, unit.step, g, group)


def _solve_group(ctx, step, g: FieldSpw, group: Group):
    """Accumulate and solve one scan group; None when it has no rows.  Wall time by phase into
    ``ctx.stats`` (:data:`PHASES`)."""
    ph = _phases(ctx, step)
    io0 = ph["read"] + ph["flags"]
    t0 = time.perf_counter()
    acc = _accumulate_group(ctx, step, g, group)
    t1 = time.perf_counter()
    ph["accumulate"] += (t1 - t0) - (ph["read"] + ph["flags"] - io0)
    if acc is None:
        return None
    out = _solve_accumulated(ctx, step, g, group, acc)
    ph["solve"] += time.perf_counter() - t1
    return out


#: arrays of at least this many bytes are kept for the next allocation of the same size (:func:`_zeros`)
_SPARE_MIN_BYTES = 16 * 2 ** 20


def _zeros(ctx, shape, dtype, fill=True):
    """``np.zeros(shape, dtype)``, in memory tier 1 from a spare array of the same size and dtype when
    the previous step left one (:func:`_keep_spare`): refilled with zeros, it costs a memset, where
    fresh memory costs a page fault per page on its first touch (with huge-page compaction when RAM
    is full of page cache: measured at up to 0.3 s for the 0.15 GB of a per-channel CP batch).
    ``fill=False``: ``np.empty`` -- for a caller that writes every element (a spare is not zeroed).
    Fresh memory has its pages faulted in at once (:func:`alakazam.core.prefault.populate_now`)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    for i, a in enumerate(ctx.spare if ctx.tier == 1 else ()):
        if a.dtype == dtype and a.size == n:
            del ctx.spare[i]
            a = a.reshape(shape)
            if fill:
                a.fill(0)
            return a
    # fresh memory: its pages faulted in by one call (core/prefault.populate_now), not one fault per
    # page where the kernel first writes it
    from .core import prefault
    return prefault.populate_now(np.zeros(shape, dtype) if fill else np.empty(shape, dtype))


def _keep_spare(ctx, arrays):
    """Keep the large arrays of a finished step for the next one (tier 1: the in-process solve; the
    spares of an earlier step are dropped).  ``arrays``: owners (no views), the caller's list holding
    the only references; an array that anything else still references (a view, a result) is not kept.
    Kept arrays are only ever handed out again zeroed (:func:`_zeros`)."""
    if ctx.tier != 1:
        return
    ctx.spare.clear()
    free = _unreferenced(arrays)
    for a, ok in zip(arrays, free):
        if (ok and isinstance(a, np.ndarray) and a.base is None and a.nbytes >= _SPARE_MIN_BYTES
                and a.flags.c_contiguous):
            ctx.spare.append(a)


def _refcounts(items):
    import sys

    out = []
    for a in items:
        out.append(sys.getrefcount(a))
    return out


def _unreferenced(arrays):
    """For each of ``arrays``: nothing but the list references it (a view adds a reference through its
    ``base``, a result through its attribute).  Compared with a fresh array's count seen the same way, not
    a fixed number: what the interpreter counts for a loop name or a call argument varies between Python
    versions (3.14 borrows references)."""
    base = _refcounts([np.empty(0)])[0]
    return [c <= base for c in _refcounts(arrays)]


def _accumulate_group(ctx, step, g: FieldSpw, group: Group):
    """Read, flag, pre-apply and accumulate one group: a dict of the weighted sums per accumulator bin
    and the row/time sums per sample bin, or None when the group has no rows."""
    from .calibration import preapply_cache
    from .core import averaging, combine

    cfg, meta = ctx.cfg, ctx.meta
    n_sbin = len(group.sbin_scan)
    cell_of_sbin = group.sbin_cell
    # accumulator bins: one per sample bin (one time sample per scan) or per time cell
    n_bl = len(g.bl_a1)
    slots = _sample_slots(g, group)
    bin_major = slots is None and _bin_major(g, group)
    # a gain with combine 'spw': each SPW summed into a sample of its own, folded into the one sample
    # the solve takes after the pass -- the per-SPW sums serve _check_combined_spws
    spw_of = _combined_spw_samples(step, g) if slots is None and not bin_major else None
    # a full-band gain whose cell spans several scans: each scan's sums apart, folded into the cell's
    # after the pass (the solve takes the same data) -- they serve calibration/spancheck.py
    from .calibration import spancheck
    by_scan = (slots is None and not bin_major and spw_of is None
               and spancheck.wanted(step.jones_type, g.n_fsamp, g.chan_sampled, g.scan_sampled, group))
    n_acc = n_sbin if (g.scan_sampled or by_scan) else group.n_tcell
    # a K whose cell spans several scans: each (cell, scan)'s per-channel sums in arrays of their own, by
    # a second kernel pass over the same rows (the cell's sums untouched) -- calibration/spancheck.py
    k_span = (spancheck.k_pairs(step.jones_type, g.chan_sampled, g.scan_sampled, group, len(g.bl_a1),
                                g.n_fsamp) if slots is None and not bin_major and spw_of is None else None)
    k_sums = None
    if k_span is not None and k_span[0] is not None:
        k_shape = (len(k_span[1]), len(g.bl_a1), g.n_fsamp, 4)
        k_sums = (np.zeros(k_shape, np.complex128), np.zeros(k_shape, np.complex128), np.zeros(k_shape))
    # CP / D over one time cell of wide frequency bins: each bin's sub-bands summed apart, folded into
    # the bins after the pass (the solve takes the same data) -- they serve calibration/misfitcheck.py
    from .calibration import misfitcheck
    one_cell = (not g.chan_sampled) and g.scan_sampled and group.n_tcell == 1     # (_bin_major's test)
    n_sub = (misfitcheck.sub_bands(step, g, one_cell)
             if slots is None and spw_of is None and not by_scan else 0)
    n_fs = g.n_fsamp * max(n_sub, 1)
    sub_of = {}
    if bin_major:       # CP / D over one time cell: the sums in the batch layout (_bin_major)
        shape = (n_fs, n_bl, n_acc, 4)
    elif spw_of is not None:
        shape = (n_acc, n_bl, len(set(spw_of.values())), 4)
    elif slots is None:
        shape = (n_acc, n_bl, n_fs, 4)
    else:       # KC over the whole band: the sums in the batch layout (_sample_slots)
        k_of_sbin, n_k = slots
        shape = (group.n_tcell, n_bl, n_k * g.n_fsamp, 4)
    vis_sum, model_sum, w_sum = (_zeros(ctx, shape, np.complex128), _zeros(ctx, shape, np.complex128),
                                 _zeros(ctx, shape, np.float64))
    # what the accumulation kernel indexes: [bin, baseline, frequency sample, corr]; in the batch layout
    # [(time cell, baseline, slot), 0, channel, corr] (the same memory); bin-major: a transposed view
    sums = (vis_sum, model_sum, w_sum)
    if slots is not None:
        sums = tuple(a.reshape(group.n_tcell * n_bl * n_k, 1, g.n_fsamp, 4) for a in sums)
    elif bin_major:
        sums = tuple(a.transpose(2, 1, 0, 3) for a in sums)
    row_count = np.zeros(n_sbin, np.int64)
    time_sum = np.zeros(n_sbin)
    time_wsum = np.zeros(n_sbin)
    wsum_t = np.zeros(n_sbin)
    t_ref = min(g.scan_t0[sc] for sc in group.scans)
    t_block, need_tables = g.t_block, g.need_tables
    ph = _phases(ctx, step)
    # only the correlations the term uses are summed (G, K: parallel hands; KC, CP: cross hands)
    corr_use = np.isin(np.arange(4), terms.get(step.jones_type).corr)
    # a model that mixes the correlations (D) is fitted on samples with all four (averaging.all_corr)
    all_corr = not terms.get(step.jones_type).diagonal
    # bin-major sums (CP per channel): each baseline's slot summed in a contiguous copy kept across the
    # calls (blocks of times, chunks) and stored once per scan (averaging.bin_runs; the same sums)
    runs = averaging.bin_runs(n_bl, n_fs, corr_use) if bin_major and not all_corr else None
    # CP, where calibration/leakcheck.py may size a leakage: the model's parallel-hand power, which CP's
    # own sums (cross hands only) do not hold, from a sample of the rows (_measures_model_power)
    parallel = [0.0, 0.0] if _measures_model_power(ctx, step, g) else None
    # a G solved in the frame of another field's per-scan K (_k_frame): each row's K about its bin centre
    ks = _k_frame(ctx, step, g)
    f_bin = _bin_centres(g.freqs, g.fbin_of_chan, g.n_fcell)[g.fbin_of_chan] if ks else None
    if ks:
        from .calibration.delayframe import row_factor
    for m, (ch, rows) in combine.member_chunks(g.members, lambda m: _iter_group_chunks(
            ctx, m.fid, m.ddid, m.chans, group, ph)):      # combine 'field'/'spw': every member's rows
        if rows is None:
            rows = np.arange(ch.n_row)
        if len(rows) == 0:
            continue
        a1, a2 = ch.ant1[rows], ch.ant2[rows]
        bl = g.bl_lookup[np.minimum(a1, a2), np.maximum(a1, a2)]
        cross = bl >= 0                 # autocorrelations carry no gain-ratio information
        if not cross.all():
            rows, a1, a2, bl = rows[cross], a1[cross], a2[cross], bl[cross]
        if len(rows) == 0:
            continue
        if parallel is not None:
            from .solvers import leakage
            # a fixed pseudo-random sample: a stride would alias with the baselines (rows come in time,
            # then baseline order) and keep the same few baselines at every time
            sub = rows if len(rows) <= MODEL_POWER_ROWS else np.sort(np.random.default_rng(
                len(rows)).choice(rows, MODEL_POWER_ROWS, replace=False))
            _, m4, f4, w4 = ch.take(sub).four_corr(meta.spws[m.ddid].corr_types)
            num, den = leakage.model_power_sums(m4, np.where(f4, 0.0, w4), (0, 3))
            parallel[0] += num
            parallel[1] += den
        times = ch.time[rows]
        sbin = sample_bin_of_rows(group, step.time_interval, g.scan_t0, ch.scan[rows], times)
        utimes, tix = np.unique(times, return_inverse=True)
        uscan = np.zeros(len(utimes), np.int64)
        uscan[tix] = ch.scan[rows]          # flagged solutions are not bridged across scans
        uscan = own_scan_keys(meta, uscan)  # (a number recurring in several observations: none)
        # per-row arrays over the whole chunk (rows not in the group: never read by the kernel)
        n = ch.n_row
        row_bl = np.full(n, -1, np.int64)
        row_bl[rows] = bl
        acc_bin = np.full(n, -1, np.int64)
        part_key = None
        if slots is None:
            acc_bin[rows] = sbin if (g.scan_sampled or by_scan) else cell_of_sbin[sbin]
        else:                           # (time cell, baseline, slot); threads split by baseline
            acc_bin[rows] = (cell_of_sbin[sbin] * n_bl + bl) * n_k + k_of_sbin[sbin]
            part_key, row_bl = row_bl, np.where(row_bl >= 0, 0, -1)
        tidx = np.zeros(n, np.int64)
        tidx[rows] = tix
        w_row = np.zeros(n)
        if k_sums is not None:
            k_bin = np.full(n, -1, np.int64)
            k_bin[rows] = k_span[0][sbin]
            k_wrow = np.zeros(n)
        for t0 in range(0, len(utimes), t_block if need_tables else max(len(utimes), 1)):
            t1 = min(t0 + t_block, len(utimes)) if need_tables else len(utimes)
            diag = sky = None
            if need_tables:
                diag, sky = preapply_cache.block(ctx, g.prior, meta, m.ddid, m.chans, m.fld, utimes, uscan,
                                                 t0, t1, cfg.apply_parang, ch.data.nbytes)
                if ks and diag is not None:     # (a new table: the block's may be a kept product's view)
                    diag = diag * np.conj(row_factor(ks, int(g.spw.spw_id), utimes[t0:t1], f_bin,
                                                     g.active_names, m.fld.name, (m.fld.ra, m.fld.dec),
                                                     uscan[t0:t1]))
            part = rows if (t0 == 0 and t1 == len(utimes)) else rows[(tix >= t0) & (tix < t1)]
            fsamp = (m.fsamp_of_chan if spw_of is None
                     else np.where(np.asarray(m.fsamp_of_chan) >= 0, spw_of[m.ddid], -1))
            if n_sub:               # (once per member: the same channels every block)
                key = id(m.fsamp_of_chan)
                if key not in sub_of:
                    sub_of[key] = misfitcheck.sub_fsamp(fsamp, n_sub)
                fsamp = sub_of[key]
            averaging.accumulate_corrected(*sums, w_row, ch.data, ch.model, ch.flag,
                                           ch.weight, part, tidx, ch.ant1, ch.ant2, acc_bin, row_bl,
                                           fsamp, m.corr_src, diag, sky, t_off=t0,
                                           part_key=part_key, corr_use=corr_use, all_corr=all_corr,
                                           runs=runs, sub_bands=bool(n_sub))
            if k_sums is not None:
                averaging.accumulate_corrected(*k_sums, k_wrow, ch.data, ch.model, ch.flag, ch.weight, part,
                                               tidx, ch.ant1, ch.ant2, k_bin, row_bl, fsamp, m.corr_src,
                                               diag, sky, t_off=t0, corr_use=corr_use, all_corr=all_corr)
        row_count += np.bincount(sbin, minlength=n_sbin)
        trel = times - t_ref            # relative times: sums of MJD seconds (~5e9) lose microseconds
        time_sum += np.bincount(sbin, weights=trel, minlength=n_sbin)
        wrow = w_row[rows]
        time_wsum += np.bincount(sbin, weights=wrow * trel, minlength=n_sbin)
        wsum_t += np.bincount(sbin, weights=wrow, minlength=n_sbin)
        del ch, rows            # tiers 2/3: the chunk is freed before the next one is read
    if runs is not None:
        averaging.flush_runs(*sums, runs)
        del runs
    if not (row_count > 0).any():
        return None
    sub_sums = None
    if n_sub:                       # the sub-bands' sums folded into their bins'
        sub_sums = (vis_sum, model_sum, w_sum)
        vis_sum, model_sum, w_sum = misfitcheck.fold(sub_sums, n_sub, 0 if bin_major else 2)
        if not bin_major:           # (measured on the bin-major layout only)
            sub_sums = None
    spw_sums = None
    if spw_of is not None:          # the SPWs' samples folded into the one the solve takes
        spw_sums = (vis_sum, model_sum, w_sum)
        vis_sum, model_sum, w_sum = (a.sum(axis=2, keepdims=True) for a in spw_sums)
    scan_sums = None
    if by_scan:                     # the scans' sums folded into their cells' (bin order kept)
        scan_sums = (vis_sum, model_sum, w_sum)
        vis_sum, model_sum, w_sum = (np.zeros((group.n_tcell,) + a.shape[1:], a.dtype) for a in scan_sums)
        for sb, ct in enumerate(np.asarray(cell_of_sbin, np.int64)):
            for a, b in zip((vis_sum, model_sum, w_sum), scan_sums):
                a[ct] += b[sb]
    return dict(vis_sum=vis_sum, model_sum=model_sum, w_sum=w_sum, row_count=row_count, time_sum=time_sum,
                time_wsum=time_wsum, wsum_t=wsum_t, t_ref=t_ref, slots=slots, bin_major=bin_major,
                parallel_power=parallel, spw_sums=spw_sums, spw_of=spw_of, k_frame=ks, scan_sums=scan_sums,
                sub_sums=sub_sums, n_sub=n_sub, k_span=k_span, k_sums=k_sums)


def _k_frame(ctx, step, g: FieldSpw) -> list:
    """The pre-applied K terms a G step is solved in the frame of (calibration/delayframe.py): each K
    of the chain that varies in time (per scan), has no solutions of this field in this SPW -- so it is
    taken nearest in time from other fields and may switch from one solution to the next inside a scan
    of this field -- and is followed by no gain of per-scan solutions (which took its per-scan error);
    for a G of one field and SPW whose cells lie within one scan (no 'inf' over several scans, no
    combine).  Empty otherwise (a K of the field itself is one value per scan: nothing moves in a
    cell).

    Our K is referenced to 0 Hz: pre-applied as it is, its switch inside a gain interval is a phase jump
    2 pi d tau nu between the interval's rows, which lowered the interval's amplitude (review 57c: a
    CASA-built VLA MS at 2-2.5 GHz, gains 0.1-0.3% low, akfluxscale 0.075% low; the loss grows with
    frequency).  In the frame, each row is corrected by K(t, nu) conj K(t, f_b) -- the delay about the
    gain's bin centre f_b, CASA's reference -- and the solved gain is stored as G conj K(t_s, f_b), K
    of the set's own field at its solution time (:func:`delayframe.own_factor`): the gain the apply's
    frame (:func:`delayframe.to_frame`) brings back to exactly what the solve fitted."""
    from .calibration import delayframe, kswitch
    from .calibration.spwmap import map_prior

    if not kswitch.framed(step) or len(g.members) != 1 or not g.prior:
        return []
    return delayframe.solve_k_terms(map_prior(g.prior, ctx.meta, g.ddid), int(g.spw.spw_id), g.fld.name)


def _unframe(sset, ks, spw_id):
    """In place: the gains of ``sset``, solved in the frame of ``ks`` (:func:`_k_frame`), times conj K of
    the set's own field at its solution times and frequency bins."""
    from .calibration import delayframe

    fac = np.conj(np.moveaxis(delayframe.own_factor(sset, ks, spw_id, np.asarray(sset.freq, float)), 0, 2))
    sset.jones = np.array(sset.jones)
    sset.jones[..., 0, 0] *= fac[..., 0]
    sset.jones[..., 1, 1] *= fac[..., 1]


def _combined_spw_samples(step, g: FieldSpw):
    """A gain (G, T) of one frequency sample solved over several SPWs (combine 'spw'): ``{DATA_DESC_ID:
    sample}`` (its members' SPWs in order), else None."""
    ddids = list(dict.fromkeys(m.ddid for m in g.members))
    if (len(ddids) < 2 or g.n_fsamp != 1 or g.chan_sampled or g.scan_sampled
            or not terms.get(step.jones_type).gain):
        return None
    return {d: k for k, d in enumerate(ddids)}


def _sample_slots(g: FieldSpw, group: Group):
    """KC over the whole band (channel- and scan-sampled, one freq bin): ``(k_of_sbin, n_k)``, the slot
    of each sample bin among the sample bins of its time cell (in sample-bin order) and the most slots
    of a cell; None for every other step.  Its sums are accumulated in the batch layout
    (n_tcell, n_bl, n_k * n_chan, 4) -- sample k * n_chan + channel of a cell is slot k's channel --
    and :func:`_make_batch` divides them in place (no transposed copy).  A sample bin without rows
    leaves its slot at weight 0 (where :func:`_make_batch`'s copy would leave it out)."""
    if not (g.chan_sampled and g.scan_sampled and g.n_fcell == 1):
        return None
    cells = np.asarray(group.sbin_cell, np.int64)
    k_of_sbin = np.zeros(len(cells), np.int64)
    count = np.zeros(max(group.n_tcell, 1), np.int64)
    for s, c in enumerate(cells):
        k_of_sbin[s] = count[c]
        count[c] += 1
    return k_of_sbin, int(max(count.max(), 1))


def _bin_major(g: FieldSpw, group: Group) -> bool:
    """CP and D (one frequency sample per bin, one time sample per sample bin) over a single time cell
    ('inf'): the sums are accumulated in the batch layout (n_fbin, n_bl, n_sbin, 4) -- the
    accumulation kernel writes them through a transposed view (its [bin, baseline, frequency sample]
    indexing) -- and :func:`_bin_batch` divides them in place.  The transposed copy of
    :func:`_make_batch` (n_sbin x the per-bin data, 0.74 GB for CP per channel over 15 scans of the
    8.9 GB benchmark MS) and its fresh memory are not needed; every sum is added in the same order,
    so the values are the copy's (tests/test_kccp_speed.py)."""
    return (not g.chan_sampled) and g.scan_sampled and group.n_tcell == 1


def _bin_batch(vis_sum, model_sum, w_sum, samples, fbin_of_chan, n_fcell, freqs, bl_a1, bl_a2, n_ant, ref):
    """CellBatch of bin-major sums (:func:`_bin_major`): cell (0, f) of freq bin f, samples the sample
    bins ``samples`` (those with rows, in order; the others are left out, as :func:`_make_batch`
    does: a copy of those samples when some bin has no rows), divided in place."""
    from .core.averaging import divide_sums
    from .solvers import CellBatch

    samples = np.asarray(samples, np.int64)
    if len(samples) != vis_sum.shape[2]:
        vis_sum, model_sum, w_sum = (np.ascontiguousarray(a[:, :, samples])
                                     for a in (vis_sum, model_sum, w_sum))
    n_f, n_bl, n_s, _ = vis_sum.shape
    flat = [a.reshape(n_f, n_bl * n_s, 4) for a in (vis_sum, model_sum, w_sum)]
    divide_sums(*flat, *flat)
    freq = np.repeat(_bin_centres(freqs, fbin_of_chan, n_fcell)[:, None], n_s, axis=1)
    batch = CellBatch(vis=vis_sum, model=model_sum, weight=w_sum, ant1=bl_a1.astype(np.int32),
                      ant2=bl_a2.astype(np.int32), freq=freq, n_ant=n_ant, ref_ant=int(ref))
    return batch, [(0, jf) for jf in range(n_f)]


def _solve_accumulated(ctx, step, g: FieldSpw, group: Group, acc: dict):
    """CellBatch of the group's accumulated sums -> solvers.solve -> a SolutionSet (quality applied)."""
    from . import solvers

    cfg, jt = ctx.cfg, g.jt
    cell_of_sbin = group.sbin_cell
    present = acc["row_count"] > 0
    # --- time cells of the group (drop cells with no rows at all)
    cells_t = np.unique(cell_of_sbin[present])
    if g.scan_sampled:     # one time sample per sample bin with rows
        tsamples = [np.nonzero((cell_of_sbin == ct) & present)[0] for ct in cells_t]
    else:                # the accumulator bin is the time cell
        tsamples = [np.array([ct]) for ct in cells_t]
    sums = [acc.pop("vis_sum"), acc.pop("model_sum"), acc.pop("w_sum")]
    if acc.get("slots") is not None:     # KC over the whole band: the sums are the batch
        batch, cell_index = _slot_batch(*sums, cells_t, g.freqs, acc["slots"][1], g.bl_a1, g.bl_a2,
                                        g.n_ant, ctx.ref)
    elif acc.get("bin_major"):          # CP / D over one time cell: the sums are the batch
        batch, cell_index = _bin_batch(*sums, tsamples[0], g.fbin_of_chan, g.n_fcell, g.freqs, g.bl_a1,
                                       g.bl_a2, g.n_ant, ctx.ref)
    else:
        batch, cell_index = _make_batch(*sums, tsamples, g.fbin_of_chan, g.n_fcell, g.freqs,
                                        g.chan_sampled, g.bl_a1, g.bl_a2, g.n_ant, ctx.ref,
                                        zeros=lambda shape, dtype: _zeros(ctx, shape, dtype),
                                        empty=lambda shape, dtype: _zeros(ctx, shape, dtype, fill=False))
    batch.ref_ants = tuple(ctx.refs)
    if cfg.solver_backend == "numba":
        from . import warmup            # the background compile busy with this type's solvers: wait for
        warmup.wait_for(jt)             # it rather than compile them again here (cold start, issue 16)
    pol_fraction = None
    model_power = None
    cp_key = (step.key, g.fid, g.ddid, int(group.scan_id), tuple(group.scans))     # (a CP unit's)
    parallel = acc.get("parallel_power")
    # the calibrator's mean model power per weight in the parallel hands (a sample of the rows as read)
    # and in the cross hands (CP's batch, in the feed frame, before the offsets change its model): what
    # sizes the leakage a gain solved on it absorbed before D (calibration/leakcheck.py); from the
    # offsets' own pass when they are removed, else one pass of its own
    cross_power = np.zeros((batch.n_cell, 2)) if parallel is not None and parallel[1] > 0 else None
    # CP only (its closed form takes the offsets; KC does not): a literal type check, kept
    cp_changed = None
    if jt == "CP" and (ctx.cp_offsets or all(terms.get(t.jones_type).diagonal for t in g.prior)):
        # the not-yet-solved leakage: a per-baseline offset (cross_phase.remove_leakage_offsets);
        # once a D is in the model, the model's cross hands carry the leakage themselves -- unless that
        # D is an earlier round's (ctx.cp_offsets): then the offsets absorb its error
        from .solvers import cross_phase
        first = ctx.cp_offset_cells.get(cp_key)
        if ctx.cp_offsets and first is not None and len(first) == batch.n_cell:
            changed = cross_phase.remove_leakage_offsets(batch, cells=first,     # the first round's cells
                                                         model_power=cross_power)
        else:
            changed = cross_phase.remove_leakage_offsets(batch, model_power=cross_power)
            if not ctx.cp_offsets:
                ctx.cp_offset_cells[cp_key] = changed
        cp_changed = changed
        log.debug("%s: leakage offsets removed in %d/%d cells", step.key, int(changed.sum()), batch.n_cell)
        num, den = (None, None) if cross_power is None else cross_power.sum(axis=0)
    elif cross_power is not None:
        from .solvers import cross_phase
        num, den = cross_phase.cross_model_power(batch)
    if cross_power is not None:
        model_power = (parallel[0] / parallel[1], num / den if den > 0 else float("nan"))
        ctx.cp_model_power[cp_key] = model_power
    elif jt == "CP":                    # a later round: the first round's (its model held no D)
        model_power = ctx.cp_model_power.get(cp_key)
    if jt == "D":        # the cross hands only, as CASA's Df (leakage.cross_hands_only), once the parallel
        from .solvers import leakage         # hands are seen to match the model (or D comes out scaled)
        fields = sorted({m.fld.name for m in g.members})
        leakage.check_parallel_hands(batch, f"{step.key} (D) on field(s) {fields}", log)
        # (calibration/leakcheck.py; not with a D pre-applied: its leakage would be in the model)
        pol_fraction = None if _d_preapplied(g) else leakage.model_pol_fraction(batch)
        gauge_info = None
        if cfg.leakage_gauge == "absolute":        # the data must fix the common offset (leakage.py)
            gauge_info = leakage.absolute_gauge_info(batch)
            _check_absolute_gauge(batch, step, fields, gauge_info, cfg, pol_fraction)
            batch.leakage_gauge = "absolute"
        leakage.cross_hands_only(batch)
        batch.feed_basis = g.spw.feed_basis          # the gauge: free fit for linear feeds only
    opts = solvers.SolveOptions(phase_only=step.phase_only, amp_only=step.amp_only,
                                max_iter=cfg.max_iter, tol=cfg.tol, gpu=cfg.gpu,
                                min_bl_per_ant=cfg.min_bl_per_ant, min_snr=cfg.min_snr,
                                flag_nonconverged=True)
    res = solvers.solve(jt, batch, backend=cfg.solver_backend, opts=opts)
    if jt == "T":           # one gain for both hands: do the hands agree? (a literal type check, kept)
        _check_t_hands(ctx, step, g, batch, res)
    if acc.get("spw_sums") is not None:     # one gain for several SPWs: do the SPWs agree?
        _check_combined_spws(ctx, step, g, acc, [cells_t[it] for it, _ in cell_index], res)
    span = None
    if acc.get("scan_sums") is not None:    # a gain over several scans: did they need gains of their own?
        from .calibration import spancheck
        span = spancheck.measure(acc.pop("scan_sums"), group, cells_t, cell_index, res, jt, step.phase_only,
                                 g.bl_a1, g.bl_a2, g.n_ant)
    k_span = acc.pop("k_span", None)
    if k_span is not None:                  # a K over several scans: do the scans' own delays agree?
        from .calibration import spancheck
        k_sums = acc.pop("k_sums", None)
        if k_sums is not None:
            span = spancheck.measure_k(k_sums, k_span[1], k_span[2], cells_t, cell_index, res, g.freqs,
                                       g.fbin_of_chan, g.n_fcell, g.bl_a1, g.bl_a2, g.n_ant,
                                       max_iter=cfg.max_iter, tol=cfg.tol)
            del k_sums
        else:                               # over the budget: the scans counted, nothing measured
            n_t = len(cells_t)
            span = {"n_scans": [int(len(np.unique(k_span[2][k_span[1] == ct]))) for ct in cells_t],
                    "dev": [float("nan")] * n_t, "sigma": [float("nan")] * n_t, "floor": [float("nan")] * n_t,
                    "noise": [float("nan")] * n_t, "unmeasured_bytes": int(k_span[3])}
    misfit = None
    if jt in ("CP", "D"):                   # does the term's model fit the data? (across the band, in time)
        from .calibration import misfitcheck
        misfit = misfitcheck.measure(jt, batch, cp_changed, acc.pop("sub_sums", None),
                                     tsamples[0] if acc.get("bin_major") else None, acc.get("n_sub", 0),
                                     res.params)
    moved = getattr(batch, "free_reference_leakage", None)       # D: what CASA's gauge moved
    if moved is not None and g.spw.feed_basis == "linear":
        from .calibration import leakcheck      # only where it may matter (the gauge note's test)
        frac = pol_fraction if pol_fraction is not None and np.isfinite(pol_fraction) else 0.0
        if np.nanmax(moved, initial=0.0) * 2 * frac \
                > leakcheck.THRESHOLD:
            from .solvers import leakage
            gauge_info = leakage.absolute_gauge_info(batch)
    # the memory of the sums and of the batch, each array's owner once (KC's batch is its sums; a
    # view's owner is its base), for the next step's _zeros
    spare = list({id(o): o for o in (a if a.base is None else a.base
                                     for a in sums + [batch.vis, batch.model, batch.weight])}.values())
    del sums, batch
    _keep_spare(ctx, spare)
    del spare
    sset = _solution_set(ctx, step, g, group, acc, cells_t, res, cell_index)
    if acc.get("k_frame"):  # solved in the frame of another field's per-scan K: stored in ours (0 Hz)
        _unframe(sset, acc["k_frame"], int(g.spw.spw_id))
    if model_power is not None:
        sset.diagnostics["model_power"] = model_power
    if span is not None:
        sset.diagnostics["k_scan_span" if jt == "K" else "scan_span"] = span
    if misfit is not None:
        sset.diagnostics["crosshand_misfit"] = misfit
    if jt == "D":
        sset.diagnostics["model_pol_fraction"] = pol_fraction
        sset.attrs["leakage_gauge"] = cfg.leakage_gauge      # (reference: d_pq[ref_ant] = 0)
        if moved is not None and gauge_info is not None and np.isfinite(gauge_info).any():
            ok = np.isfinite(moved)
            sset.diagnostics["free_reference_leakage"] = float(moved[ok].max()) if ok.any() else None
            sset.diagnostics["absolute_gauge_info"] = float(np.nanmin(gauge_info))
    return sset


#: T warns when its hands' gains differ in phase by more than this (radians; and 3x the noise; a
#: common phase of one hand over every antenna cancels in the parallel hands and is not counted)
T_HAND_PHASE = 0.1
#: ... or in amplitude by more than this fraction (and 3x the noise)
T_HAND_AMPLITUDE = 0.1


def _check_t_hands(ctx, step, g, batch, res):
    """A WARNING (once per step) when the two hands' gains differ in phase or amplitude under T's one
    gain (solvers.scalar_gain.hand_mismatch): the pre-applied terms did not align them (review 53a:
    Stokes I 0.93-0.95 of the truth, the imaginary part 0.2 of I, rchi2 ~5e7, silently; CASA's
    gaintype T flagged most solutions there).  Amplitudes since session 54: each antenna's hands a
    fraction ``a`` apart leave Stokes I right to first order but put ``a I`` into Q (linear feeds) or V
    (circular): the corrected pp, qq are (1 -/+ a) of the truth."""
    from .solvers import scalar_gain

    key = ("t_hands_warned", step.key)
    if ctx.stats.get(key):
        return
    if step.amp_only:       # calmode 'a' fitted the samples' amplitudes (solvers.common.amplitudes_only):
        from .solvers.common import amplitudes_only     # the data's phases are not the hands' difference
        batch = amplitudes_only(batch)
    got = scalar_gain.hand_mismatch(batch, np.where(res.flags[..., None], np.nan, res.params))
    if got is None:
        return
    d, a, noise = got
    ph = d > T_HAND_PHASE and d > 3 * noise
    amp = a > T_HAND_AMPLITUDE and a > 3 * noise
    if ph or amp:
        ctx.stats[key] = True
        fields = sorted({m.fld.name for m in g.members})
        what = " and ".join(x for x, on in (("phase", ph), ("amplitude", amp)) if on)
        # (no figure for Stokes I: it depends on how the differences spread over the antennas -- a
        # review measured 0.59-0.88 where cos(d / 2) of the median said 0.93-0.97)
        log.warning("%s (T) on field(s) %s: the two hands' gains differ in %s by a median of %.1f deg and "
                    "%.1f%% across antennas (noise %.1f deg, %.1f%%), which T's one gain for both hands "
                    "cannot hold: the corrected hands keep the differences (%s); align the hands first "
                    "(pre-apply a gain solved per hand, e.g. a bandpass or a G of a calibrator) or solve G",
                    step.key, fields, what, np.degrees(d), 100 * a, np.degrees(noise), 100 * noise,
                    "Stokes I comes out low and complex" if ph else
                    "Stokes I is right to first order, but about that fraction of it goes into Q for "
                    "linear feeds, V for circular")


def _check_combined_spws(ctx, step, g, acc, bins, res):
    """A WARNING (once per step) when the SPWs of a gain solved with combine 'spw' differ from its one
    gain by more than solvers.combined_spw.THRESHOLD (median over antennas, and 3x the noise): the
    pre-applied terms leave them out of phase with each other (review 54a: 3C286 -5.4% to +2.2% per SPW,
    rchi2 120x the per-SPW solve's, silently)."""
    from .solvers import combined_spw

    key = ("combined_spw_warned", step.key)
    if ctx.stats.get(key):
        return
    got = combined_spw.mismatch(*acc["spw_sums"], np.asarray(bins, np.int64), g.bl_a1, g.bl_a2, res.jones)
    spw_ids = {k: int(ctx.meta.spws[d].spw_id) for d, k in acc["spw_of"].items()}
    bad = [(spw_ids[k], x) for k, x in enumerate(got)
           if x is not None and x[0] > combined_spw.THRESHOLD and x[0] > 3 * x[2]]
    if not bad:
        return
    ctx.stats[key] = True
    fields = sorted({m.fld.name for m in g.members})
    worst = max(bad, key=lambda b: b[1][0])
    # a K of several solution times pre-applied (per scan): each SPW's delay error times its frequency moves
    # its phase from one K solution to the next, which no gain over 'inf' removes (review 54h)
    k_times = [len({float(t) for st in p.sets for t in np.atleast_1d(st.time)}) for p in g.prior
               if p.jones_type == "K"]
    hint = ("; a K with several solution times (per scan) is pre-applied: each SPW's delay error times its "
            "frequency moves that SPW's phase from one K solution to the next, which a gain over 'inf' does "
            "not remove -- solve the K over a longer interval" if any(n > 1 for n in k_times) else "")
    log.warning("%s (combine 'spw') on field(s) %s: the data of SPW %s differ from the one gain of SPWs %s "
                "by a median of %.1f%% (%.1f deg in phase) across antennas (noise %.2g%%)%s: the terms "
                "pre-applied before it leave the SPWs out of phase with each other, so each SPW is corrected "
                "with the others' offsets; pre-apply a gain solved per SPW on the calibrator first (e.g. a G "
                "over 'inf' without combine) or solve without combine='spw'%s", step.key, fields, worst[0],
                ", ".join(str(v) for v in sorted(spw_ids.values())), 100 * worst[1][0],
                np.degrees(worst[1][1]), 100 * worst[1][2],
                "" if len(bad) == 1 else f" (also SPW {', '.join(str(b[0]) for b in bad if b is not worst)})",
                hint)


#: rows per chunk whose parallel-hand model power a CP step samples (_measures_model_power)
MODEL_POWER_ROWS = 256


def _d_preapplied(g):
    """A D among the terms pre-applied to this step (its leakage is then in the step's model)."""
    return any(t.jones_type == "D" for t in g.prior)


def _measures_model_power(ctx, step, g):
    """A CP step of a block with a D step, without a D pre-applied to it, where calibration/leakcheck.py
    may warn (one round, or gains pre-applied from another run): it records its calibrator's model
    power per hand, which sizes the leakage the gains absorbed before D on that field."""
    cfg = ctx.cfg
    if step.jones_type != "CP" or _d_preapplied(g):
        return False
    kinds = {st.jones_type for st in cfg.steps}
    return "D" in kinds and (cfg.iterations == 1 or cfg.external_preapply is not None)


def _check_absolute_gauge(batch, step, fields, r, cfg=None, pol_fraction=None):
    """leakage_gauge 'absolute': every cell with data must carry at least ABSOLUTE_MIN_INFO of one
    antenna's information on the gauge mode (``r``: solvers/leakage.absolute_gauge_info), or the step
    stops with an error naming the parameter (the data do not fix the absolute leakage there), and why
    when it can tell: ``apply_parang`` false (the model's polarisation does not turn in the feed frame;
    review 58f), or a model without polarised flux (``pol_fraction``, leakage.model_pol_fraction)."""
    from .errors import ParameterError
    from .solvers import leakage

    r = leakage.absolute_gauge_info(batch) if r is None else r
    bad = np.isfinite(r) & (r < leakage.ABSOLUTE_MIN_INFO)
    if bad.any():
        worst = float(np.nanmin(r))
        worst = 0.0 if worst < 1e-12 else worst
        why = ""
        no_parang = cfg is not None and not cfg.apply_parang
        still = _feeds_still(cfg)
        if still:
            why = (f" The antennas' mounts ({still}) keep the feeds at one angle on the sky, so the "
                   "polarised flux never turns in the feed frame, whatever the parallactic-angle range: "
                   "use leakage_gauge 'reference' with D on an unpolarised calibrator (review 59d).")
        elif pol_fraction is not None and np.isfinite(pol_fraction) and pol_fraction < 1e-3:
            why = (f" The model of {', '.join(fields)} has no polarised flux in the cross hands (their "
                   f"amplitude {pol_fraction:.1g} of the parallel hands'): an unpolarised calibrator never "
                   f"fixes it" + (" (apply_parang is false -- akcal parang=False --, which for an "
                                  "unpolarised model changes nothing)." if no_parang else "."))
        elif no_parang:
            why = (" apply_parang is false (akcal parang=False): the model is not rotated by the parallactic "
                   "angle, so its polarised flux does not turn in the feed frame as the data's does -- set "
                   "apply_parang: true (parang=True), which a D on a polarised calibrator needs anyway.")
        raise ParameterError({"leakage_gauge": [
            f"'absolute': in {int(bad.sum())} of {int(np.isfinite(r).sum())} solution cells of "
            f"{step.key} (D) on {', '.join(fields)} the data do not fix the absolute leakage: the "
            f"calibrator's polarised flux in the feed frame varies too little over the cell (information "
            f"on the common leakage "
            f"{worst:.2g} of one antenna's, at least {leakage.ABSOLUTE_MIN_INFO} needed). Solve D on a "
            f"polarised calibrator over a wide range of parallactic angle (time_interval 'inf'), or use "
            f"leakage_gauge 'reference' (CASA's).{why}"]})


def _feeds_still(cfg) -> str:
    """The mounts as text where none turns the feeds against the sky (every MOUNT EQUATORIAL or unknown:
    jones/parang.mount_kind), else '' (also when the MS cannot be read: only an error's explanation)."""
    if cfg is None:
        return ""
    try:
        from .calibration.polparang import feeds_rotate
        from .core import ms_io

        meta = ms_io.read_meta(cfg.ms)
        rotate, kinds = feeds_rotate(cfg.ms, meta)
        return "" if rotate else kinds
    except Exception:       # noqa: BLE001 -- an explanation never replaces the error it explains
        return ""


def _solution_set(ctx, step, g: FieldSpw, group: Group, acc, cells_t, res, cell_index):
    """Assemble the (n_ant, n_freq, n_time, 2, 2) grid, the cell times and the attributes."""
    from .io.hdf5 import SolutionSet

    cfg, jt, n_ant, n_fcell, spw, fld = ctx.cfg, g.jt, g.n_ant, g.n_fcell, g.spw, g.fld
    cell_of_sbin = group.sbin_cell
    present = acc["row_count"] > 0
    row_count, time_sum, time_wsum, wsum_t, t_ref = (acc[k] for k in ("row_count", "time_sum", "time_wsum",
                                                                      "wsum_t", "t_ref"))
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
    fcent = _bin_centres(g.freqs, g.fbin_of_chan, n_fcell)
    from .calibration.chainid import prior_identity
    prior_ids, prior_written, prior_roles = prior_identity(g.prior, ctx.term_ids)
    attrs = dict(
        jones_type=jt, field_name=fld.name, scan_id=int(group.scan_id), scans=list(group.scans),
        spw=int(spw.spw_id), n_ant=n_ant, field_ra=float(fld.ra), field_dec=float(fld.dec),
        matrix_form=terms.get(jt).matrix_form, ref_ant=int(ctx.ref),
        ref_ant_name=g.active_names[ctx.ref], ant_names=g.active_names,
        solint_s=step.time_interval.solint_s, time_interval=step.time_interval.text,
        freqint_hz=_freqint_hz(step.freq_interval_hz, g),
        freq_interval=step.freq_interval_text, phase_only=bool(step.phase_only),
        amp_only=bool(step.amp_only),
        feed_basis=spw.feed_basis, solver_backend=cfg.solver_backend,
        apply_parang=bool(cfg.apply_parang), ms=os.path.abspath(str(cfg.ms)),     # (hdf5.resolve_ms)
        preapply_chain=[t.key for t in g.prior], alakazam_version=__version__,
        # where each pre-applied term came from ('' = solved in this run: this table); akexport frames
        # a gain by a per-scan K of another table through it (io/casatable.delay_frame)
        preapply_tables=[str(getattr(t, "source", "")) for t in g.prior],
        # the time interpolation each was pre-applied with: the delay frame evaluates a per-scan K at
        # the gain's solution times as the solve did (calibration/delayframe.own_factor)
        preapply_interp=[str(t.time_interp) for t in g.prior],
        # the identity of this term and of each pre-applied one (calibration/chainid.py: an apply warns
        # when another term takes the place of one this term was solved with)
        term_id=_own_identity(ctx, step.key)[0], term_written=_own_identity(ctx, step.key)[1],
        preapply_ids=prior_ids, preapply_written=prior_written, preapply_roles=prior_roles,
        # the model the solutions are relative to (akfluxscale's model flux): a column, or CASA's smodel
        model_column="" if cfg.smodel else str(cfg.model_col),
        smodel=[float(x) for x in (cfg.smodel or [])],
        channels=np.asarray(g.chans, dtype=np.int64),
    )
    if not cfg.apply_parang and jt in ("KC", "CP", "D"):
        # solved without the parallactic angle: the model's polarisation, for the apply's check
        # (calibration/polparang.apply_notes: a D of an unpolarised calibrator is right so)
        fr = [(ctx.stats.get("model_polarisation") or {}).get(m.fid) for m in g.members]
        fr = [float(x) for x in fr if x is not None and np.isfinite(x)]
        if fr:
            attrs["model_polarisation"] = max(fr)
    sset = SolutionSet(jones=jones, flags=flags, time=times, freq=fcent, delay=delay,
                       converged=conv, n_iter=niter, cost=cost, attrs=attrs)
    sset.extra = {"ref_ant": refused}
    if "pol_flags" in res.extra:        # a per-hand term (K, G): flags per hand (core/handflags.py)
        from .core.handflags import antenna_flags, recorded_hands
        pol = np.empty((n_ant, n_fcell, n_t, 2), bool)
        ref_hand = np.empty((n_fcell, n_t, 2), np.int32)
        for c, (it, jf) in enumerate(cell_index):
            pol[:, jf, it] = res.extra["pol_flags"][c]
            ref_hand[jf, it] = res.extra["ref_ant_hand"][c]
        # every SPW the unit solved together (combine='spw': an RR-only SPW beside a 4-correlation one)
        sset.attrs["hands"] = sorted({h for m in g.members for h in recorded_hands(
            ctx.meta.spws[m.ddid].corr_types)})
        sset.pol_flags = pol
        sset.flags[:] = antenna_flags(pol, sset.attrs["hands"])
        sset.extra["ref_ant_hand"] = ref_hand
    _quality(sset, res, cell_index, cfg.min_snr)
    return sset


def _own_identity(ctx, key):
    """(term_id, term_written) of step ``key`` of the solve (made here when the caller did not: a
    context built outside flow.run_solve)."""
    if key not in ctx.term_ids:
        from .calibration.chainid import new_identity
        ctx.term_ids[key] = new_identity()
    return ctx.term_ids[key]


def _quality(sset, res, cell_index, min_snr=0.0):
    """SNR grid into ``solver_stats/snr`` (n_ant, n_freq, n_time, 2) and chi2 / nDOF into
    ``solver_stats/rchi2`` (n_freq, n_time), freq bins with an outlier chi2 and bandpass outlier
    channels (G with >= 4 freq bins) flagged (:mod:`alakazam.solvers.quality`), and the counts of
    solutions flagged per reason kept on ``sset.quality`` (logged by the step; not written)."""
    from .solvers import quality

    n_ant, n_f, n_t = sset.flags.shape
    snr = np.zeros((n_ant, n_f, n_t, 2))
    rchi2 = np.full((n_f, n_t), np.nan)
    counts = {}
    n = len(cell_index)
    from .solvers.quality import REASONS

    for name in REASONS:
        counts[name] = int(np.asarray(res.extra.get(name, np.zeros(0, bool)))[:n].sum())
    wmean = np.full((n_f, n_t), np.nan) if "wmean" in res.extra else None
    # each cell's values into its (time, freq) place, all cells at once (a cell per channel: 1024 here)
    it, jf = (np.array([x[k] for x in cell_index], np.int64).reshape(n) for k in (0, 1))
    snr[:, jf, it] = np.asarray(res.extra["snr"])[:n].transpose(1, 0, 2)
    rchi2[jf, it] = np.asarray(res.extra["rchi2"])[:n]
    if wmean is not None:
        wmean[jf, it] = np.asarray(res.extra["wmean"])[:n]
    # K, phase-only G / T: the phase-only fit's chi2 / nDOF (quality.phase_only_snr), akexport's scale
    rchi2_phase = None
    if "rchi2_phase" in res.extra:
        rchi2_phase = np.full((n_f, n_t), np.nan)
        rchi2_phase[jf, it] = np.asarray(res.extra["rchi2_phase"])[:n]
    counts["outlier_chi2"] = counts["outlier_channel"] = 0
    # misfit local to a bin counts as noise (quality.local_excess): its SNR divided, minsnr again below
    with np.errstate(divide="ignore", invalid="ignore"):      # nDOF = chi2 / (chi2 / nDOF) (quality.snr)
        dof = np.where(rchi2 > 0, np.maximum(sset.cost, 0.0) / rchi2, np.nan)
    gain = terms.get(sset.attrs.get("jones_type")).gain
    # the bins with a usable solution (one unflagged antenna / hand): the only ones a bin's chi2 / nDOF
    # is compared with (quality.neighbour_median; flagged RFI channels beside a survivor hid it)
    if sset.pol_flags is not None:
        usable = (~sset.pol_flags[..., list(sset.attrs.get("hands", (0, 1)))]).any(axis=(0, -1))
    else:
        usable = (~sset.flags).any(axis=0)
    # their chi2 reference, once for both rules (as each computes it: non-finite chi2 = no data)
    ref = (quality.neighbour_median(np.where(np.isfinite(rchi2), rchi2, np.nan), usable)
           if rchi2.shape[0] >= 4 else None)
    excess = quality.local_excess(rchi2, dof, quality.gain_power(sset.jones, sset.flags) if gain else None,
                                  wmean if gain else None, usable=usable, ref=ref)
    low = np.zeros(snr.shape, bool)
    if (excess > 1).any():
        snr /= np.sqrt(excess)[None, :, :, None]
        if min_snr and min_snr > 0:
            low = (snr < float(min_snr)) & (excess > 1)[None, :, :, None]
    if sset.pol_flags is not None:      # per hand (core/handflags.py): the same checks on each hand
        _quality_hands(sset, rchi2, snr, counts, low, usable, ref)
        sset.extra["snr"] = snr
        sset.extra["rchi2"] = rchi2
        if rchi2_phase is not None:
            sset.extra["rchi2_phase"] = rchi2_phase
        sset.quality = counts
        return
    new = np.broadcast_to(quality.chi2_outlier_bins(rchi2, usable, ref)[None], sset.flags.shape) & ~sset.flags
    if new.any():
        sset.flags |= new
        counts["outlier_chi2"] = int(new.sum())
    new = low.any(-1) & ~sset.flags
    if new.any():
        sset.flags |= new
        counts["minsnr"] += int(new.sum())
    if terms.get(sset.attrs.get("jones_type")).gain and n_f >= 4:
        new = quality.outlier_channels(sset.jones, sset.flags, snr,
                                       cell_ref=sset.extra.get("ref_ant")) & ~sset.flags
        if new.any():
            sset.flags |= new
            counts["outlier_channel"] = int(new.sum())
    sset.jones[sset.flags] = np.nan
    if sset.delay is not None:
        sset.delay[sset.flags] = np.nan
    sset.extra["snr"] = snr
    sset.extra["rchi2"] = rchi2
    if rchi2_phase is not None:
        sset.extra["rchi2_phase"] = rchi2_phase
    sset.quality = counts


def _quality_hands(sset, rchi2, snr, counts, low, usable=None, ref=None):
    """:func:`_quality`'s outlier checks on a per-hand set: an outlier chi2 bin flags both hands of
    every antenna, an SNR below minsnr after the local excess (``low``) or an outlier bandpass
    channel its own hand; ``flags`` follows (core/handflags.py).  ``usable``: the bins with an
    unflagged hand before these checks, ``ref`` their chi2 reference (:func:`quality.chi2_outlier_bins`)."""
    from .core.handflags import antenna_flags, nan_flagged
    from .solvers import quality

    pol = sset.pol_flags
    n_f = pol.shape[1]
    hands = list(sset.attrs.get("hands", (0, 1)))
    new = quality.chi2_outlier_bins(rchi2, usable, ref)[None, :, :, None] & ~pol
    if new.any():       # counted per solution (antenna, bin, time) newly not whole, as the other checks
        counts["outlier_chi2"] = int((new[..., hands].any(-1) & ~pol[..., hands].any(-1)).sum())
        pol |= new
    new = low & ~pol
    new[..., [h for h in (0, 1) if h not in hands]] = False
    if new.any():
        counts["minsnr"] += int((new[..., hands].any(-1) & ~pol[..., hands].any(-1)).sum())
        pol |= new
    if terms.get(sset.attrs.get("jones_type")).gain and n_f >= 4:
        refs = sset.extra.get("ref_ant_hand", sset.extra.get("ref_ant"))
        new = quality.outlier_channels(sset.jones, pol, snr, cell_ref=refs) & ~pol
        if new.any():
            counts["outlier_channel"] = int((new[..., hands].any(-1) & ~pol[..., hands].any(-1)).sum())
            pol |= new
    sset.flags[:] = antenna_flags(pol, sset.attrs.get("hands", (0, 1)))
    nan_flagged(sset.jones, sset.delay, pol)


def _bin_centres(freqs, fbin_of_chan, n_fcell):
    """Mean channel frequency of each freq bin (n_fcell,)."""
    return (np.bincount(fbin_of_chan, weights=freqs, minlength=n_fcell)[:n_fcell]
            / np.maximum(np.bincount(fbin_of_chan, minlength=n_fcell)[:n_fcell], 1))


def _slot_batch(vis_sum, model_sum, w_sum, cells_t, freqs, n_k, bl_a1, bl_a2, n_ant, ref):
    """CellBatch of sums accumulated in the batch layout (:func:`_sample_slots`): the time cells
    ``cells_t`` (those with rows), divided in place; sample k * n_chan + j has channel j's frequency."""
    from .core.averaging import divide_sums
    from .solvers import CellBatch

    if len(cells_t) != vis_sum.shape[0]:        # a time cell without rows: left out (a copy)
        vis_sum, model_sum, w_sum = vis_sum[cells_t], model_sum[cells_t], w_sum[cells_t]
    for c in range(vis_sum.shape[0]):
        divide_sums(vis_sum[c], model_sum[c], w_sum[c], vis_sum[c], model_sum[c], w_sum[c])
    freq = np.tile(np.asarray(freqs, float), (vis_sum.shape[0], n_k))
    batch = CellBatch(vis=vis_sum, model=model_sum, weight=w_sum, ant1=bl_a1.astype(np.int32),
                      ant2=bl_a2.astype(np.int32), freq=freq, n_ant=n_ant, ref_ant=int(ref))
    return batch, [(it, 0) for it in range(len(cells_t))]


def _make_batch(vis_sum, model_sum, w_sum, tsamples, fbin_of_chan, n_fcell, freqs, chan_sampled,
                bl_a1, bl_a2, n_ant, ref, zeros=None, empty=None):
    """Gather accumulated bins (n_acc, n_bl, n_fsamp, 4) into a CellBatch (K over the whole band: the
    accumulators themselves, divided in place).

    Cells are (time cell, freq bin) in that order; ``tsamples[it]`` lists the accumulator bins that are
    the time samples of time cell ``it``.  The samples of a cell are (time samples) x (frequency
    samples: the channels of the bin (K, KC) or the bin itself), padded with weight 0 to a common
    length.  Each sample is its weighted sum divided by its sum of weights (0 where that is 0).
    ``zeros(shape, dtype)`` allocates the batch (default: ``np.zeros`` with ordinary pages, see below);
    ``empty(shape, dtype)`` (default ``np.empty``) where every element is written (one frequency sample
    per cell: :func:`alakazam.core.averaging.gather_divide` writes each sample and padding once).
    """
    from .core.averaging import divide_sums, gather_divide
    from .solvers import CellBatch

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
    from .core import memory

    # fresh memory with ordinary pages: a transposed copy written tile by tile touches every huge page
    # at once, and their compaction on a machine whose RAM is full of page cache cost up to 0.3 s for
    # the 0.15 GB of a per-channel CP batch (0.04-0.07 s with ordinary pages)
    with memory.small_pages():
        alloc = (zeros or np.zeros) if chan_sampled else (empty or np.empty)
        vis = alloc((n_cell, n_bl, n_samp, 4), np.complex128)
        model = alloc((n_cell, n_bl, n_samp, 4), np.complex128)
        weight = alloc((n_cell, n_bl, n_samp, 4), np.float64)
    freq = np.zeros((n_cell, n_samp))
    fcent = _bin_centres(freqs, fbin_of_chan, n_fcell)
    cells = [(it, jf) for it in range(n_t) for jf in range(n_fcell)]
    if not chan_sampled:
        # one frequency sample per cell (G, D, CP): sample k of cell (it, jf) is accumulator bin
        # tsamples[it][k] of freq bin jf; padding samples get weight 0 and the bin's frequency
        samp = np.full((n_t, n_samp), -1, np.int64)
        for it, ts in enumerate(tsamples):
            samp[it, :len(ts)] = ts
        gather_divide(vis, model, weight, vis_sum, model_sum, w_sum, samp)
        freq[:] = np.tile(fcent, n_t)[:, None]
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


def _freqint_hz(width, g):
    """The solution bin width in Hz for the HDF5 attr: inf for full, a Channels count times the SPW's
    (selected) channel width."""
    if not width:
        return float("inf")
    chans = getattr(width, "channels", None)
    if chans is None:
        return float(width)
    cw = np.abs(np.asarray(g.spw.chan_width, float)[g.chans])
    return float(chans) * (float(np.median(cw)) if cw.size else float("nan"))
