"""A YAML run's journal of its FLAG writes, so that a re-run after an interrupt starts from the flags the
interrupted run started from (the standard: "a re-run finishes the job").

Why: flag blocks are not idempotent -- tfcrop, rflag and the MAD modes flag more when run again on their
own output (a review measured 8,072 samples of 7.4 million changed by a second uninterrupted run, and
10,530 by a re-run after Ctrl-C).  A plain re-run of an interrupted `alakazam run` therefore flagged on
top of the first run's flags and gave other solutions and corrected data, with no word about it.

Convention (tests/test_runjournal.py):

- Before its first block, ``alakazam run FILE`` (and ``alakazam flag FILE``) writes, for every MS whose
  FLAG a flag block of the file writes, the journal ``<ms>.flagversions/alakazam-run.<key>.json``:
  the file (``<key>`` is derived from its real path: a symlink or another relative path to it is the
  same file), the sections run, a digest of the file's content as parsed (comments and layout do not
  count), and ``ours``: the flag versions this
  job's runs saved of that MS, each recorded as it is saved, before FLAG is written
  (:func:`note_saved`, called by :func:`alakazam.core.flagversions.save`).  The journal is marked
  finished when every block has finished; a run stopped by Ctrl-C, SIGTERM, kill -9 or an error
  leaves it unfinished.
- A run of the same file and content (``alakazam run`` or ``alakazam flag``: both run the flag blocks
  first; or another file of the same content -- a copy, a renamed file -- whose journal on that MS is
  unfinished) restores (akflagmanager, merge='replace': the current flags are saved as a version
  first, named in a WARNING with the undo command) the *base*: the first version the job saved,
  holding the flags before its first FLAG write.  The base and ``ours`` are in the new journal before
  the restore, which records the restore's own backup too, so an interrupt anywhere, in the restore
  included, still goes back to the first run's flags.  Flags written since the interrupt by a tool
  that saved no version (CASA's flagdata with flagbackup=False) cannot be told from the run's: they
  are in that backup (the WARNING says so; a restore with merge='or' adds them back).  It restores
  nothing, and says why in a WARNING naming the base, when:
  - the job saved no version (it wrote no FLAG: FLAG is as it was; nothing said);
  - the base was deleted (FLAG cannot be put back: the run flags on top of the interrupted run's);
  - another task saved a version of the MS after the base (it wrote FLAG since the interrupt -- a
    manual flag, another file's run, a restore: its flags are not overwritten);
  - the file's content changed (an edited file: perhaps another job).
- A journal whose run may still be alive is left alone: no restore, no take-over (the MS's writer lock
  stops the second run's FLAG writes) -- its process exists on this host and started when the journal
  says (a reused pid is not it), or the journal is another host's (that cannot be checked: the WARNING
  names the journal to delete if that run is gone).  A restore refused before it saved anything (the
  MS in use) leaves the journals as they were.  An unfinished journal of another file of other content
  (an edited copy) restores nothing but is named in a WARNING with its base.  A save is announced
  before it is made (``pending``, its name, :func:`note_saving`), and every version a run saves carries
  the run's id (keyword ALAKAZAM_RUN, :func:`run_id`): a kill -9 between the save and its entry still
  leaves the version the job's, and one killed during the save leaves nothing the job's, even when
  another task's later version takes the same name.
- A restore of a journal's base by anyone else (akflagmanager or an undo, merge 'replace') settles that
  journal, unfinished or finished (:func:`note_restored`): its run's flag writes are undone, so no
  later run restores or warns for it -- until a version saved after the base before the settling is
  restored (that restore's own backup: its undo), which opens the journal again.
- After a finished run, a run of the same file (or of a copy of the same content) restores nothing
  (running a file again is a second run, as with CASA's flagdata); when the finished run's flag blocks
  wrote FLAG, a WARNING says they flag again on top of their own flags and names the version to
  restore for the flags of one run.
- An apply block that writes FLAG (calflag / flagonly, propagate_flags) is journaled as a flag block is
  (session 55): a re-run's solves read FLAG, and after an interrupted apply they solved on its flags
  (the README hazard MS: 3C147 2.4673 and TARGET 0.6888 against 2.5094 and 0.7001 uninterrupted);
  its base is then the apply's version (akapply_N), put back the same way, and after a finished run the
  WARNING says the solves read the first run's apply flags.
- A journal that cannot be written (a read-only MS directory) is left out with a DEBUG line: the run
  goes on as before.
- ``<ms>.flagversions`` stays when the MS is deleted, so after ``rm -rf x.ms; cp -r orig.ms x.ms`` it
  holds the journals (and flag versions) of runs on the earlier x.ms (review h60b: the next run said
  "already ran ... its apply blocks wrote FLAG: this run's solves read those flags" of the fresh copy,
  and an unfinished journal would have put the earlier MS's flags back on it).  A journal whose run
  started before the MS now at that path was made, while ``<ms>.flagversions`` was not
  (:func:`of_earlier_ms`: the MS directory's birth time -- statx on Linux -- or where the filesystem
  keeps none, the oldest modification time of its files; an inode does not tell: ext4 gives ``cp -r``
  after ``rm -rf`` the same inode numbers, measured) is of an earlier MS: it restores nothing, is
  warned about by nothing, is taken over and settled by nothing, and one INFO line says so, naming its
  flag versions -- listed and kept, as CASA's flagmanager lists a stale ``.flagversions``: nothing is
  deleted or rewritten, and restoring one puts the earlier MS's flags on this one.  An MS copied
  together with its ``.flagversions`` (both new) keeps its journals.  Not seen: a ``cp -a`` copy on a
  filesystem without birth times (the old file times are kept).
"""

