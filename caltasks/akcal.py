"""akcal: solve a chain of Jones terms (parameters: tasks_xml/akcal.xml)."""

from alakazam.config import solve_config_from_dict

from .task import Task


def _field(v):
    if v in ("", None, []):
        return None
    if isinstance(v, str):
        return v
    return [[s.strip() for s in str(x).split(",") if s.strip()] for x in v]


def _calmode(v):
    def one(x):
        return str(x).lower() == "p"
    return [one(x) for x in v] if isinstance(v, (list, tuple)) else one(v)


def build_config(params):
    """akcal parameters -> SolveConfig through the same builder as the YAML runner."""
    d = akcal.yaml_dict(params)
    d["field"] = _field(params["field"])
    if d["field"] is None:
        d.pop("field")
    d["phase_only"] = _calmode(params["calmode"])
    ref = params["refant"]
    d["ref_ant"] = int(ref) if str(ref).strip().isdigit() else ref
    ep = d.pop("external_preapply")
    if ep.get("tables"):
        ep = {k: v for k, v in ep.items() if v not in ("", None, [])}
        if isinstance(ep.get("solution_field"), list):
            ep["solution_field"] = [x if x not in ("", None, []) else None for x in ep["solution_field"]]
        d["external_preapply"] = ep
    return solve_config_from_dict(d, where="akcal", names=akcal.names_for_messages())


def _body(cfg):
    from alakazam.flow import run_solve

    summary = run_solve(cfg)
    if cfg.plots:
        from alakazam.plots import plot_table

        summary["plots"] = plot_table(cfg.output, cfg.plots, jones=list(summary.get("terms", [])),
                                      quiet=cfg.quiet)
    return summary


akcal = Task("akcal", _body, prepare=build_config)
