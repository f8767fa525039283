"""MAD-based RFI flagging (numba), per row and per correlation across channels.

For each row and correlation independently: x = |V| / |M| where |M| > 0, else |V|; with the median
and sigma = 1.4826 * MAD of the unflagged channels, channels with |x - median| > threshold * sigma are
flagged.  Statistics are per row, so the result does not depend on how rows are chunked.
"""

import numpy as np
from numba import prange

from .._numba import pjit


@pjit
def _mad_flag(data, model, flag, threshold, out):
    n_row, n_chan, n_corr = data.shape
    for row in prange(n_row):
        x = np.empty(n_chan)
        for c in range(n_corr):
            n = 0
            for chan in range(n_chan):
                if not flag[row, chan, c]:
                    m = abs(model[row, chan, c])
                    v = abs(data[row, chan, c])
                    x[n] = v / m if m > 0 else v
                    n += 1
            if n < 4:
                continue
            med = np.median(x[:n])
            mad = 1.4826 * np.median(np.abs(x[:n] - med))
            if mad <= 0:
                continue
            for chan in range(n_chan):
                if not flag[row, chan, c]:
                    m = abs(model[row, chan, c])
                    v = abs(data[row, chan, c])
                    xv = v / m if m > 0 else v
                    if abs(xv - med) > threshold * mad:
                        out[row, chan, c] = True


def mad_flag(data, model, flag, threshold):
    """New flag array (row, chan, corr): ``flag`` plus MAD outliers; threshold <= 0 disables."""
    out = flag.copy()
    if threshold is None or threshold <= 0 or data.shape[0] == 0:
        return out
    if model is None:
        model = np.zeros((1, 1, 1), np.complex64)
        model = np.broadcast_to(model, data.shape)
    _mad_flag(data, np.ascontiguousarray(model), flag, float(threshold), out)
    return out
