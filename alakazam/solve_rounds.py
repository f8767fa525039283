"""``iterations: N`` of a solve block: rounds after the first (docs/conventions.md).

Each further round re-solves every step of the block, in order, with the latest solutions of all the
other steps (and the external pre-apply terms) applied -- block coordinate descent towards the joint
fit of the chain, so that e.g. a G sees the D solved after it.  Called by :func:`alakazam.flow.run_solve`
after the first round; ``solve_unit`` is its per-(step, field, SPW) solver and ``after_unit(step, sets)``
what the first round does after each unit (re-referencing the step's sets so far).
"""

from __future__ import annotations

import copy
import time
import warnings

import numpy as np

from .calibration import chain
from .jones import terms as jterms


def cp_fits_offsets(rnd, n_rounds):
    """Whether a CP step of round ``rnd`` (0 = the first) of ``n_rounds`` fits the leakage offsets
    (:func:`alakazam.solvers.cross_phase.remove_leakage_offsets`) although a D solved on its own
    fields is pre-applied: in every round but the last, and in the last when it is the second.

    Why: with a D pre-applied and no offsets, CP also fits the phase of the leakage term d I, which
    for |d| I comparable to the polarised cross hands (|d| ~ the fractional polarisation) is as strong
    as the source's rotating U; CP then follows the previous round's D, which the one-pass bias (G
    solved before D) has moved, and D follows CP: a pair that converged at 0.8-0.94 per round and
    first moved away (linear feeds, |d| ~ 0.1, noise-free: cross-hand phase 0.18 -> 0.50 -> 0.47 ->
    0.44 deg in rounds 1-4).  With the offsets CP sees only the rotating polarised signal and does
    not depend on D's error: 0.18 -> 0.035 -> 0.003 -> 0.0002 deg.  The last round (from the third
    on) fits CP with that converged D known and no offsets, which uses the constant part of the
    polarised signal too (41 noisy realisations, |d| ~ 0.07, the setup of tests/test_casa_crosshand.py:
    rms 0.058 deg after 3 rounds, against 0.095 with offsets in every round and 0.137 without them in
    any; tests/test_iterations.py)."""
    return rnd < n_rounds - 1 or n_rounds <= 2


def iterate_round(ctx, cfg, ext_terms, step_fields, spw_sel, finish, rnd, solve_unit, after_unit=None):
    """One more round of the block (``iterations``): every step re-solved, in order, with every other
    step's latest solutions (and the external terms) pre-applied; returns the new chain.  A CP step
    with a D solved on (at least) its own fields uses all the data (no leakage offsets) in the last
    round (from the third on) and reaches the bound with D known; in the rounds before, it fits the
    offsets on top of that D (:func:`cp_fits_offsets`).  A D from other (unpolarised) fields -- CASA's
    order -- is pre-applied too, with the offsets on top in every round: left out (as until session
    37), the parallactic-angle-dependent part of the leakage (d x Q_rot) stayed in CP's data, a floor
    the rounds never passed (noise-free, linear feeds, |d| ~ 0.07: 0.078 deg after 2, 3, 5 and 8
    rounds; with it 0.0036, 0.0004, 0.0000 deg), and fitted without the offsets its noise went into
    CP (rms 2.2e-3 instead of 5.3e-4 rad).  The offsets act on the cells of the first round's
    decision (``unit._Context.cp_offset_cells``)."""
    n_ext = len(ext_terms)
    terms = list(ctx.prior)
    start = list(terms)                 # the chain at the start of the round
    cross = [n_ext + k for k, st in enumerate(cfg.steps) if jterms.get(st.jones_type).cross_only]
    for i, (step, fids) in enumerate(zip(cfg.steps, step_fields)):
        t0 = time.perf_counter()
        use = list(terms)
        if not jterms.get(step.jones_type).cross_only and not all(k < n_ext + i for k in cross):
            # KC and CP are determined only as a pair: until both are re-solved, the other steps use
            # the pair of the previous round (a new KC with the old CP turned the cross-hand phase)
            for k in cross:
                use[k] = start[k]
        ctx.prior = use[:n_ext + i] + use[n_ext + i + 1:]
        sets = _solve_step(ctx, cfg, step, fids, spw_sel, rnd, solve_unit, after_unit)
        for s in sets:
            s.attrs["iteration"] = rnd + 1
        ctx.cp_offsets = False
        finish(step, sets, time.perf_counter() - t0)
        terms[n_ext + i] = chain.term_from_sets(step.key, step.jones_type, sets,
                                                time_interp=step.preapply_time_interp)
        if step.jones_type == "K":      # the later gains of the previous round follow the new delays
            for j in range(i + 1, len(cfg.steps)):
                later = cfg.steps[j]
                # (G only: T is one gain for both hands, which the two hands' delay changes would
                # split -- a review: the carry made a [K, G, T, ...] chain 2-4x worse)
                if jterms.get(later.jones_type).gain and not jterms.get(later.jones_type).pol_shared:
                    terms[n_ext + j] = chain.term_from_sets(
                        later.key, later.jones_type, carry_delay_phase(terms[n_ext + j].sets,
                                                                       start[n_ext + i].sets, sets),
                        time_interp=later.preapply_time_interp)
        ctx.cache.clear()
    ctx.round_changes.append(round_changes(cfg, n_ext, start, terms))
    return terms


