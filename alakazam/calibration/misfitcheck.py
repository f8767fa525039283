"""CP and D solutions the data do not fit: the warning (review 58f).

A cross-hand phase (CP) or a leakage (D) solved over one cell that the term's model cannot describe is
stored as the best average, unflagged, with a reduced chi2 that says nothing: with WEIGHT = 1 on raw
correlator units the absolute rchi2 is 1e4-1e6 for good solutions as well.  The review's cases:

* CP over the full band (freq_interval 'full', akcal's default freqint) without KC: the cross-hand
  phase winds ~0.66 turn over 0.9-1.7 GHz; the one phase is an average of the winding (3C286 p/I 0.062
  for 0.100), rchi2 1e6, nothing said;
* D over the full band solved before KC / CP (the CASA order): the stored D carries the cross-hand
  phase, which winds across the band: the one-bin D is the leakage averaged down (|mean| 0.11 of the
  per-channel value; 3C147, unpolarised, came out with V = 0.74% of I);
* D on a polarised calibrator (3C286) with an unpolarised model: the calibrator's polarisation,
  rotating with the parallactic angle, is fitted by a leakage constant in time (rchi2 2e6).

What is measured (:func:`measure`, in the solve; ``SolutionSet.diagnostics['crosshand_misfit']``, not
written).  On the sums the solve already holds, the term's own least-squares fit of a cell is compared
with that of a more flexible model on the same samples, by the ratio of their chi2/nDOF (scale-free:
the weights' scale cancels; ~1 when the term's model holds, whatever the noise, since the nDOF take
the flexible model's extra parameters):

* ``time``: one solution per time sample (per scan: the parallactic angle changes between them) of the
  cell instead of one for all (CP: a complex factor per sample against one per cell, phase and scale:
  a scale constant in time is not a change in time) -- the model of the
  calibrator (its polarisation) or the parallactic
  angle is wrong in time;
* ``band``: one solution per sub-band (:data:`N_SUB` of them, by channel position in the frequency
  bin) instead of one over the bin -- the term varies across the bin (a cross-hand delay not solved or
  not applied).  Measured where a bin holds at least :data:`MIN_CHAN` channels: the accumulation then
  keeps the sums per sub-band (unit._accumulate_group) and folds them into the bins before the solve,
  which sees the same data as before.

Both fits are this module's own (CP: the closed-form phase; D: the solver's LM, free gauge with its
prior), run on at most :data:`MAX_CELLS` cells of the set (spread over the band): the work is
O(cells x bins) on the accumulated sums (0.01-0.1 s on review 58f's MS; the sub-band sums are N_SUB x
a full-band bin's).
``excess`` is the fraction of the cross-hand data power the flexible model takes out beyond the noise
it fits: a misfit too small to matter is not warned about even at a high ratio (very high S/N).

The rule (:func:`notes`, after the block, README "Cross-hand misfit"): a WARNING per step when a
set's ratio exceeds :data:`RATIO` with an excess above :data:`EXCESS`, naming the step, the field, the
ratio, the likely cause (band or time, whichever flexible model fitted better) and the remedy.  A
warning only: no solution is flagged (README "Cross-hand misfit": the average is what the user asked
for and may be what they want; flagging a full-band cell would flag the whole band of every target;
CASA flags nothing here).  KC is not measured (its fringe fit over the band is itself the band's
model; a KC misfit shows in the CP solved after it).  tests/test_crosshand_misfit.py.

``swap`` (CP only; review 59c: RL and LR of DATA exchanged, labels kept, gave 3C286 0.2% polarised for
10%, nothing said -- CASA neither; the one-solution and per-scan fits both fail alike, ratio ~1).  CP's
phase is the argument of ``A = sum w (conj(V_pq) M_pq + V_qp conj(M_qp))`` per frequency bin; the
same sum with V_pq and V_qp exchanged, ``A_swap``, is coherent where the data's cross hands are
exchanged against the model's.  With circular feeds the model's RL turns with the parallactic angle
and LR the other way, so over a cell that covers it A_swap of right data averages down, and A of
exchanged data does (without coverage the two are alike and nothing is said).  Measured: per bin
|A_swap| / |A|, where |A| or |A_swap| is significant against the noise sqrt(sum w |M|^2) (more than
:data:`SWAP_SIGNIFICANCE` times it); the set's value is the median over those bins.  Warned
(:func:`notes`) when it exceeds :data:`SWAP_RATIO`.  Linear feeds: a source without V has real
feed-frame cross hands (XY = YX = U_f), so an exchange is CP's phase with the other sign (and V's
sign): not seen, and nothing but V changes.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("alakazam")

#: chi2/nDOF of the term's fit over that of the flexible model above this: warned (with EXCESS) --
#: significance: a correct model gives ~1 (0.98-1.3; up to 4.4 at very high S/N with a misfit of 1e-4 of
#: the power, which EXCESS keeps quiet), the review's cases 16-2e4 (README "Cross-hand misfit")
RATIO = 3.0
#: CP: |A_swap| / |A| (module doc, ``swap``) above this in the median bin with signal: the cross hands
#: look exchanged.  With c = |sum w M_pq^2| / sum w |M_pq|^2 (how little the model's cross hands turn
#: over the cell: 1 without parallactic coverage) the ratio is about c for right data (never above 1
#: but for noise, which the significance test bounds) and 1 / c for exchanged data: warned where c < 0.5
#: (tests/test_crosshand_swap.py, 3 h of 3C286: right 0.27, exchanged 3.1)
SWAP_RATIO = 2.0
#: a bin counts for ``swap`` when |A_swap| or |A| exceeds this many times its noise, sqrt(sum w |M|^2)
SWAP_SIGNIFICANCE = 10.0
#: ... and the flexible model taking out more than this fraction of the cross-hand data power (size:
#: the recommended recipe <= 2.4e-4, the review's cases 0.22-1.4)
EXCESS = 1e-3
#: sub-bands per frequency bin for the band check, where a bin holds at least MIN_CHAN channels
N_SUB = 8
MIN_CHAN = 8
#: cells of a set measured at most (spread over the set's frequency bins)
MAX_CELLS = 8
#: D: LM steps of each fit, from the solved leakage of the cell (_cost)
GN_STEPS = 3
#: fewer degrees of freedom than this left to the flexible model: not measured
MIN_DOF = 20

CROSS_TYPES = ("CP", "D")


# --- accumulation: sub-band sums (unit._accumulate_group) -------------------------------------------

def sub_bands(step, g, one_cell) -> int:
    """Sub-bands per frequency bin whose sums the accumulation keeps apart (0: none): CP / D over one
    time cell (``one_cell``: unit._bin_major's condition, whatever layout the sums take) of one field and
    SPW whose bins hold at least MIN_CHAN channels."""
    if step.jones_type not in CROSS_TYPES or not one_cell or g.chan_sampled or len(g.members) != 1:
        return 0
    f = np.asarray(g.fbin_of_chan, np.int64)
    f = f[f >= 0]
    if not len(f):
        return 0
    counts = np.bincount(f)
    counts = counts[counts > 0]
    return N_SUB if counts.min() >= MIN_CHAN else 0


def sub_fsamp(fsamp, n_sub):
    """The accumulator's frequency sample of each channel with ``n_sub`` sub-bands per bin: bin * n_sub
    + the channel's sub-band (its position among the bin's channels); -1 stays -1."""
    fs = np.asarray(fsamp, np.int64)
    out = np.full(len(fs), -1, np.int64)
    for b in np.unique(fs[fs >= 0]):
        idx = np.flatnonzero(fs == b)
        out[idx] = b * n_sub + (np.arange(len(idx)) * n_sub) // len(idx)
    return out


def fold(sums, n_sub, axis):
    """Sub-band sums, (F * n_sub) along ``axis`` -> the bins' sums (F along it), each bin's sub-bands
    added in order (the same additions in the bin-major and the copied layout: bit for bit the same
    solutions either way, tests/test_kccp_speed.py)."""
    out = []
    for a in sums:
        shape = a.shape[:axis] + (a.shape[axis] // n_sub, n_sub) + a.shape[axis + 1:]
        x = a.reshape(shape)
        idx = [slice(None)] * len(shape)
        idx[axis + 1] = 0
        acc = np.array(x[tuple(idx)], order="C")
        for k in range(1, n_sub):
            idx[axis + 1] = k
            acc += x[tuple(idx)]
        out.append(acc)
    return tuple(out)


# --- the fits -----------------------------------------------------------------------------------------

def _batch(like, v, m, w):
    from ..solvers import CellBatch

    b = CellBatch(vis=np.ascontiguousarray(v, np.complex128), model=np.ascontiguousarray(m, np.complex128),
                  weight=np.ascontiguousarray(w, np.float64), ant1=like.ant1, ant2=like.ant2,
                  freq=np.zeros(v.shape[:1] + v.shape[2:3]), n_ant=like.n_ant, ref_ant=like.ref_ant)
    b.feed_basis = getattr(like, "feed_basis", "")
    b.leakage_gauge = getattr(like, "leakage_gauge", "reference")
    return b


def _cost(jt, b, d0=None):
    """(n_cell,) chi2 of the term's least-squares fit of each cell over all its samples (cross hands).
    D: :data:`GN_STEPS` Levenberg-Marquardt steps from ``d0`` (n_cell, n_ant, 2), the solved leakage of
    the cell (the problem is nearly linear: the steps reach the cell's minimum; the stored solution,
    re-referenced to CASA's gauge, is not always at it)."""
    if jt == "CP":
        from ..solvers import cross_phase

        a, _ = cross_phase.cross_sums(b)
        e = np.exp(-1j * np.angle(a.sum(axis=1)))[:, None] * np.ones(b.vis.shape[2])
        return cross_phase.cross_residual(b, e, np.conj(e)).sum(axis=1)
    from ..solvers import leakage

    n = b.vis.shape[0]
    ref = np.full(n, int(b.ref_ant), np.int64)
    d = np.zeros((n, b.n_ant, 2), np.complex128)
    if d0 is not None:
        d[:] = np.where(np.isfinite(d0), d0, 0.0)
    prior = np.ascontiguousarray(leakage.gauge_prior(b, ref), np.float64)
    n_iter, conv, cost = np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n)
    steps = GN_STEPS if d0 is not None else 50
    leakage.lm_batch(b.vis, b.model, b.weight, b.ant1, b.ant2, d, ref, prior, steps, 1e-10, n_iter, conv,
                     cost)
    return cost


