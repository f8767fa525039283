"""Row selection by antenna, uvrange, timerange, intent and observation (CASA semantics).

:func:`build` parses the selection strings of a solve or apply block (parsers in
:mod:`alakazam.core.msselect`) against the MS's sub-tables into a :class:`RowSelection`.  The MS
reader applies it where rows are chosen (:func:`alakazam.core.ms_io.row_numbers`): OBSERVATION_ID
and STATE_ID (intent) and the outer time bounds go into the TaQL WHERE clause (plain columns, no
mscal functions); antenna, uv distance and the exact time ranges are a numpy mask on ANTENNA1,
ANTENNA2, TIME, INTERVAL and UVW of the rows TaQL returned.

uvrange in wavelengths is a per-channel criterion (|uv| * nu / c): a row is kept when at least one of
its channels is inside the range, and when solving, :func:`alakazam.core.ms_io.read_rows` flags the
channels outside it (flagged data carry zero weight in every solver).  akapply selects whole rows
with the same rule and corrects every channel of a selected row (``per_channel=False``).

:func:`restrict_meta` replaces the metadata's scan list by the scans, fields, DATA_DESC_IDs and time
spans that still have selected rows, so solution intervals are planned on the selected data only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional

import numpy as np

from . import msselect

#: keys shared by the task parameters and the YAML blocks (same names)
SELECT_KEYS = ("antenna", "uvrange", "timerange", "intent", "observation")


@dataclass
class RowSelection:
    text: dict
    antenna: Optional[msselect.AntennaSelection] = None
    uv: Optional[list] = None
    time: Optional[list] = None
    states: Optional[np.ndarray] = None
    observations: Optional[List[int]] = None
    per_channel: bool = True
    freqs: Optional[dict] = None          # DATA_DESC_ID -> channel frequencies (Hz)

    @property
    def needs_mask(self) -> bool:
        return self.antenna is not None or self.uv is not None or self.time is not None

    @property
    def chan_uv(self) -> bool:
        """uv ranges in wavelengths that the reader turns into channel flags."""
        return self.per_channel and self.uv is not None and any(r[2] == "lambda" for r in self.uv)

    def taql(self) -> str:
        """Extra TaQL WHERE terms on plain columns ('' for none)."""
        w = []
        if self.observations is not None:
            w.append("OBSERVATION_ID IN [%s]" % ",".join(str(int(o)) for o in self.observations))
        if self.states is not None:
            w.append("STATE_ID IN [%s]" % ",".join(str(int(s)) for s in self.states))
        if self.time is not None:
            lo = min(r[0] for r in self.time)
            hi = max(r[1] for r in self.time)
            pad = 86400.0              # single times are matched within INTERVAL/2 (numpy mask below)
            if np.isfinite(lo):
                w.append(f"TIME >= {float(lo - pad)!r}")
            if np.isfinite(hi):
                w.append(f"TIME <= {float(hi + pad)!r}")
        return " AND ".join(w)

    def row_mask(self, cols) -> np.ndarray:
        """(row,) keep-mask from columns ``cols`` (ANTENNA1, ANTENNA2, TIME, INTERVAL, and UVW and
        DATA_DESC_ID for uv ranges)."""
        n = len(cols["TIME"])
        m = np.ones(n, bool)
        if self.antenna is not None:
            m &= self.antenna.mask(cols["ANTENNA1"], cols["ANTENNA2"])
        if self.time is not None:
            m &= msselect.time_mask(self.time, cols["TIME"], cols.get("INTERVAL"))
        if self.uv is not None:
            dd = np.asarray(cols["DATA_DESC_ID"])
            keep = np.zeros(n, bool)
            for d in np.unique(dd):
                sel = dd == d
                rows, _ = msselect.uv_masks(self.uv, cols["UVW"][sel], self.freqs[int(d)])
                keep[sel] = rows
            m &= keep
        return m

    def chan_mask(self, uvw, freqs) -> Optional[np.ndarray]:
        """(row, chan) keep-mask for uv ranges in wavelengths (None when not per channel)."""
        if not self.chan_uv:
            return None
        return msselect.uv_masks(self.uv, uvw, freqs)[1]


def _nonempty(v):
    return v is not None and str(v).strip() != ""


def build(meta, select: dict, per_channel=True) -> Optional[RowSelection]:
    """RowSelection for ``select`` ({key: string} for :data:`SELECT_KEYS`; '' entries ignored) on the
    MS of ``meta``; None when nothing is selected beyond field/spw/scan."""
    from .ms_io import main_table

    sel = {k: str(v).strip() for k, v in (select or {}).items() if k in SELECT_KEYS and _nonempty(v)}
    if not sel:
        return None
    rs = RowSelection(dict(sel), per_channel=per_channel,
                      freqs={d: np.asarray(s.freqs, float) for d, s in meta.spws.items()})
    if "antenna" in sel:
        rs.antenna = msselect.parse_antenna(sel["antenna"], meta.ant_names)
    if "uvrange" in sel:
        rs.uv = msselect.parse_uvrange(sel["uvrange"])
    if "timerange" in sel:
        t_first = min((s.t_start for s in meta.scans), default=0.0)
        rs.time = msselect.parse_timerange(sel["timerange"], t_first)
    if "intent" in sel:
        modes = []
        try:
            with main_table(meta.path + "::STATE") as t:
                modes = [str(x) for x in t.getcol("OBS_MODE")] if t.nrows() else []
        except RuntimeError:
            modes = []
        rs.states = msselect.parse_intent(sel["intent"], modes)
    if "observation" in sel:
        with main_table(meta.path + "::OBSERVATION") as t:
            have = list(range(t.nrows()))
        rs.observations = msselect.parse_observation(sel["observation"], have)
    return rs


def select_rows(t, rows, rowsel: RowSelection) -> np.ndarray:
    """The subset of MS row numbers ``rows`` (of the open table ``t``) kept by ``rowsel``'s mask."""
    if not rowsel.needs_mask or len(rows) == 0:
        return rows
    q = t.selectrows(np.asarray(rows))
    names = ["ANTENNA1", "ANTENNA2", "TIME", "INTERVAL", "DATA_DESC_ID"]
    if rowsel.uv is not None:
        names.append("UVW")
    cols = {c: q.getcol(c) for c in names}
    q.close()
    return rows[rowsel.row_mask(cols)]


