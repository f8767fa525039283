"""Measurement Set access with python-casacore: metadata, selections and chunked reads.

Rows are selected with TaQL on plain columns (DATA_DESC_ID, FIELD_ID, SCAN_NUMBER); the mscal
functions are avoided (``mscal.scan()``/``mscal.time()`` segfault in python-casacore 3.8.1).  Data stay
in the native (row, chan, corr) layout.  The MS is opened read-only here; :func:`ensure_column` and
:func:`write_column` are the writes of the MS handle (:mod:`alakazam.core.ms`) called by path.

Antennas: only *active* antennas (those appearing in ANTENNA1/ANTENNA2) are processed; ``ant_map``
maps ANTENNA ids to active indices 0..n_active-1 (ascending ANTENNA order) and reads return active
indices.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from ..errors import AlakazamError

STOKES_NAMES = {1: "I", 2: "Q", 3: "U", 4: "V", 5: "RR", 6: "RL", 7: "LR", 8: "LL",
                9: "XX", 10: "XY", 11: "YX", 12: "YY"}


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
    #: (n_ant, 2) RECEPTOR_ANGLE of each antenna's FEED row for this SPW (else its SPECTRAL_WINDOW_ID -1
    #: row; rad); None: use MSMeta.receptor_angle (:func:`receptor_angles`)
    receptor_angle: Optional[np.ndarray] = None


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
    #: OBSERVATION_IDs of the scan's rows: more than one when a concatenated MS restarts its scan numbers
    observations: set = field(default_factory=set)


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
    #: SPW ids (SPECTRAL_WINDOW rows) without a row in the main table
    spws_without_data: List[int] = field(default_factory=list)
    #: {SPW id: [(antenna name, [angles of feed 0, rad])]}: FEED rows of one antenna and SPW (its own or
    #: -1) that disagree in RECEPTOR_ANGLE (time-dependent rows): the parallactic angle is refused there
    receptor_conflicts: Dict[int, list] = field(default_factory=dict)
    #: ANTENNA MOUNT per ANTENNA row, upper case and stripped ('' where the column is missing): how the
    #: parallactic angle turns each antenna's feeds (jones/parang.mount_kind)
    ant_mounts: List[str] = field(default_factory=list)

    @property
    def active_names(self) -> List[str]:
        return [self.ant_names[a] for a in self.active_ants]

    @property
    def active_mounts(self) -> List[str]:
        """The ANTENNA MOUNT of each antenna with data (:attr:`ant_mounts`)."""
        m = self.ant_mounts
        return [m[a] if a < len(m) else "" for a in np.asarray(self.active_ants, int)]


def main_table(path, **kw):
    """``with main_table(path) as t``: a casacore table of ``path`` (``kw``: ``readonly=False`` ...).  A
    read-only open of an MS whose :class:`alakazam.core.ms.MeasurementSet` handle is open borrows the
    handle's table (not closed on exit); otherwise a new table, closed on exit."""
    from . import ms as _ms

    b = _ms.borrow(path, **kw)
    if b is not None:
        return b
    from casacore.tables import table

    if "::" not in str(path):
        _ms.STATS["main_opens"] += 1
    return table(path, ack=False, **kw)


_table = main_table             # the former private name (other modules' code may still use it)


def n_rows(ms) -> int:
    """Rows of the main table."""
    with main_table(str(ms)) as t:
        return int(t.nrows())


def release_handle_table(ms):
    """Before writing ``ms``: the open handle (if any) closes its read-only main table and stops lending
    it (:meth:`alakazam.core.ms.MeasurementSet.release_table`)."""
    from . import ms as _ms

    h = _ms.active(ms)
    if h is not None:
        h.release_table()


def check_ms(ms):
    if ms and os.path.isfile(str(ms)):
        raise AlakazamError(f"vis/ms: {ms!r} is a file, not a Measurement Set (expected a Measurement Set "
                            "directory)")
    if not ms or not os.path.isdir(str(ms)):
        raise AlakazamError(f"vis/ms: {ms!r} does not exist (expected a Measurement Set directory)")
    if not os.path.exists(os.path.join(str(ms), "table.dat")) or \
            not os.path.isdir(os.path.join(str(ms), "ANTENNA")):
        raise AlakazamError(f"vis/ms: {ms!r} is not a Measurement Set (no table.dat / ANTENNA)")
    info = _table_info(ms)              # a CASA caltable has table.dat and ANTENNA too
    if info.get("Type") == "Calibration":
        kind = info.get("SubType") or "Calibration"
        raise AlakazamError(f"vis/ms: {ms!r} is a CASA calibration table ({kind}), not a Measurement Set "
                            "(akplot plots it; akapply / akcal take it as a gaintable)")
    from . import columns

    columns.recover_killed(ms)          # a kill -9 mid-flush left an MS that does not open: undone first


def _table_info(path) -> dict:
    """The ``Type`` / ``SubType`` lines of a casacore table's table.info ({} when unreadable)."""
    out = {}
    try:
        with open(os.path.join(str(path), "table.info"), errors="replace") as fh:
            for line in fh.read(4096).splitlines()[:2]:
                k, sep, v = line.partition("=")
                if sep:
                    out[k.strip()] = v.strip()
    except OSError:
        pass
    return out


def read_meta(ms) -> MSMeta:
    """Metadata of an MS (see :class:`MSMeta`): the open handle's (read once per task,
    :class:`alakazam.core.ms.MeasurementSet`); inside :func:`alakazam.core.metacache.keep` the one
    kept for the MS in its present state (read again after any change of its files); or read now."""
    from . import metacache
    from . import ms as _ms

    h = _ms.active(ms) if ms else None
    if h is not None and os.path.isdir(str(ms)):
        return h.meta
    if ms and metacache.active() and os.path.isfile(os.path.join(str(ms), "table.dat")):
        m = metacache.meta(ms, read_meta_uncached)
        # (kept under the real path: the MSMeta names the MS as this caller spelled it, as a read would)
        return m if m.path == str(ms) else dataclasses.replace(m, path=str(ms))
    return read_meta_uncached(ms)


