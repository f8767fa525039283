"""apply_parang on an MS with only the parallel hands (alakazam/calibration/parang_check.py).

Linear feeds: the model's Stokes U is carried by XY/YX, so a 2-correlation (XX, YY) MS cannot be rotated
by the parallactic angle; solve and apply refuse it before anything is written, naming the missing
correlations.  Circular feeds (RR, LL) are unaffected by the rotation in their parallel hands and pass.
simulate_ms writes 4 correlations; :func:`two_corr_ms` rewrites a small one to the parallel hands.
"""

import numpy as np
import pytest

from alakazam.calibration.apply import run_apply
from alakazam.config import apply_config_from_dict, solve_config_from_dict
from alakazam.core import ms_io
from alakazam.errors import AlakazamError
from alakazam.flow import run_solve
from alakazam.io import hdf5
from alakazam.sim import simulate_ms


def two_corr_ms(path, feed):
    """A small simulated MS rewritten to its two parallel-hand correlations."""
    from casacore.tables import makearrcoldesc, maketabdesc, table

    truth = simulate_ms(path, feed=feed, n_ant=5, n_ant_extra=0, n_chan=(4,), noise=0.01, duration_h=1.0,
                        seed=2, delays=False, bandpass=False, leakage=False, crosshand=False, dead_ant=False,
                        flag_rows=0.0)
    with table(path, readonly=False, ack=False) as t:
        for c in ("DATA", "MODEL_DATA", "FLAG", "WEIGHT", "SIGMA"):
            v = np.ascontiguousarray(t.getcol(c)[..., [0, 3]])
            vt = t.getcoldesc(c)["valueType"]
            t.removecols(c)
            t.addcols(maketabdesc(makearrcoldesc(c, v.flat[0], ndim=v.ndim - 1, shape=list(v.shape[1:]),
                                                 valuetype=vt)), {})
            t.putcol(c, v)
    codes = {"linear": [9, 12], "circular": [5, 8]}[feed]
    with table(path + "::POLARIZATION", readonly=False, ack=False) as t:
        t.putcell("NUM_CORR", 0, 2)
        t.putcell("CORR_TYPE", 0, np.array(codes))
        t.putcell("CORR_PRODUCT", 0, np.array([[0, 1], [0, 1]]))
    return truth


def test_linear_parallel_hands_only_refuse_parang(tmp_path):
    ms = str(tmp_path / "xxyy.ms")
    truth = two_corr_ms(ms, "linear")
    assert ms_io.read_meta(ms).spws[0].corr_types == ["XX", "YY"]
    cal = tmp_path / "cal.h5"
    solve = dict(ms=ms, output=str(cal), ref_ant="C00", jones=["G"], field=["3C286"], time_interval="scan",
                 apply_parang=True, quiet=True)
    with pytest.raises(AlakazamError, match=r"apply_parang.*XX, YY \(missing XY, YX\).*Stokes U"):
        run_solve(solve_config_from_dict(solve))
    assert not cal.exists()
    # without the rotation: an unpolarised calibrator solves normally on the two correlations
    solve.update(apply_parang=False, field=["3C147"], time_interval="60s")     # one integration each
    run_solve(solve_config_from_dict(solve))
    (g,) = [s for s in hdf5.read_term(str(cal), "G0")][:1]
    amp = np.abs(np.stack([g.jones[..., 0, 0], g.jones[..., 1, 1]], -1))[:, 0, 0]    # (n_ant, 2)
    it = int(np.argmin(np.abs(truth.times - g.time[0])))
    # 3C147's model is 1 Jy for a 2.5 Jy source: |g| = sqrt(2.5) |g_true|
    np.testing.assert_allclose(amp, np.sqrt(2.5) * np.abs(truth.time_gain[:, it]), rtol=0.01)
    cols = ms_io.read_meta(ms).columns
    with pytest.raises(AlakazamError, match=r"apply_parang.*missing XY, YX"):
        run_apply(apply_config_from_dict(dict(ms=ms, jones=["G0"], tables=[str(cal)], apply_parang=True)))
    assert ms_io.read_meta(ms).columns == cols and "CORRECTED_DATA" not in cols


def test_circular_parallel_hands_allow_parang(tmp_path):
    ms = str(tmp_path / "rrll.ms")
    two_corr_ms(ms, "circular")
    cal = str(tmp_path / "cal.h5")
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant="C00", jones=["G"], field=["3C286"],
                                          time_interval="scan", apply_parang=True, quiet=True)))
    assert hdf5.list_keys(cal) == ["G0"]
