"""A per-scan delay of other fields, pre-applied nearest in time, that changes inside a gain's interval.

Convention (docs/conventions.md, "Delay reference frequency"): our K applies ``exp(-2 pi i tau nu)`` at
the absolute frequency.  A K solved per scan on one calibrator (3C286) and pre-applied with the default
``nearest`` to the gains of another field (3C147, observed between 3C286's scans) changes from one
3C286 solution to the next at the midpoint between them; where that falls inside a scan of 3C147, the
rows of a gain interval on either side are corrected by delays that differ by the two solutions' noise,
d tau: a phase jump of ``2 pi d tau nu`` inside the interval, which averages its amplitude down by
about ``1 - cos(jump / 2)`` (CASA's K is referenced to the band centre, so its jump is ``2 pi d tau
(nu - nu_c)``, negligible).  Measured by review 57c on a CASA-built VLA MS at 2.0-2.5 GHz (d tau ~0.01
ns, jumps ~9 deg): those intervals' gains 0.1-0.3% below CASA's and akfluxscale 0.075% low in 6 of 6
realisations (2.4 x its error); the jump grows with frequency, so at 10 GHz the loss is ~16x.  With
``interp='linear'`` for the K the gains matched CASA's to 5e-4 and the flux its truth.

:func:`alakazam.unit._k_frame` corrects it for a G whose cells lie within one scan (the common case):
each row is pre-applied K(t, nu) conj K(t, f_b) -- the delay about the gain's bin centre f_b, CASA's
reference -- and the gain is stored as G conj K(t_s, f_b), which the apply's delay frame brings back to
what the solve fitted.  On the review's MS: akfluxscale 2.65711 / 2.28056 (truth 2.65796 / 2.28305, -3.4
sigma in SPW 1) -> 2.65842 / 2.28362; CALB's corrected row phases 1.10 -> 0.53 deg rms.
:func:`warn_preapply` says so before a solve it does not correct -- T (one gain for both hands, which
cannot hold each hand's frame), a G with ``combine``, a G over 'inf' (cells over several scans) --
once per pre-applied K and step, when a K switch falls inside a scan of a field the step solves on a
time interval longer than one integration, with a jump above :data:`JUMP_DEG`, and what to do:
pre-apply (and apply) the K with ``interp='linear'``, or solve the K on that field too.  A K solved
in the same block is not checked (its solutions are not known before the block runs; the frame
corrects its G steps alike).
"""

from __future__ import annotations

import numpy as np

#: a jump above this (degrees, at the SPW's centre) is warned about: 1 - cos(2.5 deg) = 0.1% of the
#: amplitude of an interval cut in half
JUMP_DEG = 5.0


def _switches(term, spw_id, field):
    """[(time of the switch (s), max |d tau| over antennas and hands (ns))] of ``term``'s solutions
    serving ``field`` nearest in time: none where the term has solutions of ``field`` itself (its own
    scans) or picks its fields otherwise than nearest in time."""
    from .delayframe import has_own

    if has_own(term, spw_id, field) or term.field_select != "nearest_time":
        return []
    sets = [s for s in term.sets if int(s.attrs.get("spw", -1)) == int(spw_id)]
    if term.solution_field:
        sets = [s for s in sets if str(s.attrs.get("field_name")) in set(term.solution_field)]
    times, taus = [], []
    for s in sets:
        if s.delay is None:
            continue
        d = np.asarray(s.delay, float)                         # (n_ant, n_f, n_t, 2) ns
        fl = np.asarray(s.flags, bool)[..., None]
        d = np.where(fl | ~np.isfinite(d), np.nan, d)
        names_s = list(s.attrs.get("ant_names", []))
        for it, t in enumerate(np.asarray(s.time, float)):
            if np.isfinite(t):
                times.append(float(t))
                taus.append({a: d[i, :, it, :] for i, a in enumerate(names_s)})
    order = np.argsort(times)
    out = []
    for i, j in zip(order[:-1], order[1:]):
        if times[j] - times[i] <= 0:
            continue
        common = set(taus[i]) & set(taus[j])
        jumps = [np.nanmax(np.abs(taus[j][a] - taus[i][a])) for a in common
                 if np.isfinite(taus[j][a] - taus[i][a]).any()]
        if jumps:
            out.append((0.5 * (times[i] + times[j]), float(max(jumps))))
    return out


def framed(step) -> bool:
    """Whether a step's gains are solved in the frame of such a K (:func:`alakazam.unit._k_frame`): a G
    whose cells lie within one scan (not 'inf', no combine)."""
    return (step.jones_type == "G" and step.time_interval.kind != "inf"
            and not str(getattr(step, "combine", "") or "").strip())


def warnings(terms, steps, step_fields, meta, spw_sel, scans) -> list:
    """Messages of :func:`warn_preapply` (module docstring)."""
    from ..jones import terms as jterms
    from ..plan import scan_ranges
    from . import spwmap as _spwmap

    out = []
    for si, step in enumerate(steps):
        tint = step.time_interval
        one_int = (tint.kind == "ints" and tint.seconds <= 1) or (tint.kind == "seconds" and tint.ints == 1)
        if not jterms.get(step.jones_type).gain or one_int:        # 'int': no row on both sides of a switch
            continue
        if framed(step):            # solved in the K's frame (unit._k_frame): corrected, nothing to say
            continue
        for ddid, _ in spw_sel.items():
            spw = meta.spws[ddid]
            mapped = _spwmap.for_spw(terms, spw.spw_id, spw.freqs, quiet=True)
            nu = float(np.mean(spw.freqs))
            for term in mapped:
                if term.jones_type != "K" or term.time_interp not in ("nearest", "exact"):
                    continue
                for fid in step_fields[si]:
                    name = str(meta.fields[fid].name)
                    sw = _switches(term, spw.spw_id, name)
                    if not sw:
                        continue
                    inside, jump = [], 0.0
                    for _, t0, t1 in scan_ranges(meta, fid, ddid, scans):
                        for t, dtau in sw:
                            if t0 < t < t1:
                                inside.append(t)
                                jump = max(jump, 360.0 * dtau * 1e-9 * nu)
                    if not inside or jump <= JUMP_DEG:
                        continue
                    loss = 1.0 - np.cos(np.radians(jump) / 2.0)
                    out.append(
                        f"{term.key} (solved per scan on other fields, interp '{term.time_interp}') changes "
                        f"inside {len(inside)} scan(s) of {name} (spw {spw.spw_id}) that step "
                        f"{si + 1} ({step.jones_type}, time_interval {tint.text or tint.kind}) solves: its "
                        f"delays step there by up to {jump / (360.0 * 1e-9 * nu):.3g} ns, a phase jump of "
                        f"{jump:.1f} deg at {nu / 1e9:.3f} GHz inside a solution interval, which lowers that "
                        f"interval's amplitudes by up to {100 * loss:.2g}% (and a flux scale from them). "
                        f"Pre-apply {term.key} with interp 'linear' (akcal interp; YAML "
                        f"external_preapply.time_interp) and apply it so, or solve the delay on {name} too")
    return list(dict.fromkeys(out))


def warn_preapply(ext_terms, cfg, step_fields, meta, spw_sel, scans, log):
    """Log :func:`warnings` of a solve's gaintable terms (module docstring)."""
    for w in warnings(ext_terms, cfg.steps, step_fields, meta, spw_sel, scans):
        log.warning("pre-apply: %s", w)
