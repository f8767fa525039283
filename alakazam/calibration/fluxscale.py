"""Flux bootstrap: transfer the flux scale of a reference calibrator to other calibrators.

Gains solved against a model of S_model Jy on a source whose true flux is S_true absorb it:
``|g|^2 S_model = |g_true|^2 S_true``.  The reference field's model is right, so its gains are the
true ones, and per antenna a and pol p the squared amplitude ratio ``f_ap = (|g_T| / |g_R|)^2``
estimates ``S_true / S_model`` (the *scale*).  Amplitudes are first averaged over the frequency cells
of each solution (unflagged, finite); with ``gain_threshold`` >= 0 the amplitudes of a field and SPW
that deviate from their median by more than that fraction are dropped first (CASA's gainthreshold).

Two estimators of f_ap (``method``, YAML ``fluxscale_method``):

``mean`` (default; CASA's fluxscale)
    ``f_ap = (<|g_T|>_ap / <|g_R|>_ap)^2`` with ``<.>`` the mean over all solutions of the field (over
    all reference fields pooled), each solution weighted by its number of valid frequency cells.  The
    weight of f_ap is ``1 / (1/W_T + 1/W_R)`` (W = summed solution weights): the inverse of its noise
    variance when every solution has the same noise.  Unbiased when the gains are the same *on
    average* over the two fields' solution times (CASA's assumption); a gain drift that differs
    between antennas only adds scatter over antennas, which the error below includes.
``interpolate``
    the reference amplitudes are interpolated linearly in time to each transfer solution time and
    ``f_ap`` is the mean over those times of ``(|g_T(t)| / |g_R(t)|)^2`` (weight: the number of
    transfer solutions).  A slow drift cancels to first order when the transfer solutions lie
    *between* reference solutions; outside the reference's time span the reference is held at its
    end value (an extrapolation) and a warning names the field, SPW and how far outside.

Per (transfer field, SPW) the f_ap of all antennas and both pols are sigma-clipped together (5
robust sigmas, 3 iterations, median/MAD: :func:`sigma_clip`, ``CLIP_NSIGMA``), then::

    scale     = sum(w f) / sum(w)                       (over the kept (a, p))
    scale_err = sqrt(sum(w (f - scale)^2) / sum(w) * n / (n - 1)) / sqrt(n)

i.e. the standard error of the mean of the squared ratios.  CASA's fluxscale
(SolvableVisJones::fluxscale, CASA 4-6) reports ``fd = median(r)^2`` of the amplitude ratios
``r = |g_T| / |g_R|`` and ``fderr = 2 stddev(r) / sqrt(N - 1)``: its propagation to ``r^2`` omits the
factor ``r`` (``sigma(r^2) = 2 r sigma(r)``), so its error is ``sqrt(fd / S_model)`` times smaller than
ours (1.5 for 3C147 against a 1 Jy model: review 54a measured 0.0148 against CASA's 0.0098).
``fluxd = model flux x scale`` (the model flux is the mean of Re((pp + qq) / 2) of
the model the transfer solutions were solved against -- MODEL_DATA, the solve's model column, or CASA's
smodel I, as their attrs ``model_column`` / ``smodel`` record it (:func:`model_source`; older tables:
MODEL_DATA) -- of that field and SPW in the MS of ``cfg.ms`` (akfluxscale ``vis``, YAML ``ms``), by default
the one the solutions record in their attr ``ms``: :func:`transfer_ms`, relative paths of older tables
looked for next to the table, then in the current directory).  An MS that cannot be found or read, or
a missing or zero model, is an error naming the MS (it assumed 1 Jy with a warning: a wrong flux
density, and a result keyed by position instead of the FIELD id, depending on the current directory).
Per pol, scale_p/scale_q and their scatter are reported too (diagnostics: for an unpolarised transfer
source they agree within the noise).

Low SNR (review 60b): a gain amplitude solved at a low SNR is biased high (noise adds to an amplitude),
and minsnr then flags the solutions that came out low and keeps the high ones, so a field whose solutions
are noisy gets a flux ratio biased high far beyond the error above (which measures the scatter over
antennas, not that bias): 3C147 (2.5 Jy) at a median solution SNR of 3.5 (17% flagged) came out 3.005 +-
0.081 Jy, at 2.3 (85% flagged) 5.33 +- 0.32 (CASA 6.7: 3.29 and 5.6-6.6).  Each field and SPW whose
solutions (those with data: SNR > 0 in ``solver_stats/snr``) have a median SNR below :data:`LOW_SNR` is
warned, naming the median and the share flagged, the direction of the bias (a transfer field's flux
density high; a reference field's low, for every transfer field) and the remedy: its gains solved over
a longer solint (solint 'scan' gave 2.466 and 2.534 there) or more channels.

Spectral index (per transfer field, over its SPWs): weighted least squares of
``log10(S) = a0 + a1 x + a2 x^2 + ...``, ``x = log10(freq / reffreq)`` with ``sigma(log10 S) =
fluxdErr / (S ln 10)`` and order ``min(fitorder, n_spw - 1)``; reffreq defaults to
``10**mean(log10 freq)`` (CASA's choice).  spidx = (a0, a1, ...), spidxerr from the covariance;
fitFluxd = 10**a0, fitFluxdErr = fitFluxd ln(10) spidxerr[0].  Frequencies are the mean solution
frequency of the SPW.

The output table is a copy of the reference table (plus the transfer table's keys when different)
in which every solution of each transfer field and SPW in the scaled key is multiplied by
``1 / sqrt(scale)`` (one factor for both pols, as CASA), recorded in the set's attr
``fluxscale_gain_factor``.  A transfer field's earlier factor is divided out before anything is
computed, so re-running (also in place, fluxtable == caltable) gives the same results and table.
An existing output that is not the reference table keeps its other keys: only the keys written (those of
the reference table, the scaled one among them) are replaced, with a warning, as a solve replaces its
keys (:func:`alakazam.io.hdf5.write_file`; it lost them all).
Results are also stored in ``fluxscale/field_<name>/spw_<id>`` attrs (:func:`alakazam.io.hdf5.
write_fluxscale`).  :func:`run_fluxscale` returns CASA's fluxscale dict: ``{field_id_str:
{spw_id_str: {'fluxd': [I, Q, U, V], 'fluxdErr', 'numSol'}, 'fieldName', 'fitFluxd', 'fitFluxdErr',
'fitRefFreq', 'spidx', 'spidxerr', 'covarMat'}, 'freq', 'spwID', 'spwName'}`` plus ``output``,
``key`` and ``method``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fnmatch
import functools
import logging
import os
import warnings

import numpy as np

from ..config import FluxscaleConfig
from ..core.selection import ID_SYNTAX as _FIELD_ID     # CASA's id syntax: '0', '0~2', '<2', '>0'
from ..errors import AlakazamError, ParameterError
from ..jones import terms as jterms

log = logging.getLogger("alakazam.fluxscale")

GAIN_FACTOR_ATTR = "fluxscale_gain_factor"
#: ratios further than this many robust sigmas (1.4826 MAD) from the median are dropped: a gross-outlier
#: cut (an antenna with bad gains), not a trim of the genuine scatter -- with 12 ratios that drift
#: independently, a 3-sigma cut dropped 3 genuine ratios and biased the scale by 3.5x its stated error
CLIP_NSIGMA = 5.0
#: a field's solutions with a median SNR below this are warned as biasing its flux ratio (module
#: docstring): the same data solved per scan, median 8, none flagged, gave 2.466 +- 0.068 for 2.5 (within
#: its error); per 120 s, median 3.5, 17% flagged, 3.005 +- 0.081
LOW_SNR = 5.0


def sigma_clip(x, nsigma=3.0, n_iter=3):
    """Mask of the values kept by iterative 3-sigma clipping (3 iterations).

    Centre and width are the median and 1.4826 x MAD of the values kept so far (the standard
    deviation when the MAD is 0): with a handful of antennas one bad ratio inflates a plain standard
    deviation enough to survive its own clipping.
    """
    keep = np.isfinite(x)
    for _ in range(n_iter):
        if keep.sum() < 3:
            break
        m = np.median(x[keep])
        s = 1.4826 * np.median(np.abs(x[keep] - m))
        if s == 0:
            s = x[keep].std()
        new = keep & (np.abs(x - m) <= nsigma * s) if s > 0 else keep
        if new.sum() == keep.sum():
            break
        keep = new
    return keep


def _amp_series(sets, ant_names, gain_threshold=-1.0):
    """Per antenna and pol the frequency-averaged |g| over time and its weight (the number of valid
    frequency cells): (times (n_t,), amp (n_ant, n_t, 2), weight (n_ant, n_t, 2)); NaN/0 where none."""
    from ..io.hdf5 import remap_antennas

    times, amps, wts = [], [], []
    for s in sets:
        j, f = remap_antennas(s, ant_names, hands=True)     # (n_ant, n_f, n_t, 2, 2), flags per hand
        a = np.stack([np.abs(j[..., 0, 0]), np.abs(j[..., 1, 1])], axis=-1)   # (n_ant, n_f, n_t, 2)
        amps.append(np.where(f | ~np.isfinite(a), np.nan, a))     # a flagged hand drops that hand only
        times.append(np.asarray(s.time, float))
    if gain_threshold >= 0:
        allv = np.concatenate([a.ravel() for a in amps])
        med = np.nanmedian(allv) if np.isfinite(allv).any() else np.nan
        amps = [np.where(np.abs(a / med - 1) > gain_threshold, np.nan, a) for a in amps]
    out_a = []
    for a in amps:
        ok = np.isfinite(a)
        wts.append(ok.sum(axis=1).astype(float))            # (n_ant, n_t, 2)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out_a.append(np.nanmean(a, axis=1))
    t = np.concatenate(times)
    o = np.argsort(t, kind="stable")
    return t[o], np.concatenate(out_a, axis=1)[:, o], np.concatenate(wts, axis=1)[:, o]


def ratios_mean(ref, tr):
    """CASA's estimator: per (antenna, pol) f = (weighted mean |g_T| / weighted mean |g_R|)^2 and its
    weight 1 / (1/W_T + 1/W_R).  ``ref``/``tr`` are :func:`_amp_series` outputs."""
    (_, ra, rw), (_, ta, tw) = ref, tr
    W_R = np.where(np.isfinite(ra), rw, 0).sum(axis=1)
    W_T = np.where(np.isfinite(ta), tw, 0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mg_r = np.nansum(np.where(np.isfinite(ra), ra * rw, 0), axis=1) / W_R
        mg_t = np.nansum(np.where(np.isfinite(ta), ta * tw, 0), axis=1) / W_T
        f = (mg_t / mg_r) ** 2
        w = 1.0 / (1.0 / W_T + 1.0 / W_R)
    ok = (W_R > 0) & (W_T > 0) & np.isfinite(f)
    return np.where(ok, f, np.nan), np.where(ok, w, 0.0)


def ratios_interpolate(ref, tr):
    """Per (antenna, pol) the mean over transfer times of (|g_T(t)| / |g_R interpolated to t|)^2 and
    its weight (the number of transfer solutions); also the largest distance (s) of a transfer
    solution time outside the reference's time span."""
    (rt, ra, _), (tt, ta, _) = ref, tr
    n_ant = ra.shape[0]
    f = np.full((n_ant, 2), np.nan)
    w = np.zeros((n_ant, 2))
    outside = 0.0
    for a in range(n_ant):
        for p in range(2):
            ok = np.isfinite(ra[a, :, p])
            okt = np.isfinite(ta[a, :, p])
            if not ok.any() or not okt.any():
                continue
            t_ok = tt[okt]
            outside = max(outside, float(np.max(rt[ok].min() - t_ok, initial=0.0)),
                          float(np.max(t_ok - rt[ok].max(), initial=0.0)))
            ref_at = np.interp(t_ok, rt[ok], ra[a, ok, p])
            f[a, p] = np.mean((ta[a, okt, p] / ref_at) ** 2)
            w[a, p] = okt.sum()
    return f, w, outside


