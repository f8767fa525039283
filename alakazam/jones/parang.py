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

from ..errors import AlakazamError
from ..measures_data import LOCK as _LOCK

# _LOCK: one thread at a time converts with casacore measures and fills the anchor caches (casacore's
# conversions share state between threads).  The order of the conversions still reaches the values at
# ~1e-14 rad (casacore keeps state that a conversion a day away does not reset): bit-identity holds
# within a process, not between processes that converted different epochs first

#: spacing (s) of the anchor times at which casacore measures are evaluated exactly
ANCHOR_SPACING_S = 300.0
#: sidereal rotation rate (rad per UT second) used between anchors
_SIDEREAL_RATE = 2.0 * np.pi * 1.002737909350795 / 86400.0


def apparent_sidereal_time(times, lon, xyz):
    """Greenwich apparent sidereal time (rad) at UTC ``times`` (MJD seconds) of an observatory at ITRF
    ``xyz`` (m) of east longitude ``lon`` (rad): casacore's local apparent sidereal time (LAST) at the
    first time, less ``lon``, then the sidereal rate (:data:`_SIDEREAL_RATE`; over 8 h within 1e-6 rad
    of casacore's LAST at each time, tests/test_parang.py).  The one sidereal time of the package: the
    simulator's hour angles (alakazam/sim/simulate.py) and the shadow geometry of antennas without data
    rows (alakazam/flagging/shadow.py)."""
    from ..measures_data import measures  # casacore measures, current data (one thread at a time)

    t0 = float(np.asarray(times).ravel()[0])
    with _LOCK:
        me = measures()
        me.doframe(me.position("ITRF", *[f"{c}m" for c in xyz]))
        lst = me.measure(me.epoch("UTC", f"{t0}s"), "LAST")
    last0 = (float(lst["m0"]["value"]) % 1.0) * 2 * np.pi
    return last0 - lon + _SIDEREAL_RATE * (np.asarray(times) - t0)


def _posangle(ra0, dec0, ra1, dec1):
    """Position angle (rad, east of north) of direction 1 seen from direction 0 (same frame)."""
    dra = ra1 - ra0
    return np.arctan2(np.sin(dra) * np.cos(dec1),
                      np.sin(dec1) * np.cos(dec0) - np.cos(dec1) * np.sin(dec0) * np.cos(dra))


def parallactic_angle(times, ra, dec, obs_pos_itrf):
    """Parallactic angle (rad) of a J2000 direction seen from an ITRF position at MJD-second times.

    The reference is casacore measures: the position angle (``me.posangle``) of the zenith
    (AZEL frame, geodetic vertical) seen from the source, east of J2000 north -- the frame in which
    the model's Q and U are defined.  Positive east of north: negative before transit and positive
    after for a source south of the zenith; 0 at upper transit for dec < latitude, pi for dec > latitude.

    For speed, the measures convert the zenith to J2000 (ra_z, dec_z) only at anchor times (a fixed
    grid every :data:`ANCHOR_SPACING_S` s, :func:`zenith_j2000`); between anchors ra_z advances at the
    sidereal rate plus a linearly interpolated remainder, dec_z is interpolated linearly, and

    .. math:: q = \\arctan2\\big(\\sin(\\alpha_z-\\alpha)\\cos\\delta_z,\\;
              \\sin\\delta_z\\cos\\delta - \\cos\\delta_z\\sin\\delta\\cos(\\alpha_z-\\alpha)\\big)

    which is the position angle ``me.posangle`` computes (the classical
    q = atan2(sin H cos lat, sin lat cos dec - cos lat sin dec cos H) with H and lat of the zenith
    expressed in J2000).  Agreement with ``me.posangle`` at every time is better than 1e-5 rad
    (~1e-6 typical).

    Parameters
    ----------
    times : array_like (...)
        MJD seconds (UTC), as in the MS TIME column.
    ra, dec : float
        J2000 direction (rad).
    obs_pos_itrf : array_like (3,)
        Array position, ITRF metres.

    Returns
    -------
    ndarray (...) float64, radians in (-pi, pi].
    """
    times = np.asarray(times, np.float64)
    if times.size == 0:
        zenith_j2000(times, obs_pos_itrf)           # (the position is checked all the same)
        return np.zeros(times.shape)
    ra_z, dec_z = zenith_j2000(times, obs_pos_itrf)
    return _posangle(float(ra), float(dec), ra_z, dec_z)


