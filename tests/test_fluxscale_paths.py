"""akfluxscale and the paths it is given (review session 33):

* the model flux comes from MODEL_DATA of the MS the solutions record (attr ``ms``).  A solve records
  the absolute path now; a table written before holds the path as typed, which was read relative to the
  current directory: run from elsewhere, the MS was "not readable", 1 Jy was assumed with a warning and
  exit 0 -- 3C147 came out at half its flux (its model here is 2 Jy) and keyed by '0' instead of its
  FIELD id 1.  A relative path is now looked for next to the table, then in the current directory; an
  MS that cannot be read is an error naming the paths tried (``vis=`` / YAML ``ms`` gives it);
* an existing ``fluxtable`` that is not the caltable lost every key fluxscale did not write (it became a
  copy of the caltable); only the keys written are replaced now, with a warning, as akcal does.
"""

import logging
import os

import h5py
import numpy as np
import pytest

from alakazam.errors import AlakazamError, ParameterError
from alakazam.io import hdf5
from alakazam.sim import simulate_ms

ARGS = dict(reference=["3C286"], transfer=["3C147"], jones="G0")


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """r.ms (5 antennas, SPWs of 8 and 4 channels) with 3C147's model at 2 Jy, and cal.h5 (G per scan on
    3C286 and 3C147), both solved from their directory with relative paths: (directory, flux from there)."""
    from casacore.tables import table

    from alakazam.caltasks import akcal, akfluxscale

    d = tmp_path_factory.mktemp("fs_paths")
    cwd = os.getcwd()
    os.chdir(d)
    try:
        simulate_ms("r.ms", n_ant=5, n_chan=(8, 4), int_s=120.0, scan_len_s=600.0, duration_h=1.5,
                    noise=0.05, seed=3, leakage=False)
        with table("r.ms", readonly=False, ack=False) as t:        # 3C147 (field 1): a 2 Jy model
            for dd in (0, 1):
                s = t.query(f"DATA_DESC_ID=={dd} && FIELD_ID==1")
                s.putcol("MODEL_DATA", 2 * s.getcol("MODEL_DATA"))
                s.close()
        akcal(vis="r.ms", caltable="cal.h5", field="3C286,3C147", jones=["G"], solint="scan", refant="C00",
              minblperant=3)
        res = akfluxscale(caltable="cal.h5", fluxtable="here.h5", **ARGS)
    finally:
        os.chdir(cwd)
    assert [k for k in res if k.isdigit()] == ["1"]
    return d, res["1"]["0"]["fluxd"][0]


def _fluxd(res):
    keys = [k for k in res if k.isdigit()]
    return keys, res[keys[0]]["0"]["fluxd"][0]


def test_solve_records_the_absolute_ms_path(solved):
    d, _ = solved
    assert hdf5.read_term(str(d / "cal.h5"), "G0")[0].attrs["ms"] == str(d / "r.ms")


def test_same_flux_and_key_from_another_directory(solved, monkeypatch):
    from alakazam.caltasks import akfluxscale

    d, flux = solved
    assert flux == pytest.approx(2.5, rel=0.05)            # 2 Jy model x 1.25 (the simulated truth)
    (d / "elsewhere").mkdir(exist_ok=True)
    monkeypatch.chdir(d / "elsewhere")
    keys, f = _fluxd(akfluxscale(caltable="../cal.h5", fluxtable="../there.h5", **ARGS))
    assert keys == ["1"] and f == pytest.approx(flux, rel=1e-12)


def test_old_table_with_relative_ms_path(solved, monkeypatch, tmp_path):
    """A table written before (attr ms 'r.ms', as typed): the MS next to the table is used from
    anywhere; moved away, the task fails naming the paths tried and writes nothing; vis= gives it."""
    from alakazam.caltasks import akfluxscale

    d, flux = solved
    sets = hdf5.read_term(str(d / "cal.h5"), "G0")
    for s in sets:
        s.attrs["ms"] = "r.ms"
    old = str(d / "old.h5")
    hdf5.write_term(old, "G0", sets)
    monkeypatch.chdir(tmp_path)
    keys, f = _fluxd(akfluxscale(caltable=old, fluxtable=str(tmp_path / "a.h5"), **ARGS))
    assert keys == ["1"] and f == pytest.approx(flux, rel=1e-12)

    moved = str(tmp_path / "moved.h5")
    hdf5.write_term(moved, "G0", sets)                     # no r.ms next to it nor here
    with pytest.raises(ParameterError) as e:
        akfluxscale(caltable=moved, fluxtable=str(tmp_path / "b.h5"), **ARGS)
    msg = str(e.value)
    assert "vis:" in msg and "'r.ms'" in msg and str(tmp_path / "r.ms") in msg, msg
    assert not os.path.exists(tmp_path / "b.h5")
    keys, f = _fluxd(akfluxscale(caltable=moved, fluxtable=str(tmp_path / "b.h5"), vis=str(d / "r.ms"),
                                 **ARGS))
    assert keys == ["1"] and f == pytest.approx(flux, rel=1e-12)


