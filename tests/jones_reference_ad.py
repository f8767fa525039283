"""Reference Jones builders as pure array functions usable with numpy or ``jax.numpy`` (automatic
differentiation); tests only (they shipped as alakazam/jones/constructors_ad.py, used by no module).

Every function takes an array namespace ``xp`` (``numpy`` by default, ``jax.numpy`` for the JAX
backend) and uses only element-wise operations and ``stack``, so it traces under ``jax.jit`` and
``jax.grad``.  Shapes and matrices are those of tests/jones_reference.py and
docs/conventions.md; the last two axes are the 2x2 Jones matrix.
"""

import numpy as np


def _mat(xp, a00, a01, a10, a11):
    """Stack four equally shaped arrays into (..., 2, 2)."""
    return xp.stack([xp.stack([a00, a01], axis=-1), xp.stack([a10, a11], axis=-1)], axis=-2)


def delay_jones(tau_ns, freq, xp=np):
    r"""Parallel-hand delay K: (..., 2) ns, freq (n_freq,) Hz -> (..., n_freq, 2, 2).

    .. math:: K = \mathrm{diag}(e^{-2\pi i \tau_p \nu}, e^{-2\pi i \tau_q \nu})
    """
    tau = xp.asarray(tau_ns)
    ph = -2.0 * np.pi * 1e-9 * tau[..., None, :] * xp.asarray(freq)[:, None]   # (..., freq, 2)
    e = xp.exp(1j * ph)
    z = xp.zeros_like(e[..., 0])
    return _mat(xp, e[..., 0], z, z, e[..., 1])


def gain_jones(g, xp=np):
    r"""Complex gains G: g (..., 2) -> (..., 2, 2).

    .. math:: G = \mathrm{diag}(g_p, g_q)
    """
    g = xp.asarray(g)
    z = xp.zeros_like(g[..., 0])
    return _mat(xp, g[..., 0], z, z, g[..., 1])


def leakage_jones(d, xp=np):
    r"""Leakage D: d (..., 2) = (d_pq, d_qp) -> (..., 2, 2).

    .. math:: D = \begin{pmatrix} 1 & d_{pq} \\ d_{qp} & 1 \end{pmatrix}
    """
    d = xp.asarray(d)
    one = xp.ones_like(d[..., 0])
    return _mat(xp, one, d[..., 0], d[..., 1], one)


def crossdelay_jones(tau_ns, freq, xp=np):
    r"""Cross-hand delay KC: tau (...) ns, freq (n_freq,) Hz -> (..., n_freq, 2, 2).

    .. math:: K_C = \mathrm{diag}(e^{-2\pi i \tau \nu}, 1)
    """
    tau = xp.asarray(tau_ns)
    e = xp.exp(-2j * np.pi * 1e-9 * tau[..., None] * xp.asarray(freq))
    z = xp.zeros_like(e)
    return _mat(xp, e, z, z, xp.ones_like(e))


def crossphase_jones(phi, xp=np):
    r"""Cross-hand phase CP: phi (...) rad -> (..., 2, 2).

    .. math:: C_P = \mathrm{diag}(1, e^{i\phi})
    """
    phi = xp.asarray(phi)
    e = xp.exp(1j * phi)
    z = xp.zeros_like(e)
    return _mat(xp, xp.ones_like(e), z, z, e)


def parang_jones(chi, feed_basis, xp=np):
    r"""Sky-to-feed rotation P: chi (...) rad -> (..., 2, 2).

    .. math::

        P_\mathrm{lin} = \begin{pmatrix}\cos\chi & \sin\chi \\ -\sin\chi & \cos\chi\end{pmatrix},
        \qquad P_\mathrm{circ} = \mathrm{diag}(e^{-i\chi}, e^{i\chi})
    """
    chi = xp.asarray(chi)
    if feed_basis == "circular":
        e = xp.exp(-1j * chi)
        z = xp.zeros_like(e)
        return _mat(xp, e, z, z, xp.conj(e))
    c = xp.cos(chi) + 0j
    s = xp.sin(chi) + 0j
    return _mat(xp, c, s, -s, c)
