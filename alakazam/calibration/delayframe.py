"""A gain solved after a per-scan delay is interpolated in time together with that delay.

Convention (docs/conventions.md, "Delay reference frequency"): our K applies
``exp(-2 pi i tau nu)`` at the absolute frequency, so the G solved with K pre-applied absorbs the phase
K leaves at G's frequencies: with a K per scan, G's solutions in scan s carry ``2 pi (tau_true - tau_s) nu``
-- the scan's delay error times the frequency, 0.3-0.7 rad at 1.3 GHz for 0.04-0.08 ns of delay noise.
The product K G is right at every solution time.  Between G solutions of different scans (a target
between two calibrator scans, G interpolated linearly; or nearest G and nearest K from different scans)
the apply combined the K of one scan with a G partly of another, and the target's phases were off by
that phase difference (several times the noise on the README's own K(scan) + G(2 min) chain, found by
a review against simulated truth).  CASA's K is referenced to the band centre and its G does not move
with the delay.

So a G is interpolated in the frame of the K it was solved after: with ``K(t, f)`` the K term evaluated
for the G solutions' field at time t and frequency f,

    G'(t_s, b) = G(t_s, b) K(t_s, f_b)          at each G solution time t_s and frequency bin b,
    G(t, c)    = G'(t, b(c)) conj(K(t, f_b(c)))  at each target time t and channel c (bin b(c)),

where ``G'(t, b)`` is G' evaluated as G would be (the same time interpolation, flags, field choice).
K is unit-modulus, so where K is the same at t and at the G solutions used (the same scan) nothing
changes, to rounding; between scans the product K G is the one CASA's band-centre convention gives at
G's frequency bins.

With a frequency interpolation (CASA's 'time,freq'), ``conj K`` is taken at the bins before G is
interpolated across them (:func:`evaluate_in_frame`).

Applies to a G or T (one gain for both hands: framed per hand, as K differs between them; any
frequency interpolation) whose ``preapply_chain``
names a K of the same chain with more than one solution time, with no gain of per-scan solutions
solved in between (that one took K's per-scan error: K per scan, a bandpass per scan, then G -- the
bandpass is framed, the G not; a term in between that the chain does not apply: not framed, as it
cannot be told), and whose solution sets of the SPW each lie in one scan (a G with a set spanning
several scans, e.g. a bandpass over all scans, absorbed several Ks' phases: it is left as it is);
where K is flagged at a G solution or target time, that factor is 1 (the product is flagged by K
itself).  Used by
:func:`alakazam.calibration.chain.compose`, so the apply and every solve's pre-apply alike
(tests/test_delay_frame.py).  CASA's applycal does not frame: akexport writes such a K at the centre
of its solution bin and the G times ``K(t_s, nu_ref)``, which CASA's interpolation then frames
(io/casatable.py, "Delay frame"; :func:`own_factor`).
"""

from __future__ import annotations

import copy

import numpy as np

from ..errors import AlakazamError


def k_terms_for(term, terms, spw_id=None):
    """The K terms of ``terms`` that the gain ``term`` was solved after and that vary in time (empty when
    the frame does not apply to ``term``: not a G or T, or -- for SPW ``spw_id`` -- a gain with a
    solution set spanning several scans there, which absorbed several Ks' phases).  A key of the gain's
    ``preapply_chain`` is another applied term of that name (:func:`_applied`: never the gain itself;
    among several, the one from the table recorded in ``preapply_tables``)."""
    from .solve_order import preapply_chain

    if term.jones_type not in ("G", "T"):
        return []
    if spw_id is not None and any(int(s.attrs["spw"]) == int(spw_id) and not s.scan_id for s in term.sets):
        return []
    chain = preapply_chain(term) or []
    sources = _chain_sources(term, chain)
    chosen = []
    for i, key in enumerate(chain):
        t = _applied(term, key, sources[i], terms)
        if t is None or t.jones_type != "K":
            continue
        if not _varies(t):
            continue                    # one K per field: nothing moves within a field
        if any(_took_k_error(term, chain[j], sources[j], terms, spw_id) for j in range(i + 1, len(chain))):
            continue                    # a term solved in between took K's per-scan error (or unknown)
        chosen.append(t)
    return [t for t in terms if any(t is c for c in chosen)]


