"""akapply: apply solved terms (parameters: tasks_xml/akapply.xml)."""

from alakazam.config import apply_config_from_dict

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
    cfg = apply_config_from_dict(d, where="akapply", names=akapply.names_for_messages())
    from alakazam.calibration.compat import check_output_column, ms_columns

    # CORRECTED_DATA or a new column only (checked against the MS before the task starts)
    for ms in (cfg.ms if isinstance(cfg.ms, list) else [cfg.ms]):      # vis may list several MSs
        check_output_column(cfg.output_col, cfg.data_col, ms_columns(ms), param="outputcolumn")
    return cfg


def _body(cfg):
    from alakazam.calibration.apply import run_apply

    return run_apply(cfg)


akapply = Task("akapply", _body, prepare=build_config)
