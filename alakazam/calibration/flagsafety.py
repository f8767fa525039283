"""How FLAG writes stay restorable when apply is interrupted (Ctrl-C, kill -9).

Convention (pinned by tests/test_reliability.py):

* With ``propagate_flags`` the FLAG backup (``<ms>.flagversions/flags.akapply_N``) is complete on
  disk before the first FLAG write.
* While FLAG is being written, the marker ``<ms>.flagversions/flags.akapply_N.in_progress`` exists; it
  holds the restore command.  It is removed when the run completes.
* A run that fails with an error or is interrupted before its first FLAG write begins removes the
  marker and says FLAG is unchanged; after an error (not an interrupt) the version it saved, a copy of
  FLAG as it is, is removed too -- unless a YAML run journals the MS (core/runjournal.py), where it
  stays.
* A marker written before the MS now at that path was made (``rm -rf x.ms; cp -r orig.ms x.ms`` leaves
  ``x.ms.flagversions``: :func:`alakazam.core.runjournal.of_earlier_ms`) is of an earlier MS: ignored (not
  warned about, not finished, not removed).
* Ctrl-C (or SIGTERM through the CLI) after that logs "FLAG may be partly changed; restore with: ..."
  and keeps the marker; after a kill -9 the marker stays, and the next apply on that MS warns with the same
  command.  :func:`alakazam.calibration.apply.restore_flags` removes the marker of the version it
  restores.
"""

from __future__ import annotations

import glob
import logging
import os
from contextlib import ExitStack, contextmanager

from ..core import signals

log = logging.getLogger("alakazam.flags")


def flagversions_dir(ms) -> str:
    return str(ms).rstrip("/") + ".flagversions"


def marker_path(ms, version) -> str:
    return os.path.join(flagversions_dir(ms), f"flags.{version}.in_progress")


#: the directory the user started in, when it is not the current one (the YAML runner reads a file's
#: paths from the file's folder): a relative MS path in a restore command is given from there
_USER_DIR = []


@contextmanager
def user_dir(path):
    """Within: restore commands name a relative MS as seen from ``path`` (the user's directory)."""
    _USER_DIR.append(os.path.abspath(path))
    try:
        yield
    finally:
        _USER_DIR.pop()


def restore_command(ms, version) -> str:
    """The CLI command that restores flag version ``version`` of ``ms`` (akflagmanager; it also removes
    the version's in-progress marker), to be typed in the user's directory (:func:`user_dir`)."""
    import shlex

    p = str(ms)
    if _USER_DIR and not os.path.isabs(p):
        p = os.path.relpath(os.path.abspath(p), _USER_DIR[-1])
    return f"alakazam flagmanager --vis {shlex.quote(p)} --mode restore --versionname {version}"


#: the line of a marker that says the FLAG writes are a restore: ``restoring: <version> <merge>``
_RESTORING = "restoring: "
#: the line of an apply's marker that names its job (:func:`apply_job`): ``job: <digest>``
_JOB = "job: "
#: how every marker starts (a file of that name without it is not alakazam's: CASA's flagmanager saves a
#: version named 'x.in_progress' as the directory ``flags.x.in_progress``)
_MARKER = "FLAG writes in progress"


def interrupted(ms):
    """Markers left by runs interrupted while writing FLAG: ``[(version saved before, restored version or
    None, merge or None)]`` -- the restored version for an akflagmanager restore (:func:`restore_marked`)."""
    from ..core.runjournal import of_earlier_ms

    out = []
    for m in sorted(glob.glob(os.path.join(flagversions_dir(ms), "flags.*.in_progress"))):
        version = os.path.basename(m)[len("flags."):-len(".in_progress")]
        name = merge = None
        try:
            with open(m) as fh:
                text = fh.read(4096)
            written = os.stat(m).st_mtime
        except OSError:         # (a directory: CASA's version named '<x>.in_progress', not a marker)
            continue
        if text and not text.startswith(_MARKER):
            continue            # a file alakazam did not write as a marker (empty: killed while writing it)
        if of_earlier_ms(ms, written):
            # a marker of an earlier MS at that path (rm -rf x.ms; cp -r orig.ms x.ms leaves
            # x.ms.flagversions): that run never wrote this MS's FLAG (review h60b) -- or this MS was
            # moved (to scratch and back: a new directory, the same data; review h60j), which a birth
            # time cannot tell apart: not taken as this MS's, but warned about with both readings
            # (:func:`stale_markers`, :func:`warn_interrupted`); kept
            continue
        for line in text.splitlines():
            if line.startswith(_RESTORING) and len(line[len(_RESTORING):].split()) == 2:
                name, merge = line[len(_RESTORING):].split()
        out.append((version, name, merge))
    return out


