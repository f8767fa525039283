"""The parallactic angle and the polarisation terms (KC, CP, D): review 58f.

A calibrator's Stokes Q and U are defined on the sky; alt-az feeds turn against the sky by the
parallactic angle chi, so in the feed frame the polarised flux rotates, ``Q_f + i U_f = (Q + i U)
exp(-2 i chi)`` (jones/parang.py).  What follows from that:

* :func:`solve_errors`: a KC, CP or D step solved with ``apply_parang`` false on a calibrator whose
  model is polarised (linear polarisation sqrt(Q^2 + U^2) / I above ``POLARISED_FRACTION``, from a
  sample of its model rows, or from ``smodel``) while the antennas' mounts turn the feeds (anything
  but equatorial): the model stays in the sky frame and the terms absorb the rotation (review 58f,
  examples/full_polarization.yaml with the solve's apply_parang false: the cross-hand phase 166 deg
  off, the leakages 0.20 off, stored unflagged).  Refused before anything is read.  An UNPOLARISED
  calibrator is fine without it (``P I P^H = I``: D on 3C147 needs no parallactic angle), and a V-only
  model too (V does not rotate).
* :func:`apply_notes`: the apply of KC, CP or D without the parallactic angle leaves Q and U in the
  feed frame (a warning; CASA's applycal is silent), and of such a term solved without it (or with
  it, whatever the apply does): the mismatch named.
* :func:`coverage_notes`: CP or D on a polarised calibrator over a cell whose parallactic angle hardly
  changes.  In the cross hands (linear feeds; circular the same with Q_f, U_f from RL)

      V_pq = x [U_f(t) + i V + (d_a + conj d_b) I + (conj d_b - d_a) Q_f(t)]

  the leakage of the unpolarised flux, ``(d_a + conj d_b) I``, is constant over the cell; only the
  rotation of U_f tells the source from it.  A phase error phi of x changes the model by
  ``i phi x U_f(t)``, whose constant part a common leakage absorbs: the information on phi is the
  varying fraction of the polarised signal, ``1 - |<exp(2 i chi)>|^2`` over the cell's samples
  (``(2 dchi)^2 / 12`` for a range dchi covered uniformly, ``sin^2 dchi`` for two scans).  Below
  ``cross_phase.MIN_VARYING_FRACTION`` (5%) CP does not even fit the leakage offsets, and its phase
  is off by the array's mean leakage over the feed-frame polarisation: from XY and YX together
  ``Im(<d_pq> - <d_qp>) / p_f`` rad (p_f = |U_f| / I) -- typically |d| / (sqrt(N_ant) p_f) for
  independent leakages (review 58f's MS: 40 antennas, |d| 0.06, p_f 0.054: 10 deg, measured 9.8-10.7;
  its truth gives -8.0), up to 2 |d| / p_f for a common part -- and a D solved with that CP absorbs
  it (review 58f: one scan of 3C286, 0.5 deg of parallactic angle: CP 9.8-10.7 deg off, D 0.029 off,
  with "converged" rounds).  A warning, naming the range and the remedy.  Above the threshold CP fits
  the offsets and is left with the leakage of the polarised flux, (conj d_b - d_a) Q_f(t), which
  rotates too and biases it by ~|d| x the correlation of Q_f and U_f over the cell: that the rounds
  of ``iterations`` remove (README, "iterations").
"""

from __future__ import annotations

import logging

import numpy as np

# POLARISED_FRACTION: the linear polarisation sqrt(Q^2 + U^2) / I of a model above which it counts as
# polarised -- the threshold of solve_order's check of D before KC/CP, one constant for both
from .solve_order import POLARISED_FRACTION

log = logging.getLogger("alakazam")

#: rows of each selected (field, SPW) whose model is sampled
SAMPLE_ROWS = 32
#: the polarisation terms (solved from the cross hands, or mixing them)
POL_TYPES = ("KC", "CP", "D")


def mounts(ms, meta):
    """The MOUNT of each antenna with data (upper case; '' where the column is missing): the MS
    metadata's (ms_io.MSMeta.ant_mounts; ``ms`` is not read again)."""
    return meta.active_mounts


