"""What every backend shares: data presence, reference choice, initial guesses, referencing, flags,
params -> Jones, and the final cost (one definition for all backends)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import AlakazamError
from ..jones import terms
from . import SolveResult, cross_phase

TWO_PI_NS = 2.0 * np.pi * 1e-9


def antennas_with_data(batch, jones_type, bl_has=None):
    """(n_cell, n_ant) bool: the antenna has weight > 0 on a correlation the term uses (``bl_has``:
    :func:`alakazam.solvers.quality.baselines_with_data` of the batch's weights, when already known)."""
    from .quality import baselines_with_data, count_per_antenna

    if bl_has is None:
        bl_has = baselines_with_data(batch.weight, terms.get(jones_type).corr)      # (n_cell, n_bl)
    return count_per_antenna(bl_has, batch.ant1, batch.ant2, batch.n_ant) > 0


#: :func:`choose_ref`: antennas whose amounts of data differ by less than this fraction are tied
TIE_REL = 1e-9


def choose_ref(has, requested, amount=None):
    """Reference per cell (n_cell,): the first antenna of ``requested`` (an index or a list in priority
    order) that has data in the cell; if none has, the antenna with the most data (largest ``amount``,
    (n_cell, n_ant), e.g. its summed weight; lowest index on ties -- amounts within a relative
    :data:`TIE_REL` of the largest, so that rounding (e.g. of weights scaled by a phase-only pre-apply,
    |g|^2 = 1 +- 1 ulp) never decides -- or without ``amount``).  A cell without
    any data keeps the first choice (it is flagged anyway).  :mod:`alakazam.solvers.rereference` then
    brings the cells that did not use the first choice to one phase reference."""
    req = [int(r) for r in np.atleast_1d(requested)]
    ref = np.full(has.shape[0], req[0], np.int32)
    for c in range(has.shape[0]):
        if has[c, req[0]] or not has[c].any():
            continue
        avail = [r for r in req[1:] if has[c, r]]
        if avail:
            ref[c] = avail[0]
        elif amount is not None:
            a = np.where(has[c], amount[c], -np.inf)
            ref[c] = int(np.argmax(a >= a.max() - TIE_REL * abs(a.max())))
        else:
            ref[c] = int(np.argmax(has[c]))
    return ref


def antenna_weight(batch, jones_type):
    """(n_cell, n_ant) summed weight of each antenna's baselines on the correlations the term uses."""
    corr = list(terms.get(jones_type).corr)
    w = batch.weight[..., corr].sum(axis=(2, 3))                   # (n_cell, n_bl)
    out = np.zeros((batch.n_cell, batch.n_ant))
    np.add.at(out, (slice(None), batch.ant1), w)
    np.add.at(out, (slice(None), batch.ant2), w)
    return out


def initial_guess(jones_type, batch, ref):
    """Initial params of every cell: the term module's ``initial_guess(batch, ref)``."""
    return terms.get(jones_type).module.initial_guess(batch, ref)


def chi2(jones_type, params, batch, J=None):
    """Final cost per cell: sum w |V - model|^2 over the correlations the term uses (a term module
    may provide a compiled ``chi2`` with the same maths as its ``model_vis``; a term whose Jones
    matrix is constant over a cell's samples, given ``J`` = ``to_jones(params)`` with non-finite
    entries nowhere, is summed from J in one compiled pass, :func:`alakazam.solvers.quality.chi2_from_jones`;
    tests pin both against ``model_vis``)."""
    tt = terms.get(jones_type)
    mod = tt.module
    if hasattr(mod, "chi2"):
        return mod.chi2(params, batch)
    if J is not None and not tt.channel_sampled and np.isfinite(J).all():
        from .quality import chi2_from_jones
        return chi2_from_jones(jones_type, J, batch)
    mv = mod.model_vis(params, batch)
    corr = list(terms.get(jones_type).corr)
    r = batch.vis[..., corr] - mv[..., corr]
    return (batch.weight[..., corr] * (r.real ** 2 + r.imag ** 2)).sum(axis=(1, 2, 3))


def reference(jones_type, params, ref, batch=None):
    """The term module's ``reference(params, ref)`` (its gauge; global types have none); a module whose
    gauge depends on the batch (D: ``leakage_gauge``) declares REFERENCE_USES_BATCH and gets it."""
    mod = terms.get(jones_type).module
    if not hasattr(mod, "reference"):
        return params.copy()
    if getattr(mod, "REFERENCE_USES_BATCH", False):
        return mod.reference(params, ref, batch)
    return mod.reference(params, ref)


def to_jones(jones_type, params, batch):
    """(J (n_cell, n_ant, 2, 2), delay (n_cell, n_ant, 2) or None): the term module's ``to_jones``."""
    return terms.get(jones_type).module.to_jones(params, batch)



def unit_information(batch):
    """``(copy, scale)``: a shallow copy of ``batch`` whose weights are divided, per cell, by ``scale`` =
    the mean of w |M|^2 over the cell's samples with w > 0 (1 where there is none), and that scale
    (n_cell,).  For the backends whose convergence tests are absolute (``SCALE_SENSITIVE_TOLERANCES``:
    ceres's gradient_tolerance, jax's max |J^T r|): a cell's minimum does not move when its weights are
    scaled, but those tests stop the fit near its start when w |M| |V| is small -- WEIGHT x 1e-22 left
    ceres's G 1070 sigma and jax's 275 sigma off, converged and unflagged (review 55b), where numba and
    scipy (relative tests) were unchanged.  Weights and model amplitudes of any unit are then alike to
    them.  D's gauge prior, proportional to the weights, scales with them."""
    import copy

    w = np.asarray(batch.weight, np.float64)
    m = np.asarray(batch.model)
    n = batch.n_cell
    with np.errstate(invalid="ignore", over="ignore"):
        ok = (w > 0) & np.isfinite(w) & np.isfinite(m)
        info = np.where(ok, w * (m.real ** 2 + m.imag ** 2), 0.0).reshape(n, -1).sum(axis=1)
        count = ok.reshape(n, -1).sum(axis=1)
        scale = np.where((count > 0) & (info > 0) & np.isfinite(info), info / np.maximum(count, 1), 1.0)
    out = copy.copy(batch)
    out.weight = w / scale.reshape((n,) + (1,) * (w.ndim - 1))
    return out, scale


def model_at_data_scale(batch):
    """A shallow copy of ``batch`` whose model is multiplied, per cell, by the real r = sum w |V| |M| /
    sum w |M|^2 over its parallel hands (1 where that is not a positive number).  For the fits whose
    model amplitude does not follow the data -- K, phase-only G and T -- the cost is
    const + r^2 sum w |M|^2 - 2 r sum w Re(conj(model) V): its minimum does not move with r, but with DATA
    far from MODEL_DATA's scale (raw correlator units) the constant dwarfs what the fit changes, and the
    backends whose convergence tests are relative to the cost or absolute (``MODEL_SCALE_SENSITIVE``:
    scipy, ceres, jax) stopped early -- phase-only SNRs 20% low with DATA 1e-4 of the model (review 56b's
    case, tests/test_data_scale.py).  numba's fits are the same for any r and take the batch as it is."""
    import copy

    v = np.asarray(batch.vis)[..., [0, 3]]
    m = np.asarray(batch.model)[..., [0, 3]]
    w = np.asarray(batch.weight)[..., [0, 3]]
    n = batch.n_cell
    with np.errstate(invalid="ignore", over="ignore"):
        am = np.abs(m)
        ok = (w > 0) & np.isfinite(w) & np.isfinite(am) & np.isfinite(v)
        num = np.where(ok, w * np.abs(v) * am, 0.0).reshape(n, -1).sum(axis=1)
        den = np.where(ok, w * am * am, 0.0).reshape(n, -1).sum(axis=1)
        r = num / den
    r = np.where((den > 0) & np.isfinite(r) & (r > 0), r, 1.0)
    out = copy.copy(batch)
    out.model = np.asarray(batch.model) * r.reshape((n,) + (1,) * (batch.model.ndim - 1))
    return out


def amplitudes_only(batch):
    """calmode 'a' (CASA's apmode 'A'): a shallow copy of ``batch`` whose data keep their amplitudes and
    take the model's phases, V' = |V| M / |M| (|V| where M = 0).  CASA's gaincal makes each averaged
    sample amplitude-only the same way (SolveDataBuffer::enforceAPonData: V / (V / |V|); weights
    unchanged) before it fits real gains, so data whose phases are not calibrated still give their
    amplitudes.  alakazam fitted the real gains to the complex data: without a phase solution pre-applied
    every backend stored amplitudes 0.06-1.2 for a truth of 0.93-1.25, SNR 250-3900, unflagged (review
    55b).  For a real positive model this is CASA's |V| exactly; with the model's phase a resolved or
    offset calibrator's amplitudes are fitted against its own phases.  Like CASA, a sample's modulus
    carries the noise bias sqrt(|V|^2 + sigma^2) at low SNR per sample."""
    import copy

    v = np.asarray(batch.vis)
    m = np.asarray(batch.model)
    with np.errstate(invalid="ignore", divide="ignore"):
        am = np.abs(m)
        unit = np.where(am > 0, m / np.where(am > 0, am, 1.0), 1.0)
    out = copy.copy(batch)
    out.vis = np.abs(v) * unit
    return out


def phases_only(batch, corr=(0, 1, 2, 3)):
    """CASA's apmode 'P' (SolveDataBuffer::enforceAPonData: each averaged sample divided by its amplitude,
    its weight multiplied by the amplitude squared), in alakazam's form with the model kept: a shallow copy
    of ``batch`` whose data take the model's amplitudes, V' = V |M| / |V|, with weights
    w' = w |V|^2 / |M|^2 (0 where V or M is 0 or not finite), so that w' |V' - g_a M conj(g_b)|^2 is CASA's
    w |V|^2 |V / |V| - g_a conj(g_b) M / |M||^2.  What the SNR of a fit whose model amplitude does not
    follow the data -- K, phase-only G and T -- is computed on (:func:`quality.phase_only_snr`): its
    chi2 then holds the phase scatter alone, and its sensitivity sum w |V|^2, the data's own power.
    Only the correlations ``corr`` are made so; the others get weight 0 (the terms it serves use the
    parallel hands)."""
    import copy

    from .quality import phase_only_arrays

    vis, weight = phase_only_arrays(batch.vis, batch.model, batch.weight, corr)
    out = copy.copy(batch)
    out.vis, out.weight = vis, weight
    return out


def run(jones_type, batch, backend_module, opts, backend_name) -> SolveResult:
    """Solve every cell of ``batch``; in the solve flow (``opts.flag_nonconverged``) a weak cell is solved
    again from a more thorough initial guess (:mod:`alakazam.solvers.weak_cells`), and a cell that did
    not converge, or whose reference has no signal, is solved again without the antennas whose data
    carry no signal (:mod:`alakazam.solvers.nosignal`)."""
    if opts.amp_only and terms.get(jones_type).gain:
        batch = amplitudes_only(batch)
    res = _run_once(jones_type, batch, backend_module, opts, backend_name)
    if opts.flag_nonconverged:
        from ..core.handflags import per_hand
        from . import nosignal, weak_cells

        hands = bool(per_hand(jones_type))

        # minblperant counts the baselines with unflagged data, as CASA's: the first solve applied it
        # (``batch.weight`` holds its cuts; its reasons are kept, nosignal._splice), so the solves again
        # do not count it again -- without the antennas the no-signal rounds take out, one dead antenna of
        # five left the others three baselines each and minblperant 4 flagged the whole scan, where CASA
        # keeps them (review 56c; the weak-cell search inside those rounds likewise)
        again = dataclasses.replace(opts, min_bl_per_ant=0)

        def searched(sub):
            return _run_once(jones_type, weak_cells.searching(jones_type, sub), backend_module, again,
                             backend_name)

        def solved(sub):        # the no-signal re-solves: as the first solve, with the weak-cell search
            r = _run_once(jones_type, sub, backend_module, again, backend_name)
            return weak_cells.solve_again(jones_type, sub, r, searched, hands, opts.min_snr)

        res = weak_cells.solve_again(jones_type, batch, res, searched, hands, opts.min_snr)
        if nosignal.cells_to_check(res, opts.min_snr).any():
            res = nosignal.resolve(jones_type, batch, res, solved, hands, opts.min_snr)
    return res


def _late_reason(extra, late):
    """In place: the antennas ``late`` (n_cell, n_ant) flagged after the solve because the unflagged
    antennas' baselines do not fix their amplitude (quality.undetermined_after_flags) get that reason, the
    first of quality.REASONS after minblperant, and no later one."""
    extra["amplitude_undetermined"] = np.asarray(extra["amplitude_undetermined"], bool) | (
        late & ~np.asarray(extra["minblperant"], bool))
    for k in ("delay_undetermined", "minsnr", "nonconverged"):
        if isinstance(extra.get(k), np.ndarray):
            extra[k] = extra[k] & ~extra["amplitude_undetermined"]


def _run_once(jones_type, batch, backend_module, opts, backend_name) -> SolveResult:
    batch.vis = np.ascontiguousarray(batch.vis, np.complex128)
    batch.model = np.ascontiguousarray(batch.model, np.complex128)
    batch.weight = np.ascontiguousarray(batch.weight, np.float64)
    batch.freq = np.ascontiguousarray(batch.freq, np.float64)
    batch.ant1 = np.ascontiguousarray(batch.ant1, np.int64)
    batch.ant2 = np.ascontiguousarray(batch.ant2, np.int64)
    tt = terms.get(jones_type)
    from . import quality

    bl_has = quality.baselines_with_data(batch.weight, tt.corr)     # one pass for the checks and counts
    # a batch without any data (a calibrator scan flagged whole, solved per scan) is not an error: its
    # solutions come out flagged, as for every other type; the checks are for data that lack the signal
    others = [c for c in range(4) if c not in tt.corr]
    some = bool(bl_has.any() or (others and quality.baselines_with_data(batch.weight, others).any()))
    # KC, CP: the model's cross-hand power sums, for the polarised-model check and again for the SNR
    # (quality.snr) unless minblperant changes the weights in between (one pass instead of two)
    cross_sums = cross_phase.power_pass(batch) if tt.is_global and some else None
    if cross_sums is not None:
        cross_phase.check_polarised(batch, jones_type, cross_sums)
    if tt.uses_cross and some and not (bl_has.any() if tuple(tt.corr) == (1, 2)
                                       else quality.baselines_with_data(batch.weight, (1, 2)).any()):
        raise AlakazamError(f"{jones_type} needs the cross hands (pq, qp): all cross-hand data are flagged "
                            "or absent in the selection")
    from ..core.handflags import HAND_CORR
    from ..core.handflags import per_hand as _per_hand
    hands = _per_hand(jones_type)     # K, G: presence, minblperant, reference, flags per hand (handsolve.py)
    d_und = None
    if hands:
        from . import handsolve
        if tt.freq == "delay" and some:
            d_und = np.zeros((batch.n_cell, batch.n_ant, 2), bool)
        had_h = dropped_h = None
        while True:
            if d_und is not None:
                # an antenna (hand) whose data lie at one frequency has no delay (quality.delay_undetermined):
                # its samples in that hand leave its (delay, phase) free along a line, which the fit did not
                # settle -- the other antennas' delays came out 0.2-2 ns off (a review) where the hand
                # flagged whole gave 0.002 ns; they are taken out of the solve, as minblperant's are.  Until
                # nothing changes: taking one out can leave another at one frequency (a second review: left
                # unflagged, 9.6 ns off)
                while True:
                    # (delay_undetermined is True for a hand without data too: only hands with data here)
                    new = (quality.delay_undetermined(batch, tt.corr, True) & handsolve.with_data(batch)
                           & ~d_und)
                    if not new.any():
                        break
                    d_und |= new
                    handsolve.take_out(batch, new)
            h_had, h_dropped, has_h = handsolve.presence(batch, jones_type, opts.min_bl_per_ant)
            had_h = h_had if had_h is None else had_h
            dropped_h = h_dropped if dropped_h is None else (dropped_h | h_dropped)
            if d_und is None or not h_dropped.any():
                break
            # minblperant took antennas out: another may now be left at one frequency (a second review: a
            # regression of the first version, which tested once, before minblperant) -- test again
        had, dropped, has = had_h.any(-1), dropped_h.any(-1), has_h.any(-1)
    else:
        had = antennas_with_data(batch, jones_type, bl_has)
        dropped = quality.drop_sparse_antennas(batch, jones_type, opts.min_bl_per_ant, bl_has)  # minblperant
        has = antennas_with_data(batch, jones_type) if dropped.any() else had
    # K, KC: a cell whose data lie at one frequency has no delay (quality.delay_undetermined).  K's hands
    # of that kind were taken out above: without data, they reference nothing (as refant, its aliased
    # delay was every other antenna's common offset per hand, 129.6 / 53.7 ns: a review)
    dund = None
    if hands and d_und is not None:
        dund = d_und
    elif tt.freq == "delay" and some and not hands:
        dund = quality.delay_undetermined(batch, tt.corr, False)[:, None] & has
    ref_has = has
    if hands:
        # the reference of a cell has both hands where some antenna has: a reference that lost one feed
        # hands both over to the fallback, which the step's re-referencing then bridges back in both hands
        # alike (CASA takes the next refant for both pols).  With the lost hand alone solved with the
        # fallback and bridged, the bridge's interpolation error fell in that hand only: a p - q phase
        # error of ~40 deg in the cells of one scan, the corrected cross hands of a polarised calibrator
        # at 4.2-8.7 x the noise (review 55c)
        both = has_h.all(-1)
        ref_has = np.where(both.any(axis=1)[:, None], both, has)
    ref = choose_ref(ref_has, batch.ref_ants or batch.ref_ant,
                     antenna_weight(batch, jones_type) if not ref_has[:, batch.ref_ant].all() else None)
    # G / T amplitudes (calmode 'ap' / 'a'): an antenna whose baselines close no odd cycle (an array of
    # two antennas) has |g| undetermined; flagged below whatever minsnr is (quality module docstring)
    undet = None
    if tt.gain and not opts.phase_only and some:
        if hands:
            undet = np.stack([quality.amplitude_undetermined(quality.baselines_with_data(batch.weight, (c,)),
                                                             batch.ant1, batch.ant2, batch.n_ant)
                              for c in HAND_CORR], axis=-1) & has_h
        else:
            undet = quality.amplitude_undetermined(quality.baselines_with_data(batch.weight, tt.corr),
                                                   batch.ant1, batch.ant2, batch.n_ant) & has

    phase_fit = quality.data_snr_applies(jones_type, opts.phase_only)

    def solve_cells(b, init, r):
        scale = None
        rescaled = phase_fit and getattr(backend_module, "MODEL_SCALE_SENSITIVE", False)
        if rescaled:            # K, phase-only G / T: the same fit, its cost's constant at the data's scale
            b = model_at_data_scale(b)
        if getattr(backend_module, "SCALE_SENSITIVE_TOLERANCES", False):
            b, scale = unit_information(b)
        if hasattr(tt.module, "solve_with"):      # a type solved through another type's backend code (T)
            out = tt.module.solve_with(backend_module, b, init, r, opts)
        else:
            out = backend_module.solve_params(jones_type, b, init, r, opts)
        if rescaled:                            # a cost of the rescaled model: computed again below
            out = (*out[:3], None)
        elif scale is not None:                 # the cost in the batch's own weights
            out = (*out[:3], np.asarray(out[3], np.float64) * scale)
        return out

    if hands:       # a hand the cell's reference has no data in: out of the first solve, solved below
        todo, saved = handsolve.hands_to_redo(batch, has_h, ref)
    init = initial_guess(jones_type, batch, ref)
    params, n_iter, conv, cost = solve_cells(batch, init, ref)
    params = reference(jones_type, params, ref, batch)
    if getattr(tt.module, "REFERENCE_MOVES_SOLUTION", False):
        cost = None                   # the solver's cost is the free fit's (D), not the re-referenced one's
    if hands and todo:
        handsolve.restore(batch, todo, saved)
        cost = None
    ref_hand = None
    if hands:       # a hand the cell's reference has no data in: solved again with the hand's own
        ref_hand, redo = handsolve.solve_hands(jones_type, batch, backend_module, opts, has_h, ref,
                                               solve_cells)
        if redo:
            n_iter, conv = np.array(n_iter), np.array(conv, bool)
            for h, cells, p2, it2, cv2 in redo:
                params[cells, :, h] = p2[:, :, h]
                n_iter[cells] = np.maximum(n_iter[cells], it2)
                conv[cells] &= cv2
    J, delay = to_jones(jones_type, params, batch)
    if tt.is_global:
        flags = np.repeat(~has.any(axis=1)[:, None], batch.n_ant, axis=1)
    else:
        flags = ~has
    det = J[..., 0, 0] * J[..., 1, 1] - J[..., 0, 1] * J[..., 1, 0]
    flags |= ~np.isfinite(J).all(axis=(-1, -2)) | (det == 0)
    if cost is None or not getattr(backend_module, "COST_IS_CHI2", False):
        cost = chi2(jones_type, params, batch, J)
    conv = np.asarray(conv, bool)
    if dropped.any():               # minblperant zeroed weights since the power pass
        cross_sums = None
    rchi2_phase = None          # K, phase-only G / T: the phase-only fit's chi2 / nDOF (akexport's scale)
    snr, rchi2 = quality.snr(jones_type, batch, J, cost, has, opts.phase_only,
                             has_hands=has_h if hands else None,   # DOF: each hand where it has data
                             cross_sums=cross_sums)
    if quality.data_snr_applies(jones_type, opts.phase_only) and some:
        # K, phase-only G / T: on the data made phase-only, as CASA's apmode 'P' (quality.phase_only_snr)
        snr, rchi2_phase = quality.phase_only_snr(jones_type, batch, params, J, has, opts.phase_only,
                                                  has_h if hands else None, with_rchi2=True)
    if tt.gain:         # the mean sample weight per cell (quality.local_excess: the shared misfit's scale)
        wc = batch.weight[..., list(tt.corr)]
        n_pos = (wc > 0).sum(axis=(1, 2, 3))
        with np.errstate(invalid="ignore", divide="ignore"):
            wmean = np.where(n_pos > 0, np.where(wc > 0, wc, 0.0).sum(axis=(1, 2, 3)) / n_pos, np.nan)
    if hands:
        pol, ex = handsolve.flags(J, has_h, snr, conv, opts, dropped_h & had_h, undet, dund)
        if undet is not None:       # amplitudes that only the hands without signal seemed to fix
            from .nosignal import NOISE_S
            late = np.stack([quality.undetermined_after_flags(
                quality.baselines_with_data(batch.weight, (c,)), batch.ant1, batch.ant2, batch.n_ant,
                pol[..., h], snr[..., h] < NOISE_S) for h, c in enumerate(HAND_CORR)], axis=-1)
            if late.any():
                pol |= late
                _late_reason(ex, late.any(-1))
        flags = pol.any(-1)
        from ..core.handflags import nan_flagged
        nan_flagged(J, delay, pol)
        extra = {"snr": snr, "rchi2": rchi2, **ex, "pol_flags": pol, "ref_ant_hand": ref_hand}
        if tt.gain:
            extra["wmean"] = wmean
        if rchi2_phase is not None:
            extra["rchi2_phase"] = rchi2_phase
        return SolveResult(jones=J, flags=flags, delay=delay, params=params, converged=conv,
                           n_iter=np.asarray(n_iter, np.int32), cost=np.asarray(cost, float),
                           ref_ant=ref.astype(np.int32), extra=extra)
    # each flagged solution has one reason (quality.REASONS: the first that applies)
    undet = np.zeros_like(flags) if undet is None else undet & ~flags
    flags |= undet
    dund = np.zeros_like(flags) if dund is None else dund & ~flags
    flags |= dund
    low = np.zeros_like(flags)
    if opts.min_snr and opts.min_snr > 0:
        low = (snr < float(opts.min_snr)).any(axis=2) & ~flags
    nonconv = (~conv[:, None] & ~flags & ~low) if opts.flag_nonconverged else np.zeros_like(flags)
    extra = {"snr": snr, "rchi2": rchi2, "minblperant": dropped & had, "amplitude_undetermined": undet,
             "delay_undetermined": dund, "minsnr": low, "nonconverged": nonconv}
    if tt.gain:
        extra["wmean"] = wmean
    if rchi2_phase is not None:
        extra["rchi2_phase"] = rchi2_phase
    flags |= low | nonconv
    if tt.gain and not opts.phase_only and some:    # amplitudes only antennas without signal seemed to fix
        from .nosignal import NOISE_S
        late = quality.undetermined_after_flags(quality.baselines_with_data(batch.weight, tt.corr),
                                                batch.ant1, batch.ant2, batch.n_ant, flags,
                                                (snr < NOISE_S).all(axis=-1))
        if late.any():
            flags |= late
            _late_reason(extra, late)
    J[flags] = np.nan
    if delay is not None:
        delay[flags] = np.nan
    return SolveResult(jones=J, flags=flags, delay=delay, params=params,
                       converged=conv, n_iter=np.asarray(n_iter, np.int32),
                       cost=np.asarray(cost, float), ref_ant=ref.astype(np.int32), extra=extra)
