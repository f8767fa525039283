"""Checks of output destinations, made before anything runs (clear errors instead of a PermissionError
after a long solve), and the rule for replacing a simulated MS.

Conventions (pinned by tests/test_reliability.py):

* A solution-table output must sit in an existing, writable directory; an existing output must be a
  writable regular file (a read-only table is never replaced) and an alakazam HDF5 table (or empty): a
  script, a notes file, an .npz or another program's HDF5 file given by mistake is never replaced.
* An MS that apply writes into must be a writable directory.
* No output file or directory (solution table, plots, exported caltable) is written into a CASA table
  directory -- an MS, a caltable, ``<ms>.flagversions`` -- or below one (:func:`table_around`).
* ``alakazam simulate PATH`` / :func:`alakazam.sim.simulate_ms` replace an existing PATH only with
  ``overwrite``, and even then only when PATH is a Measurement Set that ``alakazam simulate`` wrote
  (OBSERVATION::OBSERVER == 'alakazam simulate'); never '.', a parent of the working directory, the
  home directory, '/', a symlink, a file or any other directory.
"""

from __future__ import annotations

import os

from ..errors import AlakazamError

SIM_OBSERVER = "alakazam simulate"


def writable(path) -> bool:
    """Writable by this process AND not write-protected by its mode bits (no 'w' for anyone): a file or
    directory the user made read-only counts as read-only even for root."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return os.access(path, os.W_OK) and bool(st.st_mode & 0o222)


def table_around(path):
    """The CASA table directory that ``path`` is or lies inside -- a directory holding ``table.dat`` (a
    Measurement Set, a caltable, a flag version) or an MS's ``<ms>.flagversions`` -- or None.  An output
    written there becomes part of a table the user owns (``outdir=vis`` is an easy slip: a review)."""
    p = os.path.realpath(os.path.abspath(os.path.expanduser(str(path))))
    while True:
        if os.path.isfile(os.path.join(p, "table.dat")) or (p.endswith(".flagversions") and os.path.isdir(p)):
            return p
        parent = os.path.dirname(p)
        if parent == p:
            return None
        p = parent


def inside_table_message(path, table) -> str:
    """Why ``path`` (inside ``table``, :func:`table_around`) is refused as an output."""
    return (f"{str(path)!r} is or lies inside the CASA table {table!r} (a Measurement Set, a calibration "
            "table or flag versions); nothing is written into a table directory: choose a path outside it")


def check_output_file(path, what="output"):
    """``path`` can be written as a new or replaced file (see the module doc)."""
    p = os.path.abspath(os.path.expanduser(str(path)))
    real = os.path.realpath(p)
    d = os.path.dirname(real)
    if not str(path).strip():
        raise AlakazamError(f"{what}: an output file name is required")
    if not os.path.isdir(d):
        raise AlakazamError(f"{what}: directory {d!r} of {str(path)!r} does not exist")
    tab = table_around(d)
    if tab:
        raise AlakazamError(f"{what}: {inside_table_message(path, tab)}")
    if os.path.isdir(real):
        raise AlakazamError(f"{what}: {str(path)!r} is a directory, expected a file name")
    if os.path.exists(real) and not writable(real):
        raise AlakazamError(f"{what}: {str(path)!r} is read-only; it is not replaced (make it writable or "
                            "choose another output)")
    if not writable(d):
        raise AlakazamError(f"{what}: directory {d!r} is not writable")
    if os.path.isfile(real) and os.path.getsize(real) > 0:
        import h5py

        ours = False
        if h5py.is_hdf5(real):
            try:
                with h5py.File(real, "r") as f:
                    ours = "format_version" in f.attrs      # (io/hdf5.py: every table has it)
            except OSError:
                ours = False
        if not ours:
            raise AlakazamError(f"{what}: {str(path)!r} exists and is not an alakazam HDF5 solution table; "
                                "it is not replaced (remove it, or choose another output name)")


def check_ms_writable(ms, what="ms", flag_backup=False):
    """The MS directory exists and can be written (apply writes a column; FLAG with propagate_flags);
    with ``flag_backup`` also ``<ms>.flagversions`` (or, when missing, the directory holding the MS)."""
    if not os.path.isdir(str(ms)):
        what_is = "is a file, not a Measurement Set" if os.path.isfile(str(ms)) else "does not exist"
        raise AlakazamError(f"{what}: {str(ms)!r} {what_is} (expected a Measurement Set directory)")
    if not writable(str(ms)):
        raise AlakazamError(f"{what}: {str(ms)!r} is not writable (apply writes its output column there)")
    if flag_backup:
        fv = str(ms).rstrip("/") + ".flagversions"
        if os.path.lexists(fv) and not os.path.isdir(fv):      # (flagversions.py refuses it when it saves)
            raise AlakazamError(f"{what}: {fv!r} exists and is not a directory (a file, or a symlink to a "
                                "missing directory); flag versions of the MS are saved there before FLAG "
                                "changes: move it away first")
        where = fv if os.path.isdir(fv) else (os.path.dirname(os.path.abspath(fv)) or ".")
        if not writable(where):
            raise AlakazamError(f"{what}: {where!r} is not writable; propagate_flags saves FLAG to {fv} "
                                "before changing it")


def is_simulated_ms(path) -> bool:
    """True when ``path`` is a Measurement Set written by ``alakazam simulate``."""
    if not os.path.isdir(path) or os.path.islink(path):
        return False
    if not (os.path.isfile(os.path.join(path, "table.dat")) and
            os.path.isdir(os.path.join(path, "OBSERVATION"))):
        return False
    try:
        from casacore.tables import table

        with table(os.path.join(path, "OBSERVATION"), ack=False) as t:
            return t.nrows() > 0 and str(t.getcell("OBSERVER", 0)) == SIM_OBSERVER
    except Exception:       # noqa: BLE001 -- unreadable: not ours
        return False


def check_replace_simulated(path, overwrite):
    """Raise unless ``path`` is free, or (``overwrite``) a simulated MS that may be deleted.

    ``<path>.flagversions`` holds the flag versions of the MS at ``path``; it goes with it
    (:func:`remove_simulated`).  One without its MS (the MS was removed by hand) is refused: its
    versions are another MS's flags, which a restore would write into the new MS."""
    path = os.path.abspath(str(path))
    fv = path.rstrip("/") + ".flagversions"
    if not os.path.lexists(path):
        if os.path.lexists(fv):
            raise AlakazamError(f"simulate: {fv!r} exists without its Measurement Set (the flag versions "
                                f"of a removed MS); remove it, or choose another name than {path!r}")
        return
    if not overwrite:
        raise AlakazamError(f"simulate: {path!r} exists; pass overwrite (--overwrite) to replace it "
                            "(only a Measurement Set written by alakazam simulate is ever replaced)")
    real = os.path.realpath(path)
    cwd = os.path.realpath(os.getcwd())
    home = os.path.realpath(os.path.expanduser("~"))
    protected = {"/", home, cwd}
    if real in protected or cwd.startswith(real.rstrip("/") + "/") or os.path.islink(path):
        raise AlakazamError(f"simulate: refusing to replace {path!r} (the working directory, one of its "
                            "parents, the home directory, '/' or a symlink)")
    if not is_simulated_ms(path):
        raise AlakazamError(f"simulate: refusing to replace {path!r}: it is not a Measurement Set written "
                            "by alakazam simulate (remove it yourself if it is really meant to go)")
    if os.path.lexists(fv) and (os.path.islink(fv) or not os.path.isdir(fv)):
        raise AlakazamError(f"simulate: refusing to replace {path!r}: {fv!r} is a symlink or a file, not "
                            "the MS's flag-version directory")


def remove_simulated(path):
    """Delete the simulated MS at ``path`` (checked by :func:`check_replace_simulated`) and its
    ``<path>.flagversions``: the versions are that MS's flags, not the new one's."""
    import shutil

    path = os.path.abspath(str(path))
    for p in (path.rstrip("/") + ".flagversions", path):    # (interrupted between: the MS is left)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