def feeds_rotate(ms, meta):
    """(whether the parallactic angle turns the feeds against the sky, the mounts as text): alt-az,
    Nasmyth and X-Y mounts do (an empty MOUNT is taken as alt-az); EQUATORIAL and mounts casacore does
    not handle do not (jones/parang.mount_kind: no rotation, as CASA)."""
    from ..jones.parang import mount_kind

    m = mounts(ms, meta)
    kinds = sorted(set(x or "(empty: alt-az assumed)" for x in m))
    return ((not m or any(mount_kind(x) not in ("equatorial", "unknown") for x in m)),
            ", ".join(kinds) or "alt-az assumed")


def _stokes_of(m, basis):
    """(I, Q, U) of 4-correlation model samples (pp, pq, qp, qq last), in the model's (sky) frame."""
    i = 0.5 * (m[..., 0] + m[..., 3]).real
    if basis == "linear":
        q = 0.5 * (m[..., 0] - m[..., 3]).real
        u = 0.5 * (m[..., 1] + m[..., 2]).real
    else:
        p = 0.5 * (m[..., 1] + np.conj(m[..., 2]))      # RL = Q + iU, LR = Q - iU
        q, u = p.real, p.imag
    return i, q, u


def model_stokes(cfg, meta, spw_sel, scans, fid, rowsel=None):
    """{DATA_DESC_ID: (I, Q, U)}: the median Stokes of a sample of the selected model rows of field
    ``fid`` (``SAMPLE_ROWS`` spread over its rows; ``smodel`` when given), sky frame.  Missing where
    the field has no rows or the model cannot be read."""
    from ..core import ms_io

    out = {}
    for ddid in sorted(spw_sel):
        sp = meta.spws[ddid]
        if sp.n_corr != 4:
            continue
        sm = getattr(cfg, "smodel", None)
        if sm:
            s = list(sm) + [0.0] * (4 - len(sm))
            out[ddid] = (float(s[0]), float(s[1]), float(s[2]))
            continue
        try:
            rows = ms_io.row_numbers(cfg.ms, ddid, [fid], scans, rowsel=rowsel)
            if not len(rows):
                continue
            pick = ms_io.spread_rows(rows, SAMPLE_ROWS)
            model = ms_io.model_rows(cfg.ms, cfg.model_col, pick, spw_sel[ddid])
            m = ms_io.to_four_corr(model, np.zeros(model.shape, bool), np.ones(model.shape), sp.corr_types)[0]
            i, qq, u = _stokes_of(m, sp.feed_basis)
            ok = np.isfinite(i) & np.isfinite(qq) & np.isfinite(u) & (i > 0)
            if ok.any():
                out[ddid] = (float(np.median(i[ok])), float(np.median(qq[ok])), float(np.median(u[ok])))
        except Exception as e:      # noqa: BLE001 -- a check never stops a solve it cannot judge
            log.debug("model sample of field %d DATA_DESC_ID %d: %s", fid, ddid, e)
    return out


def pol_fraction(stokes):
    """max over SPWs of sqrt(Q^2 + U^2) / I of :func:`model_stokes` (nan when none)."""
    fr = [np.hypot(q, u) / i for i, q, u in stokes.values() if i > 0]
    return float(max(fr)) if fr else float("nan")


