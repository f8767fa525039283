"""akflag's CASA flagdata parity: autocorr, uvrange / intent / observation, modes shadow and elevation,
flagbackup, the unsupported flagdata modes, and quack's edges.

Every test checks FLAG sample by sample: against the rule written out here (numpy on the MS columns, or
casacore measures converting the field direction to AZEL for the elevation), and, with a CASA install
(/work/casavenv, or $ALAKAZAM_CASA_PYTHON; skipped without it), against CASA 6.7 flagdata run on a copy
of the same MS (one CASA process for every case: :func:`casa_flags`).

The MS: 4 antennas (simulated), 3 scans of 10 x 60 s, 8 channels, plus one auto-correlation row per
antenna and time, STATE rows (scans 1-2 CALIBRATE_BANDPASS, scan 3 OBSERVE_TARGET), OBSERVATION 1 for
scan 2, dishes of 1200 m (so the short baselines shadow), UVW in CASA's sign as the simulator writes
it (see :func:`parity_ms`) and baseline C01-C03 of scan 3 given a 14 m projected length with w > 0 (CASA then
shadows ANTENNA2).
"""

import json
import logging
import os
import sys
import shutil
import subprocess
import textwrap

import numpy as np
import pytest
from casacore.tables import table

from alakazam.errors import ParameterError
from alakazam.sim import simulate_ms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from casa_python import casa_python  # noqa: E402  (tests/casa_python.py)

CASA_PY = casa_python() or ""
needs_casa = pytest.mark.skipif(not os.access(CASA_PY, os.X_OK), reason=f"no CASA Python at {CASA_PY}")
C = 299792458.0
DISH = 1200.0


