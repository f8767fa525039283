"""Flag versions of a Measurement Set, as CASA keeps them: ``<ms>.flagversions/``.

Layout
------
* ``<ms>.flagversions/flags.<name>.npz``: FLAG and FLAG_ROW of every row, bit-packed per DATA_DESC_ID
  (keys ``rows_<dd>``, ``shape_<dd>`` (row, chan, corr), ``bits_<dd>``; ``flag_row``; ``meta``: a JSON
  string with name, comment and time).  Files written by the earlier ``backup_flags`` (unpacked
  ``flag_<dd>``) are read too.
* ``<ms>.flagversions/FLAG_VERSION_LIST``: one line per version, ``<name> : <comment>`` (CASA's format),
  in the order they were saved.

Names are ``<task>_<n>`` (``akflag_1``, ``akapply_2``, ...), n = 1 + the largest n already used by that
task; a user may also save under any name that is not taken.

Safety: a version is written to a temporary file, fsynced and renamed into place, and only then listed,
so a process killed at any moment (also during the FLAG write that follows a save) leaves either no
version or a complete one.  The list is rewritten the same way.  FLAG is read and written in row chunks
(``CHUNK_ROWS``), so memory stays bounded by a chunk plus the bit-packed flags (1/8 byte per sample).
"""

from __future__ import annotations

import json
import os
import re
import time as _time
from typing import Dict, List

import numpy as np

from ..errors import AlakazamError

#: rows per FLAG read / write
CHUNK_ROWS = 20000
LIST_NAME = "FLAG_VERSION_LIST"
MERGES = ("replace", "or", "and")
_NAME_OK = re.compile(r"^[A-Za-z0-9_.+-]+$")


def versions_dir(ms) -> str:
    return str(ms).rstrip("/") + ".flagversions"


def _path(ms, name) -> str:
    return os.path.join(versions_dir(ms), f"flags.{name}.npz")


