"""``iterations: N`` of a solve block: rounds after the first (docs/conventions.md).

Each further round re-solves every step of the block, in order, with the latest solutions of all the
other steps (and the external pre-apply terms) applied -- block coordinate descent towards the joint
fit of the chain, so that e.g. a G sees the D solved after it.  Called by :func:`alakazam.flow.run_solve`
after the first round; ``solve_unit`` is its per-(step, field, SPW) solver and ``after_unit(step, sets)``
what the first round does after each unit (re-referencing the step's sets so far).
"""

from __future__ import annotations

import time

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
        for s in sets:
            s.attrs["iteration"] = rnd + 1
        ctx.cp_offsets = False
        finish(step, sets, time.perf_counter() - t0)
        terms[n_ext + i] = chain.term_from_sets(step.key, step.jones_type, sets,
                                                time_interp=step.preapply_time_interp)
        ctx.cache.clear()
    return terms
