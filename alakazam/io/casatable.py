"""CASA calibration tables ("NewCalTable" format) written and read with python-casacore.

Export (:func:`write_table`): one alakazam key -> one CASA caltable.  Import (:func:`read_table`): a
CASA caltable -> the same :class:`alakazam.io.hdf5.SolutionSet` objects as ``hdf5.read_term``, so
akapply and external_preapply take CASA tables by path.

Layout written (as CASA 6.7's gaincal/bandpass/polcal write it)::

    main table   TIME (s, MEASINFO epoch UTC), INTERVAL (0, as CASA writes it for every solint),
                 FIELD_ID, SPECTRAL_WINDOW_ID, ANTENNA1, ANTENNA2, SCAN_NUMBER, OBSERVATION_ID,
                 CPARAM or FPARAM (nChan, nPar), PARAMERR (G, B, T Jones: |par| / SNR, CASA's
                 relation; else 0), FLAG, SNR (solver_stats/snr per parameter), WEIGHT (cells left
                 undefined, as CASA leaves them) -- one row per solution time, antenna and SPW
    keywords     ParType ('Complex' | 'Float'), MSName, VisCal, PolBasis, CASA_Version and the
                 subtables ANTENNA, FIELD, SPECTRAL_WINDOW, OBSERVATION (copies of the MS's, with the
                 SPECTRAL_WINDOW rows describing the solution channels), HISTORY
    table info   type 'Calibration', subType = VisCal

Conventions (docs/conventions.md, "CASA calibration tables"; pinned by tests/test_casatable.py)
-------------------------------------------------------------------------------------------------
CASA's RIME is ours (``V_pq = J_p M_pq J_q^H``, diagonal terms on the antenna side of D, P on the
sky side), so the Jones matrices are copied, except where CASA parametrises a term differently:

============  ==============  ============  ===================================================
alakazam      VisCal          param         conversion
============  ==============  ============  ===================================================
G (1 bin)     G Jones         CPARAM (1,2)  g_p, g_q (framed: times K(t_s, nu_ref), below)
G (n bins)    B Jones         CPARAM (n,2)  per solution channel; SPECTRAL_WINDOW CHAN_FREQ = bin freqs
T             T Jones         CPARAM (1,1)  g (framed: G Jones (1,2), g K_p(t_s, nu_ref), g K_q(..))
K             K Jones         FPARAM (1,2)  tau_CASA = -tau (ns); CHAN_FREQ = [0 Hz], or [nu_ref] for a
                                            K framing a gain (below), or the K's own delay_ref_hz
KC            Kcross Jones    FPARAM (1,2)  [-tau, 0]; CHAN_FREQ = [0 Hz] (or its own delay_ref_hz)
CP            Xf Jones        CPARAM (n,1)  exp(-i phi)
D             Df Jones        CPARAM (n,2)  [d_pq, d_qp]
============  ==============  ============  ===================================================

* Delay: CASA's K Jones is ``exp(+2 pi i tau_C (nu - nu_ref))`` with nu_ref the middle CHAN_FREQ of
  the caltable's SPW row (CASA >= 5.3); ours is ``exp(-2 pi i tau nu)`` at absolute frequency.  So
  tau_C = -tau, and the exported SPW row has one channel at 0 Hz, which makes CASA's matrix equal
  ours exactly (with the band centre as nu_ref, CASA's would lack the phase ``-2 pi tau nu_c`` that
  our later terms absorbed).  On import nu_ref is kept (attr ``delay_ref_hz``) and applied; a K that
  has one (a CASA K read into a table) is exported with it.
* Delay frame (:func:`delay_frame`; calibration/delayframe.py; tests/test_export_delay_frame.py): a K
  with more than one solution time per field and SPW (a K per scan), and a G or T of the same table
  solved after it that :func:`alakazam.calibration.delayframe.k_terms_for` frames in that SPW (akapply
  interpolates it in the K's frame: no per-scan gain in between, no solution set spanning scans):

  ==========  ==============================================================================
  term        exported
  ==========  ==============================================================================
  that K      CHAN_FREQ = [nu_ref] in the framed SPWs; nu_ref = the K solution bin's centre
              frequency (median over the SPW's sets; from the K table alone, :func:`k_reference`)
  that G / T  each solution times ``K(t_s, nu_ref)`` of its own field and time, per hand (1 where
              K is flagged); every bin of a B Jones by the same nu_ref; a T becomes G Jones
  other gains unchanged (a gain spanning scans, one solved after a per-scan gain; of two gains
              framed by the same K, the second: the chain's gains carry ``K(t_s, nu_ref)`` once)
  ==========  ==============================================================================

  CASA's K is then ``K(t, f) conj K(t, nu_ref)`` of ours, so ``K_casa(t, f) G_exp(t_s) = K(t, f)
  G(t_s)`` where K(t) = K(t_s) (the G's own scan: equal to ours at the solution times), and CASA's
  linear time interpolation of G_exp is our frame's ``G'(t_s) = G(t_s) K(t_s, f_b)`` with f_b =
  nu_ref: for a one-bin G exactly akapply's result between scans too (CASA applycal of K(scan) +
  G(2 min), interp ['nearest', 'linear'], a TARGET between calibrator scans: 2.9e-7 of max |V| from
  akapply, row phases 0.0126 rad rms; 0.0665 with the 0-Hz export).  A G of several bins: exact at
  its solution times; between scans CASA's result differs from akapply's by ``2 pi (f_b - nu_ref)``
  times the difference between the delay interpolated between the scans and the one applied (a TARGET
  between scans, 4-MHz bins of a 16-MHz band, CASA interp ['nearest', 'linear,linear']: 1.8e-3 of max
  |V| from akapply, row phases 0.0126 rad rms as with one K for the run).
  Export the K and the gains it frames together (a framed G with a 0-Hz K, or the other way round,
  is off by ``2 pi tau nu_ref``).  A G or T of another table than its K (the solve's attr
  ``preapply_tables`` names the K's table) is framed by that K where the K's export from its own
  table is framed (:func:`_chain_from_sources`).
* CP: ours is ``diag(1, exp(i phi))`` for every antenna, CASA's Xf is ``diag(x, 1)``; they differ by
  the scalar ``exp(i phi)`` common to all antennas, which cancels in ``J_p M J_q^H``: x = exp(-i phi).
* D: the same matrix ``[[1, d_pq], [d_qp, 1]]`` in the feed frame (after P), par 0 = d_pq.
* Antennas: ANTENNA1 is the MS ANTENNA row (matched by name); MS antennas without solutions get
  flagged rows (as CASA writes them).  ANTENNA2 is the reference antenna (-1 for K, KC, CP).
* A G with equal p and q and a CASA ``T Jones`` (one parameter) import as the same G.
"""

from __future__ import annotations

import os
import shutil
from typing import List

import numpy as np

