"""fluxscale refuses a phase-only G: its amplitudes are all 1, so every ratio is 1 and the transfer
field's 'derived' flux was its model's (1.000 +- 4e-17 Jy for a 2.5 Jy source), written without a word
(review of session 39)."""

import pytest

from alakazam.caltasks import akcal, akfluxscale
from alakazam.errors import ParameterError


def test_phase_only_gain_is_refused(constant_gains, tmp_path):
    ms, _ = constant_gains
    cal = str(tmp_path / "p.h5")
    akcal(vis=ms, caltable=cal, field="3C286,3C147", jones=["G"], solint="2min", calmode="p", refant="C00")
    out = tmp_path / "fs.h5"
    with pytest.raises(ParameterError, match="phase-only") as e:
        akfluxscale(caltable=cal, fluxtable=str(out), reference=["3C286"], transfer=["3C147"], jones="G0")
    assert "akfluxscale.jones" in e.value.errors
    assert not out.exists()


def test_spectral_fit_without_errors_and_no_spare_degree_is_undetermined():
    """Two SPWs, one of them without an error (one ratio left: its scatter is NaN), fitorder 1: the fit
    passes through both points, so the residual says nothing about the errors.  They are NaN, not
    0 (was 'spectral index 0.3711 +- 0.0000'; review of session 39)."""
    import numpy as np

    from alakazam.calibration.fluxscale import spectral_fit

    r = spectral_fit([1.3e9, 1.5e9], [2.48, 2.53], [0.01, np.nan], fitorder=1)
    assert np.isfinite(r["spidx"][1]) and np.isnan(r["spidxerr"][1]) and np.isnan(r["fitFluxdErr"])
    r3 = spectral_fit([1.3e9, 1.4e9, 1.5e9], [2.48, 2.50, 2.53], [0.01, np.nan, 0.01], fitorder=1)
    assert np.isfinite(r3["spidxerr"][1]) and r3["spidxerr"][1] > 0     # one spare degree: estimated
