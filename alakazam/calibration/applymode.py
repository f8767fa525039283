"""CASA applycal's ``applymode``: what apply does with data whose solution is flagged.

A sample's solution is *flagged* when any term of the chain has no valid solution for it: the
solution cell is flagged (no data, minblperant, minsnr, not converged, outlier channel), the antenna
is missing from the table, or a solution that the time interpolation uses is flagged: ``nearest``
the nearest solution, ``linear`` / ``cubic`` the two bracketing ones (outside the solution range the
held end one) -- a flagged solution is never bridged by a valid one further away, as CASA 6.7's
applycal (:mod:`alakazam.core.interpolation`; tests/test_interp_flags.py).  Data of a scan with
own-field solutions take that scan's own where the interpolation reaches a flagged solution of another
scan (:func:`alakazam.calibration.chain._same_scan_parts`).

=================  ==================  ==============================  ==================================
applymode          output column       samples with a flagged solution  FLAG
=================  ==================  ==============================  ==================================
calflag            corrected           flagged (data left uncorrected)  written (after a saved version)
calflagstrict      as calflag          as calflag                      as calflag
calonly (default)  corrected           not flagged, left uncorrected   not written
trial              not written         only counted                    not written
flagonly           not written         flagged                         written (after a saved version)
flagonlystrict     as flagonly         as flagonly                     as flagonly
=================  ==================  ==============================  ==================================

``*strict`` (CASA: also flag data with no calibration available at all) is the same as the plain
mode here: an antenna, SPW or time without any solution already counts as a flagged solution (a
missing SPW is an error before anything is written).  The YAML key ``propagate_flags`` maps true ->
calflag, false -> calonly; ``applymode`` may be given directly.  The default stays ``calonly``: the
design (SEED.md, DESIGN.md) writes FLAG only on request (CASA's default is calflag).

Every mode logs, per term and target field, the samples (not already flagged) whose solution in
that term is flagged (:func:`term_flag_counts`).
"""

from __future__ import annotations

import numpy as np

from ..config import APPLY_MODES  # noqa: E402,F401  (defined once, with the YAML validation)

DEFAULT_MODE = "calonly"


def writes_flags(mode):
    return mode in ("calflag", "calflagstrict", "flagonly", "flagonlystrict")


def writes_data(mode):
    return mode in ("calflag", "calflagstrict", "calonly")


def resolve(applymode, propagate_flags):
    """The effective mode: ``applymode`` when given, else calflag/calonly from propagate_flags."""
    if applymode:
        return str(applymode)
    return "calflag" if propagate_flags else "calonly"


def term_flag_counts(terms, spw_id, utimes, freqs, names, fld, tix, a1, a2, flag, chans, time_scan,
                     bad_by_key=None):
    """{term key: number of samples not flagged in ``flag`` (row, chan, corr) whose solution in that
    term is flagged} for one chunk (rows with times ``utimes[tix]``, antennas a1/a2).  ``bad_by_key``:
    the flagged-solution masks chain.compose(bad_out=...) already evaluated (else evaluated here)."""
    from . import chain

    out = {}
    nunf = None             # (n_row, n_chan) unflagged correlations, computed once when needed
    for term in terms:
        if bad_by_key is not None and term.key in bad_by_key:
            bad = bad_by_key[term.key]
            fast = None
        else:
            fast = chain.diag_table(term, spw_id, utimes, freqs, names, fld.name, (fld.ra, fld.dec), True,
                                time_scan=time_scan)
        if bad_by_key is not None and term.key in bad_by_key:
            pass
        elif fast is not None:
            d, _ = fast
            bad = ~np.isfinite(d).all(axis=-1)                              # (n_t or 1, n_ant, n_c or 1)
        else:
            _, bad, _ = chain.term_tables(term, spw_id, utimes, freqs, names, fld.name, (fld.ra, fld.dec),
                                          True, time_scan=time_scan)
        if not bad.any():
            out[term.key] = 0
            continue
        if bad.ndim == 4:       # per hand (core/handflags.py): correlation (i, j) from hand i of a1, j of a2
            already = flag[:, chans] if chans is not None else flag
            t = tix if bad.shape[0] > 1 else np.zeros_like(tix)
            n = 0
            for c in range(already.shape[2]):
                rb = bad[t, a1, :, c // 2] | bad[t, a2, :, c % 2]               # (n_row, n_c or 1)
                n += int((rb & ~already[..., c]).sum())
            out[term.key] = n
            continue
        if nunf is None:
            already = flag[:, chans] if chans is not None else flag
            nunf = (~already).sum(axis=2, dtype=np.int64)
        t = tix if bad.shape[0] > 1 else np.zeros_like(tix)
        rb = bad[t, a1] | bad[t, a2]                                        # (n_row, n_c or 1)
        out[term.key] = int(np.where(rb, nunf, 0).sum())
    return out
