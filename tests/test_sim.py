"""Simulated MS: table layout, geometry, parallactic angle, DATA = J_p M J_q^H (independent einsum),
MODEL_DATA, corruptions, truth file and CASA readability.

All references are computed here with numpy / casacore directly (never with alakazam.jones or the
MS reader).
"""

import importlib.util
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from casacore.measures import measures
from casacore.tables import table

from alakazam.sim import load_truth, simulate_main, simulate_ms


def _cols(ms, *names, where=None):
    with table(ms, ack=False) as t:
        q = t.query(where) if where else t
        out = [q.getcol(n) for n in names]
    return out


def _vla():
    me = measures()
    v = me.measure(me.observatory("VLA"), "ITRF")
    r, lat, lon = v["m2"]["value"], v["m1"]["value"], v["m0"]["value"]
    return me, np.array([r * np.cos(lat) * np.cos(lon), r * np.cos(lat) * np.sin(lon), r * np.sin(lat)]), lat


def _brightness(stokes, feed):
    stokes_i, Q, U, V = stokes
    if feed == "linear":
        return np.array([[stokes_i + Q, U + 1j * V], [U - 1j * V, stokes_i - Q]])
    return np.array([[stokes_i + V, Q + 1j * U], [Q - 1j * U, stokes_i - V]])


def _rot(chi, feed):
    c, s = np.cos(chi), np.sin(chi)
    z = np.zeros_like(chi)
    if feed == "linear":
        return np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2).astype(complex)
    return np.stack([np.stack([np.exp(-1j * chi), z], -1), np.stack([z, np.exp(1j * chi)], -1)], -2)


def test_tables(sim_linear, sim_circular):
    ms, truth = sim_linear
    with table(ms + "::ANTENNA", ack=False) as t:
        names = list(t.getcol("NAME"))
        pos = t.getcol("POSITION")
    a1, a2, ddid, scan, tim, tc, itv, fld = _cols(ms, "ANTENNA1", "ANTENNA2", "DATA_DESC_ID", "SCAN_NUMBER",
                                                  "TIME", "TIME_CENTROID", "INTERVAL", "FIELD_ID")
    used = np.unique(np.concatenate([a1, a2]))
    assert len(names) == len(truth.ant_names) + 2 and 1 not in used       # extra antenna at id 1
    assert [names[i] for i in used] == truth.ant_names
    assert np.all(a1 < a2)                                                 # cross-correlations only
    assert np.all(np.diff(tim) >= 0) and scan.min() == 1
    np.testing.assert_array_equal(tc, tim)
    assert np.all(itv == np.diff(truth.times).min())
    # rows ordered by time, then all DDIDs, then baseline
    n_bl = len(truth.ant_names) * (len(truth.ant_names) - 1) // 2
    np.testing.assert_array_equal(ddid[: 2 * n_bl], np.repeat([0, 1], n_bl))
    with table(ms + "::DATA_DESCRIPTION", ack=False) as t:
        dd_spw = t.getcol("SPECTRAL_WINDOW_ID")
    np.testing.assert_array_equal(dd_spw, [1, 0])
    with table(ms + "::SPECTRAL_WINDOW", ack=False) as t:
        for s in range(t.nrows()):
            np.testing.assert_array_equal(t.getcell("CHAN_FREQ", s), truth.spw_freqs[s])
            assert 1.0e9 < truth.spw_freqs[s].mean() < 2.0e9
    assert [len(truth.spw_freqs[s]) for s in (0, 1)] == [32, 16]
    with table(ms, ack=False) as t:
        for d in (0, 1):
            r = int(np.nonzero(ddid == d)[0][0])
            assert t.getcell("DATA", r).shape == (len(truth.spw_freqs[dd_spw[d]]), 4)
    for path, codes, rec in ((ms, [9, 10, 11, 12], ["X", "Y"]), (sim_circular[0], [5, 6, 7, 8], ["R", "L"])):
        with table(path + "::POLARIZATION", ack=False) as t:
            assert list(t.getcell("CORR_TYPE", 0)) == codes
            # MS column shape [2, NUM_CORR] (Fortran) = numpy (NUM_CORR, 2) as python-casacore and
            # dask-ms (QuartiCal) read it: the receptor pair of each correlation
            assert t.getcell("CORR_PRODUCT", 0).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
        with table(path + "::FEED", ack=False) as t:
            assert list(t.getcell("POLARIZATION_TYPE", 0)) == rec
            assert t.getcell("RECEPTOR_ANGLE", 0)[0] == 0.0
    with table(ms + "::OBSERVATION", ack=False) as t:
        assert t.getcell("TELESCOPE_NAME", 0) == "VLA"
    with table(ms + "::FIELD", ack=False) as t:
        assert list(t.getcol("NAME")) == ["3C286", "3C147", "TARGET"]
        d = t.getcol("PHASE_DIR")[:, 0]
    np.testing.assert_allclose(np.degrees(d[0]), [202.784533, 30.509156], atol=1e-5)
    np.testing.assert_allclose(np.degrees(d[1]), [85.650575, 49.852008], atol=1e-5)
    assert set(fld) == {0, 1, 2}
    # weights: WEIGHT = 1 / SIGMA^2 = 1 / noise^2
    w, s = _cols(ms, "WEIGHT", "SIGMA")
    np.testing.assert_allclose(w, 1 / truth.noise ** 2, rtol=1e-6)
    np.testing.assert_allclose(s, truth.noise, rtol=1e-6)
    # active antennas within a few km of the VLA centre
    _, centre, _ = _vla()
    assert np.linalg.norm(pos[used] - centre, axis=1).max() < 4e3