def has_own(k, spw_id, field) -> bool:
    """Whether the K term ``k`` has solutions of ``field`` in SPW ``spw_id``: a per-scan K of the field
    itself is one value in each of its scans (nearest, own field first), so nothing switches inside one."""
    return any(str(s.attrs.get("field_name")) == str(field) and int(s.attrs.get("spw", -1)) == int(spw_id)
               for s in k.sets)


def solve_k_terms(prior, spw_id, field):
    """The K terms of a solve's pre-applied chain ``prior`` (mapped to ``spw_id``) that a G on ``field``
    is solved in the frame of (:func:`alakazam.unit._k_frame`): each K that varies in time, has no
    solutions of ``field`` (:func:`has_own`: taken nearest in time from other fields, it may switch
    from one solution to the next inside a scan of ``field``), and is followed in the chain by no gain
    of per-scan solutions (which took its per-scan error: the apply does not frame the G by it either,
    :func:`k_terms_for`)."""
    out = []
    for i, t in enumerate(prior):
        if t.jones_type != "K" or not _varies(t) or has_own(t, spw_id, field):
            continue
        if any(_per_scan(u, spw_id) for u in prior[i + 1:]):
            continue
        out.append(t)
    return out


def row_factor(k_terms, spw_id, times, freqs, ant_names, target_name, target_radec, time_scan):
    """The product of ``k_terms``' diagonals (n_t, n_ant, n_f, 2) at ``times`` and ``freqs`` as the solve
    pre-applies them to a target's rows (:func:`_diag_factor`); 1 where flagged or without solutions."""
    return _diag_factor(k_terms, spw_id, times, freqs, ant_names, target_name, target_radec, time_scan)


def _chain_sources(term, chain):
    """Per key of ``chain`` (a list in its order: a key may appear twice, an external K0 pre-applied by an
    akcal that solves a K0 too), the real path of the table it was solved in ('' = solved in this run,
    in memory) from the attr ``preapply_tables`` ('' there = ``term``'s own table); None each when not
    recorded (tables before the attr)."""
    import os

    a = term.sets[0].attrs if term.sets else {}
    tables = [str(x) for x in np.atleast_1d(a.get("preapply_tables", []))]
    if len(tables) != len(chain):
        return [None] * len(chain)
    src = str(getattr(term, "source", "") or "")
    return [os.path.realpath(p or src) if (p or src) else "" for p in tables]


def _applied(term, key, want, terms):
    """The term of ``terms`` that is ``term``'s pre-applied ``key`` (``want``: the table recorded for it):
    another term of that name -- never ``term`` itself (every akcal names its first G 'G0': a gain 'G0'
    took itself for its chain's bandpass 'G0' of another table, and was left unframed, 0.37 against
    0.078 rad, a review); among several of that name, the one from the recorded table (else the
    first).  One of that name is taken whatever its table: tables are copied, archived and fluxscaled
    (akfluxscale writes a copy), and a recorded path that still exists is not the only true one."""
    import os

    cands = [t for t in terms if t is not term and t.key == key]
    if len(cands) <= 1 or not want:
        return cands[0] if cands else None
    for t in cands:
        src = str(getattr(t, "source", "") or "")
        if src and os.path.realpath(src) == want:
            return t
    return cands[0]


