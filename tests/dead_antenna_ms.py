"""Test helper: an MS whose antennas ``dead`` carry noise-only DATA (FLAG False) for the whole observation,
and a copy with those antennas' rows flagged (the reference a solve over the dead data must match)."""

import os
import shutil

import numpy as np
from casacore.tables import table

from alakazam.sim import simulate_ms


def dead_antenna_ms(d, dead, feed="linear", n_chan=32, seed=7, per_corr=False, zeros=False, scans=None,
                    **sim):
    """(dead MS, flagged MS) under directory ``d``: ``simulate_ms`` (8 antennas, 1 h, ``n_chan``
    channels, ``feed``; ``sim`` overrides), then DATA of every baseline of the antennas named in
    ``dead`` replaced by complex Gaussian noise of the simulation's noise level (drawn for all
    correlations at once, or with ``per_corr`` one correlation after the other: another realisation,
    the one the session-27 review used); with ``zeros`` DATA is set to exactly 0 instead (a correlator
    dropout); ``scans``: only in these scans (default all)."""
    ms, fl = os.path.join(str(d), "dead.ms"), os.path.join(str(d), "flagged.ms")
    kw = dict(n_ant=8, n_chan=(n_chan,), duration_h=1.0, feed=feed)
    kw.update(sim)
    tr = simulate_ms(ms, **kw)
    with table(os.path.join(ms, "ANTENNA"), ack=False) as t:
        names = list(t.getcol("NAME"))
    ids = [names.index(x) for x in dead]
    rng = np.random.default_rng(seed)
    with table(ms, readonly=False, ack=False) as t:
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        rows = np.isin(a1, ids) | np.isin(a2, ids)
        if scans is not None:
            rows &= np.isin(t.getcol("SCAN_NUMBER"), scans)
        data = t.getcol("DATA")
        shape = data[rows].shape
        if zeros:
            data[rows] = 0
        elif per_corr:
            sub = data[rows]
            for c in range(shape[-1]):
                sub[..., c] = tr.noise * (rng.normal(size=shape[:-1]) + 1j * rng.normal(size=shape[:-1]))
            data[rows] = sub
        else:
            data[rows] = tr.noise * (rng.normal(size=shape) + 1j * rng.normal(size=shape))
        t.putcol("DATA", data)
    shutil.copytree(ms, fl)
    with table(fl, readonly=False, ack=False) as t:
        f = t.getcol("FLAG")
        f[rows] = True
        t.putcol("FLAG", f)
    return ms, fl


def dead_scan_ms(d, n_chan, feed="linear"):
    """(dead MS, flagged MS) under directory ``d``: ``simulate_ms`` (8 antennas, 1 h, ``n_chan`` channels,
    ``feed``) with C03 noise-only in scan 4 (the simulator's ``dead_antenna_scan``), and a copy with
    C03's scan-4 rows flagged."""
    ms, fl = os.path.join(str(d), "dead.ms"), os.path.join(str(d), "flagged.ms")
    simulate_ms(ms, n_ant=8, n_chan=(n_chan,), duration_h=1.0, feed=feed, dead_antenna_scan=("C03", 4))
    shutil.copytree(ms, fl)
    with table(os.path.join(fl, "ANTENNA"), ack=False) as t:
        c03 = list(t.getcol("NAME")).index("C03")
    with table(fl, readonly=False, ack=False) as t:
        a1, a2, sc = t.getcol("ANTENNA1"), t.getcol("ANTENNA2"), t.getcol("SCAN_NUMBER")
        f = t.getcol("FLAG")
        f[((a1 == c03) | (a2 == c03)) & (sc == 4)] = True
        t.putcol("FLAG", f)
    return ms, fl