def test_uvw_from_geometry(sim_linear):
    """UVW = baseline (ANTENNA1 - ANTENNA2: CASA's sign, which CASA's fixvis reproduces,
    tests/test_flag_parity.py) projected on the field direction, checked with the casacore ITRF
    direction of the source (w = (X1 - X2) . s).  The simulator ignores precession/nutation (a few
    0.1 deg for J2000 coordinates), hence the 1 % tolerance."""
    ms, truth = sim_linear
    me, centre, _ = _vla()
    with table(ms + "::ANTENNA", ack=False) as t:
        pos = t.getcol("POSITION")
    with table(ms + "::FIELD", ack=False) as t:
        dirs = t.getcol("PHASE_DIR")[:, 0]
    a1, a2, uvw, tim, fld = _cols(ms, "ANTENNA1", "ANTENNA2", "UVW", "TIME", "FIELD_ID")
    me.doframe(me.position("ITRF", *[f"{c}m" for c in centre]))
    for r in np.linspace(0, len(tim) - 1, 7).astype(int):
        me.doframe(me.epoch("UTC", f"{tim[r]}s"))
        ra, dec = dirs[fld[r]]
        v = me.measure(me.direction("J2000", f"{ra}rad", f"{dec}rad"), "ITRF")
        lon, lat = v["m0"]["value"], v["m1"]["value"]
        s_hat = np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
        b = pos[a1[r]] - pos[a2[r]]
        bl = np.linalg.norm(b)
        assert abs(uvw[r, 2] - b @ s_hat) < 0.01 * bl
        # v points to the north celestial pole's projection: v = b . (z - sin(dec) s) / cos(dec)
        north = (np.array([0, 0, 1.0]) - np.sin(lat) * s_hat) / np.cos(lat)
        assert abs(uvw[r, 1] - b @ north) < 0.01 * bl
        assert abs(np.linalg.norm(uvw[r]) - bl) < 1e-6 * bl


