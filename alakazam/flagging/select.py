"""CASA selection of a flagging run resolved against the MS: rows, channels, correlations, and the
(DATA_DESC_ID, scan) units that are processed, each split into pieces of whole baselines that fit the
memory limit.

Selection semantics (flagdata's): a sample is selected when its row matches field, scan, timerange
and antenna (baselines) and its channel / correlation match spw / correlation.  A DATA_DESC_ID with
none of the selected correlations is skipped (an error only when no DATA_DESC_ID has any).  antenna
and timerange are parsed by :mod:`alakazam.core.msselect`, the parsers akcal/akapply use, so one CASA
string selects the same rows in every task; akflag adds one check of its own: an antenna expression
that selects no baseline of the ANTENNA table is an error (nothing to flag).  uvrange, intent and
observation are :mod:`alakazam.core.rowselect`'s (the parsers and row masks of akcal/akapply).  A
uvrange selects whole rows, as CASA 6.7 flagdata does (measured, tests/test_flag_parity.py): a range in
wavelengths converts |uv| with the SPW's REF_FREQUENCY (|uv| * REF_FREQUENCY / c), not per channel --
unlike akcal, whose solves drop the channels outside the range.  ``autocorr=True`` (mode='manual')
keeps only the auto-correlation rows (ANTENNA1 == ANTENNA2), with every other selection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from ..core import ms_io
from ..core import msselect
from ..core.selection import parse_correlation
from ..errors import AlakazamError, ParameterError

#: bytes held per selected sample while a piece is processed (data as read and a residual / working
#: copy, complex64; per-baseline float32 planes; flags as read, selected and new)
BYTES_PER_SAMPLE = 8 + 8 + 8 + 3
#: bytes per row of small columns (TIME, ANTENNA1/2, SCAN, FIELD, FLAG_ROW, row numbers)
BYTES_PER_ROW = 64

COLUMNS = {"data": ("DATA",), "corrected": ("CORRECTED_DATA",), "residual": ("CORRECTED_DATA", "MODEL_DATA"),
           "residual_data": ("DATA", "MODEL_DATA"), "corrected_residual": ("CORRECTED_DATA", "MODEL_DATA")}


def data_columns(cfg):
    """The MS columns ``cfg.datacolumn`` reads: CASA's flagdata names -- 'residual' is CORRECTED_DATA -
    MODEL_DATA, 'residual_data' DATA - MODEL_DATA (review 54f: alakazam's 'residual' was DATA - MODEL_DATA
    until session 54, so a CASA script flagged another column, silently) -- and with a ``gaintable``
    (DATA corrected on the fly, flagging/preapply.py) 'data' and 'residual' read DATA."""
    if getattr(cfg, "gaintable", None) and cfg.datacolumn in ("data", "residual"):
        return ("DATA", "MODEL_DATA") if cfg.datacolumn == "residual" else ("DATA",)
    return COLUMNS.get(cfg.datacolumn, ())


@dataclass
class Selection:
    meta: ms_io.MSMeta
    field_ids: Optional[List[int]]               # None = all
    scans: Optional[List[int]]                   # None = all
    ddids: Dict[int, tuple]                      # ddid -> (chans (n,) int, corrs (m,) int)
    antenna: Optional[msselect.AntennaSelection]  # None = all baselines
    time_ranges: Optional[list]                  # msselect.parse_timerange's [(t0, t1, point)]; None = all
    rowsel: Optional[object] = None              # rowselect.RowSelection of uvrange/intent/observation
    autocorr: bool = False                       # only ANTENNA1 == ANTENNA2


def resolve(cfg, keys_errors=None) -> Selection:
    """Parse every selection string of ``cfg`` against its MS.  All errors are collected: into
    ``keys_errors`` ({key: message}, then None is returned) or raised as one ParameterError."""
    errs = {} if keys_errors is None else keys_errors
    meta = ms_io.read_meta(cfg.ms)

    def attempt(key, fn, *a):
        try:
            return fn(*a)
        except AlakazamError as e:
            msg = str(e)
            errs[key] = msg[len(key) + 2:] if msg.startswith(key + ": ") else msg
            return None

    field_ids = None if not cfg.field.strip() else attempt("field", ms_io.resolve_fields, meta, cfg.field)
    scans = attempt("scan", ms_io.resolve_scans, meta, cfg.scan)
    spw = attempt("spw", ms_io.resolve_spw, meta, cfg.spw)
    antenna = None if not cfg.antenna.strip() else attempt("antenna", _parse_antenna, cfg.antenna,
                                                           meta.ant_names)
    from ..core import rowselect

    text = {k: getattr(cfg, k) for k in ("uvrange", "intent", "observation") if getattr(cfg, k).strip()}
    parsed = [attempt(k, rowselect.build, meta, {k: v}) for k, v in text.items()]   # each error said
    rowsel = rowselect.build(meta, text, per_channel=False) if text and all(parsed) else None
    if rowsel is not None:         # flagdata converts wavelengths at the SPW's REF_FREQUENCY, per row
        rowsel.freqs = {d: np.asarray([s.ref_freq], float) for d, s in meta.spws.items()}
    t_first = min((s.t_start for s in meta.scans), default=0.0)
    ranges = None if not cfg.timerange.strip() else attempt("timerange", msselect.parse_timerange,
                                                            cfg.timerange, t_first)
    ddids = {}
    first_err = None
    # (with a bad spw the correlation is still checked, against every DATA_DESC_ID)
    for d, chans in (spw or {d: np.arange(len(s.freqs)) for d, s in meta.spws.items()}).items():
        try:
            corrs = parse_correlation(cfg.correlation, meta.spws[d].corr_types)
        except AlakazamError as e:
            first_err = first_err or str(e)
            continue
        if len(corrs):
            ddids[d] = (np.asarray(chans, np.int64), np.asarray(corrs, np.int64))
    if not ddids and meta.spws:
        msg = first_err or f"correlation: {cfg.correlation!r} selects no correlation"
        errs["correlation"] = msg[len("correlation: "):] if msg.startswith("correlation: ") else msg
    if cfg.mode in ("clip", "aoflagger", "mad", "tfcrop", "rflag"):
        need = data_columns(cfg)
        missing = [c for c in need if c not in meta.columns]
        if missing:
            errs["datacolumn"] = (f"{cfg.datacolumn!r} needs column(s) {', '.join(missing)}, not in "
                                  f"{cfg.ms}" + (" ('residual' is CORRECTED_DATA - MODEL_DATA, as CASA's "
                                                 "flagdata; 'residual_data' is DATA - MODEL_DATA, what "
                                                 "alakazam's 'residual' was before session 54)"
                                                 if cfg.datacolumn == "residual" else ""))
    if cfg.mode == "rflag" and keys_errors is None:     # [[field, spw, dev], ...] rows the MS lacks:
        import logging                                   # used for nothing (flagdata too), said

        from .rflag import parse_dev

        spw_ids = sorted({s.spw_id for s in meta.spws.values()})
        for key in ("timedev", "freqdev"):
            try:
                _, table_ = parse_dev(getattr(cfg, key), key)
            except ValueError:
                continue                     # (the form is reported by the configuration's checks)
            n_fld = len(meta.fields)
            bad = [[*k, v] for k, v in table_.items() if not 0 <= k[0] < n_fld or k[1] not in spw_ids]
            if bad:
                logging.getLogger("alakazam.flag").warning(
                    "%s: rows %s name no FIELD_ID (0-%d) / SPECTRAL_WINDOW id (%s) of %s: not used", key,
                    bad, n_fld - 1, spw_ids, cfg.ms)
    if keys_errors is not None:
        return None
    if errs:
        raise ParameterError(errs, task="akflag")
    # autocorr is flagdata's mode='manual' sub-parameter: other modes ignore it (as CASA 6.7; the engine
    # says so)
    autocorr = bool(cfg.autocorr) and cfg.mode == "manual"
    return Selection(meta, field_ids, scans, ddids, antenna, ranges or None, rowsel, autocorr)


def _parse_antenna(text, names):
    """msselect's AntennaSelection; an error when it selects no baseline (i <= j) of ``names``."""
    asel = msselect.parse_antenna(text, names)
    i, j = np.triu_indices(len(names))
    if asel is not None and not asel.mask(i, j).any():
        raise AlakazamError(f"antenna: {text!r} selects no baseline")
    return asel


