"""The YAML runner's one check before anything runs also checks each block's terms against the
correlations of its MS (a review, session 50: on an XX, YY MS a file with a flag block, a K/G solve and
a KC/CP/D solve wrote FLAG and the first table, then stopped at the third block -- naming KC only, and
not by its YAML path; the same for apply_parang on linear feeds and for an apply of D).

Convention (caltasks/yamlrun.py ``_correlation_errors``, calibration/parang_check.py): a solve's steps
solved from the cross hands (D, KC, CP), an apply of a term that mixes the cross hands (D), and
apply_parang on linear feeds without XY, YX are errors of the file, named by YAML path, every such
step at once, before any block runs: FLAG and the tables are untouched."""

import hashlib
import os
import sys
import textwrap

import numpy as np
import pytest
from casacore.tables import table

from caltasks.yamlrun import run_yaml
from alakazam.errors import ParameterError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_parang_two_corr import two_corr_ms  # noqa: E402


def _flag_sum(ms):
    with table(ms, ack=False) as t:
        return hashlib.md5(np.ascontiguousarray(t.getcol("FLAG")).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def xxyy(tmp_path_factory):
    d = tmp_path_factory.mktemp("xxyy")
    ms = str(d / "xxyy.ms")
    two_corr_ms(ms, "linear")
    return d, ms


def _run(d, ms, blocks):
    """Run a YAML file of a flag block on ``ms`` (which would write FLAG first) and then ``blocks``;
    the ParameterError's errors."""
    p = d / "r.yaml"
    p.write_text(f"flag:\n  - ms: {ms}\n    mode: manual\n    antenna: C01\n" + textwrap.dedent(blocks))
    with pytest.raises(ParameterError) as e:
        run_yaml(str(p))
    return e.value.errors


def test_cross_hand_steps_refused_before_anything_runs(xxyy):
    d, ms = xxyy
    before = _flag_sum(ms)
    errors = _run(d, ms, f"""
        solve:
          - ms: {ms}
            output: {d}/ok.h5
            ref_ant: C00
            jones: [G]
            field: [3C286]
            time_interval: [scan]
          - ms: {ms}
            output: {d}/pol.h5
            ref_ant: C00
            jones: [KC, CP, D]
            field: [3C286]
        """)
    msg = " ".join(errors["solve[1].jones"])
    for k in ("KC0 (KC, step 0)", "CP0 (CP, step 1)", "D0 (D, step 2)", "XX, YY"):
        assert k in msg, msg
    assert "solve[0].jones" not in errors
    assert _flag_sum(ms) == before
    assert not os.path.exists(d / "ok.h5") and not os.path.exists(d / "pol.h5")


def test_parang_and_applied_leakage_refused_before_anything_runs(xxyy, tmp_path):
    d, ms = xxyy
    before = _flag_sum(ms)
    # a D table from a 4-correlation MS of the same layout (the apply's table must exist to be read)
    from alakazam.config import solve_config_from_dict
    from alakazam.flow import run_solve
    from alakazam.sim import simulate_ms
    ms4 = str(tmp_path / "four.ms")
    simulate_ms(ms4, n_ant=5, n_ant_extra=0, n_chan=(4,), noise=0.01, duration_h=1.0, seed=2)
    dtab = str(tmp_path / "d.h5")
    run_solve(solve_config_from_dict(dict(ms=ms4, output=dtab, ref_ant="C00", jones=["G", "D"],
                                          field=["3C147"], time_interval=["scan", "inf"], quiet=True)))
    errors = _run(d, ms, f"""
        solve:
          - ms: {ms}
            output: {d}/p.h5
            ref_ant: C00
            apply_parang: true
            jones: [G]
            field: [3C286]
        apply:
          - ms: {ms}
            jones: [G0, D0]
            tables: [{dtab}, {dtab}]
        """)
    assert "XY, YX" in " ".join(errors["solve[0].apply_parang"])
    assert "D0" in " ".join(errors["apply[0].jones"])
    assert _flag_sum(ms) == before
    assert not os.path.exists(d / "p.h5")