def parity_ms(path):
    simulate_ms(path, n_ant=4, n_ant_extra=0, n_chan=(8,), duration_h=0.5, int_s=60.0, scan_len_s=600.0,
                noise=0.05, seed=3, leakage=False, dead_ant=False, flag_rows=0.0)
    with table(path, readonly=False, ack=False) as t:
        n = t.nrows()
        tm = t.getcol("TIME")
        src = np.repeat([np.flatnonzero(tm == ut)[0] for ut in np.unique(tm)], 4)
        t.addrows(len(src))
        for c in t.colnames():
            if c != "FLAG_CATEGORY":
                t.putcol(c, t.getcol(c, 0, n)[src], n, len(src))
        ants = np.tile(np.arange(4, dtype=np.int32), len(src) // 4)
        t.putcol("ANTENNA1", ants, n, len(src))
        t.putcol("ANTENNA2", ants, n, len(src))
        t.putcol("UVW", np.zeros((len(src), 3)), n, len(src))
        scan, a1, a2, uvw = (t.getcol(c) for c in ("SCAN_NUMBER", "ANTENNA1", "ANTENNA2", "UVW"))
        # the simulator writes CASA's UVW sign (X1 - X2; CASA's fixvis recomputed the simulator's former
        # X2 - X1 with the opposite sign), so CASA's shadow geometry of unselected baselines agrees
        uvw[(a1 == 1) & (a2 == 3) & (scan == 3)] = [10.0, 10.0, 5.0]
        t.putcol("UVW", uvw)
        t.putcol("STATE_ID", np.where(scan == 3, 1, 0).astype(np.int32))
        t.putcol("OBSERVATION_ID", np.where(scan == 2, 1, 0).astype(np.int32))
    with table(path + "::STATE", readonly=False, ack=False) as s:
        s.addrows(2)
        s.putcol("OBS_MODE", np.array(["CALIBRATE_BANDPASS#ON_SOURCE", "OBSERVE_TARGET#ON_SOURCE"]))
        for c, v in (("SIG", True), ("REF", False), ("CAL", 0.0), ("LOAD", 0.0), ("SUB_SCAN", 0)):
            s.putcol(c, np.array([v, v]))
    with table(path + "::OBSERVATION", readonly=False, ack=False) as o:
        o.addrows(1)
        for c in o.colnames():
            try:
                o.putcell(c, 1, o.getcell(c, 0))
            except Exception:         # (empty array cells)
                pass
    with table(path + "::ANTENNA", readonly=False, ack=False) as a:
        a.putcol("DISH_DIAMETER", np.full(a.nrows(), DISH))
    return path


@pytest.fixture(scope="module")
def base_ms(tmp_path_factory):
    return parity_ms(str(tmp_path_factory.mktemp("parity") / "p.ms"))


@pytest.fixture
def ms(base_ms, tmp_path):
    out = str(tmp_path / "w.ms")
    shutil.copytree(base_ms, out)
    return out


def cols(ms, *names):
    with table(ms, ack=False) as t:
        return [t.getcol(n) for n in names]


def ak(ms, **kw):
    from alakazam.caltasks import akflag

    akflag(vis=ms, **kw)
    return cols(ms, "FLAG")[0]


def rows(mask, shape):
    return np.broadcast_to(np.asarray(mask)[:, None, None], shape)


def freqs(ms):
    with table(ms + "::SPECTRAL_WINDOW", ack=False) as t:
        return t.getcol("CHAN_FREQ")[0]


# --------------------------------------------------------------------------------------------------
# the rules, written out
# --------------------------------------------------------------------------------------------------
def test_autocorr_flags_only_the_auto_correlations(ms):
    a1, a2 = cols(ms, "ANTENNA1", "ANTENNA2")
    f = ak(ms, mode="manual", autocorr=True)
    np.testing.assert_array_equal(f, rows(a1 == a2, f.shape))
    assert (a1 == a2).any() and (a1 != a2).any()


def test_autocorr_with_other_selections(ms):
    a1, a2, scan = cols(ms, "ANTENNA1", "ANTENNA2", "SCAN_NUMBER")
    f = ak(ms, mode="manual", autocorr=True, antenna="C01&&*", scan="2", spw="0:2~3")
    want = np.zeros_like(f)
    want[(a1 == a2) & (a1 == 1) & (scan == 2), 2:4, :] = True
    np.testing.assert_array_equal(f, want)


def test_autocorr_with_a_bare_antenna_selects_nothing_as_casa(ms):
    """antenna='C01' is C01's cross-correlations (CASA 6.7, measured): with autocorr nothing is left."""
    f = ak(ms, mode="manual", autocorr=True, antenna="C01")
    assert not f.any()


def test_autocorr_ignored_outside_manual_as_casa(ms, caplog):
    """flagdata 6.7 passes autocorr to mode='manual' only (task_flagdata.py); quack ignores it."""
    tm, scan = cols(ms, "TIME", "SCAN_NUMBER")
    with caplog.at_level(logging.WARNING, logger="alakazam.flag"):
        f = ak(ms, mode="quack", quackinterval=60.0, autocorr=True)
    assert "autocorr=True is a parameter of mode='manual' only" in caplog.text
    t0 = {s: tm[scan == s].min() for s in np.unique(scan)}
    beg = np.array([t - t0[s] <= 60.0 for t, s in zip(tm, scan)])
    np.testing.assert_array_equal(f, rows(beg, f.shape))


def test_uvrange_metres_selects_rows(ms):
    uvw, = cols(ms, "UVW")
    f = ak(ms, mode="manual", uvrange="<1000m")
    uvd = np.hypot(uvw[:, 0], uvw[:, 1])
    np.testing.assert_array_equal(f, rows(uvd <= 1000.0, f.shape))
    assert 0 < (uvd <= 1000).sum() < len(uvd)


def ref_freq(ms):
    with table(ms + "::SPECTRAL_WINDOW", ack=False) as t:
        return float(t.getcol("REF_FREQUENCY")[0])


@pytest.mark.parametrize("text,lo,hi", [("8.185~9klambda", 8185.0, 9000.0), ("4~5.5klambda", 4000.0, 5500.0),
                                        (">12.0klambda", 12000.0, np.inf),
                                        ("2000~3500lambda", 2000.0, 3500.0)])
@pytest.mark.parametrize("ref", [None, 1.307e9])
def test_uvrange_wavelengths_selects_rows_at_ref_frequency(ms, text, lo, hi, ref):
    """CASA 6.7 flagdata (measured, test_matches_casa_flagdata and the REF_FREQUENCY change below):
    a uvrange in wavelengths selects WHOLE rows, |uv| converted at the SPW's REF_FREQUENCY."""
    if ref is not None:
        with table(ms + "::SPECTRAL_WINDOW", readonly=False, ack=False) as t:
            t.putcol("REF_FREQUENCY", np.array([ref]))
    uvw, = cols(ms, "UVW")
    f = ak(ms, mode="manual", uvrange=text)
    ul = np.hypot(uvw[:, 0], uvw[:, 1]) * ref_freq(ms) / C
    want = (ul >= lo) & (ul <= hi)
    np.testing.assert_array_equal(f, rows(want, f.shape))
    assert want.any()
    if text == "8.185~9klambda":       # rows at 8164-8208 lambda over the band: in only at 1.307 GHz
        ul_band = np.hypot(uvw[:, 0], uvw[:, 1])[:, None] * freqs(ms)[None, :] / C
        straddle = (ul_band.min(axis=1) < 8185) & (ul_band.max(axis=1) > 8185)
        assert straddle.any() and f[straddle].all() == (ref is not None)


def test_uvrange_wavelengths_with_channel_selection_counts(ms):
    from alakazam.caltasks import akflag

    uvw, = cols(ms, "UVW")
    r = akflag(vis=ms, mode="manual", uvrange="8.185~9klambda", spw="0:2~5", action="calculate")
    ul = np.hypot(uvw[:, 0], uvw[:, 1]) * ref_freq(ms) / C
    n = int(((ul >= 8185) & (ul <= 9000)).sum())
    assert n and r["newly_flagged"] == n * 4 * 4 and r["total"] == n * 4 * 4
    assert not cols(ms, "FLAG")[0].any()


@pytest.mark.parametrize("text,state", [("*BANDPASS*", 0), ("OBSERVE_TARGET*", 1), ("1", 1)])
def test_intent(ms, text, state):
    sid, = cols(ms, "STATE_ID")
    f = ak(ms, mode="manual", intent=text)
    np.testing.assert_array_equal(f, rows(sid == state, f.shape))


@pytest.mark.parametrize("text,obs", [("1", [1]), ("0", [0]), ("0~1", [0, 1])])
def test_observation(ms, text, obs):
    oid, = cols(ms, "OBSERVATION_ID")
    f = ak(ms, mode="manual", observation=text)
    np.testing.assert_array_equal(f, rows(np.isin(oid, obs), f.shape))


def test_selections_combine(ms):
    sid, oid, a1, a2, uvw = cols(ms, "STATE_ID", "OBSERVATION_ID", "ANTENNA1", "ANTENNA2", "UVW")
    f = ak(ms, mode="manual", intent="*BANDPASS*", observation="0", antenna="C00", uvrange=">1000m")
    m = (sid == 0) & (oid == 0) & ((a1 == 0) | (a2 == 0)) & (np.hypot(uvw[:, 0], uvw[:, 1]) >= 1000)
    assert m.any()
    np.testing.assert_array_equal(f, rows(m, f.shape))


def test_bad_selections_reported_together_before_anything(ms):
    from alakazam.caltasks import akflag

    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode="manual", uvrange="5parsec", intent="*NOPE*", observation="7",
               antenna="C09")
    assert {"uvrange", "intent", "observation", "antenna"} <= set(e.value.errors), e.value.errors
    msg = str(e.value)
    assert "5parsec" in msg and "*NOPE*" in msg and "7" in " ".join(e.value.errors["observation"])
    assert not os.path.exists(ms + ".flagversions") and not cols(ms, "FLAG")[0].any()


