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