from .. import __version__
from ..errors import AlakazamError
from ..jones import terms as jterms
from .hdf5 import SolutionSet

TWO_PI_NS = 2e-9 * np.pi
#: keyword of an exported Df table: 'casa' -- CASA's frame, the cross-hand phase (Xf) applied on the sky
#: side of D (akexport's default, the chain's CP folded in) -- or 'alakazam' (crossphase='none': our
#: frame, CP on the antenna side of D).  A Df table without it (CASA's own) is in CASA's frame.
LEAKAGE_FRAME_KEYWORD = "AlakazamLeakageFrame"
#: keyword of an exported Df table: the keys its D was solved after (the attr ``preapply_chain``,
#: comma-separated), so that a D solved before a CP and exported in our frame (crossphase='none') is
#: brought to the final frame on import as from the HDF5 table (a review: 1.1e-3 of max |V| without it)
PREAPPLY_CHAIN_KEYWORD = "AlakazamPreapplyChain"

#: CASA VisCal keyword (lower case) -> alakazam jones type (the registry's casa_import names)
VISCAL_TO_TYPE = {v.lower(): jterms.from_viscal(v) for v in jterms.viscal_names()}
SUBTABLES = ("ANTENNA", "FIELD", "SPECTRAL_WINDOW", "OBSERVATION", "HISTORY")


def _ct():
    from casacore import tables

    return tables


def viscal_for(jones_type: str, n_freq: int) -> str:
    """The VisCal an alakazam term is exported as (the registry's casa_viscal)."""
    return jterms.get(jones_type).viscal(n_freq)


# ---------------------------------------------------------------- export
def _params(s: SolutionSet, jt: str):
    """(values (n_ant, n_t, n_chan, n_par), flags same shape, ParType)."""
    fl = np.asarray(s.flags, bool)                         # (n_ant, n_f, n_t)
    j = np.asarray(s.jones)
    tt = jterms.get(jt)
    from ..core.handflags import per_hand
    hf = s.hand_flags() if per_hand(jt) else None          # (n_ant, n_f, n_t, 2): CASA's FLAG per pol
    if tt.freq == "delay":
        if s.delay is None or s.delay.shape[1] != 1:
            raise AlakazamError(f"{jt}: only delays with one frequency bin can be exported to a CASA "
                                f"K table (this one has {0 if s.delay is None else s.delay.shape[1]})")
        d = -np.asarray(s.delay, float)[:, 0]              # (n_ant, n_t, 2)  tau_CASA = -tau
        if tt.delay_pols == 1:                              # KC: (tau, 0)
            d = np.stack([d[..., 0], np.zeros_like(d[..., 0])], axis=-1)
        vals = d[:, :, None, :]
        flags = (np.broadcast_to(fl[:, 0][:, :, None, None], vals.shape) if hf is None
                 else hf[:, 0][:, :, None, :])
        return vals, flags, "Float"
    if not tt.casa_elements:
        raise AlakazamError(f"cannot export jones type {jt!r}")
    # the CASA parameters: G (g_p, g_q), T (g), D (d_pq, d_qp), CP conj(exp(i phi)) = exp(-i phi)
    v = np.stack([j[..., a, b] for a, b in tt.casa_elements], axis=-1)   # (n_ant, n_f, n_t, n_par)
    if tt.casa_conj:
        v = np.conj(v)
    vals = np.moveaxis(v, 2, 1)                                        # (n_ant, n_t, n_f, n_par)
    if hf is not None and vals.shape[-1] == 2:                         # K, G: FLAG per pol
        return vals, np.moveaxis(hf, 2, 1), "Complex"
    flags = np.broadcast_to(np.moveaxis(fl, 2, 1)[..., None], vals.shape)
    return vals, flags, "Complex"


def _snr(s: SolutionSet, jt: str, n_par: int):
    """(n_ant, n_t, n_chan, n_par) float32: the stored ``solver_stats/snr`` (n_ant, n_f, n_t, 2) per
    CASA parameter -- parameter i of a two-parameter term (G, B: g_p, g_q; D: d_pq, d_qp; K, KC per
    hand) takes hand i, a one-parameter term (T, Xf) hand 0 (T: both hands' sum, equal in both; CP: one
    value for all antennas).  0 where the table holds none (older tables) or it is not finite, as CASA
    writes 0 where it has no estimate (its reference antenna's solutions).

    Scaled as CASA scales its errors, by the fit's chi2 / nDOF where that exceeds the weights' noise:

    * G / T with amplitudes (calmode 'ap', 'a'), B, D, KC, CP: divided by sqrt(chi2/nDOF) of the cell
      (``solver_stats/rchi2``) where that exceeds 1.  alakazam's SNR caps k2 = chi2/nDOF at 1
      (solvers/quality.py: a misfit above the weights' prediction is not noise); CASA's does not (a G
      per integration at chi2/nDOF 636 exported 25x CASA's SNR before this, 1.007x after: review 55d).
    * K and phase-only G / T (:func:`alakazam.solvers.quality.data_snr_applies`; the table's attr
      ``phase_only``): not divided by ``rchi2``.  Their SNR (:func:`quality.phase_only_snr`) is
      S / sqrt(min(f, 2)), already scaled by f, the chi2/nDOF of the fit to the data made phase-only as
      CASA's apmode 'P' fits them (f / 2 is CASA's k2; shrunk towards the solve's pooled f where the cell
      has few DOF), while ``rchi2`` is the raw complex fit's and
      holds the amplitude mismatch of DATA against MODEL_DATA (raw correlator units, a model flux off
      by 20%, gains of |g| != 1), which CASA's phase-only chi2 does not see: divided by it, a G 'p'
      with a 1 Jy model for a 2.5 Jy calibrator exported 0.015x CASA's SNR.  Beyond the cap they are
      divided by sqrt(f / 2) (``solver_stats/rchi2_phase``, f uncapped) where f exceeds 2, so the
      exported SNR is S / sqrt(f), CASA's, as the amplitude terms' is CASA's uncapped: a phase scatter
      beyond the weights' prediction is a real phase error to whoever applies the table (CASA's
      plotms, a minsnr on the SNR column), whether from weights that do not describe the noise
      (WEIGHT = 1 on raw correlator units: 6.8x CASA's SNR without it) or a phase misfit within the
      solint.  Tables written before ``rchi2_phase`` (session 57) are exported as stored."""
    n_ant, n_f, n_t = np.asarray(s.jones).shape[:3]
    snr = (s.extra or {}).get("snr")
    n_chan = 1 if jterms.get(jt).freq == "delay" else n_f
    if snr is None or np.shape(snr) != (n_ant, n_f, n_t, 2):
        return np.zeros((n_ant, n_t, n_chan, n_par), np.float32)
    v = np.asarray(snr, float)[..., [0, 1] if n_par == 2 else [0]]          # (n_ant, n_f, n_t, n_par)
    rchi2 = (s.extra or {}).get("rchi2")
    if _phase_fit(s, jt):       # f / 2 = CASA's k2 of the phase-only fit: beyond the solve's cap (f <= 2)
        f = (s.extra or {}).get("rchi2_phase")
        rchi2 = None if f is None else np.asarray(f, float) / 2.0
    if rchi2 is not None and np.shape(rchi2) == (n_f, n_t):
        r = np.asarray(rchi2, float)
        v = v / np.sqrt(np.where(np.isfinite(r) & (r > 1.0), r, 1.0))[None, :, :, None]
    v = np.where(np.isfinite(v), v, 0.0)
    return np.moveaxis(v, 2, 1)[:, :, :n_chan].astype(np.float32)          # (n_ant, n_t, n_chan, n_par)