@dataclass
class Unit:
    """Selected rows of one DATA_DESC_ID and scan (sorted MS row numbers) and their small columns."""

    ddid: int
    scan: int
    rows: np.ndarray
    time: np.ndarray
    ant1: np.ndarray          # ANTENNA ids
    ant2: np.ndarray
    field_id: np.ndarray
    #: (OBSERVATION_ID, ARRAY_ID) of the rows when the unit is split by them (:data:`BY_OBSERVATION`)
    obs_array: tuple = ()

    def pieces(self, max_rows):
        """Row-index arrays (into this unit) of whole baselines, each at most ``max_rows`` rows (a
        baseline longer than that is one piece of its own)."""
        if len(self.rows) <= max_rows:
            yield np.arange(len(self.rows))
            return
        code = self.ant1.astype(np.int64) * 100000 + self.ant2
        order = np.argsort(code, kind="stable")
        u, start, counts = np.unique(code[order], return_index=True, return_counts=True)
        cur, n = [], 0
        for s, c in zip(start, counts):
            if cur and n + c > max_rows:
                yield np.sort(np.concatenate(cur))
                cur, n = [], 0
            cur.append(order[s:s + c])
            n += c
        if cur:
            yield np.sort(np.concatenate(cur))


#: modes whose flagdata chunks are per OBSERVATION_ID and ARRAY_ID too (measured, CASA 6.7: a scan
#: number repeated in another observation gives the flags of distinct scans); quack's are not
BY_OBSERVATION = ("rflag", "tfcrop", "extend")


