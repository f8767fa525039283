"""core/readcache with memory tiers 2/3: a block that reads in chunks (or on dask workers) keeps what
earlier blocks kept within its memory limit too (readcache module docstring, 'Memory')."""

import pytest

from alakazam.config import solve_config_from_dict
from alakazam.core import flagcache, ms_io, readcache
from alakazam.flow import run_solve
from alakazam.sim import simulate_ms


@pytest.fixture
def ms(tmp_path):
    p = str(tmp_path / "c.ms")
    simulate_ms(p, n_ant=6, n_ant_extra=0, n_chan=(32,), duration_h=0.5, int_s=60.0, seed=4)
    readcache.clear()
    flagcache.clear()
    return p


def _solve(ms, out, **kw):
    d = dict(ms=ms, output=out, ref_ant="C00", jones=["G"], field=["3C286"], time_interval=["inf"],
             freq_interval=["full"], quiet=True)
    d.update(kw)
    return run_solve(solve_config_from_dict(d))


def test_a_chunked_block_drops_kept_reads_to_fit_its_limit(ms, tmp_path, monkeypatch):
    held_at_read = []
    orig = ms_io.read_rows

    def spy(*a, **k):
        held_at_read.append(readcache.held_bytes())
        return orig(*a, **k)

    with readcache.keep():
        _solve(ms, str(tmp_path / "a.h5"))                  # tier 1: its read is kept
        one = readcache.held_bytes()
        assert one > 0
        monkeypatch.setattr(ms_io, "read_rows", spy)
        lim = one // 3                                     # another field, in chunks: tier 2 or 3
        s = _solve(ms, str(tmp_path / "b.h5"), field=["3C147"], memory_limit_gb=lim / 1e9)
        assert s["tier"] in (2, 3) and held_at_read
        # while the block reads, what is kept stays within the block's limit
        assert max(held_at_read) <= lim