def zenith_anchors(times):
    """The anchor times (s) :func:`zenith_j2000` evaluates exactly for ``times``: for each
    :data:`ANCHOR_SPACING_S` interval of the fixed grid of MJD seconds that holds a finite time, its
    start and its end.  A time's value then depends only on its own interval's two anchors, never on
    which other times came in the same call (a row chunk's, a dask worker's), and a gap costs two
    anchors, not one per interval in between."""
    return _grid_anchors(times, ANCHOR_SPACING_S)


def _grid_anchors(times, spacing):
    """The start and end of every ``spacing``-s interval of the fixed grid of MJD seconds that holds a
    finite time (sorted): the anchors of :func:`zenith_anchors` and :func:`offset_anchors`."""
    t = np.asarray(times, np.float64).ravel()
    k = np.unique(np.floor(t[np.isfinite(t)] / spacing))
    return np.union1d(k, k + 1) * spacing


def _cached_anchors(cache, key, anchors, size, limit, compute):
    """``[cache[key][t] for t in anchors]``, computing the missing anchors with ``compute(todo)`` (one
    value per anchor); ``cache`` holds at most ``limit`` positions x anchors (``size(key)`` positions
    per anchor of ``key``) over its keys, emptied
    before a call that would pass that (that call then computes all it reads).  Under :data:`_LOCK`:
    the one cache rule of the zenith and offset tables (a value never depends on which call computed
    it)."""
    anchors = [float(t) for t in anchors]
    with _LOCK:
        known = cache.get(key, {})
        todo = sorted({t for t in anchors if t not in known})
        held = sum(len(v) * size(k) for k, v in cache.items())
        if todo and held + len(todo) * size(key) > limit:
            cache.clear()
            known = {}
            todo = sorted(set(anchors))
        if todo:
            for t, v in zip(todo, compute(todo)):
                known[t] = v
            cache[key] = known
        return [known[t] for t in anchors]


#: ITRF position (rounded to the micrometre) -> {anchor time: (ra_z, dec_z)}: each anchor converted
#: once per process (:func:`zenith_j2000`)
_ZENITHS: dict = {}
#: at most this many anchors are kept over all positions; emptied before a call that would pass it
#: (a single call needing more keeps them all: ~190 bytes each)
ZENITHS_MAX = 200000


def _zenith_table(anchors, pos):
    """(n_anchor, 2): the J2000 zenith of ``pos`` at ``anchors`` (:func:`_zeniths_at`: each after a
    full computation of casacore's nutation), cached per position and anchor (:data:`_ZENITHS`)."""
    vals = _cached_anchors(_ZENITHS, tuple(np.round(pos, 6)), anchors, lambda k: 1, ZENITHS_MAX,
                           lambda todo: _zeniths_at(todo, [pos])[:, 0])
    return np.array(vals).reshape(len(vals), 2)


