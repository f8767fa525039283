"""Sample flags of the solve beyond the per-row MAD (:mod:`alakazam.core.rfi`): bad values and RFI
that a statistic across channels of one row cannot see.

Run on the raw data of a chunk as read (before pre-apply and accumulation), from
:func:`alakazam.unit._iter_group_chunks`, by :func:`flag_chunk` in this order: bad values, channel
statistics (:func:`flag_persistent`), the per-row MAD (:func:`alakazam.core.rfi.mad_flag`, on rows
with at least :data:`~alakazam.core.rfi.MIN_SOLVE_MAD_CHANNELS` usable channels: over fewer, a median and
MAD flag clean samples; after the channel statistics, so that a persistent RFI channel does not bias
the row's median and MAD), and
the extension again (:func:`extend`).

:func:`flag_bad_values` (always on)
    A sample is flagged when its DATA or WEIGHT is NaN/Inf, or WEIGHT < 0; a (row, channel) is flagged
    in every correlation when MODEL_DATA is NaN/Inf in any correlation (the model-side pre-apply
    mixes the four correlations) or zero in all of them (a zero model carries no gain information and
    would bias the weighted averages ``sum w V / sum w`` against ``sum w M / sum w``), or when DATA is
    exactly zero in all of them (a correlator dropout left unflagged: no signal, and the solvers took
    it for a dead antenna's data -- CASA's solvers use it unless flagdata clipzeros ran first).

:func:`flag_persistent` (with ``rfi_threshold > 0``)
    Statistics per *row group* -- the rows of a block of about :data:`BLOCK_INTEGRATIONS` consecutive
    integrations of one scan, counted from the scan's first integration (:func:`stat_blocks`; memory
    tiers 2 and 3 read whole blocks, :func:`block_reads`, so the flags do not depend on the tier) -- of
    ``x = |V| / |M|`` (|V| where M = 0) over the unflagged cross-correlation samples of the parallel
    hands, per channel:

    0. *row level*: L_r = the median of x over the row's unflagged channels;
    1. *bursts* (per baseline, across the group's integrations): a row whose L_r exceeds the
       baseline's median level by more than ``max(threshold * sigma, BURST_REL * median)`` is flagged
       in every channel (broadband RFI: the per-row MAD cannot see it, all channels rise together);
    1b. *time direction* (per channel, across the rows of the group) on the normalised ratio
       ``x / L_r`` (the gains and the source flux cancel, the bandpass shape remains): median m_c and
       sigma_c = 1.4826 MAD; a sample with ``|x/L - m_c| > max(threshold * sigma_c, MIN_REL_DEV m_c)``
       is flagged (intermittent narrow-band RFI);
    2. *persistent channels* (across channels, on the m_c of 1b): d_c = m_c - r_c, r_c the running
       median of m over the 7 channels centred on c (a smooth bandpass cancels); with
       sigma_d = 1.4826 MAD(d) over the channels, channel c is flagged in every row of the group
       when ``d_c > max(threshold * sigma_d, CHANNEL_REL_DEV * r_c)`` (one-sided: RFI adds power, a
       band edge that rolls off is kept) or when its scatter sigma_c exceeds both ``SCATTER_RATIO``
       times the running median of the scatter and ``CHANNEL_REL_DEV * m_c`` (RFI of random phase)
       -- a channel that carries RFI in every row (a satellite), which the per-row MAD only partly
       catches because the weakest RFI samples look normal;
    3. *extension within the group* (CASA flagdata extend: growtime / growfreq / extendpols; run
       again after the per-row MAD, :func:`extend`): a
       channel with more than ``GROW`` of its samples flagged is flagged in every row of the group, a
       row with more than ``GROW`` of its channels flagged is flagged in every channel, and every
       flag from 1-3 covers all correlations of the sample.

    Groups with fewer than :data:`MIN_ROWS` rows and channels with fewer than :data:`MIN_ROWS` usable
    samples are left alone; channel statistics need :data:`~alakazam.core.rfi.MIN_CHANNELS` channels.
    The cost is one row-parallel pass (x of the whole row in float32, :func:`alakazam.core.rfi.row_ratios`;
    a median per row and parallel hand over at most MAX_STAT_SAMPLES channels; the normalised ratios,
    float32) and two quickselects per (channel, parallel hand) over at most MAX_STAT_SAMPLES rows of a
    block, then the extension's two row passes on the thread pool: measured on 45000 rows x 1024
    channels x 4 correlations (1.5 GB of DATA), 0.5 s for the channel statistics, 0.37 s for the
    per-row MAD, 0.23 s for the bad values, 0.12 s for the final extension (2 cores).
"""

