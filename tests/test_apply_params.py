"""akapply's CASA parameters spwmap, interp 'time,freq' (with gap filling across flagged bandpass
channels) and calwt, against CASA's documented semantics (calibration/spwmap.py, core/freqinterp.py,
calibration/calwt.py)."""

import logging
import shutil

import numpy as np
import pytest
from casacore.tables import table

from alakazam.calibration import chain
from alakazam.calibration.apply import run_apply
from alakazam.caltasks import akapply
from alakazam.config import apply_config_from_dict, solve_config_from_dict
from alakazam.errors import AlakazamError, ParameterError
from alakazam.flow import run_solve
from alakazam.io import hdf5
from alakazam.sim import simulate_ms

N_CHAN = 8


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """A 2-SPW MS (WEIGHT_SPECTRUM present); G per channel (bandpass) and G full band, on SPW 0 only."""
    d = tmp_path_factory.mktemp("applyparams")
    ms = str(d / "p.ms")
    simulate_ms(ms, feed="linear", n_ant=5, n_ant_extra=0, n_chan=(N_CHAN, N_CHAN), duration_h=0.5, int_s=60,
                scan_len_s=300, noise=0.05, seed=5, leakage=False, dead_ant=False, flag_rows=0.0,
                weight_spectrum=True)
    cal = str(d / "c.h5")
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant="C00", jones=["G", "G"], spw="0",
                                          field=["3C286"], time_interval="inf",
                                          freq_interval=["1MHz", "full"], min_bl_per_ant=0)))
    return ms, cal


def _copy(src, tmp_path):
    ms = str(tmp_path / "m.ms")
    shutil.copytree(src, ms)
    return ms


def _rows(ms, spw_id, field_id=None):
    """Columns of the rows of SPW ``spw_id`` (and field)."""
    with table(ms + "::DATA_DESCRIPTION", ack=False) as t:
        ddid = list(t.getcol("SPECTRAL_WINDOW_ID")).index(spw_id)
    with table(ms + "::ANTENNA", ack=False) as t:
        names = list(t.getcol("NAME"))
    with table(ms, ack=False) as t:
        q = t.query(f"DATA_DESC_ID=={ddid}" + (f" && FIELD_ID=={field_id}" if field_id is not None else ""))
        out = {c: q.getcol(c) for c in q.colnames() if c in (
            "DATA", "CORRECTED_DATA", "ANTENNA1", "ANTENNA2", "WEIGHT", "WEIGHT_SPECTRUM", "SIGMA", "FLAG")}
    return out, names


def _gains(cal, key, spw=0):
    """{antenna name: (n_freq, 2) diagonal} of a one-time solution set of SPW ``spw``."""
    s = [x for x in hdf5.read_term(cal, key) if x.spw == spw]
    assert len(s) == 1 and s[0].jones.shape[2] == 1
    s = s[0]
    return {a: np.stack([s.jones[i, :, 0, 0, 0], s.jones[i, :, 0, 1, 1]], -1) for i, a in
            enumerate(s.ant_names)}, s


def _expected(r, names, g):
    """DATA / (g_p g_q^*) for XX, YY; g per antenna (n_freq or 1, 2)."""
    gp = np.stack([g[names[a]] for a in r["ANTENNA1"]])
    gq = np.stack([g[names[a]] for a in r["ANTENNA2"]])
    d = r["DATA"]
    return np.stack([d[..., 0] / (gp[..., 0] * gq[..., 0].conj()),
                     d[..., 3] / (gp[..., 1] * gq[..., 1].conj())], -1)


def test_spwmap_applies_spw0_solutions_to_spw1(solved, tmp_path):
    ms = _copy(solved[0], tmp_path)
    cal = solved[1]
    with pytest.raises(AlakazamError, match="no solutions for SPW 1"):
        run_apply(apply_config_from_dict(dict(ms=ms, jones=["G1"], tables=[cal], spw="1")))
    res = akapply(vis=ms, gaintable=[cal], jones=["G1"], spw="1", spwmap=[0, 0])
    assert res["rows"] > 0
    r, names = _rows(ms, 1)
    g, _ = _gains(cal, "G1")
    exp = _expected(r, names, g)
    got = np.stack([r["CORRECTED_DATA"][..., 0], r["CORRECTED_DATA"][..., 3]], -1)
    assert np.allclose(got, exp, rtol=2e-6, atol=1e-6)
    # SPW 0 rows untouched by an apply of SPW 1 only (new column initialised with DATA)
    r0, _ = _rows(ms, 0)
    assert np.array_equal(r0["CORRECTED_DATA"], r0["DATA"])


