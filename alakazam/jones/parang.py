"""Parallactic angle and the P (feed rotation) Jones term.

Convention (docs/conventions.md): the parallactic angle q of a source at hour angle H and declination
dec seen from latitude lat is

.. math:: q = \\arctan2(\\sin H \\cos lat,\\; \\sin lat \\cos dec - \\cos lat \\sin dec \\cos H)

(positive east of north: negative before transit, positive after).
The feed angle is chi = q + receptor_angle[feed 0] and the sky-to-feed rotation is

    linear:   P = [[cos chi,  sin chi], [-sin chi, cos chi]]
    circular: P = diag(exp(-i chi), exp(+i chi))

both of which turn Q + iU into (Q + iU) exp(-2 i chi).
"""

import numpy as np



def parallactic_angle(times, ra, dec, obs_pos_itrf):
    """Parallactic angle (rad) of (ra, dec) (J2000, rad) at MJD-second ``times``.

    Computed with casacore measures as the position angle of the zenith (AZEL frame, geodetic
    vertical) seen from the source, east of J2000 north -- the frame in which MODEL_DATA's Q and U
    are defined.  ~0.15 ms per unique time.
    """
    from casacore.measures import measures

    me = measures()
    x, y, z = [float(v) for v in obs_pos_itrf]
    me.doframe(me.position("ITRF", f"{x}m", f"{y}m", f"{z}m"))
    src = me.direction("J2000", f"{float(ra)}rad", f"{float(dec)}rad")
    times = np.asarray(times, float)
    uniq, inv = np.unique(times, return_inverse=True)
    out = np.empty(len(uniq))
    for i, t in enumerate(uniq):
        me.doframe(me.epoch("UTC", f"{t}s"))
        out[i] = me.posangle(src, me.direction("AZEL", "0deg", "90deg")).get_value("rad")
    return out[inv].reshape(times.shape)


def parang_matrices(chi, feed_basis):
    """P (..., 2, 2) for feed angles chi (...)."""
    chi = np.asarray(chi, float)
    P = np.zeros(chi.shape + (2, 2), np.complex128)
    if feed_basis == "circular":
        P[..., 0, 0] = np.exp(-1j * chi)
        P[..., 1, 1] = np.exp(1j * chi)
    else:
        c, s = np.cos(chi), np.sin(chi)
        P[..., 0, 0] = c
        P[..., 0, 1] = s
        P[..., 1, 0] = -s
        P[..., 1, 1] = c
    return P


def parang_tables(times, ra, dec, obs_pos_itrf, receptor_angle, feed_basis):
    """P per time and antenna: (n_time, n_ant, 2, 2); receptor_angle (n_ant, 2) rad."""
    q = parallactic_angle(times, ra, dec, obs_pos_itrf)
    chi = q[:, None] + np.asarray(receptor_angle, float)[None, :, 0]
    return parang_matrices(chi, feed_basis)
