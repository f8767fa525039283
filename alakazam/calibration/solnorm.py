"""akcal ``solnorm`` (CASA gaincal semantics for G): normalise the solved gain amplitudes.

For every SPW and polarisation, the amplitudes of all unflagged G solutions of the step (all fields,
antennas, times and frequency bins) are divided by their mean (``normtype='mean'``, CASA's default)
or median (``'median'``); phases are unchanged, so the mean (median) normalised amplitude is exactly 1.
Only G steps are normalised (K, D, KC and CP have no amplitude to normalise; they are left alone and
the log says so).  The normalised gains are what later steps of the same run pre-apply and what is
written, as in CASA, where a later solve pre-applies the normalised table.
"""

from __future__ import annotations

import numpy as np

from ..errors import AlakazamError


def normalise_sets(sets, normtype="mean"):
    """Normalise G solution sets in place; returns {spw: (factor_p, factor_q)}."""
    if normtype not in ("mean", "median"):
        raise AlakazamError(f"normtype: {normtype!r}; expected 'mean' or 'median'")
    stat = np.mean if normtype == "mean" else np.median
    factors = {}
    for spw in sorted({s.spw for s in sets}):
        mine = [s for s in sets if s.spw == spw]
        f = []
        for p in (0, 1):
            # the unflagged solutions of hand p (flags per hand: alakazam/core/handflags.py)
            amps = np.concatenate([np.abs(s.jones[..., p, p])[~s.hand_flags()[..., p]].ravel() for s in mine])
            amps = amps[np.isfinite(amps) & (amps > 0)]
            f.append(float(stat(amps)) if len(amps) else 1.0)
        for s in mine:
            for p in (0, 1):
                s.jones[..., p, p] = s.jones[..., p, p] / f[p]
            s.attrs["solnorm"] = normtype
            s.attrs["solnorm_factor"] = np.asarray(f, float)
        factors[spw] = tuple(f)
    return factors
