"""Reference antenna: the priority list, refantmode flex / strict and re-referencing to one phase
reference (alakazam/solvers/rereference.py, docs/conventions.md "Re-referencing").

The truth tests flag the reference antenna C00 (FLAG set with python-casacore) in some scans of each
calibrator, solve K per scan, a bandpass per scan (CASA bandpass's solint='inf' without combine) and
time gains per 5 min on both calibrators, and compare with the simulator's truth referenced to C00 --
what the unflagged case determines.  The
simulations have no time-gain drift (``time_gains=False``): the gains are constant, so the phase of
the fallback antenna relative to C00 is the same in every cell, the bridge is exact up to noise, and
the truth in C00's gauge is defined in every cell (with drifting gains C00's phase in a cell where it
has no data is not observable; only a common phase per feed, which cancels in the parallel hands, is
then interpolated).  3C147's MODEL_DATA is scaled to its true flux so that its gains are the antenna
gains and the target can be interpolated between both calibrators.

Bounds (as tests/test_flow.py, tests/test_flow_fullpol.py): 5 x the standard error of each term in the
unflagged case, x sqrt(2) where a referenced quantity carries the reference antenna's error; a
re-referenced cell also carries the bridge's error (the fallback antenna's solution in the neighbouring
cells solved with C00, interpolated), another x sqrt(2) there.

Corrected residuals: ``(CORRECTED_DATA - true model) |b_a,p b_b,q| / sigma`` over unflagged data,
b the true bandpass amplitude (the corrected data's noise is sigma / |b_a,p b_b,q|); the ratio is the rms
of that per real component, 1 for pure noise.
"""

import shutil

import numpy as np
import pytest

from alakazam.calibration.apply import run_apply
from alakazam.config import apply_config_from_dict, solve_config_from_dict
from alakazam.errors import ParameterError
from alakazam.flow import run_solve
from alakazam.io import hdf5
from alakazam.sim import simulate_ms
from alakazam.sim.simulate import _rotation
from alakazam.solvers.common import choose_ref

TWO_PI_NS = 2 * np.pi * 1e-9
NOISE = 0.05
K_SIGMA = 5.0
#: scans in which C00 is flagged: 3C286 scan 4, 3C147 scans 5 and 8 (of 1, 4, 7, 10 and 2, 5, 8, 11)
FLAGGED = (4, 5, 8)


def flag_antenna(ms, name, scans, chans=None):
    """Set FLAG for every row of antenna ``name`` in ``scans`` (all channels or ``chans``)."""
    from casacore.tables import table

    with table(f"{ms}::ANTENNA", ack=False) as t:
        aid = list(t.getcol("NAME")).index(name)
    with table(ms, readonly=False, ack=False) as t:
        sel = ",".join(str(s) for s in scans)
        q = t.query(f"(ANTENNA1=={aid} || ANTENNA2=={aid}) && SCAN_NUMBER IN [{sel}]")
        f = q.getcol("FLAG")
        f[:, slice(None) if chans is None else chans, :] = True
        q.putcol("FLAG", f)
        q.close()


def true_models(ms, truth):
    """MODEL_DATA of 3C147 scaled to its true flux (the simulator writes 1 Jy for the bootstrap case)."""
    from casacore.tables import table

    fid = truth.field_names.index("3C147")
    scale = truth.flux_true["3C147"][0] / truth.flux_model["3C147"][0]
    with table(ms, readonly=False, ack=False) as t:
        q = t.query(f"FIELD_ID=={fid}")
        q.putcol("MODEL_DATA", q.getcol("MODEL_DATA") * scale)
        q.close()


def residual_ratio(ms, truth, field, feed_frame=False):
    """(parallel, cross) rms of the noise-normalised corrected residual (module docstring); with
    ``feed_frame`` the corrected data were not rotated back (akapply parang=False) and the model is
    rotated to the feed frame, P M P^H."""
    from casacore.tables import table

    fid = truth.field_names.index(field)
    with table(ms, ack=False) as t:
        q = t.query(f"FIELD_ID=={fid} && ANTENNA1!=ANTENNA2 && DATA_DESC_ID==0")
        c, m, f = q.getcol("CORRECTED_DATA"), q.getcol("MODEL_DATA"), q.getcol("FLAG")
        a1, a2, tm = q.getcol("ANTENNA1"), q.getcol("ANTENNA2"), q.getcol("TIME")
        q.close()
    with table(f"{ms}::ANTENNA", ack=False) as t:
        names = list(t.getcol("NAME"))
    act = {names.index(n): i for i, n in enumerate(truth.ant_names)}
    i1, i2 = np.array([act[a] for a in a1]), np.array([act[a] for a in a2])
    if feed_frame:
        # each antenna's own parallactic angle, as in the simulator's DATA (Truth.parang_ant): P_a M P_b^H
        # (with one angle for the array the antennas' differences, up to ~0.4 deg near transit, put a
        # phase into a circular feed's parallel hands that the model lacked: 1.07 x the noise on 3C286)
        it = np.clip(np.searchsorted(truth.times, tm - 1e-3), 0, len(truth.times) - 1)
        assert np.abs(truth.times[it] - tm).max() < 1e-3
        pa = truth.parang_ant[field][it]                                    # (row, n_ant)
        rows = np.arange(len(it))
        P1, P2 = _rotation(pa[rows, i1], truth.feed), _rotation(pa[rows, i2], truth.feed)   # (row, 2, 2)
        m = np.einsum("rij,rcjk,rlk->rcil", P1, m.reshape(m.shape[:2] + (2, 2)), np.conj(P2)).reshape(m.shape)
    b = np.abs(truth.bandpass[0])                                 # (n_ant, n_chan, 2)
    scale = np.empty(c.shape)
    for k, (p, q_) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        scale[..., k] = b[i1][:, :, p] * b[i2][:, :, q_]
    z = (c - m) * scale / NOISE
    out = []
    for corr in ((0, 3), (1, 2)):
        zz, ok = z[..., list(corr)], ~f[..., list(corr)]
        out.append(float(np.sqrt((np.abs(zz[ok]) ** 2).mean() / 2)))
    return tuple(out)


