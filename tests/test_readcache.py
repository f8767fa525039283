"""core/readcache: inside keep(), a later solve block takes an earlier block's read of the same rows of
the unchanged MS; the results are those of a fresh read (module docstring)."""

import os
import sys

import numpy as np
import pytest
from casacore.tables import table

from alakazam.core import flagcache, ms_io, readcache
from alakazam.sim import simulate_ms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kg_blocks import assert_same_terms, solve_kg, terms, two_block_yaml  # noqa: E402  (tests/kg_blocks.py)


def _solve(ms, out, **kw):
    return solve_kg(ms, out, **kw)


_terms, _same = terms, assert_same_terms


class _Reads:
    """Count the MS reads of the solve's chunks."""

    def __init__(self, monkeypatch):
        self.n = 0
        orig = ms_io.read_rows

        def counting(*a, **k):
            self.n += 1
            return orig(*a, **k)

        monkeypatch.setattr(ms_io, "read_rows", counting)


@pytest.fixture
def ms(tmp_path):
    p = str(tmp_path / "c.ms")
    simulate_ms(p, n_ant=6, n_ant_extra=0, n_chan=(32,), duration_h=0.5, int_s=60.0, seed=4,
                rfi_persistent=[9])
    readcache.clear()
    flagcache.clear()
    return p


def _digest(chunk):
    return [np.asarray(getattr(chunk, f)).tobytes() for f in ("data", "model", "flag", "weight", "time")]


def test_a_later_block_reuses_the_read_and_solves_identically(ms, tmp_path, monkeypatch):
    reads = _Reads(monkeypatch)
    with readcache.keep():
        _solve(ms, str(tmp_path / "a.h5"))
        n1 = reads.n
        assert n1 >= 1 and readcache.held_bytes() > 0
        kept = [e.chunk for e in readcache._CACHE.values()]
        f0 = dict(flagcache.STATS)
        before = [_digest(c) for c in kept]
        h0 = readcache.STATS["hits"]
        # another block on the same rows: other terms, a pre-apply, a point-source model
        _solve(ms, str(tmp_path / "b.h5"), jones=["G"], time_interval=["60s"], freq_interval=["full"],
               external_preapply=dict(tables=[str(tmp_path / "a.h5")], jones=["K0"]))
        assert reads.n == n1                                  # no new read of the MS
        assert flagcache.STATS == f0                          # its solve-time flags kept beside it
        # another RFI threshold: flagged anew (identical to a fresh solve: below)
        _solve(ms, str(tmp_path / "r.h5"), rfi_threshold=3.0)
        assert flagcache.STATS["misses"] == f0["misses"] + 1
        # a point-source model (smodel): a read without MODEL_DATA (another key), then reused
        _solve(ms, str(tmp_path / "s.h5"), jones=["G"], time_interval=["inf"], freq_interval=["full"],
               smodel=[1.0, 0.0, 0.0, 0.0])
        _solve(ms, str(tmp_path / "t.h5"), jones=["G"], time_interval=["inf"], freq_interval=["full"],
               smodel=[2.0, 0.0, 0.0, 0.0])
        assert reads.n == n1 + 1
        assert readcache.STATS["hits"] >= h0 + 2
        assert [_digest(c) for c in kept] == before            # the kept arrays were not written into
        assert all(e.chunk.model is None for e in readcache._CACHE.values() if e.chunk is not kept[0])
        # (smodel: on the copy, never on the kept read)
    assert readcache.held_bytes() == 0                          # leaving keep() drops everything
    # the same blocks without the cache: identical tables
    monkeypatch.setenv("ALAKAZAM_READ_CACHE", "0")
    with readcache.keep():
        _solve(ms, str(tmp_path / "a2.h5"))
        _solve(ms, str(tmp_path / "b2.h5"), jones=["G"], time_interval=["60s"], freq_interval=["full"],
               external_preapply=dict(tables=[str(tmp_path / "a2.h5")], jones=["K0"]))
        _solve(ms, str(tmp_path / "r2.h5"), rfi_threshold=3.0)
        _solve(ms, str(tmp_path / "s2.h5"), jones=["G"], time_interval=["inf"], freq_interval=["full"],
               smodel=[1.0, 0.0, 0.0, 0.0])
        _solve(ms, str(tmp_path / "t2.h5"), jones=["G"], time_interval=["inf"], freq_interval=["full"],
               smodel=[2.0, 0.0, 0.0, 0.0])
    assert reads.n == n1 + 1 + 5
    for x in ("a", "b", "r", "s", "t"):
        _same(_terms(str(tmp_path / f"{x}.h5")), _terms(str(tmp_path / f"{x}2.h5")))


