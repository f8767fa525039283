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
solution_field      akapply solutionfield                  ~ -> '', [a, b] -> 'a,b'
==================  =====================================  ======================================

The whole file is validated first (:func:`alakazam.config.load_run_config`, errors named by YAML path
such as ``solve[0].time_interval[2]``), so nothing runs when any block is bad.  Relative paths in the
YAML are relative to the YAML file.
"""

from __future__ import annotations

import logging
import os

import yaml

from alakazam import progress
from alakazam.config import load_run_config
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
    p = _yaml_to_params(akapply, block, where)
    if "applymode" in p:
        p["applymode"] = "calflag" if p["applymode"] else "calonly"
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


def _check_flag_calls(calls):
    """Validate every flag block as its akflag call (from the YAML file's folder, selections parsed
    against the MS); all errors of all blocks together, by YAML path."""
    errors = {}
    to_yaml = {p.name: p.yamlkey for p in akflag.spec.params if p.yamlkey}
    for section, where, task, params, _ in calls:
        if section != "flag":
            continue
        try:
            akflag._prepare(task.validate(task.bind(**params)))
        except ParameterError as e:
            for k, v in e.errors.items():
                k = k.split(".", 1)[1] if k.startswith("akflag.") else k
                errors.setdefault(f"{where}.{to_yaml.get(k, k)}", []).extend(v)
    if errors:
        raise ParameterError(errors)


def _raise_with_flag_errors(err, path):
    """Re-raise ``err`` (the file's validation errors) with those of its flag blocks checked against
    their MS from the YAML file's folder added, so one run reports every bad key."""
    errors = {k: list(v) for k, v in err.errors.items()}
    try:
        with open(path) as fh:
            doc = yaml.safe_load(fh) or {}
        blocks = doc.get("flag") or [] if isinstance(doc, dict) else []
        calls = []
        for i, b in enumerate(blocks if isinstance(blocks, list) else [blocks]):
            try:
                calls.append(("flag", f"flag[{i}]", akflag, flag_params(b, f"flag[{i}]"), False))
            except (AlakazamError, AttributeError):
                continue
        cwd = os.getcwd()
        os.chdir(os.path.dirname(os.path.abspath(path)))
        try:
            _check_flag_calls(calls)
        finally:
            os.chdir(cwd)
    except ParameterError as e2:
        for k, v in e2.errors.items():
            if k not in errors:
                errors[k] = v
    except Exception:          # the file's own errors are what matters; never hide them
        pass
    raise ParameterError(errors) from None


def run_yaml(path, sections=("flag", "solve", "fluxscale", "apply"), workers=None, scheduler=None,
             plots=None) -> dict:
    """Run a YAML file: every flag block (akflag), then solve (akcal), fluxscale (akfluxscale), apply
    (akapply).

    ``workers`` / ``scheduler`` (``alakazam run --workers N`` / ``--scheduler ADDRESS``): the dask
    cluster of every solve block that does not set its own ``workers`` / ``scheduler`` key; ``plots``
    (``alakazam run --plots DIR``): the plot directory of every solve block without its own ``plots:``.

    ``plots``: a directory for the solution plots of every solve block that has no ``plots`` key of
    its own (``alakazam run --plots DIR``; relative to the current directory).

    Returns
    -------
    dict
        ``{'flag': [...], 'solve': [...], 'fluxscale': [...], 'apply': [...]}`` -- the tasks' result dicts
        ('flag' only when the file has flag blocks).
    """
    try:
        load_run_config(path)                   # validate everything first, errors by YAML path
    except ParameterError as e:
        _raise_with_flag_errors(e, path)
    with open(path) as fh:
        doc = yaml.safe_load(fh) or {}
    calls = []
    for section, conv, task in (("flag", flag_params, akflag), ("solve", solve_params, akcal),
                                ("fluxscale", fluxscale_params, akfluxscale),
                                ("apply", apply_params, akapply)):
        if section not in sections:             # (alakazam flag CONFIG runs only the flag blocks)
            continue
        for i, block in enumerate(doc.get(section) or []):
            params = conv(block, f"{section}[{i}]")
            if section == "solve":
                if workers is not None and "workers" not in block:
                    params["workers"] = int(workers)
                if scheduler and "scheduler" not in block:
                    params["scheduler"] = str(scheduler)
            if plots and section == "solve" and not params.get("plotdir"):
                params["plotdir"] = os.path.abspath(plots)
            calls.append((section, f"{section}[{i}]", task, params, bool(block.get("quiet", False))))
    out = {"solve": [], "fluxscale": [], "apply": []}
    if any(c[0] == "flag" for c in calls):
        out = {"flag": [], **out}
    cwd = os.getcwd()
    os.chdir(os.path.dirname(os.path.abspath(path)))
    try:
        _check_flag_calls(calls)                   # flag blocks against their MS, before anything runs
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