def uv_channel_flags(ms, rows, rowsel: RowSelection, ddid, chans=None) -> np.ndarray:
    """(row, chan) True where a channel of ``rows`` lies outside the uv range in wavelengths
    (channels ``chans`` of DATA_DESC_ID ``ddid``; all channels when None)."""
    from .ms_io import main_table

    with main_table(str(ms)) as t:
        q = t.selectrows(np.asarray(rows))
        uvw = q.getcol("UVW")
        q.close()
    f = rowsel.freqs[int(ddid)]
    if chans is not None:
        f = f[np.asarray(chans)]
    return ~rowsel.chan_mask(uvw, f)


def restrict_meta(meta, rowsel: Optional[RowSelection]):
    """``meta`` with ``scans`` recomputed over the selected rows (same object when ``rowsel`` is None).

    Raises AlakazamError naming the selection when no row is left."""
    from casacore.tables import taql

    from ..errors import AlakazamError
    from .ms_io import ScanInfo, main_table

    if rowsel is None:
        return meta
    with main_table(meta.path) as t:
        w = rowsel.taql()
        q = taql("SELECT ROWID() AS R FROM $t" + (f" WHERE {w}" if w else ""))
        rows = np.asarray(q.getcol("R") if q.nrows() else np.zeros(0, np.int64), np.int64)
        q.close()
        rows = select_rows(t, rows, rowsel)
        if len(rows) == 0:
            raise AlakazamError(
                "selection: " + ", ".join(f"{k}={v!r}" for k, v in rowsel.text.items()) +
                f" selects no rows of {meta.path}; check it with 'alakazam info {meta.path}' (listobs)")
        q = t.selectrows(rows)
        scan, fld, dd, tm, ob = (q.getcol(c) for c in ("SCAN_NUMBER", "FIELD_ID", "DATA_DESC_ID", "TIME",
                                                       "OBSERVATION_ID"))
        q.close()
    key = scan.astype(np.int64) * 100000 + fld
    scans = []
    for k in np.unique(key):
        m = key == k
        scans.append(ScanInfo(int(k // 100000), int(k % 100000), float(tm[m].min()), float(tm[m].max()),
                              set(int(x) for x in np.unique(dd[m])), set(int(x) for x in np.unique(ob[m]))))
    scans.sort(key=lambda s: (s.t_start, s.scan_number))
    return replace(meta, scans=scans)