def _apply(ms, cal, keys, interp, parang):
    # calflag: C00's data between a calibrator scan where it is flagged and the next (TARGET, the other
    # calibrator) have a flagged solution -- linear in time does not bridge a flagged solution (CASA's
    # rule, core/interpolation.py) -- and are flagged rather than left uncorrected (calonly)
    run_apply(apply_config_from_dict(dict(ms=ms, jones=keys, tables=[cal] * len(keys), time_interp=interp,
                                          apply_parang=parang, quiet=True, applymode="calflag")))


# --------------------------------------------------------------------------------------------------
# K, G (bandpass) and G (time) on two calibrators, linear and circular feeds
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["linear", "circular"])
def kgg(request, tmp_path_factory):
    feed = request.param
    d = tmp_path_factory.mktemp(f"refant_{feed}")
    ms, cal = str(d / "sim.ms"), str(d / "cal.h5")
    truth = simulate_ms(ms, feed=feed, n_ant=6, n_ant_extra=1, n_chan=(8,), duration_h=2.0, int_s=60.0,
                        noise=NOISE, seed=41, leakage=False, crosshand=False, time_gains=False,
                        dead_ant=False,
                        flag_rows=0.0)
    true_models(ms, truth)
    flag_antenna(ms, "C00", FLAGGED)
    cfg = solve_config_from_dict(dict(
        ms=ms, output=cal, ref_ant="C00", apply_parang=True, jones=["K", "G", "G"],
        field=["3C286", "3C147"], time_interval=["scan", "scan", "5min"],
        freq_interval=["full", "1MHz", "full"], quiet=True))
    run_solve(cfg)
    # no KC / CP solved: the cross hands keep C00's p - q phase, which a rotation back to the sky frame
    # would mix into the parallel hands of the polarised 3C286; so the feed frame (parang=False)
    _apply(ms, cal, ["K0", "G0", "G1"], ["linear", "linear", "linear"], False)
    return truth, ms, cal


def _diag(s):
    return np.stack([s.jones[..., 0, 0], s.jones[..., 1, 1]], axis=-1)    # (n_ant, n_f, n_t, 2)


def _ref_phase(x):
    """Reference to antenna 0 (C00) per feed."""
    return x * np.conj(x[:1]) / np.abs(x[:1])


def _expected_fallback(key, g0, scan):
    """The antenna with the most weight when C00 has none: K0 and G0 see equal weights (nothing or a
    phase-only K pre-applied), so the lowest index (C02); G1 sees the weights scaled by the pre-applied
    bandpass, w |b_a b_b|^2 (CASA's pre-apply), so the antenna whose baselines sum the most of it."""
    if key != "G1":
        return 1
    b2 = np.abs(_diag(g0[scan])[1:, :, 0]) ** 2                   # (n_ant - 1, n_chan, hand)
    return 1 + int(np.argmax((b2 * (b2.sum(axis=0) - b2)).sum(axis=(1, 2))))


def test_fallback_cells_are_recorded_and_bridged(kgg):
    truth, ms, cal = kgg
    n_fallback = 0
    g0 = {(b.field_name, b.scan_id): b for b in hdf5.read_term(cal, "G0")}
    for key in ("K0", "G0", "G1"):
        for s in hdf5.read_term(cal, key):
            used = s.extra["ref_ant"]
            assert s.attrs["ref_ant_name"] == "C00"
            if s.scan_id in FLAGGED:
                want = _expected_fallback(key, g0, (s.field_name, s.scan_id))
                assert np.all(used == want), (key, s.scan_id, used, want)
                assert np.all(s.flags[0]) and not s.flags[1:].any()   # C00 has no solution there
                n_fallback += used.size
            else:
                assert np.all(used == 0) and not s.flags.any(), (key, s.scan_id)
    assert n_fallback == 3 + 3 * 8 + 3 * 2          # K per scan, G0 per scan and channel, G1 per 5 min


def test_K_and_gains_in_one_reference(kgg):
    """Every cell, also those solved with C01, agrees with the truth in C00's gauge."""
    truth, ms, cal = kgg
    n_ant = len(truth.ant_names)
    freqs = truth.spw_freqs[0]
    dnu = freqs - freqs.mean()
    S = {"3C286": truth.flux_true["3C286"][0], "3C147": truth.flux_true["3C147"][0]}
    nb = n_ant - 1
    a2 = (np.abs(truth.bandpass[0]) ** 2).mean(axis=0).min()
    per_scan = 10
    # K per scan (10 ints): sigma / (2 pi 1e-9 S sqrt(a2 nb per_scan sum dnu^2))
    kbound = {f: K_SIGMA * np.sqrt(2) * NOISE
              / (TWO_PI_NS * S[f] * np.sqrt(a2 ** 2 * nb * per_scan * (dnu ** 2).sum())) for f in S}
    tk = truth.tau - truth.tau[:1]
    for s in hdf5.read_term(cal, "K0"):
        f = s.field_name
        bridged = np.any(s.extra["ref_ant"] != 0)
        err = np.abs(s.delay[1:, 0, 0] - tk[1:])         # C00: no data (flagged) where bridged
        bound = kbound[f] * (np.sqrt(2) if bridged else 1)
        assert err.max() < bound, (f, s.scan_id, err.max(), bound)
        if not bridged:
            assert np.abs(s.delay[0]).max() == 0
    # G0 (bandpass per scan and channel) x G1 (per 5 min, 8 channels): the product against the truth
    # bandpass referenced to C00, times the K error of the scan (applied when they were solved)
    kset = {(k.field_name, k.scan_id): k for k in hdf5.read_term(cal, "K0")}
    g0 = {(b.field_name, b.scan_id): b for b in hdf5.read_term(cal, "G0")}
    a_max = np.abs(truth.bandpass[0]).max()
    kj = np.exp(-1j * TWO_PI_NS * tk[:, None, :] * freqs[None, :, None])
    n_checked = 0
    for s in hdf5.read_term(cal, "G1"):
        f, sc = s.field_name, s.scan_id
        b, k = g0[(f, sc)], kset[(f, sc)]
        sB = NOISE / (S[f] * np.sqrt(a2 * nb * per_scan))
        sT = NOISE / (S[f] * np.sqrt(a2 * nb * 5 * len(freqs)))
        sK = TWO_PI_NS * kbound[f] / K_SIGMA / np.sqrt(2) * np.abs(dnu).max()
        kd = k.delay[:, 0, 0].copy()
        kd[0] = 0                            # C00's delay in its own gauge (no solution where flagged)
        kj_sol = np.exp(-1j * TWO_PI_NS * kd[:, None, :] * freqs[None, :, None])
        true = _ref_phase(truth.bandpass[0] * kj / kj_sol)                 # what G0 x G1 must be
        bridged = sc in FLAGGED
        bound = K_SIGMA * a_max * np.sqrt(2) * (np.sqrt(2) if bridged else 1) * np.sqrt(
            sB ** 2 + sT ** 2 + sK ** 2)
        for it in range(s.jones.shape[2]):
            prod = _diag(b)[:, :, 0] * _diag(s)[:, 0, it][:, None]          # (n_ant, n_chan, 2)
            err = np.abs(prod - true)[1:]
            assert err.max() < bound, (f, sc, it, err.max(), bound)
            if not bridged:
                assert np.abs(np.angle(prod[0])).max() < 1e-12
            n_checked += 1
    assert n_checked == 16


