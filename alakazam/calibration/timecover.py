"""Data far outside the time range of a term's time-variable solutions.

An apply holds the end solution for data before the first or after the last solution time (every
``time_interp``; CASA's applycal does the same, silently): a target observed 10-40 minutes after the
last calibrator scan gets gains that drifted since (a review, session 49: on the simulated MS, whose
gains drift by up to a radian per hour, TARGET's scan-averaged amplitude fell from 0.7 Jy to 0.655,
0.49 and 0.35 Jy, with row phases 0.5-1.6 rad rms, and nothing was said; akfluxscale warns about the
same extrapolation).  :func:`warnings` says so, once per term and field corrected, when the data lie
further beyond the solutions than the largest gap between the solution times the field uses -- the
cadence the observation itself accepts for interpolation.  Only the time gains are judged -- G and T
with one frequency bin: delays (K, KC), bandpasses (several bins), leakage and the cross-hand phase are
solved once, or per scan on a calibrator observed at the start, and applied to the whole observation by
design (and a term with one solution time is constant anyway).
"""

from __future__ import annotations

import numpy as np


def warnings(terms, spw_id, times, target_name, target_radec) -> list:
    """One message per term of ``terms`` (LoadedTerm, mapped to ``spw_id``) whose solutions serving
    ``target_name`` at ``times`` (s, the field's data times) end more than the largest gap between
    those solution times before (or start that much after) the data."""
    from .chain import _by_field, choose_fields

    times = np.asarray(times, float)
    out = []
    if not len(times):
        return out
    for term in terms:
        if term.jones_type not in ("G", "T"):
            continue
        try:
            fields = _by_field(term, spw_id)
            names, which, _ = choose_fields(term, fields, times, target_name, target_radec, prefer_own=True)
        except Exception:           # (the apply's own evaluation reports what is wrong with the term)
            continue
        used = [names[i] for i in np.unique(which)]
        if any(len(np.atleast_1d(fields[n].freq)) > 1 for n in used):     # a bandpass
            continue
        st = np.unique(np.concatenate([np.asarray(fields[n].time, float) for n in used]))
        st = st[np.isfinite(st)]
        if len(st) < 2:
            continue
        gap = float(np.max(np.diff(st)))
        after = float(times.max() - st[-1])
        before = float(st[0] - times.min())
        far = max(after, before)
        if far <= gap:
            continue
        n_far = int(np.count_nonzero((times > st[-1] + gap) | (times < st[0] - gap)))
        side = "after the last" if after >= before else "before the first"
        out.append(f"{term.key}: {target_name} SPW {spw_id}: data up to {far / 60:.1f} min {side} solution "
                   f"of {', '.join(used)} ({n_far} of {len(times)} times further than the largest gap "
                   f"between its solutions, {gap / 60:.1f} min): the end solution is held there "
                   f"({term.time_interp}), whatever the gains did since; a calibrator scan "
                   "bracketing the target would tell")
    return out