def _n_par(jt, w, ant1, ant2, n_ant):
    """(n_cell,) real parameters of one fit per cell (w: (n_cell, n_bl, n_samp, 4))."""
    has = (w[..., 1:3] > 0).any(axis=(2, 3))                  # (n_cell, n_bl)
    if jt == "CP":
        return has.any(axis=1).astype(int)
    ants = np.zeros((w.shape[0], n_ant), bool)
    for c in range(w.shape[0]):
        ants[c, ant1[has[c]]] = True
        ants[c, ant2[has[c]]] = True
    n = ants.sum(axis=1)
    return np.where(n > 0, 4 * n - 2, 0)


def _n_obs(w):
    return 2 * (w[..., 1:3] > 0).sum(axis=(1, 2, 3))


def _offset_par(w, changed):
    """CP's leakage offsets: 2 real per (baseline, cross hand) with data in the cells they were taken
    out of (cross_phase.remove_leakage_offsets), the same for both fits."""
    if changed is None:
        return np.zeros(w.shape[0], int)
    n = 2 * (w[..., 1:3] > 0).any(axis=2).sum(axis=(1, 2))
    return np.where(np.asarray(changed, bool), n, 0)


def _ratio(jt, chi_g, dof_g, chi_f, dof_f, power):
    if dof_f < MIN_DOF or dof_g <= dof_f or power <= 0 or not chi_g > 0:
        return float("nan"), float("nan")
    r_g, r_f = chi_g / dof_g, chi_f / dof_f
    ratio = r_g / r_f if r_f > 0 else float("inf")
    return float(ratio), float(max(chi_g - r_f * dof_g, 0.0) / power)


