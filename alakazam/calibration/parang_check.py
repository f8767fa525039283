"""Parallactic-angle rotation needs the cross hands of linear feeds (docs/conventions.md).

For linear feeds the sky-to-feed rotation ``P M P^H`` mixes Stokes Q (in XX - YY) with Stokes U, which
only the cross hands (XY, YX) carry: ``XX' = I + Q cos 2chi + U sin 2chi``.  A Measurement Set with only
the parallel hands (XX, YY) has no U in its model, so the rotated model of a polarised calibrator is
wrong (the gains absorb the missing ``U sin 2chi`` -- a few per cent for 3C286), and for an unpolarised
one the rotation changes nothing.  So ``apply_parang`` on such an MS is refused, before anything is
read or written, naming the correlations present and the missing ones.  Circular feeds rotate only
the cross hands (RL, LR): their parallel hands are unaffected and pass.
"""

from __future__ import annotations

import numpy as np

from ..errors import AlakazamError

CROSS = {"linear": ("XY", "YX"), "circular": ("RL", "LR")}


def check_antenna_positions(meta, where="apply_parang"):
    """Raise, naming the ANTENNA row, its name and the MS, when an antenna with data has no usable ITRF
    POSITION: each antenna's parallactic angle is computed from its own position (jones/parang.py), so
    a NaN, a zero or a local-frame position (|POSITION| not within 6.0e6-6.6e6 m of the geocentre)
    would give a wrong angle or stop the run halfway."""
    pos = np.asarray(meta.ant_positions, float)
    for row in np.asarray(meta.active_ants, int):
        p = pos[row]
        r = float(np.linalg.norm(p)) if np.all(np.isfinite(p)) else float("nan")
        if not 6.0e6 < r < 6.6e6:
            what = "not finite" if not np.isfinite(r) else f"{r:.4g} m from the geocentre"
            raise AlakazamError(
                f"{where} (task parameter parang): true, but ANTENNA row {row} ({meta.ant_names[row]}) "
                f"of {meta.path} has "
                f"POSITION {[float(v) for v in p]} ({what}): each antenna's parallactic angle needs its "
                f"ITRF position in metres (about 6.37e6 m from the geocentre). Fix the ANTENNA table's "
                f"POSITION, or set {where} (parang) false")


def check_receptor_angles(meta, ddids, where="apply_parang"):
    """Raise, naming the SPW, the antenna and the angles, when an antenna with data has FEED rows for a
    selected SPW (its own SPECTRAL_WINDOW_ID, else -1) that disagree in RECEPTOR_ANGLE: time-dependent
    rows, which the parallactic angle here does not interpolate (ms_io.receptor_angles)."""
    conflicts = getattr(meta, "receptor_conflicts", None) or {}
    active = {meta.ant_names[a] for a in meta.active_ants}
    for d in ddids:
        sp = meta.spws[d]
        bad = [(a, v) for a, v in conflicts.get(sp.spw_id, []) if a in active]
        if bad:
            a, v = bad[0]
            task = "" if where == "parang" else " (task parameter parang)"
            raise AlakazamError(
                f"{where}{task}: true, but the FEED table of {meta.path} has rows for antenna {a} and SPW "
                f"{sp.spw_id} with different RECEPTOR_ANGLE (feed 0: {', '.join(f'{x:.9g}' for x in v)} "
                f"rad{f'; and {len(bad) - 1} more antenna(s)' if len(bad) > 1 else ''}): time-dependent "
                f"receptor angles are not supported. Keep one row per antenna and SPW, or set {where} "
                f"false")


