"""akcal ``fillgaps`` (CASA bandpass's): fill short runs of flagged channels of a bandpass by
interpolation, on the solved G sets of a step with more than one frequency bin.

Convention (pinned by tests/test_fillgaps.py):

* Per antenna, time bin and polarisation (the diagonal entries), along the step's frequency bins in
  frequency order: a run of at most ``fillgaps`` consecutive flagged bins with an unflagged bin on
  *both* sides is filled; runs at the band edges and longer runs stay flagged (no extrapolation).
* Amplitude and phase are each interpolated linearly in frequency between the two neighbours; the
  phase difference is taken in (-pi, pi] (the shorter way round).
* A solution is flagged per antenna and cell (both polarisations together), so a bin is filled only
  where both polarisations of both neighbours are finite; a filled bin is unflagged.
* The fill runs after ``solnorm`` (so the normalisation is over the solved bins only), before later
  steps pre-apply the step and before it is written; the counts are logged.  ``fillgaps = 0`` (the
  default, as CASA) leaves the solutions as solved.  Steps other than G, and G over one bin, are not
  changed.  Each filled bin gets SNR 0 in ``solver_stats/snr`` (it was not solved).
"""

from __future__ import annotations

import numpy as np


def fill_set(sset, max_gap: int) -> int:
    """Fill the gaps of one solution set in place; returns the number of (antenna, bin, time)
    solutions filled.  The values are apply's ``'linear'`` frequency interpolation
    (:func:`alakazam.core.freqinterp.interp_freq`, which bridges flagged bins the same way) on the
    set's own bins; this function only decides which runs are filled."""
    from ..core.freqinterp import interp_freq

    if max_gap <= 0:
        return 0
    flags = sset.flags                       # (n_ant, n_f, n_t)
    n_ant, n_f, n_t = flags.shape
    if n_f < 3 or not flags.any():
        return 0
    order = np.argsort(np.asarray(sset.freq, float), kind="stable")
    ok = ~flags & np.isfinite(sset.jones).all(axis=(-1, -2))
    bridged = None                           # interp_freq of the whole set, once, when a run qualifies
    snr = sset.extra.get("snr") if isinstance(sset.extra, dict) else None
    n_filled = 0
    for a in range(n_ant):
        for t in range(n_t):
            fl = flags[a, order, t]
            if not fl.any() or fl.all():
                continue
            j = 0
            while j < n_f:
                if not fl[j]:
                    j += 1
                    continue
                k = j
                while k < n_f and fl[k]:
                    k += 1                  # flagged run [j, k)
                if (j > 0 and k < n_f and k - j <= max_gap and ok[a, order[j - 1], t]
                        and ok[a, order[k], t]):
                    if bridged is None:
                        bridged, _, _ = interp_freq(sset.freq, sset.jones, flags, sset.freq, "linear")
                    b = order[j:k]
                    sset.jones[a, b, t] = bridged[a, b, t]
                    flags[a, b, t] = False
                    if snr is not None and np.shape(snr)[:3] == flags.shape:
                        snr[a, b, t] = 0
                    n_filled += k - j
                j = k
    return n_filled


def fill_sets(sets, max_gap: int) -> int:
    """:func:`fill_set` on every set; returns the total filled."""
    return sum(fill_set(s, max_gap) for s in sets)
