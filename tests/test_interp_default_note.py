"""akapply notes an interp without a time part (calibration/interpnotes.py, review 60a): alakazam's
default is the nearest solution, CASA's applycal reads '' as linear -- a CASA script ported as it is
got a TARGET 78x the noise from CASA's, silently.  Said once per term that calibrates a field from
another field's solutions at several times; not where the time part is given, nor for a field's own
solutions, nor for a single solution time."""

import logging
import shutil

import pytest

from alakazam.sim import simulate_ms

MATCH = "interp was not given"


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    from alakazam.caltasks import akcal

    d = tmp_path_factory.mktemp("interpnote")
    ms = str(d / "sim.ms")
    simulate_ms(ms, n_ant=5, n_ant_extra=0, n_chan=(4,), duration_h=1.0, noise=0.01, seed=2, leakage=False,
                crosshand=False, dead_ant=False, flag_rows=0.0)
    tab = str(d / "g.h5")
    akcal(vis=ms, caltable=tab, field="3C286", jones=["G", "G"], solint=["scan", "inf"], refant="C00")
    return d, ms, tab


def _notes(caplog, d, ms, tab, name, **kw):
    from alakazam.caltasks import akapply

    work = str(d / f"{name}.ms")
    shutil.copytree(ms, work)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alakazam"):
        akapply(vis=work, gaintable=[tab], **kw)
    return [r.getMessage() for r in caplog.records if MATCH in r.getMessage()]


@pytest.mark.parametrize("which", [0, 1, 2])
def test_time_part_not_given_is_noted(solved, caplog, which):
    d, ms, tab = solved
    interp = [None, [""], [",linear"]][which]
    kw = {} if interp is None else {"interp": interp}
    w = _notes(caplog, d, ms, tab, f"given{which}", field="TARGET", jones=["G0"], **kw)
    assert len(w) == 1, w
    assert w[0].startswith("G0: interp was not given") and "CASA's applycal reads interp '' as linear" in w[0]


@pytest.mark.parametrize("case", ["nearest", "linear", "own", "one_time"])
def test_not_noted(solved, caplog, case):
    d, ms, tab = solved
    kw = dict(field="TARGET", jones=["G0"], interp=[case]) if case in ("nearest", "linear") else {}
    if case == "own":                    # 3C286's own solutions
        kw = dict(field="3C286", jones=["G0"])
    if case == "one_time":               # one solution time (solint inf)
        kw = dict(field="TARGET", jones=["G1"])
    assert _notes(caplog, d, ms, tab, case, **kw) == []


def test_linearpd_refused_with_what_to_use():
    """CASA's 'linearPD' (ALMA's phase transfer through spwmap) is refused naming what it does and what
    to give instead."""
    from alakazam.core.freqinterp import parse_interp
    from alakazam.core.interpolation import MODES
    from alakazam.errors import AlakazamError

    with pytest.raises(AlakazamError, match="'linear' transfers the phase unscaled"):
        parse_interp("linearPD", MODES, "interp[0]")
    with pytest.raises(AlakazamError, match="'nearest' transfers the phase unscaled"):
        parse_interp("nearestPD", MODES, "interp[0]")
    with pytest.raises(AlakazamError, match="'linear' transfers the phase unscaled"):
        parse_interp("linearPDperobs", MODES, "interp[0]")
    with pytest.raises(AlakazamError, match="within each observation only"):
        parse_interp("linearperobs", MODES, "interp[0]")
    # the solutions carry no observation: an apply of one observation's rows alone still interpolates
    # towards the next observation's solutions (review h60j), so the hint is a table per observation
    with pytest.raises(AlakazamError, match="solve and apply each observation on its own") as e:
        parse_interp("linearperobs", MODES, "interp[0]")
    assert "with 'linear'" in str(e.value), e.value
    with pytest.raises(AlakazamError, match="'linearPD' scales the phase") as e:
        parse_interp("linearPDperobs", MODES, "interp[0]")
    assert "solve and apply each observation on its own" in str(e.value), e.value