from __future__ import annotations

import numba
import numpy as np

from .._numba import njit, threaded
from . import rfi
from ..errors import AlakazamError
from .rfi import MAD_TO_SIGMA, MAX_STAT_SAMPLES, MIN_CHANNELS, _median, median_and_sigma, row_ratios

#: minimum rows of a group (and usable samples of a channel) for statistics
MIN_ROWS = 4
#: extension: a channel (row) with more than this fraction of its samples flagged is flagged whole
GROW = 0.5
#: a sample must also deviate from its channel's median (normalised) level by this fraction
MIN_REL_DEV = 0.2
#: a persistent channel must also exceed its neighbours' median level by this fraction (a peaked
#: bandpass sampled by few channels legitimately stands ~25% above the running median at its peak)
CHANNEL_REL_DEV = 0.5
#: ... or have a scatter across the rows this many times its neighbours' median scatter
SCATTER_RATIO = 2.0
#: a burst raises a row's level (median over channels) by more than this fraction of the baseline's
#: median level in the group
BURST_REL = 0.5
#: half width of the running median across channels
HALF_WINDOW = 3
# medians and MADs use at most about rfi.MAX_STAT_SAMPLES samples: the row level every
# (n_chan // MAX_STAT_SAMPLES)-th channel, the per-channel statistics every
# ceil(n_rows / MAX_STAT_SAMPLES)-th row of the block (deterministic, the same in every tier); every
# sample is still tested against them
#: a row group is a block of this many consecutive integrations of one scan (:func:`stat_blocks`)
BLOCK_INTEGRATIONS = 8


@njit
def _bad_values(start, stride, data, model, weight, flag, out, use_model):
    # rows start, start + stride, ... (_numba.threaded; each row writes only out[row])
    n_row, n_chan, n_corr = data.shape
    n_bad = 0
    for row in range(start, n_row, stride):
        nb = 0
        dr = data[row]             # row views (2-d indexing in the inner loops)
        mr = model[row] if use_model else model[0]
        wr = weight[row]
        fr = flag[row]
        orow = out[row]
        for chan in range(n_chan):
            mbad = True                     # DATA exactly 0 in every correlation: a correlator dropout
            for c in range(n_corr):
                v = np.complex128(dr[chan, c])
                if v.real != 0 or v.imag != 0:
                    mbad = False
                    break
            if use_model and not mbad:
                allzero = True
                for c in range(n_corr):
                    m = np.complex128(mr[chan, c])
                    if not (np.isfinite(m.real) and np.isfinite(m.imag)):
                        mbad = True
                    if m.real != 0 or m.imag != 0:
                        allzero = False
                mbad = mbad or allzero
            for c in range(n_corr):
                if fr[chan, c]:
                    orow[chan, c] = True
                    continue
                v = np.complex128(dr[chan, c])
                w = np.float64(wr[chan, c])
                if mbad or not (np.isfinite(v.real) and np.isfinite(v.imag)) or not np.isfinite(w) or w < 0:
                    orow[chan, c] = True
                    nb += 1
                else:
                    orow[chan, c] = False       # every element written: ``out`` may be np.empty
        n_bad += nb
    return n_bad


def flag_bad_values(data, model, weight, flag):
    """``(flags, n_new)``: ``flag`` (not modified) plus the samples with non-finite DATA/WEIGHT,
    negative WEIGHT, or a non-finite or all-zero MODEL (module docstring); n_new counts the newly
    flagged samples."""
    if data.shape[0] == 0:
        return np.array(flag, bool, copy=True), 0
    out = np.empty(data.shape, np.bool_)       # written whole by the kernel (no copy of ``flag`` first)
    use_model = model is not None
    m = model if use_model else np.zeros((1, 1, 1), np.complex64)
    w = np.broadcast_to(weight, data.shape)
    n = sum(threaded(_bad_values, data.shape[0], data, m, w, np.asarray(flag, bool), out, use_model))
    return out, int(n)


