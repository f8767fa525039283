"""mode='shadow' (flagdata's): flag every sample of an antenna while another antenna shadows it.

At each TIME, a cross-correlation row (ANTENNA1 ``i``, ANTENNA2 ``j``) whose projected baseline length
in the uv plane, ``sqrt(u^2 + v^2)`` from the UVW column, is below ``(D_i + D_j) / 2 - tolerance``
(DISH_DIAMETER of the ANTENNA table, metres; flagdata's sign: a positive tolerance allows that much
overlap in projection, a negative one forces the antennas further apart -- measured with CASA 6.7)
means one antenna is shadowed: ANTENNA2 when ``w > 0``,
else ANTENNA1 (measured with CASA 6.7 flagdata: it reads the UVW column and flags the antenna that
convention names; tests/test_flag_parity.py).  Every row with a shadowed antenna at that TIME is
flagged (all its channels and correlations, auto-correlation included), in the selected data.
Shadowing is found from every row of the MS (not only the selected ones): an antenna outside the
selection still shadows -- as in CASA 6.7 flagdata, which computes the baselines it did not select
from the antenna geometry (measured: equal flags with and without an antenna selection, on an MS whose
UVW has CASA's sign; CASA's own geometry is X1 - X2, the sign fixvis writes and alakazam's simulator
writes: on an MS with the other sign, CASA's unselected baselines shadow the other antenna and the two
differ when rows are selected).  Antennas not in the MS (flagdata's ``addantenna``) are not supported.
"""

import numpy as np

#: the whole MS is scanned once for shadowing (start): never split over dask workers
IN_PROCESS = True
#: rows of ANTENNA1 / ANTENNA2 / TIME / UVW read at a time while looking for shadowing
BLOCK_ROWS = 1 << 20


def shadowed(a1, a2, uvw, time, dish, tolerance):
    """(times, antennas) of the shadow events of these rows (pure numpy; see the module doc)."""
    a1, a2 = np.asarray(a1, np.int64), np.asarray(a2, np.int64)
    uvw = np.asarray(uvw, float)
    near = (a1 != a2) & (np.hypot(uvw[:, 0], uvw[:, 1]) < 0.5 * (dish[a1] + dish[a2]) - tolerance)
    ant = np.where(uvw[near, 2] > 0, a2[near], a1[near])
    return np.asarray(time, float)[near], ant


def start(cfg, sel):
    from ..core.ms_io import main_table

    with main_table(sel.meta.path + "::ANTENNA") as t:
        dish = np.asarray(t.getcol("DISH_DIAMETER"), float)
    ts, ants = [], []
    with main_table(sel.meta.path) as t:
        n = t.nrows()
        for r0 in range(0, n, BLOCK_ROWS):
            nr = min(BLOCK_ROWS, n - r0)
            tt, a = shadowed(t.getcol("ANTENNA1", r0, nr), t.getcol("ANTENNA2", r0, nr),
                             t.getcol("UVW", r0, nr), t.getcol("TIME", r0, nr), dish, cfg.tolerance)
            ts.append(tt)
            ants.append(a)
    t_all = np.concatenate(ts) if ts else np.zeros(0)
    a_all = np.concatenate(ants) if ants else np.zeros(0, np.int64)
    times = np.unique(t_all)
    # shadow events as sorted codes (index of the TIME among the event times) * n_ant + antenna
    codes = np.unique(np.searchsorted(times, t_all) * len(dish) + a_all)
    return {"times": times, "codes": codes, "n_ant": len(dish)}


def _is_shadowed(state, time, ant):
    times, codes = state["times"], state["codes"]
    k = np.clip(np.searchsorted(times, time), 0, max(len(times) - 1, 0))
    hit = times[k] == time if len(times) else np.zeros(len(time), bool)
    return hit & np.isin(k * state["n_ant"] + np.asarray(ant, np.int64), codes)


def flag_piece(piece, cfg, state):
    if not len(state["codes"]):
        return piece.flag
    bad = _is_shadowed(state, piece.time, piece.ant1) | _is_shadowed(state, piece.time, piece.ant2)
    return piece.flag | bad[:, None, None]
