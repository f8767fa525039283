"""akexport's output path and MS, checked before anything is written (a review, session 41;
caltasks/akexport.py, io/casatable.export):

* a casatable that is a dangling symbolic link, or whose path goes through a missing directory
  ('.hidden/../x.tb'), passed the checks, the whole table was written and the final rename failed
  naming the internal temporary; a parent that is a file was "a directory that does not exist";
* a table whose recorded MS is gone failed after the Begin line saying "give vis=";
* a --vis that is not the solutions' MS was taken without a word (akapply warns);
* a kill -9 left the hidden temporary ``.<name>.akpartial<PID>``, which no later export removed.
"""

import logging
import os
import shutil

import pytest

from alakazam.caltasks import akexport
from alakazam.errors import ParameterError


def _errors(call):
    with pytest.raises(ParameterError) as e:
        call()
    return {k: " ".join(v) for k, v in e.value.errors.items()}


def test_output_paths_refused_before_writing(small_chain_table, tmp_path):
    _, cal, _ = small_chain_table
    os.symlink(str(tmp_path / "missing"), str(tmp_path / "d.tb"))
    e = _errors(lambda: akexport(caltable=cal, jones="G0", casatable=str(tmp_path / "d.tb")))
    assert "is a symbolic link to" in e["casatable"] and "does not exist" in e["casatable"]
    through = str(tmp_path / ".hidden" / ".." / "x.tb")
    e = _errors(lambda: akexport(caltable=cal, jones="G0", casatable=through))
    assert "does not exist" in e["casatable"] and ".hidden" in e["casatable"]
    (tmp_path / "afile").write_text("x")
    e = _errors(lambda: akexport(caltable=cal, jones="G0", casatable=str(tmp_path / "afile" / "x.tb")))
    assert "is not a directory" in e["casatable"]
    assert sorted(os.listdir(tmp_path)) == ["afile", "d.tb"]                  # nothing written


def test_a_moved_ms_is_a_parameter_error(small_chain_table, tmp_path):
    ms, cal, _ = small_chain_table
    moved = str(tmp_path / "cal.h5")
    shutil.copy(cal, moved)
    import h5py

    from alakazam.io import hdf5

    gone = str(tmp_path / "sim.ms")             # a table whose recorded MS is nowhere
    with h5py.File(moved, "r+") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Group) and "ms" in obj.attrs:
                obj.attrs["ms"] = gone + ".moved"
        f.visititems(visit)
    assert hdf5.read_term(moved, "G0")[0].attrs["ms"].endswith(".moved")
    e = _errors(lambda: akexport(caltable=moved, jones="G0", casatable=str(tmp_path / "g.tb")))
    assert e["vis"].startswith("is required: the Measurement Set the solutions record")
    assert "moved" in e["vis"]
    akexport(caltable=moved, jones="G0", casatable=str(tmp_path / "g.tb"), vis=ms)     # with vis: written


def test_another_ms_is_said(small_chain_table, tmp_path, caplog):
    ms, cal, _ = small_chain_table
    other = str(tmp_path / "other.ms")
    shutil.copytree(ms, other)
    with caplog.at_level(logging.WARNING, logger="alakazam.export"):
        akexport(caltable=cal, jones="G1", casatable=str(tmp_path / "a.tb"), vis=ms)
    assert "another MS" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="alakazam.export"):
        akexport(caltable=cal, jones="G1", casatable=str(tmp_path / "b.tb"), vis=other)
    assert "G1: solved on" in caplog.text and "(another MS; antennas matched by name)" in caplog.text


def test_a_killed_exports_temporary_is_removed(small_chain_table, tmp_path):
    import subprocess

    _, cal, _ = small_chain_table
    p = subprocess.Popen(["sleep", "0"])
    p.wait()                                    # a PID that no longer runs
    stale = tmp_path / f".g.tb.akpartial{p.pid}"
    stale.mkdir()
    (stale / "table.dat").write_text("half")
    alive = tmp_path / f".g.tb.akpartial{os.getppid()}"           # a running process's: kept
    alive.mkdir()
    akexport(caltable=cal, jones="G0", casatable=str(tmp_path / "g.tb"))
    assert not stale.exists() and alive.exists() and (tmp_path / "g.tb").is_dir()