def test_spwmap_bandpass_bins_by_position_in_band(solved, tmp_path, caplog):
    """SPW 0's per-channel solutions (8 bins) applied to SPW 1 (no overlap): channel k <- bin k, with a
    warning (CASA's applycal takes the nearest frequency, the edge bin, there; G1 has one bin: no warning)."""
    ms = _copy(solved[0], tmp_path)
    cal = solved[1]
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        akapply(vis=ms, gaintable=[cal, cal], jones=["G0", "G1"], spw="1", spwmap=[[0, 0], [0, 0]])
    said = [r.getMessage() for r in caplog.records if "matched by position in the band" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("spwmap: G0: SPW 0's frequency bins serve SPW 1"), said
    r, names = _rows(ms, 1)
    g0, s0 = _gains(cal, "G0")
    assert s0.jones.shape[1] == N_CHAN
    g1, _ = _gains(cal, "G1")
    g = {a: g0[a] * g1[a] for a in g0}
    exp = _expected(r, names, g)
    got = np.stack([r["CORRECTED_DATA"][..., 0], r["CORRECTED_DATA"][..., 3]], -1)
    assert np.allclose(got, exp, rtol=2e-6, atol=1e-6)


def test_spwmap_errors_name_the_parameter(solved):
    ms, cal = solved
    with pytest.raises(ParameterError, match="spwmap"):
        akapply(vis=ms, gaintable=[cal], jones=["G1"], spwmap=[0, "x"])
    with pytest.raises(ParameterError, match="spwmap.*2 lists but there are 1 terms"):
        akapply(vis=ms, gaintable=[cal], jones=["G1"], spwmap=[[0], [0]])
    with pytest.raises(ParameterError, match=r"spwmap: \[0, 3\] maps SPW 1 to SPW 3, which G1 of "):
        akapply(vis=ms, gaintable=[cal], jones=["G1"], spw="1", spwmap=[0, 3])


def test_a_bad_spwmap_alone_is_reported(solved, tmp_path):
    """A bad spwmap entry is the error: the checks that need the mapping (here G1 has no solutions of its
    own for SPW 1, which the user's map would have served from SPW 0) are not reported as well -- a
    review: spwmap=[-1, 0] was followed by "G1 ... has no solutions for SPW 1 ... give spwmap".  The
    same in a YAML file's preflight."""
    from alakazam.cli import main

    ms, cal = solved
    with pytest.raises(ParameterError) as e:
        akapply(vis=ms, gaintable=[cal], jones=["G1"], spwmap=[-1, 0])
    assert list(e.value.errors) == ["akapply.spwmap"], e.value.errors
    assert "-1 is not an SPW id" in str(e.value)
    y = tmp_path / "a.yaml"
    y.write_text(f"apply:\n  - ms: {ms}\n    tables: [{cal}]\n    jones: [G1]\n    spwmap: [-1, 0]\n")
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf), contextlib.redirect_stdout(buf):
        rc = main(["run", str(y)])
    assert rc != 0
    assert "-1 is not an SPW id" in buf.getvalue() and "no solutions for SPW" not in buf.getvalue(), \
        buf.getvalue()


# ------------------------------------------------------------------ frequency interpolation

def _bp_term(freq_interp, flagged=(2,)):
    """One antenna, 5 bins at 1..5 MHz (offset 1 GHz), bin values amp (1 + 0.1 k) phase 0.2 k."""
    f = 1e9 + 1e6 * np.arange(1, 6)
    k = np.arange(5)
    v = (1 + 0.1 * k) * np.exp(1j * 0.2 * k)
    jones = np.zeros((1, 5, 1, 2, 2), complex)
    jones[0, :, 0, 0, 0] = v
    jones[0, :, 0, 1, 1] = v
    flags = np.zeros((1, 5, 1), bool)
    flags[0, list(flagged), 0] = True
    s = hdf5.SolutionSet(jones=jones, flags=flags, time=np.array([100.0]), freq=f,
                         attrs={"spw": 0, "field_name": "F", "ant_names": ["A"], "jones_type": "G"})
    t = chain.LoadedTerm("G0", "G", [s])
    t.freq_interp = freq_interp
    return t, f, v


