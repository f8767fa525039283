"""The solve plan (alakazam/plan.py) and the unit solver (alakazam/unit.py).

Conventions pinned here: a Unit is (step, field, SPW, scan group); ``units_of`` lists a step's units in
the in-process order (field, SPW, scan group); step-major and field-major are two orderings of the same
(step, field, SPW) batches; solving the units one by one (:func:`alakazam.unit.solve_unit`, what a dask
worker does) gives the same SolutionSets as solving a (field, SPW) batch in one call
(:func:`alakazam.unit.solve_field_spw`, the in-process driver).  That field-major and step-major runs
write the same file is tests/test_flow.py::test_field_major_equals_step_major.
"""

import numpy as np
import pytest

from alakazam import plan, unit
from alakazam.config import solve_config_from_dict
from alakazam.core import ms_io
from alakazam.core.ms import MeasurementSet
from alakazam.sim import simulate_ms

BLOCK = {"jones": ["K", "G", "G"], "field": ["3C286", "3C286", "3C286"],
         "time_interval": ["scan", "inf", "300s"], "freq_interval": ["full", "2MHz", "full"],
         "ref_ant": "C00"}


@pytest.fixture(scope="module")
def small_ms(tmp_path_factory):
    ms = str(tmp_path_factory.mktemp("plan") / "sim.ms")
    simulate_ms(ms, n_ant=5, n_chan=(8, 4), duration_h=1.0, int_s=120.0, noise=0.05, seed=7, leakage=False)
    return ms


def _cfg(ms, tmp_path, **extra):
    return solve_config_from_dict(dict(BLOCK, ms=ms, output=str(tmp_path / "c.h5"), quiet=True, **extra))


def test_units_of_a_step(small_ms, tmp_path):
    cfg = _cfg(small_ms, tmp_path)
    meta = ms_io.read_meta(small_ms)
    spw_sel = ms_io.resolve_spw(meta, "")
    fids = ms_io.resolve_fields(meta, "3C286")
    scans = sorted({s.scan_number for s in meta.scans if s.field_id == fids[0]})
    k, g_inf = cfg.steps[0], cfg.steps[1]
    units = plan.units_of(meta, 0, k, fids, spw_sel, None)
    # time_interval scan: one unit per (SPW, scan), in the order field, SPW, scan group
    assert [(u.fid, u.ddid, u.group.scan_id) for u in units] == \
        [(fids[0], d, sc) for d in spw_sel for sc in scans]
    assert all(u.batch == (0, u.fid, u.ddid) and u.step is k for u in units)
    # time_interval inf: one unit per SPW holding every scan (HDF5 group scan_0)
    units = plan.units_of(meta, 1, g_inf, fids, spw_sel, None)
    assert [(u.ddid, u.group.scan_id, u.group.scans) for u in units] == [(d, 0, scans) for d in spw_sel]
    assert plan.n_units(meta, k, fids, spw_sel, None) == len(scans) * len(spw_sel)
    # a scan selection restricts the units
    assert [u.group.scan_id for u in plan.units_of(meta, 0, k, fids, {0: spw_sel[0]}, scans[:1])] == scans[:1]


def test_two_orderings_of_the_same_batches():
    steps, fields, spw_sel = ["K", "G", "G"], [[0, 2]] * 3, {0: None, 1: None}
    sm = plan.step_major(steps, fields, spw_sel)
    fm = plan.field_major(steps, fields[0], spw_sel)
    assert sorted(sm) == sorted(fm) and len(set(sm)) == len(sm) == 3 * 2 * 2
    assert sm[:4] == [(0, 0, 0), (0, 0, 1), (0, 2, 0), (0, 2, 1)]          # a step over all its fields
    assert fm[:4] == [(0, 0, 0), (1, 0, 0), (2, 0, 0), (0, 0, 1)]          # a (field, SPW): every step
    # every step's batches keep the same relative order in both
    for i in range(3):
        assert [b for b in sm if b[0] == i] == sorted((b for b in fm if b[0] == i), key=fm.index)


def test_memory_plan_tiers(small_ms, tmp_path):
    meta = ms_io.read_meta(small_ms)
    spw_sel = ms_io.resolve_spw(meta, "")
    fids = [ms_io.resolve_fields(meta, "3C286")] * 3
    with MeasurementSet.open(small_ms) as ms:
        mp = plan.memory_plan(_cfg(small_ms, tmp_path), meta, spw_sel, None, fids, ms.row_counts)
        assert mp.tier == 1 and mp.field_major
        assert mp.n_rows_total == sum(ms.row_counts(d, fids[0], None)[(fids[0][0], s)]
                                      for d in spw_sel
                                      for s in {s.scan_number for s in meta.scans
                                                if s.field_id == fids[0][0] and d in s.ddids})
        assert not plan.memory_plan(_cfg(small_ms, tmp_path), meta, spw_sel, None, fids, ms.row_counts,
                                    allow_field_major=False).field_major
        assert not plan.memory_plan(_cfg(small_ms, tmp_path), meta, spw_sel, None, fids, ms.row_counts,
                                    use_dask=True).field_major
        small = plan.memory_plan(_cfg(small_ms, tmp_path, memory_limit_gb=1e-6), meta, spw_sel, None, fids,
                                 ms.row_counts)
        assert small.tier == 3 and not small.field_major and small.max_rows < mp.n_rows_total


def test_unit_by_unit_equals_the_batch(small_ms, tmp_path):
    """Solving each scan-group unit alone (a dask worker) = solving the (field, SPW) in one call, bitwise,
    in every memory tier the driver uses (tier 1 cache, tier 2 group reads)."""
    from alakazam.flow import _validate

    cfg, meta, rowsel, refs, spw_sel, scans, step_fields, ext = _validate(_cfg(small_ms, tmp_path))
    for tier in (1, 2):
        ctx = unit._Context(cfg, meta, refs[0], spw_sel, scans, 10 ** 9, tier, rowsel=rowsel, refs=refs)
        step = cfg.steps[0]                                    # K per scan: several units per (field, SPW)
        for ddid, chans in spw_sel.items():
            whole = unit.solve_field_spw(ctx, step, step_fields[0][0], ddid, chans)
            ctx.cache.clear()
            units = [u for u in plan.units_of(meta, 0, step, step_fields[0], spw_sel, scans)
                     if u.ddid == ddid]
            one = [unit.solve_unit(ctx, u) for u in units]
            assert len(whole) == len(one) > 1
            for a, b in zip(whole, one):
                assert a.attrs["scan_id"] == b.attrs["scan_id"]
                assert np.array_equal(a.jones, b.jones, equal_nan=True) and np.array_equal(a.flags, b.flags)
                assert np.array_equal(a.time, b.time) and np.array_equal(a.delay, b.delay, equal_nan=True)
