"""A full-band gain whose solution spans several scans of a field: the warning (CASA's 'inf' is per scan).

In alakazam ``time_interval: inf`` (akcal ``solint='inf'``) is ONE solution over every selected scan of a
field, without ``combine`` (SEED.md); in CASA's gaincal ``solint='inf'`` is one solution per scan unless
``combine='scan'``.  A CASA user's "G per scan" written as ``solint=['inf']`` on a phase calibrator
visited 4 times over an hour with drifting gains became one gain per field (review 58b, finding 3):
the TARGET's scans +7.6%, +19.8%, +6.7%, -28.3% against the truth and the flux scale 2 sigma off, with
``solver_stats/rchi2`` 1.77e5 (166 per scan) and nothing said.

What is measured (:func:`measure`, in the solve; ``SolutionSet.diagnostics['scan_span']``, not
written).  For a G or T of one frequency bin whose time cell holds data of more than one scan, the
accumulation keeps each scan's sums apart (folded into the cell's before the solve, which sees the
same data as before) and, after the solve, fits one gain per scan to those per-scan averages (a few
alternating least-squares passes, phase-only where the step is).  The drift indicator is the ratio of
chi2/nDOF of the solved gain over the per-scan averages to that of the per-scan gains on the same
samples: scale-free (WEIGHT=1 on raw correlator units scales both alike), ~1 for gains constant in
time whatever the noise (the nDOF take the per-scan gains' parameters), and large where the gains
changed between the scans.  ``excess`` is the part of the data power the per-scan gains take out
beyond the noise they fit, ~(rms change of the gains)^2: a change of a per mille is not called drift.

The rule (:func:`notes`, logged after the block by :func:`warn`, README "solint 'inf' spans scans"):

* ``inf`` without ``combine='scan'`` (the CASA trap): warned whenever a cell spans several scans of a
  field, drift or not -- the result is not what CASA's 'inf' gives, and whoever means it says so with
  ``combine='scan'``; the drift measured is quoted when it is there.
* ``combine='scan'`` requested (any time_interval): warned only when the drift indicator fires
  (ratio > :data:`RATIO` and excess > :data:`EXCESS`).
* not warned: a bandpass (G with frequency bins; calibration/driftcheck.py looks at those), K (a delay
  is stable between scans; the README's note on K over several scans), KC, CP and D (their 'inf' over
  every scan is the recipe: parallactic-angle coverage), a cell within one scan.
"""

from __future__ import annotations


import numpy as np


#: chi2/nDOF of the one gain over that of per-scan gains on the same per-scan averages above this ...
RATIO = 5.0
#: ... and the per-scan gains taking out more than this fraction of the data power (beyond the noise):
#: gains changing between the scans by ~sqrt(EXCESS), 1% in amplitude or 0.6 deg in phase
EXCESS = 1e-4

#: fewer degrees of freedom left to the per-scan gains than this: not measured (the ratio's noise)
MIN_DOF = 20

_ITER = 60


def wanted(jones_type, n_fsamp, chan_sampled, scan_sampled, group) -> bool:
    """Keep per-scan sums for this group (unit._accumulate_group): a G / T of one frequency sample, a
    time cell holding sample bins of more than one scan."""
    if jones_type not in ("G", "T") or n_fsamp != 1 or chan_sampled or scan_sampled:
        return False
    cells = np.asarray(group.sbin_cell, np.int64)
    scans = np.asarray(group.sbin_scan, np.int64)
    return any(len(np.unique(scans[cells == c])) > 1 for c in np.unique(cells))


def _fit(v, m, w, g0, shared, phase_only):
    """Gains (n_ant, 2) minimising sum w |v - g_a m conj(g_b)|^2 over the baselines' two parallel hands;
    v, m, w (n_ant, n_ant, 2) Hermitian-filled; ``shared``: one gain for both hands (T)."""
    g = g0.copy()
    for _ in range(_ITER):
        z = m * np.conj(g)[None, :, :]                  # model of (a, b) without g_a
        num = np.einsum("abh,abh->ah", w * v, np.conj(z))
        den = np.einsum("abh,abh->ah", w, np.abs(z) ** 2)
        if shared:
            num = num.sum(axis=1, keepdims=True) * np.ones((1, 2))
            den = den.sum(axis=1, keepdims=True) * np.ones((1, 2))
        has = den > 0
        new = np.where(has, num / np.where(has, den, 1.0), g)
        if phase_only:
            a = np.abs(new)
            new = np.where(a > 0, new / np.where(a > 0, a, 1.0), g)
        g = 0.5 * (g + new)
    return g


