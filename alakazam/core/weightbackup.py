"""WEIGHT and WEIGHT_SPECTRUM of an apply with calwt: saved before the first write, put back when the
apply does not finish -- a Ctrl-C, a SIGTERM, an error or a kill -9 never leaves them half rewritten.

calwt (:mod:`alakazam.calibration.calwt`) rewrites WEIGHT (and WEIGHT_SPECTRUM) in place, chunk by
chunk, after each chunk's data.  Before 2026-12 an interrupted ``alakazam run`` left them rewritten in
the rows done so far (0.667 of the rows in the review's measurement) and said nothing: the new
CORRECTED_DATA was dropped, FLAG was reported with its restore command, WEIGHT not at all -- and a
re-run without calwt (the default) kept the scaled weights for good.

Convention (pinned by tests/test_calwt_interrupt.py):

* Before apply's first calwt write, WEIGHT and (when the MS has it) WEIGHT_SPECTRUM of every row the
  apply will write are saved in ``<ms>/alakazam.weights.bak`` (one ``.npy`` per column and
  DATA_DESC_ID, with the row numbers; written under ``.tmp``, fsynced, renamed: the backup is either
  complete or absent).  SIGMA and SIGMA_SPECTRUM are never written by apply (calwt derives the weights
  from them) and need no copy.  The disk space is checked first (:mod:`alakazam.core.diskspace`).
  WEIGHT and WEIGHT_SPECTRUM of an existing MS are written only inside :func:`alakazam.core.ms.weight_writes`,
  entered once the backup is on disk (as FLAG only after its flag version).
* The backup's existence means "WEIGHT writes in progress".  A run that ends in an orderly way but
  unfinished (KeyboardInterrupt -- Ctrl-C, or SIGTERM through the CLI --, an error, a full disk) puts
  every saved row back, removes the backup and logs a WARNING naming WEIGHT and the rows put back
  (SIGINT / SIGTERM held meanwhile).  If putting them back fails, the backup stays and an ERROR says
  WEIGHT is partly rewritten and how to put it back.  In akshell the undo journal writes the same
  values again (core/undo.py).
* A kill -9 (no handler) leaves the backup: the next apply, akflag or flag-version restore on that MS
  (:func:`alakazam.core.columns.recover`, under the MS writer lock, before anything is written), or
  ``alakazam recover --vis MS``, puts WEIGHT back and says so; a solve from a column other than DATA
  (which reads WEIGHT) warns until then.  Before each write the apply records the rows and a CRC of
  the values (:func:`intend`): a backup whose rows hold neither the saved values nor the killed
  apply's (another program -- CASA initweights, statwt -- wrote WEIGHT since) is not put back but
  moved aside (``<backup>.stale-<time>``), and the log says so.
* A completed apply removes the backup (after its output column is committed).
* A re-run of the apply with calwt gives the weights of an uninterrupted run either way: calwt derives
  WEIGHT from SIGMA and never scales what WEIGHT holds (no compounding).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time as _time
from contextlib import contextmanager

import numpy as np

log = logging.getLogger("alakazam.apply")

BACKUP = "alakazam.weights.bak"
COLUMNS = ("WEIGHT", "WEIGHT_SPECTRUM")
#: rows per read / write of the backup
CHUNK_ROWS = 20000


def backup_path(ms) -> str:
    return os.path.join(str(ms), BACKUP)


def pending(ms) -> bool:
    """Whether ``ms`` holds the WEIGHT backup of an apply that did not finish."""
    return os.path.isfile(os.path.join(backup_path(ms), "info.json"))


def recover_command(ms) -> str:
    """The command that puts WEIGHT back from the backup (typed in the user's directory)."""
    import shlex

    from ..calibration.flagsafety import _USER_DIR

    p = str(ms)
    if _USER_DIR and not os.path.isabs(p):
        p = os.path.relpath(os.path.abspath(p), _USER_DIR[-1])
    return f"alakazam recover --vis {shlex.quote(p)}"


def _groups(ms, rows):
    """{DATA_DESC_ID: sorted row numbers} of ``rows``."""
    from casacore.tables import table

    rows = np.unique(np.asarray(rows, np.int64))
    with table(str(ms), ack=False) as t:
        dd = np.asarray(t.getcol("DATA_DESC_ID"), np.int64)[rows] if len(rows) else np.zeros(0, np.int64)
    return {int(d): rows[dd == d] for d in np.unique(dd)}


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def bytes_needed(ms, rows) -> int:
    """Bytes of the backup of ``rows`` (WEIGHT, WEIGHT_SPECTRUM when present, the row numbers)."""
    from casacore.tables import table

    rows = np.asarray(rows, np.int64)
    if not len(rows):
        return 0
    with table(str(ms), ack=False) as t:
        cols = set(t.colnames())
        r0 = int(rows[0])
        n = 8 + 4 * int(np.prod(t.getcell("WEIGHT", r0).shape)) if "WEIGHT" in cols else 8
        if "WEIGHT_SPECTRUM" in cols and t.iscelldefined("WEIGHT_SPECTRUM", r0):
            n += 4 * int(np.prod(t.getcell("WEIGHT_SPECTRUM", r0).shape))
    return n * len(rows)          # (the first row's shape for all: an estimate across SPWs)


def save(ms, rows):
    """Save WEIGHT and WEIGHT_SPECTRUM of ``rows`` (module doc); returns the backup's path."""
    from casacore.tables import table

    from . import diskspace
    from .columns import undefined_rows

    dest = backup_path(ms)
    if pending(ms):             # an earlier run's: put back first (its rows hold what was before it)
        recover(ms)
    diskspace.require(ms, bytes_needed(ms, rows), f"the copy of WEIGHT saved before calwt writes it ({dest})")
    tmp = f"{dest}.tmp.{socket.gethostname()}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        groups = _groups(ms, rows)
        with table(str(ms), ack=False) as t:
            cols = [c for c in COLUMNS if c in t.colnames()]
        und = undefined_rows(ms, "WEIGHT_SPECTRUM") if "WEIGHT_SPECTRUM" in cols else np.zeros(0, np.int64)
        saved = {}
        with table(str(ms), ack=False) as t:
            for dd, rr in groups.items():
                for c in cols:
                    rc = rr if c == "WEIGHT" or not len(und) else rr[~np.isin(rr, und)]
                    if not len(rc):
                        continue
                    np.save(os.path.join(tmp, f"rows_{c}_{dd}.npy"), rc)
                    first = t.getcell(c, int(rc[0]))
                    out = np.lib.format.open_memmap(os.path.join(tmp, f"{c}_{dd}.npy"), mode="w+",
                                                    dtype=first.dtype, shape=(len(rc),) + first.shape)
                    for s in range(0, len(rc), CHUNK_ROWS):
                        q = t.selectrows(rc[s:s + CHUNK_ROWS])
                        out[s:s + len(q)] = q.getcol(c)
                        q.close()
                    out.flush()
                    del out
                    saved.setdefault(c, 0)
                    saved[c] += len(rc)
        with open(os.path.join(tmp, "info.json"), "w") as fh:
            json.dump({"saved": _time.strftime("%Y-%m-%d %H:%M:%S", _time.gmtime()), "pid": os.getpid(),
                       "host": socket.gethostname(), "rows": {c: int(n) for c, n in saved.items()},
                       "ddids": sorted(groups)}, fh)
        for f in os.listdir(tmp):
            _fsync(os.path.join(tmp, f))
        _fsync(tmp)
        os.rename(tmp, dest)
        _fsync(str(ms))
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        full = diskspace.translate(e, ms, f"the copy of WEIGHT saved before calwt writes it ({dest})")
        if full is not None:
            raise full from e
        raise
    return dest


def _info(path):
    try:
        with open(os.path.join(path, "info.json")) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def restore(ms):
    """Write the saved rows back into WEIGHT / WEIGHT_SPECTRUM (idempotent: a restore cut short is
    redone whole); returns {column: rows written}.  The backup is kept (:func:`discard` removes it)."""
    from casacore.tables import table

    from . import ms_io

    path = backup_path(ms)
    ms_io.release_handle_table(ms)       # no read-only table of ours beside the writes (core/ms.py)
    done = {}
    with table(str(ms), readonly=False, ack=False) as t:
        for f in sorted(os.listdir(path)):
            if not f.startswith("rows_") or not f.endswith(".npy"):
                continue
            c, dd = f[len("rows_"):-len(".npy")].rsplit("_", 1)
            rows = np.load(os.path.join(path, f))
            vals = np.load(os.path.join(path, f"{c}_{dd}.npy"), mmap_mode="r")
            if len(vals) != len(rows) or (len(rows) and int(rows.max()) >= t.nrows()):
                from ..errors import AlakazamError

                raise AlakazamError(f"the WEIGHT backup {path} does not match {ms} ({c}: {len(vals)} values "
                                    f"for {len(rows)} rows, the MS has {t.nrows()} rows)")
            for s in range(0, len(rows), CHUNK_ROWS):
                q = t.selectrows(rows[s:s + CHUNK_ROWS])
                q.putcol(c, np.ascontiguousarray(vals[s:s + CHUNK_ROWS]))
                q.close()
            done[c] = done.get(c, 0) + len(rows)
            del vals
        t.flush()
    return done


def discard(ms):
    """Remove the backup: renamed first (one atomic step, after which :func:`pending` is false), then
    deleted; leftovers of a removal or save cut short are removed too."""
    path = backup_path(ms)
    gone = f"{path}.done"
    try:
        os.replace(path, gone)
    except FileNotFoundError:
        pass
    shutil.rmtree(gone, ignore_errors=True)
    _clean_leftovers(ms)


def _clean_leftovers(ms):
    """Temporaries of saves cut short (by processes of this host that no longer run) and of removals."""
    d = str(ms)
    host = socket.gethostname()
    try:
        names = os.listdir(d)
    except OSError:
        return
    for f in names:
        if f == BACKUP + ".done":
            shutil.rmtree(os.path.join(d, f), ignore_errors=True)
        elif f.startswith(f"{BACKUP}.tmp.{host}."):
            try:
                pid = int(f.rsplit(".", 1)[1])
            except ValueError:
                continue
            if pid == os.getpid():
                continue
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                shutil.rmtree(os.path.join(d, f), ignore_errors=True)
            except OSError:
                pass


def intend(ms, col, rownr, values):
    """Recorded in the backup before the apply writes ``values`` into rows ``rownr`` of WEIGHT /
    WEIGHT_SPECTRUM (called by the MS handle's :meth:`~alakazam.core.ms.MeasurementSet.write_column`):
    the rows and a CRC of the values as the column stores them (float32).  After a kill -9,
    :func:`recover` then tells the killed apply's writes (each row holds the saved value or the value
    recorded here) from another program's later writes of WEIGHT (CASA initweights / statwt), which a
    stale backup must not undo."""
    import zlib

    path = backup_path(ms)
    if col not in COLUMNS or not pending(ms):
        return
    rownr = np.asarray(rownr, np.int64)
    order = np.argsort(rownr, kind="stable")
    vals = np.ascontiguousarray(np.asarray(values, np.float32)[order])
    k = len([f for f in os.listdir(path) if f.startswith("w_")])
    crc = zlib.crc32(vals.tobytes())
    np.save(os.path.join(path, f"w_{k:06d}_{col}_{crc}.npy"), rownr[order])


def _written_elsewhere(ms):
    """Rows of the saved columns that hold neither the saved value nor the value the killed apply
    recorded before writing it (:func:`intend`): {column: number of rows} (empty: every row is the
    killed apply's or untouched)."""
    import zlib

    from casacore.tables import table

    path = backup_path(ms)
    names = sorted(os.listdir(path))
    out = {}
    with table(str(ms), ack=False) as t:
        recorded = {}
        for f in names:
            if not f.startswith("w_"):
                continue
            _, _, rest = f.split("_", 2)
            c, crc = rest[:-len(".npy")].rsplit("_", 1)
            recorded.setdefault(c, []).append((np.load(os.path.join(path, f)), int(crc)))
        for f in names:
            if not f.startswith("rows_") or not f.endswith(".npy"):
                continue
            c, dd = f[len("rows_"):-len(".npy")].rsplit("_", 1)
            rows = np.load(os.path.join(path, f))
            saved = np.load(os.path.join(path, f"{c}_{dd}.npy"), mmap_mode="r")
            ok = np.zeros(len(rows), bool)
            for rr, crc in recorded.get(c, ()):       # a chunk the killed apply wrote (or was to write)
                if not len(rr):
                    continue
                now = np.ascontiguousarray(np.asarray(_rows(t, c, rr), np.float32))
                if zlib.crc32(now.tobytes()) == crc:
                    ok |= np.isin(rows, rr)
            for s in range(0, len(rows), CHUNK_ROWS):
                now = _rows(t, c, rows[s:s + CHUNK_ROWS])
                same = np.all((now == saved[s:s + CHUNK_ROWS]).reshape(len(now), -1), axis=1)
                ok[s:s + CHUNK_ROWS] |= same
            if not ok.all():
                out[c] = out.get(c, 0) + int((~ok).sum())
    return out


def _rows(t, col, rows):
    q = t.selectrows(np.asarray(rows))
    try:
        return q.getcol(col)
    finally:
        q.close()


def _what(done) -> str:
    cols = " and ".join(c for c in COLUMNS if c in done)
    return f"{cols} ({max(done.values()) if done else 0} rows)"


def recover(ms):
    """Put WEIGHT back from the backup a killed apply left (called under the MS writer lock by
    :func:`alakazam.core.columns.recover`, i.e. by the next apply, akflag or flag restore, and by
    ``alakazam recover``); returns the {column: rows} put back, or None when there was no backup."""
    from . import signals

    _clean_leftovers(ms)
    if not pending(ms):
        return None
    info = _info(backup_path(ms))
    elsewhere = _written_elsewhere(ms)
    if elsewhere:
        stale = f"{backup_path(ms)}.stale-{_time.strftime('%Y%m%dT%H%M%S')}"
        os.replace(backup_path(ms), stale)
        log.warning("%s: the WEIGHT copy an apply with calwt saved (%s UTC, pid %s) before it was killed is "
                    "NOT put back: %s were written since by another program (neither the saved values nor "
                    "the killed apply's); the copy is kept in %s (delete it when not needed)", ms,
                    info.get("saved", "?"), info.get("pid", "?"),
                    " and ".join(f"{n} rows of {c}" for c, n in elsewhere.items()), stale)
        return None
    with signals.held():
        done = restore(ms)
        discard(ms)
    log.warning("%s: an apply with calwt (saved %s UTC, pid %s) did not finish and left WEIGHT partly "
                "rewritten; %s put back as they were before it, from the copy it saved first", ms,
                info.get("saved", "?"), info.get("pid", "?"), _what(done))
    return done


@contextmanager
def weight_writes(ms, rows):
    """``with weight_writes(ms, rows):`` calwt may write WEIGHT / WEIGHT_SPECTRUM of ``rows``: their
    backup is saved first (module doc).  The caller ends the run with :func:`finish` (completed: the
    backup is removed) or :func:`put_back` (stopped: the saved rows are written back)."""
    from .ms import weight_writes as handle_weight_writes

    save(ms, rows)
    with handle_weight_writes(ms):
        yield


def put_back(ms, exc, what="apply"):
    """The run stopped with ``exc`` (any exception) while its WEIGHT backup exists: every saved row is
    written back and the backup removed (SIGINT / SIGTERM held meanwhile), and the log says so; when
    that fails, the backup stays and an ERROR says WEIGHT is partly rewritten and how to put it back.
    Nothing to do (False) when there is no backup (the run saved none, or it completed)."""
    from . import signals

    if not pending(ms):
        return False
    with signals.held():
        try:
            done = restore(ms)
        except BaseException as e2:         # noqa: BLE001 -- said, with what to do; the backup stays
            log.error("%s stopped (%s) while writing WEIGHT (calwt) of %s, and putting back the weights "
                      "saved before it failed (%s: %s): WEIGHT is partly rewritten; the weights before "
                      "the %s are kept in %s; put them back with: %s (the next apply, akflag or flag "
                      "restore on this MS does it first)", what, type(exc).__name__, ms, type(e2).__name__,
                      e2, what, backup_path(ms), recover_command(ms))
            return False
        discard(ms)
    log.warning("%s stopped (%s) while writing WEIGHT (calwt) of %s: %s put back as they were before the "
                "%s (from the copy saved before its first write); re-run it to write them", what,
                type(exc).__name__, ms, _what(done), what)
    return True


def finish(ms):
    """The calwt writes completed (the output column committed): the backup is removed."""
    discard(ms)
