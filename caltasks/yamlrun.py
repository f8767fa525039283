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

The whole file is validated first, in one pass (:func:`preflight`: each block parsed once into its
engine config, errors named by YAML path such as ``solve[0].time_interval[2]``), so nothing runs when
any block is bad.  Relative paths in the
YAML are relative to the YAML file.
"""

from __future__ import annotations

import logging
import os

from alakazam import progress, tasklog
from alakazam.safeyaml import load
from alakazam.core import warnonce
from alakazam.errors import AlakazamError, ParameterError

from .akapply import akapply
from .akcal import akcal
from .akflag import akflag
from .akfluxscale import akfluxscale
from .task import ms_error

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


#: YAML block -> (task, YAML -> task keyword arguments, YAML -> engine config)
def _sections():
    from alakazam.config import apply_config_from_dict, fluxscale_config_from_dict, solve_config_from_dict
    from alakazam.flagging.config import flag_config_from_dict

    return {"flag": (akflag, flag_params, flag_config_from_dict),
            "solve": (akcal, solve_params, solve_config_from_dict),
            "fluxscale": (akfluxscale, fluxscale_params, fluxscale_config_from_dict),
            "apply": (akapply, apply_params, apply_config_from_dict)}


def preflight(blocks, produced_elsewhere=()):
    """The one validation pass of a YAML file, before anything runs (nothing is written on a bad file).

    ``blocks``: ``(section, where, block)`` in run order.  Each block is parsed once into its engine
    config (:mod:`alakazam.config`: keys, types, allowed values and ranges from the task XML, intervals,
    per-step lists, selections -- a flag block's against its MS); then the paths the XML says must
    exist (an earlier block may write them), and the destinations: solution outputs writable, tables to
    read existing or written by an earlier block, MSs to apply to writable with a permitted output
    column.  The keys (and a fluxscale's fields) read from a table are checked against the table as it
    is when the block runs: for one an earlier block writes, the keys that block writes (a solve: its
    steps' K0, G0, G1, ... and the keys it keeps; a fluxscale: its reference table's) -- :func:`_planned`;
    so are the SPWs an apply corrects or a solve pre-applies and a pinned solution_field (the SPWs and
    fields that block writes, :func:`_planned_spws`; skipped when not known).
    Returns ``(section, where, task, params, config, quiet)`` per block (``params``: the task
    call it runs as); every error of the file is raised together, named by YAML path."""
    from alakazam.calibration.compat import ms_output_column_errors
    from alakazam.core import outputs

    sections = _sections()
    errors, calls = {}, []
    produced = {os.path.realpath(p) for p in produced_elsewhere}
    planned = {}        # real path -> (block, {key: field names or None} or None): what earlier blocks write
    planned_spws = {}   # real path -> {key: SPW ids or None} or None: the SPWs of those keys (_planned_spws)
    planned_ms = {}     # real path -> the MS of the solve block that writes it (a fluxscale's field ids)
    # the tables a later block reads: their fields are worked out too (one more read of the MS's metadata)
    tables_read = {os.path.realpath(os.path.expanduser(t)) for t in _tables_read(blocks)}

    def add(path, msg):
        errors.setdefault(path, []).append(msg)

    def have_table(t):
        t = os.path.expanduser(t)
        return os.path.exists(t) or os.path.realpath(t) in produced

    plot_dirs = {}      # real plots directory -> [(real output, Jones types, where)] of earlier solve blocks
    for section, where, block in blocks:
        task, to_params, to_config = sections[section]
        if section == "solve" and isinstance(block, dict):
            _plots_shared_errors(block, where, plot_dirs, add)
        if (isinstance(block, dict) and section in ("solve", "fluxscale")
                and isinstance(block.get("output"), str)):
            produced_here = block["output"]             # later blocks may read it, also when this one is bad
        else:
            produced_here = None
        try:
            cfg = to_config(block, where)
        except ParameterError as e:
            for k, v in e.errors.items():
                for msg in v:
                    add(k, msg)
            cfg = None
        if section == "solve" and isinstance(block, dict):    # gpu / combine with workers (solve_precheck.py)
            from alakazam import solve_precheck
            for k, msgs in solve_precheck.errors(None, block.get("solver_backend", "numba"), block.get("gpu"),
                                                 block.get("combine", ""), block.get("workers", 0),
                                                 block.get("scheduler", "")).items():
                for msg in msgs:
                    add(f"{where}.{k}", msg)
        if section in ("solve", "apply") and isinstance(block, dict):    # selections against the MS
            from alakazam.core import selcheck
            selcheck.merge(errors, block, selcheck.APPLY_KEYS if section == "apply" else None, where)
        if isinstance(block, dict):                 # (also when the block has other errors)
            for p in task.spec.params:              # the XML's must-exist paths (a path or a list of them)
                v = block.get(p.yamlkey) if p.mustexist and p.yamlkey else None
                for x in ([v] if isinstance(v, str) else v if isinstance(v, list) else []):
                    if isinstance(x, str) and not have_table(os.path.expanduser(x)):
                        add(f"{where}.{p.yamlkey}", f"{x!r} does not exist"
                            + (" and no earlier block writes it" if section == "fluxscale" else ""))
                    elif isinstance(x, str) and (bad := ms_error(p, x)) and \
                            bad not in errors.get(f"{where}.{p.yamlkey}", []):
                        add(f"{where}.{p.yamlkey}", bad)        # a directory, not an MS (said once)
        if cfg is not None and f"{where}.ms" not in errors and f"{where}.reference_table" not in errors:
            try:
                if section == "solve":
                    outputs.check_output_file(cfg.output, f"{where}.output")
                elif section == "fluxscale":    # with the block's other errors (not before them)
                    try:
                        outputs.check_output_file(cfg.output, f"{where}.output")
                    except AlakazamError as e:
                        add(f"{where}.output", str(e).split(": ", 1)[-1])
                if section == "fluxscale" and cfg.transfer_table and not have_table(cfg.transfer_table):
                    add(f"{where}.transfer_table", f"{cfg.transfer_table!r} does not exist and no earlier "
                        "block writes it")
                if section == "apply":
                    mss = cfg.ms if isinstance(cfg.ms, list) else [cfg.ms]     # ms: a list (multims.py)
                    for ms in mss:
                        outputs.check_ms_writable(ms, f"{where}.ms", flag_backup=cfg.propagate_flags)
                    for k, term in enumerate(cfg.terms):
                        if not have_table(term.table):
                            add(f"{where}.tables[{k}]", f"{term.table!r} does not exist and no earlier block "
                                "writes it")
                    for ms in mss:
                        for msg in ms_output_column_errors(cfg.output_col, cfg.data_col, ms):
                            add(f"{where}.output_col", msg)
                _term_table_errors(section, where, cfg, have_table, produced, add, planned, planned_spws)
                if section == "fluxscale":      # its key and fields in its tables (as they will be)
                    for k, msgs in _fluxscale_errors(cfg, planned, produced, planned_spws,
                                                     planned_ms).items():
                        if f"{where}.{k}" not in errors:
                            for msg in msgs:
                                add(f"{where}.{k}", msg)
                if section in ("solve", "apply"):   # the MS's correlations (D, KC, CP, parang)
                    for k, msgs in _correlation_errors(section, cfg).items():
                        for msg in msgs:
                            if msg not in errors.get(f"{where}.{k}", []):
                                add(f"{where}.{k}", msg)
                if section == "solve":      # KC, CP, D without parang on a polarised calibrator (58f)
                    from alakazam.calibration import polparang
                    for msg in polparang.block_errors(cfg):
                        if msg not in errors.get(f"{where}.apply_parang", []):
                            add(f"{where}.apply_parang", msg)
                if section == "solve":      # a key of the output pre-applied and solved again
                    from alakazam import solve_precheck
                    for k, msgs in solve_precheck.self_preapply_errors(cfg).items():
                        for msg in msgs:
                            add(f"{where}.{k}", msg)
            except AlakazamError as e:
                msg = str(e)
                path, _, rest = msg.partition(": ")
                add(path if path.startswith(where) else where, rest if path.startswith(where) else msg)
        if section == "apply" and cfg is None and isinstance(block, dict):     # the tables too (precheck)
            from alakazam.calibration import apply_precheck
            bad = {k[len(where) + 1:].split("[", 1)[0] for k in errors if k.startswith(where + ".")}
            for k, msgs in apply_precheck.errors_without(block, bad, lambda t: os.path.exists(t) and
                                                         os.path.realpath(t) not in produced).items():
                for msg in msgs:
                    add(f"{where}.{k}", msg)
            from alakazam.calibration import apply_blockcheck      # what needs no config (its docstring)
            for k, msgs in apply_blockcheck.errors(block, where, have_table, produced, planned).items():
                for msg in msgs:
                    if msg not in errors.get(k, []):
                        add(k, msg)
        elif section == "apply" and isinstance(block, dict) and f"{where}.ms" in errors:   # tables unchecked
            from alakazam.calibration import apply_blockcheck
            for k, msgs in apply_blockcheck.errors(block, where, have_table, produced, planned).items():
                for msg in msgs:
                    if msg not in errors.get(k, []):
                        add(k, msg)
        if produced_here:
            real = os.path.realpath(os.path.expanduser(produced_here))
            planned_spws[real] = _planned_spws(section, cfg, real, planned, planned_spws, produced)
            if cfg is not None and section == "solve" and cfg.ms:     # (several MSs: the first's FIELD)
                planned_ms[real] = cfg.ms if isinstance(cfg.ms, str) else cfg.ms[0]
            elif cfg is not None and section == "fluxscale":
                planned_ms[real] = planned_ms.get(os.path.realpath(os.path.expanduser(cfg.reference_table)))
            planned[real] = (where, _planned(section, cfg, real, planned, produced, real in tables_read))
            produced.add(real)
        if cfg is not None:
            # the task call this block runs as (its Begin line); the block is already checked
            calls.append((section, where, task, task.bind(**to_params(block, where)), cfg,
                          bool(block.get("quiet", False))))
    if errors:
        raise ParameterError(errors)
    return calls


def _plots_shared_errors(block, where, plot_dirs, add):
    """A solve block whose ``plots`` directory an earlier block of the file also plots into, with another
    output table and a Jones type in common: its pages (``G0_overview.png``, ``G0/``) would replace the
    earlier block's, which akplot refuses (pages of another table) -- found here, before anything runs,
    not when the earlier block has solved and plotted.  Records this block's directory."""
    d, out = block.get("plots"), block.get("output")
    if not (isinstance(d, str) and d and isinstance(out, str) and out):
        return
    real_d = os.path.realpath(os.path.expanduser(d))
    real_out = os.path.realpath(os.path.expanduser(out))
    types = {str(j).strip().upper() for j in (block.get("jones") or []) if isinstance(j, str)}
    for other_out, other_types, other_where in plot_dirs.get(real_d, []):
        common = sorted(types & other_types)
        if other_out != real_out and common:
            add(f"{where}.plots", f"{d!r} also holds the plots of {other_where} (its output "
                f"{other_out!r}): this block's {', '.join(common)} pages would replace "
                f"them; give each solve block its own plots directory")
            break
    plot_dirs.setdefault(real_d, []).append((real_out, types, where))


def _plots_subdirs(blocks) -> list:
    """``alakazam run --plots DIR``: the subdirectory of DIR for each of the solve blocks ``blocks`` (those
    without a ``plots:`` key of their own) -- None for a file with one such block (DIR itself), else the
    output table's file name without its extension (``cal.h5``: ``cal``), made unique with ``-2``,
    ``-3``, ... where two blocks write tables of one name (a/cal.h5, b/cal.h5); blocks writing the same
    table (append) share one.  Several blocks plot the same keys (G0 of cal.h5 and of gains.h5), which
    one directory cannot hold."""
    if len(blocks) < 2:
        return [None] * len(blocks)
    names, out = {}, []
    for b in blocks:
        o = b.get("output")
        if not (isinstance(o, str) and o):
            out.append(None)        # (no output: the block's own error)
            continue
        real = os.path.realpath(os.path.expanduser(o))
        if real not in names:
            base = os.path.splitext(os.path.basename(real))[0] or "table"
            name, n = base, 1
            while name in names.values():
                n += 1
                name = f"{base}-{n}"
            names[real] = name
        out.append(names[real])
    return out


def _plots_dir(plots, subdir):
    """The plots directory of a block under ``--plots DIR`` (``~`` expanded, as a YAML ``plots:`` is)."""
    d = os.path.abspath(os.path.expanduser(plots))
    return os.path.join(d, subdir) if subdir else d


def _tables_read(blocks):
    """The table paths (as given) that fluxscale, apply and solve (external_preapply) blocks read."""
    out = []
    for section, _, b in blocks:
        if not isinstance(b, dict):
            continue
        if section == "fluxscale":
            vals = [b.get("reference_table"), b.get("transfer_table")]
        elif section == "apply":
            vals = b.get("tables")
        elif section == "solve" and isinstance(b.get("external_preapply"), dict):
            vals = b["external_preapply"].get("tables")
        else:
            continue
        out += [v for v in ([vals] if isinstance(vals, str) else vals if isinstance(vals, list) else [])
                if isinstance(v, str)]
    return out


def known_terms(tables, keys, planned, planned_spws, produced, planned_only=False):
    """{entry i: (name, SPW ids or None, field names or None)} of the terms (``tables[i]``, ``keys[i]``;
    one table for every key) whose table an earlier block writes (``planned``: as it will be) or that
    exists now and no earlier block rewrites (as it is; not with ``planned_only``): what the SPW and
    pinned-field checks compare with.  Entries not known (a key not found, a table not readable) are
    left out."""
    from alakazam.calibration.apply_precheck import _table_index
    from alakazam.io import hdf5

    tables = [tables] if isinstance(tables, str) else list(tables or [])
    if len(tables) == 1:
        tables = tables * len(keys)
    out = {}
    for i, (t, key) in enumerate(zip(tables, keys)):
        if not isinstance(t, str) or not isinstance(key, str):
            continue
        path = os.path.expanduser(t)
        real = os.path.realpath(path)
        if real in planned:
            block, index = planned[real]
            if index is None:
                continue
            try:
                k = hdf5.pick_key(index, key, t)
            except AlakazamError:
                continue                    # (named by the key check)
            spws = (planned_spws.get(real) or {}).get(k)
            out[i] = (f"{k} of {t} as {block} writes it", spws, index.get(k))
        elif not planned_only and os.path.exists(path) and real not in produced:
            idx = _table_index(path, key)
            if idx:
                out[i] = (f"{key} of {t}", idx[0], idx[1])
    return out


def _term_table_errors(section, where, cfg, have_table, produced, add, planned, planned_spws=None):
    """A solve block's external_preapply tables must exist (or be written by an earlier block); the keys
    of an apply / external_preapply table must be in it: as it is now, or as an earlier block writes it
    (``planned``; before: found at run time, one at a time, the missing table named 'caltable').  The
    SPWs the block corrects or pre-applies (spw, spwmap) and a pinned solution_field are checked
    against the table as well -- for a table an earlier block writes, against the SPWs and fields that
    block will write (``planned_spws``, ``planned``), when known (before: found after that block ran)."""
    from alakazam.core.selcheck import table_errors

    planned_spws = planned_spws or {}

    if section == "solve" and getattr(cfg, "external_preapply", None) is not None:
        tables, keys, tname, kname = (cfg.external_preapply.tables, cfg.external_preapply.jones,
                                      "external_preapply.tables", "external_preapply.jones")
        for k, t in enumerate(tables):
            if not have_table(t):
                add(f"{where}.{tname}[{k}]", f"{t!r} does not exist and no earlier block writes it")
    elif section == "apply":
        tables, keys = [t.table for t in cfg.terms], [t.key for t in cfg.terms]
        tname, kname = "tables", "jones"
    else:
        return
    now = [t if os.path.realpath(t) in planned or (os.path.exists(t) and os.path.realpath(t) not in produced)
           else None for t in tables]
    for path, msgs in table_errors(now, keys, where, tname, kname, planned).items():
        for msg in msgs:
            add(path, msg)
    if section == "apply":      # SPWs / fields missing from those tables, a selection without data
        from alakazam.calibration import apply_precheck
        ahead = known_terms(tables, keys, planned, planned_spws, produced, planned_only=True)
        for key, msgs in apply_precheck.errors(cfg, lambda t: os.path.exists(t) and os.path.realpath(t)
                                               not in produced, planned=ahead).items():
            for msg in msgs:
                add(f"{where}.{key}", msg)
    else:                       # a solve's pre-applied terms: their SPWs and pinned fields
        from alakazam import solve_precheck
        known = known_terms(tables, keys, planned, planned_spws, produced)
        for key, msgs in solve_precheck.preapply_errors(cfg, known).items():
            for msg in msgs:
                add(f"{where}.{key}", msg)


def _table_keys(t, planned, produced, fields=True):
    """{key: field names (None: not known)} of table ``t`` when a block reads it: as an earlier block
    writes it (``planned``), else as it is now (an HDF5 file); None when not known."""
    from alakazam.calibration.apply_precheck import _table_index
    from alakazam.io import hdf5

    t = os.path.expanduser(t)
    real = os.path.realpath(t)
    if real in planned:
        return planned[real][1]
    if real in produced or not os.path.isfile(t):
        return None
    try:
        return {k: ((_table_index(t, k) or (None, None))[1] if fields else None) for k in hdf5.list_keys(t)}
    except (AlakazamError, OSError):
        return None


def _planned(section, cfg, real, planned, produced, fields):
    """What a solve / fluxscale block leaves in its output ``real``: {key: field names or None} (None:
    not known, e.g. the block is bad).  A solve writes its steps' keys (config.SolveStep.key; append
    adds to a key's fields) and keeps the table's other keys (io/hdf5.write_terms); a fluxscale writes a
    copy of its reference table with the key rescaled.  ``fields``: work the steps' fields out (from the
    MS's metadata; only for a table a fluxscale reads)."""
    if cfg is None:
        return None
    if section == "fluxscale":
        keys = _table_keys(cfg.reference_table, planned, produced, fields)
        if keys is None or not cfg.transfer_table:
            return keys
        return {k: None for k in keys}          # (the key's fields come from both tables)
    keys = {} if real not in planned and real not in produced and not os.path.exists(real) else \
        _table_keys(real, planned, produced, fields)
    if keys is None:
        return None
    keys = dict(keys)
    for st in cfg.steps:
        have = _step_fields(cfg, st) if fields else None
        if cfg.append and st.key in keys:
            have = None if have is None or keys[st.key] is None else set(keys[st.key]) | have
        keys[st.key] = have
    return keys


def _planned_spws(section, cfg, real, planned, planned_spws, produced):
    """{key: SPW ids or None} that a solve / fluxscale block leaves in its output ``real`` (None: not
    known).  A solve step writes at most the SPWs its block reads (:func:`alakazam.solve_precheck.
    solve_spws`: its fields' scans in the spw and scan selections -- a superset, so a check against
    it never refuses what the run would do); append adds the key's SPWs already there; the table's
    other keys are kept as they are.  A fluxscale's output is its reference table's keys (the scaled
    key's SPWs not known)."""
    from alakazam import solve_precheck
    from alakazam.io import hdf5

    if cfg is None:
        return None

    def table_spws(t):
        t = os.path.expanduser(t)
        r = os.path.realpath(t)
        if r in planned_spws:
            return planned_spws[r]
        keys = _table_keys(t, planned, produced, fields=False)
        if keys is None:
            return None
        from alakazam.calibration.apply_precheck import _table_index
        return {k: ((_table_index(t, k) or (None,))[0]) for k in keys}

    if section == "fluxscale":
        have = table_spws(cfg.reference_table)
        if have is None:
            return None
        try:
            scaled = hdf5.pick_key(have, cfg.jones_type, cfg.reference_table)
        except AlakazamError:
            return {k: None for k in have}
        return {k: (None if k == scaled or cfg.transfer_table else v) for k, v in have.items()}
    have = {} if real not in planned and real not in produced and not os.path.exists(real) else \
        table_spws(real)
    if have is None:
        return None
    have = dict(have)
    spws = solve_precheck.solve_spws(cfg)
    for st in cfg.steps:
        new = None if spws is None else set(spws)
        if cfg.append and st.key in have:
            new = None if new is None or have[st.key] is None else set(have[st.key]) | new
        have[st.key] = new
    return have


def _step_fields(cfg, step):
    """The names of the fields solve step ``step`` solves (None: not known, e.g. combine='field' stores
    them as one 'a+b')."""
    from alakazam.core import ms_io

    if "field" in (step.combine or ""):
        return None
    names = set()
    try:
        for ms in (cfg.ms if isinstance(cfg.ms, list) else [cfg.ms]):
            meta = ms_io.read_meta(ms)
            names |= {meta.fields[i].name for i in ms_io.resolve_fields(meta, step.field or None)}
    except (AlakazamError, RuntimeError, OSError, IndexError):
        return None
    return names


def _correlation_errors(section, cfg) -> dict:
    """{YAML key: [message]} of a solve or apply block whose terms or parallactic angle need
    correlations its MS's selected SPWs lack (calibration/parang_check.py: D, KC, CP solved from the
    cross hands; D applied; apply_parang on linear feeds without XY, YX): said with the file's other
    errors, before anything runs (a review: they were found when the block ran, after the blocks
    before it had written FLAG and tables).  Unreadable MSs and selections are left to the checks that
    say them."""
    from alakazam.calibration import parang_check
    from alakazam.core import ms_io

    out = {}
    for ms in (cfg.ms if isinstance(cfg.ms, list) else [cfg.ms]):
        try:
            meta = ms_io.read_meta(ms)
            ddids = ms_io.resolve_spw(meta, cfg.spw)
        except Exception:       # noqa: BLE001 -- said by the MS and selection checks
            continue
        if section == "solve":
            msg = parang_check.cross_hand_steps_error(meta, ddids, cfg.steps)
            if msg:
                out.setdefault("jones", []).append(msg)
        else:       # (keys are <Jones type><n>, config.py; case as the apply resolves them)
            msg = parang_check.full_terms_error(
                meta, ddids, [(t.key, str(t.key).rstrip("0123456789").upper()) for t in cfg.terms])
            if msg:
                out.setdefault("jones", []).append(msg)
        try:
            parang_check.check_parang_correlations(meta, ddids, cfg.apply_parang, "apply_parang")
        except AlakazamError as e:
            out.setdefault("apply_parang", []).append(str(e).split(": ", 1)[-1])
    return out


def _fluxscale_errors(cfg, planned, produced, planned_spws=None, planned_ms=None):
    """{YAML key: [message]} of a fluxscale block against its tables: as they are now
    (calibration/fluxscale.check_inputs, as akfluxscale checks them), or -- one written by an earlier
    block -- as they will be (fluxscale.planned_errors, and its ms and spw:
    fluxscale.planned_ms_spw_errors)."""

    from alakazam.calibration import fluxscale
    from alakazam.io import hdf5

    tables = {"reference_table": cfg.reference_table,
              "transfer_table": cfg.transfer_table or cfg.reference_table}
    reals = {os.path.realpath(os.path.expanduser(t)) for t in tables.values()}
    tr = os.path.realpath(os.path.expanduser(tables["transfer_table"]))
    id_errors = {}
    if reals & produced:        # field ids through the MS (fluxscale.fields_by_id)
        cfg, id_errors = fluxscale.fields_by_id(cfg, (planned_ms or {}).get(tr))
    known = {}
    for name, t in tables.items():
        keys = _table_keys(t, planned, produced)
        real = os.path.realpath(os.path.expanduser(t))
        known[name] = None if keys is None else (f"{t} as {planned[real][0]} writes it" if real in planned
                                                  else t, keys)
    errors = fluxscale.planned_errors(cfg, known)       # (also the fields when jones_type is bad)
    for k, msgs in id_errors.items():
        errors.setdefault(k, []).extend(msgs)
    if reals & produced:
        index = (planned_spws or {}).get(tr) or {}
        key = None
        if index:
            try:
                key = hdf5.pick_key(index, cfg.jones_type, tables["transfer_table"])
            except AlakazamError:
                key = None
        for k, msgs in fluxscale.planned_ms_spw_errors(cfg, index.get(key) if key else None).items():
            errors.setdefault(k, []).extend(m for m in msgs if m not in errors.get(k, []))
    else:
        ref = os.path.expanduser(cfg.reference_table)
        if os.path.exists(ref):         # (a file that is not HDF5 too: check_inputs says so)
            for k, msgs in fluxscale.check_inputs(cfg).items():
                errors.setdefault(k, []).extend(m for m in msgs if m not in errors.get(k, []))
    return errors


def _writes_flag(cfg) -> bool:
    """A flag block that writes FLAG (akflag's own test: a writing mode with action='apply')."""
    from alakazam.flagging.config import WRITING_MODES

    return cfg.mode in WRITING_MODES and cfg.action == "apply"


def _apply_writes_flag(cfg) -> bool:
    """An apply block that writes FLAG (applymode calflag / flagonly, or propagate_flags)."""
    from alakazam.calibration import applymode

    return applymode.writes_flags(applymode.resolve(cfg.applymode, cfg.propagate_flags))


def _restore_flags(ms, version):
    """runjournal's restore: akflagmanager's (the current flags saved as a version first, whose name is
    returned)."""
    from alakazam.caltasks import akflagmanager

    return akflagmanager(vis=ms, mode="restore", versionname=version, merge="replace")["backup"]


@warnonce.scoped              # a warning the blocks' checks would repeat is said once (core/warnonce.py)
@tasklog.logged_call("run_yaml")    # from Python with no logging set up: alakazam.log (alakazam/tasklog.py)
def run_yaml(path, sections=("flag", "solve", "fluxscale", "apply"), workers=None, scheduler=None,
             plots=None) -> dict:
    """Run a YAML file: every flag block (akflag), then solve (akcal), fluxscale (akfluxscale), apply
    (akapply).

    ``workers`` / ``scheduler`` (``alakazam run --workers N`` / ``--scheduler ADDRESS``): the dask
    cluster of every solve, apply and flag block that does not set its own ``workers`` /
    ``scheduler`` key; ``plots`` (``alakazam run --plots DIR``; relative to the current directory):
    the plot directory of every solve block without its own ``plots:`` (several such blocks: one
    subdirectory each, named for its output table, :func:`_plots_subdirs`).
    Called from Python with no logging set up by the caller, the run's log is appended to
    ``alakazam.log`` in the working directory (``$ALAKAZAM_LOG``; :mod:`alakazam.tasklog`).

    Returns
    -------
    dict
        ``{'flag': [...], 'solve': [...], 'fluxscale': [...], 'apply': [...]}`` -- the tasks' result dicts
        ('flag' only when the file has flag blocks).
    """
    from alakazam.config import yaml_blocks
    from alakazam import warmup
    from alakazam.core import readcache

    yaml_abs = os.path.abspath(path)
    blocks, errors = yaml_blocks(load(path))
    blocks = [b for b in blocks if b[0] in sections]     # (alakazam flag CONFIG runs only the flag blocks)
    if not blocks and not errors:       # nothing to run is not a success (exit 0 with nothing done)
        hint = ("expected 'flag:' with a list of blocks; `alakazam run` runs the solve, fluxscale and "
                "apply blocks" if tuple(sections) == ("flag",) else
                "expected e.g. 'solve:' with a list of blocks")
        errors = {"config": [f"{path} has no {', '.join(sections)} block; nothing to run ({hint})"]}
    # --plots: the solve blocks without a plots: key of their own (a key that is there, even '' or a bad
    # value, is the block's: checked as written, never replaced)
    plotted = [k for k, (section, _, b) in enumerate(blocks)
               if section == "solve" and isinstance(b, dict) and "plots" not in b]
    subdirs = _plots_subdirs([blocks[k][2] for k in plotted]) if plots else []
    for k, (section, where, block) in enumerate(blocks):
        if section in ("solve", "apply", "flag") and isinstance(block, dict):
            block = dict(block)
            if workers is not None and "workers" not in block:
                block["workers"] = int(workers)
            if scheduler and "scheduler" not in block:
                block["scheduler"] = str(scheduler)
            if section == "solve" and plots and k in plotted:
                block["plots"] = _plots_dir(plots, subdirs[plotted.index(k)])
            blocks[k] = (section, where, block)
    out = {"solve": [], "fluxscale": [], "apply": []}
    if any(b[0] == "flag" for b in blocks):
        out = {"flag": [], **out}
    cwd = os.getcwd()
    from alakazam.calibration.flagsafety import user_dir
    undo_dir = user_dir(cwd)            # restore commands name the MS as seen from the user's directory
    undo_dir.__enter__()
    os.chdir(os.path.dirname(os.path.abspath(path)))
    try:
        try:
            calls = preflight(blocks)           # every block checked before the first one runs
        except ParameterError as e:
            raise ParameterError({**errors, **e.errors}) from None
        if errors:
            raise ParameterError(errors)
        # an unfinished earlier run of this file: FLAG back to the flags it started from first, so this
        # run's flag blocks do not flag on top of their own flags (alakazam/core/runjournal.py)
        from alakazam.core import runjournal
        # (an apply block that writes FLAG -- calflag, propagate_flags -- counts too: the re-run's solves
        # read FLAG, and solved on the interrupted run's apply flags, session 55)
        journals = runjournal.begin(
            yaml_abs, sections,
            [cfg.ms for section, _, _, _, cfg, _ in calls
             if (section == "flag" and _writes_flag(cfg))
             or (section == "apply" and _apply_writes_flag(cfg))],
            _restore_flags)
        # first run on this machine: every solve block's solvers, then the apply's kernels when an apply
        # block follows the solves, compile on the other core from the start (alakazam/warmup.py)
        solved = [jt for section, _, _, _, cfg, _ in calls if section == "solve"
                  for jt in (st.jones_type for st in cfg.steps)]
        applies = solved and any(section == "apply" for section, *_ in calls)
        warmup.start(solved + (["apply"] if applies else []),
                     next((c.solver_backend for s_, _, _, _, c, _ in calls if s_ == "solve"), "numba"))
        with readcache.Blocks() as kept:
            for section, where, task, params, cfg, quiet in calls:
                # consecutive solve/fluxscale blocks share their reads of the same rows
                # (alakazam/core/readcache.py); dropped before a flag or apply block
                kept.before(section)
                with progress.quieted(quiet):          # a block's quiet: true turns its progress bars off
                    out[section].append(task.run_prepared(params, cfg))
        runjournal.end(journals)
    finally:
        from alakazam.core import runjournal

        runjournal.stop()           # no journal records the saves of later tasks of this process
        os.chdir(cwd)
        undo_dir.__exit__(None, None, None)
    return out
