"""A small MS of known gains on a point source (tests of the solve's weights and of the solve-time flags):
5 antennas, 20 integrations of 3C286, MODEL_DATA an unpolarised point source of ``flux`` Jy
(pp = qq = flux, pq = qp = 0), DATA the true gains' noise-free visibilities, FLAG all False."""

import numpy as np
from casacore.tables import table

from alakazam.sim import simulate_ms


def point_source_ms(path, n_chan, flux, noise):
    """Write the MS at ``path``; returns the true gains (n_ant, 2) complex."""
    simulate_ms(path, feed="linear", n_ant=5, n_ant_extra=0, n_chan=(n_chan,), duration_h=1.0, int_s=60.0,
                scan_len_s=600.0, noise=noise, seed=7, leakage=False, dead_ant=False, flag_rows=0.0)
    rng = np.random.default_rng(11)
    g = rng.uniform(0.8, 1.2, (5, 2)) * np.exp(1j * rng.uniform(-np.pi, np.pi, (5, 2)))
    with table(path, readonly=False, ack=False) as t:
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        m = np.zeros(t.getcol("MODEL_DATA").shape, np.complex64)
        m[..., 0] = m[..., 3] = flux
        t.putcol("MODEL_DATA", m)
        dat = np.zeros_like(m)
        dat[..., 0] = g[a1, 0][:, None] * flux * np.conj(g[a2, 0])[:, None]
        dat[..., 3] = g[a1, 1][:, None] * flux * np.conj(g[a2, 1])[:, None]
        t.putcol("DATA", dat)
        t.putcol("FLAG", np.zeros(m.shape, bool))
    return g
