"""CP: one cross-hand phase for all antennas, diag(1, exp(i phi)), per frequency bin.

.. math:: V_{pq} = e^{-i\\phi} M_{pq}, \\qquad V_{qp} = e^{+i\\phi} M_{qp}

The least-squares phase is closed-form: the cost depends on phi only through
-2 Re(exp(-i phi) A) with A = sum w (conj(V_pq) M_pq ... ) -- see :func:`solve_exact` -- so
phi = arg(A) is the exact minimiser (no iteration; the initial guess is the solution).
"""

import numpy as np

CROSS = (1, 2)


def _a_sum(batch, extra_phase=None):
    """A (n_cell, n_samp) = sum over baselines of w conj(V_pq) M_pq + w V_qp conj(M_qp)."""
    v, m, w = batch.vis, batch.model, batch.weight
    return (w[..., 1] * np.conj(v[..., 1]) * m[..., 1] + w[..., 2] * v[..., 2] * np.conj(m[..., 2])).sum(
        axis=1)


def check_polarised(batch, term):
    from ..errors import AlakazamError

    p = (batch.weight[..., 1] * np.abs(batch.model[..., 1]) ** 2
         + batch.weight[..., 2] * np.abs(batch.model[..., 2]) ** 2).sum()
    tot = (batch.weight[..., 0] * np.abs(batch.model[..., 0]) ** 2
           + batch.weight[..., 3] * np.abs(batch.model[..., 3]) ** 2).sum()
    if not (p > 1e-12 * max(tot, 1e-300)):
        raise AlakazamError(
            f"{term} needs a polarised model: the model's cross hands (pq, qp) carry no signal in the "
            "selected data. Solve it on a polarised calibrator (e.g. 3C286) with a polarised MODEL_DATA "
            "(and parang=True for an alt-az array).")


def solve_exact(batch):
    """phi (n_cell, 1), n_iter, converged, cost."""
    A = _a_sum(batch).sum(axis=1)           # (n_cell,)
    phi = np.angle(A)
    return phi[:, None], np.ones(len(phi), np.int32), np.abs(A) > 0


def model_vis(params, batch):
    phi = params[:, 0]
    out = np.zeros_like(batch.model)
    out[..., 1] = np.exp(-1j * phi)[:, None, None] * batch.model[..., 1]
    out[..., 2] = np.exp(1j * phi)[:, None, None] * batch.model[..., 2]
    return out
