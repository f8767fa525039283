"""A bandpass averaged over drifting gains: the warning (notes/REAL_DATA_HAZARDS.md, "Time and frequency").

A G with frequency bins (a bandpass) whose cells span many integrations averages each bin's data over
the cell's time with the gains as they were.  Where the gains vary within that time, a bin whose flags
change with time (intermittent RFI, solve-time flags) is averaged over other times than its neighbours
and comes out off by the difference of the two time averages of the gains, which the later gain solve
(one value for the band) cannot take out: 1.7-5.2% on the worst baselines of the RFI channels with the
simulator's intermittent RFI (0.1% without), 33% for one channel flagged on one antenna for half of
1.5 h -- none of it flagged (a review against simulated truth, drifting gains).  CASA has the same
limit; its recipe pre-applies a phase-only G per integration to ``bandpass`` (and not to the gain
solve after it), and so does the remedy here: a block ``jones [K, G, G]``, ``phase_only [false, true,
false]``, ``time_interval [scan, int, inf]``, then the gains in a block with K0 and the bandpass G1
pre-applied (the phase-only G pre-applied to a bandpass over the same data: the worst baseline came to
0.45%).

The solutions do not show the drift, the fit does: the bandpass cells' chi2/nDOF (``solver_stats/
rchi2``) far above that of a gain of a shorter interval solved in the same block (model errors raise
both alike, drift only the long one) -- 5e4-1e5 against 0.9-1.3 in the review's cases, 6 after the
phase-only pre-solve.  :func:`warn` logs a warning for a bandpass spanning ``LONG_S`` or more (or a scan,
or inf) with no phase-only G of a shorter interval solved before it in the block, when its median
chi2/nDOF exceeds ``RATIO`` times that of the block's shorter full-band G (or ``RATIO`` when the block
has none).  A warning only: no solution changes (tests/test_driftcheck.py).

With a phase-only G before it (CASA's recipe) the bandpass's median is not compared (that G takes the
phase drift out, and its own chi2/nDOF holds the bandpass's shape), but its channels are compared with
each other: where some channels' flags change with time and others' do not, the amplitude drift the
phase-only G leaves goes into those channels only, and their fit is worse than the band's.  Review
60b: rflag run on an uncalibrated bright calibrator flagged its band edges in a pattern changing from
scan to scan (45% of channel 0, 13% mid-band); the bandpass came out 5.7% off at the edges (100x the
noise), with chi2/nDOF 200-360 there against 35 mid-band; without the flag step (or with tfcrop) every
channel is within 1.5x of the band's lower quartile (18-33).  A drift the fit leaves raises chi2/nDOF in
proportion to a bin's signal power, so the bins are compared by their misfit per unit of signal,
``(chi2/nDOF - 1) / SNR^2`` (SNR^2: the median over the antennas of the bin's solution SNR squared): a
band whose gain amplitude rises 0.4 -> 1.0 across it has chi2/nDOF 1.1 -> 15 from its shape alone
(review 60g), and is silent so.  :func:`channel_outliers` finds the bins whose misfit per signal is above
``CHANNEL_RATIO`` times the band's lower quartile (at least that of a chi2/nDOF of 2 at the band's median
SNR), and whose misfit per signal ``sqrt(chi2/nDOF - 1) / SNR`` is at least ``CHANNEL_MIN_MISFIT``
(0.3%: the review's biased edges 1.0-1.6%, its clean bins 0.3%; a bandpass iterated to convergence with
a few rows flagged in some channels, 0.003-0.03% -- chi2/nDOF 1-5 where the band's is ~1 at an SNR of
12,000: not a bias worth a word), in any solution of the set -- 26 of the 64 there, up to 27x;
``MIN_CHANNELS`` of them in one SPW are warned (not a share of the band: 2-4 biased bins of a 256-channel
SPW, 9-12% off, review 60h, were kept silent by a 5% rule, 13 bins, when 32 bins of 8 channels warned),
naming them and the SPW, whatever the block's shorter gains -- the same figure marks residual RFI in
those bins, which is worth the same look.  A bandpass already warned above is not warned twice.

Its remedy depends on the block.  With the shorter gain in the block, ``iterations`` re-solves the
bandpass with those gains applied, and the rounds take the drift out as they converge -- slowly where
the flags of many channels change with time: intermittent RFI on an 8-channel SPW (examples/
full_polarization.yaml, circular feeds) left 3C286 27.7 / 5.8 / 1.09 x the noise after 1 / 3 / 6 rounds
(chi2/nDOF 924 after 3, no warning after 6), where CASA's recipe left 10.9 x (the phase-only G leaves
the amplitudes' drift in the bandpass).  So an iterated block is told to raise ``iterations``, a
one-round block with a shorter gain to use ``iterations`` or CASA's recipe, a bandpass alone CASA's
recipe.
"""

