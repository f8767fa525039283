"""The compiled quality statistics equal their numpy definitions (solvers/quality.py docstring)."""

import numpy as np
import pytest

from alakazam.jones import terms
from alakazam.solvers import CellBatch, quality


def _reference_snr(jones_type, batch, J, cost, has, phase_only=False):
    """The SNR of the quality docstring written with einsum/add.at (the definition)."""
    n_cell, n_ant = batch.n_cell, batch.n_ant
    a1, a2 = np.asarray(batch.ant1), np.asarray(batch.ant2)
    Jf = np.where(np.isfinite(J), J, 0)
    M = batch.model.reshape(batch.model.shape[:3] + (2, 2))
    Vh = np.einsum("cbij,cbsjk,cblk->cbsil", Jf[:, a1], M, np.conj(Jf[:, a2])).reshape(batch.model.shape)
    P = np.abs(Vh) ** 2
    w = batch.weight
    tt = terms.get(jones_type)
    n_w = (w[..., list(tt.corr)] > 0).sum(axis=(1, 2, 3))
    dof = 2 * n_w - tt.n_params(has.sum(axis=1), phase_only)
    with np.errstate(divide="ignore", invalid="ignore"):
        k2 = np.where(dof > 0, np.asarray(cost, float) / np.maximum(dof, 1), np.nan)
    rchi2 = k2.copy()
    k2 = np.minimum(k2, 1.0)
    sens = np.zeros((n_cell, n_ant, 2))
    sl = (slice(None),)
    if tt.corr == terms.PARALLEL:
        for p, c in ((0, 0), (1, 3)):
            s = (w[..., c] * P[..., c]).sum(axis=2)
            np.add.at(sens[..., p], sl + (a1,), s)
            np.add.at(sens[..., p], sl + (a2,), s)
        if tt.pol_shared:
            sens[:] = sens.sum(axis=-1, keepdims=True)
    elif not tt.diagonal:
        np.add.at(sens[..., 0], sl + (a1,), (w[..., 1] * P[..., 3]).sum(axis=2))
        np.add.at(sens[..., 0], sl + (a2,), (w[..., 2] * P[..., 3]).sum(axis=2))
        np.add.at(sens[..., 1], sl + (a1,), (w[..., 2] * P[..., 0]).sum(axis=2))
        np.add.at(sens[..., 1], sl + (a2,), (w[..., 1] * P[..., 0]).sum(axis=2))
    else:
        sens[:] = (w[..., 1] * P[..., 1] + w[..., 2] * P[..., 2]).sum(axis=(1, 2))[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.sqrt(sens / (2.0 * k2[:, None, None]))
    exact = (k2 == 0)[:, None, None] & (sens > 0)
    out = np.where(exact, quality.SNR_MAX, np.where(np.isfinite(out), out, 0.0))
    if tt.is_global:
        out = np.where(has.any(axis=1)[:, None, None], out, 0.0)
    else:
        out = np.where(has[..., None], out, 0.0)
    return out, rchi2


def _cplx(rng, *shape):
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


def _random_batch(rng, n_cell, n_ant, n_samp):
    """Random data, model and weights on every baseline of n_ant antennas; ~20% of samples flagged."""
    a1, a2 = np.triu_indices(n_ant, 1)
    shape = (n_cell, len(a1), n_samp, 4)
    w = rng.uniform(0.5, 2.0, shape)
    w[rng.random(shape) < 0.2] = 0.0                  # flagged samples
    return CellBatch(vis=_cplx(rng, *shape), model=_cplx(rng, *shape), weight=w, ant1=a1.astype(np.int64),
                     ant2=a2.astype(np.int64), freq=np.ones((n_cell, n_samp)) * 1.4e9, n_ant=n_ant)


@pytest.mark.parametrize("diagonal", [False, True])
@pytest.mark.parametrize("jt", ["K", "G", "T", "D", "KC", "CP"])
def test_snr_kernel_equals_definition(jt, diagonal):
    """Also with diagonal Jones (off-diagonals exactly 0, as K, G, KC, CP solutions): the kernel's
    shortcut for them gives the definition's values."""
    rng = np.random.default_rng(7)
    n_cell, n_ant = 3, 6
    batch = _random_batch(rng, n_cell, n_ant, 5)
    batch.weight[1, batch.ant1 == 2] = 0.0             # antenna 2 without data in cell 1 (partly)
    J = _cplx(rng, n_cell, n_ant, 2, 2)
    if diagonal:
        J[..., 0, 1] = J[..., 1, 0] = 0
    J[0, 3] = np.nan                                   # a flagged solution reads as 0
    has = np.ones((n_cell, n_ant), bool)
    has[2, 4] = False
    cost = np.array([10.0, 0.0, 1e9])                  # chi2 = 0: SNR_MAX; a huge misfit: k2 capped
    got, rchi2 = quality.snr(jt, batch, J, cost, has)
    want, want_r = _reference_snr(jt, batch, J, cost, has)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    np.testing.assert_allclose(rchi2, want_r, rtol=1e-15)
    assert (got > 0).any() and (got == quality.SNR_MAX).any()


@pytest.mark.parametrize("jt", ["G", "T", "D", "CP"])
def test_chi2_from_jones_equals_model_vis(jt):
    """The compiled final cost from J equals sum w |V - model_vis(params)|^2 of the term module."""
    from alakazam.solvers import common

    rng = np.random.default_rng(11)
    n_cell = 2
    batch = _random_batch(rng, n_cell, 5, 4)
    params = common.initial_guess(jt, batch, np.zeros(n_cell, np.int32))
    params = params + 0.1 * rng.normal(size=params.shape)          # not a fit: a non-zero residual
    J, _ = common.to_jones(jt, params, batch)
    want = common.chi2(jt, params, batch)                          # model_vis path
    got = common.chi2(jt, params, batch, J)
    assert (want > 0).all()
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_outlier_channels_flags_a_jump_and_honours_the_cells_gauge():
    """quality.outlier_channels: a bandpass bin 2x its neighbours is flagged, the others not; a bin
    solved with another reference (cell_ref: every antenna's phase rotated by that antenna's phase) is no
    outlier for its phases, but still one for its amplitude."""
    from alakazam.solvers import quality

    rng = np.random.default_rng(3)
    n_ant, n_f, n_t = 6, 16, 2
    f = np.linspace(-1, 1, n_f)
    amp = (1 + 0.2 * f[None, :, None, None] ** 2) * rng.uniform(0.8, 1.2, (n_ant, 1, 1, 2))
    ph = (rng.uniform(-np.pi, np.pi, (n_ant, 1, 1, 2))
          + 0.3 * f[None, :, None, None] * rng.uniform(-1, 1, (n_ant, 1, 1, 2)))
    g = amp * np.exp(1j * ph) * (1 + 1e-3 * rng.standard_normal((n_ant, n_f, n_t, 2)))
    g = np.broadcast_to(g, (n_ant, n_f, n_t, 2)).copy()
    g[:, :, :, :] *= np.exp(-1j * np.angle(g[:1]))                       # referenced to antenna 0
    jones = np.zeros((n_ant, n_f, n_t, 2, 2), complex)
    jones[..., 0, 0], jones[..., 1, 1] = g[..., 0], g[..., 1]
    flags = np.zeros((n_ant, n_f, n_t), bool)
    snr = np.full((n_ant, n_f, n_t, 2), 1e4)
    jones[3, 7, 1, 0, 0] *= 2.0
    bad = quality.outlier_channels(jones, flags, snr)
    assert bad[3, 7, 1] and bad.sum() == 1
    # bin 9 of time 0 solved with antenna 2 as reference: every antenna's phase minus antenna 2's
    ref = np.zeros((n_f, n_t), int)
    ref[9, 0] = 2
    j2 = jones.copy()
    for h in range(2):
        j2[:, 9, 0, h, h] *= np.exp(-1j * np.angle(jones[2, 9, 0, h, h]))
    assert quality.outlier_channels(j2, flags, snr).sum() > 1               # the phase jump, without cell_ref
    bad = quality.outlier_channels(j2, flags, snr, cell_ref=ref)
    assert bad[3, 7, 1] and bad.sum() == 1
    j2[4, 9, 0, 1, 1] *= 2.0                                                # an amplitude outlier there
    bad = quality.outlier_channels(j2, flags, snr, cell_ref=ref)
    assert bad[4, 9, 0] and bad[3, 7, 1] and bad.sum() == 2
