"""MAD-based RFI flagging (numba), per row and per correlation across channels.

For each row and correlation independently: x = |V| / |M| where |M| > 0, else |V|; with the median
and sigma = 1.4826 * MAD of the unflagged channels, channels with |x - median| > threshold * sigma are
flagged.  Unflagged non-finite samples (NaN/Inf data) are always flagged and left out of the
statistics.  Rows (per correlation) with fewer than 4 usable channels, or with MAD = 0, are left
unchanged.  Statistics are per row, so the result does not depend on how rows are chunked.

x is computed as sqrt(|V|^2 / |M|^2) (one square root per sample; equal to |V| / |M| to rounding)
and the medians by an in-place quickselect on a per-row scratch buffer (exactly np.median: the mean of
the two middle values for an even count).
"""

import numpy as np

from .._numba import njit, threaded
from ..errors import AlakazamError

#: Gaussian-consistent scale of the median absolute deviation
MAD_TO_SIGMA = 1.4826
#: minimum number of usable channels for statistics
MIN_CHANNELS = 4


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


@njit
def _mad_flag(start, stride, data, model, flag, threshold, out, use_model):
    # rows start, start + stride, ... on this thread (_numba.threaded): each row writes only out[row]
    # -> race-free.  Medians by in-place quickselect on a scratch buffer (no allocation per median).
    n_row, n_chan, n_corr = data.shape
    x = np.empty(n_chan)
    xs = np.empty(n_chan)
    for row in range(start, n_row, stride):
        # row views: 2-d indexing in the inner loops (faster than 3-d indexing in a serial kernel)
        dr = data[row]
        mr = model[row] if use_model else model[0]
        fr = flag[row]
        orow = out[row]
        for corr in range(n_corr):
            n = np.int64(0)     # not a literal 0: _median compiles once (int64), not twice
            for chan in range(n_chan):
                x[chan] = np.nan
                if fr[chan, corr]:
                    continue
                v = np.complex128(dr[chan, corr])
                v2 = v.real * v.real + v.imag * v.imag
                xv = np.sqrt(v2)
                if use_model:
                    m = np.complex128(mr[chan, corr])
                    m2 = m.real * m.real + m.imag * m.imag
                    if m2 > 0:
                        xv = np.sqrt(v2 / m2)
                if np.isfinite(xv):
                    x[chan] = xv
                    xs[n] = xv
                    n += 1
                else:
                    orow[chan, corr] = True
            if n < MIN_CHANNELS:
                continue
            med, sigma = median_and_sigma(xs, n)
            if not sigma > 0:
                continue
            lim = threshold * sigma
            for chan in range(n_chan):
                if np.isfinite(x[chan]) and abs(x[chan] - med) > lim:
                    orow[chan, corr] = True


def mad_flag(data, model, flag, threshold, out=None):
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

    Returns
    -------
    ndarray (row, chan, corr) bool
        ``flag`` plus the new outliers (``out``, or a new array).
    """
    data = np.asarray(data)
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
    threaded(_mad_flag, data.shape[0], data, np.asarray(model), flag, float(threshold), out, use_model)
    return out