from __future__ import annotations


import warnings

import numpy as np


RATIO = 30.0
LONG_S = 600.0
#: a bandpass channel whose chi2/nDOF exceeds this times the band's lower quartile (module docstring) ...
CHANNEL_RATIO = 5.0
#: ... in at least this many bins of one SPW is warned (one bin alone: a residual RFI channel, not said)
MIN_CHANNELS = 2
#: ... and whose misfit per unit of signal, sqrt(chi2/nDOF - 1) / SNR, is at least this: 0.3% (the review's
#: biased band edges 1.0-1.6%, its clean bins 0.3%; a bandpass iterated to convergence with a few flagged
#: rows, 0.003-0.03%, chi2/nDOF 1-5 where the band's is ~1: not a bias worth a word)
CHANNEL_MIN_MISFIT = 0.003
#: ... and whose own chi2/nDOF is at least this times the larger of 1 (the weights' prediction) and the
#: band's lower quartile: a weak bin's chi2/nDOF within its noise of 1 is no misfit (review h60j)
CHANNEL_MIN_RCHI2 = 2.0


def _solint(sets):
    return float(sets[0].attrs.get("solint_s", np.nan)) if sets else np.nan


def _long(solint_s):
    return solint_s == -1.0 or not np.isfinite(solint_s) or solint_s >= LONG_S


def _median_rchi2(sets):
    v = [np.asarray(s.extra.get("rchi2"), float).ravel() for s in sets if s.extra.get("rchi2") is not None]
    v = np.concatenate(v) if v else np.zeros(0)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if len(v) else np.nan


def _signal2(s, shape):
    """(n_freq, n_time) median over the antennas and hands with data of a set's solution SNR squared
    (``solver_stats/snr``), NaN where none; None without SNRs."""
    snr = s.extra.get("snr")
    if snr is None:
        return None
    snr = np.asarray(snr, float)
    if snr.ndim == 3:
        snr = snr[..., None]
    if snr.ndim != 4 or snr.shape[1:3] != shape:
        return None
    hf = s.hand_flags() if snr.shape[-1] == 2 else np.asarray(s.flags, bool)[..., None]
    use = np.isfinite(snr) & (snr > 0) & ~hf
    v = np.where(use, snr ** 2, np.nan).transpose(1, 2, 0, 3).reshape(shape + (-1,))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(v, axis=-1)