@pytest.mark.parametrize("mode", ["antint", "list"])
def test_unsupported_flagdata_modes_say_what_to_use(ms, mode):
    from alakazam.caltasks import akflag

    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode=mode, quackinterval=-1.0)
    msg = str(e.value)
    assert set(e.value.errors) == {"mode", "quackinterval"}        # every bad parameter together
    assert repr(mode) in msg and "not supported" in msg and "aoflagger" in msg and "mad" in msg
    assert "mode='tfcrop'" in msg and "mode='rflag'" in msg         # (tfcrop and rflag are available)
    assert not os.path.exists(ms + ".flagversions")


def test_unsupported_mode_in_yaml_block_and_cli(ms, capsys):
    from alakazam.cli import main
    from alakazam.flagging.config import flag_config_from_dict

    with pytest.raises(ParameterError) as e:
        flag_config_from_dict(dict(ms=ms, mode="antint", antenna="C77"))
    assert set(e.value.errors) == {"flag[0].mode", "flag[0].antenna"}
    assert "'antint'" in str(e.value) and "aoflagger" in str(e.value)
    with pytest.raises(SystemExit):
        main(["flag", "--vis", ms, "--mode", "antint"])
    err = capsys.readouterr().err
    assert "'antint' (flagdata's) is not supported" in err and "mode='aoflagger'" in err
    assert not os.path.exists(ms + ".flagversions")


