"""Solver truth tests: synthetic batches with known Jones (alakazam.sim.cells, independent einsum).

Noisy cases compare with the Cramer-Rao bound: the Fisher matrix of the test's own einsum model,
by finite differences at the truth, gives the predicted standard error of every fitted parameter; each
error must be within 5 sigma (with ~100 parameters the chance of a false failure is ~1e-4).
"""

import importlib.util

import numpy as np
import pytest

from alakazam.sim.cells import make_batch  # noqa: E402

from alakazam.errors import AlakazamError, BackendUnavailableError  # noqa: E402
from alakazam.solvers import SolveOptions, solve  # noqa: E402

BACKENDS = ["numba"] + [b for b in ("scipy",) if importlib.util.find_spec(
    "alakazam.solvers.backends.%s_backend" % b) is not None]
FEEDS = ["linear", "circular"]


def _ref_g(g, ref=0):
    r = g[:, [ref]]
    return g * np.conj(r) / np.abs(r)


def _einsum_vis(J, M, a1, a2):
    """V (n_bl, n_samp, 4) from J (n_ant, n_samp, 2, 2) and M (n_bl, n_samp, 2, 2)."""
    return np.einsum("bsij,bsjk,bslk->bsil", J[a1], M, np.conj(J[a2])).reshape(len(a1), -1, 4)


def _fisher_sigma(vis_of_x, x0, weight, corr):
    """Predicted 1-sigma errors of real parameters x from the Fisher matrix J^T W J."""
    eps = 1e-6
    v0 = vis_of_x(x0)[..., corr]
    w = weight[..., corr].ravel()
    cols = []
    for i in range(len(x0)):
        x = x0.copy()
        x[i] += eps
        d = (vis_of_x(x)[..., corr] - v0).ravel() / eps
        cols.append(np.concatenate([d.real * np.sqrt(w), d.imag * np.sqrt(w)]))
    Jm = np.array(cols).T
    return np.sqrt(np.diag(np.linalg.inv(Jm.T @ Jm)))


