"""Flag versions CASA and alakazam both restore (alakazam/core/flagversions.py, core/flagtable.py).

Without CASA: the saved version is a casacore table of CASA's layout, restores (replace / or / and)
match the numpy definition of CASA's merge, older ``.npz`` versions still restore, a version from
another MS is refused, and a save killed (SIGKILL) mid-write leaves no version.  With a CASA install
(/work/casavenv, or $ALAKAZAM_CASA_PYTHON; the tests skip without it): CASA's flagmanager restores
alakazam's versions, and alakazam restores CASA's (flagmanager save, flagdata's autosave), each giving
the same FLAG and FLAG_ROW as the other tool's restore, for every merge.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from casacore.tables import table

from alakazam.core import flagtable, flagversions
from alakazam.errors import AlakazamError
from alakazam.sim import simulate_ms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from signal_child import signal_when_writing  # noqa: E402  (tests/signal_child.py)
from casa_python import casa_python  # noqa: E402  (tests/casa_python.py)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASA_PY = casa_python() or ""
MERGE = {"replace": lambda cur, saved: saved, "or": np.logical_or, "and": np.logical_and}


@pytest.fixture(scope="module")
def base_ms(tmp_path_factory):
    """Two SPWs of different FLAG shapes (8 and 4 channels): rows of two cell shapes, interleaved."""
    ms = str(tmp_path_factory.mktemp("fv") / "base.ms")
    simulate_ms(ms, n_ant=4, n_ant_extra=1, n_chan=(8, 4), duration_h=0.5, int_s=120.0, scan_len_s=600.0,
                noise=0.05, seed=3, leakage=False, dead_ant=False, flag_rows=0.0)
    return ms


@pytest.fixture
def ms(base_ms, tmp_path):
    p = str(tmp_path / "v.ms")
    shutil.copytree(base_ms, p)
    return p


def flags(path):
    """(list of FLAG cells, FLAG_ROW) of an MS or a flag-version table, row by row."""
    with table(path, ack=False) as t:
        return [t.getcell("FLAG", r) for r in range(t.nrows())], t.getcol("FLAG_ROW")


def set_random_flags(path, seed):
    rng = np.random.default_rng(seed)
    with table(path, readonly=False, ack=False) as t:
        for r in range(t.nrows()):
            t.putcell("FLAG", r, rng.random(t.getcell("FLAG", r).shape) < 0.3)
        t.putcol("FLAG_ROW", rng.random(t.nrows()) < 0.3)
    return flags(path)


def assert_same(a, b):
    assert len(a[0]) == len(b[0])
    for x, y in zip(a[0], b[0]):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a[1], b[1])


def merged(cur, saved, merge):
    op = MERGE[merge]                       # the numpy definition of CASA's merge
    return [op(c, s) for c, s in zip(cur[0], saved[0])], op(cur[1], saved[1])


# --------------------------------------------------------------------------------------------------
# the format
# --------------------------------------------------------------------------------------------------
def test_saved_version_is_a_casa_flag_table(ms):
    saved = set_random_flags(ms, 1)
    name = flagversions.save(ms, task="akflag", comment="before akflag")
    p = os.path.join(ms + ".flagversions", "flags." + name)
    assert flagversions.version_path(ms, name) == p and os.path.isfile(os.path.join(p, "table.dat"))
    assert not os.path.exists(p + ".npz")
    with table(p, ack=False) as v, table(ms, ack=False) as t:
        assert v.colnames() == ["FLAG", "FLAG_ROW"] and v.nrows() == t.nrows()
        d = v.getcoldesc("FLAG")
        assert (d["valueType"], d["ndim"], d["dataManagerType"]) == ("boolean", 2, "TiledShapeStMan")
        assert v.isvarcol("FLAG") and v.getdminfo("FLAG")["NAME"] == "TiledFlag"
        assert v.getcoldesc("FLAG_ROW")["valueType"] == "boolean"
        assert v.getdminfo("FLAG_ROW")["TYPE"] == "StandardStMan"
        assert list(v.getkeywords()) == [flagtable.SAVED_KEY]          # CASA's tables have none
    assert_same(flags(p), saved)                                        # row i = MS row i, every row
    with open(os.path.join(ms + ".flagversions", "FLAG_VERSION_LIST")) as fh:
        assert fh.read() == f"{name} : before akflag\n"
    (v,) = flagversions.list_versions(ms)
    assert (v["name"], v["comment"], v["format"]) == (name, "before akflag", "table") and v["time"]


@pytest.mark.parametrize("merge", ["replace", "or", "and"])
def test_restore_merges_flag_and_flag_row_like_casa(ms, merge):
    saved = set_random_flags(ms, 1)
    flagversions.save(ms, name="v1")
    cur = set_random_flags(ms, 2)
    flagversions.restore(ms, "v1", merge=merge)
    assert_same(flags(ms), merged(cur, saved, merge))


def _write_npz_version(ms, name, comment):
    """A version in the format earlier alakazam wrote (the module docstring's keys), CHUNK_ROWS rows
    per packed chunk."""
    with table(ms, ack=False) as t:
        meta = {"name": name, "comment": comment, "time": "2026-01-02 03:04:05"}
        arrays = {"meta": np.array(json.dumps(meta)), "flag_row": t.getcol("FLAG_ROW")}
        for dd, rows in flagtable.ddid_rows(t, 1000).items():
            parts = []
            for s in range(0, len(rows), flagversions.CHUNK_ROWS):
                f = flagtable.get_flag(t, rows[s:s + flagversions.CHUNK_ROWS])
                parts.append(np.packbits(f.reshape(-1)))
            arrays[f"rows_{dd}"] = rows
            arrays[f"shape_{dd}"] = np.array((len(rows),) + f.shape[1:], np.int64)
            arrays[f"chunks_{dd}"] = np.array([len(p) for p in parts], np.int64)
            arrays[f"bits_{dd}"] = np.concatenate(parts)
    os.makedirs(ms + ".flagversions", exist_ok=True)
    np.savez(os.path.join(ms + ".flagversions", f"flags.{name}.npz"), **arrays)
    with open(os.path.join(ms + ".flagversions", "FLAG_VERSION_LIST"), "a") as fh:
        fh.write(f"{name} : {comment}\n")


@pytest.mark.parametrize("merge", ["replace", "or"])
def test_older_npz_versions_still_listed_restored_deleted(ms, merge):
    saved = set_random_flags(ms, 4)
    _write_npz_version(ms, "akflag_1", "old")
    assert flagversions.next_name(ms, "akflag") == "akflag_2"
    name = flagversions.save(ms, task="akflag")
    assert name == "akflag_2"
    v = flagversions.list_versions(ms)
    assert [(x["name"], x["format"]) for x in v] == [("akflag_1", "npz"), ("akflag_2", "table")]
    assert v[0]["time"] == "2026-01-02 03:04:05" and v[0]["comment"] == "old"
    cur = set_random_flags(ms, 5)
    flagversions.restore(ms, "akflag_1", merge=merge)
    assert_same(flags(ms), merged(cur, saved, merge))
    flagversions.delete(ms, "akflag_1")
    assert not os.path.exists(ms + ".flagversions/flags.akflag_1.npz")
    assert [x["name"] for x in flagversions.list_versions(ms)] == ["akflag_2"]


def _casa_like_table(ms, name, comment):
    """A flag-version table with exactly the layout CASA 6.7 writes (no keywords; 1 MB tiles)."""
    from casacore.tables import makearrcoldesc, makescacoldesc, maketabdesc

    d = ms + ".flagversions"
    os.makedirs(d, exist_ok=True)
    desc = maketabdesc([makearrcoldesc("FLAG", False, ndim=2, valuetype="boolean",
                                       datamanagertype="TiledShapeStMan", datamanagergroup="TiledFlag"),
                        makescacoldesc("FLAG_ROW", False, valuetype="boolean")])
    dm = {"*1": {"TYPE": "TiledShapeStMan", "NAME": "TiledFlag", "COLUMNS": ["FLAG"],
                 "SPEC": {"DEFAULTTILESHAPE": np.array([4, 8, 262144], np.int32)}},
          "*2": {"TYPE": "StandardStMan", "NAME": "StandardStMan", "COLUMNS": ["FLAG_ROW"],
                 "SPEC": {"BUCKETSIZE": 128}}}
    fl, fr = flags(ms)
    with table(os.path.join(d, "flags." + name), desc, nrow=len(fr), dminfo=dm, ack=False) as v:
        for r, f in enumerate(fl):
            v.putcell("FLAG", r, f)
        v.putcol("FLAG_ROW", fr)
    with open(os.path.join(d, "FLAG_VERSION_LIST"), "a") as fh:
        fh.write(f"{name} : {comment}\n")


def test_casa_written_tables_listed_restored_deleted_by_akflagmanager(ms):
    from alakazam.caltasks import akflagmanager

    saved = set_random_flags(ms, 6)
    _casa_like_table(ms, "flagdata_1", "Flags autosave on 2026-11-30 19:24:36")
    assert flagversions.next_name(ms, "flagdata") == "flagdata_2"
    lst = akflagmanager(vis=ms, mode="list")["versions"]
    assert [(v["name"], v["comment"], v["time"], v["format"]) for v in lst] == [
        ("flagdata_1", "Flags autosave on 2026-11-30 19:24:36", "", "table")]
    cur = set_random_flags(ms, 7)
    akflagmanager(vis=ms, mode="restore", versionname="flagdata_1", merge="and")
    assert_same(flags(ms), merged(cur, saved, "and"))
    akflagmanager(vis=ms, mode="restore", versionname="flagdata_1")
    assert_same(flags(ms), saved)
    akflagmanager(vis=ms, mode="delete", versionname="flagdata_1")
    # each restore first saved the flags it replaced (flagmanager_1, _2; CASA's restore saves none)
    assert sorted(os.listdir(ms + ".flagversions")) == ["FLAG_VERSION_LIST", "flags.flagmanager_1",
                                                        "flags.flagmanager_2"]
    assert [v["name"] for v in akflagmanager(vis=ms, mode="list")["versions"]] == ["flagmanager_1",
                                                                                  "flagmanager_2"]
    akflagmanager(vis=ms, mode="restore", versionname="flagmanager_1")      # the flags before the first
    assert_same(flags(ms), cur)


def test_version_of_another_ms_refused_before_writing(ms, tmp_path):
    other = str(tmp_path / "other.ms")
    simulate_ms(other, n_ant=4, n_ant_extra=1, n_chan=(8, 4), duration_h=0.25, int_s=120.0,
                scan_len_s=600.0, noise=0.05, seed=3, leakage=False, dead_ant=False, flag_rows=0.0)
    flagversions.save(other, name="x")
    os.makedirs(ms + ".flagversions")
    shutil.copytree(other + ".flagversions/flags.x", ms + ".flagversions/flags.x")
    before = flags(ms)
    with pytest.raises(AlakazamError, match="rows but the MS has .*another MS"):
        flagversions.restore(ms, "x")
    assert_same(flags(ms), before)
    with pytest.raises(AlakazamError, match="not found .*saved: none"):
        flagversions.restore(ms, "nope")
    with pytest.raises(AlakazamError, match="merge: 'xor'"):
        flagversions.restore(ms, "x", merge="xor")


def test_save_killed_midway_leaves_no_version(ms, tmp_path):
    """SIGKILL while the first version is being written: no <ms>.flagversions (it is made beside the MS
    under a temporary name and renamed into place whole), nothing listed; the next save removes the
    leftover and takes the same name."""
    saved = flags(ms)
    script = tmp_path / "killme.py"
    script.write_text(textwrap.dedent(f"""
        import time
        from alakazam.core import flagtable, flagversions
        real = flagtable.put_flag
        def slow(t, rows, f):
            real(t, rows, f)
            t.flush()
            print("writing", flush=True)
            time.sleep(60)
        flagtable.put_flag = slow
        flagversions.save({ms!r}, task="akflag")
    """))
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, env=env)
    signal_when_writing(p, signal.SIGKILL)
    d = ms + ".flagversions"
    assert not os.path.exists(d)
    stage = [f for f in os.listdir(tmp_path) if f.startswith(".tmp-v.ms.flagversions.")]
    assert stage == [f".tmp-v.ms.flagversions.{socket.gethostname()}.{p.pid}"], os.listdir(tmp_path)
    left = os.listdir(tmp_path / stage[0])
    assert len(left) == 1 and left[0].startswith(".tmp.") and left[0].endswith(".flags.akflag_1"), left
    assert flagversions.list_versions(ms) == [] and flagversions.version_path(ms, "akflag_1") is None
    assert flagversions.save(ms, task="akflag") == "akflag_1"
    assert sorted(os.listdir(d)) == ["FLAG_VERSION_LIST", "flags.akflag_1"]
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]     # leftover removed
    assert_same(flags(d + "/flags.akflag_1"), saved)


def test_save_failing_midway_leaves_nothing(ms, monkeypatch):
    def boom(t, rows, f):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(flagtable, "put_flag", boom)
    from alakazam.errors import AlakazamError

    # said as a full disk (core/diskspace.py), with the system's own words, after the cleanup
    with pytest.raises(AlakazamError, match=r"disk is full .*No space left on device"):
        flagversions.save(ms, task="akapply")
    # not even the directory (it stayed, empty, before), nor its temporary beside the MS
    assert not os.path.exists(ms + ".flagversions")
    assert not [f for f in os.listdir(os.path.dirname(ms)) if f.startswith(".tmp")]


# --------------------------------------------------------------------------------------------------
# with CASA (casatools / casatasks in another Python: tests run in a venv without them)
# --------------------------------------------------------------------------------------------------
needs_casa = pytest.mark.skipif(not os.access(CASA_PY, os.X_OK), reason=f"no CASA Python at {CASA_PY}")


def run_casa(cwd, code):
    """Run ``code`` with CASA's Python in ``cwd`` (its casa-*.log files land there)."""
    r = subprocess.run([CASA_PY, "-c", "import casatasks\n" + textwrap.dedent(code)], cwd=str(cwd),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    logs = "".join(open(os.path.join(cwd, f)).read() for f in os.listdir(cwd) if f.startswith("casa-"))
    return logs


@needs_casa
def test_casa_restores_alakazam_versions_like_alakazam(ms, tmp_path):
    saved = set_random_flags(ms, 11)
    name = flagversions.save(ms, task="akapply", comment="akapply: before flagging")
    cur = set_random_flags(ms, 12)
    copies = {}
    for merge in MERGE:
        copies[merge] = str(tmp_path / f"{merge}.ms")
        shutil.copytree(ms, copies[merge])
        shutil.copytree(ms + ".flagversions", copies[merge] + ".flagversions")
    logs = run_casa(tmp_path, f"""
        casatasks.flagmanager(vis={ms!r}, mode='list')
        for merge, vis in {copies!r}.items():
            casatasks.flagmanager(vis=vis, mode='restore', versionname={name!r}, merge=merge)
        casatasks.flagmanager(vis={copies['or']!r}, mode='delete', versionname={name!r})
    """)
    assert f"{name} : akapply: before flagging" in logs and "does not exist" not in logs
    for merge, vis in copies.items():
        expect = merged(cur, saved, merge)
        assert_same(flags(vis), expect)                                     # CASA's restore
        if merge != "or":
            set_random_flags(vis, 12)
            flagversions.restore(vis, name, merge=merge)                    # alakazam's: the same
            assert_same(flags(vis), expect)
    assert flagversions.list_versions(copies["or"]) == []                   # CASA's delete
    assert not os.path.exists(copies["or"] + f".flagversions/flags.{name}")


@needs_casa
def test_alakazam_restores_casa_versions_like_casa(ms, tmp_path):
    saved = set_random_flags(ms, 21)
    shutil.copytree(ms, str(tmp_path / "ref.ms"))
    # CASA: a flagmanager save, then flagdata (its autosave flagdata_1 holds `saved`), then its restores
    cur_path = str(tmp_path / "cur.ms")
    shutil.copytree(ms, cur_path)
    cur = set_random_flags(cur_path, 22)
    copies = {m: str(tmp_path / f"casa_{m}.ms") for m in MERGE}
    for vis in copies.values():
        shutil.copytree(cur_path, vis)
    logs = run_casa(tmp_path, f"""
        import shutil
        casatasks.flagmanager(vis={ms!r}, mode='save', versionname='mine', comment='by CASA')
        casatasks.flagdata(vis={ms!r}, mode='manual', antenna='C00', flagbackup=True)
        for merge, vis in {copies!r}.items():
            shutil.copytree({ms!r} + '.flagversions', vis + '.flagversions')
            casatasks.flagmanager(vis=vis, mode='restore', versionname='flagdata_1', merge=merge)
    """)
    assert "SEVERE" not in logs
    lst = flagversions.list_versions(ms)
    assert [(v["name"], v["format"]) for v in lst] == [("mine", "table"), ("flagdata_1", "table")]
    assert lst[0]["comment"] == "by CASA" and lst[1]["comment"].startswith("Flags autosave on ")
    assert flagversions.next_name(ms, "flagdata") == "flagdata_2"
    assert_same(flags(ms + ".flagversions/flags.mine"), saved)
    # what CASA writes, pinned (core/flagtable.py's docstring)
    with table(ms + ".flagversions/flags.flagdata_1", ack=False) as v:
        assert v.colnames() == ["FLAG", "FLAG_ROW"] and v.getkeywords() == {}
        assert v.getdminfo("FLAG")["TYPE"] == "TiledShapeStMan" and v.isvarcol("FLAG")
        assert v.getdminfo("FLAG_ROW")["TYPE"] == "StandardStMan"
    assert_same(flags(ms + ".flagversions/flags.flagdata_1"), saved)        # every row, not the selection
    assert not np.array_equal(flags(ms)[1], saved[1]) or any(
        not np.array_equal(a, b) for a, b in zip(flags(ms)[0], saved[0]))  # flagdata changed FLAG
    for merge, vis in copies.items():
        ours = str(tmp_path / f"ak_{merge}.ms")
        shutil.copytree(cur_path, ours)
        shutil.copytree(ms + ".flagversions", ours + ".flagversions")
        flagversions.restore(ours, "flagdata_1", merge=merge)
        assert_same(flags(ours), flags(vis))                                # identical to CASA's restore
        assert_same(flags(ours), merged(cur, saved, merge))
    flagversions.delete(ms, "mine")
    logs = run_casa(tmp_path, f"casatasks.flagmanager(vis={ms!r}, mode='list')\n")
    assert "does not exist" not in logs
    with open(ms + ".flagversions/FLAG_VERSION_LIST") as fh:
        assert [ln.split(" : ")[0] for ln in fh] == ["flagdata_1"]


def test_undo_puts_flag_back_and_removes_the_table_version_and_its_line(ms):
    """akshell's undo (core/undo.py): FLAG back from the version the interrupted task saved, then the
    version's table and its FLAG_VERSION_LIST line removed (CASA would warn about a listed, missing one)."""
    from alakazam.core import undo

    before = set_random_flags(ms, 31)
    flagversions.save(ms, name="kept")
    with pytest.raises(KeyboardInterrupt), undo.transaction(ms=ms):
        flagversions.save(ms, task="akflag")
        set_random_flags(ms, 32)
        raise KeyboardInterrupt
    assert_same(flags(ms), before)
    assert sorted(os.listdir(ms + ".flagversions")) == ["FLAG_VERSION_LIST", "flags.kept"]
    assert [v["name"] for v in flagversions.list_versions(ms)] == ["kept"]
    with open(ms + ".flagversions/FLAG_VERSION_LIST") as fh:
        assert fh.read() == "kept : akflag\n"
