"""Solution quality: which solutions may be used (CASA gaincal's minblperant and minsnr, non-converged
cells, outlier bandpass channels).  No unflagged solution may be garbage.

minblperant (:func:`drop_sparse_antennas`, before the solve)
    Per cell, an antenna needs data (weight > 0 on a correlation the term uses) on at least
    ``min_bl_per_ant`` baselines to other antennas that are themselves kept; antennas below it are
    removed (their baselines' weights set to 0) and the count repeated until nothing changes, as CASA
    does.  Their solutions are then flagged like any antenna without data.  The effective value is
    ``min(min_bl_per_ant, n - 1)``, n the cell's antennas with data before any is removed, so a cell
    of n <= min_bl_per_ant antennas with data can still be solved when every baseline among them is
    present -- a small array, or one whose other antennas are flagged or without signal (logged at
    debug level); the rounds do not lower it (a cell that loses antennas to it is not then solved on
    the few left: two antennas on their one baseline).  CASA counts the array's antennas (n_ant - 1
    here before session 57): on five antennas with one flagged -- or flagged by the solve-time flags
    for carrying no signal (review 57d) -- minblperant 4 flagged the four others, whose six baselines
    determine them, and the step failed, where CASA kept them when the dead antenna's data were left
    unflagged (it cannot tell noise from signal).  An antenna whose baselines cannot fix its amplitude
    (a chain, one baseline) is flagged by the check below, whatever n.

SNR (:func:`snr`, after the solve; stored as ``solver_stats/snr`` (n_ant, n_freq, n_time, 2) per pol)
    As CASA's gaincal (VisCalSolver::getErrors and SolvableVisJones::formSolveSNR)::

        SNR_ap = |g_ap| / err_ap,   err_ap = sqrt(2 k2 / H_ap),   k2 = chi2 / nDOF,
        H_ap   = sum_{b, s} w |dV_b,s / dg_ap|^2,   nDOF = 2 n_w - n_par

    with one change: k2 is capped at 1, ``k2 = min(chi2 / nDOF, 1)``.  CASA's k2 rescales the errors
    by the misfit, which makes the SNR independent of the scale of WEIGHT (a WEIGHT too large by a
    factor gives k2 < 1 and the same SNR).  A misfit larger than the weights predict is, in a
    calibration chain, systematic -- e.g. a bandpass over several scans solved before the time gains
    averages data whose gains drift: its chi2 / nDOF is ~1e5 (measured on the simulated chain K,
    G inf, G 2min) while the solution matches the truth to its thermal error, and CASA's SNR (~3)
    would flag it; such a misfit does not lower the SNR here (outliers and RFI are caught by the
    sample flags and the outlier-channel test instead).  Definitions:
    chi2 = sum w |V - V^|^2 over the term's correlations (the cell's final cost), n_w the number of
    samples with w > 0 (complex: two real DOF each), n_par the real parameters of the cell and H the
    Gauss-Newton curvature (CASA's "2 is from the def of Hess").  For G, dV/dg_ap = V^/g_ap, so
    SNR_ap = sqrt(sum_{b in a, s} w_pp |V^_pp|^2 / (2 k2)) over the baselines of antenna a and the
    parallel hand of pol p -- the form used here.  With w = 1/sigma^2 (sigma per real part, the MS
    convention) k2 ~ 1 on clean data and SNR ~ |V^| sqrt(sum w / 2), the amplitude over the rms
    error of the solution.  ``solver_stats/rchi2`` stores chi2 / nDOF (uncapped) per cell.
    For terms whose parameter can legitimately be ~0 (K delays, D leakages, KC, CP) the same
    sensitivity of a unit gain is used (1/SNR = the rms phase error in rad): K as G; D: d_pq,a from
    the cross hands pq (a = ant1) and qp (a = ant2) weighted by |V^_qq|^2, d_qp likewise by
    |V^_pp|^2; KC and CP: all cross-hand samples of the cell (one value for every antenna).  An
    undetermined cell (nDOF <= 0) has SNR 0, an exact fit (chi2 = 0) SNR_MAX.  A dead antenna has
    V^ ~ 0 and SNR ~ 1 -- for a term that fits amplitudes.  For K and phase-only G / T the model's
    amplitude does not follow the data, so a fit to a dead antenna's noise would get a live antenna's
    sensitivity (seen: a K delay fitted to pure noise stored unflagged); their SNR becomes the data's
    own, ``S / sqrt(2 k2)`` with S the matched-filter SNR of the antenna's (hand's) data at the
    solution (:func:`matched_snr`; = sqrt(2) SNR + N(0, 1) on live data, a few units on noise), where
    that is lower by more than 3 of its standard deviations (:func:`bound_by_data`).

Undetermined amplitudes (:func:`amplitude_undetermined`, G and T with amplitudes: calmode 'ap' / 'a')
    A baseline measures only the product |g_a| |g_b| of its antennas' amplitudes, so an antenna's
    amplitude is determined only when its connected set of baselines with data (per hand for G, after
    minblperant) closes an odd cycle, e.g. a triangle.  With one baseline (an array of two antennas), a
    chain or a star, |g| can be multiplied by c on one side and 1/c on the other without changing the
    model: the solve returns one arbitrary split (|g_ref| = 1), SNR 0 where nDOF <= 0.  Those solutions
    are flagged with reason ``amplitude_undetermined`` whatever minsnr is (not ``minsnr``: no SNR is
    too low, the amplitudes are not measured); phase-only solves of the same data are determined.

Undetermined delays (:func:`delay_undetermined`, K and KC)
    A delay is a phase slope over frequency: data at fewer than two distinct frequencies -- a one-channel
    SPW or channel selection, all but one channel flagged -- do not determine it (the solve returned
    0.000 ns, unflagged and "converged"; an antenna left with one channel, 127 ns against 1.4: reviews).
    Per antenna and hand for K (its own baselines), per cell for KC; those solutions are flagged with
    reason ``delay_undetermined`` whatever minsnr is.

minsnr, non-converged (:func:`alakazam.solvers.common.run`)
    Solutions with SNR < ``min_snr`` (0 disables) are flagged: per hand for the terms whose hands are
    solved independently (K, G: :mod:`alakazam.core.handflags`; the other hand keeps its solution),
    per antenna for the others (either pol below it); minblperant and the data presence are likewise
    counted per hand (on that hand's parallel correlation) for K and G.  Every solution of a cell
    whose solver did not converge is flagged (``SolveOptions.flag_nonconverged``; the solve flow sets it).

Outlier chi2 (:func:`chi2_outlier_bins`, any term with >= 4 freq bins)
    Per time cell, a freq bin whose chi2 / nDOF exceeds ``RCHI2_RATIO`` (10) times the median of its
    own and its 6 nearest usable bins' is flagged for every antenna: data that the model cannot
    describe (RFI left in the channel: measured ~1e6 against ~200 in the neighbours on the simulated
    chain with the sample flags off), whatever the solution's value.  A systematic misfit (drifting
    gains, bandpass shape) varies smoothly across channels and stays well below the ratio.
    The neighbours (:func:`neighbour_median`, also :func:`local_excess`'s) are the nearest bins, three on
    each side where the band has them, with a chi2 and an unflagged solution before these checks (in the
    band's interior with every bin usable: the 7-bin running median).  Before, flagged bins counted: in a
    band-edge RFI block (a review: 60 antennas, 4096 channels, akflag mad) the channels flagged as
    nonconverged had chi2 / nDOF 5000-7000, so the two channels left with RFI and unflagged solutions
    (5285, 5207; 0.46 in amplitude and 1.5 rad off the truth) were no outliers, while the band's usable
    bins are at 1.05.
    Limit: four or more adjacent usable bins with the same excess are their own reference.

Local excess chi2 (:func:`local_excess`, any term with >= 4 freq bins; before the test above)
    k2's cap at 1 keeps a misfit common to a time's bins (drifting gains) from lowering their SNR; a
    misfit local to one bin -- RFI left in it, with the sample flags off or below their reach, at
    chi2 / nDOF 3-9 against ~1 in the neighbours on a weak calibrator -- is the noise CASA's k2
    counts.  The neighbours' median (7 bins: the bin and its 6 nearest usable ones, as the outlier
    chi2 test below) of chi2 / nDOF, ref, splits into thermal noise
    (1) and a shared misfit ``max(ref - 1, 0)`` that a bin expects in proportion to its signal per
    degree of freedom.  Two readings, the larger kept: the bin's ratio to what it expects from its
    mean sample weight (k2 = the neighbours' capped k2 times that ratio: CASA's k2 where ref <= 1),
    and the additive excess over what it expects from its weight and its gain power (bounded by the
    adjacent bins'): k2 = chi2 / nDOF less the shared misfit.  Where either exceeds ``RCHI2_EXCESS``
    (2) and chi2 / nDOF's noise (5 sigma), the bin's SNR is lowered to match and minsnr applied again
    (reason minsnr).  Before, such bins kept their thermal SNR and solutions 5-9 sigma from the truth
    stayed unflagged (a review: bandpass with intermittent RFI, rfi_threshold=0; CASA flagged them by
    their SNR); the ratio alone undercounted an RFI channel of a bandpass solved over drifting gains
    (ref 9, chi2 / nDOF 56: k2 6.2, not 48) and kept two hands 5.2-5.4 sigma off; the additive
    reading alone let coherent RFI that raised a channel's gains (or 2-3 adjacent channels' together)
    hide its own excess (reviews).  Limits: K and G solve each hand on its own but a cell has one
    chi2, so RFI in one hand lowers the other hand's SNR too; RFI that adds less than the neighbours'
    shared misfit is not seen (a bandpass over strongly drifting gains at high SNR, ref ~550: hands
    6-60 sigma off stay unflagged, as before the rule -- pre-apply the gains).

Outlier bandpass channels (:func:`outlier_channels`, G with >= 4 freq bins)
    Per antenna, pol and time cell, g_f is compared with r_f, the complex running median (median of
    the real and imaginary parts) of the 7 unflagged freq bins centred on f:
    e_f = |g_f - r_f| / |r_f|.  Bin f is flagged when
    ``e_f > max(5 * max(1.4826 MAD(e), 1 / SNR_f), OUTLIER_REL)`` -- a robust outlier in
    amplitude or phase against its neighbours, beyond the typical channel-to-channel structure, its
    own noise, and by at least half the neighbours' level (a bandpass solved from RFI: amplitudes
    0.08 and 20.3 where the truth is ~0.95).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from .._numba import njit, threaded
from ..jones import terms
from ..jones.algebra import sandwich

log = logging.getLogger("alakazam.solvers")

MAD_TO_SIGMA = 1.4826
HALF_WINDOW = 3
#: an outlier channel also differs from its neighbours' running median by this fraction of it (0.5:
#: 40% in amplitude or 29 deg in phase); a peaked bandpass sampled by few channels stands ~25% off
OUTLIER_REL = 0.5
#: robust sigmas of the outlier-channel test (fixed: independent of the data's rfi_threshold)
OUTLIER_SIGMA = 5.0
#: a freq bin whose chi2 / nDOF exceeds this many times its neighbours' median (:func:`neighbour_median`)
#: is flagged
RCHI2_RATIO = 10.0
#: above this many times its neighbours' running median, a freq bin's chi2 / nDOF divides its SNR
#: (:func:`local_excess`), and above ``1 + RCHI2_SIGMAS`` of its noise sigmas, sqrt(2 / nDOF): the
#: noise gate decides below nDOF 50
RCHI2_EXCESS = 2.0
RCHI2_SIGMAS = 5.0
#: the SNR of an exact fit (chi2 = 0), as CASA's 9999999
SNR_MAX = 9999999.0


#: the quality checks that flag a solution, each a bool (n_cell, n_ant) mask of ``SolveResult.extra``, in
#: the order a solution is counted for (the first that applies; unit._quality's counts)
REASONS = ("minblperant", "amplitude_undetermined", "delay_undetermined", "minsnr", "nonconverged")


def delay_undetermined(batch, corr, per_hand):
    """Where the data in the correlations ``corr`` lie at fewer than two distinct frequencies (a delay
    needs a slope; module docstring): per antenna and hand, (n_cell, n_ant, 2) -- the frequencies of
    the antenna's own baselines in that hand (``corr`` = the two parallel hands) -- when ``per_hand``
    (K: an antenna with one channel left had a delay of 127 ns against 1.4, unflagged at SNR 1065, a
    review); else (n_cell,) over all baselines and all of ``corr`` (KC: one delay for all antennas).
    One strided pass over the weights per correlation, then the lowest and highest frequency present."""
    w = np.asarray(batch.weight)
    freq = np.asarray(batch.freq, float)[:, None, :]            # (n_cell, 1, n_samp)

    def one_frequency(present):                                 # (n_cell, k, n_samp) -> (n_cell, k)
        lo = np.where(present, freq, np.inf).min(axis=-1)
        hi = np.where(present, freq, -np.inf).max(axis=-1)
        return ~(hi > lo)                                       # none present, or one frequency

    if not per_hand:
        present = np.zeros((w.shape[0], w.shape[2]), bool)
        for c in corr:
            present |= (w[..., c] > 0).any(axis=1)
        return one_frequency(present[:, None, :])[:, 0]
    a1, a2 = np.asarray(batch.ant1), np.asarray(batch.ant2)
    out = np.ones((w.shape[0], int(batch.n_ant), len(corr)), bool)
    for h, c in enumerate(corr):
        has = w[..., c] > 0                                     # (n_cell, n_bl, n_samp)
        for a in range(int(batch.n_ant)):
            on = np.flatnonzero((a1 == a) | (a2 == a))
            if len(on):
                out[:, a, h] = one_frequency(has[:, on].any(axis=1)[:, None, :])[:, 0]
    return out


def baselines_with_data(weight, corr):
    """(n_cell, n_bl) bool: weight (n_cell, n_bl, n_samp, 4) > 0 on a sample of one of the correlations
    ``corr``.  Read in growing blocks of samples (1, 1, 2, 4, 8, ...), each block only for the
    baselines not decided yet: a baseline with data is found in its first samples as a rule, so the
    whole array is compared only for baselines without data (numpy's comparison and ``any`` over the
    whole array took 0.04 s of a CP step per channel on the 8.9 GB MS of issue 16; the same result)."""
    corr = list(corr)
    sel = slice(corr[0], corr[-1] + 1) if corr == list(range(corr[0], corr[-1] + 1)) else corr
    w = np.asarray(weight)
    if w.ndim != 4:
        return (w[..., sel] > 0).any(axis=(2, 3))
    n_cell, n_bl, n_samp = w.shape[:3]
    if n_samp == 0:
        return np.zeros((n_cell, n_bl), bool)
    out = (w[:, :, 0, sel] > 0).any(axis=-1).reshape(-1)          # the first sample: a view
    todo = np.flatnonzero(~out)
    flat = w.reshape(n_cell * n_bl, n_samp, w.shape[3])
    s0, step = 1, 1
    while len(todo) and s0 < n_samp:
        found = (flat[todo, s0:s0 + step][..., sel] > 0).any(axis=(1, 2))
        out[todo[found]] = True
        todo = todo[~found]
        s0, step = s0 + step, 2 * step
    return out.reshape(n_cell, n_bl)


def count_per_antenna(bl_true, a1, a2, n_ant):
    """(n_cell, n_ant) int64: for each antenna the baselines b (as a1[b] or a2[b]) where ``bl_true``
    (n_cell, n_bl) holds -- ``np.add.at`` on both sides, as one product with the baseline-antenna
    incidence matrix (integer sums, exact in float64)."""
    a1, a2 = np.asarray(a1, np.int64), np.asarray(a2, np.int64)
    inc = np.zeros((len(a1), n_ant))
    np.add.at(inc, (np.arange(len(a1)), a1), 1.0)
    np.add.at(inc, (np.arange(len(a2)), a2), 1.0)
    return np.rint(np.asarray(bl_true, np.float64) @ inc).astype(np.int64)


def drop_sparse_antennas(batch, jones_type, min_bl, bl_has=None, corr=None):
    """Apply minblperant in place on ``batch.weight``; returns the (n_cell, n_ant) bool mask of the
    antennas removed (module docstring).  ``bl_has``: :func:`baselines_with_data` of the weights, when
    the caller already has it.  ``corr``: count and remove on these correlations only (one hand of a
    per-hand term, :mod:`alakazam.core.handflags`); default the term's."""
    n_cell, n_ant = batch.n_cell, batch.n_ant
    dropped = np.zeros((n_cell, n_ant), bool)
    if not min_bl or min_bl <= 0 or n_cell == 0:
        return dropped
    if bl_has is None:
        bl_has = baselines_with_data(batch.weight, corr if corr is not None else terms.get(jones_type).corr)
    a1, a2 = np.asarray(batch.ant1), np.asarray(batch.ant2)
    need = None
    while True:
        ok = bl_has & ~dropped[:, a1] & ~dropped[:, a2]
        count = count_per_antenna(ok, a1, a2, n_ant)
        if need is None:        # at most the cell's other antennas with data, before any is removed
            need = np.minimum(int(min_bl), (count > 0).sum(axis=1) - 1)[:, None]
            if (need < int(min_bl)).any():
                log.debug("minblperant %d: cells of fewer antennas with data require n - 1 baselines",
                          int(min_bl))
        new = (count > 0) & (count < need) & ~dropped
        if not new.any():
            break
        dropped |= new
    if dropped.any():
        cut = dropped[:, a1] | dropped[:, a2]                        # (n_cell, n_bl)
        if corr is None:
            batch.weight[cut] = 0.0
        else:
            ci, bi = np.nonzero(cut)
            for k in corr:
                batch.weight[ci, bi, :, k] = 0.0
    return dropped


