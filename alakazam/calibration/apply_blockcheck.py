"""The checks of a YAML apply block that could not be parsed whole (its ms, tables or jones bad).

The preflight (caltasks/yamlrun.py) checks an apply block's tables through its parsed config; when the
block itself is bad (a missing MS, tables and jones of different lengths, ...) there is no config and
:func:`alakazam.calibration.apply_precheck.errors_without` needs ms, tables and jones good.  So that
every bad parameter of the block is still reported with the file's other errors before anything runs,
this checks what does not need the config:

* each entry of ``tables``: it exists or an earlier block writes it;
* each key of ``jones`` in a table that exists now (and no earlier block rewrites) or among the keys an
  earlier block writes to it (``planned``), when tables and jones pair up (equal lengths, or one table
  for all);
* the values of the per-term lists ``time_interp`` and ``field_select`` whose length does not match
  jones (the parse reported only the length then, and checked no value).
"""

import os


def _as_list(v):
    return [v] if isinstance(v, str) else list(v) if isinstance(v, (list, tuple)) else []


def errors(block, where, have_table, produced, planned=None) -> dict:
    """{YAML path: [messages]} of the apply ``block`` (YAML keys) at ``where`` ('apply[0]');
    ``have_table(path)``: it exists or an earlier block writes it; ``produced``: real paths that earlier
    blocks write; ``planned``: {real path: (block, {key: ...} or None)}, the keys they write
    (core/selcheck.table_errors)."""
    from ..config import _Errors, _per_step_allowed, _time_freq_interp
    from ..core.selcheck import table_errors

    errs = _Errors()
    tables = _as_list(block.get("tables"))
    jones = _as_list(block.get("jones"))
    for k, t in enumerate(tables):
        if isinstance(t, str) and t and not have_table(os.path.expanduser(t)):
            errs.add(f"{where}.tables[{k}]", f"{t!r} does not exist and no earlier block writes it")
    if jones and (len(tables) == len(jones) or len(tables) == 1):
        planned = planned or {}

        def readable(t):        # as it is now, or as an earlier block writes it
            real = os.path.realpath(os.path.expanduser(t))
            return real in planned or (os.path.exists(os.path.expanduser(t)) and real not in produced)

        now = [os.path.expanduser(t) if isinstance(t, str) and readable(t) else None for t in tables]
        for path, msgs in table_errors(now, jones, where, "tables", "jones", planned).items():
            for msg in msgs:
                errs.add(path, msg)
    n = len(jones)
    for key in ("time_interp", "field_select"):
        v = block.get(key)
        if isinstance(v, (list, tuple)) and len(v) not in (1, n):
            if key == "time_interp":
                _time_freq_interp(list(v), key, where, None, errs)
            else:
                _per_step_allowed(list(v), "apply", key, where, None, errs)
    return errs.errors