def _pick(n, have):
    idx = np.flatnonzero(have)
    if len(idx) > MAX_CELLS:
        idx = idx[np.linspace(0, len(idx) - 1, MAX_CELLS).round().astype(int)]
    return idx


def _power(w, v):
    return float((w[..., 1:3] * np.abs(v[..., 1:3]) ** 2).sum())


def time_misfit(jt, batch, changed=None, params=None):
    """(ratio, excess) of one solution per cell against one per time sample of the cell."""
    w = batch.weight
    if w.shape[2] < 2:
        return float("nan"), float("nan")
    # cells with 2+ samples, looked for among 4 x MAX_CELLS spread over the set (not a pass over it all)
    cand = np.unique(np.linspace(0, w.shape[0] - 1, min(w.shape[0], 4 * MAX_CELLS)).round().astype(int))
    have = (w[cand][..., 1:3] > 0).any(axis=(1, 3)).sum(axis=1) >= 2
    idx = cand[_pick(len(cand), have)]
    if not len(idx):
        return float("nan"), float("nan")
    v, m, w = batch.vis[idx], batch.model[idx], w[idx]
    ch = None if changed is None else np.asarray(changed, bool)[idx]
    g = _batch(batch, v, m, w)
    n_c, n_bl, n_s, _ = v.shape
    d0 = None if params is None else np.asarray(params)[idx]
    chi_g = float(_cost(jt, g, d0).sum())
    n_obs = int(_n_obs(w).sum())
    off = int(_offset_par(w, ch).sum())
    dof_g = n_obs - off - int(_n_par(jt, w, batch.ant1, batch.ant2, batch.n_ant).sum())
    if jt == "CP":
        # one complex factor per sample, V_pq = a M_pq, V_qp = conj(a) M_qp (the phase and a scale:
        # a model whose polarisation is wrong in time is off in amplitude as much as in phase); its
        # minimum in closed form, sum w |V|^2 - |A|^2 / sum w |M|^2 per sample (cross_phase's sums)
        from ..solvers import cross_phase

        pa, pm, _, _, _ = cross_phase.power_pass(g)
        A, _ = cross_phase.cross_sums(g)
        pv = pa.imag

        def _fit(pv, pm, A):
            ok = pm > 0
            return float(np.where(ok, pv - np.abs(A) ** 2 / np.where(ok, pm, 1.0), pv).sum())

        chi_f = _fit(pv, pm, A)
        n_par = 2 * int(((w[..., 1:3] > 0).any(axis=(1, 3))).sum())
        # ... against one such factor over the cell's samples (not CP's phase alone: a scale constant in
        # time -- the band's winding averaged in the bin, a model's flux -- is not a change in time)
        chi_g = _fit(pv.sum(axis=1), pm.sum(axis=1), A.sum(axis=1))
        dof_g = n_obs - off - 2 * int((w[..., 1:3] > 0).any(axis=(1, 2, 3)).sum())
    else:
        per = [np.ascontiguousarray(np.moveaxis(a, 2, 1).reshape(n_c * n_s, n_bl, 1, 4)) for a in (v, m, w)]
        d_s = None if d0 is None else np.repeat(d0, n_s, axis=0)
        chi_f = float(_cost(jt, _batch(batch, *per), d_s).sum())
        n_par = int(_n_par(jt, per[2], batch.ant1, batch.ant2, batch.n_ant).sum())
    dof_f = n_obs - off - n_par
    return _ratio(jt, chi_g, dof_g, chi_f, dof_f, _power(w, v))