def test_corrected_data_at_the_noise(kgg):
    truth, ms, cal = kgg
    for f in ("3C286", "3C147", "TARGET"):
        par, _ = residual_ratio(ms, truth, f, feed_frame=True)
        print(f"{truth.feed} {f}: corrected parallel-hand residual / noise = {par:.3f}")
        assert 0.9 < par <= 1.05, (f, par)


# --------------------------------------------------------------------------------------------------
# strict, the list, errors
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("refant_small")
    ms = str(d / "sim.ms")
    truth = simulate_ms(ms, n_ant=5, n_ant_extra=1, n_chan=(4,), duration_h=1.0, int_s=120.0, noise=NOISE,
                        seed=43, leakage=False, time_gains=False, dead_ant=False, flag_rows=0.0)
    flag_antenna(ms, "C00", [4])
    flag_antenna(ms, "C02", [1, 4])
    return truth, ms, d


def _solve(ms, out, **kw):
    # 5 antennas with the reference (and in scan 4 another antenna) flagged: cells with 3 baselines per
    # antenna, which CASA's default minblperant (4) would flag whole; these tests are about the reference
    d = dict(ms=ms, output=out, jones=["G"], field=["3C286"], time_interval=["scan"], quiet=True,
             min_bl_per_ant=2)
    d.update(kw)
    _solve.summary = run_solve(solve_config_from_dict(d))
    return hdf5.read_term(out, "G0")


def test_strict_flags_exactly_the_cells_without_the_reference(small):
    truth, ms, d = small
    sets = _solve(ms, str(d / "strict.h5"), ref_ant="C00", ref_ant_mode="strict")
    assert (_solve.summary["terms"]["G0"]["reference"]
            == dict(rereferenced=0, no_bridge=0, strict=1, no_data=0))
    assert sorted(s.scan_id for s in sets) == [1, 4]
    for s in sets:
        if s.scan_id == 4:
            assert s.flags.all() and np.isnan(s.jones).all()
            assert np.all(s.extra["ref_ant"] != 0)
        else:
            assert np.array_equal(s.flags.any(axis=(1, 2)), [False, True, False, False, False])   # C02
            assert np.all(s.extra["ref_ant"] == 0)
    flex = {s.scan_id: s for s in _solve(ms, str(d / "flex.h5"), ref_ant="C00")}
    assert (_solve.summary["terms"]["G0"]["reference"]
            == dict(rereferenced=1, no_bridge=0, strict=0, no_data=0))
    assert flex[4].flags[0].all() and flex[4].flags[1].all() and not flex[4].flags[2:].any()


def test_list_order_is_honoured(small):
    truth, ms, d = small
    # active antennas C00 C02 C03 C04 C05 (ANTENNA id 1 has no data).  Scan 1: C00 has data; scan 4:
    # C00 and C02 are flagged -> the next of the list, C04 (not C03, the lowest index with data)
    sets = {s.scan_id: s for s in _solve(ms, str(d / "list.h5"), ref_ant=["C00", "C02", "C04"])}
    assert np.all(sets[1].extra["ref_ant"] == 0) and np.all(sets[4].extra["ref_ant"] == 3)
    # the whole step in C00's gauge: C04's phase in scan 4 is its phase in scan 1 (constant gains)
    g1, g4 = _diag(sets[1])[:, 0, 0], _diag(sets[4])[:, 0, 0]
    assert np.abs(np.angle(g1[0])).max() < 1e-12 and sets[4].flags[0].all() and sets[4].flags[1].all()
    # phase error of a per-scan gain referenced twice (cell + bridge): 2 x sigma / (|g|^2 S sqrt(n_bl n_int
    # n_chan)), |g|^2 >= 0.8 (the simulated bandpass amplitudes); 3 baselines in scan 4 (C00, C02 flagged)
    sig = NOISE / (0.8 * 14.9 * np.sqrt(3 * 5 * 4))
    assert np.abs(np.angle(g4[2:] / g1[2:])).max() < 5 * 2 * sig
    # task form: 'C02,C04' -> C02 where it has data (flagged in both scans: C04, the step's reference)
    from alakazam.caltasks import akcal

    akcal(vis=ms, caltable=str(d / "task.h5"), jones="G", field="3C286", solint="scan",
          refant="C02,C04", minblperant=2)
    t = {s.scan_id: s for s in hdf5.read_term(str(d / "task.h5"), "G0")}
    assert np.all(t[1].extra["ref_ant"] == 3) and np.all(t[4].extra["ref_ant"] == 3)   # C02 flagged in both
    assert t[1].attrs["ref_ant_name"] == "C04"


