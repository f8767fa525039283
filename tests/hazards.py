"""Test helper: a small simulated MS with RFI injected into DATA (FLAG left False), and the truth mask
of the corrupted samples.

``rfi_ms(path, ...)`` simulates with :func:`alakazam.sim.simulate_ms` and then, with python-casacore:

* persistent channel(s) ``persistent``: every row, every correlation, amplitude 2-6x the calibrator's
  flux (3C286 Stokes I, 14.9 Jy) varying smoothly in time, random phase per sample;
* intermittent narrow-band RFI (``intermittent``): ``n_intermittent`` channels, each in ~10% of the
  integrations (all baselines), amplitude 0.5-2x the flux;
* broadband bursts (``bursts``): all channels of ``n_bursts`` integrations, amplitude 1-3x the flux.

Returns ``(truth, mask)``, ``mask`` a dict ddid -> (row, chan, corr) bool over that DATA_DESC_ID's rows in
MS row order (with ``rows`` under key ('rows', ddid)).
"""

import numpy as np

from alakazam.sim import simulate_ms

FLUX = 14.9


def rfi_ms(path, persistent=(5,), intermittent=(), bursts=0, seed=7, **kw):
    from casacore.tables import table

    opts = dict(n_ant=5, n_ant_extra=1, n_chan=(32,), duration_h=1.0, int_s=30.0, scan_len_s=900.0,
                noise=0.05, seed=seed, leakage=False, dead_ant=False, flag_rows=0.0)
    opts.update(kw)
    truth = simulate_ms(path, **opts)
    rng = np.random.default_rng(seed + 1000)
    masks = {}
    with table(path, readonly=False, ack=False) as t:
        dd = t.getcol("DATA_DESC_ID")
        tm = t.getcol("TIME")
        for d in np.unique(dd):
            rows = np.flatnonzero(dd == d)
            data = t.getcol("DATA", int(rows[0]), len(rows)) if rows[-1] - rows[0] + 1 == len(rows) else None
            q = t.selectrows(rows)
            data = q.getcol("DATA")
            n_row, n_chan, n_corr = data.shape
            mask = np.zeros(data.shape, bool)
            times = tm[rows]
            ut, ti = np.unique(times, return_inverse=True)
            ph = rng.uniform(0, 2 * np.pi)
            for c in persistent:
                amp_t = FLUX * (4.0 + 2.0 * np.sin(2 * np.pi * (ut - ut[0]) / 1500.0 + ph))   # 2-6 x flux
                amp = amp_t[ti][:, None] * rng.uniform(0.9, 1.1, (n_row, n_corr))
                data[:, c, :] += amp * np.exp(2j * np.pi * rng.uniform(size=(n_row, n_corr)))
                mask[:, c, :] = True
            for c in intermittent:
                on = rng.uniform(size=len(ut)) < 0.1
                r = on[ti]
                amp = FLUX * rng.uniform(0.5, 2.0, (r.sum(), n_corr))
                data[r, c, :] += amp * np.exp(2j * np.pi * rng.uniform(size=amp.shape))
                mask[r, c, :] = True
            for k in rng.choice(len(ut), size=bursts, replace=False) if bursts else []:
                r = ti == k
                amp = FLUX * rng.uniform(1.0, 3.0, (r.sum(), n_chan, n_corr))
                data[r] += amp * np.exp(2j * np.pi * rng.uniform(size=amp.shape))
                mask[r] = True
            q.putcol("DATA", data)
            q.close()
            masks[int(d)] = mask
            masks[("rows", int(d))] = rows
    return truth, masks


def rfi_dead_baseline_ms(path):
    """The flagging tests' MS (tfcrop, rflag): :func:`rfi_ms` with a persistent channel (5), intermittent
    channels (20, 40), 2 bursts, 64 channels, noise 1 Jy, and one dead baseline in scan 2 -- DATA all
    zero, FLAG left False (C02 - C03, ids 2 and 3: id 1 is the simulator's antenna without data).
    Returns (path, RFI mask (row, chan, corr) without the dead baseline, dead rows (row,) bool)."""
    from casacore.tables import table

    _, masks = rfi_ms(path, persistent=(5,), intermittent=(20, 40), bursts=2, n_chan=(64,), noise=1.0)
    mask = np.zeros(masks[0].shape, bool)
    mask[masks[("rows", 0)]] = masks[0]
    with table(path, readonly=False, ack=False) as t:
        a1, a2, sc = t.getcol("ANTENNA1"), t.getcol("ANTENNA2"), t.getcol("SCAN_NUMBER")
        dead = (a1 == 2) & (a2 == 3) & (sc == 2)
        assert dead.sum() == 30
        data = t.getcol("DATA")
        data[dead] = 0
        t.putcol("DATA", data)
    mask[dead] = False
    return path, mask, dead


def parallel_hands_only(src, path):
    """A copy of the MS ``src`` at ``path`` with only its parallel-hand correlations (XX, YY of a linear
    4-correlation MS): DATA, MODEL_DATA, FLAG, WEIGHT, SIGMA (and the other correlation columns there)
    rewritten, POLARIZATION row 0 set to 2 correlations.  Returns ``path``."""
    import shutil

    from casacore.tables import makearrcoldesc, maketabdesc, table

    shutil.copytree(src, path)
    with table(path + "::POLARIZATION", readonly=False, ack=False) as p:
        types = list(p.getcell("CORR_TYPE", 0))
        keep = [i for i, c in enumerate(types) if c in (5, 8, 9, 12)]          # RR, LL, XX, YY
        p.putcell("NUM_CORR", 0, len(keep))
        p.putcell("CORR_TYPE", 0, np.array([types[i] for i in keep]))
        p.putcell("CORR_PRODUCT", 0, np.array([[0, 0], [1, 1]]))         # (receptor, receptor) per corr.
    with table(path, readonly=False, ack=False) as t:
        for c in ("DATA", "MODEL_DATA", "CORRECTED_DATA", "FLAG", "WEIGHT", "SIGMA", "WEIGHT_SPECTRUM",
                  "SIGMA_SPECTRUM"):
            if c not in t.colnames():
                continue
            v = np.ascontiguousarray(t.getcol(c)[..., keep])
            vt = t.getcoldesc(c)["valueType"]
            t.removecols(c)
            t.addcols(maketabdesc(makearrcoldesc(c, v.flat[0], ndim=v.ndim - 1, shape=list(v.shape[1:]),
                                                 valuetype=vt)), {})
            t.putcol(c, v)
    return path


def rr_ll_ms(tmp, name, **kw):
    """A small simulated circular-feed MS (8 antennas, 64 channels, 1 h, noise 0.1, no delays, leakage
    or cross-hand terms, no dead antenna; ``kw`` overrides) rewritten to RR, LL only
    (:func:`parallel_hands_only`, uGMRT's usual); returns (path, truth)."""
    import os

    from alakazam.sim.simulate import load_truth, simulate_ms

    raw = os.path.join(str(tmp), name + ".raw.ms")
    args = dict(n_ant=8, n_chan=(64,), feed="circular", duration_h=1.0, noise=0.1, seed=5, delays=False,
                leakage=False, crosshand=False, dead_ant=False)
    args.update(kw)
    simulate_ms(raw, **args)
    return parallel_hands_only(raw, os.path.join(str(tmp), name + ".ms")), load_truth(raw)
