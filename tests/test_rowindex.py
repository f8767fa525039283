"""core/rowindex: the rows of an MS by (DATA_DESC_ID, FIELD_ID, SCAN_NUMBER), its selection columns read
once per task call (an open MeasurementSet handle) or run (metacache.keep), never for a changed MS.

Every selection's rows from the index are those of the column scan (ms_io._rows_where, the path without
an index) and of TaQL, in the same ascending order, on an MS with three SPWs, three fields, two
observations, STATE intents and shuffled rows; an apply over 3 fields x 3 SPWs reads the selection
columns once (review 56a: once per (field, SPW) unit, quadratic in SPWs x fields)."""

import sys
import os
import shutil

import numpy as np
import pytest
from casacore.tables import table

from alakazam.core import metacache, ms_io, rowindex, rowselect
from alakazam.core.ms import MeasurementSet
from alakazam.sim import simulate_ms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from selection_ms import add_intents_and_observation  # noqa: E402  (tests/selection_ms.py)

INTENTS = ["CALIBRATE_BANDPASS#ON_SOURCE", "CALIBRATE_PHASE#ON_SOURCE", "OBSERVE_TARGET#ON_SOURCE"]


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    """Three SPWs, three fields, rows in random order, STATE_ID = FIELD_ID with intents, OBSERVATION_ID 1
    from the third scan on."""
    d = tmp_path_factory.mktemp("rowindex")
    src = str(d / "src.ms")
    simulate_ms(src, n_ant=5, n_ant_extra=0, n_chan=(4, 2, 3), duration_h=0.5, scan_len_s=300.0, seed=3)
    path = str(d / "shuffled.ms")
    with table(src, ack=False) as t:
        q = t.sort("rand()")
        q.copy(path, deep=True).close()
        q.close()
    add_intents_and_observation(path, INTENTS, 3)
    with table(path, ack=False) as t:
        dd = t.getcol("DATA_DESC_ID")
        assert not np.all(np.diff(dd) >= 0)        # shuffled
    return path


def _selections(meta):
    scans = sorted({s.scan_number for s in meta.scans})
    t0 = min(s.t_start for s in meta.scans)
    t1 = max(s.t_end for s in meta.scans)
    mid = (t0 + t1) / 2
    from alakazam.core.msselect import mjds_to_str     # (the listobs format timerange parses)
    sels = [None, {"antenna": "!C01"}, {"antenna": "C00&C02"}, {"uvrange": ">80m"},
            {"uvrange": "<200klambda"},
            {"timerange": f"{mjds_to_str(t0 + 200)}~{mjds_to_str(mid)}"}, {"intent": "*PHASE*,*TARGET*"},
            {"observation": "1"}, {"antenna": "C03", "intent": "CALIBRATE*", "observation": "0"}]
    out = []
    for s in sels:
        rs = None if s is None else rowselect.build(meta, s, per_channel=False)
        for d in sorted(meta.spws):
            for f in ([0], [1, 2], None, [99], [2, 0]):
                for sc in (None, scans[1:4], [scans[-1], scans[0]], [12345]):
                    out.append((d, f, sc, rs))
    return out


def _old(ms, d, f, sc, rs, monkeypatch):
    with monkeypatch.context() as m:
        m.setenv("ALAKAZAM_ROW_INDEX", "0")
        return ms_io.row_numbers(ms, d, f, sc, rowsel=rs)