def check_parang_correlations(meta, ddids, apply_parang, where="apply_parang"):
    """Raise when ``apply_parang`` is on and a selected linear-feed SPW lacks XY or YX, an antenna
    with data has no ITRF position (:func:`check_antenna_positions`) or disagreeing receptor angles
    (:func:`check_receptor_angles`)."""
    if not apply_parang:
        return
    check_antenna_positions(meta, where)
    check_receptor_angles(meta, ddids, where)
    for ddid in ddids:
        sp = meta.spws[ddid]
        if sp.feed_basis != "linear":
            continue
        missing = [c for c in CROSS["linear"] if c not in sp.corr_types]
        if missing:
            task = "" if where == "parang" else " (task parameter parang)"
            raise AlakazamError(
                f"{where}{task}: true, but SPW {sp.spw_id} (DATA_DESC_ID {ddid}) of {meta.path} has only the "
                f"correlations {', '.join(sp.corr_types)} (missing {', '.join(missing)}): for linear feeds "
                f"the model's Stokes U is carried by XY/YX, so rotating a polarised model by the "
                f"parallactic angle would be wrong. Set {where} false (exact for an unpolarised "
                f"calibrator, whose model the rotation leaves unchanged) or use an MS with all four "
                f"correlations")


def check_cross_hand_steps(meta, ddids, steps):
    """Raise, before anything is read or written, when a step solved from the cross hands (D, KC, CP:
    the registry's non-diagonal and cross-only types) would run on a selected SPW without all four
    correlations (an MS of XX, YY or RR, LL only; or one SPW of a mixed MS): its solutions would all be
    flagged (D) or the model look unpolarised (KC, CP), an error that does not say why."""

    msg = cross_hand_steps_error(meta, ddids, steps)
    if msg:
        raise AlakazamError(f"jones: {msg}")


def cross_hand_steps_error(meta, ddids, steps):
    """The message of :func:`check_cross_hand_steps` (without its 'jones: ' head), naming every such
    step at once (it named the first: a user who left KC out then met CP, then D), or None."""
    from ..jones import terms as jterms

    short = [d for d in ddids if meta.spws[d].n_corr != 4]
    if not short:
        return None
    bad = [(i, st) for i, st in enumerate(steps)
           if not (jterms.get(st.jones_type).diagonal and not jterms.get(st.jones_type).cross_only)]
    if not bad:
        return None
    sp = meta.spws[short[0]]
    four = "XX, XY, YX, YY" if sp.feed_basis == "linear" else "RR, RL, LR, LL"
    names = ", ".join(f"{st.key} ({st.jones_type}, step {i})" for i, st in bad)
    types = ", ".join(dict.fromkeys(st.jones_type for _, st in bad))
    return (f"{names} {'is' if len(bad) == 1 else 'are'} solved from the cross hands, but "
            f"SPW {sp.spw_id} (DATA_DESC_ID {sp.ddid}) of {meta.path} has only the "
            f"correlations {', '.join(sp.corr_types)}: "
            f"{types} {'needs' if len(bad) == 1 else 'need'} all four ({four}). "
            f"Leave {types} out, or select only SPWs with four correlations (spw)")


def check_leakage_gauge(meta, ddids, steps, gauge):
    """leakage_gauge 'absolute' with a D step needs LINEAR feeds on every selected SPW: for circular
    feeds the gauge mode of the leakage changes the cross hands by 2 c V only, which the data do not fix
    (solvers/leakage.py).  Raised before anything is read or written."""
    from ..errors import ParameterError

    if gauge != "absolute" or not any(st.jones_type == "D" for st in steps):
        return
    circ = [meta.spws[d] for d in ddids if meta.spws[d].feed_basis != "linear"]
    if circ:
        sp = circ[0]
        raise ParameterError({"leakage_gauge": [
            f"'absolute' needs linear feeds (XX, XY, YX, YY): SPW {sp.spw_id} (DATA_DESC_ID {sp.ddid}) of "
            f"{meta.path} has {', '.join(sp.corr_types)}. With circular feeds the data do not fix the "
            f"absolute leakage (only relative to one antenna); use leakage_gauge 'reference'"]})


def check_full_terms(meta, ddids, terms, where="jones"):
    """Raise, before anything is written, when a full (non-diagonal) term (D) would correct a selected SPW
    without all four correlations: its inverse mixes the cross hands into the parallel ones, and they are
    absent.  CASA 6.7 applycal refuses the same (measured: 'JonesGenLin matrix apply (J::aR) incompatible
    with VisVector' for a Df table on an XX, YY MS); diagonal terms (K, G, KC, CP) are fine."""
    msg = full_terms_error(meta, ddids, [(t.key, t.jones_type) for t in terms])
    if msg:
        raise AlakazamError(f"{where}: {msg}")