def solve_errors(cfg, meta, spw_sel, scans, step_fields, rowsel=None, fractions=None):
    """[message] for the KC, CP, D steps of a block solved without the parallactic angle on a polarised
    calibrator on feeds that turn (module doc); [] when none.  Nothing but a sample of model rows is
    read.  ``fractions`` (a dict), when given, receives each such step's field id -> its model's linear
    polarisation fraction (recorded in the solutions: :func:`apply_notes`)."""
    if getattr(cfg, "apply_parang", False):
        return []
    idx = [i for i, st in enumerate(cfg.steps) if st.jones_type in POL_TYPES]
    if not idx:
        return []
    from .parang_check import cross_hand_steps_error
    four = {d: c for d, c in spw_sel.items() if meta.spws[d].n_corr == 4}
    if not four or cross_hand_steps_error(meta, spw_sel, cfg.steps):
        return []       # (an SPW without the cross hands: that error, which stops the block, is said)
    rotate, kinds = feeds_rotate(cfg.ms, meta)
    if not rotate:
        return []
    frac = {} if fractions is None else fractions
    bad = []
    for i in idx:
        for fid in step_fields[i]:
            if fid not in frac:
                frac[fid] = pol_fraction(model_stokes(cfg, meta, four, scans, fid, rowsel))
            if np.isfinite(frac[fid]) and frac[fid] > POLARISED_FRACTION:
                bad.append((i, fid))
    if not bad:
        return []
    steps = ", ".join(dict.fromkeys(f"{cfg.steps[i].key} ({cfg.steps[i].jones_type}, step {i})"
                                    for i, _ in bad))
    fields = ", ".join(dict.fromkeys(f"{meta.fields[f].name!r} ({100 * frac[f]:.1f}% linearly polarised)"
                                     for _, f in bad))
    model = "smodel" if getattr(cfg, "smodel", None) else cfg.model_col
    return [f"false, but {steps} {'is' if len(set(i for i, _ in bad)) == 1 else 'are'} solved on "
            f"{fields} -- its {model} has Stokes Q, U -- with the antennas' mounts ({kinds}) turning the "
            f"feeds against the sky: in the feed frame the calibrator's Q and U rotate with the parallactic "
            f"angle, and a model left in the sky frame makes KC, CP and D absorb that rotation (a review: "
            f"examples/full_polarization.yaml solved so, the cross-hand phase 166 deg and the leakages 0.20 "
            f"off, stored unflagged, a target's angle -47 deg for -20). Set apply_parang: true (akcal "
            f"parang=True; CASA's polcal always applies it). A D solved on an UNPOLARISED calibrator needs "
            f"no parallactic angle (its model is unchanged by the rotation)"]


def cross_fraction(cfg, meta, spw_sel, scans, fid, rowsel=None) -> float:
    """The model's cross-hand amplitude against its parallel hands, sum |M_pq| + |M_qp| over sum |M_pp| +
    |M_qq|, max over the selected 4-correlation SPWs, from ``smodel`` or the sampled MODEL_DATA rows (sky
    frame: 0 for an unpolarised source in either basis; linear feeds see U and V, circular Q and U);
    nan where it cannot be read."""
    from ..core import ms_io

    out = []
    for ddid in sorted(spw_sel):
        sp = meta.spws[ddid]
        if sp.n_corr != 4:
            continue
        sm = getattr(cfg, "smodel", None)
        try:
            if sm:
                i, q, u, v = (list(map(float, sm)) + [0.0] * 4)[:4]
                cross = (abs(complex(u, v)) if sp.feed_basis == "linear" else abs(complex(q, u)))
                out.append(cross / abs(i) if i else np.nan)
                continue
            rows = ms_io.row_numbers(cfg.ms, ddid, [fid], scans, rowsel=rowsel)
            if not len(rows):
                continue
            pick = ms_io.spread_rows(rows, SAMPLE_ROWS)
            model = ms_io.model_rows(cfg.ms, cfg.model_col, pick, spw_sel[ddid])
            a = np.abs(ms_io.to_four_corr(model, np.zeros(model.shape, bool), np.ones(model.shape),
                                          sp.corr_types)[0])
            ok = np.isfinite(a).all(axis=-1)
            par = (a[..., 0] + a[..., 3])[ok].sum()
            if par > 0:
                out.append(float((a[..., 1] + a[..., 2])[ok].sum() / par))
        except Exception as e:      # noqa: BLE001 -- a check never stops a solve it cannot judge
            log.debug("model cross hands of field %d DATA_DESC_ID %d: %s", fid, ddid, e)
    out = [x for x in out if np.isfinite(x)]
    return max(out) if out else float("nan")


