"""time_interp 'cubic' with fewer than 4 solution times: the error names the term, the solutions'
field, the field corrected and the SPW (a review, session 49: it named none of them), and nothing is
written -- no flag version nor in-progress marker either (review h60a: calflag left flags.akapply_1)."""

import os

import pytest
from casacore.tables import table

from alakazam.errors import AlakazamError
from alakazam.sim import simulate_ms


def test_cubic_with_too_few_solutions_names_the_term(tmp_path):
    from alakazam.caltasks import akapply, akcal

    ms, cal = str(tmp_path / "c.ms"), str(tmp_path / "c.h5")
    simulate_ms(ms, n_ant=4, n_chan=(4,), duration_h=1.0, scan_len_s=600.0, dead_ant=False, leakage=False)
    akcal(vis=ms, caltable=cal, field="3C286", jones=["G"], solint=["scan"], refant="C00", minblperant=2)
    with table(ms, ack=False) as t:
        cols = t.colnames()
    # the task's parameter check finds it before anything runs, with any other bad parameter
    from alakazam.errors import ParameterError

    with pytest.raises(ParameterError, match=r"interp\[0\]: 'cubic' needs at least 4 solution times; G0 of "
                                             r".* has 2 for SPW 0") as e:
        akapply(vis=ms, gaintable=[cal], jones=["G0"], field="TARGET", interp=["cubic"],
                applymode="calflag", outputcolumn="DATA")
    assert "outputcolumn" in str(e.value)
    # the run's own check (a YAML block, run_apply) names the term, its field, the field corrected
    from alakazam.calibration.apply import run_apply
    from alakazam.config import apply_config_from_dict

    with pytest.raises(AlakazamError, match=r"G0 \(solutions of 3C286 for TARGET, SPW 0\): .*'cubic' "
                                            r"needs at least 4 solution times"):
        run_apply(apply_config_from_dict(dict(ms=ms, tables=[cal], jones=["G0"], target_field=["TARGET"],
                                              time_interp=["cubic"], applymode="calflag", quiet=True)))
    with table(ms, ack=False) as t:
        assert t.colnames() == cols                  # no CORRECTED_DATA
    from alakazam.core import flagversions

    assert flagversions.list_versions(ms) == []
    d = ms + ".flagversions"
    assert not (os.path.isdir(d) and [n for n in os.listdir(d) if n.startswith("flags.")])
