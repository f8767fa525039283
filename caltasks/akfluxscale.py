"""akfluxscale: bootstrap the flux scale (parameters: tasks_xml/akfluxscale.xml)."""

import dataclasses

from alakazam.config import fluxscale_config_from_dict
from alakazam.errors import ParameterError

from .task import Task

_WHERE = "akfluxscale"
#: the config's required keys: empty, and a stand-in that gets a config built when one is bad or missing
_REQUIRED_EMPTY = {"reference_table": "", "reference_field": [], "output": ""}
_STAND_IN = {"reference_table": "-", "reference_field": ["-"], "output": "-"}


def _bad_yaml_keys(errors, names):
    """The YAML keys of the task parameters that ``errors`` (keyed ``akfluxscale.<parameter>``) name."""
    by_name = {v: k for k, v in names.items()}
    bad = set()
    for k in errors:
        short = k[len(_WHERE) + 1:] if k.startswith(_WHERE + ".") else k
        base = short.split("[", 1)[0].split(".", 1)[0]
        bad.add(by_name.get(base, base))
    return bad


def build_config(params):
    """The engine's config, or ONE ParameterError with every bad parameter, named by akfluxscale's
    parameter names (tasks_xml/akfluxscale.xml; the engine's checks name the YAML keys, mapped back
    through the xml's yamlkey): the config's own checks (types, lists, overlaps), then -- with the
    parameters the config refused left at their defaults -- the tables' contents
    (calibration/fluxscale.check_inputs: output, tables, jones, fields, vis, spw, refspwmap).  Before,
    a bad config value hid every table check, and a caltable that is not HDF5 (a text file) skipped
    them here and failed in the engine, after the Begin line, naming the YAML key reference_table."""
    from alakazam.calibration.fluxscale import check_inputs

    d = akfluxscale.yaml_dict(params)
    if not d.get("transfer_table"):
        d.pop("transfer_table", None)
    names = akfluxscale.names_for_messages()
    errors = {}
    try:
        cfg = fluxscale_config_from_dict(d, where=_WHERE, names=names)
    except ParameterError as e:
        errors = {k: list(v) for k, v in e.errors.items()}
        bad = _bad_yaml_keys(errors, names)
        # the rest checked against the tables: the refused values left at their defaults, a refused or
        # missing required one empty (a stand-in gets the config built; its checks are skipped)
        rest = {k: v for k, v in d.items() if k not in bad}
        empty = {k: v for k, v in _REQUIRED_EMPTY.items() if rest.get(k) in (None, "", [])}
        try:
            cfg = fluxscale_config_from_dict({**rest, **{k: _STAND_IN[k] for k in empty}}, where=_WHERE,
                                             names=names)
        except ParameterError:
            raise ParameterError(errors, task=_WHERE) from None
        cfg = dataclasses.replace(cfg, **empty)
    for k, msgs in check_inputs(cfg).items():       # every bad part of the call together
        path = f"{_WHERE}.{names.get(k, k)}"
        if path not in errors:
            errors[path] = list(msgs)
    if errors:
        raise ParameterError(errors, task=_WHERE)
    return cfg


def _body(cfg):
    from alakazam.calibration.fluxscale import run_fluxscale

    return run_fluxscale(cfg)


akfluxscale = Task("akfluxscale", _body, prepare=build_config, keep_reads=True)
