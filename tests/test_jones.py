"""Jones constructors and the (row, chan, corr) correction kernels against numpy/einsum references."""

import os
import sys

import numpy as np
import pytest

from alakazam.errors import AlakazamError
from alakazam.jones import algebra, parang

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jones_reference as constructors  # noqa: E402  (tests/jones_reference.py)
import jones_reference_ad as constructors_ad  # noqa: E402  (tests/jones_reference_ad.py)
import reference_kernels as rk  # noqa: E402  (tests/reference_kernels.py)

RNG = np.random.default_rng(42)
N_T, N_ANT, N_CHAN, N_ROW = 3, 5, 6, 40


def _crandn(*shape):
    return RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)


def _layout():
    tidx = RNG.integers(0, N_T, N_ROW)
    a1 = RNG.integers(0, N_ANT - 1, N_ROW)
    a2 = a1 + 1 + RNG.integers(0, N_ANT - 1 - a1)
    data = _crandn(N_ROW, N_CHAN, 4).astype(np.complex64)
    return data, tidx, a1, a2


def _as_mat(v):   # (row, chan, 4) -> (row, chan, 2, 2)
    return v.reshape(v.shape[:-1] + (2, 2)).astype(np.complex128)


def _full_from_diag(jd):
    out = np.zeros(jd.shape + (2,), complex)
    out[..., 0, 0], out[..., 1, 1] = jd[..., 0], jd[..., 1]
    return out


def _ref_correct(data, J, tidx, a1, a2):
    Jp = J[tidx, a1]                           # (row, chan, 2, 2)
    Jq = J[tidx, a2]
    ip = np.linalg.inv(Jp)
    iqH = np.conj(np.swapaxes(np.linalg.inv(Jq), -1, -2))
    return np.einsum("rcij,rcjk,rckl->rcil", ip, _as_mat(data), iqH).reshape(data.shape)


def _ref_corrupt(model, J, tidx, a1, a2):
    Jp = J[tidx, a1]
    JqH = np.conj(np.swapaxes(J[tidx, a2], -1, -2))
    return np.einsum("rcij,rcjk,rckl->rcil", Jp, _as_mat(model), JqH).reshape(model.shape)


# --- constructors -------------------------------------------------------------------------

def test_delay_sign_and_shape():
    tau = np.array([[1.0, -2.0]])                      # ns
    freq = np.array([1.0e9, 1.1e9, 1.2e9])
    K = constructors.delay_jones(tau, freq)
    assert K.shape == (1, 3, 2, 2)
    # phase of the p-hand falls with frequency for positive tau: -2 pi tau nu
    np.testing.assert_allclose(K[0, :, 0, 0], np.exp(-2j * np.pi * 1e-9 * freq), rtol=1e-12)
    np.testing.assert_allclose(K[0, :, 1, 1], np.exp(+4j * np.pi * 1e-9 * freq), rtol=1e-12)
    assert np.all(np.diff(np.unwrap(np.angle(K[0, :, 0, 0]))) < 0)
    assert np.all(K[..., 0, 1] == 0) and np.all(K[..., 1, 0] == 0)


def test_constructors_matrices():
    g = _crandn(4, 2)
    np.testing.assert_array_equal(constructors.gain_jones(g), _full_from_diag(g))
    d = _crandn(4, 2)
    D = constructors.leakage_jones(d)
    np.testing.assert_array_equal(D, np.array([[[1, a], [b, 1]] for a, b in d]))
    freq = np.array([1e9, 2e9])
    KC = constructors.crossdelay_jones(np.array([0.25, 1.0]), freq)
    assert KC.shape == (2, 2, 2, 2)
    np.testing.assert_allclose(KC[1, :, 0, 0], np.exp(-2j * np.pi * 1e-9 * freq))
    np.testing.assert_array_equal(KC[..., 1, 1], 1)
    CP = constructors.crossphase_jones(np.array([0.3]))
    np.testing.assert_allclose(CP[0], [[1, 0], [0, np.exp(0.3j)]])
    chi = 0.4
    np.testing.assert_allclose(constructors.parang_jones(chi, "linear"),
                               [[np.cos(chi), np.sin(chi)], [-np.sin(chi), np.cos(chi)]])
    np.testing.assert_allclose(constructors.parang_jones(chi, "circular"),
                               [[np.exp(-1j * chi), 0], [0, np.exp(1j * chi)]])
    with pytest.raises(AlakazamError, match="feed_basis"):
        constructors.parang_jones(chi, "elliptical")
    # the package's P (jones/parang.py) is the reference builder's
    chis = np.random.default_rng(5).uniform(-3, 3, (4, 3))
    for basis in ("linear", "circular"):
        np.testing.assert_array_equal(parang.parang_matrices(chis, basis),
                                      constructors.parang_jones(chis, basis))
    with pytest.raises(AlakazamError, match="feed_basis"):
        parang.parang_matrices(chi, "elliptical")


