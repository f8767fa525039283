"""What to say about a keyword that is not a parameter of a task: CASA's name for something the task
calls otherwise, a CASA parameter the task does not have, or a typo of one of its own.

Used by :meth:`caltasks.task.Task.__call__` (an unknown keyword is reported with the call's other bad
parameters, :class:`alakazam.errors.UnknownParameterError`) and by akshell when a variable it does not
know is set after ``inp``/``default`` of a task (a CASA user's ``gaintype = 'K'``).  Convention pinned
by tests/test_casa_hints.py.
"""

from __future__ import annotations

import difflib

#: per task: CASA parameter name -> what to use instead (or why there is nothing)
HINTS = {
    "akcal": {
        "gaintype": "CASA gaincal's gaintype is akcal's jones, a list with one Jones type per step "
                    "(jones=['K', 'G']; 'KCROSS' -> 'KC', 'XYf+QU' / 'XY+QU' -> 'CP', 'T' -> 'T')",
        "bandtype": "a bandpass is jones='G' with a freqint per channel (or solint 'inf,1MHz'); "
                    "CASA's 'BPOLY' has no counterpart",
        "poltype": "CASA polcal's poltype is akcal's jones: 'Df' / 'Dflls' / 'Df+QU' -> 'D', "
                   "'Xf' -> 'CP', 'Kcross' -> 'KC'",
        "preavg": "not needed: akcal averages each solution interval exactly (solint, freqint)",
        "docallib": "not available: pre-apply earlier tables with gaintable / gainjones / interp",
        "callib": "not available: pre-apply earlier tables with gaintable / gainjones / interp",
        "msselect": "not available: select with field, spw, scan, intent, antenna, timerange, uvrange, "
                    "observation",
        "solmode": "not available: outliers are flagged before the solve (rfi_threshold) and after it "
                   "(minsnr, minblperant)",
        "rmsthresh": "not available: see rfi_threshold",
        "gaincurve": "not available (CASA's own gaincal dropped it too: use gencal)",
        "opacity": "not available (CASA's own gaincal dropped it too: use gencal)",
        "corrcomb": "one gain for both polarisations is jones='T' (CASA gaintype 'T'); CASA's corrcomb "
                    "has no other counterpart",
        "splinetime": "not available: GSPLINE has no counterpart (solve G with a solint and interpolate "
                      "it with akapply's interp)",
        "npointaver": "not available (GSPLINE's phase unwrapping)",
        "phasewrap": "not available (GSPLINE's phase unwrapping)",
    },
    "akapply": {
        "flagbackup": "not needed: akapply always saves a flag version before it writes FLAG "
                      "(applymode 'calflag'); akflagmanager lists and restores it",
        "docallib": "not available: give gaintable / jones / gainfield / interp",
        "callib": "not available: give gaintable / jones / gainfield / interp",
        "msselect": "not available: select with field, spw, scan, intent, antenna, timerange, uvrange, "
                    "observation",
    },
    "akfluxscale": {
        "incremental": "not available: akfluxscale writes the scaled gains (fluxtable)",
        "listfile": "not available: the fitted fluxes are logged and returned",
        "display": "not available: plot the table with akplot",
        "append": "not available: akfluxscale writes a new fluxtable (the caltable is never changed)",
        "antenna": "not available: akfluxscale uses every antenna's solutions of the reference and transfer "
                   "fields (flag antennas in the caltable's solve, akcal antenna='!C02', to leave them out)",
        "timerange": "not available: akfluxscale uses every solution of the reference and transfer fields "
                     "(select times when solving, akcal timerange)",
        "scan": "not available: akfluxscale uses every solution of the reference and transfer fields "
                "(select scans when solving, akcal scan)",
    },
    "akflag": {
        "savepars": "not available: tput akflag (akshell) saves the parameters",
        "cmdreason": "not available",
        "inpfile": "not available: give the selection as parameters, or several flag blocks in a YAML "
                   "file (alakazam flag FILE.yaml)",
        "inpmode": "not available: give the selection as parameters, or several flag blocks in a YAML "
                   "file (alakazam flag FILE.yaml)",
        "reason": "not available: a saved flag version's comment says why (akflagmanager mode='save', "
                  "comment)",
        "tbuff": "not available: widen the timerange by hand",
        "channelavg": "not available: akflag's modes (clip, tfcrop, rflag) work on the unaveraged channels",
        "chanbin": "not available: akflag's modes (clip, tfcrop, rflag) work on the unaveraged channels",
        "timeavg": "not available: akflag's modes (clip, tfcrop, rflag) work on the unaveraged integrations",
        "timebin": "not available: akflag's modes (clip, tfcrop, rflag) work on the unaveraged integrations",
        "writeflags": "not available: action='calculate' reports without writing FLAG",
        "feed": "not available: select correlations with correlation",
    },
}


def unknown_message(task: str, names, key: str, yaml=None) -> str:
    """The message for keyword ``key`` that is not one of ``names`` (the task's parameters).  ``yaml``:
    the task's YAML key -> parameter name (``Task.names_for_messages``): a YAML runner's name
    (``apply_parang``) gets the task's own (``parang``)."""
    hint = HINTS.get(task, {}).get(key)
    if hint is not None:
        return f"not a parameter of {task}; {hint}"
    if yaml and key in yaml and yaml[key] != key:
        return (f"not a parameter of {task}; {key} is the name in a YAML file (alakazam run): "
                f"the task's is {yaml[key]}")
    close = difflib.get_close_matches(key, list(names), n=2, cutoff=0.75)
    if close:
        return f"not a parameter of {task}; did you mean {' or '.join(close)}?"
    return f"not a parameter of {task} (help({task}) lists them)"


#: per (task, parameter): what a value CASA takes there means in alakazam, appended to the value's error
VALUE_HINTS = {
    ("akapply", "gainfield"): "CASA's gainfield names the table's field to use; here that is "
                              "gainfield='pinned' with solutionfield set to the field name(s)",
    ("akcal", "gainfield"): "CASA's gainfield names the table's field to use; here that is "
                            "gainfield='pinned' with gainsolutionfield set to the field name(s)",
}


def value_hint(task: str, name: str, value=None, allowed=None):
    """The hint for a refused ``value`` of parameter ``name`` of ``task`` (None: no hint).  A string
    close to one of the ``allowed`` values (a typo: gainfield='nearest_tme') gets "did you mean ...?";
    the CASA hint of :data:`VALUE_HINTS` is for the values that are not (gainfield=['3C147'])."""
    hint = VALUE_HINTS.get((task, name))
    if not allowed:
        return hint
    vals = value if isinstance(value, (list, tuple)) else [value]
    bad = [v for v in vals if isinstance(v, str) and v not in allowed]
    close = [m for v in bad for m in difflib.get_close_matches(v, allowed, n=1, cutoff=0.75)]
    if not close:
        return hint
    mean = "did you mean " + " / ".join(repr(m) for m in dict.fromkeys(close)) + "?"
    return mean if len(close) == len(bad) or hint is None else f"{mean} {hint}"
