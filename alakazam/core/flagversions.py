"""Flag versions of a Measurement Set, as CASA keeps them: ``<ms>.flagversions/``.

Layout
------
* ``<ms>.flagversions/flags.<name>``: a casacore table with FLAG and FLAG_ROW of every MS row, in MS
  row order -- the table CASA's flagmanager and flagdata write (:mod:`alakazam.core.flagtable`), so CASA
  restores the versions alakazam saves and alakazam restores the versions CASA saved.
* ``<ms>.flagversions/flags.<name>.npz``: the format of earlier alakazam versions (FLAG bit-packed per
  DATA_DESC_ID: keys ``rows_<dd>``, ``shape_<dd>``, ``chunks_<dd>``, ``bits_<dd>``; ``flag_row``;
  ``meta``, a JSON string with name, comment and time; the older unpacked ``flag_<dd>`` too).  Read,
  restored and deleted; no longer written.  CASA cannot restore these.
* ``<ms>.flagversions/FLAG_VERSION_LIST``: one line per version, ``<name> : <comment>`` (CASA's format),
  in the order they were saved.

Names are ``<task>_<n>`` (``akflag_1``, ``akapply_2``, ...), n = 1 + the largest n already used by that
task (alakazam's or CASA's versions alike); a user may also save under any name that is not taken.

Restore (either format): ``merge='replace'`` writes the saved FLAG and FLAG_ROW, ``'or'`` / ``'and'``
combine them elementwise with the current ones, FLAG and FLAG_ROW alike -- what CASA's flagmanager does
(tests/test_flagversions_casa.py compares with it when CASA is installed).

Safety: a version is written under a temporary name (``.tmp.<host>.<pid>.flags.<name>``), fsynced and
renamed into place, and listed as one step (SIGINT / SIGTERM held in between; a failure to list it
removes it), so a process killed at any moment (also during the FLAG write that follows a save) leaves
either no version or a complete one, and a half-written table is never listed.  A kill -9 between the
rename and the listing (signals cannot be held against it) left the table in ``<ms>.flagversions``
unlisted, its disk space lost for good: an empty marker ``.tmp.<host>.<pid>.installing.<name>`` now
exists from just before the rename until the version is listed, and a later save removes such a table
when its process no longer runs and the version is not listed (FLAG is written only after the listing,
so nothing was ever saved in it) -- the same table saved by CASA, or listed meanwhile, has no marker
and is never touched.  The first version of
an MS is made with its directory: ``<ms>.flagversions`` is built beside the MS as
``.tmp-<ms>.flagversions.<host>.<pid>`` (the version table and FLAG_VERSION_LIST) and renamed into
place whole, so an interrupt or error before that leaves no ``<ms>.flagversions`` (an empty one stayed
behind before) and never touches a directory that already existed.  A later save removes the temporary
leftovers of processes that no longer run (a kill -9).  The list is rewritten the same way; delete
unlists first.
FLAG is read and written in row chunks (``CHUNK_ROWS``), so memory stays bounded by a chunk.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time as _time
from typing import Dict, List

import numpy as np

from ..errors import AlakazamError
from . import flagtable

#: rows per FLAG read / write
CHUNK_ROWS = 20000
LIST_NAME = "FLAG_VERSION_LIST"
MERGES = ("replace", "or", "and")
_NAME_OK = re.compile(r"^[A-Za-z0-9_.+-]+$")
_TMP = ".tmp."
#: the marker of a version moved into place but not listed yet: ``.tmp.<host>.<pid>.installing.<name>``
_INSTALLING = "installing."


def versions_dir(ms) -> str:
    return str(ms).rstrip("/") + ".flagversions"


def _path(ms, name) -> str:
    """The path of the ``.npz`` version ``name`` (the format alakazam wrote before CASA tables)."""
    return os.path.join(versions_dir(ms), f"flags.{name}.npz")


def _table_path(ms, name) -> str:
    return os.path.join(versions_dir(ms), f"flags.{name}")


def version_path(ms, name):
    """Where version ``name`` is stored: its ``flags.<name>`` table, else its ``flags.<name>.npz``
    file, else None."""
    if "/" in str(name) or str(name) in ("", ".", ".."):
        return None
    p = _table_path(ms, name)
    if os.path.isfile(os.path.join(p, "table.dat")):
        return p
    p = _path(ms, name)
    return p if os.path.isfile(p) else None


def _read_list(ms) -> List[tuple]:
    return _read_list_in(versions_dir(ms))


def saved_order(ms) -> List[str]:
    """The names of the listed versions in the order they were saved (FLAG_VERSION_LIST; no file is
    opened, unlike :func:`list_versions`)."""
    return [n for n, _ in _read_list(ms)]


def _read_list_in(d) -> List[tuple]:
    p = os.path.join(d, LIST_NAME)
    out = []
    if os.path.exists(p):
        with open(p) as fh:
            for line in fh:
                line = line.rstrip("\n")
                if not line.strip():
                    continue
                name, _, comment = line.partition(" : ")
                out.append((name.strip(), comment))
    return out


def _write_list(ms, entries):
    _write_list_in(versions_dir(ms), entries)


def _write_list_in(d, entries):
    """Write FLAG_VERSION_LIST in the directory ``d`` (a temporary file fsynced and renamed into place)."""
    p = os.path.join(d, LIST_NAME)
    tmp = p + ".tmp"
    with open(tmp, "w") as fh:
        for name, comment in entries:     # one line per version: a comment's line breaks as spaces
            fh.write(f"{name} : {' '.join(str(comment).splitlines())}\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)
    _fsync_dir(d)


def _fsync_dir(d):
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _saved_time(p) -> str:
    """The save time recorded in a version ('' when unknown: e.g. CASA's tables)."""
    try:
        if p.endswith(".npz"):
            with np.load(p) as z:
                return json.loads(str(z["meta"])).get("time", "") if "meta" in z.files else ""
        from casacore.tables import table

        with table(p, ack=False) as v:
            kw = v.getkeywords()
        return str(kw.get(flagtable.SAVED_KEY, ""))
    except Exception:            # unreadable: still listed, the restore reports it
        return ""


def saved_by_run(ms, name) -> str:
    """The YAML run that saved version ``name`` (its keyword, core/runjournal.run_id; '' unknown)."""
    p = version_path(ms, name)
    if p is None or p.endswith(".npz"):
        return ""
    try:
        from casacore.tables import table

        with table(p, ack=False) as v:
            return str(v.getkeywords().get(flagtable.RUN_KEY, ""))
    except Exception:            # unreadable: not known
        return ""


def list_versions(ms) -> List[Dict]:
    """Saved versions in save order: ``[{'name', 'comment', 'time', 'format'}, ...]`` (time:
    'YYYY-MM-DD hh:mm:ss' UTC, '' when unknown, e.g. for versions saved by CASA; format: ``'table'``
    (CASA's, restorable by CASA too) or ``'npz'`` (older alakazam)).  Listed versions whose table or
    file is missing are left out."""
    out = []
    for name, comment in _read_list(ms):
        p = version_path(ms, name)
        if p is None:
            continue
        fmt = "npz" if p.endswith(".npz") else "table"
        if fmt == "npz":
            try:
                with np.load(p) as z:
                    if "meta" in z.files:
                        comment = json.loads(str(z["meta"])).get("comment", comment)
            except Exception:        # unreadable file: still listed, the restore reports it
                pass
        out.append({"name": name, "comment": comment, "time": _saved_time(p), "format": fmt})
    return out


def next_name(ms, task) -> str:
    """``<task>_<n>`` with n one more than the largest n used by ``task`` (listed or on disk)."""
    used = [n for n, _ in _read_list(ms)]
    d = versions_dir(ms)
    if os.path.isdir(d):
        # CASA's (and our) flags.<name> tables and our older flags.<name>.npz files
        used += [f[len("flags."):].removesuffix(".npz") for f in os.listdir(d) if f.startswith("flags.")]
    k = 0
    for u in used:
        m = re.fullmatch(re.escape(task) + r"_(\d+)", u)
        if m:
            k = max(k, int(m.group(1)))
    return f"{task}_{k + 1}"


def _tmp_name(name) -> str:
    return f"{_TMP}{socket.gethostname()}.{os.getpid()}.flags.{name}"


def _remove(p):
    if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p, ignore_errors=True)
    elif os.path.lexists(p):
        os.remove(p)


