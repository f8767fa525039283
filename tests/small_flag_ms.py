"""Test helper: the small simulated MS of the akflag tests (4 + 1 antennas, 8 channels, 30 min) -- built
once per module by the ``base_ms`` fixture, copied per test by the ``ms`` fixture -- and column getters /
setters.  Shared by tests/test_flagging.py, test_review_s24_flag.py and test_review_s43_tasks.py, which
import the two fixtures (each had a copy of them)."""

import shutil

import pytest

from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def base_ms(tmp_path_factory):
    d = tmp_path_factory.mktemp("flag_base")
    ms = str(d / "small.ms")
    simulate_ms(ms, n_ant=4, n_ant_extra=1, n_chan=(8,), duration_h=0.5, int_s=60.0, scan_len_s=600.0,
                noise=0.05, seed=3, leakage=False, dead_ant=False, flag_rows=0.0)
    return ms


@pytest.fixture
def ms(base_ms, tmp_path):
    out = str(tmp_path / "work.ms")
    shutil.copytree(base_ms, out)
    return out


def cols(ms, *names):
    from casacore.tables import table

    with table(ms, ack=False) as t:
        return [t.getcol(n) for n in names]


def put(ms, name, value):
    from casacore.tables import table

    with table(ms, readonly=False, ack=False) as t:
        t.putcol(name, value)
