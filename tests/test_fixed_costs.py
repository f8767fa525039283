"""core/columns.undefined_rows: one TaQL pass (issue 16) finds exactly the rows a per-row
``iscelldefined`` loop finds, with some rows of a column defined and the rest not, in two SPWs of
different shapes; a name TaQL cannot take as is goes through the per-row loop."""

import numpy as np
from casacore.tables import table

from alakazam.core import columns, ms_io
from alakazam.sim import simulate_ms


def test_undefined_rows_as_the_per_row_loop(tmp_path):
    ms = str(tmp_path / "s.ms")
    simulate_ms(ms, n_ant=4, n_ant_extra=0, n_chan=(4, 2), duration_h=0.2)
    ms_io.ensure_column(ms, "CORRECTED_DATA", like="DATA", init=False)
    with table(ms, readonly=False, ack=False) as t:
        for r in (3, 7, 8, 40, t.nrows() - 1):
            t.putcell("CORRECTED_DATA", r, np.zeros(t.getcell("DATA", r).shape, np.complex64))
        loop = [r for r in range(t.nrows()) if not t.iscelldefined("CORRECTED_DATA", r)]
    fast = columns.undefined_rows(ms, "CORRECTED_DATA")
    assert fast.dtype == np.int64 and 0 < len(fast) < len(loop) + 5
    np.testing.assert_array_equal(fast, loop)
    assert len(columns.undefined_rows(ms, "DATA")) == 0


def test_name_taql_cannot_take_goes_per_row(monkeypatch, tmp_path):
    import casacore.tables as ct

    ms = str(tmp_path / "s.ms")
    simulate_ms(ms, n_ant=3, n_ant_extra=0, n_chan=(2,), duration_h=0.1)
    monkeypatch.setattr(ct, "taql", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no TaQL")))
    with table(ms, ack=False) as t:
        with np.testing.assert_raises(RuntimeError):      # no such column: casacore says so, per row
            columns.undefined_rows(ms, "NO SUCH-COLUMN")
        assert t.nrows() > 0


def test_row_counts_as_unique_pairs(tmp_path):
    from alakazam.core.ms import MeasurementSet

    ms = str(tmp_path / "s.ms")
    simulate_ms(ms, n_ant=3, n_ant_extra=0, n_chan=(2, 2), duration_h=1.0, scan_len_s=600.0)
    with MeasurementSet.open(ms) as h, table(ms, ack=False) as t:
        for ddid in (0, 1):
            for fields in (None, [0], [1, 2]):
                got = h.row_counts(ddid, fields)
                q = t.query(f"DATA_DESC_ID == {ddid}" + (f" AND FIELD_ID IN [{','.join(map(str, fields))}]"
                                                        if fields else ""))
                fs = np.stack([q.getcol("FIELD_ID"), q.getcol("SCAN_NUMBER")], axis=1)
                pairs, n = np.unique(fs, axis=0, return_counts=True)
                q.close()
                want = {(int(a), int(b)): int(c) for (a, b), c in zip(pairs, n)}
                assert list(got.items()) == list(want.items())
                assert fields is not None or len(got) >= 4          # several fields and scans
