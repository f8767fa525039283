"""Parallactic angle against casacore me.posangle, its sign convention, and the P rotation."""

import os
import time

import numpy as np
import pytest

from alakazam.errors import AlakazamError
from alakazam.jones import parang

casacore_measures = pytest.importorskip("casacore.measures")

RA_3C286, DEC_3C286 = 3.539257626070549, 0.5324850445997038      # J2000 rad (dec 30.5 deg)
T0 = 4.8e9                                                         # MJD seconds (2010)


def _vla():
    me = casacore_measures.measures()
    return _itrf_xyz(me, me.measure(me.observatory("VLA"), "ITRF"))


def _itrf_xyz(me, v):
    """ITRF (x, y, z) metres from a casacore ITRF position measure (lon, lat, radius)."""
    lon, lat, r = v["m0"]["value"], v["m1"]["value"], v["m2"]["value"]
    return r * np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


def _posangle_ref(times, ra, dec, xyz):
    me = casacore_measures.measures()
    me.doframe(me.position("ITRF", *[f"{float(v)!r}m" for v in xyz]))
    src = me.direction("J2000", f"{float(ra)!r}rad", f"{float(dec)!r}rad")
    out = []
    for t in times:
        me.doframe(me.epoch("UTC", f"{float(t)!r}s"))
        out.append(me.posangle(src, me.direction("AZEL", "0deg", "90deg")).get_value("rad"))
    return np.array(out)


def _hour_angle(times, ra, dec, xyz):
    me = casacore_measures.measures()
    me.doframe(me.position("ITRF", *[f"{float(v)!r}m" for v in xyz]))
    src = me.direction("J2000", f"{float(ra)!r}rad", f"{float(dec)!r}rad")
    ha, dec_app = [], []
    for t in times:
        me.doframe(me.epoch("UTC", f"{float(t)!r}s"))
        hd = me.measure(src, "HADEC")
        ha.append(hd["m0"]["value"])
        dec_app.append(hd["m1"]["value"])
    return np.angle(np.exp(1j * np.array(ha))), np.array(dec_app)


def test_matches_posangle_over_a_day():
    xyz = _vla()
    times = T0 + np.arange(0.0, 86400.0, 10.0)                   # 8640 times
    t_start = time.perf_counter()
    q = parang.parallactic_angle(times, RA_3C286, DEC_3C286, xyz)
    assert time.perf_counter() - t_start < 1.0
    sel = np.arange(0, len(times), 131)
    ref = _posangle_ref(times[sel], RA_3C286, DEC_3C286, xyz)
    err = np.abs(np.angle(np.exp(1j * (q[sel] - ref))))
    assert err.max() < 1e-5
    # few unique times (below the anchor count) are evaluated exactly; duplicates and shape kept
    t2 = np.array([[T0, T0 + 30.0], [T0, T0 + 30.0]])
    q2 = parang.parallactic_angle(t2, RA_3C286, DEC_3C286, xyz)
    assert q2.shape == (2, 2)
    np.testing.assert_allclose(q2[0], _posangle_ref(t2[0], RA_3C286, DEC_3C286, xyz), atol=1e-12)
    np.testing.assert_array_equal(q2[0], q2[1])