def combine(f, w):
    """Clip the (antenna, pol) ratios together and form the weighted scale, its error and per-pol
    values: dict(scale, scale_err, n, scale_p, scatter_p, n_ant_p, scale_q, ...)."""
    keep = sigma_clip(np.where(w > 0, f, np.nan).ravel(), nsigma=CLIP_NSIGMA).reshape(f.shape) & (w > 0)
    res = {}

    def stats(m):
        n = int(m.sum())
        if n == 0:
            return np.nan, np.nan, 0
        ww, ff = w[m], f[m]
        mu = float((ww * ff).sum() / ww.sum())
        var = float((ww * (ff - mu) ** 2).sum() / ww.sum()) * n / (n - 1) if n > 1 else np.nan
        return mu, float(np.sqrt(var / n)), n

    res["scale"], res["scale_err"], res["n"] = stats(keep)
    for p, pol in enumerate("pq"):
        mu, err, n = stats(keep & (np.arange(2) == p)[None, :])
        res[f"scale_{pol}"], res[f"scatter_{pol}"], res[f"n_ant_{pol}"] = mu, err, n
    return res


def snr_summary(sets):
    """``(median SNR, share flagged)`` of the solutions with data (SNR > 0, per antenna, cell and hand) of
    ``sets``; None when none records its SNR."""
    vals, flagged = [], []
    for s in sets:
        snr = s.extra.get("snr")
        if snr is None:
            continue
        snr = np.asarray(snr, float)
        hf = s.hand_flags()
        if snr.shape == hf.shape[:-1]:
            snr = np.repeat(snr[..., None], hf.shape[-1], axis=-1)
        if snr.shape != hf.shape:
            continue
        has = np.isfinite(snr) & (snr > 0)
        vals.append(snr[has])
        flagged.append(hf[has])
    if not vals or not sum(len(v) for v in vals):
        return None
    v, f = np.concatenate(vals), np.concatenate(flagged)
    return float(np.median(v)), float(f.mean())


def _warn_low_snr(field, sp, key, sets, role, warned):
    """The low-SNR warning (module docstring) for ``field``'s solutions in SPW ``sp``, once per (field,
    SPW); ``role``: 'transfer' or 'reference'."""
    if (field, sp) in warned:
        return
    warned.add((field, sp))
    got = snr_summary(sets)
    if got is None or not got[0] < LOW_SNR:
        return
    med, share = got
    effect = ("its flux density is likely biased high, by more than its error" if role == "transfer" else
              "the flux scale it gives is likely biased low, for every transfer field")
    log.warning("fluxscale: %s SPW %d (%s field): its %s solutions have a median SNR of %.2g (%.0f%% of them "
                "flagged): a gain amplitude that noisy is biased high, and minsnr keeps the solutions that "
                "came out high, so %s (the error quoted is the scatter over antennas, not this bias). "
                "Solve %s's gains over a longer solint (e.g. solint='scan' or 'inf' on it) or more "
                "channels, then run fluxscale again.", field, sp, role, key, med, 100 * share, effect, field)


def _solved_with(ts, sp) -> tuple:
    """The SPWs whose data gave SPW ``sp``'s solutions: its ``combined_spws`` (combine 'spw': one
    solution stored once per SPW, core/combine.py), else ``(sp,)``."""
    got = {tuple(int(x) for x in np.atleast_1d(s.attrs.get("combined_spws", [sp]))) for s in ts}
    return sorted(got, key=len)[-1] if got else (int(sp),)


