"""Row selection on the simulated MS: rows chosen by ms_io exactly as a numpy reference computed here
from the MS columns; solve and apply honour the selection; selectdata=False ignores it; YAML keys."""

import sys
import os
import datetime
import shutil

import h5py
import numpy as np
import pytest
from casacore.tables import table, taql

from alakazam.caltasks import akapply, akcal
from alakazam.config import solve_config_from_dict
from alakazam.core import ms_io, rowselect
from alakazam.errors import AlakazamError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from selection_ms import add_intents_and_observation  # noqa: E402  (tests/selection_ms.py)

C = 299792458.0
INTENTS = ["CALIBRATE_BANDPASS#ON_SOURCE,CALIBRATE_FLUX#ON_SOURCE", "CALIBRATE_PHASE#ON_SOURCE",
           "OBSERVE_TARGET#ON_SOURCE"]


@pytest.fixture(scope="module")
def ms(sim_linear, tmp_path_factory):
    """A copy of the simulated MS with STATE intents (STATE_ID = FIELD_ID) and two observations
    (OBSERVATION_ID 1 from the fourth scan on)."""
    ms0, _ = sim_linear
    path = str(tmp_path_factory.mktemp("rowsel") / "sim.ms")
    shutil.copytree(ms0, path)
    add_intents_and_observation(path, INTENTS, 4)
    return path


def _columns(path):
    with table(path, ack=False) as t:
        cols = {c: t.getcol(c) for c in ("ANTENNA1", "ANTENNA2", "TIME", "INTERVAL", "UVW", "DATA_DESC_ID",
                                         "STATE_ID", "OBSERVATION_ID", "FIELD_ID")}
    with table(f"{path}::ANTENNA", ack=False) as t:
        names = list(t.getcol("NAME"))
    with table(f"{path}::DATA_DESCRIPTION", ack=False) as t:
        dd_spw = t.getcol("SPECTRAL_WINDOW_ID")
    with table(f"{path}::SPECTRAL_WINDOW", ack=False) as t:
        freqs = {d: t.getcell("CHAN_FREQ", int(s)) for d, s in enumerate(dd_spw)}
    return cols, names, freqs


def _utc(t):
    return datetime.datetime(1858, 11, 17) + datetime.timedelta(seconds=float(t))


def _mjds(dt):
    return (dt - datetime.datetime(1858, 11, 17)).total_seconds()


def _ant_axis(flags, n_ant):
    return [i for i, n in enumerate(flags.shape) if n == n_ant][0]


def _selected(path, select, ddid):
    meta = ms_io.read_meta(path)
    rs = rowselect.build(meta, select)
    return ms_io.row_numbers(path, ddid, None, None, rowsel=rs)


