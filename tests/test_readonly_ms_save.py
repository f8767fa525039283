"""akflagmanager save on a read-only MS (a read-only mount, an archive owned by another account): the
save only reads FLAG and writes beside the MS (``MS.flagversions``), so it runs without alakazam's MS
lock when the lock file cannot be created (core/locks.writer_lock ``reads_only``); restore and delete,
which write, still refuse with the clear message.  It stopped with "the Measurement Set's directory
must be writable" (a review, with the MS bind-mounted read-only)."""

import errno
import os

import pytest

from alakazam.caltasks import akflagmanager
from alakazam.core import flagversions, locks
from alakazam.errors import AlakazamError


@pytest.fixture
def readonly_lock(monkeypatch):
    real = os.open

    def fake(path, flags, *a):
        if str(path).endswith("alakazam.lock"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(path, flags, *a)

    monkeypatch.setattr(os, "open", fake)


def test_save_without_the_lock_on_a_read_only_ms(sim_linear, tmp_path, readonly_lock):
    import shutil

    ms = str(tmp_path / "ro.ms")
    shutil.copytree(sim_linear[0], ms)
    with locks.writer_lock(ms, "ms", reads_only=True) as held:
        assert held is None
    with pytest.raises(AlakazamError, match="must be writable"):
        with locks.writer_lock(ms, "ms"):
            pass
    out = akflagmanager(vis=ms, mode="save", versionname="ro_s51")
    assert out["saved"] == "ro_s51" and "ro_s51" in flagversions.saved_order(ms)
    with pytest.raises(AlakazamError, match="must be writable"):
        akflagmanager(vis=ms, mode="restore", versionname="ro_s51")


def test_save_on_a_read_only_ms_still_sees_a_running_writer(sim_linear, tmp_path, monkeypatch):
    """The lock file exists but cannot be opened for writing (another account's run holds it): opened
    read-only, its lock is still seen -- the save refuses while that run writes, as on a writable MS."""
    import shutil
    import subprocess
    import sys
    import time

    ms = str(tmp_path / "ro.ms")
    shutil.copytree(sim_linear[0], ms)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from alakazam.core import locks\n"
        f"with locks.writer_lock({ms!r}, 'ms'):\n"
        "    print('held', flush=True); time.sleep(30)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        real = os.open

        def fake(path, flags, *a):
            if str(path).endswith("alakazam.lock") and flags & (os.O_RDWR | os.O_WRONLY):
                raise OSError(errno.EACCES, "Permission denied")
            return real(path, flags, *a)

        monkeypatch.setattr(os, "open", fake)
        with pytest.raises(locks.LockedError, match="in use by"):
            akflagmanager(vis=ms, mode="save", versionname="ro_busy")
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    out = akflagmanager(vis=ms, mode="save", versionname="ro_free")     # the holder gone: saved
    assert out["saved"] == "ro_free"


def test_writer_of_a_group_writable_ms_with_another_members_lock_file(sim_linear, tmp_path, monkeypatch):
    """A lock file another member created (644: not writable to this user) in a writable MS directory:
    the writer opens it read-only and takes its lock (flock needs no write access) instead of stopping
    with "the Measurement Set's directory must be writable" (a review); one it cannot open at all is an
    error that says a running writer could not be detected."""
    import shutil

    ms = str(tmp_path / "grp.ms")
    shutil.copytree(sim_linear[0], ms)
    lf = locks.lock_file_for(ms, "ms")
    open(lf, "w").close()
    real = os.open

    def fake(path, flags, *a):
        if str(path) == lf and flags & (os.O_RDWR | os.O_WRONLY):
            raise OSError(errno.EACCES, "Permission denied")
        return real(path, flags, *a)

    monkeypatch.setattr(os, "open", fake)
    with locks.writer_lock(ms, "ms") as held:
        assert held == lf

    def none(path, flags, *a):
        if str(path) == lf:
            raise OSError(errno.EACCES, "Permission denied")
        return real(path, flags, *a)

    monkeypatch.setattr(os, "open", none)
    with pytest.raises(AlakazamError, match="cannot open its lock file"):
        with locks.writer_lock(ms, "ms", reads_only=True):
            pass