from __future__ import annotations

import calendar
import hashlib
import json
import logging
import os
import socket
import sys
import time

log = logging.getLogger("alakazam.runjournal")

PREFIX = "alakazam-run."

#: the journals of the run in progress in this process: {real path of the MS: journal path}
_ACTIVE: dict = {}


def _birth_ns(path):
    """The birth (creation) time of ``path`` in ns, or None where the platform or filesystem keeps none:
    ``st_birthtime`` (macOS, BSD, Windows), else Linux's statx(2) (glibc >= 2.28; ext4, xfs, btrfs,
    tmpfs) -- Python's os.stat does not give it on Linux."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    b = getattr(st, "st_birthtime_ns", None)
    if b is None and getattr(st, "st_birthtime", None) is not None:
        b = int(st.st_birthtime * 1e9)
    if b:
        return int(b)
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
    except ImportError:
        return None
    import struct

    try:
        fn = ctypes.CDLL(None, use_errno=True).statx
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
        fn.restype = ctypes.c_int
        buf = ctypes.create_string_buffer(256)          # struct statx
        if fn(-100, os.fsencode(path), 0, 0x800, buf) != 0:      # AT_FDCWD, STATX_BTIME
            return None
        if not struct.unpack_from("I", buf.raw, 0)[0] & 0x800:    # stx_mask: no birth time here
            return None
        sec, nsec = struct.unpack_from("qI", buf.raw, 80)          # stx_btime
        return sec * 1_000_000_000 + nsec or None
    except (OSError, AttributeError, ValueError, struct.error):
        return None


def _oldest_file_time(ms):
    """The oldest modification time of the MS's files (its tables' and subtables'; lock files left out:
    opening a table writes them), or None."""
    oldest = None
    for root, _, files in os.walk(ms):
        for f in files:
            if f == "table.lock":
                continue
            try:
                t = os.stat(os.path.join(root, f)).st_mtime
            except OSError:
                continue
            oldest = t if oldest is None else min(oldest, t)
    return oldest


def _started_ts(d):
    t = d.get("started_ts")
    if isinstance(t, (int, float)):
        return float(t)
    try:
        return float(calendar.timegm(time.strptime(str(d.get("started")), "%Y-%m-%d %H:%M:%S")))
    except (TypeError, ValueError):
        return None


def made_after(ms, t) -> bool:
    """The MS now at ``ms`` was made after time ``t`` (seconds since the epoch; 1 s of slack): its
    directory's birth time, or where none is kept, the oldest modification time of its files (a copy
    made by ``cp -r`` after ``t``; ``cp -a`` keeps the times and is not seen there).  False when it
    cannot be told.  A file in ``<ms>.flagversions`` written at ``t`` is then of an earlier MS at that
    path (``rm -rf x.ms; cp -r orig.ms x.ms`` leaves ``x.ms.flagversions``)."""
    b = _birth_ns(ms)
    made = b / 1e9 if b else _oldest_file_time(ms)
    return made is not None and made > t + 1.0


def of_earlier_ms(ms, t) -> bool:
    """A file of ``<ms>.flagversions`` written at time ``t`` is of an earlier MS at that path: the MS
    was made after ``t`` and ``<ms>.flagversions`` was not (``rm -rf x.ms; cp -r orig.ms x.ms`` leaves
    the directory of the deleted MS beside the copy).  An MS copied or moved to another filesystem
    together with its ``.flagversions`` has both new: still each other's."""
    from . import flagversions

    return made_after(ms, t) and not made_after(flagversions.versions_dir(ms), t)