def test_unknown_antenna_in_list_is_a_parameter_error(small):
    truth, ms, d = small
    out = d / "bad.h5"
    with pytest.raises(ParameterError, match=r"ref_ant/refant.*'C99' is not an antenna.*antennas with data"):
        _solve(ms, str(out), ref_ant=["C00", "C99"])
    assert not out.exists()
    with pytest.raises(ParameterError, match="more than once"):
        _solve(ms, str(out), ref_ant=["C00", "C00"])
    with pytest.raises(ParameterError, match="ref_ant_mode"):
        solve_config_from_dict(dict(ms=ms, output=str(out), jones=["G"], ref_ant_mode="loose"))
    from alakazam.caltasks import akcal

    with pytest.raises(ParameterError, match="refantmode"):
        akcal(vis=ms, caltable=str(out), jones="G", refantmode="loose")


def test_choose_ref_priority_and_fallback():
    has = np.array([[1, 1, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]], bool)
    amount = np.array([[1, 1, 1, 1], [0, 1, 5, 2], [0, 0, 1, 9], [0, 0, 0, 0]], float)
    assert list(choose_ref(has, [0, 1], amount)) == [0, 1, 3, 0]       # list, then most data, empty: first
    assert list(choose_ref(has, 0, amount)) == [0, 2, 3, 0]
    # ties to rounding (weights scaled by a phase-only pre-apply: |g|^2 = 1 +- 1 ulp): the lowest index
    tied = np.array([[0, 7.0 * (1 - 2e-16), 7.0, 7.0 * (1 + 4e-16)]])
    assert list(choose_ref(np.array([[0, 1, 1, 1]], bool), 0, tied)) == [1]
    assert list(choose_ref(np.array([[0, 1, 1, 1]], bool), 0, np.array([[0, 7.0, 7.1, 7.0]]))) == [2]


# --------------------------------------------------------------------------------------------------
# the full polarisation chain of tests/test_flow_fullpol.py with C00 flagged in two 3C286 scans
# --------------------------------------------------------------------------------------------------
# K over all scans (inf) here: K is bridged in the test above; a K per scan carries its own error as a
# phase at absolute frequency (2 pi nu dtau, ~0.1 rad at 1.3 GHz for dtau ~ 0.017 ns) which the 2-min
# gains of that scan absorb, so gains interpolated across scans of different K (the fields between the
# calibrator scans) are off by that much even without any flag: 3C147 / TARGET at 2.07 / 1.15 x the
# noise with K per scan (nearest) and G1 linear, unflagged -- a property of that chain, not of the
# reference antenna.
FP_FLAGGED = (4, 13)          # of the 3C286 scans 1, 4, 7, 10, 13, 16