def mixed_mount_notes(cfg, meta, spw_sel=None, rowsel=None) -> list:
    """A warning, before the reads, for a block on an array whose antennas' mounts turn their feeds
    differently (jones/parang.mount_kind: alt-az with Nasmyth, equatorial ...): on a mixed baseline the
    feeds' angles differ by an amount that changes with the parallactic angle and elevation.  With
    linear feeds that difference mixes the hands: Stokes I enters the cross hands (I sin(chi_a -
    chi_b)), and the leakage carries it into the parallel hands at first order in |d| (d I sin, where
    an array of one kind has d times the polarised flux).  Review 60i (linear feeds, ALT-AZ with
    NASMYTH-R / -L antennas): KC, CP, D with one round gave leakages of 0.49 for 0.13 and 3C286 36-69x
    the noise off in Q, U, V; three rounds left D unconverged and flagged; a G alone over 'inf' did not
    converge (chi2/nDOF 3.5e4 per integration).  Review 60j: circular feeds, the cross hands 9x the
    noise after calibration where one kind gave 1.4-1.6x.  Said for a block solving KC, CP or D, and for
    any block with apply_parang on linear feeds (``spw_sel``: the SPWs solved; None: any).  Arrays of one
    kind (every antenna Nasmyth) are not noted: measured at the noise.  ``rowsel``: the block's row
    selection; only the antennas of the baselines its antenna selection keeps are counted (the remedy,
    '!C04;!C05', leaves one kind: silent)."""
    from ..jones.parang import mount_kind

    steps = [st for st in cfg.steps if st.jones_type in POL_TYPES]
    ddids = list(spw_sel) if spw_sel is not None else list(meta.spws)
    linear = any(meta.spws[d].feed_basis == "linear" for d in ddids if d in meta.spws)
    m = list(meta.active_mounts or [])
    if not m or not (steps or (linear and getattr(cfg, "apply_parang", False))):
        return []
    ants = list(meta.active_ants)
    keep = set(ants)
    sel = getattr(rowsel, "antenna", None)
    if sel is not None and len(ants) > 1:
        # the antennas of the baselines the block's antenna selection keeps (its own remedy: '!C04;!C05'
        # leaves one mount kind -- still warned, naming the deselected antennas, before; review h60j)
        a1, a2 = np.triu_indices(len(ants), 1)
        a1, a2 = np.asarray(ants)[a1], np.asarray(ants)[a2]
        on = sel.mask(a1, a2)
        keep = set(a1[on].tolist()) | set(a2[on].tolist())
    kinds = {}
    for a, mount in zip(ants, m):
        if a in keep:
            kinds.setdefault(mount_kind(mount), []).append(meta.ant_names[a])
    if len(kinds) < 2:
        return []
    which = "; ".join(f"{k}: {', '.join(v[:4])}{' ...' if len(v) > 4 else ''} ({len(v)})"
                      for k, v in sorted(kinds.items()))
    keys = ", ".join(f"{st.key} ({st.jones_type})" for st in (steps or cfg.steps))
    them = "them" if len(steps or cfg.steps) > 1 else "it"
    hands = (" With linear feeds the leakage carries it into the parallel hands at first order, d I "
             "sin(chi_a - chi_b), so gains solved before D absorb it too (a G alone did not converge)."
             if linear else "")
    return [f"{keys}: the array mixes mounts ({which}): their feeds turn differently against the sky, "
            "so on a baseline between two kinds Stokes I enters the cross hands, I sin(chi_a - chi_b), "
            f"changing with the parallactic angle and elevation.{hands} alakazam's calibration is not "
            "validated on such arrays (a review, linear feeds, alt-az with Nasmyth antennas: leakages "
            "0.49 for 0.13 and 3C286 36-69 times the noise off with one round; three rounds did not "
            f"converge): treat {them} as suspect -- solve on the antennas of one mount kind (an antenna "
            "selection that drops the others' baselines, e.g. '!C04;!C05') and check the result on a "
            "polarised calibrator"]


