"""MAD-based RFI flagging (numba), per row and per correlation across channels.

For each row and correlation independently: x = |V| / |M| where |M| > 0, else |V|; with the median
and sigma = 1.4826 * MAD of the unflagged channels, channels with |x - median| > threshold * sigma are
flagged.  Unflagged non-finite samples (NaN/Inf data) are always flagged and left out of the
statistics.  Rows (per correlation) with fewer than 4 usable channels, or with MAD = 0, are left
unchanged.  Statistics are per row, so the result does not depend on how rows are chunked.

The median and MAD come from at most about :data:`MAX_STAT_SAMPLES` of the row's usable channels: every
s-th usable channel in channel order, s = max(1, n_usable // MAX_STAT_SAMPLES) (so 256-511 samples when
a row has more than 511 usable channels, all of them otherwise); every channel is still tested against
them.  With 1024 channels this is 4x less selection work, and the sigma of 256 samples is within ~7%
of the full row's (the robust-sigma estimate's own scatter).  The channel statistics of
:mod:`alakazam.core.cellflags` subsample the same way.

x is computed in float32 (the precision of DATA) as sqrt(|V|^2 / |M|^2), a whole row at a time in a
branch-free loop the compiler vectorises (3.7x faster than float64 with a branch per sample, with
its range test; equal to
|V| / |M| to float32 rounding; a row whose float32 squares leave float32's range, |V| or |M| beyond
~1e19 or below ~1e-19, is recomputed in float64; a ratio beyond float32's range counts as non-finite
and is flagged), and
the medians by an in-place quickselect on a per-row scratch buffer (exactly np.median of the samples:
the mean of the two middle values for an even count).  The MAD's own quickselect is skipped when no
value of the row can exceed the limit whatever the MAD's exact value (:func:`_mad_clears`: one
counting pass shows the MAD at least large enough), and the solve's per-row MAD takes the median of a
parallel hand from the channel statistics' row level when that was computed over the same values
(:func:`_mad_flag_rows`): the same flags, the per-row MAD 2.6x faster on 128 channels.
"""

import numpy as np

from .._numba import njit, threaded
from ..errors import AlakazamError

#: Gaussian-consistent scale of the median absolute deviation
MAD_TO_SIGMA = 1.4826
#: minimum number of usable channels for statistics
MIN_CHANNELS = 4
#: the solve-time flags' per-row MAD needs this many usable channels of the row: a median and MAD of
#: fewer flag clean Gaussian samples far beyond the threshold's rate (at 5 sigma, measured by
#: simulation: 2.3% of samples at 4 channels, 0.7% at 8, 0.15% at 16, 0.02% at 32, ~3e-6 at 256); a
#: narrower row is left to the channel statistics across rows (core/cellflags.py).  akflag's explicit
#: mode='mad' (:func:`mad_flag`) tests every row of at least MIN_CHANNELS.
MIN_SOLVE_MAD_CHANNELS = 32
#: medians and MADs use at most about this many samples (every s-th usable one; module docstring)
MAX_STAT_SAMPLES = 256