def _solve_step(ctx, cfg, step, fids, spw_sel, rnd, solve_unit, after_unit):
    """The sets of ``step`` solved on its fields with ``ctx.prior`` pre-applied, as round ``rnd`` solves
    it (CP: the leakage offsets by :func:`cp_fits_offsets`, or on top of a D of other fields)."""
    # CP only (KC is not affected by a D's noise this way): a literal type check, kept
    other_d = False
    if step.jones_type == "CP":     # a D from other fields: pre-applied, with the offsets on top
        names = {ctx.meta.fields[f].name for f in fids}
        other_d = any(not jterms.get(t.jones_type).diagonal
                      and not names <= {s.field_name for s in t.sets} for t in ctx.prior)
    ctx.cp_offsets = step.jones_type == "CP" and (other_d or cp_fits_offsets(rnd, cfg.iterations))
    ctx.advance = None
    sets = []
    from .core.combine import units
    for fid, ddid, chans, members in units(step, fids, spw_sel):     # combine field/spw: joint units
        sets.extend(solve_unit(ctx, step, fid, ddid, chans, members) if members else
                    solve_unit(ctx, step, fid, ddid, chans))
        if after_unit is not None:      # e.g. re-referencing, as in the first round
            after_unit(step, sets)
    return sets


def probe_changes(ctx, cfg, ext_terms, step_fields, spw_sel, solve_unit, after_unit=None):
    """After the last round of a block with both a CP and a D step: one more round, every step solved
    on the final chain as the last round solved it (:func:`iterate_round` with its ``rnd``), and
    :func:`round_changes` of that probe round against the final chain -- or None (no such pair, one
    round).  Nothing of the probe is kept: its solutions, its messages (logging off, the warn-once
    memory restored), its timings and its round changes; the chain stays as it was.

    Why a probe: the rounds cannot be judged from their own changes -- the last round fits CP without
    the leakage offsets (:func:`cp_fits_offsets`), a different estimator, and a round's change tells
    little of the state it reaches (a review: round 3 of 4 moved D by 35 x its noise where the 4 rounds'
    D equalled 40 rounds').  A converged chain is the round's fixed point.  A probe of CP alone (its
    first version) missed a D drifting through the gains (a second review: 11.9 x its noise in the last
    round, 2.6e-2 off the truth, the CP probe 0.2 x): the whole round is re-solved.  Its cost: one round."""
    import logging

    from .core import warnonce

    if cfg.iterations < 2:
        return None
    pair = {st.jones_type for st in cfg.steps if st.jones_type in ("CP", "D")}
    if pair != {"CP", "D"}:
        return None
    final = list(ctx.prior)
    stats = copy.deepcopy(ctx.stats)
    n_rc = len(ctx.round_changes)
    was = logging.root.manager.disable
    logging.disable(logging.CRITICAL)       # the probe's messages would repeat the last round's
    try:
        with warnonce.unsaid():
            probe = iterate_round(ctx, cfg, ext_terms, step_fields, spw_sel, lambda *a, **k: None,
                                  cfg.iterations - 1, solve_unit, after_unit)
    finally:
        logging.disable(was)
        del ctx.round_changes[n_rc:]
        ctx.cp_offsets = False
        ctx.prior = final
        ctx.stats = stats
        ctx.cache.clear()
    return round_changes(cfg, len(ext_terms), final, probe)


