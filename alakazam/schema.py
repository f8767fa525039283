"""The YAML view of the task XML: ``tasks_xml/<task>.xml`` is the one schema of every parameter.

Each YAML block is one task (:data:`SECTIONS`); a block's keys are the ``yamlkey`` attributes of the
task's XML parameters (a dotted ``a.b`` is key ``b`` of the mapping ``a``), plus the few YAML-only keys of
:data:`YAML_ONLY`.  The type, default, allowed values and range of a key are those of its XML
parameter; :mod:`alakazam.config` checks the YAML values with :func:`check` (the same
:func:`~alakazam.caltasks.xmlschema.check_value` the task calls use) and parses the few keys whose YAML
form differs from the task form (intervals, per-step lists, fields) with its own value parsers.

Conventions (pinned by tests/test_schema.py):

* a YAML ``~`` (None) is the XML default;
* a CASA selection string (spw, scan, antenna, ...) may be written as an integer in YAML (``spw: 0``);
* a must-exist path is not checked here (the engine's dataclasses are built for paths relative to a
  YAML file or not yet written): the task call and the YAML runner's preflight check it.
"""

from __future__ import annotations

import functools
from dataclasses import replace

#: YAML block -> task
SECTIONS = {"flag": "akflag", "solve": "akcal", "fluxscale": "akfluxscale", "apply": "akapply"}

#: YAML keys that are not one XML parameter each: key -> (XML type, default, meaning), or the name of
#: the task parameter whose type and allowed values the key has.
YAML_ONLY = {
    "flag": {"quiet": ("bool", False, "no progress bars for this block")},
    "solve": {"quiet": ("bool", False, "no progress bars for this block"),
              "amp_only": ("any", False, "per step: amplitude-only G (with phase_only, akcal calmode 'a')")},
    "fluxscale": {},
    "apply": {"quiet": ("bool", False, "no progress bars for this block"),
              "applymode": "applymode"},
}

#: YAML keys holding CASA selection strings (an integer is accepted for them)
SELECTION_KEYS = ("field", "spw", "scan", "target_scans", "antenna", "timerange", "uvrange", "intent",
                  "observation", "correlation")


def _task_spec(task):
    from .caltasks.xmlschema import load_task       # (caltasks imports config: import when used)
    from .tasks_xml import xml_path

    return load_task(xml_path(task))


@functools.lru_cache(maxsize=None)
def specs(section) -> dict:
    """{YAML key: ParamSpec} of a block, in XML order, then the YAML-only keys (the spec's ``name`` is the
    task parameter; YAML-only keys that are no parameter have ``name`` = the key)."""
    from .caltasks.xmlschema import ParamSpec

    task = _task_spec(SECTIONS[section])
    out = {p.yamlkey: p for p in task.params if p.yamlkey}
    for key, how in YAML_ONLY[section].items():
        if isinstance(how, str):
            out[key] = replace(task.param(how), yamlkey=key)
        else:
            out[key] = ParamSpec(name=key, type=how[0], default=how[1], short=how[2], yamlkey=key)
    return out


def keys(section) -> set:
    """Every key a block accepts (dotted sub-keys as ``external_preapply.tables``)."""
    return set(specs(section))


def top_keys(section) -> set:
    """The keys of the block itself (``external_preapply`` for its sub-keys)."""
    return {k.split(".", 1)[0] for k in specs(section)}


def spec(section, key):
    return specs(section)[key]


def default(section, key):
    """The XML default of a key (a fresh copy for lists)."""
    d = spec(section, key).default
    return list(d) if isinstance(d, list) else d


def allowed(section, key) -> tuple:
    """The XML's allowed values of a key (empty: any)."""
    return tuple(spec(section, key).allowed or ())


def check(section, key, value):
    """(value coerced as the task would, error message or None); None -> the default."""
    from .caltasks.xmlschema import check_value

    if value is None:
        return default(section, key), None
    p = spec(section, key)
    if (key in SELECTION_KEYS and p.type == "string" and isinstance(value, int)
            and not isinstance(value, bool)):
        value = str(value)
    return check_value(p, value, paths=False)


def _yaml_form(key, under) -> str:
    """How a YAML key is written: ``'time_interval'``, or ``'tables' under 'external_preapply'``."""
    if "." in key:
        parent, sub = key.split(".", 1)
        return repr(sub) if under == parent else f"{sub!r} under {parent!r}"
    return f"{key!r} (a key of the block itself)" if under else repr(key)


def unknown_key_hint(section, key, under="") -> str:
    """What to say about ``key``, unknown in a ``section`` block (``under``: in its ``under`` mapping,
    e.g. ``external_preapply``): '' or a text starting with '; '.

    A task (CASA) parameter name is answered with the YAML key the task XML maps it to (``solint`` ->
    ``time_interval``, ``gainfield`` -> apply's ``field_select``, ``field`` -> apply's
    ``target_field``), plus the YAML-only keys whose meaning names it (``calmode`` -> ``phase_only``
    and ``amp_only``); other keys get the closest YAML key by spelling, or the YAML key of the closest
    task parameter name.  (Spelling alone suggested ``solnorm`` for ``solint`` and ``solution_field``
    -- CASA's gainsolutionfield -- for ``gainfield``.)"""
    import difflib
    import re

    task = SECTIONS[section]
    sp = specs(section)
    prefix = f"{under}." if under else ""
    valid = sorted({k[len(prefix):].split(".", 1)[0] for k in sp if k.startswith(prefix)})
    by_name = {}                                    # task parameter name -> its YAML keys
    for yk, p in sp.items():
        if p.name != yk:
            by_name.setdefault(p.name, []).append(yk)
    for yk, how in YAML_ONLY[section].items():      # e.g. amp_only: "... akcal calmode 'a'"
        if not isinstance(how, str):
            for name in re.findall(r"[a-z_]+", how[2]):
                if name in by_name and yk not in by_name[name]:
                    by_name[name].append(yk)
    k = str(key)
    tnames = set(_task_spec(task).names)
    if k in by_name:
        forms = " or ".join(_yaml_form(yk, under) for yk in by_name[k])
        return f"; {k!r} is the {task} parameter name: in YAML write {forms}"
    if k in tnames:                                 # a parameter without a YAML key (selectdata)
        return f"; {k!r} is an {task} parameter without a YAML key"
    nested = [yk for yk in sp if "." in yk and yk.split(".", 1)[1] == k and not under]
    if nested:                                      # tables at the top of a solve block
        return f"; {k!r} belongs under {nested[0].split('.', 1)[0]!r}"
    close = difflib.get_close_matches(k, valid + sorted(by_name), n=1)
    if not close:
        return ""
    if close[0] in valid:
        return f"; did you mean {close[0]!r}?"
    yks = by_name[close[0]]
    return f"; did you mean {' or '.join(_yaml_form(yk, under) for yk in yks)} ({task}'s {close[0]})?"