def test_rows_match_a_numpy_reference(ms):
    cols, names, freqs = _columns(ms)
    a1 = np.array(names)[cols["ANTENNA1"]]
    a2 = np.array(names)[cols["ANTENNA2"]]
    uvd = np.hypot(cols["UVW"][:, 0], cols["UVW"][:, 1])
    t = cols["TIME"]
    day0 = _mjds(datetime.datetime.combine(_utc(t.min()).date(), datetime.time()))
    lam_max = {d: C / f.min() for d, f in freqs.items()}       # longest wavelength of each DDID
    lam_min = {d: C / f.max() for d, f in freqs.items()}
    dd = cols["DATA_DESC_ID"]
    ref_lam_lo = np.array([lam_min[d] for d in dd])
    ref_lam_hi = np.array([lam_max[d] for d in dd])
    third = names[cols["ANTENNA2"].max()]
    cases = {
        "antenna='!C05'": ({"antenna": "!C05"}, (a1 != "C05") & (a2 != "C05")),
        "antenna='C00&C02'": ({"antenna": "C00&C02"}, ((a1 == "C00") & (a2 == "C02")) |
                              ((a1 == "C02") & (a2 == "C00"))),
        "antenna='C00&&*'": ({"antenna": "C00&&*"}, (a1 == "C00") | (a2 == "C00")),
        "antenna='0,2'": ({"antenna": "0,2"},
                          np.isin(a1, [names[0], names[2]]) | np.isin(a2, [names[0], names[2]])),
        "antenna=third&": ({"antenna": f"C00,{third}&"},
                           np.isin(a1, ["C00", third]) & np.isin(a2, ["C00", third])
                           & (a1 != a2)),
        "uvrange='>1000m'": ({"uvrange": ">1000m"}, uvd >= 1000),
        "uvrange='500~2000m'": ({"uvrange": "500~2000m"}, (uvd >= 500) & (uvd <= 2000)),
        # klambda: a row is kept when at least one channel is inside (|uv| / lambda over the band)
        "uvrange='<5klambda'": ({"uvrange": "<5klambda"}, uvd / ref_lam_hi <= 5000),
        "uvrange='3~6klambda'": ({"uvrange": "3~6klambda"},
                                 (uvd / ref_lam_lo >= 3000) & (uvd / ref_lam_hi <= 6000)),
        "timerange=clock": ({"timerange": "07:45:00~08:05:00"},
                            (t >= day0 + 7.75 * 3600) & (t <= day0 + 8 * 3600 + 300)),
        "timerange='>T'": ({"timerange": ">" + _utc(day0 + 8 * 3600).strftime("%Y/%m/%d/%H:%M:%S")},
                           t >= day0 + 8 * 3600),
        "timerange='<T'": ({"timerange": "<07:50:00"}, t <= day0 + 7 * 3600 + 50 * 60),
        "intent='*BANDPASS*'": ({"intent": "*BANDPASS*"}, cols["STATE_ID"] == 0),
        "intent='*PHASE*,*TARGET*'": ({"intent": "*PHASE*,*TARGET*"}, np.isin(cols["STATE_ID"], [1, 2])),
        "observation='1'": ({"observation": "1"}, cols["OBSERVATION_ID"] == 1),
        "combined": ({"antenna": "!C05", "uvrange": ">500m", "intent": "CAL*", "observation": "0"},
                     (a1 != "C05") & (a2 != "C05") & (uvd >= 500) & np.isin(cols["STATE_ID"], [0, 1]) &
                     (cols["OBSERVATION_ID"] == 0)),
    }
    for label, (select, ref) in cases.items():
        assert 0 < ref.sum() < len(ref), label                   # every case really selects
        for ddid in np.unique(dd):
            got = _selected(ms, select, ddid)
            want = np.flatnonzero(ref & (dd == ddid))
            np.testing.assert_array_equal(got, want, err_msg=label)
    # the partial-klambda case really has rows inside in some channels only
    lam = {d: C / f for d, f in freqs.items()}
    part = [((uvd[i] / lam[dd[i]]) <= 5000).any() and not ((uvd[i] / lam[dd[i]]) <= 5000).all()
            for i in range(len(uvd))]
    assert any(part)


def test_klambda_flags_channels_outside_and_metres_whole_rows(ms):
    meta = ms_io.read_meta(ms)
    cols, names, freqs = _columns(ms)
    ddid = 0
    chans = np.arange(2, len(freqs[ddid]))
    rs = rowselect.build(meta, {"uvrange": "<5klambda"})
    plain = ms_io.read_rows(ms, ddid, None, chans=chans, model_col=None, meta=meta,
                            rows=ms_io.row_numbers(ms, ddid, None, rowsel=rs))
    ch = ms_io.read_rows(ms, ddid, None, chans=chans, model_col=None, meta=meta, rowsel=rs)
    np.testing.assert_array_equal(ch.rownr, plain.rownr)
    uvw = cols["UVW"][ch.rownr]
    ul = np.hypot(uvw[:, 0], uvw[:, 1])[:, None] * freqs[ddid][chans] / C
    expect = plain.flag | (ul > 5000)[:, :, None]
    np.testing.assert_array_equal(ch.flag, expect)
    assert (ul > 5000).any() and (ul <= 5000).any()
    # an akapply selection (per_channel=False) never adds channel flags
    rs_apply = rowselect.build(meta, {"uvrange": "<5klambda"}, per_channel=False)
    ch2 = ms_io.read_rows(ms, ddid, None, chans=chans, model_col=None, meta=meta, rowsel=rs_apply)
    np.testing.assert_array_equal(ch2.flag, plain.flag)


