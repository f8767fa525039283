"""End-to-end solve on simulated Measurement Sets, compared with the simulator's truth.

The physical quantity a K + G(bandpass) + G(time) chain determines is the product of the three per
antenna, channel and time (a delay-like slope may move between K and the bandpass), so the chain test
compares the solved product with the true product, after referencing both to the reference
antenna's phase.  K alone is checked on a simulation whose bandpass is flat.

Tolerances: with noise sigma per real/imag part, N_bl baselines per antenna and n_samp averaged
samples, the standard error of a gain is ~ sigma / (S sqrt(N_bl n_samp)) for a source of S Jy;
the bounds below are 5 x that (the chain adds the errors of its three terms).
"""

import numpy as np
import pytest

from alakazam.config import solve_config_from_dict
from alakazam.flow import run_solve
from alakazam.io import hdf5
from alakazam.sim import simulate_ms

TWO_PI_NS = 2 * np.pi * 1e-9


def _total(cal, truth, field, spw_id, scan):
    """(solved, true) products (n_ant, n_chan, n_t, 2) on the G1 solution times of one scan."""
    k = [s for s in hdf5.read_term(cal, "K0") if s.field_name == field and s.spw == spw_id
         and s.scan_id == scan][0]
    g0 = [s for s in hdf5.read_term(cal, "G0") if s.field_name == field and s.spw == spw_id][0]
    g1 = [s for s in hdf5.read_term(cal, "G1") if s.field_name == field and s.spw == spw_id
          and s.scan_id == scan][0]
    freqs = truth.spw_freqs[spw_id][g0.attrs["channels"]]
    kj = np.exp(-1j * TWO_PI_NS * k.delay[:, 0, 0][:, None, :] * freqs[None, :, None])  # (a, c, 2)
    g0d = np.stack([g0.jones[:, :, 0, 0, 0], g0.jones[:, :, 0, 1, 1]], -1)           # (a, c, 2)
    g1d = np.stack([g1.jones[:, 0, :, 0, 0], g1.jones[:, 0, :, 1, 1]], -1)           # (a, t, 2)
    solved = kj[:, :, None] * g0d[:, :, None] * g1d[:, None]
    tk = np.exp(-1j * TWO_PI_NS * truth.tau[:, None, :] * freqs[None, :, None])
    # true time gain at the solution (centroid) times: linear in amplitude and unwrapped phase
    amp = np.abs(truth.time_gain)
    ph = np.unwrap(np.angle(truth.time_gain), axis=1)
    tg = np.empty((amp.shape[0], len(g1.time), 2), complex)
    for a in range(amp.shape[0]):
        for p in range(2):
            tg[a, :, p] = np.interp(g1.time, truth.times, amp[a, :, p]) * np.exp(
                1j * np.interp(g1.time, truth.times, ph[a, :, p]))
    true = (tk * truth.bandpass[spw_id][:, g0.attrs["channels"]])[:, :, None] * tg[:, None]
    flags = (g1.flags[:, 0][:, None, :, None] | g0.flags[:, :, 0][:, :, None, None]
             | k.flags[:, 0, 0][:, None, None, None])
    return solved, true, np.broadcast_to(flags, solved.shape), g1


def _referenced(x, ref=0):
    r = x[ref:ref + 1]
    return x * np.conj(r) / np.abs(r)


@pytest.mark.parametrize("feed", ["linear", "circular"])
def test_chain_K_bandpass_timegain_recovers_truth(tmp_path, feed):
    ms = str(tmp_path / "sim.ms")
    noise = 0.05
    # no random FLAG_ROWs here: a 2-min bin in which one baseline keeps a single integration averages
    # the drifting gain over a different span for that baseline (a property of averaging, ~5e-3 here);
    # flag handling is tested in test_dead_antenna_flagged_and_file_layout
    truth = simulate_ms(ms, feed=feed, noise=noise, seed=21, leakage=False, flag_rows=0.0)
    cal = str(tmp_path / "cal.h5")
    cfg = solve_config_from_dict(dict(
        ms=ms, output=cal, ref_ant="C00", jones=["K", "G", "G"], field=["3C286"],
        time_interval=["scan", "inf", "2min"], freq_interval=["full", "1MHz", "full"], apply_parang=True))
    summary = run_solve(cfg)
    assert list(summary["terms"]) == ["K0", "G0", "G1"]
    assert hdf5.list_keys(cal) == ["K0", "G0", "G1"]
    S = truth.flux_true["3C286"][0]
    n_ant = len(truth.ant_names)
    worst = 0.0
    for scan, fname in truth.scans.items():
        if fname != "3C286":
            continue
        for spw_id in truth.spw_freqs:
            solved, true, flags, g1 = _total(cal, truth, "3C286", spw_id, scan)
            s = _referenced(solved)
            t = _referenced(true)
            ok = ~flags
            err = np.abs(s - t)[ok]
            worst = max(worst, err.max())
    # per-channel bandpass (inf over 6 scans x 10 integrations) dominates: sigma / (S sqrt(n_bl * 60))
    sigma_g = noise / (S * np.sqrt((n_ant - 1) * 60))
    sigma_t = noise / (S * np.sqrt((n_ant - 1) * 2 * 16))          # time gain: 2 ints x 16 chans
    bound = 5 * np.sqrt(4 * sigma_g ** 2 + 2 * sigma_t ** 2) + 2e-3   # + the drift of the gain within 2 min
    assert worst < bound, (worst, bound)