def read_meta_uncached(ms) -> MSMeta:
    """Metadata of an MS read from its tables now."""
    from . import ms as _ms

    check_ms(ms)
    _ms.STATS["meta_reads"] += 1
    ms = str(ms)
    from casacore.tables import taql

    # aggregates computed by TaQL (never whole main-table columns in memory: the MS may be GBs)
    with _table(ms) as t:
        cols = t.colnames()
        if t.nrows():
            # the antennas of the rows: the distinct ANTENNA1 and ANTENNA2 of blocks of rows (two TaQL
            # DISTINCT queries took 20 ms for 121k rows, this 7 ms; the same set)
            n = int(t.nrows())
            ants = np.unique(np.concatenate(
                [np.unique(t.getcol(c, r0, min(WHERE_BLOCK, n - r0)))
                 for r0 in range(0, n, WHERE_BLOCK) for c in ("ANTENNA1", "ANTENNA2")]))
            q = taql("SELECT SCAN_NUMBER AS SCN, FIELD_ID AS FLD, DATA_DESC_ID AS DDI, "
                     "OBSERVATION_ID AS OBS, gmin(TIME) AS TMIN, gmax(TIME) AS TMAX FROM $t "
                     "GROUPBY SCAN_NUMBER, FIELD_ID, DATA_DESC_ID, OBSERVATION_ID")
            scan, fld, ddid, obs_id = q.getcol("SCN"), q.getcol("FLD"), q.getcol("DDI"), q.getcol("OBS")
            tmin, tmax = q.getcol("TMIN"), q.getcol("TMAX")
            q.close()
            q = taql("SELECT gmedian(INTERVAL) AS IV FROM $t")
            interval = float(q.getcol("IV")[0])
            q.close()
            if not interval > 0:
                # INTERVAL 0 (some converters write it): the integration time is the median spacing of
                # the distinct TIMEs, so solint 'int' / 'Nints' still mean integrations, as in CASA
                q = taql("SELECT DISTINCT TIME FROM $t")
                step = np.diff(np.sort(q.getcol("TIME")))
                q.close()
                step = step[step > 0]
                interval = float(np.median(step)) if len(step) else 0.0
        else:
            ants = np.zeros(0, np.int64)
            scan = fld = ddid = obs_id = np.zeros(0, np.int64)
            tmin = tmax = np.zeros(0)
            interval = 0.0
    with _table(ms + "::ANTENNA") as t:
        names = list(t.getcol("NAME"))
        positions = t.getcol("POSITION")
        mounts = ([str(m).strip().upper() for m in t.getcol("MOUNT")] if "MOUNT" in t.colnames() and t.nrows()
                  else [""] * len(names))
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
    feed_rows = []
    try:
        with _table(ms + "::FEED") as t:
            if t.nrows():
                fcols, nf = t.colnames(), t.nrows()
                spw_col = t.getcol("SPECTRAL_WINDOW_ID") if "SPECTRAL_WINDOW_ID" in fcols else [-1] * nf
                feed_col = t.getcol("FEED_ID") if "FEED_ID" in fcols else [0] * nf
                feed_rows = [(int(a), int(sw), int(fd), np.asarray(t.getcell("RECEPTOR_ANGLE", i), float))
                             for i, (a, sw, fd) in enumerate(zip(t.getcol("ANTENNA_ID"), spw_col, feed_col))]
    except RuntimeError:
        pass
    receptor, per_spw, conflicts = receptor_angles(feed_rows, len(names), sorted(set(int(x) for x in dd_spw)))
    conflicts = {s: [(str(names[a]), v) for a, v in c] for s, c in conflicts.items()}
    tel = ""
    try:
        with _table(ms + "::OBSERVATION") as t:
            if t.nrows():
                tel = str(t.getcell("TELESCOPE_NAME", 0))
    except RuntimeError:
        pass
    active = np.unique(ants).astype(np.int64)
    amap = -np.ones(len(names), np.int64)
    amap[active] = np.arange(len(active))
    spws = {}
    for d in np.unique(ddid):
        s = int(dd_spw[d])
        types = [STOKES_NAMES.get(int(c), str(c)) for c in corr[int(dd_pol[d])]]
        basis = "circular" if types and types[0][0] in "RL" else "linear"
        spws[int(d)] = SpwInfo(int(d), s, np.asarray(spw_freq[s], float), np.asarray(spw_width[s], float),
                               float(spw_ref[s]), str(spw_name[s]), types, basis, len(types),
                               per_spw.get(s))
    fields = [FieldInfo(i, str(n), float(pdir[i, 0, 0]), float(pdir[i, 0, 1])) for i, n in enumerate(fnames)]
    scans = []
    key = scan.astype(np.int64) * 100000 + fld
    for k in np.unique(key):
        m = key == k
        scans.append(ScanInfo(int(k // 100000), int(k % 100000), float(tmin[m].min()), float(tmax[m].max()),
                              set(int(x) for x in np.unique(ddid[m])),
                              set(int(x) for x in np.unique(obs_id[m]))))
    scans.sort(key=lambda s: (s.t_start, s.scan_number))
    obs = None
    if tel:
        try:
            from ..measures_data import LOCK, measures  # casacore measures, current data

            with LOCK:
                me = measures()
                v = me.measure(me.observatory(tel), "ITRF")
            r, lat, lon = v["m2"]["value"], v["m1"]["value"], v["m0"]["value"]
            obs = np.array([r * np.cos(lat) * np.cos(lon), r * np.cos(lat) * np.sin(lon), r * np.sin(lat)])
        except Exception:
            obs = None
    if obs is None:
        obs = positions[active].mean(axis=0) if len(active) else positions.mean(axis=0)
    with_data = {sp.spw_id for sp in spws.values()}
    nodata = sorted(set(range(len(spw_freq))) - with_data)
    return MSMeta(ms, [str(n) for n in names], positions, active, amap, spws, fields, scans, obs, tel,
                  receptor, interval, cols, nodata, conflicts, mounts)


def receptor_angles(feed_rows, n_ant, spw_ids):
    """The RECEPTOR_ANGLE (n_ant, 2) the parallactic angle uses, per SPW, from the FEED table's rows
    ``(ANTENNA_ID, SPECTRAL_WINDOW_ID, FEED_ID, RECEPTOR_ANGLE)``.

    As CASA: an antenna's row for an SPW is the one with that SPECTRAL_WINDOW_ID, else the one with -1
    (valid for every SPW), among its FEED_ID 0 rows where it has any (the feed the main table's
    FEED1/FEED2 name in practice); no row: 0.  VLA and ALMA MSs carry rows per SPW, with different
    angles per receiver band: before session 49 the table's last row of an antenna served every SPW
    (a review: |gX/gY| off by 0.155 from the truth, with the rows stored in the other order right).
    Returns ``(default, per_spw, conflicts)``: ``default`` from the -1 rows (else each antenna's first
    row), ``per_spw`` {SPW id: (n_ant, 2)} and ``conflicts`` {SPW id: [(antenna, [feed-0 angles])]}
    where an antenna's rows for one SPW disagree (time-dependent rows, which this does not
    interpolate)."""
    by_ant = {}                 # each antenna's rows: FEED_ID 0 where it has any (one pass over the table)
    for r in feed_rows:
        by_ant.setdefault(r[0], []).append(r)
    by_ant = {a: [r for r in rs if r[2] == 0] or rs for a, rs in by_ant.items()}

    def rows_of(a, want):
        return [r for r in by_ant.get(a, ()) if r[1] == want]

    default = np.zeros((n_ant, 2))
    for a in range(n_ant):
        rs = rows_of(a, -1) or [r for r in feed_rows if r[0] == a][:1]
        if rs:
            default[a] = _two(rs[0][3])
    per_spw, conflicts = {}, {}
    for s in spw_ids:
        arr = np.zeros((n_ant, 2))
        for a in range(n_ant):
            rs = rows_of(a, s) or rows_of(a, -1)
            if not rs:      # rows for other SPWs only: the antenna's first row (not 0; a review)
                arr[a] = default[a]
                continue
            arr[a] = _two(rs[0][3])
            angs = np.array(sorted({float(_two(r[3])[0]) for r in rs}))
            if len(angs) > 1 and angs[-1] - angs[0] > RECEPTOR_TOL:
                conflicts.setdefault(s, []).append((a, angs.tolist()))
        per_spw[s] = arr
    return default, per_spw, conflicts


#: rad: FEED rows whose receptor angles differ by less agree (a float32 round trip of pi/4 moves it by
#: 2e-8; 1e-6 rad turns a 100% polarised source's Q into U by 2e-6)
RECEPTOR_TOL = 1e-6


def _two(ang):
    """The first two receptors' angles (a one-receptor row: the second at +90 degrees)."""
    ang = np.asarray(ang, float).ravel()
    if len(ang) >= 2:
        return ang[:2]
    a0 = float(ang[0]) if len(ang) else 0.0
    return np.array([a0, a0 + np.pi / 2])


def check_antenna_names(meta: MSMeta):
    """AlakazamError when two antennas with data share an ANTENNA::NAME (or have none): solutions are
    matched to antennas by name (a table from another MS, apply, append), so one antenna would be
    corrected with the other's solutions -- silently (measured: 3C286 corrected to 1.08 x its model with
    one duplicate, 0.41 rad phase errors with every name empty)."""
    names = list(meta.active_names)
    dup = sorted({n for n in names if names.count(n) > 1 or not str(n).strip()})
    if dup:
        where = {n: ", ".join(str(a) for a in meta.active_ants if meta.ant_names[a] == n) for n in dup}
        rows = "; ".join(f"{n!r}{' (no name)' if not str(n).strip() else ''} at ANTENNA rows {where[n]}"
                         for n in dup)
        raise AlakazamError(f"vis/ms: {meta.path}: antennas with data share a name in the ANTENNA table "
                            f"({rows}); alakazam matches solutions to antennas by name, so give each antenna "
                            "its own NAME (e.g. from STATION) first")


def weight_column(ms, data_col="DATA") -> str:
    """For messages: the weights a solve of ``data_col`` reads (core/weights.py: 1/SIGMA^2 for DATA,
    WEIGHT_SPECTRUM or WEIGHT for CORRECTED_DATA; an all-zero WEIGHT_SPECTRUM, as some MeerKAT products
    carry, weights every sample 0 there).  From the open handle's metadata or the column names alone
    (never a metadata read)."""
    from . import ms as _ms
    from . import weights

    try:
        h = _ms.active(ms)
        if h is not None:
            cols = h.meta.columns
        else:
            with _table(str(ms)) as t:
                cols = t.colnames()
    except Exception:
        cols = ()
    return weights.describe(data_col, cols)


def virtual_model(ms, keywords) -> bool:
    """The MS holds a CASA virtual model (setjy / ft with usescratch=False; no MODEL_DATA).  Measured
    with CASA 6.7 setjy: without a SOURCE subtable it writes the main-table keywords
    ``definedmodel_field_<field id>`` -> 'model_<n>' and ``model_<n>`` (a componentlist record); with a
    SOURCE subtable, none of those, but SOURCE keywords ``definedmodel_field_<field id>`` -> 'model_<n>'
    and ``model_<n>`` -> the SOURCE row whose new record column SOURCE_MODEL holds the model.
    ``keywords``: the main table's."""
    if any(str(k).startswith("definedmodel_field_") for k in keywords):
        return True
    src = os.path.join(str(ms), "SOURCE")
    if "SOURCE" not in keywords or not os.path.exists(os.path.join(src, "table.dat")):
        return False
    from casacore.tables import table

    try:
        with table(src, ack=False) as s:
            return any(str(k).startswith("definedmodel_field_") for k in s.getkeywords())
    except Exception:           # noqa: BLE001 -- an unreadable SOURCE table only loses the hint
        return False


def check_columns(ms, names):
    """Raise AlakazamError naming the first of ``names`` (None/'' skipped) missing from the main table, or
    not a visibility column (complex, one (channel, correlation) array per row, as DATA: e.g. UVW or
    WEIGHT given as the data column raised a numpy error deep in the read)."""
    with _table(str(ms)) as t:
        have = t.colnames()
        desc = {n: t.getcoldesc(n) for n in names if n and n in have}
        keywords = t.getkeywords()
        # the visibility columns: complex ones (DATA, MODEL_DATA, an apply's CAL_A), not a partial one
        data = [c for c in have if t.getcoldesc(c).get("valueType") in ("complex", "dcomplex")
                and not c.endswith("_AKPARTIAL")]
    for n in names:
        if n and n not in have:
            hint = (" -- fill it with a model first (e.g. CASA setjy / ft, or your own predict), or give "
                    "akcal a point-source model (smodel=[I, Q, U, V])" if n == "MODEL_DATA" else "")
            if n == "MODEL_DATA" and virtual_model(ms, keywords):
                hint = (" -- the MS holds a CASA virtual model (setjy / ft with usescratch=False), which "
                        "alakazam does not evaluate: re-run setjy with usescratch=True to fill MODEL_DATA, "
                        "or give akcal a point-source model (smodel=[I, Q, U, V])")
            near = [c for c in data if c.upper() in (str(n).upper(), str(n).upper() + "_DATA")]
            if near:
                hint += f" (column names are case-sensitive: did you mean {near[0]!r}?)"
            raise AlakazamError(f"column {n!r} is not in {ms}{hint}; data columns present: "
                                f"{', '.join(data) or 'none'}")
        d = desc.get(n)
        if d is not None and (d.get("valueType") not in ("complex", "dcomplex")
                              or d.get("ndim", 2) not in (2, -1, 0)):
            raise AlakazamError(f"column {n!r} of {ms} is not a visibility column ({d.get('valueType')}, "
                                f"{d.get('ndim')}-d per row); expected a complex data column: "
                                f"{', '.join(data) or 'none'}")


# --------------------------------------------------------------------------------------------------
# selections
# --------------------------------------------------------------------------------------------------
def field_ids_named(meta: MSMeta, name) -> List[int]:
    """The FIELD rows named ``name`` exactly -- for a name read from a table (a solution set's field),
    never the user selection syntax of :func:`resolve_fields`, where '0' is an id even when a field is
    named '0'.  AlakazamError when there is none."""
    ids = [f.id for f in meta.fields if f.name == str(name)]
    if not ids:
        raise AlakazamError(f"field: no field named {str(name)!r} in {meta.path} (fields: "
                            f"{', '.join(f.name for f in meta.fields)})")
    return ids


def resolve_fields(meta: MSMeta, sel) -> List[int]:
    """Field ids from user selection syntax: names, ids, 'a~b' ranges or wildcards (list or comma
    string); '' = all with data.  A name taken from a table: :func:`field_ids_named`."""
    from .selection import parse_fields

    if sel is None or sel == "" or (isinstance(sel, (list, tuple)) and len(sel) == 0):
        return sorted({s.field_id for s in meta.scans})
    try:
        return parse_fields(sel, [f.name for f in meta.fields])
    except AlakazamError as e:
        raise AlakazamError(f"{e} (in {meta.path})") from None


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
    _no_data_spws(meta, sel, sorted(by_spw))
    out = {}
    for spw_id, chans in parse_spw(str(sel), {s: len(meta.spws[ds[0]].freqs) for s, ds in by_spw.items()},
                                   {s: meta.spws[ds[0]].freqs for s, ds in by_spw.items()},
                                   {s: meta.spws[ds[0]].name for s, ds in by_spw.items()},
                                   set(by_spw) | set(meta.spws_without_data),
                                   {s: meta.spws[ds[0]].chan_width for s, ds in by_spw.items()}):
        for d in by_spw[spw_id]:
            out[d] = np.asarray(chans, np.int64)
    if not out:
        raise AlakazamError(f"spw: {sel!r} selects no data")
    return dict(sorted(out.items()))


def _no_data_spws(meta: MSMeta, sel, have):
    """An SPW named by id in ``sel`` that is in the MS's DATA_DESCRIPTION but has no rows in the main
    table: an AlakazamError saying so (the parser would call it 'not present', which it is not)."""
    named = []
    for item in str(sel).split(","):
        s = item.split(":", 1)[0].strip()
        if s.isdigit() and int(s) in meta.spws_without_data and int(s) not in have:
            named.append(int(s))
    if named:
        which = ", ".join(str(x) for x in dict.fromkeys(named))
        raise AlakazamError(f"spw: SPW {which} of {sel!r} has no data: it is in the MS's SPECTRAL_WINDOW "
                            f"table but no row of the main table has it; SPWs with "
                            f"data: {', '.join(str(x) for x in have) or 'none'}")


def resolve_antenna(meta: MSMeta, ref, warn=True):
    """Active index of an antenna given by name (first) or ANTENNA-table index; for a list (the
    reference antennas in priority order) the list of active indices.  Unknown antennas and repeats
    raise :class:`ParameterError` naming ref_ant/refant, the value and the antennas with data; so does
    an antenna without data given alone.  A repeat is one ANTENNA id listed twice (by name or index,
    with or without data).  In a list, an antenna without data is left out with a warning
    when another listed antenna has data (CASA's refant list: the first antenna of the list that is
    present serves; one that never is, never does); ``warn=False``: without the warning (the parameter
    check: the run says it)."""
    import logging

    from ..errors import ParameterError

    many = isinstance(ref, (list, tuple))
    out, msgs, no_data, seen, twice = [], [], [], set(), []
    for r in (ref if many else [ref]):
        try:
            aid = _antenna_id(meta, r)
        except AlakazamError as exc:
            msgs.append(str(exc))
            continue
        if aid in seen:         # by ANTENNA id: with or without data, by name or by index
            twice += [meta.ant_names[aid]] if meta.ant_names[aid] not in twice else []
            continue
        seen.add(aid)
        try:
            out.append(_resolve_one_antenna(meta, r))
        except _NoData as exc:
            no_data.append(str(exc))
    if no_data and (not many or not out or msgs):
        msgs = no_data + msgs
    elif no_data and not twice and warn:         # (a refused list skips nothing)
        logging.getLogger("alakazam.ms").warning(
            "refant: %s; the list's other antennas serve", "; ".join(no_data))
    if twice:
        msgs.append(f"{list(ref)!r} names {', '.join(map(repr, twice))} more than once; expected each "
                    "antenna once, in priority order")
    if msgs:
        raise ParameterError({"ref_ant/refant": msgs})
    return out if many else out[0]


#: what "antennas with data" means in the refant messages: rows in the main table (FLAG is not read
#: there; a refant whose rows are all flagged is said so by the solve, solvers/rereference.py)
_ROWS_NOTE = " (rows in the MS; flags not read)"


class _NoData(AlakazamError):
    """An antenna of the ANTENNA table without rows (resolve_antenna)."""


def _antenna_id(meta: MSMeta, ref) -> int:
    """ANTENNA-table id of an antenna given by name (first) or index."""
    names = meta.ant_names
    r = str(ref).strip()
    if r in names:
        return names.index(r)
    if r.lstrip("-").isdigit() and 0 <= int(r) < len(names):
        return int(r)
    raise AlakazamError(f"{ref!r} is not an antenna of {meta.path}; antennas with data: "
                        f"{', '.join(meta.active_names)}{_ROWS_NOTE}")


def _resolve_one_antenna(meta: MSMeta, ref) -> int:
    names = meta.ant_names
    aid = _antenna_id(meta, ref)
    if meta.ant_map[aid] < 0:
        raise _NoData(f"antenna {names[aid]!r} has no data in {meta.path}; antennas "
                      f"with data: {', '.join(meta.active_names)}{_ROWS_NOTE}")
    return int(meta.ant_map[aid])


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------
@dataclass
class Chunk:
    """Rows of one DATA_DESC_ID in native layout.

    data, model : (row, chan, corr) as stored (model None when not read); flag (row, chan, corr) =
    FLAG | FLAG_ROW; weight (row, chan, corr): for DATA 1/SIGMA^2 (1/SIGMA_SPECTRUM^2 when the MS has it
    and WEIGHT_SPECTRUM), for other columns WEIGHT_SPECTRUM or WEIGHT (core/weights.py); a per-row one is
    a read-only view broadcast over channels (copy it before writing into it); time, ant1, ant2 (active
    indices), field_id, scan, rownr (MS row numbers) : (row,).
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
        w = self.weight
        if w.ndim == 3 and w.shape[1] > 1 and w.strides[1] == 0:
            # WEIGHT broadcast over channels (a read-only view): keep it a view, never materialise it
            w = w[:, :1][sel]
            w = np.broadcast_to(w, (w.shape[0], self.weight.shape[1], w.shape[2]))
        else:
            w = w[sel]
        return Chunk(self.data[sel], None if self.model is None else self.model[sel], self.flag[sel],
                     w, self.time[sel], self.ant1[sel], self.ant2[sel],
                     self.field_id[sel], self.scan[sel], self.rownr[sel])

    def four_corr(self, corr_types):
        """(data, model, flag, weight) with 4 correlations pp, pq, qp, qq (see :func:`to_four_corr`)."""
        d, f, w = to_four_corr(self.data, self.flag, self.weight, corr_types)
        m = None
        if self.model is not None:
            m, _, _ = to_four_corr(self.model, self.flag, self.weight, corr_types)
        return d, m, f, w


#: position of each correlation in the 4-correlation view pp, pq, qp, qq
CORR_ORDER = {"XX": 0, "XY": 1, "YX": 2, "YY": 3, "RR": 0, "RL": 1, "LR": 2, "LL": 3}


def canonical_corr(corr_types) -> bool:
    """True when ``corr_types`` are the four correlations in the order pp, pq, qp, qq (XX XY YX YY or
    RR RL LR LL): the stored layout is then the 4-correlation view itself.  Other orders (an MS
    written XX YY XY YX, RR LL RL LR ...) are mapped by name, never by position."""
    return len(corr_types) == 4 and [CORR_ORDER.get(str(c), -1) for c in corr_types] == [0, 1, 2, 3]


def to_four_corr(data, flag, weight, corr_types):
    """Expand 1/2-correlation data (pp, qq) to 4 (pq, qp zero and flagged); 4 correlations in the
    order pp, pq, qp, qq pass through, 4 in another order are reordered by name."""
    n = data.shape[-1]
    if n == 4 and canonical_corr(corr_types):
        return data, flag, weight
    order = CORR_ORDER
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


def where_clause(ddid, field_ids, scans, time_range=None, rowsel=None) -> str:
    """TaQL WHERE clause selecting one DATA_DESC_ID, fields, scans, ``time_range=(t0, t1)`` and the
    row selection ``rowsel`` (the one place where the selection is written in TaQL)."""
    w = [f"DATA_DESC_ID=={int(ddid)}"]
    if rowsel is not None and rowsel.taql():
        w.append(rowsel.taql())
    if time_range is not None:
        t0, t1 = (float(x) for x in time_range)
        w.append(f"TIME >= {t0!r} AND TIME < {t1!r}")
    if field_ids is not None:
        w.append("FIELD_ID IN [%s]" % ",".join(str(int(f)) for f in field_ids))
    if scans is not None:
        w.append("SCAN_NUMBER IN [%s]" % ",".join(str(int(s)) for s in scans))
    return " AND ".join(w)


_where = where_clause           # the former private name


def spread_rows(rows, n):
    """At most ``n`` of ``rows`` spread evenly over them (first and last included): the sample the
    solve's model checks read (solve_diagnose.model_precheck, calibration/polparang.model_stokes)."""
    rows = np.asarray(rows)
    if not len(rows):
        return rows
    return rows[np.unique(np.linspace(0, len(rows) - 1, min(int(n), len(rows))).astype(int))]


def model_rows(ms, model_col, rows, chans):
    """``model_col`` of MS rows ``rows`` (a few: the column alone, nothing else read) at channels ``chans``
    of the row's SPW, (row, chan, corr) as stored."""
    with main_table(str(ms)) as t:
        q = t.selectrows(np.asarray(rows, np.int64))
        try:
            return np.asarray(q.getcol(model_col))[:, np.asarray(chans, int)]
        finally:
            q.close()


def row_numbers(ms, ddid, field_ids, scans=None, time_range=None, rowsel=None) -> np.ndarray:
    """MS row numbers (row,) of one DATA_DESC_ID, fields, scans and ``time_range=(t0, t1)`` (t0 <= TIME < t1),
    and of the antenna/uvrange/timerange/intent/observation selection ``rowsel``
    (:class:`alakazam.core.rowselect.RowSelection`; the one place where rows are chosen)."""
    from casacore.tables import taql

    from . import rowindex

    with _table(str(ms)) as t:
        # the rows of (DATA_DESC_ID, fields, scans) from the MS's row index (its selection columns read
        # once per task call or run: core/rowindex.py), else from the columns (one full read per call)
        idx = rowindex.get(ms, t) if time_range is None else None
        if idx is not None:
            r = idx.rows(ddid, field_ids, scans)
            where = rowsel.taql() if rowsel is not None else ""
            if where and len(r):        # OBSERVATION_ID, STATE_ID, time bounds: TaQL once per selection
                r = r[idx.rowsel_mask(t, where)[r]]
        elif rowsel is None or not rowsel.taql():
            r = _rows_where(t, ddid, field_ids, scans, time_range)
        else:
            where = _where(ddid, field_ids, scans, time_range, rowsel)
            q = taql(f"SELECT ROWID() AS R FROM $t WHERE {where}")
            r = q.getcol("R") if q.nrows() else np.zeros(0, np.int64)
            q.close()
        r = np.asarray(r, np.int64)
        if rowsel is not None:
            from .rowselect import select_rows
            r = select_rows(t, r, rowsel)
    return r


#: rows of the main table's selection columns read at a time by :func:`_rows_where` (4 B or 8 B each)
WHERE_BLOCK = 1 << 22


def _rows_where(t, ddid, field_ids, scans=None, time_range=None, cols=()):
    """The rows :func:`where_clause` selects (without a row selection), found from the columns it names
    read in blocks of :data:`WHERE_BLOCK` rows: the same ascending row numbers as TaQL's
    ``SELECT ROWID() ... WHERE`` (the same comparisons on the same values), in a third of its time
    (121k rows: 8-15 ms against 24-48 ms; issue 16).  With ``cols``: ``(rows, {col: its values at
    rows})`` (scalar columns; as TaQL's ``SELECT col ... WHERE``)."""
    n = int(t.nrows())
    out = []
    vals = {c: [] for c in cols}
    fids = None if field_ids is None else np.asarray([int(f) for f in field_ids], np.int64)
    scs = None if scans is None else np.asarray([int(s) for s in scans], np.int64)
    for r0 in range(0, n, WHERE_BLOCK):
        nr = min(WHERE_BLOCK, n - r0)
        got = {}

        def col(name):
            if name not in got:
                got[name] = t.getcol(name, r0, nr)
            return got[name]

        m = col("DATA_DESC_ID") == int(ddid)
        if time_range is not None:
            t0, t1 = (float(x) for x in time_range)
            tm = col("TIME")
            m &= (tm >= t0) & (tm < t1)
        if fids is not None:
            m &= np.isin(col("FIELD_ID"), fids)
        if scs is not None:
            m &= np.isin(col("SCAN_NUMBER"), scs)
        idx = np.flatnonzero(m)
        out.append(idx + r0)
        for c in cols:
            vals[c].append(col(c)[idx])
    rows = np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)
    if not cols:
        return rows
    return rows, {c: (np.concatenate(v) if v else np.zeros(0, np.int64)) for c, v in vals.items()}