#: a round that still moved a cross-hand term by more than this many times its noise (the median over
#: its solutions of |change| / error) has not converged (:func:`warn_unconverged`) ...
UNCONVERGED = 1.0
#: ... and by more than these (CP: rad, 0.01 deg; D: leakage), below any polarimetric use (a
#: noise-free simulation's errors are ~1e-6 of them: its rounds always move by more than their noise)
NEGLIGIBLE = {"CP": np.radians(0.01), "D": 1e-4}


def _set_key(s):
    return (str(s.attrs.get("field_name", "")), int(s.attrs.get("spw", -1)), int(s.attrs.get("scan_id", 0)))


def _error(s):
    """(n_ant, n_f, n_t, 2) 1 / SNR of a set's solutions (NaN where the SNR is not positive)."""
    snr = (s.extra or {}).get("snr")
    if snr is None:
        return None
    snr = np.asarray(snr, float)
    with np.errstate(divide="ignore"):
        return np.where(np.isfinite(snr) & (snr > 0), 1.0 / snr, np.nan)


def _kc_of(kc_sets, cp):
    """The KC sets of CP set ``cp``: the one of its field, SPW and scan when there is one (both per scan: a
    review found a per-scan CP spread over every scan's KC), else every KC set of its field and SPW (a KC
    per scan beside a CP over 'inf'), in time order."""
    same = [x for x in kc_sets if _set_key(x) == _set_key(cp)]
    if same:
        return same
    fld, spw = str(cp.attrs.get("field_name", "")), int(cp.attrs.get("spw", -1))
    return sorted([x for x in kc_sets if str(x.attrs.get("field_name", "")) == fld
                   and int(x.attrs.get("spw", -1)) == spw],
                  key=lambda x: float(np.min(x.time)) if np.size(x.time) else 0.0)


def _cross_phase(cp, kcs):
    """Cross-hand phase (rad) of CP times KC at CP's bins: arg(J_qq conj(J_pp)) of the product, every
    antenna's the same (a global term); NaN where flagged.  ``kcs``: the KC sets of its field and SPW
    (:func:`_kc_of`; KC = diag(exp(-2 pi i tau nu), 1) adds +2 pi tau nu), or [].  (n_f, n_t) -- or
    (n_f, n_tk), one column per KC solution time, for a CP of one time beside a KC per scan (whose slope
    the rounds trade with CP's phases: a review found CP alone moving by 3x its noise where the product
    stood still)."""
    J = np.asarray(cp.jones)
    ok = ~np.asarray(cp.flags, bool)
    z = np.where(ok, J[..., 1, 1] * np.conj(J[..., 0, 0]), 0).sum(axis=0)           # (n_f, n_t)
    ph = np.where(ok.any(axis=0), np.angle(z), np.nan)
    taus = []
    for kc in kcs:
        if kc.delay is None:
            continue
        tau = np.asarray(kc.delay, float)[..., 0]                                     # (n_ant, n_fk, n_tk)
        with warnings.catch_warnings():             # a time flagged on every antenna: NaN, said once
            warnings.simplefilter("ignore", RuntimeWarning)
            taus.append(np.nanmedian(np.where(np.asarray(kc.flags, bool), np.nan, tau), axis=0)[0])
    if taus:
        tau = np.concatenate(taus)                                                    # (n_tk,)
        if ph.shape[1] in (1, len(tau)):
            ph = ph + 2 * np.pi * 1e-9 * np.asarray(cp.freq, float)[:, None] * tau[None, :]
    return ph


