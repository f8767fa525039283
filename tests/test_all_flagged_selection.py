"""A solve step with no usable data says which selection left none and where its samples went
(alakazam/solve_diagnose.py; review 58b): ``spw='0:20~39'`` whose channels are all flagged in FLAG
ended with "every solution is flagged ... check FLAG, SIGMA ... MODEL_DATA", which never named spw; a
calibrator whose MODEL_DATA was never filled gave the same text."""

import logging
import re
import shutil

import numpy as np
import pytest
from casacore.tables import table

from alakazam.caltasks import akcal
from alakazam.errors import AlakazamError
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def base_ms(tmp_path_factory):
    ms = str(tmp_path_factory.mktemp("allflag") / "base.ms")
    simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(40,), duration_h=1.0, int_s=120.0, scan_len_s=600.0,
                seed=58)
    return ms


def _copy(base_ms, tmp_path, name, col, fn):
    ms = str(tmp_path / name)
    shutil.copytree(base_ms, ms)
    with table(ms, readonly=False, ack=False) as t:
        t.putcol(col, fn(t.getcol(col), t.getcol("FIELD_ID")))
    return ms


def _rfi_flags(v, fld):
    v = v.copy()
    v[:, 20:, :] = True             # channels 20~39 flagged in FLAG (RFI flags of an earlier akflag)
    return v


def test_an_all_flagged_selection_is_named_with_its_fractions(base_ms, tmp_path):
    ms = _copy(base_ms, tmp_path, "rfi.ms", "FLAG", _rfi_flags)
    with pytest.raises(AlakazamError, match="every solution is flagged.*no usable data") as e:
        akcal(vis=ms, caltable=str(tmp_path / "a.h5"), field="3C286", jones=["G"], solint="inf",
              spw="0:20~39", refant="C00")
    msg = str(e.value)
    assert "spw='0:20~39' (SPW 0 channels 20~39)" in msg, msg
    assert "100% flagged in FLAG as read" in msg and "0% usable" in msg, msg
    assert "every selected sample is flagged in FLAG" in msg, msg
    # the channels left unflagged solve
    akcal(vis=ms, caltable=str(tmp_path / "b.h5"), field="3C286", jones=["G"], solint="inf", spw="0:0~19",
          refant="C00")


def test_zero_weight_is_told_from_flags(base_ms, tmp_path):
    ms = _copy(base_ms, tmp_path, "w.ms", "SIGMA", lambda v, f: np.zeros_like(v))
    with pytest.raises(AlakazamError, match="every solution is flagged") as e:
        akcal(vis=ms, caltable=str(tmp_path / "w.h5"), field="3C286", jones=["G"], solint="inf",
              refant="C00")
    msg = str(e.value)
    assert "spw='' (SPW 0 all channels)" in msg, msg
    assert "100% of zero weight (SIGMA)" in msg and "every selected sample is flagged in FLAG" not in msg, msg


def _no_model_147(v, fld):
    v = v.copy()
    v[fld == 1] = 0                 # 3C147 (FIELD_ID 1): MODEL_DATA never filled
    return v


def test_a_calibrator_without_model_is_refused_before_the_solve(base_ms, tmp_path, monkeypatch):
    ms = _copy(base_ms, tmp_path, "m.ms", "MODEL_DATA", _no_model_147)
    from alakazam import flow

    def never(*a, **k):
        raise AssertionError("the solve read the data")

    monkeypatch.setattr(flow, "_run_step_major", never)
    monkeypatch.setattr(flow, "_run_field_major", never)
    with pytest.raises(AlakazamError, match="every solution is flagged") as e:
        akcal(vis=ms, caltable=str(tmp_path / "m.h5"), field="3C147", jones=["G"], solint="inf", refant="C00")
    msg = str(e.value)
    assert "MODEL_DATA is 0 (or NaN) for field 3C147 (spw 0) in every selected row" in msg, msg
    assert "setjy" in msg and "smodel=[I, Q, U, V]" in msg, msg


def test_a_calibrator_without_model_is_named_in_the_final_error(base_ms, tmp_path, monkeypatch):
    """Without the early check (a model 0 only in the rows the precheck did not sample would reach the
    solve): the final error names the field and the model's share of the samples."""
    ms = _copy(base_ms, tmp_path, "m2.ms", "MODEL_DATA", _no_model_147)
    from alakazam import solve_diagnose

    monkeypatch.setattr(solve_diagnose, "model_precheck", lambda *a, **k: None)
    with pytest.raises(AlakazamError, match="every solution is flagged.*no usable data") as e:
        akcal(vis=ms, caltable=str(tmp_path / "m2.h5"), field="3C147", jones=["G"], solint="inf",
              refant="C00")
    msg = str(e.value)
    # every sample FLAG leaves has no model (the simulated MS flags a dead antenna's)
    assert re.search(r"[1-9][0-9.]*% with MODEL_DATA 0 or NaN, 0% with DATA 0 or NaN, 0% flagged by the "
                     r"solve's own sample flags .*, 0% usable", msg), msg
    assert "MODEL_DATA is 0 (or NaN) for field 3C147 (spw 0)" in msg and "smodel" in msg, msg


def test_one_field_without_model_among_others_is_a_warning(base_ms, tmp_path, caplog):
    ms = _copy(base_ms, tmp_path, "m3.ms", "MODEL_DATA", _no_model_147)
    with caplog.at_level(logging.WARNING):
        akcal(vis=ms, caltable=str(tmp_path / "m3.h5"), field="3C286,3C147", jones=["G"], solint="inf",
              refant="C00")
    assert "MODEL_DATA is 0 (or NaN) for field 3C147 (spw 0)" in caplog.text, caplog.text
    # smodel replaces the model column: nothing to say
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        akcal(vis=ms, caltable=str(tmp_path / "m4.h5"), field="3C147", jones=["G"], solint="inf",
              refant="C00", smodel=[1.0])
    assert "MODEL_DATA is 0" not in caplog.text