def _M(batch, c):
    return batch.model[c].reshape(batch.model.shape[1], batch.model.shape[2], 2, 2)


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_G_noiseless_and_noisy(feed, backend):
    b, tr = make_batch("G", n_cell=3, n_ant=7, feed=feed, seed=3)
    r = solve("G", b, backend=backend)
    assert np.abs(r.params - _ref_g(tr["g"])).max() < 1e-8
    assert r.converged.all() and not r.flags.any()
    sigma = 0.05
    b, tr = make_batch("G", n_cell=2, n_ant=7, feed=feed, noise=sigma, seed=4)
    r = solve("G", b, backend=backend)
    gt = _ref_g(tr["g"])
    a1, a2 = b.ant1, b.ant2
    for c in range(b.n_cell):
        for p, corr in enumerate((0, 3)):
            # params: Re g (all), Im g (all but ref)
            def vis_of_x(x, c=c, p=p):
                g = x[:7] + 1j * np.concatenate([[0.0], x[7:]])
                J = np.zeros((7, 1, 2, 2), complex)
                J[:, 0, 0, 0] = J[:, 0, 1, 1] = g
                return _einsum_vis(J, _M(b, c), a1, a2)
            x0 = np.concatenate([gt[c, :, p].real, gt[c, 1:, p].imag])
            sig = _fisher_sigma(vis_of_x, x0, b.weight[c], [corr])
            est = r.params[c, :, p]
            err = np.concatenate([est.real - gt[c, :, p].real, est[1:].imag - gt[c, 1:, p].imag])
            assert np.all(np.abs(err) < 5 * sig), (err / sig)
            assert np.abs(err).max() > 0          # noise really entered


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_K_noiseless_and_noisy(feed, backend):
    b, tr = make_batch("K", n_cell=2, n_ant=6, n_samp=48, feed=feed, seed=5)
    r = solve("K", b, backend=backend)
    t = tr["tau"] - tr["tau"][:, [0]]
    assert np.abs(r.delay - t).max() < 1e-7          # ns
    # Jones at the band centre follows the convention exp(-2 pi i tau nu)
    nu_c = b.freq.mean(axis=1)
    np.testing.assert_allclose(r.jones[..., 0, 0],
                               np.exp(-2j * np.pi * r.delay[..., 0] * 1e-9 * nu_c[:, None]))
    sigma = 0.5
    b, tr = make_batch("K", n_cell=2, n_ant=6, n_samp=48, feed=feed, noise=sigma, seed=6)
    r = solve("K", b, backend=backend)
    t = tr["tau"] - tr["tau"][:, [0]]
    err = r.delay - t
    # CRB for the delay of antenna a: 1 / (2 pi 1e-9)^2 / (sum_w |V|^2 (nu - nu_c)^2) over its baselines,
    # computed from the einsum truth (amplitudes included)
    for c in range(b.n_cell):
        for p, corr in enumerate((0, 3)):
            J = tr["J"][c]
            V = _einsum_vis(J, _M(b, c), b.ant1, b.ant2)[..., corr]
            dnu = b.freq[c] - b.freq[c].mean()
            kap = 2 * np.pi * 1e-9 * dnu
            w = b.weight[c][..., corr]
            # Fisher over (phi_a, tau_a), a != 0
            n = 6
            F = np.zeros((2 * (n - 1), 2 * (n - 1)))
            for bl in range(len(b.ant1)):
                s = np.zeros((2 * (n - 1), len(dnu)))
                for ant, sign in ((b.ant1[bl], 1), (b.ant2[bl], -1)):
                    if ant == 0:
                        continue
                    s[2 * (ant - 1)] = sign
                    s[2 * (ant - 1) + 1] = -sign * kap
                F += (s * (w[bl] * np.abs(V[bl]) ** 2)) @ s.T
            sig_tau = np.sqrt(np.diag(np.linalg.inv(F)))[1::2]
            assert np.all(np.abs(err[c, 1:, p]) < 5 * sig_tau), err[c, 1:, p] / sig_tau


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_D_noiseless_and_noisy(feed, backend):
    b, tr = make_batch("D", n_cell=2, n_ant=6, n_samp=6, feed=feed, seed=7)
    r = solve("D", b, backend=backend)
    assert np.abs(r.params - tr["d"]).max() < 1e-8
    assert np.all(r.params[:, 0, 0] == 0)
    sigma = 0.05
    b, tr = make_batch("D", n_cell=1, n_ant=6, n_samp=6, feed=feed, noise=sigma, seed=8)
    r = solve("D", b, backend=backend)
    d = tr["d"][0]

    def vis_of_x(x):
        dd = np.zeros((6, 2), complex)
        dd[1:, 0] = x[0:5] + 1j * x[5:10]
        dd[:, 1] = x[10:16] + 1j * x[16:22]
        J = np.zeros((6, b.freq.shape[1], 2, 2), complex)
        J[..., 0, 0] = J[..., 1, 1] = 1
        J[..., 0, 1] = dd[:, None, 0]
        J[..., 1, 0] = dd[:, None, 1]
        return _einsum_vis(J, _M(b, 0), b.ant1, b.ant2)
    x0 = np.concatenate([d[1:, 0].real, d[1:, 0].imag, d[:, 1].real, d[:, 1].imag])
    sig = _fisher_sigma(vis_of_x, x0, b.weight[0], [0, 1, 2, 3])
    e = r.params[0]
    est = np.concatenate([e[1:, 0].real, e[1:, 0].imag, e[:, 1].real, e[:, 1].imag])
    assert np.all(np.abs(est - x0) < 5 * sig), (est - x0) / sig


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_KC_CP(feed, backend):
    b, tr = make_batch("KC", n_cell=2, n_ant=5, n_samp=40, feed=feed, seed=9)
    r = solve("KC", b, backend=backend)
    assert np.abs(r.params[:, 0] - tr["tau"]).max() < 1e-8
    assert np.all(r.delay[..., 0] == r.params[:, None, 0]) and np.all(r.delay[..., 1] == 0)
    b, tr = make_batch("CP", n_cell=3, n_ant=5, n_samp=4, feed=feed, seed=10)
    r = solve("CP", b, backend=backend)
    assert np.abs(np.angle(np.exp(1j * (r.params[:, 0] - tr["phi"])))).max() < 1e-10
    np.testing.assert_allclose(r.jones[..., 1, 1], np.exp(1j * tr["phi"])[:, None] * np.ones(5))
    # noisy CP: closed-form ML, error within 5 sigma of the CRB 1/sqrt(2 sum w |M_x|^2)
    sigma = 0.3
    b, tr = make_batch("CP", n_cell=4, n_ant=5, n_samp=4, feed=feed, noise=sigma, seed=11)
    r = solve("CP", b, backend=backend)
    crb = 1 / np.sqrt(2 * (b.weight[..., 1:3] * np.abs(b.model[..., 1:3]) ** 2).sum(axis=(1, 2, 3)))
    err = np.angle(np.exp(1j * (r.params[:, 0] - tr["phi"])))
    assert np.all(np.abs(err) < 5 * crb)


