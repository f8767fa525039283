"""akflag with ``gaintable``: the data a mode sees are corrected on the fly exactly as akapply corrects
them (alakazam/flagging/preapply.py), so ``datacolumn='residual'`` is the calibrated residual.

* exact: clip on the pre-applied residual flags exactly the samples whose |akapply CORRECTED_DATA -
  MODEL_DATA| exceeds the threshold (K, G and parang; samples whose solution is flagged are flagged,
  as applymode='calflag');
* science: on a bright calibrator at a per-visibility SNR of ~1500 with a persistent RFI channel,
  AOFlagger on DATA flags a large part of the clean samples; on the calibrated residual it flags every
  RFI sample and <= 2% of the clean ones (issue 10's target);
* bad parameters: all reported before anything is written.
"""

import os
import shutil

import numpy as np
import pytest
from casacore.tables import table

from alakazam.errors import ParameterError
from alakazam.sim import simulate_ms


def cols(ms, *names):
    with table(ms, ack=False) as t:
        return [t.getcol(n) for n in names]


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    from alakazam.caltasks import akcal

    d = tmp_path_factory.mktemp("flag_pre")
    ms, cal = str(d / "s.ms"), str(d / "cal.h5")
    simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(8,), duration_h=0.5, int_s=60.0, scan_len_s=600.0,
                noise=0.05, seed=8, leakage=False, dead_ant=False, flag_rows=0.0)
    akcal(vis=ms, caltable=cal, jones=["K", "G"], solint=["inf", "int"], refant="C00", parang=True,
          minblperant=3)
    return ms, cal


def test_clip_on_preapplied_residual_equals_akapply(solved, tmp_path):
    from alakazam.caltasks import akapply, akflag
    from alakazam.io import hdf5

    src, cal0 = solved
    ms = str(tmp_path / "m.ms")
    shutil.copytree(src, ms)
    # flag one antenna's G solutions in one solution set (a field's scans): its samples there have no
    # valid solution (nothing to interpolate from within those scans) and must come out flagged
    cal = str(tmp_path / "cal.h5")
    shutil.copy(cal0, cal)
    sets = hdf5.read_term(cal, "G0")
    sets[0].flags[2] = True
    hdf5.write_term(cal, "G0", sets)
    akapply(vis=ms, gaintable=[cal, cal], jones=["K0", "G0"], parang=True, applymode="calonly")
    cor, model, flag0, ant1, ant2, tm = cols(ms, "CORRECTED_DATA", "MODEL_DATA", "FLAG", "ANTENNA1",
                                              "ANTENNA2", "TIME")
    res = np.abs(cor - model)
    thr = float(np.median(res))
    with table(ms + "::ANTENNA", ack=False) as t:
        c02 = list(t.getcol("NAME")).index("C02")
    nosol = ((ant1 == c02) | (ant2 == c02)) & (tm >= sets[0].time[0] - 30) & (tm <= sets[0].time[-1] + 30)
    with table(ms + "::FIELD", ack=False) as t:
        fname = list(t.getcol("NAME"))
    with table(ms, ack=False) as t:
        fid = t.getcol("FIELD_ID")
    nosol &= fid == fname.index(str(sets[0].attrs["field_name"]))
    assert nosol.any()
    out = akflag(vis=ms, mode="clip", datacolumn="residual", clipminmax=[0.0, thr], gaintable=[cal],
                 gainjones=["K0", "G0"], parang=True)
    flag, = cols(ms, "FLAG")
    expect = flag0 | (res > thr)
    expect[nosol] = True
    solved_rows = ~nosol
    # samples with a valid solution: exactly akapply's residual above the threshold
    np.testing.assert_array_equal(flag[solved_rows], expect[solved_rows])
    assert flag[nosol].all()
    assert out["no_solution"] == int((nosol[:, None, None] & ~flag0).sum())
    assert out["version"] == "akflag_1"


