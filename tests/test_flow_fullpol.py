"""The full polarisation chain of examples/full_polarization.yaml (K, G bandpass, G time, KC, CP, D with
apply_parang; here one round, time gains per 2 minutes and CASA's leakage gauge) on simulated linear
and circular feeds: every solved term against the simulator's truth.

Expected values (docs/conventions.md, alakazam/solvers/__init__.py)
---------------------------------------------------------------------
The simulator's antenna-side diagonal is, per antenna a, feed p/q, frequency nu and time t,

    Delta_a,p = exp(-2 pi i tau_a,p nu) b_a,p(nu) g_a,p(t) exp(-2 pi i tau_c nu)     (K G_bp G_t KC)
    Delta_a,q = exp(-2 pi i tau_a,q nu) b_a,q(nu) g_a,q(t) exp(+i phi_c)             (K G_bp G_t CP)

followed by D_a P_a.  Let theta_p(nu, t) = arg Delta_ref,p.

* K, G, G (parallel hands; KC and CP cancel in them): each is referenced per feed to the reference
  antenna (tau[ref] = 0, arg g[ref] = 0), so the solved product S_a,p = K G_bp G_t equals
  Delta_a,p exp(-i theta_p): the truth referenced to the reference antenna's phase (as in
  tests/test_flow.py; the KC, CP factors are common to all antennas and drop out).  Per scan,
  K = tau_a,p - tau_ref,p (the simulated bandpass phase is even about the band centre: no delay in it).
* After the parallel-hand correction Delta_a,p / S_a,p = exp(i theta_p) for every antenna, so the cross
  hands are V'_pq = exp(i (theta_p - theta_q)) [D_a P M P^H D_b^H]_pq, with

    theta_p - theta_q = -2 pi nu (tau_c + tau_ref,p - tau_ref,q) + beta(nu) + gamma - phi_c,
    beta(nu) = arg(b_ref,p b_ref,q^*)(nu),   gamma = arg(g_ref,p g_ref,q^*)(t)

  (gamma is constant in time: the simulated time-gain drift is common to both feeds -- asserted).
  KC fits V_pq = exp(-i (2 pi tau (nu - nu_c) + phi)) M_pq; its delay is minus the phase slope / 2 pi,
  beta being even about the band centre (no slope), so

    KC = tau_c + tau_ref,p - tau_ref,q                                   (ns)

  (the not-yet-calibrated leakage multiplies the KC fringe by one frequency-independent factor: no bias).
  With KC applied (diag(exp(-2 pi i KC nu), 1)) exp(i (beta + gamma - phi_c)) is left, and CP fits
  V_pq = exp(-i phi) M_pq, so per channel

    CP(nu) = phi_c - arg(b_ref,p b_ref,q^*)(nu) - arg(g_ref,p g_ref,q^*).

  KC is fitted about the band centre with a nuisance phase that is not stored, while its Jones is
  exp(-2 pi i tau nu) at absolute frequency: a KC error d_tau turns the cross-hand phase by
  -2 pi d_tau nu (0.16 rad at 1.3 GHz for d_tau = 0.02 ns, a 0.5-sigma KC error here), and CP, solved
  with KC applied, absorbs it channel by channel.  So CP is checked as the pair determines it: the
  cross-hand phase of KC.CP, -2 pi tau_KC nu - phi_CP(nu), against the truth's
  -2 pi KC_expected nu - CP_expected(nu), i.e. phi_CP + 2 pi (tau_KC - KC_expected) nu = CP_expected.
* With these, the residual diagonal is one phase common to both feeds and all antennas, which cancels
  in D_a M D_b^H: D compares with the simulated leakage directly, provided the truth obeys the solver's
  gauge d_pq[ref] = 0.  The truth cannot be transformed into that gauge exactly: d_pq -> d_pq + c,
  d_qp -> d_qp - c^* leaves the response to the unpolarised flux unchanged only to first order in d and
  changes the response to the polarised flux (by -2 c Q_rot in pq for linear feeds) -- the
  parallactic-angle coverage that separates D from the source polarisation also breaks it.  So the
  simulation sets d_pq[ref] = 0 (simulate_ms(leakage_ref_zero=True)).
* Parallactic-angle coverage: 3C286 passes ~4 deg from the VLA zenith at mid-run; its six scans have
  mean parallactic angles of about -73, -70, -56, 13, 62, 71 deg (2 chi spans ~290 deg), so the source
  polarisation (rotating as 2 chi) separates from the leakage (fixed in the feed frame).

Single-pass systematics (why the leakages are small here)
---------------------------------------------------------
K and G are solved before D is known, so the parallel hands' first-order leakage terms d M_cross go into
G: an error ~ 0.2 |d| in the G product, which D inherits at ~ 0.06 |d| (D alone on the same data is
exact to 1e-8; with G solved first it is off by 4e-3 / 5e-3 for |d| ~ 0.07, linear / circular).  These
are properties of solving the chain once in this order, not noise, so the simulation uses leakages of
scale 0.003 (|d| ~ 0.004), where, measured without noise, they are 8e-4 (G product), 1e-4 / 2.4e-4 (D),
1e-4 rad (CP), < 1e-6 (K, KC) -- each at most ~2 standard errors -- while |d| stays ~30 standard errors
of D (a D that is zero or conjugated fails).  CP itself absorbs the leakage of the unpolarised flux as
a per-baseline offset (alakazam.solvers.cross_phase.remove_leakage_offsets); without that it is off by
~3 |d| rad for linear feeds (0.22 rad for |d| ~ 0.07) and this test fails for both feeds.

Tolerances
----------
Noise sigma per real/imag part; N_b = n_ant - 1 baselines per antenna; a2 = the smallest (over channel,
time, feed) mean over antennas of |Delta|^2 (the corrected data's noise is sigma / |Delta_a Delta_b|);
S = I of 3C286, m its fractional polarisation; n_int = 30 integrations of 120 s on 3C286 (6 scans x 5).
Standard errors (one real component):
  G bandpass per channel (30 ints):   s_B = sigma / (S sqrt(a2 N_b n_int))             (relative)
  G time per 2 min = 1 int x 8 chans: s_T = sigma / (S sqrt(a2 N_b n_chan))
  K per scan (5 ints):  s_K = sigma / (2 pi 1e-9 S sqrt(a2^2 N_b 5 sum (nu - nu_c)^2))     (ns)
  D (full band):  s_D = sigma / ((1 - m) S sqrt(a2^2 N_b n_int n_chan))
      (each baseline's cross hands give d_pq,a M_qq + d_qp,b^* M_pp, with |M_pp|, |M_qq| >= (1 - m) S)
  KC: 1 / sqrt(sum over baselines, ints, cross hands, chans of
      a2^2 |M_x|^2 (2 pi 1e-9 (nu - nu_c))^2 / sigma^2)
  CP per channel: 1 / sqrt(sum over baselines, ints, cross hands of a2^2 |M~_x|^2 / sigma^2), M~ the
      feed-frame model's cross hands minus their mean over the scans (what the leakage offsets leave).
The bounds are 5 x these, x sqrt(2) where a referenced quantity also carries the reference antenna's
error (G product, K, D), with the errors of the parallel-hand terms that KC / CP absorb added in
quadrature; the G product's relative error is made absolute with the largest |Delta|.  Integrations of
120 s make every 2-min time-gain bin one integration, so the solved time gain is the true one at the
solution time (no averaging of the drifting gain to allow for).
"""

