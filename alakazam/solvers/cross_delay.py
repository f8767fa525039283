"""KC: one cross-hand delay for all antennas, diag(exp(-2 pi i tau nu), 1), with a nuisance
cross-hand phase phi, fitted relative to the band centre nu_c:

.. math:: V_{pq} = e^{-i(2\\pi\\tau 10^{-9}(\\nu-\\nu_c) + \\phi)} M_{pq},\\qquad
          V_{qp} = e^{+i(2\\pi\\tau 10^{-9}(\\nu-\\nu_c) + \\phi)} M_{qp}

With y(nu) = sum_bl w conj(V_pq) M_pq + w V_qp conj(M_qp), the cost is
const - 2 Re(exp(-i phi) F(tau)), F(tau) = sum_nu y(nu) exp(-2 pi i tau 1e-9 (nu - nu_c)); for each tau the
best phi is arg F, so the exact least-squares delay maximises |F(tau)|: an FFT of y with 8x zero padding
gives the peak (the initial guess, as the design asks: phase slope), then a Newton/bisection search on
|F|^2 refines it to machine precision.
"""

import numpy as np

from .cross_phase import cross_residual, cross_sums
from .parallel_delay import band_centre, fringe_fft

TWO_PI_NS = 2.0 * np.pi * 1e-9


def _F(y, dnu, tau):
    return (y * np.exp(-1j * TWO_PI_NS * tau * dnu)).sum()


def _refine(y, dnu, tau0, width, max_iter, tol):
    """Golden-section maximisation of |F|^2 on [tau0 - width, tau0 + width]."""
    gr = (np.sqrt(5) - 1) / 2
    a, b = tau0 - width, tau0 + width
    c = b - gr * (b - a)
    d = a + gr * (b - a)
    fc = abs(_F(y, dnu, c))
    fd = abs(_F(y, dnu, d))
    it = 0
    for it in range(1, 4 * max_iter + 1):
        if fc > fd:
            b, d, fd = d, c, fc
            c = b - gr * (b - a)
            fc = abs(_F(y, dnu, c))
        else:
            a, c, fc = c, d, fd
            d = a + gr * (b - a)
            fd = abs(_F(y, dnu, d))
        if (b - a) < 1e-10 * width:
            break
    tau = 0.5 * (a + b)
    # Newton on g(tau) = d|F|^2/dtau / 2 = Re(conj(F) F'): |F| is flat at its peak, so comparing values
    # alone resolves tau only to ~sqrt(eps); the derivative gets it to machine precision
    k = -1j * TWO_PI_NS * dnu
    for _ in range(8):
        e = y * np.exp(-1j * TWO_PI_NS * tau * dnu)
        F = e.sum()
        F1 = (k * e).sum()
        F2 = (k * k * e).sum()
        g = (np.conj(F) * F1).real
        h = abs(F1) ** 2 + (np.conj(F) * F2).real
        if h >= 0:
            break
        step = -g / h
        tau += step
        it += 1
        if abs(step) < 1e-14 * max(abs(tau), 1.0):
            break
    return tau, it


def solve_exact(batch, max_iter=100, tol=1e-10):
    """params (n_cell, 2) = (tau ns, phi rad), n_iter, converged."""
    nu_c = band_centre(batch)
    n_cell = batch.n_cell
    y, present_all = cross_sums(batch)         # (n_cell, n_samp) each
    params = np.zeros((n_cell, 2))
    n_iter = np.zeros(n_cell, np.int32)
    conv = np.zeros(n_cell, bool)
    for c in range(n_cell):
        present = present_all[c]
        if not present.any():           # no cross-hand data (flagged by the caller): not solved
            continue
        dnu = batch.freq[c] - nu_c[c]
        # y ~ exp(+i(2 pi tau dnu + phi)): fringe of exp(+2 pi i tau f)
        tau0, _ = fringe_fft(y[c][None], batch.freq[c], present)
        tau0 = float(tau0[0])
        fu = np.unique(batch.freq[c][present])
        df = np.min(np.diff(fu)) if len(fu) > 1 else 1.0
        # a quarter of the FFT resolution before padding, over the channels' whole span: on a gapped band
        # (two chunks d channels apart) the fringe has lobes 1 / (d df) apart, and a search over a
        # quarter of 1 / (n_present df) spans several of them -- the golden section, whose first probes
        # are 0.24 of the interval from the start, then climbed a neighbour lobe (KC on channels 40-99
        # and 1950-2009 of 2048 off by one lobe, 5.36 ns, in every cell; a review).  A lobe's top is
        # about 1 / (span df) or more from the next, and the start (fringe_fft) within 1 / (16 span df);
        # on a band without gaps span = n_present: the search as before
        span = max(len(fu), int(round((fu[-1] - fu[0]) / df)) + 1)
        width = 1e9 / (span * df) / 4.0
        tau, it = _refine(y[c], dnu, tau0, width, max_iter, tol)
        params[c, 0] = tau
        params[c, 1] = np.angle(_F(y[c], dnu, tau))
        n_iter[c] = it
        conv[c] = True
    return params, n_iter, conv


def model_vis(params, batch):
    nu_c = band_centre(batch)
    th = TWO_PI_NS * params[:, 0, None] * (batch.freq - nu_c[:, None]) + params[:, 1, None]  # (cell, samp)
    out = np.zeros_like(batch.model)
    out[..., 1] = np.exp(-1j * th)[:, None, :] * batch.model[..., 1]
    out[..., 2] = np.exp(1j * th)[:, None, :] * batch.model[..., 2]
    return out


def chi2(params, batch):
    """(n_cell,) final cost: sum w |V - model_vis(params)|^2 over the cross hands (the definition of
    :func:`alakazam.solvers.common.chi2`), both hands summed per (cell, sample) in one compiled pass
    (:func:`alakazam.solvers.cross_phase.cross_residual`)."""
    nu_c = band_centre(batch)
    th = TWO_PI_NS * params[:, 0, None] * (batch.freq - nu_c[:, None]) + params[:, 1, None]  # (cell, samp)
    return cross_residual(batch, np.exp(-1j * th), np.exp(1j * th)).sum(axis=1)


def initial_guess(batch, ref):
    """The exact solution (FFT + 1-D refinement is already exact).  Kept on the batch
    (``batch.exact``), so the numba solve that follows does not compute it a second time."""
    res = solve_exact(batch)
    batch.exact = ("KC", 100, 1e-10, res)          # solve_exact's defaults
    return res[0].copy()


def solve_numba(batch, init, ref, opts):
    kept = batch.__dict__.pop("exact", None)       # consumed once: never reused for a later solve
    if (kept is not None and kept[:3] == ("KC", opts.max_iter, opts.tol)
            and np.array_equal(kept[3][0], init)):
        p, n_iter, conv = kept[3]          # solve_exact of the same batch and options: the same values
    else:
        p, n_iter, conv = solve_exact(batch, opts.max_iter, opts.tol)
    return p, n_iter, conv, None


def to_jones(params, batch):
    """diag(exp(-2 pi i tau nu_c), 1) for every antenna; delays (tau, 0)."""
    n_cell, n_ant = batch.n_cell, batch.n_ant
    J = np.zeros((n_cell, n_ant, 2, 2), np.complex128)
    nu_c = band_centre(batch)
    J[..., 0, 0] = np.exp(-1j * TWO_PI_NS * params[:, 0] * nu_c)[:, None]
    J[..., 1, 1] = 1
    delay = np.zeros((n_cell, n_ant, 2))
    delay[..., 0] = params[:, 0, None]
    return J, delay