def test_aoflagger_on_calibrated_residual_of_bright_calibrator(tmp_path):
    """3C286 (14.9 Jy, 10% polarised) at 0.01 Jy noise, a persistent RFI channel, no leakage:
    AOFlagger on DATA flags much of the clean data (the source's own structure); on the calibrated
    residual (K, G per integration, bandpass, KC, CP, parang) it flags every RFI sample and <= 2% of the clean
    ones."""
    from alakazam.caltasks import akcal, akflag
    from alakazam.sim.simulate import load_truth

    ms, cal = str(tmp_path / "b.ms"), str(tmp_path / "b.h5")
    simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(32,), duration_h=0.5, int_s=60.0, scan_len_s=600.0,
                noise=0.01, seed=9, leakage=False, dead_ant=False, flag_rows=0.0, rfi_persistent=[11])
    akcal(vis=ms, caltable=cal, jones=["K", "G", "G", "KC", "CP"], solint=["inf", "int", "inf", "inf", "inf"],
          freqint=["full", "full", "1MHz", "full", "1MHz"], refant="C00", parang=True, minblperant=3,
          field="3C286")
    tr = load_truth(ms)
    assert list(tr.rfi_persistent[0]) == [11]
    with table(ms, ack=False) as t:
        on = t.getcol("FIELD_ID") == tr.field_names.index("3C286")
    rfi = np.zeros(32, bool)
    rfi[11] = True
    frac = {}
    chain = dict(datacolumn="residual", gaintable=[cal], gainjones=["K0", "G0", "G1", "KC0", "CP0"],
                 parang=True)
    for label, kw in (("data", {}), ("residual", chain)):
        c = str(tmp_path / f"{label}.ms")
        shutil.copytree(ms, c)
        akflag(vis=c, mode="aoflagger", field="3C286", **kw)
        flag, = cols(c, "FLAG")
        f = flag[on]
        frac[label] = (f[:, rfi].mean(), f[:, ~rfi].mean())
    print("aoflagger on 3C286 (RFI flagged, clean flagged):", frac)
    assert frac["residual"][0] >= 0.999
    assert frac["residual"][1] <= 0.02
    assert frac["data"][1] > 5 * frac["residual"][1]      # DATA alone: the source's structure is flagged


def test_bad_gain_parameters_all_reported(solved):
    from alakazam.caltasks import akflag

    ms, cal = solved
    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode="aoflagger", datacolumn="corrected", gaintable=[cal, "nope.h5"],
               gainjones=["K0", "G0"], interp=["sideways", "nearest"])
    err = str(e.value)
    assert "datacolumn" in err and "twice" in err
    assert "nope.h5" in err and "sideways" in err
    with pytest.raises(ParameterError, match="gainjones"):
        akflag(vis=ms, mode="aoflagger", datacolumn="residual", gaintable=[cal])
    with pytest.raises(ParameterError, match="gaintable"):
        akflag(vis=ms, mode="manual", gaintable=[cal], gainjones=["G0"])
    assert not os.path.exists(ms + ".flagversions")       # nothing saved, nothing written


def test_cli_and_yaml_take_the_gain_parameters(solved, tmp_path):
    """`alakazam flag --gaintable T --gainjones K0 G0` and a YAML flag block give the task's flags."""
    from alakazam.caltasks import akflag
    from alakazam.cli import main

    src, cal = solved
    res = {}
    for how in ("task", "cli", "yaml"):
        ms = str(tmp_path / f"{how}.ms")
        shutil.copytree(src, ms)
        kw = dict(mode="clip", datacolumn="residual", clipminmax=[0.0, 0.07])
        if how == "task":
            akflag(vis=ms, gaintable=[cal], gainjones=["K0", "G0"], parang=True, **kw)
        elif how == "cli":
            assert main(["flag", "--vis", ms, "--mode", "clip", "--datacolumn", "residual", "--clipminmax",
                         "0", "0.07", "--gaintable", cal, "--gainjones", "K0", "G0", "--parang", "true"]) == 0
        else:
            y = tmp_path / "f.yaml"
            y.write_text(f"flag:\n  - {{ms: {ms}, mode: clip, datacolumn: residual, clipminmax: [0, 0.07], "
                         f"gaintable: [{cal}], gainjones: [K0, G0], parang: true}}\n")
            assert main(["flag", str(y)]) == 0
        res[how], = cols(ms, "FLAG")
    assert 0.05 < res["task"].mean() < 0.95
    np.testing.assert_array_equal(res["cli"], res["task"])
    np.testing.assert_array_equal(res["yaml"], res["task"])


def test_pieces_of_few_baselines_give_the_same_flags(solved, tmp_path):
    """A memory limit that splits each scan into pieces of a few baselines (the pre-apply's working
    copies are counted) gives the same flags as one piece per scan."""
    from alakazam.caltasks import akflag

    src, cal = solved
    res = []
    for lim in (0.0, 2e-5):
        ms = str(tmp_path / f"m{lim}.ms")
        shutil.copytree(src, ms)
        akflag(vis=ms, mode="aoflagger", datacolumn="residual", gaintable=[cal], gainjones=["K0", "G0"],
               parang=True, memory_limit_gb=lim)
        res.append(cols(ms, "FLAG")[0])
    np.testing.assert_array_equal(res[0], res[1])
