"""akflag's counts include what a mode's extension flags outside the selection (flagging/engine.py).

tfcrop and rflag with ``extendflags`` (on by default) extend the flags of a correlation or channel
selection to the other correlations and channels of those samples; the counts (the log, the result,
``action='calculate'``) counted only the selected block.  A review: tfcrop ``correlation='XX'``
reported 483 newly flagged where FLAG gained 1932.  ``newly_flagged`` is now every sample the run
flags (what FLAG gains), and ``extended`` the part outside the selection.
"""

import shutil

import numpy as np
import pytest
from casacore.tables import table

from alakazam.caltasks import akflag
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def rfi_ms(tmp_path_factory):
    d = tmp_path_factory.mktemp("extcount")
    ms = str(d / "base.ms")
    simulate_ms(ms, n_ant=6, n_ant_extra=0, n_chan=(32,), duration_h=0.5, int_s=30.0, noise=0.05, seed=3,
                rfi=True, rfi_intermittent=True, dead_ant=False, leakage=False)
    return ms


def _flags(ms):
    with table(ms, ack=False) as t:
        return t.getcol("FLAG") | t.getcol("FLAG_ROW")[:, None, None]


@pytest.mark.parametrize("params", [dict(mode="tfcrop", correlation="XX"),
                                    dict(mode="tfcrop", spw="0:0~15"),
                                    dict(mode="rflag", correlation="YY"),
                                    dict(mode="tfcrop")])
def test_newly_flagged_is_what_flag_gains(rfi_ms, tmp_path, params):
    ms = str(tmp_path / "w.ms")
    shutil.copytree(rfi_ms, ms)
    before = _flags(ms)
    calc = akflag(vis=ms, action="calculate", **params) if params["mode"] == "tfcrop" else None
    np.testing.assert_array_equal(_flags(ms), before)           # calculate writes nothing
    res = akflag(vis=ms, **params)
    gained = int((_flags(ms) & ~before).sum())
    assert gained > 0
    assert res["newly_flagged"] == gained
    if calc is not None:
        assert calc["newly_flagged"] == gained                  # the preview tells what apply writes
    if "correlation" in params:     # extendpols: the other correlations of the flagged samples
        assert 0 < res["extended"] < gained
    else:                           # (the time / frequency growth stays inside the selection)
        assert res["extended"] == 0
