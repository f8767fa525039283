"""akexport: one key of an HDF5 solution table -> a CASA caltable (parameters: tasks_xml/akexport.xml;
engine: alakazam.io.casatable)."""

from alakazam.errors import ParameterError

from .task import Task


def _prepare(params):
    errors = {}
    if not str(params["jones"]).strip():
        errors["jones"] = ["is required (the key to export, e.g. G0)"]
    if not str(params["casatable"]).strip():
        errors["casatable"] = ["is required (the output CASA table)"]
    errors.update(_content_errors(params, skip=set(errors)))
    if errors:
        raise ParameterError(errors, task="akexport")
    return params


def _content_errors(params, skip=()) -> dict:
    """The parameters checked against the files, all together (before: one at a time, at run time)."""
    import os

    from alakazam.core import ms_io
    from alakazam.errors import AlakazamError
    from alakazam.io import hdf5

    errors = {}
    out, table, vis, cp = (str(params[k]).strip() for k in ("casatable", "caltable", "vis", "crossphase"))
    if out and os.path.islink(out) and not os.path.exists(out):
        errors["casatable"] = [f"{out!r} is a symbolic link to {os.readlink(out)!r}, which does not exist; "
                               "remove the link or choose another name"]
    elif out and os.path.exists(out):
        errors["casatable"] = [f"{out!r} exists; remove it or choose another name"]
    elif out:
        from alakazam.core.outputs import inside_table_message, table_around, writable

        parent = os.path.dirname(out.rstrip("/")) or "."      # as the path is resolved ('d/../x.tb': d too)
        if os.path.isdir(parent) and table_around(parent):
            errors["casatable"] = [inside_table_message(out, table_around(parent))]
        elif os.path.exists(parent) and not os.path.isdir(parent):
            errors["casatable"] = [f"{out!r}: {parent!r} is not a directory"]
        elif not os.path.isdir(parent):
            errors["casatable"] = [f"{out!r}: directory {parent!r} does not exist"]
        elif not writable(parent):
            errors["casatable"] = [f"{out!r}: directory {parent!r} is not writable"]
    if vis:
        try:
            ms_io.check_ms(vis)
        except AlakazamError as e:
            errors["vis"] = [f"the Measurement Set {vis!r} cannot be used: {str(e).split(': ', 1)[-1]}; give "
                             "the MS whose ANTENNA, FIELD and SPECTRAL_WINDOW tables the caltable copies"]
    if not table or not os.path.exists(table):
        return errors
    if not vis and "jones" not in skip:
        recorded = _recorded_ms(table, str(params["jones"]).strip())
        if recorded is not None and not recorded[1]:
            errors["vis"] = [f"is required: the Measurement Set the solutions record, {recorded[0]!r}, is "
                             "not found (moved or deleted); give the MS whose ANTENNA, FIELD and "
                             "SPECTRAL_WINDOW tables the caltable copies"]
    real = {}
    for name, key in (("jones", str(params["jones"]).strip()), ("crossphase", cp)):
        if name in skip or not key or (name == "crossphase" and key.lower() == "none"):
            continue
        m = hdf5._KEY_RE.match(real.get("jones", ""))
        if name == "crossphase" and m and m.group(1) != "D":     # said before looking the CP key up
            errors.setdefault("crossphase", []).append(
                f"{cp!r}: crossphase applies only with a D (leakage) key -- the CP is folded into the "
                f"exported D; jones {real['jones']!r} is a {m.group(1)}; leave crossphase empty")
            continue
        try:
            real[name] = hdf5.resolve_key(table, key)
        except AlakazamError as e:
            msg = str(e)
            errors.setdefault("caltable" if msg.startswith("caltable: ") else name, []).append(
                msg.split(": ", 1)[-1] if msg.startswith("caltable: ") else msg)
    types = {n: hdf5._KEY_RE.match(k).group(1) for n, k in real.items() if hdf5._KEY_RE.match(k)}
    if types.get("crossphase", "CP") != "CP":
        errors.setdefault("crossphase", []).append(f"{cp!r} is a {types['crossphase']} term; give a CP key "
                                                    "(or 'none')")
    return errors


def _recorded_ms(table, key):
    """(the MS recorded by ``key``'s solutions, its path found or None), or None when the key or the
    table cannot be read (other checks say why)."""
    from alakazam.errors import AlakazamError
    from alakazam.io import hdf5

    try:
        real = hdf5.resolve_key(table, key)
        sets = hdf5.read_term(table, real)
    except (AlakazamError, OSError, KeyError):
        return None
    if not sets:
        return None
    stored = str(sets[0].attrs.get("ms", ""))
    return stored, hdf5.resolve_ms(stored, table)[0]


def _body(params):
    from alakazam.io import casatable

    return casatable.export(params["caltable"], params["jones"], params["casatable"], ms=params["vis"],
                            crossphase=params["crossphase"])


akexport = Task("akexport", _body, prepare=_prepare, keep_reads=True)
