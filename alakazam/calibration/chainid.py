"""Whether the terms of an apply (or of a solve's external pre-apply) are those each was solved with.

A solve writes into every solution set of a term its identity: the attr ``term_id`` (a uuid4 hex, one
per term and solve, the same in all its sets) and ``term_written`` (UTC time of the solve), and, for
each term it pre-applied (attr ``preapply_chain``, ``preapply_tables``), that term's identity
(``preapply_ids``: the ids joined with ',' -- a key appended to by several solves has several --, and
``preapply_written``), parallel to ``preapply_chain`` (alakazam/unit.py).  akfluxscale copies the sets
with their attrs: a fluxscaled G keeps the identity of the G it scaled (it is that solution rescaled).

:func:`check` compares a list of terms (an apply's, a solve's external pre-apply) with what each
records.  For a listed term T and each term P it was solved with:

* a listed term holds one of P's ids (whatever its key or table): fine;
* P is not listed and no listed term takes its place: fine -- CASA's standard recipe pre-applies a
  phase-only G to the bandpass and leaves it out of the final apply;
* a listed term takes P's place -- the same key from the same (real) table path with other ids (P was
  re-solved in place), or the same key and Jones type from another table -- : a warning naming T, P
  (when it was solved) and the term given instead, and what to do.  T absorbed the difference between
  P and the term it was solved against; applied with another P it is wrong (review 58b F4: a re-solved
  K and bandpass applied with the old gains, TARGET I 0.38-0.13j instead of 0.7).

A warning, not an error: CASA does not check at all and an expert may mean it (a bandpass re-solved
knowing the gains did not change).  Tables written before the identities (no ``term_id`` /
``preapply_ids``) and a replacement without ids (a CASA table) are not checked.
"""

from __future__ import annotations

import datetime
import logging
import os
import uuid

import numpy as np

from .solve_order import _type_of_key    # a key's Jones type, from the registry

log = logging.getLogger("alakazam.chainid")

def new_identity():
    """(term_id, term_written) of a term a solve is about to write."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return uuid.uuid4().hex, now


def _attr_list(attrs, name):
    v = attrs.get(name)
    if v is None:
        return None
    return [str(x) for x in np.atleast_1d(v)]


def term_ids(term) -> set:
    """The ``term_id`` values of ``term``'s sets (a LoadedTerm; empty: written before identities)."""
    return {str(s.attrs.get("term_id", "")) for s in term.sets} - {""}


def term_written(term) -> str:
    """The latest ``term_written`` of ``term``'s sets ('' when not recorded)."""
    return max((str(s.attrs.get("term_written", "")) for s in term.sets), default="")


def role(term) -> str:
    """What a term does in a chain: '<Jones type>/<p|a|ap>/<band|spectral>' (a phase-only full-band
    G is not a bandpass G of the same key in another table: review of the identities, module doc)."""
    sets = list(term.sets)
    mode = ("p" if any(bool(s.attrs.get("phase_only", False)) for s in sets) else
            "a" if any(bool(s.attrs.get("amp_only", False)) for s in sets) else "ap")
    spectral = any(np.size(s.freq) > 1 for s in sets)
    return f"{term.jones_type}/{mode}/{'spectral' if spectral else 'band'}"


def prior_identity(prior, own_ids) -> tuple:
    """(``preapply_ids``, ``preapply_written``, ``preapply_roles``) entries for the pre-applied terms
    ``prior`` of a solve: a term solved in the run itself (``source`` '') has its id from ``own_ids``
    ({key: (id, written)})."""
    from .chain import sets_memo

    ids, written, roles = [], [], []
    for p in prior:
        memo = sets_memo(p, "_chainid")      # once per term and its sets (every solution group asks)
        if "v" not in memo:
            memo["v"] = (",".join(sorted(term_ids(p))), term_written(p), role(p))
        i, w, r = memo["v"]
        if not getattr(p, "source", "") and p.key in own_ids:
            i, w = own_ids[p.key]
        ids.append(i)
        written.append(w)
        roles.append(r)
    return ids, written, roles


