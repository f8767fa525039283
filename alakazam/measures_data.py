"""Measures data (leap seconds, Earth orientation) for python-casacore, chosen and configured on
first use, without touching the user's ~/.casarc.

casacore reads its measures tables (``geodetic/TAI_UTC``, ``IERSeop2000``, ``IERSpredict``, ...) from
the Aipsrc value ``measures.directory``.  python-casacore's own ``.aipsrc`` sets it to
``${CASACORE_DATADIR}``, and python-casacore points that at the data bundled in its wheel when
``AIPSPATH`` is unset.  Aipsrc is parsed lazily (at the first measures lookup), so :func:`configure`
-- called when alakazam is imported -- can point ``CASACORE_DATADIR`` at newer data, in-process only.

Directory used, first match:

1. ``$ALAKAZAM_MEASURES`` (a directory holding ``geodetic/``), used as given;
2. otherwise the newest (by the date of ``geodetic/TAI_UTC``) of: the private copy made by
   ``alakazam measures --update`` (``$XDG_DATA_HOME/alakazam/measures``, default
   ``~/.local/share/alakazam/measures``), the ``casadata`` package when installed, and the data in
   python-casacore's wheel.

Nothing is changed when the user configured casacore: ``AIPSPATH`` set to anything but
python-casacore's own folder, ``CASARCFILES`` set, or ``measures.directory`` in ~/.casarc.

casacore prints ``SEVERE ... Leap second table TAI_UTC seems out-of-date`` (three lines) when the
table is more than about 180 days old -- whatever its content (no leap second has been added since
2017-01-01, TAI - UTC = 37 s).  :func:`measures` (used instead of ``casacore.measures.measures``)
makes the first UTC conversion of the process itself, captures casacore's message, and logs one
WARNING instead that names the table's date and the update command.

Update: ``alakazam measures --update`` copies ``geodetic/`` (and the small JPL ephemerides DE200 and
DE405) from ``--from DIR`` (an unpacked WSRT_Measures tarball, a casaconfig measures folder, ...) or
from the installed ``casadata`` package (``pip install -U casadata`` first; 0.8 GB installed, so it is
not a dependency of alakazam) into the private folder.  ``alakazam measures`` shows what is used.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import logging
import os
import re
import shutil
import tempfile
import threading
from typing import List, Optional, Tuple

log = logging.getLogger("alakazam.measures")

ENV = "ALAKAZAM_MEASURES"
STALE_DAYS = 180            # casacore's threshold for the TAI_UTC warning
_DATE_RE = re.compile(rb"(\d{4})/(\d\d)/(\d\d)/\d\d:\d\d")
_state = {"configured": None, "primed": False}


def private_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "alakazam", "measures")


def _pkg_dir(name) -> Optional[str]:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def bundled_dir() -> Optional[str]:
    d = _pkg_dir("casacore")
    return os.path.join(d, "data") if d else None


def casadata_dir() -> Optional[str]:
    d = _pkg_dir("casadata")
    return os.path.join(d, "__data__") if d else None


def table_date(directory) -> Optional[_dt.date]:
    """The newest of VS_CREATE / VS_DATE of ``directory/geodetic/TAI_UTC`` (read from table.dat
    without casacore), or None when there is no such table."""
    if not directory:
        return None
    path = os.path.join(directory, "geodetic", "TAI_UTC", "table.dat")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(1 << 16)
    except OSError:
        return None
    dates = []
    for y, m, d in _DATE_RE.findall(raw):
        try:
            dates.append(_dt.date(int(y), int(m), int(d)))
        except ValueError:
            pass
    return max(dates) if dates else None


def candidates() -> List[Tuple[str, str, Optional[_dt.date]]]:
    """(label, directory, TAI_UTC date) of every measures source found, in priority order."""
    out = []
    for label, d in (("private copy (alakazam measures --update)", private_dir()),
                     ("casadata package", casadata_dir()), ("python-casacore wheel", bundled_dir())):
        date = table_date(d)
        if date is not None:
            out.append((label, d, date))
    return out


def _user_config_reason() -> Optional[str]:
    root = _pkg_dir("casacore")
    aips = os.environ.get("AIPSPATH")
    if aips and (root is None or os.path.normpath(aips.split()[0]) != os.path.normpath(root)):
        return f"AIPSPATH={aips}"
    if os.environ.get("CASARCFILES"):
        return f"CASARCFILES={os.environ['CASARCFILES']}"
    rc = os.path.join(os.path.expanduser("~"), ".casarc")
    try:
        with open(rc) as fh:
            if any(ln.strip().startswith("measures.directory") for ln in fh):
                return f"measures.directory in {rc}"
    except OSError:
        pass
    return None


def choose() -> Tuple[Optional[str], str, Optional[_dt.date]]:
    """(directory, why, date) that :func:`configure` uses; directory None = leave casacore alone."""
    explicit = os.environ.get(ENV)
    if explicit:
        return explicit, f"${ENV}", table_date(explicit)
    reason = _user_config_reason()
    if reason:
        return None, f"casacore configured by the user ({reason})", None
    cands = candidates()
    if not cands:
        return None, "no measures data found", None
    best = max(cands, key=lambda c: c[2])          # newest; max keeps the first of equal dates
    return best[1], best[0], best[2]


def configure() -> Optional[str]:
    """Point python-casacore at the chosen measures directory (environment of this process only)."""
    if _state["configured"] is not None:
        return _state["configured"] or None
    d, why, date = choose()
    if d is not None:
        root = _pkg_dir("casacore")
        if root and "AIPSPATH" not in os.environ:
            os.environ["AIPSPATH"] = root            # what python-casacore itself would set
        os.environ["CASACORE_DATADIR"] = d
    _state["configured"] = d or ""
    _state["why"], _state["date"] = why, date
    return d


def status() -> dict:
    d, why, date = choose()
    today = _dt.date.today()
    age = (today - date).days if date else None
    return {"directory": d, "source": why, "tai_utc_date": date, "age_days": age,
            "stale": age is not None and age > STALE_DAYS, "candidates": candidates(),
            "private_dir": private_dir()}


#: one thread at a time converts with casacore measures: its conversions share state between threads
#: (concurrent ones differed by up to 8e-14 rad, a review measured); held by jones/parang.py around
#: its anchors and by core/ms_io.read_meta around the observatory's position
LOCK = threading.RLock()


def measures():
    """``casacore.measures.measures()`` after :func:`configure`; the first call of the process makes
    one UTC conversion with casacore's stderr captured, so its three-line SEVERE about an old
    TAI_UTC table becomes one WARNING naming the date and the update command."""
    configure()
    from casacore.measures import measures as _measures

    dm = _measures()
    if not _state["primed"]:
        _state["primed"] = True
        text = _captured_first_conversion(dm)
        if "TAI_UTC" in text:
            st = status()
            log.warning("casacore measures data: leap-second table TAI_UTC of %s (%s, %s) is older than "
                        "%d days, so casacore cannot vouch for leap seconds announced since (its last entry: "
                        "TAI-UTC = 37 s from 2017-01-01). Update: alakazam measures --update",
                        st["tai_utc_date"], st["source"], st["directory"] or "casacore default",
                        STALE_DAYS)
        other = "\n".join(ln for ln in text.splitlines() if ln.strip() and "MeasTable::dUTC" not in ln)
        if other:
            import sys

            print(other, file=sys.stderr)
    return dm


def _captured_first_conversion(dm) -> str:
    """Run a UTC -> TAI conversion with file descriptor 2 redirected; returns what was written."""
    import sys

    from casacore.quanta import quantity

    try:
        sys.stderr.flush()
    except Exception:   # noqa: BLE001 -- a closed stderr must not break the run
        pass
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        try:
            os.dup2(tmp.fileno(), 2)
            mjd = _dt.date.today().toordinal() - _dt.date(1858, 11, 17).toordinal()
            dm.measure(dm.epoch("utc", quantity(float(mjd), "d")), "tai")
        finally:
            try:
                sys.stderr.flush()
            except Exception:   # noqa: BLE001
                pass
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return tmp.read().decode(errors="replace")


# ---------------------------------------------------------------- update
_EPHEMERIDES = ("DE200", "DE405")


def update(source: Optional[str] = None) -> dict:
    """Copy measures data into :func:`private_dir` (atomically).

    ``source``: a directory holding ``geodetic/`` (and optionally ``ephemerides/``); default the
    installed ``casadata`` package.  Returns the status afterwards.
    """
    from .errors import AlakazamError

    if source is None:
        source = casadata_dir()
        if source is None:
            raise AlakazamError("measures: no source. Install the maintained data package first "
                                "(pip install -U casadata) or give --from DIR (a measures folder with "
                                "geodetic/, e.g. an unpacked WSRT_Measures tarball)")
    src_date = table_date(source)
    if src_date is None:
        raise AlakazamError(f"measures: {source!r} has no geodetic/TAI_UTC table")
    dst = private_dir()
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".measures-", dir=os.path.dirname(dst))
    try:
        shutil.copytree(os.path.join(source, "geodetic"), os.path.join(tmp, "geodetic"))
        for e in _EPHEMERIDES:
            p = os.path.join(source, "ephemerides", e)
            if os.path.isdir(p):
                shutil.copytree(p, os.path.join(tmp, "ephemerides", e))
        old = dst + ".old"
        if os.path.exists(dst):
            os.replace(dst, old)
        os.replace(tmp, dst)
        if os.path.exists(old):
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    _state["configured"] = None
    log.info("measures data of %s copied from %s to %s", src_date, source, dst)
    return status()