def test_index_rows_are_the_column_scans(shuffled, monkeypatch):
    """Inside a task's handle the rows come from the index: the same int64 row numbers, in the same
    (ascending) order, as the column scan and TaQL for DATA_DESC_IDs, fields, scans (out of order,
    absent) and antenna / uvrange / timerange / intent / observation selections; one build."""
    meta = ms_io.read_meta_uncached(shuffled)
    cases = _selections(meta)
    ref = [_old(shuffled, *c, monkeypatch) for c in cases]
    n0 = rowindex.STATS["builds"]
    calls = []
    real = ms_io._rows_where
    monkeypatch.setattr(ms_io, "_rows_where", lambda *a, **k: calls.append(a) or real(*a, **k))
    with MeasurementSet.open(shuffled) as h:
        got = [ms_io.row_numbers(shuffled, d, f, sc, rowsel=rs) for d, f, sc, rs in cases]
        counts = {d: h.row_counts(d, [0, 1, 2], None) for d in sorted(meta.spws)}
    assert rowindex.STATS["builds"] == n0 + 1 and not calls
    nonempty = 0
    for c, a, b in zip(cases, got, ref):
        assert a.dtype == np.int64, c
        np.testing.assert_array_equal(a, b, err_msg=repr(c[:3]))
        nonempty += len(b) > 0
    assert nonempty > len(cases) // 3
    monkeypatch.setenv("ALAKAZAM_ROW_INDEX", "0")       # row_counts by the column scan
    with MeasurementSet.open(shuffled) as h:
        for d in sorted(meta.spws):
            old = h.row_counts(d, [0, 1, 2], None)
            assert counts[d] == old and list(counts[d]) == list(old)
            part = {k: v for k, v in old.items() if k[0] == 1 and k[1] in (3, 4)}
            assert h.row_counts(d, [1], [3, 4]) == part


def test_index_is_small(shuffled):
    """4 B per row (int32 row numbers) plus a few int64 per (ddid, field, scan) group."""
    with table(shuffled, ack=False) as t:
        idx = rowindex.RowIndex.build(t)
        n = t.nrows()
    assert idx.order.dtype == np.int32 and len(idx.order) == n
    assert idx.nbytes <= 4 * n + 32 * (len(idx.keys) + 1)
    np.testing.assert_array_equal(np.sort(idx.order), np.arange(n))


@pytest.mark.parametrize("block", [5, 1 << 22])
def test_build_in_blocks(shuffled, block):
    with table(shuffled, ack=False) as t:
        a = rowindex.RowIndex.build(t, block=block)
        b = rowindex.RowIndex.build(t, block=7)
    for x in ("order", "keys", "bounds"):
        np.testing.assert_array_equal(getattr(a, x), getattr(b, x))


def test_no_index_outside_a_task(shuffled):
    """Without a handle or a run's scope nothing is kept (the column scan, as before)."""
    n0 = rowindex.STATS["builds"]
    ms_io.row_numbers(shuffled, 0, [0])
    assert rowindex.STATS["builds"] == n0 and not rowindex._RUN


def test_changed_ms_is_read_again(shuffled, tmp_path, monkeypatch):
    """A write to the main table (by anyone) between two uses: the index is built again, and the rows
    are the changed MS's."""
    ms = str(tmp_path / "c.ms")
    shutil.copytree(shuffled, ms)
    with MeasurementSet.open(ms):
        before = ms_io.row_numbers(ms, 0, [0])
        n0 = rowindex.STATS["builds"]
        assert np.array_equal(ms_io.row_numbers(ms, 0, [0]), before) and rowindex.STATS["builds"] == n0
        ms_io.release_handle_table(ms)
        with table(ms, readonly=False, ack=False) as t:      # another program moves rows to field 0
            f = t.getcol("FIELD_ID")
            f[::2] = 0
            t.putcol("FIELD_ID", f)
        after = ms_io.row_numbers(ms, 0, [0])
        assert rowindex.STATS["builds"] == n0 + 1
    np.testing.assert_array_equal(after, _old(ms, 0, [0], None, None, monkeypatch))
    assert len(after) > len(before)


def test_run_scope_shares_one_index(shuffled):
    """Inside metacache.keep (a YAML run) the tasks' handles share one index of the unchanged MS; the
    scope's exit drops it."""
    n0 = rowindex.STATS["builds"]
    with metacache.keep():
        for _ in range(3):
            with MeasurementSet.open(shuffled) as h:
                ms_io.row_numbers(shuffled, 1, [2])
                h.row_counts(0, None)
        assert rowindex.STATS["builds"] == n0 + 1 and rowindex._RUN
    assert not rowindex._RUN


def _corrected(ms):
    """CORRECTED_DATA of each DATA_DESC_ID (one shape each), in row order."""
    out = []
    with table(ms, ack=False) as t:
        for d in range(3):
            q = t.query(f"DATA_DESC_ID=={d}", sortlist="ROWID()")
            out.append(q.getcol("CORRECTED_DATA"))
            q.close()
    return out


