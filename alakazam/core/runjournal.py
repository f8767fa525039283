"""A YAML run's journal of its FLAG writes, so that a re-run after an interrupt starts from the flags the
interrupted run started from (the standard: "a re-run finishes the job").

Why: flag blocks are not idempotent -- tfcrop, rflag and the MAD modes flag more when run again on their
own output (a review measured 8,072 samples of 7.4 million changed by a second uninterrupted run, and
10,530 by a re-run after Ctrl-C).  A plain re-run of an interrupted `alakazam run` therefore flagged on
top of the first run's flags and gave other solutions and corrected data, with no word about it.

Convention (tests/test_runjournal.py):

- Before its first block, ``alakazam run FILE`` (and ``alakazam flag FILE``) writes, for every MS whose
  FLAG a flag block of the file writes, the journal ``<ms>.flagversions/alakazam-run.<key>.json``: the
  file's path, the sections run, a digest of the file's text and the flag versions listed for the MS
  then (``versions_before``).  ``<key>`` is derived from the file's absolute path and the sections.
  The journal is marked finished when every block has finished; a run stopped by Ctrl-C, SIGTERM,
  kill -9 or an error leaves it unfinished.
- A run that finds the journal of the same file, sections and text (its previous run did not finish)
  first restores (akflagmanager, merge='replace': the current flags are saved as a version first) the
  *base*: the first version saved after ``versions_before`` (the flags before the interrupted run's
  first FLAG write; an apply block's FLAG writes, after the flag blocks', are undone with them and
  redone the same), and carries the base into its own journal, so a second interrupt still goes back
  to the flags before the first run.  When the interrupted run saved no version, FLAG is as it was
  and nothing is restored.  A WARNING says what was restored and how to undo it.
- A journal of the same file with other text (the file was edited) or other sections restores
  nothing: a WARNING names the version holding the flags before that run, and the new run starts its
  own journal.
- After a finished run, a run of the same file restores nothing (running a file again is a second
  run, as with CASA's flagdata); when the finished run's flag blocks wrote FLAG, a WARNING says they
  flag again on top of their own flags and names the version to restore for the flags of one run.
- A journal that cannot be written (a read-only MS directory) is left out with a DEBUG line: the run
  goes on as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time

log = logging.getLogger("alakazam.runjournal")

PREFIX = "alakazam-run."


def _key(yaml_path, sections) -> str:
    text = os.path.abspath(str(yaml_path)) + "\0" + ",".join(sections)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def digest(yaml_path) -> str:
    with open(yaml_path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def journal_path(ms, yaml_path, sections) -> str:
    from . import flagversions

    return os.path.join(flagversions.versions_dir(ms), f"{PREFIX}{_key(yaml_path, sections)}.json")


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


def base_version(ms, prev) -> str | None:
    """The version holding the flags before the journal ``prev``'s job: its recorded base, else the
    first version saved after its ``versions_before`` (None: that run saved none, FLAG is as before)."""
    from . import flagversions

    order = flagversions.saved_order(ms)
    base = prev.get("base")
    if base:
        return base if base in order else None
    before = set(prev.get("versions_before") or [])
    return next((v for v in order if v not in before), None)


def begin(yaml_path, sections, mss, restore) -> list:
    """Before a run's first block: for each MS of ``mss`` (the MSs the run's flag blocks write FLAG of,
    paths as the run opens them), act on an earlier run's journal (module doc) and write this run's.
    ``restore(ms, version)`` restores a version and returns the version it saved the replaced flags as
    (akflagmanager).  Returns the journal paths written, for :func:`end`."""
    from . import flagversions

    sections = list(sections)
    text = digest(yaml_path)
    written = []
    for ms in dict.fromkeys(os.path.abspath(m) for m in mss):
        if not os.path.isdir(ms):
            continue
        p = journal_path(ms, yaml_path, sections)
        prev = _read(p)
        base = None
        if prev is not None and prev.get("finished"):
            base = base_version(ms, prev)
            if base and base.startswith("akflag_"):
                log.warning("the flag blocks of %s already ran on %s (a finished run): they flag again on "
                            "top of their own flags (tfcrop, rflag and the MAD modes flag more each time); "
                            "for the flags of one run, restore flag version %s, the flags before that run, "
                            "first: alakazam flagmanager --vis %s --mode restore --versionname %s",
                            yaml_path, ms, base, ms, base)
            base = None
        elif prev is not None:
            base = base_version(ms, prev)
            same = prev.get("digest") == text and prev.get("sections") == sections
            if base and same:
                backup = restore(ms, base)
                log.warning("the previous run of %s on %s did not finish (interrupted or stopped by an "
                            "error) after writing FLAG; its flag blocks would flag again on top of their "
                            "own flags, so FLAG was put back first to flag version %s, the flags before "
                            "that run (the flags it replaced are saved as %s; undo: %s)", yaml_path, ms,
                            base, backup, _restore_cmd(ms, backup))
            elif base:
                log.warning("an earlier run of %s on %s did not finish after writing FLAG, with %s; "
                            "flag version %s holds the flags before it: restore it first (alakazam "
                            "flagmanager --vis %s --mode restore --versionname %s) for the flags of an "
                            "uninterrupted run", yaml_path, ms,
                            "another version of the file" if prev.get("digest") != text else
                            "other sections", base, ms, base)
                base = None
        # after a restore the base stays the job's (a second interrupt goes back to it as well)
        before = (prev.get("versions_before") or []) if base else flagversions.saved_order(ms)
        rec = {"yaml": os.path.abspath(str(yaml_path)), "sections": sections, "digest": text,
               "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "pid": os.getpid(),
               "versions_before": before, "base": base}
        if _write(p, rec):
            written.append(p)
    return written


def end(paths):
    """Every block finished: the run's journals are marked finished (a later run of the file restores
    nothing, and warns when its flag blocks flag again on top of this run's)."""
    for p in paths:
        d = _read(p)
        if d is not None:
            d["finished"] = True
            _write(p, d)