def test_sign_convention_vla_3c286():
    """dec < lat: negative before transit, 0 at transit, positive after (east of north)."""
    xyz = _vla()
    times = T0 + np.arange(0.0, 86400.0, 60.0)
    ha, dec_app = _hour_angle(times, RA_3C286, DEC_3C286, xyz)
    q = parang.parallactic_angle(times, RA_3C286, DEC_3C286, xyz)
    near = np.abs(ha) < np.radians(30)                       # within 2 h of transit
    assert np.all(q[near & (ha < -0.01)] < 0) and np.all(q[near & (ha > 0.01)] > 0)
    i_tr = np.argmin(np.abs(ha))
    assert abs(q[i_tr]) < 0.02                               # HA step 60 s -> |q| small at transit
    # at HA = +1 h the textbook formula (apparent H and dec, VLA latitude 34.0787 deg) gives the
    # magnitude independently; near the zenith (zenith distance ~13 deg) q amplifies the ~3e-3 rad
    # latitude/frame differences (geodetic vs HADEC pole, apparent vs J2000 north) ~4x -> 0.03 rad
    lat = np.radians(34.0787)
    i1 = np.flatnonzero(near)[np.argmin(np.abs(ha[near] - np.radians(15)))]
    h, d = ha[i1], dec_app[i1]
    qf = np.arctan2(np.sin(h) * np.cos(lat), np.sin(lat) * np.cos(d) - np.cos(lat) * np.sin(d) * np.cos(h))
    assert qf > 0.5 and abs(q[i1] - qf) < 0.03


def test_north_of_zenith_transits_at_pi():
    xyz = _vla()
    dec = np.radians(60.0)                                    # dec > lat (34 deg)
    times = T0 + np.arange(0.0, 86400.0, 60.0)
    ha, dec_app = _hour_angle(times, RA_3C286, dec, xyz)
    q = parang.parallactic_angle(times, RA_3C286, dec, xyz)
    i_tr = np.argmin(np.abs(ha))
    assert abs(abs(q[i_tr]) - np.pi) < 0.02


def _brightness(stokes_i, Q, U, V, basis):
    if basis == "linear":
        return np.array([[stokes_i + Q, U + 1j * V], [U - 1j * V, stokes_i - Q]])
    return np.array([[stokes_i + V, Q + 1j * U], [Q - 1j * U, stokes_i - V]])


@pytest.mark.parametrize("basis", ["linear", "circular"])
def test_rotation_of_q_plus_iu(basis):
    stokes_i, Q, U, V = 2.0, 0.3, -0.2, 0.05
    for chi in (0.0, 0.4, -1.1, 2.5):
        P = parang.parang_matrices(chi, basis)
        B = np.einsum("ij,jk,lk->il", P, _brightness(stokes_i, Q, U, V, basis), np.conj(P))
        if basis == "linear":
            qiu = 0.5 * (B[0, 0] - B[1, 1]).real + 1j * 0.5 * (B[0, 1] + B[1, 0]).real
            i_out, v_out = 0.5 * (B[0, 0] + B[1, 1]).real, (0.5 * (B[0, 1] - B[1, 0]) / 1j).real
        else:
            qiu = B[0, 1]
            i_out, v_out = 0.5 * (B[0, 0] + B[1, 1]).real, 0.5 * (B[0, 0] - B[1, 1]).real
        np.testing.assert_allclose(qiu, (Q + 1j * U) * np.exp(-2j * chi), atol=1e-12)
        np.testing.assert_allclose([i_out, v_out], [stokes_i, V], atol=1e-12)


def test_parang_tables_and_feed_angle():
    xyz = _vla()
    times = T0 + np.array([0.0, 600.0, 1200.0])
    rec = np.array([[0.0, np.pi / 2], [0.3, 0.3 + np.pi / 2]])
    q = parang.parallactic_angle(times, RA_3C286, DEC_3C286, xyz)
    chi = parang.feed_angle(q, rec)
    np.testing.assert_allclose(chi, q[:, None] + rec[None, :, 0])
    P = parang.parang_tables(times, RA_3C286, DEC_3C286, xyz, rec, "circular")
    assert P.shape == (3, 2, 2, 2)
    np.testing.assert_allclose(P[:, 1, 0, 0], np.exp(-1j * (q + 0.3)), atol=1e-12)
    with pytest.raises(AlakazamError, match="obs_pos_itrf"):
        parang.parallactic_angle(times, RA_3C286, DEC_3C286, [0.0, 0.0])


