"""listobs: akinfo(vis=...) and `alakazam info MS` against TaQL/numpy counts on the simulated MS."""

import shutil

import numpy as np
import pytest
from casacore.tables import table, taql

from alakazam.caltasks import akinfo
from alakazam.cli import main
from alakazam.core.listobs import path_kind, summarise_ms
from alakazam.core.msselect import mjds_to_str
from alakazam.errors import AlakazamError, ParameterError

INTENTS = ["CALIBRATE_BANDPASS#ON_SOURCE,CALIBRATE_FLUX#ON_SOURCE", "CALIBRATE_PHASE#ON_SOURCE",
           "OBSERVE_TARGET#ON_SOURCE"]


def add_intents(ms):
    """STATE rows 0..2 = INTENTS; each row's STATE_ID = its FIELD_ID (fields 0, 1, 2)."""
    with table(f"{ms}::STATE", readonly=False, ack=False) as st:
        st.addrows(len(INTENTS))
        st.putcol("OBS_MODE", INTENTS)
    with table(ms, readonly=False, ack=False) as t:
        t.putcol("STATE_ID", t.getcol("FIELD_ID"))


@pytest.fixture(scope="module")
def ms_intents(sim_linear, tmp_path_factory):
    ms0, _ = sim_linear
    ms = str(tmp_path_factory.mktemp("listobs") / "sim.ms")
    shutil.copytree(ms0, ms)
    add_intents(ms)
    return ms


def test_listobs_counts_match_taql(ms_intents):
    ms = ms_intents
    s = akinfo(vis=ms)
    with table(ms, ack=False) as t:
        assert s["n_rows"] == t.nrows()
        time, interval = t.getcol("TIME"), t.getcol("INTERVAL")
        n_flag = n_el = 0
        for d in np.unique(t.getcol("DATA_DESC_ID")):   # FLAG shapes differ per DDID: one query each
            q = taql(f"SELECT FLAG, FLAG_ROW FROM $t WHERE DATA_DESC_ID=={d}")
            flag = q.getcol("FLAG") | q.getcol("FLAG_ROW")[:, None, None]
            n_flag, n_el = n_flag + int(flag.sum()), n_el + flag.size
        scan, fld, a1, a2 = (t.getcol(c) for c in ("SCAN_NUMBER", "FIELD_ID", "ANTENNA1", "ANTENNA2"))
    # integration edges, as CASA 6.7's listobs ("Observed from ... to", "Total elapsed time")
    assert s["time_range"] == [(time - interval / 2).min(), (time + interval / 2).max()]
    assert s["time_range_utc"][0] == mjds_to_str((time - interval / 2).min())
    assert s["flagged"] == n_flag and s["n_flag_elements"] == n_el
    assert s["flagged_fraction"] == pytest.approx(n_flag / n_el)
    assert 0 < s["flagged_fraction"] < 1
    # scans: one per (scan, field), in time order, rows and times as TaQL counts them
    assert [sc["scan"] for sc in s["scans"]] == sorted(np.unique(scan).tolist())
    for sc in s["scans"]:
        q = taql(f"SELECT TIME, INTERVAL FROM {ms} WHERE SCAN_NUMBER=={sc['scan']} AND "
                 f"FIELD_ID=={sc['field_id']}")
        tt, iv = q.getcol("TIME"), q.getcol("INTERVAL")
        assert sc["n_rows"] == q.nrows() == int(((scan == sc["scan"]) & (fld == sc["field_id"])).sum())
        assert (sc["t_start"], sc["t_end"]) == ((tt - iv / 2).min(), (tt + iv / 2).max())
        assert (sc["t_first"], sc["t_last"]) == (tt.min(), tt.max())
        assert sc["intents"] == sorted(INTENTS[sc["field_id"]].split(","))
        assert sc["spws"] == [0, 1]
    # fields: rows, coordinates, intents
    with table(f"{ms}::FIELD", ack=False) as t:
        names, pdir = t.getcol("NAME"), t.getcol("PHASE_DIR")
    assert [f["name"] for f in s["fields"]] == list(names)
    for f in s["fields"]:
        assert f["n_rows"] == int((fld == f["id"]).sum())
        assert f["ra_rad"] == pdir[f["id"], 0, 0] and f["dec_rad"] == pdir[f["id"], 0, 1]
    f0 = s["fields"][0]                   # 3C286: 13h31m08.288s +30d30m32.96s
    assert f0["ra"] == "13:31:08.2880" and f0["dec"] == "+30.30.32.960"
    assert "CALIBRATE_BANDPASS#ON_SOURCE" in f0["intents"]
    # spws: frequencies, widths, correlations from the sub-tables
    with table(f"{ms}::SPECTRAL_WINDOW", ack=False) as t:
        for sp in s["spws"]:
            f = t.getcell("CHAN_FREQ", sp["id"])
            assert sp["n_chan"] == len(f) and sp["chan0_freq_hz"] == f[0]
            assert sp["chan_width_hz"] == t.getcell("CHAN_WIDTH", sp["id"])[0]
            assert sp["correlations"] == ["XX", "XY", "YX", "YY"]
    # antennas: every ANTENNA row, active = has data
    with table(f"{ms}::ANTENNA", ack=False) as t:
        assert [a["name"] for a in s["antennas"]] == list(t.getcol("NAME"))
        assert [a["mount"] for a in s["antennas"]] == list(t.getcol("MOUNT"))       # (parang's rotation)
        np.testing.assert_array_equal([a["position_m"] for a in s["antennas"]], t.getcol("POSITION"))
    used = set(a1) | set(a2)
    assert [a["active"] for a in s["antennas"]] == [i in used for i in range(len(s["antennas"]))]
    assert not all(a["active"] for a in s["antennas"])          # the simulator's inactive antennas