def scan_times(ms, pairs, scans=None) -> dict:
    """{scan: (TIME, INTERVAL)} of the rows of the (FIELD_ID, DATA_DESC_ID) ``pairs`` in ``scans`` (None =
    all): each scan's distinct TIMEs in order with the smallest INTERVAL of their rows (solint 'int' /
    'Nints' counts integrations from them: :func:`alakazam.plan.integration_edges`)."""
    from . import rowindex

    out = {}
    with _table(str(ms)) as t:
        idx = rowindex.get(ms, t)           # the task's row index (core/rowindex.py), else column scans
        for fid, ddid in sorted(set((int(f), int(d)) for f, d in pairs)):
            cols = ("SCAN_NUMBER", "TIME", "INTERVAL")
            if idx is not None:
                v = _values_at(t, idx.rows(ddid, [fid], scans), cols)
            else:
                _, v = _rows_where(t, ddid, [fid], scans, cols=cols)
            for sc in np.unique(v["SCAN_NUMBER"]):
                m = v["SCAN_NUMBER"] == sc
                tm, iv = np.asarray(v["TIME"][m], float), np.asarray(v["INTERVAL"][m], float)
                if int(sc) in out:          # (another field / SPW of a joint unit: the union)
                    tm, iv = np.r_[out[int(sc)][0], tm], np.r_[out[int(sc)][1], iv]
                u, inv = np.unique(tm, return_inverse=True)
                ivu = np.full(len(u), np.inf)
                np.minimum.at(ivu, inv.ravel(), iv)
                out[int(sc)] = (u, ivu)
    return out