def stale_markers(ms):
    """The in-progress markers in ``<ms>.flagversions`` written before the MS now at that path was made
    (:func:`alakazam.core.runjournal.of_earlier_ms`): ``[(version, marker path)]`` -- :func:`interrupted`
    leaves them out (a fresh copy's FLAG was never written by that run), :func:`warn_interrupted` says
    both readings (a moved MS's FLAG may have been)."""
    from ..core.runjournal import of_earlier_ms

    out = []
    for m in sorted(glob.glob(os.path.join(flagversions_dir(ms), "flags.*.in_progress"))):
        try:
            with open(m) as fh:
                text = fh.read(4096)
            written = os.stat(m).st_mtime
        except OSError:
            continue
        if text and not text.startswith(_MARKER):
            continue
        if of_earlier_ms(ms, written):
            out.append((os.path.basename(m)[len("flags."):-len(".in_progress")], m))
    return out


def restore_resolves(marker, name, merge, order=None) -> bool:
    """Whether restoring ``name`` with ``merge`` ends the interrupted run of ``marker`` (an
    :func:`interrupted` entry): it restores the flags saved before it, or flags saved before those,
    with merge 'replace' (undo; ``order``: :func:`alakazam.core.flagversions.saved_order`; FLAG then
    predates the run's writes, so they are undone too -- two interrupted runs, the second saved on top
    of the first's partial FLAG: restoring the first's version ended both, but the second's marker
    stayed and every later task told the user to restore that partial state, a review), or it is the
    same restore (finishing it: replace, or and and are idempotent)."""
    version, restoring, was = marker
    if restoring == name and was == merge:
        return True
    if merge != "replace":      # 'or' / 'and' with the saved flags keep (some of) the run's writes
        return False            # (a review: merge='or' of the run's own version said "undid" it)
    return name == version or (order is not None and name in order and version in order
                               and order.index(name) < order.index(version))


def _finish_command(ms, name, merge) -> str:
    return f"akflagmanager(vis={str(ms)!r}, mode='restore', versionname={name!r}, merge={merge!r})"


def warn_interrupted(ms, skip=None):
    """Warn about earlier runs interrupted while writing FLAG (their markers are still present);
    ``skip(marker)``: true for the markers not to warn about (the run at hand resolves them).  Where
    several runs were interrupted, a later one's saved version holds the partial FLAG an earlier one
    left: its warning names the earliest version as the one that undoes them all."""
    markers = [m for m in interrupted(ms) if skip is None or not skip(m)]
    from ..core import flagversions

    order = flagversions.saved_order(ms) if len(markers) > 1 else []
    rank = {n: i for i, n in enumerate(order)}
    listed = sorted((m for m in markers if m[0] in rank), key=lambda m: rank[m[0]])
    first = listed[0][0] if listed else None
    for marker in markers:
        version, name, merge = marker
        also = ""
        if first is not None and version in rank and rank[version] > rank[first]:
            also = (f" -- it was saved after {first}, the flags saved before an earlier interrupted run: "
                    f"restoring {first} undoes both: {restore_command(ms, first)}")
        if name is not None:
            log.warning("a restore of flag version %s (merge=%r) on %s was interrupted while writing FLAG: "
                        "FLAG is partly restored; re-run %s to finish it, or restore %r, the flags saved "
                        "before it, to undo it: %s%s", name, merge, ms, _finish_command(ms, name, merge),
                        version, restore_command(ms, version), also)
            continue
        log.warning("an earlier %s on %s was interrupted while writing FLAG: FLAG may be partly changed; "
                    "restore the flags saved before it with: %s%s", version.split("_")[0], ms,
                    restore_command(ms, version), also)
    for version, path in stale_markers(ms):
        log.warning("%s holds the marker of a %s interrupted while writing FLAG before this MS's directory "
                    "was made: if %s is that MS moved or copied back (cp -a, a move between disks), FLAG may "
                    "be partly changed -- restore the flags saved before it with: %s; if it is a fresh copy "
                    "put in its place, that run never wrote it: remove %s to stop this warning",
                    flagversions_dir(ms), version.split("_")[0], ms, restore_command(ms, version), path)


