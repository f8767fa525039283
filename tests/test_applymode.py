"""CASA applymode in apply (alakazam/calibration/applymode.py): calflag, calonly, trial, flagonly,
and no bridging of a flagged solution cell from another scan.

The MS has one antenna whose DATA is noise only in scan 4 (unflagged); G per scan on 3C286 flags it
there.  Its scan-4 data then have a flagged solution: the other 3C286 scans' valid solutions must not
be used for it (nearest would take scan 1's, linear would interpolate scans 1 and 7)."""

import os
import shutil

import numpy as np
import pytest
from casacore.tables import table

from alakazam.calibration.apply import run_apply
from alakazam.config import apply_config_from_dict, solve_config_from_dict
from alakazam.errors import ParameterError
from alakazam.flow import run_solve
from alakazam.io import hdf5
from alakazam.sim import simulate_ms

N_CHAN = 8


@pytest.fixture(scope="module")
def dead(tmp_path_factory):
    d = tmp_path_factory.mktemp("applymode")
    ms = str(d / "dead.ms")
    truth = simulate_ms(ms, feed="linear", n_ant=6, n_chan=(N_CHAN,), duration_h=1.5, int_s=60, noise=0.05,
                        seed=43, leakage=False, dead_ant=False, flag_rows=0.0, dead_antenna_scan=(1, 4))
    cal = str(d / "g.h5")
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant="C00", jones="G", field=["3C286"],
                                          time_interval="scan")))
    sets = {s.scan_id: s for s in hdf5.read_term(cal, "G0")}
    assert sorted(sets) == [1, 4, 7]
    assert sets[4].flags[1].all() and not np.delete(sets[4].flags, 1, axis=0).any()
    assert not sets[1].flags.any() and not sets[7].flags.any()
    return ms, cal, truth


def _copy(dead, tmp_path):
    ms = str(tmp_path / "m.ms")
    shutil.copytree(dead[0], ms)
    return ms


def _cols(ms, *cols):
    with table(ms, ack=False) as t:
        q = t.query("FIELD_ID==0")
        return [q.getcol(c) if c in q.colnames() else None for c in cols]


def _dead_rows(ms, truth):
    with table(ms + "::ANTENNA", ack=False) as t:
        dead_id = list(t.getcol("NAME")).index(truth.noise_ant)
    a1, a2, sc = _cols(ms, "ANTENNA1", "ANTENNA2", "SCAN_NUMBER")
    return ((a1 == dead_id) | (a2 == dead_id)) & (sc == truth.noise_scan)


def _apply(ms, cal, mode, interp="nearest"):
    return run_apply(apply_config_from_dict(dict(ms=ms, jones=["G0"], tables=[cal], target_field=["3C286"],
                                                 time_interp=[interp], applymode=mode)))


@pytest.mark.parametrize("interp", ["nearest", "linear"])
def test_calflag_flags_the_dead_scan_and_does_not_bridge(dead, tmp_path, interp):
    ms = _copy(dead, tmp_path)
    truth = dead[2]
    res = _apply(ms, dead[1], "calflag", interp)
    rows = _dead_rows(ms, truth)
    n_dead = int(rows.sum()) * N_CHAN * 4
    assert n_dead == 5 * 10 * N_CHAN * 4
    assert res["applymode"] == "calflag" and res["flag_backup"] == "akapply_1"
    assert os.path.exists(ms + ".flagversions/flags.akapply_1/table.dat")
    assert res["flagged_by_solution"] == n_dead
    assert res["flagged_by_term"] == {"G0/3C286": n_dead}
    flag, data, cor = _cols(ms, "FLAG", "DATA", "CORRECTED_DATA")
    assert flag[rows].all() and not flag[~rows].any()
    # everything else corrected (the calibrated 3C286 is I = 14.9 Jy in XX and YY, about)
    assert np.abs(np.median(cor[~rows][:, :, 0].real) - truth.flux_true["3C286"][0]) < 1.0
    assert not np.allclose(cor[~rows], data[~rows])