def test_solve_honours_selection(ms, tmp_path):
    cal = str(tmp_path / "c.h5")
    with table(ms, ack=False) as t:  # noqa: F841 -- $t in TaQL
        t_first = t.getcol("TIME").min()
    t_end = t_first + 1.3 * 3600
    rng = f"{_utc(t_first - 1).strftime('%H:%M:%S')}~{_utc(t_end).strftime('%H:%M:%S')}"
    r = akcal(vis=ms, caltable=cal, field="<2", jones=["K", "G"], solint=["scan", "2ints"], refant="C00",
              antenna="!C05", timerange=rng)
    with table(ms, ack=False) as t:  # noqa: F841 -- $t in TaQL
        q = taql(f"SELECT DISTINCT SCAN_NUMBER FROM $t WHERE FIELD_ID IN [0,1] AND TIME <= {float(t_end)!r}")
        want_scans = sorted(q.getcol("SCAN_NUMBER").tolist())
    interval = ms_io.read_meta(ms).interval
    with h5py.File(cal, "r") as f:
        scans = sorted(int(k.split("_")[1]) for fld in f["G0"] for k in f["G0"][fld])
        first = sorted(int(k.split("_")[1]) for k in f["G0/field_3C286"])[0]
        g = f[f"G0/field_3C286/scan_{first}/spw_0"]
        ants = list(g.attrs["ant_names"])
        flags = g["flags"][()]
        times = g["time"][()]
    assert scans == want_scans and len(scans) >= 2
    ia = ants.index("C05")
    assert flags.take(ia, axis=_ant_axis(flags, len(ants))).all()      # no data: flagged
    assert not flags.take(ants.index("C02"), axis=_ant_axis(flags, len(ants))).all()
    assert np.allclose(np.diff(times), 2 * interval)                   # '2ints': two integrations a bin
    assert r["terms"]["G0"]["n_groups"] == 2 * len(want_scans)         # per scan and SPW
    # no rows: a clear error naming the selection, nothing written
    with pytest.raises(AlakazamError, match="timerange='03:00:00~04:00:00' selects no rows"):
        akcal(vis=ms, caltable=str(tmp_path / "none.h5"), timerange="03:00:00~04:00:00")
    assert not (tmp_path / "none.h5").exists()
    # selectdata=False ignores the subparameters (CASA)
    cfg = akcal._prepare(akcal.validate(akcal.bind(vis=ms, caltable=cal, selectdata=False, antenna="C00")))
    assert cfg.select == {}
    # YAML: the same keys
    cfg = solve_config_from_dict({"ms": ms, "output": cal, "jones": ["G"], "antenna": "!C05",
                                  "uvrange": ">100m", "intent": "*PHASE*"})
    assert cfg.select == {"antenna": "!C05", "uvrange": ">100m", "intent": "*PHASE*"}