def zenith_j2000(times, obs_pos_itrf):
    """(ra_z, dec_z) (rad, shaped as ``times``): the zenith (AZEL frame, geodetic vertical) of an ITRF
    position in J2000 at MJD-second times (also used by akflag mode='elevation',
    alakazam/flagging/elevation.py).  Evaluated with casacore measures at the anchors of
    :func:`zenith_anchors` (a fixed grid every :data:`ANCHOR_SPACING_S` s) and interpolated in
    between: ra_z advances at the sidereal rate from the interval's first anchor plus a linearly
    interpolated remainder, dec_z linearly.  A time's value depends only on its interval's two
    anchors, each converted once per process after a full computation of casacore's nutation: the
    same in every call of a process, whichever times come with it (row chunks, repeats; between
    processes casacore's conversion history is left at ~1e-14 rad, measured: see :data:`_LOCK`)."""
    times = np.asarray(times, np.float64)
    pos = np.asarray(obs_pos_itrf, np.float64).ravel()
    if pos.shape != (3,) or not np.all(np.isfinite(pos)) or np.linalg.norm(pos) < 1e6:
        raise AlakazamError(f"obs_pos_itrf: expected an ITRF position (3,) in metres, got {obs_pos_itrf!r}")
    if times.size == 0:
        return np.zeros(times.shape), np.zeros(times.shape)
    if not np.all(np.isfinite(times)):
        raise AlakazamError("times: expected finite MJD seconds, got NaN/Inf")
    uniq, inv = np.unique(times.ravel(), return_inverse=True)
    anchors = zenith_anchors(uniq)
    zen = _zenith_table(anchors, pos)
    k = np.clip(np.searchsorted(anchors, uniq, side="right") - 1, 0, len(anchors) - 2)
    t0, t1 = anchors[k], anchors[k + 1]
    frac = (uniq - t0) / (t1 - t0)
    # the remainder of ra_z after the sidereal rotation changes slowly: interpolated linearly
    d_rem = np.angle(np.exp(1j * (zen[k + 1, 0] - zen[k, 0] - _SIDEREAL_RATE * (t1 - t0))))
    ra_z = zen[k, 0] + frac * d_rem + _SIDEREAL_RATE * (uniq - t0)
    dec_z = zen[k, 1] + frac * (zen[k + 1, 1] - zen[k, 1])
    return ra_z[inv].reshape(times.shape), dec_z[inv].reshape(times.shape)


def feed_angle(parang, receptor_angle):
    """Feed angle chi (time, ant) = parang (time,) or (time, ant) + receptor_angle (ant, 2)[:, 0], rad."""
    q = np.asarray(parang, float)
    rec = np.asarray(receptor_angle, float)[:, 0]
    if q.ndim == 2:                           # one parallactic angle per antenna
        return q + rec[None, :]
    return q[..., None] + rec[None, :]


#: spacing (s, on a fixed grid of MJD seconds, so that calls on adjacent time ranges share anchors)
#: of the anchors at which each antenna's zenith offset from the array centre's is evaluated
#: exactly (:func:`antenna_zeniths`)
OFFSET_ANCHOR_S = 3600.0
#: (antenna positions, centre) -> {anchor time: (n_pos, 2) (d ra_z, d dec_z)}: each anchor's offsets
#: computed once for the whole set of positions (so a value never depends on which call computed it)
_OFFSETS: dict = {}
#: at most this many (anchor, position) offsets are kept (a long session over many MSs); the cache is
#: emptied before a call that would pass it, and that call then computes all it reads
OFFSETS_MAX = 200000


def _zeniths_at(anchors, positions):
    """(n_anchor, n_pos, 2): the J2000 (ra, dec) of the zenith of each ITRF position at each anchor
    time, straight from casacore measures (one measures object, one epoch frame per anchor)."""
    from ..measures_data import measures  # casacore measures, current data

    me = measures()
    zenith = me.direction("AZEL", "0deg", "90deg")
    out = np.empty((len(anchors), len(positions), 2))
    for i, t in enumerate(anchors):
        # casacore keeps its nutation / precession of the last epoch it computed in full and, within a
        # short interval of it, moves them on linearly: ~1e-11 rad that depends on which epochs came
        # before.  A conversion at an epoch a day away first makes the anchor's own a full computation,
        # so an anchor's value never depends on the call that computed it (tests/test_parang.py).
        me.doframe(me.epoch("UTC", f"{float(t) - 86400.0!r}s"))
        me.doframe(me.position("ITRF", *[f"{float(v)!r}m" for v in positions[-1]]))
        me.measure(zenith, "J2000")
        me.doframe(me.epoch("UTC", f"{float(t)!r}s"))
        for j, p in enumerate(positions):
            me.doframe(me.position("ITRF", *[f"{float(v)!r}m" for v in p]))
            z = me.measure(zenith, "J2000")
            out[i, j] = z["m0"]["value"], z["m1"]["value"]
    return out