ALL_BACKENDS = [b for b in ("numba", "scipy", "ceres", "jax")
                if importlib.util.find_spec({"numba": "numba", "scipy": "scipy", "ceres": "pyceres",
                                             "jax": "jax"}[b]) is not None]


def _true_params(jt, tr, ref):
    """Truth in the solver's parametrisation, referenced to antenna ``ref``."""
    if jt == "G":
        return _ref_g(tr["g"], ref)
    if jt == "K":
        return tr["tau"] - tr["tau"][:, [ref]]
    return tr["d"]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("jt", ["G", "K", "D"])
def test_dead_antenna_and_reference_fallback(jt, backend):
    """An antenna without data is flagged (never given unity); a reference antenna without data is
    replaced by the lowest-index antenna with data, recorded per cell -- every backend."""
    n_samp = {"G": 1, "K": 40, "D": 6}[jt]
    b, tr = make_batch(jt, n_cell=2, n_ant=6, n_samp=n_samp, seed=12, flagged_ants=(3,))
    r = solve(jt, b, backend=backend)
    assert r.flags[:, 3].all() and np.isnan(r.jones[:, 3]).all()
    assert not r.flags[:, [0, 1, 2, 4, 5]].any()
    if jt == "D":
        return   # d_pq[ref] = 0 fixes D's gauge only with the requested reference (tested below)
    b, tr = make_batch(jt, n_cell=2, n_ant=6, n_samp=n_samp, seed=13, flagged_ants=(0,), ref_ant=0)
    r = solve(jt, b, backend=backend)
    assert (r.ref_ant == 1).all()
    assert r.flags[:, 0].all() and not r.flags[:, 1:].any()
    got = r.params[:, 1:] if jt == "G" else r.delay[:, 1:]
    np.testing.assert_allclose(got, _true_params(jt, tr, 1)[:, 1:], atol=1e-7)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_phase_only_and_heavy_flagging(backend):
    b, tr = make_batch("G", n_cell=2, n_ant=7, seed=14, phase_only=True)
    r = solve("G", b, backend=backend, opts=SolveOptions(phase_only=True))
    np.testing.assert_allclose(np.abs(r.params), 1.0, atol=1e-12)
    assert np.abs(r.params - _ref_g(tr["g"])).max() < 1e-8
    for jt, n_samp in (("G", 4), ("K", 64), ("D", 8)):
        b, tr = make_batch(jt, n_cell=2, n_ant=7, n_samp=n_samp, seed=15, flag_fraction=0.5)
        r = solve(jt, b, backend=backend)
        assert not r.flags.any()
        got = r.delay[..., :] if jt == "K" else r.params
        assert np.abs(got - _true_params(jt, tr, 0)).max() < 1e-7, jt


def test_unpolarised_model_rejected_for_KC_CP():
    for jt in ("KC", "CP"):
        b, _ = make_batch(jt, n_cell=1, n_ant=4, n_samp=8, polarised=False, seed=16)
        with pytest.raises(AlakazamError, match="polarised model"):
            solve(jt, b)


def test_missing_backend_is_an_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyceres" else real(name, *a))
    b, _ = make_batch("G", n_cell=1, n_ant=4, seed=1)
    with pytest.raises(BackendUnavailableError, match="pip install pyceres"):
        solve("G", b, backend="ceres")
    with pytest.raises(AlakazamError, match="unknown backend"):
        solve("G", b, backend="fortran")


@pytest.mark.parametrize("jt,n_samp", [("G", 2), ("K", 48), ("D", 6), ("KC", 40), ("CP", 4)])
def test_backends_agree_on_noisy_data(jt, n_samp):
    """Every backend converges to the same least-squares minimum (to ~1e-6 relative)."""
    b, _ = make_batch(jt, n_cell=2, n_ant=6, n_samp=n_samp, noise=0.05, seed=30)
    ref = solve(jt, b, backend="numba")
    for be in BACKENDS[1:]:
        r = solve(jt, b, backend=be)
        scale = np.abs(ref.params).max()
        assert np.abs(r.params - ref.params).max() < 1e-6 * scale, (be, np.abs(r.params - ref.params).max())
        np.testing.assert_allclose(r.cost, ref.cost, rtol=1e-8)