@pytest.mark.parametrize("mode", ["", "nearestflag", "linearflag", "nearest", "linear"])
def test_interp_freq_modes_on_flagged_bandpass_channel(mode):
    term, f, v = _bp_term(mode)
    # the solution channels themselves, and a channel a quarter of the way from bin 1 to bin 2
    targets = np.concatenate([f, [f[1] + 0.25e6]])
    j, fl, _ = chain.term_tables(term, 0, [100.0], targets, ["A"], "F")
    got = j[0, 0, :, 0, 0]
    flg = fl[0, 0]
    ok = [0, 1, 3, 4]
    assert np.allclose(got[ok], v[ok]) and not flg[ok].any()      # unflagged bins pass through
    mid = 1.2 * np.exp(1j * 0.4)         # linear between bins 1 and 3 (amp 1.1, 1.3; phase 0.2, 0.6)
    quarter = (1.1 + 0.25 * 0.5 * 0.2) * np.exp(1j * (0.2 + 0.125 * 0.4))
    if mode in ("", "nearestflag"):
        assert flg[2] and not flg[5]                               # nearest bin 1 serves the quarter
        assert np.isclose(got[5], v[1])
    elif mode == "linearflag":
        assert flg[2] and flg[5]                                   # no bridging of the flagged bin
    elif mode == "nearest":
        assert not flg[2] and np.isclose(got[2], v[1])             # nearest unflagged (tie -> lower)
        assert np.isclose(got[5], v[1])
    else:                                                          # linear: the gap is filled
        assert not flg[2] and not flg[5]
        assert np.isclose(got[2], mid) and np.isclose(got[5], quarter)


def test_interp_freq_outside_band_holds_end_value():
    term, f, v = _bp_term("linear", flagged=(4,))
    j, fl, _ = chain.term_tables(term, 0, [100.0], [f[0] - 3e6, f[4] + 3e6], ["A"], "F")
    assert np.allclose(j[0, 0, :, 0, 0], [v[0], v[3]]) and not fl.any()
    term, f, v = _bp_term("linearflag", flagged=(4,))
    _, fl, _ = chain.term_tables(term, 0, [100.0], [f[0] - 3e6, f[4] + 3e6], ["A"], "F")
    assert list(fl[0, 0]) == [False, True]


def test_interp_parameter_parsing(solved):
    ms, cal = solved
    cfg = apply_config_from_dict(dict(ms=ms, jones=["G0"], tables=[cal], time_interp=["linear,linearflag"]))
    assert (cfg.terms[0].time_interp, cfg.terms[0].freq_interp) == ("linear", "linearflag")
    with pytest.raises(ParameterError, match=r"frequency interpolation 'cubic' is not allowed"):
        akapply(vis=ms, gaintable=[cal], jones=["G0"], interp=["linear,cubic"])
    with pytest.raises(ParameterError, match=r"time interpolation 'foo'"):
        akapply(vis=ms, gaintable=[cal], jones=["G0"], interp=["foo,linear"])


def test_interp_linear_fills_flagged_bandpass_channel_end_to_end(solved, tmp_path):
    """A bandpass table with channel 3 flagged: 'nearest,linear' corrects channel 3 with the linear
    interpolation of channels 2 and 4; the default leaves it without a solution (calflag flags it)."""
    ms = _copy(solved[0], tmp_path)
    cal = str(tmp_path / "bp.h5")
    shutil.copy(solved[1], cal)
    sets = hdf5.read_term(cal, "G0")
    for s in sets:
        s.flags[:, 3] = True
    hdf5.write_term(cal, "G0", sets)
    res = akapply(vis=ms, gaintable=[cal], jones=["G0"], spw="0", applymode="calflag")
    r, names = _rows(ms, 0)
    assert r["FLAG"][:, 3].all() and res["flagged_by_solution"] > 0
    (tmp_path / "x").mkdir()
    ms2 = _copy(solved[0], tmp_path / "x")
    akapply(vis=ms2, gaintable=[cal], jones=["G0"], spw="0", applymode="calflag", interp=["nearest,linear"])
    r, names = _rows(ms2, 0)
    assert not r["FLAG"][:, 3].any()
    g0, s0 = _gains(solved[1], "G0")
    g = {}
    for a, v in g0.items():
        lin = v.copy()
        amp = 0.5 * (np.abs(v[2]) + np.abs(v[4]))
        ph = np.angle(v[2]) + 0.5 * np.angle(v[4] / v[2])
        lin[3] = amp * np.exp(1j * ph)
        g[a] = lin
    exp = _expected(r, names, g)
    got = np.stack([r["CORRECTED_DATA"][..., 0], r["CORRECTED_DATA"][..., 3]], -1)
    assert np.allclose(got, exp, rtol=2e-6, atol=1e-6)


