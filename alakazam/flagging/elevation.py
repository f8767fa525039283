"""mode='elevation' (flagdata's): flag the samples of a baseline when the field is below ``lowerlimit``
or above ``upperlimit`` degrees of elevation at either of its antennas.

Elevation of antenna ``a`` at TIME ``t``: the angle between the field's J2000 direction (FIELD
PHASE_DIR) and the J2000 direction of the antenna's zenith (geodetic vertical of its ANTENNA POSITION),
``el = 90 deg - arccos(sin dec sin dec_z + cos dec cos dec_z cos(ra - ra_z))``; the zenith comes from
casacore measures with the frame setup of the parallactic angle, as the array centre's plus the
antenna's offset from it (:func:`alakazam.jones.parang.antenna_zeniths`: ~3e-7 rad at 40 km; the
centre's anchors every 300 s and the offsets' every hour, shared by all antennas, instead of every
antenna's own anchors every 300 s).  No refraction, as flagdata.  A row is flagged when
``el < lowerlimit`` or ``el > upperlimit`` for ANTENNA1 or ANTENNA2 (tests/test_flag_parity.py checks
it against CASA 6.7 flagdata sample by sample).
"""

import numpy as np


def start(cfg, sel):
    """Checks every antenna with data has an ITRF position (before anything is saved or written)."""
    from ..errors import AlakazamError

    pos = np.asarray(sel.meta.ant_positions, float)
    bad = [sel.meta.ant_names[a] for a in sel.meta.active_ants
           if not (np.all(np.isfinite(pos[a])) and np.linalg.norm(pos[a]) > 1e6)]
    if bad:
        raise AlakazamError(f"mode='elevation': antenna(s) {', '.join(bad)} of {sel.meta.path} have no ITRF "
                            "position in the ANTENNA table (POSITION near 0); elevations cannot be computed")
    return {"meta": sel.meta, "cache": {}}


def antenna_elevation(state, ant, field_id, times):
    """Elevation (deg) of field ``field_id`` at antenna ``ant`` (ANTENNA id) at ``times`` (cached per
    antenna, field and time)."""
    from ..jones.parang import antenna_zeniths

    meta = state["meta"]
    ut, inv = np.unique(np.asarray(times, float), return_inverse=True)
    cache = state["cache"].setdefault((int(ant), int(field_id)), {})
    todo = np.asarray([t for t in ut.tolist() if t not in cache])
    if len(todo):
        f = next(f for f in meta.fields if f.id == int(field_id))
        pos = np.asarray(meta.ant_positions[int(ant)], float)
        ra_z, dec_z = (x[:, 0] for x in antenna_zeniths(todo, pos[None], _centre(meta, pos)))
        c = np.sin(f.dec) * np.sin(dec_z) + np.cos(f.dec) * np.cos(dec_z) * np.cos(f.ra - ra_z)
        el = 90.0 - np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))
        cache.update(zip(todo.tolist(), el.tolist()))
    return np.asarray([cache[t] for t in ut.tolist()])[inv]


def _centre(meta, pos):
    """The array centre (the observatory's ITRF position, or the antennas' mean), or the antenna's own
    position where that is not an ITRF position."""
    c = np.asarray(meta.observatory, float).ravel()
    return c if c.shape == (3,) and np.all(np.isfinite(c)) and np.linalg.norm(c) > 1e6 else pos


def flag_piece(piece, cfg, state):
    bad = np.zeros(len(piece.time), bool)
    for fid in np.unique(piece.field_id):
        fm = piece.field_id == fid
        for col in (piece.ant1, piece.ant2):
            for a in np.unique(col[fm]):
                m = fm & (col == a)
                el = antenna_elevation(state, a, fid, piece.time[m])
                bad[m] |= (el < cfg.lowerlimit) | (el > cfg.upperlimit)
    return piece.flag | bad[:, None, None]