def _real(path) -> str:
    return os.path.realpath(os.path.expanduser(str(path))) if path else ""


def recorded(term):
    """[(key, real table path, ids, written, role)] of the terms ``term`` was solved with and whose identity
    it records (union over its sets; a recorded table '' is ``term``'s own)."""
    out = {}
    for s in term.sets:
        a = s.attrs
        chain, ids = _attr_list(a, "preapply_chain"), _attr_list(a, "preapply_ids")
        if not chain or ids is None or len(ids) != len(chain):
            continue
        tables = _attr_list(a, "preapply_tables") or []
        written = _attr_list(a, "preapply_written") or []
        roles = _attr_list(a, "preapply_roles") or []
        for i, key in enumerate(chain):
            got = {x for x in ids[i].split(",") if x}
            if not got:                 # pre-applied a term written before identities
                continue
            tab = tables[i] if i < len(tables) and tables[i] else getattr(term, "source", "")
            k = (key, _real(tab))
            ent = out.setdefault(k, [set(), "", ""])
            ent[0] |= got
            if i < len(written):
                ent[1] = max(ent[1], written[i])
            if i < len(roles):
                ent[2] = roles[i]
    return [(k[0], k[1], v[0], v[1], v[2]) for k, v in out.items()]


def mismatches(listed) -> list:
    """[(T, (key, table, ids, written, role), L)]: listed term T was solved with the recorded term and
    the listed term L (another) is given in its place (module doc)."""
    out = []
    have = [(t, term_ids(t)) for t in listed]
    for t in listed:
        mine = term_ids(t)
        for ent in recorded(t):
            key, tab, ids, _, was = ent
            if any(ids & got for _, got in have):
                continue
            cands = [(other, got) for other, got in have if other is not t and got and other.key == key]
            # the same key of the same table, re-solved in place: it took the recorded term's place
            same_path = [o for o, _ in cands if _real(getattr(o, "source", "")) == tab]
            # the same key of another table takes its place when it does the same (type, phase/amp,
            # spectral) and was not itself solved after ``t`` (keys are numbered per table: the phase-only
            # G0 of cal.h5, pre-applied to its bandpass, and the per-scan G0 of g.h5 solved with that
            # bandpass are two terms)
            other_tab = [o for o, _ in cands if _real(getattr(o, "source", "")) != tab
                         and (role(o) == was if was else o.jones_type == _type_of_key(key))
                         and not any(mine & r[2] for r in recorded(o))]
            for o in (same_path or other_tab)[:1]:
                out.append((t, ent, o))
    return out


def _when(w) -> str:
    return f" (solved {w})" if w else ""


def message(t, ent, o) -> str:
    key, tab, _, written, _ = ent
    src = _real(getattr(o, "source", ""))
    how = f"{key} of {tab} was re-solved since" if src == tab else f"{o.key} of {src}{_when(term_written(o))}"
    return (f"{t.key} of {_real(t.source)} was solved with {key} of {tab}{_when(written)} pre-applied, but "
            f"is given with {how} in its place: {t.key} absorbed what that {key} left in the data and is "
            f"wrong with another (a re-solved delay or bandpass applied with the old gains can be off by "
            f"tens of percent). Re-solve {t.key} with the new {key} pre-applied, or apply the {key} "
            f"{t.key} was solved with")


def check(listed, logger="alakazam.chainid") -> list:
    """The warning messages for the terms ``listed`` (LoadedTerms in chain order), each logged once
    (per task call or YAML run: core/warnonce.py); returned for the task's summary."""
    from ..core import warnonce

    msgs = []
    for t, ent, o in mismatches(listed):
        m = message(t, ent, o)
        if m not in msgs:
            msgs.append(m)
            warnonce.warning(logger, "%s", m)
    return msgs
