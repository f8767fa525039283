"""K: parallel-hand delays, diag(exp(-2 pi i tau_p nu), exp(-2 pi i tau_q nu)) per antenna.

The data a K solve sees still carry unknown per-antenna phases (G is not solved yet), so each
antenna and pol has a nuisance phase phi and the fit is made relative to the band centre nu_c
(the mean frequency of the cell's weighted samples); absolute-frequency fits have a cost periodic in
1/nu and do not converge (notes/SOLVER_BENCHMARKS.md)::

    V_ab,pp = exp(i[(phi_a - phi_b) - 2 pi (tau_a - tau_b) 1e-9 (nu - nu_c)]) M_ab,pp   (tau in ns)

The amplitude is not fitted: the cost's dependence on (tau, phi) is through
Re(conj(V) M exp(i theta)) only, so unknown gain amplitudes do not bias the delays.
Constraint tau[ref] = phi[ref] = 0.  Initial guess: an FFT fringe fit of every baseline with 8x
zero padding on a uniform channel grid, combined into per-antenna delays by weighted least squares
over all baselines (weights = fringe peak amplitude), so no single edge decides an antenna's delay.
"""

import numpy as np
from numba import prange

from .._numba import njit, pjit
from .lm import chol_solve, converged_test

POL_CORR = (0, 3)
TWO_PI_NS = 2.0 * np.pi * 1e-9


def band_centre(batch):
    """nu_c (n_cell,): mean frequency of the samples that carry weight (else of all samples)."""
    w = batch.weight.sum(axis=(1, 3)) > 0       # (n_cell, n_samp)
    nu = np.where(w, batch.freq, 0.0).sum(axis=1)
    n = w.sum(axis=1)
    return np.where(n > 0, nu / np.maximum(n, 1), batch.freq.mean(axis=1))


