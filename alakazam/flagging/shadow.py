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
differ when rows are selected).  An antenna of the ANTENNA table without any data row shadows too:
its projected baselines come from the ANTENNA positions, the field's PHASE_DIR and the sidereal time
(:func:`_rowless_events`).  Antennas not in the MS (flagdata's ``addantenna``) are not supported.
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


def _uvw(bvec, h, dec):
    """(n, 3) UVW of ITRF baselines ``bvec`` (n, 3) at Greenwich hour angle ``h`` and declination ``dec``
    (rad; arrays of n or scalars): the standard rotation (the simulator's, alakazam/sim/simulate.py)."""
    x, y, z = bvec[:, 0], bvec[:, 1], bvec[:, 2]
    u = np.sin(h) * x + np.cos(h) * y
    v = -np.sin(dec) * np.cos(h) * x + np.sin(dec) * np.sin(h) * y + np.cos(dec) * z
    w = np.cos(dec) * np.cos(h) * x - np.cos(dec) * np.sin(h) * y + np.sin(dec) * z
    return np.stack([u, v, w], axis=1)


def _rowless_events(t, n, used, pos, dish, tolerance, path):
    """Shadow events between the antennas of the ANTENNA table without any data row and those with rows at
    each TIME (only these have data to flag): their projected baselines from the ANTENNA positions, the
    field's PHASE_DIR and the sidereal time (as CASA 6.7's flagdata computes every antenna's geometry:
    review 54f measured 38,304 samples of a row-less antenna's neighbour flagged by CASA, none by akflag).
    The UVW sign is the MS's own: taken from its rows."""
    from ..core.ms_io import main_table
    from ..jones.parang import apparent_sidereal_time

    ok_pos = np.isfinite(pos).all(axis=1) & (np.abs(pos).sum(axis=1) > 0)
    rowless = np.flatnonzero(~used & ok_pos & np.isfinite(dish) & (dish > 0))
    if not len(rowless):
        return np.zeros(0), np.zeros(0, np.int64)
    with main_table(path + "::FIELD") as f:
        pdir = np.asarray(f.getcol("PHASE_DIR"), float)[:, 0]          # (n_field, 2) J2000 RA, Dec
    per_time = {}               # TIME -> [FIELD_ID, antennas with rows]
    probe = []                  # a few rows (time, a1, a2, UVW) for the MS's sign
    for r0 in range(0, n, BLOCK_ROWS):
        nr = min(BLOCK_ROWS, n - r0)
        tm, a1, a2, fid = (np.asarray(t.getcol(c, r0, nr)) for c in ("TIME", "ANTENNA1", "ANTENNA2",
                                                                    "FIELD_ID"))
        cross = a1 != a2
        tm, a1, a2, fid = tm[cross], a1[cross], a2[cross], fid[cross]
        ut, first, inv = np.unique(tm, return_index=True, return_inverse=True)
        have = np.zeros((len(ut), len(pos)), bool)
        have[inv, a1] = True
        have[inv, a2] = True
        for j, tv in enumerate(ut):
            cur = per_time.get(tv)
            per_time[tv] = [int(fid[first[j]]), have[j] if cur is None else cur[1] | have[j]]
        if not probe and cross.any():
            at = np.flatnonzero(cross)[:: max(1, int(cross.sum()) // 500)]     # (within the block)
            full = {c: np.asarray(t.getcol(c, r0, nr)) for c in ("TIME", "ANTENNA1", "ANTENNA2", "UVW")}
            probe.append(tuple(full[c][at] for c in ("TIME", "ANTENNA1", "ANTENNA2", "UVW")))
    if not per_time:
        return np.zeros(0), np.zeros(0, np.int64)
    ut = np.array(sorted(per_time))
    fids = np.array([per_time[x][0] for x in ut])
    have = np.array([per_time[x][1] for x in ut])
    ref = pos[ok_pos].mean(axis=0)
    gast = apparent_sidereal_time(ut, float(np.arctan2(ref[1], ref[0])), ref)
    h = gast - pdir[fids, 0]
    dec = pdir[fids, 1]
    # the MS's UVW sign against this rotation of ANTENNA1 - ANTENNA2 (CASA's; fixvis's; the simulator's)
    sign = 1.0
    if probe:
        pt, p1, p2, puvw = probe[0]
        k = np.searchsorted(ut, pt)
        mine = _uvw(pos[p1] - pos[p2], h[k], dec[k])
        sign = -1.0 if np.sum(mine * puvw) < 0 else 1.0
    ts, ants = [], []
    for c in rowless:
        ti, a = np.nonzero(have)
        lo, hi = np.minimum(a, c), np.maximum(a, c)
        tt, sh = shadowed(lo, hi, sign * _uvw(pos[lo] - pos[hi], h[ti], dec[ti]), ut[ti], dish, tolerance)
        keep = sh != c                      # (c has no data to flag)
        ts.append(tt[keep])
        ants.append(sh[keep])
    return np.concatenate(ts), np.concatenate(ants)


def start(cfg, sel):
    from ..core.ms_io import main_table

    with main_table(sel.meta.path + "::ANTENNA") as t:
        dish = np.asarray(t.getcol("DISH_DIAMETER"), float)
        pos = np.asarray(t.getcol("POSITION"), float)
    ts, ants = [], []
    used = np.zeros(len(dish), bool)
    with main_table(sel.meta.path) as t:
        n = t.nrows()
        for r0 in range(0, n, BLOCK_ROWS):
            nr = min(BLOCK_ROWS, n - r0)
            a1, a2 = t.getcol("ANTENNA1", r0, nr), t.getcol("ANTENNA2", r0, nr)
            tt, a = shadowed(a1, a2, t.getcol("UVW", r0, nr), t.getcol("TIME", r0, nr), dish,
                             cfg.tolerance)
            ts.append(tt)
            ants.append(a)
            used[a1] = used[a2] = True
        if not used.all():          # an antenna without rows shadows too (a second read, only then)
            tt, a = _rowless_events(t, n, used, pos, dish, cfg.tolerance, sel.meta.path)
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