def _took_k_error(term, key, want, terms, spw_id):
    """Whether the key ``key`` of ``term``'s pre-applied chain, solved after a per-scan K, took that K's
    per-scan error instead of ``term`` (:func:`_per_scan`; True when that cannot be told).  A key the
    apply leaves out (a Stokes I apply of K, G, B from a full-polarisation table, whose iterated gains
    list every other key) is judged too: a K, D, KC or CP by its type, which cannot take it; a gain from
    its own table (``preapply_tables``; '' = ``term``'s), read once -- before, any key left out
    unframed the gain, its target phases off by the per-scan delay errors (a review: 0.63 against
    0.078 rad).  A left-out gain whose table cannot be read leaves the gain unframed, with a warning."""
    t = _applied(term, key, want, terms)
    if t is not None:
        return _per_scan(t, spw_id)
    from .solve_order import _type_of_key

    jt = _type_of_key(key)
    if jt is not None and jt not in ("G", "T"):
        return False
    if not want:
        return True             # not recorded (an older table), or solved in this run (iterations: the key
        #                         is the one being solved again): unknown, unframed as before
    other = _left_out_term(term, key, want)
    if other is None:
        from ..core import warnonce

        warnonce.warning("alakazam.apply", "%s: %s, pre-applied when it was solved, is neither applied nor "
                         "readable from its table (%s): %s is interpolated without its per-scan K's delay "
                         "frame (a target between calibrator scans can be off by the scans' delay errors); "
                         "apply %s too, or keep its table where it was", term.key, key, want, term.key, key)
        return True
    return _per_scan(other, spw_id)


def _left_out_term(term, key, path):
    """The pre-applied key ``key`` of ``term`` read from ``path``, the table it was solved in
    (:func:`_chain_sources`); None when gone or unreadable.  Kept on the term."""
    memo = term.__dict__.setdefault("_left_out", {})
    if (key, path) not in memo:
        got = None
        try:
            from .chain import load_term
            got = load_term(path, key)
        except Exception:           # noqa: BLE001 -- gone or unreadable: unknown (not framed)
            got = None
        memo[(key, path)] = got if got is not None and got.key == key else None
    return memo[(key, path)]


def _varies(k):
    """Some field of K has more than one solution time in an SPW (a K per scan; a K per field solved
    over all its scans is one value per field, and the chain takes one field per target time)."""
    n = {}
    for s in k.sets:
        key = (str(s.attrs.get("field_name", "")), int(s.attrs.get("spw", 0)))
        n[key] = n.get(key, 0) + len(s.time)
    return any(v > 1 for v in n.values())


def _per_scan(term, spw_id):
    """A gain whose solutions follow the scans (every set of one scan, several times in all): solved
    after a per-scan K, it took that K's per-scan error, and the terms solved after it did not."""
    if term.jones_type not in ("G", "T"):
        return False
    sets = [s for s in term.sets if spw_id is None or int(s.attrs["spw"]) == int(spw_id)]
    return bool(sets) and all(s.scan_id for s in sets) and sum(len(s.time) for s in sets) > 1


def _diag_factor(k_terms, spw_id, times, freqs, ant_names, target_name, target_radec, time_scan):
    """Product over ``k_terms`` of K's diagonal (n_t, n_ant, n_f, 2) on (times, freqs); 1 where a K is
    flagged or has no solution for the target.

    Each K is evaluated once per distinct frequency (a G of one bin asks for its bin's frequency at
    every channel) by :func:`alakazam.calibration.chain.diag_table` where it applies (nearest / exact
    in time: the delays turned into phases for the solution times used only), else by ``term_tables``
    -- the same values (a K's phase at a frequency depends on that frequency alone; diag_table gives
    term_tables' diagonal, tests/test_apply_fastpath.py), without evaluating a (time, antenna,
    channel, 2, 2) table per channel of the data (issue 16: 3.3 s of the full-polarisation apply)."""
    from .chain import diag_table, term_tables

    freqs = np.asarray(freqs, float)
    uf, inv = np.unique(freqs, return_inverse=True)
    fac = np.ones((len(times), len(ant_names), len(uf), 2), np.complex128)
    for k in k_terms:
        try:
            fast = diag_table(k, spw_id, times, uf, ant_names, target_name, target_radec, True,
                              time_scan=time_scan)
            if fast is not None:
                d = fast[0]
            else:
                j, _, _ = term_tables(k, spw_id, times, uf, ant_names, target_name, target_radec, True,
                                      time_scan=time_scan)
                d = np.stack([j[..., 0, 0], j[..., 1, 1]], axis=-1)
        except AlakazamError:           # no K solutions for this field / SPW: no factor
            continue
        fac *= np.where(np.isfinite(d), d, 1.0)
    return fac if len(uf) == len(freqs) and (uf == freqs).all() else fac[:, :, inv.reshape(-1)]