@njit
def _levels_and_ratios(start, step, data, model, out, rows, lo, hi, use_corr, use_model, level, buf, stride,
                       xkeep, keep_x):
    # one row-parallel pass over the rows[lo:hi] of a group (each row writes its own level and its own
    # column of buf: race-free): level[row, k] = median of x over the row's unflagged channels, every
    # stride-th (NaN when too few), buf[k, chan, i] = x / level (float32; NaN: flagged or unusable), so
    # the per-channel statistics then read contiguous memory.  x of the whole row first, in float32
    # (rfi.row_ratios: vectorised)
    # (thread ``start`` of ``step`` (_numba.threaded) takes one contiguous block of the group's rows:
    # interleaved rows would have both threads writing the same cache lines of buf, measured 2x slower)
    # ``keep_x``: the ratios of row rows[lo + i] are written to xkeep[i] (the per-row MAD then reads
    # them instead of computing them again, :func:`_persistent_into`)
    n_chan, n_corr = data.shape[1], data.shape[2]
    scratch = np.empty((n_chan, n_corr), np.float32)
    xs = np.empty(n_chan)
    per = (hi - lo + step - 1) // step
    for i in range(start * per, min((start + 1) * per, hi - lo)):
        row = rows[lo + i]
        orow = out[row]
        xr = xkeep[i] if keep_x else scratch
        row_ratios(data[row], model[row] if use_model else model[0], use_model, xr)
        for k in range(len(use_corr)):
            c = use_corr[k]
            cnt = np.int64(0)     # not a literal 0: _median compiles once (int64), not twice
            for chan in range(0, n_chan, stride):          # the level from every stride-th channel
                xv = xr[chan, c]
                if not orow[chan, c] and np.isfinite(xv):
                    xs[cnt] = xv
                    cnt += 1
            lv = np.float32(_median(xs, cnt)) if cnt >= MIN_CHANNELS else np.float32(np.nan)
            level[row, k] = lv
            col = buf[k, :, i]         # 1-d view (stride: the group's rows)
            if lv > 0:
                for chan in range(n_chan):
                    xv = xr[chan, c]
                    col[chan] = xv / lv if not orow[chan, c] and np.isfinite(xv) else np.nan
            else:
                col[:] = np.nan


@njit
def _bursts(out, level, seg_rows, seg_bounds, threshold, burst):
    # per segment (the rows of one baseline in one group, in time order): a row whose level exceeds
    # the segment's median level by more than BURST_REL of it and threshold robust sigmas is flagged
    n_chan, n_corr = out.shape[1], out.shape[2]
    n_k = level.shape[1]
    n_new = 0
    for g in range(len(seg_bounds) - 1):
        lo, hi = seg_bounds[g], seg_bounds[g + 1]
        n = hi - lo
        if n < 3:
            continue
        buf = np.empty(n)
        for k in range(n_k):
            cnt = np.int64(0)
            for i in range(lo, hi):
                v = level[seg_rows[i], k]
                if np.isfinite(v):
                    buf[cnt] = v
                    cnt += 1
            if cnt < 3:
                continue
            m = _median(buf, cnt)
            cnt2 = np.int64(0)
            for i in range(lo, hi):
                v = level[seg_rows[i], k]
                if np.isfinite(v):
                    buf[cnt2] = abs(v - m)
                    cnt2 += 1
            sd = MAD_TO_SIGMA * _median(buf, cnt2)
            for i in range(lo, hi):
                row = seg_rows[i]
                v = level[row, k]
                if np.isfinite(v) and v - m > max(threshold * sd, BURST_REL * abs(m)):
                    for chan in range(n_chan):
                        for c in range(n_corr):
                            out[row, chan, c] = True
                    burst[row] = True
                    n_new += 1
    return n_new


