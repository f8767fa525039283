"""YAML runner through the tasks: each ``flag`` / ``solve`` / ``fluxscale`` / ``apply`` block becomes an
``akflag`` / ``akcal`` / ``akfluxscale`` / ``akapply`` call (flag blocks run first).

The YAML key -> task parameter mapping is read from the ``yamlkey`` attributes of tasks_xml/*.xml (the
single source); only the few keys whose *values* differ between the two forms are converted here:

==================  =====================================  ======================================
YAML key            task parameter                         conversion
==================  =====================================  ======================================
field (solve)       akcal field                            [[a, b], [c]] -> ['a,b', 'c']; [a, b] -> 'a,b'
phase_only          akcal calmode                          true -> 'p', false -> 'ap' (per step)
amp_only            akcal calmode                          true -> 'a' (per step)
ref_ant             akcal refant                           index -> its string (each, for a list)
propagate_flags     akapply applymode                      true -> 'calflag', false -> 'calonly'
applymode           akapply applymode                      as is (calflag, calonly, trial, flagonly, ...)
solution_field      akapply solutionfield                  ~ -> '', [a, b] -> 'a,b'
==================  =====================================  ======================================

The whole file is validated first (:func:`alakazam.config.load_run_config`, errors named by YAML path
such as ``solve[0].time_interval[2]``), so nothing runs when any block is bad.  Relative paths in the
YAML are relative to the YAML file.
"""

from __future__ import annotations

import logging
import os

from alakazam import progress
from alakazam.config import load_run_config
from alakazam.safeyaml import load
from alakazam.errors import AlakazamError, ParameterError

from .akapply import akapply
from .akcal import akcal
from .akflag import akflag
from .akfluxscale import akfluxscale

log = logging.getLogger("alakazam.run")


def _yaml_to_params(task, block: dict, where: str) -> dict:
    """One YAML block -> task keyword arguments, via the XML ``yamlkey`` attributes."""
    by_key = {p.yamlkey: p.name for p in task.spec.params if p.yamlkey}
    params = {}
    for k, v in block.items():
        if k == "quiet":                 # progress bars off for this block (run_yaml); not a task parameter
            continue
        if isinstance(v, dict):
            for k2, v2 in v.items():
                dotted = f"{k}.{k2}"
                if dotted not in by_key:
                    raise AlakazamError(f"{where}.{dotted}: unknown key")
                params[by_key[dotted]] = v2
            continue
        if k not in by_key:
            raise AlakazamError(f"{where}.{k}: unknown key (allowed: {', '.join(sorted(by_key))})")
        params[by_key[k]] = v
    return params


def _nulls(v):
    """Per-term field lists -> the task form: ~ -> '', [a, b] -> 'a,b'."""
    def one(x):
        if x is None:
            return ""
        return ",".join(map(str, x)) if isinstance(x, list) else x
    return [one(x) for x in v] if isinstance(v, list) else one(v)


def solve_params(block: dict, where="solve[0]") -> dict:
    """A ``solve`` block -> akcal keyword arguments."""
    block = dict(block)
    amp = block.pop("amp_only", None)             # with phase_only, the two halves of akcal calmode
    p = _yaml_to_params(akcal, block, where)
    f = p.get("field")
    if isinstance(f, list):
        if f and all(isinstance(x, list) for x in f):      # one list per step
            p["field"] = [",".join(map(str, x)) for x in f]
        else:                                               # one list for every step
            p["field"] = ",".join(map(str, f))
    if "calmode" in p:
        po = p["calmode"]
        p["calmode"] = [("p" if x else "ap") for x in po] if isinstance(po, list) else ("p" if po else "ap")
    if amp is not None:
        cm = p.get("calmode", "ap")
        n = max(len(x) for x in (amp, cm) if isinstance(x, list)) if any(
            isinstance(x, list) for x in (amp, cm)) else 0
        if n:
            amp_l = amp if isinstance(amp, list) else [amp] * n
            cm_l = cm if isinstance(cm, list) else [cm] * n
            p["calmode"] = ["a" if a is True else c for a, c in zip(amp_l, cm_l)]
        else:
            p["calmode"] = "a" if amp is True else cm
    if "refant" in p:
        r = p["refant"]
        p["refant"] = [str(x) for x in r] if isinstance(r, list) else str(r)
    # numbers (seconds / Hz) mixed with words in one per-step list: the task takes the text form
    for name, unit in (("solint", "s"), ("freqint", "Hz")):
        v = p.get(name)
        if isinstance(v, list) and any(isinstance(x, str) for x in v):
            p[name] = [f"{x!r}{unit}" if isinstance(x, (int, float)) and not isinstance(x, bool) else x
                       for x in v]
    if "gainsolutionfield" in p:
        p["gainsolutionfield"] = _nulls(p["gainsolutionfield"])
    return p


