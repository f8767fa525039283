"""listobs for alakazam: a summary of a Measurement Set (``akinfo(vis=...)``, ``alakazam info MS``).

:func:`summarise_ms` returns a plain dict (observation, time range, scans, fields, SPWs, antennas,
flagged fraction); :func:`render` turns it into rich tables.  Main-table figures come from TaQL
aggregates on plain columns (GROUPBY), never from whole columns in memory, and never from the
mscal functions (python-casacore 3.8.1 segfaults in some of them).

Conventions (pinned by tests/test_listobs.py):

- times are MJD seconds in the dict, UTC strings ``YYYY/MM/DD/hh:mm:ss.s`` in the tables; a scan's
  ``t_start``/``t_end`` and ``time_range`` are integration edges, min(TIME - INTERVAL/2) and
  max(TIME + INTERVAL/2) over its rows, as CASA 6.7's listobs prints them (its scan "Timerange",
  "Observed from ... to" and "Total elapsed time" = ``time_range[1] - time_range[0]``; measured on
  MSs of 60 s and 8 s integrations and on one whose rows' INTERVALs differ within a scan); the
  first and last integration mid-times (TIME) are ``t_first``/``t_last``;
- ``n_rows`` counts main-table rows; ``flagged_fraction`` = true elements of FLAG | FLAG_ROW over all
  FLAG elements (rows x channels x correlations);
- intents are the STATE table's OBS_MODE strings of the STATE_IDs a scan uses (none when STATE_ID
  is -1 or the STATE table is empty);
- antennas: every ANTENNA row; ``active`` = appears in ANTENNA1 or ANTENNA2;
- spws: every DATA_DESCRIPTION row, with its main-table ``n_rows``; one without rows is listed with
  ``has_data`` False ("0 (no data)" in the table), not omitted.
"""

from __future__ import annotations

import math

import numpy as np

from .msselect import mjds_to_str


def _sexagesimal(x, ndigits):
    """(whole units, minutes, seconds) of ``x >= 0`` with the seconds rounded to ``ndigits`` places and a
    rounded 60 carried into the minutes and the units."""
    a = int(x)
    m = (x - a) * 60
    mm = int(m)
    s = (m - mm) * 60
    if round(s, ndigits) >= 60:
        s, mm = 0.0, mm + 1
    if mm >= 60:
        mm, a = mm - 60, a + 1
    return a, mm, s


def _rad_to_hms(ra):
    hh, mm, s = _sexagesimal((math.degrees(ra) / 15.0) % 24.0, 4)
    return f"{hh % 24:02d}:{mm:02d}:{s:07.4f}"


def _rad_to_dms(dec):
    d = math.degrees(dec)
    dd, mm, s = _sexagesimal(abs(d), 3)
    return f"{'-' if d < 0 else '+'}{dd:02d}.{mm:02d}.{s:06.3f}"


def path_kind(path) -> str:
    """'ms' (a directory with table.dat and an ANTENNA sub-table), 'casacal' (such a directory whose
    table.info says Type Calibration: a CASA caltable) or 'hdf5' (a file with the HDF5 signature),
    decided by content, not by name; anything else is an AlakazamError."""
    import os

    from ..errors import AlakazamError

    p = os.path.expanduser(str(path))
    if not os.path.exists(p):
        raise AlakazamError(f"info: {path!r} does not exist (expected an HDF5 solution table or a "
                            "Measurement Set)")
    if os.path.isdir(p):
        if os.path.exists(os.path.join(p, "table.dat")) and os.path.isdir(os.path.join(p, "ANTENNA")):
            from ..io.solutions import is_casa_caltable

            return "casacal" if is_casa_caltable(p) else "ms"
        raise AlakazamError(f"info: {path!r} is a directory but not a Measurement Set (no table.dat / "
                            "ANTENNA)")
    with open(p, "rb") as fh:
        head = fh.read(8)
    if head == b"\x89HDF\r\n\x1a\n":
        return "hdf5"
    import h5py

    if h5py.is_hdf5(p):          # userblock before the signature
        return "hdf5"
    raise AlakazamError(f"info: {path!r} is neither an HDF5 solution table nor a Measurement Set")