def test_cli_new_options(ms):
    from alakazam.cli import main

    a1, a2 = cols(ms, "ANTENNA1", "ANTENNA2")
    assert main(["flag", "--vis", ms, "--mode", "manual", "--autocorr", "true", "--flagbackup", "false",
                 "--quiet"]) in (0, None)
    f, = cols(ms, "FLAG")
    np.testing.assert_array_equal(f, rows(a1 == a2, f.shape))


def expected_shadow(ms, tolerance):
    a1, a2, uvw, tm = cols(ms, "ANTENNA1", "ANTENNA2", "UVW", "TIME")
    near = (a1 != a2) & (np.hypot(uvw[:, 0], uvw[:, 1]) < DISH - tolerance)
    events = {(t, (b if w > 0 else a)) for t, a, b, w in zip(tm[near], a1[near], a2[near], uvw[near, 2])}
    return np.array([(t, a) in events or (t, b) in events for t, a, b in zip(tm, a1, a2)])


@pytest.mark.parametrize("tolerance", [0.0, 300.0, -500.0])
def test_shadow_rule(ms, tolerance):
    f = ak(ms, mode="shadow", tolerance=tolerance)
    want = expected_shadow(ms, tolerance)
    np.testing.assert_array_equal(f, rows(want, f.shape))
    assert 0 < want.sum() < len(want)
    a1, a2, scan = cols(ms, "ANTENNA1", "ANTENNA2", "SCAN_NUMBER")
    # scan 3's C01-C03 (w > 0) shadows C03 (ANTENNA2): its auto-correlation is flagged there
    assert f[(a1 == 3) & (a2 == 3) & (scan == 3)].all()


def test_shadow_with_workers_runs_in_process(ms):
    """The whole-MS shadow geometry is computed once, in this process, even with workers > 0."""
    f = ak(ms, mode="shadow", workers=2)
    np.testing.assert_array_equal(f, rows(expected_shadow(ms, 0.0), f.shape))


def test_shadow_with_antenna_selection_sees_every_antenna(ms):
    """The shadowing antenna need not be selected: selecting C01 flags C01's baselines with an antenna
    shadowed by any other (CASA too: it computes the baselines it did not select from the geometry;
    test_matches_casa_flagdata[mode=shadow,antenna=C01])."""
    a1, a2 = cols(ms, "ANTENNA1", "ANTENNA2")
    f = ak(ms, mode="shadow", antenna="C01")
    want = expected_shadow(ms, 0.0) & ((a1 == 1) | (a2 == 1))
    assert want[((a1 == 0) & (a2 == 1)) | ((a1 == 1) & (a2 == 2))].any()
    np.testing.assert_array_equal(f, rows(want, f.shape))