def test_constructors_ad_under_jax():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    jax.config.update("jax_enable_x64", True)
    freq = np.array([1e9, 1.5e9])
    tau = np.array([[0.3, -0.7], [1.2, 0.0]])
    np.testing.assert_allclose(np.asarray(constructors_ad.delay_jones(jnp.asarray(tau), freq, xp=jnp)),
                               constructors.delay_jones(tau, freq), atol=1e-12)

    # gradient of a phase through the AD builder: d/dtau arg(K_pp) = -2 pi nu 1e-9
    def phase(t):
        return jnp.angle(constructors_ad.delay_jones(jnp.stack([t, 0.0]), freq[:1], xp=jnp)[0, 0, 0])

    np.testing.assert_allclose(float(jax.grad(phase)(0.01)), -2 * np.pi * 1e-9 * freq[0], rtol=1e-9)


# --- kernels ------------------------------------------------------------------------------

def test_correct_diag_matches_einsum():
    data, tidx, a1, a2 = _layout()
    jd = _crandn(N_T, N_ANT, N_CHAN, 2)
    out = np.zeros(data.shape, np.complex128)
    fl = np.zeros(data.shape, bool)
    rk.correct_diag(data, jd, tidx, a1, a2, out, fl)
    ref = _ref_correct(data, _full_from_diag(jd), tidx, a1, a2)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    assert not fl.any()


def test_correct_full_and_corrupt_full_match_einsum():
    data, tidx, a1, a2 = _layout()
    J = _crandn(N_T, N_ANT, N_CHAN, 2, 2)
    out = np.zeros(data.shape, np.complex128)
    fl = np.zeros(data.shape, bool)
    algebra.correct_full(data, J, tidx, a1, a2, out, fl)
    np.testing.assert_allclose(out, _ref_correct(data, J, tidx, a1, a2), rtol=1e-10, atol=1e-10)
    assert not fl.any()
    cor = np.zeros(data.shape, np.complex128)
    rk.corrupt_full(data, J, tidx, a1, a2, cor)
    np.testing.assert_allclose(cor, _ref_corrupt(data, J, tidx, a1, a2), rtol=1e-12, atol=1e-12)
    # round trip: correct(corrupt(M)) = M
    back = np.zeros(data.shape, np.complex128)
    algebra.correct_full(cor, J, tidx, a1, a2, back, fl)
    np.testing.assert_allclose(back, data, rtol=1e-9, atol=1e-9)


def test_corrupt_diag_matches_einsum():
    data, tidx, a1, a2 = _layout()
    jd = _crandn(N_T, N_ANT, N_CHAN, 2)
    out = np.zeros(data.shape, np.complex128)
    rk.corrupt_diag(data, jd, tidx, a1, a2, out)
    np.testing.assert_allclose(out, _ref_corrupt(data, _full_from_diag(jd), tidx, a1, a2),
                               rtol=1e-12, atol=1e-12)