def band_misfit(jt, batch, sub, samples, n_sub, changed=None, params=None):
    """(ratio, excess) of one solution per frequency bin against one per sub-band, on the sub-band sums
    ``sub`` (bin-major, (F * n_sub, n_bl, n_sbin, 4), not divided) of the sample bins ``samples``; CP:
    the leakage offsets taken out per sub-band in the bins ``changed`` (as the solve did per bin)."""
    from ..core.averaging import divide_sums
    from ..solvers import cross_phase, leakage

    samples = np.asarray(samples, np.int64)
    n_fs = sub[0].shape[0]
    n_f = n_fs // n_sub
    # the bins with cross-hand data in 2+ sub-bands (a weight sum > 0 stays > 0 divided), then only the
    # picked bins' sub-bands copied and divided (not all the set's: 0.02 s of a CP step, issue 16)
    pos = (sub[2][..., 1:3] > 0).any(axis=-1)[:, :, samples].any(axis=(1, 2))
    have = pos.reshape(n_f, n_sub).sum(axis=1) >= 2     # 2+ sub-bands
    idx = _pick(n_f, have)
    if not len(idx):
        return float("nan"), float("nan")
    rows = (idx[:, None] * n_sub + np.arange(n_sub)[None, :]).ravel()
    v, m, w = (np.ascontiguousarray(a[rows][:, :, samples]) for a in sub)
    n_bl, n_s = v.shape[1], v.shape[2]
    flat = [a.reshape(len(rows), n_bl * n_s, 4) for a in (v, m, w)]
    divide_sums(*flat, *flat)
    f = _batch(batch, v, m, w)
    ch = None
    if jt == "CP":
        if changed is not None:
            ch = np.repeat(np.asarray(changed, bool)[idx], n_sub)
            cross_phase.remove_leakage_offsets(f, cells=ch)
    else:
        leakage.cross_hands_only(f)
    n_c = len(idx)
    # the bins: each one cell of n_sub x n_s samples (after the per-sub-band preparation)
    glob = [np.ascontiguousarray(np.moveaxis(a.reshape(n_c, n_sub, n_bl, n_s, 4), 1, 2)
                                 .reshape(n_c, n_bl, n_sub * n_s, 4)) for a in (f.vis, f.model, f.weight)]
    g = _batch(batch, *glob)
    d0 = None if params is None else np.asarray(params)[idx]
    chi_g = float(_cost(jt, g, d0).sum())
    chi_f = float(_cost(jt, f, None if d0 is None else np.repeat(d0, n_sub, axis=0)).sum())
    n_obs = int(_n_obs(f.weight).sum())
    off = int(_offset_par(f.weight, ch).sum())
    dof_f = n_obs - off - int(_n_par(jt, f.weight, batch.ant1, batch.ant2, batch.n_ant).sum())
    dof_g = n_obs - off - int(_n_par(jt, g.weight, batch.ant1, batch.ant2, batch.n_ant).sum())
    return _ratio(jt, chi_g, dof_g, chi_f, dof_f, _power(f.weight, f.vis))