def test_shadow_addantenna_refused(ms):
    from alakazam.caltasks import akflag

    with pytest.raises(ParameterError, match="addantenna.*not supported"):
        akflag(vis=ms, mode="shadow", addantenna="ants.txt")


def elevations(ms):
    """(row, 2) elevation (deg) at ANTENNA1 and ANTENNA2: the field direction converted to AZEL by
    casacore measures at each antenna and TIME (independent of alakazam's zenith interpolation)."""
    from casacore.measures import measures

    a1, a2, tm, fld = cols(ms, "ANTENNA1", "ANTENNA2", "TIME", "FIELD_ID")
    with table(ms + "::ANTENNA", ack=False) as t:
        pos = t.getcol("POSITION")
    with table(ms + "::FIELD", ack=False) as t:
        pd = t.getcol("PHASE_DIR")[:, 0]
    me = measures()
    el = {}
    for key in set(zip(tm.tolist(), fld.tolist())):
        t, f = key
        me.doframe(me.epoch("UTC", f"{t!r}s"))
        d = me.direction("J2000", f"{float(pd[f, 0])!r}rad", f"{float(pd[f, 1])!r}rad")
        for a in range(len(pos)):
            me.doframe(me.position("ITRF", *[f"{float(v)!r}m" for v in pos[a]]))
            el[(t, f, a)] = np.degrees(me.measure(d, "AZEL")["m1"]["value"])
    return np.array([[el[(t, f, a)], el[(t, f, b)]] for t, f, a, b in zip(tm, fld, a1, a2)])


@pytest.mark.parametrize("lower,upper", [(40.0, 90.0), (0.0, 60.0), (10.5, 85.5)])
def test_elevation_rule(ms, lower, upper):
    el = elevations(ms)
    f = ak(ms, mode="elevation", lowerlimit=lower, upperlimit=upper)
    want = ((el < lower) | (el > upper)).any(axis=1)
    # no sample within 0.01 deg of a limit (the comparison is then exact whatever the rounding)
    assert np.abs(el - lower).min() > 0.01 and np.abs(el - upper).min() > 0.01
    assert 0 < want.sum() < len(want)
    np.testing.assert_array_equal(f, rows(want, f.shape))


def test_elevation_limits_checked(ms):
    from alakazam.caltasks import akflag

    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode="elevation", lowerlimit=50.0, upperlimit=40.0)
    assert set(e.value.errors) == {"upperlimit"} and "must exceed lowerlimit" in str(e.value)
    with pytest.raises(ParameterError) as e:
        akflag(vis=ms, mode="elevation", lowerlimit=-95.0)
    assert set(e.value.errors) == {"lowerlimit"}


def test_elevation_without_antenna_positions_refused_before_anything(ms):
    from alakazam.caltasks import akflag
    from alakazam.errors import AlakazamError

    with table(ms + "::ANTENNA", readonly=False, ack=False) as t:
        pos = t.getcol("POSITION")
        pos[2] = 0.0
        t.putcol("POSITION", pos)
    with pytest.raises(AlakazamError, match="C02.*no ITRF position"):
        akflag(vis=ms, mode="elevation", lowerlimit=30.0)
    assert not os.path.exists(ms + ".flagversions") and not cols(ms, "FLAG")[0].any()


def test_flagbackup_false_still_saves_a_version(ms, caplog):
    """alakazam's rule (FLAG only after a saved flag version) wins over flagbackup=False: the version is
    saved and a warning says so."""
    from alakazam.core import flagversions

    with caplog.at_level(logging.WARNING, logger="alakazam.flag"):
        f = ak(ms, mode="manual", scan="1", flagbackup=False)
    assert "flagbackup=False" in caplog.text and "saved anyway" in caplog.text
    assert [v["name"] for v in flagversions.list_versions(ms)] == ["akflag_1"]
    flagversions.restore(ms, "akflag_1")
    assert f.any() and not cols(ms, "FLAG")[0].any()


