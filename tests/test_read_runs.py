"""core/ms_io: rows in long runs are read run by run straight from the table -- the array columns
(getcolnp) and, since issue 16's fixed costs, the scalar and WEIGHT columns too (getcol(start, n), no row
selection); the values and types are those of the reads through a row selection."""

import numpy as np
import pytest

from alakazam.core import ms_io
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def ms(tmp_path_factory):
    p = str(tmp_path_factory.mktemp("runs") / "r.ms")
    simulate_ms(p, n_ant=5, n_ant_extra=0, n_chan=(4,), duration_h=0.3, seed=2)
    return p


@pytest.mark.parametrize("pick", ["one run", "two runs", "runs out of order", "scattered"])
def test_runs_read_as_the_selection(ms, pick, monkeypatch):
    n = ms_io.n_rows(ms)
    rows = {"one run": np.arange(10, n - 7),
            "two runs": np.r_[0:40, 70:n],
            "runs out of order": np.r_[60:n, 0:50],
            "scattered": np.arange(0, n, 3)}[pick]
    got = ms_io._read_rows_by_number(ms, rows, 0, None, "DATA", "MODEL_DATA")
    monkeypatch.setattr(ms_io, "_long_runs", lambda r: None)       # everything through a row selection
    ref = ms_io._read_rows_by_number(ms, rows, 0, None, "DATA", "MODEL_DATA")
    for a, b in zip(got, ref):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    monkeypatch.undo()
    np.testing.assert_array_equal(ms_io.read_times(ms, rows), ref[4])
