"""Measurement Set access with python-casacore: metadata, selections and chunked reads.

Rows are selected with TaQL on plain columns (DATA_DESC_ID, FIELD_ID, SCAN_NUMBER); the mscal
functions are avoided (``mscal.scan()``/``mscal.time()`` segfault in python-casacore 3.8.1).  Data stay
in the native (row, chan, corr) layout.  The MS is opened read-only except by :func:`ensure_column`
and :func:`write_column`.

Antennas: only *active* antennas (those appearing in ANTENNA1/ANTENNA2) are processed; ``ant_map``
maps ANTENNA ids to active indices 0..n_active-1 (ascending ANTENNA order) and reads return active
indices.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from ..errors import AlakazamError

STOKES_NAMES = {5: "RR", 6: "RL", 7: "LR", 8: "LL", 9: "XX", 10: "XY", 11: "YX", 12: "YY"}


@dataclass
class SpwInfo:
    ddid: int
    spw_id: int
    freqs: np.ndarray
    chan_width: np.ndarray
    ref_freq: float
    name: str
    corr_types: List[str]
    feed_basis: str
    n_corr: int


@dataclass
class FieldInfo:
    id: int
    name: str
    ra: float
    dec: float


@dataclass
class ScanInfo:
    scan_number: int
    field_id: int
    t_start: float
    t_end: float
    ddids: set


@dataclass
class MSMeta:
    path: str
    ant_names: List[str]
    ant_positions: np.ndarray
    active_ants: np.ndarray
    ant_map: np.ndarray
    spws: Dict[int, SpwInfo]
    fields: List[FieldInfo]
    scans: List[ScanInfo]
    observatory: np.ndarray
    telescope_name: str
    receptor_angle: np.ndarray
    interval: float
    columns: List[str] = field(default_factory=list)

    @property
    def active_names(self) -> List[str]:
        return [self.ant_names[a] for a in self.active_ants]

    def field_by_name(self, name) -> FieldInfo:
        for f in self.fields:
            if f.name == name:
                return f
        raise AlakazamError(f"field {name!r} not in {self.path}; available: "
                            f"{', '.join(f.name for f in self.fields)}")


def _table(path, **kw):
    from casacore.tables import table

    return table(path, ack=False, **kw)


def check_ms(ms):
    if not ms or not os.path.isdir(str(ms)):
        raise AlakazamError(f"vis/ms: {ms!r} does not exist (expected a Measurement Set directory)")
    if not os.path.exists(os.path.join(str(ms), "table.dat")) or \
            not os.path.isdir(os.path.join(str(ms), "ANTENNA")):
        raise AlakazamError(f"vis/ms: {ms!r} is not a Measurement Set (no table.dat / ANTENNA)")


def read_meta(ms) -> MSMeta:
    """Metadata of an MS (see :class:`MSMeta`)."""
    check_ms(ms)
    ms = str(ms)
    with _table(ms) as t:
        cols = t.colnames()
        a1 = t.getcol("ANTENNA1")
        a2 = t.getcol("ANTENNA2")
        scan = t.getcol("SCAN_NUMBER")
        fld = t.getcol("FIELD_ID")
        ddid = t.getcol("DATA_DESC_ID")
        tim = t.getcol("TIME")
        interval = float(np.median(t.getcol("INTERVAL"))) if t.nrows() else 0.0
    with _table(ms + "::ANTENNA") as t:
        names = list(t.getcol("NAME"))
        positions = t.getcol("POSITION")
    with _table(ms + "::SPECTRAL_WINDOW") as t:
        spw_freq = [t.getcell("CHAN_FREQ", i) for i in range(t.nrows())]
        spw_width = [t.getcell("CHAN_WIDTH", i) for i in range(t.nrows())]
        spw_ref = t.getcol("REF_FREQUENCY")
        spw_name = list(t.getcol("NAME")) if "NAME" in t.colnames() else [""] * t.nrows()
    with _table(ms + "::POLARIZATION") as t:
        corr = [list(t.getcell("CORR_TYPE", i)) for i in range(t.nrows())]
    with _table(ms + "::DATA_DESCRIPTION") as t:
        dd_spw = t.getcol("SPECTRAL_WINDOW_ID")
        dd_pol = t.getcol("POLARIZATION_ID")
    with _table(ms + "::FIELD") as t:
        fnames = list(t.getcol("NAME"))
        pdir = t.getcol("PHASE_DIR")
    receptor = np.zeros((len(names), 2))
    try:
        with _table(ms + "::FEED") as t:
            if t.nrows():
                ra = t.getcol("RECEPTOR_ANGLE")
                for aid, ang in zip(t.getcol("ANTENNA_ID"), ra):
                    if 0 <= aid < len(names):
                        receptor[aid] = ang[:2]
    except RuntimeError:
        pass
    tel = ""
    try:
        with _table(ms + "::OBSERVATION") as t:
            if t.nrows():
                tel = str(t.getcell("TELESCOPE_NAME", 0))
    except RuntimeError:
        pass
    active = np.unique(np.concatenate([a1, a2])) if len(a1) else np.zeros(0, int)
    amap = -np.ones(len(names), np.int64)
    amap[active] = np.arange(len(active))
    spws = {}
    for d in np.unique(ddid):
        s = int(dd_spw[d])
        types = [STOKES_NAMES.get(int(c), str(c)) for c in corr[int(dd_pol[d])]]
        basis = "circular" if types and types[0][0] in "RL" else "linear"
        spws[int(d)] = SpwInfo(int(d), s, np.asarray(spw_freq[s], float), np.asarray(spw_width[s], float),
                               float(spw_ref[s]), str(spw_name[s]), types, basis, len(types))
    fields = [FieldInfo(i, str(n), float(pdir[i, 0, 0]), float(pdir[i, 0, 1])) for i, n in enumerate(fnames)]
    scans = []
    key = scan.astype(np.int64) * 100000 + fld
    for k in np.unique(key):
        m = key == k
        scans.append(ScanInfo(int(k // 100000), int(k % 100000), float(tim[m].min()), float(tim[m].max()),
                              set(int(x) for x in np.unique(ddid[m]))))
    scans.sort(key=lambda s: (s.t_start, s.scan_number))
    obs = None
    if tel:
        try:
            from casacore.measures import measures

            me = measures()
            v = me.measure(me.observatory(tel), "ITRF")
            r, lat, lon = v["m2"]["value"], v["m1"]["value"], v["m0"]["value"]
            obs = np.array([r * np.cos(lat) * np.cos(lon), r * np.cos(lat) * np.sin(lon), r * np.sin(lat)])
        except Exception:
            obs = None
    if obs is None:
        obs = positions[active].mean(axis=0) if len(active) else positions.mean(axis=0)
    return MSMeta(ms, [str(n) for n in names], positions, active, amap, spws, fields, scans, obs, tel,
                  receptor, interval, cols)


def check_columns(ms, names):
    with _table(str(ms)) as t:
        have = t.colnames()
    for n in names:
        if n and n not in have:
            hint = (" -- fill it with a model first (e.g. CASA setjy / ft, or your own predict)"
                    if n == "MODEL_DATA" else "")
            raise AlakazamError(f"column {n!r} is not in {ms}{hint}; columns present: "
                                f"{', '.join(c for c in have if 'DATA' in c)}")


# --------------------------------------------------------------------------------------------------
# selections
# --------------------------------------------------------------------------------------------------
def resolve_fields(meta: MSMeta, sel) -> List[int]:
    """Field ids from names, ids, 'a~b' ranges or wildcards (list or comma string); '' = all."""
    if sel is None or sel == "" or sel == []:
        return sorted({s.field_id for s in meta.scans})
    items = sel if isinstance(sel, (list, tuple)) else str(sel).split(",")
    out = []
    names = [f.name for f in meta.fields]
    for it in items:
        it = str(it).strip()
        if not it:
            continue
        if it in names:
            out.append(names.index(it))
        elif any(c in it for c in "*?["):
            m = [i for i, n in enumerate(names) if fnmatch.fnmatchcase(n, it)]
            if not m:
                raise AlakazamError(f"field: pattern {it!r} matches no field; available: {', '.join(names)}")
            out.extend(m)
        elif "~" in it and all(p.strip().isdigit() for p in it.split("~")):
            a, b = (int(p) for p in it.split("~"))
            out.extend(range(a, b + 1))
        elif it.isdigit() and int(it) < len(names):
            out.append(int(it))
        else:
            raise AlakazamError(f"field: {it!r} is not a field of {meta.path}; available: {', '.join(names)}")
    bad = [i for i in out if i >= len(names)]
    if bad:
        raise AlakazamError(f"field: ids {bad} out of range 0..{len(names) - 1}")
    return list(dict.fromkeys(out))


def resolve_scans(meta: MSMeta, sel) -> Optional[List[int]]:
    """Scan numbers from CASA scan syntax ('1~5,7', '<5', '>3'); '' = None (all)."""
    from .selection import parse_scans

    if sel is None or str(sel).strip() == "":
        return None
    have = sorted({s.scan_number for s in meta.scans})
    out = parse_scans(str(sel), have)
    if not out:
        raise AlakazamError(f"scan: {sel!r} selects no scan; scans present: {have[0]}~{have[-1]}")
    return out


def resolve_spw(meta: MSMeta, sel) -> Dict[int, np.ndarray]:
    """DATA_DESC_ID -> selected channel indices, from CASA SPW syntax ('' = all)."""
    from .selection import parse_spw

    by_spw = {}
    for d, s in meta.spws.items():
        by_spw.setdefault(s.spw_id, []).append(d)
    if sel is None or str(sel).strip() in ("", "*"):
        return {d: np.arange(len(s.freqs)) for d, s in sorted(meta.spws.items())}
    out = {}
    for spw_id, chans in parse_spw(str(sel), {s: len(meta.spws[ds[0]].freqs) for s, ds in by_spw.items()},
                                   {s: meta.spws[ds[0]].freqs for s, ds in by_spw.items()}):
        for d in by_spw[spw_id]:
            out[d] = np.asarray(chans, np.int64)
    if not out:
        raise AlakazamError(f"spw: {sel!r} selects no data")
    return dict(sorted(out.items()))


def resolve_antenna(meta: MSMeta, ref) -> int:
    """Active index of an antenna given by name (first) or ANTENNA-table index."""
    names = meta.ant_names
    r = str(ref).strip()
    if r in names:
        aid = names.index(r)
    elif r.lstrip("-").isdigit() and 0 <= int(r) < len(names):
        aid = int(r)
    else:
        raise AlakazamError(f"ref_ant/refant: {ref!r} is not an antenna of {meta.path}; antennas with data: "
                            f"{', '.join(meta.active_names)}")
    if meta.ant_map[aid] < 0:
        raise AlakazamError(f"ref_ant/refant: antenna {names[aid]!r} has no data in {meta.path}; antennas "
                            f"with data: {', '.join(meta.active_names)}")
    return int(meta.ant_map[aid])


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------
@dataclass
class Chunk:
    """Rows of one DATA_DESC_ID in native layout.

    data, model : (row, chan, corr) as stored (model None when not read); flag (row, chan, corr) =
    FLAG | FLAG_ROW; weight (row, chan, corr); time, ant1, ant2 (active indices), field_id, scan,
    rownr (MS row numbers) : (row,).
    """

    data: np.ndarray
    model: Optional[np.ndarray]
    flag: np.ndarray
    weight: np.ndarray
    time: np.ndarray
    ant1: np.ndarray
    ant2: np.ndarray
    field_id: np.ndarray
    scan: np.ndarray
    rownr: np.ndarray

    @property
    def n_row(self) -> int:
        return len(self.time)

    def take(self, sel) -> "Chunk":
        return Chunk(self.data[sel], None if self.model is None else self.model[sel], self.flag[sel],
                     self.weight[sel], self.time[sel], self.ant1[sel], self.ant2[sel],
                     self.field_id[sel], self.scan[sel], self.rownr[sel])

    def four_corr(self, corr_types):
        """(data, model, flag, weight) with 4 correlations pp, pq, qp, qq (see :func:`to_four_corr`)."""
        d, f, w = to_four_corr(self.data, self.flag, self.weight, corr_types)
        m = None
        if self.model is not None:
            m, _, _ = to_four_corr(self.model, self.flag, self.weight, corr_types)
        return d, m, f, w


def to_four_corr(data, flag, weight, corr_types):
    """Expand 1/2-correlation data (pp, qq) to 4 (pq, qp zero and flagged); 4 pass through."""
    n = data.shape[-1]
    if n == 4:
        return data, flag, weight
    order = {"XX": 0, "XY": 1, "YX": 2, "YY": 3, "RR": 0, "RL": 1, "LR": 2, "LL": 3}
    shape = data.shape[:-1] + (4,)
    d = np.zeros(shape, data.dtype)
    f = np.ones(shape, bool)
    w = np.zeros(shape, weight.dtype)
    for i, c in enumerate(corr_types):
        k = order[c]
        d[..., k] = data[..., i]
        f[..., k] = flag[..., i]
        w[..., k] = weight[..., i]
    return d, f, w


def _where(ddid, field_ids, scans):
    w = [f"DATA_DESC_ID=={int(ddid)}"]
    if field_ids is not None:
        w.append("FIELD_ID IN [%s]" % ",".join(str(int(f)) for f in field_ids))
    if scans is not None:
        w.append("SCAN_NUMBER IN [%s]" % ",".join(str(int(s)) for s in scans))
    return " AND ".join(w)


def row_numbers(ms, ddid, field_ids, scans=None) -> np.ndarray:
    from casacore.tables import taql

    with _table(str(ms)) as t:
        q = taql(f"SELECT ROWID() AS R FROM $t WHERE {_where(ddid, field_ids, scans)}")
        r = q.getcol("R") if q.nrows() else np.zeros(0, np.int64)
        q.close()
    return np.asarray(r, np.int64)


def read_times(ms, rows) -> np.ndarray:
    """TIME of the given row numbers."""
    with _table(str(ms)) as t:
        if len(rows) == 0:
            return np.zeros(0)
        q = t.selectrows(np.asarray(rows))
        tm = q.getcol("TIME")
        q.close()
    return tm


def row_count(ms, ddid, field_ids, scans=None) -> int:
    return len(row_numbers(ms, ddid, field_ids, scans))


def _read_rows_by_number(ms, rows, ddid, chans, data_col, model_col, meta=None):
    from casacore.tables import taql

    with _table(str(ms)) as t:
        if len(rows) == 0:
            q = None
        else:
            q = t.selectrows(rows)
        cols = t.colnames()
        if q is None:
            n_c = 0
            empty = np.zeros((0, 0, 0))
            return Chunk(empty.astype(np.complex64), None, empty.astype(bool), empty, np.zeros(0),
                         np.zeros(0, int), np.zeros(0, int), np.zeros(0, int), np.zeros(0, int),
                         np.zeros(0, int))
        data = q.getcol(data_col)
        model = q.getcol(model_col) if model_col else None
        flag = q.getcol("FLAG") | q.getcol("FLAG_ROW")[:, None, None]
        ws = None
        if "WEIGHT_SPECTRUM" in cols:
            try:
                ws = q.getcol("WEIGHT_SPECTRUM")
            except RuntimeError:
                ws = None
        if ws is None or ws.shape != data.shape:
            ws = np.broadcast_to(q.getcol("WEIGHT")[:, None, :], data.shape)
        time = q.getcol("TIME")
        a1 = q.getcol("ANTENNA1")
        a2 = q.getcol("ANTENNA2")
        fld = q.getcol("FIELD_ID")
        scan = q.getcol("SCAN_NUMBER")
        q.close()
    if chans is not None and len(chans) != data.shape[1]:
        data = data[:, chans]
        flag = flag[:, chans]
        ws = ws[:, chans]
        if model is not None:
            model = model[:, chans]
    return data, model, flag, np.ascontiguousarray(ws), time, a1, a2, fld, scan


def read_rows(ms, ddid, field_ids, scans=None, chans=None, data_col="DATA", model_col="MODEL_DATA",
              start=0, nrow=None, meta=None, rows=None) -> Chunk:
    """Read the selected rows (or rows[start:start+nrow] of the selection) as a :class:`Chunk`."""
    if meta is None:
        meta = read_meta(ms)
    if rows is None:
        rows = row_numbers(ms, ddid, field_ids, scans)
    rows = rows[start:start + nrow if nrow is not None else None]
    if len(rows) == 0:
        n_c = len(chans) if chans is not None else len(meta.spws[ddid].freqs)
        nc = meta.spws[ddid].n_corr
        return Chunk(np.zeros((0, n_c, nc), np.complex64), None if not model_col else
                     np.zeros((0, n_c, nc), np.complex64), np.zeros((0, n_c, nc), bool),
                     np.zeros((0, n_c, nc), np.float32), np.zeros(0), np.zeros(0, np.int64),
                     np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                     np.zeros(0, np.int64))
    data, model, flag, ws, time, a1, a2, fld, scan = _read_rows_by_number(ms, rows, ddid, chans, data_col,
                                                                          model_col)
    amap = meta.ant_map
    return Chunk(data, model, flag, ws, time, amap[a1], amap[a2], fld, scan, np.asarray(rows, np.int64))


def iter_chunks(ms, ddid, field_ids, scans=None, chans=None, data_col="DATA", model_col="MODEL_DATA",
                max_rows=None, meta=None):
    """Yield :class:`Chunk` objects of at most ``max_rows`` rows covering the selection."""
    if meta is None:
        meta = read_meta(ms)
    rows = row_numbers(ms, ddid, field_ids, scans)
    step = len(rows) if not max_rows else int(max_rows)
    for s in range(0, len(rows), max(step, 1)):
        yield read_rows(ms, ddid, field_ids, chans=chans, data_col=data_col, model_col=model_col, meta=meta,
                        rows=rows[s:s + step])


# --------------------------------------------------------------------------------------------------
# writing (the only read-write access)
# --------------------------------------------------------------------------------------------------
def ensure_column(ms, name, like="DATA"):
    """Create column ``name`` with the description of ``like`` if it does not exist."""
    from casacore.tables import makecoldesc

    with _table(str(ms), readonly=False) as t:
        if name in t.colnames():
            return False
        desc = t.getcoldesc(like)
        dminfo = t.getdminfo(like)
        dminfo["NAME"] = f"{name}_dm"
        cd = makecoldesc(name, desc)
        t.addcols(cd, dminfo)
    return True


def write_column(ms, name, rownr, values, chans=None):
    """Write values (row, chan, corr) to rows ``rownr`` of column ``name`` (channel subset optional)."""
    with _table(str(ms), readonly=False) as t:
        rownr = np.asarray(rownr)
        if len(rownr) == 0:
            return
        # contiguous runs -> putcol; otherwise per row
        q = t.selectrows(rownr)
        if chans is not None:
            full = q.getcol(name)
            full[:, chans] = values
            values = full
        q.putcol(name, values)
        q.close()