# --------------------------------------------------------------------------------------------------
# against CASA flagdata
# --------------------------------------------------------------------------------------------------
JOBS = [dict(mode="quack", quackinterval=qi, quackmode=m) for qi in (60.0, 90.0, 120.0)
        for m in ("beg", "endb", "end", "tail")] + [
    dict(mode="quack", quackinterval=120.0, quackmode="beg", antenna="C01&C02", intent="*BANDPASS*"),
    dict(mode="quack", quackinterval=60.0, quackmode="endb", observation="1", spw="0:1~2"),
    dict(mode="clip", clipminmax=[0.0, 1.0], uvrange=">2000m"),
    # (the scan start is the first SELECTED integration: 07:48:24.8 in scan 1, as CASA)
    dict(mode="quack", quackinterval=60.0, quackmode="beg", timerange="07:48:00~08:00:00"),
    dict(mode="manual", autocorr=True),
    dict(mode="manual", autocorr=True, antenna="C01&&*", spw="0:2~3"),
    dict(mode="manual", uvrange="<1000m"),
    dict(mode="manual", uvrange="4~5.5klambda"),
    dict(mode="manual", uvrange="8.185~9klambda"),
    dict(mode="manual", uvrange="8.185~9klambda", spw="0:2~5", antenna="C01"),
    dict(mode="manual", uvrange=">12.0klambda", spw="0:4~7", correlation="XX"),
    dict(mode="manual", intent="*BANDPASS*"),
    dict(mode="manual", intent="OBSERVE_TARGET*", antenna="C00"),
    dict(mode="manual", observation="1"),
    dict(mode="shadow"),
    dict(mode="shadow", tolerance=300.0),
    dict(mode="shadow", tolerance=-500.0),
    dict(mode="shadow", antenna="C01"),
    dict(mode="shadow", antenna="C02&C03"),
    dict(mode="manual", antenna="C01"),
    dict(mode="manual", antenna="!C02"),
    dict(mode="manual", antenna="C01,C02"),
    dict(mode="manual", antenna="C01&&*"),
    dict(mode="elevation", lowerlimit=40.0),
    dict(mode="elevation", lowerlimit=0.0, upperlimit=60.0),
    dict(mode="elevation", lowerlimit=10.5, upperlimit=85.5),
    dict(mode="elevation", lowerlimit=10.5, upperlimit=85.5, scan="1,2", antenna="C01"),
]


@pytest.fixture(scope="module")
def casa_flags(base_ms, tmp_path_factory):
    """{job index: FLAG (row, chan, corr)} of CASA flagdata run on a copy of the MS for each job."""
    d = tmp_path_factory.mktemp("casa_parity")
    code = textwrap.dedent(f"""
        import json, shutil
        import numpy as np
        from casatasks import flagdata
        from casatools import table
        tb = table()
        for i, kw in enumerate(json.loads({json.dumps(json.dumps(JOBS))})):
            ms = {str(d)!r} + "/c%d.ms" % i
            shutil.copytree({base_ms!r}, ms)
            try:
                flagdata(vis=ms, flagbackup=False, **kw)
            except RuntimeError as e:          # (a selection without data: CASA raises)
                print("job", i, kw, "failed:", e)
                raise
            tb.open(ms)
            np.save(ms + ".npy", np.transpose(tb.getcol("FLAG"), (2, 1, 0)))
            tb.close()
            shutil.rmtree(ms)
    """)
    r = subprocess.run([CASA_PY, "-c", code], cwd=str(d), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-1000:] + r.stderr[-3000:]
    return {i: np.load(str(d / f"c{i}.ms.npy")) for i in range(len(JOBS))}


@needs_casa
@pytest.mark.parametrize("i", range(len(JOBS)),
                         ids=[",".join(f"{k}={v}" for k, v in j.items()) for j in JOBS])
def test_matches_casa_flagdata(ms, casa_flags, i):
    f = ak(ms, **JOBS[i])
    want = casa_flags[i]
    assert want.any()
    np.testing.assert_array_equal(f, want)


