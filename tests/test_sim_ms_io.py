"""Simulated MS written and read back; MS reader metadata, selections, chunking and errors."""

import importlib.util

import numpy as np
import pytest
from casacore.tables import table

from alakazam.core import ms_io
from alakazam.errors import AlakazamError
from alakazam.jones.parang import parallactic_angle, parang_matrices
from alakazam.sim import load_truth, simulate_ms


def test_layout_and_metadata(sim_linear, sim_circular):
    ms, truth = sim_linear
    meta = ms_io.read_meta(ms)
    assert meta.telescope_name == "VLA"
    assert len(meta.ant_names) == 8 and list(meta.active_ants) == [0, 2, 3, 4, 5, 6]
    assert meta.active_names == truth.ant_names and meta.ant_map[1] == -1
    assert {d: s.spw_id for d, s in meta.spws.items()} == {0: 1, 1: 0}         # DDID != SPW id
    assert [len(meta.spws[d].freqs) for d in (0, 1)] == [16, 32]
    assert meta.spws[0].corr_types == ["XX", "XY", "YX", "YY"] and meta.spws[0].feed_basis == "linear"
    assert ms_io.read_meta(sim_circular[0]).spws[0].corr_types == ["RR", "RL", "LR", "LL"]
    assert [f.name for f in meta.fields] == ["3C286", "3C147", "TARGET"]
    with table(ms, ack=False) as t:
        uvw = t.getcol("UVW")
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        w, s = t.getcol("WEIGHT"), t.getcol("SIGMA")
    pos = meta.ant_positions
    assert np.allclose(np.linalg.norm(uvw, axis=1), np.linalg.norm(pos[a2] - pos[a1], axis=1) * 0 +
                       np.linalg.norm(uvw, axis=1))
    # |uvw| equals the baseline length (rotation preserves length)
    assert np.allclose(np.linalg.norm(uvw, axis=1), np.linalg.norm(pos[a2] - pos[a1], axis=1), rtol=1e-6)
    np.testing.assert_allclose(w, 1 / s ** 2, rtol=1e-5)


def test_noiseless_data_equals_independent_rime(tmp_path):
    ms = str(tmp_path / "n.ms")
    truth = simulate_ms(ms, noise=0.0, n_ant=4, n_chan=(8,), duration_h=1, dead_ant=False, flag_rows=0)
    tr = load_truth(ms)
    np.testing.assert_array_equal(tr.tau, truth.tau)
    meta = ms_io.read_meta(ms)
    ch = ms_io.read_rows(ms, 0, [0], meta=meta)
    f = tr.spw_freqs[0]
    i_t = np.searchsorted(tr.times, ch.time)
    stokes_i, Q, U, V = tr.flux_true["3C286"]
    B = np.array([[stokes_i + Q, U + 1j * V], [U - 1j * V, stokes_i - Q]])
    d = np.zeros((len(tr.ant_names), 2, 2), complex)
    d[:, 0, 0] = d[:, 1, 1] = 1
    d[:, 0, 1], d[:, 1, 0] = tr.leakage[:, 0], tr.leakage[:, 1]
    k = np.exp(-2j * np.pi * tr.tau[:, None, :] * 1e-9 * f[None, :, None])   # (a, c, 2)
    g = k * tr.bandpass[0] * 1.0
    J = np.zeros((len(ch.time), 2, len(f), 2, 2), complex)
    for side, ant in enumerate((ch.ant1, ch.ant2)):
        diag = g[ant] * tr.time_gain[ant, i_t][:, None, :]
        diag[..., 0] *= np.exp(-2j * np.pi * tr.kc_tau * 1e-9 * f)
        diag[..., 1] *= np.exp(1j * tr.cp_phase)
        Jd = np.zeros(diag.shape + (2,), complex)
        Jd[..., 0, 0], Jd[..., 1, 1] = diag[..., 0], diag[..., 1]
        P = parang_matrices(tr.parang_ant["3C286"][i_t, ant], "linear")     # (row, 2, 2): the antenna's own
        J[:, side] = np.einsum("rcij,rjk,rkl->rcil", Jd, d[ant], P)
    expect = np.einsum("rcij,jk,rclk->rcil", J[:, 0], B, np.conj(J[:, 1])).reshape(len(ch.time), len(f), 4)
    np.testing.assert_allclose(ch.data, expect, rtol=2e-6, atol=2e-5)


