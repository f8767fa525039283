"""The apply's time blocks (alakazam/calibration/applyblocks.py, issue 16 peak memory): the chain's
tables are evaluated a few integrations at a time; the corrected data, the flags and the applymode
counts are bit-identical to one block per chunk (diagonal and full 2x2 paths, nearest and linear,
a flagged solution in one scan)."""

import shutil

import numpy as np
import pytest
from casacore.tables import table

from alakazam.calibration import applyblocks
from alakazam.calibration.apply import run_apply
from alakazam.config import apply_config_from_dict, solve_config_from_dict
from alakazam.flow import run_solve
from alakazam.sim import simulate_ms


def test_time_blocks_cover_rows_at_time_boundaries():
    tidx = np.repeat(np.arange(10), [3, 5, 1, 4, 4, 2, 6, 3, 3, 5])
    blocks = applyblocks.time_blocks(tidx, 4)
    assert len(blocks) > 1
    assert blocks[0][0] == 0 and blocks[-1][1] == len(tidx)
    assert blocks[0][2] == 0 and blocks[-1][3] == 10
    for (r0, r1, t0, t1), nxt in zip(blocks, blocks[1:] + [None]):
        assert r1 > r0 and t1 > t0
        assert (tidx[r0:r1] >= t0).all() and (tidx[r0:r1] < t1).all()      # whole times only
        assert r0 == 0 or tidx[r0 - 1] < t0
        if nxt is not None:
            assert nxt[0] == r1 and nxt[2] == t1                             # contiguous
    assert applyblocks.time_blocks(tidx, 1) == [(0, len(tidx), 0, 10)]
    # rows not in time order: one block (slices would not be views)
    assert applyblocks.time_blocks(tidx[::-1], 4) == [(0, len(tidx), 0, 10)]
    assert applyblocks.time_blocks(np.zeros(0, np.int64), 4) == [(0, 0, 0, 0)]
    assert applyblocks.time_blocks(np.zeros(7, np.int64), 4) == [(0, 7, 0, 1)]


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    d = tmp_path_factory.mktemp("blocks")
    ms = str(d / "b.ms")
    simulate_ms(ms, feed="linear", n_ant=5, n_chan=(4,), duration_h=1.5, int_s=60, noise=0.05, seed=44,
                leakage=False, dead_ant=False, flag_rows=0.0, dead_antenna_scan=(1, 4))
    cal = str(d / "g.h5")
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant="C00", jones=["G", "G"],
                                          field=["3C286"], time_interval=["scan", "inf"],
                                          freq_interval=["full", "1MHz"])))
    return ms, cal


def _apply(src, dst, cal, n_blocks, interp, parang, mode):
    shutil.copytree(src, dst)
    old = applyblocks.N_BLOCKS
    applyblocks.N_BLOCKS = n_blocks
    try:
        r = run_apply(apply_config_from_dict(dict(ms=dst, jones=["G0", "G1"], tables=[cal, cal],
                                                  time_interp=[interp, "nearest"], apply_parang=parang,
                                                  applymode=mode)))
    finally:
        applyblocks.N_BLOCKS = old
    with table(dst, ack=False) as t:
        return r, t.getcol("CORRECTED_DATA"), t.getcol("FLAG"), t.getcol("TIME"), t.getcol("FIELD_ID")


@pytest.mark.parametrize("interp,parang,mode", [("nearest", False, "calflag"), ("linear", True, "calflag"),
                                                ("linear", False, "calonly"), ("nearest", True, "calonly")])
def test_blocks_bit_identical_to_one_block(solved, tmp_path, interp, parang, mode):
    ms, cal = solved
    one = _apply(ms, str(tmp_path / "one.ms"), cal, 1, interp, parang, mode)
    many = _apply(ms, str(tmp_path / "many.ms"), cal, 7, interp, parang, mode)
    _, _, _, time_, fid = one
    _, tidx = np.unique(time_[fid == 0], return_inverse=True)
    assert len(applyblocks.time_blocks(tidx, 7)) > 1                     # several blocks were used
    np.testing.assert_array_equal(many[1], one[1])                       # bit-identical, NaN-free
    np.testing.assert_array_equal(many[2], one[2])
    for k in ("samples", "no_solution", "flagged_by_solution", "flagged_by_term"):
        assert many[0][k] == one[0][k]
    assert one[0]["flagged_by_solution"] + one[0]["no_solution"] > 0     # the dead scan counted