def units(t, sel: Selection, ddid, by_observation=False) -> List[Unit]:
    """The (ddid, scan) units of the selection -- (ddid, OBSERVATION_ID, ARRAY_ID, scan) with
    ``by_observation`` (:data:`BY_OBSERVATION`); ``t`` an open casacore table of the MS."""
    rows = ms_io.row_numbers(sel.meta.path, ddid, sel.field_ids, sel.scans, rowsel=sel.rowsel)
    if len(rows) == 0:
        return []
    q = t.selectrows(rows)
    try:
        time = q.getcol("TIME")
        a1 = q.getcol("ANTENNA1")
        a2 = q.getcol("ANTENNA2")
        interval = q.getcol("INTERVAL") if sel.time_ranges is not None else None
        scan = q.getcol("SCAN_NUMBER")
        fld = q.getcol("FIELD_ID")
        if by_observation:
            oa = q.getcol("OBSERVATION_ID").astype(np.int64) * 100000 + q.getcol("ARRAY_ID")
        else:
            oa = np.zeros(len(rows), np.int64)
    finally:
        q.close()
    keep = np.ones(len(rows), bool)
    if sel.time_ranges is not None:
        keep &= msselect.time_mask(sel.time_ranges, time, interval)
    if sel.antenna is not None:
        keep &= sel.antenna.mask(a1, a2)
    if sel.autocorr:
        keep &= a1 == a2
    out = []
    for o in np.unique(oa[keep]):
        for s in np.unique(scan[keep & (oa == o)]):
            m = keep & (scan == s) & (oa == o)
            out.append(Unit(int(ddid), int(s), rows[m], time[m], a1[m], a2[m], fld[m],
                            (int(o // 100000), int(o % 100000)) if by_observation else ()))
    return out
