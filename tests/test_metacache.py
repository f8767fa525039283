"""core/metacache: inside keep(), a later task takes the MS metadata read by an earlier one while the
MS is unchanged; any change of the main table or of a sub-table reads it again; outside keep() every
task reads it (module docstring)."""

import numpy as np
import pytest
from casacore.tables import table

from alakazam.core import metacache, ms_io
from alakazam.core import ms as msmod
from alakazam.core.ms import MeasurementSet
from alakazam.sim import simulate_ms


@pytest.fixture
def ms(tmp_path):
    p = str(tmp_path / "m.ms")
    simulate_ms(p, n_ant=4, n_ant_extra=0, n_chan=(4,), duration_h=0.2, seed=3)
    metacache.clear()
    return p


def _meta(path):
    with MeasurementSet.open(path) as h:
        return h.meta


def _reads():
    return msmod.STATS["meta_reads"]


def test_outside_keep_every_task_reads(ms):
    n = _reads()
    a, b = _meta(ms), _meta(ms)
    assert _reads() == n + 2 and a is not b


def test_kept_while_unchanged_read_again_after_a_write(ms):
    with metacache.keep():
        n = _reads()
        a = _meta(ms)
        assert _meta(ms) is a and _reads() == n + 1            # the second task: no read
        ms_io.ensure_column(ms, "CORRECTED_DATA", like="DATA", init=False)    # the main table changes
        b = _meta(ms)
        assert b is not a and _reads() == n + 2 and "CORRECTED_DATA" in b.columns
        assert _meta(ms) is b
        with table(ms + "::ANTENNA", readonly=False, ack=False) as t:         # a sub-table changes
            names = list(t.getcol("NAME"))
            t.putcell("NAME", 1, "RENAMED")
        c = _meta(ms)
        assert c is not b and c.ant_names[1] == "RENAMED" and c.ant_names[0] == names[0]
        # the same values as a read of its own
        fresh = ms_io.read_meta_uncached(ms)
        assert fresh.ant_names == c.ant_names and fresh.columns == c.columns
        np.testing.assert_array_equal(fresh.ant_positions, c.ant_positions)
        assert [(s.scan_number, s.field_id, s.t_start, s.t_end) for s in fresh.scans] == \
            [(s.scan_number, s.field_id, s.t_start, s.t_end) for s in c.scans]
    assert _meta(ms) is not c                                  # outermost exit: dropped


def test_turned_off_by_the_environment(ms, monkeypatch):
    monkeypatch.setenv("ALAKAZAM_META_CACHE", "0")
    with metacache.keep():
        assert _meta(ms) is not _meta(ms)


def test_the_runner_blocks_read_it_once(ms, tmp_path):
    """readcache.Blocks (the YAML runner's scope): a solve block then an apply block read the MS's
    metadata once; after the ``with``, nothing is kept."""
    from alakazam.calibration.apply import run_apply
    from alakazam.config import apply_config_from_dict, solve_config_from_dict
    from alakazam.core import readcache
    from alakazam.flow import run_solve

    cal = str(tmp_path / "c.h5")
    n = _reads()
    with readcache.Blocks() as blocks:
        blocks.before("solve")
        run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant=0, jones=["G"],
                                              time_interval=["inf"], freq_interval=["full"], quiet=True)))
        blocks.before("apply")
        run_apply(apply_config_from_dict(dict(ms=ms, jones=["G0"], tables=[cal], quiet=True)))
        assert _reads() == n + 1
    assert not metacache._CACHE and not metacache.active()
