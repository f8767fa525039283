"""Calibration applied on the fly before a flagging mode looks at the data (akflag ``gaintable``).

With ``gaintable``/``gainjones`` (and optionally ``gainfield``, ``interp``, ``parang``) akflag corrects
the data it reads exactly as ``akapply`` would -- the same chain evaluation
(:func:`alakazam.calibration.chain.compose`: field selection, time interpolation, frequency mapping,
antenna remapping, a D solved before KC/CP brought to the final frame) and the same kernels
(:func:`alakazam.jones.algebra.correct_diag_inv` / ``correct_full``) -- without writing any column:

* ``datacolumn='data'``: the mode sees ``J_p^-1 DATA J_q^-H`` (the corrected data);
* ``datacolumn='residual'``: ``J_p^-1 DATA J_q^-H - MODEL_DATA`` (the calibrated residual: a bright
  calibrator's own structure, bandpass and gains removed, so RFI stands out against the noise).

With ``parang=True`` the parallactic-angle rotation is part of J (as akapply's ``apply_parang``), so the
corrected data are in the sky frame of MODEL_DATA.  Samples whose solution is flagged (or whose antenna
has no solution) are flagged by the run, as akapply's ``applymode='calflag'`` would flag them; they are
counted in the log.  ``corrected`` / ``corrected_residual`` with ``gaintable`` is refused (the data
would be corrected twice).
"""

from __future__ import annotations

import logging

import numpy as np

from ..core.ms_io import CORR_ORDER as _ORDER     # position in the 4-correlation view pp, pq, qp, qq

log = logging.getLogger("alakazam.flag")

#: extra bytes per selected sample while a piece is corrected (4-correlation complex128 copies of the
#: data, the corrected block and per-field working copies, masks; counted by the engine's piece size)
BYTES_PER_SAMPLE = 80


class PreApply:
    """The loaded terms of one akflag run and how to correct a block of rows with them."""

    def __init__(self, cfg, meta):
        from ..calibration import chain
        from ..calibration.solve_order import check_terms

        n = len(cfg.gainjones)
        self.meta = meta
        self.parang = bool(cfg.parang)
        self.terms = [chain.load_term(cfg.gaintable[i], cfg.gainjones[i],
                                      (cfg.gainfield[i] if cfg.gainfield else "") or "nearest_time",
                                      (cfg.interp[i] if cfg.interp else "") or "nearest")
                      for i in range(n)]
        check_terms(self.terms, cfg.ms, meta)
        if self.parang:         # before any write (the flag version): positions, receptor angles
            from ..calibration.parang_check import check_antenna_positions, check_receptor_angles
            check_antenna_positions(meta, "parang")
            check_receptor_angles(meta, list(meta.spws), "parang")
        self.names = meta.active_names
        self.no_solution = 0

    def correct(self, data, time, ant1, ant2, field_id, scan, ddid):
        """Corrected copy of ``data`` (row, chan, corr) in its native correlation order (all channels of
        the DATA_DESC_ID) and the (row, chan, corr) mask of samples without a valid solution.
        ``ant1``/``ant2`` are ANTENNA ids."""
        from ..calibration import chain
        from ..jones import algebra

        meta = self.meta
        spw = meta.spws[ddid]
        corr = list(spw.corr_types)
        n_corr = len(corr)
        nrow, nchan = data.shape[:2]
        d4 = np.zeros((nrow, nchan, 4), np.complex128)
        for i, c in enumerate(corr):
            d4[..., _ORDER[c]] = data[..., i]
        out4 = np.empty_like(d4)
        bad4 = np.zeros(d4.shape, bool)
        a1 = np.asarray(meta.ant_map)[np.asarray(ant1)].astype(np.int64)
        a2 = np.asarray(meta.ant_map)[np.asarray(ant2)].astype(np.int64)
        for fid in np.unique(field_id):
            r = np.nonzero(field_id == fid)[0]
            fld = meta.fields[int(fid)]
            utimes, tidx = np.unique(time[r], return_inverse=True)
            from ..core.scanobs import own_scan_keys
            tscan = own_scan_keys(meta, np.full(len(utimes), int(scan), np.int64))
            diag, sky = chain.compose(self.terms, spw.spw_id, utimes, spw.freqs, self.names, fld.name,
                                      (fld.ra, fld.dec), time_scan=tscan)
            p = chain.parang_table(meta, fld, utimes, spw) if self.parang else None
            if sky is None and p is not None:   # circular P with a flagged hand: per correlation (handflags)
                from ..core.handflags import fold_diagonal_parang
                diag, p = fold_diagonal_parang(diag, p)
            if p is not None:
                p = np.broadcast_to(p[:, :, None], (len(utimes), len(self.names), nchan, 2, 2))
                sky = p if sky is None else np.einsum("...ij,...jk->...ik", sky, p)
            sub = np.ascontiguousarray(d4[r])
            o = np.empty_like(sub)
            b = np.zeros(sub.shape, bool)
            tix = tidx.astype(np.int64)
            if sky is None and diag is not None:
                algebra.correct_diag_inv(sub, algebra.diag_inverse_table(diag), tix, a1[r], a2[r], o, b, True)
            elif sky is not None:
                J = sky if diag is None else diag[..., :, None] * sky
                algebra.correct_full(sub, np.ascontiguousarray(J), tix, a1[r], a2[r], o, b)
            else:
                o = sub
            out4[r] = o
            bad4[r] = b
        out = np.stack([out4[..., _ORDER[c]] for c in corr], axis=-1).astype(data.dtype)
        bad = np.stack([bad4[..., _ORDER[c]] for c in corr], axis=-1) if n_corr else bad4
        bad |= ~(np.isfinite(out.real) & np.isfinite(out.imag))
        out[bad] = 0
        return out, bad


def load(cfg, meta):
    """A :class:`PreApply` for ``cfg`` (None without ``gaintable``); tables are read and checked against
    the MS here, before anything is written."""
    if not getattr(cfg, "gaintable", None):
        return None
    return PreApply(cfg, meta)