def fringe_fft(y, freq, weight_present, pad=8):
    """Delay (ns) and peak amplitude of y(freq) ~ A exp(2 pi i tau 1e-9 freq) per leading index.

    y : (..., n_samp) complex; freq : (n_samp,); samples gridded onto a uniform channel grid first.
    """
    f = np.asarray(freq, float)
    ok = weight_present
    if ok.sum() < 2:
        return np.zeros(y.shape[:-1]), np.zeros(y.shape[:-1])
    fu = np.unique(f[ok])
    df = np.min(np.diff(fu)) if len(fu) > 1 else 1.0
    k = np.rint((f - fu[0]) / df).astype(np.int64)
    n = int(k[ok].max()) + 1
    nfft = int(2 ** np.ceil(np.log2(max(n, 2) * pad)))
    grid = np.zeros(y.shape[:-1] + (nfft,), np.complex128)
    idx = np.where(ok, k, 0)
    yy = np.where(ok, y, 0)
    for s in range(y.shape[-1]):
        if ok[s]:
            grid[..., idx[s]] += yy[..., s]
    spec = np.fft.fft(grid, axis=-1)      # peak at k = tau df nfft for exp(+2 pi i tau f)
    amp = np.abs(spec)
    kk = np.argmax(amp, axis=-1)
    kk = np.where(kk > nfft // 2, kk - nfft, kk)
    tau = kk / (nfft * df) * 1e9
    return tau, amp.max(axis=-1)


def initial_guess(batch, ref):
    """(n_cell, n_ant, 2, 2) float: [..., 0] tau ns, [..., 1] phi rad (relative to nu_c)."""
    n_cell, n_bl, n_samp, _ = batch.vis.shape
    n_ant = batch.n_ant
    nu_c = band_centre(batch)
    out = np.zeros((n_cell, n_ant, 2, 2))
    for c in range(n_cell):
        r = ref[c]
        for p, corr in enumerate(POL_CORR):
            w = batch.weight[c, :, :, corr]
            y = w * batch.vis[c, :, :, corr] * np.conj(batch.model[c, :, :, corr])   # (n_bl, n_samp)
            present = (w > 0).any(axis=0)
            # y ~ exp(i(phi_a1 - phi_a2)) exp(-2 pi i (tau_a1 - tau_a2) nu) -> fringe of exp(+i 2pi tau f)
            # with tau = tau_a2 - tau_a1
            dtau, amp = fringe_fft(y, batch.freq[c], present)
            amp = amp * ((w > 0).any(axis=1))
            # weighted LS: tau_a2 - tau_a1 = dtau, tau_ref = 0
            free = [a for a in range(n_ant) if a != r]
            col = {a: i for i, a in enumerate(free)}
            A = np.zeros((n_bl, len(free)))
            for b in range(n_bl):
                a1, a2 = batch.ant1[b], batch.ant2[b]
                if a2 in col:
                    A[b, col[a2]] += 1
                if a1 in col:
                    A[b, col[a1]] -= 1
            sw = np.sqrt(amp)
            AtA = (A * sw[:, None] ** 2).T @ A
            Atb = (A * sw[:, None] ** 2).T @ dtau
            diag = np.diag(AtA).copy()
            AtA[np.diag_indices_from(AtA)] = np.where(diag > 0, diag, 1.0)
            tau = np.linalg.solve(AtA, Atb)
            t_all = np.zeros(n_ant)
            t_all[free] = tau
            out[c, :, p, 0] = t_all
            # phases: from the delay-corrected baselines to the reference
            dnu = batch.freq[c] - nu_c[c]
            for b in range(n_bl):
                a1, a2 = batch.ant1[b], batch.ant2[b]
                rot = np.exp(1j * TWO_PI_NS * (t_all[a1] - t_all[a2]) * dnu)
                s = (y[b] * rot).sum()
                if a1 == r and s != 0:
                    out[c, a2, p, 1] = -np.angle(s)
                elif a2 == r and s != 0:
                    out[c, a1, p, 1] = np.angle(s)
    return out


@njit
def _normal_eq(vis, model, weight, freq, nu_c, ant1, ant2, corr, tau, phi, index, n_par):
    """J^T W J, J^T W r and cost for one cell and pol; index[a] = first param of ant a or -1."""
    jtj = np.zeros((n_par, n_par))
    jtr = np.zeros(n_par)
    cost = 0.0
    n_bl, n_samp = vis.shape[0], vis.shape[1]
    for b in range(n_bl):
        a1 = ant1[b]
        a2 = ant2[b]
        i1 = index[a1]
        i2 = index[a2]
        dt = tau[a1] - tau[a2]
        dp = phi[a1] - phi[a2]
        for s in range(n_samp):
            w = weight[b, s, corr]
            if w <= 0:
                continue
            kap = -2.0 * np.pi * 1e-9 * (freq[s] - nu_c)
            th = dp + kap * dt
            e = np.cos(th) + 1j * np.sin(th)
            mod = e * model[b, s, corr]
            r = vis[b, s, corr] - mod
            cost += w * (r.real * r.real + r.imag * r.imag)
            # d r / d(phi_a1) = -i mod ; d r / d(tau_a1) = -i kap mod ; opposite signs for a2
            h = -1j * mod
            # curvature: the exact second derivative of the phase-only cost,
            # w Re(conj(V) model), not the Gauss-Newton w |model|^2 -- the amplitude is not fitted, so
            # |V| != |model| and Gauss-Newton would converge only linearly; clamped at 0 far from
            # the minimum (LM damping does the rest)
            cv = vis[b, s, corr]
            hh = w * max(cv.real * mod.real + cv.imag * mod.imag, 0.0)
            g = w * (h.real * r.real + h.imag * r.imag)      # Re(conj(h) r) w
            # params: [phi, tau] per antenna; coefficients s = (+1, +kap) for a1, (-1, -kap) for a2
            if i1 >= 0:
                jtr[i1] += g
                jtr[i1 + 1] += kap * g
                jtj[i1, i1] += hh
                jtj[i1, i1 + 1] += kap * hh
                jtj[i1 + 1, i1] += kap * hh
                jtj[i1 + 1, i1 + 1] += kap * kap * hh
            if i2 >= 0:
                jtr[i2] -= g
                jtr[i2 + 1] -= kap * g
                jtj[i2, i2] += hh
                jtj[i2, i2 + 1] += kap * hh
                jtj[i2 + 1, i2] += kap * hh
                jtj[i2 + 1, i2 + 1] += kap * kap * hh
            if i1 >= 0 and i2 >= 0:
                jtj[i1, i2] -= hh
                jtj[i2, i1] -= hh
                jtj[i1, i2 + 1] -= kap * hh
                jtj[i2 + 1, i1] -= kap * hh
                jtj[i1 + 1, i2] -= kap * hh
                jtj[i2, i1 + 1] -= kap * hh
                jtj[i1 + 1, i2 + 1] -= kap * kap * hh
                jtj[i2 + 1, i1 + 1] -= kap * kap * hh
    return jtj, jtr, cost


@njit
def _lm_cell(vis, model, weight, freq, nu_c, ant1, ant2, corr, params, ref, max_iter, tol):
    n_ant = params.shape[0]
    index = -np.ones(n_ant, np.int64)
    k = 0
    for a in range(n_ant):
        if a != ref:
            index[a] = k
            k += 2
    n_par = k
    tau = params[:, 0].copy()
    phi = params[:, 1].copy()
    tau[ref] = 0.0
    phi[ref] = 0.0
    lam = 1e-3
    jtj, jtr, cost = _normal_eq(vis, model, weight, freq, nu_c, ant1, ant2, corr, tau, phi, index,
                                n_par)
    it = 0
    conv = False
    for it in range(1, max_iter + 1):
        # Gauss-Newton/LM step: (JtJ + lam D) d = -J^T r, with r = V - model: d = -(...)^-1 jtr'
        # here jtr = sum w Re(conj(dr/dx) r) with dr/dx = -i mod * s ... so step = -jtr solved
        step, ok = chol_solve(jtj, -jtr, lam)
        if not ok:
            lam *= 10.0
            continue
        tau_n = tau.copy()
        phi_n = phi.copy()
        for a in range(n_ant):
            i = index[a]
            if i >= 0:
                phi_n[a] += step[i]
                tau_n[a] += step[i + 1]
        jtj_n, jtr_n, cost_n = _normal_eq(vis, model, weight, freq, nu_c, ant1, ant2, corr, tau_n,
                                          phi_n, index, n_par)
        if cost_n <= cost:
            done = converged_test(cost, cost_n, np.sqrt((step * step).sum()),
                                  np.sqrt((tau * tau).sum() + (phi * phi).sum()), tol)
            tau, phi, jtj, jtr, cost = tau_n, phi_n, jtj_n, jtr_n, cost_n
            lam = max(lam * 0.1, 1e-12)
            if done:
                conv = True
                break
        else:
            lam *= 10.0
            if lam > 1e12:
                conv = True   # no further decrease possible: at the minimum to machine precision
                break
    params[:, 0] = tau
    params[:, 1] = phi
    return it, conv, cost


@pjit
def lm_batch(vis, model, weight, freq, nu_c, ant1, ant2, params, ref, max_iter, tol, n_iter, conv,
             cost):
    """In place: params (n_cell, n_ant, 2, 2); n_iter/conv/cost (n_cell, 2)."""
    for c in prange(vis.shape[0]):
        for p in range(2):
            corr = 0 if p == 0 else 3
            pp = params[c, :, p, :].copy()
            it, ok, cst = _lm_cell(vis[c], model[c], weight[c], freq[c], nu_c[c], ant1, ant2, corr, pp,
                                   ref[c], max_iter, tol)
            params[c, :, p, :] = pp
            n_iter[c, p] = it
            conv[c, p] = ok
            cost[c, p] = cst


def model_vis(params, batch):
    """Model (n_cell, n_bl, n_samp, 4) for K params (n_cell, n_ant, 2, 2) (pp, qq only)."""
    nu_c = band_centre(batch)
    out = np.zeros_like(batch.model)
    dnu = batch.freq - nu_c[:, None]                       # (n_cell, n_samp)
    for p, corr in enumerate(POL_CORR):
        tau = params[:, :, p, 0]
        phi = params[:, :, p, 1]
        dt = (tau[:, batch.ant1] - tau[:, batch.ant2])[:, :, None]
        dp = (phi[:, batch.ant1] - phi[:, batch.ant2])[:, :, None]
        th = dp - TWO_PI_NS * dt * dnu[:, None, :]
        out[..., corr] = np.exp(1j * th) * batch.model[..., corr]
    return out
