"""Two DATA_DESC_IDs of one SPW (a concatenated MS whose parts had different POLARIZATION set-ups):
refused before anything is read when they would go into one solution (plan.check_shared_spw).

A review (session 49): a bandpass over 'inf' spanning both, or K per scan with a scan split between
them, ran the whole solve and then stopped when writing, blaming 'two FIELD rows with one name'.  When
the two hold different scans and the solve is per scan, solve and apply are right (kept)."""

import os
import shutil

import pytest
from casacore.tables import table

from alakazam.errors import AlakazamError
from alakazam.sim import simulate_ms


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddid")
    ms = str(d / "b.ms")
    simulate_ms(ms, feed="circular", n_ant=5, n_chan=(8,), duration_h=1.0, scan_len_s=300.0, noise=0.05,
                seed=3, leakage=False, dead_ant=False, flag_rows=0.0)
    return ms


def _split(base, path, how):
    """A copy of ``base`` with DATA_DESC_ID 1 a copy of 0: 'byscan' moves scans >= 6 to it, 'half' half
    of the rows of 3C286's first scan."""
    shutil.copytree(base, path)
    with table(path + "::DATA_DESCRIPTION", readonly=False, ack=False) as t:
        t.copyrows(t, startrowin=0, startrowout=-1, nrow=1)
    with table(path, readonly=False, ack=False) as t:
        d, s, f = t.getcol("DATA_DESC_ID"), t.getcol("SCAN_NUMBER"), t.getcol("FIELD_ID")
        if how == "byscan":
            d[s >= 6] = 1
        else:
            first = s[f == f.min()].min()
            idx = (s == first).nonzero()[0]
            d[idx[: len(idx) // 2]] = 1
        t.putcol("DATA_DESC_ID", d)
    return path


def test_one_solution_from_two_ddids_is_refused_before_reading(base, tmp_path):
    from alakazam.caltasks import akcal

    ms = _split(base, str(tmp_path / "a.ms"), "byscan")
    cal = str(tmp_path / "a.h5")
    with pytest.raises(AlakazamError, match="DATA_DESC_IDs 0 and 1 .* both SPW 0") as e:
        akcal(vis=ms, caltable=cal, field="3C286", jones=["G"], solint=["inf"], refant="C00")
    assert "time_interval inf" in str(e.value) and "Split the MS by DATA_DESC_ID" in str(e.value)
    assert not os.path.exists(cal)
    # per scan: each scan in one DATA_DESC_ID, one solution each (as before)
    akcal(vis=ms, caltable=cal, field="3C286", jones=["G"], solint=["scan"], refant="C00")
    assert os.path.exists(cal)


def test_a_scan_split_between_two_ddids_is_refused(base, tmp_path):
    from alakazam.caltasks import akcal

    ms = _split(base, str(tmp_path / "h.ms"), "half")
    with pytest.raises(AlakazamError, match=r"DATA_DESC_IDs 0 and 1 .*\(scan \d+\)"):
        akcal(vis=ms, caltable=str(tmp_path / "h.h5"), field="3C286", jones=["K"], solint=["scan"],
              refant="C00")