def fluxscale_params(block: dict, where="fluxscale[0]") -> dict:
    """A ``fluxscale`` block -> akfluxscale keyword arguments."""
    p = _yaml_to_params(akfluxscale, block, where)
    if p.get("transfertable") is None:
        p.pop("transfertable", None)
    return p


def apply_params(block: dict, where="apply[0]") -> dict:
    """An ``apply`` block -> akapply keyword arguments."""
    block = dict(block)
    mode = block.pop("applymode", None)          # CASA's name, accepted in YAML as is
    p = _yaml_to_params(akapply, block, where)
    if "applymode" in p:
        p["applymode"] = "calflag" if p["applymode"] else "calonly"
    if mode:
        p["applymode"] = mode
    if "solutionfield" in p:
        p["solutionfield"] = _nulls(p["solutionfield"])
    if p.get("field") is None:
        p.pop("field", None)
    return p


def flag_params(block: dict, where="flag[0]") -> dict:
    """A ``flag`` block -> akflag keyword arguments (YAML keys are akflag's names, ``ms`` for vis; a list
    for a selection string is joined with ',', or ';' for antenna)."""
    p = _yaml_to_params(akflag, block, where)
    for k in ("field", "spw", "scan", "timerange", "correlation", "antenna"):
        if isinstance(p.get(k), list):
            p[k] = (";" if k == "antenna" else ",").join(map(str, p[k]))
        elif isinstance(p.get(k), int) and not isinstance(p.get(k), bool):
            p[k] = str(p[k])
    return p


def preflight(calls, produced_elsewhere=()):
    """Check every block before anything runs (nothing is written on a bad file): the task parameters
    (XML types, ranges, paths), and the destinations: solution outputs writable, tables to read
    existing or written by an earlier block, MSs to apply to writable with a permitted output column.
    All errors are raised together, named by YAML path."""
    from alakazam.calibration.compat import ms_columns, output_column_errors
    from alakazam.core import outputs

    errors = {}
    produced = {os.path.realpath(p) for p in produced_elsewhere}

    def add(path, msg):
        errors.setdefault(path, []).append(msg)

    def have_table(t):
        return os.path.exists(t) or os.path.realpath(t) in produced

    for section, where, task, params, _ in calls:
        to_yaml = {p.name: p.yamlkey for p in task.spec.params if p.yamlkey}
        try:
            # a flag block reads only its MS: akflag's own validate also checks its selections against it
            ok = (task.validate(task.bind(**params)) if section == "flag"
                  else _validated(task, params, have_table))
            cfg = task._prepare(ok)
        except ParameterError as e:
            for k, v in e.errors.items():
                k = k.split(".", 1)[1] if k.startswith(task.name + ".") else k
                for msg in v:
                    add(f"{where}.{to_yaml.get(k, k)}", msg)
            continue
        except (AlakazamError, TypeError) as e:
            add(where, str(e))
            continue
        try:
            if section in ("solve", "fluxscale"):
                outputs.check_output_file(cfg.output, f"{where}.output")
            if section == "fluxscale":
                for key, t in (("reference_table", cfg.reference_table),
                               ("transfer_table", cfg.transfer_table)):
                    if t and not have_table(t):
                        add(f"{where}.{key}", f"{t!r} does not exist and no earlier block writes it")
            if section == "apply":
                for ms in (cfg.ms if isinstance(cfg.ms, list) else [cfg.ms]):  # ms: a list (multims.py)
                    outputs.check_ms_writable(ms, f"{where}.ms", flag_backup=cfg.propagate_flags)
                for k, term in enumerate(cfg.terms):
                    if not have_table(term.table):
                        add(f"{where}.tables[{k}]", f"{term.table!r} does not exist and no earlier block "
                            "writes it")
                for ms in (cfg.ms if isinstance(cfg.ms, list) else [cfg.ms]):
                    for msg in output_column_errors(cfg.output_col, cfg.data_col, ms_columns(ms)):
                        add(f"{where}.output_col", msg)
        except AlakazamError as e:
            msg = str(e)
            path, _, rest = msg.partition(": ")
            add(path if path.startswith(where) else where, rest if path.startswith(where) else msg)
        if section in ("solve", "fluxscale"):
            produced.add(os.path.realpath(cfg.output))
    if errors:
        raise ParameterError(errors)