def belongs(d, ms) -> bool:
    """Journal ``d`` is of the MS now at ``ms``: not :func:`of_earlier_ms` at the time its run
    started."""
    start = _started_ts(d)
    return start is None or not of_earlier_ms(ms, start)


def _read_of(q, ms):
    """Journal ``q`` when it is of the MS now at ``ms`` (:func:`belongs`), else None."""
    d = _read(q)
    return d if d is not None and belongs(d, ms) else None


def _say_stale(ms):
    """One INFO line naming the journals in ``<ms>.flagversions`` of an earlier MS at that path (a new
    copy in its place) and their flag versions: nothing of them is this MS's (module doc)."""
    import glob

    from . import flagversions

    stale = []
    for q in sorted(glob.glob(os.path.join(flagversions.versions_dir(ms), PREFIX + "*.json"))):
        d = _read(q)
        if d is not None and not belongs(d, ms):
            stale.append(d)
    if not stale:
        return
    order = flagversions.saved_order(ms)
    theirs = [v for v in order if any(v in (d.get("ours") or []) for d in stale)]
    log.info("%s holds the journals of %d run(s) on %s from before its directory was made (%s): taken as a "
             "new copy put in its place, whose flags those runs did not write, so nothing is restored or "
             "said of them (if this MS is the same one moved or copied back, e.g. cp -a or a move between "
             "disks, their flags are in it: check FLAG with akflag mode='summary')%s",
             flagversions.versions_dir(ms), len(stale), ms,
             ", ".join(f"{d.get('yaml', '?')} started {d.get('started', '?')} UTC" for d in stale),
             f"; the flag versions they saved ({', '.join(theirs)}) are kept and listed: restoring one puts "
             f"that run's saved flags on this MS" if theirs else "")


def _key(yaml_path) -> str:
    return hashlib.sha256(os.path.realpath(str(yaml_path)).encode()).hexdigest()[:16]