# ------------------------------------------------------------------ calwt

def test_calwt_scales_weights_by_gain_amplitudes(solved, tmp_path):
    ms = _copy(solved[0], tmp_path)
    cal = solved[1]
    before, names = _rows(ms, 0)
    akapply(vis=ms, gaintable=[cal], jones=["G0"], spw="0")            # default calwt=False
    r, _ = _rows(ms, 0)
    assert np.array_equal(r["WEIGHT"], before["WEIGHT"])
    assert np.array_equal(r["WEIGHT_SPECTRUM"], before["WEIGHT_SPECTRUM"])
    for _ in range(2):           # twice: the same weights (derived from SIGMA, never compounded)
        akapply(vis=ms, gaintable=[cal, cal], jones=["G0", "G1"], spw="0", calwt=[True, False])
        r, _ = _rows(ms, 0)
        g0, _ = _gains(cal, "G0")
        hand = {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1)}
        gp = np.stack([np.abs(g0[names[a]]) ** 2 for a in r["ANTENNA1"]])      # (n_row, n_chan, 2)
        gq = np.stack([np.abs(g0[names[a]]) ** 2 for a in r["ANTENNA2"]])
        fac = np.stack([gp[..., hand[c][0]] * gq[..., hand[c][1]] for c in range(4)], -1)
        w0 = 1 / r["SIGMA"].astype(float) ** 2
        assert np.allclose(r["WEIGHT_SPECTRUM"], w0[:, None, :] * fac, rtol=1e-5)
        assert np.allclose(r["WEIGHT"], w0 * fac.mean(axis=1), rtol=1e-5)
        assert np.array_equal(r["SIGMA"], before["SIGMA"])                 # SIGMA belongs to DATA
        # the gains are not 1: the test can fail
        assert np.abs(np.log(r["WEIGHT"] / before["WEIGHT"])).max() > 0.05
    # SPW 1 (not applied) keeps its weights
    r1, _ = _rows(ms, 1)
    b1, _ = _rows(solved[0], 1)
    assert np.array_equal(r1["WEIGHT"], b1["WEIGHT"])