def unpolarised_notes(cfg, meta, spw_sel, scans, step_fields, rowsel=None) -> list:
    """Warnings, before the reads, for the KC and CP steps whose every calibrator's model has no cross-hand
    signal (:func:`cross_fraction` at most POLARISED_FRACTION): the cross hands then hold nothing for them
    to fit, and what is fitted is noise and the model's rounding -- a review (58f) solved CP on polarised
    3C286 with smodel [14.9, 0, 0, 0]: 3.5 deg off, stored unflagged, chi2/nDOF 1.5e4, no word.  A model
    that cannot be read says nothing."""
    idx = [i for i, st in enumerate(cfg.steps) if st.jones_type in ("KC", "CP")]
    four = {d: c for d, c in spw_sel.items() if meta.spws[d].n_corr == 4}
    if not idx or not four:
        return []
    out, frac = [], {}
    for i in idx:
        for fid in step_fields[i]:
            if fid not in frac:
                frac[fid] = cross_fraction(cfg, meta, four, scans, fid, rowsel)
        fr = [frac[f] for f in step_fields[i] if np.isfinite(frac[f])]
        if not fr or max(fr) > POLARISED_FRACTION:
            continue
        st = cfg.steps[i]
        model = "smodel" if getattr(cfg, "smodel", None) else cfg.model_col
        names = ", ".join(meta.fields[f].name for f in step_fields[i])
        jt = st.jones_type
        out.append(f"{st.key} ({jt}) on {names}: the {model} has no cross-hand signal (its cross hands "
                   f"{max(fr):.1g} of its parallel hands: an unpolarised model), so there is nothing for "
                   f"{jt} to fit and its solutions are noise, stored as they come (a review: CP on polarised "
                   f"3C286 with smodel [14.9, 0, 0, 0], 3.5 deg off). Solve {jt} on a polarised calibrator "
                   f"(3C286, 3C138) with its Q and U in the model")
    return out


def block_errors(cfg) -> list:
    """:func:`solve_errors` of a solve block from its config alone (the YAML preflight, akcal's parameter
    check: before anything runs), every MS of it; selections that do not resolve are left to the checks
    that say them."""
    import dataclasses

    from ..core import ms_io
    from ..errors import AlakazamError

    out = []
    for ms in (cfg.ms if isinstance(cfg.ms, (list, tuple)) else [cfg.ms]):
        try:
            meta = ms_io.read_meta(ms)
            ddids = ms_io.resolve_spw(meta, cfg.spw)
            fields = [ms_io.resolve_fields(meta, st.field) for st in cfg.steps]
            scans = ms_io.resolve_scans(meta, cfg.scan) if cfg.scan else None
        except (AlakazamError, RuntimeError, OSError, IndexError, KeyError):
            continue
        one = cfg if cfg.ms == ms else dataclasses.replace(cfg, ms=ms)
        out += [m for m in solve_errors(one, meta, ddids, scans, fields) if m not in out]
    return out


def check_solve(cfg, meta, spw_sel, scans, step_fields, rowsel=None, fractions=None):
    """Raise :func:`solve_errors` as a ParameterError naming apply_parang (before anything is read)."""
    from ..errors import ParameterError

    msgs = solve_errors(cfg, meta, spw_sel, scans, step_fields, rowsel, fractions)
    if msgs:
        raise ParameterError({"apply_parang": msgs})


def _solved_parang(term):
    vals = {bool(s.attrs.get("apply_parang")) for s in term.sets if "apply_parang" in s.attrs}
    return vals.pop() if len(vals) == 1 else None


