"""MAD-based RFI flagging (numba), per row and per correlation across channels.

For each row and correlation independently: x = |V| / |M| where |M| > 0, else |V|; with the median
and sigma = 1.4826 * MAD of the unflagged channels, channels with |x - median| > threshold * sigma are
flagged.  Unflagged non-finite samples (NaN/Inf data) are always flagged and left out of the
statistics.  Rows (per correlation) with fewer than 4 usable channels, or with MAD = 0, are left
unchanged.  Statistics are per row, so the result does not depend on how rows are chunked.
"""

import numpy as np
from numba import prange

from .._numba import pjit
from ..errors import AlakazamError

#: Gaussian-consistent scale of the median absolute deviation
MAD_TO_SIGMA = 1.4826
#: minimum number of usable channels for statistics
MIN_CHANNELS = 4


@pjit
def _mad_flag(data, model, flag, threshold, out):
    # prange over rows: each row writes only out[row] -> race-free.
    n_row, n_chan, n_corr = data.shape
    for row in prange(n_row):
        x = np.empty(n_chan)
        xs = np.empty(n_chan)
        for corr in range(n_corr):
            n = 0
            for chan in range(n_chan):
                x[chan] = np.nan
                if flag[row, chan, corr]:
                    continue
                v = abs(np.complex128(data[row, chan, corr]))
                m = abs(np.complex128(model[row, chan, corr]))
                xv = v / m if m > 0 else v
                if np.isfinite(xv):
                    x[chan] = xv
                    xs[n] = xv
                    n += 1
                else:
                    out[row, chan, corr] = True
            if n < MIN_CHANNELS:
                continue
            med = np.median(xs[:n])
            for k in range(n):
                xs[k] = abs(xs[k] - med)
            sigma = MAD_TO_SIGMA * np.median(xs[:n])
            if not sigma > 0:
                continue
            for chan in range(n_chan):
                if np.isfinite(x[chan]) and abs(x[chan] - med) > threshold * sigma:
                    out[row, chan, corr] = True


def mad_flag(data, model, flag, threshold):
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

    Returns
    -------
    ndarray (row, chan, corr) bool
        ``flag`` plus the new outliers (a new array).
    """
    data = np.asarray(data)
    flag = np.asarray(flag, bool)
    if flag.shape != data.shape or data.ndim != 3:
        raise AlakazamError(f"flag: expected the data shape (row, chan, corr) {data.shape}, got {flag.shape}")
    out = flag.copy()
    if threshold is None or threshold <= 0 or data.shape[0] == 0:
        return out
    if not np.isfinite(threshold):
        raise AlakazamError(f"rfi_threshold: expected a finite number (<= 0 disables), got {threshold!r}")
    if model is None:
        model = np.broadcast_to(np.zeros((1, 1, 1), np.complex64), data.shape)
    elif np.shape(model) != data.shape:
        raise AlakazamError(f"model: expected shape {data.shape}, got {np.shape(model)}")
    _mad_flag(data, np.asarray(model), flag, float(threshold), out)
    return out
