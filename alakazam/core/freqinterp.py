"""Frequency interpolation of solutions: the frequency half of CASA's ``interp='time,freq'``.

Conventions (pinned by tests/test_apply_params.py):

* ``interp`` entries are ``'time'`` or ``'time,freq'`` (CASA): time in
  :data:`alakazam.core.interpolation.MODES`, freq in :data:`FREQ_MODES`.  No freq part = ``''``: the
  mapping of :func:`alakazam.core.interpolation.map_freq` (nearest solution bin, a flagged bin gives
  flagged channels; the behaviour before ``interp`` had a frequency part), which is what
  ``'nearestflag'`` does too, except that ``''`` keeps the fast diagonal path of apply.
* ``nearest``: each channel takes the nearest *unflagged* solution bin (flagged bins are bridged).
* ``linear``: amplitude and phase of every Jones element interpolated linearly in frequency between
  the nearest unflagged bins on either side (flagged bins are bridged: this is the gap filling across
  flagged bandpass channels, as CASA's 'linear' frequency interpolation of a B table); outside the
  solution band the end (unflagged) value is held.  The phase is interpolated along the shorter arc.
* ``nearestflag``: the nearest bin; a channel whose nearest bin is flagged is flagged.
* ``linearflag``: linear between the two adjacent bins; a channel is flagged when a bin with non-zero
  weight in its interpolation is flagged (no bridging); outside the band (beyond the first or last bin's
  centre) the end bin's value is held and the channel is flagged when either of the two end bins is, as
  CASA 6.7's applycal (measured, session 54: a bandpass of 4-channel bins with bin 1 flagged flags data
  channels 0-9, bin 2 flagged 6-15; before, channels 0-1 and 14-15 were corrected, 3.3% of a review's
  TARGET samples).
* A channel with no unflagged bin at all is flagged in every mode.

Works per (antenna, time) row after the time interpolation (flags there are per antenna, bin and time).
"""

from __future__ import annotations

import numpy as np

from ..errors import AlakazamError

FREQ_MODES = ("nearest", "linear", "nearestflag", "linearflag")


def parse_interp(value, time_modes, where="interp"):
    """``'linear'`` -> ('linear', ''); ``'linear,linearflag'`` -> ('linear', 'linearflag'); errors name
    ``where``.  An empty time part is 'nearest' (the apply default)."""
    text = str(value).strip()
    parts = [p.strip().lower() for p in text.split(",")]
    if len(parts) > 2:
        raise AlakazamError(f"{where}: {value!r} has {len(parts)} parts; expected 'time' or 'time,freq' "
                            f"(e.g. 'linear,linearflag')")
    t = parts[0] or "nearest"
    f = parts[1] if len(parts) == 2 else ""
    if t not in time_modes:
        hint = ""
        base = t.replace("perobs", "")
        perobs = ""
        if t.endswith("perobs"):
            # the solutions carry no observation: an apply selecting one observation's rows still
            # interpolates towards the next observation's solutions (review h60j: the last TARGET scan of
            # observation 0, after its last calibrator scan, 346% off perobs's): a table per observation
            perobs = ("CASA's 'perobs' interpolates within each observation only: solve and apply each "
                      "observation on its own -- a solve block and an apply block per observation, "
                      "observation '0', '1', ..., each applying its own table (an apply selecting one "
                      "observation still interpolates towards the solutions of the others in its table)")
        if base.endswith("pd") and base[:-2] in time_modes:     # (ALMA's phase transfer through spwmap)
            hint = (f" (CASA's '{base[:-2]}PD' scales the phase by the frequency ratio of the mapped SPW; "
                    f"that is not done here: {base[:-2]!r} transfers the phase unscaled -- solve the gains "
                    "per SPW, or a K for the phase's frequency dependence"
                    + (f"; {perobs}" if perobs else "") + ")")
        elif perobs and base in time_modes:
            hint = f" ({perobs}, with {base!r})"
        raise AlakazamError(f"{where}: {value!r}: time interpolation {t!r} is not allowed; expected one of "
                            f"{', '.join(time_modes)}{hint}")
    if f and f not in FREQ_MODES:
        raise AlakazamError(f"{where}: {value!r}: frequency interpolation {f!r} is not allowed; expected one "
                            f"of {', '.join(FREQ_MODES)}")
    return t, f