def test_K_alone_recovers_delays(tmp_path):
    ms = str(tmp_path / "k.ms")
    noise = 0.05
    truth = simulate_ms(ms, noise=noise, seed=22, bandpass=False, leakage=False, n_chan=(32,))
    cal = str(tmp_path / "k.h5")
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant="C00", jones="K",
                                          field=["3C286"], time_interval="scan")))
    sets = hdf5.read_term(cal, "K0")
    assert len(sets) == 6 and all(s.delay.shape == (6, 1, 1, 2) for s in sets)
    tref = truth.tau - truth.tau[0]
    # CRB of a delay: 1 / (2 pi sqrt(sum w S^2 (nu - nu_c)^2)) over the antenna's baselines
    f = truth.spw_freqs[0]
    S = 14.9
    crb = 1e9 / (2 * np.pi * np.sqrt((1 / noise ** 2) * S ** 2 * ((f - f.mean()) ** 2).sum() * 10 * 5 / 2))
    for s in sets:
        err = np.abs(s.delay[:, 0, 0] - tref)
        assert err.max() < 5 * crb * np.sqrt(2), (err.max(), crb)
        assert s.attrs["ant_names"] == truth.ant_names
        assert s.attrs["jones_type"] == "K" and s.attrs["ref_ant_name"] == "C00"


def test_dead_antenna_flagged_and_file_layout(tmp_path):
    ms = str(tmp_path / "d.ms")
    truth = simulate_ms(ms, noise=0.02, seed=23)
    cal = str(tmp_path / "d.h5")
    run_solve(solve_config_from_dict(dict(ms=ms, output=cal, ref_ant=0, jones="G", field=["3C147"],
                                          time_interval="scan", freq_interval="full")))
    sets = hdf5.read_term(cal, "G0")
    dead = truth.ant_names.index(truth.dead_ant)
    for s in sets:
        if s.scan_id == truth.dead_scan:
            assert s.flags[dead].all() and np.isnan(s.jones[dead]).all()
            assert not np.delete(s.flags, dead, axis=0).any()
        else:
            assert not s.flags.any()
        assert s.jones.shape == (6, 1, 1, 2, 2) and s.jones.dtype == np.complex128
        for a in ("jones_type", "field_name", "scan_id", "spw", "n_ant", "field_ra", "field_dec",
                  "matrix_form", "ref_ant", "ref_ant_name", "ant_names", "solint_s", "freqint_hz",
                  "phase_only", "feed_basis", "solver_backend", "apply_parang", "ms", "preapply_chain"):
            assert a in s.attrs, a