def round_changes(cfg, n_ext, start, terms):
    """``{step key: (median |change|, median error, median |change| / error)}`` of the block's CP and D
    steps between the chain at the start of a round (``start``) and at its end (``terms``), over their
    unflagged solutions: CP as the cross-hand phase of KC times CP at CP's bins (rad; KC and CP trade a
    phase slope between rounds without changing it), D as |d_new - d_old| of each leakage; the errors
    1 / SNR of the new solutions.  Rounds that converge move them by far less than their noise."""
    out = {}
    kc_idx = [n_ext + k for k, st in enumerate(cfg.steps) if st.jones_type == "KC"]
    for k, st in enumerate(cfg.steps):
        if st.jones_type not in ("CP", "D"):
            continue
        old = {_set_key(x): x for x in start[n_ext + k].sets}
        kc_old = list(start[kc_idx[0]].sets) if kc_idx else []
        kc_new = list(terms[kc_idx[0]].sets) if kc_idx else []
        chg, err = [], []
        for s in terms[n_ext + k].sets:
            o = old.get(_set_key(s))
            e = _error(s)
            if o is None or e is None or np.shape(o.jones) != np.shape(s.jones):
                continue
            if st.jones_type == "CP":
                pn, po = _cross_phase(s, _kc_of(kc_new, s)), _cross_phase(o, _kc_of(kc_old, o))
                if pn.shape != po.shape:
                    continue
                d = np.abs(np.angle(np.exp(1j * (pn - po))))
                with warnings.catch_warnings():     # a flagged cell: NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    e = np.nanmedian(e, axis=(0, 3))                                     # (n_f, n_t)
                e = np.broadcast_to(e, d.shape) if e.shape[1] == 1 else e
            else:
                jn, jo = np.asarray(s.jones), np.asarray(o.jones)
                d = np.stack([np.abs(jn[..., 0, 1] - jo[..., 0, 1]),
                              np.abs(jn[..., 1, 0] - jo[..., 1, 0])], -1)
                bad = np.asarray(s.flags, bool) | np.asarray(o.flags, bool)
                d = np.where(bad[..., None], np.nan, d)
            ok = np.isfinite(d) & np.isfinite(e)
            chg.append(d[ok])
            err.append(e[ok])
        if chg and sum(len(c) for c in chg):
            c, e = np.concatenate(chg), np.concatenate(err)
            out[st.key] = (float(np.median(c)), float(np.median(e)), float(np.median(c / e)))
    return out


def judged_round(cfg):
    """For a block without both a CP and a D step (those are judged by :func:`probe_changes`): the round
    (2 = the first after the first) whose changes tell whether the rounds converge, or None -- the last
    round that fits every term the way the round before it did.  A CP step fits the leakage offsets in
    every round but the last (:func:`cp_fits_offsets`); round 2 is the first with the leakage of round 1
    pre-applied, a step change by design.  So with a CP step round N - 1 is judged (N >= 4), without one
    round N (N >= 3)."""
    n = int(cfg.iterations)
    has_cp = any(st.jones_type == "CP" for st in cfg.steps)
    r = n - 1 if (has_cp and n >= 3) else n
    return r if r >= 3 else None


def _moved(changes, cfg):
    """``[(key, text)]`` of the steps of ``changes`` ({key: (median change, noise, ratio)}) that moved by
    more than :data:`UNCONVERGED` times their noise and more than :data:`NEGLIGIBLE`."""
    out = []
    for key, (c, e, ratio) in changes.items():
        jt = next((st.jones_type for st in cfg.steps if st.key == key), "D")
        if not (ratio > UNCONVERGED and c > NEGLIGIBLE.get(jt, 0.0)):
            continue
        unit = (lambda x: f"{np.degrees(x):.3g} deg") if jt == "CP" else (lambda x: f"{x:.3g}")
        out.append((key, f"{key} by {unit(c)} (median), {ratio:.2g} x its noise (median {unit(e)})"))
    return out


def warn_unconverged(changes, cfg, log, probe=None):
    """Warn when the rounds of ``iterations`` have not converged: with a CP and a D step, when the probe
    (:func:`probe_changes`: one more round solved on the final chain) moves CP or D by more
    than :data:`UNCONVERGED` times its noise and more than :data:`NEGLIGIBLE` -- the chain is not at its
    fixed point, and the cross-hand terms are still off by about that much or more (a review: 4 scans
    of 3C286 on linear feeds, the cross-hand phase 2.9 deg off after 3 rounds, each round moving it by
    ~0.5 deg, 10 x its noise, silently); without the pair, from the judged round's changes
    (:func:`judged_round`; ``changes``: :func:`round_changes` of each round after the first).  Returns
    the message (None when converged or not judged)."""
    if probe is not None:
        parts = _moved(probe, cfg)
        if not parts:
            log.info("iterations=%d: converged -- one more round on the final chain moved %s",
                     cfg.iterations, ", ".join(f"{k} by {v[2]:.2g} of its noise" for k, v in probe.items()))
            return None
        msg = (f"iterations={cfg.iterations}: one more round on the final chain moved "
               f"{' and '.join(p for _, p in parts)} -- the rounds have not converged, and the cross-hand "
               "terms are likely still off by that much or more. Raise iterations (e.g. double it, and "
               "compare the results); a polarised calibrator with few scans or little parallactic-angle "
               "coverage converges slowly. If doubling does not clear it, the rounds alternate between two "
               "states (seen with KC per scan: solve KC over 'inf')")
        log.warning(msg)
        return msg
    r = judged_round(cfg)
    if r is None or len(changes) < r - 1:
        if cfg.iterations > 1:
            log.info("iterations=%d: convergence not judged (it needs %s rounds)", cfg.iterations,
                     "4 or more" if any(st.jones_type == "CP" for st in cfg.steps) else "3 or more")
        return None
    parts = _moved(changes[r - 2], cfg)
    if not parts:
        return None
    msg = (f"iterations={cfg.iterations}: round {r} still moved {' and '.join(p for _, p in parts)} -- the "
           "rounds have not converged, and the chain's terms are likely still off by that much or more. "
           "Raise iterations (e.g. double it, and compare the results)")
    log.warning(msg)
    return msg