def _zenith_offsets(anchors, positions, centre):
    """(n_anchor, n_pos, 2): the zenith of each position minus the centre's (J2000 ra wrapped, dec) at
    the anchor times; cached per (positions, centre) and anchor (:data:`_OFFSETS`)."""
    block = (tuple(tuple(np.round(p, 6)) for p in positions), tuple(np.round(centre, 6)))
    n_pos = len(positions)

    def compute(todo):
        z = _zeniths_at(todo, list(positions) + [centre])            # the centre last
        d_ra = np.angle(np.exp(1j * (z[:, :n_pos, 0] - z[:, -1:, 0])))
        return np.stack([d_ra, z[:, :n_pos, 1] - z[:, -1:, 1]], -1)

    vals = _cached_anchors(_OFFSETS, block, anchors, lambda b: len(b[0]), OFFSETS_MAX, compute)
    return np.stack(vals).reshape(len(vals), n_pos, 2)


def offset_anchors(times):
    """The anchor times (s) :func:`antenna_zeniths` needs for ``times``: for each hour of the fixed
    grid (:data:`OFFSET_ANCHOR_S`) that holds a finite time, its start and its end -- only the hours
    with data, so a gap between two epochs or a stray row (TIME 0) costs two anchors, not one per hour
    in between."""
    return _grid_anchors(times, OFFSET_ANCHOR_S)


def antenna_zeniths(times, ant_pos_itrf, centre_itrf):
    """(ra_z, dec_z) (rad, shape ``times.shape + (n_ant,)``): the zenith of each antenna's own ITRF
    position in J2000, as :func:`zenith_j2000` of that position, computed as the array centre's zenith
    (:func:`zenith_j2000`, anchors every :data:`ANCHOR_SPACING_S` s) plus the antenna's offset from
    it, evaluated exactly with casacore measures at anchors every :data:`OFFSET_ANCHOR_S` s and
    interpolated linearly between them.  The offset is the antenna's (longitude, latitude) offset from
    the centre (<= 0.006 rad for 36 km) seen through the slowly changing precession-nutation frame: it
    varies with the sidereal day by ~0.006 x itself, so the interpolation is good to ~3e-7 rad at
    40 km, 6e-7 at 200 km (tests/test_parang.py against anchors at every time)."""
    times = np.asarray(times, np.float64)
    pos = np.asarray(ant_pos_itrf, np.float64).reshape(-1, 3)
    centre = np.asarray(centre_itrf, np.float64).ravel()
    ra_c, dec_c = zenith_j2000(times, centre)
    shape = times.shape + (len(pos),)
    ra, dec = np.empty(shape), np.empty(shape)
    if times.size == 0:
        return ra, dec
    anchors = offset_anchors(times)        # the hours with data, each with its two ends
    for a, p in enumerate(pos):
        if not np.all(np.isfinite(p)) or np.linalg.norm(p) < 1e6:
            raise AlakazamError(f"antenna position {a}: expected an ITRF position (3,) in metres, got {p!r}")
    at = [a for a, p in enumerate(pos) if not np.array_equal(p, centre)]
    ra[:], dec[:] = ra_c[..., None], dec_c[..., None]
    if at:
        off = _zenith_offsets(anchors, pos[at], centre)               # (n_anchor, n_at, 2)
        for j, a in enumerate(at):
            ra[..., a] += np.interp(times, anchors, off[:, j, 0])
            dec[..., a] += np.interp(times, anchors, off[:, j, 1])
    return ra, dec


