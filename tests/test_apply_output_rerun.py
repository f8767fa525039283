"""A column an earlier apply created may be written again (core/columns.APPLY_OUTPUT; compat.py).

A review: a YAML file whose apply writes ``output_col: CAL_A`` could not be re-run, not even after a
Ctrl-C ("'CAL_A' already exists in the MS and is not CORRECTED_DATA"): the guard that keeps apply off
other columns did not know that this one was apply's own.  Apply now marks the columns it creates
(column keyword ALAKAZAM_APPLY_OUTPUT), and those may be written again, as CORRECTED_DATA may; any
other existing column is still refused, in the YAML preflight, in akapply and in run_apply.
"""

import shutil
import textwrap

import numpy as np
import pytest
from casacore.tables import table

from alakazam.calibration.apply import run_apply
from alakazam.cli import main
from alakazam.config import apply_config_from_dict, solve_config_from_dict
from alakazam.core import columns, ms_io
from alakazam.errors import ParameterError
from alakazam.flow import run_solve
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    d = tmp_path_factory.mktemp("rerun")
    ms, cal = str(d / "base.ms"), str(d / "cal.h5")
    simulate_ms(ms, n_ant=4, n_ant_extra=0, n_chan=(8,), duration_h=0.3, int_s=120.0, noise=0.05, seed=5,
                leakage=False, dead_ant=False, flag_rows=0.0)
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, jones=["G"], ref_ant="C00",
                                          time_interval="inf", quiet=True)))
    return ms, cal


def _apply(ms, cal, col, **kw):
    return run_apply(apply_config_from_dict(dict(ms=ms, jones=["G0"], tables=[cal], output_col=col,
                                                 quiet=True, **kw)))


def _get(ms, col):
    with table(ms, ack=False) as t:
        return t.getcol(col)


def test_apply_output_written_again_other_column_refused(solved, tmp_path):
    ms = str(tmp_path / "w.ms")
    shutil.copytree(solved[0], ms)
    cal = solved[1]
    assert _apply(ms, cal, "CAL_A")["created_column"]
    assert columns.apply_outputs(ms) == ["CAL_A"]
    first = _get(ms, "CAL_A")
    with table(ms, ack=False, readonly=False) as t:        # spoil it: the re-run must rewrite it
        t.putcol("CAL_A", np.zeros_like(first))
    res = _apply(ms, cal, "CAL_A")
    assert not res["created_column"]
    np.testing.assert_array_equal(_get(ms, "CAL_A"), first)
    # a column apply did not create is never written
    ms_io.ensure_column(ms, "USERCOL", like="DATA", init=True)
    before = _get(ms, "USERCOL")
    with pytest.raises(ParameterError, match="output_col"):
        _apply(ms, cal, "USERCOL")
    from alakazam.caltasks import akapply

    with pytest.raises(ParameterError, match="outputcolumn"):
        akapply(vis=ms, gaintable=[cal], jones=["G0"], outputcolumn="USERCOL")
    np.testing.assert_array_equal(_get(ms, "USERCOL"), before)


def test_yaml_rerun_with_custom_column(solved, tmp_path, capsys):
    ms = str(tmp_path / "y.ms")
    shutil.copytree(solved[0], ms)
    cfg = tmp_path / "r.yaml"
    cfg.write_text(textwrap.dedent(f"""
        apply:
          - {{ms: {ms}, jones: [G0], tables: [{solved[1]}], output_col: CAL_A}}
    """))
    assert main(["--quiet", "run", str(cfg)]) == 0
    assert main(["--quiet", "run", str(cfg)]) == 0, capsys.readouterr().err     # the re-run
    ms_io.ensure_column(ms, "USERCOL", like="DATA", init=True)
    cfg.write_text(cfg.read_text().replace("CAL_A", "USERCOL"))
    assert main(["--quiet", "run", str(cfg)]) == 2
    assert "apply[0].output_col" in capsys.readouterr().err


def test_a_copy_of_an_apply_column_is_not_ours(solved, tmp_path):
    """A user's backup of an apply-made column, made with python-casacore's usual idiom (the column
    description copied, keywords and all), is not written: the keyword names the column apply made."""
    from casacore.tables import makecoldesc

    ms = str(tmp_path / "c.ms")
    shutil.copytree(solved[0], ms)
    _apply(ms, solved[1], "CAL_A")
    with table(ms, ack=False, readonly=False) as t:
        t.addcols(makecoldesc("CAL_A_SAVED", t.getcoldesc("CAL_A")))
        t.putcol("CAL_A_SAVED", t.getcol("CAL_A"))
        assert t.getcolkeywords("CAL_A_SAVED")[columns.APPLY_OUTPUT] == "CAL_A"     # copied along
    saved = _get(ms, "CAL_A_SAVED")
    assert columns.apply_outputs(ms) == ["CAL_A"]
    with pytest.raises(ParameterError, match="output_col"):
        _apply(ms, solved[1], "CAL_A_SAVED")
    np.testing.assert_array_equal(_get(ms, "CAL_A_SAVED"), saved)


def test_missing_data_column_lists_apply_columns(solved, tmp_path):
    """The "data columns present" of a missing data column's error are the MS's visibility columns,
    an apply's CAL_A among them (it listed only DATA and *_DATA names)."""
    from alakazam.core.ms_io import check_columns
    from alakazam.errors import AlakazamError

    ms = str(tmp_path / "d.ms")
    shutil.copytree(solved[0], ms)
    _apply(ms, solved[1], "CAL_A")
    with pytest.raises(AlakazamError, match="data columns present: .*CAL_A"):
        check_columns(ms, ["NOPE"])
