"""Test helper: a point-source MS of known gains with one dead, dying or noisy antenna, and its G solve
(shared by tests/test_dead_antenna_cases.py, test_review_noisy_merge.py and
test_known_solve_flag_holes.py, which each had a copy)."""

import os

import numpy as np
from casacore.tables import table


def antenna_ms(path, snr, n_chan, n_ant=7, a=2, *, int_s=60.0, scan_len_s=600.0, duration_h=0.5,
               loud=1.0, dead=False, die_at=None, dead_scans=None, dead_fac=1.0, dead_kind="noise",
               dead_amp=0.0):
    """(g, field): a point-source MS (linear feeds, ``n_chan`` channels, 3 scans of 10 integrations by
    default) of known gains g (n_ant, 2) at a per-sample SNR ``snr``, MODEL_DATA 1 in XX and YY, FLAG
    False.  Antenna ``a``'s baselines:

    * ``loud``: their noise is ``loud`` x the array's, SIGMA and WEIGHT saying so;
    * ``dead``: noise only (``dead_fac`` x the array's noise) in every integration, or with ``die_at``
      from integration ``die_at`` of each scan; ``dead_scans``: only in these scans (default all);
    * ``dead_kind`` 'const': noise plus a constant complex offset ``dead_amp`` (a correlator/sampler
      offset of a dead input); 'rfi': plus correlated RFI of ``dead_amp`` in channels 10-22.

    The random draws are those of the three copies this replaces: the same MS for the same options."""
    from alakazam.sim import simulate_ms

    simulate_ms(path, feed="linear", n_ant=n_ant, n_ant_extra=0, n_chan=(n_chan,), duration_h=duration_h,
                int_s=int_s, scan_len_s=scan_len_s, noise=0.01, seed=7, leakage=False, dead_ant=False,
                flag_rows=0.0)
    rng = np.random.default_rng(11)
    g = rng.uniform(0.8, 1.2, (n_ant, 2)) * np.exp(1j * rng.uniform(-np.pi, np.pi, (n_ant, 2)))
    sig0 = 1 / (snr * np.sqrt(2))
    with table(path, readonly=False, ack=False) as t:
        a1, a2, tm, sc = (t.getcol(c) for c in ("ANTENNA1", "ANTENNA2", "TIME", "SCAN_NUMBER"))
        m = np.zeros(t.getcol("MODEL_DATA").shape, np.complex64)
        m[..., 0] = m[..., 3] = 1
        t.putcol("MODEL_DATA", m)
        d = np.zeros_like(m)
        d[..., 0] = (g[a1, 0] * np.conj(g[a2, 0]))[:, None]
        d[..., 3] = (g[a1, 1] * np.conj(g[a2, 1]))[:, None]
        on = ((a1 == a) | (a2 == a)) & (a1 != a2)
        sig = np.where(on, loud * sig0, sig0)
        d = d + sig[:, None, None] * (rng.standard_normal(d.shape) + 1j * rng.standard_normal(d.shape))
        if dead:
            hit = on.copy()
            if die_at is not None:
                hit = np.zeros(len(a1), bool)
                for s in np.unique(sc):
                    hit |= (sc == s) & on & (tm >= np.unique(tm[sc == s])[die_at])
            if dead_scans is not None:
                hit &= np.isin(sc, dead_scans)
            shape = d[hit].shape
            d[hit] = dead_fac * sig0 * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
            if dead_kind == "const":
                d[hit] += dead_amp * np.exp(0.6j * np.pi)
            elif dead_kind == "rfi":      # correlated RFI in channels 10-22 (one emitter: a delay's phase)
                band = np.zeros(n_chan, complex)
                band[10:23] = np.exp(2j * np.pi * 0.05 * np.arange(13))
                ph = np.exp(2j * np.pi * rng.random(hit.sum()))
                d[hit] += dead_amp * (ph[:, None] * band[None])[..., None] * np.array([1, 0, 0, 1])
        t.putcol("DATA", d.astype(np.complex64))
        t.putcol("FLAG", np.zeros(m.shape, bool))
        t.putcol("SIGMA", np.repeat(sig[:, None], 4, 1).astype(np.float32))
        t.putcol("WEIGHT", np.repeat(1 / sig[:, None] ** 2, 4, 1).astype(np.float32))
    with table(os.path.join(path, "FIELD"), ack=False) as t:
        field = t.getcol("NAME")[0]
    return g, field


def solve_g(ms, cal, field, solint, rfi_threshold=5.0):
    """akcal G(``solint``, full band, 'ap', refant C00) of ``field``: (jones (n_ant, n_t, 2) of the
    parallel hands, hand flags (n_ant, n_t, 2))."""
    from alakazam.caltasks import akcal
    from alakazam.io import hdf5

    akcal(vis=ms, caltable=cal, jones=["G"], solint=[solint], freqint=["full"], field=field, refant="C00",
          calmode=["ap"], rfi_threshold=rfi_threshold)
    sets = hdf5.read_term(cal, "G0")
    jones = np.concatenate([np.stack([s.jones[:, 0, :, 0, 0], s.jones[:, 0, :, 1, 1]], -1) for s in sets], 1)
    flags = np.concatenate([s.hand_flags().reshape(len(s.jones), -1, 2) for s in sets], 1)
    return jones, flags