def amplitude_undetermined(bl_has, a1, a2, n_ant):
    """(n_cell, n_ant) bool: the antennas with data whose gain amplitude the baselines with data
    (``bl_has`` (n_cell, n_bl)) do not determine (module docstring): |V_ab| fixes only the product
    |g_a| |g_b|, so in a connected set of baselines without an odd cycle (one baseline -- an array of
    two antennas --, a chain, a star) |g| can be scaled by c on one side and 1/c on the other without
    changing the model.

    Determined for certain: a baseline whose two antennas each have data on more than n / 2 baselines
    (n: the cell's antennas with data) -- they share a neighbour, a triangle -- and the antennas joined
    to those by baselines (every antenna of a full array).  The cells with an antenna left are decided
    exactly: antenna a is undetermined when its two copies (a, 0) and (a, 1) are not connected in the
    graph with edges (a, i) - (b, 1 - i) for every baseline (a, b) (its set of baselines has no odd
    cycle)."""
    a1, a2 = np.asarray(a1, np.int64), np.asarray(a2, np.int64)
    bl_has = np.asarray(bl_has, bool)
    count = count_per_antenna(bl_has, a1, a2, n_ant)
    has = count > 0
    high = has & (2 * count > has.sum(axis=1, keepdims=True))
    out = np.zeros(has.shape, bool)
    if (high == has).all():
        return out
    det = count_per_antenna(bl_has & high[:, a1] & high[:, a2], a1, a2, n_ant) > 0
    for _ in range(2):
        if (det == has).all():
            break
        det = count_per_antenna(bl_has & (det[:, a1] | det[:, a2]), a1, a2, n_ant) > 0
    cells = np.flatnonzero((has & ~det).any(axis=1))
    if not len(cells):
        return out
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ci, bi = np.nonzero(bl_has[cells])
    u = 2 * (ci * n_ant + a1[bi])
    v = 2 * (ci * n_ant + a2[bi])
    n = 2 * len(cells) * n_ant
    rows, cols = np.concatenate([u, u + 1]), np.concatenate([v + 1, v])
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n, n))
    lab = connected_components(graph, directed=False)[1].reshape(len(cells), n_ant, 2)
    out[cells] = has[cells] & (lab[..., 0] != lab[..., 1])
    return out


