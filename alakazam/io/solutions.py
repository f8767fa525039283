"""Read solutions from either kind of table: an alakazam HDF5 file or a CASA calibration table.

A CASA caltable (a directory with ``table.dat`` and the keyword ``VisCal``) holds one term; its key is
the alakazam type of its VisCal with index 0 (``alakazam.io.casatable.VISCAL_TO_TYPE``), e.g. a
``B Jones`` table reads as ``G0`` and a ``Df Jones`` table as ``D0``.  Everything downstream (apply,
pre-apply, plots) sees the same :class:`alakazam.io.hdf5.SolutionSet` objects either way.
"""

from __future__ import annotations

import os
import re
from typing import List

from ..errors import AlakazamError
from . import hdf5


def is_casa_table(path) -> bool:
    return os.path.isdir(str(path)) and os.path.isfile(os.path.join(str(path), "table.dat"))


def is_casa_caltable(path) -> bool:
    """A CASA calibration table: a directory table (:func:`is_casa_table`, as an MS is) whose table.info
    Type is 'Calibration'."""
    from ..core.ms_io import _table_info

    return is_casa_table(path) and _table_info(str(path)).get("Type") == "Calibration"


def table_keys(path) -> List[str]:
    if is_casa_table(path):
        from . import casatable

        return [casatable.table_key(path)]
    return hdf5.list_keys(path)


def resolve_key(path, key) -> str:
    """The table's key for ``key`` (HDF5: fuzzy, see hdf5.resolve_key).  A CASA table has one term:
    ``key`` must be empty or name its type ('G', 'G0', 'g1' all match a G/B/T Jones table)."""
    if is_casa_table(path):
        from . import casatable

        real = casatable.table_key(path)
        k = str(key or "").strip().upper()
        m = re.match(r"^(KC|CP|K|G|D)(\d*)$", k)
        if k and (not m or m.group(1) != re.sub(r"\d+$", "", real)):
            raise AlakazamError(f"jones key {key!r} does not match CASA table {path} "
                                f"(VisCal {casatable.viscal(path)!r} reads as {real})")
        return real
    return hdf5.resolve_key(path, key)


def read_term(path, key) -> list:
    if is_casa_table(path):
        from . import casatable

        resolve_key(path, key)
        return casatable.read_table(path)
    return hdf5.read_term(path, key)