@njit
def _time_direction(start, stride, buf, out, rows, lo, threshold, med, sig, nuse, burst, step):
    # per channel (parallel): median and MAD across the group's rows of x / level(row), per parallel
    # hand; per-sample outliers flagged in every correlation (each channel writes only its own
    # column of ``out``: race-free)
    n_k, n_chan, n = buf.shape
    # (channels start, start + stride, ... on this thread: _numba.threaded)
    xs = np.empty(n)
    for chan in range(start, n_chan, stride):
        for k in range(n_k):
            bkc = buf[k, chan]                      # contiguous over the group's rows
            cnt = np.int64(0)
            for i in range(0, n, step):             # the statistics from every step-th row
                v = bkc[i]
                if np.isfinite(v) and not burst[rows[lo + i]]:
                    xs[cnt] = v
                    cnt += 1
            nuse[chan, k] = cnt
            if cnt < MIN_ROWS:
                continue
            m, s = median_and_sigma(xs, cnt)
            med[chan, k] = m
            sig[chan, k] = s
            lim = max(threshold * s, MIN_REL_DEV * abs(m))
            for i in range(n):
                v = bkc[i]
                if np.isfinite(v) and abs(v - m) > lim and not burst[rows[lo + i]]:
                    out[rows[lo + i], chan, :] = True


@njit
def _running_median(v, ok, chan, buf):
    nb = np.int64(0)
    for j in range(max(0, chan - HALF_WINDOW), min(len(v), chan + HALF_WINDOW + 1)):
        if ok[j]:
            buf[nb] = v[j]
            nb += 1
    return _median(buf, nb)


@njit(inline="always")
def _row_available_and_new(fr, pr, chan, use_corr):
    """(available, newly flagged) of one channel of a row over the correlations ``use_corr``: available
    = not flagged before the RFI stages (``pr = prior[row]``) in some of them; new = flagged now
    (``fr = out[row]``) in one of those.  Row views: 2-d indexing in the inner loops measured 6x faster
    than 3-d indexing in a serial kernel."""
    avail = False
    new = False
    for k in range(len(use_corr)):
        c = use_corr[k]
        if not pr[chan, c]:
            avail = True
            if fr[chan, c]:
                new = True
    return avail, new


@njit
def _bad_channels(n_chan, use_corr, threshold, med, sig, nuse):
    # the persistent channels of one group (n_chan,) bool, from its per-channel statistics
    bad_chan = np.zeros(n_chan, np.bool_)
    # 2. persistent channels, per parallel hand: deviation from the running median of the neighbours
    d = np.empty(n_chan)
    ref = np.empty(n_chan)
    buf = np.empty(2 * HALF_WINDOW + 1)
    ds = np.empty(n_chan)
    ok = np.zeros(n_chan, np.bool_)
    for k in range(len(use_corr)):
        n_ok = 0
        for chan in range(n_chan):
            ok[chan] = nuse[chan, k] >= 4 and np.isfinite(med[chan, k]) and np.isfinite(sig[chan, k])
            n_ok += ok[chan]
        if n_ok < MIN_CHANNELS:
            continue
        nd = np.int64(0)
        for chan in range(n_chan):
            d[chan] = np.nan
            if not ok[chan]:
                continue
            r = _running_median(med[:, k], ok, chan, buf)
            ref[chan] = r
            d[chan] = med[chan, k] - r
            ds[nd] = abs(d[chan])
            nd += 1
        # MAD of d about 0 (d is a deviation from the local level, centred by construction)
        sd = MAD_TO_SIGMA * _median(ds, nd)
        for chan in range(n_chan):
            if not ok[chan]:
                continue
            # RFI adds power: one-sided (a band edge that rolls off is not flagged)
            if d[chan] > max(threshold * sd, CHANNEL_REL_DEV * abs(ref[chan])):
                bad_chan[chan] = True
            elif sig[chan, k] > max(SCATTER_RATIO * _running_median(sig[:, k], ok, chan, buf),
                                    CHANNEL_REL_DEV * abs(med[chan, k])):
                bad_chan[chan] = True
    return bad_chan


@njit
def _count_new(start, stride, flag, prior, has_prior, rows, use_corr, counts):
    # rows[start::stride] (_numba.threaded): counts[start, 0, chan] += available, counts[start, 1, chan]
    # += newly flagged (:func:`_row_available_and_new`); each thread writes only counts[start]
    n_chan, n_corr = flag.shape[1], flag.shape[2]
    none = np.zeros((n_chan, n_corr), np.bool_)
    na = counts[start, 0]
    nf = counts[start, 1]
    for i in range(start, len(rows), stride):     # row-major: each row's channels are contiguous
        fr = flag[rows[i]]
        pr = prior[rows[i]] if has_prior else none
        for chan in range(n_chan):
            a, f = _row_available_and_new(fr, pr, chan, use_corr)
            na[chan] += a
            nf[chan] += f


