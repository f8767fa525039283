"""Spare read memory (alakazam/core/readbuffers.py "spare memory"; issue 16's QuartiCal-style job).

* Donated arrays' memory is handed to a pool's new buffer only when nothing else references it (a
  live view keeps it untouched), the smallest one that holds the buffer; what the first read under a
  pool does not take is freed at its end, everything at ``release``; spare bytes count as available to
  the memory planner.
* A buffer carved from spare memory is reused for the next chunk only when no view of it is alive.
* The YAML runner's rule (readcache.Blocks): before an apply block the solve blocks' kept reads are
  donated, before any other block they are freed; the apply writes CORRECTED_DATA bit for bit as
  with fresh memory, and its first read uses the solve's memory.
"""

import numpy as np
import pytest

from alakazam.core import memory, readbuffers, readcache
from alakazam.core.readbuffers import ReadBuffers

MB = 1 << 20


def _addr(a):
    return a.__array_interface__["data"][0]


@pytest.fixture(autouse=True)
def _clean():
    readbuffers.release()
    yield
    readbuffers.release()


def test_donated_memory_taken_only_when_unreferenced():
    a = np.ones((2 * MB // 8,), np.complex64)
    p = _addr(a)
    assert readbuffers.donate([a]) == a.nbytes and readbuffers.spare_bytes() == a.nbytes
    keep = a[:10]                   # a view is alive: the memory is someone's
    del a
    pool = ReadBuffers()
    b = pool.empty("DATA", (1000, 16, 4), np.complex64)
    assert not np.shares_memory(b, keep) and pool.from_spare == 0
    b[:] = 7
    assert (keep == 1).all()        # never overwritten
    del keep, b
    pool2 = ReadBuffers()
    c = pool2.empty("DATA", (1000, 16, 4), np.complex64)
    assert _addr(c) == p and pool2.from_spare == 1 and c.flags.c_contiguous and c.shape == (1000, 16, 4)
    assert readbuffers.spare_bytes() == 0


def test_smallest_fitting_spare_and_small_arrays_ignored():
    big, small, tiny = np.empty(8 * MB, np.uint8), np.empty(2 * MB, np.uint8), np.empty(1000, np.uint8)
    pb, ps = _addr(big), _addr(small)
    readbuffers.donate([big[::2], small, tiny])       # a view donates its owner; tiny is not kept
    assert readbuffers.spare_bytes() == 10 * MB
    del big, small, tiny
    pool = ReadBuffers()
    f = pool.empty("FLAG", (MB, 1, 1), bool)
    d = pool.empty("DATA", (MB // 8, 2, 2), np.complex64)     # 4 MB: only the big one holds it
    assert _addr(f) == ps and _addr(d) == pb and pool.from_spare == 2


def test_spare_buffer_reused_only_without_live_views():
    a = np.empty(4 * MB, np.uint8)
    readbuffers.donate([a])
    del a
    pool = ReadBuffers()
    x = pool.empty("DATA", (1000, 8, 4), np.complex64)
    p = _addr(x)
    x[:] = 1
    held = x[5:9]                   # a view of the previous chunk (its base: the spare's owner)
    del x
    y = pool.empty("DATA", (1000, 8, 4), np.complex64)
    assert _addr(y) != p and not np.shares_memory(y, held)
    y[:] = 2
    assert (held == 1).all()
    py = _addr(y)
    del y, held
    z = pool.empty("DATA", (900, 8, 4), np.complex64)          # nothing alive: the pool's buffer again
    assert pool.reused == 1 and _addr(z) == py


def test_using_frees_what_the_first_read_did_not_take():
    readbuffers.donate([np.empty(2 * MB, np.uint8)])
    with readbuffers.using(None):                   # a read without a pool (the solve's): kept
        pass
    assert readbuffers.spare_bytes() == 2 * MB
    with readbuffers.using(ReadBuffers()):
        readbuffers.empty("FLAG", (10, 2, 2), bool)     # (a small read: no spare fits... or one does)
    assert readbuffers.spare_bytes() == 0


def test_spare_counts_as_available(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 10 ** 9)
    base = memory.memory_limit_bytes(0)
    readbuffers.donate([np.empty(100 * MB, np.uint8)])
    assert memory.memory_limit_bytes(0) == int(memory.DEFAULT_FRACTION * (10 ** 9 + 100 * MB))
    readbuffers.release()
    assert memory.memory_limit_bytes(0) == base


@pytest.fixture(scope="module")
def solved_ms(tmp_path_factory):
    from alakazam.sim import simulate_ms

    d = tmp_path_factory.mktemp("spare")
    ms = str(d / "sim.ms")
    simulate_ms(ms, n_ant=6, n_ant_extra=0, n_chan=(64,), duration_h=0.5, int_s=30.0,
                scan_len_s=600.0, noise=0.01, seed=5, delays=False, leakage=False, crosshand=False,
                parang_in_data=False, dead_ant=False)
    return ms, str(d)


def _blocks_run(ms, d, cal, col, next_section="apply"):
    """solve (kept reads) -> Blocks.before(next_section) -> apply into ``col``; the pools created."""
    from alakazam.calibration.apply import run_apply
    from alakazam.config import apply_config_from_dict, solve_config_from_dict
    from alakazam.flow import run_solve

    pools = []
    real = ReadBuffers.__init__

    def init(self):
        real(self)
        pools.append(self)

    ReadBuffers.__init__ = init
    try:
        with readcache.Blocks() as blocks:
            blocks.before("solve")
            run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant=0, jones=["G", "G"],
                                                  time_interval=["int", "inf"],
                                                  freq_interval=["full", "1MHz"], quiet=True)))
            held = readcache.held_bytes()
            blocks.before(next_section)
            spare = readbuffers.spare_bytes()
            run_apply(apply_config_from_dict(dict(ms=ms, jones=["G0", "G1"], tables=[cal, cal],
                                                  output_col=col, quiet=True)))
            left = readbuffers.spare_bytes()
    finally:
        ReadBuffers.__init__ = real
    from casacore.tables import table

    with table(ms, ack=False) as t:
        out = t.getcol(col)
    return out, pools, held, spare, left


def test_apply_after_solve_blocks_reads_into_their_memory(solved_ms, monkeypatch):
    ms, d = solved_ms
    monkeypatch.setattr(readbuffers, "MIN_SPARE_BYTES", 0)     # this small MS's arrays are < 1 MB
    out, pools, held, spare, left = _blocks_run(ms, d, d + "/a.h5", "CORRECTED_DATA")
    assert held > 0 and spare > 0.9 * held          # the kept read's arrays (DATA, MODEL_DATA, FLAG, ...)
    assert left == 0                                # what the apply did not take: freed after its read
    assert len(pools) == 1 and pools[0].from_spare == 2         # DATA and FLAG in the solve's memory
    # before another block (flag): nothing is kept
    _, _, _, spare_flag, _ = _blocks_run(ms, d, d + "/b.h5", "NEW_A", next_section="flag")
    assert spare_flag == 0
    # the same apply in fresh memory: bit for bit
    monkeypatch.setattr(readbuffers, "donate", lambda arrays: 0)
    fresh, pools2, _, spare2, _ = _blocks_run(ms, d, d + "/c.h5", "NEW_B")
    assert spare2 == 0 and pools2[0].from_spare == 0
    np.testing.assert_array_equal(out.view(np.uint8), fresh.view(np.uint8))


def test_released_when_no_read_takes_it():
    """readbuffers.shared() (an apply's reads) frees at its end the spare memory no read took."""
    readbuffers.donate([np.empty(2 * MB, np.uint8)])
    with readbuffers.shared():
        assert readbuffers.spare_bytes() == 2 * MB
    assert readbuffers.spare_bytes() == 0
