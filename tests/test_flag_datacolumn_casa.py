"""akflag's datacolumn names are CASA flagdata's (review 54f): 'residual' is CORRECTED_DATA - MODEL_DATA,
'residual_data' DATA - MODEL_DATA, and 'corrected_residual' stays an alias of 'residual'.  Until session 54
alakazam's 'residual' was DATA - MODEL_DATA, so a CASA script clipped another column (1,365 + 32,046 of
its samples flagged differently), silently.  With a gaintable (DATA corrected on the fly) 'residual' is
the corrected DATA - MODEL_DATA and 'residual_data' is refused."""

import shutil

import numpy as np
import pytest
from casacore.tables import makecoldesc, table

from alakazam.caltasks import akflag
from alakazam.errors import ParameterError
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def with_corrected(tmp_path_factory):
    d = tmp_path_factory.mktemp("dcol")
    ms = str(d / "c.ms")
    simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(8,), duration_h=0.5, int_s=120.0, noise=0.3, seed=54,
                leakage=False, dead_ant=False, flag_rows=0)
    bare = str(d / "bare.ms")
    shutil.copytree(ms, bare)
    with table(ms, readonly=False, ack=False) as t:
        t.addcols(makecoldesc("CORRECTED_DATA", t.getcoldesc("DATA")))
        rng = np.random.default_rng(1)
        data = t.getcol("DATA")
        t.putcol("CORRECTED_DATA", (data * (1 + 0.3 * rng.standard_normal(data.shape))).astype(data.dtype))
    return d, ms, bare


def _clip(src, dest, column):
    shutil.copytree(src, dest)
    with table(dest, ack=False) as t:
        ref = np.abs(t.getcol(column) - t.getcol("MODEL_DATA"))
    thr = float(np.median(ref))
    akflag(vis=dest, mode="clip", datacolumn={"CORRECTED_DATA": "residual", "DATA": "residual_data"}[column],
           clipminmax=[0.0, thr])
    with table(dest, ack=False) as t:
        got = t.getcol("FLAG")
    np.testing.assert_array_equal(got, ref > thr)
    return got


def test_residual_is_corrected_minus_model_as_casa(with_corrected):
    d, ms, _ = with_corrected
    a = _clip(ms, str(d / "r.ms"), "CORRECTED_DATA")
    b = _clip(ms, str(d / "rd.ms"), "DATA")
    assert (a != b).any(), "the two residuals must differ on this MS"
    shutil.copytree(ms, d / "cr.ms")
    with table(ms, ack=False) as t:
        thr = float(np.median(np.abs(t.getcol("CORRECTED_DATA") - t.getcol("MODEL_DATA"))))
    akflag(vis=str(d / "cr.ms"), mode="clip", datacolumn="corrected_residual", clipminmax=[0.0, thr])
    with table(str(d / "cr.ms"), ack=False) as t:
        np.testing.assert_array_equal(t.getcol("FLAG"), a)


def test_residual_without_corrected_data_names_residual_data(with_corrected):
    d, _, bare = with_corrected
    with pytest.raises(ParameterError) as e:
        akflag(vis=bare, mode="clip", datacolumn="residual", clipminmax=[0.0, 1.0])
    said = str(e.value)
    assert "needs column(s) CORRECTED_DATA" in said and "'residual_data' is DATA - MODEL_DATA" in said


def test_clipzeros_is_zero_to_float_precision_as_casa(with_corrected):
    """CASA 6.7's clipzeros flags |V| below float32's epsilon (review 54f measured 1e-7, 1e-9j, 1e-20 and
    1e-30j flagged, 1e-6 not); akflag flagged exact zeros only."""
    d, ms, _ = with_corrected
    z = str(d / "z.ms")
    shutil.copytree(ms, z)
    vals = [1e-9, 1e-9j, 1e-7, 1e-20, 1e-30j, 1e-6, 0.0]
    with table(z, readonly=False, ack=False) as t:
        data = t.getcol("DATA")
        for k, v in enumerate(vals):
            data[k, 0, 0] = v
        t.putcol("DATA", data)
    akflag(vis=z, mode="clip", clipzeros=True)
    with table(z, ack=False) as t:
        f = t.getcol("FLAG")
    assert [bool(f[k, 0, 0]) for k in range(len(vals))] == [True, True, True, True, True, False, True]


@pytest.mark.parametrize("mode", ["manual", "quack", "unflag", "extend", "mad", "summary"])
def test_a_clip_prefix_outside_the_clip_modes_is_refused(with_corrected, mode):
    """Review 54f: manual correlation='ABS_XY' flagged XY in akflag and every correlation in CASA 6.7;
    a prefix belongs to clip expressions, and is refused with why in the other modes."""
    _, ms, _ = with_corrected
    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode=mode, correlation="ABS_XY")
    said = str(e.value)
    assert "'ABS_XY' is a clip expression" in said and "give them plainly" in said
    assert ("CASA's flagdata" in said) == (mode != "mad")       # (mad is no flagdata mode)
