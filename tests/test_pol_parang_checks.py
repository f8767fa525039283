"""The parallactic angle and the polarisation terms (calibration/polparang.py; review 58f, linear feeds).

* KC, CP, D solved with apply_parang false on a polarised calibrator with alt-az mounts: refused before
  anything is read (ParameterError naming apply_parang / akcal parang, the steps and the field); not
  for an unpolarised calibrator (D on 3C147: its model is unchanged by the rotation) nor for
  equatorial mounts.
* akapply of KC/CP/D with parang false: the warning that Q and U stay in the feed frame; with parang
  true of a CP solved without it: the mismatch named; a D of an unpolarised calibrator solved without
  it: nothing.
* leakage_gauge 'absolute' refused on an unpolarised calibrator without parang: the error says both.
* CP on an unpolarised calibrator: the error names the cause (no polarised signal), not only minsnr.
* CP and D on ONE scan of the polarised calibrator (0.5 deg of parallactic angle): the warning with
  the range; the recipe (examples/full_polarization.yaml's shape, every scan) raises none of these.
"""

import logging
import shutil

import h5py
import pytest
from casacore.tables import table

from alakazam.calibration.apply import run_apply
from alakazam.config import apply_config_from_dict, solve_config_from_dict
from alakazam.errors import AlakazamError, ParameterError
from alakazam.flow import run_solve
from alakazam.io import hdf5
from alakazam.sim import simulate_ms

RECIPE = dict(jones=["K", "G", "G", "KC", "CP", "D"], field=["3C286"],
              time_interval=["scan", "inf", "int", "inf", "inf", "inf"],
              freq_interval=["full", "2MHz", "full", "full", "2MHz", "full"])
COVERAGE = "deg of parallactic angle"
FRAME = "stay in the feed frame"
SOLVED_WITHOUT = "solved without the parallactic angle"


def _solve(ms, out, **kw):
    d = dict(ms=ms, output=out, ref_ant="C00", apply_parang=True, quiet=True, min_bl_per_ant=3, **RECIPE)
    d.update(kw)
    return run_solve(solve_config_from_dict(d))


def _apply(ms, cal, keys, parang, field="TARGET"):
    return run_apply(apply_config_from_dict(dict(
        ms=ms, jones=list(keys), tables=[cal] * len(keys), output_col="CORRECTED_DATA", apply_parang=parang,
        target_field=field)))


def _messages(caplog, text):
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """8 antennas, 8 channels, 3 h of 10-minute scans, linear feeds, |d| ~ 0.05 (all corruptions)."""
    tmp = tmp_path_factory.mktemp("polparang")
    ms = str(tmp / "s.ms")
    simulate_ms(ms, feed="linear", n_ant=8, n_chan=(8,), int_s=120.0, scan_len_s=600.0, noise=0.02, seed=3)
    return ms, tmp


@pytest.fixture(scope="module")
def recipe(sim):
    """The recipe solved (parang, every scan, iterations 3, the absolute gauge), its warnings kept."""
    ms, tmp = sim
    cal = str(tmp / "recipe.h5")
    records = []

    class H(logging.Handler):
        def emit(self, r):
            records.append(r.getMessage())

    h = H(logging.WARNING)
    lg = logging.getLogger("alakazam")
    lg.addHandler(h)
    try:
        _solve(ms, cal, iterations=3, leakage_gauge="absolute")
    finally:
        lg.removeHandler(h)
    return cal, records


def _set_mount(ms, mount):
    with table(f"{ms}/ANTENNA", readonly=False, ack=False) as t:
        t.putcol("MOUNT", [mount] * t.nrows())


def test_solve_without_parang_refused_on_a_polarised_calibrator(sim, tmp_path):
    ms, _ = sim
    out = str(tmp_path / "c.h5")
    with pytest.raises(ParameterError) as e:
        _solve(ms, out, apply_parang=False)
    msg = str(e.value)
    assert "apply_parang" in msg and "parang=True" in msg
    for key in ("KC0", "CP0", "D0", "'3C286'", "ALT-AZ"):
        assert key in msg
    assert "K0" not in msg.replace("KC0", "")          # the gains need no parallactic angle
    import os
    assert not os.path.exists(out)                      # refused before anything ran
    # smodel: the same (the model never read)
    with pytest.raises(ParameterError, match="apply_parang"):
        _solve(ms, out, apply_parang=False, jones=["CP"], time_interval=["inf"], freq_interval=["2MHz"],
               smodel=[14.9, 0.6, 1.36, 0.0])
    # a V-only model does not rotate: not refused by this check
    _solve(ms, out, apply_parang=False, jones=["G", "KC"], time_interval=["inf", "inf"],
           freq_interval=["full", "full"], smodel=[14.9, 0.0, 0.0, 0.5])