def test_parallactic_angle_convention():
    from casacore.measures import measures

    me = measures()
    v = me.measure(me.observatory("VLA"), "ITRF")
    r, lat, lon = v["m2"]["value"], v["m1"]["value"], v["m0"]["value"]
    xyz = [r * np.cos(lat) * np.cos(lon), r * np.cos(lat) * np.sin(lon), r * np.sin(lat)]
    ra, dec = np.radians(202.78453), np.radians(30.509155)          # 3C286
    t = 60401 * 86400.0 + np.arange(0, 86400, 900.0)
    q = parallactic_angle(t, ra, dec, xyz)
    # sign: the parallactic angle rises through 0 at upper transit (east of north: negative
    # before transit, positive after); 3C286 transits 4 deg south of the VLA zenith
    me.doframe(me.position("ITRF", *[f"{c}m" for c in xyz]))
    ha = []
    for tt in t:
        me.doframe(me.epoch("UTC", f"{tt}s"))
        h = me.measure(me.direction("J2000", f"{ra}rad", f"{dec}rad"), "HADEC")["m0"]["value"]
        ha.append(np.angle(np.exp(1j * h)))
    ha = np.array(ha)
    near = np.abs(ha) < 0.5
    assert np.all(np.sign(q[near]) == np.sign(ha[near]))
    # P rotates Q + iU into (Q + iU) exp(-2 i chi) in both bases
    chi = 0.3
    for basis in ("linear", "circular"):
        Q, U = 0.4, 0.2
        B = (np.array([[1 + Q, U], [U, 1 - Q]]) if basis == "linear"
             else np.array([[1, Q + 1j * U], [Q - 1j * U, 1]]))
        P = parang_matrices(np.array(chi), basis)
        Bp = P @ B @ P.conj().T
        qu = (Bp[0, 0] - Bp[1, 1]) / 2 + 1j * Bp[0, 1].real if basis == "linear" else Bp[0, 1]
        np.testing.assert_allclose(qu, (Q + 1j * U) * np.exp(-2j * chi), atol=1e-12)


def test_reader_selection_chunks_and_errors(sim_linear, tmp_path):
    ms, truth = sim_linear
    meta = ms_io.read_meta(ms)
    assert ms_io.resolve_fields(meta, "3C*") == [0, 1] and ms_io.resolve_fields(meta, ["2"]) == [2]
    sel = ms_io.resolve_spw(meta, "0:2~5;10~11,1")
    assert list(sel[1]) == [2, 3, 4, 5, 10, 11] and len(sel[0]) == 16
    assert ms_io.resolve_scans(meta, "1~3,7") == [1, 2, 3, 7]
    assert ms_io.resolve_antenna(meta, "C02") == 1 and ms_io.resolve_antenna(meta, 3) == 2
    one = ms_io.read_rows(ms, 1, [0], scans=[1, 4], chans=sel[1], meta=meta)
    with table(ms, ack=False) as t:
        q = t.query("DATA_DESC_ID==1 AND FIELD_ID==0 AND SCAN_NUMBER IN [1,4]")
        ref = q.getcol("DATA")[:, sel[1]]
        fl = q.getcol("FLAG")[:, sel[1]] | q.getcol("FLAG_ROW")[:, None, None]
    np.testing.assert_array_equal(one.data, ref)
    np.testing.assert_array_equal(one.flag, fl)
    parts = list(ms_io.iter_chunks(ms, 1, [0], scans=[1, 4], chans=sel[1], max_rows=37, meta=meta))
    assert len(parts) > 1 and all(p.n_row <= 37 for p in parts)
    np.testing.assert_array_equal(np.concatenate([p.data for p in parts]), one.data)
    for bad, match in ((lambda: ms_io.read_meta(str(tmp_path / "nope.ms")), "does not exist"),
                       (lambda: ms_io.resolve_fields(meta, ["NOPE"]), "available: 3C286"),
                       (lambda: ms_io.resolve_antenna(meta, "C01"), "has no data"),
                       (lambda: ms_io.resolve_spw(meta, "0:40~50"), "outside SPW"),
                       (lambda: ms_io.resolve_scans(meta, "99"), "scan"),
                       (lambda: ms_io.check_columns(ms, ["NOPE_DATA"]), "NOPE_DATA")):
        with pytest.raises(AlakazamError, match=match):
            bad()


@pytest.mark.casa
@pytest.mark.skipif(importlib.util.find_spec("casatools") is None, reason="casatools not installed")
def test_casa_reads_the_simulated_ms(sim_linear):
    import casatools

    ms, truth = sim_linear
    m = casatools.ms()
    assert m.open(ms)
    summ = m.summary()
    m.close()
    assert summ["numrecords"] > 0
    assert summ["nfields"] == 3
    assert {summ[f"field_{i}"]["name"] for i in range(3)} == {"3C286", "3C147", "TARGET"}
    assert sum(1 for k in summ if k.startswith("scan_")) == len(truth.scans)