def _offset(xyz, dist_m, az):
    """An ITRF position ``dist_m`` from ``xyz`` along the local horizontal at azimuth ``az``."""
    up = xyz / np.linalg.norm(xyz)
    east = np.cross([0.0, 0.0, 1.0], up)
    east /= np.linalg.norm(east)
    north = np.cross(up, east)
    return xyz + dist_m * (np.sin(az) * east + np.cos(az) * north)


def test_each_antenna_sees_its_own_parallactic_angle():
    """antenna_parallactic_angles against me.posangle at each antenna's own position (CASA's feed_pa:
    msd.setAntenna(iant); msd.parAngle()), over 12 h through 3C286's transit 3.5 deg from the VLA's
    zenith (every minute within an hour of the fastest swing): within 2e-6 rad at 1-200 km from the
    centre, where the centre's angle is off by 0.14 / 1.2 / 5.4 / 22 deg near transit (measured; so
    the test can tell).  An antenna at the centre gets the centre's angle bit for bit: zenith_j2000's
    anchors lie on a fixed grid and are converted once per process (session 37 needed 1e-12 rad here:
    two calls converted the same epochs again, after different histories of casacore conversions)."""
    xyz = _vla()
    times = T0 + np.arange(-6 * 3600.0, 6 * 3600.0, 600.0)
    qc = parang.parallactic_angle(times, RA_3C286, DEC_3C286, xyz)
    t_fast = times[np.argmax(np.abs(np.diff(np.unwrap(qc))))]       # near transit
    times = np.unique(np.concatenate([times, t_fast + np.arange(-3600.0, 3600.0, 60.0)]))
    dists = [0.0, 1e3, 10e3, 40e3, 200e3]
    pos = np.array([_offset(xyz, d, az) for d, az in zip(dists, [0.3, 1.2, 2.5, 4.0, 5.5])])
    q = parang.antenna_parallactic_angles(times, RA_3C286, DEC_3C286, pos, xyz)
    assert q.shape == (len(times), len(dists))
    qc = parang.parallactic_angle(times, RA_3C286, DEC_3C286, xyz)
    np.testing.assert_array_equal(q[:, 0], qc)
    wrap = lambda x: np.abs(np.angle(np.exp(1j * x)))        # noqa: E731
    for a, d in enumerate(dists[1:], 1):
        ref = _posangle_ref(times, RA_3C286, DEC_3C286, pos[a])
        err = wrap(q[:, a] - ref).max()
        off = np.degrees(wrap(ref - qc).max())
        print(f"{d / 1e3:5.0f} km: max |q - me.posangle| {err:.1e} rad; centre's angle off by {off:.3f} deg")
        assert err < 2e-6
        assert off > 0.1


def test_parang_table_is_per_antenna(tmp_path):
    """chain.parang_table: P of each active antenna from its own ANTENNA position (the sim's antennas
    are up to ~2.8 km apart), equal to parang_matrices(antenna_parallactic_angles + receptor angle)."""
    from alakazam.calibration import chain
    from alakazam.core import ms_io
    from alakazam.sim import simulate_ms

    ms = str(tmp_path / "p.ms")
    truth = simulate_ms(ms, n_ant=5, n_chan=(2,), duration_h=2.0, int_s=300, scan_len_s=600, noise=0.1,
                        dead_ant=False, receptor_angle=0.1)
    meta = ms_io.read_meta(ms)
    fld = next(f for f in meta.fields if f.name == "3C286")
    times = truth.times
    P = chain.parang_table(meta, fld, times, next(iter(meta.spws.values())))
    act = np.asarray(meta.active_ants)
    q = parang.antenna_parallactic_angles(times, fld.ra, fld.dec, meta.ant_positions[act], meta.observatory)
    np.testing.assert_allclose(P, parang.parang_matrices(q + 0.1, "linear"), atol=1e-15)
    np.testing.assert_allclose(q, truth.parang_ant["3C286"], atol=1e-12)
    assert np.ptp(q - q[:, :1], axis=1).max() > 1e-5           # the antennas' angles differ


