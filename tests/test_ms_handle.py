"""One MeasurementSet handle per task (alakazam/core/ms.py): the metadata read once and the main table
opened once per solve block, in every memory tier, counted by wrapping casacore.tables.table."""

import casacore.tables as ct
import numpy as np
import pytest

from alakazam.config import solve_config_from_dict
from alakazam.core import ms as ms_mod
from alakazam.core import ms_io
from alakazam.flow import run_solve
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def small_ms(tmp_path_factory):
    ms = str(tmp_path_factory.mktemp("handle") / "sim.ms")
    simulate_ms(ms, n_ant=5, n_chan=(8, 4), duration_h=1.0, int_s=120.0, noise=0.05, seed=7, leakage=False)
    return ms


@pytest.fixture()
def opens(monkeypatch):
    """Counts of casacore table opens: main table (path without '::') and metadata reads."""
    seen = {"main": 0, "meta": 0, "reads": 0}
    real = ct.table

    class Counting(real):
        def __init__(self, name, *a, **k):
            if isinstance(name, str) and "::" not in name and name.rstrip("/").endswith(".ms"):
                seen["main"] += 1
            super().__init__(name, *a, **k)

    real_meta = ms_io.read_meta_uncached
    real_read = ms_io._read_rows_by_number

    def read(*a, **k):
        seen["reads"] += 1
        return real_read(*a, **k)

    def meta(*a, **k):
        seen["meta"] += 1
        return real_meta(*a, **k)

    monkeypatch.setattr(ct, "table", Counting)
    monkeypatch.setattr(ms_io, "read_meta_uncached", meta)
    monkeypatch.setattr(ms_io, "_read_rows_by_number", read)
    return seen


@pytest.mark.parametrize("memory_limit_gb, tier", [(0, 1), (1e-6, 3)])
def test_solve_reads_metadata_once_and_opens_the_ms_once(small_ms, tmp_path, opens, memory_limit_gb, tier):
    s = run_solve(solve_config_from_dict({
        "ms": small_ms, "output": str(tmp_path / "c.h5"), "ref_ant": "C00", "jones": ["K", "G", "G"],
        "field": "3C286",
        "time_interval": ["scan", "inf", "300s"], "freq_interval": ["full", "2MHz", "full"], "quiet": True,
        "memory_limit_gb": memory_limit_gb}))
    assert s["tier"] == tier
    # before the handle (same block): tier 1 12 main-table opens and 3 metadata reads, tier 3 48 opens.
    # Now one open for validation, planning and row selection, and one more after each read of data
    # columns (the handle closes its table after such a read: casacore frees the read's tile caches
    # only when the table closes, so the peak memory stays that of one read)
    assert opens["meta"] == 1 and opens["reads"] > 0
    assert opens["main"] <= opens["reads"] + 1
    assert ms_mod.active(small_ms) is None            # closed with the block


def test_handle_nesting_and_borrowing(small_ms, opens):
    with ms_mod.MeasurementSet.open(small_ms) as h:
        with ms_mod.MeasurementSet.open(small_ms) as h2:
            assert h2 is h and ms_mod.active(small_ms) is h
            m1, m2 = ms_io.read_meta(small_ms), ms_io.read_meta(small_ms)
            assert m1 is m2 is h.meta
        assert ms_mod.active(small_ms) is h              # the inner open does not close it
        rows = ms_io.row_numbers(small_ms, 0, [0])
        counts = h.row_counts(0, [0])
        assert sum(counts.values()) == len(rows) > 0
        assert h.n_rows() >= len(rows)
        with ms_io.main_table(small_ms) as t:            # borrowed: not closed by the with
            assert t is h.table()
        assert h.table().nrows() == h.n_rows()
        assert h.flag_versions() == []                   # none saved in a fresh simulated MS
        with h.writer_lock():                            # alakazam's MS writer lock, via the handle
            from alakazam.core import locks
            with pytest.raises(locks.LockedError):
                import threading
                err = []
                th = threading.Thread(target=lambda: _try_lock(small_ms, err))
                th.start()
                th.join()
                raise err[0]
    assert ms_mod.active(small_ms) is None
    assert opens == {"main": 1, "meta": 1, "reads": 0}
    with ms_mod.MeasurementSet.open(small_ms) as h:
        ms_io.read_rows(small_ms, 0, [0])
        assert h._table is None                          # closed after a data read (tile caches freed)
        ms_io.row_numbers(small_ms, 0, [0])
        assert h._table is not None                      # reopened at its next use
    assert opens["main"] == 3 and opens["meta"] == 2          # once per handle
    # without a handle: one open per call, as before
    ms_io.row_numbers(small_ms, 0, [0])
    assert (opens["main"] == 4 and np.asarray(ms_io.read_meta(small_ms).active_ants).size
            and opens["meta"] == 3)


def _try_lock(ms, err):
    from alakazam.core import locks

    try:
        with locks.writer_lock(ms, "ms"):
            pass
    except Exception as e:          # noqa: BLE001 -- handed to the test thread
        err.append(e)
    else:
        err.append(AssertionError("the lock was not held"))
