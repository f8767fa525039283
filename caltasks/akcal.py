"""akcal: solve a chain of Jones terms (parameters: tasks_xml/akcal.xml)."""

from alakazam.config import parse_freq_interval, parse_ref_ant, solve_config_from_dict
from alakazam.errors import AlakazamError, ParameterError

from .task import Task


def _field(v):
    """'' / [] -> None (all fields); a string -> one selection for every step; a list -> one selection
    per step, a one-entry list broadcast to every step (as every per-step parameter)."""
    if v in ("", None, []):
        return None
    if isinstance(v, str):
        return v
    if len(v) == 1:
        return str(v[0])
    return [[s.strip() for s in str(x).split(",") if s.strip()] for x in v]


_CALMODES = ("ap", "p", "a")


def _calmode(v, mode):
    """calmode -> per-step booleans for ``mode`` ('p': phase_only, 'a': amp_only); anything but 'ap',
    'p', 'a' is a ParameterError naming calmode."""
    items = list(v) if isinstance(v, (list, tuple)) else [v]
    bad = [x for x in items if str(x).strip().lower() not in _CALMODES]
    if bad:
        raise ParameterError({"calmode": [f"{bad[0]!r} is not a calmode; expected 'ap' (amplitude and "
                                          "phase), 'p' (phase only) or 'a' (amplitude only)"]}, task="akcal")

    def one(x):
        return str(x).strip().lower() == mode
    return [one(x) for x in v] if isinstance(v, (list, tuple)) else one(v)


def unselect(params, d):
    """selectdata=False: timerange, uvrange, antenna and observation are ignored (CASA's gaincal /
    applycal do the same)."""
    if not params.get("selectdata", True):
        for k in ("timerange", "uvrange", "antenna", "observation"):
            d.pop(k, None)
    return d


def _solint_freq(solint, freqint, n_steps):
    """CASA's solint 'time,freq' (e.g. 'inf,2MHz', as bandpass/gaincal take it): the freq part moves to
    that step's freqint.  Returns (solint, freqint) as given when no entry has a comma (or the lists do
    not match the steps: the config then names that), else per-step lists; a freq part that disagrees
    with a freqint set for the same step (other than the default 'full') is a ParameterError naming
    both."""
    items = list(solint) if isinstance(solint, (list, tuple)) else None
    if not any(isinstance(x, str) and "," in x for x in (items if items is not None else [solint])):
        return solint, freqint
    times = items if items is not None else [solint] * n_steps
    freqs = list(freqint) if isinstance(freqint, (list, tuple)) else [freqint] * n_steps
    if len(times) != n_steps or len(freqs) != n_steps:
        return solint, freqint
    errs = []
    for i, t in enumerate(times):
        if not (isinstance(t, str) and "," in t):
            continue
        tp, fp = (x.strip() for x in t.split(",", 1))
        try:
            parse_freq_interval(fp, f"{t!r}: its frequency part")
        except AlakazamError as e:
            errs.append(str(e))
            continue
        if str(freqs[i]).strip().lower() not in ("full", "", str(fp).lower()):
            errs.append(f"{t!r}: its frequency part {fp!r} and freqint {freqs[i]!r} (step {i}) disagree; "
                        "give the width in one of them")
            continue
        times[i], freqs[i] = tp, fp
    if errs:
        raise ParameterError({"solint": errs}, task="akcal")
    return times, freqs


