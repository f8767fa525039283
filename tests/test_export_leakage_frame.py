"""akexport of a D solved BEFORE a CP (CASA's order: Df on an unpolarised calibrator, then Xf), applied
back by akapply by path: the same CORRECTED_DATA as the HDF5 tables, with D exported in CASA's frame
(the default; keyword AlakazamLeakageFrame 'casa', brought to ours by the CP applied with it) and in ours
(crossphase='none'; 'alakazam', with the keys it was solved after in AlakazamPreapplyChain, so that the
CP solved after it brings it to the final frame as from HDF5 -- a review: 1.1e-3 of max |V| apart
without the recorded chain)."""

import shutil

import numpy as np
import pytest
from alakazam.caltasks import akapply, akexport
from casacore.tables import table

from alakazam.config import solve_config_from_dict
from alakazam.flow import run_solve
from alakazam.io import casatable
from alakazam.sim import simulate_ms

KEYS = ["K0", "G0", "G1", "KC0", "D0", "CP0"]


@pytest.fixture(scope="module")
def casa_order(tmp_path_factory):
    d = tmp_path_factory.mktemp("lframe")
    ms, cal = str(d / "s.ms"), str(d / "c.h5")
    simulate_ms(ms, feed="linear", n_ant=5, n_chan=(8,), duration_h=1.5, noise=0.02, seed=11, dead_ant=False,
                flag_rows=0.0)
    run_solve(solve_config_from_dict(dict(
        ms=ms, output=cal, ref_ant="C00", apply_parang=True, jones=["K", "G", "G", "KC", "D", "CP"],
        field=[["3C286", "3C147"], ["3C286"], ["3C286", "3C147"], ["3C286"], ["3C147"], ["3C286"]],
        time_interval=["scan", "inf", "scan", "inf", "inf", "inf"],
        freq_interval=["full", "1MHz", "full", "full", "full", "1MHz"], min_bl_per_ant=3, quiet=True)))
    tabs = {}
    for k in KEYS:
        tabs[k] = str(d / f"{k}.tb")
        akexport(caltable=cal, jones=k, casatable=tabs[k])
    tabs["D0none"] = str(d / "D0none.tb")
    akexport(caltable=cal, jones="D0", casatable=tabs["D0none"], crossphase="none")
    return ms, cal, tabs, d


def _corrected(ms, d, name, gaintable):
    m = str(d / f"{name}.ms")
    shutil.rmtree(m, ignore_errors=True)
    shutil.copytree(ms, m)
    akapply(vis=m, field="3C286,3C147", gaintable=gaintable, jones=KEYS,
            interp=["nearest", "nearest", "linear", "nearest", "nearest", "nearest"], parang=True)
    with table(m, ack=False) as t:
        return t.getcol("CORRECTED_DATA")


def test_d_before_cp_exported_either_frame_applies_as_hdf5(casa_order):
    ms, cal, tabs, d = casa_order
    with table(tabs["D0none"], ack=False) as t:
        assert t.getkeyword(casatable.LEAKAGE_FRAME_KEYWORD) == "alakazam"
        chain = t.getkeyword(casatable.PREAPPLY_CHAIN_KEYWORD).split(",")
    assert "CP0" not in chain and "G0" in chain            # D was solved before CP0
    ref = _corrected(ms, d, "h5", [cal] * 6)
    for name, d_tab in (("casa", tabs["D0"]), ("none", tabs["D0none"])):
        got = _corrected(ms, d, name, [tabs[k] for k in KEYS[:4]] + [d_tab, tabs["CP0"]])
        scale = np.nanmax(np.abs(ref))
        assert np.nanmax(np.abs(got - ref)) < 1e-5 * scale, (name, np.nanmax(np.abs(got - ref)) / scale)