@contextmanager
def restore_marked(ms, name, merge, save):
    """An akflagmanager restore of ``name`` (``merge``): save the current flags (``save()`` returns the
    version's name) and write the in-progress marker as one step (SIGINT / SIGTERM held in between),
    yield the saved version, and remove the marker when FLAG is written.  A kill -9 leaves the marker
    (``restoring: <name> <merge>``): the next task on the MS says which restore was interrupted, how to
    finish it and how to undo it (:func:`warn_interrupted`); either restore removes it."""
    backup = None
    writing = False
    try:
        # (inside the try: a Ctrl-C held during the save is delivered as the hold ends, and the
        # message below names the saved version -- it said only "interrupted" there: a review)
        with signals.held():
            backup = save()
            with open(marker_path(ms, backup), "w") as fh:
                fh.write(f"{_MARKER}; restore with: {restore_command(ms, backup)}\n"
                         f"{_RESTORING}{name} {merge}\n")
        writing = True
        yield backup
    except BaseException as e:
        if backup is None:
            raise
        if not writing:             # stopped between the save and the first FLAG write
            clear_marker(ms, backup)
            log.warning("the restore of flag version %s was interrupted (%s) before writing FLAG: FLAG is "
                        "unchanged (its flags were saved as %s)", name, type(e).__name__, backup)
            raise
        from ..core import undo

        if isinstance(e, KeyboardInterrupt) and undo.active() is not None:     # akshell: its undo does it
            log.warning("the restore of flag version %s was interrupted (%s) while writing FLAG: the undo "
                        "puts FLAG back from flag version %s", name, type(e).__name__, backup)
        else:
            log.error("the restore of flag version %s was interrupted (%s) while writing FLAG: FLAG is "
                      "partly restored; re-run %s to finish it, or undo it with: %s", name,
                      type(e).__name__, _finish_command(ms, name, merge), restore_command(ms, backup))
        raise
    clear_marker(ms, backup)


def clear_marker(ms, version):
    """Remove the in-progress marker of ``version`` (a regular file; a directory of that name is CASA's
    version '<version>.in_progress', left alone)."""
    m = marker_path(ms, version)
    if os.path.isfile(m) and not os.path.islink(m):
        try:
            os.unlink(m)
        except FileNotFoundError:
            pass


def apply_job(cfg, terms) -> str:
    """The digest of an apply (an ApplyConfig and its loaded terms, calibration/chain.LoadedTerm): the
    MS, every parameter that decides what it writes, and the solutions applied (values, flags, times,
    frequencies, fields and SPWs -- not the files: a YAML re-run solves its tables again, to the same
    solutions).  An apply's FLAG writes (calflag: the samples whose solution is flagged) are a function
    of these and the flags it starts from, and a re-run starts from a superset of them -- the
    interrupted run's partial flags -- so a re-run of the same job that completes leaves FLAG as an
    uninterrupted run would (:func:`finish_job`)."""
    import dataclasses
    import hashlib
    import json

    import numpy as np

    d = dataclasses.asdict(cfg)
    for k in ("quiet", "workers", "scheduler", "memory_limit_gb"):      # how, not what
        d.pop(k, None)
    d["ms"] = os.path.realpath(str(cfg.ms))
    for t in d.get("terms", []):
        t.pop("table", None)
    h = hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode())
    for term in terms:
        h.update(f"{term.key}:{term.jones_type}".encode())
        for s in term.sets:
            h.update(f"{s.attrs.get('field_name')}:{s.attrs.get('spw')}".encode())
            for a in (s.jones, s.flags, s.time, s.freq, getattr(s, "delay", None)):
                if a is not None:
                    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:20]


def marker_job(ms, version) -> str:
    """The job (:func:`apply_job`) an interrupted apply's marker names ('' none: an older marker, akflag,
    a restore)."""
    try:
        with open(marker_path(ms, version)) as fh:
            text = fh.read(4096)
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith(_JOB):
            return line[len(_JOB):].strip()
    return ""


def finish_job(ms, job, version):
    """The apply of ``job`` (its flag version ``version``) completed: the markers of earlier interrupted
    applies of the same job are removed, said at INFO -- their FLAG writes are redone in full (review
    54b: after a completed re-run every later task still said FLAG "may be partly changed" and advised a
    restore that would drop the completed run's flags)."""
    if not job:
        return
    for v, name, _ in interrupted(ms):
        if v != version and name is None and marker_job(ms, v) == job:
            clear_marker(ms, v)
            log.info("the apply interrupted after saving flag version %s was the same apply: this run "
                     "finished its FLAG writes (its in-progress marker removed)", v)


def _journaled(ms) -> bool:
    """A YAML run of this process journals ``ms``'s flag versions (core/runjournal.py)."""
    from ..core import runjournal

    return runjournal._active(ms)[0] is not None


