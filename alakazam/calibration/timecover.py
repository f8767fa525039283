"""Data far from every solution of the time gains that correct them.

An apply holds the end solution for data before the first or after the last solution time, and
interpolates across any hole in the solutions (every ``time_interp``; CASA's applycal does the same,
silently): a target observed 10-40 minutes after the last calibrator scan, or a day of an
observation whose calibrator scans were lost while a table of two epochs holds the other day's, gets
gains that drifted since.  A review (session 49): on the simulated MS, whose gains drift by up to a
radian per hour, TARGET's scan-averaged amplitude fell from 0.7 Jy to 0.655, 0.49 and 0.35 Jy (0.17
and 0.03 Jy across a day), with row phases 0.5-1.6 rad rms, and nothing was said; akfluxscale warns
about the same extrapolation.

:func:`warnings` judges each data time by its distance to the nearest solution time of the fields that
serve it, against the observation's own calibrator cadence: per field, the median interval between
its visits (a solution group of one scan is one visit, however many solution times it holds; the
times of a group over several scans -- ``inf`` with ``combine='scan'`` -- are visits each).  It warns
once per term and field corrected when some data are further than 1.5 cadences from every solution
(a target scan at the end of a bracketed schedule is within one).  Only the time gains are judged --
G and T with one frequency bin, on fields with at least two visits: delays (K, KC), bandpasses,
leakage, the cross-hand phase and a gain over ``inf`` (one visit) are applied to the whole
observation by design.
"""

from __future__ import annotations

import numpy as np

#: data further than this many cadences from every solution are warned about
FACTOR = 1.5


def _visits(term, spw_id, field):
    """Sorted visit times (s) of ``field``'s solutions of ``term`` in ``spw_id`` (module docstring)."""
    out = []
    for s in term.sets:
        if int(s.attrs.get("spw", -1)) != int(spw_id) or str(s.attrs.get("field_name")) != field:
            continue
        t = np.asarray(s.time, float)
        t = t[np.isfinite(t)]
        if not len(t):
            continue
        if int(getattr(s, "scan_id", 0) or 0) > 0:
            out.append(float(t.mean()))
        else:
            out.extend(float(x) for x in t)
    return np.unique(out)


def warnings(terms, spw_id, times, target_name, target_radec) -> list:
    """One message per term of ``terms`` (LoadedTerm, mapped to ``spw_id``) whose solutions serving
    ``target_name`` at ``times`` (s, the field's data times) leave some of them further than
    ``FACTOR`` cadences from every solution time (module docstring)."""
    from .chain import _by_field, choose_fields

    times = np.unique(np.asarray(times, float))
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
        gaps = []
        for n in used:
            v = _visits(term, spw_id, n)
            gaps.extend(np.diff(v).tolist())
        if not gaps:                # one visit per field: constant by design
            continue
        cadence = float(np.median(gaps))
        st = np.unique(np.concatenate([np.asarray(fields[n].time, float) for n in used]))
        st = st[np.isfinite(st)]
        j = np.clip(np.searchsorted(st, times), 1, len(st) - 1) if len(st) > 1 else np.zeros(len(times), int)
        dist = np.minimum(np.abs(times - st[j]), np.abs(times - st[np.maximum(j - 1, 0)]))
        far = dist > FACTOR * cadence
        if not far.any():
            continue
        worst = int(np.argmax(dist))
        where = ("after the last" if times[worst] > st[-1] else "before the first" if times[worst] < st[0]
                 else "between")
        out.append(f"{term.key}: {target_name} SPW {spw_id}: {int(far.sum())} of {len(times)} data times are "
                   f"more than {FACTOR:g} x the calibrator cadence ({cadence / 60:.1f} min) from every "
                   f"solution of {', '.join(used)}, up to {dist[worst] / 60:.1f} min ({where} solutions): "
                   f"their gains are held or interpolated ({term.time_interp}) over that time, whatever the "
                   "gains did meanwhile")
    return out
