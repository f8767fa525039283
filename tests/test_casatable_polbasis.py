"""CASA tables' PolBasis keyword (alakazam.io.casatable): CASA 6 writes 'unknown' in every table it makes
(K, G, B, KCROSS, Xf, Df, gencal) and akexport writes it for K, G and B, so such a table says nothing
about the feeds -- the MS's basis is taken.  It was read as linear: akapply refused CASA's own and
alakazam's exported K / G tables on every circular-feed MS ("solved with linear feeds but SPW 0 has
circular feeds"; a review with MSs made by CASA's simulator).  A table that names its basis (akexport
of KC, CP, D) is still checked against the MS's."""

import shutil

import numpy as np
import pytest
from alakazam.caltasks import akapply, akcal, akexport
from casacore.tables import table

from alakazam.errors import ParameterError
from alakazam.io import solutions


@pytest.fixture(scope="module")
def circular_kg(sim_circular, tmp_path_factory):
    """K(scan) + G(inf) on 3C147 of the circular-feed MS, in HDF5 and exported to CASA tables."""
    ms, _ = sim_circular
    d = tmp_path_factory.mktemp("polbasis")
    cal = str(d / "kg.h5")
    akcal(vis=ms, caltable=cal, field="3C147", jones=["K", "G"], solint=["scan", "inf"],
          freqint=["full", "full"], refant="C00", parang=False)
    tabs = {}
    for k in ("K0", "G0"):
        tabs[k] = str(d / f"{k}.tb")
        akexport(caltable=cal, jones=k, casatable=tabs[k])
        with table(tabs[k], ack=False) as t:
            assert t.getkeyword("PolBasis") == "unknown"            # as CASA writes it
    return ms, cal, tabs, d


def _corrected(ms, d, name, gaintable):
    m = str(d / f"{name}.ms")
    shutil.rmtree(m, ignore_errors=True)
    shutil.copytree(ms, m)
    akapply(vis=m, field=["3C147"], gaintable=gaintable, jones=["K0", "G0"], interp=["nearest"] * 2)
    with table(m, ack=False) as t:
        return [t.query(f"FIELD_ID==1 && DATA_DESC_ID=={d}").getcol("CORRECTED_DATA") for d in (0, 1)]


def test_unknown_basis_tables_apply_on_circular_feeds(circular_kg):
    ms, cal, tabs, d = circular_kg
    s = solutions.read_term(tabs["G0"], "G0")[0]
    assert s.attrs["feed_basis"] == ""                 # not the table's to say: the MS's is taken
    ref = _corrected(ms, d, "h5", [cal, cal])
    got = _corrected(ms, d, "casa", [tabs["K0"], tabs["G0"]])
    for a, b in zip(ref, got):
        assert np.isfinite(a).any()
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * np.nanmax(np.abs(a)))   # float32 parameters


def test_a_named_basis_is_still_checked(circular_kg):
    ms, _, tabs, d = circular_kg
    lin = str(d / "G0_linear.tb")
    shutil.rmtree(lin, ignore_errors=True)
    shutil.copytree(tabs["G0"], lin)
    with table(lin, readonly=False, ack=False) as t:
        t.putkeyword("PolBasis", "LINEAR")
    m = str(d / "refused.ms")
    shutil.rmtree(m, ignore_errors=True)
    shutil.copytree(ms, m)
    with pytest.raises(ParameterError, match="solved with linear feeds but SPW 0 .* has circular feeds"):
        akapply(vis=m, field=["3C147"], gaintable=[lin], jones=["G0"])