def _chi2(v, m, w, g):
    r = v - g[:, None, :] * m * np.conj(g)[None, :, :]
    return 0.5 * float(np.sum(w * np.abs(r) ** 2))      # each baseline twice (a, b) and (b, a)


def measure(scan_sums, group, cells_t, cell_index, res, jones_type, phase_only, bl_a1, bl_a2, n_ant):
    """Per time cell of the set: ``{"n_scans": [...], "ratio": [...], "excess": [...]}`` (lists over the
    set's time cells, NaN where not measurable) -- module docstring."""
    vis_sum, model_sum, w_sum = scan_sums               # (n_sbin, n_bl, 1, 4)
    cells = np.asarray(group.sbin_cell, np.int64)
    scans = np.asarray(group.sbin_scan, np.int64)
    shared = jones_type == "T"
    n_t = len(cells_t)
    out = {"n_scans": [0] * n_t, "ratio": [float("nan")] * n_t, "excess": [float("nan")] * n_t}
    for c, (it, _jf) in enumerate(cell_index):
        ct = cells_t[it]
        sb = np.flatnonzero((cells == ct) & (w_sum[:, :, 0, :].sum(axis=(1, 2)) > 0))
        out["n_scans"][it] = int(len(np.unique(scans[sb])))
        if len(np.unique(scans[sb])) < 2:
            continue
        J = np.asarray(res.jones[c])
        g1 = np.stack([J[:, 0, 0], J[:, 1, 1]], axis=-1)           # (n_ant, 2)
        bad = ~np.isfinite(g1) | (np.abs(g1) == 0)
        fl = np.asarray(res.flags[c], bool)
        bad |= fl[:, None]
        pol = res.extra.get("pol_flags") if isinstance(res.extra, dict) else None
        if pol is not None:
            bad |= np.asarray(pol[c], bool)
        g1 = np.where(bad, 1.0, g1)
        chi_one = chi_per = power = 0.0
        n_w = 0
        p_one = None
        p_per = 0
        for s in sb:
            v = np.zeros((n_ant, n_ant, 2), complex)
            m = np.zeros((n_ant, n_ant, 2), complex)
            w = np.zeros((n_ant, n_ant, 2))
            for h, k in ((0, 0), (1, 3)):
                ws = w_sum[s, :, 0, k]
                ok = ws > 0
                vv = np.where(ok, vis_sum[s, :, 0, k] / np.where(ok, ws, 1.0), 0.0)
                mm = np.where(ok, model_sum[s, :, 0, k] / np.where(ok, ws, 1.0), 0.0)
                ww = np.where(ok & ~bad[bl_a1, h] & ~bad[bl_a2, h], ws, 0.0)
                v[bl_a1, bl_a2, h], v[bl_a2, bl_a1, h] = vv, np.conj(vv)
                m[bl_a1, bl_a2, h], m[bl_a2, bl_a1, h] = mm, np.conj(mm)
                w[bl_a1, bl_a2, h] = w[bl_a2, bl_a1, h] = ww
            c1 = _chi2(v, m, w, g1)
            gs = _fit(v, m, w, g1, shared, phase_only)
            cs = min(_chi2(v, m, w, gs), c1)
            chi_one += c1
            chi_per += cs
            power += 0.5 * float(np.sum(w * np.abs(v) ** 2))
            n_w += int((w > 0).sum() // 2)
            # parameters of this scan's gains: per hand (G) or per antenna (T) with data, less a phase
            has = (w > 0).any(axis=1)                               # (n_ant, 2)
            units = int(has.any(axis=1).sum()) if shared else int(has.sum())
            n_ref = 1 if shared else int(has.any(axis=0).sum())
            p_s = (1 if phase_only else 2) * units - n_ref
            p_per += max(p_s, 0)
            p_one = p_s if p_one is None else max(p_one, p_s)
        dof_one, dof_per = 2 * n_w - (p_one or 0), 2 * n_w - p_per
        if dof_per < MIN_DOF or dof_one <= 0 or power <= 0:
            continue
        r_one, r_per = chi_one / dof_one, chi_per / dof_per
        if r_per > 0:
            out["ratio"][it] = float(r_one / r_per)
        else:
            out["ratio"][it] = float("inf") if r_one > 0 else 1.0
        out["excess"][it] = float(max(chi_one - r_per * dof_one, 0.0) / power)
    return out


def _implicit(step) -> bool:
    """'inf' without combine='scan': alakazam's one solution over every scan (CASA: one per scan)."""
    from ..core.combine import combines

    return step.time_interval.kind == "inf" and not combines(step, "scan")


def _drift(ratio, excess) -> bool:
    return bool(np.isfinite(ratio) and ratio > RATIO and np.isfinite(excess) and excess > EXCESS)


def notes(cfg, pending):
    """The warnings for the block's steps (``pending``: key -> solution sets)."""
    from ..core.combine import combines

    out = []
    for st in cfg.steps:
        sets = pending.get(st.key) or []
        if st.jones_type not in ("G", "T") or not sets or max(len(s.freq) for s in sets) != 1:
            continue
        implicit = _implicit(st)
        if not implicit and not combines(st, "scan"):
            continue                    # cells never cross a scan boundary
        fields, spans, worst = {}, [], (0.0, 0.0)
        for s in sets:
            d = s.diagnostics.get("scan_span")
            if d is None and implicit and len(s.time) == 1:
                # not measured (combine 'spw': the sums are kept per SPW instead): the scans it holds
                n = len({int(x) for x in np.atleast_1d(s.attrs.get("scans", []))})
                d = {"n_scans": [n], "ratio": [float("nan")], "excess": [float("nan")]}
            if d is None:
                continue
            for n, r, e in zip(d["n_scans"], d["ratio"], d["excess"]):
                if n < 2:
                    continue
                drift = _drift(r, e)
                if not implicit and not drift:
                    continue
                fields.setdefault(str(s.field_name), set()).add(n)
                spans.append(n)
                if drift and r > worst[0]:
                    worst = (float(r), float(e))
        if not fields:
            continue
        where = "; ".join(f"{f}: {'/'.join(str(n) for n in sorted(ns))} scans" for f, ns in fields.items())
        tint = st.time_interval.text or st.time_interval.kind
        what = f"{st.key} ({st.jones_type}, time_interval {tint}" + (
            f", combine '{st.combine}')" if st.combine else ")")
        if worst[0] > 0:
            drift = (f" The gains changed between those scans: chi2/nDOF of the one solution over the "
                     f"per-scan averages is {worst[0]:.3g}x that of one gain per scan on the same data "
                     f"(an rms change of ~{100 * np.sqrt(worst[1]):.2g}%), so it is an average of "
                     f"different gains and calibrates every scan wrongly.")
        elif any(np.isfinite(r) for s in sets for r in s.diagnostics.get("scan_span", {}).get("ratio", [])):
            drift = " The fit does not show the gains changing between those scans."
        else:
            drift = ""
        if implicit:
            msg = (f"{what}: one solution spans several scans of a field ({where}): alakazam's 'inf' is "
                   f"one solution over every selected scan (CASA's gaincal solint='inf' gives one solution "
                   f"per scan unless combine='scan').{drift} For one gain per scan use time_interval "
                   f"'scan' (akcal solint='scan'); to keep one gain over the scans and silence this, say "
                   f"so with combine 'scan' (akcal combine='scan').")
        else:
            msg = (f"{what}: a solution spans several scans of a field ({where}).{drift} Solve per scan "
                   f"(time_interval 'scan' without combine; akcal solint='scan'), or a shorter interval.")
        out.append(msg)
    return out