@pytest.fixture(scope="module")
def gap_ms(base_ms, tmp_path_factory):
    """The MS without the first 3 integrations of C00-C01 in scan 1, and C00-C02 flagged there."""
    out = str(tmp_path_factory.mktemp("gap") / "gap.ms")
    with table(base_ms, ack=False) as t:
        tm, s, a1, a2 = (t.getcol(c) for c in ("TIME", "SCAN_NUMBER", "ANTENNA1", "ANTENNA2"))
        early = (s == 1) & (tm < tm[s == 1].min() + 150)
        q = t.selectrows(np.flatnonzero(~(early & (a1 == 0) & (a2 == 1))))
        q.copy(out, deep=True)
        q.close()
    with table(out, readonly=False, ack=False) as t:
        tm, s, a1, a2, f = (t.getcol(c) for c in ("TIME", "SCAN_NUMBER", "ANTENNA1", "ANTENNA2", "FLAG"))
        f[(s == 1) & (tm < tm[s == 1].min() + 150) & (a1 == 0) & (a2 == 2)] = True
        t.putcol("FLAG", f)
        t.putcol("FLAG_ROW", f.all(axis=(1, 2)))
    return out


@pytest.mark.parametrize("quackmode", ["beg", "endb"])
def test_quack_scan_edges_are_per_scan_not_per_baseline(gap_ms, tmp_path, quackmode):
    """A baseline that starts late in a scan is quacked from the SCAN's first integration, and earlier
    flags do not move it (CASA 6.7 flagdata, measured on this MS: C00-C01 gets nothing flagged in scan
    1 with quackmode='beg'; the same with quackincrement=True: tests/test_review_s25_task.py)."""
    ms = str(tmp_path / "g.ms")
    shutil.copytree(gap_ms, ms)
    tm, scan, f0 = cols(ms, "TIME", "SCAN_NUMBER", "FLAG")
    f = ak(ms, mode="quack", quackinterval=60.0, quackmode=quackmode)
    t0 = {s: tm[scan == s].min() for s in np.unique(scan)}
    t1 = {s: tm[scan == s].max() for s in np.unique(scan)}
    edge = np.array([(t - t0[s] if quackmode == "beg" else t1[s] - t) <= 60.0 for t, s in zip(tm, scan)])
    np.testing.assert_array_equal(f, f0 | rows(edge, f.shape))
    if os.access(CASA_PY, os.X_OK):
        casa = str(tmp_path / "c.ms")
        shutil.copytree(gap_ms, casa)
        code = (f"from casatasks import flagdata\nflagdata(vis={casa!r}, mode='quack', quackinterval=60.0, "
                f"quackmode={quackmode!r}, flagbackup=False)\n")
        r = subprocess.run([CASA_PY, "-c", code], cwd=str(tmp_path), capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        np.testing.assert_array_equal(f, cols(casa, "FLAG")[0])


def test_selection_without_rows_saves_no_flag_version(tmp_path, caplog):
    """An antenna of the ANTENNA table without rows (a pad listed, the antenna absent): nothing to flag,
    so no flag version either (one was saved for nothing), and a warning says so."""
    import logging

    from alakazam.caltasks import akflag

    ms = str(tmp_path / "x.ms")
    simulate_ms(ms, n_ant=4, n_ant_extra=1, n_chan=(4,), duration_h=0.5, dead_ant=False)
    with table(ms, ack=False) as t:
        present = set(t.getcol("ANTENNA1")) | set(t.getcol("ANTENNA2"))
    with table(ms + "/ANTENNA", ack=False) as t:
        absent = [n for i, n in enumerate(t.getcol("NAME")) if i not in present]
    assert absent
    f0 = cols(ms, "FLAG")[0]
    with caplog.at_level(logging.WARNING, logger="alakazam.flag"):
        out = akflag(vis=ms, mode="manual", antenna=absent[0])
    assert out["version"] is None and out["total"] == 0
    assert not os.path.exists(ms + ".flagversions") and np.array_equal(cols(ms, "FLAG")[0], f0)
    assert any("no flag version saved" in r.getMessage() for r in caplog.records)