def full_terms_error(meta, ddids, keys):
    """The message of :func:`check_full_terms` (without its parameter head) for the terms ``keys``
    ([(key, Jones type)]; unknown types are left to the table checks), naming every full term, or
    None."""
    from ..jones import terms as jterms

    full = []
    for key, jt in keys:
        try:
            if not jterms.get(jt).diagonal:
                full.append(f"{key} ({jt})")
        except Exception:       # noqa: BLE001 -- not a Jones type: said where the table is read
            pass
    short = [d for d in ddids if meta.spws[d].n_corr != 4]
    if not (full and short):
        return None
    sp = meta.spws[short[0]]
    keys_text = ", ".join(full)
    return (f"{keys_text} {'mixes' if len(full) == 1 else 'mix'} the cross hands into the parallel "
            f"hands, but SPW {sp.spw_id} (DATA_DESC_ID {sp.ddid}) of {meta.path} has only the correlations "
            f"{', '.join(sp.corr_types)}. Leave {keys_text} out, or select only SPWs with four "
            f"correlations (spw)")


def check_known_correlations(meta, ddids, where="spw"):
    """Raise, before anything is read or written, when a selected SPW has a correlation that is not one of
    XX, XY, YX, YY, RR, RL, LR, LL (e.g. Stokes I, code 1, of some converted continuum MSs): the Jones
    terms act on feed correlations (it was a KeyError traceback)."""
    from ..core.ms_io import CORR_ORDER

    for d in ddids:
        sp = meta.spws[d]
        bad = [c for c in sp.corr_types if c not in CORR_ORDER]
        if bad:
            raise AlakazamError(
                f"{where}: SPW {sp.spw_id} (DATA_DESC_ID {d}) of {meta.path} has the correlation(s) "
                f"{', '.join(sp.corr_types)} (POLARIZATION CORR_TYPE; {', '.join(bad)}: not a feed "
                f"correlation): calibration needs XX, XY, YX, YY or RR, RL, LR, LL (any subset). Deselect "
                f"that SPW (spw)")


def cross_hand_phase_note(meta, ddids, apply_parang, terms):
    """The warning an apply with parallactic angle on linear feeds without a cross-hand phase term gives,
    or None.

    Gains solved per hand leave each antenna's X-Y phase relative to the reference antenna's, whose own
    X-Y phase stays in every corrected XY (and its conjugate in YX) until a CP term removes it.  For
    linear feeds the parallactic-angle rotation of the apply then mixes those cross hands into XX and
    YY (``XX = cos^2 chi XX' + sin^2 chi YY' + sin chi cos chi (XY' + YX')`` for the sky frame), so the
    corrected parallel hands of a polarised source (Q, U != 0) depend on the reference antenna; their
    sum (Stokes I) does not (the rotation keeps the trace), nor does an unpolarised source.  Circular
    feeds rotate only the cross hands (a phase), so their parallel hands are unaffected.  CASA's
    applycal (parang=True with no Xf/Kcross table) applies the same without a word; this says it once
    per apply, naming the SPWs."""
    if not apply_parang or any(t.jones_type == "CP" for t in terms):
        return None
    spws = sorted({meta.spws[d].spw_id for d in ddids
                   if meta.spws[d].feed_basis == "linear" and meta.spws[d].n_corr == 4})
    if not spws:
        return None
    return (f"parang: true on linear feeds (SPW {', '.join(map(str, spws))}) with no cross-hand phase (CP) "
            f"term in the apply: the reference antenna's X-Y phase stays in the corrected XY, YX, and the "
            f"parallactic-angle rotation mixes them into XX, YY -- of a polarised source (Q, U != 0) the "
            f"corrected XX, YY and Q, U depend on the reference antenna; Stokes I (XX + YY) and unpolarised "
            f"sources do not. Add a CP term (and KC) solved on a polarised calibrator for polarimetry")