def apply_notes(meta, ddids, apply_parang, terms):
    """The warnings of an apply whose parallactic angle does not suit its polarisation terms (module
    doc), or []: (1) KC, CP or D applied with parang false on feeds that turn: Q and U stay in the feed
    frame; (2) with parang true, a KC or CP solved without it, or a D solved without it on a polarised
    calibrator (attr ``model_polarisation``, recorded by solves without it; unknown: named as
    possibly so)."""
    pol = [t for t in terms if t.jones_type in POL_TYPES]
    four = [d for d in ddids if meta.spws[d].n_corr == 4]
    if not pol or not four:
        return []
    rotate, kinds = feeds_rotate(meta.path, meta)
    if not rotate:
        return []
    out = []
    if not apply_parang:
        solved = [t.key for t in pol if _solved_parang(t)]
        how = (f" ({', '.join(solved)} solved with the parallactic angle, i.e. in the sky frame of the "
               f"calibrator's model)" if solved else "")
        out.append(
            f"parang: false with the polarisation terms {', '.join(t.key for t in pol)} applied{how}: the "
            f"corrected data stay in the feed frame (mounts {kinds}), so every source's Stokes Q and U "
            f"rotate with the parallactic angle -- a polarisation angle comes out wrong and smeared over the "
            f"track (a review: a target at -20 deg came out at -67); Stokes I and V are not affected. Set "
            f"parang=True (YAML apply_parang: true) for polarimetry"
            + (", as the terms were solved" if solved else ""))
        return out
    wrong = []
    for t in pol:
        if _solved_parang(t) is not False:
            continue
        if t.jones_type == "D":
            fr = [s.attrs.get("model_polarisation") for s in t.sets]
            fr = [float(x) for x in fr if x is not None and np.isfinite(float(x))]
            if fr and max(fr) <= POLARISED_FRACTION:
                continue        # solved on an unpolarised calibrator: the rotation changes nothing
        wrong.append(t.key)
    if wrong:
        out.append(
            f"parang: true, but {', '.join(wrong)} {'was' if len(wrong) == 1 else 'were'} solved without the "
            f"parallactic angle (apply_parang false): on a polarised calibrator with feeds that turn (mounts "
            f"{kinds}) such terms absorbed the rotation of its Q and U and are wrong (alakazam now refuses "
            f"that solve); only a D solved on an unpolarised calibrator is right so. Re-solve them with "
            f"apply_parang: true (akcal parang=True)")
    return out


# ---- coverage of the parallactic angle (module doc) --------------------------------------------------

