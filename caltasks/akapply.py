"""akapply: apply solved terms (parameters: tasks_xml/akapply.xml)."""

from alakazam.config import apply_config_from_dict
from alakazam.errors import ParameterError

from .task import Task


def build_config(params):
    from .akcal import unselect

    d = unselect(params, akapply.yaml_dict(params))
    n = len(params["jones"])
    d["field_select"] = params["gainfield"] or ["nearest_time"] * n
    d["time_interp"] = params["interp"] or ["nearest"] * n
    sf = params["solutionfield"]
    if sf in ("", None, []):
        d.pop("solution_field")
    else:
        d["solution_field"] = [x if x not in ("", None) else None for x in sf]
    d["target_field"] = params["field"] or None
    d.pop("propagate_flags", None)
    d["applymode"] = params["applymode"]
    if isinstance(d.get("tables"), list) and len(d["tables"]) == 1 and n > 1:
        d["tables"] = d["tables"][0]        # one table for every key (as akflag, and a YAML scalar)
    try:
        cfg, errors = apply_config_from_dict(d, where="akapply", names=akapply.names_for_messages()), {}
    except ParameterError as e:         # reported with the tables' and the output column's, together
        cfg, errors = None, dict(e.errors)
    for k, v in _table_errors(params).items():
        if k not in errors:
            errors[k] = v
    from alakazam.core import selcheck

    selcheck.merge(errors, d, selcheck.APPLY_KEYS, where="akapply", names=akapply.names_for_messages())
    if cfg is not None:
        from alakazam.calibration.compat import check_output_column, ms_columns

        # CORRECTED_DATA or a new column only (checked against the MS before the task starts)
        for ms in (cfg.ms if isinstance(cfg.ms, list) else [cfg.ms]):      # vis may list several MSs
            try:
                check_output_column(cfg.output_col, cfg.data_col, ms_columns(ms), param="outputcolumn")
            except ParameterError as e:
                errors.update(e.errors)
    if errors:
        raise ParameterError(errors, task="akapply")
    return cfg


def _table_errors(params) -> dict:
    """{'akapply.gaintable[i]' / 'akapply.jones[i]': [message]}: a gaintable that does not exist, a key
    that is not in its table (before: found by the engine after the Begin line, one at a time)."""
    import os

    import h5py

    from alakazam.errors import AlakazamError
    from alakazam.io import solutions

    tables, jones = params["gaintable"], params["jones"]
    tables = [tables] if isinstance(tables, str) else list(tables or [])
    jones = [jones] if isinstance(jones, str) else list(jones or [])
    if len(tables) == 1:
        tables = tables * len(jones)
    errors = {}
    for i, (table, key) in enumerate(zip(tables, jones)):
        table = os.path.expanduser(str(table))
        if not os.path.exists(table):
            if not any(str(t) == table for t in tables[:i]):
                errors[f"akapply.gaintable[{i}]"] = [f"{table!r} does not exist"]
            continue
        if os.path.isfile(table) and not h5py.is_hdf5(table):
            continue                        # (not a solution table: the engine says so when it reads it)
        try:
            solutions.resolve_key(table, key)
        except AlakazamError as e:
            errors[f"akapply.jones[{i}]"] = [str(e)]
    return errors


def _body(cfg):
    from alakazam.calibration.apply import run_apply

    return run_apply(cfg)


akapply = Task("akapply", _body, prepare=build_config)
