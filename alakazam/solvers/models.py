"""Per-term models shared by the least-squares backends (ceres, jax): real parameter vectors with free
masks (:func:`pack`, :func:`unpack`), the model of the used correlations (:func:`model_vis`, plain numpy
or traced by jax through its ``xp`` argument) and its analytic Jacobian (:func:`model_and_jac`).

One class per parameter layout (:data:`MODELS`, keyed by type name: the one table of per-type model
maths); the correlations come from the registry (:mod:`alakazam.jones.terms`).  A type solved through
another type's code (T through G, :mod:`alakazam.solvers.scalar_gain`) needs no entry; a type without
one is refused with an error naming the backend (:func:`model_for`).
"""

from __future__ import annotations

import numpy as np

from ..errors import AlakazamError
from ..jones import terms

TWO_PI_NS = 2.0 * np.pi * 1e-9


def _flat(x, free):
    n_cell = x.shape[0]
    return (np.ascontiguousarray(x.reshape(n_cell, -1), np.float64),
            np.ascontiguousarray(free.reshape(n_cell, -1)))


class _Delay:
    """K: x (ant, pol, [tau, phi]); tau[ref] = phi[ref] = 0."""

    @staticmethod
    def pack(init, ref, has, phase_only, idx):
        x = np.array(init, np.float64) - np.asarray(init, np.float64)[idx, ref][:, None]
        fr = has.copy()
        fr[idx, ref] = False
        return x, np.broadcast_to(fr[:, :, None, None], x.shape)

    @staticmethod
    def unpack(x, n_cell, n_ant, phase_only):
        return x.reshape(n_cell, n_ant, 2, 2).copy()

    @staticmethod
    def model(x, M, a1, a2, n_ant, dnu, phase_only, xp):
        x = x.reshape(n_ant, 2, 2)
        tau, phi = x[..., 0], x[..., 1]
        th = ((phi[a1] - phi[a2])[:, None, :]
              - TWO_PI_NS * (tau[a1] - tau[a2])[:, None, :] * dnu[None, :, None])
        return xp.exp(1j * th) * M[..., ::3]

    @staticmethod
    def jac(m, x, M, a1, a2, n_ant, dnu, phase_only):
        nb, ns, nc = m.shape
        r = np.arange(nb)
        J = np.zeros((nb, n_ant, 2, 2, ns, nc), np.complex128)
        for p in range(2):
            mp = m[..., p]
            J[r, a1, p, 1, :, p] = 1j * mp
            J[r, a2, p, 1, :, p] = -1j * mp
            dt = -1j * TWO_PI_NS * dnu[None, :] * mp
            J[r, a1, p, 0, :, p] = dt
            J[r, a2, p, 0, :, p] = -dt
        return J.reshape(nb, -1, ns, nc)


#: the ``phase_only`` argument of the gain models is the calmode: False ('ap'), True ('p') or
#: AMP_ONLY ('a': real gains, phases held at 0, every antenna with data free; CASA calmode='a')
AMP_ONLY = "a"


def calmode(opts, jones_type):
    """The gain models' mode for ``opts`` (SolveOptions) and a type: False, True (phase only) or
    AMP_ONLY; False for non-gain types."""
    if not terms.get(jones_type).gain:
        return False
    if opts.amp_only:
        return AMP_ONLY
    return bool(opts.phase_only)