def build_config(params):
    """akcal parameters -> SolveConfig through the same builder as the YAML runner."""
    jones = params.get("jones")
    n_steps = len(jones) if isinstance(jones, (list, tuple)) else 1
    try:
        solint, freqint = _solint_freq(params.get("solint"), params.get("freqint"), n_steps)
        bad_solint = {}
    except ParameterError as e:         # reported with the config's errors, all together
        solint, freqint, bad_solint = params.get("solint"), params.get("freqint"), e.errors
    params = dict(params, solint=solint, freqint=freqint)
    d = unselect(params, akcal.yaml_dict(params))
    d["field"] = _field(params["field"])
    if d["field"] is None:
        d.pop("field")
    try:
        d["phase_only"] = _calmode(params["calmode"], "p")
        d["amp_only"] = _calmode(params["calmode"], "a")
        bad_calmode = {}
    except ParameterError as e:         # reported with the config's errors, all together
        bad_calmode = e.errors
    d["ref_ant"] = parse_ref_ant(params["refant"])
    ep = d.pop("external_preapply")
    ep = {k: v for k, v in ep.items()          # "", None, [] dropped (a numpy array kept: no == test)
          if not (v is None or (isinstance(v, (str, list)) and len(v) == 0))}
    if ep:      # (also without gaintable: gainjones, interp, gainfield given alone are refused by the
        # config, as in YAML; before, they were dropped with gaintable=[] and the solve ran without them)
        if isinstance(ep.get("solution_field"), list):
            ep["solution_field"] = [x if x not in ("", None, []) else None for x in ep["solution_field"]]
        d["external_preapply"] = ep
    bad_calmode = {**bad_calmode, **bad_solint}
    from alakazam.core import selcheck

    names = akcal.names_for_messages()
    bad_calmode.update(_start_errors(params, bad_calmode))
    try:
        cfg = solve_config_from_dict(d, where="akcal", names=names)
    except ParameterError as e:     # with the selections checked against the MS: all together
        errors = selcheck.merge({**bad_calmode, **e.errors}, d, where="akcal", names=names)
        for k, v in selcheck.table_errors(params["gaintable"], params["gainjones"], "akcal",
                                          key_name="gainjones").items():
            errors.setdefault(k, v)
        raise ParameterError(errors, task="akcal") from None
    bad_calmode = selcheck.merge(bad_calmode, d, where="akcal", names=names)
    from alakazam import solve_precheck
    for k, v in solve_precheck.self_preapply_errors(cfg).items():
        bad_calmode.setdefault(names.get(k, k), v)
    from alakazam.calibration import polparang     # KC, CP, D without parang on a polarised calibrator
    pol = polparang.block_errors(cfg)
    if pol:
        bad_calmode.setdefault(names.get("apply_parang", "parang"), pol)
    if cfg.external_preapply is not None:       # SPWs (spwmap) and pinned fields the tables lack (the
        from .yamlrun import known_terms       # YAML preflight's check; before: said when the solve ran,
        known = known_terms(cfg.external_preapply.tables, cfg.external_preapply.jones, {}, {}, set())
        for k, v in solve_precheck.preapply_errors(cfg, known).items():     # naming 'gaintable')
            base, sep, idx = k.partition("[")
            bad_calmode.setdefault(names.get(base, base) + sep + idx, v)
    for k, v in selcheck.table_errors(params["gaintable"], params["gainjones"], "akcal",
                                      key_name="gainjones").items():
        bad_calmode.setdefault(k, v)
    if bad_calmode:
        raise ParameterError(bad_calmode, task="akcal")
    return cfg


def _start_errors(params, have):
    """What the solve would refuse when it starts (output path, gpu, combine with workers), named by
    akcal's parameters (alakazam/solve_precheck.py)."""
    from alakazam import solve_precheck

    names = akcal.names_for_messages()
    found = solve_precheck.errors(params.get("caltable"), params.get("solver"), params.get("gpu"),
                                  params.get("combine"), params.get("workers"), params.get("scheduler"))
    return {names.get(k, k): v for k, v in found.items() if names.get(k, k) not in have}


def _body(cfg):
    from alakazam.calibration import flagsafety
    from alakazam.flow import run_solve

    for ms in (cfg.ms if isinstance(cfg.ms, list) else [cfg.ms]):
        flagsafety.warn_interrupted(ms)     # the solve reads the FLAG an interrupted akflag / restore left
    summary = run_solve(cfg)
    if cfg.plots:
        from alakazam.plots import plot_table

        summary["plots"] = plot_table(cfg.output, cfg.plots, jones=list(summary.get("terms", [])),
                                      quiet=cfg.quiet)
    return summary


akcal = Task("akcal", _body, prepare=build_config)
