"""Scans whose number recurs in several observations (a concatenated MS whose SCAN_NUMBERs restart).

alakazam keys a scan by (SCAN_NUMBER, FIELD_ID) (core/ms_io.py); CASA 6.7 gaincal also splits by
OBSERVATION_ID (measured: scan 1 of observation 0 and scan 1 of observation 1, 1800 s apart, give two
solutions with solint 'inf'; one when both rows carry observation 0).  A per-scan solint on such an MS
would silently be one solution over both observations, so :func:`check_scan_solints` refuses it before
anything is read or written, saying how to proceed.  Solints that do not follow scans (``inf``, a
duration) and ``combine='scan'`` are unaffected.
"""

from __future__ import annotations

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