class _Gain:
    """G: x (ant, pol, [re, im]), Im g[ref] = 0; phase_only: x (ant, pol) phases, phase[ref] = 0;
    AMP_ONLY: x (ant, pol) real gains (no reference: a phase-free model has no phase gauge)."""

    @staticmethod
    def pack(init, ref, has, phase_only, idx):
        if phase_only == AMP_ONLY:
            x = np.abs(np.asarray(init, np.complex128))
            return x, np.broadcast_to(has[:, :, None], x.shape)
        g = np.asarray(init, np.complex128)
        gr = g[idx, ref]
        amp = np.abs(gr)
        rot = np.where(amp > 0, np.conj(gr) / np.where(amp > 0, amp, 1), 1.0)
        g = g * rot[:, None, :]
        g[idx, ref] = amp                                   # exactly real positive
        if phase_only:
            x = np.angle(g)
            x[idx, ref] = 0.0
            fr = has.copy()
            fr[idx, ref] = False
            return x, np.broadcast_to(fr[:, :, None], x.shape)
        x = np.stack([g.real, g.imag], axis=-1)
        free = np.broadcast_to(has[:, :, None, None], x.shape).copy()
        free[idx, ref, :, 1] = False
        return x, free

    @staticmethod
    def unpack(x, n_cell, n_ant, phase_only):
        if phase_only == AMP_ONLY:
            # the amplitudes' sign is free in V = a_1 a_2 M only for all antennas at once; an antenna
            # without signal can fit a (tiny) negative one: returned as its modulus (real gains >= 0)
            return np.abs(x.reshape(n_cell, n_ant, 2)).astype(np.complex128)
        if phase_only:
            return np.exp(1j * x.reshape(n_cell, n_ant, 2))
        x = x.reshape(n_cell, n_ant, 2, 2)
        return x[..., 0] + 1j * x[..., 1]

    @staticmethod
    def model(x, M, a1, a2, n_ant, dnu, phase_only, xp):
        if phase_only == AMP_ONLY:
            g = x.reshape(n_ant, 2)
            return g[a1][:, None, :] * M[..., ::3] * g[a2][:, None, :]
        if phase_only:
            g = xp.exp(1j * x.reshape(n_ant, 2))
        else:
            x = x.reshape(n_ant, 2, 2)
            g = x[..., 0] + 1j * x[..., 1]
        return g[a1][:, None, :] * M[..., ::3] * xp.conj(g[a2])[:, None, :]

    @staticmethod
    def jac(m, x, M, a1, a2, n_ant, dnu, phase_only):
        nb, ns, nc = m.shape
        r = np.arange(nb)
        k = 1 if phase_only else 2
        J = np.zeros((nb, n_ant, 2, k, ns, nc), np.complex128)
        for p in range(2):
            mp = m[..., p]
            if phase_only == AMP_ONLY:                      # V = a_1 a_2 M
                aa = x.reshape(n_ant, 2)[:, p]
                Mp = M[..., 3 * p]
                # a baseline's two antennas are different rows of J (no autocorrelations in a batch)
                J[r, a1, p, 0, :, p] = Mp * aa[a2][:, None]
                J[r, a2, p, 0, :, p] = aa[a1][:, None] * Mp
            elif phase_only:
                J[r, a1, p, 0, :, p] = 1j * mp
                J[r, a2, p, 0, :, p] = -1j * mp
            else:
                xx = x.reshape(n_ant, 2, 2)
                g = xx[:, p, 0] + 1j * xx[:, p, 1]
                Mp = M[..., 3 * p]
                da = Mp * np.conj(g[a2])[:, None]
                db = g[a1][:, None] * Mp
                J[r, a1, p, 0, :, p] = da
                J[r, a1, p, 1, :, p] = 1j * da
                J[r, a2, p, 0, :, p] = db
                J[r, a2, p, 1, :, p] = -1j * db
        return J.reshape(nb, -1, ns, nc)


