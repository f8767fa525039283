"""Checks made before apply writes anything: the output column, and whether the solution tables fit the
target Measurement Set.

Conventions (pinned by tests/test_reliability.py):

* Output column: ``CORRECTED_DATA``, a column name the MS does not have yet, or a column an earlier
  apply created (its keyword ``ALAKAZAM_APPLY_OUTPUT``, core/columns.py: a re-run writes it again).
  Any other existing column (DATA, MODEL_DATA, FLAG, WEIGHT, UVW, SIGMA, WEIGHT_SPECTRUM, FLAG_ROW,
  TIME, ...) and every standard MS main-table column name (even when absent) are refused with a
  ParameterError naming ``output_col``.  The name must look like a column name (letters, digits, '_').
* Frequencies: for every SPW to correct, the table's solutions for the SPW it maps to (the same SPW
  id, or ``spwmap[spw]`` with apply's ``spwmap``) must overlap the data's band (not checked for a
  mapped SPW: spwmap maps another band on purpose, :mod:`.spwmap`): the table's extent is its bin
  centres +- half ``freqint_hz`` (0 for ``full``), the data's is its channels +- half a channel
  width.  No overlap is an error.
* Feed basis: the table's ``feed_basis`` attr must equal the SPW's (linear/circular); else an error.
* Antennas: no antenna name in common is an error; data antennas missing from the table are a
  warning listing them (their data are flagged or written uncorrected, as counted by apply).
* The MS a table was solved on (attr ``ms``) differing from the target MS is a warning.
"""

from __future__ import annotations

import logging
import re

import numpy as np

from ..errors import AlakazamError, ParameterError

log = logging.getLogger("alakazam.apply")

# MeasurementSet v2 main-table columns (required and optional) plus the usual scratch columns
MS_MAIN_COLUMNS = frozenset((
    "TIME", "TIME_EXTRA_PREC", "ANTENNA1", "ANTENNA2", "ANTENNA3", "FEED1", "FEED2", "FEED3",
    "DATA_DESC_ID", "PROCESSOR_ID", "PHASE_ID", "FIELD_ID", "INTERVAL", "EXPOSURE", "TIME_CENTROID",
    "PULSAR_BIN", "PULSAR_GATE_ID", "SCAN_NUMBER", "ARRAY_ID", "OBSERVATION_ID", "STATE_ID",
    "BASELINE_REF", "UVW", "UVW2", "DATA", "FLOAT_DATA", "VIDEO_POINT", "LAG_DATA", "SIGMA",
    "SIGMA_SPECTRUM", "WEIGHT", "WEIGHT_SPECTRUM", "FLAG", "FLAG_CATEGORY", "FLAG_ROW", "MODEL_DATA",
    "CORRECTED_WEIGHT_SPECTRUM", "IMAGING_WEIGHT"))
ALLOWED_EXISTING = ("CORRECTED_DATA",)
_COL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def output_column_errors(output_col, data_col="DATA", ms_columns=None, apply_outputs=()):
    """Messages (empty when fine) for ``output_col`` under the module's rule; ``apply_outputs``: the
    existing columns an earlier apply created (core/columns.apply_outputs), which may be written again."""
    col = str(output_col)
    expected = "expected CORRECTED_DATA or a new column name"
    if not _COL_RE.match(col):
        return [f"{col!r} is not a column name (letters, digits, '_'); {expected}"]
    if col in ALLOWED_EXISTING and col != data_col:
        return []
    alias = {"CORRECTED": "CORRECTED_DATA", "DATA": "DATA", "MODEL": "MODEL_DATA"}.get(col.upper())
    if alias and col != alias:          # CASA's datacolumn words (flagdata; akflag): not new column names
        return [f"{col!r} is CASA's datacolumn word for {alias}; as an output column it would create a new "
                f"column named {col!r}; {expected} (e.g. outputcolumn='CORRECTED_DATA')"]
    same = [c for c in list(ALLOWED_EXISTING) + list(ms_columns or [])
            if c.upper() == col.upper() and c != col]
    if same:                            # column names are case-sensitive: a second, near-identical column
        return [f"{col!r} differs from the column {same[0]!r} only in case (column names are case-sensitive: "
                f"it would be a second column); {expected}"]
    if col == data_col:
        return [f"{col!r} would overwrite the data column being corrected; {expected}"]
    if col.upper() in MS_MAIN_COLUMNS or col.endswith("_AKPARTIAL"):
        return [f"{col!r} is a Measurement Set column that apply never overwrites; {expected}"]
    if ms_columns is not None and col in ms_columns and col not in apply_outputs:
        return [f"{col!r} already exists in the MS and is not CORRECTED_DATA; {expected} "
                "(apply never overwrites another column)"]
    return []


def ms_columns(ms):
    """Main-table column names of ``ms``, or None when it cannot be read (reported later, when used)."""
    try:
        from casacore.tables import table

        with table(str(ms), ack=False) as t:
            return t.colnames()
    except Exception:       # noqa: BLE001
        return None


def ms_output_column_errors(output_col, data_col, ms, columns=None):
    """:func:`output_column_errors` against the MS at ``ms`` (its columns, default read from it, and
    the ones an earlier apply created, which may be written again)."""
    from ..core.columns import apply_outputs

    columns = ms_columns(ms) if columns is None else columns
    ours = apply_outputs(ms, [str(output_col)]) if columns else ()
    return output_column_errors(output_col, data_col, columns, ours)


