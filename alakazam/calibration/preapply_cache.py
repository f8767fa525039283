"""The solve's pre-apply tables of a chunk, shared between the steps of a solve block.

The steps of a block pre-apply growing chains: in the expert recipe's third block KC pre-applies
K, B, G; CP pre-applies K, B, G, KC; D pre-applies K, B, G, KC, CP -- on the same rows (memory tier 1:
the (field, SPW) is read once and kept for every step).  :func:`alakazam.calibration.chain.
preapply_tables` evaluated each step's whole chain again, in every block of times.  Here the product of
the diagonal terms (``diag``, (n_t, n_ant, n_chan, 2)) is kept for all the chunk's unique times, and a
later step whose chain extends a kept one multiplies the kept product by its further terms only.

The values are those of ``chain.preapply_tables`` on each block of times (``tests/test_kccp_speed.py``
pins them): a term's table at a time does not depend on the other times of the block it is evaluated
with, and ``compose`` multiplies the diagonal terms one after the other in chain order, which is what
extending a kept product does.  The parallactic-angle matrices P do depend on the block (their
measures anchors span its times), so they are evaluated per block exactly as before.

Used only where it is exact and cheap in memory: memory tier 1 (the chunk is the whole read, kept for
every step), every pre-applied term diagonal (no D: the sky side is P alone), and the whole chunk's
``diag`` at most :func:`_cap` bytes; otherwise the step evaluates ``chain.preapply_tables`` per block
as before.  The kept tables live in the context's cache (``_Context.cache``), freed with the reads.
"""

from __future__ import annotations

import numpy as np

#: ``_Context.cache`` key prefix of the kept tables
_KEY = "preapply_diag"
#: the kept product is evaluated on blocks of unique times of about this many bytes of working tables
#: (its own 32 B and up to 96 B of one term's evaluation and product per time, antenna and channel)
_EVAL_BLOCK_BYTES = 64 * 2 ** 20