def _read_list(ms) -> List[tuple]:
    p = os.path.join(versions_dir(ms), LIST_NAME)
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
    d = versions_dir(ms)
    p = os.path.join(d, LIST_NAME)
    tmp = p + ".tmp"
    with open(tmp, "w") as fh:
        for name, comment in entries:
            fh.write(f"{name} : {comment}\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)


def list_versions(ms) -> List[Dict]:
    """Saved versions in save order: ``[{'name', 'comment', 'time'}, ...]`` (time: 'YYYY-MM-DD hh:mm:ss'
    UTC, '' when unknown).  Versions saved by CASA (a ``flags.<name>`` table) are listed with a note;
    versions whose file is missing are left out."""
    out = []
    for name, comment in _read_list(ms):
        p = _path(ms, name)
        if not os.path.exists(p):
            if os.path.isdir(os.path.join(versions_dir(ms), f"flags.{name}")):     # saved by CASA
                out.append({"name": name, "comment": f"{comment} (CASA flag-version table)", "time": ""})
            continue
        when = ""
        try:
            with np.load(p) as z:
                if "meta" in z.files:
                    meta = json.loads(str(z["meta"]))
                    when, comment = meta.get("time", ""), meta.get("comment", comment)
        except Exception:            # unreadable file: still listed, the restore reports it
            pass
        out.append({"name": name, "comment": comment, "time": when})
    return out


def next_name(ms, task) -> str:
    """``<task>_<n>`` with n one more than the largest n used by ``task`` (listed or on disk)."""
    used = [n for n, _ in _read_list(ms)]
    d = versions_dir(ms)
    if os.path.isdir(d):
        # our flags.<name>.npz files and CASA's flags.<name> tables
        used += [f[len("flags."):].removesuffix(".npz") for f in os.listdir(d) if f.startswith("flags.")]
    k = 0
    for u in used:
        m = re.fullmatch(re.escape(task) + r"_(\d+)", u)
        if m:
            k = max(k, int(m.group(1)))
    return f"{task}_{k + 1}"


def _ddid_rows(t):
    """{ddid: MS row numbers} of the main table (DATA_DESC_ID read in chunks)."""
    n = t.nrows()
    dd = np.empty(n, np.int64)
    for s in range(0, n, 10 * CHUNK_ROWS):
        m = min(10 * CHUNK_ROWS, n - s)
        dd[s:s + m] = t.getcol("DATA_DESC_ID", s, m)
    return {int(d): np.flatnonzero(dd == d) for d in np.unique(dd)}


def _get_flag(t, rows):
    """FLAG of ``rows`` (sorted MS row numbers): contiguous runs read directly, else a selection."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        return t.getcol("FLAG", int(rows[0]), len(rows))
    q = t.selectrows(rows)
    try:
        return q.getcol("FLAG")
    finally:
        q.close()


def _put_flag(t, rows, flag):
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        t.putcol("FLAG", flag, int(rows[0]), len(rows))
        return
    q = t.selectrows(rows)
    try:
        q.putcol("FLAG", flag)
    finally:
        q.close()


def save(ms, task="akflag", comment="", name=None) -> str:
    """Save FLAG and FLAG_ROW as a new version; returns its name (``<task>_<n>`` unless ``name``)."""
    from casacore.tables import table

    from .ms_io import check_ms

    check_ms(ms)
    if name is None:
        name = next_name(ms, task)
    elif not _NAME_OK.match(str(name)):
        raise AlakazamError(f"versionname: {name!r} is not a valid version name (letters, digits, _ . + -)")
    elif any(n == name for n, _ in _read_list(ms)) or os.path.exists(_path(ms, name)):
        raise AlakazamError(f"versionname: {name!r} already exists in {versions_dir(ms)}; delete it first "
                            "or choose another name")
    d = versions_dir(ms)
    os.makedirs(d, exist_ok=True)
    when = _time.strftime("%Y-%m-%d %H:%M:%S", _time.gmtime())
    arrays = {"meta": np.array(json.dumps({"name": name, "comment": str(comment), "time": when}))}
    with table(str(ms), ack=False) as t:
        arrays["flag_row"] = t.getcol("FLAG_ROW") if t.nrows() else np.zeros(0, bool)
        for dd, rows in _ddid_rows(t).items():
            parts, shape = [], None
            for s in range(0, len(rows), CHUNK_ROWS):
                f = _get_flag(t, rows[s:s + CHUNK_ROWS])
                shape = f.shape[1:]
                parts.append(np.packbits(f.reshape(-1)))
                # chunks are multiples of 8 samples only if row size is; pack per chunk and record sizes
            arrays[f"rows_{dd}"] = rows
            arrays[f"shape_{dd}"] = np.array((len(rows),) + tuple(shape), np.int64)
            arrays[f"chunks_{dd}"] = np.array([len(p) for p in parts], np.int64)
            arrays[f"bits_{dd}"] = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
    path = _path(ms, name)
    tmp = path + ".tmp.npz"
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    entries = [e for e in _read_list(ms) if e[0] != name]
    entries.append((name, str(comment) if comment else task))
    _write_list(ms, entries)
    return name


def _saved_flags(z, dd):
    """Generator of (rows, flag chunk) of one DATA_DESC_ID from a version file."""
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


def restore(ms, name, merge="replace"):
    """Restore version ``name`` into FLAG and FLAG_ROW.

    merge: ``'replace'`` (bit-exact copy of the saved flags), ``'or'`` (flagged in either), ``'and'``
    (flagged in both).  The rows are written in chunks of ``CHUNK_ROWS``.
    """

    from .ms_io import check_ms

    check_ms(ms)
    if merge not in MERGES:
        raise AlakazamError(f"merge: {merge!r} is not allowed; expected one of {', '.join(MERGES)}")
    path = _path(ms, name)
    if not os.path.exists(path):
        if os.path.isdir(os.path.join(versions_dir(ms), f"flags.{name}")):
            raise AlakazamError(f"versionname: {name!r} is a flag-version table written by CASA; restore it "
                                "with CASA's flagmanager (alakazam reads its own flags.<name>.npz versions)")
        have = [v["name"] for v in list_versions(ms)]
        raise AlakazamError(f"versionname: flag version {name!r} not found in {versions_dir(ms)}; saved: "
                            f"{', '.join(have) or 'none'}")
    from . import columns, locks

    with locks.writer_lock(ms, "ms"):       # one FLAG writer; a killed writer's flush undone first
        columns.recover(ms)
        try:
            columns.begin_writes(ms)
            _restore_into(ms, path, name, merge)
        finally:
            columns.end_writes(ms)


def _restore_into(ms, path, name, merge):
    from casacore.tables import table

    with np.load(path) as z, table(str(ms), readonly=False, ack=False) as t:
        fr = z["flag_row"]
        if len(fr) != t.nrows():
            raise AlakazamError(f"versionname: {name!r} holds {len(fr)} rows but {ms} has {t.nrows()}; "
                                "the version belongs to another MS")
        dds = sorted(int(k[len("rows_"):]) for k in z.files if k.startswith("rows_"))
        for dd in dds:
            for rows, f in _saved_flags(z, dd):
                if merge != "replace":
                    cur = _get_flag(t, rows)
                    f = (cur | f) if merge == "or" else (cur & f)
                _put_flag(t, rows, f)
        for s in range(0, len(fr), 10 * CHUNK_ROWS):
            new = fr[s:s + 10 * CHUNK_ROWS]
            if merge != "replace":
                cur = t.getcol("FLAG_ROW", s, len(new))
                new = (cur | new) if merge == "or" else (cur & new)
            t.putcol("FLAG_ROW", new, s, len(new))
    return name


def delete(ms, name):
    """Delete version ``name`` (its file and its list entry)."""
    path = _path(ms, name)
    entries = _read_list(ms)
    if not os.path.exists(path) and not any(n == name for n, _ in entries):
        have = [v["name"] for v in list_versions(ms)]
        raise AlakazamError(f"versionname: flag version {name!r} not found in {versions_dir(ms)}; saved: "
                            f"{', '.join(have) or 'none'}")
    _write_list(ms, [e for e in entries if e[0] != name])
    if os.path.exists(path):
        os.remove(path)
    return name