class _Leakage:
    """D: x (ant, [pq, qp], [re, im]); fitted free from d_pq[ref] = 0, with the gauge prior on
    d_pq[ref] (:func:`prior`; :mod:`alakazam.solvers.leakage`)."""

    @staticmethod
    def pack(init, ref, has, phase_only, idx):
        d = np.array(init, np.complex128)
        d[idx, ref, 0] = 0
        x = np.stack([d.real, d.imag], axis=-1)
        free = np.broadcast_to(has[:, :, None, None], x.shape).copy()
        return x, free

    @staticmethod
    def prior(batch, ref, n_par):
        from .leakage import gauge_prior

        p = np.zeros((batch.n_cell, batch.n_ant, 2, 2))
        p[np.arange(batch.n_cell), np.asarray(ref, np.int64), 0, :] = gauge_prior(batch, ref)[:, None]
        return p.reshape(batch.n_cell, n_par)

    @staticmethod
    def unpack(x, n_cell, n_ant, phase_only):
        x = x.reshape(n_cell, n_ant, 2, 2)
        return x[..., 0] + 1j * x[..., 1]

    @staticmethod
    def model(x, M, a1, a2, n_ant, dnu, phase_only, xp):
        x = x.reshape(n_ant, 2, 2)
        d = x[..., 0] + 1j * x[..., 1]
        one = xp.ones(n_ant, d.dtype)
        D = xp.stack([xp.stack([one, d[:, 0]], -1), xp.stack([d[:, 1], one], -1)], -2)
        Da = D[a1][:, None]
        DbH = xp.conj(xp.swapaxes(D[a2], -1, -2))[:, None]
        Mm = M.reshape(M.shape[0], M.shape[1], 2, 2)
        return (Da @ Mm @ DbH).reshape(M.shape)

    @staticmethod
    def jac(m, x, M, a1, a2, n_ant, dnu, phase_only):
        nb, ns, nc = m.shape
        r = np.arange(nb)
        xx = x.reshape(n_ant, 2, 2)
        d = xx[..., 0] + 1j * xx[..., 1]
        D = np.zeros((n_ant, 2, 2), np.complex128)
        D[:, 0, 0] = D[:, 1, 1] = 1
        D[:, 0, 1] = d[:, 0]
        D[:, 1, 0] = d[:, 1]
        Mm = M.reshape(nb, ns, 2, 2)
        DbH = np.conj(np.swapaxes(D[a2], -1, -2))[:, None]
        N = Mm @ DbH                                   # M D_b^H
        P = D[a1][:, None] @ Mm                        # D_a M
        z = np.zeros_like(N[..., 0, 0])
        E01N = np.stack([N[..., 1, 0], N[..., 1, 1], z, z], -1)      # E01 @ N
        E10N = np.stack([z, z, N[..., 0, 0], N[..., 0, 1]], -1)      # E10 @ N
        PE10 = np.stack([P[..., 0, 1], z, P[..., 1, 1], z], -1)      # P @ E10
        PE01 = np.stack([z, P[..., 0, 0], z, P[..., 1, 0]], -1)      # P @ E01
        J = np.zeros((nb, n_ant, 2, 2, ns, 4), np.complex128)
        J[r, a1, 0, 0] = E01N
        J[r, a1, 0, 1] = 1j * E01N
        J[r, a1, 1, 0] = E10N
        J[r, a1, 1, 1] = 1j * E10N
        J[r, a2, 0, 0] = PE10
        J[r, a2, 0, 1] = -1j * PE10
        J[r, a2, 1, 0] = PE01
        J[r, a2, 1, 1] = -1j * PE01
        return J.reshape(nb, -1, ns, nc)


class _Global:
    """KC, CP: global parameters, free if the cell has any data."""

    @staticmethod
    def pack(init, ref, has, phase_only, idx):
        x = np.array(init, np.float64)
        return x, np.broadcast_to(has.any(axis=1)[:, None], x.shape)

    @staticmethod
    def unpack(x, n_cell, n_ant, phase_only):
        return x.copy()


class _CrossDelay(_Global):
    """KC: x [tau, phi]; pq model exp(-i(2 pi tau 1e-9 (nu - nu_c) + phi)) M_pq."""

    @staticmethod
    def model(x, M, a1, a2, n_ant, dnu, phase_only, xp):
        th = TWO_PI_NS * x[0] * dnu + x[1]
        return xp.stack([xp.exp(-1j * th) * M[..., 1], xp.exp(1j * th) * M[..., 2]], -1)

    @staticmethod
    def jac(m, x, M, a1, a2, n_ant, dnu, phase_only):
        nb, ns, _ = m.shape
        s = np.array([-1j, 1j])
        J = np.empty((nb, 2, ns, 2), np.complex128)
        J[:, 0] = s * TWO_PI_NS * dnu[None, :, None] * m
        J[:, 1] = s * m
        return J


class _CrossPhase(_Global):
    """CP: x [phi]; pq model exp(-i phi) M_pq, qp exp(i phi) M_qp."""

    @staticmethod
    def model(x, M, a1, a2, n_ant, dnu, phase_only, xp):
        return xp.stack([xp.exp(-1j * x[0]) * M[..., 1], xp.exp(1j * x[0]) * M[..., 2]], -1)

    @staticmethod
    def jac(m, x, M, a1, a2, n_ant, dnu, phase_only):
        return (np.array([-1j, 1j]) * m)[:, None]


