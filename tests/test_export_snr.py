"""akexport's SNR column for the terms whose SNR is a phase-only fit's (K, G / T calmode 'p':
solvers/quality.phase_only_snr) against the others (io/casatable._snr's docstring).

The raw fit's chi2/nDOF (``solver_stats/rchi2``) of a phase-only term holds the amplitude mismatch of
DATA against MODEL_DATA, which CASA's apmode 'P' fit does not see: the export divided their SNR by it
(a G 'p' with a 1 Jy model for a 2.5 Jy calibrator exported 0.015x CASA's SNR).  Amplitude-and-phase
terms keep the division (CASA's errors scale with the fit's chi2/nDOF).
"""

import numpy as np
import pytest

from alakazam.io.casatable import _snr
from alakazam.io.hdf5 import SolutionSet

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
