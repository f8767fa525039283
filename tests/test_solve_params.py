"""akcal's CASA parameters combine ('scan') and smodel against CASA's documented semantics
(core/combine.py, solvers/smodel.py)."""

import shutil

import numpy as np
import pytest
from casacore.tables import table

from alakazam.caltasks import akcal
from alakazam.errors import AlakazamError, ParameterError
from alakazam.io import hdf5
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("solveparams")
    ms = str(d / "s.ms")
    truth = simulate_ms(ms, feed="linear", n_ant=5, n_ant_extra=0, n_chan=(4,), duration_h=1.5, int_s=60,
                        scan_len_s=300, noise=0.05, seed=11, leakage=False, dead_ant=False, flag_rows=0.0,
                        delays=False, bandpass=False)
    return ms, truth


def _scan_starts(ms, field_id=0):
    with table(ms, ack=False) as t:
        q = t.query(f"FIELD_ID=={field_id}")
        sc, tm = q.getcol("SCAN_NUMBER"), q.getcol("TIME")
    return {int(s): (float(tm[sc == s].min()), float(tm[sc == s].max())) for s in np.unique(sc)}


def test_combine_scan_one_solution_over_scans_within_solint(sim, tmp_path):
    ms, _ = sim
    starts = _scan_starts(ms)                      # 3C286 = field 0
    scans = sorted(starts, key=lambda s: starts[s][0])
    assert len(scans) >= 4
    t_first = starts[scans[0]][0]
    solint = 2400.0
    cell = {s: int((starts[s][0] - t_first) // solint) for s in scans}
    assert all(int((starts[s][1] - t_first) // solint) == cell[s] for s in scans)   # no scan straddles a bin
    n_cells = len(set(cell.values()))
    assert n_cells == 2
    cal = str(tmp_path / "c.h5")
    kw = dict(vis=ms, field="3C286", jones="G", refant="C00", minblperant=0)
    akcal(caltable=cal, solint=f"{solint:.0f}s", combine="scan", **kw)
    (s,) = hdf5.read_term(cal, "G0")
    assert s.scan_id == 0 and sorted(s.scans if hasattr(s, "scans") else s.attrs["scans"]) == sorted(scans)
    assert s.jones.shape[2] == n_cells and not s.flags.any()
    # without combine: one solution per scan (bins never cross scans)
    cal2 = str(tmp_path / "c2.h5")
    akcal(caltable=cal2, solint=f"{solint:.0f}s", **kw)
    per_scan = hdf5.read_term(cal2, "G0")
    assert sorted(x.scan_id for x in per_scan) == sorted(scans)
    # each combined solution = the solution over exactly its scans (solint inf on those scans)
    for c in range(n_cells):
        mine = [x for x in scans if cell[x] == c]
        cal3 = str(tmp_path / f"c3_{c}.h5")
        akcal(caltable=cal3, solint="inf", scan=",".join(map(str, mine)), **kw)
        (ref,) = hdf5.read_term(cal3, "G0")
        assert np.allclose(s.jones[:, :, c], ref.jones[:, :, 0], rtol=0, atol=1e-7)
        assert np.isclose(s.time[c], ref.time[0], rtol=0, atol=1e-3)
    # solint 'scan' with combine 'scan' = one solution over all scans ('inf')
    cal4 = str(tmp_path / "c4.h5")
    akcal(caltable=cal4, solint="scan", combine="scan", **kw)
    (s4,) = hdf5.read_term(cal4, "G0")
    cal5 = str(tmp_path / "c5.h5")
    akcal(caltable=cal5, solint="inf", **kw)
    (s5,) = hdf5.read_term(cal5, "G0")
    assert s4.jones.shape[2] == 1 and np.allclose(s4.jones, s5.jones, rtol=0, atol=1e-7)


def test_combine_errors_name_the_parameter(sim, tmp_path):
    ms, _ = sim
    with pytest.raises(ParameterError, match=r"combine.*'fields' in 'scan,fields' is not allowed"):
        akcal(vis=ms, caltable=str(tmp_path / "x.h5"), jones="G", combine="scan,fields")


@pytest.mark.parametrize("parang", [False, True])
def test_smodel_reproduces_a_model_data_run(sim, tmp_path, parang):
    """3C286's MODEL_DATA holds its polarised Stokes (sky frame); smodel with the same Stokes on a copy
    of the MS without MODEL_DATA gives the same solutions (the model column is complex64: ~1e-7)."""
    ms, truth = sim
    stokes = list(truth.flux_model["3C286"])
    assert abs(stokes[1]) > 0.5                  # polarised: with parang the rotation matters
    kw = dict(field="3C286", jones=["G", "G"], solint=["inf", "300s"], freqint=["1MHz", "full"], refant="C00",
              minblperant=0, parang=parang)
    cal1 = str(tmp_path / "model.h5")
    akcal(vis=ms, caltable=cal1, **kw)
    ms2 = str(tmp_path / "nomodel.ms")
    shutil.copytree(ms, ms2)
    with table(ms2, readonly=False, ack=False) as t:
        t.removecols(["MODEL_DATA"])
    with pytest.raises(AlakazamError, match="MODEL_DATA"):
        akcal(vis=ms2, caltable=str(tmp_path / "fail.h5"), **kw)
    cal2 = str(tmp_path / "smodel.h5")
    akcal(vis=ms2, caltable=cal2, smodel=stokes, **kw)
    for key in ("G0", "G1"):
        a = hdf5.read_term(cal1, key)
        b = hdf5.read_term(cal2, key)
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert np.array_equal(x.flags, y.flags)
            ok = ~x.flags
            assert np.allclose(x.jones[ok], y.jones[ok], rtol=0, atol=2e-6)
    # a wrong model (unpolarised) changes the per-pol gains with parang: the test can fail
    if parang:
        cal3 = str(tmp_path / "wrong.h5")
        akcal(vis=ms2, caltable=cal3, smodel=[stokes[0]], **kw)
        a = hdf5.read_term(cal1, "G1")
        c = hdf5.read_term(cal3, "G1")
        assert max(np.nanmax(np.abs(x.jones - y.jones)) for x, y in zip(a, c)) > 1e-3


def test_smodel_bad_value(sim, tmp_path):
    ms, _ = sim
    with pytest.raises(ParameterError, match=r"smodel.*must be \[I, Q, U, V\]"):
        akcal(vis=ms, caltable=str(tmp_path / "x.h5"), jones="G", smodel=[1.0, 0.0])
    with pytest.raises(ParameterError, match="smodel.*Stokes I must be > 0"):
        akcal(vis=ms, caltable=str(tmp_path / "x.h5"), jones="G", smodel=[0.0, 0, 0, 0])


def test_yaml_keys_reach_the_tasks(sim, tmp_path):
    from alakazam.caltasks.yamlrun import apply_params, solve_params
    from alakazam.config import apply_config_from_dict, solve_config_from_dict

    ms, _ = sim
    p = solve_params({"ms": ms, "output": "x.h5", "jones": ["G"], "combine": "scan",
                      "smodel": [2.0, 0, 0, 0]})
    assert p["combine"] == "scan" and p["smodel"] == [2.0, 0, 0, 0]
    cfg = solve_config_from_dict({"ms": ms, "output": "x.h5", "jones": ["G", "G"], "combine": ["scan", ""],
                                  "smodel": [2.0]})
    assert [s.combine for s in cfg.steps] == ["scan", ""] and cfg.smodel == [2.0, 0.0, 0.0, 0.0]
    q = apply_params({"ms": ms, "jones": ["G0"], "tables": ["x.h5"], "spwmap": [0, 0], "calwt": True,
                      "time_interp": ["linear,linear"]})
    assert q["spwmap"] == [0, 0] and q["calwt"] is True and q["interp"] == ["linear,linear"]
    acfg = apply_config_from_dict({"ms": ms, "jones": ["G0"], "tables": ["x.h5"], "spwmap": [0, 0],
                                   "calwt": True, "time_interp": ["linear,linear"]})
    t = acfg.terms[0]
    assert (t.spwmap, t.calwt, t.time_interp, t.freq_interp) == ([0, 0], True, "linear", "linear")


def test_smodel_polarised_refuses_d_before_cross_hand_terms(sim, tmp_path):
    """A D solved before KC/CP needs an unpolarised calibrator: with smodel the check uses smodel."""
    ms, truth = sim
    ms2 = str(tmp_path / "nomodel.ms")
    shutil.copytree(ms, ms2)
    with table(ms2, readonly=False, ack=False) as t:
        t.removecols(["MODEL_DATA"])
    with pytest.raises(AlakazamError, match="whose model is polarised"):
        akcal(vis=ms2, caltable=str(tmp_path / "x.h5"), field="3C286", jones=["G", "D", "KC"], refant="C00",
              smodel=list(truth.flux_model["3C286"]), parang=True)


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    """Constant gains (no delays, bandpass or drift), unpolarised 3C147 (model 1 Jy, true 2.5) and
    TARGET (model = truth, 0.7 Jy), little noise: the joint solutions are predictable."""
    d = tmp_path_factory.mktemp("combinejoint")
    ms = str(d / "f.ms")
    simulate_ms(ms, feed="linear", n_ant=5, n_ant_extra=0, n_chan=(4, 4), duration_h=1.0, int_s=60,
                scan_len_s=300, noise=1e-3, seed=3, leakage=False, dead_ant=False, flag_rows=0.0,
                delays=False, bandpass=False, time_gains=False)
    return ms


def _amp(cal, key, spw=0):
    (s,) = [x for x in hdf5.read_term(cal, key) if x.spw == spw]
    return s, np.abs(s.jones[:, 0, 0, [0, 1], [0, 1]])       # (n_ant, 2)


def test_combine_field_solves_the_fields_together(flat, tmp_path):
    ms = flat
    # rfi_threshold 0: the prediction needs the same samples on every baseline (a few samples flagged
    # by the RFI statistics would change each baseline's field mix by ~1%)
    kw = dict(vis=ms, jones="G", solint="inf", refant="C00", minblperant=0, spw="0", rfi_threshold=0.0)
    akcal(caltable=str(tmp_path / "t.h5"), field="TARGET", **kw)
    akcal(caltable=str(tmp_path / "c.h5"), field="3C147", **kw)
    akcal(caltable=str(tmp_path / "j.h5"), field="3C147,TARGET", combine="field", **kw)
    _, a_t = _amp(str(tmp_path / "t.h5"), "G0")
    _, a_c = _amp(str(tmp_path / "c.h5"), "G0")
    sj, a_j = _amp(str(tmp_path / "j.h5"), "G0")
    assert len(hdf5.read_term(str(tmp_path / "j.h5"), "G0")) == 1
    assert sj.field_name == "3C147+TARGET" and list(sj.attrs["combined_fields"]) == ["3C147", "TARGET"]
    assert np.allclose(a_c / a_t, np.sqrt(2.5), rtol=2e-3)          # solo: the 3C147 model is 1 Jy of 2.5
    # joint: the cell's averaged data / averaged model (core/averaging)
    #   = G x (n1 2.5 + n2 0.7) / (n1 + n2 0.7)
    with table(ms, ack=False) as t:
        f = t.query("DATA_DESC_ID==0 && ANTENNA1!=ANTENNA2").getcol("FIELD_ID")
    n1, n2 = int((f == 1).sum()), int((f == 2).sum())
    c = (2.5 * n1 + 0.7 * n2) / (n1 + 0.7 * n2)
    assert np.allclose(a_j / a_t, np.sqrt(c), rtol=2e-3)
    assert abs(np.sqrt(c) - 1) > 0.2 and abs(np.sqrt(c) - np.sqrt(2.5)) > 0.1   # distinct from both solos
    # apply picks the combined solutions for any field (nearest_time)
    from alakazam.calibration.apply import run_apply
    from alakazam.config import apply_config_from_dict
    res = run_apply(apply_config_from_dict(dict(ms=ms, jones=["G0"], tables=[str(tmp_path / "j.h5")],
                                                target_field=["TARGET"], spw="0")))
    assert res["rows"] > 0 and res["no_solution"] == 0


def test_combine_spw_one_solution_from_all_spws(flat, tmp_path):
    """SPW 1's data replaced by 1.21 x SPW 0's (model, flags, weights copied): the joint solution is the
    SPW-0 solution x sqrt((1 + 1.21) / 2) exactly, stored under both SPWs."""
    ms = str(tmp_path / "x.ms")
    shutil.copytree(flat, ms)
    with table(ms + "::DATA_DESCRIPTION", ack=False) as t:
        dd = list(t.getcol("SPECTRAL_WINDOW_ID"))        # the simulator's DDID != SPW id
    with table(ms, readonly=False, ack=False) as t:
        q0 = t.query(f"DATA_DESC_ID=={dd.index(0)}", sortlist="TIME,ANTENNA1,ANTENNA2")
        q1 = t.query(f"DATA_DESC_ID=={dd.index(1)}", sortlist="TIME,ANTENNA1,ANTENNA2")
        assert np.array_equal(q0.getcol("ANTENNA1"), q1.getcol("ANTENNA1"))
        rows1 = q1.rownumbers()
        for col, k in (("DATA", 1.21), ("MODEL_DATA", 1.0), ("FLAG", None), ("WEIGHT", None)):
            v = q0.getcol(col)
            for i, r in enumerate(rows1):
                t.putcell(col, int(r), (v[i] * k).astype(v.dtype) if k else v[i])
    kw = dict(vis=ms, field="3C147", jones="G", solint="inf", refant="C00", minblperant=0, rfi_threshold=0.0)
    akcal(caltable=str(tmp_path / "s0.h5"), spw="0", **kw)
    akcal(caltable=str(tmp_path / "j.h5"), combine="spw", **kw)
    s0, _ = _amp(str(tmp_path / "s0.h5"), "G0")
    sets = hdf5.read_term(str(tmp_path / "j.h5"), "G0")
    assert sorted(s.spw for s in sets) == [0, 1]
    assert np.array_equal(sets[0].jones, sets[1].jones, equal_nan=True)
    assert list(sets[0].attrs["combined_spws"]) == [0, 1]
    assert np.allclose(sets[0].jones, s0.jones * np.sqrt((1 + 1.21) / 2), rtol=1e-6, atol=1e-7)
    with pytest.raises(ParameterError, match=r"combine.*'spw' for K0 \(K\) is not supported"):
        akcal(vis=ms, caltable=str(tmp_path / "k.h5"), jones="K", combine="spw")
    with pytest.raises(ParameterError, match=r"combine.*needs freqint 'full'"):
        akcal(vis=ms, caltable=str(tmp_path / "k.h5"), jones="G", freqint="1MHz", combine="spw")


def test_combine_field_refused_on_dask_workers(flat, tmp_path):
    out = str(tmp_path / "w.h5")
    with pytest.raises(ParameterError, match=r"combine.*cannot run on dask workers"):
        akcal(vis=flat, caltable=out, jones="G", field="3C147,TARGET", combine="field", workers=1)
    import os
    assert not os.path.exists(out)


def test_external_preapply_interp_time_freq(sim, tmp_path):
    """akcal's gaintable pre-apply takes CASA's 'time,freq' interp too: a bandpass pre-applied with
    'nearest,linear' gives the same next step as 'nearest' when nothing is flagged."""
    ms, _ = sim
    bp = str(tmp_path / "bp.h5")
    akcal(vis=ms, caltable=bp, field="3C286", jones="G", freqint="1MHz", refant="C00", minblperant=0)
    out = []
    for k, interp in enumerate(["nearest", "nearest,linear"]):
        cal = str(tmp_path / f"g{k}.h5")
        akcal(vis=ms, caltable=cal, field="3C286", jones="G", solint="300s", refant="C00", minblperant=0,
              gaintable=[bp], gainjones=["G0"], interp=[interp])
        out.append(hdf5.read_term(cal, "G0"))
    for a, b in zip(*out):
        assert np.allclose(a.jones, b.jones, rtol=0, atol=1e-9, equal_nan=True)
    with pytest.raises(ParameterError, match="frequency interpolation 'spline'"):
        akcal(vis=ms, caltable=str(tmp_path / "x.h5"), field="3C286", jones="G", gaintable=[bp],
              gainjones=["G0"], interp=["nearest,spline"])