def measure(jt, batch, changed=None, sub=None, samples=None, n_sub=0, params=None):
    """``{"time": (ratio, excess), "band": (ratio, excess)}`` of a CP / D set's batch as solved (module
    docstring); NaN where not measurable.  Never raises: a failure leaves the set unmeasured."""
    out = {"time": (float("nan"), float("nan")), "band": (float("nan"), float("nan")),
           "swap": float("nan")}
    if jt == "CP":
        try:
            out["swap"] = swap_ratio(batch)
        except Exception as e:      # a diagnostic: never the solve's failure
            log.debug("crosshand swap not measured: %s", e)
    try:
        d0 = None
        if jt == "D" and params is not None and np.shape(params) == (batch.n_cell, batch.n_ant, 2):
            d0 = np.asarray(params, np.complex128)
        out["time"] = time_misfit(jt, batch, changed, d0)
        if sub is not None and n_sub:
            out["band"] = band_misfit(jt, batch, sub, samples, n_sub, changed, d0)
    except Exception as e:          # a diagnostic: never the solve's failure
        log.debug("crosshand misfit not measured (%s): %s", jt, e)
    return out


def swap_ratio(batch) -> float:
    """CP: the median over the frequency bins with signal of |A_swap| / |A| (module doc, ``swap``); NaN
    without such a bin.  Cells are bins (the CP batch: one cell per bin, its samples the time samples)."""
    from ..solvers import cross_phase

    sums = cross_phase.swap_sums(batch)
    a, a_swap = np.abs(sums[:, 0]), np.abs(sums[:, 1])
    noise = np.sqrt(sums[:, 2].real)
    keep = (noise > 0) & (np.maximum(a, a_swap) >= SWAP_SIGNIFICANCE * noise)
    ratios = a_swap[keep] / np.maximum(a[keep], 1e-300)
    return float(np.median(ratios)) if len(ratios) else float("nan")


# --- the warning --------------------------------------------------------------------------------------

def _fires(x):
    r, e = x
    return bool(np.isfinite(r) and r > RATIO and np.isfinite(e) and e > EXCESS)


def _share(e):
    return "more than all" if e >= 1 else f"{100 * e:.2g}%"


def pending_fields(sets):
    """The fields a step's solution sets were solved on (a combine='field' set's members too)."""
    out = []
    for s in sets:
        out += [str(x) for x in (s.attrs.get("combined_fields") or [s.field_name])]
    return out