def _cap(data_bytes):
    """Most bytes of one chunk's kept ``diag``: a quarter of its DATA column, at least 64 MiB."""
    return max(64 * 2 ** 20, int(data_bytes) // 4)


def usable(ctx, prior, n_t, n_ant, n_chan, data_bytes) -> bool:
    """Whether :func:`block` keeps the chunk's tables (module docstring)."""
    return (getattr(ctx, "tier", 0) == 1 and bool(prior) and all(t.diagonal for t in prior)
            and n_t * n_ant * max(n_chan, 1) * 32 <= _cap(data_bytes))


def block(ctx, prior, meta, ddid, chans, fld, utimes, uscan, t0, t1, apply_parang, data_bytes):
    """``(diag, sky)`` of :func:`alakazam.calibration.chain.preapply_tables` for the unique times
    ``utimes[t0:t1]`` of a chunk (``uscan``: their scans), the same values; ``diag`` a view into the
    chunk's kept product when :func:`usable` (built on first use)."""
    from . import chain
    from .spwmap import map_prior

    chans = np.asarray(chans)
    n_ant = len(meta.active_ants)
    prior = map_prior(prior, meta, ddid)       # gaintable spwmap: the mapped terms (stable objects)
    if (not usable(ctx, prior, len(utimes), n_ant, len(chans), data_bytes)
            or _regrouped(ctx, prior, meta, ddid, fld, utimes)):
        return chain.preapply_tables(prior, meta, ddid, chans, fld, utimes[t0:t1], apply_parang,
                                     time_scan=uscan[t0:t1])
    diag = _chunk_diag(ctx, prior, meta, ddid, chans, fld, utimes, uscan)[t0:t1]
    sky = None
    if apply_parang:        # as preapply_tables with no D term: P on this block's times, one channel
        sky = _parang(ctx, meta, ddid, fld, utimes[t0:t1])
    return diag, sky


def _regrouped(ctx, prior, meta, ddid, fld, utimes):
    """Whether the chain's terms would choose different calibrator fields for some of the chunk's times
    (:func:`.chainfield.groups`: then :func:`.chain.compose` evaluates it with one field per time, which
    a kept product extended term by term would not; such a chain takes the per-block path).  When it
    does not, a kept product (built only for such chains) times the further terms is that of compose.
    Evaluated once per chunk and chain (kept in the context's cache); without evaluating the terms when
    fewer than two of them choose among other fields (the usual case: terms solved on the field itself,
    which use its own solutions)."""
    from . import chainfield

    key = (_KEY + "_groups", int(ddid), str(fld.name), np.asarray(utimes, float).tobytes(),
           tuple(_term_id(t) for t in prior))
    got = ctx.cache.get(key)
    if got is None:
        spw_id = int(meta.spws[ddid].spw_id)
        others = [t for t in prior if t.field_select in chainfield.FREE and str(fld.name) not in
                  {str(s.attrs.get("field_name")) for s in t.sets if int(s.attrs.get("spw", -1)) == spw_id}]
        got = ctx.cache[key] = len(others) >= 2 and chainfield.groups(
            prior, spw_id, np.asarray(utimes, float), fld.name, (fld.ra, fld.dec), True) is not None
    return got


def _parang(ctx, meta, ddid, fld, times):
    """P (n_t, n_ant, 1, 2, 2) on exactly these times, kept for a later step with the same block of
    times (64 B per time and antenna)."""
    from . import chain

    spw = meta.spws[ddid]
    rec = spw.receptor_angle if spw.receptor_angle is not None else meta.receptor_angle
    key = (_KEY + "_parang", str(fld.name), str(spw.feed_basis), np.asarray(rec, float).tobytes(),
           np.asarray(times, float).tobytes())
    p = ctx.cache.get(key)
    if p is None:
        p = ctx.cache[key] = np.ascontiguousarray(chain.parang_table(meta, fld, times, spw)[:, :, None])
    return p


def _chunk_diag(ctx, prior, meta, ddid, chans, fld, utimes, uscan):
    """The product of ``prior``'s diagonals on every time of the chunk, (n_t, n_ant, n_chan, 2): kept,
    or the longest kept product of a leading part of ``prior`` times the remaining terms."""
    from . import chain

    key = (_KEY, int(ddid), str(fld.name), chans.tobytes(), np.asarray(utimes, float).tobytes(),
           np.asarray(uscan).tobytes())
    kept = ctx.cache.get(key)
    ids = tuple(_term_id(t) for t in prior)
    if kept is not None and kept[0] == ids:
        return kept[2]
    holder = []
    start = 0
    if kept is not None and len(kept[0]) < len(ids) and ids[:len(kept[0])] == kept[0]:
        # extended below; the shorter product is not kept (no later step of the block asks for it)
        holder, start = [kept[2]], len(kept[0])
        del ctx.cache[key]
    kept = None
    rest = prior[start:]
    spw = meta.spws[ddid]
    freqs = np.asarray(spw.freqs)[chans]
    names = [meta.ant_names[a] for a in meta.active_ants]
    shape = (len(utimes), len(names), len(freqs), 2)
    # the product in place of the kept one when nothing else references it (the steps that used it are
    # done): no new table, no page faulted again (issue 16)
    out = holder[0] if holder and _unreferenced(holder) else np.empty(shape, np.complex128)
    base = holder[0] if holder else None
    del holder
    step = max(1, _EVAL_BLOCK_BYTES // (128 * len(names) * max(len(freqs), 1)))
    for a in range(0, len(utimes), step):
        b = min(a + step, len(utimes))
        if base is None:
            out[a:b], _ = chain.compose(rest, spw.spw_id, utimes[a:b], freqs, names, fld.name,
                                        (fld.ra, fld.dec), prefer_own=True, time_scan=uscan[a:b],
                                        frame_terms=prior)
            continue
        # compose's next products, in chain order: ((kept product) * d_1) * d_2 ...; each term's table
        # as evaluated (a 1-bin term broadcast by the multiplication, not copied to every channel first)
        prod = base[a:b]
        for t in rest:
            d, _ = chain.compose([t], spw.spw_id, utimes[a:b], freqs, names, fld.name, (fld.ra, fld.dec),
                                 prefer_own=True, time_scan=uscan[a:b], full=False, frame_terms=prior)
            prod = np.multiply(prod, d, out=out[a:b])
    # the terms (and their solution sets) stay referenced with their product: their ids are not reused
    ctx.cache[key] = (ids, list(prior), out)
    return out


def _unreferenced(holder):
    """Whether nothing but the list ``holder`` references its one array (its count compared with a
    fresh array's seen the same way, as :func:`alakazam.unit._unreferenced`)."""
    import sys

    probe = [np.empty(0)]
    return sys.getrefcount(holder[0]) <= sys.getrefcount(probe[0])


def _term_id(term):
    """What a term's tables depend on: its solution sets (by identity: the flow rebuilds a term from the
    same sets for each step of a field-major solve; a set is final once a later step pre-applies it) and
    how it is evaluated."""
    return (term.key, term.jones_type, term.field_select, term.time_interp,
            tuple(term.solution_field or ()), term.freq_interp, repr(term.spwmap),
            tuple(id(s) for s in term.sets))