def _sub(ms, name):
    from .ms_io import _table

    try:
        return _table(f"{ms}::{name}")
    except RuntimeError:
        return None


def summarise_ms(ms) -> dict:
    """listobs-like summary of ``ms`` as a dict (see the module docstring for the conventions)."""
    from casacore.tables import taql

    from .ms_io import STOKES_NAMES, _table, check_ms

    check_ms(ms)
    ms = str(ms)
    out = {"vis": ms}
    with _table(ms) as t:
        n_rows = t.nrows()
        groups = []
        flagged = total = 0
        tmin = tmax = None
        if n_rows:
            q = taql("SELECT SCAN_NUMBER AS SCN, FIELD_ID AS FLD, DATA_DESC_ID AS DDI, STATE_ID AS ST, "
                     "OBSERVATION_ID AS OBS, gmin(TIME - INTERVAL / 2) AS TMIN, "
                     "gmax(TIME + INTERVAL / 2) AS TMAX, "
                     "gmin(TIME) AS TFIRST, gmax(TIME) AS TLAST, gcount() AS N, "
                     "gsum(ntrue(FLAG || FLAG_ROW)) AS NF, gsum(nelements(FLAG)) AS NE, "
                     "gmedian(INTERVAL) AS IV FROM $t "
                     "GROUPBY SCAN_NUMBER, FIELD_ID, DATA_DESC_ID, STATE_ID, OBSERVATION_ID")
            cols = {c: q.getcol(c) for c in ("SCN", "FLD", "DDI", "ST", "OBS", "TMIN", "TMAX", "TFIRST",
                                             "TLAST", "N", "NF", "NE", "IV")}
            q.close()
            groups = [dict(zip(cols, vals)) for vals in zip(*cols.values())]
            flagged = int(sum(int(g["NF"]) for g in groups))
            total = int(sum(int(g["NE"]) for g in groups))
            tmin = float(min(g["TMIN"] for g in groups))
            tmax = float(max(g["TMAX"] for g in groups))
            q = taql("SELECT DISTINCT ANTENNA1 AS A FROM $t")
            q2 = taql("SELECT DISTINCT ANTENNA2 AS A FROM $t")
            active = set(int(a) for a in q.getcol("A")) | set(int(a) for a in q2.getcol("A"))
            q.close()
            q2.close()
        else:
            active = set()

    # ---- sub-tables
    obs = []
    t = _sub(ms, "OBSERVATION")
    if t is not None:
        with t:
            for i in range(t.nrows()):
                tr = t.getcell("TIME_RANGE", i)
                obs.append({"id": i, "telescope": str(t.getcell("TELESCOPE_NAME", i)),
                            "observer": str(t.getcell("OBSERVER", i)),
                            "project": str(t.getcell("PROJECT", i)),
                            "time_range": [float(tr[0]), float(tr[1])]})
    intents = []
    t = _sub(ms, "STATE")
    if t is not None:
        with t:
            intents = [str(x) for x in t.getcol("OBS_MODE")] if t.nrows() else []
    with _table(ms + "::DATA_DESCRIPTION") as t:
        dd_spw = [int(x) for x in t.getcol("SPECTRAL_WINDOW_ID")]
        dd_pol = [int(x) for x in t.getcol("POLARIZATION_ID")]
    with _table(ms + "::POLARIZATION") as t:
        corr = [[STOKES_NAMES.get(int(c), str(c)) for c in t.getcell("CORR_TYPE", i)]
                for i in range(t.nrows())]
    with _table(ms + "::FIELD") as t:
        fnames = [str(x) for x in t.getcol("NAME")]
        pdir = t.getcol("PHASE_DIR")
        codes = [str(x) for x in t.getcol("CODE")] if "CODE" in t.colnames() else [""] * len(fnames)
    with _table(ms + "::ANTENNA") as t:
        anames = [str(x) for x in t.getcol("NAME")]
        stations = [str(x) for x in t.getcol("STATION")]
        pos = t.getcol("POSITION")
        diam = t.getcol("DISH_DIAMETER")
        mounts = ([str(x).strip() for x in t.getcol("MOUNT")] if "MOUNT" in t.colnames() and t.nrows()
                  else [""] * len(anames))
    with _table(ms + "::SPECTRAL_WINDOW") as t:
        spw_rows = []
        for i in range(t.nrows()):
            f = np.asarray(t.getcell("CHAN_FREQ", i), float)
            w = np.asarray(t.getcell("CHAN_WIDTH", i), float)
            spw_rows.append({"id": i, "name": str(t.getcell("NAME", i)) if "NAME" in t.colnames() else "",
                             "n_chan": len(f), "ref_freq_hz": float(t.getcell("REF_FREQUENCY", i)),
                             "chan0_freq_hz": float(f[0]) if len(f) else float("nan"),
                             "chan_width_hz": float(w[0]) if len(w) else float("nan"),
                             "total_bw_hz": float(t.getcell("TOTAL_BANDWIDTH", i)),
                             "centre_freq_hz": float((f[0] + f[-1]) / 2) if len(f) else float("nan")})

    # ---- scans: one entry per (scan, field) in time order
    scans = {}
    for g in groups:
        key = (int(g["SCN"]), int(g["FLD"]))
        s = scans.setdefault(key, {"scan": key[0], "field_id": key[1], "field": fnames[key[1]],
                                   "t_start": math.inf, "t_end": -math.inf, "t_first": math.inf,
                                   "t_last": -math.inf, "n_rows": 0, "spws": set(),
                                   "intents": set(), "observation": set(), "interval_s": float(g["IV"])})
        s["t_start"] = min(s["t_start"], float(g["TMIN"]))
        s["t_end"] = max(s["t_end"], float(g["TMAX"]))
        s["t_first"] = min(s["t_first"], float(g["TFIRST"]))
        s["t_last"] = max(s["t_last"], float(g["TLAST"]))
        s["n_rows"] += int(g["N"])
        s["spws"].add(dd_spw[int(g["DDI"])])
        st = int(g["ST"])
        if 0 <= st < len(intents):
            s["intents"].update(x for x in intents[st].split(",") if x)
        s["observation"].add(int(g["OBS"]))
    scan_list = []
    for s in sorted(scans.values(), key=lambda s: (s["t_start"], s["scan"])):
        s["spws"] = sorted(s["spws"])
        s["intents"] = sorted(s["intents"])
        s["observation"] = sorted(s["observation"])
        scan_list.append(s)

    rows_per_field = {}
    for g in groups:
        rows_per_field[int(g["FLD"])] = rows_per_field.get(int(g["FLD"]), 0) + int(g["N"])
    field_intents = {}
    for s in scan_list:
        field_intents.setdefault(s["field_id"], set()).update(s["intents"])
    fields = [{"id": i, "name": n, "code": codes[i], "ra_rad": float(pdir[i, 0, 0]),
               "dec_rad": float(pdir[i, 0, 1]), "ra": _rad_to_hms(pdir[i, 0, 0]),
               "dec": _rad_to_dms(pdir[i, 0, 1]), "n_rows": rows_per_field.get(i, 0),
               "intents": sorted(field_intents.get(i, ()))} for i, n in enumerate(fnames)]
    rows_per_dd = {}
    for g in groups:
        rows_per_dd[int(g["DDI"])] = rows_per_dd.get(int(g["DDI"]), 0) + int(g["N"])
    spws = []
    for d in range(len(dd_spw)):        # every DATA_DESCRIPTION row; one without rows: has_data False
        if not 0 <= dd_spw[d] < len(spw_rows):
            continue
        sp = dict(spw_rows[dd_spw[d]])
        sp["ddid"] = d
        sp["correlations"] = corr[dd_pol[d]] if 0 <= dd_pol[d] < len(corr) else []
        sp["n_rows"] = rows_per_dd.get(d, 0)
        sp["has_data"] = sp["n_rows"] > 0
        spws.append(sp)
    spws.sort(key=lambda sp: (sp["id"], sp["ddid"]))
    # the mount: how the parallactic angle turns the feeds (jones/parang.mount_kind)
    antennas = [{"id": i, "name": anames[i], "station": stations[i], "diameter_m": float(diam[i]),
                 "mount": mounts[i], "position_m": [float(x) for x in pos[i]], "active": i in active}
                for i in range(len(anames))]
    out.update({
        "observations": obs,
        "n_rows": int(n_rows),
        "time_range": [tmin, tmax] if tmin is not None else None,
        "time_range_utc": [mjds_to_str(tmin), mjds_to_str(tmax)] if tmin is not None else None,
        "scans": scan_list,
        "fields": fields,
        "spws": spws,
        "antennas": antennas,
        "flagged": flagged,
        "n_flag_elements": total,
        "flagged_fraction": flagged / total if total else 0.0,
    })
    return out