@njit
def _flag_extended(start, stride, flag, prior, has_prior, rows, bad, use_corr):
    # rows[start::stride] (_numba.threaded; each row writes only itself): the channels ``bad`` in every
    # row, or the whole row when more than GROW of its available channels are newly flagged
    n_chan, n_corr = flag.shape[1], flag.shape[2]
    none = np.zeros((n_chan, n_corr), np.bool_)
    for i in range(start, len(rows), stride):
        fr = flag[rows[i]]
        pr = prior[rows[i]] if has_prior else none
        rna = 0
        rnf = 0
        for chan in range(n_chan):
            a, f = _row_available_and_new(fr, pr, chan, use_corr)
            rna += a
            rnf += f or (bad[chan] and a)      # a bad channel is newly flagged where it was available
        if rna > 0 and rnf > GROW * rna:
            fr[:, :] = True
        else:
            for chan in range(n_chan):
                if bad[chan]:
                    fr[chan, :] = True


@njit
def _grow_channels(bad, counts):
    # every channel with more than GROW of its available samples newly flagged joins ``bad``
    for chan in range(len(bad)):
        na = 0
        nf = 0
        for t in range(counts.shape[0]):
            na += counts[t, 0, chan]
            nf += counts[t, 1, chan]
        if not bad[chan] and na > 0 and nf > GROW * na:
            bad[chan] = True


@njit
def _extend_rows(flag, prior, has_prior, rows, bad, use_corr):
    """Extension over ``rows`` (the cross-correlation rows of one group), in place: ``bad`` (n_chan,)
    holds the channels already known bad and gains every channel with more than GROW of its available
    samples newly flagged; those channels are flagged in every row, then each row with more than GROW
    of its available channels newly flagged is flagged whole (all correlations).  Without a prior
    (``has_prior`` False) every sample is available.  Row-major loops on row views; serial (the
    kernels of :func:`_extend_rows_threaded` on one thread)."""
    if len(rows) == 0:
        return
    counts = np.zeros((1, 2, flag.shape[1]), np.int64)
    _count_new(0, 1, flag, prior, has_prior, rows, use_corr, counts)
    _grow_channels(bad, counts)
    _flag_extended(0, 1, flag, prior, has_prior, rows, bad, use_corr)


#: a group's extension runs on the thread pool from this many (row, channel) pairs (measured: 2000 groups
#: of 10 rows x 64 channels, 0.39 s threaded against 0.30 s serial)
THREADED_MIN_SAMPLES = 32768


def _extend_rows_threaded(flag, prior, rows, bad, use_corr):
    """:func:`_extend_rows` (with a prior) of one large group, its two row passes on the thread pool
    (the same flags: the counts are sums, each row is written by one thread); a small group (fewer than
    :data:`THREADED_MIN_SAMPLES` row-channels) serially: the pool's hand-over costs more than its work."""
    if len(rows) == 0:
        return
    if len(rows) * flag.shape[1] < THREADED_MIN_SAMPLES:
        _extend_rows(flag, prior, np.bool_(True), rows, bad, use_corr)
        return
    counts = np.zeros((numba.get_num_threads(), 2, flag.shape[1]), np.int64)
    threaded(_count_new, len(rows), flag, prior, np.bool_(True), rows, use_corr, counts)
    _grow_channels(bad, counts)
    threaded(_flag_extended, len(rows), flag, prior, np.bool_(True), rows, bad, use_corr)


def parallel_hands(corr_types):
    """Indices of the parallel-hand correlations (XX/YY, RR/LL) among ``corr_types``."""
    idx = [i for i, c in enumerate(corr_types) if str(c) in ("XX", "YY", "RR", "LL")]
    return np.asarray(idx or list(range(len(corr_types))), np.int64)


def flag_persistent(data, model, flag, group, ant1, ant2, use_corr, threshold):
    """Per-group channel statistics (module docstring).

    Parameters
    ----------
    data, model : (row, chan, corr) complex (model may be None: statistic |V|)
    flag : (row, chan, corr) bool, not modified
    group : (row,) int  -- the row group (:func:`stat_blocks`)
    ant1, ant2 : (row,) int -- antennas (autocorrelations are neither used nor flagged)
    use_corr : int array -- the correlations the statistics use (the parallel hands)
    threshold : float -- robust sigmas (rfi_threshold); <= 0 disables

    Returns
    -------
    (flags (row, chan, corr) bool, a new array; number of newly flagged samples)
    """
    out = np.array(flag, bool, copy=True)
    prior = np.asarray(flag, bool)
    return out, _persistent_into(data, model, out, prior, group, ant1, ant2, use_corr, threshold)