def test_nothing_is_kept_outside_keep(ms, tmp_path, monkeypatch):
    reads = _Reads(monkeypatch)
    _solve(ms, str(tmp_path / "a.h5"))
    _solve(ms, str(tmp_path / "b.h5"))
    assert reads.n == 2 and readcache.held_bytes() == 0


def test_a_changed_ms_is_read_again(ms, tmp_path, monkeypatch):
    """Someone else writes the MS between two blocks: the second block reads it again and solves the new
    data (DATA x 4: gain amplitudes x 2)."""
    reads = _Reads(monkeypatch)
    with readcache.keep():
        _solve(ms, str(tmp_path / "a.h5"))
        n1 = reads.n
        with table(ms, readonly=False, ack=False) as t:
            t.putcol("DATA", t.getcol("DATA") * 4)
        _solve(ms, str(tmp_path / "b.h5"))
        assert reads.n == n1 + 1
    a = _terms(str(tmp_path / "a.h5"))["G0"]
    b = _terms(str(tmp_path / "b.h5"))["G0"]
    ga = np.concatenate([np.abs(x.jones[..., 0, 0]).ravel() for x in a])
    gb = np.concatenate([np.abs(x.jones[..., 0, 0]).ravel() for x in b])
    ok = np.isfinite(ga) & np.isfinite(gb) & (ga > 0)
    np.testing.assert_allclose(gb[ok] / ga[ok], 2.0, rtol=1e-4)


def test_other_selections_are_other_reads(ms, tmp_path, monkeypatch):
    reads = _Reads(monkeypatch)
    with readcache.keep():
        _solve(ms, str(tmp_path / "a.h5"))
        n1 = reads.n
        _solve(ms, str(tmp_path / "b.h5"), uvrange=">100m")          # another row selection
        _solve(ms, str(tmp_path / "c.h5"), spw="0:4~27")              # other channels
        assert reads.n == n1 + 2
        _solve(ms, str(tmp_path / "d.h5"), uvrange=">100m")          # the second one again: kept
        assert reads.n == n1 + 2


def test_the_memory_limit_drops_the_oldest_read(ms, tmp_path, monkeypatch):
    """What is kept plus the next read stays within the block's memory limit: the oldest read goes."""
    reads = _Reads(monkeypatch)
    with readcache.keep():
        _solve(ms, str(tmp_path / "a.h5"))
        one = readcache.held_bytes()
        assert one > 0
        d0 = readcache.STATS["dropped"]
        # a limit that holds one read (with the planner's estimate of the next) but not two
        lim_gb = 1.5 * one / 1e9
        _solve(ms, str(tmp_path / "b.h5"), field=["3C147"], memory_limit_gb=lim_gb)
        assert readcache.STATS["dropped"] == d0 + 1 and len(readcache._CACHE) == 1
        n = reads.n
        _solve(ms, str(tmp_path / "c.h5"))                   # 3C286 was dropped: read again
        assert reads.n == n + 1


def test_the_yaml_runner_keeps_reads_across_solve_blocks_and_drops_them_before_apply(ms, tmp_path,
                                                                                   monkeypatch):
    from alakazam.caltasks.yamlrun import run_yaml

    seen = []
    orig = readcache.Blocks.before

    def spy(self, section):
        orig(self, section)
        seen.append((section, readcache.active(), readcache.held_bytes(), reads.n))

    monkeypatch.setattr(readcache.Blocks, "before", spy)
    reads = _Reads(monkeypatch)
    y = two_block_yaml(tmp_path / "run.yaml", ms, tmp_path, apply=True)
    run_yaml(str(y))
    assert [x[0] for x in seen] == ["solve", "solve", "apply"]
    assert seen[0][1] and seen[1][1] and seen[1][2] > 0          # kept during the solve blocks
    assert not seen[2][1] and seen[2][2] == 0                    # dropped before the apply
    assert readcache.held_bytes() == 0
    assert seen[2][3] == 1                                      # one read for the two solve blocks
    assert os.path.exists(str(tmp_path / "b.h5"))