def undetermined_after_flags(bl_has, a1, a2, n_ant, flagged, silent):
    """(n_cell, n_ant) bool: the antennas not ``flagged`` (n_cell, n_ant) with data in ``bl_has`` whose
    amplitude the baselines with data among the antennas not ``silent`` (flagged with an SNR below
    :data:`alakazam.solvers.nosignal.NOISE_S`: data without signal) do not determine
    (:func:`amplitude_undetermined`) -- or that have no such baseline left, their solution resting on the
    silent antennas' noise alone.  After the solve: a dead antenna whose noise the flags do not mark
    (``rfi_threshold=0``) is flagged by minsnr, but its data counted before the solve and it fixes no
    amplitude.  Four antennas with two dead kept C00 and C03, whose one baseline fixes only |g0| |g3|, at
    |g| 0.02 and 50 (truth 1.10, 0.96) with SNR ~7000 (review 57d; CASA kept them at 0.62 / 1.79).  An
    antenna flagged by a minsnr above its real signal (SNR in the hundreds) still fixed the others'
    amplitudes in the joint fit: not silent."""
    a1, a2 = np.asarray(a1, np.int64), np.asarray(a2, np.int64)
    flagged = np.asarray(flagged, bool)
    silent = np.asarray(silent, bool) & flagged
    bl_has = np.asarray(bl_has, bool)
    out = np.zeros(flagged.shape, bool)
    had = count_per_antenna(bl_has, a1, a2, n_ant) > 0
    cells = np.flatnonzero((silent & had).any(axis=1) & (had & ~flagged).any(axis=1))
    if not len(cells):
        return out
    q = silent[cells]
    kept = bl_has[cells] & ~q[:, a1] & ~q[:, a2]
    left = count_per_antenna(kept, a1, a2, n_ant) > 0
    out[cells] = had[cells] & ~flagged[cells] & (~left | amplitude_undetermined(kept, a1, a2, n_ant))
    return out


def _n_par(jones_type, n_ant_data, phase_only):
    """Free real parameters of a cell (the registry's count: per antenna less the reference's)."""
    return terms.get(jones_type).n_params(n_ant_data, phase_only)


#: the per-(cell, baseline) sums of :func:`_power_sums`, index -> (weight corr, |V^|^2 corr)
_WP = ((0, 0), (3, 3), (1, 3), (2, 3), (2, 0), (1, 0), (1, 1), (2, 2))


@njit(inline="always")
def _finite_or_zero(x):
    return x if (np.isfinite(x.real) and np.isfinite(x.imag)) else 0j


@njit
def _power_sums(start, stride, J, M, w, a1, a2, sums, n_w):
    # sums[c, b, i] = sum_s w[c, b, s, _WP[i][0]] * |V^[c, b, s, _WP[i][1]]|^2 with
    # V^ = J[c, a1] M J[c, a2]^H (jones.algebra.sandwich; non-finite J entries read as 0), and
    # n_w[c, b, k] = the samples with w[c, b, s, k] > 0.  The (cell, baseline) items start, start +
    # stride, ... on this thread (_numba.threaded): each writes its own sums[c, b] and n_w[c, b].
    n_cell, n_bl, n_samp, _ = M.shape
    for cb in range(start, n_cell * n_bl, stride):
        c = cb // n_bl
        b = cb % n_bl
        p00, p01 = _finite_or_zero(J[c, a1[b], 0, 0]), _finite_or_zero(J[c, a1[b], 0, 1])
        p10, p11 = _finite_or_zero(J[c, a1[b], 1, 0]), _finite_or_zero(J[c, a1[b], 1, 1])
        q00, q01 = _finite_or_zero(J[c, a2[b], 0, 0]), _finite_or_zero(J[c, a2[b], 0, 1])
        q10, q11 = _finite_or_zero(J[c, a2[b], 1, 0]), _finite_or_zero(J[c, a2[b], 1, 1])
        acc = np.zeros(8)
        cnt = np.zeros(4, np.int64)
        # diagonal Jones (K, G, KC, CP): V^_ij = (p_ii M_ij) conj(q_jj), what the sandwich gives with
        # zero off-diagonals (its added terms are exact zeros): the same values, a quarter of the work
        diag = p01 == 0 and p10 == 0 and q01 == 0 and q10 == 0
        cq00 = np.conj(q00)
        cq11 = np.conj(q11)
        for s in range(n_samp):
            if diag:
                v0 = (p00 * M[c, b, s, 0]) * cq00
                v1 = (p00 * M[c, b, s, 1]) * cq11
                v2 = (p11 * M[c, b, s, 2]) * cq00
                v3 = (p11 * M[c, b, s, 3]) * cq11
            else:
                v0, v1, v2, v3 = sandwich(p00, p01, p10, p11, M[c, b, s, 0], M[c, b, s, 1],
                                          M[c, b, s, 2], M[c, b, s, 3], q00, q01, q10, q11)
            p0 = v0.real * v0.real + v0.imag * v0.imag
            p1 = v1.real * v1.real + v1.imag * v1.imag
            p2 = v2.real * v2.real + v2.imag * v2.imag
            p3 = v3.real * v3.real + v3.imag * v3.imag
            w0 = w[c, b, s, 0]
            w1 = w[c, b, s, 1]
            w2 = w[c, b, s, 2]
            w3 = w[c, b, s, 3]
            acc[0] += w0 * p0
            acc[1] += w3 * p3
            acc[2] += w1 * p3
            acc[3] += w2 * p3
            acc[4] += w2 * p0
            acc[5] += w1 * p0
            acc[6] += w1 * p1
            acc[7] += w2 * p2
            cnt[0] += w0 > 0
            cnt[1] += w1 > 0
            cnt[2] += w2 > 0
            cnt[3] += w3 > 0
        for i in range(8):
            sums[c, b, i] = acc[i]
        for k in range(4):
            n_w[c, b, k] = cnt[k]