def notes(cfg, pending):
    """The warnings for the block's CP / D steps (``pending``: key -> solution sets)."""
    out = []
    fired_keys = []
    for st in cfg.steps:
        sets = pending.get(st.key) or []
        if st.jones_type not in CROSS_TYPES or not sets:
            continue
        swapped = {}
        for s in sets:
            x = (s.diagnostics.get("crosshand_misfit") or {}).get("swap", float("nan"))
            if np.isfinite(x) and x > SWAP_RATIO:
                swapped[str(s.field_name)] = max(x, swapped.get(str(s.field_name), 0.0))
        if swapped:
            out.append(
                f"{st.key} ({st.jones_type}) on field(s) {', '.join(sorted(swapped))}: the data's cross "
                f"hands agree with the model {max(swapped.values()):.3g}x more closely with the two "
                f"exchanged (pq <-> qp, e.g. RL <-> LR) than as labelled: the polarised signal turns with "
                f"the parallactic angle the other way round.  The MS's cross-hand correlations are "
                f"probably swapped (a converter or correlator labelling them the wrong way), or the "
                f"model's are; every polarisation product is wrong until that is mended (check the "
                f"POLARIZATION table's CORR_TYPE against the data, e.g. on a known polarised "
                f"calibrator).  The solution is stored unflagged (a warning only).")
            fired_keys.append(st.key)
        worst = {"band": (0.0, 0.0, None), "time": (0.0, 0.0, None)}
        fields = set()
        for s in sets:
            d = s.diagnostics.get("crosshand_misfit")
            if not d:
                continue
            for kind in ("band", "time"):
                if _fires(d[kind]):
                    fields.add(str(s.field_name))
                    if d[kind][0] > worst[kind][0]:
                        worst[kind] = (d[kind][0], d[kind][1], str(s.field_name))
        fired = [k for k in ("band", "time") if worst[k][2] is not None]
        if not fired:
            continue
        kind = max(fired, key=lambda k: worst[k][0])         # the flexible model that fitted better
        ratio, excess, _ = worst[kind]
        what = f"{st.key} ({st.jones_type}) on field(s) {', '.join(sorted(fields))}"
        if kind == "band":
            thing = ("the cross-hand phase" if st.jones_type == "CP" else "the leakage as solved (in the "
                     "frame of the cross-hand phase when KC / CP are not applied)")
            why = (f"one solution per sub-band of its frequency bins fits the data {ratio:.3g}x better "
                   f"(chi2/nDOF) than one per bin (the misfit is {_share(excess)} of the cross-hand data "
                   f"power): {thing} varies across the band -- a cross-hand delay not solved or not "
                   f"applied -- and the stored solution is its average")
            remedy = ("solve it per channel (freq_interval of one channel; akcal freqint per channel), or "
                      "pre-apply a KC: solve KC first" + (" and CP, then D" if st.jones_type == "D" else ""))
        else:
            why = (f"one solution per scan fits the data {ratio:.3g}x better (chi2/nDOF) than one over the "
                   f"scans (the misfit is {_share(excess)} of the cross-hand data power): the data change "
                   f"with the parallactic angle in a way the {st.jones_type} model does not -- the "
                   f"calibrator's polarisation model (a polarised calibrator with an unpolarised model, a "
                   f"wrong angle or fraction) or the parallactic angle")
            remedy = ("give the calibrator its polarisation model (smodel [I, Q, U, V], or a MODEL_DATA with "
                      "its fraction and angle) or solve D on an unpolarised calibrator, with apply_parang: "
                      "true (akcal parang=True)")
            own = set().union(*(set(str(x) for x in (s.attrs.get("combined_fields") or [s.field_name]))
                                for s in sets))
            d_elsewhere = [o.key for o in cfg.steps if o.jones_type == "D" and o.key != st.key
                           and not own & set(pending_fields(pending.get(o.key) or []))]
            # (linear feeds only: leakage_gauge 'absolute' is refused for circular ones, review h60j)
            linear = bool(sets) and all(str(s.attrs.get("feed_basis", "")) == "linear" for s in sets)
            if d_elsewhere and linear and getattr(cfg, "leakage_gauge", "reference") == "reference":
                # review 60i: D on 3C147 in CASA's gauge, CP on 3C286 -- the remedy above was that D
                remedy = (f"{', '.join(d_elsewhere)}, solved on another calibrator in CASA's gauge, leaves "
                          "the reference antenna's own leakage in every antenna, which turns with the "
                          "parallactic angle here too: solve D on this calibrator after KC and CP with "
                          "leakage_gauge: absolute (akcal leakage_gauge='absolute'); else " + remedy)
        other = [k for k in fired if k != kind]
        also = ""
        if other:
            also = (f" (one per {'scan' if other[0] == 'time' else 'sub-band'} also fits "
                    f"{worst[other[0]][0]:.3g}x better)")
        after = ""
        if fired_keys:
            after = (f" It may follow from the misfit of {', '.join(fired_keys)} (warned above), solved "
                     f"before it: correct that first.")
        out.append(f"{what}: {why}{also}. The solution is stored unflagged (a warning only); "
                   f"{remedy}.{after}")
        fired_keys.append(st.key)
    return out