@njit
def _select(a, n, k):
    # k-th smallest (0-based) of a[:n], reordering a[:n] in place so that on return
    # a[:k] <= a[k] <= a[k + 1:n].  Quickselect with a branch-free Lomuto partition (the comparison
    # result is added to the store index instead of branching on it: 2-4x faster than numba's
    # np.median on these data, whose comparisons the branch predictor cannot guess); insertion sort
    # below 25 elements.
    lo = 0
    hi = n - 1
    state = np.uint64(0x9E3779B97F4A7C15) + np.uint64(n)
    while hi - lo > 24:
        # pivot: the median of 3 pseudo-random elements (xorshift; fixed seed, so deterministic).  The
        # per-channel ratios are smooth in frequency and their deviations V-shaped: a pivot from fixed
        # positions (first, middle, last) splits those badly
        size = np.uint64(hi - lo + 1)
        state ^= state << np.uint64(13)
        state ^= state >> np.uint64(7)
        state ^= state << np.uint64(17)
        x = a[lo + np.int64(state % size)]
        y = a[lo + np.int64((state >> np.uint64(21)) % size)]
        z = a[lo + np.int64((state >> np.uint64(42)) % size)]
        pivot = max(min(x, y), min(max(x, y), z))
        store = lo
        for i in range(lo, hi + 1):         # a[lo:store] < pivot <= a[store:i]
            v = a[i]
            a[i] = a[store]
            a[store] = v
            store += v < pivot
        if k < store:
            hi = store - 1
        elif store > lo:
            lo = store
        else:
            # nothing below the pivot (it is the minimum): gather the elements equal to it in front
            for i in range(lo, hi + 1):
                v = a[i]
                a[i] = a[store]
                a[store] = v
                store += v <= pivot
            if k < store:
                return pivot                # a[lo:store] == pivot <= a[store:]
            lo = store
    for i in range(lo + 1, hi + 1):
        v = a[i]
        j = i - 1
        while j >= lo and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v
    return a[k]


@njit
def _median(a, n):
    # median of a[:n] (n >= 1), as np.median: the mean of the two middle values for even n; reorders a
    h = n // 2
    if n % 2 == 1:
        return _select(a, n, h)
    lo = _select(a, n, h - 1)
    hi = a[h]
    for k in range(h + 1, n):          # a[h:] >= lo after the select: its minimum is the next value
        if a[k] < hi:
            hi = a[k]
    return (lo + hi) / 2


@njit(inline="always")
def median_and_sigma(xs, n):
    """(median, 1.4826 MAD) of xs[:n] (n >= 1); xs[:n] is overwritten (the absolute deviations)."""
    med = _median(xs, n)
    for k in range(n):
        xs[k] = abs(xs[k] - med)
    return med, MAD_TO_SIGMA * _median(xs, n)


#: :func:`_mad_flag_rows` without known medians
NO_KNOWN = np.zeros((1, 1, 2))
NO_KNOWN_CORR = np.zeros(0, np.int64)

#: float32's smallest normal and largest value: a square or quotient outside them lost precision
_TINY32 = np.float32(np.finfo(np.float32).tiny)
_HUGE32 = np.float32(np.finfo(np.float32).max)


@njit
def _row_ratios64(d1, m1, use_model, x1):
    # flat_row_ratios in float64 (a row whose float32 squares or quotient left float32's normal range)
    for i in range(len(d1)):
        v = np.complex128(d1[i])
        v2 = v.real * v.real + v.imag * v.imag
        m2 = 0.0
        if use_model:
            m = np.complex128(m1[i])
            m2 = m.real * m.real + m.imag * m.imag
        x1[i] = np.float32(np.sqrt(v2 / m2) if m2 > 0 else np.sqrt(v2))


@njit(inline="always")
def _ratio_sample(v, m):
    # one sample of the float32 ratio pass with a model: (x = |V| / |M| (|V| where M = 0), whether
    # float32 is exact enough for it, V == 0, M == 0) -- the one definition of _ratios_flat's and
    # cellflags._ratios_codes' per-sample expressions.  NaN data or model give the same x in float32
    # and float64 (NaN; |V|): not a reason to redo
    v2 = np.float32(v.real * v.real + v.imag * v.imag)
    m2 = np.float32(m.real * m.real + m.imag * m.imag)
    q = v2 / m2 if m2 > 0 else v2
    vz = (v.real == 0) & (v.imag == 0)
    mz = (m.real == 0) & (m.imag == 0)
    ok = (((((v2 >= _TINY32) & (q >= _TINY32)) | vz) & (q <= _HUGE32)
           & ((m2 >= _TINY32) | mz | (m2 != m2))) | (v2 != v2))
    return np.sqrt(q), ok, vz, mz


@njit(inline="always")
def _ratio_sample_nomodel(v):
    # _ratio_sample without a model: (x = |V|, float32 exact enough, V == 0)
    v2 = np.float32(v.real * v.real + v.imag * v.imag)
    vz = (v.real == 0) & (v.imag == 0)
    return np.sqrt(v2), (((v2 >= _TINY32) | vz) & (v2 <= _HUGE32)) | (v2 != v2), vz


