"""core/ms_io: rows in long runs are read run by run straight from the table -- the array columns
(getcolnp) and, since issue 16's fixed costs, the scalar and WEIGHT columns too (getcol(start, n), no row
selection); the values and types are those of the reads through a row selection.  row_numbers without a
row selection finds the rows from the columns: those of TaQL's WHERE."""

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


@pytest.fixture(scope="module")
def ms2(tmp_path_factory):
    p = str(tmp_path_factory.mktemp("where") / "w.ms")
    simulate_ms(p, n_ant=4, n_ant_extra=0, n_chan=(4, 2), duration_h=0.5, scan_len_s=300.0, seed=6)
    return p


def _taql_rows(ms, ddid, fields, scans, time_range):
    from casacore.tables import table, taql

    with table(ms, ack=False) as t:      # noqa: F841 -- the $t of the query
        q = taql(f"SELECT ROWID() AS R FROM $t WHERE {ms_io.where_clause(ddid, fields, scans, time_range)}")
        r = np.asarray(q.getcol("R") if q.nrows() else np.zeros(0), np.int64)
        q.close()
    return r


@pytest.mark.parametrize("block", [ms_io.WHERE_BLOCK, 7])
def test_row_numbers_as_taql(ms2, block, monkeypatch):
    """Without a row selection, row_numbers finds the rows from the columns (in blocks): the same
    ascending int64 row numbers as TaQL's WHERE, for DATA_DESC_IDs, fields, scans and time ranges."""
    monkeypatch.setattr(ms_io, "WHERE_BLOCK", block)
    meta = ms_io.read_meta_uncached(ms2)
    scans = sorted({s.scan_number for s in meta.scans})
    t_lo = min(s.t_start for s in meta.scans)
    t_hi = max(s.t_end for s in meta.scans)
    cases = [(d, f, sc, tr) for d in sorted(meta.spws) for f in ([0], [1, 2], None, [99])
             for sc in (None, scans[1:3], [12345])
             for tr in (None, (t_lo + 100.0, (t_lo + t_hi) / 2), (t_hi + 1, t_hi + 2))]
    n_nonempty = 0
    for d, f, sc, tr in cases:
        got = ms_io.row_numbers(ms2, d, f, sc, tr)
        ref = _taql_rows(ms2, d, f, sc, tr)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, ref)
        n_nonempty += len(ref) > 0
    assert n_nonempty > 10


@pytest.mark.parametrize("block", [ms_io.WHERE_BLOCK, 5])
def test_meta_antennas_as_taql_distinct(tmp_path, block, monkeypatch):
    """read_meta's active antennas (distinct ANTENNA1 / ANTENNA2 of blocks of rows) are TaQL's DISTINCT
    of both columns; an antenna of the ANTENNA table without rows is not active."""
    from casacore.tables import table, taql

    p = str(tmp_path / "a.ms")
    simulate_ms(p, n_ant=5, n_ant_extra=2, n_chan=(2,), duration_h=0.1, seed=1)
    monkeypatch.setattr(ms_io, "WHERE_BLOCK", block)
    meta = ms_io.read_meta_uncached(p)
    with table(p, ack=False) as t:      # noqa: F841 -- the $t of the queries
        ref = np.unique(np.concatenate([taql(f"SELECT DISTINCT {c} AS A FROM $t").getcol("A")
                                        for c in ("ANTENNA1", "ANTENNA2")]))
        n_ant = table(p + "::ANTENNA", ack=False).nrows()
    assert meta.active_ants.dtype == np.int64 and len(ref) < n_ant
    np.testing.assert_array_equal(meta.active_ants, ref)
    assert list(meta.ant_map[meta.active_ants]) == list(range(len(ref)))