def _drop_version(ms, version):
    """Remove flag version ``version`` (saved by a run that stopped before writing FLAG); a failure to
    remove it is logged, never raised over the run's own error."""
    from ..core import flagversions

    try:
        flagversions.delete(ms, version)
    except Exception as e:      # noqa: BLE001 (the run's error is the one to see)
        log.warning("could not remove flag version %s of %s (%s: %s); it holds FLAG as it is",
                    version, ms, type(e).__name__, e)


@contextmanager
def flag_writes(ms, version, what="apply", job=""):
    """Mark FLAG writes of a run whose backup is ``version`` (None: no FLAG writes, nothing to do);
    ``what`` names the run in the message (apply, akflag); ``job``: an apply's :func:`apply_job`
    (recorded in the marker; the same job's earlier markers are removed when this run completes)."""
    if not version:
        yield
        return
    m = marker_path(ms, version)
    with open(m, "w") as fh:
        fh.write(f"{_MARKER}; restore with: {restore_command(ms, version)}\n"
                 + (f"{_JOB}{job}\n" if job else ""))
    from ..core import columns
    from ..core.ms import flag_writes as handle_flag_writes
    from ..core.ms import flag_written

    before = flag_written(ms)
    unchanged = drop = False
    try:
        # inside the try: a signal delivered through another thread (pthread_sigmask holds it for the
        # main thread only) may interrupt the snapshot, which is then removed like any other
        columns.begin_writes(ms)    # a kill -9 mid-flush is undone by the next writer (core/columns.py)
        with handle_flag_writes(ms):       # FLAG writes through the MS handle allowed (core/ms.py)
            yield
    except BaseException as e:
        from ..core import undo

        if flag_written(ms) == before:
            # stopped (an error, or an interrupt: review 54b) before the run's first FLAG write began
            # (core/ms.note_write counts a write as it begins): FLAG is as saved, so no marker is left
            # (before: every later task warned that FLAG "may be partly changed")
            unchanged = True
            # an error (not an interrupt) outside a YAML run: the version, a copy of FLAG as it is, goes
            # too (review h60a: an apply stopped by an error left flags.akapply_N behind, nothing
            # written); a YAML run's journal counts its versions (core/runjournal.py): kept there
            drop = isinstance(e, Exception) and not _journaled(ms)
            (log.info if isinstance(e, Exception) else log.warning)(
                "%s %s (%s) before writing FLAG: FLAG is unchanged (%s)", what,
                "stopped" if isinstance(e, Exception) else "interrupted", type(e).__name__,
                f"its flag version {version}, saved for this run, removed" if drop else
                f"flag version {version} keeps the flags of before")
        elif isinstance(e, KeyboardInterrupt) and undo.active() is not None:
            # akshell's undo (core/undo.py) puts FLAG back from this version and says so (or, if it
            # cannot, logs the restore command itself)
            log.warning("%s interrupted (%s) while writing FLAG: the undo restores FLAG from flag "
                        "version %s", what, type(e).__name__, version)
        else:
            log.error("%s interrupted (%s) while writing FLAG: FLAG may be partly changed; restore it "
                      "with: %s", what, type(e).__name__, restore_command(ms, version))
        raise
    finally:
        # also when the interrupt comes after the writes, before the snapshot's removal (before: a
        # SIGTERM there left the snapshot behind)
        columns.end_writes(ms)
        if unchanged:
            clear_marker(ms, version)
        if drop:
            _drop_version(ms, version)
    clear_marker(ms, version)
    finish_job(ms, job, version)


@contextmanager
def saved_then_marked(ms, save, what="apply", job=""):
    """Save a flag version (``save()`` returns its name, or None for no FLAG writes) and enter
    :func:`flag_writes` for it as one step: a Ctrl-C or SIGTERM arriving in between is held until the
    marker exists, so an interrupt once the version is on disk always says how to restore it."""
    with ExitStack() as stack:
        with signals.held():
            version = save()
            stack.enter_context(flag_writes(ms, version, what, job))
        yield version


def partial_column_message(ms, column, exc):
    """An apply stopped (``exc``) while rewriting an existing ``column`` in place: the rows written so far
    hold the new correction, the others what they held before -- said, with what to do (before: the CLI
    said only "interrupted (solution files are only ever replaced whole)").  In akshell the undo puts
    the rows back (core/undo.py) and says so."""
    from ..core import undo

    if isinstance(exc, KeyboardInterrupt) and undo.active() is not None:
        log.warning("apply interrupted (%s) while rewriting %s of %s: the undo puts its rows back",
                    type(exc).__name__, column, ms)
        return
    log.error("apply stopped (%s) while rewriting %s of %s: the rows written so far hold the new "
              "correction, the others what they held before; re-run the apply before using %s",
              type(exc).__name__, column, ms, column)