def _k_set_for(g, k_sets, t):
    """The K set whose solutions a gain set ``g``'s solution at time ``t`` was solved after (as the
    pre-apply picks it): the same field, SPW and scan; else the same field and SPW over all its scans
    (time_interval inf); else, of the same SPW, the one nearest in time (field_select nearest_time)."""
    same = [k for k in k_sets if k.spw == g.spw]
    for k in same:
        if k.field_name == g.field_name and k.scan_id == g.scan_id and g.scan_id != 0:
            return k
    for k in same:
        if k.field_name == g.field_name and k.scan_id == 0:
            return k
    if not same:
        return None
    return min(same, key=lambda k: float(np.min(np.abs(np.asarray(k.time, float) - t))))


def _k_delay(k, t, names):
    """(n_ant, 2) ns: K set ``k``'s delays at its solution nearest ``t`` for the antennas ``names``
    (NaN: flagged, or not in ``k``)."""
    it = int(np.argmin(np.abs(np.asarray(k.time, float) - t)))
    d = np.where(k.hand_flags()[:, 0, it], np.nan, np.asarray(k.delay, float)[:, 0, it])
    idx = {n: a for a, n in enumerate(k.ant_names)}
    out = np.full((len(names), 2), np.nan)
    for a, n in enumerate(names):
        if n in idx:
            out[a] = d[idx[n]]
    return out


def carry_delay_phase(g_sets, k_old, k_new):
    """Copies of the gain sets ``g_sets`` (a step after K in the block, solved in the previous round)
    rotated so that K times G is unchanged at each gain bin's centre frequency when K moves from
    ``k_old`` to ``k_new`` (the sets of the previous round and of this one):
    ``g -> g exp(2 pi i (tau_new - tau_old) 1e-9 nu)`` per antenna, hand and solution.

    Why: our K is referenced to the absolute frequency (delay phase ``-2 pi tau nu``, docs/conventions.md),
    so a delay change of d ns moves K's phase at the band centre by 2 pi d nu_c -- 0.26 rad for 0.03 ns
    at 1.4 GHz -- where a band-centre referenced K (CASA's) moves only its slope.  A later round's K
    differs from the previous one's by such amounts (it is solved with the bandpass known; per scan, a
    channel flagged at some times moves its delay), and the previous round's per-scan gains, pre-applied
    to this round's bandpass, then no longer matched it: scan-to-scan phase jumps that the bandpass
    (inf) averaged into chi2 -- 30x the noise in the channels with time-varying flags after three
    rounds, flagged as chi2 outliers on every antenna (a review: 3 channels flagged in 3% of the rows
    of a calibrator).  A gain solution spanning several K solutions (a bandpass over scans, scan_id
    0 with K per scan) is left as it is (it is solved again next); so is an antenna or hand whose old
    or new delay is flagged."""
    import dataclasses

    out = []
    for g in g_sets:
        if g.scan_id == 0 and any(k.scan_id != 0 and k.spw == g.spw and k.field_name == g.field_name
                                  for k in k_new):
            out.append(g)
            continue
        jones = np.array(g.jones, copy=True)
        nu = np.asarray(g.freq, float)
        changed = False
        for it, t in enumerate(np.asarray(g.time, float)):
            ko, kn = _k_set_for(g, k_old, t), _k_set_for(g, k_new, t)
            if ko is None or kn is None:
                continue
            dtau = _k_delay(kn, t, g.ant_names) - _k_delay(ko, t, g.ant_names)     # (n_ant, 2)
            ok = np.isfinite(dtau)
            if not ok.any():
                continue
            rot = np.exp(2j * np.pi * 1e-9 * np.where(ok, dtau, 0.0)[:, None, :] * nu[None, :, None])
            for p in range(2):
                jones[:, :, it, p, p] *= rot[:, :, p]
            changed = True
        out.append(dataclasses.replace(g, jones=jones) if changed else g)
    return out
