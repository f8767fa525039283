"""akapply: apply solved terms (parameters: tasks_xml/akapply.xml)."""

from alakazam.config import apply_config_from_dict
from alakazam.errors import AlakazamError, ParameterError

from .task import Task


def build_config(params):
    from .akcal import unselect

    d = unselect(params, akapply.yaml_dict(params))
    n = len(params["jones"])
    d["field_select"] = params["gainfield"] or ["nearest_time"] * n
    d["time_interp"] = params["interp"] or None         # (not given: nearest, noted against CASA)
    sf = params["solutionfield"]
    if sf in ("", None, []):
        d.pop("solution_field")
    elif isinstance(sf, str):       # one selection for every term (config broadcasts it)
        d["solution_field"] = sf
    else:
        d["solution_field"] = [x if x not in ("", None) else None for x in sf]
    # CASA's field='3C286,3C147': one string of comma-separated selections (as YAML's target_field
    # string), not one field named '3C286,3C147'
    fld = params["field"]
    d["target_field"] = (fld[0] if isinstance(fld, (list, tuple)) and len(fld) == 1 and "," in str(fld[0])
                         else fld) or None
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
        from alakazam.calibration.compat import check_output_column

        # CORRECTED_DATA or a new column only (checked against the MS before the task starts)
        for ms in (cfg.ms if isinstance(cfg.ms, list) else [cfg.ms]):      # vis may list several MSs
            try:
                check_output_column(cfg.output_col, cfg.data_col, ms, param="outputcolumn")
            except ParameterError as e:
                errors.update(e.errors)
            _data_column_errors(ms, cfg.data_col, errors)
    if cfg is None and errors:  # the others checked on a config without the bad parameters
        cfg_rest = _without(d, errors)
        if cfg_rest is not None:
            _precheck(cfg_rest, errors)
            if "akapply.datacolumn" not in errors:
                for ms in (cfg_rest.ms if isinstance(cfg_rest.ms, list) else [cfg_rest.ms]):
                    _data_column_errors(ms, cfg_rest.data_col, errors)
    if cfg is not None:         # what the run would refuse (no data, SPWs / fields missing from a table)
        _precheck(cfg, errors)
    if errors:
        raise ParameterError(errors, task="akapply")
    return cfg


def _data_column_errors(ms, col, errors):
    """The column to correct exists in ``ms`` and holds visibilities (before: found after the Begin line;
    e.g. datacolumn='data' or 'UVW')."""
    from alakazam.core import ms_io

    try:
        ms_io.check_ms(ms)
        ms_io.check_columns(ms, [col])
    except AlakazamError as e:
        if "not a Measurement Set" not in str(e):        # (the engine says that one)
            errors.setdefault("akapply.datacolumn", []).append(str(e))


def _without(d, errors):
    """The config of block ``d`` with the parameters named in ``errors`` dropped (their defaults), or
    None when it still cannot be built (e.g. vis or the tables are among them)."""
    yaml_of = {v: k for k, v in akapply.names_for_messages().items()}
    bad = {k.split(".")[-1].split("[", 1)[0] for k in errors}
    rest = {k: v for k, v in d.items() if k not in {yaml_of.get(b, b) for b in bad}}
    if not {"ms", "tables", "jones"} <= set(rest):
        return None
    try:
        return apply_config_from_dict(rest, where="akapply", names=akapply.names_for_messages())
    except (ParameterError, AlakazamError, TypeError, ValueError):
        return None


def _precheck(cfg, errors):
    from alakazam.calibration import apply_precheck

    names = akapply.names_for_messages()
    have = {k.split(".")[-1].split("[", 1)[0] for k in errors}
    for key, msgs in apply_precheck.errors(cfg).items():
        parts = [names.get(k.split("[", 1)[0], k.split("[", 1)[0]) + (k[len(k.split("[", 1)[0]):])
                 for k in key.split("/")]
        msgs = apply_precheck.judged_without(msgs, have)
        if msgs and not any(x.split("[", 1)[0] in have for x in parts):
            errors.setdefault("akapply." + "/".join(parts), []).extend(msgs)


def _table_errors(params) -> dict:
    """A gaintable that does not exist, a key that is not in its table (before: found by the engine after
    the Begin line, one at a time)."""
    from alakazam.core.selcheck import table_errors

    return table_errors(params["gaintable"], params["jones"], where="akapply")


def _body(cfg):
    from alakazam.calibration.apply import run_apply

    return run_apply(cfg)


akapply = Task("akapply", _body, prepare=build_config)