def _independent_points(field, spws: dict) -> list:
    """``[(freq, flux, err)]`` for the spectral fit: one per SPW, except that SPWs solved together
    (combine 'spw': their gains are one solution, so their scales are one measurement, not several) give
    one point -- the mean frequency and flux density of those SPWs, with one SPW's error (a review: eight
    copies of one combined solution fitted as eight SPWs gave a spectral index of 0.0000 +- 0.0085, 82
    sigma from the source's -0.7, and a fitted-flux error too small by sqrt(8)).  Said once per field."""
    groups = {}
    for sp in sorted(spws):
        key = tuple(x for x in spws[sp].get("solved_with", (sp,)) if x in spws) or (sp,)
        groups.setdefault(key, []).append(sp)
    pts = []
    for members in groups.values():
        r = [spws[x] for x in members]
        pts.append((float(np.mean([x["freq"] for x in r])), float(np.mean([x["fluxd"] for x in r])),
                    float(np.mean([x["fluxd_err"] for x in r]))))
        if len(members) > 1:
            log.warning("%s: SPWs %s were solved together (combine 'spw'): one flux scale for all of them, "
                        "one flux density in the spectral fit (%s)", field, ",".join(map(str, members)),
                        "no spectral index can be fitted: a single independent point" if len(groups) == 1
                        else f"{len(groups)} independent points")
    return pts


def jy_text(x) -> str:
    """A flux density (or its error) in Jy as printed: 5 decimals from 0.01 Jy up (and 0), 4 significant
    digits in exponent form below -- a 1e-4 Jy calibrator printed as 0.00002 +- 0.00000 (review 56b)."""
    x = float(x)
    if not np.isfinite(x):
        return "nan"
    return f"{x:.5f}" if x == 0 or abs(x) >= 0.01 else f"{x:.4e}"


def spectral_fit(freqs, flux, err, fitorder=1, reffreq=0.0):
    """CASA's spectral fit: log10(S) = sum_k a_k log10(freq / reffreq)^k, weighted by the errors.

    Returns dict(spidx, spidxerr, covarMat, fitFluxd, fitFluxdErr, fitRefFreq, fitorder).  One SPW (or
    fitorder 0 with one SPW): no fit, fitFluxd/fitRefFreq are the SPW's values (as CASA).
    """
    freqs, flux, err = (np.asarray(x, float) for x in (freqs, flux, err))
    ok = np.isfinite(flux) & (flux > 0) & np.isfinite(freqs)
    freqs, flux, err = freqs[ok], flux[ok], err[ok]
    nu0 = float(reffreq) if reffreq and reffreq > 0 else (
        float(10 ** np.mean(np.log10(freqs))) if len(freqs) else np.nan)
    order = int(min(fitorder, len(freqs) - 1))
    if len(freqs) == 0:
        return dict(spidx=[np.nan], spidxerr=[np.nan], covarMat=[[np.nan]], fitFluxd=np.nan,
                    fitFluxdErr=np.nan, fitRefFreq=nu0, fitorder=0)
    if len(freqs) == 1:
        e = float(err[0]) if np.isfinite(err[0]) else np.nan
        return dict(spidx=[float(np.log10(flux[0]))], spidxerr=[e / (flux[0] * np.log(10))],
                    covarMat=[[(e / (flux[0] * np.log(10))) ** 2]], fitFluxd=float(flux[0]), fitFluxdErr=e,
                    fitRefFreq=float(freqs[0]), fitorder=0)
    x = np.log10(freqs / nu0)
    y = np.log10(flux)
    sig = err / (flux * np.log(10))
    good_sig = np.isfinite(sig) & (sig > 0)
    wts = np.where(good_sig, 1.0 / np.where(good_sig, sig, 1.0) ** 2, 0.0)
    if not good_sig.all():                 # no usable error: equal weights
        wts = np.ones_like(y)
    A = np.vander(x, order + 1, increasing=True)
    N = A.T @ (wts[:, None] * A)
    cov = np.linalg.pinv(N)
    a = cov @ (A.T @ (wts * y))
    if not good_sig.all():                 # scale by the residual variance when errors are unknown
        dof = len(y) - order - 1           # none left (2 SPWs, order 1): the errors are undetermined,
        cov = cov * (float(((y - A @ a) ** 2).sum() / dof) if dof > 0 else np.nan)   # not 0
    aerr = np.sqrt(np.clip(np.diag(cov), 0, None))
    fit = float(10 ** a[0])
    return dict(spidx=[float(v) for v in a], spidxerr=[float(v) for v in aerr], covarMat=cov.tolist(),
                fitFluxd=fit, fitFluxdErr=float(fit * np.log(10) * aerr[0]), fitRefFreq=nu0, fitorder=order)


#: how to give the MS when the recorded one is not found (the parameter is named by the error's key)
_GIVE_MS = ("give the Measurement Set the solutions were solved on (its MODEL_DATA holds the transfer "
            "fields' model, whose flux density is scaled)")


def transfer_ms(cfg, table, sets):
    """``(path, None)``: the MS whose MODEL_DATA gives the model flux of the transfer ``sets`` (one
    field's solutions in ``table``): ``cfg.ms`` when given, else the MS the sets record (attr ``ms``,
    resolved by :func:`alakazam.io.hdf5.resolve_ms`: absolute, or relative to the table's directory,
    then to the current one); ``(None, why)`` when it is not found."""
    from ..io import hdf5

    if cfg.ms:
        ms = os.path.abspath(os.path.expanduser(str(cfg.ms)))
        if os.path.isdir(ms):
            return ms, None
        return None, (f"{str(cfg.ms)!r} is a file, not a Measurement Set (expected an MS directory)"
                      if os.path.exists(ms) else f"{str(cfg.ms)!r} does not exist")
    stored = next((str(s.attrs.get("ms")) for s in sets if s.attrs.get("ms")), "")
    path, tried = hdf5.resolve_ms(stored, table)
    if path:
        return path, None
    field = sets[0].field_name if sets else "?"
    if not stored:
        return None, f"{table} records no Measurement Set with the solutions of {field}; {_GIVE_MS}"
    return None, (f"the Measurement Set {stored!r} of {field}'s solutions (recorded in {table}) is not found "
                  f"(looked for {' and '.join(tried)}); {_GIVE_MS}")


def model_source(sets):
    """The model the transfer field's solutions were solved against, as their attrs record it:
    ``("smodel", [I, Q, U, V])`` (CASA smodel: a point source), or ``("column", name)`` (MODEL_DATA, or
    the solve's model column); tables written before the attrs existed: MODEL_DATA."""
    for s in sets:
        sm = s.attrs.get("smodel")
        if sm is not None and len(np.atleast_1d(sm)):
            return "smodel", [float(x) for x in np.atleast_1d(sm)]
        col = s.attrs.get("model_column")
        if col:
            return "column", str(col)
    return "column", "MODEL_DATA"


_MS_KEPT = []           # (ExitStack, paths) of the outermost _keep_ms


@contextlib.contextmanager
def _keep_ms():
    """Inside (re-entrant): each MS :func:`_ms_errors` checks keeps an open handle
    (:class:`alakazam.core.ms.MeasurementSet`) to the outermost exit, so its metadata and row index
    are read once per call -- not once per transfer field and SPW (review 56a: 65 metadata reads,
    25 s of an akfluxscale's 31 s with 32 SPWs).  Fluxscale writes no MS."""
    if _MS_KEPT:
        yield
        return
    with contextlib.ExitStack() as st:
        _MS_KEPT.append((st, set()))
        try:
            yield
        finally:
            _MS_KEPT.pop()


def _hold(ms):
    if not _MS_KEPT:
        return
    from ..core.ms import MeasurementSet

    st, seen = _MS_KEPT[-1]
    k = os.path.realpath(str(ms))
    if k not in seen:
        seen.add(k)
        st.enter_context(MeasurementSet.open(ms))