@njit(inline="always")
def _ratios_flat(d1, m1, use_model, x1):
    # flat_row_ratios' float32 pass: one loop over the row's (channel, correlation) samples in memory
    # order, which the compiler vectorises (measured 2.8x faster than nested loops over channels and
    # correlations, whose 4-long inner loop did not); the number of samples to redo in float64
    n = len(d1)
    n_bad = np.int64(0)
    if use_model:
        for i in range(n):
            x, ok, _, _ = _ratio_sample(d1[i], m1[i])
            x1[i] = x
            n_bad += np.int64(not ok)
    else:
        for i in range(n):
            x, ok, _ = _ratio_sample_nomodel(d1[i])
            x1[i] = x
            n_bad += np.int64(not ok)
    return n_bad


@njit
def flat_row_ratios(d1, m1, use_model, x1):
    """x = |V| / |M| (|V| where |M| = 0 or without a model) of every (channel, correlation) sample of
    one row, from its flat views ``d1``, ``m1`` (n_chan * n_corr,: a row of a C-contiguous
    (row, chan, corr) array viewed as (row, chan * corr), :func:`flat_rows`; ``m1`` not read without a
    model), in float32 into ``x1``: no branch per sample, so the loop is vectorised.  A row where a
    float32 square or quotient left float32's normal range (|V| or |M| beyond ~1e19 or below ~1e-19,
    or x beyond that) is recomputed in float64: x is |V| / |M| to float32 rounding at every scale,
    non-finite only where x itself is beyond float32's range.

    One loop for every row width: the flat row views cost nothing per row (a row of a 2-d array), so
    narrow rows need no nested-loop variant (a reshape per row made the flat loop 2-9x slower than
    nested loops at 1-4 channels), and the solve compiles one ratio loop (issue 16, cold start)."""
    if _ratios_flat(d1, m1, use_model, x1):
        _row_ratios64(d1, m1, use_model, x1)


@njit(inline="always")
def flat_rows(a):
    """A C-contiguous (row, chan, corr) array viewed as (row, chan * corr): its rows are the flat
    row views of :func:`flat_row_ratios` (one reshape per kernel call, none per row)."""
    return a.reshape(a.shape[0], a.shape[1] * a.shape[2])


@njit
def row_ratios(dr, mr, use_model, xr):
    """:func:`flat_row_ratios` of one row given as (n_chan, n_corr) views ``dr``, ``mr`` of any layout
    (copied when not C-contiguous), into ``xr`` (n_chan, n_corr) C-contiguous."""
    flat_row_ratios(np.ascontiguousarray(dr).reshape(dr.size), np.ascontiguousarray(mr).reshape(mr.size),
                    use_model, xr.reshape(xr.size))


