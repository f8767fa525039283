"""The apply's note on an interp without a time part (alakazam's default, ``nearest``) against CASA's.

akapply's ``interp`` entries are CASA's ``'time[,freq]'``; an entry without its time part (``''``, or
``interp`` / YAML ``time_interp`` not given) is ``nearest`` here (SEED.md's modes; the YAML examples
name theirs), where CASA's applycal reads ``''`` as ``linear`` (its default ``'linear,linear'``).  The
two differ wherever a field is calibrated from another field's solutions at several times (review 60a:
a CASA script ported as it is, ``interp=['', '', '']``, gave a TARGET 78x the noise from CASA's), so the
apply says so once per term (:func:`casa_time_default_notes`); the frequency part's counterpart is
core/freqinterp.casa_default_notes.
"""

from __future__ import annotations

import numpy as np


def casa_time_default_notes(terms, given, spw_id, times, target_name, target_radec) -> list:
    """One message per term of ``terms`` (LoadedTerm) whose interp had no time part (``given[i]``
    False: alakazam's default, the nearest solution) and that calibrates ``target_name`` from another
    field's solutions at several times: CASA's applycal reads interp '' as linear (its default
    'linear,linear'), so a script ported from CASA gets other values between the calibrator scans
    (review 60a: a TARGET 78x the noise from CASA's).  The text names the term only (said once per
    apply, whatever the field and SPW)."""
    from . import chain

    out = []
    for term, g in zip(terms, given):
        if g or term.time_interp != "nearest":
            continue
        fields = chain._by_field(term, spw_id)
        if not fields:
            continue
        names, which, mode = chain.choose_fields(term, fields, np.asarray(times, float), target_name,
                                                 target_radec, prefer_own=True)
        if mode == "own":
            continue
        used = [names[i] for i in np.unique(which)]
        if sum(len(np.unique(fields[n].time)) for n in used) < 2:
            continue
        out.append(f"{term.key}: interp was not given: alakazam applies the nearest solution in time (its "
                   "default), where CASA's applycal reads interp '' as linear (its default 'linear,linear') "
                   "-- a script ported from CASA gets other values between the calibrator scans. Give "
                   "interp 'linear' (YAML time_interp) for CASA's, or 'nearest' to keep this and not be told")
    return out