def _ms_errors(ms, field=None, column="MODEL_DATA"):
    """Why the model flux of ``field`` cannot be read from ``ms`` (not an MS, no such field, no
    model column: :func:`alakazam.core.ms_io.check_columns`' message), or None (``field`` None: any)."""
    from ..core import ms_io

    try:
        ms_io.check_ms(ms)
        _hold(ms)
        meta = ms_io.read_meta(ms)
        if field is not None:
            ms_io.field_ids_named(meta, field)        # a table's field name (not selection syntax)
        if column:
            ms_io.check_columns(ms, [column])
    except AlakazamError as e:
        return _msg(e, "vis/ms")
    return None


def _model_flux(ms, field, source=("column", "MODEL_DATA")):
    """{spw_id: mean Re((pp + qq) / 2) of the model column} of ``field`` (200 rows per SPW), or
    the smodel's I in every SPW (``source``: :func:`model_source`), and the field id.  AlakazamError
    naming the MS when it cannot be read (the flux density would be wrong: it is model flux x scale)."""
    from ..core import ms_io

    kind, what = source
    column = what if kind == "column" else ""
    why = _ms_errors(ms, field, column)
    if why:
        raise AlakazamError(f"fluxscale: the model flux of {field} is not readable ({why}); {_GIVE_MS}")
    meta = ms_io.read_meta(ms)
    fid = ms_io.field_ids_named(meta, field)[0]
    if kind == "smodel":                # the solve's model: a point source of Stokes I = smodel[0]
        return {int(sp.spw_id): float(what[0]) for sp in meta.spws.values()}, int(fid)
    out = {}
    for ddid, sp in meta.spws.items():
        # (from the row index of the call's kept MS, core/rowindex.py: no main-table scan per SPW)
        rows = ms_io.row_numbers(ms, ddid, [fid])
        # 200 rows spread over the field's rows (the first 200 are one scan: a model filled in some scans
        # only read 0 there)
        rows = rows[np.unique(np.linspace(0, len(rows) - 1, min(len(rows), 200)).round().astype(np.int64))]
        if not len(rows):
            continue
        ch = ms_io.read_rows(ms, ddid, [fid], data_col=column, model_col=None, meta=meta, rows=rows,
                             weights=False)
        if ch.n_row:
            out[int(sp.spw_id)] = _mean_model(ch)
    return out, int(fid)


def _mean_model(ch):
    """Mean Re((pp + qq) / 2) of a chunk's model column over its cross-correlation samples with a finite
    value in both hands, unflagged ones where there are any (FLAG / FLAG_ROW: a flagged row's MODEL_DATA
    may hold anything -- a review, session 49: NaN there made the flux 'nan', the column being
    filled), and leaving out samples whose model is 0 in every correlation: the solve flags those
    (core/cellflags.py: they carry no gain information), so the gains were solved against the others
    only (review 60b: MODEL_DATA 0 on one antenna's baselines or over half the band gave 3C147 1.86 and
    1.24 Jy for 2.5, silently); 0.0 when every finite sample is 0, NaN when none is finite."""
    d = ch.data
    m = 0.5 * (d[..., 0] + d[..., -1]).real
    ok = np.isfinite(m) & (np.asarray(ch.ant1) != np.asarray(ch.ant2))[:, None]
    nz = ok & (d != 0).any(axis=-1)
    good = nz & ~(ch.flag[..., 0] | ch.flag[..., -1])
    use = good if good.any() else nz
    if not use.any():
        return 0.0 if ok.any() else float("nan")
    return float(m[use].mean())


def _ref_spw(spw, refspwmap):
    """CASA's refspwmap: [-1] none; one value for every SPW; else entry ``spw`` (-1 = itself)."""
    m = list(refspwmap or [-1])
    if m == [-1]:
        return spw
    if len(m) == 1:
        return int(m[0])
    return int(m[spw]) if spw < len(m) and m[spw] > -1 else spw


def partly_scaled(sets) -> dict:
    """``{field: (scaled SPWs, unscaled SPWs)}`` of the fields whose gains in ``sets`` (one key) akfluxscale
    scaled in some SPWs (attr :data:`GAIN_FACTOR_ATTR`) and not in others: an ``spw`` selection, or an
    SPW without an antenna valid on both fields, left those written as solved -- still on the flux scale
    of the field's model (review 54a: akfluxscale spw='0,1' left 3C147's SPW 2 at 1/sqrt(2.5) of its
    scaled gains, the target 29% low there, unsaid)."""
    have, scaled = {}, {}
    for st in sets:
        f, sp = str(st.attrs.get("field_name", "")), int(st.attrs.get("spw", -1))
        have.setdefault(f, set()).add(sp)
        if st.attrs.get(GAIN_FACTOR_ATTR) is not None:
            scaled.setdefault(f, set()).add(sp)
    return {f: (sorted(scaled[f]), sorted(have[f] - scaled[f])) for f in scaled if have[f] - scaled[f]}


def warn_partly_scaled(key, table, sets, logger="alakazam.apply"):
    """A WARNING (once per task call or run) for each field of :func:`partly_scaled`, where a table's
    gains are read to be applied or pre-applied."""
    from ..core import warnonce

    for f, (done, left) in sorted(partly_scaled(sets).items()):
        warnonce.warning(logger, "%s of %s: akfluxscale scaled %s's gains in SPW %s but not in SPW %s (not "
                         "selected by its spw, or no antenna valid on both fields): there they keep the flux "
                         "scale of %s's model, and so does every field calibrated with them; scale them too "
                         "(akfluxscale with spw='%s' into this table)", key, table, f,
                         ", ".join(map(str, done)), ", ".join(map(str, left)), f,
                         ",".join(map(str, left)))


def _unscaled(s):
    """The set with an earlier fluxscale factor divided out (a copy), or the set itself."""
    fac = s.attrs.get(GAIN_FACTOR_ATTR)
    if fac is None:
        return s
    s2 = copy.deepcopy(s)
    s2.jones = s2.jones / float(fac)
    del s2.attrs[GAIN_FACTOR_ATTR]
    return s2




def _is_pattern(f) -> bool:
    return any(c in str(f) for c in "*?[")


def _items(cfg, key):
    """The items of ``cfg.<key>`` (reference_field / transfer_field), comma-separated strings split
    (CASA's ``'3C147,TARGET'``)."""
    return [x.strip() for f in getattr(cfg, key) for x in str(f).split(",") if x.strip()]


def named_fields(cfg: FluxscaleConfig):
    """``(cfg, errors)``: ``cfg`` with its reference and transfer fields given as CASA fluxscale takes
    them -- names, a comma-separated string of them (``'3C147,TARGET'``), patterns (``'1331+305*'``,
    matched against the fields with solutions of the key), field ids in CASA's id syntax (``'0'``,
    ``'0~2'``, ``'>0'``: rows of the transfer MS's FIELD table, ``cfg.ms`` or the one the table
    records; a field named like an id is ``'"2"'``) -- replaced by field names; ``errors``: {YAML key:
    [message]} for an id that is no row of that FIELD table.  Apply it once: a resolved name may
    itself look like an id.  An item that resolves to nothing else is kept as given (the checks then
    report it with the fields available)."""
    split = {k: _items(cfg, k) for k in ("reference_field", "transfer_field")}
    errors = {}
    if not any(_is_pattern(f) or _FIELD_ID.fullmatch(f) or f.startswith('"') for v in split.values()
               for f in v):
        return dataclasses.replace(cfg, **split), errors
    from ..io import hdf5

    ref_table = cfg.reference_table
    tr_table = cfg.transfer_table or ref_table
    try:
        key = hdf5.resolve_key(ref_table, cfg.jones_type)
        ref_sets = hdf5.read_term(ref_table, key)
        tr_sets = ref_sets if tr_table == ref_table else hdf5.read_term(tr_table, key)
    except AlakazamError:
        return dataclasses.replace(cfg, **split), errors
    ms_names = []

    def field_names():
        if not ms_names:
            ms, why = transfer_ms(cfg, tr_table, tr_sets)
            ms_names.append(_ms_field_names(ms) if ms else (why, None))
        return ms_names[0]

    def names(key, sets):
        have = sorted({s.field_name for s in sets})
        out = []
        for f in split[key]:
            if _is_pattern(f):                  # (quoted or not, as CASA)
                p = f[1:-1] if len(f) >= 2 and f[0] == f[-1] == '"' else f
                out.extend([h for h in have if fnmatch.fnmatchcase(h, p)] or [p])
            elif f in have and not _FIELD_ID.fullmatch(f):
                out.append(f)
            else:
                out.extend(_id_item(f, key, field_names(), errors))
        return list(dict.fromkeys(out))

    return dataclasses.replace(cfg, reference_field=names("reference_field", ref_sets),
                               transfer_field=names("transfer_field", tr_sets)), errors


