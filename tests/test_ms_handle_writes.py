"""Every write of an MS goes through its MeasurementSet handle (alakazam/core/ms.py, "Writes"): apply's
output column, FLAG and the column add/rename of core/columns.py, and every table the simulator writes.
Pinned by counting the read-write opens of casacore.tables.table against the handle's
STATS['write_opens'], and by the handle's refusals (DATA, MODEL_DATA, FLAG without a flag version)."""

import casacore.tables as ct
import numpy as np
import pytest

from alakazam.calibration.apply import run_apply
from alakazam.calibration.flagsafety import saved_then_marked
from alakazam.config import apply_config_from_dict, solve_config_from_dict
from alakazam.core import flagversions, ms_io
from alakazam.core import ms as ms_mod
from alakazam.errors import AlakazamError
from alakazam.flow import run_solve
from alakazam.sim import simulate_ms


@pytest.fixture()
def rw_opens(monkeypatch):
    """Names of the tables casacore opens read-write (main table and sub-tables)."""
    seen = []
    real = ct.table

    class Counting(real):
        def __init__(self, name, *a, **k):
            if k.get("readonly", True) is False:
                seen.append(str(name))
            super().__init__(name, *a, **k)

    monkeypatch.setattr(ct, "table", Counting)
    return seen


def _sim(path):
    return simulate_ms(str(path), n_ant=4, n_chan=(4,), duration_h=0.5, int_s=300.0, noise=0.05, seed=3,
                       leakage=False)


def test_simulator_writes_every_table_through_the_handle(tmp_path, rw_opens):
    before = ms_mod.STATS["write_opens"]
    ms = str(tmp_path / "s.ms")
    _sim(ms)
    n = ms_mod.STATS["write_opens"] - before
    # the main table and its 8 sub-tables, each opened read-write once, all by the handle
    assert n == len(rw_opens) == 9
    assert sum("::" not in p for p in rw_opens) == 1
    with ct.table(ms, ack=False) as t:
        assert t.nrows() > 0 and np.abs(t.getcol("DATA")).max() > 0


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    d = tmp_path_factory.mktemp("hw")
    ms = str(d / "a.ms")
    _sim(ms)
    h5 = str(d / "g.h5")
    run_solve(solve_config_from_dict({"ms": ms, "output": h5, "ref_ant": "C00", "jones": ["G"],
                                      "field": "3C286", "time_interval": ["inf"], "quiet": True}))
    return ms, h5


@pytest.mark.parametrize("extra", [{}, {"propagate_flags": True}])
def test_apply_writes_only_through_the_handle(solved, rw_opens, extra):
    ms, h5 = solved
    before = ms_mod.STATS["write_opens"]
    res = run_apply(apply_config_from_dict(dict(ms=ms, jones=["G0"], tables=[h5], quiet=True, **extra)))
    assert res["rows"] > 0 and res["output_col"] == "CORRECTED_DATA"
    assert bool(res["flag_backup"]) == bool(extra)          # FLAG written after its saved version
    # every read-write open of a table during apply (output column, FLAG, column add/rename) was the
    # handle's: one per chunk write plus the column add and rename of a new column
    assert len(rw_opens) == ms_mod.STATS["write_opens"] - before > 0
    assert all("::" not in p for p in rw_opens)


def test_handle_refuses_data_model_and_unsaved_flag(solved):
    ms, _ = solved
    with ct.table(ms, ack=False) as t:
        rows = np.arange(3)
        data = t.getcol("DATA", 0, 3)
        flag = t.getcol("FLAG", 0, 3)
    for col in ("DATA", "MODEL_DATA"):
        with pytest.raises(AlakazamError, match=f"{col} of .* is never written"):
            ms_io.write_column(ms, col, rows, data)
    with pytest.raises(AlakazamError, match="FLAG of .* only after its flag version is saved"):
        ms_io.write_column(ms, "FLAG", rows, flag)
    with pytest.raises(AlakazamError, match="exists; its tables are written only through"):
        ms_mod.MeasurementSet(ms).write_table()
    # inside a saved flag version FLAG may be written (and is restorable)
    with saved_then_marked(ms, lambda: flagversions.save(ms, task="test", comment="t")) as v:
        ms_io.write_column(ms, "FLAG", rows, np.ones_like(flag))
    with ct.table(ms, ack=False) as t:
        assert t.getcol("FLAG", 0, 3).all()
    flagversions.restore(ms, v, merge="replace")
    with ct.table(ms, ack=False) as t:
        assert (t.getcol("FLAG", 0, 3) == flag).all()
        assert (t.getcol("DATA", 0, 3) == data).all()


def test_write_releases_the_open_handles_table(solved):
    ms, _ = solved
    with ms_mod.MeasurementSet.open(ms) as h:
        h.table()
        assert ms_io.main_table(ms).__class__.__name__ == "_Borrowed"
        assert h.add_column("AK_TEST_COL", like="DATA", init=True) is True
        assert h._table is None and ms_mod.borrow(ms) is None     # no read-only table beside writes
        h.write_column("AK_TEST_COL", [0, 1], np.zeros((2, 4, 4), np.complex64))
        h.remove_column("AK_TEST_COL")
    with ct.table(ms, ack=False) as t:
        assert "AK_TEST_COL" not in t.colnames()


def test_akflag_writes_flag_through_the_handle(tmp_path, rw_opens):
    from alakazam.caltasks import akflag

    ms = str(tmp_path / "f.ms")
    _sim(ms)
    with ct.table(ms, ack=False) as t:
        flag0 = t.getcol("FLAG")
    rw_opens.clear()
    before = ms_mod.STATS["write_opens"]
    out = akflag(vis=ms, mode="manual", antenna="C02")
    main_rw = [p for p in rw_opens if "::" not in p]
    assert len(main_rw) == ms_mod.STATS["write_opens"] - before == 1     # the run's one flag_table
    with ct.table(ms, ack=False) as t:
        flag = t.getcol("FLAG")
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
    c02 = (a1 == 2) | (a2 == 2)         # C02 is ANTENNA id 2
    assert c02.any() and flag[c02].all() and (flag[~c02] == flag0[~c02]).all() and out["version"]