def test_akcal_names_parang(sim, tmp_path):
    from alakazam.caltasks import akcal
    ms, _ = sim
    with pytest.raises(ParameterError, match=r"akcal parang=True"):
        akcal(vis=ms, caltable=str(tmp_path / "c.h5"), field="3C286", jones=["KC", "CP"],
              solint=["inf", "inf"], freqint=["full", "2MHz"], refant="C00", minblperant=3)


def test_d_on_an_unpolarised_calibrator_needs_no_parang_and_equatorial_mounts_pass(sim, tmp_path):
    ms, _ = sim
    out = str(tmp_path / "d.h5")
    _solve(ms, out, apply_parang=False, jones=["K", "G", "D"], field=["3C147"], smodel=[2.5],
           time_interval=["scan", "inf", "inf"], freq_interval=["full", "2MHz", "full"])
    (s,) = hdf5.read_term(out, "D0")
    assert s.attrs["apply_parang"] is False or s.attrs["apply_parang"] == 0
    assert s.attrs["model_polarisation"] == 0.0        # recorded for the apply's check
    eq = str(tmp_path / "eq.ms")
    shutil.copytree(ms, eq)
    _set_mount(eq, "EQUATORIAL")                        # the feeds do not turn: not refused
    _solve(eq, str(tmp_path / "eq.h5"), apply_parang=False, jones=["K", "G", "KC"],
           time_interval=["scan", "inf", "inf"], freq_interval=["full", "2MHz", "full"])
    shutil.rmtree(eq)


def test_apply_without_parang_warns_and_the_recipe_is_silent(sim, recipe, tmp_path, caplog):
    ms, _ = sim
    cal, records = recipe
    # the recipe: none of the new errors or warnings
    assert not [m for m in records if COVERAGE in m or FRAME in m or SOLVED_WITHOUT in m]
    ap = str(tmp_path / "a.ms")
    shutil.copytree(ms, ap)
    keys = ["K0", "G0", "G1", "KC0", "CP0", "D0"]
    caplog.set_level(logging.WARNING, logger="alakazam")
    _apply(ap, cal, keys, parang=True)
    assert not _messages(caplog, FRAME) and not _messages(caplog, SOLVED_WITHOUT)
    caplog.clear()
    _apply(ap, cal, keys, parang=False)
    (w,) = _messages(caplog, FRAME)
    assert "KC0, CP0, D0" in w and "Q and U" in w and "parang=True" in w
    caplog.clear()
    _apply(ap, cal, ["K0", "G0", "G1"], parang=False)       # a Stokes I recipe: no polarisation terms
    assert not _messages(caplog, FRAME)
    shutil.rmtree(ap)


def test_apply_with_parang_of_terms_solved_without_it(sim, recipe, tmp_path, caplog):
    ms, tmp = sim
    cal = str(tmp_path / "old.h5")
    shutil.copy(recipe[0], cal)
    with h5py.File(cal, "r+") as f:           # a CP of an older run solved without the parallactic angle

        def off(name, obj):
            if "apply_parang" in obj.attrs:
                obj.attrs["apply_parang"] = False
        f["CP0"].visititems(off)
    ap = str(tmp_path / "a.ms")
    shutil.copytree(ms, ap)
    caplog.set_level(logging.WARNING, logger="alakazam")
    _apply(ap, cal, ["K0", "G0", "G1", "KC0", "CP0", "D0"], parang=True)
    (w,) = _messages(caplog, SOLVED_WITHOUT)
    assert "CP0" in w and "KC0" not in w and "apply_parang: true" in w
    caplog.clear()
    # a D of the unpolarised 3C147 solved without parang, applied with it: right, no warning
    d = str(tmp_path / "d.h5")
    _solve(ms, d, apply_parang=False, jones=["K", "G", "D"], field=["3C147"], smodel=[2.5],
           time_interval=["scan", "inf", "inf"], freq_interval=["full", "2MHz", "full"])
    _apply(ap, d, ["K0", "G0", "D0"], parang=True, field="3C147")
    assert not _messages(caplog, SOLVED_WITHOUT)
    shutil.rmtree(ap)


def test_absolute_gauge_on_an_unpolarised_calibrator_without_parang_says_why(sim, tmp_path):
    ms, _ = sim
    with pytest.raises(ParameterError) as e:
        _solve(ms, str(tmp_path / "c.h5"), apply_parang=False, jones=["K", "G", "D"], field=["3C147"],
               smodel=[2.5], time_interval=["scan", "inf", "inf"], freq_interval=["full", "2MHz", "full"],
               leakage_gauge="absolute")
    msg = str(e.value)
    assert "leakage_gauge" in msg and "no polarised flux" in msg and "apply_parang is false" in msg