def _pos_ring(n, dist=2e3):
    xyz = _vla()
    return xyz, np.array([_offset(xyz, dist * (1 + a), 0.7 * a) for a in range(n)])


def test_offset_anchors_only_where_there_are_times():
    """Two epochs a year apart and a stray row at TIME 0: the anchors are each data hour's two ends
    (8 here), not one per hour in between (~8760 x 0.7 ms x antennas: a review measured akapply 0.5 ->
    53 s for a year's gap, and a flagged TIME-0 row never finished); the angles equal those of each
    epoch computed alone."""
    xyz, pos = _pos_ring(4)
    a = T0 + np.arange(0.0, 5400.0, 300.0)            # 1.5 h: 2 or 3 hours of the grid
    b = a + 365 * 86400.0
    times = np.concatenate([[0.0], a, b])
    anchors = parang.offset_anchors(times)
    assert len(anchors) <= 2 + 2 * 6 and anchors[0] == 0.0
    parang._OFFSETS.clear()
    q = parang.antenna_parallactic_angles(times, RA_3C286, DEC_3C286, pos, xyz)
    parang._OFFSETS.clear()
    qa = parang.antenna_parallactic_angles(a, RA_3C286, DEC_3C286, pos, xyz)
    qb = parang.antenna_parallactic_angles(b, RA_3C286, DEC_3C286, pos, xyz)
    np.testing.assert_allclose(q[1:1 + len(a)], qa, rtol=0, atol=1e-12)
    np.testing.assert_allclose(q[1 + len(a):], qb, rtol=0, atol=1e-12)


def test_offsets_cache_eviction_and_repeats(monkeypatch):
    """The cache (parang._OFFSETS) never changes a result: emptied when a call would pass OFFSETS_MAX,
    it is emptied BEFORE that call computes what it reads (a review's KeyError: entries the call was
    about to read were dropped, and akapply stopped halfway through CORRECTED_DATA); and an anchor's
    offsets are computed once for the whole set of positions, each anchor after a full computation of
    casacore's nutation, so a call that finds part of its anchors cached equals a fresh one to 1e-12
    rad (casacore's conversions keep ~6e-14 of their history; the review saw 1e-11, float32 flips)."""
    xyz, pos = _pos_ring(5)
    t1 = T0 + np.arange(0.0, 3 * 3600.0, 600.0)
    t2 = T0 + np.arange(2 * 3600.0, 6 * 3600.0, 600.0)            # overlaps t1's last hour
    parang._OFFSETS.clear()
    fresh = parang.antenna_parallactic_angles(t2, RA_3C286, DEC_3C286, pos, xyz)
    parang._OFFSETS.clear()
    parang.antenna_parallactic_angles(t1, RA_3C286, DEC_3C286, pos, xyz)      # part of t2's anchors
    np.testing.assert_allclose(parang.antenna_parallactic_angles(t2, RA_3C286, DEC_3C286, pos, xyz),
                               fresh, rtol=0, atol=1e-12)
    monkeypatch.setattr(parang, "OFFSETS_MAX", 30)        # t1 holds 4 anchors x 5 positions = 20
    parang._OFFSETS.clear()
    parang.antenna_parallactic_angles(t1, RA_3C286, DEC_3C286, pos, xyz)
    got = parang.antenna_parallactic_angles(t2, RA_3C286, DEC_3C286, pos, xyz)   # 20 + 3 x 5 > 30
    np.testing.assert_allclose(got, fresh, rtol=0, atol=1e-12)
    assert sum(len(v) for v in parang._OFFSETS.values()) == len(parang.offset_anchors(t2))