def antenna_parallactic_angles(times, ra, dec, ant_pos_itrf, centre_itrf):
    """Parallactic angle (rad, ``times.shape + (n_ant,)``) of a J2000 direction seen from each
    antenna's own position, as CASA computes it (its VisIter's feed_pa: ``msd.setAntenna(iant);
    msd.parAngle()`` per antenna): :func:`parallactic_angle`'s position angle with each antenna's
    zenith (:func:`antenna_zeniths`).  An antenna 40 km from the centre sees 3C286 near transit at
    the VLA up to 0.4 degree from the centre's angle."""
    ra_z, dec_z = antenna_zeniths(times, ant_pos_itrf, centre_itrf)
    return _posangle(float(ra), float(dec), ra_z, dec_z)


#: ANTENNA MOUNT (upper case, stripped) -> how the feeds turn against the sky (:func:`mount_kind`)
MOUNT_KINDS = {"ALT-AZ": "alt-az", "": "alt-az", "ALT-AZ+ROTATOR": "alt-az", "EQUATORIAL": "equatorial",
               "ALT-AZ+NASMYTH-R": "nasmyth-r", "ALT-AZ+NASMYTH-L": "nasmyth-l", "X-Y": "x-y"}


def mount_kind(mount) -> str:
    """How the feeds of an antenna of ANTENNA MOUNT ``mount`` turn against the sky, as casacore's
    MSDerivedValues::parAngle (CASA's feed_pa; measured with CASA 6.7's applycal, parang on, on one MS
    with every kind: tests/test_parang_mounts.py).  The MOUNT text is compared in upper case:

    * ``alt-az`` (ALT-AZ, an empty MOUNT, ALT-AZ+ROTATOR): the parallactic angle q;
    * ``equatorial`` (EQUATORIAL): 0 -- the feeds keep their angle on the sky;
    * ``nasmyth-r`` / ``nasmyth-l`` (ALT-AZ+NASMYTH-R / -L): q + el / q - el (el the elevation);
    * ``x-y`` (X-Y): atan2(-cos H, -sin H sin dec) (H the hour angle);
    * ``unknown`` (anything else: SPACE-HALCA, BIZARRE, ALT-AZ+BWG-R ...): 0, as CASA, which warns
      "unhandled mount type"; :func:`feed_parallactic_angles`' callers warn too (chain.parang_table).

    The one difference from CASA 6.7 measured (review 59d): it rotates 'ALT-AZ' and 'alt-az' but takes
    'Alt-Az' or ' ALT-AZ ' as unknown; here they are alt-az (the text in upper case, stripped)."""
    return MOUNT_KINDS.get(str(mount).strip().upper(), "unknown")


def feed_parallactic_angles(times, ra, dec, ant_pos_itrf, centre_itrf, mounts=None):
    """The parallactic part of each antenna's feed angle (rad, ``times.shape + (n_ant,)``): its own
    parallactic angle (:func:`antenna_parallactic_angles`) turned as its ANTENNA MOUNT turns the feeds
    (:func:`mount_kind`; ``mounts`` (n_ant,) MOUNT texts, None: every antenna alt-az).  Elevation and hour
    angle come from each antenna's own zenith in J2000 (:func:`antenna_zeniths`): the elevation, the
    complement of the source's angular distance from it, is the same in every frame; the X-Y angle is
    taken in J2000 coordinates, within the precession between J2000 and the date (~5e-3 rad in 2026) of
    CASA's, whose angles are all of date (docs/conventions.md, "Parallactic angle")."""
    times = np.asarray(times, np.float64)
    q = np.array(antenna_parallactic_angles(times, ra, dec, ant_pos_itrf, centre_itrf), np.float64)
    if mounts is None:
        return q
    kinds = [mount_kind(m) for m in mounts]
    if len(kinds) != q.shape[-1]:
        raise AlakazamError(f"mounts: expected {q.shape[-1]} ANTENNA MOUNT values, got {len(kinds)}")
    if all(k == "alt-az" for k in kinds):
        return q
    ra_z, dec_z = antenna_zeniths(times, ant_pos_itrf, centre_itrf)
    ra, dec = float(ra), float(dec)
    for a, k in enumerate(kinds):
        if k == "alt-az":
            continue
        if k in ("equatorial", "unknown"):
            q[..., a] = 0.0
        elif k in ("nasmyth-r", "nasmyth-l"):
            el = np.arcsin(np.clip(np.sin(dec) * np.sin(dec_z[..., a])
                                   + np.cos(dec) * np.cos(dec_z[..., a]) * np.cos(ra - ra_z[..., a]), -1, 1))
            q[..., a] += el if k == "nasmyth-r" else -el
        else:                                   # x-y
            h = ra_z[..., a] - ra
            q[..., a] = np.arctan2(-np.cos(h), -np.sin(h) * np.sin(dec))
    return q


