"""akfluxscale with an ``spw`` selection (review 54a): the transfer field's SPWs it does not select are
written as solved -- still on the flux scale of the field's model -- and were applied without a word
(3C147's SPW 2 at 1/sqrt(2.5) of its scaled gains: 3C147 1.0 Jy for a truth of 2.5, the target 29% low
there).  Convention (calibration/fluxscale.py ``partly_scaled``): akfluxscale warns when it leaves a
scaled field's SPWs unscaled, and so does every apply or pre-apply of such a table (once per task call);
a table scaled in all SPWs of the field is silent."""

import logging

import numpy as np
import pytest

from alakazam.calibration.fluxscale import partly_scaled, run_fluxscale
from alakazam.config import fluxscale_config_from_dict, solve_config_from_dict
from alakazam.flow import run_solve
from alakazam.io import hdf5
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def gains(tmp_path_factory):
    d = tmp_path_factory.mktemp("fsspw")
    ms = str(d / "s.ms")
    simulate_ms(ms, n_ant=5, n_chan=[4, 4], feed="circular", duration_h=1.0, int_s=120.0,
                scan_len_s=480.0, noise=0.02, seed=54, leakage=False)
    g = str(d / "g.h5")
    run_solve(solve_config_from_dict(dict(ms=ms, output=g, jones=["G"], field=["3C286", "3C147"],
                                          time_interval=["scan"], ref_ant="C00", quiet=True)))
    return d, ms, g


def _scale(d, g, name, spw, caplog):
    out = str(d / name)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_fluxscale(fluxscale_config_from_dict(dict(reference_table=g, reference_field=["3C286"],
                                                      transfer_field=["3C147"], output=out, jones_type="G0",
                                                      spw=spw)))
    return out, caplog.text


def _apply_warnings(ms, table, caplog):
    from alakazam.caltasks import akapply

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        akapply(vis=ms, gaintable=[table], jones=["G0"], field="TARGET")
    return caplog.text


def test_an_spw_subset_is_said_at_fluxscale_and_at_apply(gains, caplog):
    d, ms, g = gains
    part, said = _scale(d, g, "part.h5", "0", caplog)
    assert "scaled in SPW 0 but written unscaled in SPW 1 (not selected by spw='0')" in said
    sets = hdf5.read_term(part, "G0")
    assert partly_scaled(sets) == {"3C147": ([0], [1])}
    # the unselected SPW really is unscaled: 3C147's SPW 1 gains as solved, SPW 0's divided
    orig = {(s.field_name, s.spw, float(s.time[0])): s for s in hdf5.read_term(g, "G0")}
    for s in sets:
        if s.field_name == "3C147" and np.isfinite(s.jones).any():
            same = np.allclose(s.jones, orig[("3C147", s.spw, float(s.time[0]))].jones, equal_nan=True)
            assert same == (s.spw == 1)
    said = _apply_warnings(ms, part, caplog)
    assert "akfluxscale scaled 3C147's gains in SPW 0 but not in SPW 1" in said
    assert "spw='1'" in said


def test_a_table_scaled_in_every_spw_is_silent(gains, caplog):
    d, ms, g = gains
    full, said = _scale(d, g, "full.h5", "", caplog)
    assert "written unscaled" not in said
    assert partly_scaled(hdf5.read_term(full, "G0")) == {}
    # and the subset scaled first, the rest in place after: complete, silent
    part, _ = _scale(d, g, "inc.h5", "0", caplog)
    _, said = _scale(d, part, "inc.h5", "1", caplog)
    assert "written unscaled" not in said and partly_scaled(hdf5.read_term(part, "G0")) == {}
    assert "akfluxscale scaled" not in _apply_warnings(ms, part, caplog)