def test_correct_diag_flags_nan_and_zero():
    data, tidx, a1, a2 = _layout()
    jd = _crandn(N_T, N_ANT, N_CHAN, 2)
    r = 0
    t, p, q = tidx[r], a1[r], a2[r]
    jd[t, p, 2, 0] = np.nan          # feed p of antenna p: corrs pp, pq of chan 2
    jd[t, q, 4, 1] = 0               # feed q of antenna q: corrs pq, qq of chan 4
    out = np.full(data.shape, 7.0 + 0j)
    fl = np.zeros(data.shape, bool)
    rk.correct_diag(data, jd, tidx, a1, a2, out, fl)
    assert fl[r, 2, 0] and fl[r, 2, 1] and not fl[r, 2, 2] and not fl[r, 2, 3]
    assert fl[r, 4, 1] and fl[r, 4, 3] and not fl[r, 4, 0] and not fl[r, 4, 2]
    assert np.all(out[fl] == 0) and np.all(np.isfinite(out))
    # every other flagged sample is explained by a row sharing that bad Jones element
    bad = np.zeros(data.shape, bool)
    for row in range(N_ROW):
        for c, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            den = jd[tidx[row], a1[row], :, i] * np.conj(jd[tidx[row], a2[row], :, j])
            bad[row, :, c] = ~np.isfinite(den) | (den == 0)
    np.testing.assert_array_equal(fl, bad)


def test_correct_full_flags_singular_and_nan():
    data, tidx, a1, a2 = _layout()
    J = _crandn(N_T, N_ANT, N_CHAN, 2, 2)
    r = 3
    J[tidx[r], a1[r], 1] = [[1, 2], [2, 4]]            # singular
    J[tidx[r], a2[r], 5, 0, 1] = np.nan
    out = np.zeros(data.shape, np.complex128)
    fl = np.zeros(data.shape, bool)
    algebra.correct_full(data, J, tidx, a1, a2, out, fl)
    assert fl[r, 1].all() and fl[r, 5].all()
    assert np.all(np.isfinite(out)) and np.all(out[fl] == 0)
    Jref = J.copy()
    Jref[tidx[r], a1[r], 1] = np.eye(2)
    Jref[tidx[r], a2[r], 5] = np.eye(2)
    bad = np.zeros(data.shape[:2], bool)                   # (row, chan) using a bad matrix
    for row in range(N_ROW):
        for ant in (a1[row], a2[row]):
            bad[row] |= (tidx[row] == tidx[r]) & (((ant == a1[r]) & (np.arange(N_CHAN) == 1))
                                                  | ((ant == a2[r]) & (np.arange(N_CHAN) == 5)))
    np.testing.assert_array_equal(fl, np.repeat(bad[:, :, None], 4, axis=2))
    ok = ~bad
    np.testing.assert_allclose(out[ok], _ref_correct(data, Jref, tidx, a1, a2)[ok], rtol=1e-8, atol=1e-8)


def test_compose_rime_order():
    n = 4
    K = _crandn(n, 2)
    G = _full_from_diag(_crandn(n, 2))
    D = constructors.leakage_jones(_crandn(n, 2))
    P = constructors.parang_jones(RNG.uniform(-3, 3, n), "linear")
    J = rk.compose([K, G], leakage=D, parang=P)
    ref = np.einsum("nij,njk,nkl,nlm->nim", _full_from_diag(K), G, D, P)
    np.testing.assert_allclose(J, ref, rtol=1e-12)
    # D and P do not commute with the diagonal terms: order matters
    assert not np.allclose(J, np.einsum("nij,njk,nkl->nil", D, _full_from_diag(K) @ G, P))
    np.testing.assert_array_equal(rk.compose(), np.eye(2))


def test_nonfinite_any_equals_numpy_definition():
    """jones.algebra.nonfinite_any(a) == ~np.isfinite(a).all(axis=-1) for complex tables of any leading
    shape (empty, one block, several threaded blocks), NaN / Inf in either part, broadcast views."""
    from alakazam.jones.algebra import nonfinite_any

    rng = np.random.default_rng(5)
    for shape in [(3, 4, 5, 2), (7, 1, 2), (0, 3, 2), (40000, 2), (2, 2), (6, 4)]:
        a = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
        if a.size:
            a[rng.random(shape) < 0.05] = np.nan
            a[rng.random(shape) < 0.02] = 1 + 1j * np.inf
            a[rng.random(shape) < 0.02] = -np.inf
        got = nonfinite_any(a)
        assert got.shape == shape[:-1]
        np.testing.assert_array_equal(got, ~np.isfinite(a).all(axis=-1))
    b = np.broadcast_to(a[:1], (5,) + a.shape[1:])
    np.testing.assert_array_equal(nonfinite_any(b), ~np.isfinite(b).all(axis=-1))