def _fullpol_module():
    """tests/test_flow_fullpol.py (sizes and standard errors of that chain; --import-mode=importlib)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_fullpol_sizes",
                                                  Path(__file__).with_name("test_flow_fullpol.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module", params=[("linear", False), ("circular", False), ("linear", True),
                                        ("circular", True)], ids=["linear", "circular", "linear-drift",
                                                                  "circular-drift"])
def fullpol_flagged(request, tmp_path_factory):
    fp = _fullpol_module()
    INT_S, LEAK, N_ANT, N_CHAN, SCAN_S = fp.INT_S, fp.LEAK, fp.N_ANT, fp.N_CHAN, fp.SCAN_S
    feed, drift = request.param
    d = tmp_path_factory.mktemp(f"refant_fullpol_{feed}_{drift}")
    ms, cal = str(d / "sim.ms"), str(d / "cal.h5")
    truth = simulate_ms(ms, feed=feed, n_ant=N_ANT, n_chan=(N_CHAN,), int_s=INT_S, scan_len_s=SCAN_S,
                        noise=NOISE, seed=31, flag_rows=0.0, dead_ant=False, leakage_scale=LEAK,
                        leakage_ref_zero=True, time_gains=drift)
    true_models(ms, truth)
    flag_antenna(ms, "C00", FP_FLAGGED)
    run_solve(solve_config_from_dict(dict(
        ms=ms, output=cal, ref_ant="C00", apply_parang=True, jones=["K", "G", "G", "KC", "CP", "D"],
        field=["3C286"], time_interval=["inf", "inf", "2min", "inf", "inf", "inf"],
        freq_interval=["full", "1MHz", "full", "full", "1MHz", "full"], quiet=True)))
    keys = ["K0", "G0", "G1", "KC0", "CP0", "D0"]
    _apply(ms, cal, keys, ["nearest", "nearest", "linear", "nearest", "nearest", "nearest"], True)
    return truth, ms, cal, fp._errors(truth), drift


def test_fullpol_chain_terms_in_one_reference(fullpol_flagged):
    """Without drift every cell compares with the truth in C00's gauge.  With the simulator's drifting
    gains (1 rad, periods of 1.5-4 h) C00's phase in the cells where it is flagged is not observable:
    the bridge (interpolated over the 60 min between the neighbouring 3C286 scans) is then right up to
    a phase common to all antennas per feed, which cancels in the parallel hands.  What matters for the
    cross hands is its p - q difference, which is exact (the drift is common to both feeds, as an
    atmosphere is): the bridged cells are checked for that, and otherwise in their own gauge."""
    truth, ms, cal, s, drift = fullpol_flagged
    freqs = truth.spw_freqs[0]
    # K over all scans: C00 has data in 4 of the 6 scans, so no fallback
    (k,) = hdf5.read_term(cal, "K0")
    ks = {sc: k for sc in (1, 4, 7, 10, 13, 16)}
    assert np.all(k.extra["ref_ant"] == 0) and not k.flags.any()
    k_err = np.abs(k.delay[:, 0, 0] - (truth.tau - truth.tau[:1])).max()
    assert k_err < K_SIGMA * np.sqrt(2) * s["K"] / np.sqrt(4), k_err          # per-scan error / sqrt(4 scans)
    # the product K G0 G1 at every G1 time, C00's gauge
    g0 = hdf5.read_term(cal, "G0")[0]
    g0d = np.stack([g0.jones[:, :, 0, 0, 0], g0.jones[:, :, 0, 1, 1]], -1)            # (a, c, 2)
    true_kb = np.exp(-1j * TWO_PI_NS * truth.tau[:, None, :] * freqs[None, :, None]) * truth.bandpass[0]
    s_kph = TWO_PI_NS * s["K"] * np.abs(s["dnu"]).max()
    n_bridged = 0
    for g1 in hdf5.read_term(cal, "G1"):
        sc = g1.scan_id
        bridged = sc in FP_FLAGGED
        n_bridged += bridged * g1.jones.shape[2]
        kd = ks[sc].delay[:, 0, 0].copy()
        kd[0] = 0
        kj = np.exp(-1j * TWO_PI_NS * kd[:, None, :] * freqs[None, :, None])
        g1d = np.stack([g1.jones[:, 0, :, 0, 0], g1.jones[:, 0, :, 1, 1]], -1)        # (a, t, 2)
        solved = (kj * g0d)[:, :, None] * g1d[:, None]                                # (a, c, t, 2)
        it = np.array([np.argmin(np.abs(truth.times - t)) for t in g1.time])
        assert np.abs(truth.times[it] - g1.time).max() < 1e-3       # one integration per 2-min bin
        true = _ref_phase(true_kb[:, :, None] * truth.time_gain[:, it][:, None])
        bound = K_SIGMA * np.sqrt(2) * (np.sqrt(2) if bridged else 1) * s["a_max"] * np.sqrt(
            s["B"] ** 2 + s["T"] ** 2 + s_kph ** 2)
        if bridged and drift:
            # the common phase per feed and time: only its p - q difference is determined
            common = np.angle(np.nansum(solved[1:] * np.conj(true[1:]), axis=(0, 1)))          # (t, 2)
            pq = np.abs(np.angle(np.exp(1j * (common[:, 0] - common[:, 1])))).max()
            pq_bound = K_SIGMA * 2 * np.sqrt(2) * s["T"]
            assert pq < pq_bound, (sc, pq, pq_bound)
            assert np.abs(common).max() > 10 * pq_bound      # the test can tell: the common part is not 0
            solved = solved * np.exp(-1j * common)[None, None]
        err = np.abs(solved - true)[1:].max()
        assert err < bound, (sc, err, bound)
    assert n_bridged == 10
    # KC, CP absorb C00's p - q terms in every cell (the chain pre-applied re-referenced K and G)
    (kc,) = hdf5.read_term(cal, "KC0")
    tau_kc = kc.delay[0, 0, 0, 0]
    kc_exp = truth.kc_tau + truth.tau[0, 0] - truth.tau[0, 1]
    s_bp_slope = np.sqrt(2) * s["B"] / np.sqrt(((TWO_PI_NS * s["dnu"]) ** 2).sum())
    kc_bound = K_SIGMA * np.sqrt(s["KC"] ** 2 + 2 * 2 * s["K"] ** 2 / s["n_scan"] + s_bp_slope ** 2)
    assert abs(tau_kc - kc_exp) < kc_bound, (tau_kc, kc_exp, kc_bound)
    (cp,) = hdf5.read_term(cal, "CP0")
    phi = np.angle(cp.jones[0, :, 0, 1, 1])
    beta = np.angle(truth.bandpass[0][0, :, 0] * np.conj(truth.bandpass[0][0, :, 1]))
    gamma = np.angle(truth.time_gain[0, 0, 0] * np.conj(truth.time_gain[0, 0, 1]))
    expected = truth.cp_phase - beta - gamma
    nu = freqs[cp.attrs["channels"]]
    cp_err = np.abs(np.angle(np.exp(1j * (phi + TWO_PI_NS * (tau_kc - kc_exp) * nu - expected)))).max()
    cp_bound = K_SIGMA * np.sqrt(s["CP"] ** 2 + 2 * s["B"] ** 2 + 2 * 2 * s["T"] ** 2 / s["n_int"])
    assert cp_err < cp_bound, (cp_err, cp_bound)
    # D in the gauge d_pq[C00] = 0 (C00 has data in the D cell)
    (dset,) = hdf5.read_term(cal, "D0")
    j = dset.jones[:, 0, 0]
    d_err = np.abs(np.stack([j[:, 0, 1], j[:, 1, 0]], axis=-1) - truth.leakage).max()
    assert d_err < K_SIGMA * np.sqrt(2) * s["D"], (d_err, s["D"])
    print(f"{truth.feed}: KC {abs(tau_kc - kc_exp):.3g} < {kc_bound:.3g} ns, "
          f"CP {cp_err:.3g} < {cp_bound:.3g} rad, "
          f"D {d_err:.3g} < {K_SIGMA * np.sqrt(2) * s['D']:.3g}")


def test_fullpol_corrected_data_at_the_noise(fullpol_flagged):
    """3C286 at the noise in both cases; the fields between the calibrator scans only without drift
    (with it, interpolating gains that drift by up to 1 rad per hour over 30 min is not at the noise,
    flagged or not: tests/test_flow.py)."""
    truth, ms, cal, s, drift = fullpol_flagged
    for f in ("3C286",) if drift else ("3C286", "3C147", "TARGET"):
        par, cross = residual_ratio(ms, truth, f)
        print(f"{truth.feed} {f}: corrected residual / noise: parallel {par:.3f}, cross {cross:.3f}")
        assert 0.9 < par <= 1.05 and 0.9 < cross <= 1.05, (f, par, cross)


# --------------------------------------------------------------------------------------------------
# D: the gauge d_pq[ref] = 0 moved to C00 in cells solved with another antenna
# --------------------------------------------------------------------------------------------------
def test_leakage_rereferenced_to_one_gauge(tmp_path):
    """D per scan on the unpolarised 3C147 (leakage determined up to the gauge d_pq -> d_pq + c,
    d_qp -> d_qp - c^*, fixed by d_pq[ref] = 0), C00 flagged in scans 5 and 8: those cells are solved
    with d_pq[C02] = 0 and shifted by the bridge c = d_pq,C02 of the cells solved with C00."""
    ms, cal = str(tmp_path / "d.ms"), str(tmp_path / "d.h5")
    leak = 0.02
    truth = simulate_ms(ms, n_ant=6, n_ant_extra=1, n_chan=(8,), duration_h=2.0, int_s=60.0, noise=NOISE,
                        seed=45, delays=False, bandpass=False, time_gains=False, crosshand=False,
                        leakage_scale=leak, leakage_ref_zero=True, dead_ant=False, flag_rows=0.0)
    true_models(ms, truth)
    flag_antenna(ms, "C00", [5, 8])
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant="C00", jones=["G", "D"], field=["3C147"],
                                          time_interval=["scan", "scan"], quiet=True)))
    S = truth.flux_true["3C147"][0]
    n_ant = len(truth.ant_names)
    # one scan: 10 integrations x 8 channels; sqrt(2): referenced; sqrt(2) more in bridged cells
    s_d = NOISE / (S * np.sqrt((n_ant - 1) * 10 * 8))
    assert truth.leakage[0, 0] == 0                      # the truth is in C00's gauge
    for d in hdf5.read_term(cal, "D0"):
        bridged = d.scan_id in (5, 8)
        assert np.all((d.extra["ref_ant"] != 0) == bridged)
        j = d.jones[:, 0, 0]
        solved = np.stack([j[:, 0, 1], j[:, 1, 0]], axis=-1)
        bound = K_SIGMA * np.sqrt(2) * (np.sqrt(2) if bridged else 1) * s_d
        err = np.abs(solved - truth.leakage)[1:].max()
        print(f"D scan {d.scan_id}: error {err:.3g} < {bound:.3g}{' (bridged)' if bridged else ''}")
        assert err < bound, (d.scan_id, err, bound)
        if bridged:
            assert d.flags[0].all() and abs(j[1, 0, 1] - truth.leakage[1, 0]) < bound
        else:
            assert abs(j[0, 0, 1]) < 1e-12
    assert abs(truth.leakage[1, 0]) > 2 * bound      # the shift from C02's gauge (d_pq,C02) is resolved


# --------------------------------------------------------------------------------------------------
# the algebra on hand-made solution sets; order independence
# --------------------------------------------------------------------------------------------------
def _set(jt, jones, used, times, delay=None, spw=0):
    from alakazam.io.hdf5 import SolutionSet

    n_ant, n_f, n_t = jones.shape[:3]
    flags = ~np.isfinite(jones).all(axis=(-1, -2))
    s = SolutionSet(jones=jones, flags=flags, time=np.asarray(times, float), freq=np.full(n_f, 1.4e9),
                    delay=delay, attrs=dict(jones_type=jt, spw=spw, ref_ant=0))
    s.extra = {"ref_ant": np.asarray(used, np.int32).reshape(n_f, n_t)}
    return s


def _diag_jones(g):
    """(n_ant, n_t, 2) complex -> (n_ant, 1, n_t, 2, 2)."""
    j = np.zeros(g.shape[:2] + (2, 2), complex)
    j[..., 0, 0], j[..., 1, 1] = g[..., 0], g[..., 1]
    return j[:, None]


def test_rereference_algebra_G_K_D():
    from alakazam.solvers.rereference import rereference_step

    rng = np.random.default_rng(5)
    n_ant, times = 4, [0.0, 10.0, 20.0, 30.0]
    # G: true gains; the phase of antenna 1 relative to 0 changes linearly in time and crosses +-pi
    g = np.exp(1j * rng.uniform(-np.pi, np.pi, (n_ant, 1, 2))) * rng.uniform(0.8, 1.2, (n_ant, 1, 2))
    g = np.repeat(g, 4, axis=1)
    g[1] *= np.exp(1j * (3.0 + 0.02 * np.array(times)))[:, None]       # 3.0 .. 3.6 rad: wraps
    ref0 = g * np.conj(g[:1]) / np.abs(g[:1])                         # truth in antenna 0's gauge
    ref1 = g * np.conj(g[1:2]) / np.abs(g[1:2])                       # ... in antenna 1's gauge
    sol = ref0.copy()
    sol[:, 1:3] = ref1[:, 1:3]                                        # cells 1, 2 solved with antenna 1
    sol[0, 1:3] = np.nan                                              # antenna 0 has no data there
    s = _set("G", _diag_jones(sol), [0, 1, 1, 0], times)
    counts = rereference_step("G", [s], [0, 2], "flex")
    assert counts == dict(rereferenced=2, no_bridge=0, strict=0, no_data=0)
    got = np.stack([s.jones[:, 0, :, 0, 0], s.jones[:, 0, :, 1, 1]], axis=-1)
    assert np.allclose(got[1:], ref0[1:], atol=1e-12)                 # linear in time: exact
    before = s.jones.copy()
    rereference_step("G", [s], [0, 2], "flex")                        # processed sets never change again
    assert np.array_equal(before, s.jones, equal_nan=True)
    # K: tau_a^(0) = tau_a^(1) + tau_1^(0), bridged by linear interpolation in time
    tau = rng.uniform(-5, 5, (n_ant, 2))
    d = np.repeat((tau - tau[:1])[:, None, None], 4, axis=2)          # (n_ant, 1, n_t, 2)
    d[:, 0, 2] = tau - tau[1]
    d[0, 0, 2] = np.nan
    kj = np.zeros((n_ant, 1, 4, 2, 2), complex)
    kj[..., 0, 0] = np.exp(-1j * TWO_PI_NS * d[..., 0] * 1.4e9)
    kj[..., 1, 1] = np.exp(-1j * TWO_PI_NS * d[..., 1] * 1.4e9)
    k = _set("K", kj, [0, 0, 1, 0], times, delay=d)
    rereference_step("K", [k], [0], "flex")
    assert np.allclose(k.delay[1:, 0, 2], (tau - tau[:1])[1:], atol=1e-12)
    assert np.allclose(k.jones[1:, 0, 2, 0, 0], np.exp(-1j * TWO_PI_NS * (tau - tau[:1])[1:, 0] * 1.4e9))
    # D: d^(0) = d^(1) shifted by c = d_pq,1^(0): d_pq += c, d_qp -= c^*
    dl = 0.05 * (rng.normal(size=(n_ant, 2)) + 1j * rng.normal(size=(n_ant, 2)))
    dl[0, 0] = 0                                                      # antenna 0's gauge
    c = dl[1, 0]
    in1 = np.stack([dl[:, 0] - c, dl[:, 1] + np.conj(c)], axis=-1)    # the same data in antenna 1's gauge
    dj = np.zeros((n_ant, 1, 3, 2, 2), complex)
    dj[..., 0, 0] = dj[..., 1, 1] = 1
    for it, v in enumerate([dl, in1, dl]):
        dj[:, 0, it, 0, 1], dj[:, 0, it, 1, 0] = v[:, 0], v[:, 1]
    dj[0, 0, 1] = np.nan
    ds = _set("D", dj, [0, 1, 0], times[:3])
    rereference_step("D", [ds], [0], "flex")
    assert np.allclose(ds.jones[1:, 0, 1, 0, 1], dl[1:, 0])
    assert np.allclose(ds.jones[1:, 0, 1, 1, 0], dl[1:, 1])


def test_rereference_without_bridge_flags_and_counts(caplog):
    from alakazam.solvers.rereference import rereference_step

    def cells(fallback):
        """3 cells; the last is solved with ``fallback`` (antenna 0 has no data there); antenna 1 has
        no data in the first two."""
        g = np.ones((3, 3, 2), complex)
        g[1, :2] = np.nan
        g[0, 2] = np.nan
        return _set("G", _diag_jones(g), [0, 0, fallback], [0.0, 1.0, 2.0])

    s = cells(1)                                       # no cell has both 0 and 1: flagged, counted, logged
    with caplog.at_level("INFO", logger="alakazam.rereference"):
        counts = rereference_step("G", [s], [0], "flex", ant_names=["A0", "A1", "A2"], step_key="G0")
    assert counts == dict(rereferenced=0, no_bridge=1, strict=0, no_data=0)
    assert s.flags[:, 0, 2].all() and np.isnan(s.jones[:, 0, 2]).all() and not s.flags[[0, 2], 0, :2].any()
    assert "1 flagged without a bridge" in caplog.text
    s = cells(2)                                       # 0 and 2 share cells 0 and 1: bridged
    assert rereference_step("G", [s], [0], "flex")["rereferenced"] == 1 and not s.flags[1:, 0, 2].any()


def test_field_major_equals_step_major_with_fallback(kgg, tmp_path, monkeypatch):
    """Both orders re-reference each (field, SPW) as it is solved, bridging from the cells solved so far
    in the same field order: the same solutions, fallback cells included."""
    import alakazam.flow as flow

    truth, ms, _ = kgg
    out = {}
    for major in (True, False):
        monkeypatch.setattr(flow, "FIELD_MAJOR", major)
        cal = str(tmp_path / f"fm{major}.h5")
        summary = run_solve(solve_config_from_dict(dict(
            ms=ms, output=cal, ref_ant="C00", apply_parang=True, jones=["K", "G", "G"],
            field=["3C286", "3C147"], time_interval=["scan", "scan", "5min"],
            freq_interval=["full", "1MHz", "full"], quiet=True)))
        assert summary["field_major"] is major
        out[major] = {k: sorted(hdf5.read_term(cal, k), key=lambda s: (s.field_name, s.scan_id))
                      for k in hdf5.list_keys(cal)}
    for key in out[True]:
        for a, b in zip(out[True][key], out[False][key]):
            assert np.array_equal(a.jones, b.jones, equal_nan=True) and np.array_equal(a.flags, b.flags)
            assert np.array_equal(a.extra["ref_ant"], b.extra["ref_ant"])


def test_task_and_yaml_forms(small, monkeypatch):
    """refant 'C00,C02' / ['C00', 'C02'] / YAML [C00, C02] -> the same list; refantmode -> ref_ant_mode."""
    import yaml

    import alakazam.flow as flow_mod
    from alakazam.caltasks import akcal
    from alakazam.caltasks.yamlrun import run_yaml, solve_params

    truth, ms, d = small
    assert solve_params({"ref_ant": ["C00", 2], "ref_ant_mode": "strict"}) == \
        {"refant": ["C00", "2"], "refantmode": "strict"}
    seen = []
    monkeypatch.setattr(flow_mod, "run_solve", lambda cfg: seen.append(cfg) or {})
    for refant in ("C00,C02", ["C00", "C02"], "C00, 2"):
        akcal(vis=ms, caltable=str(d / "t.h5"), jones="G", refant=refant, refantmode="strict")
    assert [c.ref_ant for c in seen] == [["C00", "C02"], ["C00", "C02"], ["C00", 2]]
    assert {c.ref_ant_mode for c in seen} == {"strict"}
    akcal(vis=ms, caltable=str(d / "t.h5"), jones="G", refant="C03")
    assert seen[-1].ref_ant == "C03" and seen[-1].ref_ant_mode == "flex"
    monkeypatch.undo()
    cfg = d / "run.yaml"
    cfg.write_text(yaml.safe_dump({"solve": [dict(ms=ms, output=str(d / "y.h5"), jones=["G"], field=["3C286"],
                                                  time_interval="scan", ref_ant=["C00", "C04"],
                                                  ref_ant_mode="flex", quiet=True, min_bl_per_ant=2)]}))
    run_yaml(str(cfg))
    sets = {s.scan_id: s for s in hdf5.read_term(str(d / "y.h5"), "G0")}
    assert np.all(sets[4].extra["ref_ant"] == 3) and sets[4].attrs["ref_ant_name"] == "C00"


def test_refant_flagged_in_some_channels_is_no_bandpass_outlier(tmp_path):
    """C00 flagged in channels 3-4 of 3C147's scan 5 only (RFI on the reference antenna): those two bins
    of that scan are solved with a fallback reference, whose phases are all in its gauge until they are
    re-referenced.  The bandpass-outlier check (quality.outlier_channels) ran on them first and flagged
    the antennas whose phase jumped against the running median over channels; such bins are now tested
    on their amplitude only.  No solution but C00's is flagged, and the bridged bins agree with the other
    scans' bandpass (constant gains) as well as the bins solved with C00 do."""
    ms, cal = str(tmp_path / "sim.ms"), str(tmp_path / "bp.h5")
    truth = simulate_ms(ms, feed="linear", n_ant=6, n_ant_extra=1, n_chan=(8,), duration_h=2.0, int_s=60.0,
                        noise=NOISE, seed=41, leakage=False, crosshand=False, time_gains=False,
                        dead_ant=False, flag_rows=0.0)
    true_models(ms, truth)
    flag_antenna(ms, "C00", [5], chans=[3, 4])
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant="C00", apply_parang=True, jones=["G"],
                                          field=["3C147"], time_interval=["scan"], freq_interval=["1MHz"],
                                          quiet=True)))
    sets = {s.scan_id: s for s in hdf5.read_term(cal, "G0")}
    fb = [3, 4]
    rest = [0, 1, 2, 5, 6, 7]
    for sc, s in sets.items():
        if sc == 5:
            assert (s.extra["ref_ant"][fb] != 0).all() and (s.extra["ref_ant"][rest] == 0).all()
            assert s.flags[0, fb].all() and not s.flags[0, rest].any()
            assert not s.flags[1:].any(), np.argwhere(s.flags[1:])
        else:
            assert not s.flags.any(), (sc, np.argwhere(s.flags))
    others = np.mean([_diag(sets[sc])[:, :, 0] for sc in sets if sc != 5], axis=0)    # (n_ant, n_chan, 2)
    d = np.abs(_diag(sets[5])[1:, :, 0] - others[1:])
    assert d[:, fb].max() < 6 * np.sqrt((d[:, rest] ** 2).mean()), (d[:, fb].max(), d[:, rest].max())


