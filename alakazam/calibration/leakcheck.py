"""Gains solved before D on a polarised calibrator, in one pass: the warning (docs/conventions.md,
"iterations").

A gain (K, G, T) solved on a polarised calibrator before its D is known absorbs the leakage of the
polarised flux into the parallel hands: for an antenna with leakage d, about d x U_feed / I (linear
feeds; d x the linear polarisation fraction for circular ones), a complex factor that turns with the
parallactic angle.  The steps after it inherit it: the cross-hand phase through the reference's gains
(noise-free, |d| ~ 0.07 on 3C286: 0.00-0.29 deg over 11 realisations, rms 0.19; tests/
test_casa_crosshand.py).  CASA's recipe has the same bias.  ``iterations: N`` re-solves every step with
the D applied and removes it (3 rounds: 0.04 deg).

:func:`notes` estimates the size after the block's D is solved -- for the block's gains when it ran
one round, and for gains pre-applied from another table (the CASA-style sequence of calls: gaincal,
then polcal with gaintable), which no round re-solves: the largest unflagged |d| times the model's
cross-hand / parallel-hand power ratio (sqrt) of the polarised calibrators such a gain was solved on
(``SolutionSet.diagnostics``: measured by a D step on that field, or by a CP step on it -- the
cross hands from its batch, the parallel hands from a sample of its rows as read -- so the D may be
solved on another field: CASA's order, Df on the unpolarised 3C147 and the gains and CP on 3C286); it
warns when that exceeds ``THRESHOLD`` (1e-3: 0.1% in the gains' amplitude, 0.06 deg in phase).  A
warning only: no solution changes (tests/test_leakcheck.py).  No ratio is measured on a step with a D
pre-applied (its model carries that D's leakage, d x I), so a block with a D pre-applied to every step
is not warned about: its gains were solved with that D (taken to be right).  Not seen: a calibrator
whose polarisation no D or CP step of the block measured (a D block on 3C147 alone, with gains from
3C286 pre-applied from another run).
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("alakazam")

THRESHOLD = 1e-3


def _leakage_max(sets):
    out = 0.0
    for s in sets:
        d = np.abs(np.stack([s.jones[..., 0, 1], s.jones[..., 1, 0]], -1))      # (ant, freq, time, 2)
        ok = ~np.asarray(s.flags, bool)[..., None] & np.isfinite(d)
        if ok.any():
            out = max(out, float(d[np.broadcast_to(ok, d.shape)].max()))
    return out


def typical_leakage(sets):
    """The median |d| of the unflagged, nonzero leakages (both cross terms) of D solution ``sets``: what
    sizes an unknown reference leakage in the gauge notes; None without any."""
    d = []
    for x in sets:
        j = np.asarray(x.jones)
        ok = ~np.asarray(x.flags, bool)
        d += list(np.abs(j[..., 0, 1][ok])) + list(np.abs(j[..., 1, 0][ok]))
    d = [v for v in d if np.isfinite(v) and v > 0]
    return float(np.median(d)) if d else None


def set_fields(s):
    """The fields a solution set was solved on: its field, or a combine='field' set's members
    (attr ``combined_fields``; its name 'A+B' is not split: field names hold '+', 'J1331+3030')."""
    names = s.attrs.get("combined_fields")
    return {str(x) for x in names} if names else {s.field_name}


def _polarised_fields(steps):
    """field name -> its model's cross/parallel ratio: the largest ``model_pol_fraction`` of a D step
    solved on it, or sqrt(cross / parallel) of a CP step's mean model powers on it
    (``SolutionSet.diagnostics``; neither is recorded when a D was pre-applied to the step, whose
    leakage would be in the model, unit._d_preapplied)."""
    out = {}
    for st, sets in steps:
        for s in sets:
            f = s.diagnostics.get("model_pol_fraction")
            if f is not None and np.isfinite(f) and f > 0:
                for name in set_fields(s):
                    out[name] = max(out.get(name, 0.0), float(f))
            p = s.diagnostics.get("model_power")
            if p is not None and p[0] > 0 and p[1] > 0:
                for name in set_fields(s):
                    out[name] = max(out.get(name, 0.0), float(np.sqrt(p[1] / p[0])))
    return out


def notes(cfg, pending, external_gains=()):
    """The warnings for the block's D steps (``pending``: key -> solution sets, in step order;
    ``external_gains``: (key, fields) of the gains pre-applied from other tables, which no round of
    this block re-solves).  A gain is sized on every polarised calibrator it was solved on, whether the
    D was solved there or on another field (CASA's order: Df on the unpolarised 3C147, the gains and
    the cross-hand phase on 3C286, whose fraction the CP step measured)."""
    steps = [(st, pending.get(st.key) or []) for st in cfg.steps]
    pol = _polarised_fields(steps)
    out = []
    for i, (st, sets) in enumerate(steps):
        if st.jones_type != "D" or not sets or not pol:
            continue
        d_fields = set().union(*(set_fields(s) for s in sets))
        dmax = _leakage_max(sets)
        big = {f for f, x in pol.items() if dmax * x > THRESHOLD}     # the fields where it matters
        hit = set()
        gains = []
        if cfg.iterations == 1:
            for p, ps in steps[:i]:
                f = set().union(*(set_fields(s) for s in ps)) & big
                if ps and p.jones_type in ("K", "G", "T") and f:
                    gains.append(p.key)
                    hit |= f
        ext = []
        for k, f in external_gains:
            f = set(f) & big
            if f:
                ext.append(k)
                hit |= f
        if not (gains or ext):
            continue
        frac = max(pol[f] for f in hit)
        eps = dmax * frac
        fields = ", ".join(sorted(hit))
        on = "" if hit <= d_fields else f" on {', '.join(sorted(d_fields))}"
        # CASA's gauge not fitting this calibrator (gauge_notes): the rounds converge only with the
        # absolute D (tests/test_leakage_absolute.py)
        also = (" with leakage_gauge: absolute (see the next warning)" if _gauge_misfit(cfg, st, sets)
                else "")
        if gains:
            when, remedy = ("in one round", f"iterations: 3 (akcal iterations=3){also} re-solves every "
                            "step with the D applied and removes it")
        else:
            when, remedy = ("in another run (pre-applied)", "solving them and the D in one block with "
                            f"iterations: 3 (akcal: one call with all the terms, iterations=3){also} "
                            "removes it")
        out.append(
            f"{', '.join(gains + ext)} solved on {fields} before {st.key} (D{on}) was known, {when}: the "
            f"leakage (|d| up to {dmax:.3f}) of its polarised flux (the model's cross hands {frac:.3f} of "
            f"its parallel hands) put about {eps:.1e} into the parallel hands "
            f"({100 * eps:.2f}% in amplitude, {np.degrees(eps):.2f} deg in phase, turning with the "
            f"parallactic angle), which those gains "
            f"absorbed and the later steps (a cross-hand phase through the reference antenna) inherit. "
            f"CASA's recipe has the same bias. {remedy}")
    return out


#: the gauge note: the stored D's median chi2/nDOF above which CASA's gauge is said not to fit
GAUGE_RCHI2 = 2.0


def _gauge_misfit(cfg, st, sets):
    """(|c|, the model's cross/parallel ratio, the stored D's median chi2/nDOF) of a D step whose CASA
    gauge does not fit its calibrator (:func:`gauge_notes`), else None."""
    from ..solvers import leakage

    if cfg.leakage_gauge != "reference" or st.jones_type != "D" or not sets:
        return None
    info = [s.diagnostics.get("absolute_gauge_info") for s in sets]
    moved = [s.diagnostics.get("free_reference_leakage") for s in sets]
    if any(x is None or not np.isfinite(x) for x in info + moved):
        return None                 # not linear feeds, or no free fit to compare with
    if min(info) < leakage.ABSOLUTE_MIN_INFO:
        return None                 # the data do not fix the absolute leakage: nothing better to offer
    frac = max([s.diagnostics.get("model_pol_fraction") or 0.0 for s in sets])
    c = max(moved)
    rchi2 = [np.asarray(s.extra.get("rchi2"), float).ravel() for s in sets
             if s.extra.get("rchi2") is not None]
    rchi2 = np.concatenate(rchi2) if rchi2 else np.zeros(0)
    rchi2 = float(np.median(rchi2[np.isfinite(rchi2)])) if np.isfinite(rchi2).any() else np.nan
    if not (2 * c * frac > THRESHOLD and rchi2 > GAUGE_RCHI2):
        return None
    return c, frac, rchi2


def gauge_notes(cfg, pending):
    """Linear feeds, ``leakage_gauge`` 'reference' (CASA's): a D step whose data fix the absolute
    leakage (every cell's information on the common leakage >= leakage.ABSOLUTE_MIN_INFO of one
    antenna's) and where the re-referencing moved a reference leakage |c| with 2 |c| x the model's
    cross/parallel ratio above ``THRESHOLD`` into every antenna, while the stored D fits its calibrator
    with a median chi2/nDOF above ``GAUGE_RCHI2``: a note that the gauge, a symmetry of unpolarised
    sources only, does not fit this calibrator, and that ``leakage_gauge: absolute`` keeps the true
    leakages (solvers/leakage.py)."""
    out = []
    for st in cfg.steps:
        sets = pending.get(st.key) or []
        m = _gauge_misfit(cfg, st, sets)
        if m is None:
            continue
        c, frac, rchi2 = m
        name = str(sets[0].attrs.get("ref_ant_name", sets[0].attrs.get("ref_ant", "")))
        fields = ", ".join(sorted({s.field_name for s in sets}))
        out.append(
            f"{st.key} (D) on {fields}: CASA's gauge (d_pq of {name} = 0) moved {name}'s own leakage "
            f"(|d_pq| {c:.3f}, which these data fix: linear feeds, a polarised calibrator over a range of "
            f"parallactic angle) into every antenna; with linear feeds that is a symmetry of unpolarised "
            f"sources only, so the stored D fits {fields} with chi2/nDOF {rchi2:.3g}, and a target as "
            f"polarised as {fields} is off by about 2 |d_pq| Q ({2 * c * frac:.1e} of I). leakage_gauge: "
            f"absolute (akcal leakage_gauge='absolute') keeps the true leakages")
    return out


def circular_gauge_notes(cfg, pending):
    """Circular feeds, ``leakage_gauge`` 'reference' (CASA's; 'absolute' is refused for them): the D
    keeps every antenna's leakage relative to the reference's own, c = d_R of the reference, which the
    cross hands do not fix (a common c in d_R and -conj(c) in d_L leaves them unchanged to first order).
    In the parallel hands it is first order in the polarised flux, ``V_RR ~ I + c (Q - iU) e^{2i chi} +
    conj(c) (Q + iU) e^{-2i chi}``: a gain of the block solved on a polarised calibrator absorbs about
    2 |c| m of I, turning with the parallactic angle, and carries it to the targets calibrated with it as
    a false circular polarisation (RR against LL).  |c| is not known; a typical antenna's |d| (the
    median of the stored D) sizes it.  A review: |d| 0.073 at the reference, G on 3C286 (m 0.11):
    3C286's cross hands off by 0.6%, an unpolarised target's RR / LL by -0.18% / +0.19% (20 standard
    errors), no warning.  A note, when 2 |d| m > ``THRESHOLD``, with the remedy: the gains from an
    unpolarised (or weakly polarised) calibrator."""
    out = []
    steps = [(st, pending.get(st.key) or []) for st in cfg.steps]
    pol = _polarised_fields(steps)
    if cfg.leakage_gauge != "reference" or not pol:
        return out
    for st, sets in steps:
        if st.jones_type != "D" or not sets or not all(
                str(x.attrs.get("feed_basis", "")) == "circular" for x in sets):
            continue
        typical = typical_leakage(sets)
        if typical is None:
            continue
        gains = []
        hit = set()
        for p, ps in steps:
            f = set().union(*(set_fields(x) for x in ps)) & set(pol) if ps else set()
            if p.jones_type in ("K", "G", "T") and f:
                gains.append(p.key)
                hit |= f
        if not gains:
            continue
        frac = max(pol[f] for f in hit)
        eps = 2 * typical * frac
        if eps <= THRESHOLD:
            continue
        fields = ", ".join(sorted(hit))
        out.append(
            f"{st.key} (D), circular feeds, CASA's gauge: every antenna's leakage is stored relative to the "
            f"reference antenna's own, which the cross hands do not fix (|d| of a typical antenna here "
            f"{typical:.3f}); {', '.join(gains)} solved on the polarised {fields} (the model's cross hands "
            f"{frac:.3f} of its parallel hands) absorb up to about 2 |d| m = {eps:.1e} of I in the parallel "
            f"hands, turning with the parallactic angle, which a target calibrated with them carries as a "
            f"false circular polarisation (RR against LL; Stokes I within it). Solve the gains applied "
            f"to targets on an unpolarised or weakly polarised calibrator to avoid it")
    return out


def _misfit_fires(s) -> bool:
    """The D set's cross hands change with the parallactic angle beyond what the model and D fit
    (misfitcheck's 'time' test: one solution per scan fits far better than one over the scans)."""
    from .misfitcheck import _fires

    d = (s.diagnostics.get("crosshand_misfit") or {}).get("time")
    try:
        return d is not None and _fires(d)
    except (TypeError, ValueError):
        return False


#: a D step's calibrator counts as unpolarised below this model cross/parallel ratio
UNPOLARISED = 0.005


def unpolarised_gauge_notes(cfg, pending):
    """Linear feeds, ``leakage_gauge`` 'reference' (CASA's), D solved on an unpolarised calibrator (its
    model's cross/parallel ratio below :data:`UNPOLARISED`; CASA's Df on 3C147): such a source cannot fix
    the leakage common to all antennas, so every antenna's D is stored relative to the reference
    antenna's own, d_ref, unknown.  With linear feeds that common leakage is no symmetry of polarised
    sources: one of linear fraction p is off by about 2 |d_ref| p of I in its V and Q/U (review 60i:
    |d_ref| 0.034, 3C286 V 0.6% of I -- 0.09 Jy, 439 errors in Q -- and a polarised target's V/I
    0.006-0.014 for 0.010, as CASA's Xf + Df on 3C147 to 5e-4).  |d_ref| is sized by the antennas'
    typical |d| (the median of the stored D), p by the block's polarised calibrators (0.1 when none was
    measured); a note when 2 |d| p > ``THRESHOLD``, with the remedy: D on the polarised calibrator after
    KC and CP with ``leakage_gauge: absolute``, which its parallactic-angle coverage fixes."""
    out = []
    if cfg.leakage_gauge != "reference":
        return out
    steps = [(st, pending.get(st.key) or []) for st in cfg.steps]
    pol = _polarised_fields(steps)
    for st, sets in steps:
        if st.jones_type != "D" or not sets or not all(
                str(x.attrs.get("feed_basis", "")) == "linear" for x in sets):
            continue
        fr = [x.diagnostics.get("model_pol_fraction") for x in sets]
        if not fr or any(f is None or not np.isfinite(f) or f >= UNPOLARISED for f in fr):
            continue
        if any(_misfit_fires(x) for x in sets):
            # the data turn with the parallactic angle where the model does not: a polarised calibrator
            # given an unpolarised model (setjy's I only on 3C286), which misfitcheck says with its remedy
            # -- not 'an unpolarised calibrator' to be replaced by 'the polarised calibrator' (review h60j)
            continue
        typical = typical_leakage(sets)
        if typical is None:
            continue
        polar = {f: p for f, p in pol.items() if p >= UNPOLARISED}
        frac = max(polar.values()) if polar else 0.1
        eps = 2 * typical * frac
        if eps <= THRESHOLD:
            continue
        fields = ", ".join(sorted(set().union(*(set_fields(x) for x in sets))))
        name = str(sets[0].attrs.get("ref_ant_name", sets[0].attrs.get("ref_ant", "")))
        like = (f"as polarised as {', '.join(sorted(polar))} ({frac:.2g})" if polar else "10% polarised")
        out.append(
            f"{st.key} (D) on {fields}, linear feeds, CASA's gauge: an unpolarised calibrator does not fix "
            f"the leakage common to all antennas, so each antenna's is stored relative to {name}'s own, "
            f"unknown; with linear feeds that common leakage is no symmetry of polarised sources, and one "
            f"{like} is off by about 2 |d_ref| p of I in V and Q/U ({eps:.1e} of I at the antennas' typical "
            f"|d| {typical:.3f}; a review: 0.6% of I on 3C286, as CASA's Df on 3C147). For the polarisation "
            f"of polarised sources solve D on the polarised calibrator after KC and CP with leakage_gauge: "
            f"absolute (akcal leakage_gauge='absolute'; the README's recipe), which its parallactic-angle "
            f"coverage fixes")
    return out


def all_notes(cfg, pending, external_gains=()):
    """:func:`notes`, :func:`gauge_notes`, :func:`circular_gauge_notes` and
    :func:`unpolarised_gauge_notes` of a block (flow logs them)."""
    return (notes(cfg, pending, external_gains) + gauge_notes(cfg, pending)
            + circular_gauge_notes(cfg, pending) + unpolarised_gauge_notes(cfg, pending))