def _validated(task, params, have_table):
    """``task.validate`` where a must-exist path written by an earlier block counts as existing."""
    from .xmlschema import check_value

    out, errors = {}, {}
    for p, v in task.bind(**params).items():
        spec = task.spec.param(p)
        v2, err = check_value(spec, v)
        if err and spec.mustexist and isinstance(v, str) and have_table(v):
            v2, err = v, None
        if err:
            errors.setdefault(p, []).append(err)
        out[p] = v2
    if errors:
        raise ParameterError(errors, task=task.name)
    return out


def run_yaml(path, sections=("flag", "solve", "fluxscale", "apply"), workers=None, scheduler=None,
             plots=None) -> dict:
    """Run a YAML file: every flag block (akflag), then solve (akcal), fluxscale (akfluxscale), apply
    (akapply).

    ``workers`` / ``scheduler`` (``alakazam run --workers N`` / ``--scheduler ADDRESS``): the dask
    cluster of every solve, apply and flag block that does not set its own ``workers`` / ``scheduler`` key; ``plots``
    (``alakazam run --plots DIR``; relative to the current directory): the plot directory of every
    solve block without its own ``plots:``.

    Returns
    -------
    dict
        ``{'flag': [...], 'solve': [...], 'fluxscale': [...], 'apply': [...]}`` -- the tasks' result dicts
        ('flag' only when the file has flag blocks).
    """
    # validate everything first, errors by YAML path; config errors and the preflight's are reported together
    config_errors = {}
    try:
        load_run_config(path)
    except ParameterError as e:
        config_errors = dict(e.errors)
    doc = load(path) or {}
    calls, skipped_outputs = [], []
    for section, conv, task in (("flag", flag_params, akflag), ("solve", solve_params, akcal),
                                ("fluxscale", fluxscale_params, akfluxscale),
                                ("apply", apply_params, akapply)):
        if section not in sections:             # (alakazam flag CONFIG runs only the flag blocks)
            continue
        blocks = doc.get(section) or []
        for i, block in enumerate([blocks] if isinstance(blocks, dict) else blocks):
            where = f"{section}[{i}]"
            if config_errors:
                # a block with errors is still checked as a task call (e.g. a flag block's antenna
                # against its MS), so that one run reports every bad key; nothing runs anyway
                if isinstance(block, dict) and isinstance(block.get("output"), str):
                    skipped_outputs.append(block["output"])         # later blocks may read it
                try:
                    params = conv(block, where)
                except (AlakazamError, AttributeError, TypeError):
                    continue
            else:
                params = conv(block, where)
            if section in ("solve", "apply", "flag"):
                if workers is not None and "workers" not in block:
                    params["workers"] = int(workers)
                if scheduler and "scheduler" not in block:
                    params["scheduler"] = str(scheduler)
            if section == "solve" and plots and not params.get("plotdir"):
                params["plotdir"] = os.path.abspath(plots)
            calls.append((section, where, task, params, bool(block.get("quiet", False))))
    out = {"solve": [], "fluxscale": [], "apply": []}
    if any(c[0] == "flag" for c in calls):
        out = {"flag": [], **out}
    cwd = os.getcwd()
    os.chdir(os.path.dirname(os.path.abspath(path)))
    try:
        # every block's task parameters and destinations are checked before the first block runs
        try:
            preflight(calls, skipped_outputs)
        except ParameterError as e:     # the file's own wording wins where both name a key
            raise ParameterError({**e.errors, **config_errors}) from None
        if config_errors:
            raise ParameterError(config_errors)
        for section, where, task, params, quiet in calls:
            try:
                with progress.quieted(quiet):          # a block's quiet: true turns its progress bars off
                    out[section].append(task(**params))
            except ParameterError as e:
                # name the YAML path (solve[0].ms), not the task parameter (vis)
                to_yaml = {p.name: p.yamlkey for p in task.spec.params if p.yamlkey}
                raise ParameterError({f"{where}.{to_yaml.get(k, k)}": v for k, v in e.errors.items()}) from None
    finally:
        os.chdir(cwd)
    return out