def _persistent_into(data, model, out, prior, group, ant1, ant2, use_corr, threshold, count=True,
                     then_mad=False):
    """:func:`flag_persistent` in place on ``out`` (which starts as ``prior``, the flags the channel
    extension counts from); returns the number of newly flagged samples (None with ``count=False``:
    two passes over the flags less).

    ``then_mad``: each group's rows then get the per-row MAD (:func:`alakazam.core.rfi.mad_flag`, in
    place) and the final extension (:func:`extend` with ``prior``) right after its channel statistics,
    the MAD from the ratios the statistics' pass computed (kept per group up to
    :data:`KEEP_X_BYTES`), and the rows outside the groups (autocorrelations) the MAD after them: the
    flags of :func:`flag_chunk`'s stages one after the other over the whole chunk, as each stage
    reads and writes only the rows of one group (or one row)."""
    n_row, n_chan = data.shape[:2]
    if threshold is None or threshold <= 0 or n_row == 0 or n_chan == 0:
        return 0
    use_model = model is not None
    m = model if use_model else np.zeros((1, 1, 1), np.complex64)
    ant1, ant2 = np.asarray(ant1), np.asarray(ant2)
    cross = ant1 != ant2
    group = np.asarray(group)
    sel = np.flatnonzero(cross)
    order = sel[np.argsort(group[sel], kind="stable")].astype(np.int64)
    if len(order) == 0:
        if then_mad:            # autocorrelations only: their per-row MAD all the same
            others = np.flatnonzero(~cross).astype(np.int64)
            if len(others):
                threaded(rfi._mad_flag_rows, len(others), others, _NO_X, False, data, m, use_model, out,
                         float(threshold))
        return 0
    g = group[order]
    cuts = np.flatnonzero(g[1:] != g[:-1]) + 1
    bounds = np.concatenate([[0], cuts, [len(order)]]).astype(np.int64)
    use_corr = np.asarray(use_corr, np.int64)
    n_k = len(use_corr)
    level = np.full((n_row, n_k), np.nan)
    burst = np.zeros(n_row, np.bool_)
    # bursts: per (group, baseline) across the group's integrations; ``so`` keeps the group order of
    # ``order`` (group is its first key), so a group's segments lie in its own [lo, hi)
    a_lo = np.minimum(ant1, ant2).astype(np.int64)[order]
    a_hi = np.maximum(ant1, ant2).astype(np.int64)[order]
    so = np.lexsort((a_hi, a_lo, g))
    sk = np.column_stack([g, a_lo, a_hi])[so]
    seg_cuts = np.flatnonzero((sk[1:] != sk[:-1]).any(axis=1)) + 1
    seg_bounds = np.concatenate([[0], seg_cuts, [len(so)]]).astype(np.int64)
    seg_rows = order[so]
    thr = float(threshold)
    stride = max(1, n_chan // MAX_STAT_SAMPLES)
    n_corr = data.shape[2]
    # the kept ratios: one buffer for the largest group, its leading rows for each (a new array per
    # group is a new mapping of tens of MB, its pages faulted again every group)
    most = int(np.diff(bounds).max())
    keep_x = then_mad and most * n_chan * n_corr * 4 <= KEEP_X_BYTES
    x_all = np.empty((most, n_chan, n_corr), np.float32) if keep_x else _NO_X
    for i in range(len(bounds) - 1):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        buf = np.empty((n_k, n_chan, hi - lo), np.float32)
        xkeep = x_all[:hi - lo] if keep_x else _NO_X
        threaded(_levels_and_ratios, hi - lo, data, m, out, order, lo, hi, use_corr, use_model, level, buf,
                 stride, xkeep, keep_x)
        sb = seg_bounds[(seg_bounds >= lo) & (seg_bounds <= hi)]
        _bursts(out, level, seg_rows, sb, thr, burst)
        if hi - lo < MIN_ROWS:
            if then_mad:
                _mad_and_extend(data, m, use_model, out, prior, order[lo:hi], xkeep, keep_x, thr, use_corr)
            continue
        med = np.full((n_chan, n_k), np.nan)
        sig = np.full((n_chan, n_k), np.nan)
        nuse = np.zeros((n_chan, n_k), np.int64)
        step = max(1, -(-(hi - lo) // MAX_STAT_SAMPLES))
        threaded(_time_direction, buf.shape[1], buf, out, order, lo, thr, med, sig, nuse, burst, step)
        bad = _bad_channels(n_chan, use_corr, thr, med, sig, nuse)
        # 3. extension: channels, then rows (counted over the parallel hands of the cross-correlations;
        # ``order`` holds only those rows).  Only what the RFI stages flagged counts, over the samples
        # that were unflagged before them (``prior``): antennas flagged in the MS (a dead antenna, a
        # drop-out) never extend to whole channels or rows -- in a small array they are most of a
        # channel's baselines.
        _extend_rows_threaded(out, prior, order[lo:hi], bad, use_corr)
        if then_mad:
            _mad_and_extend(data, m, use_model, out, prior, order[lo:hi], xkeep, keep_x, thr, use_corr)
    if then_mad:
        others = np.flatnonzero(~cross).astype(np.int64)        # autocorrelations: the MAD only
        if len(others):
            threaded(rfi._mad_flag_rows, len(others), others, _NO_X, False, data, m, use_model, out, thr)
    return int(np.count_nonzero(out) - np.count_nonzero(prior)) if count else None


#: a group's ratios (float32 per sample) are kept for its per-row MAD up to this many bytes (else the
#: MAD computes them again)
KEEP_X_BYTES = 256 << 20
_NO_X = np.zeros((1, 1, 1), np.float32)


def _mad_and_extend(data, m, use_model, out, prior, rows, xkeep, keep_x, thr, use_corr):
    """The per-row MAD of ``rows`` (one group's, in ``order``; the ratios in ``xkeep`` when kept), then
    the group's final extension (:func:`extend`'s, with ``prior``)."""
    threaded(rfi._mad_flag_rows, len(rows), rows, xkeep, keep_x, data, m, use_model, out, thr)
    _extend_rows_threaded(out, prior, rows, np.zeros(out.shape[1], np.bool_), use_corr)


def stat_blocks(scan, time):
    """Row group (n_row,) int64 of each row: ``scan * 2**20 + block``, block = (rank of the row's
    integration among the scan's integrations present) // BLOCK_INTEGRATIONS, with round(n / B) blocks
    per scan of n integrations (the remainder joins the last block, so no block has fewer than B/2
    integrations unless the scan has).  Depends only on the
    set of (scan, time) of the rows given, so the whole scans must be given (tier 1: the (field, SPW)
    read; tiers 2/3: the times of the group's rows, :func:`block_reads`)."""
    scan = np.asarray(scan, np.int64)
    time = np.asarray(time, float)
    if len(scan) == 0:
        return np.zeros(0, np.int64)
    # the distinct (scan, time) pairs in (scan, time) order and each row's pair: a lexsort and its
    # run boundaries (np.unique(axis=0) of the pairs gives the same, 4-5x slower)
    order = np.lexsort((time, scan))
    so, to = scan[order], time[order]
    new = np.ones(len(order), bool)
    new[1:] = (so[1:] != so[:-1]) | (to[1:] != to[:-1])
    inv = np.empty(len(order), np.int64)
    inv[order] = np.cumsum(new) - 1
    ps = so[new]
    first = np.searchsorted(ps, ps, side="left")               # pairs sorted by (scan, time)
    n_int = np.searchsorted(ps, ps, side="right") - first      # integrations of the pair's scan
    rank = np.arange(len(ps)) - first
    # round(n / B) blocks per scan, the remainder joining the last: every block has >= B/2 integrations
    n_blk = np.maximum(1, np.floor(n_int / BLOCK_INTEGRATIONS + 0.5).astype(np.int64))
    gid = ps * (2 ** 20) + np.minimum(rank // BLOCK_INTEGRATIONS, n_blk - 1)
    return gid[inv]


def block_reads(ms, rows, max_rows):
    """Split MS row numbers (of whole scans) into reads of whole row groups (:func:`stat_blocks`) of
    at most ``max_rows`` rows -- at least one group per read, so a group larger than ``max_rows`` is
    read whole.  Returns a list of (row numbers, group ids)."""
    from .ms_io import main_table

    rows = np.asarray(rows, np.int64)
    if len(rows) == 0:
        return []
    with main_table(str(ms)) as t:
        q = t.selectrows(rows)
        time = q.getcol("TIME")
        scan = q.getcol("SCAN_NUMBER")
        q.close()
    gid = stat_blocks(scan, time)
    order = np.argsort(gid, kind="stable")
    g = gid[order]
    cuts = np.concatenate([[0], np.flatnonzero(g[1:] != g[:-1]) + 1, [len(g)]])
    out, start = [], 0
    for i in range(1, len(cuts)):
        if cuts[i] - cuts[start] > max(int(max_rows), 1) and i - 1 > start:
            sel = np.sort(order[cuts[start]:cuts[i - 1]])
            out.append((rows[sel], gid[sel]))
            start = i - 1
    sel = np.sort(order[cuts[start]:])
    out.append((rows[sel], gid[sel]))
    return out


def flag_chunk(chunk, corr_types, threshold, groups=None):
    """All solve-time sample flags of a chunk as read: :func:`flag_bad_values` (always), then
    :func:`flag_persistent` and the per-row MAD of :func:`alakazam.core.rfi.mad_flag` (both with
    ``threshold > 0``) on the row groups ``groups`` (default :func:`stat_blocks` of the chunk).
    Returns the new flag array (``chunk.flag`` is not modified)."""

    flag, _ = flag_bad_values(chunk.data, chunk.model, chunk.weight, chunk.flag)
    if threshold is None or threshold <= 0 or chunk.n_row == 0:
        return flag
    prior = flag.copy()                 # what the RFI stages below start from (extension counts theirs)
    if groups is None:
        groups = stat_blocks(chunk.scan, chunk.time)
    # the channel statistics first: a persistent RFI channel left in the rows would bias the per-row
    # median and MAD (destructive RFI makes a legitimate bandpass peak look like an outlier).  Every
    # stage works in place on ``flag`` (the same flags as the copying public functions)
    use = parallel_hands(corr_types)
    if not np.isfinite(threshold):
        raise AlakazamError(f"rfi_threshold: expected a finite number (<= 0 disables), got {threshold!r}")
    # then, group by group, the per-row MAD and the extension again (``then_mad``: the same flags as
    # rfi.mad_flag over the chunk then extend, from the ratios the channel statistics computed)
    _persistent_into(chunk.data, chunk.model, flag, prior, groups, chunk.ant1, chunk.ant2, use, threshold,
                     count=False, then_mad=True)
    return flag


@njit
def _extend_groups(start, stride, flag, prior, has_prior, order, starts, use_corr):
    # row groups start, start + stride, ... on this thread (_numba.threaded; disjoint rows: each group
    # writes only its own rows)
    n_chan = flag.shape[1]
    for gi in range(start, len(starts) - 1, stride):
        _extend_rows(flag, prior, has_prior, order[starts[gi]:starts[gi + 1]], np.zeros(n_chan, np.bool_),
                     use_corr)


def extend(flag, groups, cross, use_corr, prior=None):
    """Extension within the row groups (in place; returned): a channel with more than GROW of its
    available cross-correlation samples newly flagged (in any of ``use_corr``) is flagged in every row
    of the group, then a row with more than GROW of its available channels newly flagged is flagged
    whole; all correlations.  "Newly" and "available" are relative to ``prior`` (the flags before the
    RFI stages; None = no flags before): flags already in the MS (a dead or dropped antenna) never
    extend.  One compiled pass per group (:func:`_extend_groups`)."""
    rows = np.flatnonzero(cross)
    if len(rows) == 0:
        return flag
    order = rows[np.argsort(np.asarray(groups)[rows], kind="stable")].astype(np.int64)
    g = np.asarray(groups)[order]
    starts = np.concatenate([[0], np.flatnonzero(g[1:] != g[:-1]) + 1, [len(order)]]).astype(np.int64)
    has_prior = prior is not None
    pr = np.asarray(prior, bool) if has_prior else np.zeros((1, 1, 1), np.bool_)
    threaded(_extend_groups, len(starts) - 1, flag, pr, has_prior, order, starts,
             np.asarray(use_corr, np.int64))
    return flag