def test_bandpass_over_one_time_cell_bridges_refant_channels_in_frequency(tmp_path):
    """A bandpass over all scans ('inf': one time cell) with C00 flagged in channels 3-4 everywhere (RFI on
    the reference antenna): no cell of another time can bridge those bins, and they were flagged on every
    antenna.  CASA 6.7 bandpass keeps the other antennas there with continuous phases (measured by the
    session's review).  The bins are now bridged in frequency (the fallback antenna's phase relative to
    C00 in the neighbouring bins of the same time cell, interpolated): only C00 is flagged, and the
    bridged bins' gains agree with a solve where C00 is not flagged within their noise (the bridge's own
    error is a phase common to every antenna of the bin, which no corrected baseline sees)."""
    ms, cal = str(tmp_path / "sim.ms"), str(tmp_path / "bp.h5")
    truth = simulate_ms(ms, feed="linear", n_ant=6, n_ant_extra=1, n_chan=(8,), duration_h=2.0, int_s=60.0,
                        noise=NOISE, seed=43, leakage=False, crosshand=False, time_gains=False,
                        dead_ant=False, flag_rows=0.0)
    true_models(ms, truth)
    clean = str(tmp_path / "clean.ms")
    shutil.copytree(ms, clean)
    flag_antenna(ms, "C00", [2, 5, 8, 11], chans=[3, 4])
    sol = {}
    for m, out in ((ms, cal), (clean, str(tmp_path / "clean.h5"))):
        run_solve(solve_config_from_dict(dict(ms=m, output=out, ref_ant="C00", apply_parang=True, jones=["G"],
                                              field=["3C147"], time_interval=["inf"], freq_interval=["1MHz"],
                                              quiet=True)))
        sol[m] = hdf5.read_term(out, "G0")
    (s,), (c,) = sol[ms], sol[clean]
    fb, rest = [3, 4], [0, 1, 2, 5, 6, 7]
    assert (s.extra["ref_ant"][fb] != 0).all() and (s.extra["ref_ant"][rest] == 0).all()
    assert s.flags[0, fb].all() and not s.flags[0, rest].any() and not s.flags[1:].any()
    # the gains' standard error per bin (3C147's integrations, n_ant - 1 baselines per antenna): both
    # solves carry it (the flagged one without C00's baselines there), the bridge adds its own (x sqrt 2)
    from casacore.tables import table
    with table(ms, ack=False) as t:
        n_int = len(np.unique(t.query(f"FIELD_ID=={truth.field_names.index('3C147')}").getcol("TIME")))
    a2 = (np.abs(truth.bandpass[0]) ** 2).mean(axis=0).min()
    sB = NOISE / (truth.flux_true["3C147"][0] * np.sqrt(a2 * (len(truth.ant_names) - 2) * n_int))
    # compared in C02's gauge: a phase common to every antenna of a bin (what a bridge's error is) cancels
    # in every corrected baseline g_a conj(g_b); the gains themselves, not that gauge, must agree
    def in_c02(x):
        g = _diag(x)[1:, :, 0]                                          # (n_ant - 1, n_chan, 2)
        return g * np.exp(-1j * np.angle(g[:1]))
    d = np.abs(in_c02(s) - in_c02(c))
    assert d[:, rest].max() < 1e-9                  # the other bins: the same data, the same solutions
    assert d[:, fb].max() < K_SIGMA * 2 * np.abs(truth.bandpass[0]).max() * sB, (d[:, fb].max(), sB)
