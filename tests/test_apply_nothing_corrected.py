"""An apply that corrects no sample is an error, not exit 0.

* Every solution of a term flagged: refused before anything is written (no column, FLAG unchanged, no
  flag version; apply._check_some_valid_solution).  Before, the error came after the writes.
* Valid solutions that serve no sample (here: one antenna's only, so no baseline has two): found
  after the writes; calonly leaves the data uncorrected, calflag flags them (restorable).
* An apply with some usable solutions is not an error."""

import shutil

import h5py
import numpy as np
import pytest
from casacore.tables import table

from alakazam.errors import AlakazamError
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    from alakazam.caltasks import akcal

    d = tmp_path_factory.mktemp("nothing")
    ms, cal = str(d / "t.ms"), str(d / "cal.h5")
    simulate_ms(ms, feed="linear", n_ant=5, n_chan=(4,), int_s=120.0, scan_len_s=600.0, duration_h=1.0,
                noise=0.05, seed=7, leakage=False, dead_ant=False, flag_rows=0.0)
    akcal(vis=ms, caltable=cal, field="3C286", jones=["G"], solint=["inf"], refant="C00", minblperant=2)
    dead, lone = str(d / "dead.h5"), str(d / "lone.h5")
    for path, keep in ((dead, None), (lone, 0)):
        shutil.copy(cal, path)
        with h5py.File(path, "r+") as f:       # every solution flagged (but antenna ``keep``'s)
            def flag(name, obj):
                if isinstance(obj, h5py.Dataset) and name.endswith("flags"):
                    v = np.ones(obj.shape, bool)
                    if keep is not None:
                        v[keep] = False
                    obj[...] = v
            f.visititems(flag)
    return ms, cal, dead, lone


@pytest.mark.parametrize("mode", ["calonly", "calflag"])
def test_every_solution_flagged_refused_before_writing(made, tmp_path, mode):
    from alakazam.caltasks import akapply

    ms0, _, dead, _ = made
    ms = str(tmp_path / "c.ms")
    shutil.copytree(ms0, ms)
    with table(ms, ack=False) as t:
        f0, cols = t.getcol("FLAG"), t.colnames()
    with pytest.raises(AlakazamError, match="every solution of G0 .* is flagged.*nothing was written"):
        akapply(vis=ms, gaintable=[dead], jones=["G0"], field="3C286", applymode=mode)
    with table(ms, ack=False) as t:
        np.testing.assert_array_equal(t.getcol("FLAG"), f0)
        assert t.colnames() == cols                              # no CORRECTED_DATA made
    import os
    assert not os.path.exists(ms + ".flagversions")              # no flag version either


@pytest.mark.parametrize("corr", ["", "XX,YY"])
@pytest.mark.parametrize("mode", ["calonly", "calflag"])
def test_no_sample_corrected_is_an_error(made, tmp_path, mode, corr):
    """With a correlation selection too: the unflagged samples are counted in the correlations written,
    as the flagged-solution ones are (session 49: with 'XX,YY' the four hands' count, twice theirs, let
    an apply that corrected nothing pass)."""
    from alakazam.caltasks import akapply

    ms0, _, _, dead = made
    ms = str(tmp_path / "c.ms")
    shutil.copytree(ms0, ms)
    with table(ms, ack=False) as t:
        f0 = t.getcol("FLAG")
    with pytest.raises(AlakazamError, match="no sample was corrected") as e:
        akapply(vis=ms, gaintable=[dead], jones=["G0"], field="3C286", applymode=mode, correlation=corr)
    with table(ms, ack=False) as t:
        f1 = t.getcol("FLAG")
        fld = t.getcol("FIELD_ID")
    if mode == "calonly":
        assert "uncorrected" in str(e.value)
        np.testing.assert_array_equal(f1, f0)
    elif not corr:
        assert "restore with" in str(e.value) and f1[fld == 0].all()
    else:           # XX, YY flagged; XY, YX as they were
        assert "restore with" in str(e.value) and f1[fld == 0][..., [0, 3]].all()
        np.testing.assert_array_equal(f1[..., [1, 2]], f0[..., [1, 2]])


def test_some_usable_solutions_is_not_an_error(made, tmp_path):
    from alakazam.caltasks import akapply

    ms0, cal, _, _ = made
    ms = str(tmp_path / "c.ms")
    shutil.copytree(ms0, ms)
    r = akapply(vis=ms, gaintable=[cal], jones=["G0"], field="3C286", applymode="calonly")
    assert r["unflagged"] > 0 and r["no_solution"] < r["unflagged"]


def test_refused_when_the_selected_fields_solutions_are_all_flagged(made, tmp_path):
    """The check follows which solutions serve a field (chain.choose_fields): a field with its own
    solutions is corrected with them, so 3C147's flagged solutions leave 3C147 uncorrectable although
    3C286's are fine (a review: the first check looked at every field's solutions and let this apply
    write FLAG and a flag version before failing); the same table corrects 3C286."""
    import os

    from alakazam.caltasks import akapply, akcal

    ms0 = made[0]
    ms = str(tmp_path / "c.ms")
    shutil.copytree(ms0, ms)
    cal = str(tmp_path / "two.h5")
    akcal(vis=ms, caltable=cal, field="3C286,3C147", jones=["G"], solint=["inf"], refant="C00", minblperant=2)
    with h5py.File(cal, "r+") as f:
        def flag(name, obj):
            if isinstance(obj, h5py.Dataset) and "3C147" in name and name.endswith("flags"):
                obj[...] = True
        f.visititems(flag)
    with table(ms, ack=False) as t:
        f0, cols = t.getcol("FLAG"), t.colnames()
    with pytest.raises(AlakazamError, match="no sample can be corrected.*3C147.*nothing was written"):
        akapply(vis=ms, gaintable=[cal], jones=["G0"], field="3C147", applymode="calflag")
    with table(ms, ack=False) as t:
        np.testing.assert_array_equal(t.getcol("FLAG"), f0)
        assert t.colnames() == cols
    assert not os.path.exists(ms + ".flagversions")
    r = akapply(vis=ms, gaintable=[cal], jones=["G0"], field="3C286", applymode="calflag")
    assert r["unflagged"] > r["no_solution"]