def render(summary, console):
    """Print ``summary`` (from :func:`summarise_ms`) as listobs-style rich tables on ``console``."""
    from rich.table import Table

    s = summary
    console.print(f"[bold]MeasurementSet[/bold] {s['vis']}")
    for o in s["observations"]:
        console.print(f"  observation {o['id']}: telescope {o['telescope']}, observer {o['observer']!r}, "
                      f"project {o['project']!r}")
    if s["time_range"]:
        dt = s["time_range"][1] - s["time_range"][0]
        console.print(f"  observed from {s['time_range_utc'][0]} to {s['time_range_utc'][1]} UTC "
                      f"({dt:.0f} s = {dt / 3600:.3f} h), {s['n_rows']} rows, flagged "
                      f"{100 * s['flagged_fraction']:.2f}% of visibilities "
                      f"({s['flagged']}/{s['n_flag_elements']})")
    else:
        console.print("  no rows")
    t = Table(title="Scans", title_justify="left")
    for c in ("scan", "field", "start (UTC)", "end", "rows", "int (s)", "spws", "intents", "obs"):
        t.add_column(c, justify="right" if c in ("scan", "rows", "int (s)") else "left")
    for sc in s["scans"]:
        t.add_row(str(sc["scan"]), f"{sc['field_id']} {sc['field']}", mjds_to_str(sc["t_start"]),
                  mjds_to_str(sc["t_end"]).split("/")[-1], str(sc["n_rows"]), f"{sc['interval_s']:g}",
                  ",".join(map(str, sc["spws"])), ",".join(sc["intents"]),
                  ",".join(map(str, sc["observation"])))
    console.print(t)
    t = Table(title="Fields", title_justify="left")
    for c in ("id", "code", "name", "RA (J2000)", "Dec (J2000)", "rows", "intents"):
        t.add_column(c, justify="right" if c in ("id", "rows") else "left")
    for f in s["fields"]:
        t.add_row(str(f["id"]), f["code"], f["name"], f["ra"], f["dec"], str(f["n_rows"]),
                  ",".join(f["intents"]))
    console.print(t)
    t = Table(title="Spectral windows", title_justify="left")
    for c in ("spw", "ddid", "name", "chans", "ch0 (MHz)", "width (kHz)", "total bw (kHz)", "centre (MHz)",
              "corrs", "rows"):
        t.add_column(c, justify="left" if c in ("name", "corrs") else "right")
    for sp in s["spws"]:
        t.add_row(str(sp["id"]), str(sp["ddid"]), sp["name"], str(sp["n_chan"]),
                  f"{sp['chan0_freq_hz'] / 1e6:.4f}",
                  f"{sp['chan_width_hz'] / 1e3:.3f}", f"{sp['total_bw_hz'] / 1e3:.1f}",
                  f"{sp['centre_freq_hz'] / 1e6:.4f}", " ".join(sp["correlations"]),
                  str(sp["n_rows"]) if sp.get("has_data", True) else "0 (no data)")
    console.print(t)
    t = Table(title="Antennas", title_justify="left")
    for c in ("id", "name", "station", "diam (m)", "mount", "x (m)", "y (m)", "z (m)", "data"):
        t.add_column(c, justify="left" if c in ("name", "station", "mount", "data") else "right")
    for a in s["antennas"]:
        x, y, z = a["position_m"]
        t.add_row(str(a["id"]), a["name"], a["station"], f"{a['diameter_m']:g}", a.get("mount", ""),
                  f"{x:.3f}", f"{y:.3f}", f"{z:.3f}", "yes" if a["active"] else "no")
    console.print(t)