#: type name -> its model class (the one table of per-type model maths of the ceres and jax backends)
MODELS = {"K": _Delay, "G": _Gain, "D": _Leakage, "KC": _CrossDelay, "CP": _CrossPhase}


def model_for(jones_type, backend="ceres/jax"):
    """The model class of a type; a type without one is not supported by these backends."""
    terms.get(jones_type)
    if jones_type not in MODELS:
        raise AlakazamError(f"jones: type {jones_type!r} is not supported by the {backend} backend "
                            f"(no least-squares model in alakazam.solvers.models)")
    return MODELS[jones_type]


def pack(jones_type, init, ref, has, phase_only):
    """Real parameter vectors and free masks for every cell.

    Parameters
    ----------
    jones_type : str
    init : ndarray
        Initial params stacked over cells (contract shapes, see ``alakazam.solvers``).
    ref : int (n_cell,)
    has : bool (n_cell, n_ant)
        Antenna has data on the correlations the term uses.
    phase_only : bool

    Returns
    -------
    x0 : float64 (n_cell, n_par)
        Layout: K (ant, pol, [tau, phi]); G (ant, pol, [re, im]); G phase_only (ant, pol) phases;
        G AMP_ONLY (ant, pol) real gains;
        D (ant, [pq, qp], [re, im]); KC [tau, phi]; CP [phi].  Referenced (K: ref subtracted;
        G: each pol rotated so g[ref] is real positive).
    free : bool (n_cell, n_par)
    """
    idx = np.arange(init.shape[0])
    return _flat(*model_for(jones_type).pack(init, ref, has, phase_only, idx))


def prior(jones_type, batch, ref, n_par):
    """(n_cell, n_par) float64: the weights p of a prior term sum p x^2 on the packed parameters that
    the ceres and jax backends add to each cell's cost (as residuals sqrt(p) x); 0 except D's gauge
    prior on the reference's d_pq (:func:`alakazam.solvers.leakage.gauge_prior`)."""
    mdl = model_for(jones_type)
    if hasattr(mdl, "prior"):
        return np.ascontiguousarray(mdl.prior(batch, ref, n_par), np.float64)
    return np.zeros((batch.n_cell, n_par))


def unpack(jones_type, x, n_ant, phase_only):
    """Inverse of :func:`pack`: (n_cell, n_par) -> params in the contract shapes and dtypes."""
    x = np.asarray(x, np.float64)
    return model_for(jones_type).unpack(x, x.shape[0], n_ant, phase_only)


def model_vis(jones_type, x, M, a1, a2, n_ant, dnu, phase_only, xp=np):
    """Model of the used correlations for one cell.

    Parameters
    ----------
    x : (n_par,) real
    M : complex (n_bl, n_samp, 4)
    a1, a2 : int (n_bl,)
    dnu : (n_samp,) frequency minus band centre, Hz
    xp : numpy-like module (numpy or jax.numpy)

    Returns
    -------
    complex (n_bl, n_samp, n_used_corr)
    """
    return model_for(jones_type).model(x, M, a1, a2, n_ant, dnu, phase_only, xp)


def model_and_jac(jones_type, x, M, a1, a2, n_ant, dnu, phase_only):
    """Model (n_bl, n_samp, n_corr) and analytic complex Jacobian (n_bl, n_samp, n_corr, n_par)."""
    mdl = model_for(jones_type)
    m = mdl.model(x, M, a1, a2, n_ant, dnu, phase_only, np)
    J = mdl.jac(m, x, M, a1, a2, n_ant, dnu, phase_only)
    return m, np.moveaxis(J, 1, -1)
class CellData:
    """Per-cell arrays used by both backends (used correlations only)."""

    def __init__(self, jones_type, batch, c, nu_c):
        corr = list(terms.get(jones_type).corr)
        self.V = batch.vis[c][..., corr]
        self.M = batch.model[c]
        self.sw = np.sqrt(batch.weight[c][..., corr])
        self.a1 = np.asarray(batch.ant1, np.int64)
        self.a2 = np.asarray(batch.ant2, np.int64)
        self.dnu = batch.freq[c] - nu_c[c]
        self.n_ant = batch.n_ant
