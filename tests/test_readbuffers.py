"""Chunk reads into reused memory (alakazam/core/readbuffers.py; issue 16's QuartiCal-style apply).

* A buffer is handed out again only when nothing else references it (a live view or array of an
  earlier chunk forces new memory); shapes, dtypes and sizes that do not fit get new memory.
* Without an active pool, reads get new arrays; a pool is active only inside ``using``.
* An apply in several chunks (memory limit) writes the same CORRECTED_DATA, bit for bit, with the
  reuse as without it, reuses memory from its second chunk on, and is close to the truth.
"""

import numpy as np
import pytest

from alakazam.core import ms_io, readbuffers
from alakazam.core.readbuffers import ReadBuffers


def _addr(a):
    return a.__array_interface__["data"][0]


def test_reused_only_when_unreferenced():
    pool = ReadBuffers()
    a = pool.empty("DATA", (10, 4, 2), np.complex64)
    a[:] = 1
    p = _addr(a)
    del a
    b = pool.empty("DATA", (7, 4, 2), np.complex64)        # fewer rows: the leading rows of the buffer
    assert _addr(b) == p and b.shape == (7, 4, 2) and b.flags.c_contiguous
    assert pool.reused == 1 and pool.allocated == 1
    keep = b[2:5]                                           # a view of the previous chunk is alive
    del b
    c = pool.empty("DATA", (7, 4, 2), np.complex64)
    assert pool.allocated == 2 and not np.shares_memory(c, keep)
    keep[:] = 3
    c[:] = 5
    assert (keep == 3).all()                                # never overwritten


@pytest.mark.parametrize("shape,dtype", [((11, 4, 2), np.complex64),        # more rows than kept
                                         ((5, 3, 2), np.complex64),         # another cell shape
                                         ((5, 4, 2), np.complex128)])       # another dtype
def test_new_memory_when_it_does_not_fit(shape, dtype):
    pool = ReadBuffers()
    a = pool.empty("DATA", (10, 4, 2), np.complex64)
    del a
    b = pool.empty("DATA", shape, dtype)
    assert b.shape == shape and b.dtype == dtype and pool.allocated == 2 and pool.reused == 0


def test_columns_kept_apart_and_pool_scoped():
    pool = ReadBuffers()
    d = pool.empty("DATA", (4, 2, 2), np.complex64)
    f = pool.empty("FLAG", (4, 2, 2), bool)
    assert not np.shares_memory(d, f)
    with readbuffers.using(pool):
        x = readbuffers.empty("DATA", (4, 2, 2), np.complex64)
    assert not np.shares_memory(x, d)       # d is alive: new memory
    del d, x
    y = readbuffers.empty("DATA", (4, 2, 2), np.complex64)      # outside ``using``: never the pool's
    assert all(not np.shares_memory(y, a) for a in pool.arrays.values())


@pytest.fixture(scope="module")
def small_solved(tmp_path_factory):
    from alakazam.config import solve_config_from_dict
    from alakazam.flow import run_solve
    from alakazam.sim import simulate_ms

    d = tmp_path_factory.mktemp("readbuffers")
    ms, cal = str(d / "sim.ms"), str(d / "cal.h5")
    truth = simulate_ms(ms, n_ant=6, n_ant_extra=0, n_chan=(8,), duration_h=0.5, int_s=60.0,
                        scan_len_s=600.0, noise=0.01, seed=5, delays=False, leakage=False, crosshand=False,
                        parang_in_data=False, dead_ant=False)
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant=0, jones=["G", "G"],
                                          time_interval=["int", "inf"], freq_interval=["full", "1MHz"],
                                          quiet=True)))
    return ms, cal, truth


def _apply(ms, cal, col):
    from alakazam.calibration.apply import run_apply
    from alakazam.config import apply_config_from_dict

    # 2e-5 GB: chunks of ~10 rows of 8 channels x 4 correlations -> many chunks
    run_apply(apply_config_from_dict(dict(ms=ms, jones=["G0", "G1"], tables=[cal, cal], output_col=col,
                                          memory_limit_gb=2e-5, quiet=True)))
    from casacore.tables import table

    with table(ms, ack=False) as t:
        return t.getcol(col), t.getcol("MODEL_DATA"), t.getcol("FLAG") | t.getcol("FLAG_ROW")[:, None, None]


def _pools(monkeypatch):
    """The list every ReadBuffers created from now on is appended to."""
    pools = []
    real = ReadBuffers.__init__

    def init(self):
        real(self)
        pools.append(self)

    monkeypatch.setattr(ReadBuffers, "__init__", init)
    return pools


def test_apply_in_chunks_same_with_and_without_reuse(small_solved, monkeypatch):
    ms, cal, _ = small_solved
    pools = _pools(monkeypatch)
    reused, model, flag = _apply(ms, cal, "CORRECTED_DATA")
    assert pools and sum(p.reused for p in pools) >= 10         # the chunks after the first: no new memory
    assert max(p.allocated for p in pools) <= 3                 # DATA, FLAG (+ the last, shorter chunk: none)

    real_iter = ms_io.iter_chunks

    def no_reuse(*a, **k):
        k["reuse"] = False
        return real_iter(*a, **k)

    monkeypatch.setattr(ms_io, "iter_chunks", no_reuse)
    fresh, _, _ = _apply(ms, cal, "NEW_CORRECTED")
    np.testing.assert_array_equal(reused, fresh)                # bit for bit
    # and the correction is right: the corrected parallel hands are MODEL_DATA + noise / |g_p g_q|
    ok = ~flag[..., [0, 3]]
    d = (reused - model)[..., [0, 3]][ok]
    rms = np.sqrt(np.mean(d.real ** 2 + d.imag ** 2) / 2)
    assert rms < 0.02, rms          # noise 0.01 per part, gains ~1 +- 10%; an uncorrected residual is > 0.05


def test_one_pool_for_all_fields_of_an_apply(small_solved, monkeypatch):
    """run_apply's fields share one pool (readbuffers.shared): each column's memory is allocated once
    for the whole apply, not once per field (the simulated MS has three fields); values bit for bit
    those of a pool per field."""
    ms, cal, _ = small_solved
    pools = _pools(monkeypatch)
    shared, _, _ = _apply(ms, cal, "CORRECTED_DATA")
    assert len(pools) == 1, len(pools)
    assert pools[0].allocated <= 3 and pools[0].reused >= 20
    # a pool per iter_chunks call (as before readbuffers.shared): the same values
    pools.clear()
    monkeypatch.setattr(readbuffers, "pool_for_reuse", lambda: ReadBuffers())
    per_field, _, _ = _apply(ms, cal, "PER_FIELD")
    assert len(pools) >= 3
    np.testing.assert_array_equal(shared, per_field)