def channel_outliers(sets):
    """``(channels, worst ratio, n_chan)`` of a bandpass's sets of one SPW (module docstring): the solution
    channels (frequency-bin indices, sorted) whose misfit per unit of signal -- ``(chi2/nDOF - 1) / SNR^2``,
    SNR^2 the median over the antennas of the bin's solution SNR squared -- exceeds :data:`CHANNEL_RATIO`
    times the band's lower quartile in some solution (time) of the set (the quartile at least that of a
    chi2/nDOF of 2 at the band's median SNR) and is at least :data:`CHANNEL_MIN_MISFIT` squared, whose own
    chi2/nDOF is at least :data:`CHANNEL_MIN_RCHI2` times the larger of 1 and the band's lower quartile (a
    weak edge bin's chi2/nDOF within its noise of 1, over its small SNR^2, is no misfit), the largest
    such ratio, and the number of bins.  A drift
    the fit leaves raises chi2/nDOF in proportion to the bin's signal power, so a bandpass's shape alone
    (a band 0.4 -> 1.0 in gain amplitude: chi2/nDOF 1.1 -> 15, review 60g) is not an outlier; without
    recorded SNRs chi2/nDOF itself is compared.  Bins whose every antenna's solution is flagged take no
    part (an RFI channel the solve flagged)."""
    bad, worst, n_chan = set(), 0.0, 0
    for s in sets:
        rc = s.extra.get("rchi2")
        if rc is None:
            continue
        rc = np.asarray(rc, float)
        if rc.ndim != 2 or rc.shape[0] < 4:
            continue
        fl = np.asarray(s.flags, bool)
        if fl.shape[1:] == rc.shape:        # a bin whose every solution is flagged is not used: not said
            rc = np.where(fl.all(axis=0), np.nan, rc)
        s2 = _signal2(s, rc.shape)
        n_chan = max(n_chan, rc.shape[0])
        for t in range(rc.shape[1]):
            col = rc[:, t]
            if s2 is None:
                val, floor = col, 1.0
            else:
                sig = s2[:, t]
                good = np.isfinite(sig) & (sig > 0)
                if not good.any():
                    continue
                val = np.where(good, np.maximum(col - 1.0, 0.0) / np.where(good, sig, 1.0), np.nan)
                floor = 1.0 / float(np.median(sig[good]))
            ok = np.isfinite(val)
            if ok.sum() < 4:
                continue
            ref = max(float(np.percentile(val[ok], 25)), floor)
            ratio = np.where(ok, val, 0.0) / ref
            big = np.ones(len(val), bool) if s2 is None else np.where(ok, val, 0.0) >= CHANNEL_MIN_MISFIT ** 2
            if s2 is not None:
                # the bin's own chi2/nDOF at least CHANNEL_MIN_RCHI2 times the weights' prediction and the
                # band's best quarter: chi2/nDOF's noise, sqrt(2 / nDOF), divided by a weak bin's SNR^2
                # is no misfit (review h60j: roll-off edges at SNR 5-10 of a clean band, 12-155x)
                rq = max(float(np.percentile(col[np.isfinite(col)], 25)), 1.0)
                big &= np.where(ok, col, 0.0) >= CHANNEL_MIN_RCHI2 * rq
            hit = np.flatnonzero((ratio > CHANNEL_RATIO) & big)
            bad.update(int(c) for c in hit)
            if len(hit):
                worst = max(worst, float(ratio[hit].max()))
    return sorted(bad), worst, n_chan


def _ranges(chans):
    """'0-5, 21, 47-63' of sorted integers."""
    out, start = [], None
    for i, c in enumerate(chans):
        if start is None:
            start = c
        if i + 1 == len(chans) or chans[i + 1] != c + 1:
            out.append(f"{start}-{c}" if c > start else f"{c}")
            start = None
    return ", ".join(out)


def _channel_note(st, sets):
    """The per-channel warning for a bandpass step, or None (module docstring).  The bins are counted,
    and held against MIN_CHANNELS, per SPW (a bin index names a different frequency
    in each SPW: one outlying bin in each of 4 SPWs is not 4 bins of one band), and the SPW is named."""
    by_spw = {}
    for s in sets:
        by_spw.setdefault(int(s.attrs.get("spw", 0)), []).append(s)
    parts, worst, wide = [], 0.0, False
    for spw in sorted(by_spw):
        chans, w, n_chan = channel_outliers(by_spw[spw])
        if len(chans) < MIN_CHANNELS:
            continue
        parts.append(f"{len(chans)} of SPW {spw}'s {n_chan} frequency bins ({_ranges(chans)})")
        worst = max(worst, w)
        # bins of several data channels: a bandpass changing within a bin misfits there too
        wide |= any(len(np.atleast_1d(s.attrs.get("channels", []))) > len(np.atleast_1d(s.freq))
                    for s in by_spw[spw])
    if not parts:
        return None
    within = (" With bins of several channels, a bandpass that changes within a bin (a steep band edge) "
              "misfits there too: solve it per channel to tell." if wide else "")
    return (f"{st.key} (bandpass, time_interval {st.time_interval.text or 'inf'}): in {' and '.join(parts)} "
            f"the misfit per unit of signal ((chi2/nDOF - 1) / SNR^2) is up to {worst:.3g}x the band's "
            "lower quartile: the data of those bins change with time in a way one bandpass "
            "does not fit. A bin whose flags change with time (intermittent RFI, a flagger's pattern -- "
            "rflag on uncalibrated data flags a bright calibrator's band edges differently from scan to "
            "scan) is averaged over other gains than its neighbours, and the gain amplitudes' drift that "
            "a phase-only G leaves in goes into it: it can be off by percents, unflagged (measured: 5.7% "
            "at the band's edge, 100x the noise); residual RFI in those bins shows the same. Solve the "
            "bandpass with an amplitude-and-phase G per integration in the block and iterations: 3 or "
            "more (akcal calmode 'ap', iterations), flag those bins, or run rflag on calibrated data "
            f"(CORRECTED_DATA or the residual, after a first calibration; tfcrop on DATA).{within}")


