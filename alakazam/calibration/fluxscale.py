"""Flux bootstrap: transfer the flux scale of a reference calibrator to other calibrators.

Gains solved against a model of S_model Jy on a source whose true flux is S_true absorb it:
``|g|^2 S_model = |g_true|^2 S_true``.  The reference field's model is right, so its gains are the
true ones, and per antenna a the amplitude ratio r_a = |g_transfer,a(t)| / |g_reference,a(t)|
(frequency-averaged over unflagged solutions, the reference interpolated linearly in time to each
transfer solution time, per SPW and pol) estimates ``sqrt(S_true / S_model)``; r_a^2 is averaged over
the transfer times.  The r_a^2 are sigma-clipped (3 sigma, 3 iterations, median/MAD) and

    scale = mean(r_a^2)          (S_true = scale x S_model)
    scatter = std(r_a^2) / sqrt(n_ant_used)   (standard error of the scale)

The output table is a copy of the reference table (plus the transfer table's keys when different)
in which the transfer field's solutions of the scaled key are divided by sqrt(scale) per pol -- so that
applying them yields the true flux -- plus the ``fluxscale/field_<name>/spw_<id>`` group with attrs
scale_p, scale_q, scatter_p, scatter_q, n_ant_p, n_ant_q, model_flux and flux_p, flux_q (model flux x
scale; the model flux is the mean of Re((pp + qq) / 2) of MODEL_DATA for that field in the MS named
by the table's ``ms`` attr, when readable).
"""

from __future__ import annotations

import copy
import logging

import numpy as np

from ..config import FluxscaleConfig
from ..errors import AlakazamError

log = logging.getLogger("alakazam.fluxscale")


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


def _amp_series(sets, ant_names):
    """Per antenna and pol the frequency-averaged |g| over time: (times (n_t,), amp (n_ant, n_t, 2))."""
    from ..io.hdf5 import remap_antennas

    times, amps = [], []
    for s in sets:
        j, f = remap_antennas(s, ant_names)                 # (n_ant, n_f, n_t, 2, 2)
        a = np.stack([np.abs(j[..., 0, 0]), np.abs(j[..., 1, 1])], axis=-1)   # (n_ant, n_f, n_t, 2)
        a = np.where(f[..., None] | ~np.isfinite(a), np.nan, a)
        with np.errstate(invalid="ignore"), __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore", RuntimeWarning)
            amps.append(np.nanmean(a, axis=1))               # (n_ant, n_t, 2)
        times.append(np.asarray(s.time, float))
    t = np.concatenate(times)
    o = np.argsort(t)
    return t[o], np.concatenate(amps, axis=1)[:, o]


def _ratios(ref_sets, tr_sets, ant_names):
    """Per antenna and pol r_a^2: the transfer field's |g| divided by the reference field's |g|
    interpolated (linearly in time, over its valid solutions) to the transfer solution times, then
    averaged over those times -- so a slow gain drift between the two fields' scans cancels to first
    order instead of biasing the ratio."""
    tr_t, tr_a = _amp_series(tr_sets, ant_names)
    rf_t, rf_a = _amp_series(ref_sets, ant_names)
    out = np.full((len(ant_names), 2), np.nan)
    for a in range(len(ant_names)):
        for p in range(2):
            ok = np.isfinite(rf_a[a, :, p])
            okt = np.isfinite(tr_a[a, :, p])
            if not ok.any() or not okt.any():
                continue
            ref_at = np.interp(tr_t[okt], rf_t[ok], rf_a[a, ok, p])
            out[a, p] = np.mean((tr_a[a, okt, p] / ref_at) ** 2)
    return out


def _model_flux(ms, field):
    try:
        from ..core import ms_io

        meta = ms_io.read_meta(ms)
        fid = ms_io.resolve_fields(meta, [field])[0]
        vals = []
        for ddid in meta.spws:
            ch = ms_io.read_rows(ms, ddid, [fid], data_col="MODEL_DATA", model_col=None, meta=meta,
                                 rows=ms_io.row_numbers(ms, ddid, [fid])[:200])
            if ch.n_row:
                d = ch.data
                vals.append(0.5 * (d[..., 0] + d[..., -1]).real.mean())
        return float(np.mean(vals)) if vals else None
    except Exception:  # the MS may have moved: report the scale only
        return None