import numpy as np
import pytest

from alakazam.config import solve_config_from_dict
from alakazam.flow import run_solve
from alakazam.io import hdf5
from alakazam.sim import simulate_ms
from alakazam.sim.simulate import _brightness, _rotation

TWO_PI_NS = 2 * np.pi * 1e-9
N_ANT, N_CHAN, INT_S, SCAN_S, NOISE, LEAK = 8, 8, 120.0, 600.0, 0.05, 0.003
K_SIGMA = 5.0


@pytest.fixture(scope="module", params=["linear", "circular"])
def fullpol(request, tmp_path_factory):
    feed = request.param
    d = tmp_path_factory.mktemp(f"fullpol_{feed}")
    ms, cal = str(d / "sim.ms"), str(d / "cal.h5")
    truth = simulate_ms(ms, feed=feed, n_ant=N_ANT, n_chan=(N_CHAN,), int_s=INT_S, scan_len_s=SCAN_S,
                        noise=NOISE, seed=31, flag_rows=0.0, dead_ant=False, leakage_scale=LEAK,
                        leakage_ref_zero=True)
    # the chain of examples/full_polarization.yaml, one round (the example: 3, test_examples_as_run.py)
    cfg = solve_config_from_dict(dict(
        ms=ms, output=cal, ref_ant="C00", apply_parang=True, jones=["K", "G", "G", "KC", "CP", "D"],
        field=["3C286"], time_interval=["scan", "inf", "2min", "inf", "inf", "inf"],
        freq_interval=["full", "1MHz", "full", "full", "1MHz", "full"]))
    summary = run_solve(cfg)
    assert list(summary["terms"]) == ["K0", "G0", "G1", "KC0", "CP0", "D0"]
    return truth, cal, _errors(truth)


