"""Solution store: SEED layout, dtypes/shapes/attrs, fuzzy keys, atomic writes, antenna remap."""

import os

import h5py
import numpy as np
import pytest

from alakazam.errors import AlakazamError
from alakazam.io import hdf5
from alakazam.io.hdf5 import SolutionSet


def _set(field="3C286", scan=1, spw=0, n_ant=4, n_f=3, n_t=2, delay=False, jt="G"):
    rng = np.random.default_rng(scan + spw)
    j = rng.normal(size=(n_ant, n_f, n_t, 2, 2)) + 1j * rng.normal(size=(n_ant, n_f, n_t, 2, 2))
    return SolutionSet(
        jones=j, flags=np.zeros((n_ant, n_f, n_t), bool), time=5e9 + np.arange(n_t) * 60.0,
        freq=1.4e9 + np.arange(n_f) * 1e6, delay=rng.normal(size=(n_ant, n_f, n_t, 2)) if delay else None,
        converged=np.ones((n_f, n_t), bool), n_iter=np.full((n_f, n_t), 7), cost=np.ones((n_f, n_t)),
        attrs=dict(jones_type=jt, field_name=field, scan_id=scan, spw=spw, n_ant=n_ant, field_ra=1.0,
                   field_dec=0.5, matrix_form="diagonal", ref_ant=0, ref_ant_name="C00",
                   ant_names=[f"C{i:02d}" for i in range(n_ant)], solint_s=60.0, freqint_hz=1e6,
                   phase_only=False, feed_basis="linear", solver_backend="numba", apply_parang=False,
                   ms="x.ms", preapply_chain=["K0"]))


def test_round_trip_layout(tmp_path):
    p = str(tmp_path / "cal.h5")
    hdf5.write_term(p, "K0", [_set(delay=True, jt="K")])
    hdf5.write_term(p, "G0", [_set(), _set(scan=2), _set(spw=1)])
    with h5py.File(p, "r") as f:
        assert f.attrs["format_version"] == hdf5.FORMAT_VERSION
        g = f["K0/field_3C286/scan_1/spw_0"]
        assert g["jones"].dtype == np.complex128 and g["jones"].shape == (4, 3, 2, 2, 2)
        assert g["delay"].dtype == np.float64 and g["delay"].shape == (4, 3, 2, 2)
        assert g["flags"].dtype == bool and g["flags"].shape == (4, 3, 2)
        assert g["time"].shape == (2,) and g["freq"].shape == (3,)
        st = g["solver_stats"]
        assert (st["converged"].dtype == bool and st["n_iter"].dtype == np.int32
                and st["cost"].dtype == np.float64)
        for a in ("jones_type", "field_name", "scan_id", "spw", "n_ant", "field_ra", "field_dec",
                  "matrix_form", "ref_ant", "ref_ant_name", "ant_names", "solint_s", "freqint_hz",
                  "phase_only", "feed_basis", "solver_backend", "apply_parang", "ms", "preapply_chain"):
            assert a in g.attrs
        assert "delay" not in f["G0/field_3C286/scan_1/spw_0"]
    back = hdf5.read_term(p, "G0")
    assert len(back) == 3
    orig = _set()
    b = [s for s in back if s.scan_id == 1 and s.spw == 0][0]
    np.testing.assert_array_equal(b.jones, orig.jones)
    assert b.ant_names == orig.ant_names and b.attrs["preapply_chain"] == ["K0"]
    assert b.attrs["phase_only"] is False and b.attrs["n_ant"] == 4


def test_keys_and_fuzzy(tmp_path):
    p = str(tmp_path / "cal.h5")
    hdf5.write_term(p, "G1", [_set()])
    hdf5.write_term(p, "K0", [_set(jt="K", delay=True)])
    hdf5.write_term(p, "G0", [_set()])
    assert hdf5.list_keys(p) == ["K0", "G0", "G1"]
    assert hdf5.resolve_key(p, "k0") == "K0" and hdf5.resolve_key(p, "K") == "K0"
    with pytest.raises(AlakazamError, match="ambiguous"):
        hdf5.resolve_key(p, "G")
    with pytest.raises(AlakazamError, match="available: K0, G0, G1"):
        hdf5.resolve_key(p, "D0")


def test_append_keeps_terms_and_crash_leaves_file_intact(tmp_path, monkeypatch):
    p = str(tmp_path / "cal.h5")
    hdf5.write_term(p, "K0", [_set(jt="K", delay=True)])
    before = open(p, "rb").read()
    real = hdf5._write_sets

    def crash(f, key, sets):
        real(f, key, sets[:1])
        raise KeyboardInterrupt

    monkeypatch.setattr(hdf5, "_write_sets", crash)
    with pytest.raises(KeyboardInterrupt):
        hdf5.write_term(p, "G0", [_set(), _set(scan=2)])
    assert open(p, "rb").read() == before
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp")] == []
    monkeypatch.setattr(hdf5, "_write_sets", real)
    hdf5.write_term(p, "G0", [_set()])
    assert hdf5.list_keys(p) == ["K0", "G0"]
    np.testing.assert_array_equal(hdf5.read_term(p, "K0")[0].jones, _set(jt="K", delay=True).jones)


def test_validation_and_errors(tmp_path):
    p = str(tmp_path / "cal.h5")
    s = _set()
    s.flags = np.zeros((4, 3, 5), bool)
    with pytest.raises(AlakazamError, match="flags has shape"):
        hdf5.write_term(p, "G0", [s])
    assert not os.path.exists(p)
    with pytest.raises(AlakazamError, match="does not exist"):
        hdf5.list_keys(str(tmp_path / "nope.h5"))
    with h5py.File(str(tmp_path / "other.h5"), "w") as f:
        f["x"] = 1
    with pytest.raises(AlakazamError, match="not an alakazam"):
        hdf5.list_keys(str(tmp_path / "other.h5"))


def test_fluxscale_group_and_remap(tmp_path):
    p = str(tmp_path / "cal.h5")
    hdf5.write_term(p, "G0", [_set()])
    hdf5.write_fluxscale(p, [dict(field="3C147", spw=0, scale_p=2.5, scale_q=2.4, scatter_p=0.01,
                                  scatter_q=0.02)])
    with h5py.File(p, "r") as f:
        a = f["fluxscale/field_3C147/spw_0"].attrs
        assert a["scale_p"] == 2.5 and a["scatter_q"] == 0.02
    rows = hdf5.read_fluxscale(p)
    assert rows == [dict(field="3C147", spw=0, scale_p=2.5, scale_q=2.4, scatter_p=0.01, scatter_q=0.02)]
    s = _set()
    j, f = hdf5.remap_antennas(s, ["C03", "C99", "C00"])
    np.testing.assert_array_equal(j[0], s.jones[3])
    np.testing.assert_array_equal(j[2], s.jones[0])
    assert f[1].all() and np.isnan(j[1]).all()