def _installing_marker(d, name) -> str:
    """The marker of this process's :func:`_install` of version ``name`` in ``d`` (module doc)."""
    return os.path.join(d, f"{_TMP}{socket.gethostname()}.{os.getpid()}.{_INSTALLING}{name}")


def _clean_stale_tmp(d):
    """Remove the temporary versions left by killed processes of this host, and the version tables they
    had moved into place but not listed yet (their ``installing`` marker is left: module doc)."""
    host = socket.gethostname()
    for f in os.listdir(d):
        m = re.fullmatch(re.escape(_TMP + host) + r"\.(\d+)\.(.*)", f)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except (OverflowError, ValueError):     # no process id (another tool's temporary): not ours
            continue
        except ProcessLookupError:
            rest = m.group(2)
            if rest.startswith(_INSTALLING):
                name = rest[len(_INSTALLING):]
                listed = {n for n, _ in _read_list_in(d)}
                if name and name not in listed:
                    _remove(os.path.join(d, f"flags.{name}"))
            _remove(os.path.join(d, f))
        except OSError:             # running, owned by another user
            pass


def name_error(name):
    """Why ``name`` cannot be a new version's name (None: it can).  ``<version>.in_progress`` is the
    marker of a run writing FLAG after saving ``<version>`` (calibration/flagsafety.py): a version of
    that name would be taken for one (and break the restore of ``<version>``)."""
    if not _NAME_OK.match(str(name)):
        return f"{name!r} is not a valid version name (letters, digits, _ . + -)"
    if str(name).endswith(".in_progress"):
        return (f"{name!r}: names ending in '.in_progress' are reserved (the in-progress marker of a "
                "FLAG write)")
    return None