def _ms_field_names(ms):
    """(ms, [FIELD names]) of the MS at ``ms``; the list None when it cannot be read."""
    try:
        from casacore.tables import table

        with table(os.path.join(ms, "FIELD"), ack=False) as t:
            return ms, [str(n) for n in t.getcol("NAME")]
    except (TypeError, RuntimeError):       # no MS / not readable: ids stay as given
        return ms, None


def _id_item(f, key, ms_fields, errors):
    """The field names of one reference / transfer item that is not a table name or pattern: a quoted
    name (``'"2"'``) unquoted; CASA id syntax through the MS's FIELD table (``ms_fields`` = (ms,
    names or None)), an id that is no row of it added to ``errors[key]``; anything else as given."""
    from ..core.selection import parse_fields

    if f.startswith('"') and f.endswith('"') and len(f) >= 2:
        return [f[1:-1]]                            # a name, also one that looks like an id
    ms, names = ms_fields
    if not _FIELD_ID.fullmatch(f) or (not names and not ms):
        return [f]
    if not names:
        errors.setdefault(key, []).append(f"{f!r} is CASA id syntax, a row of the transfer MS's FIELD "
                                          f"table, which is not readable: {ms}")
        return []
    try:
        return [names[i] for i in parse_fields(f, names)]
    except AlakazamError as e:
        errors.setdefault(key, []).append(f"{f!r} is CASA id syntax and selects no row of the FIELD table "
                                          f"of {ms} ({e})")
        return []


def fields_by_id(cfg: FluxscaleConfig, ms):
    """``(cfg, errors)`` for a fluxscale block whose tables an earlier YAML block writes (so their
    fields are not readable yet): comma-separated items split, quoted names unquoted, CASA id syntax
    turned into the names of the FIELD table of ``cfg.ms`` or else ``ms`` (the MS of the block that
    writes the table), errors for ids that are no row of it; patterns are left to
    :func:`planned_errors`."""
    out, errors = {}, {}
    ms_fields = _ms_field_names(cfg.ms or ms) if (cfg.ms or ms) else (None, None)
    for key in ("reference_field", "transfer_field"):
        out[key] = list(dict.fromkeys(n for f in _items(cfg, key) for n in (
            [f.strip('"')] if _is_pattern(f) else _id_item(f, key, ms_fields, errors))))
    return dataclasses.replace(cfg, **out), errors


def _resolve_fields(cfg, key, ref_table, tr_table, ref_sets, tr_sets):
    have_ref = {s.field_name for s in ref_sets}
    have_tr = {s.field_name for s in tr_sets}
    for f in cfg.reference_field:
        if f not in have_ref:
            raise AlakazamError(f"reference_field: {f!r} has no {key} solutions in {ref_table} "
                                f"(fields: {', '.join(sorted(have_ref))})")
    for f in cfg.transfer_field:
        if f not in have_tr:
            raise AlakazamError(f"transfer_field: {f!r} has no {key} solutions in {tr_table} "
                                f"(fields: {', '.join(sorted(have_tr))})")
    transfer = list(cfg.transfer_field) or sorted(have_tr - set(cfg.reference_field))
    if not transfer:
        raise AlakazamError(f"transfer_field: empty and {tr_table} has no {key} solutions of a field other "
                            f"than the reference ({', '.join(cfg.reference_field)})")
    if not cfg.transfer_field:
        log.info("fluxscale: transfer fields (all other fields with %s solutions): %s", key,
                 ", ".join(transfer))
    return transfer


def _msg(e, *heads):
    """An error's message without a leading 'key: ' naming the parameter again."""
    head, sep, rest = str(e).partition(": ")
    return rest if sep and head in heads else str(e)


def _is_gain_key(key) -> bool:
    """Whether table key ``key`` (``G0``, ``K1``, ...) holds gain solutions (a type fluxscale scales)."""
    try:
        return bool(jterms.get(str(key).rstrip("0123456789")).gain)
    except AlakazamError:
        return False


def _checked_sets(table, keys, add, name):
    """The solution sets of ``keys`` in ``table`` (a key that cannot be read: its error added to
    ``name``, the others still read), or None when none could be read."""
    from ..io import hdf5

    out, ok = [], False
    for k in keys:
        try:
            out.extend(hdf5.read_term(table, k))
            ok = True
        except AlakazamError as e:
            add(name, _msg(e, "caltable"))
    return out if ok else None


def check_inputs(cfg: FluxscaleConfig, named=False) -> dict:
    """{YAML key: [message]} for every part of a fluxscale block that does not fit its tables: the
    output, the tables, jones_type (a gain key in both tables), the reference and transfer fields, ms,
    spw and refspwmap -- all of them, so that akfluxscale and the YAML runner report them together
    (before: one at a time, the first :func:`run_fluxscale` met).  ``named``: the fields are already
    :func:`named_fields`' (else they are named here).

    A check is skipped only when what it is checked against failed: the fields, spw and refspwmap of a
    table that cannot be read.  A jones_type that is not a usable gain key (not found, ambiguous, a
    K or other non-gain key, phase-only, different keys in the two tables) is reported and the fields,
    SPWs and refspwmap are still checked -- against the table's gain keys (its resolved key when that
    is a gain) -- and a given ``ms`` is checked on its own (it was reported only once every other
    check had passed: four runs to see five bad values, review of session 45).  Each MS it reads is
    kept open (:func:`_keep_ms`) and its reads kept (:func:`_kept_reads`)."""
    with _keep_ms(), _kept_reads():
        return _check_inputs(cfg, named)


@contextlib.contextmanager
def _kept_reads():
    """The reads of one fluxscale (its checks, then the run): each MS's metadata read once while the MS
    is unchanged (:func:`alakazam.core.metacache.keep`: 32 SPWs read it 65 times, 0.4-0.8 s each, a
    review, session 56) and each table's key read once while the file is unchanged
    (:func:`alakazam.io.hdf5.keep_terms`)."""
    from ..core import metacache
    from ..io import hdf5

    with metacache.keep(), hdf5.keep_terms():
        yield


