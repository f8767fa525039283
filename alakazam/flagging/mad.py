"""mode='mad': robust outlier flagging with the solve's statistic, plus a persistent-channel test.

1. Per row and correlation across channels (the solve's RFI stage, :func:`alakazam.core.rfi.mad_flag`):
   x = |V| / |M| (MODEL_DATA, where |M| > 0; |V| without a model or for a residual datacolumn); channels
   with |x - median| > threshold * 1.4826 * MAD are flagged.
2. The same statistic per channel across time: per baseline and correlation, the median over the
   unit's (DATA_DESC_ID, scan) unflagged integrations of x in each channel forms a spectrum, and a
   channel whose spectrum value is an outlier (the same MAD test across channels) is flagged in every
   integration of that baseline and scan.  A persistent RFI channel (present in every integration, so
   the per-row test misses its weakest samples) is caught here whole.  The spectrum uses every sample
   that was unflagged before this run (also those step 1 flags), so the median of a persistent
   channel is the RFI's typical level, not that of its weakest samples.
"""

import numpy as np

from ..core.rfi import mad_flag

NEEDS_DATA = True
WANTS_MODEL = True


def _ratio(data, model):
    v = np.abs(data).astype(np.float64)
    if model is None:
        return v
    m = np.abs(model).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(m > 0, v / np.where(m > 0, m, 1.0), v)


def start(cfg, sel):
    """Warns, before anything is saved, about SPWs whose selected channels are fewer than
    :data:`~alakazam.core.rfi.MIN_SOLVE_MAD_CHANNELS`: step 1's median and MAD over so few channels
    flag clean samples well beyond the threshold's rate (5 sigma: 2.3% at 4 channels, 0.7% at 8, 0.15% at
    16); the solve-time flags leave such rows to the statistics across rows.  The run goes on (the user
    asked for this mode)."""
    from ..core import warnonce
    from ..core.rfi import MIN_SOLVE_MAD_CHANNELS

    narrow = sorted({(int(sel.meta.spws[d].spw_id), len(ch)) for d, (ch, _) in sel.ddids.items()
                     if 0 < len(ch) < MIN_SOLVE_MAD_CHANNELS})
    if narrow:              # (warnonce: the distributed units' copies are then not said again, 54e)
        warnonce.warning(
            "alakazam.flag",
            "akflag mode='mad': SPW %s has only %s selected channel(s): a median and MAD across so few "
            "channels flag clean samples well beyond the threshold's rate (at 5 sigma about 2%% at 4 "
            "channels, 0.7%% at 8, 0.15%% at 16; ~0.02%% at %d); consider mode='aoflagger', a higher "
            "threshold, or leaving these SPWs to the solve-time flags",
            ", ".join(str(s) for s, _ in narrow), ", ".join(str(n) for _, n in narrow),
            MIN_SOLVE_MAD_CHANNELS)
    return None


def flag_piece(piece, cfg, state):
    thr = float(cfg.threshold)
    out = mad_flag(piece.data, piece.model, piece.flag, thr)
    x = _ratio(piece.data, piece.model)
    x[piece.flag | ~np.isfinite(x)] = np.nan     # the samples flagged before this run only
    groups, _ = piece.baseline_groups()
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            spec = np.stack([np.nanmedian(x[r], axis=0) for r, _ in groups])   # (baseline, chan, corr)
    sflag = ~np.isfinite(spec)
    spec = np.where(sflag, 0.0, spec)
    bad = mad_flag(spec, None, sflag, thr) & ~sflag
    for (r, _), b in zip(groups, bad):
        out[r] |= b[None]
    return out