def interp_freq(sol_freq, jones, flags, target_freq, mode):
    """Jones (n_ant, n_f, n_t, 2, 2) and flags (n_ant, n_f, n_t) on solution frequencies -> the same on
    ``target_freq`` (n_chan): (jones (n_ant, n_chan, n_t, 2, 2), flags (n_ant, n_chan, n_t), log text).
    NaN where flagged."""
    if mode not in FREQ_MODES:
        raise AlakazamError(f"interp: frequency mode {mode!r}; expected one of {', '.join(FREQ_MODES)}")
    f = np.asarray(sol_freq, float)
    c = np.asarray(target_freq, float)
    order = np.argsort(f, kind="stable")
    f = f[order]
    jones = np.asarray(jones)[:, order].astype(np.complex128, copy=False)
    ok = ~np.asarray(flags)[:, order] & np.isfinite(jones).all(axis=(-1, -2))
    n_f = len(f)
    # (n_ant, n_t, n_f) views for the search along frequency
    okT = np.moveaxis(ok, 1, -1)
    jT = np.moveaxis(jones, 1, 2)                       # (n_ant, n_t, n_f, 2, 2)
    k = np.arange(n_f)
    j = np.searchsorted(f, c)                           # f[j-1] < c <= f[j]
    jlo = np.clip(j - 1, 0, n_f - 1)
    jhi = np.clip(j, 0, n_f - 1)
    if mode.endswith("flag"):
        lo = np.broadcast_to(jlo, okT.shape[:2] + (len(c),))
        hi = np.broadcast_to(jhi, okT.shape[:2] + (len(c),))
    else:
        prev = np.maximum.accumulate(np.where(okT, k, -1), axis=-1)                        # last ok <= k
        nxt = np.minimum.accumulate(np.where(okT, k, n_f)[..., ::-1], axis=-1)[..., ::-1]  # first ok >= k
        lo = np.where(j >= 1, prev[..., jlo], -1)
        hi = np.where(j < n_f, nxt[..., jhi], n_f)
        # outside the band, or one side without a valid bin: hold the valid one
        lo_ok = lo >= 0
        hi_ok = hi < n_f
        lo = np.where(lo_ok, lo, np.where(hi_ok, hi, 0))
        hi = np.where(hi_ok, hi, lo)
    lo = np.asarray(lo, np.int64)
    hi = np.asarray(hi, np.int64)
    ok_lo = np.take_along_axis(okT, lo, axis=-1)
    ok_hi = np.take_along_axis(okT, hi, axis=-1)
    vlo = np.take_along_axis(jT, lo[..., None, None], axis=2)
    vhi = np.take_along_axis(jT, hi[..., None, None], axis=2)
    # a flagged end with zero weight (linearflag on a solution channel) must not turn the value into NaN
    vlo, vhi = (np.where(ok_lo[..., None, None], vlo, vhi), np.where(ok_hi[..., None, None], vhi, vlo))
    flo, fhi = f[lo], f[hi]
    span = fhi - flo
    w = np.where(span > 0, (c - flo) / np.where(span > 0, span, 1.0), 0.0)
    w = np.clip(w, 0.0, 1.0)
    if mode.startswith("nearest"):
        pick_hi = (np.abs(fhi - c) < np.abs(c - flo)) | ~ok_lo if not mode.endswith("flag") else \
            (np.abs(fhi - c) < np.abs(c - flo))
        val = np.where(pick_hi[..., None, None], vhi, vlo)
        good = np.where(pick_hi, ok_hi, ok_lo)
        desc = f"{mode} {n_f}->{len(c)}"
    else:
        wl = (1 - w)[..., None, None]
        wh = w[..., None, None]
        amp = wl * np.abs(vlo) + wh * np.abs(vhi)
        ph_lo = np.angle(vlo)
        dph = np.angle(np.exp(1j * (np.angle(vhi) - ph_lo)))     # shorter arc
        val = amp * np.exp(1j * (ph_lo + wh * dph))
        if mode == "linearflag":
            good = (ok_lo | (w >= 1.0)) & (ok_hi | (w <= 0.0))
            if n_f >= 2:        # outside the band: the end value held, flagged by either end bin (CASA)
                good[..., c < f[0]] &= okT[..., 1:2]
                good[..., c > f[-1]] &= okT[..., n_f - 2:n_f - 1]
        else:
            good = ok_lo & ok_hi
        desc = f"{mode} {n_f}->{len(c)}"
    val = np.where(good[..., None, None], val, np.nan + 0j)
    out = np.moveaxis(val, 2, 1)                         # (n_ant, n_chan, n_t, 2, 2)
    return np.ascontiguousarray(out), np.ascontiguousarray(np.moveaxis(~good, 2, 1)), desc