def own_factor(s, k_terms, spw_id, freqs):
    """The product of ``k_terms``' diagonals (n_t, n_ant, n_f, 2) for the gain solution set ``s``: the
    K of the set's own field at its solution times, on ``freqs`` (as the solve pre-applied it); 1 where
    a K is flagged or has no solution there."""
    from .chain import sets_memo

    a = s.attrs
    own = []
    for k in k_terms:
        # as the solve pre-applied it: the apply's interpolation of K (CASA's default 'linear') blended
        # two scans' delays at the gain's times, the solve's was the scan's own (a review: 0.18-0.72
        # against 0.078 rad).  One copy per K and interpolation, kept on the K with its sets (its hand
        # views and field timelines are then built once, not once per gain set: a review's 150-field
        # mosaic spent 7.7 s building them again, 56a)
        interp = solve_interp(a, k.key)
        memo = sets_memo(k, "_own_copies")
        k2 = memo.get(interp)
        if k2 is None:
            k2 = copy.copy(k)
            k2.field_select, k2.solution_field = "nearest_time", None
            k2.time_interp = interp
            for name in ("_hand_views", "_own_copies"):
                k2.__dict__.pop(name, None)
            memo[interp] = k2
        own.append(k2)
    return _diag_factor(own, spw_id, np.asarray(s.time, float), np.asarray(freqs, float),
                        [str(x) for x in a["ant_names"]], str(a.get("field_name", "")),
                        (float(a.get("field_ra", np.nan)), float(a.get("field_dec", np.nan))),
                        np.full(len(s.time), s.scan_id, np.int64))


def solve_interp(attrs, key):
    """The time interpolation the key ``key`` was pre-applied with when the set of ``attrs`` was solved
    (attr ``preapply_interp``, parallel to ``preapply_chain``); 'nearest' -- the solve's default --
    for a table written before the attr."""
    chain = [str(k) for k in np.atleast_1d(attrs.get("preapply_chain", []))]
    interp = [str(x) for x in np.atleast_1d(attrs.get("preapply_interp", []))]
    if key in chain and len(interp) == len(chain):
        return interp[chain.index(key)]
    return "nearest"


def to_frame(term, k_terms, spw_id):
    """A copy of ``term`` whose solution sets of SPW ``spw_id`` (one scan each) are multiplied by the K
    of their own field at their times and frequency bins (G' of the module docstring); cached on the
    term per SPW."""
    memo = term.__dict__.setdefault("_delay_frame", {})
    key = (spw_id, tuple(id(k) for k in k_terms))
    if key in memo:
        return memo[key]
    sets = []
    for s in term.sets:
        if int(s.attrs["spw"]) != int(spw_id):
            sets.append(s)
            continue
        fac = own_factor(s, k_terms, spw_id, np.asarray(s.freq, float))
        v = copy.copy(s)
        v.jones = np.array(s.jones)
        f = np.moveaxis(fac, 0, 2)                  # (n_ant, n_f, n_ts, 2)
        v.jones[..., 0, 0] *= f[..., 0]
        v.jones[..., 1, 1] *= f[..., 1]
        sets.append(v)
    t2 = copy.copy(term)
    for name in ("_delay_frame", "_hand_views", "_by_field", "_own_copies"):
        t2.__dict__.pop(name, None)
    t2.sets = sets
    memo[key] = t2
    return t2