def _values_at(t, rows, cols) -> dict:
    """{col: its values at ``rows``} of scalar columns of the open table ``t`` (as :func:`_rows_where`'s
    ``cols``): read run by run when the rows form long runs, else through a row selection."""
    if len(rows) == 0:
        return {c: np.zeros(0, np.int64) for c in cols}
    runs = _long_runs(rows)
    if runs is not None:
        return {c: _getcol_runs(t, None, c, runs) for c in cols}
    q = t.selectrows(np.asarray(rows))
    try:
        return {c: q.getcol(c) for c in cols}
    finally:
        q.close()


def read_times(ms, rows) -> np.ndarray:
    """TIME of the given row numbers."""
    with _table(str(ms)) as t:
        if len(rows) == 0:
            return np.zeros(0)
        runs = _long_runs(rows)
        if runs is not None:            # straight from the table, no row selection (_getcol_runs)
            return _getcol_runs(t, None, "TIME", runs)
        q = t.selectrows(np.asarray(rows))
        tm = q.getcol("TIME")
        q.close()
    return tm


def row_count(ms, ddid, field_ids, scans=None, time_range=None, rowsel=None) -> int:
    """Number of rows of a selection (for planning reads)."""
    return len(row_numbers(ms, ddid, field_ids, scans, time_range, rowsel))