def test_memory_tiers_give_identical_solutions(tmp_path, sim_linear):
    ms, truth = sim_linear
    sets = {}
    for label, limit in (("tier1", 0.0), ("tier3", 2e-5)):      # 2e-5 GB = 20 kB: a few rows per read
        cal = str(tmp_path / f"{label}.h5")
        summary = run_solve(solve_config_from_dict(dict(
            ms=ms, output=cal, ref_ant="C00", jones=["K", "G", "G"], field=[["3C286"], ["3C286"], ["3C286"]],
            time_interval=["scan", "inf", "2min"], freq_interval=["full", "1MHz", "full"],
            memory_limit_gb=limit)))
        sets[label] = (summary["tier"], {k: hdf5.read_term(cal, k) for k in ("K0", "G0", "G1")})
    assert sets["tier1"][0] == 1 and sets["tier3"][0] == 3
    for key in ("K0", "G0", "G1"):
        a = sorted(sets["tier1"][1][key], key=lambda s: (s.scan_id, s.spw))
        b = sorted(sets["tier3"][1][key], key=lambda s: (s.scan_id, s.spw))
        for x, y in zip(a, b):
            np.testing.assert_allclose(y.jones, x.jones, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(y.time, x.time, rtol=0, atol=1e-6)


def _assert_same_sets(a, b):
    a = sorted(a, key=lambda s: (s.field_name, s.spw, s.scan_id))
    b = sorted(b, key=lambda s: (s.field_name, s.spw, s.scan_id))
    assert [(s.field_name, s.spw, s.scan_id) for s in a] == [(s.field_name, s.spw, s.scan_id) for s in b]
    for x, y in zip(a, b):
        for name in ("jones", "flags", "time", "freq", "delay", "converged", "n_iter", "cost"):
            u, v = getattr(x, name), getattr(y, name)
            if u is None or v is None:
                assert u is None and v is None, name
            else:
                np.testing.assert_array_equal(u, v, err_msg=name)
        assert x.attrs["preapply_chain"] == y.attrs["preapply_chain"]


def test_field_major_equals_step_major(tmp_path, sim_linear, monkeypatch):
    """Tier 1 runs field by field when every step solves the same fields: the same file as step by step
    (each step pre-applies the field's own earlier solutions)."""
    import alakazam.flow as flow

    ms, truth = sim_linear
    out = {}
    for major in (True, False):
        monkeypatch.setattr(flow, "FIELD_MAJOR", major)
        cal = str(tmp_path / f"fm{major}.h5")
        summary = run_solve(solve_config_from_dict(dict(
            ms=ms, output=cal, ref_ant="C00", jones=["K", "G", "G"], field=["3C286", "3C147"],
            time_interval=["scan", "inf", "2min"], freq_interval=["full", "1MHz", "full"],
            apply_parang=True)))
        assert summary["tier"] == 1 and summary["field_major"] is major
        out[major] = {k: hdf5.read_term(cal, k) for k in hdf5.list_keys(cal)}
    assert list(out[True]) == list(out[False]) == ["K0", "G0", "G1"]
    for key in out[True]:
        assert {s.field_name for s in out[True][key]} == {"3C286", "3C147"}
        assert len({s.spw for s in out[True][key]}) == 2
        _assert_same_sets(out[True][key], out[False][key])


def test_field_major_failure_keeps_earlier_steps_complete(tmp_path, sim_linear, monkeypatch):
    """A step failing on the second field: the earlier steps are finished on every field and written
    (as the step-major order leaves the file), the failing step is not, and the error is raised."""
    import alakazam.flow as flow
    from alakazam.errors import AlakazamError

    ms, truth = sim_linear
    cfg = dict(ms=ms, ref_ant="C00", jones=["K", "G", "G"], field=["3C286", "3C147"],
               time_interval=["scan", "inf", "2min"], freq_interval=["full", "1MHz", "full"])
    good = str(tmp_path / "good.h5")
    run_solve(solve_config_from_dict(dict(cfg, output=good)))
    orig = flow._solve_field_spw

    def failing(ctx, step, fid, ddid, chans):
        if step.key == "G1" and ctx.meta.fields[fid].name == "3C147":
            raise AlakazamError("injected failure")
        return orig(ctx, step, fid, ddid, chans)

    monkeypatch.setattr(flow, "_solve_field_spw", failing)
    bad = str(tmp_path / "bad.h5")
    with pytest.raises(AlakazamError, match="injected"):
        run_solve(solve_config_from_dict(dict(cfg, output=bad)))
    assert hdf5.list_keys(bad) == ["K0", "G0"]
    for key in ("K0", "G0"):
        got = hdf5.read_term(bad, key)
        assert {s.field_name for s in got} == {"3C286", "3C147"}
        _assert_same_sets(got, hdf5.read_term(good, key))


def test_summary_reports_wall_time_by_phase(tmp_path, sim_linear):
    """Each step's summary splits its wall time into unit.PHASES; in tier 1 field by field the first
    step pays the read and the sample flags, the later steps reuse them."""
    from alakazam import unit

    ms, truth = sim_linear
    summary = run_solve(solve_config_from_dict(dict(
        ms=ms, output=str(tmp_path / "ph.h5"), ref_ant="C00", jones=["K", "G"], field=["3C286"],
        time_interval=["scan", "inf"], freq_interval=["full", "full"])))
    assert summary["tier"] == 1 and summary["field_major"]
    k, g = summary["terms"]["K0"], summary["terms"]["G0"]
    for t in (k, g):
        assert set(t["phases"]) == set(unit.PHASES)
        assert all(v >= 0 for v in t["phases"].values())
        assert sum(t["phases"].values()) <= t["seconds"] + 1e-6
    assert k["phases"]["read"] > 0 and k["phases"]["flags"] > 0 and k["phases"]["accumulate"] > 0
    assert g["phases"]["read"] == 0 and g["phases"]["flags"] == 0 and g["phases"]["solve"] > 0