def test_calwt_weights_are_the_inverse_variance_of_the_corrected_data(solved, tmp_path):
    """The weights calwt writes describe CORRECTED_DATA: WEIGHT_SPECTRUM x |CORRECTED - MODEL|^2 / 2 has
    mean 1 on every baseline (the simulator's noise is SIGMA in DATA; the corrected noise is SIGMA /
    |g_a g_b|) -- on the unpolarised 3C147 with constant gains, a bandpass solved on it and applied.
    A gain of amplitude 10 on C01 (the others' gains 1) gives C01's baselines 100 / SIGMA^2,
    as CASA 6.7 applycal(calwt=True) writes (measured: WEIGHT / (1/SIGMA^2) = 100.0 on C01's baselines,
    1.0 elsewhere); the former weights 1 / (SIGMA^2 |g_a g_b|^2) gave 0.01 there."""
    import h5py

    ms = str(tmp_path / "w.ms")
    simulate_ms(ms, feed="linear", n_ant=5, n_ant_extra=0, n_chan=(N_CHAN,), duration_h=0.5, int_s=60,
                scan_len_s=300, noise=0.05, seed=15, leakage=False, crosshand=False, time_gains=False,
                dead_ant=False, flag_rows=0.0, weight_spectrum=True)
    bp = str(tmp_path / "bp.h5")
    run_solve(solve_config_from_dict(dict(ms=ms, output=bp, ref_ant="C00", jones=["G"], field=["3C147"],
                                          time_interval="inf", freq_interval=["1MHz"], min_bl_per_ant=0)))
    akapply(vis=ms, gaintable=[bp], jones=["G0"], field="3C147", calwt=True)
    r, names = _rows(ms, 0)
    with table(ms, ack=False) as t:
        model = t.getcol("MODEL_DATA")
        fld = t.getcol("FIELD_ID")
    with table(ms + "::FIELD", ack=False) as t:
        use = (fld == list(t.getcol("NAME")).index("3C147")) & (r["ANTENNA1"] != r["ANTENNA2"])
    z = r["WEIGHT_SPECTRUM"] * np.abs(r["CORRECTED_DATA"] - model) ** 2 / 2
    ok = ~r["FLAG"] & (r["WEIGHT_SPECTRUM"] > 0)
    bl = r["ANTENNA1"] * 100 + r["ANTENNA2"]
    means, ns = [], []
    for b in np.unique(bl[use]):
        rows = use & (bl == b)
        zz = z[rows][..., [0, 3]][ok[rows][..., [0, 3]]]
        means.append(zz.mean())
        ns.append(zz.size)
    means, ns = np.array(means), np.array(ns)
    # mean of n chi^2(2)/2 samples: standard error 1/sqrt(n); the bandpass's own error adds ~1/n_int
    assert np.all(np.abs(means - 1) < 5 / np.sqrt(ns) + 0.15), means
    # the gains differ between baselines by more than that: the former convention (|g_a g_b|^-4 off)
    # fails the test
    g = np.stack([np.abs(v) for v in _gains(bp, "G0")[0].values()])       # (n_ant, n_chan, 2)
    g4 = (g[:, None] * g[None, :]) ** 4
    assert g4.max() / g4.min() > 1.5
    # a gain of amplitude 10 on C01, 1 elsewhere (CASA's measured case)
    ms = _copy(solved[0], tmp_path)
    cal = solved[1]
    # a gain of amplitude 10 on C01, 1 elsewhere (CASA's measured case)
    ten = str(tmp_path / "ten.h5")
    shutil.copyfile(cal, ten)
    with h5py.File(ten, "r+") as f:
        def put(name, obj):
            if name.endswith("/jones") and "G1" in name:
                j = np.zeros(obj.shape, obj.dtype)
                j[..., 0, 0] = j[..., 1, 1] = 1.0
                j[names.index("C01") if obj.shape[0] == len(names) else 1, ..., 0, 0] = 10.0
                j[names.index("C01") if obj.shape[0] == len(names) else 1, ..., 1, 1] = 10.0
                obj[...] = j
        f.visititems(put)
    with h5py.File(ten, "r") as f:
        ants = [a.decode() if isinstance(a, bytes) else str(a) for a in
                f[next(k for k in _leaf_paths(f) if "G1" in k)].attrs["ant_names"]]
    assert ants.index("C01") == 1
    akapply(vis=ms, gaintable=[ten], jones=["G1"], spw="0", calwt=True)
    r, names = _rows(ms, 0)
    ratio = r["WEIGHT"] * r["SIGMA"].astype(float) ** 2
    c01 = names.index("C01")
    on = (r["ANTENNA1"] == c01) ^ (r["ANTENNA2"] == c01)
    np.testing.assert_allclose(ratio[on], 100.0, rtol=1e-6)
    np.testing.assert_allclose(ratio[~on & (r["ANTENNA1"] != r["ANTENNA2"])], 1.0, rtol=1e-6)


def _leaf_paths(f):
    out = []
    f.visit(lambda name: out.append(name) if name.endswith("/jones") else None)
    return [p.rsplit("/", 1)[0] for p in out]


def test_calwt_bad_value(solved):
    ms, cal = solved
    with pytest.raises(ParameterError, match="calwt"):
        akapply(vis=ms, gaintable=[cal], jones=["G0"], calwt=[True, False])


def test_interp_nearestflag_equals_default_mapping(solved, tmp_path):
    """No freq part (fast diagonal path) and 'nearestflag' (general path) give the same corrected data
    and flags on a bandpass table with a flagged channel."""
    cal = str(tmp_path / "bp.h5")
    shutil.copy(solved[1], cal)
    sets = hdf5.read_term(cal, "G0")
    for s in sets:
        s.flags[1:3, 5] = True
    hdf5.write_term(cal, "G0", sets)
    out = []
    for k, interp in enumerate(["nearest", "nearest,nearestflag"]):
        (tmp_path / str(k)).mkdir()
        ms = _copy(solved[0], tmp_path / str(k))
        akapply(vis=ms, gaintable=[cal, cal], jones=["G0", "G1"], spw="0", applymode="calflag",
                interp=[interp, "nearest"])
        out.append(_rows(ms, 0)[0])
    assert out[0]["FLAG"][:, 5].any() and not out[0]["FLAG"][:, 4].any()
    assert np.array_equal(out[0]["FLAG"], out[1]["FLAG"])
    assert np.allclose(out[0]["CORRECTED_DATA"], out[1]["CORRECTED_DATA"], rtol=1e-6, atol=1e-6)
