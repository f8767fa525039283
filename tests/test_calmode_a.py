"""calmode='a' (CASA amplitude-only G): real positive gains at the Cramer-Rao bound (numba, scipy,
ceres and jax agree), and the akcal/YAML plumbing."""

import numpy as np
import pytest

from alakazam.caltasks import akcal
from alakazam.caltasks.yamlrun import solve_params
from alakazam.errors import ParameterError
from alakazam.io import hdf5
from alakazam.sim.cells import make_batch
from alakazam.solvers import SolveOptions, solve


def _amp_batch(noise, seed):
    """A G batch whose data carry real positive gains a_p (phase-calibrated data), plus noise."""
    b, tr = make_batch("G", n_cell=2, n_ant=7, seed=seed)
    a = np.abs(tr["g"])                                   # (n_cell, n_ant, 2)
    rng = np.random.default_rng(seed + 100)
    for p, corr in enumerate((0, 3)):
        b.vis[..., corr] = a[:, b.ant1, p][:, :, None] * b.model[..., corr] * a[:, b.ant2, p][:, :, None]
    for corr in (1, 2):
        b.vis[..., corr] = b.model[..., corr]
    b.vis += noise * (rng.standard_normal(b.vis.shape) + 1j * rng.standard_normal(b.vis.shape))
    b.weight[:] = 1.0 / (2 * noise ** 2)
    return b, a


def _sigma(b, a, c, p, corr):
    """Cramer-Rao 1-sigma of the 7 real amplitudes (Fisher matrix of V = a1 a2 M)."""
    M = b.model[c, :, :, corr]
    w = b.weight[c, :, :, corr]
    n = a.shape[1]
    J = np.zeros((M.size, n), complex)
    for k in range(n):
        d = (np.where(b.ant1 == k, a[c, b.ant2, p], 0) + np.where(b.ant2 == k, a[c, b.ant1, p], 0))
        J[:, k] = (d[:, None] * M).ravel()
    W = w.ravel()
    F = (J.real.T * W) @ J.real + (J.imag.T * W) @ J.imag
    return np.sqrt(np.diag(np.linalg.inv(F)))


def test_amp_only_recovers_real_gains_at_the_bound():
    b, a = _amp_batch(noise=0.05, seed=7)
    res = {}
    for backend in ("numba", "scipy", "ceres", "jax"):
        r = solve("G", b, backend=backend, opts=SolveOptions(amp_only=True))
        g = r.params
        assert np.all(g.imag == 0) and np.all(g.real > 0), backend
        for c in range(b.n_cell):
            for p, corr in enumerate((0, 3)):
                err = g[c, :, p].real - a[c, :, p]
                sig = _sigma(b, a, c, p, corr)
                assert np.all(np.abs(err) < 5 * sig), (backend, err / sig)
                assert np.abs(err).max() > 0
        res[backend] = g
    for backend in ("scipy", "ceres", "jax"):
        np.testing.assert_allclose(res[backend], res["numba"], rtol=1e-6, err_msg=backend)
    # noiseless: exact
    b0, a0 = _amp_batch(noise=1e-12, seed=8)
    r = solve("G", b0, opts=SolveOptions(amp_only=True))
    np.testing.assert_allclose(r.params.real, a0, rtol=1e-8)


def test_amp_only_takes_the_amplitudes_of_phase_uncalibrated_data():
    """CASA's apmode 'A' (solvers.common.amplitudes_only): each averaged sample keeps its amplitude and
    takes the model's phase before the real gains are fitted, so data whose phases are not calibrated
    (random antenna phases up to pi) give their amplitudes in every backend, within 5 sigma of the
    bound.  Fitted to the complex data they came out 0.06-1.2 for a truth of 0.93-1.25, converged and
    unflagged (review 55b)."""
    b, a = _amp_batch(noise=0.02, seed=11)
    rng = np.random.default_rng(3)
    ph = np.exp(1j * rng.uniform(-np.pi, np.pi, (b.n_cell, b.n_ant, 2)))
    for p, corr in enumerate((0, 3)):
        b.vis[..., corr] *= (ph[:, b.ant1, p] * np.conj(ph[:, b.ant2, p]))[:, :, None]
    for backend in ("numba", "scipy", "ceres", "jax"):
        r = solve("G", b, backend=backend, opts=SolveOptions(amp_only=True))
        assert r.converged.all() and not r.flags.any(), backend
        for c in range(b.n_cell):
            for p, corr in enumerate((0, 3)):
                err = r.params[c, :, p].real - a[c, :, p]
                assert np.all(np.abs(err) < 5 * _sigma(b, a, c, p, corr)), (backend, err)