def test_correct_full_inv_keeps_data_in_place():
    """calonly in place (the full 2x2 path no longer needs a second chunk-sized output): with
    zero_bad=False the samples without a valid solution keep the uncorrected data, the others are
    the zero_bad=True values, the flags and the count are the same."""
    from alakazam.jones import algebra

    rng = np.random.default_rng(7)
    n_t, n_ant, n_chan, n_row = 3, 4, 5, 60
    j = rng.standard_normal((n_t, n_ant, n_chan, 2, 2)) + 1j * rng.standard_normal((n_t, n_ant, n_chan, 2, 2))
    j[rng.random((n_t, n_ant, n_chan)) < 0.2] = np.nan
    inv, ok = algebra.full_inverse_table(j)
    data = (rng.standard_normal((n_row, n_chan, 4)) + 1j * rng.standard_normal((n_row, n_chan, 4))).astype(
        np.complex64)
    tidx, a1, a2 = (rng.integers(0, n, n_row) for n in (n_t, n_ant, n_ant))
    ref = np.empty_like(data)
    ref_bad = np.zeros(data.shape, bool)
    n_ref = algebra.correct_full_inv(data, inv, ok, tidx, a1, a2, ref, ref_bad)
    ref[ref_bad] = data[ref_bad]                    # what apply did out of place in calonly
    src = data.copy()
    bad = np.zeros(data.shape, bool)
    n = algebra.correct_full_inv(src, inv, ok, tidx, a1, a2, src, bad, False)
    assert n == n_ref > 0 and (~bad).any()
    np.testing.assert_array_equal(bad, ref_bad)
    np.testing.assert_array_equal(src, ref)
    np.testing.assert_array_equal(src[bad], data[bad])


def test_chunk_freed_before_next_read_and_tables_per_block(solved, tmp_path, monkeypatch):
    """Issue 16 peak memory: when the apply reads a chunk, nothing of the previous chunk (its DATA /
    output, its FLAG) is alive any more, and the chain is evaluated for one block of times at a time,
    never for a whole multi-block chunk."""
    import gc
    import weakref

    from alakazam.calibration import chain
    from alakazam.core import ms_io

    ms, cal = solved
    dst = str(tmp_path / "m.ms")
    shutil.copytree(ms, dst)
    alive = []
    n_reads = []
    chunk_nt = []
    orig_read = ms_io.read_rows

    def read_rows(*a, **k):
        n_reads.append(sum(r() is not None for r in alive))       # before this read
        ch = orig_read(*a, **k)
        alive[:] = [weakref.ref(ch.data), weakref.ref(ch.flag)]
        chunk_nt.append(len(np.unique(ch.time)))
        return ch

    sizes = []
    orig_compose = chain.compose

    def compose(terms, spw_id, times, *a, **k):
        sizes.append(len(times))
        return orig_compose(terms, spw_id, times, *a, **k)

    monkeypatch.setattr(ms_io, "read_rows", read_rows)
    monkeypatch.setattr(chain, "compose", compose)
    gc.disable()                    # freed by reference counting, not by a collection
    try:
        run_apply(apply_config_from_dict(dict(ms=dst, jones=["G0", "G1"], tables=[cal, cal],
                                              apply_parang=True, propagate_flags=True,
                                              memory_limit_gb=2e-4)))
    finally:
        gc.enable()
    assert len(n_reads) > 3                                             # several chunks per field
    assert n_reads == [0] * len(n_reads)
    assert max(chunk_nt) >= 8
    assert len(sizes) > len(n_reads) and 2 * max(sizes) <= max(chunk_nt)
