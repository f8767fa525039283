"""Solve order of the polarisation terms: the frame a leakage (D) is solved in (docs/conventions.md,
"Solve order and the frame of D").

The RIME used to apply and pre-apply is ``J = [K G KC CP] D P``: the cross-hand diagonal terms
``X = KC CP`` (``diag(x_p, x_q)``, the same for every antenna) sit on the antenna side of D.  A D solved
*before* some of them (CASA's order: Df on an unpolarised calibrator, then Xf) cannot see them: on an
unpolarised source ``X D P (I) P^H D^H X^H = (X D X^H)(X D X^H)^H I``, so it finds ``D_s = X D X^H``, the
leakage in the frame where X is on the *sky* side, ``J = [K G] D_s X P`` (CASA's own order).  The two
chains are the same: ``X D = (X D X^H) X``.  So

* every D set records the keys solved before it (attr ``preapply_chain``); the cross-hand terms of a
  chain that are not among them were solved after it, and the D is brought to the final frame with
  their product Y (:func:`to_final_frame`):  ``D = Y^H D_s Y``, i.e. ``d_pq = d_pq,s y_q / y_p`` and
  ``d_qp = d_qp,s y_p / y_q`` (Y is unitary);
* a KC or CP solved after such a D does not pre-apply it (:func:`step_prior`): ``D_s`` belongs between
  X and P, where the data-side fit of X cannot put it; the cross-hand fit instead takes the
  not-yet-applied leakage as it does in the order [KC, CP, D] (a KC fit is insensitive to it; CP
  absorbs it as one offset per baseline and cross hand, ``cross_phase.remove_leakage_offsets``);
* D solved before a cross-hand term on a *polarised* calibrator has no such exact form (X does not
  commute with ``P M P^H``): :func:`check_block` refuses it before anything runs.

Keys are matched by name (KC0, CP0, ...) between a D's ``preapply_chain`` and the chain it is used in.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import AlakazamError
from ..jones import terms as jterms

#: the cross-hand diagonal types (KC, CP), from the registry
CROSS_TYPES = tuple(n for n in jterms.names() if jterms.get(n).cross_only)
_KEY_RE = re.compile(rf"^({jterms.key_pattern()})(\d+)$")
#: fractional polarisation of a calibrator's model above which D cannot precede KC/CP
POLARISED_FRACTION = 1e-3


def _type_of_key(key):
    m = _KEY_RE.match(str(key))
    return m.group(1) if m else None


def preapply_chain(term):
    """The keys pre-applied when a loaded term was solved (None: unknown, e.g. an external table
    written without the attr -- then it is taken to be in the final frame)."""
    if not term.sets:
        return None
    ch = term.sets[0].attrs.get("preapply_chain")
    if ch is None:
        return None
    return [str(k) for k in (ch if isinstance(ch, (list, tuple, np.ndarray)) else [ch])]


def cross_terms_after(d_term, terms):
    """Indices (into ``terms``) of the cross-hand diagonal terms (KC, CP) that ``d_term`` was not
    solved after: the D must be conjugated by their product to reach the final frame.  A Df read from a
    CASA table in CASA's frame (attr ``leakage_frame`` 'casa': CASA's own, or akexport's default with
    the chain's CP folded in) has the cross-hand phase on its sky side: it is brought to ours by the
    CP terms of ``terms`` (``Y^H D Y``, the inverse of akexport's fold) -- applied as it was, its cross
    hands came out 0.28-0.30 of max |V| off CASA's applycal of the same tables (a review)."""
    if d_term.sets and str(d_term.sets[0].attrs.get("leakage_frame", "")) == "casa":
        return [i for i, t in enumerate(terms) if t.jones_type == "CP"]
    return _solved_before(d_term, terms)


def _solved_before(d_term, terms):
    """Indices (into ``terms``) of the KC/CP terms that ``d_term`` was solved before (its recorded
    pre-apply chain lacks them; [] when not recorded)."""
    chain = preapply_chain(d_term)
    if chain is None:
        return []
    return [i for i, t in enumerate(terms) if t.jones_type in CROSS_TYPES and t.key not in chain]


def to_final_frame(dj, ys):
    """``Y^H D Y`` for D tables ``dj`` (..., 2, 2) and the diagonals ``ys`` (each (..., 2), broadcast
    against dj[..., 0]) of the cross-hand terms solved after D; NaN stays NaN."""
    y = ys[0]
    for z in ys[1:]:
        y = y * z
    # (flagged bins hold NaN: NaN out, without numpy's RuntimeWarning on stderr -- a review)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = y[..., 1] / y[..., 0]                       # y_q / y_p, unit modulus
        out = np.array(dj, dtype=np.complex128, copy=True)
        out[..., 0, 1] = dj[..., 0, 1] * r
        out[..., 1, 0] = dj[..., 1, 0] / r
    return out


def step_prior(jones_type, prior):
    """The terms a step pre-applies: for a KC or CP step, every D solved without a term of that type
    before it is left out (module docstring); otherwise ``prior`` unchanged."""
    if jones_type not in CROSS_TYPES:
        return prior
    out = []
    for t in prior:
        if not jterms.get(t.jones_type).diagonal:      # a leakage (D)
            ch = preapply_chain(t)
            if ch is not None and not any(_type_of_key(k) == jones_type for k in ch):
                continue
        out.append(t)
    return out


def d_before_cross(steps):
    """(D step index, first later KC/CP step index) pairs of a block's steps."""
    out = []
    for i, st in enumerate(steps):
        if not jterms.get(st.jones_type).diagonal:
            later = [j for j in range(i + 1, len(steps)) if steps[j].jones_type in CROSS_TYPES]
            if later:
                out.append((i, later[0]))
    return out


def polarised_fraction(ms, meta, fid, model_col="MODEL_DATA", n_rows=200):
    """max over SPWs of max(|M_pq|, |M_qp|, |M_pp - M_qq| / 2) / |(M_pp + M_qq) / 2| of the first rows
    of a field's model (the feed-frame model without parallactic rotation); 0 for 2 correlations."""
    from ..core import ms_io

    frac = 0.0
    for ddid, sp in meta.spws.items():
        if sp.n_corr != 4:
            continue
        rows = ms_io.row_numbers(ms, ddid, [fid])[:n_rows]
        if not len(rows):
            continue
        ch = ms_io.read_rows(ms, ddid, [fid], data_col=model_col, model_col=None, meta=meta, rows=rows,
                             weights=False)
        m = ms_io.to_four_corr(ch.data, ch.flag, ch.weight, sp.corr_types)[0]     # pp, pq, qp, qq by name
        i = np.abs(0.5 * (m[..., 0] + m[..., 3]))
        p = np.maximum(np.maximum(np.abs(m[..., 1]), np.abs(m[..., 2])), 0.5 * np.abs(m[..., 0] - m[..., 3]))
        ok = i > 0
        if ok.any():
            frac = max(frac, float(np.max(p[ok] / i[ok])))
    return frac


def smodel_fraction(stokes):
    """:func:`polarised_fraction` of akcal's ``smodel`` [I, Q, U, V] (solvers/smodel.py; either feed)."""
    from ..solvers.smodel import correlations

    frac = 0.0
    for corr in (["XX", "XY", "YX", "YY"], ["RR", "RL", "LR", "LL"]):
        m = correlations(stokes, corr)
        i = abs(0.5 * (m[0] + m[3]))
        p = max(abs(m[1]), abs(m[2]), 0.5 * abs(m[0] - m[3]))
        frac = max(frac, p / i if i > 0 else 0.0)
    return frac


def check_block(cfg, meta, step_fields):
    """Refuse, before anything is read or written, a D solved before KC/CP on a polarised calibrator."""
    for i, j in d_before_cross(cfg.steps):
        for fid in step_fields[i]:
            frac = (smodel_fraction(cfg.smodel) if getattr(cfg, "smodel", None)
                    else polarised_fraction(cfg.ms, meta, fid, cfg.model_col))
            if frac > POLARISED_FRACTION:
                st, nx = cfg.steps[i], cfg.steps[j]
                raise AlakazamError(
                    f"jones: {st.key} (D, step {i}) is solved before {nx.key} ({nx.jones_type}, step {j}) on "
                    f"field {meta.fields[fid].name!r}, whose model is polarised ({100 * frac:.1f}% of Stokes "
                    f"I): a leakage solved before the cross-hand terms must come from an unpolarised "
                    f"calibrator (CASA's Df before Xf). Solve that D on an unpolarised field, or solve D "
                    f"after KC and CP (e.g. jones: [K, G, G, KC, CP, D]) on the polarised calibrator")


def check_external_leakage(steps, ext_terms):
    """Refuse, before anything runs, a D pre-applied from another table (external_preapply) to a block
    that solves a D before its own KC/CP (CASA's order).  That D step sees the data in the frame where
    the block's cross-hand terms X, not solved yet, sit on the sky side of the leakage, ``X D X^H``; the
    pre-applied D would have to be brought into it with an X the block has not solved.  Pre-applied as
    it is, the new D came out about -1.86 x the pre-applied one on a simulated MS (a review: |X_q/X_p -
    1| at a cross-hand phase of 137 deg), and the chain of the two is wrong by about that much."""
    ds = [t.key for t in ext_terms if not jterms.get(t.jones_type).diagonal]
    pairs = d_before_cross(steps)
    if ds and pairs:
        i, j = pairs[0]
        st, nx = steps[i], steps[j]
        raise AlakazamError(
            f"external_preapply (akcal gaintable/gainjones): {', '.join(ds)} (D) is pre-applied to a block "
            f"that solves {st.key} (D, step {i}) before {nx.key} ({nx.jones_type}, step {j}), CASA's order: "
            f"that step sees the leakage in a frame set by the cross-hand terms this block has not solved "
            f"yet, so a pre-applied D cannot be placed in it. Solve D after KC and CP (e.g. jones: [KC, CP, "
            f"D]) to refine a pre-applied D, or leave the D out of external_preapply")


def check_terms(terms, ms, meta, model_col="MODEL_DATA", where="jones", cross_types=None):
    """Refuse a loaded D that was solved before a KC/CP of ``terms`` (or, for a solve block, of the
    types in ``cross_types``) on a field whose model in ``ms`` is polarised (fields not in the MS, or
    an MS without ``model_col``, are not checked)."""
    if model_col not in (meta.columns or []):
        return
    names = {f.name: f.id for f in meta.fields}
    for t in terms:
        if jterms.get(t.jones_type).diagonal:
            continue
        later = [terms[k].key for k in _solved_before(t, terms)]     # (not a CASA frame's CP)
        chain = preapply_chain(t)
        if cross_types and chain is not None:
            later += [x for x in cross_types if not any(_type_of_key(k) == x for k in chain)]
        if not later:
            continue
        for fname in sorted({s.field_name for s in t.sets}):
            if fname not in names:
                continue
            frac = polarised_fraction(ms, meta, names[fname], model_col)
            if frac > POLARISED_FRACTION:
                raise AlakazamError(
                    f"{where}: {t.key} (D) was solved before {', '.join(later)} on field {fname!r}, whose "
                    f"model is polarised ({100 * frac:.1f}% of Stokes I): such a leakage is only right from "
                    f"an unpolarised calibrator (CASA's Df before Xf). Re-solve D on an unpolarised field, "
                    f"or after KC and CP")

