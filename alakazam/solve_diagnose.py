"""Why a solve step has no usable data: what the selection holds, sample by sample (review 58b).

A step whose every solution is flagged for want of data ended with "the selected data are all flagged,
have zero weight ... or MODEL_DATA is NaN or zero; check FLAG, SIGMA and MODEL_DATA", which never named
the selection (``spw='0:20~39'`` with those channels flagged by RFI flags) nor told "my selection is all
flagged" from "the solve flagged everything" or "MODEL_DATA was never filled".  Here, on that error path
only (nothing is added to a solve that succeeds):

* :func:`selection_text`: the fields, ``spw`` (and the channels it selects per SPW), ``scan`` and the
  row selection (antenna, uvrange, ...) the step read, each named by its parameter;
* :func:`sample_counts`: the selected samples (cross-correlations, the correlations the term solves
  on) read again and each counted once, in this order: flagged in FLAG (with FLAG_ROW) as read; zero
  or non-finite weight; the model 0 or non-finite; the data 0 or non-finite; flagged by the solve's own
  sample flags (core/cellflags.py: bad values, RFI, antennas without signal); usable.  And the (field,
  SPW)s whose model is 0 or non-finite in every selected row and correlation (an unfilled MODEL_DATA);
* :func:`describe`: the sentence the error carries;
* :func:`model_precheck`: before a block reads its data, a few rows of each selected (field, SPW)'s
  model; where those are all 0 / non-finite, the whole model of that (field, SPW) is read to be sure.
  A step all of whose (field, SPW)s have no model is refused before the solve (every solution would be
  flagged); one (field, SPW) without a model among others is a WARNING.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("alakazam.flow")

#: rows of a (field, SPW) whose model :func:`model_precheck` reads first
PRECHECK_ROWS = 32

MODEL_HINT = ("fill it (CASA setjy with usescratch=True, ft, or your own predict; alakazam does not "
              "compute models) or give akcal a point-source model instead (smodel=[I, Q, U, V]; YAML smodel)")


def _ranges(ids) -> str:
    """'20~39', '0~3,7' (CASA's channel / id syntax)."""
    ids = sorted(int(x) for x in ids)
    runs = []
    for x in ids:
        if runs and x == runs[-1][1] + 1:
            runs[-1][1] = x
        else:
            runs.append([x, x])
    return ",".join(str(a) if a == b else f"{a}~{b}" for a, b in runs)


def selection_text(cfg, meta, spw_sel, rowsel, field) -> str:
    """"field(s) ['3C286'], spw='0:20~39' (SPW 0 channels 20~39), scan='2', antenna='!C05'": what the
    step selected, each part named by its parameter."""
    parts = [f"field(s) {field}"]
    chans = []
    for ddid, ch in sorted((spw_sel or {}).items()):
        sp = meta.spws[ddid]
        n = len(np.asarray(sp.freqs))
        chans.append(f"SPW {int(sp.spw_id)} " + ("all channels" if len(ch) == n else
                                                  f"channel{'s' if len(ch) > 1 else ''} {_ranges(ch)}"))
    parts.append(f"spw={cfg.spw!r}" + (f" ({'; '.join(chans)})" if chans else ""))
    if cfg.scan:
        parts.append(f"scan={cfg.scan!r}")
    for k, v in (getattr(rowsel, "text", None) or {}).items():
        parts.append(f"{k}={v!r}")
    return ", ".join(parts)


def _bad(a):
    return ~np.isfinite(a) | (a == 0)


def _pieces(cfg, meta, ddid, fid, scans, chans, rowsel, max_rows, model_col, weights=True):
    """The chunks of the selected rows of (field ``fid``, DATA_DESC_ID ``ddid``), read as the solve's
    tiers 2/3 read them (whole row groups of the channel statistics, at most ``max_rows`` rows each),
    with the row groups: [(Chunk, group ids or None)]."""
    from .core import cellflags, ms_io

    rows = ms_io.row_numbers(cfg.ms, ddid, [fid], scans, rowsel=rowsel)
    for rr, gid in cellflags.block_reads(cfg.ms, rows, max(int(max_rows or 0), 1)):
        ch = ms_io.read_rows(cfg.ms, ddid, [fid], chans=chans, data_col=cfg.data_col, model_col=model_col,
                             meta=meta, rows=rr, rowsel=rowsel, weights=weights)
        same = len(ch.rownr) == len(rr) and np.array_equal(ch.rownr, rr)
        yield ch, (gid if same else None)


CATEGORIES = ("flag", "weight", "model", "data", "solve", "usable")


def sample_counts(cfg, meta, spw_sel, scans, rowsel, fids, corr_use, max_rows) -> dict:
    """{'n': selected samples, each of :data:`CATEGORIES`: samples (disjoint, in that order),
    'no_model': [(field name, SPW id)] whose model is 0 / non-finite in every selected row}."""
    from .core import flagcache, ms_io
    from .unit import _smodel

    out = dict.fromkeys(("n",) + CATEGORIES, 0)
    no_model = []
    model_col = None if cfg.smodel else cfg.model_col
    cu = np.asarray(corr_use, bool)
    for fid in fids:
        for ddid, chans in sorted(spw_sel.items()):
            corr_types = meta.spws[ddid].corr_types
            present = np.asarray(corr_types_present(corr_types))
            n_read = 0
            model_seen = False
            for ch, gid in _pieces(cfg, meta, ddid, fid, scans, chans, rowsel, max_rows, model_col):
                if not ch.n_row:
                    continue
                _smodel(cfg, meta, ddid, ch)
                solve = flagcache.flags(cfg, ch, corr_types, chans, groups=gid)
                d, m, f, w = ch.four_corr(corr_types)
                _, s4, _ = ms_io.to_four_corr(ch.data, solve, ch.weight, corr_types)
                if m is not None and not model_seen:
                    model_seen = bool((~_bad(m[..., present])).any())
                n_read += ch.n_row
                cross = ch.ant1 != ch.ant2
                d, f, s4, w = (a[cross][..., cu] for a in (d, f, s4, w))
                m = m[cross][..., cu] if m is not None else None
                left = ~f
                out["n"] += f.size
                out["flag"] += int(f.sum())
                bad = left & ~(np.isfinite(w) & (w > 0))
                out["weight"] += int(bad.sum())
                left &= ~bad
                if m is not None:
                    bad = left & _bad(m)
                    out["model"] += int(bad.sum())
                    left &= ~bad
                bad = left & _bad(d)
                out["data"] += int(bad.sum())
                left &= ~bad
                bad = left & s4
                out["solve"] += int(bad.sum())
                left &= ~bad
                out["usable"] += int(left.sum())
            if n_read and model_col is not None and not model_seen:
                no_model.append((meta.fields[fid].name, int(meta.spws[ddid].spw_id)))
    out["no_model"] = no_model
    return out


def corr_types_present(corr_types):
    """The 4-correlation positions (pp, pq, qp, qq) the MS records (ms_io.CORR_ORDER)."""
    from .core.ms_io import CORR_ORDER

    return sorted({CORR_ORDER[str(c)] for c in corr_types if str(c) in CORR_ORDER})


def no_model_text(no_model, model_col) -> str:
    """'MODEL_DATA is 0 (or NaN) for field 3C147 (spw 0) in every selected row: fill it ...'."""
    if not no_model:
        return ""
    by_field = {}
    for f, sp in no_model:
        by_field.setdefault(f, []).append(sp)
    where = "; ".join(f"field {f} (spw {_ranges(sp)})" for f, sp in by_field.items())
    return f"{model_col} is 0 (or NaN) for {where} in every selected row: {MODEL_HINT}"


def describe(cfg, counts, selection) -> str:
    """The sentence an all-flagged step's error carries: the selection and where its samples went."""
    n = counts["n"]
    if not n:
        return f"; the selection -- {selection} -- holds no cross-correlation samples"
    pct = {k: 100.0 * counts[k] / n for k in CATEGORIES}

    def p(k):
        v = pct[k]
        return "0%" if counts[k] == 0 else ("100%" if counts[k] == n else
                                             f"{v:.3g}%" if v >= 0.01 else "<0.01%")

    from .core import ms_io
    wcol = ms_io.weight_column(cfg.ms, cfg.data_col).split(" ")[0]
    model = "smodel" if cfg.smodel else cfg.model_col
    text = (f"; the selection -- {selection} -- holds {n} samples (cross-correlations, the correlations "
            f"the term solves on), each counted once: {p('flag')} flagged in FLAG as read, {p('weight')} of "
            f"zero weight ({wcol}), {p('model')} with {model} 0 or NaN, {p('data')} with {cfg.data_col} 0 "
            f"or NaN, {p('solve')} flagged by the solve's own sample flags (bad values, RFI, antennas "
            f"without signal; rfi_threshold={cfg.rfi_threshold}), {p('usable')} usable")
    if counts["flag"] == n:
        text += (" -- every selected sample is flagged in FLAG: the selection itself has no unflagged "
                 "data (select other fields / SPWs / channels, or put flags back: akflagmanager restores a "
                 "saved flag version)")
    elif counts["solve"] and counts["usable"] == 0 and counts["solve"] >= 0.5 * n:
        text += (" -- the solve's own sample flags flagged what FLAG left (raise rfi_threshold, or set it "
                 "to 0 to turn them off)")
    elif counts["usable"]:
        text += (" -- the usable samples' solutions were flagged after the read (flagged pre-applied "
                 "solutions, or too few baselines per antenna)")
    nm = no_model_text(counts.get("no_model"), cfg.model_col)
    if nm:
        text += "; " + nm
    return text


def explain(ctx, step) -> str:
    """:func:`describe` for ``step`` of the block of ``ctx`` ('' when the read fails: the error is
    raised without it rather than replaced)."""
    from .core import ms_io
    from .jones import terms

    cfg = ctx.cfg
    try:
        fids = ms_io.resolve_fields(ctx.meta, step.field)
        corr_use = np.isin(np.arange(4), terms.get(step.jones_type).corr)
        counts = sample_counts(cfg, ctx.meta, ctx.spw_sel, ctx.scans, ctx.rowsel, fids, corr_use,
                               ctx.max_rows)
        return describe(cfg, counts, selection_text(cfg, ctx.meta, ctx.spw_sel, ctx.rowsel, step.field))
    except Exception as e:          # noqa: BLE001 -- a diagnosis never hides the error it explains
        log.debug("no sample counts for %s: %s", step.key, e)
        return f"; selection: {selection_text(cfg, ctx.meta, ctx.spw_sel, ctx.rowsel, step.field)}"


def _model_zero(cfg, meta, ddid, fid, scans, chans, rowsel, max_rows, rows=None) -> bool:
    """The model of (field ``fid``, ``ddid``) is 0 / non-finite in every selected row (``rows``: only
    those) and recorded correlation."""
    from .core import ms_io

    corr_types = meta.spws[ddid].corr_types
    present = np.asarray(corr_types_present(corr_types))
    if rows is None:
        pieces = (c.model for c, _ in _pieces(cfg, meta, ddid, fid, scans, chans, rowsel, max_rows,
                                              cfg.model_col, weights=False))
    else:               # a few rows: the model column alone (no data, flags or weights read)
        pieces = [ms_io.model_rows(cfg.ms, cfg.model_col, rows, chans)]
    seen = False
    for model in pieces:
        if model is None or not len(model):
            continue
        seen = True
        m = ms_io.to_four_corr(model, np.zeros(model.shape, bool), np.ones(model.shape), corr_types)[0]
        if (~_bad(m[..., present])).any():
            return False
    return seen


def model_precheck(cfg, meta, spw_sel, scans, step_fields, rowsel, max_rows):
    """Before the block's reads (module doc): refuse a step whose every selected (field, SPW) has a
    model 0 / NaN in every row, warn of such a (field, SPW) among others."""
    from .core import ms_io
    from .errors import AlakazamError

    if cfg.smodel or not spw_sel:
        return
    known = {}

    def zero(fid, ddid):
        if (fid, ddid) not in known:
            chans = spw_sel[ddid]
            rows = ms_io.row_numbers(cfg.ms, ddid, [fid], scans, rowsel=rowsel)
            if not len(rows):
                known[(fid, ddid)] = None
            else:
                pick = ms_io.spread_rows(rows, PRECHECK_ROWS)
                try:
                    known[(fid, ddid)] = (
                        _model_zero(cfg, meta, ddid, fid, scans, chans, rowsel, max_rows, pick)
                        and _model_zero(cfg, meta, ddid, fid, scans, chans, rowsel, max_rows))
                except Exception as e:      # noqa: BLE001 -- a check never stops a solve it cannot judge
                    log.debug("model precheck of field %d DATA_DESC_ID %d: %s", fid, ddid, e)
                    known[(fid, ddid)] = None
        return known[(fid, ddid)]

    for step, fids in zip(cfg.steps, step_fields):
        res = {(f, d): zero(f, d) for f in fids for d in sorted(spw_sel)}
        have = {k: v for k, v in res.items() if v is not None}
        bad = [(meta.fields[f].name, int(meta.spws[d].spw_id)) for (f, d), v in have.items() if v]
        if not bad:
            continue
        if len(bad) == len(have):
            from .flow import _why_all_flagged
            raise AlakazamError(
                f"{step.key} ({step.jones_type}): every solution is flagged -- refused before the solve read "
                f"the data: {_why_all_flagged(cfg, 1, {})}; {no_model_text(bad, cfg.model_col)} (selection: "
                f"{selection_text(cfg, meta, spw_sel, rowsel, step.field)}; nothing was written for "
                f"{step.key})")
        log.warning("%s (%s): %s; those solutions will be flagged", step.key, step.jones_type,
                    no_model_text(bad, cfg.model_col))
