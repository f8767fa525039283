"""Reference Jones builders for the tests (numpy-vectorised, with a numba kernel for the large delay
tables).  They shipped inside the package as alakazam/jones/constructors.py; the package itself
used only ``parang_jones``, now :func:`alakazam.jones.parang.parang_matrices` (checked against it).

Full matrices have the 2x2 as the last two axes; the diagonal forms used by the fast kernels of
:mod:`alakazam.jones.algebra` keep only (p, q) as the last axis.  Matrices follow docs/conventions.md;
delays are in ns, frequencies in Hz (absolute), angles in rad.
"""

import numpy as np

from alakazam._numba import njit
from alakazam.errors import AlakazamError
from jones_reference_ad import (
    crossdelay_jones as _crossdelay_ad,
    crossphase_jones as _crossphase_ad,
    gain_jones as _gain_ad,
    leakage_jones as _leakage_ad,
    parang_jones as _parang_ad,
)

FEED_BASES = ("linear", "circular")


@njit
def _delay_diag(tau, freq, out):
    # tau (n, 2) ns, freq (n_freq,) Hz -> out (n, n_freq, 2)
    for i in range(tau.shape[0]):
        for f in range(freq.shape[0]):
            for p in range(2):
                ph = -2.0 * np.pi * 1e-9 * tau[i, p] * freq[f]
                out[i, f, p] = complex(np.cos(ph), np.sin(ph))


def delay_diag(tau_ns, freq):
    r"""Diagonal of K: tau (..., 2) ns, freq (n_freq,) Hz -> (..., n_freq, 2) complex128.

    .. math:: K_{pp} = e^{-2\pi i \tau_p \nu},\quad K_{qq} = e^{-2\pi i \tau_q \nu}

    Non-finite delays give non-finite Jones (flagged downstream by the correction kernels).
    """
    tau = np.asarray(tau_ns, np.float64)
    freq = np.ascontiguousarray(freq, np.float64).ravel()
    if tau.shape[-1:] != (2,):
        raise AlakazamError(f"tau_ns: expected shape (..., 2), got {tau.shape}")
    flat = np.ascontiguousarray(tau.reshape(-1, 2))
    out = np.empty((flat.shape[0], freq.shape[0], 2), np.complex128)
    _delay_diag(flat, freq, out)
    return out.reshape(tau.shape[:-1] + (freq.shape[0], 2))


def diag_to_full(jd):
    """(..., 2) diagonal -> (..., 2, 2) full matrices."""
    jd = np.asarray(jd)
    out = np.zeros(jd.shape + (2,), np.result_type(jd.dtype, np.complex64))
    out[..., 0, 0] = jd[..., 0]
    out[..., 1, 1] = jd[..., 1]
    return out


def delay_jones(tau_ns, freq):
    r"""Parallel-hand delay K: tau (..., 2) ns, freq (n_freq,) Hz -> (..., n_freq, 2, 2).

    .. math:: K = \mathrm{diag}(e^{-2\pi i \tau_p \nu}, e^{-2\pi i \tau_q \nu})

    A positive delay makes the phase of that hand fall with frequency.
    """
    return diag_to_full(delay_diag(tau_ns, freq))


def gain_jones(g):
    r"""Complex gains G: g (..., 2) -> (..., 2, 2) complex128.

    .. math:: G = \mathrm{diag}(g_p, g_q)
    """
    return np.asarray(_gain_ad(np.asarray(g, np.complex128)), np.complex128)


def leakage_jones(d):
    r"""Leakage D: d (..., 2) = (d_pq, d_qp) -> (..., 2, 2) complex128.

    .. math:: D = \begin{pmatrix} 1 & d_{pq} \\ d_{qp} & 1 \end{pmatrix}
    """
    return np.asarray(_leakage_ad(np.asarray(d, np.complex128)), np.complex128)


def crossdelay_jones(tau_ns, freq):
    r"""Cross-hand delay KC: tau (...) ns, freq (n_freq,) Hz -> (..., n_freq, 2, 2) complex128.

    .. math:: K_C = \mathrm{diag}(e^{-2\pi i \tau \nu}, 1)
    """
    return np.asarray(_crossdelay_ad(np.asarray(tau_ns, np.float64), np.asarray(freq, np.float64)),
                      np.complex128)


def crossphase_jones(phi):
    r"""Cross-hand phase CP: phi (...) rad -> (..., 2, 2) complex128.

    .. math:: C_P = \mathrm{diag}(1, e^{i\phi})
    """
    return np.asarray(_crossphase_ad(np.asarray(phi, np.float64)), np.complex128)


def parang_jones(chi, feed_basis):
    r"""Sky-to-feed rotation P for feed angles chi (...) rad -> (..., 2, 2) complex128.

    .. math::

        P_\mathrm{lin} = \begin{pmatrix}\cos\chi & \sin\chi \\ -\sin\chi & \cos\chi\end{pmatrix},
        \qquad P_\mathrm{circ} = \mathrm{diag}(e^{-i\chi}, e^{i\chi})

    Both rotate Q + iU into (Q + iU) exp(-2 i chi).
    """
    if feed_basis not in FEED_BASES:
        raise AlakazamError(f"feed_basis: expected one of {FEED_BASES}, got {feed_basis!r}")
    return np.asarray(_parang_ad(np.asarray(chi, np.float64), feed_basis), np.complex128)