def test_info_cli_tells_ms_from_hdf5_by_content(ms_intents, tmp_path, capsys):
    ms = ms_intents
    assert path_kind(ms) == "ms"
    odd = tmp_path / "table.ms.h5"                     # the name says HDF5, the content does not
    odd.write_text("hello")
    with pytest.raises(AlakazamError, match="neither an HDF5"):
        path_kind(str(odd))
    assert main(["info", ms]) == 0
    out = capsys.readouterr().out
    assert "Scans" in out and "3C286" in out and "CALIBRATE_PHASE#ON_SOURCE" in out and "Antennas" in out
    assert main(["info", str(odd)]) == 2
    assert "neither an HDF5" in capsys.readouterr().err


def test_akinfo_vis_or_caltable(tmp_path, ms_intents):
    with pytest.raises(ParameterError, match="give caltable .* or vis"):
        akinfo()
    # caltable wins when both are set (akshell: vis and caltable are shared with akcal)
    with pytest.raises(ParameterError, match="caltable parameter must be a path that exists"):
        akinfo(vis=ms_intents, caltable=str(tmp_path / "x.h5"))
    with pytest.raises(ParameterError, match="does not exist"):
        akinfo(vis=str(tmp_path / "nope.ms"))
    with pytest.raises(ParameterError, match="fluxscale"):
        akinfo(vis=ms_intents, fluxscale=True)
    assert summarise_ms(ms_intents)["n_rows"] > 0


def test_scan_times_are_listobs_integration_edges(sim_linear, tmp_path, capsys):
    """CASA 6.7 listobs prints a scan's Timerange, 'Observed from ... to' and 'Total elapsed time' from
    integration edges, min(TIME - INTERVAL/2) .. max(TIME + INTERVAL/2) over the rows (review 55a: akinfo
    printed the first/last integration mid-times).  Measured with listobs on a simulated MS of 8 s
    integrations (07:30:54.8 - 07:40:54.8, 3600 s) and on a copy whose first spw-1 integration has a
    20 s INTERVAL and scan 2's last spw-0 one 4 s: listobs printed 07:30:48.8 for scan 1 and the
    observation, 07:50:54.8 (spw 1's edge) as scan 2's end, and 3606 seconds."""
    ms0, _ = sim_linear
    ms = str(tmp_path / "mix.ms")
    shutil.copytree(ms0, ms)
    with table(ms, readonly=False, ack=False) as t:
        tm, iv = t.getcol("TIME"), t.getcol("INTERVAL")
        sc, dd = t.getcol("SCAN_NUMBER"), t.getcol("DATA_DESC_ID")
        i0 = float(iv[0])
        first, last2 = tm.min(), tm[sc == 2].max()
        iv[(tm == first) & (dd == 1)] = i0 + 12.0
        iv[(tm == last2) & (dd == 0)] = i0 / 2
        t.putcol("INTERVAL", iv)
    s = summarise_ms(ms)
    t0 = first - (i0 + 12.0) / 2
    t1 = tm.max() + i0 / 2
    assert s["time_range"] == [t0, t1]
    scans = {x["scan"]: x for x in s["scans"]}
    assert scans[1]["t_start"] == t0 and scans[1]["t_first"] == first
    assert scans[2]["t_end"] == last2 + i0 / 2                  # spw 1's edge, not spw 0's shorter one
    assert scans[2]["t_last"] == last2
    assert main(["info", ms]) == 0
    out = capsys.readouterr().out
    assert f"observed from {mjds_to_str(t0)} to {mjds_to_str(t1)} UTC ({t1 - t0:.0f} s" in out
    assert mjds_to_str(t0) in out and mjds_to_str(last2 + i0 / 2).split("/")[-1] in out