def flagged_channel_notes(terms, spw_id, freqs, field=None) -> list:
    """One note per term of ``terms`` applied without a frequency part whose solutions for ``spw_id`` are
    the data channels ``freqs`` and flag some channels of an antenna (a bandpass with an RFI channel):
    those flag their data (calflag), where CASA's applycal reads the interp as 'time,linear' and bridges
    them in frequency.  A difference to know, not a problem: said at INFO (the apply's log).  With
    ``field`` (the data's) and solutions of that field in a term, only those count (review 54h: the
    note named a field none of whose solutions had a flagged channel)."""
    return casa_default_notes(terms, spw_id, freqs, channels=True, field=field)


def casa_default_notes(terms, spw_id, freqs, channels=False, field=None) -> list:
    """One message per term of ``terms`` (LoadedTerm) applied without a frequency part whose solutions for
    ``spw_id`` are bins that are not the data channels ``freqs`` (a bandpass of 4-MHz bins, or solved on
    other channels): each channel takes its nearest bin (the SEED's nearest-frequency mapping, flagged
    bins flagging their channels), where CASA's applycal reads an interp without a freq part as
    'time,linear' -- the same string, other corrected values (a review: 0.1 of max |V| on a 4-MHz
    bandpass).  Delays and one-bin solutions are never noted; bins on the data channels map the same
    either way but for flagged bins (README, "interp")."""
    freqs = np.asarray(freqs, float)
    out = []
    for term in terms:
        if term.freq_interp:
            continue
        sets = [s for s in term.sets if int(s.attrs.get("spw", -1)) == int(spw_id) and s.delay is None]
        sol = np.concatenate([np.asarray(s.freq, float).ravel() for s in sets]) if sets else np.zeros(0)
        sol = np.unique(sol[np.isfinite(sol)])
        if len(sol) < 2 or not len(freqs):
            continue
        # a hundredth of the data's channel spacing (a fraction of the frequency missed 15.6-kHz channels
        # at 100 GHz, a review)
        spacing = np.diff(np.unique(freqs))
        tol = 0.01 * float(spacing.min()) if len(spacing) else 1e-6 * max(float(np.abs(sol).max()), 1.0)
        j = np.clip(np.searchsorted(sol, freqs), 1, len(sol) - 1)        # (sol sorted: np.unique)
        near = np.minimum(np.abs(freqs - sol[j - 1]), np.abs(freqs - sol[j])) <= tol
        if near.all() == (not channels):
            continue
        if channels:
            # the data channels' own solutions: the same values but where some channels of an antenna are
            # flagged -- those flag their data here, where CASA bridges them in frequency and corrects
            # the neighbouring scans with the bridged values (review 54g: 0.20 of max |V| there)
            own = [s for s in sets if field is not None and str(s.attrs.get("field_name")) == str(field)]
            flags = [np.asarray(s.flags) for s in own or sets]
            if any(np.any(f.any(axis=1) & ~f.all(axis=1)) for f in flags):
                out.append(f"{term.key}: SPW {spw_id}: interp without a frequency part gives each data "
                           "channel its own solution channel, and some are flagged: their data are flagged "
                           "(calflag) or left uncorrected, where CASA's applycal reads the interp as "
                           "'time,linear' and bridges flagged channels in frequency -- give interp "
                           "'time,linear' for CASA's values, 'time,linearflag' to flag them as the VLA "
                           "pipeline does")
            continue
        out.append(f"{term.key}: SPW {spw_id}: interp without a frequency part maps each of the {len(freqs)} "
                   f"data channels to its nearest of {len(sol)} solution bins (a flagged bin flags its "
                   "channels); CASA's applycal reads it as 'time,linear' (linear in frequency) -- give "
                   "interp 'time,linear' (YAML time_interp) for CASA's values")
    return out
