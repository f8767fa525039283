"""core/flagcache: the solve-time flags of the same rows are computed once per process, never reused
after the MS changed (module docstring)."""

import os
import sys

import numpy as np
from casacore.tables import table

from alakazam.core import flagcache
from alakazam.sim import simulate_ms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kg_blocks import assert_same_terms, solve_kg, terms  # noqa: E402  (tests/kg_blocks.py)


def _solve(ms, out, threshold=5.0):
    return solve_kg(ms, out, rfi_threshold=threshold)


_terms, _same = terms, assert_same_terms


def test_second_block_reuses_the_flags_and_solves_identically(tmp_path, monkeypatch):
    ms = str(tmp_path / "c.ms")
    simulate_ms(ms, n_ant=6, n_ant_extra=0, n_chan=(32,), duration_h=0.5, int_s=60.0, seed=4,
                rfi_persistent=[9])
    flagcache.clear()
    s1 = _solve(ms, str(tmp_path / "a.h5"))
    h0, m0 = flagcache.STATS["hits"], flagcache.STATS["misses"]
    s2 = _solve(ms, str(tmp_path / "b.h5"))
    assert flagcache.STATS["hits"] > h0 and flagcache.STATS["misses"] == m0      # every read a hit
    assert s1["terms"]["K0"]["phases"]["flags"] > 0
    monkeypatch.setenv("ALAKAZAM_FLAG_CACHE", "0")
    _solve(ms, str(tmp_path / "c.h5"))
    assert flagcache.STATS["misses"] == m0                                       # off: not consulted
    _same(_terms(str(tmp_path / "b.h5")), _terms(str(tmp_path / "c.h5")))
    _same(_terms(str(tmp_path / "a.h5")), _terms(str(tmp_path / "b.h5")))
    assert s2["terms"]["G0"]["flagged"] == s1["terms"]["G0"]["flagged"]


def test_flags_are_recomputed_after_the_ms_changed_or_with_other_parameters(tmp_path):
    ms = str(tmp_path / "d.ms")
    simulate_ms(ms, n_ant=6, n_ant_extra=0, n_chan=(32,), duration_h=0.5, int_s=60.0, seed=5)
    flagcache.clear()
    _solve(ms, str(tmp_path / "a.h5"))
    m0 = flagcache.STATS["misses"]
    _solve(ms, str(tmp_path / "b.h5"), threshold=4.0)            # another RFI threshold
    assert flagcache.STATS["misses"] > m0
    m1 = flagcache.STATS["misses"]
    with table(ms, readonly=False, ack=False) as t:               # antenna C01 flagged by someone else
        f = t.getcol("FLAG")
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        f[(a1 == 1) | (a2 == 1)] = True
        t.putcol("FLAG", f)
    s = _solve(ms, str(tmp_path / "c.h5"), threshold=4.0)
    assert flagcache.STATS["misses"] > m1
    g = _terms(str(tmp_path / "c.h5"))["G0"]
    assert all(x.flags[1].all() for x in g) and not any(x.flags[0].all() for x in g)
    assert s["terms"]["G0"]["flagged"] > 0


def test_other_input_flags_of_the_same_rows_are_not_reused(tmp_path):
    """The same rows read with other flags (a uvrange in wavelengths flags channels in the reader) are
    flagged anew."""
    import types

    ms = str(tmp_path / "e.ms")
    simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(16,), duration_h=0.2, int_s=60.0, seed=6)
    from alakazam.core import ms_io

    cfg = types.SimpleNamespace(ms=ms, data_col="DATA", model_col="MODEL_DATA", smodel=None,
                                rfi_threshold=5.0)
    ch = ms_io.read_rows(ms, 0, [0])
    corr = ms_io.read_meta(ms).spws[0].corr_types
    flagcache.clear()
    a = flagcache.flags(cfg, ch, corr)
    ch.flag[:, :4] = True                              # the same rows, other flags as read
    m = flagcache.STATS["misses"]
    b = flagcache.flags(cfg, ch, corr)
    assert flagcache.STATS["misses"] == m + 1
    assert b[:, :4].all() and not np.array_equal(a, b)