def _check_inputs(cfg: FluxscaleConfig, named=False) -> dict:
    """:func:`check_inputs` (inside :func:`_kept_reads`)."""
    from ..core.outputs import check_output_file
    from ..io import hdf5

    errors = {}
    if not named:
        cfg, errors = named_fields(cfg)

    def add(k, m):
        if m not in errors.get(k, []):
            errors.setdefault(k, []).append(m)

    try:
        check_output_file(cfg.output, "output")
    except AlakazamError as e:
        add("output", _msg(e, "output"))
    ref_table = cfg.reference_table
    tr_table = cfg.transfer_table or ref_table
    same = tr_table == ref_table
    tables = {"reference_table": ref_table, "transfer_table": tr_table}
    all_keys, keys = {}, {}             # table name -> its keys / the key jones_type resolves to
    for name, table in tables.items():
        if name == "transfer_table" and same:
            if "reference_table" in all_keys:
                all_keys[name] = all_keys["reference_table"]
            if "reference_table" in keys:
                keys[name] = keys["reference_table"]
            continue
        try:
            all_keys[name] = hdf5.list_keys(table)
        except AlakazamError as e:
            add(name, _msg(e, "caltable"))
            continue
        try:
            keys[name] = hdf5.pick_key(all_keys[name], cfg.jones_type, table)
        except AlakazamError as e:
            add("jones_type", str(e))
    key, tr_key = keys.get("reference_table"), keys.get("transfer_table")
    if key and tr_key and key != tr_key:
        add("jones_type", f"{cfg.jones_type!r} resolves to different keys in the two tables "
            f"({key}, {tr_key})")
    for k in dict.fromkeys(v for v in (key, tr_key) if v):
        if not _is_gain_key(k):
            add("jones_type", f"fluxscale scales G (gain) solutions; {k} is {k.rstrip('0123456789')}")

    # the solutions the fields and SPWs are checked against, per table: the key when it is a gain key,
    # else every gain key of the table (every key when it has none) -- a field or SPW none of them has
    # is wrong whatever jones_type becomes
    sets, label = {}, {}
    for name, table in tables.items():
        if name == "transfer_table" and same:
            if "reference_table" in sets:
                sets[name], label[name] = sets["reference_table"], label["reference_table"]
            continue
        if name not in all_keys:
            continue
        k = keys.get(name)
        use = [k] if k and _is_gain_key(k) else (
            [x for x in all_keys[name] if _is_gain_key(x)] or list(all_keys[name]))
        got = _checked_sets(table, use, add, name)
        if got is not None:
            sets[name], label[name] = got, " or ".join(use)
    ref_sets, tr_sets = sets.get("reference_table"), sets.get("transfer_table")
    usable = bool(key) and key == tr_key and "jones_type" not in errors
    if usable and ref_sets is not None and tr_sets is not None:
        phase_only = sorted({t for t, ss in ((ref_table, ref_sets), (tr_table, tr_sets))
                             if any(bool(s.attrs.get("phase_only", False)) for s in ss)})
        if phase_only:  # every amplitude is 1: every ratio 1, the model's flux returned as 'derived'
            add("jones_type", f"{key} in {', '.join(phase_only)} was solved phase-only (calmode 'p'): its "
                "amplitudes are all 1 and carry no flux scale; give the key of an amplitude-and-phase G")
    have_ref = {s.field_name for s in ref_sets} if ref_sets is not None else None
    have_tr = {s.field_name for s in tr_sets} if tr_sets is not None else None
    if have_ref is not None:
        for f in cfg.reference_field:
            if f not in have_ref:
                add("reference_field", f"{f!r} has no {label['reference_table']} solutions in {ref_table} "
                    f"(fields: {', '.join(sorted(have_ref))})")
    transfer = []
    if have_tr is not None:
        for f in cfg.transfer_field:
            if f not in have_tr:
                add("transfer_field", f"{f!r} has no {label['transfer_table']} solutions in {tr_table} "
                    f"(fields: {', '.join(sorted(have_tr))})")
        transfer = [f for f in cfg.transfer_field if f in have_tr] or (
            [] if cfg.transfer_field else sorted(have_tr - set(cfg.reference_field)))
        if not cfg.transfer_field and not transfer:
            add("transfer_field", f"empty and {tr_table} has no {label['transfer_table']} solutions of a "
                f"field other than the reference ({', '.join(cfg.reference_field)})")
    # the MS checks, once per (MS, field, model column) of this call: the transfer fields' SPWs mostly
    # share one MS, and each check opened the main table (and read the metadata) again
    ms_errors = functools.lru_cache(maxsize=None)(_ms_errors)
    if cfg.ms:                          # a given MS: checked on its own (whatever else is wrong)
        ms, why = transfer_ms(cfg, tr_table, [])
        why = why or ms_errors(ms, None, "")
        if why:
            add("ms", why)
    for tf in transfer:                 # the MS(s) whose MODEL_DATA gives the model flux (per SPW's sets)
        sets_tf = [s for s in tr_sets if s.field_name == tf]
        src = model_source(sets_tf)
        for sp in sorted({s.spw for s in sets_tf}):
            ms, why = transfer_ms(cfg, tr_table, [s for s in sets_tf if s.spw == sp])
            why = why or ms_errors(ms, tf, src[1] if src[0] == "column" else "")
            if why:
                add("ms", why)
    if tr_sets is None:
        return errors
    pool = transfer or sorted(have_tr)          # (no valid transfer field: spw checked on every field)
    spws = sorted({s.spw for s in tr_sets if s.field_name in pool})
    if str(cfg.spw).strip():
        try:
            want = {int(x) for x in str(cfg.spw).replace(" ", "").split(",") if x != ""}
        except ValueError:
            want = None                  # (the config names an unreadable spw)
        if want is not None and not want & set(spws):
            add("spw", f"{cfg.spw!r} selects no SPW with {label['transfer_table']} solutions of the "
                + (f"transfer field(s) {', '.join(transfer)}" if transfer else f"fields in {tr_table}")
                + f" (SPWs with solutions: {spws})")
        elif want is not None:
            spws = [s for s in spws if s in want]
    if ref_sets is None:
        return errors
    # the reference SPWs: of the reference fields, or of every field when one of them is wrong (an SPW
    # that no field has is wrong whichever reference field is meant)
    ref_ok = not errors.get("reference_field") and cfg.reference_field
    ref_spws = sorted({s.spw for s in ref_sets if not ref_ok or s.field_name in cfg.reference_field})
    pairs = {(_ref_spw(s, cfg.refspwmap), s) for s in spws}
    if not transfer or errors.get("spw"):      # (the SPWs to scale are not known: only what the map
        pairs = {(r, s) for r, s in pairs if r != s}    # itself sends to another SPW)
    bad = sorted({r for r, _ in pairs} - set(ref_spws))
    if bad:
        whose = (f"of the reference field(s) {', '.join(cfg.reference_field)}" if ref_ok
                 else f"in {ref_table}")
        add("refspwmap", f"{cfg.refspwmap!r} maps to SPW(s) {bad} without {label['reference_table']} "
            f"solutions {whose} (SPWs with solutions: {ref_spws}); give refspwmap=[<ref spw>] or one "
            "entry per SPW")
    return errors


def planned_errors(cfg: FluxscaleConfig, tables: dict) -> dict:
    """{YAML key: [message]}: the part of :func:`check_inputs` that needs no solutions -- jones_type a
    gain key of both tables, the reference and transfer fields among the fields of that key (any key's,
    when jones_type is bad) -- for tables that an earlier block of a YAML file writes (the runner's
    preflight, caltasks/yamlrun.py: before, a bad key or field was found when this block ran, after the
    solve had written the table).  ``tables``: {'reference_table' / 'transfer_table': (the table's name
    for messages, {key: field names, or None when not known})}, or None for a table not known."""
    from ..io import hdf5

    errors = {}

    def add(k, m):
        if m not in errors.get(k, []):
            errors.setdefault(k, []).append(m)

    keys = {}
    for name, known in tables.items():
        if known is None:
            continue
        try:
            keys[name] = hdf5.pick_key(known[1], cfg.jones_type, known[0])
        except AlakazamError as e:
            add("jones_type", str(e))
    key = keys.get("reference_table") or keys.get("transfer_table")
    if len(set(keys.values())) > 1:
        add("jones_type", f"{cfg.jones_type!r} resolves to different keys in the two tables "
            f"({', '.join(keys.values())})")
        return errors
    jt = key.rstrip("0123456789") if key else None
    if jt and not jterms.get(jt).gain:
        add("jones_type", f"fluxscale scales G (gain) solutions; {key} is {jt}")
        return errors
    for name, what, want in (("reference_table", "reference_field", cfg.reference_field),
                             ("transfer_table", "transfer_field", cfg.transfer_field)):
        known = tables.get(name)
        if known is None:
            continue
        label, index = known
        have = [index.get(key)] if key in index else list(index.values()) if "jones_type" in errors else []
        if not have or any(h is None for h in have):
            continue
        have = set().union(*have)
        for f in want:      # (a field id needs the MS: checked when the block runs)
            if f not in have and not (_is_pattern(f) and fnmatch.filter(have, f)) and \
                    not _FIELD_ID.fullmatch(str(f).strip()):
                add(what, f"{f!r} has no {key + ' ' if key in index else ''}solutions in {label} (fields: "
                    f"{', '.join(sorted(have))})")
    return errors