def digest(yaml_path) -> str:
    """The digest of the file's content as parsed (comments, blank lines, key order and quoting do not
    count: a comment added before a re-run is the same job -- review 53e)."""
    from ..safeyaml import load

    text = json.dumps(load(yaml_path), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def journal_path(ms, yaml_path) -> str:
    from . import flagversions

    return os.path.join(flagversions.versions_dir(ms), f"{PREFIX}{_key(yaml_path)}.json")


def _read(p):
    try:
        with open(p) as fh:
            d = json.load(fh)
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def _write(p, d) -> bool:
    tmp = f"{p}.tmp{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(tmp, "w") as fh:
            json.dump(d, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
        return True
    except OSError as e:
        log.debug("run journal %s not written (%s): a re-run after an interrupt will not restore FLAG", p, e)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False


def _restore_cmd(ms, version):
    from ..calibration.flagsafety import restore_command

    return restore_command(ms, version)


def base_of(prev) -> str | None:
    """The version holding the flags before the job of journal ``prev``: its first saved version."""
    ours = prev.get("ours") or []
    return prev.get("base") or (ours[0] if ours else None)


def _saved_since(order, base, ours):
    """The versions saved after ``base`` (FLAG_VERSION_LIST order) that the job did not save."""
    return [v for v in order[order.index(base) + 1:] if v not in set(ours)]


def begin(yaml_path, sections, mss, restore) -> list:
    """Before a run's first block: for each MS of ``mss`` (the MSs the run's flag blocks write FLAG of,
    paths as the run opens them), act on an earlier run's journal (module doc), write this run's and
    make it record the versions saved from here on (:func:`note_saved`).  ``restore(ms, version)``
    restores a version and returns the version it saved the replaced flags as (akflagmanager); it is
    called once this run's journal is written and recording, so the restore's own backup is the job's
    (review 53e: an interrupt in the restore left it "another task's", and nothing was restored after).
    Returns the journal paths written, for :func:`end` (:func:`stop` ends the recording)."""
    from . import flagversions

    sections = list(sections)
    text = digest(yaml_path)
    written = []
    for ms in dict.fromkeys(os.path.abspath(m) for m in mss):
        if not os.path.isdir(ms):
            continue
        p = journal_path(ms, yaml_path)
        order = flagversions.saved_order(ms)
        _say_stale(ms)
        prev = _settled(_read_of(p, ms), ms)    # (a journal of an earlier MS at that path: none)
        if prev is not None and not prev.get("finished") and _running(prev):
            # this file's run in progress in another process (review 53f: a copy restored FLAG under a
            # running job): its journal is its own; the MS's writer lock stops this run's FLAG writes
            log.warning("a run of %s on %s is in progress (process %s on %s): this run keeps no journal "
                        "of its FLAG writes there and restores nothing (if that run is gone -- another "
                        "host cannot be checked -- delete %s to let a re-run restore the flags before it)",
                        yaml_path, ms, prev.get("pid"), prev.get("host", "this host"), p)
            continue
        other = None
        if not _open(prev):
            # the same content under another name (a copied or renamed file): the same job
            other = _same_content(ms, text, p)
            if other is not None:
                prev = _settled(_read_of(other, ms), ms)
        if prev is None:        # a finished run of a copy: its flag blocks ran (said by _after)
            done = _same_content(ms, text, p, finished=True)
            prev = _read_of(done, ms) if done is not None else None
        if not _open(prev):
            _say_other_unfinished(ms, yaml_path, p)
        rec = {"yaml": os.path.realpath(str(yaml_path)), "sections": sections, "digest": text,
               "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "pid": os.getpid(),
               "host": socket.gethostname(), "pid_start": _proc_start(os.getpid()), "base": None,
               "ours": [], "started_ts": time.time()}
        rec["run_id"] = f"{socket.gethostname()}:{os.getpid()}:{rec['pid_start']}:{os.path.basename(p)}"
        plan = _after(ms, yaml_path, prev, text, order) if prev is not None else None
        if plan is not None:        # restore: the journal carries the base and records the restore's
            rec["base"], rec["ours"] = plan     # own backup as it is saved (review 53e: an interrupt in
        before = _read(p)                       # the restore left the backup "another task's")
        if _write(p, rec):
            written.append(p)
            _ACTIVE[os.path.realpath(ms)] = p
        if plan is not None:
            base = plan[0]
            try:
                backup = restore(ms, base)
            except BaseException:
                # refused before it saved anything (the MS in use: a lock): the journals as they were
                # (review 53f: a refused run had taken the other's over and claimed its versions)
                now = _read(p)
                if now is not None and list(now.get("ours") or []) == list(rec["ours"]):
                    _ACTIVE.pop(os.path.realpath(ms), None)
                    if before is not None:
                        _write(p, before)
                    else:
                        _remove(p)
                raise
            log.warning("the previous run of %s on %s did not finish (interrupted or stopped by an error) "
                        "after saving flag version %s before its first FLAG write; %s, so FLAG was put back "
                        "first to %s, the flags before that run (the flags it replaced, with any written "
                        "since without a saved version -- e.g. CASA's flagdata with flagbackup=False -- are "
                        "saved as %s; undo: %s; or add them back with merge='or')",
                        prev.get("yaml", yaml_path), ms, base, _why_restored(base), base, backup,
                        _restore_cmd(ms, backup))
        if other is not None:
            _finish_file(other)         # taken over by this file's journal
    return written


def _why_restored(base) -> str:
    """Why a re-run puts FLAG back to an interrupted run's ``base``: its flag blocks (a base akflag_N),
    or an apply block's FLAG writes, which this run's solves would read (a base akapply_N: the re-run's
    solutions came out of the interrupted apply's flags, not the data's; session 55)."""
    if str(base).startswith("akapply_"):
        return ("its apply blocks' FLAG writes (samples without a valid solution) would reach this run's "
                "solves")
    return "its flag blocks would flag again on top of their own flags"


def _running(d) -> bool:
    """The journal's run may be alive: its process exists on this host and started when the journal
    says (a reused pid is not it -- review 53g); a journal of another host is taken as alive (it cannot
    be told: a shared filesystem; the warning names it)."""
    if d.get("host", socket.gethostname()) != socket.gethostname():
        return True
    pid = d.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    start = _proc_start(pid)
    if start is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:             # exists, another user's
            return True
        return "pid_start" not in d
    return d.get("pid_start") in (None, start)


def _proc_start(pid):
    """The start time of process ``pid`` (clock ticks since boot, /proc/<pid>/stat field 22), or None
    (no such process, or no /proc)."""
    try:
        with open(f"/proc/{int(pid)}/stat") as fh:
            text = fh.read()
    except OSError:
        return None
    try:
        return int(text.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _say_other_unfinished(ms, yaml_path, own):
    """A WARNING for each unfinished journal of another file (other content) on ``ms`` whose run is gone
    and saved a version: its flag blocks' flags are under this run's (review 53f: an edited copy of an
    interrupted file flagged on top of it, silently)."""
    import glob

    from . import flagversions

    order = flagversions.saved_order(ms)
    for q in sorted(glob.glob(os.path.join(flagversions.versions_dir(ms), PREFIX + "*.json"))):
        d = _read_of(q, ms) if q != own else None
        if not _open(d) or _running(d):
            continue
        base = base_of(d)
        if base and base in order:
            log.warning("an earlier run of %s on %s did not finish after saving flag version %s before its "
                        "first FLAG write; this run (%s, other content) flags on top of what it wrote -- "
                        "for the flags before it, restore first: alakazam flagmanager --vis %s --mode "
                        "restore --versionname %s", d.get("yaml", "?"), ms, base, yaml_path, ms, base)


def _remove(p):
    try:
        os.unlink(p)
    except OSError:
        pass


def _open(d) -> bool:
    """Journal ``d`` is of a run that did not finish and whose flags nobody has put back since
    (:func:`note_restored`)."""
    return d is not None and not d.get("finished") and not d.get("settled")


def _same_content(ms, text, own, finished=False):
    """The path of an open (:func:`_open`; ``finished``: a finished) journal of another file with the
    same content (digest) on ``ms`` whose run is gone, or None."""
    import glob

    from . import flagversions

    for q in sorted(glob.glob(os.path.join(flagversions.versions_dir(ms), PREFIX + "*.json"))):
        if q == own:
            continue
        d = _read_of(q, ms)
        if d is None or d.get("digest") != text or d.get("superseded"):
            continue
        if (bool(d.get("finished")) if finished else _open(d)) and not _running(d):
            return q
    return None


def note_restored(ms, name, merge="replace"):
    """FLAG of ``ms`` was just restored from flag version ``name`` (akflagmanager or an undo): with merge
    'replace' a journal of a run that is gone, open (:func:`_open`) or finished, whose base is ``name``,
    is settled -- that run's flag writes are undone, so a later run restores nothing for it and says
    nothing of it (review 53g: the warning that asks for this restore repeated on every later run after
    the user had done it; review 58b: the same for a finished run's "already ran" warning).  A restore
    ('replace' or 'or') of a version saved after a settled journal's base, before it settled, brings
    that run's flags back: the journal is open again (reviews 54d, 54g).
    The journals of this process's run are left as they are."""
    import glob

    from . import flagversions

    mine = set(_ACTIVE.values())
    order = flagversions.saved_order(ms)
    for q in sorted(glob.glob(os.path.join(flagversions.versions_dir(ms), PREFIX + "*.json"))):
        d = _read_of(q, ms) if q not in mine else None
        if d is None or _running(d):
            continue
        if d.get("settled"):
            # undone: a version saved after the base before the settling (the hand restore's own backup,
            # its undo) brings the run's flags back -- the journal is open again (review 54d)
            then = list(d.get("settled_order") or [])
            if name in then and d["settled"] in then and then.index(name) > then.index(d["settled"]):
                d.pop("settled")
                d.pop("settled_order", None)
                _write(q, d)
            continue
        d = _settled(d, ms)     # (a kill between the base's save and its entry: the base by run id, 54d)
        # a finished run's too (review 58b: after the user restored a finished run's base, a copy of the
        # file run later still said "already ran ... restore <base>", and that restore would have dropped
        # the flags they wrote since): its flag writes are undone as well
        if merge == "replace" and d is not None and not d.get("settled") and base_of(d) == name:
            d["settled"] = name
            d["settled_order"] = order
            _write(q, d)


def _finish_file(p):
    d = _read(p)
    if d is not None:
        d["finished"] = True
        d["superseded"] = True
        _write(p, d)


def _after(ms, yaml_path, prev, text, order):
    """What to do with an earlier run's journal ``prev`` (module doc): (base, ours) when its base is to be
    restored (carried into this run's journal first), else None (warned here when there is reason)."""
    base = base_of(prev)
    if base is None or prev.get("settled"):     # that run saved no version, or its flags were put back
        return None                             # since (note_restored): FLAG is as it was before it
    undo = f"alakazam flagmanager --vis {ms} --mode restore --versionname {base}"
    if prev.get("finished"):
        if base.startswith("akapply_") and base in order:
            later = _saved_since(order, base, list(prev.get("ours") or []))
            log.warning("%s already ran on %s (a finished run) and its apply blocks wrote FLAG (samples "
                        "without a valid solution flagged): this run's solves read those flags, so their "
                        "solutions differ from the first run's; for the solves of one run, restore flag "
                        "version %s, the flags before that run, first: %s%s", yaml_path, ms, base, undo,
                        f" -- other tasks saved flag versions since ({', '.join(later)}): that restore drops "
                        f"their flags too" if later else "")
        elif base.startswith("akflag_") and base in order:
            done = prev.get("yaml") or os.path.realpath(str(yaml_path))
            same = "" if done == os.path.realpath(str(yaml_path)) else f", of {done}: the same content"
            later = _saved_since(order, base, list(prev.get("ours") or []))
            also = (f" -- other tasks saved flag versions since ({', '.join(later)}): that restore drops "
                    f"their flags too" if later else "")
            log.warning("the flag blocks of %s already ran on %s (a finished run%s): they flag again on top "
                        "of their own flags (tfcrop, rflag and the MAD modes flag more each time); for the "
                        "flags of one run, restore flag version %s, the flags before that run, first: %s%s",
                        yaml_path, ms, same, base, undo, also)
        return None
    ours = list(prev.get("ours") or [])
    head = (f"the previous run of {yaml_path} on {ms} did not finish (interrupted or stopped by an error) "
            f"after saving flag version {base} before its first FLAG write")
    if base not in order:
        log.warning("%s; that version has been deleted, so FLAG cannot be put back: this run's flag blocks "
                    "flag again on top of that run's flags", head)
        return None
    if prev.get("digest") != text:
        log.warning("%s, with another version of the file; FLAG is not put back (perhaps another job): "
                    "for the flags of an uninterrupted run restore %s first: %s", head, base, undo)
        return None
    others = _saved_since(order, base, ours)
    if others:
        log.warning("%s; FLAG was changed since by other tasks (flag versions %s saved after it), so it "
                    "is not put back: this run's flag blocks flag again on top of all of them. %s holds "
                    "the flags before that run: %s", head, ", ".join(others), base, undo)
        return None
    return base, ours


def _active(ms):
    """(path, journal) of the run in progress in this process that journals ``ms``, or (None, None)."""
    p = _ACTIVE.get(os.path.realpath(str(ms)))
    d = _read(p) if p is not None else None
    return (p, d) if d is not None else (None, None)


def _run_saved(ms, d, name) -> bool:
    """Version ``name`` is listed and carries journal ``d``'s run id: the job saved it."""
    from . import flagversions

    return bool(name) and bool(d.get("run_id")) and name in flagversions.saved_order(ms) and \
        flagversions.saved_by_run(ms, name) == d["run_id"]


def note_saving(ms, name):
    """Flag version ``name`` of ``ms`` is about to be saved: a run in progress records it as pending, so a
    kill -9 between the save and :func:`note_saved` still leaves it the job's -- and a kill during the
    save, before it is listed, leaves nothing the job's (review 53g: recording the version listed
    before it made the next version anyone saved the job's, a manual flag's backup then restored
    away)."""
    p, d = _active(ms)
    if p is not None:
        d["pending"] = str(name)
        _write(p, d)


def note_saved(ms, name):
    """A flag version ``name`` of ``ms`` was just saved: a run in progress records it in its journal
    (before FLAG is written; nothing when no run of this process journals that MS).  ``name`` None: the
    save raised -- the pending version is recorded if it is listed all the same (an interrupt after it
    was listed), else dropped."""
    p, d = _active(ms)
    if p is None:
        return
    if name is None:
        pend = d.get("pending")
        name = pend if _run_saved(ms, d, pend) else None
    if name is not None and name not in (d.get("ours") or []):
        d["ours"] = list(d.get("ours") or []) + [name]
    d.pop("pending", None)
    _write(p, d)


def run_id(ms) -> str:
    """This process's YAML run journaling ``ms`` ('' none): the id the flag versions it saves carry
    (core/flagtable.RUN_KEY), so a version saved but not recorded (a kill -9 in between) is told from
    another task's version of the same name (review 53g)."""
    _, d = _active(ms)
    return str(d.get("run_id", "")) if d else ""


def _settled(d, ms):
    """Journal ``d`` with a save it announced (:func:`note_saving`) but did not record (killed in
    between): the version it saved is the job's -- the listed versions after its last recorded one that
    carry the run's id.  Not only the announced name: another process's save inside the announcement
    takes that name, and the run's save the next (review 53g: the re-run then named the job's own
    version 'another task's')."""
    if d is None or not d.get("pending") or not d.get("run_id"):
        return d
    from . import flagversions

    ours = list(d.get("ours") or [])
    order = flagversions.saved_order(ms)
    after = order[order.index(ours[-1]) + 1:] if ours and ours[-1] in order else order
    found = [v for v in after if v not in ours and _run_saved(ms, d, v)]
    return dict(d, ours=ours + found) if found else d


def end(paths):
    """Every block finished: the run's journals are marked finished (a later run of the file restores
    nothing, and warns when its flag blocks flag again on top of this run's)."""
    for p in paths:
        d = _read(p)
        if d is not None:
            d["finished"] = True
            _write(p, d)


def stop():
    """The run ended (finished, interrupted or stopped by an error): no journal records saves any more."""
    _ACTIVE.clear()