def test_apply_writes_only_selected_rows(ms, tmp_path):
    cal = str(tmp_path / "c.h5")
    akcal(vis=ms, caltable=cal, jones=["G"], solint="scan", refant="C00")
    akapply(vis=ms, gaintable=[cal], jones=["G0"])                  # every row corrected once
    with table(ms, readonly=False, ack=False) as t:  # noqa: F841 -- $t in TaQL
        for d in (0, 1):
            q = taql(f"SELECT CORRECTED_DATA FROM $t WHERE DATA_DESC_ID=={d}")
            q.putcol("CORRECTED_DATA", np.zeros_like(q.getcol("CORRECTED_DATA")))
            q.close()
    cols, names, freqs = _columns(ms)
    a1 = np.array(names)[cols["ANTENNA1"]]
    a2 = np.array(names)[cols["ANTENNA2"]]
    uvd = np.hypot(cols["UVW"][:, 0], cols["UVW"][:, 1])
    lam_hi = np.array([C / freqs[d].min() for d in cols["DATA_DESC_ID"]])
    cand = (np.array([tuple(sorted(x)) in {("C00", "C02"), ("C03", "C04")} for x in zip(a1, a2)])
            & (cols["STATE_ID"] == 1))
    cut = float(np.median((uvd / lam_hi)[cand])) / 1e3          # keeps about half of the candidates
    want = cand & (uvd / lam_hi <= cut * 1e3)
    r = akapply(vis=ms, gaintable=[cal], jones=["G0"], antenna="C00&C02;C03&C04", intent="*PHASE*",
                uvrange=f"<{cut!r}klambda")
    written = np.zeros(len(want), bool)
    with table(ms, ack=False) as t:  # noqa: F841 -- $t in TaQL
        for d in (0, 1):
            q = taql(f"SELECT ROWID() AS R, CORRECTED_DATA FROM $t WHERE DATA_DESC_ID=={d}")
            written[q.getcol("R")] = np.abs(q.getcol("CORRECTED_DATA")).max(axis=(1, 2)) > 0
    assert want.sum() > 0 and r["rows"] == want.sum()
    np.testing.assert_array_equal(written, want)


def test_apply_correlation_writes_only_those(ms, tmp_path, caplog):
    """akapply's correlation (CASA applycal has none; in akshell one set for akflag carries over) writes
    only those correlations, and says so once, naming the ones that keep their values."""
    cal = str(tmp_path / "c.h5")
    akcal(vis=ms, caltable=cal, jones=["G"], solint="scan", refant="C00", field="3C286")
    akapply(vis=ms, gaintable=[cal], jones=["G0"], field="3C286")
    full = {d: taql(f"SELECT CORRECTED_DATA FROM {ms} WHERE DATA_DESC_ID=={d} AND FIELD_ID==0")
            .getcol("CORRECTED_DATA") for d in (0, 1)}
    with table(ms, readonly=False, ack=False) as t:  # noqa: F841 -- $t in TaQL
        for d in (0, 1):
            q = taql(f"SELECT CORRECTED_DATA FROM $t WHERE DATA_DESC_ID=={d}")
            q.putcol("CORRECTED_DATA", np.zeros_like(q.getcol("CORRECTED_DATA")))
            q.close()
    with caplog.at_level("WARNING", logger="alakazam"):
        akapply(vis=ms, gaintable=[cal], jones=["G0"], field="3C286", correlation="XX,YY")
    said = [r.getMessage() for r in caplog.records if "correlation='XX,YY'" in r.getMessage()]
    assert len(said) == 1 and "XY, YX keep their values" in said[0] and "CORRECTED_DATA" in said[0], said
    for d in (0, 1):
        got = taql(f"SELECT CORRECTED_DATA FROM {ms} WHERE DATA_DESC_ID=={d} AND FIELD_ID==0").getcol(
            "CORRECTED_DATA")
        np.testing.assert_array_equal(got[..., [0, 3]], full[d][..., [0, 3]])
        assert np.all(got[..., [1, 2]] == 0) and np.any(full[d][..., [1, 2]] != 0)
    with pytest.raises(AlakazamError, match="correlation: 'RR' selects none"):
        akapply(vis=ms, gaintable=[cal], jones=["G0"], field="3C286", correlation="RR")
    with pytest.raises(AlakazamError, match="correlation: 'QQ'"):
        akapply(vis=ms, gaintable=[cal], jones=["G0"], field="3C286", correlation="QQ")
    caplog.clear()
    with caplog.at_level("WARNING", logger="alakazam"):
        akapply(vis=ms, gaintable=[cal], jones=["G0"], field="3C286", correlation="XX,XY,YX,YY")
    assert not [r for r in caplog.records if "keep their values" in r.getMessage()]