def _errors(truth):
    """Standard errors of every term (module docstring) and the quantities they need."""
    fname = "3C286"
    freqs = truth.spw_freqs[0]
    dnu = freqs - freqs.mean()
    per_scan = int(round(SCAN_S / INT_S))
    tsel = np.array([truth.scans[i // per_scan + 1] == fname for i in range(len(truth.times))])
    n_int = int(tsel.sum())
    n_scan = n_int // per_scan
    stokes_i, Q, U, V = truth.flux_true[fname]
    m = np.sqrt(Q ** 2 + U ** 2 + V ** 2) / stokes_i
    nb = N_ANT - 1
    n_bl = N_ANT * nb // 2
    amp2 = (np.abs(truth.bandpass[0])[:, :, None, :] * np.abs(truth.time_gain[:, tsel])[:, None]) ** 2
    a2 = amp2.mean(axis=0).min()                  # min over (chan, time, feed) of the antenna mean
    a_max = np.sqrt(amp2.max())
    # feed-frame model of the calibrator at its integrations: P M P^H
    P = _rotation(truth.parang[fname][tsel], truth.feed)
    Mf = np.einsum("tij,jk,tlk->til", P, _brightness(truth.flux_true[fname], truth.feed), np.conj(P))
    cross = np.stack([Mf[:, 0, 1], Mf[:, 1, 0]], axis=-1)             # (n_int, 2)
    scan_avg = cross.reshape(n_scan, per_scan, 2).mean(axis=1)        # one sample per scan
    varying = scan_avg - scan_avg.mean(axis=0)
    s = dict(
        B=NOISE / (stokes_i * np.sqrt(a2 * nb * n_int)),
        T=NOISE / (stokes_i * np.sqrt(a2 * nb * N_CHAN)),
        K=1e9 / (2 * np.pi * np.sqrt(a2 ** 2 * stokes_i ** 2 * nb * per_scan * (dnu ** 2).sum()) / NOISE),
        D=NOISE / ((1 - m) * stokes_i * np.sqrt(a2 ** 2 * nb * n_int * N_CHAN)),
        KC=1.0 / np.sqrt(n_bl * a2 ** 2 * (np.abs(cross) ** 2).sum() * ((TWO_PI_NS * dnu) ** 2).sum()
                         / NOISE ** 2),
        CP=1.0 / np.sqrt(n_bl * a2 ** 2 * per_scan * (np.abs(varying) ** 2).sum() / NOISE ** 2),
    )
    s["a_max"], s["n_scan"], s["n_int"], s["dnu"] = a_max, n_scan, n_int, dnu
    return s


def _solved_product(cal, truth, scan):
    """(solved, true) K G_bp G_t per antenna, channel, G1 time and feed, both referenced to the
    reference antenna's phase; the solution flags."""
    k = [s for s in hdf5.read_term(cal, "K0") if s.scan_id == scan][0]
    g0 = hdf5.read_term(cal, "G0")[0]
    g1 = [s for s in hdf5.read_term(cal, "G1") if s.scan_id == scan][0]
    freqs = truth.spw_freqs[0][g0.attrs["channels"]]
    kj = np.exp(-1j * TWO_PI_NS * k.delay[:, 0, 0][:, None, :] * freqs[None, :, None])    # (a, c, 2)
    g0d = np.stack([g0.jones[:, :, 0, 0, 0], g0.jones[:, :, 0, 1, 1]], -1)                  # (a, c, 2)
    g1d = np.stack([g1.jones[:, 0, :, 0, 0], g1.jones[:, 0, :, 1, 1]], -1)                  # (a, t, 2)
    solved = (kj * g0d)[:, :, None] * g1d[:, None]
    it = np.array([np.argmin(np.abs(truth.times - t)) for t in g1.time])
    assert np.abs(truth.times[it] - g1.time).max() < 1e-3       # one integration per 2-min bin
    tk = np.exp(-1j * TWO_PI_NS * truth.tau[:, None, :] * freqs[None, :, None])
    true = (tk * truth.bandpass[0])[:, :, None] * truth.time_gain[:, it][:, None]
    ref = lambda x: x * np.conj(x[:1]) / np.abs(x[:1])          # noqa: E731
    flags = g1.flags[:, 0][:, None, :, None] | g0.flags[:, :, 0][:, :, None, None] | \
        k.flags[:, 0, 0][:, None, None, None]
    return ref(solved), ref(true), np.broadcast_to(flags, solved.shape)


def test_parallel_hands_K_and_gain_product(fullpol):
    truth, cal, s = fullpol
    scans = [sc for sc, f in truth.scans.items() if f == "3C286"]
    assert len(scans) == s["n_scan"] == 6
    # K per scan: tau_a,p - tau_ref,p
    kerr = max(np.abs(ks.delay[:, 0, 0] - (truth.tau - truth.tau[0])).max()
               for ks in hdf5.read_term(cal, "K0"))
    kbound = K_SIGMA * np.sqrt(2) * s["K"]
    # the product: relative errors of bandpass, time gain and the K phase at the band edge
    s_kph = TWO_PI_NS * s["K"] * np.abs(s["dnu"]).max()
    gbound = K_SIGMA * np.sqrt(2) * s["a_max"] * np.sqrt(s["B"] ** 2 + s["T"] ** 2 + s_kph ** 2)
    gerr = 0.0
    for sc in scans:
        solved, true, flags = _solved_product(cal, truth, sc)
        assert not flags.any()
        gerr = max(gerr, np.abs(solved - true).max())
    print(f"{truth.feed}: K {kerr:.3g} < {kbound:.3g} ns; KGG product {gerr:.3g} < {gbound:.3g}")
    assert kerr < kbound, (kerr, kbound)
    assert gerr < gbound, (gerr, gbound)


def test_cross_delay_absorbs_reference_delay_difference(fullpol):
    truth, cal, s = fullpol
    (kc,) = hdf5.read_term(cal, "KC0")
    tau = kc.delay[:, 0, 0, 0]
    assert np.ptp(tau) == 0 and not kc.flags.any()          # one delay for all antennas
    expected = truth.kc_tau + truth.tau[0, 0] - truth.tau[0, 1]
    err = abs(tau[0] - expected)
    # + the reference antenna's p - q delay error from K (6 scans) and the random per-channel bandpass
    # phase errors of both feeds seen as a slope
    s_bp_slope = np.sqrt(2) * s["B"] / np.sqrt(((TWO_PI_NS * s["dnu"]) ** 2).sum())
    bound = K_SIGMA * np.sqrt(s["KC"] ** 2 + 2 * s["K"] ** 2 / s["n_scan"] + s_bp_slope ** 2)
    print(f"{truth.feed}: KC {tau[0]:.6f} expected {expected:.6f} ns, error {err:.3g} < {bound:.3g}")
    assert err < bound, (err, bound)
    assert abs(truth.tau[0, 0] - truth.tau[0, 1]) > 3 * bound      # the absorbed part is resolved


def test_cross_phase_absorbs_reference_phase_difference(fullpol):
    truth, cal, s = fullpol
    (cp,) = hdf5.read_term(cal, "CP0")
    (kc,) = hdf5.read_term(cal, "KC0")
    phi = np.angle(cp.jones[:, :, 0, 1, 1])                   # (n_ant, n_chan)
    assert np.ptp(phi, axis=0).max() == 0 and not cp.flags.any()
    assert np.allclose(cp.jones[:, :, 0, 0, 0], 1) and np.abs(cp.jones[:, :, 0, 0, 1]).max() == 0
    # the derivation needs the reference antenna's p - q time-gain phase to be constant
    gamma_t = np.angle(truth.time_gain[0, :, 0] * np.conj(truth.time_gain[0, :, 1]))
    assert np.ptp(np.unwrap(gamma_t)) < 1e-9
    beta = np.angle(truth.bandpass[0][0, :, 0] * np.conj(truth.bandpass[0][0, :, 1]))
    expected = truth.cp_phase - beta - gamma_t[0]
    # the KC.CP cross-hand phase (module docstring): phi_CP + 2 pi (tau_KC - KC_expected) nu = expected
    tau_kc = kc.delay[0, 0, 0, 0]
    d_tau = tau_kc - (truth.kc_tau + truth.tau[0, 0] - truth.tau[0, 1])
    nu = truth.spw_freqs[0][cp.attrs["channels"]]
    err = np.abs(np.angle(np.exp(1j * (phi[0] + TWO_PI_NS * d_tau * nu - expected))))
    # + the reference antenna's p - q bandpass phase error (per channel) and time-gain phase error
    # (averaged over the n_int solution times)
    bound = K_SIGMA * np.sqrt(s["CP"] ** 2 + 2 * s["B"] ** 2 + 2 * s["T"] ** 2 / s["n_int"])
    alone = np.abs(np.angle(np.exp(1j * (phi[0] - expected)))).max()
    print(f"{truth.feed}: KC.CP cross-hand phase error per channel max {err.max():.3g} < {bound:.3g} rad "
          f"(CP alone: {alone:.3g})")
    assert err.max() < bound, (err, bound)
    assert np.abs(np.angle(np.exp(1j * (expected - truth.cp_phase)))).max() > 10 * bound   # resolved


def test_leakage_recovered_in_reference_gauge(fullpol):
    truth, cal, s = fullpol
    (dset,) = hdf5.read_term(cal, "D0")
    assert not dset.flags.any()
    j = dset.jones[:, 0, 0]
    assert np.allclose(np.diag(j[0]), 1) and abs(j[0, 0, 1]) < 1e-12          # d_pq[ref] = 0
    solved = np.stack([j[:, 0, 1], j[:, 1, 0]], axis=-1)
    assert truth.leakage[0, 0] == 0
    err = np.abs(solved - truth.leakage)
    bound = K_SIGMA * np.sqrt(2) * s["D"]
    print(f"{truth.feed}: D error max {err.max():.3g} < {bound:.3g} "
          f"(mean |d| {np.abs(truth.leakage).mean():.3g})")
    assert err.max() < bound, (err, bound)
    # the test can fail: the leakages are well above the bound (a zero or conjugated D would fail)
    assert np.median(np.abs(truth.leakage[1:])) > 3 * bound, (np.abs(truth.leakage), bound)


def test_cp_leakage_offsets_exact_and_fallback():
    """remove_leakage_offsets: V = e^{-i phi} (M + C_b) with any per-baseline constant C_b gives phi
    exactly; a cell whose model does not vary between samples is left unchanged."""
    from alakazam.solvers import CellBatch, solve
    from alakazam.solvers.cross_phase import remove_leakage_offsets

    rng = np.random.default_rng(3)
    n_cell, n_bl, n_samp, phi = 2, 6, 5, 0.7
    model = rng.normal(size=(n_cell, n_bl, n_samp, 4)) + 1j * rng.normal(size=(n_cell, n_bl, n_samp, 4))
    model[1] = model[1, :, :1]                                      # cell 1: the same model in every sample
    offset = 3 * (rng.normal(size=(n_cell, n_bl, 1, 4)) + 1j * rng.normal(size=(n_cell, n_bl, 1, 4)))
    vis = model + offset
    vis[..., 1] *= np.exp(-1j * phi)
    vis[..., 2] *= np.exp(1j * phi)
    ant1, ant2 = np.triu_indices(4, 1)
    batch = CellBatch(vis=vis.copy(), model=model.copy(), weight=np.ones(vis.shape), ant1=ant1, ant2=ant2,
                      freq=np.full((n_cell, n_samp), 1.4e9), n_ant=4)
    changed = remove_leakage_offsets(batch)
    assert changed.tolist() == [True, False]
    np.testing.assert_array_equal(batch.vis[1], vis[1])
    res = solve("CP", batch)
    assert abs(np.angle(res.jones[0, 0, 1, 1]) - phi) < 1e-12
    # without the offsets removed the same data give a wrong phase
    plain = CellBatch(vis=vis, model=model, weight=np.ones(vis.shape), ant1=ant1, ant2=ant2,
                      freq=np.full((n_cell, n_samp), 1.4e9), n_ant=4)
    assert abs(np.angle(solve("CP", plain).jones[0, 0, 1, 1]) - phi) > 0.01