def run_fluxscale(cfg: FluxscaleConfig) -> dict:
    from ..io import hdf5

    from ..core.outputs import check_output_file

    check_output_file(cfg.output, "output")        # before any work (clear error, nothing written)
    ref_table = cfg.reference_table
    tr_table = cfg.transfer_table or ref_table
    key = hdf5.resolve_key(ref_table, cfg.jones_type)
    if hdf5.resolve_key(tr_table, cfg.jones_type) != key:
        raise AlakazamError(f"jones_type: {cfg.jones_type!r} resolves to different keys in the two tables")
    ref_sets = hdf5.read_term(ref_table, key)
    tr_sets = ref_sets if tr_table == ref_table else hdf5.read_term(tr_table, key)
    jt = ref_sets[0].attrs.get("jones_type")
    if jt != "G":
        raise AlakazamError(f"jones_type: fluxscale scales G (gain) solutions; {key} is {jt}")
    spws = sorted({s.spw for s in ref_sets})
    if cfg.spw:
        want = {int(x) for x in str(cfg.spw).replace(" ", "").split(",") if x != ""}
        spws = [s for s in spws if s in want]
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
    entries, results = [], {}
    scaled = {}
    for sp in spws:
        rs = [s for s in ref_sets if s.spw == sp and s.field_name in cfg.reference_field]
        ant_names = rs[0].ant_names
        for tf in cfg.transfer_field:
            ts = [s for s in tr_sets if s.spw == sp and s.field_name == tf]
            if not ts:
                continue
            ratio2 = _ratios(rs, ts, ant_names)
            res = {}
            for p, pol in enumerate("pq"):
                r2 = ratio2[:, p]
                keep = sigma_clip(r2)
                if keep.sum() == 0:
                    raise AlakazamError(f"fluxscale: no antenna has valid solutions on both {tf} and "
                                        f"{cfg.reference_field} in SPW {sp}")
                res[f"scale_{pol}"] = float(r2[keep].mean())
                res[f"scatter_{pol}"] = float(r2[keep].std() / np.sqrt(keep.sum()))
                res[f"n_ant_{pol}"] = int(keep.sum())
            mf = _model_flux(ts[0].attrs.get("ms", ""), tf)
            res["model_flux"] = mf
            if mf is not None:
                res["flux_p"] = mf * res["scale_p"]
                res["flux_q"] = mf * res["scale_q"]
            results[(tf, sp)] = res
            entries.append({"field": tf, "spw": sp, "reference_field": list(cfg.reference_field),
                            "jones_key": key, **res})
            for s in ts:
                s2 = copy.deepcopy(s)
                f = np.array([1 / np.sqrt(res["scale_p"]), 1 / np.sqrt(res["scale_q"])])
                s2.jones = s2.jones * np.array([[f[0], f[0]], [f[1], f[1]]])   # rows p, q of diag(g)
                scaled.setdefault(id(s), s2)
            log.info("%s spw %d: scale p %.4f +- %.4f, q %.4f +- %.4f%s", tf, sp, res["scale_p"],
                     res["scatter_p"], res["scale_q"], res["scatter_q"],
                     f", flux {0.5 * (res['flux_p'] + res['flux_q']):.4f} Jy" if mf is not None else "")
    if not entries:
        raise AlakazamError(f"fluxscale: no SPW{' of spw=' + repr(cfg.spw) if cfg.spw else ''} has {key} "
                            f"solutions of both {cfg.reference_field} and {cfg.transfer_field}; nothing "
                            f"written to {cfg.output}")
    new_sets = [scaled.get(id(s), s) for s in tr_sets]
    if tr_table != ref_table:
        new_sets = [s for s in ref_sets if s.field_name not in cfg.transfer_field] + new_sets
    hdf5.write_file(cfg.output, {key: new_sets}, fluxscale=entries, base=ref_table)
    return {"output": cfg.output, "key": key,
            "fields": {f"{tf}/spw_{sp}": r for (tf, sp), r in results.items()}}


def format_fluxscale(path):
    """rich Table of the fluxscale groups of a table (``alakazam fluxscale-info``)."""
    from rich.table import Table

    from ..io import hdf5

    rows = hdf5.read_fluxscale(path)
    if not rows:
        raise AlakazamError(f"{path} has no fluxscale results (run akfluxscale / a fluxscale block)")
    t = Table(title=f"fluxscale: {path}")
    for c in ("field", "spw", "key", "scale_p", "scale_q", "scatter_p", "scatter_q", "flux (Jy)", "n_ant"):
        t.add_column(c)
    for r in rows:
        flux = (f"{0.5 * (r['flux_p'] + r['flux_q']):.4f}" if "flux_p" in r else "-")
        t.add_row(r["field"], str(r["spw"]), str(r.get("jones_key", "")), f"{r['scale_p']:.5f}",
                  f"{r['scale_q']:.5f}", f"{r['scatter_p']:.5f}", f"{r['scatter_q']:.5f}", flux,
                  f"{r.get('n_ant_p', '')}/{r.get('n_ant_q', '')}")
    return t
