"""Synthetic CellBatches with known Jones, built with an independent einsum (no solver code).

Used by the solver truth tests and by benchmarks/bench_solvers.py.

``make_batch`` returns (CellBatch, truth) with V = J_a M J_b^H + noise, correlations pp, pq, qp, qq.
The model is a point source with Stokes (I, Q, U, V) in the feed basis, its linear polarisation
rotated by a different angle per sample (like parallactic angle between scans) so that D, KC and CP
are identifiable.
"""

import numpy as np

from alakazam.jones import terms
from alakazam.solvers import CellBatch


def brightness(stokes_i, Q, U, V, feed):
    if feed == "linear":
        return np.array([[stokes_i + Q, U + 1j * V], [U - 1j * V, stokes_i - Q]])
    return np.array([[stokes_i + V, Q + 1j * U], [Q - 1j * U, stokes_i - V]])


def make_batch(jones_type, n_cell=2, n_ant=6, n_samp=1, feed="linear", noise=0.0, seed=0,
               flagged_ants=(), phase_only=False, polarised=True, freq=None, ref_ant=0,
               flag_fraction=0.0, tau_scale=5.0, d_scale=0.05):
    rng = np.random.default_rng(seed)
    a1, a2 = np.triu_indices(n_ant, 1)
    n_bl = len(a1)
    if freq is None:
        if terms.get(jones_type).channel_sampled:
            n_samp = max(n_samp, 32)
            freq = 1.3e9 + 1e6 * np.arange(n_samp)
        else:
            freq = np.full(n_samp, 1.4e9)
    freq = np.broadcast_to(np.asarray(freq, float), (n_cell, n_samp)).copy()
    stokes_i, Q, U, V = 10.0, (1.0 if polarised else 0.0), (0.6 if polarised else 0.0), 0.0
    M = np.zeros((n_cell, n_bl, n_samp, 2, 2), complex)
    for s in range(n_samp):
        chi = 0.9 * s / max(n_samp - 1, 1) if terms.get(jones_type).scan_sampled else 0.0
        q = Q * np.cos(2 * chi) + U * np.sin(2 * chi)
        u = -Q * np.sin(2 * chi) + U * np.cos(2 * chi)
        M[:, :, s] = brightness(stokes_i, q, u, V, feed)
    J = np.zeros((n_cell, n_ant, n_samp, 2, 2), complex)
    truth = {"feed": feed}
    # the truth of each type (a test-batch generator: one branch per simulated type, by name)
    if jones_type == "G":
        amp = 1.0 if phase_only else rng.uniform(0.8, 1.2, (n_cell, n_ant, 2))
        g = amp * np.exp(1j * rng.uniform(-np.pi, np.pi, (n_cell, n_ant, 2)))
        J[..., 0, 0] = g[:, :, None, 0]
        J[..., 1, 1] = g[:, :, None, 1]
        truth["g"] = g
    elif jones_type == "K":
        tau = rng.uniform(-tau_scale, tau_scale, (n_cell, n_ant, 2))
        phi = rng.uniform(-np.pi, np.pi, (n_cell, n_ant, 2))
        amp = rng.uniform(0.9, 1.1, (n_cell, n_ant, 2))
        e = amp[:, :, None] * np.exp(1j * phi[:, :, None]) * np.exp(
            -2j * np.pi * tau[:, :, None] * 1e-9 * freq[:, None, :, None])
        J[..., 0, 0] = e[..., 0]
        J[..., 1, 1] = e[..., 1]
        truth["tau"] = tau
    elif jones_type == "D":
        d = d_scale * (rng.normal(size=(n_cell, n_ant, 2)) + 1j * rng.normal(size=(n_cell, n_ant, 2)))
        d[:, ref_ant, 0] = 0      # the convention d_pq[ref] = 0 (solutions are relative to it)
        J[..., 0, 0] = 1
        J[..., 1, 1] = 1
        J[..., 0, 1] = d[:, :, None, 0]
        J[..., 1, 0] = d[:, :, None, 1]
        truth["d"] = d
    elif jones_type == "KC":
        tau = rng.uniform(-2, 2, n_cell)
        phi = rng.uniform(-np.pi, np.pi, n_cell)
        J[..., 0, 0] = np.exp(-2j * np.pi * tau[:, None, None] * 1e-9 * freq[:, None, :]) * \
            np.exp(-1j * phi[:, None, None])
        J[..., 1, 1] = 1
        truth["tau"] = tau
    elif jones_type == "CP":
        phi = rng.uniform(-np.pi, np.pi, n_cell)
        J[..., 0, 0] = 1
        J[..., 1, 1] = np.exp(1j * phi)[:, None, None]
        truth["phi"] = phi
    truth["J"] = J
    Vt = np.einsum("cbsij,cbsjk,cbslk->cbsil", J[:, a1], M, np.conj(J[:, a2]))
    sigma = noise if noise > 0 else 1.0
    vis = Vt.reshape(n_cell, n_bl, n_samp, 4)
    if noise > 0:
        vis = vis + noise * (rng.normal(size=vis.shape) + 1j * rng.normal(size=vis.shape)) / np.sqrt(2)
    weight = np.full(vis.shape, 1.0 / sigma ** 2)
    for a in flagged_ants:
        weight[:, (a1 == a) | (a2 == a)] = 0
    if flag_fraction > 0:
        weight[rng.uniform(size=weight.shape) < flag_fraction] = 0
    batch = CellBatch(vis=vis, model=M.reshape(n_cell, n_bl, n_samp, 4), weight=weight,
                      ant1=a1.astype(np.int32), ant2=a2.astype(np.int32), freq=freq, n_ant=n_ant,
                      ref_ant=ref_ant)
    truth["sigma"] = noise
    return batch, truth