def check_output_column(output_col, data_col, ms, columns=None, param="output_col"):
    """Raise a ParameterError on ``param`` for a bad ``output_col`` of the MS at ``ms``."""
    errs = ms_output_column_errors(output_col, data_col, ms, columns)
    if errs:
        raise ParameterError({param: errs})


def _band(freqs, half):
    f = np.asarray(freqs, float)
    return float(np.min(f) - half), float(np.max(f) + half)


def check_tables(cfg, meta, terms, plan, spwmap=None, tables=None):
    """Errors (AlakazamError) and warnings for applying ``terms`` to ``cfg.ms`` (module doc).

    ``plan``: (field id, DATA_DESC_ID, channels, n_rows) of the apply; ``spwmap``: optional
    {data SPW id: table SPW id}; ``tables``: the table file of each term (a relative MS path recorded
    in an older table is found next to the table, :func:`alakazam.io.hdf5.same_ms`).  akapply's
    parameter check and the YAML preflight report the same errors first (:func:`fit_errors`,
    :mod:`.apply_precheck`).
    """
    from ..io.hdf5 import same_ms

    errors = []
    warned_ms = set()
    tables = list(tables) if tables is not None else [None] * len(terms)
    for term, table in zip(terms, tables):
        errs, missing = fit_errors(cfg.ms, meta, term, [ddid for _, ddid, _, _ in plan], spwmap)
        errors.extend(errs)
        if missing:
            log.warning("%s: antennas %s of %s have no solutions in the table (their data get no "
                        "valid solution)", term.key, ", ".join(missing), cfg.ms)
        # a table solved on several MSs (akcal vis=[...]) records each set's own: another MS only when
        # none of them is this one (a review, session 49: the first set's MS was named)
        srcs = list(dict.fromkeys(str(s.attrs.get("ms", "") or "") for s in term.sets))
        srcs = [x for x in srcs if x]
        if srcs and not any(same_ms(x, table, cfg.ms) for x in srcs):
            src = ", ".join(srcs)
            if src not in warned_ms:
                warned_ms.add(src)
                log.warning("%s: solved on %s, applied to %s (another MS)", term.key, src, cfg.ms)
    if errors:          # (each once: the plan has an entry per field and SPW)
        raise AlakazamError("apply: the solution tables do not fit the MS:\n  "
                            + "\n  ".join(dict.fromkeys(errors)))


def fit_errors(ms, meta, term, ddids, spwmap=None):
    """``(errors, missing)`` for applying ``term`` (its ``key``, ``sets``, ``spwmap``; a set needs only
    ``attrs``, ``freq`` and ``ant_names``) to the DATA_DESC_IDs ``ddids`` of ``ms``: the messages of the
    module doc's frequency, feed-basis and antenna rules, and the data antennas without solutions."""
    errors = []
    names = list(meta.active_names)
    sets = term.sets
    for ddid in dict.fromkeys(ddids):
        spw = meta.spws[ddid]
        tmap = getattr(term, "spwmap", None) or spwmap      # apply's spwmap (calibration/spwmap.py)
        tspw = tmap.get(spw.spw_id, spw.spw_id) if tmap else spw.spw_id
        ss = [s for s in sets if int(s.attrs.get("spw", -1)) == tspw]
        if not ss:
            continue        # reported by run_apply (no solutions for SPW)
        width = float(np.max(np.abs(spw.chan_width))) if len(spw.chan_width) else 0.0
        d_lo, d_hi = _band(spw.freqs, width / 2)
        # a delay imported from a CASA table referenced at 0 Hz carries no band of its own (its
        # "frequency" is the reference): nothing to compare for it
        banded = [s for s in ss if np.size(s.freq) and float(np.min(s.freq)) > 0]
        t_lo = min((_band(s.freq, _half(s))[0] for s in banded), default=d_lo)
        t_hi = max((_band(s.freq, _half(s))[1] for s in banded), default=d_hi)
        tol = 1e-6 * max(abs(d_hi), 1.0)
        # a mapped SPW's band may differ on purpose (calibration/spwmap.py matches bins by position)
        if banded and tspw == spw.spw_id and (t_hi < d_lo - tol or t_lo > d_hi + tol):
            errors.append(f"{term.key}: the table's SPW {tspw} covers {t_lo / 1e9:.6f}-"
                          f"{t_hi / 1e9:.6f} GHz but the data's SPW {spw.spw_id} covers "
                          f"{d_lo / 1e9:.6f}-{d_hi / 1e9:.6f} GHz: no overlap (wrong table or MS?)")
        bases = {str(s.attrs.get("feed_basis")) for s in ss if s.attrs.get("feed_basis")}
        if bases and bases != {spw.feed_basis}:
            errors.append(f"{term.key}: solved with {', '.join(sorted(bases))} feeds but SPW "
                          f"{spw.spw_id} of {ms} has {spw.feed_basis} feeds")
    tnames = set()
    for s in sets:
        tnames.update(s.ant_names)
    common = [a for a in names if a in tnames]
    missing = []
    if tnames and not common:
        errors.append(f"{term.key}: no antenna of the table ({', '.join(sorted(tnames)[:8])}...) is in "
                      f"{ms} ({', '.join(names[:8])}...): wrong table or MS?")
    elif tnames:
        missing = [a for a in names if a not in tnames]
    return errors, missing


def _half(s):
    w = s.attrs.get("freqint_hz")
    try:
        w = float(w)
    except (TypeError, ValueError):
        return 0.0
    return w / 2 if np.isfinite(w) and w > 0 else 0.0