#: feed bases of P (the MS POLARIZATION correlation types: XX.. linear, RR.. circular)
FEED_BASES = ("linear", "circular")


def parang_matrices(chi, feed_basis):
    r"""Sky-to-feed rotation P for feed angles chi (...) rad -> (..., 2, 2) complex128.

    .. math::

        P_\mathrm{lin} = \begin{pmatrix}\cos\chi & \sin\chi \\ -\sin\chi & \cos\chi\end{pmatrix},
        \qquad P_\mathrm{circ} = \mathrm{diag}(e^{-i\chi}, e^{i\chi})

    Both rotate Q + iU into (Q + iU) exp(-2 i chi) (module doc; tests/test_jones.py checks it against
    the reference builders of tests/jones_reference.py).
    """
    if feed_basis not in FEED_BASES:
        raise AlakazamError(f"feed_basis: expected one of {FEED_BASES}, got {feed_basis!r}")
    chi = np.asarray(chi, np.float64)
    out = np.zeros(chi.shape + (2, 2), np.complex128)
    if feed_basis == "circular":
        e = np.exp(-1j * chi)
        out[..., 0, 0] = e
        out[..., 1, 1] = np.conj(e)
        return out
    c, s = np.cos(chi), np.sin(chi)
    out[..., 0, 0] = c
    out[..., 0, 1] = s
    out[..., 1, 0] = -s
    out[..., 1, 1] = c
    return out


def parang_tables(times, ra, dec, obs_pos_itrf, receptor_angle, feed_basis, ant_pos_itrf=None,
                  mounts=None):
    """P per time and antenna, with each antenna's own parallactic angle when ``ant_pos_itrf``
    (n_ant, 3) is given (as CASA; :func:`antenna_parallactic_angles`, ``obs_pos_itrf`` the centre),
    turned as its ANTENNA MOUNT turns the feeds when ``mounts`` (n_ant,) is given too
    (:func:`feed_parallactic_angles`), else the array position's for every antenna.

    Parameters
    ----------
    times : array_like (n_time,)
        MJD seconds.
    ra, dec : float
        J2000 field direction (rad).
    obs_pos_itrf : array_like (3,)
        Array position (ITRF m).
    receptor_angle : array_like (n_ant, 2)
        FEED RECEPTOR_ANGLE (rad); feed 0 sets the rotation.
    feed_basis : {"linear", "circular"}

    Returns
    -------
    ndarray (n_time, n_ant, 2, 2) complex128
    """
    if ant_pos_itrf is not None and mounts is not None:
        q = feed_parallactic_angles(np.asarray(times, float), ra, dec, ant_pos_itrf, obs_pos_itrf, mounts)
    elif ant_pos_itrf is not None:
        q = antenna_parallactic_angles(np.asarray(times, float), ra, dec, ant_pos_itrf, obs_pos_itrf)
    else:
        q = parallactic_angle(np.asarray(times, float), ra, dec, obs_pos_itrf)
    return parang_matrices(feed_angle(q, receptor_angle), feed_basis)
