"""How an apply inverts the leakage D: in full, or linearised as CASA's applycal applies a Df.

The data are ``V = G D P M P^H D^H G^H`` (docs/conventions.md).  Whether the full inverse of D is the
right correction depends on the gains applied with it:

* **gains solved without D pre-applied** (CASA's recipe, and alakazam's with ``iterations: 1``: K, G,
  bandpass first, then KC, D, CP): each amplitude gain already took up, per antenna and hand, the
  parallel-hand part of the leakage, ``(D M D^H)_pp = M_pp (1 + d_pq,a conj(d_pq,b)) + ...`` (second
  order in d, first order on a polarised calibrator).  The full inverse of D then removes it a second
  time.  With the true leakages that costs ~|<d>|^2; with a D solved on an UNPOLARISED calibrator it is
  worse: there D is fixed only up to ``d_pq + c, d_qp - conj(c)`` (an exact symmetry of the cross hands
  alone), the solver's gauge puts c = -d_pq of the reference antenna, and the full inverse lowers Stokes
  I of every source by |c|^2 (review 59c, circular feeds, D on 3C147: -0.65% at |d| ~ 0.05, -2.4 to
  -2.8% at |d| ~ 0.1, silently; CASA 0.0-0.3%), and leaves a false V on the polarised calibrator whose
  gains took up the leakage of its polarised flux (+-1.5% per scan where CASA had 1e-4).  The consistent
  correction is the one CASA applies for a Df: the cross hands corrected to first order in d, the
  parallel hands untouched (:func:`alakazam.jones.algebra.correct_lin_d`);
* **gains solved with that D pre-applied** (``iterations: 2+``: the last round re-solves K, G, bandpass
  with D applied): the gains describe the data without the leakage, and the full inverse is exact
  (review 52: the iterated tables applied so were at the truth to 4e-4 where CASA's linearised apply of
  the same tables left the parallel hands 0.19-0.27% high).

The rule (:func:`linearised`), from what each amplitude gain applied with the D (Jones types G and T
that are not phase-only, fluxscaled ones included) records of the terms it was solved with
(``preapply_chain``: whether a D was among them):

* in full when every such gain was solved with a D pre-applied, or when the gain(s) solved last (attr
  ``term_written``) were -- a gain re-solved with D and the other gains applied takes up what the
  earlier ones left (review 59d: a time gain re-solved so, with the bandpass of a run without D, was
  right with the full inverse: 3C286 V 0.0009 Jy against 0.028 linearised);
* linearised otherwise: the gains solved last were solved without a D, or no amplitude gain is applied
  with the D (the data may have been calibrated by gains solved without it and written to DATA -- a
  split workflow: review 59d, full 3C286 V 0.028 Jy, linearised 0.0005), or a gain records nothing
  (CASA tables, whose solve is unknown: CASA's own apply).

The log line says which and why.  The solve's pre-apply of D is the forward model on the model side
and is not affected.  Pinned by tests/test_dapply.py.
"""

from __future__ import annotations

import numpy as np

from . import chainid

#: the Jones types whose solutions take up the parallel hands' amplitude (the gains of this rule)
GAIN_TYPES = ("G", "T")


def _phase_only(term) -> bool:
    return any(bool(s.attrs.get("phase_only", False)) for s in term.sets)


def _solved_with_d(term):
    """True / False: whether ``term`` records a D among the terms it was solved with; None: it records
    nothing (a table without the attr, e.g. imported from CASA)."""
    from .solve_order import _type_of_key

    seen = None
    for st in term.sets:
        chain = st.attrs.get("preapply_chain")
        if chain is None:
            continue
        seen = bool(seen) or any(_type_of_key(str(k)) == "D" for k in np.atleast_1d(chain) if str(k))
    return seen