def test_bad_antenna_position_is_named(tmp_path):
    """parang with an antenna whose ANTENNA POSITION is NaN, zero or in a local frame: an error before
    anything runs that names the ANTENNA row, the antenna, the MS and the way out (parang off)."""
    from casacore.tables import table

    from alakazam.config import solve_config_from_dict
    from alakazam.flow import run_solve
    from alakazam.sim import simulate_ms

    ms = str(tmp_path / "p.ms")
    simulate_ms(ms, n_ant=5, n_chan=(4,), duration_h=1.0, int_s=120, scan_len_s=600, noise=0.05, seed=3,
                dead_ant=False)
    for bad in ([np.nan] * 3, [0.0, 0.0, 0.0], [120.0, -35.0, 2.0]):
        with table(ms + "/ANTENNA", readonly=False, ack=False) as t:
            pos = t.getcol("POSITION")
            row = 2 if np.linalg.norm(pos[2]) > 0 else 3
            keep = pos[row].copy()
            pos[row] = bad
            t.putcol("POSITION", pos)
            name = t.getcol("NAME")[row]
        out = str(tmp_path / "c.h5")
        with pytest.raises(AlakazamError) as e:
            run_solve(solve_config_from_dict(dict(ms=ms, output=out, ref_ant="C00", apply_parang=True,
                                                  jones=["G"], field=["3C286"], quiet=True)))
        msg = str(e.value)
        assert f"ANTENNA row {row} ({name})" in msg and "POSITION" in msg
        assert "apply_parang (parang) false" in msg
        assert not os.path.exists(out)
        with table(ms + "/ANTENNA", readonly=False, ack=False) as t:
            pos = t.getcol("POSITION")
            pos[row] = keep
            t.putcol("POSITION", pos)


def test_zenith_depends_only_on_its_own_interval():
    """Convention (jones/parang.zenith_j2000): a time's zenith comes from the two anchors of its own
    ANCHOR_SPACING_S interval of a fixed grid, each converted once per process -- so any subset of
    times (a row chunk, a dask worker's part) gets the values of the whole set bit for bit, also
    after other epochs were converted in between, and a clear of the cache gives them again to
    casacore's history (~4e-15 rad measured)."""
    xyz = _vla()
    times = T0 + np.arange(-5 * 3600.0, 5 * 3600.0, 7.0)
    ra, dec = parang.zenith_j2000(times, xyz)
    parang.zenith_j2000(T0 + np.array([-9e5, 3e6]), xyz)        # other epochs in between
    for part in (slice(0, 1), slice(100, 137), slice(3000, None, 5)):
        r2, d2 = parang.zenith_j2000(times[part], xyz)
        np.testing.assert_array_equal(r2, ra[part])
        np.testing.assert_array_equal(d2, dec[part])
    assert len(parang.zenith_anchors(times[:1])) == 2           # one interval: its two ends
    parang._ZENITHS.clear()
    r3, d3 = parang.zenith_j2000(times, xyz)
    np.testing.assert_allclose(r3, ra, rtol=0, atol=1e-13)
    np.testing.assert_allclose(d3, dec, rtol=0, atol=1e-13)



def test_apparent_sidereal_time_matches_casacore_last():
    """parang.apparent_sidereal_time (the simulator's and akflag shadow's one sidereal time): casacore's
    LAST at the first time, the sidereal rate after -- within 1e-6 rad of casacore's LAST - longitude
    at every time of an 8 h track (a wrong rate or sign of the longitude is off by > 1e-3)."""
    from alakazam.measures_data import measures

    xyz = (-1601185.4, -5041977.5, 3554875.9)           # the VLA
    lon = float(np.arctan2(xyz[1], xyz[0]))
    times = 4.9e9 + np.linspace(0.0, 8 * 3600.0, 9)
    got = parang.apparent_sidereal_time(times, lon, xyz)
    me = measures()
    me.doframe(me.position("ITRF", *[f"{c}m" for c in xyz]))
    for t, g in zip(times, got):
        last = (me.measure(me.epoch("UTC", f"{t}s"), "LAST")["m0"]["value"] % 1.0) * 2 * np.pi
        d = (g + lon - last + np.pi) % (2 * np.pi) - np.pi
        assert abs(d) < 1e-6, (t, d)