def test_amp_only_noiseless_exact_in_every_backend():
    b0, a0 = _amp_batch(noise=1e-12, seed=8)
    for backend in ("scipy", "ceres", "jax"):
        r = solve("G", b0, backend=backend, opts=SolveOptions(amp_only=True))
        np.testing.assert_allclose(r.params.real, a0, rtol=1e-8, err_msg=backend)
        assert np.all(r.params.imag == 0) and r.converged.all(), backend


def test_akcal_calmode_p_then_a(sim_linear, tmp_path):
    ms, _ = sim_linear
    kw = dict(vis=ms, field="3C286", refant="C00", solint="scan")
    cal = str(tmp_path / "pa.h5")
    akcal(caltable=cal, jones=["G", "G"], calmode=["p", "a"], **kw)
    ap = str(tmp_path / "ap.h5")
    akcal(caltable=ap, jones=["G"], calmode="ap", **kw)
    g0 = {(s.scan_id, s.spw): s for s in hdf5.read_term(cal, "G0")}
    g1 = hdf5.read_term(cal, "G1")
    for s in g1:
        ok = ~s.flags
        d = s.jones[..., 0, 0][ok], s.jones[..., 1, 1][ok]
        assert all(np.all(x.imag == 0) and np.all(x.real > 0) for x in d)
        assert s.attrs["amp_only"] and not s.attrs["phase_only"]
        # the p-then-a chain reproduces the one-step complex solution: phases from G0, amplitudes from
        # G1 (two estimators of the same gains on the same data; differences are second order in the
        # noise, ~1e-4 here against a 1e-3 bound)
        ref = next(x for x in hdf5.read_term(ap, "G0") if (x.scan_id, x.spw) == (s.scan_id, s.spw))
        for p in (0, 1):
            prod = (g0[(s.scan_id, s.spw)].jones[..., p, p] * s.jones[..., p, p])[ok]
            np.testing.assert_allclose(np.abs(prod), np.abs(ref.jones[..., p, p][ok]), rtol=1e-3)
    with pytest.raises(ParameterError, match="'x' is not a calmode"):
        akcal(caltable=str(tmp_path / "x.h5"), jones=["G"], calmode="x", **kw)
    assert not (tmp_path / "x.h5").exists()
    # the p-then-a chain with the ceres backend: the same amplitudes as numba's
    ce = str(tmp_path / "ce.h5")
    akcal(caltable=ce, jones=["G", "G"], calmode=["p", "a"], solver="ceres", **kw)
    want = {(x.scan_id, x.spw): x for x in hdf5.read_term(cal, "G1")}
    for s in hdf5.read_term(ce, "G1"):
        w = want[(s.scan_id, s.spw)]
        assert np.array_equal(s.flags, w.flags) and not s.flags.all()
        np.testing.assert_allclose(s.jones[~s.flags], w.jones[~w.flags], rtol=1e-6, atol=1e-9)
    # YAML: phase_only / amp_only per step -> calmode
    p = solve_params({"ms": ms, "output": cal, "jones": ["G", "G"], "phase_only": [True, False],
                      "amp_only": [False, True]})
    assert p["calmode"] == ["p", "a"]


def test_amp_only_gains_positive_for_an_antenna_without_signal():
    """A dead antenna (its baselines noise only, unflagged): its least-squares real amplitude is ~0 and
    may be negative; calmode 'a' returns real gains >= 0 in every backend (a negative amplitude would
    be a phase of pi), and the other antennas' gains agree across backends."""
    b, a = _amp_batch(noise=0.05, seed=11)
    dead = (b.ant1 == 3) | (b.ant2 == 3)
    rng = np.random.default_rng(5)
    b.vis[:, dead] = 0.05 * (rng.standard_normal(b.vis[:, dead].shape)
                             + 1j * rng.standard_normal(b.vis[:, dead].shape))
    res = {}
    for backend in ("numba", "scipy", "ceres", "jax"):
        g = solve("G", b, backend=backend, opts=SolveOptions(amp_only=True)).params
        assert np.all(g.imag == 0) and np.all(g.real >= 0), (backend, g[:, 3])
        assert np.all(g.real[:, 3] < 0.05), backend                 # no signal: ~0
        res[backend] = g
    live = np.arange(7) != 3
    for backend in ("scipy", "ceres", "jax"):
        np.testing.assert_allclose(res[backend][:, live], res["numba"][:, live], rtol=1e-3, err_msg=backend)
