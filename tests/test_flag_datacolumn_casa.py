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
