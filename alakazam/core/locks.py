"""One writer per solution table and per Measurement Set: advisory ``fcntl.flock`` locks.

Convention (pinned by tests/test_reliability.py):

* A solution table ``dir/cal.h5`` is locked through the sidecar ``dir/.cal.h5.lock``; a symlinked
  table locks its target (``os.path.realpath``), so two names of one file share one lock.
* A Measurement Set ``x.ms`` is locked through ``x.ms/alakazam.lock`` (inside the MS directory, as
  casacore keeps its own ``table.lock`` there).
* The lock is exclusive and non-blocking: a second writer fails at once with
  :class:`LockedError` "``<path>`` is in use by PID N (command); lock file ``<file>``".  The holder
  writes ``PID command`` into the lock file for that message.
* The kernel releases the lock when the holder exits in any way (kill -9 included); the lock file
  itself is left in place (deleting it would race with a new holder) and is harmless.
* Locks are re-entrant within a thread (a solve holding its table's lock writes through
  :mod:`alakazam.io.hdf5`, which takes the same lock); another thread of the same process is refused
  like another process.
* Readers do not lock: solution tables are only ever replaced whole (``os.replace``), so a reader sees
  the old or the new file.
* On a file system without lock support (``ENOLCK``/``EOPNOTSUPP``) the run continues with a warning.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sys
import threading
from contextlib import contextmanager

from ..errors import AlakazamError

log = logging.getLogger("alakazam.locks")

_held = {}                      # lock file -> [fd, count, thread ident]
_mutex = threading.Lock()


class LockedError(AlakazamError):
    """Another run holds the writer lock of a table or MS."""


def lock_file_for(path, kind="table") -> str:
    """The lock file of ``path``: ``kind`` 'table' (sidecar ``.name.lock``) or 'ms' (``ms/alakazam.lock``)."""
    real = os.path.realpath(str(path))
    if kind == "ms":
        return os.path.join(real, "alakazam.lock")
    d, b = os.path.split(real)
    return os.path.join(d, f".{b}.lock")


def _holder(lock_file) -> str:
    """"PID N (command)" of the lock's holder.  The holder writes that line just after taking the lock,
    so a contender arriving in between finds the file empty: it looks again for up to 0.5 s."""
    import time

    text = ""
    for _ in range(26):
        try:
            with open(lock_file) as fh:
                text = fh.read(400).strip()
        except OSError:
            text = ""
        if text:
            break
        time.sleep(0.02)
    if not text:
        return "another process"
    pid, _, cmd = text.partition(" ")
    return f"PID {pid} ({cmd})" if cmd else f"PID {pid}"


def _command() -> str:
    cmd = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)) or "python"
    return cmd[:200]


@contextmanager
def writer_lock(path, kind="table", reads_only=False):
    """Hold the exclusive writer lock of ``path`` (a solution table or, ``kind='ms'``, an MS) for the
    ``with`` body; raises :class:`LockedError` at once when another run holds it.

    ``reads_only``: the body only reads ``path`` (akflagmanager save writes beside the MS, in
    ``MS.flagversions``): where the lock file cannot be created because the directory is read-only to
    this user (a read-only mount, an archive owned by another account), the body runs without the lock
    (an INFO line says so; yields None) instead of failing -- FLAG cannot change under it through this
    user, and a save needs no more."""
    lf = lock_file_for(path, kind)
    me = threading.get_ident()
    with _mutex:
        if lf in _held:
            if _held[lf][2] != me:
                raise LockedError(f"{path} is in use by another thread of this process; lock file {lf}")
            _held[lf][1] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield lf
        finally:
            with _mutex:
                _held[lf][1] -= 1
        return
    what = "Measurement Set" if kind == "ms" else "solution table"
    try:
        fd = os.open(lf, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        fd = None
        other = e.errno in (errno.EACCES, errno.EPERM) and os.access(os.path.dirname(lf), os.W_OK)
        if os.path.exists(lf) and (other or (reads_only and e.errno in (errno.EROFS, errno.EACCES,
                                                                           errno.EPERM))):
            # an existing lock file of another account in a writable directory (a group-writable MS), or
            # a read-only MS for a task that only reads it: opened read-only, its lock is still taken and
            # seen (flock needs no write access; only our PID is not written) -- the first stopped every
            # writer of a group-writable MS once another member had locked it (a review)
            try:
                fd = os.open(lf, os.O_RDONLY)
            except OSError:
                raise AlakazamError(f"{path}: cannot open its lock file {lf} ({e.strerror}), so a run "
                                    "writing it cannot be detected; ask the file's owner to make it "
                                    "readable") from None
        elif reads_only and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            # never locked, and the directory is read-only to this user: no writer of this account can
            # run there either; a save (which only reads) goes on
            log.info("%s: read-only here (%s): read without alakazam's lock", path, e.strerror)
            yield None
            return
        if fd is None:
            raise AlakazamError(f"{path}: cannot create the lock file {lf} ({e.strerror}); the {what}'s "
                                f"directory must be writable") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            os.close(fd)
            raise LockedError(f"{what} {path} is in use by {_holder(lf)}; lock file {lf}. Wait for that "
                              "run to finish (one writer at a time).") from None
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP):
            log.warning("%s: the file system does not support locks; concurrent writers are not detected",
                        path)
        else:
            os.close(fd)
            raise
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {_command()}\n".encode())
    except OSError:
        pass
    with _mutex:
        _held[lf] = [fd, 1, me]
    try:
        yield lf
    finally:
        with _mutex:
            _held.pop(lf, None)
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)            # releases the flock