def test_calonly_leaves_dead_scan_uncorrected_and_unflagged(dead, tmp_path, caplog):
    ms = _copy(dead, tmp_path)
    with caplog.at_level("WARNING", logger="alakazam"):
        res = _apply(ms, dead[1], "calonly")
    rows = _dead_rows(ms, dead[2])
    flag, data, cor = _cols(ms, "FLAG", "DATA", "CORRECTED_DATA")
    assert res["flag_backup"] is None and not os.path.exists(ms + ".flagversions")
    assert not flag.any()
    np.testing.assert_array_equal(cor[rows], data[rows])           # uncorrected, never NaN
    assert res["no_solution"] == int(rows.sum()) * N_CHAN * 4
    assert res["flagged_by_term"] == {"G0/3C286": int(rows.sum()) * N_CHAN * 4}
    # the warning gives the fraction, per field, and the remedy (review 58b: one line with a bare count
    # was missed, and every field's Stokes I came out 22% low)
    pct = 100.0 * res["no_solution"] / res["unflagged"]
    said = [r.getMessage() for r in caplog.records if "UNCORRECTED" in r.getMessage()]
    assert len(said) == 1, said
    assert f"({pct:.1f}%: 3C286 {pct:.1f}%)" in said[0]
    assert "applymode='calflag'" in said[0] and "CORRECTED_DATA" in said[0]


def test_trial_writes_nothing_and_counts(dead, tmp_path, caplog):
    ms = _copy(dead, tmp_path)
    flag0, = _cols(ms, "FLAG")
    with caplog.at_level("INFO", logger="alakazam"):
        res = _apply(ms, dead[1], "trial")
    # its line reads as a sentence (it said "... and are would be flagged", a review)
    said = [r.getMessage() for r in caplog.records if "have a flagged solution" in r.getMessage()]
    assert said and all("and would be flagged (trial: nothing written)" in m for m in said), said
    rows = _dead_rows(ms, dead[2])
    flag, cor = _cols(ms, "FLAG", "CORRECTED_DATA")
    assert cor is None and res["output_col"] is None and res["created_column"] is False
    np.testing.assert_array_equal(flag, flag0)
    assert res["flag_backup"] is None and not os.path.exists(ms + ".flagversions")
    assert res["flagged_by_solution"] == int(rows.sum()) * N_CHAN * 4


def test_flagonly_writes_flags_not_data(dead, tmp_path):
    ms = _copy(dead, tmp_path)
    res = _apply(ms, dead[1], "flagonly")
    rows = _dead_rows(ms, dead[2])
    flag, cor = _cols(ms, "FLAG", "CORRECTED_DATA")
    assert cor is None
    assert flag[rows].all() and not flag[~rows].any()
    assert res["flag_backup"] == "akapply_1"


def test_applymode_yaml_and_task_mapping(tmp_path):
    base = dict(ms="x.ms", jones=["G0"], tables=["g.h5"])
    assert apply_config_from_dict(dict(base, applymode="trial")).applymode == "trial"
    c = apply_config_from_dict(dict(base, applymode="flagonly"))
    assert c.propagate_flags is True
    assert apply_config_from_dict(dict(base, propagate_flags=True)).applymode == ""
    with pytest.raises(ParameterError, match="applymode"):
        apply_config_from_dict(dict(base, applymode="calfleg"))
    with pytest.raises(ParameterError, match="contradicts"):
        apply_config_from_dict(dict(base, applymode="calonly", propagate_flags=True))
    from alakazam.caltasks.yamlrun import apply_params
    assert apply_params({"ms": "x.ms", "jones": ["G0"], "tables": ["g.h5"], "applymode": "trial"})[
        "applymode"] == "trial"
    assert apply_params({"ms": "x.ms", "jones": ["G0"], "tables": ["g.h5"], "propagate_flags": True})[
        "applymode"] == "calflag"
    from alakazam.caltasks import akapply
    p = {q.name: q for q in akapply.spec.params}["applymode"]
    assert set(p.allowed) == {"calflag", "calflagstrict", "calonly", "trial", "flagonly", "flagonlystrict"}