def notes(cfg, pending):
    """The warnings for the block's steps (``pending``: key -> solution sets, in step order)."""
    if cfg.external_preapply is not None and any(str(k).upper().startswith(("G", "T"))
                                                  for k in cfg.external_preapply.jones):
        return []               # a phase-only G may come from outside: not told here
    steps = [(st, pending.get(st.key) or []) for st in cfg.steps]
    out = []
    for i, (st, sets) in enumerate(steps):
        if st.jones_type != "G" or not sets or max(len(s.freq) for s in sets) < 2:
            continue
        span = _solint(sets)
        if not _long(span) or st.phase_only:
            continue
        if any(p.jones_type in ("G", "T") and p.phase_only and not _long(_solint(ps))
               for p, ps in steps[:i]):
            note = _channel_note(st, sets)      # the phase drift was taken out before (CASA's recipe):
            if note:                            # the amplitudes' only where the channels differ
                out.append(note)
            continue
        rb = _median_rchi2(sets)
        short = [ps for p, ps in steps if p.jones_type in ("G", "T") and ps and
                 max(len(s.freq) for s in ps) == 1 and not _long(_solint(ps))]
        rg = min([_median_rchi2(ps) for ps in short] or [1.0])
        ref = max(rg, 1.0) if np.isfinite(rg) else 1.0
        if not rb > RATIO * ref:
            note = _channel_note(st, sets)
            if note:
                out.append(note)
            continue
        what = (f"{rb / ref:.0f}x that of the shorter gain solved in this block" if short else
                "the weights predict 1")
        casa = ("CASA's recipe: a phase-only G per integration pre-applied to the bandpass only, the gains "
                "solved after with K and the bandpass but not that phase-only G -- here a block jones [K, G, "
                "G], phase_only [false, true, false], time_interval [scan, int, inf] (akcal calmode ['ap', "
                "'p', 'ap'], solint ['scan', 'int', 'inf']), then a block solving G with its K0 and G1 "
                "pre-applied (external_preapply; akcal gaintable / gainjones)")
        n = int(getattr(cfg, "iterations", 1) or 1)
        if short and n > 1:
            # rounds re-solve the bandpass with the block's time gains applied: they take the drift out as
            # they converge, slowly where many channels' flags change with time (few channels)
            fix = (f"This block's {n} rounds re-solve the bandpass with its shorter gains applied, which "
                   f"takes the drift out as the rounds converge; they have not yet: raise iterations (e.g. "
                   f"to {2 * n}), or {casa}")
        elif short:
            fix = ("iterations: 3 or more (akcal iterations) re-solves the bandpass with this block's "
                   f"shorter gains applied; or {casa}")
        else:
            fix = casa
        out.append(
            f"{st.key} (bandpass, time_interval {st.time_interval.text or 'inf'}): chi2/nDOF {rb:.3g}, "
            f"{what}: "
            "the gains vary within its interval, so a channel whose flags change with time (intermittent "
            "RFI, solve-time flags) is averaged over other gains than its neighbours and can be off by "
            "percents to tens of percents, unflagged (measured: 14% of a bandpass's solutions more than 10% "
            f"off in a band with a quarter of its channels hit by RFI). {fix}")
    return out