def test_parallactic_angle_truth():
    """Truth parang of 3C286 vs the spherical-trigonometry formula with the hour angle from casacore;
    negative before transit, positive after, and a sweep > 60 deg over the default run."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        tr = simulate_ms(d + "/p.ms", n_ant=3, n_chan=(2,), duration_h=3.0, int_s=600, scan_len_s=600,
                         noise=0.1, dead_ant=False)
    me, centre, lat = _vla()
    me.doframe(me.position("ITRF", *[f"{c}m" for c in centre]))
    ra, dec = np.radians(202.784533), np.radians(30.509156)
    q = tr.parang["3C286"]
    ha, dapp = [], []
    for t in tr.times:
        me.doframe(me.epoch("UTC", f"{t}s"))
        hd = me.measure(me.direction("J2000", f"{ra}rad", f"{dec}rad"), "HADEC")
        ha.append(np.angle(np.exp(1j * hd["m0"]["value"])))
        dapp.append(hd["m1"]["value"])
    ha, dapp = np.array(ha), np.array(dapp)
    # apparent (of date) declination; the remaining difference is the J2000 vs of-date north (precession)
    ref = np.arctan2(np.sin(ha), np.tan(lat) * np.cos(dapp) - np.sin(dapp) * np.cos(ha))
    np.testing.assert_allclose(np.angle(np.exp(1j * (q - ref))), 0, atol=np.radians(0.5))
    assert np.all(np.sign(q) == np.sign(ha))
    assert ha[0] < 0 < ha[-1]                        # 3C286 transits mid-run
    assert np.degrees(q.max() - q.min()) > 60


@pytest.mark.parametrize("feed,parang_in_data", [("linear", True), ("circular", True), ("linear", False)])
def test_noiseless_data_is_the_rime(tmp_path, feed, parang_in_data):
    ms = str(tmp_path / "n.ms")
    simulate_ms(ms, feed=feed, noise=0.0, n_ant=4, n_chan=(8, 4), duration_h=1.0, int_s=300, scan_len_s=600,
                dead_ant=False, flag_rows=0, apply_parang_in_data=parang_in_data, receptor_angle=0.2,
                descending=True)
    tr = load_truth(ms)
    with table(ms + "::DATA_DESCRIPTION", ack=False) as t:
        dd_spw = t.getcol("SPECTRAL_WINDOW_ID")
    with table(ms + "::ANTENNA", ack=False) as t:
        names = list(t.getcol("NAME"))
    data, model, a1, a2, tim, fld, ddid = _cols(ms, "DATA", "MODEL_DATA", "ANTENNA1", "ANTENNA2", "TIME",
                                                "FIELD_ID", "DATA_DESC_ID", where="DATA_DESC_ID==1")
    spw = int(dd_spw[1])
    f = tr.spw_freqs[spw]
    assert np.all(np.diff(tr.spw_freqs[1]) < 0)                           # descending SPW
    act = {n: i for i, n in enumerate(tr.ant_names)}
    i1 = np.array([act[names[a]] for a in a1])
    i2 = np.array([act[names[a]] for a in a2])
    it = np.searchsorted(tr.times, tim)
    fnames = np.array(tr.field_names)[fld]
    # each antenna's own parallactic angle (Truth.parang_ant; tests/test_parang.py checks it against
    # casacore's me.posangle at that antenna's position) plus the receptor angle 0.2

    def rot(i):
        chi = np.array([tr.parang_ant[n][k, a] for n, k, a in zip(fnames, it, i)]) + 0.2
        return _rot(chi if parang_in_data else np.zeros_like(chi), feed)             # (row, 2, 2)
    B = np.array([_brightness(tr.flux_true[n], feed) for n in fnames])               # (row, 2, 2)
    D = np.zeros((len(tr.ant_names), 2, 2), complex)
    D[:, 0, 0] = D[:, 1, 1] = 1
    D[:, 0, 1], D[:, 1, 0] = tr.leakage[:, 0], tr.leakage[:, 1]

    def jones(i):
        k = np.exp(-2j * np.pi * 1e-9 * tr.tau[i][:, None, :] * f[None, :, None])         # (row, chan, 2)
        g = tr.bandpass[spw][i] * tr.time_gain[i, it][:, None, :]
        kc = np.stack([np.exp(-2j * np.pi * 1e-9 * tr.kc_tau * f), np.ones_like(f)], -1)
        cp = np.array([1, np.exp(1j * tr.cp_phase)])
        d = k * g * kc[None] * cp
        diag = np.einsum("rcp,pq->rcpq", d, np.eye(2))
        return np.einsum("rcij,rjk,rkl->rcil", diag, D[i], rot(i))

    Jp, Jq = jones(i1), jones(i2)
    expect = np.einsum("rcij,rjk,rclk->rcil", Jp, B, Jq.conj()).reshape(data.shape)
    scale = np.abs(expect).max()
    np.testing.assert_allclose(data, expect, rtol=0, atol=1e-6 * scale)
    # MODEL_DATA: the unrotated model brightness (3C147 at its 1 Jy model flux, not the true 2.5 Jy)
    Bm = np.array([_brightness(tr.flux_model[n], feed) for n in fnames]).reshape(-1, 1, 4)
    np.testing.assert_allclose(model, np.broadcast_to(Bm, model.shape), atol=1e-6)
    assert tr.flux_model["3C147"][0] == 1.0 and tr.flux_true["3C147"][0] == 2.5


def test_noise_corruptions_and_truth_file(tmp_path):
    ms = str(tmp_path / "c.ms")
    sigma = 0.5
    truth = simulate_ms(ms, n_ant=4, n_chan=(16,), duration_h=1.0, int_s=120, scan_len_s=600, noise=sigma,
                        time_gains=False, bandpass=False, delays=False, leakage=False, crosshand=False,
                        rfi=True, flag_rows=0.05, weight_spectrum=True, seed=3)
    data, model, flag, frow, scan, a1, a2, ws = _cols(ms, "DATA", "MODEL_DATA", "FLAG", "FLAG_ROW",
                                                      "SCAN_NUMBER", "ANTENNA1", "ANTENNA2",
                                                      "WEIGHT_SPECTRUM")
    np.testing.assert_allclose(ws, 1 / sigma ** 2)
    assert frow.any() and not frow.all()
    # dead antenna: all its rows of one scan flagged, nothing else flagged in FLAG
    with table(ms + "::ANTENNA", ack=False) as t:
        dead_id = list(t.getcol("NAME")).index(truth.dead_ant)
    dead = ((a1 == dead_id) | (a2 == dead_id)) & (scan == truth.dead_scan)
    assert dead.any() and flag[dead].all() and not flag[~dead].any()
    # RFI: one channel with a strong unflagged spike
    good = ~dead
    med = np.median(np.abs(data[good]), axis=(0, 2))
    spike = int(np.argmax(med))
    assert np.abs(data[good][:, spike]).max() > 100 * np.median(med)
    # noise on the remaining channels: residual DATA - MODEL (model = unrotated, but an unpolarised
    # calibrator has P B P^H = B) has the requested sigma per real/imaginary part
    un = np.array(truth.field_names)
    fld, = _cols(ms, "FIELD_ID")
    sel = good & (un[fld] != "3C286")
    true_scale = np.array([truth.flux_true[n][0] / truth.flux_model[n][0] for n in un[fld[sel]]])
    res = data[sel] - model[sel] * true_scale[:, None, None]
    res = np.delete(res, spike, axis=1)
    n = res.size * 2
    est = np.sqrt(np.mean(np.concatenate([res.real.ravel(), res.imag.ravel()]) ** 2))
    assert abs(est / sigma - 1) < 5 / np.sqrt(2 * n)
    # truth file round trip
    back = load_truth(ms)
    for k, v in vars(truth).items():
        b = getattr(back, k)
        if isinstance(v, dict):
            assert set(v) == set(b), k
            for kk in v:
                np.testing.assert_array_equal(np.asarray(v[kk]), np.asarray(b[kk]))
        elif isinstance(v, np.ndarray):
            np.testing.assert_array_equal(v, b)
        else:
            assert v == b, k


def test_cli_entry(tmp_path):
    out = str(tmp_path / "cli.ms")
    tr = simulate_main([out, "--n-ant", "3", "--n-chan", "4", "--duration-h", "0.2", "--feed", "circular",
                        "--int-s", "120", "--no-dead-ant"])
    assert tr.feed == "circular" and len(tr.ant_names) == 3
    assert load_truth(out).spw_freqs[0].shape == (4,)


@pytest.mark.casa
@pytest.mark.skipif(importlib.util.find_spec("casatools") is None, reason="casatools not installed")
def test_casatools_reads_the_ms(sim_circular, tmp_path):
    ms, truth = sim_circular
    code = textwrap.dedent(f"""
        import casatools
        m = casatools.ms()
        assert m.open({ms!r})
        s = m.summary()
        m.close()
        md = casatools.msmetadata()
        md.open({ms!r})
        print(s["nfields"], s["numrecords"], md.nspw(), md.nantennas(), len(md.scannumbers()),
              " ".join(md.fieldnames()))
        md.close()
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    nf, nrec, nspw, nant, nscan, *fields = r.stdout.split()[-8:]
    with table(ms, ack=False) as t:
        assert int(nrec) == t.nrows()
    assert (int(nf), int(nspw), int(nant), int(nscan)) == (3, 2, len(truth.ant_names) + 2, len(truth.scans))
    assert fields == truth.field_names