def test_unreadable_model_is_an_error_not_1_jy(solved, tmp_path):
    """vis= an MS without MODEL_DATA (or a path that does not exist): an error, no 1 Jy assumed."""
    from casacore.tables import table

    from alakazam.caltasks import akfluxscale

    d, _ = solved
    with pytest.raises(ParameterError, match="vis: 'nowhere.ms' does not exist"):
        akfluxscale(caltable=str(d / "cal.h5"), fluxtable=str(tmp_path / "a.h5"), vis="nowhere.ms", **ARGS)
    nomodel = str(tmp_path / "nomodel.ms")
    with table(str(d / "r.ms"), ack=False) as t:
        t.copy(nomodel, deep=True)
    with table(nomodel, readonly=False, ack=False) as t:
        t.removecols(["MODEL_DATA"])
    with pytest.raises(ParameterError, match="vis: .*MODEL_DATA"):
        akfluxscale(caltable=str(d / "cal.h5"), fluxtable=str(tmp_path / "a.h5"), vis=nomodel, **ARGS)
    assert not os.path.exists(tmp_path / "a.h5")


def test_yaml_in_another_folder(solved, monkeypatch):
    """`alakazam run elsewhere/fs.yaml` (paths relative to the YAML), on the old-style table too."""
    from alakazam.cli import main

    d, flux = solved
    (d / "yaml").mkdir(exist_ok=True)
    sets = hdf5.read_term(str(d / "cal.h5"), "G0")
    for s in sets:
        s.attrs["ms"] = "r.ms"
    hdf5.write_term(str(d / "old_y.h5"), "G0", sets)
    for name, table in (("fs.yaml", "../cal.h5"), ("fs_old.yaml", "../old_y.h5")):
        (d / "yaml" / name).write_text(f"fluxscale:\n  - reference_table: {table}\n    output: ../{name}.h5\n"
                                       "    reference_field: [3C286]\n    transfer_field: [3C147]\n")
        monkeypatch.chdir(d)
        assert main(["run", f"yaml/{name}"]) == 0
        rows = {(r["field"], r["spw"]): r for r in hdf5.read_fluxscale(str(d / f"{name}.h5"))}
        assert rows[("3C147", 0)]["fluxd"] == pytest.approx(flux, rel=1e-12)


def test_existing_fluxtable_keeps_its_other_keys(solved, tmp_path, caplog):
    """fluxtable = another alakazam table (G0, G1): its G0 is replaced (a warning says so), G1 kept; the
    in-place case keeps every key; a YAML output does the same."""
    from alakazam.caltasks import akfluxscale
    from alakazam.calibration.fluxscale import run_fluxscale
    from alakazam.config import fluxscale_config_from_dict

    d, flux = solved
    sets = hdf5.read_term(str(d / "cal.h5"), "G0")
    mine = str(tmp_path / "mine.h5")
    hdf5.write_terms(mine, {"G0": [s for s in sets if s.field_name == "3C286"], "G1": sets})
    g1 = [s.jones for s in hdf5.read_term(mine, "G1")]
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        res = akfluxscale(caltable=str(d / "cal.h5"), fluxtable=mine, **ARGS)
    assert sorted(h5py.File(mine, "r").keys()) == ["G0", "G1", "fluxscale"]
    for a, b in zip(g1, hdf5.read_term(mine, "G1")):
        np.testing.assert_array_equal(a, b.jones)
    assert {s.field_name for s in hdf5.read_term(mine, "G0")} == {"3C286", "3C147"}   # cal.h5's, scaled
    warn = [r.getMessage() for r in caplog.records if "exists" in r.getMessage()]
    assert warn and "replacing its G0" in warn[0] and "kept: G1" in warn[0], warn
    assert res["1"]["0"]["fluxd"][0] == pytest.approx(flux, rel=1e-12)

    # YAML output into an existing table (the engine's path) and a re-run: the same
    run_fluxscale(fluxscale_config_from_dict(dict(reference_table=str(d / "cal.h5"), output=mine,
                                                  reference_field=["3C286"], transfer_field=["3C147"])))
    assert sorted(h5py.File(mine, "r").keys()) == ["G0", "G1", "fluxscale"]
    # in place: every key kept (as before)
    akfluxscale(caltable=mine, fluxtable=mine, reference=["3C286"], transfer=["3C147"], jones="G1")
    assert sorted(h5py.File(mine, "r").keys()) == ["G0", "G1", "fluxscale"]
    # a non-alakazam HDF5 file is still refused
    other = str(tmp_path / "other.h5")
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises((ParameterError, AlakazamError), match="not an alakazam HDF5"):
        akfluxscale(caltable=str(d / "cal.h5"), fluxtable=other, **ARGS)


def test_akexport_finds_the_ms_of_an_old_table_from_elsewhere(solved, monkeypatch, tmp_path):
    """akexport reads the recorded MS the same way (it said "the Measurement Set 'r.ms' of G0 is not
    found; give vis=" from another directory); a table with no MS beside it still gets that error --
    since session 41 a vis parameter error, before the Begin line."""
    from alakazam.caltasks import akexport

    d, _ = solved
    sets = hdf5.read_term(str(d / "cal.h5"), "G0")
    for s in sets:
        s.attrs["ms"] = "r.ms"
    hdf5.write_term(str(d / "old_x.h5"), "G0", sets)
    hdf5.write_term(str(tmp_path / "lost.h5"), "G0", sets)
    monkeypatch.chdir(tmp_path)
    akexport(caltable=str(d / "old_x.h5"), jones="G0", casatable="x.G")
    assert os.path.isdir(tmp_path / "x.G")
    with pytest.raises(AlakazamError, match=r"vis: is required: the Measurement Set the solutions record, "
                                            r"'r\.ms', is not found"):
        akexport(caltable="lost.h5", jones="G0", casatable="y.G")
