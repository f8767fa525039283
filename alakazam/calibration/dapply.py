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

The rule (:func:`linearised`): an apply with a D term inverts D linearised unless every amplitude gain
applied with it (Jones types G and T that are not phase-only, fluxscaled ones included) records one of
the applied D's identities among the terms it was solved with (calibration/chainid.py,
``preapply_ids``).  Gains without recorded identities (tables of older versions, CASA tables) count as
solved without D: the CASA form.  An apply of D without amplitude gains inverts it in full (nothing took
up the parallel-hand leakage).  The solve's pre-apply of D is the forward model on the model side and is
not affected.  Pinned by tests/test_dapply.py.
"""

from __future__ import annotations

from . import chainid

#: the Jones types whose solutions take up the parallel hands' amplitude (the gains of this rule)
GAIN_TYPES = ("G", "T")


def _phase_only(term) -> bool:
    return any(bool(s.attrs.get("phase_only", False)) for s in term.sets)


def linearised(terms) -> tuple:
    """(whether D is inverted linearised, a one-line reason for the log) for the terms of an apply
    (LoadedTerms, the apply's chain); ``(False, "")`` without a D term."""
    d_terms = [t for t in terms if t.jones_type == "D"]
    if not d_terms:
        return False, ""
    gains = [t for t in terms if t.jones_type in GAIN_TYPES and not _phase_only(t)]
    dkeys = ", ".join(t.key for t in d_terms)
    if not gains:
        return False, f"{dkeys} inverted in full (no amplitude gain is applied with it)"
    d_ids = set().union(*(chainid.term_ids(t) for t in d_terms))
    without = []
    for g in gains:
        ids = set().union(*(rec[2] for rec in chainid.recorded(g))) if chainid.recorded(g) else set()
        if not (d_ids & ids):
            without.append(g.key)
    if without:
        return True, (f"{dkeys} applied linearised, as CASA's applycal applies a Df (the cross hands "
                      f"corrected to first order, the parallel hands untouched): {', '.join(without)} "
                      f"{'was' if len(without) == 1 else 'were'} solved without it, so "
                      f"{'it' if len(without) == 1 else 'they'} already took up the leakage's parallel-hand "
                      "part (the full inverse would remove it twice)")
    return False, (f"{dkeys} inverted in full: the gains applied with it ({', '.join(g.key for g in gains)}) "
                   "were solved with it pre-applied")
