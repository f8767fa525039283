"""akcal ``append`` (CASA semantics) on the HDF5 solution store.

``append=True`` adds the new solution groups (fields, scan groups, SPWs) to an existing key instead of
replacing it, as CASA's gaincal ``append=True`` adds rows to a caltable.  Allowed only when the key's
existing groups are compatible with the new ones, otherwise an AlakazamError says what differs:

- same Jones type and matrix form, same MS (real path), same feed basis and the same antennas
  (``ant_names``, in order);
- for an SPW already in the key: the same frequency grid (``freq`` bin centres and ``channels``);
- no group may exist already (``<key>/field_<F>/scan_<N>/spw_<S>``): append never overwrites, and a
  key never holds two solutions for the same field, scan group and SPW.

The existing groups are left byte-for-byte as they were; the file is rewritten atomically
(:class:`alakazam.io.hdf5._AtomicFile`).  ``append=False`` replaces the key (the default, as before);
:func:`replaced_note` gives the log line that says so.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from ..errors import AlakazamError
from . import hdf5


def _groups(path, key):
    """{group path: attrs dict} of the leaf groups of ``key`` in ``path`` ({} when absent)."""
    if not os.path.exists(path):
        return {}
    out = {}
    with h5py.File(path, "r") as f:
        if key not in f:
            return {}

        def visit(name, obj):
            if isinstance(obj, h5py.Group) and "jones" in obj:
                out[f"{key}/{name}"] = ({k: hdf5._decode_attr(v) for k, v in obj.attrs.items()},
                                        np.asarray(obj["freq"][()]))
        f[key].visititems(visit)
    return out


def check_compatible(path, key, ms=None, ant_names=None, jones_type=None, sets=()):
    """Raise AlakazamError naming what differs when the new solutions cannot be appended to ``key``."""
    have = _groups(path, key)
    if not have:
        return
    first, _ = next(iter(have.values()))
    where = f"append: {key} in {path}"
    if jones_type is not None and str(first.get("jones_type")) != str(jones_type):
        raise AlakazamError(f"{where} holds Jones type {first.get('jones_type')!r}, not {jones_type!r}")
    if ms is not None and first.get("ms") is not None and not hdf5.same_ms(first["ms"], path, ms):
        raise AlakazamError(f"{where} was solved on {first['ms']!r}, not {ms!r}; append needs the same MS "
                            "(use another key or caltable)")
    if ant_names is not None and [str(a) for a in first.get("ant_names", [])] != [str(a) for a in ant_names]:
        raise AlakazamError(f"{where} has antennas {list(first.get('ant_names', []))}, the new solutions "
                            f"{list(ant_names)}")
    for s in sets:
        a = s.attrs
        for name in ("jones_type", "matrix_form", "feed_basis"):
            if a.get(name) is not None and str(first.get(name)) != str(a.get(name)):
                raise AlakazamError(f"{where}: {name} {first.get(name)!r} differs from the new "
                                    f"{a.get(name)!r}")
        gp = hdf5._group_path(key, s)
        if gp in have:
            raise AlakazamError(f"{where} already has {gp} (field {s.field_name}, scan group {s.scan_id}, "
                                f"SPW {s.spw}); append adds new fields, scan groups or SPWs only -- use "
                                "append=False to replace the key")
        for other, (oa, ofreq) in have.items():
            if int(oa.get("spw", -1)) != s.spw:
                continue
            same = (len(ofreq) == len(s.freq) and np.allclose(ofreq, s.freq, rtol=0, atol=1e-3) and
                    np.array_equal(np.asarray(oa.get("channels", [])), np.asarray(a.get("channels", []))))
            if not same:
                raise AlakazamError(
                    f"{where}: SPW {s.spw} has a different frequency grid in {other} ({len(ofreq)} bins, "
                    f"freq_interval {oa.get('freq_interval')!r}) than the new solutions ({len(s.freq)} "
                    f"bins, freq_interval {a.get('freq_interval')!r})")
            break


def merged_sets(path, key, sets):
    """The sets of ``key`` after appending ``sets``: its existing groups (untouched) followed by the new
    ones, after the compatibility checks above.  The caller writes them (one atomic replace of the
    whole solve block, :func:`alakazam.io.hdf5.write_terms`)."""
    for i, s in enumerate(sets):
        s.validate(f"{key}[{i}]")
    check_compatible(path, key, ms=sets[0].attrs.get("ms") if sets else None,
                     ant_names=sets[0].attrs.get("ant_names") if sets else None,
                     jones_type=sets[0].attrs.get("jones_type") if sets else None, sets=sets)
    have = hdf5.read_term(path, key) if _groups(path, key) else []
    return list(have) + list(sets)


def replaced_note(path, key):
    """'key: replacing ... (append=False)' when ``key`` exists in ``path``, else None."""
    have = _groups(path, key)
    if not have:
        return None
    fields = sorted({str(a.get("field_name")) for a, _ in have.values()})
    return (f"{key}: replacing the existing {key} in {path} ({len(have)} solution groups, fields "
            f"{', '.join(fields)}); append=False (use append=True to add to it)")
