"""Data channels outside the band a multi-bin solution (a bandpass) was solved on.

A bandpass solved with a channel selection (``spw='0:3~12'``, the usual exclusion of the band edges) and
applied to the whole SPW maps every edge channel to the nearest end bin (``interp`` without a freq part
or ``nearest``), or holds the end value (``linear``): the edges are corrected with another channel's
bandpass, which on a steep roll-off is wrong by tens of per cent, and nothing said so.  The convention
is kept (documented in README, "interp"); :func:`warnings` names the channels (a WARNING and a line of
the apply's log) so the user can exclude them (``spw``) or flag them.

A channel is outside when its frequency is more than half a solution bin (``freqint_hz``, else the bins'
spacing) beyond the first or last bin's frequency.  Delays (K, KC: evaluated at every data channel) and
one-bin solutions (broadcast) are never outside.
"""

from __future__ import annotations

import numpy as np


def _ranges(idx):
    """[0, 1, 2, 13, 14] -> '0~2, 13~14'."""
    out, start = [], None
    for k, i in enumerate(idx):
        if start is None:
            start = i
        if k == len(idx) - 1 or idx[k + 1] != i + 1:
            out.append(str(start) if start == i else f"{start}~{i}")
            start = None
    return ", ".join(out)


def warnings(terms, spw_id, freqs, chans=None) -> list:
    """One message per term of ``terms`` (LoadedTerm, already mapped to ``spw_id`` by spwmap) whose
    multi-bin solutions for ``spw_id`` do not cover every data channel of ``freqs`` (``chans``: their
    channel numbers in the SPW, for the message)."""
    freqs = np.asarray(freqs, float)
    chans = np.arange(len(freqs)) if chans is None else np.asarray(chans)
    out = []
    for term in terms:
        sets = [s for s in term.sets if int(s.attrs.get("spw", -1)) == int(spw_id) and s.delay is None]
        sol = np.concatenate([np.asarray(s.freq, float).ravel() for s in sets]) if sets else np.zeros(0)
        sol = np.unique(sol[np.isfinite(sol) & (sol > 0)])
        if len(sol) < 2:
            continue
        try:
            half = float(sets[0].attrs.get("freqint_hz")) / 2
        except (TypeError, ValueError):
            half = np.nan
        if not np.isfinite(half) or half <= 0:
            half = float(np.median(np.diff(sol))) / 2
        lo, hi = sol[0] - half, sol[-1] + half
        tol = 1e-6 * max(abs(hi), 1.0)
        bad = np.nonzero((freqs < lo - tol) | (freqs > hi + tol))[0]
        if len(bad):
            out.append(f"{term.key}: SPW {spw_id}: {len(bad)} of {len(freqs)} data channels "
                       f"({_ranges(chans[bad])}) lie outside the band its solutions cover ({lo / 1e9:.6f}-"
                       f"{hi / 1e9:.6f} GHz; solved with a channel selection?); they are corrected with the "
                       "nearest end solution, held; exclude them with spw, or flag them")
    return out


def warn_preapply(ext_terms, meta, spw_sel, log):
    """The same warning for a solve's gaintable (pre-applied) terms, once per term and SPW of the
    selection (``spw_sel``: DATA_DESC_ID -> channel indices)."""
    from . import spwmap as _spwmap

    seen = set()
    for ddid, chans in spw_sel.items():
        spw = meta.spws[ddid]
        terms = _spwmap.for_spw(ext_terms, spw.spw_id, spw.freqs, quiet=True)
        for w in warnings(terms, spw.spw_id, np.asarray(spw.freqs)[chans], chans):
            if w not in seen:
                seen.add(w)
                log.warning("pre-apply: %s", w)
