"""akexport's SNR column for the terms whose SNR is a phase-only fit's (K, G / T calmode 'p':
solvers/quality.phase_only_snr) against the others (io/casatable._snr's docstring).

The raw fit's chi2/nDOF (``solver_stats/rchi2``) of a phase-only term holds the amplitude mismatch of
DATA against MODEL_DATA, which CASA's apmode 'P' fit does not see: the export divided their SNR by it
(a G 'p' with a 1 Jy model for a 2.5 Jy calibrator exported 0.015x CASA's SNR).  Amplitude-and-phase
terms keep the division (CASA's errors scale with the fit's chi2/nDOF).
"""

import os
import sys

import numpy as np
import pytest

from alakazam.io.casatable import _snr
from alakazam.io.hdf5 import SolutionSet

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from casa_python import run_casa  # noqa: E402  (tests/casa_python.py)

N_ANT, N_F, N_T = 4, 3, 2


def _set(jt, phase_only, rchi2=100.0, snr=50.0):
    jones = np.zeros((N_ANT, N_F, N_T, 2, 2), complex)
    jones[..., 0, 0] = jones[..., 1, 1] = 1.0
    s = np.full((N_ANT, N_F, N_T, 2), snr)
    s[:, :, :, 1] = 2 * snr                                      # the hands told apart
    attrs = dict(jones_type=jt, phase_only=phase_only)
    delay = np.zeros((N_ANT, N_F, N_T, 2)) if jt in ("K", "KC") else None
    return SolutionSet(jones=jones, flags=np.zeros((N_ANT, N_F, N_T), bool), time=np.arange(N_T, dtype=float),
                       freq=np.arange(N_F, dtype=float), delay=delay, attrs=attrs,
                       extra=dict(snr=s, rchi2=np.full((N_F, N_T), rchi2)))


@pytest.mark.parametrize("jt,phase_only,n_par", [("G", True, 2), ("T", True, 1), ("K", False, 2),
                                                 ("K", True, 2)])
def test_phase_only_snr_is_not_divided_by_the_raw_rchi2(jt, phase_only, n_par):
    """K and phase-only G / T with rchi2 100 (the amplitude mismatch): the stored SNR unchanged."""
    v = _snr(_set(jt, phase_only), jt, n_par)
    n_chan = 1 if jt == "K" else N_F
    assert v.shape == (N_ANT, N_T, n_chan, n_par)
    assert np.allclose(v[..., 0], 50.0)
    if n_par == 2:
        assert np.allclose(v[..., 1], 100.0)


@pytest.mark.parametrize("jt,n_par", [("G", 2), ("T", 1), ("D", 2)])
def test_amplitude_and_phase_snr_is_divided_by_sqrt_rchi2(jt, n_par):
    """G / T 'ap' (and D): divided by sqrt(chi2/nDOF) where it exceeds 1, as CASA scales its errors."""
    v = _snr(_set(jt, False), jt, n_par)
    assert np.allclose(v[..., 0], 5.0)
    v = _snr(_set(jt, False, rchi2=0.25), jt, n_par)                # below 1: unchanged
    assert np.allclose(v[..., 0], 50.0)


def test_table_without_phase_only_attr_is_amplitude_and_phase():
    """A G table without the attr (older tables) keeps the division."""
    s = _set("G", False)
    del s.attrs["phase_only"]
    assert np.allclose(_snr(s, "G", 2)[..., 0], 5.0)


@pytest.mark.parametrize("jt,phase_only,n_par", [("G", True, 2), ("K", False, 2)])
def test_phase_only_snr_is_scaled_beyond_the_cap_by_its_own_fit(jt, phase_only, n_par):
    """``rchi2_phase`` f (the phase-only fit's chi2/nDOF, uncapped): the stored SNR, S / sqrt(min(f, 2)),
    divided by sqrt(f / 2) where f > 2 -- CASA's uncapped S / sqrt(f) -- and unchanged below."""
    s = _set(jt, phase_only)
    s.extra["rchi2_phase"] = np.full((N_F, N_T), 8.0)
    assert np.allclose(_snr(s, jt, n_par)[..., 0], 25.0)
    s.extra["rchi2_phase"] = np.full((N_F, N_T), 1.5)
    assert np.allclose(_snr(s, jt, n_par)[..., 0], 50.0)


@pytest.mark.casa
def test_phase_only_snr_against_casa_gaincal(tmp_path):
    """G calmode 'p' per scan on 3C147 (MODEL_DATA 1 Jy for a true 2.5 Jy) with DATA x 9 and WEIGHT as
    simulated (raw-unit weights: the phase-only fit's f ~ 80): the exported SNR over CASA gaincal's is
    ~1 (measured 1.025; before, 0.007 divided by the raw rchi2 ~ 9e5, and 6.8 with the solve's cap on f
    kept).  CASA's K tables hold SNR 0 (no K comparison)."""
    from casacore.tables import table

    from alakazam.caltasks import akcal, akexport
    from alakazam.sim import simulate_ms

    ms = str(tmp_path / "sim.ms")
    simulate_ms(ms, n_ant=8, n_ant_extra=0, n_chan=(32,), feed="linear", duration_h=1.0, int_s=60.0,
                scan_len_s=600.0, noise=0.3, seed=5, delays=True, bandpass=False, time_gains=False,
                leakage=False, crosshand=False, dead_ant=False, flag_rows=0.0)
    with table(ms, readonly=False, ack=False) as t:
        t.putcol("DATA", t.getcol("DATA") * 9.0)
    cal = str(tmp_path / "cal.h5")
    akcal(vis=ms, caltable=cal, field="3C147", jones=["K", "G"], solint=["scan", "scan"],
          calmode=["ap", "p"], refant="C00", minsnr=0.0, parang=False)
    akexport(caltable=cal, jones="G0", casatable=str(tmp_path / "ak.G"))
    run_casa(f"""
        from casatasks import gaincal
        gaincal(vis={ms!r}, caltable='casa.K', field='3C147', solint='inf', refant='C00', gaintype='K',
                minsnr=0.0, parang=False)
        gaincal(vis={ms!r}, caltable='casa.G', field='3C147', solint='inf', refant='C00', gaintype='G',
                calmode='p', minsnr=0.0, gaintable=['casa.K'], parang=False)
    """, tmp_path)

    def cols(p):
        with table(p, ack=False) as t:
            return t.getcol("SNR"), t.getcol("FLAG"), t.getcol("ANTENNA1"), t.getcol("SCAN_NUMBER")

    s1, f1, a1, n1 = cols(str(tmp_path / "ak.G"))
    s2, f2, a2, n2 = cols(str(tmp_path / "casa.G"))
    ratios = []
    for i in range(len(a1)):
        j = np.flatnonzero((a2 == a1[i]) & (n2 == n1[i]))
        assert len(j) == 1
        ok = ~f1[i] & ~f2[j[0]] & (s1[i] > 0) & (s2[j[0]] > 0)
        ratios += list((s1[i][ok] / s2[j[0]][ok]).ravel())
    assert len(ratios) >= 24
    assert 0.85 < np.median(ratios) < 1.2, np.median(ratios)
    with table(str(tmp_path / "casa.K"), ack=False) as t:
        assert np.all(t.getcol("SNR") == 0)
