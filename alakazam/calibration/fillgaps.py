"""akcal ``fillgaps`` (CASA bandpass's): fill short runs of flagged channels of a bandpass by
interpolation, on the solved G sets of a step with more than one frequency bin.

Convention (pinned by tests/test_fillgaps.py):

* Per antenna, time bin and polarisation (the diagonal entries), along the step's frequency bins in
  frequency order: a run of at most ``fillgaps`` consecutive flagged bins with an unflagged bin on
  *both* sides is filled; runs at the band edges and longer runs stay flagged (no extrapolation).
* Amplitude and phase are each interpolated linearly in frequency between the two neighbours; the
  phase difference is taken in (-pi, pi] (the shorter way round).
* A solution flagged per antenna and cell (both polarisations together) is filled only where both
  polarisations of both neighbours are finite; a filled bin is unflagged.  A set with flags per hand
  (``pol_flags``: K, G; :mod:`alakazam.core.handflags`) is filled per hand, each hand from its own
  unflagged neighbours only (a hand flagged where the other is valid is filled from its own hand).
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
    if getattr(sset, "pol_flags", None) is not None:
        return _fill_hands(sset, max_gap)
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


def _fill_hands(sset, max_gap):
    """:func:`fill_set` per hand: each hand as a per-antenna set of its own (its value on both diagonal
    elements, its flags), filled, and taken back; ``flags`` follows the hands (core/handflags.py).
    Returns the number of solutions flagged before (not whole) and whole now."""
    import copy

    from ..core.handflags import antenna_flags, hand_flags

    pol = hand_flags(sset)
    rec = sset.attrs.get("hands", (0, 1))
    was = pol[..., list(rec)].any(-1)          # flags before (not whole)
    snr = sset.extra.get("snr") if isinstance(sset.extra, dict) else None
    n = 0
    for h in (0, 1):
        v = copy.copy(sset)
        v.pol_flags = None
        v.flags = pol[..., h].copy()
        v.jones = np.array(sset.jones)
        v.jones[..., 1 - h, 1 - h] = sset.jones[..., h, h]
        v.extra = {}
        k = fill_set(v, max_gap)
        if k:
            filled = pol[..., h] & ~v.flags
            sset.jones[..., h, h][filled] = v.jones[..., h, h][filled]
            pol[..., h] = v.flags
            if snr is not None and np.shape(snr) == pol.shape:
                snr[..., h][filled] = 0
            n += k
    if n:
        both = ~pol.all(-1)          # a matrix no longer all-NaN: its off-diagonal (0 for K, G) back to 0
        off = both & ~np.isfinite(sset.jones[..., 0, 1])
        sset.jones[..., 0, 1][off] = 0
        sset.jones[..., 1, 0][off] = 0
        sset.pol_flags = pol
        sset.flags[:] = antenna_flags(pol, rec)
        # counted as the solutions flagged before and whole now (the step's flagged count)
        n = int((was & ~pol[..., list(rec)].any(-1)).sum())
    return n


def fill_sets(sets, max_gap: int) -> int:
    """:func:`fill_set` on every set; returns the total filled."""
    return sum(fill_set(s, max_gap) for s in sets)