def linearised(terms) -> tuple:
    """(whether D is inverted linearised, a one-line reason for the log) for the terms of an apply
    (LoadedTerms, the apply's chain); ``(False, "")`` without a D term."""
    d_terms = [t for t in terms if t.jones_type == "D"]
    if not d_terms:
        return False, ""
    dkeys = ", ".join(t.key for t in d_terms)
    lin = (f"{dkeys} applied linearised, as CASA's applycal applies a Df (the cross hands corrected to "
           "first order, the parallel hands untouched): ")
    gains = [t for t in terms if t.jones_type in GAIN_TYPES and not _phase_only(t)]
    if not gains:
        return True, lin + ("no amplitude gain is applied with it (gains applied before, e.g. written to "
                            "DATA, took up the leakage's parallel-hand part if solved without it)")
    state = {g.key: _solved_with_d(g) for g in gains}
    unknown = [k for k, v in state.items() if v is None]
    if unknown:
        return True, lin + (f"{', '.join(unknown)} {'records' if len(unknown) == 1 else 'record'} no "
                            "pre-applied terms (a table without that record, e.g. CASA's), so "
                            f"{'it is' if len(unknown) == 1 else 'they are'} taken as solved without it")
    with_d = [g for g in gains if state[g.key]]
    without = [g for g in gains if not state[g.key]]
    if with_d and (not without or max(chainid.term_written(g) for g in with_d)
                   >= max(chainid.term_written(g) for g in without)):
        return False, (f"{dkeys} inverted in full: {', '.join(g.key for g in with_d)} "
                       f"{'was' if len(with_d) == 1 else 'were'} solved with a D pre-applied"
                       + (f", after {', '.join(g.key for g in without)}" if without else ""))
    keys = ", ".join(g.key for g in without)
    return True, lin + (f"{keys} {'was' if len(without) == 1 else 'were'} solved without it"
                        + (f" (after {', '.join(g.key for g in with_d)}, solved with it)" if with_d else "")
                        + ", so already took up the leakage's parallel-hand part (the full inverse would "
                        "remove it twice)")


def export_note(table, key) -> str:
    """A warning for akexport (io/casatable.export) of ``key`` of HDF5 ``table``, '' when none: the
    table's amplitude gains (G, T, not phase-only) were solved with a D pre-applied, so akapply of the
    HDF5 tables inverts that D in full (:func:`linearised`), while CASA's applycal applies any Df
    linearised -- and so does akapply of the exported CASA tables, which record no pre-applied terms
    for gains.  Said when exporting the D or such a gain (review h60i: examples/full_polarization.yaml
    on linear feeds exported and applied by CASA, 3C286 Q/I 0.0372-0.0412 for 0.0407, 86 times the
    noise, where akapply of the HDF5 tables was at the noise)."""
    from ..io import hdf5
    from .solve_order import _type_of_key

    keys = list(hdf5.list_keys(table))
    real = hdf5.resolve_key(table, key)
    jt = _type_of_key(real)
    if jt not in ("D",) + GAIN_TYPES:
        return ""
    from types import SimpleNamespace

    gains, terms = [], []
    for k in keys:
        if _type_of_key(k) not in GAIN_TYPES:
            continue
        sets = hdf5.read_term(table, k)
        terms.append(SimpleNamespace(jones_type=_type_of_key(k), key=k, sets=sets))
        if any(bool(s.attrs.get("phase_only", False)) for s in sets):
            continue
        chain = [str(c) for s in sets for c in np.atleast_1d(s.attrs.get("preapply_chain", [])) if str(c)]
        ds = sorted({c for c in chain if _type_of_key(c) == "D"})
        if ds:
            gains.append((k, ds))
    if not gains or (jt in GAIN_TYPES and real not in [g for g, _ in gains]):
        return ""
    # only where akapply of this table's gains with a D inverts it in full (the rule of :func:`linearised`)
    if linearised(terms + [SimpleNamespace(jones_type="D", key=gains[0][1][0], sets=[])])[0]:
        return ""
    names = ", ".join(g for g, _ in gains)
    dnames = ", ".join(sorted({d for _, ds in gains for d in ds}))
    return (f"{real}: {names} of {table} {'was' if len(gains) == 1 else 'were'} solved with {dnames} "
            f"pre-applied, so akapply of the HDF5 tables inverts {dnames} in full with "
            f"{'it' if len(gains) == 1 else 'them'}; CASA's applycal applies a Df linearised (the parallel "
            "hands untouched), and so does akapply of the exported CASA tables (they record no pre-applied "
            "terms for gains): applied from the exported tables, a polarised calibrator keeps the leakage "
            "of its polarised flux in the parallel hands (a review: 3C286's Q/I 0.037-0.041 for 0.0407, "
            "86 times the noise). Apply the HDF5 tables with akapply for the full inverse")
