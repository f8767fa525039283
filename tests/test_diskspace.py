"""A full disk (alakazam/core/diskspace.py; REAL_DATA_HAZARDS: "disk full").

* the bytes of a new column and of a flag version are what the MS's rows need (per DATA_DESC_ID);
* akapply refuses up front when the filesystem lacks them, naming both figures, and writes nothing;
* a write that fails for lack of space (a real one: the process's file-size limit, RLIMIT_FSIZE, makes
  casacore's write fail) is undone -- no partial CORRECTED_DATA -- and said as a full disk, not a
  traceback; the run succeeds once there is room;
* a solution table whose write fails that way is left as it was.
"""

import errno
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    from alakazam.caltasks import akcal
    from alakazam.sim import simulate_ms

    d = tmp_path_factory.mktemp("disk")
    ms = str(d / "sim.ms")
    simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(64, 32), duration_h=0.5, int_s=30.0, scan_len_s=900.0,
                noise=0.01, seed=3, delays=False, leakage=False, crosshand=False, dead_ant=False)
    cal = str(d / "cal.h5")
    akcal(vis=ms, caltable=cal, jones=["G"], refant="C00")
    return ms, cal


def _copy(solved, tmp_path):
    ms = str(tmp_path / "c.ms")
    shutil.copytree(solved[0], ms)
    return ms


def test_column_and_flag_bytes(solved):
    from casacore.tables import table, taql

    from alakazam.core import diskspace

    ms = solved[0]
    want = 0
    with table(ms, ack=False) as t:
        for dd in sorted(set(t.getcol("DATA_DESC_ID"))):
            q = taql(f"select DATA from $t where DATA_DESC_ID=={dd}")
            want += q.getcol("DATA").nbytes          # complex64: 8 bytes per sample
            q.close()
    assert diskspace.column_bytes(ms, "DATA") == want
    assert diskspace.flag_bytes(ms) == want // 8 // 8      # one bit per sample


def test_apply_refused_up_front(solved, tmp_path, monkeypatch):
    from casacore.tables import table

    from alakazam.caltasks import akapply
    from alakazam.core import diskspace
    from alakazam.errors import AlakazamError

    ms = _copy(solved, tmp_path)
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: 1000)
    with pytest.raises(AlakazamError, match=r"not enough disk space for CORRECTED_DATA .* needs about "
                                            r"[\d.]+ MB .* has 1.0 kB free\. Nothing was written"):
        akapply(vis=ms, gaintable=[solved[1]], jones=["G0"])
    with table(ms, ack=False) as t:
        assert "CORRECTED_DATA" not in t.colnames()
    assert not os.path.exists(ms + ".flagversions")


def test_flag_version_refused_up_front(solved, tmp_path, monkeypatch):
    from alakazam.core import diskspace, flagversions
    from alakazam.errors import AlakazamError

    ms = _copy(solved, tmp_path)
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: 10)
    with pytest.raises(AlakazamError, match="not enough disk space for flag version"):
        flagversions.save(ms, task="akflag")
    assert flagversions.list_versions(ms) == []


APPLY = """
import resource, signal, sys
from alakazam.caltasks import akapply
from alakazam.errors import AlakazamError
if sys.argv[3] != "0":
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # a failed write, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
try:
    akapply(vis=sys.argv[1], gaintable=[sys.argv[2]], jones=["G0"])
except AlakazamError as e:
    print("ERROR", e)
    sys.exit(2)
print("OK")
"""


def _apply(ms, cal, limit):
    env = dict(os.environ, ALAKAZAM_NO_PROGRESS="1",
               PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    return subprocess.run([sys.executable, "-c", APPLY, ms, cal, str(limit)], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize("where", ["snapshot", "column"])
def test_write_failing_for_space_is_undone_and_said(solved, tmp_path, where):
    """The file-size limit stops the recovery snapshot's copies (``snapshot``) or only the new
    column's file (``column``: above every other file the apply writes)."""
    from casacore.tables import table

    from alakazam.core import diskspace

    ms = _copy(solved, tmp_path)
    with table(ms, ack=False) as t:
        data = t.getcol("DATA", 0, 5)
    other = max(os.path.getsize(os.path.join(ms, f)) for f in os.listdir(ms)
                if os.path.isfile(os.path.join(ms, f)) and "_TSM" not in f)
    limit = 1000 if where == "snapshot" else other + 65536
    assert limit < diskspace.column_bytes(ms) // 2
    r = _apply(ms, solved[1], limit)
    assert r.returncode == 2, r.stdout + r.stderr[-3000:]
    assert ("the apply's recovery snapshot" if where == "snapshot" else "writing CORRECTED_DATA") in r.stdout
    assert "the disk is full" in r.stdout and "Traceback" not in r.stdout + r.stderr
    with table(ms, ack=False) as t:                  # no partial column; the MS reads as before
        assert "CORRECTED_DATA" not in t.colnames()
        np.testing.assert_array_equal(t.getcol("DATA", 0, 5), data)
    assert not any(n.startswith("alakazam.apply.bak") for n in os.listdir(ms))
    r = _apply(ms, solved[1], 0)                     # room again: the run finishes
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]
    with table(ms, ack=False) as t:
        assert "CORRECTED_DATA" in t.colnames()


def test_solution_table_unchanged_when_its_write_fails(solved, tmp_path):
    from alakazam.errors import AlakazamError
    from alakazam.io import hdf5

    path = str(tmp_path / "t.h5")
    shutil.copy(solved[1], path)
    before = open(path, "rb").read()
    with pytest.raises(AlakazamError,
                       match=r"the solution table .* \(it is unchanged\) failed: the disk is full"):
        with hdf5._AtomicFile(path) as f:
            f.attrs["x"] = 1
            raise OSError(errno.ENOSPC, "No space left on device")
    assert open(path, "rb").read() == before
    assert [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")] == []