def evaluate_in_frame(evaluate, term, k_terms, spw_id, times, freqs, ant_names, target_name, target_radec,
                      time_scan):
    """``evaluate(term)`` of :func:`alakazam.calibration.chain.compose` (``(jones, diag, info, flags)``)
    with ``term`` interpolated in the frame of ``k_terms``: the framed copy evaluated, then brought back.

    With a frequency interpolation (``freq_interp``, CASA's 'time,freq') the frame is taken off at G's
    own frequency bins, before the interpolation across them: the framed copy is evaluated in time on
    the bins, brought back there with ``conj K(t, f_b)``, and only then interpolated to the channels
    (:func:`alakazam.core.freqinterp.interp_freq`, per hand: each hand's flagged bins bridged on its
    own).  Bringing it back at the channel frequency instead would leave ``K(t, f_b) conj K(t, f_c)``,
    the whole delay times the channel's distance from the bin it took (``nearest``)."""
    framed = to_frame(term, k_terms, spw_id)
    bins = _common_bins(term, spw_id)
    if not term.freq_interp or bins is None or len(bins) < 2:      # nearest bin (one bin: the same)
        # a gain of one bin keeps a channel axis of 1 (chain.term_tables chan_one): its value and K's
        # frame at its bin are the same at every channel
        j, d, info, f = evaluate(framed, True)
        return j, from_frame(d, bins, k_terms, spw_id, times, freqs, ant_names, target_name, target_radec,
                             time_scan), info, f
    flat = copy.copy(framed)
    flat.__dict__.pop("_hand_views", None)
    flat.freq_interp = ""
    _, d, info, _ = evaluate(flat, at=bins)                      # (n_t, n_ant, n_bins or 1, 2)
    d = np.broadcast_to(d, (len(times), len(ant_names), len(bins), 2))
    d = d * np.conj(_diag_factor(k_terms, spw_id, np.asarray(times, float), bins, ant_names, target_name,
                                 target_radec, time_scan))
    from ..core.freqinterp import interp_freq

    out = np.empty((len(times), len(ant_names), len(freqs), 2), np.complex128)
    for h in range(2):
        jb = np.zeros((len(ant_names), len(bins), len(times), 2, 2), np.complex128)
        v = np.moveaxis(d[..., h], 0, 2)                        # (n_ant, n_bins, n_t)
        jb[..., 0, 0] = jb[..., 1, 1] = v
        jc, fc, fdesc = interp_freq(bins, jb, ~np.isfinite(v), np.asarray(freqs, float), term.freq_interp)
        out[..., h] = np.where(np.moveaxis(fc, 2, 0), np.nan, np.moveaxis(jc[..., 0, 0], 2, 0))
    info = dict(info, freq=fdesc)
    return None, out, info, None


def _common_bins(term, spw_id):
    """G's frequency bins in SPW ``spw_id``, when every field has the same ones (else None)."""
    from .chain import _by_field

    try:
        gf = [np.asarray(fs.freq, float) for fs in _by_field(term, spw_id).values()]
    except AlakazamError:
        return None
    if any(len(f) != len(gf[0]) or not np.allclose(f, gf[0], rtol=0, atol=1e-3) for f in gf):
        return None
    return gf[0]


def from_frame(d, bins, k_terms, spw_id, times, freqs, ant_names, target_name, target_radec, time_scan):
    """G's diagonal ``d`` (n_t, n_ant, n_chan or 1, 2), evaluated from :func:`to_frame`'s copy, brought
    back: times conj(K(t, f_b(c))) at the G bin ``b(c)`` of each channel (``bins``: G's bins,
    :func:`_common_bins`)."""
    from ..core.interpolation import map_freq

    if bins is None:
        return d                        # fields with different bins: left as evaluated
    fb = bins[map_freq(bins, np.asarray(freqs, float)[:d.shape[2]] if d.shape[2] > 1 else
                       np.asarray(freqs, float)[:1])[0]]
    fac = _diag_factor(k_terms, spw_id, np.asarray(times, float), fb, ant_names, target_name, target_radec,
                       time_scan)
    return d * np.conj(fac)
