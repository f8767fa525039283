"""CASA ``calwt`` for apply: weights of the corrected data scaled by the gain amplitudes.

Conventions (pinned by tests/test_apply_params.py):

* ``calwt`` is a bool, or one bool per gaintable entry (CASA).  Default **False**: apply never writes
  WEIGHT, WEIGHT_SPECTRUM or SIGMA unless asked (CASA's applycal defaults to True; alakazam keeps the
  MS's weights untouched unless calwt is given, as every other column apply does not own).
* Corrected data ``V' = g_p^-1 V g_q^-*`` have noise variance ``sigma^2 / |g_p|^2 |g_q|^2``, so for
  correlation (a, b) of baseline (p, q) the weight is its inverse,
  ``w = |g_p,a|^2 |g_q,b|^2 / SIGMA^2``, with g the product of the *diagonal* terms (K, G, KC, CP;
  only G changes amplitudes) of the entries with calwt True; D and the parallactic angle are not used
  (CASA does not calwt polarisation terms).  Measured with CASA 6.7 applycal(calwt=True): a G of
  amplitude 10 on one antenna (1 elsewhere) gives its baselines WEIGHT = 100 / SIGMA^2, the others
  1 / SIGMA^2 (this module divided by the gains until 2026-12: 0.01 / SIGMA^2 there).
* CASA (>= 4.2) convention: SIGMA (and SIGMA_SPECTRUM) describe DATA and are never changed; WEIGHT
  (and WEIGHT_SPECTRUM) describe the corrected data and are *derived from SIGMA* -- so applying
  twice gives the same weights, never compounded scalings.  A SIGMA <= 0 gives weight 0.
* WEIGHT_SPECTRUM (when the MS has it): per channel as above, from SIGMA_SPECTRUM when present, else
  from SIGMA; the channels not selected keep their values.  WEIGHT: the row's SIGMA-based weight times
  the mean factor ``|g_p,a g_q,b|^2`` over the selected channels with a valid solution.
* A sample without a valid solution: weight 0 when it is flagged (calflag), otherwise (calonly: the
  data are written uncorrected) its weight is ``1/SIGMA^2`` unscaled.
* Only modes that write data write weights (not trial / flagonly); ``correlation`` restricts which
  correlations are written, as for the data.
"""

from __future__ import annotations

import numpy as np

from ..errors import AlakazamError

_HAND = {"XX": (0, 0), "XY": (0, 1), "YX": (1, 0), "YY": (1, 1),
         "RR": (0, 0), "RL": (0, 1), "LR": (1, 0), "LL": (1, 1)}


def parse_calwt(value, n_terms, where="calwt"):
    """bool or one bool per term -> list of bools."""
    if value is None or value == "":
        return [False] * n_terms
    if isinstance(value, bool):
        return [value] * n_terms
    if isinstance(value, (list, tuple)) and all(isinstance(x, bool) for x in value):
        if len(value) == 1:
            return [value[0]] * n_terms
        if len(value) == n_terms:
            return list(value)
        raise AlakazamError(f"{where}: has {len(value)} entries but there are {n_terms} terms; give one per "
                            "table or one for all")
    raise AlakazamError(f"{where}: {value!r} must be True/False or a list of them (one per table)")


def factors(diag, tidx, a1, a2, corr_types):
    """``|g_p,a|^2 |g_q,b|^2`` (n_row, n_chan, n_corr native order); NaN where no valid solution.
    ``diag`` (n_t, n_ant, n_chan or 1, 2)."""
    gp = np.abs(diag[tidx, a1]) ** 2           # (n_row, n_chan, 2)
    gq = np.abs(diag[tidx, a2]) ** 2
    out = np.empty(gp.shape[:2] + (len(corr_types),))
    for k, c in enumerate(corr_types):
        a, b = _HAND[c]
        out[..., k] = gp[..., a] * gq[..., b]
    out[~np.isfinite(out) | (out == 0)] = np.nan          # a zero gain is no valid solution
    return out


def _inv_sq(sig):
    """1 / SIGMA^2, 0 for SIGMA <= 0 or not finite: the rule a solve reads DATA's weights by
    (core/weights.py)."""
    from ..core import weights

    return weights.inv_sigma_sq(sig)


def write(ms, rownr, fac, chans, n_chan, flagged_no_sol, cmask, put=None):
    """Write WEIGHT (and WEIGHT_SPECTRUM when present) of rows ``rownr`` (module doc).

    ``fac`` (n_row, n_sel_chan, n_corr) from :func:`factors`; ``chans`` the selected channels of
    ``n_chan``; ``flagged_no_sol``: samples without a valid solution get weight 0 (else unscaled).
    ``put(column, rownr, values)`` writes (default: into ``ms``; a dask worker hands its values to the
    one writer instead)."""
    from ..core import corrselect, ms_io

    if put is None:
        def put(col, rows, values):
            ms_io.write_column(ms, col, rows, values)

    rownr = np.asarray(rownr)
    with ms_io._table(str(ms)) as t:
        cols = set(t.colnames())
        if "SIGMA" not in cols or "WEIGHT" not in cols:
            raise AlakazamError(f"calwt: {ms} has no SIGMA/WEIGHT column; run without calwt")
        q = t.selectrows(rownr)
        sigma = q.getcol("SIGMA")                                   # (n_row, n_corr)
        has_ws = "WEIGHT_SPECTRUM" in cols and t.iscelldefined("WEIGHT_SPECTRUM", int(rownr[0]))
        sig_s = q.getcol("SIGMA_SPECTRUM") if has_ws and "SIGMA_SPECTRUM" in cols and \
            t.iscelldefined("SIGMA_SPECTRUM", int(rownr[0])) else None
        wdtype = q.getcol("WEIGHT", 0, 1).dtype
        q.close()
    f = np.where(np.isfinite(fac), fac, 0.0 if flagged_no_sol else 1.0)
    valid = np.isfinite(fac)
    n_valid = valid.sum(axis=1)
    mean_f = np.where(n_valid > 0, np.where(valid, fac, 0.0).sum(axis=1) / np.maximum(n_valid, 1),
                      0.0 if flagged_no_sol else 1.0)
    w_row = (_inv_sq(sigma) * mean_f).astype(wdtype)
    put("WEIGHT", rownr, corrselect.keep_unselected(ms, "WEIGHT", rownr, w_row, cmask))
    if has_ws:
        base = _inv_sq(sig_s[:, chans]) if sig_s is not None else _inv_sq(sigma)[:, None, :]
        ws = (base * f).astype(np.float32)
        all_chans = len(chans) == n_chan and bool(np.all(np.asarray(chans) == np.arange(n_chan)))
        if all_chans:
            put("WEIGHT_SPECTRUM", rownr,
                               corrselect.keep_unselected(ms, "WEIGHT_SPECTRUM", rownr, ws, cmask))
        else:
            with ms_io._table(str(ms)) as t:
                q = t.selectrows(rownr)
                full = q.getcol("WEIGHT_SPECTRUM")
                q.close()
            new = full.copy()
            new[:, chans] = ws
            if cmask is not None:
                new[..., ~cmask] = full[..., ~cmask]
            put("WEIGHT_SPECTRUM", rownr, new)