@njit
def _chi2_sums(start, stride, J, V, M, w, a1, a2, use, out):
    # out[c, b] = sum_s sum_{k: use[k]} w[c, b, s, k] |V[c, b, s, k] - V^[c, b, s, k]|^2 with
    # V^ = J[c, a1] M J[c, a2]^H (jones.algebra.sandwich; J constant over the cell's samples);
    # (cell, baseline) items start, start + stride, ... on this thread (_numba.threaded)
    n_cell, n_bl, n_samp, _ = M.shape
    for cb in range(start, n_cell * n_bl, stride):
        c = cb // n_bl
        b = cb % n_bl
        p = a1[b]
        q = a2[b]
        acc = 0.0
        # diagonal Jones: V^_k = (p_ii M_k) conj(q_jj) for the used correlations only (the sandwich's
        # values with zero off-diagonals, see _power_sums)
        if J[c, p, 0, 1] == 0 and J[c, p, 1, 0] == 0 and J[c, q, 0, 1] == 0 and J[c, q, 1, 0] == 0:
            pk = (J[c, p, 0, 0], J[c, p, 0, 0], J[c, p, 1, 1], J[c, p, 1, 1])
            qk = (np.conj(J[c, q, 0, 0]), np.conj(J[c, q, 1, 1]), np.conj(J[c, q, 0, 0]),
                  np.conj(J[c, q, 1, 1]))
            for s in range(n_samp):          # the general loop's order: the same sum
                for k in range(4):
                    wt = w[c, b, s, k]
                    if use[k] and wt != 0:
                        r = V[c, b, s, k] - (pk[k] * M[c, b, s, k]) * qk[k]
                        acc += wt * (r.real * r.real + r.imag * r.imag)
            out[c, b] = acc
            continue
        for s in range(n_samp):
            vh = sandwich(J[c, p, 0, 0], J[c, p, 0, 1], J[c, p, 1, 0], J[c, p, 1, 1],
                          M[c, b, s, 0], M[c, b, s, 1], M[c, b, s, 2], M[c, b, s, 3],
                          J[c, q, 0, 0], J[c, q, 0, 1], J[c, q, 1, 0], J[c, q, 1, 1])
            for k in range(4):
                wt = w[c, b, s, k]
                if use[k] and wt != 0:
                    r = V[c, b, s, k] - vh[k]
                    acc += wt * (r.real * r.real + r.imag * r.imag)
        out[c, b] = acc


def chi2_from_jones(jones_type, J, batch):
    """(n_cell,) sum w |V - J_a M J_b^H|^2 over the term's correlations, for terms whose Jones matrix
    is constant over a cell's samples (not the delay types): the final cost of
    :func:`alakazam.solvers.common.chi2` in one compiled pass instead of ``model_vis`` on full arrays."""
    a1 = np.ascontiguousarray(batch.ant1, np.int64)
    a2 = np.ascontiguousarray(batch.ant2, np.int64)
    use = np.zeros(4, np.bool_)
    use[list(terms.get(jones_type).corr)] = True
    out = np.zeros((batch.n_cell, len(a1)))
    if batch.n_cell and len(a1):
        threaded(_chi2_sums, batch.n_cell * len(a1), np.ascontiguousarray(J, np.complex128),
                 np.ascontiguousarray(batch.vis, np.complex128),
                 np.ascontiguousarray(batch.model, np.complex128),
                 np.ascontiguousarray(batch.weight, np.float64), a1, a2, use, out)
    return out.sum(axis=1)


def _add_to_ants(sens_p, a1, a2, s1, s2):
    """sens_p[c, a] += s1[c, b] for a = a1[b] and s2[c, b] for a = a2[b] (per antenna sums)."""
    n_ant = sens_p.shape[1]
    for c in range(sens_p.shape[0]):
        sens_p[c] += np.bincount(a1, weights=s1[c], minlength=n_ant) + np.bincount(a2, weights=s2[c],
                                                                                   minlength=n_ant)


def _unit_cross_global(tt, J) -> bool:
    """A global term on the cross hands whose Jones matrices are finite and diagonal with entries of
    modulus 1 -- KC, CP: then w |V^|^2 = w |M|^2 and :func:`snr`'s sums are the model's cross-hand
    power (:func:`alakazam.solvers.cross_phase.cross_power_counts`)."""
    if not (tt.is_global and tt.diagonal and tuple(tt.corr) == terms.CROSS):
        return False
    J = np.asarray(J)
    return bool(np.isfinite(J).all() and not J[..., 0, 1].any() and not J[..., 1, 0].any()
                and (np.abs(np.abs(J[..., [0, 1], [0, 1]]) - 1.0) < 1e-12).all())


def _dof(jones_type, n_w, has, phase_only, has_hands=None, dof_per_sample=2):
    """(n_cell,) nDOF = dof_per_sample x n_w - n_par of :func:`_reduced_chi2`."""
    if has_hands is None:
        n_par = _n_par(jones_type, has.sum(axis=1), phase_only)
    else:               # per hand: half of an antenna's parameters, counted where the hand has data
        n_h = np.asarray(has_hands).sum(axis=1)                      # (n_cell, 2)
        n_par = np.where(n_h > 0, _n_par(jones_type, n_h, phase_only) / 2.0, 0.0).sum(axis=-1)
    return dof_per_sample * n_w - n_par


def _reduced_chi2(jones_type, n_w, cost, has, phase_only, has_hands=None, dof_per_sample=2):
    """(n_cell,) chi2 / nDOF, nDOF = dof_per_sample x n_w - n_par (``n_w``: the samples with w > 0 on the
    term's correlations per cell -- 2 real DOF each, or 1 for a residual that is a phase alone; NaN where
    nDOF <= 0): the parameters counted per antenna with data (``has``), or per hand where it has data
    (``has_hands``)."""
    dof = _dof(jones_type, n_w, has, phase_only, has_hands, dof_per_sample)
    with np.errstate(divide="ignore", invalid="ignore"):
        # a cost below 0 is the rounding of an exact fit (c0 - 2 Re sum ... of a noise-free cell): 0
        return np.where(dof > 0, np.maximum(np.asarray(cost, float), 0.0) / np.maximum(dof, 1), np.nan)