def _row_runs(rows):
    """(first MS row, n_row, offset in ``rows``) of each run of consecutive row numbers."""
    rows = np.asarray(rows, np.int64)
    brk = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], brk])
    ends = np.concatenate([brk, [len(rows)]])
    return [(int(rows[a]), int(b - a), int(a)) for a, b in zip(starts, ends)]


def _long_runs(rows):
    """:func:`_row_runs` of ``rows`` when they form few runs (at most one per 16 rows), else None (short
    runs: per-run reads would cost more than one read through a row selection)."""
    runs = _row_runs(rows)
    return None if len(runs) > max(1, len(rows) // 16) else runs


def _getcol_runs(t, q, col, runs):
    """Column ``col`` (any shape) of the rows: through the selection ``q`` (``runs`` None), or read run by
    run straight from the table (``getcol(col, start, n)``: the same values and type, without making a
    row selection of the table, 0.01-0.03 s for 121k rows)."""
    if runs is None:
        return q.getcol(col)
    parts = [t.getcol(col, r0, n) for r0, n, _ in runs]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _getcol_rows(t, q, col, rows, runs):
    """Array column ``col`` of ``rows``: runs of consecutive rows are read straight from the table into
    one preallocated array (getcolnp; several times faster than getcol on a row selection, and no
    concatenation copy); scattered rows go through the selection ``q``."""
    if runs is None:
        return q.getcol(col)
    return _fill_rows(t, col, _alloc_rows(t, col, rows), runs)


def _alloc_rows(t, col, rows):
    """The uninitialised array that :func:`_fill_rows` reads column ``col`` of ``rows`` into: new memory,
    or the previous chunk's when a reuse pool is active (iter_chunks reuse=True)."""
    from . import readbuffers

    first = np.asarray(t.getcell(col, int(rows[0])))
    return readbuffers.empty(col, (len(rows),) + first.shape, first.dtype)


def _fill_rows(t, col, out, runs):
    for r0, n, i0 in runs:
        t.getcolnp(col, out[i0:i0 + n], r0, n)
    return out


def _read_rows_by_number(ms, rows, ddid, chans, data_col, model_col, meta=None, weights=True):
    with main_table(str(ms)) as t:
        if len(rows) == 0:
            empty = np.zeros((0, 0, 0))
            return Chunk(empty.astype(np.complex64), None, empty.astype(bool), empty, np.zeros(0),
                         np.zeros(0, int), np.zeros(0, int), np.zeros(0, int), np.zeros(0, int),
                         np.zeros(0, int))
        cols = t.colnames()
        # long runs of consecutive rows: every column read run by run; short runs: one row selection
        runs = _long_runs(rows)
        q = t.selectrows(rows) if runs is None else None
        if runs is None:
            data = _getcol_rows(t, q, data_col, rows, runs)
            model = _getcol_rows(t, q, model_col, rows, runs) if model_col else None
            flag = _getcol_rows(t, q, "FLAG", rows, runs)
        else:
            # every buffer first, their pages faulted in on the other cores while casacore reads
            # (core/prefault.py: never a value, only where the time goes)
            from . import prefault

            rcols = [data_col] + ([model_col] if model_col else []) + ["FLAG"]   # (cols: the table's)
            bufs = [_alloc_rows(t, c, rows) for c in rcols]
            pop = prefault.populate(bufs)
            try:
                for c, b in zip(rcols, bufs):
                    _fill_rows(t, c, b, runs)
            finally:
                pop.join()
            data, flag = bufs[0], bufs[-1]
            model = bufs[1] if model_col else None
            del bufs
        flag |= _getcol_runs(t, q, "FLAG_ROW", runs)[:, None, None]
        # weights=False (the apply, model reads): not read -- a read-only view of ones, no memory
        ws = (_read_weights(t, q, rows, runs, cols, data_col, data.shape) if weights
              else np.broadcast_to(np.ones((1, 1, 1), np.float32), data.shape))
        time = _getcol_runs(t, q, "TIME", runs)
        a1 = _getcol_runs(t, q, "ANTENNA1", runs)
        a2 = _getcol_runs(t, q, "ANTENNA2", runs)
        fld = _getcol_runs(t, q, "FIELD_ID", runs)
        scan = _getcol_runs(t, q, "SCAN_NUMBER", runs)
        if q is not None:
            q.close()
    _close_handle_table(ms)     # the tile caches of a read live until the table closes (module ms.py)
    if chans is not None and len(chans) != data.shape[1]:
        data = data[:, chans]
        flag = flag[:, chans]
        ws = ws[:, chans] if ws.strides[1] else np.broadcast_to(ws[:, :1], (len(ws), len(chans), ws.shape[2]))
        if model is not None:
            model = model[:, chans]
    return data, model, flag, ws, time, a1, a2, fld, scan


def _read_weights(t, q, rows, runs, cols, data_col, shape):
    """The weights of a read of ``data_col``: 1/SIGMA^2 for DATA, WEIGHT(_SPECTRUM) for other columns
    (core/weights.py); a per-row column stays a (row, corr) view broadcast over channels."""
    from . import weights

    def spectrum(name):
        try:
            v = _getcol_rows(t, q, name, rows, runs)
        except RuntimeError:            # cells undefined for these rows
            return None
        return v if v.shape == shape else None

    def defined(name):
        try:
            return bool(t.iscelldefined(name, int(rows[0])))
        except RuntimeError:
            return False

    return weights.read(data_col, cols, shape, spectrum, lambda name: _getcol_runs(t, q, name, runs), defined)


def _close_handle_table(ms):
    """After a read of data columns: the open handle's table is closed (reopened at its next use), so
    casacore frees the read's tiled-storage caches as it did when every read opened its own table
    (tens of MB per read on a real MS; ``setmaxcachesize`` does not free them)."""
    from . import ms as _ms

    h = _ms.active(ms)
    if h is not None:
        h.close()


def read_rows(ms, ddid, field_ids, scans=None, chans=None, data_col="DATA", model_col="MODEL_DATA",
              start=0, nrow=None, meta=None, rows=None, time_range=None, rowsel=None,
              buffers=None, weights=True) -> Chunk:
    """Read the selected rows (or rows[start:start+nrow] of the selection) as a :class:`Chunk`.

    Parameters
    ----------
    ms : str
        Measurement Set path (opened read-only).
    ddid : int
        DATA_DESC_ID.
    field_ids, scans : list of int or None
        FIELD_ID / SCAN_NUMBER selection (None = all).
    chans : (chan,) int array or None
        Channel indices to keep.
    data_col, model_col : str
        Columns read as ``data`` and ``model``; ``model_col=None`` skips the model.
    start, nrow : int
        Slice of the selected rows to read (chunking).
    meta : MSMeta, optional
        Metadata (read if not given).
    rows : (row,) int array, optional
        Explicit MS row numbers (overrides the field/scan/time selection).
    time_range : (t0, t1), optional
        MJD seconds, t0 <= TIME < t1.
    rowsel : RowSelection, optional
        Antenna/uvrange/timerange/intent/observation selection (core/rowselect.py); with a uvrange
        in wavelengths the channels outside it are flagged (when ``rowsel.per_channel``).
    buffers : :class:`alakazam.core.readbuffers.ReadBuffers`, optional
        Memory of an earlier read to read into when nothing references it any more (core/readbuffers.py).
    weights : bool
        Read the weights (:mod:`alakazam.core.weights`; default).  False for a caller that does not use
        them (the apply, reads of MODEL_DATA): the chunk's ``weight`` is then a read-only view of ones
        and no weight column is read (a WEIGHT_SPECTRUM / SIGMA_SPECTRUM is half the size of DATA).
    """
    if meta is None:
        meta = read_meta(ms)
    if ddid not in meta.spws:
        raise AlakazamError(f"spw/ddid: DATA_DESC_ID {ddid!r} has no data in {meta.path}; present: "
                            f"{sorted(meta.spws)}")
    check_columns(ms, [data_col, model_col])
    if rows is None:
        rows = row_numbers(ms, ddid, field_ids, scans, time_range, rowsel)
    rows = rows[start:start + nrow if nrow is not None else None]
    if len(rows) == 0:
        n_c = len(chans) if chans is not None else len(meta.spws[ddid].freqs)
        nc = meta.spws[ddid].n_corr
        return Chunk(np.zeros((0, n_c, nc), np.complex64), None if not model_col else
                     np.zeros((0, n_c, nc), np.complex64), np.zeros((0, n_c, nc), bool),
                     np.zeros((0, n_c, nc), np.float32), np.zeros(0), np.zeros(0, np.int64),
                     np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                     np.zeros(0, np.int64))
    from . import readbuffers

    with readbuffers.using(buffers):
        data, model, flag, ws, time, a1, a2, fld, scan = _read_rows_by_number(ms, rows, ddid, chans, data_col,
                                                                              model_col, weights=weights)
    amap = meta.ant_map
    i1, i2 = amap[a1], amap[a2]
    inactive = (i1 < 0) | (i2 < 0)
    if inactive.any():            # only possible with a stale meta: never use such rows
        flag = flag | inactive[:, None, None]
    if rowsel is not None and rowsel.chan_uv:
        from .rowselect import uv_channel_flags
        flag = flag | uv_channel_flags(ms, rows, rowsel, ddid, chans)[:, :, None]
    return Chunk(data, model, flag, ws, time, i1, i2, fld, scan, np.asarray(rows, np.int64))


def iter_chunks(ms, ddid, field_ids, scans=None, chans=None, data_col="DATA", model_col="MODEL_DATA",
                max_rows=None, meta=None, time_range=None, rowsel=None, rows=None, reuse=False, weights=True):
    """Yield :class:`Chunk` objects of at most ``max_rows`` rows covering the selection (in row order).

    ``rows``: the selection's row numbers when the caller has them (:func:`row_numbers` of the same
    arguments).  ``reuse``: each chunk is read into the memory of the previous one when nothing
    references it any more (core/readbuffers.py: no page faults after the first chunk)."""
    if meta is None:
        meta = read_meta(ms)
    if rows is None:
        rows = row_numbers(ms, ddid, field_ids, scans, time_range, rowsel)
    step = len(rows) if not max_rows else int(max_rows)
    from .readbuffers import pool_for_reuse

    buffers = pool_for_reuse() if reuse else None       # (shared by an apply's fields: readbuffers.shared)
    for s in range(0, len(rows), max(step, 1)):
        yield read_rows(ms, ddid, field_ids, chans=chans, data_col=data_col, model_col=model_col, meta=meta,
                        rows=rows[s:s + step], rowsel=rowsel, buffers=buffers, weights=weights)


# --------------------------------------------------------------------------------------------------
# writing (the only read-write access)
# --------------------------------------------------------------------------------------------------
def ensure_column(ms, name, like="DATA", init=True, block_rows=20000):
    """Create column ``name`` like column ``like`` if it is missing (True when created): the MS handle's
    :meth:`alakazam.core.ms.MeasurementSet.add_column`, called by path."""
    from . import ms as _ms

    return _ms.writer(ms).add_column(name, like, init, block_rows)


def write_column(ms, name, rownr, values, chans=None):
    """Write values (row, chan, corr) to rows ``rownr`` of column ``name`` (channel subset optional): the
    MS handle's :meth:`alakazam.core.ms.MeasurementSet.write_column`, called by path."""
    from . import ms as _ms

    _ms.writer(ms).write_column(name, rownr, values, chans)