def planned_ms_spw_errors(cfg: FluxscaleConfig, spws=None) -> dict:
    """:func:`_planned_ms_spw_errors` with each MS it reads kept open (:func:`_keep_ms`)."""
    with _keep_ms():
        return _planned_ms_spw_errors(cfg, spws)


def _planned_ms_spw_errors(cfg: FluxscaleConfig, spws=None) -> dict:
    """{YAML key: [message]}: the part of :func:`check_inputs` about ``ms`` and ``spw`` that needs no
    solutions, for a transfer table an earlier block of a YAML file writes: a given ``ms`` must be a
    Measurement Set holding the transfer fields; a given ``spw`` must select one of ``spws`` (the
    SPW ids the transfer table will hold for the key, None when not known).  Before, both were found
    only when the block ran, after the solve had run and written its table."""
    errors = {}
    if cfg.ms:
        ms, why = transfer_ms(cfg, "", [])
        whys = [why] if why else [_ms_errors(ms, tf, "") for tf in cfg.transfer_field] or [_ms_errors(ms)]
        for why in whys:
            if why and why not in errors.get("ms", []):
                errors.setdefault("ms", []).append(why)
    if str(cfg.spw).strip() and spws:
        try:
            want = {int(x) for x in str(cfg.spw).replace(" ", "").split(",") if x != ""}
        except ValueError:
            return errors
        if not want & set(spws):
            errors["spw"] = [f"{cfg.spw!r} selects no SPW the transfer table will hold (SPWs its block "
                             f"solves: {sorted(spws)})"]
    return errors


def run_fluxscale(cfg: FluxscaleConfig) -> dict:
    """The fluxscale of ``cfg`` (CASA's result dict; module docstring), each MS it reads kept open
    (:func:`_keep_ms`) and its reads kept for its checks and run (:func:`_kept_reads`)."""
    with _keep_ms(), _kept_reads():
        return _run_fluxscale(cfg)