def test_cp_on_an_unpolarised_calibrator_names_the_cause(sim, tmp_path):
    ms, _ = sim
    with pytest.raises(AlakazamError) as e:
        _solve(ms, str(tmp_path / "c.h5"), jones=["K", "G", "KC", "CP"], field=["3C147"],
               time_interval=["scan", "inf", "inf", "inf"], freq_interval=["full", "2MHz", "full", "2MHz"])
    msg = str(e.value)
    assert "unpolarised" in msg and "Q = U = 0" in msg and "will not help" in msg


def test_one_scan_of_a_polarised_calibrator_warns_of_the_parallactic_angle_range(sim, recipe, tmp_path,
                                                                                   caplog):
    ms, _ = sim
    caplog.set_level(logging.WARNING, logger="alakazam")
    _solve(ms, str(tmp_path / "c.h5"), scan="1", iterations=3)
    (cp,) = [m for m in _messages(caplog, COVERAGE) if m.startswith("CP0 (CP)")]
    assert "spans only 0.5 deg of parallactic angle" in cp
    assert "more scans" in cp and "unpolarised calibrator" in cp and "p_f = 0.05" in cp
    (d,) = [m for m in caplog.records if m.getMessage().startswith("D0 (D) on 3C286: solved over the same")]
    # two scans an hour apart cover enough: no warning
    caplog.clear()
    _solve(ms, str(tmp_path / "c2.h5"), scan="1,7")
    assert not _messages(caplog, COVERAGE)
    # D alone on one scan, the rest pre-applied from the recipe: its own degeneracy
    _solve(ms, str(tmp_path / "d1.h5"), scan="1", jones=["D"], time_interval=["inf"], freq_interval=["full"],
           external_preapply=dict(tables=[recipe[0]] * 5, jones=["K0", "G0", "G1", "KC0", "CP0"]))
    (w,) = _messages(caplog, COVERAGE)
    assert w.startswith("D0 (D) on 3C286") and "exact degeneracy" in w


def test_yaml_preflight_refuses_before_the_first_block_runs(sim, tmp_path):
    from alakazam.caltasks.yamlrun import run_yaml

    ms, _ = sim
    y = tmp_path / "x.yaml"
    y.write_text(f"solve:\n  - ms: {ms}\n    output: {tmp_path / 'g.h5'}\n    jones: [G]\n"
                 f"    field: [3C286]\n"
                 f"    ref_ant: C00\n    min_bl_per_ant: 3\n"
                 f"  - ms: {ms}\n    output: {tmp_path / 'p.h5'}\n    jones: [KC, CP, D]\n"
                 f"    field: [3C286]\n"
                 f"    ref_ant: C00\n    min_bl_per_ant: 3\n    time_interval: [inf, inf, inf]\n"
                 f"    freq_interval: [full, 2MHz, full]\n")
    with pytest.raises(ParameterError) as e:
        run_yaml(str(y))
    assert "solve[1].apply_parang" in e.value.errors, e.value.errors
    assert not (tmp_path / "g.h5").exists()             # the first block never ran


UNPOLARISED = "has no cross-hand signal"


def test_kc_cp_on_an_unpolarised_model_warn_before_the_solve(sim, tmp_path, caplog):
    """KC / CP on a model without cross-hand signal (an unpolarised smodel for polarised 3C286: review
    58f, CP 3.5 deg off, stored unflagged, no word): a warning before the reads; not with the polarised
    model, nor with a V-only model on linear feeds (XY = U + iV: V is cross-hand signal)."""
    ms, _ = sim
    out = str(tmp_path / "u.h5")
    one = dict(jones=["CP"], time_interval=["inf"], freq_interval=["2MHz"])
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        try:
            _solve(ms, out, smodel=[14.9, 0.0, 0.0, 0.0], **one)
        except AlakazamError:
            pass                        # (the solve may flag everything: the warning came before)
    said = _messages(caplog, UNPOLARISED)
    assert len(said) == 1 and "CP0 (CP) on 3C286" in said[0] and "smodel" in said[0], said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        _solve(ms, str(tmp_path / "p.h5"), **one)                              # MODEL_DATA: polarised
        _solve(ms, str(tmp_path / "v.h5"), jones=["G", "KC"], time_interval=["inf", "inf"],
               freq_interval=["full", "full"], smodel=[14.9, 0.0, 0.0, 0.5])
    assert not _messages(caplog, UNPOLARISED)
