"""akcal ``solnorm``: normalise a gain step's solutions as CASA 6.7 does (measured with casatasks).

* **A gain over the whole band** (freqint ``full``: CASA gaincal's ``solnorm``, "normalize (squared)
  solution amplitudes"): for every SPW, ONE positive factor for both polarisations and every field,
  antenna and time of the step, from the squared amplitudes of all its unflagged solutions --
  ``sqrt(mean |g|^2)`` (``normtype='mean'``, CASA's default) or ``sqrt(median |g|^2)`` (``'median'``:
  for an even number of solutions the mean of the two middle squares, as CASA).  Phases
  are unchanged, and so is the ratio of the two polarisations' gains (a factor per polarisation, as
  here before session 41, changed |g_p / g_q| -- a spurious Stokes Q of the corrected data: 1.0085
  instead of CASA's and the truth's 1.19 on a simulated MS).  CASA gaincal on a 2-SPW MS: factors
  1.26320 / 1.27222 (mean), 1.14575 / 1.16743 (median), equal to these to 1e-5; on 40 solutions,
  1.23255 where the median of |g| is 1.23135 (tests/test_solnorm_casa.py).
* **A gain per frequency bin** (a bandpass: more than one bin in the SPW; CASA bandpass's
  ``solnorm``; one bin -- a freqint as wide as the SPW -- is a gain over the band): every (solution set,
  antenna, polarisation, time) is divided by the complex factor ``A exp(i phi)`` with
  ``A = sqrt(mean |b|^2)`` over its unflagged bins (``sqrt(median |b|^2)`` with ``normtype='median'``;
  CASA's bandpass has no normtype) and ``phi = arg sum b / |b|``: the bandpass's rms amplitude becomes 1 and
  its mean phase 0.  CASA bandpass on a simulated MS: the same factor to 1.3e-7.

Only gain steps (G, T) are normalised (K, D, KC and CP have no amplitude to normalise; they are left
alone and the log says so).  The normalised gains are what later steps of the same run pre-apply and
what is written, as in CASA, where a later solve pre-applies the normalised table.  Pinned by
tests/test_append_solnorm.py (and against CASA when it is installed).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import AlakazamError


def is_bandpass(sets) -> bool:
    """The solution sets (of one SPW) hold more than one frequency bin: a bandpass.  Decided by the bins,
    not by freqint: a freqint as wide as the SPW ('16MHz' on 16 MHz) is one bin, a gain over the band
    (the bandpass rule set such a gain to exactly 1: a review)."""
    return any(np.asarray(s.jones).shape[1] > 1 for s in sets)


def normalise_sets(sets, normtype="mean"):
    """Normalise gain solution sets in place (see the module docstring).

    Returns {spw: factor} for a gain over the whole band (the one factor of the SPW), {spw: None} for
    a bandpass (a factor per antenna, polarisation and time)."""
    if normtype not in ("mean", "median"):
        raise AlakazamError(f"normtype: {normtype!r}; expected 'mean' or 'median'")
    factors = {}
    for spw in sorted({s.spw for s in sets}):
        mine = [s for s in sets if s.spw == spw]
        if is_bandpass(mine):
            for s in mine:
                _normalise_bandpass(s, normtype)
            factors[spw] = None
            continue
        # the unflagged solutions of both hands (flags per hand: alakazam/core/handflags.py)
        amps = np.concatenate([np.abs(s.jones[..., p, p])[~s.hand_flags()[..., p]].ravel()
                               for s in mine for p in (0, 1)])
        amps = amps[np.isfinite(amps) & (amps > 0)]
        if not len(amps):
            f = 1.0
        elif normtype == "mean":
            f = float(np.sqrt(np.mean(amps * amps)))
        else:
            f = float(np.sqrt(np.median(amps * amps)))
        for s in mine:
            for p in (0, 1):
                s.jones[..., p, p] = s.jones[..., p, p] / f
            s.attrs["solnorm"] = normtype
            s.attrs["solnorm_factor"] = np.asarray([f, f], float)
        factors[spw] = f
    return factors


def _normalise_bandpass(s, normtype):
    """CASA bandpass's solnorm on one solution set: per antenna, hand and time, b / (A exp(i phi))."""
    hf = s.hand_flags()                                   # (n_ant, n_f, n_t, 2)
    for p in (0, 1):
        b = s.jones[..., p, p]                            # (n_ant, n_f, n_t)
        ok = ~hf[..., p] & np.isfinite(b) & (np.abs(b) > 0)
        amp = np.where(ok, np.abs(b), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)         # (a cell with every bin flagged)
            if normtype == "mean":
                a = np.sqrt(np.nanmean(amp * amp, axis=1, keepdims=True)) if ok.any() else None
            else:
                a = np.sqrt(np.nanmedian(amp * amp, axis=1, keepdims=True)) if ok.any() else None
            if a is None:
                continue
            unit = np.where(ok, b / np.where(ok, np.abs(b), 1.0), 0)
            phase = np.exp(1j * np.angle(unit.sum(axis=1, keepdims=True)))
        fac = np.where(np.isfinite(a) & (a > 0), a, 1.0) * np.where(ok.any(axis=1, keepdims=True), phase, 1.0)
        s.jones[..., p, p] = b / fac
    s.attrs["solnorm"] = normtype
    s.attrs["solnorm_factor"] = np.asarray([np.nan, np.nan], float)     # (one per antenna, hand and time)