def save(ms, task="akflag", comment="", name=None) -> str:
    """Save FLAG and FLAG_ROW as a new version (a CASA flag-version table); returns its name
    (``<task>_<n>`` unless ``name``).  A YAML run in progress records it in its journal
    (:func:`alakazam.core.runjournal.note_saved`) before FLAG is written."""
    from . import runjournal

    runjournal.note_saving(ms, name if name is not None else next_name(ms, task))
    try:
        name = _save(ms, task, comment, name)
    except BaseException:
        runjournal.note_saved(ms, None)         # nothing saved: the announcement withdrawn
        raise
    runjournal.note_saved(ms, name)
    return name


def _save(ms, task, comment, name) -> str:
    from casacore.tables import table

    from .ms_io import check_ms

    check_ms(ms)
    d = versions_dir(ms)
    if os.path.isdir(d):            # (first: an unlisted leftover's table no longer takes its name)
        _clean_stale_tmp(d)
    auto = name is None
    if auto:
        name = next_name(ms, task)
    elif name_error(name):
        raise AlakazamError(f"versionname: {name_error(name)}")
    elif (any(n == name for n, _ in _read_list(ms)) or os.path.lexists(_path(ms, name))
          or os.path.lexists(_table_path(ms, name))):
        raise AlakazamError(f"versionname: {name!r} already exists in {versions_dir(ms)}; delete it first "
                            "or choose another name")
    d = versions_dir(ms)
    if os.path.lexists(d) and not os.path.isdir(d):
        raise AlakazamError(f"{d} exists and is not a directory (a file, or a symlink to a missing "
                            "directory); flag versions of the MS are saved there: move it away first")
    from . import diskspace         # FLAG as bits, checked before writing (core/diskspace.py)
    diskspace.require(d, diskspace.flag_bytes(ms), f"flag version {name!r} in {d}")
    _clean_stale_stages(ms)
    when = _time.strftime("%Y-%m-%d %H:%M:%S", _time.gmtime())
    text = str(comment) if comment else task        # its FLAG_VERSION_LIST comment
    stage = tmp = None
    try:
        if not os.path.isdir(d):
            # the first version: the directory is made beside the MS under a temporary name, with the
            # version and its list, and renamed into place whole (_publish) -- an interrupt or an error
            # before that leaves nothing new (before: an empty <ms>.flagversions stayed behind)
            stage = _stage_path(ms)
            _remove(stage)              # this process's own, from an earlier interrupted save
            os.mkdir(stage)
        tmp = os.path.join(stage or d, _tmp_name(name))
        _remove(tmp)
        with table(str(ms), ack=False) as t:
            from . import runjournal

            flagtable.write(t, tmp, flagtable.ddid_rows(t, 10 * CHUNK_ROWS), CHUNK_ROWS, saved=when,
                            run=runjournal.run_id(ms))
        if stage is not None:
            os.rename(tmp, os.path.join(stage, f"flags.{name}"))
            tmp = os.path.join(stage, f"flags.{name}")
            _write_list_in(stage, [(name, text)])
            if _publish(stage, d):
                stage = tmp = None
                return name
            # another process made the directory meanwhile: the version joins it as below
            if auto:
                name = next_name(ms, task)
        _install(ms, tmp, name, text)
        tmp = None
    except BaseException as e:
        if tmp is not None:
            _remove(tmp)
        full = diskspace.translate(e, d, f"flag version {name!r}")
        if full is not None:
            raise full from e
        raise
    finally:
        if stage is not None:       # what is left of this save's directory (none once published)
            _remove(stage)
    return name