def test_fringe_fft_equals_8x_padded_fft():
    """K's initial guess: the two-stage peak search gives exactly the peak of an 8x zero-padded FFT,
    also with a flagged block of channels."""
    from alakazam.solvers.parallel_delay import fringe_fft

    rng = np.random.default_rng(3)
    f = 1.4e9 + np.arange(1000) * 125e3
    ok = np.ones(1000, bool)
    ok[100:130] = False
    tau = rng.uniform(-200, 200, 40)
    y = np.exp(2j * np.pi * tau[:, None] * 1e-9 * f[None]) * (1 + 0.3 * rng.standard_normal((40, 1000)))
    y += 0.5 * (rng.standard_normal((40, 1000)) + 1j * rng.standard_normal((40, 1000)))
    t, a = fringe_fft(y, f, ok)
    k = np.rint((f[ok] - f[ok][0]) / 125e3).astype(int)
    nfft = 8192
    g = np.zeros((40, nfft), complex)
    g[:, k] = y[:, ok]
    sp = np.abs(np.fft.fft(g, axis=-1))
    kk = sp.argmax(-1)
    kk = np.where(kk > nfft // 2, kk - nfft, kk)
    np.testing.assert_array_equal(t, kk / (nfft * 125e3) * 1e9)
    np.testing.assert_allclose(a, sp.max(-1), rtol=1e-12)
    # and within one fine-grid step of the truth (half a step of gridding, the rest noise)
    assert np.abs(t - tau).max() <= 1e9 / (nfft * 125e3)


@pytest.mark.parametrize("descending", [False, True])
def test_K_wide_band_binned_path(descending):
    """K with >= 256 channels takes the binned coarse passes before the full-resolution polish:
    noiseless truth to 1e-7 ns, noisy within 5 sigma of the Cramer-Rao bound, identical (1e-6) to the
    full-resolution scipy LM -- with a flagged block of channels and, optionally, descending
    frequencies (CASA allows either order)."""
    n_samp = 512
    freq = 1.0e9 + 250e3 * np.arange(n_samp)
    if descending:
        freq = freq[::-1].copy()
    b, tr = make_batch("K", n_cell=2, n_ant=6, n_samp=n_samp, freq=freq, seed=41, tau_scale=40.0)
    b.weight[:, :, 200:230] = 0.0
    r = solve("K", b)
    assert np.abs(r.delay - (tr["tau"] - tr["tau"][:, [0]])).max() < 1e-7
    sigma = 2.0
    b, tr = make_batch("K", n_cell=2, n_ant=6, n_samp=n_samp, freq=freq, noise=sigma, seed=42,
                       tau_scale=40.0)
    b.weight[:, :, 200:230] = 0.0
    r = solve("K", b)
    ref = solve("K", b, backend="scipy")
    assert np.abs(r.params - ref.params).max() < 1e-6 * np.abs(ref.params).max()
    err = r.delay - (tr["tau"] - tr["tau"][:, [0]])
    for c in range(b.n_cell):
        for p, corr in enumerate((0, 3)):
            V = _einsum_vis(tr["J"][c], _M(b, c), b.ant1, b.ant2)[..., corr]
            w = b.weight[c][..., corr]
            kap = 2 * np.pi * 1e-9 * (b.freq[c] - (b.freq[c] * (w.sum(0) > 0)).sum() / (w.sum(0) > 0).sum())
            n = 6
            F = np.zeros((2 * (n - 1), 2 * (n - 1)))
            for bl in range(len(b.ant1)):
                sv = np.zeros((2 * (n - 1), n_samp))
                for ant, sign in ((b.ant1[bl], 1), (b.ant2[bl], -1)):
                    if ant:
                        sv[2 * (ant - 1)] = sign
                        sv[2 * (ant - 1) + 1] = -sign * kap
                F += (sv * (w[bl] * np.abs(V[bl]) ** 2)) @ sv.T
            sig_tau = np.sqrt(np.diag(np.linalg.inv(F)))[1::2]
            assert np.all(np.abs(err[c, 1:, p]) < 5 * sig_tau), err[c, 1:, p] / sig_tau


def test_scipy_takes_a_tolerance_below_machine_epsilon():
    """tol=1e-17 (accepted by every backend: tol > 0) in scipy: its least_squares refuses tolerances at or
    below machine epsilon and raised "All tolerances must be higher than machine epsilon" mid-run
    (review 55b); its ftol is floored at 2 eps."""
    b, _ = make_batch("G", n_cell=1, n_ant=4, n_samp=4, noise=0.05, seed=3)
    r = solve("G", b, backend="scipy", opts=SolveOptions(tol=1e-17))
    rn = solve("G", b, backend="numba", opts=SolveOptions(tol=1e-17))
    assert r.converged.all()
    np.testing.assert_allclose(r.params, rn.params, atol=1e-6)