def snr(jones_type, batch, J, cost, has, phase_only=False, has_hands=None, cross_sums=None):
    """``(snr (n_cell, n_ant, 2), rchi2 (n_cell,))`` of the solutions ``J`` (n_cell, n_ant, 2, 2)
    (module docstring).  The model visibilities V^ = J_a M J_b^H and their weighted powers are
    summed per (cell, baseline) in one compiled pass (:func:`_power_sums`).  ``has_hands`` (n_cell,
    n_ant, 2), a per-hand term's presence (solvers/handsolve.py): the DOF counts each hand's parameters
    (half the antenna's, the reference's fixed ones too) only where that hand has data -- an RR-only MS
    has one hand's samples and parameters (both hands' parameters gave it DOF <= 0 on 4 antennas).
    ``cross_sums``: :func:`alakazam.solvers.cross_phase.power_pass` of this batch as it is now, when the
    caller has it (KC, CP)."""
    n_cell, n_ant = batch.n_cell, batch.n_ant
    a1 = np.ascontiguousarray(batch.ant1, np.int64)
    a2 = np.ascontiguousarray(batch.ant2, np.int64)
    n_bl = len(a1)
    tt = terms.get(jones_type)
    if _unit_cross_global(tt, J):          # KC, CP: |V^| = |M|, one pass over the cross hands
        from .cross_phase import cross_power_counts
        s_cross, n_w = cross_power_counts(batch, cross_sums)
    else:
        sums = np.zeros((n_cell, n_bl, len(_WP)))
        n_wb = np.zeros((n_cell, n_bl, 4), np.int64)
        if n_cell and n_bl:
            threaded(_power_sums, n_cell * n_bl, np.ascontiguousarray(J, np.complex128),
                     np.ascontiguousarray(batch.model, np.complex128),
                     np.ascontiguousarray(batch.weight, np.float64), a1, a2, sums, n_wb)
        n_w = n_wb[..., list(tt.corr)].sum(axis=(1, 2))
        s_cross = None
    rchi2 = _reduced_chi2(jones_type, n_w, cost, has, phase_only, has_hands)
    k2 = rchi2.copy()
    k2 = np.minimum(k2, 1.0)            # a misfit above the weights' prediction is not noise (docstring)
    sens = np.zeros((n_cell, n_ant, 2))
    if s_cross is not None:
        sens[:] = s_cross[:, None, None]
    elif tt.corr == terms.PARALLEL:          # a per-pol term on the parallel hands (K, G, T)
        for p, i in ((0, 0), (1, 1)):                                  # w_pp |V^_pp|^2, w_qq |V^_qq|^2
            _add_to_ants(sens[..., p], a1, a2, sums[..., i], sums[..., i])
        if tt.pol_shared:                   # one gain for both hands: both hands' sensitivity
            sens[:] = sens.sum(axis=-1, keepdims=True)
    elif not tt.diagonal:                  # D
        # d_pq: pq on ant1 side and qp on ant2 side, |V^_qq|^2; d_qp: qp (ant1), pq (ant2), |V^_pp|^2
        _add_to_ants(sens[..., 0], a1, a2, sums[..., 2], sums[..., 3])
        _add_to_ants(sens[..., 1], a1, a2, sums[..., 4], sums[..., 5])
    else:   # KC, CP: one parameter for all antennas
        s = (sums[..., 6] + sums[..., 7]).sum(axis=1)
        sens[:] = s[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.sqrt(sens / (2.0 * k2[:, None, None]))
    # chi2 = 0 (noise-free data): zero error, SNR_MAX as CASA's 9999999; no DOF: 0
    exact = (k2 == 0)[:, None, None] & (sens > 0)
    out = np.where(exact, SNR_MAX, np.where(np.isfinite(out), out, 0.0))
    if tt.is_global:
        out = np.where(has.any(axis=1)[:, None, None], out, 0.0)
    else:
        out = np.where(has[..., None], out, 0.0)
    return out, rchi2


def _per_antenna_snr(num, den, ant1, ant2, n_ant):
    """sum_b num / sqrt(sum_b den) over each antenna's baselines; num, den (n_cell, n_bl); NaN where the
    antenna has no weight."""
    n = np.zeros((num.shape[0], n_ant))
    d = np.zeros((num.shape[0], n_ant))
    for a in (ant1, ant2):
        np.add.at(n, (slice(None), a), num)
        np.add.at(d, (slice(None), a), den)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, n / np.sqrt(d), np.nan)