def _cells(s, meta, fid):
    """[(sample times)] of each time cell of solution set ``s`` (field id ``fid``): each scan of the set
    sampled every 60 s (at least its ends), the scans grouped by the cell whose time is nearest."""
    scans = [int(x) for x in np.atleast_1d(s.attrs.get("scans", []))] or [int(s.attrs.get("scan_id", 0))]
    info = [sc for sc in meta.scans if sc.scan_number in scans and sc.field_id == fid]
    cell_t = np.atleast_1d(np.asarray(s.time, float))
    out = {}
    for sc in info:
        n = max(2, int((sc.t_end - sc.t_start) // 60) + 1)
        t = np.linspace(sc.t_start, sc.t_end, n)
        if len(cell_t) == 1:
            out.setdefault(0, []).append(t)
        else:       # a cell per scan (cells stop at scan boundaries) or several: each sample's nearest
            k = np.abs(t[:, None] - cell_t[None, :]).argmin(axis=1)
            for c in np.unique(k):
                out.setdefault(int(c), []).append(t[k == c])
    return [np.concatenate(v) for _, v in sorted(out.items())]


def coverage(meta, fid, times, rotate=True):
    """(parallactic-angle range in deg, varying fraction 1 - |<exp(2 i chi)>|^2) of field ``fid`` at
    ``times`` (the array position's angle); (0, 0) where no antenna's mount turns the feeds against the
    sky (``rotate`` False, :func:`feeds_rotate`: every MOUNT EQUATORIAL or unknown, the feed angle never
    changes; review 59d: CP on 3C286 on such an array 32 deg off, unwarned, where the array centre's
    angle had covered 147 deg)."""
    from ..jones import parang

    if not rotate:
        return 0.0, 0.0

    f = meta.fields[fid]
    chi = np.unwrap(np.asarray(parang.parallactic_angle(np.sort(times), f.ra, f.dec, meta.observatory)))
    var = 1.0 - abs(np.mean(np.exp(2j * chi))) ** 2
    return float(np.degrees(chi.max() - chi.min())), float(max(var, 0.0))


def _feed_fraction(stokes, meta, fid, times, basis):
    """The feed-frame cross-hand fraction p_f: |U_f| / I at the cell's mean angle (linear feeds), the
    linear polarisation fraction (circular)."""
    from ..jones import parang

    if not stokes:
        return float("nan")
    i, q, u = max(stokes.values(), key=lambda x: np.hypot(x[1], x[2]) / x[0] if x[0] > 0 else 0)
    if basis != "linear":
        return float(np.hypot(q, u) / i)
    f = meta.fields[fid]
    chi = parang.parallactic_angle(times, f.ra, f.dec, meta.observatory)
    chi = float(np.angle(np.mean(np.exp(1j * chi))))
    return float(abs(-q * np.sin(2 * chi) + u * np.cos(2 * chi)) / i)


def coverage_notes(cfg, meta, pending, spw_sel, scans, rowsel=None):
    """The warnings (module doc) for the CP and D steps of a block solved with the parallactic angle on
    a polarised calibrator over cells whose feed-frame polarisation hardly rotates."""
    from ..solvers.cross_phase import MIN_VARYING_FRACTION

    if not getattr(cfg, "apply_parang", False):
        return []
    steps = [st for st in cfg.steps if st.jones_type in ("CP", "D") and pending.get(st.key)]
    if not steps:
        return []
    names = {f.name: f.id for f in meta.fields}
    four = {d: c for d, c in spw_sel.items() if meta.spws[d].n_corr == 4}
    stokes, out, warned = {}, [], []
    dmed = _typical_leakage(cfg, pending)
    n_ant = len(np.asarray(meta.active_ants))
    rotate, mounts = feeds_rotate(meta.path, meta)
    for st in steps:
        worst = None
        for s in pending[st.key]:
            fid = names.get(s.field_name)
            if fid is None:
                continue
            if fid not in stokes:
                stokes[fid] = model_stokes(cfg, meta, four, scans, fid, rowsel)
            if not (pol_fraction(stokes[fid]) > POLARISED_FRACTION):
                continue
            for t in _cells(s, meta, fid):
                rng, var = coverage(meta, fid, t, rotate)
                if var < MIN_VARYING_FRACTION and (worst is None or var < worst[1]):
                    worst = (rng, var, s.field_name, fid, t, str(s.attrs.get("feed_basis", "linear")))
        if worst is None:
            continue
        rng, var, fname, fid, t, basis = worst
        pf = _feed_fraction(stokes[fid], meta, fid, t, basis)
        if np.isfinite(pf) and pf > 0 and dmed is not None:
            mean_d = dmed / np.sqrt(max(n_ant, 1))
            bias = (f"; with leakages of |d| {dmed:.3f} (the block's D, median) on {n_ant} antennas the "
                    f"error is typically |d| / (sqrt(N_ant) p_f) = {np.degrees(mean_d / pf):.1f} deg for "
                    f"independent leakages, up to 2 |d| / p_f = {np.degrees(min(2 * dmed / pf, np.pi)):.0f} "
                    f"deg for a common part")
        elif np.isfinite(pf) and pf > 0:
            guess = np.degrees(0.05 / np.sqrt(max(n_ant, 1)) / pf)
            bias = f" (|d| 0.05 on {n_ant} antennas: about {guess:.1f} deg)"
        else:
            bias = ""
        cp_warned = [k for k, _ in warned if k != st.key]
        if st.jones_type == "D" and cp_warned:
            out.append(
                f"{st.key} (D) on {fname}: solved over the same {rng:.1f} deg of parallactic angle as "
                f"{', '.join(cp_warned)} (see above), so its leakages absorb that cross-hand phase error, "
                f"about p_f x the phase in every leakage (p_f = {pf:.3f}); more parallactic angle, or D from "
                f"an unpolarised calibrator, is the remedy")
            continue
        two = np.degrees(np.arcsin(np.sqrt(MIN_VARYING_FRACTION)))
        even = np.degrees(np.sqrt(3 * MIN_VARYING_FRACTION))
        if not rotate:                      # a fixed feed angle: more scans cannot help
            out.append(
                f"{st.key} ({st.jones_type}) on {fname}, polarised ({100 * pol_fraction(stokes[fid]):.1f}%): "
                f"the antennas' mounts ({mounts}) keep the feeds at one angle on "
                f"the sky, so the polarised signal never turns in the feed frame and "
                + ("the cross-hand phase cannot be told from the array's mean leakage"
                   if st.jones_type == "CP" else "a common part of the leakages cannot be told from the "
                   "polarised flux") + f" however many scans are solved{bias}. Solve D on an unpolarised "
                "calibrator and the cross-hand phase on a calibrator of known polarisation angle with D "
                "applied (CASA's order: jones [..., KC, D, CP] with D on the unpolarised one)")
            if st.jones_type == "CP":
                warned.append((st.key, rng))
            continue
        if st.jones_type == "D":        # no CP of the block over such a cell: the D's own degeneracy
            pfrac = pol_fraction(stokes[fid])
            size = f" (|d| {dmed:.3f} here: up to {2 * dmed * pfrac:.1e})" if dmed is not None else ""
            out.append(
                f"{st.key} (D) on {fname}, polarised ({100 * pfrac:.1f}%): a solution cell spans only "
                f"{rng:.1f} deg of parallactic angle (the polarised signal's varying fraction "
                f"1 - |<exp(2i chi)>|^2 = {var:.2g}, below {MIN_VARYING_FRACTION}): at one parallactic angle "
                f"a D has an exact degeneracy between a common part of the leakages and the polarised "
                f"flux, which only the solver's prior pins -- the leakages come out up to about 2 |d_ref| p "
                f"off{size}, and a cross-hand phase solved on these data as far as |d| / (sqrt(N_ant) p) "
                f"rad. "
                f"Solve D over more scans spread over a wider range of parallactic angle (~{two:.0f} deg "
                f"between two scans, ~{even:.0f} deg covered evenly), or on an unpolarised calibrator")
            continue
        warned.append((st.key, rng))
        what = "CP's cross-hand phase"
        out.append(
            f"{st.key} ({st.jones_type}) on {fname}, polarised ({100 * pol_fraction(stokes[fid]):.1f}%): a "
            f"solution cell spans only {rng:.1f} deg of parallactic angle (the polarised signal's varying "
            f"fraction 1 - |<exp(2i chi)>|^2 = {var:.2g}, below {MIN_VARYING_FRACTION}), too little to tell "
            f"the rotating polarised flux from the constant leakage of the unpolarised flux: {what} "
            f"absorbs the array's mean leakage, an error of about "
            f"Im(<d_pq> - <d_qp>) / p_f rad (p_f = {pf:.3f}, the feed-frame cross-hand fraction)"
            f"{bias}; converged rounds do not remove it. Solve CP and D over more scans of the calibrator "
            f"spread over a wider range of parallactic angle (time_interval 'inf'; 1 - |<exp(2i chi)>|^2 >= "
            f"{MIN_VARYING_FRACTION}: ~{two:.0f} deg between two scans, ~{even:.0f} deg covered evenly), or "
            f"solve D "
            f"first on an unpolarised calibrator (CASA's order: jones [..., KC, D, CP] with D on it)")
    return out


def _typical_leakage(cfg, pending):
    from .leakcheck import typical_leakage

    return typical_leakage([s for st in cfg.steps if st.jones_type == "D" for s in pending.get(st.key) or []])


def warn_coverage(cfg, meta, pending, spw_sel, scans, rowsel=None):
    """Log :func:`coverage_notes` (once per block); returns them.  Never raises."""
    try:
        out = coverage_notes(cfg, meta, pending, spw_sel, scans, rowsel)
    except Exception as e:      # noqa: BLE001 -- a warning never stops a solve
        log.debug("parallactic-angle coverage check: %s", e)
        return []
    for n in out:
        log.warning("%s", n)
    return out