def _stage_prefix(ms) -> str:
    """The name (in the MS's directory) of a ``<ms>.flagversions`` being made by a process of this host,
    without the process id (:func:`_stage_path`)."""
    return f".tmp-{os.path.basename(versions_dir(ms))}.{socket.gethostname()}."


def _stage_path(ms) -> str:
    """Where this process makes ``<ms>.flagversions`` with its first version before renaming it into
    place: ``.tmp-<ms>.flagversions.<host>.<pid>`` beside the MS."""
    parent = os.path.dirname(os.path.abspath(versions_dir(ms)))
    return os.path.join(parent, f"{_stage_prefix(ms)}{os.getpid()}")


def _clean_stale_stages(ms):
    """Remove the ``<ms>.flagversions`` being made (:func:`_stage_path`) by processes of this host that no
    longer run (a kill -9 during the first save)."""
    parent = os.path.dirname(os.path.abspath(versions_dir(ms)))
    pre = _stage_prefix(ms)
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for f in names:
        if not f.startswith(pre) or not f[len(pre):].isdigit() or int(f[len(pre):]) == os.getpid():
            continue
        try:
            os.kill(int(f[len(pre):]), 0)
        except (OverflowError, ValueError):     # no process id: not ours
            continue
        except ProcessLookupError:
            _remove(os.path.join(parent, f))
        except OSError:             # running, owned by another user
            pass


def _publish(stage, d) -> bool:
    """Rename the directory ``stage`` (a complete version and its list) to ``d`` in one step; False when
    ``d`` was made meanwhile (another process's first save) and holds something."""
    import errno

    if os.path.lexists(d):          # made meanwhile (or a symlink, a file: never replaced)
        return False
    try:
        os.rename(stage, d)         # (an empty ``d`` made just now is replaced: nothing in it is lost)
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY) or os.path.isdir(d):
            return False
        raise
    _fsync_dir(os.path.dirname(os.path.abspath(d)))
    return True


def _install(ms, tmp, name, text):
    """Move the complete version table ``tmp`` into ``<ms>.flagversions`` as ``flags.<name>`` and list it,
    as one step: SIGINT / SIGTERM are held in between, and a failure to list it removes it, so that a
    version is listed once it is whole and a table is whole once it is there."""
    from . import signals

    d = versions_dir(ms)
    final = _table_path(ms, name)
    if os.path.lexists(final) or any(n == name for n, _ in _read_list(ms)):
        raise AlakazamError(f"versionname: {name!r} already exists in {d} (saved meanwhile by another "
                            "process); save again")
    marker = _installing_marker(d, name)
    with signals.held():
        with open(marker, "w"):     # (a kill -9 before the listing: a later save removes ``final``)
            pass
        try:
            # (the marker goes also when the move fails -- ``final`` made meanwhile by another party:
            # left behind, a later save took it for this process's and removed that party's table)
            os.rename(tmp, final)
            try:
                _fsync_dir(d)
                entries = [e for e in _read_list(ms) if e[0] != name]
                _write_list(ms, entries + [(name, text)])
            except BaseException:
                if all(n != name for n, _ in _read_list(ms)):      # unlisted: not left as a stray table
                    _remove(final)
                raise
        finally:
            _remove(marker)