def _run_fluxscale(cfg: FluxscaleConfig) -> dict:
    from ..io import hdf5

    cfg, errors = named_fields(cfg)                 # patterns and field ids -> the table's names (once)
    for k, v in check_inputs(cfg, named=True).items():      # every bad part together, the output too
        errors.setdefault(k, []).extend(v)
    if errors:
        raise ParameterError(errors)
    ref_table = cfg.reference_table
    tr_table = cfg.transfer_table or ref_table
    key = hdf5.resolve_key(ref_table, cfg.jones_type)
    if hdf5.resolve_key(tr_table, cfg.jones_type) != key:
        raise AlakazamError(f"jones_type: {cfg.jones_type!r} resolves to different keys in the two tables")
    ref_sets = hdf5.read_term(ref_table, key)
    tr_sets = ref_sets if tr_table == ref_table else hdf5.read_term(tr_table, key)
    jt = ref_sets[0].attrs.get("jones_type")
    if not jterms.get(jt).gain:
        raise AlakazamError(f"jones_type: fluxscale scales G (gain) solutions; {key} is {jt}")
    if cfg.method not in ("mean", "interpolate"):
        raise AlakazamError(f"fluxscale_method: {cfg.method!r} is not allowed; expected mean or interpolate")
    transfer = _resolve_fields(cfg, key, ref_table, tr_table, ref_sets, tr_sets)
    ref_spws = sorted({s.spw for s in ref_sets if s.field_name in cfg.reference_field})
    spws = sorted({s.spw for s in tr_sets if s.field_name in transfer})
    if cfg.spw:
        want = {int(x) for x in str(cfg.spw).replace(" ", "").split(",") if x != ""}
        spws = [s for s in spws if s in want]
    # undo an earlier fluxscale of what is scaled now (re-running is idempotent; other SPWs keep theirs)
    tr_sets = [_unscaled(s) if s.field_name in transfer and s.spw in spws else s for s in tr_sets]
    if tr_table == ref_table:
        ref_sets = tr_sets
    bad = sorted({_ref_spw(s, cfg.refspwmap) for s in spws} - set(ref_spws))
    if bad:
        raise AlakazamError(f"refspwmap: {cfg.refspwmap!r} maps to SPW(s) {bad} without {key} solutions of "
                            f"the reference field(s) {', '.join(cfg.reference_field)} (SPWs with solutions: "
                            f"{ref_spws}); give refspwmap=[<ref spw>] or one entry per SPW")

    entries, per_field = [], {}
    factors = {}                                         # (field, spw) -> gain factor
    unusable = []                                        # (field, SPW)s without a common valid antenna
    model_of = {}                                        # (MS, field) -> ({spw: model flux}, field id)
    snr_warned = set()                                   # (field, SPW)s whose SNR was looked at
    for tf in transfer:
        ts_all = [s for s in tr_sets if s.field_name == tf]
        fid = None
        for sp in spws:
            ts = [s for s in ts_all if s.spw == sp]
            if not ts:
                continue
            # the MS of this SPW's solutions (a solve over several MSs records each set's own)
            ms, why = transfer_ms(cfg, tr_table, ts)
            if why:
                raise ParameterError({"ms": [why]})
            if (ms, tf) not in model_of:
                model_of[(ms, tf)] = _model_flux(ms, tf, model_source(ts_all))
            mflux, fid_ms = model_of[(ms, tf)]
            fid = fid_ms if fid is None else fid
            rsp = _ref_spw(sp, cfg.refspwmap)
            rs = [s for s in ref_sets if s.spw == rsp and s.field_name in cfg.reference_field]
            ant_names = rs[0].ant_names
            ref = _amp_series(rs, ant_names, cfg.gain_threshold)
            tr = _amp_series(ts, ant_names, cfg.gain_threshold)
            outside = 0.0
            if cfg.method == "mean":
                f, w = ratios_mean(ref, tr)
            else:
                f, w, outside = ratios_interpolate(ref, tr)
            res = combine(f, w)
            for r_f in cfg.reference_field:
                _warn_low_snr(r_f, rsp, key, [s for s in rs if s.field_name == r_f], "reference", snr_warned)
            _warn_low_snr(tf, sp, key, ts, "transfer", snr_warned)
            if res["n"] == 0:        # (CASA: that field and SPW get no flux density; the others do)
                unusable.append(f"no antenna has valid solutions on both {tf} and "
                                f"{', '.join(cfg.reference_field)} in SPW {sp} (reference SPW {rsp})"
                                + (f" with gain_threshold {cfg.gain_threshold:g} (amplitudes further "
                                   "than that fraction from their field's median are dropped; -1 = off)"
                                   if cfg.gain_threshold >= 0 else ""))
                log.warning("fluxscale: %s; %s SPW %d is not scaled (its gains are written without a factor)",
                            unusable[-1], tf, sp)
                continue
            if outside > 0:
                log.warning("fluxscale: %s SPW %d: method 'interpolate' extrapolates the reference gains "
                            "up to %.1f min beyond the reference's time span (held at the end values); "
                            "fluxscale_method 'mean' does not depend on the scan order", tf, sp, outside / 60)
            mf = mflux.get(sp)
            if mf is None or not np.isfinite(mf) or mf <= 0:     # (it assumed 1 Jy: a wrong flux density)
                raise AlakazamError(
                    f"fluxscale: {tf} SPW {sp}: "
                    + (f"{ms} has no MODEL_DATA rows of {tf} in SPW {sp}" if mf is None else
                       f"the model flux in MODEL_DATA of {ms} is {mf!r} (fill MODEL_DATA with {tf}'s model)")
                    + f"; the flux density (model flux x scale) is unknown -- {_GIVE_MS}")
            model = mf
            freq = float(np.mean(np.concatenate([np.atleast_1d(s.freq) for s in ts])))
            res.update(model_flux=mf, fluxd=model * res["scale"], fluxd_err=abs(model) * res["scale_err"],
                       flux_p=model * res["scale_p"], flux_q=model * res["scale_q"], freq=freq,
                       method=cfg.method, ref_spw=rsp, extrapolated_s=outside,
                       solved_with=list(_solved_with(ts, sp)))
            per_field.setdefault(tf, {"fid": fid, "spws": {}})["spws"][sp] = res
            factors[(tf, sp)] = 1.0 / np.sqrt(res["scale"])
            log.info("%s spw %d: flux density %s +- %s Jy (scale %.5f, p %.5f, q %.5f, %d ratios, %s)",
                     tf, sp, jy_text(res["fluxd"]), jy_text(res["fluxd_err"]), res["scale"], res["scale_p"],
                     res["scale_q"], res["n"], cfg.method)
    if not per_field and unusable:
        raise AlakazamError("fluxscale: nothing to scale: " + "; ".join(unusable))
    if not per_field:
        raise AlakazamError(f"spw: {cfg.spw!r} selects no SPW with {key} solutions of the transfer fields")

    out = {}
    all_spws = sorted({sp for d in per_field.values() for sp in d["spws"]})
    fields_sorted = sorted(per_field, key=lambda n: (per_field[n]["fid"], n))
    for tf in fields_sorted:
        d = per_field[tf]
        sps = sorted(d["spws"])
        # SPWs solved together (combine 'spw') share one scale: one flux density point for the fit
        pts = _independent_points(tf, d["spws"])
        fit = spectral_fit([p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts], cfg.fitorder,
                           cfg.reffreq)
        if len(pts) > 1 and fit["fitorder"] < int(cfg.fitorder):
            log.warning("%s: fitorder %d needs %d SPWs with flux densities, %d have them: fitted order %d",
                        tf, int(cfg.fitorder), int(cfg.fitorder) + 1, len(pts), fit["fitorder"])
        if len(pts) > 1:
            log.info("%s: fitted flux density %s +- %s Jy at %.6g Hz, spectral index %s", tf,
                     jy_text(fit["fitFluxd"]), jy_text(fit["fitFluxdErr"]), fit["fitRefFreq"],
                     " ".join(f"{a:.4f} +- {e:.4f}" for a, e in zip(fit["spidx"][1:], fit["spidxerr"][1:])))
        fkey = str(d["fid"])            # (the MS's FIELD id, as CASA; the MS is always read now)
        rec = {"fieldName": tf}
        for s in sps:
            r = d["spws"][s]
            rec[str(s)] = {"fluxd": np.array([r["fluxd"], 0.0, 0.0, 0.0]),
                           "fluxdErr": np.array([r["fluxd_err"], 0.0, 0.0, 0.0]),
                           "numSol": np.array([r["n"], 0, 0, 0])}
            entries.append({"field": tf, "spw": s, "reference_field": list(cfg.reference_field),
                            "jones_key": key, **{k: v for k, v in r.items() if v is not None},
                            "spidx": fit["spidx"], "spidxerr": fit["spidxerr"], "fit_fluxd": fit["fitFluxd"],
                            "fit_fluxd_err": fit["fitFluxdErr"], "fit_ref_freq": fit["fitRefFreq"]})
        rec.update(fitFluxd=fit["fitFluxd"], fitFluxdErr=fit["fitFluxdErr"], fitRefFreq=fit["fitRefFreq"],
                   spidx=np.array(fit["spidx"]), spidxerr=np.array(fit["spidxerr"]),
                   covarMat=np.array(fit["covarMat"]))
        out[fkey] = rec
    out["freq"] = np.array([np.mean([d["spws"][s]["freq"] for d in per_field.values() if s in d["spws"]])
                            for s in all_spws])
    out["spwID"] = np.array(all_spws)
    out["spwName"] = np.array([f"spw_{s}" for s in all_spws])

    new_sets = []
    for s in tr_sets:
        fac = factors.get((s.field_name, s.spw))
        if fac is not None:
            s = copy.deepcopy(s)
            s.jones = s.jones * fac
            s.attrs[GAIN_FACTOR_ATTR] = float(fac)
        new_sets.append(s)
    if tr_table != ref_table:
        new_sets = [s for s in ref_sets if s.field_name not in transfer] + new_sets
    # SPWs of a scaled field that the spw selection left unscaled (those without a factor: warned above)
    for tf, (done, left) in sorted(partly_scaled([s for s in new_sets if s.field_name in transfer]).items()):
        left = [sp for sp in left if sp not in spws]
        if left:
            log.warning("fluxscale: %s's gains are scaled in SPW %s but written unscaled in SPW %s (not "
                        "selected by spw=%r): there they keep the flux scale of %s's model, and so does "
                        "every field calibrated with them -- scale those SPWs too (spw='%s') before "
                        "applying them", tf,
                        ", ".join(map(str, done)), ", ".join(map(str, left)), cfg.spw, tf,
                        ",".join(map(str, left)))
    replaced, kept = hdf5.keys_replaced_by_copy(cfg.output, ref_table, [key])
    if replaced or kept:            # an existing table that is not the caltable: only the keys written go
        written = [k for k in hdf5.list_keys(ref_table) if k != key] + [key]
        log.warning("fluxscale: %s exists: writing %s (copied from %s, %s scaled) into it, replacing its "
                    "%s%s", cfg.output, ", ".join(written), ref_table, key, ", ".join(replaced) or "nothing",
                    f"; its other keys are kept: {', '.join(kept)}" if kept else "")
    hdf5.write_file(cfg.output, {key: new_sets}, fluxscale=entries, base=ref_table)
    out.update(output=cfg.output, key=key, method=cfg.method)
    return out


def format_fluxscale(path):
    """rich Table of the fluxscale groups of a table (``alakazam fluxscale-info``)."""
    from rich.table import Table

    from ..io import hdf5

    rows = hdf5.read_fluxscale(path)
    if not rows:
        raise AlakazamError(f"{path} has no fluxscale results (run akfluxscale / a fluxscale block)")
    t = Table(title=f"fluxscale: {path}")
    for c in ("field", "spw", "key", "method", "freq (GHz)", "flux (Jy)", "error (Jy)", "scale_p", "scale_q",
              "n", "spectral index", "fit flux (Jy) @ GHz"):
        t.add_column(c)
    for r in rows:
        if "fluxd" in r:
            flux, err = jy_text(r["fluxd"]), jy_text(r.get("fluxd_err", float("nan")))
        else:       # tables written before fluxd was stored
            flux = f"{0.5 * (r['flux_p'] + r['flux_q']):.4f}" if "flux_p" in r else "-"
            err = "-"
        sp = r.get("spidx")
        spidx = (" ".join(f"{a:.3f}+-{e:.3f}" for a, e in zip(list(sp)[1:], list(r.get("spidxerr"))[1:]))
                 if sp is not None and len(sp) > 1 else "-")
        fit = (f"{jy_text(r['fit_fluxd'])} @ {r['fit_ref_freq'] / 1e9:.4f}" if "fit_fluxd" in r else "-")
        t.add_row(r["field"], str(r["spw"]), str(r.get("jones_key", "")), str(r.get("method", "interpolate")),
                  f"{r['freq'] / 1e9:.4f}" if "freq" in r else "-", flux, err, f"{r['scale_p']:.5f}",
                  f"{r['scale_q']:.5f}", str(r.get("n", f"{r.get('n_ant_p', '')}/{r.get('n_ant_q', '')}")),
                  spidx, fit)
    return t