def _phase_fit(s: SolutionSet, jt: str) -> bool:
    """Whether the set's SNR is a phase-only fit's (solvers/quality.phase_only_snr): K, and G / T solved
    phase-only (the group attr ``phase_only``; absent in a table of neither: False)."""
    from ..solvers.quality import data_snr_applies

    return data_snr_applies(jt, bool(s.attrs.get("phase_only", False)))


def _paramerr(vals, snr, jt):
    """PARAMERR: CASA's tables hold SNR = |par| / PARAMERR (gaincal G, T, B measured to float32; 0 and
    0 where it has no estimate), and alakazam's SNR of a gain is that, |g| / err with err its
    Gauss-Newton error (solvers/quality.py): PARAMERR = |g| / SNR for G and T (G, B, T Jones).  The
    SNR of K, KC, CP and D is the sensitivity of a unit gain, not |par| / err (a delay or a leakage can
    be 0): no error is stored for them, PARAMERR 0 (CASA's K Jones tables have PARAMERR 0 too)."""
    if jt not in ("G", "T"):
        return np.zeros(np.shape(vals), np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.where(snr > 0, np.abs(vals) / snr, 0.0)
    return np.where(np.isfinite(e), e, 0.0).astype(np.float32)


def _main_desc(par_type):
    ct = _ct()
    dm = dict(datamanagertype="StandardStMan", datamanagergroup="MSMTAB")
    cols = [ct.makescacoldesc("TIME", 0.0, keywords={"QuantumUnits": ["s"],
                                                      "MEASINFO": {"type": "epoch", "Ref": "UTC"}}, **dm),
            ct.makescacoldesc("FIELD_ID", 0, **dm), ct.makescacoldesc("SPECTRAL_WINDOW_ID", 0, **dm),
            ct.makescacoldesc("ANTENNA1", 0, **dm), ct.makescacoldesc("ANTENNA2", 0, **dm),
            ct.makescacoldesc("INTERVAL", 0.0, keywords={"QuantumUnits": ["s"]}, **dm),
            ct.makescacoldesc("SCAN_NUMBER", 0, **dm), ct.makescacoldesc("OBSERVATION_ID", 0, **dm)]
    if par_type == "Complex":
        cols.append(ct.makearrcoldesc("CPARAM", 0j, valuetype="complex", **dm))
    else:
        cols.append(ct.makearrcoldesc("FPARAM", 0.0, valuetype="float", **dm))
    cols += [ct.makearrcoldesc("PARAMERR", 0.0, valuetype="float", **dm),
             ct.makearrcoldesc("FLAG", False, valuetype="boolean", **dm),
             ct.makearrcoldesc("SNR", 0.0, valuetype="float", **dm),
             ct.makearrcoldesc("WEIGHT", 0.0, valuetype="float", **dm)]
    return ct.maketabdesc(cols)


def _ms_meta(ms):
    ct = _ct()
    with ct.table(os.path.join(ms, "ANTENNA"), ack=False) as t:
        ants = [str(x) for x in t.getcol("NAME")]
    with ct.table(os.path.join(ms, "FIELD"), ack=False) as t:
        fields = [str(x) for x in t.getcol("NAME")]
    with ct.table(os.path.join(ms, "SPECTRAL_WINDOW"), ack=False) as t:
        spw_freqs = [np.asarray(t.getcell("CHAN_FREQ", i), float) for i in range(t.nrows())]
    return ants, fields, spw_freqs


def _scan_fields(ms) -> dict:
    """{MS scan number: set of FIELD_IDs} of the MS's main table."""
    ct = _ct()
    with ct.table(ms, ack=False) as t:
        sc, fi = t.getcol("SCAN_NUMBER"), t.getcol("FIELD_ID")
    out = {}
    for a, b in set(zip(sc.tolist(), fi.tolist())):
        out.setdefault(int(a), set()).add(int(b))
    return out


def _combined_field(key, fname, fields, ms, s, scans, scan_fields):
    """(FIELD_ID, SCAN_NUMBER) of a solution set solved with combine='field' (field name 'A+B', attr
    ``combined_fields``), as
    CASA 6.7's gaincal labels a solution combining fields (combine='scan,field', measured on a
    simulated MS whatever the fields' time order and the order they were selected in): the lowest
    FIELD_ID among the fields whose data it holds, and that field's first scan in the solution."""
    names = [str(x) for x in np.atleast_1d(s.attrs.get("combined_fields", []))] or fname.split("+")
    missing = [n for n in names if n not in fields]
    if missing:
        raise AlakazamError(f"{key}: field {fname!r} is not in {ms} (fields: {', '.join(fields)})")
    ids = {fields.index(n) for n in names}
    own = [int(x) for x in scans if int(x) > 0]
    if int(s.scan_id) > 0:
        own = [int(s.scan_id)]
    held = sorted((f, sc) for sc in own for f in scan_fields.get(sc, ()) if f in ids)
    if held:
        return held[0]
    return min(ids), (own[0] if own else 0)     # scans not in this MS (vis= another MS): by FIELD_ID


def fold_crossphase(d_sets: List[SolutionSet], cp_sets: List[SolutionSet]) -> List[SolutionSet]:
    """D sets re-expressed for CASA's term order: ``X D' = D CP`` up to a scalar, i.e.
    ``D' = CP D CP^-1 = [[1, d_pq exp(-i phi)], [d_qp exp(i phi), 1]]`` per CP frequency bin (CASA
    applies Xf on the sky side of D, ours is on the antenna side; docs/conventions.md)."""
    from .hdf5 import SolutionSet as _S

    out = []
    for s in d_sets:
        cps = [c for c in cp_sets if int(c.spw) == int(s.spw)]
        if not cps:
            raise AlakazamError(f"crossphase: no CP solutions for SPW {s.spw} to fold into the D term")
        c = cps[0]
        cf = np.asarray(c.freq, float)
        ok = ~np.asarray(c.flags, bool)                                # (n_ant, n_fc, n_tc)
        x = np.where(ok, np.asarray(c.jones)[..., 1, 1], np.nan)       # exp(i phi), equal for all ants
        x = np.nanmean(x.reshape(-1, len(cf), x.shape[2]), axis=0)[:, 0]   # (n_fc,) first time
        df = np.asarray(s.freq, float)
        if len(df) == 1:
            freqs, di = cf, np.zeros(len(cf), np.int64)
            xi = np.arange(len(cf))
        else:
            freqs, di = df, np.arange(len(df))
            xi = np.abs(df[:, None] - cf[None, :]).argmin(axis=1)
        j = np.asarray(s.jones)[:, di].copy()                          # (n_ant, n_f, n_t, 2, 2)
        ph = x[xi][None, :, None]
        j[..., 0, 1] *= np.conj(ph) / np.abs(ph)
        j[..., 1, 0] *= ph / np.abs(ph)
        flags = np.asarray(s.flags, bool)[:, di] | ~np.isfinite(ph)
        extra = {}
        snr = (s.extra or {}).get("snr")
        if snr is not None and np.ndim(snr) == 4:
            extra["snr"] = np.asarray(snr)[:, di]                      # each D bin's SNR, as its values
        out.append(_S(jones=j, flags=flags, time=s.time, freq=freqs, attrs=dict(s.attrs), extra=extra))
    return out


def write_table(sets: List[SolutionSet], key: str, out: str, ms: str = "", overwrite: bool = False,
                delay_ref=None, leakage_frame: str = "casa") -> dict:
    """Write the solution sets of one key as a CASA caltable at ``out``.

    Parameters
    ----------
    sets : list of SolutionSet
        All sets of the key (hdf5.read_term).
    key : str
        The key (for messages and HISTORY).
    out : str
        Output table directory; must not exist unless ``overwrite``.
    ms : str
        The Measurement Set the solutions belong to (its ANTENNA/FIELD/SPECTRAL_WINDOW/OBSERVATION
        subtables are copied); default the ``ms`` attribute recorded in the solutions.
    delay_ref : dict or None
        K, KC: ``{spw: nu_ref (Hz)}``, the SPW row's one CHAN_FREQ (CASA's delay reference); the
        tau written is still -tau, so the caller must have framed the later terms to match
        (:func:`export`).  Default (and SPWs not in it): the sets' ``delay_ref_hz`` (0 Hz in ours).

    Returns
    -------
    dict  with VisCal, ParType, n_rows and the path.
    """
    ct = _ct()
    if not sets:
        raise AlakazamError(f"{key}: no solutions to export")
    jt = str(sets[0].attrs.get("jones_type"))
    ms = ms or str(sets[0].attrs.get("ms", ""))
    if not ms or not os.path.isdir(ms):
        raise AlakazamError(f"vis: the Measurement Set {ms!r} of {key} is not found; give vis= (the MS "
                            "whose ANTENNA, FIELD and SPECTRAL_WINDOW tables the caltable copies)")
    if os.path.exists(out):
        if not overwrite:
            raise AlakazamError(f"casatable: {out!r} exists; remove it or choose another name")
        shutil.rmtree(out)
    tt = jterms.get(jt)
    ants, fields, spw_freqs = _ms_meta(ms)
    n_freq = max(s.jones.shape[1] for s in sets)
    viscal = viscal_for(jt, n_freq)
    rows = []        # (spw, time, interval, field, scan, ant1, ant2, vals (n_chan, n_par), flags, snr, err)
    spw_chan = {}
    scan_fields = None
    for s in sets:
        fname = s.field_name
        scans = np.atleast_1d(s.attrs.get("scans", [s.scan_id]))
        if fname in fields:
            fid = fields.index(fname)
            scan = int(s.scan_id) if int(s.scan_id) > 0 else int(scans[0]) if len(scans) else 0
        else:
            if scan_fields is None:
                scan_fields = _scan_fields(ms)
            fid, scan = _combined_field(key, fname, fields, ms, s, scans, scan_fields)
        names = s.ant_names
        missing = [a for a in names if a not in ants]
        if missing:
            raise AlakazamError(f"{key}: antennas {missing} are not in {ms}")
        ref = str(s.attrs.get("ref_ant_name", ""))
        # CASA writes the reference antenna in ANTENNA2 for per-bin antenna-based terms (G, T, D)
        ant2 = -1 if tt.freq == "delay" or tt.is_global else (ants.index(ref) if ref in ants else -1)
        # INTERVAL 0: CASA 6.7's gaincal and bandpass write 0 whatever the solint ('inf', 'scan',
        # combine='scan', '60s', '120s': measured); alakazam wrote the solint for fixed ones
        interval = 0.0
        vals, flags, par_type = _params(s, jt)
        snr = _snr(s, jt, vals.shape[-1])
        err = _paramerr(vals, snr, jt)
        spw = int(s.spw)
        if tt.freq == "delay":        # CASA's nu_ref; with the sets' own reference the matrix is ours
            nu_ref = (delay_ref or {}).get(spw, float(s.attrs.get("delay_ref_hz", 0.0) or 0.0))
            spw_chan[spw] = np.array([float(nu_ref)])
        else:
            spw_chan[spw] = np.asarray(s.freq, float)
        for it, t in enumerate(np.asarray(s.time, float)):
            for ia_ms, a in enumerate(ants):
                if a in names:
                    ia = names.index(a)
                    v = np.array(vals[ia, it])
                    f = np.array(flags[ia, it]) | ~np.isfinite(v)
                    sn, er = snr[ia, it], err[ia, it]
                else:
                    v = np.zeros(vals.shape[2:], vals.dtype) + (1 if par_type == "Complex" else 0)
                    f = np.ones(vals.shape[2:], bool)
                    sn = er = np.zeros(vals.shape[2:], np.float32)
                v[~np.isfinite(v)] = 1 if par_type == "Complex" and tt.diagonal else 0
                rows.append((spw, t, interval, fid, scan, ia_ms, ant2, v, f, sn, er))
    rows.sort(key=lambda r: (r[0], r[1], r[5]))
    par_type = "Float" if tt.freq == "delay" else "Complex"
    basis = str(sets[0].attrs.get("feed_basis", "unknown")).upper() if tt.uses_cross else "unknown"
    t = ct.table(out, _main_desc(par_type), nrow=len(rows), ack=False)
    try:
        t.putcol("TIME", np.array([r[1] for r in rows]))
        t.putcol("INTERVAL", np.array([r[2] for r in rows]))
        t.putcol("FIELD_ID", np.array([r[3] for r in rows], np.int32))
        t.putcol("SPECTRAL_WINDOW_ID", np.array([r[0] for r in rows], np.int32))
        t.putcol("SCAN_NUMBER", np.array([r[4] for r in rows], np.int32))
        t.putcol("OBSERVATION_ID", np.zeros(len(rows), np.int32))
        t.putcol("ANTENNA1", np.array([r[5] for r in rows], np.int32))
        t.putcol("ANTENNA2", np.array([r[6] for r in rows], np.int32))
        pcol = "CPARAM" if par_type == "Complex" else "FPARAM"
        start = 0
        while start < len(rows):          # blocks of one SPW: one parameter shape each
            stop = start
            while stop < len(rows) and rows[stop][0] == rows[start][0]:
                stop += 1
            blk = rows[start:stop]
            v = np.stack([r[7] for r in blk])
            f = np.stack([r[8] for r in blk])
            t.putcol(pcol, v.astype(np.complex64 if par_type == "Complex" else np.float32), start, len(blk))
            t.putcol("FLAG", f, start, len(blk))
            t.putcol("PARAMERR", np.stack([r[10] for r in blk]).astype(np.float32), start, len(blk))
            t.putcol("SNR", np.stack([r[9] for r in blk]).astype(np.float32), start, len(blk))
            # WEIGHT is left undefined, as CASA 6.7's gaincal, bandpass and polcal leave it
            start = stop
        t.putinfo({"type": "Calibration", "subType": viscal, "readme": ""})
        t.putkeyword("ParType", par_type)
        t.putkeyword("MSName", os.path.basename(os.path.normpath(ms)))
        t.putkeyword("VisCal", viscal)
        t.putkeyword("PolBasis", basis)
        t.putkeyword("CASA_Version", f"alakazam-{__version__}")
        if not jterms.get(jt).diagonal:     # D: whose frame (LEAKAGE_FRAME_KEYWORD; read back by the import)
            t.putkeyword(LEAKAGE_FRAME_KEYWORD, leakage_frame)
            chain = sets[0].attrs.get("preapply_chain")
            if chain is not None:           # what it was solved after (a D before a CP: brought to the
                t.putkeyword(PREAPPLY_CHAIN_KEYWORD,   # final frame by that CP on import, as from HDF5)
                             ",".join(str(k) for k in np.atleast_1d(chain)))
    finally:
        t.close()
    for sub in SUBTABLES:
        src = os.path.join(ms, sub)
        with ct.table(src, ack=False) as st:
            if sub == "HISTORY":
                ht = st.copy(os.path.join(out, sub), deep=True, valuecopy=True, copynorows=True)
                ht.close()
            else:
                st.copy(os.path.join(out, sub), deep=True, valuecopy=True).close()
    _solution_channels(os.path.join(out, "SPECTRAL_WINDOW"), spw_chan, spw_freqs)
    _history(os.path.join(out, "HISTORY"), f"alakazam {__version__}: exported {key} ({viscal}) from "
             f"{sets[0].attrs.get('ms', '')}")
    with ct.table(out, readonly=False, ack=False) as t:
        for sub in SUBTABLES:
            t.putkeyword(sub, "Table: " + os.path.abspath(os.path.join(out, sub)))
    return {"path": out, "VisCal": viscal, "ParType": par_type, "n_rows": len(rows)}


def _solution_channels(path, spw_chan, spw_freqs):
    """SPECTRAL_WINDOW rows of the exported SPWs describe the solution channels."""
    ct = _ct()
    with ct.table(path, readonly=False, ack=False) as t:
        for spw, f in spw_chan.items():
            ms_f = spw_freqs[spw]
            if len(f) == 1:
                w = np.array([abs(ms_f[-1] - ms_f[0]) + (abs(ms_f[1] - ms_f[0]) if len(ms_f) > 1 else 0.0)])
            elif len(f) == len(ms_f) and np.allclose(f, ms_f):
                w = np.asarray(t.getcell("CHAN_WIDTH", spw), float)
            else:
                w = np.full(len(f), np.median(np.abs(np.diff(f))))
            t.putcell("CHAN_FREQ", spw, np.asarray(f, float))
            t.putcell("NUM_CHAN", spw, len(f))
            for c in ("CHAN_WIDTH", "EFFECTIVE_BW", "RESOLUTION"):
                t.putcell(c, spw, w)


def _history(path, message):
    ct = _ct()
    import time as _time

    with ct.table(path, readonly=False, ack=False) as t:
        t.addrows(1)
        cols = t.colnames()
        t.putcell("TIME", 0, (_time.time() / 86400.0 + 40587.0) * 86400.0)
        t.putcell("MESSAGE", 0, message)
        for c, v in (("APPLICATION", "alakazam"), ("ORIGIN", "alakazam.io.casatable"), ("PRIORITY", "NORMAL"),
                     ("OBJECT_ID", 0), ("OBSERVATION_ID", -1)):
            if c in cols:
                t.putcell(c, 0, v)
        for c in ("APP_PARAMS", "CLI_COMMAND"):
            if c in cols:
                t.putcell(c, 0, np.array([""], dtype=str))


# ---------------------------------------------------------------- import
def viscal(path) -> str:
    ct = _ct()
    try:
        with ct.table(str(path), ack=False) as t:
            kw = t.getkeywords()
    except RuntimeError as e:
        raise AlakazamError(f"caltable: {path!r} cannot be opened as a CASA table ({e})") from None
    v = kw.get("VisCal")
    if v is None:
        raise AlakazamError(f"caltable: {path!r} is a CASA table without the VisCal keyword (not a "
                            "calibration table)")
    return str(v)


def table_type(path) -> str:
    v = viscal(path)
    jt = VISCAL_TO_TYPE.get(v.strip().lower())
    if jt is None:
        raise AlakazamError(f"caltable: {path!r} has VisCal {v!r}; alakazam reads "
                            f"{', '.join(sorted({k.title() for k in VISCAL_TO_TYPE}))}")
    return jt


def table_key(path) -> str:
    return f"{table_type(path)}0"


def read_table(path) -> List[SolutionSet]:
    """A CASA caltable -> SolutionSets, one per (field, scan, SPW) (conventions: module docstring)."""
    ct = _ct()
    path = str(path)
    jt = table_type(path)
    tt = jterms.get(jt)
    is_delay = tt.freq == "delay"
    vc = viscal(path)
    with ct.table(path, ack=False) as t:
        kw = t.getkeywords()
        n = t.nrows()
        if n == 0:
            raise AlakazamError(f"caltable: {path!r} has no rows")
        time = t.getcol("TIME")
        field = t.getcol("FIELD_ID")
        spw = t.getcol("SPECTRAL_WINDOW_ID")
        scan = t.getcol("SCAN_NUMBER")
        a1 = t.getcol("ANTENNA1")
        a2 = t.getcol("ANTENNA2")
        interval = t.getcol("INTERVAL")
        pcol = "CPARAM" if "CPARAM" in t.colnames() else "FPARAM"
        par = [np.asarray(t.getcell(pcol, r)) for r in range(n)]
        flg = [np.asarray(t.getcell("FLAG", r), bool) for r in range(n)]
    sub = lambda name: os.path.join(path, name)       # noqa: E731
    with ct.table(sub("ANTENNA"), ack=False) as t:
        ant_all = [str(x) for x in t.getcol("NAME")]
    with ct.table(sub("FIELD"), ack=False) as t:
        fnames = [str(x) for x in t.getcol("NAME")]
        pdir = t.getcol("PHASE_DIR")
    with ct.table(sub("SPECTRAL_WINDOW"), ack=False) as t:
        chan_freq = [np.asarray(t.getcell("CHAN_FREQ", i), float) for i in range(t.nrows())]
        ref_freq = np.asarray(t.getcol("REF_FREQUENCY"), float)
    casa_version = str(kw.get("CASA_Version", "Unknown"))
    # a Df table's frame: CASA's own and akexport's default put the cross-hand phase on the sky side of D
    # (calibration/solve_order.cross_terms_after brings such a D to ours when a CP is applied with it)
    leak_frame = "alakazam" if str(kw.get(LEAKAGE_FRAME_KEYWORD, "casa")).lower() == "alakazam" else "casa"
    if not tt.diagonal and LEAKAGE_FRAME_KEYWORD not in kw and casa_version.startswith("alakazam-"):
        from ..core import warnonce
        warnonce.warning("alakazam.apply", "%s: a Df table akexport wrote before its frame was recorded: "
                         "taken as CASA's (akexport's default, the CP folded in); if it was exported "
                         "with crossphase='none', export it again", path)
    basis = str(kw.get("PolBasis", "unknown")).lower()
    # CASA 6 writes PolBasis 'unknown' in every table it makes (K, G, B, KCROSS, Xf, Df, gencal), and
    # akexport does for K, G and B: the basis is then not the table's to say -- the MS's is taken (it
    # was read as linear, and akapply refused CASA's and its own exported K / G tables on circular feeds)
    feed = basis if basis in ("linear", "circular") else ""
    # antennas with at least one unflagged solution, in ANTENNA-table order
    good = np.array([not f.all() for f in flg])
    used = sorted(set(a1[good].tolist()))
    names = [ant_all[i] for i in used]
    refs = a2[(a2 >= 0) & good]
    ref_name = ant_all[int(np.bincount(refs).argmax())] if len(refs) else ""
    out = []
    for key in sorted(set(zip(field.tolist(), scan.tolist(), spw.tolist()))):
        f_id, sc, sp = key
        rows = np.nonzero((field == f_id) & (scan == sc) & (spw == sp))[0]
        ut = np.unique(time[rows])
        n_chan = par[rows[0]].shape[0]
        freqs = chan_freq[sp]
        if is_delay:
            nu_ref = freqs[len(freqs) // 2] if casa_version not in (
                "Unknown", "5.3.0-100", "5.3.0-101", "5.3.0-102", "5.3.0-103", "5.3.0-104", "5.3.0-105",
                "5.3.0-106") else ref_freq[sp]
            freqs = np.array([nu_ref])
        elif len(freqs) != n_chan:
            raise AlakazamError(f"caltable: {path!r} SPW {sp} has {len(freqs)} channels in SPECTRAL_WINDOW "
                                f"but {n_chan} solution channels")
        n_f = 1 if is_delay else n_chan
        jones = np.zeros((len(names), n_f, len(ut), 2, 2), np.complex128)
        jones[..., 0, 0] = jones[..., 1, 1] = 1.0
        flags = np.ones((len(names), n_f, len(ut)), bool)
        pol = np.ones((len(names), n_f, len(ut), 2), bool)    # CASA's FLAG per pol (K, G: pol_flags)
        delay = np.zeros((len(names), n_f, len(ut), 2)) if is_delay else None
        for r in rows:
            if a1[r] not in used:
                continue
            ia = used.index(int(a1[r]))
            it = int(np.searchsorted(ut, time[r]))
            p = par[r]
            fl = flg[r]
            if is_delay:
                d = -np.asarray(p[0], float)              # tau = -tau_CASA
                if tt.delay_pols == 1:                    # KC
                    d = np.array([d[0], 0.0])
                delay[ia, 0, it] = d
                flags[ia, 0, it] = bool(fl[0, 0]) if tt.delay_pols == 1 else bool(fl[0].any())
                pol[ia, 0, it] = fl[0, :2] if fl.shape[1] >= 2 else fl[0, 0]
            else:
                pc = np.asarray(p, np.complex128)
                # the registry's casa_elements; a one-parameter table (CASA T) fills both of G's
                for k, (ea, eb) in enumerate(tt.casa_elements):
                    col = pc[:, min(k, pc.shape[1] - 1)]
                    jones[ia, :, it, ea, eb] = np.conj(col) if tt.casa_conj else col
                flags[ia, :, it] = fl.any(axis=1)
                pol[ia, :, it] = fl[:, :2] if fl.shape[1] >= 2 else fl[:, :1]
        if delay is not None:
            nu = freqs[None, :, None] - freqs[0]          # the matrix at nu_ref (phase 0 there)
            jones[..., 0, 0] = np.exp(-1j * TWO_PI_NS * delay[..., 0] * nu)
            jones[..., 1, 1] = 1.0 if tt.delay_pols == 1 else np.exp(-1j * TWO_PI_NS * delay[..., 1] * nu)
        ra, dec = ((float(pdir[f_id].ravel()[0]), float(pdir[f_id].ravel()[1])) if f_id >= 0
                   else (np.nan, np.nan))
        iv = float(np.median(interval[rows]))
        attrs = dict(jones_type=jt, field_name=fnames[f_id] if f_id >= 0 else "", scan_id=int(sc),
                     **({} if tt.diagonal else {"leakage_frame": leak_frame}),
                     **({} if tt.diagonal or PREAPPLY_CHAIN_KEYWORD not in kw else
                        {"preapply_chain": [k for k in str(kw[PREAPPLY_CHAIN_KEYWORD]).split(",") if k]}),
                     spw=int(sp), n_ant=len(names), ant_names=names, ref_ant_name=ref_name,
                     ref_ant=names.index(ref_name) if ref_name in names else -1, feed_basis=feed,
                     field_ra=ra, field_dec=dec, ms=str(kw.get("MSName", "")), solint_s=iv,
                     matrix_form=tt.matrix_form, casa_viscal=vc, casa_table=path,
                     scans=[int(sc)])
        if delay is not None:
            attrs["delay_ref_hz"] = float(freqs[0])
        from ..core.handflags import nan_flagged, per_hand
        pf = None
        if per_hand(jt) and (pol[..., 0] != pol[..., 1]).any():   # a hand flagged where the other is not
            pf = pol
            nan_flagged(jones, delay, np.where(pol.all(-1, keepdims=True), False, pol))
            # a pol flagged in every solution while the other is not: the MS did not record it (CASA
            # flags the second pol of an XX- or RR-only MS, measured): attr hands as a solve writes it,
            # so ``flags`` ("not whole") counts the recorded hand only (core/handflags.py)
            rec = [h for h in (0, 1) if not pol[..., h].all()]
            if len(rec) == 1:
                attrs["hands"] = rec
                flags = pol[..., rec[0]].copy()
        out.append(SolutionSet(jones=jones, flags=flags, time=ut, freq=np.asarray(freqs, float),
                               delay=delay, attrs=attrs, pol_flags=pf))
    return out


def export(table, key, out, ms: str = "", crossphase: str = "") -> dict:
    """Export key ``key`` of HDF5 table ``table`` to the CASA caltable ``out`` (akexport).

    ``crossphase`` (D only): the CP key folded into the exported D (:func:`fold_crossphase`); ''
    = the CP in the D term's pre-apply chain when there is one; 'none' = no folding.
    """
    import logging

    from . import hdf5

    if not out:
        raise AlakazamError("casatable: an output table name is required")
    if os.path.lexists(out):
        raise AlakazamError(f"casatable: {out!r} exists; remove it or choose another name")
    real = hdf5.resolve_key(table, key)
    sets = hdf5.read_term(table, real)
    folded = ""
    leakage = bool(sets) and not jterms.get(sets[0].attrs.get("jones_type")).diagonal
    if leakage and str(crossphase).lower() != "none":
        cp = crossphase
        if not cp:
            chain = [str(x) for x in np.atleast_1d(sets[0].attrs.get("preapply_chain", []))]
            cps = [k for k in chain if k.startswith("CP")]
            cp = cps[-1] if cps else ""
        if cp:
            if not crossphase and cp not in hdf5.list_keys(table):
                raise AlakazamError(f"crossphase: {real} was solved with {cp} pre-applied, which is not in "
                                    f"{table}; give crossphase= (a CP key of this table) or 'none'")
            cp = hdf5.resolve_key(table, cp)
            sets = fold_crossphase(sets, hdf5.read_term(table, cp))
            folded = cp
            logging.getLogger("alakazam.export").info(
                "%s: %s folded in (CASA applies Xf on the sky side of D): export %s too", real, cp, cp)
    from ..calibration.dapply import export_note      # D inverted in full by akapply, linearised by CASA
    note = export_note(table, real)
    if note:
        logging.getLogger("alakazam.export").warning("%s", note)
    sets, delay_ref = delay_frame(table, real, sets)
    if ms and sets and sets[0].attrs.get("ms") and not hdf5.same_ms(sets[0].attrs["ms"], table, ms):
        logging.getLogger("alakazam.export").warning(
            "%s: solved on %s; the caltable takes the ANTENNA, FIELD and SPECTRAL_WINDOW tables of %s "
            "(another MS; antennas matched by name)", real, sets[0].attrs["ms"], ms)
    if not ms and sets:     # the recorded MS; a relative one (older tables) also next to the table
        ms = hdf5.resolve_ms(sets[0].attrs.get("ms", ""), table)[0] or ""
    # written under a temporary name and renamed when complete: an error or Ctrl-C part-way leaves no
    # half-written table at ``out`` (which a re-run would then refuse as existing); a kill -9's leftover
    # (a process that is gone) is removed by the next export to the same name
    stem = os.path.join(os.path.dirname(os.path.abspath(out)), f".{os.path.basename(os.path.normpath(out))}"
                        ".akpartial")
    _remove_stale_partials(stem)
    tmp = f"{stem}{os.getpid()}"
    try:
        frame = "alakazam" if leakage and str(crossphase).lower() == "none" else "casa"
        res = write_table(sets, real, tmp, ms=ms, overwrite=True, delay_ref=delay_ref, leakage_frame=frame)
        os.rename(tmp, out)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    res["path"] = out
    res["key"] = real
    res["crossphase"] = folded
    return res


def _remove_stale_partials(stem):
    """Remove ``<stem><pid>`` directories whose process no longer runs (an export killed with -9)."""
    import glob

    for p in glob.glob(glob.escape(stem) + "*"):
        pid = p[len(stem):]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue                        # still running: another export's
        except ProcessLookupError:
            pass
        except PermissionError:
            continue                        # alive, someone else's
        shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------- the delay frame of an export
def k_reference(k_sets, spw) -> float:
    """CASA's delay reference nu_ref (Hz) a K exported framed gets in SPW ``spw``: the K's own
    ``delay_ref_hz`` when it has one (a CASA K read into a table), else the centre frequency of its
    solution bin there (the median over its sets), or None without K solutions in ``spw``."""
    sets = [s for s in k_sets if int(s.spw) == int(spw)]
    if not sets:
        return None
    own = [float(s.attrs.get("delay_ref_hz", 0.0) or 0.0) for s in sets]
    if any(own):
        return float(np.median([f for f in own if f]))
    return float(np.median([float(np.asarray(s.freq, float)[0]) for s in sets]))


def _table_terms(table):
    from ..calibration import chain
    from . import hdf5

    out = []
    for k in hdf5.list_keys(table):
        try:
            out.append(chain.load_term(table, k))
        except AlakazamError:
            continue
    return out


def gain_frames(g, terms):
    """``{spw: [(K term, nu_ref)]}``: per SPW of the G/T term ``g``, the time-variable K terms it is
    framed by (:func:`alakazam.calibration.delayframe.k_terms_for`) with their export reference --
    unless a gain solved in between is framed by that K too (it carries the K's phase in the export:
    the product of the chain's gains takes ``K(t_s, nu_ref)`` once)."""
    from ..calibration import delayframe
    from ..calibration.solve_order import preapply_chain

    by_key = {t.key: t for t in terms}
    chain = preapply_chain(g) or []
    out = {}
    for sp in sorted({int(s.spw) for s in g.sets}):
        ks = []
        for k in delayframe.k_terms_for(g, terms, sp):
            between = [by_key[x] for x in chain[chain.index(k.key) + 1:] if x in by_key]
            if not any(b.jones_type in ("G", "T") and
                       any(x is k for x in delayframe.k_terms_for(b, terms, sp)) for b in between):
                ks.append((k, k_reference(k.sets, sp)))
        ks = [(k, f) for k, f in ks if f is not None]
        if ks:
            out[sp] = ks
    return out


def _k_export_reference(k, terms):
    """({spw: nu_ref}, [gain keys]) of the K term ``k`` as exported from the table holding ``terms``:
    the SPWs where a G or T of that table is framed by it (:func:`gain_frames`), and those gains."""
    ref, gains = {}, []
    for g in terms:
        if g.jones_type in ("G", "T"):
            for sp, ks in gain_frames(g, terms).items():
                mine = {sp: f for kk, f in ks if kk is k}
                ref.update(mine)
                if mine and g.key not in gains:
                    gains.append(g.key)
    return ref, gains


def _chain_from_sources(me, terms, table):
    """(chain terms, external ones, {K key: {spw: nu_ref}}, missing keys) of ``me``'s pre-apply chain,
    each key resolved by (table, key): from the table its solve recorded (attr ``preapply_tables``,
    e.g. a fluxscaled G solved with K and bandpass of other tables pre-applied), else from ``table``
    (``terms``: recorded '' or this table, or written before session 41).  A key of another table is
    read from that table even when ``table`` holds a key of the same name (each akcal names its first
    G 'G0': taken for the exported gain itself, that left it unframed -- the review of the diff).  For
    each external K, its export reference from its own table (:func:`_k_export_reference`).  A key found
    nowhere (no table recorded, or moved) is in ``missing``."""
    from ..calibration import chain as chain_mod
    from ..calibration.solve_order import preapply_chain

    chain = preapply_chain(me) or []
    srcs = [str(x) for x in np.atleast_1d(me.sets[0].attrs.get("preapply_tables", []))]
    if len(srcs) != len(chain):
        srcs = [""] * len(chain)
    here = os.path.realpath(str(table))
    own = {t.key: t for t in terms if t is not me}
    resolved, ext, kref, missing = [], [], {}, []
    for k, src in zip(chain, srcs):
        if not src or os.path.realpath(src) == here:
            if k in own:
                resolved.append(own[k])
            else:
                missing.append(k)
            continue
        try:
            t = chain_mod.load_term(src, k) if os.path.exists(src) else None
        except AlakazamError:
            t = None
        if t is None:
            missing.append(k)
            continue
        resolved.append(t)
        ext.append(t)
        if t.jones_type == "K":
            src_terms = _table_terms(src) if os.path.isfile(src) else []
            kk = next((x for x in src_terms if x.key == t.key), None)
            kref[t.key] = _k_export_reference(kk, src_terms)[0] if kk is not None else {}
    return resolved, ext, kref, missing


def delay_frame(table, key, sets):
    """The sets of key ``key`` of HDF5 table ``table`` as exported, and the K's ``delay_ref``
    (``{spw: nu_ref}``, None when not a K; see the module docstring, "Delay frame").

    * A K framing a gain of the table in an SPW (a K with more than one solution time per field and
      SPW, and a G or T solved after it that :func:`~alakazam.calibration.delayframe.k_terms_for`
      frames): that SPW's row gets CHAN_FREQ = nu_ref (:func:`k_reference`), so CASA's K is
      ``K(t, f) conj K(t, nu_ref)`` of ours.  Other SPWs, and other Ks: the sets' own reference (0 Hz).
    * A G or T framed by such a K in an SPW: each solution times ``K(t_s, nu_ref)`` of its own field
      and time, per hand (a T then differs between hands: exported as G).  So CASA's product
      ``K_casa(t, f) G_exp(t_s)`` is ours ``K(t, f) G(t_s)`` where K(t) = K(t_s), and CASA's time
      interpolation of G_exp is our frame's (delayframe.py) at nu_ref.
    """
    if not sets or not os.path.isfile(str(table)):
        return sets, None
    jt = str(sets[0].attrs.get("jones_type"))
    if jt not in ("K", "G", "T"):
        return sets, None
    terms = _table_terms(table)
    by_key = {t.key: t for t in terms}
    me = by_key.get(key)
    if me is None:
        return sets, None
    import logging

    log = logging.getLogger("alakazam.export")
    if jt == "K":
        ref, gains = _k_export_reference(me, terms)
        if ref:
            log.info("%s: a per-scan K written with CASA's delay reference at %s (the gains solved after it "
                     "carry its phase there): export %s with it and apply them together", key,
                     ", ".join(f"{f / 1e6:.3f} MHz (spw {sp})" for sp, f in sorted(ref.items())),
                     ", ".join(gains))
        return sets, ref or None
    resolved, ext, kref, missing = _chain_from_sources(me, terms, table)
    if missing and any(s.scan_id for s in me.sets):
        log.warning("%s: solved with %s pre-applied, which %s does not hold and whose table the solve did "
                    "not record or is not found: written without a per-scan K's delay frame, which matches "
                    "that K exported at 0 Hz but not at CASA's delay reference (akexport says which it "
                    "writes)", key, ", ".join(missing), table)
    # the gain, then its chain (chain keys win in the by-key look-ups: a chain 'G0' of another table
    # is not the exported 'G0')
    frames = gain_frames(me, [me] + resolved)
    # a K of another table frames this gain only where its own export is framed (where its table
    # frames a gain): the exported pair then agrees whichever of the two tables each came from
    dropped = sorted({k.key for sp, v in frames.items() for k, _ in v
                      if any(k is e for e in ext) and sp not in kref.get(k.key, {})})
    frames = {sp: [(k, f) for k, f in v if not any(k is e for e in ext) or sp in kref.get(k.key, {})]
              for sp, v in frames.items()}
    frames = {sp: v for sp, v in frames.items() if v}
    if dropped:
        # the K's own table frames no gain, so akexport writes it at 0 Hz: this gain must stay unframed to
        # match it, and CASA's time interpolation of the pair then lacks the frame akapply uses (a review:
        # 0.37 against 0.078 rad between calibrator scans).  No consistent pair exists from two exports.
        log.warning("%s: solved after the per-scan %s of another table, which akexport writes at 0 Hz "
                    "(no gain of that table is solved after it): written unframed to match it, so CASA's "
                    "applycal of the two interpolates %s between scans without the delay frame akapply uses "
                    "(targets' phases off by the scans' delay errors times the frequency). Solve the K and "
                    "the gains after it into one table before exporting, or apply with akapply",
                    key, ", ".join(dropped), key)
    if not frames:
        return sets, None
    ks = sorted({k.key for v in frames.values() for k, _ in v})
    log.info("%s: written in the frame of the per-scan %s (each solution times K at CASA's delay "
             "reference)%s: export %s with it and apply them together", key, ", ".join(ks),
             "; a T, written as G Jones (the frame differs between the hands)" if jt == "T" else "",
             ", ".join(ks))
    import copy

    from ..calibration import delayframe

    out = []
    for s in sets:
        v = copy.copy(s)
        v.attrs = dict(s.attrs, jones_type="G") if jt == "T" else dict(s.attrs)
        v.jones = np.array(s.jones)
        for k, nu_ref in frames.get(int(s.spw), []):
            fac = delayframe.own_factor(s, [k], int(s.spw), [nu_ref])[:, :, 0]   # (n_t, n_ant, 2)
            f = np.moveaxis(fac, 0, 1)[:, None]                                   # (n_ant, 1, n_t, 2)
            v.jones[..., 0, 0] *= f[..., 0]
            v.jones[..., 1, 1] *= f[..., 1]
        out.append(v)
    return out, None