@njit(inline="always")
def thin(xs, n):
    """Keep every s-th of xs[:n] (s = max(1, n // MAX_STAT_SAMPLES)) at the front; returns their count."""
    s = max(1, n // MAX_STAT_SAMPLES)
    if s == 1:
        return n
    m = np.int64(0)
    for i in range(0, n, s):
        xs[m] = xs[i]
        m += 1
    return m


@njit
def _mad_clears(xs, n, med, dmax, threshold):
    """True when no deviation of at most ``dmax`` can exceed ``threshold * (MAD_TO_SIGMA * mad)``, mad the
    median of ``|xs[:n] - med|`` (n >= 1) -- decided without that median: with D0 such that the limit
    computed from D0 is >= dmax (checked in floating point), mad >= D0 as soon as fewer than the
    median's rank of the deviations lie below D0 (one counting pass instead of a quickselect; the
    limit is monotone in mad, so the flags are those of the exact MAD).  False: undecided (the caller
    computes the MAD)."""
    if dmax <= 0:
        return True                     # (the limit is >= 0: a MAD is never negative)
    d0 = dmax / (threshold * MAD_TO_SIGMA) * (1.0 + 1e-12)
    if not threshold * (MAD_TO_SIGMA * d0) >= dmax:
        return False
    below = np.int64(0)
    for q in range(n):
        below += abs(xs[q] - med) < d0
    # odd n: mad = the (n // 2)-th smallest deviation; even: the mean of the (n // 2 - 1)-th and
    # (n // 2)-th, >= D0 when both are
    return below <= (n // 2 if n % 2 == 1 else n // 2 - 1)


@njit(inline="always")
def _mad_row(xr, fr, orow, threshold, xs, min_n, upper, kmed, kcnt):
    # one row's MAD flags from its ratios xr (n_chan, n_corr): reads fr (its flags), writes orow (may
    # be fr itself: each correlation reads its flags before it writes them); ``upper``: only x above
    # the median by more than the limit (the solve-time flags: _mad_flag_rows).  ``kmed[corr]``: the
    # median of the row's values in correlation corr when they are ``kcnt[corr]`` in number and not
    # thinned (the channel statistics' row level, computed before any flag the values since lost:
    # flags are only added, so the same count is the same values; -1: unknown)
    n_chan, n_corr = xr.shape
    for corr in range(n_corr):
        n = np.int64(0)     # not a literal 0: _median compiles once (int64), not twice
        for chan in range(n_chan):
            if fr[chan, corr]:
                continue
            xv = xr[chan, corr]
            if np.isfinite(xv):
                xs[n] = xv
                n += 1
            else:
                orow[chan, corr] = True
        if n < min_n:
            continue
        hi = xs[0]
        lo = xs[0]
        for q in range(1, n):          # the extremes of every tested value (before the thinning)
            hi = max(hi, xs[q])
            lo = min(lo, xs[q])
        nt = thin(xs, n)
        med = kmed[corr] if kcnt[corr] == n and nt == n else _median(xs, nt)
        if _mad_clears(xs, nt, med, hi - med if upper else max(hi - med, med - lo), threshold):
            continue                    # no value beyond the limit, whatever the MAD's exact value
        for q in range(nt):
            xs[q] = abs(xs[q] - med)
        sigma = MAD_TO_SIGMA * _median(xs, nt)
        if not sigma > 0:
            continue
        lim = threshold * sigma
        for chan in range(n_chan):
            xv = xr[chan, corr]
            dev = xv - med if upper else abs(xv - med)
            if not fr[chan, corr] and np.isfinite(xv) and dev > lim:
                orow[chan, corr] = True


@njit
def _mad_flag(start, stride, data, model, flag, threshold, out, use_model, upper):
    # rows start, start + stride, ... on this thread (_numba.threaded): each row writes only out[row]
    # -> race-free.  Medians by in-place quickselect on a scratch buffer (no allocation per median).
    # ``data``, ``model`` C-contiguous (flat row views, flat_rows)
    n_row, n_chan, n_corr = data.shape
    d2 = flat_rows(data)
    m2 = flat_rows(model)
    x1 = np.empty(n_chan * n_corr, np.float32)
    xr = x1.reshape(n_chan, n_corr)
    xs = np.empty(n_chan)
    kmed = np.zeros(n_corr)
    kcnt = np.empty(n_corr, np.int64)
    for q in range(n_corr):
        kcnt[q] = -1                            # no known medians (a loop: np.full is one more compile)
    for row in range(start, n_row, stride):
        # row views: 2-d indexing in the inner loops (faster than 3-d indexing in a serial kernel)
        flat_row_ratios(d2[row], m2[row] if use_model else m2[0], use_model, x1)
        _mad_row(xr, flag[row], out[row], threshold, xs, MIN_CHANNELS, upper, kmed, kcnt)


@njit
def _mad_flag_rows(start, stride, rows, xkept, has_x, data, model, use_model, flag, threshold, known,
                   known_corr):
    # _mad_flag in place on ``flag`` for rows[start::stride] (_numba.threaded); with ``has_x`` the
    # ratios of rows[i] are xkept[i] (kept by the channel statistics' pass, the same values).
    # ``known[i, k]`` = (median, count) of the values of row rows[i] in correlation known_corr[k] when
    # the channel statistics computed it from all of them (count -1: not; core/cellflags.py
    # _levels_and_ratios): where the row still has that many, the median is not computed again
    # (_mad_row); ``known_corr`` empty: none known.
    # ONE-SIDED (the solve-time flags): x = |V| / |M| across a row's channels carries the instrument's
    # bandpass, so a rolled-off band edge sits below the row's median by many of its MAD sigmas at high
    # SNR (the two-sided test flagged every edge channel at gain 0.5, and channels at 0.95 of the peak
    # at SNR 135; CASA's bandpass solves them); RFI adds power.  A sample low in its own channel is the
    # channel statistics' (core/cellflags.py 1b, two-sided against the channel's own level).
    # ``data``, ``model`` C-contiguous (flat row views, flat_rows); one _mad_row in the kernel (not one
    # per source of the ratios: half the code to compile, issue 16)
    n_chan, n_corr = data.shape[1], data.shape[2]
    d2 = flat_rows(data)
    m2 = flat_rows(model)
    x1 = np.empty(n_chan * n_corr, np.float32)
    scratch = x1.reshape(n_chan, n_corr)
    xs = np.empty(n_chan)
    kmed = np.zeros(n_corr)
    kcnt = np.empty(n_corr, np.int64)
    for q in range(n_corr):
        kcnt[q] = -1
    for i in range(start, len(rows), stride):
        row = rows[i]
        if has_x:
            xr = xkept[i]
        else:
            flat_row_ratios(d2[row], m2[row] if use_model else m2[0], use_model, x1)
            xr = scratch
        for k in range(len(known_corr)):
            kmed[known_corr[k]] = known[i, k, 0]
            kcnt[known_corr[k]] = np.int64(known[i, k, 1])
        _mad_row(xr, flag[row], flag[row], threshold, xs, MIN_SOLVE_MAD_CHANNELS, True, kmed, kcnt)


def mad_flag(data, model, flag, threshold, out=None, upper=False):
    """MAD outlier flags, per row and correlation over channels.

    Parameters
    ----------
    data : ndarray (row, chan, corr) complex
    model : ndarray (row, chan, corr) complex or None
        With a model the statistic is |V| / |M| (where |M| > 0), which removes the source
        spectrum; without, |V|.
    flag : ndarray (row, chan, corr) bool
        Existing flags (not modified).
    threshold : float
        Outlier threshold in robust sigmas; <= 0 (or None) disables flagging.

    out : ndarray (row, chan, corr) bool, optional
        Where to write the result (may be ``flag`` itself: each (row, correlation) reads its flags
        before it writes them); default a new array.
    upper : bool
        Flag only x above the median by more than the limit (the solve-time flags' one-sided test,
        :func:`_mad_flag_rows`); default both sides (akflag mode='mad').

    Returns
    -------
    ndarray (row, chan, corr) bool
        ``flag`` plus the new outliers (``out``, or a new array).
    """
    data = np.ascontiguousarray(data)       # (the kernels' flat row views; a copy only when strided)
    flag = np.asarray(flag, bool)
    if flag.shape != data.shape or data.ndim != 3:
        raise AlakazamError(f"flag: expected the data shape (row, chan, corr) {data.shape}, got {flag.shape}")
    if out is None:
        out = flag.copy()
    elif out is not flag:
        out[...] = flag
    if threshold is None or threshold <= 0 or data.shape[0] == 0:
        return out
    if not np.isfinite(threshold):
        raise AlakazamError(f"rfi_threshold: expected a finite number (<= 0 disables), got {threshold!r}")
    use_model = model is not None
    if model is None:
        model = np.zeros((1, 1, 1), np.complex64)           # not read (use_model False)
    elif np.shape(model) != data.shape:
        raise AlakazamError(f"model: expected shape {data.shape}, got {np.shape(model)}")
    threaded(_mad_flag, data.shape[0], data, np.ascontiguousarray(model), flag, float(threshold), out,
             use_model, bool(upper))
    return out