def matched_snr(jones_type, batch, params, per_hand, chunk_bytes=64 * 2**20):
    """S (n_cell, n_ant, 2): the matched-filter SNR of each antenna's (hand's) data at the solution
    ``params``, ``S = sum_b Re(w conj(V^) V) / sqrt(sum_b w |V^|^2)`` over its baselines and the term's
    correlations (V^ the term module's ``model_vis``; per parallel hand with ``per_hand``, else both
    hands hold the antenna's value; NaN without data).  With weights 1/sigma^2 and signal, S =
    sqrt(sum w |V^|^2) + N(0, 1); for noise-only data a fit finds S of a few units (:func:`snr`,
    :mod:`alakazam.solvers.nosignal`).  K's sums come from one compiled pass (``matched_sums``); other
    terms form the model ``chunk_bytes`` at a time."""
    from ..core.handflags import HAND_CORR

    tt = terms.get(jones_type)
    out = np.full((batch.n_cell, batch.n_ant, 2), np.nan)
    if per_hand and hasattr(tt.module, "matched_sums"):
        num, den = tt.module.matched_sums(params, batch)
        for h in range(2):
            out[..., h] = _per_antenna_snr(num[..., h], den[..., h], batch.ant1, batch.ant2, batch.n_ant)
        return out
    groups = [[HAND_CORR[0]], [HAND_CORR[1]]] if per_hand else [list(tt.corr)]
    step = max(1, chunk_bytes // max(1, int(batch.vis[0].nbytes) if batch.n_cell else 1))
    for c0 in range(0, batch.n_cell, step):
        sl = slice(c0, min(batch.n_cell, c0 + step))
        sub = batch.take(sl, batch.weight[sl])
        mv = tt.module.model_vis(np.asarray(params)[sl], sub)
        for h, corr in enumerate(groups):
            w = sub.weight[..., corr]
            m = mv[..., corr]
            num = (w * (np.conj(m) * sub.vis[..., corr]).real).sum(axis=(2, 3))      # (n_c, n_bl)
            den = (w * (m.real ** 2 + m.imag ** 2)).sum(axis=(2, 3))
            s = _per_antenna_snr(num, den, batch.ant1, batch.ant2, batch.n_ant)
            if per_hand:
                out[sl, :, h] = s
            else:
                out[sl] = s[..., None]
    return out


@njit
def _phase_only_cells(start, stride, v, m, w, use, vo, wo):
    # items (cell, baseline) i = c * n_bl + b, start, start + stride, ... on this thread
    # (_numba.threaded; by baseline, so a batch of one cell -- K per scan -- uses every thread): for the
    # correlations k with use[k], vo = v |m| / |v| and wo = w |v|^2 / |m|^2 where v, m are non-zero and
    # finite and w > 0 (vo = wo = 0 elsewhere and on the other correlations: the outputs start at 0)
    n_cell, n_bl, n_samp, n_corr = v.shape
    for i in range(start, n_cell * n_bl, stride):
        c = i // n_bl
        b = i - c * n_bl
        for s in range(n_samp):
            for k in range(n_corr):
                if not use[k]:
                    continue
                wt = w[c, b, s, k]
                if not wt > 0:
                    continue
                x = v[c, b, s, k]
                y = m[c, b, s, k]
                av = np.sqrt(x.real * x.real + x.imag * x.imag)
                am = np.sqrt(y.real * y.real + y.imag * y.imag)
                if av > 0 and am > 0 and np.isfinite(av) and np.isfinite(am) and np.isfinite(wt):
                    r = am / av
                    vo[c, b, s, k] = x * r
                    wo[c, b, s, k] = wt / (r * r)


def phase_only_arrays(vis, model, weight, corr):
    """``(vis', weight')`` of :func:`alakazam.solvers.common.phases_only` (one compiled pass over the
    cells, on the thread pool)."""
    v = np.ascontiguousarray(vis, np.complex128)
    m = np.ascontiguousarray(model, np.complex128)
    w = np.ascontiguousarray(weight, np.float64)
    use = np.zeros(v.shape[-1], np.bool_)
    use[list(corr)] = True
    vo = np.zeros(v.shape, np.complex128)
    wo = np.zeros(v.shape, np.float64)
    if v.shape[0] and v.shape[1]:
        threaded(_phase_only_cells, v.shape[0] * v.shape[1], v, m, w, use, vo, wo)
    return vo, wo


#: :func:`phase_only_snr`: the DOF of the batch's pooled phase-scatter scale in each cell's (a cell's own f
#: weighs its nu = n_w - n_par DOF against these)
PHASE_POOL_DOF = 10.0


def phase_only_snr(jones_type, batch, params, J, has, phase_only, has_hands=None,
                   chunk_bytes=64 * 2**20, with_rchi2=False):
    """(n_cell, n_ant, 2) SNR of the terms whose model amplitude does not follow the data (K, phase-only
    G / T; :func:`data_snr_applies`): the data's matched-filter SNR at the solution over the rms of the
    phase scatter,

        SNR = S / sqrt(f),   S = sum_b Re(w conj(V^) V) / sqrt(sum_b w |V^|^2)   (:func:`matched_snr`),
        f = min(chi2' / (n_w - n_par), 2),  chi2' = the fit's cost on the data made phase-only as CASA's
              apmode 'P' (:func:`alakazam.solvers.common.phases_only`: sum w |V|^2 |V/|V| - V^/|V^||^2)
              -- the cell's, shrunk towards the batch's where the cell has few DOF (below),

    1 / the rms phase error: with data of per-sample SNR well above 1, S = sqrt(sum w |V|^2), and f is
    the noise's scale against the weights' (1 where they describe it; the phase scatter has one real DOF
    per sample), so SNR = sqrt(sum w |V|^2), CASA's phase-only SNR, whatever the data's scale against the
    model's.  On small arrays the DOF matter: on 5 antennas per integration a complex fit's count
    (2 n_w - n_par, this function's first version) gave 1.15 x the truth, 1.26 x CASA's, whose k2
    (nDOF 2 n_w - 2 n_ant) gives 0.91 x the truth (review 56c).  f / 2 is a complex fit's k2 and is
    capped as every term's (:func:`snr`: k2 <= 1), so a misfit beyond twice the weights' prediction
    does not lower the SNR further (a dead antenna's noise in a cell raises f: a cap at 1 kept its
    noise fits unflagged in 10% of integrations); with weights that do not describe the noise
    (WEIGHT = 1 on raw correlator units) f cannot tell a misfit from noise, and a systematic phase
    misfit -- a bandpass not yet solved under K, T's hands that differ -- lowers the SNR, as in CASA.
    S of noise is Rayleigh(1): a fit to a dead antenna's noise gets a few units at most, and S is
    unbiased where the data are weak (a sum of |V|^2, CASA's sensitivity, counts the noise's power as
    signal).

    f is the cell's, shrunk towards the batch's: with nu = n_w - n_par the cell's DOF and
    f_pool = sum chi2' / sum nu over the batch's cells with DOF,

        f = (chi2' + nu_0 f_pool) / (nu + nu_0),   nu_0 = min(PHASE_POOL_DOF, sum nu)   (10),

    the cell's own where it has many DOF (a 20-antenna cell per integration has ~340: the SNR moves by
    < 0.1%, CASA's per-cell k2 kept), the batch's where it has few, and f_pool where it has none (two
    antennas; f = 1, the weights taken as they are, where no cell of the batch has DOF).  With few DOF a
    cell's f is a chi2 of nu DOF / nu, so SNR = S / sqrt(f) has a Student-t's tail: on three antennas
    per integration (one sample per baseline, one DOF per hand: the closure phase) a dead antenna whose
    noise closed within 5-8 degrees in both hands got f = 0.005 and SNR 17 and 32, unflagged (review 57d
    F2; synthetic, tests/test_phase_snr_dead_antenna.py: 8% of a dead antenna's hands over minsnr 3 on
    three antennas, up to 19, 1.75% on four with two dead, and live SNRs 0.68-4.5 x the truth's, 5-95%,
    median 1.26); with the pool none (at most 2.5), 0.06%, and live 0.83-1.22 x (median 1.02).  Nothing
    measured on the cell's own data tells such a fit from signal (every baseline's residual is the
    closure's share, and the dead antenna's own phases agree), so a per-antenna f (the review's
    proposal) does not help: measured on its own baselines, 9% passed on three antennas (per hand,
    23%), and where the dead antenna's noise lies far below its weights' (1%; five antennas) 1.6%
    passed where the cell's f flags all (its S is ~1% of a live antenna's; synthetic, 400 cells).  The
    pool assumes that the weights' scale against the noise is the batch's (one step's cells: a scan, a
    solint's integrations); a cell solved again on its own (solvers/nosignal.py, weak_cells.py) pools
    the cells solved with it.

    Before (review 56b), the SNR was a complex fit's on the data as they are -- sqrt(sum w |M|^2 / (2 k2))
    with the model's power and a chi2 holding the amplitude mismatch (capped k2), bounded by S: DATA at
    another scale than MODEL_DATA (raw correlator units) gave SNR_true / |g|^2, every K and phase-only
    solution flagged at |g| = 1000 or with DATA 1e-4 of MODEL_DATA and unit weights, where CASA flags
    none; and phase-only SNRs were 1/sqrt(2) of CASA's (163 against 240 at the expected 238), so minsnr 3
    flagged 52% of a weak calibrator's solutions (expected SNR ~4) against CASA's 18%.  Done
    ``chunk_bytes`` of cells at a time (a copy of their data and weights); the pool after them.

    ``with_rchi2``: ``(snr, f)`` with f (n_cell,) the cell's own phase-only fit's chi2' / (n_w - n_par),
    uncapped and not pooled (NaN where it leaves no DOF): ``solver_stats/rchi2_phase``, by which akexport
    scales the SNR as CASA does beyond the cap (io/casatable._snr: S / sqrt(f), CASA's per-cell SNR,
    where both the cell's and the pooled f exceed 2)."""
    from .common import chi2, phases_only

    n_cell = batch.n_cell
    s_all = np.zeros((n_cell, batch.n_ant, 2))
    cost_all = np.zeros(n_cell)
    dof_all = np.zeros(n_cell)
    f_all = np.full(n_cell, np.nan)
    per_hand = has_hands is not None
    step = max(1, chunk_bytes // max(1, int(batch.vis[0].nbytes) if n_cell else 1))
    params = np.asarray(params)
    corr = list(terms.get(jones_type).corr)
    for c0 in range(0, n_cell, step):
        sl = slice(c0, min(n_cell, c0 + step))
        sub = batch.take(sl, batch.weight[sl])
        s_all[sl] = matched_snr(jones_type, sub, params[sl], per_hand)
        pb = phases_only(sub, corr)
        cost = chi2(jones_type, params[sl], pb, J[sl])
        n_w = (pb.weight[..., corr] > 0).sum(axis=(1, 2, 3))
        hh = None if has_hands is None else has_hands[sl]
        # the phase scatter's own scale: one real DOF per sample (its radial part is gone)
        f_all[sl] = _reduced_chi2(jones_type, n_w, cost, has[sl], phase_only, hh, dof_per_sample=1)
        dof_all[sl] = _dof(jones_type, n_w, has[sl], phase_only, hh, dof_per_sample=1)
        cost_all[sl] = np.maximum(np.asarray(cost, float), 0.0)    # below 0: an exact fit's rounding
        del pb, sub
    # each cell's f with PHASE_POOL_DOF degrees of freedom of the batch's pooled scale (docstring); no DOF
    # in the cell (one baseline: the phases fit exactly): the pooled scale alone, or the weights' own
    # (f = 1) where no cell of the batch has any
    ok = np.isfinite(f_all) & (dof_all > 0)
    if ok.any():
        pool = cost_all[ok].sum() / dof_all[ok].sum()
        nu0 = min(PHASE_POOL_DOF, float(dof_all[ok].sum()))
        f = np.where(ok, (cost_all + nu0 * pool) / (np.where(ok, dof_all, 0.0) + nu0), pool)
    else:
        f = np.ones(n_cell)
    f = np.minimum(f, 2.0)[:, None, None]                       # k2 = f / 2 <= 1 (snr)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.maximum(s_all, 0.0) / np.sqrt(f)
    v = np.where((f == 0) & (s_all > 0), SNR_MAX, np.where(np.isfinite(v), v, 0.0))
    present = has_hands if per_hand else has[..., None]
    out = np.where(present, v, 0.0)
    return (out, f_all) if with_rchi2 else out


def data_snr_applies(jones_type, phase_only) -> bool:
    """Whether :func:`snr` is bounded by the data's own SNR (:func:`matched_snr`): the terms whose model
    amplitude does not follow the data -- K, and G / T phase-only -- so that a fit to a dead antenna's
    noise is not given the sensitivity of a live one."""
    tt = terms.get(jones_type)
    return not tt.is_global and (tt.name == "K" or (tt.gain and phase_only))


#: :func:`bound_by_data`: the data's SNR replaces the model's when it is lower by more than this many
#: of its own standard deviations (1 / sqrt(2) in SNR units): a live antenna near minsnr keeps CASA's
#: SNR (a plain min() of the two lowered it by the data's noise: 5.7% of phase-only solutions at SNR
#: ~3.7 flagged where CASA's definition flags 0%, the session's review)
DATA_SNR_SIGMAS = 3.0


def bound_by_data(snr_sens, s, rchi2, has):
    """The SNR where the data's own, S / sqrt(2 k2) (k2 = min(chi2 / nDOF, 1), as in :func:`snr`; S < 0
    counts as 0), is lower than ``snr_sens`` by more than DATA_SNR_SIGMAS / sqrt(2): the data hold
    less of the signal than the model claims (a fit to a dead antenna's noise: S of a few units against
    thousands); elsewhere ``snr_sens``."""
    k2 = np.minimum(np.asarray(rchi2, float), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.maximum(s, 0.0) / np.sqrt(2.0 * k2[:, None, None])
    use = np.isfinite(sd) & (has[..., None] if has.ndim == 2 else has)
    use &= sd < snr_sens - DATA_SNR_SIGMAS / np.sqrt(2.0)
    return np.where(use, sd, snr_sens)


def _running_nanmedian(x):
    """Running median over the last axis (window 2 HALF_WINDOW + 1, NaN = missing; NaN where fewer
    than 3 values are in the window)."""
    from numpy.lib.stride_tricks import sliding_window_view

    pad = [(0, 0)] * (x.ndim - 1) + [(HALF_WINDOW, HALF_WINDOW)]
    win = sliding_window_view(np.pad(x, pad, constant_values=np.nan), 2 * HALF_WINDOW + 1, axis=-1)
    n_ok = np.isfinite(win).sum(axis=-1)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(win, axis=-1)
    return np.where(n_ok >= 3, med, np.nan)


#: :func:`neighbour_median`: the nearest freq bins with usable solutions a bin's chi2 / nDOF is
#: compared with (2 HALF_WINDOW: in the band's interior with every bin usable, the 7-bin running median)
N_NEIGHBOURS = 2 * HALF_WINDOW


def neighbour_median(r, usable=None, chunk_elems=2**21):
    """(n_f, n_t): the reference of each freq bin's chi2 / nDOF ``r`` (n_f, n_t; NaN = no data) for
    :func:`local_excess` and :func:`chi2_outlier_bins` -- the median of the bin's own value and those of
    N_NEIGHBOURS bins that are ``usable`` (n_f, n_t bool: a solution of the cell is unflagged) and have a
    finite r: the HALF_WINDOW nearest on each side, and where one side has fewer, the next nearest of
    the other side; NaN where fewer than 3 values.  (From the nearest by distance alone, a bin at a steep
    band edge beside a flagged block took all six from the edge's low side, 28-79x below it, and clean
    channels were flagged: a review.)

    Without ``usable`` every bin with a finite r counts.  In the band's interior, with every bin usable,
    this is the running median of the 7 bins centred on the bin (:func:`_running_nanmedian`); a bin
    near the band edge or a flagged block takes its 6 from further along the band.  Before, the 7-bin
    running median counted bins whose solutions were flagged: in a band-edge RFI block, the flagged RFI
    channels' chi2 / nDOF (~5000-7000) made the two channels left with RFI and unflagged solutions
    (~5200) look ordinary, and the outlier test never fired (a review, 60 antennas x 4096 channels)."""
    r = np.asarray(r, float)
    n_f, n_t = r.shape
    ok = np.isfinite(r) if usable is None else (np.asarray(usable, bool) & np.isfinite(r))
    out = np.full(r.shape, np.nan)
    k = N_NEIGHBOURS
    step = max(1, int(chunk_elems) // max(1, n_f * 2 * k))
    for t0 in range(0, n_t, step):
        sl = slice(t0, min(n_t, t0 + step))
        rr, oo = r[:, sl], ok[:, sl]
        m = rr.shape[1]
        # each time's usable bins in channel order, padded with k missing (-1) on each side
        order = np.argsort(~oo, axis=0, kind="stable")
        comp = np.where(np.arange(n_f)[:, None] < oo.sum(axis=0)[None], order, -1)
        comp = np.concatenate([np.full((k, m), -1), comp, np.full((k, m), -1)])
        n_le = np.cumsum(oo, axis=0)                    # usable bins at or below f
        n_lt = n_le - oo                                # usable bins strictly below f
        # the k nearest usable bins below and the k above, nearest first (-1: none)
        below = np.stack([np.take_along_axis(comp, n_lt + k - 1 - j, axis=0) for j in range(k)], axis=-1)
        above = np.stack([np.take_along_axis(comp, n_le + k + j, axis=0) for j in range(k)], axis=-1)
        # HALF_WINDOW from each side where the band has them, the rest from the other side: from the
        # nearest by distance alone, a bin at a steep band edge beside a flagged block took all six
        # from the edge's low side, and clean channels 28-79x above that were flagged (a review)
        nb, na = (below >= 0).sum(-1), (above >= 0).sum(-1)
        tb, ta = np.minimum(nb, HALF_WINDOW), np.minimum(na, HALF_WINDOW)
        xb = np.minimum(nb - tb, k - tb - ta)
        xa = np.minimum(na - ta, k - tb - ta - xb)
        j = np.arange(k)
        near = np.concatenate([np.where(j < (tb + xb)[..., None], below, -1),
                               np.where(j < (ta + xa)[..., None], above, -1)], axis=-1)
        vals = np.where(near >= 0, rr[np.maximum(near, 0), np.arange(m)[None, :, None]], np.nan)
        vals = np.concatenate([rr[..., None], vals], axis=-1)
        n_ok = np.isfinite(vals).sum(axis=-1)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)         # (all-NaN rows: NaN, below)
            med = np.nanmedian(vals, axis=-1)
        out[:, sl] = np.where(n_ok >= 3, med, np.nan)
    return out


def local_excess(rchi2, dof=None, power=None, weight=None, usable=None, ref=None):
    """(n_f, n_t) float >= 1: the factor a freq bin's SNR is divided by the square root of (module
    docstring: misfit local to a bin counts as noise, as CASA's k2 counts all misfit); 1 where the bin
    has none (also with < 4 bins, or no data).

    r is the bin's chi2 / nDOF and ref the median of its own and 6 nearby bins' with ``usable``
    solutions (n_f, n_t bool; default: every bin with a chi2; ``ref``: that median computed by the
    caller, for both this and :func:`chi2_outlier_bins`), :func:`neighbour_median` -- in the
    band's interior with every bin usable the running median of the 7 bins around it.
    Where ref >= 1 the neighbours hold thermal noise (1) and a shared
    misfit ``ref - 1``, which a bin expects in proportion to its signal per degree of freedom relative
    to its neighbours'.  Where ref < 1 (a WEIGHT scale that overstates the noise) the bin expects ref.
    Two readings, the larger factor kept (each only where r over what it expects exceeds
    :data:`RCHI2_EXCESS` and, with the bins' ``dof`` (nDOF, (n_f, n_t)) given,
    ``1 + RCHI2_SIGMAS sqrt(2 / nDOF)``: chi2 / nDOF's noise, a cell of few antennas fluctuates past 2
    by chance, a review):

    (A) ratio: the bin expects ``x_w = 1 + (ref - 1) w`` (w: its mean sample weight ``weight`` over
        its neighbours' running median, exact: an honestly weighted channel with 4x the weight has
        4x the shared misfit, a review; 1 without ``weight``); its k2 is its neighbours' capped k2
        times ``r / x_w`` -- CASA's k2 where ref <= 1 -- over ``min(r, 1)``, what :func:`snr` used.
        Without ``weight`` this is the first version of this rule (session 43).
    (B) additive: the bin expects ``x = 1 + (ref - 1) w q`` (q: the gains' power ``power``,
        :func:`gain_power`, over its running median, bounded by the two adjacent bins' -- a gain
        solved from one bin's RFI is no measure of its signal; a ripple's peaks expect more); its k2
        is r less the shared misfit, ``r - (ref - 1) w q``, over ``min(r, 1)``: RFI adds its power to
        a bin whatever the neighbours' misfit (a bandpass over drifting gains, ref 9 and r 56: k2 48,
        where (A) gives 6.2 and kept hands 5.2-5.4 sigma off).

    (B) alone let coherent RFI in 2-3 adjacent channels, which raises their gains' power together, hide
    its excess (a review: up to 4 more hands beyond 5 sigma than the first rule); (A) alone is the
    first rule with the weights.  Their maximum is never below either."""
    rchi2 = np.asarray(rchi2, float)
    out = np.ones(rchi2.shape)
    if rchi2.shape[0] < 4:
        return out
    r = np.where(np.isfinite(rchi2), rchi2, np.nan)
    ref = neighbour_median(r, usable) if ref is None else ref
    w = np.ones(r.shape) if weight is None else _relative(weight, r)
    w = np.where(np.isfinite(w), w, 1.0)
    p = w if power is None else w * _bounded_by_adjacent(_relative(power, r))
    gate = np.full(r.shape, RCHI2_EXCESS)
    if dof is not None:
        d = np.asarray(dof, float)
        gate = np.maximum(gate, np.where(d > 0, 1.0 + RCHI2_SIGMAS * np.sqrt(2.0 / d), np.inf))
    with np.errstate(invalid="ignore", divide="ignore"):
        # (A) the ratio to what the bin expects from the weights alone, as CASA's k2 relative to the
        # neighbours' capped k2 (never less than the first rule)
        x_w = np.where(ref >= 1.0, 1.0 + np.maximum(ref - 1.0, 0.0) * w, ref)
        e_w = r / x_w
        fac_a = np.minimum(ref, 1.0) * e_w / np.minimum(r, 1.0)
        ok_a = np.isfinite(e_w) & (e_w > gate) & np.isfinite(fac_a)
        # (B) additive: what the bin has beyond the shared misfit it expects from its signal
        shared = np.maximum(ref - 1.0, 0.0) * p
        x = np.where(ref >= 1.0, 1.0 + shared, ref)
        e = r / x
        fac_b = (r - shared) / np.minimum(r, 1.0)
        ok_b = np.isfinite(e) & (e > gate) & np.isfinite(fac_b)
    fac = np.maximum(np.where(ok_a, fac_a, 1.0), np.where(ok_b, fac_b, 1.0))
    ok = fac > 1.0
    out[ok] = fac[ok]
    return out


def _relative(v, r):
    """(n_f, n_t): ``v`` over its running median along frequency (bins with a finite r and v > 0); 1
    elsewhere."""
    v = np.asarray(v, float)
    v = np.where(np.isfinite(r) & (v > 0), v, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = v / _running_nanmedian(v.T).T
    return np.where(np.isfinite(rel), rel, np.nan)


def _bounded_by_adjacent(p):
    """(n_f, n_t): each bin's ``p`` (NaN = unknown) kept within the range of its two adjacent bins'
    (one when the other is unknown; 1 where neither is, or the bin's own is unknown)."""
    pad = np.pad(p, ((1, 1), (0, 0)), constant_values=np.nan)
    lo_n, hi_n = pad[:-2], pad[2:]
    with np.errstate(invalid="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo = np.nanmin(np.stack([lo_n, hi_n]), axis=0)
            hi = np.nanmax(np.stack([lo_n, hi_n]), axis=0)
    out = np.where(np.isfinite(lo), np.clip(p, lo, hi), p)
    return np.where(np.isfinite(out), out, 1.0)


def gain_power(jones, flags):
    """(n_f, n_t): a gain term's signal power per freq bin and time, relative (for
    :func:`local_excess`): the mean over pairs of unflagged antennas of |g_a|^2 |g_b|^2 (|g|^2 the mean
    of the two hands: a baseline's power); NaN where fewer than two antennas have a finite unflagged
    gain.  jones (n_ant, n_f, n_t, 2, 2), flags (n_ant, n_f, n_t) bool."""
    g2 = 0.5 * (np.abs(jones[..., 0, 0]) ** 2 + np.abs(jones[..., 1, 1]) ** 2)
    ok = np.isfinite(g2) & ~flags
    g2 = np.where(ok, g2, 0.0)
    n = ok.sum(axis=0)
    s1, s2 = g2.sum(axis=0), (g2 ** 2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= 2, (s1 * s1 - s2) / (n * (n - 1.0)), np.nan)


def chi2_outlier_bins(rchi2, usable=None, ref=None):
    """(n_f, n_t) bool: freq bins whose chi2 / nDOF is an outlier against its neighbours (module
    docstring); rchi2 (n_f, n_t), NaN = no data.  ``usable`` (n_f, n_t) bool: the bins with an
    unflagged solution, the only ones the reference is taken from (:func:`neighbour_median`; default:
    every bin with a chi2); ``ref``: that median computed by the caller."""
    rchi2 = np.asarray(rchi2, float)
    n_f = rchi2.shape[0]
    if n_f < 4:
        return np.zeros(rchi2.shape, bool)
    r = np.where(np.isfinite(rchi2), rchi2, np.nan)
    ref = neighbour_median(r, usable) if ref is None else ref
    with np.errstate(invalid="ignore"):
        bad = np.isfinite(r) & np.isfinite(ref) & (r > RCHI2_RATIO * ref)
    return bad


def outlier_channels(jones, flags, snr_vals, threshold=OUTLIER_SIGMA, cell_ref=None):
    """Bandpass channel outliers (module docstring).

    Parameters
    ----------
    jones : (n_ant, n_f, n_t, 2, 2) complex; flags : (n_ant, n_f, n_t) bool, or (n_ant, n_f, n_t, 2)
        per hand (:mod:`alakazam.core.handflags`): then each hand is tested on its own unflagged bins
        and the result is per hand
    snr_vals : (n_ant, n_f, n_t, 2) SNR per pol (0 = unknown)
    threshold : float (robust sigmas, default OUTLIER_SIGMA; <= 0 disables)
    cell_ref : (n_f, n_t) or (n_f, n_t, 2) int, optional
        The reference antenna each cell (and hand) was solved with (``solver_stats/ref_ant``,
        ``ref_ant_hand``).  The check runs before the cells are brought to one reference
        (:mod:`alakazam.solvers.rereference`): a bin solved with another antenna than most bins of its
        time (the reference antenna flagged in that channel) has every phase in that antenna's gauge, a
        jump that is no outlier.  Such bins are left out of the running median and tested on their
        amplitude alone (``| |g| - |ref| | / |ref|``, gauge-free).

    Returns
    -------
    (n_ant, n_f, n_t) bool (or (n_ant, n_f, n_t, 2) with per-hand flags): the newly flagged solutions.
    """
    import warnings

    flags = np.asarray(flags, bool)
    per_hand = flags.ndim == 4
    n_ant, n_f, n_t = flags.shape[:3]
    new = np.zeros(flags.shape, bool)
    if not threshold or threshold <= 0 or n_f < 4:
        return new
    # (n_ant, n_t, 2, n_f): the frequency axis last
    g = np.stack([jones[..., 0, 0], jones[..., 1, 1]], axis=-1).transpose(0, 2, 3, 1)
    unflagged = (~flags.transpose(0, 2, 3, 1) if per_hand else (~flags.transpose(0, 2, 1))[:, :, None, :])
    ok = unflagged & np.isfinite(g) & (g != 0)
    other = _other_gauge(cell_ref, ok, n_t, n_f)          # (n_t, 2, n_f): bins in another gauge
    ok_ph = ok & ~other
    gr = np.where(ok_ph, g.real, np.nan)
    gi = np.where(ok_ph, g.imag, np.nan)
    ref = _running_nanmedian(gr) + 1j * _running_nanmedian(gi)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        e = np.where(other, np.abs(np.abs(g) - np.abs(ref)), np.abs(g - ref)) / np.abs(ref)
        good = ok & np.isfinite(e)
        sig = MAD_TO_SIGMA * np.nanmedian(np.where(good & ~other, e, np.nan), axis=-1, keepdims=True)
        sv = snr_vals.transpose(0, 2, 3, 1)
        rel = np.where(sv > 0, 1.0 / sv, 0.0)
        lim = np.maximum(threshold * np.maximum(sig, rel), OUTLIER_REL)
        bad = good & (good.sum(axis=-1, keepdims=True) >= 4) & (e > lim)
    if per_hand:
        return bad.transpose(0, 3, 1, 2)
    return bad.any(axis=2).transpose(0, 2, 1)


def _other_gauge(cell_ref, ok, n_t, n_f):
    """(n_t, 2, n_f) bool: the bins whose reference differs from the one most of the time's bins with a
    solution used, per hand (:func:`outlier_channels`); all False without ``cell_ref``."""
    out = np.zeros((n_t, 2, n_f), bool)
    if cell_ref is None:
        return out
    r = np.asarray(cell_ref)
    r = np.broadcast_to(r[..., None], r.shape + (2,)) if r.ndim == 2 else r     # (n_f, n_t, 2)
    r = r.transpose(1, 2, 0)                                                      # (n_t, 2, n_f)
    has = ok.any(axis=0)                                                          # (n_t, 2, n_f)
    for t in range(n_t):
        for h in range(2):
            used = r[t, h][has[t, h]]
            if used.size:
                vals, n = np.unique(used, return_counts=True)
                out[t, h] = r[t, h] != vals[np.argmax(n)]
    return out