def _saved_flags(z, dd):
    """Generator of (rows, flag chunk) of one DATA_DESC_ID from a ``.npz`` version."""
    rows = z[f"rows_{dd}"]
    if f"flag_{dd}" in z.files:                 # old unpacked format (backup_flags before flagversions)
        f = z[f"flag_{dd}"]
        for s in range(0, len(rows), CHUNK_ROWS):
            yield rows[s:s + CHUNK_ROWS], f[s:s + CHUNK_ROWS]
        return
    shape = tuple(int(x) for x in z[f"shape_{dd}"])
    per_row = int(np.prod(shape[1:]))
    bits = z[f"bits_{dd}"]
    off = 0
    for k, n in enumerate(z[f"chunks_{dd}"]):
        r = rows[k * CHUNK_ROWS:(k + 1) * CHUNK_ROWS]
        f = np.unpackbits(bits[off:off + n], count=len(r) * per_row).astype(bool)
        off += int(n)
        yield r, f.reshape((len(r),) + shape[1:])


def _not_found(ms, name):
    have = [v["name"] for v in list_versions(ms)]
    return AlakazamError(f"versionname: flag version {name!r} not found in {versions_dir(ms)}; saved: "
                         f"{', '.join(have) or 'none'}")


def restore(ms, name, merge="replace"):
    """Restore version ``name`` (a CASA table, saved by alakazam or CASA, or an older ``.npz``) into
    FLAG and FLAG_ROW.

    merge: ``'replace'`` (bit-exact copy of the saved flags), ``'or'`` (flagged in either), ``'and'``
    (flagged in both), on FLAG and FLAG_ROW, as CASA's flagmanager.  The rows are written in chunks of
    ``CHUNK_ROWS``.
    """

    from .ms_io import check_ms

    check_ms(ms)
    if merge not in MERGES:
        raise AlakazamError(f"merge: {merge!r} is not allowed; expected one of {', '.join(MERGES)}")
    path = version_path(ms, name)
    if path is None:
        raise _not_found(ms, name)
    from . import columns, locks

    with locks.writer_lock(ms, "ms"):       # one FLAG writer; a killed writer's flush undone first
        columns.recover(ms)
        try:
            columns.begin_writes(ms)
            _restore_into(ms, path, name, merge)
        finally:
            columns.end_writes(ms)
    if merge in ("replace", "or"):  # a YAML run's journal settled (replace of its base) or reopened
        from . import runjournal

        runjournal.note_restored(ms, name, merge)


def _merge(cur, new, merge):
    return new if merge == "replace" else (cur | new) if merge == "or" else (cur & new)


