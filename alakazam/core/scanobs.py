"""Scans whose number recurs in several observations (a concatenated MS whose SCAN_NUMBERs restart).

alakazam keys a scan by (SCAN_NUMBER, FIELD_ID) (core/ms_io.py); CASA 6.7 gaincal also splits by
OBSERVATION_ID (measured: scan 1 of observation 0 and scan 1 of observation 1, 1800 s apart, give two
solutions with solint 'inf'; one when both rows carry observation 0).  A per-scan solint on such an MS
would silently be one solution over both observations, so :func:`check_scan_solints` refuses it before
anything is read or written, saying how to proceed.  Solints that do not follow scans (``inf``, a
duration) and ``combine='scan'`` are unaffected.

The apply (and every pre-apply) takes a field's own solutions scan by scan where another scan's are
flagged (calibration/chain._same_scan_parts); solutions are matched to the data's scan by number, so on
such an MS "scan 1" held the solutions of both observations and the data of one were interpolated
between solutions an hour apart, across a flagged one (review 60a: 4.9 Jy on |V| ~ 15 for one
antenna's baselines, where CASA flags them).  :func:`own_scan_keys` gives those scans no number (-1):
their data are interpolated over all the field's solutions, flags not bridged, as CASA's applycal does.
"""

from __future__ import annotations

import numpy as np

from ..errors import AlakazamError


def check_scan_solints(meta, steps, step_fields, scans=None):
    """AlakazamError when a step with solint 'scan' (and no combine='scan') covers a scan of one of its
    fields whose rows belong to more than one OBSERVATION_ID (``scans``: the selected scan numbers)."""
    for i, st in enumerate(steps):
        if st.time_interval.kind != "scan" or "scan" in (st.combine or ""):
            continue
        fids = set(step_fields[i])
        for sc in meta.scans:
            if sc.field_id not in fids or (scans is not None and sc.scan_number not in scans):
                continue
            if len(sc.observations) > 1:
                raise AlakazamError(
                    f"time_interval: 'scan' (step {i}, {st.key}): scan {sc.scan_number} of field "
                    f"{meta.fields[sc.field_id].name!r} has rows of OBSERVATION_IDs "
                    f"{sorted(sc.observations)} "
                    f"(a concatenated MS whose scan numbers restart per observation); scans are keyed by "
                    f"SCAN_NUMBER, so it would be one solution over all of them (CASA gives one per "
                    f"observation). Select one observation (observation='{min(sc.observations)}'), give the "
                    f"scans unique numbers, or use a duration solint")


def recurring(meta) -> set:
    """The scan numbers whose rows belong to more than one OBSERVATION_ID (module docstring)."""
    return {int(sc.scan_number) for sc in meta.scans if len(sc.observations) > 1}


def own_scan_keys(meta, scans):
    """``scans`` (an array of scan numbers) with -1 where the number recurs in several observations:
    the key the own-scan solutions are matched by (module docstring)."""
    scans = np.asarray(scans, np.int64)
    rec = recurring(meta)
    if not rec:
        return scans
    return np.where(np.isin(scans, sorted(rec)), -1, scans)