def test_apply_reads_the_selection_columns_once(shuffled, tmp_path, monkeypatch):
    """An apply over 3 fields x 3 SPWs (9 units): DATA_DESC_ID, FIELD_ID and SCAN_NUMBER of the main
    table read once (one index build, no column scan), CORRECTED_DATA as without the index."""
    from alakazam.caltasks import akapply, akcal

    ms = str(tmp_path / "a.ms")
    shutil.copytree(shuffled, ms)
    cal = str(tmp_path / "g.h5")
    akcal(vis=ms, caltable=cal, field="3C286,3C147", jones=["G"], solint=["scan"], refant="C00")
    full = {}
    real_getcol = table.getcol

    def getcol(self, columnname, startrow=0, nrow=-1, rowincr=1):
        if columnname in rowindex.COLUMNS and self.nrows() == n_rows and \
                (nrow < 0 or nrow >= n_rows) and startrow == 0:
            full[columnname] = full.get(columnname, 0) + 1
        return real_getcol(self, columnname, startrow, nrow, rowincr)

    n_rows = ms_io.n_rows(ms)
    scans = []
    real = ms_io._rows_where
    monkeypatch.setattr(ms_io, "_rows_where", lambda *a, **k: scans.append(a) or real(*a, **k))
    monkeypatch.setattr(table, "getcol", getcol)
    builds = rowindex.STATS["builds"]
    akapply(vis=ms, gaintable=[cal], jones=["G0"], interp=["linear"])
    assert rowindex.STATS["builds"] == builds + 1 and not scans
    assert full == {c: 1 for c in rowindex.COLUMNS}
    monkeypatch.undo()
    new = _corrected(ms)
    monkeypatch.setenv("ALAKAZAM_ROW_INDEX", "0")
    n_units = len(ms_io.read_meta_uncached(ms).spws) * 3
    scans.clear()
    monkeypatch.setattr(ms_io, "_rows_where", lambda *a, **k: scans.append(a) or real(*a, **k))
    akapply(vis=ms, gaintable=[cal], jones=["G0"], interp=["linear"])
    assert len(scans) >= n_units == 9           # (the column scan: once per unit)
    for a, b in zip(_corrected(ms), new):
        np.testing.assert_array_equal(a, b)


def test_scan_times_from_the_index(shuffled, monkeypatch):
    """scan_times (solint 'int' / 'Nints') from the index's rows: the column scan's times and intervals."""
    meta = ms_io.read_meta_uncached(shuffled)
    pairs = [(f, d) for f in (0, 1, 2) for d in sorted(meta.spws)]
    cases = [(pairs, None), (pairs[:2], None), (pairs[3:5], [2, 3]), ([(1, 0), (1, 2)], [99])]
    with monkeypatch.context() as m:
        m.setenv("ALAKAZAM_ROW_INDEX", "0")
        ref = [ms_io.scan_times(shuffled, p, sc) for p, sc in cases]
    with MeasurementSet.open(shuffled):
        got = [ms_io.scan_times(shuffled, p, sc) for p, sc in cases]
    for a, b in zip(got, ref):
        assert list(a) == list(b)
        for k in a:
            for x, y in zip(a[k], b[k]):
                assert x.dtype == y.dtype
                np.testing.assert_array_equal(x, y)
    assert any(len(a) for a in got)


def test_solve_finds_every_unit_in_one_index(shuffled, tmp_path, monkeypatch):
    """A G solve per scan and a phase-only G per integration (scan_times) over 2 fields x 3 SPWs: one
    index build per akcal, no column scan (before: one per unit in the memory plan and in each read)."""
    from alakazam.caltasks import akcal

    scans = []
    real = ms_io._rows_where
    monkeypatch.setattr(ms_io, "_rows_where", lambda *a, **k: scans.append(a) or real(*a, **k))
    times = []
    real_times = ms_io.scan_times
    monkeypatch.setattr(ms_io, "scan_times", lambda *a, **k: times.append(a) or real_times(*a, **k))
    builds = rowindex.STATS["builds"]
    akcal(vis=shuffled, caltable=str(tmp_path / "g.h5"), field="3C286,3C147", jones=["G", "G"],
          calmode=["ap", "p"], solint=["scan", "int"], refant="C00")
    assert rowindex.STATS["builds"] == builds + 1 and not scans and times
