"""YAML runner through the tasks: each ``solve`` / ``fluxscale`` / ``apply`` block becomes an
``akcal`` / ``akfluxscale`` / ``akapply`` call.

The YAML key -> task parameter mapping is read from the ``yamlkey`` attributes of tasks_xml/*.xml (the
single source); only the few keys whose *values* differ between the two forms are converted here:

==================  =====================================  ======================================
YAML key            task parameter                         conversion
==================  =====================================  ======================================
field (solve)       akcal field                            [[a, b], [c]] -> ['a,b', 'c']; [a, b] -> 'a,b'
phase_only          akcal calmode                          true -> 'p', false -> 'ap' (per step)
ref_ant             akcal refant                           index -> its string
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

import yaml

from alakazam import progress
from alakazam.config import load_run_config
from alakazam.errors import AlakazamError, ParameterError

from .akapply import akapply
from .akcal import akcal
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
    if "refant" in p:
        p["refant"] = str(p["refant"])
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


def run_yaml(path) -> dict:
    """Run a YAML file: every solve block (akcal), then fluxscale (akfluxscale), then apply (akapply).

    Returns
    -------
    dict
        ``{'solve': [...], 'fluxscale': [...], 'apply': [...]}`` -- the tasks' result dicts.
    """
    load_run_config(path)                       # validate everything first, errors by YAML path
    with open(path) as fh:
        doc = yaml.safe_load(fh) or {}
    calls = []
    for section, conv, task in (("solve", solve_params, akcal), ("fluxscale", fluxscale_params, akfluxscale),
                                ("apply", apply_params, akapply)):
        for i, block in enumerate(doc.get(section) or []):
            calls.append((section, f"{section}[{i}]", task, conv(block, f"{section}[{i}]"),
                          bool(block.get("quiet", False))))
    out = {"solve": [], "fluxscale": [], "apply": []}
    cwd = os.getcwd()
    os.chdir(os.path.dirname(os.path.abspath(path)))
    try:
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