def check_matches(ms, name):
    """An AlakazamError when flag version ``name`` cannot be restored into ``ms``: another number of rows,
    or FLAG cells of another shape in the first row of a DATA_DESC_ID (a version of another MS).  Cheap
    (a few cells): akflagmanager checks it before saving the current flags (a version of another MS was
    found only after that save, and its marker then said FLAG was "partly restored")."""
    from casacore.tables import table

    path = version_path(ms, name)
    if path is None:
        raise _not_found(ms, name)
    with table(str(ms), ack=False) as t:
        firsts = {d: int(r[0]) for d, r in flagtable.ddid_rows(t, 10 * CHUNK_ROWS).items() if len(r)}
        if path.endswith(".npz"):
            with np.load(path) as z:
                if len(z["flag_row"]) != t.nrows():
                    raise AlakazamError(f"versionname: {name!r} holds {len(z['flag_row'])} rows but {ms} has "
                                        f"{t.nrows()}; the version belongs to another MS")
                for dd in sorted(int(k[len("rows_"):]) for k in z.files if k.startswith("rows_")):
                    for rows, f in _saved_flags(z, dd):
                        if len(rows) and f.shape[1:] != t.getcell("FLAG", int(rows[0])).shape:
                            raise AlakazamError(f"versionname: {name!r} does not match {ms} (FLAG of shape "
                                                f"{f.shape[1:]} saved for cells of shape "
                                                f"{t.getcell('FLAG', int(rows[0])).shape}); the version "
                                                "belongs to another MS")
                        break
            return
        with table(path, ack=False) as v:
            flagtable.check_rows(v, t, name)
            for d, r in firsts.items():
                have, want = v.getcell("FLAG", r).shape, t.getcell("FLAG", r).shape
                if have != want:
                    raise AlakazamError(f"versionname: {name!r} does not match {ms} (row {r}: FLAG of shape "
                                        f"{have} saved for cells of shape {want}); the version belongs to "
                                        "another MS")


def _restore_into(ms, path, name, merge):
    from casacore.tables import table

    with table(str(ms), readonly=False, ack=False) as t:
        if path.endswith(".npz"):
            with np.load(path) as z:
                fr = z["flag_row"]
                if len(fr) != t.nrows():
                    raise AlakazamError(f"versionname: {name!r} holds {len(fr)} rows but {ms} has "
                                        f"{t.nrows()}; the version belongs to another MS")
                dds = sorted(int(k[len("rows_"):]) for k in z.files if k.startswith("rows_"))
                for dd in dds:
                    for rows, f in _saved_flags(z, dd):
                        _put_merged(t, rows, f, merge, name)
                _put_flag_row(t, lambda s, m: fr[s:s + m], merge)
            return name
        with table(path, ack=False) as v:
            flagtable.check_rows(v, t, name)
            groups = flagtable.ddid_rows(t, 10 * CHUNK_ROWS)
            for rows, f in flagtable.saved_flags(v, groups, CHUNK_ROWS, name):
                _put_merged(t, rows, f, merge, name)
            _put_flag_row(t, lambda s, m: v.getcol("FLAG_ROW", s, m), merge)
    return name


def _put_merged(t, rows, f, merge, name):
    if not len(rows):
        return
    cell = t.getcell("FLAG", int(rows[0])).shape
    if f.shape != (len(rows),) + tuple(cell):
        raise AlakazamError(f"versionname: {name!r} does not match the MS (FLAG of shape {f.shape[1:]} "
                            f"saved for cells of shape {tuple(cell)}); the version belongs to another MS")
    if merge != "replace":
        f = _merge(flagtable.get_flag(t, rows), f, merge)
    flagtable.put_flag(t, rows, f)


def _put_flag_row(t, saved, merge):
    n = t.nrows()
    for s in range(0, n, 10 * CHUNK_ROWS):
        m = min(10 * CHUNK_ROWS, n - s)
        new = saved(s, m)
        if merge != "replace":
            new = _merge(t.getcol("FLAG_ROW", s, m), new, merge)
        t.putcol("FLAG_ROW", new, s, m)


def delete(ms, name):
    """Delete version ``name`` (its table or file, and its list entry; the entry first, so that a kill
    in between leaves an unlisted leftover, never a listed half version)."""
    path = version_path(ms, name)
    entries = _read_list(ms)
    if path is None and not any(n == name for n, _ in entries):
        raise _not_found(ms, name)
    _write_list(ms, [e for e in entries if e[0] != name])
    if path is not None:
        gone = os.path.join(versions_dir(ms), _tmp_name(name))       # removed by a later save if killed
        os.rename(path, gone)
        _remove(gone)
    return name


def unlist_missing(ms):
    """Drop the FLAG_VERSION_LIST lines of versions whose table or file is gone (undo removes the
    versions of an interrupted task; CASA's flagmanager warns about listed versions without a table)."""
    entries = _read_list(ms)
    keep = [e for e in entries if version_path(ms, e[0]) is not None]
    if len(keep) != len(entries):
        _write_list(ms, keep)
