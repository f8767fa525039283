"""akapply: apply solved terms (parameters: tasks_xml/akapply.xml)."""

from alakazam.config import apply_config_from_dict

from .task import Task


def build_config(params):
    d = akapply.yaml_dict(params)
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
    return apply_config_from_dict(d, where="akapply", names=akapply.names_for_messages())


def _body(cfg):
    from alakazam.calibration.apply import run_apply

    return run_apply(cfg)


akapply = Task("akapply", _body, prepare=build_config)
